/*
 * run.c - recipe contexts: plan memory for a batch, run the encoders on it,
 * then the connector, and hand out the output and every stage as views.
 *
 * One block per context holds: encoder work (the largest encoder's; they
 * run one after the other), per-thread scratch, every stage, connector
 * work. It grows when a larger batch or input comes, and the forward pass
 * itself allocates nothing. With a low-precision dtype it also holds the
 * buffer vt_op_linear converts Linear inputs into (vt_exec.lp_buf), sized
 * for the most rows any encoder or connector Linear sees; a quantising
 * connector's ids get an int64 block of their own in it. The de-tokenizer
 * (vtok_recipe_detokenize) plans the same block from ids instead of
 * pixels. Encoders run only as deep as the deepest hidden
 * state the connector asked for (a shallow copy of the vt_vit with fewer
 * layers: LLaVA's hidden_states[-2] skips the last block).
 *
 * Steps (abort_cb / progress_cb of vtok_ctx_params): each encoder's
 * embedding and every block it runs, then the connector as one step (its
 * layers are not polled one by one). The run's conditioning
 * (vtok_run_params) reaches the connector as e->run (vt_exec) during
 * forward and is dropped when the call returns.
 */
#include "recipe_internal.h"

#include "../models/family.h"

#include "../core/ctx.h"
#include "../image/image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PROMPT_BYTES ((size_t)16 << 20)

struct vtok_recipe_ctx {
    vt_recipe   *r;
    vt_ctx_base  b;           /* params, pool, exec, run control (core/ctx.h) */
    vt_arena     arena;       /* every tensor of a run (tensor.h planner)  */
    float       *encw;        /* encoder work, in arena                    */
    float      **hidden;      /* max layers + 1 slots                    */
    float       *pix[VT_RECIPE_MAX_ENC]; /* preprocessed images, per encoder with its own processor */
    int64_t      pix_floats[VT_RECIPE_MAX_ENC];
    vt_plan      plan;
    float       *connw;       /* connector work, in mem                   */
    int64_t     *ids;         /* ids of the last run (plan.ids_per_image) */
    int64_t      n_run;
    int64_t     *tok_off;     /* n_run + 1 row offsets of each image's output tokens (arena) */
    vt_enc_req   req[VT_RECIPE_MAX_ENC];  /* hidden states asked of each encoder   */
    int64_t     *req_buf;     /* maxl + 1: a per-run request (vtok_encode's layers) */
    int          enc_stage[VT_RECIPE_MAX_ENC], enc_out[3 * VT_RECIPE_MAX_ENC];
    const char *const *image_names; /* borrowed for one run (vtok_run_params) */
    vt_tile_grid *grid;       /* sliced runs: each image's tiles (malloc'ed) */
    int64_t      *rows;       /* ragged runs: each image's token count (malloc'ed) */
    int64_t       grid_cap, rows_cap;
    int64_t       pix_ne[VT_RECIPE_MAX_ENC][4]; /* the last run's own pixels ([0] = 0: none) */
    /* what the encoders last ran on, for vtok_run_params.same_images: valid
     * only after a successful run (any other call clears it) */
    int          enc_valid, same;
    int64_t      enc_n, enc_tiles, enc_h[VT_RECIPE_MAX_ENC], enc_w[VT_RECIPE_MAX_ENC];
    int64_t      enc_req[VT_RECIPE_MAX_ENC];
    int          ok;
    vtok_status  st;
};

void vtok_run_params_init(vtok_run_params *p, size_t size)
{
    const vtok_run_params d = {.size = sizeof d, .prompt = NULL, .cond = NULL, .n_cond = 0,
                               .image_names = NULL};
    vt_params_init(p, size, &d, sizeof d);
}

vtok_recipe_ctx *vtok_recipe_ctx_new(vtok_recipe *r, const vtok_ctx_params *p, vtok_status *st)
{
    if (!r) {
        vt_fail(st, VTOK_EINVAL, "no recipe");
        return NULL;
    }
    int64_t maxl = 0;
    for (int i = 0; i < r->n_enc; i++)
        maxl = r->enc[i].vit->n_layers > maxl ? r->enc[i].vit->n_layers : maxl;
    vtok_recipe_ctx *c = calloc(1, sizeof *c);
    if (!c || !(c->hidden = calloc((size_t)maxl + 1, sizeof *c->hidden)) ||
        !(c->req_buf = calloc((size_t)maxl + 1, sizeof *c->req_buf))) {
        vtok_recipe_ctx_free(c);
        vt_fail(st, VTOK_ENOMEM, "out of memory creating a context");
        return NULL;
    }
    if (vt_ctx_base_init(&c->b, p, "recipe context", st)) {
        vtok_recipe_ctx_free(c);
        return NULL;
    }
    c->r = r;
    for (int i = 0; i < r->n_enc; i++)
        c->req[i] = (vt_enc_req){.layers = r->enc[i].layers, .n_req = r->enc[i].n_req,
                                 .run_layers = r->enc[i].run_layers};
    return c;
}

