/*
 * tensor.c - tensors, ragged tensors, arenas and the run planner (tensor.h).
 */
#include "tensor.h"

#include <stdlib.h>
#include <string.h>

int vt_tensor_init(vt_tensor *t, vt_dtype dtype, int n_dims, const int64_t *ne)
{
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->n_dims = n_dims;
    if (n_dims < 1 || n_dims > VT_TENSOR_MAX_DIMS)
        return VTOK_EINVAL;
    for (int i = 0; i < VT_TENSOR_MAX_DIMS; i++)
        t->ne[i] = i < n_dims ? ne[i] : 1;
    int64_t s = (int64_t)vt_dtype_size(dtype);
    for (int i = VT_TENSOR_MAX_DIMS - 1; i >= 0; i--) {
        if (t->ne[i] < 0)
            return VTOK_EINVAL;
        t->nb[i] = s;
        if (!vt_mul_ok(s, t->ne[i] ? t->ne[i] : 1, &s))
            return VTOK_ELIMIT;
    }
    return 0;
}

int64_t vt_tensor_nelem(const vt_tensor *t)
{
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

size_t vt_tensor_nbytes(const vt_tensor *t)
{
    return (size_t)vt_tensor_nelem(t) * vt_dtype_size(t->dtype);
}

int vt_tensor_is_contiguous(const vt_tensor *t)
{
    int64_t s = (int64_t)vt_dtype_size(t->dtype);
    for (int i = VT_TENSOR_MAX_DIMS - 1; i >= 0; i--) {
        if (t->ne[i] > 1 && t->nb[i] != s)
            return 0;
        s *= t->ne[i];
    }
    return 1;
}

vt_tensor vt_tensor_item(const vt_tensor *t, int64_t i)
{
    vt_tensor v;
    memset(&v, 0, sizeof v);
    v.dtype = t->dtype;
    v.n_dims = t->n_dims > 1 ? t->n_dims - 1 : 1;
    for (int k = 0; k + 1 < VT_TENSOR_MAX_DIMS; k++) {
        v.ne[k] = t->ne[k + 1];
        v.nb[k] = t->nb[k + 1];
    }
    v.ne[VT_TENSOR_MAX_DIMS - 1] = 1;
    v.nb[VT_TENSOR_MAX_DIMS - 1] = (int64_t)vt_dtype_size(t->dtype);
    v.data = t->data ? (char *)t->data + i * t->nb[0] : NULL;
    return v;
}

vt_tensor vt_ragged_item(const vt_ragged *r, int64_t i)
{
    vt_tensor v = r->flat;
    v.ne[0] = r->off[i + 1] - r->off[i];
    v.data = r->flat.data ? (char *)r->flat.data + r->off[i] * r->flat.nb[0] : NULL;
    return v;
}

void vt_arena_free(vt_arena *a)
{
    if (!a)
        return;
    vt_free(a->mem);
    a->mem = NULL;
    a->cap = 0;
}

void vt_planner_init(vt_planner *p)
{
    memset(p, 0, sizeof *p);
}

void vt_planner_free(vt_planner *p)
{
    free(p->req);
    memset(p, 0, sizeof *p);
}

static vt_plan_req *add(vt_planner *p, size_t bytes)
{
    if (p->err)
        return NULL;
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 32;
        vt_plan_req *r = realloc(p->req, (size_t)cap * sizeof *r);
        if (!r) {
            p->err = VTOK_ENOMEM;
            return NULL;
        }
        p->req = r;
        p->cap = cap;
    }
    size_t aligned = (bytes + VT_ALIGN - 1) / VT_ALIGN * VT_ALIGN;
    if (aligned < bytes || p->total > SIZE_MAX - aligned) {
        p->err = VTOK_ELIMIT;
        return NULL;
    }
    vt_plan_req *r = &p->req[p->n++];
    memset(r, 0, sizeof *r);
    r->bytes = bytes;
    r->at = p->total;
    p->total += aligned;
    return r;
}

