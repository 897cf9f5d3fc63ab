/*
 * vit_hf.c - the original ViT family (transformers modeling_vit.py,
 * modeling_deit.py, modeling_vit_mae.py): ViTModel, DeiTModel, ViTMAEModel.
 *
 * conv patch embedding with bias; [CLS] (DeiT: + distillation token) +
 * patches + learned positions over all tokens; layers named
 * layernorm_before / attention.attention.{query,key,value} /
 * attention.output.dense / layernorm_after / intermediate.dense /
 * output.dense; exact GELU, eps 1e-12 by default.
 * last_hidden_state = layernorm(encoder output); pooler_output =
 * tanh(pooler.dense(last_hidden_state[:, 0])) when the checkpoint has a
 * pooler. ViTMAEModel runs unmasked: every patch is kept in its original
 * order (HF's random_masking with mask_ratio 0 and noise = arange), and it
 * has no pooler.
 */
#include "family.h"

#include <stdio.h>
#include <string.h>

static const vt_vit_defaults vit_defaults = {
    .d = 768, .d_ff = 3072, .layers = 12, .heads = 12, .image = 224, .patch = 16,
    .channels = 3, .act = "gelu", .eps = 1e-12,
};

static int vit_load(vt_vit *v, vt_loader *ld, const cJSON *cfg)
{
    int qkv_bias = 1;
    const char *mt = "vit";
    int rc = vt_read_vit_config(cfg, &vit_defaults, v, ld->st);
    if (rc || (rc = vt_opt_bool(cfg, "qkv_bias", 1, &qkv_bias, "config.json", ld->st)) ||
        (rc = vt_opt_str(cfg, "model_type", "vit", &mt, "config.json", ld->st)) ||
        (rc = vt_vit_check(v, ld->st)))
        return rc;
    int64_t d = v->d, p = v->patch;
    int is_mae = !strcmp(mt, "vit_mae");

    v->patch_w = vt_get(ld, "embeddings.patch_embeddings.projection.weight", 4, d, v->channels, p, p);
    v->patch_b = vt_get(ld, "embeddings.patch_embeddings.projection.bias", 1, d, 0, 0, 0);
    v->cls = vt_get(ld, "embeddings.cls_token", 3, 1, 1, d, 0);
    /* DeiT's distillation token sits after [CLS] and, unlike registers, has a position. */
    v->reg = vt_get_opt(ld, "embeddings.distillation_token", 3, 1, 1, d, 0);
    v->n_reg = v->reg ? 1 : 0;
    vt_get_pos_table(v, ld, "embeddings.position_embeddings", 1, 1 + v->n_reg);
    if (vt_vit_alloc_layers(v, ld, v->n_layers))
        return ld->err;
    for (int64_t i = 0; i < v->n_layers && !ld->err; i++) {
        vt_vit_layer *L = &v->layers[i];
        char b[128];
#define N(s) (snprintf(b, sizeof b, "encoder.layer.%lld." s, (long long)i), b)
        vt_get_norm(ld, &L->ln1, N("layernorm_before"), d, v->eps);
        vt_get_linear(ld, &L->q, N("attention.attention.query"), d, d, qkv_bias);
        vt_get_linear(ld, &L->k, N("attention.attention.key"), d, d, qkv_bias);
        vt_get_linear(ld, &L->v, N("attention.attention.value"), d, d, qkv_bias);
        vt_get_linear(ld, &L->o, N("attention.output.dense"), d, d, 1);
        vt_get_norm(ld, &L->ln2, N("layernorm_after"), d, v->eps);
        vt_get_linear(ld, &L->fc1, N("intermediate.dense"), v->d_ff, d, 1);
        vt_get_linear(ld, &L->fc2, N("output.dense"), d, v->d_ff, 1);
#undef N
    }
    vt_get_norm(ld, &v->post_ln, "layernorm", d, v->eps);
    v->pool = VT_POOL_NONE;
    if (!is_mae && !ld->err) {
        const vt_st_tensor *t = vt_find(ld, "pooler.dense.weight");
        if (t) {
            int64_t po = t->n_dims == 2 ? t->shape[0] : 0;
            vt_get_linear(ld, &v->pool_dense, "pooler.dense", po, d, 1);
            v->pool = VT_POOL_CLS_DENSE_TANH;
        }
    }
    return ld->err;
}

static const char *const vit_types[] = {"vit", "deit", "vit_mae", NULL};
static const char *const no_composite[] = {NULL};

const vt_family vt_family_vit = {
    .arch = "vit",
    .anchor = "embeddings.patch_embeddings.projection.weight",
    .model_types = vit_types,
    .composite_types = no_composite,
    .load = vit_load,
};
