/*
 * llm.c - the CLI's language-model commands, on the public API only:
 *
 *   vtok generate --llm DIR -p TEXT | --prompts FILE [--batch N] [--chat [FORMAT]] [--max-tokens N]
 *                 [--temperature T] [--top-k K] [--top-p P] [--min-p M]
 *                 [--repetition-penalty R] [--seed S] [--stop STR]...
 *                 [--dtype D] [--threads N] [--ctx N] [--json]
 *   vtok tokenize-text --llm DIR [--no-special] TEXT
 *   vtok chat --recipe NAME|FILE --model DIR --llm DIR --image FILE... [-p TEXT]
 *             [--format NAME|template|raw] [--out DIR] [-i] [generation options as generate]
 *
 * generate streams the answer to stdout as it is made (--json: one JSON
 * object at the end instead: ids, text, timings); --chat renders the prompt
 * as one user turn through the folder's chat template (or the named
 * built-in format) with the generation prompt added. --prompts runs a
 * file of prompts (one per line) in batches of --batch (16) sequences. chat with a recipe
 * that writes image ids (SEED) also reads them back out of the answer:
 * "image_ids" in --json, DIR/ids.npy with --out (vtok detokenize's input).
 */
#include "vtok.h"
#include "llm_cli.h"
#include "outset.h"

#include <errno.h>
#include <sys/types.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_STOPS 16

#define fail(...) cli_err("vtok: ", __VA_ARGS__)

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

void cli_json_text(FILE *f, const char *s, size_t n)
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
            cli_json_text(stdout, piece ? piece : "", piece ? strlen(piece) : 0);
            printf("\n");
        }
        rc = 0;
    }
    free(ids);
    vtok_llm_free(m);
    return rc;
}

/* Options shared by generate and chat; *used = 1 when argv[i] (and its
 * value, i advanced) was one of them. */
typedef struct gen_opts {
    vtok_gen_params gp;
    const char *stops[MAX_STOPS];
    int n_stops, json, threads;
    const char *dtype;
    int64_t n_ctx;
    /* chat with a recipe that writes ids (SEED): the image ids the answer
     * holds go to "image_ids" (--json) and out/ids.npy (--out) */
    const vtok_recipe_info *ri;
    const char *out;
    int interactive;  /* chat -i: a conversation from stdin lines, tty or not */
    int64_t reused;   /* positions of this prompt already held (KV reuse)     */
    int same_embeds;  /* the image rows are those the context already holds */
} gen_opts;

static int gen_option(gen_opts *o, int argc, char **argv, int *i, int *used)
{
    const char *k = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    double x;
    *used = 1;
    if (!strcmp(k, "--json")) {
        o->json = 1;
        return 0;
    }
    if (!strcmp(k, "-i") || !strcmp(k, "--interactive")) {
        o->interactive = 1;
        return 0;
    }
    static const char *const valued[] = {"--dtype", "--stop", "--max-tokens", "--temperature",
                                         "--top-k", "--top-p", "--min-p",
                                         "--repetition-penalty", "--seed", "--threads", "--ctx",
                                         NULL};
    int known = 0;
    for (int j = 0; valued[j]; j++)
        known |= !strcmp(k, valued[j]);
    if (!known) {
        *used = 0;
        return 0;
    }
    if (!v)
        return fail("%s needs a value", k);
    (*i)++;
    if (!strcmp(k, "--dtype"))
        o->dtype = v;
    else if (!strcmp(k, "--stop")) {
        if (o->n_stops == MAX_STOPS)
            return fail("at most 16 --stop strings");
        o->stops[o->n_stops++] = v;
    } else if (!strcmp(k, "--max-tokens")) {
        if (num(k, v, 0, 1 << 20, &x))
            return 1;
        o->gp.max_tokens = (int64_t)x;
    } else if (!strcmp(k, "--temperature")) {
        if (num(k, v, 0, 100, &x))
            return 1;
        o->gp.greedy = x == 0.0;
        o->gp.temperature = x == 0.0 ? 1.0f : (float)x;
    } else if (!strcmp(k, "--top-k")) {
        if (num(k, v, 0, 1 << 30, &x))
            return 1;
        o->gp.top_k = (int64_t)x;
    } else if (!strcmp(k, "--top-p")) {
        if (num(k, v, 1e-9, 1, &x))
            return 1;
        o->gp.top_p = (float)x;
    } else if (!strcmp(k, "--min-p")) {
        if (num(k, v, 0, 1, &x))
            return 1;
        o->gp.min_p = (float)x;
    } else if (!strcmp(k, "--repetition-penalty")) {
        if (num(k, v, 1e-6, 100, &x))
            return 1;
        o->gp.repetition_penalty = (float)x;
    } else if (!strcmp(k, "--seed")) {
        if (num(k, v, 0, 9007199254740992.0, &x))
            return 1;
        o->gp.seed = (uint64_t)x;
    } else if (!strcmp(k, "--threads")) {
        if (num(k, v, 1, 1024, &x))
            return 1;
        o->threads = (int)x;
    } else if (!strcmp(k, "--ctx")) {
        if (num(k, v, 0, 1 << 24, &x))
            return 1;
        o->n_ctx = (int64_t)x;
    }
    return 0;
}

