/*
 * vq.h - SEED's encode layer + VQ codebook: causal embeddings -> discrete ids.
 *
 * Semantics (AILab-CVC/SEED v1 models/visual_tokenizer.py, quantize_semantic.py
 * VectorQuantizer2 with legacy=True, remap=None):
 *   z  = L2(tanh(L1 x))            encode_task_layer.{0,2}: Linear(d, d), Tanh, Linear(d, e)
 *   id = argmin_k  (|z|^2 + |c_k|^2) - 2 z.c_k   over the codebook c [n_embed, e]
 * No l2-normalisation (SEED-2's l2norm is commented out as well). Ties go to the
 * lowest index, and a NaN distance wins at its first index, as torch.argmin.
 * The distances are computed in float32 by one fixed-order loop per row, so the
 * same z and codebook give the same ids on every ISA and thread count, and two
 * equal codebook rows always tie exactly.
 *
 * Config keys (all optional; defaults = SEED v1): hidden_size 768,
 * codebook_embed_dim 32, n_embed 8192, encode_layer "encode_task_layer",
 * codebook "quantize.embedding.weight".
 */
#ifndef VT_VQ_H
#define VT_VQ_H

#include "block.h"

typedef struct vt_vq {
    int64_t      d, e_dim, n_embed;
    vt_linear    enc1, enc2;
    const float *codebook;   /* [n_embed, e_dim] */
    float       *code_sq;    /* [n_embed] |c_k|^2, owned */
} vt_vq;

int  vt_vq_load(vt_vq *q, vt_loader *ld, const cJSON *cfg);
void vt_vq_free(vt_vq *q);   /* NULL is a no-op */

int64_t vt_vq_work_floats(const vt_vq *q, int64_t n, int64_t t);

/* x [n, t, d] -> ids [n, t] in [0, n_embed); z_out [n, t, e_dim] (the
 * pre-quantisation vectors) if not NULL. Does not allocate. */
void vt_vq_forward(const vt_vq *q, const vt_exec *e, const float *x, int64_t n, int64_t t,
                   int64_t *ids, float *z_out, float *work);

/* Nearest code of each row of z [rows, e_dim] (the quantiser alone). */
void vt_vq_argmin(const vt_vq *q, const vt_exec *e, const float *z, int64_t rows,
                  int64_t *ids);

/* ids [count] -> codebook rows out [count, e_dim]. VTOK_EINVAL (naming the
 * first bad position) if an id is outside [0, n_embed); out is then untouched. */
int vt_vq_lookup(const float *codebook, int64_t n_embed, int64_t e_dim, const int64_t *ids,
                 int64_t count, float *out, vtok_status *st);

int64_t vt_vq_linears(vt_vq *q, vt_linear **out, int64_t cap);

#endif /* VT_VQ_H */
