/*
 * llm_api.c - the public LLM API (include/vtok.h "LLM"): a decoder
 * (llm.h), its tokenizer (text/tokenizer.h) and chat template
 * (text/jinja.h), contexts over a KV cache, and generation with the
 * sampler (sample.h).
 */
#include "llm_ctx.h"
#include "pack.h"

#include "../io/io.h"
#include "../io/opt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_N_CTX 4096
#define MAX_CHUNK 512          /* positions one forward call runs (prefill in chunks) */
#define MAX_TOKENIZER_CONFIG ((size_t)16 << 20)

/* ---- load ---- */

/* A special token as tokenizer_config.json writes it: a string, or an
 * AddedToken dict {"content": ...}. */
static const char *token_text(const cJSON *v)
{
    if (cJSON_IsString(v))
        return v->valuestring;
    const cJSON *c = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "content") : NULL;
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

/* chat_template and the special tokens of tokenizer_config.json (optional
 * file). A template that vtok cannot parse does not fail the load: the
 * reason is kept for vtok_chat_render. */
static int read_tokenizer_config(vtok_llm *L, const char *dir, vtok_status *st)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/tokenizer_config.json", dir) >= (int)sizeof path)
        return vt_fail(st, VTOK_EINVAL, "path too long: %.200s", dir);
    L->special = cJSON_CreateObject();
    if (!L->special)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(L->tmpl_err, sizeof L->tmpl_err, "%.200s: no tokenizer_config.json", dir);
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    int rc = vt_read_file(path, MAX_TOKENIZER_CONFIG, &text, &len, st);
    if (rc)
        return rc;
    cJSON *cfg = vt_json_parse_object(text, len, "tokenizer_config.json", st);
    free(text);
    if (!cfg)
        return st && st->code ? st->code : VTOK_EFORMAT;
    static const char *const names[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    for (int i = 0; i < 4; i++) {
        const char *t = token_text(cJSON_GetObjectItemCaseSensitive(cfg, names[i]));
        if (t && !cJSON_AddStringToObject(L->special, names[i], t)) {
            cJSON_Delete(cfg);
            return vt_fail(st, VTOK_ENOMEM, "out of memory");
        }
    }
    /* chat_template: a string, or a list of {"name", "template"} (take "default") */
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    const char *src = cJSON_IsString(ct) ? ct->valuestring : NULL;
    if (cJSON_IsArray(ct)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, ct) {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(n) && !strcmp(n->valuestring, "default") && cJSON_IsString(t))
                src = t->valuestring;
        }
    }
    if (!src) {
        snprintf(L->tmpl_err, sizeof L->tmpl_err, "%.200s has no chat_template", path);
    } else {
        char err[128];
        if (vt_jinja_parse(&L->tmpl, src, strlen(src), err, sizeof err))
            snprintf(L->tmpl_err, sizeof L->tmpl_err, "chat_template of %.200s: %.127s", path,
                     err);
    }
    cJSON_Delete(cfg);
    return 0;
}

vtok_llm *vtok_llm_load(const char *path, const vtok_model_params *user_p, vtok_status *st)
{
    if (!path) {
        vt_fail(st, VTOK_EINVAL, "no LLM path");
        return NULL;
    }
    vtok_model_params p = vtok_model_default_params();
    if (vt_params_read(&p, sizeof p, user_p, "vtok_model_params", st))
        return NULL;
    if (p.dtype < VTOK_DTYPE_F32 || p.dtype > VTOK_DTYPE_Q4) {
        vt_fail(st, VTOK_EINVAL, "vtok_model_params: unknown dtype %d", p.dtype);
        return NULL;
    }
    vtok_llm *L = calloc(1, sizeof *L);
    if (!L) {
        vt_fail(st, VTOK_ENOMEM, "out of memory");
        return NULL;
    }
    L->dtype = p.dtype;
    char dir[4096];
    vt_folder_of(path, dir, sizeof dir);
    /* f32: the table's GEMM panels; bf16 / int8 / q4 replace the weights */
    int rc = vt_llm_load(&L->m, path, p.dtype, p.threadpool, st);
    if (!rc && (rc = vt_tok_load(&L->tok, dir, st)) == 0 &&
        vt_tok_vocab_size(L->tok) > L->m.c.vocab) {
        rc = vt_fail(st, VTOK_EFORMAT, "%s: the tokenizer has %lld ids but the model only %lld "
                     "(vocab_size)", dir, (long long)vt_tok_vocab_size(L->tok),
                     (long long)L->m.c.vocab);
    }
    if (!rc)
        rc = read_tokenizer_config(L, dir, st);
    if (rc) {
        vtok_llm_free(L);
        return NULL;
    }
    return L;
}

void vtok_llm_free(vtok_llm *L)
{
    if (!L)
        return;
    vt_llm_free(&L->m);
    vt_tok_free(L->tok);
    vt_jinja_free(L->tmpl);
    cJSON_Delete(L->special);
    free(L);
}

int vtok_llm_get_info(const vtok_llm *L, vtok_llm_info *info)
{
    if (!L || !info)
        return VTOK_EINVAL;
    static const char *const arch[] = {"llama", "mistral", "qwen2"};
    const vt_llm_config *c = &L->m.c;
    memset(info, 0, sizeof *info);
    info->arch = c->arch >= 0 && c->arch < 3 ? arch[c->arch] : "?";
    info->compute_dtype = vtok_dtype_name(L->dtype);
    info->vocab = c->vocab;
    info->hidden_size = c->hidden;
    info->n_layers = c->n_layers;
    info->n_heads = c->heads;
    info->n_kv_heads = c->kv_heads;
    info->head_dim = c->head_dim;
    info->max_tokens = c->max_tokens;
    info->bos = vt_tok_bos(L->tok);
    info->eos = vt_tok_eos(L->tok);
    info->has_chat_template = L->tmpl != NULL;
    return 0;
}

/* ---- text ---- */

int64_t vtok_tokenize(const vtok_llm *L, const char *text, size_t len, int add_special,
                      int32_t *ids, int64_t cap, vtok_status *st)
{
    if (!L || (!text && len) || (!ids && cap > 0) || cap < 0)
        return vt_fail(st, VTOK_EINVAL, "vtok_tokenize: bad argument");
    return vt_tok_encode(L->tok, text ? text : "", len, add_special, ids, cap, st);
}

