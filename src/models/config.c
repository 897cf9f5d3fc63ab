/*
 * config.c - what every family shares around loading: layer allocation,
 * the tower prefix search, size checks. Options go through io/opt.h,
 * tensors through io/loader.h.
 */
#include "vit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vt_vit_alloc_layers(vt_vit *v, vt_loader *ld, int64_t n_layers)
{
    if (ld->err)
        return ld->err;
    if (n_layers < 1 || n_layers > 4096)
        return vt_loader_fail(ld, VTOK_EFORMAT, "config.json: num_hidden_layers %lld out of range",
                              (long long)n_layers);
    v->layers = calloc((size_t)n_layers, sizeof *v->layers);
    if (!v->layers)
        return vt_loader_fail(ld, VTOK_ENOMEM, "out of memory");
    v->n_layers = n_layers;
    return 0;
}

void vt_vit_free(vt_vit *v)
{
    if (!v)
        return;
    vt_owned_free(&v->own);
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
