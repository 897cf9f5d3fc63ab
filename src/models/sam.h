/*
 * sam.h - the SAM image encoder as MoVA runs it for two of its experts
 * (TempleX98/MoVA mova/model/vision_experts/vary/sam.py, a lightly edited
 * copy of facebookresearch/segment-anything
 * segment_anything/modeling/image_encoder.py; spec mova-slime-llava.md 2.1):
 *   Vary-base = build_sam_vit_b: ViT-B + neck + net_2, 1024 px -> 32 x 32 x 512
 *   SAM-huge  = build_sam_vit_h: ViT-H + neck,          1024 px -> 64 x 64 x 256
 * for one image [3, S, S] (channels first, already normalised), S fixed by
 * the position table (img_size = grid * patch, 1024 released):
 *
 *   x = conv_p x p, stride p (patch_embed.proj, bias)(image) + pos_embed   [G, G, C]
 *   per block: x += proj(attn(norm1(x))); x += lin2(gelu(lin1(norm2(x))))
 *   y = LN2d(conv3x3(LN2d(conv1x1(x))))        neck.0 .. neck.3, no conv bias
 *   y = conv3x3 stride 2 pad 1 (net_2)(y)       only when use_output_conv
 *   out = y as [tokens, C_out] row-major (flatten(2).transpose(1, 2))
 *
 * Attention: qkv with bias, head_dim^-0.5, decomposed relative positions
 * (MViTv2) from rel_pos_h / rel_pos_w added to the scores before the softmax;
 * windowed blocks attend inside window x window tiles of the grid, which is
 * zero padded (after norm1) up to a multiple of the window; global blocks
 * attend over the whole grid. LayerNorms eps 1e-6, GELU exact (erf).
 *
 * Tensors under base: patch_embed.proj.{weight [C, 3, p, p], bias},
 * pos_embed [1, G, G, C], blocks.N.{norm1, attn.qkv, attn.proj, norm2,
 * mlp.lin1, mlp.lin2}.{weight, bias}, blocks.N.attn.rel_pos_{h,w} [2 S - 1,
 * head_dim] (S = window or G), neck.0.weight [256, C, 1, 1],
 * neck.1.{weight, bias}, neck.2.weight [256, 256, 3, 3], neck.3.{weight,
 * bias}, net_2.weight [512, 256, 3, 3] (Vary only).
 *
 * Sizes come from the weights: C, the patch and G from patch_embed / pos_embed,
 * depth from blocks.N, head_dim (so num_heads) from rel_pos_h, the MLP and
 * neck widths from their weights. Options (cfg, all optional):
 *   preset               "vit_b" | "vit_l" | "vit_h": the original builder's
 *                        arguments (build_sam_vit_*: width, depth, heads,
 *                        global blocks, window 14, use_output_conv) as the
 *                        defaults, and the weights must have that width/depth
 *   num_heads            default C / head_dim of rel_pos_h
 *   window_size          default: from a windowed block's table (2 w - 1 rows), else 14
 *   global_attn_indexes  default: the blocks whose table has 2 G - 1 rows
 *   use_output_conv      apply net_2; default: the preset's, else iff net_2.weight exists
 * A rel_pos table whose length differs from 2 S - 1 is refused (the original
 * interpolates it in get_rel_pos, but its load_state_dict refuses such a
 * table first, and with a fixed input size the interpolation never runs).
 */
#ifndef VT_SAM_H
#define VT_SAM_H

#include "../core/ops.h"
#include "../io/io.h"
#include "../io/loader.h"
#include "../io/opt.h"

#include <cjson/cJSON.h>

typedef struct vt_sam_block {
    vt_norm      norm1, norm2;
    vt_linear    qkv, proj, lin1, lin2;
    const float *rel_h, *rel_w; /* [2 S - 1, head_dim], S = win or the grid */
    int64_t      win;           /* window side; 0 = global attention */
} vt_sam_block;

typedef struct vt_sam {
    int64_t       d, heads, hd, depth, patch, in_ch, grid, d_ff, window, out_ch, out2_ch;
    const float  *pos;          /* [G * G, d] */
    vt_linear     patch_embed;  /* [d, in_ch * p * p] (the conv weight as is) */
    vt_sam_block *blocks;       /* depth, owned */
    vt_linear     neck0, neck2; /* 1x1 [out, d], 3x3 [out, out * 9], no bias */
    vt_norm       neck1, neck3;
    vt_linear     net2;         /* 3x3 stride 2 [out2, out * 9]; w NULL if not applied */
} vt_sam;

/* Load from ld under base ("" or e.g. "model.vision_tower.vision_tower_2.");
 * cfg may be NULL. Returns an option or shape error (message in ld->st) or
 * ld->err; missing tensors are collected for the caller's vt_loader_finish.
 * On failure the caller frees m with vt_sam_free. */
int     vt_sam_load(vt_sam *m, vt_loader *ld, const char *base, const cJSON *cfg);
/* The input side in pixels (grid * patch; 1024 for the released models). */
int64_t vt_sam_in_size(const vt_sam *m);
/* The output grid: tokens (64 * 64, or 32 * 32 after net_2) and channels. */
int64_t vt_sam_out_tokens(const vt_sam *m);
int64_t vt_sam_out_channels(const vt_sam *m);
/* Floats of work memory for vt_sam_forward (64-byte aligned). The vt_exec's
 * per-thread scratch must hold vt_exec_scratch_floats (the GEMM's); its
 * lp_buf (bf16 / int8 Linears) vt_exec_lp_bytes(G * G, max(d_ff, 9 * out_ch,
 * in_ch * p * p)): the Linears' rows and inputs. */
int64_t vt_sam_work_floats(const vt_sam *m);
/* in [in_ch, S, S] (S = vt_sam_in_size), out [out_tokens, out_channels]
 * (row y * W + x). Never allocates. Polls e->run between blocks; if the run
 * was aborted, out is left unspecified. */
void    vt_sam_forward(const vt_sam *m, const vt_exec *e, const float *in, float *out,
                       float *work);
/* Its Linears (and the convs as Linears), each once, for packing; out may be NULL. */
int64_t vt_sam_linears(vt_sam *m, vt_linear **out);
/* NULL and zeroed structs are no-ops. */
void    vt_sam_free(vt_sam *m);

#endif /* VT_SAM_H */
