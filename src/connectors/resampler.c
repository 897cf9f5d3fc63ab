/*
 * resampler.c - SliME's 2-D resampler (resampler.h).
 *
 * The fused in_proj is split into three Linears over copies of its row
 * blocks: the key input (kv + pos_k) differs from the value input (kv), and
 * a Linear whose weight pointed into the middle of another tensor could not
 * be converted and released on its own (pack.c).
 */
#include "resampler.h"

#include "../models/vit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int split_linear(vt_loader *ld, vt_linear *l, const float *w, const float *b, int64_t k,
                        int64_t d, int64_t n_in)
{
    float *wc = vt_loader_alloc(ld, d * n_in), *bc = vt_loader_alloc(ld, d);
    if (!wc || !bc)
        return ld->err;
    memcpy(wc, w + k * d * n_in, (size_t)(d * n_in) * sizeof(float));
    memcpy(bc, b + k * d, (size_t)d * sizeof(float));
    *l = (vt_linear){.w = wc, .b = bc, .n_out = d, .n_in = n_in};
    return 0;
}

int vt_resampler_load(vt_resampler *r, vt_loader *ld, const char *base, const cJSON *cfg,
                      const char *where)
{
    static const char *const keys[] = {"heads", "eps", NULL};
    memset(r, 0, sizeof *r);
    vtok_status *st = ld->st;
    double eps;
    int rc;
    if ((rc = vt_opt_check_keys(cfg, keys, where, st)) ||
        (rc = vt_opt_float(cfg, "eps", 1e-6, &eps, where, st)))
        return rc;
    const char *saved = vt_loader_base(ld, base);
    int64_t qs[2] = {-1, -1};
    r->query = vt_get_shape(ld, "query", 2, qs);
    if (!r->query) {
        vt_loader_base(ld, saved);
        return ld->err;
    }
    r->n_q = qs[0];
    r->d = qs[1];
    const int64_t d = r->d;
    r->grid = vt_square_side(r->n_q);
    if (r->grid * r->grid != r->n_q || d < 1 || d > 65536) {
        vt_loader_base(ld, saved);
        return vt_loader_fail(ld, VTOK_ESHAPE, "%s: %lld queries of width %lld: not a square "
                              "grid", where, (long long)r->n_q, (long long)d);
    }
    if ((rc = vt_opt_int(cfg, "heads", d / 128 > 0 ? d / 128 : 1, &r->heads, where, st))) {
        vt_loader_base(ld, saved);
        return rc;
    }
    if (r->heads < 1 || d % r->heads) {
        vt_loader_base(ld, saved);
        return vt_loader_fail(ld, VTOK_EFORMAT, "%s: %lld heads do not divide width %lld", where,
                              (long long)r->heads, (long long)d);
    }
    r->pos = vt_get(ld, "pos_embed", 2, r->n_q, d, 0, 0);
    r->kv_dim = d;
    if (vt_find(ld, "kv_proj.weight")) { /* kv_dim != embed_dim: Linear, no bias */
        vt_get_linear(ld, &r->kv_proj, "kv_proj", d, -1, 0);
        r->kv_dim = r->kv_proj.n_in;
    }
    const float *w = vt_get(ld, "attn.in_proj_weight", 2, 3 * d, d, 0, 0);
    const float *b = vt_get(ld, "attn.in_proj_bias", 1, 3 * d, 0, 0, 0);
    if (w && b && (split_linear(ld, &r->wq, w, b, 0, d, d) || split_linear(ld, &r->wk, w, b, 1, d, d) ||
                   split_linear(ld, &r->wv, w, b, 2, d, d))) {
        vt_loader_base(ld, saved);
        return ld->err;
    }
    vt_get_linear(ld, &r->out, "attn.out_proj", d, d, 1);
    vt_get_norm(ld, &r->ln_q, "ln_q", d, (float)eps);
    vt_get_norm(ld, &r->ln_kv, "ln_kv", d, (float)eps);
    vt_get_norm(ld, &r->ln_post, "ln_post", d, (float)eps);
    vt_loader_base(ld, saved);
    return ld->err;
}

void vt_resampler_free(vt_resampler *r)
{
    if (r)
        memset(r, 0, sizeof *r);
}

