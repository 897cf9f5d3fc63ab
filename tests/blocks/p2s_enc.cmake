# Pix2Struct vision encoder (MoVA's Pix2Struct-large and DePlot experts) vs the
# transformers semantics in tests/ref/p2s_enc_ref.py (tests/blocks/p2s_enc_parity.py).
if(VTOK_PYTHON)
  add_test(NAME parity_p2s_enc
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/blocks/p2s_enc_parity.py
                   --tool $<TARGET_FILE:p2s_enc_run>)
  set_tests_properties(parity_p2s_enc PROPERTIES LABELS parity TIMEOUT 120)
endif()
