/*
 * ref_eltwise.c - element-wise and per-row ops for the LLM runtime
 * (LLaMA family): residual add, scale, RMSNorm, rotary position embedding.
 * The specification of the table entries add_f32, scale_f32, rmsnorm_f32,
 * rope_f32 (kernels.h); x86/eltwise_avx512.c must agree up to rounding order.
 *
 * Numerics follow transformers' LLaMA (src/transformers/models/llama/
 * modeling_llama.py, read at commit 0022728): LlamaRMSNorm.forward computes
 * in float32 variance = mean(x^2), x * rsqrt(variance + eps), then
 * weight * that (two roundings, in that order); LlamaRotaryEmbedding builds
 * inv_freq = 1 / base^(2i / dim) and freqs = position * inv_freq in float32,
 * emb = cat(freqs, freqs), and apply_rotary_pos_emb computes
 * q * cos + rotate_half(q) * sin with rotate_half(x) = cat(-x2, x1) (the
 * two halves of the head, not interleaved pairs).
 */
#include "kernels/kernels_internal.h"

#include <math.h>

void vt_ref_add_f32(int64_t n, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

void vt_ref_scale_f32(int64_t n, float a, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = a * x[i];
}

/* Sum of squares over 16 partial sums (lane i % 16), then the pairwise tree
 * of a SIMD reduction: the order the AVX-512 version uses, so the two agree
 * to the last bit on the sum (torch's own order is another tree; the
 * difference is float32 rounding, ~1e-7 relative). */
void vt_ref_rmsnorm_f32(int64_t n, const float *x, const float *w, float eps, float *y)
{
    if (n <= 0)
        return;
    float p[16] = {0};
    for (int64_t i = 0; i < n; i++)
        p[i % 16] += x[i] * x[i];
    for (int s = 8; s >= 1; s /= 2)
        for (int l = 0; l < s; l++)
            p[l] += p[l + s];
    const float r = 1.0f / sqrtf(p[0] / (float)n + eps); /* torch.rsqrt: 1 / sqrt */
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i] * r;
        y[i] = w ? w[i] * v : v;
    }
}

void vt_rope_angles(int64_t dh, int64_t pos, float theta, float *cs, float *sn)
{
    const int64_t half = dh / 2;
    for (int64_t i = 0; i < half; i++) {
        /* `1.0 / (base ** (arange(0, dim, 2).float() / dim))`: every step
         * in float32, as torch evaluates it (a one-ulp change in inv_freq
         * moves the angle at position 4096 by ~2e-4 rad). */
        const float e = (float)(2 * i) / (float)dh;
        const float inv = 1.0f / powf(theta, e);
        const float f = (float)pos * inv;
        cs[i] = cosf(f);
        sn[i] = sinf(f);
    }
}

void vt_rope_angles_freq(int64_t dh, int64_t pos, const float *inv_freq, float scale, float *cs,
                         float *sn)
{
    for (int64_t i = 0; i < dh / 2; i++) {
        /* freqs = inv_freq @ position_ids.float() (a K = 1 matmul: one
         * float32 product), cos/sin in float32, then `cos * attention_scaling`
         * (modeling_llama.py, LlamaRotaryEmbedding.forward). */
        const float f = (float)pos * inv_freq[i];
        cs[i] = cosf(f) * scale;
        sn[i] = sinf(f) * scale;
    }
}

void vt_ref_rope_f32(int64_t heads, int64_t dh, float *x, int64_t ldh, const float *cs,
                     const float *sn)
{
    const int64_t half = dh / 2;
    for (int64_t h = 0; h < heads; h++) {
        float *v = x + h * ldh;
        for (int64_t i = 0; i < half; i++) {
            const float a = v[i], b = v[i + half];
            /* q * cos + rotate_half(q) * sin, each product rounded, then the sum */
            v[i] = a * cs[i] + (-b) * sn[i];
            v[i + half] = b * cs[i] + a * sn[i];
        }
    }
}
