/*
 * bert_api.c - the public BERT API (include/vtok.h "BERT"): the encoder
 * (bert.h), its WordPiece tokenizer (text/tokenizer.h), and contexts whose
 * arena is planned per call for the call's token count (a question of 20
 * tokens does not pay for 512 positions).
 */
#include "bert.h"

#include "../core/ctx.h"
#include "../text/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#define MAX_TEXT_BYTES ((size_t)16 << 20)

struct vtok_bert {
    vt_bert       m;
    vt_tokenizer *tok;
};

struct vtok_bert_ctx {
    vtok_bert  *m;
    vt_ctx_base b;
    vt_arena    arena;
    float      *work, *hidden, *pooled; /* arena, planned per call         */
    int32_t    *ids;                    /* arena: the ids of the last call */
    int64_t     n;                      /* tokens of the last call (0: none) */
    vtok_status st;
};

/* ---- model ---- */

vtok_bert *vtok_bert_load(const char *path, const vtok_model_params *user_p, vtok_status *st)
{
    if (!path) {
        vt_fail(st, VTOK_EINVAL, "no BERT path");
        return NULL;
    }
    vtok_model_params p = vtok_model_default_params();
    if (vt_params_read(&p, sizeof p, user_p, "vtok_model_params", st))
        return NULL;
    if (p.dtype < VTOK_DTYPE_F32 || p.dtype > VTOK_DTYPE_INT8) {
        vt_fail(st, VTOK_EINVAL, "vtok_model_params: dtype %d is not one a BERT encoder "
                "runs in (f32, bf16, int8)", p.dtype);
        return NULL;
    }
    vtok_bert *B = calloc(1, sizeof *B);
    if (!B) {
        vt_fail(st, VTOK_ENOMEM, "out of memory");
        return NULL;
    }
    char dir[4096];
    vt_folder_of(path, dir, sizeof dir);
    /* the tokenizer first: it is cheap, and a folder without one is useless */
    int rc = vt_tok_load(&B->tok, dir, st);
    if (!rc)
        rc = vt_bert_load(&B->m, path, p.use_mmap, p.dtype, p.threadpool, st);
    if (!rc && vt_tok_vocab_size(B->tok) > B->m.c.vocab)
        rc = vt_fail(st, VTOK_EFORMAT, "%s: the tokenizer has %lld ids but the model only %lld "
                     "(vocab_size)", dir, (long long)vt_tok_vocab_size(B->tok),
                     (long long)B->m.c.vocab);
    if (rc) {
        vtok_bert_free(B);
        return NULL;
    }
    return B;
}

void vtok_bert_free(vtok_bert *B)
{
    if (!B)
        return;
    vt_bert_free(&B->m);
    vt_tok_free(B->tok);
    free(B);
}

int64_t vtok_bert_dim(const vtok_bert *B)
{
    return B ? B->m.c.hidden : 0;
}

int64_t vtok_bert_max_tokens(const vtok_bert *B)
{
    return B ? B->m.c.max_pos : 0;
}

int vtok_bert_has_pooler(const vtok_bert *B)
{
    return B ? B->m.has_pooler : 0;
}

static int check_text(const char *text, vtok_status *st)
{
    if (!text)
        return vt_fail(st, VTOK_EINVAL, "no text");
    if (strnlen(text, MAX_TEXT_BYTES + 1) > MAX_TEXT_BYTES)
        return vt_fail(st, VTOK_ELIMIT, "text over %zu bytes", MAX_TEXT_BYTES);
    return 0;
}

int64_t vtok_bert_tokenize(const vtok_bert *B, const char *text, int32_t *ids, int64_t cap,
                           vtok_status *st)
{
    if (!B || cap < 0 || (!ids && cap > 0))
        return vt_fail(st, VTOK_EINVAL, "vtok_bert_tokenize: bad argument");
    int rc = check_text(text, st);
    if (rc)
        return rc;
    return vt_tok_encode(B->tok, text, strlen(text), 1, ids, cap, st);
}

/* ---- contexts ---- */

vtok_bert_ctx *vtok_bert_ctx_new(vtok_bert *B, const vtok_ctx_params *p, vtok_status *st)
{
    if (!B) {
        vt_fail(st, VTOK_EINVAL, "no BERT model");
        return NULL;
    }
    vtok_bert_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        vt_fail(st, VTOK_ENOMEM, "out of memory");
        return NULL;
    }
    c->m = B;
    if (vt_ctx_base_init(&c->b, p, "BERT context", st)) {
        vtok_bert_ctx_free(c);
        return NULL;
    }
    return c;
}

void vtok_bert_ctx_free(vtok_bert_ctx *c)
{
    if (!c)
        return;
    vt_arena_free(&c->arena);
    vt_ctx_base_free(&c->b);
    free(c);
}

