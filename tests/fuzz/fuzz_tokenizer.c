/*
 * fuzz_tokenizer.c - libFuzzer target for text tokenizers (src/text/).
 *
 * The first input byte picks the mode:
 *   even: the rest is a tokenizer.json (no terminating NUL, so ASan sees any
 *         read past its end), loaded with vt_tok_load_from_memory; a loaded
 *         tokenizer encodes and decodes a few fixed strings;
 *   odd:  the rest is text encoded with a small fixed byte-level BPE
 *         tokenizer and a SentencePiece-style one (made once at start), with
 *         and without special tokens; valid UTF-8 must encode, invalid must be
 *         refused, and decode(encode(text)) must succeed.
 * Every failure must leave one non-empty line in the status.
 */
#include "text/tokenizer.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Byte-level BPE over the 256 byte symbols with a few merges, GPT-2 style. */
static const char BL_HEAD[] =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":300,\"content\":\"<|end|>\",\"single_word\":"
    "false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}],"
    "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
    "\"trim_offsets\":true,\"use_regex\":true},\"post_processor\":null,\"decoder\":{\"type\":"
    "\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_"
    "prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,"
    "\"vocab\":{";
/* SentencePiece-style BPE with byte fallback. */
static const char SP_JSON[] =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,"
    "\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},{\"id\":1,\"content\":"
    "\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,"
    "\"special\":true}],\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":"
    "\"Prepend\",\"prepend\":\"\\u2581\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},"
    "\"content\":\"\\u2581\"}]},\"pre_tokenizer\":null,\"post_processor\":{\"type\":"
    "\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[{\"Sequence\":{\"id\":\"A\","
    "\"type_id\":0}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":"
    "[\"<s>\"]}}},\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\","
    "\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},{\"type\":\"ByteFallback\"},"
    "{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\","
    "\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":true,"
    "\"byte_fallback\":true,\"vocab\":{\"<unk>\":0,\"<s>\":1,%s\"\\u2581\":258,\"a\":259,"
    "\"b\":260,\"\\u2581a\":261,\"ab\":262},\"merges\":[\"\\u2581 a\",\"a b\"]}}";

static vt_tokenizer *g_bl, *g_sp;

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the others
 * to U+0100 + n in order. */
static int byte_char(int b, char *out)
{
    int cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
        cp = b;
    } else {
        int n = 0;
        for (int c = 0; c < b; c++)
            n += !((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255));
        cp = 256 + n;
    }
    if (cp == '"' || cp == '\\')
        return sprintf(out, "\\%c", cp);
    if (cp < 0x80)
        return sprintf(out, "%c", cp);
    return sprintf(out, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    vtok_status st = {0};
    char *bl = malloc(65536), *sp = malloc(65536), *fb = malloc(32768);
    if (!bl || !sp || !fb)
        abort();
    size_t n = (size_t)sprintf(bl, "%s", BL_HEAD);
    for (int b = 0; b < 256; b++) {
        char c[8];
        byte_char(b, c);
        n += (size_t)sprintf(bl + n, "\"%s\":%d,", c, b);
    }
    n += (size_t)sprintf(bl + n, "\"th\":256,\"the\":257,\"\\u0120the\":258},\"merges\":"
                                 "[\"t h\",\"th e\",\"\\u0120 the\"]}}");
    size_t m = 0;
    for (int b = 0; b < 256; b++)
        m += (size_t)sprintf(fb + m, "\"<0x%02X>\":%d,", b, b + 2);
    snprintf(sp, 65536, SP_JSON, fb);
    if (vt_tok_load_from_memory(&g_bl, bl, n, NULL, 0, "bytelevel", &st) ||
        vt_tok_load_from_memory(&g_sp, sp, strlen(sp), NULL, 0, "sentencepiece", &st)) {
        fprintf(stderr, "fuzz_tokenizer: fixed tokenizers do not load: %s\n", st.msg);
        abort();
    }
    free(bl), free(sp), free(fb);
    return 0;
}

static int valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        const unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                     : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + len > n)
            return 0;
        uint32_t cp = len == 1 ? c : c & (0x7F >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

/* expect_ok: 1 must encode and decode, 0 must be refused, -1 either (a
 * fuzzed tokenizer may lack a piece for some text), with a one-line message. */
static void roundtrip(const vt_tokenizer *t, const char *text, size_t n, int expect_ok)
{
    vtok_status st = {0};
    for (int special = 0; special < 2; special++) {
        int64_t k = vt_tok_encode(t, text, n, special, NULL, 0, &st);
        if (k < 0) {
            if (expect_ok == 1 || !st.msg[0] || strchr(st.msg, '\n'))
                abort(); /* valid text refused, or a bad message */
            return;
        }
        if (expect_ok == 0)
            abort(); /* invalid UTF-8 accepted */
        int32_t *ids = malloc((size_t)(k > 0 ? k : 1) * sizeof *ids);
        if (!ids)
            return;
        if (vt_tok_encode(t, text, n, special, ids, k, &st) != k)
            abort();
        int64_t len = vt_tok_decode(t, ids, k, 0, NULL, 0, &st);
        if (len < 0 && expect_ok == -1 && st.msg[0] && !strchr(st.msg, '\n')) {
            free(ids);
            return;
        }
        char *buf = len >= 0 ? malloc((size_t)len + 1) : NULL;
        if (len < 0 || !buf || vt_tok_decode(t, ids, k, 0, buf, (size_t)len + 1, &st) != len)
            abort();
        free(buf);
        free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t mode = data[0];
    const char *rest = (const char *)data + 1;
    const size_t n = size - 1;
    if (mode & 1) {
        const int ok = valid_utf8(data + 1, n);
        roundtrip(g_bl, rest, n, ok);
        roundtrip(g_sp, rest, n, ok);
        return 0;
    }
    vtok_status st = {0};
    vt_tokenizer *t = NULL;
    if (vt_tok_load_from_memory(&t, rest, n, NULL, 0, "fuzz", &st)) {
        if (!st.msg[0] || strchr(st.msg, '\n'))
            abort();
        return 0;
    }
    static const char *const probes[] = {"", "hello world", "  the\n\nthe  ", "\xC3\xA9t\xC3\xA9",
                                         "<|end|><s>x"};
    for (int i = 0; i < 5; i++)
        roundtrip(t, probes[i], strlen(probes[i]), -1);
    vt_tok_free(t);
    return 0;
}
