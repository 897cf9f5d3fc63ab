/*
 * decode_jpeg.c - JPEG through libjpeg-turbo, the way Pillow 9.4 drives it.
 *
 * Pillow (JpegImagePlugin.py + libImaging/JpegDecode.c) is built against the
 * same libjpeg-turbo 2.1.5 and leaves every decoder setting at its default
 * (JDCT_ISLOW, fancy upsampling, the library's own guess of the stored colour
 * space from JFIF/Adobe markers). It only picks out_color_space from the
 * number of components in SOF: 1 -> JCS_GRAYSCALE ("L"), 3 -> JCS_RGB,
 * 4 -> JCS_CMYK (libjpeg turns YCCK into CMYK). Doing exactly the same here
 * gives byte-identical samples. Two Pillow conversions follow:
 *   - "L" -> RGB replicates the gray value;
 *   - four-component files are always read as "CMYK;I" (Adobe polarity,
 *     each sample inverted, whether or not an Adobe marker is present), then
 *     Convert.c cmyk2rgb: nk = 255 - K; R = nk - MULDIV255(C, nk) with
 *     MULDIV255(a, b) = (t = a*b + 128, ((t >> 8) + t) >> 8). With C = 255 - c
 *     for a stored sample c that is R = k - MULDIV255(255 - c, k).
 *
 * Errors: libjpeg's default error_exit calls exit(), so error_exit here
 * longjmps back (locals that change after setjmp are volatile, and the error
 * path frees them); warnings are counted, never printed. Pillow ignores every
 * libjpeg warning but feeds a suspending source: when the data runs out
 * before the last scanline the decode fails ("image file is truncated").
 * jpeg_mem_src instead warns JWRN_JPEG_EOF and pads with a fake EOI, so that
 * warning before the last scanline is an error here. After the last scanline
 * Pillow tolerates a missing EOI (jpeg_finish_decompress may suspend), and so
 * does this file; errors raised by jpeg_finish_decompress fail both. (A file
 * cut exactly at EOI still fails in both: the entropy decoder reads ahead
 * while finishing the last MCU row.)
 *
 * Before libjpeg runs, jpeg_pillow_walk repeats the checks of Pillow's own
 * marker parser (JpegImagePlugin._open), so files Pillow refuses to open
 * fail here too.
 *
 * Not in Pillow: progressive files with more than VT_JPEG_MAX_SCANS scans are
 * refused (each scan re-walks the whole coefficient image; a few KB of
 * crafted scans can otherwise cost minutes), as libjpeg-turbo's tools do.
 *
 * jpeg_fast_scale (opt-in) lets libjpeg-turbo's scaled IDCT decode at 1/2,
 * 1/4 or 1/8 size; the result is close to, but not bit-exact with, any
 * Pillow pipeline (Pillow's draft() also changes the DCT method).
 */
#include "image.h"

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#define VT_JPEG_MAX_SCANS 500

typedef struct vt_jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int     eof;  /* JWRN_JPEG_EOF seen: the data ran out */
    char    msg[JMSG_LENGTH_MAX + 64];
} vt_jpeg_err;

