/*
 * npy.c - NumPy .npy arrays: read float16/32/64 as float32, write float32;
 * read int32/64 as int64 and write int64 (discrete token ids).
 *
 * .npy is how the parity tests exchange pixels and reference features with
 * PyTorch. Layout: "\x93NUMPY", major, minor, header length (u16 for 1.0,
 * u32 for 2.0/3.0, little-endian), then a Python dict literal such as
 * {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
 * spaces and a '\n', then the raw C-order data.
 *
 * The header is parsed by a small tokenizer over exactly the literal syntax
 * numpy writes (quoted strings, True/False, tuples of ints, any key order,
 * optional trailing commas, old "3L" longs) instead of by pattern matching, so
 * reordered or re-spaced headers from other writers still load, and anything
 * else is a clear error. Sizes are checked for overflow and against the file
 * size before any allocation, so a truncated or hostile file costs nothing.
 *
 * Host byte order: data is little-endian ('<') and read in place, which
 * assumes a little-endian host, as the rest of vtok does.
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vtok assumes a little-endian host: .npy data is read in place"
#endif

/* Output limit: 16 GiB of float32 is far beyond any image batch or feature
 * dump; larger sizes are treated as hostile rather than attempted. */
#define NPY_MAX_BYTES ((int64_t)16 << 30)
/* numpy itself refuses headers over 10000 bytes by default. */
#define NPY_MAX_HEADER ((uint32_t)1 << 20)
/* Elements converted per chunk when the file is not float32. */
#define NPY_CHUNK 65536

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* Where the bytes come from: a file descriptor or a memory image. */
typedef struct npy_src {
    int            fd;   /* -1 for memory */
    const uint8_t *mem;
    size_t         size; /* total size of the file or image */
    size_t         pos;  /* memory only */
    const char    *name;
} npy_src;

