/*
 * test_decode.c - unit tests for the image decoders (src/image/decode*.c,
 * exif.c), plus two helper modes for tests/image/check_decode.py.
 *
 *   test_decode                      built-in tests: params, NULL arguments,
 *                                    sniffing, limits, images encoded here with
 *                                    libjpeg/libpng/libwebp and by hand (GIF),
 *                                    every truncation of them, EXIF orientation,
 *                                    jpeg_fast_scale. Exit 0 if all pass.
 *   test_decode --dump FILE OUT [--exif] [--fast-scale N]
 *                                    decode FILE with default params; write
 *                                    int64 LE width, int64 LE height, then RGB
 *                                    bytes to OUT. On failure: one line on
 *                                    stderr ("error: <code name>: <message>")
 *                                    and exit 1.
 *   test_decode --make-jpeg IN.raw W H OUT.jpg [key=value...]
 *                                    write a JPEG with settings Pillow cannot
 *                                    produce (restart markers, YCCK, CMYK with
 *                                    no Adobe marker, RGB colour space, odd
 *                                    sampling, arithmetic coding); IN.raw has
 *                                    1, 3 or 4 bytes per pixel by colour space.
 *                                    keys: cs=ycc|rgb|gray|cmyk|cmyk-noadobe|ycck
 *                                    samp=HxV (component 0) restart=MCUs
 *                                    rows=N progressive=1 arith=1 quality=Q
 *                                    optimize=1
 */
#include "image/image.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <webp/encode.h>

#include "check.h"


static const char *code_name(int rc)
{
    switch (rc) {
    case VTOK_EINVAL: return "EINVAL";
    case VTOK_ENOMEM: return "ENOMEM";
    case VTOK_EIO: return "EIO";
    case VTOK_EFORMAT: return "EFORMAT";
    case VTOK_EUNSUPPORTED: return "EUNSUPPORTED";
    case VTOK_ELIMIT: return "ELIMIT";
    default: return "E?";
    }
}

/* ------------------------------------------------------------ helpers -- */

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    uint8_t *b = malloc(cap);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            b = realloc(b, cap);
        }
        size_t r = fread(b + len, 1, cap - len, f);
        if (r == 0)
            break;
        len += r;
    }
    fclose(f);
    *n = len;
    return b;
}

/* ------------------------------------------------------- --dump mode -- */

static int dump(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: test_decode --dump FILE OUT [--exif] [--fast-scale N]\n");
        return 2;
    }
    vtok_image_params p = vtok_image_default_params();
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--exif") == 0) {
            p.exif_orientation = 1;
        } else if (strcmp(argv[i], "--fast-scale") == 0 && i + 1 < argc) {
            p.jpeg_fast_scale = 1;
            p.jpeg_target = atoll(argv[++i]);
        } else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    vtok_status st = {0};
    vtok_image img = {0};
    int rc = vtok_image_load(argv[2], &p, &img, &st);
    if (rc != VTOK_OK) {
        fprintf(stderr, "error: %s: %s\n", code_name(rc), st.msg);
        return 1;
    }
    FILE *f = fopen(argv[3], "wb");
    if (!f) {
        perror(argv[3]);
        vtok_image_free(&img);
        return 2;
    }
    uint8_t hdr[16];
    for (int i = 0; i < 8; i++) {
        hdr[i] = (uint8_t)((uint64_t)img.width >> (8 * i));
        hdr[8 + i] = (uint8_t)((uint64_t)img.height >> (8 * i));
    }
    size_t n = (size_t)img.width * (size_t)img.height * 3;
    int ok = fwrite(hdr, 1, 16, f) == 16 && fwrite(img.data, 1, n, f) == n;
    ok &= fclose(f) == 0;
    vtok_image_free(&img);
    return ok ? 0 : 2;
}

/* --------------------------------------------------- JPEG encoding ---- */

typedef struct jpeg_opts {
    const char *cs;
    int h, v, restart, rows, progressive, arith, quality, optimize;
} jpeg_opts;

typedef struct enc_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
} enc_err;

static void enc_on_error(j_common_ptr c)
{
    longjmp(((enc_err *)c->err)->jb, 1);
}

