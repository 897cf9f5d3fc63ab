/*
 * bert.c - BertModel in float32 (see bert.h).
 *
 * Rules and their sources (transformers models/bert/modeling_bert.py and
 * configuration_bert.py; functions named because line numbers move):
 *
 * - BertConfig.__init__ defaults: vocab_size 30522, hidden_size 768,
 *   num_hidden_layers 12, num_attention_heads 12, intermediate_size 3072,
 *   hidden_act "gelu", max_position_embeddings 512, type_vocab_size 2,
 *   layer_norm_eps 1e-12, position_embedding_type "absolute".
 * - BertEmbeddings.forward: embeddings = word_embeddings(input_ids) +
 *   token_type_embeddings(token_type_ids), then += position_embeddings(
 *   position_ids) (that order of float additions), then LayerNorm(eps);
 *   dropout is the identity at inference. position_ids default to
 *   arange(T) (the registered buffer), token_type_ids to zeros.
 * - BertSelfAttention: softmax(q k^T / sqrt(head_size)) v per head, with the
 *   extended attention mask all zeros for one unpadded sequence;
 *   BertSelfOutput: LayerNorm(dense(ctx) + input) (vt_bert_attn_forward,
 *   shared with the Q-Former).
 * - BertIntermediate: ACT2FN[hidden_act](dense(h)) ("gelu" is the exact erf
 *   form, "gelu_new" the tanh one); BertOutput: LayerNorm(dense(x) + h).
 * - BertPooler: tanh(dense(hidden_states[:, 0])).
 * - Checkpoints converted from TensorFlow name LayerNorm parameters
 *   gamma / beta (vt_bert_get_norm), as bert-base/large-uncased still do.
 */
#include "bert.h"

#include "pack.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIG_BYTES (1 << 20)

/* ---- config ---- */

static int read_config(vt_bert_config *c, const cJSON *cfg, vtok_status *st)
{
    const char *W = "config.json";
    const char *mt = NULL, *act = NULL, *pet = NULL;
    memset(c, 0, sizeof *c);
    if (vt_opt_str(cfg, "model_type", NULL, &mt, W, st))
        return VTOK_EFORMAT;
    /* A BERT checkpoint says "bert"; a folder without model_type is taken
     * as BERT (the caller asked for a BERT encoder). */
    if (mt && strcmp(mt, "bert"))
        return vt_fail(st, VTOK_EUNSUPPORTED,
                       "%s: model_type '%s' is not a BERT encoder (expected \"bert\")", W, mt);
    if (vt_opt_int(cfg, "vocab_size", 30522, &c->vocab, W, st) ||
        vt_opt_int(cfg, "hidden_size", 768, &c->hidden, W, st) ||
        vt_opt_int(cfg, "num_hidden_layers", 12, &c->n_layers, W, st) ||
        vt_opt_int(cfg, "num_attention_heads", 12, &c->heads, W, st) ||
        vt_opt_int(cfg, "intermediate_size", 3072, &c->inter, W, st) ||
        vt_opt_int(cfg, "max_position_embeddings", 512, &c->max_pos, W, st) ||
        vt_opt_int(cfg, "type_vocab_size", 2, &c->type_vocab, W, st) ||
        vt_opt_float(cfg, "layer_norm_eps", 1e-12, &c->eps, W, st) ||
        vt_opt_str(cfg, "hidden_act", "gelu", &act, W, st) ||
        vt_opt_str(cfg, "position_embedding_type", "absolute", &pet, W, st))
        return VTOK_EFORMAT;
    if (strcmp(pet, "absolute"))
        return vt_fail(st, VTOK_EUNSUPPORTED,
                       "%s: position_embedding_type '%s' is not supported (absolute)", W, pet);
    const int a = vt_act_from_name(act);
    if (a < 0)
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: hidden_act '%s' is not supported", W, act);
    c->act = (vt_act)a;
    if (c->vocab <= 0 || c->hidden <= 0 || c->n_layers <= 0 || c->heads <= 0 || c->inter <= 0 ||
        c->max_pos <= 0 || c->type_vocab <= 0 || c->n_layers > 100000 ||
        c->hidden % c->heads)
        return vt_fail(st, VTOK_EINVAL,
                       "%s: bad sizes (vocab %lld, hidden %lld, layers %lld, heads %lld, "
                       "intermediate %lld, positions %lld, token types %lld): all must be "
                       "positive and hidden a multiple of heads",
                       W, (long long)c->vocab, (long long)c->hidden, (long long)c->n_layers,
                       (long long)c->heads, (long long)c->inter, (long long)c->max_pos,
                       (long long)c->type_vocab);
    if (c->hidden / c->heads > VT_ATTN_MAX_DH)
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: head size %lld is over %d", W,
                       (long long)(c->hidden / c->heads), VT_ATTN_MAX_DH);
    if (!(c->eps > 0) || !isfinite(c->eps))
        return vt_fail(st, VTOK_EINVAL, "%s: layer_norm_eps must be positive", W);
    return 0;
}

