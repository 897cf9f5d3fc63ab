/*
 * p2s_enc.c - the Pix2Struct vision encoder (p2s_enc.h).
 *
 * Ported from transformers src/transformers/models/pix2struct/
 * modeling_pix2struct.py (read at commit 8e1f1a8; MoVA pins 4.37.2, whose
 * vision classes compute the same thing: its default mask is line 617 there,
 * spec mova-slime-llava.md 8.11). Cited below by class.method.
 *
 * The attention mask. Pix2StructVisionModel.forward makes the mask
 * `(flattened_patches.sum(-1) != 0).float()`; Pix2StructVisionAttention.forward
 * turns it into a bias that is 0 for kept keys and finfo(float32).min for
 * masked ones (position_bias = 1 - mask, masked_fill(== 1, min)), adds it to
 * the unscaled scores and clamps them at min (torch.max). A masked key's
 * score is then min (adding |s| << ulp(min) = 2^104 leaves min), and
 * exp(min - max_kept) is exactly 0 in float32, so the softmax over all L keys
 * equals the softmax over the kept keys alone (tests/blocks/p2s_enc_parity.py
 * checks the masked weights are exactly 0, for padded query rows too). So
 * the keys are simply not given to the attention: the processor pads at the
 * end (rows >= rows * cols), the kept keys are a prefix and the attention
 * runs with tk = their count; if a row in the middle sums to 0 (a real
 * patch whose pixels cancel its ids: possible, not likely), the kept rows'
 * K and V are compacted first. Every query row is computed, as MoVA keeps
 * all L outputs. With no key kept every score is min, the softmax is uniform
 * over all L keys and each output row is the mean of V over all rows; that
 * case is written out.
 *
 * Rounding vs the original: the mask's row sum is taken in double (torch
 * sums float32 in its own order; the two disagree only on a row whose sum
 * is within rounding of 0). The norms are vt_op_rmsnorm (float32, x *
 * 1 / sqrt(mean(x^2) + eps), then weight *: Pix2StructLayerNorm.forward).
 */
#include "p2s_enc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NM(b, fmt, i) (snprintf(b, sizeof b, fmt, (long long)(i)), b)

/* Pix2StructVisionConfig keys this block reads. */
static const char *const p2s_keys[] = {
    "hidden_size",        "patch_embed_hidden_size", "d_ff",          "d_kv",
    "num_attention_heads", "num_hidden_layers",      "layer_norm_eps", "dense_act_fn",
    "seq_len",            NULL};

typedef struct {
    int64_t d, d_patch, d_ff, d_kv, heads, layers, seq_len;
    double  eps;
    int     act;
} p2s_opts;

/* Options with Pix2StructVisionConfig.__init__'s defaults where the weights
 * cannot give the value (d_kv 64, layer_norm_eps 1e-6, dense_act_fn
 * "gelu_new"); -1 = from the weights. */
