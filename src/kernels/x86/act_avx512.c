/*
 * act_avx512.c - activations in place, AVX-512, written step for step as the
 * reference (ref/ref_act.c, i.e. PyTorch's CPU kernels) with vmath_avx512.h's
 * exp / erf / tanh in place of libm. Every other operation is the same float
 * rounding in the same order (no FMA contraction), so the only differences
 * are the few-ulp differences of those three functions.
 */
#include "kernels/kernels_internal.h"
#include "kernels/x86/vmath_avx512.h"

#include <immintrin.h>
#include <math.h>

/* Apply f to n floats in place, 16 at a time, the tail masked. */
#define VT_MAP_INPLACE(n, x, f)                                                              \
    do {                                                                                     \
        for (int64_t i_ = 0; i_ < (n); i_ += 16) {                                           \
            const __mmask16 m_ = vt_tail_mask16((n) - i_);                                        \
            _mm512_mask_storeu_ps((x) + i_, m_, f(_mm512_maskz_loadu_ps(m_, (x) + i_)));      \
        }                                                                                    \
    } while (0)

static inline __m512 gelu_erf16(__m512 v)
{
    const __m512 e = vt_erf_ps(_mm512_mul_ps(v, _mm512_set1_ps((float)M_SQRT1_2)));
    const __m512 h = _mm512_mul_ps(_mm512_set1_ps(0.5f), v);
    return _mm512_mul_ps(h, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

static inline __m512 gelu_tanh16(__m512 v)
{
    const __m512 kBeta = _mm512_set1_ps((float)(M_SQRT2 * M_2_SQRTPI * 0.5));
    const __m512 kKappa = _mm512_set1_ps(0.044715f);
    const __m512 v3 = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
    const __m512 inner = _mm512_mul_ps(kBeta, _mm512_add_ps(v, _mm512_mul_ps(kKappa, v3)));
    const __m512 h = _mm512_mul_ps(_mm512_set1_ps(0.5f), v);
    return _mm512_mul_ps(h, _mm512_add_ps(_mm512_set1_ps(1.0f), vt_tanh_ps(inner)));
}

static inline __m512 quick_gelu16(__m512 v)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 t = _mm512_mul_ps(_mm512_set1_ps(1.702f), v);
    const __m512 e = vt_exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), t));
    return _mm512_mul_ps(v, _mm512_div_ps(one, _mm512_add_ps(one, e)));
}

static inline __m512 silu16(__m512 v)
{
    const __m512 e = vt_exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), v));
    return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

void vt_gelu_erf_f32_avx512(int64_t n, float *x)
{
    VT_MAP_INPLACE(n, x, gelu_erf16);
}

void vt_gelu_tanh_f32_avx512(int64_t n, float *x)
{
    VT_MAP_INPLACE(n, x, gelu_tanh16);
}

void vt_quick_gelu_f32_avx512(int64_t n, float *x)
{
    VT_MAP_INPLACE(n, x, quick_gelu16);
}

void vt_silu_f32_avx512(int64_t n, float *x)
{
    VT_MAP_INPLACE(n, x, silu16);
}

void vt_tanh_f32_avx512(int64_t n, float *x)
{
    VT_MAP_INPLACE(n, x, vt_tanh_ps);
}
