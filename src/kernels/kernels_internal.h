/*
 * kernels_internal.h - names shared between the kernel files and dispatch.c.
 *
 * Only src/kernels/ and tests/kernels/ include this. The reference functions
 * (ref/) are the specification of every op; ISA variants (x86/) must agree
 * with them up to floating-point rounding order, which tests/kernels checks.
 * The ISA functions are declared for every build but must only be called
 * through a table that dispatch.c filled after checking the CPU and OS.
 */
#ifndef VT_KERNELS_INTERNAL_H
#define VT_KERNELS_INTERNAL_H

#include "kernels/kernels.h"

/* ref/ref_gemm.c */
void vt_ref_gemm_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                     const float *B, int64_t ldb, int b_nk, const float *bias, float *C,
                     int64_t ldc, int accumulate, float *scratch);
void vt_ref_gemm_f32_k0(int64_t M, int64_t N, const float *bias, float *C, int64_t ldc,
                        int accumulate);

/* ref/ref_norm.c */
void vt_ref_layernorm_f32(int64_t n, const float *x, const float *w, const float *b, float eps,
                          float *y);
void vt_ref_softmax_f32(int64_t n, float *x);

/* ref/ref_attn.c */
void vt_ref_attn_f32(int64_t tq, int64_t tk, int64_t dh, const float *q, int64_t ldq,
                     const float *k, int64_t ldk, const float *v, int64_t ldv, float scale,
                     int causal, float *out, int64_t ldo, float *scratch);

/* ref/ref_act.c */
void vt_ref_gelu_erf_f32(int64_t n, float *x);
void vt_ref_gelu_tanh_f32(int64_t n, float *x);
void vt_ref_quick_gelu_f32(int64_t n, float *x);
void vt_ref_silu_f32(int64_t n, float *x);
void vt_ref_tanh_f32(int64_t n, float *x);

/* Split n into ceil(n / max) blocks of near-equal size, rounded up to
 * `quantum` and capped at max (the GEMM drivers' K and N blocking: no
 * 1-wide last block). */
static inline int64_t vt_balanced_block(int64_t n, int64_t max, int64_t quantum)
{
    int64_t nb = (n + max - 1) / max;
    int64_t b = (n + nb - 1) / nb;
    b = (b + quantum - 1) / quantum * quantum;
    return b < max ? b : max;
}

/* Round to nearest even for |x| < 2^22 without a libm call (the baseline
 * build has no SSE4.1 ROUNDSS): adding 1.5 * 2^23 pushes the fraction out
 * under the default rounding mode. NaN stays NaN. */
static inline float vt_rne_small(float x)
{
    const float big = 12582912.0f; /* not folded away: IEEE math, no -ffast-math */
    return (x + big) - big;
}

/* ref/ref_lowp.c */
uint16_t vt_ref_f32_to_bf16(float x);
void  vt_ref_bf16_row(int64_t K, const float *x, uint16_t *y);
float vt_ref_u8_row(int64_t K, const float *x, uint8_t *y);
void  vt_ref_gemm_bf16(int64_t M, int64_t K, int64_t n0, int64_t n, const uint16_t *A,
                       int64_t lda, const uint16_t *W, const float *bias, float *C, int64_t ldc,
                       int accumulate);
void  vt_ref_gemm_i8(int64_t M, int64_t K, int64_t n0, int64_t n, const uint8_t *A, int64_t lda,
                     const float *a_scale, const int8_t *W, const float *w_scale,
                     const int32_t *wsum, const float *bias, float *C, int64_t ldc,
                     int accumulate);
void  vt_ref_q8_row(int64_t K, const float *x, uint8_t *row);
void  vt_ref_gemm_q4(int64_t M, int64_t K, int64_t n0, int64_t n, const uint8_t *A, int64_t lda,
                     const uint8_t *W, const float *bias, float *C, int64_t ldc, int accumulate);

/* ref/ref_eltwise.c */
void vt_ref_add_f32(int64_t n, const float *x, float *y);
void vt_ref_scale_f32(int64_t n, float a, const float *x, float *y);
void vt_ref_rmsnorm_f32(int64_t n, const float *x, const float *w, float eps, float *y);
void vt_ref_rope_f32(int64_t heads, int64_t dh, float *x, int64_t ldh, const float *cs,
                     const float *sn);

/* x86/eltwise_avx512.c */
void vt_add_f32_avx512(int64_t n, const float *x, float *y);
void vt_scale_f32_avx512(int64_t n, float a, const float *x, float *y);
void vt_rmsnorm_f32_avx512(int64_t n, const float *x, const float *w, float eps, float *y);
void vt_rope_f32_avx512(int64_t heads, int64_t dh, float *x, int64_t ldh, const float *cs,
                        const float *sn);

/* ref/ref_resample.c */
size_t vt_ref_resample_h_table_ints(const vt_resample_coeffs *c);
void   vt_ref_resample_h_prepare(const vt_resample_coeffs *c, int32_t *table);
void   vt_ref_resample_h(const uint8_t *src, size_t src_stride, int rows, int in_w,
                         const uint8_t *src_end, uint8_t *pad, uint8_t *dst, size_t dst_stride,
                         const vt_resample_coeffs *c, const int32_t *table);
