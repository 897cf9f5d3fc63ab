/*
 * jinja_parse.c - lexer and parser of the Jinja subset (see jinja.h).
 *
 * Whitespace follows jinja2 as transformers configures it
 * (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False):
 *  - one trailing newline of the template is dropped
 *    (@huggingface/jinja src/lexer.ts:162; jinja2 lexer.py keep_trailing_newline);
 *  - lstrip_blocks: spaces and tabs between a line start and "{%" or "{#"
 *    are removed unless the tag opens with "+" (lexer.ts:166-171);
 *  - trim_blocks: the first newline after "%}" or "#}" is removed unless the
 *    tag closes with "+" (lexer.ts:173-177);
 *  - "{%-"/"{{-"/"{#-" strip all whitespace before, "-%}"/"-}}"/"-#}" all
 *    whitespace after (lexer.ts stripTrailingWhitespace/skipLeadingWhitespace).
 * Inside a tag the end delimiter only counts outside brackets, so a dict
 * literal may contain "}}" (jinja2 lexer.py balancing_stack).
 *
 * The grammar and precedences are jinja2's parser.py (parse_expression,
 * parse_or ... parse_unary, parse_postfix, parse_filter_expr): "|" filters
 * and "is" tests bind tighter than arithmetic, so `x|length - 1` is
 * `(x|length) - 1` and `not x is defined` is `not (x is defined)`.
 */
#include "text/jinja_int.h"

#include "vtok.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *jarena_alloc(jarena *a, size_t n, int *over)
{
    const size_t al = sizeof(max_align_t);
    n = (n + al - 1) / al * al;
    if (n == 0)
        n = al;
    jarena_blk *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > (size_t)(1 << 16) ? n : (size_t)(1 << 16);
        size_t hdr = (sizeof(jarena_blk) + al - 1) / al * al;
        if (a->total + cap + hdr > a->limit) {
            if (over)
                *over = 1;
            return NULL;
        }
        b = malloc(hdr + cap);
        if (!b) {
            if (over)
                *over = 0;
            return NULL;
        }
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        a->total += cap + hdr;
        b->used = 0;
        char *p = (char *)b + hdr;
        b->used = n;
        return p;
    }
    size_t hdr = (sizeof(jarena_blk) + al - 1) / al * al;
    char *p = (char *)b + hdr + b->used;
    b->used += n;
    return p;
}

void jarena_free(jarena *a)
{
    jarena_blk *b = a->head;
    while (b) {
        jarena_blk *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
    a->total = 0;
}

void jfail(jerr *e, int code, const char *fmt, ...)
{
    e->code = code;
    if (e->msg && e->msglen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, e->msglen, fmt, ap);
        va_end(ap);
    }
    longjmp(e->jb, 1);
}

/* ------------------------------------------------------------------ lexer */

enum { T_TEXT, T_BLOCK, T_BLOCK_END, T_VAR, T_VAR_END, T_NAME, T_STR, T_INT, T_FLOAT, T_OP, T_EOF };

typedef struct {
    int type, line, col;
    const char *s; /* text / name / op / decoded string */
    size_t n;
    int64_t i;
    double f;
} tok;

typedef struct {
    jarena *ar;
    jerr *e;
    const char *src;
    size_t len;
    tok *t;
    size_t nt, capt;
    size_t pos; /* parser cursor */
    int depth;
    size_t lc_off;
    int lc_line, lc_col;
    void **scratch;
} P;

static void *palloc(P *p, size_t n)
{
    int over = 0;
    void *r = jarena_alloc(p->ar, n, &over);
    if (!r)
        jfail(p->e, over ? VTOK_ELIMIT : VTOK_ENOMEM, "template too large to parse");
    return r;
}

