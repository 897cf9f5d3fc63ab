# Cross build for 64-bit Arm Linux with Debian's cross compiler and multiarch
# libraries (see the Makefile `deps` target), tests run under qemu-user:
#
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#   cmake --build build-aarch64 && (cd build-aarch64 && ctest)
#
# There are no SIMD kernels for Arm yet: the library is the plain-C reference
# kernels and run-time dispatch selects the "ref" table.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(VTOK_CROSS_TRIPLE aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${VTOK_CROSS_TRIPLE}-gcc)
# Headers are shared (/usr/include); libraries come from the multiarch
# directory /usr/lib/aarch64-linux-gnu, never from the host's.
set(CMAKE_LIBRARY_ARCHITECTURE ${VTOK_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH /usr/${VTOK_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${VTOK_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

# ctest runs target binaries through this. The arm64 dev packages bring
# libc6:arm64, whose loader /lib/ld-linux-aarch64.so.1 matches the libc in
# /usr/lib/aarch64-linux-gnu, so qemu needs no -L. With -L
# /usr/aarch64-linux-gnu the cross toolchain's older loader ends up paired
# with the multiarch libc (found through the library path), and a mismatched
# ld.so/libc pair hangs in pthread code (seen: test_attn). -L only when there
# is no multiarch libc.
find_program(VTOK_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(VTOK_QEMU_AARCH64)
  if(EXISTS /lib/ld-linux-aarch64.so.1)
    set(CMAKE_CROSSCOMPILING_EMULATOR ${VTOK_QEMU_AARCH64})
  else()
    set(CMAKE_CROSSCOMPILING_EMULATOR ${VTOK_QEMU_AARCH64} -L /usr/${VTOK_CROSS_TRIPLE})
  endif()
endif()
