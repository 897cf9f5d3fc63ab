/*
 * jinja.c - the renderer of the Jinja subset: scopes, expressions, filters,
 * tests, methods, statements and the public entry points (see jinja.h;
 * parsing is jinja_parse.c, values and their text forms jinja_value.c).
 *
 * Semantics follow Python jinja2 as transformers runs it (an
 * ImmutableSandboxedEnvironment, so nothing mutates lists or dicts except
 * `{% set ns.attr = ... %}` on a namespace). Where @huggingface/jinja
 * differs from Python (printing booleans, None and lists; string + number),
 * this follows Python, which is what transformers renders; docs/TEMPLATES.md
 * lists the cases.
 *
 * Values live in a per-render arena (capped by VT_JINJA_MAX_MEMORY); strings
 * taken from the context point into the caller's cJSON and are never copied.
 * Errors longjmp back to vt_jinja_render, which frees the arena and output.
 */
#include "text/jinja_int.h"

#include "vtok.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --------------------------------------------------------------- output */

static void out_put(R *r, const char *s, size_t n)
{
    if (r->on + n + 1 > r->ocap) {
        if (r->on + n + 1 > VT_JINJA_MAX_OUTPUT)
            jn_rfail(r, VTOK_ELIMIT, "rendered text exceeds %zu MiB", VT_JINJA_MAX_OUTPUT >> 20);
        size_t nc = r->ocap ? r->ocap * 2 : 1024;
        while (nc < r->on + n + 1)
            nc *= 2;
        if (nc > VT_JINJA_MAX_OUTPUT)
            nc = VT_JINJA_MAX_OUTPUT;
        char *np = realloc(r->out, nc);
        if (!np)
            jn_rfail(r, VTOK_ENOMEM, "out of memory rendering the template");
        r->out = np;
        r->ocap = nc;
    }
    memcpy(r->out + r->on, s, n);
    r->on += n;
}

/* ------------------------------------------------------------- variables */

static jframe *frame_new(R *r, jframe *parent)
{
    jframe *f = jn_ralloc(r, sizeof(jframe));
    memset(f, 0, sizeof(*f));
    f->parent = parent;
    return f;
}

static void frame_set(R *r, jframe *f, const char *name, jv v)
{
    for (size_t i = 0; i < f->n; i++) {
        if (!strcmp(f->names[i], name)) {
            f->vals[i] = v;
            return;
        }
    }
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 8;
        const char **nn = jn_ralloc(r, nc * sizeof(char *));
        jv *nv = jn_ralloc(r, nc * sizeof(jv));
        if (f->n) {
            memcpy(nn, f->names, f->n * sizeof(char *));
            memcpy(nv, f->vals, f->n * sizeof(jv));
        }
        f->names = nn;
        f->vals = nv;
        f->cap = nc;
    }
    f->names[f->n] = name;
    f->vals[f->n] = v;
    f->n++;
}

static jv lookup(R *r, jframe *f, const char *name)
{
    for (; f; f = f->parent)
        for (size_t i = 0; i < f->n; i++)
            if (!strcmp(f->names[i], name))
                return f->vals[i];
    jv *c = r->ctx ? jn_dict_find_s(r->ctx, name, strlen(name)) : NULL;
    if (c)
        return *c;
    static const char *const fns[] = {"range", "namespace", "raise_exception", "strftime_now", "dict", NULL};
    for (int i = 0; fns[i]; i++) {
        if (!strcmp(fns[i], name)) {
            jv v = {V_FUNC, 0, {0}};
            v.u.fn = i;
            return v;
        }
    }
    return mk_undef(name);
}

/* ------------------------------------------------------------ evaluation */

static jv eval(R *r, jframe *f, const jx *x);
static void exec_body(R *r, jframe *f, js *const *body, int n);

static void at(R *r, const jx *x)
{
    r->line = x->line;
    r->col = x->col;
}

/* the items a for loop or a filter walks over */
static jlist *iter_items(R *r, const jv *v)
{
    switch (v->t) {
    case V_UNDEF:
        return jn_list_new(r, 1);
    case V_LIST:
        return v->u.l;
    case V_DICT:
    case V_NS: {
        jlist *l = jn_list_new(r, v->u.d->n);
        for (size_t i = 0; i < v->u.d->n; i++)
            jn_list_push(r, l, v->u.d->k[i]);
        return l;
    }
    case V_STR: {
        jlist *l = jn_list_new(r, v->u.s.n);
        size_t i = 0;
        while (i < v->u.s.n) {
            size_t s = i;
            jn_cp_next(v->u.s.p, v->u.s.n, &i);
            jn_list_push(r, l, mk_str(v->u.s.p + s, i - s));
        }
        return l;
    }
    default:
        jn_rfail(r, VTOK_EINVAL, "'%s' object is not iterable", jn_type_name(v));
    }
}

static jv method(R *r, jv self, const char *name)
{
    jmeth *m = jn_ralloc(r, sizeof(jmeth));
    m->self = self;
    m->name = name;
    jv v = {V_METHOD, 0, {0}};
    v.u.m = m;
    return v;
}

static int is_str_method(const char *n)
{
    static const char *const ms[] = {"startswith", "endswith", "strip", "lstrip", "rstrip", "split", "replace",
                                     "upper", "lower", "title", "capitalize", "join", "find", "count", NULL};
    for (int i = 0; ms[i]; i++)
        if (!strcmp(ms[i], n))
            return 1;
    return 0;
}
static int is_dict_method(const char *n)
{
    return !strcmp(n, "items") || !strcmp(n, "keys") || !strcmp(n, "values") || !strcmp(n, "get");
}

static jv loop_attr(R *r, const jloop *lp, const char *name)
{
    size_t i = lp->i, n = lp->n;
    if (!strcmp(name, "index0"))
        return mk_int((int64_t)i);
    if (!strcmp(name, "index"))
        return mk_int((int64_t)i + 1);
    if (!strcmp(name, "revindex"))
        return mk_int((int64_t)(n - i));
    if (!strcmp(name, "revindex0"))
        return mk_int((int64_t)(n - i - 1));
    if (!strcmp(name, "first"))
        return mk_bool(i == 0);
    if (!strcmp(name, "last"))
        return mk_bool(i + 1 == n);
    if (!strcmp(name, "length"))
        return mk_int((int64_t)n);
    if (!strcmp(name, "previtem"))
        return i > 0 ? lp->items->v[i - 1] : mk_undef("previtem");
    if (!strcmp(name, "nextitem"))
        return i + 1 < n ? lp->items->v[i + 1] : mk_undef("nextitem");
    if (!strcmp(name, "depth"))
        return mk_int(1);
    if (!strcmp(name, "depth0"))
        return mk_int(0);
    (void)r;
    return mk_undef(name);
}

/* x.name: jinja2 Environment.getattr tries the attribute, then the item */
static jv get_attr(R *r, const jv *o, const char *name)
{
    switch (o->t) {
    case V_UNDEF:
        if (o->u.s.p)
            jn_rfail(r, VTOK_EINVAL, "'%s' is undefined (reading its attribute '%s')", o->u.s.p, name);
        jn_rfail(r, VTOK_EINVAL, "undefined value has no attribute '%s'", name);
    case V_DICT: {
        if (is_dict_method(name))
            return method(r, *o, name);
        jv *v = jn_dict_find_s(o->u.d, name, strlen(name));
        return v ? *v : mk_undef(name);
    }
    case V_NS: {
        jv *v = jn_dict_find_s(o->u.d, name, strlen(name));
        return v ? *v : mk_undef(name);
    }
    case V_STR:
        return is_str_method(name) ? method(r, *o, name) : mk_undef(name);
    case V_LOOP:
        return loop_attr(r, o->u.lp, name);
    default:
        return mk_undef(name);
    }
}

static int64_t norm_index(int64_t i, size_t n, int *ok)
{
    if (i < 0)
        i += (int64_t)n;
    *ok = i >= 0 && (uint64_t)i < n;
    return i;
}

