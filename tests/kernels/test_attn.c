/*
 * test_attn.c - the fused attention kernels (kernels.h, attn_f32) of every
 * ISA table against the reference, and vt_op_attention_ex (query-block
 * split, causal offsets, the large-dh fallback) against the reference
 * kernel called per (item, head).
 *
 * Shapes: tq, tk in {1, 7, 197, 257, 577} (every pair: tq != tk, the
 * causal offset tk - tq of either sign), dh in {32, 64, 80, 88, 96, 128},
 * causal and not, row strides larger than dh (fused-qkv style), q/k/v in
 * exactly-sized buffers (sanitizers see overreads), out pre-filled with NaN
 * (must not be read) and its row padding with a sentinel (must not be
 * written). The largest pairs run only dh 64 (and 88 when causal) to stay
 * within seconds under ASan. Data variants: moderate scores, very peaked scores (the max
 * moves between key blocks by ~20), scores growing with the key index
 * (the running max changes in every block), and v with a large offset
 * (errors in the normalisation show up).
 *
 * Tolerance: out[i][d] = sum_j p_ij v_jd, so each side's rounding is
 * relative to mag = sum_j p_ij |v_jd| (exp's and the sums' few ulp), plus
 * the scores' own rounding: s_ij carries ~sqrt(dh) ulp of
 * A_ij = scale * sum_d |q_id k_jd| (up to ~150 in the peaked variant, where
 * both sides are only good to ~3e-5 relative - as PyTorch would be), and
 * p_ij inherits it as a relative error. Bound: 2e-5 * mag + 1e-6 * magA with
 * magA = sum_j p_ij |v_jd| A_ij (both in double). An indexing, masking or
 * rescaling bug gives errors of O(mag).
 */