/* Read exactly n bytes; VTOK_OK, VTOK_EIO, or VTOK_EFORMAT at a short read. */
static int src_read(npy_src *s, void *dst, size_t n, vtok_status *st)
{
    if (s->fd < 0) {
        if (n > s->size - s->pos)
            return vt_fail(st, VTOK_EFORMAT, "%s: truncated", s->name);
        memcpy(dst, s->mem + s->pos, n);
        s->pos += n;
        return VTOK_OK;
    }
    uint8_t *p = dst;
    while (n) {
        ssize_t r = read(s->fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return vt_fail(st, VTOK_EIO, "cannot read %s: %s", s->name, strerror(errno));
        if (r == 0) /* the file shrank after fstat */
            return vt_fail(st, VTOK_EFORMAT, "%s: truncated", s->name);
        p += r;
        n -= (size_t)r;
    }
    return VTOK_OK;
}

/* ------------------------------------------------------ header parser -- */

typedef struct npy_lex {
    const char *p, *end, *start;
    const char *name;
    vtok_status *st;
} npy_lex;

static int lex_fail(npy_lex *x, const char *what)
{
    return vt_fail(x->st, VTOK_EFORMAT, "%s: malformed .npy header: %s (at byte %lld)", x->name,
                   what, (long long)(x->p - x->start));
}

static void lex_ws(npy_lex *x)
{
    while (x->p < x->end && (*x->p == ' ' || *x->p == '\t' || *x->p == '\n' || *x->p == '\r'))
        x->p++;
}

/* Skip whitespace, then consume c if it is next. */
static int lex_eat(npy_lex *x, char c)
{
    lex_ws(x);
    if (x->p < x->end && *x->p == c) {
        x->p++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes (none appear in the keys and dtypes we
 * accept) into out[cap]; a string that does not fit is an error. */
static int lex_str(npy_lex *x, char *out, size_t cap)
{
    lex_ws(x);
    if (x->p >= x->end || (*x->p != '\'' && *x->p != '"'))
        return lex_fail(x, "expected a quoted string");
    char q = *x->p++;
    size_t n = 0;
    while (x->p < x->end && *x->p != q) {
        if (*x->p == '\\' || n + 1 >= cap)
            return lex_fail(x, "unexpected string");
        out[n++] = *x->p++;
    }
    if (x->p >= x->end)
        return lex_fail(x, "unterminated string");
    x->p++;
    out[n] = '\0';
    return VTOK_OK;
}

static int lex_word(npy_lex *x, const char *w)
{
    size_t n = strlen(w);
    lex_ws(x);
    if ((size_t)(x->end - x->p) >= n && memcmp(x->p, w, n) == 0) {
        x->p += n;
        return 1;
    }
    return 0;
}

/* (d0, d1, ...) or [d0, ...] of non-negative decimal ints. */
static int lex_shape(npy_lex *x, int *n_dims, int64_t shape[VT_MAX_DIMS])
{
    char close;
    if (lex_eat(x, '('))
        close = ')';
    else if (lex_eat(x, '['))
        close = ']';
    else
        return lex_fail(x, "shape is not a tuple");
    int n = 0;
    for (;;) {
        if (lex_eat(x, close))
            break;
        lex_ws(x);
        if (x->p >= x->end || *x->p < '0' || *x->p > '9')
            return lex_fail(x, "shape entry is not a non-negative integer");
        int64_t v = 0;
        while (x->p < x->end && *x->p >= '0' && *x->p <= '9') {
            int digit = *x->p++ - '0';
            if (v > (INT64_MAX - digit) / 10)
                return vt_fail(x->st, VTOK_EFORMAT, "%s: .npy shape entry overflows", x->name);
            v = v * 10 + digit;
        }
        if (x->p < x->end && *x->p == 'L') /* Python 2 long */
            x->p++;
        if (n == VT_MAX_DIMS)
            return vt_fail(x->st, VTOK_EUNSUPPORTED, "%s: .npy array has more than %d dims",
                           x->name, VT_MAX_DIMS);
        shape[n++] = v;
        if (lex_eat(x, close))
            break;
        if (!lex_eat(x, ','))
            return lex_fail(x, "expected ',' in shape");
    }
    *n_dims = n;
    return VTOK_OK;
}

typedef struct npy_hdr {
    char    descr[16];
    int     fortran;
    int     n_dims;
    int64_t shape[VT_MAX_DIMS];
} npy_hdr;

static int parse_dict(npy_lex *x, npy_hdr *h)
{
    int have_descr = 0, have_fortran = 0, have_shape = 0, rc;
    if (!lex_eat(x, '{'))
        return lex_fail(x, "expected '{'");
    for (;;) {
        if (lex_eat(x, '}'))
            break;
        char key[32];
        if ((rc = lex_str(x, key, sizeof key)))
            return rc;
        if (!lex_eat(x, ':'))
            return lex_fail(x, "expected ':'");
        if (strcmp(key, "descr") == 0 && !have_descr) {
            lex_ws(x);
            if (x->p < x->end && *x->p == '[')
                return vt_fail(x->st, VTOK_EUNSUPPORTED,
                               "%s: structured .npy dtypes are not supported", x->name);
            if ((rc = lex_str(x, h->descr, sizeof h->descr)))
                return rc;
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            if (lex_word(x, "True"))
                h->fortran = 1;
            else if (lex_word(x, "False"))
                h->fortran = 0;
            else
                return lex_fail(x, "fortran_order is not True or False");
            have_fortran = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if ((rc = lex_shape(x, &h->n_dims, h->shape)))
                return rc;
            have_shape = 1;
        } else {
            return lex_fail(x, "unknown or repeated key");
        }
        if (lex_eat(x, '}'))
            break;
        if (!lex_eat(x, ','))
            return lex_fail(x, "expected ',' or '}'");
    }
    lex_ws(x);
    if (x->p != x->end)
        return lex_fail(x, "trailing bytes after the dict");
    if (!have_descr || !have_fortran || !have_shape)
        return vt_fail(x->st, VTOK_EFORMAT,
                       "%s: malformed .npy header: missing key '%s'", x->name,
                       !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
    return VTOK_OK;
}

/* --------------------------------------------------------------- read -- */

/* as_i64 = 0: float dtypes into float32; 1: integer dtypes into int64. */
static int npy_read(npy_src *s, int as_i64, void **data, int *n_dims,
                    int64_t shape[VT_MAX_DIMS], vtok_status *st)
{
    const char *nm = s->name;
    uint8_t pre[12];
    if (s->size < 10)
        return vt_fail(st, VTOK_EFORMAT, "%s: too short to be a .npy file (%zu bytes)", nm,
                       s->size);
    int rc = src_read(s, pre, 8, st);
    if (rc)
        return rc;
    if (memcmp(pre, npy_magic, 6) != 0)
        return vt_fail(st, VTOK_EFORMAT, "%s: not a .npy file (bad magic)", nm);
    int major = pre[6], minor = pre[7];
    size_t prefix;
    uint32_t hlen;
    if (major == 1) {
        if ((rc = src_read(s, pre + 8, 2, st)))
            return rc;
        hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8;
        prefix = 10;
    } else if (major == 2 || major == 3) {
        if (s->size < 12)
            return vt_fail(st, VTOK_EFORMAT, "%s: too short for a .npy %d.%d header", nm, major,
                           minor);
        if ((rc = src_read(s, pre + 8, 4, st)))
            return rc;
        hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 |
               (uint32_t)pre[11] << 24;
        prefix = 12;
    } else {
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: unsupported .npy version %d.%d", nm, major,
                       minor);
    }
    if (hlen > s->size - prefix)
        return vt_fail(st, VTOK_EFORMAT, "%s: .npy header length %u exceeds file size (%zu)", nm,
                       hlen, s->size);
    if (hlen > NPY_MAX_HEADER)
        return vt_fail(st, VTOK_ELIMIT, "%s: .npy header length %u exceeds the %u-byte limit",
                       nm, hlen, NPY_MAX_HEADER);

    char *text = malloc((size_t)hlen + 1);
    if (!text)
        return vt_fail(st, VTOK_ENOMEM, "%s: out of memory", nm);
    if ((rc = src_read(s, text, hlen, st))) {
        free(text);
        return rc;
    }
    text[hlen] = '\0';
    npy_hdr h;
    memset(&h, 0, sizeof h);
    npy_lex x = {text, text + hlen, text, nm, st};
    rc = parse_dict(&x, &h);
    free(text);
    if (rc)
        return rc;

    size_t isz = 0;
    if (!as_i64 && strcmp(h.descr, "<f4") == 0)
        isz = 4;
    else if (!as_i64 && strcmp(h.descr, "<f8") == 0)
        isz = 8;
    else if (!as_i64 && strcmp(h.descr, "<f2") == 0)
        isz = 2;
    else if (as_i64 && strcmp(h.descr, "<i8") == 0)
        isz = 8;
    else if (as_i64 && strcmp(h.descr, "<i4") == 0)
        isz = 4;
    else if (h.descr[0] == '>')
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: big-endian dtype '%s' is not supported", nm,
                       h.descr);
    else if (strchr(h.descr, 'O'))
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: object dtype '%s' is not supported", nm,
                       h.descr);
    if (!isz)
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: dtype '%s' is not supported (need %s)", nm,
                       h.descr, as_i64 ? "<i8 or <i4" : "<f4, <f8 or <f2");
    if (h.fortran)
        return vt_fail(st, VTOK_EUNSUPPORTED,
                       "%s: fortran_order arrays are not supported (save C order)", nm);

    int64_t numel = 1, in_bytes, out_bytes;
    for (int i = 0; i < h.n_dims; i++)
        if (!vt_mul_ok(numel, h.shape[i], &numel))
            return vt_fail(st, VTOK_EFORMAT, "%s: .npy element count overflows", nm);
    int64_t osz = as_i64 ? 8 : 4;
    if (!vt_mul_ok(numel, (int64_t)isz, &in_bytes) || !vt_mul_ok(numel, osz, &out_bytes))
        return vt_fail(st, VTOK_EFORMAT, "%s: .npy byte size overflows", nm);
    if (out_bytes > NPY_MAX_BYTES || in_bytes > NPY_MAX_BYTES)
        return vt_fail(st, VTOK_ELIMIT, "%s: .npy array of %lld elements exceeds the 16 GiB limit",
                       nm, (long long)numel);
    size_t have = s->size - prefix - hlen;
    if ((uint64_t)in_bytes > have)
        return vt_fail(st, VTOK_EFORMAT,
                       "%s: .npy data truncated: shape needs %lld bytes, file has %zu", nm,
                       (long long)in_bytes, have);
    if ((uint64_t)in_bytes < have)
        return vt_fail(st, VTOK_EFORMAT,
                       "%s: .npy shape needs %lld bytes of data but the file has %zu", nm,
                       (long long)in_bytes, have);

    void *out = vt_alloc((size_t)out_bytes);
    if (!out)
        return vt_fail(st, VTOK_ENOMEM, "%s: out of memory (%lld bytes)", nm,
                       (long long)out_bytes);
    float *of = out;
    int64_t *oi = out;
    if ((int64_t)isz == osz) {
        rc = src_read(s, out, (size_t)in_bytes, st);
    } else {
        /* Convert in chunks so f64 input needs no second full-size buffer. */
        uint8_t *tmp = malloc(NPY_CHUNK * isz);
        if (!tmp)
            rc = vt_fail(st, VTOK_ENOMEM, "%s: out of memory", nm);
        for (int64_t k = 0; !rc && k < numel; k += NPY_CHUNK) {
            int64_t m = numel - k < NPY_CHUNK ? numel - k : NPY_CHUNK;
            rc = src_read(s, tmp, (size_t)m * isz, st);
            for (int64_t j = 0; !rc && j < m; j++) {
                if (as_i64) {
                    int32_t v;
                    memcpy(&v, tmp + 4 * j, 4);
                    oi[k + j] = v;
                } else if (isz == 2) {
                    uint16_t v;
                    memcpy(&v, tmp + 2 * j, 2);
                    of[k + j] = vt_f16_to_f32(v);
                } else {
                    double v;
                    memcpy(&v, tmp + 8 * j, 8);
                    of[k + j] = (float)v; /* IEEE: nearest, overflow to +-inf */
                }
            }
        }
        free(tmp);
    }
    if (rc) {
        vt_free(out);
        return rc;
    }
    *data = out;
    *n_dims = h.n_dims;
    for (int i = 0; i < h.n_dims; i++)
        shape[i] = h.shape[i];
    return VTOK_OK;
}

