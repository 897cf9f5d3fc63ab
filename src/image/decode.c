/*
 * decode.c - the public image entry points: default params, format sniffing,
 * limit checks, dispatch to the per-format decoders, file loading, and the
 * EXIF orientation transposes.
 *
 * The contract is Pillow 9.4: vtok_image_decode returns the pixels of
 * Image.open(f).convert("RGB") (and, with exif_orientation, of
 * ImageOps.exif_transpose(Image.open(f)).convert("RGB")). The format files
 * (decode_jpeg.c, decode_png.c, decode_webp.c, decode_gif.c) each say which
 * Pillow behaviour they reproduce and why.
 *
 * Images are untrusted: every decoder calls vt_image_check_limits with the
 * size read from the header before it allocates pixel memory, so a tiny file
 * that declares a huge image is refused for the price of its header.
 * A limit field <= 0 in vtok_image_params means "use the default" (a
 * zero limit must not mean "unlimited"); the struct itself is read by the
 * size rule of vtok.h (core/ctx.c).
 */
#include "image.h"

#include "../io/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VT_IMG_DEFAULT_MAX_SIDE   65500
#define VT_IMG_DEFAULT_MAX_PIXELS 178956970 /* Pillow: 2 * MAX_IMAGE_PIXELS */
#define VT_IMG_MAX_FILE           ((size_t)1 << 30)

void vtok_image_params_init(vtok_image_params *p, size_t size)
{
    const vtok_image_params d = {
        .size = sizeof d,
        .max_width = VT_IMG_DEFAULT_MAX_SIDE,
        .max_height = VT_IMG_DEFAULT_MAX_SIDE,
        .max_pixels = VT_IMG_DEFAULT_MAX_PIXELS,
        .exif_orientation = 0,
        .jpeg_fast_scale = 0,
        .jpeg_target = 0,
    };
    vt_params_init(p, size, &d, sizeof d);
}