int64_t vtok_detokenize(const vtok_llm *L, const int32_t *ids, int64_t n, int skip_special,
                        char *buf, size_t cap, vtok_status *st)
{
    if (!L || (!ids && n) || n < 0 || (!buf && cap))
        return vt_fail(st, VTOK_EINVAL, "vtok_detokenize: bad argument");
    return vt_tok_decode(L->tok, ids, n, skip_special, buf, cap, st);
}

const char *vtok_token_piece(const vtok_llm *L, int32_t id)
{
    return L ? vt_tok_piece(L->tok, id) : NULL;
}

int32_t vtok_token_id(const vtok_llm *L, const char *piece)
{
    return L && piece ? vt_tok_id(L->tok, piece) : -1;
}

const char *vtok_chat_template_name(int i)
{
    return i >= 0 ? vt_jinja_builtin_name(i) : NULL;
}

int vtok_chat_render(const vtok_llm *L, const char *name, const vtok_chat_msg *msgs, int64_t n,
                     int add_generation_prompt, char **out, vtok_status *st)
{
    if (!L || !out || n < 0 || (n && !msgs))
        return vt_fail(st, VTOK_EINVAL, "vtok_chat_render: bad argument");
    *out = NULL;
    vt_jinja *own = NULL;
    const vt_jinja *t = L->tmpl;
    char err[160];
    if (name) {
        const char *src = vt_jinja_builtin(name);
        if (!src)
            return vt_fail(st, VTOK_EINVAL, "unknown chat format '%s'", name);
        if (vt_jinja_parse(&own, src, strlen(src), err, sizeof err))
            return vt_fail(st, VTOK_EFORMAT, "chat format %s: %s", name, err);
        t = own;
    } else if (!t) {
        return vt_fail(st, VTOK_EMISSING, "%s", L->tmpl_err);
    }
    int rc = 0;
    cJSON *ctx = cJSON_Duplicate(L->special, 1), *list = cJSON_CreateArray();
    if (!ctx || !list || !cJSON_AddItemToObject(ctx, "messages", list)) {
        cJSON_Delete(list);
        rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        if (!m || !cJSON_AddItemToArray(list, m) ||
            !cJSON_AddStringToObject(m, "role", msgs[i].role ? msgs[i].role : "user") ||
            !cJSON_AddStringToObject(m, "content", msgs[i].content ? msgs[i].content : "")) {
            rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
            goto done;
        }
    }
    if (!cJSON_AddBoolToObject(ctx, "add_generation_prompt", add_generation_prompt != 0)) {
        rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
        goto done;
    }
    size_t len = 0;
    if ((rc = vt_jinja_render(t, ctx, out, &len, err, sizeof err)))
        rc = vt_fail(st, rc, "chat template: %s", err);
done:
    cJSON_Delete(ctx);
    vt_jinja_free(own);
    return rc;
}

/* ---- contexts ---- */

static vtok_llm_ctx *ctx_make(vtok_llm *L, int64_t n_seq, int64_t n_ctx,
                              const vtok_ctx_params *p, vtok_status *st)
{
    if (!L) {
        vt_fail(st, VTOK_EINVAL, "no LLM");
        return NULL;
    }
    if (n_seq < 1 || n_seq > VT_LLM_MAX_SEQ) {
        vt_fail(st, VTOK_EINVAL, "a batch context holds 1 to %d sequences, not %lld",
                VT_LLM_MAX_SEQ, (long long)n_seq);
        return NULL;
    }
    const int64_t max = L->m.c.max_tokens;
    if (n_ctx < 0 || n_ctx > max) {
        vt_fail(st, VTOK_ELIMIT, "context of %lld positions: the model holds at most %lld",
                (long long)n_ctx, (long long)max);
        return NULL;
    }
    if (n_ctx == 0)
        n_ctx = max < DEFAULT_N_CTX ? max : DEFAULT_N_CTX;
    vtok_llm_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        vt_fail(st, VTOK_ENOMEM, "out of memory");
        return NULL;
    }
    c->m = L;
    c->n_seq = n_seq;
    c->hist = calloc((size_t)n_seq, sizeof *c->hist);
    if (!c->hist) {
        free(c);
        vt_fail(st, VTOK_ENOMEM, "out of memory");
        return NULL;
    }
    /* rows of one call: prefill in chunks of MAX_CHUNK rows over all
     * sequences, and never fewer than one decode step of every sequence */
    const int64_t all = vt_szmul(n_seq, n_ctx);
    int64_t chunk = all < MAX_CHUNK ? all : MAX_CHUNK;
    chunk = chunk < n_seq ? n_seq : chunk;
    int rc = vt_ctx_base_init(&c->b, p, "LLM context", st);
    if (!rc)
        rc = vt_llm_seq_init_batch(&c->seq, &L->m, n_seq, n_ctx, chunk, st);
    if (!rc) {
        vt_planner pl;
        vt_planner_init(&pl);
        vt_ctx_plan_exec(&c->b, &pl, chunk, chunk, L->m.lp_max_in);
        vt_plan_floats(&pl, &c->logits, vt_szmul(n_seq, L->m.c.vocab));
        rc = vt_ctx_commit(&c->b, &pl, &c->arena, "an LLM context", st);
        vt_planner_free(&pl);
    }
    if (rc) {
        vtok_llm_ctx_free(c);
        return NULL;
    }
    return c;
}

vtok_llm_ctx *vtok_llm_ctx_new(vtok_llm *L, int64_t n_ctx, const vtok_ctx_params *p,
                               vtok_status *st)
{
    return ctx_make(L, 1, n_ctx, p, st);
}

vtok_llm_ctx *vtok_llm_ctx_new_batch(vtok_llm *L, int64_t n_seq, int64_t n_ctx,
                                     const vtok_ctx_params *p, vtok_status *st)
{
    return ctx_make(L, n_seq, n_ctx, p, st);
}