/* Eval b, generate, print (streamed or --json). */
/* reply (may be NULL): the answer's text, allocated (free). */
/* The image ids of an answer as DIR/ids.npy [groups, ids_per_image] int64,
 * the input vtok detokenize takes; ids past the last whole group are left
 * out (said on stderr). */
static int save_codes(const char *dir, const vtok_recipe_info *ri, const int64_t *codes,
                      int64_t n)
{
    vtok_status st = {0};
    int64_t t = ri->ids_per_image > 0 ? ri->ids_per_image : 1, g = n / t;
    if (n % t)
        fprintf(stderr, "vtok: the answer holds %lld image ids; %lld past the last whole image "
                "of %lld left out of ids.npy\n", (long long)n, (long long)(n % t), (long long)t);
    int64_t shape[2] = {g, t};
    const char *path = outset_stage(dir, "ids.npy");
    if (!path)
        return 1;
    if (vtok_npy_save_i64(path, codes, 2, shape, &st))
        return fail("%s/ids.npy: %s", dir, st.msg);
    fprintf(stderr, "vtok: %s/ids.npy [%lld, %lld]: the answer's image ids\n", dir,
            (long long)g, (long long)t);
    return 0;
}

/* Evaluate b (the whole prompt; what c holds of it is kept:
 * vtok_llm_eval_reuse), generate, print. reply: the answer's text, for a
 * caller that keeps the conversation. */
static int answer(vtok_llm *m, vtok_llm_ctx *c, gen_opts *o, const vtok_llm_batch *b,
                  char **reply)
{
    vtok_status st = {0};
    int32_t *out = malloc((size_t)(o->gp.max_tokens > 0 ? o->gp.max_tokens : 1) * sizeof *out);
    if (!out)
        return fail("out of memory");
    o->gp.stop_strings = o->n_stops ? o->stops : NULL;
    o->gp.n_stop_strings = o->n_stops;
    o->gp.on_token = o->json ? NULL : stream;
    int rc = 1;
    int64_t n_codes = 0, *codes = NULL;
    double t0 = now_s();
    if (vtok_llm_eval_reuse(c, b, o->same_embeds, &o->reused)) {
        fail("%s", vtok_llm_errmsg(c));
        goto done;
    }
    double t1 = now_s();
    int64_t n_out = 0;
    int e = vtok_llm_generate(c, &o->gp, out, o->gp.max_tokens, &n_out);
    double t2 = now_s();
    if (!o->json)
        printf("\n");
    if (e) {
        fail("%s", vtok_llm_errmsg(c));
        goto done;
    }
    if (reply) {
        int64_t len = vtok_detokenize(m, out, n_out, 1, NULL, 0, &st);
        if (len < 0 || !(*reply = malloc((size_t)len + 1)) ||
            vtok_detokenize(m, out, n_out, 1, *reply, (size_t)len + 1, &st) != len) {
            fail("%s", st.msg[0] ? st.msg : "out of memory");
            goto done;
        }
    }
    if (o->ri && o->ri->id_format[0]) {
        n_codes = vtok_llm_image_ids(m, o->ri, out, n_out, NULL, 0, &st);
        if (n_codes < 0 || !(codes = malloc((size_t)(n_codes ? n_codes : 1) * sizeof *codes)) ||
            vtok_llm_image_ids(m, o->ri, out, n_out, codes, n_codes, &st) != n_codes) {
            fail("%s", st.msg[0] ? st.msg : "out of memory");
            goto done;
        }
        if (o->out && save_codes(o->out, o->ri, codes, n_codes))
            goto done;
    }
    if (o->json) {
        int64_t len = vtok_detokenize(m, out, n_out, 1, NULL, 0, &st);
        char *s = len >= 0 ? malloc((size_t)len + 1) : NULL;
        if (!s || vtok_detokenize(m, out, n_out, 1, s, (size_t)len + 1, &st) != len) {
            free(s);
            fail("%s", st.msg[0] ? st.msg : "out of memory");
            goto done;
        }
        /* the positions evaluated: from o->reused on */
        const int64_t r0 = o->reused;
        int64_t e0 = 0;
        while (e0 < b->n_embeds && b->ids && b->embed_pos[e0] < r0)
            e0++;
        printf("{\"reused_positions\": %lld, \"prompt_tokens\": %lld, \"prompt_ids\": [",
               (long long)r0, (long long)(b->n - r0));
        for (int64_t i = r0; i < b->n; i++)
            printf("%s%d", i > r0 ? ", " : "", b->ids ? b->ids[i] : -1);
        printf("], \"image_positions\": %lld, \"image_start\": %lld, \"ids\": [",
               (long long)(b->n_embeds - e0),
               (long long)(b->n_embeds > e0 ? (b->ids ? b->embed_pos[e0] : e0) - r0 : -1));
        for (int64_t i = 0; i < n_out; i++)
            printf("%s%d", i ? ", " : "", out[i]);
        if (o->ri && o->ri->id_format[0]) {
            printf("], \"image_ids\": [");
            for (int64_t i = 0; i < n_codes; i++)
                printf("%s%lld", i ? ", " : "", (long long)codes[i]);
        }
        printf("], \"text\": ");
        cli_json_text(stdout, s, (size_t)len);
        printf(", \"prefill_ms\": %.3f, \"decode_ms\": %.3f}\n", (t1 - t0) * 1e3,
               (t2 - t1) * 1e3);
        free(s);
    }
    const int64_t np = b->n - o->reused;
    fprintf(stderr, "vtok: %lld prompt positions in %.1f ms (%.1f/s)%s, %lld new tokens in "
            "%.1f ms (%.1f tok/s)\n", (long long)np, (t1 - t0) * 1e3, (double)np / (t1 - t0),
            o->reused ? " after reused ones" : "",
            (long long)n_out, (t2 - t1) * 1e3, n_out > 0 ? (double)n_out / (t2 - t1) : 0.0);
    rc = 0;
done:
    free(codes);
    free(out);
    return rc;
}

