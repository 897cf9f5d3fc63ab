/*
 * mlp.h - LLaVA's projector family: "linear", "mlpNx_gelu" (N Linears with
 * GELU between), "identity" (llava/model/multimodal_projector/builder.py,
 * build_vision_projector; the regex ^mlp(\d+)x_gelu$ and nn.GELU(), the
 * exact erf form). Also the MLPs of COMM's DINOv2 branch and final
 * projection. Sizes come from the weights.
 *
 * Tensor names under the prefix, found by probing, first match wins:
 *   "0.weight" ...        nn.Sequential indices: Linear i is module 2i
 *                          (model.mm_projector.0 / .2 in LLaVA checkpoints)
 *   "linear_1.weight" ... llava-hf's LlavaMultiModalProjector (linear_1, linear_2)
 *   "weight"              one bare nn.Linear (type "linear" only)
 * Options (cfg): "type" (default "mlp2x_gelu"), "bias" (default true),
 * "act" (default "gelu": an activation name of ops.h, for variants).
 */
#ifndef VT_MLP_H
#define VT_MLP_H

#include "block.h"

#define VT_MLP_MAX_DEPTH 8

typedef struct vt_mlp {
    int       depth;                  /* number of Linears; 0 = identity */
    vt_linear fc[VT_MLP_MAX_DEPTH];
    vt_act    act;
    int64_t   d_in, d_out, d_hidden;  /* d_hidden: widest intermediate   */
} vt_mlp;

/* d_in > 0 requires the first Linear to take d_in inputs (identity: d_out = d_in). */
/* Tensors base + "0.weight"... through ld (block.h); where labels option errors
 * ("recipe X: projector"). */
int     vt_mlp_load(vt_mlp *x, vt_loader *ld, const char *base, const cJSON *cfg, int64_t d_in,
                    const char *where);
int64_t vt_mlp_work_floats(const vt_mlp *x, int64_t n, int64_t t_in);
int64_t vt_mlp_max_tokens(const vt_mlp *x, int64_t t_in);
/* in [n, t_in, d_in] -> out [n, t_in, d_out]; out must not alias in. */
void    vt_mlp_forward(const vt_mlp *x, const vt_exec *e, const float *in, int64_t n,
                       int64_t t_in, float *out, float *work);
void    vt_mlp_free(vt_mlp *x);
/* Its Linears (depth of them), for vt_pack_linears; out may be NULL. */
int64_t vt_mlp_linears(vt_mlp *x, vt_linear **out);

/* Depth of a projector type name ("linear" 1, "mlp2x_gelu" 2, "identity" 0); -1 if unknown. */
int vt_mlp_depth(const char *type);

#endif /* VT_MLP_H */
