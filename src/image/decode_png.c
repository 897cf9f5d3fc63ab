/*
 * decode_png.c - PNG through libpng 1.6, converted to RGB as Pillow 9.4 does.
 *
 * libpng only unfilters and de-interlaces here; every sample conversion is
 * done below to match PngImagePlugin's modes and Convert.c:
 *   gray 1-bit      "1"   -> 0 or 255
 *   gray 2/4/8-bit  "L"   (L;2 scales by 0x55, L;4 by 0x11) -> replicated
 *   gray 16-bit     "I"   (I;16B) -> clipped to 0..255, NOT scaled: any value
 *                         >= 255 is white (Convert.c i2rgb)
 *   gray+alpha      "LA"  (16-bit: high byte) -> L replicated, alpha dropped
 *   RGB, RGBA       (16-bit: high byte, libpng's strip_16) -> alpha dropped
 *   palette         "P"   -> through PLTE; indices past the end of PLTE get
 *                         Pillow's default palette entry (i, i, i)
 * tRNS, gAMA, cHRM, sRGB, iCCP, sBIT and bKGD never change the pixels
 * (convert("RGB") drops transparency and Pillow applies no colour
 * management), so libpng is told to skip them.
 *
 * Pillow's PNG reader differs from libpng's defaults in what it accepts, and
 * this file follows Pillow where it matters for real files:
 *   - CRCs are verified for every chunk before the first IDAT (Pillow's
 *     ChunkStream.crc) and ignored from IDAT on (Pillow never reads them), so
 *     libpng runs with PNG_CRC_QUIET_USE after our own pre-IDAT check;
 *   - once the last row is decoded the image is complete: a missing IEND,
 *     a truncated zlib trailer or junk after the image data do not fail
 *     (Pillow stops reading at the last row); libpng errors raised while
 *     finishing the IDAT stream after the last row are therefore ignored.
 *     A bad adler32 fails only when zlib meets it while producing the last
 *     row, which depends on how the input is fed: libpng is set to read
 *     IDAT data in the same pieces as Pillow (<= 64 KiB of one chunk). A file
 *     that ends inside the image data decodes if the rows are all there;
 *   - but a chunk after the image data that is cut short fails, as Pillow
 *     reads each one up to IEND (png_postcheck), or for an animation up to
 *     the next fcTL. An APNG shows its default image (IDAT), as Pillow's
 *     frame 0.
 * Errors go through png_error -> our handler -> png_longjmp to the setjmp in
 * vt_decode_png; nothing is printed.
 *
 * EXIF orientation (opt-in) follows Image.getexif for PNG: the eXIf chunk,
 * else a tEXt "exif" entry, else ImageMagick's "Raw profile type exif" text;
 * if none of these holds tag 0x0112, the XMP packet (key
 * "XML:com.adobe.xmp"). Chunks after IDAT count, as Pillow loads them.
 */
#include "image.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <png.h>

/* Everything libpng's callbacks and the error path need. It is handed to
 * libpng (so it lives in memory across the longjmp); the scalars the error
 * path reads are also volatile locals in vt_decode_png. */
typedef struct vt_png_src {
    const uint8_t *p;
    size_t         n, pos;
    char           msg[200];
    uint8_t        pal[768];
} vt_png_src;

static void png_on_error(png_structp png, png_const_charp msg)
{
    vt_png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "error");
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void png_read_mem(png_structp png, png_bytep dst, size_t len)
{
    vt_png_src *s = png_get_io_ptr(png);
    if (s->n - s->pos < len)
        png_error(png, "truncated PNG (data ends early)");
    memcpy(dst, s->p + s->pos, len);
    s->pos += len;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    static const uint32_t nib[16] = {
        0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4,
        0x4db26158, 0x5005713c, 0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c,
        0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
    };
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ nib[crc & 15];
        crc = (crc >> 4) ^ nib[crc & 15];
    }
    return crc;
}

/* Pillow's pass over the chunks before IDAT (PngImageFile._open): each must
 * be complete and its CRC must match. APNG chunks are checked as Pillow's
 * handlers check them: an fcTL before IDAT must be whole, numbered from 0
 * and inside the image; one that does not cover the whole image would make
 * Pillow decode IDAT into that rectangle, which is refused here. *animated
 * is Pillow's is_animated (a valid acTL, counting IDAT as a frame when no
 * fcTL precedes it). Returns 0 (*idat: offset of the first IDAT or IEND) or
 * a message. */
