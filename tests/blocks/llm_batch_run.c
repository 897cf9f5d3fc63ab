/*
 * llm_batch_run.c - batches of sequences through the decoder LLM (parity tests of
 * left-padded batches, tests/blocks/llm_batch_parity.py).
 *
 *   llm_batch_run --model DIR --ids A.npy,B.npy,... [--rows-seq K --embeds E.npy --embed-pos P.npy]
 *                 [--logits L.npy] [--hidden H.npy] [--gen N --gen-out G.npy]
 *                 [--api 1 [--last L.npy] [--alone A.npy]] [--n-seq S] [--ctx C] [--threads T]
 *
 *   ids        one int64 [n_i] file per sequence (an empty file: an empty sequence)
 *   rows-seq   sequence K takes rows of inputs_embeds E [k, hidden] at positions P int64 [k]
 *   internal path (src/models/llm.h: vt_llm_forward_batch, one prefill call):
 *     logits   float [B, T, vocab], left-padded to the longest T (pad rows 0)
 *     hidden   float [n_layers + 1, B, T, hidden], the same layout
 *     gen      greedy continuation, one decode call of B rows per step -> int64 [B, N]
 *   api 1: the public API instead (vtok_llm_ctx_new_batch, vtok_llm_eval_seqs,
 *     vtok_llm_decode_batch, vtok_llm_logits_seq; the folder needs a tokenizer.json):
 *     last     float [B, vocab] each sequence's last-position logits after the prompt
 *     gen      as above, through vtok_llm_decode_batch
 *     alone    each sequence alone: vtok_llm_ctx_new + vtok_llm_eval + greedy
 *              vtok_llm_generate -> int64 [B, N]
 *     n-seq    the n_seq given to vtok_llm_ctx_new_batch (default: the files' count)
 *     gen-batch  G.npy: a second batch context, greedy vtok_llm_generate_batch of up
 *              to N ids per sequence -> int64 [B, N], -1 after a sequence stopped;
 *              streamed through on_token_seq (each sequence's callbacks must
 *              match its ids, or the tool fails)
 *     stop-id  S: generate_batch stops a sequence at id S (default: never)
 *     cb-stop  K: sequence 1's on_token_seq asks to stop at its K-th token
 *   ctx        positions per sequence (default: longest + N)
 * Errors: one line on stderr, exit status 1.
 */
#include "models/llm.h"
#include "vtok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEQ_FILES 64

static int die(const char *msg)
{
    fprintf(stderr, "llm_batch_run: %s\n", msg);
    return 1;
}

static int64_t argmax(const float *x, int64_t n)
{
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) /* first index of the maximum, as torch.argmax */
            b = i;
    return b;
}

static void *alloc_n(int64_t n, size_t size)
{
    return vt_alloc((size_t)(n > 0 ? n : 1) * size);
}

typedef struct opts {
    const char *model, *rows_p, *epos_p, *log_p, *hid_p, *gen_p, *last_p, *alone_p, *gb_p;
    int         threads, api;
    int64_t     n_gen, ctx, rows_seq, n_seq_new, stop_id, cb_stop;
} opts;

typedef struct seqs {
    int64_t  B, T, n[MAX_SEQ_FILES];
    int64_t *ids[MAX_SEQ_FILES];
    float   *rows;  /* rows of sequence rows_seq */
    int64_t *epos, n_rows;
} seqs;