const char *vtok_bert_errmsg(const vtok_bert_ctx *c)
{
    return c ? c->st.msg : "no context";
}

/* Place the buffers of a call of T tokens in the arena. */
static int plan(vtok_bert_ctx *c, int64_t T)
{
    const vt_bert *m = &c->m->m;
    vt_planner pl;
    vt_planner_init(&pl);
    vt_ctx_plan_exec(&c->b, &pl, T, T, m->lp_max_in);
    vt_plan_floats(&pl, &c->work, vt_bert_work_floats(m, T));
    vt_plan_floats(&pl, &c->hidden, vt_szmul(T, m->c.hidden));
    vt_plan_floats(&pl, &c->pooled, m->c.hidden);
    vt_plan_bytes(&pl, (void **)&c->ids, (size_t)T * sizeof(int32_t));
    int rc = vt_ctx_commit(&c->b, &pl, &c->arena, "a BERT encode", &c->st);
    vt_planner_free(&pl);
    return rc;
}

/* Pool the last call's states into out (hidden floats). */
static int pool_out(vtok_bert_ctx *c, int pooling, float *out)
{
    const vt_bert *m = &c->m->m;
    const int64_t H = m->c.hidden, T = c->n;
    switch (pooling) {
    case VTOK_BERT_CLS:
        memcpy(out, c->hidden, (size_t)H * sizeof *out);
        return 0;
    case VTOK_BERT_POOLER:
        memcpy(out, c->pooled, (size_t)H * sizeof *out);
        return 0;
    case VTOK_BERT_MEAN:
        /* sum(h * mask) / sum(mask) with an all-ones mask; the sum in double
         * so the order of the additions does not matter at float32 */
        for (int64_t j = 0; j < H; j++) {
            double s = 0;
            for (int64_t t = 0; t < T; t++)
                s += c->hidden[t * H + j];
            out[j] = (float)(s / (double)T);
        }
        return 0;
    }
    return VTOK_EINVAL; /* checked before the run */
}

static int check_pooling(vtok_bert_ctx *c, int pooling)
{
    if (pooling < VTOK_BERT_CLS || pooling > VTOK_BERT_MEAN)
        return vt_fail(&c->st, VTOK_EINVAL, "unknown pooling %d (VTOK_BERT_CLS, _POOLER, _MEAN)",
                       pooling);
    if (pooling == VTOK_BERT_POOLER && !c->m->m.has_pooler)
        return vt_fail(&c->st, VTOK_EUNSUPPORTED, "this checkpoint has no pooler "
                       "(pooler.dense): use CLS or mean pooling");
    return 0;
}

/* Run ids[0..T) (already in c->ids or copied there by the caller). */
static int run(vtok_bert_ctx *c, int64_t T, int pooling, float *out)
{
    const vt_bert *m = &c->m->m;
    for (int64_t t = 0; t < T; t++)
        if (c->ids[t] < 0 || c->ids[t] >= m->c.vocab) {
            c->n = 0;
            return vt_fail(&c->st, VTOK_EINVAL, "id %d at position %lld is outside the "
                           "vocabulary (0..%lld)", c->ids[t], (long long)t,
                           (long long)m->c.vocab - 1);
        }
    c->n = 0;
    int rc = vt_bert_forward(m, &c->b.exec, c->ids, T, c->hidden,
                             m->has_pooler ? c->pooled : NULL, c->work);
    if (rc)
        return vt_fail(&c->st, rc, "BERT encode aborted by the abort callback after %lld of "
                       "%lld layers", (long long)c->b.run.done, (long long)m->c.n_layers);
    c->n = T;
    return out ? pool_out(c, pooling, out) : 0;
}

static int too_long(vtok_bert_ctx *c, int64_t n)
{
    return vt_fail(&c->st, VTOK_ELIMIT, "the text is %lld tokens ([CLS]/[SEP] included) but the "
                   "model takes at most %lld (max_position_embeddings); shorten it or truncate "
                   "(--truncate)", (long long)n, (long long)c->m->m.c.max_pos);
}

/* Tokenize into c->ids (planning the arena for the count), truncating as
 * transformers' truncation=True, max_length=max_pos does for one sequence:
 * the text's tokens are cut (from the right) so that with the template's
 * special tokens the count is max_pos. */
