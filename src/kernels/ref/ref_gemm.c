/*
 * ref_gemm.c - reference float32 GEMM, the specification of vt_gemm_f32_fn.
 *
 * Each C element is one float accumulator summed over k in increasing order
 * (as llm.c's matmul_forward_naive), then the bias is added, then the old C
 * when accumulating:  C = [C +] (sum_k A[i,k] op(B)[k,j] + bias[j]).
 * ISA versions use FMA and K blocking, so they round differently but never
 * sum in a different precision.
 *
 * The loops are ordered for cache, not for clarity, because this table also
 * runs whole models when the reference kernels are forced (VTOK_FORCE_REF):
 *   b_nk = 1: both A's row and B's row are contiguous in k -> dot products.
 *   b_nk = 0: B's row is contiguous in n -> for each (i, k) update a row of
 *             accumulators held in `scratch`, which keeps the per-element
 *             k order identical to the dot-product form.
 */
#include "kernels/kernels_internal.h"

static float ref_out(float acc, const float *bias, int64_t j, const float *c, int accumulate)
{
    if (bias)
        acc += bias[j];
    return accumulate ? *c + acc : acc;
}

void vt_ref_gemm_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                     const float *B, int64_t ldb, int b_nk, const float *bias, float *C,
                     int64_t ldc, int accumulate, float *scratch)
{
    if (M <= 0 || N <= 0)
        return;
    if (b_nk) {
        for (int64_t i = 0; i < M; i++) {
            const float *a = A + i * lda;
            float *c = C + i * ldc;
            for (int64_t j = 0; j < N; j++) {
                const float *b = B + j * ldb;
                float acc = 0.0f;
                for (int64_t k = 0; k < K; k++)
                    acc += a[k] * b[k];
                c[j] = ref_out(acc, bias, j, &c[j], accumulate);
            }
        }
        return;
    }
    /* b_nk = 0: row of accumulators in scratch, VT_GEMM_SCRATCH_FLOATS at a time. */
    const int64_t NB = VT_GEMM_SCRATCH_FLOATS;
    for (int64_t j0 = 0; j0 < N; j0 += NB) {
        int64_t nb = N - j0 < NB ? N - j0 : NB;
        for (int64_t i = 0; i < M; i++) {
            const float *a = A + i * lda;
            float *c = C + i * ldc + j0;
            for (int64_t j = 0; j < nb; j++)
                scratch[j] = 0.0f;
            for (int64_t k = 0; k < K; k++) {
                const float aik = a[k];
                const float *b = B + k * ldb + j0;
                for (int64_t j = 0; j < nb; j++)
                    scratch[j] += aik * b[j];
            }
            for (int64_t j = 0; j < nb; j++)
                c[j] = ref_out(scratch[j], bias, j0 + j, &c[j], accumulate);
        }
    }
}

/* K = 0: C = [C +] (0 + bias), the reference's own expression (0.0f + -0.0f
 * is +0.0f), for ISA kernels that have no B pointer to pass. */
void vt_ref_gemm_f32_k0(int64_t M, int64_t N, const float *bias, float *C, int64_t ldc,
                        int accumulate)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            C[i * ldc + j] = ref_out(0.0f, bias, j, &C[i * ldc + j], accumulate);
}
