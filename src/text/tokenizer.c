/*
 * tokenizer.c - Hugging Face tokenizer.json: loading, encoding, decoding.
 *
 * The pipeline is that of huggingface/tokenizers (tokenizers/src/tokenizer/
 * mod.rs, encode_single_sequence / decode) and of its JavaScript port
 * @huggingface/tokenizers (src/core/Tokenizer.ts encode_text), which the
 * tests compare against:
 *   1. split the text on added tokens that are not normalized (longest match
 *      at the leftmost position: added_vocabulary.rs split_with_indices uses
 *      aho-corasick MatchKind::LeftmostLongest);
 *   2. normalize each remaining section, then split it on the normalized
 *      added tokens (added_vocabulary.rs extract_and_normalize);
 *   3. pre-tokenize each piece into words (pretext.c, encode.c), run the
 *      model on each word (BPE: bpe.c; WordPiece: wordpiece.c);
 *   4. the post-processor (TemplateProcessing adds BOS etc.).
 * Decoding maps ids to pieces and runs the decoder chain (src/decoders/).
 *
 * Everything the file names must be understood: an unknown model,
 * normalizer, pre-tokenizer, regex, post-processor or decoder is refused at
 * load with a message naming it, so nothing is ever tokenized approximately.
 */
#include "tok_internal.h"

#include "../io/io.h"
#include "../io/opt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TOK_MAX_FILE ((size_t)1 << 30)

/* ---- small helpers ---- */

static char *dup_n(const char *s, size_t n)
{
    char *o = malloc(n + 1);
    if (o) {
        memcpy(o, s, n);
        o[n] = 0;
    }
    return o;
}

int vt_tokbuf_put(vt_tokbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        /* small first: decoding keeps one buffer per token */
        size_t nc = b->cap ? b->cap : 16;
        while (nc < b->n + n + 1) {
            if (nc > SIZE_MAX / 2) return VTOK_ENOMEM;
            nc *= 2;
        }
        char *nv = realloc(b->s, nc);
        if (!nv) return VTOK_ENOMEM;
        b->s = nv;
        b->cap = nc;
    }
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return 0;
}

int vt_idvec_push(vt_idvec *v, int32_t id)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 256;
        int32_t *nv = realloc(v->v, nc * sizeof *nv);
        if (!nv) return VTOK_ENOMEM;
        v->v = nv;
        v->cap = nc;
    }
    v->v[v->n++] = id;
    return 0;
}

/* ---- string -> id map (open addressing, FNV-1a) ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int strmap_init(vt_strmap *m, size_t n)
{
    size_t cap = 16;
    while (cap < n * 2 + 1) cap *= 2;
    m->e = calloc(cap, sizeof *m->e);
    m->cap = m->e ? cap : 0;
    return m->e ? 0 : VTOK_ENOMEM;
}

/* Insert s (borrowed; must outlive the map); an existing key keeps its
 * first id and 1 is returned. */
static int strmap_put(vt_strmap *m, const char *s, uint32_t len, int32_t id)
{
    size_t mask = m->cap - 1, i = (size_t)hash_bytes(s, len) & mask;
    while (m->e[i].s) {
        if (m->e[i].len == len && !memcmp(m->e[i].s, s, len)) return 1;
        i = (i + 1) & mask;
    }
    m->e[i].s = s;
    m->e[i].len = len;
    m->e[i].id = id;
    return 0;
}

int32_t vt_strmap_get(const vt_strmap *m, const char *s, size_t len)
{
    if (!m->cap) return -1;
    size_t mask = m->cap - 1, i = (size_t)hash_bytes(s, len) & mask;
    while (m->e[i].s) {
        if (m->e[i].len == len && !memcmp(m->e[i].s, s, len)) return m->e[i].id;
        i = (i + 1) & mask;
    }
    return -1;
}

/* ---- JSON helpers ---- */

static const cJSON *obj_get(const cJSON *o, const char *k)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static const char *str_or_null(const cJSON *o, const char *k)
{
    const cJSON *v = obj_get(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A key that may be absent, null or a boolean. */
static int get_bool(const cJSON *o, const char *k, int def, int *out, const char *where,
                    vtok_status *st)
{
    const cJSON *v = obj_get(o, k);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return vt_fail(st, VTOK_EFORMAT, "%s: '%s' must be a boolean", where, k);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* {"String": s} pattern (a {"Regex": ...} one is refused) */
static int string_pattern(const cJSON *o, const char *where, const char **out, vtok_status *st)
{
    const cJSON *p = obj_get(o, "pattern");
    const char *s = str_or_null(p, "String");
    if (s) {
        *out = s;
        return 0;
    }
    if (obj_get(p, "Regex"))
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: Regex patterns are not supported", where);
    return vt_fail(st, VTOK_EFORMAT, "%s: missing pattern.String", where);
}

/* ---- byte-level alphabet (GPT-2 bytes_to_unicode) ---- */

/* tokenizers/src/pre_tokenizers/byte_level.rs bytes_char(): the printable
 * ranges '!'..'~', U+00A1..U+00AC, U+00AE..U+00FF map to themselves, the
 * other 68 bytes to U+0100 + n in byte order. */
static void init_byte_map(vt_tokenizer *t)
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = keep ? (uint32_t)b : 256u + (uint32_t)n++;
        t->byte_cp[b] = cp;
        t->byte_len[b] = (uint8_t)vt_utf8_encode(cp, t->byte_utf8[b]);
    }
    for (int i = 0; i < 512; i++) t->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) t->cp_byte[t->byte_cp[b]] = (int16_t)b;
}

