/*
 * torch.c - PyTorch checkpoints (.pth, .pt, .bin, .ckpt) read without
 * running any pickle code, and conversion of any weights file to safetensors.
 *
 * Released MLLM weights are often torch.save files. Loading them with Python's
 * pickle executes whatever the file says, so here a small unpickler builds
 * plain values (ints, strings, tuples, lists, dicts) and understands exactly
 * the callables torch.save emits for a state dict: collections.OrderedDict,
 * torch._utils._rebuild_tensor(_v2), _rebuild_parameter(_with_state) and the
 * torch.<Type>Storage classes named inside persistent ids. Any other global is
 * refused by name, REDUCE/NEWOBJ apply only to those, and BUILD only drops
 * its state (OrderedDict._metadata), so nothing in a file can run code.
 * (Found empirically: torch 1.13's save of float/half/bfloat16/bool/int64
 * tensors, Parameters, views and nested dicts uses only these globals.)
 *
 * Containers:
 *  - zip (torch >= 1.6): <root>/data.pkl plus one entry <root>/data/<key>
 *    per storage. Entries are STORED (used in place from the mapping; torch
 *    aligns them to 64 bytes) or DEFLATE (inflated with zlib into owned
 *    memory). Zip64 EOCD and extra fields are read. The CRC of data.pkl and
 *    of inflated entries is checked; STORED tensor data is not CRC-checked,
 *    because that would read every page of a multi-GB mapping at open.
 *  - legacy (torch < 1.6): pickles magic, protocol version, sys_info, the
 *    object, the storage key list; then per key an int64 element count and
 *    the raw bytes.
 *
 * Every size is bounded: opcodes' lengths against the pickle, objects,
 * stack, marks and memo by fixed limits, memo indices checked, tensor
 * extents (offset + sum((size-1)*stride)) checked against the storage's bytes
 * before any data is touched. Contiguous tensors point into the image;
 * others are materialised into owned contiguous memory, once per tensor
 * object however many paths reach it.
 *
 * What a checkpoint flattens to is bounded relative to its own size, because
 * a few bytes can describe a lot (issue 10, finding 6):
 *  - the memo lets one container be referenced from many places, so nesting
 *    k shared dicts yields 2^k paths from a pickle of O(k) bytes. Paths are
 *    re-walked (torch.load would give every one of them), but the objects
 *    visited are limited to PT_VISITS_FLOOR + PT_VISITS_PER_BYTE per pickle
 *    byte, and the bytes of all tensor names to PT_NAMES_FLOOR +
 *    PT_NAMES_PER_BYTE per pickle byte (a plain state dict visits about one
 *    object and spells its names in about one byte per pickle byte).
 *  - a stride-0 or overlapping view (x.expand(...)) has more elements than
 *    its storage, so 4 bytes can become gigabytes. The bytes of all tensors
 *    yielded, counting each path, may exceed the checkpoint's data (the file
 *    size, or the inflated entries if larger) by max(PT_EXPAND_FLOOR,
 *    min(PT_EXPAND_RATIO x data, PT_EXPAND_CAP)): 64 MiB for a small file,
 *    16x the data for a mid-sized one, 16 GiB at most beyond the data. Real
 *    checkpoints stay near 1x (tied weights add a few percent); the floor
 *    keeps broadcast buffers (position_ids = arange(n).expand(1, -1))
 *    working. The check comes before any copy is made.
 */
#include "io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Limits: a state dict of 10k tensors needs ~200k objects and a few hundred
 * memo slots per thousand tensors; these leave two orders of magnitude. */
#define PK_MAX_OBJS    ((int64_t)1 << 22)
#define PK_MAX_STACK   ((int64_t)1 << 20)
#define PK_MAX_MARKS   ((int64_t)1 << 16)
#define PK_MAX_MEMO    ((int64_t)1 << 22)
#define PT_MAX_DEPTH   64
#define PT_MAX_TENSORS ((int64_t)1 << 20)
#define PT_MAX_VISITS  ((int64_t)1 << 24)
#define PT_MAX_NAME    4096
/* Flattening work and output relative to the input (see the top comment). */
#define PT_VISITS_FLOOR    ((int64_t)1 << 16)
#define PT_VISITS_PER_BYTE 8
#define PT_NAMES_FLOOR     ((int64_t)1 << 20)
#define PT_NAMES_PER_BYTE  16
#define PT_MAX_NAME_BYTES  ((int64_t)1 << 28)
#define PT_EXPAND_FLOOR    ((int64_t)64 << 20)
#define PT_EXPAND_RATIO    16
#define PT_EXPAND_CAP      ((int64_t)16 << 30)
/* Deflate cannot expand more than ~1032:1; a larger declared size is a lie. */
#define ZIP_MAX_RATIO  1032

/* The legacy format's first pickle: LONG1 0x1950a86a20f9469cfc6c. */
static const uint8_t LEGACY_MAGIC[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                         0x20, 0x6a, 0xa8, 0x50, 0x19};

/* ------------------------------------------------------------ helpers -- */

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Printable copy of untrusted bytes for messages. */
static const char *printable(char *buf, size_t cap, const uint8_t *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++)
        buf[k++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
    buf[k] = '\0';
    return buf;
}

/* CRC-32 in chunks: zlib takes uInt lengths. */
static uint32_t crc_of(const uint8_t *p, uint64_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

/* ---------------------------------------------------------- unpickler -- */

enum { PO_NONE, PO_BOOL, PO_INT, PO_BIGINT, PO_FLOAT, PO_STR, PO_BYTES, PO_TUPLE, PO_LIST,
       PO_DICT, PO_GLOBAL, PO_STORAGE, PO_TENSOR };

enum { G_ODICT = 1, G_REBUILD_V2, G_REBUILD, G_PARAM, G_PARAM_STATE, G_STORAGE };

static const struct {
    const char *mod, *name;
    int         id;
    vt_dtype    dtype;
} ALLOWED[] = {
    {"collections", "OrderedDict", G_ODICT, VT_F32},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2, VT_F32},
    {"torch._utils", "_rebuild_tensor", G_REBUILD, VT_F32},
    {"torch._utils", "_rebuild_parameter", G_PARAM, VT_F32},
    {"torch._utils", "_rebuild_parameter_with_state", G_PARAM_STATE, VT_F32},
    {"torch", "FloatStorage", G_STORAGE, VT_F32},
    {"torch", "HalfStorage", G_STORAGE, VT_F16},
    {"torch", "BFloat16Storage", G_STORAGE, VT_BF16},
    {"torch", "DoubleStorage", G_STORAGE, VT_F64},
    {"torch", "LongStorage", G_STORAGE, VT_I64},
    {"torch", "IntStorage", G_STORAGE, VT_I32},
    {"torch", "ShortStorage", G_STORAGE, VT_I16},
    {"torch", "CharStorage", G_STORAGE, VT_I8},
    {"torch", "ByteStorage", G_STORAGE, VT_U8},
    {"torch", "BoolStorage", G_STORAGE, VT_BOOL},
};

typedef struct pk_obj {
    uint8_t        type;
    int64_t        v;      /* int/bool value, global index, storage or tensor index */
    double         f;
    const uint8_t *s;      /* str/bytes/bigint bytes (in the pickle image) */
    size_t         len;
    int32_t       *items;  /* tuple/list elements; dict key,value pairs */
    int64_t        n, cap;
} pk_obj;

typedef struct pt_storage {
    const uint8_t *key;
    size_t         key_len;
    vt_dtype       dtype;
    int64_t        numel;  /* as declared in the persistent id */
    const uint8_t *data;   /* set when resolved */
    int64_t        nbytes;
    int            resolved;
} pt_storage;

