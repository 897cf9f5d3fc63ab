/*
 * serve_chat.c - /v1/chat/completions for `vtok serve` (serve_chat.h).
 *
 * The request is read on the connection's thread (JSON, images decoded
 * there, so that bad input is answered at once with a 4xx); one worker
 * thread then answers the queued requests in order, as `vtok chat` does for
 * one question (tools/cli/llm.c cli_chat): the recipe run on the images, the
 * messages rendered by the LLM folder's chat template (or a built-in format,
 * vicuna_v1 when the folder has none), vtok_llm_prompt splicing each image's
 * rows at its placeholder, vtok_llm_eval, vtok_llm_generate. Each message's
 * images become placeholders in front of its text, one per image, then a
 * newline: LLaVA's "<image>\n" + question (llava/conversation.py), whatever
 * order the parts came in.
 *
 * Streaming follows OpenAI's chat.completion.chunk events
 * (https://platform.openai.com/docs/api-reference/chat-streaming): a first
 * chunk with the role, one per token text, a last one with finish_reason,
 * then "data: [DONE]". The job is shared by the worker and the connection
 * (a reference each); a client that goes away cancels the generation at the
 * next token.
 */
#include "serve_chat.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_MSGS  256
#define MAX_STOPS 4 /* as OpenAI's API */

struct sv_chat_job {
    /* request */
    vtok_chat_msg *msgs;
    char         **contents;
    int64_t        n_msgs;
    vtok_image    *imgs;
    int64_t        n_images;
    char          *question; /* the last user message's text: MoVA's routing question */
    char          *stops[MAX_STOPS];
    int            n_stops;
    int64_t        max_tokens;
    int            greedy;
    float          temperature, top_p, repetition_penalty;
    int64_t        top_k;
    uint64_t       seed;
    int            stream, include_usage;
    int            no_cache;  /* "cache_prompt": false (llama.cpp's server's name) */
    char           id[48];
    long long      created;
    /* answer */
    sv_buf   routing;  /* MoVA: {"experts":[...],"answer":"..."} for the response */
    sv_err   err;
    int      failed;
    sv_buf   text;     /* the answer's text (non-streamed)                  */
    sv_buf   sse;      /* streamed events not yet read: [sse_off, sse.n)    */
    size_t   sse_off;
    int64_t  prompt_tokens, completion_tokens, cached_tokens;
    const char *finish;
    int      cancelled, done, refs;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    sv_chat_job *next;
    sv_chat     *owner;
};

struct sv_chat {
    sv_chat_cfg      cfg;
    vtok_recipe_info ri;
    vtok_llm_info    li;
    vtok_recipe_ctx *rctx;
    vtok_llm_ctx    *lctx;
    /* the images of the last successful recipe run (rctx still holds its
     * rows): a request with the very same images (a client resending its
     * conversation) skips the run, and its image rows count as the same in
     * the KV cache. Not for recipes whose rows depend on the question. */
    vtok_image      *last;
    int64_t          n_last;
    pthread_t        th;
    int              started;
    pthread_mutex_t  mu;
    pthread_cond_t   cv;
    sv_chat_job     *head, *tail;
    int64_t          depth;
    int              stop;
    _Atomic uint64_t counter;
};

/* ------------------------------------------------------------ jobs -- */

