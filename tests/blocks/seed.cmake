# SEED connector blocks (src/connectors/qformer.c, vq.c, seed_detok.c) vs the
# PyTorch reference tests/ref/seed_ref.py, through the seed_blocks runner.
if(VTOK_PYTHON)
  add_test(NAME parity_seed_blocks
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/seed_parity.py
                   --tool $<TARGET_FILE:seed_blocks> --work ${CMAKE_BINARY_DIR}/seed-blocks)
  set_tests_properties(parity_seed_blocks PROPERTIES LABELS parity TIMEOUT 600)
  # The same on the plain-C reference kernels (the specification).
  add_test(NAME parity_seed_blocks_refkernels
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/seed_parity.py
                   --tool $<TARGET_FILE:seed_blocks> --work ${CMAKE_BINARY_DIR}/seed-blocks-ref)
  set_tests_properties(parity_seed_blocks_refkernels PROPERTIES LABELS parity TIMEOUT 600
                       ENVIRONMENT VTOK_FORCE_REF=1)
endif()
