/*
 * bench_gemv.c - decode-shaped Linear layers (M = 1 token) per weight format
 * on the best kernel table, as a fraction of this machine's DRAM read
 * bandwidth measured in the same run. Not a test and not built by CMake.
 *
 *   gcc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -Iinclude -Ibuild/generated/include -Isrc \
 *       bench/bench_gemv.c build/libvtok.a -lcjson -lm -lpthread -o bench_gemv && ./bench_gemv [threads]
 *
 * Decode streams every weight once per token, so its bound is bandwidth /
 * weight bytes. Here 24 matrices of 5632 x 2048 (TinyLlama's MLP shape; 277M
 * weights, far past the last-level cache) are run one after the other, as a
 * model's layers are, M = 1 (plus M = 4 rows sharing each pass, for short
 * prompts). The bandwidth is a plain streaming sum over a 1 GiB buffer with
 * the same number of threads, interleaved with the kernel runs (median of 5).
 */
#include "kernels/kernels.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_MAT 24
#define NO 5632
#define KI 2048

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    const vt_kernels *k;
    int fmt, tid, nt, M;
    void **w;           /* per matrix */
    float **scale;      /* int8 */
    int32_t **wsum;     /* int8 */
    const void *a;      /* converted activations */
    int64_t lda;
    const float *a_scale;
    const float *x;
    float *y;
    const uint64_t *buf; /* bandwidth run */
    size_t words;
    uint64_t sink;
} job;

static void run_part(job *j)
{
    /* columns split in panel multiples, as vt_op_linear does */
    int64_t per = (NO / VT_LP_NR + j->nt - 1) / j->nt * VT_LP_NR;
    int64_t n0 = j->tid * per, n = NO - n0 < per ? NO - n0 : per;
    if (n <= 0)
        return;
    float *scratch = j->fmt == 0 ? aligned_alloc(64, VT_GEMM_SCRATCH_FLOATS * 4) : NULL;
    for (int m = 0; m < N_MAT; m++) {
        switch (j->fmt) {
        case 0:
            j->k->gemm_f32_packed(j->M, NO, KI, n0, n, j->x, KI, j->w[m], NULL, j->y + n0, NO, 0,
                                  scratch);
            break;
        case 1:
            j->k->gemm_bf16(j->M, KI, n0, n, j->a, j->lda, j->w[m], NULL, j->y + n0, NO, 0);
            break;
        case 2:
            j->k->gemm_i8(j->M, KI, n0, n, j->a, j->lda, j->a_scale, j->w[m], j->scale[m],
                          j->wsum[m], NULL, j->y + n0, NO, 0);
            break;
        case 3:
            j->k->gemm_q4(j->M, KI, n0, n, j->a, j->lda, j->w[m], NULL, j->y + n0, NO, 0);
            break;
        }
    }
    free(scratch);
}

static void *kernel_thread(void *arg)
{
    run_part(arg);
    return NULL;
}

static void *bw_thread(void *arg)
{
    job *j = arg;
    size_t per = j->words / (size_t)j->nt, i0 = per * (size_t)j->tid;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = i0; i < i0 + per; i += 4) {
        s0 += j->buf[i];
        s1 += j->buf[i + 1];
        s2 += j->buf[i + 2];
        s3 += j->buf[i + 3];
    }
    j->sink = s0 + s1 + s2 + s3;
    return NULL;
}

static double timed(job *base, int nt, void *(*fn)(void *))
{
    pthread_t th[64];
    job js[64];
    double t0 = now();
    for (int t = 0; t < nt; t++) {
        js[t] = *base;
        js[t].tid = t;
        js[t].nt = nt;
        pthread_create(&th[t], NULL, fn, &js[t]);
    }
    for (int t = 0; t < nt; t++)
        pthread_join(th[t], NULL);
    return now() - t0;
}

