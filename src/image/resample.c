/*
 * resample.c - vtok_image_resize: RGB8 resizing bit-exact with Pillow 9.4's
 * Image.resize(size, resample=f) (box=None, reducing_gap=None).
 *
 * Why bit-exact: the HF image processors every model here was trained with
 * call Pillow, and a one-level difference in a pixel moves embeddings and VQ
 * ids. So this file re-derives Pillow's arithmetic step for step rather than
 * approximating it; every numerical choice below names the Pillow function it
 * follows (python-pillow/Pillow, src/libImaging/Resample.c, Geometry.c,
 * src/_imaging.c, src/PIL/Image.py):
 *
 * - Image.resize returns a copy when the size is unchanged.
 * - NEAREST (_imaging.c _resize) is not a convolution: it is the affine
 *   transform a = (in_w / out_w, 0, 0, 0, in_h / out_h, 0) done by
 *   Geometry.c ImagingScaleAffine: x_src = COORD(xo) with xo starting at
 *   a0 * 0.5 and advanced by "xo += a0" per output column (accumulated in
 *   double, so the rounding of the running sum matters), likewise rows.
 * - The other five filters go through Resample.c ImagingResampleInner:
 *   vertical coefficients first (their first/last source rows bound the rows
 *   the horizontal pass must produce), then the horizontal pass (only when
 *   the width changes) into an 8-bit intermediate, then the vertical pass
 *   (only when the height changes). The intermediate is clipped to 8 bits, so
 *   the order of the passes is part of the result.
 * - precompute_coeffs: scale = in / out, filterscale = max(scale, 1),
 *   support = filter support * filterscale, center = (i + 0.5) * scale,
 *   xmin = (int)(center - support + 0.5) clipped at 0, xmax likewise clipped
 *   at in, w = filter((x + xmin - center + 0.5) / filterscale), weights
 *   divided by their sum unless it is 0.
 * - normalize_coeffs_8bpc: k = (int)(w * 2^22 +- 0.5) (half away from zero).
 * - ImagingResample{Horizontal,Vertical}_8bpc: int sums starting at
 *   1 << 21, result clip8(sum >> 22) (the lookup table is a clamp to 0..255).
 *
 * The plain-C passes below are the specification; resample_avx2.c does the
 * same integer arithmetic eight lanes at a time. Sums are kept in uint32
 * (wrap-around), which equals Pillow's int arithmetic whenever that does not
 * overflow (always, for normalised weights) and is never undefined.
 */
#include "image.h"
#include "../kernels/kernels.h"

/* resample_avx2.c is built only for x86 (CMakeLists.txt); elsewhere the C
 * passes run. */
#if defined(__x86_64__) || defined(__i386__)
#define VT_RESAMPLE_AVX2 1
#else
#define VT_RESAMPLE_AVX2 0
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Largest side accepted for source and result (the default decode limit in
 * vtok_image_params), and the most pixels in the result or in the
 * intermediate image of the two-pass resize: Pillow's decompression-bomb
 * error threshold, 2 * Image.MAX_IMAGE_PIXELS. Pillow itself has no such
 * limit in resize; these only refuse requests that would need gigabytes. */
#define VT_RESIZE_MAX_SIDE   65500
#define VT_RESIZE_MAX_PIXELS 178956970LL

#define PREC VT_RESAMPLE_PRECISION_BITS
#define VT_PI 3.14159265358979323846 /* M_PI as Pillow uses it */

/* ------------------------------------------------ filters (Resample.c) -- */

static double box_filter(double x)
{
    return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
}

