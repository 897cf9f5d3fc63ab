/*
 * ref_attn.c - reference fused attention for one (item, head): the spec.
 *
 * Per query row, the plain two-pass softmax of PyTorch's
 * softmax(scale * q k^T) v, without storing the scores: pass 1 finds the
 * row max of scale * (q . k_j), pass 2 recomputes each score, adds
 * p_j = exp(s_j - max) to the row sum and p_j * v_j to the output row, and
 * the row is finally scaled by 1 / sum. Recomputing the dot products costs a
 * third more arithmetic than keeping a row of scores, but needs no scratch,
 * so this version runs any tq, tk, dh (src/core/ops.c uses it as the
 * fallback for dh > VT_ATTN_MAX_DH) and the out row is the accumulator.
 *
 * Rounding: the same as softmax-then-GEMM up to where 1 / sum is applied
 * (once per output instead of once per p_j), float32 throughout.
 */
#include "kernels/kernels_internal.h"

#include <math.h>

static float dot(int64_t n, const float *a, const float *b)
{
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

void vt_ref_attn_f32(int64_t tq, int64_t tk, int64_t dh, const float *q, int64_t ldq,
                     const float *k, int64_t ldk, const float *v, int64_t ldv, float scale,
                     int causal, float *out, int64_t ldo, float *scratch)
{
    (void)scratch;
    for (int64_t i = 0; i < tq; i++) {
        const float *qi = q + i * ldq;
        float *o = out + i * ldo;
        /* causal: keys past i + (tk - tq) are masked (weight exactly 0) */
        int64_t n = causal ? i + (tk - tq) + 1 : tk;
        n = n < 0 ? 0 : n > tk ? tk : n;
        for (int64_t d = 0; d < dh; d++)
            o[d] = 0.0f;
        if (n == 0)
            continue;
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; j++) {
            const float s = scale * dot(dh, qi, k + j * ldk);
            mx = s > mx ? s : mx;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            const float p = expf(scale * dot(dh, qi, k + j * ldk) - mx);
            const float *vj = v + j * ldv;
            sum += p;
            for (int64_t d = 0; d < dh; d++)
                o[d] += p * vj[d];
        }
        const float inv = 1.0f / sum;
        for (int64_t d = 0; d < dh; d++)
            o[d] *= inv;
    }
}
