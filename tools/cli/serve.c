/*
 * serve.c - `vtok serve`: an HTTP server over the public API, on GNU
 * libmicrohttpd (Debian libmicrohttpd-dev), in the shapes clients already
 * speak (OpenAI's embeddings and chat completions, Prometheus metrics):
 *
 *   GET  /health               200 ready, 503 while loading or shutting down
 *   GET  /metrics              Prometheus text exposition
 *   GET  /v1/models            the one model served
 *   POST /v1/embeddings        images (base64 data URIs) -> pooled / projected
 *                              features (an encoder) or tokens (a recipe)
 *   POST /v1/tokenize          images -> discrete ids (a quantising recipe)
 *   POST /v1/detokenize        ids -> the recipe's decoder output
 *   POST /v1/chat/completions  with image_url parts; stream: true as SSE
 *
 * docs/SERVE.md is the reference. Design: libmicrohttpd runs a thread per
 * connection, so a request may block: it reads and checks its body, decodes
 * and preprocesses its images on its own thread, queues them for the
 * batcher (serve_batch.c: workers with a context each over the shared
 * read-only model gather concurrent requests into one call) and waits. The
 * queue is bounded (429 when full) and every input is limited before it is
 * used: body bytes (413, checked from Content-Length before reading), images
 * per request (413), pixels per image (400, from the image header, before
 * decoding: decompression bombs), JSON and base64 strictly parsed (400).
 * SIGTERM / SIGINT: new requests get 503, those in flight finish, exit 0.
 * Bound to 127.0.0.1 unless --host says otherwise; --api-key (or
 * VTOK_API_KEY) requires "Authorization: Bearer KEY" on /v1/ routes.
 */
#include "serve.h"

#include <stdio.h>

#ifndef VTOK_HAVE_MHD

int cli_serve(int argc, char **argv)
{
    (void)argc, (void)argv;
    fprintf(stderr, "vtok: serve: this vtok was built without the HTTP server (install "
                    "libmicrohttpd-dev, e.g. `make deps`, and rebuild)\n");
    return 1;
}

#else

#include "serve_batch.h"
#include "serve_chat.h"
#include "serve_util.h"
#include "vtok.h"
#include "outset.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if MHD_VERSION < 0x00097002
typedef int mhd_result; /* before 0.9.71 the callbacks returned int */
#else
typedef enum MHD_Result mhd_result;
#endif

#define MAX_IMAGES_CAP 4096

typedef struct options {
    const char *model, *recipe, *llm, *host, *api_key, *dtype, *name, *format;
    int         port, threads, workers, timeout_s, max_conn;
    int64_t     max_batch, queue, max_body, max_pixels, max_images, max_tokens, n_ctx;
    double      max_wait_ms, drain_s;
} options;

typedef struct server {
    options          o;
    char             name[256];
    vtok_model      *model;
    vtok_model_info  mi;
    vtok_text_model *text;     /* a CLIPModel folder's text tower: text inputs, or NULL */
    vtok_processor  *proc;
    vtok_recipe     *recipe;
    vtok_recipe_info ri;
    vtok_llm        *llm;
    sv_batcher      *batch;
    sv_chat         *chat;
    vtok_image_params ip;
    int              default_output;
    long long        started;
    _Atomic int      ready, draining, load_failed;
    sv_metrics       metrics;
} server;

typedef struct http_req {
    int    ep;
    int    post;       /* the endpoint takes a body */
    char  *body;
    size_t n, cap;
    int    too_large;
    int    status;     /* the status sent, 0 until then */
    double t0;
} http_req;

/* What a handler answers. */
typedef struct reply {
    int          status;
    char        *body;   /* malloc'ed */
    size_t       len;
    const char  *ctype;
    sv_chat_job *stream; /* an event stream instead of a body */
    const char  *allow;  /* 405: the methods the route takes */
} reply;

#define die(...) cli_err("vtok: serve: ", __VA_ARGS__)

/* ------------------------------------------------------------ replies -- */

static void json_reply(reply *r, int status, sv_buf *b)
{
    r->status = status;
    r->ctype = "application/json";
    r->body = sv_buf_take(b, &r->len);
    if (!r->body) { /* out of memory writing the answer */
        r->status = 500;
        r->body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                         "\"param\":null,\"code\":\"out_of_memory\"}}\n");
        r->len = r->body ? strlen(r->body) : 0;
    }
}

static void error_reply(reply *r, const sv_err *e)
{
    sv_buf b = {0};
    sv_error_body(&b, e);
    json_reply(r, e->status, &b);
}

#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static void fail_reply(reply *r, int status, const char *type, const char *code, const char *fmt,
                       ...)
{
    sv_err e = {.status = status, .type = type, .code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof e.msg, fmt, ap);
    va_end(ap);
    error_reply(r, &e);
}

/* A library error code as an HTTP status: the input's fault or ours. */
static int status_of(int code)
{
    switch (code) {
    case VTOK_EINVAL: case VTOK_ESHAPE: case VTOK_ELIMIT: case VTOK_EFORMAT:
    case VTOK_EUNSUPPORTED:
        return 400;
    case VTOK_EABORTED:
        return 503;
    default:
        return 500;
    }
}

/* ------------------------------------------------------------ helpers -- */

static int check_model(const server *s, const cJSON *req, sv_err *e)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(req, "model");
    if (!m || cJSON_IsNull(m))
        return 0;
    if (!cJSON_IsString(m))
        return sv_fail(e, 400, "invalid_request_error", "invalid_parameter",
                       "model must be a string");
    if (strcmp(m->valuestring, s->name))
        return sv_fail(e, 404, "invalid_request_error", "model_not_found",
                       "the model '%.100s' does not exist here (this server has '%s')",
                       m->valuestring, s->name);
    return 0;
}

