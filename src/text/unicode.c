/*
 * unicode.c - UTF-8 coding, category lookups and NFC for the tokenizers.
 *
 * NFC follows UAX #15 (https://unicode.org/reports/tr15/): full canonical
 * decomposition, canonical ordering of combining marks by ccc (stable), then
 * canonical composition where a mark composes with the last starter unless
 * blocked by an intervening mark of equal or higher class. Hangul syllables
 * are decomposed and composed arithmetically (Unicode ch. 3.12). Text whose
 * code points are all below U+0300 is already NFC (no such code point has
 * NFC_Quick_Check != Yes or a non-zero ccc, and none composes with another
 * below U+0300), so the common ASCII/Latin-1 case is a copy.
 */
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

int vt_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;          /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0;         /* surrogate */
        *cp = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;          /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0;         /* > U+10FFFF */
        *cp = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) |
              (s[3] & 0x3Fu);
        return 4;
    }
    return 0;
}

int vt_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t vt_utf8_check(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        int k = vt_utf8_decode(u + i, n - i, &cp);
        if (k == 0) return i;
        i += (size_t)k;
    }
    return n;
}

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

int vt_uni_is_letter(uint32_t cp)
{
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return in_ranges(vt_uni_letter, vt_uni_letter_n, cp);
}

int vt_uni_is_number(uint32_t cp)
{
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return in_ranges(vt_uni_number, vt_uni_number_n, cp);
}

/* White_Space (PropList.txt), which Oniguruma's \s matches in Unicode mode
 * (onig doc/RE: "\s  whitespace char ... Unicode: 0009-000D, 0085,
 * General_Category Zl, Zp, Zs"). */
int vt_uni_is_space(uint32_t cp)
{
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return 0;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

int vt_uni_ccc(uint32_t cp)
{
    if (cp < 0x300) return 0;
    size_t lo = 0, hi = vt_uni_ccc_tab_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < vt_uni_ccc_tab[mid].lo) hi = mid;
        else if (cp > vt_uni_ccc_tab[mid].hi) lo = mid + 1;
        else return vt_uni_ccc_tab[mid].ccc;
    }
    return 0;
}

static const vt_uni_decomp *find_decomp(uint32_t cp)
{
    size_t lo = 0, hi = vt_uni_decomp_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < vt_uni_decomp_tab[mid].cp) hi = mid;
        else if (cp > vt_uni_decomp_tab[mid].cp) lo = mid + 1;
        else return &vt_uni_decomp_tab[mid];
    }
    return NULL;
}

/* Hangul constants, Unicode ch. 3.12 */
enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7,
       L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT,
       S_COUNT = L_COUNT * N_COUNT };

static uint32_t compose_pair(uint32_t a, uint32_t b)
{
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 &&
        b > T_BASE && b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    size_t lo = 0, hi = vt_uni_comp_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const vt_uni_comp *c = &vt_uni_comp_tab[mid];
        if (a < c->a || (a == c->a && b < c->b)) hi = mid;
        else if (a > c->a || b > c->b) lo = mid + 1;
        else return c->c;
    }
    return 0;
}

typedef struct { uint32_t *v; size_t n, cap; } cpbuf;

static int cp_push(cpbuf *b, uint32_t cp)
{
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        uint32_t *nv = realloc(b->v, nc * sizeof *nv);
        if (!nv) return -1;
        b->v = nv;
        b->cap = nc;
    }
    b->v[b->n++] = cp;
    return 0;
}

