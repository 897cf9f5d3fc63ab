/*
 * resample_avx2.c - AVX2 versions of the two Pillow resampling passes of
 * src/image/resample.c, bit-identical to the plain-C ones (ref/ref_resample.c,
 * the spec); installed in the avx2 (and avx512) kernel table.
 *
 * Exactness: every product and sum is the same 32-bit integer arithmetic as
 * Pillow's ImagingResample{Horizontal,Vertical}_8bpc (vpmulld / vpaddd wrap
 * exactly as the C uint32 sums do; integer addition is associative, so the
 * order of the taps does not matter), and the final clip8(sum >> 22) is
 * vpsrad + signed/unsigned saturating packs, which clamp to 0..255 exactly
 * as Pillow's lookup table does. No floating point happens here (the
 * coefficients are computed once, in baseline code, in resample.c), so
 * -mfma cannot change a result.
 *
 * Horizontal pass: interleaved RGB makes one 8-lane vector hold two source
 * pixels (R G B R G B + 2 spare lanes); the coefficient table repeats each
 * tap's weight over its pixel's three lanes (k0 k0 k0 k1 k1 k1 0 0), built
 * once per call, and four source rows share each weight load (the pass is
 * bound by instruction count, not by the multiplier). Vertical pass: each output byte is a weighted sum of the
 * same byte in n input rows, so it runs over 32 bytes of the row at a time.
 */
#include "kernels/kernels_internal.h"

#include <immintrin.h>
#include <string.h>

#define PREC VT_RESAMPLE_PRECISION_BITS

static inline int table_stride(const vt_resample_coeffs *c)
{
    return (c->ksize + 1) / 2 * 8;
}

size_t vt_resample_h_table_ints_avx2(const vt_resample_coeffs *c)
{
    return (size_t)c->out_size * (size_t)table_stride(c);
}

void vt_resample_h_prepare_avx2(const vt_resample_coeffs *c, int32_t *table)
{
    int stride = table_stride(c);
    for (int xx = 0; xx < c->out_size; xx++) {
        const int32_t *k = c->k + (size_t)xx * c->ksize;
        int n = c->bounds[2 * xx + 1];
        int32_t *t = table + (size_t)xx * stride;
        memset(t, 0, (size_t)stride * sizeof(int32_t));
        for (int x = 0; x < n; x++) {
            int32_t *lane = t + (x / 2) * 8 + (x % 2) * 3;
            lane[0] = lane[1] = lane[2] = k[x];
        }
    }
}

static inline uint8_t clip8_scalar(uint32_t acc)
{
    int32_t v = (int32_t)acc >> PREC;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Lanes 0..2 of an accumulator (even taps' R G B) plus lanes 3..5 (odd
 * taps'), rounded and clipped: the three output bytes in the low 24 bits. */
static inline uint32_t h_finish(__m256i a, __m256i half, __m256i odd)
{
    a = _mm256_add_epi32(a, _mm256_permutevar8x32_epi32(a, odd));
    a = _mm256_srai_epi32(_mm256_add_epi32(a, half), PREC);
    __m128i r = _mm256_castsi256_si128(a);
    r = _mm_packus_epi16(_mm_packs_epi32(r, r), r);
    return (uint32_t)_mm_cvtsi128_si32(r);
}

static inline void h_store(uint8_t *out, int xx, int out_w, uint32_t v)
{
    if (xx + 1 < out_w) {
        memcpy(out + 3 * xx, &v, 4); /* byte 4 is rewritten by the next pixel */
    } else {
        out[3 * xx + 0] = (uint8_t)v;
        out[3 * xx + 1] = (uint8_t)(v >> 8);
        out[3 * xx + 2] = (uint8_t)(v >> 16);
    }
}

static inline __m256i px2(const uint8_t *p)
{
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

static inline __m256i ktab(const int32_t *kt)
{
    return _mm256_loadu_si256((const __m256i *)kt);
}

/* One source row. */
static void h_row1(const uint8_t *in, uint8_t *out, const vt_resample_coeffs *c,
                   const int32_t *table, int stride)
{
    const __m256i half = _mm256_set1_epi32(1 << (PREC - 1));
    const __m256i odd = _mm256_setr_epi32(3, 4, 5, 3, 4, 5, 3, 4);
    for (int xx = 0; xx < c->out_size; xx++) {
        const uint8_t *p = in + (size_t)c->bounds[2 * xx] * 3;
        const int32_t *kt = table + (size_t)xx * stride;
        int np = (c->bounds[2 * xx + 1] + 1) / 2;
        __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
        int j = 0;
        for (; j + 1 < np; j += 2) {
            a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(px2(p + 6 * j), ktab(kt + 8 * j)));
            a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(px2(p + 6 * j + 6), ktab(kt + 8 * j + 8)));
        }
        if (j < np)
            a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(px2(p + 6 * j), ktab(kt + 8 * j)));
        h_store(out, xx, c->out_size, h_finish(_mm256_add_epi32(a0, a1), half, odd));
    }
}

