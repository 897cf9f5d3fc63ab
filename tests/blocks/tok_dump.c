/*
 * tok_dump.c - drive src/text/tokenizer for the text tests.
 *
 *   tok_dump dump TOKENIZER CORPUS.json   encode each string of the JSON list
 *       (with and without special tokens) and decode the ids back (with and
 *       without skip_special); prints one JSON list of objects
 *       {"ids", "ids_plain", "text", "text_skip"} for tests/text/check_tok.py
 *       to compare with transformers.js (tests/text/tok_ref.mjs).
 *   tok_dump bench TOKENIZER FILE          time encoding FILE (stdout: bytes,
 *       tokens, seconds, MB/s).
 *   tok_dump selftest TOKENIZER WORKDIR    bad inputs give clear errors and
 *       no crash (run under ASan too); buffer size conventions; a 10k-char
 *       word encodes in well under a second (the merge loop is O(n log n)).
 * TOKENIZER is a tokenizer.json or its directory. Exit status 0 = ok.
 */
#include "text/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap + 1);
    for (size_t k; b && (k = fread(b + len, 1, cap - len, f)) > 0;) {
        len += k;
        if (len == cap) {
            char *nb = realloc(b, cap * 2 + 1);
            if (!nb) { free(b); b = NULL; break; }
            b = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (b) b[len] = 0;
    *n = len;
    return b;
}

static cJSON *ids_json(const int32_t *ids, int64_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

/* encode text; returns malloc'ed ids (count in *n) or NULL with st set */
static int32_t *encode(const vt_tokenizer *t, const char *s, size_t len, int special, int64_t *n,
                       vtok_status *st)
{
    int64_t need = vt_tok_encode(t, s, len, special, NULL, 0, st);
    if (need < 0) return NULL;
    int32_t *ids = malloc(((size_t)need + 1) * sizeof *ids);
    if (!ids) return NULL;
    int64_t got = vt_tok_encode(t, s, len, special, ids, need, st);
    if (got != need) { free(ids); return NULL; }
    *n = got;
    return ids;
}

static char *decode(const vt_tokenizer *t, const int32_t *ids, int64_t n, int skip, vtok_status *st)
{
    int64_t need = vt_tok_decode(t, ids, n, skip, NULL, 0, st);
    if (need < 0) return NULL;
    char *s = malloc((size_t)need + 1);
    if (s && vt_tok_decode(t, ids, n, skip, s, (size_t)need + 1, st) != need) { free(s); return NULL; }
    return s;
}

static int cmd_dump(const char *tok, const char *corpus)
{
    vtok_status st = {0};
    vt_tokenizer *t;
    if (vt_tok_load(&t, tok, &st)) {
        fprintf(stderr, "tok_dump: %s\n", st.msg);
        return 1;
    }
    size_t n;
    char *text = slurp(corpus, &n);
    cJSON *list = text ? cJSON_ParseWithLength(text, n) : NULL;
    free(text);
    if (!cJSON_IsArray(list)) {
        fprintf(stderr, "tok_dump: %s: not a JSON list\n", corpus);
        vt_tok_free(t);
        return 1;
    }
    cJSON *out = cJSON_CreateArray();
    const cJSON *c;
    int rc = 0;
    cJSON_ArrayForEach(c, list) {
        const char *s = cJSON_IsString(c) ? c->valuestring : NULL;
        if (!s) { rc = 1; fprintf(stderr, "tok_dump: corpus entries must be strings\n"); break; }
        int64_t n1 = 0, n2 = 0;
        int32_t *a = encode(t, s, strlen(s), 1, &n1, &st);
        int32_t *b = a ? encode(t, s, strlen(s), 0, &n2, &st) : NULL;
        char *d1 = b ? decode(t, a, n1, 0, &st) : NULL;
        char *d2 = d1 ? decode(t, a, n1, 1, &st) : NULL;
        if (!d2) {
            fprintf(stderr, "tok_dump: '%.40s': %s\n", s, st.msg);
            rc = 1;
        } else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddItemToObject(o, "ids", ids_json(a, n1));
            cJSON_AddItemToObject(o, "ids_plain", ids_json(b, n2));
            cJSON_AddStringToObject(o, "text", d1);
            cJSON_AddStringToObject(o, "text_skip", d2);
            cJSON_AddItemToArray(out, o);
        }
        free(a);
        free(b);
        free(d1);
        free(d2);
        if (rc) break;
    }
    if (!rc) {
        char *p = cJSON_PrintUnformatted(out);
        if (p) { puts(p); free(p); } else rc = 1;
    }
    cJSON_Delete(out);
    cJSON_Delete(list);
    vt_tok_free(t);
    return rc;
}

static int cmd_bench(const char *tok, const char *file)
{
    vtok_status st = {0};
    vt_tokenizer *t;
    double t0 = now();
    if (vt_tok_load(&t, tok, &st)) { fprintf(stderr, "tok_dump: %s\n", st.msg); return 1; }
    double t1 = now();
    size_t n;
    char *text = slurp(file, &n);
    if (!text) { vt_tok_free(t); return 1; }
    int64_t k = 0;
    double t2 = now();
    int32_t *ids = encode(t, text, n, 0, &k, &st);
    double t3 = now();
    char *back = ids ? decode(t, ids, k, 0, &st) : NULL;
    double t4 = now();
    printf("{\"load_s\": %.3f, \"bytes\": %zu, \"tokens\": %lld, \"encode_s\": %.3f, "
           "\"encode_MBps\": %.2f, \"decode_s\": %.3f}\n",
           t1 - t0, n, (long long)k, t3 - t2, (double)n / 1e6 / (t3 - t2), t4 - t3);
    int rc = ids && back ? 0 : 1;
    free(ids);
    free(back);
    free(text);
    vt_tok_free(t);
    return rc;
}

/* ---- selftest ---- */

static int fails;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond) && fails++ < 20) {                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

static void expect_load_error(const char *json, int code, const char *needle)
{
    vtok_status st = {0};
    vt_tokenizer *t = (vt_tokenizer *)&st;   /* must be reset to NULL */
    int r = vt_tok_load_from_memory(&t, json, strlen(json), NULL, 0, "bad.json", &st);
    CHECK(r == code && t == NULL && strstr(st.msg, needle) && !strchr(st.msg, '\n'),
          "load of %.60s: got %d '%s', want %d with '%s'", json, r, st.msg, code, needle);
}

static int write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fputs(s, f);
    return fclose(f);
}