static const char *png_precheck(const uint8_t *b, size_t n, size_t *idat, int *animated)
{
    size_t pos = 8;
    uint32_t w = 0, h = 0;
    int64_t actl = -1; /* frames from acTL, -1 none, -2 invalid */
    int fctl = 0;
    for (;;) {
        if (n - pos < 8)
            return "truncated PNG (data ends before the image data)";
        uint32_t len = be32(b + pos);
        const uint8_t *type = b + pos + 4, *d = b + pos + 8;
        for (int i = 0; i < 4; i++) {
            uint8_t c = type[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
                return "invalid PNG chunk type";
        }
        if (memcmp(type, "IDAT", 4) == 0 || memcmp(type, "IEND", 4) == 0) {
            *idat = pos;
            *animated = actl >= 1 && actl + (fctl ? 0 : 1) > 1;
            return NULL; /* libpng takes it from here */
        }
        if (len > n - pos - 8 || n - pos - 8 - len < 4)
            return "truncated PNG (data ends before the image data)";
        uint32_t crc = crc32_update(0xffffffffu, type, 4 + (size_t)len) ^ 0xffffffffu;
        if (crc != be32(b + pos + 8 + len))
            return "broken PNG file (bad chunk checksum)";
        if (memcmp(type, "IHDR", 4) == 0 && len >= 8) {
            w = be32(d);
            h = be32(d + 4);
        } else if (memcmp(type, "acTL", 4) == 0) {
            if (len < 8)
                return "APNG contains truncated acTL chunk";
            uint32_t nf = be32(d);
            actl = actl != -1 ? -2 : (nf == 0 || nf > 0x80000000u) ? -2 : (int64_t)nf;
        } else if (memcmp(type, "fcTL", 4) == 0) {
            if (len < 26)
                return "APNG contains truncated fcTL chunk";
            if (be32(d) != (uint32_t)fctl)
                return "APNG contains frame sequence errors";
            uint64_t fw = be32(d + 4), fh = be32(d + 8), fx = be32(d + 12), fy = be32(d + 16);
            if (fx + fw > w || fy + fh > h)
                return "APNG contains invalid frames";
            fctl++;
            if (fx || fy || fw != w || fh != h)
                return "APNG default image smaller than the image (not supported)";
        }
        pos += 12 + (size_t)len;
    }
}

/* A file that ends inside the data of an IDAT chunk: Pillow decodes from the
 * bytes that are there and succeeds if they hold every row (a download cut
 * in the zlib trailer, say), while libpng refuses to read a short chunk. So
 * libpng gets a copy whose last IDAT is cut to the bytes present and followed
 * by IEND. Returns the copy (vt_free it) or NULL when no patch is needed. */
static uint8_t *png_patch_truncated(const uint8_t *b, size_t n, size_t pos, size_t *out_n)
{
    while (n - pos >= 8 && memcmp(b + pos + 4, "IDAT", 4) == 0) {
        uint32_t len = be32(b + pos);
        if (len <= n - pos - 8) {
            pos += 8 + (size_t)len;
            if (n - pos < 4)
                return NULL;
            pos += 4;
            continue;
        }
        size_t avail = n - pos - 8;
        static const uint8_t tail[16] = {0, 0, 0, 0, /* IDAT CRC, not checked */
                                         0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
        uint8_t *c = vt_alloc(n + sizeof tail);
        if (!c)
            return NULL;
        memcpy(c, b, n);
        c[pos] = (uint8_t)(avail >> 24);
        c[pos + 1] = (uint8_t)(avail >> 16);
        c[pos + 2] = (uint8_t)(avail >> 8);
        c[pos + 3] = (uint8_t)avail;
        memcpy(c + n, tail, sizeof tail);
        *out_n = n + sizeof tail;
        return c;
    }
    return NULL;
}

/* Pillow's load_end: after the image data it reads every chunk up to IEND,
 * and fails if one of them is cut short (its CRC is not read; a partial
 * chunk header or a non-letter chunk type just ends the walk). Returns 0 or
 * a message. */
static const char *png_postcheck(const uint8_t *b, size_t n, size_t pos, int animated)
{
    while (n - pos >= 8 && memcmp(b + pos + 4, "IDAT", 4) == 0) { /* the IDAT run */
        uint32_t len = be32(b + pos);
        if (len > n - pos - 8)
            return NULL; /* ends inside the image data: nothing follows */
        pos += 8 + (size_t)len;
        pos += n - pos < 4 ? n - pos : 4;
    }
    while (n - pos >= 8) {
        uint32_t len = be32(b + pos);
        const uint8_t *type = b + pos + 4;
        for (int i = 0; i < 4; i++)
            if (!((type[i] >= 'A' && type[i] <= 'Z') || (type[i] >= 'a' && type[i] <= 'z')))
                return NULL;
        if (memcmp(type, "IEND", 4) == 0 || (animated && memcmp(type, "fcTL", 4) == 0))
            return NULL; /* an animation's next frame starts: Pillow stops */
        if (len > n - pos - 8)
            return "truncated PNG (a chunk after the image data is cut short)";
        pos += 8 + (size_t)len;
        pos += n - pos < 4 ? n - pos : 4;
    }
    return NULL;
}

/* libpng allocates a chunk's declared length before reading it, so a tiny
 * file that declares a 2 GB text chunk after the image data costs 2 GB. The
 * chunks png_read_end would see must therefore fit in the data; when one
 * does not, the metadata after IDAT is not read (Pillow fails on such a file
 * anyway unless it is an animation that stops at fcTL). */
static int png_tail_fits(const uint8_t *b, size_t n, size_t pos)
{
    while (n - pos >= 8) {
        uint32_t len = be32(b + pos);
        if (memcmp(b + pos + 4, "IEND", 4) == 0)
            return 1;
        if (len > n - pos - 8)
            return 0;
        pos += 8 + (size_t)len;
        pos += n - pos < 4 ? n - pos : 4;
    }
    return 1;
}

/* Chunks that cannot change convert("RGB") output: skip them unread. */
static const png_byte png_skip_always[] = "bKGD\0cHRM\0gAMA\0hIST\0iCCP\0oFFs\0pCAL\0pHYs\0"
                                          "sBIT\0sCAL\0sPLT\0sRGB\0tIME\0tRNS\0";
static const png_byte png_skip_meta[] = "eXIf\0iTXt\0tEXt\0zTXt\0";

/* One decoded (libpng-unpacked) row to RGB; see the table at the top. */
static void png_row_to_rgb(const uint8_t *r, uint8_t *o, int64_t w, int ct, int bd,
                           const uint8_t *pal)
{
    switch (ct) {
    case PNG_COLOR_TYPE_GRAY:
        if (bd == 16) {
            for (int64_t x = 0; x < w; x++, o += 3) {
                unsigned v = (unsigned)r[2 * x] << 8 | r[2 * x + 1];
                o[0] = o[1] = o[2] = (uint8_t)(v > 255 ? 255 : v);
            }
        } else {
            unsigned scale = bd == 1 ? 255 : bd == 2 ? 0x55 : bd == 4 ? 0x11 : 1;
            for (int64_t x = 0; x < w; x++, o += 3)
                o[0] = o[1] = o[2] = (uint8_t)(r[x] * scale);
        }
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        for (int64_t x = 0; x < w; x++, o += 3)
            o[0] = o[1] = o[2] = r[2 * x];
        break;
    case PNG_COLOR_TYPE_RGB:
        memcpy(o, r, (size_t)w * 3);
        break;
    case PNG_COLOR_TYPE_RGB_ALPHA:
        for (int64_t x = 0; x < w; x++, o += 3, r += 4) {
            o[0] = r[0];
            o[1] = r[1];
            o[2] = r[2];
        }
        break;
    default: /* palette */
        for (int64_t x = 0; x < w; x++, o += 3) {
            const uint8_t *c = pal + 3 * r[x];
            o[0] = c[0];
            o[1] = c[1];
            o[2] = c[2];
        }
        break;
    }
}

/* Image.getexif's sources for a PNG, in Pillow's order of preference. */
static int png_orientation(png_structp png, png_infop info)
{
    int o = -1;
    png_bytep ex = NULL;
    png_uint_32 nex = 0;
    png_textp text = NULL;
    int ntext = 0;
    png_get_text(png, info, &text, &ntext);
    const png_text *raw_exif = NULL, *raw_profile = NULL, *xmp = NULL;
    for (int i = 0; i < ntext; i++) { /* later chunks win, as in Pillow's info dict */
        if (!text[i].key)
            continue;
        if (strcmp(text[i].key, "exif") == 0 && text[i].compression == PNG_TEXT_COMPRESSION_NONE)
            raw_exif = &text[i];
        else if (strcmp(text[i].key, "Raw profile type exif") == 0)
            raw_profile = &text[i];
        else if (strcmp(text[i].key, "XML:com.adobe.xmp") == 0)
            xmp = &text[i];
    }
    if (png_get_eXIf_1(png, info, &nex, &ex) && ex && nex) {
        o = vt_exif_orientation(ex, nex);
    } else if (raw_exif) {
        o = vt_exif_orientation((const uint8_t *)raw_exif->text, raw_exif->text_length);
    } else if (raw_profile) {
        const png_text *t = raw_profile;
        size_t len = t->compression > 0 ? t->itxt_length : t->text_length;
        uint8_t *blob = NULL;
        size_t nblob = 0;
        if (t->text && vt_exif_from_raw_profile((const uint8_t *)t->text, len, &blob, &nblob) == 0) {
            o = vt_exif_orientation(blob, nblob);
            vt_free(blob);
        }
    }
    if (o < 0 && xmp && xmp->text) {
        size_t len = xmp->compression > 0 ? xmp->itxt_length : xmp->text_length;
        o = vt_xmp_orientation((const uint8_t *)xmp->text, len);
    }
    return o;
}

static int png_decode(const uint8_t *buf, size_t size, size_t idat, const vtok_image_params *p,
                      vtok_image *out, vtok_status *st)
{
    vt_png_src src = {.p = buf, .n = size, .pos = 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error,
                                             png_on_warning);
    if (!png)
        return vt_fail(st, VTOK_ENOMEM, "out of memory starting libpng");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return vt_fail(st, VTOK_ENOMEM, "out of memory starting libpng");
    }

    uint8_t *volatile raw = NULL;  /* one row, or the whole image when interlaced */
    volatile int64_t next_row = 0; /* non-interlaced: rows converted so far */
    volatile int interlaced = 0;
    volatile int reading = 0;      /* in the row loop */
    volatile int limit_rc = VTOK_OK;
    volatile int64_t w = 0, h = 0;
    volatile int ct = 0, bd = 0;
    volatile size_t rowbytes = 0;
    uint8_t *pal = src.pal;

    if (setjmp(png_jmpbuf(png))) {
        /* Errors while libpng finishes the IDAT stream after the last row do
         * not count (see the top of the file). */
        int complete = 0;
        if (reading && limit_rc == VTOK_OK) {
            if (interlaced)
                complete = png_get_current_pass_number(png) >= 7;
            else
                complete = next_row == h - 1 && png_get_current_row_number(png) >= (png_uint_32)h;
        }
        if (complete) {
            if (interlaced) {
                for (int64_t y = 0; y < h; y++)
                    png_row_to_rgb(raw + (size_t)y * rowbytes, out->data + (size_t)y * (size_t)w * 3,
                                   w, ct, bd, pal);
            } else {
                png_row_to_rgb(raw, out->data + (size_t)(h - 1) * (size_t)w * 3, w, ct, bd, pal);
            }
            goto done;
        }
        png_destroy_read_struct(&png, &info, NULL);
        vt_free(raw);
        vtok_image_free(out);
        if (limit_rc != VTOK_OK)
            return limit_rc;
        return vt_fail(st, VTOK_EFORMAT, "invalid PNG: %s", src.msg);
    }

    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
    /* Feed zlib at most 64 KiB of one IDAT chunk at a time, as Pillow's
     * load_read does: whether the adler32 trailer is checked depends on it. */
    png_set_compression_buffer_size(png, 65536);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, png_skip_always,
                                (int)(sizeof png_skip_always / 5));
    if (!p->exif_orientation)
        png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, png_skip_meta,
                                    (int)(sizeof png_skip_meta / 5));
    png_set_read_fn(png, &src, png_read_mem);
    png_read_info(png, info);

    png_uint_32 pw, ph;
    int pit, pbd, pct;
    png_get_IHDR(png, info, &pw, &ph, &pbd, &pct, &pit, NULL, NULL);
    w = pw;
    h = ph;
    bd = pbd;
    ct = pct;
    int rc = vt_image_check_limits(w, h, p, st);
    if (rc != VTOK_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return rc;
    }

    for (int i = 0; i < 256; i++) /* Pillow's default palette: a gray ramp */
        pal[3 * i] = pal[3 * i + 1] = pal[3 * i + 2] = (uint8_t)i;
    if (ct == PNG_COLOR_TYPE_PALETTE) {
        png_colorp plte = NULL;
        int np = 0;
        if (png_get_PLTE(png, info, &plte, &np) && plte) {
            for (int i = 0; i < np && i < 256; i++) {
                pal[3 * i] = plte[i].red;
                pal[3 * i + 1] = plte[i].green;
                pal[3 * i + 2] = plte[i].blue;
            }
        }
    }

    if (bd < 8)
        png_set_packing(png);
    if (bd == 16 && ct != PNG_COLOR_TYPE_GRAY)
        png_set_strip_16(png);
    int passes = png_set_interlace_handling(png);
    interlaced = passes > 1;
    png_read_update_info(png, info);
    rowbytes = png_get_rowbytes(png, info);
    {
        /* What the conversion expects per pixel after the transforms. */
        int bpp = ct == PNG_COLOR_TYPE_GRAY ? (bd == 16 ? 2 : 1)
                : ct == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                : ct == PNG_COLOR_TYPE_RGB ? 3
                : ct == PNG_COLOR_TYPE_RGB_ALPHA ? 4 : 1;
        if (rowbytes < (size_t)w * (size_t)bpp)
            png_error(png, "unexpected row size");
    }

    rc = vt_image_alloc(out, w, h, st);
    if (rc != VTOK_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return rc;
    }
    if (interlaced) {
        int64_t total;
        if (!vt_mul_ok((int64_t)rowbytes, h, &total) || (uint64_t)total > SIZE_MAX ||
            !(raw = vt_alloc((size_t)total))) {
            limit_rc = vt_fail(st, VTOK_ENOMEM, "out of memory for an interlaced PNG");
            png_error(png, "out of memory");
        }
        reading = 1;
        for (int pass = 0; pass < passes; pass++)
            for (int64_t y = 0; y < h; y++)
                png_read_row(png, raw + (size_t)y * rowbytes, NULL);
        for (int64_t y = 0; y < h; y++)
            png_row_to_rgb(raw + (size_t)y * rowbytes, out->data + (size_t)y * (size_t)w * 3, w,
                           ct, bd, pal);
    } else {
        raw = vt_alloc(rowbytes);
        if (!raw) {
            limit_rc = vt_fail(st, VTOK_ENOMEM, "out of memory for a PNG row");
            png_error(png, "out of memory");
        }
        reading = 1;
        for (int64_t y = 0; y < h; y++) {
            next_row = y;
            png_read_row(png, raw, NULL);
            png_row_to_rgb(raw, out->data + (size_t)y * (size_t)w * 3, w, ct, bd, pal);
        }
        next_row = h;
    }
    reading = 0;
    if (p->exif_orientation && png_tail_fits(buf, size, idat)) {
        /* Metadata after IDAT; errors there are not the image's (the
         * truncation rules are applied by png_postcheck). */
        if (!setjmp(png_jmpbuf(png)))
            png_read_end(png, info);
    }