int vt_uni_nfc(const char *s, size_t n, char **out, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)s;
    int simple = 1;
    for (size_t i = 0; i < n; i++)
        if (u[i] >= 0xCC) { simple = 0; break; }   /* 0xCC lead byte = U+0300 */
    if (simple) {
        char *o = malloc(n + 1);
        if (!o) return -1;
        memcpy(o, s, n);
        o[n] = 0;
        *out = o;
        *out_len = n;
        return 0;
    }
    /* 1. full canonical decomposition */
    cpbuf b = {0};
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = vt_utf8_decode(u + i, n - i, &cp);
        if (k == 0) { cp = 0xFFFD; k = 1; }             /* callers pass valid UTF-8 */
        i += (size_t)k;
        if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
            uint32_t si = cp - S_BASE;
            if (cp_push(&b, L_BASE + si / N_COUNT) || cp_push(&b, V_BASE + (si % N_COUNT) / T_COUNT))
                goto oom;
            if (si % T_COUNT && cp_push(&b, T_BASE + si % T_COUNT)) goto oom;
            continue;
        }
        const vt_uni_decomp *d = cp >= 0xC0 ? find_decomp(cp) : NULL;
        if (!d) {
            if (cp_push(&b, cp)) goto oom;
        } else {
            for (uint32_t j = 0; j < d->n; j++)
                if (cp_push(&b, vt_uni_decomp_pool[d->off + j])) goto oom;
        }
    }
    /* 2. canonical ordering: insertion sort of each run of non-starters by
     * ccc (stable; runs are short in real text) */
    for (size_t k = 1; k < b.n; k++) {
        int ck = vt_uni_ccc(b.v[k]);
        if (ck == 0) continue;
        size_t j = k;
        uint32_t cp = b.v[k];
        while (j > 0) {
            int cj = vt_uni_ccc(b.v[j - 1]);
            if (cj <= ck) break;
            b.v[j] = b.v[j - 1];
            j--;
        }
        b.v[j] = cp;
    }
    /* 3. canonical composition */
    size_t w = 0, starter = (size_t)-1;
    int last_ccc = -1;
    for (size_t k = 0; k < b.n; k++) {
        uint32_t cp = b.v[k];
        int c = vt_uni_ccc(cp);
        if (starter != (size_t)-1) {
            /* blocked if a character between has ccc 0 or >= c */
            int blocked = (w - 1 != starter) && (last_ccc == 0 || last_ccc >= c);
            if (!blocked) {
                uint32_t comp = compose_pair(b.v[starter], cp);
                if (comp) {
                    b.v[starter] = comp;
                    continue;
                }
            }
        }
        if (c == 0) starter = w;
        last_ccc = c;
        b.v[w++] = cp;
    }
    b.n = w;
    char *o = malloc(b.n * 4 + 1);
    if (!o) goto oom;
    size_t len = 0;
    for (size_t k = 0; k < b.n; k++) len += (size_t)vt_utf8_encode(b.v[k], o + len);
    o[len] = 0;
    free(b.v);
    *out = o;
    *out_len = len;
    return 0;
oom:
    free(b.v);
    return -1;
}

int vt_uni_is_punct(uint32_t cp) { return in_ranges(vt_uni_punct, vt_uni_punct_n, cp); }
int vt_uni_is_mn(uint32_t cp) { return cp >= 0x300 && in_ranges(vt_uni_mn, vt_uni_mn_n, cp); }
int vt_uni_is_other(uint32_t cp) { return in_ranges(vt_uni_other, vt_uni_other_n, cp); }

static const vt_uni_decomp *find_in(const vt_uni_decomp *tab, size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < tab[mid].cp) hi = mid;
        else if (cp > tab[mid].cp) lo = mid + 1;
        else return &tab[mid];
    }
    return NULL;
}

int vt_uni_lower(uint32_t cp, uint32_t out[3])
{
    if (cp < 0x80) {
        out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
        return 1;
    }
    const vt_uni_decomp *d = find_in(vt_uni_lower_tab, vt_uni_lower_n, cp);
    if (!d || d->n > 3) {
        out[0] = cp;
        return 1;
    }
    for (uint32_t i = 0; i < d->n; i++) out[i] = vt_uni_lower_pool[d->off + i];
    return (int)d->n;
}

int vt_uni_nfd_cp(uint32_t cp, uint32_t *out)
{
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t si = cp - S_BASE;
        out[0] = L_BASE + si / N_COUNT;
        out[1] = V_BASE + (si % N_COUNT) / T_COUNT;
        if (si % T_COUNT) {
            out[2] = T_BASE + si % T_COUNT;
            return 3;
        }
        return 2;
    }
    const vt_uni_decomp *d = cp >= 0xC0 ? find_decomp(cp) : NULL;
    if (!d || d->n > 18) {
        out[0] = cp;
        return 1;
    }
    for (uint32_t i = 0; i < d->n; i++) out[i] = vt_uni_decomp_pool[d->off + i];
    return (int)d->n;
}
