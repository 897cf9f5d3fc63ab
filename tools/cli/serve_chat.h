/*
 * serve_chat.h - POST /v1/chat/completions of `vtok serve`: OpenAI chat
 * requests with image_url parts (data URIs), answered by one LLM worker (its
 * own recipe and LLM contexts) as `vtok chat` answers: the recipe's tokens
 * spliced into the chat-templated prompt, then generation, streamed as
 * server-sent events when the request asks for it.
 */
#ifndef VTOK_CLI_SERVE_CHAT_H
#define VTOK_CLI_SERVE_CHAT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "serve_util.h"
#include "vtok.h"

typedef struct sv_chat sv_chat;
typedef struct sv_chat_job sv_chat_job;

typedef struct sv_chat_cfg {
    vtok_llm    *llm;
    vtok_recipe *recipe;      /* NULL: text-only chat                          */
    const char  *format;      /* built-in chat format, NULL: the folder's own  */
    const char  *model_name;  /* the "model" of responses                      */
    int          threads;
    int64_t      n_ctx;       /* 0: the library's default                      */
    int64_t      max_tokens;  /* default and ceiling of a request's max_tokens */
    int64_t      max_queue;
    int64_t      max_images;  /* per request                                   */
    const struct vtok_image_params *image_params;
    sv_metrics  *metrics;
} sv_chat_cfg;

sv_chat *sv_chat_new(const sv_chat_cfg *cfg, char *err, size_t errlen);
void     sv_chat_free(sv_chat *c); /* finishes the queued requests first; NULL ok */
int64_t  sv_chat_depth(sv_chat *c);

/* Parse and queue a request (body: its JSON text). On success *job is
 * queued and *stream says how to answer: 0: sv_chat_wait_json, then
 * sv_chat_release; 1: sv_chat_read until it returns -1, then sv_chat_release
 * (sv_chat_release before the end cancels the generation). On failure
 * returns -1 with e filled (nothing queued). */
int sv_chat_submit(sv_chat *c, const char *body, size_t len, sv_chat_job **job, int *stream,
                   sv_err *e);
/* Non-streamed: wait for the answer; returns the response body (malloc'ed)
 * with *status 200, or an error body with its status. */
char *sv_chat_wait_json(sv_chat_job *j, int *status, size_t *len);
/* Streamed: up to max bytes of the event stream into buf, blocking until
 * there are some; -1 at the end. */
ssize_t sv_chat_read(sv_chat_job *j, char *buf, size_t max);
void    sv_chat_release(sv_chat_job *j);

#endif
