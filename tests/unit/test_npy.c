/*
 * test_npy.c - unit tests for src/io/npy.c.
 *
 * Round-trips arrays through vt_npy_write_f32 / vt_npy_read_f32 (bit-exact,
 * numpy's header layout), reads hand-built version 1.0/2.0/3.0 files with
 * f2/f4/f8 data and unusual but legal headers, and checks that each bad
 * header, dtype, truncation and size case fails with the right code and a
 * message naming the file and the problem. Returns non-zero on failure.
 */
#include "io/io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static char tmp[256];

static const char *tpath(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, name);
    return buf[k];
}

/* Whole file into a malloc'ed buffer (test files are tiny). */
static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *b = malloc(1 << 20);
    *n = fread(b, 1, 1 << 20, f);
    fclose(f);
    return b;
}

/* A .npy image: magic, version, header length of the given width, header
 * text verbatim, data. Written to tmp/name. */
static void write_npy(const char *name, int major, const char *header, const void *data,
                      size_t dlen)
{
    FILE *f = fopen(tpath(name), "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", tpath(name));
        exit(2);
    }
    uint8_t pre[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', (uint8_t)major, 0};
    size_t hl = strlen(header), pl;
    if (major == 1) {
        pre[8] = (uint8_t)hl;
        pre[9] = (uint8_t)(hl >> 8);
        pl = 10;
    } else {
        for (int i = 0; i < 4; i++)
            pre[8 + i] = (uint8_t)(hl >> (8 * i));
        pl = 12;
    }
    fwrite(pre, 1, pl, f);
    fwrite(header, 1, hl, f);
    if (dlen)
        fwrite(data, 1, dlen, f);
    fclose(f);
}

/* Reading tmp/name must fail with code and a message naming the file and `what`;
 * the in-memory reader must agree. */
static void expect_fail(const char *name, int code, const char *what, int line)
{
    vtok_status st = {0};
    float *d = (float *)1;
    int nd = -1;
    int64_t sh[VT_MAX_DIMS];
    int rc = vt_npy_read_f32(tpath(name), &d, &nd, sh, &st);
    n_check++;
    if (rc != code || d != NULL || st.code != code || !strstr(st.msg, what) ||
        !strstr(st.msg, name)) {
        n_fail++;
        fprintf(stderr, "FAIL line %d: read %s: rc=%d (want %d) msg='%s' (want '%s')\n", line,
                name, rc, code, st.msg, what);
    }
    if (rc == 0)
        vt_free(d);

    size_t n = 0;
    uint8_t *img = slurp(tpath(name), &n);
    if (!img)
        return;
    vtok_status st2 = {0};
    rc = vt_npy_read_f32_mem(img, n, name, &d, &nd, sh, &st2);
    n_check++;
    if (rc != code || !strstr(st2.msg, what)) {
        n_fail++;
        fprintf(stderr, "FAIL line %d: mem read %s: rc=%d (want %d) msg='%s'\n", line, name, rc,
                code, st2.msg);
    }
    if (rc == 0)
        vt_free(d);
    free(img);
}
#define EXPECT_FAIL(name, code, what) expect_fail(name, code, what, __LINE__)

static int read_ok(const char *name, float **d, int *nd, int64_t *sh)
{
    vtok_status st = {0};
    int rc = vt_npy_read_f32(tpath(name), d, nd, sh, &st);
    CHECK(rc == 0, "read %s: %s", name, st.msg);
    return rc;
}

/* ---------------------------------------------------------- round trip -- */

