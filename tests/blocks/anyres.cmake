# LLaVA-NeXT anyres (slicing, ragged tokens, unpad + image_newline) through
# `vtok run` vs tests/ref/anyres_ref.py (the official code's steps, Pillow).
if(VTOK_PYTHON)
  add_test(NAME parity_anyres
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/parity/check_anyres.py
                   --vtok $<TARGET_FILE:vtok> --work ${CMAKE_BINARY_DIR}/anyres)
  set_tests_properties(parity_anyres PROPERTIES LABELS parity TIMEOUT 600)
endif()
