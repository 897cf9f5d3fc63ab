# Decoder LLM runtime (src/models/llama.c: LLaMA / Mistral / Qwen2) vs the
# PyTorch reference tests/ref/llama_ref.py, through the llm_run runner.
if(VTOK_PYTHON)
  add_test(NAME parity_llm
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/llm_parity.py
                   --tool $<TARGET_FILE:llm_run> --work ${CMAKE_BINARY_DIR}/llm-parity)
  set_tests_properties(parity_llm PROPERTIES LABELS parity TIMEOUT 600)
  # The same on the plain-C reference kernels (the specification).
  add_test(NAME parity_llm_refkernels
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/llm_parity.py
                   --tool $<TARGET_FILE:llm_run> --work ${CMAKE_BINARY_DIR}/llm-parity-ref)
  set_tests_properties(parity_llm_refkernels PROPERTIES LABELS parity TIMEOUT 600
                       ENVIRONMENT VTOK_FORCE_REF=1)
endif()
