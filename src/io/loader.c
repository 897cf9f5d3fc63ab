/*
 * loader.c - sources (files read as one, under a prefix) and the part loader
 * that collects every missing tensor (loader.h).
 */
#include "loader.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vt_wsrc vt_wsrc_one(vt_weights *w, const char *name, const char *prefix)
{
    vt_wsrc s;
    memset(&s, 0, sizeof s);
    s.w[0] = w;
    s.name[0] = name ? name : "weights";
    s.n = w ? 1 : 0;
    s.prefix = prefix ? prefix : "";
    return s;
}

static int full_name(const vt_wsrc *s, const char *name, char *buf, size_t n)
{
    return snprintf(buf, n, "%s%s", s->prefix ? s->prefix : "", name) < (int)n;
}

static const vt_st_tensor *find_full(const vt_wsrc *s, const char *full, int *file)
{
    for (int i = s->n - 1; i >= 0; i--) { /* later files override earlier ones */
        const vt_st_tensor *t = vt_weights_find(s->w[i], full);
        if (t) {
            if (file)
                *file = i;
            return t;
        }
    }
    return NULL;
}

const vt_st_tensor *vt_wsrc_find(const vt_wsrc *s, const char *name, int *file)
{
    char full[512];
    return full_name(s, name, full, sizeof full) ? find_full(s, full, file) : NULL;
}

int vt_wsrc_has_prefix(const vt_wsrc *s)
{
    size_t n = strlen(s->prefix ? s->prefix : "");
    for (int i = 0; i < s->n; i++) {
        /* tensors are sorted by name: binary search would do, a scan is cheap enough */
        for (int64_t k = 0; k < vt_weights_count(s->w[i]); k++)
            if (!strncmp(vt_weights_at(s->w[i], k)->name, s->prefix, n))
                return 1;
    }
    return 0;
}

void vt_wsrc_release(const vt_wsrc *s, const float *data)
{
    for (int i = 0; i < s->n; i++)
        vt_weights_release(s->w[i], data); /* a no-op on a file that does not hold data */
}

void vt_wsrc_drop_pages(const vt_wsrc *s, const float *data)
{
    for (int i = 0; i < s->n; i++)
        vt_weights_drop_pages(s->w[i], data);
}

const char *vt_wsrc_files(const vt_wsrc *s, char *buf, size_t n)
{
    size_t u = 0;
    buf[0] = '\0';
    for (int i = 0; i < s->n && u + 1 < n; i++) {
        int k = snprintf(buf + u, n - u, "%s%s", i ? " + " : "", s->name[i]);
        u += k > 0 ? (size_t)k : 0;
    }
    if (!s->n)
        snprintf(buf, n, "(no file)");
    return buf;
}

void vt_owned_free(vt_owned *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->n; i++)
        vt_free(o->p[i]);
    free(o->p);
    memset(o, 0, sizeof *o);
}

void vt_loader_init(vt_loader *ld, const vt_wsrc *src, const char *what, vt_owned *own,
                    vtok_status *st)
{
    memset(ld, 0, sizeof *ld);
    ld->src = *src;
    if (!ld->src.prefix)
        ld->src.prefix = "";
    ld->what = what;
    ld->base = "";
    ld->own = own;
    ld->st = st;
}

/* The first hard error wins; its message names the part. */
static int hard(vt_loader *ld, int code, const char *msg)
{
    if (!ld->err) {
        ld->err = code;
        if (ld->what)
            vt_fail(ld->st, code, "%s: %s", ld->what, msg);
        else
            vt_fail(ld->st, code, "%s", msg);
    }
    return code;
}

