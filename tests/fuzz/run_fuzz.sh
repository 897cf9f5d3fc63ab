#!/bin/sh
# run_fuzz.sh - build the libFuzzer targets for vtok's file parsers and run
# each for a bounded time.
#
# Usage: tests/fuzz/run_fuzz.sh [SECONDS]     (per target, default 30)
#
# The targets are not part of the CMake build because they need clang's
# -fsanitize=fuzzer. The parser targets compile their sources directly
# (src/io/*.c plus src/core/util.c; for fuzz_image the decoders
# src/image/decode*.c and exif.c, linked with libjpeg, libpng and libwebp);
# fuzz_json (config.json, preprocessor_config.json, recipes), fuzz_model
# (vtok_model_load_from_memory + a tiny encode), fuzz_jinja (chat
# templates: parse + render) and fuzz_tokenizer (tokenizer.json loads, and
# arbitrary bytes through two fixed tokenizers) link the whole library,
# built by CMake with clang into build/fuzz/lib (instrumented, not linked
# with the fuzzer). Everything has ASan and UBSan.
#
# Each target first replays its committed regression corpus,
# tests/fuzz/regress-<target>/ (seeds, and the reproducer of every crash
# found, renamed crash-<what>): any failure there fails the script before
# fuzzing starts. Then it fuzzes for SECONDS with the regression files as
# read-only input and tests/fuzz/corpus-<target>/ (git-ignored, grows
# across runs) as the working corpus. Binaries and crash reproducers go to
# build/fuzz/ (or $VTOK_FUZZ_OUT). Reproduce a crash with:
#   build/fuzz/fuzz_<target> build/fuzz/crash-<target>-<hash>
# and once fixed, copy the file into tests/fuzz/regress-<target>/. The
# seeds of fuzz_json and fuzz_model come from tests/fuzz/make_seeds.py; the
# others are written below (the same bytes every run).
#
# VTOK_FUZZ_TARGETS="json model" limits the run to some targets.
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

