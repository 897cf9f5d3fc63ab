# Recipes (llava-1.5, comm and variants) through `vtok run` vs the PyTorch
# references in tests/ref/llava_comm_ref.py; bad recipes and inputs.
if(VTOK_PYTHON)
  add_test(NAME parity_recipes
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/parity/check_recipes.py
                   --vtok $<TARGET_FILE:vtok> --work ${CMAKE_BINARY_DIR}/recipes)
  set_tests_properties(parity_recipes PROPERTIES LABELS parity TIMEOUT 600)
endif()