/* The internal path: one prefill call over all rows, then decode calls. */
static int run_internal(const opts *o, seqs *q, vtok_status *st)
{
    vt_llm m;
    vt_llm_seq s = {0};
    vt_exec e = {0};
    vt_pool *pool = NULL;
    float *scratch = NULL, *logits = NULL, *hidden = NULL, *pl = NULL, *ph = NULL, *last = NULL;
    int64_t *gen = NULL;
    int rc = vt_llm_load(&m, o->model, VTOK_DTYPE_F32, NULL, st);
    if (rc)
        return rc;
    const vt_llm_config *c = &m.c;
    const int64_t B = q->B, T = q->T, V = c->vocab, H = c->hidden, NL = c->n_layers + 1;
    int64_t R = 0;
    for (int64_t b = 0; b < B; b++)
        R += q->n[b];
    const int64_t cap = o->ctx > 0 ? o->ctx : T + o->n_gen;
    vt_llm_input in[MAX_SEQ_FILES];
    if ((rc = vt_llm_seq_init_batch(&s, &m, B, cap, R, st)))
        goto done;
    pool = vt_pool_new(o->threads);
    e.pool = pool;
    e.k = vt_kernels_get();
    e.scratch_stride = vt_exec_scratch_floats(R);
    scratch = alloc_n(o->threads * e.scratch_stride, sizeof(float));
    e.scratch = scratch;
    pl = alloc_n(R * V, sizeof(float));
    ph = o->hid_p ? alloc_n(NL * R * H, sizeof(float)) : NULL;
    logits = o->log_p ? alloc_n(B * T * V, sizeof(float)) : NULL;
    hidden = o->hid_p ? alloc_n(NL * B * T * H, sizeof(float)) : NULL;
    last = alloc_n(B * V, sizeof(float));
    gen = alloc_n(B * o->n_gen, sizeof(int64_t));
    if (!pool || !scratch || !pl || (o->hid_p && !ph) || (o->log_p && !logits) ||
        (o->hid_p && !hidden) || !last || !gen) {
        rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
        goto done;
    }
    for (int64_t b = 0; b < B; b++) {
        in[b] = (vt_llm_input){.n = q->n[b], .ids = q->ids[b]};
        if (b == o->rows_seq)
            in[b] = (vt_llm_input){.n = q->n[b], .ids = q->ids[b], .embeds = q->rows,
                                   .embed_pos = q->epos, .n_embed = q->n_rows};
    }
    vt_llm_output out = {.logits = pl, .all_logits = 1, .hidden = ph};
    if ((rc = vt_llm_forward_batch(&s, &e, in, &out, st)))
        goto done;
    /* packed rows -> left-padded [B, T] (pad rows stay 0) */
    if (logits)
        memset(logits, 0, (size_t)(B * T * V) * sizeof(float));
    if (hidden)
        memset(hidden, 0, (size_t)(NL * B * T * H) * sizeof(float));
    for (int64_t b = 0, r = 0; b < B; r += q->n[b], b++) {
        const int64_t pad = T - q->n[b];
        if (logits)
            memcpy(logits + (b * T + pad) * V, pl + r * V, (size_t)(q->n[b] * V) * sizeof(float));
        for (int64_t l = 0; hidden && l < NL; l++)
            memcpy(hidden + ((l * B + b) * T + pad) * H, ph + (l * R + r) * H,
                   (size_t)(q->n[b] * H) * sizeof(float));
        memcpy(last + b * V, pl + (r + q->n[b] - 1) * V, (size_t)V * sizeof(float));
    }
    if (o->log_p) {
        int64_t sh[3] = {B, T, V};
        if ((rc = vt_npy_write_f32(o->log_p, logits, 3, sh, st)))
            goto done;
    }
    if (o->hid_p) {
        int64_t sh[4] = {NL, B, T, H};
        if ((rc = vt_npy_write_f32(o->hid_p, hidden, 4, sh, st)))
            goto done;
    }
    for (int64_t g = 0; g < o->n_gen; g++) {
        int64_t step[MAX_SEQ_FILES];
        for (int64_t b = 0; b < B; b++)
            gen[b * o->n_gen + g] = step[b] = argmax(last + b * V, V);
        if (g + 1 == o->n_gen)
            break;
        for (int64_t b = 0; b < B; b++)
            in[b] = (vt_llm_input){.n = 1, .ids = &step[b]};
        vt_llm_output o1 = {.logits = last};
        if ((rc = vt_llm_forward_batch(&s, &e, in, &o1, st)))
            goto done;
    }
    if (o->n_gen) {
        int64_t sh[2] = {B, o->n_gen};
        rc = vt_npy_write_i64(o->gen_p, gen, 2, sh, st);
    }
done:
    vt_llm_seq_free(&s);
    vt_llm_free(&m);
    vt_pool_free(pool);
    vt_free(scratch);
    vt_free(logits);
    vt_free(hidden);
    vt_free(pl);
    vt_free(ph);
    vt_free(last);
    vt_free(gen);
    return rc;
}