/* Whether the tokenizer adds its special tokens (BOS) to a rendered prompt.
 * A folder's chat template writes them as text (transformers tokenizes its
 * output with add_special_tokens=False); the built-in formats are plain text
 * as the seed systems build it, tokenized with BOS, except where the text
 * already starts with the BOS (SEED-LLaMA writes tokenizer.bos_token + ...
 * and tokenizes with add_special_tokens=False): never two BOS. */

static char *read_stdin_all(void)
{
    size_t n = 0, cap = 4096;
    char *s = malloc(cap);
    for (size_t r; s && (r = fread(s + n, 1, cap - n - 1, stdin)) > 0;) {
        n += r;
        if (cap - n < 2) {
            char *t = cap < ((size_t)1 << 26) ? realloc(s, cap * 2) : NULL;
            if (!t) {
                free(s);
                return NULL;
            }
            s = t;
            cap *= 2;
        }
    }
    if (s)
        s[n] = '\0';
    return s;
}

/* Lines of a prompts file ("-": stdin), empty ones skipped; *text owns them. */
static int read_lines(const char *path, char **text, char ***lines, int64_t *n)
{
    char *s = NULL;
    if (!strcmp(path, "-")) {
        s = read_stdin_all();
    } else {
        FILE *f = fopen(path, "rb");
        if (!f)
            return fail("%s: %s", path, strerror(errno));
        long len = fseek(f, 0, SEEK_END) ? -1 : ftell(f);
        if (len < 0 || len > (1L << 30) || fseek(f, 0, SEEK_SET)) {
            fclose(f);
            return fail("%s: cannot read it (or over 1 GiB)", path);
        }
        s = malloc((size_t)len + 1);
        if (s && fread(s, 1, (size_t)len, f) != (size_t)len) {
            free(s);
            fclose(f);
            return fail("%s: read error", path);
        }
        if (s)
            s[len] = '\0';
        fclose(f);
    }
    if (!s)
        return fail("out of memory");
    int64_t cap = 0, k = 0;
    for (const char *p = s; *p; p++)
        cap += *p == '\n';
    char **l = malloc((size_t)(cap + 1) * sizeof *l);
    if (!l) {
        free(s);
        return fail("out of memory");
    }
    for (char *p = s; *p;) {
        char *e = strchr(p, '\n');
        char *next = e ? e + 1 : p + strlen(p);
        if (e)
            *e = '\0';
        if (e && e > p && e[-1] == '\r')
            e[-1] = '\0';
        if (*p)
            l[k++] = p;
        p = next;
    }
    *text = s;
    *lines = l;
    *n = k;
    return 0;
}

/* The ids of one prompt (rendered as a user turn with --chat); NULL after
 * printing why. */
static int32_t *prompt_ids(vtok_llm *m, const char *prompt, int use_chat, const char *chat,
                           int64_t *n_ids)
{
    vtok_status st = {0};
    char *text = NULL;
    const char *ptext = prompt;
    if (use_chat) {
        vtok_chat_msg msg = {.role = "user", .content = prompt};
        if (vtok_chat_render(m, chat, &msg, 1, 1, &text, &st)) {
            fail("%s", st.msg);
            return NULL;
        }
        ptext = text;
    }
    const int add_special = !use_chat || vtok_chat_add_special(m, chat, ptext);
    int64_t n = vtok_tokenize(m, ptext, strlen(ptext), add_special, NULL, 0, &st);
    int32_t *ids = n > 0 ? malloc((size_t)n * sizeof *ids) : NULL;
    if (n <= 0 || !ids) {
        fail("%s", n < 0 ? st.msg : n == 0 ? "the prompt has no tokens" : "out of memory");
        free(ids);
        ids = NULL;
    } else {
        vtok_tokenize(m, ptext, strlen(ptext), add_special, ids, n, &st);
        *n_ids = n;
    }
    vtok_free(text);
    return ids;
}

