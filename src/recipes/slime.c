/*
 * slime.c - the SliME connector (yfzhang114/SliME; spec mova-slime-llava.md
 * section 3). The encoder slices each image ("uhd" slicing: base view + K
 * crops); per image, from CLIP's hidden_states[-2] patch rows of its tiles
 * (llava_arch.py encode_images):
 *
 *   global  x = the base view's rows [t, d]; GatedBlock (multimodal_projector/
 *           builder.py): E0 = projection(x), E1 = projection(attn(x)) (attn:
 *           the 576-query resampler), g = softmax(x @ w_gate) per token, top-2
 *           of the 2 experts renormalised g / (sum + 1e-6), out = g0 E0 + g1 E1.
 *           Only when t is the target length (576: GatedBlock.forward's guard,
 *           "global.target_tokens") - otherwise projection(x) alone, as the
 *           code falls back; mm_learnable_gated k >= 0 keeps expert k alone.
 *   local   every crop through post_qformer (the 144-query resampler), then
 *           projection (the guard sends these to the MLP alone), then the
 *           crops' 12 x 12 maps joined into one (gh 12) x (gw 12) map read in
 *           raster order (the 'spatial' merge).
 *   select  TextGuidedSampler with the cosine router: s_i = sum over the
 *           prompt's text tokens of cos(local_i, embed_tokens(id)) (the image
 *           positions removed, get_pure_text_embedding; their zero rows are
 *           masked out), p = softmax(s / temperature), then the top-p cut
 *           of topp.h (kept in ascending index order).
 *   out     [global (t) | embed_tokens(separator) | kept local rows].
 *
 * UNVERIFIED choices, as options: the release runs in float16 (the cut may
 * move by one token against this float32 path); ties in p sort by index
 * (torch.sort is not stable); an image beyond the first in one prompt uses
 * the whole prompt's text (the official code indexes the text by image and
 * takes one image per prompt).
 *
 * Options ("connector" object): encoder ("vit"), select_layer (-2),
 * file / prefix (default "model."), projector {type, bias, act} (names
 * mm_projector.projection.*), global {target_tokens 576, learnable_gated,
 * heads}, local {heads}, separator, top_p, temperature. separator, top_p,
 * temperature and learnable_gated default to config.json's seperator,
 * mm_resampler_topp, mm_resampler_temp and mm_learnable_gated, else 1919
 * (llava_arch.py:92), 0.95, 1.0, -1 (the released SliME configs).
 * Stages: select [tiles, t, d], global [n, t, C], local_q [crops, q, d],
 * local [crops, q, C], scores [n, K q] (each image's s_i in raster order,
 * then 0), kept [n, K q] (each image's kept local indices, ascending, then
 * -1; K the most crops of an image), tokens [sum of counts, C] (ragged).
 */
#include "recipe.h"

#include "../connectors/mlp.h"
#include "../connectors/resampler.h"
#include "../connectors/topp.h"
#include "../models/llm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int          enc;
    int64_t      layer, target, separator;
    int64_t      gated;            /* mm_learnable_gated: -1 mixture, k: expert k */
    double       top_p, temp;
    vt_mlp       proj;             /* mm_projector.projection */
    vt_resampler attn, local;      /* mm_projector.attn, sampler.post_qformer */
    const float *w_gate;           /* [d, 2] */
} slime_state;

static void slime_unload(void *state)
{
    slime_state *s = state;
    vt_mlp_free(&s->proj);
    vt_resampler_free(&s->attn);
    vt_resampler_free(&s->local);
    s->w_gate = NULL;
}

/* A number from the recipe, else from config.json, else def. */
static int opt_num(const cJSON *cfg, const cJSON *mc, const char *key, const char *mkey,
                   double def, double *out, const char *where, vtok_status *st)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v) {
        v = cJSON_GetObjectItemCaseSensitive(mc, mkey);
        if (v && !cJSON_IsNumber(v))
            return vt_fail(st, VTOK_EFORMAT, "config.json: '%s' must be a number", mkey);
        *out = v ? v->valuedouble : def;
        return 0;
    }
    return vt_opt_float(cfg, key, def, out, where, st);
}

