/*
 * ref_lowp.c - reference low-precision kernels (the specification of
 * kernels.h's bf16 / int8 section). Straight loops over the packed layouts.
 */
#include "kernels/kernels_internal.h"
#include "core/vt.h"

#include <math.h>
#include <string.h>

uint16_t vt_ref_f32_to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0) /* zero or denormal: flushed, sign kept */
        return (uint16_t)((u >> 16) & 0x8000u);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: quiet */
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void vt_ref_bf16_row(int64_t K, const float *x, uint16_t *y)
{
    int64_t k = 0;
    for (; k < K; k++)
        y[k] = vt_ref_f32_to_bf16(x[k]);
    for (; k < vt_lp_kpad(K, 2); k++)
        y[k] = 0;
}

float vt_ref_u8_row(int64_t K, const float *x, uint8_t *y)
{
    float mx = 0.0f;
    for (int64_t k = 0; k < K; k++)
        mx = fabsf(x[k]) > mx ? fabsf(x[k]) : mx;
    const int live = mx > 0.0f && isfinite(mx);
    const float inv = live ? 127.0f / mx : 0.0f;
    int64_t k = 0;
    for (; k < K; k++) {
        float r = vt_rne_small(x[k] * inv);
        int q = r != r ? 0 : r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r; /* NaN -> 0 */
        y[k] = (uint8_t)(q + 128);
    }
    for (; k < vt_lp_kpad(K, 4); k++)
        y[k] = 128;
    return live ? mx / 127.0f : 0.0f;
}

void vt_ref_gemm_bf16(int64_t M, int64_t K, int64_t n0, int64_t n, const uint16_t *A,
                      int64_t lda, const uint16_t *W, const float *bias, float *C, int64_t ldc,
                      int accumulate)
{
    const int64_t Kp = vt_lp_kpad(K, 2);
    for (int64_t i = 0; i < M; i++)
        for (int64_t jj = 0; jj < n; jj++) {
            const int64_t j = n0 + jj;
            const uint16_t *panel = W + (j / VT_LP_NR) * VT_LP_NR * Kp;
            const int64_t c = j % VT_LP_NR;
            float acc = 0.0f;
            for (int64_t p = 0; p < Kp / 2; p++) {
                const uint16_t *w = panel + p * 2 * VT_LP_NR + c * 2;
                acc += bf16_to_f32(A[i * lda + 2 * p]) * bf16_to_f32(w[0]);
                acc += bf16_to_f32(A[i * lda + 2 * p + 1]) * bf16_to_f32(w[1]);
            }
            const float v = acc + (bias ? bias[jj] : 0.0f);
            C[i * ldc + jj] = accumulate ? C[i * ldc + jj] + v : v;
        }
}

void vt_ref_gemm_i8(int64_t M, int64_t K, int64_t n0, int64_t n, const uint8_t *A, int64_t lda,
                    const float *a_scale, const int8_t *W, const float *w_scale,
                    const int32_t *wsum, const float *bias, float *C, int64_t ldc,
                    int accumulate)
{
    const int64_t Kp = vt_lp_kpad(K, 4);
    for (int64_t i = 0; i < M; i++)
        for (int64_t jj = 0; jj < n; jj++) {
            const int64_t j = n0 + jj;
            const int8_t *panel = W + (j / VT_LP_NR) * VT_LP_NR * Kp;
            const int64_t c = j % VT_LP_NR;
            int32_t acc = 0;
            for (int64_t q = 0; q < Kp / 4; q++)
                for (int t = 0; t < 4; t++)
                    acc += (int32_t)A[i * lda + 4 * q + t] *
                           (int32_t)panel[q * 4 * VT_LP_NR + c * 4 + t];
            float v = (float)(acc - wsum[j]) * w_scale[j];
            v = v * a_scale[i];
            v = bias ? v + bias[jj] : v;
            C[i * ldc + jj] = accumulate ? C[i * ldc + jj] + v : v;
        }
}

/* ---- q4 weights x q8 activations (kernels.h) ---- */


void vt_ref_q8_row(int64_t K, const float *x, uint8_t *row)
{
    const int64_t Kp = vt_lp_kpad(K, VT_Q4_BLOCK), nb = Kp / VT_Q4_BLOCK;
    int8_t *a = (int8_t *)row;
    float *s = (float *)(row + Kp);
    int32_t *sum = (int32_t *)(s + nb);
    for (int64_t b = 0; b < nb; b++) {
        const int64_t k0 = b * VT_Q4_BLOCK, k1 = k0 + VT_Q4_BLOCK < K ? k0 + VT_Q4_BLOCK : K;
        float mx = 0.0f;
        for (int64_t k = k0; k < k1; k++)
            mx = fabsf(x[k]) > mx ? fabsf(x[k]) : mx;
        const int live = mx > 0.0f && isfinite(mx);
        const float inv = live ? 127.0f / mx : 0.0f;
        int32_t t = 0;
        for (int64_t k = k0; k < k0 + VT_Q4_BLOCK; k++) {
            int q = 0;
            if (k < k1) {
                const float r = vt_rne_small(x[k] * inv);
                q = r != r ? 0 : r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r;
            }
            a[k] = (int8_t)q;
            t += q;
        }
        s[b] = live ? mx / 127.0f : 0.0f;
        sum[b] = t;
    }
}

void vt_ref_gemm_q4(int64_t M, int64_t K, int64_t n0, int64_t n, const uint8_t *A, int64_t lda,
                    const uint8_t *W, const float *bias, float *C, int64_t ldc, int accumulate)
{
    const int64_t Kp = vt_lp_kpad(K, VT_Q4_BLOCK), nb = Kp / VT_Q4_BLOCK;
    for (int64_t i = 0; i < M; i++) {
        const int8_t *a = (const int8_t *)(A + i * lda);
        const float *s = (const float *)(A + i * lda + Kp);
        const int32_t *asum = (const int32_t *)(s + nb);
        for (int64_t jj = 0; jj < n; jj++) {
            const int64_t j = n0 + jj, c = j % VT_LP_NR, h = c / 16, col = c % 16;
            const uint8_t *panel = W + (j / VT_LP_NR) * nb * VT_Q4_BYTES;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = panel + b * VT_Q4_BYTES;
                int32_t dot = 0;
                for (int kk = 0; kk < VT_Q4_BLOCK; kk++) {
                    const int L = kk / 8, hi = (kk % 8) / 4, t = kk % 4;
                    const uint8_t byte = blk[h * 256 + L * 64 + col * 4 + t];
                    dot += (int32_t)a[b * VT_Q4_BLOCK + kk] * (int32_t)(hi ? byte >> 4 : byte & 15);
                }
                uint16_t dh;
                memcpy(&dh, blk + 512 + 2 * c, 2);
                acc = fmaf((float)(dot - 8 * asum[b]), vt_f16_to_f32(dh) * s[b], acc);
            }
            const float v = acc + (bias ? bias[jj] : 0.0f);
            C[i * ldc + jj] = accumulate ? C[i * ldc + jj] + v : v;
        }
    }
}
