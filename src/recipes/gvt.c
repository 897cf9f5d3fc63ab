/*
 * gvt.c - the GVT connector (TencentARC/GVT gvt/gvt/modules/modeling_gvt.py,
 * forward_vision):
 *   x = visual_encoder.forward_features(img, return_all_features=True)
 *         every token of the last block, CLS kept, no final norm  [n, 257, 1024]
 *   x = ln_vision(x)          nn.LayerNorm(1024), eps 1e-5
 *   x = perceiver(x)          Perceiver resampler, 32 latents, 6 layers  [n, 32, 1024]
 *   x = llm_proj(x)           nn.Linear(1024, 4096) with bias           [n, 32, 4096]
 * (input_ln is built but never used there, so it is not read.) The tokens
 * replace the embeddings of the 32 "I" tokens in "<Img> I I ... I </Img>"
 * (_decorate_image_embeds).
 *
 * Options ("connector" object): encoder ("vit"), file (the checkpoint),
 * prefix (candidates for the root of the names: the first with tensors in the
 * file), select_feature ("cls_patch"; "patch" drops CLS), ln_vision {name,
 * eps}, perceiver {prefix, and vt_perceiver_load keys}, llm_proj {name,
 * bias}. Every tensor the recipe needs is checked; the missing ones are all
 * named in one message (GVT loads with strict=False).
 * Stages: ln_vision [n, T, d], perceiver [n, 32, d], llm_proj [n, 32, d_llm].
 */
#include "recipe.h"

#include "../connectors/perceiver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int          enc;
    int          keep_cls;
    int          bias;
    double       eps;
    const char  *ln_name, *proj_name, *per_prefix;   /* point into the recipe JSON */
    vt_norm      ln;
    vt_perceiver per;
    vt_linear    proj;
} gvt_state;

static void gvt_unload(void *state)
{
    gvt_state *s = state;
    vt_perceiver_free(&s->per);
    memset(&s->ln, 0, sizeof s->ln);
    memset(&s->proj, 0, sizeof s->proj);
}

static int gvt_setup(vt_recipe *r, const cJSON *cfg, void *state, const cJSON **weights,
                     vtok_status *st)
{
    static const char *const keys[] = {"type", "encoder", "file", "prefix", "select_feature",
                                       "ln_vision", "perceiver", "llm_proj", NULL};
    static const char *const lkeys[] = {"name", "eps", NULL};
    static const char *const pkeys[] = {"name", "bias", NULL};
    static const char *const feats[] = {"patch", "cls_patch", NULL};
    gvt_state *s = state;
    char where[128];
    snprintf(where, sizeof where, "recipe %s: connector", vt_recipe_name(r));
    const cJSON *lj = cJSON_GetObjectItemCaseSensitive(cfg, "ln_vision");
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(cfg, "perceiver");
    const cJSON *oj = cJSON_GetObjectItemCaseSensitive(cfg, "llm_proj");
    const char *enc;
    int rc;
    int64_t last = -1;
    (void)weights;
    if ((rc = vt_opt_check_keys(cfg, keys, where, st)) ||
        (rc = vt_opt_check_keys(lj, lkeys, where, st)) ||
        (rc = vt_opt_check_keys(oj, pkeys, where, st)) ||
        (rc = vt_opt_str(cfg, "encoder", "vit", &enc, where, st)) ||
        (rc = vt_opt_enum(cfg, "select_feature", feats, 1, &s->keep_cls, where, st)) ||
        (rc = vt_opt_str(lj, "name", "ln_vision", &s->ln_name, where, st)) ||
        (rc = vt_opt_float(lj, "eps", 1e-5, &s->eps, where, st)) ||
        (rc = vt_opt_str(pj, "prefix", "perceiver.", &s->per_prefix, where, st)) ||
        (rc = vt_opt_str(oj, "name", "llm_proj", &s->proj_name, where, st)) ||
        (rc = vt_opt_bool(oj, "bias", 1, &s->bias, where, st)))
        return rc;
    if (pj && !cJSON_IsObject(pj))
        return vt_fail(st, VTOK_EFORMAT, "%s: 'perceiver' must be an object", where);
    if ((s->enc = vt_recipe_encoder(r, enc, where, st)) < 0)
        return s->enc;
    return vt_recipe_request(r, s->enc, &last, 1, where, st);
}

/* Perceiver and the two plain tensors through one loader: one message. */
static int gvt_load(vt_recipe *r, const cJSON *cfg, void *state, vt_loader *ld)
{
    gvt_state *s = state;
    (void)r;
    int rc = vt_perceiver_load(&s->per, ld, s->per_prefix,
                               cJSON_GetObjectItemCaseSensitive(cfg, "perceiver"));
    if (rc)
        return rc;
    vt_get_norm(ld, &s->ln, s->ln_name, s->per.dim, (float)s->eps);
    vt_get_linear(ld, &s->proj, s->proj_name, -1, s->per.dim, s->bias);
    return ld->err;
}

/* Perceiver and llm_proj Linears for the recipe's dtype (ln_vision stays float). */
static int64_t gvt_linears(void *state, vt_linear **l)
{
    gvt_state *s = state;
    int64_t n = vt_perceiver_linears(&s->per, l);
    if (l)
        l[n] = &s->proj;
    return n + 1;
}

static int gvt_plan(const void *state, const vt_enc_feats *in, int64_t n, vt_plan *p,
                    vtok_status *st)
{
    const gvt_state *s = state;
    const vt_enc_feats *f = &in[s->enc];
    int64_t t = s->keep_cls ? f->T : f->T - f->prefix, nl = s->per.n_latents;
    if (s->per.dim != f->d)
        return vt_fail(st, VTOK_ESHAPE, "gvt: the perceiver takes %lld features, the encoder "
                       "gives %lld", (long long)s->per.dim, (long long)f->d);
    vt_stage_set(&p->stages[p->n_stages++], "ln_vision", 3, n, t, f->d, 0);
    vt_stage_set(&p->stages[p->n_stages++], "perceiver", 3, n, nl, s->per.dim, 0);
    vt_stage_set(&p->stages[p->n_stages++], "llm_proj", 3, n, nl, s->proj.n_out, 0);
    p->work_floats = vt_perceiver_work_floats(&s->per, n, t);
    p->max_tokens = vt_perceiver_max_tokens(&s->per, t);
    p->lp_rows = n * (t + nl);
    return 0;
}

static void gvt_forward(const void *state, const vt_exec *e, const vt_enc_feats *in, int64_t n,
                        vt_stage *S, int64_t *ids, float *work)
{
    const gvt_state *s = state;
    const vt_enc_feats *f = &in[s->enc];
    vt_stage *ln = &S[0], *per = &S[1], *out = &S[2];
    (void)ids;
    int64_t t = ln->ne[1];
    vt_select_rows(f->hidden, n, f->T, f->d, s->keep_cls ? 0 : f->prefix, ln->data);
    vt_op_layernorm(e, n * t, f->d, ln->data, &s->ln, ln->data);
    vt_perceiver_forward(&s->per, e, ln->data, n, t, per->data, work);
    vt_op_linear(e, n * per->ne[1], per->data, 0, &s->proj, out->data, 0);
}

const vt_connector_kind vt_connector_gvt = {
    .name = "gvt",
    .state_size = sizeof(gvt_state),
    .setup = gvt_setup,
    .load = gvt_load,
    .unload = gvt_unload,
    .linears = gvt_linears,
    .plan = gvt_plan,
    .forward = gvt_forward,
};
