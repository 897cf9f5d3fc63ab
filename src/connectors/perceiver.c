/*
 * perceiver.c - Flamingo Perceiver resampler (GVT's connector).
 *
 * Source: TencentARC/GVT gvt/gvt/modules/visual_modules/perceiver.py, a copy
 * of lucidrains/flamingo-pytorch. For 3-D input x [b, n, d] the module works
 * on one "time" step: x += media_pos_emb[0]; latents broadcast per image;
 * per layer
 *     xm = norm_media(x); lm = norm_latents(L)          (LayerNorm, eps 1e-5)
 *     q = to_q(lm); k, v = to_kv(cat(xm, lm)).chunk(2)  (no biases)
 *     L += to_out(softmax(q k^T * dim_head^-0.5) v)     (per head; the
 *                                                        max-subtraction is the
 *                                                        usual stable softmax)
 *     L += ff(L),  ff = LayerNorm -> Linear -> GELU (erf) -> Linear (no biases)
 * and out = norm(L). Media rows are normalised afresh from the unchanged x
 * in every layer (each layer has its own norm_media).
 *
 * Memory: the media and latent rows of each image are laid out together as
 * one [t_in + n_latents, dim] block so a single to_kv GEMM serves both; the
 * attention reads k and v from that result with a row stride of 2 * inner.
 */
#include "perceiver.h"


#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- loading ---- */

static int read_cfg(vt_perceiver *p, const cJSON *cfg, double *eps, vtok_status *st)
{
    double ff_mult = 4.0;
    int rc;
    if ((rc = vt_opt_int(cfg, "dim", 1024, &p->dim, "perceiver", st)) ||
        (rc = vt_opt_int(cfg, "depth", 6, &p->depth, "perceiver", st)) ||
        (rc = vt_opt_int(cfg, "heads", 16, &p->heads, "perceiver", st)) ||
        (rc = vt_opt_int(cfg, "dim_head", 96, &p->dim_head, "perceiver", st)) ||
        (rc = vt_opt_int(cfg, "num_latents", 32, &p->n_latents, "perceiver", st)) ||
        (rc = vt_opt_int(cfg, "num_media_embeds", 1, &p->n_media, "perceiver", st)) ||
        (rc = vt_opt_float(cfg, "ff_mult", 4.0, &ff_mult, "perceiver", st)) ||
        (rc = vt_opt_float(cfg, "eps", 1e-5, eps, "perceiver", st)))
        return rc;
    if (p->dim <= 0 || p->dim > 65536 || p->depth < 0 || p->depth > 1024 || p->heads <= 0 ||
        p->heads > 1024 || p->dim_head <= 0 || p->dim_head > 4096 || p->n_latents <= 0 ||
        p->n_latents > 65536 || p->n_media <= 0 || p->n_media > 65536)
        return vt_fail(st, VTOK_EFORMAT, "perceiver: bad sizes in config");
    if (!(ff_mult > 0.0) || ff_mult > 64.0 || !(*eps > 0.0) || *eps > 1.0)
        return vt_fail(st, VTOK_EFORMAT, "perceiver: bad ff_mult %g or eps %g", ff_mult, *eps);
    p->ff_dim = (int64_t)((double)p->dim * ff_mult); /* FeedForward: int(dim * mult) */
    return 0;
}

/* Helpers for pretty key names: layers.N.<rest>. */
static const char *lname(char *b, size_t n, int64_t i, const char *rest)
{
    snprintf(b, n, "layers.%lld.%s", (long long)i, rest);
    return b;
}

int vt_perceiver_load(vt_perceiver *p, vt_loader *ld, const char *base, const cJSON *cfg)
{
    memset(p, 0, sizeof *p);
    double eps = 0.0;
    int rc = read_cfg(p, cfg, &eps, ld->st);
    if (rc) {
        memset(p, 0, sizeof *p);
        return rc;
    }
    int64_t d = p->dim, inner = p->heads * p->dim_head;
    float e = (float)eps;
    p->layers = calloc((size_t)(p->depth ? p->depth : 1), sizeof *p->layers);
    if (!p->layers)
        return vt_loader_fail(ld, VTOK_ENOMEM, "out of memory loading the perceiver");
    const char *saved = vt_loader_base(ld, base);
    p->latents = vt_get(ld, "latents", 2, p->n_latents, d, 0, 0);
    p->media_pos = vt_get(ld, "media_pos_emb", 3, p->n_media, 1, d, 0);
    for (int64_t i = 0; i < p->depth; i++) {
        vt_perceiver_layer *L = &p->layers[i];
        char b[128];
        vt_get_norm(ld, &L->norm_media, lname(b, sizeof b, i, "0.norm_media"), d, e);
        vt_get_norm(ld, &L->norm_latents, lname(b, sizeof b, i, "0.norm_latents"), d, e);
        vt_get_linear(ld, &L->to_q, lname(b, sizeof b, i, "0.to_q"), inner, d, 0);
        vt_get_linear(ld, &L->to_kv, lname(b, sizeof b, i, "0.to_kv"), 2 * inner, d, 0);
        vt_get_linear(ld, &L->to_out, lname(b, sizeof b, i, "0.to_out"), d, inner, 0);
        /* FeedForward = nn.Sequential(LayerNorm, Linear, GELU, Linear): indices 0, 1, 3 */
        vt_get_norm(ld, &L->ff_ln, lname(b, sizeof b, i, "1.0"), d, e);
        vt_get_linear(ld, &L->ff1, lname(b, sizeof b, i, "1.1"), p->ff_dim, d, 0);
        vt_get_linear(ld, &L->ff2, lname(b, sizeof b, i, "1.3"), d, p->ff_dim, 0);
    }
    vt_get_norm(ld, &p->norm, "norm", d, e);
    vt_loader_base(ld, saved);
    return ld->err;
}

