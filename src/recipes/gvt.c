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
    vt_norm      ln;
    vt_perceiver per;
    vt_linear    proj;
} gvt_state;

static void gvt_free(void *state)
{
    gvt_state *s = state;
    if (s)
        vt_perceiver_free(&s->per);
    free(s);
}

/* "a" or "a; b" into st (both blocks report their missing tensors). */
static int join_errors(vtok_status *st, int rc1, const vtok_status *s1, int rc2,
                       const vtok_status *s2)
{
    if (rc1 && rc2)
        return vt_fail(st, rc1, "%s; %s", s1->msg, s2->msg);
    if (rc1)
        return vt_fail(st, rc1, "%s", s1->msg);
    return vt_fail(st, rc2, "%s", s2->msg);
}

static int gvt_load(vt_recipe *r, const cJSON *cfg, void **state, vtok_status *st)
{
    static const char *const keys[] = {"type", "encoder", "file", "prefix", "select_feature",
                                       "ln_vision", "perceiver", "llm_proj", NULL};
    static const char *const lkeys[] = {"name", "eps", NULL};
    static const char *const pkeys[] = {"name", "bias", NULL};
    static const char *const feats[] = {"patch", "cls_patch", NULL};
    char where[128];
    snprintf(where, sizeof where, "recipe %s: connector", vt_recipe_name(r));
    gvt_state *s = calloc(1, sizeof *s);
    if (!s)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    *state = s;
    const cJSON *lj = cJSON_GetObjectItemCaseSensitive(cfg, "ln_vision");
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(cfg, "perceiver");
    const cJSON *oj = cJSON_GetObjectItemCaseSensitive(cfg, "llm_proj");
    const char *enc, *ln_name, *proj_name, *per_prefix;
    double eps;
    int bias, rc;
    int64_t last = -1;
    if ((rc = vt_opt_check_keys(cfg, keys, where, st)) ||
        (rc = vt_opt_check_keys(lj, lkeys, where, st)) ||
        (rc = vt_opt_check_keys(oj, pkeys, where, st)) ||
        (rc = vt_opt_str(cfg, "encoder", "vit", &enc, where, st)) ||
        (rc = vt_opt_enum(cfg, "select_feature", feats, 1, &s->keep_cls, where, st)) ||
        (rc = vt_opt_str(lj, "name", "ln_vision", &ln_name, where, st)) ||
        (rc = vt_opt_float(lj, "eps", 1e-5, &eps, where, st)) ||
        (rc = vt_opt_str(pj, "prefix", "perceiver.", &per_prefix, where, st)) ||
        (rc = vt_opt_str(oj, "name", "llm_proj", &proj_name, where, st)) ||
        (rc = vt_opt_bool(oj, "bias", 1, &bias, where, st)))
        return rc;
    if (pj && !cJSON_IsObject(pj))
        return vt_fail(st, VTOK_EFORMAT, "%s: 'perceiver' must be an object", where);
    if ((s->enc = vt_recipe_encoder(r, enc, where, st)) < 0)
        return s->enc;
    if ((rc = vt_recipe_request(r, s->enc, &last, 1, where, st)))
        return rc;

    vt_weights *w;
    const char *file;
    if ((rc = vt_recipe_weights(r, cJSON_GetObjectItemCaseSensitive(cfg, "file"), &w, &file,
                                where, st)))
        return rc;
    const char *root = vt_recipe_pick_prefix(w, cJSON_GetObjectItemCaseSensitive(cfg, "prefix"));
    char pp[256];
    if (snprintf(pp, sizeof pp, "%s%s", root, per_prefix) >= (int)sizeof pp)
        return vt_fail(st, VTOK_EFORMAT, "%s: prefix too long", where);

    /* Perceiver and the two plain tensors: both report, one message. */
    vtok_status s1 = {0}, s2 = {0};
    int rc1 = vt_perceiver_load(&s->per, w, pp, pj, &s1);
    char b1[160], b2[160];
    vt_bload b = {.w = w, .prefix = root, .st = &s2, .file = file};
    int64_t d = s->per.dim > 0 ? s->per.dim : -1, sh[1] = {d}, sb[1] = {d};
    snprintf(b1, sizeof b1, "%s.weight", ln_name);
    snprintf(b2, sizeof b2, "%s.bias", ln_name);
    s->ln.w = vt_bget(&b, b1, 1, sh);
    s->ln.b = vt_bget(&b, b2, 1, sb);
    s->ln.eps = (float)eps;
    vt_bget_linear(&b, &s->proj, proj_name, -1, d, bias);
    int rc2 = vt_bload_finish(&b);
    if (rc1 || rc2) {
        join_errors(st, rc1, &s1, rc2, &s2);
        vt_msg_prefix(st, where);
        return st->code;
    }
    /* Perceiver and llm_proj Linears for the recipe's dtype (ln_vision stays float). */
    int64_t n = vt_perceiver_linears(&s->per, NULL);
    vt_linear **l = malloc((size_t)(n + 1) * sizeof *l);
    if (!l)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    vt_perceiver_linears(&s->per, l);
    l[n] = &s->proj;
    rc = vt_recipe_pack(r, l, n + 1, w, st);
    free(l);
    return rc;
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
    .load = gvt_load,
    .plan = gvt_plan,
    .forward = gvt_forward,
    .free = gvt_free,
};
