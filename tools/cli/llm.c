/*
 * llm.c - the CLI's language-model commands, on the public API only:
 *
 *   vtok generate --llm DIR -p TEXT [--chat [FORMAT]] [--max-tokens N]
 *                 [--temperature T] [--top-k K] [--top-p P] [--min-p M]
 *                 [--repetition-penalty R] [--seed S] [--stop STR]...
 *                 [--dtype D] [--threads N] [--ctx N] [--json]
 *   vtok tokenize-text --llm DIR [--no-special] TEXT
 *
 * generate streams the answer to stdout as it is made (--json: one JSON
 * object at the end instead: ids, text, timings); --chat renders the prompt
 * as one user turn through the folder's chat template (or the named
 * built-in format) with the generation prompt added.
 */
#include "vtok.h"
#include "llm_cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_STOPS 16

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vtok: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A number option in [lo, hi]. */
static int num(const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || !*v || *end || errno || !(x >= lo && x <= hi)) {
        fprintf(stderr, "vtok: %s: '%s' must be a number in [%g, %g]\n", opt, v ? v : "",
                lo, hi);
        return 1;
    }
    *out = x;
    return 0;
}

static void json_text(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        const unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", f);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static int stream(void *user, int32_t id, const char *text, size_t len)
{
    (void)user, (void)id;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static vtok_llm *load(const char *dir, const char *dtype, int threads)
{
    vtok_model_params mp = vtok_model_default_params();
    if (dtype && (mp.dtype = vtok_dtype_from_name(dtype)) < 0) {
        fail("--dtype %s: expected f32, bf16, int8 or q4", dtype);
        return NULL;
    }
    mp.n_threads = threads;
    vtok_status st = {0};
    vtok_llm *m = vtok_llm_load(dir, &mp, &st);
    if (!m)
        fail("%s", st.msg[0] ? st.msg : vtok_strerror(st.code));
    return m;
}

int cli_tokenize_text(int argc, char **argv)
{
    const char *dir = NULL, *text = NULL;
    int special = 1;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--llm") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--no-special"))
            special = 0;
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            return fail("tokenize-text: unknown option %s", argv[i]);
        else if (!text)
            text = argv[i];
        else
            return fail("tokenize-text takes one TEXT (quote it)");
    }
    if (!dir || !text)
        return fail("usage: vtok tokenize-text --llm DIR [--no-special] TEXT");
    vtok_llm *m = load(dir, NULL, 1);
    if (!m)
        return 1;
    vtok_status st = {0};
    int64_t n = vtok_tokenize(m, text, strlen(text), special, NULL, 0, &st);
    int32_t *ids = n > 0 ? malloc((size_t)n * sizeof *ids) : NULL;
    int rc = 1;
    if (n < 0)
        fail("%s", st.msg);
    else if (n > 0 && !ids)
        fail("out of memory");
    else if (vtok_tokenize(m, text, strlen(text), special, ids, n, &st) != n)
        fail("%s", st.msg);
    else {
        for (int64_t i = 0; i < n; i++) {
            const char *piece = vtok_token_piece(m, ids[i]);
            printf("%d\t", ids[i]);
            json_text(stdout, piece ? piece : "", piece ? strlen(piece) : 0);
            printf("\n");
        }
        rc = 0;
    }
    free(ids);
    vtok_llm_free(m);
    return rc;
}

