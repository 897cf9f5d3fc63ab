/*
 * dinov2.c - DINOv2 (transformers modeling_dinov2.py, Dinov2Model) and
 * DINOv2 with registers (modeling_dinov2_with_registers.py).
 *
 * conv patch embedding with bias; [CLS] + patches + positions, where the
 * patch rows of the position table are resized bicubically (torch
 * F.interpolate, align_corners=False; with antialias=True for the registers
 * variant) for any input size other than the native square; register tokens
 * (if any) are inserted
 * after [CLS] without positions. Layers: LayerScale on both residual
 * branches, exact GELU MLP (mlp_ratio * d) or SwiGLU (use_swiglu_ffn),
 * eps 1e-6. last_hidden_state = layernorm(encoder output), pooler_output =
 * its [CLS] row; hidden_states are taken before that final norm, as HF.
 *
 * Which F.interpolate call the resize reproduces follows the official code
 * (facebookresearch/dinov2 at 112792f): DinoVisionTransformer defaults to
 * interpolate_offset=0.1 (dinov2/models/vision_transformer.py:66-68), which
 * passes scale_factor=((g + 0.1) / M, ...) (:195-200), as transformers did
 * in its 2023-2024 releases (v4.40-era modeling_dinov2.py:96-105); the hub's
 * *_reg models set interpolate_antialias=True, interpolate_offset=0.0
 * (dinov2/hub/backbones.py dinov2_vits14_reg and siblings), which passes
 * size=(g, g') (:201-203), as transformers' Dinov2WithRegisters does. Current
 * transformers main uses size= for plain DINOv2 too: config.json
 * "vtok_pos_interpolation": "size" selects that, "scale_offset" the
 * scale_factor rule, for either model type.
 */
#include "family.h"

#include <stdio.h>
#include <string.h>

static int dinov2_load(vt_vit *v, vt_loader *ld, const cJSON *cfg)
{
    const char *mt = NULL;
    int rc = vt_opt_str(cfg, "model_type", "dinov2", &mt, "config.json", ld->st);
    if (rc)
        return rc;
    int is_reg = !strcmp(mt, "dinov2_with_registers");
    /* Dinov2WithRegistersConfig defaults patch_size to 16, Dinov2Config to 14. */
    const vt_vit_defaults def = {
        .d = 768, .d_ff = 0, .layers = 12, .heads = 12, .image = 224, .patch = is_reg ? 16 : 14,
        .channels = 3, .act = "gelu", .eps = 1e-6,
    };
    double mlp_ratio = 4.0;
    int swiglu = 0;
    int64_t n_reg = 0;
    if ((rc = vt_read_vit_config(cfg, &def, v, ld->st)) ||
        (rc = vt_opt_float(cfg, "mlp_ratio", 4.0, &mlp_ratio, "config.json", ld->st)) ||
        (rc = vt_opt_bool(cfg, "use_swiglu_ffn", 0, &swiglu, "config.json", ld->st)))
        return rc;
    if ((rc = vt_opt_int(cfg, "num_register_tokens", is_reg ? 4 : 0, &n_reg, "config.json", ld->st)))
        return rc;
    if (!(mlp_ratio > 0.0) || mlp_ratio > 64.0)
        return vt_fail(ld->st, VTOK_EFORMAT, "config.json: bad mlp_ratio %g", mlp_ratio);
    if (n_reg < 0 || n_reg > 1024)
        return vt_fail(ld->st, VTOK_EFORMAT, "config.json: bad num_register_tokens");
    /* Dinov2MLP: int(d * mlp_ratio); Dinov2SwiGLUFFN rounds 2/3 of it up to a multiple of 8. */
    v->d_ff = (int64_t)((double)v->d * mlp_ratio);
    if (swiglu)
        v->d_ff = ((int64_t)((double)v->d_ff * 2.0 / 3.0) + 7) / 8 * 8;
    v->swiglu = swiglu;
    if ((rc = vt_vit_check(v, ld->st)))
        return rc;
    int64_t d = v->d, p = v->patch;

    v->patch_w = vt_get(ld, "embeddings.patch_embeddings.projection.weight", 4, d, v->channels, p, p);
    v->patch_b = vt_get(ld, "embeddings.patch_embeddings.projection.bias", 1, d, 0, 0, 0);
    v->cls = vt_get(ld, "embeddings.cls_token", 3, 1, 1, d, 0);
    if (n_reg) {
        v->reg = vt_get(ld, "embeddings.register_tokens", 3, 1, n_reg, d, 0);
        v->n_reg = n_reg;
    }
    vt_get_pos_table(v, ld, "embeddings.position_embeddings", 1, 1);
    /* Dinov2WithRegistersEmbeddings resizes with antialias=True, Dinov2Embeddings without. */
    v->pos_interp = is_reg ? VT_POS_BICUBIC_AA : VT_POS_BICUBIC;
    static const char *const rules[] = {"size", "scale_offset", NULL};
    int rule = 0;
    if ((rc = vt_opt_enum(cfg, "vtok_pos_interpolation", rules, is_reg ? 0 : 1, &rule,
                          "config.json", ld->st)))
        return rc;
    v->pos_offset = rule == 1 ? VT_POS_OFFSET_DINOV2 : 0.0;
    if (vt_vit_alloc_layers(v, ld, v->n_layers))
        return ld->err;
    for (int64_t i = 0; i < v->n_layers && !ld->err; i++) {
        vt_vit_layer *L = &v->layers[i];
        char b[128];
#define N(s) (snprintf(b, sizeof b, "encoder.layer.%lld." s, (long long)i), b)
        vt_get_norm(ld, &L->ln1, N("norm1"), d, v->eps);
        vt_get_linear(ld, &L->q, N("attention.attention.query"), d, d, 1);
        vt_get_linear(ld, &L->k, N("attention.attention.key"), d, d, 1);
        vt_get_linear(ld, &L->v, N("attention.attention.value"), d, d, 1);
        vt_get_linear(ld, &L->o, N("attention.output.dense"), d, d, 1);
        L->ls1 = vt_get(ld, N("layer_scale1.lambda1"), 1, d, 0, 0, 0);
        vt_get_norm(ld, &L->ln2, N("norm2"), d, v->eps);
        if (swiglu) {
            vt_get_linear(ld, &L->fc1, N("mlp.weights_in"), 2 * v->d_ff, d, 1);
            vt_get_linear(ld, &L->fc2, N("mlp.weights_out"), d, v->d_ff, 1);
        } else {
            vt_get_linear(ld, &L->fc1, N("mlp.fc1"), v->d_ff, d, 1);
            vt_get_linear(ld, &L->fc2, N("mlp.fc2"), d, v->d_ff, 1);
        }
        L->ls2 = vt_get(ld, N("layer_scale2.lambda1"), 1, d, 0, 0, 0);
#undef N
    }
    vt_get_norm(ld, &v->post_ln, "layernorm", d, v->eps);
    v->pool = VT_POOL_CLS;
    return ld->err;
}

static const char *const dinov2_types[] = {"dinov2", "dinov2_with_registers", NULL};
static const char *const no_composite[] = {NULL};

const vt_family vt_family_dinov2 = {
    .arch = "dinov2",
    .anchor = "embeddings.patch_embeddings.projection.weight",
    .model_types = dinov2_types,
    .composite_types = no_composite,
    .load = dinov2_load,
};
