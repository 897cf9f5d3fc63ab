/*
 * dispatch.c - CPU feature detection and the kernel tables.
 *
 * Tables are built once (pthread_once) in ISA order, as dav1d does: the avx2
 * table starts as a copy of the reference and overrides what x86/NAME_avx2.c
 * implements; the avx512 table starts as a copy of the avx2 one. A table is
 * offered only if the CPU reports the instructions AND the OS saves the
 * register state (XCR0), since a CPU flag alone does not make ZMM usable.
 *
 * The active table is one atomic pointer, so vt_kernels_init() may switch it
 * at any time from any thread; a caller that already fetched the old table
 * keeps a valid table (all tables are static and never freed).
 *
 * Forcing the reference (reproducibility, debugging a suspected SIMD bug):
 *   VTOK_FORCE_REF=1        at first use, the reference table
 *   VTOK_KERNELS=ref|avx2|avx512
 *                           at first use, cap the ISA (e.g. test the avx2
 *                           path on an AVX-512 machine)
 *   vt_kernels_init(1) / vtok_force_reference_kernels(1)
 *                           at any time; an explicit call overrides the
 *                           environment.
 */
#include "kernels/kernels_internal.h"
#include "vtok.h" /* vtok_force_reference_kernels, vtok_kernel_name */

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define VT_X86 1
#endif

static vt_cpu g_cpu;
static vt_kernels g_ref, g_avx2, g_avx512;
static int g_have_avx2, g_have_avx512;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static _Atomic(const vt_kernels *) g_active;

#if VT_X86
static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    /* xgetbv by opcode so the baseline build needs no -mxsave. */
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect_cpu(vt_cpu *c)
{
    unsigned a, b, cx, d;
    memset(c, 0, sizeof *c);
    if (!__get_cpuid(1, &a, &b, &cx, &d))
        return;
    const int osxsave = (cx >> 27) & 1, avx = (cx >> 28) & 1;
    const int fma = (cx >> 12) & 1, f16c = (cx >> 29) & 1;
    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    /* XCR0: 1 SSE, 2 AVX (YMM hi), 5 opmask, 6 ZMM hi256, 7 hi16 ZMM,
     * 17 TILECFG, 18 TILEDATA. */
    const int os_ymm = avx && (xcr0 & 0x6) == 0x6;
    const int os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0;
    const int os_amx = (xcr0 & 0x60000) == 0x60000;
    c->os_avx = os_ymm;
    c->os_avx512 = os_zmm;
    c->fma = os_ymm && fma;
    c->f16c = os_ymm && f16c;

    unsigned maxleaf = __get_cpuid_max(0, NULL);
    if (maxleaf < 7)
        return;
    __cpuid_count(7, 0, a, b, cx, d);
    const unsigned max7 = a;
    c->avx2 = os_ymm && ((b >> 5) & 1);
    c->avx512f = os_zmm && ((b >> 16) & 1);
    c->avx512dq = os_zmm && ((b >> 17) & 1);
    c->avx512bw = os_zmm && ((b >> 30) & 1);
    c->avx512vl = os_zmm && ((b >> 31) & 1);
    c->avx512vnni = os_zmm && ((cx >> 11) & 1);
    c->amx_bf16 = os_amx && ((d >> 22) & 1);
    c->amx_tile = os_amx && ((d >> 24) & 1);
    c->amx_int8 = os_amx && ((d >> 25) & 1);
    if (max7 >= 1) {
        __cpuid_count(7, 1, a, b, cx, d);
        c->avx512bf16 = os_zmm && ((a >> 5) & 1);
    }
}
#else
static void detect_cpu(vt_cpu *c)
{
    memset(c, 0, sizeof *c);
}
#endif

