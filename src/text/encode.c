/*
 * encode.c - text -> ids and ids -> text for a loaded vt_tokenizer.
 *
 * Encoding (tokenizers/src/tokenizer/mod.rs encode_single_sequence, and
 * the JS port's Tokenizer.ts encode_text, which the tests compare with):
 * added tokens that are not normalized are split out of the raw text; each
 * other section is normalized, split again on the normalized added tokens,
 * pre-tokenized into words, and each word goes through BPE. Decoding
 * (mod.rs decode): ids -> pieces (special ones dropped on request), the
 * decoder chain, then clean_up_tokenization (transformers'
 * tokenization_utils_base.py) when the config asks for it.
 */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const vt_tokenizer *t;
    vt_idvec           *out;
    int                 first;        /* the section starts the text (Metaspace "first") */
} enc_ctx;

/* ---- added tokens ---- */

static int is_word_cp(uint32_t cp)
{
    /* added_vocabulary.rs single_word: a boundary is a char that is not
     * alphanumeric or '_' (Rust char::is_alphanumeric ~ letters and
     * numbers) */
    return cp == '_' || vt_uni_is_letter(cp) || vt_uni_is_number(cp);
}

/* Longest added token (of the wanted normalized flag) matching at s+i, or
 * -1. single_word tokens must not touch word characters on either side. */
static int match_added(const vt_tokenizer *t, const char *s, size_t n, size_t i, int normalized)
{
    unsigned char c = (unsigned char)s[i];
    for (int k = t->added_first[c]; k < t->added_first[c + 1]; k++) {
        const vt_added_tok *a = &t->added[t->added_order[k]];
        /* tokens that are normalized only match normalized text, when a
         * normalizer exists (Tokenizer.ts: normalized && normalizer) */
        int is_norm = a->normalized && t->n_norm > 0;
        const char *ct = is_norm ? a->ncontent : a->content;
        size_t cl = is_norm ? a->nlen : a->len;
        if (is_norm != normalized || cl == 0 || cl > n - i || memcmp(s + i, ct, cl))
            continue;
        if (a->single_word) {
            uint32_t cp;
            size_t e = i + cl;
            if (e < n && vt_utf8_decode((const unsigned char *)s + e, n - e, &cp) && is_word_cp(cp))
                continue;
            if (i > 0) {
                size_t b = i - 1;
                while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
                if (vt_utf8_decode((const unsigned char *)s + b, i - b, &cp) && is_word_cp(cp))
                    continue;
            }
        }
        return t->added_order[k];
    }
    return -1;
}

