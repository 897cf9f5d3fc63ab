# GVT's blocks (EVA-02 and EVA ViT-g towers, Perceiver resampler) vs PyTorch
# references written from the official code (tests/ref/eva_ref.py).
if(VTOK_PYTHON)
  add_test(NAME parity_gvt_blocks
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/gvt_parity.py
                   --tool $<TARGET_FILE:gvt_blocks> --work ${CMAKE_BINARY_DIR}/gvt-blocks)
  set_tests_properties(parity_gvt_blocks PROPERTIES LABELS parity TIMEOUT 300)
  # The same on the plain-C reference kernels.
  add_test(NAME parity_gvt_blocks_refkernels
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/gvt_parity.py
                   --tool $<TARGET_FILE:gvt_blocks> --work ${CMAKE_BINARY_DIR}/gvt-blocks-ref)
  set_tests_properties(parity_gvt_blocks_refkernels PROPERTIES LABELS parity TIMEOUT 300
                       ENVIRONMENT VTOK_FORCE_REF=1)
endif()
