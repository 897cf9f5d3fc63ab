/*
 * gemm_avx512.c - float32 GEMM for AVX-512 (F/BW/VL/DQ + FMA).
 *
 * Goto/BLIS structure (Goto & van de Geijn, "Anatomy of high-performance
 * matrix multiplication", TOMS 2008), sized for a 48 KiB L1 / 1 MiB L2 core:
 *
 *   for jc over N in blocks of <= NC columns
 *     for pc over K in blocks of <= KC         (balanced: no 1-wide last block)
 *       pack B[pc.., jc..] into scratch as 32-column panels, k-major inside a
 *         panel, zero-padded to the panel width (16 for a last panel of <= 16)
 *       for ic over M in steps of MR = 12 rows
 *         for jr over the panels:  12 x 32 microkernel over kc
 *
 * The packed B block (KC x NC floats = 480 KiB) lives in L2; the 12 rows of
 * A being used (12 x KC floats = 12 KiB) stay in L1 across the jr loop, so A
 * needs no transposing pack: the microkernel broadcasts A from its rows.
 * When the stride would pile the 12 rows into a few L1 sets (lda a multiple
 * of 1024 floats: K = 1024 or 4096, ViT-L's fused QKV), the rows are first
 * copied to a buffer with a padded stride (pack_a: plain vector copies, ~1%
 * of the FMA time); otherwise A is read in place and only B is ever copied.
 *
 * Scratch: [packed B block: KC*NC][copied A rows: MR*APACK_LD(KC)], which
 * fits VT_GEMM_SCRATCH_FLOATS (checked by _Static_assert below).
 *
 * Measured single-thread on the dev machine (Zen 5, 2 x 512-bit FMA pipes,
 * ~230 GFLOP/s with a pure FMA loop; a shared, noisy VM): ViT Linear shapes
 * 160-180 GFLOP/s (70-78%), attention shapes 200-230 (85-98%); see
 * bench/bench_gemm.c. On Linear shapes ~10% of the time is packing the weight
 * from DRAM (~1.5 ms for 4096 x 1024; a plain 16 MiB read takes ~0.7 ms), so
 * the microkernel itself runs at ~88%; models therefore pack their Linear
 * weights once at load (vt_gemm_pack_nk_avx512: the same panels, for all of
 * N) and run vt_gemm_f32_packed_avx512, which skips that step (the driver,
 * gemm_driver.h, shared with gemm_avx2.c). Tried and not kept (no gain beyond
 * the noise): a transposing A pack
 * into [k][12], the jr-outer order with the B micro-panel held in L1, KC in
 * {128, 192, 384, 512}, software prefetch of B inside the microkernel, a
 * second farther prefetch while packing B, and (prepacked) fetching the next
 * B block into L2 while the current one runs.
 *
 * Microkernel: 24 zmm accumulators (12 rows x 2 vectors), 2 B loads and 12
 * broadcasts per k for 24 FMAs, so the two FMA pipes, not loads, are the
 * limit. Rows past M use the same kernel instantiated for fewer rows; columns
 * past N are computed on the zero padding and never stored (masked stores).
 *
 * Results: the first K block writes C = [C +] (acc + bias); later blocks do
 * C += acc. Every sum is float32 FMA in k order inside a block, so the result
 * differs from the reference only by rounding (FMA, and blocks of KC).
 */
#include "kernels/kernels_internal.h"
#include "kernels/x86/vmath_avx512.h"

#include <immintrin.h>

#define MR 12  /* rows per microkernel                    */
#define NR 32  /* columns per packed panel (2 zmm)        */
#define KC 256 /* max k per packed block                  */
#define NC 480 /* max columns per packed block            */

/* Row stride of the copied A rows: 64-byte aligned, and 16 floats more than
 * needed so that consecutive rows fall in different L1 sets. */
#define APACK_LD(kc) (((kc) + 15) / 16 * 16 + 16)

_Static_assert(KC * NC + MR * APACK_LD(KC) <= VT_GEMM_SCRATCH_FLOATS,
               "packed B and the A rows must fit the scratch");

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ------------------------------------------------------------- packing -- */

/* B is [K,N]: panel[k][0..w) = B[pc+k][j0..j0+w), zero past nr. Row by row,
 * so B is read as kc contiguous runs of nc floats. */