void vtok_recipe_ctx_free(vtok_recipe_ctx *c)
{
    if (!c)
        return;
    vt_ctx_base_free(&c->b);
    vt_arena_free(&c->arena);
    free(c->hidden);
    free(c->req_buf);
    free(c->grid);
    free(c->rows);
    for (int i = 0; i < VT_RECIPE_MAX_ENC; i++)
        vt_free(c->pix[i]);
    free(c);
}

const char *vtok_recipe_ctx_errmsg(const vtok_recipe_ctx *c)
{
    return c ? c->st.msg : "no context";
}

/* A truncated view of an encoder: only the blocks up to its deepest request. */
static vt_vit run_copy(const vt_recipe_enc *e, const vt_enc_req *q)
{
    vt_vit v = *e->vit;
    v.n_layers = e->outputs ? e->vit->n_layers : q->run_layers;
    return v;
}

static int64_t pool_width(const vt_vit *v)
{
    return v->pool == VT_POOL_CLS_DENSE_TANH && v->pool_dense.n_out > v->d ? v->pool_dense.n_out
                                                                           : v->d;
}

/* Where each image's tokens start in the output stage (ragged or not). */
static void set_token_offsets(vtok_recipe_ctx *c, int64_t n)
{
    vt_stage *o = &c->plan.stages[c->plan.n_stages - 1];
    c->tok_off[0] = 0;
    for (int64_t i = 0; i < n; i++)
        c->tok_off[i + 1] = c->tok_off[i] + (c->plan.ragged ? c->plan.out_rows[i] : o->ne[1]);
    if (c->plan.ragged)
        o->ne[0] = c->tok_off[n]; /* what the forward kept */
}

/* Plan the arena for c->plan: enc_work floats of encoder work, per-thread
 * scratch for max_t tokens, the low-precision input buffer for lp_rows rows,
 * connector work, every stage, n * ids_per_image ids. */
static int plan_memory(vtok_recipe_ctx *c, int64_t enc_work, int64_t max_t, int64_t lp_rows,
                       int64_t n, const char *what)
{
    int64_t nid = 0;
    vt_planner p;
    vt_planner_init(&p);
    if (!vt_mul_ok(n, c->plan.ids_per_image, &nid))
        p.err = VTOK_ELIMIT;
    /* the stages first, the encoders' in front: a later run on the same
     * images (same_images) finds them where they were, copied over if the
     * block grows */
    for (int s = 0; s < c->plan.n_stages; s++) {
        vt_stage *g = &c->plan.stages[s];
        vt_tensor t;
        if (vt_tensor_init(&t, VT_F32, g->n_dims, g->ne))
            p.err = VTOK_ELIMIT;
        vt_plan_bytes(&p, (void **)&g->data, p.err ? 0 : vt_tensor_nbytes(&t));
        if (s + 1 == c->plan.first)
            c->arena.keep = vt_planner_bytes(&p);
    }
    if (!c->plan.first)
        c->arena.keep = 0;
    vt_plan_floats(&p, &c->encw, enc_work);
    vt_ctx_plan_exec(&c->b, &p, max_t, lp_rows,
                     c->plan.lp_max_in > c->r->lp_max_in ? c->plan.lp_max_in : c->r->lp_max_in);
    vt_plan_floats(&p, &c->connw, c->plan.work_floats);
    vt_plan_bytes(&p, (void **)&c->ids, (size_t)nid * sizeof(int64_t));
    vt_plan_bytes(&p, (void **)&c->tok_off, (size_t)(n + 1) * sizeof(int64_t));
    int rc = vt_ctx_commit(&c->b, &p, &c->arena, what, &c->st);
    vt_planner_free(&p);
    if (!rc && !c->plan.ids_per_image)
        c->ids = NULL;
    return rc;
}

static int aborted(vtok_recipe_ctx *c)
{
    if (c->r->wrapper) /* vtok_encode on a model */
        return vt_fail(&c->st, VTOK_EABORTED, "encode aborted by the abort callback after %lld "
                       "of %lld steps", (long long)c->b.run.done, (long long)c->b.run.total);
    return vt_fail(&c->st, VTOK_EABORTED, "recipe %s: run aborted by the abort callback after "
                   "%lld of %lld steps", c->r->name, (long long)c->b.run.done,
                   (long long)c->b.run.total);
}

