/*
 * lowp_avx512bf16.c - bfloat16 Linear layers with AVX512-BF16 (VDPBF16PS).
 *
 * VDPBF16PS multiplies 16 pairs of bf16 and adds both products to 16 f32
 * lanes: 64 flops per instruction against an FMA's 32. Measured on the dev
 * machine (Zen 5, an asm loop of independent accumulators): 425 GFLOP/s per
 * core vs 230 for f32 FMA, so ~1.85x the f32 GEMM's ceiling, with half the
 * weight bytes to stream.
 *
 * Layout (kernels.h): W is already in k-pair panels of 32 columns; A rows
 * were converted to bf16 by the op (vt_bf16_row_avx512bf16). The blocking is
 * the f32 kernel's (gemm_avx512.c) with the k dimension counted in pairs:
 *   for jc over the chunk's columns in blocks of <= NC
 *     for pc over k pairs in blocks of <= KCP  (B block KCP x NC bf16 pairs
 *                                               = 256 KiB: L2)
 *       for ic over rows in steps of 12        (12 A rows x KCP pairs: L1)
 *         for jr over the 32-column panels:  12 x 32 microkernel
 * The first k block writes C = acc + bias, later ones add. Partial sums are
 * float32 (VDPBF16PS rounds once per instruction), so results differ from
 * the reference loop only by rounding order.
 */
#include "kernels/x86/lowp_avx512.h"

#define KCP 256 /* k pairs per block */
#define NC  256

void vt_bf16_row_avx512bf16(int64_t K, const float *x, uint16_t *y)
{
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        /* cvtne2ps2bf16(hi, lo): lo's 16 values land in the low half. */
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k + 16), _mm512_loadu_ps(x + k));
        _mm512_storeu_si512((void *)(y + k), (__m512i)v);
    }
    for (; k < K; k += 16) {
        const int64_t r = K - k < 16 ? K - k : 16;
        const __mmask16 m = (__mmask16)((1u << r) - 1u);
        __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + k));
        _mm256_mask_storeu_epi16(y + k, m, (__m256i)v);
    }
    if (K & 1)
        y[K] = 0;
}

/* C[0..mr, 0..32) (+)= A[0..mr, pairs 0..kp) x panel (pair-major, 64 bf16 per pair). */
ALWAYS_INLINE void ukernel(const int mr, int64_t kp, const uint16_t *a, int64_t lda,
                           const uint16_t *bp, float *c, int64_t ldc, const lp_io *io)
{
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
        if (r < mr) {
            acc[r][0] = _mm512_setzero_ps();
            acc[r][1] = _mm512_setzero_ps();
        }
    const size_t ldab = (size_t)lda * sizeof(uint16_t);
    const char *p0 = (const char *)a;
    const char *p1 = mr > 3 ? p0 + 3 * ldab : p0;
    const char *p2 = mr > 6 ? p0 + 6 * ldab : p0;
    const char *p3 = mr > 9 ? p0 + 9 * ldab : p0;
    for (int64_t p = 0; p < kp; p++) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)bp);
        const __m512bh b1 = (__m512bh)_mm512_load_si512((const void *)(bp + 32));
        bp += 2 * NR;
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            if (r < mr) {
                const char *base = r < 3 ? p0 : r < 6 ? p1 : r < 9 ? p2 : p3;
                const __m512bh av =
                    (__m512bh)_mm512_set1_epi32(*(const int32_t *)(base + (r % 3) * ldab));
                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
                acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
            }
        }
        p0 += 4;
        p1 += 4;
        p2 += 4;
        p3 += 4;
    }
    __m512 bias0, bias1;
    lp_bias(io, &bias0, &bias1);
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
        if (r < mr)
            lp_store_row(io, c + r * ldc, acc[r][0], acc[r][1], bias0, bias1);
}

typedef void (*ukernel_fn)(int64_t kp, const uint16_t *a, int64_t lda, const uint16_t *bp,
                           float *c, int64_t ldc, const lp_io *io);
#define DEF_UK(mr)                                                                          \
    static void uk_##mr(int64_t kp, const uint16_t *a, int64_t lda, const uint16_t *bp,     \
                        float *c, int64_t ldc, const lp_io *io)                           \
    {                                                                                       \
        ukernel(mr, kp, a, lda, bp, c, ldc, io);                                            \
    }
DEF_UK(1) DEF_UK(2) DEF_UK(3) DEF_UK(4) DEF_UK(5) DEF_UK(6)
DEF_UK(7) DEF_UK(8) DEF_UK(9) DEF_UK(10) DEF_UK(11) DEF_UK(12)
static const ukernel_fn ukernels[MR + 1] = {NULL,  uk_1,  uk_2, uk_3, uk_4,  uk_5, uk_6,
                                            uk_7,  uk_8,  uk_9, uk_10, uk_11, uk_12};

typedef struct {
    const uint16_t *A, *W;
    const float    *bias;
    float          *C;
    int64_t         lda, ldc, n0, panel;
    int             accumulate;
} bf16_args;

static inline void bf16_tile(const void *ctx, const lp_tile *t)
{
    const bf16_args *g = ctx;
    const lp_io io = {.bias = t->first && g->bias ? g->bias + t->j : NULL,
                      .load_c = g->accumulate || !t->first,
                      .m0 = vt_tail_mask16(t->nr),
                      .m1 = vt_tail_mask16(t->nr - 16)};
    const uint16_t *bp = g->W + ((g->n0 + t->j) / NR) * g->panel + t->pc * 2 * NR;
    ukernels[t->mr](t->kb, g->A + t->ic * g->lda + 2 * t->pc, g->lda, bp,
                    g->C + t->ic * g->ldc + t->j, g->ldc, &io);
}

void vt_gemm_bf16_avx512bf16(int64_t M, int64_t K, int64_t n0, int64_t n, const uint16_t *A,
                             int64_t lda, const uint16_t *W, const float *bias, float *C,
                             int64_t ldc, int accumulate)
{
    if (M <= 0 || n <= 0)
        return;
    const int64_t pairs = vt_lp_kpad(K, 2) / 2;
    const bf16_args g = {.A = A, .W = W, .bias = bias, .C = C, .lda = lda, .ldc = ldc,
                         .n0 = n0, .panel = pairs * 2 * NR /* bf16 elements per panel */,
                         .accumulate = accumulate};
    lp_walk(M, n, vt_balanced_block(n, NC, NR), pairs, vt_balanced_block(pairs, KCP, 4),
            bf16_tile, &g);
}