/* ---- loading ---- */

static int load_added(vt_tokenizer *t, const cJSON *arr, vtok_status *st)
{
    if (!arr || cJSON_IsNull(arr)) return 0;
    if (!cJSON_IsArray(arr))
        return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: 'added_tokens' must be a list");
    int n = cJSON_GetArraySize(arr);
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    if (!t->added) return VTOK_ENOMEM;
    const cJSON *a;
    cJSON_ArrayForEach(a, arr) {
        const char *content = str_or_null(a, "content");
        const cJSON *id = obj_get(a, "id");
        if (!content || !cJSON_IsNumber(id) || id->valuedouble < 0 ||
            id->valuedouble > INT32_MAX - 1 || id->valuedouble != (double)(int32_t)id->valuedouble)
            return vt_fail(st, VTOK_EFORMAT,
                           "tokenizer.json: added_tokens[%d] needs a string 'content' and an "
                           "integer 'id' in [0, 2^31-1)", t->n_added);
        if (!content[0])
            return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: added_tokens[%d] is empty",
                           t->n_added);
        vt_added_tok *x = &t->added[t->n_added];
        x->len = strlen(content);
        x->content = dup_n(content, x->len);
        if (!x->content) return VTOK_ENOMEM;
        x->id = (int32_t)id->valuedouble;
        t->n_added++; /* owned from here: vt_tok_free frees it on a later error */
        int r;
        const char *w = "tokenizer.json: added_tokens";
        if ((r = get_bool(a, "special", 0, &x->special, w, st)) ||
            (r = get_bool(a, "normalized", !x->special, &x->normalized, w, st)) ||
            (r = get_bool(a, "lstrip", 0, &x->lstrip, w, st)) ||
            (r = get_bool(a, "rstrip", 0, &x->rstrip, w, st)) ||
            (r = get_bool(a, "single_word", 0, &x->single_word, w, st)))
            return r;
    }
    return 0;
}

static int load_normalizer(vt_tokenizer *t, const cJSON *n, vtok_status *st)
{
    if (!n || cJSON_IsNull(n)) return 0;
    const char *type = str_or_null(n, "type");
    if (!type) return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: normalizer without 'type'");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = obj_get(n, "normalizers"), *c;
        if (!cJSON_IsArray(list))
            return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: normalizer Sequence needs a list");
        cJSON_ArrayForEach(c, list) {
            int r = load_normalizer(t, c, st);
            if (r) return r;
        }
        return 0;
    }
    if (t->n_norm == VT_TOK_MAX_STEPS)
        return vt_fail(st, VTOK_EUNSUPPORTED, "tokenizer.json: too many normalizers");
    vt_norm_step *s = &t->norm[t->n_norm];
    const char *a = NULL, *b = NULL;
    if (!strcmp(type, "NFC")) {
        s->kind = VT_NORM_NFC;
    } else if (!strcmp(type, "Prepend")) {
        s->kind = VT_NORM_PREPEND;
        a = str_or_null(n, "prepend");
        if (!a) return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: Prepend needs 'prepend'");
    } else if (!strcmp(type, "Replace") && str_or_null(obj_get(n, "pattern"), "Regex")) {
        /* CLIP's whitespace collapse: Regex "\s+" -> " " (normalizers/
         * replace.rs compiles it with Oniguruma: \s is White_Space) */
        s->kind = VT_NORM_WS;
        const char *rx = str_or_null(obj_get(n, "pattern"), "Regex");
        b = str_or_null(n, "content");
        if (strcmp(rx, "\\s+"))
            return vt_fail(st, VTOK_EUNSUPPORTED, "tokenizer.json: normalizer Replace: Regex "
                           "pattern '%.60s' is not supported (only \\s+)", rx);
        if (!b)
            return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: normalizer Replace needs a "
                           "'content'");
    } else if (!strcmp(type, "Lowercase")) {
        s->kind = VT_NORM_LOWER;
    } else if (!strcmp(type, "Replace")) {
        s->kind = VT_NORM_REPLACE;
        int r = string_pattern(n, "tokenizer.json: normalizer Replace", &a, st);
        if (r) return r;
        b = str_or_null(n, "content");
        if (!b || !a[0])
            return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: normalizer Replace needs a "
                           "non-empty pattern and a 'content'");
    } else if (!strcmp(type, "BertNormalizer")) {
        s->kind = VT_NORM_BERT;
        const char *w = "tokenizer.json: BertNormalizer";
        int r;
        /* normalizers/bert.rs: strip_accents None follows lowercase */
        if ((r = get_bool(n, "clean_text", 1, &s->clean, w, st)) ||
            (r = get_bool(n, "handle_chinese_chars", 1, &s->chinese, w, st)) ||
            (r = get_bool(n, "lowercase", 1, &s->lower, w, st)))
            return r;
        if ((r = get_bool(n, "strip_accents", s->lower, &s->strip, w, st))) return r;
    } else {
        return vt_fail(st, VTOK_EUNSUPPORTED, "tokenizer.json: normalizer '%.64s' is not "
                       "supported (supported: NFC, Prepend, Replace, Lowercase, BertNormalizer, "
                       "Sequence)",
                       type);
    }
    if (s->kind == VT_NORM_REPLACE && a && !*a)
        return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: normalizer 'Replace' has an "
                       "empty pattern");
    if (a && !(s->a = dup_n(a, s->alen = strlen(a)))) return VTOK_ENOMEM;
    if (b && !(s->b = dup_n(b, s->blen = strlen(b)))) return VTOK_ENOMEM;
    t->n_norm++;
    return 0;
}