static int slime_setup(vt_recipe *r, const cJSON *cfg, void *state, const cJSON **weights,
                       vtok_status *st)
{
    static const char *const keys[] = {"type", "encoder", "select_layer", "file", "prefix",
                                       "projector", "global", "local", "separator", "top_p",
                                       "temperature", NULL};
    static const char *const gkeys[] = {"target_tokens", "learnable_gated", "heads", NULL};
    slime_state *s = state;
    char where[128];
    snprintf(where, sizeof where, "recipe %s: connector", vt_recipe_name(r));
    const char *enc;
    const cJSON *gj = cJSON_GetObjectItemCaseSensitive(cfg, "global");
    int rc;
    double sep, gated;
    (void)weights;
    if ((rc = vt_opt_check_keys(cfg, keys, where, st)) ||
        (rc = vt_opt_check_keys(gj, gkeys, where, st)) ||
        (rc = vt_opt_str(cfg, "encoder", "vit", &enc, where, st)) ||
        (rc = vt_opt_int(cfg, "select_layer", -2, &s->layer, where, st)) ||
        (rc = vt_opt_int(gj, "target_tokens", 576, &s->target, where, st)))
        return rc;
    st->code = 0;
    cJSON *mc = vt_recipe_model_config(r, st);
    if (!mc && st->code)
        return st->code;
    rc = opt_num(cfg, mc, "separator", "seperator", 1919, &sep, where, st);
    rc = rc ? rc : opt_num(cfg, mc, "top_p", "mm_resampler_topp", 0.95, &s->top_p, where, st);
    rc = rc ? rc : opt_num(cfg, mc, "temperature", "mm_resampler_temp", 1.0, &s->temp, where, st);
    rc = rc ? rc : opt_num(gj, mc, "learnable_gated", "mm_learnable_gated", -1, &gated, where, st);
    cJSON_Delete(mc);
    if (rc)
        return rc;
    if (sep < 0 || sep != floor(sep) || sep > 2147483647.0)
        return vt_fail(st, VTOK_EFORMAT, "%s: separator must be a token id", where);
    if (!(s->top_p > 0 && s->top_p <= 1) || !(s->temp > 0) || !isfinite(s->temp))
        return vt_fail(st, VTOK_EFORMAT, "%s: top_p must be in (0, 1] and temperature > 0",
                       where);
    if (gated != floor(gated) || gated < -1 || gated > 1)
        return vt_fail(st, VTOK_EFORMAT, "%s: learnable_gated must be -1, 0 or 1", where);
    s->separator = (int64_t)sep;
    s->gated = (int64_t)gated;
    if ((s->enc = vt_recipe_encoder(r, enc, where, st)) < 0)
        return s->enc;
    return vt_recipe_request(r, s->enc, &s->layer, 1, where, st);
}

static int slime_load(vt_recipe *r, const cJSON *cfg, void *state, vt_loader *ld)
{
    slime_state *s = state;
    char where[128];
    snprintf(where, sizeof where, "recipe %s: connector", vt_recipe_name(r));
    const cJSON *gj = cJSON_GetObjectItemCaseSensitive(cfg, "global");
    const cJSON *lj = cJSON_GetObjectItemCaseSensitive(cfg, "local");
    cJSON *gh = NULL; /* the resampler sees only its own key */
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(gj, "heads");
    if (h && (!(gh = cJSON_CreateObject()) ||
              !cJSON_AddItemToObject(gh, "heads", cJSON_Duplicate(h, 1)))) {
        cJSON_Delete(gh);
        return vt_loader_fail(ld, VTOK_ENOMEM, "out of memory");
    }
    int rc = vt_mlp_load(&s->proj, ld, "mm_projector.projection.",
                         cJSON_GetObjectItemCaseSensitive(cfg, "projector"), 0, where);
    if (!rc)
        rc = vt_resampler_load(&s->attn, ld, "mm_projector.attn.", gh, where);
    cJSON_Delete(gh);
    if (!rc)
        rc = vt_resampler_load(&s->local, ld, "sampler.post_qformer.", lj, where);
    if (rc)
        return rc;
    s->w_gate = vt_get(ld, "mm_projector.w_gate", 2, s->attn.d, 2, 0, 0);
    if (!ld->err && (s->proj.d_in != s->attn.d || s->local.d != s->attn.d))
        return vt_loader_fail(ld, VTOK_ESHAPE, "%s: projection takes %lld features, the "
                              "resamplers %lld and %lld", where, (long long)s->proj.d_in,
                              (long long)s->attn.d, (long long)s->local.d);
    return ld->err;
}

static int64_t slime_linears(void *state, vt_linear **l)
{
    slime_state *s = state;
    int64_t n = vt_mlp_linears(&s->proj, l);
    n += vt_resampler_linears(&s->attn, l ? l + n : NULL);
    n += vt_resampler_linears(&s->local, l ? l + n : NULL);
    return n;
}

