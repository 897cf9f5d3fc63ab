/*
 * llm_ctx.h - what the public LLM API's files share (llm_api.c: load,
 * tokenizer, contexts, evaluation, prompts; llm_gen.c: generation): the
 * loaded model, a context, and the repetition penalty's history.
 */
#ifndef VT_LLM_CTX_H
#define VT_LLM_CTX_H

#include "llm.h"
#include "sample.h"

#include "../core/ctx.h"
#include "../text/jinja.h"
#include "../text/tokenizer.h"

#include <cjson/cJSON.h>

struct vtok_llm {
    vt_llm        m;
    vt_tokenizer *tok;
    vt_jinja     *tmpl;          /* tokenizer_config.json chat_template, or NULL */
    char          tmpl_err[384]; /* why there is none, for vtok_chat_render     */
    cJSON        *special;       /* {"bos_token": "...", ...} for templates      */
    int           dtype;
};

/* One sequence's ids for the repetition penalty (transformers' input_ids:
 * prompt ids, not inputs_embeds rows, then every generated id). */
typedef struct llm_hist {
    int32_t *id;
    int64_t *at;     /* the position of each (a generated id not yet run: n_past) */
    int64_t  n, cap;
} llm_hist;

struct vtok_llm_ctx {
    vtok_llm   *m;
    vt_ctx_base b;
    vt_arena    arena;
    vt_llm_seq  seq;        /* n_seq sequences (vtok_llm_ctx_new_batch) */
    int64_t     n_seq;
    float      *logits;     /* [n_seq, vocab], arena */
    int         have_logits;
    llm_hist   *hist;       /* [n_seq] */
    /* one-sequence contexts: the id at each of the first n_held positions
     * (-1: an embedding row), for vtok_llm_eval_reuse; n_held <= n_past
     * (positions evaluated otherwise are not recorded) */
    int32_t    *held;
    int64_t     n_held, held_cap;
    vtok_status st;
};

/* Record ids (NULL: n embedding rows; embed_pos / n_embeds mark rows among
 * ids) at positions at0.. when they follow the recorded prefix. */
void llm_held_push(vtok_llm_ctx *c, int64_t at0, const int32_t *ids, int64_t n,
                   const int64_t *embed_pos, int64_t n_embeds);

/* ids at positions at0, at0 + 1, ... into sequence seq's history. */
int llm_hist_push(vtok_llm_ctx *c, int64_t seq, const int32_t *ids, int64_t n, int64_t at0);

/* NaN or Inf in sequence seq's logits: an error (sampling them would be a
 * silent wrong answer); 0 when all are finite. */
int llm_logits_check(vtok_llm_ctx *c, int64_t seq, vtok_status *st);

#endif /* VT_LLM_CTX_H */