/* Encode w x h pixels (channels by o->cs) into a malloc'ed JPEG. */
static uint8_t *jpeg_encode(const uint8_t *px, int w, int h, const jpeg_opts *o, size_t *n,
                            const uint8_t *app1, size_t app1_len)
{
    struct jpeg_compress_struct c;
    enc_err e;
    unsigned char *volatile mem = NULL;
    unsigned long len = 0;
    memset(&c, 0, sizeof c);
    c.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = enc_on_error;
    if (setjmp(e.jb)) {
        jpeg_destroy_compress(&c);
        free(mem);
        return NULL;
    }
    jpeg_create_compress(&c);
    unsigned char *m = NULL;
    jpeg_mem_dest(&c, &m, &len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    const char *cs = o->cs ? o->cs : "ycc";
    int nc = strcmp(cs, "gray") == 0 ? 1 : (strncmp(cs, "cmyk", 4) == 0 || !strcmp(cs, "ycck")) ? 4 : 3;
    c.input_components = nc;
    c.in_color_space = nc == 1 ? JCS_GRAYSCALE : nc == 4 ? JCS_CMYK : JCS_RGB;
    jpeg_set_defaults(&c);
    if (!strcmp(cs, "rgb"))
        jpeg_set_colorspace(&c, JCS_RGB);
    else if (!strcmp(cs, "ycck"))
        jpeg_set_colorspace(&c, JCS_YCCK);
    else if (!strncmp(cs, "cmyk", 4))
        jpeg_set_colorspace(&c, JCS_CMYK);
    if (!strcmp(cs, "cmyk-noadobe"))
        c.write_Adobe_marker = FALSE;
    jpeg_set_quality(&c, o->quality ? o->quality : 90, TRUE);
    if (o->h && o->v) {
        c.comp_info[0].h_samp_factor = o->h;
        c.comp_info[0].v_samp_factor = o->v;
    }
    c.restart_interval = (unsigned)o->restart;
    c.restart_in_rows = o->rows;
    c.arith_code = o->arith ? TRUE : FALSE;
    c.optimize_coding = o->optimize ? TRUE : FALSE;
    if (o->progressive)
        jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    if (app1)
        jpeg_write_marker(&c, JPEG_APP0 + 1, app1, (unsigned)app1_len);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(px + (size_t)c.next_scanline * (size_t)w * (size_t)nc);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    mem = m;
    *n = len;
    return mem;
}

static int make_jpeg(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: test_decode --make-jpeg IN.raw W H OUT.jpg [key=value...]\n");
        return 2;
    }
    jpeg_opts o = {0};
    for (int i = 6; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "cs=", 3)) o.cs = a + 3;
        else if (!strncmp(a, "samp=", 5)) sscanf(a + 5, "%dx%d", &o.h, &o.v);
        else if (!strncmp(a, "restart=", 8)) o.restart = atoi(a + 8);
        else if (!strncmp(a, "rows=", 5)) o.rows = atoi(a + 5);
        else if (!strncmp(a, "progressive=", 12)) o.progressive = atoi(a + 12);
        else if (!strncmp(a, "arith=", 6)) o.arith = atoi(a + 6);
        else if (!strncmp(a, "quality=", 8)) o.quality = atoi(a + 8);
        else if (!strncmp(a, "optimize=", 9)) o.optimize = atoi(a + 9);
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    size_t n = 0, jn = 0;
    uint8_t *px = slurp(argv[2], &n);
    if (!px) {
        perror(argv[2]);
        return 2;
    }
    uint8_t *j = jpeg_encode(px, atoi(argv[3]), atoi(argv[4]), &o, &jn, NULL, 0);
    free(px);
    if (!j) {
        fprintf(stderr, "jpeg encoding failed\n");
        return 2;
    }
    FILE *f = fopen(argv[5], "wb");
    int ok = f && fwrite(j, 1, jn, f) == jn;
    if (f)
        ok &= fclose(f) == 0;
    free(j);
    return ok ? 0 : 2;
}

/* ------------------------------------------------- PNG / GIF / WebP -- */

typedef struct membuf {
    uint8_t *p;
    size_t   n, cap;
} membuf;

static void mb_put(membuf *m, const void *d, size_t n)
{
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2 + 64;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->n, d, n);
    m->n += n;
}

static void png_write_mem(png_structp png, png_bytep d, size_t n)
{
    mb_put(png_get_io_ptr(png), d, n);
}

static void png_flush_mem(png_structp png)
{
    (void)png;
}

/* A PNG of w x h samples (bytes as libpng wants them for ct/bd), optionally
 * interlaced, with a palette and an eXIf blob. Returns a malloc'ed file. */
static uint8_t *png_encode(const uint8_t *px, int w, int h, int ct, int bd, int interlace,
                           const uint8_t *pal, int npal, const uint8_t *exif, int nexif,
                           size_t *n)
{
    membuf m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(m.p);
        return NULL;
    }
    png_set_write_fn(png, &m, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, bd, ct,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (pal) {
        png_color c[256];
        for (int i = 0; i < npal; i++) {
            c[i].red = pal[3 * i];
            c[i].green = pal[3 * i + 1];
            c[i].blue = pal[3 * i + 2];
        }
        png_set_PLTE(png, info, c, npal);
    }
    if (exif)
        png_set_eXIf_1(png, info, (png_uint_32)nexif, (png_bytep)exif);
    png_write_info(png, info);
    size_t rb = png_get_rowbytes(png, info);
    int passes = png_set_interlace_handling(png);
    for (int pass = 0; pass < passes; pass++)
        for (int y = 0; y < h; y++)
            png_write_row(png, px + (size_t)y * rb);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    *n = m.n;
    return m.p;
}

/* GIF helpers: LZW of literal codes only (a clear before the code size would
 * grow), as sub-blocks. */
