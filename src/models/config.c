/*
 * config.c - typed reads of config.json and checkpoint tensors for families.
 *
 * transformers writes config.json as a diff against the config class
 * defaults, so an absent key means "the class default", which each family
 * passes as `def`. A key that is present with the wrong type is an error,
 * never silently replaced.
 */
#include "vit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cJSON *item(const cJSON *cfg, const char *key)
{
    const cJSON *it = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, key) : NULL;
    return cJSON_IsNull(it) ? NULL : it;
}

int vt_cfg_int(const cJSON *cfg, const char *key, int64_t def, int64_t *out, vtok_status *st)
{
    const cJSON *it = item(cfg, key);
    if (!it) {
        *out = def;
        return 0;
    }
    double d = it->valuedouble;
    if (!cJSON_IsNumber(it) || d != floor(d) || fabs(d) > 9e15)
        return vt_fail(st, VTOK_EFORMAT, "config.json: '%s' must be an integer", key);
    *out = (int64_t)d;
    return 0;
}

int vt_cfg_float(const cJSON *cfg, const char *key, double def, double *out, vtok_status *st)
{
    const cJSON *it = item(cfg, key);
    if (!it) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return vt_fail(st, VTOK_EFORMAT, "config.json: '%s' must be a number", key);
    *out = it->valuedouble;
    return 0;
}

int vt_cfg_bool(const cJSON *cfg, const char *key, int def, int *out, vtok_status *st)
{
    const cJSON *it = item(cfg, key);
    if (!it) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(it))
        return vt_fail(st, VTOK_EFORMAT, "config.json: '%s' must be true or false", key);
    *out = cJSON_IsTrue(it);
    return 0;
}

int vt_cfg_str(const cJSON *cfg, const char *key, const char *def, const char **out,
               vtok_status *st)
{
    const cJSON *it = item(cfg, key);
    if (!it) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsString(it))
        return vt_fail(st, VTOK_EFORMAT, "config.json: '%s' must be a string", key);
    *out = it->valuestring;
    return 0;
}

int vt_cfg_side(const cJSON *cfg, const char *key, int64_t def, int64_t *out, vtok_status *st)
{
    const cJSON *it = item(cfg, key);
    if (cJSON_IsArray(it)) {
        const cJSON *a = cJSON_GetArrayItem(it, 0), *b = cJSON_GetArrayItem(it, 1);
        if (cJSON_GetArraySize(it) != 2 || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) ||
            a->valuedouble != floor(a->valuedouble))
            return vt_fail(st, VTOK_EFORMAT, "config.json: '%s' must be an integer or [h, w]",
                           key);
        if (a->valuedouble != b->valuedouble)
            return vt_fail(st, VTOK_EUNSUPPORTED, "config.json: non-square '%s' [%g, %g]", key,
                           a->valuedouble, b->valuedouble);
        *out = (int64_t)a->valuedouble;
        return 0;
    }
    return vt_cfg_int(cfg, key, def, out, st);
}

/* ---- tensors ---- */

static const float *get_impl(vt_loader *ld, const char *name, int n_dims, int64_t d0,
                             int64_t d1, int64_t d2, int64_t d3, int optional)
{
    if (ld->err)
        return NULL;
    char full[512];
    if (snprintf(full, sizeof full, "%s%s", ld->prefix, name) >= (int)sizeof full) {
        ld->err = vt_fail(ld->st, VTOK_EINVAL, "tensor name too long: %s%s", ld->prefix, name);
        return NULL;
    }
    if (optional && !vt_weights_find(ld->w, full))
        return NULL;
    int64_t shape[4] = {d0, d1, d2, d3};
    const float *p = NULL;
    int rc = vt_weights_f32(ld->w, full, n_dims, shape, &p, ld->st);
    if (rc) {
        ld->err = rc;
        return NULL;
    }
    return p;
}

const float *vt_get(vt_loader *ld, const char *name, int n_dims, int64_t d0, int64_t d1,
                    int64_t d2, int64_t d3)
{
    return get_impl(ld, name, n_dims, d0, d1, d2, d3, 0);
}

const float *vt_get_opt(vt_loader *ld, const char *name, int n_dims, int64_t d0, int64_t d1,
                        int64_t d2, int64_t d3)
{
    return get_impl(ld, name, n_dims, d0, d1, d2, d3, 1);
}

void vt_get_linear(vt_loader *ld, vt_linear *l, const char *name, int64_t n_out, int64_t n_in,
                   int bias)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s.weight", name);
    l->w = vt_get(ld, buf, 2, n_out, n_in, 0, 0);
    l->n_out = n_out;
    l->n_in = n_in;
    l->b = NULL;
    if (bias) {
        snprintf(buf, sizeof buf, "%s.bias", name);
        l->b = vt_get(ld, buf, 1, n_out, 0, 0, 0);
    }
}