int cli_generate(int argc, char **argv)
{
    const char *dir = NULL, *prompt = NULL, *chat = NULL, *dtype = NULL;
    const char *stops[MAX_STOPS];
    int n_stops = 0, json = 0, threads = 0, use_chat = 0;
    int64_t n_ctx = 0;
    vtok_gen_params gp = vtok_gen_default_params();
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        if (!strcmp(k, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(k, "--chat")) {
            use_chat = 1;
            if (v && v[0] != '-') { /* an optional built-in format name */
                chat = v;
                i++;
            }
            continue;
        }
        if (!v)
            return fail("%s needs a value", k);
        i++;
        if (!strcmp(k, "--llm"))
            dir = v;
        else if (!strcmp(k, "-p") || !strcmp(k, "--prompt"))
            prompt = v;
        else if (!strcmp(k, "--dtype"))
            dtype = v;
        else if (!strcmp(k, "--stop")) {
            if (n_stops == MAX_STOPS)
                return fail("at most 16 --stop strings");
            stops[n_stops++] = v;
        } else if (!strcmp(k, "--max-tokens")) {
            if (num(k, v, 0, 1 << 20, &x))
                return 1;
            gp.max_tokens = (int64_t)x;
        } else if (!strcmp(k, "--temperature")) {
            if (num(k, v, 0, 100, &x))
                return 1;
            gp.greedy = x == 0.0;
            gp.temperature = x == 0.0 ? 1.0f : (float)x;
        } else if (!strcmp(k, "--top-k")) {
            if (num(k, v, 0, 1 << 30, &x))
                return 1;
            gp.top_k = (int64_t)x;
        } else if (!strcmp(k, "--top-p")) {
            if (num(k, v, 1e-9, 1, &x))
                return 1;
            gp.top_p = (float)x;
        } else if (!strcmp(k, "--min-p")) {
            if (num(k, v, 0, 1, &x))
                return 1;
            gp.min_p = (float)x;
        } else if (!strcmp(k, "--repetition-penalty")) {
            if (num(k, v, 1e-6, 100, &x))
                return 1;
            gp.repetition_penalty = (float)x;
        } else if (!strcmp(k, "--seed")) {
            if (num(k, v, 0, 9007199254740992.0, &x))
                return 1;
            gp.seed = (uint64_t)x;
        } else if (!strcmp(k, "--threads")) {
            if (num(k, v, 1, 1024, &x))
                return 1;
            threads = (int)x;
        } else if (!strcmp(k, "--ctx")) {
            if (num(k, v, 0, 1 << 24, &x))
                return 1;
            n_ctx = (int64_t)x;
        } else {
            return fail("generate: unknown option %s", k);
        }
    }
    if (!dir || !prompt)
        return fail("usage: vtok generate --llm DIR -p TEXT [--chat [FORMAT]] [--max-tokens N] "
                    "[--temperature T] ... (see vtok --help)");
    vtok_llm *m = load(dir, dtype, threads);
    if (!m)
        return 1;
    vtok_status st = {0};
    int rc = 1;
    char *text = NULL;
    int32_t *ids = NULL, *out = NULL;
    vtok_llm_ctx *c = NULL;
    const char *ptext = prompt;
    if (use_chat) {
        vtok_chat_msg msg = {.role = "user", .content = prompt};
        if (vtok_chat_render(m, chat, &msg, 1, 1, &text, &st)) {
            fail("%s", st.msg);
            goto done;
        }
        ptext = text;
    }
    /* A rendered chat already holds its special tokens (BOS) as text. */
    const int add_special = !use_chat;
    int64_t n = vtok_tokenize(m, ptext, strlen(ptext), add_special, NULL, 0, &st);
    if (n <= 0) {
        fail("%s", n < 0 ? st.msg : "the prompt has no tokens");
        goto done;
    }
    ids = malloc((size_t)n * sizeof *ids);
    out = malloc((size_t)(gp.max_tokens > 0 ? gp.max_tokens : 1) * sizeof *out);
    if (!ids || !out) {
        fail("out of memory");
        goto done;
    }
    vtok_tokenize(m, ptext, strlen(ptext), add_special, ids, n, &st);
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = threads;
    if (!(c = vtok_llm_ctx_new(m, n_ctx, &cp, &st))) {
        fail("%s", st.msg);
        goto done;
    }
    gp.stop_strings = n_stops ? stops : NULL;
    gp.n_stop_strings = n_stops;
    gp.on_token = json ? NULL : stream;
    double t0 = now_s();
    vtok_llm_batch b = {.n = n, .ids = ids};
    if (vtok_llm_eval(c, &b)) {
        fail("%s", vtok_llm_errmsg(c));
        goto done;
    }
    double t1 = now_s();
    int64_t n_out = 0;
    int e = vtok_llm_generate(c, &gp, out, gp.max_tokens, &n_out);
    double t2 = now_s();
    if (!json)
        printf("\n");
    if (e) {
        fail("%s", vtok_llm_errmsg(c));
        goto done;
    }
    if (json) {
        int64_t len = vtok_detokenize(m, out, n_out, 1, NULL, 0, &st);
        char *s = len >= 0 ? malloc((size_t)len + 1) : NULL;
        if (!s || vtok_detokenize(m, out, n_out, 1, s, (size_t)len + 1, &st) != len) {
            free(s);
            fail("%s", st.msg[0] ? st.msg : "out of memory");
            goto done;
        }
        printf("{\"prompt_tokens\": %lld, \"ids\": [", (long long)n);
        for (int64_t i = 0; i < n_out; i++)
            printf("%s%d", i ? ", " : "", out[i]);
        printf("], \"text\": ");
        json_text(stdout, s, (size_t)len);
        printf(", \"prefill_ms\": %.2f, \"decode_ms\": %.2f}\n", (t1 - t0) * 1e3, (t2 - t1) * 1e3);
        free(s);
    }
    fprintf(stderr, "vtok: %lld prompt tokens in %.1f ms (%.1f tok/s), %lld new in %.1f ms "
            "(%.1f tok/s)\n", (long long)n, (t1 - t0) * 1e3, (double)n / (t1 - t0),
            (long long)n_out, (t2 - t1) * 1e3, n_out > 0 ? (double)n_out / (t2 - t1) : 0.0);
    rc = 0;
done:
    vtok_llm_ctx_free(c);
    vtok_free(text);
    free(ids);
    free(out);
    vtok_llm_free(m);
    return rc;
}
