/*
 * bench_gemm.c - single-thread GFLOP/s of vt_gemm_f32 per kernel table on
 * ViT-B / ViT-L shapes. Not a test and not built by CMake.
 *
 * Build after `cmake -B build && cmake --build build` (uses the static lib):
 *   gcc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -Iinclude -Ibuild/generated/include -Isrc bench/bench_gemm.c build/libvtok.a -lcjson -lm -lpthread -o bench_gemm
 * Run: ./bench_gemm [min_seconds_per_case (default 0.3)] [ref]
 * Prints GFLOP/s (best of the repetitions) and the share of the FMA-loop peak
 * measured at start; the peak loop uses AVX-512 / AVX2 only when the CPU has
 * them (the tables are NULL otherwise).
 * The reference table is slow (~1-2 GFLOP/s) and is skipped unless "ref" is given.
 *
 * Shapes (M = tokens: 197 = ViT-B/16 at 224, 257 = ViT-L/14 at 224,
 * 577 = ViT-L/14 at 336 / ViT-B/16 at 384):
 *   qkv / proj / fc1 / fc2 of ViT-B (D=768) and ViT-L (D=1024): b_nk=1 (Linear)
 *   attention scores Q K^T: M=N=tokens, K=64, b_nk=1
 *   attention output P V:   M=tokens, N=64, K=tokens, b_nk=0
 *   "/128", "/256": the same Linear called per 128- or 256-column chunk, as
 *           src/core/ops.c splits it (each call packs only its B columns)
 * LDA_PAD=n in the environment adds n floats to A's row stride.
 *
 * For every Linear shape (b_nk = 1) each ISA table also runs
 * gemm_f32_packed on a weight packed beforehand, as models run it (the
 * "packed" columns). COLD=1 cycles through enough copies of B (>= 256 MiB)
 * that every call reads its weight from DRAM, as a forward pass does
 * (a whole model's weights do not fit the L3); without it B stays in cache
 * between repetitions.
 */
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *what;
    int64_t M, N, K;
    int b_nk;
    int64_t nb; /* > 0: call per chunk of nb columns, as src/core/ops.c splits Linear */
} shape;

static const shape shapes[] = {
    {"vitb qkv", 197, 2304, 768, 1, 0},   {"vitb proj", 197, 768, 768, 1, 0},
    {"vitb fc1", 197, 3072, 768, 1, 0},   {"vitb fc2", 197, 768, 3072, 1, 0},
    {"vitb QK^T", 197, 197, 64, 1, 0},    {"vitb PV", 197, 64, 197, 0, 0},
    {"vitl qkv", 257, 3072, 1024, 1, 0},  {"vitl fc1", 257, 4096, 1024, 1, 0},
    {"vitl fc2", 257, 1024, 4096, 1, 0},  {"vitl QK^T", 257, 257, 64, 1, 0},
    {"vitl PV", 257, 64, 257, 0, 0},      {"vitl336 fc1", 577, 4096, 1024, 1, 0},
    {"vitl336 fc2", 577, 1024, 4096, 1, 0}, {"vitl336 QK^T", 577, 577, 64, 1, 0},
    {"vitl336 PV", 577, 64, 577, 0, 0},   {"square kn", 512, 1024, 1024, 0, 0},
    {"vitb fc1/128", 197, 3072, 768, 1, 128}, {"vitl fc1/128", 257, 4096, 1024, 1, 128},
    {"vitl fc2/128", 257, 1024, 4096, 1, 128},
    /* ops.c's chunks at 1 thread (~256 columns) */
    {"vitb proj/256", 197, 768, 768, 1, 256}, {"vitb fc1/256", 197, 3072, 768, 1, 256},
    {"vitb fc2/256", 197, 768, 3072, 1, 256}, {"vitl fc1/256", 257, 4096, 1024, 1, 256},
    {"vitl fc2/256", 257, 1024, 4096, 1, 256},
};

