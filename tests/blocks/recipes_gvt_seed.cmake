# The gvt and seed recipes end to end (vtok run / tokenize / detokenize) vs
# PyTorch references composed from tests/ref/eva_ref.py and seed_ref.py;
# --dtype bf16 / int8 closeness; bad ids and missing tensors.
if(VTOK_PYTHON)
  add_test(NAME parity_recipes_gvt_seed
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/parity/check_recipes_gvt_seed.py
                   --vtok $<TARGET_FILE:vtok> --work ${CMAKE_BINARY_DIR}/recipes_gvt_seed)
  set_tests_properties(parity_recipes_gvt_seed PROPERTIES LABELS parity TIMEOUT 600)
endif()