static int mixture(const slime_state *s, int64_t t, int64_t d)
{
    return t == s->target || d == s->target; /* GatedBlock.forward's guard */
}

typedef struct {
    float *ga, *gb, *loc, *prob, *mlp, *rs;
    int64_t *idx, *tmp;
} sl_buffers;

/* Work layout: one image's resampled global rows and their projection, its
 * raster-ordered local rows, probabilities and sort index arrays, then MLP
 * and resampler work for all images (shared: they run one after the other). */
static int64_t layout(const slime_state *s, int64_t n, int64_t t, int64_t crops, int64_t max_k,
                      float *base, sl_buffers *b)
{
    const int64_t d = s->attn.d, C = s->proj.d_out, q = s->local.n_q, M = vt_szmul(max_k, q);
    int64_t mlp = vt_mlp_work_floats(&s->proj, n, t);
    int64_t m2 = vt_mlp_work_floats(&s->proj, crops, q);
    int64_t r1 = vt_resampler_work_floats(&s->attn, n, t);
    int64_t r2 = vt_resampler_work_floats(&s->local, crops, t);
    mlp = m2 > mlp ? m2 : mlp;
    r1 = r2 > r1 ? r2 : r1;
    /* the index arrays are int64: 2 floats per entry */
    (void)n; /* the global branch runs image by image: one image's rows */
    int64_t sizes[8] = {vt_szmul(s->attn.n_q, d), vt_szmul(t, C), vt_szmul(M, C), M,
                        mlp, r1, vt_szmul(4, M), vt_szmul(2, M)};
    float **dst[6] = {&b->ga, &b->gb, &b->loc, &b->prob, &b->mlp, &b->rs};
    int64_t off = 0;
    for (int i = 0; i < 8; i++) {
        if (base && i < 6)
            *dst[i] = base + off;
        else if (base)
            *(i == 6 ? &b->idx : &b->tmp) = (int64_t *)(base + off);
        off = vt_szadd(off, vt_szr16(sizes[i]));
    }
    return off;
}

static int slime_plan(const void *state, const vt_enc_feats *in, int64_t n, vt_plan *p,
                      vtok_status *st)
{
    const slime_state *s = state;
    const vt_enc_feats *f = &in[s->enc];
    const int64_t t = f->T - f->prefix, d = f->d, C = s->proj.d_out, q = s->local.n_q;
    if (!f->grid)
        return vt_fail(st, VTOK_EINVAL, "slime: the encoder must slice its images (slicing "
                       "type 'uhd')");
    if (d != s->attn.d)
        return vt_fail(st, VTOK_ESHAPE, "slime: the connector takes %lld features, the encoder "
                       "gives %lld", (long long)s->attn.d, (long long)d);
    const int64_t side = vt_square_side(t);
    if (side * side != t)
        return vt_fail(st, VTOK_ESHAPE, "slime: %lld patch tokens are not a square map",
                       (long long)t);
    if (mixture(s, t, d) && s->gated < 0 && t != s->attn.n_q)
        return vt_fail(st, VTOK_ESHAPE, "slime: the global mixture needs %lld tokens, the "
                       "resampler gives %lld", (long long)t, (long long)s->attn.n_q);
    int64_t crops = f->items - n, max_k = 0, total = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t k = f->grid[i].gw * f->grid[i].gh;
        /* GatedBlock's guard would send such local maps through the mixture */
        if (k == s->target || q == s->target)
            return vt_fail(st, VTOK_EUNSUPPORTED, "slime: %lld crops of %lld queries meet the "
                           "global target length %lld (the official guard would mix them)",
                           (long long)k, (long long)q, (long long)s->target);
        max_k = k > max_k ? k : max_k;
        p->out_rows[i] = t + 1 + k * q;
        total += p->out_rows[i];
    }
    vt_stage_set(&p->stages[p->n_stages++], "select", 3, f->items, t, d, 0);
    vt_stage_set(&p->stages[p->n_stages++], "global", 3, n, t, C, 0);
    vt_stage_set(&p->stages[p->n_stages++], "local_q", 3, crops, q, d, 0);
    vt_stage_set(&p->stages[p->n_stages++], "local", 3, crops, q, C, 0);
    vt_stage_set(&p->stages[p->n_stages++], "scores", 2, n, max_k * q, 0, 0);
    vt_stage_set(&p->stages[p->n_stages++], "kept", 2, n, max_k * q, 0, 0);
    vt_stage_set(&p->stages[p->n_stages++], "tokens", 2, total, C, 0, 0);
    p->ragged = 1;
    sl_buffers b;
    p->work_floats = layout(s, n, t, crops, max_k, NULL, &b);
    int64_t m1 = vt_resampler_max_tokens(&s->attn, t), m2 = vt_resampler_max_tokens(&s->local, t);
    p->max_tokens = m1 > m2 ? m1 : m2;
    int64_t rows = f->items * t;
    rows = n * t > rows ? n * t : rows;
    p->lp_rows = rows;
    return 0;
}

