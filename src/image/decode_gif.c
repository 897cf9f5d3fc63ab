/*
 * decode_gif.c - the first frame of a GIF, exactly as Pillow 9.4 shows it.
 *
 * Pillow does not use giflib: GifImagePlugin.py parses the blocks and
 * libImaging/GifDecode.c decodes LZW. Their quirks decide the pixels of
 * malformed-but-common files, so this file follows them instead of giflib:
 *
 *   - The image is the logical screen, grown to contain frame 0 if the frame
 *     sticks out of it. The area frame 0 does not cover holds palette index 0,
 *     or the frame's transparent index if its Graphic Control Extension sets
 *     one (Image.core.fill) - never the background colour index.
 *   - A colour table that is the identity ramp (entry i == (i, i, i)) is
 *     "not needed": with no needed table the image is "L" and an index is
 *     shown as gray (i, i, i). A needed local table wins; an identity local
 *     table with a needed global table still ends up mapped through the
 *     global one (Pillow realizes that palette on load). Indices past the end
 *     of the table get Pillow's default entry (i, i, i). Transparency is
 *     ignored by convert("RGB").
 *   - A frame descriptor with x0 == 0 and width 0 decodes into the whole
 *     image (ImagingDecoder setimage treats extents (0, 0, 0, y) as "all").
 *   - LZW: the first code after a clear must be a literal; a code may be at
 *     most the next free one; clears right after a clear are ignored; the
 *     table stops growing at 4096 entries (deferred clear); sub-block
 *     terminators are just empty sub-blocks, so decoding runs on into
 *     whatever bytes follow. Decoding ends, successfully, at the last pixel.
 *   - An end-of-information code before the last pixel, or data that runs
 *     out, fails like Pillow's "image file is truncated" - except that
 *     Pillow, which reads the file in 64 KiB chunks and restarts the decoder
 *     after each end code, skips an early end code when more of the file is
 *     still unread; that is reproduced below.
 */
#include "image.h"

#include <string.h>

#define GIF_TABLE 4096
#define GIF_CHUNK 65536 /* ImageFile.MAXBLOCK, Pillow's read size */

/* Pillow's GifImageFile._is_palette_needed. */
static int palette_needed(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 2 < n; i += 3)
        if (p[i] != i / 3 || p[i + 1] != i / 3 || p[i + 2] != i / 3)
            return 1;
    return 0;
}

enum { GIF_OK = 0, GIF_TRUNCATED = -1, GIF_BROKEN = -2, GIF_CONFIG = -3 };

typedef struct gif_frame {
    uint8_t *img;          /* W x H indices */
    int64_t  stride;
    int64_t  xoff, yoff, xs, ys;
    int      bits;         /* LZW minimum code size */
    int      interlace;
} gif_frame;

