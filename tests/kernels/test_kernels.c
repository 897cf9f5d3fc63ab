/*
 * test_kernels.c - every ISA kernel table against the reference table, op by
 * op, on odd shapes and awkward values; plus the dispatch itself.
 *
 * Runs alone (ctest -L kernels, or ./test_kernels); exits non-zero on the
 * first class of failure, after printing up to a few mismatches per op.
 * Sizes are chosen to finish in a few seconds even under ASan+UBSan: the
 * reference GEMM is the slow part, so GEMM shapes are all small-to-medium
 * combinations of the edge sizes plus a handful that cross the blocking
 * boundaries (K > 256, N > 480/512) with small M.
 *
 * Buffers are allocated to their exact size (sanitizers see overruns), C is
 * pre-filled with NaN when not accumulating (the kernel must not read it) and
 * the ldc padding with a sentinel (the kernel must not write it).
 *
 * The prepacked GEMM (gemm_pack_nk + gemm_f32_packed) is checked per column
 * chunk against the same table's gemm_f32, bit for bit, and against the
 * reference; vt_op_linear is checked to use a packed weight only under the
 * table that packed it. The element-wise ops of the LLM runtime (add,
 * scale, RMSNorm, RoPE) are checked against the reference and the reference
 * against the formula in double, and their vt_op_* wrappers against the
 * kernels. The fused attention kernels have their own file, test_attn.c.
 */
#include "core/ops.h"
#include "kernels/kernels.h"
#include "vtok.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail;