/* x[k]: item first, then attribute (jinja2 Environment.getitem) */
static jv get_item(R *r, const jv *o, const jv *k)
{
    int ok;
    switch (o->t) {
    case V_UNDEF:
        if (o->u.s.p)
            jn_rfail(r, VTOK_EINVAL, "'%s' is undefined (subscripting it)", o->u.s.p);
        jn_rfail(r, VTOK_EINVAL, "an undefined value was subscripted");
    case V_LIST:
        if (k->t == V_INT || k->t == V_BOOL) {
            int64_t i = norm_index(k->u.i, o->u.l->n, &ok);
            return ok ? o->u.l->v[i] : mk_undef(NULL);
        }
        return mk_undef(NULL);
    case V_STR:
        if (k->t == V_INT || k->t == V_BOOL) {
            size_t n = jn_cp_len(o->u.s.p, o->u.s.n);
            int64_t i = norm_index(k->u.i, n, &ok);
            if (!ok)
                return mk_undef(NULL);
            size_t a = jn_cp_off(o->u.s.p, o->u.s.n, (size_t)i);
            size_t b = a;
            jn_cp_next(o->u.s.p, o->u.s.n, &b);
            return mk_str(o->u.s.p + a, b - a);
        }
        return k->t == V_STR ? get_attr(r, o, k->u.s.p) : mk_undef(NULL);
    case V_DICT:
    case V_NS: {
        jv *v = jn_dict_find(o->u.d, k);
        if (v)
            return *v;
        if (k->t == V_STR && o->t == V_DICT && is_dict_method(k->u.s.p))
            return method(r, *o, k->u.s.p);
        return mk_undef(k->t == V_STR ? k->u.s.p : NULL);
    }
    case V_LOOP:
        return k->t == V_STR ? loop_attr(r, o->u.lp, k->u.s.p) : mk_undef(NULL);
    default:
        return mk_undef(NULL);
    }
}

/* Python slice index normalisation (Objects/sliceobject.c PySlice_AdjustIndices) */
static jv do_slice(R *r, const jv *o, const jv *a, const jv *b, const jv *c)
{
    int64_t st = 1;
    if (c && c->t != V_NONE && c->t != V_UNDEF) {
        if (c->t != V_INT)
            jn_rfail(r, VTOK_EINVAL, "slice step must be an int");
        st = c->u.i;
        if (st == 0)
            jn_rfail(r, VTOK_EINVAL, "slice step cannot be zero");
    }
    int isstr = o->t == V_STR;
    if (!isstr && o->t != V_LIST) {
        if (o->t == V_UNDEF)
            jn_undefined_fail(r, o);
        jn_rfail(r, VTOK_EINVAL, "cannot slice a %s", jn_type_name(o));
    }
    int64_t n = isstr ? (int64_t)jn_cp_len(o->u.s.p, o->u.s.n) : (int64_t)o->u.l->n;
    int64_t lo, hi;
    const jv *ends[2] = {a, b};
    int64_t vals[2];
    for (int k = 0; k < 2; k++) {
        const jv *e = ends[k];
        if (!e || e->t == V_NONE || e->t == V_UNDEF) {
            vals[k] = k == 0 ? (st < 0 ? n - 1 : 0) : (st < 0 ? -1 : n);
            continue;
        }
        if (e->t != V_INT && e->t != V_BOOL)
            jn_rfail(r, VTOK_EINVAL, "slice indices must be integers");
        int64_t v = e->u.i;
        if (v < 0) {
            v += n;
            if (v < 0)
                v = st < 0 ? -1 : 0;
        } else if (v >= n) {
            v = st < 0 ? n - 1 : n;
        }
        vals[k] = v;
    }
    lo = vals[0];
    hi = vals[1];
    /* gather code point offsets for strings */
    jlist *l = jn_list_new(r, 4);
    sbuf sb = {r, NULL, 0, 0};
    size_t *offs = NULL;
    if (isstr) {
        offs = jn_ralloc(r, ((size_t)n + 1) * sizeof(size_t));
        size_t i = 0;
        for (int64_t k = 0; k < n; k++) {
            offs[k] = i;
            jn_cp_next(o->u.s.p, o->u.s.n, &i);
        }
        offs[n] = o->u.s.n;
    }
    for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) {
        jn_step(r);
        if (isstr)
            jn_sb_put(&sb, o->u.s.p + offs[i], offs[i + 1] - offs[i]);
        else
            jn_list_push(r, l, o->u.l->v[i]);
    }
    if (isstr)
        return mk_str(sb.p ? sb.p : "", sb.n);
    jv v = mk_list(l);
    v.tuple = o->tuple;
    return v;
}

static int64_t add_ovf(R *r, int64_t a, int64_t b, int op)
{
    int64_t res;
    int bad = op == OP_ADD ? __builtin_add_overflow(a, b, &res)
              : op == OP_SUB ? __builtin_sub_overflow(a, b, &res)
                             : __builtin_mul_overflow(a, b, &res);
    if (bad)
        jn_rfail(r, VTOK_EINVAL, "integer overflow");
    return res;
}

static jv repeat(R *r, const jv *s, int64_t n)
{
    if (n <= 0)
        return s->t == V_STR ? mk_str("", 0) : mk_list(jn_list_new(r, 1));
    if (s->t == V_STR) {
        if (s->u.s.n && (uint64_t)n > VT_JINJA_MAX_OUTPUT / s->u.s.n)
            jn_rfail(r, VTOK_ELIMIT, "string repetition too large");
        size_t tot = s->u.s.n * (size_t)n;
        char *p = jn_str_alloc(r, tot);
        for (int64_t i = 0; i < n; i++)
            memcpy(p + (size_t)i * s->u.s.n, s->u.s.p, s->u.s.n);
        p[tot] = 0;
        return mk_str(p, tot);
    }
    if (s->u.l->n && (uint64_t)n > VT_JINJA_MAX_ITERS / s->u.l->n)
        jn_rfail(r, VTOK_ELIMIT, "list repetition too large");
    jlist *l = jn_list_new(r, s->u.l->n * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        for (size_t k = 0; k < s->u.l->n; k++)
            jn_list_push(r, l, s->u.l->v[k]);
    return mk_list(l);
}

static int jv_cmp(R *r, const jv *a, const jv *b, const char *op)
{
    if (is_num(a) && is_num(b)) {
        if (a->t != V_FLOAT && b->t != V_FLOAT)
            return (a->u.i > b->u.i) - (a->u.i < b->u.i);
        double x = num_f(a), y = num_f(b);
        return (x > y) - (x < y);
    }
    if (a->t == V_STR && b->t == V_STR) {
        size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
        int c = memcmp(a->u.s.p, b->u.s.p, n);
        if (c)
            return c < 0 ? -1 : 1;
        return (a->u.s.n > b->u.s.n) - (a->u.s.n < b->u.s.n);
    }
    if (a->t == V_LIST && b->t == V_LIST) {
        size_t n = a->u.l->n < b->u.l->n ? a->u.l->n : b->u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (!jn_jv_eq(&a->u.l->v[i], &b->u.l->v[i]))
                return jv_cmp(r, &a->u.l->v[i], &b->u.l->v[i], op);
        }
        return (a->u.l->n > b->u.l->n) - (a->u.l->n < b->u.l->n);
    }
    if (a->t == V_UNDEF)
        jn_undefined_fail(r, a);
    if (b->t == V_UNDEF)
        jn_undefined_fail(r, b);
    jn_rfail(r, VTOK_EINVAL, "'%s' not supported between %s and %s", op, jn_type_name(a), jn_type_name(b));
}

static int contains(R *r, const jv *hay, const jv *needle)
{
    switch (hay->t) {
    case V_UNDEF:
        return 0;
    case V_STR:
        if (needle->t != V_STR)
            jn_rfail(r, VTOK_EINVAL, "'in <string>' requires a string, not %s", jn_type_name(needle));
        if (needle->u.s.n == 0)
            return 1;
        for (size_t i = 0; i + needle->u.s.n <= hay->u.s.n; i++)
            if (memcmp(hay->u.s.p + i, needle->u.s.p, needle->u.s.n) == 0)
                return 1;
        return 0;
    case V_LIST:
        for (size_t i = 0; i < hay->u.l->n; i++)
            if (jn_jv_eq(&hay->u.l->v[i], needle))
                return 1;
        return 0;
    case V_DICT:
    case V_NS:
        return jn_dict_find(hay->u.d, needle) != NULL;
    default:
        jn_rfail(r, VTOK_EINVAL, "argument of type '%s' is not iterable", jn_type_name(hay));
    }
}

