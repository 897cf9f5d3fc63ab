/*
 * comm.c - COMM (Jiang et al. 2023, "From CLIP to DINO: Visual Encoders
 * Shout in Multi-modal Large Language Models"): CLIP and DINOv2 features of
 * several layers, each merged by LLN-Layerscale, DINOv2's through an MLP,
 * concatenated and projected to the LLM width:
 *
 *   v1 = sum_i alpha_i Linear_i(LN_i(clip_i))      i = all CLIP layers
 *   v2 = sum_j beta_j  Linear_j(LN_j(dino_j))      j = DINOv2 layers 19..24
 *   out = Projector([v1, MLP(v2)])
 *
 * COMM's code and weights are not released: this follows the paper, and
 * every choice it leaves open is an option (docs/RECIPES.md, "comm"), with
 * tensor names of vtok's own under one weights file:
 *   clip_merge.*, dino_merge.* (lln.h), dino_mlp.* and projector.* (mlp.h).
 * Stages: clip_select [Kc, n, P, d], dino_select [Kd, n, P, d], clip_merge,
 * dino_merge, dino_mlp, concat, projector.
 */
#include "recipe.h"

#include "../connectors/lln.h"
#include "../connectors/mlp.h"

#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

typedef struct {
    int     clip, dino;            /* encoder indices */
    int     keep_cls;              /* select_feature "cls_patch" */
    int     dino_norm;             /* dino_final_norm: DINOv2's final LayerNorm on each layer */
    int     token_concat;          /* concat "token" (else "channel") */
    int64_t nc, nd;                /* hidden states requested of each */
    vt_lln  clip_merge, dino_merge;
    vt_mlp  dino_mlp, proj;
} comm_state;

static void comm_unload(void *state)
{
    comm_state *s = state;
    vt_lln_free(&s->clip_merge);
    vt_lln_free(&s->dino_merge);
    vt_mlp_free(&s->dino_mlp);
    vt_mlp_free(&s->proj);
}

/* "all" (1..L), or a list of hidden-state indices (negative from the end). */
static int read_layers(const cJSON *cfg, const char *key, const int64_t *def, int64_t n_def,
                       int64_t L, int64_t *out, int64_t *n, const char *where, vtok_status *st)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!it || cJSON_IsNull(it)) {
        if (!def) {
            for (int64_t i = 0; i < L; i++)
                out[i] = i + 1;
            *n = L;
        } else {
            memcpy(out, def, (size_t)n_def * sizeof *out);
            *n = n_def;
        }
        return 0;
    }
    if (cJSON_IsString(it) && !strcmp(it->valuestring, "all")) {
        for (int64_t i = 0; i < L; i++)
            out[i] = i + 1;
        *n = L;
        return 0;
    }
    int64_t m = cJSON_IsArray(it) ? cJSON_GetArraySize(it) : 0;
    if (m < 1 || m > L + 1)
        return vt_fail(st, VTOK_EFORMAT, "%s: '%s' must be \"all\" or a list of 1..%lld layers",
                       where, key, (long long)(L + 1));
    int64_t i = 0;
    for (const cJSON *x = it->child; x; x = x->next, i++) {
        /* range first: casting a double past int64_t to an integer is undefined */
        if (!cJSON_IsNumber(x) || fabs(x->valuedouble) > 9e15 ||
            x->valuedouble != floor(x->valuedouble))
            return vt_fail(st, VTOK_EFORMAT, "%s: '%s' must hold integers", where, key);
        out[i] = (int64_t)x->valuedouble;
    }
    *n = m;
    return 0;
}

static int load_mlp(vt_recipe *r, vt_mlp *m, vt_loader *ld, const cJSON *cfg,
                    const char *key, const char *def_type, int64_t d_in)
{
    char where[160], prefix[64];
    vtok_status *st = ld->st;
    snprintf(where, sizeof where, "recipe %s: %s", vt_recipe_name(r), key);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (o && !cJSON_IsObject(o))
        return vt_fail(st, VTOK_EFORMAT, "%s: must be an object", where);
    cJSON *tmp = o ? cJSON_Duplicate(o, 1) : cJSON_CreateObject();
    if (!tmp)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    if (!cJSON_GetObjectItemCaseSensitive(tmp, "type"))
        cJSON_AddStringToObject(tmp, "type", def_type);
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(tmp, "prefix");
    snprintf(prefix, sizeof prefix, "%s.", key);
    int rc = VTOK_EFORMAT;
    if (pj && !cJSON_IsString(pj))
        vt_fail(st, VTOK_EFORMAT, "%s: 'prefix' must be a string", where);
    else if (cJSON_GetObjectItemCaseSensitive(tmp, "file"))
        vt_fail(st, VTOK_EFORMAT, "%s: 'file' belongs to the connector (one file for all parts)",
                where);
    else
        rc = vt_mlp_load(m, ld, pj ? pj->valuestring : prefix, tmp, d_in, where);
    cJSON_Delete(tmp);
    return rc;
}