/* ---------------------------------------------------------------- utils -- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_u64(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Uniform in [-1, 1). */
static float rng_f(void)
{
    return (float)((double)(rng_u64() >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static int rng_int(int n)
{
    return (int)(rng_u64() % (uint64_t)n);
}

static void *xalloc(size_t n_floats)
{
    size_t bytes = (n_floats * sizeof(float) + 63) / 64 * 64;
    void *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* An exactly-sized (unaligned end) copy, so sanitizers catch overreads. */
static float *xdup(const float *src, size_t n)
{
    float *p = malloc(n ? n * sizeof(float) : 1);
    if (!p)
        exit(2);
    if (n)
        memcpy(p, src, n * sizeof(float));
    return p;
}

static const float SENTINEL_PAD = -31337.5f;

static int same_bits(float a, float b)
{
    uint32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return x == y;
}

/* ----------------------------------------------------------------- GEMM -- */

typedef struct {
    int64_t M, N, K, lda, ldb, ldc;
    int b_nk, has_bias, accumulate;
} gemm_case;

static int64_t g_gemm_cases, g_gemm_flops;

/*
 * Tolerance: both sides sum the same float32 products; the deterministic
 * bound on the difference is ~K * 2^-24 * sum_k |a_ik b_kj|, but with
 * random-sign data the rounding errors are a random walk, ~sqrt(K) * 2^-24,
 * i.e. <= 1.5e-6 of the absolute sum at K = 577. 1e-5 of the absolute sum
 * (+ |bias| + |old C|, which are added with their own roundings) leaves a
 * wide margin while any indexing, masking or blocking bug gives O(1) errors.
 */
static int check_gemm(const vt_kernels *t, const gemm_case *gc, float *scratch)
{
    const int64_t M = gc->M, N = gc->N, K = gc->K;
    const int64_t brows = gc->b_nk ? N : K, bcols = gc->b_nk ? K : N;
    const size_t na = M ? (size_t)((M - 1) * gc->lda + K) : 0;
    const size_t nb = brows ? (size_t)((brows - 1) * gc->ldb + bcols) : 0;
    const size_t nc = M ? (size_t)((M - 1) * gc->ldc + N) : 0;
    float *a0 = xalloc(na), *b0 = xalloc(nb), *bias0 = xalloc((size_t)N), *c0 = xalloc(nc);
    for (size_t i = 0; i < na; i++)
        a0[i] = rng_f();
    for (size_t i = 0; i < nb; i++)
        b0[i] = rng_f();
    for (int64_t i = 0; i < N; i++)
        bias0[i] = rng_f();
    for (size_t i = 0; i < nc; i++)
        c0[i] = gc->accumulate ? rng_f() : NAN;
    const float sentinel = -12345.678f;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = N; j < gc->ldc && (size_t)(i * gc->ldc + j) < nc; j++)
            c0[i * gc->ldc + j] = sentinel;

    float *A = xdup(a0, na), *B = xdup(b0, nb), *bias = gc->has_bias ? xdup(bias0, (size_t)N) : NULL;
    float *Cref = xdup(c0, nc), *C = xdup(c0, nc);
    vt_kernels_ref()->gemm_f32(M, N, K, A, gc->lda, B, gc->ldb, gc->b_nk, bias, Cref, gc->ldc,
                               gc->accumulate, scratch);
    t->gemm_f32(M, N, K, A, gc->lda, B, gc->ldb, gc->b_nk, bias, C, gc->ldc, gc->accumulate,
                scratch);
    g_gemm_cases++;
    g_gemm_flops += 2 * M * N * K;

    int bad = 0;
    for (int64_t i = 0; i < M && bad < 3; i++) {
        for (int64_t j = 0; j < gc->ldc && bad < 3; j++) {
            size_t idx = (size_t)(i * gc->ldc + j);
            if (idx >= nc)
                break;
            if (j >= N) {
                if (!same_bits(C[idx], sentinel)) {
                    printf("  FAIL %s gemm M=%lld N=%lld K=%lld: wrote padding C[%lld][%lld]\n",
                           t->name, (long long)M, (long long)N, (long long)K, (long long)i,
                           (long long)j);
                    bad++;
                }
                continue;
            }
            double mag = 0;
            for (int64_t k = 0; k < K; k++) {
                float bv = gc->b_nk ? B[j * gc->ldb + k] : B[k * gc->ldb + j];
                mag += fabs((double)A[i * gc->lda + k] * bv);
            }
            if (bias)
                mag += fabs(bias[j]);
            if (gc->accumulate)
                mag += fabs(c0[idx]);
            double d = fabs((double)C[idx] - (double)Cref[idx]);
            if (!(d <= 1e-5 * mag + 1e-30)) {
                printf("  FAIL %s gemm M=%lld N=%lld K=%lld lda=%lld ldb=%lld ldc=%lld b_nk=%d "
                       "bias=%d acc=%d: C[%lld][%lld] = %.9g, ref %.9g (|sum| %.3g)\n",
                       t->name, (long long)M, (long long)N, (long long)K, (long long)gc->lda,
                       (long long)gc->ldb, (long long)gc->ldc, gc->b_nk, gc->has_bias,
                       gc->accumulate, (long long)i, (long long)j, C[idx], Cref[idx], mag);
                bad++;
            }
        }
    }
    free(A);
    free(B);
    free(bias);
    free(Cref);
    free(C);
    free(a0);
    free(b0);
    free(bias0);
    free(c0);
    return bad;
}

static void run_gemm_case(const vt_kernels *t, int64_t M, int64_t N, int64_t K, int b_nk,
                          int has_bias, int accumulate, int pad, float *scratch)
{
    gemm_case gc = {M, N, K, 0, 0, 0, b_nk, has_bias, accumulate};
    /* pad: 0 tight strides, 1 odd extra, 2 power-of-two lda (L1 aliasing path) */
    gc.lda = K + (pad == 1 ? 3 : 0);
    if (pad == 2)
        gc.lda = K <= 1024 ? 1024 : 2048;
    gc.ldb = (b_nk ? K : N) + (pad ? 5 : 0);
    gc.ldc = N + (pad ? 7 : 0);
    if (check_gemm(t, &gc, scratch))
        g_fail = 1;
}

static void test_gemm(const vt_kernels *t, float *scratch)
{
    static const int64_t sz[] = {0, 1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 65, 127, 129, 200, 257, 577};
    const int ns = (int)(sizeof sz / sizeof sz[0]);
    g_gemm_cases = g_gemm_flops = 0;
    int before = g_fail;
    /* Every (M, N, K) combination up to 1 M multiply-adds, with a
     * pseudo-random choice of b_nk / bias / accumulate / stride padding; the
     * all-edge combinations small enough get every variant. */
    for (int im = 0; im < ns; im++)
        for (int in = 0; in < ns; in++)
            for (int ik = 0; ik < ns; ik++) {
                int64_t M = sz[im], N = sz[in], K = sz[ik];
                if (M * N * K > 1000000)
                    continue;
                if (M * N * K <= 4096) {
                    for (int v = 0; v < 8; v++)
                        run_gemm_case(t, M, N, K, v & 1, (v >> 1) & 1, (v >> 2) & 1, v % 3,
                                      scratch);
                } else if (rng_int(4) == 0) {
                    int v = rng_int(8);
                    run_gemm_case(t, M, N, K, v & 1, (v >> 1) & 1, (v >> 2) & 1, rng_int(3),
                                  scratch);
                }
            }
    /* Blocking boundaries (KC = 256, NC = 480 / 512) and model-like shapes. */
    static const int64_t big[][3] = {
        {5, 1000, 300}, {13, 481, 257}, {1, 961, 33}, {3, 513, 513}, {25, 300, 600},
        {197, 64, 197}, {197, 197, 64}, {12, 768, 768}, {24, 64, 1100}, {37, 1030, 130},
        {2, 2049, 70}, {11, 40, 2000},
    };
    for (size_t s = 0; s < sizeof big / sizeof big[0]; s++)
        for (int v = 0; v < 4; v++)
            run_gemm_case(t, big[s][0], big[s][1], big[s][2], v & 1, 1, (v >> 1) & 1, v % 3,
                          scratch);
    printf("  %-7s gemm_f32       %s (%lld cases, %.2f GFLOP)\n", t->name,
           g_fail == before ? "ok" : "FAIL", (long long)g_gemm_cases, 1e-9 * (double)g_gemm_flops);
}

/* --------------------------------------------------------- packed GEMM -- */

/*
 * gemm_f32_packed over a weight packed once by the same table, called per
 * column chunk [n0, n0 + n) as src/core/ops.c does. Its contract (kernels.h)
 * is bit-for-bit gemm_f32 of that table on W + n0 * K, so each chunk is
 * compared exactly against it (which also checks that nothing outside the
 * chunks or past ldc is written: the untouched columns must keep their
 * bits), and against the reference within check_gemm's tolerance.
 */
typedef struct {
    int64_t n0, n;
} col_chunk;

static int64_t g_packed_cases;

static int check_packed(const vt_kernels *t, int64_t M, int64_t N, int64_t K, int64_t lda,
                        int64_t ldc, int has_bias, int accumulate, const col_chunk *ch, int nch,
                        float *scratch)
{
    const size_t na = M ? (size_t)((M - 1) * lda + K) : 0, nw = (size_t)(N * K);
    const size_t nc = M ? (size_t)((M - 1) * ldc + N) : 0;
    float *a0 = xalloc(na), *w0 = xalloc(nw), *bias0 = xalloc((size_t)N), *c0 = xalloc(nc);
    for (size_t i = 0; i < na; i++)
        a0[i] = rng_f();
    for (size_t i = 0; i < nw; i++)
        w0[i] = rng_f();
    for (int64_t i = 0; i < N; i++)
        bias0[i] = rng_f();
    const float sentinel = -12345.678f;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < ldc && (size_t)(i * ldc + j) < nc; j++)
            c0[i * ldc + j] = j >= N ? sentinel : accumulate ? rng_f() : NAN;
    float *A = xdup(a0, na), *W = xdup(w0, nw), *bias = has_bias ? xdup(bias0, (size_t)N) : NULL;
    float *Cref = xdup(c0, nc), *Cun = xdup(c0, nc), *Cp = xdup(c0, nc);

    /* Exactly the advertised size, 64-byte aligned; only the aligned_alloc
     * rounding (< 16 floats) is slack the sanitizers cannot see. */
    const size_t np = t->gemm_packed_floats(N, K);
    float *packed = np ? xalloc(np) : NULL;
    if (np)
        t->gemm_pack_nk(N, K, W, packed);
    for (int c = 0; c < nch; c++) {
        const int64_t n0 = ch[c].n0, n = ch[c].n;
        const float *b = bias ? bias + n0 : NULL;
        vt_kernels_ref()->gemm_f32(M, n, K, A, lda, W + n0 * K, K, 1, b, Cref + n0, ldc,
                                   accumulate, scratch);
        t->gemm_f32(M, n, K, A, lda, W + n0 * K, K, 1, b, Cun + n0, ldc, accumulate, scratch);
        t->gemm_f32_packed(M, N, K, n0, n, A, lda, packed, b, Cp + n0, ldc, accumulate,
                           scratch);
        g_gemm_flops += 2 * M * n * K;
    }
    g_packed_cases++;

    int bad = 0;
    for (int64_t i = 0; i < M && bad < 3; i++) {
        for (int64_t j = 0; j < ldc && bad < 3; j++) {
            const size_t idx = (size_t)(i * ldc + j);
            if (idx >= nc)
                break;
            if (!same_bits(Cp[idx], Cun[idx])) {
                printf("  FAIL %s gemm_f32_packed M=%lld N=%lld K=%lld lda=%lld ldc=%lld "
                       "bias=%d acc=%d: C[%lld][%lld] = %.9g, gemm_f32 gives %.9g\n",
                       t->name, (long long)M, (long long)N, (long long)K, (long long)lda,
                       (long long)ldc, has_bias, accumulate, (long long)i, (long long)j,
                       Cp[idx], Cun[idx]);
                bad++;
                continue;
            }
            if (j >= N || same_bits(Cref[idx], c0[idx]))
                continue; /* padding, or a column no chunk covers */
            double mag = 0;
            for (int64_t k = 0; k < K; k++)
                mag += fabs((double)A[i * lda + k] * W[j * K + k]);
            if (bias)
                mag += fabs(bias[j]);
            if (accumulate)
                mag += fabs(c0[idx]);
            if (!(fabs((double)Cp[idx] - (double)Cref[idx]) <= 1e-5 * mag + 1e-30)) {
                printf("  FAIL %s gemm_f32_packed M=%lld N=%lld K=%lld: C[%lld][%lld] = %.9g, "
                       "ref %.9g\n", t->name, (long long)M, (long long)N, (long long)K,
                       (long long)i, (long long)j, Cp[idx], Cref[idx]);
                bad++;
            }
        }
    }
    free(packed);
    free(A);
    free(W);
    free(bias);
    free(Cref);
    free(Cun);
    free(Cp);
    free(a0);
    free(w0);
    free(bias0);
    free(c0);
    return bad;
}

/* Chunkings of [0, N) that ops.c could produce, and a few it does not
 * (chunks that end inside a panel, columns left out). */
static int make_chunks(int64_t N, int how, col_chunk *ch, int max)
{
    const int64_t al = VT_GEMM_PANEL_ALIGN;
    int n = 0;
    if (how == 0 || N <= al) {
        ch[n++] = (col_chunk){0, N};
    } else if (how == 1) {
        /* Whole panels of random widths, the last chunk whatever is left. */
        for (int64_t n0 = 0; n0 < N && n < max;) {
            int64_t w = al * (1 + rng_int(4));
            w = w < N - n0 ? w : N - n0;
            ch[n++] = (col_chunk){n0, w};
            n0 += w;
        }
    } else {
        /* Partial chunks: from a panel start to anywhere, some columns uncovered. */
        for (int64_t n0 = 0; n0 < N && n < max; n0 += al * (1 + rng_int(3))) {
            int64_t w = 1 + rng_int((int)(N - n0 < 3 * al ? N - n0 : 3 * al));
            ch[n++] = (col_chunk){n0, w};
        }
    }
    return n;
}

static void test_gemm_packed(const vt_kernels *t, float *scratch)
{
    if (!t->gemm_packed_floats) {
        printf("  %-7s gemm_f32_packed: no packed form\n", t->name);
        return;
    }
    static const int64_t ms[] = {1, 2, 5, 12, 13, 25, 37};
    static const int64_t ns[] = {1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 47, 48, 63, 65,
                                 100, 129, 481, 1000};
    static const int64_t ks[] = {0, 1, 3, 8, 17, 64, 255, 256, 257, 300, 513, 1030};
    const int nm = (int)(sizeof ms / sizeof ms[0]), nn = (int)(sizeof ns / sizeof ns[0]);
    const int nk = (int)(sizeof ks / sizeof ks[0]);
    g_packed_cases = g_gemm_flops = 0;
    int before = g_fail;
    col_chunk ch[64];
    for (int in = 0; in < nn; in++)
        for (int ik = 0; ik < nk; ik++)
            for (int im = 0; im < nm; im++) {
                const int64_t M = ms[im], N = ns[in], K = ks[ik];
                const int small = M * N * K <= 20000;
                if (M * N * K > 2000000 || (!small && rng_int(3) != 0))
                    continue;
                for (int v = 0; v < (small ? 6 : 1); v++) {
                    const int var = small ? v : rng_int(6);
                    /* lda: tight, odd, or a power of two (the A-row copy path) */
                    const int pad = rng_int(3);
                    const int64_t lda = pad == 0 ? K : pad == 1 ? K + 3 : K <= 1024 ? 1024 : 2048;
                    const int64_t ldc = N + (rng_int(2) ? 7 : 0);
                    const int nch = make_chunks(N, var % 3, ch, 64);
                    if (check_packed(t, M, N, K, lda, ldc, rng_int(2), var >= 3, ch, nch,
                                     scratch))
                        g_fail = 1;
                }
            }
    /* Model-like: a ViT-B MLP row block, chunked as ops.c does for 2 threads. */
    int nch = make_chunks(3072, 1, ch, 64);
    if (check_packed(t, 29, 3072, 768, 768, 3072, 1, 0, ch, nch, scratch) ||
        check_packed(t, 13, 768, 3072, 3072, 768, 1, 1, ch, make_chunks(768, 1, ch, 64),
                     scratch))
        g_fail = 1;
    printf("  %-7s gemm_f32_packed %s (%lld cases, %.2f GFLOP)\n", t->name,
           g_fail == before ? "ok" : "FAIL", (long long)g_packed_cases,
           1e-9 * (double)g_gemm_flops);
}

/*
 * vt_op_linear (src/core/ops.c) with a prepacked weight: under the table that
 * packed it, bit-identical to the same Linear unpacked (the chunks are the
 * same, see kernels.h); under another table (here the reference, as after
 * vtok_force_reference_kernels) it must ignore the packed copy and read w.
 */
static void test_op_linear_packed(const vt_kernels *t)
{
    if (!t->gemm_packed_floats)
        return;
    static const int64_t shapes[][3] = {{37, 1000, 300}, {600, 100, 40}, {197, 65, 17}, {1, 33, 5}};
    vt_pool *pool = vt_pool_new(3);
    if (!pool)
        exit(2);
    const int64_t stride = vt_exec_scratch_floats(1);
    float *scr = xalloc((size_t)(3 * stride));
    int bad = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        const int64_t ldx = K + 5, ldy = N + 3;
        const size_t nx = (size_t)((M - 1) * ldx + K), ny = (size_t)((M - 1) * ldy + N);
        float *x = xalloc(nx), *w = xalloc((size_t)(N * K)), *b = xalloc((size_t)N);
        float *packed = xalloc(t->gemm_packed_floats(N, K));
        for (size_t i = 0; i < nx; i++)
            x[i] = rng_f();
        for (int64_t i = 0; i < N * K; i++)
            w[i] = rng_f();
        for (int64_t i = 0; i < N; i++)
            b[i] = rng_f();
        t->gemm_pack_nk(N, K, w, packed);
        const vt_linear plain = {.w = w, .b = b, .n_out = N, .n_in = K};
        vt_linear pk = plain;
        pk.packed = packed;
        pk.packed_by = t;
        /* Run under t, the reference, and the other ISA table (another
         * packed layout): y[2r] unpacked, y[2r + 1] with the packed copy. */
        const vt_kernels *run[3] = {t, vt_kernels_ref(),
                                    t == vt_kernels_avx512() ? vt_kernels_avx2()
                                                             : vt_kernels_avx512()};
        float *y[6] = {NULL};
        for (int r = 0; r < 6; r++) {
            if (!run[r / 2])
                continue;
            y[r] = xalloc(ny);
            for (size_t i = 0; i < ny; i++)
                y[r][i] = -7.0f;
            vt_exec e = {.pool = pool, .k = run[r / 2], .scratch = scr,
                         .scratch_stride = stride};
            vt_op_linear(&e, M, x, ldx, r % 2 ? &pk : &plain, y[r], ldy);
        }
        for (int r = 0; r < 6 && bad < 3; r += 2) {
            for (size_t i = 0; y[r] && i < ny && bad < 3; i++) {
                if (!same_bits(y[r][i], y[r + 1][i])) {
                    printf("  FAIL %s-packed vt_op_linear under %s, M=%lld N=%lld K=%lld at "
                           "%zu: %.9g, unpacked %.9g\n", t->name, run[r / 2]->name,
                           (long long)M, (long long)N, (long long)K, i, y[r + 1][i], y[r][i]);
                    bad++;
                }
            }
        }
        for (int r = 0; r < 6; r++)
            free(y[r]);
        free(x);
        free(w);
        free(b);
        free(packed);
    }
    vt_pool_free(pool);
    free(scr);
    if (bad)
        g_fail = 1;
    printf("  %-7s vt_op_linear packed / fallback %s\n", t->name, bad ? "FAIL" : "ok");
}

/* ------------------------------------------------------------ layernorm -- */

static void test_layernorm(const vt_kernels *t)
{
    static const int64_t ns[] = {1, 2, 3, 15, 16, 17, 31, 33, 100, 768, 1024, 1025, 1280, 4096};
    int bad = 0;
    for (size_t s = 0; s < sizeof ns / sizeof ns[0]; s++) {
        const int64_t n = ns[s];
        for (int v = 0; v < 8; v++) {
            float *x = xalloc((size_t)n), *w = xalloc((size_t)n), *b = xalloc((size_t)n);
            /* Offsets and outlier channels as in real ViT residual streams. */
            const float off = (v & 1) ? 20.0f : 0.0f, scale = (v & 2) ? 0.01f : 3.0f;
            for (int64_t i = 0; i < n; i++) {
                x[i] = off + scale * rng_f();
                if (rng_int(64) == 0)
                    x[i] *= 50.0f;
                w[i] = 1.0f + 0.5f * rng_f();
                b[i] = 0.2f * rng_f();
            }
            const int use_wb = v < 6, alias = v >= 4;
            const float eps = (v & 1) ? 1e-6f : 1e-5f;
            float *xr = xdup(x, (size_t)n), *xt = xdup(x, (size_t)n);
            float *yr = malloc((size_t)n * sizeof(float)), *yt = malloc((size_t)n * sizeof(float));
            if (!yr || !yt)
                exit(2);
            vt_kernels_ref()->layernorm_f32(n, xr, use_wb ? w : NULL, use_wb ? b : NULL, eps,
                                            alias ? xr : yr);
            t->layernorm_f32(n, xt, use_wb ? w : NULL, use_wb ? b : NULL, eps, alias ? xt : yt);
            const float *er = alias ? xr : yr, *et = alias ? xt : yt;
            /* The normalized value is O(1); the ISA version may differ from the
             * reference by a few float roundings of it (and of w, b). */
            for (int64_t i = 0; i < n && bad < 5; i++) {
                double lim = 1e-6 * (fabs(er[i]) + (use_wb ? fabs(w[i]) + fabs(b[i]) : 1.0));
                if (!(fabs((double)et[i] - er[i]) <= lim)) {
                    printf("  FAIL %s layernorm n=%lld v=%d i=%lld: %.9g ref %.9g\n", t->name,
                           (long long)n, v, (long long)i, et[i], er[i]);
                    bad++;
                }
            }
            free(x);
            free(w);
            free(b);
            free(xr);
            free(xt);
            free(yr);
            free(yt);
        }
    }
    if (bad)
        g_fail = 1;
    printf("  %-7s layernorm_f32  %s\n", t->name, bad ? "FAIL" : "ok");
}

/* -------------------------------------------------------------- softmax -- */

static void test_softmax(const vt_kernels *t)
{
    static const int64_t ns[] = {1, 2, 3, 15, 16, 17, 31, 33, 64, 197, 257, 577, 1000, 1025};
    int bad = 0;
    for (size_t s = 0; s < sizeof ns / sizeof ns[0]; s++) {
        const int64_t n = ns[s];
        for (int v = 0; v < 4; v++) {
            float *x = xalloc((size_t)n);
            const float scale = v == 0 ? 1.0f : v == 1 ? 10.0f : v == 2 ? 100.0f : 0.001f;
            for (int64_t i = 0; i < n; i++) {
                x[i] = scale * rng_f();
                if (v == 1 && i > 0 && rng_int(4) == 0)
                    x[i] = -INFINITY; /* masked positions */
            }
            float *xr = xdup(x, (size_t)n), *xt = xdup(x, (size_t)n);
            vt_kernels_ref()->softmax_f32(n, xr);
            t->softmax_f32(n, xt);
            /* exp within ~2 ulp per term, the same summation order, and one
             * rounding each for 1/sum and the product: <= ~5e-7 relative. */
            for (int64_t i = 0; i < n && bad < 5; i++) {
                if (!(fabs((double)xt[i] - xr[i]) <= 1e-6 * fabs(xr[i]) + 1e-37)) {
                    printf("  FAIL %s softmax n=%lld v=%d i=%lld: %.9g ref %.9g\n", t->name,
                           (long long)n, v, (long long)i, xt[i], xr[i]);
                    bad++;
                }
            }
            free(x);
            free(xr);
            free(xt);
        }
    }
    if (bad)
        g_fail = 1;
    printf("  %-7s softmax_f32    %s\n", t->name, bad ? "FAIL" : "ok");
}

/* ---------------------------------------------------------- activations -- */

typedef struct {
    const char *name;
    size_t off; /* offsetof the op in vt_kernels */
    double rel; /* relative bound                */
    double xabs; /* bound proportional to |x|    */
} act_op;

/*
 * Bounds. quick_gelu, silu, tanh have no cancellation anywhere: the ISA
 * version differs from libm-based reference by a few ulp of each
 * intermediate, so 1e-6 relative (~8 ulp) of the result.
 * gelu (erf and tanh forms) compute 0.5 x (1 + f(x)) with f -> -1 for
 * x -> -inf: the reference's own float rounding of (1 + f) is absolute,
 * 2^-24 per ulp of f's error, which is relative to x, not to the (tiny)
 * result. PyTorch has the same cancellation, so the spec can only ask for
 * |d| <= 1e-6 |ref| + (2 ulp of 1) * 0.5 |x| = ... + 1.2e-7 |x|.
 */
static const act_op act_ops[] = {
    {"gelu_erf_f32", offsetof(vt_kernels, gelu_erf_f32), 1e-6, 1.2e-7},
    {"gelu_tanh_f32", offsetof(vt_kernels, gelu_tanh_f32), 1e-6, 1.2e-7},
    {"quick_gelu_f32", offsetof(vt_kernels, quick_gelu_f32), 1e-6, 0},
    {"silu_f32", offsetof(vt_kernels, silu_f32), 1e-6, 0},
    {"tanh_f32", offsetof(vt_kernels, tanh_f32), 1e-6, 0},
};

static vt_act_f32_fn act_fn(const vt_kernels *t, const act_op *op)
{
    vt_act_f32_fn f;
    memcpy(&f, (const char *)t + op->off, sizeof f);
    return f;
}

static void test_acts(const vt_kernels *t)
{
    /* Dense log-uniform magnitudes 1e-8..200 of both signs, a uniform band
     * where the functions bend, and the special values. */
    const int64_t n = 200003;
    float *x = xalloc((size_t)n);
    static const float special[] = {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-38f, -1e-38f, 1e-20f,
                                    -1e-20f, 0.5f, -0.5f, 1.0f, -1.0f, 3.0f, -3.0f, 9.0f,
                                    -9.0f, 10.0f, -10.0f, 88.0f, -88.0f, 89.0f, -89.0f, 104.0f,
                                    -104.0f, 1e10f, -1e10f, 3e38f, -3e38f, INFINITY, -INFINITY,
                                    NAN};
    const int nsp = (int)(sizeof special / sizeof special[0]);
    for (int64_t i = 0; i < n; i++) {
        if (i < nsp)
            x[i] = special[i];
        else if (i % 2)
            x[i] = 12.0f * rng_f();
        else
            x[i] = (rng_u64() & 1 ? 1.0f : -1.0f) * expf(13.8f * (float)rng_f() - 13.8f) * 200.0f;
    }
    for (size_t o = 0; o < sizeof act_ops / sizeof act_ops[0]; o++) {
        const act_op *op = &act_ops[o];
        int bad = 0;
        double worst = 0;
        /* Several lengths so every tail width is exercised. */
        static const int64_t lens[] = {0, 1, 5, 16, 17, 31, 200003};
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            const int64_t m = lens[l];
            float *xr = xdup(x, (size_t)m), *xt = xdup(x, (size_t)m);
            act_fn(vt_kernels_ref(), op)(m, xr);
            act_fn(t, op)(m, xt);
            for (int64_t i = 0; i < m && bad < 5; i++) {
                if (isnan(xr[i]) || isnan(xt[i]) || isinf(xr[i]) || isinf(xt[i])) {
                    if (!(isnan(xr[i]) && isnan(xt[i])) && xr[i] != xt[i]) {
                        printf("  FAIL %s %s(%.9g) = %.9g, ref %.9g\n", t->name, op->name, x[i],
                               xt[i], xr[i]);
                        bad++;
                    }
                    continue;
                }
                double d = fabs((double)xt[i] - xr[i]);
                double lim = op->rel * fabs(xr[i]) + 1e-44;
                if (op->xabs > 0)
                    lim += op->xabs * fabs(x[i]);
                if (d > 0)
                    worst = fmax(worst, d / lim);
                if (!(d <= lim)) {
                    printf("  FAIL %s %s(%.9g) = %.9g, ref %.9g\n", t->name, op->name, x[i],
                           xt[i], xr[i]);
                    bad++;
                }
            }
            free(xr);
            free(xt);
        }
        if (bad)
            g_fail = 1;
        printf("  %-7s %-14s %s (worst error %.2f of the bound)\n", t->name, op->name,
               bad ? "FAIL" : "ok", worst);
    }
    free(x);
}