static void pack_kn(int64_t kc, int64_t nc, const float *B, int64_t ldb, float *dst)
{
    const int64_t nfull = nc / NR * NR, rem = nc - nfull;
    const __mmask16 m0 = vt_tail_mask16(rem), m1 = rem > 16 ? vt_tail_mask16(rem - 16) : 0;
    float *tail = dst + nfull * kc;
    const int tw = rem > 16 ? 32 : 16;
    for (int64_t k = 0; k < kc; k++) {
        const float *src = B + k * ldb;
        float *p = dst + k * NR;
        for (int64_t j = 0; j < nfull; j += NR, p += NR * kc) {
            _mm512_store_ps(p, _mm512_loadu_ps(src + j));
            _mm512_store_ps(p + 16, _mm512_loadu_ps(src + j + 16));
        }
        if (rem) {
            float *q = tail + k * tw;
            _mm512_store_ps(q, _mm512_maskz_loadu_ps(m0, src + nfull));
            if (tw == 32)
                _mm512_store_ps(q + 16, _mm512_maskz_loadu_ps(m1, src + nfull + 16));
        }
    }
}

/* In-register transpose of 16 rows of 16 floats. */
ALWAYS_INLINE void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    /* r[4q + s] now holds, per 128-bit lane L, column 4L + s of rows 4q..4q+3. */
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], _MM_SHUFFLE(2, 0, 2, 0));
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], _MM_SHUFFLE(3, 1, 3, 1));
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], _MM_SHUFFLE(2, 0, 2, 0));
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], _MM_SHUFFLE(3, 1, 3, 1));
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], _MM_SHUFFLE(2, 0, 2, 0));
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], _MM_SHUFFLE(3, 1, 3, 1));
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], _MM_SHUFFLE(2, 0, 2, 0));
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], _MM_SHUFFLE(3, 1, 3, 1));
    }
}

/* 16 columns (rows of B) x kc into a panel of width w at column offset off. */
static void pack_nk16(int64_t kc, int64_t nr, const float *B, int64_t ldb, float *p, int w)
{
    __m512 r[16];
    int64_t k = 0;
    for (; k < kc; k += 16) {
        const __mmask16 mk = vt_tail_mask16(kc - k);
        /* The 16 rows are 16 short streams (kc floats each, often in 16
         * different pages), too short for the hardware prefetcher: fetching
         * two lines ahead halved the packing time of a 4096 x 1024 weight. */
        for (int i = 0; i < 16; i++)
            if (i < nr)
                _mm_prefetch((const char *)(B + i * ldb + k + 32), _MM_HINT_T0);
        for (int i = 0; i < 16; i++)
            r[i] = i < nr ? _mm512_maskz_loadu_ps(mk, B + i * ldb + k) : _mm512_setzero_ps();
        transpose16(r);
        const int64_t kn = kc - k < 16 ? kc - k : 16;
        for (int64_t i = 0; i < kn; i++)
            _mm512_store_ps(p + (k + i) * w, r[i]);
    }
}

/* B is [N,K]: panel[k][n] = B[j0+n][pc+k] (a transpose), zero past nr. */
static void pack_nk(int64_t kc, int64_t nc, const float *B, int64_t ldb, float *dst)
{
    for (int64_t j = 0; j < nc; j += NR) {
        const int64_t nr = nc - j < NR ? nc - j : NR;
        float *p = dst + j * kc;
        const float *src = B + j * ldb;
        if (nr > 16) {
            pack_nk16(kc, 16, src, ldb, p, 32);
            pack_nk16(kc, nr - 16, src + 16 * ldb, ldb, p + 16, 32);
        } else {
            pack_nk16(kc, nr, src, ldb, p, 16);
        }
    }
}

/*
 * Copy A rows [0, mr) x [0, kc) to ap with row stride ldp (see APACK_LD).
 * Not a transpose: the copy exists to give the 12 rows a stride that does not
 * alias in L1. With lda a multiple of 1024 floats (K = 1024, 4096, or a
 * fused-QKV view) all 12 rows of a k-chunk map to one 12-way L1 set, and the
 * B stream keeps evicting them (measured: -20% on ViT-L shapes).
 */
static void pack_a(int mr, int64_t kc, const float *A, int64_t lda, float *ap, int64_t ldp)
{
    const __mmask16 mt = vt_tail_mask16(kc & 15);
    for (int i = 0; i < mr; i++) {
        const float *src = A + i * lda;
        float *dst = ap + i * ldp;
        int64_t k = 0;
        for (; k + 16 <= kc; k += 16)
            _mm512_store_ps(dst + k, _mm512_loadu_ps(src + k));
        if (k < kc)
            _mm512_store_ps(dst + k, _mm512_maskz_loadu_ps(mt, src + k));
    }
}

/* --------------------------------------------------------- microkernel -- */

typedef struct {
    const float *bias; /* bias + j, or NULL (only in the first K block)     */
    int load_c;        /* add the old C (accumulate, or not the first block) */
    __mmask16 m0, m1;  /* store masks for the 1st / 2nd vector of the tile  */
} tile_io;

