# Batches of sequences in the decoder LLM runtime (vt_llm_forward_batch and
# the public vtok_llm_*_batch API) vs transformers' left-padded batched
# generate() re-written in tests/ref/llama_ref.py, through llm_batch_run.
if(VTOK_PYTHON)
  add_test(NAME parity_llm_batch
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/llm_batch_parity.py
                   --tool $<TARGET_FILE:llm_batch_run> --work ${CMAKE_BINARY_DIR}/llm-batch)
  set_tests_properties(parity_llm_batch PROPERTIES LABELS parity TIMEOUT 600)
  # The same on the plain-C reference kernels (the specification).
  add_test(NAME parity_llm_batch_refkernels
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/llm_batch_parity.py
                   --tool $<TARGET_FILE:llm_batch_run> --work ${CMAKE_BINARY_DIR}/llm-batch-ref)
  set_tests_properties(parity_llm_batch_refkernels PROPERTIES LABELS parity TIMEOUT 600
                       ENVIRONMENT VTOK_FORCE_REF=1)
endif()
