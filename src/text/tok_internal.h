/*
 * tok_internal.h - the tokenizer's representation, shared by tokenizer.c
 * (loading, lookups), encode.c (normalize, pre-tokenize, BPE, decode).
 */
#ifndef VT_TEXT_TOK_INTERNAL_H
#define VT_TEXT_TOK_INTERNAL_H

#include "tokenizer.h"
#include "unicode.h"

#include <cjson/cJSON.h>

#define VT_TOK_MAX_STEPS 16

typedef struct { const char *s; uint32_t len; int32_t id; } vt_strent;
typedef struct { vt_strent *e; size_t cap; } vt_strmap;
int32_t vt_strmap_get(const vt_strmap *m, const char *s, size_t len);

/* merges: (left id, right id) -> (rank, merged id); key 0 = empty slot, so
 * keys are stored + 1 */
typedef struct { uint64_t key; int32_t rank, id; } vt_pairent;
typedef struct { vt_pairent *e; size_t cap; } vt_pairmap;

typedef struct { char *s; size_t n, cap; } vt_tokbuf;
typedef struct { int32_t *v; size_t n, cap; } vt_idvec;
int vt_tokbuf_put(vt_tokbuf *b, const char *s, size_t n);
int vt_idvec_push(vt_idvec *v, int32_t id);

typedef struct {
    char   *content;
    size_t  len;
    char   *ncontent;                 /* normalized content (normalized tokens only) */
    size_t  nlen;
    int32_t id;
    int     special, normalized, lstrip, rstrip, single_word;
} vt_added_tok;

/* VT_NORM_WS: Replace with the Regex pattern "\\s+" (CLIP), the only regex
 * accepted there; VT_NORM_LOWER: Lowercase */
enum { VT_NORM_NFC, VT_NORM_PREPEND, VT_NORM_REPLACE, VT_NORM_BERT, VT_NORM_WS, VT_NORM_LOWER };
typedef struct {
    int kind; char *a; size_t alen; char *b; size_t blen;
    int clean, chinese, strip, lower;  /* BertNormalizer */
} vt_norm_step;

enum { VT_PRE_SPLIT, VT_PRE_BYTELEVEL, VT_PRE_METASPACE, VT_PRE_BERT };
/* VT_RX_CLIP / VT_RX_CLIP_PLAIN: CLIP's pattern with and without the two
 * special-token literals in front; unlike the others they match no
 * whitespace (their Split removes it: behavior Removed, invert true) */
enum { VT_RX_GPT2, VT_RX_LLAMA3, VT_RX_QWEN2, VT_RX_CLIP, VT_RX_CLIP_PLAIN };
enum { VT_PREPEND_ALWAYS, VT_PREPEND_FIRST, VT_PREPEND_NEVER };
typedef struct {
    int    kind;
    int    regex;                     /* VT_RX_* (Split) */
    int    removed;                   /* Split: keep the matches, drop the rest
                                         (behavior Removed with invert) */
    int    add_prefix_space, use_regex;   /* ByteLevel */
    char   repl[5];                   /* Metaspace */
    size_t repl_len;
    int    prepend, split;
} vt_pre_step;

enum { VT_DEC_BYTELEVEL, VT_DEC_REPLACE, VT_DEC_BYTEFALLBACK, VT_DEC_FUSE, VT_DEC_STRIP,
       VT_DEC_METASPACE, VT_DEC_WORDPIECE };
typedef struct {
    int    kind;
    char  *a;  size_t alen;           /* Replace pattern, Strip content, Metaspace replacement */
    char  *b;  size_t blen;           /* Replace content */
    int    start, stop;               /* Strip; Metaspace: start = strip first space;
                                         WordPiece: start = cleanup */
} vt_dec_step;

struct vt_tokenizer {
    int64_t   n_vocab;                /* max id + 1 */
    char    **piece;                  /* by id, NUL-terminated; NULL = hole */
    uint32_t *plen;
    uint8_t  *special, *is_added;
    vt_strmap  vocab;                 /* the model's vocab (not added tokens) */
    vt_pairmap merges;

    vt_added_tok *added;
    int           n_added;
    int          *added_order;        /* by first byte, then longest first */
    int          *added_first;        /* [257]: added_order range per first byte */

    vt_norm_step norm[VT_TOK_MAX_STEPS]; int n_norm;
    vt_pre_step  pre[VT_TOK_MAX_STEPS];  int n_pre;
    vt_dec_step  dec[VT_TOK_MAX_STEPS];  int n_dec;
    int          has_decoder;

    int     wordpiece;                /* model: 0 BPE, 1 WordPiece */
    char    wp_prefix[32];            /* WordPiece continuing_subword_prefix */
    size_t  wp_prefix_len;
    int64_t wp_max_chars;             /* max_input_chars_per_word */
    char    eow[16];                  /* BPE end_of_word_suffix ("</w>": CLIP) */
    size_t  eow_len;
    int32_t unk;
    int     fuse_unk, byte_fallback, ignore_merges, byte_level;
    int32_t byte_id[256];             /* ids of "<0xNN>", -1 if absent */

    vt_idvec tmpl;                    /* post-processor: ids, -1 = the text */
    int      has_tmpl;

    int     cleanup;
    int32_t bos, eos;
    int     cfg_add_bos, cfg_add_eos;

    /* byte-level alphabet */
    uint32_t byte_cp[256];
    char     byte_utf8[256][4];
    uint8_t  byte_len[256];
    int16_t  cp_byte[512];
};

/* pretext.c: which supported Split regex this is (VT_RX_*), or -1 */
int vt_pretok_regex_kind(const char *rx);
/* Length in bytes of the next regex match at s[0..n) (n > 0, valid UTF-8);
 * the supported patterns match every non-empty input, so this is >= 1.
 * The CLIP patterns match wherever s does not start with whitespace. */
size_t vt_pretok_regex_next(int kind, const char *s, size_t n);

/* encode.c: the normalizer chain on s[0..n) into *out (caller frees) */
int vt_tok_normalize(const vt_tokenizer *t, const char *s, size_t n, vt_tokbuf *out);

/* wordpiece.c: BertNormalizer, BertPreTokenizer's split, the WordPiece model */
int vt_bert_normalize(const vt_norm_step *ns, const char *s, size_t n, vt_tokbuf *out);
/* calls fn on each word of s (whitespace removed, punctuation isolated) */
int vt_bert_pretok(const char *s, size_t n, int (*fn)(void *, const char *, size_t), void *arg);
int vt_wordpiece_word(const vt_tokenizer *t, const char *w, size_t n, vt_idvec *out);

/* bpe.c */
int vt_bpe_load_merges(vt_tokenizer *t, const cJSON *merges, vtok_status *st);
int vt_bpe_word(const vt_tokenizer *t, const char *w, size_t n, vt_idvec *out);

#endif /* VT_TEXT_TOK_INTERNAL_H */
