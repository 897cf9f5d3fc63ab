/*
 * topp.h - the nucleus (top-p) cut of SliME's token selector
 * (yfzhang114/SliME llava/model/multimodal_resampler/builder.py,
 * TextGuidedSampler.forward): sort p descending, cumulative sums c; with
 * n = #(c <= top_p), keep the first n + 1 (every one when n is all of them),
 * returned in ascending index order.
 *
 * Numerics as CPU PyTorch computes them for float32: the cumulative sum is
 * accumulated in double and stored per element as float (torch.cumsum's
 * acc_type), compared with top_p as a float32 scalar. Equal probabilities
 * keep index order (a stable sort; torch.sort is not stable, so the
 * original's order among exact ties is unspecified: UNVERIFIED).
 */
#ifndef VT_TOPP_H
#define VT_TOPP_H

#include <stdint.h>

/* p [M] (M >= 1); scratch order, tmp [M] each; kept [M] receives the kept
 * indices ascending. Returns how many were kept (1..M). */
int64_t vt_topp_keep(const float *p, int64_t M, float top_p, int64_t *order, int64_t *tmp,
                     int64_t *kept);

#endif /* VT_TOPP_H */
