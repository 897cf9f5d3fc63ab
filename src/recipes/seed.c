/*
 * seed.c - the SEED (v1) tokenizer and de-tokenizer as a connector
 * (AILab-CVC/SEED v1 models/visual_tokenizer.py, SEEDVisualTokenizer):
 *   tokenize    x = visual_encoder(img)      EVA ViT-g, 39 blocks, every token [n, 257, 1408]
 *               x = ln_vision(x)             LayerNorm(1408), eps 1e-5
 *               q = Qformer(query_tokens, x) causal Q-Former             [n, 32, 768]
 *               z = encode_task_layer(q)     Linear, Tanh, Linear        [n, 32, 32]
 *               ids = argmin_k |z - c_k|^2   VectorQuantizer2            [n, 32] in [0, 8192)
 *   detokenize  ids -> codebook rows -> decode_task_layer + pos_embed_text -> 4 blocks_text
 *               -> Reverse Q-Former -> distill_text_proj                  [n, 77, 768]
 * The blocks live in src/connectors/{qformer,vq,seed_detok}.c. The run's
 * output embeddings are the quantised vectors codebook[ids] (z_q); the ids
 * themselves come out through vtok_recipe_get_ids.
 *
 * Options ("connector" object): encoder ("vit"), file, prefix (root
 * candidates: "model." for the released {"model": state_dict} files),
 * ln_vision {name, eps}, qformer / vq / detok (the block configs of
 * qformer.h, vq.h, seed_detok.h; detok false = no de-tokenizer). Every
 * missing tensor of every block is named in one message (SEED loads with
 * strict=False). As released, the connector's tensors are the union of
 * pretrained/causal_qformer.pth (ln_vision, query_tokens, Qformer) and
 * pretrained/seed_tokenizer.pth (codebook, encode/decode layers, blocks_text,
 * Reverse_Qformer, distill_text_proj), both {"model": state_dict}: the
 * shipped recipe lists that pair as one candidate (recipes/seed.json).
 * Stages: ln_vision [n, T, 1408], qformer [n, 32, 768], z [n, 32, e],
 * quant [n, 32, e]; de-tokenizer: generation_embeddings [n, 77, 768].
 */
#include "recipe.h"

#include "../connectors/qformer.h"
#include "../connectors/seed_detok.h"
#include "../connectors/vq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int           enc;
    const char   *ln_name;   /* points into the recipe JSON */
    double        ln_eps;
    int           has_detok;
    vt_norm       ln;
    vt_qformer    qf;
    vt_vq         vq;
    vt_seed_detok dt;
} seed_state;

static void seed_unload(void *state)
{
    seed_state *s = state;
    vt_qformer_free(&s->qf);
    vt_vq_free(&s->vq);
    vt_seed_detok_free(&s->dt);
    memset(&s->ln, 0, sizeof s->ln);
}

static int seed_setup(vt_recipe *r, const cJSON *cfg, void *state, const cJSON **weights,
                      vtok_status *st)
{
    static const char *const keys[] = {"type", "encoder", "file", "prefix", "ln_vision",
                                       "qformer", "vq", "detok", NULL};
    static const char *const lkeys[] = {"name", "eps", NULL};
    seed_state *s = state;
    char where[128];
    snprintf(where, sizeof where, "recipe %s: connector", vt_recipe_name(r));
    const cJSON *lj = cJSON_GetObjectItemCaseSensitive(cfg, "ln_vision");
    const cJSON *qj = cJSON_GetObjectItemCaseSensitive(cfg, "qformer");
    const cJSON *vj = cJSON_GetObjectItemCaseSensitive(cfg, "vq");
    const cJSON *dj = cJSON_GetObjectItemCaseSensitive(cfg, "detok");
    const char *enc;
    int rc;
    int64_t last = -1;
    (void)weights; /* "file" and "prefix" are the connector's own keys */
    if ((rc = vt_opt_check_keys(cfg, keys, where, st)) ||
        (rc = vt_opt_check_keys(lj, lkeys, where, st)) ||
        (rc = vt_opt_str(cfg, "encoder", "vit", &enc, where, st)) ||
        (rc = vt_opt_str(lj, "name", "ln_vision", &s->ln_name, where, st)) ||
        (rc = vt_opt_float(lj, "eps", 1e-5, &s->ln_eps, where, st)))
        return rc;
    if ((qj && !cJSON_IsObject(qj)) || (vj && !cJSON_IsObject(vj)) ||
        (dj && !cJSON_IsObject(dj) && !cJSON_IsFalse(dj)))
        return vt_fail(st, VTOK_EFORMAT,
                       "%s: 'qformer' and 'vq' must be objects, 'detok' an object or false", where);
    if (qj && cJSON_GetObjectItemCaseSensitive(qj, "input_norm"))
        return vt_fail(st, VTOK_EFORMAT, "%s: qformer: use 'ln_vision', not 'input_norm'", where);
    s->has_detok = !cJSON_IsFalse(dj);
    if ((s->enc = vt_recipe_encoder(r, enc, where, st)) < 0)
        return s->enc;
    return vt_recipe_request(r, s->enc, &last, 1, where, st);
}

/* Every block reads through the one loader, so one message names every
 * missing tensor of every block (SEED loads with strict=False). */
