/*
 * test_api.c - the public API as a server, a batch runner or Python bindings
 * use it, on the tiny models committed under models/ (run from the source
 * root): contexts on several threads sharing one model and one thread pool,
 * results against a one-thread run, abort / progress / log callbacks, the
 * memory limit, params of an older (smaller) or newer (larger) size, loading
 * from memory, run params of recipes, vtok_preprocess_batch.
 *
 * Only vtok.h is used. Built also under ThreadSanitizer (make test-tsan),
 * which must report nothing.
 */
#include "vtok.h"

#include "unit/check.h"

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define MODEL  "models/tiny-clip"
#define LLAVA  "models/tiny-llava"
#define IMAGE  "models/sample.jpg"
#define N      2
#define S      64
#define ITERS  3

/* Every output of one encode, copied out of the context. */
typedef struct {
    float  *last, *pooler, *embeds, *hidden;
    int64_t n_last, n_pooler, n_embeds, n_hidden;
} result;

static float pixels[N * 3 * S * S];
static int   n_layers;

static void fill_pixels(void)
{
    uint32_t r = 12345;
    for (size_t i = 0; i < sizeof pixels / sizeof pixels[0]; i++) {
        r = r * 1664525u + 1013904223u;
        pixels[i] = (float)(r >> 8) / 16777216.0f * 4.0f - 2.0f;
    }
}

static int64_t numel(const vtok_view *v)
{
    int64_t n = 1;
    for (int d = 0; d < v->n_dims; d++)
        n *= v->ne[d];
    return n;
}

static float *copy_view(const vtok_view *v, int64_t *n)
{
    *n = numel(v);
    float *p = malloc((size_t)*n * sizeof *p);
    if (p)
        memcpy(p, v->data, (size_t)*n * sizeof *p);
    return p;
}

static void result_free(result *r)
{
    free(r->last);
    free(r->pooler);
    free(r->embeds);
    free(r->hidden);
    memset(r, 0, sizeof *r);
}

/* Encode `pixels` on ctx keeping every hidden state; 0 or the error code. */
static int encode(vtok_ctx *ctx, result *out)
{
    vtok_encode_params ep = vtok_encode_default_params();
    ep.all_layers = 1;
    int rc = vtok_encode(ctx, pixels, N, 3, S, S, &ep);
    if (rc)
        return rc;
    vtok_view v;
    memset(out, 0, sizeof *out);
    if (vtok_get_output(ctx, VTOK_OUT_LAST_HIDDEN, 0, &v) == 0)
        out->last = copy_view(&v, &out->n_last);
    if (vtok_get_output(ctx, VTOK_OUT_POOLER, 0, &v) == 0)
        out->pooler = copy_view(&v, &out->n_pooler);
    if (vtok_get_output(ctx, VTOK_OUT_IMAGE_EMBEDS, 0, &v) == 0)
        out->embeds = copy_view(&v, &out->n_embeds);
    if (vtok_get_output(ctx, VTOK_OUT_HIDDEN_STATE, n_layers / 2, &v) == 0)
        out->hidden = copy_view(&v, &out->n_hidden);
    return 0;
}

/* max |a - b| / max |b| over one output (0 when identical), or INFINITY for
 * a size mismatch or missing output. */
static double rel_diff(const float *a, int64_t na, const float *b, int64_t nb)
{
    if (!a || !b || na != nb)
        return INFINITY;
    double d = 0, m = 0;
    for (int64_t i = 0; i < na; i++) {
        double x = fabs((double)a[i] - b[i]);
        d = x > d ? x : d;
        m = fabs((double)b[i]) > m ? fabs((double)b[i]) : m;
    }
    return m > 0 ? d / m : d;
}

static double result_diff(const result *a, const result *b)
{
    double d = rel_diff(a->last, a->n_last, b->last, b->n_last), x;
    if ((x = rel_diff(a->pooler, a->n_pooler, b->pooler, b->n_pooler)) > d)
        d = x;
    if ((x = rel_diff(a->embeds, a->n_embeds, b->embeds, b->n_embeds)) > d)
        d = x;
    if ((x = rel_diff(a->hidden, a->n_hidden, b->hidden, b->n_hidden)) > d)
        d = x;
    return d;
}