void vtok_llm_ctx_free(vtok_llm_ctx *c)
{
    if (!c)
        return;
    vt_llm_seq_free(&c->seq);
    vt_arena_free(&c->arena);
    vt_ctx_base_free(&c->b);
    for (int64_t i = 0; c->hist && i < c->n_seq; i++) {
        free(c->hist[i].id);
        free(c->hist[i].at);
    }
    free(c->hist);
    free(c->held);
    free(c);
}

void vtok_llm_reset(vtok_llm_ctx *c)
{
    if (!c)
        return;
    vt_llm_seq_reset(&c->seq);
    c->have_logits = 0;
    c->n_held = 0;
    for (int64_t i = 0; i < c->n_seq; i++)
        c->hist[i].n = 0;
}

void llm_held_push(vtok_llm_ctx *c, int64_t at0, const int32_t *ids, int64_t n,
                   const int64_t *embed_pos, int64_t n_embeds)
{
    if (c->n_seq != 1 || at0 != c->n_held || n < 1)
        return;
    if (c->n_held + n > c->held_cap) {
        int64_t cap = c->held_cap ? c->held_cap : 256;
        while (cap < c->n_held + n)
            cap *= 2;
        int32_t *h = realloc(c->held, (size_t)cap * sizeof *h);
        if (!h)
            return; /* not recorded: only less is reused */
        c->held = h;
        c->held_cap = cap;
    }
    int32_t *h = c->held + c->n_held;
    for (int64_t i = 0; i < n; i++)
        h[i] = ids ? ids[i] : -1;
    for (int64_t k = 0; ids && k < n_embeds; k++)
        h[embed_pos[k]] = -1;
    c->n_held += n;
}

int64_t vtok_llm_n_past(const vtok_llm_ctx *c)
{
    return c ? vt_llm_seq_past(&c->seq, 0) : 0;
}

const char *vtok_llm_errmsg(const vtok_llm_ctx *c)
{
    return c ? c->st.msg : "no context";
}

const float *vtok_llm_logits(const vtok_llm_ctx *c)
{
    return c && c->have_logits ? c->logits : NULL;
}

int llm_hist_push(vtok_llm_ctx *c, int64_t seq, const int32_t *ids, int64_t n, int64_t at0)
{
    llm_hist *h = &c->hist[seq];
    if (h->n + n > h->cap) {
        int64_t cap = h->cap ? h->cap : 256;
        while (cap < h->n + n)
            cap *= 2;
        int32_t *id = realloc(h->id, (size_t)cap * sizeof *id);
        if (id)
            h->id = id;
        int64_t *at = id ? realloc(h->at, (size_t)cap * sizeof *at) : NULL;
        if (!at)
            return vt_fail(&c->st, VTOK_ENOMEM, "out of memory");
        h->at = at;
        h->cap = cap;
    }
    memcpy(h->id + h->n, ids, (size_t)n * sizeof *ids);
    for (int64_t i = 0; i < n; i++)
        h->at[h->n + i] = at0 + i;
    h->n += n;
    return 0;
}

int vtok_llm_truncate(vtok_llm_ctx *c, int64_t n)
{
    if (!c)
        return VTOK_EINVAL;
    if (c->n_seq > 1)
        return vt_fail(&c->st, VTOK_EUNSUPPORTED, "vtok_llm_truncate: a context of %lld "
                       "sequences (one sequence only)", (long long)c->n_seq);
    if (n < 0 || n > c->seq.n_past)
        return vt_fail(&c->st, VTOK_EINVAL, "vtok_llm_truncate: %lld positions of %lld held",
                       (long long)n, (long long)c->seq.n_past);
    if (n == c->seq.n_past)
        return 0;
    c->seq.n_past = n; /* later positions are overwritten by the next eval */
    c->have_logits = 0;
    c->n_held = c->n_held < n ? c->n_held : n;
    llm_hist *h = &c->hist[0];
    int64_t k = 0;
    while (k < h->n && h->at[k] < n)
        k++;
    h->n = k;
    return 0;
}

int llm_logits_check(vtok_llm_ctx *c, int64_t seq, vtok_status *st)
{
    const int64_t V = c->m->m.c.vocab;
    const float *x = c->logits + seq * V;
    for (int64_t i = 0; i < V; i++)
        if (!isfinite(x[i])) {
            char who[48] = "";
            if (c->n_seq > 1)
                snprintf(who, sizeof who, "sequence %lld: ", (long long)seq);
            return vt_fail(st, VTOK_EFORMAT, "%sthe model's logits are not finite (logit %lld "
                           "is %g after %lld positions): NaN or Inf in its weights, or an "
                           "overflow", who, (long long)i, (double)x[i],
                           (long long)vt_llm_seq_past(&c->seq, seq));
        }
    return 0;
}

