/*
 * qformer.c - BLIP-2 / SEED Q-Former, query path only (see qformer.h).
 *
 * Memory: the hidden state lives in `out`; each sub-layer writes its
 * projections into work, adds the residual into a temporary and LayerNorms
 * it back into `out` (post-LN, BertSelfOutput/BertOutput: LN(dense(x) + h)).
 * Cross-attention keys/values are recomputed per cross layer because every
 * layer has its own key/value weights.
 */
#include "qformer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *WHAT = "qformer";

vt_qformer_defaults vt_qformer_seed_defaults(void)
{
    /* bert-base-uncased config + SEED's init_Qformer(32, 1408) */
    return (vt_qformer_defaults){.d = 768, .heads = 12, .d_ff = 3072, .enc_width = 1408,
                                 .n_query = 32, .cross_freq = 2, .eps = 1e-12, .act = "gelu",
                                 .module = "Qformer", .tokens = "query_tokens"};
}

void vt_add_inplace(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

void vt_qformer_free(vt_qformer *q)
{
    if (!q)
        return;
    free(q->layers);
    memset(q, 0, sizeof *q);
}

void vt_bert_get_norm(vt_loader *ld, vt_norm *n, const char *name, int64_t d, float eps)
{
    /* BERT checkpoints converted from TensorFlow (bert-base/large-uncased as
     * released) name LayerNorm parameters gamma / beta; transformers renames
     * "LayerNorm.gamma" -> "LayerNorm.weight", "LayerNorm.beta" ->
     * "LayerNorm.bias" at load (modeling_utils.py _fix_state_dict_key_on_load). */
    char w[512], g[512];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(g, sizeof g, "%s.gamma", name);
    const size_t len = strlen(name);
    if (len >= 9 && !strcmp(name + len - 9, "LayerNorm") && !vt_find(ld, w) && vt_find(ld, g)) {
        char b[512];
        snprintf(b, sizeof b, "%s.beta", name);
        n->w = vt_get(ld, g, 1, d, 0, 0, 0);
        n->b = vt_get(ld, b, 1, d, 0, 0, 0);
        n->eps = eps;
        return;
    }
    vt_get_norm(ld, n, name, d, eps);
}

void vt_bert_attn_load(vt_loader *ld, vt_bert_attn *a, const char *base, int64_t d,
                       int64_t kv_in, float eps)
{
    char b[512];
#define N(s) (snprintf(b, sizeof b, "%s.%s", base, s), b)
    vt_get_linear(ld, &a->q, N("self.query"), d, d, 1);
    vt_get_linear(ld, &a->k, N("self.key"), d, kv_in, 1);
    vt_get_linear(ld, &a->v, N("self.value"), d, kv_in, 1);
    vt_get_linear(ld, &a->o, N("output.dense"), d, d, 1);
    vt_bert_get_norm(ld, &a->ln, N("output.LayerNorm"), d, eps);
#undef N
}

static int read_config(vt_qformer *q, const cJSON *cfg, const vt_qformer_defaults *def,
                       double *eps, const char **module, const char **tokens,
                       const char **in_norm, double *in_eps, vtok_status *st)
{
    const char *act = NULL;
    int rc;
    if ((rc = vt_opt_int(cfg, "hidden_size", def->d, &q->d, WHAT, st)) ||
        (rc = vt_opt_int(cfg, "num_attention_heads", def->heads, &q->n_heads, WHAT, st)) ||
        (rc = vt_opt_int(cfg, "intermediate_size", def->d_ff, &q->d_ff, WHAT, st)) ||
        (rc = vt_opt_int(cfg, "encoder_width", def->enc_width, &q->enc_width, WHAT, st)) ||
        (rc = vt_opt_int(cfg, "cross_attention_freq", def->cross_freq, &q->cross_freq, WHAT,
                          st)) ||
        (rc = vt_opt_int(cfg, "num_query_tokens", def->n_query, &q->n_query, WHAT, st)) ||
        /* init_Qformer: "if num_query_token != 32: num_hidden_layers = 4" */
        (rc = vt_opt_int(cfg, "num_hidden_layers", q->n_query == 32 ? 12 : 4,
                          &q->n_layers, WHAT, st)) ||
        /* BertModel.forward: is_casual = query_embeds.shape[1] == 32 */
        (rc = vt_opt_bool(cfg, "causal", q->n_query == 32, &q->causal, WHAT, st)) ||
        (rc = vt_opt_float(cfg, "layer_norm_eps", def->eps, eps, WHAT, st)) ||
        (rc = vt_opt_str(cfg, "hidden_act", def->act, &act, WHAT, st)) ||
        (rc = vt_opt_str(cfg, "module", def->module, module, WHAT, st)) ||
        (rc = vt_opt_str(cfg, "query_tokens_name", def->tokens, tokens, WHAT, st)) ||
        (rc = vt_opt_str(cfg, "input_norm", NULL, in_norm, WHAT, st)) ||
        (rc = vt_opt_float(cfg, "input_norm_eps", 1e-5, in_eps, WHAT, st)))
        return rc;
    int a = vt_act_from_name(act);
    if (a < 0)
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s config: unsupported hidden_act '%s'", WHAT,
                       act);
    q->act = (vt_act)a;
    if (q->d <= 0 || q->n_heads <= 0 || q->d % q->n_heads || q->d_ff <= 0 ||
        q->enc_width <= 0 || q->n_query <= 0 || q->n_layers <= 0 || q->cross_freq <= 0 ||
        q->n_layers > 1024 || !(*eps > 0) || !(*in_eps > 0))
        return vt_fail(st, VTOK_EINVAL,
                       "%s config: bad sizes (hidden %lld, heads %lld, intermediate %lld, "
                       "encoder_width %lld, queries %lld, layers %lld, cross freq %lld, "
                       "eps %g)",
                       WHAT, (long long)q->d, (long long)q->n_heads, (long long)q->d_ff,
                       (long long)q->enc_width, (long long)q->n_query, (long long)q->n_layers,
                       (long long)q->cross_freq, *eps);
    return 0;
}