/* Four source rows at once: each weight vector is loaded once for four
 * rows, and the per-pixel bookkeeping is shared. */
static void h_row4(const uint8_t *in, size_t in_stride, uint8_t *out, size_t out_stride,
                   const vt_resample_coeffs *c, const int32_t *table, int stride)
{
    const __m256i half = _mm256_set1_epi32(1 << (PREC - 1));
    const __m256i odd = _mm256_setr_epi32(3, 4, 5, 3, 4, 5, 3, 4);
    for (int xx = 0; xx < c->out_size; xx++) {
        const uint8_t *p = in + (size_t)c->bounds[2 * xx] * 3;
        const int32_t *kt = table + (size_t)xx * stride;
        int np = (c->bounds[2 * xx + 1] + 1) / 2;
        const uint8_t *p1 = p + in_stride, *p2 = p + 2 * in_stride, *p3 = p + 3 * in_stride;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        int j = 0;
        for (; j + 1 < np; j += 2) {
            __m256i k = ktab(kt + 8 * j), l = ktab(kt + 8 * j + 8);
            int o = 6 * j;
            a0 = _mm256_add_epi32(a0, _mm256_add_epi32(_mm256_mullo_epi32(px2(p + o), k),
                                                       _mm256_mullo_epi32(px2(p + o + 6), l)));
            a1 = _mm256_add_epi32(a1, _mm256_add_epi32(_mm256_mullo_epi32(px2(p1 + o), k),
                                                       _mm256_mullo_epi32(px2(p1 + o + 6), l)));
            a2 = _mm256_add_epi32(a2, _mm256_add_epi32(_mm256_mullo_epi32(px2(p2 + o), k),
                                                       _mm256_mullo_epi32(px2(p2 + o + 6), l)));
            a3 = _mm256_add_epi32(a3, _mm256_add_epi32(_mm256_mullo_epi32(px2(p3 + o), k),
                                                       _mm256_mullo_epi32(px2(p3 + o + 6), l)));
        }
        if (j < np) {
            __m256i k = ktab(kt + 8 * j);
            int o = 6 * j;
            a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(px2(p + o), k));
            a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(px2(p1 + o), k));
            a2 = _mm256_add_epi32(a2, _mm256_mullo_epi32(px2(p2 + o), k));
            a3 = _mm256_add_epi32(a3, _mm256_mullo_epi32(px2(p3 + o), k));
        }
        h_store(out, xx, c->out_size, h_finish(a0, half, odd));
        h_store(out + out_stride, xx, c->out_size, h_finish(a1, half, odd));
        h_store(out + 2 * out_stride, xx, c->out_size, h_finish(a2, half, odd));
        h_store(out + 3 * out_stride, xx, c->out_size, h_finish(a3, half, odd));
    }
}