static int seed_load(vt_recipe *r, const cJSON *cfg, void *state, vt_loader *ld)
{
    seed_state *s = state;
    int64_t d_img = vt_recipe_encoder_width(r, s->enc);
    vt_get_norm(ld, &s->ln, s->ln_name, d_img, (float)s->ln_eps);
    int rc;
    if ((rc = vt_qformer_load(&s->qf, ld, cJSON_GetObjectItemCaseSensitive(cfg, "qformer"))) ||
        (rc = vt_vq_load(&s->vq, ld, cJSON_GetObjectItemCaseSensitive(cfg, "vq"))))
        return rc;
    if (s->has_detok &&
        (rc = vt_seed_detok_load(&s->dt, ld, cJSON_GetObjectItemCaseSensitive(cfg, "detok"))))
        return rc;
    if (s->qf.enc_width != d_img)
        return vt_loader_fail(ld, VTOK_ESHAPE, "the Q-Former reads %lld features, the encoder "
                              "gives %lld", (long long)s->qf.enc_width, (long long)d_img);
    if (s->vq.d != s->qf.d)
        return vt_loader_fail(ld, VTOK_ESHAPE, "the encode layer takes %lld features, the "
                              "Q-Former gives %lld", (long long)s->vq.d, (long long)s->qf.d);
    return ld->err;
}

/* Linears for the recipe's dtype, each once; the codebook (read as plain
 * floats by the quantiser and the de-tokenizer) is not a Linear. */
static int64_t seed_linears(void *state, vt_linear **l)
{
    seed_state *s = state;
    int64_t cap = l ? INT64_MAX : 0; /* the runtime sized l from the count */
    int64_t k = vt_qformer_linears(&s->qf, l, cap);
    k += vt_vq_linears(&s->vq, l ? l + k : NULL, cap);
    if (s->has_detok)
        k += vt_seed_detok_linears(&s->dt, l ? l + k : NULL, cap);
    return k;
}

static int seed_plan(const void *state, const vt_enc_feats *in, int64_t n, vt_plan *p,
                     vtok_status *st)
{
    const seed_state *s = state;
    const vt_enc_feats *f = &in[s->enc];
    int64_t nq = s->qf.n_query, t = f->T;
    (void)st;
    vt_stage_set(&p->stages[p->n_stages++], "ln_vision", 3, n, t, f->d, 0);
    vt_stage_set(&p->stages[p->n_stages++], "qformer", 3, n, nq, s->qf.d, 0);
    vt_stage_set(&p->stages[p->n_stages++], "z", 3, n, nq, s->vq.e_dim, 0);
    vt_stage_set(&p->stages[p->n_stages++], "quant", 3, n, nq, s->vq.e_dim, 0);
    int64_t wq = vt_qformer_work_floats(&s->qf, n, t), wv = vt_vq_work_floats(&s->vq, n, nq);
    p->work_floats = wq > wv ? wq : wv;
    p->max_tokens = vt_qformer_max_tokens(&s->qf, t);
    p->lp_rows = n * (t > nq ? t : nq);
    p->ids_per_image = nq;
    p->vocab = s->vq.n_embed;
    return 0;
}

static void seed_forward(const void *state, const vt_exec *e, const vt_enc_feats *in, int64_t n,
                         vt_stage *S, int64_t *ids, float *work)
{
    const seed_state *s = state;
    const vt_enc_feats *f = &in[s->enc];
    vt_stage *ln = &S[0], *qf = &S[1], *z = &S[2], *quant = &S[3];
    int64_t t = f->T, nq = s->qf.n_query;
    vtok_status ignore = {0};
    /* ln_vision over every token (CLS kept), as visual_tokenizer.py */
    vt_op_layernorm(e, n * t, f->d, f->hidden, &s->ln, ln->data);
    vt_qformer_forward(&s->qf, e, ln->data, n, t, qf->data, work);
    vt_vq_forward(&s->vq, e, qf->data, n, nq, ids, z->data, work);
    /* ids come from the argmin, so they are in range: the lookup cannot fail */
    vt_vq_lookup(s->vq.codebook, s->vq.n_embed, s->vq.e_dim, ids, n * nq, quant->data, &ignore);
}

static int seed_detok_plan(const void *state, int64_t n, int64_t t, vt_plan *p, vtok_status *st)
{
    const seed_state *s = state;
    if (!s->has_detok)
        return vt_fail(st, VTOK_EUNSUPPORTED, "this recipe loads no de-tokenizer (detok: false)");
    if (t != s->dt.n_tok)
        return vt_fail(st, VTOK_ESHAPE, "ids have %lld per image, the de-tokenizer takes %lld",
                       (long long)t, (long long)s->dt.n_tok);
    vt_stage_set(&p->stages[p->n_stages++], "generation_embeddings", 3, n, s->dt.rq.n_query,
                 s->dt.proj_dim, 0);
    p->work_floats = vt_seed_detok_work_floats(&s->dt, n, t);
    p->max_tokens = vt_seed_detok_max_tokens(&s->dt, t);
    p->lp_rows = n * (t > s->dt.rq.n_query ? t : s->dt.rq.n_query);
    return 0;
}

static int seed_detok(const void *state, const vt_exec *e, const int64_t *ids, int64_t n,
                      int64_t t, vt_stage *S, float *work, vtok_status *st)
{
    const seed_state *s = state;
    return vt_seed_detok_forward(&s->dt, e, ids, n, t, S[0].data, work, st);
}

const vt_connector_kind vt_connector_seed = {
    .name = "seed",
    .state_size = sizeof(seed_state),
    .setup = seed_setup,
    .load = seed_load,
    .unload = seed_unload,
    .linears = seed_linears,
    .plan = seed_plan,
    .forward = seed_forward,
    .detok_plan = seed_detok_plan,
    .detok = seed_detok,
};