static int slime_check_run(const void *state, const vt_run *run, vtok_status *st)
{
    const slime_state *s = state;
    if (!run->llm)
        return vt_fail(st, VTOK_EINVAL, "slime selects local tokens by the prompt: give the "
                       "LLM and the prompt's ids (vtok_run_params llm, text_ids; vtok run "
                       "--llm DIR -p TEXT)");
    int64_t V, H;
    vt_llm_embed_table(run->llm, &V, &H);
    if (H != s->proj.d_out)
        return vt_fail(st, VTOK_ESHAPE, "slime: the LLM's hidden size is %lld, the connector "
                       "gives %lld", (long long)H, (long long)s->proj.d_out);
    if (s->separator >= V)
        return vt_fail(st, VTOK_EINVAL, "slime: separator id %lld is outside the LLM's "
                       "vocabulary of %lld", (long long)s->separator, (long long)V);
    for (int64_t i = 0; i < run->n_text; i++)
        if (run->text_ids[i] < 0 || run->text_ids[i] >= V)
            return vt_fail(st, VTOK_EINVAL, "slime: text id %d (position %lld) is outside the "
                           "vocabulary of %lld", run->text_ids[i], (long long)i, (long long)V);
    return 0;
}

/* The selector over one image's M local rows L [M, C]: scores s_i (summed
 * cosines to the text rows, F.cosine_similarity: each norm clamped at 1e-8),
 * p = softmax(s / temperature), then the top-p cut; the kept indices
 * (ascending) into kept; returns how many. */
static int64_t select_local(const slime_state *s, const vt_run *run, const float *L, int64_t M,
                            int64_t C, float *score, float *prob, int64_t *idx, int64_t *tmp,
                            int64_t *kept)
{
    int64_t V, H;
    const float *E = vt_llm_embed_table(run->llm, &V, &H);
    const float eps = 1e-8f;
    for (int64_t i = 0; i < M; i++) { /* prob holds the local norms first */
        const float *x = L + i * C;
        float nx = 0;
        for (int64_t c = 0; c < C; c++)
            nx += x[c] * x[c];
        prob[i] = sqrtf(nx) > eps ? sqrtf(nx) : eps;
        score[i] = 0;
    }
    for (int64_t k = 0; k < run->n_text; k++) {
        const float *y = E + (int64_t)run->text_ids[k] * H;
        float ny = 0;
        for (int64_t c = 0; c < C; c++)
            ny += y[c] * y[c];
        ny = sqrtf(ny) > eps ? sqrtf(ny) : eps;
        for (int64_t i = 0; i < M; i++) {
            const float *x = L + i * C;
            float dot = 0;
            for (int64_t c = 0; c < C; c++)
                dot += x[c] * y[c];
            score[i] += dot / (prob[i] * ny);
        }
    }
    float mx = -INFINITY;
    for (int64_t i = 0; i < M; i++) {
        prob[i] = score[i] / (float)s->temp;
        mx = prob[i] > mx ? prob[i] : mx;
    }
    double sum = 0;
    for (int64_t i = 0; i < M; i++)
        sum += (prob[i] = expf(prob[i] - mx));
    for (int64_t i = 0; i < M; i++)
        prob[i] = (float)(prob[i] / sum);
    return vt_topp_keep(prob, M, (float)s->top_p, idx, tmp, kept);
}