static int load_pre(vt_tokenizer *t, const cJSON *p, vtok_status *st)
{
    if (!p || cJSON_IsNull(p)) return 0;
    const char *type = str_or_null(p, "type");
    if (!type) return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: pre_tokenizer without 'type'");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = obj_get(p, "pretokenizers"), *c;
        if (!cJSON_IsArray(list))
            return vt_fail(st, VTOK_EFORMAT,
                           "tokenizer.json: pre_tokenizer Sequence needs a list");
        cJSON_ArrayForEach(c, list) {
            int r = load_pre(t, c, st);
            if (r) return r;
        }
        return 0;
    }
    if (t->n_pre == VT_TOK_MAX_STEPS)
        return vt_fail(st, VTOK_EUNSUPPORTED, "tokenizer.json: too many pre-tokenizers");
    vt_pre_step *s = &t->pre[t->n_pre];
    const char *w = "tokenizer.json: pre_tokenizer";
    int r;
    if (!strcmp(type, "ByteLevel")) {
        s->kind = VT_PRE_BYTELEVEL;
        /* byte_level.rs ByteLevel::default(): add_prefix_space true,
         * use_regex true */
        if ((r = get_bool(p, "add_prefix_space", 1, &s->add_prefix_space, w, st)) ||
            (r = get_bool(p, "use_regex", 1, &s->use_regex, w, st)))
            return r;
        t->byte_level = 1;
    } else if (!strcmp(type, "Split")) {
        s->kind = VT_PRE_SPLIT;
        const char *rx = str_or_null(obj_get(p, "pattern"), "Regex");
        if (!rx)
            return vt_fail(st, VTOK_EUNSUPPORTED, "%s: Split needs a pattern.Regex (String "
                           "patterns are not supported)", w);
        s->regex = vt_pretok_regex_kind(rx);
        if (s->regex < 0)
            return vt_fail(st, VTOK_EUNSUPPORTED, "%s: Split regex '%.120s' is not one of the "
                           "supported patterns (GPT-2, LLaMA-3, Qwen2, CLIP)", w, rx);
        const char *beh = str_or_null(p, "behavior");
        int inv = 0;
        if ((r = get_bool(p, "invert", 0, &inv, w, st))) return r;
        /* CLIP's Split is behavior Removed with invert: the matches are the
         * pieces and what lies between them (whitespace) is dropped
         * (pre_tokenizers/split.rs, Invert flips which parts are matches) */
        int clip = s->regex == VT_RX_CLIP || s->regex == VT_RX_CLIP_PLAIN;
        if (clip && (!beh || strcmp(beh, "Removed") || !inv))
            return vt_fail(st, VTOK_EUNSUPPORTED, "%s: Split with CLIP's regex supports "
                           "behavior 'Removed' with invert only", w);
        if (!clip && (!beh || strcmp(beh, "Isolated") || inv))
            return vt_fail(st, VTOK_EUNSUPPORTED, "%s: Split supports behavior 'Isolated' "
                           "without invert only", w);
        s->removed = clip;
    } else if (!strcmp(type, "Metaspace")) {
        s->kind = VT_PRE_METASPACE;
        const char *rep = str_or_null(p, "replacement");
        if (!rep) rep = "\xe2\x96\x81";
        uint32_t cp;
        size_t rl = strlen(rep);
        if (rl > 4 || vt_utf8_decode((const unsigned char *)rep, rl, &cp) != (int)rl)
            return vt_fail(st, VTOK_EFORMAT, "%s: Metaspace replacement must be one character",
                           w);
        memcpy(s->repl, rep, rl);
        s->repl_len = rl;
        /* metaspace.rs: prepend_scheme always|first|never; the legacy
         * add_prefix_space=false means never */
        const char *scheme = str_or_null(p, "prepend_scheme");
        int aps = 1;
        if ((r = get_bool(p, "add_prefix_space", 1, &aps, w, st))) return r;
        if (!scheme) s->prepend = aps ? VT_PREPEND_ALWAYS : VT_PREPEND_NEVER;
        else if (!strcmp(scheme, "always")) s->prepend = VT_PREPEND_ALWAYS;
        else if (!strcmp(scheme, "first")) s->prepend = VT_PREPEND_FIRST;
        else if (!strcmp(scheme, "never")) s->prepend = VT_PREPEND_NEVER;
        else return vt_fail(st, VTOK_EFORMAT, "%s: unknown prepend_scheme '%.32s'", w, scheme);
        if ((r = get_bool(p, "split", 1, &s->split, w, st))) return r;
    } else if (!strcmp(type, "BertPreTokenizer")) {
        s->kind = VT_PRE_BERT;
    } else {
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s '%.64s' is not supported (supported: "
                       "ByteLevel, Split, Metaspace, BertPreTokenizer, Sequence)", w, type);
    }
    t->n_pre++;
    return 0;
}

