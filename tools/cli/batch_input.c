/*
 * batch_input.c - see batch_input.h.
 *
 * Brace expansion follows bash's manual ("Brace Expansion"): a sequence
 * {x..y} counts from x to y (either way), and "when either x or y begins with
 * a zero, the shell attempts to force all generated terms to contain the same
 * number of digits, zero-padding where necessary"; {a,b,c} lists words; a
 * brace without either form stays literal. WebDataset's shard URLs
 * (braceexpand) use the same rules, which is how img2dataset's
 * "{00000..00999}.tar" names are written.
 */
#include "batch_input.h"
#include "batch_tar.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_SHARDS   ((int64_t)10 * 1000 * 1000)
#define MAX_DEPTH    64
#define MAX_LINE     8192

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int bs_ext_in(const char *ext, size_t ext_len, const char *exts)
{
    const char *p = exts;
    while (*p) {
        const char *e = strchr(p, ';');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == ext_len && n > 0) {
            size_t i = 0;
            while (i < n && tolower((unsigned char)ext[i]) == p[i])
                i++;
            if (i == n)
                return 1;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

/* ------------------------------------------------------------ braces -- */

typedef struct {
    int64_t count, max;
    int (*emit)(void *, const char *);
    void *user;
    char *err;
    size_t errlen;
} expand_state;

/* The matching '}' of the '{' at s[i], or -1. */
static int64_t match_brace(const char *s, int64_t i)
{
    int depth = 0;
    for (int64_t j = i; s[j]; j++) {
        if (s[j] == '{')
            depth++;
        else if (s[j] == '}' && --depth == 0)
            return j;
    }
    return -1;
}

/* "x..y" with optional signs: 1 and the bounds and padding width, else 0. */
static int parse_range(const char *s, size_t n, long long *a, long long *b, int *width)
{
    char buf[64];
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *dots = strstr(buf, "..");
    if (!dots)
        return 0;
    *dots = '\0';
    const char *x = buf, *y = dots + 2;
    for (const char *p = x; *p; p++)
        if (!isdigit((unsigned char)*p) && !(p == x && *p == '-'))
            return 0;
    for (const char *p = y; *p; p++)
        if (!isdigit((unsigned char)*p) && !(p == y && *p == '-'))
            return 0;
    if (!*x || !*y || !strcmp(x, "-") || !strcmp(y, "-") || strlen(x) > 18 || strlen(y) > 18)
        return 0;
    *a = strtoll(x, NULL, 10);
    *b = strtoll(y, NULL, 10);
    const char *dx = x[0] == '-' ? x + 1 : x, *dy = y[0] == '-' ? y + 1 : y;
    int zx = dx[0] == '0' && dx[1], zy = dy[0] == '0' && dy[1];
    *width = (zx || zy) ? (int)(strlen(x) > strlen(y) ? strlen(x) : strlen(y)) : 0;
    return 1;
}

static int expand_rec(expand_state *st, const char *done, const char *rest);

/* Continue with prefix + word + tail. */
static int expand_with(expand_state *st, const char *prefix, size_t np, const char *word,
                       size_t nw, const char *tail)
{
    size_t nt = strlen(tail);
    char *s = malloc(np + nw + nt + 1);
    if (!s)
        return errf(st->err, st->errlen, "out of memory expanding braces");
    memcpy(s, prefix, np);
    memcpy(s + np, word, nw);
    memcpy(s + np + nw, tail, nt + 1);
    /* the word itself may hold braces: expand from the prefix on */
    char *pre = malloc(np + 1);
    if (!pre) {
        free(s);
        return errf(st->err, st->errlen, "out of memory expanding braces");
    }
    memcpy(pre, prefix, np);
    pre[np] = '\0';
    int e = expand_rec(st, pre, s + np);
    free(pre);
    free(s);
    return e;
}

static int expand_rec(expand_state *st, const char *done, const char *rest)
{
    size_t nd = strlen(done);
    for (int64_t i = 0; rest[i]; i++) {
        if (rest[i] != '{')
            continue;
        int64_t j = match_brace(rest, i);
        if (j < 0)
            break;
        const char *in = rest + i + 1;
        size_t nin = (size_t)(j - i - 1);
        /* prefix = done + rest[0..i) */
        char *prefix = malloc(nd + (size_t)i + 1);
        if (!prefix)
            return errf(st->err, st->errlen, "out of memory expanding braces");
        memcpy(prefix, done, nd);
        memcpy(prefix + nd, rest, (size_t)i);
        prefix[nd + (size_t)i] = '\0';
        size_t np = nd + (size_t)i;
        const char *tail = rest + j + 1;
        long long a, b;
        int width, e = 0, handled = 0;
        if (parse_range(in, nin, &a, &b, &width)) {
            handled = 1;
            long long step = a <= b ? 1 : -1;
            for (long long v = a;; v += step) {
                char num[48];
                int k = width ? snprintf(num, sizeof num, "%0*lld", width, v)
                              : snprintf(num, sizeof num, "%lld", v);
                if ((e = expand_with(st, prefix, np, num, (size_t)k, tail)))
                    break;
                if (v == b)
                    break;
            }
        } else {
            /* a list: top-level commas inside the braces */
            int depth = 0, commas = 0;
            for (size_t k = 0; k < nin; k++) {
                depth += in[k] == '{' ? 1 : in[k] == '}' ? -1 : 0;
                commas += in[k] == ',' && depth == 0;
            }
            if (commas) {
                handled = 1;
                size_t start = 0;
                depth = 0;
                for (size_t k = 0; k <= nin && !e; k++) {
                    if (k < nin) {
                        depth += in[k] == '{' ? 1 : in[k] == '}' ? -1 : 0;
                        if (in[k] != ',' || depth != 0)
                            continue;
                    }
                    e = expand_with(st, prefix, np, in + start, k - start, tail);
                    start = k + 1;
                }
            }
        }
        free(prefix);
        if (handled)
            return e;
        /* literal brace: keep looking after it */
    }
    if (st->count >= st->max)
        return errf(st->err, st->errlen, "brace pattern expands to more than %lld names",
                    (long long)st->max);
    char *w = malloc(nd + strlen(rest) + 1);
    if (!w)
        return errf(st->err, st->errlen, "out of memory expanding braces");
    memcpy(w, done, nd);
    strcpy(w + nd, rest);
    st->count++;
    int e = st->emit(st->user, w);
    free(w);
    return e;
}

int64_t bs_expand_braces(const char *s, int64_t max_words,
                         int (*emit)(void *user, const char *word), void *user, char *err,
                         size_t errlen)
{
    expand_state st = {0, max_words, emit, user, err, errlen};
    if (expand_rec(&st, "", s))
        return -1;
    return st.count;
}

/* -------------------------------------------------------------- plan -- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static int ends_with_ci(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    if (n < k)
        return 0;
    for (size_t i = 0; i < k; i++)
        if (tolower((unsigned char)s[n - k + i]) != suf[i])
            return 0;
    return 1;
}

/* An output stem from a path: its base name without ".tar" (or another
 * extension when strip_ext), characters outside [A-Za-z0-9._-] as '_', no
 * leading dot (temp files start with one). */
static char *stem_of(const char *path, int strip_ext)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    char buf[256];
    size_t len = n - b < sizeof buf - 1 ? n - b : sizeof buf - 1;
    memcpy(buf, path + b, len);
    buf[len] = '\0';
    char *q = strchr(buf, '?'); /* a URL's query */
    if (q)
        *q = '\0';
    if (ends_with_ci(buf, ".tar"))
        buf[strlen(buf) - 4] = '\0';
    else if (strip_ext) {
        char *dot = strrchr(buf, '.');
        if (dot && dot != buf)
            *dot = '\0';
    }
    for (char *p = buf; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            *p = '_';
    while (buf[0] == '.')
        memmove(buf, buf + 1, strlen(buf));
    return dup_str(buf[0] ? buf : "shard");
}

static int add_shard(bs_plan *pl, bs_kind kind, char *name, const char *source, bs_files *files,
                     int64_t first, int64_t count, char *err, size_t errlen)
{
    char *src = dup_str(source);
    if (!name || !src) {
        free(name);
        free(src);
        return errf(err, errlen, "out of memory");
    }
    if (pl->n >= MAX_SHARDS) {
        free(name);
        free(src);
        return errf(err, errlen, "more than %lld shards", (long long)MAX_SHARDS);
    }
    if (pl->n == pl->cap) {
        int64_t cap = pl->cap ? 2 * pl->cap : 64;
        bs_shard *s = realloc(pl->shards, (size_t)cap * sizeof *s);
        if (!s) {
            free(name);
            free(src);
            return errf(err, errlen, "out of memory");
        }
        pl->shards = s;
        pl->cap = cap;
    }
    pl->shards[pl->n++] = (bs_shard){kind, name, src, files, first, count};
    return 0;
}

static int files_add(bs_files *f, const char *key)
{
    if (f->n == f->cap) {
        int64_t cap = f->cap ? 2 * f->cap : 256;
        char **k = realloc(f->keys, (size_t)cap * sizeof *k);
        if (!k)
            return -1;
        f->keys = k;
        f->cap = cap;
    }
    if (!(f->keys[f->n] = dup_str(key)))
        return -1;
    f->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Walk dir (relative part rel) in sorted order, adding images. */
static int walk(const char *root, const char *rel, int depth, const char *exts, bs_files *f,
                char *err, size_t errlen)
{
    if (depth > MAX_DEPTH)
        return errf(err, errlen, "%s/%s: folders nested deeper than %d", root, rel, MAX_DEPTH);
    char path[4096];
    if (snprintf(path, sizeof path, "%s%s%s", root, rel[0] ? "/" : "", rel) >= (int)sizeof path)
        return errf(err, errlen, "path too long under %s", root);
    DIR *d = opendir(path);
    if (!d)
        return errf(err, errlen, "cannot read folder %s: %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int e = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') /* ., .., hidden files and our own temp files */
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                e = errf(err, errlen, "out of memory");
                break;
            }
            names = nn;
        }
        if (!(names[n] = dup_str(de->d_name))) {
            e = errf(err, errlen, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (!e && n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && !e; i++) {
        char sub[4096], full[4096];
        if (snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", names[i]) >=
                (int)sizeof sub ||
            snprintf(full, sizeof full, "%s/%s", root, sub) >= (int)sizeof full) {
            e = errf(err, errlen, "path too long under %s", root);
            break;
        }
        struct stat sb;
        if (stat(full, &sb) != 0)
            continue; /* a dangling link */
        if (S_ISDIR(sb.st_mode)) {
            e = walk(root, sub, depth + 1, exts, f, err, errlen);
        } else if (S_ISREG(sb.st_mode)) {
            const char *dot = strrchr(names[i], '.');
            if (dot && bs_ext_in(dot + 1, strlen(dot + 1), exts) && files_add(f, sub))
                e = errf(err, errlen, "out of memory");
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return e;
}

static int add_source(bs_plan *pl, bs_files *f)
{
    bs_files **s = realloc(pl->sources, (size_t)(pl->n_sources + 1) * sizeof *s);
    if (!s)
        return -1;
    pl->sources = s;
    pl->sources[pl->n_sources++] = f;
    return 0;
}

static void files_free(bs_files *f)
{
    if (!f)
        return;
    for (int64_t i = 0; i < f->n; i++)
        free(f->keys[i]);
    free(f->keys);
    free(f->base);
    free(f);
}

/* Cut a folder's or list's images into shards STEM-00000, ... */
static int add_files_shards(bs_plan *pl, bs_files *f, const char *source, const char *stem,
                            int64_t shard_size, const char *exts, char *err, size_t errlen)
{
    if (add_source(pl, f)) {
        files_free(f);
        return errf(err, errlen, "out of memory");
    }
    if (f->n == 0)
        return errf(err, errlen, "%s: no images (extensions %s)", source, exts);
    for (int64_t first = 0, k = 0; first < f->n; first += shard_size, k++) {
        char name[320];
        snprintf(name, sizeof name, "%s-%05lld", stem, (long long)k);
        int64_t count = f->n - first < shard_size ? f->n - first : shard_size;
        if (add_shard(pl, BS_FILES, dup_str(name), source, f, first, count, err, errlen))
            return -1;
    }
    return 0;
}

static int looks_like_tar(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    bt_reader r;
    bt_member m;
    bt_init(&r, fp);
    int k = bt_next(&r, &m);
    bt_release(&r);
    fclose(fp);
    return k == 1;
}

typedef struct {
    bs_plan *pl;
    const char *exts;
    int64_t shard_size;
    char *err;
    size_t errlen;
} plan_ctx;

/* A list file: images, or tars when every line names one. Relative paths
 * are taken from the list file's folder. */
static int add_list(plan_ctx *pc, const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return errf(pc->err, pc->errlen, "cannot open %s: %s", path, strerror(errno));
    bs_files *f = calloc(1, sizeof *f);
    if (!f) {
        fclose(fp);
        return errf(pc->err, pc->errlen, "out of memory");
    }
    char line[MAX_LINE + 2];
    int all_tar = 1, e = 0;
    int64_t lineno = 0;
    while (!e && fgets(line, sizeof line, fp)) {
        lineno++;
        size_t n = strlen(line);
        if (n > MAX_LINE) {
            e = errf(pc->err, pc->errlen, "%s:%lld: line longer than %d bytes", path,
                     (long long)lineno, MAX_LINE);
            break;
        }
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (!n)
            continue;
        if (files_add(f, line))
            e = errf(pc->err, pc->errlen, "out of memory");
        all_tar &= ends_with_ci(line, ".tar") || !strncmp(line, "pipe:", 5);
    }
    if (!e && ferror(fp))
        e = errf(pc->err, pc->errlen, "read error on %s", path);
    fclose(fp);
    if (e) {
        files_free(f);
        return -1;
    }
    const char *slash = strrchr(path, '/');
    size_t nb = slash ? (size_t)(slash - path) + 1 : 0;
    f->base = malloc(nb + 1);
    if (!f->base) {
        files_free(f);
        return errf(pc->err, pc->errlen, "out of memory");
    }
    memcpy(f->base, path, nb);
    f->base[nb] = '\0';
    if (all_tar && f->n) { /* a list of shards */
        for (int64_t i = 0; i < f->n && !e; i++) {
            const char *l = f->keys[i];
            char full[MAX_LINE + 4200];
            if (!strncmp(l, "pipe:", 5))
                e = add_shard(pc->pl, BS_PIPE, stem_of(l, 0), l + 5, NULL, 0, 0, pc->err,
                              pc->errlen);
            else {
                snprintf(full, sizeof full, "%s%s", l[0] == '/' ? "" : f->base, l);
                e = add_shard(pc->pl, BS_TAR, stem_of(l, 0), full, NULL, 0, 0, pc->err,
                              pc->errlen);
            }
        }
        files_free(f);
        return e;
    }
    char *stem = stem_of(path, 1);
    e = stem ? add_files_shards(pc->pl, f, path, stem, pc->shard_size, pc->exts, pc->err,
                                    pc->errlen)
             : errf(pc->err, pc->errlen, "out of memory");
    free(stem);
    return e;
}

static int add_word(void *user, const char *w)
{
    plan_ctx *pc = user;
    if (!strncmp(w, "pipe:", 5)) {
        /* the stem: the command's last word, e.g. "pipe:curl -s URL/00042.tar" -> 00042 */
        const char *cmd = w + 5, *last = cmd;
        for (const char *p = cmd; *p; p++)
            if (*p == ' ' && p[1] && p[1] != ' ')
                last = p + 1;
        if (!*cmd)
            return errf(pc->err, pc->errlen, "empty pipe: command");
        return add_shard(pc->pl, BS_PIPE, stem_of(last, 0), cmd, NULL, 0, 0, pc->err,
                         pc->errlen);
    }
    struct stat sb;
    if (stat(w, &sb) != 0) {
        if (ends_with_ci(w, ".tar")) /* reported when its rank reads it */
            return add_shard(pc->pl, BS_TAR, stem_of(w, 0), w, NULL, 0, 0, pc->err, pc->errlen);
        return errf(pc->err, pc->errlen, "input %s: %s", w, strerror(errno));
    }
    if (S_ISDIR(sb.st_mode)) {
        bs_files *f = calloc(1, sizeof *f);
        if (!f || !(f->base = malloc(strlen(w) + 2))) {
            free(f);
            return errf(pc->err, pc->errlen, "out of memory");
        }
        sprintf(f->base, "%s/", w);
        char root[4096];
        snprintf(root, sizeof root, "%s", w);
        size_t n = strlen(root);
        while (n > 1 && root[n - 1] == '/')
            root[--n] = '\0';
        if (walk(root, "", 0, pc->exts, f, pc->err, pc->errlen)) {
            files_free(f);
            return -1;
        }
        char *stem = NULL;
        if (!strcmp(root, ".") || !strcmp(root, "/")) {
            char *rp = realpath(root, NULL);
            stem = stem_of(rp && strcmp(rp, "/") ? rp : "images", 0);
            free(rp);
        } else
            stem = stem_of(root, 0);
        int e = stem ? add_files_shards(pc->pl, f, w, stem, pc->shard_size, pc->exts, pc->err,
                                    pc->errlen)
                     : errf(pc->err, pc->errlen, "out of memory");
        free(stem);
        return e;
    }
    if (ends_with_ci(w, ".tar") || (S_ISREG(sb.st_mode) && looks_like_tar(w)))
        return add_shard(pc->pl, BS_TAR, stem_of(w, 0), w, NULL, 0, 0, pc->err, pc->errlen);
    if (S_ISREG(sb.st_mode))
        return add_list(pc, w);
    return errf(pc->err, pc->errlen, "input %s: not a tar, a folder or a list file", w);
}

static int add_spec(plan_ctx *pc, const char *spec)
{
    int64_t room = MAX_SHARDS - pc->pl->n;
    return bs_expand_braces(spec, room, add_word, pc, pc->err, pc->errlen) < 0 ? -1 : 0;
}

int bs_plan_build(const char *const *specs, int n_specs, const char *exts, int64_t shard_size,
                  bs_plan *plan, char *err, size_t errlen)
{
    memset(plan, 0, sizeof *plan);
    plan_ctx pc = {plan, exts, shard_size, err, errlen};
    for (int s = 0; s < n_specs; s++) {
        const char *spec = specs[s];
        if (!strncmp(spec, "pipe:", 5)) { /* a command: taken whole (it may hold commas) */
            if (add_spec(&pc, spec))
                goto fail;
            continue;
        }
        /* split at commas outside braces */
        size_t n = strlen(spec), start = 0;
        int depth = 0;
        for (size_t k = 0; k <= n; k++) {
            if (k < n) {
                depth += spec[k] == '{' ? 1 : spec[k] == '}' ? -1 : 0;
                if (spec[k] != ',' || depth > 0)
                    continue;
            }
            if (k > start) {
                char *one = malloc(k - start + 1);
                if (!one) {
                    errf(err, errlen, "out of memory");
                    goto fail;
                }
                memcpy(one, spec + start, k - start);
                one[k - start] = '\0';
                int e = add_spec(&pc, one);
                free(one);
                if (e)
                    goto fail;
            }
            start = k + 1;
        }
    }
    if (plan->n == 0) {
        errf(err, errlen, "no input shards");
        goto fail;
    }
    /* two shards writing the same files would overwrite each other */
    char **names = malloc((size_t)plan->n * sizeof *names);
    if (!names) {
        errf(err, errlen, "out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < plan->n; i++)
        names[i] = plan->shards[i].name;
    qsort(names, (size_t)plan->n, sizeof *names, cmp_str);
    for (int64_t i = 1; i < plan->n; i++)
        if (!strcmp(names[i - 1], names[i])) {
            errf(err, errlen,
                 "two inputs would write the same outputs '%s' (inputs with the same base "
                 "name in different folders: give each run its own --out)", names[i]);
            free(names);
            goto fail;
        }
    free(names);
    return 0;
fail:
    bs_plan_free(plan);
    return -1;
}

void bs_plan_free(bs_plan *plan)
{
    for (int64_t i = 0; i < plan->n; i++) {
        free(plan->shards[i].name);
        free(plan->shards[i].source);
    }
    free(plan->shards);
    for (int64_t i = 0; i < plan->n_sources; i++)
        files_free(plan->sources[i]);
    free(plan->sources);
    memset(plan, 0, sizeof *plan);
}