static jv binop(R *r, int op, jv a, jv b)
{
    static const char *const opn[] = {"+", "-", "*", "/", "//", "%", "**", "~",
                                      "==", "!=", "<", "<=", ">", ">=", "in", "not in"};
    switch (op) {
    case OP_EQ:
        return mk_bool(jn_jv_eq(&a, &b));
    case OP_NE:
        return mk_bool(!jn_jv_eq(&a, &b));
    case OP_LT:
        return mk_bool(jv_cmp(r, &a, &b, "<") < 0);
    case OP_LE:
        return mk_bool(jv_cmp(r, &a, &b, "<=") <= 0);
    case OP_GT:
        return mk_bool(jv_cmp(r, &a, &b, ">") > 0);
    case OP_GE:
        return mk_bool(jv_cmp(r, &a, &b, ">=") >= 0);
    case OP_IN:
        return mk_bool(contains(r, &b, &a));
    case OP_NOTIN:
        return mk_bool(!contains(r, &b, &a));
    case OP_CONCAT: {
        jv sa = jn_to_str(r, &a), sb2 = jn_to_str(r, &b);
        char *p = jn_str_alloc(r, sa.u.s.n + sb2.u.s.n);
        memcpy(p, sa.u.s.p, sa.u.s.n);
        memcpy(p + sa.u.s.n, sb2.u.s.p, sb2.u.s.n);
        p[sa.u.s.n + sb2.u.s.n] = 0;
        return mk_str(p, sa.u.s.n + sb2.u.s.n);
    }
    default:
        break;
    }
    if (a.t == V_UNDEF)
        jn_undefined_fail(r, &a);
    if (b.t == V_UNDEF)
        jn_undefined_fail(r, &b);
    if (is_num(&a) && is_num(&b)) {
        int fl = a.t == V_FLOAT || b.t == V_FLOAT;
        double x = num_f(&a), y = num_f(&b);
        switch (op) {
        case OP_ADD:
        case OP_SUB:
        case OP_MUL:
            if (!fl)
                return mk_int(add_ovf(r, a.u.i, b.u.i, op));
            return mk_float(op == OP_ADD ? x + y : op == OP_SUB ? x - y : x * y);
        case OP_DIV:
            if (y == 0)
                jn_rfail(r, VTOK_EINVAL, "division by zero");
            return mk_float(x / y);
        case OP_FDIV:
        case OP_MOD:
            if (y == 0)
                jn_rfail(r, VTOK_EINVAL, "division by zero");
            if (!fl) {
                if (a.u.i == INT64_MIN && b.u.i == -1)
                    jn_rfail(r, VTOK_EINVAL, "integer overflow");
                int64_t q = a.u.i / b.u.i, m = a.u.i % b.u.i;
                if (m != 0 && ((m < 0) != (b.u.i < 0))) {
                    q -= 1;
                    m += b.u.i;
                }
                return mk_int(op == OP_FDIV ? q : m);
            } else {
                double m = fmod(x, y);
                if (m != 0 && ((m < 0) != (y < 0)))
                    m += y;
                return mk_float(op == OP_FDIV ? floor(x / y) : m);
            }
        case OP_POW:
            if (!fl && b.u.i >= 0) {
                int64_t res = 1, base = a.u.i;
                for (int64_t e = b.u.i; e > 0; e--) {
                    jn_step(r);
                    res = add_ovf(r, res, base, OP_MUL);
                    if (res == 0 || res == 1)
                        break;
                }
                return mk_int(res);
            }
            return mk_float(pow(x, y));
        default:
            break;
        }
    }
    if (op == OP_ADD && a.t == V_STR && b.t == V_STR) {
        char *p = jn_str_alloc(r, a.u.s.n + b.u.s.n);
        memcpy(p, a.u.s.p, a.u.s.n);
        memcpy(p + a.u.s.n, b.u.s.p, b.u.s.n);
        p[a.u.s.n + b.u.s.n] = 0;
        return mk_str(p, a.u.s.n + b.u.s.n);
    }
    if (op == OP_ADD && a.t == V_LIST && b.t == V_LIST) {
        jlist *l = jn_list_new(r, a.u.l->n + b.u.l->n);
        for (size_t i = 0; i < a.u.l->n; i++)
            jn_list_push(r, l, a.u.l->v[i]);
        for (size_t i = 0; i < b.u.l->n; i++)
            jn_list_push(r, l, b.u.l->v[i]);
        jv v = mk_list(l);
        v.tuple = a.tuple && b.tuple;
        return v;
    }
    if (op == OP_MUL && (a.t == V_STR || a.t == V_LIST) && (b.t == V_INT || b.t == V_BOOL))
        return repeat(r, &a, b.u.i);
    if (op == OP_MUL && (b.t == V_STR || b.t == V_LIST) && (a.t == V_INT || a.t == V_BOOL))
        return repeat(r, &b, a.u.i);
    jn_rfail(r, VTOK_EINVAL, "unsupported operand types for %s: %s and %s", opn[op], jn_type_name(&a), jn_type_name(&b));
}

/* evaluated call arguments: positional then keyword */
typedef struct {
    jv *v;
    const char **kwn;
    int npos, nkw;
} jargs;

static jargs eval_args(R *r, jframe *f, const jx *x, int skip)
{
    jargs a;
    int n = x->nargs;
    a.v = jn_ralloc(r, (size_t)(n + 1) * sizeof(jv));
    for (int i = 0; i < n; i++)
        a.v[i] = eval(r, f, x->args[i]);
    a.nkw = x->nkw;
    a.npos = n - x->nkw;
    a.kwn = x->kwn;
    (void)skip;
    return a;
}

/* argument i by position or by name, or NULL */
static const jv *arg(const jargs *a, int pos, const char *name)
{
    if (pos >= 0 && pos < a->npos)
        return &a->v[pos];
    for (int i = 0; i < a->nkw; i++)
        if (name && !strcmp(a->kwn[i], name))
            return &a->v[a->npos + i];
    return NULL;
}

static const jv *need_str(R *r, const jv *v, const char *what)
{
    if (!v || v->t != V_STR)
        jn_rfail(r, VTOK_EINVAL, "%s expects a string%s%s", what, v ? ", got " : "", v ? jn_type_name(v) : "");
    return v;
}

static jv run_test(R *r, const char *name, const jv *v, const jargs *a);
static jv run_filter(R *r, jframe *f, const char *name, jv v, const jargs *a);
static jv call_value(R *r, jframe *f, const jv *fn, const jargs *a);

static jv str_split(R *r, jv s, const jv *sep, const jv *maxs)
{
    int64_t max = maxs && maxs->t == V_INT ? maxs->u.i : -1;
    jlist *l = jn_list_new(r, 4);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    if (!sep || sep->t == V_NONE) {
        size_t i = 0;
        for (;;) {
            while (i < n) {
                size_t k = i;
                if (!jn_py_space(jn_cp_next(p, n, &k)))
                    break;
                i = k;
            }
            if (i >= n)
                break;
            if (max >= 0 && (int64_t)l->n >= max) {
                /* the rest, right-stripped */
                jv rest = jn_str_strip(mk_str(p + i, n - i), NULL, 0, 0, 1);
                jn_list_push(r, l, rest);
                break;
            }
            size_t st = i;
            while (i < n) {
                size_t k = i;
                if (jn_py_space(jn_cp_next(p, n, &k)))
                    break;
                i = k;
            }
            jn_list_push(r, l, mk_str(p + st, i - st));
        }
        return mk_list(l);
    }
    need_str(r, sep, "split");
    if (sep->u.s.n == 0)
        jn_rfail(r, VTOK_EINVAL, "split: empty separator");
    size_t st = 0, i = 0;
    while (i + sep->u.s.n <= n) {
        if ((max < 0 || (int64_t)l->n < max) && memcmp(p + i, sep->u.s.p, sep->u.s.n) == 0) {
            jn_list_push(r, l, mk_str(p + st, i - st));
            i += sep->u.s.n;
            st = i;
        } else {
            i++;
        }
    }
    jn_list_push(r, l, mk_str(p + st, n - st));
    return mk_list(l);
}

static jv str_replace(R *r, jv s, const jv *old, const jv *nw, const jv *cnt)
{
    need_str(r, old, "replace");
    need_str(r, nw, "replace");
    int64_t max = cnt && cnt->t == V_INT ? cnt->u.i : -1;
    sbuf b = {r, NULL, 0, 0};
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0, done = 0;
    if (old->u.s.n == 0) {
        /* Python inserts between every code point */
        while (i <= n) {
            if (max >= 0 && (int64_t)done >= max) {
                jn_sb_put(&b, p + i, n - i);
                break;
            }
            jn_sb_put(&b, nw->u.s.p, nw->u.s.n);
            done++;
            if (i == n)
                break;
            size_t k = i;
            jn_cp_next(p, n, &k);
            jn_sb_put(&b, p + i, k - i);
            i = k;
        }
        return mk_str(b.p ? b.p : "", b.n);
    }
    size_t st = 0;
    while (i + old->u.s.n <= n) {
        if ((max < 0 || (int64_t)done < max) && memcmp(p + i, old->u.s.p, old->u.s.n) == 0) {
            jn_sb_put(&b, p + st, i - st);
            jn_sb_put(&b, nw->u.s.p, nw->u.s.n);
            i += old->u.s.n;
            st = i;
            done++;
            jn_step(r);
        } else {
            i++;
        }
    }
    jn_sb_put(&b, p + st, n - st);
    return mk_str(b.p ? b.p : "", b.n);
}

