/*
 * decode_webp.c - WebP (lossy, lossless, alpha, animated) through libwebp.
 *
 * Pillow 9.4 opens every WebP file with libwebp's WebPAnimDecoder (default
 * options: MODE_RGBA, not premultiplied) and convert("RGB") drops alpha.
 * libwebp's YUV->RGB and ARGB->RGB paths write the same colour bytes for
 * MODE_RGB and MODE_RGBA (alpha is a separate plane that is only copied), so
 * decoding straight to MODE_RGB with the default WebPDecoderConfig gives
 * Pillow's bytes without a 4-byte intermediate.
 *
 * Animated files: WebPAnimDecoder's first frame is a key frame, so its
 * canvas is zero-filled (transparent black: libwebp ignores the ANIM
 * background colour) and the first ANMF frame is decoded into it at its
 * offset without blending. libwebpdemux is not linked, so the RIFF chunks are
 * walked here, with the checks WebPDemux makes that matter for frame 0
 * (VP8X reserved flag bits clear, the frame inside the canvas, the frame
 * bitstream the size its ANMF header says).
 *
 * EXIF orientation (opt-in) comes from the first top-level EXIF chunk, as
 * Pillow's WebPDemuxGetChunk("EXIF") finds it.
 */
#include "image.h"

#include <string.h>

#include <webp/decode.h>

static uint32_t le24(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
}

static uint32_t le32(const uint8_t *p)
{
    return le24(p) | (uint32_t)p[3] << 24;
}

/* What the RIFF walk finds. */
typedef struct vt_webp_info {
    int            vp8x;        /* extended format */
    uint8_t        flags;       /* VP8X feature flags */
    int64_t        canvas_w, canvas_h;
    const uint8_t *exif;        /* first EXIF chunk payload */
    size_t         exif_size;
    const uint8_t *anmf;        /* first ANMF chunk payload */
    size_t         anmf_size;
} vt_webp_info;

/* Walk the top-level chunks of a RIFF WEBP file. Returns 0 or a message. */
static const char *webp_walk(const uint8_t *b, size_t n, vt_webp_info *wi)
{
    memset(wi, 0, sizeof *wi);
    uint32_t riff = le32(b + 4);
    size_t end = n;
    if ((uint64_t)riff + 8 < end)
        end = (size_t)riff + 8; /* data after the RIFF payload is not part of the file */
    size_t pos = 12;
    while (end - pos >= 8) {
        const uint8_t *tag = b + pos;
        uint32_t len = le32(b + pos + 4);
        size_t body = pos + 8;
        if (len > end - body)
            return "truncated WebP (chunk extends past the end of the data)";
        if (pos == 12 && memcmp(tag, "VP8X", 4) == 0) {
            if (len < 10)
                return "invalid WebP: VP8X chunk too short";
            wi->vp8x = 1;
            wi->flags = b[body];
            wi->canvas_w = (int64_t)le24(b + body + 4) + 1;
            wi->canvas_h = (int64_t)le24(b + body + 7) + 1;
        } else if (memcmp(tag, "EXIF", 4) == 0 && !wi->exif) {
            wi->exif = b + body;
            wi->exif_size = len;
        } else if (memcmp(tag, "ANMF", 4) == 0 && !wi->anmf) {
            wi->anmf = b + body;
            wi->anmf_size = len;
        }
        pos = body + len + (len & 1);
        if (pos > end)
            break; /* a missing pad byte at the very end is tolerated */
    }
    return NULL;
}

/* Decode one bitstream (optionally preceded by ALPH) into RGB rows. */
static VP8StatusCode webp_decode_rgb(const uint8_t *data, size_t size, uint8_t *dst,
                                     int64_t stride, size_t dst_size)
{
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg))
        return VP8_STATUS_INVALID_PARAM;
    cfg.output.colorspace = MODE_RGB;
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA.rgba = dst;
    cfg.output.u.RGBA.stride = (int)stride;
    cfg.output.u.RGBA.size = dst_size;
    VP8StatusCode s = WebPDecode(data, size, &cfg);
    WebPFreeDecBuffer(&cfg.output);
    return s;
}

static int webp_status_error(VP8StatusCode s, vtok_status *st)
{
    if (s == VP8_STATUS_NOT_ENOUGH_DATA)
        return vt_fail(st, VTOK_EFORMAT, "truncated WebP");
    if (s == VP8_STATUS_OUT_OF_MEMORY)
        return vt_fail(st, VTOK_ENOMEM, "out of memory decoding WebP");
    if (s == VP8_STATUS_UNSUPPORTED_FEATURE)
        return vt_fail(st, VTOK_EUNSUPPORTED, "unsupported WebP feature");
    return vt_fail(st, VTOK_EFORMAT, "invalid WebP (libwebp status %d)", (int)s);
}

