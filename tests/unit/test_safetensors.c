/*
 * test_safetensors.c - unit tests for src/io/safetensors.c.
 *
 * Builds small safetensors files byte by byte in a temp dir: valid files with
 * every convertible dtype (values checked bit-exactly), a sharded model, the
 * directory rules, and one file per malformed case the parser must reject,
 * each checked for the error code and a message that names the file and the
 * problem. Every case runs with and without mmap. Returns non-zero on failure.
 */
#include "io/io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char tmp[256];

/* ----------------------------------------------------------- helpers -- */

static const char *tpath(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

/* A safetensors image: u64 LE length, header (as given), data. Caller frees. */
static uint8_t *make_st(const char *header, uint64_t hlen_field, const void *data, size_t dlen,
                        size_t *size)
{
    size_t hl = strlen(header);
    uint8_t *b = malloc(8 + hl + dlen + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(hlen_field >> (8 * i));
    memcpy(b + 8, header, hl);
    if (dlen)
        memcpy(b + 8 + hl, data, dlen);
    *size = 8 + hl + dlen;
    return b;
}

static void write_st(const char *path, const char *header, const void *data, size_t dlen)
{
    size_t n;
    uint8_t *b = make_st(header, strlen(header), data, dlen, &n);
    write_bytes(path, b, n);
    free(b);
}

static void rm_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            rm_tree(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Open must fail with `code`; the message must name the file and contain `what`. */
static void expect_fail2(const char *path, int code, const char *what, const char *names,
                         int line)
{
    for (int mm = 0; mm < 2; mm++) {
        vtok_status st = {0};
        vt_weights *w = (vt_weights *)1;
        int rc = vt_weights_open(path, mm, &w, &st);
        const char *base = strrchr(path, '/');
        base = names ? names : base ? base + 1 : path;
        n_check++;
        if (rc != code || w != NULL || st.code != code || !st.msg[0] || !strstr(st.msg, what) ||
            !strstr(st.msg, base)) {
            n_fail++;
            fprintf(stderr,
                    "FAIL line %d (mmap=%d): open %s: rc=%d (want %d) msg='%s' (want '%s')\n",
                    line, mm, base, rc, code, st.msg, what);
        }
        if (rc == 0)
            vt_weights_close(w);
    }
}
static void expect_fail(const char *path, int code, const char *what, int line)
{
    expect_fail2(path, code, what, NULL, line);
}
#define EXPECT_FAIL(path, code, what) expect_fail(path, code, what, __LINE__)

/* Write a one-file model with this header and data, then expect EFORMAT. */
static void bad_header(const char *name, const char *header, size_t dlen, const char *what,
                       int line)
{
    uint8_t data[64] = {0};
    write_st(tpath(name), header, data, dlen);
    expect_fail(tpath(name), VTOK_EFORMAT, what, line);
}
#define BAD(name, header, dlen, what) bad_header(name, header, dlen, what, __LINE__)

/* ------------------------------------------------------- valid files -- */

/* Data of the main test file; offsets are listed in its header. */
static uint8_t good_data[70];
static const char *good_header =
    "{\"__metadata__\": {\"format\": \"pt\"},"
    " \"a\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]},"
    " \"h\": {\"dtype\": \"F16\", \"shape\": [5], \"data_offsets\": [24, 34]},"
    " \"b\": {\"dtype\": \"BF16\", \"shape\": [2, 2], \"data_offsets\": [34, 42]},"
    " \"d\": {\"dtype\": \"F64\", \"shape\": [2], \"data_offsets\": [42, 58]},"
    " \"i\": {\"dtype\": \"I64\", \"shape\": [1], \"data_offsets\": [58, 66]},"
    " \"z\": {\"dtype\": \"F32\", \"shape\": [0, 4], \"data_offsets\": [24, 24]},"
    " \"s\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [66, 70]}"
    "}";

static const float a_vals[6] = {1.0f, -2.0f, 3.5f, 0.0f, 1e-3f, 65504.0f};
static const uint16_t h_vals[5] = {0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00};
static const uint16_t b_vals[4] = {0x3f80, 0xc040, 0x4049, 0x0001};
static const double d_vals[2] = {1.5, -0.25};

static void fill_good_data(void)
{
    memcpy(good_data, a_vals, 24);
    memcpy(good_data + 24, h_vals, 10);
    memcpy(good_data + 34, b_vals, 8);
    memcpy(good_data + 42, d_vals, 16);
    int64_t seven = 7;
    memcpy(good_data + 58, &seven, 8);
    const float one = 1.0f;
    memcpy(good_data + 66, &one, 4);
}

/* Header padded with spaces so the data starts 8-aligned, as writers do. */
static char *padded_header(const char *h)
{
    size_t n = strlen(h), pad = (8 - (8 + n) % 8) % 8;
    char *p = malloc(n + pad + 1);
    memcpy(p, h, n);
    memset(p + n, ' ', pad);
    p[n + pad] = '\0';
    return p;
}

static void check_good(vt_weights *w, const char *how)
{
    CHECK(vt_weights_count(w) == 7, "%s: count %lld", how, (long long)vt_weights_count(w));
    for (int64_t i = 1; i < vt_weights_count(w); i++)
        CHECK(strcmp(vt_weights_at(w, i - 1)->name, vt_weights_at(w, i)->name) < 0,
              "%s: at() not sorted", how);
    CHECK(vt_weights_at(w, 7) == NULL && vt_weights_at(w, -1) == NULL, "%s", how);
    CHECK(vt_weights_find(w, "__metadata__") == NULL, "%s: metadata is not a tensor", how);
    CHECK(vt_weights_find(w, "nope") == NULL, "%s", how);

    const vt_st_tensor *t = vt_weights_find(w, "b");
    CHECK(t && t->dtype == VT_BF16 && t->n_dims == 2 && t->shape[0] == 2 && t->shape[1] == 2 &&
              t->numel == 4 && t->nbytes == 8 && t->file == 0,
          "%s: tensor b fields", how);
    t = vt_weights_find(w, "s");
    CHECK(t && t->n_dims == 0 && t->numel == 1, "%s: scalar", how);

    vtok_status st = {0};
    const float *p = NULL;
    int64_t sh[2] = {2, 3};
    int rc = vt_weights_f32(w, "a", 2, sh, &p, &st);
    CHECK(rc == 0 && p, "%s: a: %s", how, st.msg);
    if (p) {
        CHECK(p == vt_weights_find(w, "a")->data, "%s: aligned F32 should be in place", how);
        CHECK(memcmp(p, a_vals, 24) == 0, "%s: a values", how);
    }

    int64_t hs[1] = {-1};
    rc = vt_weights_f32(w, "h", 1, hs, &p, &st);
    CHECK(rc == 0 && hs[0] == 5, "%s: h: %s (shape %lld)", how, st.msg, (long long)hs[0]);
    if (rc == 0) {
        CHECK(p[0] == 1.0f && p[1] == -2.0f && p[2] == 0x1p-24f && p[3] == 65504.0f &&
                  isinf(p[4]) && p[4] > 0,
              "%s: F16 values %g %g %g %g %g", how, p[0], p[1], p[2], p[3], p[4]);
        const float *p2 = NULL;
        rc = vt_weights_f32(w, "h", 1, hs, &p2, &st);
        CHECK(rc == 0 && p2 == p, "%s: converted buffer must be cached", how);
    }

    int64_t bs[2] = {-1, -1};
    rc = vt_weights_f32(w, "b", 2, bs, &p, &st);
    CHECK(rc == 0 && bs[0] == 2 && bs[1] == 2, "%s: b: %s", how, st.msg);
    if (rc == 0)
        CHECK(p[0] == 1.0f && p[1] == -3.0f && p[2] == 3.140625f && fbits(p[3]) == 0x00010000u,
              "%s: BF16 values %g %g %g %g", how, p[0], p[1], p[2], p[3]);

    int64_t ds[1] = {2};
    rc = vt_weights_f32(w, "d", 1, ds, &p, &st);
    CHECK(rc == 0 && p && p[0] == 1.5f && p[1] == -0.25f, "%s: F64: %s", how, st.msg);

    int64_t zs[2] = {0, 4};
    rc = vt_weights_f32(w, "z", 2, zs, &p, &st);
    CHECK(rc == 0 && p, "%s: zero-size: %s", how, st.msg);

    rc = vt_weights_f32(w, "s", 0, NULL, &p, &st);
    CHECK(rc == 0 && p && p[0] == 1.0f, "%s: scalar: %s", how, st.msg);

    /* Errors from vt_weights_f32. */
    memset(&st, 0, sizeof st);
    rc = vt_weights_f32(w, "nope", 1, hs, &p, &st);
    CHECK(rc == VTOK_EMISSING && strstr(st.msg, "missing tensor 'nope'"), "%s: %d %s", how, rc,
          st.msg);
    int64_t wrong[2] = {3, 2};
    rc = vt_weights_f32(w, "a", 2, wrong, &p, &st);
    CHECK(rc == VTOK_ESHAPE && strstr(st.msg, "tensor 'a' has shape [2, 3], expected [3, 2]"),
          "%s: %d %s", how, rc, st.msg);
    CHECK(wrong[0] == 3 && wrong[1] == 2, "%s: shape must be untouched on error", how);
    int64_t one[1] = {6};
    rc = vt_weights_f32(w, "a", 1, one, &p, &st);
    CHECK(rc == VTOK_ESHAPE && strstr(st.msg, "expected [6]"), "%s: %d %s", how, rc, st.msg);
    int64_t part[2] = {-1, 4};
    rc = vt_weights_f32(w, "a", 2, part, &p, &st);
    CHECK(rc == VTOK_ESHAPE && strstr(st.msg, "expected [-1, 4]"), "%s: %d %s", how, rc, st.msg);
    int64_t is[1] = {1};
    rc = vt_weights_f32(w, "i", 1, is, &p, &st);
    CHECK(rc == VTOK_EUNSUPPORTED && strstr(st.msg, "I64"), "%s: %d %s", how, rc, st.msg);
}

static void test_valid(void)
{
    fill_good_data();
    char *hdr = padded_header(good_header);
    write_st(tpath("good.safetensors"), hdr, good_data, sizeof good_data);
    for (int mm = 0; mm < 2; mm++) {
        vtok_status st = {0};
        vt_weights *w = NULL;
        int rc = vt_weights_open(tpath("good.safetensors"), mm, &w, &st);
        CHECK(rc == 0 && w, "open good (mmap=%d): %s", mm, st.msg);
        if (w)
            check_good(w, mm ? "mmap" : "read");
        vt_weights_close(w);
    }
    /* Same image from memory. */
    size_t n;
    uint8_t *img = make_st(hdr, strlen(hdr), good_data, sizeof good_data, &n);
    /* Copy into an 8-aligned buffer so F32 data is in place as from a file. */
    uint64_t *al = malloc(n + 8);
    memcpy(al, img, n);
    vt_weights *w = NULL;
    vtok_status st = {0};
    int rc = vt_weights_open_mem(al, n, "mem", &w, &st);
    CHECK(rc == 0 && w, "open_mem: %s", st.msg);
    if (w)
        check_good(w, "mem");
    vt_weights_close(w);
    free(al);
    free(img);
    free(hdr);

    /* Empty header object: valid, no tensors. */
    write_st(tpath("empty.safetensors"), "{}      ", NULL, 0);
    w = NULL;
    rc = vt_weights_open(tpath("empty.safetensors"), 1, &w, &st);
    CHECK(rc == 0 && vt_weights_count(w) == 0, "empty header: %s", st.msg);
    vt_weights_close(w);

    /* Unaligned F32: a U8 first puts the F32 at data offset 1. */
    uint8_t ud[9] = {42};
    const float fv[2] = {0.1f, -7.25f};
    memcpy(ud + 1, fv, 8);
    write_st(tpath("unaligned.safetensors"),
             "{\"u\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
             " \"f\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [1, 9]}}",
             ud, sizeof ud);
    for (int mm = 0; mm < 2; mm++) {
        w = NULL;
        rc = vt_weights_open(tpath("unaligned.safetensors"), mm, &w, &st);
        CHECK(rc == 0, "unaligned open: %s", st.msg);
        if (rc)
            continue;
        const float *p = NULL, *p2 = NULL;
        int64_t sh[1] = {2};
        rc = vt_weights_f32(w, "f", 1, sh, &p, &st);
        CHECK(rc == 0 && p && ((uintptr_t)p % 4) == 0 && p[0] == 0.1f && p[1] == -7.25f,
              "unaligned F32: %s", st.msg);
        CHECK(rc == 0 && p != vt_weights_find(w, "f")->data, "unaligned F32 must be copied");
        rc = vt_weights_f32(w, "f", 1, sh, &p2, &st);
        CHECK(rc == 0 && p2 == p, "unaligned copy must be cached");
        vt_weights_close(w);
    }

    /* Argument errors. */
    w = (vt_weights *)1;
    rc = vt_weights_open(NULL, 1, &w, &st);
    CHECK(rc == VTOK_EINVAL && w == NULL, "NULL path");
    EXPECT_FAIL(tpath("does-not-exist.safetensors"), VTOK_EIO, "No such file");
    vt_weights_close(NULL);
}

/* --------------------------------------------------- malformed files -- */

static void test_malformed(void)
{
    const char *f4 = "\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]";
    char buf[1024];

    write_bytes(tpath("short.safetensors"), "\x05\0\0\0\0", 5);
    EXPECT_FAIL(tpath("short.safetensors"), VTOK_EFORMAT, "shorter than 8 bytes");
    write_bytes(tpath("zero.safetensors"), "", 0);
    EXPECT_FAIL(tpath("zero.safetensors"), VTOK_EFORMAT, "shorter than 8 bytes");

    /* A name with a newline and an escape (JSON \u000a, \u001b): the message
     * stays one printable line, control bytes shown as '?' (fuzz_model). */
    BAD("ctrl_name.safetensors", "{\"a\\u000ab\\u001b[31m\": {}}", 0, "'a?b?[31m': missing dtype");

    size_t n;
    uint8_t *img = make_st("{}", 1000, NULL, 0, &n);
    write_bytes(tpath("bighdr.safetensors"), img, n);
    free(img);
    EXPECT_FAIL(tpath("bighdr.safetensors"), VTOK_EFORMAT, "header length 1000 exceeds file size");

    /* A header length over the 100 MB cap in a (sparse) file big enough to hold it. */
    {
        uint64_t hl = 100000001;
        uint8_t le[8];
        for (int i = 0; i < 8; i++)
            le[i] = (uint8_t)(hl >> (8 * i));
        int fd = open(tpath("huge.safetensors"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        CHECK(fd >= 0 && write(fd, le, 8) == 8 && ftruncate(fd, 8 + 100000100) == 0,
              "sparse file");
        if (fd >= 0)
            close(fd);
        vtok_status st = {0};
        vt_weights *w = NULL;
        int rc = vt_weights_open(tpath("huge.safetensors"), 1, &w, &st);
        CHECK(rc == VTOK_EFORMAT && strstr(st.msg, "header length 100000001 exceeds the"),
              "100 MB header: %d %s", rc, st.msg);
        unlink(tpath("huge.safetensors"));
    }

    BAD("hdr0.safetensors", "", 0, "not valid JSON");
    BAD("json.safetensors", "{\"a\": {\"dtype\": ", 0, "not valid JSON");
    BAD("trail.safetensors", "{}xyz", 0, "trailing bytes");
    BAD("array.safetensors", "[1, 2]", 0, "not a JSON object");
    BAD("entry.safetensors", "{\"a\": 5}", 0, "tensor 'a': entry is not an object");
    BAD("nodtype.safetensors", "{\"a\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
        "tensor 'a': missing dtype");
    BAD("dtype.safetensors",
        "{\"a\": {\"dtype\": \"F17\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
        "tensor 'a': unknown dtype 'F17'");
    BAD("dtype2.safetensors",
        "{\"a\": {\"dtype\": 4, \"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
        "dtype is not a string");
    BAD("noshape.safetensors", "{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", 8,
        "missing shape");
    BAD("shape1.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": 2, \"data_offsets\": [0, 8]}}", 8,
        "shape is not an array");
    BAD("shape2.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8,
        "shape[0] is not a non-negative integer");
    BAD("shape3.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1, 1.5], \"data_offsets\": [0, 8]}}", 8,
        "shape[1] is not a non-negative integer");
    BAD("shape4.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]}}", 8,
        "shape[0] is not a non-negative integer");
    BAD("shape5.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1e300], \"data_offsets\": [0, 8]}}", 8,
        "not a non-negative integer");
    BAD("dims.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,2], \"data_offsets\": [0, 8]}}",
        8, "9 dims, more than 8");
    BAD("numel.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], "
        "\"data_offsets\": [0, 8]}}", 8, "element count overflows");
    BAD("bytes.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [2147483648, 2147483648], "
        "\"data_offsets\": [0, 8]}}", 8, "byte size overflows");
    BAD("off0.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8,
        "missing data_offsets");
    BAD("off1.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8, 8]}}", 8,
        "data_offsets is not 2 non-negative integers");
    BAD("off2.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8]}}",
        8, "data_offsets is not 2 non-negative integers");
    BAD("off3.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-8, 0]}}", 8,
        "data_offsets is not 2 non-negative integers");
    BAD("off4.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": \"0-8\"}}", 8,
        "data_offsets is not 2 non-negative integers");
    BAD("off5.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}", 8,
        "data_offsets begin 8 > end 4");
    BAD("off6.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 8,
        "data_offsets end 12 is past the data (8 bytes");
    BAD("size.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8,
        "dtype/shape size mismatch");
    BAD("size2.safetensors",
        "{\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
        "dtype/shape size mismatch");
    BAD("overlap.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
        " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12,
        "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
    BAD("overlap2.safetensors",
        "{\"big\": {\"dtype\": \"U8\", \"shape\": [40], \"data_offsets\": [0, 40]},"
        " \"x\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [30, 34]},"
        " \"y\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [44, 48]}}", 48,
        "overlap");
    BAD("same.safetensors",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
        " \"b\": {\"dtype\": \"I32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "overlap");
    snprintf(buf, sizeof buf, "{\"a\": {%s}, \"a\": {%s}}", f4, f4);
    BAD("dup.safetensors", buf, 8, "duplicate tensor name 'a'");

    /* Truncated copies of a valid file. */
    fill_good_data();
    char *hdr = padded_header(good_header);
    img = make_st(hdr, strlen(hdr), good_data, sizeof good_data, &n);
    write_bytes(tpath("trunc1.safetensors"), img, n - 10);
    EXPECT_FAIL(tpath("trunc1.safetensors"), VTOK_EFORMAT, "past the data");
    write_bytes(tpath("trunc2.safetensors"), img, 8 + strlen(hdr) / 2);
    EXPECT_FAIL(tpath("trunc2.safetensors"), VTOK_EFORMAT, "exceeds file size");
    free(img);
    free(hdr);

    /* Zero-size tensors may share offsets with others and sit at the end. */
    write_st(tpath("zeros.safetensors"),
             "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
             " \"e1\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]},"
             " \"e2\": {\"dtype\": \"F16\", \"shape\": [3, 0], \"data_offsets\": [8, 8]},"
             " \"e3\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]}}",
             good_data, 8);
    vtok_status st = {0};
    vt_weights *w = NULL;
    int rc = vt_weights_open(tpath("zeros.safetensors"), 1, &w, &st);
    CHECK(rc == 0 && vt_weights_count(w) == 4, "zero-size tensors: %s", st.msg);
    vt_weights_close(w);
}

/* ----------------------------------------------------------- sharded -- */

static const char *shard_a =
    "{\"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
    " \"y\": {\"dtype\": \"BF16\", \"shape\": [1], \"data_offsets\": [8, 10]}}";
static const char *shard_b =
    "{\"w\": {\"dtype\": \"F16\", \"shape\": [3], \"data_offsets\": [0, 6]}}";

static void make_sharded(const char *dir, const char *index)
{
    char p[512];
    mkdir(tpath(dir), 0755);
    uint8_t da[10], db[6];
    const float xv[2] = {0.5f, -1.0f};
    const uint16_t yv = 0x4000, wv[3] = {0x3c00, 0x3800, 0xbc00};
    memcpy(da, xv, 8);
    memcpy(da + 8, &yv, 2);
    memcpy(db, wv, 6);
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", tpath(dir));
    write_st(p, shard_a, da, sizeof da);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", tpath(dir));
    write_st(p, shard_b, db, sizeof db);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", tpath(dir));
    write_bytes(p, index, strlen(index));
}

static const char *good_index =
    "{\"metadata\": {\"total_size\": 16}, \"weight_map\": {"
    "\"x\": \"model-00001-of-00002.safetensors\","
    " \"y\": \"model-00001-of-00002.safetensors\","
    " \"w\": \"model-00002-of-00002.safetensors\"}}";

static void test_sharded(void)
{
    make_sharded("sh", good_index);
    char idx[512];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", tpath("sh"));
    const char *paths[2] = {tpath("sh"), idx};
    for (int k = 0; k < 2; k++)
        for (int mm = 0; mm < 2; mm++) {
            vtok_status st = {0};
            vt_weights *w = NULL;
            int rc = vt_weights_open(paths[k], mm, &w, &st);
            CHECK(rc == 0, "sharded open %s: %s", paths[k], st.msg);
            if (rc)
                continue;
            CHECK(vt_weights_count(w) == 3, "sharded count");
            const vt_st_tensor *x = vt_weights_find(w, "x"), *ww = vt_weights_find(w, "w");
            CHECK(x && ww && x->file == 0 && ww->file == 1, "shard indices");
            const float *p = NULL;
            int64_t s[1] = {3};
            rc = vt_weights_f32(w, "w", 1, s, &p, &st);
            CHECK(rc == 0 && p[0] == 1.0f && p[1] == 0.5f && p[2] == -1.0f, "w: %s", st.msg);
            s[0] = 2;
            rc = vt_weights_f32(w, "x", 1, s, &p, &st);
            CHECK(rc == 0 && p[0] == 0.5f && p[1] == -1.0f, "x: %s", st.msg);
            s[0] = 1;
            rc = vt_weights_f32(w, "y", 1, s, &p, &st);
            CHECK(rc == 0 && p[0] == 2.0f, "y: %s", st.msg);
            vt_weights_close(w);
        }

    struct { const char *dir, *index, *what; int code; const char *names; } bad[] = {
        {"sh1", "{\"weight_map\": {\"x\": \"../model-00001-of-00002.safetensors\"}}",
         "is not a plain file name", VTOK_EFORMAT, NULL},
        {"sh2", "{\"weight_map\": {\"x\": \"sub/model-00001-of-00002.safetensors\"}}",
         "is not a plain file name", VTOK_EFORMAT, NULL},
        {"sh3", "{\"weight_map\": {\"x\": \"model-00002-of-00002.safetensors\"}}",
         "tensor 'x' listed in weight_map is not in", VTOK_EFORMAT, NULL},
        {"sh4", "{\"weight_map\": {\"q\": \"model-00001-of-00002.safetensors\"}}",
         "tensor 'q' listed in weight_map is not in", VTOK_EFORMAT, NULL},
        {"sh5", "{\"weight_map\": {\"x\": \"model-00003-of-00003.safetensors\"}}",
         "No such file", VTOK_EIO, "model-00003-of-00003.safetensors"},
        {"sh6", "{\"metadata\": {}}", "no \"weight_map\"", VTOK_EFORMAT, NULL},
        {"sh7", "{\"weight_map\": [1]}", "\"weight_map\" is not an object", VTOK_EFORMAT, NULL},
        {"sh8", "{\"weight_map\": {\"x\": 1}}", "entry 'x' is not a string", VTOK_EFORMAT, NULL},
        {"sh9", "{\"weight_map\": {\"x\": ", "not valid JSON", VTOK_EFORMAT, NULL},
        {"sh10", "{\"weight_map\": {}}", "is empty", VTOK_EFORMAT, NULL},
        {"sh11", "{\"weight_map\": {\"x\": \"\"}}", "not a plain file name", VTOK_EFORMAT, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        make_sharded(bad[i].dir, bad[i].index);
        snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", tpath(bad[i].dir));
        expect_fail2(idx, bad[i].code, bad[i].what, bad[i].names, __LINE__ + 1000 * (int)i);
    }

    /* A tensor present in two shards, and a malformed shard. */
    char p[512];
    make_sharded("shdup", good_index);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", tpath("shdup"));
    uint8_t d8[8] = {0};
    write_st(p, "{\"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", d8, 8);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", tpath("shdup"));
    expect_fail2(idx, VTOK_EFORMAT, "tensor 'x' appears in both", "model-00002-of-00002",
                 __LINE__);

    make_sharded("shbad", good_index);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", tpath("shbad"));
    write_st(p, "{\"w\": {\"dtype\": \"F16\", \"shape\": [4], \"data_offsets\": [0, 6]}}", d8, 6);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", tpath("shbad"));
    vtok_status st = {0};
    vt_weights *w = NULL;
    int rc = vt_weights_open(idx, 1, &w, &st);
    CHECK(rc == VTOK_EFORMAT && strstr(st.msg, "model-00002-of-00002.safetensors") &&
              strstr(st.msg, "tensor 'w'") && strstr(st.msg, "size mismatch"),
          "bad shard: %d %s", rc, st.msg);
}

/* -------------------------------------------------------- directories -- */

static void test_dirs(void)
{
    uint8_t d8[8] = {0};
    const char *h = "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}";
    const char *h2 = "{\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}";
    char p[512];

    mkdir(tpath("d1"), 0755);
    snprintf(p, sizeof p, "%s/weights.safetensors", tpath("d1"));
    write_st(p, h, d8, 8);
    snprintf(p, sizeof p, "%s/config.json", tpath("d1"));
    write_bytes(p, "{}", 2);
    vtok_status st = {0};
    vt_weights *w = NULL;
    int rc = vt_weights_open(tpath("d1"), 1, &w, &st);
    CHECK(rc == 0 && vt_weights_find(w, "a"), "only .safetensors in dir: %s", st.msg);
    vt_weights_close(w);

    mkdir(tpath("d2"), 0755);
    snprintf(p, sizeof p, "%s/one.safetensors", tpath("d2"));
    write_st(p, h, d8, 8);
    snprintf(p, sizeof p, "%s/two.safetensors", tpath("d2"));
    write_st(p, h2, d8, 8);
    rc = vt_weights_open(tpath("d2"), 1, &w, &st);
    CHECK(rc == VTOK_EFORMAT && strstr(st.msg, "one.safetensors, two.safetensors") &&
              strstr(st.msg, "2 weight files"),
          "several: %d %s", rc, st.msg);

    snprintf(p, sizeof p, "%s/model.safetensors", tpath("d2"));
    write_st(p, h2, d8, 8);
    rc = vt_weights_open(tpath("d2"), 0, &w, &st);
    CHECK(rc == 0 && vt_weights_find(w, "b"), "model.safetensors preferred: %s", st.msg);
    vt_weights_close(w);

    mkdir(tpath("d3"), 0755);
    EXPECT_FAIL(tpath("d3"), VTOK_EMISSING, "no model.safetensors.index.json");
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/vtok_test_st_XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 2;
    }
    test_valid();
    test_malformed();
    test_sharded();
    test_dirs();
    rm_tree(tmp);
    if (n_fail) {
        fprintf(stderr, "test_safetensors: %d of %d checks failed\n", n_fail, n_check);
        return 1;
    }
    printf("test_safetensors: all %d checks passed\n", n_check);
    return 0;
}