static void gif_lzw(membuf *m, const uint8_t *idx, size_t n, int mcs)
{
    int clear = 1 << mcs, end = clear + 1, size = mcs + 1;
    int nmax = (1 << size) - clear - 3, run = 0;
    if (nmax < 1)
        nmax = 1;
    uint8_t blk[256];
    int bl = 0;
    uint32_t acc = 0;
    int nb = 0;
#define GIF_EMIT(code)                                                                        \
    do {                                                                                      \
        acc |= (uint32_t)(code) << nb;                                                        \
        nb += size;                                                                           \
        while (nb >= 8) {                                                                     \
            blk[1 + bl++] = (uint8_t)acc;                                                     \
            acc >>= 8;                                                                        \
            nb -= 8;                                                                          \
            if (bl == 255) {                                                                  \
                blk[0] = 255;                                                                 \
                mb_put(m, blk, 256);                                                          \
                bl = 0;                                                                       \
            }                                                                                 \
        }                                                                                     \
    } while (0)
    uint8_t c = (uint8_t)mcs;
    mb_put(m, &c, 1);
    GIF_EMIT(clear);
    for (size_t i = 0; i < n; i++) {
        if (run == nmax) {
            GIF_EMIT(clear);
            run = 0;
        }
        GIF_EMIT(idx[i]);
        run++;
    }
    GIF_EMIT(end);
    if (nb)
        blk[1 + bl++] = (uint8_t)acc;
    if (bl) {
        blk[0] = (uint8_t)bl;
        mb_put(m, blk, (size_t)bl + 1);
    }
    c = 0;
    mb_put(m, &c, 1);
#undef GIF_EMIT
}

/* Screen sw x sh with a 4-entry global palette; one frame at (x, y). */
static uint8_t *gif_encode(int sw, int sh, int x, int y, int w, int h, const uint8_t *idx,
                           int trns, size_t *n)
{
    static const uint8_t pal[12] = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120};
    membuf m = {0};
    uint8_t hdr[13] = {'G', 'I', 'F', '8', '9', 'a', (uint8_t)sw, (uint8_t)(sw >> 8),
                       (uint8_t)sh, (uint8_t)(sh >> 8), 0x81, 0, 0};
    mb_put(&m, hdr, 13);
    mb_put(&m, pal, 12);
    if (trns >= 0) {
        uint8_t gce[8] = {'!', 0xF9, 4, 1, 0, 0, (uint8_t)trns, 0};
        mb_put(&m, gce, 8);
    }
    uint8_t d[10] = {',', (uint8_t)x, (uint8_t)(x >> 8), (uint8_t)y, (uint8_t)(y >> 8),
                     (uint8_t)w, (uint8_t)(w >> 8), (uint8_t)h, (uint8_t)(h >> 8), 0};
    mb_put(&m, d, 10);
    gif_lzw(&m, idx, (size_t)w * (size_t)h, 2);
    mb_put(&m, ";", 1);
    *n = m.n;
    return m.p;
}

static uint32_t crc32_png(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return c ^ 0xffffffffu;
}

/* ----------------------------------------------------------- tests ---- */

static uint32_t rng_state = 12345;
static uint8_t rnd8(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return (uint8_t)(rng_state >> 16);
}

static void fill_photo(uint8_t *px, int w, int h, int c)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++)
                px[((size_t)y * w + x) * c + k] = (uint8_t)(x * 7 + y * 5 + k * 60 + (rnd8() & 15));
}

static int decode(const uint8_t *b, size_t n, const vtok_image_params *p, vtok_image *img,
                  vtok_status *st)
{
    /* Exact-size copy so ASan sees any read past the end. */
    uint8_t *c = malloc(n ? n : 1);
    memcpy(c, b, n);
    int rc = vtok_image_decode(c, n, p, img, st);
    free(c);
    return rc;
}

