/*
 * bench_attn.c - the attention op alone, single thread: the old path
 * (per head: GEMM for the scores into a tq x tk buffer, softmax per row,
 * GEMM for P V, as src/core/ops.c did before the fused kernel) against the
 * fused attn_f32 kernel of each table. Not a test and not built by CMake.
 *
 * Build after `make` (uses the static lib):
 *   gcc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -Iinclude -Ibuild/generated/include -Isrc bench/bench_attn.c build/libvtok.a -lcjson -lm -lpthread -o bench_attn
 * Run: ./bench_attn [repetitions (default 15)] [ref]
 * The bf16 variant (attn_bf16, AVX512-BF16 only) gets its own row.
 * Prints the median and best time of one whole layer's attention (all
 * heads, batch 1) and GFLOP/s counted as 4 T^2 dh per head (the two
 * products; softmax not counted). Layouts as in a ViT forward pass: q, k, v
 * are column slices of the fused [T, 3D] qkv buffer, out is [T, D].
 */
#include "kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *what;
    int64_t T, heads, dh;
} shape;

static const shape shapes[] = {
    {"ViT-B/16-224", 197, 12, 64},
    {"ViT-L/14-336", 577, 16, 64},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *alloc_floats(size_t n)
{
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

/* The pre-fused path of vt_op_attention_ex for one head (see git history of
 * src/core/ops.c): s = scratch[0 .. T*T), GEMM scratch after it. */
static void old_head(const vt_kernels *k, int64_t T, int64_t dh, const float *q, const float *kk,
                     const float *v, int64_t ld, float scale, float *out, int64_t ldo,
                     float *s, float *gs)
{
    k->gemm_f32(T, T, dh, q, ld, kk, ld, 1, NULL, s, T, 0, gs);
    for (int64_t r = 0; r < T; r++) {
        float *row = s + r * T;
        for (int64_t c = 0; c < T; c++)
            row[c] *= scale;
        k->softmax_f32(T, row);
    }
    k->gemm_f32(T, dh, T, s, T, v, ld, 0, NULL, out, ldo, 0, gs);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double med, best;
} timing;

/* mode 0: old path, 1: fused attn_f32, 2: fused attn_bf16 */
static timing run(const vt_kernels *k, int mode, const shape *sh, const float *qkv, float *out,
                  float *scratch, int reps)
{
    const int64_t D = sh->heads * sh->dh, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)sh->dh);
    double *t = malloc((size_t)reps * sizeof(double));
    if (!t)
        exit(1);
    for (int r = -2; r < reps; r++) { /* two warm-up runs */
        const double t0 = now();
        for (int64_t h = 0; h < sh->heads; h++) {
            const float *q = qkv + h * sh->dh, *kk = qkv + D + h * sh->dh,
                        *v = qkv + 2 * D + h * sh->dh;
            if (mode == 0)
                old_head(k, sh->T, sh->dh, q, kk, v, ld, scale, out + h * sh->dh, D, scratch,
                         scratch + (sh->T * sh->T + 15) / 16 * 16);
            else
                (mode == 1 ? k->attn_f32 : k->attn_bf16)(sh->T, sh->T, sh->dh, q, ld, kk, ld, v,
                                                         ld, scale, 0, out + h * sh->dh, D,
                                                         scratch);
        }
        if (r >= 0)
            t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    timing res = {t[reps / 2], t[0]};
    free(t);
    return res;
}

int main(int argc, char **argv)
{
    const int reps = argc > 1 && atoi(argv[1]) > 0 ? atoi(argv[1]) : 15;
    const int with_ref = argc > 2 && strcmp(argv[2], "ref") == 0;
    const vt_kernels *tabs[3] = {with_ref ? vt_kernels_ref() : NULL, vt_kernels_avx2(),
                                 vt_kernels_avx512()};
    printf("%-13s %-7s %-10s %10s %10s %9s %8s\n", "shape", "table", "path", "median ms",
           "best ms", "GFLOP/s", "speedup");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape *sh = &shapes[s];
        const int64_t D = sh->heads * sh->dh;
        float *qkv = alloc_floats((size_t)(sh->T * 3 * D)), *out = alloc_floats((size_t)(sh->T * D));
        float *out_old = alloc_floats((size_t)(sh->T * D));
        float *scratch = alloc_floats((size_t)((sh->T * sh->T + 15) / 16 * 16 +
                                               VT_GEMM_SCRATCH_FLOATS + 64));
        srand(1);
        for (int64_t i = 0; i < sh->T * 3 * D; i++)
            qkv[i] = 4.0f * ((float)rand() / (float)RAND_MAX - 0.5f);
        const double flop = 4.0 * (double)(sh->T * sh->T * sh->dh * sh->heads);
        for (int ti = 0; ti < 3; ti++) {
            const vt_kernels *k = tabs[ti];
            if (!k)
                continue;
            const int r = k == vt_kernels_ref() ? 3 : reps;
            const timing old = run(k, 0, sh, qkv, out_old, scratch, r);
            const timing neu = run(k, 1, sh, qkv, out, scratch, r);
            double err = 0, mx = 0;
            for (int64_t i = 0; i < sh->T * D; i++) {
                err = fmax(err, fabs((double)out[i] - out_old[i]));
                mx = fmax(mx, fabs((double)out_old[i]));
            }
            printf("%-13s %-7s %-10s %10.3f %10.3f %9.1f\n", sh->what, k->name, "gemm+sm+gemm",
                   1e3 * old.med, 1e3 * old.best, 1e-9 * flop / old.med);
            printf("%-13s %-7s %-10s %10.3f %10.3f %9.1f %7.2fx  (max|new-old|/max|old| %.1e)\n",
                   sh->what, k->name, "fused", 1e3 * neu.med, 1e3 * neu.best,
                   1e-9 * flop / neu.med, old.med / neu.med, err / mx);
            if (k->attn_bf16) {
                const timing bf = run(k, 2, sh, qkv, out, scratch, r);
                double e2 = 0;
                for (int64_t i = 0; i < sh->T * D; i++)
                    e2 = fmax(e2, fabs((double)out[i] - out_old[i]));
                printf("%-13s %-7s %-10s %10.3f %10.3f %9.1f %7.2fx  (max|bf16-old|/max|old| "
                       "%.1e)\n", sh->what, k->name, "fused bf16", 1e3 * bf.med, 1e3 * bf.best,
                       1e-9 * flop / bf.med, old.med / bf.med, e2 / mx);
            }
        }
        free(qkv);
        free(out);
        free(out_old);
        free(scratch);
    }
    return 0;
}
