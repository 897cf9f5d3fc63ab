/*
 * slice.c - high-resolution slicing: one image becomes a squashed base view
 * plus a grid of crops, as LLaVA-NeXT ("anyres") and SliME cut it.
 *
 * Both choose a target resolution (bw, bh), a multiple of the crop size,
 * then (haotian-liu/LLaVA llava/mm_utils.py; yfzhang114/SliME the same file):
 *   resize_and_pad_image: scale_w = bw / W, scale_h = bh / H; if scale_w <
 *     scale_h the width fills (nw = bw, nh = min(ceil(H * scale_w), bh)),
 *     else the height; Image.resize((nw, nh)) with Pillow's default filter
 *     for RGB (BICUBIC), pasted on black at ((bw - nw) // 2, (bh - nh) // 2);
 *   divide_to_patches: crop x crop boxes, rows outer, columns inner;
 *   base view: image.resize((size, size)), squashed, not padded.
 * The geometry runs in doubles in the code's own operation order (Python
 * float semantics: true division, then int() truncation or math.ceil).
 *
 * Grid choice:
 *   anyres (select_best_resolution): for each (w, h) pinpoint in list order,
 *     s = min(w / W, h / H), eff = min(int(W * s) * int(H * s), W * H),
 *     waste = w * h - eff; the first strictly larger eff wins, or an equal
 *     eff with strictly less waste.
 *   uhd (SliME select_best_resolution_uhd, mm_utils.py:48-95): n =
 *     ceil(W * H / unit^2) clamped to 6 (and 1 -> 2); candidates are the
 *     factor pairs (i, n / i), i ascending, of n and n + 1 (n <= 2) or of
 *     n - 1, n and n + 1, each scaled by the unit, then the same rule.
 *     SliME hard-codes the unit as 336 while it crops at the processor's
 *     crop size; both are options here (slicing "unit").
 */
#include "image.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The same eff / waste rule for both grid choices. */
typedef struct {
    int64_t W, H, best_eff, best_waste, bw, bh;
} best_fit;

static void consider(best_fit *b, int64_t w, int64_t h)
{
    const double sw = (double)w / (double)b->W, sh = (double)h / (double)b->H;
    const double s = sh < sw ? sh : sw; /* Python min(a, b): a unless b < a */
    const int64_t dw = (int64_t)((double)b->W * s), dh = (int64_t)((double)b->H * s);
    const int64_t eff = dw * dh < b->W * b->H ? dw * dh : b->W * b->H;
    const int64_t waste = w * h - eff;
    if (eff > b->best_eff || (eff == b->best_eff && waste < b->best_waste)) {
        b->best_eff = eff;
        b->best_waste = waste;
        b->bw = w;
        b->bh = h;
    }
}

int vt_slice_grid(const vt_slicing *s, int64_t W, int64_t H, int64_t crop, int64_t *bw,
                  int64_t *bh, vtok_status *st)
{
    if (W < 1 || H < 1 || W > VT_SLICE_MAX_SIDE || H > VT_SLICE_MAX_SIDE)
        return vt_fail(st, VTOK_ELIMIT, "slicing: image of %lldx%lld (1..%d per side)",
                       (long long)W, (long long)H, VT_SLICE_MAX_SIDE);
    best_fit b = {.W = W, .H = H, .best_eff = 0, .best_waste = INT64_MAX, .bw = 0, .bh = 0};
    if (s->type == VT_SLICE_ANYRES) {
        for (int i = 0; i < s->n_pin; i++)
            consider(&b, s->pin[2 * i], s->pin[2 * i + 1]);
    } else if (s->type == VT_SLICE_UHD) {
        const int64_t u = s->unit;
        int64_t n = (int64_t)ceil((double)(W * H) / (double)(u * u));
        n = n > s->max_slices ? s->max_slices : n == 1 ? 2 : n;
        for (int64_t m = n <= 2 ? n : n - 1; m <= n + 1; m++)
            for (int64_t i = 1; i <= m; i++)
                if (m % i == 0)
                    consider(&b, i * u, (m / i) * u);
    } else {
        return vt_fail(st, VTOK_EINVAL, "slicing: no grid rule");
    }
    if (!b.bw)
        return vt_fail(st, VTOK_EINVAL, "slicing: no grid fits a %lldx%lld image",
                       (long long)W, (long long)H);
    if (b.bw % crop || b.bh % crop)
        return vt_fail(st, VTOK_EINVAL, "slicing: the chosen resolution %lldx%lld is not a "
                       "multiple of the %lld-pixel crop", (long long)b.bw, (long long)b.bh,
                       (long long)crop);
    if ((b.bw / crop) * (b.bh / crop) >= VT_SLICE_MAX_TILES)
        return vt_fail(st, VTOK_ELIMIT, "slicing: a %lldx%lld grid of crops (at most %d tiles "
                       "per image)", (long long)(b.bw / crop), (long long)(b.bh / crop),
                       VT_SLICE_MAX_TILES);
    *bw = b.bw;
    *bh = b.bh;
    return 0;
}