/* Check a UTF-8 string (RFC 3629: no overlongs, surrogates or values over
 * U+10FFFF), at most max bytes. Returns 0, or the byte offset + 1 of the
 * first bad sequence, or -1 if too long. */
static int64_t utf8_bad(const char *s, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (p[i]) {
        if (i >= max)
            return -1;
        unsigned c = p[i];
        int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || (len == 2 && c < 0xC2) || (len == 4 && c > 0xF4))
            return (int64_t)i + 1;
        for (int k = 1; k < len; k++)
            if ((p[i + k] & 0xC0) != 0x80)
                return (int64_t)i + 1;
        if ((len == 3 && c == 0xE0 && p[i + 1] < 0xA0) ||      /* overlong      */
            (len == 3 && c == 0xED && p[i + 1] >= 0xA0) ||     /* surrogates    */
            (len == 4 && c == 0xF0 && p[i + 1] < 0x90) ||      /* overlong      */
            (len == 4 && c == 0xF4 && p[i + 1] >= 0x90))       /* over U+10FFFF */
            return (int64_t)i + 1;
        i += (size_t)len;
    }
    return 0;
}

/* Read the caller's run params and start the run's control block. */
static int run_begin(vtok_recipe_ctx *c, const vtok_run_params *user_rp)
{
    vtok_run_params rp = vtok_run_default_params();
    int rc = vt_params_read(&rp, sizeof rp, user_rp, "vtok_run_params", &c->st);
    if (rc)
        return rc;
    if (rp.n_cond < 0 || (rp.n_cond > 0 && !rp.cond))
        return vt_fail(&c->st, VTOK_EINVAL, "vtok_run_params: cond must hold n_cond (%lld) floats",
                       (long long)rp.n_cond);
    if (rp.prompt) {
        int64_t bad = utf8_bad(rp.prompt, MAX_PROMPT_BYTES);
        if (bad < 0)
            return vt_fail(&c->st, VTOK_ELIMIT, "vtok_run_params: prompt longer than %zu bytes",
                           MAX_PROMPT_BYTES);
        if (bad)
            return vt_fail(&c->st, VTOK_EINVAL,
                           "vtok_run_params: prompt is not valid UTF-8 (byte %lld)",
                           (long long)bad - 1);
    }
    if (rp.n_text_ids < 0 || (rp.n_text_ids > 0 && !rp.text_ids))
        return vt_fail(&c->st, VTOK_EINVAL, "vtok_run_params: text_ids must hold n_text_ids "
                       "(%lld) ids", (long long)rp.n_text_ids);
    vt_ctx_run_begin(&c->b, 0, rp.prompt, rp.n_cond ? rp.cond : NULL, rp.n_cond);
    c->same = rp.same_images != 0;
    c->b.run.llm = rp.llm;
    c->b.run.text_ids = rp.n_text_ids ? rp.text_ids : NULL;
    c->b.run.n_text = rp.n_text_ids;
    c->image_names = rp.image_names;
    if (c->r->kind && c->r->kind->check_run &&
        (rc = c->r->kind->check_run(c->r->conn, &c->b.run, &c->st)))
        return rc;
    if (c->r->kind && c->r->kind->prepare)
        return c->r->kind->prepare(c->r, c->r->conn, &c->b.run, &c->st);
    return 0;
}

/* Say which image of the run a failure is about. */
static int image_fail(vtok_recipe_ctx *c, int64_t k, int rc)
{
    char pre[96];
    const char *name = c->image_names ? c->image_names[k] : NULL;
    if (name)
        vt_msg_prefix(&c->st, name);
    else if (snprintf(pre, sizeof pre, "image %lld", (long long)k) > 0)
        vt_msg_prefix(&c->st, pre);
    return rc;
}

/* The run's borrowed inputs are not kept past the call. */
static int run_end(vtok_recipe_ctx *c, int rc)
{
    vt_ctx_run_begin(&c->b, 0, NULL, NULL, 0);
    c->b.run.llm = NULL;
    c->b.run.text_ids = NULL;
    c->b.run.n_text = 0;
    c->b.run.images = NULL;
    c->b.run.n_images = 0;
    c->image_names = NULL;
    return vt_ctx_end(&c->b, &c->st, rc);
}

/* pixels[e] [items(e), ch, h[e], w[e]] for each encoder: n images, or for the
 * sliced encoder (and those taking its pixels) their `tiles` tiles. */