done:;
    int orient = p->exif_orientation ? png_orientation(png, info) : -1;
    png_destroy_read_struct(&png, &info, NULL);
    vt_free(raw);
    return vt_image_orient(out, orient, p, st); /* frees out on failure */
}

int vt_decode_png(const void *buf, size_t size, const vtok_image_params *p, vtok_image *out,
                  vtok_status *st)
{
    memset(out, 0, sizeof *out);
    if (size < 8 || memcmp(buf, "\x89PNG\r\n\x1a\n", 8) != 0)
        return vt_fail(st, VTOK_EFORMAT, "not a PNG file");
    size_t idat = 0;
    int animated = 0;
    const char *bad = png_precheck(buf, size, &idat, &animated);
    if (bad)
        return vt_fail(st, VTOK_EFORMAT, "%s", bad);
    size_t pn = 0;
    uint8_t *patched = png_patch_truncated(buf, size, idat, &pn);
    int rc = patched ? png_decode(patched, pn, idat, p, out, st)
                     : png_decode(buf, size, idat, p, out, st);
    vt_free(patched);
    if (patched && rc == VTOK_EFORMAT)
        return vt_fail(st, VTOK_EFORMAT, "truncated PNG (data ends inside the image data)");
    if (rc == VTOK_OK && (bad = png_postcheck(buf, size, idat, animated))) {
        vtok_image_free(out);
        return vt_fail(st, VTOK_EFORMAT, "%s", bad);
    }
    return rc;
}
