/*
 * gvt_blocks.c - run GVT's blocks (EVA towers, Perceiver resampler) on .npy
 * inputs for tests/blocks/gvt_parity.py.
 *
 *   gvt_blocks eva|perceiver --weights F --prefix P --config C.json
 *              --in X.npy --out Y.npy [--layers all|I,J,...] [--threads N] [--pack]
 *              [--time]
 *
 * eva:       X = pixels [n, 3, H, W]; Y = the last hidden state [n, T, d], or
 *            with --layers the chosen hidden states stacked [k, n, T, d]
 *            (0 = embeddings, i = output of block i).
 * perceiver: X = [n, t_in, dim]; Y = [n, num_latents, dim].
 * --pack packs every Linear for the active GEMM table first, as model
 * loading does, so the packed path is what runs. --time prints the forward
 * pass's wall time (loading excluded) to stderr.
 * Exit 0 on success; 1 with one line on stderr otherwise.
 */
#include "connectors/perceiver.h"
#include "models/eva.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct args {
    const char *kind, *weights, *prefix, *config, *in, *out, *layers;
    int         threads, pack, time;
} args;

static int usage(void)
{
    fprintf(stderr, "usage: gvt_blocks eva|perceiver --weights F --prefix P --config C.json "
                    "--in X.npy --out Y.npy [--layers all|I,J] [--threads N] [--pack] [--time]\n");
    return 1;
}

static int parse(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    a->prefix = "";
    a->threads = 1;
    if (argc < 2)
        return -1;
    a->kind = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--pack") || !strcmp(k, "--time")) {
            *(k[2] == 'p' ? &a->pack : &a->time) = 1;
            continue;
        }
        if (!v)
            return -1;
        if (!strcmp(k, "--weights")) a->weights = v;
        else if (!strcmp(k, "--prefix")) a->prefix = v;
        else if (!strcmp(k, "--config")) a->config = v;
        else if (!strcmp(k, "--in")) a->in = v;
        else if (!strcmp(k, "--out")) a->out = v;
        else if (!strcmp(k, "--layers")) a->layers = v;
        else if (!strcmp(k, "--threads")) a->threads = atoi(v);
        else return -1;
        i++;
    }
    return a->weights && a->in && a->out && a->threads > 0 ? 0 : -1;
}

/* Pack a list of Linears for the active table (a test copy of what model.c does). */
static float **pack_all(vt_linear **l, int64_t n)
{
    const vt_kernels *k = vt_kernels_get();
    float **blocks = calloc((size_t)(n ? n : 1), sizeof *blocks);
    if (!blocks || !k->gemm_packed_floats)
        return blocks;
    for (int64_t i = 0; i < n; i++) {
        blocks[i] = vt_alloc(k->gemm_packed_floats(l[i]->n_out, l[i]->n_in) * sizeof(float));
        if (!blocks[i])
            continue;
        k->gemm_pack_nk(l[i]->n_out, l[i]->n_in, l[i]->w, blocks[i]);
        l[i]->packed = blocks[i];
        l[i]->packed_by = k;
    }
    return blocks;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void report_time(const args *a, double t0)
{
    if (a->time)
        fprintf(stderr, "gvt_blocks: %s forward %.1f ms\n", a->kind, 1e3 * (now_s() - t0));
}

static int64_t vit_linears(vt_vit *v, vt_linear **out)
{
    int64_t n = 0;
    for (int64_t i = 0; i < v->n_layers; i++) {
        vt_vit_layer *L = &v->layers[i];
        vt_linear *c[] = {&L->q, &L->k, &L->v, &L->qkv, &L->o, &L->fc1, &L->fc1_up, &L->fc2};
        for (size_t j = 0; j < sizeof c / sizeof c[0]; j++)
            if (c[j]->w) {
                if (out)
                    out[n] = c[j];
                n++;
            }
    }
    return n;
}

static int64_t perceiver_linears(vt_perceiver *p, vt_linear **out)
{
    int64_t n = 0;
    for (int64_t i = 0; i < p->depth; i++) {
        vt_perceiver_layer *L = &p->layers[i];
        vt_linear *c[] = {&L->to_q, &L->to_kv, &L->to_out, &L->ff1, &L->ff2};
        for (size_t j = 0; j < sizeof c / sizeof c[0]; j++) {
            if (out)
                out[n] = c[j];
            n++;
        }
    }
    return n;
}

/* Parse --layers into sel[0..n_layers] flags; returns how many are chosen. */
static int64_t select_layers(const char *spec, int64_t n_layers, char *sel)
{
    memset(sel, 0, (size_t)(n_layers + 1));
    if (!strcmp(spec, "all")) {
        memset(sel, 1, (size_t)(n_layers + 1));
        return n_layers + 1;
    }
    int64_t k = 0;
    for (const char *s = spec; *s;) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > n_layers)
            return -1;
        if (!sel[v])
            k++;
        sel[v] = 1;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return k;
}