void   vt_ref_resample_v(const uint8_t *src, size_t src_stride, size_t row_bytes, uint8_t *dst,
                         size_t dst_stride, const vt_resample_coeffs *c, uint32_t *acc);

/* x86/resample_avx2.c */
size_t vt_resample_h_table_ints_avx2(const vt_resample_coeffs *c);
void   vt_resample_h_prepare_avx2(const vt_resample_coeffs *c, int32_t *table);
void   vt_resample_h_avx2(const uint8_t *src, size_t src_stride, int rows, int in_w,
                          const uint8_t *src_end, uint8_t *pad, uint8_t *dst, size_t dst_stride,
                          const vt_resample_coeffs *c, const int32_t *table);
void   vt_resample_v_avx2(const uint8_t *src, size_t src_stride, size_t row_bytes, uint8_t *dst,
                          size_t dst_stride, const vt_resample_coeffs *c, uint32_t *acc);

/* x86/lowp_avx512bf16.c (-mavx512bf16) and x86/lowp_avx512vnni.c (-mavx512vnni) */
void  vt_bf16_row_avx512bf16(int64_t K, const float *x, uint16_t *y);
void  vt_gemm_bf16_avx512bf16(int64_t M, int64_t K, int64_t n0, int64_t n, const uint16_t *A,
                              int64_t lda, const uint16_t *W, const float *bias, float *C,
                              int64_t ldc, int accumulate);
float vt_u8_row_avx512vnni(int64_t K, const float *x, uint8_t *y);
void  vt_q8_row_avx512vnni(int64_t K, const float *x, uint8_t *row);
void  vt_gemm_q4_avx512vnni(int64_t M, int64_t K, int64_t n0, int64_t n, const uint8_t *A,
                            int64_t lda, const uint8_t *W, const float *bias, float *C,
                            int64_t ldc, int accumulate);
void  vt_gemm_i8_avx512vnni(int64_t M, int64_t K, int64_t n0, int64_t n, const uint8_t *A,
                            int64_t lda, const float *a_scale, const int8_t *W,
                            const float *w_scale, const int32_t *wsum, const float *bias,
                            float *C, int64_t ldc, int accumulate);

/* x86/gemm_avx2.c */
void vt_gemm_f32_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      const float *B, int64_t ldb, int b_nk, const float *bias, float *C,
                      int64_t ldc, int accumulate, float *scratch);
size_t vt_gemm_packed_floats_avx2(int64_t N, int64_t K);
void vt_gemm_pack_nk_avx2(int64_t N, int64_t K, const float *W, float *packed);
void vt_gemm_f32_packed_avx2(int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n,
                             const float *A, int64_t lda, const float *packed,
                             const float *bias, float *C, int64_t ldc, int accumulate,
                             float *scratch);

/* x86/attn_avx2.c */
void vt_attn_f32_avx2(int64_t tq, int64_t tk, int64_t dh, const float *q, int64_t ldq,
                      const float *k, int64_t ldk, const float *v, int64_t ldv, float scale,
                      int causal, float *out, int64_t ldo, float *scratch);

/* x86/gemm_avx512.c */
void vt_gemm_f32_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t ldb, int b_nk, const float *bias, float *C,
                        int64_t ldc, int accumulate, float *scratch);
size_t vt_gemm_packed_floats_avx512(int64_t N, int64_t K);
void vt_gemm_pack_nk_avx512(int64_t N, int64_t K, const float *W, float *packed);
void vt_gemm_f32_packed_avx512(int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n,
                               const float *A, int64_t lda, const float *packed,
                               const float *bias, float *C, int64_t ldc, int accumulate,
                               float *scratch);

/* x86/norm_avx512.c */
void vt_layernorm_f32_avx512(int64_t n, const float *x, const float *w, const float *b,
                             float eps, float *y);
void vt_softmax_f32_avx512(int64_t n, float *x);

/* x86/attn_avx512.c */
void vt_attn_f32_avx512(int64_t tq, int64_t tk, int64_t dh, const float *q, int64_t ldq,
                        const float *k, int64_t ldk, const float *v, int64_t ldv, float scale,
                        int causal, float *out, int64_t ldo, float *scratch);

/* x86/attn_bf16_avx512.c (needs AVX512-BF16 on top of the avx512 table's set) */
void vt_attn_bf16_avx512(int64_t tq, int64_t tk, int64_t dh, const float *q, int64_t ldq,
                         const float *k, int64_t ldk, const float *v, int64_t ldv, float scale,
                         int causal, float *out, int64_t ldo, float *scratch);

/* x86/act_avx512.c */
void vt_gelu_erf_f32_avx512(int64_t n, float *x);
void vt_gelu_tanh_f32_avx512(int64_t n, float *x);
void vt_quick_gelu_f32_avx512(int64_t n, float *x);
void vt_silu_f32_avx512(int64_t n, float *x);
void vt_tanh_f32_avx512(int64_t n, float *x);

#endif /* VT_KERNELS_INTERNAL_H */