static int result_same_bits(const result *a, const result *b)
{
    return a->n_last == b->n_last && a->n_pooler == b->n_pooler &&
           a->n_embeds == b->n_embeds && a->n_hidden == b->n_hidden && a->last && b->last &&
           !memcmp(a->last, b->last, (size_t)a->n_last * 4) &&
           !memcmp(a->pooler, b->pooler, (size_t)a->n_pooler * 4) &&
           !memcmp(a->embeds, b->embeds, (size_t)a->n_embeds * 4) &&
           !memcmp(a->hidden, b->hidden, (size_t)a->n_hidden * 4);
}

static result ref; /* one thread, own pool */

/* ---- contexts on threads ---- */

typedef struct {
    vtok_model      *m;
    vtok_threadpool *tp;       /* borrow this pool, or NULL: own pool of n_threads */
    int              n_threads;
    int              n_ctx;    /* contexts this thread alternates between */
    int              failures; /* runs whose outputs differ from ref       */
    int              errors;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    vtok_ctx *ctx[2] = {NULL, NULL};
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = w->n_threads;
    cp.threadpool = w->tp;
    for (int i = 0; i < w->n_ctx; i++)
        if (!(ctx[i] = vtok_ctx_new(w->m, &cp, NULL)))
            w->errors++;
    for (int it = 0; it < ITERS && !w->errors; it++)
        for (int i = 0; i < w->n_ctx; i++) {
            result r;
            if (encode(ctx[i], &r)) {
                w->errors++;
                continue;
            }
            w->failures += !result_same_bits(&r, &ref);
            result_free(&r);
        }
    for (int i = 0; i < w->n_ctx; i++)
        vtok_ctx_free(ctx[i]);
    return NULL;
}

static void run_workers(vtok_model *m, vtok_threadpool *tp, int n_threads, int n_ctx,
                        const char *what)
{
    pthread_t th[2];
    worker w[2];
    for (int i = 0; i < 2; i++) {
        w[i] = (worker){.m = m, .tp = tp, .n_threads = n_threads, .n_ctx = n_ctx};
        CHECK(pthread_create(&th[i], NULL, worker_main, &w[i]) == 0, "%s: thread %d", what, i);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK(w[i].errors == 0, "%s: thread %d had %d failed encodes", what, i, w[i].errors);
        CHECK(w[i].failures == 0, "%s: thread %d: %d of %d runs differ from the one-thread run",
              what, i, w[i].failures, ITERS * n_ctx);
    }
}

/* ---- callbacks ---- */

typedef struct {
    int     polls, abort_at;      /* abort_cb returns 1 from poll abort_at on (0: never) */
    int     n_progress, bad_progress;
    int64_t last_done, total;
    int     n_log[4];
    char    last_error[512];
} cb_state;

static int on_abort(void *user)
{
    cb_state *s = user;
    s->polls++;
    return s->abort_at > 0 && s->polls >= s->abort_at;
}

static void on_progress(void *user, int64_t done, int64_t total)
{
    cb_state *s = user;
    if (done != s->last_done + 1 || (s->total && total != s->total) || done > total)
        s->bad_progress++;
    s->n_progress++;
    s->last_done = done;
    s->total = total;
}

static void on_log(void *user, int level, const char *msg)
{
    cb_state *s = user;
    if (level >= 0 && level < 4)
        s->n_log[level]++;
    if (level == VTOK_LOG_ERROR)
        snprintf(s->last_error, sizeof s->last_error, "%s", msg);
}

static void reset_run(cb_state *s)
{
    s->polls = 0;
    s->n_progress = s->bad_progress = 0;
    s->last_done = s->total = 0;
}

static vtok_ctx_params cb_params(cb_state *s)
{
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = 2;
    cp.abort_cb = on_abort;
    cp.progress_cb = on_progress;
    cp.log_cb = on_log;
    cp.user = s;
    return cp;
}