static int load_decoder(vt_tokenizer *t, const cJSON *d, vtok_status *st)
{
    if (!d || cJSON_IsNull(d)) return 0;
    const char *type = str_or_null(d, "type");
    if (!type) return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: decoder without 'type'");
    t->has_decoder = 1;
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = obj_get(d, "decoders"), *c;
        if (!cJSON_IsArray(list))
            return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: decoder Sequence needs a list");
        cJSON_ArrayForEach(c, list) {
            int r = load_decoder(t, c, st);
            if (r) return r;
        }
        return 0;
    }
    if (t->n_dec == VT_TOK_MAX_STEPS)
        return vt_fail(st, VTOK_EUNSUPPORTED, "tokenizer.json: too many decoders");
    vt_dec_step *s = &t->dec[t->n_dec];
    const char *a = NULL, *b = NULL;
    if (!strcmp(type, "ByteLevel")) {
        s->kind = VT_DEC_BYTELEVEL;
    } else if (!strcmp(type, "ByteFallback")) {
        s->kind = VT_DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        s->kind = VT_DEC_FUSE;
    } else if (!strcmp(type, "Replace")) {
        s->kind = VT_DEC_REPLACE;
        int r = string_pattern(d, "tokenizer.json: decoder Replace", &a, st);
        if (r) return r;
        b = str_or_null(d, "content");
        if (!b || !a[0])
            return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: decoder Replace needs a "
                           "non-empty pattern and a 'content'");
    } else if (!strcmp(type, "Strip")) {
        s->kind = VT_DEC_STRIP;
        a = str_or_null(d, "content");
        const cJSON *s0 = obj_get(d, "start"), *s1 = obj_get(d, "stop");
        if (!a || strlen(a) > 4 || !cJSON_IsNumber(s0) || !cJSON_IsNumber(s1) ||
            s0->valuedouble < 0 || s1->valuedouble < 0 || s0->valuedouble > 1e6 ||
            s1->valuedouble > 1e6)
            return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: decoder Strip needs 'content' "
                           "(one character), 'start' and 'stop'");
        s->start = (int)s0->valuedouble;
        s->stop = (int)s1->valuedouble;
    } else if (!strcmp(type, "Metaspace")) {
        s->kind = VT_DEC_METASPACE;
        a = str_or_null(d, "replacement");
        if (!a) a = "\xe2\x96\x81";
        const char *scheme = str_or_null(d, "prepend_scheme");
        int aps = 1, r;
        if ((r = get_bool(d, "add_prefix_space", 1, &aps, "tokenizer.json: decoder", st)))
            return r;
        s->start = scheme ? strcmp(scheme, "never") != 0 : aps;
    } else if (!strcmp(type, "WordPiece")) {
        s->kind = VT_DEC_WORDPIECE;
        a = str_or_null(d, "prefix");
        if (!a) a = "##";
        int r;
        if ((r = get_bool(d, "cleanup", 1, &s->start, "tokenizer.json: decoder", st))) return r;
    } else {
        return vt_fail(st, VTOK_EUNSUPPORTED, "tokenizer.json: decoder '%.64s' is not "
                       "supported (supported: ByteLevel, ByteFallback, Fuse, Replace, Strip, "
                       "Metaspace, WordPiece, Sequence)", type);
    }
    /* an empty pattern would match at every position without advancing */
    if ((s->kind == VT_DEC_REPLACE || s->kind == VT_DEC_METASPACE) && a && !*a)
        return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: decoder '%.64s' has an empty "
                       "pattern", type);
    if (a && !(s->a = dup_n(a, s->alen = strlen(a)))) return VTOK_ENOMEM;
    if (b && !(s->b = dup_n(b, s->blen = strlen(b)))) return VTOK_ENOMEM;
    t->n_dec++;
    return 0;
}

/* TemplateProcessing's "single" list (processors/template.rs): SpecialToken
 * items name an entry of special_tokens whose ids are inserted; Sequence A
 * is the text. Pairs are not supported (no API takes a pair). */
static int load_template(vt_tokenizer *t, const cJSON *p, vtok_status *st)
{
    const char *w = "tokenizer.json: post_processor TemplateProcessing";
    const cJSON *single = obj_get(p, "single"), *specials = obj_get(p, "special_tokens"), *it;
    if (!cJSON_IsArray(single)) return vt_fail(st, VTOK_EFORMAT, "%s: 'single' must be a list", w);
    cJSON_ArrayForEach(it, single) {
        const cJSON *sp = obj_get(it, "SpecialToken"), *sq = obj_get(it, "Sequence");
        if (sq) {
            const char *id = str_or_null(sq, "id");
            if (!id || strcmp(id, "A"))
                return vt_fail(st, VTOK_EFORMAT, "%s: 'single' may only use sequence A", w);
            if (vt_idvec_push(&t->tmpl, -1)) return VTOK_ENOMEM;
            continue;
        }
        const char *name = str_or_null(sp, "id");
        if (!name) return vt_fail(st, VTOK_EFORMAT, "%s: bad item in 'single'", w);
        const cJSON *ids = obj_get(obj_get(specials, name), "ids"), *x;
        if (!cJSON_IsArray(ids))
            return vt_fail(st, VTOK_EFORMAT, "%s: special token '%.64s' has no 'ids'", w, name);
        cJSON_ArrayForEach(x, ids) {
            if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble >= (double)t->n_vocab ||
                !t->piece[(int32_t)x->valuedouble])
                return vt_fail(st, VTOK_EFORMAT, "%s: special token '%.64s' has an id outside "
                               "the vocabulary", w, name);
            if (vt_idvec_push(&t->tmpl, (int32_t)x->valuedouble)) return VTOK_ENOMEM;
        }
    }
    t->has_tmpl = 1;
    return 0;
}