static double bilinear_filter(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double hamming_filter(double x)
{
    if (x < 0.0)
        x = -x;
    if (x == 0.0)
        return 1.0;
    if (x >= 1.0)
        return 0.0;
    x = x * VT_PI;
    /* Pillow writes the constants as floats (0.54f, 0.46f): keep their
     * float values, widened to double, or the weights differ in the last bits. */
    return sin(x) / x * ((double)0.54f + (double)0.46f * cos(x));
}

static double bicubic_filter(double x)
{
    /* Keys' cubic convolution with a = -0.5, in Pillow's evaluation order. */
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc_filter(double x)
{
    if (x == 0.0)
        return 1.0;
    x = x * VT_PI;
    return sin(x) / x;
}

static double lanczos_filter(double x)
{
    /* Three lobes; note the half-open interval [-3, 3) of Pillow. */
    if (-3.0 <= x && x < 3.0)
        return sinc_filter(x) * sinc_filter(x / 3);
    return 0.0;
}

typedef struct rs_filter {
    double (*fn)(double);
    double support;
} rs_filter;

/* Indexed by vtok_resample (Pillow's numbering); NEAREST has no kernel. */
static const rs_filter rs_filters[6] = {
    [VTOK_RESAMPLE_NEAREST]  = {NULL, 0.0},
    [VTOK_RESAMPLE_LANCZOS]  = {lanczos_filter, 3.0},
    [VTOK_RESAMPLE_BILINEAR] = {bilinear_filter, 1.0},
    [VTOK_RESAMPLE_BICUBIC]  = {bicubic_filter, 2.0},
    [VTOK_RESAMPLE_BOX]      = {box_filter, 0.5},
    [VTOK_RESAMPLE_HAMMING]  = {hamming_filter, 1.0},
};

/* --------------------------------------------------------- coefficients -- */

static void coeffs_free(vt_resample_coeffs *c)
{
    vt_free(c->bounds);
    vt_free(c->k);
    memset(c, 0, sizeof *c);
}

/* Pillow's precompute_coeffs(in_size, 0, in_size, out_size) followed by
 * normalize_coeffs_8bpc, with the same double arithmetic in the same order. */
static int coeffs_build(int in_size, int out_size, const rs_filter *f, vt_resample_coeffs *c,
                        vtok_status *st)
{
    memset(c, 0, sizeof *c);
    /* box = (0, 0, w, h) as floats in _resize: in1 - in0 is a float. */
    double scale = (double)((float)in_size - 0.0f) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale;
    double ss = 1.0 / filterscale;
    /* support <= 3 * 65500, so ksize fits an int comfortably. */
    int ksize = (int)ceil(support) * 2 + 1;

    size_t nk = (size_t)out_size * (size_t)ksize;
    c->out_size = out_size;
    c->ksize = ksize;
    c->bounds = vt_alloc((size_t)out_size * 2 * sizeof(int32_t));
    c->k = vt_calloc(nk, sizeof(int32_t));
    double *w = vt_alloc((size_t)ksize * sizeof(double));
    if (!c->bounds || !c->k || !w) {
        vt_free(w);
        coeffs_free(c);
        return vt_fail(st, VTOK_ENOMEM, "resize: out of memory for %d x %d coefficients",
                       out_size, ksize);
    }

    for (int xx = 0; xx < out_size; xx++) {
        double center = 0.0 + (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            double v = f->fn(((double)(x + xmin) - center + 0.5) * ss);
            w[x] = v;
            ww += v;
        }
        int32_t *k = c->k + (size_t)xx * ksize;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            /* normalize_coeffs_8bpc: round half away from zero. */
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PREC)) : (int32_t)(0.5 + v * (1 << PREC));
        }
        c->bounds[2 * xx + 0] = xmin;
        c->bounds[2 * xx + 1] = xmax > 0 ? xmax : 0;
    }
    vt_free(w);
    return 0;
}

/* ------------------------------------------------------ plain-C passes -- */