static void roundtrip(const char *name, int n_dims, const int64_t *shape, const char *want_shape)
{
    int64_t numel = 1;
    for (int i = 0; i < n_dims; i++)
        numel *= shape[i];
    float *src = malloc((size_t)(numel ? numel : 1) * sizeof *src);
    for (int64_t i = 0; i < numel; i++)
        src[i] = (float)i * 0.37f - 3.0f;
    if (numel > 2) {
        src[0] = -0.0f;
        src[1] = NAN;
        src[2] = INFINITY;
    }
    vtok_status st = {0};
    int rc = vt_npy_write_f32(tpath(name), src, n_dims, shape, &st);
    CHECK(rc == 0, "write %s: %s", name, st.msg);

    size_t n = 0;
    uint8_t *img = slurp(tpath(name), &n);
    CHECK(img != NULL, "%s: file missing", name);
    if (img) {
        size_t hl = (size_t)img[8] | (size_t)img[9] << 8;
        CHECK(memcmp(img, "\x93NUMPY\x01\x00", 8) == 0, "%s: magic/version", name);
        CHECK((10 + hl) % 64 == 0, "%s: header not 64-aligned (%zu)", name, hl);
        CHECK(n == 10 + hl + (size_t)numel * 4, "%s: file size %zu", name, n);
        CHECK(img[10 + hl - 1] == '\n', "%s: header must end in newline", name);
        char want[160];
        snprintf(want, sizeof want, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
                 want_shape);
        CHECK(hl >= strlen(want) && memcmp(img + 10, want, strlen(want)) == 0,
              "%s: header text '%.*s'", name, (int)hl, (const char *)img + 10);
        for (size_t i = 10 + strlen(want); i + 1 < 10 + hl; i++)
            CHECK(img[i] == ' ', "%s: padding must be spaces", name);
    }
    free(img);

    float *d = NULL;
    int nd = -1;
    int64_t sh[VT_MAX_DIMS];
    if (read_ok(name, &d, &nd, sh) == 0) {
        CHECK(nd == n_dims, "%s: n_dims %d", name, nd);
        for (int i = 0; i < n_dims && i < nd; i++)
            CHECK(sh[i] == shape[i], "%s: shape[%d]", name, i);
        CHECK(numel == 0 || memcmp(d, src, (size_t)numel * 4) == 0, "%s: data differs", name);
        CHECK(((uintptr_t)d % 64) == 0, "%s: vt_alloc alignment", name);
        vt_free(d);
    }
    free(src);
}

static void test_roundtrip(void)
{
    const int64_t s2[2] = {2, 3}, s1[1] = {5}, s4[4] = {2, 3, 7, 5}, sz[2] = {0, 3};
    const int64_t s8[8] = {1, 2, 1, 2, 1, 2, 1, 3};
    roundtrip("r2.npy", 2, s2, "(2, 3)");
    roundtrip("r1.npy", 1, s1, "(5,)");
    roundtrip("r0.npy", 0, NULL, "()");
    roundtrip("r4.npy", 4, s4, "(2, 3, 7, 5)");
    roundtrip("rz.npy", 2, sz, "(0, 3)");
    roundtrip("r8.npy", 8, s8, "(1, 2, 1, 2, 1, 2, 1, 3)");
    /* A header whose natural length is already aligned gets 64 pad spaces
     * (numpy does the same); any shape must still give an aligned header. */
    for (int64_t k = 1; k < 100000; k = k * 10 + 3) {
        int64_t s[1] = {k};
        char want[64];
        snprintf(want, sizeof want, "(%lld,)", (long long)k);
        roundtrip("rk.npy", 1, s, want);
    }

    vtok_status st = {0};
    const int64_t neg[1] = {-1};
    float x = 0;
    CHECK(vt_npy_write_f32(tpath("w.npy"), &x, 1, neg, &st) == VTOK_EINVAL, "negative dim");
    CHECK(vt_npy_write_f32(tpath("w.npy"), &x, 9, s8, &st) == VTOK_EINVAL, "9 dims");
    CHECK(vt_npy_write_f32(tpath("w.npy"), NULL, 1, s1, &st) == VTOK_EINVAL, "NULL data");
    CHECK(vt_npy_write_f32("/nonexistent-dir/x.npy", &x, 1, s1, &st) == VTOK_EIO &&
              strstr(st.msg, "/nonexistent-dir/x.npy"),
          "unwritable path: %s", st.msg);
    CHECK(access("/nonexistent-dir/x.npy", F_OK) != 0, "no partial file");
}

