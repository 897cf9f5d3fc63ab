/* pix2struct.c - Pix2Struct's patch grid (pix2struct.h). */
#include "pix2struct.h"

#include "vit.h"

#include <string.h>

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

int64_t vt_pix2struct_work_floats(int64_t h, int64_t w, int64_t max_patches, int64_t p)
{
    int64_t rows, cols;
    vt_pix2struct_grid(h, w, max_patches, p, p, &rows, &cols);
    const int64_t oh = rows * p, ow = cols * p;
    /* the standardised image, after the horizontal pass, the resized image */
    return vt_szadd(vt_szadd(vt_szmul3(h, w, 3), vt_szmul3(h, ow, 3)), vt_szmul3(oh, ow, 3));
}

int vt_pix2struct_patches(const vtok_image *img, int64_t max_patches, int64_t p, float *out,
                          float *work, vtok_status *st)
{
    const int64_t H = img->height, W = img->width, n = H * W * 3;
    if (H < 1 || W < 1 || p < 1 || max_patches < 1)
        return vt_fail(st, VTOK_EINVAL, "pix2struct: bad image or patch size");
    int64_t rows, cols;
    vt_pix2struct_grid(H, W, max_patches, p, p, &rows, &cols);
    const int64_t oh = rows * p, ow = cols * p, depth = p * p * 3;
    float *x = work, *tmp = x + n, *r = tmp + H * ow * 3;
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; i++)
        sum += img->data[i];
    const float mean = (float)(sum / (double)n);
    for (int64_t i = 0; i < n; i++) {
        const double dv = (double)((float)img->data[i] - mean);
        sq += dv * dv;
    }
    float sd = (float)sqrt(sq / (double)n);
    const float floor_sd = (float)(1.0 / sqrt((double)n));
    sd = sd > floor_sd ? sd : floor_sd;
    for (int64_t i = 0; i < n; i++) /* HWC, channel last as the passes want */
        x[i] = ((float)img->data[i] - mean) / sd;
    /* antialiased bilinear, horizontal pass then vertical (torch's order) */
    vt_aa_pass(x, W, ow, (float)W / (float)ow, 3, 3, H, W * 3, ow * 3, 3, 1, tmp);
    vt_aa_pass(tmp, H, oh, (float)H / (float)oh, ow * 3, ow * 3, 1, 0, 0, ow * 3, 1, r);
    memset(out, 0, (size_t)(max_patches * (2 + depth)) * sizeof(float));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            float *o = out + (i * cols + j) * (2 + depth);
            o[0] = (float)(i + 1);
            o[1] = (float)(j + 1);
            for (int64_t y = 0; y < p; y++)
                memcpy(o + 2 + y * p * 3, r + ((i * p + y) * ow + j * p) * 3,
                       (size_t)(p * 3) * sizeof(float));
        }
    return 0;
}