/* encoding_format: 0 float, 1 base64. */
static int check_format(const cJSON *req, int *b64, sv_err *e)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(req, "encoding_format");
    *b64 = 0;
    if (!f || cJSON_IsNull(f))
        return 0;
    if (cJSON_IsString(f) && !strcmp(f->valuestring, "float"))
        return 0;
    if (cJSON_IsString(f) && !strcmp(f->valuestring, "base64")) {
        *b64 = 1;
        return 0;
    }
    return sv_fail(e, 400, "invalid_request_error", "invalid_parameter",
                   "encoding_format must be \"float\" or \"base64\"");
}

/* input: one string or a list of strings, each an image data URI. The
 * strings stay in req; *items points at them. */
static int input_strings(const server *s, const cJSON *req, const cJSON ***items, int64_t *n,
                         sv_err *e)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(req, "input");
    *items = NULL;
    *n = 0;
    if (!in)
        return sv_fail(e, 400, "invalid_request_error", "missing_input", "input is missing");
    int64_t k = cJSON_IsString(in) ? 1 : cJSON_IsArray(in) ? cJSON_GetArraySize(in) : -1;
    if (k < 0)
        return sv_fail(e, 400, "invalid_request_error", "invalid_input",
                       "input must be a string or a list of strings (image data URIs)");
    if (k == 0)
        return sv_fail(e, 400, "invalid_request_error", "invalid_input", "input is empty");
    if (k > s->o.max_images)
        return sv_fail(e, 413, "invalid_request_error", "too_many_images",
                       "%lld images in one request; at most %lld (--max-images)", (long long)k,
                       (long long)s->o.max_images);
    const cJSON **v = malloc((size_t)k * sizeof *v);
    if (!v)
        return sv_fail(e, 500, "server_error", "out_of_memory", "out of memory");
    if (cJSON_IsString(in))
        v[0] = in;
    else {
        int64_t i = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, in)
        {
            if (!cJSON_IsString(x)) {
                free(v);
                return sv_fail(e, 400, "invalid_request_error", "invalid_input",
                               "input[%lld]: token-id inputs are not taken; send images as "
                               "data URIs (strings)", (long long)i);
            }
            v[i++] = x;
        }
    }
    *items = v;
    *n = k;
    return 0;
}

static void free_images(vtok_image *imgs, int64_t n)
{
    for (int64_t i = 0; imgs && i < n; i++)
        vtok_image_free(&imgs[i]);
    free(imgs);
}

/* Queue j and wait; 0, or -1 with e (429 full, 503 stopping, or the job's error). */
static int submit_wait(server *s, sv_job *j, sv_err *e)
{
    int rc = sv_batcher_submit(s->batch, j);
    if (rc == SV_EFULL)
        return sv_fail(e, 429, "rate_limit_error", "queue_full",
                       "the queue is full (%lld requests waiting, --queue); retry later",
                       (long long)s->o.queue);
    if (rc)
        return sv_fail(e, 503, "server_error", "shutting_down", "the server is shutting down");
    sv_job_wait(j);
    if (j->err)
        return sv_fail(e, status_of(j->err), status_of(j->err) == 400 ? "invalid_request_error"
                                                                      : "server_error",
                       j->err == VTOK_ELIMIT ? "limit_exceeded" : "encode_failed", "%s", j->msg);
    return 0;
}

static const char *output_name(int o)
{
    return o == VTOK_OUT_IMAGE_EMBEDS ? "image_embeds"
           : o == VTOK_OUT_POOLER     ? "pooler_output"
                                      : "last_hidden_state";
}

/* The rows of one item: an embedding (flat floats) with its shape when it
 * is more than one vector. */
static void embedding_item(sv_buf *b, int64_t index, const float *x, int64_t rows, int64_t d,
                           int shaped, int b64)
{
    sv_buf_printf(b, "%s{\"object\":\"embedding\",\"index\":%lld,", index ? "," : "",
                  (long long)index);
    if (shaped)
        sv_buf_printf(b, "\"shape\":[%lld,%lld],", (long long)rows, (long long)d);
    sv_buf_str(b, "\"embedding\":");
    if (b64)
        sv_buf_b64_floats(b, x, rows * d);
    else
        sv_buf_json_floats(b, x, rows * d);
    sv_buf_str(b, "}");
}

static void usage_tail(sv_buf *b, const server *s, int64_t tokens)
{
    sv_buf_str(b, "],\"model\":");
    sv_buf_json_str(b, s->name, strlen(s->name));
    sv_buf_printf(b, ",\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}\n",
                  (long long)tokens, (long long)tokens);
}

/* ---------------------------------------------------------- endpoints -- */

/* /v1/embeddings with text: CLIP's get_text_features per string (truncated
 * at 77 tokens, as HF with truncation=True), on the request's thread. */
