/*
 * seed_detok.h - SEED's de-tokenizer: discrete ids -> generation embeddings.
 *
 * Semantics (AILab-CVC/SEED v1 models/visual_tokenizer.py SEEDVisualTokenizer.predict):
 *   c  = codebook[ids]                              quantize.embedding.weight   [T, e]
 *   u  = D2(tanh(D1 c)) + pos                       decode_task_layer.{0,2}, pos_embed_text
 *   u  = blocks(u)                                  blocks_text.N: timm pre-LN ViT blocks
 *                                                   (fused qkv with bias, exact GELU,
 *                                                   LN eps 1e-6, bidirectional)
 *   r  = ReverseQFormer(u)                          77 reverse_tokens, 4 BERT layers,
 *                                                   cross-attention in 0, 2 over u,
 *                                                   bidirectional (77 != 32)
 *   g  = P r                                        distill_text_proj     [77, 768]
 * g replaces the CLIP text encoder's 77x768 output as Stable Diffusion v1.4's context.
 *
 * Config keys (all optional; defaults = SEED v1): hidden_size 768,
 * codebook_embed_dim 32, n_embed 8192, num_query_tokens 32 (code tokens per image),
 * blocks_depth 4, blocks_num_heads 12, blocks_mlp_ratio 4.0, blocks_eps 1e-6,
 * proj_dim 768, and the tensor names codebook "quantize.embedding.weight",
 * decode_layer "decode_task_layer", pos_embed "pos_embed_text", blocks "blocks_text",
 * proj "distill_text_proj". "reverse_qformer": an object of vt_qformer keys
 * (qformer.h) whose defaults here are hidden_size / num_attention_heads =
 * this block's hidden_size / blocks_num_heads, intermediate_size 4 x hidden,
 * encoder_width = hidden_size, num_query_tokens 77, module "Reverse_Qformer",
 * query_tokens_name "reverse_tokens" (so 4 layers and no causal mask, by
 * init_Qformer's and BertModel's rules).
 */
#ifndef VT_SEED_DETOK_H
#define VT_SEED_DETOK_H

#include "qformer.h"

typedef struct vt_tblock {      /* timm Block (models/vit.py) */
    vt_norm   ln1, ln2;
    vt_linear qkv, proj, fc1, fc2;
} vt_tblock;

typedef struct vt_seed_detok {
    int64_t      d, e_dim, n_embed, n_tok, depth, heads, d_mlp, proj_dim;
    const float *codebook;      /* [n_embed, e_dim] */
    vt_linear    dec1, dec2, proj;
    const float *pos;           /* [n_tok, d] */
    vt_tblock   *blocks;        /* depth, owned */
    vt_qformer   rq;            /* reverse Q-Former */
} vt_seed_detok;

int  vt_seed_detok_load(vt_seed_detok *s, vt_loader *ld, const cJSON *cfg);
void vt_seed_detok_free(vt_seed_detok *s);   /* NULL is a no-op */

/* t = tokens per item, must equal n_tok (the position table's rows). */
int64_t vt_seed_detok_work_floats(const vt_seed_detok *s, int64_t n, int64_t t);
int64_t vt_seed_detok_max_tokens(const vt_seed_detok *s, int64_t t);

/* ids [n, t] -> out [n, rq.n_query, proj_dim]. Checks t and every id first:
 * VTOK_ESHAPE / VTOK_EINVAL with a message and nothing computed. No allocation. */
int vt_seed_detok_forward(const vt_seed_detok *s, const vt_exec *e, const int64_t *ids,
                          int64_t n, int64_t t, float *out, float *work, vtok_status *st);

int64_t vt_seed_detok_linears(vt_seed_detok *s, vt_linear **out, int64_t cap);

#endif /* VT_SEED_DETOK_H */
