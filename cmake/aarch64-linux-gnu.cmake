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

# ctest and add_custom_command run target binaries through this.
find_program(VTOK_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(VTOK_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${VTOK_QEMU_AARCH64} -L /usr/${VTOK_CROSS_TRIPLE})
endif()
