# The next-token sampler (src/models/sample.c) vs transformers' logits
# processors written with the same torch operations (tests/blocks/sample_parity.py).
if(VTOK_PYTHON)
  add_test(NAME parity_sample
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/sample_parity.py
                   --tool $<TARGET_FILE:sample_run> --work ${CMAKE_BINARY_DIR}/sample)
  set_tests_properties(parity_sample PROPERTIES LABELS parity TIMEOUT 300)
endif()