/*
 * generate --prompts FILE: every line a prompt, run in batches of up to
 * --batch sequences (vtok_llm_generate_batch: one decode call per step for
 * the whole batch). Prints each answer as "[index] text" lines, or one JSON
 * object per line with --json, in the file's order.
 */
static int generate_file(vtok_llm *m, gen_opts *o, const char *path, int use_chat,
                         const char *chat, int64_t batch)
{
    char *text = NULL, **lines = NULL;
    int64_t n = 0;
    if (read_lines(path, &text, &lines, &n))
        return 1;
    if (n == 0) {
        free(text);
        free(lines);
        return fail("%s: no prompts (one per line)", path);
    }
    vtok_llm_info li;
    vtok_llm_get_info(m, &li);
    const int64_t B = n < batch ? n : batch, cap = o->gp.max_tokens > 0 ? o->gp.max_tokens : 1;
    int32_t **ids = calloc((size_t)B, sizeof *ids);
    int64_t *n_ids = calloc((size_t)B, sizeof *n_ids), *n_out = calloc((size_t)B, sizeof *n_out);
    int32_t *out = malloc((size_t)(B * cap) * sizeof *out);
    int rc = ids && n_ids && n_out && out ? 0 : fail("out of memory");
    o->gp.stop_strings = o->n_stops ? o->stops : NULL;
    o->gp.n_stop_strings = o->n_stops;
    o->gp.on_token = NULL;
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = o->threads;
    for (int64_t i0 = 0; i0 < n && !rc; i0 += B) {
        const int64_t nb = n - i0 < B ? n - i0 : B;
        int64_t longest = 0;
        for (int64_t j = 0; j < nb && !rc; j++) {
            free(ids[j]);
            if (!(ids[j] = prompt_ids(m, lines[i0 + j], use_chat, chat, &n_ids[j])))
                rc = 1;
            else
                longest = n_ids[j] > longest ? n_ids[j] : longest;
        }
        if (rc)
            break;
        /* a batch holds nb KV caches: size them to the work, not the model */
        int64_t n_ctx = o->n_ctx ? o->n_ctx : longest + o->gp.max_tokens;
        n_ctx = n_ctx > li.max_tokens ? li.max_tokens : n_ctx;
        vtok_status st = {0};
        vtok_llm_ctx *c = vtok_llm_ctx_new_batch(m, nb, n_ctx, &cp, &st);
        if (!c) {
            rc = fail("%s", st.msg);
            break;
        }
        double t0 = now_s();
        int e = vtok_llm_eval_batch(c, (const int32_t *const *)ids, n_ids);
        double t1 = now_s();
        if (!e)
            e = vtok_llm_generate_batch(c, &o->gp, out, cap, n_out);
        double t2 = now_s();
        if (e)
            rc = fail("prompts %lld..%lld: %s", (long long)i0, (long long)(i0 + nb - 1),
                      vtok_llm_errmsg(c));
        int64_t pos = 0, gen = 0;
        for (int64_t j = 0; j < nb && !rc; j++) {
            const int32_t *g = out + j * cap;
            int64_t len = vtok_detokenize(m, g, n_out[j], 1, NULL, 0, &st);
            char *s = len >= 0 ? malloc((size_t)len + 1) : NULL;
            if (!s || vtok_detokenize(m, g, n_out[j], 1, s, (size_t)len + 1, &st) != len) {
                free(s);
                rc = fail("%s", st.msg[0] ? st.msg : "out of memory");
                break;
            }
            if (o->json) {
                printf("{\"index\": %lld, \"prompt_tokens\": %lld, \"ids\": [",
                       (long long)(i0 + j), (long long)n_ids[j]);
                for (int64_t k = 0; k < n_out[j]; k++)
                    printf("%s%d", k ? ", " : "", g[k]);
                printf("], \"text\": ");
                cli_json_text(stdout, s, (size_t)len);
                printf("}\n");
            } else {
                printf("[%lld] %s\n", (long long)(i0 + j), s);
            }
            free(s);
            pos += n_ids[j];
            gen += n_out[j];
        }
        fflush(stdout);
        if (!rc)
            fprintf(stderr, "vtok: prompts %lld..%lld: %lld prompt positions in %.1f ms, %lld new "
                    "tokens in %.1f ms (%.1f tok/s)\n", (long long)i0, (long long)(i0 + nb - 1),
                    (long long)pos, (t1 - t0) * 1e3, (long long)gen, (t2 - t1) * 1e3,
                    gen > 0 ? (double)gen / (t2 - t1) : 0.0);
        vtok_llm_ctx_free(c);
    }
    for (int64_t j = 0; ids && j < B; j++)
        free(ids[j]);
    free(ids);
    free(n_ids);
    free(n_out);
    free(out);
    free(lines);
    free(text);
    return rc;
}