/* ------------------------------------------------------------- dispatch -- */

/* ---------------------------------------- element-wise ops (LLM runtime) -- */

/* add_f32, scale_f32: one rounding per element, so bit-exact. rmsnorm_f32:
 * the ISA versions keep the reference's summation order, so within one
 * rounding of the output (1e-6 relative). rope_f32: two products and a sum
 * per element, within 1e-6 of max(|x|) (both orders round the same terms).
 * Exactly-sized buffers; rope rows with head padding (ldh > dh) that must
 * not be written. */
static void test_eltwise(const vt_kernels *t)
{
    static const int64_t ns[] = {1, 2, 15, 16, 17, 31, 33, 100, 1023, 4096, 4099};
    int bad = 0;
    const vt_kernels *r = vt_kernels_ref();
    for (size_t s = 0; s < sizeof ns / sizeof ns[0]; s++) {
        const int64_t n = ns[s];
        float *x = xalloc((size_t)n), *w = xalloc((size_t)n), *y0 = xalloc((size_t)n);
        for (int64_t i = 0; i < n; i++) {
            x[i] = 4.0f * rng_f() + (rng_int(50) == 0 ? 100.0f : 0.0f);
            w[i] = 1.0f + 0.5f * rng_f();
            y0[i] = 2.0f * rng_f();
        }
        float *yr = xdup(y0, (size_t)n), *yt = xdup(y0, (size_t)n);
        r->add_f32(n, x, yr);
        t->add_f32(n, x, yt);
        for (int64_t i = 0; i < n && bad < 5; i++)
            if (!same_bits(yr[i], yt[i]) || !same_bits(yr[i], y0[i] + x[i])) {
                printf("  FAIL %s add n=%lld i=%lld: %.9g ref %.9g\n", t->name, (long long)n,
                       (long long)i, yt[i], yr[i]);
                bad++;
            }
        r->scale_f32(n, -0.37f, x, yr);
        t->scale_f32(n, -0.37f, x, yt);
        for (int64_t i = 0; i < n && bad < 5; i++)
            if (!same_bits(yr[i], yt[i]) || !same_bits(yr[i], -0.37f * x[i])) {
                printf("  FAIL %s scale n=%lld i=%lld: %.9g ref %.9g\n", t->name, (long long)n,
                       (long long)i, yt[i], yr[i]);
                bad++;
            }
        for (int v = 0; v < 3; v++) {
            /* v 0: weight; 1: no weight; 2: weight, in place */
            const float *wv = v == 1 ? NULL : w;
            float *xr = xdup(x, (size_t)n), *xt = xdup(x, (size_t)n);
            r->rmsnorm_f32(n, xr, wv, 1e-6f, v == 2 ? xr : yr);
            t->rmsnorm_f32(n, xt, wv, 1e-6f, v == 2 ? xt : yt);
            const float *er = v == 2 ? xr : yr, *et = v == 2 ? xt : yt;
            /* The reference itself against the formula in double. */
            double ss = 0;
            for (int64_t i = 0; i < n; i++)
                ss += (double)x[i] * x[i];
            const double rs = 1.0 / sqrt(ss / (double)n + 1e-6);
            for (int64_t i = 0; i < n && bad < 5; i++) {
                const double want = x[i] * rs * (wv ? wv[i] : 1.0);
                if (!(fabs((double)et[i] - er[i]) <= 1e-6 * fabs(er[i])) ||
                    !(fabs(er[i] - want) <= 1e-5 * fabs(want) + 1e-7)) {
                    printf("  FAIL %s rmsnorm n=%lld v=%d i=%lld: %.9g ref %.9g want %.9g\n",
                           t->name, (long long)n, v, (long long)i, et[i], er[i], want);
                    bad++;
                }
            }
            free(xr);
            free(xt);
        }
        free(x);
        free(w);
        free(y0);
        free(yr);
        free(yt);
    }
    /* RoPE: heads x dh at stride ldh = dh + 3, positions 0 .. 5000 */
    static const int64_t dhs[] = {2, 6, 30, 32, 34, 64, 80, 128};
    static const int64_t poss[] = {0, 1, 17, 511, 4095, 5000};
    for (size_t di = 0; di < sizeof dhs / sizeof dhs[0]; di++)
        for (size_t pi = 0; pi < sizeof poss / sizeof poss[0]; pi++) {
            const int64_t dh = dhs[di], heads = 3, ldh = dh + 3, pos = poss[pi];
            const int64_t nx = (heads - 1) * ldh + dh;
            float *x = xalloc((size_t)nx), *cs = xalloc((size_t)dh), *sn = cs + dh / 2;
            for (int64_t i = 0; i < nx; i++)
                x[i] = (i % ldh) < dh ? 2.0f * rng_f() : SENTINEL_PAD;
            vt_rope_angles(dh, pos, 10000.0f, cs, sn);
            float *xr = xdup(x, (size_t)nx), *xt = xdup(x, (size_t)nx);
            r->rope_f32(heads, dh, xr, ldh, cs, sn);
            t->rope_f32(heads, dh, xt, ldh, cs, sn);
            for (int64_t i = 0; i < nx && bad < 5; i++) {
                const int64_t h = i / ldh, c = i % ldh, half = dh / 2;
                if (c >= dh) {
                    if (!same_bits(xt[i], SENTINEL_PAD) || !same_bits(xr[i], SENTINEL_PAD)) {
                        printf("  FAIL %s rope wrote head padding\n", t->name);
                        bad++;
                    }
                    continue;
                }
                /* rotate_half: pair (c, c + half) rotated by angle pos * 10000^(-2i/dh),
                 * in double from the float32 angle the reference uses */
                const int64_t ii = c % half;
                const float inv = 1.0f / powf(10000.0f, (float)(2 * ii) / (float)dh);
                const double ang = (double)((float)pos * inv);
                const double a = x[h * ldh + ii], b = x[h * ldh + ii + half];
                const double want =
                    c < half ? a * cos(ang) - b * sin(ang) : b * cos(ang) + a * sin(ang);
                if (!(fabs((double)xt[i] - xr[i]) <= 1e-6 * 2.0) || !(fabs(xr[i] - want) <= 2e-6)) {
                    printf("  FAIL %s rope dh=%lld pos=%lld [%lld][%lld]: %.9g ref %.9g "
                           "want %.9g\n", t->name, (long long)dh, (long long)pos, (long long)h,
                           (long long)c, xt[i], xr[i], want);
                    bad++;
                }
            }
            free(x);
            free(cs);
            free(xr);
            free(xt);
        }
    if (bad)
        g_fail = 1;
    printf("  %-7s add, scale, rmsnorm, rope  %s\n", t->name, bad ? "FAIL" : "ok");
}