static int check_out_args(const char *fn, void *data, int *n_dims, int64_t *shape,
                          vtok_status *st)
{
    if (!data || !n_dims || !shape)
        return vt_fail(st, VTOK_EINVAL, "%s: NULL output argument", fn);
    *(void **)data = NULL;
    *n_dims = 0;
    return VTOK_OK;
}

static int read_path(const char *fn, const char *path, int as_i64, void **data, int *n_dims,
                     int64_t shape[VT_MAX_DIMS], vtok_status *st)
{
    int rc = check_out_args(fn, data, n_dims, shape, st);
    if (rc)
        return rc;
    if (!path)
        return vt_fail(st, VTOK_EINVAL, "%s: path is NULL", fn);
    int fd = vt_open_regular(path, "read", st);
    if (fd < 0)
        return fd;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        rc = vt_fail(st, VTOK_EIO, "cannot stat %s: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        rc = vt_fail(st, VTOK_EIO, "cannot read %s: not a regular file", path);
    } else {
        npy_src s = {fd, NULL, (size_t)sb.st_size, 0, path};
        rc = npy_read(&s, as_i64, data, n_dims, shape, st);
    }
    close(fd);
    return rc;
}

int vt_npy_read_f32(const char *path, float **data, int *n_dims, int64_t shape[VT_MAX_DIMS],
                    vtok_status *st)
{
    void *d = NULL;
    int rc = read_path("vt_npy_read_f32", path, 0, data ? &d : NULL, n_dims, shape, st);
    if (data)
        *data = d;
    return rc;
}