static size_t trim_end(const char *s, size_t a, size_t e)
{
    while (e > a) {
        size_t b = e - 1;
        while (b > a && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
        uint32_t cp;
        if (!vt_utf8_decode((const unsigned char *)s + b, e - b, &cp) || !vt_uni_is_space(cp)) break;
        e = b;
    }
    return e;
}

static size_t trim_start(const char *s, size_t a, size_t e)
{
    while (a < e) {
        uint32_t cp;
        int k = vt_utf8_decode((const unsigned char *)s + a, e - a, &cp);
        if (!k || !vt_uni_is_space(cp)) break;
        a += (size_t)k;
    }
    return a;
}

typedef int (*section_fn)(enc_ctx *c, const char *s, size_t n, int first);

/* Split s on added tokens of the given kind; text sections go to fn,
 * tokens to the output. lstrip/rstrip take the whitespace beside the token
 * (added_vocabulary.rs: the match is extended over it). */
static int split_added(enc_ctx *c, const char *s, size_t n, int normalized, int first,
                       section_fn fn)
{
    const vt_tokenizer *t = c->t;
    size_t start = 0, i = 0;
    int r, sec_first = first;
    while (i < n) {
        int k = t->n_added ? match_added(t, s, n, i, normalized) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        const vt_added_tok *a = &t->added[k];
        size_t end = i + (a->normalized && t->n_norm > 0 ? a->nlen : a->len), tstart = a->lstrip ? trim_end(s, start, i) : i;
        if (tstart > start && (r = fn(c, s + start, tstart - start, sec_first))) return r;
        if ((r = vt_idvec_push(c->out, a->id))) return r;
        sec_first = 0;
        if (a->rstrip) end = trim_start(s, end, n);
        i = start = end;
    }
    if (n > start) return fn(c, s + start, n - start, sec_first && start == 0);
    return 0;
}

/* ---- pre-tokenizers ---- */

static int pre_step(enc_ctx *c, int step, const char *s, size_t n);

/* Metaspace (pre_tokenizers/metaspace.rs): spaces become the replacement,
 * which is prepended (always, or for the first section only) unless the
 * text already starts with it; split=true then splits before each
 * replacement (SplitDelimiterBehavior::MergedWithNext). */
static int pre_metaspace(enc_ctx *c, int step, const vt_pre_step *p, const char *s, size_t n)
{
    vt_tokbuf b = {0};
    int r = 0;
    int pre = p->prepend == VT_PREPEND_ALWAYS || (p->prepend == VT_PREPEND_FIRST && c->first);
    /* the test is on the text after the replacement: " x" gets no second
     * one */
    int starts = n > 0 && (s[0] == ' ' || (n >= p->repl_len && !memcmp(s, p->repl, p->repl_len)));
    if (pre && !starts) r = vt_tokbuf_put(&b, p->repl, p->repl_len);
    for (size_t i = 0; i < n && !r; i++)
        r = s[i] == ' ' ? vt_tokbuf_put(&b, p->repl, p->repl_len) : vt_tokbuf_put(&b, s + i, 1);
    if (r || !b.n) goto done;
    if (!p->split) {
        r = pre_step(c, step + 1, b.s, b.n);
        goto done;
    }
    size_t st = 0;
    for (size_t i = 1; i + p->repl_len <= b.n && !r; i++) {
        if (!memcmp(b.s + i, p->repl, p->repl_len)) {
            r = pre_step(c, step + 1, b.s + st, i - st);
            st = i;
        }
    }
    if (!r) r = pre_step(c, step + 1, b.s + st, b.n - st);
done:
    free(b.s);
    return r;
}

/* ByteLevel (pre_tokenizers/byte_level.rs): optional prefix space, the
 * GPT-2 regex split when use_regex, then every byte becomes its
 * bytes_to_unicode character. */
static int pre_bytelevel(enc_ctx *c, int step, const vt_pre_step *p, const char *s, size_t n)
{
    const vt_tokenizer *t = c->t;
    vt_tokbuf b = {0};
    int r = 0;
    if (p->add_prefix_space && (n == 0 || s[0] != ' ')) r = vt_tokbuf_put(&b, " ", 1);
    if (!r) r = vt_tokbuf_put(&b, s, n);
    if (r) goto done;
    vt_tokbuf w = {0};
    size_t i = 0;
    while (i < b.n && !r) {
        size_t m = p->use_regex ? vt_pretok_regex_next(VT_RX_GPT2, b.s + i, b.n - i) : b.n - i;
        w.n = 0;
        for (size_t k = i; k < i + m && !r; k++) {
            unsigned char ch = (unsigned char)b.s[k];
            r = vt_tokbuf_put(&w, t->byte_utf8[ch], t->byte_len[ch]);
        }
        if (!r) r = pre_step(c, step + 1, w.s, w.n);
        i += m;
    }
    free(w.s);
done:
    free(b.s);
    return r;
}

typedef struct { enc_ctx *c; int step; } bert_arg;

static int bert_word(void *arg, const char *s, size_t n)
{
    bert_arg *a = arg;
    return pre_step(a->c, a->step + 1, s, n);
}

static int pre_step(enc_ctx *c, int step, const char *s, size_t n)
{
    const vt_tokenizer *t = c->t;
    if (n == 0) return 0;
    if (step == t->n_pre)
        return t->wordpiece ? vt_wordpiece_word(t, s, n, c->out) : vt_bpe_word(t, s, n, c->out);
    const vt_pre_step *p = &t->pre[step];
    switch (p->kind) {
    case VT_PRE_SPLIT: {
        size_t i = 0;
        while (i < n) {
            if (p->removed) {          /* CLIP: whitespace between matches is dropped */
                uint32_t cp;
                int k = vt_utf8_decode((const unsigned char *)s + i, n - i, &cp);
                if (k && vt_uni_is_space(cp)) {
                    i += (size_t)k;
                    continue;
                }
            }
            size_t m = vt_pretok_regex_next(p->regex, s + i, n - i);
            if (m == 0) m = 1;         /* not reached: only whitespace fails to match */
            int r = pre_step(c, step + 1, s + i, m);
            if (r) return r;
            i += m;
        }
        return 0;
    }
    case VT_PRE_METASPACE:
        return pre_metaspace(c, step, p, s, n);
    case VT_PRE_BERT: {
        bert_arg a = {c, step};
        return vt_bert_pretok(s, n, bert_word, &a);
    }
    default:
        return pre_bytelevel(c, step, p, s, n);
    }
}

static int normalized_section(enc_ctx *c, const char *s, size_t n, int first)
{
    (void)first;
    return pre_step(c, 0, s, n);
}

/* ---- normalizers ---- */

static int replace_all(vt_tokbuf *out, const char *s, size_t n, const char *a, size_t al,
                       const char *b, size_t bl)
{
    size_t i = 0, st = 0;
    int r = 0;
    if (!al) return vt_tokbuf_put(out, s, n); /* the loaders refuse it; never loop */
    while (i + al <= n && !r) {
        if (!memcmp(s + i, a, al)) {
            r = vt_tokbuf_put(out, s + st, i - st);
            if (!r) r = vt_tokbuf_put(out, b, bl);
            i += al;
            st = i;
        } else {
            i++;
        }
    }
    if (!r) r = vt_tokbuf_put(out, s + st, n - st);
    return r;
}

/* Replace(Regex "\s+", b): each maximal run of White_Space characters
 * becomes b (Oniguruma's \s, as tokenizers compiles the pattern). */
static int replace_space_runs(vt_tokbuf *out, const char *s, size_t n, const char *b, size_t bl)
{
    size_t i = 0;
    int r = 0, in_run = 0;
    while (i < n && !r) {
        uint32_t cp;
        int k = vt_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        int sp = k && vt_uni_is_space(cp);
        if (k == 0) k = 1;                  /* not reached: text is checked */
        if (sp) {
            if (!in_run) r = vt_tokbuf_put(out, b, bl);
            in_run = 1;
        } else {
            r = vt_tokbuf_put(out, s + i, (size_t)k);
            in_run = 0;
        }
        i += (size_t)k;
    }
    return r;
}

/* Lowercase (normalizers/utils.rs -> NormalizedString::lowercase): each
 * character's char::to_lowercase, context-free, so a final capital sigma
 * becomes U+03C3 (transformers.js' String.toLowerCase would give U+03C2). */
static int lowercase(vt_tokbuf *out, const char *s, size_t n)
{
    size_t i = 0;
    int r = 0;
    while (i < n && !r) {
        uint32_t cp, low[3];
        int k = vt_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (k == 0) {                        /* not reached: text is checked */
            r = vt_tokbuf_put(out, s + i, 1);
            i++;
            continue;
        }
        int m = vt_uni_lower(cp, low);
        for (int j = 0; j < m && !r; j++) {
            char u[4];
            r = vt_tokbuf_put(out, u, (size_t)vt_utf8_encode(low[j], u));
        }
        i += (size_t)k;
    }
    return r;
}

int vt_tok_normalize(const vt_tokenizer *t, const char *s, size_t n, vt_tokbuf *out)
{
    vt_tokbuf cur = {0}, nxt = {0};
    int r = vt_tokbuf_put(&cur, s, n);
    for (int k = 0; k < t->n_norm && !r; k++) {
        const vt_norm_step *ns = &t->norm[k];
        nxt.n = 0;
        if (ns->kind == VT_NORM_NFC) {
            char *o;
            size_t on;
            if (vt_uni_nfc(cur.s, cur.n, &o, &on)) { r = VTOK_ENOMEM; break; }
            r = vt_tokbuf_put(&nxt, o, on);
            free(o);
        } else if (ns->kind == VT_NORM_BERT) {
            r = vt_bert_normalize(ns, cur.s, cur.n, &nxt);
        } else if (ns->kind == VT_NORM_WS) {
            r = replace_space_runs(&nxt, cur.s, cur.n, ns->b, ns->blen);
        } else if (ns->kind == VT_NORM_LOWER) {
            r = lowercase(&nxt, cur.s, cur.n);
        } else if (ns->kind == VT_NORM_PREPEND) {
            /* normalizers/prepend.rs: only a non-empty string gets it */
            if (cur.n) r = vt_tokbuf_put(&nxt, ns->a, ns->alen);
            if (!r) r = vt_tokbuf_put(&nxt, cur.s, cur.n);
        } else {
            r = replace_all(&nxt, cur.s, cur.n, ns->a, ns->alen, ns->b, ns->blen);
        }
        vt_tokbuf tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    free(nxt.s);
    if (r) {
        free(cur.s);
        return r;
    }
    *out = cur;
    return 0;
}

static int raw_section(enc_ctx *c, const char *s, size_t n, int first)
{
    vt_tokbuf cur = {0};
    int r = vt_tok_normalize(c->t, s, n, &cur);
    c->first = first;
    if (!r && cur.n) r = split_added(c, cur.s, cur.n, 1, first, normalized_section);
    free(cur.s);
    return r;
}

int64_t vt_tok_encode(const vt_tokenizer *t, const char *text, size_t len, int add_special,
                      int32_t *ids, int64_t cap, vtok_status *st)
{
    if (!t || (!text && len) || cap < 0 || (!ids && cap > 0))
        return vt_fail(st, VTOK_EINVAL, "vt_tok_encode: bad arguments");
    size_t bad = vt_utf8_check(text, len);
    if (bad != len)
        return vt_fail(st, VTOK_EINVAL, "vt_tok_encode: text is not valid UTF-8 at byte %zu", bad);
    vt_idvec body = {0}, all = {0};
    enc_ctx c = {t, &body, 1};
    int r = len ? split_added(&c, text, len, 0, 1, raw_section) : 0;
    vt_idvec *res = &body;
    if (!r && add_special && t->has_tmpl) {
        for (size_t k = 0; k < t->tmpl.n && !r; k++) {
            if (t->tmpl.v[k] >= 0) {
                r = vt_idvec_push(&all, t->tmpl.v[k]);
            } else {
                for (size_t q = 0; q < body.n && !r; q++) r = vt_idvec_push(&all, body.v[q]);
            }
        }
        res = &all;
    }
    int64_t n = (int64_t)res->n;
    if (!r && ids && n > 0 && cap > 0) memcpy(ids, res->v, (size_t)(n < cap ? n : cap) * sizeof *ids);
    free(body.v);
    free(all.v);
    if (r) return vt_fail(st, r, "vt_tok_encode: out of memory");
    return n;
}

/* ---- decoding ---- */

typedef struct { vt_tokbuf *v; size_t n, cap; } toklist;

/* Resize to n tokens: new ones empty, dropped ones freed. */
static int toklist_set(toklist *l, size_t n)
{
    for (size_t i = n; i < l->n; i++) {
        free(l->v[i].s);
        memset(&l->v[i], 0, sizeof l->v[i]);
    }
    if (n > l->cap) {
        size_t nc = l->cap ? l->cap : 16;
        while (nc < n) nc *= 2;
        vt_tokbuf *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return VTOK_ENOMEM;
        l->v = nv;
        l->cap = nc;
    }
    for (size_t i = l->n; i < n; i++) memset(&l->v[i], 0, sizeof l->v[i]);
    l->n = n;
    return 0;
}

static void toklist_free(toklist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i].s);
    free(l->v);
}

