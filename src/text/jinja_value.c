/*
 * jinja_value.c - values of the Jinja subset: errors and memory of a render,
 * lists and dicts (insertion-ordered), equality and truth as in Python,
 * UTF-8 helpers, and the three ways a value becomes text: str() for {{ }},
 * repr() inside containers, and JSON for tojson. See jinja.c.
 */
#include "text/jinja_int.h"

#include "vtok.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 3, 4)))
#endif
void jn_rfail(R *r, int code, const char *fmt, ...)
{
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (code == VTOK_ELIMIT || code == VTOK_ENOMEM || r->line == 0)
        jfail(r->e, code, "%s", buf);
    jfail(r->e, code, "line %d:%d: %s", r->line, r->col, buf);
}

void *jn_ralloc(R *r, size_t n)
{
    int over = 0;
    void *p = jarena_alloc(&r->ar, n, &over);
    if (!p) {
        if (over)
            jn_rfail(r, VTOK_ELIMIT, "template used more than %zu MiB of memory", VT_JINJA_MAX_MEMORY >> 20);
        jn_rfail(r, VTOK_ENOMEM, "out of memory rendering the template");
    }
    return p;
}

void jn_step(R *r)
{
    if (++r->steps > VT_JINJA_MAX_STEPS)
        jn_rfail(r, VTOK_ELIMIT, "template ran more than %d steps", VT_JINJA_MAX_STEPS);
}


char *jn_str_alloc(R *r, size_t n)
{
    if (n > VT_JINJA_MAX_MEMORY)
        jn_rfail(r, VTOK_ELIMIT, "string of %zu bytes exceeds the memory limit", n);
    return jn_ralloc(r, n + 1);
}

jlist *jn_list_new(R *r, size_t cap)
{
    jlist *l = jn_ralloc(r, sizeof(jlist));
    l->n = 0;
    l->cap = cap ? cap : 4;
    if (l->cap > VT_JINJA_MAX_MEMORY / sizeof(jv))
        jn_rfail(r, VTOK_ELIMIT, "list too large");
    l->v = jn_ralloc(r, l->cap * sizeof(jv));
    return l;
}
void jn_list_push(R *r, jlist *l, jv x)
{
    if (l->n == l->cap) {
        size_t nc = l->cap * 2;
        if (nc > VT_JINJA_MAX_MEMORY / sizeof(jv))
            jn_rfail(r, VTOK_ELIMIT, "list too large");
        jv *nv = jn_ralloc(r, nc * sizeof(jv));
        memcpy(nv, l->v, l->n * sizeof(jv));
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = x;
}
jdict *jn_dict_new(R *r, size_t cap)
{
    jdict *d = jn_ralloc(r, sizeof(jdict));
    d->n = 0;
    d->cap = cap ? cap : 4;
    if (d->cap > VT_JINJA_MAX_MEMORY / sizeof(jv))
        jn_rfail(r, VTOK_ELIMIT, "dict too large");
    d->k = jn_ralloc(r, d->cap * sizeof(jv));
    d->v = jn_ralloc(r, d->cap * sizeof(jv));
    return d;
}


int jn_jv_eq(const jv *a, const jv *b);

jv *jn_dict_find(jdict *d, const jv *k)
{
    for (size_t i = 0; i < d->n; i++)
        if (jn_jv_eq(&d->k[i], k))
            return &d->v[i];
    return NULL;
}
jv *jn_dict_find_s(jdict *d, const char *k, size_t n)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == V_STR && d->k[i].u.s.n == n && memcmp(d->k[i].u.s.p, k, n) == 0)
            return &d->v[i];
    return NULL;
}
void jn_dict_set(R *r, jdict *d, jv k, jv v)
{
    jv *slot = jn_dict_find(d, &k);
    if (slot) {
        *slot = v;
        return;
    }
    if (d->n == d->cap) {
        size_t nc = d->cap * 2;
        if (nc > VT_JINJA_MAX_MEMORY / sizeof(jv))
            jn_rfail(r, VTOK_ELIMIT, "dict too large");
        jv *nk = jn_ralloc(r, nc * sizeof(jv)), *nv = jn_ralloc(r, nc * sizeof(jv));
        memcpy(nk, d->k, d->n * sizeof(jv));
        memcpy(nv, d->v, d->n * sizeof(jv));
        d->k = nk;
        d->v = nv;
        d->cap = nc;
    }
    d->k[d->n] = k;
    d->v[d->n] = v;
    d->n++;
}

