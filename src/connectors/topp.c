/* topp.c - SliME's top-p cut (topp.h). */
#include "topp.h"

#include <stdlib.h>
#include <string.h>

/* Stable merge sort of idx[0..n) by key descending. */
static void sort_desc(int64_t *idx, int64_t *tmp, int64_t n, const float *key)
{
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = key[idx[j]] > key[idx[i]] ? idx[j++] : idx[i++];
            while (i < mid)
                tmp[k++] = idx[i++];
            while (j < hi)
                tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, (size_t)n * sizeof *idx);
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int64_t vt_topp_keep(const float *p, int64_t M, float top_p, int64_t *order, int64_t *tmp,
                     int64_t *kept)
{
    for (int64_t i = 0; i < M; i++)
        order[i] = i;
    sort_desc(order, tmp, M, p);
    double c = 0;
    int64_t below = 0;
    for (int64_t i = 0; i < M; i++) {
        c += p[order[i]];
        below += (float)c <= top_p;
    }
    const int64_t keep = below < M ? below + 1 : M;
    memcpy(kept, order, (size_t)keep * sizeof *kept);
    qsort(kept, (size_t)keep, sizeof *kept, cmp_i64);
    return keep;
}
