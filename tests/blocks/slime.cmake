# SliME (uhd slicing, gated global mixture, resamplers, text-guided
# selection, separator) through `vtok run` / `vtok chat` vs
# tests/ref/slime_ref.py; the tiny LLM borrows the shapes demo's tokenizer.
if(VTOK_PYTHON)
  add_test(NAME parity_slime
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/parity/check_slime.py
                   --vtok $<TARGET_FILE:vtok> --work ${CMAKE_BINARY_DIR}/slime)
  set_tests_properties(parity_slime PROPERTIES LABELS parity TIMEOUT 600)
endif()