static int load_lln(vt_recipe *r, vt_lln *x, vt_loader *ld, const cJSON *cfg, const char *key,
                    int64_t K, int64_t d_in)
{
    char where[160], prefix[64];
    snprintf(where, sizeof where, "recipe %s: %s", vt_recipe_name(r), key);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(cfg, key);
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(o, "prefix");
    if (pj && !cJSON_IsString(pj))
        return vt_fail(ld->st, VTOK_EFORMAT, "%s: 'prefix' must be a string", where);
    snprintf(prefix, sizeof prefix, "%s.", key);
    return vt_lln_load(x, ld, pj ? pj->valuestring : prefix, o, K, d_in, where);
}

static int comm_setup(vt_recipe *r, const cJSON *cfg, void *state, const cJSON **weights,
                      vtok_status *st)
{
    static const char *const keys[] = {"type", "clip", "dino", "file", "clip_layers",
                                       "dino_layers", "select_feature", "dino_final_norm",
                                       "clip_merge", "dino_merge", "dino_mlp", "concat",
                                       "projector", NULL};
    static const char *const feats[] = {"patch", "cls_patch", NULL};
    static const char *const concat[] = {"channel", "token", NULL};
    static const int64_t dino_def[] = {-6, -5, -4, -3, -2, -1}; /* HF hidden_states 19..24 of 24 */
    comm_state *s = state;
    char where[128];
    snprintf(where, sizeof where, "recipe %s: connector", vt_recipe_name(r));
    const char *clip, *dino;
    int rc;
    (void)weights;
    if ((rc = vt_opt_check_keys(cfg, keys, where, st)) ||
        (rc = vt_opt_str(cfg, "clip", "clip", &clip, where, st)) ||
        (rc = vt_opt_str(cfg, "dino", "dino", &dino, where, st)) ||
        (rc = vt_opt_enum(cfg, "select_feature", feats, 0, &s->keep_cls, where, st)) ||
        (rc = vt_opt_bool(cfg, "dino_final_norm", 0, &s->dino_norm, where, st)) ||
        (rc = vt_opt_enum(cfg, "concat", concat, 0, &s->token_concat, where, st)))
        return rc;
    if ((s->clip = vt_recipe_encoder(r, clip, where, st)) < 0)
        return s->clip;
    if ((s->dino = vt_recipe_encoder(r, dino, where, st)) < 0)
        return s->dino;
    if (s->clip == s->dino)
        return vt_fail(st, VTOK_EFORMAT, "%s: 'clip' and 'dino' name the same encoder", where);

    int64_t Lc = vt_recipe_encoder_layers(r, s->clip), Ld = vt_recipe_encoder_layers(r, s->dino);
    int64_t *lc = calloc((size_t)(Lc + Ld + 2) + 6, sizeof *lc);
    if (!lc)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    int64_t *ld = lc + Lc + 1;
    if (!(rc = read_layers(cfg, "clip_layers", NULL, 0, Lc, lc, &s->nc, where, st)) &&
        !(rc = read_layers(cfg, "dino_layers", dino_def + (Ld >= 6 ? 0 : 6 - Ld),
                           Ld >= 6 ? 6 : Ld, Ld, ld, &s->nd, where, st)) &&
        !(rc = vt_recipe_request(r, s->clip, lc, s->nc, where, st)))
        rc = vt_recipe_request(r, s->dino, ld, s->nd, where, st);
    free(lc);
    return rc;
}

static int comm_load(vt_recipe *r, const cJSON *cfg, void *state, vt_loader *ld)
{
    comm_state *s = state;
    int rc;
    if ((rc = load_lln(r, &s->clip_merge, ld, cfg, "clip_merge", s->nc, -1)) ||
        (rc = load_lln(r, &s->dino_merge, ld, cfg, "dino_merge", s->nd, -1)) ||
        (rc = load_mlp(r, &s->dino_mlp, ld, cfg, "dino_mlp", "mlp2x_gelu",
                       s->dino_merge.d_out)))
        return rc;
    int64_t dcat = s->token_concat ? s->clip_merge.d_out
                                   : s->clip_merge.d_out + s->dino_mlp.d_out;
    return load_mlp(r, &s->proj, ld, cfg, "projector", "linear", dcat);
}

/* Every connector Linear, each once. */
static int64_t comm_linears(void *state, vt_linear **l)
{
    comm_state *s = state;
    int64_t k = vt_lln_linears(&s->clip_merge, l);
    k += vt_lln_linears(&s->dino_merge, l ? l + k : NULL);
    k += vt_mlp_linears(&s->dino_mlp, l ? l + k : NULL);
    k += vt_mlp_linears(&s->proj, l ? l + k : NULL);
    return k;
}