/* Pillow's Image.resize returns a copy when the size is unchanged. */
static int resize_or_copy(const vtok_image *src, int64_t w, int64_t h, vtok_image *dst,
                          vtok_status *st)
{
    if (src->width != w || src->height != h)
        return vtok_image_resize(src, w, h, VTOK_RESAMPLE_BICUBIC, dst, st);
    if (vt_image_alloc(dst, w, h, st))
        return st->code;
    memcpy(dst->data, src->data, (size_t)(w * h * 3));
    return 0;
}

int vt_slice_image(const vtok_image *img, int64_t bw, int64_t bh, int64_t crop, int64_t base,
                   vtok_image *tiles, vtok_status *st)
{
    const int64_t W = img->width, H = img->height, gw = bw / crop, gh = bh / crop;
    memset(tiles, 0, (size_t)(1 + gw * gh) * sizeof *tiles);
    int rc = resize_or_copy(img, base, base, &tiles[0], st);
    if (rc)
        return rc;
    const double sw = (double)bw / (double)W, sh = (double)bh / (double)H;
    int64_t nw, nh;
    if (sw < sh) {
        nw = bw;
        nh = (int64_t)ceil((double)H * sw);
        nh = nh < bh ? nh : bh;
    } else {
        nh = bh;
        nw = (int64_t)ceil((double)W * sh);
        nw = nw < bw ? nw : bw;
    }
    vtok_image r = {0};
    if ((rc = resize_or_copy(img, nw, nh, &r, st)))
        goto fail;
    const int64_t px = (bw - nw) / 2, py = (bh - nh) / 2;
    /* Each crop straight from the resized image: the black canvas is implicit. */
    for (int64_t gy = 0; gy < gh; gy++)
        for (int64_t gx = 0; gx < gw; gx++) {
            vtok_image *t = &tiles[1 + gy * gw + gx];
            if ((rc = vt_image_alloc(t, crop, crop, st))) {
                vtok_image_free(&r);
                goto fail;
            }
            memset(t->data, 0, (size_t)(crop * crop * 3));
            for (int64_t y = 0; y < crop; y++) {
                const int64_t sy = gy * crop + y - py;
                if (sy < 0 || sy >= nh)
                    continue;
                int64_t x0 = gx * crop - px, x1 = x0 + crop; /* source columns */
                int64_t a = x0 < 0 ? 0 : x0, b = x1 > nw ? nw : x1;
                if (a < b)
                    memcpy(t->data + (y * crop + (a - x0)) * 3, r.data + (sy * nw + a) * 3,
                           (size_t)((b - a) * 3));
            }
        }
    vtok_image_free(&r);
    return 0;
fail:
    for (int64_t i = 0; i < 1 + gw * gh; i++)
        vtok_image_free(&tiles[i]);
    return rc;
}