static void test_callbacks(vtok_model *m)
{
    cb_state s = {0};
    vtok_ctx_params cp = cb_params(&s);
    vtok_ctx *ctx = vtok_ctx_new(m, &cp, NULL);
    CHECK(ctx != NULL, "context with callbacks");
    if (!ctx)
        return;
    CHECK(s.n_log[VTOK_LOG_INFO] >= 1, "an info line at context creation");

    /* progress: 1, 2, ..., total = blocks + 1 */
    result r;
    CHECK(encode(ctx, &r) == 0, "encode with callbacks: %s", vtok_ctx_errmsg(ctx));
    CHECK(s.bad_progress == 0, "progress monotonic by one");
    CHECK(s.total == n_layers + 1 && s.last_done == s.total && s.n_progress == s.total,
          "progress ends at total: %lld of %lld in %d calls", (long long)s.last_done,
          (long long)s.total, s.n_progress);
    CHECK(s.polls == n_layers + 1, "abort polled before each step (%d polls)", s.polls);
    CHECK(result_same_bits(&r, &ref), "callbacks do not change results");
    result_free(&r);

    /* abort on the 3rd poll: two steps done, then VTOK_EABORTED */
    for (int at = 1; at <= 3; at += 2) {
        reset_run(&s);
        s.abort_at = at;
        int rc = encode(ctx, &r);
        CHECK(rc == VTOK_EABORTED, "abort at poll %d: %d (%s)", at, rc, vtok_strerror(rc));
        CHECK(strstr(vtok_ctx_errmsg(ctx), "abort") != NULL, "abort message: %s",
              vtok_ctx_errmsg(ctx));
        CHECK(s.polls == at, "no poll after the abort (%d)", s.polls);
        CHECK(s.n_progress == at - 1, "steps before the abort: %d", s.n_progress);
        vtok_view v;
        CHECK(vtok_get_output(ctx, VTOK_OUT_LAST_HIDDEN, 0, &v) != 0, "no output after abort");
        CHECK(strstr(s.last_error, "abort") != NULL, "abort logged as error: %s", s.last_error);
    }
    /* the context is fine afterwards */
    reset_run(&s);
    s.abort_at = 0;
    CHECK(encode(ctx, &r) == 0, "encode after an abort");
    CHECK(result_same_bits(&r, &ref), "encode after an abort equals the reference");
    result_free(&r);
    CHECK(strcmp(vtok_strerror(VTOK_EABORTED), "unknown error") != 0, "EABORTED has a name");
    vtok_ctx_free(ctx);
}

static void test_mem_limit(vtok_model *m)
{
    cb_state s = {0};
    vtok_ctx_params cp = cb_params(&s);
    cp.mem_limit = 100000;
    vtok_ctx *ctx = vtok_ctx_new(m, &cp, NULL);
    CHECK(ctx != NULL, "context with a memory limit");
    if (!ctx)
        return;
    result r;
    int rc = encode(ctx, &r);
    CHECK(rc == VTOK_ELIMIT, "over the memory limit: %d", rc);
    CHECK(strstr(vtok_ctx_errmsg(ctx), "100000 bytes") != NULL, "message names the limit: %s",
          vtok_ctx_errmsg(ctx));
    CHECK(s.n_log[VTOK_LOG_ERROR] == 1 && !strcmp(s.last_error, vtok_ctx_errmsg(ctx)),
          "the failure logged once, as errmsg: %s", s.last_error);
    vtok_ctx_free(ctx);

    cp.mem_limit = (int64_t)64 << 20; /* enough */
    ctx = vtok_ctx_new(m, &cp, NULL);
    CHECK(ctx && encode(ctx, &r) == 0, "under the memory limit");
    if (ctx) {
        CHECK(result_same_bits(&r, &ref), "a limit that fits changes nothing");
        result_free(&r);
    }
    vtok_ctx_free(ctx);
    cp.mem_limit = -1;
    vtok_status st = {0};
    CHECK(vtok_ctx_new(m, &cp, &st) == NULL && st.code == VTOK_EINVAL, "negative limit refused");
}