static int is_space_byte(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* ASCII case mapping (non-ASCII letters are left as they are). mode 0 upper,
 * 1 lower, 2 str.title() (a letter after a non-letter is upper), 3 first
 * character upper, 4 jinja2's title filter: upper at the start and after
 * '-', whitespace, '(', '{', '[' or '<', lower elsewhere (filters.py
 * do_title, _word_beginning_split_re). */
static jv str_case(R *r, jv s, int mode)
{
    char *p = jn_str_alloc(r, s.u.s.n);
    int prev_alpha = 0, prev_sep = 1;
    for (size_t i = 0; i < s.u.s.n; i++) {
        char c = s.u.s.p[i];
        int up = c >= 'a' && c <= 'z', lo = c >= 'A' && c <= 'Z';
        int alpha = up || lo || ((unsigned char)c >= 0x80);
        int want_up = mode == 0   ? 1
                      : mode == 1 ? 0
                      : mode == 2 ? !prev_alpha
                      : mode == 3 ? i == 0
                                  : prev_sep;
        prev_sep = c == '-' || is_space_byte(c) || c == '(' || c == '{' || c == '[' || c == '<';
        if (want_up && up)
            c = (char)(c - 32);
        else if (!want_up && lo)
            c = (char)(c + 32);
        p[i] = c;
        prev_alpha = alpha;
    }
    p[s.u.s.n] = 0;
    return mk_str(p, s.u.s.n);
}

static int starts_ends(R *r, jv s, const jv *x, int ends)
{
    if (x && x->t == V_LIST) {
        for (size_t i = 0; i < x->u.l->n; i++)
            if (starts_ends(r, s, &x->u.l->v[i], ends))
                return 1;
        return 0;
    }
    need_str(r, x, ends ? "endswith" : "startswith");
    if (x->u.s.n > s.u.s.n)
        return 0;
    return memcmp(s.u.s.p + (ends ? s.u.s.n - x->u.s.n : 0), x->u.s.p, x->u.s.n) == 0;
}

static jv join_items(R *r, jlist *items, const jv *sep, const jv *attr)
{
    sbuf b = {r, NULL, 0, 0};
    for (size_t i = 0; i < items->n; i++) {
        if (i && sep)
            jn_sb_put(&b, sep->u.s.p, sep->u.s.n);
        jv it = items->v[i];
        if (attr)
            it = get_item(r, &it, attr);
        jn_str_to(r, &b, &it);
        jn_step(r);
    }
    return mk_str(b.p ? b.p : "", b.n);
}

static jv call_method(R *r, const jmeth *m, const jargs *a)
{
    const char *n = m->name;
    jv s = m->self;
    if (s.t == V_DICT) {
        if (!strcmp(n, "items")) {
            jlist *l = jn_list_new(r, s.u.d->n);
            for (size_t i = 0; i < s.u.d->n; i++) {
                jlist *t = jn_list_new(r, 2);
                jn_list_push(r, t, s.u.d->k[i]);
                jn_list_push(r, t, s.u.d->v[i]);
                jv tv = mk_list(t);
                tv.tuple = 1;
                jn_list_push(r, l, tv);
            }
            return mk_list(l);
        }
        if (!strcmp(n, "keys") || !strcmp(n, "values")) {
            jlist *l = jn_list_new(r, s.u.d->n);
            for (size_t i = 0; i < s.u.d->n; i++)
                jn_list_push(r, l, n[0] == 'k' ? s.u.d->k[i] : s.u.d->v[i]);
            return mk_list(l);
        }
        /* get */
        const jv *k = arg(a, 0, "key");
        if (!k)
            jn_rfail(r, VTOK_EINVAL, "get() needs a key");
        jv *v = jn_dict_find(s.u.d, k);
        if (v)
            return *v;
        const jv *d = arg(a, 1, "default");
        return d ? *d : mk_none();
    }
    /* string methods */
    if (!strcmp(n, "startswith") || !strcmp(n, "endswith"))
        return mk_bool(starts_ends(r, s, arg(a, 0, NULL), n[0] == 'e'));
    if (!strcmp(n, "strip") || !strcmp(n, "lstrip") || !strcmp(n, "rstrip")) {
        const jv *c = arg(a, 0, "chars");
        if (c && c->t == V_NONE)
            c = NULL;
        if (c)
            need_str(r, c, n);
        return jn_str_strip(s, c ? c->u.s.p : NULL, c ? c->u.s.n : 0, n[0] != 'r', n[0] != 'l');
    }
    if (!strcmp(n, "split"))
        return str_split(r, s, arg(a, 0, "sep"), arg(a, 1, "maxsplit"));
    if (!strcmp(n, "replace"))
        return str_replace(r, s, arg(a, 0, NULL), arg(a, 1, NULL), arg(a, 2, "count"));
    if (!strcmp(n, "upper"))
        return str_case(r, s, 0);
    if (!strcmp(n, "lower"))
        return str_case(r, s, 1);
    if (!strcmp(n, "title"))
        return str_case(r, s, 2);
    if (!strcmp(n, "capitalize"))
        return str_case(r, str_case(r, s, 1), 3);
    if (!strcmp(n, "join")) {
        const jv *it = arg(a, 0, NULL);
        if (!it)
            jn_rfail(r, VTOK_EINVAL, "join() needs an iterable");
        return join_items(r, iter_items(r, it), &s, NULL);
    }
    if (!strcmp(n, "find") || !strcmp(n, "count")) {
        const jv *x = need_str(r, arg(a, 0, NULL), n);
        int64_t cnt = 0;
        for (size_t i = 0; i + x->u.s.n <= s.u.s.n;) {
            if (memcmp(s.u.s.p + i, x->u.s.p, x->u.s.n) == 0) {
                if (n[0] == 'f')
                    return mk_int((int64_t)jn_cp_len(s.u.s.p, i));
                cnt++;
                i += x->u.s.n ? x->u.s.n : 1;
            } else {
                i++;
            }
        }
        return mk_int(n[0] == 'f' ? -1 : cnt);
    }
    jn_rfail(r, VTOK_EUNSUPPORTED, "method '%s' is not supported", n);
}

static jv call_value(R *r, jframe *f, const jv *fn, const jargs *a)
{
    (void)f;
    if (fn->t == V_METHOD)
        return call_method(r, fn->u.m, a);
    if (fn->t == V_FUNC) {
        switch (fn->u.fn) {
        case F_RAISE: {
            const jv *m = arg(a, 0, NULL);
            jv s = m ? jn_to_str(r, m) : mk_str("", 0);
            /* transformers raises jinja2.exceptions.TemplateError(message) */
            jn_rfail(r, VTOK_EINVAL, "template error: %.*s", (int)(s.u.s.n > 300 ? 300 : s.u.s.n), s.u.s.p);
        }
        case F_RANGE: {
            int64_t st = 0, en, sp = 1;
            for (int i = 0; i < a->npos; i++)
                if (a->v[i].t != V_INT && a->v[i].t != V_BOOL)
                    jn_rfail(r, VTOK_EINVAL, "range() expects integers");
            if (a->npos == 1) {
                en = a->v[0].u.i;
            } else if (a->npos == 2 || a->npos == 3) {
                st = a->v[0].u.i;
                en = a->v[1].u.i;
                if (a->npos == 3)
                    sp = a->v[2].u.i;
            } else {
                jn_rfail(r, VTOK_EINVAL, "range() takes 1 to 3 arguments");
            }
            if (sp == 0)
                jn_rfail(r, VTOK_EINVAL, "range() step must not be zero");
            double cnt = sp > 0 ? ((double)en - (double)st) / (double)sp : ((double)st - (double)en) / (double)-sp;
            if (cnt > VT_JINJA_MAX_ITERS)
                jn_rfail(r, VTOK_ELIMIT, "range() of more than %d items", VT_JINJA_MAX_ITERS);
            jlist *l = jn_list_new(r, cnt > 0 ? (size_t)cnt + 1 : 1);
            for (int64_t i = st; sp > 0 ? i < en : i > en; i += sp)
                jn_list_push(r, l, mk_int(i));
            return mk_list(l);
        }
        case F_NAMESPACE:
        case F_DICT: {
            jdict *d = jn_dict_new(r, 4);
            for (int i = 0; i < a->npos; i++) {
                if (a->v[i].t != V_DICT && a->v[i].t != V_NS)
                    jn_rfail(r, VTOK_EINVAL, "%s() positional arguments must be dicts",
                          fn->u.fn == F_DICT ? "dict" : "namespace");
                for (size_t k = 0; k < a->v[i].u.d->n; k++)
                    jn_dict_set(r, d, a->v[i].u.d->k[k], a->v[i].u.d->v[k]);
            }
            for (int i = 0; i < a->nkw; i++)
                jn_dict_set(r, d, mk_str(a->kwn[i], strlen(a->kwn[i])), a->v[a->npos + i]);
            return mk_dict(d, fn->u.fn == F_DICT ? V_DICT : V_NS);
        }
        case F_STRFTIME: {
            const jv *fmt = need_str(r, arg(a, 0, NULL), "strftime_now");
            char fb[256], ob[512];
            size_t fl = fmt->u.s.n < sizeof(fb) - 1 ? fmt->u.s.n : sizeof(fb) - 1;
            memcpy(fb, fmt->u.s.p, fl);
            fb[fl] = 0;
            time_t now = time(NULL);
            struct tm tmv;
            if (!localtime_r(&now, &tmv))
                jn_rfail(r, VTOK_EINVAL, "strftime_now: no local time");
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#endif
            /* the format is the template's, as Python's datetime.strftime takes it */
            size_t n = strftime(ob, sizeof(ob), fb, &tmv);
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
            char *p = jn_str_alloc(r, n);
            memcpy(p, ob, n);
            p[n] = 0;
            return mk_str(p, n);
        }
        default:
            break;
        }
    }
    if (fn->t == V_MACRO) {
        const js *d = fn->u.mac->def;
        if (r->calls >= VT_JINJA_MAX_CALLS)
            jn_rfail(r, VTOK_ELIMIT, "macro calls nested deeper than %d", VT_JINJA_MAX_CALLS);
        jframe *mf = frame_new(r, fn->u.mac->scope);
        int np = d->nnames - 1;
        if (a->npos > np)
            jn_rfail(r, VTOK_EINVAL, "macro '%s' takes %d arguments, got %d", d->names[0], np, a->npos);
        for (int i = 0; i < np; i++) {
            const jv *v = arg(a, i, d->names[i + 1]);
            jv val = v ? *v : d->defs[i + 1] ? eval(r, mf, d->defs[i + 1]) : mk_undef(d->names[i + 1]);
            frame_set(r, mf, d->names[i + 1], val);
        }
        for (int i = 0; i < a->nkw; i++) {
            int found = 0;
            for (int k = 1; k < d->nnames; k++)
                found |= !strcmp(d->names[k], a->kwn[i]);
            if (!found)
                jn_rfail(r, VTOK_EINVAL, "macro '%s' has no argument '%s'", d->names[0], a->kwn[i]);
        }
        /* the body renders into the output and is cut back out as the value */
        size_t mark = r->on;
        int saved_line = r->line, saved_col = r->col;
        r->calls++;
        exec_body(r, mf, d->body, d->nbody);
        r->calls--;
        r->brk = r->cont = 0;
        r->line = saved_line;
        r->col = saved_col;
        size_t n = r->on - mark;
        char *p = jn_str_alloc(r, n);
        memcpy(p, r->out ? r->out + mark : "", n);
        p[n] = 0;
        r->on = mark;
        return mk_str(p, n);
    }
    if (fn->t == V_UNDEF)
        jn_undefined_fail(r, fn);
    jn_rfail(r, VTOK_EINVAL, "'%s' object is not callable", jn_type_name(fn));
}

static jv eval_node(R *r, jframe *f, const jx *x);

/* every nested evaluation and statement body passes here, so the C stack a
 * render uses is bounded whatever mix of nesting and macro calls it has */
static jv eval(R *r, jframe *f, const jx *x)
{
    if (++r->depth > VT_JINJA_MAX_RDEPTH)
        jn_rfail(r, VTOK_ELIMIT, "template evaluation nested deeper than %d", VT_JINJA_MAX_RDEPTH);
    jv v = eval_node(r, f, x);
    r->depth--;
    return v;
}

static jv eval_node(R *r, jframe *f, const jx *x)
{
    jn_step(r);
    at(r, x);
    switch (x->kind) {
    case E_LIT:
        switch (x->lit) {
        case L_NONE:
            return mk_none();
        case L_BOOL:
            return mk_bool((int)x->i);
        case L_INT:
            return mk_int(x->i);
        case L_FLOAT:
            return mk_float(x->f);
        default:
            return mk_str(x->s, x->n);
        }
    case E_NAME:
        return lookup(r, f, x->name);
    case E_LIST:
    case E_TUPLE: {
        jlist *l = jn_list_new(r, (size_t)x->nargs);
        for (int i = 0; i < x->nargs; i++)
            jn_list_push(r, l, eval(r, f, x->args[i]));
        jv v = mk_list(l);
        v.tuple = x->kind == E_TUPLE;
        return v;
    }
    case E_DICT: {
        jdict *d = jn_dict_new(r, (size_t)x->nargs / 2 + 1);
        for (int i = 0; i + 1 < x->nargs; i += 2) {
            jv k = eval(r, f, x->args[i]);
            jv v = eval(r, f, x->args[i + 1]);
            jn_dict_set(r, d, k, v);
        }
        return mk_dict(d, V_DICT);
    }
    case E_ATTR: {
        jv o = eval(r, f, x->a);
        at(r, x);
        return get_attr(r, &o, x->name);
    }
    case E_ITEM: {
        jv o = eval(r, f, x->a);
        jv k = eval(r, f, x->b);
        at(r, x);
        return get_item(r, &o, &k);
    }
    case E_SLICE: {
        jv o = eval(r, f, x->a);
        jv a = x->b ? eval(r, f, x->b) : UNDEF;
        jv b = x->c ? eval(r, f, x->c) : UNDEF;
        jv c = x->args[0] ? eval(r, f, x->args[0]) : UNDEF;
        at(r, x);
        return do_slice(r, &o, &a, &b, &c);
    }
    case E_CALL: {
        jv fn = eval(r, f, x->a);
        jargs a = eval_args(r, f, x, 0);
        at(r, x);
        return call_value(r, f, &fn, &a);
    }
    case E_FILTER: {
        jv v = eval(r, f, x->a);
        jargs a = eval_args(r, f, x, 0);
        at(r, x);
        return run_filter(r, f, x->name, v, &a);
    }
    case E_TEST: {
        jv v = eval(r, f, x->a);
        jargs a = eval_args(r, f, x, 0);
        at(r, x);
        jv t = run_test(r, x->name, &v, &a);
        return mk_bool(x->op ? !t.u.i : (int)t.u.i);
    }
    case E_NOT: {
        jv v = eval(r, f, x->a);
        return mk_bool(!jn_truthy(&v));
    }
    case E_NEG:
    case E_POS: {
        jv v = eval(r, f, x->a);
        at(r, x);
        if (v.t == V_INT || v.t == V_BOOL) {
            if (x->kind == E_NEG && v.u.i == INT64_MIN)
                jn_rfail(r, VTOK_EINVAL, "integer overflow");
            return mk_int(x->kind == E_NEG ? -v.u.i : v.u.i);
        }
        if (v.t == V_FLOAT)
            return mk_float(x->kind == E_NEG ? -v.u.f : v.u.f);
        if (v.t == V_UNDEF)
            jn_undefined_fail(r, &v);
        jn_rfail(r, VTOK_EINVAL, "bad operand type for unary %c: %s", x->kind == E_NEG ? '-' : '+', jn_type_name(&v));
    }
    case E_BIN: {
        jv a = eval(r, f, x->a);
        jv b = eval(r, f, x->b);
        at(r, x);
        return binop(r, x->op, a, b);
    }
    case E_AND: {
        jv a = eval(r, f, x->a);
        return jn_truthy(&a) ? eval(r, f, x->b) : a;
    }
    case E_OR: {
        jv a = eval(r, f, x->a);
        return jn_truthy(&a) ? a : eval(r, f, x->b);
    }
    case E_COND: {
        jv c = eval(r, f, x->b);
        if (jn_truthy(&c))
            return eval(r, f, x->a);
        return x->c ? eval(r, f, x->c) : mk_undef(NULL);
    }
    default:
        jn_rfail(r, VTOK_EINVAL, "bad expression node");
    }
}

/* ---------------------------------------------------------- tests, filters */

static jv run_test(R *r, const char *n, const jv *v, const jargs *a)
{
    const jv *x = arg(a, 0, NULL);
    if (!strcmp(n, "defined"))
        return mk_bool(v->t != V_UNDEF);
    if (!strcmp(n, "undefined"))
        return mk_bool(v->t == V_UNDEF);
    if (!strcmp(n, "none"))
        return mk_bool(v->t == V_NONE);
    if (!strcmp(n, "string"))
        return mk_bool(v->t == V_STR);
    if (!strcmp(n, "mapping"))
        return mk_bool(v->t == V_DICT);
    if (!strcmp(n, "iterable"))
        return mk_bool(v->t == V_STR || v->t == V_LIST || v->t == V_DICT || v->t == V_UNDEF);
    if (!strcmp(n, "sequence"))
        return mk_bool(v->t == V_STR || v->t == V_LIST || v->t == V_DICT);
    if (!strcmp(n, "number"))
        return mk_bool(is_num(v));
    if (!strcmp(n, "integer"))
        return mk_bool(v->t == V_INT);
    if (!strcmp(n, "float"))
        return mk_bool(v->t == V_FLOAT);
    if (!strcmp(n, "boolean"))
        return mk_bool(v->t == V_BOOL);
    if (!strcmp(n, "true"))
        return mk_bool(v->t == V_BOOL && v->u.i);
    if (!strcmp(n, "false"))
        return mk_bool(v->t == V_BOOL && !v->u.i);
    if (!strcmp(n, "callable"))
        return mk_bool(v->t == V_MACRO || v->t == V_FUNC || v->t == V_METHOD);
    if (!strcmp(n, "lower") || !strcmp(n, "upper")) {
        if (v->t != V_STR)
            return mk_bool(0);
        jv c = str_case(r, *v, n[0] == 'l' ? 1 : 0);
        return mk_bool(jn_jv_eq(&c, v));
    }
    if (!strcmp(n, "equalto") || !strcmp(n, "eq") || !strcmp(n, "==") || !strcmp(n, "sameas"))
        return mk_bool(x && jn_jv_eq(v, x) && (strcmp(n, "sameas") || v->t == x->t));
    if (!strcmp(n, "ne") || !strcmp(n, "!="))
        return mk_bool(!(x && jn_jv_eq(v, x)));
    if (!strcmp(n, "in")) {
        if (!x)
            jn_rfail(r, VTOK_EINVAL, "test 'in' needs an argument");
        return mk_bool(contains(r, x, v));
    }
    if (!strcmp(n, "odd") || !strcmp(n, "even") || !strcmp(n, "divisibleby")) {
        if (v->t != V_INT && v->t != V_BOOL)
            jn_rfail(r, VTOK_EINVAL, "test '%s' needs an int", n);
        int64_t d = n[0] == 'd' ? (x && (x->t == V_INT) ? x->u.i : 0) : 2;
        if (d == 0)
            jn_rfail(r, VTOK_EINVAL, "divisibleby needs a non-zero int");
        int64_t m = v->u.i % d;
        return mk_bool(n[0] == 'o' ? m != 0 : m == 0);
    }
    if (!strcmp(n, "lt") || !strcmp(n, "le") || !strcmp(n, "gt") || !strcmp(n, "ge")) {
        if (!x)
            jn_rfail(r, VTOK_EINVAL, "test '%s' needs an argument", n);
        int c = jv_cmp(r, v, x, n);
        return mk_bool(n[0] == 'l' ? (n[1] == 't' ? c < 0 : c <= 0) : (n[1] == 't' ? c > 0 : c >= 0));
    }
    jn_rfail(r, VTOK_EUNSUPPORTED, "unknown test '%s'", n);
}

/* attribute path "a.b" of an item (jinja2 filters.make_attrgetter) */
static jv attr_path(R *r, jv it, const jv *path)
{
    need_str(r, path, "attribute");
    const char *p = path->u.s.p;
    size_t n = path->u.s.n, s = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || p[i] == '.') {
            jv k;
            int isnum = i > s;
            int64_t num = 0;
            for (size_t m = s; m < i; m++) {
                if (p[m] < '0' || p[m] > '9')
                    isnum = 0;
                else if (num < 100000000)
                    num = num * 10 + (p[m] - '0');
            }
            if (isnum) {
                k = mk_int(num);
            } else {
                char *nm = jn_str_alloc(r, i - s);
                memcpy(nm, p + s, i - s);
                nm[i - s] = 0;
                k = mk_str(nm, i - s);
            }
            if (it.t == V_UNDEF)
                return it;
            it = get_item(r, &it, &k);
            s = i + 1;
        }
    }
    return it;
}

