/*
 * p2s_enc.h - the Pix2Struct vision encoder (transformers
 * models/pix2struct/modeling_pix2struct.py: Pix2StructVisionModel with its
 * Pix2StructVisionEmbeddings, Pix2StructVisionLayer, Pix2StructVisionAttention,
 * Pix2StructVisionMlp, Pix2StructLayerNorm), as MoVA runs it for its
 * Pix2Struct-large and DePlot experts: `Pix2StructForConditionalGeneration
 * .get_encoder()` on the processor's flattened patches, last_hidden_state
 * kept for every row, padding rows included (MoVA mova_encoder.py
 * load_model / forward_func; spec mova-slime-llava.md 2.1 and 8.11).
 *
 *   in   patches [L, 2 + P]: row id, column id, P patch values (the output of
 *        vt_pix2struct_patches, src/models/pix2struct.h; all-zero rows pad)
 *   keep[r] = sum(patches[r]) != 0          (the default attention mask)
 *   x    = patch_projection(patches[:, 2:]) + row_embedder[(long)id_r]
 *          + column_embedder[(long)id_c]
 *   per layer:
 *     x += output(Attn(rms(x) * pre_attention_layer_norm))
 *     x += wo(act(wi_0 h) * wi_1 h),  h = rms(x) * pre_mlp_layer_norm
 *   out  = rms(x) * layernorm                               [L, hidden]
 * rms(x) = x / sqrt(mean(x^2) + eps) (T5 style: no mean, no bias). Attn:
 * heads of d_kv (heads * d_kv may differ from hidden), NO 1/sqrt(d_kv)
 * scale, softmax over the kept keys only (every query row, padded ones too,
 * attends to the kept keys); no biases anywhere but patch_projection.
 *
 * Tensor names, after the caller's base (Pix2StructVisionModel's own names:
 * base "encoder." for a Pix2StructForConditionalGeneration checkpoint such as
 * google/pix2struct-large or google/deplot, "model.vision_tower.vision_tower_4."
 * or "..._5." in a MoVA checkpoint):
 *   embeddings.patch_projection.{weight,bias}     [hidden, P], [hidden]
 *   embeddings.row_embedder.weight                [seq_len, hidden]
 *   embeddings.column_embedder.weight             [seq_len, hidden]
 *   encoder.layer.N.pre_attention_layer_norm.weight         [hidden]
 *   encoder.layer.N.attention.{query,key,value}.weight      [heads d_kv, hidden]
 *   encoder.layer.N.attention.output.weight                 [hidden, heads d_kv]
 *   encoder.layer.N.pre_mlp_layer_norm.weight               [hidden]
 *   encoder.layer.N.mlp.{wi_0,wi_1}.weight                  [d_ff, hidden]
 *   encoder.layer.N.mlp.wo.weight                           [hidden, d_ff]
 *   layernorm.weight                                        [hidden]
 *
 * Options (cfg: a Pix2StructVisionConfig's keys; the "vision_config" object
 * of a Pix2Struct config.json, or that whole config, is read leniently; a
 * plain options object must hold only these keys): hidden_size,
 * patch_embed_hidden_size, d_ff, seq_len (checked against the weights, which
 * give them), d_kv (64), num_attention_heads (the weights' heads d_kv / d_kv),
 * num_hidden_layers (as many layers as the weights hold), layer_norm_eps
 * (1e-6), dense_act_fn ("gelu_new", the tanh form).
 */
#ifndef VT_P2S_ENC_H
#define VT_P2S_ENC_H

#include "../connectors/block.h"

typedef struct vt_p2s_layer {
    const float *ln_attn, *ln_mlp; /* Pix2StructLayerNorm weights [hidden] */
    vt_linear    q, k, v, o;       /* no biases */
    vt_linear    wi0, wi1, wo;     /* no biases */
} vt_p2s_layer;

typedef struct vt_p2s_enc {
    int64_t       d, d_patch, d_kv, heads, inner, d_ff, n_layers, seq_len;
    float         eps;
    vt_act        act;
    int           attn_lowp;  /* attention with bf16 products (set by the caller for
                                 the --dtype bf16 / int8 models; 0 after load) */
    vt_linear     proj;       /* patch_projection, with bias */
    const float  *row_emb, *col_emb, *ln_final;
    vt_p2s_layer *layers;     /* n_layers, owned */
} vt_p2s_enc;

/* Loads the encoder's tensors under base (see above). Returns an option
 * error (in ld->st) or ld->err; missing tensors are collected for the
 * caller's vt_loader_finish. On failure free m with vt_p2s_enc_free. */
int     vt_p2s_enc_load(vt_p2s_enc *m, vt_loader *ld, const char *base, const cJSON *cfg);
/* Floats per input row: 2 + patch_embed_hidden_size (770 for 16 x 16 x 3). */
int64_t vt_p2s_enc_in_width(const vt_p2s_enc *m);
/* Output rows for L input rows (L: every row is kept, padding included). */
int64_t vt_p2s_enc_out_tokens(const vt_p2s_enc *m, int64_t L);
int64_t vt_p2s_enc_out_channels(const vt_p2s_enc *m);
/* Work floats of a forward over L rows; the vt_exec's per-thread scratch
 * must hold vt_exec_scratch_floats(L). */
int64_t vt_p2s_enc_work_floats(const vt_p2s_enc *m, int64_t L);
/* 0 if every row's ids index the embedding tables as torch would accept
 * them ((long) truncation in [0, seq_len)); else VTOK_EINVAL naming the row.
 * vt_pix2struct_patches output passes whenever its grid fits seq_len. */
int     vt_p2s_enc_check(const vt_p2s_enc *m, const float *patches, int64_t L,
                         vtok_status *st);
/* patches [L, 2 + P] (not aliasing out), out [L, hidden]; never allocates.
 * Rows with ids that vt_p2s_enc_check refuses get no row / column
 * embedding (torch would raise). Polls e->run between layers: after an
 * abort out is invalid. */
void    vt_p2s_enc_forward(const vt_p2s_enc *m, const vt_exec *e, const float *patches,
                           int64_t L, float *out, float *work);
/* Its Linears, each once (for bf16 / int8 packing). */
int64_t vt_p2s_enc_linears(vt_p2s_enc *m, vt_linear **out);
/* NULL and zeroed encoders are no-ops. */
void    vt_p2s_enc_free(vt_p2s_enc *m);

#endif /* VT_P2S_ENC_H */