/* Run b in chunks of the sequence's max_chunk; logits of the last position. */
static int eval(vtok_llm_ctx *c, const vtok_llm_batch *b)
{
    vtok_status *st = &c->st;
    const vt_llm_config *cf = &c->m->m.c;
    if (c->n_seq > 1)
        return vt_fail(st, VTOK_EINVAL, "vtok_llm_eval: the context holds %lld sequences "
                       "(use vtok_llm_eval_batch)", (long long)c->n_seq);
    if (!b || b->n < 1 || (!b->ids && !b->embeds) || b->n_embeds < 0 ||
        (b->n_embeds && !b->embeds) || (b->ids && b->n_embeds && !b->embed_pos))
        return vt_fail(st, VTOK_EINVAL, "vtok_llm_eval: a batch needs n >= 1 and ids and/or "
                       "embeds (with embed_pos when both)");
    if (!b->ids && b->n_embeds != b->n)
        return vt_fail(st, VTOK_EINVAL, "vtok_llm_eval: %lld embedding rows for %lld positions",
                       (long long)b->n_embeds, (long long)b->n);
    if (c->seq.n_past + b->n > c->seq.cap)
        return vt_fail(st, VTOK_ELIMIT, "%lld positions held + %lld new exceed the context of "
                       "%lld", (long long)c->seq.n_past, (long long)b->n, (long long)c->seq.cap);
    for (int64_t i = 0; b->ids && i < b->n; i++)
        if (b->ids[i] < 0 || b->ids[i] >= cf->vocab)
            return vt_fail(st, VTOK_EINVAL, "id %d at position %lld is outside the vocabulary "
                           "(0..%lld)", b->ids[i], (long long)i, (long long)cf->vocab - 1);
    for (int64_t k = 0; b->ids && k < b->n_embeds; k++)
        if (b->embed_pos[k] < 0 || b->embed_pos[k] >= b->n ||
            (k && b->embed_pos[k] <= b->embed_pos[k - 1]))
            return vt_fail(st, VTOK_EINVAL, "embed_pos[%lld] = %lld: positions must rise inside "
                           "the batch of %lld", (long long)k, (long long)b->embed_pos[k],
                           (long long)b->n);
    c->have_logits = 0;
    int64_t *ids64 = NULL, *pos = NULL;
    const int64_t chunk = c->seq.max_chunk;
    if (b->ids) {
        ids64 = malloc((size_t)b->n * sizeof *ids64);
        pos = b->n_embeds ? malloc((size_t)b->n_embeds * sizeof *pos) : NULL;
        if (!ids64 || (b->n_embeds && !pos)) {
            free(ids64);
            free(pos);
            return vt_fail(st, VTOK_ENOMEM, "out of memory");
        }
        for (int64_t i = 0; i < b->n; i++)
            ids64[i] = b->ids[i];
    }
    int rc = 0;
    for (int64_t at = 0; at < b->n && !rc; at += chunk) {
        if (vt_run_poll(&c->b.exec)) {
            rc = vt_fail(st, VTOK_EABORTED, "LLM eval aborted by the abort callback after %lld "
                         "of %lld positions", (long long)at, (long long)b->n);
            break;
        }
        const int64_t n = b->n - at < chunk ? b->n - at : chunk;
        vt_llm_input in = {.n = n};
        if (b->ids) {
            in.ids = ids64 + at;
            int64_t ne = 0, first = -1;
            for (int64_t k = 0; k < b->n_embeds; k++)
                if (b->embed_pos[k] >= at && b->embed_pos[k] < at + n) {
                    first = first < 0 ? k : first;
                    pos[ne++] = b->embed_pos[k] - at;
                }
            /* rows of this chunk: embeds in embed_pos order, consecutive */
            in.embeds = ne ? b->embeds + first * cf->hidden : NULL;
            in.embed_pos = ne ? pos : NULL;
            in.n_embed = ne;
        } else {
            in.embeds = b->embeds + at * cf->hidden;
        }
        vt_llm_output out = {.logits = at + n == b->n ? c->logits : NULL};
        rc = vt_llm_forward(&c->seq, &c->b.exec, &in, &out, st);
    }
    free(ids64);
    free(pos);
    if (!rc)
        rc = llm_logits_check(c, 0, st);
    if (!rc) {
        c->have_logits = 1;
        /* transformers' repetition penalty sees input_ids: a prompt given as
         * ids counts, one given as inputs_embeds (with image rows) does not */
        if (b->ids && !b->n_embeds)
            rc = llm_hist_push(c, 0, b->ids, b->n, c->seq.n_past - b->n);
        llm_held_push(c, c->seq.n_past - b->n, b->ids, b->n, b->embed_pos, b->n_embeds);
    }
    return rc;
}

int vtok_llm_eval(vtok_llm_ctx *c, const vtok_llm_batch *b)
{
    if (!c)
        return VTOK_EINVAL;
    c->st.code = 0;
    c->st.msg[0] = '\0';
    vt_ctx_run_begin(&c->b, 0, NULL, NULL, 0);
    return vt_ctx_end(&c->b, &c->st, eval(c, b));
}

int vtok_llm_eval_reuse(vtok_llm_ctx *c, const vtok_llm_batch *b, int same_embeds,
                        int64_t *reused)
{
    if (reused)
        *reused = 0;
    if (!c)
        return VTOK_EINVAL;
    if (c->n_seq != 1 || !b || b->n < 1 || b->n_embeds < 0 || b->n_embeds > b->n ||
        (b->n_embeds && (!b->embeds || (b->ids && !b->embed_pos))) ||
        (!b->ids && b->n_embeds != b->n)) {
        c->st.code = 0;
        return vt_fail(&c->st, VTOK_EINVAL, "vtok_llm_eval_reuse: a one-sequence context and "
                       "a batch of n >= 1 (ids and/or embeds; embed_pos with both)");
    }
    /* the common prefix, leaving b's last position to evaluate (its logits) */
    const int64_t lim = b->n - 1 < c->n_held ? b->n - 1 : c->n_held;
    int64_t keep = 0, k = 0;
    while (keep < lim) {
        const int row = !b->ids || (k < b->n_embeds && b->embed_pos[k] == keep);
        const int32_t want = row ? -1 : b->ids[keep];
        if (c->held[keep] != want || (row && !same_embeds))
            break;
        k += row && b->ids;
        keep++;
    }
    if (!b->ids) /* rows only: row i is position i */
        k = keep;
    int rc = vtok_llm_truncate(c, keep);
    if (rc)
        return rc;
    int64_t *pos = NULL;
    if (b->ids && b->n_embeds > k && !(pos = malloc((size_t)(b->n_embeds - k) * sizeof *pos))) {
        c->st.code = 0;
        return vt_fail(&c->st, VTOK_ENOMEM, "out of memory");
    }
    for (int64_t i = k; pos && i < b->n_embeds; i++)
        pos[i - k] = b->embed_pos[i] - keep;
    const int64_t hidden = c->m->m.c.hidden;
    vtok_llm_batch rest = {.n = b->n - keep, .ids = b->ids ? b->ids + keep : NULL,
                           .embeds = b->n_embeds > k ? b->embeds + k * hidden : NULL,
                           .embed_pos = pos, .n_embeds = b->n_embeds - k};
    rc = vtok_llm_eval(c, &rest);
    free(pos);
    if (!rc && reused)
        *reused = keep;
    return rc;
}

/* ---- batches (vtok_llm_ctx_new_batch) ---- */

int64_t vtok_llm_n_seq(const vtok_llm_ctx *c)
{
    return c ? c->n_seq : 0;
}

int64_t vtok_llm_n_past_seq(const vtok_llm_ctx *c, int64_t seq)
{
    return c ? vt_llm_seq_past(&c->seq, seq) : 0;
}

