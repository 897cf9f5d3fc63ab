/*
 * mov_adapter.h - MoVA's MoV-Adapter (TempleX98/MoVA
 * mova/model/multimodal_projector/builder.py: MoVAdapter, AdapterBlock,
 * Attention, SwiGLU, VisionRotaryEmbeddingFast; timm regnet RegStage for the
 * downsampling; spec mova-slime-llava.md 2.5), for one image (MoVA runs
 * batch 1: its expert skip is `B == 1`).
 *
 *   x0 = base features [R^2, d] (CLIP at 48 x 48), r = routing mask [E],
 *   t = the question's BERT [CLS] feature [d_text]
 *   x = x0 + pos_embed
 *   per block:
 *     p = softmax(gate(cat(t, mean_tokens(x))) + (1 - r) * -1e6), kept on
 *         its top-k, renormalised
 *     x += bin * sum_e p_e * CrossAttn_e(norm1_e(x), norm2_e(F_e))   (experts
 *          with r_e = 0 are not run; bin = 1 if any r_e else 0)
 *     x += SelfAttn(norm3(x), norm3(x)); x += SwiGLU(norm4(x))
 *   x = (x + x0) / 2, as a R x R map: RegStage, 2 x 2 average pool, RegStage
 *   out = mlp(x) [(R/2)^2, d_llm]     (Linear, GELU, Linear: mlp.0 / mlp.2)
 * Attention: q = x Wq, k = v_in Wk, v = v_in Wv (no biases), 2-D RoPE on q
 * and k per 64-wide head (VisionRotaryEmbeddingFast(32, R, R): dims 0-31 by
 * row, 32-63 by column, interleaved pairs), scale 1/8, softmax,
 * inner_attn_ln, proj. SwiGLU: w3(ffn_ln(silu(w1 h) * w2 h)). LayerNorms
 * eps 1e-5. RegStage: one timm Bottleneck (1x1 conv, LN2d, SiLU, depthwise
 * 3x3, LN2d, SiLU, squeeze-excitation (mean, 1x1 + SiLU, 1x1 + sigmoid),
 * 1x1 conv, LN2d) plus the identity shortcut.
 *
 * Sizes come from the weights: d from pos_embed, E and the expert widths
 * from the cross-attention value projections, d_text from the gate's input
 * (BERT-large's 1024 hard-coded upstream), d_llm from the MLP, the number
 * of blocks (num_projector_layers, 3) from blocks.N. Options: topk_experts
 * (3), eps (1e-5).
 */
#ifndef VT_MOV_ADAPTER_H
#define VT_MOV_ADAPTER_H

#include "block.h"
#include "mlp.h"

#define VT_MOV_MAX_EXPERTS 8

typedef struct vt_mov_attn {
    vt_linear q, k, v, proj;
    vt_norm   inner_ln;
} vt_mov_attn;

typedef struct vt_mov_block {
    vt_mov_attn cross[VT_MOV_MAX_EXPERTS], self;
    vt_norm     norm1[VT_MOV_MAX_EXPERTS], norm2[VT_MOV_MAX_EXPERTS], norm3, norm4;
    vt_linear   w1, w2, w3, gate0, gate2;
    vt_norm     ffn_ln;
} vt_mov_block;

typedef struct vt_mov_reg {
    vt_linear    conv1, conv3;    /* 1x1 convs as Linears (no bias) */
    const float *conv2;           /* depthwise 3x3 [C, 1, 3, 3] */
    vt_norm      n1, n2, n3;
    vt_linear    fc1, fc2;        /* squeeze-excitation 1x1 convs with bias */
} vt_mov_reg;

typedef struct vt_mov_adapter {
    int64_t       d, res, n_exp, ch[VT_MOV_MAX_EXPERTS], d_text, d_ff, topk, n_blocks;
    const float  *pos;            /* [res^2, d] */
    vt_mov_block *blocks;         /* n_blocks, owned */
    vt_mov_reg    reg[2];
    vt_mlp        mlp;
    float        *rope_cos, *rope_sin; /* [res^2, 64] (loader-owned) */
} vt_mov_adapter;

int     vt_mov_adapter_load(vt_mov_adapter *a, vt_loader *ld, const char *base, const cJSON *cfg,
                            const char *where);
int64_t vt_mov_adapter_work_floats(const vt_mov_adapter *a);
/* Tokens the attention sees (res^2). */
int64_t vt_mov_adapter_max_tokens(const vt_mov_adapter *a);
/* x [res^2, d]; experts[e] [res^2, ch[e]] (read only where routing[e] != 0;
 * may be NULL there); routing [n_exp] 0/1 (NULL: all 0, the routing pass);
 * text [d_text]; out [(res/2)^2, d_llm]. */
void    vt_mov_adapter_forward(const vt_mov_adapter *a, const vt_exec *e, const float *x,
                               const float *const *experts, const float *routing,
                               const float *text, float *out, float *work);
int64_t vt_mov_adapter_linears(vt_mov_adapter *a, vt_linear **out);
/* torch.topk(p[:n], k).indices as torch 1.13's CPU kernel orders them, ties
 * included (n <= VT_MOV_MAX_EXPERTS); returns k, or 0 for bad sizes. */
int64_t vt_mov_topk(const float *p, int64_t n, int64_t k, int *sel);
void    vt_mov_adapter_free(vt_mov_adapter *a);

#endif /* VT_MOV_ADAPTER_H */