static void job_free(sv_chat_job *j)
{
    for (int64_t i = 0; i < j->n_msgs; i++)
        free(j->contents ? j->contents[i] : NULL);
    free(j->contents);
    free(j->msgs);
    for (int64_t i = 0; j->imgs && i < j->n_images; i++)
        vtok_image_free(&j->imgs[i]);
    free(j->imgs);
    for (int i = 0; i < j->n_stops; i++)
        free(j->stops[i]);
    sv_buf_free(&j->text);
    sv_buf_free(&j->sse);
    sv_buf_free(&j->routing);
    free(j->question);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

void sv_chat_release(sv_chat_job *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    j->cancelled = 1; /* the reader is gone: stop generating for it */
    int last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (last)
        job_free(j);
}

/* The streamed chunk with this delta (a JSON object's text) and finish
 * reason; the first one also carries MoVA's routing (j->routing). */
static void chunk(sv_chat_job *j, const char *model, const char *delta, size_t dn,
                  const char *finish, int first)
{
    sv_buf *b = &j->sse;
    sv_buf_printf(b, "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%lld,"
                     "\"model\":", j->id, j->created);
    sv_buf_json_str(b, model, strlen(model));
    sv_buf_str(b, ",\"choices\":[{\"index\":0,\"delta\":");
    sv_buf_put(b, delta, dn);
    sv_buf_str(b, ",\"finish_reason\":");
    if (finish)
        sv_buf_printf(b, "\"%s\"", finish);
    else
        sv_buf_str(b, "null");
    sv_buf_str(b, "}]");
    if (first && j->routing.n) {
        sv_buf_str(b, ",\"routing\":");
        sv_buf_put(b, j->routing.p, j->routing.n);
    }
    sv_buf_str(b, "}\n\n");
}

static void usage_json(sv_buf *b, const sv_chat_job *j)
{
    sv_buf_printf(b, "{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld,"
                     "\"prompt_tokens_details\":{\"cached_tokens\":%lld}}",
                  (long long)j->prompt_tokens, (long long)j->completion_tokens,
                  (long long)(j->prompt_tokens + j->completion_tokens),
                  (long long)j->cached_tokens);
}

/* The worker is done with j: the last events, wake the reader. */
static void job_done(sv_chat *c, sv_chat_job *j)
{
    pthread_mutex_lock(&j->mu);
    if (j->stream) {
        if (j->failed) {
            sv_buf_str(&j->sse, "data: ");
            sv_error_body(&j->sse, &j->err);
            sv_buf_str(&j->sse, "\n");
        } else {
            chunk(j, c->cfg.model_name, "{}", 2, j->finish, 0);
            if (j->include_usage) {
                sv_buf_printf(&j->sse, "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\","
                                       "\"created\":%lld,\"model\":", j->id, j->created);
                sv_buf_json_str(&j->sse, c->cfg.model_name, strlen(c->cfg.model_name));
                sv_buf_str(&j->sse, ",\"choices\":[],\"usage\":");
                usage_json(&j->sse, j);
                sv_buf_str(&j->sse, "}\n\n");
            }
        }
        sv_buf_str(&j->sse, "data: [DONE]\n\n");
    }
    j->done = 1;
    pthread_cond_broadcast(&j->cv);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (last)
        job_free(j);
}

typedef struct stream_ctx {
    sv_chat     *c;
    sv_chat_job *j;
} stream_ctx;

static int on_token(void *user, int32_t id, const char *text, size_t len)
{
    stream_ctx *s = user;
    sv_chat_job *j = s->j;
    (void)id;
    pthread_mutex_lock(&j->mu);
    int stop = j->cancelled;
    if (!stop && len) {
        sv_buf d = {0};
        sv_buf_str(&d, "{\"content\":");
        sv_buf_json_str(&d, text, len);
        sv_buf_str(&d, "}");
        if (!d.oom)
            chunk(j, s->c->cfg.model_name, d.p, d.n, NULL, 0);
        sv_buf_free(&d);
        pthread_cond_broadcast(&j->cv);
    }
    pthread_mutex_unlock(&j->mu);
    return stop;
}

ssize_t sv_chat_read(sv_chat_job *j, char *buf, size_t max)
{
    pthread_mutex_lock(&j->mu);
    while (j->sse.n == j->sse_off && !j->done)
        pthread_cond_wait(&j->cv, &j->mu);
    size_t avail = j->sse.n - j->sse_off, k = avail < max ? avail : max;
    if (k)
        memcpy(buf, j->sse.p + j->sse_off, k);
    j->sse_off += k;
    if (j->sse_off == j->sse.n) { /* all read: start the buffer over */
        j->sse.n = 0;
        j->sse_off = 0;
    }
    pthread_mutex_unlock(&j->mu);
    return k ? (ssize_t)k : -1;
}

char *sv_chat_wait_json(sv_chat_job *j, int *status, size_t *len)
{
    pthread_mutex_lock(&j->mu);
    while (!j->done)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    sv_buf b = {0};
    if (j->failed) {
        *status = j->err.status;
        sv_error_body(&b, &j->err);
        return sv_buf_take(&b, len);
    }
    sv_chat *c = j->owner;
    *status = 200;
    sv_buf_printf(&b, "{\"id\":\"%s\",\"object\":\"chat.completion\",\"created\":%lld,\"model\":",
                  j->id, j->created);
    sv_buf_json_str(&b, c->cfg.model_name, strlen(c->cfg.model_name));
    sv_buf_str(&b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    sv_buf_json_str(&b, j->text.p ? j->text.p : "", j->text.n);
    sv_buf_printf(&b, "},\"logprobs\":null,\"finish_reason\":\"%s\"}],\"usage\":", j->finish);
    usage_json(&b, j);
    if (j->routing.n) { /* vtok's extension: which experts answered, and why */
        sv_buf_str(&b, ",\"routing\":");
        sv_buf_put(&b, j->routing.p, j->routing.n);
    }
    sv_buf_str(&b, "}\n");
    return sv_buf_take(&b, len);
}

/* ----------------------------------------------------------- worker -- */

static void job_fail(sv_chat_job *j, int status, const char *code, const char *msg)
{
    j->failed = 1;
    sv_fail(&j->err, status, status >= 500 ? "server_error" : "invalid_request_error", code, "%s",
            msg);
}

/* MoVA: the routing pass on the worker's LLM context, its experts for the
 * answer's run (rp), and the "routing" object of the response. */
static int route(sv_chat *c, sv_chat_job *j, const char *fmt, float *w, vtok_run_params *rp)
{
    const vtok_recipe *r = c->cfg.recipe;
    const int64_t n = vtok_recipe_n_experts(r);
    vtok_status st = {0};
    vtok_routing rt;
    if (n > 16) {
        job_fail(j, 500, "routing_failed", "more than 16 experts");
        return -1;
    }
    if (!j->question || !j->question[0]) {
        job_fail(j, 400, "invalid_messages", "recipe routes by the question: the last user "
                 "message needs text");
        return -1;
    }
    if (vtok_recipe_route(c->rctx, c->lctx, j->imgs, j->n_images, NULL, j->question, fmt, w, n,
                          &rt, &st)) {
        job_fail(j, st.code == VTOK_ENOMEM ? 500 : 400, "routing_failed", st.msg);
        return -1;
    }
    sv_buf_str(&j->routing, "{\"experts\":[");
    for (int64_t k = 0, m = 0; k < n; k++)
        if (w[k] != 0) {
            const char *name = vtok_recipe_expert_name(r, k);
            sv_buf_str(&j->routing, m++ ? "," : "");
            sv_buf_json_str(&j->routing, name, strlen(name));
        }
    sv_buf_str(&j->routing, "],\"answer\":");
    sv_buf_json_str(&j->routing, rt.answer, strlen(rt.answer));
    sv_buf_str(&j->routing, "}");
    vtok_routing_free(&rt);
    rp->prompt = j->question;
    rp->cond = w;
    rp->n_cond = n;
    rp->same_images = 1; /* the routing pass ran the base encoder on these images */
    return 0;
}

/* SliME: the ids of the whole rendered prompt without image positions, as
 * `vtok chat` gives the selector for one question. */
static int text_ids(sv_chat *c, sv_chat_job *j, const char *text, int add_special,
                    int32_t **ids, vtok_run_params *rp)
{
    vtok_status st = {0};
    vtok_llm_batch b = {0};
    int64_t ones[64];
    for (int64_t k = 0; k < j->n_images; k++)
        ones[k] = 1; /* the text ids do not depend on the counts */
    if (vtok_llm_prompt(c->cfg.llm, &c->ri, text, j->n_images, ones, NULL, add_special, &b,
                        &st)) {
        job_fail(j, 400, "invalid_messages", st.msg);
        return -1;
    }
    if (!(*ids = malloc((size_t)(b.n ? b.n : 1) * sizeof **ids))) {
        vtok_llm_batch_free(&b);
        job_fail(j, 500, "out_of_memory", "out of memory");
        return -1;
    }
    rp->llm = c->cfg.llm;
    rp->text_ids = *ids;
    rp->n_text_ids = vtok_llm_batch_text_ids(&b, *ids, b.n);
    vtok_llm_batch_free(&b);
    return 0;
}

/* Whether j's images are, pixel for pixel, those of the last recipe run
 * (never for recipes whose rows depend on the question: keep_images keeps
 * none for them). */
static int same_images(const sv_chat *c, const sv_chat_job *j)
{
    if (!c->n_last || j->n_images != c->n_last)
        return 0;
    for (int64_t i = 0; i < j->n_images; i++) {
        const vtok_image *a = &j->imgs[i], *b = &c->last[i];
        if (a->width != b->width || a->height != b->height ||
            memcmp(a->data, b->data, (size_t)(a->width * a->height * 3)))
            return 0;
    }
    return 1;
}

static void forget_images(sv_chat *c)
{
    for (int64_t i = 0; i < c->n_last; i++)
        vtok_image_free(&c->last[i]);
    free(c->last);
    c->last = NULL;
    c->n_last = 0;
}

/* After a successful recipe run: j's images become the last ones (the job
 * no longer owns them). */
static void keep_images(sv_chat *c, sv_chat_job *j)
{
    forget_images(c);
    if (c->ri.needs_text || vtok_recipe_n_experts(c->cfg.recipe))
        return;
    c->last = j->imgs;
    c->n_last = j->n_images;
    j->imgs = NULL;
}

static void answer(sv_chat *c, sv_chat_job *j)
{
    vtok_llm *m = c->cfg.llm;
    vtok_status st = {0};
    int64_t T[64] = {0};
    const float *rows = NULL;
    const int64_t *ids = NULL;
    char *text = NULL;
    vtok_llm_batch b = {0};
    int32_t *out = NULL, *tids = NULL;
    float w[16];
    const char *fmt = vtok_chat_format_name(m, c->cfg.format); /* --format "template" too */
    if (vtok_chat_render(m, fmt, j->msgs, j->n_msgs, 1, &text, &st)) {
        job_fail(j, 400, "invalid_messages", st.msg);
        goto out;
    }
    int add_special = vtok_chat_add_special(m, fmt, text); /* the library's BOS rule */
    const int same = j->n_images && !j->no_cache && same_images(c, j);
    if (j->n_images && !same) {
        forget_images(c); /* rctx's rows change now */
        vtok_run_params rp = vtok_run_default_params();
        if (vtok_recipe_n_experts(c->cfg.recipe) && route(c, j, fmt, w, &rp))
            goto out;
        if (c->ri.needs_text && text_ids(c, j, text, add_special, &tids, &rp))
            goto out;
        if (vtok_recipe_run_images(c->rctx, j->imgs, j->n_images, &rp)) {
            job_fail(j, 400, "invalid_image", vtok_recipe_ctx_errmsg(c->rctx));
            goto out;
        }
        keep_images(c, j);
    }
    if (j->n_images) { /* rctx holds this request's rows */
        if (c->ri.id_format[0]) {
            int64_t n_id = 0, per = 0;
            if (vtok_recipe_get_ids(c->rctx, &ids, &n_id, &per)) {
                job_fail(j, 500, "recipe_failed", vtok_recipe_ctx_errmsg(c->rctx));
                goto out;
            }
            for (int64_t k = 0; k < j->n_images; k++)
                T[k] = per;
        } else {
            vtok_view e;
            vtok_recipe_get_output(c->rctx, &e);
            rows = e.data;
            for (int64_t k = 0; k < j->n_images; k++)
                if (!vtok_recipe_get_image_output(c->rctx, k, &e))
                    T[k] = e.ne[0];
        }
    }
    if (c->cfg.recipe) {
        if (vtok_llm_prompt(m, &c->ri, text, j->n_images, T, ids, add_special, &b, &st)) {
            job_fail(j, 400, "invalid_messages", st.msg);
            goto out;
        }
        b.embeds = rows;
    } else {
        int64_t n = vtok_tokenize(m, text, strlen(text), add_special, NULL, 0, &st);
        int32_t *tid = n > 0 ? malloc((size_t)n * sizeof *tid) : NULL;
        if (!tid || vtok_tokenize(m, text, strlen(text), add_special, tid, n, &st) != n) {
            free(tid);
            job_fail(j, n == 0 ? 400 : 500, "invalid_messages",
                     n == 0 ? "the prompt is empty" : st.msg);
            goto out;
        }
        b.n = n;
        b.ids = tid;
    }
    j->prompt_tokens = b.n;
    if (j->no_cache)
        vtok_llm_reset(c->lctx);
    /* the positions the worker's context already holds of this prompt (the
     * last request's prompt and answer, a MoVA routing prompt) are kept: a
     * client resending a growing conversation pays only for what is new;
     * image rows count only when they are the last request's very images */
    if (vtok_llm_eval_reuse(c->lctx, &b, same, &j->cached_tokens)) {
        job_fail(j, 400, "context_length_exceeded", vtok_llm_errmsg(c->lctx));
        goto out;
    }
    if (!(out = malloc((size_t)j->max_tokens * sizeof *out))) {
        job_fail(j, 500, "out_of_memory", "out of memory");
        goto out;
    }
    vtok_gen_params gp = vtok_gen_default_params();
    gp.max_tokens = j->max_tokens;
    gp.greedy = j->greedy;
    gp.temperature = j->temperature;
    gp.top_p = j->top_p;
    gp.top_k = j->top_k;
    gp.repetition_penalty = j->repetition_penalty;
    gp.seed = j->seed;
    gp.stop_strings = j->n_stops ? (const char *const *)j->stops : NULL;
    gp.n_stop_strings = j->n_stops;
    stream_ctx sc = {c, j};
    gp.on_token = on_token;
    gp.user = &sc;
    if (j->stream) {
        pthread_mutex_lock(&j->mu);
        static const char first[] = "{\"role\":\"assistant\",\"content\":\"\"}";
        chunk(j, c->cfg.model_name, first, sizeof first - 1, NULL, 1);
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
    } else
        gp.on_token = NULL;
    int64_t n_out = 0;
    int rc = vtok_llm_generate(c->lctx, &gp, out, j->max_tokens, &n_out);
    if (rc && rc != VTOK_ELIMIT) {
        job_fail(j, 500, "generation_failed", vtok_llm_errmsg(c->lctx));
        goto out;
    }
    j->completion_tokens = n_out;
    sv_metrics_tokens(c->cfg.metrics, b.n, n_out);
    /* "length": cut by max_tokens or the context, not by a stop rule */
    int stopped = 0;
    if (n_out > 0) {
        vtok_llm_info li = c->li;
        stopped = out[n_out - 1] == li.eos;
    }
    j->finish = rc == VTOK_ELIMIT || (n_out == j->max_tokens && !stopped) ? "length" : "stop";
    if (!j->stream) {
        int64_t len = vtok_detokenize(m, out, n_out, 1, NULL, 0, &st);
        char *s = len >= 0 ? malloc((size_t)len + 1) : NULL;
        if (!s || vtok_detokenize(m, out, n_out, 1, s, (size_t)len + 1, &st) != len) {
            free(s);
            job_fail(j, 500, "generation_failed", st.msg[0] ? st.msg : "out of memory");
            goto out;
        }
        /* a stop string ends generation but is not part of the answer (OpenAI's `stop`) */
        for (int k = 0; k < j->n_stops; k++) {
            size_t sl = strlen(j->stops[k]);
            if (sl && (size_t)len >= sl && !memcmp(s + len - sl, j->stops[k], sl)) {
                len -= (int64_t)sl;
                j->finish = "stop";
                break;
            }
        }
        sv_buf_put(&j->text, s, (size_t)len);
        free(s);
    }
out:
    free(out);
    free(tids);
    if (!c->cfg.recipe)
        free((void *)b.ids);
    else
        vtok_llm_batch_free(&b);
    vtok_free(text);
}

static void *worker_main(void *arg)
{
    sv_chat *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->head && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        sv_chat_job *j = c->head;
        if (!j)
            break;
        c->head = j->next;
        if (!c->head)
            c->tail = NULL;
        c->depth--;
        pthread_mutex_unlock(&c->mu);
        pthread_mutex_lock(&j->mu);
        int gone = j->cancelled;
        pthread_mutex_unlock(&j->mu);
        if (!gone)
            answer(c, j);
        job_done(c, j);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

sv_chat *sv_chat_new(const sv_chat_cfg *cfg, char *err, size_t errlen)
{
    sv_chat *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->cfg = *cfg;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    vtok_llm_get_info(cfg->llm, &c->li);
    vtok_status st = {0};
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = cfg->threads;
    if (cfg->recipe) {
        vtok_recipe_get_info(cfg->recipe, &c->ri);
        if (!c->ri.id_format[0] && c->ri.d_out != c->li.hidden_size) {
            snprintf(err, errlen, "recipe %s gives tokens of width %lld, the LLM takes %lld",
                     c->ri.name, (long long)c->ri.d_out, (long long)c->li.hidden_size);
            sv_chat_free(c);
            return NULL;
        }
        if (!(c->rctx = vtok_recipe_ctx_new(cfg->recipe, &cp, &st))) {
            snprintf(err, errlen, "%s", st.msg);
            sv_chat_free(c);
            return NULL;
        }
    }
    if (!(c->lctx = vtok_llm_ctx_new(cfg->llm, cfg->n_ctx, &cp, &st))) {
        snprintf(err, errlen, "%s", st.msg);
        sv_chat_free(c);
        return NULL;
    }
    if (pthread_create(&c->th, NULL, worker_main, c)) {
        snprintf(err, errlen, "cannot start the chat worker: %s", strerror(errno));
        sv_chat_free(c);
        return NULL;
    }
    c->started = 1;
    return c;
}

void sv_chat_free(sv_chat *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->started)
        pthread_join(c->th, NULL);
    vtok_recipe_ctx_free(c->rctx);
    vtok_llm_ctx_free(c->lctx);
    for (int64_t i = 0; i < c->n_last; i++)
        vtok_image_free(&c->last[i]);
    free(c->last);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

int64_t sv_chat_depth(sv_chat *c)
{
    pthread_mutex_lock(&c->mu);
    int64_t d = c->depth;
    pthread_mutex_unlock(&c->mu);
    return d;
}

/* ------------------------------------------------------------ parse -- */

#define BAD(...) sv_fail(e, 400, "invalid_request_error", __VA_ARGS__)

/* A message's content: a string, or parts (text / image_url). Images are
 * decoded into j->imgs; the text gets one placeholder per image in front. */
static int message_content(sv_chat *c, sv_chat_job *j, const cJSON *content, int64_t mi,
                           int user, char **out, sv_err *e)
{
    sv_buf t = {0};
    int64_t imgs = 0;
    const char *ph = c->cfg.recipe ? c->ri.placeholder : "";
    if (cJSON_IsString(content))
        sv_buf_str(&t, content->valuestring);
    else if (cJSON_IsArray(content)) {
        const cJSON *part;
        cJSON_ArrayForEach(part, content)
        {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
            if (!cJSON_IsString(type)) {
                sv_buf_free(&t);
                return BAD("invalid_messages", "messages[%lld]: a content part needs a \"type\"",
                           (long long)mi);
            }
            if (!strcmp(type->valuestring, "text")) {
                const cJSON *tx = cJSON_GetObjectItemCaseSensitive(part, "text");
                if (!cJSON_IsString(tx)) {
                    sv_buf_free(&t);
                    return BAD("invalid_messages", "messages[%lld]: a text part needs \"text\"",
                               (long long)mi);
                }
                if (t.n)
                    sv_buf_str(&t, "\n");
                sv_buf_str(&t, tx->valuestring);
            } else if (!strcmp(type->valuestring, "image_url")) {
                const cJSON *iu = cJSON_GetObjectItemCaseSensitive(part, "image_url");
                const cJSON *url = cJSON_IsObject(iu) ? cJSON_GetObjectItemCaseSensitive(iu, "url")
                                                      : iu;
                if (!cJSON_IsString(url)) {
                    sv_buf_free(&t);
                    return BAD("invalid_messages",
                               "messages[%lld]: an image_url part needs image_url.url",
                               (long long)mi);
                }
                if (!c->cfg.recipe) {
                    sv_buf_free(&t);
                    return BAD("images_unsupported", "this server has no recipe: it takes no "
                               "images (start it with --recipe NAME --model DIR --llm DIR)");
                }
                if (j->n_images >= c->cfg.max_images || j->n_images >= 64 ||
                    j->n_images >= c->ri.max_images) {
                    sv_buf_free(&t);
                    return sv_fail(e, 413, "invalid_request_error", "too_many_images",
                                   "at most %lld images per request", (long long)(
                                   c->cfg.max_images < c->ri.max_images ? c->cfg.max_images
                                                                        : c->ri.max_images));
                }
                if (sv_image_from_uri(url->valuestring, strlen(url->valuestring),
                                      c->cfg.image_params, &j->imgs[j->n_images], j->n_images,
                                      e)) {
                    sv_buf_free(&t);
                    return -1;
                }
                j->n_images++;
                imgs++;
            } else {
                sv_buf_free(&t);
                return BAD("invalid_messages", "messages[%lld]: unknown content part type '%.40s'",
                           (long long)mi, type->valuestring);
            }
        }
    } else if (!cJSON_IsNull(content)) {
        return BAD("invalid_messages", "messages[%lld]: content must be a string or a list of "
                   "parts", (long long)mi);
    }
    if (user) { /* the text without its images: the question of a routing recipe */
        free(j->question);
        j->question = strndup(t.p ? t.p : "", t.n);
        if (!j->question) {
            sv_buf_free(&t);
            return sv_fail(e, 500, "server_error", "out_of_memory", "out of memory");
        }
    }
    sv_buf s = {0};
    for (int64_t k = 0; k < imgs; k++)
        sv_buf_str(&s, ph);
    if (imgs)
        sv_buf_str(&s, "\n");
    if (t.n)
        sv_buf_put(&s, t.p, t.n);
    sv_buf_free(&t);
    if (!s.p)
        sv_buf_str(&s, "");
    if (s.oom) {
        sv_buf_free(&s);
        return sv_fail(e, 500, "server_error", "out_of_memory", "out of memory");
    }
    *out = sv_buf_take(&s, NULL);
    return 0;
}

static int get_number(const cJSON *req, const char *key, double lo, double hi, double *v,
                      sv_err *e)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(req, key);
    if (!x || cJSON_IsNull(x))
        return 0;
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= lo && x->valuedouble <= hi))
        return BAD("invalid_parameter", "%s must be a number in [%g, %g]", key, lo, hi);
    *v = x->valuedouble;
    return 0;
}