typedef struct pt_tens {
    int32_t        storage;
    int            n_dims;
    int64_t        offset;
    int64_t        shape[VT_MAX_DIMS], stride[VT_MAX_DIMS];
    const uint8_t *mat;    /* materialised copy (owned by out), made on first use */
} pt_tens;

typedef struct pk {
    const char    *name;   /* for messages */
    vtok_status   *st;
    const uint8_t *start, *p, *end;
    pk_obj        *objs;
    int64_t        n_objs, cap_objs;
    int32_t       *stack;
    int64_t        sp, cap_stack;
    int64_t       *marks;
    int64_t        n_marks, cap_marks;
    int32_t       *memo;
    int64_t        cap_memo, n_memo;
    pt_storage    *stor;
    int64_t        n_stor, cap_stor;
    pt_tens       *tens;
    int64_t        n_tens, cap_tens;
    vt_pt_checkpoint *out;
    int64_t        cap_out, cap_owned, visits;
    int64_t        pkl_bytes;        /* bytes of the object pickle */
    int64_t        stor_bytes;       /* bytes of all storage entries (inflated) */
    int64_t        max_visits, name_bytes, max_name_bytes;
    int64_t        out_bytes, max_out_bytes, data_bytes;
} pk;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int pk_fail(pk *k, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return vt_fail(k->st, VTOK_EFORMAT, "%s: %s", k->name, msg);
}

static int pk_oom(pk *k)
{
    return vt_fail(k->st, VTOK_ENOMEM, "%s: out of memory", k->name);
}

static int32_t new_obj(pk *k, int type)
{
    if (k->n_objs >= PK_MAX_OBJS) {
        pk_fail(k, "pickle has more than %lld objects", (long long)PK_MAX_OBJS);
        return -1;
    }
    if (!vt_grow(&k->objs, &k->cap_objs, k->n_objs + 1, sizeof *k->objs)) {
        pk_oom(k);
        return -1;
    }
    pk_obj *o = &k->objs[k->n_objs];
    memset(o, 0, sizeof *o);
    o->type = (uint8_t)type;
    return (int32_t)k->n_objs++;
}

static int push(pk *k, int32_t o)
{
    if (o < 0)
        return -1;
    if (k->sp >= PK_MAX_STACK)
        return pk_fail(k, "pickle stack deeper than %lld", (long long)PK_MAX_STACK);
    if (!vt_grow(&k->stack, &k->cap_stack, k->sp + 1, sizeof *k->stack))
        return pk_oom(k);
    k->stack[k->sp++] = o;
    return 0;
}

/* Index of the first stack slot above the last mark, or -1. */
static int64_t pop_mark(pk *k)
{
    if (k->n_marks == 0) {
        pk_fail(k, "pickle: MARK expected at byte %lld", (long long)(k->p - k->start));
        return -1;
    }
    return k->marks[--k->n_marks];
}

static int append_item(pk *k, int32_t c, int32_t item)
{
    pk_obj *o = &k->objs[c];
    if (!vt_grow(&o->items, &o->cap, o->n + 1, sizeof *o->items))
        return pk_oom(k);
    o->items[o->n++] = item;
    return 0;
}

/* A new tuple/list/dict from stack slots [from, sp). */
static int32_t collect(pk *k, int type, int64_t from)
{
    int32_t c = new_obj(k, type);
    if (c < 0)
        return -1;
    int64_t n = k->sp - from;
    if (n > 0) {
        pk_obj *o = &k->objs[c];
        o->items = malloc((size_t)n * sizeof *o->items);
        if (!o->items) {
            pk_oom(k);
            return -1;
        }
        memcpy(o->items, k->stack + from, (size_t)n * sizeof *o->items);
        o->n = o->cap = n;
    }
    k->sp = from;
    return c;
}

static int need(pk *k, uint64_t n)
{
    if ((uint64_t)(k->end - k->p) < n)
        return pk_fail(k, "pickle truncated at byte %lld (needs %llu more bytes)",
                       (long long)(k->p - k->start), (unsigned long long)n);
    return 0;
}

static int32_t str_obj(pk *k, int type, uint64_t n)
{
    if (need(k, n))
        return -1;
    int32_t o = new_obj(k, type);
    if (o < 0)
        return -1;
    k->objs[o].s = k->p;
    k->objs[o].len = (size_t)n;
    k->p += n;
    return o;
}

static int32_t global_obj(pk *k, const uint8_t *mod, size_t ml, const uint8_t *nm, size_t nl)
{
    for (size_t i = 0; i < sizeof ALLOWED / sizeof ALLOWED[0]; i++) {
        if (strlen(ALLOWED[i].mod) == ml && memcmp(ALLOWED[i].mod, mod, ml) == 0 &&
            strlen(ALLOWED[i].name) == nl && memcmp(ALLOWED[i].name, nm, nl) == 0) {
            int32_t o = new_obj(k, PO_GLOBAL);
            if (o >= 0)
                k->objs[o].v = (int64_t)i;
            return o;
        }
    }
    char a[120], b[120];
    pk_fail(k, "refusing pickle global '%s.%s'", printable(a, sizeof a, mod, ml),
            printable(b, sizeof b, nm, nl));
    return -1;
}

/* Small int from an object (INT or BOOL). */
static int obj_int(const pk *k, int32_t o, int64_t *v)
{
    if (k->objs[o].type != PO_INT && k->objs[o].type != PO_BOOL)
        return 0;
    *v = k->objs[o].v;
    return 1;
}

/* _rebuild_tensor(_v2)(storage, offset, size, stride, ...). */
static int32_t make_tensor(pk *k, const pk_obj *args)
{
    if (args->n < 4) {
        pk_fail(k, "tensor rebuild takes at least 4 arguments, got %lld", (long long)args->n);
        return -1;
    }
    const pk_obj *s = &k->objs[args->items[0]];
    const pk_obj *sz = &k->objs[args->items[2]];
    const pk_obj *sd = &k->objs[args->items[3]];
    int64_t off;
    if (s->type != PO_STORAGE || !obj_int(k, args->items[1], &off) || off < 0 ||
        sz->type != PO_TUPLE || sd->type != PO_TUPLE) {
        pk_fail(k, "tensor rebuild arguments are not (storage, offset, size, stride)");
        return -1;
    }
    if (sz->n != sd->n || sz->n > VT_MAX_DIMS) {
        pk_fail(k, "tensor has %lld sizes and %lld strides (at most %d dims)", (long long)sz->n,
                (long long)sd->n, VT_MAX_DIMS);
        return -1;
    }
    if (!vt_grow(&k->tens, &k->cap_tens, k->n_tens + 1, sizeof *k->tens)) {
        pk_oom(k);
        return -1;
    }
    pt_tens *t = &k->tens[k->n_tens];
    memset(t, 0, sizeof *t);
    t->storage = (int32_t)s->v;
    t->offset = off;
    t->n_dims = (int)sz->n;
    for (int d = 0; d < t->n_dims; d++) {
        if (!obj_int(k, sz->items[d], &t->shape[d]) || !obj_int(k, sd->items[d], &t->stride[d]) ||
            t->shape[d] < 0 || t->stride[d] < 0) {
            pk_fail(k, "tensor size/stride %d is not a non-negative integer", d);
            return -1;
        }
    }
    int32_t o = new_obj(k, PO_TENSOR);
    if (o >= 0)
        k->objs[o].v = k->n_tens++;
    return o;
}

