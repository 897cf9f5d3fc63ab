/*
 * serve_batch.c - the dynamic batcher of `vtok serve` (serve_batch.h).
 *
 * The queue is one mutex-protected list, held only to add or take jobs: the
 * decoding and preprocessing happen on the request's own thread before
 * submit, the compute on a worker after the jobs are taken, and each job
 * signals its waiter through a mutex of its own. A batch closes when the
 * compatible jobs waiting hold max_batch images or the oldest has waited
 * max_wait_ms (the rule of Triton's dynamic batcher: max_queue_delay), so a
 * lone request waits at most max_wait_ms. Jobs run together only when they
 * can share one call: an encoder's jobs of one pixel size, a recipe's
 * embedding and tokenizing jobs (one run gives both); detokenizing runs
 * alone. A batch that fails is rerun job by job, so that one request's
 * images never fail another's.
 */
#include "serve_batch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sv_batcher {
    sv_batch_cfg    cfg;
    vtok_recipe_info ri;
    pthread_mutex_t mu;
    pthread_cond_t  cv;      /* a job arrived, or stop */
    sv_job         *head, *tail;
    int64_t         depth;   /* jobs in the queue */
    int             stop;
    int             n_workers;
    struct worker  *w;
};

typedef struct worker {
    sv_batcher      *b;
    pthread_t        th;
    int              started;
    vtok_ctx        *ctx;
    vtok_recipe_ctx *rctx;
    sv_job         **jobs;  /* room for max_batch jobs */
} worker;

void sv_job_init(sv_job *j)
{
    memset(j, 0, sizeof *j);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
}

void sv_job_clear(sv_job *j)
{
    free(j->out);
    free(j->rows);
    free(j->out_ids);
    j->out = NULL;
    j->rows = NULL;
    j->out_ids = NULL;
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
}