static int read_opts(const cJSON *cfg, const char *where, vtok_status *st, p2s_opts *o)
{
    const cJSON *vc = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "vision_config") : NULL;
    if (cJSON_IsObject(vc))
        cfg = vc; /* a whole Pix2StructConfig: its vision part */
    const int hf = cfg && cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    const char *act = NULL;
    int rc;
    if ((!hf && (rc = vt_opt_check_keys(cfg, p2s_keys, where, st))) ||
        (rc = vt_opt_int(cfg, "hidden_size", -1, &o->d, where, st)) ||
        (rc = vt_opt_int(cfg, "patch_embed_hidden_size", -1, &o->d_patch, where, st)) ||
        (rc = vt_opt_int(cfg, "d_ff", -1, &o->d_ff, where, st)) ||
        (rc = vt_opt_int(cfg, "d_kv", 64, &o->d_kv, where, st)) ||
        (rc = vt_opt_int(cfg, "num_attention_heads", -1, &o->heads, where, st)) ||
        (rc = vt_opt_int(cfg, "num_hidden_layers", -1, &o->layers, where, st)) ||
        (rc = vt_opt_int(cfg, "seq_len", -1, &o->seq_len, where, st)) ||
        (rc = vt_opt_float(cfg, "layer_norm_eps", 1e-6, &o->eps, where, st)) ||
        (rc = vt_opt_str(cfg, "dense_act_fn", "gelu_new", &act, where, st)))
        return rc;
    /* gelu_new is the tanh approximation (transformers activations.py
     * NewGELUActivation), VT_ACT_GELU_TANH in vt_act_from_name */
    if ((o->act = vt_act_from_name(act)) < 0)
        return vt_fail(st, VTOK_EFORMAT, "%s: unsupported dense_act_fn '%s'", where, act);
    const int64_t *pos[] = {&o->d, &o->d_patch, &o->d_ff, &o->heads, &o->layers, &o->seq_len};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (*pos[i] == 0 || *pos[i] < -1 || *pos[i] > ((int64_t)1 << 24))
            return vt_fail(st, VTOK_EFORMAT, "%s: sizes must be positive", where);
    if (o->d_kv < 1 || o->d_kv > ((int64_t)1 << 24) || !(o->eps >= 0))
        return vt_fail(st, VTOK_EFORMAT, "%s: d_kv must be positive and layer_norm_eps >= 0",
                       where);
    return 0;
}

int vt_p2s_enc_load(vt_p2s_enc *m, vt_loader *ld, const char *base, const cJSON *cfg)
{
    const char *where = ld->what ? ld->what : "pix2struct encoder";
    const char *lw = ld->what ? "" : "pix2struct encoder: "; /* vt_loader_fail adds what */
    p2s_opts o;
    int rc;
    memset(m, 0, sizeof *m);
    if ((rc = read_opts(cfg, where, ld->st, &o)))
        return rc;
    const char *saved = vt_loader_base(ld, base ? base : "");
    char b[160];
    /* Pix2StructVisionEmbeddings: patch_projection = Linear(P, hidden) with
     * bias; row / column embedders nn.Embedding(seq_len, hidden). */
    vt_get_linear(ld, &m->proj, "embeddings.patch_projection", o.d, o.d_patch, 1);
    int64_t d = m->proj.w ? m->proj.n_out : o.d;
    if (d < 0) { /* projection missing: the width from the final norm, if there */
        const vt_st_tensor *t = vt_find(ld, "layernorm.weight");
        d = t && t->n_dims == 1 ? t->shape[0] : -1;
    }
    int64_t es[2] = {o.seq_len, d};
    m->row_emb = vt_get_shape(ld, "embeddings.row_embedder.weight", 2, es);
    if (m->row_emb)
        o.seq_len = es[0];
    es[0] = o.seq_len;
    m->col_emb = vt_get_shape(ld, "embeddings.column_embedder.weight", 2, es);
    m->seq_len = m->row_emb && m->col_emb ? es[0] : 0;
    int64_t n = o.layers;
    if (n < 0) /* num_hidden_layers: as many as the weights hold */
        for (n = 0; n < 4096 && vt_find(ld, NM(b, "encoder.layer.%lld.attention.query.weight",
                                                 n));)
            n++;
    if (!n) {
        vt_loader_base(ld, saved);
        return vt_loader_fail(ld, VTOK_EMISSING, "%sno encoder layers "
                              "(encoder.layer.0.attention.query.weight)", lw);
    }
    if (!(m->layers = calloc((size_t)n, sizeof *m->layers))) {
        vt_loader_base(ld, saved);
        return vt_loader_fail(ld, VTOK_ENOMEM, "out of memory");
    }
    m->n_layers = n;
    int64_t inner = o.heads > 0 ? o.heads * o.d_kv : -1, d_ff = o.d_ff;
    for (int64_t i = 0; i < n; i++) {
        vt_p2s_layer *L = &m->layers[i];
        /* Pix2StructVisionLayer: pre_attention_layer_norm, attention
         * (query / key / value / output, bias=False), pre_mlp_layer_norm,
         * mlp (Pix2StructVisionMlp: wi_0, wi_1, wo, bias=False). */
        L->ln_attn = vt_get(ld, NM(b, "encoder.layer.%lld.pre_attention_layer_norm.weight", i),
                            1, d, 0, 0, 0);
        vt_get_linear(ld, &L->q, NM(b, "encoder.layer.%lld.attention.query", i), inner, d, 0);
        if (L->q.w)
            inner = L->q.n_out;
        vt_get_linear(ld, &L->k, NM(b, "encoder.layer.%lld.attention.key", i), inner, d, 0);
        vt_get_linear(ld, &L->v, NM(b, "encoder.layer.%lld.attention.value", i), inner, d, 0);
        vt_get_linear(ld, &L->o, NM(b, "encoder.layer.%lld.attention.output", i), d, inner, 0);
        L->ln_mlp = vt_get(ld, NM(b, "encoder.layer.%lld.pre_mlp_layer_norm.weight", i), 1, d,
                           0, 0, 0);
        vt_get_linear(ld, &L->wi0, NM(b, "encoder.layer.%lld.mlp.wi_0", i), d_ff, d, 0);
        if (L->wi0.w)
            d_ff = L->wi0.n_out;
        vt_get_linear(ld, &L->wi1, NM(b, "encoder.layer.%lld.mlp.wi_1", i), d_ff, d, 0);
        vt_get_linear(ld, &L->wo, NM(b, "encoder.layer.%lld.mlp.wo", i), d, d_ff, 0);
    }
    m->ln_final = vt_get(ld, "layernorm.weight", 1, d, 0, 0, 0);
    vt_loader_base(ld, saved);
    if (ld->err || ld->n_missing)
        return ld->err; /* the missing list is the caller's vt_loader_finish */
    m->d = d;
    m->d_patch = m->proj.n_in;
    m->inner = inner;
    m->d_ff = d_ff;
    m->d_kv = o.d_kv;
    /* num_attention_heads: given, or what the weights hold at d_kv each */
    m->heads = o.heads > 0 ? o.heads : inner / o.d_kv;
    m->eps = (float)o.eps;
    m->act = (vt_act)o.act;
    if (m->heads * m->d_kv != inner)
        return vt_loader_fail(ld, VTOK_ESHAPE, "%sattention.query has %lld outputs, not "
                              "num_attention_heads x d_kv = %lld x %lld", lw,
                              (long long)inner, (long long)m->heads, (long long)m->d_kv);
    return 0;
}