static inline uint8_t clip8(uint32_t acc)
{
    /* Pillow: clip8_lookups[(int)acc >> 22], a table that clamps to 0..255.
     * (int32_t) of a uint32 is modulo 2^32 in gcc/clang; >> is arithmetic. */
    int32_t v = (int32_t)acc >> PREC;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* ImagingResampleHorizontal_8bpc for 3 bands, rows [0, rows). */
static void h_pass_c(const uint8_t *src, size_t src_stride, int rows, uint8_t *dst,
                     size_t dst_stride, const vt_resample_coeffs *c)
{
    for (int y = 0; y < rows; y++) {
        const uint8_t *in = src + (size_t)y * src_stride;
        uint8_t *out = dst + (size_t)y * dst_stride;
        for (int xx = 0; xx < c->out_size; xx++) {
            const uint8_t *p = in + (size_t)c->bounds[2 * xx] * 3;
            int n = c->bounds[2 * xx + 1];
            const int32_t *k = c->k + (size_t)xx * c->ksize;
            uint32_t s0 = 1u << (PREC - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < n; x++) {
                uint32_t kx = (uint32_t)k[x];
                s0 += p[3 * x + 0] * kx;
                s1 += p[3 * x + 1] * kx;
                s2 += p[3 * x + 2] * kx;
            }
            out[3 * xx + 0] = clip8(s0);
            out[3 * xx + 1] = clip8(s1);
            out[3 * xx + 2] = clip8(s2);
        }
    }
}

/* ImagingResampleVertical_8bpc. The sum for each byte of the row is the
 * same integer as Pillow's (integer addition is associative), built tap by
 * tap over a whole row in acc (row_bytes uint32s) so the loop streams. */
static void v_pass_c(const uint8_t *src, size_t src_stride, size_t row_bytes, uint8_t *dst,
                     size_t dst_stride, const vt_resample_coeffs *c, uint32_t *acc)
{
    for (int yy = 0; yy < c->out_size; yy++) {
        const int32_t *k = c->k + (size_t)yy * c->ksize;
        int ymin = c->bounds[2 * yy], n = c->bounds[2 * yy + 1];
        for (size_t i = 0; i < row_bytes; i++)
            acc[i] = 1u << (PREC - 1);
        for (int t = 0; t < n; t++) {
            const uint8_t *in = src + (size_t)(ymin + t) * src_stride;
            uint32_t kt = (uint32_t)k[t];
            for (size_t i = 0; i < row_bytes; i++)
                acc[i] += in[i] * kt;
        }
        uint8_t *out = dst + (size_t)yy * dst_stride;
        for (size_t i = 0; i < row_bytes; i++)
            out[i] = clip8(acc[i]);
    }
}

/* ------------------------------------------------------------- nearest -- */

/* Geometry.c COORD: truncation, with everything left of 0 mapped to -1. */
static inline int coord(double v)
{
    return v < 0.0 ? -1 : (int)v;
}

/* _imaging.c _resize NEAREST branch -> ImagingTransformAffine ->
 * ImagingScaleAffine with fill = 1 (pixels that map outside stay 0). */
static void nearest(const vtok_image *src, int out_w, int out_h, uint8_t *dst, int *xintab)
{
    int in_w = (int)src->width, in_h = (int)src->height;
    double a0 = (double)((float)in_w - 0.0f) / out_w;
    double a4 = (double)((float)in_h - 0.0f) / out_h;
    double xo = 0.0 + a0 * 0.5;
    double yo = 0.0 + a4 * 0.5;
    int xmin = out_w, xmax = 0;
    for (int x = 0; x < out_w; x++) {
        int xin = coord(xo);
        xintab[x] = 0;
        if (xin >= 0 && xin < in_w) {
            xmax = x + 1;
            if (x < xmin)
                xmin = x;
            xintab[x] = xin;
        }
        xo += a0;
    }
    size_t row = (size_t)out_w * 3;
    for (int y = 0; y < out_h; y++) {
        uint8_t *out = dst + (size_t)y * row;
        int yi = coord(yo);
        memset(out, 0, row);
        if (yi >= 0 && yi < in_h) {
            const uint8_t *in = src->data + (size_t)yi * (size_t)in_w * 3;
            for (int x = xmin; x < xmax; x++) {
                const uint8_t *p = in + (size_t)xintab[x] * 3;
                out[3 * x + 0] = p[0];
                out[3 * x + 1] = p[1];
                out[3 * x + 2] = p[2];
            }
        }
        yo += a4;
    }
}

/* ---------------------------------------------------------------- entry -- */

#if VT_RESAMPLE_AVX2
static int use_avx2(int isa)
{
    if (isa == 0)
        return 0;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2"))
        return 0;
    if (isa > 0)
        return 1;
    /* Best available, unless the reference kernels are forced
     * (VTOK_FORCE_REF / vtok_force_reference_kernels). */
    return strcmp(vt_kernels_get()->name, "ref") != 0;
}
#endif

static int check_side(const char *what, int64_t v, vtok_status *st)
{
    if (v < 1)
        return vt_fail(st, VTOK_EINVAL, "resize: %s %lld must be at least 1", what, (long long)v);
    if (v > VT_RESIZE_MAX_SIDE)
        return vt_fail(st, VTOK_ELIMIT, "resize: %s %lld exceeds the limit %d", what,
                       (long long)v, VT_RESIZE_MAX_SIDE);
    return 0;
}

int vt_image_resize_isa(const vtok_image *src, int64_t width, int64_t height,
                        vtok_resample filter, int isa, vtok_image *dst, vtok_status *st)
{
    int rc;
    if (!dst)
        return vt_fail(st, VTOK_EINVAL, "resize: dst is NULL");
    memset(dst, 0, sizeof *dst);
    if (!src || !src->data)
        return vt_fail(st, VTOK_EINVAL, "resize: source image or its data is NULL");
    if ((rc = check_side("source width", src->width, st)) ||
        (rc = check_side("source height", src->height, st)) ||
        (rc = check_side("width", width, st)) || (rc = check_side("height", height, st)))
        return rc;
    if ((int)filter < 0 || (int)filter > 5)
        return vt_fail(st, VTOK_EINVAL, "resize: unknown resampling filter %d", (int)filter);
    if (width * height > VT_RESIZE_MAX_PIXELS)
        return vt_fail(st, VTOK_ELIMIT, "resize: %lld x %lld is more than %lld pixels",
                       (long long)width, (long long)height, VT_RESIZE_MAX_PIXELS);

    int in_w = (int)src->width, in_h = (int)src->height;
    int out_w = (int)width, out_h = (int)height;
    size_t in_row = (size_t)in_w * 3, out_row = (size_t)out_w * 3;
    uint8_t *out = vt_alloc(out_row * (size_t)out_h);
    if (!out)
        return vt_fail(st, VTOK_ENOMEM, "resize: out of memory for %d x %d", out_w, out_h);

    rc = 0;
    if (in_w == out_w && in_h == out_h) {
        /* Image.resize: same size -> self.copy(). */
        memcpy(out, src->data, out_row * (size_t)out_h);
    } else if (filter == VTOK_RESAMPLE_NEAREST) {
        int *xintab = vt_alloc((size_t)out_w * sizeof(int));
        if (!xintab)
            rc = vt_fail(st, VTOK_ENOMEM, "resize: out of memory");
        else
            nearest(src, out_w, out_h, out, xintab);
        vt_free(xintab);
    } else {
        const rs_filter *f = &rs_filters[filter];
#if VT_RESAMPLE_AVX2
        int avx2 = use_avx2(isa);
#endif
        int need_h = out_w != in_w, need_v = out_h != in_h;
        vt_resample_coeffs cv = {0}, ch = {0};
        uint8_t *tmp = NULL, *pad = NULL;
        uint32_t *acc = NULL;
        int32_t *table = NULL;

        /* Vertical coefficients first: they say which source rows the
         * horizontal pass has to produce (ImagingResampleInner's ybox). */
        int y0 = 0, y1 = in_h;
        if (need_v) {
            if ((rc = coeffs_build(in_h, out_h, f, &cv, st)))
                goto done;
            y0 = cv.bounds[0];
            y1 = cv.bounds[2 * (out_h - 1)] + cv.bounds[2 * (out_h - 1) + 1];
            for (int i = 0; i < out_h; i++)
                cv.bounds[2 * i] -= y0; /* rows relative to vsrc below */
        }

        const uint8_t *vsrc = src->data + (size_t)y0 * in_row; /* rows y0.. of the input */
        if (need_h) {
            if ((rc = coeffs_build(in_w, out_w, f, &ch, st)))
                goto done;
            /* Without a vertical pass the horizontal one writes the result. */
            uint8_t *hdst = out;
            if (need_v) {
                /* Pillow allocates this out_w x (y1 - y0) image too. Widening
                 * while shrinking the height a lot (2 x 65500 -> 65500 x 2)
                 * makes it far larger than source and result: refuse rather
                 * than touch gigabytes. */
                if ((int64_t)out_w * (y1 - y0) > VT_RESIZE_MAX_PIXELS) {
                    rc = vt_fail(st, VTOK_ELIMIT,
                                 "resize: %d x %d -> %d x %d needs a %d x %d intermediate, "
                                 "more than %lld pixels",
                                 in_w, in_h, out_w, out_h, out_w, y1 - y0, VT_RESIZE_MAX_PIXELS);
                    goto done;
                }
                tmp = vt_alloc(out_row * (size_t)(y1 - y0));
                if (!tmp) {
                    rc = vt_fail(st, VTOK_ENOMEM, "resize: out of memory for %d x %d", out_w,
                                 y1 - y0);
                    goto done;
                }
                hdst = tmp;
            }
#if VT_RESAMPLE_AVX2
            if (avx2) {
                table = vt_alloc(vt_resample_h_avx2_table_ints(&ch) * sizeof(int32_t));
                pad = vt_calloc(in_row + 32, 1);
                if (!table || !pad) {
                    rc = vt_fail(st, VTOK_ENOMEM, "resize: out of memory");
                    goto done;
                }
                vt_resample_h_avx2_prepare(&ch, table);
                vt_resample_h_avx2(vsrc, in_row, y1 - y0, in_w,
                                   src->data + in_row * (size_t)in_h, pad, hdst, out_row, &ch,
                                   table);
            } else
#endif
            {
                h_pass_c(vsrc, in_row, y1 - y0, hdst, out_row, &ch);
            }
            vsrc = tmp;
        }
        if (need_v) {
#if VT_RESAMPLE_AVX2
            if (avx2) {
                vt_resample_v_avx2(vsrc, out_row, out_row, out, out_row, &cv);
            } else
#endif
            {
                acc = vt_alloc(out_row * sizeof(uint32_t));
                if (!acc) {
                    rc = vt_fail(st, VTOK_ENOMEM, "resize: out of memory");
                    goto done;
                }
                v_pass_c(vsrc, out_row, out_row, out, out_row, &cv, acc);
            }
        }
    done:
        coeffs_free(&cv);
        coeffs_free(&ch);
        vt_free(tmp);
        vt_free(pad);
        vt_free(acc);
        vt_free(table);
    }
    if (rc) {
        vt_free(out);
        return rc;
    }
    dst->width = out_w;
    dst->height = out_h;
    dst->data = out;
    return 0;
}

int vtok_image_resize(const vtok_image *src, int64_t width, int64_t height, vtok_resample filter,
                      vtok_image *dst, vtok_status *st)
{
    return vt_image_resize_isa(src, width, height, filter, -1, dst, st);
}