static int run_all(vtok_recipe_ctx *c, const float *const *pixels, int64_t n, const int64_t *ch,
                   const int64_t *h, const int64_t *w, const vt_tile_grid *grid, int64_t tiles)
{
    vt_recipe *r = c->r;
    vtok_status *st = &c->st;
    if (n < 1 || n > r->max_images)
        return vt_fail(st, VTOK_EINVAL, "recipe %s takes 1 to %lld images per run, got %lld",
                       r->name, (long long)r->max_images, (long long)n);
    for (int i = 0; i < r->n_enc; i++)
        if ((c->req[i].n_req || r->enc[i].outputs) && ch[i] != r->enc[i].vit->channels)
            return vt_fail(st, VTOK_ESHAPE, "pixels have %lld channels, encoder %s takes %lld",
                           (long long)ch[i], r->enc[i].name, (long long)r->enc[i].vit->channels);
    vt_enc_feats feats[VT_RECIPE_MAX_ENC];
    int *es = c->enc_stage, *eo = c->enc_out;
    if (!vt_grow(&c->rows, &c->rows_cap, n, sizeof *c->rows))
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    int rc;
    c->plan.out_rows = c->rows;
    if ((rc = vt_recipe_plan(r, c->req, n, h, w, grid, tiles, feats, &c->plan, es, eo, st)))
        return rc;

    /* same_images: the encoders' stages of the last run stand */
    const int reuse = c->same;
    c->same = 0;
    if (reuse) {
        int same = c->enc_valid && c->enc_n == n && c->enc_tiles == tiles;
        for (int i = 0; same && i < r->n_enc; i++)
            same = c->enc_h[i] == h[i] && c->enc_w[i] == w[i] &&
                   c->enc_req[i] == (c->req[i].n_req ? c->req[i].run_layers : -1);
        if (!same)
            return vt_fail(st, VTOK_EINVAL, "same_images: this context's last run %s",
                           c->enc_valid ? "had other images, sizes or layers"
                                        : "did not succeed (or was not a run of the encoders)");
    }
    c->enc_valid = 0;

    /* Memory: encoder work, scratch, stages, connector work. */
    char what[128];
    snprintf(what, sizeof what, "a run of %lld images", (long long)n);
    int64_t enc_work = 0, max_t = c->plan.max_tokens, lp_rows = c->plan.lp_rows;
    int64_t steps = r->wrapper ? 0 : 1; /* the connector is one step (a model's own recipe has none) */
    for (int i = 0; i < r->n_enc; i++) {
        if (!c->req[i].n_req && !r->enc[i].outputs)
            continue;
        vt_vit v = run_copy(&r->enc[i], &c->req[i]);
        int64_t m = feats[i].items, T = feats[i].T, x = vt_szmul3(m, T, v.d);
        steps += reuse ? 0 : v.n_layers + 1; /* embedding + blocks run */
        /* last_hidden_state and pooler go to work memory unless they are stages;
         * saturating sums, refused by the planner past int64_t */
        x = vt_szadd(vt_szr16(vt_vit_work_floats(&v, m, h[i], w[i])),
                     r->enc[i].outputs ? 0
                                       : vt_szadd(vt_szr16(x), vt_szr16(vt_szmul(m, pool_width(&v)))));
        enc_work = x > enc_work ? x : enc_work;
        max_t = T > max_t ? T : max_t;
        lp_rows = vt_szmul(m, T) > lp_rows ? vt_szmul(m, T) : lp_rows;
    }
    if ((rc = plan_memory(c, enc_work, max_t, lp_rows, n, what)))
        return rc;
    float *encw = c->encw;
    c->b.run.total = steps;

    /* Encoders, one after the other, hidden states straight into their stage. */
    for (int i = 0; i < r->n_enc; i++) {
        const vt_recipe_enc *e = &r->enc[i];
        const vt_enc_req *q = &c->req[i];
        if (!q->n_req && !e->outputs)
            continue;
        vt_vit v = run_copy(e, q);
        int64_t m = feats[i].items, T = feats[i].T, rows = m * T * v.d;
        float *stage = es[i] >= 0 ? c->plan.stages[es[i]].data : NULL;
        feats[i].pixels = pixels[i];
        feats[i].h = h[i];
        feats[i].w = w[i];
        if (reuse) {
            feats[i].hidden = stage;
            continue;
        }
        for (int64_t l = 0; l <= v.n_layers; l++)
            c->hidden[l] = NULL;
        for (int64_t k = 0; k < q->n_req; k++)
            c->hidden[q->layers[k]] = stage + k * rows;
        float *work = encw, *last = work + vt_szr16(vt_vit_work_floats(&v, m, h[i], w[i]));
        vt_vit_out out = {.last = last, .pooler = last + vt_szr16(rows), .embeds = NULL,
                          .hidden = c->hidden};
        if (e->outputs) {
            vt_stage *S = c->plan.stages;
            out.last = S[eo[3 * i]].data;
            out.pooler = eo[3 * i + 1] >= 0 ? S[eo[3 * i + 1]].data : NULL;
            out.embeds = eo[3 * i + 2] >= 0 ? S[eo[3 * i + 2]].data : NULL;
        }
        vt_vit_forward(&v, &c->b.exec, pixels[i], m, h[i], w[i], work, &out);
        if (c->b.run.aborted)
            return aborted(c);
        feats[i].hidden = stage;
    }
    if (!r->wrapper) {
        if (vt_run_poll(&c->b.exec))
            return aborted(c);
        c->plan.stages[c->plan.n_stages - 1].rows = c->plan.ragged ? c->plan.out_rows : NULL;
        if (r->kind->forward_run) {
            if ((rc = r->kind->forward_run(r->conn, &c->b.exec, feats, n,
                                           c->plan.stages + c->plan.first, c->connw, st)))
                return rc == VTOK_EABORTED || c->b.run.aborted ? aborted(c) : rc;
        } else {
            r->kind->forward(r->conn, &c->b.exec, feats, n, c->plan.stages + c->plan.first,
                             c->ids, c->connw);
        }
        vt_run_step_done(&c->b.exec);
    }
    set_token_offsets(c, n);
    c->n_run = n;
    c->ok = 1;
    c->enc_valid = 1;
    c->enc_n = n;
    c->enc_tiles = tiles;
    for (int i = 0; i < r->n_enc; i++) {
        c->enc_h[i] = h[i];
        c->enc_w[i] = w[i];
        c->enc_req[i] = c->req[i].n_req ? c->req[i].run_layers : -1;
    }
    return 0;
}

