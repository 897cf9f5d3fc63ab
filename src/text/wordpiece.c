/*
 * wordpiece.c - BERT's text pipeline: BertNormalizer, BertPreTokenizer and
 * the WordPiece model, as tokenizers has them:
 *   normalizers/bert.rs  clean_text (drop NUL, U+FFFD and "other" chars but
 *                        \t \n \r; whitespace becomes ' '), then CJK
 *                        ideographs padded with spaces, then accents
 *                        stripped (NFD, Mn removed; strip_accents defaults
 *                        to lowercase), then lowercase (char by char);
 *   pre_tokenizers/bert.rs  split on whitespace (removed) and on
 *                        punctuation (ASCII punctuation or Unicode P*,
 *                        each its own word);
 *   models/wordpiece/mod.rs  a word longer than max_input_chars_per_word is
 *                        the unk token; else greedy longest match from the
 *                        left, pieces after the first carrying the
 *                        continuing_subword_prefix ("##"); a word with a
 *                        position nothing matches is the unk token.
 */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* normalizers/bert.rs is_chinese_char */
static int is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static int put_cp(vt_tokbuf *b, uint32_t cp)
{
    char u[4];
    return vt_tokbuf_put(b, u, (size_t)vt_utf8_encode(cp, u));
}

int vt_bert_normalize(const vt_norm_step *ns, const char *s, size_t n, vt_tokbuf *out)
{
    const unsigned char *u = (const unsigned char *)s;
    int r = 0;
    for (size_t i = 0; i < n && !r;) {
        uint32_t cp;
        int k = vt_utf8_decode(u + i, n - i, &cp);
        if (!k) { cp = 0xFFFD; k = 1; }
        i += (size_t)k;
        if (ns->clean) {
            int ctl = cp != '\t' && cp != '\n' && cp != '\r' && vt_uni_is_other(cp);
            if (cp == 0 || cp == 0xFFFD || ctl) continue;
            if (cp == '\t' || cp == '\n' || cp == '\r' || vt_uni_is_space(cp)) cp = ' ';
        }
        uint32_t d[18];
        int nd = ns->strip ? vt_uni_nfd_cp(cp, d) : (d[0] = cp, 1);
        int pad = ns->chinese && is_cjk(cp);
        if (pad) r = vt_tokbuf_put(out, " ", 1);
        for (int q = 0; q < nd && !r; q++) {
            if (ns->strip && vt_uni_is_mn(d[q])) continue;
            if (ns->lower) {
                uint32_t l[3];
                int nl = vt_uni_lower(d[q], l);
                for (int z = 0; z < nl && !r; z++) r = put_cp(out, l[z]);
            } else {
                r = put_cp(out, d[q]);
            }
        }
        if (pad && !r) r = vt_tokbuf_put(out, " ", 1);
    }
    return r;
}

/* pre_tokenizers/bert.rs is_bert_punc */
static int is_punc(uint32_t c)
{
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
               (c >= 0x7B && c <= 0x7E);
    return vt_uni_is_punct(c);
}

int vt_bert_pretok(const char *s, size_t n, int (*fn)(void *, const char *, size_t), void *arg)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t start = 0, i = 0;
    int r = 0;
    while (i < n && !r) {
        uint32_t cp;
        int k = vt_utf8_decode(u + i, n - i, &cp);
        if (!k) { cp = 0xFFFD; k = 1; }
        int sp = vt_uni_is_space(cp), pu = !sp && is_punc(cp);
        if (sp || pu) {
            if (i > start) r = fn(arg, s + start, i - start);
            if (pu && !r) r = fn(arg, s + i, (size_t)k);
            start = i + (size_t)k;
        }
        i += (size_t)k;
    }
    if (!r && n > start) r = fn(arg, s + start, n - start);
    return r;
}

int vt_wordpiece_word(const vt_tokenizer *t, const char *w, size_t n, vt_idvec *out)
{
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) chars += ((unsigned char)w[i] & 0xC0) != 0x80;
    if ((int64_t)chars > t->wp_max_chars) return vt_idvec_push(out, t->unk);
    size_t mark = out->n, start = 0;
    vt_tokbuf b = {0};
    int r = 0;
    while (start < n && !r) {
        size_t end = n;
        int32_t id = -1;
        while (start < end) {
            b.n = 0;
            if (start > 0 && (r = vt_tokbuf_put(&b, t->wp_prefix, t->wp_prefix_len))) break;
            if ((r = vt_tokbuf_put(&b, w + start, end - start))) break;
            id = vt_strmap_get(&t->vocab, b.s, b.n);
            if (id >= 0) break;
            do end--; while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80);
        }
        if (r) break;
        if (id < 0) {
            out->n = mark;                      /* the whole word is unknown */
            r = vt_idvec_push(out, t->unk);
            break;
        }
        r = vt_idvec_push(out, id);
        start = end;
    }
    free(b.s);
    return r;
}
