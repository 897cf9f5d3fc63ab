# MoVA: routing prompt and answer parser, Pix2Struct's patch grid, the MoV-Adapter vs the
# rules of the official code (tests/blocks/mova_parity.py).
if(VTOK_PYTHON)
  add_test(NAME parity_mova
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/mova_parity.py
                   --tool $<TARGET_FILE:mova_run>)
  set_tests_properties(parity_mova PROPERTIES LABELS parity TIMEOUT 120)
endif()

# The mova recipe end to end (base CLIP, BERT text, lazy experts, the
# MoV-Adapter, the routing pass with a tiny LLM, chat sharing the prompt
# prefix) through `vtok run` / `vtok chat` vs tests/parity/check_mova.py's
# reference of the official pipeline.
if(VTOK_PYTHON)
  add_test(NAME parity_mova_recipe
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/parity/check_mova.py
                   --vtok $<TARGET_FILE:vtok> --work ${CMAKE_BINARY_DIR}/mova_recipe)
  set_tests_properties(parity_mova_recipe PROPERTIES LABELS parity TIMEOUT 300)
endif()