/* ------------------------------------------------------ other writers -- */

static void test_versions(void)
{
    float *d = NULL;
    int nd;
    int64_t sh[VT_MAX_DIMS];

    /* 2.0 header, float64 data. */
    const double dv[3] = {1.5, -2.25, 1e300};
    write_npy("v2.npy", 2, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }   \n", dv,
              sizeof dv);
    if (read_ok("v2.npy", &d, &nd, sh) == 0) {
        CHECK(nd == 1 && sh[0] == 3 && d[0] == 1.5f && d[1] == -2.25f && isinf(d[2]),
              "v2 f8 values");
        vt_free(d);
    }

    /* 3.0 header (utf-8), float16 data, more elements than one chunk. */
    enum { N = 70000 };
    uint16_t *hv = malloc(N * 2);
    for (int i = 0; i < N; i++)
        hv[i] = (uint16_t)(i * 7);
    write_npy("v3.npy", 3, "{'descr': '<f2', 'fortran_order': False, 'shape': (7, 10000), }\n",
              hv, N * 2);
    if (read_ok("v3.npy", &d, &nd, sh) == 0) {
        int ok = nd == 2 && sh[0] == 7 && sh[1] == 10000;
        for (int i = 0; ok && i < N; i++) {
            float want = vt_f16_to_f32(hv[i]);
            ok = (isnan(want) && isnan(d[i])) || memcmp(&want, &d[i], 4) == 0;
        }
        CHECK(ok, "v3 f2 values");
        vt_free(d);
    }
    free(hv);

    /* Key order, double quotes, no trailing comma, Python 2 longs, list shape. */
    const float fv[6] = {1, 2, 3, 4, 5, 6};
    write_npy("odd1.npy", 1, "{\"shape\": (2L, 3L), \"fortran_order\": False, \"descr\": \"<f4\"}",
              fv, sizeof fv);
    if (read_ok("odd1.npy", &d, &nd, sh) == 0) {
        CHECK(nd == 2 && sh[0] == 2 && sh[1] == 3 && d[5] == 6.0f, "odd1");
        vt_free(d);
    }
    write_npy("odd2.npy", 1, "  {  'fortran_order':False,'shape':[6],'descr':'<f4',}  \n  ", fv,
              sizeof fv);
    if (read_ok("odd2.npy", &d, &nd, sh) == 0) {
        CHECK(nd == 1 && sh[0] == 6 && d[0] == 1.0f, "odd2");
        vt_free(d);
    }
    write_npy("odd3.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 6)}", fv,
              sizeof fv);
    if (read_ok("odd3.npy", &d, &nd, sh) == 0) {
        CHECK(nd == 2 && sh[0] == 1 && sh[1] == 6, "odd3");
        vt_free(d);
    }
}

/* ---------------------------------------------------------- bad files -- */

