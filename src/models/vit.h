/*
 * vit.h - the shared ViT description every vision family loads into.
 *
 * CLIP, SigLIP, DINOv2, ViT/DeiT/MAE, BLIP-2's EVA tower and the EVA-CLIP
 * towers (EVA ViT-g, EVA-02) are the same pre-norm transformer with small
 * differences: whether the patch conv has a bias, CLS/register tokens, a
 * LayerNorm before the encoder, layer scale, fused qkv, SwiGLU, sub-LN
 * (EVA-02's extra LayerNorms inside attention and MLP), 2-D RoPE, and what
 * the final norm and pooler do. A family file
 * reads config.json and the checkpoint's tensor names into this struct; one
 * forward (vit.c) runs them all.
 */
#ifndef VT_VIT_H
#define VT_VIT_H

#include "../core/ops.h"
#include "../io/io.h"
#include "../io/loader.h"
#include "../io/opt.h"

#include <cjson/cJSON.h>

/* How last_hidden_state and pooler_output come out of the encoder. */
typedef enum vt_pool_kind {
    VT_POOL_NONE = 0,      /* no pooler: last = ln(h) (ViTMAE), or h if post_ln.w is NULL
                              (EVA-CLIP forward_features(return_all_features=True))     */
    VT_POOL_CLS_LN,        /* CLIP: pooler = post_ln(h[:,0]); last_hidden = h           */
    VT_POOL_CLS,           /* DINOv2: last = ln(h); pooler = last[:,0]                  */
    VT_POOL_CLS_DENSE_TANH,/* ViT: last = ln(h); pooler = tanh(dense(last[:,0]))       */
    VT_POOL_CLS_LN_TWICE,  /* BLIP-2: last = ln(h); pooler = ln(last[:,0])              */
    VT_POOL_MAP,           /* SigLIP: last = ln(h); pooler = attention-probe head(last) */
} vt_pool_kind;

/* Position table vs input size. */
typedef enum vt_pos_interp {
    VT_POS_FIXED = 0,      /* input must be image_size x image_size                    */
    VT_POS_BICUBIC,        /* F.interpolate bicubic, align_corners=False (DINOv2)       */
    VT_POS_BICUBIC_AA,     /* the same with antialias=True (DINOv2 with registers)      */
} vt_pos_interp;

/*
 * How the bicubic resize of the position table maps output cells to source
 * coordinates, i.e. which F.interpolate call it reproduces (vt_vit.pos_offset):
 *   offset == 0: size=(gh, gw): src = (dst + 0.5) * M / g - 0.5, skipped when the
 *                grid is the table's (transformers main, DINOv2-reg, LAVIS EVA);
 *   offset  > 0: scale_factor=((gh + offset) / M, (gw + offset) / M): src =
 *                (dst + 0.5) / scale - 0.5 with floor(M * scale) == g, skipped only
 *                when H == W and the grid is the table's (official DINOv2 with
 *                interpolate_offset 0.1, transformers DINOv2 of 2023-2024).
 */
#define VT_POS_OFFSET_DINOV2 0.1

typedef struct vt_vit_layer {
    vt_norm      ln1, ln2;
    vt_linear    q, k, v;      /* separate projections, or ...                          */
    vt_linear    qkv;          /* ... fused [3d, d] (qkv.w != NULL)                       */
    vt_linear    o;
    vt_linear    fc1, fc2;     /* MLP; with swiglu fc1 is weights_in [2h, d], or ...      */
    vt_linear    fc1_up;       /* ... the gate [h, d] with this the up half [h, d] (EVA-02
                                  w1, w2: silu(w1 x) * (w2 x)); fc1_up.w NULL otherwise   */
    vt_norm      attn_ln;      /* sub-LN on the attention output before o (EVA-02
                                  inner_attn_ln) if attn_ln.w                            */
    vt_norm      ffn_ln;       /* sub-LN on the MLP hidden before fc2 (EVA-02 ffn_ln)     */
    const float *ls1, *ls2;    /* layer scale (DINOv2) or NULL                           */
} vt_vit_layer;