static void build_tables(void)
{
    detect_cpu(&g_cpu);

    g_ref = (vt_kernels){
        .name = "ref",
        .gemm_f32 = vt_ref_gemm_f32,
        .layernorm_f32 = vt_ref_layernorm_f32,
        .softmax_f32 = vt_ref_softmax_f32,
        .attn_f32 = vt_ref_attn_f32,
        .gelu_erf_f32 = vt_ref_gelu_erf_f32,
        .gelu_tanh_f32 = vt_ref_gelu_tanh_f32,
        .quick_gelu_f32 = vt_ref_quick_gelu_f32,
        .silu_f32 = vt_ref_silu_f32,
        .tanh_f32 = vt_ref_tanh_f32,
        .add_f32 = vt_ref_add_f32,
        .scale_f32 = vt_ref_scale_f32,
        .rmsnorm_f32 = vt_ref_rmsnorm_f32,
        .rope_f32 = vt_ref_rope_f32,
        .bf16_row = vt_ref_bf16_row,
        .u8_row = vt_ref_u8_row,
        .gemm_bf16 = vt_ref_gemm_bf16,
        .gemm_i8 = vt_ref_gemm_i8,
        .q8_row = vt_ref_q8_row,
        .gemm_q4 = vt_ref_gemm_q4,
        .resample_h_table_ints = vt_ref_resample_h_table_ints,
        .resample_h_prepare = vt_ref_resample_h_prepare,
        .resample_h = vt_ref_resample_h,
        .resample_v = vt_ref_resample_v,
    };

#if VT_X86
    /* gemm_avx2.c is built with -mavx2 -mfma -mf16c. */
    g_have_avx2 = g_cpu.avx2 && g_cpu.fma && g_cpu.f16c;
    if (g_have_avx2) {
        g_avx2 = g_ref;
        g_avx2.name = "avx2";
        g_avx2.gemm_f32 = vt_gemm_f32_avx2;
        g_avx2.gemm_packed_floats = vt_gemm_packed_floats_avx2;
        g_avx2.gemm_pack_nk = vt_gemm_pack_nk_avx2;
        g_avx2.gemm_f32_packed = vt_gemm_f32_packed_avx2;
        g_avx2.attn_f32 = vt_attn_f32_avx2;
        g_avx2.resample_h_table_ints = vt_resample_h_table_ints_avx2;
        g_avx2.resample_h_prepare = vt_resample_h_prepare_avx2;
        g_avx2.resample_h = vt_resample_h_avx2;
        g_avx2.resample_v = vt_resample_v_avx2;
    }
    /* NAME_avx512.c files are built with F, BW, VL, DQ on top of the avx2 flags. */
    g_have_avx512 = g_have_avx2 && g_cpu.avx512f && g_cpu.avx512bw && g_cpu.avx512vl &&
                    g_cpu.avx512dq;
    if (g_have_avx512) {
        g_avx512 = g_avx2;
        g_avx512.name = "avx512";
        g_avx512.gemm_f32 = vt_gemm_f32_avx512;
        g_avx512.gemm_packed_floats = vt_gemm_packed_floats_avx512;
        g_avx512.gemm_pack_nk = vt_gemm_pack_nk_avx512;
        g_avx512.gemm_f32_packed = vt_gemm_f32_packed_avx512;
        g_avx512.layernorm_f32 = vt_layernorm_f32_avx512;
        g_avx512.softmax_f32 = vt_softmax_f32_avx512;
        g_avx512.attn_f32 = vt_attn_f32_avx512;
        if (g_cpu.avx512bf16)
            g_avx512.attn_bf16 = vt_attn_bf16_avx512;
        g_avx512.gelu_erf_f32 = vt_gelu_erf_f32_avx512;
        g_avx512.gelu_tanh_f32 = vt_gelu_tanh_f32_avx512;
        g_avx512.quick_gelu_f32 = vt_quick_gelu_f32_avx512;
        g_avx512.silu_f32 = vt_silu_f32_avx512;
        g_avx512.tanh_f32 = vt_tanh_f32_avx512;
        g_avx512.add_f32 = vt_add_f32_avx512;
        g_avx512.scale_f32 = vt_scale_f32_avx512;
        g_avx512.rmsnorm_f32 = vt_rmsnorm_f32_avx512;
        g_avx512.rope_f32 = vt_rope_f32_avx512;
        /* NAME_avx512bf16.c / NAME_avx512vnni.c add -mavx512bf16 / -mavx512vnni. */
        if (g_cpu.avx512bf16) {
            g_avx512.bf16_row = vt_bf16_row_avx512bf16;
            g_avx512.gemm_bf16 = vt_gemm_bf16_avx512bf16;
        }
        if (g_cpu.avx512vnni) {
            g_avx512.u8_row = vt_u8_row_avx512vnni;
            g_avx512.gemm_i8 = vt_gemm_i8_avx512vnni;
            g_avx512.q8_row = vt_q8_row_avx512vnni;
            g_avx512.gemm_q4 = vt_gemm_q4_avx512vnni;
        }
    }
#endif
}

/* Best table at or below `cap` ("ref", "avx2"; NULL or anything else: no cap). */
static const vt_kernels *best_table(const char *cap)
{
    int level = 2;
    if (cap && strcmp(cap, "ref") == 0)
        level = 0;
    else if (cap && strcmp(cap, "avx2") == 0)
        level = 1;
    if (level >= 2 && g_have_avx512)
        return &g_avx512;
    if (level >= 1 && g_have_avx2)
        return &g_avx2;
    return &g_ref;
}

void vt_kernels_init(int force_ref)
{
    pthread_once(&g_once, build_tables);
    atomic_store(&g_active, force_ref ? &g_ref : best_table(NULL));
}

const vt_kernels *vt_kernels_get(void)
{
    const vt_kernels *t = atomic_load_explicit(&g_active, memory_order_acquire);
    if (t)
        return t;
    pthread_once(&g_once, build_tables);
    const char *force = getenv("VTOK_FORCE_REF");
    const char *cap = getenv("VTOK_KERNELS");
    if (cap && !*cap)
        cap = NULL;
    const vt_kernels *want =
        (force && *force && strcmp(force, "0") != 0) ? &g_ref : best_table(cap);
    /* First use races only with itself or an explicit init; an explicit
     * vt_kernels_init() that got there first wins. */
    const vt_kernels *expected = NULL;
    if (!atomic_compare_exchange_strong(&g_active, &expected, want))
        return expected;
    return want;
}

const vt_kernels *vt_kernels_ref(void)
{
    pthread_once(&g_once, build_tables);
    return &g_ref;
}

const vt_kernels *vt_kernels_avx2(void)
{
    pthread_once(&g_once, build_tables);
    return g_have_avx2 ? &g_avx2 : NULL;
}

const vt_kernels *vt_kernels_avx512(void)
{
    pthread_once(&g_once, build_tables);
    return g_have_avx512 ? &g_avx512 : NULL;
}

const vt_cpu *vt_cpu_get(void)
{
    pthread_once(&g_once, build_tables);
    return &g_cpu;
}

void vtok_force_reference_kernels(int on)
{
    vt_kernels_init(on);
}

const char *vtok_kernel_name(void)
{
    return vt_kernels_get()->name;
}