/* The public API path. */
/* on_token_seq of --gen-batch: ids seen per sequence, checked against the
 * output; sequence 1 asks to stop at its cb_stop-th token. */
typedef struct cb_state {
    int64_t n[MAX_SEQ_FILES], cb_stop, bad;
    int32_t last[MAX_SEQ_FILES];
} cb_state;

static int on_seq(void *user, int64_t seq, int32_t id, const char *text, size_t len)
{
    cb_state *s = user;
    (void)text;
    (void)len;
    if (seq < 0 || seq >= MAX_SEQ_FILES) {
        s->bad = 1;
        return 1;
    }
    s->n[seq]++;
    s->last[seq] = id;
    return seq == 1 && s->n[seq] == s->cb_stop;
}

/* --gen-batch: greedy vtok_llm_generate_batch in a fresh batch context. */
static int gen_batch(const opts *o, vtok_llm *m, const vtok_llm_batch *bs, int64_t B,
                     int64_t cap, const vtok_ctx_params *cp, int64_t *gen, vtok_status *st)
{
    const int64_t N = o->n_gen > 0 ? o->n_gen : 1;
    int32_t *out = alloc_n(B * N, sizeof(int32_t));
    int64_t n_out[MAX_SEQ_FILES] = {0};
    vtok_llm_ctx *c = vtok_llm_ctx_new_batch(m, B, cap, cp, st);
    if (!out || !c) {
        vt_free(out);
        vtok_llm_ctx_free(c);
        return out ? (st->code ? st->code : VTOK_EINVAL) : vt_fail(st, VTOK_ENOMEM, "oom");
    }
    cb_state cs = {.cb_stop = o->cb_stop};
    const int32_t stop = o->stop_id >= 0 ? (int32_t)o->stop_id : -1;
    vtok_gen_params gp = vtok_gen_default_params();
    gp.max_tokens = o->n_gen;
    gp.stop_ids = &stop;
    gp.n_stop_ids = 1;
    gp.on_token_seq = on_seq;
    gp.user = &cs;
    int rc = vtok_llm_eval_seqs(c, bs);
    if (!rc)
        rc = vtok_llm_generate_batch(c, &gp, out, N, n_out);
    if (rc)
        vt_fail(st, rc, "%s", vtok_llm_errmsg(c));
    for (int64_t b = 0; b < B && !rc; b++) {
        if (cs.bad || cs.n[b] != n_out[b] || (n_out[b] && cs.last[b] != out[b * N + n_out[b] - 1]))
            rc = vt_fail(st, VTOK_EINVAL, "sequence %lld: %lld callbacks for %lld ids",
                         (long long)b, (long long)cs.n[b], (long long)n_out[b]);
        for (int64_t g = 0; g < o->n_gen; g++)
            gen[b * o->n_gen + g] = g < n_out[b] ? out[b * N + g] : -1;
    }
    if (!rc)
        rc = vt_npy_write_i64(o->gb_p, gen, 2, (int64_t[2]){B, o->n_gen}, st);
    vtok_llm_ctx_free(c);
    vt_free(out);
    return rc;
}