int vt_qformer_load_ex(vt_qformer *q, vt_loader *ld, const cJSON *cfg,
                       const vt_qformer_defaults *def)
{
    memset(q, 0, sizeof *q);
    double eps, in_eps;
    const char *module, *tokens, *in_norm;
    int rc = read_config(q, cfg, def, &eps, &module, &tokens, &in_norm, &in_eps, ld->st);
    if (rc)
        return rc;
    q->layers = calloc((size_t)q->n_layers, sizeof *q->layers);
    if (!q->layers)
        return vt_loader_fail(ld, VTOK_ENOMEM, "%s: out of memory", WHAT);

    int64_t d = q->d;
    float e = (float)eps;
    q->query = vt_get(ld, tokens, 3, 1, q->n_query, d, 0);
    char b[512];
    snprintf(b, sizeof b, "%s.bert.embeddings.LayerNorm", module);
    vt_get_norm(ld, &q->ln_emb, b, d, e);
    if (in_norm)
        vt_get_norm(ld, &q->ln_in, in_norm, q->enc_width, (float)in_eps);
    for (int64_t i = 0; i < q->n_layers; i++) {
        vt_qformer_layer *L = &q->layers[i];
        char base[256];
        snprintf(base, sizeof base, "%s.bert.encoder.layer.%lld", module, (long long)i);
#define N(s) (snprintf(b, sizeof b, "%s.%s", base, s), b)
        vt_bert_attn_load(ld, &L->self_attn, N("attention"), d, d, e);
        /* BertLayer: crossattention iff layer_num % cross_attention_freq == 0 */
        L->has_cross = i % q->cross_freq == 0;
        if (L->has_cross)
            vt_bert_attn_load(ld, &L->cross, N("crossattention"), d, q->enc_width, e);
        vt_get_linear(ld, &L->fc1, N("intermediate_query.dense"), q->d_ff, d, 1);
        vt_get_linear(ld, &L->fc2, N("output_query.dense"), d, q->d_ff, 1);
        vt_get_norm(ld, &L->ln_ffn, N("output_query.LayerNorm"), d, e);
#undef N
    }
    return ld->err;
}

int vt_qformer_load(vt_qformer *q, vt_loader *ld, const cJSON *cfg)
{
    vt_qformer_defaults def = vt_qformer_seed_defaults();
    return vt_qformer_load_ex(q, ld, cfg, &def);
}

/* ---- forward ---- */

int64_t vt_qformer_max_tokens(const vt_qformer *q, int64_t t_in)
{
    return q->n_query > t_in ? q->n_query : t_in;
}

int64_t vt_qformer_work_floats(const vt_qformer *q, int64_t n, int64_t t_in)
{
    /* saturating: a size past int64_t is refused by the planner */
    int64_t rows = vt_szmul(n, q->n_query), kv_rows = vt_szmul(n, vt_qformer_max_tokens(q, t_in));
    int64_t f = vt_szadd(vt_szmul3(3, rows, q->d),              /* q, ctx, tmp  */
                         vt_szadd(vt_szmul3(2, kv_rows, q->d),  /* k, v         */
                                  vt_szmul(rows, q->d_ff)));    /* FFN hidden   */
    if (q->ln_in.w)
        f = vt_szadd(f, vt_szmul3(n, t_in, q->enc_width)); /* normalised image embeds */
    return f;
}

