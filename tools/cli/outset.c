/* outset.c - see outset.h. */
#define _POSIX_C_SOURCE 200809L
#include "outset.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *staged, *final;
} out_file;

static out_file *files;
static int n_files, cap_files;

static char *join(const char *dir, const char *pre, const char *name)
{
    size_t n = strlen(dir) + strlen(pre) + strlen(name) + 2;
    char *p = n <= 4096 ? malloc(n) : NULL;
    if (p)
        snprintf(p, n, "%s/%s%s", dir, pre, name);
    return p;
}

const char *outset_stage(const char *dir, const char *name)
{
    char pre[32];
    snprintf(pre, sizeof pre, ".vtok-%ld.", (long)getpid());
    if (n_files == cap_files) {
        int cap = cap_files ? 2 * cap_files : 16;
        out_file *f = realloc(files, (size_t)cap * sizeof *f);
        if (!f) {
            fprintf(stderr, "vtok: out of memory\n");
            return NULL;
        }
        files = f;
        cap_files = cap;
    }
    char *s = join(dir, pre, name), *f = join(dir, "", name);
    if (!s || !f) {
        free(s);
        free(f);
        fprintf(stderr, "vtok: output path too long: %s/%s\n", dir, name);
        return NULL;
    }
    /* Replace only a regular file (or nothing): never a FIFO, a device or a
     * folder someone named as an output (lstat: a symlink itself is replaced,
     * not followed). Checked again before the rename. */
    struct stat sb;
    if (lstat(f, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISLNK(sb.st_mode)) {
        fprintf(stderr, "vtok: refusing to replace %s: not a regular file\n", f);
        free(s);
        free(f);
        return NULL;
    }
    files[n_files].staged = s;
    files[n_files].final = f;
    n_files++;
    return s;
}

FILE *outset_open_text(const char *dir, const char *name, const char **staged)
{
    const char *s = outset_stage(dir, name);
    if (!s)
        return NULL;
    /* O_EXCL: the staged name is ours alone; never write through a link. */
    int fd = open(s, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        fprintf(stderr, "vtok: cannot write %s/%s: %s\n", dir, name, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    *staged = s;
    return f;
}

int outset_close(FILE *f, const char *staged)
{
    int bad = ferror(f);
    int e = bad ? errno : 0;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad)
        fprintf(stderr, "vtok: cannot write %s: %s\n", staged, e ? strerror(e) : "write error");
    return bad;
}

int outset_finish(int rc)
{
    for (int i = 0; i < n_files; i++) {
        struct stat sb;
        if (!rc && lstat(files[i].final, &sb) == 0 && !S_ISREG(sb.st_mode) &&
            !S_ISLNK(sb.st_mode)) {
            fprintf(stderr, "vtok: refusing to replace %s: not a regular file\n", files[i].final);
            rc = 1;
        }
        if (!rc && rename(files[i].staged, files[i].final) != 0) {
            fprintf(stderr, "vtok: cannot rename %s to %s: %s\n", files[i].staged,
                    files[i].final, strerror(errno));
            rc = 1;
        }
        if (rc)
            unlink(files[i].staged); /* ours; absent if never written */
        free(files[i].staged);
        free(files[i].final);
    }
    free(files);
    files = NULL;
    n_files = cap_files = 0;
    return rc;
}

/* Create path and its parents; 0 only if path is then a directory (an
 * existing regular file of that name is an error before any work). */
int outset_mkdir(const char *path)
{
    char buf[4096];
    struct stat sb;
    if (!*path || snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return -1;
    return stat(buf, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : -1;
}

int cli_err(const char *prefix, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(prefix, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}
