/* pix2struct.c - Pix2Struct's patch grid (pix2struct.h). */
#include "pix2struct.h"

#include <math.h>

static int64_t clamp_rows(double v, int64_t max_patches)
{
    int64_t r = (int64_t)floor(v); /* math.floor */
    r = r < max_patches ? r : max_patches;
    return r > 1 ? r : 1;
}

void vt_pix2struct_grid(int64_t h, int64_t w, int64_t max_patches, int64_t ph, int64_t pw,
                        int64_t *rows, int64_t *cols)
{
    /* Python evaluates left to right: ((max_patches * (ph / h)) * (pw / w)) */
    const double scale = sqrt((double)max_patches * ((double)ph / (double)h) *
                              ((double)pw / (double)w));
    *rows = clamp_rows(scale * (double)h / (double)ph, max_patches);
    *cols = clamp_rows(scale * (double)w / (double)pw, max_patches);
}