static int parse(sv_chat *c, const cJSON *req, sv_chat_job *j, sv_err *e)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(req, "model");
    if (model && !cJSON_IsNull(model)) {
        if (!cJSON_IsString(model))
            return BAD("invalid_parameter", "model must be a string");
        if (strcmp(model->valuestring, c->cfg.model_name))
            return sv_fail(e, 404, "invalid_request_error", "model_not_found",
                           "the model '%.100s' does not exist here (this server has '%s')",
                           model->valuestring, c->cfg.model_name);
    }
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(req, "messages");
    int64_t n = cJSON_IsArray(msgs) ? cJSON_GetArraySize(msgs) : 0;
    if (n < 1)
        return BAD("invalid_messages", "messages must be a non-empty list");
    if (n > MAX_MSGS)
        return BAD("invalid_messages", "at most %d messages", MAX_MSGS);
    j->msgs = calloc((size_t)n, sizeof *j->msgs);
    j->contents = calloc((size_t)n, sizeof *j->contents);
    j->imgs = calloc(64, sizeof *j->imgs);
    if (!j->msgs || !j->contents || !j->imgs)
        return sv_fail(e, 500, "server_error", "out_of_memory", "out of memory");
    const cJSON *msg;
    cJSON_ArrayForEach(msg, msgs)
    {
        const int64_t i = j->n_msgs;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        if (!cJSON_IsString(role))
            return BAD("invalid_messages", "messages[%lld] needs a role", (long long)i);
        static const char *const roles[] = {"system", "user", "assistant", NULL};
        const char *r = NULL;
        for (int k = 0; roles[k]; k++)
            if (!strcmp(role->valuestring, roles[k]))
                r = roles[k];
        if (!r)
            return BAD("invalid_messages", "messages[%lld]: role must be system, user or "
                       "assistant", (long long)i);
        j->n_msgs++; /* from here its content is freed with the job */
        if (message_content(c, j, cJSON_GetObjectItemCaseSensitive(msg, "content"), i,
                            r == roles[1], &j->contents[i], e))
            return -1;
        j->msgs[i].role = r;
        j->msgs[i].content = j->contents[i];
    }
    double x = (double)c->cfg.max_tokens;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(req, "max_completion_tokens");
    if (get_number(req, mt && !cJSON_IsNull(mt) ? "max_completion_tokens" : "max_tokens", 1, 1e9,
                   &x, e))
        return -1;
    j->max_tokens = (int64_t)x < c->cfg.max_tokens ? (int64_t)x : c->cfg.max_tokens;
    double temp = 0, top_p = 1, top_k = 0, rep = 1, seed = 0, nn = 1;
    if (get_number(req, "temperature", 0, 2, &temp, e) || get_number(req, "top_p", 1e-9, 1, &top_p, e) ||
        get_number(req, "top_k", -1, 1 << 30, &top_k, e) ||
        get_number(req, "repetition_penalty", 1e-6, 100, &rep, e) ||
        get_number(req, "seed", -9007199254740992.0, 9007199254740992.0, &seed, e) ||
        get_number(req, "n", 1, 1, &nn, e))
        return -1;
    j->greedy = temp == 0.0; /* vtok's default: greedy, as `vtok chat` */
    j->temperature = temp == 0.0 ? 1.0f : (float)temp;
    j->top_p = (float)top_p;
    j->top_k = top_k > 0 ? (int64_t)top_k : 0;
    j->repetition_penalty = (float)rep;
    j->seed = (uint64_t)(int64_t)seed;
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(req, "stop");
    if (cJSON_IsString(stop)) {
        if (stop->valuestring[0] && !(j->stops[j->n_stops++] = strdup(stop->valuestring)))
            return sv_fail(e, 500, "server_error", "out_of_memory", "out of memory");
    } else if (cJSON_IsArray(stop)) {
        const cJSON *s;
        cJSON_ArrayForEach(s, stop)
        {
            if (!cJSON_IsString(s) || j->n_stops == MAX_STOPS)
                return BAD("invalid_parameter", "stop: up to %d strings", MAX_STOPS);
            if (s->valuestring[0] && !(j->stops[j->n_stops++] = strdup(s->valuestring)))
                return sv_fail(e, 500, "server_error", "out_of_memory", "out of memory");
        }
    } else if (stop && !cJSON_IsNull(stop))
        return BAD("invalid_parameter", "stop must be a string or a list of strings");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(req, "stream");
    if (st && !cJSON_IsNull(st) && !cJSON_IsBool(st))
        return BAD("invalid_parameter", "stream must be true or false");
    j->stream = cJSON_IsTrue(st);
    const cJSON *cpj = cJSON_GetObjectItemCaseSensitive(req, "cache_prompt");
    if (cpj && !cJSON_IsNull(cpj) && !cJSON_IsBool(cpj))
        return BAD("invalid_parameter", "cache_prompt must be true or false");
    j->no_cache = cJSON_IsFalse(cpj);
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(req, "stream_options");
    j->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    return 0;
}

