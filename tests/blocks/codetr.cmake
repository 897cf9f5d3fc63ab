# MoVA's Co-DETR expert (src/models/codetr.c) vs tests/ref/codetr_ref.py, the
# official ViT02 + neck of TempleX98/MoVA (tests/blocks/codetr_parity.py).
if(VTOK_PYTHON)
  add_test(NAME parity_codetr
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/codetr_parity.py
                   --tool $<TARGET_FILE:codetr_run>)
  set_tests_properties(parity_codetr PROPERTIES LABELS parity TIMEOUT 120)
endif()
