/*
 * bpe.c - the BPE model: merge table and the merge loop of one word.
 *
 * Follows tokenizers/src/models/bpe/model.rs (BPE::merge_word,
 * word_to_tokens) and word.rs (Word::merge_all):
 *   - each character of the word is looked up in the vocab; one that is
 *     missing becomes its "<0xNN>" byte tokens when byte_fallback is set and
 *     all of them exist, else the unk token (consecutive unks fused into one
 *     when fuse_unk), else it is dropped (no unk_token);
 *   - merges are applied lowest rank first, ties to the leftmost pair
 *     (word.rs: Merge's Ord compares rank, then pos), from a binary heap of
 *     candidate pairs whose stale entries are skipped: O(n log n) per word;
 *   - ignore_merges (LLaMA-3): a word that is itself in the vocab is one
 *     token (model.rs tokenize: "if self.ignore_merges"; looked up without
 *     the suffix, as there);
 *   - end_of_word_suffix (CLIP "</w>"): the word's last character is looked
 *     up with the suffix appended (model.rs merge_word), so merges build
 *     "photo</w>"-style pieces; the suffix stays in the pieces (decoding
 *     keeps it, as tokenizers' ByteLevel decoder does).
 * Merges are read as "a b" strings or ["a", "b"] pairs (model.rs
 * deserialization accepts both); a merge whose parts or result are not in
 * the vocab is an error, as MergeTokenOutOfVocabulary is there; a pair
 * listed twice keeps the later rank (merges are collected into a HashMap).
 */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

static uint64_t pair_key(int32_t a, int32_t b)
{
    return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
}

static size_t pair_slot(uint64_t k, size_t mask)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k & mask;
}

static void pair_put(vt_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    uint64_t k = pair_key(a, b);
    size_t mask = m->cap - 1, i = pair_slot(k, mask);
    while (m->e[i].key && m->e[i].key != k) i = (i + 1) & mask;
    m->e[i].key = k;
    m->e[i].rank = rank;
    m->e[i].id = id;
}

static const vt_pairent *pair_get(const vt_pairmap *m, int32_t a, int32_t b)
{
    if (!m->cap) return NULL;
    uint64_t k = pair_key(a, b);
    size_t mask = m->cap - 1, i = pair_slot(k, mask);
    while (m->e[i].key) {
        if (m->e[i].key == k) return &m->e[i];
        i = (i + 1) & mask;
    }
    return NULL;
}

int vt_bpe_load_merges(vt_tokenizer *t, const cJSON *merges, vtok_status *st)
{
    int n = cJSON_GetArraySize(merges);
    size_t cap = 16;
    while (cap < (size_t)n * 2 + 1) cap *= 2;
    t->merges.e = calloc(cap, sizeof *t->merges.e);
    if (!t->merges.e) return VTOK_ENOMEM;
    t->merges.cap = cap;
    vt_tokbuf buf = {0};
    int rank = 0, r = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        const char *a, *b;
        size_t al, bl;
        if (cJSON_IsString(m)) {
            /* "a b": split at the first space (model.rs convert_merges_to_hashmap
             * uses split_once-like parts == 2 check) */
            a = m->valuestring;
            const char *sp = strchr(a, ' ');
            if (!sp || sp == a || !sp[1] || strchr(sp + 1, ' ')) {
                r = vt_fail(st, VTOK_EFORMAT, "tokenizer.json: merges[%d] '%.60s' is not \"a b\"",
                            rank, a);
                break;
            }
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = strlen(b);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            a = m->child->valuestring;
            b = m->child->next->valuestring;
            al = strlen(a);
            bl = strlen(b);
        } else {
            r = vt_fail(st, VTOK_EFORMAT, "tokenizer.json: merges[%d] is neither \"a b\" nor "
                        "[\"a\", \"b\"]", rank);
            break;
        }
        int32_t ia = vt_strmap_get(&t->vocab, a, al), ib = vt_strmap_get(&t->vocab, b, bl);
        buf.n = 0;
        if (vt_tokbuf_put(&buf, a, al) || vt_tokbuf_put(&buf, b, bl)) { r = VTOK_ENOMEM; break; }
        int32_t ic = vt_strmap_get(&t->vocab, buf.s, buf.n);
        if (ia < 0 || ib < 0 || ic < 0) {
            r = vt_fail(st, VTOK_EFORMAT, "tokenizer.json: merges[%d] ('%.40s' + '%.40s') uses "
                        "a token that is not in the vocab", rank, a, b);
            break;
        }
        pair_put(&t->merges, ia, ib, rank, ic);
        rank++;
    }
    free(buf.s);
    return r;
}