int vtok_recipe_run(vtok_recipe_ctx *c, const float *pixels, int64_t n, int64_t ch, int64_t h,
                    int64_t w, const vtok_run_params *rp)
{
    if (!c)
        return VTOK_EINVAL;
    c->ok = 0;
    c->st.code = 0;
    c->st.msg[0] = '\0';
    int valid = c->enc_valid, rc;
    c->enc_valid = 0;
    if ((rc = run_begin(c, rp)))
        return run_end(c, rc);
    c->enc_valid = c->same ? valid : 0;
    if (!pixels)
        return run_end(c, vt_fail(&c->st, VTOK_EINVAL, "no pixels"));
    memset(c->pix_ne, 0, sizeof c->pix_ne);
    if (c->r->slice_enc >= 0)
        return run_end(c, vt_fail(&c->st, VTOK_EUNSUPPORTED, "recipe %s slices each image "
                                  "into crops: give decoded images (vtok_recipe_run_images)",
                                  c->r->name));
    const float *px[VT_RECIPE_MAX_ENC];
    int64_t chs[VT_RECIPE_MAX_ENC], hs[VT_RECIPE_MAX_ENC], ws[VT_RECIPE_MAX_ENC];
    for (int i = 0; i < c->r->n_enc; i++) {
        px[i] = pixels;
        chs[i] = ch;
        hs[i] = h;
        ws[i] = w;
    }
    return run_end(c, run_all(c, px, n, chs, hs, ws, NULL, 0));
}

/* Room for per * n floats of encoder i's pixels. */
static int pix_room(vtok_recipe_ctx *c, int i, int64_t per, int64_t n, const char *what)
{
    int64_t need = 0;
    const int ok = vt_mul_ok(per, n, &need);
    if (vt_ctx_check_mem(&c->b, ok, need, what, &c->st))
        return c->st.code;
    if (need > c->pix_floats[i]) {
        vt_free(c->pix[i]);
        c->pix_floats[i] = 0;
        if (!(c->pix[i] = vt_alloc((size_t)need * sizeof(float))))
            return vt_fail(&c->st, VTOK_ENOMEM, "out of memory");
        c->pix_floats[i] = need;
    }
    return 0;
}

/* Encoder i slices: each image becomes its base view and crops (slice.c),
 * each through the processor, into c->pix[i]; c->grid says which tiles are
 * whose. *side: the processor's output side for a tile. */