int jn_jv_eq(const jv *a, const jv *b)
{
    if (is_num(a) && is_num(b)) {
        if (a->t != V_FLOAT && b->t != V_FLOAT)
            return a->u.i == b->u.i;
        return num_f(a) == num_f(b);
    }
    if (a->t != b->t)
        return 0;
    switch (a->t) {
    case V_UNDEF:
    case V_NONE:
        return 1;
    case V_STR:
        return a->u.s.n == b->u.s.n && memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0;
    case V_LIST:
        if (a->u.l->n != b->u.l->n)
            return 0;
        for (size_t i = 0; i < a->u.l->n; i++)
            if (!jn_jv_eq(&a->u.l->v[i], &b->u.l->v[i]))
                return 0;
        return 1;
    case V_DICT:
    case V_NS:
        if (a->u.d->n != b->u.d->n)
            return 0;
        for (size_t i = 0; i < a->u.d->n; i++) {
            jv *o = jn_dict_find(b->u.d, &a->u.d->k[i]);
            if (!o || !jn_jv_eq(&a->u.d->v[i], o))
                return 0;
        }
        return 1;
    case V_LOOP:
        return a->u.lp == b->u.lp;
    case V_MACRO:
        return a->u.mac == b->u.mac;
    case V_FUNC:
        return a->u.fn == b->u.fn;
    default:
        return 0;
    }
}

int jn_truthy(const jv *v)
{
    switch (v->t) {
    case V_UNDEF:
    case V_NONE:
        return 0;
    case V_BOOL:
    case V_INT:
        return v->u.i != 0;
    case V_FLOAT:
        return v->u.f != 0.0;
    case V_STR:
        return v->u.s.n > 0;
    case V_LIST:
        return v->u.l->n > 0;
    case V_DICT:
        return v->u.d->n > 0;
    default:
        return 1;
    }
}

const char *jn_type_name(const jv *v)
{
    static const char *const names[] = {"undefined", "none", "bool", "int", "float", "str", "list",
                                        "dict", "namespace", "loop", "macro", "function", "method"};
    if (v->t == V_LIST && v->tuple)
        return "tuple";
    return names[v->t];
}

#if defined(__GNUC__)
__attribute__((noreturn))
#endif
void jn_undefined_fail(R *r, const jv *v)
{
    if (v->u.s.p)
        jn_rfail(r, VTOK_EINVAL, "'%s' is undefined", v->u.s.p);
    jn_rfail(r, VTOK_EINVAL, "an undefined value was used");
}

/* ------------------------------------------------------------ UTF-8 helpers */

size_t jn_cp_len(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}
/* byte offset of code point idx (idx <= count) */
size_t jn_cp_off(const char *s, size_t n, size_t idx)
{
    size_t i = 0;
    while (i < n && idx) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        idx--;
    }
    return i;
}
/* decode one code point at s[*i]; invalid bytes decode as themselves */
unsigned jn_cp_next(const char *s, size_t n, size_t *i)
{
    unsigned char c = (unsigned char)s[*i];
    unsigned cp;
    int extra;
    if (c < 0x80) {
        (*i)++;
        return c;
    } else if ((c & 0xE0) == 0xC0) {
        cp = c & 0x1F;
        extra = 1;
    } else if ((c & 0xF0) == 0xE0) {
        cp = c & 0x0F;
        extra = 2;
    } else if ((c & 0xF8) == 0xF0) {
        cp = c & 0x07;
        extra = 3;
    } else {
        (*i)++;
        return c;
    }
    size_t j = *i + 1;
    for (int k = 0; k < extra; k++, j++) {
        if (j >= n || ((unsigned char)s[j] & 0xC0) != 0x80) {
            (*i)++;
            return c;
        }
        cp = (cp << 6) | ((unsigned char)s[j] & 0x3F);
    }
    *i = j;
    return cp;
}