static void post_texts(server *s, const cJSON **items, int64_t n, int b64, reply *r)
{
    sv_err e = {0};
    float *out = NULL;
    int64_t tokens = 0;
    const int64_t dim = s->text ? vtok_text_model_dim(s->text) : 0;
    if (!s->text || dim <= 0) {
        sv_fail(&e, 400, "invalid_request_error", "invalid_image",
                "input[0] is not a data URI (data:image/...;base64,...), and %s has no text "
                "tower (text inputs need a full CLIPModel folder)", s->name);
        goto fail;
    }
    for (int64_t i = 0; i < n; i++)
        if (!strncmp(items[i]->valuestring, "data:", 5)) {
            sv_fail(&e, 400, "invalid_request_error", "invalid_input",
                    "input[%lld] is an image but input[0] is text: one kind per request",
                    (long long)i);
            goto fail;
        }
    if (!(out = malloc((size_t)(n * dim) * sizeof *out))) {
        sv_fail(&e, 500, "server_error", "out_of_memory", "out of memory");
        goto fail;
    }
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = s->o.threads;
    for (int64_t i = 0; i < n; i++) {
        vtok_status st = {0};
        int64_t t = vtok_text_tokenize(s->text, items[i]->valuestring, 1, NULL, 0, &st);
        int rc = t < 0 ? (int)t
                       : vtok_text_encode(s->text, items[i]->valuestring, out + i * dim, 1, &cp,
                                          &st);
        if (rc) {
            sv_fail(&e, status_of(rc), "invalid_request_error", "invalid_input", "input[%lld]: %s",
                    (long long)i, st.msg);
            goto fail;
        }
        tokens += t;
    }
    sv_buf b = {0};
    sv_buf_str(&b, "{\"object\":\"list\",\"data\":[");
    for (int64_t i = 0; i < n; i++)
        embedding_item(&b, i, out + i * dim, 1, dim, 0, b64);
    usage_tail(&b, s, tokens);
    json_reply(r, 200, &b);
    free(out);
    return;
fail:
    free(out);
    error_reply(r, &e);
}

