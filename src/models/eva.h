/*
 * eva.h - the EVA-CLIP vision towers as the original code names them:
 * EVA-02 (GVT's EVA-02-L/14 geometry: 2-D RoPE, SwiGLU, sub-LN) and EVA ViT-g
 * (LAVIS eva_vit_g as BLIP-2 and SEED use it). Both load into the shared
 * vt_vit and run through vt_vit_forward.
 */
#ifndef VT_EVA_H
#define VT_EVA_H

#include "vit.h"

/*
 * Fill v from tensors named `prefix` + the EVA module names
 * (patch_embed.proj, cls_token, pos_embed, blocks.N.{norm1, attn.*, norm2,
 * mlp.*}). cfg (may be NULL) holds the hyperparameters, every key optional:
 *   variant        "eva02" (default) or "eva_vit_g": picks the defaults below
 *   image_size     224 | 224            patch_size  14 | 14
 *   width          1024 | 1408          layers      24 | 39
 *   heads          16 | 16              mlp_ratio   2.6667 | 4.3637
 *   eps            1e-6                 channels    3
 *   qkv_bias       true (q_bias and v_bias; k has none)
 *   subln          true | false  (separate q/k/v_proj + inner_attn_ln + ffn_ln)
 *   swiglu         true | false  (mlp.w1/w2/w3 with SiLU; else fc1/fc2 with act)
 *   act            "gelu" (exact erf; the non-SwiGLU MLP)
 *   rope           true | false  pt_hw_seq_len 16, intp_freq true, rope_theta 10000
 * The output is every token after the last block without a final norm
 * (forward_features(return_all_features=True) / LAVIS forward); hidden
 * state i is the output of block i (0 = embeddings). v borrows the tensors of
 * the loader's files (keep them open while v is used) and owns derived
 * buffers; release with vt_vit_free. Returns a config error (in ld->st), or
 * 0 with tensor problems left in ld for vt_loader_finish (missing names are
 * collected, not fatal here). On any failure the caller frees v.
 */
int vt_eva_load(vt_vit *v, vt_loader *ld, const cJSON *cfg);

#endif /* VT_EVA_H */