static void slime_forward(const void *state, const vt_exec *e, const vt_enc_feats *in, int64_t n,
                          vt_stage *S, int64_t *ids, float *work)
{
    const slime_state *s = state;
    const vt_enc_feats *f = &in[s->enc];
    vt_stage *sel = &S[0], *glob = &S[1], *lq = &S[2], *loc = &S[3], *scores = &S[4],
             *kept = &S[5], *out = &S[6];
    const int64_t t = sel->ne[1], d = f->d, C = s->proj.d_out, q = s->local.n_q;
    const int64_t crops = f->items - n, g = s->local.grid;
    (void)ids;
    int64_t max_k = 0;
    for (int64_t i = 0; i < n; i++)
        max_k = f->grid[i].gw * f->grid[i].gh > max_k ? f->grid[i].gw * f->grid[i].gh : max_k;
    sl_buffers b;
    layout(s, n, t, crops, max_k, work, &b);
    vt_select_rows(f->hidden, f->items, f->T, d, f->prefix, sel->data);

    /* global, image by image: its base view is tile `first` of sel */
    for (int64_t i = 0; i < n; i++) {
        const float *x = sel->data + f->grid[i].first * t * d;
        float *o = glob->data + i * t * C;
        if (!mixture(s, t, d) || s->gated == 0) {
            vt_mlp_forward(&s->proj, e, x, 1, t, o, b.mlp);
            continue;
        }
        vt_resampler_forward(&s->attn, e, x, 1, t, b.ga, b.rs);
        if (s->gated == 1) {
            vt_mlp_forward(&s->proj, e, b.ga, 1, t, o, b.mlp);
            continue;
        }
        vt_mlp_forward(&s->proj, e, x, 1, t, o, b.mlp);
        vt_mlp_forward(&s->proj, e, b.ga, 1, t, b.gb, b.mlp);
        for (int64_t r = 0; r < t; r++) {
            const float *xr = x + r * d;
            float l0 = 0, l1 = 0;
            for (int64_t c = 0; c < d; c++) {
                l0 += xr[c] * s->w_gate[2 * c];
                l1 += xr[c] * s->w_gate[2 * c + 1];
            }
            const float m = l0 > l1 ? l0 : l1;
            const float e0 = expf(l0 - m), e1 = expf(l1 - m), z = e0 + e1;
            const float p0 = e0 / z, p1 = e1 / z;
            const float den = (p0 > p1 ? p0 + p1 : p1 + p0) + 1e-6f;
            const float g0 = p0 / den, g1 = p1 / den;
            float *orow = o + r * C;
            const float *b1 = b.gb + r * C;
            for (int64_t c = 0; c < C; c++)
                orow[c] = orow[c] * g0 + b1[c] * g1;
        }
    }

    /* local: every crop of every image through post_qformer, then projection */
    for (int64_t i = 0, k = 0; i < n; i++) {
        const vt_tile_grid *gr = &f->grid[i];
        const int64_t nk = gr->gw * gr->gh;
        if (nk)
            vt_resampler_forward(&s->local, e, sel->data + (gr->first + 1) * t * d, nk, t,
                                 lq->data + k * q * d, b.rs);
        k += nk;
    }
    vt_mlp_forward(&s->proj, e, lq->data, crops, q, loc->data, b.mlp);

    /* per image: raster order, selection, the output rows */
    int64_t V, H;
    const float *E = vt_llm_embed_table(e->run->llm, &V, &H);
    float *o = out->data;
    for (int64_t i = 0, k0 = 0; i < n; i++) {
        const vt_tile_grid *gr = &f->grid[i];
        const int64_t nk = gr->gw * gr->gh, M = nk * q;
        for (int64_t y = 0, r = 0; y < gr->gh * g; y++)
            for (int64_t x = 0; x < gr->gw * g; x++, r++) {
                const int64_t crop = (y / g) * gr->gw + x / g, qi = (y % g) * g + x % g;
                memcpy(b.loc + r * C, loc->data + ((k0 + crop) * q + qi) * C,
                       (size_t)C * sizeof(float));
            }
        const int64_t W = scores->ne[1];
        float *sc = scores->data + i * W, *kp = kept->data + i * W;
        const int64_t nsel = M ? select_local(s, e->run, b.loc, M, C, sc, b.prob, b.idx, b.tmp,
                                              b.idx + M)
                               : 0;
        memcpy(o, glob->data + i * t * C, (size_t)(t * C) * sizeof(float));
        o += t * C;
        memcpy(o, E + s->separator * H, (size_t)C * sizeof(float));
        o += C;
        for (int64_t j = 0; j < W; j++) {
            kp[j] = j < nsel ? (float)b.idx[M + j] : -1.0f;
            sc[j] = j < M ? sc[j] : 0.0f;
        }
        for (int64_t j = 0; j < nsel; j++, o += C)
            memcpy(o, b.loc + b.idx[M + j] * C, (size_t)C * sizeof(float));
        out->rows[i] = t + 1 + nsel;
        k0 += nk;
    }
}

const vt_connector_kind vt_connector_slime = {
    .name = "slime",
    .state_size = sizeof(slime_state),
    .setup = slime_setup,
    .load = slime_load,
    .unload = slime_unload,
    .linears = slime_linears,
    .plan = slime_plan,
    .forward = slime_forward,
    .check_run = slime_check_run,
    .needs_llm = 1,
};