/* The vt_op_* wrappers on a 3-thread pool against the table's kernels row
 * by row (chunking must not change a bit). */
static void test_eltwise_ops(const vt_kernels *t)
{
    vt_pool *pool = vt_pool_new(3);
    if (!pool)
        exit(2);
    const int64_t stride = vt_exec_scratch_floats(1);
    float *scr = xalloc((size_t)(3 * stride));
    vt_exec e = {.pool = pool, .k = t, .scratch = scr, .scratch_stride = stride};
    const int64_t M = 37, H = 5, dh = 64, n = M * H * dh;
    float *x = xalloc((size_t)n), *y = xalloc((size_t)n), *yo = xalloc((size_t)n);
    float *w = xalloc((size_t)(H * dh)), *cs = xalloc((size_t)dh), *sn = cs + dh / 2;
    int64_t pos[37];
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_f();
    for (int64_t i = 0; i < H * dh; i++)
        w[i] = 1.0f + rng_f();
    for (int64_t r = 0; r < M; r++)
        pos[r] = r < 20 ? 7 + r : 3; /* runs of equal positions too */
    int bad = 0;
    memcpy(yo, x, (size_t)n * sizeof(float));
    vt_op_add(&e, n, x, yo);
    vt_op_scale(&e, n, 0.5f, yo, yo);
    for (int64_t i = 0; i < n && bad < 3; i++)
        if (!same_bits(yo[i], 0.5f * (x[i] + x[i]))) {
            printf("  FAIL %s vt_op_add / vt_op_scale [%lld]\n", t->name, (long long)i);
            bad++;
        }
    vt_op_rmsnorm(&e, M, H * dh, x, w, 1e-5f, yo);
    for (int64_t r = 0; r < M; r++)
        t->rmsnorm_f32(H * dh, x + r * H * dh, w, 1e-5f, y + r * H * dh);
    for (int64_t i = 0; i < n && bad < 3; i++)
        if (!same_bits(yo[i], y[i])) {
            printf("  FAIL %s vt_op_rmsnorm [%lld]\n", t->name, (long long)i);
            bad++;
        }
    memcpy(yo, x, (size_t)n * sizeof(float));
    memcpy(y, x, (size_t)n * sizeof(float));
    vt_op_rope(&e, M, H, dh, yo, 0, pos, 500000.0f);
    for (int64_t r = 0; r < M; r++) {
        vt_rope_angles(dh, pos[r], 500000.0f, cs, sn);
        t->rope_f32(H, dh, y + r * H * dh, dh, cs, sn);
    }
    for (int64_t i = 0; i < n && bad < 3; i++)
        if (!same_bits(yo[i], y[i])) {
            printf("  FAIL %s vt_op_rope [%lld]\n", t->name, (long long)i);
            bad++;
        }
    free(x);
    free(y);
    free(yo);
    free(w);
    free(cs);
    free(scr);
    vt_pool_free(pool);
    if (bad)
        g_fail = 1;
    printf("  %-7s vt_op_add, _scale, _rmsnorm, _rope  %s\n", t->name, bad ? "FAIL" : "ok");
}