/* ('storage', <Type>Storage, key, location, numel[, view_metadata]). */
static int32_t make_storage(pk *k, int32_t pid)
{
    const pk_obj *t = &k->objs[pid];
    if (t->type != PO_TUPLE || t->n < 5 || k->objs[t->items[0]].type != PO_STR ||
        k->objs[t->items[0]].len != 7 || memcmp(k->objs[t->items[0]].s, "storage", 7) != 0) {
        pk_fail(k, "persistent id is not a ('storage', ...) tuple");
        return -1;
    }
    const pk_obj *ty = &k->objs[t->items[1]], *key = &k->objs[t->items[2]];
    int64_t numel;
    if (ty->type != PO_GLOBAL || ALLOWED[ty->v].id != G_STORAGE) {
        pk_fail(k, "persistent id does not name a storage type");
        return -1;
    }
    if (key->type != PO_STR || !obj_int(k, t->items[4], &numel) || numel < 0) {
        pk_fail(k, "persistent id has a bad key or element count");
        return -1;
    }
    if (t->n > 5 && k->objs[t->items[5]].type != PO_NONE) {
        pk_fail(k, "storage views (legacy view_metadata) are not supported");
        return -1;
    }
    if (k->n_stor >= INT32_MAX ||
        !vt_grow(&k->stor, &k->cap_stor, k->n_stor + 1, sizeof *k->stor)) {
        pk_oom(k);
        return -1;
    }
    pt_storage *s = &k->stor[k->n_stor];
    memset(s, 0, sizeof *s);
    s->key = key->s;
    s->key_len = key->len;
    s->dtype = ALLOWED[ty->v].dtype;
    s->numel = numel;
    int32_t o = new_obj(k, PO_STORAGE);
    if (o >= 0)
        k->objs[o].v = k->n_stor++;
    return o;
}

static int32_t apply(pk *k, int32_t fn, int32_t argt, int newobj)
{
    const pk_obj *f = &k->objs[fn];
    const pk_obj *a = &k->objs[argt];
    if (f->type != PO_GLOBAL) {
        pk_fail(k, "pickle calls something that is not an allowed global");
        return -1;
    }
    if (a->type != PO_TUPLE) {
        pk_fail(k, "pickle call arguments are not a tuple");
        return -1;
    }
    int id = ALLOWED[f->v].id;
    if (newobj && id != G_ODICT) {
        pk_fail(k, "refusing NEWOBJ of '%s.%s'", ALLOWED[f->v].mod, ALLOWED[f->v].name);
        return -1;
    }
    switch (id) {
    case G_ODICT:
        if (a->n != 0) {
            pk_fail(k, "OrderedDict with constructor arguments is not supported");
            return -1;
        }
        return new_obj(k, PO_DICT);
    case G_REBUILD_V2:
    case G_REBUILD:
        return make_tensor(k, a);
    case G_PARAM:
    case G_PARAM_STATE:
        if (a->n < 1 || k->objs[a->items[0]].type != PO_TENSOR) {
            pk_fail(k, "_rebuild_parameter without a tensor");
            return -1;
        }
        return a->items[0];
    default:
        pk_fail(k, "refusing to call '%s.%s'", ALLOWED[f->v].mod, ALLOWED[f->v].name);
        return -1;
    }
}

static int memo_put(pk *k, uint64_t idx)
{
    if (k->sp == 0)
        return pk_fail(k, "pickle: memo put on an empty stack");
    if (idx >= (uint64_t)PK_MAX_MEMO)
        return pk_fail(k, "pickle memo index %llu is over the limit", (unsigned long long)idx);
    int64_t old = k->cap_memo;
    if (!vt_grow(&k->memo, &k->cap_memo, (int64_t)idx + 1, sizeof *k->memo))
        return pk_oom(k);
    for (int64_t i = old; i < k->cap_memo; i++)
        k->memo[i] = -1;
    if (k->memo[idx] < 0)
        k->n_memo++;
    k->memo[idx] = k->stack[k->sp - 1];
    return 0;
}

static int32_t memo_get(pk *k, uint64_t idx)
{
    if (idx >= (uint64_t)k->cap_memo || k->memo[idx] < 0) {
        pk_fail(k, "pickle memo index %llu was never stored", (unsigned long long)idx);
        return -1;
    }
    return k->memo[idx];
}

#define POP(var)                                                                           \
    do {                                                                                   \
        if (k->sp <= (k->n_marks ? k->marks[k->n_marks - 1] : 0))                          \
            return pk_fail(k, "pickle stack underflow at byte %lld",                       \
                           (long long)(k->p - k->start - 1));                              \
        (var) = k->stack[--k->sp];                                                         \
    } while (0)