/* Params of an older vtok.h (smaller size), of a newer one (larger), or zeroed. */
static void test_params_abi(vtok_model *m)
{
    vtok_status st = {0};
    vtok_ctx_params cp = vtok_ctx_default_params();
    CHECK(cp.size == sizeof cp, "default params carry their size");
    /* an "old" caller knew only n_threads: mem_limit lies beyond its size */
    cp.size = offsetof(vtok_ctx_params, threadpool);
    cp.n_threads = 1;
    cp.mem_limit = 16; /* would refuse every run if it were read */
    vtok_ctx *ctx = vtok_ctx_new(m, &cp, &st);
    CHECK(ctx != NULL, "smaller size accepted: %s", st.msg);
    result r;
    if (ctx) {
        int rc = encode(ctx, &r);
        CHECK(rc == 0, "fields past an old size are ignored: %s", vtok_ctx_errmsg(ctx));
        if (!rc) {
            CHECK(result_same_bits(&r, &ref), "old-size params give the same result");
            result_free(&r);
        }
        vtok_ctx_free(ctx);
    }
    /* a "newer" caller: bytes the library does not know */
    struct { vtok_ctx_params p; uint64_t future; } big;
    memset(&big, 0, sizeof big);
    vtok_ctx_params_init(&big.p, sizeof big);
    CHECK(big.p.size == sizeof big && big.p.n_threads == 0, "init of a larger struct");
    big.p.n_threads = 1;
    ctx = vtok_ctx_new(m, &big.p, &st);
    CHECK(ctx != NULL, "larger size with zero tail accepted: %s", st.msg);
    vtok_ctx_free(ctx);
    big.future = 7;
    st.code = 0;
    CHECK(vtok_ctx_new(m, &big.p, &st) == NULL && st.code == VTOK_EUNSUPPORTED,
          "unknown nonzero field refused: %d %s", st.code, st.msg);
    vtok_ctx_params zero;
    memset(&zero, 0, sizeof zero);
    CHECK(vtok_ctx_new(m, &zero, &st) == NULL && st.code == VTOK_EINVAL,
          "size 0 refused: %s", st.msg);
    /* encode params of an old size: only all_layers known */
    ctx = vtok_ctx_new(m, NULL, &st);
    if (ctx) {
        vtok_encode_params ep = vtok_encode_default_params();
        ep.size = offsetof(vtok_encode_params, n_layers);
        ep.n_layers = 1;
        ep.layers = NULL; /* would be refused ("layers is NULL") if read */
        CHECK(vtok_encode(ctx, pixels, N, 3, S, S, &ep) == 0, "old encode params: %s",
              vtok_ctx_errmsg(ctx));
        vtok_ctx_free(ctx);
    }
    vtok_model_params mp = vtok_model_default_params();
    mp.size = 0;
    CHECK(vtok_model_load(MODEL, &mp, &st) == NULL && st.code == VTOK_EINVAL,
          "model params size 0 refused");
    vtok_image_params ip;
    memset(&ip, 0, sizeof ip);
    vtok_image img;
    CHECK(vtok_image_load(IMAGE, &ip, &img, &st) == VTOK_EINVAL, "zeroed image params refused");
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = len > 0 ? malloc((size_t)len) : NULL;
    if (p && fread(p, 1, (size_t)len, f) != (size_t)len) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *n = p ? (size_t)len : 0;
    return p;
}

static void test_load_from_memory(void)
{
    size_t nw = 0, nc = 0;
    char *w = read_all(MODEL "/model.safetensors", &nw);
    char *c = read_all(MODEL "/config.json", &nc);
    CHECK(w && c, "read the tiny model");
    vtok_status st = {0};
    vtok_model_params mp = vtok_model_default_params();
    mp.n_threads = 1;
    vtok_model *m = w && c ? vtok_model_load_from_memory(w, nw, c, nc, &mp, &st) : NULL;
    CHECK(m != NULL, "load from memory: %s", st.msg);
    if (m) {
        vtok_ctx_params cp = vtok_ctx_default_params();
        cp.n_threads = 1;
        vtok_ctx *ctx = vtok_ctx_new(m, &cp, &st);
        result r;
        CHECK(ctx && encode(ctx, &r) == 0, "encode a model loaded from memory");
        if (ctx) {
            CHECK(result_same_bits(&r, &ref), "from memory == from file");
            result_free(&r);
        }
        vtok_ctx_free(ctx);
        vtok_model_free(m);
    }
    CHECK(vtok_model_load_from_memory(w, nw, "{", 1, NULL, &st) == NULL &&
          st.code == VTOK_EFORMAT, "bad config in memory refused: %s", st.msg);
    CHECK(vtok_model_load_from_memory(w, 100, c, nc, NULL, &st) == NULL && st.code < 0,
          "truncated weights refused: %s", st.msg);
    free(w);
    free(c);
}

