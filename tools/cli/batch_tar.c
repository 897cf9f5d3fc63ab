/*
 * batch_tar.c - see batch_tar.h.
 *
 * Formats, from the POSIX.1-2017 pax specification (XCU "pax", sections
 * "ustar Interchange Format" and "pax Interchange Format") and GNU tar's
 * manual ("Basic Tar Format", GNU extensions): a header block is 512 bytes;
 * name[100] at 0, size[12] at 124 (octal, or base-256 when the first byte has
 * its high bit set, a GNU and star extension for sizes >= 8 GiB), chksum[8]
 * at 148 (the unsigned sum of the header's bytes with the chksum field taken
 * as eight spaces; very old tars summed signed chars, accepted too, as GNU
 * tar does), typeflag at 156, magic "ustar\0" + version "00" at 257 (POSIX:
 * then prefix[155] at 345 is joined before the name with a '/'; GNU's
 * "ustar  \0" uses that area for other fields). Data follows in 512-byte
 * blocks; the archive ends with two zero blocks (one is accepted, then EOF).
 * Extension records precede the member they describe: GNU 'L' (its data is
 * the next member's name), pax 'x' ("LEN key=value\n" records; "path" and
 * "size" are honoured, others ignored), pax 'g' (ignored).
 */
#include "batch_tar.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 512
#define MAX_EXT_BYTES (1 << 20) /* a GNU long name or pax header: 1 MiB at most */

void bt_init(bt_reader *r, FILE *f)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->pax_size = -1;
}