/* select/reject/selectattr/rejectattr (jinja2 filters.py select_or_reject) */
static jv select_items(R *r, jv v, const jargs *a, int attr, int want)
{
    jlist *items = iter_items(r, &v);
    jlist *out = jn_list_new(r, items->n);
    int first = attr ? 1 : 0;
    const jv *path = attr ? arg(a, 0, "attribute") : NULL;
    const jv *tn = a->npos > first ? &a->v[first] : NULL;
    if (tn)
        need_str(r, tn, "select test");
    jargs ta = {a->v + first + 1, NULL, a->npos > first + 1 ? a->npos - first - 1 : 0, 0};
    for (size_t i = 0; i < items->n; i++) {
        jn_step(r);
        jv x = attr ? attr_path(r, items->v[i], path) : items->v[i];
        int ok;
        if (tn)
            ok = (int)run_test(r, tn->u.s.p, &x, &ta).u.i;
        else
            ok = jn_truthy(&x);
        if (ok == want)
            jn_list_push(r, out, items->v[i]);
    }
    return mk_list(out);
}

static int64_t to_int_default(R *r, jv v, int64_t def)
{
    (void)r;
    if (v.t == V_INT || v.t == V_BOOL)
        return v.u.i;
    if (v.t == V_FLOAT)
        return isfinite(v.u.f) && fabs(v.u.f) < 9.2e18 ? (int64_t)v.u.f : def;
    if (v.t == V_STR) {
        char buf[64];
        jv t = jn_str_strip(v, NULL, 0, 1, 1);
        if (t.u.s.n == 0 || t.u.s.n >= sizeof(buf))
            return def;
        memcpy(buf, t.u.s.p, t.u.s.n);
        buf[t.u.s.n] = 0;
        char *end;
        long long x = strtoll(buf, &end, 10);
        if (*end == 0)
            return x;
        double d = strtod(buf, &end);
        if (*end == 0 && isfinite(d) && fabs(d) < 9.2e18)
            return (int64_t)d;
    }
    return def;
}