/* Frame 0 of an animation: the ANMF header, then ALPH? + VP8/VP8L chunks. */
static int webp_decode_anim(const vt_webp_info *wi, const vtok_image_params *p,
                            vtok_image *out, vtok_status *st)
{
    if (!wi->anmf || wi->anmf_size < 16 + 8)
        return vt_fail(st, VTOK_EFORMAT, "invalid WebP: animation without frames");
    const uint8_t *a = wi->anmf;
    int64_t fx = 2 * (int64_t)le24(a), fy = 2 * (int64_t)le24(a + 3);
    int64_t fw = (int64_t)le24(a + 6) + 1, fh = (int64_t)le24(a + 9) + 1;
    if (fx + fw > wi->canvas_w || fy + fh > wi->canvas_h)
        return vt_fail(st, VTOK_EFORMAT, "invalid WebP: frame outside the canvas");
    /* Find the frame's bitstream: from ALPH (if it comes first) to VP8/VP8L. */
    const uint8_t *start = NULL, *q = a + 16, *qend = a + wi->anmf_size;
    size_t fsize = 0;
    while (qend - q >= 8) {
        uint32_t len = le32(q + 4);
        if (len > (size_t)(qend - q) - 8)
            return vt_fail(st, VTOK_EFORMAT, "truncated WebP frame");
        if (memcmp(q, "ALPH", 4) == 0 && !start) {
            start = q;
        } else if (memcmp(q, "VP8 ", 4) == 0 || memcmp(q, "VP8L", 4) == 0) {
            if (!start || memcmp(q, "VP8L", 4) == 0)
                start = q; /* VP8L carries its own alpha */
            fsize = (size_t)(q + 8 + len - start);
            break;
        }
        q += 8 + (size_t)len + (len & 1);
    }
    if (!start || !fsize)
        return vt_fail(st, VTOK_EFORMAT, "invalid WebP: frame without image data");
    WebPBitstreamFeatures ff;
    VP8StatusCode s = WebPGetFeatures(start, fsize, &ff);
    if (s != VP8_STATUS_OK)
        return webp_status_error(s, st);
    if (ff.width != fw || ff.height != fh)
        return vt_fail(st, VTOK_EFORMAT, "invalid WebP: frame size does not match its header");
    int rc = vt_image_alloc(out, wi->canvas_w, wi->canvas_h, st);
    if (rc != VTOK_OK)
        return rc;
    size_t total = (size_t)wi->canvas_w * (size_t)wi->canvas_h * 3;
    memset(out->data, 0, total);
    size_t off = ((size_t)fy * (size_t)wi->canvas_w + (size_t)fx) * 3;
    s = webp_decode_rgb(start, fsize, out->data + off, wi->canvas_w * 3, total - off);
    if (s != VP8_STATUS_OK) {
        vtok_image_free(out);
        return webp_status_error(s, st);
    }
    (void)p;
    return VTOK_OK;
}

int vt_decode_webp(const void *buf, size_t size, const vtok_image_params *p, vtok_image *out,
                   vtok_status *st)
{
    memset(out, 0, sizeof *out);
    const uint8_t *b = buf;
    if (size < 12 || memcmp(b, "RIFF", 4) != 0 || memcmp(b + 8, "WEBP", 4) != 0)
        return vt_fail(st, VTOK_EFORMAT, "not a WebP file");
    vt_webp_info wi;
    const char *bad = webp_walk(b, size, &wi);
    if (bad)
        return vt_fail(st, VTOK_EFORMAT, "%s", bad);
    if (wi.vp8x && (wi.flags & ~0x3E))
        return vt_fail(st, VTOK_EFORMAT, "invalid WebP: reserved VP8X flags set");

    WebPBitstreamFeatures f;
    VP8StatusCode s = WebPGetFeatures(b, size, &f);
    if (s != VP8_STATUS_OK)
        return webp_status_error(s, st);
    int64_t w = f.width, h = f.height;
    int rc = vt_image_check_limits(w, h, p, st);
    int orient = -1;
    if (rc == VTOK_OK && p->exif_orientation && wi.exif) {
        orient = vt_exif_orientation(wi.exif, wi.exif_size);
        if (orient >= 5 && orient <= 8)
            rc = vt_image_check_limits(h, w, p, st);
    }
    if (rc != VTOK_OK)
        return rc;

    if (f.has_animation) {
        if (!wi.vp8x || wi.canvas_w != w || wi.canvas_h != h)
            return vt_fail(st, VTOK_EFORMAT, "invalid WebP: animation without a canvas");
        rc = webp_decode_anim(&wi, p, out, st);
        if (rc != VTOK_OK)
            return rc;
    } else {
        rc = vt_image_alloc(out, w, h, st);
        if (rc != VTOK_OK)
            return rc;
        s = webp_decode_rgb(b, size, out->data, w * 3, (size_t)w * (size_t)h * 3);
        if (s != VP8_STATUS_OK) {
            vtok_image_free(out);
            return webp_status_error(s, st);
        }
    }
    if (orient > 1) {
        rc = vt_image_orient(out, orient, p, st);
        if (rc != VTOK_OK) {
            vtok_image_free(out);
            return rc;
        }
    }
    return VTOK_OK;
}