const float *vtok_llm_logits_seq(const vtok_llm_ctx *c, int64_t seq)
{
    if (!c || !c->have_logits || seq < 0 || seq >= c->n_seq)
        return NULL;
    return c->logits + seq * c->m->m.c.vocab;
}

/* Sequence i's new positions, checked as vtok_llm_eval checks a batch. */
static int check_seq(vtok_llm_ctx *c, const vtok_llm_batch *b, int64_t i)
{
    vtok_status *st = &c->st;
    const vt_llm_config *cf = &c->m->m.c;
    const int64_t held = vt_llm_seq_past(&c->seq, i);
    if (b->n < 1)
        return vt_fail(st, VTOK_EINVAL, "sequence %lld is empty (every sequence needs at least "
                       "one position)", (long long)i);
    if (!b->ids && !b->embeds)
        return vt_fail(st, VTOK_EINVAL, "sequence %lld has neither ids nor embeds",
                       (long long)i);
    if (b->n_embeds < 0 || (b->n_embeds && !b->embeds) || (b->ids && b->n_embeds &&
                                                           !b->embed_pos))
        return vt_fail(st, VTOK_EINVAL, "sequence %lld: embeds rows need embeds (and embed_pos "
                       "with ids)", (long long)i);
    if (!b->ids && b->n_embeds != b->n)
        return vt_fail(st, VTOK_EINVAL, "sequence %lld: %lld embedding rows for %lld positions",
                       (long long)i, (long long)b->n_embeds, (long long)b->n);
    if (b->n > c->seq.cap - held)
        return vt_fail(st, VTOK_ELIMIT, "sequence %lld: %lld positions held + %lld new exceed "
                       "the context of %lld", (long long)i, (long long)held, (long long)b->n,
                       (long long)c->seq.cap);
    for (int64_t j = 0; b->ids && j < b->n; j++)
        if (b->ids[j] < 0 || b->ids[j] >= cf->vocab)
            return vt_fail(st, VTOK_EINVAL, "sequence %lld: id %d at position %lld is outside "
                           "the vocabulary (0..%lld)", (long long)i, b->ids[j], (long long)j,
                           (long long)cf->vocab - 1);
    for (int64_t k = 0; b->ids && k < b->n_embeds; k++)
        if (b->embed_pos[k] < 0 || b->embed_pos[k] >= b->n ||
            (k && b->embed_pos[k] <= b->embed_pos[k - 1]))
            return vt_fail(st, VTOK_EINVAL, "sequence %lld: embed_pos[%lld] = %lld: positions "
                           "must rise inside the batch of %lld", (long long)i, (long long)k,
                           (long long)b->embed_pos[k], (long long)b->n);
    return 0;
}

/*
 * Every sequence's new positions, as one left-padded batch: right-aligned
 * to the longest, run in column ranges of max_chunk / n_seq columns (one
 * call when the rows fit), each sequence taking its real tokens of the
 * range. All end in the last range, which writes every sequence's logits.
 */
static int eval_seqs(vtok_llm_ctx *c, const vtok_llm_batch *seqs)
{
    vtok_status *st = &c->st;
    const vt_llm_config *cf = &c->m->m.c;
    const int64_t B = c->n_seq, H = cf->hidden;
    if (!seqs)
        return vt_fail(st, VTOK_EINVAL, "vtok_llm_eval_batch: no sequences");
    int64_t T = 0, n_ids = 0, n_rows = 0;
    for (int64_t i = 0; i < B; i++) {
        int rc = check_seq(c, &seqs[i], i);
        if (rc)
            return rc;
        T = seqs[i].n > T ? seqs[i].n : T;
        n_ids += seqs[i].ids ? seqs[i].n : 0; /* each <= n_ctx: no overflow */
        n_rows += seqs[i].ids ? seqs[i].n_embeds : 0;
    }
    c->have_logits = 0;
    int64_t *ids64 = malloc((size_t)(n_ids > 0 ? n_ids : 1) * sizeof *ids64);
    int64_t *pos = malloc((size_t)(n_rows > 0 ? n_rows : 1) * sizeof *pos);
    vt_llm_input *in = malloc((size_t)B * sizeof *in);
    if (!ids64 || !pos || !in) {
        free(ids64);
        free(pos);
        free(in);
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    }
    /* ids as int64, each sequence's from its offset */
    for (int64_t i = 0, o = 0; i < B; i++)
        for (int64_t j = 0; seqs[i].ids && j < seqs[i].n; j++)
            ids64[o++] = seqs[i].ids[j];
    const int64_t cols = c->seq.max_chunk / B; /* >= 1: max_chunk >= n_seq */
    int rc = 0;
    for (int64_t c0 = 0; c0 < T && !rc; c0 += cols) {
        if (vt_run_poll(&c->b.exec)) {
            rc = vt_fail(st, VTOK_EABORTED, "LLM eval aborted by the abort callback after %lld "
                         "of %lld columns", (long long)c0, (long long)T);
            break;
        }
        const int64_t c1 = T - c0 < cols ? T : c0 + cols;
        int64_t *ip = ids64, *pp = pos;
        for (int64_t i = 0; i < B; i++) {
            const vtok_llm_batch *b = &seqs[i];
            const int64_t pad = T - b->n;
            int64_t t0 = c0 - pad, t1 = c1 - pad;
            t0 = t0 < 0 ? 0 : t0;
            t1 = t1 < 0 ? 0 : t1;
            vt_llm_input *x = &in[i];
            memset(x, 0, sizeof *x);
            x->n = t1 > t0 ? t1 - t0 : 0;
            if (b->ids) {
                x->ids = ip + t0;
                int64_t ne = 0, first = -1;
                for (int64_t k = 0; k < b->n_embeds; k++)
                    if (b->embed_pos[k] >= t0 && b->embed_pos[k] < t1) {
                        first = first < 0 ? k : first;
                        pp[ne++] = b->embed_pos[k] - t0;
                    }
                /* rows of this range: embeds in embed_pos order, consecutive */
                x->embeds = ne ? b->embeds + first * H : NULL;
                x->embed_pos = ne ? pp : NULL;
                x->n_embed = ne;
                ip += b->n;
                pp += b->n_embeds;
            } else {
                x->embeds = b->embeds + t0 * H;
            }
        }
        vt_llm_output out = {.logits = c1 == T ? c->logits : NULL};
        rc = vt_llm_forward_batch(&c->seq, &c->b.exec, in, &out, st);
    }
    free(ids64);
    free(pos);
    free(in);
    for (int64_t i = 0; i < B && !rc; i++)
        rc = llm_logits_check(c, i, st);
    if (!rc) {
        c->have_logits = 1;
        /* each sequence's ids count for generation's repetition penalty, as
         * in vtok_llm_eval (its own ids: not the pads transformers' batched
         * input_ids would hold) */
        for (int64_t i = 0; i < B && !rc; i++)
            if (seqs[i].ids && !seqs[i].n_embeds)
                rc = llm_hist_push(c, i, seqs[i].ids, seqs[i].n,
                                   vt_llm_seq_past(&c->seq, i) - seqs[i].n);
    }
    return rc;
}