static void test_params_and_args(void)
{
    vtok_image_params p = vtok_image_default_params();
    CHECK(p.max_width == 65500 && p.max_height == 65500, "default sides");
    CHECK(p.max_pixels == 178956970, "default pixels %lld", (long long)p.max_pixels);
    CHECK(p.exif_orientation == 0 && p.jpeg_fast_scale == 0, "defaults off");

    vtok_status st = {0};
    vtok_image img = {7, 7, (uint8_t *)&img};
    CHECK(vtok_image_decode(NULL, 10, NULL, &img, &st) == VTOK_EINVAL, "NULL buf");
    CHECK(img.data == NULL && img.width == 0, "out zeroed on error");
    CHECK(vtok_image_decode("x", 1, NULL, NULL, &st) == VTOK_EINVAL, "NULL out");
    CHECK(vtok_image_decode("", 0, NULL, &img, &st) == VTOK_EFORMAT, "empty");
    CHECK(vtok_image_decode(NULL, 0, NULL, &img, NULL) == VTOK_EFORMAT, "NULL empty, NULL st");
    CHECK(vtok_image_decode("hello world", 11, NULL, &img, &st) == VTOK_EFORMAT, "unknown");
    CHECK(strstr(st.msg, "unrecognized") != NULL, "msg: %s", st.msg);
    CHECK(vtok_image_load(NULL, NULL, &img, &st) == VTOK_EINVAL, "load NULL path");
    CHECK(vtok_image_load("x", NULL, NULL, &st) == VTOK_EINVAL, "load NULL out");
    CHECK(vtok_image_load("/nonexistent/vtok.png", NULL, &img, &st) == VTOK_EIO, "load missing");
    CHECK(vtok_image_load("/", NULL, &img, &st) == VTOK_EIO, "load dir");
    vtok_image_free(NULL);
    vtok_image_free(&img);
    CHECK(img.data == NULL && img.width == 0 && img.height == 0, "free zeroes");

    CHECK(vt_image_sniff("\xff\xd8\xff", 3) == VT_IMG_JPEG, "jpeg");
    CHECK(vt_image_sniff("\xff\xd8", 2) == VT_IMG_UNKNOWN, "jpeg short");
    CHECK(vt_image_sniff("\x89PNG\r\n\x1a\n", 8) == VT_IMG_PNG, "png");
    CHECK(vt_image_sniff("\x89PNG\r\n\x1a", 7) == VT_IMG_UNKNOWN, "png short");
    CHECK(vt_image_sniff("RIFF\0\0\0\0WEBP", 12) == VT_IMG_WEBP, "webp");
    CHECK(vt_image_sniff("RIFF\0\0\0\0WAVE", 12) == VT_IMG_UNKNOWN, "wav");
    CHECK(vt_image_sniff("GIF87a", 6) == VT_IMG_GIF && vt_image_sniff("GIF89a", 6) == VT_IMG_GIF,
          "gif");
    CHECK(vt_image_sniff("GIF88a", 6) == VT_IMG_UNKNOWN, "gif88");
    CHECK(vt_image_sniff(NULL, 100) == VT_IMG_UNKNOWN, "NULL");

    CHECK(vt_image_check_limits(65500, 1, &p, &st) == VTOK_OK, "w at limit");
    CHECK(vt_image_check_limits(65501, 1, &p, &st) == VTOK_ELIMIT, "w over");
    CHECK(vt_image_check_limits(1, 65501, &p, &st) == VTOK_ELIMIT, "h over");
    CHECK(vt_image_check_limits(13377, 13377, &p, &st) == VTOK_OK, "178944129 pixels");
    CHECK(vt_image_check_limits(13378, 13378, &p, &st) == VTOK_ELIMIT, "178970884 pixels");
    vtok_image_params wide = p;
    wide.max_width = wide.max_height = (int64_t)1 << 40;
    CHECK(vt_image_check_limits(17895697, 10, &wide, &st) == VTOK_OK, "pixels at limit");
    CHECK(vt_image_check_limits(17895697, 11, &wide, &st) == VTOK_ELIMIT, "pixels over");
    CHECK(vt_image_check_limits(0, 5, &p, &st) == VTOK_EFORMAT, "zero width");
    CHECK(vt_image_check_limits(5, -1, &p, &st) == VTOK_EFORMAT, "negative");
    vtok_image_params z = {0};
    CHECK(vt_image_check_limits(65500, 2, &z, &st) == VTOK_OK, "zero params mean defaults");
    CHECK(vt_image_check_limits(65501, 2, &z, &st) == VTOK_ELIMIT, "zero params mean defaults");
    vtok_image_params small = p;
    small.max_pixels = 100;
    CHECK(vt_image_check_limits(10, 10, &small, &st) == VTOK_OK, "100 px");
    CHECK(vt_image_check_limits(10, 11, &small, &st) == VTOK_ELIMIT, "110 px");
    CHECK(vt_image_check_limits(INT64_MAX, INT64_MAX, NULL, &st) == VTOK_ELIMIT, "huge");
}

/* Every prefix of a valid file must fail cleanly or decode to the full size;
 * the full file must decode. */
static void sweep_truncations(const char *what, const uint8_t *b, size_t n, int64_t w, int64_t h)
{
    vtok_status st = {0};
    int ok_count = 0, bad = 0;
    size_t step = n > 4000 ? n / 2000 : 1;
    for (size_t cut = 0; cut <= n; cut += (cut + step >= n && cut != n) ? (n - cut) : step) {
        vtok_image img = {0};
        st.msg[0] = 0;
        int rc = decode(b, cut, NULL, &img, &st);
        if (rc == VTOK_OK) {
            ok_count++;
            if (img.width != w || img.height != h || !img.data)
                bad++;
        } else if (rc >= 0 || !st.msg[0] || img.data || strchr(st.msg, '\n')) {
            bad++;
        }
        vtok_image_free(&img);
        if (cut == n)
            CHECK(rc == VTOK_OK, "%s: full file fails: %s", what, st.msg);
        if (cut == n)
            break;
    }
    CHECK(bad == 0, "%s: %d bad truncation results", what, bad);
    CHECK(ok_count < 40, "%s: %d truncated prefixes decode", what, ok_count);
}

