/*
 * family.c - config and tensor reads shared by the vision families.
 */
#include "family.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int vt_read_vit_config(const cJSON *cfg, const vt_vit_defaults *def, vt_vit *v, vtok_status *st)
{
    const char *act = NULL;
    double eps = 0.0;
    int rc;
    if ((rc = vt_opt_int(cfg, "hidden_size", def->d, &v->d, "config.json", st)) ||
        (rc = vt_opt_int(cfg, "intermediate_size", def->d_ff, &v->d_ff, "config.json", st)) ||
        (rc = vt_opt_int(cfg, "num_hidden_layers", def->layers, &v->n_layers, "config.json", st)) ||
        (rc = vt_opt_int(cfg, "num_attention_heads", def->heads, &v->n_heads, "config.json", st)) ||
        (rc = vt_opt_int(cfg, "num_channels", def->channels, &v->channels, "config.json", st)) ||
        (rc = vt_opt_side(cfg, "image_size", def->image, &v->image_size, "config.json", st)) ||
        (rc = vt_opt_side(cfg, "patch_size", def->patch, &v->patch, "config.json", st)) ||
        (rc = vt_opt_str(cfg, "hidden_act", def->act, &act, "config.json", st)) ||
        (rc = vt_opt_float(cfg, "layer_norm_eps", def->eps, &eps, "config.json", st)))
        return rc;
    int a = vt_act_from_name(act);
    if (a < 0)
        return vt_fail(st, VTOK_EUNSUPPORTED, "config.json: unsupported hidden_act '%s'", act);
    v->act = (vt_act)a;
    v->eps = (float)eps;
    return 0;
}

int vt_get_pos_table(vt_vit *v, vt_loader *ld, const char *name, int leading_one, int64_t prefix_rows)
{
    const float *p = leading_one ? vt_get(ld, name, 3, 1, -1, v->d, 0)
                                 : vt_get(ld, name, 2, -1, v->d, 0, 0);
    if (!p)
        return ld->err;
    /* vt_get wrote nothing back; look the size up again from the file. */
    const vt_st_tensor *t = vt_find(ld, name);
    int64_t rows = t->shape[leading_one ? 1 : 0] - prefix_rows;
    int64_t g = (int64_t)llround(sqrt((double)(rows > 0 ? rows : 0)));
    if (rows <= 0 || g * g != rows)
        return ld->err = vt_fail(ld->st, VTOK_ESHAPE,
                                 "tensor '%s' has %lld position rows, not %lld + a square grid",
                                 t->name, (long long)t->shape[leading_one ? 1 : 0],
                                 (long long)prefix_rows);
    v->pos = p;
    v->grid_h = v->grid_w = g;
    v->pos_prefix = prefix_rows;
    return 0;
}

int vt_load_clip_encoder(vt_vit *v, vt_loader *ld)
{
    int64_t d = v->d;
    if (vt_vit_alloc_layers(v, ld, v->n_layers))
        return ld->err;
    for (int64_t i = 0; i < v->n_layers && !ld->err; i++) {
        vt_vit_layer *L = &v->layers[i];
        char b[128];
#define N(s) (snprintf(b, sizeof b, "encoder.layers.%lld." s, (long long)i), b)
        vt_get_norm(ld, &L->ln1, N("layer_norm1"), d, v->eps);
        vt_get_linear(ld, &L->q, N("self_attn.q_proj"), d, d, 1);
        vt_get_linear(ld, &L->k, N("self_attn.k_proj"), d, d, 1);
        vt_get_linear(ld, &L->v, N("self_attn.v_proj"), d, d, 1);
        vt_get_linear(ld, &L->o, N("self_attn.out_proj"), d, d, 1);
        vt_get_norm(ld, &L->ln2, N("layer_norm2"), d, v->eps);
        vt_get_linear(ld, &L->fc1, N("mlp.fc1"), v->d_ff, d, 1);
        vt_get_linear(ld, &L->fc2, N("mlp.fc2"), d, v->d_ff, 1);
#undef N
    }
    return ld->err;
}