/* vtok_llm_eval_batch (n_ids given) and vtok_llm_decode_batch (one id each). */
static int eval_ids(vtok_llm_ctx *c, const int32_t *const *ids, const int32_t *one,
                    const int64_t *n_ids)
{
    vtok_status *st = &c->st;
    if ((!ids && !one) || (ids && !n_ids))
        return vt_fail(st, VTOK_EINVAL, "vtok_llm_eval_batch: no ids");
    vtok_llm_batch *seqs = calloc((size_t)c->n_seq, sizeof *seqs);
    if (!seqs)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    int rc = 0;
    for (int64_t i = 0; i < c->n_seq && !rc; i++) {
        seqs[i].n = one ? 1 : n_ids[i];
        seqs[i].ids = one ? one + i : ids[i];
        if (!seqs[i].ids && seqs[i].n > 0)
            rc = vt_fail(st, VTOK_EINVAL, "sequence %lld: no ids", (long long)i);
    }
    if (!rc)
        rc = eval_seqs(c, seqs);
    free(seqs);
    return rc;
}

int vtok_llm_eval_seqs(vtok_llm_ctx *c, const vtok_llm_batch *seqs)
{
    if (!c)
        return VTOK_EINVAL;
    c->st.code = 0;
    c->st.msg[0] = '\0';
    vt_ctx_run_begin(&c->b, 0, NULL, NULL, 0);
    return vt_ctx_end(&c->b, &c->st, eval_seqs(c, seqs));
}

int vtok_llm_eval_batch(vtok_llm_ctx *c, const int32_t *const *ids, const int64_t *n_ids)
{
    if (!c)
        return VTOK_EINVAL;
    c->st.code = 0;
    c->st.msg[0] = '\0';
    vt_ctx_run_begin(&c->b, 0, NULL, NULL, 0);
    return vt_ctx_end(&c->b, &c->st, eval_ids(c, ids, NULL, n_ids));
}

int vtok_llm_decode_batch(vtok_llm_ctx *c, const int32_t *ids)
{
    if (!c)
        return VTOK_EINVAL;
    c->st.code = 0;
    c->st.msg[0] = '\0';
    vt_ctx_run_begin(&c->b, 0, NULL, NULL, 0);
    return vt_ctx_end(&c->b, &c->st, ids ? eval_ids(c, NULL, ids, NULL)
                                         : vt_fail(&c->st, VTOK_EINVAL,
                                                   "vtok_llm_decode_batch: no ids"));
}

/* ---- prompts with images (vtok_llm_prompt) ---- */

typedef struct sbuf {
    char  *p;
    size_t n, cap;
    int    oom;
} sbuf;

static void sb_add(sbuf *s, const char *t, size_t n)
{
    if (s->oom)
        return;
    if (s->n + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->n + n + 1)
            cap *= 2;
        char *p = realloc(s->p, cap);
        if (!p) {
            s->oom = 1;
            return;
        }
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->n, t, n);
    s->n += n;
    s->p[s->n] = '\0';
}

/* ids of text[0..len) into a growing list. */
typedef struct ilist {
    int32_t *p;
    int64_t  n, cap;
} ilist;

static int il_tokenize(ilist *l, const vtok_llm *L, const char *t, size_t len, int special,
                       int64_t skip, vtok_status *st)
{
    int64_t n = vt_tok_encode(L->tok, t, len, special, NULL, 0, st);
    if (n < 0)
        return (int)n;
    int32_t *tmp = malloc((size_t)(n > 0 ? n : 1) * sizeof *tmp);
    if (!tmp)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    vt_tok_encode(L->tok, t, len, special, tmp, n, st);
    int rc = 0;
    for (int64_t i = skip < n ? skip : n; i < n && !rc; i++) {
        if (l->n == l->cap) {
            int64_t cap = l->cap ? 2 * l->cap : 256;
            int32_t *p = realloc(l->p, (size_t)cap * sizeof *p);
            if (!p) {
                rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
                break;
            }
            l->p = p;
            l->cap = cap;
        }
        l->p[l->n++] = tmp[i];
    }
    free(tmp);
    return rc;
}

static int il_push(ilist *l, int32_t id, vtok_status *st)
{
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 256;
        int32_t *p = realloc(l->p, (size_t)cap * sizeof *p);
        if (!p)
            return vt_fail(st, VTOK_ENOMEM, "out of memory");
        l->p = p;
        l->cap = cap;
    }
    l->p[l->n++] = id;
    return 0;
}

void vtok_llm_batch_free(vtok_llm_batch *b)
{
    if (!b)
        return;
    free((void *)b->ids);
    free((void *)b->embed_pos);
    memset(b, 0, sizeof *b);
}

int64_t vtok_llm_image_ids(const vtok_llm *L, const vtok_recipe_info *lay, const int32_t *ids,
                           int64_t n, int64_t *codes, int64_t cap, vtok_status *st)
{
    if (!L || !lay || n < 0 || (n && !ids) || cap < 0 || (cap && !codes))
        return vt_fail(st, VTOK_EINVAL, "vtok_llm_image_ids: bad argument");
    if (!lay->id_format || !lay->id_format[0] || vt_id_format_check(lay->id_format))
        return vt_fail(st, VTOK_EINVAL, "recipe %s writes no image ids (no layout id_format)",
                       lay->name ? lay->name : "?");
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *piece = vtok_token_piece(L, ids[i]);
        int64_t code;
        if (!piece || vt_id_parse(lay->id_format, piece, &code) ||
            (lay->vocab > 0 && code >= lay->vocab))
            continue;
        if (k < cap)
            codes[k] = code;
        k++;
    }
    return k;
}

