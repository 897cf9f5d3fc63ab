/*
 * lln.h - COMM's LLN-Layerscale merge of several hidden states of one
 * encoder (Jiang et al. 2023, "From CLIP to DINO", Eq. for v̄1 / v̄2):
 *
 *     out = sum_k s_k * Linear_k(LN_k(x_k))        k = 0 .. K-1
 *
 * COMM's code and weights are unreleased, so every detail the paper leaves
 * open is an option (docs/RECIPES.md lists them; defaults first):
 *   "order":      "ln_linear" | "linear_ln"   LN then Linear (the formula) or
 *                                              Linear then LN (the name "LLN")
 *   "shared":     false | true                one LN + Linear per layer, or one for all
 *   "scale_norm": "none" | "softmax" | "sum"  s = alpha, softmax(alpha), alpha / sum(alpha)
 *   "eps":        1e-5                        LayerNorm eps (nn.LayerNorm default)
 *   "bias":       true                        Linear bias
 * Tensor names (vtok's own, since no checkpoint exists), under the prefix:
 *   layers.{k}.norm.weight/bias [d_ln], layers.{k}.linear.weight [d_out, d_in] (+ .bias),
 *   or norm.* / linear.* when shared; scales [K] (the learnable alpha).
 */
#ifndef VT_LLN_H
#define VT_LLN_H

#include "block.h"

typedef struct vt_lln {
    int64_t    K, d_in, d_out;
    int        linear_first;   /* order "linear_ln" */
    int        shared;
    vt_norm   *ln;             /* K entries (all equal when shared), owned */
    vt_linear *lin;            /* K entries, owned */
    float     *scale;          /* K effective scales (after scale_norm), owned */
} vt_lln;

/* K inputs of width d_in (d_in > 0 is checked against the weights). */
int     vt_lln_load(vt_lln *x, vt_loader *ld, const char *base, const cJSON *cfg, int64_t K,
                    int64_t d_in, const char *where);
int64_t vt_lln_work_floats(const vt_lln *x, int64_t n, int64_t t_in);
/* The distinct Linears (K, or 1 when shared), for vt_pack_linears; out may be NULL. */
int64_t vt_lln_linears(vt_lln *x, vt_linear **out);
int64_t vt_lln_max_tokens(const vt_lln *x, int64_t t_in);
/* in: K stacked inputs [K, n, t_in, d_in]; out [n, t_in, d_out]. */
void    vt_lln_forward(const vt_lln *x, const vt_exec *e, const float *in, int64_t n,
                       int64_t t_in, float *out, float *work);
void    vt_lln_free(vt_lln *x);

#endif /* VT_LLN_H */
