/*
 * bench_lowp.c - single-thread GEMM throughput per precision on the best
 * kernel table, as fractions of this core's measured instruction peaks.
 * Not a test and not built by CMake.
 *
 *   gcc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -Iinclude -Ibuild/generated/include -Isrc bench/bench_lowp.c \
 *       build/libvtok.a -lcjson -lm -lpthread -o bench_lowp && ./bench_lowp [seconds per case]
 *
 * Peaks: loops of 15 independent VFMADD231PS / VDPBF16PS / VPDPBUSD on zmm
 * (inline asm, run only when the CPU has the instruction): 32, 64 and 128
 * multiply-adds x 2 per instruction. Linear shapes C[M,N] = A[M,K] W^T as
 * models run them: weights converted at load (f32 panels / bf16 / int8),
 * A converted per call (included in the bf16 / int8 times: the row
 * conversion is part of the op), M = tokens, 1024^3 as the yardstick.
 */
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define PEAK_LOOP(insn)                                                                      \
    __asm__ volatile("vpxord %%zmm0, %%zmm0, %%zmm0\n"                                      \
                     "1:\n"                                                                  \
                     ".irp r,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n" insn                     \
                     " %%zmm0, %%zmm0, %%zmm\\r\n"                                           \
                     ".endr\n"                                                               \
                     "dec %0\n"                                                              \
                     "jnz 1b\n"                                                              \
                     : "+r"(n)::"cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", \
                       "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",  \
                       "xmm15")

/* GFLOP/s (2 ops per multiply-add) of a loop of `which` (0 fma, 1 bf16, 2 vnni). */
static double peak(int which)
{
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        long n = 10000000;
        double t0 = now();
        if (which == 0)
            PEAK_LOOP("vfmadd231ps");
        else if (which == 1)
            PEAK_LOOP("vdpbf16ps");
        else
            PEAK_LOOP("vpdpbusd");
        double g = 10000000.0 * 15 * (which == 0 ? 32 : which == 1 ? 64 : 128) / (now() - t0) * 1e-9;
        best = g > best ? g : best;
    }
    return best;
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

typedef struct {
    const char *what;
    int64_t M, N, K;
} shape;

static const shape shapes[] = {
    {"1024^3", 1024, 1024, 1024},      {"vitb qkv", 197, 2304, 768},
    {"vitb fc1", 197, 3072, 768},      {"vitb fc2", 197, 768, 3072},
    {"vitl336 qkv", 577, 3072, 1024},  {"vitl336 fc1", 577, 4096, 1024},
    {"vitl336 fc2", 577, 1024, 4096},
};

int main(int argc, char **argv)
{
    const double min_s = argc > 1 ? atof(argv[1]) : 0.5;
    const vt_kernels *t = vt_kernels_get();
    const vt_cpu *cpu = vt_cpu_get();
    if (!cpu->avx512f) {
        printf("no AVX-512 on this CPU: nothing to measure\n");
        return 0;
    }
    double pk[3] = {peak(0), cpu->avx512bf16 ? peak(1) : 0, cpu->avx512vnni ? peak(2) : 0};
    printf("table %s; peaks (GFLOP/s, 1 core): f32 FMA %.0f, VDPBF16PS %.0f, VPDPBUSD %.0f\n",
           t->name, pk[0], pk[1], pk[2]);
    printf("%-12s %5s %5s %5s | %-14s | %-14s | %-14s\n", "shape", "M", "N", "K", "f32 packed",
           "bf16", "int8");
    float *scratch = aligned_alloc(64, VT_GEMM_SCRATCH_FLOATS * sizeof(float));
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape *sh = &shapes[s];
        const int64_t M = sh->M, N = sh->N, K = sh->K, lda = vt_lp_kpad(K, 4) + 32;
        float *A = alloc_rand((size_t)(M * K)), *W = alloc_rand((size_t)(N * K));
        float *bias = alloc_rand((size_t)N), *C = alloc_rand((size_t)(M * N));
        float *P = aligned_alloc(64, t->gemm_packed_floats(N, K) * sizeof(float) + 64);
        uint16_t *wb = aligned_alloc(64, vt_lp_bf16_size(N, K) * 2 + 64);
        int8_t *wq = aligned_alloc(64, vt_lp_i8_size(N, K) + 64);
        float *ws = aligned_alloc(64, (size_t)vt_lp_kpad(N, 32) * 4);
        int32_t *wsum = aligned_alloc(64, (size_t)vt_lp_kpad(N, 32) * 4);
        uint16_t *ab = aligned_alloc(64, (size_t)(M * lda) * 2 + 64);
        float *as = aligned_alloc(64, (size_t)M * 4 + 64);
        t->gemm_pack_nk(N, K, W, P);
        vt_lp_pack_bf16(t, N, K, W, wb);
        vt_lp_pack_i8(t, N, K, W, wq, ws, wsum);
        printf("%-12s %5lld %5lld %5lld", sh->what, (long long)M, (long long)N, (long long)K);
        for (int prec = 0; prec < 3; prec++) {
            if (pk[prec] == 0) {
                printf(" | %-14s", "n/a");
                continue;
            }
            double best = 1e30, t_end = now() + min_s;
            int reps = 0;
            do {
                double t0 = now();
                if (prec == 0) {
                    t->gemm_f32_packed(M, N, K, 0, N, A, K, P, bias, C, N, 0, scratch);
                } else if (prec == 1) {
                    for (int64_t i = 0; i < M; i++)
                        t->bf16_row(K, A + i * K, ab + i * lda);
                    t->gemm_bf16(M, K, 0, N, ab, lda, wb, bias, C, N, 0);
                } else {
                    uint8_t *aq = (uint8_t *)ab;
                    for (int64_t i = 0; i < M; i++)
                        as[i] = t->u8_row(K, A + i * K, aq + i * lda);
                    t->gemm_i8(M, K, 0, N, aq, lda, as, wq, ws, wsum, bias, C, N, 0);
                }
                double dt = now() - t0;
                best = dt < best ? dt : best;
                reps++;
            } while (now() < t_end || reps < 3);
            double g = 2.0 * (double)M * (double)N * (double)K / best * 1e-9;
            printf(" | %6.0f %5.0f%%", g, 100.0 * g / pk[prec]);
            fflush(stdout);
        }
        printf("\n");
        free(A), free(W), free(bias), free(C), free(P), free(wb), free(wq), free(ws), free(wsum);
        free(ab), free(as);
    }
    free(scratch);
    return 0;
}