const float *vt_llm_embed_table(const vtok_llm *L, int64_t *vocab, int64_t *hidden)
{
    *vocab = L->m.c.vocab;
    *hidden = L->m.c.hidden;
    return L->m.embed;
}

int vtok_llm_embed(const vtok_llm *L, const int32_t *ids, int64_t n, float *out, vtok_status *st)
{
    if (!L || n < 0 || (n && (!ids || !out)))
        return vt_fail(st, VTOK_EINVAL, "vtok_llm_embed: bad argument");
    const int64_t V = L->m.c.vocab, H = L->m.c.hidden;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= V)
            return vt_fail(st, VTOK_EINVAL, "token id %d (position %lld) is outside the "
                           "vocabulary of %lld", ids[i], (long long)i, (long long)V);
        memcpy(out + i * H, L->m.embed + (int64_t)ids[i] * H, (size_t)H * sizeof(float));
    }
    return 0;
}

int vtok_chat_add_special(const vtok_llm *L, const char *format, const char *text)
{
    if (!format)
        return 0; /* a folder's own template writes its special tokens as text */
    /* MoVA (model_vqa_loader.py: tokenizer_image_token -> tokenizer(chunk)) tokenizes
     * its conv_mova_llama3 prompt, which starts with a literal <|begin_of_text|>, with
     * the special tokens on: Llama-3's tokenizer then begins it with two */
    if (!strcmp(format, "mova_llama3"))
        return 1;
    vtok_llm_info li;
    vtok_llm_get_info(L, &li);
    const char *bos = li.bos >= 0 ? vtok_token_piece(L, li.bos) : NULL;
    return !(bos && bos[0] && text && !strncmp(text, bos, strlen(bos)));
}

const char *vtok_chat_format_name(const vtok_llm *L, const char *format)
{
    if (format && strcmp(format, "template"))
        return format;
    vtok_llm_info li = {0};
    if (L)
        vtok_llm_get_info(L, &li);
    return li.has_chat_template ? NULL : "vicuna_v1";
}

int vtok_chat_prompt(const vtok_llm *L, const vtok_recipe_info *lay, const char *format,
                     const char *question, int64_t n_images, const int64_t *image_tokens,
                     const int64_t *image_ids, vtok_llm_batch *b, char **text_out,
                     vtok_status *st)
{
    if (text_out)
        *text_out = NULL;
    if (!L || !lay || !question || n_images < 0 || !b)
        return vt_fail(st, VTOK_EINVAL, "vtok_chat_prompt: bad argument");
    if (format && !strcmp(format, "raw")) /* the question is the whole prompt */
        return vtok_llm_prompt(L, lay, question, n_images, image_tokens, image_ids, 1, b, st);
    const char *name = vtok_chat_format_name(L, format);
    /* the user turn: one placeholder per image, then "\n" (LLaVA's "<image>\n" + q;
     * SEED-LLaMA puts its image tokens right before the question), then q */
    const char *ph = lay->placeholder ? lay->placeholder : "";
    const char *sep = name && !strncmp(name, "seed_llama", 10) ? "" : "\n";
    size_t n = strlen(ph) * (size_t)n_images + strlen(question) + 2;
    if (n_images > 4096)
        return vt_fail(st, VTOK_ELIMIT, "vtok_chat_prompt: %lld images", (long long)n_images);
    char *turn = malloc(n);
    if (!turn)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    turn[0] = '\0';
    for (int64_t i = 0; i < n_images; i++)
        strcat(turn, ph);
    if (n_images)
        strcat(turn, sep);
    strcat(turn, question);
    vtok_chat_msg msg = {.role = "user", .content = turn};
    char *text = NULL;
    int rc = vtok_chat_render(L, name, &msg, 1, 1, &text, st);
    free(turn);
    if (!rc)
        rc = vtok_llm_prompt(L, lay, text, n_images, image_tokens, image_ids,
                             vtok_chat_add_special(L, name, text), b, st);
    if (!rc && text_out)
        *text_out = text;
    else
        vt_free(text);
    return rc;
}

int64_t vtok_llm_batch_text_ids(const vtok_llm_batch *b, int32_t *ids, int64_t cap)
{
    if (!b || b->n < 0 || (cap > 0 && !ids) || b->n_embeds < 0 ||
        (b->ids && b->n_embeds && !b->embed_pos))
        return VTOK_EINVAL;
    if (!b->ids) /* rows only */
        return 0;
    int64_t n = 0;
    for (int64_t i = 0, k = 0; i < b->n; i++) {
        if (k < b->n_embeds && b->embed_pos[k] == i) { /* embed_pos ascends */
            k++;
            continue;
        }
        if (n < cap)
            ids[n] = b->ids[i];
        n++;
    }
    return n;
}

