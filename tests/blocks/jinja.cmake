# Chat templates (src/text/jinja*.c) through the jinja_render runner:
#  - hostile and malformed templates fail with the right code, quickly;
#  - the official chat templates and semantic probes render byte-identically
#    to Python jinja2 as transformers configures it and to @huggingface/jinja
#    (needs `npm ci` in tests/jinja, node and python3-jinja2; fails otherwise);
#  - the built-in seed-system formats match Python re-implementations of the
#    original prompt code.
add_test(NAME text_jinja_hostile COMMAND jinja_render hostile)
set_tests_properties(text_jinja_hostile PROPERTIES LABELS text TIMEOUT 300)
if(VTOK_PYTHON)
  find_program(VTOK_NODE node)
  if(NOT VTOK_NODE)
    set(VTOK_NODE node) # the check then fails, naming what is missing
  endif()
  add_test(NAME text_jinja_parity
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/jinja/check.py
                   --tool $<TARGET_FILE:jinja_render> --node ${VTOK_NODE}
                   --work ${CMAKE_BINARY_DIR}/jinja-check)
  set_tests_properties(text_jinja_parity PROPERTIES LABELS text TIMEOUT 300)
  add_test(NAME text_jinja_builtin
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/jinja/check_builtin.py
                   --tool $<TARGET_FILE:jinja_render> --work ${CMAKE_BINARY_DIR}/jinja-builtin)
  set_tests_properties(text_jinja_builtin PROPERTIES LABELS text TIMEOUT 300)
endif()
