/*
 * llm_run.c - run a decoder LLM (src/models/llama.c) on .npy inputs (parity tests).
 *
 *   llm_run --model DIR [--ids I.npy] [--embeds E.npy [--embed-pos P.npy]]
 *           [--logits L.npy [--all 1]] [--hidden H.npy] [--split K]
 *           [--gen N --gen-out G.npy] [--threads N] [--ctx C] [--time 1]
 *           [--dtype f32|bf16|int8]
 *
 *   ids        int64 [T] prompt ids; embeds float [T, hidden] without ids (inputs_embeds),
 *              or [K, hidden] with ids and embed-pos int64 [K] (rows replacing those positions)
 *   logits     float [vocab] of the last prompt position, or [T, vocab] with --all 1
 *   hidden     float [n_layers + 1, T, hidden] (HF output_hidden_states)
 *   split K    run the first K prompt tokens as one call, then the rest one per call (KV cache)
 *   gen N      greedy continuation of N tokens after the prompt -> int64 [N]
 *   ctx C      KV capacity (default: prompt + N, capped at the model's positions)
 *   time 1     print prefill and decode tokens/s on stderr
 *   dtype      convert the Linears at load (vt_llm_pack): f32 = packed GEMM panels
 * Errors: one line on stderr, exit status 1.
 */
#include "models/llm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int die(const char *msg)
{
    fprintf(stderr, "llm_run: %s\n", msg);
    return 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t argmax(const float *x, int64_t n)
{
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) /* first index of the maximum, as torch.argmax */
            b = i;
    return b;
}

typedef struct job {
    vt_llm       m;
    vt_llm_seq   s;
    vt_exec      e;
    vt_pool     *pool;
    void        *lp_buf;
    float       *scratch, *embeds, *logits, *last, *hidden, *sub_emb;
    int64_t     *ids, *epos, *sub_pos, *gen;
} job;

static void job_free(job *j)
{
    vt_llm_seq_free(&j->s);
    vt_llm_free(&j->m);
    vt_pool_free(j->pool);
    vt_free(j->scratch);
    vt_free(j->lp_buf);
    vt_free(j->embeds);
    vt_free(j->logits);
    vt_free(j->last);
    vt_free(j->hidden);
    vt_free(j->sub_emb);
    vt_free(j->ids);
    vt_free(j->epos);
    vt_free(j->sub_pos);
    vt_free(j->gen);
}

static void *alloc_n(int64_t n, size_t size)
{
    return vt_alloc((size_t)(n > 0 ? n : 1) * size);
}

