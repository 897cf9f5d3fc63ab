/*
 * test_topp.c - SliME's top-p cut (src/connectors/topp.h) on hand-made
 * probabilities, each expectation worked out from the official rule
 * (TextGuidedSampler.forward: n = #(cumsum(sorted p) <= top_p); keep n + 1
 * unless n is all; ascending order): the cut exactly at top_p (the equal
 * sum counts as below, so one more is kept), just past it, every sum below
 * (all kept), the first alone over it, ties (index order), one token.
 */
#include "connectors/topp.h"

#include "check.h"

#include <string.h>

static int64_t run(const float *p, int64_t M, float top_p, int64_t *kept)
{
    int64_t order[16], tmp[16];
    return vt_topp_keep(p, M, top_p, order, tmp, kept);
}

static int same(const int64_t *a, const int64_t *b, int64_t n)
{
    return !memcmp(a, b, (size_t)n * sizeof *a);
}

int main(void)
{
    int64_t k[16];
    /* sorted: 0.5 (i2), 0.25 (i0), 0.125 (i3), 0.125 (i1): sums 0.5, 0.75, 0.875, 1 */
    const float p[4] = {0.25f, 0.125f, 0.5f, 0.125f};
    int64_t n = run(p, 4, 0.75f, k); /* sums <= 0.75: two -> keep three */
    const int64_t e1[3] = {0, 1, 2};
    CHECK(n == 3 && same(k, e1, 3), "cut at an exact sum keeps one more: n %lld", (long long)n);
    n = run(p, 4, 0.7f, k); /* one sum below -> two: i2, i0 */
    const int64_t e2[2] = {0, 2};
    CHECK(n == 2 && same(k, e2, 2), "cut inside: n %lld", (long long)n);
    n = run(p, 4, 1.0f, k); /* every sum <= 1: all four */
    const int64_t e3[4] = {0, 1, 2, 3};
    CHECK(n == 4 && same(k, e3, 4), "all sums below: n %lld", (long long)n);
    n = run(p, 4, 0.4f, k); /* none below: the top one alone */
    CHECK(n == 1 && k[0] == 2, "first over: n %lld k0 %lld", (long long)n, (long long)k[0]);
    /* the tie of i1 and i3 straddles the cut at 0.8: 0.5 and 0.75 are below,
     * so three are kept: i2, i0 and, of the tie, the lower index i1 */
    n = run(p, 4, 0.8f, k);
    const int64_t e4[3] = {0, 1, 2};
    CHECK(n == 3 && same(k, e4, 3), "tie at the cut keeps the lower index: n %lld, %lld %lld %lld",
          (long long)n, (long long)k[0], (long long)k[1], (long long)k[2]);
    /* a four-way tie: index order throughout */
    const float u[4] = {0.25f, 0.25f, 0.25f, 0.25f};
    n = run(u, 4, 0.5f, k); /* sums 0.25, 0.5 below -> keep three: 0, 1, 2 */
    CHECK(n == 3 && same(k, e1, 3), "uniform: n %lld", (long long)n);
    const float one[1] = {1.0f};
    n = run(one, 1, 0.95f, k);
    CHECK(n == 1 && k[0] == 0, "one token");
    /* top_p compared as float32: 0.95 rounds to 0.949999988; a sum of
     * exactly 0.95f counts as below */
    const float q[3] = {0.95f, 0.03f, 0.02f};
    n = run(q, 3, 0.95f, k);
    CHECK(n == 2 && k[0] == 0 && k[1] == 1, "float32 top_p: n %lld", (long long)n);
    printf("%d checks, %d failed\n", n_check, n_fail);
    return n_fail != 0;
}
