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

static int n_fail;
static int n_check;

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        n_check++;                                                                            \
        if (!(cond)) {                                                                        \
            n_fail++;                                                                         \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                   \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fprintf(stderr, "\n");                                                            \
        }                                                                                     \
    } while (0)

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

/* ----------------------------------------------------------- tests ---- */

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--dump") == 0)
        return dump(argc, argv);
    if (argc > 1 && strcmp(argv[1], "--make-jpeg") == 0)
        return make_jpeg(argc, argv);
    printf("test_decode: %d checks, %d failed\n", n_check, n_fail);
    return n_fail ? 1 : 0;
}