static void test_png(void)
{
    enum { W = 37, H = 23 };
    uint8_t px[W * H * 8], pal[768];
    vtok_status st = {0};
    vtok_image img = {0};
    size_t n;

    fill_photo(px, W, H, 3);
    uint8_t *f = png_encode(px, W, H, PNG_COLOR_TYPE_RGB, 8, 0, NULL, 0, NULL, 0, &n);
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_OK, "png rgb: %s", st.msg);
    CHECK(img.width == W && img.height == H && memcmp(img.data, px, sizeof px / 8 * 3) == 0,
          "png rgb pixels");
    vtok_image_free(&img);
    sweep_truncations("png rgb", f, n, W, H);
    /* Cut inside the zlib trailer (IEND, the IDAT CRC and 2 adler32 bytes
     * gone): every row is there, so Pillow decodes it, and so must we. */
    CHECK(decode(f, n - 18, NULL, &img, &st) == VTOK_OK && img.width == W &&
              memcmp(img.data, px, W * H * 3) == 0, "png cut in trailer: %s", st.msg);
    vtok_image_free(&img);
    /* A chunk after IDAT that is cut short fails, as in Pillow. */
    {
        static const uint8_t text[] = {0, 0, 0, 40, 't', 'E', 'X', 't', 'k', 0, 'v'};
        uint8_t *g = malloc(n - 12 + sizeof text);
        memcpy(g, f, n - 12);
        memcpy(g + n - 12, text, sizeof text);
        CHECK(decode(g, n - 12 + sizeof text, NULL, &img, &st) == VTOK_EFORMAT,
              "truncated tEXt after IDAT");
        /* ... also when EXIF is wanted and the chunk claims 2 GB (libpng
         * would allocate that before reading it). */
        g[n - 12] = 0x7f, g[n - 11] = 0xff, g[n - 10] = 0xff, g[n - 9] = 0xf0;
        vtok_image_params ep = vtok_image_default_params();
        ep.exif_orientation = 1;
        CHECK(decode(g, n - 12 + sizeof text, &ep, &img, &st) == VTOK_EFORMAT,
              "2 GB tEXt after IDAT");
        free(g);
    }
    free(f);

    f = png_encode(px, W, H, PNG_COLOR_TYPE_RGB, 8, 1, NULL, 0, NULL, 0, &n);
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_OK && memcmp(img.data, px, W * H * 3) == 0,
          "png interlaced: %s", st.msg);
    vtok_image_free(&img);
    sweep_truncations("png interlaced", f, n, W, H);
    free(f);

    /* 16-bit gray: clipped, not scaled (Pillow "I" -> RGB). */
    uint8_t g16[4 * 2] = {0x00, 0x05, 0x00, 0xFF, 0x01, 0x00, 0xFF, 0xFF};
    f = png_encode(g16, 4, 1, PNG_COLOR_TYPE_GRAY, 16, 0, NULL, 0, NULL, 0, &n);
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_OK, "g16: %s", st.msg);
    CHECK(img.data && img.data[0] == 5 && img.data[3] == 255 && img.data[6] == 255 &&
          img.data[9] == 255 && img.data[10] == 255, "g16 clip");
    vtok_image_free(&img);
    free(f);

    /* 16-bit RGBA: high bytes, alpha dropped. */
    uint8_t c16[8] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x00, 0x01};
    f = png_encode(c16, 1, 1, PNG_COLOR_TYPE_RGB_ALPHA, 16, 0, NULL, 0, NULL, 0, &n);
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_OK && img.data[0] == 0x12 && img.data[1] == 0x56 &&
          img.data[2] == 0x9a, "rgba16 high bytes");
    vtok_image_free(&img);
    free(f);

    /* Palette with 2 entries and indices past it: Pillow's gray ramp. */
    uint8_t idx[4] = {0, 1, 2, 200};
    pal[0] = 1, pal[1] = 2, pal[2] = 3, pal[3] = 4, pal[4] = 5, pal[5] = 6;
    f = png_encode(idx, 4, 1, PNG_COLOR_TYPE_PALETTE, 8, 0, pal, 2, NULL, 0, &n);
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_OK, "palette: %s", st.msg);
    static const uint8_t want[12] = {1, 2, 3, 4, 5, 6, 2, 2, 2, 200, 200, 200};
    CHECK(img.data && memcmp(img.data, want, 12) == 0, "palette ramp");
    vtok_image_free(&img);
    free(f);

    /* 2-bit gray scales by 85; 1-bit by 255. */
    uint8_t g2[1] = {0x1B}; /* 0 1 2 3 */
    f = png_encode(g2, 4, 1, PNG_COLOR_TYPE_GRAY, 2, 0, NULL, 0, NULL, 0, &n);
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_OK && img.data[3] == 85 && img.data[6] == 170 &&
          img.data[9] == 255, "gray2");
    vtok_image_free(&img);
    free(f);

    /* EXIF orientation 6 (ROTATE_270): 3 x 2 -> 2 x 3, only when asked. */
    uint8_t e6[] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0,
                    0, 0, 0, 0};
    uint8_t p3[18];
    for (int i = 0; i < 6; i++)
        p3[3 * i] = p3[3 * i + 1] = p3[3 * i + 2] = (uint8_t)(10 * i); /* a b c / d e f */
    f = png_encode(p3, 3, 2, PNG_COLOR_TYPE_RGB, 8, 0, NULL, 0, e6, (int)sizeof e6, &n);
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_OK && img.width == 3, "exif off");
    vtok_image_free(&img);
    vtok_image_params ep = vtok_image_default_params();
    ep.exif_orientation = 1;
    CHECK(decode(f, n, &ep, &img, &st) == VTOK_OK && img.width == 2 && img.height == 3,
          "exif 6 size");
    /* clockwise: d a / e b / f c */
    static const uint8_t rot[6] = {30, 0, 40, 10, 50, 20};
    int same = img.data != NULL;
    for (int i = 0; same && i < 6; i++)
        same = img.data[3 * i] == rot[i];
    CHECK(same, "exif 6 pixels");
    vtok_image_free(&img);
    ep.max_height = 2; /* 3 x 2 fits, the rotated 2 x 3 does not */
    CHECK(decode(f, n, &ep, &img, &st) == VTOK_ELIMIT, "rotated size checked");
    free(f);

    /* A header claiming 100000 x 100000 is refused before any allocation. */
    uint8_t bomb[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                      0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0, 8, 2, 0, 0, 0, 0, 0, 0, 0,
                      0, 0, 0, 0, 'I', 'D', 'A', 'T', 0, 0, 0, 0};
    uint32_t crc = crc32_png(bomb + 12, 17);
    bomb[29] = (uint8_t)(crc >> 24), bomb[30] = (uint8_t)(crc >> 16);
    bomb[31] = (uint8_t)(crc >> 8), bomb[32] = (uint8_t)crc;
    CHECK(decode(bomb, sizeof bomb, NULL, &img, &st) == VTOK_ELIMIT, "png bomb: %s", st.msg);
}
static void test_gif(void)
{
    vtok_status st = {0};
    vtok_image img = {0};
    size_t n;
    uint8_t idx[30 * 20];
    for (size_t i = 0; i < sizeof idx; i++)
        idx[i] = rnd8() & 3;
    uint8_t *f = gif_encode(30, 20, 0, 0, 30, 20, idx, -1, &n);
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_OK && img.width == 30 && img.height == 20,
          "gif: %s", st.msg);
    int same = img.data != NULL;
    for (size_t i = 0; same && i < sizeof idx; i++)
        same = img.data[3 * i] == 10 + 30 * idx[i] && img.data[3 * i + 2] == 30 + 30 * idx[i];
    CHECK(same, "gif pixels");
    vtok_image_free(&img);
    sweep_truncations("gif", f, n, 30, 20);
    free(f);

    /* A 2 x 2 frame at (3, 1) on 6 x 4: the rest is index 0, or the
     * transparent index when the frame has one. */
    uint8_t four[4] = {1, 2, 3, 1};
    f = gif_encode(6, 4, 3, 1, 2, 2, four, -1, &n);
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_OK && img.data[0] == 10 &&
          img.data[3 * (6 + 3)] == 40 && img.data[3 * (6 + 4)] == 70, "gif frame on index 0");
    vtok_image_free(&img);
    free(f);
    f = gif_encode(6, 4, 3, 1, 2, 2, four, 3, &n);
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_OK && img.data[0] == 100 &&
          img.data[3 * (6 + 3)] == 40, "gif frame on transparent index");
    vtok_image_free(&img);
    free(f);
    /* A frame reaching past the screen grows the image. */
    f = gif_encode(4, 2, 3, 1, 2, 2, four, -1, &n);
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_OK && img.width == 5 && img.height == 3,
          "gif grows");
    vtok_image_free(&img);
    free(f);
    /* 65535 x 65535 screen: refused before allocating. */
    f = gif_encode(65535, 65535, 0, 0, 2, 2, four, -1, &n);
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_ELIMIT, "gif bomb: %s", st.msg);
    free(f);
    vtok_image_params small = vtok_image_default_params();
    small.max_width = 4;
    f = gif_encode(4, 2, 3, 1, 2, 2, four, -1, &n);
    CHECK(decode(f, n, &small, &img, &st) == VTOK_ELIMIT, "gif grown size is checked");
    free(f);
}

