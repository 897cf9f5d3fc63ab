# The shipped trained demo models (models/shapes, made by train.py): vtok chat
# answers the demo questions with the ids PyTorch gave when they were written
# (demo/demo.json) and gives now, bf16 / int8 the same text on >= 90%, vtok zeroshot
# the same choice as PyTorch (models/shapes/eval.py --demo).
if(VTOK_PYTHON)
  add_test(NAME demo_shapes
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/models/shapes/eval.py
                   --vtok $<TARGET_FILE:vtok> --demo)
  set_tests_properties(demo_shapes PROPERTIES LABELS e2e TIMEOUT 900)
endif()