static void test_bad(void)
{
    const float fv[6] = {0};
    const char *ok_hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";

    FILE *f = fopen(tpath("magic.npy"), "wb");
    fwrite("\x93NUMPX\x01\x00\x10\x00{}              ", 1, 26, f);
    fclose(f);
    EXPECT_FAIL("magic.npy", VTOK_EFORMAT, "bad magic");
    f = fopen(tpath("tiny.npy"), "wb");
    fwrite("\x93NUM", 1, 4, f);
    fclose(f);
    EXPECT_FAIL("tiny.npy", VTOK_EFORMAT, "too short");

    write_npy("ver.npy", 4, ok_hdr, fv, sizeof fv);
    EXPECT_FAIL("ver.npy", VTOK_EUNSUPPORTED, "unsupported .npy version 4.0");
    write_npy("fortran.npy", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
              fv, sizeof fv);
    EXPECT_FAIL("fortran.npy", VTOK_EUNSUPPORTED, "fortran_order");
    write_npy("big.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", fv,
              sizeof fv);
    EXPECT_FAIL("big.npy", VTOK_EUNSUPPORTED, "big-endian");
    write_npy("obj.npy", 1, "{'descr': '|O', 'fortran_order': False, 'shape': (2, 3), }", fv,
              sizeof fv);
    EXPECT_FAIL("obj.npy", VTOK_EUNSUPPORTED, "object dtype");
    write_npy("int.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }", fv,
              sizeof fv);
    EXPECT_FAIL("int.npy", VTOK_EUNSUPPORTED, "dtype '<i4' is not supported");
    write_npy("struct.npy", 1,
              "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3), }", fv,
              sizeof fv);
    EXPECT_FAIL("struct.npy", VTOK_EUNSUPPORTED, "structured");
    write_npy("nokey.npy", 1, "{'descr': '<f4', 'fortran_order': False, }", fv, sizeof fv);
    EXPECT_FAIL("nokey.npy", VTOK_EFORMAT, "missing key 'shape'");
    write_npy("extra.npy", 1,
              "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1, }", fv,
              sizeof fv);
    EXPECT_FAIL("extra.npy", VTOK_EFORMAT, "unknown or repeated key");
    write_npy("rep.npy", 1,
              "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'shape': (6,)}", fv,
              sizeof fv);
    EXPECT_FAIL("rep.npy", VTOK_EFORMAT, "unknown or repeated key");
    write_npy("unterm.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3", fv,
              sizeof fv);
    EXPECT_FAIL("unterm.npy", VTOK_EFORMAT, "malformed .npy header");
    write_npy("unterm2.npy", 1, "{'descr': '<f4", fv, sizeof fv);
    EXPECT_FAIL("unterm2.npy", VTOK_EFORMAT, "unterminated string");
    write_npy("trail.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x",
              fv, sizeof fv);
    EXPECT_FAIL("trail.npy", VTOK_EFORMAT, "trailing bytes");
    write_npy("negdim.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }",
              fv, sizeof fv);
    EXPECT_FAIL("negdim.npy", VTOK_EFORMAT, "not a non-negative integer");
    write_npy("fbool.npy", 1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3), }", fv,
              sizeof fv);
    EXPECT_FAIL("fbool.npy", VTOK_EFORMAT, "fortran_order is not True or False");
    write_npy("dims.npy", 1,
              "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,2,3), }", fv,
              sizeof fv);
    EXPECT_FAIL("dims.npy", VTOK_EUNSUPPORTED, "more than 8 dims");
    write_npy("ovf.npy", 1,
              "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
              fv, sizeof fv);
    EXPECT_FAIL("ovf.npy", VTOK_EFORMAT, "element count overflows");
    write_npy("ovf2.npy", 1,
              "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }",
              fv, sizeof fv);
    EXPECT_FAIL("ovf2.npy", VTOK_EFORMAT, "overflows");
    write_npy("ovf3.npy", 1,
              "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,), }",
              fv, sizeof fv);
    EXPECT_FAIL("ovf3.npy", VTOK_EFORMAT, "byte size overflows");
    write_npy("limit.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5000000000,), }",
              fv, sizeof fv);
    EXPECT_FAIL("limit.npy", VTOK_ELIMIT, "16 GiB");
    write_npy("trunc.npy", 1, ok_hdr, fv, sizeof fv - 2);
    EXPECT_FAIL("trunc.npy", VTOK_EFORMAT, "data truncated: shape needs 24 bytes, file has 22");
    write_npy("long.npy", 1, ok_hdr, fv, 4);
    EXPECT_FAIL("long.npy", VTOK_EFORMAT, "truncated");
    const float more[8] = {0};
    write_npy("more.npy", 1, ok_hdr, more, sizeof more);
    EXPECT_FAIL("more.npy", VTOK_EFORMAT, "needs 24 bytes of data but the file has 32");

    /* Header length field past the end of the file. */
    f = fopen(tpath("hlen.npy"), "wb");
    fwrite("\x93NUMPY\x01\x00\xff\x00{}", 1, 12, f);
    fclose(f);
    EXPECT_FAIL("hlen.npy", VTOK_EFORMAT, "header length 255 exceeds file size");
    f = fopen(tpath("hlen2.npy"), "wb");
    fwrite("\x93NUMPY\x02\x00\xff\xff\xff\x7f{}", 1, 14, f);
    fclose(f);
    EXPECT_FAIL("hlen2.npy", VTOK_EFORMAT, "exceeds file size");

    vtok_status st = {0};
    float *d = (float *)1;
    int nd;
    int64_t sh[VT_MAX_DIMS];
    int rc = vt_npy_read_f32(tpath("missing.npy"), &d, &nd, sh, &st);
    CHECK(rc == VTOK_EIO && d == NULL && strstr(st.msg, "missing.npy"), "missing: %s", st.msg);
    rc = vt_npy_read_f32(tmp, &d, &nd, sh, &st);
    CHECK(rc == VTOK_EIO && strstr(st.msg, "is a directory"), "directory: %s", st.msg);
    rc = vt_npy_read_f32(tpath("r2.npy"), NULL, &nd, sh, &st);
    CHECK(rc == VTOK_EINVAL, "NULL out");
}

