/*
 * test_torch.c - unit tests for src/io/torch.c (PyTorch checkpoints).
 *
 * Pickles are assembled opcode by opcode in memory, then wrapped in the
 * legacy container (consecutive pickles + raw storages) or a minimal STORED
 * zip, so each case states exactly which bytes the reader sees. Covered:
 * values, dtypes, views (transpose, offset) of one shared storage, 0-d and
 * Parameters, the '.'-flattening of nested dicts and lists, the route through
 * vt_weights_open_mem / vt_weights_f32, and the refusals (foreign globals,
 * bad memo, stack underflow, out-of-storage views, limits), the flattening
 * budgets (stride-0 bombs, memo-shared dicts) and one copy of a view reached
 * through two names. Every prefix of a
 * valid image must fail cleanly. Returns non-zero on failure.
 */
#include "io/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "check.h"


/* ------------------------------------------------------ byte builder -- */

typedef struct buf {
    uint8_t data[8192];
    size_t  n;
} buf;

static void put(buf *b, const void *p, size_t n)
{
    if (b->n + n > sizeof b->data) {
        fprintf(stderr, "test buffer overflow\n");
        exit(2);
    }
    memcpy(b->data + b->n, p, n);
    b->n += n;
}
static void op(buf *b, uint8_t c) { put(b, &c, 1); }
static void le(buf *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        op(b, (uint8_t)(v >> (8 * i)));
}
static void ustr(buf *b, const char *s)
{
    op(b, 'X');
    le(b, strlen(s), 4);
    put(b, s, strlen(s));
}
static void bint(buf *b, int32_t v)
{
    op(b, 'J');
    le(b, (uint32_t)v, 4);
}
static void glob(buf *b, const char *mod, const char *name)
{
    op(b, 'c');
    put(b, mod, strlen(mod));
    op(b, '\n');
    put(b, name, strlen(name));
    op(b, '\n');
}

/* _rebuild_tensor_v2(storage(key, type, numel), offset, size, stride, False, ()) */
static void tensor(buf *b, const char *type, const char *key, int numel, int offset, int nd,
                   const int *size, const int *stride)
{
    glob(b, "torch._utils", "_rebuild_tensor_v2");
    op(b, '(');
    op(b, '(');
    ustr(b, "storage");
    glob(b, "torch", type);
    ustr(b, key);
    ustr(b, "cpu");
    bint(b, numel);
    op(b, 't');
    op(b, 'Q');
    bint(b, offset);
    op(b, '(');
    for (int d = 0; d < nd; d++)
        bint(b, size[d]);
    op(b, 't');
    op(b, '(');
    for (int d = 0; d < nd; d++)
        bint(b, stride[d]);
    op(b, 't');
    op(b, 0x89);
    op(b, ')');
    op(b, 't');
    op(b, 'R');
}

/* The main pickle of the good cases:
 *   {"model": OrderedDict(w=[2,3] f32 storage "0", t=w.T, s=0-d i64 "1",
 *              p=Parameter(view of "0" at offset 3, [3]))  + BUILD _metadata,
 *    "list": [tensor "0" [2], 7], "epoch": 3, 5: tensor "1" 0-d} */
static void good_pickle(buf *b)
{
    static const int s23[] = {2, 3}, st23[] = {3, 1}, s32[] = {3, 2}, st32[] = {1, 3};
    static const int s3[] = {3}, st1[] = {1}, s2[] = {2};
    op(b, 0x80);
    op(b, 2);
    op(b, '}');
    op(b, '(');
    ustr(b, "model");
    glob(b, "collections", "OrderedDict");
    op(b, 'q');
    op(b, 0);
    op(b, ')');
    op(b, 'R');
    op(b, '(');
    ustr(b, "w");
    tensor(b, "FloatStorage", "0", 6, 0, 2, s23, st23);
    ustr(b, "t");
    tensor(b, "FloatStorage", "0", 6, 0, 2, s32, st32);
    ustr(b, "s");
    tensor(b, "LongStorage", "1", 1, 0, 0, NULL, NULL);
    ustr(b, "p");
    glob(b, "torch._utils", "_rebuild_parameter");
    tensor(b, "FloatStorage", "0", 6, 3, 1, s3, st1);
    op(b, 0x88);
    op(b, 'h');
    op(b, 0);
    op(b, ')');
    op(b, 'R');
    op(b, 0x87);
    op(b, 'R');
    op(b, 'u');
    op(b, '}'); /* BUILD state: {"_metadata": {}} */
    ustr(b, "_metadata");
    op(b, '}');
    op(b, 's');
    op(b, 'b');
    ustr(b, "list");
    op(b, ']');
    op(b, '(');
    tensor(b, "FloatStorage", "0", 6, 4, 1, s2, st1);
    bint(b, 7);
    op(b, 'e');
    ustr(b, "epoch");
    bint(b, 3);
    bint(b, 5);
    tensor(b, "LongStorage", "1", 1, 0, 0, NULL, NULL);
    op(b, 'u');
    op(b, '.');
}