#include "core/ops.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail;
static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static float rng_f(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return (float)((double)(x >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static float *xalloc(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static float *xexact(size_t n)
{
    float *p = malloc(n ? n * sizeof(float) : 1);
    if (!p)
        exit(2);
    return p;
}

static int same_bits(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

typedef struct {
    int64_t tq, tk, dh, ldq, ldk, ldv, ldo;
    int causal, variant;
    float scale;
    float *q, *k, *v; /* exactly sized */
} attn_case;

static void make_case(attn_case *c, int64_t tq, int64_t tk, int64_t dh, int causal, int variant)
{
    c->tq = tq;
    c->tk = tk;
    c->dh = dh;
    c->causal = causal;
    c->variant = variant;
    c->ldq = 3 * dh + 5;
    c->ldk = dh + 3;
    c->ldv = 2 * dh + 1;
    c->ldo = dh + 7;
    c->scale = 1.0f / sqrtf((float)dh);
    const size_t nq = (size_t)((tq - 1) * c->ldq + dh), nk = (size_t)((tk - 1) * c->ldk + dh);
    const size_t nv = (size_t)((tk - 1) * c->ldv + dh);
    c->q = xexact(nq);
    c->k = xexact(nk);
    c->v = xexact(nv);
    /* score std ~ amp^2 / 3 with uniform data and scale 1/sqrt(dh) */
    const float amp = variant == 1 ? 8.0f : 3.5f;
    for (size_t i = 0; i < nq; i++)
        c->q[i] = variant == 2 ? 0.5f + 0.5f * rng_f() : amp * rng_f();
    for (int64_t j = 0; j < tk; j++)
        for (int64_t d = 0; d < c->ldk && (size_t)(j * c->ldk + d) < nk; d++)
            c->k[j * c->ldk + d] = variant == 2 ? 0.5f * rng_f() + 6.0f * (float)j / (float)tk
                                                : amp * rng_f();
    for (size_t i = 0; i < nv; i++)
        c->v[i] = variant == 3 ? 5.0f + rng_f() : rng_f();
}

static void free_case(attn_case *c)
{
    free(c->q);
    free(c->k);
    free(c->v);
}

static size_t out_floats(const attn_case *c)
{
    return (size_t)((c->tq - 1) * c->ldo + c->dh);
}

static const float SENTINEL = -12345.678f;

static float *new_out(const attn_case *c)
{
    const size_t n = out_floats(c);
    float *o = xexact(n);
    for (size_t i = 0; i < n; i++)
        o[i] = (int64_t)(i % (size_t)c->ldo) < c->dh ? NAN : SENTINEL;
    return o;
}

/* The error scale of out[i][d], in double: mag = sum_j p_ij |v_jd|, and
 * magA = sum_j p_ij |v_jd| A_ij with A_ij = scale * sum_d |q_id k_jd|, the
 * size of the terms of score s_ij (its float32 rounding is relative to A,
 * and p_ij inherits it as a relative error). */
static void magnitudes(const attn_case *c, int64_t i, double *mag, double *magA)
{
    int64_t n = c->causal ? i + (c->tk - c->tq) + 1 : c->tk;
    n = n < 0 ? 0 : n > c->tk ? c->tk : n;
    for (int64_t d = 0; d < c->dh; d++)
        mag[d] = magA[d] = 0;
    if (n == 0)
        return;
    double mx = -INFINITY, sum = 0;
    double *s = malloc(2 * (size_t)n * sizeof(double)), *A = s + n;
    if (!s)
        exit(2);
    for (int64_t j = 0; j < n; j++) {
        double t = 0, ta = 0;
        for (int64_t d = 0; d < c->dh; d++) {
            t += (double)c->q[i * c->ldq + d] * c->k[j * c->ldk + d];
            ta += fabs((double)c->q[i * c->ldq + d] * c->k[j * c->ldk + d]);
        }
        s[j] = t * c->scale;
        A[j] = ta * c->scale;
        mx = s[j] > mx ? s[j] : mx;
    }
    for (int64_t j = 0; j < n; j++)
        sum += s[j] = exp(s[j] - mx);
    for (int64_t j = 0; j < n; j++)
        for (int64_t d = 0; d < c->dh; d++) {
            const double t = s[j] / sum * fabs((double)c->v[j * c->ldv + d]);
            mag[d] += t;
            magA[d] += t * A[j];
        }
    free(s);
}

/* Compare got with ref (and padding with the sentinel); returns mismatches,
 * updates *worst (max error / bound). */
static int compare(const char *what, const attn_case *c, const float *got, const float *ref,
                   int check_pad, double *worst)
{
    int bad = 0;
    double *mag = malloc(2 * (size_t)c->dh * sizeof(double)), *magA = mag + c->dh;
    if (!mag)
        exit(2);
    for (int64_t i = 0; i < c->tq && bad < 3; i++) {
        /* The bound costs as much as the reference; compute it only for rows
         * with an error over 1e-6 |ref|, which is below it (|ref| <= mag). */
        int need = 0;
        for (int64_t d = 0; d < c->dh; d++) {
            const float g = got[i * c->ldo + d], r = ref[i * c->ldo + d];
            need |= !(fabs((double)g - r) <= 1e-6 * fabs((double)r));
        }
        if (need)
            magnitudes(c, i, mag, magA);
        for (int64_t d = 0; d < c->ldo && bad < 3; d++) {
            const size_t idx = (size_t)(i * c->ldo + d);
            if (idx >= out_floats(c))
                break;
            if (d >= c->dh) {
                if (check_pad && !same_bits(got[idx], SENTINEL)) {
                    printf("  FAIL %s tq=%lld tk=%lld dh=%lld causal=%d: wrote padding [%lld][%lld]\n",
                           what, (long long)c->tq, (long long)c->tk, (long long)c->dh, c->causal,
                           (long long)i, (long long)d);
                    bad++;
                }
                continue;
            }
            const double err = fabs((double)got[idx] - (double)ref[idx]);
            if (!need)
                continue;
            const double lim = 2e-5 * mag[d] + 1e-6 * magA[d] + 1e-30;
            if (err > 0 && err / lim > *worst)
                *worst = err / lim;
            if (!(err <= lim)) {
                printf("  FAIL %s tq=%lld tk=%lld dh=%lld causal=%d variant=%d: out[%lld][%lld] "
                       "= %.9g, ref %.9g (mag %.3g)\n", what, (long long)c->tq, (long long)c->tk,
                       (long long)c->dh, c->causal, c->variant, (long long)i, (long long)d,
                       got[idx], ref[idx], mag[d]);
                bad++;
            }
        }
    }
    free(mag);
    return bad;
}

static void run_kernel(vt_attn_f32_fn fn, const attn_case *c, float *out)
{
    float *scratch = xalloc((size_t)VT_ATTN_SCRATCH_FLOATS(c->dh));
    fn(c->tq, c->tk, c->dh, c->q, c->ldq, c->k, c->ldk, c->v, c->ldv, c->scale, c->causal, out,
       c->ldo, scratch);
    free(scratch);
}

/* --------------------------------------------------------- the kernels -- */

/* Every ISA table's attn_f32 against the reference, sharing the reference
 * run (the slow part) per case. */
static void test_kernels(const vt_kernels *const *tabs, int nt)
{
    static const int64_t ts[] = {1, 7, 197, 257, 577};
    static const int64_t dhs[] = {32, 64, 80, 88, 96, 128};
    int bad[4] = {0}, cases = 0, variant = 0;
    double worst[4] = {0};
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 5; b++)
            for (int di = 0; di < 6; di++)
                for (int causal = 0; causal < 2; causal++) {
                    const int64_t tq = ts[a], tk = ts[b], dh = dhs[di];
                    /* the big pairs: dh 64 (ViT) and 88 (odd tail, causal) only */
                    if (tq * tk > 50000 && dh != (causal ? 88 : 64))
                        continue;
                    attn_case c;
                    make_case(&c, tq, tk, dh, causal, variant++ % 4);
                    float *ref = new_out(&c);
                    run_kernel(vt_kernels_ref()->attn_f32, &c, ref);
                    for (int i = 0; i < nt; i++) {
                        float *got = new_out(&c);
                        run_kernel(tabs[i]->attn_f32, &c, got);
                        bad[i] += compare(tabs[i]->name, &c, got, ref, 1, &worst[i]);
                        free(got);
                    }
                    cases++;
                    free(ref);
                    free_case(&c);
                }
    for (int i = 0; i < nt; i++) {
        if (bad[i])
            g_fail = 1;
        printf("  %-7s attn_f32 %s (%d cases, worst error %.3f of the bound)\n", tabs[i]->name,
               bad[i] ? "FAIL" : "ok", cases, worst[i]);
    }
}

/* ------------------------------------------------------------- bf16 -- */

/*
 * attn_bf16 (AVX512-BF16 tables only) is not bit-close: q, k, v and the
 * probabilities are rounded to 8 significant bits. Reported per case:
 * cosine similarity and max|a - e| / max|e| against the float32 reference,
 * on moderate scores (std ~4 after scaling, as in trained ViTs) and on v
 * with a large offset. Fails only on what rounding cannot explain (cosine
 * < 0.9995 or relative error > 3%: an indexing or masking bug gives O(1)),
 * or on a write to the row padding.
 */
static void test_bf16(const vt_kernels *t)
{
    static const int64_t shapes[][4] = {
        {197, 197, 64, 0}, {577, 577, 64, 0}, {257, 257, 88, 1}, {7, 577, 96, 0},
        {197, 257, 80, 1}, {65, 33, 33, 1},   {1, 1, 32, 0},     {50, 7, 128, 1},
    };
    int bad = 0;
    double worst_cos = 1, worst_rel = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int variant = 0; variant <= 3; variant += 3) {
            attn_case c;
            make_case(&c, shapes[s][0], shapes[s][1], shapes[s][2], (int)shapes[s][3], variant);
            float *ref = new_out(&c), *got = new_out(&c);
            run_kernel(vt_kernels_ref()->attn_f32, &c, ref);
            run_kernel(t->attn_bf16, &c, got);
            double dot = 0, na = 0, ne = 0, maxd = 0, maxe = 0;
            for (int64_t i = 0; i < c.tq; i++)
                for (int64_t d = 0; d < c.ldo && (size_t)(i * c.ldo + d) < out_floats(&c); d++) {
                    const double a = got[i * c.ldo + d], e = ref[i * c.ldo + d];
                    if (d >= c.dh) {
                        if (!same_bits(got[i * c.ldo + d], SENTINEL))
                            maxd = NAN;
                        continue;
                    }
                    dot += a * e;
                    na += a * a;
                    ne += e * e;
                    maxd = fmax(maxd, fabs(a - e)) + (a - a); /* NaN sticks */
                    maxe = fmax(maxe, fabs(e));
                }
            const double cosv = dot / sqrt(na * ne), rel = maxd / maxe;
            const int ok = cosv >= 0.9995 && rel <= 0.03;
            if (!ok || variant == 0)
                printf("  %-7s attn_bf16 tq=%lld tk=%lld dh=%lld causal=%d v-offset=%d: cos %.7f "
                       "rel %.2e%s\n", t->name, (long long)c.tq, (long long)c.tk, (long long)c.dh,
                       c.causal, variant == 3, cosv, rel, ok ? "" : "  FAIL");
            bad += !ok;
            worst_cos = fmin(worst_cos, cosv);
            worst_rel = fmax(worst_rel, rel);
            free(ref);
            free(got);
            free_case(&c);
        }
    if (bad)
        g_fail = 1;
    printf("  %-7s attn_bf16 %s (worst cos %.7f, worst rel %.2e; not bit-close by design)\n",
           t->name, bad ? "FAIL" : "ok", worst_cos, worst_rel);
}

/* ------------------------------------------------------------- the op -- */

/*
 * vt_op_attention_ex with batch 2, 3 heads (so the op splits queries into
 * blocks on a 3-thread pool) against the reference kernel per (item, head):
 * under the reference table bit for bit (the split must not change which
 * keys a query sees), under the ISA tables within the tolerance.
 */
static void test_op(const vt_kernels *t, vt_pool *pool)
{
    static const int64_t shapes[][3] = {{197, 197, 64}, {7, 577, 32}, {257, 7, 88},
                                        {300, 97, 96}, {1, 1, 16}, {100, 60, 256},
                                        {49, 30, 512}, {50, 20, 1100}};
    const int64_t B = 2, H = 3;
    const int64_t stride = vt_exec_scratch_floats(577);
    float *scr = xalloc((size_t)(3 * stride));
    vt_exec e = {.pool = pool, .k = t, .scratch = scr, .scratch_stride = stride};
    int bad = 0;
    double worst = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int causal = 0; causal < 2; causal++) {
            const int64_t tq = shapes[s][0], tk = shapes[s][1], dh = shapes[s][2];
            /* One case holds all items and heads: rows of H*dh (+ pad). */
            attn_case c;
            make_case(&c, B * tq, B * tk, H * dh, causal, (int)s % 4);
            const int64_t ld = H * dh + 5;
            vt_attn_args a = {.batch = B, .heads = H, .tq = tq, .tk = tk, .dh = dh,
                              .q = c.q, .k = c.k, .v = c.v, .ldq = c.ldq, .ldk = c.ldk,
                              .ldv = c.ldv, .out = NULL, .ldo = ld,
                              .scale = 1.0f / sqrtf((float)dh), .causal = causal};
            const size_t no = (size_t)(B * tq * ld);
            float *got = xexact(no), *ref = xexact(no);
            for (size_t i = 0; i < no; i++)
                got[i] = ref[i] = (int64_t)(i % (size_t)ld) < H * dh ? NAN : SENTINEL;
            a.out = got;
            vt_op_attention_ex(&e, &a);
            for (int64_t b = 0; b < B; b++)
                for (int64_t h = 0; h < H; h++)
                    vt_kernels_ref()->attn_f32(
                        tq, tk, dh, c.q + b * tq * c.ldq + h * dh, c.ldq,
                        c.k + b * tk * c.ldk + h * dh, c.ldk, c.v + b * tk * c.ldv + h * dh,
                        c.ldv, a.scale, causal, ref + b * tq * ld + h * dh, ld, NULL);
            if (t == vt_kernels_ref() || dh > VT_ATTN_MAX_DH) {
                for (size_t i = 0; i < no && bad < 3; i++)
                    if (!same_bits(got[i], ref[i])) {
                        printf("  FAIL %s vt_op_attention_ex tq=%lld tk=%lld dh=%lld causal=%d: "
                               "[%zu] = %.9g, reference kernel %.9g\n", t->name, (long long)tq,
                               (long long)tk, (long long)dh, causal, i, got[i], ref[i]);
                        bad++;
                    }
            } else {
                /* Per (item, head): view the case as one head of width dh. */
                for (int64_t b = 0; b < B; b++)
                    for (int64_t h = 0; h < H; h++) {
                        attn_case v = c;
                        v.tq = tq;
                        v.tk = tk;
                        v.dh = dh;
                        v.ldo = ld;
                        v.q = c.q + b * tq * c.ldq + h * dh;
                        v.k = c.k + b * tk * c.ldk + h * dh;
                        v.v = c.v + b * tk * c.ldv + h * dh;
                        v.scale = a.scale;
                        const size_t o = (size_t)(b * tq * ld + h * dh);
                        bad += compare("vt_op_attention_ex", &v, got + o, ref + o, 0, &worst);
                    }
                for (size_t i = 0; i < no && bad < 3; i++)
                    if ((int64_t)(i % (size_t)ld) >= H * dh && !same_bits(got[i], SENTINEL)) {
                        printf("  FAIL %s vt_op_attention_ex wrote row padding\n", t->name);
                        bad++;
                    }
            }
            free(got);
            free(ref);
            free_case(&c);
        }
    }
    free(scr);
    if (bad)
        g_fail = 1;
    printf("  %-7s vt_op_attention_ex %s\n", t->name, bad ? "FAIL" : "ok");
}

/* ----------------------------------------------- GQA and KV-cache mask -- */

/*
 * vt_op_attention_ex with kv_heads < heads (query head h reads K/V head
 * h / (heads / kv_heads), transformers' repeat_kv) and the causal variants
 * (VT_ATTN_CAUSAL_POS with q_pos below, at and beyond tk - tq; the plain
 * VT_ATTN_CAUSAL), against attention written out in double here. Bound per
 * element: 2e-5 * sum_j p_ij |v_jd| + 1e-6 * |ref| (float32 sums against
 * double; a wrong K/V head, a mask off by one key or a wrong split moves
 * outputs by O(sum_j p_ij |v_jd|)).
 */
static void test_op_gqa(const vt_kernels *t, vt_pool *pool)
{
    /* heads, kv_heads, tq, tk, dh, causal, q_pos */
    static const int64_t cases[][7] = {
        {8, 2, 37, 87, 64, VT_ATTN_CAUSAL_POS, 50},  /* prefill chunk after 50 cached */
        {6, 3, 1, 300, 80, VT_ATTN_CAUSAL_POS, 299}, /* one decode step */
        {4, 1, 100, 60, 64, VT_ATTN_CAUSAL_POS, 10}, /* rows 50.. see every key */
        {4, 4, 70, 70, 128, VT_ATTN_CAUSAL_POS, 0},  /* plain causal prefill */
        {6, 2, 53, 40, 32, VT_ATTN_CAUSAL_POS, 3},   /* q_pos < tk - tq */
        {8, 4, 45, 130, 96, VT_ATTN_CAUSAL, 0},
        {6, 2, 97, 61, 64, 0, 0},
    };
    const int64_t B = 2;
    const int64_t stride = vt_exec_scratch_floats(577);
    float *scr = xalloc((size_t)(3 * stride));
    vt_exec e = {.pool = pool, .k = t, .scratch = scr, .scratch_stride = stride};
    int bad = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int64_t H = cases[ci][0], KV = cases[ci][1], tq = cases[ci][2], tk = cases[ci][3];
        const int64_t dh = cases[ci][4], q_pos = cases[ci][6];
        const int causal = (int)cases[ci][5];
        const int64_t ldq = H * dh + 3, ldk = KV * dh + 1, ldv = KV * dh + 5, ldo = H * dh;
        float *q = xexact((size_t)(B * tq * ldq)), *k = xexact((size_t)(B * tk * ldk));
        float *v = xexact((size_t)(B * tk * ldv)), *out = xexact((size_t)(B * tq * ldo));
        for (int64_t i = 0; i < B * tq * ldq; i++)
            q[i] = 3.0f * rng_f();
        for (int64_t i = 0; i < B * tk * ldk; i++)
            k[i] = 3.0f * rng_f();
        for (int64_t i = 0; i < B * tk * ldv; i++)
            v[i] = rng_f();
        for (int64_t i = 0; i < B * tq * ldo; i++)
            out[i] = NAN;
        const float scale = 1.0f / sqrtf((float)dh);
        vt_attn_args a = {.batch = B, .heads = H, .kv_heads = KV, .tq = tq, .tk = tk, .dh = dh,
                          .q = q, .k = k, .v = v, .ldq = ldq, .ldk = ldk, .ldv = ldv,
                          .out = out, .ldo = ldo, .scale = scale, .causal = causal,
                          .q_pos = q_pos};
        vt_op_attention_ex(&e, &a);
        const int64_t off = causal == VT_ATTN_CAUSAL_POS ? q_pos : tk - tq;
        double *p = malloc((size_t)tk * sizeof(double));
        if (!p)
            exit(2);
        for (int64_t b = 0; b < B && bad < 3; b++)
            for (int64_t h = 0; h < H && bad < 3; h++) {
                const int64_t g = h / (H / KV);
                for (int64_t i = 0; i < tq && bad < 3; i++) {
                    int64_t n = causal ? i + off + 1 : tk;
                    n = n < 0 ? 0 : n > tk ? tk : n;
                    double mx = -INFINITY, sum = 0;
                    for (int64_t j = 0; j < n; j++) {
                        double s = 0;
                        for (int64_t d = 0; d < dh; d++)
                            s += (double)q[(b * tq + i) * ldq + h * dh + d] *
                                 k[(b * tk + j) * ldk + g * dh + d];
                        p[j] = s * scale;
                        mx = p[j] > mx ? p[j] : mx;
                    }
                    for (int64_t j = 0; j < n; j++)
                        sum += p[j] = exp(p[j] - mx);
                    for (int64_t d = 0; d < dh && bad < 3; d++) {
                        double r = 0, mag = 0;
                        for (int64_t j = 0; j < n; j++) {
                            const double vv = v[(b * tk + j) * ldv + g * dh + d];
                            r += p[j] / sum * vv;
                            mag += p[j] / sum * fabs(vv);
                        }
                        const float got = out[(b * tq + i) * ldo + h * dh + d];
                        if (!(fabs(got - r) <= 2e-5 * mag + 1e-6 * fabs(r))) {
                            printf("  FAIL %s GQA heads=%lld kv=%lld tq=%lld tk=%lld causal=%d "
                                   "q_pos=%lld: out[%lld][h%lld][%lld] = %.9g, want %.9g\n",
                                   t->name, (long long)H, (long long)KV, (long long)tq,
                                   (long long)tk, causal, (long long)q_pos, (long long)i,
                                   (long long)h, (long long)d, got, r);
                            bad++;
                        }
                    }
                }
            }
        free(p);
        free(q);
        free(k);
        free(v);
        free(out);
    }
    free(scr);
    if (bad)
        g_fail = 1;
    printf("  %-7s vt_op_attention_ex GQA / KV-cache mask %s\n", t->name, bad ? "FAIL" : "ok");
}

