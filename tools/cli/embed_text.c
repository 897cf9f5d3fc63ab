/*
 * embed_text.c - `vtok embed-text`: a text's BERT embedding, on the public API:
 *
 *   vtok embed-text --model DIR (--text TEXT | --text-file F)
 *                   [--pool cls|pooler|mean] [--out F.npy] [--hidden H.npy]
 *                   [--truncate] [--dtype f32|bf16|int8] [--threads N] [--json]
 *
 * Prints the vector on one line (floats with 9 significant digits), or with
 * --json one object {"tokens", "ids", "dim", "pooling", "embedding"}; --out
 * writes it as float32 .npy [dim] instead of printing it, --hidden writes
 * last_hidden_state [1, tokens, dim]. A text longer than the model's
 * positions fails unless --truncate.
 */
#include "vtok.h"
#include "outset.h"
#include "embed_text.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT_FILE ((size_t)16 << 20)

#define fail(...) cli_err("vtok: embed-text: ", __VA_ARGS__)

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *s = malloc(MAX_TEXT_FILE + 1);
    size_t n = s ? fread(s, 1, MAX_TEXT_FILE + 1, f) : 0;
    int bad = ferror(f) || n > MAX_TEXT_FILE;
    fclose(f);
    if (!s || bad) {
        free(s);
        return NULL;
    }
    s[n] = '\0';
    return s;
}

static const char *const POOL_NAMES[] = {"cls", "pooler", "mean"};

static int encode_and_write(vtok_bert *m, vtok_bert_ctx *c, const char *text, int pool,
                            int truncate, const char *out, const char *hidden, int json)
{
    const int64_t H = vtok_bert_dim(m);
    float *vec = malloc((size_t)H * sizeof *vec);
    if (!vec)
        return fail("out of memory");
    int rc = 1;
    vtok_status st = {0};
    if (vtok_bert_encode(c, text, pool, truncate, vec)) {
        fail("%s", vtok_bert_errmsg(c));
        goto done;
    }
    const int32_t *ids;
    int64_t n;
    vtok_view v;
    if (vtok_bert_get_ids(c, &ids, &n) || vtok_bert_last_hidden(c, &v)) {
        fail("no output");
        goto done;
    }
    const int64_t shape[1] = {H};
    if (out && vtok_npy_save(out, vec, 1, shape, &st)) {
        fail("%s", st.msg);
        goto done;
    }
    if (hidden && vtok_npy_save(hidden, v.data, 3, v.ne, &st)) {
        fail("%s", st.msg);
        goto done;
    }
    if (json) {
        printf("{\"tokens\": %lld, \"ids\": [", (long long)n);
        for (int64_t i = 0; i < n; i++)
            printf("%s%d", i ? ", " : "", ids[i]);
        printf("], \"dim\": %lld, \"pooling\": \"%s\"", (long long)H, POOL_NAMES[pool]);
        if (!out) {
            printf(", \"embedding\": [");
            for (int64_t j = 0; j < H; j++)
                printf("%s%.9g", j ? ", " : "", vec[j]);
            printf("]");
        }
        printf("}\n");
    } else if (!out) {
        for (int64_t j = 0; j < H; j++)
            printf("%s%.9g", j ? " " : "", vec[j]);
        printf("\n");
    } else {
        printf("%lld tokens, %s pooling, %lld floats -> %s\n", (long long)n, POOL_NAMES[pool],
               (long long)H, out);
    }
    rc = fflush(stdout) ? fail("cannot write to stdout: %s", strerror(errno)) : 0;
done:
    free(vec);
    return rc;
}

int cli_embed_text(int argc, char **argv)
{
    const char *model = NULL, *text = NULL, *text_file = NULL, *out = NULL, *hidden = NULL;
    int pool = VTOK_BERT_CLS, truncate = 0, json = 0, threads = 0, dtype = VTOK_DTYPE_F32;
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(k, "--truncate")) {
            truncate = 1;
            takes = 0;
        } else if (!strcmp(k, "--json")) {
            json = 1;
            takes = 0;
        } else if (!v) {
            return fail("%s needs a value (see vtok --help)", k);
        } else if (!strcmp(k, "--model")) {
            model = v;
        } else if (!strcmp(k, "--text")) {
            text = v;
        } else if (!strcmp(k, "--text-file")) {
            text_file = v;
        } else if (!strcmp(k, "--out")) {
            out = v;
        } else if (!strcmp(k, "--hidden")) {
            hidden = v;
        } else if (!strcmp(k, "--pool")) {
            pool = -1;
            for (int p = 0; p < 3; p++)
                if (!strcmp(v, POOL_NAMES[p]))
                    pool = p;
            if (pool < 0)
                return fail("--pool: '%s' is not cls, pooler or mean", v);
        } else if (!strcmp(k, "--dtype")) {
            if ((dtype = vtok_dtype_from_name(v)) < 0)
                return fail("--dtype: unknown '%s'", v);
        } else if (!strcmp(k, "--threads")) {
            char *end;
            long t = strtol(v, &end, 10);
            if (!*v || *end || t < 0 || t > 1024)
                return fail("--threads: '%s' must be a number in [0, 1024]", v);
            threads = (int)t;
        } else {
            return fail("unknown option '%s' (see vtok --help)", k);
        }
        i += takes;
    }
    if (!model || (!text == !text_file))
        return fail("usage: vtok embed-text --model DIR (--text TEXT | --text-file F) "
                    "[--pool cls|pooler|mean] [--out F.npy] [--hidden H.npy] [--truncate] "
                    "[--json]");
    char *owned = NULL;
    if (text_file && !(text = owned = read_text(text_file)))
        return fail("cannot read %s (or it is over %zu bytes)", text_file, MAX_TEXT_FILE);
    vtok_status st = {0};
    vtok_model_params mp = vtok_model_default_params();
    mp.dtype = dtype;
    mp.n_threads = threads;
    vtok_bert *m = vtok_bert_load(model, &mp, &st);
    if (!m) {
        free(owned);
        return fail("%s", st.msg);
    }
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = threads;
    vtok_bert_ctx *c = vtok_bert_ctx_new(m, &cp, &st);
    int rc = c ? encode_and_write(m, c, text, pool, truncate, out, hidden, json)
               : fail("%s", st.msg);
    vtok_bert_ctx_free(c);
    vtok_bert_free(m);
    free(owned);
    return rc;
}