typedef struct { int32_t rank, pos; } heapent;

static int heap_less(heapent x, heapent y)
{
    return x.rank < y.rank || (x.rank == y.rank && x.pos < y.pos);
}

static void heap_push(heapent *h, size_t *n, heapent x)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(x, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static heapent heap_pop(heapent *h, size_t *n)
{
    heapent top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(h[c + 1], h[c])) c++;
        if (!heap_less(h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
    return top;
}

/* Symbols of a word: ids in a doubly linked list over positions. */
typedef struct {
    int32_t *id, *prev, *next;
    heapent *heap;
    size_t   n, heap_n, heap_cap;
} word_t;

static int push_pair(const vt_tokenizer *t, word_t *w, int32_t pos)
{
    if (pos < 0 || w->next[pos] < 0) return 0;
    const vt_pairent *p = pair_get(&t->merges, w->id[pos], w->id[w->next[pos]]);
    if (!p) return 0;
    if (w->heap_n == w->heap_cap) {
        size_t nc = w->heap_cap ? w->heap_cap * 2 : 64;
        heapent *nh = realloc(w->heap, nc * sizeof *nh);
        if (!nh) return VTOK_ENOMEM;
        w->heap = nh;
        w->heap_cap = nc;
    }
    heapent e = {p->rank, pos};
    heap_push(w->heap, &w->heap_n, e);
    return 0;
}

int vt_bpe_word(const vt_tokenizer *t, const char *s, size_t n, vt_idvec *out)
{
    if (n == 0) return 0;
    if (t->ignore_merges) {
        int32_t id = vt_strmap_get(&t->vocab, s, n);
        if (id >= 0) return vt_idvec_push(out, id);
    }
    word_t w = {0};
    int r = VTOK_ENOMEM;
    /* at most n symbols (one per byte with byte fallback) */
    w.id = malloc(n * sizeof *w.id);
    w.prev = malloc(n * sizeof *w.prev);
    w.next = malloc(n * sizeof *w.next);
    if (!w.id || !w.prev || !w.next) goto done;
    int last_unk = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = vt_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (k == 0) k = 1;
        int32_t id;
        if (t->eow_len && i + (size_t)k == n) {
            /* the last character carries end_of_word_suffix (model.rs
             * merge_word: is_last) */
            char last[4 + sizeof t->eow];
            memcpy(last, s + i, (size_t)k);
            memcpy(last + k, t->eow, t->eow_len);
            id = vt_strmap_get(&t->vocab, last, (size_t)k + t->eow_len);
        } else {
            id = vt_strmap_get(&t->vocab, s + i, (size_t)k);
        }
        if (id >= 0) {
            w.id[w.n++] = id;
            last_unk = 0;
        } else {
            int all = t->byte_fallback;
            for (int b = 0; all && b < k; b++)
                if (t->byte_id[(unsigned char)s[i + b]] < 0) all = 0;
            if (all) {
                for (int b = 0; b < k; b++) w.id[w.n++] = t->byte_id[(unsigned char)s[i + b]];
                last_unk = 0;
            } else if (t->unk >= 0) {
                if (!(t->fuse_unk && last_unk)) w.id[w.n++] = t->unk;
                last_unk = 1;
            }
        }
        i += (size_t)k;
    }
    for (size_t i = 0; i < w.n; i++) {
        w.prev[i] = (int32_t)i - 1;
        w.next[i] = i + 1 < w.n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < w.n; i++)
        if ((r = push_pair(t, &w, (int32_t)i))) goto done;
    while (w.heap_n) {
        heapent e = heap_pop(w.heap, &w.heap_n);
        int32_t a = e.pos, b = w.next[a];
        if (w.id[a] < 0 || b < 0) continue;          /* merged away */
        const vt_pairent *p = pair_get(&t->merges, w.id[a], w.id[b]);
        if (!p || p->rank != e.rank) continue;       /* stale */
        w.id[a] = p->id;
        w.id[b] = -1;
        w.next[a] = w.next[b];
        if (w.next[a] >= 0) w.prev[w.next[a]] = a;
        if ((r = push_pair(t, &w, w.prev[a])) || (r = push_pair(t, &w, a))) goto done;
    }
    r = 0;
    for (int32_t i = w.n ? 0 : -1; i >= 0 && !r; i = w.next[i]) r = vt_idvec_push(out, w.id[i]);
done:
    free(w.id);
    free(w.prev);
    free(w.next);
    free(w.heap);
    return r;
}