static int load_post(vt_tokenizer *t, const cJSON *p, vtok_status *st)
{
    if (!p || cJSON_IsNull(p)) return 0;
    const char *type = str_or_null(p, "type");
    if (!type) return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: post_processor without 'type'");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = obj_get(p, "processors"), *c;
        if (!cJSON_IsArray(list))
            return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: post_processor Sequence needs a list");
        cJSON_ArrayForEach(c, list) {
            int r = load_post(t, c, st);
            if (r) return r;
        }
        return 0;
    }
    /* ByteLevel as a post-processor only trims offsets (byte_level.rs
     * process): ids are unchanged. */
    if (!strcmp(type, "ByteLevel")) return 0;
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        /* processors/bert.rs, roberta.rs: a single sequence becomes
         * cls $A sep; "cls" and "sep" are [token, id] pairs */
        const cJSON *cls = obj_get(p, "cls"), *sep = obj_get(p, "sep");
        const cJSON *ci = cJSON_IsArray(cls) ? cJSON_GetArrayItem(cls, 1) : NULL;
        const cJSON *si = cJSON_IsArray(sep) ? cJSON_GetArrayItem(sep, 1) : NULL;
        if (!cJSON_IsNumber(ci) || !cJSON_IsNumber(si) || ci->valuedouble < 0 ||
            si->valuedouble < 0 || ci->valuedouble >= (double)t->n_vocab ||
            si->valuedouble >= (double)t->n_vocab || !t->piece[(int32_t)ci->valuedouble] ||
            !t->piece[(int32_t)si->valuedouble])
            return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: %s needs 'cls' and 'sep' as "
                           "[token, id] with ids in the vocabulary", type);
        if (t->has_tmpl)
            return vt_fail(st, VTOK_EUNSUPPORTED, "tokenizer.json: two template post-processors");
        if (vt_idvec_push(&t->tmpl, (int32_t)ci->valuedouble) || vt_idvec_push(&t->tmpl, -1) ||
            vt_idvec_push(&t->tmpl, (int32_t)si->valuedouble))
            return VTOK_ENOMEM;
        t->has_tmpl = 1;
        return 0;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        if (t->has_tmpl)
            return vt_fail(st, VTOK_EUNSUPPORTED, "tokenizer.json: two TemplateProcessing "
                           "post-processors");
        return load_template(t, p, st);
    }
    return vt_fail(st, VTOK_EUNSUPPORTED, "tokenizer.json: post_processor '%.64s' is not "
                   "supported (supported: TemplateProcessing, BertProcessing, RobertaProcessing, "
                   "ByteLevel, Sequence)", type);
}

/* Set piece[id] = s (copied), refusing an id given two different strings. */
static int set_piece(vt_tokenizer *t, int32_t id, const char *s, size_t len, vtok_status *st)
{
    if (t->piece[id]) {
        if (t->plen[id] == len && !memcmp(t->piece[id], s, len)) return 0;
        return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: id %d is both '%.40s' and '%.40s'",
                       (int)id, t->piece[id], s);
    }
    if (!(t->piece[id] = dup_n(s, len))) return VTOK_ENOMEM;
    t->plen[id] = (uint32_t)len;
    return 0;
}

