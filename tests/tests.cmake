# Test layers (each runnable alone with `ctest -L <label>`):
#   header  - include/vtok.h compiles alone as C11 and C++
#   unit    - tests/unit/*.c, one executable each
#   kernels - tests/kernels/*.c: every ISA variant vs the reference on odd shapes
#   parity  - PyTorch references (tests/ref) vs `vtok encode`, through the CLI
#   image   - decoding, resampling and processors vs Pillow / HF, bit for bit
#   e2e     - the CLI on committed tiny models and bad inputs
#   api     - tests/api: the public API from threads (also run under TSan: make test-tsan)
#   adversarial - tests/adversarial: hostile inputs and output paths (issue 10)
#   install - `cmake --install` into a temp prefix; a program built against it
#             with pkg-config (shared, static) and find_package(vtok)
find_program(VTOK_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT VTOK_PYTHON)
  find_program(VTOK_PYTHON python3)
endif()

# A program the Python checks start: the target itself, or when
# cross-compiling a script that runs it under CMAKE_CROSSCOMPILING_EMULATOR
# (the checks and their PyTorch references stay native).
function(vtok_runnable out target)
  if(CMAKE_CROSSCOMPILING AND CMAKE_CROSSCOMPILING_EMULATOR)
    list(JOIN CMAKE_CROSSCOMPILING_EMULATOR " " emu)
    set(w ${CMAKE_BINARY_DIR}/emulated/${target})
    file(GENERATE OUTPUT ${w}
         CONTENT "#!/bin/sh\nexec ${emu} \"$<TARGET_FILE:${target}>\" \"$@\"\n"
         FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                          WORLD_READ WORLD_EXECUTE)
    set(${out} ${w} PARENT_SCOPE)
  else()
    set(${out} $<TARGET_FILE:${target}> PARENT_SCOPE)
  endif()
endfunction()

