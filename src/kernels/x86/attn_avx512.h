/*
 * attn_avx512.h - the parts of the AVX-512 attention kernels (attn_avx512.c,
 * attn_bf16_avx512.c) outside their microkernels and the shared driver
 * (attn_driver.h): query-block state, transposes, K/V row copies, the
 * online-softmax step and the final store. Included only by those files
 * (needs AVX-512F/BW/DQ).
 */
#ifndef VT_ATTN_AVX512_H
#define VT_ATTN_AVX512_H

#include "kernels/kernels.h"
#include "kernels/x86/vmath_avx512.h"

#include <immintrin.h>
#include <math.h>

#define BQ VT_ATTN_BQ /* queries per block: 3 vectors */
#define BK VT_ATTN_BK /* keys per block               */
#define QV (BQ / 16)

#define ALWAYS_INLINE static inline __attribute__((always_inline))
/* The microkernel instances start on a cache line: where the linker puts
 * them otherwise depends on the size of everything before them, and the
 * hot loops' alignment moved ViT-L/14-336 attention by 2-5% between builds
 * whose kernel code was the same (bench/bench_attn.c). */
#define TILE_FN static __attribute__((aligned(64))) void

static inline __mmask16 tail_mask(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

static inline __m512 unpacklo_pd(__m512 a, __m512 b)
{
    return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}

static inline __m512 unpackhi_pd(__m512 a, __m512 b)
{
    return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}

/* In-register 16 x 16 transpose (r[i][j] -> r[j][i]): pairs of rows
 * interleaved (ps), then pairs of pairs (pd), which leaves 128-bit lane L of
 * t[4k + m] holding column 4L + m of rows 4k..4k+3; two rounds of 128-bit
 * shuffles gather those lanes. 64 shuffles per 256 elements, against one
 * strided scalar load and store per element. */
ALWAYS_INLINE void transpose16(__m512 *r)
{
    __m512 t[16], u[16];
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) {
        u[4 * k + 0] = unpacklo_pd(t[4 * k], t[4 * k + 2]);
        u[4 * k + 1] = unpackhi_pd(t[4 * k], t[4 * k + 2]);
        u[4 * k + 2] = unpacklo_pd(t[4 * k + 1], t[4 * k + 3]);
        u[4 * k + 3] = unpackhi_pd(t[4 * k + 1], t[4 * k + 3]);
    }
    for (int m = 0; m < 4; m++) {
        const __m512 v0 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x44);
        const __m512 v1 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xEE);
        const __m512 v2 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x44);
        const __m512 v3 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xEE);
        r[m] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        r[4 + m] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
        r[8 + m] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        r[12 + m] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
    }
}

/* n rows of K or V copied to the dense stride ldp: at a fused-qkv stride
 * (3 * 1024 floats = 12 KiB for ViT-L) all rows fall into the same few L1
 * and L2 sets, so in place they came from L3 on every o_tile sweep and for
 * every query block (ViT-L/14-336 attention ran at ~120 GFLOP/s). */
static inline void copy_rows(int64_t n, int64_t dh, const float *x, int64_t ldx, float *xp, int64_t ldp)
{
    for (int64_t j = 0; j < n; j++)
        for (int64_t d = 0; d < dh; d += 16)
            _mm512_store_ps(xp + j * ldp + d,
                            _mm512_maskz_loadu_ps(tail_mask(dh - d), x + j * ldx + d));
}

/* qt[d][i] = scale * q[i][d] for the nq queries of the block, lanes up to
 * 16 * nv zero, by 16 x 16 tiles (q is read row by row, once). */
static inline void pack_qt(int64_t nq, int nv, int64_t dh, const float *q, int64_t ldq, float scale,
                    float *qt)
{
    const __m512 sc = _mm512_set1_ps(scale);
    for (int c = 0; c < nv; c++) {
        const int64_t ni = nq - 16 * c < 16 ? nq - 16 * c : 16;
        for (int64_t d0 = 0; d0 < dh; d0 += 16) {
            const int64_t nd = dh - d0 < 16 ? dh - d0 : 16;
            __m512 x[16];
            for (int r = 0; r < 16; r++)
                x[r] = r < ni ? _mm512_mul_ps(
                                    _mm512_maskz_loadu_ps(tail_mask(nd), q + (16 * c + r) * ldq + d0), sc)
                              : _mm512_setzero_ps();
            transpose16(x);
            for (int64_t r = 0; r < nd; r++)
                _mm512_store_ps(qt + (d0 + r) * BQ + 16 * c, x[r]);
        }
    }
}