#define TINY_BPE                                                                             \
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"<s>\": 3}," \
    " \"merges\": [\"a b\"]}, \"added_tokens\": [{\"id\": 3, \"content\": \"<s>\", "          \
    "\"special\": true}]%s}"

static int cmd_selftest(const char *tok, const char *work)
{
    vtok_status st = {0};
    vt_tokenizer *t = NULL;
    char path[4096], json[2048];

    /* files */
    snprintf(path, sizeof path, "%s/does-not-exist/tokenizer.json", work);
    CHECK(vt_tok_load(&t, path, &st) == VTOK_EIO && !t && strstr(st.msg, "does-not-exist"),
          "missing file: %s", st.msg);
    CHECK(vt_tok_load(&t, work, &st) < 0 && !t && strstr(st.msg, "tokenizer.json"),
          "dir without tokenizer.json: %s", st.msg);
    snprintf(path, sizeof path, "%s/corrupt.json", work);
    CHECK(write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0") == 0, "write");
    CHECK(vt_tok_load(&t, path, &st) == VTOK_EFORMAT && !t && strstr(st.msg, "not a valid JSON"),
          "corrupt: %s", st.msg);

    /* structure */
    expect_load_error("[1, 2]", VTOK_EFORMAT, "not a valid JSON object");
    expect_load_error("{}", VTOK_EFORMAT, "model is missing");
    expect_load_error("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}}", VTOK_EUNSUPPORTED,
                      "type 'WordLevel' is not supported");
    expect_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}",
                      VTOK_EFORMAT, "WordPiece needs an unk_token");
    expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", VTOK_EUNSUPPORTED,
                      "'Unigram'");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"a\": 1}, "
                      "\"merges\": []}}", VTOK_EFORMAT, "duplicate key");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}",
                      VTOK_EFORMAT, "not an id");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a "
                      "c\"]}}", VTOK_EFORMAT, "not in the vocab");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]}}",
                      VTOK_EFORMAT, "merges[0]");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, "
                      "\"merges\": []}}", VTOK_EFORMAT, "id 0 is both");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 2000000000}, "
                      "\"merges\": []}}", VTOK_EFORMAT, "far beyond");
    snprintf(json, sizeof json, TINY_BPE, ", \"normalizer\": {\"type\": \"NFKC\"}");
    expect_load_error(json, VTOK_EUNSUPPORTED, "normalizer 'NFKC' is not supported");
    snprintf(json, sizeof json, TINY_BPE, ", \"normalizer\": {\"type\": \"NFKD\"}");
    expect_load_error(json, VTOK_EUNSUPPORTED, "'NFKD'");
    snprintf(json, sizeof json, TINY_BPE, ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": "
             "{\"Regex\": \"\\\\w+\"}, \"behavior\": \"Isolated\"}");
    expect_load_error(json, VTOK_EUNSUPPORTED, "Split regex '\\w+'");
    snprintf(json, sizeof json, TINY_BPE, ", \"pre_tokenizer\": {\"type\": \"Whitespace\"}");
    expect_load_error(json, VTOK_EUNSUPPORTED, "'Whitespace' is not supported");
    snprintf(json, sizeof json, TINY_BPE, ", \"decoder\": {\"type\": \"CTC\"}");
    expect_load_error(json, VTOK_EUNSUPPORTED, "decoder 'CTC'");
    snprintf(json, sizeof json, TINY_BPE, ", \"post_processor\": {\"type\": \"BertProcessing\"}");
    expect_load_error(json, VTOK_EFORMAT, "BertProcessing needs 'cls' and 'sep'");
    snprintf(json, sizeof json, TINY_BPE, ", \"post_processor\": {\"type\": \"ByteLevelX\"}");
    expect_load_error(json, VTOK_EUNSUPPORTED, "post_processor 'ByteLevelX'");
    snprintf(json, sizeof json, TINY_BPE, ", \"post_processor\": {\"type\": \"TemplateProcessing\","
             " \"single\": [{\"SpecialToken\": {\"id\": \"<x>\"}}], \"special_tokens\": {}}");
    expect_load_error(json, VTOK_EFORMAT, "'<x>' has no 'ids'");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, "
                      "\"added_tokens\": [{\"id\": 0, \"content\": \"x\"}]}", VTOK_EFORMAT,
                      "id 0 is both");

    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []}, "
                      "\"added_tokens\": [{\"id\": 2, \"content\": \"a\"}]}", VTOK_EFORMAT,
                      "added token 'a' has id 2 but the vocab gives it 0");

    /* a tiny tokenizer: encode/decode conventions */
    snprintf(json, sizeof json, TINY_BPE, ", \"post_processor\": {\"type\": \"TemplateProcessing\","
             " \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}, {\"Sequence\": {\"id\": \"A\"}}],"
             " \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [3]}}}");
    CHECK(vt_tok_load_from_memory(&t, json, strlen(json), "{\"bos_token\": \"<s>\"}", 21, "tiny",
                                  &st) == 0, "tiny: %s", st.msg);
    if (t) {
        int32_t ids[8] = {0};
        CHECK(vt_tok_encode(t, "abab<s>a", 8, 1, ids, 2, &st) == 5 && ids[0] == 3 && ids[1] == 2,
              "tiny encode: %s", st.msg);
        CHECK(vt_tok_encode(t, "ab", 2, 0, NULL, 0, &st) == 1, "size query");
        CHECK(vt_tok_encode(t, "", 0, 1, ids, 8, &st) == 1 && ids[0] == 3, "empty text");
        CHECK(vt_tok_encode(t, "a\xff", 2, 0, ids, 8, &st) == VTOK_EINVAL &&
              strstr(st.msg, "not valid UTF-8 at byte 1"), "bad utf8: %s", st.msg);
        int32_t bad[2] = {2, 4};
        char buf[16];
        CHECK(vt_tok_decode(t, bad, 2, 0, buf, sizeof buf, &st) == VTOK_EINVAL &&
              strstr(st.msg, "id 4 at position 1"), "decode range: %s", st.msg);
        bad[1] = -7;
        CHECK(vt_tok_decode(t, bad, 2, 0, buf, sizeof buf, &st) == VTOK_EINVAL, "negative id");
        int32_t good[3] = {3, 2, 0};
        /* no decoder: pieces joined by spaces, as tokenizers does */
        CHECK(vt_tok_decode(t, good, 3, 0, buf, 4, &st) == 8 && !strcmp(buf, "<s>"),
              "decode truncation: '%s'", buf);
        CHECK(vt_tok_decode(t, good, 3, 1, buf, sizeof buf, &st) == 4 && !strcmp(buf, "ab a"),
              "skip special: '%s'", buf);
        CHECK(vt_tok_bos(t) == 3 && vt_tok_eos(t) == -1 && vt_tok_id(t, "ab") == 2 &&
              vt_tok_id(t, "zz") == -1 && !strcmp(vt_tok_piece(t, 3), "<s>") &&
              !vt_tok_piece(t, 9) && vt_tok_vocab_size(t) == 4 && vt_tok_is_special(t, 3),
              "lookups");
        vt_tok_free(t);
        t = NULL;
    }
    /* no template: add_bos_token / add_eos_token of the config decide
     * (transformers' LlamaTokenizerFast.update_post_processor) */
    snprintf(json, sizeof json, TINY_BPE, "");
    {
        static const char cfg[] = "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"ab\", "
                                  "\"add_bos_token\": true, \"add_eos_token\": true}";
        int32_t ids[8] = {0};
        CHECK(vt_tok_load_from_memory(&t, json, strlen(json), cfg, strlen(cfg), "cfg", &st) == 0,
              "config bos: %s", st.msg);
        CHECK(t && vt_tok_encode(t, "a", 1, 1, ids, 8, &st) == 3 && ids[0] == 3 && ids[1] == 0 &&
              ids[2] == 2, "add_bos/add_eos from config");
        CHECK(t && vt_tok_encode(t, "a", 1, 0, ids, 8, &st) == 1, "add_special=0");
        vt_tok_free(t);
        t = NULL;
        static const char bad[] = "{\"add_bos_token\": true}";
        CHECK(vt_tok_load_from_memory(&t, json, strlen(json), bad, strlen(bad), "cfg", &st) ==
              VTOK_EFORMAT && !t && strstr(st.msg, "add_bos_token"), "add_bos without bos: %s",
              st.msg);
        CHECK(vt_tok_load_from_memory(&t, json, strlen(json), "[", 1, "cfg", &st) == VTOK_EFORMAT &&
              !t && strstr(st.msg, "tokenizer_config.json"), "bad config: %s", st.msg);
    }
    vt_tok_free(NULL);

    /* mutated files: every byte-flip of a small valid file either loads or
     * fails with a message; what loads encodes and decodes without crashing
     * (ASan runs this too) */
    {
        static const char base[] =
            "{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, "
            "{\"type\": \"Prepend\", \"prepend\": \"_\"}, {\"type\": \"Replace\", \"pattern\": "
            "{\"String\": \" \"}, \"content\": \"_\"}]}, \"pre_tokenizer\": {\"type\": "
            "\"Metaspace\", \"replacement\": \"_\", \"prepend_scheme\": \"first\", \"split\": true},"
            " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", "
            "\"pattern\": {\"String\": \"_\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, "
            "{\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, "
            "\"stop\": 1}]}, \"added_tokens\": [{\"id\": 6, \"content\": \"<s>\", \"special\": "
            "true, \"lstrip\": true, \"rstrip\": true, \"single_word\": true}, {\"id\": 7, "
            "\"content\": \"ab\", \"normalized\": true}], \"model\": {\"type\": \"BPE\", "
            "\"unk_token\": \"<unk>\", \"fuse_unk\": true, \"byte_fallback\": true, \"vocab\": "
            "{\"<unk>\": 0, \"a\": 1, \"b\": 2, \"_\": 3, \"_a\": 4, \"<0x61>\": 5, \"_ab\": 8},"
            " \"merges\": [\"_ a\", [\"_a\", \"b\"]]}, \"post_processor\": {\"type\": "
            "\"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}, "
            "{\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {\"<s>\": {\"ids\": [6]}}}}";
        size_t bn = sizeof base - 1;
        char *m = malloc(bn + 1);
        unsigned x = 777;
        int loaded = 0;
        CHECK(vt_tok_load_from_memory(&t, base, bn, NULL, 0, "base", &st) == 0, "base: %s", st.msg);
        vt_tok_free(t);
        t = NULL;
        static const char texts[][32] = {"ab a<s>b  \xc3\xa9 zz", "", " ", "<s>", "ab<s>ab", "\xe2\x96\x81" "a"};
        for (int it = 0; it < 3000 && m; it++) {
            memcpy(m, base, bn + 1);
            for (int k = 0; k < 1 + it % 3; k++) {
                x = x * 1103515245u + 12345u;
                size_t pos = (x >> 8) % bn;
                x = x * 1103515245u + 12345u;
                static const char alpha[] = " \"{}[],:01_ab<>sS\\x\x80\xff";
                m[pos] = alpha[(x >> 8) % (sizeof alpha - 1)];
            }
            if (vt_tok_load_from_memory(&t, m, bn, NULL, 0, "mutant", &st) != 0) {
                CHECK(!t && st.msg[0] && !strchr(st.msg, '\n'), "mutant error: %s", st.msg);
                continue;
            }
            loaded++;
            for (size_t q = 0; q < sizeof texts / sizeof texts[0]; q++) {
                int64_t k = 0;
                int32_t *ids = encode(t, texts[q], strlen(texts[q]), 1, &k, &st);
                CHECK(ids != NULL, "mutant encode: %s", st.msg);
                char *back = ids ? decode(t, ids, k, 0, &st) : NULL;
                CHECK(!ids || back, "mutant decode: %s", st.msg);
                free(back);
                free(ids);
            }
            vt_tok_free(t);
            t = NULL;
        }
        free(m);
        fprintf(stderr, "tok_dump: 3000 mutated files, %d loaded\n", loaded);
    }

    /* a real tokenizer: a 10k-character word, and a long random run */
    if (vt_tok_load(&t, tok, &st) == 0) {
        size_t n = 10000;
        char *w = malloc(n + 1);
        unsigned x = 12345;
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            w[i] = (char)('a' + (x >> 16) % 26);
        }
        w[n] = 0;
        int64_t k = 0;
        double t0 = now();
        int32_t *ids = encode(t, w, n, 0, &k, &st);
        double dt = now() - t0;
        char *back = ids ? decode(t, ids, k, 0, &st) : NULL;
        CHECK(ids && back && dt < 2.0, "10k-char word: %.3f s (%s)", dt, st.msg);
        CHECK(back && strlen(back) >= n && strstr(back, w + 1), "10k-char word round trip");
        fprintf(stderr, "tok_dump: 10k-char word -> %lld tokens in %.4f s\n", (long long)k, dt);
        free(ids);
        free(back);
        free(w);
        vt_tok_free(t);
    } else {
        CHECK(0, "load %s: %s (for the npm packages: cd tests/text && npm ci --ignore-scripts)",
              tok, st.msg);
    }
    if (fails) fprintf(stderr, "tok_dump selftest: %d failure(s)\n", fails);
    else fprintf(stderr, "tok_dump selftest: ok\n");
    return fails ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "dump")) return cmd_dump(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "bench")) return cmd_bench(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "selftest")) return cmd_selftest(argv[2], argv[3]);
    fprintf(stderr, "usage: tok_dump dump|bench|selftest TOKENIZER CORPUS|FILE|WORKDIR\n");
    return 2;
}