void vt_get_norm(vt_loader *ld, vt_norm *n, const char *name, int64_t d, float eps)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s.weight", name);
    n->w = vt_get(ld, buf, 1, d, 0, 0, 0);
    snprintf(buf, sizeof buf, "%s.bias", name);
    n->b = vt_get(ld, buf, 1, d, 0, 0, 0);
    n->eps = eps;
}

static int own(vt_loader *ld, void *p)
{
    vt_vit *v = ld->v;
    if (v->n_owned == v->cap_owned) {
        int cap = v->cap_owned ? 2 * v->cap_owned : 16;
        void **o = realloc(v->owned, (size_t)cap * sizeof *o);
        if (!o)
            return 0;
        v->owned = o;
        v->cap_owned = cap;
    }
    v->owned[v->n_owned++] = p;
    return 1;
}

float *vt_loader_alloc(vt_loader *ld, int64_t n)
{
    if (ld->err)
        return NULL;
    float *p = n >= 0 ? vt_calloc((size_t)n, sizeof(float)) : NULL;
    if (!p || !own(ld, p)) {
        vt_free(p);
        ld->err = vt_fail(ld->st, VTOK_ENOMEM, "out of memory loading weights");
        return NULL;
    }
    return p;
}

int vt_vit_alloc_layers(vt_loader *ld, int64_t n_layers)
{
    if (ld->err)
        return ld->err;
    if (n_layers < 1 || n_layers > 4096)
        return ld->err = vt_fail(ld->st, VTOK_EFORMAT, "config.json: num_hidden_layers %lld out of range",
                                 (long long)n_layers);
    ld->v->layers = calloc((size_t)n_layers, sizeof *ld->v->layers);
    if (!ld->v->layers)
        return ld->err = vt_fail(ld->st, VTOK_ENOMEM, "out of memory");
    ld->v->n_layers = n_layers;
    return 0;
}

void vt_vit_free(vt_vit *v)
{
    if (!v)
        return;
    for (int i = 0; i < v->n_owned; i++)
        vt_free(v->owned[i]);
    free(v->owned);
    free(v->layers);
    memset(v, 0, sizeof *v);
}

int vt_find_prefix(const vt_weights *w, const char *anchor, char *buf, size_t n, vtok_status *st)
{
    size_t al = strlen(anchor);
    int found = 0;
    buf[0] = '\0';
    for (int64_t i = 0; i < vt_weights_count(w); i++) {
        const char *name = vt_weights_at(w, i)->name;
        size_t nl = strlen(name);
        if (nl < al || strcmp(name + nl - al, anchor) != 0)
            continue;
        size_t pl = nl - al;
        if (pl > 0 && name[pl - 1] != '.')
            continue; /* must end at a module boundary */
        if (pl >= n)
            return vt_fail(st, VTOK_EFORMAT, "tensor name too long: %s", name);
        if (found && (strlen(buf) != pl || strncmp(buf, name, pl) != 0))
            return vt_fail(st, VTOK_EFORMAT,
                           "several vision towers in one checkpoint ('%s' and '%.*s'); "
                           "not supported yet", buf, (int)pl, name);
        memcpy(buf, name, pl);
        buf[pl] = '\0';
        found = 1;
    }
    if (!found)
        return vt_fail(st, VTOK_EMISSING, "missing tensor '%s' (no vision tower found)", anchor);
    return 0;
}

int vt_vit_check(const vt_vit *v, vtok_status *st)
{
    if (v->d <= 0 || v->d > 65536 || v->n_heads <= 0 || v->d % v->n_heads != 0)
        return vt_fail(st, VTOK_EFORMAT, "config.json: hidden_size %lld not divisible by %lld heads",
                       (long long)v->d, (long long)v->n_heads);
    if (v->patch <= 0 || v->patch > 1024 || v->image_size < v->patch || v->image_size > 65536)
        return vt_fail(st, VTOK_EFORMAT, "config.json: bad patch_size %lld / image_size %lld",
                       (long long)v->patch, (long long)v->image_size);
    if (v->channels <= 0 || v->channels > 64 || v->d_ff <= 0 || v->d_ff > 1 << 20)
        return vt_fail(st, VTOK_EFORMAT, "config.json: bad num_channels or intermediate_size");
    if (!(v->eps > 0.0f) || v->eps > 1.0f)
        return vt_fail(st, VTOK_EFORMAT, "config.json: bad layer_norm_eps %g", (double)v->eps);
    return 0;
}