typedef struct vt_vit {
    /* sizes */
    int64_t d, n_layers, n_heads, d_ff, patch, image_size, channels;
    int64_t grid_h, grid_w;    /* native patch grid of the position table                */
    vt_act  act;
    int     swiglu;            /* MLP is SwiGLU: silu(x1) * x2, fc1 = [x1; x2]            */
    int     attn_lowp;         /* attention with bf16 products (--dtype bf16 / int8)       */
    int     causal;            /* causal self-attention (CLIP's text tower)               */
    float   eps;

    /* embeddings */
    const float *patch_w;      /* [d, channels, patch, patch]                            */
    const float *patch_b;      /* [d] or NULL                                            */
    const float *cls;          /* [d] or NULL                                            */
    const float *reg;          /* [n_reg, d] or NULL: extra tokens after CLS (DINOv2       */
    int64_t      n_reg;        /*   registers, DeiT's distillation token)                 */
    const float *pos;          /* [pos_prefix + grid_h*grid_w, d]                        */
    int64_t      pos_prefix;   /* rows for CLS (+ extra tokens) in front of the grid;     */
                               /*   extra tokens without a row get no position (DINOv2)   */
    int          pos_interp;   /* vt_pos_interp: how the patch rows follow the input grid */
    double       pos_offset;   /* 0: size= rule, > 0: scale_factor rule (see above)      */
    vt_norm      pre_ln;       /* LayerNorm before the encoder (CLIP) if pre_ln.w        */

    /* 2-D rotary embedding (EVA-02) applied to q and k of the patch tokens (all
     * tokens after the prefix), one [dh] row per patch shared by the heads:
     * t' = t cos + rotate_half(t) sin, pairs (2i, 2i+1) interleaved. Only with
     * pos_interp == VT_POS_FIXED (the table is for the native grid). */
    const float *rope_cos, *rope_sin;   /* [grid_h*grid_w, dh] or NULL */

    vt_vit_layer *layers;      /* n_layers, owned                                         */

    /* outputs */
    vt_pool_kind pool;
    vt_norm      post_ln;
    vt_linear    pool_dense;   /* ViT pooler                                              */
    vt_linear    proj;         /* image projection (no bias) if proj.w                    */

    /* SigLIP attention-probe head */
    const float *probe;        /* [d] */
    vt_linear    head_in;      /* in_proj [3d, d] */
    vt_linear    head_out;
    vt_norm      head_ln;
    vt_linear    head_fc1, head_fc2;

    /* buffers the loader derived from the checkpoint (e.g. BLIP-2's qkv bias) */
    vt_owned     own;
} vt_vit;

void vt_vit_free(vt_vit *v);   /* frees layers and owned buffers, not the struct */

/* ---- loading (tensors go through loader.h) ---- */

/* Allocate v->layers (zeroed); a bad count is a hard error of ld. */
int vt_vit_alloc_layers(vt_vit *v, vt_loader *ld, int64_t n_layers);

/*
 * Find the prefix under which `anchor` (e.g. "embeddings.patch_embedding.weight")
 * is stored: "" for a bare vision model, "vision_model." for CLIPModel, etc.
 * Writes it to buf. VTOK_EMISSING if no tensor ends with anchor, VTOK_EFORMAT
 * if several prefixes do (the message lists them).
 */
int vt_find_prefix(const vt_weights *w, const char *anchor, char *buf, size_t n, vtok_status *st);

/* Validate common sizes (heads divide d, sizes positive) after a family filled them. */
int vt_vit_check(const vt_vit *v, vtok_status *st);

/* ---- forward ---- */

/* Tokens the encoder sees for an h x w input (0 if the size is not accepted; st says why). */
int64_t vt_vit_tokens(const vt_vit *v, int64_t h, int64_t w, vtok_status *st);

/* Floats of activation memory vt_vit_forward needs for n images of h x w. */
int64_t vt_vit_work_floats(const vt_vit *v, int64_t n, int64_t h, int64_t w);

typedef struct vt_vit_out {
    float  *last;        /* [n, T, d] */
    float  *pooler;      /* [n, d] or NULL */
    float  *embeds;      /* [n, proj] or NULL */
    float **hidden;      /* hidden[i] = [n, T, d] destination for hidden_states[i], or NULL */
} vt_vit_out;

/* pixels [n, c, h, w]; work has vt_vit_work_floats floats. The embedding and
 * each block are steps of e->run (n_layers + 1): abort polled before each
 * (an aborted run returns at once, outputs unfinished: check
 * e->run->aborted), progress reported after each. */
void vt_vit_forward(const vt_vit *v, const vt_exec *e, const float *pixels, int64_t n, int64_t h,
                    int64_t w, float *work, const vt_vit_out *out);

/* The encoder blocks alone, for towers that embed their own inputs (CLIP's
 * text tower): x [n*T, d] is updated in place; work holds
 * vt_vit_encoder_work_floats(v, n, T) floats; hidden (may be NULL) as in
 * vt_vit_out (hidden[0] = x on entry). Attention is causal if v->causal. */
int64_t vt_vit_encoder_work_floats(const vt_vit *v, int64_t n, int64_t T);
void    vt_vit_encoder(const vt_vit *v, const vt_exec *e, int64_t n, int64_t T, float *x,
                       float *work, float **hidden);

/* Resize a [gh0 * gw0, d] grid of vectors to [gh * gw, d] as
 * F.interpolate(mode="bicubic", align_corners=False) does (A = -0.75, taps
 * clamped at the border), with source-coordinate scales sy, sx per axis
 * (size= mode: (float)in / (float)out). */
void vt_pos_bicubic(const float *src, int64_t gh0, int64_t gw0, int64_t d, int64_t gh,
                    int64_t gw, float sy, float sx, float *dst);

/* One separable pass of torch's antialiased resize (F.interpolate(...,
 * antialias=True)): n_in rows (stride_in floats apart, d floats each) to
 * n_out rows, for `outer` blocks (outer_in / outer_out floats apart); scale
 * maps output to source coordinates (in / out). linear: the bilinear
 * (triangle) filter, else bicubic (a = -0.5). See vit.c. */
void vt_aa_pass(const float *src, int64_t n_in, int64_t n_out, float scale, int64_t stride_in,
                int64_t stride_out, int64_t outer, int64_t outer_in, int64_t outer_out,
                int64_t d, int linear, float *dst);

#endif /* VT_VIT_H */