int cli_generate(int argc, char **argv)
{
    const char *dir = NULL, *prompt = NULL, *chat = NULL, *prompts = NULL;
    int use_chat = 0;
    double batch = 16;
    gen_opts o = {.gp = vtok_gen_default_params()};
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used;
        if (gen_option(&o, argc, argv, &i, &used))
            return 1;
        if (used)
            continue;
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
        else if (!strcmp(k, "--prompts"))
            prompts = v;
        else if (!strcmp(k, "--batch")) {
            if (num(k, v, 1, 4096, &batch))
                return 1;
        } else
            return fail("generate: unknown option %s", k);
    }
    if (!dir || !prompt == !prompts)
        return fail("usage: vtok generate --llm DIR -p TEXT | --prompts FILE [--batch N] "
                    "[--chat [FORMAT]] [--max-tokens N] [--temperature T] ... (see vtok --help)");
    vtok_llm *m = load(dir, o.dtype, o.threads);
    if (!m)
        return 1;
    if (prompts) {
        int r = generate_file(m, &o, prompts, use_chat, chat, (int64_t)batch);
        vtok_llm_free(m);
        return r;
    }
    vtok_status st = {0};
    int rc = 1;
    char *text = NULL;
    vtok_llm_ctx *c = NULL;
    vtok_llm_batch b = {0};
    int64_t n = 0;
    int32_t *ids = prompt_ids(m, prompt, use_chat, chat, &n);
    if (!ids)
        goto done;
    b.n = n;
    b.ids = ids; /* freed by vtok_llm_batch_free */
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = o.threads;
    if (!(c = vtok_llm_ctx_new(m, o.n_ctx, &cp, &st))) {
        fail("%s", st.msg);
        goto done;
    }
    rc = answer(m, c, &o, &b, NULL);
done:
    vtok_llm_batch_free(&b);
    vtok_llm_ctx_free(c);
    vtok_free(text);
    vtok_llm_free(m);
    return rc;
}

#define MAX_CHAT_IMAGES 64

/* The user turn: one placeholder per image, then the question (LLaVA puts
 * DEFAULT_IMAGE_TOKEN + "\n" before the question). */
/* The first user turn: one placeholder per image, then the question. LLaVA
 * puts a newline between (llava/conversation.py: "<image>\n" + question);
 * SEED-LLaMA none (scripts/seed_llama_inference_8B.py: img_tokens +
 * question). */
static char *user_turn(const char *ph, int n_images, const char *q, const char *format)
{
    const char *sep = format && !strncmp(format, "seed_llama", 10) ? "" : "\n";
    size_t n = strlen(ph) * (size_t)n_images + strlen(q) + 2;
    char *s = malloc(n);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (int i = 0; i < n_images; i++)
        strcat(s, ph);
    if (n_images)
        strcat(s, sep);
    strcat(s, q);
    return s;
}


int cli_text_ids(const vtok_llm *m, const vtok_recipe_info *ri, int n_images, const char *q,
                 const char *format, int32_t **ids, int64_t *n)
{
    vtok_status st = {0};
    vtok_llm_batch b = {0};
    int64_t ones[MAX_CHAT_IMAGES];
    *ids = NULL;
    *n = 0;
    if (n_images > MAX_CHAT_IMAGES)
        return fail("at most %d images", MAX_CHAT_IMAGES);
    for (int k = 0; k < n_images; k++)
        ones[k] = 1; /* the text ids do not depend on the counts */
    if (vtok_chat_prompt(m, ri, format, q, n_images, ones, NULL, &b, NULL, &st))
        return fail("%s", st.msg);
    int32_t *out = malloc((size_t)(b.n ? b.n : 1) * sizeof *out);
    if (!out) {
        vtok_llm_batch_free(&b);
        return fail("out of memory");
    }
    *n = vtok_llm_batch_text_ids(&b, out, b.n);
    vtok_llm_batch_free(&b);
    *ids = out;
    return 0;
}

/* --experts: letters ("A,C"), the recipe's expert names, or "none". */
int cli_parse_experts(const vtok_recipe *r, const char *spec, float *w, int64_t n)
{
    for (int64_t k = 0; k < n; k++)
        w[k] = 0;
    if (!strcmp(spec, "none"))
        return 0;
    char item[64];
    for (const char *p = spec; *p;) {
        size_t len = strcspn(p, ",");
        while (len && (*p == ' ')) {
            p++;
            len--;
        }
        if (!len || len >= sizeof item)
            return fail("--experts '%s': expected letters or names separated by commas", spec);
        memcpy(item, p, len);
        item[len] = '\0';
        while (len && item[len - 1] == ' ')
            item[--len] = '\0';
        int64_t hit = -1;
        if (len == 1 && item[0] >= 'A' && item[0] < 'A' + n)
            hit = item[0] - 'A';
        for (int64_t k = 0; hit < 0 && k < n; k++)
            if (!strcasecmp(item, vtok_recipe_expert_name(r, k)))
                hit = k;
        if (hit < 0) {
            char list[512] = "";
            for (int64_t k = 0; k < n; k++) {
                size_t m = strlen(list);
                snprintf(list + m, sizeof list - m, "%s%c %s", k ? ", " : "", (char)('A' + k),
                         vtok_recipe_expert_name(r, k));
            }
            return fail("--experts: unknown expert '%s' (this recipe's: %s)", item, list);
        }
        w[hit] = 1;
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    }
    return 0;
}