/* UTF-8 of bytes[0..n) with each maximal ill-formed subpart replaced by
 * U+FFFD (Rust String::from_utf8_lossy, WHATWG TextDecoder). */
static int lossy_utf8(vt_tokbuf *out, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    int r = 0;
    while (i < n && !r) {
        uint32_t cp;
        int k = vt_utf8_decode(u + i, n - i, &cp);
        if (k) {
            r = vt_tokbuf_put(out, s + i, (size_t)k);
            i += (size_t)k;
            continue;
        }
        /* length of the maximal subpart: the lead byte plus the
         * continuation bytes valid for it */
        size_t m = 1;
        unsigned c = u[i];
        unsigned lo = 0x80, hi = 0xBF;
        int need = 0;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        }
        for (int q = 0; q < need && i + m < n; q++) {
            unsigned d = u[i + m];
            if (d < lo || d > hi) break;
            lo = 0x80;
            hi = 0xBF;
            m++;
        }
        r = vt_tokbuf_put(out, "\xEF\xBF\xBD", 3);
        i += m;
    }
    return r;
}

static int dec_bytelevel(const vt_tokenizer *t, toklist *l)
{
    /* decoders ByteLevel (byte_level.rs decode_chain): each token's chars
     * map back to bytes (a token with a char outside the alphabet keeps its
     * own bytes); the whole is read as lossy UTF-8 into one token */
    vt_tokbuf raw = {0}, out = {0};
    int r = 0;
    for (size_t i = 0; i < l->n && !r; i++) {
        const char *s = l->v[i].s ? l->v[i].s : "";
        size_t n = l->v[i].n, k = 0, mark = raw.n;
        int ok = 1;
        while (k < n && !r) {
            uint32_t cp;
            int q = vt_utf8_decode((const unsigned char *)s + k, n - k, &cp);
            if (!q || cp >= 512 || t->cp_byte[cp] < 0) { ok = 0; break; }
            char b = (char)t->cp_byte[cp];
            r = vt_tokbuf_put(&raw, &b, 1);
            k += (size_t)q;
        }
        if (!ok && !r) {
            raw.n = mark;
            r = vt_tokbuf_put(&raw, s, n);
        }
    }
    if (!r) r = lossy_utf8(&out, raw.s ? raw.s : "", raw.n);
    free(raw.s);
    if (!r) r = toklist_set(l, 1);
    if (r) { free(out.s); return r; }
    free(l->v[0].s);
    l->v[0] = out;
    return 0;
}