static const float F0[6] = {1, 2, 3, 4, 5, 6};
static const int64_t I1 = -42;

static void legacy_wrap(buf *out, const buf *main_pkl)
{
    static const uint8_t magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                    0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
    put(out, magic, sizeof magic);
    op(out, 0x80), op(out, 2), op(out, 'M'), le(out, 1001, 2), op(out, '.');
    op(out, 0x80), op(out, 2), op(out, '}'), ustr(out, "little_endian"), op(out, 0x88),
        op(out, 's'), op(out, '.');
    put(out, main_pkl->data, main_pkl->n);
    op(out, 0x80), op(out, 2), op(out, ']'), op(out, '('), ustr(out, "0"), ustr(out, "1"),
        op(out, 'e'), op(out, '.');
    le(out, 6, 8);
    put(out, F0, sizeof F0);
    le(out, 1, 8);
    put(out, &I1, 8);
}

/* Minimal STORED zip writer: local headers, central directory, EOCD. */
typedef struct zent {
    const char *name;
    const void *data;
    size_t      n;
    size_t      off;
} zent;

static void zip_wrap(buf *out, zent *e, int n)
{
    for (int i = 0; i < n; i++) {
        e[i].off = out->n;
        uint32_t crc = (uint32_t)crc32(0, e[i].data, (uInt)e[i].n);
        put(out, "PK\3\4", 4);
        le(out, 20, 2), le(out, 0, 2), le(out, 0, 2), le(out, 0, 4);
        le(out, crc, 4), le(out, e[i].n, 4), le(out, e[i].n, 4);
        le(out, strlen(e[i].name), 2), le(out, 0, 2);
        put(out, e[i].name, strlen(e[i].name));
        put(out, e[i].data, e[i].n);
    }
    size_t cd = out->n;
    for (int i = 0; i < n; i++) {
        uint32_t crc = (uint32_t)crc32(0, e[i].data, (uInt)e[i].n);
        put(out, "PK\1\2", 4);
        le(out, 20, 2), le(out, 20, 2), le(out, 0, 2), le(out, 0, 2), le(out, 0, 4);
        le(out, crc, 4), le(out, e[i].n, 4), le(out, e[i].n, 4);
        le(out, strlen(e[i].name), 2), le(out, 0, 2), le(out, 0, 2), le(out, 0, 2);
        le(out, 0, 2), le(out, 0, 4), le(out, e[i].off, 4);
        put(out, e[i].name, strlen(e[i].name));
    }
    size_t cd_end = out->n;
    put(out, "PK\5\6", 4);
    le(out, 0, 2), le(out, 0, 2), le(out, (uint64_t)n, 2), le(out, (uint64_t)n, 2);
    le(out, cd_end - cd, 4), le(out, cd, 4), le(out, 0, 2);
}

static void torch_zip(buf *out, const buf *pkl)
{
    zent e[4] = {{"xyz/data.pkl", pkl->data, pkl->n, 0},
                 {"xyz/data/0", F0, sizeof F0, 0},
                 {"xyz/data/1", &I1, 8, 0},
                 {"xyz/version", "3\n", 2, 0}};
    zip_wrap(out, e, 4);
}

/* ------------------------------------------------------------- tests -- */

static const vt_pt_tensor *find(const vt_pt_checkpoint *c, const char *name)
{
    for (int64_t i = 0; i < c->n_tensors; i++)
        if (strcmp(c->tensors[i].name, name) == 0)
            return &c->tensors[i];
    return NULL;
}

static float fat(const vt_pt_tensor *t, int i)
{
    float v;
    memcpy(&v, (const uint8_t *)t->data + 4 * i, 4);
    return v;
}