int cli_route(vtok_llm *m, vtok_llm_ctx *c, vtok_recipe *r, vtok_recipe_ctx *rc,
              const vtok_recipe_info *ri, const vtok_image *imgs, int n_images,
              const char *const *names, const char *q, const char *format, const char *experts,
              float *w, char **answer, int32_t **held, int64_t *n_held, int32_t *gen,
              int64_t *n_gen)
{
    const int64_t n = vtok_recipe_n_experts(r);
    *answer = NULL;
    if (held) {
        *held = NULL;
        *n_held = 0;
    }
    if (experts)
        return cli_parse_experts(r, experts, w, n);
    if (!m)
        return fail("recipe %s chooses its experts with an LLM: give --llm DIR (or pick them "
                    "with --experts A,C)", ri->name);
    vtok_status st = {0};
    vtok_llm_ctx *own = NULL;
    if (!c && !(c = own = vtok_llm_ctx_new(m, 0, NULL, &st)))
        return fail("%s", st.msg);
    vtok_run_params rp = vtok_run_default_params();
    rp.image_names = names;
    vtok_routing rt;
    int rcode = vtok_recipe_route(rc, c, imgs, n_images, &rp, q, format, w, n, &rt, &st);
    vtok_llm_ctx_free(own);
    if (rcode)
        return fail("%s", st.msg);
    fprintf(stderr, "vtok: routing pass: recipe %.0f ms, LLM %.0f ms (%lld prompt positions, "
            "%lld ids)\n", rt.recipe_ms, rt.llm_ms, (long long)rt.n_prompt, (long long)rt.n_ids);
    if (gen) {
        memcpy(gen, rt.ids, (size_t)rt.n_ids * sizeof *gen);
        *n_gen = rt.n_ids;
    }
    if (held) { /* the positions the context holds: prompt ids (-1: image rows) */
        *held = rt.prompt_ids;
        *n_held = rt.n_prompt;
        rt.prompt_ids = NULL;
    }
    *answer = rt.answer;
    rt.answer = NULL;
    vtok_routing_free(&rt);
    return 0;
}

/* "experts: A (dinov2), C (codetr) [routing answer "..."]" on stderr. */
void cli_route_report(const vtok_recipe *r, const float *w, const char *answer)
{
    const int64_t n = vtok_recipe_n_experts(r);
    int any = 0;
    fprintf(stderr, "vtok: experts:");
    for (int64_t k = 0; k < n; k++)
        if (w[k] != 0) {
            fprintf(stderr, "%s %c (%s)", any ? "," : "", (char)('A' + k),
                    vtok_recipe_expert_name(r, k));
            any = 1;
        }
    fprintf(stderr, "%s", any ? "" : " none");
    if (answer) {
        fprintf(stderr, " [routing answer: ");
        cli_json_text(stderr, answer, strlen(answer));
        fprintf(stderr, "]");
    }
    fprintf(stderr, "\n");
}

#define MAX_TURNS 64

/* An interactive conversation (a terminal, or -i): each line a user turn
 * (the images' placeholders go before the first). Every turn the whole
 * conversation is rendered and tokenized again, and only what differs from
 * the positions already held (prompt and answers so far) is evaluated: the
 * KV cache is kept up to the first position that changed. An empty line or
 * end of input ends it. */
