/*
 * lowp.c - weights into the portable low-precision layouts (kernels.h).
 *
 * Run once per Linear at model load. Plain C on purpose: the layout is the
 * contract between the loader and every table's GEMM, and the conversion is
 * a one-off O(N K) pass next to the forward passes it serves.
 */
#include "kernels/kernels_internal.h"

#include <math.h>
#include <string.h>

size_t vt_lp_bf16_size(int64_t N, int64_t K)
{
    if (N <= 0 || K <= 0)
        return 0;
    return (size_t)vt_lp_kpad(N, VT_LP_NR) * (size_t)vt_lp_kpad(K, 2);
}

void vt_lp_pack_bf16(int64_t N, int64_t K, const float *W, uint16_t *packed)
{
    const int64_t Kp = vt_lp_kpad(K, 2), Np = vt_lp_kpad(N, VT_LP_NR);
    for (int64_t j0 = 0; j0 < Np; j0 += VT_LP_NR) {
        uint16_t *panel = packed + j0 * Kp;
        for (int64_t j = 0; j < VT_LP_NR; j++) {
            const float *w = j0 + j < N ? W + (j0 + j) * K : NULL;
            for (int64_t k = 0; k < Kp; k++) {
                float x = w && k < K ? w[k] : 0.0f;
                panel[(k / 2) * 2 * VT_LP_NR + j * 2 + (k & 1)] = vt_ref_f32_to_bf16(x);
            }
        }
    }
}

size_t vt_lp_i8_size(int64_t N, int64_t K)
{
    if (N <= 0 || K <= 0)
        return 0;
    return (size_t)vt_lp_kpad(N, VT_LP_NR) * (size_t)vt_lp_kpad(K, 4);
}

void vt_lp_pack_i8(int64_t N, int64_t K, const float *W, int8_t *packed, float *scale,
                   int32_t *wsum)
{
    const int64_t Kp = vt_lp_kpad(K, 4), Np = vt_lp_kpad(N, VT_LP_NR);
    memset(packed, 0, (size_t)Np * (size_t)Kp);
    for (int64_t j = 0; j < Np; j++) {
        scale[j] = 0.0f;
        wsum[j] = 0;
        if (j >= N)
            continue;
        const float *w = W + j * K;
        float mx = 0.0f;
        for (int64_t k = 0; k < K; k++)
            mx = fabsf(w[k]) > mx ? fabsf(w[k]) : mx;
        if (!(mx > 0.0f) || !isfinite(mx))
            continue; /* an all-zero (or broken) row stays 0 */
        const float inv = 127.0f / mx;
        int8_t *panel = packed + (j / VT_LP_NR) * VT_LP_NR * Kp;
        int32_t sum = 0;
        for (int64_t k = 0; k < K; k++) {
            float r = vt_rne_small(w[k] * inv);
            int q = r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r;
            panel[(k / 4) * 4 * VT_LP_NR + (j % VT_LP_NR) * 4 + (k & 3)] = (int8_t)q;
            sum += q;
        }
        scale[j] = mx / 127.0f;
        wsum[j] = 128 * sum;
    }
}