typedef struct run_state {
    vt_weights  *w;
    cJSON       *cfg;
    float       *x, *y, *mem;
    float      **packed;
    int64_t      n_packed;
    vt_pool     *pool;
} run_state;

static int run_eva(const args *a, run_state *r, const int64_t *shape, int nd, vtok_status *st)
{
    vt_vit v;
    vt_wsrc src = vt_wsrc_one(r->w, a->weights, a->prefix);
    vt_loader ld;
    vt_loader_init(&ld, &src, NULL, NULL, st);
    int rc = vt_eva_load(&v, &ld, r->cfg);
    if (rc || (rc = vt_loader_finish(&ld))) {
        vt_vit_free(&v);
        return rc;
    }
    if (nd != 4 || shape[1] != v.channels) {
        vt_vit_free(&v);
        return vt_fail(st, VTOK_ESHAPE, "--in must be [n, %lld, H, W]", (long long)v.channels);
    }
    int64_t n = shape[0], h = shape[2], wd = shape[3];
    int64_t T = vt_vit_tokens(&v, h, wd, st), d = v.d;
    if (!T) {
        vt_vit_free(&v);
        return st->code;
    }
    if (a->pack) {
        r->n_packed = vit_linears(&v, NULL);
        vt_linear **l = calloc((size_t)r->n_packed + 1, sizeof *l);
        vit_linears(&v, l);
        r->packed = pack_all(l, r->n_packed);
        free(l);
    }
    char *sel = calloc((size_t)v.n_layers + 1, 1);
    int64_t k = a->layers ? select_layers(a->layers, v.n_layers, sel) : 1;
    if (k <= 0) {
        free(sel);
        vt_vit_free(&v);
        return vt_fail(st, VTOK_EINVAL, "bad --layers '%s'", a->layers);
    }
    int64_t per = n * T * d, work = vt_vit_work_floats(&v, n, h, wd);
    int64_t scr = vt_exec_scratch_floats(T);
    r->mem = vt_alloc((size_t)(work + scr * a->threads + per * (k + 1)) * sizeof(float));
    float **hidden = calloc((size_t)v.n_layers + 1, sizeof *hidden);
    if (!r->mem || !hidden) {
        free(sel);
        free(hidden);
        vt_vit_free(&v);
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    }
    float *outs = r->mem + work + scr * a->threads, *last = outs + per * k;
    int64_t j = 0;
    for (int64_t i = 0; a->layers && i <= v.n_layers; i++)
        if (sel[i])
            hidden[i] = outs + per * j++;
    vt_exec e = {.pool = r->pool, .k = vt_kernels_get(), .scratch = r->mem + work,
                 .scratch_stride = scr};
    vt_vit_out o = {.last = last, .hidden = hidden};
    double t0 = now_s();
    vt_vit_forward(&v, &e, r->x, n, h, wd, r->mem, &o);
    report_time(a, t0);
    int64_t os[4] = {k, n, T, d};
    rc = a->layers ? vt_npy_write_f32(a->out, outs, 4, os, st)
                   : vt_npy_write_f32(a->out, last, 3, os + 1, st);
    free(sel);
    free(hidden);
    vt_vit_free(&v);
    return rc;
}

