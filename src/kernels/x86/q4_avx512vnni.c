/*
 * q4_avx512vnni.c - 4-bit block weights x int8 block activations with
 * AVX512-VNNI (the q4 section of kernels.h).
 *
 * Decode reads every weight once per token, so this kernel is a stream: a
 * panel of 32 columns is one contiguous sweep of 576-byte blocks (512 bytes
 * of nibbles, 32 f16 scales). Per block and half panel, 4 loads of 64 bytes
 * unpack (and / shift) into 8 k quads of 16 columns, the unsigned operand of
 * VPDPBUSD; the signed activations are broadcast 4 bytes at a time. The
 * integer dot of a block is exact; it leaves the block as one FMA into a
 * float accumulator per column, in block order, exactly as the reference.
 * Up to 6 rows share each unpacked block (prefill); the panel's blocks stay
 * in L1/L2 while the row groups pass over them.
 */
#include "kernels/kernels_internal.h"

#include <immintrin.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define QR 6 /* rows per pass over a panel */

/* acc += dot4(u8 a, s8 b) per lane; inline asm as in lowp_avx512vnni.c
 * (GCC 12 spills the accumulators around the builtin). */
ALWAYS_INLINE __m512i dpbusd(__m512i acc, __m512i a, __m512i b)
{
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
}

static inline __mmask16 tail16(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

/*
 * One panel (32 columns, `cols` live) for mr rows. Per block: for each of
 * the 4 nibble loads of each half, two k quads (low / high nibbles) of 16
 * columns; each row's quad of activations is broadcast once for both
 * halves. Integer sums per (row, half) run over the block's 8 quads (two
 * chains for few rows: VPDPBUSD latency), then leave as one FMA into the
 * row's float accumulators, in block order (the reference's order).
 */
ALWAYS_INLINE void panel_rows(const int mr, int64_t nb, int64_t Kp, const uint8_t *A, int64_t lda,
                              const uint8_t *P, const float *bias, float *C, int64_t ldc,
                              int64_t cols, int accumulate)
{
    const int split = mr <= 3;
    __m512 acc[QR][2];
#pragma GCC unroll 6
    for (int r = 0; r < QR; r++)
        if (r < mr)
            acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const __m512i lo4 = _mm512_set1_epi8(0x0f);
    const float *S[QR];
    const int32_t *AS[QR];
#pragma GCC unroll 6
    for (int r = 0; r < QR; r++) {
        S[r] = (const float *)(A + (r < mr ? r : 0) * lda + Kp);
        AS[r] = (const int32_t *)(S[r] + nb);
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = P + b * VT_Q4_BYTES;
        __m512i i0[QR][2], i1[QR][2];
#pragma GCC unroll 6
        for (int r = 0; r < QR; r++)
            if (r < mr) {
                i0[r][0] = i0[r][1] = _mm512_setzero_si512();
                if (split)
                    i1[r][0] = i1[r][1] = _mm512_setzero_si512();
            }
#pragma GCC unroll 4
        for (int L = 0; L < 4; L++) {
            const __m512i x0 = _mm512_loadu_si512((const void *)(blk + L * 64));
            const __m512i x1 = _mm512_loadu_si512((const void *)(blk + 256 + L * 64));
            const __m512i w0l = _mm512_and_si512(x0, lo4);
            const __m512i w0h = _mm512_and_si512(_mm512_srli_epi16(x0, 4), lo4);
            const __m512i w1l = _mm512_and_si512(x1, lo4);
            const __m512i w1h = _mm512_and_si512(_mm512_srli_epi16(x1, 4), lo4);
#pragma GCC unroll 6
            for (int r = 0; r < QR; r++) {
                if (r >= mr)
                    continue;
                int32_t a[2]; /* memcpy: the activations are bytes (no aliasing) */
                memcpy(a, A + r * lda + b * VT_Q4_BLOCK + 8 * L, 8);
                const __m512i al = _mm512_set1_epi32(a[0]), ah = _mm512_set1_epi32(a[1]);
                if (split && (L & 1)) {
                    i1[r][0] = dpbusd(dpbusd(i1[r][0], w0l, al), w0h, ah);
                    i1[r][1] = dpbusd(dpbusd(i1[r][1], w1l, al), w1h, ah);
                } else {
                    i0[r][0] = dpbusd(dpbusd(i0[r][0], w0l, al), w0h, ah);
                    i0[r][1] = dpbusd(dpbusd(i0[r][1], w1l, al), w1h, ah);
                }
            }
        }
        const __m512 d0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + 512)));
        const __m512 d1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + 544)));