static void expect_name(const char *what, const char *got, const char *want)
{
    if (strcmp(got, want) != 0) {
        printf("  FAIL dispatch %s: got '%s', want '%s'\n", what, got, want);
        g_fail = 1;
    }
}

static void test_dispatch(void)
{
    /* First use honours VTOK_FORCE_REF; this must run before anything calls
     * vt_kernels_get(). */
    setenv("VTOK_FORCE_REF", "1", 1);
    expect_name("VTOK_FORCE_REF=1 at first use", vt_kernels_get()->name, "ref");
    expect_name("vtok_kernel_name", vtok_kernel_name(), "ref");
    unsetenv("VTOK_FORCE_REF");

    const vt_cpu *c = vt_cpu_get();
    const char *best = "ref";
    if (c->avx2 && c->fma && c->f16c)
        best = "avx2";
    if (!strcmp(best, "avx2") && c->avx512f && c->avx512bw && c->avx512vl && c->avx512dq)
        best = "avx512";
    printf("cpu: avx2=%d fma=%d f16c=%d avx512f=%d bw=%d vl=%d dq=%d bf16=%d vnni=%d "
           "amx_tile=%d amx_bf16=%d amx_int8=%d os_avx=%d os_avx512=%d\n",
           c->avx2, c->fma, c->f16c, c->avx512f, c->avx512bw, c->avx512vl, c->avx512dq,
           c->avx512bf16, c->avx512vnni, c->amx_tile, c->amx_bf16, c->amx_int8, c->os_avx,
           c->os_avx512);

    vt_kernels_init(0);
    expect_name("vt_kernels_init(0)", vt_kernels_get()->name, best);
    vt_kernels_init(1);
    expect_name("vt_kernels_init(1)", vt_kernels_get()->name, "ref");
    vtok_force_reference_kernels(0);
    expect_name("vtok_force_reference_kernels(0)", vtok_kernel_name(), best);
    vtok_force_reference_kernels(1);
    expect_name("vtok_force_reference_kernels(1)", vtok_kernel_name(), "ref");
    /* Image resampling follows the switch too (src/image/resample.c runs the
     * active table's passes). */
    if (vt_kernels_get()->resample_h != vt_kernels_ref()->resample_h ||
        vt_kernels_get()->resample_v != vt_kernels_ref()->resample_v) {
        printf("  FAIL dispatch: forced reference table resamples with ISA passes\n");
        g_fail = 1;
    }
    vt_kernels_init(0);

    if ((vt_kernels_avx2() != NULL) != (strcmp(best, "ref") != 0)) {
        printf("  FAIL dispatch: avx2 table availability disagrees with the cpu flags\n");
        g_fail = 1;
    }
    if ((vt_kernels_avx512() != NULL) != (strcmp(best, "avx512") == 0)) {
        printf("  FAIL dispatch: avx512 table availability disagrees with the cpu flags\n");
        g_fail = 1;
    }
    /* Tables are complete. */
    const vt_kernels *tabs[3] = {vt_kernels_ref(), vt_kernels_avx2(), vt_kernels_avx512()};
    for (int i = 0; i < 3; i++) {
        const vt_kernels *t = tabs[i];
        if (t && !(t->name && t->gemm_f32 && t->layernorm_f32 && t->softmax_f32 && t->attn_f32 &&
                   t->gelu_erf_f32 && t->gelu_tanh_f32 && t->quick_gelu_f32 && t->silu_f32 &&
                   t->tanh_f32 && t->add_f32 && t->scale_f32 && t->rmsnorm_f32 &&
                   t->rope_f32 && t->resample_h_table_ints && t->resample_h_prepare &&
                   t->resample_h && t->resample_v)) {
            printf("  FAIL dispatch: table %d has a NULL entry\n", i);
            g_fail = 1;
        }
        /* The packed GEMM is optional, but all or nothing. */
        if (t && (!t->gemm_packed_floats != !t->gemm_pack_nk ||
                  !t->gemm_packed_floats != !t->gemm_f32_packed)) {
            printf("  FAIL dispatch: table %d has a partial packed GEMM\n", i);
            g_fail = 1;
        }
    }
    printf("dispatch: default '%s' %s\n", best, g_fail ? "FAIL" : "ok");
}

int main(void)
{
    test_dispatch();

    float *scratch = xalloc(VT_GEMM_SCRATCH_FLOATS);
    const vt_kernels *tabs[2] = {vt_kernels_avx2(), vt_kernels_avx512()};
    int tested = 0;
    for (int i = 0; i < 2; i++) {
        const vt_kernels *t = tabs[i];
        if (!t) {
            printf("table %s: not supported on this cpu, skipped\n", i ? "avx512" : "avx2");
            continue;
        }
        printf("table %s vs ref:\n", t->name);
        tested++;
        test_gemm(t, scratch);
        test_gemm_packed(t, scratch);
        test_op_linear_packed(t);
        test_layernorm(t);
        test_softmax(t);
        test_acts(t);
        test_eltwise(t);
    }
    printf("element-wise ops on the pool:\n");
    test_eltwise_ops(vt_kernels_ref());
    for (int i = 0; i < 2; i++)
        if (tabs[i])
            test_eltwise_ops(tabs[i]);
    free(scratch);
    printf("%d ISA table(s) tested against ref: %s\n", tested, g_fail ? "FAILED" : "all ok");
    return g_fail ? 1 : 0;
}