/* st[0..n)[lanes] = exp(st - m_new) (m_new = -inf counts as 0); l = l * alpha
 * + the column sums; m = m_new. alpha = exp(m_old - m_new) for o_tile. */
static inline void softmax_block(int nv, int64_t n, float *st, const __m512 *bmax, __m512 *m,
                          __m512 *l, __m512 *alpha)
{
    for (int c = 0; c < nv; c++) {
        const __m512 mnew = _mm512_max_ps(m[c], bmax[c]);
        const __mmask16 none = _mm512_cmp_ps_mask(mnew, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
        const __m512 muse = _mm512_mask_mov_ps(mnew, none, _mm512_setzero_ps());
        alpha[c] = vt_exp_ps(_mm512_sub_ps(m[c], muse));
        __m512 sum = _mm512_setzero_ps();
        float *s = st + c * 16;
        for (int64_t j = 0; j < n; j++, s += BQ) {
            const __m512 p = vt_exp_ps(_mm512_sub_ps(_mm512_load_ps(s), muse));
            _mm512_store_ps(s, p);
            sum = _mm512_add_ps(sum, p);
        }
        l[c] = _mm512_fmadd_ps(l[c], alpha[c], sum);
        m[c] = mnew;
    }
}

/* One query block's state across the key loop. */
typedef struct {
    int64_t i0, nq, kend; /* first query, count, keys its last query sees */
    int     nv;           /* query vectors                                 */
    float  *qt, *ot;
    __m512  m[QV], l[QV];
    __m512i qidx[QV];
} qblock;

/* out rows of the block = O / l, transposed back; l = 0 (no key seen) or a
 * block that saw no key at all gives 0. */
static inline void store_block(const qblock *b, int64_t dh, float *out, int64_t ldo)
{
    for (int c = 0; c < b->nv; c++) {
        const __mmask16 seen = _mm512_cmp_ps_mask(b->l[c], _mm512_setzero_ps(), _CMP_NEQ_UQ);
        const __m512 inv = b->kend > 0 ? _mm512_maskz_div_ps(seen, _mm512_set1_ps(1.0f), b->l[c])
                                       : _mm512_setzero_ps();
        const int64_t ni = b->nq - 16 * c < 16 ? b->nq - 16 * c : 16;
        for (int64_t d0 = 0; d0 < dh; d0 += 16) {
            const int64_t nd = dh - d0 < 16 ? dh - d0 : 16;
            __m512 x[16];
            for (int r = 0; r < 16; r++)
                x[r] = r < nd && b->kend > 0
                           ? _mm512_mul_ps(_mm512_load_ps(b->ot + (d0 + r) * BQ + 16 * c), inv)
                           : _mm512_setzero_ps();
            transpose16(x);
            for (int64_t r = 0; r < ni; r++)
                _mm512_mask_storeu_ps(out + (b->i0 + 16 * c + r) * ldo + d0, tail_mask(nd),
                                      x[r]);
        }
    }
}


/* Reset b's online-softmax state (the driver set i0, nq, kend). */
static inline void qblock_begin(qblock *b, float *qt, float *ot)
{
    b->nv = (int)((b->nq + 15) / 16);
    b->qt = qt;
    b->ot = ot;
    for (int c = 0; c < QV; c++) {
        b->m[c] = _mm512_set1_ps(-INFINITY);
        b->l[c] = _mm512_setzero_ps();
        b->qidx[c] = _mm512_add_epi32(
            _mm512_set1_epi32((int)(b->i0 + 16 * c)),
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    }
}

#define ATTN_BLOCK qblock

#endif /* VT_ATTN_AVX512_H */