static jv run_filter(R *r, jframe *f, const char *n, jv v, const jargs *a)
{
    if (!strcmp(n, "length") || !strcmp(n, "count")) {
        if (v.t == V_STR)
            return mk_int((int64_t)jn_cp_len(v.u.s.p, v.u.s.n));
        if (v.t == V_LIST)
            return mk_int((int64_t)v.u.l->n);
        if (v.t == V_DICT || v.t == V_NS)
            return mk_int((int64_t)v.u.d->n);
        if (v.t == V_UNDEF)
            return mk_int(0);
        jn_rfail(r, VTOK_EINVAL, "object of type '%s' has no len()", jn_type_name(&v));
    }
    if (!strcmp(n, "tojson")) {
        /* transformers' signature: tojson(x, ensure_ascii=False, indent=None,
         * separators=None, sort_keys=False), so tojson(4) is ensure_ascii=4 */
        const jv *ea = arg(a, 0, "ensure_ascii");
        const jv *ind = arg(a, 1, "indent");
        const jv *seps = arg(a, 2, "separators");
        const jv *sk = arg(a, 3, "sort_keys");
        jopts o;
        o.indent = -1;
        if (ind && ind->t != V_NONE) {
            if (ind->t != V_INT || ind->u.i > 64)
                jn_rfail(r, VTOK_EINVAL, "tojson: indent must be an int up to 64");
            o.indent = ind->u.i < 0 ? 0 : (int)ind->u.i;
        }
        o.ascii = ea && jn_truthy(ea);
        o.sort = sk && jn_truthy(sk);
        o.isep = mk_str(o.indent >= 0 ? "," : ", ", o.indent >= 0 ? 1 : 2);
        o.ksep = mk_str(": ", 2);
        if (seps && seps->t != V_NONE) {
            if (seps->t != V_LIST || seps->u.l->n != 2 || seps->u.l->v[0].t != V_STR ||
                seps->u.l->v[1].t != V_STR)
                jn_rfail(r, VTOK_EINVAL, "tojson: separators must be a pair of strings");
            o.isep = seps->u.l->v[0];
            o.ksep = seps->u.l->v[1];
        }
        sbuf b = {r, NULL, 0, 0};
        jn_json_to(r, &b, &v, &o, 0);
        return mk_str(b.p ? b.p : "", b.n);
    }
    if (!strcmp(n, "default") || !strcmp(n, "d")) {
        const jv *d = arg(a, 0, "default_value");
        const jv *bo = arg(a, 1, "boolean");
        int use = v.t == V_UNDEF || (bo && jn_truthy(bo) && !jn_truthy(&v));
        return use ? (d ? *d : mk_str("", 0)) : v;
    }
    if (!strcmp(n, "safe") || !strcmp(n, "string")) {
        return !strcmp(n, "safe") ? v : jn_to_str(r, &v);
    }
    if (!strcmp(n, "items")) {
        if (v.t == V_UNDEF)
            return mk_list(jn_list_new(r, 1));
        if (v.t != V_DICT)
            jn_rfail(r, VTOK_EINVAL, "items: expected a mapping, got %s", jn_type_name(&v));
        jmeth m = {v, "items"};
        jargs none = {NULL, NULL, 0, 0};
        return call_method(r, &m, &none);
    }
    if (!strcmp(n, "list"))
        return mk_list(iter_items(r, &v));
    if (!strcmp(n, "join")) {
        const jv *sep = arg(a, 0, "d");
        const jv *at2 = arg(a, 1, "attribute");
        jv s = sep ? jn_to_str(r, sep) : mk_str("", 0);
        return join_items(r, iter_items(r, &v), &s, at2);
    }
    if (!strcmp(n, "first") || !strcmp(n, "last")) {
        jlist *l = iter_items(r, &v);
        if (l->n == 0)
            return mk_undef(NULL);
        return n[0] == 'f' ? l->v[0] : l->v[l->n - 1];
    }
    if (!strcmp(n, "reverse")) {
        if (v.t == V_STR) {
            jlist *l = iter_items(r, &v);
            sbuf b = {r, NULL, 0, 0};
            for (size_t i = l->n; i-- > 0;)
                jn_sb_put(&b, l->v[i].u.s.p, l->v[i].u.s.n);
            return mk_str(b.p ? b.p : "", b.n);
        }
        jlist *l = iter_items(r, &v);
        jlist *o = jn_list_new(r, l->n);
        for (size_t i = l->n; i-- > 0;)
            jn_list_push(r, o, l->v[i]);
        return mk_list(o);
    }
    if (!strcmp(n, "int")) {
        const jv *d = arg(a, 0, "default");
        return mk_int(to_int_default(r, v, d && d->t == V_INT ? d->u.i : 0));
    }
    if (!strcmp(n, "float")) {
        if (is_num(&v))
            return mk_float(num_f(&v));
        if (v.t == V_STR) {
            char buf[64];
            jv t = jn_str_strip(v, NULL, 0, 1, 1);
            if (t.u.s.n && t.u.s.n < sizeof(buf)) {
                memcpy(buf, t.u.s.p, t.u.s.n);
                buf[t.u.s.n] = 0;
                char *end;
                double d = strtod(buf, &end);
                if (*end == 0)
                    return mk_float(d);
            }
        }
        const jv *d = arg(a, 0, "default");
        return d ? *d : mk_float(0.0);
    }
    if (!strcmp(n, "abs")) {
        if (v.t == V_INT || v.t == V_BOOL) {
            if (v.u.i == INT64_MIN)
                jn_rfail(r, VTOK_EINVAL, "integer overflow");
            return mk_int(v.u.i < 0 ? -v.u.i : v.u.i);
        }
        if (v.t == V_FLOAT)
            return mk_float(fabs(v.u.f));
        jn_rfail(r, VTOK_EINVAL, "abs: bad operand type %s", jn_type_name(&v));
    }
    if (!strcmp(n, "selectattr") || !strcmp(n, "rejectattr"))
        return select_items(r, v, a, 1, n[0] == 's');
    if (!strcmp(n, "select") || !strcmp(n, "reject"))
        return select_items(r, v, a, 0, n[0] == 's');
    if (!strcmp(n, "sort")) {
        /* jinja2 do_sort(value, reverse=False, case_sensitive=False,
         * attribute=None): a stable sort, strings compared lower-cased
         * unless case_sensitive */
        const jv *rev = arg(a, 0, "reverse");
        const jv *cs = arg(a, 1, "case_sensitive");
        const jv *at2 = arg(a, 2, "attribute");
        jlist *l = iter_items(r, &v);
        size_t cnt = l->n;
        jv *keys = jn_ralloc(r, (cnt + 1) * sizeof(jv));
        jlist *o = jn_list_new(r, cnt);
        for (size_t i = 0; i < cnt; i++) {
            keys[i] = at2 ? attr_path(r, l->v[i], at2) : l->v[i];
            if (keys[i].t == V_STR && !(cs && jn_truthy(cs)))
                keys[i] = str_case(r, keys[i], 1);
            jn_list_push(r, o, l->v[i]);
        }
        int desc = rev && jn_truthy(rev);
        for (size_t i = 1; i < cnt; i++) {
            jv kx = keys[i], vx = o->v[i];
            size_t j = i;
            while (j > 0) {
                jn_step(r);
                int c = jv_cmp(r, &keys[j - 1], &kx, "<");
                if (desc ? c >= 0 : c <= 0)
                    break;
                keys[j] = keys[j - 1];
                o->v[j] = o->v[j - 1];
                j--;
            }
            keys[j] = kx;
            o->v[j] = vx;
        }
        return mk_list(o);
    }
    if (!strcmp(n, "map")) {
        jlist *l = iter_items(r, &v);
        jlist *o = jn_list_new(r, l->n);
        const jv *at2 = arg(a, -1, "attribute");
        if (at2) {
            const jv *def = arg(a, -1, "default");
            for (size_t i = 0; i < l->n; i++) {
                jv x = attr_path(r, l->v[i], at2);
                jn_list_push(r, o, x.t == V_UNDEF && def ? *def : x);
            }
            return mk_list(o);
        }
        const jv *fn = need_str(r, arg(a, 0, NULL), "map");
        jargs fa = {a->v + 1, a->kwn, a->npos - 1, a->nkw};
        for (size_t i = 0; i < l->n; i++)
            jn_list_push(r, o, run_filter(r, f, fn->u.s.p, l->v[i], &fa));
        return mk_list(o);
    }
    if (v.t == V_UNDEF)
        v = mk_str("", 0); /* string filters see Undefined as "" (jinja2 soft_str) */
    if (v.t != V_STR)
        v = jn_to_str(r, &v);
    if (!strcmp(n, "indent")) {
        /* jinja2 do_indent(s, width=4, first=False, blank=False): lines as
         * str.splitlines() after appending "\n", joined with "\n" + the
         * indent, which blank lines get only when blank is true */
        const jv *w = arg(a, 0, "width");
        const jv *first = arg(a, 1, "first");
        const jv *blank = arg(a, 2, "blank");
        jv ind;
        if (!w || w->t == V_INT || w->t == V_BOOL) {
            int64_t k = w ? w->u.i : 4;
            if (k > 256)
                jn_rfail(r, VTOK_EINVAL, "indent: width over 256");
            ind = repeat(r, &(jv){V_STR, 0, {.s = {" ", 1}}}, k < 0 ? 0 : k);
        } else {
            ind = *need_str(r, w, "indent");
        }
        sbuf b = {r, NULL, 0, 0};
        if (first && jn_truthy(first))
            jn_sb_put(&b, ind.u.s.p, ind.u.s.n);
        const char *p = v.u.s.p;
        size_t len = v.u.s.n, i = 0, ls = 0;
        int line_no = 0;
        for (;;) {
            /* find the end of the line at ls: \n \r \r\n \v \f \x1c-\x1e \x85 U+2028 U+2029 */
            size_t e = ls, next = len;
            int found = 0;
            for (i = ls; i < len;) {
                size_t k = i;
                unsigned cp = jn_cp_next(p, len, &k);
                if (cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || (cp >= 0x1C && cp <= 0x1E) ||
                    cp == 0x85 || cp == 0x2028 || cp == 0x2029) {
                    e = i;
                    next = k;
                    if (cp == '\r' && k < len && p[k] == '\n')
                        next = k + 1;
                    found = 1;
                    break;
                }
                i = k;
            }
            if (!found) {
                e = len;
                next = len;
            }
            if (line_no > 0) {
                jn_sb_puts(&b, "\n");
                if (e > ls || (blank && jn_truthy(blank)))
                    jn_sb_put(&b, ind.u.s.p, ind.u.s.n);
            }
            jn_sb_put(&b, p + ls, e - ls);
            line_no++;
            jn_step(r);
            /* the appended "\n" ends the last line: stop after it */
            if (!found)
                break;
            ls = next;
        }
        return mk_str(b.p ? b.p : "", b.n);
    }
    if (!strcmp(n, "trim")) {
        const jv *c = arg(a, 0, "chars");
        if (c && c->t == V_NONE)
            c = NULL;
        if (c)
            need_str(r, c, "trim");
        return jn_str_strip(v, c ? c->u.s.p : NULL, c ? c->u.s.n : 0, 1, 1);
    }
    if (!strcmp(n, "upper"))
        return str_case(r, v, 0);
    if (!strcmp(n, "lower"))
        return str_case(r, v, 1);
    if (!strcmp(n, "title"))
        return str_case(r, v, 4);
    if (!strcmp(n, "capitalize"))
        return str_case(r, str_case(r, v, 1), 3);
    if (!strcmp(n, "replace"))
        return str_replace(r, v, arg(a, 0, "old"), arg(a, 1, "new"), arg(a, 2, "count"));
    jn_rfail(r, VTOK_EUNSUPPORTED, "unknown filter '%s'", n);
}

