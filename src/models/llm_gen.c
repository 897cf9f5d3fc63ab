/*
 * llm_gen.c - generation (vtok_llm_generate, vtok_llm_generate_batch): the
 * sampler (sample.h) over a context's logits, one token per step for every
 * sequence still running, with stop ids, stop strings and streaming.
 *
 * One loop serves one sequence and a batch: each step samples every running
 * sequence from its own logits, then runs the running ones through one
 * forward call (a batch's decode step: M = running sequences; those that
 * stopped sit out, vt_llm_forward_batch's n = 0), so a sequence never pays
 * for, or waits on, another's length.
 */
#include "llm_ctx.h"

#include <stdlib.h>
#include <string.h>

void vtok_gen_params_init(vtok_gen_params *p, size_t size)
{
    const vtok_gen_params d = {.size = sizeof d, .max_tokens = 256, .greedy = 1,
                               .temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                               .repetition_penalty = 1.0f, .seed = 0};
    vt_params_init(p, size, &d, sizeof d);
}

/* Bytes of s that form whole UTF-8 characters, not ending in an incomplete
 * sequence or a U+FFFD (a byte-fallback character still being completed). */
static size_t complete_prefix(const char *s, size_t n)
{
    size_t i = n;
    int back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i > 0) {
        const unsigned char c = (unsigned char)s[i - 1];
        const int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                        : (c & 0xF8) == 0xF0 ? 4 : 1;
        if (len > 1 && back + 1 < len)
            return i - 1; /* incomplete character at the end */
    }
    if (n >= 3 && !memcmp(s + n - 3, "\xEF\xBF\xBD", 3))
        return n - 3;
    return n;
}

/* One sequence's generation state. */
typedef struct gen_seq {
    vt_sampler s;
    int32_t   *out;     /* the caller's row (cap ids), or NULL */
    int32_t   *gen;     /* ids so far (limit)                  */
    int64_t    n;
    char      *text;    /* gen decoded, when streaming or stop strings need it */
    size_t     tcap, emitted;
    int        running;
} gen_seq;

/* gen decoded whole (decoders look at neighbours) into g->text; its length
 * or a negative code. */
static int64_t decode_text(const vtok_llm *L, gen_seq *g, vtok_status *st)
{
    int64_t len = vt_tok_decode(L->tok, g->gen, g->n, 1, g->text, g->tcap, st);
    if (len >= 0 && (size_t)len >= g->tcap) {
        const size_t tcap = (size_t)len + 256;
        char *t = realloc(g->text, tcap);
        if (!t)
            return vt_fail(st, VTOK_ENOMEM, "out of memory");
        g->text = t;
        g->tcap = tcap;
        len = vt_tok_decode(L->tok, g->gen, g->n, 1, g->text, g->tcap, st);
    }
    return len;
}

/*
 * After sequence seq emitted id: the stop rules and streaming. *stop is set
 * when the sequence ends here (a stop id, a stop string completed by this
 * token's text, or the callback's request). 0 or a failure.
 */
static int gen_emit(vtok_llm_ctx *c, const vtok_gen_params *p, int64_t seq, gen_seq *g,
                    int32_t id, int *stop)
{
    vtok_status *st = &c->st;
    const vtok_llm *L = c->m;
    *stop = 0;
    for (int64_t k = 0; k < p->n_stop_ids; k++)
        *stop |= p->stop_ids[k] == id;
    if (!p->stop_ids && id == vt_tok_eos(L->tok))
        *stop = 1;
    const int stream = p->on_token || p->on_token_seq;
    if (!stream && !p->n_stop_strings)
        return 0;
    const int64_t len = decode_text(L, g, st);
    if (len < 0)
        return (int)len;
    for (int64_t k = 0; !*stop && k < p->n_stop_strings; k++) {
        const char *ss = p->stop_strings[k];
        const size_t sl = ss ? strlen(ss) : 0;
        /* a stop string that ends in text not yet streamed */
        if (sl && (size_t)len >= sl) {
            const size_t from = g->emitted >= sl ? g->emitted - sl + 1 : 0;
            for (size_t i = from; i + sl <= (size_t)len && !*stop; i++)
                *stop = !memcmp(g->text + i, ss, sl);
        }
    }
    if (!stream)
        return 0;
    const size_t upto = *stop ? (size_t)len : complete_prefix(g->text, (size_t)len);
    const char *t = upto > g->emitted ? g->text + g->emitted : "";
    const size_t tn = upto > g->emitted ? upto - g->emitted : 0;
    if (tn || !*stop) { /* a token whose text is held back still reports its id */
        const int r = p->on_token_seq ? p->on_token_seq(p->user, seq, id, t, tn)
                                      : p->on_token(p->user, id, t, tn);
        if (r)
            *stop = 1;
    }
    if (upto > g->emitted)
        g->emitted = upto;
    return 0;
}

