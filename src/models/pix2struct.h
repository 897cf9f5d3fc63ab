/*
 * pix2struct.h - the patch grid of Pix2StructImageProcessor
 * (transformers models/pix2struct/image_processing_pix2struct.py,
 * extract_flattened_patches), which MoVA's Pix2Struct and DePlot experts
 * depend on: it must be evaluated in double precision in the original's
 * operation order, because MoVA reshapes max_patches outputs as a square
 * and the rounding gives 44 x 44 instead of 45 x 45 for some sizes (spec
 * mova-slime-llava.md 2.1).
 */
#ifndef VT_PIX2STRUCT_H
#define VT_PIX2STRUCT_H

#include "../core/vt.h"

/* scale = sqrt(max_patches * (ph / h) * (pw / w)); rows = max(min(floor(scale
 * * h / ph), max_patches), 1), cols likewise with w and pw. */
void vt_pix2struct_grid(int64_t h, int64_t w, int64_t max_patches, int64_t ph, int64_t pw,
                        int64_t *rows, int64_t *cols);

/*
 * The flattened patches of Pix2StructImageProcessor (is_vqa False) for an
 * RGB8 image: per-image standardisation (x - mean) / max(std, 1 / sqrt(H W
 * 3)) over every pixel and channel (normalize: mean and std as np.mean /
 * np.std, here accumulated in double), the grid above, F.interpolate(
 * bilinear, align_corners=False, antialias=True) to (rows p) x (cols p),
 * p x p patches row by row, each [row id, col id (both from 1), its pixels
 * in (y, x, channel) order]; rows past rows x cols stay zero.
 * out [max_patches, 2 + p p 3]; work vt_pix2struct_work_floats floats.
 */
int64_t vt_pix2struct_work_floats(int64_t h, int64_t w, int64_t max_patches, int64_t p);
int     vt_pix2struct_patches(const vtok_image *img, int64_t max_patches, int64_t p, float *out,
                              float *work, vtok_status *st);

#endif /* VT_PIX2STRUCT_H */