static void jpeg_on_error(j_common_ptr c)
{
    vt_jpeg_err *e = (vt_jpeg_err *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_on_emit(j_common_ptr c, int level)
{
    vt_jpeg_err *e = (vt_jpeg_err *)c->err;
    if (level < 0) {
        if (c->err->msg_code == JWRN_JPEG_EOF)
            e->eof = 1;
        c->err->num_warnings++;
    }
}

static void jpeg_on_output(j_common_ptr c)
{
    (void)c;
}

static void jpeg_on_progress(j_common_ptr c)
{
    if (c->is_decompressor && ((j_decompress_ptr)c)->input_scan_number > VT_JPEG_MAX_SCANS) {
        vt_jpeg_err *e = (vt_jpeg_err *)c->err;
        snprintf(e->msg, sizeof e->msg, "more than %d scans", VT_JPEG_MAX_SCANS);
        longjmp(e->jb, 1);
    }
}

/*
 * Pillow opens a JPEG with its own marker parser (JpegImagePlugin._open)
 * before libjpeg sees it, and refuses files that libjpeg would decode. This
 * walk repeats the checks that parser makes up to SOS:
 *   - markers outside Pillow's table (TEM 0xFF01, 0xFF02..0xFFBF) fail;
 *     fill bytes 0xFF, escaped 0xFF00 and non-0xFF junk are skipped;
 *   - every segment it reads must be complete (a declared length < 2 reads
 *     nothing and parsing goes on right after the length);
 *   - SOF (and DHP): at least 6 bytes, 8-bit samples, 1, 3 or 4 components,
 *     3 bytes per component entry; DQT: whole tables; JFIF and Adobe
 *     segments of at least 7 bytes; Photoshop resource blocks whose name
 *     length byte is present; ICC_PROFILE chunks: the first in sort order
 *     must have its sequence byte (checked when an SOF is seen);
 *   - an Exif segment while no JFIF density gave the dpi: Pillow parses it
 *     for dpi and fails on a TIFF header it recognizes but cannot read (fewer
 *     than 8 bytes, or "II+\0" BigTIFF).
 * Returns 0 or a message.
 */
static const char *jpeg_pillow_walk(const uint8_t *b, size_t n)
{
    size_t pos = 3; /* FF D8 FF read; the FF is the first byte looked at */
    int c = 0xFF, dpi = 0, exif_seen = 0;
    const uint8_t *icc_first = NULL; /* smallest ICC_PROFILE segment so far */
    size_t icc_first_len = 0;
    for (;;) {
        if (c != 0xFF) {
            if (pos >= n)
                return "truncated JPEG header";
            c = b[pos++];
            continue;
        }
        if (pos >= n)
            return "truncated JPEG header";
        unsigned m = 0xFF00u | b[pos++];
        int known = (m >= 0xFFC0 && m <= 0xFFFE);
        if (m == 0xFFFF) {
            c = 0xFF;
            continue;
        }
        if (m == 0xFF00) {
            if (pos >= n)
                return "truncated JPEG header";
            c = b[pos++];
            continue;
        }
        if (!known)
            return "invalid JPEG: unknown marker";
        int has_segment = !((m >= 0xFFD0 && m <= 0xFFD9) || (m >= 0xFFF0 && m <= 0xFFFD) ||
                            m == 0xFFC8);
        if (has_segment) {
            if (n - pos < 2)
                return "truncated JPEG header";
            long len = (long)(b[pos] << 8 | b[pos + 1]) - 2;
            pos += 2;
            const uint8_t *s = b + pos;
            size_t sl = len > 0 ? (size_t)len : 0;
            if (sl > n - pos)
                return "truncated JPEG header";
            pos += sl;
            int is_sof = (m >= 0xFFC0 && m <= 0xFFCF && m != 0xFFC4 && m != 0xFFC8 &&
                          m != 0xFFCC) || m == 0xFFDE;
            if (is_sof) {
                if (sl < 6 || s[0] != 8 || (s[5] != 1 && s[5] != 3 && s[5] != 4) ||
                    (sl - 6) % 3 != 0)
                    return "invalid JPEG: bad SOF segment";
                if (icc_first && icc_first_len < 14)
                    return "invalid JPEG: bad ICC_PROFILE segment";
                icc_first = NULL;
            } else if (m == 0xFFDB) {
                size_t q = 0;
                while (q < sl) {
                    size_t tl = 1 + ((s[q] >> 4) == 0 ? 64 : 128);
                    if (sl - q < tl)
                        return "invalid JPEG: bad quantization table marker";
                    q += tl;
                }
            } else if (m >= 0xFFE0 && m <= 0xFFEF) {
                if (m == 0xFFE0 && sl >= 4 && memcmp(s, "JFIF", 4) == 0) {
                    if (sl < 7)
                        return "invalid JPEG: short JFIF segment";
                    if (sl >= 12 && s[7] == 1)
                        dpi = 1;
                } else if (m == 0xFFE1 && sl >= 5 && memcmp(s, "Exif\0", 5) == 0) {
                    if (!exif_seen) {
                        exif_seen = 1;
                        const uint8_t *t = s;
                        size_t tl = sl;
                        if (tl >= 6 && t[5] == 0) {
                            t += 6;
                            tl -= 6;
                        }
                        int pfx = tl >= 4 && (!memcmp(t, "MM\0*", 4) || !memcmp(t, "II*\0", 4) ||
                                              !memcmp(t, "MM*\0", 4) || !memcmp(t, "II\0*", 4) ||
                                              !memcmp(t, "MM\0+", 4) || !memcmp(t, "II+\0", 4));
                        if (!dpi && pfx && (tl < 8 || !memcmp(t, "II+\0", 4)))
                            return "invalid JPEG: unreadable Exif header";
                    }
                } else if (m == 0xFFE2 && sl >= 12 && memcmp(s, "ICC_PROFILE\0", 12) == 0) {
                    if (!icc_first) {
                        icc_first = s;
                        icc_first_len = sl;
                    } else {
                        size_t k = sl < icc_first_len ? sl : icc_first_len;
                        int cmp = memcmp(s, icc_first, k);
                        if (cmp < 0 || (cmp == 0 && sl < icc_first_len)) {
                            icc_first = s;
                            icc_first_len = sl;
                        }
                    }
                } else if (m == 0xFFED && sl >= 14 && memcmp(s, "Photoshop 3.0\0", 14) == 0) {
                    size_t off = 14;
                    while (sl - off >= 4 && memcmp(s + off, "8BIM", 4) == 0) {
                        off += 4;
                        if (sl - off < 2)
                            break;
                        int code = s[off] << 8 | s[off + 1];
                        off += 2;
                        if (off >= sl)
                            return "invalid JPEG: bad Photoshop segment";
                        off += 1 + (size_t)s[off];
                        off += off & 1;
                        if (off > sl || sl - off < 4)
                            break;
                        size_t sz = (size_t)s[off] << 24 | (size_t)s[off + 1] << 16 |
                                    (size_t)s[off + 2] << 8 | s[off + 3];
                        off += 4;
                        if (code == 0x03ED && (off > sl || sl - off < 14 || sz < 14))
                            break;
                        off += sz;
                        off += off & 1;
                        if (off > sl)
                            break;
                    }
                } else if (m == 0xFFEE && sl >= 5 && memcmp(s, "Adobe", 5) == 0 && sl < 7) {
                    return "invalid JPEG: short Adobe segment";
                }
            }
        }
        if (m == 0xFFDA)
            return NULL;
        if (pos >= n)
            return "truncated JPEG header";
        c = b[pos++];
    }
}

/* Orientation from the first APP1 that starts "Exif\0" (Pillow keeps only
 * the first one), or -1. */
static int jpeg_orientation(j_decompress_ptr c)
{
    for (jpeg_saved_marker_ptr m = c->marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 5 &&
            memcmp(m->data, "Exif\0", 5) == 0)
            return vt_exif_orientation(m->data, m->data_length);
    }
    return -1;
}

/* Largest 1/d (d = 8, 4, 2) whose shorter output side is still >= target. */
static void jpeg_pick_scale(j_decompress_ptr c, int64_t target)
{
    static const unsigned denoms[] = {8, 4, 2};
    for (size_t i = 0; i < sizeof denoms / sizeof denoms[0]; i++) {
        c->scale_num = 1;
        c->scale_denom = denoms[i];
        jpeg_calc_output_dimensions(c);
        int64_t s = c->output_width < c->output_height ? c->output_width : c->output_height;
        if (s >= target)
            return;
    }
    c->scale_num = 1;
    c->scale_denom = 1;
}

static void cmyk_inverted_to_rgb(const uint8_t *in, uint8_t *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++, in += 4, out += 3) {
        unsigned k = in[3]; /* = 255 - K of the inverted CMYK image */
        for (int j = 0; j < 3; j++) {
            unsigned t = (255u - in[j]) * k + 128;
            out[j] = (uint8_t)(k - (((t >> 8) + t) >> 8));
        }
    }
}

