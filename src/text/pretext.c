/*
 * pretext.c - the pre-tokenizer split regexes, as hand-written matchers.
 *
 * tokenizers compiles Split / ByteLevel patterns with Oniguruma
 * (tokenizers/src/utils/onig.rs) and pre-tokenizes with find_matches: the
 * leftmost match, alternatives tried in order, quantifiers greedy with
 * backtracking. The three patterns below are those of GPT-2 (byte_level.rs
 * RE), LLaMA-3 and Qwen2/3 (their tokenizer.json Split), and CLIP's (its
 * tokenizer.json Split, with or without the two special-token literals in
 * front; openai/clip-vit-base-patch32 has them, clip-vit-large-patch14's
 * newer file not); each matcher below
 * walks the alternatives in the pattern's order and resolves the
 * backtracking of each by hand (derivations beside each). Every one of them
 * matches some non-empty prefix of any non-empty text (the last
 * alternatives cover whitespace, the others letters, numbers and the rest),
 * so the splits tile the text, as Split(Isolated) needs.
 *
 * (?i:...) folds ASCII only here, as transformers.js does (its
 * rewrite_oniguruma_to_js); Oniguruma would also fold U+017F into 's'.
 */
#include "tok_internal.h"

#include <string.h>

static const char RX_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RX_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RX_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* CLIP's pattern has no \s alternative: whitespace is what its Split
 * (behavior Removed, invert true) drops between the matches. */
static const char RX_CLIP[] =
    "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|"
    "[^\\s\\p{L}\\p{N}]+";
static const char RX_CLIP_PLAIN[] = "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|"
                                    "[^\\s\\p{L}\\p{N}]+";

int vt_pretok_regex_kind(const char *rx)
{
    if (!strcmp(rx, RX_CLIP)) return VT_RX_CLIP;
    if (!strcmp(rx, RX_CLIP_PLAIN)) return VT_RX_CLIP_PLAIN;
    if (!strcmp(rx, RX_GPT2)) return VT_RX_GPT2;
    if (!strcmp(rx, RX_LLAMA3)) return VT_RX_LLAMA3;
    if (!strcmp(rx, RX_QWEN2)) return VT_RX_QWEN2;
    return -1;
}

/* Code point at s[i] (text is valid UTF-8); *len its length. i == n: -1. */
static int64_t cp_at(const char *s, size_t n, size_t i, size_t *len)
{
    uint32_t cp;
    if (i >= n) { *len = 0; return -1; }
    int k = vt_utf8_decode((const unsigned char *)s + i, n - i, &cp);
    if (k == 0) { *len = 1; return 0xFFFD; }            /* not reached: input is checked */
    *len = (size_t)k;
    return cp;
}

enum { C_L, C_N, C_S, C_O };   /* letter, number, \s, other */
static int cls(int64_t cp)
{
    if (cp < 0) return -1;
    if (vt_uni_is_letter((uint32_t)cp)) return C_L;
    if (vt_uni_is_number((uint32_t)cp)) return C_N;
    if (vt_uni_is_space((uint32_t)cp)) return C_S;
    return C_O;
}

/* end of the run of class c starting at i (at most max code points; 0 = no
 * limit) */
static size_t run(const char *s, size_t n, size_t i, int c, int max)
{
    size_t l;
    int k = 0;
    while (i < n && (!max || k < max)) {
        int64_t cp = cp_at(s, n, i, &l);
        if (cls(cp) != c) break;
        i += l;
        k++;
    }
    return i;
}

static int lower_ascii(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's|'t|'re|'ve|'m|'ll|'d, optionally folding ASCII case */
static size_t contraction(const char *s, size_t n, int fold)
{
    static const char *const alts[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    if (n < 2 || s[0] != '\'') return 0;
    for (int a = 0; a < 7; a++) {
        size_t k = strlen(alts[a]);
        if (n < 1 + k) continue;
        size_t j = 0;
        for (; j < k; j++) {
            int c = (unsigned char)s[1 + j];
            if ((fold ? lower_ascii(c) : c) != alts[a][j]) break;
        }
        if (j == k) return 1 + k;
    }
    return 0;
}

/* \s+(?!\S) then \s+ at a whitespace run [0, j): the run up to its end if
 * text ends there, else all but its last character when that leaves one
 * (the lookahead then sees whitespace); else plain \s+ takes the run. */
static size_t space_tail(size_t n, size_t j, const char *s)
{
    if (j == n) return j;
    size_t k = 0, last = 0, l;
    while (k < j) { last = k; cp_at(s, n, k, &l); k += l; }
    return last > 0 ? last : j;
}

size_t vt_pretok_regex_next(int kind, const char *s, size_t n)
{
    size_t l0, l1, m;
    int64_t c0 = cp_at(s, n, 0, &l0);
    int64_t c1 = cp_at(s, n, l0, &l1);
    int k0 = cls(c0), k1 = cls(c1);

    if (kind == VT_RX_CLIP || kind == VT_RX_CLIP_PLAIN) {
        /* the alternatives in order: the literals, the contractions (case
         * as written: the file's pattern has no (?i)), a letter run, ONE
         * number, a run of the rest. Whitespace matches none (0). */
        static const char *const lit[] = {"<|startoftext|>", "<|endoftext|>"};
        for (int i = 0; kind == VT_RX_CLIP && i < 2; i++)
            if (n >= strlen(lit[i]) && !memcmp(s, lit[i], strlen(lit[i]))) return strlen(lit[i]);
        if ((m = contraction(s, n, 0))) return m;
        if (k0 == C_L) return run(s, n, 0, C_L, 0);
        if (k0 == C_N) return l0;
        if (k0 == C_O) return run(s, n, 0, C_O, 0);
        return 0;
    }
    if (kind == VT_RX_GPT2) {
        if ((m = contraction(s, n, 0))) return m;
        /* ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': the optional space
         * is taken when the class follows it, else the run starts at 0 */
        for (int c = C_L; c <= C_O; c++) {
            if (c == C_S) continue;
            if (c0 == ' ' && k1 == c) return run(s, n, l0, c, 0);
            if (k0 == c) return run(s, n, 0, c, 0);
        }
        return space_tail(n, run(s, n, 0, C_S, 0), s);
    }

    /* LLaMA-3 / Qwen2 */
    if ((m = contraction(s, n, 1))) return m;
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (k0 == C_L) return run(s, n, 0, C_L, 0);
    if (c0 != '\r' && c0 != '\n' && k0 != C_N && k1 == C_L) return run(s, n, l0, C_L, 0);
    /* \p{N}{1,3} (LLaMA-3) or \p{N} (Qwen2) */
    if (k0 == C_N) return run(s, n, 0, C_N, kind == VT_RX_LLAMA3 ? 3 : 1);
    /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
    size_t p = (size_t)-1;
    if (c0 == ' ' && k1 == C_O) p = l0;
    else if (k0 == C_O) p = 0;
    if (p != (size_t)-1) {
        size_t e = run(s, n, p, C_O, 0);
        while (e < n && (s[e] == '\r' || s[e] == '\n')) e++;
        return e;
    }
    /* here c0 is whitespace. \s*[\r\n]+: greedy \s* backs off to the last
     * \r or \n of the run, which [\r\n]+ then takes alone */
    size_t j = run(s, n, 0, C_S, 0), last_nl = 0;
    int has_nl = 0;
    for (size_t i = 0; i < j; i++)
        if (s[i] == '\r' || s[i] == '\n') { last_nl = i; has_nl = 1; }
    if (has_nl) return last_nl + 1;
    return space_tail(n, j, s);
}