static int run_perceiver(const args *a, run_state *r, const int64_t *shape, int nd,
                         vtok_status *st)
{
    vt_perceiver p;
    vt_wsrc src = vt_wsrc_one(r->w, a->weights, a->prefix);
    vt_loader ld;
    vt_loader_init(&ld, &src, NULL, NULL, st);
    int rc = vt_perceiver_load(&p, &ld, "", r->cfg);
    if (rc || (rc = vt_loader_finish(&ld))) {
        vt_perceiver_free(&p);
        return rc;
    }
    if (nd != 3 || shape[2] != p.dim) {
        vt_perceiver_free(&p);
        return vt_fail(st, VTOK_ESHAPE, "--in must be [n, t, %lld]", (long long)p.dim);
    }
    int64_t n = shape[0], t = shape[1];
    if (a->pack) {
        r->n_packed = perceiver_linears(&p, NULL);
        vt_linear **l = calloc((size_t)r->n_packed + 1, sizeof *l);
        perceiver_linears(&p, l);
        r->packed = pack_all(l, r->n_packed);
        free(l);
    }
    int64_t work = vt_perceiver_work_floats(&p, n, t);
    int64_t scr = vt_exec_scratch_floats(vt_perceiver_max_tokens(&p, t));
    int64_t per = n * p.n_latents * p.dim;
    r->mem = vt_alloc((size_t)(work + scr * a->threads + per) * sizeof(float));
    if (!r->mem) {
        vt_perceiver_free(&p);
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    }
    vt_exec e = {.pool = r->pool, .k = vt_kernels_get(), .scratch = r->mem + work,
                 .scratch_stride = scr};
    float *out = r->mem + work + scr * a->threads;
    double t0 = now_s();
    vt_perceiver_forward(&p, &e, r->x, n, t, out, r->mem);
    report_time(a, t0);
    int64_t os[3] = {n, p.n_latents, p.dim};
    rc = vt_npy_write_f32(a->out, out, 3, os, st);
    vt_perceiver_free(&p);
    return rc;
}

int main(int argc, char **argv)
{
    args a;
    if (parse(argc, argv, &a))
        return usage();
    vtok_status st = {0};
    run_state r = {0};
    int rc = vt_weights_open(a.weights, 1, &r.w, &st);
    if (!rc && a.config) {
        char *text = NULL;
        size_t size = 0;
        rc = vt_read_file(a.config, 1 << 20, &text, &size, &st);
        if (!rc && !(r.cfg = cJSON_Parse(text)))
            rc = vt_fail(&st, VTOK_EFORMAT, "%s: not JSON", a.config);
        free(text);
    }
    int nd = 0;
    int64_t shape[VT_MAX_DIMS];
    if (!rc)
        rc = vt_npy_read_f32(a.in, &r.x, &nd, shape, &st);
    if (!rc && !(r.pool = vt_pool_new(a.threads)))
        rc = vt_fail(&st, VTOK_ENOMEM, "no thread pool");
    if (!rc) {
        if (!strcmp(a.kind, "eva"))
            rc = run_eva(&a, &r, shape, nd, &st);
        else if (!strcmp(a.kind, "perceiver"))
            rc = run_perceiver(&a, &r, shape, nd, &st);
        else
            rc = vt_fail(&st, VTOK_EINVAL, "unknown block '%s'", a.kind);
    }
    for (int64_t i = 0; r.packed && i < r.n_packed; i++)
        vt_free(r.packed[i]);
    free(r.packed);
    vt_pool_free(r.pool);
    vt_free(r.mem);
    vt_free(r.x);
    cJSON_Delete(r.cfg);
    vt_weights_close(r.w);
    if (rc) {
        fprintf(stderr, "gvt_blocks: %s\n", st.msg);
        return 1;
    }
    return 0;
}