void vt_resample_h_avx2(const uint8_t *src, size_t src_stride, int rows, int in_w,
                        const uint8_t *src_end, uint8_t *pad, uint8_t *dst, size_t dst_stride,
                        const vt_resample_coeffs *c, const int32_t *table)
{
    const size_t row_bytes = (size_t)in_w * 3;
    const int stride = table_stride(c);
    /* The last pair load of a pixel run reads up to 5 bytes past the row.
     * Rows with 8 readable bytes after them run in place; the few at the
     * very end of the buffer (a suffix) go through pad. */
    int safe = rows;
    while (safe > 0 &&
           (size_t)(src_end - (src + (size_t)(safe - 1) * src_stride)) < row_bytes + 8)
        safe--;
    int y = 0;
    for (; y + 4 <= safe; y += 4)
        h_row4(src + (size_t)y * src_stride, src_stride, dst + (size_t)y * dst_stride,
               dst_stride, c, table, stride);
    for (; y < rows; y++) {
        const uint8_t *in = src + (size_t)y * src_stride;
        if (y >= safe) {
            memcpy(pad, in, row_bytes);
            in = pad;
        }
        h_row1(in, dst + (size_t)y * dst_stride, c, table, stride);
    }
}

static inline __m256i mac8(__m256i acc, const uint8_t *p, __m256i k)
{
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    return _mm256_add_epi32(acc, _mm256_mullo_epi32(v, k));
}

void vt_resample_v_avx2(const uint8_t *src, size_t src_stride, size_t row_bytes, uint8_t *dst,
                        size_t dst_stride, const vt_resample_coeffs *c, uint32_t *acc)
{
    (void)acc; /* sums stay in registers */
    const __m256i half = _mm256_set1_epi32(1 << (PREC - 1));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);

    for (int yy = 0; yy < c->out_size; yy++) {
        const int32_t *k = c->k + (size_t)yy * c->ksize;
        const uint8_t *base = src + (size_t)c->bounds[2 * yy] * src_stride;
        int n = c->bounds[2 * yy + 1];
        uint8_t *out = dst + (size_t)yy * dst_stride;
        size_t x = 0;
        for (; x + 32 <= row_bytes; x += 32) {
            __m256i a0 = half, a1 = half, a2 = half, a3 = half;
            const uint8_t *p = base + x;
            for (int t = 0; t < n; t++, p += src_stride) {
                __m256i kt = _mm256_set1_epi32(k[t]);
                a0 = mac8(a0, p, kt);
                a1 = mac8(a1, p + 8, kt);
                a2 = mac8(a2, p + 16, kt);
                a3 = mac8(a3, p + 24, kt);
            }
            a0 = _mm256_srai_epi32(a0, PREC);
            a1 = _mm256_srai_epi32(a1, PREC);
            a2 = _mm256_srai_epi32(a2, PREC);
            a3 = _mm256_srai_epi32(a3, PREC);
            /* Saturating packs work per 128-bit half; the permute restores
             * byte order (dwords come out as 0-3, 8-11, 16-19, 24-27, 4-7, ...). */
            __m256i b = _mm256_packus_epi16(_mm256_packs_epi32(a0, a1), _mm256_packs_epi32(a2, a3));
            b = _mm256_permutevar8x32_epi32(b, order);
            _mm256_storeu_si256((__m256i *)(out + x), b);
        }
        for (; x + 8 <= row_bytes; x += 8) {
            __m256i a0 = half;
            const uint8_t *p = base + x;
            for (int t = 0; t < n; t++, p += src_stride)
                a0 = mac8(a0, p, _mm256_set1_epi32(k[t]));
            a0 = _mm256_srai_epi32(a0, PREC);
            __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1));
            _mm_storel_epi64((__m128i *)(out + x), _mm_packus_epi16(h, h));
        }
        for (; x < row_bytes; x++) {
            uint32_t s = 1u << (PREC - 1);
            const uint8_t *p = base + x;
            for (int t = 0; t < n; t++, p += src_stride)
                s += *p * (uint32_t)k[t];
            out[x] = clip8_scalar(s);
        }
    }
}