int vtok_llm_prompt(const vtok_llm *L, const vtok_recipe_info *lay, const char *text,
                    int64_t n_images, const int64_t *image_tokens, const int64_t *image_ids,
                    int add_special, vtok_llm_batch *b, vtok_status *st)
{
    if (!b)
        return vt_fail(st, VTOK_EINVAL, "vtok_llm_prompt: no batch");
    memset(b, 0, sizeof *b);
    if (!L || !lay || !text || n_images < 0 || (n_images && !image_tokens) ||
        !lay->placeholder || !lay->placeholder[0])
        return vt_fail(st, VTOK_EINVAL, "vtok_llm_prompt: bad argument");
    /* all_rows: the image rows in all; T: the count when every image has the
     * same (fill and id_format layouts need that) */
    int64_t all_rows = 0, T = n_images ? image_tokens[0] : 0;
    for (int64_t k = 0; k < n_images; k++) {
        if (image_tokens[k] < 1 || image_tokens[k] > (INT64_MAX / 8) - all_rows)
            return vt_fail(st, VTOK_EINVAL, "vtok_llm_prompt: image %lld has %lld tokens",
                           (long long)k, (long long)image_tokens[k]);
        all_rows += image_tokens[k];
        T = image_tokens[k] == T ? T : -1;
    }
    const char *ph = lay->placeholder, *before = lay->before ? lay->before : "";
    const char *after = lay->after ? lay->after : "", *fill = lay->fill ? lay->fill : "";
    const char *idf = lay->id_format ? lay->id_format : "";
    const size_t phl = strlen(ph);
    int64_t count = 0;
    for (const char *s = strstr(text, ph); s; s = strstr(s + phl, ph))
        count++;
    if (count != n_images)
        return vt_fail(st, VTOK_EINVAL, "the prompt has %lld '%s' placeholders for %lld images",
                       (long long)count, ph, (long long)n_images);
    if (idf[0] && n_images && !image_ids)
        return vt_fail(st, VTOK_EINVAL, "recipe layout writes image ids (%s): give image_ids",
                       idf);
    if ((idf[0] || fill[0]) && T < 0)
        return vt_fail(st, VTOK_EINVAL, "recipe layout '%s' needs the same token count for "
                       "every image", idf[0] ? idf : fill);
    ilist ids = {0};
    int64_t *pos = NULL, n_pos = 0;
    int rc = 0;
    sbuf sb = {0};
    if (idf[0] || fill[0]) {
        /* the whole text with each placeholder written out, tokenized at once */
        const char *s = text;
        for (int64_t k = 0; k < n_images; k++) {
            const char *h = strstr(s, ph);
            sb_add(&sb, s, (size_t)(h - s));
            sb_add(&sb, before, strlen(before));
            for (int64_t t = 0; t < T; t++) {
                if (idf[0]) {
                    char tok[96];
                    int64_t len = vt_id_format(idf, image_ids[k * T + t], tok, sizeof tok);
                    if (len < 0 || len >= (int64_t)sizeof tok) {
                        rc = vt_fail(st, VTOK_EINVAL, "bad id_format '%s'", idf);
                        goto done;
                    }
                    sb_add(&sb, tok, (size_t)len);
                } else {
                    sb_add(&sb, fill, strlen(fill));
                }
            }
            sb_add(&sb, after, strlen(after));
            s = h + phl;
        }
        sb_add(&sb, s, strlen(s));
        if (sb.oom) {
            rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
            goto done;
        }
        if ((rc = il_tokenize(&ids, L, sb.p ? sb.p : "", sb.n, add_special, 0, st)))
            goto done;
        if (fill[0] && n_images) {
            /* the fill token: the id that fill x T holds T times (other ids
             * may come from its edges: "I " x T ends in a lone space piece) */
            ilist f = {0};
            sbuf fs = {0};
            for (int64_t t = 0; t < T; t++)
                sb_add(&fs, fill, strlen(fill));
            rc = fs.oom ? vt_fail(st, VTOK_ENOMEM, "out of memory")
                        : il_tokenize(&f, L, fs.p, fs.n, 0, 0, st);
            int32_t fid = -1;
            for (int64_t i = 0; !rc && fid < 0 && i < f.n && i < 4; i++) {
                int64_t cnt = 0;
                for (int64_t j = 0; j < f.n; j++)
                    cnt += f.p[j] == f.p[i];
                fid = cnt == T ? f.p[i] : -1;
            }
            free(f.p);
            free(fs.p);
            if (rc)
                goto done;
            if (fid < 0) {
                rc = vt_fail(st, VTOK_EINVAL, "layout fill '%s' is not one token per repetition "
                             "in this tokenizer", fill);
                goto done;
            }
            /* runs of the fill token whose length is a multiple of T: images */
            if (!(pos = malloc((size_t)(n_images * T) * sizeof *pos))) {
                rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
                goto done;
            }
            for (int64_t i = 0; i < ids.n;) {
                int64_t j = i;
                while (j < ids.n && ids.p[j] == fid)
                    j++;
                if (j > i && (j - i) % T == 0)
                    for (int64_t q = i; q < j && n_pos < n_images * T; q++)
                        pos[n_pos++] = q;
                i = j > i ? j : i + 1;
            }
            if (n_pos != n_images * T) {
                rc = vt_fail(st, VTOK_EINVAL, "the tokenized prompt holds %lld runs of %lld '%s' "
                             "tokens for %lld images (does the text touch the fill tokens?)",
                             (long long)(n_pos / T), (long long)T, fill, (long long)n_images);
                goto done;
            }
        }
    } else {
        /* LLaVA tokenizer_image_token: pieces tokenized alone; if the first
         * starts with BOS, BOS is kept once and every piece loses its first id */
        if (!(pos = malloc((size_t)(all_rows > 0 ? all_rows : 1) * sizeof *pos))) {
            rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
            goto done;
        }
        const int32_t bos = vt_tok_bos(L->tok);
        int64_t offset = 0;
        const char *s = text;
        for (int64_t k = 0; k <= n_images; k++) {
            const char *h = k < n_images ? strstr(s, ph) : s + strlen(s);
            sb.n = 0;
            sb_add(&sb, k ? after : "", k ? strlen(after) : 0);
            sb_add(&sb, s, (size_t)(h - s));
            if (k < n_images)
                sb_add(&sb, before, strlen(before));
            if (sb.oom) {
                rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
                goto done;
            }
            int64_t start = ids.n;
            if ((rc = il_tokenize(&ids, L, sb.p ? sb.p : "", sb.n, add_special, k ? offset : 0,
                                  st)))
                goto done;
            if (k == 0 && add_special && ids.n > 0 && ids.p[0] == bos && bos >= 0) {
                offset = 1; /* the first piece keeps its BOS; later pieces drop theirs */
                (void)start;
            }
            for (int64_t t = 0; k < n_images && t < image_tokens[k]; t++) {
                pos[n_pos++] = ids.n;
                if ((rc = il_push(&ids, 0, st))) /* not read: the row replaces it */
                    goto done;
            }
            s = k < n_images ? h + phl : s;
        }
    }
    b->n = ids.n;
    b->ids = ids.p;
    b->embed_pos = idf[0] ? NULL : pos;
    b->n_embeds = idf[0] ? 0 : n_pos;
    ids.p = NULL;
    if (idf[0])
        free(pos);
    pos = NULL;
done:
    free(ids.p);
    free(pos);
    free(sb.p);
    return rc;
}
