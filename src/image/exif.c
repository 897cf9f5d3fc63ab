/*
 * exif.c - the EXIF orientation tag, read the way Pillow 9.4 reads it.
 *
 * ImageOps.exif_transpose looks up tag 0x0112 in Image.getexif(), which
 * parses IFD0 of the Exif blob with TiffImagePlugin.ImageFileDirectory_v2.
 * What that parser accepts decides which files get rotated, so this small,
 * bounds-checked IFD0 reader follows it rather than the EXIF spec:
 *   - the blob may start with "Exif\0\0", then a TIFF header with one of the
 *     byte-order prefixes Pillow accepts ("II+\0" BigTIFF makes it raise;
 *     "MM\0+" is read as plain big-endian TIFF);
 *   - entries of unknown type are skipped; an entry whose out-of-line data
 *     lies outside the blob ends the directory (Pillow raises "Truncated
 *     File Read" and keeps the tags read so far); count 0 entries are skipped;
 *   - a later duplicate of a tag replaces an earlier one;
 *   - the first value is used when count > 1 (Pillow warns and truncates);
 *   - SHORT/LONG/SBYTE/SSHORT/SLONG/IFD/LONG8 give integers, RATIONAL,
 *     SRATIONAL, FLOAT and DOUBLE compare equal to an integer only when
 *     exact; BYTE, ASCII and UNDEFINED give bytes or text, which match no
 *     orientation but still count as "tag present" (so the XMP fallback is
 *     not consulted).
 * A blob Pillow would reject with an exception is treated as "no
 * orientation" here: vtok does not fail a decode over bad metadata.
 */
#include "image.h"

#include <math.h>
#include <string.h>

static uint32_t rd16(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 : (uint32_t)p[0] << 8 | p[1];
}