static void test_webp(void)
{
    enum { W = 29, H = 17 };
    uint8_t px[W * H * 3];
    fill_photo(px, W, H, 3);
    vtok_status st = {0};
    vtok_image img = {0};
    uint8_t *f = NULL;
    size_t n = WebPEncodeLosslessRGB(px, W, H, W * 3, &f);
    CHECK(n > 0, "webp encode");
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_OK && img.width == W &&
          memcmp(img.data, px, sizeof px) == 0, "webp lossless exact: %s", st.msg);
    vtok_image_free(&img);
    sweep_truncations("webp lossless", f, n, W, H);
    /* Bytes after the RIFF payload are ignored; inside it they must be chunks. */
    uint8_t *g = malloc(n + 3);
    memcpy(g, f, n);
    memcpy(g + n, "abc", 3);
    CHECK(decode(g, n + 3, NULL, &img, &st) == VTOK_OK, "webp trailing bytes: %s", st.msg);
    vtok_image_free(&img);
    uint32_t riff = (uint32_t)(n - 8 + 3);
    g[4] = (uint8_t)riff, g[5] = (uint8_t)(riff >> 8), g[6] = (uint8_t)(riff >> 16);
    g[7] = (uint8_t)(riff >> 24);
    CHECK(decode(g, n + 3, NULL, &img, &st) == VTOK_EFORMAT, "webp stray bytes in RIFF");
    free(g);
    WebPFree(f);
    n = WebPEncodeRGB(px, W, H, W * 3, 80, &f);
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_OK && img.width == W && img.height == H,
          "webp lossy: %s", st.msg);
    long err = 0;
    for (size_t i = 0; img.data && i < sizeof px; i++)
        err += abs((int)img.data[i] - px[i]);
    CHECK(img.data && err / (long)sizeof px < 20, "webp lossy close (%ld)", err / (long)sizeof px);
    vtok_image_free(&img);
    sweep_truncations("webp lossy", f, n, W, H);
    WebPFree(f);
    /* A VP8X canvas of 16384 x 16384 is refused before decoding. */
    uint8_t big[] = {'R', 'I', 'F', 'F', 30, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', 'X', 10,
                     0, 0, 0, 0, 0, 0, 0, 0xff, 0x3f, 0, 0xff, 0x3f, 0, 'V', 'P', '8', 'L', 4, 0,
                     0, 0, 0x2f, 0xff, 0xff, 0xff};
    CHECK(decode(big, sizeof big, NULL, &img, &st) != VTOK_OK, "webp bomb");
}