/* Python's str.isspace() code points (Objects/unicodetype_db.h _PyUnicode_IsWhitespace) */
int jn_py_space(unsigned cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

/* does code point cp occur in chars (UTF-8)? */
int jn_cp_in(unsigned cp, const char *chars, size_t cn)
{
    size_t i = 0;
    while (i < cn)
        if (jn_cp_next(chars, cn, &i) == cp)
            return 1;
    return 0;
}

/* strip per Python str.strip/lstrip/rstrip; chars NULL = whitespace */
jv jn_str_strip(jv s, const char *chars, size_t cn, int left, int right)
{
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, a = 0, b = n;
    if (left) {
        while (a < b) {
            size_t i = a;
            unsigned cp = jn_cp_next(p, n, &i);
            if (chars ? !jn_cp_in(cp, chars, cn) : !jn_py_space(cp))
                break;
            a = i;
        }
    }
    if (right) {
        while (b > a) {
            size_t k = b - 1;
            while (k > a && ((unsigned char)p[k] & 0xC0) == 0x80)
                k--;
            size_t i = k;
            unsigned cp = jn_cp_next(p, n, &i);
            if (chars ? !jn_cp_in(cp, chars, cn) : !jn_py_space(cp))
                break;
            b = k;
        }
    }
    return mk_str(p + a, b - a);
}

/* ------------------------------------------------------------- formatting */


void jn_sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *np = jn_str_alloc(b->r, nc);
        if (b->n)
            memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
void jn_sb_puts(sbuf *b, const char *s)
{
    jn_sb_put(b, s, strlen(s));
}

/* Python repr(float) / json.dumps float: the shortest digits that round-trip,
 * fixed notation for exponents -4..15, else d.ddde+XX (Python's float_repr_style
 * 'short', Python/pystrtod.c format_float_short with mode 'r'). */
void jn_fmt_float(double f, char *out, size_t outlen, int json)
{
    if (isnan(f)) {
        snprintf(out, outlen, "%s", json ? "NaN" : "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(out, outlen, "%s", f < 0 ? (json ? "-Infinity" : "-inf") : (json ? "Infinity" : "inf"));
        return;
    }
    char e[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof(e), "%.*e", prec - 1, f);
        if (strtod(e, NULL) == f)
            break;
    }
    /* e = [-]d[.ddd]e[+-]XX */
    char digits[24];
    int nd = 0, neg = 0;
    const char *q = e;
    if (*q == '-') {
        neg = 1;
        q++;
    }
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9')
            digits[nd++] = *q;
    int exp = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = 0;
    char *o = out;
    size_t left = outlen;
#define PUT(...)                                                                                      \
    do {                                                                                              \
        int w_ = snprintf(o, left, __VA_ARGS__);                                                      \
        if (w_ < 0 || (size_t)w_ >= left)                                                             \
            return;                                                                                   \
        o += w_;                                                                                      \
        left -= (size_t)w_;                                                                           \
    } while (0)
    if (neg)
        PUT("-");
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            PUT("0.");
            for (int k = 0; k < -exp - 1; k++)
                PUT("0");
            PUT("%s", digits);
        } else {
            for (int k = 0; k <= exp; k++)
                PUT("%c", k < nd ? digits[k] : '0');
            PUT(".");
            if (nd > exp + 1)
                PUT("%s", digits + exp + 1);
            else
                PUT("0");
        }
    } else {
        PUT("%c", digits[0]);
        if (nd > 1)
            PUT(".%s", digits + 1);
        PUT("e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
#undef PUT
}

void jn_repr_to(R *r, sbuf *b, const jv *v);

/* Python str(): what {{ }} prints (jinja2 runtime.py str / markup_join). */
void jn_str_to(R *r, sbuf *b, const jv *v)
{
    char tmp[64];
    switch (v->t) {
    case V_UNDEF:
        return;
    case V_STR:
        jn_sb_put(b, v->u.s.p, v->u.s.n);
        return;
    default:
        jn_repr_to(r, b, v);
        (void)tmp;
    }
}

/* Code points Python's repr escapes (str.isprintable() is false): controls,
 * separators other than ' ', format characters. A subset of the Unicode
 * tables (Objects/unicodectype.c): the ones text is likely to carry. */
static int py_unprintable(unsigned cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD || (cp >= 0x600 && cp <= 0x605) ||
           cp == 0x61C || cp == 0x6DD || cp == 0x70F || cp == 0x1680 || cp == 0x180E ||
           (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) || (cp >= 0x205F && cp <= 0x2064) ||
           (cp >= 0x2066 && cp <= 0x206F) || cp == 0x3000 || (cp >= 0xD800 && cp <= 0xF8FF) || cp == 0xFEFF ||
           (cp >= 0xFFF9 && cp <= 0xFFFB) || (cp >= 0xE0000 && cp <= 0xE007F) || cp >= 0xF0000;
}

static void repr_str(sbuf *b, const char *p, size_t n)
{
    /* Python repr: single quotes unless the text has ' and no " */
    int sq = memchr(p, '\'', n) != NULL, dq = memchr(p, '"', n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    jn_sb_put(b, &q, 1);
    for (size_t i = 0; i < n;) {
        size_t k = i;
        unsigned cp = jn_cp_next(p, n, &k);
        char esc[16];
        if (cp == (unsigned char)q || cp == '\\') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            jn_sb_put(b, esc, 2);
        } else if (cp == '\n') {
            jn_sb_puts(b, "\\n");
        } else if (cp == '\r') {
            jn_sb_puts(b, "\\r");
        } else if (cp == '\t') {
            jn_sb_puts(b, "\\t");
        } else if (py_unprintable(cp)) {
            if (cp < 0x100)
                snprintf(esc, sizeof(esc), "\\x%02x", cp);
            else if (cp < 0x10000)
                snprintf(esc, sizeof(esc), "\\u%04x", cp);
            else
                snprintf(esc, sizeof(esc), "\\U%08x", cp);
            jn_sb_puts(b, esc);
        } else {
            jn_sb_put(b, p + i, k - i);
        }
        i = k;
    }
    jn_sb_put(b, &q, 1);
}

void jn_repr_to(R *r, sbuf *b, const jv *v)
{
    char tmp[64];
    jn_step(r);
    switch (v->t) {
    case V_UNDEF:
        return;
    case V_NONE:
        jn_sb_puts(b, "None");
        return;
    case V_BOOL:
        jn_sb_puts(b, v->u.i ? "True" : "False");
        return;
    case V_INT:
        snprintf(tmp, sizeof(tmp), "%" PRId64, v->u.i);
        jn_sb_puts(b, tmp);
        return;
    case V_FLOAT:
        jn_fmt_float(v->u.f, tmp, sizeof(tmp), 0);
        jn_sb_puts(b, tmp);
        return;
    case V_STR:
        repr_str(b, v->u.s.p, v->u.s.n);
        return;
    case V_LIST:
        jn_sb_puts(b, v->tuple ? "(" : "[");
        for (size_t i = 0; i < v->u.l->n; i++) {
            if (i)
                jn_sb_puts(b, ", ");
            jn_repr_to(r, b, &v->u.l->v[i]);
        }
        if (v->tuple && v->u.l->n == 1)
            jn_sb_puts(b, ",");
        jn_sb_puts(b, v->tuple ? ")" : "]");
        return;
    case V_DICT:
        jn_sb_puts(b, "{");
        for (size_t i = 0; i < v->u.d->n; i++) {
            if (i)
                jn_sb_puts(b, ", ");
            jn_repr_to(r, b, &v->u.d->k[i]);
            jn_sb_puts(b, ": ");
            jn_repr_to(r, b, &v->u.d->v[i]);
        }
        jn_sb_puts(b, "}");
        return;
    case V_NS:
        jn_sb_puts(b, "<Namespace>");
        return;
    case V_LOOP:
        jn_sb_puts(b, "<LoopContext>");
        return;
    case V_MACRO:
        jn_sb_puts(b, "<Macro>");
        return;
    default:
        jn_sb_puts(b, "<function>");
        return;
    }
}

jv jn_to_str(R *r, const jv *v)
{
    if (v->t == V_STR)
        return *v;
    sbuf b = {r, NULL, 0, 0};
    jn_str_to(r, &b, v);
    return mk_str(b.p ? b.p : "", b.n);
}

/* JSON as transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None,
 * separators=None, sort_keys=False) with those four arguments passed through
 * (transformers/utils/chat_template_utils.py tojson). Python's defaults:
 * separators ", " / ": " without indent and "," / ": " with it (also
 * @huggingface/jinja src/runtime.ts:342-420, toJSON); control characters as
 * \uXXXX except \n \r \t \b \f; ensure_ascii escapes every non-ASCII code
 * point, astral ones as a surrogate pair (Lib/json/encoder.py). */

static void json_str(sbuf *b, const char *p, size_t n, int ascii)
{
    jn_sb_puts(b, "\"");
    size_t run = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        const char *esc = NULL;
        char u[16];
        size_t next = i + 1;
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c == '\b')
            esc = "\\b";
        else if (c == '\f')
            esc = "\\f";
        else if (c < 0x20 || (ascii && c == 0x7f)) {
            snprintf(u, sizeof(u), "\\u%04x", c);
            esc = u;
        } else if (ascii && c >= 0x80) {
            size_t k = i;
            unsigned cp = jn_cp_next(p, n, &k);
            next = k;
            if (cp >= 0x10000) {
                cp -= 0x10000;
                snprintf(u, sizeof(u), "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else {
                snprintf(u, sizeof(u), "\\u%04x", cp);
            }
            esc = u;
        }
        if (esc) {
            jn_sb_put(b, p + run, i - run);
            jn_sb_puts(b, esc);
            run = next;
        }
        i = next;
    }
    jn_sb_put(b, p + run, n - run);
    jn_sb_puts(b, "\"");
}