static int run_api(const opts *o, seqs *q, vtok_status *st)
{
    const int64_t B = q->B;
    int rc = 0;
    vtok_model_params mp = vtok_model_default_params();
    vtok_ctx_params cp = vtok_ctx_default_params();
    mp.n_threads = cp.n_threads = o->threads;
    vtok_llm *m = vtok_llm_load(o->model, &mp, st);
    if (!m)
        return st->code ? st->code : VTOK_EINVAL;
    vtok_llm_info info;
    vtok_llm_get_info(m, &info);
    const int64_t V = info.vocab;
    const int64_t cap = o->ctx > 0 ? o->ctx : q->T + o->n_gen;
    int32_t *ids32[MAX_SEQ_FILES] = {0};
    vtok_llm_batch bs[MAX_SEQ_FILES];
    float *last = alloc_n(B * V, sizeof(float));
    int64_t *gen = alloc_n(B * o->n_gen, sizeof(int64_t));
    int32_t *g32 = alloc_n(o->n_gen, sizeof(int32_t));
    vtok_llm_ctx *c = NULL;
    if (!last || !gen || !g32) {
        rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
        goto done;
    }
    for (int64_t b = 0; b < B; b++) {
        if (!(ids32[b] = alloc_n(q->n[b], sizeof(int32_t)))) {
            rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
            goto done;
        }
        for (int64_t i = 0; i < q->n[b]; i++) /* replaced positions: any id, not read */
            ids32[b][i] = q->ids[b][i] < 0 ? 0 : (int32_t)q->ids[b][i];
        bs[b] = (vtok_llm_batch){.n = q->n[b], .ids = ids32[b]};
        if (b == o->rows_seq) {
            bs[b].embeds = q->rows;
            bs[b].embed_pos = q->epos;
            bs[b].n_embeds = q->n_rows;
        }
    }
    c = vtok_llm_ctx_new_batch(m, o->n_seq_new >= 0 ? o->n_seq_new : B, cap, &cp, st);
    if (!c) {
        rc = st->code ? st->code : VTOK_EINVAL;
        goto done;
    }
    if ((rc = vtok_llm_eval_seqs(c, bs))) {
        vt_fail(st, rc, "%s", vtok_llm_errmsg(c));
        goto done;
    }
    for (int64_t b = 0; b < B; b++)
        memcpy(last + b * V, vtok_llm_logits_seq(c, b), (size_t)V * sizeof(float));
    if (o->last_p) {
        int64_t sh[2] = {B, V};
        if ((rc = vt_npy_write_f32(o->last_p, last, 2, sh, st)))
            goto done;
    }
    for (int64_t g = 0; g < o->n_gen; g++) {
        int32_t step[MAX_SEQ_FILES];
        for (int64_t b = 0; b < B; b++) {
            step[b] = (int32_t)argmax(vtok_llm_logits_seq(c, b), V);
            gen[b * o->n_gen + g] = step[b];
        }
        if (g + 1 == o->n_gen)
            break;
        if ((rc = vtok_llm_decode_batch(c, step))) {
            vt_fail(st, rc, "%s", vtok_llm_errmsg(c));
            goto done;
        }
    }
    if (o->n_gen && (rc = vt_npy_write_i64(o->gen_p, gen, 2, (int64_t[2]){B, o->n_gen}, st)))
        goto done;
    if (o->alone_p) { /* each sequence alone, the single-sequence API */
        for (int64_t b = 0; b < B; b++) {
            vtok_llm_ctx *one = vtok_llm_ctx_new(m, cap, &cp, st);
            if (!one) {
                rc = st->code ? st->code : VTOK_EINVAL;
                goto done;
            }
            vtok_gen_params gp = vtok_gen_default_params();
            const int32_t never = -1;
            gp.max_tokens = o->n_gen;
            gp.stop_ids = &never;
            gp.n_stop_ids = 1;
            int64_t got = 0;
            rc = vtok_llm_eval(one, &bs[b]);
            if (!rc)
                rc = vtok_llm_generate(one, &gp, g32, o->n_gen, &got);
            if (!rc && got != o->n_gen)
                rc = vt_fail(st, VTOK_EINVAL, "sequence %lld alone: %lld of %lld tokens",
                             (long long)b, (long long)got, (long long)o->n_gen);
            else if (rc)
                vt_fail(st, rc, "%s", vtok_llm_errmsg(one));
            vtok_llm_ctx_free(one);
            if (rc)
                goto done;
            for (int64_t g = 0; g < o->n_gen; g++)
                gen[b * o->n_gen + g] = g32[g];
        }
        rc = vt_npy_write_i64(o->alone_p, gen, 2, (int64_t[2]){B, o->n_gen}, st);
    }
    if (!rc && o->gb_p)
        rc = gen_batch(o, m, bs, B, cap, &cp, gen, st);
done:
    vtok_llm_ctx_free(c);
    vtok_llm_free(m);
    for (int64_t b = 0; b < B; b++)
        vt_free(ids32[b]);
    vt_free(last);
    vt_free(gen);
    vt_free(g32);
    return rc;
}