/* ------------------------------------------------------------- statements */

static void bind_targets(R *r, jframe *f, const js *s, jv item)
{
    if (s->nnames == 1) {
        frame_set(r, f, s->names[0], item);
        return;
    }
    if (item.t != V_LIST || item.u.l->n != (size_t)s->nnames)
        jn_rfail(r, VTOK_EINVAL, "cannot unpack %s into %d loop variables", jn_type_name(&item), s->nnames);
    for (int i = 0; i < s->nnames; i++)
        frame_set(r, f, s->names[i], item.u.l->v[i]);
}

static void exec_for(R *r, jframe *f, const js *s)
{
    r->line = s->line;
    r->col = s->col;
    jv it = eval(r, f, s->e);
    jlist *items = iter_items(r, &it);
    jframe *lf = frame_new(r, f);
    if (s->e2) {
        /* "for x in xs if cond": filter first, so loop.length counts kept items */
        jlist *kept = jn_list_new(r, items->n);
        for (size_t i = 0; i < items->n; i++) {
            if (++r->iters > VT_JINJA_MAX_ITERS)
                jn_rfail(r, VTOK_ELIMIT, "loops ran more than %d iterations", VT_JINJA_MAX_ITERS);
            bind_targets(r, lf, s, items->v[i]);
            jv c = eval(r, lf, s->e2);
            if (jn_truthy(&c))
                jn_list_push(r, kept, items->v[i]);
        }
        items = kept;
    }
    if (items->n == 0) {
        exec_body(r, f, s->els, s->nels);
        return;
    }
    jloop *lp = jn_ralloc(r, sizeof(jloop));
    lp->n = items->n;
    lp->items = items;
    jv lv = {V_LOOP, 0, {0}};
    lv.u.lp = lp;
    for (size_t i = 0; i < items->n; i++) {
        if (++r->iters > VT_JINJA_MAX_ITERS)
            jn_rfail(r, VTOK_ELIMIT, "loops ran more than %d iterations", VT_JINJA_MAX_ITERS);
        lp->i = i;
        /* each iteration starts from a fresh scope over the enclosing one:
         * names set in the body neither carry to the next iteration nor
         * shadow the outer value before they are set, as in jinja2 (probes
         * loop_carry and outer_read_in_loop in tests/jinja/check.py) */
        lf->n = 0;
        frame_set(r, lf, "loop", lv);
        bind_targets(r, lf, s, items->v[i]);
        exec_body(r, lf, s->body, s->nbody);
        if (r->brk) {
            r->brk = 0;
            break;
        }
        r->cont = 0;
    }
}

