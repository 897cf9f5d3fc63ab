#!/bin/sh
# test_install.sh - install vtok into a temporary prefix and build a program
# outside the project against it, the ways a user would:
#   1. the installed header alone, as C11 and as C++
#   2. pkg-config, shared library        (cc $(pkg-config --cflags --libs vtok))
#   3. pkg-config, static library        (libvtok.a + pkg-config --static --libs)
#   4. find_package(vtok): vtok::vtok and vtok::vtok_static
# and run each program (tests/install/consumer.c), plus the installed CLI's
# --version. Also checks the shared library's SONAME and that it exports only
# vtok_* symbols.
#
# Usage: test_install.sh SOURCE_DIR BUILD_DIR WORK_DIR C_COMPILER VERSION
set -eu
src=$1 build=$2 work=$3 cc=$4 version=$5
cxx=${VTOK_CXX:-c++}
cmake=${VTOK_CMAKE:-cmake}

rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
echo "== install into $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log"

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
pcver=$(pkg-config --modversion vtok)
[ "$pcver" = "$version" ] || { echo "FAIL: vtok.pc version $pcver, project $version"; exit 1; }
libdir=$(pkg-config --variable=libdir vtok)
incdir=$(pkg-config --variable=includedir vtok)
[ -f "$libdir/libvtok.a" ] || { echo "FAIL: no $libdir/libvtok.a"; exit 1; }

echo "== installed header alone"
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only -I"$incdir" -x c "$incdir/vtok.h"
if command -v "$cxx" >/dev/null 2>&1; then
    "$cxx" -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only -I"$incdir" -x c++ "$incdir/vtok.h"
fi

echo "== installed CLI"
cli=$("$prefix/bin/vtok" --version)
[ "$cli" = "vtok $version" ] || { echo "FAIL: vtok --version says '$cli'"; exit 1; }

echo "== shared library: SONAME and exports"
major=${version%%.*}
minor=${version#*.}; minor=${minor%%.*}
if [ "$major" = 0 ]; then soname=libvtok.so.0.$minor; else soname=libvtok.so.$major; fi
[ -e "$libdir/$soname" ] || { echo "FAIL: no $libdir/$soname"; exit 1; }
if command -v readelf >/dev/null 2>&1; then
    readelf -d "$libdir/libvtok.so" | grep -q "SONAME.*\[$soname\]" ||
        { echo "FAIL: SONAME is not $soname"; readelf -d "$libdir/libvtok.so" | grep SONAME; exit 1; }
    leaked=$(readelf -W --dyn-syms "$libdir/libvtok.so" |
             awk '$5 == "GLOBAL" && $7 != "UND" && $8 !~ /^vtok_/ {print $8}')
    [ -z "$leaked" ] || { echo "FAIL: libvtok.so exports private symbols:"; echo "$leaked"; exit 1; }
fi

run() { # name binary
    out=$("$2" "$src/models/sample.jpg" "$src/models/tiny-clip") ||
        { echo "FAIL: $1 exited $?"; exit 1; }
    echo "$1: $out"
    case $out in "vtok $version, kernels "*) ;; *) echo "FAIL: $1 printed '$out'"; exit 1 ;; esac
}

echo "== pkg-config, shared"
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror -o "$work/pc_shared" "$src/tests/install/consumer.c" \
    $(pkg-config --cflags --libs vtok) -Wl,-rpath,"$libdir"
run pc_shared "$work/pc_shared"
if command -v readelf >/dev/null 2>&1; then
    readelf -d "$work/pc_shared" | grep -q "NEEDED.*\[$soname\]" ||
        { echo "FAIL: pc_shared does not need $soname"; exit 1; }
fi

echo "== pkg-config, static (the README's link line)"
static_libs=$(pkg-config --static --libs vtok | sed "s|-lvtok|$libdir/libvtok.a|")
echo "   $static_libs"
# shellcheck disable=SC2046,SC2086
"$cc" -std=c11 -Wall -Wextra -Werror -o "$work/pc_static" "$src/tests/install/consumer.c" \
    $(pkg-config --cflags vtok) $static_libs
run pc_static "$work/pc_static"
if command -v readelf >/dev/null 2>&1 && readelf -d "$work/pc_static" | grep -q "NEEDED.*libvtok"; then
    echo "FAIL: pc_static needs libvtok.so"
    exit 1
fi

echo "== find_package(vtok)"
"$cmake" -S "$src/tests/install/consumer" -B "$work/consumer" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_PREFIX_PATH="$prefix" -DVTOK_WANT_VERSION="$version" >"$work/consumer.log"
"$cmake" --build "$work/consumer" >>"$work/consumer.log"
run find_package_shared "$work/consumer/consumer_shared"
run find_package_static "$work/consumer/consumer_static"

echo "== install test passed"