static void test_preprocess_batch(void)
{
    vtok_status st = {0};
    vtok_processor *p = vtok_processor_load(MODEL, &st);
    CHECK(p != NULL, "processor: %s", st.msg);
    if (!p)
        return;
    const char *paths[2] = {IMAGE, IMAGE};
    float *px = NULL;
    int64_t shape[4] = {0};
    int rc = vtok_preprocess_batch(p, paths, NULL, 2, NULL, &px, shape, &st);
    CHECK(rc == 0 && shape[0] == 2 && shape[1] == 3 && shape[2] == S && shape[3] == S,
          "batch of files: %s", st.msg);
    vtok_image img;
    CHECK(vtok_image_load(IMAGE, NULL, &img, &st) == 0, "load %s", IMAGE);
    float *one = malloc(3 * S * S * sizeof *one);
    CHECK(one && vtok_preprocess(p, &img, one, 3 * S * S, &st) == 0, "one image");
    if (!rc && one) {
        CHECK(!memcmp(px, one, 3 * S * S * 4) && !memcmp(px + 3 * S * S, one, 3 * S * S * 4),
              "each slot equals vtok_preprocess of the image");
        vtok_image imgs[2] = {img, img};
        float *px2 = NULL;
        int64_t shape2[4];
        CHECK(vtok_preprocess_batch(p, NULL, imgs, 2, NULL, &px2, shape2, &st) == 0 &&
              !memcmp(px2, px, 2 * 3 * S * S * 4), "batch of decoded images == batch of files");
        vtok_free(px2);
    }
    float *px4 = NULL;
    CHECK(vtok_preprocess_batch(p, paths, &img, 2, NULL, &px4, shape, &st) == VTOK_EINVAL &&
          px4 == NULL, "paths and images together refused");
    const char *missing[2] = {IMAGE, "models/no-such-image.jpg"};
    float *px3 = NULL;
    CHECK(vtok_preprocess_batch(p, missing, NULL, 2, NULL, &px3, shape, &st) == VTOK_EIO &&
          px3 == NULL, "a missing file fails the batch: %s", st.msg);
    free(one);
    vtok_free(px);
    vtok_image_free(&img);
    vtok_processor_free(p);
}