int64_t vt_resampler_linears(vt_resampler *r, vt_linear **out)
{
    vt_linear *l[5] = {&r->wq, &r->wk, &r->wv, &r->out, &r->kv_proj};
    int64_t n = r->kv_proj.n_out ? 5 : 4;
    for (int64_t i = 0; out && i < n; i++)
        out[i] = l[i];
    return n;
}

typedef struct {
    float *pk, *kv, *kin, *k, *v, *qn, *q, *att, *tmp;
} rs_buffers;

static int64_t layout(const vt_resampler *r, int64_t n, int64_t t_in, float *base, rs_buffers *b)
{
    const int64_t d = r->d, nT = vt_szmul(n, t_in), nQ = vt_szmul(n, r->n_q);
    int64_t sizes[9] = {vt_szmul(t_in, d), vt_szmul(nT, d), vt_szmul(nT, d), vt_szmul(nT, d),
                        vt_szmul(nT, d), vt_szmul(r->n_q, d), vt_szmul(nQ, d), vt_szmul(nQ, d),
                        vt_szmul(nQ, d)};
    float **dst[9] = {&b->pk, &b->kv, &b->kin, &b->k, &b->v, &b->qn, &b->q, &b->att, &b->tmp};
    int64_t off = 0;
    for (int i = 0; i < 9; i++) {
        if (base)
            *dst[i] = base + off;
        off = vt_szadd(off, vt_szr16(sizes[i]));
    }
    return off;
}

int64_t vt_resampler_work_floats(const vt_resampler *r, int64_t n, int64_t t_in)
{
    rs_buffers b;
    return layout(r, n, t_in, NULL, &b);
}

int64_t vt_resampler_max_tokens(const vt_resampler *r, int64_t t_in)
{
    return t_in > r->n_q ? t_in : r->n_q;
}

void vt_resampler_forward(const vt_resampler *r, const vt_exec *e, const float *x, int64_t n,
                          int64_t t_in, float *out, float *work)
{
    const int64_t d = r->d, nq = r->n_q;
    rs_buffers b;
    layout(r, n, t_in, work, &b);
    const int64_t t = vt_square_side(t_in);
    /* pos_k: the query grid's table resized to the t x t key map, rounded to
     * float16 as get_abs_pos's .to(dtype) of the float16 parameter does (a
     * resize to the same size is the identity) */
    if (t == r->grid) {
        memcpy(b.pk, r->pos, (size_t)(nq * d) * sizeof(float));
    } else {
        const float s = (float)r->grid / (float)t;
        vt_pos_bicubic(r->pos, r->grid, r->grid, d, t, t, s, s, b.pk);
        for (int64_t i = 0; i < t_in * d; i++)
            b.pk[i] = vt_f16_to_f32(vt_f32_to_f16(b.pk[i]));
    }
    const float *src = x;
    if (r->kv_proj.n_out) {
        vt_op_linear(e, n * t_in, x, 0, &r->kv_proj, b.kin, 0);
        src = b.kin;
    }
    vt_op_layernorm(e, n * t_in, d, src, &r->ln_kv, b.kv);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < t_in * d; j++)
            b.kin[i * t_in * d + j] = b.kv[i * t_in * d + j] + b.pk[j];
    vt_op_linear(e, n * t_in, b.kin, 0, &r->wk, b.k, 0);
    vt_op_linear(e, n * t_in, b.kv, 0, &r->wv, b.v, 0);
    vt_op_layernorm(e, nq, d, r->query, &r->ln_q, b.qn);
    for (int64_t j = 0; j < nq * d; j++)
        b.qn[j] += r->pos[j];
    vt_op_linear(e, nq, b.qn, 0, &r->wq, b.q, 0);
    for (int64_t i = 1; i < n; i++) /* the same queries for every image */
        memcpy(b.q + i * nq * d, b.q, (size_t)(nq * d) * sizeof(float));
    const int64_t dh = d / r->heads;
    vt_attn_args a = {.batch = n, .heads = r->heads, .tq = nq, .tk = t_in, .dh = dh,
                      .q = b.q, .k = b.k, .v = b.v, .ldq = d, .ldk = d, .ldv = d,
                      .out = b.att, .ldo = d, .scale = 1.0f / sqrtf((float)dh)};
    vt_op_attention_ex(e, &a);
    vt_op_linear(e, n * nq, b.att, 0, &r->out, b.tmp, 0);
    vt_op_layernorm(e, n * nq, d, b.tmp, &r->ln_post, out);
}