/* LZW-decode the data that starts at b + start into f (GifDecode.c rules). */
static int gif_lzw(const uint8_t *b, size_t n, size_t start, const gif_frame *f)
{
    if (f->bits < 0 || f->bits > 12)
        return GIF_CONFIG;
    uint16_t link[GIF_TABLE];
    uint8_t  data[GIF_TABLE], buffer[GIF_TABLE];
    memset(link, 0, sizeof link);
    memset(data, 0, sizeof data);

    const int clear = 1 << f->bits, end = clear + 1;
    int state = 1, next = 0, codesize = 0, codemask = 0, lastcode = 0;
    uint8_t lastdata = 0;
    int bufferindex = GIF_TABLE;

    /* Input: sub-blocks; `avail` is how much of the file Pillow has read. */
    const size_t total = n - start;
    size_t avail = total < GIF_CHUNK ? total : GIF_CHUNK;
    size_t pos = 0; /* relative to start */
    int blocksize = 0, bitcount = 0;
    uint32_t bitbuf = 0;

    /* Output position and interlace stage (0 = sequential rows). */
    int stage = f->interlace ? 1 : 0, step = f->interlace ? 8 : 1;
    int64_t x = 0, y = 0;
    uint8_t *row = f->img + f->yoff * f->stride + f->xoff;

    for (;;) {
        if (state == 1) {
            next = clear + 2;
            codesize = f->bits + 1;
            codemask = (1 << codesize) - 1;
            bufferindex = GIF_TABLE;
            state = 2;
        }
        const uint8_t *out;
        int cnt;
        if (bufferindex < GIF_TABLE) {
            out = buffer + bufferindex;
            cnt = GIF_TABLE - bufferindex;
            bufferindex = GIF_TABLE;
        } else {
            while (bitcount < codesize) {
                if (blocksize > 0) {
                    bitbuf |= (uint32_t)b[start + pos++] << bitcount;
                    bitcount += 8;
                    blocksize--;
                    continue;
                }
                /* A new sub-block is started only when all of it is there. */
                while (pos >= avail || (size_t)b[start + pos] + 1 > avail - pos) {
                    if (avail == total)
                        return GIF_TRUNCATED;
                    avail = total - avail < GIF_CHUNK ? total : avail + GIF_CHUNK;
                }
                blocksize = b[start + pos++];
            }
            int c = (int)(bitbuf & (uint32_t)codemask);
            bitbuf >>= codesize;
            bitcount -= codesize;

            if (c == clear) {
                if (state != 2)
                    state = 1;
                continue;
            }
            if (c == end) {
                /* Pillow returns to ImageFile.load, which reads another chunk
                 * (failing at end of file) and calls the decoder again. */
                if (avail == total)
                    return GIF_TRUNCATED;
                avail = total - avail < GIF_CHUNK ? total : avail + GIF_CHUNK;
                continue;
            }
            out = &lastdata;
            cnt = 1;
            if (state == 2) {
                if (c > clear)
                    return GIF_BROKEN;
                lastdata = (uint8_t)c;
                lastcode = c;
                state = 3;
            } else {
                int thiscode = c;
                if (c > next)
                    return GIF_BROKEN;
                if (c == next) {
                    if (bufferindex <= 0)
                        return GIF_BROKEN;
                    buffer[--bufferindex] = lastdata;
                    c = lastcode;
                }
                while (c >= clear) {
                    if (bufferindex <= 0 || c >= GIF_TABLE)
                        return GIF_BROKEN;
                    buffer[--bufferindex] = data[c];
                    c = link[c];
                }
                lastdata = (uint8_t)c;
                if (next < GIF_TABLE) {
                    data[next] = (uint8_t)c;
                    link[next] = (uint16_t)lastcode;
                    if (next == codemask && codesize < 12) {
                        codesize++;
                        codemask = (1 << codesize) - 1;
                    }
                    next++;
                }
                lastcode = thiscode;
            }
        }
        for (int i = 0; i < cnt; i++) {
            row[x] = out[i];
            if (++x < f->xs)
                continue;
            x = 0;
            y += step;
            while (y >= f->ys) {
                switch (stage) {
                case 1: y = 4; stage = 2; break;
                case 2: step = 4; y = 2; stage = 3; break;
                case 3: step = 2; y = 1; stage = 0; break;
                default: return GIF_OK; /* last pixel written */
                }
            }
            row = f->img + (f->yoff + y) * f->stride + f->xoff;
        }
    }
}