int main(int argc, char **argv)
{
    int nt = argc > 1 ? atoi(argv[1]) : 1;
    nt = nt < 1 ? 1 : nt > 64 ? 64 : nt;
    const vt_kernels *k = vt_kernels_get();
    static const char *const names[4] = {"f32", "bf16", "int8", "q4"};
    float *W = malloc((size_t)NO * KI * sizeof *W);
    float *x = malloc((size_t)4 * KI * sizeof *x), *y = malloc((size_t)4 * NO * sizeof *y);
    for (size_t i = 0; i < (size_t)NO * KI; i++)
        W[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    for (int i = 0; i < 4 * KI; i++)
        x[i] = (float)(i % 17) / 8.0f - 1.0f;
    size_t words = ((size_t)1 << 30) / 8;
    uint64_t *buf = malloc(words * 8);
    for (size_t i = 0; i < words; i++)
        buf[i] = i;
    printf("table %s, %d thread(s), %d x [%d x %d] per token\n", k->name, nt, N_MAT, NO, KI);
    for (int fmt = 0; fmt < 4; fmt++) {
        if (fmt == 0 && !k->gemm_packed_floats)
            continue;
        job j = {.k = k, .fmt = fmt, .x = x, .y = y, .buf = buf, .words = words};
        j.w = calloc(N_MAT, sizeof *j.w);
        j.scale = calloc(N_MAT, sizeof *j.scale);
        j.wsum = calloc(N_MAT, sizeof *j.wsum);
        size_t bytes = 0;
        for (int m = 0; m < N_MAT; m++) {
            if (fmt == 0) {
                bytes = k->gemm_packed_floats(NO, KI) * 4;
                j.w[m] = aligned_alloc(64, (bytes + 63) / 64 * 64);
                k->gemm_pack_nk(NO, KI, W, j.w[m]);
            } else if (fmt == 1) {
                bytes = vt_lp_bf16_size(NO, KI) * 2;
                j.w[m] = aligned_alloc(64, (bytes + 63) / 64 * 64);
                vt_lp_pack_bf16(k, NO, KI, W, j.w[m]);
            } else if (fmt == 2) {
                bytes = vt_lp_i8_size(NO, KI) + (size_t)vt_lp_kpad(NO, VT_LP_NR) * 8;
                j.w[m] = aligned_alloc(64, (vt_lp_i8_size(NO, KI) + 63) / 64 * 64);
                j.scale[m] = malloc((size_t)vt_lp_kpad(NO, VT_LP_NR) * 4);
                j.wsum[m] = malloc((size_t)vt_lp_kpad(NO, VT_LP_NR) * 4);
                vt_lp_pack_i8(k, NO, KI, W, j.w[m], j.scale[m], j.wsum[m]);
            } else {
                bytes = vt_lp_q4_size(NO, KI);
                j.w[m] = aligned_alloc(64, (bytes + 63) / 64 * 64);
                vt_lp_pack_q4(NO, KI, W, j.w[m]);
            }
        }
        /* activations converted once (their cost is per token, not per weight) */
        int64_t lda = vt_lp_kpad(KI, 32) * 2 + 64;
        void *a = aligned_alloc(64, (size_t)(4 * lda));
        float as[4];
        for (int r = 0; r < 4; r++) {
            if (fmt == 1)
                k->bf16_row(KI, x + r * KI, (uint16_t *)((char *)a + r * lda));
            else if (fmt == 2)
                as[r] = k->u8_row(KI, x + r * KI, (uint8_t *)a + r * lda);
            else if (fmt == 3)
                k->q8_row(KI, x + r * KI, (uint8_t *)a + r * lda);
        }
        j.a = a;
        j.lda = fmt == 1 ? lda / 2 : lda;
        j.a_scale = as;
        for (int M = 1; M <= 4; M += 3) {
            j.M = M;
            double tk[5], tb[5];
            timed(&j, nt, kernel_thread); /* warm-up */
            for (int it = 0; it < 5; it++) {
                tk[it] = timed(&j, nt, kernel_thread);
                tb[it] = timed(&j, nt, bw_thread);
            }
            qsort(tk, 5, sizeof *tk, cmpd);
            qsort(tb, 5, sizeof *tb, cmpd);
            double wbytes = (double)bytes * N_MAT, gbs = wbytes / tk[2] / 1e9;
            double bw = (double)words * 8 / tb[2] / 1e9;
            printf("%-5s M=%d  %6.1f MB weights  %7.2f ms  %6.1f GB/s  DRAM %5.1f GB/s  "
                   "%5.1f%% of bound  (%.0f tokens/s at this size)\n",
                   names[fmt], M, wbytes / 1e6, tk[2] * 1e3, gbs, bw, 100.0 * gbs / bw,
                   1.0 / tk[2]);
        }
        for (int m = 0; m < N_MAT; m++) {
            free(j.w[m]);
            free(j.scale[m]);
            free(j.wsum[m]);
        }
        free(j.w), free(j.scale), free(j.wsum), free(a);
    }
    free(W), free(x), free(y), free(buf);
    return 0;
}
