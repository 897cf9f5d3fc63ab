/*
 * perceiver.h - the Flamingo Perceiver resampler (lucidrains flamingo-pytorch,
 * as copied into TencentARC/GVT visual_modules/perceiver.py): a fixed set of
 * learned latents cross-attends to the media tokens (concatenated with the
 * latents themselves) for `depth` layers, then a final LayerNorm.
 */
#ifndef VT_PERCEIVER_H
#define VT_PERCEIVER_H

#include "block.h"

typedef struct vt_perceiver_layer {
    vt_norm   norm_media, norm_latents;   /* layers.N.0.norm_{media,latents}     */
    vt_linear to_q, to_kv, to_out;        /* layers.N.0.to_*, no biases          */
    vt_norm   ff_ln;                      /* layers.N.1.0                        */
    vt_linear ff1, ff2;                   /* layers.N.1.1 / .1.3, no biases      */
} vt_perceiver_layer;

typedef struct vt_perceiver {
    int64_t dim, depth, heads, dim_head, n_latents, ff_dim, n_media;
    const float *latents;          /* [n_latents, dim]                              */
    const float *media_pos;        /* media_pos_emb [n_media, 1, dim]; row 0 is used */
    vt_perceiver_layer *layers;    /* depth, owned                                   */
    vt_norm norm;                  /* final norm                                     */
} vt_perceiver;

/*
 * Fill p from tensors base + latents, media_pos_emb, layers.N.*, norm (through
 * ld, block.h).
 * cfg (may be NULL) keys, GVT's values as defaults: dim 1024, depth 6,
 * heads 16, dim_head 96, num_latents 32, num_media_embeds 1, ff_mult 4,
 * eps 1e-5 (nn.LayerNorm default). p borrows the loader's tensors; release
 * with vt_perceiver_free.
 */
int vt_perceiver_load(vt_perceiver *p, vt_loader *ld, const char *base, const cJSON *cfg);

/* Floats of work memory vt_perceiver_forward needs for n inputs of t_in tokens. */
int64_t vt_perceiver_work_floats(const vt_perceiver *p, int64_t n, int64_t t_in);

/* Tokens the attention sees (t_in + n_latents): size the per-thread scratch of e
 * with vt_exec_scratch_floats(vt_perceiver_max_tokens(p, t_in)). */
int64_t vt_perceiver_max_tokens(const vt_perceiver *p, int64_t t_in);

/* x [n, t_in, dim] (GVT: ln_vision of the ViT tokens) -> out [n, n_latents, dim].
 * work has vt_perceiver_work_floats floats; x and out must not overlap it. */
void vt_perceiver_forward(const vt_perceiver *p, const vt_exec *e, const float *x, int64_t n,
                          int64_t t_in, float *out, float *work);

/* Its Linears (5 per layer), for vt_pack_linears; out may be NULL. */
int64_t vt_perceiver_linears(vt_perceiver *p, vt_linear **out);

void vt_perceiver_free(vt_perceiver *p);   /* frees layers, not the struct; NULL is a no-op */

#endif /* VT_PERCEIVER_H */