int vt_npy_read_i64(const char *path, int64_t **data, int *n_dims, int64_t shape[VT_MAX_DIMS],
                    vtok_status *st)
{
    void *d = NULL;
    int rc = read_path("vt_npy_read_i64", path, 1, data ? &d : NULL, n_dims, shape, st);
    if (data)
        *data = d;
    return rc;
}

int vt_npy_read_f32_mem(const void *buf, size_t size, const char *name, float **data,
                        int *n_dims, int64_t shape[VT_MAX_DIMS], vtok_status *st)
{
    void *d = NULL;
    int rc = check_out_args("vt_npy_read_f32_mem", data ? &d : NULL, n_dims, shape, st);
    if (rc)
        return rc;
    *data = NULL;
    if (!buf && size)
        return vt_fail(st, VTOK_EINVAL, "vt_npy_read_f32_mem: buf is NULL");
    npy_src s = {-1, buf, size, 0, name ? name : "<memory>"};
    rc = npy_read(&s, 0, &d, n_dims, shape, st);
    *data = d;
    return rc;
}

/* -------------------------------------------------------------- write -- */

static int npy_write(const char *fn, const char *path, const char *descr, size_t esz,
                     const void *data, int n_dims, const int64_t *shape, vtok_status *st)
{
    if (!path || n_dims < 0 || n_dims > VT_MAX_DIMS || (n_dims && !shape))
        return vt_fail(st, VTOK_EINVAL, "%s: bad argument", fn);
    int64_t numel = 1, bytes;
    for (int i = 0; i < n_dims; i++)
        if (!vt_mul_ok(numel, shape[i], &numel))
            return vt_fail(st, VTOK_EINVAL, "%s: bad shape for %s", fn, path);
    if (!vt_mul_ok(numel, (int64_t)esz, &bytes) || (uint64_t)bytes > SIZE_MAX)
        return vt_fail(st, VTOK_EINVAL, "%s: %s: array too large", fn, path);
    if (numel && !data)
        return vt_fail(st, VTOK_EINVAL, "%s: data is NULL", fn);

    /* The dict exactly as numpy writes it: sorted keys, repr(tuple) shape
     * ("()" for 0-D, "(5,)" for 1-D), a trailing ", ". */
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     descr);
    for (int i = 0; i < n_dims; i++)
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%s%lld", i ? ", " : "",
                      (long long)shape[i]);
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%s), }", n_dims == 1 ? "," : "");
    /* Pad with spaces and end with '\n' so the data starts on a 64-byte
     * boundary; like numpy, a header already aligned still gets 64 spaces. */
    int pad = 64 - (10 + n + 1) % 64;
    memset(hdr + n, ' ', (size_t)pad);
    n += pad;
    hdr[n++] = '\n';

    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(n & 0xff),
                       (uint8_t)(n >> 8)};
    vt_out_file o;
    int rc = vt_out_open(&o, path, st);
    if (rc)
        return rc;
    int ok = fwrite(pre, 1, sizeof pre, o.f) == sizeof pre &&
             fwrite(hdr, 1, (size_t)n, o.f) == (size_t)n &&
             (numel == 0 || fwrite(data, esz, (size_t)numel, o.f) == (size_t)numel);
    return vt_out_commit(&o, ok, st);
}

int vt_npy_write_f32(const char *path, const float *data, int n_dims, const int64_t *shape,
                     vtok_status *st)
{
    return npy_write("vt_npy_write_f32", path, "<f4", 4, data, n_dims, shape, st);
}

int vt_npy_write_i64(const char *path, const int64_t *data, int n_dims, const int64_t *shape,
                     vtok_status *st)
{
    return npy_write("vt_npy_write_i64", path, "<i8", 8, data, n_dims, shape, st);
}
