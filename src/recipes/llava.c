/*
 * llava.c - the LLaVA-1.5 connector (haotian-liu/LLaVA):
 *   CLIPVisionTower.feature_select (llava/model/multimodal_encoder/clip_encoder.py):
 *     hidden_states[mm_vision_select_layer] (default -2: the penultimate
 *     block's output, before any final norm), then "patch" drops the CLS
 *     row ([:, 1:]) or "cls_patch" keeps every token;
 *   build_vision_projector (llava/model/multimodal_projector/builder.py):
 *     mlp2x_gelu = Linear(mm_hidden, d_llm), GELU, Linear(d_llm, d_llm).
 * The image tokens then replace the <image> placeholder of the prompt
 * (llava_arch.py, prepare_inputs_labels_for_multimodal).
 *
 * Options ("connector" object): encoder ("vit"), select_layer (-2),
 * select_feature ("patch"), projector {type, file, prefix, bias, act}.
 * Stages: <encoder> [n, T, d], select [n, T', d], projector [n, T', d_llm].
 */
#include "recipe.h"

#include "../connectors/mlp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int     enc;
    int     keep_cls;
    vt_mlp  proj;
} llava_state;

static void llava_unload(void *state)
{
    vt_mlp_free(&((llava_state *)state)->proj);
}

static int llava_setup(vt_recipe *r, const cJSON *cfg, void *state, const cJSON **weights,
                       vtok_status *st)
{
    static const char *const keys[] = {"type", "encoder", "select_layer", "select_feature",
                                       "projector", NULL};
    static const char *const feats[] = {"patch", "cls_patch", NULL};
    llava_state *s = state;
    char where[128];
    snprintf(where, sizeof where, "recipe %s: connector", vt_recipe_name(r));
    const char *enc;
    int64_t layer;
    int rc;
    if ((rc = vt_opt_check_keys(cfg, keys, where, st)) ||
        (rc = vt_opt_str(cfg, "encoder", "vit", &enc, where, st)) ||
        (rc = vt_opt_int(cfg, "select_layer", -2, &layer, where, st)) ||
        (rc = vt_opt_enum(cfg, "select_feature", feats, 0, &s->keep_cls, where, st)))
        return rc;
    if ((s->enc = vt_recipe_encoder(r, enc, where, st)) < 0)
        return s->enc;
    if ((rc = vt_recipe_request(r, s->enc, &layer, 1, where, st)))
        return rc;
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(cfg, "projector");
    if (!cJSON_IsObject(pj))
        return vt_fail(st, VTOK_EFORMAT, "%s: needs a 'projector' object", where);
    *weights = pj; /* "file" and "prefix" live in the projector object */
    return 0;
}

static int llava_load(vt_recipe *r, const cJSON *cfg, void *state, vt_loader *ld)
{
    llava_state *s = state;
    char where[128];
    snprintf(where, sizeof where, "recipe %s: projector", vt_recipe_name(r));
    return vt_mlp_load(&s->proj, ld, "", cJSON_GetObjectItemCaseSensitive(cfg, "projector"), 0,
                       where);
}

static int64_t llava_linears(void *state, vt_linear **l)
{
    return vt_mlp_linears(&((llava_state *)state)->proj, l);
}

static int llava_plan(const void *state, const vt_enc_feats *in, int64_t n, vt_plan *p,
                      vtok_status *st)
{
    const llava_state *s = state;
    const vt_enc_feats *f = &in[s->enc];
    int64_t t = s->keep_cls ? f->T : f->T - f->prefix;
    if (s->proj.depth && s->proj.d_in != f->d)
        return vt_fail(st, VTOK_ESHAPE, "projector takes %lld features, the encoder gives %lld",
                       (long long)s->proj.d_in, (long long)f->d);
    vt_stage_set(&p->stages[p->n_stages++], "select", 3, n, t, f->d, 0);
    vt_stage_set(&p->stages[p->n_stages++], "projector", 3, n, t,
                 s->proj.depth ? s->proj.d_out : f->d, 0);
    p->work_floats = vt_mlp_work_floats(&s->proj, n, t);
    p->lp_rows = n * t;
    return 0;
}

static void llava_forward(const void *state, const vt_exec *e, const vt_enc_feats *in, int64_t n,
                          vt_stage *stages, int64_t *ids, float *work)
{
    const llava_state *s = state;
    const vt_enc_feats *f = &in[s->enc];
    vt_stage *sel = &stages[0], *out = &stages[1];
    (void)ids;
    vt_select_rows(f->hidden, n, f->T, f->d, s->keep_cls ? 0 : f->prefix, sel->data);
    vt_mlp_forward(&s->proj, e, sel->data, n, sel->ne[1], out->data, work);
}

const vt_connector_kind vt_connector_llava = {
    .name = "llava",
    .state_size = sizeof(llava_state),
    .setup = llava_setup,
    .load = llava_load,
    .unload = llava_unload,
    .linears = llava_linears,
    .plan = llava_plan,
    .forward = llava_forward,
};
