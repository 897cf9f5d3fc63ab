/*
 * clip.c - CLIP vision towers (transformers modeling_clip.py):
 * CLIPVisionModel, CLIPVisionModelWithProjection and the vision half of a
 * full CLIPModel (also found inside LLaVA checkpoints).
 *
 * conv patch embedding without bias; [CLS] + patches + learned positions;
 * `pre_layrnorm` before the encoder (hidden_states[0] is after it);
 * quick_gelu by default, LayerNorm eps 1e-5. last_hidden_state is the raw
 * encoder output; pooler_output = post_layernorm(last_hidden_state[:, 0]);
 * image_embeds = visual_projection(pooler_output), no bias.
 */
#include "family.h"

#include <stdio.h>
#include <string.h>

static const vt_vit_defaults clip_defaults = {
    .d = 768, .d_ff = 3072, .layers = 12, .heads = 12, .image = 224, .patch = 32,
    .channels = 3, .act = "quick_gelu", .eps = 1e-5,
};

static int clip_load(vt_vit *v, vt_loader *ld, const cJSON *cfg)
{
    int rc = vt_read_vit_config(cfg, &clip_defaults, v, ld->st);
    if (rc || (rc = vt_vit_check(v, ld->st)))
        return rc;
    int64_t d = v->d, p = v->patch, cfg_pd = 0;
    /* The projection's size comes from its tensor; a stated projection_dim must
     * agree with it (transformers would build nn.Linear(d, projection_dim)). */
    if ((rc = vt_opt_int(cfg, "projection_dim", 0, &cfg_pd, "config.json", ld->st)))
        return rc;
    if (cJSON_GetObjectItemCaseSensitive(cfg, "projection_dim") && cfg_pd < 1 &&
        !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(cfg, "projection_dim")))
        return vt_fail(ld->st, VTOK_EFORMAT, "config.json: 'projection_dim' must be positive, "
                       "got %lld", (long long)cfg_pd);

    v->patch_w = vt_get(ld, "embeddings.patch_embedding.weight", 4, d, v->channels, p, p);
    v->cls = vt_get(ld, "embeddings.class_embedding", 1, d, 0, 0, 0);
    vt_get_pos_table(v, ld, "embeddings.position_embedding.weight", 0, 1);
    vt_get_norm(ld, &v->pre_ln, "pre_layrnorm", d, v->eps);
    vt_load_clip_encoder(v, ld);
    vt_get_norm(ld, &v->post_ln, "post_layernorm", d, v->eps);
    v->pool = VT_POOL_CLS_LN;

    /* visual_projection sits beside vision_model., not under it. */
    char proj[512];
    const char *pre = ld->src.prefix;
    size_t pl = strlen(pre), tail = strlen("vision_model.");
    if (pl >= tail && strcmp(pre + pl - tail, "vision_model.") == 0) {
        snprintf(proj, sizeof proj, "%.*svisual_projection.weight", (int)(pl - tail), pre);
        vt_wsrc top = ld->src;
        top.prefix = "";
        const vt_st_tensor *t = vt_wsrc_find(&top, proj, NULL);
        if (t && !ld->err) {
            ld->src.prefix = "";
            int64_t pd = t->n_dims == 2 ? t->shape[0] : 0;
            if (cfg_pd && pd != cfg_pd)
                return vt_loader_fail(ld, VTOK_ESHAPE, "config.json: projection_dim %lld but "
                                      "%s has %lld rows", (long long)cfg_pd, proj, (long long)pd);
            v->proj.w = vt_get(ld, proj, 2, pd, d, 0, 0);
            v->proj.n_out = pd;
            v->proj.n_in = d;
            ld->src.prefix = pre;
        }
    }
    return ld->err;
}

/* "llava", "llava_next": llava-hf folders (LlavaForConditionalGeneration,
 * LlavaNextForConditionalGeneration), whose vision_config is a CLIP tower
 * stored under vision_tower.vision_model. */
static const char *const clip_types[] = {"clip_vision_model", "clip", "llava", "llava_next", NULL};
static const char *const clip_composite[] = {"clip", "llava", "llava_next", NULL};

const vt_family vt_family_clip = {
    .arch = "clip",
    .anchor = "pre_layrnorm.weight",
    .model_types = clip_types,
    .composite_types = clip_composite,
    .load = clip_load,
};
