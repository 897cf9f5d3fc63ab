/*
 * seed_detok.c - SEED de-tokenizer (see seed_detok.h).
 *
 * The timm blocks are written out here rather than borrowed from the ViT
 * forward (src/models/vit.c): that forward owns patch embedding, pooling and
 * hidden-state outputs, none of which apply to 32 code tokens.
 */
#include "seed_detok.h"

#include "vq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *WHAT = "seed_detok";

void vt_seed_detok_free(vt_seed_detok *s)
{
    if (!s)
        return;
    free(s->blocks);
    vt_qformer_free(&s->rq);
    memset(s, 0, sizeof *s);
}

int vt_seed_detok_load(vt_seed_detok *s, vt_loader *ld, const cJSON *cfg)
{
    memset(s, 0, sizeof *s);
    vtok_status *st = ld->st;
    const char *cb, *dec, *pos, *blk, *proj;
    double ratio, eps;
    int rc;
    if ((rc = vt_opt_int(cfg, "hidden_size", 768, &s->d, WHAT, st)) ||
        (rc = vt_opt_int(cfg, "codebook_embed_dim", 32, &s->e_dim, WHAT, st)) ||
        (rc = vt_opt_int(cfg, "n_embed", 8192, &s->n_embed, WHAT, st)) ||
        (rc = vt_opt_int(cfg, "num_query_tokens", 32, &s->n_tok, WHAT, st)) ||
        (rc = vt_opt_int(cfg, "blocks_depth", 4, &s->depth, WHAT, st)) ||
        (rc = vt_opt_int(cfg, "blocks_num_heads", 12, &s->heads, WHAT, st)) ||
        (rc = vt_opt_float(cfg, "blocks_mlp_ratio", 4.0, &ratio, WHAT, st)) ||
        (rc = vt_opt_float(cfg, "blocks_eps", 1e-6, &eps, WHAT, st)) ||
        (rc = vt_opt_int(cfg, "proj_dim", 768, &s->proj_dim, WHAT, st)) ||
        (rc = vt_opt_str(cfg, "codebook", "quantize.embedding.weight", &cb, WHAT, st)) ||
        (rc = vt_opt_str(cfg, "decode_layer", "decode_task_layer", &dec, WHAT, st)) ||
        (rc = vt_opt_str(cfg, "pos_embed", "pos_embed_text", &pos, WHAT, st)) ||
        (rc = vt_opt_str(cfg, "blocks", "blocks_text", &blk, WHAT, st)) ||
        (rc = vt_opt_str(cfg, "proj", "distill_text_proj", &proj, WHAT, st)))
        return rc;
    /* timm Block: mlp_hidden_dim = int(dim * mlp_ratio) */
    s->d_mlp = (int64_t)((double)s->d * ratio);
    if (s->d <= 0 || s->e_dim <= 0 || s->n_embed <= 0 || s->n_tok <= 0 || s->depth < 0 ||
        s->depth > 1024 || s->heads <= 0 || s->d % s->heads || s->d_mlp <= 0 ||
        s->proj_dim <= 0 || !(eps > 0))
        return vt_fail(st, VTOK_EINVAL,
                       "%s config: bad sizes (hidden %lld, code dim %lld, codes %lld, tokens "
                       "%lld, depth %lld, heads %lld, mlp %lld, proj %lld)",
                       WHAT, (long long)s->d, (long long)s->e_dim, (long long)s->n_embed,
                       (long long)s->n_tok, (long long)s->depth, (long long)s->heads,
                       (long long)s->d_mlp, (long long)s->proj_dim);

    /* The reverse Q-Former first: its own config errors come before tensors. */
    vt_qformer_defaults def = vt_qformer_seed_defaults();
    def.d = s->d;
    def.heads = s->heads;
    def.d_ff = 4 * s->d;
    def.enc_width = s->d;
    def.n_query = 77;
    def.module = "Reverse_Qformer";
    def.tokens = "reverse_tokens";
    const cJSON *rcfg = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "reverse_qformer") : NULL;
    if (rcfg && !cJSON_IsObject(rcfg) && !cJSON_IsNull(rcfg))
        return vt_fail(st, VTOK_EFORMAT, "%s config: 'reverse_qformer' must be an object", WHAT);
    if ((rc = vt_qformer_load_ex(&s->rq, ld, cJSON_IsObject(rcfg) ? rcfg : NULL, &def)))
        return rc;
    if (s->rq.enc_width != s->d)
        return vt_fail(st, VTOK_EINVAL,
                       "%s config: reverse_qformer encoder_width %lld must equal hidden_size %lld",
                       WHAT, (long long)s->rq.enc_width, (long long)s->d);

    s->blocks = calloc((size_t)(s->depth ? s->depth : 1), sizeof *s->blocks);
    if (!s->blocks)
        return vt_loader_fail(ld, VTOK_ENOMEM, "%s: out of memory", WHAT);
    int64_t d = s->d;
    char b[512];
    s->codebook = vt_get(ld, cb, 2, s->n_embed, s->e_dim, 0, 0);
    snprintf(b, sizeof b, "%s.0", dec);
    vt_get_linear(ld, &s->dec1, b, s->e_dim, s->e_dim, 1);
    snprintf(b, sizeof b, "%s.2", dec);
    vt_get_linear(ld, &s->dec2, b, d, s->e_dim, 1);
    s->pos = vt_get(ld, pos, 3, 1, s->n_tok, d, 0);
    for (int64_t i = 0; i < s->depth; i++) {
        vt_tblock *B = &s->blocks[i];
        char base[256];
        snprintf(base, sizeof base, "%s.%lld", blk, (long long)i);
#define N(x) (snprintf(b, sizeof b, "%s.%s", base, x), b)
        vt_get_norm(ld, &B->ln1, N("norm1"), d, (float)eps);
        vt_get_linear(ld, &B->qkv, N("attn.qkv"), 3 * d, d, 1);
        vt_get_linear(ld, &B->proj, N("attn.proj"), d, d, 1);
        vt_get_norm(ld, &B->ln2, N("norm2"), d, (float)eps);
        vt_get_linear(ld, &B->fc1, N("mlp.fc1"), s->d_mlp, d, 1);
        vt_get_linear(ld, &B->fc2, N("mlp.fc2"), d, s->d_mlp, 1);
#undef N
    }
    /* distill_text_proj: Linear(Reverse Q-Former hidden, proj_dim) */
    vt_get_linear(ld, &s->proj, proj, s->proj_dim, s->rq.d, 1);
    return ld->err;
}