static void test_jpeg(void)
{
    enum { W = 40, H = 30 };
    uint8_t px[W * H * 4];
    fill_photo(px, W, H, 3);
    vtok_status st = {0};
    vtok_image img = {0};
    size_t n;
    jpeg_opts o = {.quality = 95};
    uint8_t *f = jpeg_encode(px, W, H, &o, &n, NULL, 0);
    CHECK(f && decode(f, n, NULL, &img, &st) == VTOK_OK && img.width == W && img.height == H,
          "jpeg: %s", st.msg);
    vtok_image_free(&img);
    sweep_truncations("jpeg", f, n, W, H);
    /* Missing EOI fails as in Pillow (the last MCU needs more data). */
    CHECK(decode(f, n - 2, NULL, &img, &st) == VTOK_EFORMAT, "jpeg no EOI");
    /* A SOF claiming 65500 x 65500. */
    uint8_t *b = malloc(n);
    memcpy(b, f, n);
    for (size_t i = 2; i + 9 < n; i++) {
        if (b[i] == 0xFF && b[i + 1] == 0xC0) {
            b[i + 5] = b[i + 7] = 0xFF;
            b[i + 6] = b[i + 8] = 0xDC;
            break;
        }
    }
    CHECK(decode(b, n, NULL, &img, &st) == VTOK_ELIMIT, "jpeg bomb: %s", st.msg);
    /* Pillow's marker parser refuses TEM (FF 01), which libjpeg would skip. */
    b = realloc(b, n + 2);
    memcpy(b + 4, f + 2, n - 2);
    b[2] = 0xFF, b[3] = 0x01;
    CHECK(decode(b, n + 2, NULL, &img, &st) == VTOK_EFORMAT, "TEM marker");
    free(b);
    free(f);

    o.progressive = 1;
    f = jpeg_encode(px, W, H, &o, &n, NULL, 0);
    sweep_truncations("jpeg progressive", f, n, W, H);
    free(f);

    fill_photo(px, W, H, 4);
    jpeg_opts oc = {.cs = "ycck", .quality = 90};
    f = jpeg_encode(px, W, H, &oc, &n, NULL, 0);
    CHECK(f && decode(f, n, NULL, &img, &st) == VTOK_OK && img.width == W, "ycck: %s", st.msg);
    vtok_image_free(&img);
    free(f);

    /* Gray: channels replicated. */
    jpeg_opts og = {.cs = "gray"};
    f = jpeg_encode(px, W, H, &og, &n, NULL, 0);
    CHECK(f && decode(f, n, NULL, &img, &st) == VTOK_OK, "gray: %s", st.msg);
    int gray = img.data != NULL;
    for (int i = 0; gray && i < W * H; i++)
        gray = img.data[3 * i] == img.data[3 * i + 1] && img.data[3 * i] == img.data[3 * i + 2];
    CHECK(gray, "gray replicated");
    vtok_image_free(&img);
    free(f);

    /* EXIF orientation 8 in APP1; only applied when asked. */
    uint8_t app1[6 + 26] = {'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12,
                            0x01, 3, 0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0};
    fill_photo(px, W, H, 3);
    f = jpeg_encode(px, W, H, &o, &n, app1, sizeof app1);
    CHECK(decode(f, n, NULL, &img, &st) == VTOK_OK && img.width == W, "exif off");
    vtok_image_free(&img);
    vtok_image_params ep = vtok_image_default_params();
    ep.exif_orientation = 1;
    CHECK(decode(f, n, &ep, &img, &st) == VTOK_OK && img.width == H && img.height == W,
          "exif 8: %s", st.msg);
    vtok_image_free(&img);
    free(f);

    /* jpeg_fast_scale: the smallest 1/d whose short side is >= target. */
    enum { BW = 800, BH = 600 };
    uint8_t *bp = malloc((size_t)BW * BH * 3);
    fill_photo(bp, BW, BH, 3);
    jpeg_opts ob = {.quality = 80};
    f = jpeg_encode(bp, BW, BH, &ob, &n, NULL, 0);
    free(bp);
    static const int64_t targets[][3] = {{224, 400, 300}, {100, 200, 150}, {75, 100, 75},
                                         {76, 200, 150}, {1, 100, 75}, {600, 800, 600},
                                         {601, 800, 600}, {0, 800, 600}};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        vtok_image_params fp = vtok_image_default_params();
        fp.jpeg_fast_scale = 1;
        fp.jpeg_target = targets[i][0];
        CHECK(decode(f, n, &fp, &img, &st) == VTOK_OK && img.width == targets[i][1] &&
                  img.height == targets[i][2],
              "fast scale %lld -> %lldx%lld", (long long)targets[i][0], (long long)img.width,
              (long long)img.height);
        vtok_image_free(&img);
    }

    /* vtok_image_load reads the file and names it in errors. */
    char path[] = "/tmp/vtok_test_decode_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) {
        CHECK(write(fd, f, n / 2) == (ssize_t)(n / 2), "write");
        close(fd);
        CHECK(vtok_image_load(path, NULL, &img, &st) == VTOK_EFORMAT && strstr(st.msg, path),
              "load names the file: %s", st.msg);
        FILE *fp = fopen(path, "wb");
        fwrite(f, 1, n, fp);
        fclose(fp);
        CHECK(vtok_image_load(path, NULL, &img, &st) == VTOK_OK && img.width == BW, "load");
        vtok_image_free(&img);
        unlink(path);
    }
    free(f);
}