vt_image_format vt_image_sniff(const void *buf, size_t size)
{
    const uint8_t *b = buf;
    if (!b)
        return VT_IMG_UNKNOWN;
    /* Pillow's _accept rules: JPEG needs FF D8 FF, GIF the 6-byte version. */
    if (size >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        return VT_IMG_JPEG;
    if (size >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
        return VT_IMG_PNG;
    if (size >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
        return VT_IMG_WEBP;
    if (size >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0))
        return VT_IMG_GIF;
    return VT_IMG_UNKNOWN;
}

static int64_t limit_or(int64_t v, int64_t dflt)
{
    return v > 0 ? v : dflt;
}

int vt_image_check_limits(int64_t w, int64_t h, const vtok_image_params *p, vtok_status *st)
{
    int64_t mw = limit_or(p ? p->max_width : 0, VT_IMG_DEFAULT_MAX_SIDE);
    int64_t mh = limit_or(p ? p->max_height : 0, VT_IMG_DEFAULT_MAX_SIDE);
    int64_t mp = limit_or(p ? p->max_pixels : 0, VT_IMG_DEFAULT_MAX_PIXELS);
    if (w <= 0 || h <= 0)
        return vt_fail(st, VTOK_EFORMAT, "image has no pixels (%lld x %lld)", (long long)w,
                       (long long)h);
    if (w > mw)
        return vt_fail(st, VTOK_ELIMIT, "image width %lld exceeds the limit %lld", (long long)w,
                       (long long)mw);
    if (h > mh)
        return vt_fail(st, VTOK_ELIMIT, "image height %lld exceeds the limit %lld",
                       (long long)h, (long long)mh);
    int64_t n;
    if (!vt_mul_ok(w, h, &n) || n > mp)
        return vt_fail(st, VTOK_ELIMIT,
                       "image %lld x %lld has more pixels than the limit %lld (decompression bomb?)",
                       (long long)w, (long long)h, (long long)mp);
    /* The RGB buffer size must be representable (always true on 64-bit). */
    if ((uint64_t)n > SIZE_MAX / 4)
        return vt_fail(st, VTOK_ELIMIT, "image %lld x %lld is too large for this machine",
                       (long long)w, (long long)h);
    return VTOK_OK;
}

int vt_image_alloc(vtok_image *img, int64_t w, int64_t h, vtok_status *st)
{
    img->width = img->height = 0;
    img->data = vt_alloc((size_t)w * (size_t)h * 3);
    if (!img->data)
        return vt_fail(st, VTOK_ENOMEM, "out of memory for a %lld x %lld image", (long long)w,
                       (long long)h);
    img->width = w;
    img->height = h;
    return VTOK_OK;
}

/*
 * Orientation o (EXIF tag 0x0112) as PIL.ImageOps.exif_transpose applies it:
 * 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE,
 * 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90 (Pillow's rotations are
 * counter-clockwise). Destination pixel (x, y) of a dw x dh result takes the
 * source pixel computed below; 1 and unknown values are no-ops.
 */
int vt_image_orient(vtok_image *img, int o, const vtok_image_params *p, vtok_status *st)
{
    if (o < 2 || o > 8 || !img->data)
        return VTOK_OK;
    const int64_t w = img->width, h = img->height;
    const int swap = o >= 5;
    const int64_t dw = swap ? h : w, dh = swap ? w : h;
    if (swap) {
        int rc = vt_image_check_limits(dw, dh, p, st);
        if (rc) {
            vtok_image_free(img);
            return rc;
        }
    }
    uint8_t *dst = vt_alloc((size_t)w * (size_t)h * 3);
    if (!dst) {
        vtok_image_free(img);
        return vt_fail(st, VTOK_ENOMEM, "out of memory rotating a %lld x %lld image",
                       (long long)w, (long long)h);
    }
    const uint8_t *src = img->data;
    for (int64_t y = 0; y < dh; y++) {
        uint8_t *d = dst + (size_t)(y * dw) * 3;
        for (int64_t x = 0; x < dw; x++, d += 3) {
            int64_t sx, sy;
            switch (o) {
            case 2: sx = w - 1 - x; sy = y; break;
            case 3: sx = w - 1 - x; sy = h - 1 - y; break;
            case 4: sx = x; sy = h - 1 - y; break;
            case 5: sx = y; sy = x; break;
            case 6: sx = y; sy = h - 1 - x; break;
            case 7: sx = w - 1 - y; sy = h - 1 - x; break;
            default: sx = w - 1 - y; sy = x; break; /* 8 */
            }
            const uint8_t *s = src + (size_t)(sy * w + sx) * 3;
            d[0] = s[0];
            d[1] = s[1];
            d[2] = s[2];
        }
    }
    vt_free(img->data);
    img->data = dst;
    img->width = dw;
    img->height = dh;
    return VTOK_OK;
}

int vtok_image_decode(const void *buf, size_t size, const vtok_image_params *p, vtok_image *out,
                      vtok_status *st)
{
    if (!out)
        return vt_fail(st, VTOK_EINVAL, "vtok_image_decode: out is NULL");
    memset(out, 0, sizeof *out);
    if (!buf && size)
        return vt_fail(st, VTOK_EINVAL, "vtok_image_decode: buf is NULL");
    if (size == 0)
        return vt_fail(st, VTOK_EFORMAT, "image data is empty");
    vtok_image_params ip = vtok_image_default_params();
    int rc = vt_params_read(&ip, sizeof ip, p, "vtok_image_params", st);
    if (rc)
        return rc;
    p = &ip;
    switch (vt_image_sniff(buf, size)) {
    case VT_IMG_JPEG: rc = vt_decode_jpeg(buf, size, p, out, st); break;
    case VT_IMG_PNG:  rc = vt_decode_png(buf, size, p, out, st); break;
    case VT_IMG_WEBP: rc = vt_decode_webp(buf, size, p, out, st); break;
    case VT_IMG_GIF:  rc = vt_decode_gif(buf, size, p, out, st); break;
    default:
        return vt_fail(st, VTOK_EFORMAT, "unrecognized image format (not JPEG, PNG, WebP or GIF)");
    }
    if (rc != VTOK_OK) {
        vtok_image_free(out);
        return rc;
    }
    return VTOK_OK;
}

int vtok_image_load(const char *path, const vtok_image_params *p, vtok_image *out,
                    vtok_status *st)
{
    if (!out)
        return vt_fail(st, VTOK_EINVAL, "vtok_image_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path)
        return vt_fail(st, VTOK_EINVAL, "vtok_image_load: path is NULL");
    char *buf = NULL;
    size_t n = 0;
    int rc = vt_read_file(path, VT_IMG_MAX_FILE, &buf, &n, st);
    if (rc != VTOK_OK)
        return rc;
    rc = vtok_image_decode(buf, n, p, out, st);
    free(buf);
    if (rc != VTOK_OK && st) {
        /* Name the file: "photo.jpg: truncated JPEG ...". */
        char msg[sizeof st->msg];
        snprintf(msg, sizeof msg, "%.200s: %.300s", path, st->msg);
        memcpy(st->msg, msg, sizeof msg);
    }
    return rc;
}

void vtok_image_free(vtok_image *img)
{
    if (!img)
        return;
    vt_free(img->data);
    memset(img, 0, sizeof *img);
}