static void check_good(const buf *img, const char *how)
{
    vt_pt_checkpoint c;
    vtok_status st = {0};
    int rc = vt_torch_parse(img->data, img->n, how, &c, &st);
    CHECK(rc == 0, "%s: %s", how, st.msg);
    if (rc)
        return;
    CHECK(c.n_tensors == 6, "%s: %lld tensors", how, (long long)c.n_tensors);
    const vt_pt_tensor *w = find(&c, "model.w"), *t = find(&c, "model.t");
    const vt_pt_tensor *s = find(&c, "model.s"), *p = find(&c, "model.p");
    const vt_pt_tensor *l0 = find(&c, "list.0"), *i5 = find(&c, "5");
    CHECK(w && w->dtype == VT_F32 && w->n_dims == 2 && w->shape[0] == 2 && w->shape[1] == 3 &&
          w->nbytes == 24 && fat(w, 5) == 6.0f, "%s: model.w", how);
    /* t = w.T: [[1,4],[2,5],[3,6]], materialised */
    CHECK(t && t->n_dims == 2 && t->shape[0] == 3 && t->shape[1] == 2 && fat(t, 0) == 1 &&
          fat(t, 1) == 4 && fat(t, 2) == 2 && fat(t, 5) == 6, "%s: model.t", how);
    int64_t sv = 0;
    if (s)
        memcpy(&sv, s->data, 8);
    CHECK(s && s->dtype == VT_I64 && s->n_dims == 0 && s->numel == 1 && sv == -42,
          "%s: model.s", how);
    CHECK(p && p->n_dims == 1 && p->shape[0] == 3 && fat(p, 0) == 4 && fat(p, 2) == 6,
          "%s: model.p", how);
    CHECK(l0 && l0->shape[0] == 2 && fat(l0, 0) == 5 && fat(l0, 1) == 6, "%s: list.0", how);
    CHECK(i5 && i5->dtype == VT_I64, "%s: int key", how);
    CHECK(!find(&c, "list.1") && !find(&c, "epoch"), "%s: non-tensor leaves skipped", how);
    vt_torch_release(&c);

    /* Every prefix fails cleanly (ASan/UBSan watch the reads). */
    int all_fail = 1;
    for (size_t cut = 0; cut < img->n; cut++) {
        uint8_t *cp = malloc(cut ? cut : 1); /* exact size: overreads are caught */
        memcpy(cp, img->data, cut);
        if (vt_torch_parse(cp, cut, how, &c, &st) == 0) {
            all_fail = 0;
            fprintf(stderr, "%s: prefix %zu parsed\n", how, cut);
            vt_torch_release(&c);
        }
        free(cp);
    }
    CHECK(all_fail, "%s: some prefix parsed", how);
}

/* A bad main pickle inside an otherwise valid zip must fail naming `want`. */
static void bad(const buf *pkl, const char *want, int line)
{
    static buf z;
    z.n = 0;
    torch_zip(&z, pkl);
    vt_pt_checkpoint c;
    vtok_status st = {0};
    int rc = vt_torch_parse(z.data, z.n, "bad.pt", &c, &st);
    n_check++;
    if (rc == 0 || !strstr(st.msg, want) || !strstr(st.msg, "bad.pt")) {
        n_fail++;
        fprintf(stderr, "FAIL line %d: rc %d, message '%s', want '%s'\n", line, rc, st.msg,
                want);
    }
    if (rc == 0)
        vt_torch_release(&c);
}

static void raw(buf *b, const char *bytes, size_t n)
{
    b->n = 0;
    put(b, bytes, n);
}
#define BAD_RAW(bytes, want)                                                                  \
    do {                                                                                      \
        raw(&pb, bytes, sizeof bytes - 1);                                                    \
        bad(&pb, want, __LINE__);                                                             \
    } while (0)