static int converse(vtok_llm *m, gen_opts *o, const vtok_ctx_params *cp,
                    const vtok_recipe_info *ri, const char *format, int n_images, const int64_t *T, const int64_t *ids, const float *rows)
{
    vtok_status st = {0};
    vtok_chat_msg msgs[2 * MAX_TURNS];
    char *own[2 * MAX_TURNS];
    int n = 0, rc = 0;
    const char *name = vtok_chat_format_name(m, format);
    vtok_llm_ctx *c = vtok_llm_ctx_new(m, o->n_ctx, cp, &st);
    if (!c)
        return fail("%s", st.msg);
    char *line = NULL;
    size_t cap = 0;
    fprintf(stderr, "vtok: ask about the image%s (empty line to end)\n", n_images == 1 ? "" : "s");
    while (n + 2 <= 2 * MAX_TURNS) {
        fprintf(stderr, "> ");
        ssize_t len = getline(&line, &cap, stdin);
        if (len <= 0)
            break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (!len)
            break;
        own[n] = n == 0 ? user_turn(ri->placeholder, n_images, line, name) : strdup(line);
        if (!own[n]) {
            rc = fail("out of memory");
            break;
        }
        msgs[n] = (vtok_chat_msg){.role = "user", .content = own[n]};
        n++;
        char *text = NULL;
        vtok_llm_batch b = {0};
        if (vtok_chat_render(m, name, msgs, n, 1, &text, &st) ||
            vtok_llm_prompt(m, ri, text, n_images, T, ids, vtok_chat_add_special(m, name, text), &b,
                            &st)) {
            vtok_free(text);
            rc = fail("%s", st.msg);
            break;
        }
        vtok_free(text);
        b.embeds = rows;
        char *reply = NULL;
        o->same_embeds = 1; /* every turn splices the same images' rows */
        rc = answer(m, c, o, &b, &reply); /* keeps what c holds of b */
        vtok_llm_batch_free(&b);
        if (rc)
            break;
        own[n] = reply;
        msgs[n] = (vtok_chat_msg){.role = "assistant", .content = reply};
        n++;
    }
    for (int i = 0; i < n; i++)
        free(own[i]);
    free(line);
    vtok_llm_ctx_free(c);
    return rc;
}

