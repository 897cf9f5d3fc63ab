/*
 * norm_avx512.c - layer norm and softmax over one row, AVX-512.
 *
 * Both reproduce the reference's summation exactly: one 16-lane accumulator
 * is the reference's 16 interleaved partial sums (element i in lane i % 16),
 * and hsum16 below is its pairwise tree (lanes l + l+8, +4, +2, +1). Tails are
 * added as masked-off zeros, which leaves a partial sum unchanged. Products
 * and sums are separate roundings (no FMA) as in the reference, so layer norm
 * is bit-identical to ref/ref_norm.c, and softmax differs only by vt_exp_ps
 * vs expf (a few ulp per element).
 */
#include "kernels/kernels_internal.h"
#include "kernels/x86/vmath_avx512.h"

#include <immintrin.h>
#include <math.h>

/* The reference's pairwise tree over 16 partial sums. */
static inline float hsum16(__m512 v)
{
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
}

void vt_layernorm_f32_avx512(int64_t n, const float *x, const float *w, const float *b,
                             float eps, float *y)
{
    if (n <= 0)
        return;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16)
        acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(vt_tail_mask16(n - i), x + i));
    const float mean = hsum16(acc) / (float)n;

    const __m512 vm = _mm512_set1_ps(mean);
    acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = vt_tail_mask16(n - i);
        const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm);
        acc = _mm512_add_ps(acc, _mm512_maskz_mul_ps(m, d, d));
    }
    const float var = hsum16(acc) / (float)n;
    const __m512 vr = _mm512_set1_ps(1.0f / sqrtf(var + eps));

    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = vt_tail_mask16(n - i);
        __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vr);
        if (w)
            v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i));
        if (b)
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

void vt_softmax_f32_avx512(int64_t n, float *x)
{
    if (n <= 0)
        return;
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += 16)
        mx = _mm512_mask_max_ps(mx, vt_tail_mask16(n - i), mx, _mm512_maskz_loadu_ps(vt_tail_mask16(n - i), x + i));
    const __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));

    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = vt_tail_mask16(n - i);
        const __m512 e = vt_exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmax));
        _mm512_mask_storeu_ps(x + i, m, e);
        acc = _mm512_mask_add_ps(acc, m, acc, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / hsum16(acc));
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = vt_tail_mask16(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    }
}
