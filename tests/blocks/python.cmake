# The Python bindings (python/vtok, ctypes over libvtok) with pytest:
# Model.encode / Recipe.run / tokenize / detokenize / LLM.generate / chat bit
# for bit against the CLI, the ctypes struct layouts against the C compiler's,
# errors, streaming, cancellation, the GIL released during compute.
# Needs numpy, pytest and Pillow in VTOK_PYTHON (Debian python3-numpy,
# python3-pytest, python3-pil); not under the sanitizers (an instrumented
# libvtok cannot be dlopen'ed by an uninstrumented python).
if(VTOK_PYTHON AND NOT VTOK_SANITIZE)
  execute_process(COMMAND ${VTOK_PYTHON} -c "import numpy, pytest, PIL"
                  RESULT_VARIABLE VTOK_PY_DEPS OUTPUT_QUIET ERROR_QUIET)
  if(VTOK_PY_DEPS EQUAL 0)
    add_test(NAME python_bindings
             COMMAND ${VTOK_PYTHON} -m pytest -q -rs -p no:cacheprovider
                     ${CMAKE_SOURCE_DIR}/tests/python
             WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    set_tests_properties(python_bindings PROPERTIES LABELS python TIMEOUT 300
                         ENVIRONMENT "VTOK_LIB=$<TARGET_FILE:vtok_shared>;VTOK_CLI=$<TARGET_FILE:vtok>;CC=${CMAKE_C_COMPILER};PYTHONDONTWRITEBYTECODE=1")
  else()
    message(STATUS "python_bindings test off: ${VTOK_PYTHON} lacks numpy, pytest or PIL")
  endif()
endif()