static int load_model(vt_tokenizer *t, const cJSON *m, vtok_status *st)
{
    const char *w = "tokenizer.json: model";
    if (!cJSON_IsObject(m)) return vt_fail(st, VTOK_EFORMAT, "%s is missing", w);
    const char *type = str_or_null(m, "type");
    const cJSON *vocab = obj_get(m, "vocab"), *merges = obj_get(m, "merges");
    if (!type && cJSON_IsObject(vocab) && merges) type = "BPE";   /* older files omit it */
    if (!type) return vt_fail(st, VTOK_EFORMAT, "%s has no 'type'", w);
    if (!strcmp(type, "WordPiece")) {
        t->wordpiece = 1;
    } else if (strcmp(type, "BPE")) {
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s type '%.32s' is not supported (supported: "
                       "BPE, WordPiece)", w, type);
    }
    if (!cJSON_IsObject(vocab)) return vt_fail(st, VTOK_EFORMAT, "%s: 'vocab' must be an object", w);
    int r;
    if (t->wordpiece) {
        /* models/wordpiece/mod.rs defaults: "##", 100 */
        const char *pfx = str_or_null(m, "continuing_subword_prefix");
        if (!pfx) pfx = "##";
        if (strlen(pfx) >= sizeof t->wp_prefix)
            return vt_fail(st, VTOK_EUNSUPPORTED, "%s: continuing_subword_prefix too long", w);
        t->wp_prefix_len = strlen(pfx);
        memcpy(t->wp_prefix, pfx, t->wp_prefix_len + 1);
        if ((r = vt_opt_int(m, "max_input_chars_per_word", 100, &t->wp_max_chars, w, st)))
            return r;
    } else if (!cJSON_IsArray(merges)) {
        return vt_fail(st, VTOK_EFORMAT, "%s: 'merges' must be a list", w);
    }
    const char *pfx = t->wordpiece ? NULL : str_or_null(m, "continuing_subword_prefix");
    const char *sfx = t->wordpiece ? NULL : str_or_null(m, "end_of_word_suffix");
    if (pfx && pfx[0])
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: a non-empty continuing_subword_prefix is "
                       "not supported", w);
    /* end_of_word_suffix (CLIP "</w>"): appended to a word's last character
     * before the vocab lookup (models/bpe/model.rs merge_word) */
    if (sfx && strlen(sfx) >= sizeof t->eow)
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: end_of_word_suffix longer than %zu bytes",
                       w, sizeof t->eow - 1);
    if (sfx) {
        t->eow_len = strlen(sfx);
        memcpy(t->eow, sfx, t->eow_len + 1);
    }
    const cJSON *dropout = obj_get(m, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: BPE dropout is not supported", w);
    if ((r = get_bool(m, "fuse_unk", 0, &t->fuse_unk, w, st)) ||
        (r = get_bool(m, "byte_fallback", 0, &t->byte_fallback, w, st)) ||
        (r = get_bool(m, "ignore_merges", 0, &t->ignore_merges, w, st)))
        return r;
    /* model.rs would spell the suffix's bytes as <0xNN> tokens too: no file
     * does that; refuse rather than guess */
    if (t->byte_fallback && t->eow_len)
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: byte_fallback with end_of_word_suffix is "
                       "not supported", w);

    /* ids: the vocab's and the added tokens' */
    int64_t max_id = -1;
    int nv = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > INT32_MAX - 1 ||
            e->valuedouble != (double)(int32_t)e->valuedouble)
            return vt_fail(st, VTOK_EFORMAT, "%s: vocab entry '%.40s' is not an id in [0, "
                           "2^31-1)", w, e->string ? e->string : "");
        if ((int64_t)e->valuedouble > max_id) max_id = (int64_t)e->valuedouble;
        nv++;
    }
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id > max_id) max_id = t->added[i].id;
    if (max_id < 0) return vt_fail(st, VTOK_EFORMAT, "%s: empty vocabulary", w);
    if (max_id >= ((int64_t)nv + t->n_added) * 4 + 1024)
        return vt_fail(st, VTOK_EFORMAT, "%s: id %lld is far beyond the %d entries", w,
                       (long long)max_id, nv + t->n_added);
    t->n_vocab = max_id + 1;
    t->piece = calloc((size_t)t->n_vocab, sizeof *t->piece);
    t->plen = calloc((size_t)t->n_vocab, sizeof *t->plen);
    t->special = calloc((size_t)t->n_vocab, 1);
    t->is_added = calloc((size_t)t->n_vocab, 1);
    if (!t->piece || !t->plen || !t->special || !t->is_added) return VTOK_ENOMEM;
    if ((r = strmap_init(&t->vocab, (size_t)nv))) return r;
    cJSON_ArrayForEach(e, vocab) {
        int32_t id = (int32_t)e->valuedouble;
        size_t len = strlen(e->string);
        if ((r = set_piece(t, id, e->string, len, st))) return r;
        strmap_put(&t->vocab, t->piece[id], (uint32_t)len, id);
    }
    for (int i = 0; i < t->n_added; i++) {
        vt_added_tok *a = &t->added[i];
        /* tokenizers gives an added token that is also a vocab entry the
         * vocab's id (added_vocabulary.rs add_tokens) and renumbers the
         * tokens after it; a file where the two ids differ would encode
         * differently there, so it is refused */
        int32_t vid = vt_strmap_get(&t->vocab, a->content, a->len);
        if (vid >= 0 && vid != a->id)
            return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: added token '%.40s' has id %d but "
                           "the vocab gives it %d", a->content, (int)a->id, (int)vid);
        /* An added token may repeat a vocab entry (e.g. "<s>"); a different
         * string under the same id is an error. */
        if ((r = set_piece(t, a->id, a->content, a->len, st))) return r;
        t->special[a->id] = (uint8_t)a->special;
        t->is_added[a->id] = 1;
    }

    /* unk */
    const char *unk = str_or_null(m, "unk_token");
    t->unk = -1;
    if (unk) {
        t->unk = vt_strmap_get(&t->vocab, unk, strlen(unk));
        if (t->unk < 0)
            return vt_fail(st, VTOK_EFORMAT, "%s: unk_token '%.40s' is not in the vocab", w, unk);
    }
    if (t->wordpiece) {
        if (t->unk < 0)
            return vt_fail(st, VTOK_EFORMAT, "%s: WordPiece needs an unk_token in the vocab", w);
        return 0;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = vt_strmap_get(&t->vocab, name, 6);
    }
    return vt_bpe_load_merges(t, merges, st);
}

