/*
 * resampler.h - the 2-D resampler of Qwen-VL as SliME uses it
 * (yfzhang114/SliME llava/model/multimodal_resampler/sampler.py, Resampler):
 * grid^2 learned queries cross-attend once to the image tokens.
 *
 *   pos_q = pos_embed                       [grid^2, d], stored float16
 *   pos_k = bicubic(pos_embed, grid -> t)   F.interpolate(align_corners=False)
 *           then .to(float16) (get_abs_pos; identity when t == grid)
 *   kv    = ln_kv(kv_proj(x))               kv_proj: Identity when absent
 *   q     = ln_q(query) + pos_q
 *   out   = ln_post(MHA(q, kv + pos_k, kv))   nn.MultiheadAttention: fused
 *           in_proj [3d, d] (q, k, v rows), out_proj; scale 1/sqrt(d / heads)
 * LayerNorm eps 1e-6; proj Identity (use_post_proj=False). The inputs are
 * t x t token maps (t^2 tokens: CLIP's 24 x 24 patches).
 *
 * Tensors under base: query, pos_embed, [kv_proj.weight], attn.in_proj_weight,
 * attn.in_proj_bias, attn.out_proj.{weight,bias}, ln_q, ln_kv, ln_post.
 * Options (cfg): heads (default d / 128: SliME's mm_hidden_size // 128,
 * builder.py:46), eps (1e-6).
 */
#ifndef VT_RESAMPLER_H
#define VT_RESAMPLER_H

#include "block.h"

typedef struct vt_resampler {
    int64_t      d, kv_dim, n_q, grid, heads;
    const float *query, *pos;          /* [n_q, d] each                      */
    vt_linear    kv_proj;              /* n_out 0: Identity                  */
    vt_linear    wq, wk, wv, out;      /* in_proj split (owned copies), out_proj */
    vt_norm      ln_q, ln_kv, ln_post;
} vt_resampler;

int     vt_resampler_load(vt_resampler *r, vt_loader *ld, const char *base, const cJSON *cfg,
                          const char *where);
int64_t vt_resampler_work_floats(const vt_resampler *r, int64_t n, int64_t t_in);
int64_t vt_resampler_max_tokens(const vt_resampler *r, int64_t t_in);
/* x [n, t_in, kv_dim] (t_in a square) -> out [n, n_q, d]. */
void    vt_resampler_forward(const vt_resampler *r, const vt_exec *e, const float *x, int64_t n,
                             int64_t t_in, float *out, float *work);
int64_t vt_resampler_linears(vt_resampler *r, vt_linear **out);
void    vt_resampler_free(vt_resampler *r);

#endif /* VT_RESAMPLER_H */