/* Run one pickle from k->p to its STOP; *result is the object. */
static int unpickle(pk *k, int32_t *result)
{
    k->sp = 0;
    k->n_marks = 0;
    k->n_memo = 0;
    for (int64_t i = 0; i < k->cap_memo; i++)
        k->memo[i] = -1;
    for (;;) {
        if (need(k, 1))
            return VTOK_EFORMAT;
        uint8_t op = *k->p++;
        int32_t a, b, c, o = -1;
        int64_t m;
        uint64_t n;
        switch (op) {
        case 0x80: /* PROTO */
            if (need(k, 1))
                return VTOK_EFORMAT;
            if (*k->p > 5)
                return pk_fail(k, "pickle protocol %d is not supported (2-5)", *k->p);
            k->p++;
            continue;
        case 0x95: /* FRAME: framing is only a read-ahead hint */
            if (need(k, 8))
                return VTOK_EFORMAT;
            k->p += 8;
            continue;
        case '(': /* MARK */
            if (k->n_marks >= PK_MAX_MARKS)
                return pk_fail(k, "pickle has more than %lld nested marks",
                               (long long)PK_MAX_MARKS);
            if (!vt_grow(&k->marks, &k->cap_marks, k->n_marks + 1, sizeof *k->marks))
                return pk_oom(k);
            k->marks[k->n_marks++] = k->sp;
            continue;
        case '.': /* STOP */
            POP(a);
            *result = a;
            return 0;
        case '0': /* POP */
            POP(a);
            continue;
        case '1': /* POP_MARK */
            if ((m = pop_mark(k)) < 0)
                return VTOK_EFORMAT;
            k->sp = m;
            continue;
        case '2': /* DUP */
            POP(a);
            if (push(k, a) || push(k, a))
                return VTOK_EFORMAT;
            continue;
        case '}': o = new_obj(k, PO_DICT); break;
        case ']': o = new_obj(k, PO_LIST); break;
        case ')': o = new_obj(k, PO_TUPLE); break;
        case 'N': o = new_obj(k, PO_NONE); break;
        case 0x88:
        case 0x89:
            if ((o = new_obj(k, PO_BOOL)) >= 0)
                k->objs[o].v = op == 0x88;
            break;
        case 't': /* TUPLE */
        case 'l': /* LIST */
        case 'd': /* DICT */
            if ((m = pop_mark(k)) < 0)
                return VTOK_EFORMAT;
            if (op == 'd' && (k->sp - m) % 2)
                return pk_fail(k, "pickle DICT with an odd number of items");
            o = collect(k, op == 't' ? PO_TUPLE : op == 'l' ? PO_LIST : PO_DICT, m);
            break;
        case 0x85: /* TUPLE1..3 */
        case 0x86:
        case 0x87: {
            int64_t cnt = op - 0x84;
            int64_t floor = k->n_marks ? k->marks[k->n_marks - 1] : 0;
            if (k->sp - floor < cnt)
                return pk_fail(k, "pickle stack underflow at byte %lld",
                               (long long)(k->p - k->start - 1));
            o = collect(k, PO_TUPLE, k->sp - cnt);
            break;
        }
        case 'a': /* APPEND */
            POP(b);
            POP(a);
            if (k->objs[a].type != PO_LIST)
                return pk_fail(k, "pickle APPEND to a non-list");
            if (append_item(k, a, b))
                return VTOK_EFORMAT;
            o = a;
            break;
        case 'e': /* APPENDS */
        case 'u': /* SETITEMS */
            if ((m = pop_mark(k)) < 0)
                return VTOK_EFORMAT;
            if (m < 1 || k->objs[k->stack[m - 1]].type != (op == 'e' ? PO_LIST : PO_DICT))
                return pk_fail(k, "pickle %s without a %s below the mark",
                               op == 'e' ? "APPENDS" : "SETITEMS", op == 'e' ? "list" : "dict");
            if (op == 'u' && (k->sp - m) % 2)
                return pk_fail(k, "pickle SETITEMS with an odd number of items");
            for (int64_t i = m; i < k->sp; i++)
                if (append_item(k, k->stack[m - 1], k->stack[i]))
                    return VTOK_EFORMAT;
            k->sp = m;
            continue;
        case 's': /* SETITEM */
            POP(c);
            POP(b);
            POP(a);
            if (k->objs[a].type != PO_DICT)
                return pk_fail(k, "pickle SETITEM on a non-dict");
            if (append_item(k, a, b) || append_item(k, a, c))
                return VTOK_EFORMAT;
            o = a;
            break;
        case 'q': /* BINPUT */
        case 'r': /* LONG_BINPUT */
        case 0x94: /* MEMOIZE */
            n = 1;
            if (op != 0x94 && need(k, op == 'q' ? 1 : 4))
                return VTOK_EFORMAT;
            n = op == 'q' ? k->p[0] : op == 'r' ? rd32(k->p) : (uint64_t)k->n_memo;
            k->p += op == 'q' ? 1 : op == 'r' ? 4 : 0;
            if (memo_put(k, n))
                return VTOK_EFORMAT;
            continue;
        case 'h': /* BINGET */
        case 'j': /* LONG_BINGET */
            if (need(k, op == 'h' ? 1 : 4))
                return VTOK_EFORMAT;
            n = op == 'h' ? k->p[0] : rd32(k->p);
            k->p += op == 'h' ? 1 : 4;
            o = memo_get(k, n);
            break;
        case 'K': /* BININT1 */
        case 'M': /* BININT2 */
        case 'J': /* BININT */
            if (need(k, op == 'K' ? 1 : op == 'M' ? 2 : 4))
                return VTOK_EFORMAT;
            if ((o = new_obj(k, PO_INT)) >= 0)
                k->objs[o].v = op == 'K' ? k->p[0]
                             : op == 'M' ? (int64_t)rd16(k->p)
                                         : (int64_t)(int32_t)rd32(k->p);
            k->p += op == 'K' ? 1 : op == 'M' ? 2 : 4;
            break;
        case 0x8a: /* LONG1 */
        case 0x8b: /* LONG4 */
            if (need(k, op == 0x8a ? 1 : 4))
                return VTOK_EFORMAT;
            n = op == 0x8a ? k->p[0] : rd32(k->p);
            k->p += op == 0x8a ? 1 : 4;
            if (n > 8) {
                o = str_obj(k, PO_BIGINT, n);
                break;
            }
            if (need(k, n))
                return VTOK_EFORMAT;
            if ((o = new_obj(k, PO_INT)) >= 0) {
                uint64_t u = 0;
                for (uint64_t i = 0; i < n; i++)
                    u |= (uint64_t)k->p[i] << (8 * i);
                if (n > 0 && n < 8 && (k->p[n - 1] & 0x80))
                    u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
                k->objs[o].v = (int64_t)u;
            }
            k->p += n;
            break;
        case 'G': { /* BINFLOAT, big-endian */
            if (need(k, 8))
                return VTOK_EFORMAT;
            uint64_t u = 0;
            for (int i = 0; i < 8; i++)
                u = (u << 8) | k->p[i];
            k->p += 8;
            if ((o = new_obj(k, PO_FLOAT)) >= 0)
                memcpy(&k->objs[o].f, &u, 8);
            break;
        }
        case 'X':  /* BINUNICODE */
        case 0x8c: /* SHORT_BINUNICODE */
        case 0x8d: /* BINUNICODE8 */
        case 'T':  /* BINSTRING */
        case 'U':  /* SHORT_BINSTRING */
        case 'B':  /* BINBYTES */
        case 'C':  /* SHORT_BINBYTES */
        case 0x8e: { /* BINBYTES8 */
            int w = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
            if (need(k, (uint64_t)w))
                return VTOK_EFORMAT;
            n = w == 1 ? k->p[0] : w == 8 ? rd64(k->p) : rd32(k->p);
            if (op == 'T' && (n & 0x80000000u))
                return pk_fail(k, "pickle BINSTRING with a negative length");
            k->p += w;
            int ty = (op == 'B' || op == 'C' || op == 0x8e) ? PO_BYTES : PO_STR;
            o = str_obj(k, ty, n);
            break;
        }
        case 'c': { /* GLOBAL "module\nname\n" */
            const uint8_t *mod = k->p;
            const uint8_t *e1 = memchr(mod, '\n', (size_t)(k->end - mod));
            const uint8_t *e2 = e1 ? memchr(e1 + 1, '\n', (size_t)(k->end - e1 - 1)) : NULL;
            if (!e2)
                return pk_fail(k, "pickle GLOBAL truncated");
            k->p = e2 + 1;
            o = global_obj(k, mod, (size_t)(e1 - mod), e1 + 1, (size_t)(e2 - e1 - 1));
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            POP(b);
            POP(a);
            if (k->objs[a].type != PO_STR || k->objs[b].type != PO_STR)
                return pk_fail(k, "pickle STACK_GLOBAL operands are not strings");
            o = global_obj(k, k->objs[a].s, k->objs[a].len, k->objs[b].s, k->objs[b].len);
            break;
        case 'R':  /* REDUCE */
        case 0x81: /* NEWOBJ */
            POP(b);
            POP(a);
            o = apply(k, a, b, op == 0x81);
            break;
        case 'b': /* BUILD: state is dropped (OrderedDict._metadata, tensor state) */
            POP(b);
            POP(a);
            if (k->objs[a].type != PO_DICT && k->objs[a].type != PO_TENSOR)
                return pk_fail(k, "pickle BUILD on something other than a dict or tensor");
            o = a;
            break;
        case 'Q': /* BINPERSID */
            POP(a);
            o = make_storage(k, a);
            break;
        case 'P': /* PERSID: a text id, which torch never writes */
            return pk_fail(k, "pickle PERSID (text persistent id) is not a torch storage");
        default:
            return pk_fail(k, "pickle opcode 0x%02x at byte %lld is not supported", op,
                           (long long)(k->p - k->start - 1));
        }
        if (o < 0 || push(k, o))
            return VTOK_EFORMAT;
    }
}

/* --------------------------------------------------------- flattening -- */

static int add_owned(pk *k, void *blk)
{
    vt_pt_checkpoint *c = k->out;
    if (!vt_grow(&c->owned, &k->cap_owned, c->n_owned + 1, sizeof *c->owned)) {
        vt_free(blk);
        return pk_oom(k);
    }
    c->owned[c->n_owned++] = blk;
    return 0;
}

/* a + b into *out if it does not pass INT64_MAX (both non-negative). */
static int add_ok(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0 || a > INT64_MAX - b)
        return 0;
    *out = a + b;
    return 1;
}