/* Run prompt positions [a, b) as one call. */
static int run_range(job *j, int64_t a, int64_t b, int64_t T, int64_t n_embed, int all,
                     vtok_status *st)
{
    const vt_llm_config *c = &j->m.c;
    vt_llm_input in = {.n = b - a};
    if (j->ids) {
        in.ids = j->ids + a;
        in.embeds = j->sub_emb;
        in.embed_pos = j->sub_pos;
        for (int64_t k = 0; k < n_embed; k++)
            if (j->epos[k] >= a && j->epos[k] < b) {
                memcpy(j->sub_emb + in.n_embed * c->hidden, j->embeds + k * c->hidden,
                       (size_t)c->hidden * sizeof(float));
                j->sub_pos[in.n_embed++] = j->epos[k] - a;
            }
    } else {
        in.embeds = j->embeds + a * c->hidden;
    }
    vt_llm_output out = {.all_logits = all};
    out.logits = all && j->logits ? j->logits + a * c->vocab : j->last;
    if (j->hidden) {
        out.hidden = j->hidden + a * c->hidden;
        out.hidden_stride = T * c->hidden;
    }
    int rc = vt_llm_forward(&j->s, &j->e, &in, &out, st);
    if (!rc && all && j->logits)
        memcpy(j->last, j->logits + (b - 1) * c->vocab, (size_t)c->vocab * sizeof(float));
    return rc;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *ids_p = NULL, *emb_p = NULL, *epos_p = NULL, *log_p = NULL,
               *hid_p = NULL, *gen_p = NULL, *dtype = NULL;
    int threads = 1, all = 0, timing = 0;
    int64_t split = 0, n_gen = 0, ctx = 0;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return die("missing value after the last option");
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--ids")) ids_p = v;
        else if (!strcmp(a, "--embeds")) emb_p = v;
        else if (!strcmp(a, "--embed-pos")) epos_p = v;
        else if (!strcmp(a, "--logits")) log_p = v;
        else if (!strcmp(a, "--all")) all = atoi(v);
        else if (!strcmp(a, "--hidden")) hid_p = v;
        else if (!strcmp(a, "--split")) split = atoll(v);
        else if (!strcmp(a, "--gen")) n_gen = atoll(v);
        else if (!strcmp(a, "--gen-out")) gen_p = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--ctx")) ctx = atoll(v);
        else if (!strcmp(a, "--time")) timing = atoi(v);
        else if (!strcmp(a, "--dtype")) dtype = v;
        else return die("unknown option");
    }
    if (!model || (!ids_p && !emb_p) || threads < 1 || n_gen < 0 || split < 0 ||
        (n_gen && !gen_p))
        return die("usage: llm_run --model DIR --ids I.npy | --embeds E.npy [...] (see the "
                   "source)");

    vtok_status st = {0};
    job j = {0};
    int rc = 0, nd = 0;
    int64_t sh[VT_MAX_DIMS], T = 0, n_embed = 0;
    int dt = VTOK_DTYPE_F32;
    if (dtype && (dt = !strcmp(dtype, "f32") ? VTOK_DTYPE_F32 : !strcmp(dtype, "bf16")
                       ? VTOK_DTYPE_BF16 : !strcmp(dtype, "int8") ? VTOK_DTYPE_INT8 : -1) < 0) {
        rc = vt_fail(&st, VTOK_EINVAL, "unknown dtype '%s'", dtype);
        goto done;
    }
    if ((rc = vt_llm_load(&j.m, model, dt, NULL, &st)))
        goto done;
    const vt_llm_config *c = &j.m.c;
    if (ids_p) {
        if ((rc = vt_npy_read_i64(ids_p, &j.ids, &nd, sh, &st)))
            goto done;
        if (nd != 1) {
            rc = vt_fail(&st, VTOK_ESHAPE, "ids must be int64 [T]");
            goto done;
        }
        T = sh[0];
    }
    if (emb_p) {
        if ((rc = vt_npy_read_f32(emb_p, &j.embeds, &nd, sh, &st)))
            goto done;
        if (nd != 2 || sh[1] != c->hidden) {
            rc = vt_fail(&st, VTOK_ESHAPE, "embeds must be [rows, %lld]", (long long)c->hidden);
            goto done;
        }
        if (!ids_p) {
            T = sh[0];
        } else {
            n_embed = sh[0];
            if (!epos_p) {
                rc = vt_fail(&st, VTOK_EINVAL, "--embeds with --ids needs --embed-pos");
                goto done;
            }
            if ((rc = vt_npy_read_i64(epos_p, &j.epos, &nd, sh, &st)))
                goto done;
            if (nd != 1 || sh[0] != n_embed) {
                rc = vt_fail(&st, VTOK_ESHAPE, "embed-pos must be int64 [%lld]",
                             (long long)n_embed);
                goto done;
            }
        }
    }
    if (T <= 0) {
        rc = vt_fail(&st, VTOK_EINVAL, "empty prompt");
        goto done;
    }
    if (split >= T)
        split = 0;
    if (ctx <= 0)
        ctx = T + n_gen < c->max_tokens ? T + n_gen : c->max_tokens;
    if ((rc = vt_llm_seq_init(&j.s, &j.m, ctx, T, &st)))
        goto done;
    j.pool = vt_pool_new(threads);
    if (dtype) {
        if (!j.pool)
            goto done;
        if (j.m.lp_max_in) {
            j.e.lp_bytes = vt_exec_lp_bytes(T, j.m.lp_max_in);
            if (!(j.lp_buf = vt_alloc(j.e.lp_bytes))) {
                rc = vt_fail(&st, VTOK_ENOMEM, "out of memory");
                goto done;
            }
            j.e.lp_buf = j.lp_buf;
        }
    }
    j.e.pool = j.pool;
    j.e.k = vt_kernels_get();
    j.e.scratch_stride = vt_exec_scratch_floats(T);
    j.scratch = alloc_n(threads * j.e.scratch_stride, sizeof(float));
    j.e.scratch = j.scratch;
    j.last = alloc_n(c->vocab, sizeof(float));
    if (log_p && all)
        j.logits = alloc_n(T * c->vocab, sizeof(float));
    if (hid_p)
        j.hidden = alloc_n((c->n_layers + 1) * T * c->hidden, sizeof(float));
    j.sub_emb = alloc_n(n_embed * c->hidden, sizeof(float));
    j.sub_pos = alloc_n(n_embed, sizeof(int64_t));
    j.gen = alloc_n(n_gen, sizeof(int64_t));
    if (!j.pool || !j.scratch || !j.last || (log_p && all && !j.logits) ||
        (hid_p && !j.hidden) || !j.sub_emb || !j.sub_pos || !j.gen) {
        rc = vt_fail(&st, VTOK_ENOMEM, "out of memory");
        goto done;
    }

    double t0 = now_s();
    if (!split) {
        rc = run_range(&j, 0, T, T, n_embed, all, &st);
    } else {
        rc = run_range(&j, 0, split, T, n_embed, all, &st);
        for (int64_t p = split; !rc && p < T; p++)
            rc = run_range(&j, p, p + 1, T, n_embed, all, &st);
    }
    if (rc)
        goto done;
    double t1 = now_s();
    if (log_p) {
        int64_t ls[2] = {T, c->vocab};
        if (all)
            rc = vt_npy_write_f32(log_p, j.logits, 2, ls, &st);
        else
            rc = vt_npy_write_f32(log_p, j.last, 1, ls + 1, &st);
        if (rc)
            goto done;
    }
    if (hid_p) {
        int64_t hsh[3] = {c->n_layers + 1, T, c->hidden};
        if ((rc = vt_npy_write_f32(hid_p, j.hidden, 3, hsh, &st)))
            goto done;
    }
    double t2 = now_s();
    for (int64_t g = 0; g < n_gen; g++) {
        j.gen[g] = argmax(j.last, c->vocab);
        if (g + 1 == n_gen)
            break;
        vt_llm_input in = {.n = 1, .ids = j.gen + g};
        vt_llm_output out = {.logits = j.last};
        if ((rc = vt_llm_forward(&j.s, &j.e, &in, &out, &st)))
            goto done;
    }
    double t3 = now_s();
    if (n_gen) {
        int64_t gs[1] = {n_gen};
        rc = vt_npy_write_i64(gen_p, j.gen, 1, gs, &st);
    }
    if (timing)
        fprintf(stderr, "llm_run: prefill %lld tokens %.3f s (%.1f tok/s), decode %lld tokens "
                        "%.3f s (%.2f tok/s), %d threads\n",
                (long long)T, t1 - t0, (double)T / (t1 - t0), (long long)(n_gen - 1), t3 - t2,
                n_gen > 1 ? (double)(n_gen - 1) / (t3 - t2) : 0.0, threads);
done:
    job_free(&j);
    return rc ? die(st.msg) : 0;
}