static int parse_byte_token(const vt_tokbuf *b)
{
    /* "<0xNN>" (byte_fallback.rs: len 6, starts "<0x", ends ">", hex) */
    if (b->n != 6 || memcmp(b->s, "<0x", 3) || b->s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = b->s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 :
                c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* decoders/byte_fallback.rs: runs of byte tokens become their UTF-8 text,
 * or one U+FFFD per byte when the run is not valid UTF-8 */
static int dec_bytefallback(toklist *l)
{
    toklist o = {0};
    vt_tokbuf bytes = {0};
    int r = 0;
    size_t on = 0;
    for (size_t i = 0; i <= l->n && !r; i++) {
        int v = i < l->n ? parse_byte_token(&l->v[i]) : -1;
        if (v >= 0) {
            char ch = (char)v;
            r = vt_tokbuf_put(&bytes, &ch, 1);
            continue;
        }
        if (bytes.n) {
            if ((r = toklist_set(&o, on + 1))) break;
            if (vt_utf8_check(bytes.s, bytes.n) == bytes.n) {
                r = vt_tokbuf_put(&o.v[on], bytes.s, bytes.n);
            } else {
                for (size_t q = 0; q < bytes.n && !r; q++)
                    r = vt_tokbuf_put(&o.v[on], "\xEF\xBF\xBD", 3);
            }
            on++;
            bytes.n = 0;
        }
        if (i < l->n && !r) {
            if ((r = toklist_set(&o, on + 1))) break;
            r = vt_tokbuf_put(&o.v[on], l->v[i].s ? l->v[i].s : "", l->v[i].n);
            on++;
        }
    }
    free(bytes.s);
    if (r) { toklist_free(&o); return r; }
    toklist_free(l);
    *l = o;
    return 0;
}

static int cleanup_pat(vt_tokbuf *b, const char *const (*pat)[2], size_t np)
{
    for (size_t k = 0; k < np; k++) {
        vt_tokbuf o = {0};
        int r = replace_all(&o, b->s ? b->s : "", b->n, pat[k][0], strlen(pat[k][0]), pat[k][1],
                            strlen(pat[k][1]));
        if (r) { free(o.s); return r; }
        free(b->s);
        *b = o;
    }
    return 0;
}

/* decoders/wordpiece.rs cleanup (it has " do not" -> " don't" besides
 * transformers' list) */
static int cleanup_wp(vt_tokbuf *b)
{
    static const char *const pat[][2] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
        {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    return cleanup_pat(b, pat, sizeof pat / sizeof pat[0]);
}

static int dec_step(const vt_tokenizer *t, const vt_dec_step *d, toklist *l)
{
    int r = 0;
    switch (d->kind) {
    case VT_DEC_BYTELEVEL:
        return dec_bytelevel(t, l);
    case VT_DEC_BYTEFALLBACK:
        return dec_bytefallback(l);
    case VT_DEC_FUSE: {
        /* decoders/fuse.rs: all tokens into one */
        vt_tokbuf all = {0};
        for (size_t i = 0; i < l->n && !r; i++) r = vt_tokbuf_put(&all, l->v[i].s ? l->v[i].s : "", l->v[i].n);
        if (!r) r = toklist_set(l, 1);
        if (r) { free(all.s); return r; }
        free(l->v[0].s);
        l->v[0] = all;
        return 0;
    }
    case VT_DEC_REPLACE:
    case VT_DEC_METASPACE:
        /* decoders Replace (normalizers/replace.rs decode_chain) and
         * Metaspace (metaspace.rs decode_chain: the replacement becomes a
         * space, and the first token loses a leading one unless
         * prepend_scheme is never) */
        for (size_t i = 0; i < l->n && !r; i++) {
            vt_tokbuf o = {0};
            const char *to = d->kind == VT_DEC_REPLACE ? d->b : " ";
            size_t tl = d->kind == VT_DEC_REPLACE ? d->blen : 1;
            r = replace_all(&o, l->v[i].s ? l->v[i].s : "", l->v[i].n, d->a, d->alen, to, tl);
            if (r) { free(o.s); break; }
            if (d->kind == VT_DEC_METASPACE && i == 0 && d->start && o.n && o.s[0] == ' ') {
                memmove(o.s, o.s + 1, o.n);
                o.n--;
            }
            free(l->v[i].s);
            l->v[i] = o;
        }
        return r;
    case VT_DEC_WORDPIECE:
        /* decoders/wordpiece.rs: tokens after the first lose the prefix or
         * gain a leading space; each then gets wordpiece's cleanup */
        for (size_t i = 0; i < l->n && !r; i++) {
            vt_tokbuf o = {0};
            const char *s = l->v[i].s ? l->v[i].s : "";
            size_t n = l->v[i].n;
            if (i && n >= d->alen && !memcmp(s, d->a, d->alen)) {
                s += d->alen;
                n -= d->alen;
            } else if (i) {
                r = vt_tokbuf_put(&o, " ", 1);
            }
            if (!r) r = vt_tokbuf_put(&o, s, n);
            if (!r && d->start) r = cleanup_wp(&o);
            if (r) { free(o.s); break; }
            free(l->v[i].s);
            l->v[i] = o;
        }
        return r;
    case VT_DEC_STRIP:
        /* decoders/strip.rs: up to `start` leading and `stop` trailing
         * characters equal to content are removed from each token */
        for (size_t i = 0; i < l->n; i++) {
            vt_tokbuf *b = &l->v[i];
            size_t a = 0, e = b->n;
            for (int k = 0; k < d->start && a + d->alen <= e && !memcmp(b->s + a, d->a, d->alen); k++)
                a += d->alen;
            for (int k = 0; k < d->stop && e >= a + d->alen && !memcmp(b->s + e - d->alen, d->a, d->alen); k++)
                e -= d->alen;
            if (b->s) {
                memmove(b->s, b->s + a, e - a);
                b->n = e - a;
                b->s[b->n] = 0;
            }
        }
        return 0;
    }
    return 0;
}

/* transformers tokenization_utils_base.py clean_up_tokenization (and
 * Tokenizer.ts clean_up_tokenization): spaces before punctuation and
 * English contractions removed, pattern by pattern in this order. */
static int cleanup(vt_tokbuf *b)
{
    static const char *const pat[][2] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
        {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    return cleanup_pat(b, pat, sizeof pat / sizeof pat[0]);
}

static const vt_added_tok *find_added(const vt_tokenizer *t, int32_t id)
{
    for (int i = t->n_added - 1; i >= 0; i--)
        if (t->added[i].id == id) return &t->added[i];
    return NULL;
}

int64_t vt_tok_decode(const vt_tokenizer *t, const int32_t *ids, int64_t n, int skip_special,
                      char *buf, size_t cap, vtok_status *st)
{
    if (!t || n < 0 || (!ids && n) || (!buf && cap))
        return vt_fail(st, VTOK_EINVAL, "vt_tok_decode: bad arguments");
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab || !t->piece[ids[i]])
            return vt_fail(st, VTOK_EINVAL, "vt_tok_decode: id %d at position %lld is not in "
                           "the vocabulary (size %lld)", (int)ids[i], (long long)i,
                           (long long)t->n_vocab);
    toklist l = {0};
    int r = 0;
    size_t k = 0;
    for (int64_t i = 0; i < n && !r; i++) {
        int32_t id = ids[i];
        if (skip_special && t->special[id]) continue;
        if ((r = toklist_set(&l, k + 1))) break;
        /* an added token that is matched in normalized form enters the
         * decoder in that form, so the decoder can undo the normalizer
         * (tokenizers >= 0.22 added_vocabulary.rs simple_id_to_token:
         * normalized_cache); transformers.js passes its content instead */
        const vt_added_tok *a = t->is_added[id] ? find_added(t, id) : NULL;
        if (a && a->ncontent) r = vt_tokbuf_put(&l.v[k++], a->ncontent, a->nlen);
        else r = vt_tokbuf_put(&l.v[k++], t->piece[id], t->plen[id]);
    }
    for (int s = 0; s < t->n_dec && !r; s++) r = dec_step(t, &t->dec[s], &l);
    vt_tokbuf text = {0};
    /* no decoder: tokens joined by spaces (mod.rs decode: tokens.join(" ")) */
    for (size_t i = 0; i < l.n && !r; i++) {
        if (!t->has_decoder && i) r = vt_tokbuf_put(&text, " ", 1);
        if (!r) r = vt_tokbuf_put(&text, l.v[i].s ? l.v[i].s : "", l.v[i].n);
    }
    if (!r && t->cleanup) r = cleanup(&text);
    toklist_free(&l);
    if (r) {
        free(text.s);
        return vt_fail(st, VTOK_ENOMEM, "vt_tok_decode: out of memory");
    }
    if (cap) {
        size_t c = text.n < cap - 1 ? text.n : cap - 1;
        if (c) memcpy(buf, text.s, c);
        buf[c] = 0;
    }
    int64_t len = (int64_t)text.n;
    free(text.s);
    return len;
}