static void test_exif_parser(void)
{
    /* II, one SHORT entry = 6 */
    uint8_t a[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0,
                   0, 0, 0, 0};
    CHECK(vt_exif_orientation(a, sizeof a) == 6, "II short");
    CHECK(vt_exif_orientation(a, 21) == -1, "entry cut: no tag");
    a[12] = 1; /* BYTE: present, but bytes match no orientation */
    CHECK(vt_exif_orientation(a, sizeof a) == 0, "BYTE");
    a[12] = 4; /* LONG */
    CHECK(vt_exif_orientation(a, sizeof a) == 6, "LONG");
    a[12] = 99; /* unknown type: skipped */
    CHECK(vt_exif_orientation(a, sizeof a) == -1, "unknown type");
    a[12] = 3;
    a[14] = 0; /* count 0: skipped */
    CHECK(vt_exif_orientation(a, sizeof a) == -1, "count 0");
    a[14] = 2; /* count 2: first value */
    CHECK(vt_exif_orientation(a, sizeof a) == 6, "count 2");
    a[14] = 3; /* 6 bytes: out of line at offset 0x0006 -> inside the blob */
    CHECK(vt_exif_orientation(a, sizeof a) == 0 || vt_exif_orientation(a, sizeof a) >= -1,
          "out of line");
    a[18] = 0xF0, a[19] = 0xFF; /* offset past the end: Pillow stops */
    CHECK(vt_exif_orientation(a, sizeof a) == -1, "out-of-line past end");
    a[4] = 200; /* IFD past the end */
    CHECK(vt_exif_orientation(a, sizeof a) == -1, "IFD past end");
    uint8_t m[] = {'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3,
                   0, 0, 0, 1, 0, 3, 0, 0};
    CHECK(vt_exif_orientation(m, sizeof m) == 3, "MM with Exif prefix");
    CHECK(vt_exif_orientation(m, 5) == -1 && vt_exif_orientation(NULL, 0) == -1, "tiny");
    m[7] = 'I';
    CHECK(vt_exif_orientation(m, sizeof m) == -1, "bad byte order");

    const char *x1 = "<a tiff:Orientation=\"8\"/>";
    const char *x2 = "<tiff:Orientation>5</tiff:Orientation>";
    const char *x3 = "tiff:Orientation=5 tiff:Orientation>2";
    CHECK(vt_xmp_orientation((const uint8_t *)x1, strlen(x1)) == 8, "xmp attr");
    CHECK(vt_xmp_orientation((const uint8_t *)x2, strlen(x2)) == 5, "xmp element");
    CHECK(vt_xmp_orientation((const uint8_t *)x3, strlen(x3)) == 2, "xmp first match");
    CHECK(vt_xmp_orientation((const uint8_t *)x2, 17) == -1, "xmp cut");

    const char *rp = "\nexif\n      6\n45 78\n69\n6600 00\n";
    uint8_t *blob = NULL;
    size_t nb = 0;
    CHECK(vt_exif_from_raw_profile((const uint8_t *)rp, strlen(rp), &blob, &nb) == 0 &&
              nb == 6 && memcmp(blob, "Exif\0\0", 6) == 0, "raw profile hex");
    vt_free(blob);
    const char *bad = "\nexif\n 1\n4g\n";
    CHECK(vt_exif_from_raw_profile((const uint8_t *)bad, strlen(bad), &blob, &nb) == -1,
          "raw profile bad hex");
}

static void test_orient(void)
{
    /* All eight orientations of a 3 x 2 image, as Pillow's transposes:
     * a b c / d e f. */
    static const char *want[9] = {
        NULL, "abc/def", "cba/fed", "fed/cba", "def/abc", "ad/be/cf", "da/eb/fc", "fc/eb/da",
        "cf/be/ad",
    };
    for (int o = 1; o <= 8; o++) {
        vtok_image img = {0};
        vtok_status st = {0};
        vt_image_alloc(&img, 3, 2, &st);
        for (int i = 0; i < 6; i++)
            img.data[3 * i] = img.data[3 * i + 1] = img.data[3 * i + 2] = (uint8_t)('a' + i);
        CHECK(vt_image_orient(&img, o, NULL, &st) == VTOK_OK, "orient %d", o);
        char got[16];
        size_t k = 0;
        for (int64_t y = 0; y < img.height; y++) {
            if (y)
                got[k++] = '/';
            for (int64_t x = 0; x < img.width; x++)
                got[k++] = (char)img.data[3 * (y * img.width + x)];
        }
        got[k] = 0;
        CHECK(strcmp(got, want[o]) == 0, "orientation %d: %s, want %s", o, got, want[o]);
        vtok_image_free(&img);
    }
}

/* ----------------------------------------------------------- tests ---- */

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--dump") == 0)
        return dump(argc, argv);
    if (argc > 1 && strcmp(argv[1], "--make-jpeg") == 0)
        return make_jpeg(argc, argv);
    test_params_and_args();
    test_exif_parser();
    test_orient();
    test_png();
    test_gif();
    test_webp();
    test_jpeg();
    printf("test_decode: %d checks, %d failed\n", n_check, n_fail);
    return n_fail ? 1 : 0;
}
