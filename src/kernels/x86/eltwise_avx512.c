/*
 * eltwise_avx512.c - AVX-512 versions of ref/ref_eltwise.c (residual add,
 * scale, RMSNorm, RoPE application). Memory-bound loops: 16 lanes with a
 * masked tail, no unrolling beyond what the compiler does. RMSNorm keeps the
 * reference's 16 partial sums and reduction tree, so the sum of squares is
 * bit-identical; RoPE multiplies and adds in the reference's order (the
 * angles come from vt_rope_angles, computed once per position by the op).
 */
#include "kernels/kernels_internal.h"
#include "kernels/x86/vmath_avx512.h"

#include <immintrin.h>
#include <math.h>

void vt_add_f32_avx512(int64_t n, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = vt_tail_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i),
                                                      _mm512_maskz_loadu_ps(m, x + i)));
    }
}

void vt_scale_f32_avx512(int64_t n, float a, const float *x, float *y)
{
    const __m512 va = _mm512_set1_ps(a);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = vt_tail_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* The reference's tree: lanes l and l + 8, then + 4, + 2, + 1. */
static inline float tree16(__m512 v)
{
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
}

void vt_rmsnorm_f32_avx512(int64_t n, const float *x, const float *w, float eps, float *y)
{
    if (n <= 0)
        return;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __m512 v = _mm512_maskz_loadu_ps(vt_tail_mask16(n - i), x + i);
        /* mul then add (no FMA): the reference rounds x*x first */
        acc = _mm512_add_ps(acc, _mm512_mul_ps(v, v));
    }
    const __m512 r = _mm512_set1_ps(1.0f / sqrtf(tree16(acc) / (float)n + eps));
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = vt_tail_mask16(n - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), r);
        if (w)
            v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + i), v);
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

void vt_rope_f32_avx512(int64_t heads, int64_t dh, float *x, int64_t ldh, const float *cs,
                        const float *sn)
{
    const int64_t half = dh / 2;
    for (int64_t h = 0; h < heads; h++) {
        float *v = x + h * ldh;
        for (int64_t i = 0; i < half; i += 16) {
            const __mmask16 m = vt_tail_mask16(half - i);
            const __m512 a = _mm512_maskz_loadu_ps(m, v + i);
            const __m512 b = _mm512_maskz_loadu_ps(m, v + half + i);
            const __m512 c = _mm512_maskz_loadu_ps(m, cs + i);
            const __m512 s = _mm512_maskz_loadu_ps(m, sn + i);
            const __m512 nb = _mm512_castsi512_ps(
                _mm512_xor_si512(_mm512_castps_si512(b), _mm512_set1_epi32((int)0x80000000u)));
            _mm512_mask_storeu_ps(v + i, m,
                                  _mm512_add_ps(_mm512_mul_ps(a, c), _mm512_mul_ps(nb, s)));
            _mm512_mask_storeu_ps(v + half + i, m,
                                  _mm512_add_ps(_mm512_mul_ps(b, c), _mm512_mul_ps(a, s)));
        }
    }
}