/* ---- forward ---- */

int64_t vt_seed_detok_max_tokens(const vt_seed_detok *s, int64_t t)
{
    int64_t m = vt_qformer_max_tokens(&s->rq, t);
    return m > t ? m : t;
}

int64_t vt_seed_detok_work_floats(const vt_seed_detok *s, int64_t n, int64_t t)
{
    /* saturating: a size past int64_t is refused by the planner */
    int64_t rows = vt_szmul(n, t);
    int64_t blocks = vt_szmul(rows, vt_szadd(vt_szmul(5, s->d) /* ln, qkv, ctx */,
                                             s->d_mlp /* mlp */));
    int64_t rq = vt_szadd(vt_szmul3(n, s->rq.n_query, s->rq.d),
                          vt_qformer_work_floats(&s->rq, n, t));
    int64_t codes = vt_szmul3(2, rows, s->e_dim);
    return vt_szadd(vt_szadd(vt_szmul(rows, s->d) /* u */, blocks > rq ? blocks : rq), codes);
}

/* timm Block: x += proj(attn(norm1 x)); x += fc2(gelu(fc1(norm2 x))) */
static void tblock_forward(const vt_seed_detok *s, const vt_exec *e, const vt_tblock *B,
                           float *x, int64_t n, int64_t t, float *work)
{
    int64_t d = s->d, rows = n * t, dh = d / s->heads;
    float *ln = work, *qkv = ln + rows * d, *ctx = qkv + rows * 3 * d, *mlp = ctx + rows * d;
    vt_op_layernorm(e, rows, d, x, &B->ln1, ln);
    vt_op_linear(e, rows, ln, d, &B->qkv, qkv, 3 * d);
    /* qkv.reshape(B, N, 3, H, dh): q, k, v are column blocks of 3d-wide rows */
    vt_op_attention(e, n, t, s->heads, dh, qkv, qkv + d, qkv + 2 * d, 3 * d,
                    (float)(1.0 / sqrt((double)dh)), ctx);
    vt_op_linear(e, rows, ctx, d, &B->proj, ln, d);
    vt_add_inplace(x, ln, rows * d);
    vt_op_layernorm(e, rows, d, x, &B->ln2, ln);
    vt_op_linear(e, rows, ln, d, &B->fc1, mlp, s->d_mlp);
    vt_op_act(e, VT_ACT_GELU_ERF, rows * s->d_mlp, mlp);
    vt_op_linear(e, rows, mlp, s->d_mlp, &B->fc2, ln, d);
    vt_add_inplace(x, ln, rows * d);
}

int vt_seed_detok_forward(const vt_seed_detok *s, const vt_exec *e, const int64_t *ids,
                          int64_t n, int64_t t, float *out, float *work, vtok_status *st)
{
    if (t != s->n_tok)
        return vt_fail(st, VTOK_ESHAPE, "%s: %lld tokens per item, expected %lld", WHAT,
                       (long long)t, (long long)s->n_tok);
    int64_t rows = n * t, d = s->d;
    float *u = work, *tmp = u + rows * d;
    float *codes = work + vt_seed_detok_work_floats(s, n, t) - 2 * rows * s->e_dim;
    float *h1 = codes + rows * s->e_dim;
    int rc = vt_vq_lookup(s->codebook, s->n_embed, s->e_dim, ids, rows, codes, st);
    if (rc)
        return rc;
    vt_op_linear(e, rows, codes, s->e_dim, &s->dec1, h1, s->e_dim);
    vt_op_act(e, VT_ACT_TANH, rows * s->e_dim, h1);
    vt_op_linear(e, rows, h1, s->e_dim, &s->dec2, u, d);
    for (int64_t b = 0; b < n; b++)
        vt_add_inplace(u + b * t * d, s->pos, t * d);
    for (int64_t i = 0; i < s->depth; i++)
        tblock_forward(s, e, &s->blocks[i], u, n, t, tmp);
    int64_t rq_rows = n * s->rq.n_query;
    float *r = tmp, *rw = r + rq_rows * s->rq.d;
    vt_qformer_forward(&s->rq, e, u, n, t, r, rw);
    vt_op_linear(e, rq_rows, r, s->rq.d, &s->proj, out, s->proj_dim);
    return 0;
}

int64_t vt_seed_detok_linears(vt_seed_detok *s, vt_linear **out, int64_t cap)
{
    int64_t k = 0;
#define PUT(l) do { if (k < cap) out[k] = (l); k++; } while (0)
    PUT(&s->dec1);
    PUT(&s->dec2);
    PUT(&s->proj);
    for (int64_t i = 0; i < s->depth; i++) {
        PUT(&s->blocks[i].qkv);
        PUT(&s->blocks[i].proj);
        PUT(&s->blocks[i].fc1);
        PUT(&s->blocks[i].fc2);
    }
#undef PUT
    return k + vt_qformer_linears(&s->rq, k < cap ? out + k : NULL, k < cap ? cap - k : 0);
}
