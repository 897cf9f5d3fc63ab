/*
 * codetr.h - MoVA's Co-DETR expert: the EVA-02-L style ViTDet backbone of
 * Co-DETR with its neck (TempleX98/MoVA mova/model/vision_experts/codetr/
 * vit.py: ViT02, Block, Attention, SwiGLU, VisionRotaryEmbeddingFast,
 * window_partition, get_abs_pos, LayerNorm2d, _build_codetr; spec
 * mova-slime-llava.md 2.1 row "Co-DETR" and 8.8), for one image.
 *
 *   x  = image [3, S, S] resized nearest to img_size (1280)       vit.py:715
 *   x  = patch_embed(x) + pos_embed (CLS row dropped; bicubic to the grid
 *        only if the table's grid differs: never in MoVA)          :718-722
 *   per block: x += attn(norm1(x)) in 16 x 16 windows (zero-padded after
 *        norm1) or globally (blocks 5, 11, 17, 23); x += SwiGLU(norm2(x))
 *   y  = neck(out_norm(x)): 1x1 conv, LayerNorm2d, GELU, 3x3 conv, LayerNorm2d
 *   out = F.interpolate(y, 37 x 37, bilinear) as [37 * 37, 256]    :731-734
 * Attention: q = x Wq + q_bias, k = x Wk, v = x Wv + v_bias, 2-D RoPE on q
 * and k (VisionRotaryEmbeddingFast(head_dim / 2, pt_seq_len 16): window
 * blocks t = arange(16) / 16 * 16 per window, global blocks t = arange(80) /
 * 80 * 16; interleaved pairs), softmax(q k^T / sqrt(head_dim)) v, proj; no
 * sub-LN in attention. SwiGLU: w3(ffn_ln(silu(w1 h) * w2 h)). LayerNorms eps
 * 1e-6 except out_norm (1e-5).
 *
 * Tensors (after base): patch_embed.proj.{weight,bias}, pos_embed
 * [1, 1 + P^2, d], blocks.N.{norm1, attn.{q_proj,k_proj,v_proj}.weight,
 * attn.{q_bias,v_bias}, attn.proj, norm2, mlp.{w1,w2,ffn_ln,w3}}, out_norm,
 * neck.{0,3}.weight (convs without bias), neck.{1,4}.{weight,bias}. The RoPE
 * buffers (rope_win / rope_glb / blocks.N.attn.rope .freqs_{cos,sin}) are
 * recomputed; when present their shapes must fit the options (the original
 * would refuse to load them otherwise).
 * Sizes from the weights: width, depth, patch, SwiGLU hidden, neck channels,
 * the position table's grid. Options (cfg, every key optional; defaults are
 * _build_codetr's): num_heads 16, window_size 16, window_block_indexes
 * [0..4, 6..10, 12..16, 18..22], img_size 1280 (the forward's resize target,
 * also the global RoPE grid img_size / patch), in_size 1024 (the side of the
 * image handed in: MoVA's high_images, UNVERIFIED), out_size 37 (0: the raw
 * grid x grid map), pt_hw_seq_len 16, rope_theta 10000, eps 1e-6,
 * out_norm_eps 1e-5, neck_eps 1e-6.
 */
#ifndef VT_CODETR_H
#define VT_CODETR_H

#include "../core/ops.h"
#include "../io/io.h"
#include "../io/loader.h"
#include "../io/opt.h"

#include <cjson/cJSON.h>

typedef struct vt_codetr_layer {
    vt_norm   norm1, norm2, ffn_ln;
    vt_linear q, k, v, proj;  /* q.b = attn.q_bias, v.b = attn.v_bias, k without bias */
    vt_linear w1, w2, w3;
    int       window;         /* 1: windowed attention (in window_block_indexes) */
} vt_codetr_layer;

typedef struct vt_codetr {
    int64_t d, heads, n_layers, d_ff, patch, window, img_size, in_size, grid, out_chans,
        out_size, pos_grid;
    int       attn_lowp;                /* bf16 attention products (--dtype bf16 / int8) */
    vt_linear patch_embed;              /* the patch conv as a Linear [d, 3 p p] (not packed) */
    const float *pos;                   /* [grid^2, d] (the table, or its bicubic resize) */
    float *rope_win_cos, *rope_win_sin; /* [window^2, dh] (loader-owned) */
    float *rope_glb_cos, *rope_glb_sin; /* [grid^2, dh] */
    vt_codetr_layer *layers;            /* n_layers, owned */
    vt_norm   out_norm, neck1, neck4;
    vt_linear neck0;                    /* 1x1 conv [C, d] */
    vt_linear neck3;                    /* 3x3 conv [C, C * 9] as a Linear over (cin, ky, kx) */
} vt_codetr;

/* Load from ld under base ("" or e.g. "model.vision_tower.vision_tower_3.");
 * cfg may be NULL. Returns an option error (ld->st) or ld->err; missing
 * tensors are collected for the caller's vt_loader_finish. On any failure
 * the caller frees m with vt_codetr_free. */
int     vt_codetr_load(vt_codetr *m, vt_loader *ld, const char *base, const cJSON *cfg);
int64_t vt_codetr_in_size(const vt_codetr *m);      /* in_size: the input is [3, S, S] */
int64_t vt_codetr_out_tokens(const vt_codetr *m);   /* out_size^2 (grid^2 if 0) */
int64_t vt_codetr_out_channels(const vt_codetr *m); /* neck channels (256) */
int64_t vt_codetr_max_tokens(const vt_codetr *m);   /* rows of the longest Linear / attention */
int64_t vt_codetr_work_floats(const vt_codetr *m);
/* in [3, in_size, in_size] (normalised pixels, channels first); out
 * [out_tokens, out_channels] row-major (y * W + x); work holds
 * vt_codetr_work_floats floats. Never allocates. */
void    vt_codetr_forward(const vt_codetr *m, const vt_exec *e, const float *in, float *out,
                          float *work);
/* Each Linear once (blocks, neck convs; not the patch embedding), for packing. */
int64_t vt_codetr_linears(vt_codetr *m, vt_linear **out);
void    vt_codetr_free(vt_codetr *m);   /* NULL and zeroed structs are no-ops */

#endif /* VT_CODETR_H */