static int apply_config(vt_tokenizer *t, const cJSON *cfg, vtok_status *st)
{
    const char *w = "tokenizer_config.json";
    /* bos/eos: a string or an AddedToken-like {"content": ...} */
    const char *names[2] = {"bos_token", "eos_token"};
    int32_t *dst[2] = {&t->bos, &t->eos};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = obj_get(cfg, names[i]);
        const char *s = cJSON_IsString(v) ? v->valuestring : str_or_null(v, "content");
        if (s) *dst[i] = vt_tok_id(t, s);
    }
    int r;
    /* transformers' tokenization_utils_base.py: clean_up_tokenization_spaces
     * defaults to False in recent versions, the JS port (Tokenizer.ts) to
     * true; files written by transformers carry the key. */
    if ((r = get_bool(cfg, "clean_up_tokenization_spaces", 1, &t->cleanup, w, st))) return r;
    if ((r = get_bool(cfg, "add_bos_token", -1, &t->cfg_add_bos, w, st)) ||
        (r = get_bool(cfg, "add_eos_token", -1, &t->cfg_add_eos, w, st)))
        return r;
    return 0;
}

void vt_tok_free(vt_tokenizer *t)
{
    if (!t) return;
    for (int64_t i = 0; i < t->n_vocab; i++) free(t->piece[i]);
    free(t->piece);
    free(t->plen);
    free(t->special);
    free(t->is_added);
    free(t->vocab.e);
    free(t->merges.e);
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].ncontent);
    }
    free(t->added);
    free(t->added_first);
    free(t->added_order);
    for (int i = 0; i < t->n_norm; i++) { free(t->norm[i].a); free(t->norm[i].b); }
    for (int i = 0; i < t->n_dec; i++) { free(t->dec[i].a); free(t->dec[i].b); }
    free(t->tmpl.v);
    free(t);
}

/* what the splitter matches: the normalized form for normalized tokens */
static unsigned char first_byte(const vt_tokenizer *t, const vt_added_tok *a)
{
    return (unsigned char)(a->normalized && t->n_norm ? a->ncontent[0] : a->content[0]);
}

static size_t match_len(const vt_tokenizer *t, const vt_added_tok *a)
{
    return a->normalized && t->n_norm ? a->nlen : a->len;
}

static int cmp_added_len(const void *a, const void *b, const vt_tokenizer *t)
{
    const vt_added_tok *x = &t->added[*(const int *)a], *y = &t->added[*(const int *)b];
    unsigned char fx = first_byte(t, x), fy = first_byte(t, y);
    if (fx != fy) return fx < fy ? -1 : 1;
    if (match_len(t, x) != match_len(t, y)) return match_len(t, x) > match_len(t, y) ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}

/* Index the added tokens by first byte, longest first, so the splitter
 * tries only the candidates that can start at a position. */
static int index_added(vt_tokenizer *t, vtok_status *st)
{
    int n = t->n_added;
    /* added_vocabulary.rs refresh_added_tokens: normalized tokens are
     * matched in their normalized form (Tokenizer.ts does the same) */
    for (int i = 0; i < n && t->n_norm; i++) {
        vt_added_tok *a = &t->added[i];
        if (!a->normalized) continue;
        vt_tokbuf b = {0};
        if (vt_tok_normalize(t, a->content, a->len, &b)) return VTOK_ENOMEM;
        a->ncontent = b.s;
        a->nlen = b.n;
        if (!b.n)
            return vt_fail(st, VTOK_EFORMAT, "tokenizer.json: added token '%.40s' "
                           "normalizes to nothing", a->content);
    }
    t->added_order = malloc(((size_t)n + 1) * sizeof *t->added_order);
    t->added_first = calloc(257, sizeof *t->added_first);
    if (!t->added_order || !t->added_first) return VTOK_ENOMEM;
    for (int i = 0; i < n; i++) t->added_order[i] = i;
    /* insertion sort: n is small (hundreds) */
    for (int i = 1; i < n; i++) {
        int v = t->added_order[i], j = i;
        while (j > 0 && cmp_added_len(&t->added_order[j - 1], &v, t) > 0) {
            t->added_order[j] = t->added_order[j - 1];
            j--;
        }
        t->added_order[j] = v;
    }
    for (int i = 0; i < n; i++) t->added_first[first_byte(t, &t->added[t->added_order[i]]) + 1]++;
    for (int b = 0; b < 256; b++) t->added_first[b + 1] += t->added_first[b];
    return 0;
}