/*
 * C[0..mr, 0..16*nv) (+)= A[0..mr, 0..kc) * panel. mr and nv are compile-time
 * constants in every instantiation below, so the loops unroll and acc[][]
 * lives in registers. A rows are addressed as base + {0,1,2} * lda from four
 * bases three rows apart, which keeps the kernel within the 16 GPRs.
 */
ALWAYS_INLINE void ukernel(const int mr, const int nv, int64_t kc, const float *a, int64_t lda,
                           const float *bp, float *c, int64_t ldc, const tile_io *io)
{
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        if (r < mr) {
            acc[r][0] = _mm512_setzero_ps();
            acc[r][1] = _mm512_setzero_ps();
        }
    }
    const size_t ldab = (size_t)lda * sizeof(float);
    const char *p0 = (const char *)a;
    const char *p1 = mr > 3 ? p0 + 3 * ldab : p0;
    const char *p2 = mr > 6 ? p0 + 6 * ldab : p0;
    const char *p3 = mr > 9 ? p0 + 9 * ldab : p0;
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(bp);
        const __m512 b1 = nv > 1 ? _mm512_load_ps(bp + 16) : b0;
        bp += 16 * nv;
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            if (r < mr) {
                const char *base = r < 3 ? p0 : r < 6 ? p1 : r < 9 ? p2 : p3;
                const __m512 av = _mm512_set1_ps(*(const float *)(base + (r % 3) * ldab));
                acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
                if (nv > 1)
                    acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
            }
        }
        p0 += sizeof(float);
        p1 += sizeof(float);
        p2 += sizeof(float);
        p3 += sizeof(float);
    }
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
    if (io->bias) {
        bias0 = _mm512_maskz_loadu_ps(io->m0, io->bias);
        if (nv > 1)
            bias1 = _mm512_maskz_loadu_ps(io->m1, io->bias + 16);
    }
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        if (r < mr) {
            float *cr = c + r * ldc;
            __m512 v0 = acc[r][0], v1 = acc[r][1];
            if (io->bias) {
                v0 = _mm512_add_ps(v0, bias0);
                v1 = _mm512_add_ps(v1, bias1);
            }
            if (io->load_c)
                v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(io->m0, cr), v0);
            _mm512_mask_storeu_ps(cr, io->m0, v0);
            if (nv > 1) {
                if (io->load_c)
                    v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(io->m1, cr + 16), v1);
                _mm512_mask_storeu_ps(cr + 16, io->m1, v1);
            }
        }
    }
}

typedef void (*ukernel_fn)(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                           int64_t ldc, const tile_io *io);

#define DEF_UK(mr, nv)                                                                      \
    static void uk_##mr##_##nv(int64_t kc, const float *a, int64_t lda, const float *bp,    \
                               float *c, int64_t ldc, const tile_io *io)                    \
    {                                                                                       \
        ukernel(mr, nv, kc, a, lda, bp, c, ldc, io);                                        \
    }
#define DEF_UK2(mr) DEF_UK(mr, 1) DEF_UK(mr, 2)
DEF_UK2(1) DEF_UK2(2) DEF_UK2(3) DEF_UK2(4) DEF_UK2(5) DEF_UK2(6)
DEF_UK2(7) DEF_UK2(8) DEF_UK2(9) DEF_UK2(10) DEF_UK2(11) DEF_UK2(12)

/* ukernels[mr][nv - 1] */
static const ukernel_fn ukernels[MR + 1][2] = {
    {NULL, NULL},         {uk_1_1, uk_1_2},   {uk_2_1, uk_2_2},   {uk_3_1, uk_3_2},
    {uk_4_1, uk_4_2},     {uk_5_1, uk_5_2},   {uk_6_1, uk_6_2},   {uk_7_1, uk_7_2},
    {uk_8_1, uk_8_2},     {uk_9_1, uk_9_2},   {uk_10_1, uk_10_2}, {uk_11_1, uk_11_2},
    {uk_12_1, uk_12_2},
};

/* ------------------------------------------------------------- driver -- */

/* Epilogue arguments of a tile storing nr columns of a panel. */
static inline tile_io gemm_tile_io(const float *bias, int load_c, int64_t nr, int wide)
{
    (void)wide;
    return (tile_io){
        .bias = bias,
        .load_c = load_c,
        .m0 = vt_tail_mask16(nr),
        .m1 = nr > 16 ? vt_tail_mask16(nr - 16) : 0,
    };
}

#define GEMM_L1_ROWS_PER_SET 3
#define GEMM_ISA avx512
#include "kernels/x86/gemm_driver.h"