void vt_bert_attn_forward(const vt_exec *e, const vt_bert_attn *a, int64_t heads, float *h,
                          int64_t n, int64_t tq, const float *kv, int64_t kv_w, int64_t t_kv,
                          int causal, const vt_bert_attn_bufs *w)
{
    int64_t d = a->q.n_out, rows = n * tq, dh = d / heads;
    vt_op_linear(e, rows, h, d, &a->q, w->q, d);
    vt_op_linear(e, n * t_kv, kv, kv_w, &a->k, w->k, d);
    vt_op_linear(e, n * t_kv, kv, kv_w, &a->v, w->v, d);
    vt_attn_args at = {.batch = n, .heads = heads, .tq = tq, .tk = t_kv, .dh = dh, .q = w->q,
                       .k = w->k, .v = w->v, .ldq = d, .ldk = d, .ldv = d, .out = w->ctx,
                       .ldo = d, .scale = (float)(1.0 / sqrt((double)dh)), .causal = causal};
    vt_op_attention_ex(e, &at);
    vt_op_linear(e, rows, w->ctx, d, &a->o, w->tmp, d);
    vt_add_inplace(w->tmp, h, rows * d);
    vt_op_layernorm(e, rows, d, w->tmp, &a->ln, h);
}

/* h = LN(h + o(attn(q(h), k(kv), v(kv)))) over n items; kv has t_kv rows each. */
static void attn_block(const vt_qformer *q, const vt_exec *e, const vt_bert_attn *a, float *h,
                       const float *kv, int64_t kv_w, int64_t n, int64_t t_kv, int causal,
                       float *bq, float *bk, float *bv, float *ctx, float *tmp)
{
    const vt_bert_attn_bufs w = {.q = bq, .k = bk, .v = bv, .ctx = ctx, .tmp = tmp};
    vt_bert_attn_forward(e, a, q->n_heads, h, n, q->n_query, kv, kv_w, t_kv, causal, &w);
}

void vt_qformer_forward(const vt_qformer *q, const vt_exec *e, const float *x, int64_t n,
                        int64_t t_in, float *out, float *work)
{
    int64_t d = q->d, rows = n * q->n_query, kv_rows = n * vt_qformer_max_tokens(q, t_in);
    float *bq = work, *ctx = bq + rows * d, *tmp = ctx + rows * d;
    float *bk = tmp + rows * d, *bv = bk + kv_rows * d, *ff = bv + kv_rows * d;
    float *xin = ff + rows * q->d_ff;
    const float *img = x;
    if (q->ln_in.w) {
        vt_op_layernorm(e, n * t_in, q->enc_width, x, &q->ln_in, xin);
        img = xin;
    }
    /* embeddings: LayerNorm of the learned queries, same for every item */
    for (int64_t b = 0; b < n; b++)
        memcpy(out + b * q->n_query * d, q->query, (size_t)(q->n_query * d) * sizeof(float));
    vt_op_layernorm(e, rows, d, out, &q->ln_emb, out);

    for (int64_t i = 0; i < q->n_layers; i++) {
        const vt_qformer_layer *L = &q->layers[i];
        attn_block(q, e, &L->self_attn, out, out, d, n, q->n_query, q->causal, bq, bk, bv, ctx,
                   tmp);
        if (L->has_cross)
            attn_block(q, e, &L->cross, out, img, q->enc_width, n, t_in, 0, bq, bk, bv, ctx,
                       tmp);
        vt_op_linear(e, rows, out, d, &L->fc1, ff, q->d_ff);
        vt_op_act(e, q->act, rows * q->d_ff, ff);
        vt_op_linear(e, rows, ff, q->d_ff, &L->fc2, tmp, d);
        vt_add_inplace(tmp, out, rows * d);
        vt_op_layernorm(e, rows, d, tmp, &L->ln_ffn, out);
    }
}

int64_t vt_qformer_linears(vt_qformer *q, vt_linear **out, int64_t cap)
{
    int64_t k = 0;
#define PUT(l) do { if (k < cap) out[k] = (l); k++; } while (0)
    for (int64_t i = 0; i < q->n_layers; i++) {
        vt_qformer_layer *L = &q->layers[i];
        vt_bert_attn *as[2] = {&L->self_attn, L->has_cross ? &L->cross : NULL};
        for (int j = 0; j < 2; j++)
            if (as[j]) {
                PUT(&as[j]->q);
                PUT(&as[j]->k);
                PUT(&as[j]->v);
                PUT(&as[j]->o);
            }
        PUT(&L->fc1);
        PUT(&L->fc2);
    }
#undef PUT
    return k;
}
