/*
 * lowp.c - weights into the portable low-precision layouts (kernels.h).
 *
 * Run once per Linear at model load. Plain C on purpose: the layout is the
 * contract between the loader and every table's GEMM, and the conversion is
 * a one-off O(N K) pass next to the forward passes it serves.
 */
#include "kernels/kernels_internal.h"
#include "core/vt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t vt_lp_bf16_size(int64_t N, int64_t K)
{
    if (N <= 0 || K <= 0)
        return 0;
    return (size_t)vt_lp_kpad(N, VT_LP_NR) * (size_t)vt_lp_kpad(K, 2);
}

int vt_lp_pack_bf16(const vt_kernels *k, int64_t N, int64_t K, const float *W, uint16_t *packed)
{
    const int64_t Kp = vt_lp_kpad(K, 2), Np = vt_lp_kpad(N, VT_LP_NR);
    /* Rows go through the table's converter: bit-exact with the reference
     * by contract, and vectorised (the scalar loop dominated loading). */
    uint16_t *row = malloc((size_t)Kp * sizeof *row);
    if (!row)
        return -1;
    for (int64_t j = 0; j < Np; j++) {
        uint16_t *dst = packed + (j / VT_LP_NR) * VT_LP_NR * Kp + (j % VT_LP_NR) * 2;
        if (j < N)
            k->bf16_row(K, W + j * K, row);
        else
            memset(row, 0, (size_t)Kp * sizeof *row);
        for (int64_t p = 0; p < Kp / 2; p++) {
            dst[p * 2 * VT_LP_NR] = row[2 * p];
            dst[p * 2 * VT_LP_NR + 1] = row[2 * p + 1];
        }
    }
    free(row);
    return 0;
}

size_t vt_lp_i8_size(int64_t N, int64_t K)
{
    if (N <= 0 || K <= 0)
        return 0;
    return (size_t)vt_lp_kpad(N, VT_LP_NR) * (size_t)vt_lp_kpad(K, 4);
}

int vt_lp_pack_i8(const vt_kernels *k, int64_t N, int64_t K, const float *W, int8_t *packed,
                  float *scale, int32_t *wsum)
{
    const int64_t Kp = vt_lp_kpad(K, 4), Np = vt_lp_kpad(N, VT_LP_NR);
    /* A weight row is quantised exactly as an activation row (symmetric,
     * max|w| / 127, round to nearest even), so the table's u8_row does it;
     * its +128 offset is removed here. */
    uint8_t *row = malloc((size_t)Kp);
    if (!row)
        return -1;
    for (int64_t j = 0; j < Np; j++) {
        int8_t *dst = packed + (j / VT_LP_NR) * VT_LP_NR * Kp + (j % VT_LP_NR) * 4;
        if (j < N) {
            scale[j] = k->u8_row(K, W + j * K, row);
        } else {
            scale[j] = 0.0f;
            memset(row, 128, (size_t)Kp);
        }
        int32_t sum = 0;
        for (int64_t q = 0; q < Kp / 4; q++)
            for (int t = 0; t < 4; t++) {
                const int v = (int)row[4 * q + t] - 128;
                dst[q * 4 * VT_LP_NR + t] = (int8_t)v;
                sum += v;
            }
        wsum[j] = 128 * sum;
    }
    free(row);
    return 0;
}

size_t vt_lp_q4_size(int64_t N, int64_t K)
{
    if (N <= 0 || K <= 0)
        return 0;
    return (size_t)(vt_lp_kpad(N, VT_LP_NR) / VT_LP_NR) *
           (size_t)(vt_lp_kpad(K, VT_Q4_BLOCK) / VT_Q4_BLOCK) * VT_Q4_BYTES;
}

void vt_lp_pack_q4(int64_t N, int64_t K, const float *W, uint8_t *packed)
{
    const int64_t nb = vt_lp_kpad(K, VT_Q4_BLOCK) / VT_Q4_BLOCK;
    const int64_t np = vt_lp_kpad(N, VT_LP_NR) / VT_LP_NR;
    memset(packed, 0, vt_lp_q4_size(N, K));
    for (int64_t p = 0; p < np; p++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *blk = packed + (p * nb + b) * VT_Q4_BYTES;
            for (int c = 0; c < VT_LP_NR; c++) {
                const int64_t j = p * VT_LP_NR + c, k0 = b * VT_Q4_BLOCK;
                const int64_t k1 = k0 + VT_Q4_BLOCK < K ? k0 + VT_Q4_BLOCK : K;
                float mx = 0.0f;
                for (int64_t k = k0; j < N && k < k1; k++)
                    mx = fabsf(W[j * K + k]) > mx ? fabsf(W[j * K + k]) : mx;
                uint16_t dh = isfinite(mx) ? vt_f32_to_f16(mx / 7.0f) : 0;
                float d = vt_f16_to_f32(dh);
                if (!(d > 0.0f) || !isfinite(d)) { /* zero, tiny or non-finite block */
                    dh = 0;
                    d = 0.0f;
                }
                memcpy(blk + 512 + 2 * c, &dh, 2);
                const int h = c / 16, col = c % 16;
                for (int kk = 0; kk < VT_Q4_BLOCK; kk++) {
                    const int64_t k = k0 + kk;
                    int q = 8;
                    if (d > 0.0f && j < N && k < K) {
                        const float r = vt_rne_small(W[j * K + k] / d);
                        q = (r != r ? 0 : r > 7.0f ? 7 : r < -8.0f ? -8 : (int)r) + 8;
                    }
                    const int L = kk / 8, hi = (kk % 8) / 4, t = kk % 4;
                    blk[h * 256 + L * 64 + col * 4 + t] |= (uint8_t)(hi ? q << 4 : q);
                }
            }
        }
}
