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
 */
#include "recipe_internal.h"

#include "../core/tensor.h"

#include "../models/family.h"

#include "../image/image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CTX_BYTES ((int64_t)64 << 30)

struct vtok_recipe_ctx {
    vt_recipe   *r;
    vt_pool     *pool;
    vt_exec      exec;
    vt_arena     arena;       /* every tensor of a run (tensor.h planner)  */
    float       *encw;        /* encoder work, in arena                    */
    float      **hidden;      /* max layers + 1 slots                    */
    float       *pix[VT_RECIPE_MAX_ENC]; /* preprocessed images, per encoder with its own processor */
    int64_t      pix_floats[VT_RECIPE_MAX_ENC];
    vt_plan      plan;
    float       *connw;       /* connector work, in mem                   */
    int64_t     *ids;         /* ids of the last run (plan.ids_per_image) */
    int64_t      n_run;
    int          ok;
    vtok_status  st;
};

static int64_t r16(int64_t n)
{
    return (n + 15) / 16 * 16;
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
        !(c->pool = vt_ctx_pool(p, &c->exec))) {
        vtok_recipe_ctx_free(c);
        vt_fail(st, VTOK_ENOMEM, "out of memory creating a context");
        return NULL;
    }
    c->r = r;
    return c;
}

void vtok_recipe_ctx_free(vtok_recipe_ctx *c)
{
    if (!c)
        return;
    vt_pool_free(c->pool);
    vt_arena_free(&c->arena);
    free(c->hidden);
    for (int i = 0; i < VT_RECIPE_MAX_ENC; i++)
        vt_free(c->pix[i]);
    free(c);
}

const char *vtok_recipe_ctx_errmsg(const vtok_recipe_ctx *c)
{
    return c ? c->st.msg : "no context";
}

/* A truncated view of an encoder: only the blocks up to its deepest request. */
static vt_vit run_copy(const vt_recipe_enc *e)
{
    vt_vit v = *e->vit;
    v.n_layers = e->run_layers;
    return v;
}

static int64_t pool_width(const vt_vit *v)
{
    return v->pool == VT_POOL_CLS_DENSE_TANH && v->pool_dense.n_out > v->d ? v->pool_dense.n_out
                                                                           : v->d;
}

/* Plan the arena for c->plan: enc_work floats of encoder work, per-thread
 * scratch for max_t tokens, the low-precision input buffer for lp_rows rows,
 * connector work, every stage, n * ids_per_image ids. */
static int plan_memory(vtok_recipe_ctx *c, int64_t enc_work, int64_t max_t, int64_t lp_rows,
                       int64_t n)
{
    const vt_recipe *r = c->r;
    int64_t scr = r16(vt_exec_scratch_floats(max_t));
    int64_t nt = vt_pool_size(c->pool);
    size_t lp = r->lp_max_in > 0 ? vt_exec_lp_bytes(lp_rows, r->lp_max_in) : 0;
    int64_t nscr;
    vt_planner p;
    vt_planner_init(&p);
    if (!vt_mul_ok(nt, scr, &nscr))
        p.err = VTOK_ELIMIT;
    vt_plan_bytes(&p, (void **)&c->encw, (size_t)enc_work * sizeof(float));
    vt_plan_bytes(&p, (void **)&c->exec.scratch, (size_t)nscr * sizeof(float));
    vt_plan_bytes(&p, &c->exec.lp_buf, lp);
    vt_plan_bytes(&p, (void **)&c->connw, (size_t)c->plan.work_floats * sizeof(float));
    for (int s = 0; s < c->plan.n_stages; s++) {
        vt_stage *g = &c->plan.stages[s];
        vt_tensor t;
        if (vt_tensor_init(&t, VT_F32, g->n_dims, g->ne))
            p.err = VTOK_ELIMIT;
        vt_plan_bytes(&p, (void **)&g->data, vt_tensor_nbytes(&t));
    }
    int64_t nid;
    if (!vt_mul_ok(n, c->plan.ids_per_image, &nid))
        p.err = VTOK_ELIMIT;
    vt_plan_bytes(&p, (void **)&c->ids, (size_t)nid * sizeof(int64_t));
    char what[64];
    snprintf(what, sizeof what, "a run of %lld images", (long long)n);
    int rc = vt_planner_commit(&p, &c->arena, (size_t)MAX_CTX_BYTES, what, &c->st);
    vt_planner_free(&p);
    if (rc)
        return rc;
    c->exec.scratch_stride = scr;
    c->exec.lp_bytes = lp;
    if (!lp)
        c->exec.lp_buf = NULL;
    if (!c->plan.ids_per_image)
        c->ids = NULL;
    c->exec.k = vt_kernels_get();
    return 0;
}