#pragma GCC unroll 6
        for (int r = 0; r < QR; r++) {
            if (r >= mr)
                continue;
            const __m512i off = _mm512_set1_epi32(8 * AS[r][b]);
            const __m512 s = _mm512_set1_ps(S[r][b]);
            __m512i t0 = i0[r][0], t1 = i0[r][1];
            if (split) {
                t0 = _mm512_add_epi32(t0, i1[r][0]);
                t1 = _mm512_add_epi32(t1, i1[r][1]);
            }
            acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(t0, off)),
                                        _mm512_mul_ps(d0, s), acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(t1, off)),
                                        _mm512_mul_ps(d1, s), acc[r][1]);
        }
    }
    const __mmask16 m0 = tail16(cols), m1 = tail16(cols - 16);
    const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 6
    for (int r = 0; r < QR; r++) {
        if (r >= mr)
            continue;
        float *c = C + r * ldc;
        __m512 v0 = _mm512_add_ps(acc[r][0], b0), v1 = _mm512_add_ps(acc[r][1], b1);
        if (accumulate) {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + 16), v1);
        }
        _mm512_mask_storeu_ps(c, m0, v0);
        _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
}

#define DEF_PANEL(mr)                                                                        \
    static void panel_##mr(int64_t nb, int64_t Kp, const uint8_t *A, int64_t lda,            \
                           const uint8_t *P, const float *bias, float *C, int64_t ldc,       \
                           int64_t cols, int accumulate)                                     \
    {                                                                                        \
        panel_rows(mr, nb, Kp, A, lda, P, bias, C, ldc, cols, accumulate);                   \
    }
DEF_PANEL(1) DEF_PANEL(2) DEF_PANEL(3) DEF_PANEL(4) DEF_PANEL(5) DEF_PANEL(6)

typedef void (*panel_fn)(int64_t nb, int64_t Kp, const uint8_t *A, int64_t lda, const uint8_t *P,
                         const float *bias, float *C, int64_t ldc, int64_t cols, int accumulate);
static const panel_fn panels[QR + 1] = {NULL,    panel_1, panel_2, panel_3,
                                        panel_4, panel_5, panel_6};

void vt_q8_row_avx512vnni(int64_t K, const float *x, uint8_t *row)
{
    const int64_t Kp = vt_lp_kpad(K, VT_Q4_BLOCK), nb = Kp / VT_Q4_BLOCK;
    float *s = (float *)(row + Kp);
    int32_t *sum = (int32_t *)(s + nb);
    for (int64_t b = 0; b < nb; b++) {
        const int64_t k0 = b * VT_Q4_BLOCK;
        const __m512 x0 = _mm512_maskz_loadu_ps(tail16(K - k0), x + k0);
        const __m512 x1 = _mm512_maskz_loadu_ps(tail16(K - k0 - 16), x + k0 + 16);
        /* vmaxps returns its second operand when the first is NaN: NaNs
         * never win, as in the reference's fabsf(x) > mx */
        __m512 m = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_abs_ps(x1), m);
        const float mx = _mm512_reduce_max_ps(m);
        const int live = mx > 0.0f && mx <= 3.402823466e38f;
        const __m512 inv = _mm512_set1_ps(live ? 127.0f / mx : 0.0f);
        /* |x * 127 / mx| < 127.5 rounds into [-127, 127]; NaN -> INT_MIN,
         * whose low byte is 0, the reference's 0 */
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, inv));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, inv));
        q0 = _mm512_cvtepi8_epi32(_mm512_cvtepi32_epi8(q0));
        q1 = _mm512_cvtepi8_epi32(_mm512_cvtepi32_epi8(q1));
        _mm_storeu_si128((__m128i *)(row + k0), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(row + k0 + 16), _mm512_cvtepi32_epi8(q1));
        s[b] = live ? mx / 127.0f : 0.0f;
        sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

void vt_gemm_q4_avx512vnni(int64_t M, int64_t K, int64_t n0, int64_t n, const uint8_t *A,
                           int64_t lda, const uint8_t *W, const float *bias, float *C,
                           int64_t ldc, int accumulate)
{
    if (M <= 0 || n <= 0)
        return;
    const int64_t Kp = vt_lp_kpad(K, VT_Q4_BLOCK), nb = Kp / VT_Q4_BLOCK;
    for (int64_t j = 0; j < n; j += VT_LP_NR) {
        const uint8_t *P = W + ((n0 + j) / VT_LP_NR) * nb * VT_Q4_BYTES;
        const int64_t cols = n - j < VT_LP_NR ? n - j : VT_LP_NR;
        for (int64_t i = 0; i < M; i += QR) {
            const int mr = M - i < QR ? (int)(M - i) : QR;
            panels[mr](nb, Kp, A + i * lda, lda, P, bias ? bias + j : NULL, C + i * ldc + j, ldc,
                       cols, accumulate);
        }
    }
}