/* ---------------------------------------------------- int64 (token ids) -- */

static void test_i64(void)
{
    vtok_status st = {0};
    const int64_t ids[6] = {0, 8191, -1, (int64_t)1 << 40, 7, INT64_MIN};
    const int64_t shape[2] = {2, 3};
    CHECK(vt_npy_write_i64(tpath("i8.npy"), ids, 2, shape, &st) == 0, "write i8: %s", st.msg);
    size_t n = 0;
    uint8_t *img = slurp(tpath("i8.npy"), &n);
    CHECK(img && n == 128 + 48 &&
              memcmp(img + 10, "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), }",
                     59) == 0,
          "i8 header as numpy writes it");
    free(img);
    int64_t *d = NULL, sh[VT_MAX_DIMS];
    int nd = 0;
    int rc = vt_npy_read_i64(tpath("i8.npy"), &d, &nd, sh, &st);
    CHECK(rc == 0 && nd == 2 && sh[0] == 2 && sh[1] == 3 && d && memcmp(d, ids, 48) == 0,
          "i8 roundtrip: %s", st.msg);
    vt_free(d);
    /* '<i4' widens (numpy's default int on some platforms). */
    const int32_t i4[3] = {5, -2, 2147483647};
    write_npy("i4.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", i4, 12);
    rc = vt_npy_read_i64(tpath("i4.npy"), &d, &nd, sh, &st);
    CHECK(rc == 0 && nd == 1 && sh[0] == 3 && d[0] == 5 && d[1] == -2 && d[2] == 2147483647,
          "i4 widened: %s", st.msg);
    vt_free(d);
    /* float files are not ids, and ids are not floats */
    float f = 1.0f;
    const int64_t one = 1;
    CHECK(vt_npy_write_f32(tpath("f4.npy"), &f, 1, &one, &st) == 0, "write f4");
    rc = vt_npy_read_i64(tpath("f4.npy"), &d, &nd, sh, &st);
    CHECK(rc == VTOK_EUNSUPPORTED && d == NULL && strstr(st.msg, "'<f4' is not supported"),
          "f4 as ids: %s", st.msg);
    float *fd = NULL;
    rc = vt_npy_read_f32(tpath("i8.npy"), &fd, &nd, sh, &st);
    CHECK(rc == VTOK_EUNSUPPORTED && fd == NULL, "i8 as floats: %s", st.msg);
    rc = vt_npy_read_i64(tpath("i8.npy"), NULL, &nd, sh, &st);
    CHECK(rc == VTOK_EINVAL, "NULL out");
    /* truncated data is caught as for floats */
    write_npy("i8t.npy", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", ids, 20);
    rc = vt_npy_read_i64(tpath("i8t.npy"), &d, &nd, sh, &st);
    CHECK(rc == VTOK_EFORMAT && d == NULL && strstr(st.msg, "truncated"), "trunc: %s", st.msg);
}

/* ------------------------------------------------------- vt_read_file -- */

static void test_read_file(void)
{
    const char *text = "{\"hello\": 1}";
    FILE *f = fopen(tpath("t.json"), "wb");
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    vtok_status st = {0};
    char *buf = NULL;
    size_t n = 0;
    int rc = vt_read_file(tpath("t.json"), 1000, &buf, &n, &st);
    CHECK(rc == 0 && n == strlen(text) && buf && strcmp(buf, text) == 0, "read_file: %s",
          st.msg);
    free(buf);
    rc = vt_read_file(tpath("t.json"), 5, &buf, &n, &st);
    CHECK(rc == VTOK_ELIMIT && buf == NULL && strstr(st.msg, "too large"), "limit: %s", st.msg);
    rc = vt_read_file(tpath("t.json"), strlen(text), &buf, &n, &st);
    CHECK(rc == 0 && n == strlen(text), "exact limit: %s", st.msg);
    free(buf);
    rc = vt_read_file(tpath("none.json"), 1000, &buf, &n, &st);
    CHECK(rc == VTOK_EIO && strstr(st.msg, "none.json"), "missing: %s", st.msg);
    rc = vt_read_file(tmp, 1000, &buf, &n, &st);
    CHECK(rc == VTOK_EIO && strstr(st.msg, "directory"), "dir: %s", st.msg);
    f = fopen(tpath("empty"), "wb");
    fclose(f);
    rc = vt_read_file(tpath("empty"), 1000, &buf, &n, &st);
    CHECK(rc == 0 && n == 0 && buf && buf[0] == '\0', "empty: %s", st.msg);
    free(buf);
    /* Devices and FIFOs are refused up front (an endless /dev/zero, a FIFO
     * that would block in open()), not read until a limit. */
    rc = vt_read_file("/dev/zero", 10000, &buf, &n, &st);
    CHECK(rc == VTOK_EIO && strstr(st.msg, "not a regular file") && !buf, "/dev/zero: %d %s",
          rc, st.msg);
    rc = vt_read_file("/dev/null", 10000, &buf, &n, &st);
    CHECK(rc == VTOK_EIO && strstr(st.msg, "not a regular file"), "/dev/null: %s", st.msg);
}

static void cleanup(void)
{
    const char *names[] = {"r2.npy", "r1.npy", "r0.npy", "r4.npy", "rz.npy", "r8.npy", "rk.npy",
                           "w.npy", "v2.npy", "v3.npy", "odd1.npy", "odd2.npy", "odd3.npy",
                           "magic.npy", "tiny.npy", "ver.npy", "fortran.npy", "big.npy",
                           "obj.npy", "int.npy", "struct.npy", "nokey.npy", "extra.npy",
                           "rep.npy", "unterm.npy", "unterm2.npy", "trail.npy", "negdim.npy",
                           "fbool.npy", "dims.npy", "ovf.npy", "ovf2.npy", "ovf3.npy",
                           "limit.npy", "trunc.npy", "long.npy", "more.npy", "hlen.npy",
                           "hlen2.npy", "t.json", "empty", "i8.npy", "i4.npy", "f4.npy",
                           "i8t.npy"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unlink(tpath(names[i]));
    if (rmdir(tmp) != 0)
        fprintf(stderr, "note: %s not empty, left in place\n", tmp);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/vtok_test_npy_XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 2;
    }
    test_roundtrip();
    test_versions();
    test_bad();
    test_read_file();
    test_i64();
    cleanup();
    if (n_fail) {
        fprintf(stderr, "test_npy: %d of %d checks failed\n", n_fail, n_check);
        return 1;
    }
    printf("test_npy: all %d checks passed\n", n_check);
    return 0;
}
