/*
 * block.h - the one interface of connector blocks (projector, merge,
 * resampler, Q-Former, VQ, de-tokenizer, ...). See docs/FOUNDATION.md.
 *
 *   int     vt_X_load(vt_X *x, vt_loader *ld, [const char *base,] const cJSON *cfg, ...);
 *             options from cfg (io/opt.h: HF/BERT-style keys, the released
 *             model's values as defaults), tensors through ld (io/loader.h;
 *             base, when the block takes one, is its own name prefix).
 *             Returns an option error (in ld->st) or ld->err; missing tensors
 *             are only collected: the caller's vt_loader_finish names all of
 *             them, across every block of the part, in one message. On any
 *             failure the caller frees x with vt_X_free.
 *   int64_t vt_X_linears(vt_X *x, vt_linear **out);   its Linears, for packing
 *   int64_t vt_X_work_floats(const vt_X *x, int64_t n, int64_t t_in);
 *   int64_t vt_X_max_tokens(const vt_X *x, int64_t t_in);   attention length
 *   void    vt_X_forward(const vt_X *x, const vt_exec *e, const float *in, int64_t n,
 *                        int64_t t_in, float *out, float *work);   never allocates
 *   void    vt_X_free(vt_X *x);   NULL and zeroed blocks are no-ops
 * Weights stay in the files they were read from (open while x is used).
 */
#ifndef VT_BLOCK_H
#define VT_BLOCK_H

#include "../core/ops.h"
#include "../io/io.h"
#include "../io/loader.h"
#include "../io/opt.h"

#include <cjson/cJSON.h>

#endif /* VT_BLOCK_H */
