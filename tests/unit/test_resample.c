/*
 * test_resample.c - unit tests for src/image/resample.c (vtok_image_resize).
 *
 * Without arguments: argument validation (codes and messages), the
 * same-size copy, tiny cases worked out by hand from Pillow's formulas
 * (Resample.c precompute_coeffs / normalize_coeffs_8bpc, Geometry.c
 * ImagingScaleAffine for NEAREST), and the AVX2 passes against the plain-C
 * specification on odd shapes for every filter. Returns non-zero on failure.
 *
 * With --resize IN W H FILTER OUT [IN W H FILTER OUT ...]: resizes raw
 * images (8-byte header: int32 width, int32 height, little-endian; then RGB
 * bytes) with vtok_image_resize and writes the same format. This is what
 * tests/image/check_resample.py compares byte for byte with Pillow.
 */
#include "image/image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"


/* ------------------------------------------------------------- raw I/O -- */

static void put_i32(uint8_t *p, int32_t v)
{
    uint32_t u = (uint32_t)v;
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

static int32_t get_i32(const uint8_t *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

static int read_raw(const char *path, vtok_image *img)
{
    uint8_t h[8];
    FILE *f = fopen(path, "rb");
    if (!f || fread(h, 1, 8, f) != 8) {
        fprintf(stderr, "%s: cannot read header\n", path);
        if (f)
            fclose(f);
        return -1;
    }
    int64_t w = get_i32(h), hh = get_i32(h + 4);
    if (w < 1 || hh < 1 || w > 65500 || hh > 65500) {
        fprintf(stderr, "%s: bad size %lld x %lld\n", path, (long long)w, (long long)hh);
        fclose(f);
        return -1;
    }
    size_t n = (size_t)w * (size_t)hh * 3;
    img->data = malloc(n);
    img->width = w;
    img->height = hh;
    int ok = img->data && fread(img->data, 1, n, f) == n;
    fclose(f);
    if (!ok) {
        fprintf(stderr, "%s: short file\n", path);
        free(img->data);
        img->data = NULL;
        return -1;
    }
    return 0;
}

static int write_raw(const char *path, const vtok_image *img)
{
    uint8_t h[8];
    put_i32(h, (int32_t)img->width);
    put_i32(h + 4, (int32_t)img->height);
    size_t n = (size_t)img->width * (size_t)img->height * 3;
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(h, 1, 8, f) == 8 && fwrite(img->data, 1, n, f) == n;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "%s: cannot write\n", path);
    return ok ? 0 : -1;
}

static int resize_files(int argc, char **argv)
{
    if (argc < 7 || (argc - 2) % 5 != 0) {
        fprintf(stderr, "usage: %s --resize IN.raw W H FILTER OUT.raw [IN W H FILTER OUT ...]\n",
                argv[0]);
        return 2;
    }
    for (int i = 2; i < argc; i += 5) {
        vtok_image in = {0}, out = {0};
        vtok_status st = {0};
        if (read_raw(argv[i], &in) != 0)
            return 1;
        int rc = vtok_image_resize(&in, atoll(argv[i + 1]), atoll(argv[i + 2]),
                                   (vtok_resample)atoi(argv[i + 3]), &out, &st);
        free(in.data);
        if (rc != 0) {
            fprintf(stderr, "%s: resize failed: %s (%s)\n", argv[i], vtok_strerror(rc), st.msg);
            return 1;
        }
        rc = write_raw(argv[i + 4], &out);
        vtok_free(out.data);
        if (rc != 0)
            return 1;
    }
    return 0;
}

/* --------------------------------------------------------- built-in -- */

static uint32_t rng = 12345;
static uint8_t rnd8(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (uint8_t)(rng >> 24);
}

static void make_image(vtok_image *img, int64_t w, int64_t h, int kind)
{
    img->width = w;
    img->height = h;
    img->data = malloc((size_t)(w * h * 3));
    for (int64_t i = 0; i < w * h * 3; i++) {
        int64_t x = (i / 3) % w, y = (i / 3) / w, c = i % 3;
        if (kind == 0)
            img->data[i] = rnd8();
        else /* hard black/white edges: lanczos and bicubic overshoot both ways */
            img->data[i] = (((x / 3) ^ (y / 2) ^ c) & 1) ? 255 : 0;
    }
}

static void test_validation(void)
{
    uint8_t px[12] = {0};
    vtok_image src = {2, 2, px}, dst = {0};
    vtok_status st = {0};

    CHECK(vtok_image_resize(NULL, 4, 4, VTOK_RESAMPLE_BICUBIC, &dst, &st) == VTOK_EINVAL, "NULL src");
    CHECK(st.msg[0] != 0, "message set");
    CHECK(vtok_image_resize(&src, 4, 4, VTOK_RESAMPLE_BICUBIC, NULL, &st) == VTOK_EINVAL, "NULL dst");
    vtok_image nodata = {2, 2, NULL};
    CHECK(vtok_image_resize(&nodata, 4, 4, VTOK_RESAMPLE_BICUBIC, &dst, &st) == VTOK_EINVAL,
          "NULL data");
    CHECK(vtok_image_resize(&src, 0, 4, VTOK_RESAMPLE_BICUBIC, &dst, &st) == VTOK_EINVAL, "w 0");
    CHECK(strstr(st.msg, "width") != NULL, "message names width: %s", st.msg);
    CHECK(vtok_image_resize(&src, 4, -3, VTOK_RESAMPLE_BICUBIC, &dst, &st) == VTOK_EINVAL, "h<0");
    CHECK(vtok_image_resize(&src, 65501, 4, VTOK_RESAMPLE_BICUBIC, &dst, &st) == VTOK_ELIMIT,
          "w too big");
    CHECK(vtok_image_resize(&src, 4, (int64_t)1 << 40, VTOK_RESAMPLE_BICUBIC, &dst, &st) ==
              VTOK_ELIMIT, "h huge");
    CHECK(vtok_image_resize(&src, 65500, 65500, VTOK_RESAMPLE_BICUBIC, &dst, &st) == VTOK_ELIMIT,
          "too many pixels");
    CHECK(vtok_image_resize(&src, 4, 4, (vtok_resample)6, &dst, &st) == VTOK_EINVAL, "filter 6");
    CHECK(vtok_image_resize(&src, 4, 4, (vtok_resample)-1, &dst, &st) == VTOK_EINVAL, "filter -1");
    vtok_image bad = {0, 2, px};
    CHECK(vtok_image_resize(&bad, 4, 4, VTOK_RESAMPLE_BOX, &dst, &st) == VTOK_EINVAL, "src w 0");
    vtok_image big = {70000, 1, px};
    CHECK(vtok_image_resize(&big, 4, 4, VTOK_RESAMPLE_BOX, &dst, &st) == VTOK_ELIMIT, "src wide");
    CHECK(dst.data == NULL && dst.width == 0, "dst cleared on failure");
    /* Widening while shrinking the height: the 65500 x 65500 intermediate
     * Pillow's two passes need is refused. */
    uint8_t *tall = calloc((size_t)65500 * 3, 2);
    vtok_image thin = {2, 65500, tall};
    CHECK(vtok_image_resize(&thin, 65500, 2, VTOK_RESAMPLE_BILINEAR, &dst, &st) == VTOK_ELIMIT,
          "intermediate too big");
    CHECK(strstr(st.msg, "intermediate") != NULL, "message: %s", st.msg);
    CHECK(vtok_image_resize(&thin, 65500, 2, VTOK_RESAMPLE_NEAREST, &dst, &st) == 0,
          "nearest has no intermediate");
    vtok_free(dst.data);
    CHECK(vtok_image_resize(&thin, 3, 1, VTOK_RESAMPLE_LANCZOS, &dst, &st) == 0, "2 x 65500 -> 3 x 1");
    vtok_free(dst.data);
    free(tall);
    CHECK(vtok_image_resize(&src, 4, 4, VTOK_RESAMPLE_BOX, &dst, NULL) == 0, "st may be NULL");
    vtok_free(dst.data);
}

static void test_copy(void)
{
    vtok_image src, dst = {0};
    make_image(&src, 7, 5, 0);
    for (int f = 0; f <= 5; f++) {
        CHECK(vtok_image_resize(&src, 7, 5, (vtok_resample)f, &dst, NULL) == 0, "copy %d", f);
        CHECK(dst.data != src.data && dst.width == 7 && dst.height == 5 &&
                  memcmp(dst.data, src.data, 7 * 5 * 3) == 0,
              "same size is a copy (filter %d)", f);
        vtok_free(dst.data);
    }
    free(src.data);
}

/* Resize a w x h image given as bytes and compare with want. */
static void expect(int w, int h, const uint8_t *px, int ow, int oh, int filter,
                   const uint8_t *want, const char *what)
{
    vtok_image src = {w, h, (uint8_t *)px}, dst = {0};
    vtok_status st = {0};
    int rc = vtok_image_resize(&src, ow, oh, (vtok_resample)filter, &dst, &st);
    CHECK(rc == 0, "%s: %s", what, st.msg);
    if (rc)
        return;
    int same = memcmp(dst.data, want, (size_t)ow * oh * 3) == 0;
    CHECK(same, "%s: got %u %u %u ...", what, dst.data[0], dst.data[1], dst.data[2]);
    vtok_free(dst.data);
}

static void test_hand_cases(void)
{
    /* One source pixel: every window holds one tap of weight 1.0 = 2^22,
     * so any filter reproduces it. */
    static const uint8_t one[3] = {9, 200, 77};
    uint8_t rep[6 * 3];
    for (int i = 0; i < 6; i++)
        memcpy(rep + 3 * i, one, 3);
    for (int f = 0; f <= 5; f++)
        expect(1, 1, one, 3, 2, f, rep, "1x1 -> 3x2");

    /* BOX 2x1 -> 1x1: scale 2, support 1, center 1, taps 0..1 weight 1/2
     * each = 2^21; (a + b) 2^21 + 2^21 >> 22 = (a + b + 1) / 2, rounding
     * half up: (10 + 13 + 1) / 2 = 12, (0 + 255 + 1) / 2 = 128, (7 + 8 + 1) / 2 = 8. */
    static const uint8_t two[6] = {10, 0, 7, 13, 255, 8};
    static const uint8_t two_box[3] = {12, 128, 8};
    expect(2, 1, two, 1, 1, VTOK_RESAMPLE_BOX, two_box, "box 2x1 -> 1x1");
    /* The same vertically (width unchanged: only the vertical pass runs). */
    expect(1, 2, two, 1, 1, VTOK_RESAMPLE_BOX, two_box, "box 1x2 -> 1x1");

    /* BILINEAR 4x1 -> 2x1: scale 2, support 2. Output 0: center 1,
     * xmin = (int)(-0.5) = 0, xmax = (int)3.5 = 3; triangle at
     * (x - 1 + 0.5) / 2 = -0.25, 0.25, 0.75 -> 0.75, 0.75, 0.25, sum 1.75;
     * k = (int)(0.5 + 3/7 2^22) = 1797559 twice, (int)(0.5 + 1/7 2^22) = 599186.
     * R = 0, 70, 140: 70 k0 + 140 k2 + 2^21 = 211812322, >> 22 = 50.
     * Output 1: center 3, taps 1..3 (xmax clipped to 4) at -0.75, -0.25,
     * 0.25 -> weights 1/7, 3/7, 3/7: 70 k2 + (140 + 210) k0 + 2^21 =
     * 673185822, >> 22 = 160. G = 255 everywhere stays 255, B = 0 stays 0. */
    static const uint8_t four[12] = {0, 255, 0, 70, 255, 0, 140, 255, 0, 210, 255, 0};
    static const uint8_t four_bil[6] = {50, 255, 0, 160, 255, 0};
    expect(4, 1, four, 2, 1, VTOK_RESAMPLE_BILINEAR, four_bil, "bilinear 4x1 -> 2x1");

    /* NEAREST 3x1 -> 2x1: a0 = 1.5, xo = 0.75 -> 0, then 2.25 -> 2. */
    static const uint8_t three[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const uint8_t three_nn[6] = {1, 2, 3, 7, 8, 9};
    expect(3, 1, three, 2, 1, VTOK_RESAMPLE_NEAREST, three_nn, "nearest 3x1 -> 2x1");
    /* NEAREST 2x1 -> 4x1: a0 = 0.5, xo = 0.25, 0.75, 1.25, 1.75 -> 0 0 1 1. */
    static const uint8_t two_nn[12] = {10, 0, 7, 10, 0, 7, 13, 255, 8, 13, 255, 8};
    expect(2, 1, two, 4, 1, VTOK_RESAMPLE_NEAREST, two_nn, "nearest 2x1 -> 4x1");

    /* LANCZOS 2x1 -> 9x1 across a black/white edge: the negative lobes push
     * the ends below 0 and above 255, which clip8 must clamp (not wrap).
     * Expected bytes are Pillow 9.4's (each pixel gray, so R = G = B). */
    static const uint8_t edge[6] = {0, 0, 0, 255, 255, 255};
    static const uint8_t edge_l[9] = {0, 0, 12, 67, 128, 188, 243, 255, 255};
    uint8_t edge_rgb[27];
    for (int i = 0; i < 27; i++)
        edge_rgb[i] = edge_l[i / 3];
    expect(2, 1, edge, 9, 1, VTOK_RESAMPLE_LANCZOS, edge_rgb, "lanczos 2x1 -> 9x1 edge");
}

/* AVX2 vs the plain-C specification on odd shapes, both directions. */
static void test_isa_agree(void)
{
    static const int shapes[][4] = {
        {1, 1, 5, 7},    {2, 3, 1, 1},     {17, 5, 224, 224}, {97, 61, 33, 90},
        {61, 97, 61, 40}, {61, 97, 19, 97}, {300, 11, 7, 50},  {5, 300, 49, 3},
        {64, 64, 31, 33}, {33, 31, 64, 64}, {250, 3, 1, 2},    {3, 250, 2, 1},
        {1, 40, 3, 7},   {2, 9, 5, 9},     {640, 480, 224, 224},
    };
    int avx2 = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    avx2 = __builtin_cpu_supports("avx2");
#endif
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int kind = 0; kind < 2; kind++) {
            vtok_image src;
            make_image(&src, shapes[s][0], shapes[s][1], kind);
            for (int f = 0; f <= 5; f++) {
                vtok_image a = {0}, b = {0};
                int ra = vt_image_resize_isa(&src, shapes[s][2], shapes[s][3], (vtok_resample)f,
                                             0, &a, NULL);
                int rb = vt_image_resize_isa(&src, shapes[s][2], shapes[s][3], (vtok_resample)f,
                                             1, &b, NULL);
                CHECK(ra == 0 && rb == 0, "resize %zu f%d", s, f);
                if (ra == 0 && rb == 0) {
                    size_t n = (size_t)shapes[s][2] * shapes[s][3] * 3;
                    CHECK(memcmp(a.data, b.data, n) == 0, "avx2 != C: %dx%d -> %dx%d filter %d",
                          shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], f);
                }
                vtok_free(a.data);
                vtok_free(b.data);
            }
            free(src.data);
        }
    }
    if (!avx2)
        printf("test_resample: no AVX2 on this CPU, compared the C path with itself\n");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--resize") == 0)
        return resize_files(argc, argv);
    if (argc > 1) {
        fprintf(stderr, "usage: %s [--resize IN.raw W H FILTER OUT.raw ...]\n", argv[0]);
        return 2;
    }
    test_validation();
    test_copy();
    test_hand_cases();
    test_isa_agree();
    printf("test_resample: %d checks, %d failed\n", n_check, n_fail);
    return n_fail ? 1 : 0;
}
