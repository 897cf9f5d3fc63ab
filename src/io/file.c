/*
 * file.c - read a whole file into memory, with a size limit.
 *
 * Config files, index files and (with use_mmap=0) weight files come through
 * here. The limit is checked against fstat before allocating, so a huge or
 * hostile path costs nothing; the read loop still re-checks it because the
 * file may grow between fstat and read, and non-regular files (pipes) have no
 * size at all. The buffer is NUL-terminated so JSON text can be parsed in
 * place.
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* read() that retries on EINTR; returns bytes read, 0 at EOF, -1 on error. */
static ssize_t read_some(int fd, void *buf, size_t n)
{
    for (;;) {
        ssize_t r = read(fd, buf, n);
        if (r >= 0 || errno != EINTR)
            return r;
    }
}

int vt_open_regular(const char *path, const char *what, vtok_status *st)
{
    /* O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever
     * before the type could be checked. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return vt_fail(st, VTOK_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return vt_fail(st, VTOK_EIO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return vt_fail(st, VTOK_EIO, "cannot %s %s: %s", what, path,
                       S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

int vt_read_file(const char *path, size_t max_size, char **out, size_t *size, vtok_status *st)
{
    if (!out)
        return vt_fail(st, VTOK_EINVAL, "vt_read_file: out is NULL");
    *out = NULL;
    if (size)
        *size = 0;
    if (!path)
        return vt_fail(st, VTOK_EINVAL, "vt_read_file: path is NULL");
    /* Room for the terminating NUL must stay representable. */
    if (max_size > SIZE_MAX - 1)
        max_size = SIZE_MAX - 1;

    int fd = vt_open_regular(path, "read", st);
    if (fd < 0)
        return fd;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return vt_fail(st, VTOK_EIO, "cannot stat %s: %s", path, strerror(e));
    }

    size_t cap = 4096; /* unknown size (pipe, device): grow as needed */
    if (S_ISREG(sb.st_mode)) {
        if (sb.st_size < 0 || (uint64_t)sb.st_size > (uint64_t)max_size) {
            close(fd);
            return vt_fail(st, VTOK_ELIMIT, "%s is too large (%lld bytes, limit %zu)", path,
                           (long long)sb.st_size, max_size);
        }
        cap = (size_t)sb.st_size + 1;
    } else if (cap > max_size + 1) {
        cap = max_size + 1;
    }

    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return vt_fail(st, VTOK_ENOMEM, "out of memory reading %s (%zu bytes)", path, cap);
    }
    size_t n = 0;
    int rc = VTOK_OK;
    for (;;) {
        if (n + 1 == cap) {
            /* Full: probe for one more byte rather than doubling blindly, so
             * a regular file is read with exactly one allocation. */
            char c;
            ssize_t r = read_some(fd, &c, 1);
            if (r < 0) {
                rc = vt_fail(st, VTOK_EIO, "cannot read %s: %s", path, strerror(errno));
                break;
            }
            if (r == 0)
                break;
            if (n >= max_size) {
                rc = vt_fail(st, VTOK_ELIMIT, "%s is too large (more than %zu bytes)", path,
                             max_size);
                break;
            }
            size_t ncap = cap > (max_size + 1) / 2 ? max_size + 1 : cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                rc = vt_fail(st, VTOK_ENOMEM, "out of memory reading %s (%zu bytes)", path, ncap);
                break;
            }
            buf = nb;
            cap = ncap;
            buf[n++] = c;
            continue;
        }
        ssize_t r = read_some(fd, buf + n, cap - 1 - n);
        if (r < 0) {
            rc = vt_fail(st, VTOK_EIO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (rc != VTOK_OK) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    if (size)
        *size = n;
    return VTOK_OK;
}

/* ---- outputs: written beside the destination, renamed over it when complete ---- */

int vt_out_open(vt_out_file *o, const char *path, vtok_status *st)
{
    memset(o, 0, sizeof *o);
    o->path = path;
    struct stat sb;
    /* Never replace something that is not a plain file (a device node, a FIFO,
     * a directory): rename() would swap it for our file. */
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return vt_fail(st, VTOK_EIO, "%s exists and is not a regular file", path);
    if (snprintf(o->tmp, sizeof o->tmp, "%s.tmpXXXXXX", path) >= (int)sizeof o->tmp)
        return vt_fail(st, VTOK_EINVAL, "output path too long: %s", path);
    int fd = mkstemp(o->tmp);
    if (fd < 0)
        return vt_fail(st, VTOK_EIO, "cannot create %s: %s", path, strerror(errno));
    fchmod(fd, 0644);
    if (!(o->f = fdopen(fd, "wb"))) {
        int e = errno;
        close(fd);
        unlink(o->tmp);
        return vt_fail(st, VTOK_EIO, "cannot create %s: %s", path, strerror(e));
    }
    return 0;
}

int vt_out_commit(vt_out_file *o, int ok, vtok_status *st)
{
    int e = ok ? 0 : errno;
    if (o->f && fflush(o->f) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (o->f && ferror(o->f) && ok) {
        ok = 0;
        e = EIO;
    }
    if (o->f && fclose(o->f) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    o->f = NULL;
    if (ok && rename(o->tmp, o->path) != 0) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        unlink(o->tmp); /* only ever our own temp file: what was at path stays */
        return vt_fail(st, VTOK_EIO, "cannot write %s: %s", o->path, strerror(e ? e : EIO));
    }
    return 0;
}