static int slice_pixels(vtok_recipe_ctx *c, int i, const vtok_image *images, int64_t n,
                        int64_t *tiles, int64_t *side)
{
    const vt_recipe_enc *e = &c->r->enc[i];
    vtok_status *st = &c->st;
    if (!vt_grow(&c->grid, &c->grid_cap, n, sizeof *c->grid))
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    int rc;
    int64_t total = 0, oh, ow;
    for (int64_t k = 0; k < n; k++) {
        vt_tile_grid *g = &c->grid[k];
        if ((rc = vt_recipe_slice_grid(c->r, images[k].width, images[k].height, g, st)))
            return image_fail(c, k, rc);
        g->first = total;
        total += 1 + g->gw * g->gh;
    }
    if ((rc = vtok_processor_output_size(e->proc, e->slice_crop, e->slice_crop, &oh, &ow, st)))
        return rc;
    if (oh != ow || vtok_processor_output_size(e->proc, e->slice_base, e->slice_base, side, &ow,
                                               st) || *side != oh)
        return vt_fail(st, VTOK_EFORMAT, "encoder %s: its processor does not turn the %lld-pixel "
                       "crops and the %lld-pixel base view into one square size", e->name,
                       (long long)e->slice_crop, (long long)e->slice_base);
    int64_t per = 3 * oh * oh;
    char what[160];
    snprintf(what, sizeof what, "the pixels of %lld tiles of %lld images for encoder %s",
             (long long)total, (long long)n, e->name);
    if ((rc = pix_room(c, i, per, total, what)))
        return rc;
    vtok_image t[VT_SLICE_MAX_TILES];
    for (int64_t k = 0; k < n; k++) {
        const vt_tile_grid *g = &c->grid[k];
        const int64_t nt = 1 + g->gw * g->gh;
        if (nt > (int64_t)(sizeof t / sizeof t[0]))
            return image_fail(c, k, vt_fail(st, VTOK_ELIMIT, "%lld crops", (long long)nt - 1));
        if ((rc = vt_slice_image(&images[k], g->gw * e->slice_crop, g->gh * e->slice_crop,
                                 e->slice_crop, e->slice_base, t, st)))
            return image_fail(c, k, rc);
        for (int64_t j = 0; j < nt && !rc; j++)
            rc = vtok_preprocess(e->proc, &t[j], c->pix[i] + (g->first + j) * per, per, st);
        for (int64_t j = 0; j < nt; j++)
            vtok_image_free(&t[j]);
        if (rc)
            return image_fail(c, k, rc);
    }
    *tiles = total;
    return 0;
}

static void set_pix_ne(vtok_recipe_ctx *c, int i, int64_t n, int64_t h, int64_t w)
{
    c->pix_ne[i][0] = n;
    c->pix_ne[i][1] = 3;
    c->pix_ne[i][2] = h;
    c->pix_ne[i][3] = w;
}

int vtok_recipe_get_pixels(vtok_recipe_ctx *c, int enc, const char **name, vtok_view *out)
{
    if (!c || !out || enc < 0 || enc >= c->r->n_enc)
        return VTOK_EINVAL;
    if (!c->ok)
        return vt_fail(&c->st, VTOK_EINVAL, "no successful run on this context");
    if (!c->pix_ne[enc][0])
        return VTOK_EMISSING;
    memset(out, 0, sizeof *out);
    out->data = c->pix[enc];
    out->n_dims = 4;
    for (int d = 0; d < 4; d++)
        out->ne[d] = c->pix_ne[enc][d];
    if (name)
        *name = c->r->enc[enc].name;
    return 0;
}

static int run_images(vtok_recipe_ctx *c, const vtok_image *images, int64_t n)
{
    vt_recipe *r = c->r;
    vtok_status *st = &c->st;
    int64_t tiles = 0;
    memset(c->pix_ne, 0, sizeof c->pix_ne);
    if (!images || n < 1 || n > r->max_images)
        return vt_fail(st, VTOK_EINVAL, "recipe %s takes 1 to %lld images per run, got %lld",
                       r->name, (long long)r->max_images, (long long)(images ? n : 0));
    const float *px[VT_RECIPE_MAX_ENC];
    int64_t chs[VT_RECIPE_MAX_ENC], hs[VT_RECIPE_MAX_ENC], ws[VT_RECIPE_MAX_ENC];
    for (int i = 0; i < r->n_enc; i++) {
        const vt_recipe_enc *e = &r->enc[i];
        if (e->pixels_from != i) { /* shares an earlier encoder's pixels */
            int s = e->pixels_from;
            px[i] = px[s];
            chs[i] = chs[s];
            hs[i] = hs[s];
            ws[i] = ws[s];
            continue;
        }
        if (!e->proc)
            return vt_fail(st, VTOK_EMISSING,
                           "encoder %s: no preprocessor_config.json in %s; give pixels instead",
                           e->name, e->path);
        if (i == r->slice_enc) {
            int rc = slice_pixels(c, i, images, n, &tiles, &hs[i]);
            if (rc)
                return rc;
            px[i] = c->pix[i];
            chs[i] = 3;
            ws[i] = hs[i];
            set_pix_ne(c, i, tiles, hs[i], ws[i]);
            continue;
        }
        int64_t h0 = 0, w0 = 0;
        for (int64_t k = 0; k < n; k++) {
            int64_t hh, ww;
            int rc = vtok_processor_output_size(e->proc, images[k].width, images[k].height, &hh,
                                                &ww, st);
            if (rc)
                return image_fail(c, k, rc);
            if (k == 0) {
                h0 = hh;
                w0 = ww;
            } else if (hh != h0 || ww != w0) {
                return vt_fail(st, VTOK_ESHAPE,
                               "image %lld preprocesses to %lldx%lld but image 0 to %lldx%lld; "
                               "images of one run must match", (long long)k, (long long)ww,
                               (long long)hh, (long long)w0, (long long)h0);
            }
        }
        int64_t per = 3 * h0 * w0;
        char what[160];
        snprintf(what, sizeof what, "the pixels of %lld images of %lldx%lld for encoder %s",
                 (long long)n, (long long)w0, (long long)h0, e->name);
        int rc = pix_room(c, i, per, n, what);
        if (rc)
            return rc;
        for (int64_t k = 0; k < n; k++)
            if ((rc = vtok_preprocess(e->proc, &images[k], c->pix[i] + k * per, per, st)))
                return image_fail(c, k, rc);
        px[i] = c->pix[i];
        chs[i] = 3;
        hs[i] = h0;
        ws[i] = w0;
        set_pix_ne(c, i, n, h0, w0);
    }
    return run_all(c, px, n, chs, hs, ws, r->slice_enc >= 0 ? c->grid : NULL, tiles);
}