void vt_perceiver_free(vt_perceiver *p)
{
    if (!p)
        return;
    free(p->layers);
    memset(p, 0, sizeof *p);
}

/* ---- forward ---- */

typedef struct {
    float *x, *lat, *lm, *kvi, *kv, *q, *att, *tmp, *ff;
} pv_buffers;

static int64_t layout(const vt_perceiver *p, int64_t n, int64_t t_in, float *base, pv_buffers *b)
{
    /* saturating (vt_szmul): a size past int64_t is refused by the planner */
    int64_t d = p->dim, nl = p->n_latents, inner = vt_szmul(p->heads, p->dim_head);
    int64_t T = vt_szadd(t_in, nl), nT = vt_szmul(n, T), nnl = vt_szmul(n, nl);
    int64_t sizes[9] = {vt_szmul3(n, t_in, d), vt_szmul(nnl, d), vt_szmul(nnl, d),
                        vt_szmul(nT, d), vt_szmul3(nT, 2, inner), vt_szmul(nnl, inner),
                        vt_szmul(nnl, inner), vt_szmul(nnl, d), vt_szmul(nnl, p->ff_dim)};
    float **dst[9] = {&b->x, &b->lat, &b->lm, &b->kvi, &b->kv, &b->q, &b->att, &b->tmp, &b->ff};
    int64_t off = 0;
    for (int i = 0; i < 9; i++) {
        if (base)
            *dst[i] = base + off;
        off = vt_szadd(off, vt_szr16(sizes[i]));
    }
    return off;
}

int64_t vt_perceiver_work_floats(const vt_perceiver *p, int64_t n, int64_t t_in)
{
    pv_buffers b;
    return layout(p, n, t_in, NULL, &b);
}

int64_t vt_perceiver_max_tokens(const vt_perceiver *p, int64_t t_in)
{
    return t_in + p->n_latents;
}

static void add_into(int64_t n, float *x, const float *y)
{
    for (int64_t i = 0; i < n; i++)
        x[i] += y[i];
}

int64_t vt_perceiver_linears(vt_perceiver *p, vt_linear **out)
{
    int64_t n = 0;
    for (int64_t i = 0; i < p->depth; i++) {
        vt_perceiver_layer *L = &p->layers[i];
        vt_linear *l[5] = {&L->to_q, &L->to_kv, &L->to_out, &L->ff1, &L->ff2};
        for (int k = 0; k < 5; k++, n++)
            if (out)
                out[n] = l[k];
    }
    return n;
}

void vt_perceiver_forward(const vt_perceiver *p, const vt_exec *e, const float *x, int64_t n,
                          int64_t t_in, float *out, float *work)
{
    int64_t d = p->dim, nl = p->n_latents, inner = p->heads * p->dim_head, T = t_in + nl;
    int64_t ML = n * nl;
    size_t lat_bytes = (size_t)(nl * d) * sizeof(float);
    pv_buffers b;
    layout(p, n, t_in, work, &b);

    /* x + media_pos_emb[:1] (one time step), latents repeated per image */
    for (int64_t r = 0; r < n * t_in; r++)
        for (int64_t c = 0; c < d; c++)
            b.x[r * d + c] = x[r * d + c] + p->media_pos[c];
    for (int64_t im = 0; im < n; im++)
        memcpy(b.lat + im * nl * d, p->latents, lat_bytes);

    for (int64_t li = 0; li < p->depth; li++) {
        const vt_perceiver_layer *L = &p->layers[li];
        vt_op_layernorm(e, ML, d, b.lat, &L->norm_latents, b.lm);
        for (int64_t im = 0; im < n; im++) { /* kv input: [norm_media(x); norm_latents(L)] */
            float *blk = b.kvi + im * T * d;
            vt_op_layernorm(e, t_in, d, b.x + im * t_in * d, &L->norm_media, blk);
            memcpy(blk + t_in * d, b.lm + im * nl * d, lat_bytes);
        }
        vt_op_linear(e, ML, b.lm, 0, &L->to_q, b.q, 0);
        vt_op_linear(e, n * T, b.kvi, 0, &L->to_kv, b.kv, 0);
        vt_attn_args a = {.batch = n, .heads = p->heads, .tq = nl, .tk = T, .dh = p->dim_head,
                          .q = b.q, .k = b.kv, .v = b.kv + inner,
                          .ldq = inner, .ldk = 2 * inner, .ldv = 2 * inner,
                          .out = b.att, .ldo = inner,
                          .scale = 1.0f / sqrtf((float)p->dim_head)};
        vt_op_attention_ex(e, &a);
        vt_op_linear(e, ML, b.att, 0, &L->to_out, b.tmp, 0);
        add_into(ML * d, b.lat, b.tmp);

        vt_op_layernorm(e, ML, d, b.lat, &L->ff_ln, b.lm);
        vt_op_linear(e, ML, b.lm, 0, &L->ff1, b.ff, 0);
        vt_op_act(e, VT_ACT_GELU_ERF, ML * p->ff_dim, b.ff);
        vt_op_linear(e, ML, b.ff, 0, &L->ff2, b.tmp, 0);
        add_into(ML * d, b.lat, b.tmp);
    }
    vt_op_layernorm(e, ML, d, b.lat, &p->norm, out);
}