int main(void)
{
    const vt_kernels *tabs[3] = {vt_kernels_ref(), vt_kernels_avx2(), vt_kernels_avx512()};
    const vt_kernels *isa[2];
    int nisa = 0;
    vt_pool *pool = vt_pool_new(3);
    if (!pool)
        return 2;
    for (int i = 0; i < 3; i++) {
        const vt_kernels *t = tabs[i];
        if (!t) {
            printf("table %s: not supported on this cpu, skipped\n", i == 1 ? "avx2" : "avx512");
        } else if (!t->attn_f32) {
            printf("  FAIL table %s has no attn_f32\n", t->name);
            g_fail = 1;
        } else if (t != vt_kernels_ref() && t->attn_f32 == vt_kernels_ref()->attn_f32) {
            printf("table %s: attn_f32 is the reference kernel\n", t->name);
        } else if (t != vt_kernels_ref()) {
            isa[nisa++] = t;
        }
    }
    printf("kernels vs ref:\n");
    test_kernels(isa, nisa);
    printf("vt_op_attention_ex:\n");
    test_op(vt_kernels_ref(), pool);
    for (int i = 0; i < nisa; i++)
        test_op(isa[i], pool);
    test_op_gqa(vt_kernels_ref(), pool);
    for (int i = 0; i < nisa; i++)
        test_op_gqa(isa[i], pool);
    for (int i = 0; i < nisa; i++) {
        if (isa[i]->attn_bf16) {
            printf("bf16 products vs float32:\n");
            test_bf16(isa[i]);
        }
    }
    vt_pool_free(pool);
    printf("attention: %s\n", g_fail ? "FAILED" : "all ok");
    return g_fail ? 1 : 0;
}
