/*
 * seed_blocks.c - run one SEED connector block on .npy input (parity tests).
 *
 *   seed_blocks qformer|vq|argmin|detok --weights F [--prefix P] [--config C.json]
 *               --in X.npy --out Y.npy [--threads N]
 *
 *   qformer  X float [n, t_in, encoder_width]  -> Y float [n, n_query, hidden]
 *   vq       X float [n, t, hidden]            -> Y int64 [n, t]   (encode layer + argmin)
 *   argmin   X float [n, t, codebook_dim]      -> Y int64 [n, t]   (the quantiser alone)
 *   detok    X int64 [n, t]                    -> Y float [n, 77, proj_dim]
 *
 * The config file is the block's cJSON object (keys as in the block headers).
 * Errors: one line on stderr, exit status 1.
 */
#include "connectors/qformer.h"
#include "connectors/seed_detok.h"
#include "connectors/vq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *msg)
{
    fprintf(stderr, "seed_blocks: %s\n", msg);
    return 1;
}

typedef struct run {
    vt_exec  e;
    vt_pool *pool;
    float   *scratch, *work, *out;
    int64_t *ids;
} run;

static int exec_init(run *r, int threads, int64_t max_tokens)
{
    r->pool = vt_pool_new(threads);
    r->e.pool = r->pool;
    r->e.k = vt_kernels_get();
    r->e.scratch_stride = vt_exec_scratch_floats(max_tokens);
    r->scratch = vt_alloc((size_t)(threads * r->e.scratch_stride) * sizeof(float));
    r->e.scratch = r->scratch;
    return r->pool && r->scratch ? 0 : -1;
}

static void run_free(run *r)
{
    vt_pool_free(r->pool);
    vt_free(r->scratch);
    vt_free(r->work);
    vt_free(r->out);
    vt_free(r->ids);
}