void sv_job_wait(sv_job *j)
{
    pthread_mutex_lock(&j->mu);
    while (!j->done)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

static void finish(sv_job *j)
{
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void fail_job(sv_job *j, int err, const char *msg)
{
    free(j->out);
    free(j->rows);
    free(j->out_ids);
    j->out = NULL;
    j->rows = NULL;
    j->out_ids = NULL;
    j->err = err ? err : VTOK_EINVAL;
    snprintf(j->msg, sizeof j->msg, "%s", msg && msg[0] ? msg : vtok_strerror(j->err));
}

/* Can b run in the same call as a? */
static int compatible(const sv_batcher *bt, const sv_job *a, const sv_job *b)
{
    if (a->kind == SV_JOB_DETOKENIZE || b->kind == SV_JOB_DETOKENIZE)
        return 0;
    if (bt->cfg.model)
        return a->ch == b->ch && a->h == b->h && a->w == b->w;
    return 1;
}

/* Copy image rows [first, first + n) of view v (batch first) into j. */
static int take_rows(sv_job *j, const vtok_view *v, int64_t first)
{
    if (v->n_dims < 2 || v->ne[0] < first + j->n) {
        fail_job(j, VTOK_ESHAPE, "unexpected output shape");
        return -1;
    }
    int64_t rows = 1, d = v->ne[v->n_dims - 1];
    for (int i = 1; i < v->n_dims - 1; i++) /* [n, a, b, d]: a * b rows of d */
        rows *= v->ne[i];
    j->d = d;
    j->out = malloc((size_t)(j->n * rows * d) * sizeof *j->out + 1);
    j->rows = malloc((size_t)j->n * sizeof *j->rows);
    if (!j->out || !j->rows) {
        fail_job(j, VTOK_ENOMEM, "out of memory");
        return -1;
    }
    memcpy(j->out, v->data + first * rows * d, (size_t)(j->n * rows * d) * sizeof *j->out);
    for (int64_t i = 0; i < j->n; i++)
        j->rows[i] = rows;
    return 0;
}

/* One vtok_encode over jobs[0..k) (same pixel size). 0, or the code with
 * *msg set (the jobs untouched). */
static int run_encoder(worker *w, sv_job **jobs, int k, const char **msg)
{
    int64_t n = 0;
    for (int i = 0; i < k; i++)
        n += jobs[i]->n;
    const int64_t ch = jobs[0]->ch, h = jobs[0]->h, wd = jobs[0]->w, per = ch * h * wd;
    float *px = NULL;
    const float *in = jobs[0]->pixels;
    if (k > 1) {
        if (!(px = malloc((size_t)(n * per) * sizeof *px))) {
            *msg = "out of memory";
            return VTOK_ENOMEM;
        }
        for (int i = 0, off = 0; i < k; off += (int)jobs[i]->n, i++)
            memcpy(px + off * per, jobs[i]->pixels, (size_t)(jobs[i]->n * per) * sizeof *px);
        in = px;
    }
    vtok_encode_params ep = vtok_encode_default_params();
    int rc = vtok_encode(w->ctx, in, n, ch, h, wd, &ep);
    free(px);
    if (rc) {
        *msg = vtok_ctx_errmsg(w->ctx);
        return rc;
    }
    vtok_view last;
    int64_t tokens = vtok_get_output(w->ctx, VTOK_OUT_LAST_HIDDEN, 0, &last) ? 0 : last.ne[1];
    for (int i = 0, off = 0; i < k; off += (int)jobs[i]->n, i++) {
        sv_job *j = jobs[i];
        vtok_view v;
        if (vtok_get_output(w->ctx, (vtok_output)j->output, 0, &v)) {
            fail_job(j, VTOK_EMISSING, "the model has no such output");
            continue;
        }
        if (take_rows(j, &v, off) == 0)
            j->tokens = tokens * j->n;
        j->batch_images = n;
    }
    return 0;
}

/* One recipe run over jobs[0..k) (or a detokenize job alone). */
static int run_recipe(worker *w, sv_job **jobs, int k, const char **msg)
{
    vtok_recipe_ctx *c = w->rctx;
    if (jobs[0]->kind == SV_JOB_DETOKENIZE) {
        sv_job *j = jobs[0];
        int rc = vtok_recipe_detokenize(c, j->ids, j->n, j->per);
        vtok_view v;
        if (!rc)
            rc = vtok_recipe_get_output(c, &v);
        if (rc) {
            *msg = vtok_recipe_ctx_errmsg(c);
            return rc;
        }
        if (take_rows(j, &v, 0) == 0)
            j->tokens = j->n * j->per;
        j->batch_images = j->n;
        return 0;
    }
    int64_t n = 0;
    for (int i = 0; i < k; i++)
        n += jobs[i]->n;
    vtok_image *imgs = malloc((size_t)n * sizeof *imgs);
    char (*names)[48] = malloc((size_t)n * sizeof *names);
    const char **np = malloc((size_t)n * sizeof *np);
    if (!imgs || !names || !np) {
        free(imgs);
        free(names);
        free(np);
        *msg = "out of memory";
        return VTOK_ENOMEM;
    }
    for (int i = 0, off = 0; i < k; off += (int)jobs[i]->n, i++)
        for (int64_t q = 0; q < jobs[i]->n; q++) {
            imgs[off + q] = jobs[i]->images[q]; /* shallow: the job keeps the pixels */
            snprintf(names[off + q], sizeof names[0], "input[%lld]", (long long)q);
            np[off + q] = names[off + q];
        }
    vtok_run_params rp = vtok_run_default_params();
    rp.image_names = np;
    int rc = vtok_recipe_run_images(c, imgs, n, &rp);
    free(imgs);
    if (rc) {
        free(names);
        free(np);
        *msg = vtok_recipe_ctx_errmsg(c);
        return rc;
    }
    free(names);
    free(np);
    const int64_t *ids = NULL;
    int64_t n_ids = 0, per = 0;
    int have_ids = vtok_recipe_get_ids(c, &ids, &n_ids, &per) == 0;
    for (int i = 0, off = 0; i < k; off += (int)jobs[i]->n, i++) {
        sv_job *j = jobs[i];
        j->batch_images = n;
        if (j->kind == SV_JOB_TOKENIZE) {
            if (!have_ids || n_ids < off + j->n) {
                fail_job(j, VTOK_EUNSUPPORTED, "the recipe gives no discrete ids");
                continue;
            }
            if (!(j->out_ids = malloc((size_t)(j->n * per) * sizeof *j->out_ids + 1))) {
                fail_job(j, VTOK_ENOMEM, "out of memory");
                continue;
            }
            memcpy(j->out_ids, ids + off * per, (size_t)(j->n * per) * sizeof *ids);
            j->out_per = per;
            j->tokens = j->n * per;
            continue;
        }
        /* embeddings: each image's [T_i, d] (ragged recipes give each its own T) */
        int64_t total = 0, d = 0;
        vtok_view v;
        int bad = 0;
        for (int64_t q = 0; q < j->n && !bad; q++) {
            if (vtok_recipe_get_image_output(c, off + q, &v) || v.n_dims != 2)
                bad = 1;
            else {
                total += v.ne[0];
                d = v.ne[1];
            }
        }
        if (bad) {
            fail_job(j, VTOK_ESHAPE, "cannot read the recipe's output");
            continue;
        }
        j->out = malloc((size_t)(total * d) * sizeof *j->out + 1);
        j->rows = malloc((size_t)j->n * sizeof *j->rows);
        if (!j->out || !j->rows) {
            fail_job(j, VTOK_ENOMEM, "out of memory");
            continue;
        }
        j->d = d;
        for (int64_t q = 0, at = 0; q < j->n; q++) {
            vtok_recipe_get_image_output(c, off + q, &v);
            memcpy(j->out + at * d, v.data, (size_t)(v.ne[0] * d) * sizeof *j->out);
            j->rows[q] = v.ne[0];
            at += v.ne[0];
        }
        j->tokens = total;
    }
    return 0;
}

static int run(worker *w, sv_job **jobs, int k, const char **msg)
{
    return w->b->cfg.model ? run_encoder(w, jobs, k, msg) : run_recipe(w, jobs, k, msg);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    sv_batcher *b = w->b;
    const int64_t cap = b->cfg.max_batch;
    sv_job **jobs = w->jobs;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->head && !b->stop)
            pthread_cond_wait(&b->cv, &b->mu);
        if (!b->head) /* stopping, nothing left */
            break;
        /* wait until compatible jobs fill a batch or the oldest has waited enough */
        for (;;) {
            sv_job *h = b->head;
            if (!h)
                break;
            int64_t have = 0;
            for (sv_job *j = h; j && have < cap; j = j->next)
                if (j == h || compatible(b, h, j))
                    have += j->n;
            double deadline = h->t_enq + b->cfg.max_wait_ms * 1e-3, now = sv_now();
            if (have >= cap || now >= deadline || b->stop || h->kind == SV_JOB_DETOKENIZE)
                break;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double dt = deadline - now, s = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec + dt;
            ts.tv_sec = (time_t)s;
            ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        }
        if (!b->head)
            continue; /* another worker took them */
        /* take the head and the compatible jobs that fit, in arrival order */
        int k = 0;
        int64_t n = 0;
        sv_job *h = b->head, *prev = NULL;
        for (sv_job *j = h; j;) {
            sv_job *next = j->next;
            int fits = j == h || (compatible(b, h, j) && n + j->n <= cap && k < cap);
            if (fits) {
                jobs[k++] = j;
                n += j->n;
                if (prev)
                    prev->next = next;
                else
                    b->head = next;
                if (b->tail == j)
                    b->tail = prev;
                b->depth--;
            } else
                prev = j;
            if (j->kind == SV_JOB_DETOKENIZE || n >= cap)
                break;
            j = next;
        }
        pthread_mutex_unlock(&b->mu);
        const char *msg = NULL;
        int rc = run(w, jobs, k, &msg);
        if (rc && k > 1) { /* rerun alone, so that each job gets its own answer */
            for (int i = 0; i < k; i++) {
                const char *m1 = NULL;
                int r1 = run(w, &jobs[i], 1, &m1);
                if (r1)
                    fail_job(jobs[i], r1, m1);
                else if (!jobs[i]->err)
                    sv_metrics_batch(b->cfg.metrics, jobs[i]->n);
            }
        } else if (rc)
            fail_job(jobs[0], rc, msg);
        else if (b->cfg.metrics)
            sv_metrics_batch(b->cfg.metrics, n);
        for (int i = 0; i < k; i++)
            finish(jobs[i]);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int64_t sv_batcher_depth(sv_batcher *b)
{
    pthread_mutex_lock(&b->mu);
    int64_t d = b->depth;
    pthread_mutex_unlock(&b->mu);
    return d;
}

int sv_batcher_submit(sv_batcher *b, sv_job *j)
{
    pthread_mutex_lock(&b->mu);
    int rc = b->stop ? SV_ESTOPPED : b->depth >= b->cfg.max_queue ? SV_EFULL : 0;
    if (!rc) {
        j->t_enq = sv_now();
        j->next = NULL;
        if (b->tail)
            b->tail->next = j;
        else
            b->head = j;
        b->tail = j;
        b->depth++;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

sv_batcher *sv_batcher_new(const sv_batch_cfg *cfg, char *err, size_t errlen)
{
    sv_batcher *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->cfg = *cfg;
    if (b->cfg.max_batch < 1)
        b->cfg.max_batch = 1;
    if (b->cfg.workers < 1)
        b->cfg.workers = 1;
    if (cfg->recipe)
        vtok_recipe_get_info(cfg->recipe, &b->ri);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->w = calloc((size_t)b->cfg.workers, sizeof *b->w);
    if (!b->w) {
        snprintf(err, errlen, "out of memory");
        sv_batcher_free(b);
        return NULL;
    }
    b->n_workers = b->cfg.workers;
    for (int i = 0; i < b->n_workers; i++) {
        worker *w = &b->w[i];
        w->b = b;
        if (!(w->jobs = malloc((size_t)b->cfg.max_batch * sizeof *w->jobs))) {
            snprintf(err, errlen, "out of memory");
            sv_batcher_free(b);
            return NULL;
        }
        vtok_status st = {0};
        vtok_ctx_params cp = vtok_ctx_default_params();
        cp.n_threads = cfg->threads;
        if (cfg->model ? !(w->ctx = vtok_ctx_new(cfg->model, &cp, &st))
                       : !(w->rctx = vtok_recipe_ctx_new(cfg->recipe, &cp, &st))) {
            snprintf(err, errlen, "%s", st.msg);
            sv_batcher_free(b);
            return NULL;
        }
        if (pthread_create(&w->th, NULL, worker_main, w)) {
            snprintf(err, errlen, "cannot start a worker thread: %s", strerror(errno));
            sv_batcher_free(b);
            return NULL;
        }
        w->started = 1;
    }
    return b;
}

void sv_batcher_free(sv_batcher *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->stop = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    for (int i = 0; i < b->n_workers; i++)
        if (b->w[i].started)
            pthread_join(b->w[i].th, NULL);
    /* jobs still queued (no worker ever started): answer them */
    for (sv_job *j = b->head, *next; j; j = next) {
        next = j->next;
        fail_job(j, VTOK_EABORTED, "the server is shutting down");
        finish(j);
    }
    for (int i = 0; i < b->n_workers; i++) {
        vtok_ctx_free(b->w[i].ctx);
        vtok_recipe_ctx_free(b->w[i].rctx);
        free(b->w[i].jobs);
    }
    free(b->w);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
}
