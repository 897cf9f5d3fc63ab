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
 * LLaVA-NeXT (llava-v1.6, "anyres" slicing on the encoder): every tile
 * (base view, then crops row by row) goes through the tower and projector,
 * then per image (LlavaMetaForCausalLM.prepare_inputs_labels_for_multimodal,
 * mm_patch_merge_type; spec mova-slime-llava.md 1.5):
 *   flat           all tiles' tokens in tile order;
 *   spatial        base, then the crops' p x p patch maps joined into one
 *                  (gh p) x (gw p) map, read in raster order;
 *   spatial_unpad  base, then that map cut back to the image's aspect
 *                  (unpad_image: if W / H > cw / ch, keep rows
 *                  [pad, ch - pad) with pad = (ch - int(H * (cw / W))) // 2,
 *                  else the same over columns; an odd margin keeps one more
 *                  row), each row followed by the learned image_newline.
 * An image that is a single tile (no crops) gives its tokens, plus one
 * newline under spatial_unpad. Each image has its own count (ragged).
 * The later LLaVA-NeXT repo's variants (LLaVA-VL/LLaVA-NeXT llava_arch.py,
 * spec 1.6), as options: maxpool2x2 (the joined map max-pooled 2 x 2, no
 * unpad, no newline); anyres_max N with spatial_unpad (image_aspect_ratio
 * "anyres_max_N": after unpad, times = sqrt(h w / (N p^2)); over 1.1 the map
 * is resized bilinear, align_corners=False, to int(h // times) x
 * int(w // times) before the newlines); nobase (no base-view tokens).
 *
 * Options ("connector" object): encoder ("vit"), select_layer (-2),
 * select_feature ("patch"), merge ("flat"; "spatial", "spatial_unpad",
 * "maxpool2x2"), anyres_max (0: off), nobase (false), newline (names of image_newline,
 * tried whole in the projector's files: default ["model.image_newline",
 * "image_newline"]), projector {type, file, prefix, bias, act}.
 * Stages: <encoder> [items, T, d], select [items, T', d], projector
 * [items, T', d_llm]; sliced runs add tokens [sum of counts, d_llm].
 */
#include "recipe.h"

#include "../connectors/mlp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MERGE_FLAT = 0, MERGE_SPATIAL, MERGE_UNPAD, MERGE_MAXPOOL };

typedef struct {
    int          enc;
    int          keep_cls;
    int          merge;
    int64_t      anyres_max;  /* spatial_unpad: shrink maps over ~N tiles (0: off) */
    int          nobase;      /* drop the base view's tokens (sliced images)  */
    vt_mlp       proj;
    const float *newline;   /* [d_llm], spatial_unpad */
} llava_state;

static void llava_unload(void *state)
{
    vt_mlp_free(&((llava_state *)state)->proj);
}

static int llava_setup(vt_recipe *r, const cJSON *cfg, void *state, const cJSON **weights,
                       vtok_status *st)
{
    static const char *const keys[] = {"type", "encoder", "select_layer", "select_feature",
                                       "merge", "anyres_max", "nobase", "newline",
                                       "projector", NULL};
    static const char *const feats[] = {"patch", "cls_patch", NULL};
    static const char *const merges[] = {"flat", "spatial", "spatial_unpad", "maxpool2x2",
                                         NULL};
    llava_state *s = state;
    char where[128];
    snprintf(where, sizeof where, "recipe %s: connector", vt_recipe_name(r));
    const char *enc;
    int64_t layer;
    int rc;
    if ((rc = vt_opt_check_keys(cfg, keys, where, st)) ||
        (rc = vt_opt_str(cfg, "encoder", "vit", &enc, where, st)) ||
        (rc = vt_opt_int(cfg, "select_layer", -2, &layer, where, st)) ||
        (rc = vt_opt_enum(cfg, "select_feature", feats, 0, &s->keep_cls, where, st)) ||
        (rc = vt_opt_enum(cfg, "merge", merges, MERGE_FLAT, &s->merge, where, st)) ||
        (rc = vt_opt_int(cfg, "anyres_max", 0, &s->anyres_max, where, st)) ||
        (rc = vt_opt_bool(cfg, "nobase", 0, &s->nobase, where, st)))
        return rc;
    if (s->anyres_max < 0 || s->anyres_max > 1024 || (s->anyres_max && s->merge != MERGE_UNPAD))
        return vt_fail(st, VTOK_EFORMAT, "%s: anyres_max (0..1024) goes with merge "
                       "'spatial_unpad'", where);
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

/* image_newline sits beside the projector (model.image_newline next to
 * model.mm_projector.*; image_newline next to multi_modal_projector.*): its
 * names are tried whole, without the projector's prefix. */
static int load_newline(llava_state *s, vt_loader *ld, const cJSON *cfg, const char *where)
{
    static const char *const def[] = {"model.image_newline", "image_newline"};
    const cJSON *nl = cJSON_GetObjectItemCaseSensitive(cfg, "newline");
    int n = nl ? (cJSON_IsArray(nl) ? cJSON_GetArraySize(nl) : 1) : 2;
    if (nl && !cJSON_IsString(nl) && !cJSON_IsArray(nl))
        return vt_loader_fail(ld, VTOK_EFORMAT, "%s: 'newline' must be a name or a list", where);
    const char *prefix = ld->src.prefix, *first = NULL;
    ld->src.prefix = "";
    for (int i = 0; i < n && !s->newline; i++) {
        const cJSON *it = !nl ? NULL : cJSON_IsArray(nl) ? cJSON_GetArrayItem(nl, i) : nl;
        const char *name = !nl ? def[i] : cJSON_IsString(it) ? it->valuestring : NULL;
        if (!name) {
            ld->src.prefix = prefix;
            return vt_loader_fail(ld, VTOK_EFORMAT, "%s: 'newline' names must be strings", where);
        }
        first = first ? first : name;
        if (vt_find(ld, name))
            s->newline = vt_get(ld, name, 1, s->proj.d_out, 0, 0, 0);
    }
    if (!s->newline && first)
        vt_get(ld, first, 1, s->proj.d_out, 0, 0, 0); /* recorded as missing */
    ld->src.prefix = prefix;
    return ld->err;
}

static int llava_load(vt_recipe *r, const cJSON *cfg, void *state, vt_loader *ld)
{
    llava_state *s = state;
    char where[128];
    snprintf(where, sizeof where, "recipe %s: projector", vt_recipe_name(r));
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(cfg, "projector");
    int rc = vt_mlp_load(&s->proj, ld, "", pj, 0, where);
    if (!rc && s->merge == MERGE_UNPAD)
        rc = load_newline(s, ld, cfg, where);
    return rc;
}

/* unpad_image's kept rows [*r0, *r1) and columns [*c0, *c1) of a ch x cw
 * map for a w x h image, in the original's float order. */
static void unpad(int64_t w, int64_t h, int64_t ch, int64_t cw, int64_t *r0, int64_t *r1,
                  int64_t *c0, int64_t *c1)
{
    *r0 = *c0 = 0;
    *r1 = ch;
    *c1 = cw;
    if ((double)w / (double)h > (double)cw / (double)ch) {
        const int64_t nh = (int64_t)((double)h * ((double)cw / (double)w));
        const int64_t pad = (ch - nh) / 2;
        *r0 = pad;
        *r1 = ch - pad;
    } else {
        const int64_t nw = (int64_t)((double)w * ((double)ch / (double)h));
        const int64_t pad = (cw - nw) / 2;
        *c0 = pad;
        *c1 = cw - pad;
    }
}

/* The map an image's crops make: (gh p) x (gw p), cut to [r0, r1) x
 * [c0, c1) by unpad, then (anyres_max) shrunk to oh x ow; *pooled for
 * maxpool2x2. */
typedef struct {
    int64_t ch, cw, r0, r1, c0, c1, oh, ow;
} merge_geom;

static merge_geom geometry(const llava_state *s, const vt_tile_grid *g, int64_t p)
{
    merge_geom m = {.ch = g->gh * p, .cw = g->gw * p};
    m.r1 = m.ch;
    m.c1 = m.cw;
    if (s->merge == MERGE_UNPAD)
        unpad(g->w, g->h, m.ch, m.cw, &m.r0, &m.r1, &m.c0, &m.c1);
    m.oh = m.r1 - m.r0;
    m.ow = m.c1 - m.c0;
    if (s->merge == MERGE_MAXPOOL) { /* max_pool2d(2): floor */
        m.oh = m.ch / 2;
        m.ow = m.cw / 2;
    }
    if (s->merge == MERGE_UNPAD && s->anyres_max > 0) {
        /* times = math.sqrt(h * w / (max_num_patches * unit ** 2)); if > 1.1:
         * [int(h // times), int(w // times)] */
        const int64_t h = m.oh, w = m.ow;
        const double times = sqrt((double)(h * w) / (double)(s->anyres_max * p * p));
        if (times > 1.1) {
            m.oh = (int64_t)floor((double)h / times);
            m.ow = (int64_t)floor((double)w / times);
        }
    }
    return m;
}

/* Tokens image g gives (t per tile, a p x p patch map per crop). */
static int64_t merged_rows(const llava_state *s, const vt_tile_grid *g, int64_t t, int64_t p)
{
    const int64_t crops = g->gw * g->gh;
    if (s->merge == MERGE_FLAT)
        return (1 + crops) * t;
    if (!crops)
        return t + (s->merge == MERGE_UNPAD);
    const merge_geom m = geometry(s, g, p);
    return (s->nobase ? 0 : t) + m.oh * (m.ow + (s->merge == MERGE_UNPAD));
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
    const int64_t m = f->items, t = s->keep_cls ? f->T : f->T - f->prefix;
    const int64_t d = s->proj.depth ? s->proj.d_out : f->d;
    if (s->proj.depth && s->proj.d_in != f->d)
        return vt_fail(st, VTOK_ESHAPE, "projector takes %lld features, the encoder gives %lld",
                       (long long)s->proj.d_in, (long long)f->d);
    vt_stage_set(&p->stages[p->n_stages++], "select", 3, m, t, f->d, 0);
    vt_stage_set(&p->stages[p->n_stages++], "projector", 3, m, t, d, 0);
    p->work_floats = vt_mlp_work_floats(&s->proj, m, t);
    p->lp_rows = m * t;
    if (!f->grid)
        return 0;
    /* the spatial merges read each crop as a p x p map (no CLS row) */
    const int64_t pp = f->vit->patch > 0 ? f->T - f->prefix : 0;
    const int64_t p1 = vt_square_side(pp);
    int64_t total = 0;
    if (s->merge != MERGE_FLAT && (s->keep_cls || p1 * p1 != pp || p1 * p1 != t))
        return vt_fail(st, VTOK_ESHAPE, "merge '%s' needs a square patch map without the CLS "
                       "token (select_feature 'patch')",
                       s->merge == MERGE_SPATIAL ? "spatial" : s->merge == MERGE_UNPAD
                                                            ? "spatial_unpad" : "maxpool2x2");
    int64_t map = 0; /* anyres_max: the largest cut map, in the MLP's work (used after it) */
    for (int64_t i = 0; i < n; i++) {
        p->out_rows[i] = merged_rows(s, &f->grid[i], t, p1);
        total += p->out_rows[i];
        const int64_t cells = f->grid[i].gw * f->grid[i].gh * t;
        map = s->anyres_max && cells > map ? cells : map;
    }
    map = vt_szmul(2 * map, d); /* the cut map and its shrunk copy */
    p->work_floats = map > p->work_floats ? map : p->work_floats;
    p->ragged = 1;
    vt_stage_set(&p->stages[p->n_stages++], "tokens", 2, total, d, 0, 0);
    return 0;
}

/* Row (y, x) of the joined crop map: crop (y / p, x / p), patch (y % p, x % p). */
static const float *map_row(const vt_tile_grid *g, const float *base, int64_t t, int64_t p,
                            int64_t d, int64_t y, int64_t x)
{
    const int64_t tile = 1 + (y / p) * g->gw + x / p, k = (y % p) * p + x % p;
    return base + (tile * t + k) * d;
}

/* Image g's tokens from the projected tiles P [tiles, t, d] into out; work
 * holds the cut map when anyres_max shrinks it. */
static void merge_image(const llava_state *s, const vt_tile_grid *g, const float *P, int64_t t,
                        int64_t p, int64_t d, float *out, float *work)
{
    const int64_t crops = g->gw * g->gh;
    const size_t row = (size_t)d * sizeof(float);
    const float *base = P + g->first * t * d;
    if (s->merge == MERGE_FLAT || !crops) {
        memcpy(out, base, (size_t)((1 + (s->merge == MERGE_FLAT ? crops : 0)) * t) * row);
        if (s->merge == MERGE_UNPAD && !crops)
            memcpy(out + t * d, s->newline, row);
        return;
    }
    if (!s->nobase) {
        memcpy(out, base, (size_t)t * row);
        out += t * d;
    }
    const merge_geom m = geometry(s, g, p);
    const int newline = s->merge == MERGE_UNPAD;
    if (s->merge == MERGE_MAXPOOL) {
        for (int64_t y = 0; y < m.oh; y++)
            for (int64_t x = 0; x < m.ow; x++, out += d) {
                const float *a = map_row(g, base, t, p, d, 2 * y, 2 * x);
                const float *b = map_row(g, base, t, p, d, 2 * y, 2 * x + 1);
                const float *c = map_row(g, base, t, p, d, 2 * y + 1, 2 * x);
                const float *e = map_row(g, base, t, p, d, 2 * y + 1, 2 * x + 1);
                for (int64_t k = 0; k < d; k++) {
                    float v = a[k] > b[k] ? a[k] : b[k];
                    v = c[k] > v ? c[k] : v;
                    out[k] = e[k] > v ? e[k] : v;
                }
            }
        return;
    }
    const int64_t h = m.r1 - m.r0, w = m.c1 - m.c0;
    if (m.oh == h && m.ow == w) {
        for (int64_t y = m.r0; y < m.r1; y++) {
            for (int64_t x = m.c0; x < m.c1; x++, out += d)
                memcpy(out, map_row(g, base, t, p, d, y, x), row);
            if (newline) {
                memcpy(out, s->newline, row);
                out += d;
            }
        }
        return;
    }
    /* anyres_max: the cut map, bilinear to oh x ow (in place of the
     * projector rows already read), then the rows with their newlines */
    float *small = work + h * w * d;
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++)
            memcpy(work + (y * w + x) * d, map_row(g, base, t, p, d, m.r0 + y, m.c0 + x), row);
    vt_resize_bilinear(work, h, w, d, m.oh, m.ow, small);
    for (int64_t y = 0; y < m.oh; y++) {
        memcpy(out, small + y * m.ow * d, (size_t)(m.ow * d) * sizeof(float));
        out += m.ow * d;
        memcpy(out, s->newline, row);
        out += d;
    }
}

static void llava_forward(const void *state, const vt_exec *e, const vt_enc_feats *in, int64_t n,
                          vt_stage *stages, int64_t *ids, float *work)
{
    const llava_state *s = state;
    const vt_enc_feats *f = &in[s->enc];
    vt_stage *sel = &stages[0], *out = &stages[1];
    (void)ids;
    vt_select_rows(f->hidden, f->items, f->T, f->d, s->keep_cls ? 0 : f->prefix, sel->data);
    vt_mlp_forward(&s->proj, e, sel->data, f->items, sel->ne[1], out->data, work);
    if (!f->grid)
        return;
    const int64_t t = sel->ne[1], d = out->ne[2];
    const int64_t p = vt_square_side(t);
    int64_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        merge_image(s, &f->grid[i], out->data, t, p, d, stages[2].data + off * d, work);
        off += stages[2].rows[i];
    }
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