void vt_p2s_enc_free(vt_p2s_enc *m)
{
    if (!m)
        return;
    free(m->layers);
    memset(m, 0, sizeof *m);
}

int64_t vt_p2s_enc_linears(vt_p2s_enc *m, vt_linear **out)
{
    int64_t n = 0;
#define ADD(l) do { if (out) out[n] = (l); n++; } while (0)
    ADD(&m->proj);
    for (int64_t i = 0; i < m->n_layers; i++) {
        vt_p2s_layer *L = &m->layers[i];
        ADD(&L->q);
        ADD(&L->k);
        ADD(&L->v);
        ADD(&L->o);
        ADD(&L->wi0);
        ADD(&L->wi1);
        ADD(&L->wo);
    }
#undef ADD
    return n;
}

int64_t vt_p2s_enc_in_width(const vt_p2s_enc *m)
{
    return 2 + m->d_patch;
}

int64_t vt_p2s_enc_out_tokens(const vt_p2s_enc *m, int64_t L)
{
    (void)m;
    return L;
}

int64_t vt_p2s_enc_out_channels(const vt_p2s_enc *m)
{
    return m->d;
}

/* ---- forward ---- */

typedef struct {
    int64_t *keep;             /* kept rows, increasing */
    float   *h, *q, *k, *v, *att, *f0, *f1;
} p2s_buffers;

/* The attention phase (q, k, v, att) and the MLP phase (f0, f1) share one
 * region; h (the normed rows) is live in both. */