/* /v1/embeddings and /v1/tokenize: both read images. */
static void post_images(server *s, const cJSON *req, int tokenize, reply *r)
{
    sv_err e = {0};
    const cJSON **items = NULL;
    int64_t n = 0;
    int b64 = 0, output = s->default_output;
    vtok_image *imgs = NULL;
    float *px = NULL;
    sv_job j;
    sv_job_init(&j);
    if (check_model(s, req, &e) || (!tokenize && check_format(req, &b64, &e)))
        goto fail;
    if (!s->batch) {
        sv_fail(&e, 400, "invalid_request_error", "unsupported",
                "this server runs only an LLM (%s): start it with --model DIR (or --recipe "
                "NAME --model DIR) for %s", s->name, tokenize ? "/v1/tokenize" : "embeddings");
        goto fail;
    }
    if (tokenize && (!s->recipe || s->ri.ids_per_image <= 0)) {
        sv_fail(&e, 400, "invalid_request_error", "unsupported",
                "/v1/tokenize needs a recipe that gives discrete ids (e.g. seed); this server "
                "runs %s", s->name);
        goto fail;
    }
    const cJSON *dim = cJSON_GetObjectItemCaseSensitive(req, "dimensions");
    if (dim && !cJSON_IsNull(dim)) {
        sv_fail(&e, 400, "invalid_request_error", "invalid_parameter",
                "dimensions is not supported: the model's output has a fixed width");
        goto fail;
    }
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(req, "output"); /* vtok's extension */
    if (out && !cJSON_IsNull(out)) {
        static const int outs[] = {VTOK_OUT_IMAGE_EMBEDS, VTOK_OUT_POOLER, VTOK_OUT_LAST_HIDDEN};
        output = -1;
        for (int k = 0; k < 3 && s->model && cJSON_IsString(out); k++)
            if (!strcmp(out->valuestring, output_name(outs[k])))
                output = outs[k];
        if (output < 0 || (output == VTOK_OUT_IMAGE_EMBEDS && !s->mi.projection_dim) ||
            (output == VTOK_OUT_POOLER && !s->mi.has_pooler)) {
            sv_fail(&e, 400, "invalid_request_error", "invalid_parameter",
                    s->model ? "output: this model gives %s" : "output: a recipe gives its tokens%s",
                    s->model ? (s->mi.projection_dim ? "image_embeds, pooler_output or "
                                                       "last_hidden_state"
                                : s->mi.has_pooler ? "pooler_output or last_hidden_state"
                                                   : "last_hidden_state")
                             : " only");
            goto fail;
        }
    }
    if (input_strings(s, req, &items, &n, &e))
        goto fail;
    /* text inputs (not data URIs): the text tower's text_embeds, one row each */
    if (!tokenize && strncmp(items[0]->valuestring, "data:", 5)) {
        post_texts(s, items, n, b64, r);
        goto done;
    }
    if (s->recipe && n > s->ri.max_images) {
        sv_fail(&e, 413, "invalid_request_error", "too_many_images",
                "recipe %s takes at most %lld images per run", s->ri.name,
                (long long)s->ri.max_images);
        goto fail;
    }
    if (!(imgs = calloc((size_t)n, sizeof *imgs))) {
        sv_fail(&e, 500, "server_error", "out_of_memory", "out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < n; i++)
        if (sv_image_from_uri(items[i]->valuestring, strlen(items[i]->valuestring), &s->ip,
                              &imgs[i], i, &e))
            goto fail;
    j.kind = tokenize ? SV_JOB_TOKENIZE : SV_JOB_EMBED;
    j.n = n;
    j.output = output;
    if (s->model) { /* preprocess here, on the request's thread */
        vtok_status st = {0};
        int64_t shape[4];
        int rc = vtok_preprocess_batch(s->proc, NULL, imgs, n, &s->ip, &px, shape, &st);
        if (rc) {
            sv_fail(&e, status_of(rc), "invalid_request_error",
                    rc == VTOK_ELIMIT ? "image_too_large" : "invalid_image", "%s", st.msg);
            goto fail;
        }
        free_images(imgs, n);
        imgs = NULL;
        j.pixels = px;
        j.ch = shape[1];
        j.h = shape[2];
        j.w = shape[3];
    } else
        j.images = imgs;
    if (submit_wait(s, &j, &e))
        goto fail;
    sv_buf b = {0};
    sv_buf_str(&b, "{\"object\":\"list\",\"data\":[");
    if (tokenize) {
        for (int64_t i = 0; i < n; i++) {
            sv_buf_printf(&b, "%s{\"object\":\"tokens\",\"index\":%lld,\"ids\":[", i ? "," : "",
                          (long long)i);
            for (int64_t k = 0; k < j.out_per; k++)
                sv_buf_printf(&b, "%s%lld", k ? "," : "", (long long)j.out_ids[i * j.out_per + k]);
            sv_buf_str(&b, "]}");
        }
    } else {
        const int shaped = s->recipe || output == VTOK_OUT_LAST_HIDDEN;
        for (int64_t i = 0, at = 0; i < n; at += j.rows[i], i++)
            embedding_item(&b, i, j.out + at * j.d, j.rows[i], j.d, shaped, b64);
    }
    usage_tail(&b, s, j.tokens);
    json_reply(r, 200, &b);
    goto done;
fail:
    error_reply(r, &e);
done:
    sv_job_clear(&j);
    vtok_free(px);
    free_images(imgs, n);
    free(items);
}

/* /v1/detokenize: {"input": [[ids of image 0], ...]} or one flat list. */
static void post_detokenize(server *s, const cJSON *req, reply *r)
{
    sv_err e = {0};
    int b64 = 0;
    int64_t *ids = NULL;
    sv_job j;
    sv_job_init(&j);
    if (check_model(s, req, &e) || check_format(req, &b64, &e))
        goto fail;
    if (!s->recipe || !s->ri.can_detokenize) {
        sv_fail(&e, 400, "invalid_request_error", "unsupported",
                "/v1/detokenize needs a recipe that maps ids back (e.g. seed); this server "
                "runs %s", s->name);
        goto fail;
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(req, "input");
    const int64_t per = s->ri.ids_per_image;
    int64_t rows = 0;
    if (cJSON_IsArray(in) && cJSON_IsNumber(cJSON_GetArrayItem(in, 0)))
        rows = 1; /* one flat list */
    else if (cJSON_IsArray(in))
        rows = cJSON_GetArraySize(in);
    if (rows < 1 || rows > s->o.max_images) {
        sv_fail(&e, rows > s->o.max_images ? 413 : 400, "invalid_request_error", "invalid_input",
                "input must be a list of %lld ids, or a list of up to %lld such lists",
                (long long)per, (long long)s->o.max_images);
        goto fail;
    }
    if (!(ids = malloc((size_t)(rows * per) * sizeof *ids))) {
        sv_fail(&e, 500, "server_error", "out_of_memory", "out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < rows; i++) {
        const cJSON *row = cJSON_IsNumber(cJSON_GetArrayItem(in, 0)) ? in
                                                                      : cJSON_GetArrayItem(in, (int)i);
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != per) {
            sv_fail(&e, 400, "invalid_request_error", "invalid_input",
                    "input[%lld]: a list of exactly %lld ids", (long long)i, (long long)per);
            goto fail;
        }
        int64_t k = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, row)
        {
            double v = cJSON_IsNumber(x) ? x->valuedouble : -1;
            if (!(v >= 0 && v < (double)s->ri.vocab) || v != (double)(int64_t)v) {
                sv_fail(&e, 400, "invalid_request_error", "invalid_input",
                        "input[%lld][%lld]: ids are integers in [0, %lld)", (long long)i,
                        (long long)k, (long long)s->ri.vocab);
                goto fail;
            }
            ids[i * per + k++] = (int64_t)v;
        }
    }
    j.kind = SV_JOB_DETOKENIZE;
    j.n = rows;
    j.ids = ids;
    j.per = per;
    if (submit_wait(s, &j, &e))
        goto fail;
    sv_buf b = {0};
    sv_buf_str(&b, "{\"object\":\"list\",\"data\":[");
    for (int64_t i = 0, at = 0; i < rows; at += j.rows[i], i++)
        embedding_item(&b, i, j.out + at * j.d, j.rows[i], j.d, 1, b64);
    usage_tail(&b, s, j.tokens);
    json_reply(r, 200, &b);
    goto done;
fail:
    error_reply(r, &e);
done:
    sv_job_clear(&j);
    free(ids);
}

static void get_models(server *s, reply *r)
{
    sv_buf b = {0};
    sv_buf_str(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    sv_buf_json_str(&b, s->name, strlen(s->name));
    sv_buf_printf(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"vtok\",\"vtok\":{",
                  s->started);
    if (s->model) {
        sv_buf_printf(&b, "\"kind\":\"encoder\",\"arch\":\"%s\",\"output\":\"%s\",\"dim\":%lld",
                      s->mi.arch, output_name(s->default_output),
                      (long long)(s->default_output == VTOK_OUT_IMAGE_EMBEDS ? s->mi.projection_dim
                                                                             : s->mi.hidden_size));
    } else if (!s->recipe) {
        sv_buf_str(&b, "\"kind\":\"llm\"");
    } else {
        sv_buf_str(&b, "\"kind\":\"recipe\",\"recipe\":");
        sv_buf_json_str(&b, s->ri.name, strlen(s->ri.name));
        sv_buf_printf(&b, ",\"tokens_per_image\":%lld,\"dim\":%lld,\"ids_per_image\":%lld,"
                          "\"ragged\":%s",
                      (long long)s->ri.tokens_per_image, (long long)s->ri.d_out,
                      (long long)s->ri.ids_per_image, s->ri.ragged ? "true" : "false");
    }
    sv_buf_printf(&b, ",\"chat\":%s,\"max_batch_images\":%lld}}]}\n", s->chat ? "true" : "false",
                  (long long)s->o.max_batch);
    json_reply(r, 200, &b);
}

static void post_chat(server *s, const http_req *q, reply *r)
{
    sv_err e = {0};
    if (!s->chat) {
        fail_reply(r, 400, "invalid_request_error", "unsupported",
                   "this server has no LLM: start it with --llm DIR (and --recipe NAME --model "
                   "DIR for images)");
        return;
    }
    sv_chat_job *j = NULL;
    int stream = 0;
    if (sv_chat_submit(s->chat, q->body ? q->body : "", q->n, &j, &stream, &e)) {
        error_reply(r, &e);
        return;
    }
    if (stream) {
        r->status = 200;
        r->stream = j;
        return;
    }
    int status = 0;
    r->body = sv_chat_wait_json(j, &status, &r->len);
    r->status = r->body ? status : 500;
    r->ctype = "application/json";
    sv_chat_release(j);
}

/* --------------------------------------------------------------- HTTP -- */

static const struct route {
    const char *path;
    int         ep, post;
} routes[] = {
    {"/health", SV_EP_HEALTH, 0},
    {"/metrics", SV_EP_METRICS, 0},
    {"/v1/models", SV_EP_MODELS, 0},
    {"/v1/embeddings", SV_EP_EMBEDDINGS, 1},
    {"/v1/tokenize", SV_EP_TOKENIZE, 1},
    {"/v1/detokenize", SV_EP_DETOKENIZE, 1},
    {"/v1/chat/completions", SV_EP_CHAT, 1},
};

/* Constant-time comparison of the Bearer token with the key. */
static int authorized(const server *s, struct MHD_Connection *conn)
{
    if (!s->o.api_key)
        return 1;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) /* RFC 6750 2.1: the scheme is case-insensitive */
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    const char *k = s->o.api_key;
    size_t hn = strlen(h), kn = strlen(k);
    unsigned diff = hn != kn;
    for (size_t i = 0; i < kn; i++)
        diff |= (unsigned)(unsigned char)k[i] ^ (unsigned)(unsigned char)(i < hn ? h[i] : 0);
    return diff == 0;
}

static void dispatch(server *s, struct MHD_Connection *conn, const char *url, const char *method,
                     http_req *q, reply *r)
{
    const int ready = atomic_load(&s->ready), draining = atomic_load(&s->draining);
    const int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    const int post = !strcmp(method, "POST");
    if (q->ep == SV_EP_OTHER) {
        fail_reply(r, 404, "invalid_request_error", "not_found", "no route %.200s %.200s",
                   method, url);
        return;
    }
    if (q->ep == SV_EP_HEALTH) {
        sv_buf b = {0};
        const char *state = draining ? "shutting_down" : ready ? "ok" : "loading";
        sv_buf_printf(&b, "{\"status\":\"%s\"}\n", state);
        json_reply(r, ready && !draining ? 200 : 503, &b);
        return;
    }
    if ((q->post && !post) || (!q->post && !get)) {
        r->allow = q->post ? "POST" : "GET, HEAD";
        fail_reply(r, 405, "invalid_request_error", "method_not_allowed", "%s takes %s", url,
                   r->allow);
        return;
    }
    if (q->ep == SV_EP_METRICS) {
        sv_buf b = {0};
        sv_metrics_print(&s->metrics, &b, ready && s->batch ? sv_batcher_depth(s->batch) : 0,
                         ready && s->chat ? sv_chat_depth(s->chat) : 0, ready);
        json_reply(r, 200, &b);
        r->ctype = "text/plain; version=0.0.4; charset=utf-8";
        return;
    }
    if (!authorized(s, conn)) {
        fail_reply(r, 401, "invalid_request_error", "invalid_api_key",
                   "missing or wrong API key (Authorization: Bearer KEY)");
        return;
    }
    if (draining || !ready) {
        fail_reply(r, 503, "server_error", draining ? "shutting_down" : "loading",
                   draining ? "the server is shutting down" : "the model is still loading");
        return;
    }
    if (q->ep == SV_EP_MODELS) {
        get_models(s, r);
        return;
    }
    if (q->too_large) {
        fail_reply(r, 413, "invalid_request_error", "body_too_large",
                   "the body is larger than %lld bytes (--max-body-bytes)",
                   (long long)s->o.max_body);
        return;
    }
    if (q->ep == SV_EP_CHAT) {
        post_chat(s, q, r);
        return;
    }
    cJSON *body = q->body ? cJSON_ParseWithLength(q->body, q->n) : NULL;
    if (!cJSON_IsObject(body))
        fail_reply(r, 400, "invalid_request_error", "invalid_json",
                   "the body is not a JSON object%s", q->n ? "" : " (it is empty)");
    else if (q->ep == SV_EP_DETOKENIZE)
        post_detokenize(s, body, r);
    else
        post_images(s, body, q->ep == SV_EP_TOKENIZE, r);
    cJSON_Delete(body);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    ssize_t k = sv_chat_read(cls, buf, max);
    return k < 0 ? MHD_CONTENT_READER_END_OF_STREAM : k;
}

static void stream_free(void *cls)
{
    sv_chat_release(cls);
}

static mhd_result send_reply(struct MHD_Connection *conn, http_req *q, reply *r)
{
    struct MHD_Response *resp;
    if (r->stream) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, r->stream,
                                                 stream_free);
        if (!resp) {
            sv_chat_release(r->stream);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
    } else {
        if (!r->body) {
            r->status = 500;
            r->body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                             "\"param\":null,\"code\":\"out_of_memory\"}}\n");
            if (!r->body)
                return MHD_NO;
            r->len = strlen(r->body);
            r->ctype = "application/json";
        }
        resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(r->body);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", r->ctype ? r->ctype : "application/json");
        if (r->allow)
            MHD_add_response_header(resp, "Allow", r->allow);
        if (r->status == 429)
            MHD_add_response_header(resp, "Retry-After", "1");
    }
    q->status = r->status;
    mhd_result rc = MHD_queue_response(conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static mhd_result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version, const char *upload,
                             size_t *upload_size, void **con_cls)
{
    server *s = cls;
    http_req *q = *con_cls;
    (void)version;
    if (!q) { /* the headers are in: route, and refuse what can be refused now */
        if (!(q = calloc(1, sizeof *q)))
            return MHD_NO;
        q->t0 = sv_now();
        q->ep = SV_EP_OTHER;
        for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
            if (!strcmp(url, routes[i].path)) {
                q->ep = routes[i].ep;
                q->post = routes[i].post;
            }
        *con_cls = q;
        atomic_fetch_add(&s->metrics.in_flight, 1);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            const unsigned long long max = (unsigned long long)s->o.max_body;
            const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect");
            if (!errno && !*end && v > max && v <= 4 * max && !expect) {
                /* read and drop it, then answer 413 on a connection that stays
                 * usable: a client that sends its whole body before reading
                 * (most do, without Expect: 100-continue) sees the answer */
                q->too_large = 1;
            } else if (errno || *end || v > max) {
                /* answered before the body is read: libmicrohttpd drops the
                 * rest and closes (an Expect: 100-continue client never sends it) */
                reply r = {0};
                fail_reply(&r, 413, "invalid_request_error", "body_too_large",
                           "the body (%s bytes) is larger than %lld bytes (--max-body-bytes)", cl,
                           (long long)s->o.max_body);
                return send_reply(conn, q, &r);
            }
        }
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        size_t k = *upload_size;
        *upload_size = 0;
        if (q->too_large || k > (size_t)s->o.max_body - q->n) {
            /* over the limit: counted, not kept; a body (chunked, without a
             * length) that goes on past 4 x the limit closes the connection */
            if (!q->too_large) {
                free(q->body);
                q->body = NULL;
                q->too_large = 1;
            }
            q->n += k;
            return q->n > 4 * (size_t)s->o.max_body ? MHD_NO : MHD_YES;
        }
        if (q->n + k + 1 > q->cap) {
            size_t cap = q->cap ? q->cap : 65536;
            while (cap < q->n + k + 1)
                cap *= 2;
            char *p = realloc(q->body, cap);
            if (!p)
                return MHD_NO;
            q->body = p;
            q->cap = cap;
        }
        memcpy(q->body + q->n, upload, k);
        q->n += k;
        q->body[q->n] = '\0';
        return MHD_YES;
    }
    reply r = {0};
    dispatch(s, conn, url, method, q, &r);
    return send_reply(conn, q, &r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    server *s = cls;
    http_req *q = *con_cls;
    (void)conn, (void)toe;
    if (!q)
        return;
    if (q->status)
        sv_metrics_request(&s->metrics, q->ep, q->status, sv_now() - q->t0);
    atomic_fetch_sub(&s->metrics.in_flight, 1);
    free(q->body);
    free(q);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        line[--n] = '\0';
    fprintf(stderr, "vtok: serve: libmicrohttpd: %s\n", line);
}

/* ------------------------------------------------------------ loading -- */

static void *load_main(void *arg)
{
    server *s = arg;
    const options *o = &s->o;
    vtok_status st = {0};
    char err[600];
    int dtype = o->dtype ? vtok_dtype_from_name(o->dtype) : VTOK_DTYPE_F32;
    if (o->recipe) {
        vtok_recipe_params rp = vtok_recipe_default_params();
        rp.dtype = dtype == VTOK_DTYPE_Q4 ? VTOK_DTYPE_INT8 : dtype; /* q4 is for the LLM */
        if (!(s->recipe = vtok_recipe_load(o->recipe, o->model, &rp, &st))) {
            die("%s", st.msg);
            goto failed;
        }
        vtok_recipe_get_info(s->recipe, &s->ri);
    } else if (o->model) {
        vtok_model_params mp = vtok_model_default_params();
        mp.dtype = dtype == VTOK_DTYPE_Q4 ? VTOK_DTYPE_INT8 : dtype;
        if (!(s->model = vtok_model_load(o->model, &mp, &st))) {
            die("%s", st.msg);
            goto failed;
        }
        vtok_model_get_info(s->model, &s->mi);
        if (!(s->proc = vtok_processor_load(o->model, &st))) {
            die("%s", st.msg);
            goto failed;
        }
        /* a full CLIPModel folder also embeds text (get_text_features), in
         * the space of its image_embeds; a vision-only folder does not */
        vtok_status ts = {0};
        s->text = vtok_text_model_load(o->model, NULL, &ts);
        s->default_output = s->mi.projection_dim ? VTOK_OUT_IMAGE_EMBEDS
                            : s->mi.has_pooler   ? VTOK_OUT_POOLER
                                                 : VTOK_OUT_LAST_HIDDEN;
    }
    sv_batch_cfg bc = {.model = s->model, .recipe = s->recipe, .workers = o->workers,
                       .threads = o->threads, .max_batch = o->max_batch,
                       .max_wait_ms = o->max_wait_ms, .max_queue = o->queue,
                       .metrics = &s->metrics};
    if (s->recipe && bc.max_batch > s->ri.max_images)
        bc.max_batch = s->ri.max_images;
    if ((s->model || s->recipe) && !(s->batch = sv_batcher_new(&bc, err, sizeof err))) {
        die("%s", err);
        goto failed;
    }
    if (o->llm) {
        vtok_model_params mp = vtok_model_default_params();
        mp.dtype = dtype;
        if (!(s->llm = vtok_llm_load(o->llm, &mp, &st))) {
            die("%s", st.msg);
            goto failed;
        }
        sv_chat_cfg cc = {.llm = s->llm, .recipe = s->recipe, .format = o->format,
                          .model_name = s->name, .threads = o->threads, .n_ctx = o->n_ctx,
                          .max_tokens = o->max_tokens, .max_queue = o->queue,
                          .max_images = o->max_images, .image_params = &s->ip,
                          .metrics = &s->metrics};
        if (!(s->chat = sv_chat_new(&cc, err, sizeof err))) {
            die("%s", err);
            goto failed;
        }
    }
    atomic_store(&s->ready, 1);
    fprintf(stderr, "vtok: serve: %s ready (%s kernels)\n", s->name, vtok_kernel_name());
    return NULL;
failed:
    atomic_store(&s->load_failed, 1);
    kill(getpid(), SIGTERM); /* wakes the main thread's sigwait */
    return NULL;
}

/* ------------------------------------------------------------ options -- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vtok serve (--model DIR | --recipe NAME|FILE --model DIR) [--llm DIR]\n"
            "       vtok serve --llm DIR               (text chat only)\n"
            "       [--host 127.0.0.1] [--port 8080] [--threads N] [--workers N] [--dtype D]\n"
            "       [--api-key KEY] [--name ID] [--max-batch-images 16] [--max-wait-ms 5]\n"
            "       [--queue 64] [--max-body-bytes 33554432] [--max-pixels 16777216]\n"
            "       [--max-images 16] [--max-tokens 512] [--ctx N] [--format NAME]\n"
            "       [--timeout 60] [--max-connections 256] [--drain-timeout 30]\n"
            "an HTTP server: /health, /metrics, /v1/models, /v1/embeddings, /v1/tokenize,\n"
            "/v1/detokenize, /v1/chat/completions (see docs/SERVE.md)\n");
}

static int num_opt(const char *k, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !(x >= lo && x <= hi))
        return die("%s: '%s' must be a number in [%g, %g]", k, v, lo, hi);
    *out = x;
    return 0;
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.host = "127.0.0.1", .port = 8080, .workers = 1, .timeout_s = 60,
                   .max_conn = 256, .max_batch = 16, .queue = 64, .max_body = 32 << 20,
                   .max_pixels = 4096 * 4096, .max_images = 16, .max_tokens = 512,
                   .max_wait_ms = 5, .drain_s = 30};
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!v)
            return die("option %s needs a value", k);
        i++;
        double x = 0;
        if (!strcmp(k, "--model")) o->model = v;
        else if (!strcmp(k, "--recipe")) o->recipe = v;
        else if (!strcmp(k, "--llm")) o->llm = v;
        else if (!strcmp(k, "--host")) o->host = v;
        else if (!strcmp(k, "--api-key")) o->api_key = v;
        else if (!strcmp(k, "--dtype")) o->dtype = v;
        else if (!strcmp(k, "--name")) o->name = v;
        else if (!strcmp(k, "--format")) o->format = v;
        else {
            static const struct { const char *k; double lo, hi; } nums[] = {
                {"--port", 0, 65535}, {"--threads", 1, 1024}, {"--workers", 1, 64},
                {"--timeout", 1, 86400}, {"--max-connections", 1, 65536},
                {"--max-batch-images", 1, 4096}, {"--max-wait-ms", 0, 60000},
                {"--queue", 1, 1 << 20}, {"--max-body-bytes", 1024, 1ull << 32},
                {"--max-pixels", 1, 1ull << 32}, {"--max-images", 1, MAX_IMAGES_CAP},
                {"--max-tokens", 1, 1 << 20}, {"--ctx", 0, 1 << 24}, {"--drain-timeout", 0, 3600},
            };
            int found = -1;
            for (int n = 0; n < (int)(sizeof nums / sizeof nums[0]); n++)
                if (!strcmp(k, nums[n].k))
                    found = n;
            if (found < 0)
                return die("unknown option %s (see vtok serve --help)", k);
            if (num_opt(k, v, nums[found].lo, nums[found].hi, &x))
                return 1;
            if (found != 6 && found != 13 && x != (double)(int64_t)x)
                return die("%s: '%s' must be an integer", k, v);
            switch (found) {
            case 0: o->port = (int)x; break;
            case 1: o->threads = (int)x; break;
            case 2: o->workers = (int)x; break;
            case 3: o->timeout_s = (int)x; break;
            case 4: o->max_conn = (int)x; break;
            case 5: o->max_batch = (int64_t)x; break;
            case 6: o->max_wait_ms = x; break;
            case 7: o->queue = (int64_t)x; break;
            case 8: o->max_body = (int64_t)x; break;
            case 9: o->max_pixels = (int64_t)x; break;
            case 10: o->max_images = (int64_t)x; break;
            case 11: o->max_tokens = (int64_t)x; break;
            case 12: o->n_ctx = (int64_t)x; break;
            default: o->drain_s = x; break;
            }
        }
    }
    if (!o->model && !o->llm) {
        usage(stderr);
        return die("%s", "serve needs --model DIR (an encoder folder, or with --recipe the "
                         "recipe's model folder), --llm DIR (text chat), or both");
    }
    if (o->recipe && !o->model)
        return die("--recipe %s needs --model DIR (the recipe's model folder)", o->recipe);
    if (o->dtype && vtok_dtype_from_name(o->dtype) < 0)
        return die("--dtype %s: expected f32, bf16, int8 or q4", o->dtype);
    if (!o->api_key) {
        const char *env = getenv("VTOK_API_KEY");
        if (env && env[0])
            o->api_key = env;
    }
    return 0;
}

/* The id the model is served as: --name, the recipe's name, or the model
 * folder's last component (cut to fit). */
static void served_name(server *s)
{
    const options *o = &s->o;
    const char *src = o->name;
    size_t n;
    if (!src && o->recipe) {
        const char *r = strrchr(o->recipe, '/');
        src = r ? r + 1 : o->recipe;
    }
    if (src)
        n = strlen(src);
    else {
        const char *dir = o->model ? o->model : o->llm; /* an LLM alone: its folder */
        n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
            n--;
        src = dir;
        for (size_t i = n; i > 0; i--)
            if (dir[i - 1] == '/') {
                src = dir + i;
                break;
            }
        n -= (size_t)(src - dir);
    }
    if (n >= sizeof s->name)
        n = sizeof s->name - 1;
    memcpy(s->name, src, n);
    s->name[n] = '\0';
}

/* --------------------------------------------------------------- main -- */

int cli_serve(int argc, char **argv)
{
    static server S; /* the handlers' closure; lives until exit */
    server *s = &S;
    if (parse_options(argc, argv, &s->o))
        return 1;
    served_name(s);
    s->started = (long long)time(NULL);
    s->ip = vtok_image_default_params();
    s->ip.max_pixels = s->o.max_pixels;

    /* Signals: every thread started from here on blocks them; this thread
     * takes them with sigwait (no work in a signal handler). */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in a4 = {0};
    struct sockaddr_in6 a6 = {0};
    const struct sockaddr *addr;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, s->o.host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)s->o.port);
        addr = (const struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, s->o.host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)s->o.port);
        addr = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else
        return die("--host %s: expected an IPv4 or IPv6 address (e.g. 127.0.0.1, ::1, 0.0.0.0)",
                   s->o.host);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)s->o.port, NULL, NULL, on_request, s,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, /* first, as libmicrohttpd asks */
        MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->o.max_conn,
        MHD_OPTION_END);
    if (!d)
        return die("cannot listen on %s:%d: %s", s->o.host, s->o.port, strerror(errno));
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? di->port : s->o.port;
    fprintf(stderr, "vtok: serve: listening on http://%s%s%s:%d (loading %s)\n",
            addr->sa_family == AF_INET6 ? "[" : "", s->o.host,
            addr->sa_family == AF_INET6 ? "]" : "", port, s->name);

    pthread_t loader;
    if (pthread_create(&loader, NULL, load_main, s)) {
        MHD_stop_daemon(d);
        return die("cannot start the loader thread: %s", strerror(errno));
    }
    int sig = 0;
    sigwait(&sigs, &sig);
    if (atomic_load(&s->load_failed)) {
        pthread_join(loader, NULL);
        MHD_stop_daemon(d);
        sv_batcher_free(s->batch);
        sv_chat_free(s->chat);
        vtok_llm_free(s->llm);
        vtok_processor_free(s->proc);
        vtok_model_free(s->model);
        vtok_text_model_free(s->text);
        vtok_recipe_free(s->recipe);
        return 1;
    }
    /* Graceful shutdown: refuse new requests (503), let those in flight
     * finish (a second signal or --drain-timeout cuts it short). */
    atomic_store(&s->draining, 1);
    fprintf(stderr, "vtok: serve: %s: finishing %lld request(s) in flight\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM",
            (long long)atomic_load(&s->metrics.in_flight));
    double until = sv_now() + s->o.drain_s;
    struct timespec tick = {0, 20 * 1000 * 1000};
    while (atomic_load(&s->metrics.in_flight) > 0 && sv_now() < until)
        if (sigtimedwait(&sigs, NULL, &tick) > 0) {
            fprintf(stderr, "vtok: serve: second signal: not waiting any longer\n");
            break;
        }
    pthread_join(loader, NULL); /* a load still running finishes first */
    int left = (int)atomic_load(&s->metrics.in_flight);
    /* the connections first (their threads may still wait on the workers,
     * which go on until their queues are empty), then the workers */
    MHD_stop_daemon(d);
    sv_batcher_free(s->batch);
    sv_chat_free(s->chat);
    vtok_llm_free(s->llm);
    vtok_processor_free(s->proc);
    vtok_model_free(s->model);
    vtok_text_model_free(s->text);
    vtok_recipe_free(s->recipe);
    fprintf(stderr, "vtok: serve: stopped%s\n", left > 0 ? " (requests were still open)" : "");
    return 0;
}

#endif /* VTOK_HAVE_MHD */
