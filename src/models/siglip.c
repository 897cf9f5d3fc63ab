/*
 * siglip.c - SigLIP vision towers (transformers modeling_siglip.py):
 * SiglipVisionModel and the vision half of a full SiglipModel.
 *
 * conv patch embedding with bias, no [CLS], learned positions; the encoder
 * layers have CLIP's names; gelu_pytorch_tanh and eps 1e-6 by default.
 * last_hidden_state = post_layernorm(encoder output); pooler_output is the
 * MultiheadAttentionPoolingHead: a learned probe attends over all tokens
 * (nn.MultiheadAttention, fused in_proj), then x + mlp(layernorm(x)), token 0.
 * vision_use_head = false drops the head (no pooler_output).
 */
#include "family.h"

#include <stdio.h>

static const vt_vit_defaults siglip_defaults = {
    .d = 768, .d_ff = 3072, .layers = 12, .heads = 12, .image = 224, .patch = 16,
    .channels = 3, .act = "gelu_pytorch_tanh", .eps = 1e-6,
};

static int siglip_load(vt_vit *v, vt_loader *ld, const cJSON *cfg)
{
    int use_head = 1;
    int rc = vt_read_vit_config(cfg, &siglip_defaults, v, ld->st);
    if (rc || (rc = vt_opt_bool(cfg, "vision_use_head", 1, &use_head, "config.json", ld->st)) ||
        (rc = vt_vit_check(v, ld->st)))
        return rc;
    int64_t d = v->d, p = v->patch;

    v->patch_w = vt_get(ld, "embeddings.patch_embedding.weight", 4, d, v->channels, p, p);
    v->patch_b = vt_get(ld, "embeddings.patch_embedding.bias", 1, d, 0, 0, 0);
    vt_get_pos_table(v, ld, "embeddings.position_embedding.weight", 0, 0);
    vt_load_clip_encoder(v, ld);
    vt_get_norm(ld, &v->post_ln, "post_layernorm", d, v->eps);
    v->pool = VT_POOL_NONE;
    if (use_head) {
        v->pool = VT_POOL_MAP;
        v->probe = vt_get(ld, "head.probe", 3, 1, 1, d, 0);
        v->head_in.w = vt_get(ld, "head.attention.in_proj_weight", 2, 3 * d, d, 0, 0);
        v->head_in.b = vt_get(ld, "head.attention.in_proj_bias", 1, 3 * d, 0, 0, 0);
        v->head_in.n_out = 3 * d;
        v->head_in.n_in = d;
        vt_get_linear(ld, &v->head_out, "head.attention.out_proj", d, d, 1);
        vt_get_norm(ld, &v->head_ln, "head.layernorm", d, v->eps);
        vt_get_linear(ld, &v->head_fc1, "head.mlp.fc1", v->d_ff, d, 1);
        vt_get_linear(ld, &v->head_fc2, "head.mlp.fc2", d, v->d_ff, 1);
    }
    return ld->err;
}

static const char *const siglip_types[] = {"siglip_vision_model", "siglip", NULL};
static const char *const siglip_composite[] = {"siglip", NULL};

const vt_family vt_family_siglip = {
    .arch = "siglip",
    .anchor = "embeddings.patch_embedding.weight",
    .model_types = siglip_types,
    .composite_types = siglip_composite,
    .load = siglip_load,
};