static int tokenize(vtok_bert_ctx *c, const char *text, int truncate, int64_t *T)
{
    const vtok_bert *B = c->m;
    const int64_t max = B->m.c.max_pos;
    const size_t len = strlen(text);
    int64_t n = vt_tok_encode(B->tok, text, len, 1, NULL, 0, &c->st);
    if (n < 0)
        return (int)n;
    if (n == 0)
        return vt_fail(&c->st, VTOK_EINVAL, "the text gives no tokens (empty, and the tokenizer "
                       "adds no [CLS]/[SEP])");
    int rc;
    if (n <= max) {
        if ((rc = plan(c, n)))
            return rc;
        *T = vt_tok_encode(B->tok, text, len, 1, c->ids, n, &c->st);
        return *T == n ? 0 : vt_fail(&c->st, VTOK_EFORMAT, "tokenizer gave two counts");
    }
    if (!truncate)
        return too_long(c, n);
    int64_t nt = 0, n_text = 0;
    const int32_t *tmpl = vt_tok_template(B->tok, &nt);
    for (int64_t k = 0; k < nt; k++)
        n_text += tmpl[k] < 0;
    if (!tmpl)
        n_text = 1;
    const int64_t keep = max - (nt - (tmpl ? n_text : 0));
    if (n_text != 1 || keep < 0)
        return vt_fail(&c->st, VTOK_EUNSUPPORTED, "cannot truncate: the tokenizer's "
                       "post-processor does not place the text once in at most %lld tokens",
                       (long long)max);
    int64_t nb = vt_tok_encode(B->tok, text, len, 0, NULL, 0, &c->st);
    if (nb < 0)
        return (int)nb;
    int32_t *body = malloc((size_t)(nb > 0 ? nb : 1) * sizeof *body);
    if (!body)
        return vt_fail(&c->st, VTOK_ENOMEM, "out of memory");
    if (vt_tok_encode(B->tok, text, len, 0, body, nb, &c->st) != nb) {
        free(body);
        return vt_fail(&c->st, VTOK_EFORMAT, "tokenizer gave two counts");
    }
    if ((rc = plan(c, max))) {
        free(body);
        return rc;
    }
    int64_t k = 0;
    for (int64_t i = 0; i < (tmpl ? nt : 1); i++) {
        if (tmpl && tmpl[i] >= 0) {
            c->ids[k++] = tmpl[i];
        } else {
            const int64_t m = nb < keep ? nb : keep;
            memcpy(c->ids + k, body, (size_t)m * sizeof *body);
            k += m;
        }
    }
    free(body);
    *T = k;
    return 0;
}

static int encode(vtok_bert_ctx *c, const char *text, int pooling, int truncate, float *out)
{
    int rc;
    int64_t T = 0;
    if ((rc = check_text(text, &c->st)) || (rc = check_pooling(c, pooling)) ||
        (rc = tokenize(c, text, truncate, &T)))
        return rc;
    return run(c, T, pooling, out);
}

int vtok_bert_encode(vtok_bert_ctx *c, const char *text, int pooling, int truncate, float *out)
{
    if (!c)
        return VTOK_EINVAL;
    c->st.code = 0;
    c->st.msg[0] = '\0';
    c->n = 0;
    vt_ctx_run_begin(&c->b, c->m->m.c.n_layers, NULL, NULL, 0);
    return vt_ctx_end(&c->b, &c->st, encode(c, text, pooling, truncate, out));
}

static int encode_ids(vtok_bert_ctx *c, const int32_t *ids, int64_t n, int pooling, float *out)
{
    int rc;
    if (!ids || n < 1)
        return vt_fail(&c->st, VTOK_EINVAL, "vtok_bert_encode_ids: no ids");
    if (n > c->m->m.c.max_pos)
        return too_long(c, n);
    if ((rc = check_pooling(c, pooling)) || (rc = plan(c, n)))
        return rc;
    memcpy(c->ids, ids, (size_t)n * sizeof *ids);
    return run(c, n, pooling, out);
}

int vtok_bert_encode_ids(vtok_bert_ctx *c, const int32_t *ids, int64_t n, int pooling,
                         float *out)
{
    if (!c)
        return VTOK_EINVAL;
    c->st.code = 0;
    c->st.msg[0] = '\0';
    c->n = 0;
    vt_ctx_run_begin(&c->b, c->m->m.c.n_layers, NULL, NULL, 0);
    return vt_ctx_end(&c->b, &c->st, encode_ids(c, ids, n, pooling, out));
}

int vtok_bert_last_hidden(const vtok_bert_ctx *c, vtok_view *out)
{
    if (!c || !out)
        return VTOK_EINVAL;
    if (!c->n)
        return VTOK_EMISSING;
    *out = (vtok_view){.data = c->hidden, .n_dims = 3, .ne = {1, c->n, c->m->m.c.hidden, 1}};
    return 0;
}

int vtok_bert_get_ids(const vtok_bert_ctx *c, const int32_t **ids, int64_t *n)
{
    if (!c || !ids || !n)
        return VTOK_EINVAL;
    if (!c->n)
        return VTOK_EMISSING;
    *ids = c->ids;
    *n = c->n;
    return 0;
}