/* The folder of path (a folder, or a file in one) into dir; 1 if path is
 * itself a weights file to open (not the folder's config.json). */
static int split_path(const char *path, char *dir, size_t n)
{
    if (vt_folder_of(path, dir, n))
        return 0;
    const char *s = strrchr(path, '/');
    const char *base = s ? s + 1 : path;
    return strcmp(base, "config.json") != 0;
}

static int parse_config(const char *dir, cJSON **out, vtok_status *st)
{
    char p[4200];
    if (snprintf(p, sizeof p, "%s/config.json", dir) >= (int)sizeof p)
        return vt_fail(st, VTOK_EINVAL, "path too long: %.200s", dir);
    char *text = NULL;
    size_t len = 0;
    if (vt_read_file(p, MAX_CONFIG_BYTES, &text, &len, st))
        return st && st->code ? st->code : VTOK_EIO;
    *out = vt_json_parse_object(text, len, "config.json", st);
    free(text);
    return *out ? 0 : VTOK_EFORMAT;
}

/* ---- load ---- */

static void load_layer(vt_bert *m, vt_loader *ld, int64_t i)
{
    const vt_bert_config *c = &m->c;
    vt_bert_layer *L = &m->layers[i];
    const int64_t H = c->hidden;
    const float eps = (float)c->eps;
    char base[96], name[160];
    snprintf(base, sizeof base, "encoder.layer.%lld", (long long)i);
#define NM(s) (snprintf(name, sizeof name, "%s.%s", base, s), name)
    vt_bert_attn_load(ld, &L->attn, NM("attention"), H, H, eps);
    vt_get_linear(ld, &L->fc1, NM("intermediate.dense"), c->inter, H, 1);
    vt_get_linear(ld, &L->fc2, NM("output.dense"), H, c->inter, 1);
    vt_bert_get_norm(ld, &L->ln, NM("output.LayerNorm"), H, eps);
#undef NM
}

int64_t vt_bert_linears(vt_bert *m, vt_linear **out)
{
    int64_t k = 0;
#define PUT(l) do { if (out) out[k] = (l); k++; } while (0)
    for (int64_t i = 0; i < m->c.n_layers; i++) {
        vt_bert_layer *L = &m->layers[i];
        PUT(&L->attn.q);
        PUT(&L->attn.k);
        PUT(&L->attn.v);
        PUT(&L->attn.o);
        PUT(&L->fc1);
        PUT(&L->fc2);
    }
    if (m->has_pooler)
        PUT(&m->pooler);
#undef PUT
    return k;
}

int vt_bert_read_config(vt_bert *m, const char *dir, vtok_status *st)
{
    cJSON *cfg = NULL;
    int rc = parse_config(dir, &cfg, st);
    if (!rc)
        rc = read_config(&m->c, cfg, st);
    cJSON_Delete(cfg);
    return rc;
}

int vt_bert_load_tensors(vt_bert *m, vt_loader *ld)
{
    const vt_bert_config *c = &m->c;
    if (!(m->layers = calloc((size_t)c->n_layers, sizeof *m->layers)))
        return vt_loader_fail(ld, VTOK_ENOMEM, "out of memory");
    const int64_t H = c->hidden;
    m->word = vt_get(ld, "embeddings.word_embeddings.weight", 2, c->vocab, H, 0, 0);
    m->pos = vt_get(ld, "embeddings.position_embeddings.weight", 2, c->max_pos, H, 0, 0);
    m->type = vt_get(ld, "embeddings.token_type_embeddings.weight", 2, c->type_vocab, H, 0, 0);
    vt_bert_get_norm(ld, &m->ln_emb, "embeddings.LayerNorm", H, (float)c->eps);
    for (int64_t i = 0; i < c->n_layers; i++)
        load_layer(m, ld, i);
    /* BertModel(add_pooling_layer=False) and BertForMaskedLM have no pooler;
     * with half of one the file is broken, so then both are required. */
    if (vt_find(ld, "pooler.dense.weight") || vt_find(ld, "pooler.dense.bias")) {
        vt_get_linear(ld, &m->pooler, "pooler.dense", H, H, 1);
        m->has_pooler = 1;
    }
    return ld->err;
}

