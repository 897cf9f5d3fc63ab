/*
 * sample.c - next-token choice (sample.h). Rules from transformers
 * src/transformers/generation/logits_process.py:
 *   RepetitionPenaltyLogitsProcessor (_apply_penalty): each id seen once,
 *     score < 0 ? score * penalty : score / penalty;
 *   TemperatureLogitsWarper: scores / temperature;
 *   TopKLogitsWarper: remove scores < the k-th largest (ties at it stay);
 *   TopPLogitsWarper: sort ascending, softmax, cumsum; remove where the
 *     cumulative probability <= 1 - top_p, keeping the last (largest) one;
 *   MinPLogitsWarper: remove probs < min_p * max prob, keeping the top one;
 * and the order of generation/utils.py _get_logits_processor. Where torch
 * leaves an order open (torch.sort is not stable), ties are broken by the
 * lower id first; cumsum accumulates in double as ATen's CPU kernel does
 * (acc_type<float> is double) and rounds each partial sum to float.
 */
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int vt_sample_check(const vt_sample_params *p, vtok_status *st)
{
    if (!(p->repetition_penalty > 0.0f) || !isfinite(p->repetition_penalty))
        return vt_fail(st, VTOK_EINVAL, "repetition_penalty must be positive, got %g",
                       (double)p->repetition_penalty);
    if (p->greedy)
        return 0;
    if (!(p->temperature > 0.0f) || !isfinite(p->temperature))
        return vt_fail(st, VTOK_EINVAL, "temperature must be positive for sampling, got %g "
                       "(use greedy decoding for 0)", (double)p->temperature);
    if (p->top_k < 0)
        return vt_fail(st, VTOK_EINVAL, "top_k must be >= 0, got %lld", (long long)p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return vt_fail(st, VTOK_EINVAL, "top_p must be in (0, 1], got %g", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return vt_fail(st, VTOK_EINVAL, "min_p must be in [0, 1], got %g", (double)p->min_p);
    return 0;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static uint64_t next_u64(uint64_t s[4])
{
    const uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

int vt_sampler_init(vt_sampler *s, const vt_sample_params *p, int64_t vocab, vtok_status *st)
{
    memset(s, 0, sizeof *s);
    int rc = vt_sample_check(p, st);
    if (rc)
        return rc;
    if (vocab < 1 || vocab > (int64_t)1 << 30)
        return vt_fail(st, VTOK_EINVAL, "vocabulary of %lld ids", (long long)vocab);
    s->p = *p;
    s->vocab = vocab;
    s->work = malloc((size_t)vocab * sizeof *s->work);
    s->order = malloc((size_t)vocab * sizeof *s->order);
    s->vi = malloc((size_t)vocab * sizeof *s->vi);
    s->seen = calloc((size_t)vocab, 1);
    if (!s->work || !s->order || !s->vi || !s->seen) {
        vt_sampler_free(s);
        return vt_fail(st, VTOK_ENOMEM, "out of memory for a sampler over %lld ids",
                       (long long)vocab);
    }
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++)
        s->s[i] = splitmix64(&x);
    return 0;
}

void vt_sampler_free(vt_sampler *s)
{
    free(s->work);
    free(s->order);
    free(s->vi);
    free(s->seen);
    memset(s, 0, sizeof *s);
}

/* (value, id) pairs: qsort has no context argument, and a global would not
 * be thread-safe. */
static int cmp_asc(const void *a, const void *b)
{
    const vt_sample_vi *x = a, *y = b;
    return x->v < y->v ? -1 : x->v > y->v ? 1 : (x->id > y->id) - (x->id < y->id);
}

/* Softmax of w[0..n) (-inf = 0) into p, as float: exp(x - max) / sum. */
static float softmax_max(const float *w, int64_t n, float *mx_out)
{
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        mx = w[i] > mx ? w[i] : mx;
    *mx_out = mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += w[i] == -INFINITY ? 0.0 : exp((double)w[i] - (double)mx);
    return (float)sum;
}

static void top_k(vt_sampler *s, float *w)
{
    const int64_t V = s->vocab, k = s->p.top_k < V ? s->p.top_k : V;
    /* the k-th largest value, by a partial selection over a copy of ids */
    int32_t *o = s->order;
    for (int64_t i = 0; i < V; i++)
        o[i] = (int32_t)i;
    int64_t lo = 0, hi = V - 1, want = k - 1; /* descending position */
    while (lo < hi) {
        const float pivot = w[o[(lo + hi) / 2]];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (w[o[i]] > pivot)
                i++;
            while (w[o[j]] < pivot)
                j--;
            if (i <= j) {
                int32_t t = o[i];
                o[i++] = o[j];
                o[j--] = t;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            break;
    }
    const float kth = w[o[want]];
    for (int64_t i = 0; i < V; i++)
        if (w[i] < kth)
            w[i] = -INFINITY;
}

static void top_p(vt_sampler *s, float *w)
{
    const int64_t V = s->vocab;
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++)
        if (w[i] != -INFINITY)
            s->vi[n++] = (vt_sample_vi){.v = w[i], .id = (int32_t)i};
    if (n <= 1)
        return;
    qsort(s->vi, (size_t)n, sizeof *s->vi, cmp_asc);
    float mx;
    const double sum = (double)softmax_max(w, V, &mx);
    /* cumulative_probs <= (1 - top_p): the Python double, compared as float */
    const float thr = (float)(1.0 - (double)s->p.top_p);
    double cum = 0.0;
    for (int64_t r = 0; r < n - 1; r++) { /* the last (largest) is always kept */
        const int32_t id = s->vi[r].id;
        cum += (double)(float)(exp((double)w[id] - (double)mx) / sum);
        if ((float)cum <= thr)
            w[id] = -INFINITY;
        else
            break; /* cumulative sums only grow */
    }
}

static void min_p(vt_sampler *s, float *w)
{
    const int64_t V = s->vocab;
    float mx;
    const double sum = (double)softmax_max(w, V, &mx);
    const float top = (float)(1.0 / sum);
    const float thr = s->p.min_p * top;
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        best = w[i] > w[best] ? i : best;
    for (int64_t i = 0; i < V; i++)
        if (i != best && w[i] != -INFINITY && (float)(exp((double)w[i] - (double)mx) / sum) < thr)
            w[i] = -INFINITY;
}

void vt_sampler_filter(vt_sampler *s, const float *logits, const int32_t *history,
                       int64_t n_history)
{
    const int64_t V = s->vocab;
    float *w = s->work;
    memcpy(w, logits, (size_t)V * sizeof *w);
    if (s->p.repetition_penalty != 1.0f && n_history > 0) {
        const float pen = s->p.repetition_penalty;
        for (int64_t i = 0; i < n_history; i++) {
            const int32_t id = history[i];
            if (id < 0 || id >= V || s->seen[id])
                continue;
            s->seen[id] = 1;
            w[id] = w[id] < 0.0f ? w[id] * pen : w[id] / pen;
        }
        for (int64_t i = 0; i < n_history; i++)
            if (history[i] >= 0 && history[i] < V)
                s->seen[history[i]] = 0;
    }
    if (s->p.greedy)
        return;
    if (s->p.temperature != 1.0f)
        for (int64_t i = 0; i < V; i++)
            w[i] = w[i] / s->p.temperature;
    if (s->p.top_k > 0)
        top_k(s, w);
    if (s->p.top_p < 1.0f)
        top_p(s, w);
    if (s->p.min_p > 0.0f)
        min_p(s, w);
}

int32_t vt_sample(vt_sampler *s, const float *logits, const int32_t *history, int64_t n_history)
{
    vt_sampler_filter(s, logits, history, n_history);
    const float *w = s->work;
    const int64_t V = s->vocab;
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        best = w[i] > w[best] ? i : best; /* the first maximum, as torch.argmax */
    if (s->p.greedy)
        return (int32_t)best;
    float mx;
    const double sum = (double)softmax_max(w, V, &mx);
    const double u = (double)(next_u64(s->s) >> 11) * (1.0 / 9007199254740992.0) * sum;
    double cum = 0.0;
    for (int64_t i = 0; i < V; i++) {
        if (w[i] == -INFINITY)
            continue;
        cum += exp((double)w[i] - (double)mx);
        if (cum > u)
            return (int32_t)i;
    }
    return (int32_t)best; /* u at the very top: rounding */
}