static void test_refusals(void)
{
    static buf pb;
    BAD_RAW("\x80\x02" "cos\nsystem\nX\x02\x00\x00\x00ls\x85R.", "refusing pickle global 'os.system'");
    BAD_RAW("\x80\x04\x8c\x08" "builtins\x8c\x04" "eval\x93.", "refusing pickle global 'builtins.eval'");
    BAD_RAW("\x80\x02" "c__builtin__\ngetattr\n.", "refusing pickle global '__builtin__.getattr'");
    BAD_RAW("\x80\x02" "ctorch\nload\n.", "refusing pickle global 'torch.load'");
    BAD_RAW("\x80\x02" "ctorch._utils\n_rebuild", "GLOBAL truncated");
    BAD_RAW("\x80\x02}h\x05.", "memo index 5");
    BAD_RAW("\x80\x02}j\xff\xff\xff\xff.", "memo index 4294967295");
    BAD_RAW("\x80\x02}r\xff\xff\xff\x7f.", "over the limit");
    BAD_RAW("\x80\x02s.", "underflow");
    BAD_RAW("\x80\x02(\x85.", "underflow");
    BAD_RAW("\x80\x02.", "underflow");
    BAD_RAW("\x80\x02t.", "MARK expected");
    BAD_RAW("\x80\x06}.", "protocol 6");
    BAD_RAW("\x80\x02}i.", "opcode 0x69");
    BAD_RAW("\x80\x02X\xff\xff\xff\x7f" "abc.", "truncated");
    BAD_RAW("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff.", "truncated");
    BAD_RAW("\x80\x02T\xff\xff\xff\xff.", "negative");
    BAD_RAW("\x80\x02P0\n.", "PERSID");
    BAD_RAW("\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n)\x81.", "refusing NEWOBJ");
    BAD_RAW("\x80\x02" "ctorch\nFloatStorage\n)R.", "refusing to call");
    BAD_RAW("\x80\x02K\x01)R.", "not an allowed global");
    BAD_RAW("\x80\x02" "ccollections\nOrderedDict\nK\x01R.", "not a tuple");
    BAD_RAW("\x80\x02]K\x01K\x02s.", "non-dict");
    BAD_RAW("\x80\x02K\x01K\x02" "b.", "BUILD");
    BAD_RAW("\x80\x02(X\x01\x00\x00\x00xQ.", "persistent id");
    BAD_RAW("\x80\x02}(K\x01u.", "odd number");

    /* Tensors that do not fit their storage (6 floats in "0"). */
    static const int sz[] = {2, 3}, st_ok[] = {3, 1}, st_big[] = {4, 1}, big[] = {1 << 30, 4};
    static const int st_huge[] = {1 << 30, 1 << 30};
    static const int many[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    struct { int off, nd; const int *size, *stride; const char *want; } cases[] = {
        {1, 2, sz, st_ok, "storage has 6"},
        {0, 2, sz, st_big, "storage has 6"},
        {0, 2, big, st_huge, "storage has"},
        {-1, 2, sz, st_ok, "not (storage"},
        {0, 9, many, many, "at most 8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pb.n = 0;
        op(&pb, 0x80), op(&pb, 2), op(&pb, '}'), ustr(&pb, "a");
        tensor(&pb, "FloatStorage", "0", 6, cases[i].off, cases[i].nd, cases[i].size,
               cases[i].stride);
        op(&pb, 's'), op(&pb, '.');
        bad(&pb, cases[i].want, __LINE__);
    }
    /* A storage claiming more elements than its entry has, and a missing entry. */
    pb.n = 0;
    op(&pb, 0x80), op(&pb, 2), op(&pb, '}'), ustr(&pb, "a");
    tensor(&pb, "FloatStorage", "0", 7, 0, 2, sz, st_ok);
    op(&pb, 's'), op(&pb, '.');
    bad(&pb, "declares 7 elements", __LINE__);
    pb.n = 0;
    op(&pb, 0x80), op(&pb, 2), op(&pb, '}'), ustr(&pb, "a");
    tensor(&pb, "FloatStorage", "9", 6, 0, 2, sz, st_ok);
    op(&pb, 's'), op(&pb, '.');
    bad(&pb, "no zip entry", __LINE__);
    /* Nesting deeper than the limit. */
    pb.n = 0;
    op(&pb, 0x80), op(&pb, 2);
    for (int i = 0; i < 80; i++)
        op(&pb, ']');
    for (int i = 0; i < 79; i++)
        op(&pb, 'a');
    op(&pb, '.');
    bad(&pb, "deeper", __LINE__);
    /* A list appended to itself: flattening must terminate. */
    raw(&pb, "\x80\x02]q\x00h\x00" "a.", 9);
    bad(&pb, "deeper", __LINE__);
}

/* Finding 6: what a small pickle flattens to is budgeted; a tensor reached
 * through many paths is materialised once. */
static void test_budgets(void)
{
    static buf pb, z;
    static const int row6[] = {1000, 6}, st06[] = {0, 1}, huge[] = {1 << 24, 6};
    static const int s23[] = {2, 3}, st_t[] = {1, 2};
    /* A stride-0 broadcast of "0": 24 KB is fine, 384 MB from 24 bytes is not. */
    pb.n = 0;
    op(&pb, 0x80), op(&pb, 2), op(&pb, '}'), ustr(&pb, "a");
    tensor(&pb, "FloatStorage", "0", 6, 0, 2, huge, st06);
    op(&pb, 's'), op(&pb, '.');
    bad(&pb, "over the limit", __LINE__);
    /* {"a": x, "b": x} with x = [1000, 6] broadcast and {"t": y, "u": y}, y a
     * transposed view: one copy each, shared by both names. */
    pb.n = 0;
    op(&pb, 0x80), op(&pb, 2), op(&pb, '}'), op(&pb, '(');
    ustr(&pb, "a");
    tensor(&pb, "FloatStorage", "0", 6, 0, 2, row6, st06);
    op(&pb, 'q'), op(&pb, 0);
    ustr(&pb, "b"), op(&pb, 'h'), op(&pb, 0);
    ustr(&pb, "t");
    tensor(&pb, "FloatStorage", "0", 6, 0, 2, s23, st_t);
    op(&pb, 'q'), op(&pb, 1);
    ustr(&pb, "u"), op(&pb, 'h'), op(&pb, 1);
    op(&pb, 'u'), op(&pb, '.');
    z.n = 0;
    torch_zip(&z, &pb);
    vt_pt_checkpoint c;
    vtok_status st = {0};
    int rc = vt_torch_parse(z.data, z.n, "shared", &c, &st);
    CHECK(rc == 0, "shared views: %s", st.msg);
    if (rc == 0) {
        const vt_pt_tensor *a = find(&c, "a"), *b = find(&c, "b");
        const vt_pt_tensor *t = find(&c, "t"), *u = find(&c, "u");
        CHECK(a && b && a->numel == 6000 && a->data == b->data && fat(a, 5999) == 6 &&
              fat(a, 6) == 1, "broadcast shared once");
        CHECK(t && u && t->data == u->data && fat(t, 1) == 3, "transposed view shared once");
        CHECK(c.n_owned == 2, "%lld owned blocks, want 2", (long long)c.n_owned);
        vt_torch_release(&c);
    }
    /* Dicts shared through the memo: d_i = {"a": d_(i-1), "b": d_(i-1)}, 2^30
     * paths from ~400 bytes, refused by the visit budget. */
    static const int one[] = {1}, st1[] = {1};
    pb.n = 0;
    op(&pb, 0x80), op(&pb, 2);
    tensor(&pb, "FloatStorage", "0", 6, 0, 1, one, st1);
    op(&pb, 'q'), op(&pb, 0);
    for (int i = 1; i <= 30; i++) {
        op(&pb, '0'), op(&pb, '}'), op(&pb, '(');
        ustr(&pb, "a"), op(&pb, 'h'), op(&pb, (uint8_t)(i - 1));
        ustr(&pb, "b"), op(&pb, 'h'), op(&pb, (uint8_t)(i - 1));
        op(&pb, 'u'), op(&pb, 'q'), op(&pb, (uint8_t)i);
    }
    op(&pb, '.');
    bad(&pb, "shared through the pickle memo", __LINE__);
}

static void test_weights_route(const buf *zimg)
{
    vt_weights *w = NULL;
    vtok_status st = {0};
    int rc = vt_weights_open_mem(zimg->data, zimg->n, "mem", &w, &st);
    CHECK(rc == 0, "open_mem: %s", st.msg);
    if (rc)
        return;
    CHECK(vt_weights_count(w) == 6, "count %lld", (long long)vt_weights_count(w));
    int64_t shape[2] = {-1, -1};
    const float *p = NULL;
    rc = vt_weights_f32(w, "model.t", 2, shape, &p, &st);
    CHECK(rc == 0 && shape[0] == 3 && shape[1] == 2 && p[1] == 4.0f, "f32 model.t: %s", st.msg);
    rc = vt_weights_f32(w, "model.s", 0, shape, &p, &st);
    CHECK(rc == VTOK_EUNSUPPORTED, "I64 is not F32: rc %d", rc);
    vt_weights_close(w);
}

int main(void)
{
    static buf pkl, leg, zimg;
    good_pickle(&pkl);
    legacy_wrap(&leg, &pkl);
    torch_zip(&zimg, &pkl);
    check_good(&leg, "legacy");
    check_good(&zimg, "zip");
    test_refusals();
    test_budgets();
    test_weights_route(&zimg);

    CHECK(vt_torch_detect(NULL, zimg.data, zimg.n) == 1, "zip by content");
    CHECK(vt_torch_detect(NULL, leg.data, leg.n) == 1, "legacy by content");
    CHECK(vt_torch_detect("m.pth", "x", 1) == 1 && vt_torch_detect("m.ckpt", NULL, 0) == 1,
          "by name");
    CHECK(vt_torch_detect("m.safetensors", "abcd", 4) == 0, "not torch");

    printf("test_torch: %d checks, %d failures\n", n_check, n_fail);
    return n_fail != 0;
}