int vt_bert_load(vt_bert *m, const char *path, int use_mmap, int dtype, vt_pool *pool,
                 vtok_status *st)
{
    memset(m, 0, sizeof *m);
    char dir[4096];
    const int is_file = split_path(path, dir, sizeof dir);
    int rc = vt_bert_read_config(m, dir, st);
    if (rc)
        return rc;
    if ((rc = vt_weights_open(is_file ? path : dir, use_mmap, &m->w, st)))
        return rc;
    /* BertForPreTraining / BertForMaskedLM (the released checkpoints) keep
     * the encoder under "bert."; BertModel.save_pretrained writes it bare. */
    m->prefix = vt_weights_find(m->w, "bert.embeddings.word_embeddings.weight") ? "bert." : "";
    vt_wsrc src = vt_wsrc_one(m->w, is_file ? path : dir, m->prefix);
    vt_loader ld;
    vt_loader_init(&ld, &src, "bert", NULL, st);
    vt_bert_load_tensors(m, &ld);
    if ((rc = vt_loader_finish(&ld))) {
        vt_bert_free(m);
        return rc;
    }
    const int64_t n = vt_bert_linears(m, NULL);
    vt_linear **ls = malloc((size_t)n * sizeof *ls);
    if (!ls) {
        vt_bert_free(m);
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    }
    vt_bert_linears(m, ls);
    rc = vt_pack_linears(ls, n, dtype, &src, pool, 0, &m->packed, &m->lp_max_in, st);
    free(ls);
    if (rc)
        vt_bert_free(m);
    return rc;
}

void vt_bert_free(vt_bert *m)
{
    if (!m)
        return;
    free(m->layers);
    vt_free(m->packed);
    vt_weights_close(m->w);
    memset(m, 0, sizeof *m);
}

/* ---- forward ---- */

int64_t vt_bert_work_floats(const vt_bert *m, int64_t T)
{
    /* q, k, v, ctx, tmp [T, hidden]; the FFN hidden [T, intermediate] */
    return vt_szadd(vt_szmul3(5, T, m->c.hidden), vt_szmul(T, m->c.inter));
}

int vt_bert_forward(const vt_bert *m, const vt_exec *e, const int32_t *ids, int64_t T,
                    float *h, float *pooled, float *work)
{
    const vt_bert_config *c = &m->c;
    const int64_t H = c->hidden;
    vt_bert_attn_bufs b = {.q = work};
    b.k = b.q + T * H;
    b.v = b.k + T * H;
    b.ctx = b.v + T * H;
    b.tmp = b.ctx + T * H;
    float *ff = b.tmp + T * H;

    /* BertEmbeddings: (word + token_type[0]) + position[t], then LayerNorm */
    for (int64_t t = 0; t < T; t++) {
        const float *w = m->word + (int64_t)ids[t] * H, *p = m->pos + t * H;
        float *x = h + t * H;
        for (int64_t j = 0; j < H; j++)
            x[j] = (w[j] + m->type[j]) + p[j];
    }
    vt_op_layernorm(e, T, H, h, &m->ln_emb, h);

    for (int64_t i = 0; i < c->n_layers; i++) {
        if (vt_run_poll(e))
            return VTOK_EABORTED;
        const vt_bert_layer *L = &m->layers[i];
        vt_bert_attn_forward(e, &L->attn, c->heads, h, 1, T, h, H, T, 0, &b);
        vt_op_linear(e, T, h, H, &L->fc1, ff, c->inter);
        vt_op_act(e, c->act, T * c->inter, ff);
        vt_op_linear(e, T, ff, c->inter, &L->fc2, b.tmp, H);
        vt_add_inplace(b.tmp, h, T * H);
        vt_op_layernorm(e, T, H, b.tmp, &L->ln, h);
        vt_run_step_done(e);
    }
    if (pooled && m->has_pooler) {
        /* BertPooler: tanh(dense(first token)) */
        vt_op_linear(e, 1, h, H, &m->pooler, pooled, H);
        vt_op_act(e, VT_ACT_TANH, H, pooled);
    }
    return 0;
}
