/*
 * jinja_int.h - shared internals of the Jinja subset: arena, AST, values.
 *
 * jinja_parse.c turns the source into an AST held in the template's arena;
 * jinja.c walks it with values held in a per-render arena. Errors on both
 * sides unwind with longjmp to the public entry point, which turns them into a
 * return code: every allocation lives in an arena, so unwinding leaks nothing.
 */
#ifndef VT_JINJA_INT_H
#define VT_JINJA_INT_H

#include "text/jinja.h"

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

/* ---- arena: chunked bump allocator with a byte cap ---- */
typedef struct jarena_blk {
    struct jarena_blk *next;
    size_t used, cap;
    /* data follows, max_align_t aligned */
} jarena_blk;

typedef struct {
    jarena_blk *head;
    size_t total, limit;
} jarena;

/* NULL when the cap is reached or malloc fails (*over says which). */
void *jarena_alloc(jarena *a, size_t n, int *over);
void jarena_free(jarena *a);

/* ---- errors: a message and a jump back to the entry point ---- */
typedef struct {
    jmp_buf jb;
    int code;
    char *msg;
    size_t msglen;
} jerr;

#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 3, 4)))
#endif
void jfail(jerr *e, int code, const char *fmt, ...);

/* ---- AST ---- */
enum {
    E_LIT, E_NAME, E_LIST, E_TUPLE, E_DICT, E_ATTR, E_ITEM, E_SLICE, E_CALL,
    E_FILTER, E_TEST, E_NOT, E_NEG, E_POS, E_BIN, E_AND, E_OR, E_COND
};
/* binary operators (E_BIN op) */
enum {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FDIV, OP_MOD, OP_POW, OP_CONCAT,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN
};
/* literal kinds (E_LIT) */
enum { L_NONE, L_BOOL, L_INT, L_FLOAT, L_STR };

typedef struct jx {
    int kind, op, line, col;
    struct jx *a, *b, *c;       /* operands; E_SLICE: obj, start, stop in a/b/c and step in args[0] */
    struct jx **args;           /* call / filter / test / list / tuple args; dict: k0,v0,k1,v1... */
    const char **kwn;           /* keyword names for the trailing nkw args */
    int nargs, nkw;
    const char *name;           /* E_NAME / E_ATTR / E_FILTER / E_TEST name (NUL-terminated) */
    int lit;                    /* L_* */
    int64_t i;
    double f;
    const char *s;              /* E_LIT string bytes */
    size_t n;
} jx;

enum { S_TEXT, S_OUT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_BREAK, S_CONTINUE };

typedef struct js {
    int kind, line, col;
    const char *s;              /* S_TEXT bytes */
    size_t n;
    jx *e, *e2;                 /* S_OUT/S_SET: e; S_IF: cond; S_FOR: iter e, filter e2 */
    struct js **body, **els;
    int nbody, nels;
    const char **names;         /* S_FOR targets, S_SET target (+attr in names[1]), S_MACRO name+params */
    int nnames;
    jx **defs;                  /* S_MACRO: default per param (NULL = none) */
} js;

struct vt_jinja {
    jarena arena;
    js **body;
    int nbody;
    void *scratch; /* token array while parsing (malloc'd) */
};

/* Parse into t (arena already set up). Fails through e. */
void jinja_parse_into(struct vt_jinja *t, const char *src, size_t len, jerr *e);


/* ---- render-time values (jinja_value.c) and the renderer state ---- */
enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_LOOP, V_MACRO, V_FUNC, V_METHOD };
enum { F_RANGE, F_NAMESPACE, F_RAISE, F_STRFTIME, F_DICT };

typedef struct jv jv;
typedef struct jlist {
    jv *v;
    size_t n, cap;
} jlist;
typedef struct jdict {
    jv *k, *v;
    size_t n, cap;
} jdict;
typedef struct jloop {
    size_t i, n;
    jlist *items;
} jloop;
struct jframe;
typedef struct jmacro {
    const js *def;
    struct jframe *scope;
} jmacro;
struct jmeth;