static int comm_plan(const void *state, const vt_enc_feats *in, int64_t n, vt_plan *p,
                     vtok_status *st)
{
    const comm_state *s = state;
    const vt_enc_feats *c = &in[s->clip], *d = &in[s->dino];
    int64_t pc = s->keep_cls ? c->T : c->T - c->prefix, pd = s->keep_cls ? d->T : d->T - d->prefix;
    if (s->clip_merge.d_in != c->d || s->dino_merge.d_in != d->d)
        return vt_fail(st, VTOK_ESHAPE,
                       "comm: merges take %lld (clip) and %lld (dino) features, the encoders "
                       "give %lld and %lld", (long long)s->clip_merge.d_in,
                       (long long)s->dino_merge.d_in, (long long)c->d, (long long)d->d);
    int64_t dm = s->clip_merge.d_out, dx = s->dino_mlp.d_out, t_out, d_cat;
    if (s->token_concat) {
        if (dm != dx)
            return vt_fail(st, VTOK_ESHAPE,
                           "comm: token concat needs equal widths, got %lld (clip) and %lld (dino)",
                           (long long)dm, (long long)dx);
        t_out = pc + pd;
        d_cat = dm;
    } else {
        if (pc != pd)
            return vt_fail(st, VTOK_ESHAPE,
                           "comm: channel concat needs equal token counts, got %lld (clip) and "
                           "%lld (dino); feed both encoders the same input size",
                           (long long)pc, (long long)pd);
        t_out = pc;
        d_cat = dm + dx;
    }
    vt_stage *S = p->stages;
    vt_stage_set(&S[p->n_stages++], "clip_select", 4, c->K, n, pc, c->d);
    vt_stage_set(&S[p->n_stages++], "dino_select", 4, d->K, n, pd, d->d);
    vt_stage_set(&S[p->n_stages++], "clip_merge", 3, n, pc, dm, 0);
    vt_stage_set(&S[p->n_stages++], "dino_merge", 3, n, pd, s->dino_merge.d_out, 0);
    vt_stage_set(&S[p->n_stages++], "dino_mlp", 3, n, pd, dx, 0);
    vt_stage_set(&S[p->n_stages++], "concat", 3, n, t_out, d_cat, 0);
    vt_stage_set(&S[p->n_stages++], "projector", 3, n, t_out, s->proj.d_out, 0);
    int64_t w[4] = {vt_lln_work_floats(&s->clip_merge, n, pc),
                    vt_lln_work_floats(&s->dino_merge, n, pd),
                    vt_mlp_work_floats(&s->dino_mlp, n, pd),
                    vt_mlp_work_floats(&s->proj, n, t_out)};
    for (int i = 0; i < 4; i++)
        p->work_floats = w[i] > p->work_floats ? w[i] : p->work_floats;
    int64_t rows = pc > pd ? pc : pd;
    p->lp_rows = n * (rows > t_out ? rows : t_out);
    return 0;
}

static void comm_forward(const void *state, const vt_exec *e, const vt_enc_feats *in, int64_t n,
                         vt_stage *S, int64_t *ids, float *work)
{
    (void)ids;
    const comm_state *s = state;
    const vt_enc_feats *c = &in[s->clip], *d = &in[s->dino];
    vt_stage *csel = &S[0], *dsel = &S[1], *cm = &S[2], *dm = &S[3], *mlp = &S[4], *cat = &S[5],
             *out = &S[6];
    int64_t pc = csel->ne[2], pd = dsel->ne[2];
    vt_select_rows(c->hidden, c->K * n, c->T, c->d, s->keep_cls ? 0 : c->prefix, csel->data);
    vt_select_rows(d->hidden, d->K * n, d->T, d->d, s->keep_cls ? 0 : d->prefix, dsel->data);
    if (s->dino_norm) /* as DINOv2's get_intermediate_layers(norm=True) */
        vt_op_layernorm(e, d->K * n * pd, d->d, dsel->data, &d->vit->post_ln, dsel->data);
    vt_lln_forward(&s->clip_merge, e, csel->data, n, pc, cm->data, work);
    vt_lln_forward(&s->dino_merge, e, dsel->data, n, pd, dm->data, work);
    vt_mlp_forward(&s->dino_mlp, e, dm->data, n, pd, mlp->data, work);

    int64_t a = cm->ne[2], b = mlp->ne[2], wcat = cat->ne[2];
    for (int64_t i = 0; i < n; i++) {
        float *dst = cat->data + i * cat->ne[1] * wcat;
        const float *x = cm->data + i * pc * a, *y = mlp->data + i * pd * b;
        if (s->token_concat) { /* [clip tokens; dino tokens] */
            memcpy(dst, x, (size_t)(pc * a) * sizeof(float));
            memcpy(dst + pc * a, y, (size_t)(pd * b) * sizeof(float));
        } else { /* per token [clip features, dino features] */
            for (int64_t t = 0; t < pc; t++) {
                memcpy(dst + t * wcat, x + t * a, (size_t)a * sizeof(float));
                memcpy(dst + t * wcat + a, y + t * b, (size_t)b * sizeof(float));
            }
        }
    }
    vt_mlp_forward(&s->proj, e, cat->data, n, cat->ne[1], out->data, work);
}

const vt_connector_kind vt_connector_comm = {
    .name = "comm",
    .state_size = sizeof(comm_state),
    .setup = comm_setup,
    .load = comm_load,
    .unload = comm_unload,
    .linears = comm_linears,
    .plan = comm_plan,
    .forward = comm_forward,
};