int vtok_recipe_run_images(vtok_recipe_ctx *c, const vtok_image *images, int64_t n,
                           const vtok_run_params *rp)
{
    if (!c)
        return VTOK_EINVAL;
    c->ok = 0;
    c->st.code = 0;
    c->st.msg[0] = '\0';
    c->b.run.images = images; /* before run_begin: prepare may look at them */
    c->b.run.n_images = images ? n : 0;
    int valid = c->enc_valid;
    c->enc_valid = 0;
    int rc = run_begin(c, rp);
    c->enc_valid = !rc && c->same ? valid : 0;
    return run_end(c, rc ? rc : run_images(c, images, n));
}

static void to_view(const vt_stage *s, vtok_view *out)
{
    memset(out, 0, sizeof *out);
    out->data = s->data;
    out->n_dims = s->n_dims;
    for (int d = 0; d < s->n_dims; d++)
        out->ne[d] = s->ne[d];
}

int vtok_recipe_get_output(vtok_recipe_ctx *c, vtok_view *out)
{
    if (!c || !out)
        return VTOK_EINVAL;
    if (!c->ok)
        return vt_fail(&c->st, VTOK_EINVAL, "no successful run on this context");
    to_view(&c->plan.stages[c->plan.n_stages - 1], out);
    return 0;
}

int vtok_recipe_get_image_output(vtok_recipe_ctx *c, int64_t i, vtok_view *out)
{
    if (!c || !out)
        return VTOK_EINVAL;
    if (!c->ok)
        return vt_fail(&c->st, VTOK_EINVAL, "no successful run on this context");
    if (i < 0 || i >= c->n_run)
        return vt_fail(&c->st, VTOK_EINVAL, "image %lld of a run of %lld", (long long)i,
                       (long long)c->n_run);
    const vt_stage *o = &c->plan.stages[c->plan.n_stages - 1];
    int64_t d = o->ne[o->n_dims - 1];
    memset(out, 0, sizeof *out);
    out->data = o->data + c->tok_off[i] * d;
    out->n_dims = 2;
    out->ne[0] = c->tok_off[i + 1] - c->tok_off[i];
    out->ne[1] = d;
    return 0;
}

int vtok_recipe_get_ids(vtok_recipe_ctx *c, const int64_t **ids, int64_t *n, int64_t *per_image)
{
    if (!c || !ids || !n || !per_image)
        return VTOK_EINVAL;
    if (!c->ok)
        return vt_fail(&c->st, VTOK_EINVAL, "no successful run on this context");
    if (!c->ids)
        return vt_fail(&c->st, VTOK_EUNSUPPORTED,
                       "recipe %s gives embeddings, not discrete ids", c->r->name);
    *ids = c->ids;
    *n = c->n_run;
    *per_image = c->plan.ids_per_image;
    return 0;
}

static int detokenize(vtok_recipe_ctx *c, const int64_t *ids, int64_t n, int64_t per_image);

int vtok_recipe_detokenize(vtok_recipe_ctx *c, const int64_t *ids, int64_t n, int64_t per_image)
{
    if (!c)
        return VTOK_EINVAL;
    c->ok = 0;
    c->enc_valid = 0;
    c->st.code = 0;
    c->st.msg[0] = '\0';
    return vt_ctx_end(&c->b, &c->st, detokenize(c, ids, n, per_image));
}

