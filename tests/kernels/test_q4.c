/*
 * test_q4.c - the q4 weight format and kernels (kernels.h q4 section).
 *
 *   vt_f32_to_f16      every half round-trips; against the compiler's
 *                      _Float16 conversion (libgcc) on 4M floats + edges
 *   vt_lp_pack_q4      the layout read back: |w - d (q - 8)| <= d / 2,
 *                      d = f16(max|w| / 7) per column and 32-block
 *   q8_row             every table bit for bit with the reference, and
 *                      |x - s a| <= s / 2 per block
 *   gemm_q4            every table bit for bit with the reference (same
 *                      integer sums, same fused multiply-add order); the
 *                      reference against the dequantised product in double
 * over odd shapes, partial panels, column chunks on every panel, tails of K,
 * zero / NaN / infinite blocks, bias and accumulate.
 */
#include "../unit/check.h"
#include "core/vt.h"
#include "kernels/kernels.h"
#include "kernels/kernels_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_u(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static float rng_f(void)
{
    return (float)((double)(rng_u() >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static void *xmalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p)
        exit(2);
    memset(p, 0, (n + 63) / 64 * 64);
    return p;
}

static void test_f16(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) /* NaN: quiet, any payload */
            continue;
        bad += vt_f32_to_f16(vt_f16_to_f32((uint16_t)h)) != h;
    }
    CHECK(bad == 0, "every non-NaN half round-trips (%d bad)", bad);
    CHECK((vt_f32_to_f16(NAN) & 0x7e00u) == 0x7e00u, "NaN stays NaN");
    CHECK(vt_f32_to_f16(65520.0f) == 0x7c00u && vt_f32_to_f16(65519.0f) == 0x7bffu,
          "overflow rounds to inf at 65520");
#ifdef __FLT16_MAX__
    int diff = 0;
    for (int i = 0; i < (1 << 22); i++) {
        uint32_t u = (uint32_t)rng_u();
        if (i < 1024) /* exponents around the half range, with every tie */
            u = (uint32_t)((100 + i % 60) << 23) | (uint32_t)((i * 4096u) & 0x7fffffu);
        float f;
        memcpy(&f, &u, 4);
        if (f != f)
            continue;
        _Float16 g = (_Float16)f;
        uint16_t gb;
        memcpy(&gb, &g, 2);
        diff += vt_f32_to_f16(f) != gb;
    }
    CHECK(diff == 0, "vt_f32_to_f16 == the compiler's _Float16 conversion (%d differ)", diff);
#endif
}

/* d and q of weight (j, k) read back from the packed layout. */
static float q4_weight(const uint8_t *P, int64_t K, int64_t j, int64_t k, float *d)
{
    const int64_t nb = vt_lp_kpad(K, VT_Q4_BLOCK) / VT_Q4_BLOCK, c = j % VT_LP_NR;
    const uint8_t *blk = P + ((j / VT_LP_NR) * nb + k / VT_Q4_BLOCK) * VT_Q4_BYTES;
    const int kk = (int)(k % VT_Q4_BLOCK), L = kk / 8, hi = (kk % 8) / 4, t = kk % 4;
    const uint8_t byte = blk[(c / 16) * 256 + L * 64 + (c % 16) * 4 + t];
    uint16_t dh;
    memcpy(&dh, blk + 512 + 2 * c, 2);
    *d = vt_f16_to_f32(dh);
    return *d * (float)((hi ? byte >> 4 : byte & 15) - 8);
}