static void *alloc_floats(int64_t n)
{
    return vt_alloc((size_t)(n > 0 ? n : 1) * sizeof(float));
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return die("usage: seed_blocks qformer|vq|argmin|detok --weights F [--prefix P] "
                   "[--config C.json] --in X.npy --out Y.npy [--threads N]");
    const char *mode = argv[1], *wpath = NULL, *prefix = "", *cpath = NULL, *in = NULL,
               *outp = NULL;
    int threads = 1;
    for (int i = 2; i < argc; i += 2) { /* option, value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return die("missing value after the last option");
        if (!strcmp(a, "--weights")) wpath = v;
        else if (!strcmp(a, "--prefix")) prefix = v;
        else if (!strcmp(a, "--config")) cpath = v;
        else if (!strcmp(a, "--in")) in = v;
        else if (!strcmp(a, "--out")) outp = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else return die("unknown option");
    }
    if (!wpath || !in || !outp || threads < 1)
        return die("--weights, --in and --out are required (and --threads >= 1)");

    vtok_status st = {0};
    cJSON *cfg = NULL;
    if (cpath) {
        char *text = NULL;
        size_t len = 0;
        if (vt_read_file(cpath, 1 << 20, &text, &len, &st))
            return die(st.msg);
        cfg = cJSON_ParseWithLength(text, len);
        free(text);
        if (!cJSON_IsObject(cfg)) {
            cJSON_Delete(cfg);
            return die("config is not a JSON object");
        }
    }
    vt_weights *w = NULL;
    vt_loader ld;
    vt_wsrc src;
    if (vt_weights_open(wpath, 1, &w, &st)) {
        cJSON_Delete(cfg);
        return die(st.msg);
    }
    src = vt_wsrc_one(w, wpath, prefix);
    vt_loader_init(&ld, &src, NULL, NULL, &st);

    int rc = 0;
    run r = {0};
    int nd = 0;
    int64_t sh[VT_MAX_DIMS];
    float *x = NULL;
    int64_t *xi = NULL;
    if (!strcmp(mode, "qformer")) {
        vt_qformer q;
        if ((rc = vt_qformer_load(&q, &ld, cfg)) || (rc = vt_loader_finish(&ld)) ||
            (rc = vt_npy_read_f32(in, &x, &nd, sh, &st)))
            goto done_q;
        if (nd != 3 || sh[2] != q.enc_width) {
            rc = vt_fail(&st, VTOK_ESHAPE, "input must be [n, t, %lld]", (long long)q.enc_width);
            goto done_q;
        }
        int64_t n = sh[0], t = sh[1];
        if (exec_init(&r, threads, vt_qformer_max_tokens(&q, t)) ||
            !(r.work = alloc_floats(vt_qformer_work_floats(&q, n, t))) ||
            !(r.out = alloc_floats(n * q.n_query * q.d))) {
            rc = vt_fail(&st, VTOK_ENOMEM, "out of memory");
            goto done_q;
        }
        vt_qformer_forward(&q, &r.e, x, n, t, r.out, r.work);
        int64_t os[3] = {n, q.n_query, q.d};
        rc = vt_npy_write_f32(outp, r.out, 3, os, &st);
    done_q:
        vt_qformer_free(&q);
    } else if (!strcmp(mode, "vq") || !strcmp(mode, "argmin")) {
        int full = !strcmp(mode, "vq");
        vt_vq q;
        if ((rc = vt_vq_load(&q, &ld, cfg)) || (rc = vt_loader_finish(&ld)) ||
            (rc = vt_npy_read_f32(in, &x, &nd, sh, &st)))
            goto done_v;
        int64_t width = full ? q.d : q.e_dim;
        if (nd != 3 || sh[2] != width) {
            rc = vt_fail(&st, VTOK_ESHAPE, "input must be [n, t, %lld]", (long long)width);
            goto done_v;
        }
        int64_t n = sh[0], t = sh[1];
        if (exec_init(&r, threads, 1) ||
            !(r.work = alloc_floats(vt_vq_work_floats(&q, n, t))) ||
            !(r.ids = vt_alloc((size_t)(n * t > 0 ? n * t : 1) * sizeof(int64_t)))) {
            rc = vt_fail(&st, VTOK_ENOMEM, "out of memory");
            goto done_v;
        }
        if (full)
            vt_vq_forward(&q, &r.e, x, n, t, r.ids, NULL, r.work);
        else
            vt_vq_argmin(&q, &r.e, x, n * t, r.ids);
        int64_t os[2] = {n, t};
        rc = vt_npy_write_i64(outp, r.ids, 2, os, &st);
    done_v:
        vt_vq_free(&q);
    } else if (!strcmp(mode, "detok")) {
        vt_seed_detok s;
        if ((rc = vt_seed_detok_load(&s, &ld, cfg)) || (rc = vt_loader_finish(&ld)) ||
            (rc = vt_npy_read_i64(in, &xi, &nd, sh, &st)))
            goto done_d;
        if (nd != 2) {
            rc = vt_fail(&st, VTOK_ESHAPE, "input must be int64 ids [n, t]");
            goto done_d;
        }
        int64_t n = sh[0], t = sh[1];
        if (t != s.n_tok) {
            rc = vt_fail(&st, VTOK_ESHAPE, "input has %lld tokens per item, expected %lld",
                         (long long)t, (long long)s.n_tok);
            goto done_d;
        }
        if (exec_init(&r, threads, vt_seed_detok_max_tokens(&s, t)) ||
            !(r.work = alloc_floats(vt_seed_detok_work_floats(&s, n, t))) ||
            !(r.out = alloc_floats(n * s.rq.n_query * s.proj_dim))) {
            rc = vt_fail(&st, VTOK_ENOMEM, "out of memory");
            goto done_d;
        }
        if ((rc = vt_seed_detok_forward(&s, &r.e, xi, n, t, r.out, r.work, &st)))
            goto done_d;
        int64_t os[3] = {n, s.rq.n_query, s.proj_dim};
        rc = vt_npy_write_f32(outp, r.out, 3, os, &st);
    done_d:
        vt_seed_detok_free(&s);
    } else {
        rc = vt_fail(&st, VTOK_EINVAL, "unknown block '%s'", mode);
    }
    run_free(&r);
    vt_free(x);
    vt_free(xi);
    vt_weights_close(w);
    cJSON_Delete(cfg);
    return rc ? die(st.msg) : 0;
}