static int64_t layout(const vt_p2s_enc *m, int64_t L, float *base, p2s_buffers *b)
{
    const int64_t li = vt_szmul(L, m->inner), lf = vt_szmul(L, m->d_ff);
    const int64_t att = vt_szmul(vt_szr16(li), 4), mlp = vt_szmul(vt_szr16(lf), 2);
    int64_t off = vt_szr16(vt_szmul(L, 2)); /* keep: L int64 */
    if (base) {
        b->keep = (int64_t *)(void *)base;
        b->h = base + off;
    }
    off = vt_szadd(off, vt_szr16(vt_szmul(L, m->d)));
    if (base) {
        float *r = base + off;
        b->q = r;
        b->k = r + vt_szr16(li);
        b->v = r + 2 * vt_szr16(li);
        b->att = r + 3 * vt_szr16(li);
        b->f0 = r;
        b->f1 = r + vt_szr16(lf);
    }
    return vt_szadd(off, att > mlp ? att : mlp);
}

int64_t vt_p2s_enc_work_floats(const vt_p2s_enc *m, int64_t L)
{
    p2s_buffers b;
    return layout(m, L, NULL, &b);
}

/* The embedding row of a float id as `.long()` reads it (truncation toward
 * zero; Pix2StructVisionEmbeddings.forward), or -1 where nn.Embedding would
 * raise (negative, >= seq_len, not finite). */
static int64_t embed_id(const vt_p2s_enc *m, float f)
{
    return f > -1.0f && f < (float)m->seq_len ? (int64_t)f : -1;
}

int vt_p2s_enc_check(const vt_p2s_enc *m, const float *patches, int64_t L, vtok_status *st)
{
    const int64_t w = vt_p2s_enc_in_width(m);
    for (int64_t r = 0; r < L; r++)
        for (int c = 0; c < 2; c++)
            if (embed_id(m, patches[r * w + c]) < 0)
                return vt_fail(st, VTOK_EINVAL, "pix2struct encoder: row %lld: %s id %g is not "
                               "in [0, %lld)", (long long)r, c ? "column" : "row",
                               (double)patches[r * w + c], (long long)m->seq_len);
    return 0;
}

/* Pix2StructVisionEmbeddings.forward into x [L, d]: projection + row + col. */
static void embed(const vt_p2s_enc *m, const vt_exec *e, const float *patches, int64_t L,
                  float *x)
{
    const int64_t w = vt_p2s_enc_in_width(m), d = m->d;
    vt_op_linear(e, L, patches + 2, w, &m->proj, x, 0);
    for (int64_t r = 0; r < L; r++) {
        const int64_t ri = embed_id(m, patches[r * w]), ci = embed_id(m, patches[r * w + 1]);
        float *y = x + r * d;
        if (ri >= 0) /* `embeddings + row_embeddings + col_embeddings`, left to right */
            for (int64_t c = 0; c < d; c++)
                y[c] += m->row_emb[ri * d + c];
        if (ci >= 0)
            for (int64_t c = 0; c < d; c++)
                y[c] += m->col_emb[ci * d + c];
    }
}

/* Pix2StructVisionAttention.forward on b->h into b->att (L rows of inner),
 * for the kept keys b->keep[0 .. nk). */