struct jv {
    int t;
    int tuple; /* V_LIST built as a tuple (prints with parentheses) */
    union {
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;             /* V_STR; V_UNDEF: the missing name (may be NULL) */
        jlist *l;
        jdict *d;        /* V_DICT, V_NS */
        jloop *lp;
        jmacro *mac;
        int fn;
        struct jmeth *m;
    } u;
};

typedef struct jmeth {
    jv self;
    const char *name;
} jmeth;

typedef struct jframe {
    struct jframe *parent;
    const char **names;
    jv *vals;
    size_t n, cap;
} jframe;

typedef struct {
    jarena ar;
    jerr *e;
    char *out;
    size_t on, ocap;
    jdict *ctx;
    jframe *root;
    int calls, depth;
    long iters, steps;
    int brk, cont;
    int line, col; /* of the node being evaluated, for messages */
} R;

typedef struct {
    R *r;
    char *p;
    size_t n, cap;
} sbuf;
typedef struct {
    int indent; /* -1: none */
    int ascii, sort;
    jv isep, ksep;
} jopts;

static const jv UNDEF = {V_UNDEF, 0, {0}};

static inline jv mk_int(int64_t i)
{
    jv v = {V_INT, 0, {0}};
    v.u.i = i;
    return v;
}

static inline jv mk_bool(int b)
{
    jv v = {V_BOOL, 0, {0}};
    v.u.i = b != 0;
    return v;
}

static inline jv mk_float(double f)
{
    jv v = {V_FLOAT, 0, {0}};
    v.u.f = f;
    return v;
}

static inline jv mk_none(void)
{
    jv v = {V_NONE, 0, {0}};
    return v;
}

static inline jv mk_str(const char *p, size_t n)
{
    jv v = {V_STR, 0, {0}};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}

static inline jv mk_undef(const char *name)
{
    jv v = UNDEF;
    v.u.s.p = name;
    return v;
}

static inline jv mk_list(jlist *l)
{
    jv v = {V_LIST, 0, {0}};
    v.u.l = l;
    return v;
}

static inline jv mk_dict(jdict *d, int t)
{
    jv v = {t, 0, {0}};
    v.u.d = d;
    return v;
}

static inline int is_num(const jv *v)
{
    return v->t == V_INT || v->t == V_FLOAT || v->t == V_BOOL;
}

static inline double num_f(const jv *v)
{
    return v->t == V_FLOAT ? v->u.f : (double)v->u.i;
}

/* jinja_value.c: errors and memory of a render, containers, equality and
 * truth, UTF-8 helpers, str()/repr()/JSON formatting. */
#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 3, 4)))
#endif
void jn_rfail(R *r, int code, const char *fmt, ...);
void *jn_ralloc(R *r, size_t n);
void jn_step(R *r);
char *jn_str_alloc(R *r, size_t n);
jlist *jn_list_new(R *r, size_t cap);
void jn_list_push(R *r, jlist *l, jv x);
jdict *jn_dict_new(R *r, size_t cap);
int jn_jv_eq(const jv *a, const jv *b);
jv *jn_dict_find(jdict *d, const jv *k);
jv *jn_dict_find_s(jdict *d, const char *k, size_t n);
void jn_dict_set(R *r, jdict *d, jv k, jv v);
int jn_truthy(const jv *v);
const char *jn_type_name(const jv *v);
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
void jn_undefined_fail(R *r, const jv *v);
size_t jn_cp_len(const char *s, size_t n);
size_t jn_cp_off(const char *s, size_t n, size_t idx);
unsigned jn_cp_next(const char *s, size_t n, size_t *i);
int jn_py_space(unsigned cp);
int jn_cp_in(unsigned cp, const char *chars, size_t cn);
jv jn_str_strip(jv s, const char *chars, size_t cn, int left, int right);
void jn_sb_put(sbuf *b, const char *s, size_t n);
void jn_sb_puts(sbuf *b, const char *s);
void jn_fmt_float(double f, char *out, size_t outlen, int json);
void jn_str_to(R *r, sbuf *b, const jv *v);
void jn_repr_to(R *r, sbuf *b, const jv *v);
jv jn_to_str(R *r, const jv *v);
void jn_json_to(R *r, sbuf *b, const jv *v, const jopts *o, int depth);

#endif