void bt_release(bt_reader *r)
{
    free(r->long_name);
    r->long_name = NULL;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int fail(bt_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
    r->ended = 1;
    return -1;
}

/* Exactly n bytes, or -1 (truncated / read error). */
static int read_exact(bt_reader *r, void *buf, size_t n)
{
    size_t got = fread(buf, 1, n, r->f);
    r->offset += got;
    if (got == n)
        return 0;
    if (ferror(r->f))
        return fail(r, "read error at byte %llu: %s", (unsigned long long)r->offset,
                    strerror(errno));
    return fail(r, "truncated archive: ended at byte %llu inside a %s",
                (unsigned long long)r->offset, n == BLOCK ? "header" : "member");
}

static int skip_bytes(bt_reader *r, uint64_t n)
{
    char buf[16384];
    while (n > 0) {
        size_t k = n < sizeof buf ? (size_t)n : sizeof buf;
        if (read_exact(r, buf, k))
            return -1;
        n -= k;
    }
    return 0;
}

static uint64_t padded(int64_t size)
{
    return ((uint64_t)size + BLOCK - 1) / BLOCK * BLOCK;
}

/* An octal field: leading spaces, digits, then NUL or space (or the end). */
static int parse_octal(const unsigned char *p, int len, uint64_t *out)
{
    int i = 0;
    uint64_t v = 0;
    while (i < len && p[i] == ' ')
        i++;
    int digits = 0;
    for (; i < len && p[i] >= '0' && p[i] <= '7'; i++, digits++) {
        if (v >> 60)
            return -1;
        v = v * 8 + (uint64_t)(p[i] - '0');
    }
    for (; i < len; i++)
        if (p[i] != ' ' && p[i] != '\0')
            return -1;
    *out = v;
    return digits ? 0 : (len > 0 && (p[0] == '\0' || p[0] == ' ') ? 0 : -1);
}

/* size[12]: octal or GNU base-256 (high bit of the first byte). */
static int parse_size(const unsigned char *p, int64_t *out)
{
    uint64_t v = 0;
    if (p[0] & 0x80) {
        if (p[0] == 0xff) /* negative */
            return -1;
        v = p[0] & 0x7f;
        for (int i = 1; i < 12; i++) {
            if (v >> 55)
                return -1;
            v = v << 8 | p[i];
        }
    } else if (parse_octal(p, 12, &v))
        return -1;
    if (v > ((uint64_t)1 << 62))
        return -1;
    *out = (int64_t)v;
    return 0;
}

static int checksum_ok(const unsigned char *h)
{
    uint64_t want;
    if (parse_octal(h + 148, 8, &want))
        return 0;
    uint64_t su = 0;
    int64_t ss = 0;
    for (int i = 0; i < BLOCK; i++) {
        unsigned char c = (i >= 148 && i < 156) ? ' ' : h[i];
        su += c;
        ss += (signed char)c;
    }
    return su == want || (uint64_t)ss == want;
}

static int all_zero(const unsigned char *h)
{
    for (int i = 0; i < BLOCK; i++)
        if (h[i])
            return 0;
    return 1;
}

/* Read an extension member's data (bounded) into a fresh NUL-terminated buffer. */
static char *read_ext(bt_reader *r, int64_t size, const char *what)
{
    if (size > MAX_EXT_BYTES) {
        fail(r, "%s of %lld bytes at byte %llu (limit %d)", what, (long long)size,
             (unsigned long long)r->offset, MAX_EXT_BYTES);
        return NULL;
    }
    char *buf = malloc((size_t)size + 1);
    if (!buf) {
        fail(r, "out of memory");
        return NULL;
    }
    if (read_exact(r, buf, (size_t)size) || skip_bytes(r, padded(size) - (uint64_t)size)) {
        free(buf);
        return NULL;
    }
    buf[size] = '\0';
    return buf;
}

/* pax records "LEN key=value\n": take path and size. */
static int parse_pax(bt_reader *r, const char *buf, int64_t n)
{
    int64_t i = 0;
    while (i < n) {
        int64_t len = 0, j = i;
        while (j < n && buf[j] >= '0' && buf[j] <= '9' && len < MAX_EXT_BYTES)
            len = len * 10 + (buf[j++] - '0');
        if (j == i || j >= n || buf[j] != ' ' || len <= j - i + 1 || i + len > n ||
            buf[i + len - 1] != '\n')
            return fail(r, "malformed pax record at byte %lld of an extended header",
                        (long long)i);
        const char *kv = buf + j + 1, *end = buf + i + len - 1;
        const char *eq = memchr(kv, '=', (size_t)(end - kv));
        if (!eq)
            return fail(r, "pax record without '=' in an extended header");
        size_t klen = (size_t)(eq - kv), vlen = (size_t)(end - eq - 1);
        if (klen == 4 && !memcmp(kv, "path", 4)) {
            if (vlen > 4096)
                return fail(r, "pax path longer than 4096 bytes");
            free(r->long_name);
            r->long_name = malloc(vlen + 1);
            if (!r->long_name)
                return fail(r, "out of memory");
            memcpy(r->long_name, eq + 1, vlen);
            r->long_name[vlen] = '\0';
        } else if (klen == 4 && !memcmp(kv, "size", 4)) {
            int64_t v = 0;
            size_t d = 0;
            for (; d < vlen && eq[1 + d] >= '0' && eq[1 + d] <= '9'; d++) {
                if (v > ((int64_t)1 << 58))
                    return fail(r, "pax size out of range");
                v = v * 10 + (eq[1 + d] - '0');
            }
            if (d == 0 || d != vlen)
                return fail(r, "malformed pax size");
            r->pax_size = v;
        }
        i += len;
    }
    return 0;
}

int bt_next(bt_reader *r, bt_member *m)
{
    unsigned char h[BLOCK];
    for (;;) {
        if (r->ended)
            return r->err[0] ? -1 : 0;
        uint64_t at = r->offset;
        size_t got = fread(h, 1, BLOCK, r->f);
        r->offset += got;
        if (got == 0 && !ferror(r->f)) { /* EOF on a block boundary: an end without markers */
            r->ended = 1;
            if (r->long_name || r->pax_size >= 0)
                return fail(r, "archive ends after an extended header at byte %llu",
                            (unsigned long long)at);
            return 0;
        }
        if (got != BLOCK)
            return ferror(r->f) ? fail(r, "read error at byte %llu: %s",
                                       (unsigned long long)r->offset, strerror(errno))
                                : fail(r, "truncated archive: %zu bytes of a header at byte %llu",
                                       got, (unsigned long long)at);
        if (all_zero(h)) { /* end of archive (the second zero block is not required) */
            r->ended = 1;
            return 0;
        }
        if (!checksum_ok(h))
            return fail(r, "bad header checksum at byte %llu (not a tar archive, or corrupt)",
                        (unsigned long long)at);
        int64_t size;
        if (parse_size(h + 124, &size))
            return fail(r, "bad size field in the header at byte %llu", (unsigned long long)at);
        char type = (char)h[156];
        if (type >= '1' && type <= '6')
            size = 0; /* links, devices, folders, FIFOs: no data blocks (POSIX ustar) */
        if (type == 'L' || type == 'x') {
            char *buf = read_ext(r, size, type == 'L' ? "a GNU long name" : "a pax header");
            if (!buf)
                return -1;
            if (type == 'L') {
                free(r->long_name);
                r->long_name = buf;
                if (strlen(buf) > 4096)
                    return fail(r, "GNU long name longer than 4096 bytes");
            } else {
                int e = parse_pax(r, buf, size);
                free(buf);
                if (e)
                    return -1;
            }
            continue;
        }
        if (r->pax_size >= 0) { /* pax size overrides the header's */
            size = r->pax_size;
            r->pax_size = -1;
        }
        if (r->long_name) {
            snprintf(m->name, sizeof m->name, "%s", r->long_name);
            free(r->long_name);
            r->long_name = NULL;
        } else {
            char name[256 + 1];
            size_t nl = strnlen((const char *)h, 100);
            size_t pl = 0;
            if (!memcmp(h + 257, "ustar\0", 6) && !memcmp(h + 263, "00", 2))
                pl = strnlen((const char *)h + 345, 155);
            if (pl) {
                memcpy(name, h + 345, pl);
                name[pl] = '/';
                memcpy(name + pl + 1, h, nl);
                name[pl + 1 + nl] = '\0';
            } else {
                memcpy(name, h, nl);
                name[nl] = '\0';
            }
            snprintf(m->name, sizeof m->name, "%s", name);
        }
        m->size = size;
        m->regular = type == '0' || type == '\0' || type == '7';
        if (!m->regular) {
            if (skip_bytes(r, padded(size)))
                return -1;
            continue;
        }
        return 1;
    }
}

int bt_read_data(bt_reader *r, const bt_member *m, void *buf)
{
    if (read_exact(r, buf, (size_t)m->size))
        return -1;
    return skip_bytes(r, padded(m->size) - (uint64_t)m->size);
}

int bt_skip_data(bt_reader *r, const bt_member *m)
{
    return skip_bytes(r, padded(m->size));
}
