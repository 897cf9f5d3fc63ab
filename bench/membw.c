/*
 * membw.c - DRAM read bandwidth with T threads: each thread sums its part of
 * a 1 GiB buffer (AVX-512 / AVX2 loads via the compiler's vectoriser),
 * median of 7 runs. The bound LLM decode is held to (bench/bench_llm.py).
 *
 *   gcc -O3 -march=native -pthread bench/membw.c -o membw && ./membw [threads]
 *   prints: {"threads": T, "gbps": X}
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BYTES ((size_t)1 << 30)

typedef struct {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} part;

static void *run(void *arg)
{
    part *w = arg;
    uint64_t s = 0;
    for (size_t i = 0; i < w->n; i++)
        s += w->p[i];
    w->sum = s;
    return NULL;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int nt = argc > 1 ? atoi(argv[1]) : 1;
    nt = nt < 1 ? 1 : nt > 64 ? 64 : nt;
    uint64_t *buf = aligned_alloc(64, BYTES);
    if (!buf)
        return 1;
    memset(buf, 1, BYTES);
    const size_t words = BYTES / 8, per = words / (size_t)nt;
    double t[7];
    uint64_t sink = 0;
    for (int r = 0; r < 7; r++) {
        pthread_t th[64];
        part w[64];
        double t0 = now();
        for (int i = 0; i < nt; i++) {
            w[i] = (part){.p = buf + (size_t)i * per, .n = per};
            pthread_create(&th[i], NULL, run, &w[i]);
        }
        for (int i = 0; i < nt; i++) {
            pthread_join(th[i], NULL);
            sink += w[i].sum;
        }
        t[r] = now() - t0;
    }
    qsort(t, 7, sizeof *t, cmp);
    printf("{\"threads\": %d, \"gbps\": %.2f, \"sink\": %llu}\n", nt,
           (double)(per * (size_t)nt * 8) / t[3] / 1e9, (unsigned long long)(sink & 1));
    free(buf);
    return 0;
}
