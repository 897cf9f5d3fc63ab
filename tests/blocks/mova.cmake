# MoVA: routing prompt and answer parser, Pix2Struct's patch grid, the MoV-Adapter vs the
# rules of the official code (tests/blocks/mova_parity.py).
if(VTOK_PYTHON)
  add_test(NAME parity_mova
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/mova_parity.py
                   --tool $<TARGET_FILE:mova_run>)
  set_tests_properties(parity_mova PROPERTIES LABELS parity TIMEOUT 120)
endif()