static int detokenize(vtok_recipe_ctx *c, const int64_t *ids, int64_t n, int64_t per_image)
{
    vt_recipe *r = c->r;
    vtok_status *st = &c->st;
    if (!r->kind->detok)
        return vt_fail(st, VTOK_EUNSUPPORTED, "recipe %s has no de-tokenizer", r->name);
    if (!ids || n < 1 || n > r->max_images)
        return vt_fail(st, VTOK_EINVAL, "recipe %s takes 1 to %lld id rows per call, got %lld",
                       r->name, (long long)r->max_images, (long long)(ids ? n : 0));
    memset(&c->plan, 0, sizeof c->plan);
    int rc = r->kind->detok_plan(r->conn, n, per_image, &c->plan, st);
    if (rc)
        return rc;
    if (c->plan.n_stages < 1)
        return vt_fail(st, VTOK_EINVAL, "recipe %s: the de-tokenizer produced no output", r->name);
    c->plan.ids_per_image = 0;
    char what[128];
    snprintf(what, sizeof what, "de-tokenizing %lld id rows", (long long)n);
    if ((rc = plan_memory(c, 0, c->plan.max_tokens, c->plan.lp_rows, n, what)))
        return rc;
    vt_ctx_run_begin(&c->b, 1, NULL, NULL, 0);
    if (vt_run_poll(&c->b.exec))
        return vt_fail(st, VTOK_EABORTED, "recipe %s: de-tokenize aborted by the abort callback",
                       r->name);
    if ((rc = r->kind->detok(r->conn, &c->b.exec, ids, n, per_image, c->plan.stages, c->connw, st)))
        return rc;
    vt_run_step_done(&c->b.exec);
    set_token_offsets(c, n);
    c->n_run = n;
    c->ok = 1;
    return 0;
}

int vtok_recipe_get_stage(vtok_recipe_ctx *c, int i, const char **name, vtok_view *out)
{
    if (!c || !out)
        return VTOK_EINVAL;
    if (!c->ok)
        return vt_fail(&c->st, VTOK_EINVAL, "no successful run on this context");
    if (i < 0 || i >= c->plan.n_stages)
        return VTOK_EINVAL;
    to_view(&c->plan.stages[i], out);
    if (name)
        *name = c->plan.stages[i].name;
    return 0;
}

/* ---- a model's own recipe (vtok_ctx, model.c) ---- */

int vt_recipe_ctx_set_request(vtok_recipe_ctx *c, int enc, const int64_t *layers,
                              int64_t n_layers)
{
    int64_t L = c->r->enc[enc].vit->n_layers, deepest = 0;
    if (n_layers < 0 || n_layers > L + 1)
        return VTOK_EINVAL;
    for (int64_t k = 0; k < n_layers; k++) {
        c->req_buf[k] = layers[k];
        deepest = layers[k] > deepest ? layers[k] : deepest;
    }
    c->req[enc] = (vt_enc_req){.layers = c->req_buf, .n_req = n_layers, .run_layers = deepest};
    c->enc_valid = 0;
    return 0;
}

int vt_recipe_ctx_stage(vtok_recipe_ctx *c, int which, vtok_view *out)
{
    int k = which == VT_ENC_OUT_LAST ? 0 : which == VT_ENC_OUT_POOLER ? 1 : 2;
    int s = c->ok ? c->enc_out[k] : -1;
    if (s < 0)
        return VTOK_EMISSING;
    to_view(&c->plan.stages[s], out);
    return 0;
}

int vt_recipe_ctx_hidden(vtok_recipe_ctx *c, int64_t layer, vtok_view *out)
{
    const vt_enc_req *q = &c->req[0];
    if (!c->ok || c->enc_stage[0] < 0)
        return VTOK_EMISSING;
    const vt_stage *s = &c->plan.stages[c->enc_stage[0]];
    for (int64_t k = 0; k < q->n_req; k++)
        if (q->layers[k] == layer) {
            int64_t n = c->n_run, T = s->ne[s->n_dims - 2], d = s->ne[s->n_dims - 1];
            memset(out, 0, sizeof *out);
            out->data = s->data + k * n * T * d;
            out->n_dims = 3;
            out->ne[0] = n;
            out->ne[1] = T;
            out->ne[2] = d;
            return 0;
        }
    return VTOK_EMISSING;
}

vtok_status *vt_recipe_ctx_status(vtok_recipe_ctx *c)
{
    return &c->st;
}

const vtok_recipe *vt_recipe_ctx_recipe(const vtok_recipe_ctx *c)
{
    return c->r;
}

int vt_recipe_ctx_end(vtok_recipe_ctx *c, const vtok_status *st, int rc)
{
    return vt_ctx_end(&c->b, st, rc);
}