static void linecol(P *p, size_t off, int *line, int *col)
{
    /* tokens arrive in source order: continue from the last position */
    int l = 1, c = 1;
    size_t i = 0;
    if (off >= p->lc_off) {
        i = p->lc_off;
        l = p->lc_line;
        c = p->lc_col;
    }
    for (; i < off && i < p->len; i++) {
        if (p->src[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    p->lc_off = i;
    p->lc_line = l;
    p->lc_col = c;
    *line = l;
    *col = c;
}

#if defined(__GNUC__)
__attribute__((noreturn))
#endif
static void lex_fail(P *p, size_t off, const char *what)
{
    int l, c;
    linecol(p, off, &l, &c);
    jfail(p->e, VTOK_EFORMAT, "line %d:%d: %s", l, c, what);
}

static tok *push(P *p, int type, size_t off)
{
    if (p->nt == p->capt) {
        /* tokens live outside the arena (t->scratch, freed after parsing) so
         * the doubling does not count against the AST's budget */
        size_t nc = p->capt ? p->capt * 2 : 256;
        tok *nt = realloc(p->t, nc * sizeof(tok));
        if (!nt)
            jfail(p->e, VTOK_ENOMEM, "out of memory parsing the template");
        p->t = nt;
        *p->scratch = nt;
        p->capt = nc;
    }
    tok *t = &p->t[p->nt++];
    memset(t, 0, sizeof(*t));
    t->type = type;
    linecol(p, off, &t->line, &t->col);
    return t;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
static int is_id0(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static int is_dig(char c)
{
    return c >= '0' && c <= '9';
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A string literal at src[*i] (the quote); Python escape rules: unknown
 * escapes keep the backslash (jinja2 decodes literals with Python's rules). */
static void lex_string(P *p, size_t *i)
{
    size_t start = *i;
    char q = p->src[*i];
    size_t j = *i + 1;
    char *o;
    size_t on = 0, ocap = 0;
    /* first pass: find the end, to size the output */
    size_t k = j;
    while (k < p->len && p->src[k] != q) {
        if (p->src[k] == '\\')
            k++;
        k++;
    }
    if (k >= p->len)
        lex_fail(p, start, "unterminated string literal");
    ocap = (k - j) * 2 + 1;
    o = palloc(p, ocap);
    while (j < k) {
        char c = p->src[j++];
        if (c != '\\') {
            o[on++] = c;
            continue;
        }
        char x = p->src[j++];
        switch (x) {
        case 'n': o[on++] = '\n'; break;
        case 't': o[on++] = '\t'; break;
        case 'r': o[on++] = '\r'; break;
        case 'b': o[on++] = '\b'; break;
        case 'f': o[on++] = '\f'; break;
        case 'v': o[on++] = '\v'; break;
        case '0': o[on++] = '\0'; break;
        case '\\': o[on++] = '\\'; break;
        case '\'': o[on++] = '\''; break;
        case '"': o[on++] = '"'; break;
        case '\n': break; /* line continuation */
        case 'x':
        case 'u': {
            int nd = x == 'x' ? 2 : 4;
            unsigned cp = 0;
            if (j + (size_t)nd > k)
                lex_fail(p, j, "bad escape in string literal");
            for (int d = 0; d < nd; d++) {
                int h = hexv(p->src[j + (size_t)d]);
                if (h < 0)
                    lex_fail(p, j, "bad escape in string literal");
                cp = cp * 16 + (unsigned)h;
            }
            j += (size_t)nd;
            if (cp >= 0xD800 && cp < 0xE000)
                lex_fail(p, j, "surrogate escape in string literal");
            on += put_utf8(o + on, cp);
            break;
        }
        default:
            o[on++] = '\\';
            o[on++] = x;
        }
    }
    o[on] = 0;
    tok *t = push(p, T_STR, start);
    t->s = o;
    t->n = on;
    *i = k + 1;
}

static const char *const OPS2[] = {"**", "//", "==", "!=", "<=", ">=", NULL};
static const char OPS1[] = "+-*/%~<>()[]{}.,:|=";

/* Tokens inside a tag until its end delimiter; returns the offset after it. */
static size_t lex_tag(P *p, size_t i, char kind, int *strip_after, int *keep_nl)
{
    int depth = 0;
    size_t open = i - 2;
    char endc = kind == '{' ? '}' : '%';
    for (;;) {
        while (i < p->len && is_ws(p->src[i]))
            i++;
        if (i >= p->len)
            lex_fail(p, open, kind == '{' ? "unterminated '{{'" : "unterminated '{%'");
        char c = p->src[i];
        if (depth == 0) {
            /* "-%}" / "+%}" / "%}" (or the "}}" forms) */
            size_t k = i;
            int mod = 0;
            if ((c == '-' || c == '+') && k + 2 < p->len && p->src[k + 1] == endc && p->src[k + 2] == '}') {
                mod = c;
                k++;
            }
            if (k + 1 < p->len && p->src[k] == endc && p->src[k + 1] == '}') {
                *strip_after = mod == '-';
                *keep_nl = mod == '+';
                push(p, kind == '{' ? T_VAR_END : T_BLOCK_END, i);
                return k + 2;
            }
        }
        if (is_id0(c)) {
            size_t s = i;
            while (i < p->len && (is_id0(p->src[i]) || is_dig(p->src[i])))
                i++;
            tok *t = push(p, T_NAME, s);
            char *nm = palloc(p, i - s + 1);
            memcpy(nm, p->src + s, i - s);
            nm[i - s] = 0;
            t->s = nm;
            t->n = i - s;
            continue;
        }
        if (is_dig(c)) {
            size_t s = i;
            int isf = 0;
            char buf[64];
            size_t bn = 0;
            while (i < p->len && (is_dig(p->src[i]) || p->src[i] == '_')) {
                if (p->src[i] != '_' && bn < sizeof(buf) - 1)
                    buf[bn++] = p->src[i];
                i++;
            }
            if (i + 1 < p->len && p->src[i] == '.' && is_dig(p->src[i + 1])) {
                isf = 1;
                buf[bn < sizeof(buf) - 1 ? bn++ : bn] = '.';
                i++;
                while (i < p->len && (is_dig(p->src[i]) || p->src[i] == '_')) {
                    if (p->src[i] != '_' && bn < sizeof(buf) - 1)
                        buf[bn++] = p->src[i];
                    i++;
                }
            }
            if (i < p->len && (p->src[i] == 'e' || p->src[i] == 'E')) {
                size_t k = i + 1;
                if (k < p->len && (p->src[k] == '+' || p->src[k] == '-'))
                    k++;
                if (k < p->len && is_dig(p->src[k])) {
                    isf = 1;
                    if (bn < sizeof(buf) - 1)
                        buf[bn++] = 'e';
                    for (size_t m = i + 1; m < k; m++)
                        if (bn < sizeof(buf) - 1)
                            buf[bn++] = p->src[m];
                    i = k;
                    while (i < p->len && is_dig(p->src[i])) {
                        if (bn < sizeof(buf) - 1)
                            buf[bn++] = p->src[i];
                        i++;
                    }
                }
            }
            if (bn >= sizeof(buf) - 1)
                lex_fail(p, s, "number literal too long");
            buf[bn] = 0;
            tok *t = push(p, isf ? T_FLOAT : T_INT, s);
            if (isf) {
                t->f = strtod(buf, NULL);
            } else {
                errno = 0;
                t->i = strtoll(buf, NULL, 10);
                if (errno == ERANGE)
                    lex_fail(p, s, "integer literal too large");
            }
            continue;
        }
        if (c == '\'' || c == '"') {
            lex_string(p, &i);
            continue;
        }
        int matched = 0;
        for (int k = 0; OPS2[k]; k++) {
            if (i + 1 < p->len && p->src[i] == OPS2[k][0] && p->src[i + 1] == OPS2[k][1]) {
                tok *t = push(p, T_OP, i);
                t->s = OPS2[k];
                t->n = 2;
                i += 2;
                matched = 1;
                break;
            }
        }
        if (matched)
            continue;
        const char *o = strchr(OPS1, c);
        if (o && c) {
            if (c == '(' || c == '[' || c == '{')
                depth++;
            else if ((c == ')' || c == ']' || c == '}') && depth > 0)
                depth--;
            tok *t = push(p, T_OP, i);
            t->s = o;
            t->n = 1;
            i++;
            continue;
        }
        lex_fail(p, i, "unexpected character in tag");
    }
}

static void lex(P *p)
{
    size_t i = 0;
    int strip_next = 0, trim_nl = 0;
    while (i < p->len) {
        /* text up to the next tag opener */
        size_t j = i;
        while (j + 1 < p->len &&
               !(p->src[j] == '{' && (p->src[j + 1] == '{' || p->src[j + 1] == '%' || p->src[j + 1] == '#')))
            j++;
        if (j + 1 >= p->len)
            j = p->len;
        size_t ts = i, te = j;
        if (strip_next) {
            while (ts < te && is_ws(p->src[ts]))
                ts++;
        } else if (trim_nl && ts < te && p->src[ts] == '\n') {
            ts++;
        }
        strip_next = trim_nl = 0;
        if (j < p->len) {
            char kind = p->src[j + 1];
            char mod = j + 2 < p->len ? p->src[j + 2] : 0;
            if (mod == '-') {
                while (te > ts && is_ws(p->src[te - 1]))
                    te--;
            } else if (mod != '+' && kind != '{') {
                /* lstrip_blocks: only whitespace other than newlines between a
                 * line start and the tag (jinja2 lexer.py lstrip_unless_re) */
                size_t k = te;
                while (k > ts && p->src[k - 1] != '\n' && is_ws(p->src[k - 1]))
                    k--;
                if ((k > ts && p->src[k - 1] == '\n') || (k == ts && (k == 0 || p->src[k - 1] == '\n')))
                    te = k;
            }
        }
        if (te > ts) {
            tok *t = push(p, T_TEXT, ts);
            t->s = p->src + ts;
            t->n = te - ts;
        }
        if (j >= p->len)
            break;
        char kind = p->src[j + 1];
        i = j + 2;
        if (i < p->len && (p->src[i] == '-' || p->src[i] == '+'))
            i++;
        int sa = 0, kn = 0;
        if (kind == '#') {
            size_t k = i;
            while (k + 1 < p->len && !(p->src[k] == '#' && p->src[k + 1] == '}'))
                k++;
            if (k + 1 >= p->len)
                lex_fail(p, j, "unterminated comment");
            sa = k > i && p->src[k - 1] == '-';
            kn = k > i && p->src[k - 1] == '+';
            i = k + 2;
            strip_next = sa;
            trim_nl = !kn;
            continue;
        }
        push(p, kind == '{' ? T_VAR : T_BLOCK, j);
        i = lex_tag(p, i, kind, &sa, &kn);
        strip_next = sa;
        trim_nl = kind == '%' && !kn;
    }
    push(p, T_EOF, p->len);
}

/* ----------------------------------------------------------------- parser */

static tok *cur(P *p)
{
    return &p->t[p->pos];
}
static int is_op(const tok *t, const char *op)
{
    return t->type == T_OP && strlen(op) == t->n && memcmp(t->s, op, t->n) == 0;
}
static int is_name(const tok *t, const char *nm)
{
    return t->type == T_NAME && strcmp(t->s, nm) == 0;
}

#if defined(__GNUC__)
__attribute__((noreturn))
#endif
static void perr(P *p, const tok *t, const char *what)
{
    const char *got = t->type == T_EOF ? "end of template"
                      : t->type == T_BLOCK_END ? "'%}'"
                      : t->type == T_VAR_END ? "'}}'"
                      : t->type == T_NAME || t->type == T_OP ? t->s
                      : t->type == T_STR ? "a string"
                      : t->type == T_TEXT ? "text"
                      : "a number";
    if (t->type == T_NAME || t->type == T_OP)
        jfail(p->e, VTOK_EFORMAT, "line %d:%d: %s, got '%.*s'", t->line, t->col, what, (int)t->n, got);
    jfail(p->e, VTOK_EFORMAT, "line %d:%d: %s, got %s", t->line, t->col, what, got);
}

static void expect_op(P *p, const char *op)
{
    if (!is_op(cur(p), op)) {
        char w[48];
        snprintf(w, sizeof(w), "expected '%s'", op);
        perr(p, cur(p), w);
    }
    p->pos++;
}

static const char *expect_name(P *p)
{
    if (cur(p)->type != T_NAME)
        perr(p, cur(p), "expected a name");
    return p->t[p->pos++].s;
}

static void enter(P *p)
{
    if (++p->depth > VT_JINJA_MAX_DEPTH)
        jfail(p->e, VTOK_ELIMIT, "line %d:%d: template nested deeper than %d", cur(p)->line, cur(p)->col,
              VT_JINJA_MAX_DEPTH);
}

static jx *node(P *p, int kind, const tok *at)
{
    jx *x = palloc(p, sizeof(jx));
    memset(x, 0, sizeof(*x));
    x->kind = kind;
    x->line = at->line;
    x->col = at->col;
    return x;
}

/* growable pointer vector in the arena */
typedef struct {
    void **v;
    int n, cap;
} pvec;
static void pv_push(P *p, pvec *v, void *x)
{
    if (v->n == v->cap) {
        int nc = v->cap ? v->cap * 2 : 4;
        void **nv = palloc(p, (size_t)nc * sizeof(void *));
        if (v->n)
            memcpy(nv, v->v, (size_t)v->n * sizeof(void *));
        v->v = nv;
        v->cap = nc;
    }
    v->v[v->n++] = x;
}

static jx *parse_expr(P *p, int condexpr);
static jx *parse_unary(P *p, int with_filter);
static jx *parse_primary(P *p);
static jx *parse_postfix(P *p, jx *x);

/* Arguments of a call "(a, b, k=v)"; cursor after "(". */
static void parse_args(P *p, jx *x)
{
    pvec pos = {0}, kw = {0}, kwn = {0};
    while (!is_op(cur(p), ")")) {
        if (pos.n + kw.n > 0)
            expect_op(p, ",");
        if (is_op(cur(p), ")"))
            break;
        if (cur(p)->type == T_NAME && is_op(&p->t[p->pos + 1], "=")) {
            pv_push(p, &kwn, (void *)cur(p)->s);
            p->pos += 2;
            pv_push(p, &kw, parse_expr(p, 1));
        } else {
            if (kw.n)
                perr(p, cur(p), "positional argument after keyword argument");
            pv_push(p, &pos, parse_expr(p, 1));
        }
    }
    p->pos++;
    x->nargs = pos.n + kw.n;
    x->nkw = kw.n;
    x->args = palloc(p, (size_t)(x->nargs ? x->nargs : 1) * sizeof(jx *));
    for (int i = 0; i < pos.n; i++)
        x->args[i] = pos.v[i];
    for (int i = 0; i < kw.n; i++)
        x->args[pos.n + i] = kw.v[i];
    x->kwn = (const char **)kwn.v;
}

static jx *parse_filter_expr(P *p, jx *x)
{
    for (;;) {
        tok *t = cur(p);
        if (is_op(t, "|")) {
            p->pos++;
            tok *nt = cur(p);
            const char *nm = expect_name(p);
            jx *f = node(p, E_FILTER, nt);
            f->name = nm;
            f->a = x;
            if (is_op(cur(p), "(")) {
                p->pos++;
                parse_args(p, f);
            }
            x = f;
        } else if (is_name(t, "is")) {
            p->pos++;
            int neg = 0;
            if (is_name(cur(p), "not")) {
                neg = 1;
                p->pos++;
            }
            tok *nt = cur(p);
            const char *nm;
            /* "is none" / "is true" etc. arrive as names; "is ==" not supported */
            nm = expect_name(p);
            jx *f = node(p, E_TEST, nt);
            f->name = nm;
            f->a = x;
            f->op = neg;
            tok *c = cur(p);
            if (is_op(c, "(")) {
                p->pos++;
                parse_args(p, f);
            } else if (c->type == T_STR || c->type == T_INT || c->type == T_FLOAT ||
                       (c->type == T_NAME && !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and") &&
                        !is_name(c, "if") && !is_name(c, "in") && !is_name(c, "is") && !is_name(c, "not")) ||
                       is_op(c, "[") || is_op(c, "{")) {
                /* one argument without parentheses (jinja2 parser.py parse_test) */
                f->args = palloc(p, sizeof(jx *));
                f->args[0] = parse_postfix(p, parse_primary(p));
                f->nargs = 1;
            }
            x = f;
        } else if (is_op(t, "(")) {
            p->pos++;
            jx *c = node(p, E_CALL, t);
            c->a = x;
            parse_args(p, c);
            x = c;
        } else {
            return x;
        }
    }
}

static jx *parse_postfix(P *p, jx *x)
{
    for (;;) {
        tok *t = cur(p);
        if (is_op(t, ".")) {
            p->pos++;
            tok *nt = cur(p);
            if (nt->type == T_INT) {
                /* x.0 is x[0] */
                jx *k = node(p, E_LIT, nt);
                k->lit = L_INT;
                k->i = nt->i;
                p->pos++;
                jx *it = node(p, E_ITEM, t);
                it->a = x;
                it->b = k;
                x = it;
                continue;
            }
            jx *a = node(p, E_ATTR, t);
            a->name = expect_name(p);
            a->a = x;
            x = a;
        } else if (is_op(t, "[")) {
            p->pos++;
            jx *parts[3] = {NULL, NULL, NULL};
            int np = 0, slice = 0;
            for (;;) {
                if (is_op(cur(p), ":")) {
                    slice = 1;
                    p->pos++;
                    if (++np > 2)
                        perr(p, cur(p), "bad slice");
                    continue;
                }
                if (is_op(cur(p), "]"))
                    break;
                if (parts[np])
                    perr(p, cur(p), "expected ']'");
                parts[np] = parse_expr(p, 1);
            }
            p->pos++;
            if (!slice) {
                if (!parts[0])
                    perr(p, t, "empty subscript");
                jx *it = node(p, E_ITEM, t);
                it->a = x;
                it->b = parts[0];
                x = it;
            } else {
                jx *s = node(p, E_SLICE, t);
                s->a = x;
                s->b = parts[0];
                s->c = parts[1];
                s->args = palloc(p, sizeof(jx *));
                s->args[0] = parts[2];
                s->nargs = 1;
                x = s;
            }
        } else if (is_op(t, "(")) {
            p->pos++;
            jx *c = node(p, E_CALL, t);
            c->a = x;
            parse_args(p, c);
            x = c;
        } else {
            return x;
        }
    }
}

static jx *parse_primary(P *p)
{
    tok *t = cur(p);
    enter(p);
    jx *x = NULL;
    if (t->type == T_NAME) {
        p->pos++;
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True") || !strcmp(t->s, "false") ||
            !strcmp(t->s, "False")) {
            x = node(p, E_LIT, t);
            x->lit = L_BOOL;
            x->i = t->s[0] == 't' || t->s[0] == 'T';
        } else if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) {
            x = node(p, E_LIT, t);
            x->lit = L_NONE;
        } else {
            x = node(p, E_NAME, t);
            x->name = t->s;
        }
    } else if (t->type == T_STR) {
        /* adjacent literals concatenate */
        size_t n = 0, k = p->pos;
        while (p->t[k].type == T_STR)
            n += p->t[k++].n;
        char *s = palloc(p, n + 1);
        n = 0;
        while (cur(p)->type == T_STR) {
            memcpy(s + n, cur(p)->s, cur(p)->n);
            n += cur(p)->n;
            p->pos++;
        }
        s[n] = 0;
        x = node(p, E_LIT, t);
        x->lit = L_STR;
        x->s = s;
        x->n = n;
    } else if (t->type == T_INT || t->type == T_FLOAT) {
        p->pos++;
        x = node(p, E_LIT, t);
        x->lit = t->type == T_INT ? L_INT : L_FLOAT;
        x->i = t->i;
        x->f = t->f;
    } else if (is_op(t, "(")) {
        p->pos++;
        if (is_op(cur(p), ")")) {
            p->pos++;
            x = node(p, E_TUPLE, t);
        } else {
            jx *first = parse_expr(p, 1);
            if (is_op(cur(p), ",")) {
                pvec v = {0};
                pv_push(p, &v, first);
                while (is_op(cur(p), ",")) {
                    p->pos++;
                    if (is_op(cur(p), ")"))
                        break;
                    pv_push(p, &v, parse_expr(p, 1));
                }
                x = node(p, E_TUPLE, t);
                x->args = (jx **)v.v;
                x->nargs = v.n;
            } else {
                x = first;
            }
            expect_op(p, ")");
        }
    } else if (is_op(t, "[")) {
        p->pos++;
        pvec v = {0};
        while (!is_op(cur(p), "]")) {
            if (v.n)
                expect_op(p, ",");
            if (is_op(cur(p), "]"))
                break;
            pv_push(p, &v, parse_expr(p, 1));
        }
        p->pos++;
        x = node(p, E_LIST, t);
        x->args = (jx **)v.v;
        x->nargs = v.n;
    } else if (is_op(t, "{")) {
        p->pos++;
        pvec v = {0};
        while (!is_op(cur(p), "}")) {
            if (v.n)
                expect_op(p, ",");
            if (is_op(cur(p), "}"))
                break;
            pv_push(p, &v, parse_expr(p, 1));
            expect_op(p, ":");
            pv_push(p, &v, parse_expr(p, 1));
        }
        p->pos++;
        x = node(p, E_DICT, t);
        x->args = (jx **)v.v;
        x->nargs = v.n;
    } else {
        perr(p, t, "expected an expression");
    }
    p->depth--;
    return x;
}

static jx *parse_unary(P *p, int with_filter)
{
    tok *t = cur(p);
    jx *x;
    enter(p);
    if (is_op(t, "-") || is_op(t, "+")) {
        p->pos++;
        x = node(p, t->s[0] == '-' ? E_NEG : E_POS, t);
        x->a = parse_unary(p, 0);
    } else {
        x = parse_postfix(p, parse_primary(p));
    }
    if (with_filter)
        x = parse_filter_expr(p, x);
    p->depth--;
    return x;
}

static jx *bin(P *p, int op, const tok *at, jx *l, jx *r)
{
    jx *x = node(p, E_BIN, at);
    x->op = op;
    x->a = l;
    x->b = r;
    return x;
}

static jx *parse_pow(P *p)
{
    jx *x = parse_unary(p, 1);
    while (is_op(cur(p), "**")) {
        tok *t = &p->t[p->pos++];
        x = bin(p, OP_POW, t, x, parse_unary(p, 1));
    }
    return x;
}

static jx *parse_math2(P *p)
{
    jx *x = parse_pow(p);
    for (;;) {
        tok *t = cur(p);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FDIV
                 : is_op(t, "%") ? OP_MOD : -1;
        if (op < 0)
            return x;
        p->pos++;
        x = bin(p, op, t, x, parse_pow(p));
    }
}

static jx *parse_concat(P *p)
{
    jx *x = parse_math2(p);
    while (is_op(cur(p), "~")) {
        tok *t = &p->t[p->pos++];
        x = bin(p, OP_CONCAT, t, x, parse_math2(p));
    }
    return x;
}

static jx *parse_math1(P *p)
{
    jx *x = parse_concat(p);
    for (;;) {
        tok *t = cur(p);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : -1;
        if (op < 0)
            return x;
        p->pos++;
        x = bin(p, op, t, x, parse_concat(p));
    }
}

static jx *parse_compare(P *p)
{
    jx *x = parse_math1(p);
    for (;;) {
        tok *t = cur(p);
        int op = is_op(t, "==") ? OP_EQ : is_op(t, "!=") ? OP_NE : is_op(t, "<") ? OP_LT
                 : is_op(t, "<=") ? OP_LE : is_op(t, ">") ? OP_GT : is_op(t, ">=") ? OP_GE
                 : is_name(t, "in") ? OP_IN : -1;
        if (op < 0 && is_name(t, "not") && is_name(&p->t[p->pos + 1], "in")) {
            op = OP_NOTIN;
            p->pos++;
        }
        if (op < 0)
            return x;
        p->pos++;
        x = bin(p, op, t, x, parse_math1(p));
    }
}

static jx *parse_not(P *p)
{
    tok *t = cur(p);
    if (is_name(t, "not")) {
        p->pos++;
        enter(p);
        jx *x = node(p, E_NOT, t);
        x->a = parse_not(p);
        p->depth--;
        return x;
    }
    return parse_compare(p);
}

static jx *parse_and(P *p)
{
    jx *x = parse_not(p);
    while (is_name(cur(p), "and")) {
        tok *t = &p->t[p->pos++];
        jx *y = node(p, E_AND, t);
        y->a = x;
        y->b = parse_not(p);
        x = y;
    }
    return x;
}

static jx *parse_or(P *p)
{
    jx *x = parse_and(p);
    while (is_name(cur(p), "or")) {
        tok *t = &p->t[p->pos++];
        jx *y = node(p, E_OR, t);
        y->a = x;
        y->b = parse_and(p);
        x = y;
    }
    return x;
}

static jx *parse_expr(P *p, int condexpr)
{
    enter(p);
    jx *x = parse_or(p);
    while (condexpr && is_name(cur(p), "if")) {
        tok *t = &p->t[p->pos++];
        jx *c = node(p, E_COND, t);
        c->a = x;
        c->b = parse_or(p);
        if (is_name(cur(p), "else")) {
            p->pos++;
            c->c = parse_expr(p, 1);
        }
        x = c;
    }
    p->depth--;
    return x;
}

/* An expression that may be a bare tuple "a, b" (jinja2 parse_tuple). */
static jx *parse_tuple_expr(P *p, int condexpr)
{
    tok *t = cur(p);
    jx *first = parse_expr(p, condexpr);
    if (!is_op(cur(p), ","))
        return first;
    pvec v = {0};
    pv_push(p, &v, first);
    while (is_op(cur(p), ",")) {
        p->pos++;
        if (cur(p)->type == T_BLOCK_END || cur(p)->type == T_VAR_END)
            break;
        pv_push(p, &v, parse_expr(p, condexpr));
    }
    jx *x = node(p, E_TUPLE, t);
    x->args = (jx **)v.v;
    x->nargs = v.n;
    return x;
}

/* --------------------------------------------------------------- statements */

static js *snode(P *p, int kind, const tok *at)
{
    js *s = palloc(p, sizeof(js));
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    s->line = at->line;
    s->col = at->col;
    return s;
}

static void expect_block_end(P *p)
{
    if (cur(p)->type != T_BLOCK_END)
        perr(p, cur(p), "expected '%}'");
    p->pos++;
}

/* Statements until a "{% name" with name in ends (NULL-terminated) or EOF
 * (only allowed when ends is NULL). Returns the index of the end name found,
 * leaving the cursor after it; -1 at EOF. */
static int parse_body(P *p, const char *const *ends, pvec *out, const tok *opener, const char *what);

static js *parse_stmt(P *p, pvec *out_body);

static int parse_body(P *p, const char *const *ends, pvec *out, const tok *opener, const char *what)
{
    for (;;) {
        tok *t = cur(p);
        if (t->type == T_EOF) {
            if (!ends)
                return -1;
            char w[96];
            snprintf(w, sizeof(w), "line %d:%d: unterminated '%s' block", opener->line, opener->col, what);
            jfail(p->e, VTOK_EFORMAT, "%s (end of template reached)", w);
        }
        if (t->type == T_BLOCK && ends) {
            tok *nm = &p->t[p->pos + 1];
            for (int k = 0; ends[k]; k++) {
                if (is_name(nm, ends[k])) {
                    p->pos += 2;
                    return k;
                }
            }
        }
        js *s = parse_stmt(p, out);
        if (s)
            pv_push(p, out, s);
    }
}

static const char *const END_IF[] = {"elif", "else", "endif", NULL};
static const char *const END_ENDIF[] = {"endif", NULL};
static const char *const END_FOR[] = {"else", "endfor", NULL};
static const char *const END_ENDFOR[] = {"endfor", NULL};
static const char *const END_SET[] = {"endset", NULL};
static const char *const END_MACRO[] = {"endmacro", NULL};

static js *parse_if(P *p, const tok *at)
{
    js *s = snode(p, S_IF, at);
    s->e = parse_expr(p, 1);
    expect_block_end(p);
    pvec body = {0}, els = {0};
    int k = parse_body(p, END_IF, &body, at, "if");
    s->body = (js **)body.v;
    s->nbody = body.n;
    if (k == 0) {
        tok *et = &p->t[p->pos - 1];
        enter(p);
        pv_push(p, &els, parse_if(p, et)); /* consumes through endif */
        p->depth--;
        s->els = (js **)els.v;
        s->nels = els.n;
        return s;
    }
    if (k == 1) {
        expect_block_end(p);
        parse_body(p, END_ENDIF, &els, at, "if");
        s->els = (js **)els.v;
        s->nels = els.n;
    }
    expect_block_end(p);
    return s;
}

static js *parse_stmt(P *p, pvec *out_body)
{
    (void)out_body;
    tok *t = cur(p);
    if (t->type == T_TEXT) {
        p->pos++;
        js *s = snode(p, S_TEXT, t);
        s->s = t->s;
        s->n = t->n;
        return s;
    }
    if (t->type == T_VAR) {
        p->pos++;
        js *s = snode(p, S_OUT, t);
        s->e = parse_tuple_expr(p, 1);
        if (cur(p)->type != T_VAR_END)
            perr(p, cur(p), "expected '}}'");
        p->pos++;
        return s;
    }
    if (t->type != T_BLOCK)
        perr(p, t, "unexpected token");
    p->pos++;
    tok *kw = cur(p);
    if (kw->type != T_NAME)
        perr(p, kw, "expected a statement name");
    p->pos++;
    enter(p);
    js *s = NULL;
    if (!strcmp(kw->s, "if")) {
        s = parse_if(p, kw);
    } else if (!strcmp(kw->s, "for")) {
        s = snode(p, S_FOR, kw);
        pvec names = {0};
        for (;;) {
            pv_push(p, &names, (void *)expect_name(p));
            if (!is_op(cur(p), ","))
                break;
            p->pos++;
        }
        if (!is_name(cur(p), "in"))
            perr(p, cur(p), "expected 'in'");
        p->pos++;
        s->names = (const char **)names.v;
        s->nnames = names.n;
        s->e = parse_tuple_expr(p, 0);
        if (is_name(cur(p), "if")) {
            p->pos++;
            s->e2 = parse_expr(p, 1);
        }
        if (is_name(cur(p), "recursive"))
            jfail(p->e, VTOK_EUNSUPPORTED, "line %d:%d: recursive for loops are not supported", cur(p)->line,
                  cur(p)->col);
        expect_block_end(p);
        pvec body = {0}, els = {0};
        int k = parse_body(p, END_FOR, &body, kw, "for");
        if (k == 0) {
            expect_block_end(p);
            parse_body(p, END_ENDFOR, &els, kw, "for");
        }
        expect_block_end(p);
        s->body = (js **)body.v;
        s->nbody = body.n;
        s->els = (js **)els.v;
        s->nels = els.n;
    } else if (!strcmp(kw->s, "set")) {
        const char *nm = expect_name(p);
        const char *attr = NULL;
        if (is_op(cur(p), ".")) {
            p->pos++;
            attr = expect_name(p);
        }
        const char **names = palloc(p, 2 * sizeof(char *));
        names[0] = nm;
        names[1] = attr;
        if (is_op(cur(p), ",")) {
            jfail(p->e, VTOK_EUNSUPPORTED, "line %d:%d: tuple assignment in set is not supported", cur(p)->line,
                  cur(p)->col);
        }
        if (is_op(cur(p), "=")) {
            p->pos++;
            s = snode(p, S_SET, kw);
            s->e = parse_tuple_expr(p, 1);
            expect_block_end(p);
        } else {
            if (attr)
                perr(p, cur(p), "expected '='");
            s = snode(p, S_SETBLOCK, kw);
            expect_block_end(p);
            pvec body = {0};
            parse_body(p, END_SET, &body, kw, "set");
            expect_block_end(p);
            s->body = (js **)body.v;
            s->nbody = body.n;
        }
        s->names = names;
        s->nnames = attr ? 2 : 1;
    } else if (!strcmp(kw->s, "macro")) {
        s = snode(p, S_MACRO, kw);
        pvec names = {0}, defs = {0};
        pv_push(p, &names, (void *)expect_name(p));
        pv_push(p, &defs, NULL);
        expect_op(p, "(");
        while (!is_op(cur(p), ")")) {
            if (names.n > 1)
                expect_op(p, ",");
            if (is_op(cur(p), ")"))
                break;
            pv_push(p, &names, (void *)expect_name(p));
            if (is_op(cur(p), "=")) {
                p->pos++;
                pv_push(p, &defs, parse_expr(p, 1));
            } else {
                pv_push(p, &defs, NULL);
            }
        }
        p->pos++;
        expect_block_end(p);
        pvec body = {0};
        parse_body(p, END_MACRO, &body, kw, "macro");
        if (cur(p)->type == T_NAME)
            p->pos++; /* {% endmacro name %} */
        expect_block_end(p);
        s->names = (const char **)names.v;
        s->nnames = names.n;
        s->defs = (jx **)defs.v;
        s->body = (js **)body.v;
        s->nbody = body.n;
    } else if (!strcmp(kw->s, "break") || !strcmp(kw->s, "continue")) {
        s = snode(p, kw->s[0] == 'b' ? S_BREAK : S_CONTINUE, kw);
        expect_block_end(p);
    } else if (!strcmp(kw->s, "generation") || !strcmp(kw->s, "endgeneration")) {
        /* transformers' assistant-mask marker: renders nothing
         * (@huggingface/jinja src/lexer.ts:179-195 drops it too) */
        expect_block_end(p);
    } else if (!strcmp(kw->s, "elif") || !strcmp(kw->s, "else") || !strncmp(kw->s, "end", 3)) {
        jfail(p->e, VTOK_EFORMAT, "line %d:%d: unexpected '%s'", kw->line, kw->col, kw->s);
    } else {
        jfail(p->e, VTOK_EUNSUPPORTED, "line %d:%d: the '%s' statement is not supported", kw->line, kw->col,
              kw->s);
    }
    p->depth--;
    return s;
}

void jinja_parse_into(struct vt_jinja *t, const char *src, size_t len, jerr *e)
{
    P p;
    memset(&p, 0, sizeof(p));
    p.ar = &t->arena;
    p.e = e;
    p.scratch = &t->scratch;
    /* jinja2 splits the source on \r\n, \r and \n and joins the lines with
     * \n before lexing (lexer.py Lexer.tokeniter, newline_re), dropping a
     * final empty line (keep_trailing_newline=False; @huggingface/jinja
     * lexer.ts:162 drops the final \n but keeps \r) */
    char *copy = palloc(&p, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            copy[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            copy[n++] = src[i];
        }
    }
    if (n && copy[n - 1] == '\n')
        n--;
    copy[n] = 0;
    len = n;
    p.src = copy;
    p.len = len;
    p.lc_line = p.lc_col = 1;
    lex(&p);
    pvec body = {0};
    parse_body(&p, NULL, &body, NULL, NULL);
    t->body = (js **)body.v;
    t->nbody = body.n;
}