static void exec_stmts(R *r, jframe *f, js *const *body, int n);

static void exec_body(R *r, jframe *f, js *const *body, int n)
{
    if (++r->depth > VT_JINJA_MAX_RDEPTH)
        jn_rfail(r, VTOK_ELIMIT, "template evaluation nested deeper than %d", VT_JINJA_MAX_RDEPTH);
    exec_stmts(r, f, body, n);
    r->depth--;
}

static void exec_stmts(R *r, jframe *f, js *const *body, int n)
{
    for (int i = 0; i < n; i++) {
        const js *s = body[i];
        jn_step(r);
        r->line = s->line;
        r->col = s->col;
        switch (s->kind) {
        case S_TEXT:
            out_put(r, s->s, s->n);
            break;
        case S_OUT: {
            jv v = eval(r, f, s->e);
            if (v.t == V_STR) {
                out_put(r, v.u.s.p, v.u.s.n);
            } else {
                sbuf b = {r, NULL, 0, 0};
                jn_str_to(r, &b, &v);
                out_put(r, b.p ? b.p : "", b.n);
            }
            break;
        }
        case S_IF: {
            jv c = eval(r, f, s->e);
            if (jn_truthy(&c))
                exec_body(r, f, s->body, s->nbody);
            else
                exec_body(r, f, s->els, s->nels);
            break;
        }
        case S_FOR:
            exec_for(r, f, s);
            break;
        case S_SET:
        case S_SETBLOCK: {
            jv v;
            if (s->kind == S_SET) {
                v = eval(r, f, s->e);
            } else {
                size_t mark = r->on;
                exec_body(r, f, s->body, s->nbody);
                size_t len = r->on - mark;
                char *p = jn_str_alloc(r, len);
                memcpy(p, r->out ? r->out + mark : "", len);
                p[len] = 0;
                r->on = mark;
                v = mk_str(p, len);
            }
            if (s->nnames == 2) {
                jv ns = lookup(r, f, s->names[0]);
                r->line = s->line;
                r->col = s->col;
                if (ns.t != V_NS)
                    jn_rfail(r, VTOK_EINVAL, "cannot assign attribute on non-namespace object '%s'", s->names[0]);
                jn_dict_set(r, ns.u.d, mk_str(s->names[1], strlen(s->names[1])), v);
            } else {
                frame_set(r, f, s->names[0], v);
            }
            break;
        }
        case S_MACRO: {
            jmacro *m = jn_ralloc(r, sizeof(jmacro));
            m->def = s;
            m->scope = f;
            jv v = {V_MACRO, 0, {0}};
            v.u.mac = m;
            frame_set(r, f, s->names[0], v);
            break;
        }
        case S_BREAK:
            r->brk = 1;
            return;
        case S_CONTINUE:
            r->cont = 1;
            return;
        default:
            break;
        }
        if (r->brk || r->cont)
            return;
    }
}

/* ---------------------------------------------------------------- context */

static jv from_json(R *r, const cJSON *j, int depth)
{
    if (depth > 256)
        jn_rfail(r, VTOK_ELIMIT, "context nested deeper than 256");
    if (cJSON_IsTrue(j))
        return mk_bool(1);
    if (cJSON_IsFalse(j))
        return mk_bool(0);
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0)
            return mk_int((int64_t)d);
        return mk_float(d);
    }
    if (cJSON_IsString(j))
        return mk_str(j->valuestring ? j->valuestring : "", j->valuestring ? strlen(j->valuestring) : 0);
    if (cJSON_IsArray(j)) {
        jlist *l = jn_list_new(r, (size_t)cJSON_GetArraySize(j));
        for (const cJSON *c = j->child; c; c = c->next)
            jn_list_push(r, l, from_json(r, c, depth + 1));
        return mk_list(l);
    }
    if (cJSON_IsObject(j)) {
        jdict *d = jn_dict_new(r, (size_t)cJSON_GetArraySize(j));
        for (const cJSON *c = j->child; c; c = c->next) {
            const char *k = c->string ? c->string : "";
            jn_dict_set(r, d, mk_str(k, strlen(k)), from_json(r, c, depth + 1));
        }
        return mk_dict(d, V_DICT);
    }
    return mk_none();
}

/* ------------------------------------------------------------------- API */

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

int vt_jinja_parse(vt_jinja **out, const char *src, size_t len, char *err, size_t errlen)
{
    if (!out || (!src && len)) {
        set_err(err, errlen, "vt_jinja_parse: NULL argument");
        return VTOK_EINVAL;
    }
    *out = NULL;
    if (len > VT_JINJA_MAX_SOURCE) {
        if (err && errlen)
            snprintf(err, errlen, "template of %zu bytes exceeds %u", len, VT_JINJA_MAX_SOURCE);
        return VTOK_ELIMIT;
    }
    vt_jinja *t = calloc(1, sizeof(*t));
    if (!t) {
        set_err(err, errlen, "out of memory");
        return VTOK_ENOMEM;
    }
    /* the AST takes a bounded multiple of the source */
    t->arena.limit = 64 * (size_t)len + ((size_t)1 << 20);
    char msg[512] = "";
    jerr e;
    e.code = 0;
    e.msg = msg;
    e.msglen = sizeof(msg);
    if (setjmp(e.jb)) {
        free(t->scratch);
        jarena_free(&t->arena);
        free(t);
        set_err(err, errlen, msg);
        return e.code;
    }
    jinja_parse_into(t, src ? src : "", len, &e);
    free(t->scratch);
    t->scratch = NULL;
    *out = t;
    if (err && errlen)
        err[0] = 0;
    return 0;
}

void vt_jinja_free(vt_jinja *t)
{
    if (!t)
        return;
    jarena_free(&t->arena);
    free(t);
}

int vt_jinja_render(const vt_jinja *t, const cJSON *context, char **out, size_t *out_len, char *err,
                    size_t errlen)
{
    if (!t || !out) {
        set_err(err, errlen, "vt_jinja_render: NULL argument");
        return VTOK_EINVAL;
    }
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (context && !cJSON_IsObject(context)) {
        set_err(err, errlen, "template context must be a JSON object");
        return VTOK_EINVAL;
    }
    char msg[512] = "";
    jerr e;
    e.code = 0;
    e.msg = msg;
    e.msglen = sizeof(msg);
    R *r = calloc(1, sizeof(R));
    if (!r) {
        set_err(err, errlen, "out of memory");
        return VTOK_ENOMEM;
    }
    r->ar.limit = VT_JINJA_MAX_MEMORY;
    r->e = &e;
    if (setjmp(e.jb)) {
        jarena_free(&r->ar);
        free(r->out);
        free(r);
        set_err(err, errlen, msg);
        return e.code;
    }
    if (context) {
        jv c = from_json(r, context, 0);
        r->ctx = c.u.d;
    }
    r->root = frame_new(r, NULL);
    exec_body(r, r->root, t->body, t->nbody);
    out_put(r, "", 0);
    r->out[r->on] = 0;
    *out = r->out;
    if (out_len)
        *out_len = r->on;
    jarena_free(&r->ar);
    free(r);
    if (err && errlen)
        err[0] = 0;
    return 0;
}
