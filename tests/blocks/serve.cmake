# `vtok serve` over loopback (tests/serve/test_serve.py): embeddings equal to
# `vtok encode`, base64 output, dynamic batching of concurrent clients, every
# kind of bad request (4xx with an OpenAI error body, the server alive after
# each), queue full (429), SIGTERM with a request in flight (exit 0), chat
# completions (whole and streamed) equal to `vtok chat`, tokenize /
# detokenize equal to `vtok tokenize` / `vtok detokenize`. Skipped (77) when
# vtok was built without libmicrohttpd.
if(VTOK_PYTHON)
  add_test(NAME serve_http
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/serve/test_serve.py
                   --vtok $<TARGET_FILE:vtok> --work ${CMAKE_BINARY_DIR}/serve
                   --seed-dir ${CMAKE_BINARY_DIR}/recipes_gvt_seed
                   --mova-dir ${CMAKE_BINARY_DIR}/mova_recipe
                   --slime-dir ${CMAKE_BINARY_DIR}/slime)
  # /v1/tokenize and /v1/detokenize use the tiny SEED that parity_recipes_gvt_seed
  # writes (skipped when it has not run)
  set_tests_properties(serve_http PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77
                       DEPENDS "parity_recipes_gvt_seed;parity_mova_recipe;parity_slime")
endif()