static uint32_t rd32(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t rd64(const uint8_t *p, int le)
{
    uint64_t a = rd32(p, le), b = rd32(p + 4, le);
    return le ? a | b << 32 : a << 32 | b;
}

/* Bytes per value of TIFF type t, or 0 for types Pillow does not load. */
static unsigned type_size(uint32_t t)
{
    switch (t) {
    case 1: case 2: case 6: case 7: return 1;  /* BYTE ASCII SBYTE UNDEFINED */
    case 3: case 8: return 2;                  /* SHORT SSHORT */
    case 4: case 9: case 11: case 13: return 4; /* LONG SLONG FLOAT IFD */
    case 5: case 10: case 12: case 16: return 8; /* RATIONAL SRATIONAL DOUBLE LONG8 */
    default: return 0;
    }
}

static int orient_of_double(double v)
{
    if (!(v >= 1 && v <= 8) || v != floor(v))
        return 0;
    return (int)v;
}

static int orient_of_int(int64_t v)
{
    return v >= 1 && v <= 8 ? (int)v : 0;
}

/* The first value of an orientation entry of type t at p, as an orientation
 * (1..8) or 0 when it matches none. */
static int entry_value(uint32_t t, const uint8_t *p, int le)
{
    switch (t) {
    case 3:  return orient_of_int(rd16(p, le));
    case 8:  return orient_of_int((int16_t)rd16(p, le));
    case 4:
    case 13: return orient_of_int(rd32(p, le));
    case 9:  return orient_of_int((int32_t)rd32(p, le));
    case 6:  return orient_of_int((int8_t)p[0]);
    case 16: {
        uint64_t v = rd64(p, le);
        return v <= 8 ? orient_of_int((int64_t)v) : 0;
    }
    case 5:
    case 10: {
        int64_t num, den;
        if (t == 5) {
            num = rd32(p, le);
            den = rd32(p + 4, le);
        } else {
            num = (int32_t)rd32(p, le);
            den = (int32_t)rd32(p + 4, le);
        }
        if (den == 0 || num % den != 0) /* Pillow: NaN, or a non-integer fraction */
            return 0;
        return orient_of_int(num / den);
    }
    case 11: {
        uint32_t u = rd32(p, le);
        float f;
        memcpy(&f, &u, 4);
        return orient_of_double(f);
    }
    case 12: {
        uint64_t u = rd64(p, le);
        double d;
        memcpy(&d, &u, 8);
        return orient_of_double(d);
    }
    default: return 0; /* BYTE, ASCII, UNDEFINED: bytes or text */
    }
}

int vt_exif_orientation(const uint8_t *d, size_t n)
{
    if (!d)
        return -1;
    if (n >= 6 && memcmp(d, "Exif\0\0", 6) == 0) {
        d += 6;
        n -= 6;
    }
    if (n < 8)
        return -1;
    int le;
    if (memcmp(d, "II*\0", 4) == 0 || memcmp(d, "II\0*", 4) == 0)
        le = 1;
    else if (memcmp(d, "MM\0*", 4) == 0 || memcmp(d, "MM*\0", 4) == 0 ||
             memcmp(d, "MM\0+", 4) == 0) /* Pillow: not BigTIFF, as byte 2 is 0 */
        le = 0;
    else
        return -1;
    uint32_t ifd = rd32(d + 4, le);
    if (ifd > n || n - ifd < 2)
        return -1;
    uint32_t count = rd16(d + ifd, le);
    size_t pos = (size_t)ifd + 2;
    int result = -1;
    for (uint32_t i = 0; i < count; i++) {
        if (n - pos < 12)
            break; /* short directory: Pillow stops here */
        const uint8_t *e = d + pos;
        pos += 12;
        uint32_t tag = rd16(e, le), typ = rd16(e + 2, le), cnt = rd32(e + 4, le);
        unsigned us = type_size(typ);
        if (!us)
            continue;
        uint64_t size = (uint64_t)cnt * us;
        const uint8_t *v = e + 8;
        if (size > 4) {
            uint32_t off = rd32(e + 8, le);
            if (off > n || size > n - off)
                break; /* out-of-line data past the end: Pillow stops here */
            v = d + off;
        }
        if (size == 0 || tag != 0x0112)
            continue;
        result = entry_value(typ, v, le);
    }
    return result;
}

int vt_xmp_orientation(const uint8_t *d, size_t n)
{
    static const char key[] = "tiff:Orientation";
    const size_t klen = sizeof key - 1;
    if (!d)
        return -1;
    for (size_t i = 0; i + klen <= n; i++) {
        if (d[i] != 't' || memcmp(d + i, key, klen) != 0)
            continue;
        size_t j = i + klen;
        if (j < n && d[j] == '>')
            j += 1;
        else if (j + 1 < n && d[j] == '=' && d[j + 1] == '"')
            j += 2;
        else
            continue;
        if (j < n && d[j] >= '0' && d[j] <= '9')
            return d[j] - '0';
    }
    return -1;
}

static int is_py_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int vt_exif_from_raw_profile(const uint8_t *t, size_t n, uint8_t **out, size_t *out_size)
{
    *out = NULL;
    *out_size = 0;
    /* "".join(text.split("\n")[3:]): everything after the third newline,
     * with the remaining newlines dropped (they are whitespace to fromhex). */
    size_t i = 0;
    for (int nl = 0; nl < 3; nl++) {
        while (i < n && t[i] != '\n')
            i++;
        if (i >= n)
            return 0; /* fewer than 3 newlines: empty profile */
        i++;
    }
    uint8_t *buf = vt_alloc((n - i) / 2 + 1);
    if (!buf)
        return -1;
    size_t k = 0;
    for (;;) {
        /* Newlines vanish in the join; other whitespace is skipped by
         * bytes.fromhex only between byte pairs. */
        while (i < n && (t[i] == '\n' || is_py_space(t[i])))
            i++;
        if (i >= n)
            break;
        int hi = hexval(t[i++]);
        while (i < n && t[i] == '\n')
            i++;
        int lo = i < n ? hexval(t[i++]) : -1;
        if (hi < 0 || lo < 0) {
            vt_free(buf);
            return -1;
        }
        buf[k++] = (uint8_t)(hi << 4 | lo);
    }
    *out = buf;
    *out_size = k;
    return 0;
}