/* Check a tensor against its storage and add it under `name`. */
static int emit(pk *k, pt_tens *t, const char *name)
{
    /* Names come from the file: messages get a printable, bounded copy. */
    char pn[160];
    printable(pn, sizeof pn, (const uint8_t *)name, strlen(name));
    const pt_storage *s = &k->stor[t->storage];
    if (!s->resolved)
        return pk_fail(k, "tensor '%s': storage has no data", pn);
    int64_t esz = (int64_t)vt_dtype_size(s->dtype);
    int64_t numel = 1, extent = t->offset, shape1[VT_MAX_DIMS], stride1[VT_MAX_DIMS];
    for (int d = 0; d < t->n_dims; d++) {
        if (!vt_mul_ok(numel, t->shape[d], &numel))
            return pk_fail(k, "tensor '%s': element count overflows", pn);
        shape1[d] = t->shape[d];
        stride1[d] = t->shape[d] == 1 ? 0 : t->stride[d]; /* a size-1 dim never steps */
    }
    int64_t nbytes;
    if (!vt_mul_ok(numel, esz, &nbytes) || (uint64_t)nbytes > SIZE_MAX)
        return pk_fail(k, "tensor '%s': byte size overflows", pn);
    const uint8_t *data = s->data;
    int contiguous = 1;
    if (numel > 0) {
        int64_t span, expect = 1;
        for (int d = 0; d < t->n_dims; d++) {
            if (!vt_mul_ok(shape1[d] - 1, stride1[d], &span) || extent > INT64_MAX - span)
                return pk_fail(k, "tensor '%s': strides overflow", pn);
            extent += span;
        }
        for (int d = t->n_dims - 1; d >= 0; d--) {
            if (shape1[d] != 1 && stride1[d] != expect)
                contiguous = 0;
            expect *= shape1[d]; /* <= numel: no overflow */
        }
        /* last element index is `extent`: it and its bytes must be in the storage */
        if (extent >= s->nbytes / esz)
            return pk_fail(k, "tensor '%s': offset %lld + extent needs %lld elements, storage "
                           "has %lld", pn, (long long)t->offset, (long long)extent + 1,
                           (long long)(s->nbytes / esz));
    }
    /* Budgets (top comment): checked before anything is copied. */
    int64_t nb = (int64_t)strlen(name) + 1;
    if (!add_ok(k->name_bytes, nb, &k->name_bytes) || k->name_bytes > k->max_name_bytes)
        return pk_fail(k, "tensor '%s': tensor names total more than %lld bytes for a "
                       "%lld-byte pickle (containers shared through the pickle memo?)", pn,
                       (long long)k->max_name_bytes, (long long)k->pkl_bytes);
    if (!add_ok(k->out_bytes, nbytes, &k->out_bytes) || k->out_bytes > k->max_out_bytes)
        return pk_fail(k, "tensor '%s' (%lld bytes) takes the checkpoint's tensors over the "
                       "limit of %lld bytes for %lld bytes of data (a stride-0 or overlapping "
                       "view, or a tensor reached through many paths)", pn, (long long)nbytes,
                       (long long)k->max_out_bytes, (long long)k->data_bytes);
    if (numel > 0) {
        data = s->data + t->offset * esz;
        if (!contiguous && t->mat) {
            data = t->mat; /* the same tensor object reached again through the memo */
        } else if (!contiguous) {
            uint8_t *dst = vt_alloc((size_t)nbytes);
            if (!dst)
                return vt_fail(k->st, VTOK_ENOMEM, "%s: out of memory for tensor '%s'",
                               k->name, pn);
            if (add_owned(k, dst))
                return VTOK_ENOMEM;
            int64_t idx[VT_MAX_DIMS] = {0}, src = t->offset;
            for (int64_t e = 0; e < numel; e++) {
                memcpy(dst + e * esz, s->data + src * esz, (size_t)esz);
                for (int d = t->n_dims - 1; d >= 0; d--) {
                    src += stride1[d];
                    if (++idx[d] < shape1[d])
                        break;
                    src -= stride1[d] * shape1[d];
                    idx[d] = 0;
                }
            }
            data = t->mat = dst;
        }
    }
    vt_pt_checkpoint *c = k->out;
    if (c->n_tensors >= PT_MAX_TENSORS)
        return pk_fail(k, "more than %lld tensors", (long long)PT_MAX_TENSORS);
    if (!vt_grow(&c->tensors, &k->cap_out, c->n_tensors + 1, sizeof *c->tensors))
        return pk_oom(k);
    vt_pt_tensor *o = &c->tensors[c->n_tensors];
    memset(o, 0, sizeof *o);
    size_t nl = strlen(name) + 1;
    o->name = malloc(nl);
    if (!o->name)
        return pk_oom(k);
    memcpy(o->name, name, nl);
    o->dtype = s->dtype;
    o->n_dims = t->n_dims;
    memcpy(o->shape, t->shape, sizeof o->shape);
    o->numel = numel;
    o->data = data;
    o->nbytes = (size_t)nbytes;
    c->n_tensors++;
    return 0;
}

/* The flattening budgets of the top comment, from the pickle's and the
 * data's sizes (the products cannot overflow: sizes are below 2^62). */
static void set_budgets(pk *k, size_t file_size)
{
    int64_t pb = k->pkl_bytes;
    k->max_visits = PT_VISITS_FLOOR + PT_VISITS_PER_BYTE * pb;
    if (k->max_visits > PT_MAX_VISITS)
        k->max_visits = PT_MAX_VISITS;
    k->max_name_bytes = PT_NAMES_FLOOR + PT_NAMES_PER_BYTE * pb;
    if (k->max_name_bytes > PT_MAX_NAME_BYTES)
        k->max_name_bytes = PT_MAX_NAME_BYTES;
    int64_t data = (uint64_t)file_size > (uint64_t)k->stor_bytes ? (int64_t)file_size
                                                                 : k->stor_bytes;
    int64_t extra;
    if (!vt_mul_ok(data, PT_EXPAND_RATIO, &extra) || extra > PT_EXPAND_CAP)
        extra = PT_EXPAND_CAP;
    if (extra < PT_EXPAND_FLOOR)
        extra = PT_EXPAND_FLOOR;
    k->data_bytes = data;
    if (!add_ok(data, extra, &k->max_out_bytes))
        k->max_out_bytes = INT64_MAX;
}

