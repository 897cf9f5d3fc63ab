# timm ViT towers (bare timm hub folders and open_clip TimmModel trunks such as
# BiomedCLIP, MoVA's expert) through `vtok encode`, vs the PyTorch reference of
# tests/ref/timm_vit_ref.py (tests/blocks/timm_vit_parity.py).
if(VTOK_PYTHON)
  add_test(NAME parity_timm_vit
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/timm_vit_parity.py
                   --vtok $<TARGET_FILE:vtok> --work ${CMAKE_BINARY_DIR}/timm-vit-parity)
  set_tests_properties(parity_timm_vit PROPERTIES LABELS parity TIMEOUT 120)
endif()