mkdir -p "$out/include"
# vtok.h includes vtok_version.h, which CMake generates from project(vtok
# VERSION ...); fill the same template from the same line.
ver=$(sed -n 's/^project(vtok VERSION \([0-9]*\)\.\([0-9]*\)\.\([0-9]*\).*/\1 \2 \3/p' "$root/CMakeLists.txt")
set -- $ver
if [ $# -ne 3 ]; then
    echo "run_fuzz.sh: no project(vtok VERSION X.Y.Z) in CMakeLists.txt" >&2
    exit 1
fi
sed -e "s/@PROJECT_VERSION_MAJOR@/$1/g" -e "s/@PROJECT_VERSION_MINOR@/$2/g" \
    -e "s/@PROJECT_VERSION_PATCH@/$3/g" "$root/cmake/vtok_version.h.in" >"$out/include/vtok_version.h"
cflags="-std=c11 -g -O1 -fno-omit-frame-pointer -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
        -Wall -Wextra -Wvla -Wmissing-prototypes -Wstrict-prototypes -Wformat=2
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
srcs="$root/src/core/util.c $(ls "$root"/src/io/*.c)"

# Seeds: one small valid file per format, so the fuzzer starts past the magic.
seed() { # target name printf-format
    mkdir -p "$root/tests/fuzz/regress-$1"
    # shellcheck disable=SC2059
    printf "$3" > "$root/tests/fuzz/regress-$1/$2"
}
st_hdr='{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1,1],"data_offsets":[4,6]},"c":{"dtype":"F32","shape":[],"data_offsets":[6,10]}}'
st_len=$(printf '%s' "$st_hdr" | wc -c)
seed safetensors seed-valid "$(printf '\\%03o' "$st_len")\\000\\000\\000\\000\\000\\000\\000$st_hdr\\000\\074\\000\\300\\200\\077\\000\\000\\200\\077"
npy_hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
seed npy seed-v1 "\\223NUMPY\\001\\000$(printf '\\%03o' "$(printf '%s' "$npy_hdr" | wc -c)")\\000$npy_hdr\\000\\000\\200\\077\\000\\000\\000\\300"
npy_hdr2="{'descr': '<f2', 'fortran_order': False, 'shape': (1, 2), }"
seed npy seed-v2 "\\223NUMPY\\002\\000$(printf '\\%03o' "$(printf '%s' "$npy_hdr2" | wc -c)")\\000\\000\\000$npy_hdr2\\000\\074\\000\\300"

# Image seeds are tiny files written by Pillow (and one hand-made interlaced
# palette PNG), as hex: one per format and coding mode the decoders handle.
seed_hex() { # target name hex
    mkdir -p "$root/tests/fuzz/regress-$1"
    h=$3
    bytes=
    while [ -n "$h" ]; do
        rest=${h#??}
        bytes="$bytes\\$(printf '%03o' "0x${h%"$rest"}")"
        h=$rest
    done
    # shellcheck disable=SC2059
    printf "$bytes" > "$root/tests/fuzz/regress-$1/$2"
}
seed_hex image seed-jpeg "$(printf %s \
    ffd8ffe000104a46494600010100000100010000ffdb004300100b0c0e0c0a100e0d0e1211101318281a181616183123 \
    251d283a333d3c3933383740485c4e404457453738506d51575f626768673e4d71797064785c656763ffdb0043011112 \
    121815182f1a1a2f63423842636363636363636363636363636363636363636363636363636363636363636363636363 \
    6363636363636363636363636363ffc00011080002000303012200021101031101ffc400150001010000000000000000 \
    0000000000000005ffc40017100101010100000000000000000000000001001131ffc400150101010000000000000000 \
    0000000000000406ffc4001811000203000000000000000000000000000001033132ffda000c03010002110311003f00 \
    92aaaaeaf56490d514b1e11fffd9)"
seed_hex image seed-jpeg-prog-gray "$(printf %s \
    ffd8ffe000104a46494600010100000100010000ffdb004300100b0c0e0c0a100e0d0e1211101318281a181616183123 \
    251d283a333d3c3933383740485c4e404457453738506d51575f626768673e4d71797064785c656763ffc2000b080002 \
    000301011100ffc40014000100000000000000000000000000000004ffda000801010000000127ffc400141001000000 \
    00000000000000000000000000ffda00080101000105027fffc40014100100000000000000000000000000000000ffda \
    0008010100063f027fffc40014100100000000000000000000000000000000ffda0008010100013f217fffda00080101 \
    000000107fffc40017100100030000000000000000000000000001001131ffda0008010100013f1055556d7567ffd9)"
seed_hex image seed-png "$(printf %s \
    89504e470d0a1a0a0000000d49484452000000030000000208020000001216f14d0000001c49444154789c6364f8cf70 \
    425e83818181f1849c06030303030303002bb1031f037c1b730000000049454e44ae426082)"
seed_hex image seed-png-palette-interlaced "$(printf %s \
    89504e470d0a1a0a0000000d4948445200000004000000030203000001be9d76c30000000c504c5445ff000000ff0000 \
    00ff0909095c717e860000001249444154789c636060686048602800e227000b600295aecb59800000000049454e44ae \
    426082)"
seed_hex image seed-webp-lossless 5249464622000000574542505650384c150000002f024000000ff08fff411e94f98f34dce020a2ff2100
seed_hex image seed-webp-lossy "$(printf %s \
    52494646400000005745425056503820340000009001009d012a0300020002c04c25a80274ba00039800feed4ff3bdbc \
    fbf85f5e7b4ef2fff2e3265e50fd13e96bb7dc5e80000000)"
seed_hex image seed-gif 4749463837610300020081000000ff00c81e280000000000002c000000000300020000080700010418383020003b

# PyTorch checkpoint seeds: torch.save({"a": f32[2], "m": {"b": f16[1,2].t()}}),
# zip format and legacy format (torch 1.13).
seed_hex torch seed-zip "$(printf %s \
    504b0304000008080000000000000000000000000000000000000d001500736565642f646174612e706b6c464211005a \
    5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a80027d710028580100000061710163746f7263682e5f7574696c730a5f726562 \
    75696c645f74656e736f725f76320a71022828580700000073746f72616765710363746f7263680a466c6f617453746f \
    726167650a71045801000000307105580300000063707571064b02747107514b004b028571084b018571098963636f6c \
    6c656374696f6e730a4f726465726564446963740a710a2952710b74710c52710d58010000006d710e7d710f58010000 \
    0062711068022828680363746f7263680a48616c6653746f726167650a7111580100000031711268064b02747113514b \
    004b024b018671144b014b0286711589680a2952711674711752711873752e504b07087ee5194eff000000ff00000050 \
    4b0304000008080000000000000000000000000000000000000b000800736565642f646174612f30464204005a5a5a5a \
    0000803f00000040504b070876a53f2e0800000008000000504b03040000080800000000000000000000000000000000 \
    00000b003f00736565642f646174612f3146423b005a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a \
    5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a003c0040504b07087882e97a04000000 \
    04000000504b0304000008080000000000000000000000000000000000000c004200736565642f76657273696f6e4642 \
    3e005a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a \
    5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a330a504b0708d19e67550200000002000000504b010200000000080800000000 \
    00007ee5194eff000000ff0000000d0000000000000000000000000000000000736565642f646174612e706b6c504b01 \
    0200000000080800000000000076a53f2e08000000080000000b000000000000000000000000004f010000736565642f \
    646174612f30504b01020000000008080000000000007882e97a04000000040000000b00000000000000000000000000 \
    98010000736565642f646174612f31504b0102000000000808000000000000d19e675502000000020000000c00000000 \
    00000000000000000014020000736565642f76657273696f6e504b06062c000000000000001e032d0000000000000000 \
    0004000000000000000400000000000000e7000000000000009202000000000000504b06070000000079030000000000 \
    0001000000504b05060000000004000400e7000000920200000000)"
seed_hex torch seed-legacy "$(printf %s \
    80028a0a6cfc9c46f9206aa850192e80024de9032e80027d710028581000000070726f746f636f6c5f76657273696f6e \
    71014de903580d0000006c6974746c655f656e6469616e710288580a000000747970655f73697a657371037d71042858 \
    0500000073686f727471054b025803000000696e7471064b0458040000006c6f6e6771074b0475752e80027d71002858 \
    0100000061710163746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a7102282858070000 \
    0073746f72616765710363746f7263680a466c6f617453746f726167650a710458090000003330363230333936387105 \
    580300000063707571064b024e747107514b004b028571084b018571098963636f6c6c656374696f6e730a4f72646572 \
    6564446963740a710a2952710b74710c52710d58010000006d710e7d710f580100000062711068022828680363746f72 \
    63680a48616c6653746f726167650a71115809000000333638313032313932711268064b024e747113514b004b024b01 \
    8671144b014b0286711589680a2952711674711752711873752e80025d71002858090000003330363230333936387101 \
    58090000003336383130323139327102652e02000000000000000000803f000000400200000000000000003c0040)"

targets=${VTOK_FUZZ_TARGETS:-safetensors npy image torch json model jinja tokenizer}
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"

# The whole library for fuzz_json / fuzz_model, instrumented for coverage.
lib=
case " $targets " in
    *" json "*|*" model "*|*" jinja "*|*" tokenizer "*)
        echo "== building the library with $cc into $out/lib"
        cmake -S "$root" -B "$out/lib" -DCMAKE_C_COMPILER="$(command -v "$cc")" \
            -DCMAKE_BUILD_TYPE=Debug -DVTOK_BUILD_TESTS=OFF \
            -DCMAKE_C_FLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $san" \
            >"$out/lib-cmake.log" 2>&1 || { cat "$out/lib-cmake.log" >&2; exit 1; }
        cmake --build "$out/lib" --target vtok_static -j"${VTOK_FUZZ_JOBS:-2}" >"$out/lib-build.log" 2>&1 ||
            { tail -50 "$out/lib-build.log" >&2; exit 1; }
        lib="$out/lib/libvtok.a"
        ;;
esac

status=0
for t in $targets; do
    tsrcs=$srcs
    tlibs="-lcjson -lz -lm" # zlib: torch.c inflates DEFLATE zip entries
    case $t in
        image)
            # The decoders (src/image/decode*.c, exif.c) and what they use.
            tsrcs="$root/src/core/util.c $root/src/io/file.c $(ls "$root"/src/image/decode*.c)
                   $root/src/image/exif.c"
            tlibs="-ljpeg -lpng -lwebp -lm" ;;
        json|model)
            tsrcs="-DVTOK_FUZZ_ROOT=\"$root\" $lib"
            tlibs="-lcjson -ljpeg -lpng -lwebp -lz -lm -lpthread" ;;
        jinja|tokenizer) # chat templates; tokenizer.json and text (src/text/)
            tsrcs="$lib"
            tlibs="-lcjson -ljpeg -lpng -lwebp -lz -lm -lpthread" ;;
    esac
    bin="$out/fuzz_$t"
    reg="$root/tests/fuzz/regress-$t"
    echo "== building $bin with $cc"
    # shellcheck disable=SC2086
    "$cc" $cflags -I"$root/include" -I"$out/include" -I"$root/src" "$root/tests/fuzz/fuzz_$t.c" $tsrcs \
        $tlibs -o "$bin"
    # Replay: every committed file must run clean (one process, files in order).
    if [ -d "$reg" ] && [ -n "$(ls -A "$reg")" ]; then
        echo "== replaying $(ls "$reg" | wc -l) files of tests/fuzz/regress-$t"
        if ! "$bin" -timeout=10 -rss_limit_mb=2048 "$reg"/* >"$out/replay-$t.log" 2>&1; then
            tail -40 "$out/replay-$t.log" >&2
            echo "== fuzz_$t FAILED on its regression corpus (log: $out/replay-$t.log)" >&2
            status=1
            continue
        fi
    fi
    mkdir -p "$root/tests/fuzz/corpus-$t"
    echo "== running fuzz_$t for ${secs}s"
    # shellcheck disable=SC2046
    if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$out/crash-$t-" "$root/tests/fuzz/corpus-$t" \
            $([ -d "$reg" ] && echo "$reg"); then
        echo "== fuzz_$t FAILED: reproducer in $out/crash-$t-*" >&2
        status=1
    fi
done
[ $status -eq 0 ] && echo "== all fuzz targets ran clean for ${secs}s each"
exit $status
