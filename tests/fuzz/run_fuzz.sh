#!/bin/sh
# run_fuzz.sh - build the libFuzzer targets for vtok's file parsers and run
# each for a bounded time.
#
# Usage: tests/fuzz/run_fuzz.sh [SECONDS]     (per target, default 30)
#
# The targets are not part of the CMake build because they need clang's
# -fsanitize=fuzzer. They compile the parsers directly (src/io/*.c plus
# src/core/util.c) with ASan and UBSan. Corpora live in
# tests/fuzz/corpus-<target>/ (git-ignored) and grow across runs; binaries and
# crash reproducers go to build/fuzz/ (or $VTOK_FUZZ_OUT). Reproduce a crash
# with: build/fuzz/fuzz_<target> build/fuzz/crash-<target>-<hash>
#
# Without clang the script fails, unless VTOK_FUZZ_OPTIONAL=1 (for CI hosts
# where fuzzing is best-effort), in which case it says so and exits 0.
set -eu

secs=${1:-30}
case $secs in
    ''|*[!0-9]*|0|00*) echo "run_fuzz.sh: SECONDS must be a positive integer, got '$secs'" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${VTOK_FUZZ_OUT:-$root/build/fuzz}

cc=
for c in clang clang-14; do
    if command -v "$c" >/dev/null 2>&1; then
        cc=$c
        break
    fi
done
if [ -z "$cc" ]; then
    echo "run_fuzz.sh: clang not found (Debian: apt-get install clang-14); fuzzers not run" >&2
    if [ "${VTOK_FUZZ_OPTIONAL:-0}" = 1 ]; then
        exit 0
    fi
    exit 1
fi

mkdir -p "$out"
cflags="-std=c11 -g -O1 -fno-omit-frame-pointer -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
        -Wall -Wextra -Wvla -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
srcs="$root/src/core/util.c $(ls "$root"/src/io/*.c)"

# Seeds: one small valid file per format, so the fuzzer starts past the magic.
seed() { # target name printf-format
    mkdir -p "$root/tests/fuzz/corpus-$1"
    # shellcheck disable=SC2059
    printf "$3" > "$root/tests/fuzz/corpus-$1/$2"
}
st_hdr='{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1,1],"data_offsets":[4,6]},"c":{"dtype":"F32","shape":[],"data_offsets":[6,10]}}'
st_len=$(printf '%s' "$st_hdr" | wc -c)
seed safetensors seed-valid "$(printf '\\%03o' "$st_len")\\000\\000\\000\\000\\000\\000\\000$st_hdr\\000\\074\\000\\300\\200\\077\\000\\000\\200\\077"
npy_hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
seed npy seed-v1 "\\223NUMPY\\001\\000$(printf '\\%03o' "$(printf '%s' "$npy_hdr" | wc -c)")\\000$npy_hdr\\000\\000\\200\\077\\000\\000\\000\\300"
npy_hdr2="{'descr': '<f2', 'fortran_order': False, 'shape': (1, 2), }"
seed npy seed-v2 "\\223NUMPY\\002\\000$(printf '\\%03o' "$(printf '%s' "$npy_hdr2" | wc -c)")\\000\\000\\000$npy_hdr2\\000\\074\\000\\300"

status=0
for t in safetensors npy; do
    bin="$out/fuzz_$t"
    echo "== building $bin with $cc"
    # shellcheck disable=SC2086
    "$cc" $cflags -I"$root/include" -I"$root/src" "$root/tests/fuzz/fuzz_$t.c" $srcs \
        -lcjson -lm -o "$bin"
    echo "== running fuzz_$t for ${secs}s"
    if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$out/crash-$t-" "$root/tests/fuzz/corpus-$t"; then
        echo "== fuzz_$t FAILED: reproducer in $out/crash-$t-*" >&2
        status=1
    fi
done
[ $status -eq 0 ] && echo "== all fuzz targets ran clean for ${secs}s each"
exit $status
