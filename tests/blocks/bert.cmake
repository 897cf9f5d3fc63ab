# BERT text encoder (src/models/bert.c, vtok_bert_* API, `vtok embed-text`)
# vs the PyTorch reference tests/ref/bert_ref.py, through the bert_run runner.
if(VTOK_PYTHON)
  add_test(NAME parity_bert
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/bert_parity.py
                   --tool $<TARGET_FILE:bert_run> --cli $<TARGET_FILE:vtok>
                   --work ${CMAKE_BINARY_DIR}/bert-parity)
  set_tests_properties(parity_bert PROPERTIES LABELS parity TIMEOUT 600)
  # The same on the plain-C reference kernels (the specification).
  add_test(NAME parity_bert_refkernels
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/bert_parity.py
                   --tool $<TARGET_FILE:bert_run> --cli $<TARGET_FILE:vtok>
                   --work ${CMAKE_BINARY_DIR}/bert-parity-ref)
  set_tests_properties(parity_bert_refkernels PROPERTIES LABELS parity TIMEOUT 600
                       ENVIRONMENT VTOK_FORCE_REF=1)
endif()