static int key_cmp(const void *a, const void *b)
{
    const jv *x = *(const jv *const *)a, *y = *(const jv *const *)b;
    size_t n = x->u.s.n < y->u.s.n ? x->u.s.n : y->u.s.n;
    int c = memcmp(x->u.s.p, y->u.s.p, n);
    if (c)
        return c;
    return (x->u.s.n > y->u.s.n) - (x->u.s.n < y->u.s.n);
}

void jn_json_to(R *r, sbuf *b, const jv *v, const jopts *o, int depth)
{
    char tmp[64];
    jn_step(r);
    if (depth > 512)
        jn_rfail(r, VTOK_ELIMIT, "tojson: value nested too deeply");
    switch (v->t) {
    case V_NONE:
        jn_sb_puts(b, "null");
        return;
    case V_BOOL:
        jn_sb_puts(b, v->u.i ? "true" : "false");
        return;
    case V_INT:
        snprintf(tmp, sizeof(tmp), "%" PRId64, v->u.i);
        jn_sb_puts(b, tmp);
        return;
    case V_FLOAT:
        jn_fmt_float(v->u.f, tmp, sizeof(tmp), 1);
        jn_sb_puts(b, tmp);
        return;
    case V_STR:
        json_str(b, v->u.s.p, v->u.s.n, o->ascii);
        return;
    case V_LIST:
    case V_DICT: {
        int isl = v->t == V_LIST;
        size_t n = isl ? v->u.l->n : v->u.d->n;
        jn_sb_puts(b, isl ? "[" : "{");
        if (n == 0) {
            jn_sb_puts(b, isl ? "]" : "}");
            return;
        }
        const jv **keys = NULL;
        if (!isl) {
            /* keys as json.dumps writes them: str as is; int, float, bool and
             * None converted to their JSON text */
            keys = jn_ralloc(r, n * sizeof(jv *));
            for (size_t i = 0; i < n; i++) {
                const jv *k = &v->u.d->k[i];
                if (k->t != V_STR) {
                    if (k->t != V_INT && k->t != V_FLOAT && k->t != V_BOOL && k->t != V_NONE)
                        jn_rfail(r, VTOK_EINVAL, "tojson: keys must be str, int, float, bool or None, not %s",
                              jn_type_name(k));
                    if (o->sort)
                        jn_rfail(r, VTOK_EINVAL, "tojson: sort_keys needs string keys");
                    sbuf kb = {r, NULL, 0, 0};
                    jn_json_to(r, &kb, k, o, depth + 1);
                    jv *ks = jn_ralloc(r, sizeof(jv));
                    *ks = mk_str(kb.p, kb.n);
                    k = ks;
                }
                keys[i] = k;
            }
        }
        size_t *order = jn_ralloc(r, n * sizeof(size_t));
        for (size_t i = 0; i < n; i++)
            order[i] = i;
        if (!isl && o->sort) {
            /* sort stably by key (code point order = UTF-8 byte order) */
            for (size_t i = 1; i < n; i++) {
                size_t x = order[i], j = i;
                while (j > 0 && key_cmp(&keys[order[j - 1]], &keys[x]) > 0) {
                    order[j] = order[j - 1];
                    j--;
                    jn_step(r);
                }
                order[j] = x;
            }
        }
        for (size_t q = 0; q < n; q++) {
            size_t i = order[q];
            if (q)
                jn_sb_put(b, o->isep.u.s.p, o->isep.u.s.n);
            if (o->indent >= 0) {
                jn_sb_puts(b, "\n");
                for (int k = 0; k < o->indent * (depth + 1); k++)
                    jn_sb_puts(b, " ");
            }
            if (isl) {
                jn_json_to(r, b, &v->u.l->v[i], o, depth + 1);
            } else {
                json_str(b, keys[i]->u.s.p, keys[i]->u.s.n, o->ascii);
                jn_sb_put(b, o->ksep.u.s.p, o->ksep.u.s.n);
                jn_json_to(r, b, &v->u.d->v[i], o, depth + 1);
            }
        }
        if (o->indent >= 0) {
            jn_sb_puts(b, "\n");
            for (int k = 0; k < o->indent * depth; k++)
                jn_sb_puts(b, " ");
        }
        jn_sb_puts(b, isl ? "]" : "}");
        return;
    }
    default:
        jn_rfail(r, VTOK_EINVAL, "tojson: object of type %s is not JSON serializable", jn_type_name(v));
    }
}
