/*
 * ref_resample.c - the two Pillow resampling passes in plain C: the
 * specification of the table's resample_h / resample_v (kernels.h).
 *
 * Moved from src/image/resample.c (which computes the coefficients and runs
 * the passes through the kernel table); they follow Pillow 9.4's
 * src/libImaging/Resample.c ImagingResampleHorizontal_8bpc and
 * ImagingResampleVertical_8bpc step for step. Sums are kept in uint32
 * (wrap-around), which equals Pillow's int arithmetic whenever that does not
 * overflow (always, for normalised weights) and is never undefined.
 */
#include "kernels/kernels_internal.h"

#define PREC VT_RESAMPLE_PRECISION_BITS

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

/* The reference needs no coefficient table. */
size_t vt_ref_resample_h_table_ints(const vt_resample_coeffs *c)
{
    (void)c;
    return 0;
}

void vt_ref_resample_h_prepare(const vt_resample_coeffs *c, int32_t *table)
{
    (void)c;
    (void)table;
}

void vt_ref_resample_h(const uint8_t *src, size_t src_stride, int rows, int in_w,
                       const uint8_t *src_end, uint8_t *pad, uint8_t *dst, size_t dst_stride,
                       const vt_resample_coeffs *c, const int32_t *table)
{
    /* Reads only the pixels it uses: no padding copy. */
    (void)in_w;
    (void)src_end;
    (void)pad;
    (void)table;
    h_pass_c(src, src_stride, rows, dst, dst_stride, c);
}

void vt_ref_resample_v(const uint8_t *src, size_t src_stride, size_t row_bytes, uint8_t *dst,
                       size_t dst_stride, const vt_resample_coeffs *c, uint32_t *acc)
{
    v_pass_c(src, src_stride, row_bytes, dst, dst_stride, c, acc);
}
