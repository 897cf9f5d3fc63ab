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
 * offset without blending; the frame's size is its bitstream's (WebPDemux
 * ignores the ANMF width and height).
 *
 * libwebpdemux is not linked, so the RIFF chunks are walked here with the
 * rules of demux.c, which decide which files Pillow can open at all: the
 * whole RIFF payload present, complete chunks, VP8X reserved flag bits
 * clear, ANIM before ANMF, every frame [ALPH] + VP8/VP8L and inside the
 * canvas, a still image exactly the canvas size, ALPH ignored without the
 * VP8X alpha flag. Each frame is decoded from its own chunks, as
 * WebPAnimDecoder does (not from the whole file).
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

/* One frame as WebPDemux stores it. */
typedef struct vt_webp_frame {
    int64_t        x, y, w, h;  /* offset from ANMF, size from the bitstream */
    const uint8_t *data;        /* from ALPH (if kept) to the end of VP8/VP8L */
    size_t         size;        /* 0: no frame */
} vt_webp_frame;

/* What the RIFF walk finds. */
typedef struct vt_webp_info {
    int            vp8x;        /* extended format */
    uint8_t        flags;       /* VP8X feature flags */
    int64_t        canvas_w, canvas_h;
    const uint8_t *exif;        /* first EXIF chunk payload (if the flag says so) */
    size_t         exif_size;
    int            animated;
    int            n_frames;
    vt_webp_frame  first;       /* the still image, or animation frame 1 */
} vt_webp_info;

#define WEBP_MAX_CHUNK (~0u - 8 - 1) /* libwebp's MAX_CHUNK_PAYLOAD */
#define WEBP_ALPHA_FLAG 0x10
#define WEBP_ANIM_FLAG  0x02

/* A chunk header at q with `end` the end of the RIFF payload: its padded
 * payload must fit. Returns the whole padded chunk size or 0. */
static size_t webp_chunk(const uint8_t *q, const uint8_t *end)
{
    uint32_t n = le32(q + 4);
    if (n > WEBP_MAX_CHUNK || (size_t)n + (n & 1) > (size_t)(end - q) - 8)
        return 0;
    return 8 + (size_t)n + (n & 1);
}

/* demux.c StoreFrame: from q, an optional ALPH then VP8 or VP8L (VP8L must
 * not follow ALPH); the first other chunk ends the frame. Every chunk header
 * looked at must fit before `end`. *stop is where parsing ends. keep_alpha 0
 * drops ALPH (a still image without the VP8X alpha flag). */
static const char *webp_store_frame(const uint8_t *q, const uint8_t *end, int keep_alpha,
                                    vt_webp_frame *f, const uint8_t **stop)
{
    const uint8_t *alpha = NULL, *image = NULL;
    size_t image_size = 0;
    for (;;) {
        if (end - q < 8) {
            if (q != end)
                return "truncated WebP (partial chunk header)";
            break;
        }
        size_t sz = webp_chunk(q, end);
        if (!sz)
            return "truncated WebP (chunk extends past the end of the data)";
        if (memcmp(q, "ALPH", 4) == 0 && !alpha) {
            alpha = q;
        } else if ((memcmp(q, "VP8 ", 4) == 0 || memcmp(q, "VP8L", 4) == 0) && !image) {
            if (q[3] == 'L' && alpha)
                return "invalid WebP: ALPH before VP8L";
            image = q;
            image_size = sz;
        } else {
            break;
        }
        q += sz;
    }
    *stop = q;
    if (!keep_alpha)
        alpha = NULL;
    if (!alpha && !image)
        return NULL; /* no frame */
    if (!image)
        return "invalid WebP: frame without image data";
    if (alpha && alpha > image)
        return "invalid WebP: ALPH after the image data";
    WebPBitstreamFeatures ff;
    if (WebPGetFeatures(image, image_size, &ff) != VP8_STATUS_OK)
        return "invalid WebP: bad image bitstream";
    f->w = ff.width;
    f->h = ff.height;
    f->data = alpha ? alpha : image;
    f->size = (size_t)(image + image_size - f->data);
    return NULL;
}

/* Walk the chunks as WebPDemux does (Pillow opens every WebP through it, and
 * it rejects a file it cannot parse to the end of the RIFF payload).
 * Returns 0 or a message. */
