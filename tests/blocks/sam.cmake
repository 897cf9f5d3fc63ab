# MoVA's SAM experts (src/models/sam.c: Vary-base's SAM ViT-B + net_2, SAM-huge's
# ViT-H) vs a PyTorch re-implementation of the original (tests/blocks/sam_parity.py).
if(VTOK_PYTHON)
  add_test(NAME parity_sam
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/sam_parity.py
                   --tool $<TARGET_FILE:sam_run>)
  set_tests_properties(parity_sam PROPERTIES LABELS parity TIMEOUT 120)
endif()