/* Walk dicts/lists/tuples from object o; name[0..len) is its path. */
static int flatten(pk *k, int32_t o, char *name, size_t len, int depth)
{
    const pk_obj *ob = &k->objs[o];
    if (++k->visits > k->max_visits)
        return pk_fail(k, "checkpoint structure is too large: more than %lld objects visited "
                       "for a %lld-byte pickle (containers shared through the pickle memo?)",
                       (long long)k->max_visits, (long long)k->pkl_bytes);
    if (ob->type == PO_TENSOR) {
        if (len == 0)
            memcpy(name, "tensor", 7); /* torch.save(tensor): one unnamed tensor */
        return emit(k, &k->tens[ob->v], name);
    }
    if (ob->type != PO_DICT && ob->type != PO_LIST && ob->type != PO_TUPLE)
        return 0; /* non-tensor leaves (ints, strings, ...) are not weights */
    if (depth >= PT_MAX_DEPTH)
        return pk_fail(k, "checkpoint nests deeper than %d levels", PT_MAX_DEPTH);
    int is_dict = ob->type == PO_DICT;
    for (int64_t i = 0; i < ob->n; i += is_dict ? 2 : 1) {
        char part[32];
        const char *ps = part;
        size_t pl;
        if (is_dict) {
            const pk_obj *key = &k->objs[ob->items[i]];
            if (key->type == PO_STR) {
                ps = (const char *)key->s;
                pl = key->len;
                if (memchr(ps, '\0', pl))
                    return pk_fail(k, "a checkpoint key contains a NUL byte");
            } else if (key->type == PO_INT) {
                pl = (size_t)snprintf(part, sizeof part, "%lld", (long long)key->v);
            } else {
                continue; /* tuple/None keys cannot name a tensor */
            }
        } else {
            pl = (size_t)snprintf(part, sizeof part, "%lld", (long long)i);
        }
        size_t nl = len + (len ? 1 : 0) + pl;
        if (nl >= PT_MAX_NAME)
            return pk_fail(k, "a tensor name is longer than %d bytes", PT_MAX_NAME);
        if (len)
            name[len] = '.';
        memcpy(name + len + (len ? 1 : 0), ps, pl);
        name[nl] = '\0';
        int rc = flatten(k, ob->items[i + (is_dict ? 1 : 0)], name, nl, depth + 1);
        name[len] = '\0';
        if (rc)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- zip -- */

typedef struct zip_entry {
    const uint8_t *name;
    size_t         name_len;
    uint32_t       method, flags, crc;
    uint64_t       csize, usize, lho;
} zip_entry;

static int cmp_entry(const void *a, const void *b)
{
    const zip_entry *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c)
        return c;
    return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static const zip_entry *zip_find(const zip_entry *e, int64_t n, const uint8_t *name, size_t len)
{
    zip_entry key = {.name = name, .name_len = len};
    return bsearch(&key, e, (size_t)n, sizeof *e, cmp_entry);
}

/* Central directory of the archive in buf into *out (sorted by name). */
static int zip_read_cd(pk *k, const uint8_t *buf, size_t size, zip_entry **out, int64_t *n_out)
{
    if (size < 22)
        return pk_fail(k, "zip: no end of central directory");
    size_t lo = size > 22 + 65535 ? size - 22 - 65535 : 0;
    size_t eocd = SIZE_MAX;
    for (size_t i = size - 22 + 1; i-- > lo;)
        if (memcmp(buf + i, "PK\5\6", 4) == 0) {
            eocd = i;
            break;
        }
    if (eocd == SIZE_MAX)
        return pk_fail(k, "zip: no end of central directory (truncated file?)");
    uint64_t count = rd16(buf + eocd + 10), cd_size = rd32(buf + eocd + 12),
             cd_off = rd32(buf + eocd + 16);
    if (eocd >= 20 && memcmp(buf + eocd - 20, "PK\6\7", 4) == 0) {
        uint64_t z = rd64(buf + eocd - 20 + 8);
        if (z > size - 56 || size < 56 || memcmp(buf + z, "PK\6\6", 4) != 0)
            return pk_fail(k, "zip64: bad end of central directory record");
        count = rd64(buf + z + 32);
        cd_size = rd64(buf + z + 40);
        cd_off = rd64(buf + z + 48);
    }
    if (cd_off > size || cd_size > size - cd_off)
        return pk_fail(k, "zip: central directory [%llu, +%llu) is outside the file",
                       (unsigned long long)cd_off, (unsigned long long)cd_size);
    if (count > cd_size / 46)
        return pk_fail(k, "zip: %llu entries cannot fit a %llu-byte central directory",
                       (unsigned long long)count, (unsigned long long)cd_size);
    zip_entry *e = malloc((size_t)(count ? count : 1) * sizeof *e);
    if (!e)
        return pk_oom(k);
    const uint8_t *p = buf + cd_off, *end = p + cd_size;
    for (uint64_t i = 0; i < count; i++) {
        if (end - p < 46 || memcmp(p, "PK\1\2", 4) != 0) {
            free(e);
            return pk_fail(k, "zip: bad central directory entry %llu", (unsigned long long)i);
        }
        zip_entry *z = &e[i];
        z->flags = rd16(p + 8);
        z->method = rd16(p + 10);
        z->crc = rd32(p + 16);
        z->csize = rd32(p + 20);
        z->usize = rd32(p + 24);
        size_t nl = rd16(p + 28), xl = rd16(p + 30), cl = rd16(p + 32);
        z->lho = rd32(p + 42);
        if ((size_t)(end - p - 46) < nl + xl + cl) {
            free(e);
            return pk_fail(k, "zip: central directory entry %llu is truncated",
                           (unsigned long long)i);
        }
        z->name = p + 46;
        z->name_len = nl;
        /* Zip64 extra field: the 64-bit values of the fields saturated at 0xFFFFFFFF. */
        const uint8_t *x = p + 46 + nl, *xe = x + xl;
        while (xe - x >= 4) {
            uint32_t id = rd16(x), xs = rd16(x + 2);
            if ((size_t)(xe - x - 4) < xs)
                break;
            if (id == 1) {
                const uint8_t *q = x + 4, *qe = q + xs;
                uint64_t *f[3] = {&z->usize, &z->csize, &z->lho};
                for (int j = 0; j < 3; j++) {
                    if (*f[j] != 0xFFFFFFFFu)
                        continue;
                    if (qe - q < 8) {
                        free(e);
                        return pk_fail(k, "zip64: extra field too short");
                    }
                    *f[j] = rd64(q);
                    q += 8;
                }
            }
            x += 4 + xs;
        }
        p += 46 + nl + xl + cl;
    }
    qsort(e, (size_t)count, sizeof *e, cmp_entry);
    for (uint64_t i = 1; i < count; i++)
        if (cmp_entry(&e[i - 1], &e[i]) == 0) {
            char nb[120];
            printable(nb, sizeof nb, e[i].name, e[i].name_len);
            free(e);
            return pk_fail(k, "zip: duplicate entry '%s'", nb);
        }
    *out = e;
    *n_out = (int64_t)count;
    return 0;
}

/* Bytes of entry z: in place if STORED, inflated into owned memory if DEFLATE. */
static int zip_entry_data(pk *k, const uint8_t *buf, size_t size, const zip_entry *z,
                          int check_crc, const uint8_t **data, uint64_t *len)
{
    char nb[120];
    const char *en = printable(nb, sizeof nb, z->name, z->name_len);
    if (z->flags & 1)
        return pk_fail(k, "zip entry '%s' is encrypted", en);
    if (z->lho > size || size - z->lho < 30 || memcmp(buf + z->lho, "PK\3\4", 4) != 0)
        return pk_fail(k, "zip entry '%s': bad local header offset %llu", en,
                       (unsigned long long)z->lho);
    uint64_t off = z->lho + 30 + rd16(buf + z->lho + 26) + rd16(buf + z->lho + 28);
    if (off > size || z->csize > size - off)
        return pk_fail(k, "zip entry '%s': %llu bytes at %llu run past the end of the file "
                       "(%zu bytes; truncated?)", en, (unsigned long long)z->csize,
                       (unsigned long long)off, size);
    const uint8_t *src = buf + off;
    if (z->method == 0) {
        if (z->csize != z->usize)
            return pk_fail(k, "zip entry '%s': stored sizes differ", en);
        if (check_crc && crc_of(src, z->usize) != z->crc)
            return pk_fail(k, "zip entry '%s': CRC mismatch", en);
        *data = src;
        *len = z->usize;
        return 0;
    }
    if (z->method != 8)
        return pk_fail(k, "zip entry '%s': compression method %u is not supported", en,
                       z->method);
    if (z->usize / ZIP_MAX_RATIO > z->csize + 1 || z->usize > SIZE_MAX - 64)
        return pk_fail(k, "zip entry '%s': declared size %llu is impossible for %llu "
                       "compressed bytes", en, (unsigned long long)z->usize,
                       (unsigned long long)z->csize);
    /* One spare byte: a stream that inflates past its declared size is caught. */
    uint8_t *dst = vt_alloc((size_t)z->usize + 1);
    if (!dst)
        return vt_fail(k->st, VTOK_ENOMEM, "%s: out of memory inflating '%s'", k->name, en);
    if (add_owned(k, dst))
        return VTOK_ENOMEM;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
        return pk_oom(k);
    uint64_t in_left = z->csize, out_left = z->usize + 1;
    const uint8_t *ip = src;
    uint8_t *op = dst;
    int zr;
    for (;;) {
        if (zs.avail_in == 0 && in_left) {
            zs.next_in = (Bytef *)(uintptr_t)ip; /* zlib's API is not const */
            zs.avail_in = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            ip += zs.avail_in;
            in_left -= zs.avail_in;
        }
        if (zs.avail_out == 0 && out_left) {
            zs.next_out = op;
            zs.avail_out = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
            op += zs.avail_out;
            out_left -= zs.avail_out;
        }
        zr = inflate(&zs, Z_NO_FLUSH);
        if (zr != Z_OK)
            break; /* Z_STREAM_END, or an error */
        if ((zs.avail_in == 0 && !in_left) || (zs.avail_out == 0 && !out_left))
            break; /* input ran out, or output overflowed, before the end */
    }
    uint64_t got = zs.total_out;
    inflateEnd(&zs);
    if (zr != Z_STREAM_END || got != z->usize)
        return pk_fail(k, "zip entry '%s': corrupt or truncated deflate data", en);
    if (crc_of(dst, got) != z->crc)
        return pk_fail(k, "zip entry '%s': CRC mismatch", en);
    *data = dst;
    *len = got;
    return 0;
}

static int cmp_stor(const void *a, const void *b)
{
    const pt_storage *x = *(pt_storage *const *)a, *y = *(pt_storage *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* Storages sorted by key (groups of equal keys share bytes). */
static pt_storage **sorted_storages(pk *k)
{
    pt_storage **s = malloc((size_t)(k->n_stor ? k->n_stor : 1) * sizeof *s);
    if (!s)
        return NULL;
    for (int64_t i = 0; i < k->n_stor; i++)
        s[i] = &k->stor[i];
    qsort(s, (size_t)k->n_stor, sizeof *s, cmp_stor);
    return s;
}

/* Give every storage in a group of equal keys the bytes [data, data+len). */
static int assign(pk *k, pt_storage **g, int64_t n, const uint8_t *data, uint64_t len)
{
    for (int64_t j = 0; j < n; j++) {
        int64_t need_b;
        if (!vt_mul_ok(g[j]->numel, (int64_t)vt_dtype_size(g[j]->dtype), &need_b) ||
            (uint64_t)need_b > len) {
            char kb[80];
            return pk_fail(k, "storage '%s' declares %lld elements of %s but has %llu bytes",
                           printable(kb, sizeof kb, g[j]->key, g[j]->key_len),
                           (long long)g[j]->numel, vt_dtype_name(g[j]->dtype),
                           (unsigned long long)len);
        }
        g[j]->data = data;
        g[j]->nbytes = (int64_t)len;
        g[j]->resolved = 1;
    }
    /* len <= the file size or an inflated block's: no overflow past INT64_MAX in practice;
     * saturate anyway. */
    if (!add_ok(k->stor_bytes, (int64_t)len, &k->stor_bytes))
        k->stor_bytes = INT64_MAX;
    return 0;
}

static int parse_zip(pk *k, const uint8_t *buf, size_t size, int32_t *root)
{
    zip_entry *e = NULL;
    int64_t n = 0;
    pt_storage **ss = NULL;
    char *nm = NULL;
    int rc = zip_read_cd(k, buf, size, &e, &n);
    if (rc)
        return rc;
    /* <root>/data.pkl, <root> a single directory name. */
    const zip_entry *pkl = NULL;
    for (int64_t i = 0; i < n && !pkl; i++) {
        const uint8_t *sl = memchr(e[i].name, '/', e[i].name_len);
        if (sl && sl > e[i].name && (size_t)(e[i].name + e[i].name_len - sl) == 9 &&
            memcmp(sl, "/data.pkl", 9) == 0)
            pkl = &e[i];
    }
    if (!pkl) {
        rc = pk_fail(k, "zip has no <dir>/data.pkl: not a torch.save file");
        goto done;
    }
    size_t root_len = pkl->name_len - 8; /* "<root>/" */
    const zip_entry *bo = NULL;
    {
        char bn[PT_MAX_NAME];
        if (root_len + 9 < sizeof bn) {
            memcpy(bn, pkl->name, root_len);
            memcpy(bn + root_len, "byteorder", 9);
            bo = zip_find(e, n, (const uint8_t *)bn, root_len + 9);
        }
    }
    if (bo) {
        const uint8_t *d;
        uint64_t dl;
        if ((rc = zip_entry_data(k, buf, size, bo, 1, &d, &dl)))
            goto done;
        if (!(dl >= 6 && memcmp(d, "little", 6) == 0)) {
            rc = pk_fail(k, "checkpoint byte order is not little-endian");
            goto done;
        }
    }
    const uint8_t *pd;
    uint64_t pl;
    if ((rc = zip_entry_data(k, buf, size, pkl, 1, &pd, &pl)))
        goto done;
    k->start = k->p = pd;
    k->end = pd + pl;
    k->pkl_bytes = (int64_t)pl;
    if ((rc = unpickle(k, root)))
        goto done;

    ss = sorted_storages(k);
    nm = malloc(root_len + 5 + 256 + 1);
    if (!ss || !nm) {
        rc = pk_oom(k);
        goto done;
    }
    memcpy(nm, pkl->name, root_len);
    memcpy(nm + root_len, "data/", 5);
    for (int64_t i = 0; i < k->n_stor;) {
        int64_t j = i + 1;
        while (j < k->n_stor && cmp_stor(&ss[i], &ss[j]) == 0)
            j++;
        char kb[80];
        const char *kn = printable(kb, sizeof kb, ss[i]->key, ss[i]->key_len);
        const zip_entry *z = NULL;
        if (ss[i]->key_len <= 256) {
            memcpy(nm + root_len + 5, ss[i]->key, ss[i]->key_len);
            z = zip_find(e, n, (const uint8_t *)nm, root_len + 5 + ss[i]->key_len);
        }
        if (!z) {
            rc = pk_fail(k, "storage '%s' has no zip entry", kn);
            goto done;
        }
        const uint8_t *d;
        uint64_t dl;
        if ((rc = zip_entry_data(k, buf, size, z, 0, &d, &dl)) ||
            (rc = assign(k, ss + i, j - i, d, dl)))
            goto done;
        i = j;
    }
done:
    free(nm);
    free(ss);
    free(e);
    return rc;
}

/* ------------------------------------------------------------- legacy -- */

static int parse_legacy(pk *k, const uint8_t *buf, size_t size, int32_t *root)
{
    int32_t r;
    k->start = k->p = buf;
    k->end = buf + size;
    int rc = unpickle(k, &r);
    if (rc)
        return rc;
    if (k->objs[r].type != PO_BIGINT || k->objs[r].len != 10 ||
        memcmp(k->objs[r].s, LEGACY_MAGIC, 10) != 0)
        return pk_fail(k, "not a torch.save file (bad legacy magic number)");
    if ((rc = unpickle(k, &r)))
        return rc;
    if (k->objs[r].type != PO_INT || k->objs[r].v != 1001)
        return pk_fail(k, "legacy protocol version is not 1001");
    if ((rc = unpickle(k, &r)))
        return rc;
    const pk_obj *si = &k->objs[r];
    if (si->type != PO_DICT)
        return pk_fail(k, "legacy sys_info is not a dict");
    for (int64_t i = 0; i + 1 < si->n; i += 2) {
        const pk_obj *key = &k->objs[si->items[i]], *v = &k->objs[si->items[i + 1]];
        if (key->type == PO_STR && key->len == 13 && memcmp(key->s, "little_endian", 13) == 0 &&
            v->type == PO_BOOL && !v->v)
            return pk_fail(k, "checkpoint was saved big-endian");
    }
    const uint8_t *obj_start = k->p;
    if ((rc = unpickle(k, root)))
        return rc;
    k->pkl_bytes = k->p - obj_start;
    int32_t keys;
    if ((rc = unpickle(k, &keys)))
        return rc;
    if (k->objs[keys].type != PO_LIST)
        return pk_fail(k, "legacy storage key list is not a list");
    pt_storage **ss = sorted_storages(k);
    if (!ss)
        return pk_oom(k);
    const uint8_t *p = k->p;
    for (int64_t i = 0; i < k->objs[keys].n && !rc; i++) {
        const pk_obj *ko = &k->objs[k->objs[keys].items[i]];
        if (ko->type != PO_STR) {
            rc = pk_fail(k, "legacy storage key %lld is not a string", (long long)i);
            break;
        }
        pt_storage probe = {.key = ko->s, .key_len = ko->len};
        pt_storage *pp = &probe;
        pt_storage **hit = bsearch(&pp, ss, (size_t)k->n_stor, sizeof *ss, cmp_stor);
        char kb[80];
        const char *kn = printable(kb, sizeof kb, ko->s, ko->len);
        if (!hit) {
            rc = pk_fail(k, "legacy storage '%s' is not used by any tensor", kn);
            break;
        }
        while (hit > ss && cmp_stor(hit - 1, &pp) == 0)
            hit--;
        int64_t g = 0;
        while (hit + g < ss + k->n_stor && cmp_stor(hit + g, &pp) == 0)
            g++;
        size_t esz = vt_dtype_size((*hit)->dtype);
        for (int64_t j = 0; j < g; j++)
            if (vt_dtype_size(hit[j]->dtype) != esz || hit[j]->resolved)
                rc = pk_fail(k, "legacy storage '%s' is listed twice or with two dtypes", kn);
        if (rc)
            break;
        if ((size_t)(k->end - p) < 8) {
            rc = pk_fail(k, "legacy storage '%s': file truncated", kn);
            break;
        }
        uint64_t cnt = rd64(p);
        p += 8;
        if (cnt > (uint64_t)(k->end - p) / esz) {
            rc = pk_fail(k, "legacy storage '%s': %llu elements run past the end of the file "
                         "(truncated?)", kn, (unsigned long long)cnt);
            break;
        }
        rc = assign(k, hit, g, p, cnt * esz);
        p += cnt * esz;
    }
    free(ss);
    return rc;
}

/* ---------------------------------------------------------- public API -- */

int vt_torch_detect(const char *path, const void *buf, size_t size)
{
    const uint8_t *b = buf;
    if (b && size >= 4 && memcmp(b, "PK\3\4", 4) == 0)
        return 1;
    if (b && size >= 14 && memcmp(b, "\x80\x02\x8a\x0a", 4) == 0 &&
        memcmp(b + 4, LEGACY_MAGIC, 10) == 0)
        return 1;
    return path && (has_suffix(path, ".pth") || has_suffix(path, ".pt") ||
                    has_suffix(path, ".bin") || has_suffix(path, ".ckpt"));
}

void vt_torch_release(vt_pt_checkpoint *c)
{
    if (!c)
        return;
    for (int64_t i = 0; i < c->n_tensors; i++)
        free(c->tensors[i].name);
    free(c->tensors);
    for (int64_t i = 0; i < c->n_owned; i++)
        vt_free(c->owned[i]);
    free(c->owned);
    memset(c, 0, sizeof *c);
}

int vt_torch_parse(const void *buf, size_t size, const char *name, vt_pt_checkpoint *out,
                   vtok_status *st)
{
    if (!out)
        return vt_fail(st, VTOK_EINVAL, "vt_torch_parse: out is NULL");
    memset(out, 0, sizeof *out);
    if (!buf && size)
        return vt_fail(st, VTOK_EINVAL, "vt_torch_parse: buf is NULL");
    pk k;
    memset(&k, 0, sizeof k);
    k.name = name ? name : "<memory>";
    k.st = st;
    k.out = out;
    const uint8_t *b = buf;
    int32_t root = -1;
    int rc;
    if (size >= 4 && memcmp(b, "PK\3\4", 4) == 0)
        rc = parse_zip(&k, b, size, &root);
    else if (size >= 2 && b[0] == 0x80)
        rc = parse_legacy(&k, b, size, &root);
    else
        rc = pk_fail(&k, "not a PyTorch checkpoint (neither a zip nor a legacy pickle)");
    if (!rc) {
        set_budgets(&k, size);
        char nm[PT_MAX_NAME + 8];
        nm[0] = '\0';
        rc = flatten(&k, root, nm, 0, 0);
    }
    for (int64_t i = 0; i < k.n_objs; i++)
        free(k.objs[i].items);
    free(k.objs);
    free(k.stack);
    free(k.marks);
    free(k.memo);
    free(k.stor);
    free(k.tens);
    if (rc)
        vt_torch_release(out);
    return rc;
}

/* ------------------------------------------------ safetensors writing -- */

int vtok_convert_to_safetensors(const char *in_path, const char *out_path, vtok_status *st)
{
    if (!in_path || !out_path)
        return vt_fail(st, VTOK_EINVAL, "vtok_convert_to_safetensors: NULL path");
    vt_weights *w = NULL;
    int rc = vt_weights_open(in_path, 1, &w, st);
    if (rc)
        return rc;
    int64_t n = vt_weights_count(w);
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = h ? cJSON_AddObjectToObject(h, "__metadata__") : NULL;
    char *hdr = NULL;
    FILE *f = NULL;
    if (!meta || !cJSON_AddStringToObject(meta, "format", "pt")) {
        rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
        goto done;
    }
    /* vt_weights_at enumerates by name: the data goes in the same order. */
    int64_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        const vt_st_tensor *t = vt_weights_at(w, i);
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        if (!offs || !cJSON_AddStringToObject(e, "dtype", vt_dtype_name(t->dtype))) {
            rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
            goto done;
        }
        int ok = 1;
        for (int d = 0; d < t->n_dims; d++)
            ok &= cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        ok &= cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        ok &= cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + (int64_t)t->nbytes)));
        if (!ok) {
            rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
            goto done;
        }
        off += (int64_t)t->nbytes;
    }
    hdr = cJSON_PrintUnformatted(h);
    if (!hdr) {
        rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
        goto done;
    }
    size_t hl = strlen(hdr), pad = (8 - hl % 8) % 8; /* 8 + N multiple of 8 */
    uint64_t total = hl + pad;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)(total >> (8 * i));
    /* A temp file renamed over out_path when complete: the input may be the
     * same file (still mapped), and a failed write must not touch out_path. */
    vt_out_file o;
    if ((rc = vt_out_open(&o, out_path, st)))
        goto done;
    f = o.f;
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(hdr, 1, hl, f) == hl;
    for (size_t i = 0; ok && i < pad; i++)
        ok = fputc(' ', f) != EOF;
    for (int64_t i = 0; ok && i < n; i++) {
        const vt_st_tensor *t = vt_weights_at(w, i);
        ok = t->nbytes == 0 || fwrite(t->data, 1, t->nbytes, f) == t->nbytes;
    }
    f = NULL;
    if ((rc = vt_out_commit(&o, ok, st)))
        goto done;
    rc = n > INT32_MAX ? INT32_MAX : (int)n;
done:
    if (f)
        fclose(f);
    cJSON_free(hdr);
    cJSON_Delete(h);
    vt_weights_close(w);
    return rc;
}