static int check_params(vtok_llm_ctx *c, const vtok_gen_params *p, const int32_t *out,
                        int64_t cap)
{
    vtok_status *st = &c->st;
    if (!c->have_logits)
        return vt_fail(st, VTOK_EINVAL, "generate: evaluate a prompt first");
    if ((!out && cap) || cap < 0 || p->max_tokens < 0 || p->n_stop_ids < 0 ||
        (p->n_stop_ids && !p->stop_ids) || p->n_stop_strings < 0 ||
        (p->n_stop_strings && !p->stop_strings))
        return vt_fail(st, VTOK_EINVAL, "vtok_gen_params: bad argument");
    if (c->n_seq > 1 && p->on_token && !p->on_token_seq)
        return vt_fail(st, VTOK_EINVAL, "a batch streams through on_token_seq (which names the "
                       "sequence), not on_token");
    return 0;
}

/*
 * Every sequence from its held positions: up to limit ids each into
 * out + i * cap (when out), n_out[i] written. A sequence that fills the
 * context stops there (VTOK_ELIMIT is returned at the end, naming the
 * first); the others go on.
 */
static int generate(vtok_llm_ctx *c, const vtok_gen_params *p, int32_t *out, int64_t cap,
                    int64_t *n_out)
{
    vtok_status *st = &c->st;
    const int64_t B = c->n_seq, V = c->m->m.c.vocab;
    int rc = check_params(c, p, out, cap);
    if (rc)
        return rc;
    const int64_t limit = p->max_tokens < cap || !out ? p->max_tokens : cap;
    gen_seq *g = calloc((size_t)B, sizeof *g);
    vt_llm_input *in = calloc((size_t)B, sizeof *in);
    int64_t *next = calloc((size_t)B, sizeof *next);
    if (!g || !in || !next) {
        rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < B && !rc; i++) {
        /* sequence i draws from seed + i: a batch of one is vtok_llm_generate */
        const vt_sample_params sp = {.greedy = p->greedy, .temperature = p->temperature,
                                     .top_k = p->top_k, .top_p = p->top_p, .min_p = p->min_p,
                                     .repetition_penalty = p->repetition_penalty,
                                     .seed = p->seed + (uint64_t)i};
        if ((rc = vt_sampler_init(&g[i].s, &sp, V, st)))
            break;
        g[i].out = out ? out + i * cap : NULL;
        g[i].gen = malloc((size_t)(limit > 0 ? limit : 1) * sizeof *g[i].gen);
        g[i].tcap = 256;
        g[i].text = malloc(g[i].tcap);
        g[i].running = limit > 0;
        if (!g[i].gen || !g[i].text)
            rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
    }
    int64_t full = -1, full_n = 0; /* the first sequence that filled its context */
    for (int64_t step = 0; !rc; step++) {
        if (vt_run_poll(&c->b.exec)) {
            rc = vt_fail(st, VTOK_EABORTED, "generation aborted by the abort callback after "
                         "%lld steps", (long long)step);
            break;
        }
        int64_t running = 0;
        for (int64_t i = 0; i < B && !rc; i++) {
            gen_seq *s = &g[i];
            in[i].n = 0;
            if (!s->running)
                continue;
            const llm_hist *h = &c->hist[i];
            const int32_t id = vt_sample(&s->s, c->logits + i * V, h->id, h->n);
            s->gen[s->n++] = id;
            if (s->out)
                s->out[s->n - 1] = id;
            int stop = 0;
            if ((rc = llm_hist_push(c, i, &id, 1, vt_llm_seq_past(&c->seq, i))) ||
                (rc = gen_emit(c, p, i, s, id, &stop)))
                break;
            if (stop || s->n == limit) {
                s->running = 0;
                continue;
            }
            if (vt_llm_seq_past(&c->seq, i) + 1 > c->seq.cap) {
                s->running = 0;
                if (full < 0) {
                    full = i;
                    full_n = s->n;
                }
                continue;
            }
            next[i] = id;
            in[i] = (vt_llm_input){.n = 1, .ids = &next[i]};
            running++;
        }
        if (rc || !running)
            break;
        vt_llm_output o = {.logits = c->logits};
        c->have_logits = 0;
        if ((rc = vt_llm_forward_batch(&c->seq, &c->b.exec, in, &o, st)))
            break;
        if (B == 1 && in[0].n) { /* what the context now holds, for vtok_llm_eval_reuse */
            const int32_t id = (int32_t)next[0];
            llm_held_push(c, vt_llm_seq_past(&c->seq, 0) - 1, &id, 1, NULL, 0);
        }
        for (int64_t i = 0; i < B && !rc; i++)
            if (in[i].n)
                rc = llm_logits_check(c, i, st);
        if (!rc)
            c->have_logits = 1;
    }
    if (!rc && full >= 0) {
        char who[48] = "";
        if (B > 1)
            snprintf(who, sizeof who, "sequence %lld: ", (long long)full);
        rc = vt_fail(st, VTOK_ELIMIT, "%sthe context of %lld positions is full after %lld new "
                     "tokens", who, (long long)c->seq.cap, (long long)full_n);
    }
done:
    for (int64_t i = 0; g && i < B; i++) {
        n_out[i] = g[i].n;
        vt_sampler_free(&g[i].s);
        free(g[i].gen);
        free(g[i].text);
    }
    free(g);
    free(in);
    free(next);
    return rc;
}

