/*
 * bert_run.c - run the BERT text encoder through the public API (parity tests).
 *
 *   bert_run --model DIR (--text-file F | --ids I.npy) --out DIR
 *            [--truncate 1] [--threads N] [--dtype f32|bf16|int8] [--repeat K]
 *
 *   text-file  UTF-8 text (the whole file, as is)
 *   ids        int64 [T] ids instead of text (vtok_bert_encode_ids)
 *   out        writes ids.npy int64 [T], last_hidden_state.npy [1, T, hidden],
 *              cls.npy, mean.npy [hidden], pooler.npy [hidden] (models with a pooler)
 *   repeat K   encode K times on one context (the arena is reused), keep the last
 * Errors: one line on stderr, exit status 1.
 */
#include "vtok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *msg)
{
    fprintf(stderr, "bert_run: %s\n", msg);
    return 1;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    for (size_t r; s && (r = fread(s + n, 1, cap - n - 1, f)) > 0;) {
        n += r;
        if (n + 1 == cap) {
            char *t = realloc(s, cap *= 2);
            if (!t) {
                free(s);
                s = NULL;
            } else {
                s = t;
            }
        }
    }
    fclose(f);
    if (s)
        s[n] = '\0';
    return s;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *text_file = NULL, *ids_path = NULL, *out = NULL;
    int truncate = 0, threads = 1, repeat = 1, dtype = VTOK_DTYPE_F32;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--model"))
            model = v;
        else if (!strcmp(k, "--text-file"))
            text_file = v;
        else if (!strcmp(k, "--ids"))
            ids_path = v;
        else if (!strcmp(k, "--out"))
            out = v;
        else if (!strcmp(k, "--truncate"))
            truncate = atoi(v);
        else if (!strcmp(k, "--threads"))
            threads = atoi(v);
        else if (!strcmp(k, "--repeat"))
            repeat = atoi(v);
        else if (!strcmp(k, "--dtype") && (dtype = vtok_dtype_from_name(v)) < 0)
            return die("unknown dtype");
    }
    if (!model || !out || (!text_file == !ids_path))
        return die("usage: bert_run --model DIR (--text-file F | --ids I.npy) --out DIR");

    vtok_status st = {0};
    vtok_model_params mp = vtok_model_default_params();
    mp.dtype = dtype;
    vtok_bert *m = vtok_bert_load(model, &mp, &st);
    if (!m)
        return die(st.msg);
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = threads;
    vtok_bert_ctx *c = vtok_bert_ctx_new(m, &cp, &st);
    if (!c) {
        vtok_bert_free(m);
        return die(st.msg);
    }
    char *text = NULL;
    int32_t *ids32 = NULL;
    int64_t *ids = NULL, n_ids = 0;
    float *cls = NULL, *mean = NULL, *pool = NULL;
    int rc = 1;
    const int64_t H = vtok_bert_dim(m);
    cls = malloc((size_t)H * sizeof *cls);
    mean = malloc((size_t)H * sizeof *mean);
    pool = malloc((size_t)H * sizeof *pool);
    if (!cls || !mean || !pool) {
        die("out of memory");
        goto done;
    }
    if (text_file && !(text = read_all(text_file))) {
        die("cannot read the text file");
        goto done;
    }
    if (ids_path) {
        int nd;
        int64_t shape[8];
        if (vtok_npy_load_i64(ids_path, &ids, &nd, shape, &st)) {
            die(st.msg);
            goto done;
        }
        n_ids = nd == 1 ? shape[0] : 0;
        ids32 = malloc((size_t)(n_ids > 0 ? n_ids : 1) * sizeof *ids32);
        if (!ids32) {
            die("out of memory");
            goto done;
        }
        for (int64_t i = 0; i < n_ids; i++)
            ids32[i] = (int32_t)ids[i];
    }
    /* one run per pooling (each returns its vector); the states are equal */
    for (int r = 0; r < repeat; r++) {
        const int pools[3] = {VTOK_BERT_CLS, VTOK_BERT_MEAN, VTOK_BERT_POOLER};
        float *dst[3] = {cls, mean, pool};
        for (int p = 0; p < (vtok_bert_has_pooler(m) ? 3 : 2); p++) {
            int e = text ? vtok_bert_encode(c, text, pools[p], truncate, dst[p])
                         : vtok_bert_encode_ids(c, ids32, n_ids, pools[p], dst[p]);
            if (e) {
                die(vtok_bert_errmsg(c));
                goto done;
            }
        }
    }
    vtok_view v;
    const int32_t *got;
    int64_t n;
    if (vtok_bert_last_hidden(c, &v) || vtok_bert_get_ids(c, &got, &n)) {
        die("no output after a successful encode");
        goto done;
    }
    int64_t *got64 = malloc((size_t)n * sizeof *got64);
    if (!got64) {
        die("out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        got64[i] = got[i];
    char path[4096];
    const int64_t hs[1] = {H};
    int bad = 0;
#define SAVE(name, call) \
    (snprintf(path, sizeof path, "%s/%s", out, name), (call) ? (bad = 1) : 0)
    SAVE("ids.npy", vtok_npy_save_i64(path, got64, 1, &n, &st));
    SAVE("last_hidden_state.npy", vtok_npy_save(path, v.data, 3, v.ne, &st));
    SAVE("cls.npy", vtok_npy_save(path, cls, 1, hs, &st));
    SAVE("mean.npy", vtok_npy_save(path, mean, 1, hs, &st));
    if (vtok_bert_has_pooler(m))
        SAVE("pooler.npy", vtok_npy_save(path, pool, 1, hs, &st));
#undef SAVE
    free(got64);
    if (bad) {
        die(st.msg);
        goto done;
    }
    rc = 0;
done:
    free(text);
    free(ids32);
    vtok_free(ids);
    free(cls);
    free(mean);
    free(pool);
    vtok_bert_ctx_free(c);
    vtok_bert_free(m);
    return rc;
}
