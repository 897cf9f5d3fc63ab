/*
 * test_lowp.c - the low-precision (bf16 / int8) kernels of every table
 * against the reference, and the reference against float32 math.
 *
 *   bf16_row, u8_row      bit for bit (same rounding rules by contract)
 *   gemm_i8               integer sums exact; the float epilogue is the same
 *                         three operations, compared to 1e-6 relative
 *   gemm_bf16             float32 sums of exact bf16 products in another
 *                         order: |c - ref| <= 1e-5 * sum_k |a_k b_k|
 *   reference vs f32      bf16: <= 2^-7 of sum |a b| (two roundings to 8
 *                         bits); int8: <= 2 / 127 of max|a| sum|w| ...
 * over odd shapes, column chunks starting on every panel, A strides > K.
 */
#include "../unit/check.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static float rng_f(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return (float)((double)(x >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static void *xmalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p)
        exit(2);
    return p;
}

static void test_rows(const vt_kernels *t, const vt_kernels *r)
{
    static const int64_t Ks[] = {1, 2, 3, 15, 16, 17, 31, 32, 33, 63, 100, 768, 1029};
    for (size_t ci = 0; ci < sizeof Ks / sizeof Ks[0]; ci++) {
        const int64_t K = Ks[ci];
        float *x = xmalloc((size_t)K * 4);
        for (int64_t k = 0; k < K; k++)
            x[k] = rng_f() * 8.0f;
        if (K > 3) {
            x[1] = 1e-40f;    /* denormal: flushed */
            x[2] = -0.0f;
            x[3] = 1.00390625f; /* 1 + 2^-8: a bf16 tie, rounds to even */
            x[K - 1] = NAN;     /* u8: quantises to 0 on every table */
            x[K / 2] = NAN;
        }
        uint16_t *a = xmalloc((size_t)vt_lp_kpad(K, 2) * 2), *b = xmalloc((size_t)vt_lp_kpad(K, 2) * 2);
        t->bf16_row(K, x, a);
        r->bf16_row(K, x, b);
        CHECK(memcmp(a, b, (size_t)vt_lp_kpad(K, 2) * 2) == 0, "%s bf16_row K=%lld", t->name,
              (long long)K);
        uint8_t *qa = xmalloc((size_t)vt_lp_kpad(K, 4)), *qb = xmalloc((size_t)vt_lp_kpad(K, 4));
        float sa = t->u8_row(K, x, qa), sb = r->u8_row(K, x, qb);
        CHECK(sa == sb && memcmp(qa, qb, (size_t)vt_lp_kpad(K, 4)) == 0, "%s u8_row K=%lld",
              t->name, (long long)K);
        memset(x, 0, (size_t)K * 4);
        CHECK(t->u8_row(K, x, qa) == 0.0f && qa[0] == 128, "%s u8_row zero row", t->name);
        free(x);
        free(a);
        free(b);
        free(qa);
        free(qb);
    }
}