/* Recipes: run params (prompt, conditioning), progress and abort. */
static void test_recipe(vtok_threadpool *tp)
{
    vtok_status st = {0};
    vtok_recipe_params rp = vtok_recipe_default_params();
    rp.threadpool = tp;
    vtok_recipe *r = vtok_recipe_load("llava-1.5", LLAVA, &rp, &st);
    CHECK(r != NULL, "recipe: %s", st.msg);
    if (!r)
        return;
    vtok_image img;
    CHECK(vtok_image_load(IMAGE, NULL, &img, &st) == 0, "image");
    cb_state s = {0};
    vtok_ctx_params cp = cb_params(&s);
    cp.threadpool = tp;
    vtok_recipe_ctx *c = vtok_recipe_ctx_new(r, &cp, &st);
    CHECK(c != NULL, "recipe context on a shared pool: %s", st.msg);
    if (!c)
        goto out;
    vtok_view v;
    CHECK(vtok_recipe_run_images(c, &img, 1, NULL) == 0, "run: %s", vtok_recipe_ctx_errmsg(c));
    CHECK(vtok_recipe_get_output(c, &v) == 0, "output");
    int64_t n0 = numel(&v);
    float *base = malloc((size_t)n0 * sizeof *base);
    if (base)
        memcpy(base, v.data, (size_t)n0 * sizeof *base);
    CHECK(s.bad_progress == 0 && s.total > 1 && s.last_done == s.total,
          "recipe progress %lld of %lld", (long long)s.last_done, (long long)s.total);
    int64_t total = s.total;
    {
        /* per-image views of the same tokens (the ragged-run accessor) */
        vtok_view iv;
        CHECK(vtok_recipe_get_image_output(c, 0, &iv) == 0 && iv.n_dims == 2 &&
                  iv.ne[0] == v.ne[1] && iv.ne[1] == v.ne[2] && iv.data == v.data,
              "image 0 output [%lld, %lld]", (long long)iv.ne[0], (long long)iv.ne[1]);
        CHECK(vtok_recipe_get_image_output(c, 1, &iv) == VTOK_EINVAL &&
                  vtok_recipe_get_image_output(c, -1, &iv) == VTOK_EINVAL,
              "image index out of range refused");
    }

    float cond[4] = {1, 2, 3, 4};
    vtok_run_params run = vtok_run_default_params();
    run.prompt = "Describe the image. \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    run.cond = cond;
    run.n_cond = 4;
    reset_run(&s);
    CHECK(vtok_recipe_run_images(c, &img, 1, &run) == 0, "run with a prompt: %s",
          vtok_recipe_ctx_errmsg(c));
    CHECK(vtok_recipe_get_output(c, &v) == 0 && numel(&v) == n0 && base &&
          !memcmp(v.data, base, (size_t)n0 * 4), "no recipe reads the prompt yet: same tokens");
    const char *bad[] = {"\xff", "abc\xc3", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80"};
    for (int i = 0; i < 5; i++) {
        run.prompt = bad[i];
        CHECK(vtok_recipe_run_images(c, &img, 1, &run) == VTOK_EINVAL, "invalid UTF-8 %d", i);
    }
    run.prompt = NULL;
    run.cond = NULL;
    CHECK(vtok_recipe_run_images(c, &img, 1, &run) == VTOK_EINVAL, "cond NULL with n_cond 4");

    /* same_images: refused after a failed run; after a good one the
     * encoders are skipped (one progress step: the connector) and the
     * tokens are the same */
    run = vtok_run_default_params();
    run.same_images = 1;
    CHECK(vtok_recipe_run_images(c, &img, 1, &run) == VTOK_EINVAL &&
          strstr(vtok_recipe_ctx_errmsg(c), "same_images"), "same_images after a failed run: %s",
          vtok_recipe_ctx_errmsg(c));
    CHECK(vtok_recipe_run_images(c, &img, 1, NULL) == 0, "run again");
    reset_run(&s);
    CHECK(vtok_recipe_run_images(c, &img, 1, &run) == 0, "same_images: %s",
          vtok_recipe_ctx_errmsg(c));
    CHECK(s.total == 1 && s.last_done == 1, "same_images runs the connector only (%lld steps)",
          (long long)s.total);
    CHECK(vtok_recipe_get_output(c, &v) == 0 && numel(&v) == n0 && base &&
          !memcmp(v.data, base, (size_t)n0 * 4), "same_images: same tokens");

    /* abort just before the connector: every encoder step done */
    reset_run(&s);
    s.abort_at = (int)total;
    CHECK(vtok_recipe_run_images(c, &img, 1, NULL) == VTOK_EABORTED, "recipe abort: %s",
          vtok_recipe_ctx_errmsg(c));
    CHECK(s.n_progress == total - 1, "aborted before the connector (%d steps)", s.n_progress);
    CHECK(vtok_recipe_get_output(c, &v) != 0, "no output after abort");

    /* memory limit */
    vtok_recipe_ctx_free(c);
    s.abort_at = 0;
    cp.mem_limit = 4096;
    c = vtok_recipe_ctx_new(r, &cp, &st);
    CHECK(c && vtok_recipe_run_images(c, &img, 1, NULL) == VTOK_ELIMIT &&
          strstr(vtok_recipe_ctx_errmsg(c), "4096 bytes"), "recipe memory limit: %s",
          c ? vtok_recipe_ctx_errmsg(c) : "");
    free(base);
out:
    vtok_recipe_ctx_free(c);
    vtok_image_free(&img);
    vtok_recipe_free(r);
}

/* CLIP's text tokenizer sizes with ids NULL and cap 0, then fills. */
static void test_text_tokenize(void)
{
    vtok_status st = {0};
    vtok_text_model *t = vtok_text_model_load("models/shapes/clip", NULL, &st);
    CHECK(t != NULL, "CLIP text tower: %s", st.msg);
    if (!t)
        return;
    int64_t n = vtok_text_tokenize(t, "a red circle", 1, NULL, 0, &st);
    int32_t ids[80] = {0};
    int64_t n2 = n > 0 && n <= 80 ? vtok_text_tokenize(t, "a red circle", 1, ids, 80, &st) : -1;
    CHECK(n > 2 && n2 == n && ids[0] != ids[n - 1], "text tokenize: size %lld, then %lld ids",
          (long long)n, (long long)n2);
    vtok_text_model_free(t);
}

/* vtok_llm_eval_reuse: what a context holds (prompt, generated ids) is
 * kept for a longer prompt that starts the same, and the logits equal a
 * fresh context's; truncation, embedding rows (same_embeds) and bad calls. */
static void test_eval_reuse(void)
{
    vtok_status st = {0};
    vtok_llm *m = vtok_llm_load("models/shapes/llava/llm", NULL, &st);
    CHECK(m != NULL, "LLM: %s", st.msg);
    if (!m)
        return;
    vtok_llm_info li;
    vtok_llm_get_info(m, &li);
    vtok_llm_ctx *c = vtok_llm_ctx_new(m, 256, NULL, &st), *f = vtok_llm_ctx_new(m, 256, NULL, &st);
    int32_t q[128], g[8];
    const char *p = "USER: What colour is the star? ASSISTANT:", *more = " USER: and?";
    int64_t np = vtok_tokenize(m, p, strlen(p), 1, q, 64, &st), ng = 0, reused = -1;
    float *logits = malloc((size_t)li.vocab * sizeof *logits);
    CHECK(c && f && logits && np > 4 && np < 64, "contexts and a prompt of %lld ids", (long long)np);
    if (!c || !f || !logits || np <= 4 || np >= 64)
        goto out;
    vtok_llm_batch b = {.n = np, .ids = q};
    vtok_gen_params gp = vtok_gen_default_params();
    gp.max_tokens = 5;
    gp.stop_ids = NULL;
    CHECK(vtok_llm_eval_reuse(c, &b, 0, &reused) == 0 && reused == 0 &&
          vtok_llm_generate(c, &gp, g, 8, &ng) == 0 && ng >= 2,
          "fresh context: nothing reused (%lld), %lld ids generated", (long long)reused,
          (long long)ng);
    /* the next prompt: the same prompt, the answer, more text */
    memcpy(q + np, g, (size_t)ng * sizeof *g);
    int64_t nm = vtok_tokenize(m, more, strlen(more), 0, q + np + ng, 32, &st);
    const int64_t nq = np + ng + nm, held = vtok_llm_n_past(c);
    b.n = nq;
    /* held: the prompt and every generated id but the last (sampled, never run) */
    CHECK(nm > 0 && held == np + ng - 1 && vtok_llm_eval_reuse(c, &b, 0, &reused) == 0 &&
          reused == held, "a longer prompt keeps the %lld positions held (reused %lld)",
          (long long)held, (long long)reused);
    memcpy(logits, vtok_llm_logits(c), (size_t)li.vocab * sizeof *logits);
    CHECK(vtok_llm_eval(f, &b) == 0, "fresh eval: %s", vtok_llm_errmsg(f));
    const float *e = vtok_llm_logits(f);
    double dmax = 0, emax = 0;
    for (int64_t i = 0; e && i < li.vocab; i++) {
        dmax = fmax(dmax, fabs((double)logits[i] - e[i]));
        emax = fmax(emax, fabs((double)e[i]));
    }
    CHECK(e && dmax <= 1e-5 * emax, "reused logits = a fresh context's (rel %.2e)",
          emax > 0 ? dmax / emax : 0.0);
    CHECK(vtok_llm_truncate(c, 3) == 0 && vtok_llm_eval_reuse(c, &b, 0, &reused) == 0 &&
          reused == 3, "after truncating to 3: reused %lld", (long long)reused);
    /* the same prompt again: all but its last position */
    CHECK(vtok_llm_eval_reuse(c, &b, 0, &reused) == 0 && reused == nq - 1,
          "the same prompt: %lld of %lld reused", (long long)reused, (long long)nq);
    /* an embedding row at position 2: it matches only with same_embeds */
    float *row = calloc((size_t)li.hidden_size, sizeof *row);
    int64_t epos = 2;
    vtok_llm_batch be = {.n = np, .ids = q, .embeds = row, .embed_pos = &epos, .n_embeds = 1};
    for (int64_t i = 0; row && i < li.hidden_size; i++)
        row[i] = (float)((i % 7) - 3) * 0.01f;
    CHECK(row && vtok_llm_eval_reuse(c, &be, 0, &reused) == 0 && reused == 2 &&
          vtok_llm_eval_reuse(c, &be, 0, &reused) == 0 && reused == 2 &&
          vtok_llm_eval_reuse(c, &be, 1, &reused) == 0 && reused == np - 1,
          "an image row: the prefix stops at it, or passes with same_embeds (%lld)",
          (long long)reused);
    free(row);
    CHECK(vtok_llm_eval_reuse(c, NULL, 0, &reused) == VTOK_EINVAL && reused == 0 &&
          vtok_llm_errmsg(c)[0], "NULL batch: EINVAL with a message");
    vtok_llm_batch bad = {.n = np, .ids = q, .embed_pos = &epos, .n_embeds = 1}; /* no rows */
    vtok_llm_batch bad2 = {.n = np, .ids = q, .n_embeds = 1};                     /* no positions */
    int32_t tid[64];
    CHECK(vtok_llm_eval_reuse(c, &bad, 0, &reused) == VTOK_EINVAL &&
          vtok_llm_eval_reuse(c, &bad2, 0, &reused) == VTOK_EINVAL &&
          vtok_llm_batch_text_ids(&bad2, tid, 64) == VTOK_EINVAL &&
          vtok_llm_batch_text_ids(&be, tid, 64) == np - 1 && tid[2] == q[3],
          "malformed batches refused; text ids skip the image position");
out:
    free(logits);
    vtok_llm_ctx_free(c);
    vtok_llm_ctx_free(f);
    vtok_llm_free(m);
}

int main(void)
{
    fill_pixels();
    test_text_tokenize();
    test_eval_reuse();
    vtok_status st = {0};
    vtok_model_params mp = vtok_model_default_params();
    mp.n_threads = 2;
    vtok_model *m = vtok_model_load(MODEL, &mp, &st);
    if (!m) {
        fprintf(stderr, "FAIL: %s: %s\n", MODEL, st.msg);
        return 1;
    }
    vtok_model_info info;
    vtok_model_get_info(m, &info);
    n_layers = (int)info.n_layers;

    /* the reference: one thread */
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = 1;
    vtok_ctx *ctx = vtok_ctx_new(m, &cp, &st);
    CHECK(ctx && encode(ctx, &ref) == 0, "one-thread encode: %s",
          ctx ? vtok_ctx_errmsg(ctx) : st.msg);
    vtok_ctx_free(ctx);
    if (!ref.last || !ref.pooler || !ref.embeds || !ref.hidden) {
        fprintf(stderr, "FAIL: no reference outputs\n");
        return 1;
    }

    /* More threads split the GEMM columns and attention queries differently,
     * never a sum, so the results must be the same bits. */
    for (int nt = 2; nt <= 3; nt++) {
        cp.n_threads = nt;
        ctx = vtok_ctx_new(m, &cp, &st);
        result r2;
        CHECK(ctx && encode(ctx, &r2) == 0, "%d-thread encode", nt);
        if (ctx) {
            CHECK(result_same_bits(&r2, &ref), "1 and %d threads bit-identical (max rel diff %g)",
                  nt, result_diff(&r2, &ref));
            result_free(&r2);
        }
        vtok_ctx_free(ctx);
    }

    /* 2 threads x 2 contexts each (own pools), one shared model */
    run_workers(m, NULL, 2, 2, "own pools");

    /* 2 threads, one context each, all on one shared pool; a model loaded on it too */
    vtok_threadpool *tp = vtok_threadpool_new(2, &st);
    CHECK(tp && vtok_threadpool_size(tp) == 2, "shared pool: %s", st.msg);
    if (tp) {
        run_workers(m, tp, 0, 1, "shared pool");
        run_workers(m, tp, 0, 2, "shared pool, 2 contexts per thread");
        vtok_model_params mp2 = vtok_model_default_params();
        mp2.threadpool = tp;
        vtok_model *m2 = vtok_model_load(MODEL, &mp2, &st);
        CHECK(m2 != NULL, "load on a shared pool: %s", st.msg);
        if (m2) {
            run_workers(m2, tp, 0, 1, "model loaded on the shared pool");
            vtok_model_free(m2);
        }
    }

    test_callbacks(m);
    test_mem_limit(m);
    test_params_abi(m);
    test_load_from_memory();
    test_preprocess_batch();
    test_recipe(tp);

    vtok_threadpool_free(tp);
    result_free(&ref);
    vtok_model_free(m);
    printf("test_api: %d checks, %d failed\n", n_check, n_fail);
    return n_fail ? 1 : 0;
}