int cli_chat(int argc, char **argv)
{
    const char *recipe = NULL, *model = NULL, *llm = NULL, *prompt = NULL, *format = NULL;
    const char *experts = NULL;
    const char *images[MAX_CHAT_IMAGES];
    int n_images = 0;
    gen_opts o = {.gp = vtok_gen_default_params()};
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used;
        if (gen_option(&o, argc, argv, &i, &used))
            return 1;
        if (used)
            continue;
        if (!v)
            return fail("%s needs a value", k);
        i++;
        if (!strcmp(k, "--recipe"))
            recipe = v;
        else if (!strcmp(k, "--model"))
            model = v;
        else if (!strcmp(k, "--llm"))
            llm = v;
        else if (!strcmp(k, "-p") || !strcmp(k, "--prompt"))
            prompt = v;
        else if (!strcmp(k, "--format"))
            format = v;
        else if (!strcmp(k, "--experts"))
            experts = v;
        else if (!strcmp(k, "--out"))
            o.out = v;
        else if (!strcmp(k, "--image")) {
            if (n_images == MAX_CHAT_IMAGES)
                return fail("at most %d images", MAX_CHAT_IMAGES);
            images[n_images++] = v;
        } else
            return fail("chat: unknown option %s", k);
    }
    if (!recipe || !model)
        return fail("usage: vtok chat --recipe NAME|FILE --model DIR [--llm DIR] --image FILE... "
                    "[-p TEXT] [--format NAME|template|raw] (see vtok --help)");
    if (!llm) /* the LLM inside the model's own checkpoint (LLaVA, SliME, llava-hf) */
        llm = model;
    vtok_status st = {0};
    int rc = 1;
    vtok_image imgs[MAX_CHAT_IMAGES];
    memset(imgs, 0, sizeof imgs);
    vtok_recipe *r = NULL;
    vtok_recipe_ctx *rc_ctx = NULL;
    vtok_llm *m = NULL;
    vtok_llm_ctx *c = NULL;
    char *question = NULL, *turn = NULL, *text = NULL;
    int32_t *text_ids = NULL;
    int64_t n_text_ids = 0;
    float route_w[16];
    char *route_ans = NULL;
    vtok_llm_batch b = {0};
    vtok_image_params ip = vtok_image_default_params();
    for (int i = 0; i < n_images; i++)
        if (vtok_image_load(images[i], &ip, &imgs[i], &st)) {
            fail("%s", st.msg);
            goto done;
        }
    vtok_recipe_params rp = vtok_recipe_default_params();
    if (o.dtype && (rp.dtype = vtok_dtype_from_name(o.dtype)) < 0) {
        fail("--dtype %s: expected f32, bf16, int8 or q4", o.dtype);
        goto done;
    }
    if (rp.dtype == VTOK_DTYPE_Q4)
        rp.dtype = VTOK_DTYPE_INT8; /* q4 is for the LLM; the vision side takes int8 */
    if (!(r = vtok_recipe_load(recipe, model, &rp, &st))) {
        fail("%s", st.msg);
        goto done;
    }
    vtok_recipe_info ri;
    vtok_recipe_get_info(r, &ri);
    if (o.out && !ri.id_format[0]) {
        fail("--out: recipe %s writes no image ids (its answers are text only)", ri.name);
        goto done;
    }
    if (o.out && outset_mkdir(o.out)) { /* before any work: a bad --out fails fast */
        fail("cannot create output folder '%s'", o.out);
        goto done;
    }
    o.ri = &ri;
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = o.threads;
    if (!(rc_ctx = vtok_recipe_ctx_new(r, &cp, &st))) {
        fail("%s", st.msg);
        goto done;
    }
    /* The LLM first: a recipe that selects by the text (SliME) needs the
     * prompt's ids before its run. */
    if (!(m = load(llm, o.dtype, o.threads)))
        goto done;
    vtok_llm_info li;
    vtok_llm_get_info(m, &li);
    if (n_images && !ri.id_format[0] && ri.d_out != li.hidden_size) {
        fail("recipe %s gives tokens of width %lld, the LLM takes %lld", ri.name,
             (long long)ri.d_out, (long long)li.hidden_size);
        goto done;
    }
    int raw = format && !strcmp(format, "raw");
    if (o.interactive && (prompt || raw)) {
        fail("-i: the conversation comes from stdin, one turn per line (no -p, no raw format)");
        goto done;
    }
    int interactive = o.interactive || (!prompt && isatty(0) && !raw && !o.json);
    if (interactive && ri.needs_text && n_images) {
        fail("recipe %s chooses image tokens by the question: give it with -p (one question "
             "per run)", ri.name);
        goto done;
    }
    if (!interactive && !prompt && !(question = read_stdin_all())) {
        fail("cannot read the question from stdin");
        goto done;
    }
    const char *q = prompt ? prompt : question;
    vtok_run_params runp = vtok_run_default_params();
    runp.image_names = images;
    /* A routing recipe (MoVA): the coarse pass picks the experts, on the
     * context the answer then uses (the shared prefix is kept). */
    const int64_t n_exp = vtok_recipe_n_experts(r);
    if (experts && !n_exp) {
        fail("--experts: recipe %s has no experts to route", ri.name);
        goto done;
    }
    if (n_exp && n_images) {
        if (interactive) {
            fail("recipe %s routes by the question: give it with -p (one question per run)",
                 ri.name);
            goto done;
        }
        if (n_exp > 16) {
            fail("recipe %s: more than 16 experts", ri.name);
            goto done;
        }
        if (!(c = vtok_llm_ctx_new(m, o.n_ctx, &cp, &st))) {
            fail("%s", st.msg);
            goto done;
        }
        if (cli_route(m, c, r, rc_ctx, &ri, imgs, n_images, images, q, format, experts,
                      route_w, &route_ans, NULL, NULL, NULL, NULL))
            goto done;
        cli_route_report(r, route_w, route_ans);
        runp.prompt = q;
        runp.cond = route_w;
        runp.n_cond = n_exp;
        runp.same_images = route_ans != NULL; /* the routing pass ran the base encoder */
    }
    if (ri.needs_text && n_images) {
        if (cli_text_ids(m, &ri, n_images, prompt ? prompt : question, format, &text_ids,
                         &n_text_ids))
            goto done;
        runp.llm = m;
        runp.text_ids = text_ids;
        runp.n_text_ids = n_text_ids;
    }
    const float *rows = NULL;
    const int64_t *ids = NULL;
    int64_t T[MAX_CHAT_IMAGES] = {0}, per = 0;
    if (n_images) {
        if (vtok_recipe_run_images(rc_ctx, imgs, n_images, &runp)) {
            fail("%s", vtok_recipe_ctx_errmsg(rc_ctx));
            goto done;
        }
        vtok_view e;
        int64_t n_id = 0;
        if (ri.id_format[0]) {
            if (vtok_recipe_get_ids(rc_ctx, &ids, &n_id, &per)) {
                fail("%s", vtok_recipe_ctx_errmsg(rc_ctx));
                goto done;
            }
            for (int k = 0; k < n_images; k++)
                T[k] = per;
        } else {
            vtok_recipe_get_output(rc_ctx, &e);
            rows = e.data;
            for (int k = 0; k < n_images; k++) /* ragged recipes: each image its own count */
                if (!vtok_recipe_get_image_output(rc_ctx, k, &e))
                    T[k] = e.ne[0];
        }
    }
    if (interactive) {
        if (o.out) {
            fail("--out keeps one answer's image ids: give the question with -p");
            goto done;
        }
        rc = converse(m, &o, &cp, &ri, format, n_images, T, ids, rows);
        goto done;
    }
    /* raw: the text is the whole prompt, placeholders in it */
    if (vtok_chat_prompt(m, &ri, format, q, n_images, T, ids, &b, NULL, &st)) {
        fail("%s", st.msg);
        goto done;
    }
    b.embeds = rows;
    /* after routing, c holds the routing prompt: the positions both prompts
     * share are kept (vtok_llm_eval_reuse, in answer) */
    if (!c && !(c = vtok_llm_ctx_new(m, o.n_ctx, &cp, &st))) {
        fail("%s", st.msg);
        goto done;
    }
    rc = answer(m, c, &o, &b, NULL);
done:
    free(route_ans);
    vtok_llm_batch_free(&b);
    vtok_llm_ctx_free(c);
    vtok_llm_free(m);
    vtok_recipe_ctx_free(rc_ctx);
    vtok_recipe_free(r);
    for (int i = 0; i < n_images; i++)
        vtok_image_free(&imgs[i]);
    free(question);
    free(turn);
    free(text_ids);
    vtok_free(text);
    return rc;
}