int vt_decode_jpeg(const void *buf, size_t size, const vtok_image_params *p, vtok_image *out,
                   vtok_status *st)
{
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr prog;
    vt_jpeg_err err;
    uint8_t *volatile row = NULL;
    volatile int stage = 0; /* 0 header, 1 data, 2 finishing */

    memset(out, 0, sizeof *out);
    const char *bad = jpeg_pillow_walk(buf, size);
    if (bad)
        return vt_fail(st, VTOK_EFORMAT, "%s", bad);
    memset(&cinfo, 0, sizeof cinfo);
    memset(&prog, 0, sizeof prog);
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_on_error;
    err.pub.emit_message = jpeg_on_emit;
    err.pub.output_message = jpeg_on_output;

    if (setjmp(err.jb)) {
        jpeg_destroy_decompress(&cinfo);
        vtok_image_free(out);
        vt_free(row);
        if (err.eof && stage < 2)
            return vt_fail(st, VTOK_EFORMAT, "truncated JPEG (data ends before the image)");
        return vt_fail(st, VTOK_EFORMAT, "invalid JPEG: %s", err.msg);
    }
    jpeg_create_decompress(&cinfo);
    prog.progress_monitor = jpeg_on_progress;
    cinfo.progress = &prog;
    jpeg_mem_src(&cinfo, (const unsigned char *)buf, (unsigned long)size);
    if (p->exif_orientation)
        jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);

    /* As Pillow: skip tables-only datastreams until an image header. */
    int hr, guard = 0;
    do {
        hr = jpeg_read_header(&cinfo, FALSE);
    } while (hr == JPEG_HEADER_TABLES_ONLY && ++guard < 16 && !err.eof);
    if (hr != JPEG_HEADER_OK || err.eof) {
        jpeg_destroy_decompress(&cinfo);
        return vt_fail(st, VTOK_EFORMAT, err.eof ? "truncated JPEG (no complete header)"
                                                 : "invalid JPEG: no image in the data");
    }

    int64_t w = cinfo.image_width, h = cinfo.image_height;
    int rc = vt_image_check_limits(w, h, p, st);
    int orient = -1;
    if (rc == VTOK_OK && p->exif_orientation) {
        orient = jpeg_orientation(&cinfo);
        if (orient >= 5 && orient <= 8)
            rc = vt_image_check_limits(h, w, p, st);
    }
    int nc = cinfo.num_components;
    if (rc == VTOK_OK && nc != 1 && nc != 3 && nc != 4)
        rc = vt_fail(st, VTOK_EUNSUPPORTED, "cannot handle %d-component JPEG images", nc);
    if (rc != VTOK_OK) {
        jpeg_destroy_decompress(&cinfo);
        return rc;
    }
    cinfo.out_color_space = nc == 1 ? JCS_GRAYSCALE : nc == 3 ? JCS_RGB : JCS_CMYK;
    if (p->jpeg_fast_scale && p->jpeg_target > 0)
        jpeg_pick_scale(&cinfo, p->jpeg_target);

    stage = 1;
    jpeg_start_decompress(&cinfo);
    if (err.eof)
        longjmp(err.jb, 1);
    int64_t ow = cinfo.output_width, oh = cinfo.output_height;
    if (cinfo.output_components != nc) { /* cannot happen with these colour spaces */
        snprintf(err.msg, sizeof err.msg, "unexpected output components");
        longjmp(err.jb, 1);
    }
    rc = vt_image_alloc(out, ow, oh, st);
    if (rc != VTOK_OK) {
        jpeg_destroy_decompress(&cinfo);
        return rc;
    }
    if (nc == 4) {
        row = vt_alloc((size_t)ow * 4);
        if (!row) {
            jpeg_destroy_decompress(&cinfo);
            vtok_image_free(out);
            return vt_fail(st, VTOK_ENOMEM, "out of memory decoding JPEG");
        }
    }

    while (cinfo.output_scanline < cinfo.output_height) {
        int64_t y = cinfo.output_scanline;
        uint8_t *dst = out->data + (size_t)y * (size_t)ow * 3;
        JSAMPROW r = nc == 4 ? row : dst;
        if (jpeg_read_scanlines(&cinfo, &r, 1) != 1) {
            snprintf(err.msg, sizeof err.msg, "decoder stalled");
            longjmp(err.jb, 1);
        }
        if (nc == 1) {
            for (int64_t x = ow - 1; x >= 0; x--)
                dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = dst[x];
        } else if (nc == 4) {
            cmyk_inverted_to_rgb(row, dst, ow);
        }
    }
    if (err.eof)
        longjmp(err.jb, 1);
    stage = 2;
    jpeg_finish_decompress(&cinfo); /* a missing EOI only warns; errors fail */
    jpeg_destroy_decompress(&cinfo);
    vt_free(row);
    row = NULL;
    return vt_image_orient(out, orient, p, st); /* frees out on failure */
}