int vt_decode_gif(const void *buf, size_t size, const vtok_image_params *p, vtok_image *out,
                  vtok_status *st)
{
    memset(out, 0, sizeof *out);
    const uint8_t *b = buf;
    if (size < 13)
        return vt_fail(st, VTOK_EFORMAT, "truncated GIF (no screen descriptor)");
    if (memcmp(b, "GIF87a", 6) != 0 && memcmp(b, "GIF89a", 6) != 0)
        return vt_fail(st, VTOK_EFORMAT, "not a GIF file");
    int64_t W = b[6] | b[7] << 8, H = b[8] | b[9] << 8;
    size_t pos = 13;

    const uint8_t *gpal = NULL, *lpal = NULL;
    size_t gpal_n = 0, lpal_n = 0;
    int local_state = 0; /* 0 none, 1 needed, 2 identity */
    if (b[10] & 0x80) {
        size_t want = (size_t)3 << ((b[10] & 7) + 1), got = size - pos < want ? size - pos : want;
        if (got % 3)
            return vt_fail(st, VTOK_EFORMAT, "truncated GIF (global colour table)");
        if (palette_needed(b + pos, got)) {
            gpal = b + pos;
            gpal_n = got;
        }
        pos += got;
    }

    /* Blocks up to the first image descriptor (GifImageFile._seek(0)). */
    int trns = -1, found = 0, interlace = 0, bits = 0;
    int64_t x0 = 0, y0 = 0, fw = 0, fh = 0;
    size_t data_start = 0;
    const char *bad = NULL;
    while (!found && !bad) {
        if (pos >= size || b[pos] == ';')
            break;
        uint8_t c = b[pos++];
        if (c == '!') {
            if (pos >= size) {
                bad = "truncated GIF (extension)";
                break;
            }
            uint8_t label = b[pos++];
            /* block = self.data(): NULL for a zero length or end of file */
            const uint8_t *blk = NULL;
            size_t blen = 0;
            if (pos < size) {
                uint8_t l = b[pos++];
                if (l) {
                    blk = b + pos;
                    blen = size - pos < l ? size - pos : l;
                    pos += blen;
                }
            }
            if (label == 0xF9) { /* Graphic Control Extension */
                if (!blk || blen < 1 || ((blk[0] & 1) && blen < 4) || blen < 3) {
                    bad = "invalid GIF graphic control extension";
                    break;
                }
                if (blk[0] & 1)
                    trns = blk[3];
            } else if (label == 0xFF) { /* Application Extension */
                if (!blk) {
                    bad = "invalid GIF application extension";
                    break;
                }
                if (blen >= 11 && memcmp(blk, "NETSCAPE2.0", 11) == 0) {
                    if (pos >= size || b[pos] == 0) { /* len(None) in Pillow */
                        bad = "invalid GIF NETSCAPE2.0 extension";
                        break;
                    }
                    size_t l = b[pos++];
                    pos += size - pos < l ? size - pos : l;
                }
            } else if (label == 0xFE) { /* comment: no trailing skip */
                while (blk && blen) {
                    blk = NULL;
                    blen = 0;
                    if (pos < size && b[pos]) {
                        size_t l = b[pos++];
                        blk = b + pos;
                        blen = size - pos < l ? size - pos : l;
                        pos += blen;
                    } else if (pos < size) {
                        pos++;
                    }
                }
                continue;
            }
            /* while self.data(): pass */
            for (;;) {
                if (pos >= size)
                    break;
                size_t l = b[pos++];
                if (!l)
                    break;
                size_t got = size - pos < l ? size - pos : l;
                pos += got;
                if (!got)
                    break;
            }
        } else if (c == ',') {
            if (size - pos < 9) {
                bad = "truncated GIF (image descriptor)";
                break;
            }
            const uint8_t *d = b + pos;
            x0 = d[0] | d[1] << 8;
            y0 = d[2] | d[3] << 8;
            fw = d[4] | d[5] << 8;
            fh = d[6] | d[7] << 8;
            uint8_t fl = d[8];
            pos += 9;
            interlace = (fl & 0x40) != 0;
            if (fl & 0x80) {
                size_t want = (size_t)3 << ((fl & 7) + 1);
                size_t got = size - pos < want ? size - pos : want;
                if (got % 3) {
                    bad = "truncated GIF (local colour table)";
                    break;
                }
                local_state = palette_needed(b + pos, got) ? 1 : 2;
                lpal = b + pos;
                lpal_n = got;
                pos += got;
            }
            if (pos >= size) {
                bad = "truncated GIF (no image data)";
                break;
            }
            bits = b[pos++];
            data_start = pos;
            found = 1;
        }
        /* any other byte is skipped, as Pillow does */
    }
    if (bad)
        return vt_fail(st, VTOK_EFORMAT, "%s", bad);
    if (!found)
        return vt_fail(st, VTOK_EFORMAT, "GIF has no image");

    int64_t x1 = x0 + fw, y1 = y0 + fh;
    if (x1 > W)
        W = x1;
    if (y1 > H)
        H = y1;
    int rc = vt_image_check_limits(W, H, p, st);
    if (rc != VTOK_OK)
        return rc;
    gif_frame f = {.stride = W, .bits = bits, .interlace = interlace};
    if (x0 == 0 && x1 == 0) {
        f.xoff = f.yoff = 0;
        f.xs = W;
        f.ys = H;
    } else {
        f.xoff = x0;
        f.yoff = y0;
        f.xs = fw;
        f.ys = fh;
    }
    if (f.xs <= 0 || f.ys <= 0)
        return vt_fail(st, VTOK_EFORMAT, "GIF frame has no pixels");

    f.img = vt_alloc((size_t)W * (size_t)H);
    if (!f.img)
        return vt_fail(st, VTOK_ENOMEM, "out of memory for a %lld x %lld GIF", (long long)W,
                       (long long)H);
    memset(f.img, trns >= 0 ? trns : 0, (size_t)W * (size_t)H);
    int lz = gif_lzw(b, size, data_start, &f);
    if (lz != GIF_OK) {
        vt_free(f.img);
        return vt_fail(st, VTOK_EFORMAT, "%s",
                       lz == GIF_TRUNCATED ? "truncated GIF (image data ends early)"
                       : lz == GIF_CONFIG  ? "invalid GIF: LZW code size over 12"
                                           : "invalid GIF: broken LZW data");
    }

    uint8_t pal[768];
    for (int i = 0; i < 256; i++)
        pal[3 * i] = pal[3 * i + 1] = pal[3 * i + 2] = (uint8_t)i;
    const uint8_t *use = local_state == 1 ? lpal : gpal;
    size_t use_n = local_state == 1 ? lpal_n : gpal_n;
    if (use)
        memcpy(pal, use, use_n);

    rc = vt_image_alloc(out, W, H, st);
    if (rc != VTOK_OK) {
        vt_free(f.img);
        return rc;
    }
    size_t npix = (size_t)W * (size_t)H;
    for (size_t i = 0; i < npix; i++) {
        const uint8_t *c = pal + 3 * f.img[i];
        out->data[3 * i] = c[0];
        out->data[3 * i + 1] = c[1];
        out->data[3 * i + 2] = c[2];
    }
    vt_free(f.img);
    return VTOK_OK;
}
