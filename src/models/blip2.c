/*
 * blip2.c - BLIP-2 / InstructBLIP vision towers, the EVA ViT-g of LAVIS
 * (transformers modeling_blip_2.py, Blip2VisionModel).
 *
 * conv patch embedding with bias; [CLS] + patches + learned positions
 * (a [1, 1+N, d] parameter); fused qkv Linear without bias plus separate
 * q_bias and v_bias (the k bias is zero: qkv_bias = cat(q_bias, 0, v_bias));
 * output projection `self_attn.projection`; exact GELU, eps 1e-6.
 * last_hidden_state = post_layernorm(encoder output) and pooler_output =
 * post_layernorm(last_hidden_state[:, 0]): the same norm applied twice, as
 * transformers does.
 */
#include "family.h"

#include <stdio.h>
#include <string.h>

static const vt_vit_defaults blip2_defaults = {
    .d = 1408, .d_ff = 6144, .layers = 39, .heads = 16, .image = 224, .patch = 14,
    .channels = 3, .act = "gelu", .eps = 1e-6,
};

static int blip2_load(vt_vit *v, vt_loader *ld, const cJSON *cfg)
{
    int qkv_bias = 1;
    int rc = vt_read_vit_config(cfg, &blip2_defaults, v, ld->st);
    if (rc || (rc = vt_opt_bool(cfg, "qkv_bias", 1, &qkv_bias, "config.json", ld->st)) ||
        (rc = vt_vit_check(v, ld->st)))
        return rc;
    int64_t d = v->d, p = v->patch;

    v->patch_w = vt_get(ld, "embeddings.patch_embedding.weight", 4, d, v->channels, p, p);
    v->patch_b = vt_get(ld, "embeddings.patch_embedding.bias", 1, d, 0, 0, 0);
    v->cls = vt_get(ld, "embeddings.class_embedding", 3, 1, 1, d, 0);
    vt_get_pos_table(v, ld, "embeddings.position_embedding", 1, 1);
    if (vt_vit_alloc_layers(v, ld, v->n_layers))
        return ld->err;
    for (int64_t i = 0; i < v->n_layers && !ld->err; i++) {
        vt_vit_layer *L = &v->layers[i];
        char b[128];
#define N(s) (snprintf(b, sizeof b, "encoder.layers.%lld." s, (long long)i), b)
        vt_get_norm(ld, &L->ln1, N("layer_norm1"), d, v->eps);
        vt_get_linear(ld, &L->qkv, N("self_attn.qkv"), 3 * d, d, 0);
        if (qkv_bias) {
            /* Released checkpoints store q_bias and v_bias (k has none); some conversions
             * store the combined [3d] bias instead. */
            L->qkv.b = vt_get_opt(ld, N("self_attn.qkv.bias"), 1, 3 * d, 0, 0, 0);
            if (!L->qkv.b) {
                const float *qb = vt_get(ld, N("self_attn.q_bias"), 1, d, 0, 0, 0);
                const float *vb = vt_get(ld, N("self_attn.v_bias"), 1, d, 0, 0, 0);
                float *bias = vt_loader_alloc(ld, 3 * d);
                if (bias && qb && vb) {
                    memcpy(bias, qb, (size_t)d * sizeof(float));
                    memcpy(bias + 2 * d, vb, (size_t)d * sizeof(float));
                }
                L->qkv.b = bias;
            }
        }
        vt_get_linear(ld, &L->o, N("self_attn.projection"), d, d, 1);
        vt_get_norm(ld, &L->ln2, N("layer_norm2"), d, v->eps);
        vt_get_linear(ld, &L->fc1, N("mlp.fc1"), v->d_ff, d, 1);
        vt_get_linear(ld, &L->fc2, N("mlp.fc2"), d, v->d_ff, 1);
#undef N
    }
    vt_get_norm(ld, &v->post_ln, "post_layernorm", d, v->eps);
    v->pool = VT_POOL_CLS_LN_TWICE;
    return ld->err;
}

static const char *const blip2_types[] = {"blip_2_vision_model", "blip-2",
                                          "instructblip_vision_model", "instructblip", NULL};
static const char *const blip2_composite[] = {"blip-2", "instructblip", NULL};

const vt_family vt_family_blip2 = {
    .arch = "blip2",
    .anchor = "embeddings.class_embedding",
    .model_types = blip2_types,
    .composite_types = blip2_composite,
    .load = blip2_load,
};