int vt_loader_fail(vt_loader *ld, int code, const char *fmt, ...)
{
    char msg[sizeof ld->st->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return hard(ld, code, msg);
}

static void note_missing(vt_loader *ld, const char *full)
{
    ld->n_missing++;
    size_t used = strlen(ld->missing), need = strlen(full) + (used ? 2 : 0);
    if (used + need + 1 > sizeof ld->missing) /* the rest is counted, not listed */
        return;
    if (used)
        memcpy(ld->missing + used, ", ", 2);
    memcpy(ld->missing + used + (used ? 2 : 0), full, strlen(full) + 1);
    ld->n_listed++;
}

const char *vt_loader_base(vt_loader *ld, const char *base)
{
    const char *old = ld->base;
    ld->base = base ? base : "";
    return old;
}

static int loader_name(const vt_loader *ld, const char *name, char *buf, size_t n)
{
    return snprintf(buf, n, "%s%s%s", ld->src.prefix, ld->base, name) < (int)n;
}

static const float *get_impl(vt_loader *ld, const char *name, int n_dims, int64_t *shape,
                             int optional)
{
    if (ld->err)
        return NULL;
    char full[512];
    if (!loader_name(ld, name, full, sizeof full)) {
        vt_loader_fail(ld, VTOK_EINVAL, "tensor name too long: %.100s%.100s%.200s",
                       ld->src.prefix, ld->base, name);
        return NULL;
    }
    int file = 0;
    if (!find_full(&ld->src, full, &file)) {
        if (!optional)
            note_missing(ld, full);
        return NULL;
    }
    const float *p = NULL;
    vtok_status st = {0};
    int rc = vt_weights_f32(ld->src.w[file], full, n_dims, shape, &p, &st);
    if (rc) {
        char msg[sizeof st.msg];
        snprintf(msg, sizeof msg, "%.300s (in %.180s)", st.msg, ld->src.name[file]);
        hard(ld, rc, msg);
        return NULL;
    }
    ld->n_found++;
    return p;
}

const float *vt_get_shape(vt_loader *ld, const char *name, int n_dims, int64_t *shape)
{
    return get_impl(ld, name, n_dims, shape, 0);
}

const float *vt_get(vt_loader *ld, const char *name, int n_dims, int64_t d0, int64_t d1,
                    int64_t d2, int64_t d3)
{
    int64_t shape[4] = {d0, d1, d2, d3};
    return get_impl(ld, name, n_dims, shape, 0);
}

const float *vt_get_opt(vt_loader *ld, const char *name, int n_dims, int64_t d0, int64_t d1,
                        int64_t d2, int64_t d3)
{
    int64_t shape[4] = {d0, d1, d2, d3};
    return get_impl(ld, name, n_dims, shape, 1);
}

const vt_st_tensor *vt_find(const vt_loader *ld, const char *name)
{
    char full[512];
    return loader_name(ld, name, full, sizeof full) ? find_full(&ld->src, full, NULL) : NULL;
}

void vt_get_linear(vt_loader *ld, vt_linear *l, const char *name, int64_t n_out, int64_t n_in,
                   int bias)
{
    char buf[512];
    int64_t ws[2] = {n_out, n_in};
    memset(l, 0, sizeof *l);
    snprintf(buf, sizeof buf, "%s.weight", name);
    l->w = vt_get_shape(ld, buf, 2, ws);
    l->n_out = l->w ? ws[0] : n_out;
    l->n_in = l->w ? ws[1] : n_in;
    if (bias) {
        int64_t bs[1] = {l->n_out};
        snprintf(buf, sizeof buf, "%s.bias", name);
        l->b = vt_get_shape(ld, buf, 1, bs);
    }
}

void vt_get_norm(vt_loader *ld, vt_norm *n, const char *name, int64_t d, float eps)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s.weight", name);
    n->w = vt_get(ld, buf, 1, d, 0, 0, 0);
    snprintf(buf, sizeof buf, "%s.bias", name);
    n->b = vt_get(ld, buf, 1, d, 0, 0, 0);
    n->eps = eps;
}

float *vt_loader_alloc(vt_loader *ld, int64_t n)
{
    if (ld->err)
        return NULL;
    vt_owned *o = ld->own;
    float *p = n >= 0 && o ? vt_calloc((size_t)(n ? n : 1), sizeof(float)) : NULL;
    if (p && o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 16;
        void **q = realloc(o->p, (size_t)cap * sizeof *q);
        if (q) {
            o->p = q;
            o->cap = cap;
        }
    }
    if (!p || o->n == o->cap) {
        vt_free(p);
        hard(ld, VTOK_ENOMEM, "out of memory loading weights");
        return NULL;
    }
    o->p[o->n++] = p;
    return p;
}

int vt_loader_finish(vt_loader *ld)
{
    if (ld->err)
        return ld->err;
    if (!ld->n_missing)
        return 0;
    char files[200], tail[48] = "";
    vt_wsrc_files(&ld->src, files, sizeof files);
    if (ld->n_missing > ld->n_listed)
        snprintf(tail, sizeof tail, " and %d more", ld->n_missing - ld->n_listed);
    /* names first: they are what the user needs if the line is cut */
    return vt_fail(ld->st, VTOK_EMISSING, "%s%s%d tensor%s missing: %s%s (prefix '%s' in %s)",
                   ld->what ? ld->what : "", ld->what ? ": " : "", ld->n_missing,
                   ld->n_missing == 1 ? "" : "s", ld->missing, tail, ld->src.prefix, files);
}