static void test_gemm(const vt_kernels *t, const vt_kernels *r, int64_t M, int64_t N, int64_t K,
                      int bias)
{
    const int64_t Np = vt_lp_kpad(N, VT_LP_NR), lda = vt_lp_kpad(K, 4) + 36;
    float *A = xmalloc((size_t)(M * K) * 4), *W = xmalloc((size_t)(N * K) * 4);
    float *bv = xmalloc((size_t)N * 4);
    for (int64_t i = 0; i < M * K; i++)
        A[i] = rng_f();
    for (int64_t i = 0; i < N * K; i++)
        W[i] = rng_f() * 0.5f;
    for (int64_t i = 0; i < N; i++)
        bv[i] = rng_f();
    uint16_t *wb = xmalloc(vt_lp_bf16_size(N, K) * 2), *ab = xmalloc((size_t)(M * lda) * 2);
    int8_t *wq = xmalloc(vt_lp_i8_size(N, K));
    float *ws = xmalloc((size_t)Np * 4), *as = xmalloc((size_t)M * 4);
    int32_t *wsum = xmalloc((size_t)Np * 4);
    uint8_t *aq = xmalloc((size_t)(M * lda));
    vt_lp_pack_bf16(vt_kernels_ref(), N, K, W, wb);
    vt_lp_pack_i8(vt_kernels_ref(), N, K, W, wq, ws, wsum);
    for (int64_t i = 0; i < M; i++) {
        r->bf16_row(K, A + i * K, ab + i * lda);
        as[i] = r->u8_row(K, A + i * K, aq + i * lda);
    }
    const int64_t ldc = N + 3;
    float *c1 = xmalloc((size_t)(M * ldc) * 4), *c2 = xmalloc((size_t)(M * ldc) * 4);
    /* Chunks as vt_op_linear makes them: starts on panels, the last one short. */
    const int64_t step = N > 2 * VT_LP_NR ? 2 * VT_LP_NR : VT_LP_NR;
    double worst_b = 0, worst_i = 0, worst_bf = 0, worst_if = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t i = 0; i < M * ldc; i++)
            c1[i] = c2[i] = NAN;
        for (int64_t n0 = 0; n0 < N; n0 += step) {
            const int64_t n = N - n0 < step ? N - n0 : step;
            const float *bb = bias ? bv + n0 : NULL;
            if (pass == 0) {
                t->gemm_bf16(M, K, n0, n, ab, lda, wb, bb, c1 + n0, ldc, 0);
                r->gemm_bf16(M, K, n0, n, ab, lda, wb, bb, c2 + n0, ldc, 0);
            } else {
                t->gemm_i8(M, K, n0, n, aq, lda, as, wq, ws, wsum, bb, c1 + n0, ldc, 0);
                r->gemm_i8(M, K, n0, n, aq, lda, as, wq, ws, wsum, bb, c2 + n0, ldc, 0);
            }
        }
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double exact = bias ? bv[j] : 0, abs_sum = 0, amax = 0, wabs = 0;
                for (int64_t k = 0; k < K; k++) {
                    exact += (double)A[i * K + k] * W[j * K + k];
                    abs_sum += fabs((double)A[i * K + k] * W[j * K + k]);
                    amax = fmax(amax, fabs(A[i * K + k]));
                    wabs += fabs(W[j * K + k]);
                }
                const double a = c1[i * ldc + j], e = c2[i * ldc + j];
                CHECK(isfinite(a) && isfinite(e), "%s pass %d: C[%lld,%lld] not written",
                      t->name, pass, (long long)i, (long long)j);
                if (pass == 0) {
                    worst_b = fmax(worst_b, fabs(a - e) / (abs_sum + 1e-30));
                    worst_bf = fmax(worst_bf, fabs(e - exact) / (abs_sum + 1e-30));
                } else {
                    worst_i = fmax(worst_i, fabs(a - e) / (fabs(e) + abs_sum * 1e-3 + 1e-30));
                    worst_if = fmax(worst_if, fabs(e - exact) / (amax * wabs + 1e-30));
                }
            }
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = N; j < ldc; j++)
                CHECK(isnan(c1[i * ldc + j]), "%s wrote past N", t->name);
        /* accumulate = 1 adds exactly the same result once more */
        float *c3 = xmalloc((size_t)(M * ldc) * 4);
        memcpy(c3, c1, (size_t)(M * ldc) * 4);
        for (int64_t n0 = 0; n0 < N; n0 += step) {
            const int64_t n = N - n0 < step ? N - n0 : step;
            const float *bb = bias ? bv + n0 : NULL;
            if (pass == 0)
                t->gemm_bf16(M, K, n0, n, ab, lda, wb, bb, c3 + n0, ldc, 1);
            else
                t->gemm_i8(M, K, n0, n, aq, lda, as, wq, ws, wsum, bb, c3 + n0, ldc, 1);
        }
        double worst_acc = 0;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                const double c = c1[i * ldc + j], want = 2.0 * c;
                worst_acc = fmax(worst_acc, fabs(c3[i * ldc + j] - want) / (fabs(want) + 1e-3));
                CHECK(isfinite(c3[i * ldc + j]), "%s accumulate: C not finite", t->name);
            }
        CHECK(worst_acc <= 1e-5, "%s pass %d accumulate: %.3g", t->name, pass, worst_acc);
        free(c3);
    }
    CHECK(worst_b <= 1e-5, "%s gemm_bf16 %lldx%lldx%lld vs ref: %.3g", t->name, (long long)M,
          (long long)N, (long long)K, worst_b);
    CHECK(worst_bf <= 1.0 / 128, "ref gemm_bf16 %lldx%lldx%lld vs f64: %.3g", (long long)M,
          (long long)N, (long long)K, worst_bf);
    CHECK(worst_i <= 1e-6, "%s gemm_i8 %lldx%lldx%lld vs ref: %.3g", t->name, (long long)M,
          (long long)N, (long long)K, worst_i);
    CHECK(worst_if <= 2.0 / 127, "ref gemm_i8 %lldx%lldx%lld vs f64: %.3g", (long long)M,
          (long long)N, (long long)K, worst_if);
    free(A), free(W), free(bv), free(wb), free(ab), free(wq), free(ws), free(as), free(wsum);
    free(aq), free(c1), free(c2);
}

int main(void)
{
    const vt_kernels *r = vt_kernels_ref(), *tabs[3] = {r, vt_kernels_avx2(), vt_kernels_avx512()};
    static const int64_t Ms[] = {1, 5, 12, 13, 30};
    static const int64_t Ns[] = {1, 17, 32, 33, 100, 200};
    static const int64_t Ks[] = {1, 3, 8, 31, 64, 130, 517};
    for (int ti = 0; ti < 3; ti++) {
        const vt_kernels *t = tabs[ti];
        if (!t || (ti > 0 && t->gemm_bf16 == r->gemm_bf16 && t->gemm_i8 == r->gemm_i8))
            continue;
        printf("table %s (bf16 %s, int8 %s)\n", t->name,
               t->gemm_bf16 == r->gemm_bf16 ? "ref" : "native",
               t->gemm_i8 == r->gemm_i8 ? "ref" : "native");
        test_rows(t, r);
        for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
            for (size_t b = 0; b < sizeof Ns / sizeof Ns[0]; b++)
                for (size_t c = 0; c < sizeof Ks / sizeof Ks[0]; c++)
                    test_gemm(t, r, Ms[a], Ns[b], Ks[c], (int)((a + b + c) & 1));
        test_gemm(t, r, 40, 96, 1100, 1); /* several k blocks in the bf16 kernel */
    }
    printf("%d checks, %d failed\n", n_check, n_fail);
    return n_fail ? 1 : 0;
}