/* pixels[e] [n, ch, h[e], w[e]] for each encoder. */
static int run_all(vtok_recipe_ctx *c, const float *const *pixels, int64_t n, const int64_t *ch,
                   const int64_t *h, const int64_t *w)
{
    vt_recipe *r = c->r;
    vtok_status *st = &c->st;
    if (n < 1 || n > r->max_images)
        return vt_fail(st, VTOK_EINVAL, "recipe %s takes 1 to %lld images per run, got %lld",
                       r->name, (long long)r->max_images, (long long)n);
    for (int i = 0; i < r->n_enc; i++)
        if (r->enc[i].n_req && ch[i] != r->enc[i].vit->channels)
            return vt_fail(st, VTOK_ESHAPE, "pixels have %lld channels, encoder %s takes %lld",
                           (long long)ch[i], r->enc[i].name, (long long)r->enc[i].vit->channels);
    vt_enc_feats feats[VT_RECIPE_MAX_ENC];
    int es[VT_RECIPE_MAX_ENC];
    int rc = vt_recipe_plan(r, n, h, w, feats, &c->plan, es, st);
    if (rc)
        return rc;

    /* Memory: encoder work, scratch, stages, connector work. */
    int64_t enc_work = 0, max_t = c->plan.max_tokens, lp_rows = c->plan.lp_rows;
    for (int i = 0; i < r->n_enc; i++) {
        if (!r->enc[i].n_req)
            continue;
        vt_vit v = run_copy(&r->enc[i]);
        int64_t T = feats[i].T, x;
        if (!vt_mul_ok(n * T, v.d, &x))
            return vt_fail(st, VTOK_ELIMIT, "a run of %lld images is too large", (long long)n);
        x = r16(vt_vit_work_floats(&v, n, h[i], w[i])) + r16(x) + r16(n * pool_width(&v));
        enc_work = x > enc_work ? x : enc_work;
        max_t = T > max_t ? T : max_t;
        lp_rows = n * T > lp_rows ? n * T : lp_rows;
    }
    if ((rc = plan_memory(c, enc_work, max_t, lp_rows, n)))
        return rc;
    float *encw = c->encw;

    /* Encoders, one after the other, hidden states straight into their stage. */
    for (int i = 0; i < r->n_enc; i++) {
        const vt_recipe_enc *e = &r->enc[i];
        if (!e->n_req)
            continue;
        vt_vit v = run_copy(e);
        int64_t T = feats[i].T, rows = n * T * v.d;
        float *stage = c->plan.stages[es[i]].data;
        for (int64_t l = 0; l <= v.n_layers; l++)
            c->hidden[l] = NULL;
        for (int64_t k = 0; k < e->n_req; k++)
            c->hidden[e->layers[k]] = stage + k * rows;
        float *work = encw, *last = work + r16(vt_vit_work_floats(&v, n, h[i], w[i]));
        vt_vit_out out = {.last = last, .pooler = last + r16(rows), .embeds = NULL,
                          .hidden = c->hidden};
        vt_vit_forward(&v, &c->exec, pixels[i], n, h[i], w[i], work, &out);
        feats[i].hidden = stage;
    }
    r->kind->forward(r->conn, &c->exec, feats, n, c->plan.stages + c->plan.first, c->ids,
                     c->connw);
    c->n_run = n;
    c->ok = 1;
    return 0;
}

int vtok_recipe_run(vtok_recipe_ctx *c, const float *pixels, int64_t n, int64_t ch, int64_t h,
                    int64_t w)
{
    if (!c)
        return VTOK_EINVAL;
    c->ok = 0;
    c->st.code = 0;
    c->st.msg[0] = '\0';
    if (!pixels)
        return vt_fail(&c->st, VTOK_EINVAL, "no pixels");
    const float *px[VT_RECIPE_MAX_ENC];
    int64_t chs[VT_RECIPE_MAX_ENC], hs[VT_RECIPE_MAX_ENC], ws[VT_RECIPE_MAX_ENC];
    for (int i = 0; i < c->r->n_enc; i++) {
        px[i] = pixels;
        chs[i] = ch;
        hs[i] = h;
        ws[i] = w;
    }
    return run_all(c, px, n, chs, hs, ws);
}

int vtok_recipe_run_images(vtok_recipe_ctx *c, const vtok_image *images, int64_t n)
{
    if (!c)
        return VTOK_EINVAL;
    vt_recipe *r = c->r;
    vtok_status *st = &c->st;
    c->ok = 0;
    st->code = 0;
    st->msg[0] = '\0';
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
        int64_t h0 = 0, w0 = 0;
        for (int64_t k = 0; k < n; k++) {
            int64_t hh, ww;
            int rc = vtok_processor_output_size(e->proc, images[k].width, images[k].height, &hh,
                                                &ww, st);
            if (rc)
                return rc;
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
        int64_t per = 3 * h0 * w0, need;
        if (!vt_mul_ok(per, n, &need) || need > MAX_CTX_BYTES / 4)
            return vt_fail(st, VTOK_ELIMIT, "images too large");
        if (need > c->pix_floats[i]) {
            vt_free(c->pix[i]);
            c->pix_floats[i] = 0;
            if (!(c->pix[i] = vt_alloc((size_t)need * sizeof(float))))
                return vt_fail(st, VTOK_ENOMEM, "out of memory");
            c->pix_floats[i] = need;
        }
        for (int64_t k = 0; k < n; k++) {
            int rc = vtok_preprocess(e->proc, &images[k], c->pix[i] + k * per, per, st);
            if (rc)
                return rc;
        }
        px[i] = c->pix[i];
        chs[i] = 3;
        hs[i] = h0;
        ws[i] = w0;
    }
    return run_all(c, px, n, chs, hs, ws);
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

int vtok_recipe_detokenize(vtok_recipe_ctx *c, const int64_t *ids, int64_t n, int64_t per_image)
{
    if (!c)
        return VTOK_EINVAL;
    vt_recipe *r = c->r;
    vtok_status *st = &c->st;
    c->ok = 0;
    st->code = 0;
    st->msg[0] = '\0';
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
    if ((rc = plan_memory(c, 0, c->plan.max_tokens, c->plan.lp_rows, n)))
        return rc;
    if ((rc = r->kind->detok(r->conn, &c->exec, ids, n, per_image, c->plan.stages, c->connw, st)))
        return rc;
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