int sv_chat_submit(sv_chat *c, const char *body, size_t len, sv_chat_job **job, int *stream,
                   sv_err *e)
{
    *job = NULL;
    cJSON *req = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(req)) {
        cJSON_Delete(req);
        return BAD("invalid_json", "the body is not a JSON object");
    }
    sv_chat_job *j = calloc(1, sizeof *j);
    if (!j) {
        cJSON_Delete(req);
        return sv_fail(e, 500, "server_error", "out_of_memory", "out of memory");
    }
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->owner = c;
    int rc = parse(c, req, j, e);
    cJSON_Delete(req);
    if (rc) {
        job_free(j);
        return -1;
    }
    j->created = (long long)time(NULL);
    snprintf(j->id, sizeof j->id, "chatcmpl-%llx%04llx", j->created,
             (unsigned long long)(atomic_fetch_add(&c->counter, 1) & 0xFFFF));
    j->refs = 2; /* the worker and the connection */
    pthread_mutex_lock(&c->mu);
    if (c->stop || c->depth >= c->cfg.max_queue) {
        int stopping = c->stop;
        pthread_mutex_unlock(&c->mu);
        job_free(j);
        return stopping ? sv_fail(e, 503, "server_error", "shutting_down",
                                  "the server is shutting down")
                        : sv_fail(e, 429, "rate_limit_error", "queue_full",
                                  "the chat queue is full (%lld waiting); retry later",
                                  (long long)c->cfg.max_queue);
    }
    if (c->tail)
        c->tail->next = j;
    else
        c->head = j;
    c->tail = j;
    c->depth++;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    *job = j;
    *stream = j->stream;
    return 0;
}