file(GLOB VTOK_UNIT_TESTS CONFIGURE_DEPENDS tests/unit/*.c)
file(GLOB VTOK_KERNEL_TESTS CONFIGURE_DEPENDS tests/kernels/*.c)
foreach(src ${VTOK_UNIT_TESTS} ${VTOK_KERNEL_TESTS})
  get_filename_component(name ${src} NAME_WE)
  get_filename_component(dir ${src} DIRECTORY)
  get_filename_component(label ${dir} NAME)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE src tests ${CJSON_INCLUDE_DIR})
  target_link_libraries(${name} PRIVATE vtok_static)
  add_test(NAME ${name} COMMAND ${name} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES LABELS ${label})
endforeach()

# The public header alone, as C11 and as C++ (if a C++ compiler exists).
# From the build tree: include/ plus the generated vtok_version.h (the install
# tree is checked by test_install).
add_test(NAME header_c11 COMMAND ${CMAKE_C_COMPILER} -std=c11 -Wall -Wextra -Werror -pedantic
         -Wstrict-prototypes -I${VTOK_GEN_INCLUDE} -fsyntax-only -x c
         ${CMAKE_SOURCE_DIR}/include/vtok.h)
set_tests_properties(header_c11 PROPERTIES LABELS header)
find_program(VTOK_CXX NAMES g++ c++)
if(VTOK_CXX)
  add_test(NAME header_cxx COMMAND ${VTOK_CXX} -std=c++11 -Wall -Wextra -Werror -pedantic
           -I${VTOK_GEN_INCLUDE} -fsyntax-only -x c++ ${CMAKE_SOURCE_DIR}/include/vtok.h)
  set_tests_properties(header_cxx PROPERTIES LABELS header)
endif()

# Install and consume (not when cross-compiling: the consumer is built with
# the host's pkg-config and run directly; not under the sanitizers: the
# consumer would need their runtime).
if(NOT CMAKE_CROSSCOMPILING AND NOT VTOK_SANITIZE)
  add_test(NAME test_install
           COMMAND sh ${CMAKE_SOURCE_DIR}/tests/install/test_install.sh ${CMAKE_SOURCE_DIR}
                   ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/install-test ${CMAKE_C_COMPILER}
                   ${PROJECT_VERSION})
  set_tests_properties(test_install PROPERTIES LABELS install TIMEOUT 600
                       ENVIRONMENT "VTOK_CMAKE=${CMAKE_COMMAND};VTOK_CXX=${VTOK_CXX}")
endif()

if(VTOK_PYTHON)
  vtok_runnable(VTOK_RUN_CLI vtok)
  vtok_runnable(VTOK_RUN_RESAMPLE test_resample)
  vtok_runnable(VTOK_RUN_DECODE test_decode)
  add_test(NAME parity_encoders
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/parity/run_parity.py
                   --vtok ${VTOK_RUN_CLI} --work ${CMAKE_BINARY_DIR}/parity)
  set_tests_properties(parity_encoders PROPERTIES LABELS parity TIMEOUT 1800)
  # The same parity run on the plain-C reference kernels (the specification).
  add_test(NAME parity_encoders_refkernels
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/parity/run_parity.py
                   --vtok ${VTOK_RUN_CLI} --work ${CMAKE_BINARY_DIR}/parity-ref)
  set_tests_properties(parity_encoders_refkernels PROPERTIES LABELS parity TIMEOUT 1800
                       ENVIRONMENT VTOK_FORCE_REF=1)
  # Pillow-exact resampling: every filter, up/down, odd shapes, vs the installed Pillow.
  add_test(NAME image_resample
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/image/check_resample.py
                   --tool ${VTOK_RUN_RESAMPLE} --work ${CMAKE_BINARY_DIR}/resample)
  set_tests_properties(image_resample PROPERTIES LABELS image TIMEOUT 900)
  # HF image processors through `vtok preprocess`, and `encode --image` == `encode --pixels`.
  add_test(NAME image_processors
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/image/check_processor.py
                   --vtok ${VTOK_RUN_CLI} --work ${CMAKE_BINARY_DIR}/processors)
  set_tests_properties(image_processors PROPERTIES LABELS image TIMEOUT 900)
  # PyTorch checkpoints (zip, legacy, deflate, zip64) through `vtok convert`; malicious pickles refused.
  add_test(NAME io_torch
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/io/check_torch.py
                   --vtok ${VTOK_RUN_CLI} --work ${CMAKE_BINARY_DIR}/torch)
  set_tests_properties(io_torch PROPERTIES LABELS e2e TIMEOUT 600)
  # Decoders vs Pillow's Image.open(f).convert("RGB"): a generated corpus, every mode, corrupt files.
  add_test(NAME image_decode
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/image/check_decode.py
                   --dumper ${VTOK_RUN_DECODE} --work ${CMAKE_BINARY_DIR}/image-decode
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(image_decode PROPERTIES LABELS image TIMEOUT 600)
  add_test(NAME e2e_cli
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/e2e/run_e2e.py
                   --vtok ${VTOK_RUN_CLI} --work ${CMAKE_BINARY_DIR}/e2e)
  set_tests_properties(e2e_cli PROPERTIES LABELS e2e TIMEOUT 900)
endif()

# adversarial - tests/adversarial: hostile and careless inputs and output
# paths (issue 10), each a small file made by the script, under time and
# memory caps; the C API cases in adv_api.c.
add_executable(adv_api tests/adversarial/adv_api.c)
target_link_libraries(adv_api PRIVATE vtok_shared m)
if(VTOK_PYTHON)
  vtok_runnable(VTOK_RUN_ADV_API adv_api)
  set(VTOK_ADV_FLAGS)
  if(VTOK_SANITIZE OR CMAKE_CROSSCOMPILING)
    set(VTOK_ADV_FLAGS --no-as-cap) # shadow memory / the emulator need address space
  endif()
  add_test(NAME adversarial_outputs
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/adversarial/check_outputs.py
                   --vtok ${VTOK_RUN_CLI} --work ${CMAKE_BINARY_DIR}/adversarial_outputs)
  add_test(NAME adversarial_inputs
           COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/adversarial/check_inputs.py
                   --vtok ${VTOK_RUN_CLI} --api ${VTOK_RUN_ADV_API} ${VTOK_ADV_FLAGS}
                   --work ${CMAKE_BINARY_DIR}/adversarial_inputs)
  set_tests_properties(adversarial_outputs adversarial_inputs PROPERTIES
                       LABELS adversarial TIMEOUT 600)
endif()

# Block runners (tests/blocks/*.c): small tools that run one internal block
# (an encoder, a connector) on .npy inputs for the PyTorch parity scripts.
# Each area registers its own tests in tests/blocks/*.cmake.
file(GLOB VTOK_BLOCK_TOOLS CONFIGURE_DEPENDS tests/blocks/*.c)
foreach(src ${VTOK_BLOCK_TOOLS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE src tests ${CJSON_INCLUDE_DIR})
  target_link_libraries(${name} PRIVATE vtok_static)
endforeach()
# Cross builds: tests/blocks/*.cmake tests name $<TARGET_FILE:...> directly,
# which cannot run on this host, so they are disabled there (shown as "Not
# Run (Disabled)"); every other test starts target binaries through the
# emulator (add_test with a target, or vtok_runnable() for the Python checks).
get_property(VTOK_TESTS_BEFORE_BLOCKS DIRECTORY PROPERTY TESTS)
file(GLOB VTOK_BLOCK_TESTS CONFIGURE_DEPENDS tests/blocks/*.cmake)
foreach(f ${VTOK_BLOCK_TESTS})
  include(${f})
endforeach()
get_property(VTOK_BLOCK_TEST_NAMES DIRECTORY PROPERTY TESTS)
if(VTOK_TESTS_BEFORE_BLOCKS)
  list(REMOVE_ITEM VTOK_BLOCK_TEST_NAMES ${VTOK_TESTS_BEFORE_BLOCKS})
endif()
if(CMAKE_CROSSCOMPILING AND VTOK_BLOCK_TEST_NAMES)
  set_tests_properties(${VTOK_BLOCK_TEST_NAMES} PROPERTIES DISABLED TRUE)
endif()

# The public API through the shared library (so only exported symbols are
# reachable): threads sharing models and pools, callbacks, limits, params ABI.
add_executable(test_api tests/api/test_api.c)
target_include_directories(test_api PRIVATE tests)
target_link_libraries(test_api PRIVATE vtok_shared Threads::Threads m)
add_test(NAME test_api COMMAND test_api WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(test_api PROPERTIES LABELS api TIMEOUT 900)
# Bit-identical across thread counts and shared pools holds for the reference kernels too.
add_test(NAME test_api_refkernels COMMAND test_api WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(test_api_refkernels PROPERTIES LABELS api TIMEOUT 900
                     ENVIRONMENT VTOK_FORCE_REF=1)
