# CLIP text tower + tokenizer + zero-shot (src/models/clip_text.c, vtok zeroshot)
# vs the PyTorch reference tests/ref/clip_text_ref.py; ids vs Hugging Face
# tokenizers when the tests/text npm packages are installed.
if(VTOK_PYTHON)
  find_program(VTOK_CLIP_NODE NAMES node nodejs)
  if(NOT VTOK_CLIP_NODE)
    set(VTOK_CLIP_NODE "")
  endif()
  add_test(NAME parity_clip_text
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/clip_text_parity.py
                   --tool $<TARGET_FILE:clip_text_run> --vtok $<TARGET_FILE:vtok>
                   --node "${VTOK_CLIP_NODE}" --work ${CMAKE_BINARY_DIR}/clip-text-parity)
  set_tests_properties(parity_clip_text PROPERTIES LABELS parity TIMEOUT 600)
  # The same on the plain-C reference kernels (the specification).
  add_test(NAME parity_clip_text_refkernels
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/clip_text_parity.py
                   --tool $<TARGET_FILE:clip_text_run> --vtok $<TARGET_FILE:vtok>
                   --node "${VTOK_CLIP_NODE}" --work ${CMAKE_BINARY_DIR}/clip-text-parity-ref)
  set_tests_properties(parity_clip_text_refkernels PROPERTIES LABELS parity TIMEOUT 600
                       ENVIRONMENT VTOK_FORCE_REF=1)
endif()
