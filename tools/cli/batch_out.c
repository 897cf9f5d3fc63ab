/*
 * batch_out.c - see batch_out.h.
 *
 * .npy: NumPy's format 1.0 (numpy/lib/format.py, NEP 1): the magic
 * "\x93NUMPY", version 1.0, a little-endian uint16 header length, then a
 * Python dict literal padded with spaces and ended by '\n' so that the data
 * starts on a multiple of 64 bytes (format.py's ARRAY_ALIGN). The header is
 * written with a placeholder shape first and rewritten with the row count at
 * close; 128 bytes hold any shape of up to four 19-digit sizes.
 */
#include "batch_out.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NPY_HEADER 128

uint16_t bo_f32_to_f16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t sign = (u >> 16) & 0x8000u, exp = (u >> 23) & 0xffu, man = u & 0x7fffffu;
    if (exp == 0xff) /* Inf, NaN (kept quiet, top mantissa bits kept) */
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 0x1f)
        return (uint16_t)(sign | 0x7c00u); /* overflow: Inf */
    if (e <= 0) {                          /* a subnormal half, or zero */
        if (e < -10)
            return (uint16_t)sign;
        man |= 0x800000u;
        int shift = 14 - e;
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (h & 1)))
            h++; /* may carry into the smallest normal: still right */
        return (uint16_t)(sign | h);
    }
    uint32_t h = sign | ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++; /* a carry into the exponent rounds up to the next power (or Inf) */
    return (uint16_t)h;
}

static int write_header(bo_npy *w, int64_t rows)
{
    static const char *const descr[] = {"<f4", "<f2", "<i8"};
    char dict[NPY_HEADER];
    int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld,",
                     descr[w->dtype], (long long)rows);
    for (int i = 0; i < w->row_dims && k < (int)sizeof dict; i++)
        k += snprintf(dict + k, sizeof dict - (size_t)k, "%s%lld", i ? ", " : " ",
                      (long long)w->row_shape[i]);
    if (k < (int)sizeof dict)
        k += snprintf(dict + k, sizeof dict - (size_t)k, "), }");
    const int room = NPY_HEADER - 10; /* magic 6 + version 2 + length 2 */
    if (k >= room)
        return -1;
    unsigned char h[NPY_HEADER];
    memcpy(h, "\x93NUMPY\x01\x00", 8);
    h[8] = (unsigned char)(room & 0xff);
    h[9] = (unsigned char)(room >> 8);
    memcpy(h + 10, dict, (size_t)k);
    memset(h + 10 + k, ' ', (size_t)(room - k));
    h[NPY_HEADER - 1] = '\n';
    if (fseeko(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, NPY_HEADER, w->f) != NPY_HEADER)
        return -1;
    return fseeko(w->f, 0, SEEK_END);
}

int bo_npy_open(bo_npy *w, const char *path, bo_dtype dtype)
{
    memset(w, 0, sizeof *w);
    w->dtype = dtype;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
        return -1;
    if (!(w->f = fdopen(fd, "w+b"))) {
        close(fd);
        return -1;
    }
    return write_header(w, 0);
}

void bo_npy_set_row(bo_npy *w, int dims, const int64_t *shape)
{
    w->row_dims = dims;
    w->row_elems = 1;
    for (int i = 0; i < dims; i++) {
        w->row_shape[i] = shape[i];
        w->row_elems *= shape[i];
    }
}

int bo_npy_append(bo_npy *w, const void *rows, int64_t n)
{
    size_t elems = (size_t)(n * w->row_elems);
    if (w->dtype == BO_F16) {
        if (elems * 2 > w->scratch_cap) {
            void *p = realloc(w->scratch, elems * 2);
            if (!p) {
                errno = ENOMEM;
                return -1;
            }
            w->scratch = p;
            w->scratch_cap = elems * 2;
        }
        const float *x = rows;
        uint16_t *h = w->scratch;
        for (size_t i = 0; i < elems; i++) {
            uint16_t v = bo_f32_to_f16(x[i]); /* little-endian bytes */
            memcpy(&h[i], (unsigned char[2]){(unsigned char)(v & 0xff), (unsigned char)(v >> 8)},
                   2);
        }
        if (fwrite(h, 2, elems, w->f) != elems)
            return -1;
    } else if (fwrite(rows, w->dtype == BO_F32 ? 4 : 8, elems, w->f) != elems)
        return -1;
    w->rows += n;
    return 0;
}

int bo_npy_close(bo_npy *w)
{
    int e = write_header(w, w->rows);
    if (bo_close_sync(w->f))
        e = -1;
    w->f = NULL;
    free(w->scratch);
    w->scratch = NULL;
    return e;
}

void bo_npy_abandon(bo_npy *w)
{
    if (w->f)
        fclose(w->f);
    w->f = NULL;
    free(w->scratch);
    w->scratch = NULL;
}

int bo_close_sync(FILE *f)
{
    int e = fflush(f) != 0 || ferror(f);
    if (!e && fsync(fileno(f)) != 0 && errno != EINVAL)
        e = 1;
    if (fclose(f) != 0)
        e = 1;
    return e ? -1 : 0;
}

void bo_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 (RFC 3629). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t k;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        k = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        k = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        k = 4, cp = c & 0x07;
    else
        return 0;
    if (k > n)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((k == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (k == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return k;
}

void bo_json_str(FILE *f, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            i++;
        } else if (c == '\n') {
            fputs("\\n", f);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            i++;
        } else {
            size_t k = utf8_len(p + i, n - i);
            if (!k) {
                fputs("\\ufffd", f);
                i++;
            } else {
                fwrite(p + i, 1, k, f);
                i += k;
            }
        }
    }
    fputc('"', f);
}