static const char *webp_walk(const uint8_t *b, size_t n, vt_webp_info *wi)
{
    memset(wi, 0, sizeof *wi);
    uint32_t riff = le32(b + 4);
    if (riff < 8 || riff > WEBP_MAX_CHUNK)
        return "invalid WebP: bad RIFF size";
    if ((uint64_t)riff + 8 > n)
        return "truncated WebP (data ends before the RIFF size)";
    const uint8_t *end = b + (size_t)riff + 8; /* bytes past the RIFF payload are ignored */
    const uint8_t *q = b + 12, *stop;
    const char *bad;
    if (end - q < 8)
        return "truncated WebP (no chunks)";

    if (memcmp(q, "VP8 ", 4) == 0 || memcmp(q, "VP8L", 4) == 0) { /* simple format */
        if ((bad = webp_store_frame(q, end, 0, &wi->first, &stop)))
            return bad;
        if (!wi->first.size)
            return "invalid WebP: no image";
        wi->canvas_w = wi->first.w;
        wi->canvas_h = wi->first.h;
        wi->n_frames = 1;
        return NULL; /* WebPDemux reads nothing after the image */
    }
    if (memcmp(q, "VP8X", 4) != 0)
        return "invalid WebP: unknown first chunk";
    size_t sz = webp_chunk(q, end);
    if (!sz || sz < 8 + 10)
        return "invalid WebP: bad VP8X chunk";
    wi->vp8x = 1;
    wi->flags = q[8];
    wi->canvas_w = (int64_t)le24(q + 12) + 1;
    wi->canvas_h = (int64_t)le24(q + 15) + 1;
    if (wi->canvas_w * wi->canvas_h >= ((int64_t)1 << 32))
        return "invalid WebP: canvas too large";
    wi->animated = (wi->flags & WEBP_ANIM_FLAG) != 0;
    q += sz;

    int anim_chunks = 0;
    while (q < end) {
        if (end - q < 8)
            return "truncated WebP (partial chunk header)";
        if (!(sz = webp_chunk(q, end)))
            return "truncated WebP (chunk extends past the end of the data)";
        if (!memcmp(q, "VP8X", 4))
            return "invalid WebP: second VP8X chunk";
        if (!memcmp(q, "ALPH", 4) || !memcmp(q, "VP8 ", 4) || !memcmp(q, "VP8L", 4)) {
            if (anim_chunks || wi->animated)
                return "invalid WebP: image data outside ANMF in an animation";
            if (wi->n_frames)
                return "invalid WebP: more than one image";
            vt_webp_frame f = {0};
            if ((bad = webp_store_frame(q, end, (wi->flags & WEBP_ALPHA_FLAG) != 0, &f, &stop)))
                return bad;
            if (f.size) {
                wi->first = f;
                wi->n_frames = 1;
            }
            q = stop;
            continue;
        }
        if (!memcmp(q, "ANIM", 4)) {
            if (sz < 8 + 6)
                return "invalid WebP: ANIM chunk too short";
            anim_chunks++;
        } else if (!memcmp(q, "ANMF", 4)) {
            if (!anim_chunks)
                return "invalid WebP: ANMF before ANIM";
            if (sz < 8 + 16)
                return "invalid WebP: ANMF chunk too short";
            vt_webp_frame f = {0};
            f.x = 2 * (int64_t)le24(q + 8);
            f.y = 2 * (int64_t)le24(q + 11);
            const uint8_t *payload = q + 8 + 16;
            if ((bad = webp_store_frame(payload, end, 1, &f, &stop)))
                return bad;
            if ((size_t)(stop - payload) > sz - 8 - 16)
                return "invalid WebP: frame data overruns its ANMF chunk";
            if (f.size && wi->animated && wi->n_frames++ == 0)
                wi->first = f;
            if (f.size && wi->animated &&
                (f.x + f.w > wi->canvas_w || f.y + f.h > wi->canvas_h))
                return "invalid WebP: frame outside the canvas";
            q = stop; /* WebPDemux goes on from the end of the frame's chunks */
            continue;
        } else if (!memcmp(q, "EXIF", 4) && !wi->exif && (wi->flags & 0x08)) {
            wi->exif = q + 8;
            wi->exif_size = le32(q + 4);
        }
        q += sz;
    }
    if (wi->flags & ~0x3E)
        return "invalid WebP: reserved VP8X flags set";
    if (!wi->n_frames)
        return wi->animated ? "invalid WebP: animation without frames" : "invalid WebP: no image";
    if (!wi->animated && (wi->first.w != wi->canvas_w || wi->first.h != wi->canvas_h))
        return "invalid WebP: image size differs from the canvas";
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

/* The still image, or frame 1 of an animation on a zeroed canvas, decoded
 * from the same bytes WebPAnimDecoder hands to WebPDecode (the frame's
 * chunks, not the whole file: libwebp can accept one and not the other when
 * the bitstream is damaged). */
static int webp_decode_frame(const vt_webp_info *wi, vtok_image *out, vtok_status *st)
{
    const vt_webp_frame *f = &wi->first;
    int rc = vt_image_alloc(out, wi->canvas_w, wi->canvas_h, st);
    if (rc != VTOK_OK)
        return rc;
    size_t total = (size_t)wi->canvas_w * (size_t)wi->canvas_h * 3;
    if (wi->animated)
        memset(out->data, 0, total);
    size_t off = ((size_t)f->y * (size_t)wi->canvas_w + (size_t)f->x) * 3;
    VP8StatusCode s = webp_decode_rgb(f->data, f->size, out->data + off, wi->canvas_w * 3,
                                      total - off);
    if (s != VP8_STATUS_OK) {
        vtok_image_free(out);
        return webp_status_error(s, st);
    }
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
    int64_t w = wi.canvas_w, h = wi.canvas_h;
    int rc = vt_image_check_limits(w, h, p, st);
    int orient = -1;
    if (rc == VTOK_OK && p->exif_orientation && wi.exif) {
        orient = vt_exif_orientation(wi.exif, wi.exif_size);
        if (orient >= 5 && orient <= 8)
            rc = vt_image_check_limits(h, w, p, st);
    }
    if (rc != VTOK_OK)
        return rc;
    rc = webp_decode_frame(&wi, out, st);
    if (rc != VTOK_OK)
        return rc;
    return vt_image_orient(out, orient, p, st); /* frees out on failure */
}