/* packed != NULL: B was packed by t->gemm_pack_nk into packed. */
static void run(const vt_kernels *t, const shape *sh, const float *A, int64_t lda, const float *B,
                int64_t ldb, const float *packed, const float *bias, float *C, float *scratch)
{
    const int64_t nb = sh->nb > 0 ? sh->nb : sh->N;
    for (int64_t n0 = 0; n0 < sh->N; n0 += nb) {
        const int64_t n = sh->N - n0 < nb ? sh->N - n0 : nb;
        const float *b = sh->b_nk ? B + n0 * ldb : B + n0;
        if (packed)
            t->gemm_f32_packed(sh->M, sh->N, sh->K, n0, n, A, lda, packed, bias + n0, C + n0,
                               sh->N, 0, scratch);
        else
            t->gemm_f32(sh->M, n, sh->K, A, lda, b, ldb, sh->b_nk, bias + n0, C + n0, sh->N, 0,
                        scratch);
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Peak of this core: a loop of independent FMAs (16 chains, enough to cover
 * FMA latency x 2 pipes), as inline asm so the baseline build can run it. */
static double peak_gflops(int zmm)
{
    long n = 20000000;
    double t0 = now();
    if (zmm)
        __asm__ volatile("vxorps %%xmm0, %%xmm0, %%xmm0\n"
                         "1:\n"
                         ".irp r,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
                         "vfmadd231ps %%zmm0, %%zmm0, %%zmm\\r\n"
                         ".endr\n"
                         "dec %0\n"
                         "jnz 1b\n"
                         : "+r"(n)::"cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
                           "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                           "xmm15");
    else
        __asm__ volatile("vxorps %%xmm0, %%xmm0, %%xmm0\n"
                         "1:\n"
                         ".irp r,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
                         "vfmadd231ps %%ymm0, %%ymm0, %%ymm\\r\n"
                         ".endr\n"
                         "dec %0\n"
                         "jnz 1b\n"
                         : "+r"(n)::"cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
                           "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                           "xmm15");
    double dt = now() - t0;
    return 20000000.0 * 15 * (zmm ? 32 : 16) / dt * 1e-9;
}

static float *alloc_rand(size_t n)
{
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p)
        exit(1);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    return p;
}

int main(int argc, char **argv)
{
    double min_s = argc > 1 ? atof(argv[1]) : 0.3;
    int with_ref = argc > 2 && strcmp(argv[2], "ref") == 0;
    const vt_kernels *tabs[3] = {with_ref ? vt_kernels_ref() : NULL, vt_kernels_avx2(),
                                 vt_kernels_avx512()};
    float *scratch = aligned_alloc(64, VT_GEMM_SCRATCH_FLOATS * sizeof(float));
    if (!scratch)
        return 1;
    double peak[3] = {0, 0, 0};
    for (int rep = 0; rep < 5; rep++) {
        if (tabs[1]) {
            double p = peak_gflops(0);
            peak[1] = p > peak[1] ? p : peak[1];
        }
        if (tabs[2]) {
            double p = peak_gflops(1);
            peak[2] = p > peak[2] ? p : peak[2];
        }
    }
    printf("FMA-loop peak: avx2 %.1f GFLOP/s, avx512 %.1f GFLOP/s\n", peak[1], peak[2]);
    const int cold = getenv("COLD") && atoi(getenv("COLD"));
    printf("%-14s %5s %5s %5s %4s", "shape", "M", "N", "K", "b_nk");
    for (int t = 0; t < 3; t++)
        if (tabs[t])
            printf(" %11s", tabs[t]->name);
    for (int t = 1; t < 3; t++)
        if (tabs[t])
            printf(" %4s packed", tabs[t]->name);
    printf("   (GFLOP/s and %% of FMA-loop peak, 1 thread%s)\n", cold ? ", B from DRAM" : "");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape *sh = &shapes[s];
        int64_t lda = sh->K + (getenv("LDA_PAD") ? atoi(getenv("LDA_PAD")) : 0);
        const size_t nbf = (size_t)(sh->N * sh->K);
        const int ncopy = cold ? (int)((256u << 20) / (nbf * sizeof(float)) + 1) : 1;
        float *A = alloc_rand((size_t)(sh->M * lda));
        float *bias = alloc_rand((size_t)sh->N);
        float *C = alloc_rand((size_t)(sh->M * sh->N));
        float **B = calloc((size_t)ncopy, sizeof *B), **P = calloc((size_t)ncopy, sizeof *P);
        if (!B || !P)
            return 1;
        for (int c = 0; c < ncopy; c++)
            B[c] = alloc_rand(nbf);
        int64_t ldb = sh->b_nk ? sh->K : sh->N;
        printf("%-14s %5lld %5lld %5lld %4d", sh->what, (long long)sh->M, (long long)sh->N,
               (long long)sh->K, sh->b_nk);
        /* Columns: each table on B, then each ISA table on its packed B. */
        for (int col = 0; col < 5; col++) {
            const vt_kernels *t = tabs[col < 3 ? col : col - 2];
            const int use_packed = col >= 3;
            if (!t)
                continue;
            if (use_packed && !sh->b_nk) {
                printf(" %11s", "-");
                continue;
            }
            if (use_packed) {
                const size_t np = t->gemm_packed_floats(sh->N, sh->K);
                for (int c = 0; c < ncopy; c++) {
                    P[c] = aligned_alloc(64, (np * sizeof(float) + 63) / 64 * 64);
                    if (!P[c])
                        return 1;
                    t->gemm_pack_nk(sh->N, sh->K, B[c], P[c]);
                }
            }
            const double pk = peak[col < 3 ? col : col - 2];
            double flop = 2.0 * (double)sh->M * (double)sh->N * (double)sh->K;
            int reps = 0;
            run(t, sh, A, lda, B[0], ldb, use_packed ? P[0] : NULL, bias, C, scratch); /* warm-up */
            double best = 1e30, t_end = now() + min_s;
            do {
                const int c = (reps + 1) % ncopy;
                double t0 = now();
                run(t, sh, A, lda, B[c], ldb, use_packed ? P[c] : NULL, bias, C, scratch);
                double dt = now() - t0;
                best = dt < best ? dt : best;
                reps++;
            } while (now() < t_end || reps < 3);
            double g = flop / best * 1e-9;
            if (pk > 0)
                printf(" %6.1f %3.0f%%", g, 100.0 * g / pk);
            else
                printf(" %11.1f", g);
            fflush(stdout);
            if (use_packed)
                for (int c = 0; c < ncopy; c++)
                    free(P[c]);
        }
        printf("\n");
        for (int c = 0; c < ncopy; c++)
            free(B[c]);
        free(B);
        free(P);
        free(A);
        free(bias);
        free(C);
    }
    free(scratch);
    return 0;
}