static void test_gemm(const vt_kernels *t, const vt_kernels *r, int64_t M, int64_t N, int64_t K,
                      int special)
{
    const int64_t Kp = vt_lp_kpad(K, VT_Q4_BLOCK), nb = Kp / VT_Q4_BLOCK;
    const int64_t lda = vt_q8_row_bytes(K) + 64;
    float *W = xmalloc((size_t)(N * K) * 4), *X = xmalloc((size_t)(M * K) * 4);
    float *bias = xmalloc((size_t)N * 4);
    for (int64_t i = 0; i < N * K; i++)
        W[i] = rng_f() * (1.0f + (float)(i % 7));
    for (int64_t i = 0; i < M * K; i++)
        X[i] = rng_f() * 3.0f;
    for (int64_t j = 0; j < N; j++)
        bias[j] = rng_f();
    if (special && K >= 40) {
        for (int64_t k = 0; k < 32; k++)
            W[k] = 0.0f;        /* an all-zero block: d = 0 */
        W[(K + 3) % (N * K)] = NAN; /* NaN weight: quantised to 0 */
        W[2 * K % (N * K)] = INFINITY;
        for (int64_t k = 0; k < 32 && M > 1; k++)
            X[K + k] = 0.0f;    /* a zero activation block */
        X[5] = NAN;
        X[(M - 1) * K + 33] = -INFINITY;
    }
    uint8_t *P = xmalloc(vt_lp_q4_size(N, K));
    vt_lp_pack_q4(N, K, W, P);
    /* the layout read back */
    double worst_w = 0;
    int wbad = 0;
    for (int64_t j = 0; j < N; j++)
        for (int64_t k = 0; k < K; k++) {
            float d, w = q4_weight(P, K, j, k, &d);
            if (!isfinite(W[j * K + k]))
                continue;
            if (d == 0.0f) {
                wbad += w != 0.0f;
                continue;
            }
            worst_w = fmax(worst_w, fabs((double)W[j * K + k] - w) / d);
        }
    CHECK(worst_w <= 0.5 + 1e-6 && wbad == 0, "pack_q4 %lldx%lld: |w - d(q-8)| <= %.6f d",
          (long long)N, (long long)K, worst_w);

    uint8_t *A = xmalloc((size_t)(M * lda)), *A2 = xmalloc((size_t)(M * lda));
    for (int64_t i = 0; i < M; i++) {
        t->q8_row(K, X + i * K, A + i * lda);
        r->q8_row(K, X + i * K, A2 + i * lda);
        CHECK(memcmp(A + i * lda, A2 + i * lda, (size_t)vt_q8_row_bytes(K)) == 0,
              "%s q8_row K=%lld row %lld == ref", t->name, (long long)K, (long long)i);
    }
    double worst_a = 0;
    for (int64_t i = 0; i < M; i++) {
        const int8_t *a = (const int8_t *)(A2 + i * lda);
        const float *s = (const float *)(A2 + i * lda + Kp);
        const int32_t *sum = (const int32_t *)(s + nb);
        for (int64_t b = 0; b < nb; b++) {
            int32_t tsum = 0;
            for (int64_t k = b * 32; k < b * 32 + 32; k++) {
                tsum += a[k];
                if (k < K && isfinite(X[i * K + k]) && s[b] > 0)
                    worst_a = fmax(worst_a, fabs((double)X[i * K + k] - s[b] * a[k]) / s[b]);
            }
            CHECK(tsum == sum[b], "q8_row block sums");
        }
    }
    CHECK(worst_a <= 0.5 + 1e-5, "ref q8_row K=%lld: |x - s a| <= %.6f s", (long long)K, worst_a);

    const int64_t ldc = N + 3;
    float *c1 = xmalloc((size_t)(M * ldc) * 4), *c2 = xmalloc((size_t)(M * ldc) * 4);
    for (int pass = 0; pass < 2; pass++) {
        const float *bb = pass ? bias : NULL;
        /* column chunks starting on every panel, as vt_op_linear splits them */
        for (int64_t n0 = 0; n0 < N; n0 += VT_LP_NR) {
            const int64_t n = pass ? N - n0 : (N - n0 < VT_LP_NR ? N - n0 : VT_LP_NR);
            t->gemm_q4(M, K, n0, n, A, lda, P, bb ? bb + n0 : NULL, c1 + n0, ldc, 0);
            r->gemm_q4(M, K, n0, n, A, lda, P, bb ? bb + n0 : NULL, c2 + n0, ldc, 0);
            if (pass)
                break;
        }
        int diff = 0;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                const float x = c1[i * ldc + j], y = c2[i * ldc + j];
                diff += memcmp(&x, &y, 4) != 0 && !(x != x && y != y);
            }
        CHECK(diff == 0, "%s gemm_q4 %lldx%lldx%lld pass %d == ref bit for bit (%d differ)",
              t->name, (long long)M, (long long)N, (long long)K, pass, diff);
    }
    /* accumulate adds */
    memcpy(c1, c2, (size_t)(M * ldc) * 4);
    t->gemm_q4(M, K, 0, N, A, lda, P, bias, c1, ldc, 1);
    double worst_acc = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            if (isfinite(c2[i * ldc + j]))
                worst_acc = fmax(worst_acc, fabs(c1[i * ldc + j] - 2.0 * c2[i * ldc + j]) /
                                                (fabs(c2[i * ldc + j]) + 1e-3));
    CHECK(worst_acc <= 1e-6, "%s gemm_q4 accumulate: %.3g", t->name, worst_acc);
    /* the reference against the dequantised product in double */
    if (!special) {
        double worst = 0;
        for (int64_t i = 0; i < M; i++) {
            const int8_t *a = (const int8_t *)(A2 + i * lda);
            const float *s = (const float *)(A2 + i * lda + Kp);
            for (int64_t j = 0; j < N; j++) {
                double e = bias[j], mag = fabs(bias[j]);
                for (int64_t k = 0; k < K; k++) {
                    float d, w = q4_weight(P, K, j, k, &d);
                    e += (double)w * s[k / 32] * a[k];
                    mag += fabs((double)w * s[k / 32] * a[k]);
                }
                worst = fmax(worst, fabs(c2[i * ldc + j] - e) / (mag + 1e-30));
            }
        }
        CHECK(worst <= 1e-6, "ref gemm_q4 %lldx%lldx%lld vs dequantised f64: %.3g of sum |w a|",
              (long long)M, (long long)N, (long long)K, worst);
    }
    free(W), free(X), free(bias), free(P), free(A), free(A2), free(c1), free(c2);
}

int main(void)
{
    test_f16();
    const vt_kernels *r = vt_kernels_ref(), *tabs[3] = {r, vt_kernels_avx2(), vt_kernels_avx512()};
    static const int64_t Ms[] = {1, 2, 3, 4, 5, 9};
    static const int64_t Ns[] = {1, 16, 17, 32, 33, 100};
    static const int64_t Ks[] = {1, 31, 32, 33, 64, 100, 517};
    for (int ti = 0; ti < 3; ti++) {
        const vt_kernels *t = tabs[ti];
        if (!t || (ti > 0 && t->gemm_q4 == r->gemm_q4 && t->q8_row == r->q8_row))
            continue;
        printf("table %s (q4 %s)\n", t->name, t->gemm_q4 == r->gemm_q4 ? "ref" : "native");
        for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
            for (size_t b = 0; b < sizeof Ns / sizeof Ns[0]; b++)
                for (size_t c = 0; c < sizeof Ks / sizeof Ks[0]; c++)
                    test_gemm(t, r, Ms[a], Ns[b], Ks[c], (int)((a + b + c) % 3 == 0));
        test_gemm(t, r, 7, 96, 2048, 0);
    }
    printf("%d checks, %d failed\n", n_check, n_fail);
    return n_fail ? 1 : 0;
}