static void attention(const vt_p2s_enc *m, const vt_exec *e, const vt_p2s_layer *Lr, int64_t L,
                      int64_t nk, p2s_buffers *b)
{
    const int64_t in = m->inner;
    vt_op_linear(e, L, b->h, 0, &Lr->q, b->q, 0);
    if (nk == 0) {
        /* every score is finfo.min: softmax is 1 / L on every key, out = the
         * mean of V over all rows (attn_weights @ value_states) */
        vt_op_linear(e, L, b->h, 0, &Lr->v, b->v, 0);
        const float wgt = 1.0f / (float)L;
        for (int64_t c = 0; c < in; c++)
            b->att[c] = 0;
        for (int64_t j = 0; j < L; j++)
            for (int64_t c = 0; c < in; c++)
                b->att[c] += wgt * b->v[j * in + c];
        for (int64_t i = 1; i < L; i++)
            memcpy(b->att + i * in, b->att, (size_t)in * sizeof(float));
        return;
    }
    if (b->keep[nk - 1] == nk - 1) { /* a prefix (the processor's padding): K, V of it */
        vt_op_linear(e, nk, b->h, 0, &Lr->k, b->k, 0);
        vt_op_linear(e, nk, b->h, 0, &Lr->v, b->v, 0);
    } else { /* K, V of every row, then the kept ones moved up (keep[n] >= n) */
        vt_op_linear(e, L, b->h, 0, &Lr->k, b->k, 0);
        vt_op_linear(e, L, b->h, 0, &Lr->v, b->v, 0);
        for (int64_t n = 0; n < nk; n++)
            if (b->keep[n] != n) {
                memcpy(b->k + n * in, b->k + b->keep[n] * in, (size_t)in * sizeof(float));
                memcpy(b->v + n * in, b->v + b->keep[n] * in, (size_t)in * sizeof(float));
            }
    }
    /* scores = q k^T with no 1 / sqrt(d_kv) (Mesh-TensorFlow init folds it
     * into the query weights); softmax in float32 */
    vt_attn_args at = {.batch = 1, .heads = m->heads, .tq = L, .tk = nk, .dh = m->d_kv,
                       .q = b->q, .k = b->k, .v = b->v, .ldq = in, .ldk = in, .ldv = in,
                       .out = b->att, .ldo = in, .scale = 1.0f, .lowp = m->attn_lowp};
    vt_op_attention_ex(e, &at);
}

void vt_p2s_enc_forward(const vt_p2s_enc *m, const vt_exec *e, const float *patches, int64_t L,
                        float *out, float *work)
{
    const int64_t w = vt_p2s_enc_in_width(m), d = m->d;
    p2s_buffers b;
    layout(m, L, work, &b);
    /* Pix2StructVisionModel.forward: attention_mask = (sum(-1) != 0) */
    int64_t nk = 0;
    for (int64_t r = 0; r < L; r++) {
        double s = 0;
        for (int64_t c = 0; c < w; c++)
            s += patches[r * w + c];
        if (s != 0 || s != s) /* NaN != 0 holds in torch too */
            b.keep[nk++] = r;
    }
    float *x = out; /* the residual stream lives in out */
    embed(m, e, patches, L, x);
    for (int64_t i = 0; i < m->n_layers; i++) {
        if (vt_run_poll(e))
            return;
        const vt_p2s_layer *Lr = &m->layers[i];
        /* Pix2StructVisionLayer.forward: pre-norm attention, residual ... */
        vt_op_rmsnorm(e, L, d, x, Lr->ln_attn, m->eps, b.h);
        attention(m, e, Lr, L, nk, &b);
        vt_linear_opts acc = {.accumulate = 1};
        vt_op_linear_ex(e, L, b.att, 0, &Lr->o, x, 0, &acc);
        /* ... pre-norm gated MLP (Pix2StructVisionMlp.forward:
         * wo(act(wi_0 h) * wi_1 h)), residual */
        vt_op_rmsnorm(e, L, d, x, Lr->ln_mlp, m->eps, b.h);
        vt_op_linear(e, L, b.h, 0, &Lr->wi0, b.f0, 0);
        vt_op_linear(e, L, b.h, 0, &Lr->wi1, b.f1, 0);
        const int64_t nf = L * m->d_ff;
        vt_op_act(e, m->act, nf, b.f0);
        for (int64_t j = 0; j < nf; j++)
            b.f0[j] *= b.f1[j];
        vt_op_linear_ex(e, L, b.f0, 0, &Lr->wo, x, 0, &acc);
    }
    vt_op_rmsnorm(e, L, d, x, m->ln_final, m->eps, x); /* Pix2StructVisionModel.layernorm */
}