void vt_plan_tensor(vt_planner *p, vt_tensor *t, vt_dtype dtype, int n_dims, int64_t a,
                    int64_t b, int64_t c, int64_t d)
{
    const int64_t ne[4] = {a, b, c, d};
    int rc = vt_tensor_init(t, dtype, n_dims, ne);
    if (rc) {
        p->err = p->err ? p->err : rc;
        return;
    }
    int64_t bytes;
    if (!vt_mul_ok(vt_tensor_nelem(t), (int64_t)vt_dtype_size(dtype), &bytes)) {
        p->err = p->err ? p->err : VTOK_ELIMIT;
        return;
    }
    vt_plan_req *r = add(p, (size_t)bytes);
    if (r)
        r->t = t;
}

void vt_plan_bytes(vt_planner *p, void **ptr, size_t bytes)
{
    vt_plan_req *r = add(p, bytes);
    if (r)
        r->raw = ptr;
}

void vt_plan_floats(vt_planner *p, float **ptr, int64_t n)
{
    if (n < 0 || n > INT64_MAX / (int64_t)sizeof(float) ||
        (uint64_t)n > SIZE_MAX / sizeof(float)) {
        p->err = p->err ? p->err : VTOK_ELIMIT;
        return;
    }
    vt_plan_bytes(p, (void **)ptr, (size_t)n * sizeof(float));
}

void vt_plan_ragged(vt_planner *p, vt_ragged *r, vt_dtype dtype, int64_t n,
                    const int64_t *rows, int n_inner, const int64_t *inner, int64_t *off)
{
    int64_t ne[VT_TENSOR_MAX_DIMS] = {0, 1, 1, 1}, total = 0;
    r->n = n;
    r->off = off;
    for (int64_t i = 0; i < n; i++) {
        off[i] = total;
        if (rows[i] < 0 || total > INT64_MAX - rows[i]) {
            p->err = p->err ? p->err : VTOK_ELIMIT;
            return;
        }
        total += rows[i];
    }
    off[n] = total;
    if (n_inner < 0 || n_inner > VT_TENSOR_MAX_DIMS - 1) {
        p->err = p->err ? p->err : VTOK_EINVAL;
        return;
    }
    ne[0] = total;
    for (int k = 0; k < n_inner; k++)
        ne[k + 1] = inner[k];
    vt_plan_tensor(p, &r->flat, dtype, 1 + n_inner, ne[0], ne[1], ne[2], ne[3]);
}

size_t vt_planner_bytes(const vt_planner *p)
{
    return p->total;
}

int vt_planner_commit(vt_planner *p, vt_arena *a, size_t limit, const char *what,
                      vtok_status *st)
{
    if (p->err == VTOK_ENOMEM)
        return vt_fail(st, VTOK_ENOMEM, "out of memory planning %s", what);
    if (p->err)
        return vt_fail(st, VTOK_ELIMIT, "%s is too large to plan", what);
    size_t need = p->total ? p->total : VT_ALIGN;
    if (limit && need > limit)
        return vt_fail(st, VTOK_ELIMIT, "%s needs %zu MiB, the memory limit is %zu MiB", what,
                       (need + (1u << 20) - 1) >> 20, limit >> 20);
    if (need > a->cap) {
        void *mem = vt_alloc(need);
        if (!mem)
            return vt_fail(st, VTOK_ENOMEM, "out of memory: %s needs %zu MiB", what, need >> 20);
        if (a->keep && a->mem)
            memcpy(mem, a->mem, a->keep < a->cap ? a->keep : a->cap);
        vt_free(a->mem);
        a->mem = mem;
        a->cap = need;
    }
    for (int i = 0; i < p->n; i++) {
        void *at = (char *)a->mem + p->req[i].at;
        if (p->req[i].t)
            p->req[i].t->data = at;
        if (p->req[i].raw)
            *p->req[i].raw = at;
    }
    return 0;
}
