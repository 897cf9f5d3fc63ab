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

#endif