int vt_tok_load_from_memory(vt_tokenizer **out, const char *json, size_t json_len,
                            const char *config, size_t config_len, const char *name,
                            vtok_status *st)
{
    if (!out) return vt_fail(st, VTOK_EINVAL, "vt_tok_load: out is NULL");
    *out = NULL;
    if (!json) return vt_fail(st, VTOK_EINVAL, "vt_tok_load: no tokenizer.json");
    if (!name) name = "tokenizer.json";
    cJSON *j = vt_json_parse_object(json, json_len, name, st);
    if (!j) return st ? st->code : VTOK_EFORMAT;
    cJSON *cfg = NULL;
    int r = 0;
    vt_tokenizer *t = calloc(1, sizeof *t);
    if (!t) { r = VTOK_ENOMEM; goto done; }
    t->bos = t->eos = -1;
    t->cleanup = 1;
    t->cfg_add_bos = t->cfg_add_eos = -1;
    init_byte_map(t);
    if (config) {
        cfg = vt_json_parse_object(config, config_len, "tokenizer_config.json", st);
        if (!cfg) { r = st ? st->code : VTOK_EFORMAT; goto done; }
    }
    if ((r = load_added(t, obj_get(j, "added_tokens"), st)) ||
        (r = load_model(t, obj_get(j, "model"), st)) ||
        (r = load_normalizer(t, obj_get(j, "normalizer"), st)) ||
        (r = load_pre(t, obj_get(j, "pre_tokenizer"), st)) ||
        (r = load_post(t, obj_get(j, "post_processor"), st)) ||
        (r = load_decoder(t, obj_get(j, "decoder"), st)) ||
        (r = index_added(t, st)))
        goto done;
    if (cfg && (r = apply_config(t, cfg, st))) goto done;
    /* Without a template, add_bos_token / add_eos_token of the config decide
     * (transformers' LlamaTokenizerFast.update_post_processor builds the same
     * "bos $A eos" template from them). With one, the template is the truth,
     * as in tokenizers and transformers.js. */
    if (!t->has_tmpl && (t->cfg_add_bos == 1 || t->cfg_add_eos == 1)) {
        if ((t->cfg_add_bos == 1 && t->bos < 0) || (t->cfg_add_eos == 1 && t->eos < 0)) {
            r = vt_fail(st, VTOK_EFORMAT, "tokenizer_config.json: add_bos_token/add_eos_token "
                        "set but the token is not in the vocabulary");
            goto done;
        }
        if ((t->cfg_add_bos == 1 && vt_idvec_push(&t->tmpl, t->bos)) ||
            vt_idvec_push(&t->tmpl, -1) ||
            (t->cfg_add_eos == 1 && vt_idvec_push(&t->tmpl, t->eos))) {
            r = VTOK_ENOMEM;
            goto done;
        }
        t->has_tmpl = 1;
    }
done:
    if (r == VTOK_ENOMEM && (!st || st->code != VTOK_ENOMEM))
        vt_fail(st, VTOK_ENOMEM, "%s: out of memory", name);
    if (r) {
        if (st && strncmp(st->msg, "tokenizer", 9) && strncmp(st->msg, name, strlen(name)))
            vt_msg_prefix(st, name);
        /* messages quote names from the file: keep them one line */
        for (char *p = st ? st->msg : NULL; p && *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
        vt_tok_free(t);
    } else {
        *out = t;
    }
    cJSON_Delete(j);
    cJSON_Delete(cfg);
    return r;
}

static int is_dir_path(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int path_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

int vt_tok_load(vt_tokenizer **out, const char *path, vtok_status *st)
{
    if (!out) return vt_fail(st, VTOK_EINVAL, "vt_tok_load: out is NULL");
    *out = NULL;
    if (!path) return vt_fail(st, VTOK_EINVAL, "vt_tok_load: path is NULL");
    size_t pl = strlen(path);
    if (pl > 4000) return vt_fail(st, VTOK_EINVAL, "vt_tok_load: path too long");
    char file[4200], cfgp[4200];
    if (is_dir_path(path)) {
        snprintf(file, sizeof file, "%s/tokenizer.json", path);
        snprintf(cfgp, sizeof cfgp, "%s/tokenizer_config.json", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
        const char *slash = strrchr(path, '/');
        size_t dl = slash ? (size_t)(slash - path + 1) : 0;
        snprintf(cfgp, sizeof cfgp, "%.*stokenizer_config.json", (int)dl, path);
    }
    char *json = NULL, *cfg = NULL;
    size_t jn = 0, cn = 0;
    int r = vt_read_file(file, TOK_MAX_FILE, &json, &jn, st);
    if (r) return r;
    if (path_exists(cfgp)) {
        r = vt_read_file(cfgp, TOK_MAX_FILE, &cfg, &cn, st);
        if (r) { free(json); return r; }
    }
    r = vt_tok_load_from_memory(out, json, jn, cfg, cn, file, st);
    free(json);
    free(cfg);
    return r;
}

/* ---- lookups ---- */

int32_t vt_tok_id(const vt_tokenizer *t, const char *token)
{
    if (!t || !token) return -1;
    size_t n = strlen(token);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, token, n)) return t->added[i].id;
    return vt_strmap_get(&t->vocab, token, n);
}

const char *vt_tok_piece(const vt_tokenizer *t, int32_t id)
{
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    return t->piece[id];
}

int64_t vt_tok_vocab_size(const vt_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t vt_tok_bos(const vt_tokenizer *t) { return t ? t->bos : -1; }
int32_t vt_tok_eos(const vt_tokenizer *t) { return t ? t->eos : -1; }

int vt_tok_is_special(const vt_tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab && t->special[id];
}

const int32_t *vt_tok_template(const vt_tokenizer *t, int64_t *n)
{
    *n = t && t->has_tmpl ? (int64_t)t->tmpl.n : 0;
    return *n ? t->tmpl.v : NULL;
}
