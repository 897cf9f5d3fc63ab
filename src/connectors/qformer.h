/*
 * qformer.h - the BLIP-2 Q-Former on the query path, with SEED's causal variant.
 *
 * Learned query tokens go through BERT layers (post-LN) that self-attend among
 * the queries, cross-attend to image embeddings every cross_attention_freq-th
 * layer (0, freq, 2 freq, ...), and run the query-only FFN
 * (intermediate_query / output_query). Only the query path exists: SEED's
 * inference code deletes the text branch, and BLIP-2's image side never uses it.
 *
 * Semantics (AILab-CVC/SEED v1 models/Qformer_casual.py, visual_tokenizer.py):
 *   h = LN_emb(query_tokens)                         (bert.embeddings.LayerNorm; dropout = id)
 *   per layer: h = LN(h + O(attn(h, h; causal?)))   (attention.self / .output)
 *              h = LN(h + O(attn(h, img)))          (crossattention.*, cross layers only)
 *              h = LN(h + W2 act(W1 h))             (intermediate_query / output_query)
 *   attention: softmax(q k^T / sqrt(dh) + M) v, M = -10000 above the diagonal when
 *   causal (exp underflows to exactly 0 in float32, so vt_op_attention_ex's causal
 *   mode is the same function), no mask for cross-attention (all-ones image mask).
 *
 * Config (cJSON, HF/BERT key names, every key optional; defaults = SEED's
 * causal Q-Former = bert-base-uncased + init_Qformer):
 *   hidden_size 768, num_attention_heads 12, intermediate_size 3072,
 *   hidden_act "gelu" (erf), layer_norm_eps 1e-12, encoder_width 1408,
 *   cross_attention_freq 2, num_query_tokens 32,
 *   num_hidden_layers 12 if num_query_tokens == 32 else 4   (init_Qformer's rule),
 *   causal: num_query_tokens == 32    (BertModel.forward's is_casual rule),
 *   module "Qformer" (tensors "<prefix><module>.bert...."),
 *   query_tokens_name "query_tokens",
 *   input_norm null: name of a LayerNorm applied to the image embeddings first
 *     (e.g. "ln_vision", SEED's LayerNorm(1408) after the ViT), input_norm_eps 1e-5.
 */
#ifndef VT_QFORMER_H
#define VT_QFORMER_H

#include "block.h"

typedef struct vt_bert_attn {
    vt_linear q, k, v, o;     /* self.{query,key,value}, output.dense */
    vt_norm   ln;             /* output.LayerNorm                     */
} vt_bert_attn;

typedef struct vt_qformer_layer {
    vt_bert_attn self_attn;
    vt_bert_attn cross;       /* valid if has_cross */
    int          has_cross;
    vt_linear    fc1, fc2;    /* intermediate_query.dense, output_query.dense */
    vt_norm      ln_ffn;      /* output_query.LayerNorm                       */
} vt_qformer_layer;

typedef struct vt_qformer {
    int64_t           d, n_layers, n_heads, d_ff, enc_width, n_query, cross_freq;
    vt_act            act;
    int               causal;
    const float      *query;  /* [n_query, d] */
    vt_norm           ln_emb;
    vt_norm           ln_in;  /* input_norm if ln_in.w */
    vt_qformer_layer *layers; /* owned */
} vt_qformer;

/* Defaults a caller can change before the config is read (the de-tokenizer's
 * reverse Q-Former differs in names, query count and encoder width). */
typedef struct vt_qformer_defaults {
    int64_t     d, heads, d_ff, enc_width, n_query, cross_freq;
    double      eps;
    const char *act, *module, *tokens;
} vt_qformer_defaults;

vt_qformer_defaults vt_qformer_seed_defaults(void);

/* Load through ld: tensors "<module>.bert..." and "<query_tokens_name>" (block
 * convention, block.h). cfg may be NULL. */
int vt_qformer_load(vt_qformer *q, vt_loader *ld, const cJSON *cfg);
int vt_qformer_load_ex(vt_qformer *q, vt_loader *ld, const cJSON *cfg,
                       const vt_qformer_defaults *def);

/* Work floats for a batch of n, t_in image tokens. */
int64_t vt_qformer_work_floats(const vt_qformer *q, int64_t n, int64_t t_in);
/* Longest attention row the forward runs (size per-thread scratch with
 * vt_exec_scratch_floats of this). */
int64_t vt_qformer_max_tokens(const vt_qformer *q, int64_t t_in);

/* x [n, t_in, enc_width] -> out [n, n_query, d]. Does not allocate. */
void vt_qformer_forward(const vt_qformer *q, const vt_exec *e, const float *x, int64_t n,
                        int64_t t_in, float *out, float *work);

void vt_qformer_free(vt_qformer *q);   /* frees layers; NULL is a no-op */

/* Every Linear of q, for packing at load (kernels.h gemm_pack_nk): writes up
 * to cap pointers into out and returns how many there are. */
int64_t vt_qformer_linears(vt_qformer *q, vt_linear **out, int64_t cap);

/* ---- BERT attention, shared with the BERT text encoder (models/bert.c) ---- */

/* A LayerNorm "name.weight", "name.bias"; for a name ending in "LayerNorm",
 * "name.gamma", "name.beta" when the file has those instead (TF-converted
 * BERT checkpoints, which transformers renames at load). */
void vt_bert_get_norm(vt_loader *ld, vt_norm *n, const char *name, int64_t d, float eps);

/* BertAttention's tensors under base ("....attention"): self.{query,key,value}
 * ([d, d], [d, kv_in], [d, kv_in] + biases), output.dense, output.LayerNorm
 * (eps, vt_bert_get_norm). Missing tensors are collected in ld (block.h). */
void vt_bert_attn_load(vt_loader *ld, vt_bert_attn *a, const char *base, int64_t d,
                       int64_t kv_in, float eps);

/* Work buffers of vt_bert_attn_forward: q, ctx, tmp [n * tq, d]; k, v
 * [n * t_kv, d] (d = a->q.n_out). */
typedef struct vt_bert_attn_bufs {
    float *q, *k, *v, *ctx, *tmp;
} vt_bert_attn_bufs;

/* BertAttention with the post-LN residual (BertSelfOutput):
 *   h = LN(h + O(softmax(Q(h) K(kv)^T / sqrt(dh)) V(kv)))
 * over n items of tq rows of h [n * tq, d] and t_kv rows of kv (row width
 * kv_w); kv may be h itself (self-attention). No padding mask; causal as
 * vt_op_attention_ex. Does not allocate. */
void vt_bert_attn_forward(const vt_exec *e, const vt_bert_attn *a, int64_t heads, float *h,
                          int64_t n, int64_t tq, const float *kv, int64_t kv_w, int64_t t_kv,
                          int causal, const vt_bert_attn_bufs *w);

/* ---- helpers the SEED blocks share ---- */

/* y[i] += x[i] over n elements. */
void vt_add_inplace(float *y, const float *x, int64_t n);

#endif /* VT_QFORMER_H */
