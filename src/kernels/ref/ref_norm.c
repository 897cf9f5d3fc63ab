/*
 * ref_norm.c - reference layer norm and softmax over one row.
 *
 * Row sums use 16 interleaved float partial sums (element i goes to partial
 * i % 16), combined by a fixed pairwise tree (p[l] + p[l+8], then +4, +2, +1).
 * Why: a sequential float sum over a 1024..4096-wide row loses ~n*2^-24
 * relative; the 16-way split cuts that 16x, closer to PyTorch's cascaded
 * moments, and it is exactly the order of one 16-lane SIMD accumulator, so
 * the AVX-512 versions reproduce the sums bit for bit.
 *
 * LayerNorm follows torch.nn.LayerNorm: two passes in float32 (mean, then the
 * biased variance of x - mean), rstd = 1 / sqrtf(var + eps), and
 * y = ((x - mean) * rstd) * w + b with separate roundings (no FMA). PyTorch's
 * CPU kernel folds this into x * rstd + (-mean * rstd); the (x - mean) form
 * is what the brief specifies and is the more accurate of the two when
 * |mean| >> std, so the difference to PyTorch is bounded by PyTorch's error.
 *
 * Softmax follows PyTorch's CPU softmax over the last dim: subtract the row
 * max, exp, sum, then multiply by 1 / sum.
 */
#include "kernels/kernels_internal.h"

#include <math.h>

#define RED_LANES 16

/* Pairwise tree over 16 partial sums, in the order of a SIMD reduction. */
static float reduce16(float *p)
{
    for (int w = RED_LANES / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            p[l] += p[l + w];
    return p[0];
}

static float row_sum(int64_t n, const float *x)
{
    float p[RED_LANES] = {0};
    for (int64_t i = 0; i < n; i++)
        p[i % RED_LANES] += x[i];
    return reduce16(p);
}

static float row_sqdev(int64_t n, const float *x, float mean)
{
    float p[RED_LANES] = {0};
    for (int64_t i = 0; i < n; i++) {
        float d = x[i] - mean;
        p[i % RED_LANES] += d * d;
    }
    return reduce16(p);
}

void vt_ref_layernorm_f32(int64_t n, const float *x, const float *w, const float *b, float eps,
                          float *y)
{
    if (n <= 0)
        return;
    const float mean = row_sum(n, x) / (float)n;
    const float var = row_sqdev(n, x, mean) / (float)n;
    const float rstd = 1.0f / sqrtf(var + eps);
    for (int64_t i = 0; i < n; i++) {
        float v = (x[i] - mean) * rstd;
        if (w)
            v = v * w[i];
        if (b)
            v = v + b[i];
        y[i] = v;
    }
}

void vt_ref_softmax_f32(int64_t n, float *x)
{
    if (n <= 0)
        return;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    float p[RED_LANES] = {0};
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        p[i % RED_LANES] += x[i];
    }
    const float inv = 1.0f / reduce16(p);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}