int main(int argc, char **argv)
{
    opts o = {.threads = 1, .rows_seq = -1, .n_seq_new = -1, .stop_id = -1};
    char *ids_list = NULL;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return die("missing value after the last option");
        if (!strcmp(a, "--model")) o.model = v;
        else if (!strcmp(a, "--ids")) ids_list = argv[i + 1];
        else if (!strcmp(a, "--rows-seq")) o.rows_seq = atoll(v);
        else if (!strcmp(a, "--embeds")) o.rows_p = v;
        else if (!strcmp(a, "--embed-pos")) o.epos_p = v;
        else if (!strcmp(a, "--logits")) o.log_p = v;
        else if (!strcmp(a, "--hidden")) o.hid_p = v;
        else if (!strcmp(a, "--gen")) o.n_gen = atoll(v);
        else if (!strcmp(a, "--gen-out")) o.gen_p = v;
        else if (!strcmp(a, "--api")) o.api = atoi(v);
        else if (!strcmp(a, "--last")) o.last_p = v;
        else if (!strcmp(a, "--alone")) o.alone_p = v;
        else if (!strcmp(a, "--n-seq")) o.n_seq_new = atoll(v);
        else if (!strcmp(a, "--gen-batch")) o.gb_p = v;
        else if (!strcmp(a, "--stop-id")) o.stop_id = atoll(v);
        else if (!strcmp(a, "--cb-stop")) o.cb_stop = atoll(v);
        else if (!strcmp(a, "--ctx")) o.ctx = atoll(v);
        else if (!strcmp(a, "--threads")) o.threads = atoi(v);
        else return die("unknown option");
    }
    if (!o.model || !ids_list || o.threads < 1 || o.n_gen < 0 || (o.n_gen && !o.gen_p) ||
        (o.rows_seq >= 0 && (!o.rows_p || !o.epos_p)))
        return die("usage: llm_batch_run --model DIR --ids A.npy,B.npy,... [...] (see the "
                   "source)");
    vtok_status st = {0};
    seqs q = {0};
    int rc = 0, nd = 0;
    int64_t sh[VT_MAX_DIMS];
    for (char *p = strtok(ids_list, ","); p; p = strtok(NULL, ",")) {
        if (q.B == MAX_SEQ_FILES) {
            rc = vt_fail(&st, VTOK_ELIMIT, "at most %d sequences", MAX_SEQ_FILES);
            goto done;
        }
        if ((rc = vt_npy_read_i64(p, &q.ids[q.B], &nd, sh, &st)))
            goto done;
        if (nd != 1) {
            rc = vt_fail(&st, VTOK_ESHAPE, "%s: ids must be int64 [n]", p);
            goto done;
        }
        q.n[q.B] = sh[0];
        q.T = sh[0] > q.T ? sh[0] : q.T;
        q.B++;
    }
    if (o.rows_seq >= q.B) {
        rc = vt_fail(&st, VTOK_EINVAL, "rows-seq %lld: no such sequence", (long long)o.rows_seq);
        goto done;
    }
    if (o.rows_seq >= 0) {
        if ((rc = vt_npy_read_f32(o.rows_p, &q.rows, &nd, sh, &st)))
            goto done;
        q.n_rows = nd == 2 ? sh[0] : -1;
        if ((rc = vt_npy_read_i64(o.epos_p, &q.epos, &nd, sh, &st)))
            goto done;
        if (nd != 1 || sh[0] != q.n_rows) {
            rc = vt_fail(&st, VTOK_ESHAPE, "embed-pos must be int64 [rows]");
            goto done;
        }
    }
    rc = o.api ? run_api(&o, &q, &st) : run_internal(&o, &q, &st);
done:
    for (int64_t b = 0; b < q.B; b++)
        vt_free(q.ids[b]);
    vt_free(q.rows);
    vt_free(q.epos);
    return rc ? die(st.msg[0] ? st.msg : vtok_strerror(rc)) : 0;
}
