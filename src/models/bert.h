/*
 * bert.h - the BERT text encoder (Hugging Face BertModel), internal.
 *
 * A BertModel read from a Hugging Face folder (config.json + weights that
 * vt_weights_open finds: model.safetensors, shards, or pytorch_model.bin),
 * with tensors named as BertModel saves them ("embeddings.*",
 * "encoder.layer.N.*", "pooler.dense.*") or as the pre-training and
 * masked-LM heads do, which wrap it in "bert." (bert-base/large-uncased as
 * released). The prefix is chosen by which word-embedding tensor exists.
 *
 * Numerics (transformers models/bert/modeling_bert.py, functions named since
 * line numbers move; see bert.c for the details):
 *   BertEmbeddings   x = LN((word[id] + token_type[0]) + position[t])
 *   BertLayer        h = LN(h + O(attn(h)))          (BertAttention, post-LN)
 *                    h = LN(h + W2 act(W1 h))        (BertIntermediate/BertOutput)
 *   BertPooler       tanh(W h[0] + b)
 * Single sequences (no padding mask), token_type_ids all 0, absolute
 * positions 0..T-1. Other position_embedding_type values are refused.
 *
 * A vt_bert is read-only after load and may be shared; a forward call writes
 * only the caller's buffers and never allocates.
 */
#ifndef VT_BERT_H
#define VT_BERT_H

#include "../connectors/qformer.h" /* vt_bert_attn */

typedef struct vt_bert_config {
    int64_t vocab, hidden, n_layers, heads, inter, max_pos, type_vocab;
    double  eps;
    vt_act  act;
} vt_bert_config;

typedef struct vt_bert_layer {
    vt_bert_attn attn;     /* attention.{self,output}                 */
    vt_linear    fc1, fc2; /* intermediate.dense, output.dense        */
    vt_norm      ln;       /* output.LayerNorm                        */
} vt_bert_layer;

typedef struct vt_bert {
    vt_bert_config c;
    const char    *prefix;          /* "bert." or "" (static)                  */
    const float   *word, *pos, *type; /* embeddings [vocab|max_pos|types, hidden] */
    vt_norm        ln_emb;
    vt_bert_layer *layers;
    int            has_pooler;
    vt_linear      pooler;          /* pooler.dense, if has_pooler             */
    vt_weights    *w;
    void          *packed;          /* vt_pack_linears' block                  */
    int64_t        lp_max_in;
} vt_bert;

/* Load path (a folder, or a file in one with config.json beside it).
 * dtype: vtok_dtype for the Linears (vt_pack_linears); pool may be NULL.
 * Missing tensors are all named in one message; vt_bert_free undoes a
 * failed load too. */
int  vt_bert_load(vt_bert *m, const char *path, int use_mmap, int dtype, vt_pool *pool,
                  vtok_status *st);
void vt_bert_free(vt_bert *m);

/* The same in parts, for a BERT inside another checkpoint (MoVA's text
 * encoder under model.mm_projector.text_encoder.bert.): the sizes from
 * dir/config.json, the tensors through ld (BertModel's names under ld's
 * prefix; missing ones collected), its Linears for packing (out NULL:
 * count). m->w stays NULL: the caller owns the files; vt_bert_free frees
 * the rest. */
int     vt_bert_read_config(vt_bert *m, const char *dir, vtok_status *st);
int     vt_bert_load_tensors(vt_bert *m, vt_loader *ld);
int64_t vt_bert_linears(vt_bert *m, vt_linear **out);

/* Work floats of a forward over T tokens (saturating: a huge T gives a size
 * the planner refuses). */
int64_t vt_bert_work_floats(const vt_bert *m, int64_t T);

/* ids [T] (0 <= id < vocab, checked by the caller; T <= max_pos) ->
 * hidden [T, hidden] (last_hidden_state) and, if pooled is not NULL and the
 * model has a pooler, pooled [hidden] (pooler_output). Polls e->run before
 * each layer; returns VTOK_EABORTED if asked to stop, else 0. */
int vt_bert_forward(const vt_bert *m, const vt_exec *e, const int32_t *ids, int64_t T,
                    float *hidden, float *pooled, float *work);

#endif /* VT_BERT_H */