static int gen_entry(vtok_llm_ctx *c, const vtok_gen_params *user_p, int32_t *out, int64_t cap,
                     int64_t *n_out)
{
    vtok_gen_params p = vtok_gen_default_params();
    int rc = vt_params_read(&p, sizeof p, user_p, "vtok_gen_params", &c->st);
    if (rc)
        return vt_ctx_end(&c->b, &c->st, rc);
    vt_ctx_run_begin(&c->b, 0, NULL, NULL, 0);
    return vt_ctx_end(&c->b, &c->st, generate(c, &p, out, cap, n_out));
}

int vtok_llm_generate(vtok_llm_ctx *c, const vtok_gen_params *p, int32_t *out, int64_t cap,
                      int64_t *n_out)
{
    if (!c || !n_out)
        return VTOK_EINVAL;
    *n_out = 0;
    c->st.code = 0;
    c->st.msg[0] = '\0';
    if (c->n_seq > 1)
        return vt_fail(&c->st, VTOK_EINVAL, "vtok_llm_generate: the context holds %lld "
                       "sequences (use vtok_llm_generate_batch)", (long long)c->n_seq);
    return gen_entry(c, p, out, cap, n_out);
}

int vtok_llm_generate_batch(vtok_llm_ctx *c, const vtok_gen_params *p, int32_t *out,
                            int64_t cap, int64_t *n_out)
{
    if (!c || !n_out)
        return VTOK_EINVAL;
    for (int64_t i = 0; i < c->n_seq; i++)
        n_out[i] = 0;
    c->st.code = 0;
    c->st.msg[0] = '\0';
    return gen_entry(c, p, out, cap, n_out);
}
