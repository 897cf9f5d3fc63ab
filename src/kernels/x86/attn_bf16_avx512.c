/*
 * attn_bf16_avx512.c - fused attention with bfloat16 products (AVX512-BF16).
 *
 * attn_avx512.c's algorithm (blocks, groups, online softmax in float32; see
 * that file) with both products on vdpbf16ps, which multiplies pairs of
 * bf16 and adds them into float32 lanes (acc[i] += a[2i] b[2i] +
 * a[2i+1] b[2i+1]), twice the FMA work per instruction:
 *
 *   S^T[j][i] += (k[j][d], k[j][d+1]) . (q[i][d], q[i][d+1])   pairs along d
 *   O^T[d][i] += (v[j][d], v[j+1][d]) . (p[j][i], p[j+1][i])   pairs along j
 *
 * so the query block is stored as [d/2][query][2] bf16 (qb), K rows are
 * plain bf16 rows (their natural order already pairs d, d+1), V as
 * [j/2][d][2] (vb) and the probabilities of a key block as [j/2][query][2]
 * (pb). q (times scale), k, v and p are rounded to bf16 (round to nearest
 * even, vcvtne2ps2bf16); scores, softmax, running max/sum and the output
 * accumulate in float32, and l sums the unrounded p. Odd dh or key counts
 * are padded with zero pairs.
 *
 * NOT the default: bf16 keeps 8 significant bits, so the result differs from
 * the float32 reference by ~0.3% relative (tests/kernels/test_attn.c prints
 * the cosine and relative error). A table entry (attn_bf16) only where the
 * CPU has AVX512-BF16.
 *
 * Built with the avx512 flags plus -mavx512bf16 (CMakeLists.txt: the
 * *bf16_avx512.c rule; clang ignores #pragma GCC target); dispatch.c installs
 * it only when vt_cpu_get()->avx512bf16.
 */

#include "kernels/kernels_internal.h"
#include "kernels/x86/attn_avx512.h"

#include <stdint.h>

#define KR 8
#define DR 8
#define PAIRS_ROW (2 * BQ) /* uint16 per pair row of qb / pb */

/* Scratch: per query block qb (dh + 1) / 2 * BQ and ot dh * BQ floats;
 * shared st BK * BQ, pb BK / 2 * BQ, kb BK * round32(dh) / 2 and
 * vb BK / 2 * round16(dh) - within VT_ATTN_SCRATCH_FLOATS(dh). */

/* Lane i of the result holds (lo[i], hi[i]) as one bf16 pair. */
static inline __m512i pair_bf16(__m512 lo, __m512 hi)
{
    static const uint16_t idx[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                     8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i x = (__m512i)_mm512_cvtne2ps_pbh(hi, lo); /* lo in 0..15, hi in 16..31 */
    return _mm512_permutexvar_epi16(_mm512_loadu_si512(idx), x);
}

/* ------------------------------------------------------------ microkernels -- */

ALWAYS_INLINE void s_tile(const int nr, const int nv, int64_t np, const uint16_t *qb,
                          const uint16_t *kb, int64_t ldkb, float *st, __m512 *bmax, int mask,
                          const __m512i *qidx, int64_t jlim)
{
    __m512 acc[KR][QV];
#pragma GCC unroll 8
    for (int r = 0; r < KR; r++)
#pragma GCC unroll 3
        for (int c = 0; c < QV; c++)
            if (r < nr && c < nv)
                acc[r][c] = _mm512_setzero_ps();
    const uint32_t *k32 = (const uint32_t *)kb;
    const int64_t ld32 = ldkb / 2;
    for (int64_t p = 0; p < np; p++) {
        const __m512bh q0 = (__m512bh)_mm512_load_si512(qb);
        const __m512bh q1 = nv > 1 ? (__m512bh)_mm512_load_si512(qb + 32) : q0;
        const __m512bh q2 = nv > 2 ? (__m512bh)_mm512_load_si512(qb + 64) : q0;
        qb += PAIRS_ROW;
#pragma GCC unroll 8
        for (int r = 0; r < KR; r++) {
            if (r < nr) {
                const __m512bh kv = (__m512bh)_mm512_set1_epi32((int)k32[r * ld32 + p]);
                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], kv, q0);
                if (nv > 1)
                    acc[r][1] = _mm512_dpbf16_ps(acc[r][1], kv, q1);
                if (nv > 2)
                    acc[r][2] = _mm512_dpbf16_ps(acc[r][2], kv, q2);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < KR; r++) {
#pragma GCC unroll 3
        for (int c = 0; c < QV; c++) {
            if (r < nr && c < nv) {
                __m512 s = acc[r][c];
                if (mask) {
                    const __mmask16 hide = _mm512_cmplt_epi32_mask(
                        qidx[c], _mm512_set1_epi32((int)(jlim + r)));
                    s = _mm512_mask_mov_ps(s, hide, _mm512_set1_ps(-INFINITY));
                }
                _mm512_store_ps(st + r * BQ + c * 16, s);
                bmax[c] = _mm512_max_ps(bmax[c], s);
            }
        }
    }
}

ALWAYS_INLINE void o_tile(const int nr, const int nv, int64_t np, const uint16_t *pb,
                          const uint32_t *vb, int64_t ldvb, float *ot, const __m512 *alpha,
                          int first)
{
    __m512 acc[DR][QV];
#pragma GCC unroll 8
    for (int r = 0; r < DR; r++)
#pragma GCC unroll 3
        for (int c = 0; c < QV; c++)
            if (r < nr && c < nv)
                acc[r][c] = first ? _mm512_setzero_ps()
                                  : _mm512_mul_ps(_mm512_load_ps(ot + r * BQ + c * 16), alpha[c]);
    for (int64_t p = 0; p < np; p++) {
        const __m512bh p0 = (__m512bh)_mm512_load_si512(pb);
        const __m512bh p1 = nv > 1 ? (__m512bh)_mm512_load_si512(pb + 32) : p0;
        const __m512bh p2 = nv > 2 ? (__m512bh)_mm512_load_si512(pb + 64) : p0;
        pb += PAIRS_ROW;
#pragma GCC unroll 8
        for (int r = 0; r < DR; r++) {
            if (r < nr) {
                const __m512bh vv = (__m512bh)_mm512_set1_epi32((int)vb[r]);
                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], vv, p0);
                if (nv > 1)
                    acc[r][1] = _mm512_dpbf16_ps(acc[r][1], vv, p1);
                if (nv > 2)
                    acc[r][2] = _mm512_dpbf16_ps(acc[r][2], vv, p2);
            }
        }
        vb += ldvb;
    }
#pragma GCC unroll 8
    for (int r = 0; r < DR; r++)
#pragma GCC unroll 3
        for (int c = 0; c < QV; c++)
            if (r < nr && c < nv)
                _mm512_store_ps(ot + r * BQ + c * 16, acc[r][c]);
}

typedef void (*s_tile_fn)(int64_t np, const uint16_t *qb, const uint16_t *kb, int64_t ldkb,
                          float *st, __m512 *bmax, int mask, const __m512i *qidx, int64_t jlim);
typedef void (*o_tile_fn)(int64_t np, const uint16_t *pb, const uint32_t *vb, int64_t ldvb,
                          float *ot, const __m512 *alpha, int first);

#define DEF_TILES(nr, nv)                                                                     \
    TILE_FN s_##nr##_##nv(int64_t np, const uint16_t *qb, const uint16_t *kb,                 \
                          int64_t ldkb, float *st, __m512 *bmax, int mask,                    \
                          const __m512i *qidx, int64_t jlim)                                  \
    {                                                                                         \
        s_tile(nr, nv, np, qb, kb, ldkb, st, bmax, mask, qidx, jlim);                         \
    }                                                                                         \
    TILE_FN o_##nr##_##nv(int64_t np, const uint16_t *pb, const uint32_t *vb,                 \
                          int64_t ldvb, float *ot, const __m512 *alpha, int first)            \
    {                                                                                         \
        o_tile(nr, nv, np, pb, vb, ldvb, ot, alpha, first);                                   \
    }
#define DEF_TILES3(nr) DEF_TILES(nr, 1) DEF_TILES(nr, 2) DEF_TILES(nr, 3)
DEF_TILES3(1) DEF_TILES3(2) DEF_TILES3(3) DEF_TILES3(4)
DEF_TILES3(5) DEF_TILES3(6) DEF_TILES3(7) DEF_TILES3(8)

static const s_tile_fn s_tiles[KR + 1][QV] = {
    {NULL, NULL, NULL},    {s_1_1, s_1_2, s_1_3}, {s_2_1, s_2_2, s_2_3},
    {s_3_1, s_3_2, s_3_3}, {s_4_1, s_4_2, s_4_3}, {s_5_1, s_5_2, s_5_3},
    {s_6_1, s_6_2, s_6_3}, {s_7_1, s_7_2, s_7_3}, {s_8_1, s_8_2, s_8_3},
};
static const o_tile_fn o_tiles[DR + 1][QV] = {
    {NULL, NULL, NULL},    {o_1_1, o_1_2, o_1_3}, {o_2_1, o_2_2, o_2_3},
    {o_3_1, o_3_2, o_3_3}, {o_4_1, o_4_2, o_4_3}, {o_5_1, o_5_2, o_5_3},
    {o_6_1, o_6_2, o_6_3}, {o_7_1, o_7_2, o_7_3}, {o_8_1, o_8_2, o_8_3},
};

/* -------------------------------------------------------------- layouts -- */

/* Rows [0..n) x nv vectors of a [row][BQ] float block -> [row/2][BQ][2]
 * bf16 pairs (an odd last row pairs with zeros). */
static void pairs_of_rows(int64_t n, int nv, const float *x, uint16_t *xb)
{
    for (int64_t p = 0; p < (n + 1) / 2; p++)
        for (int c = 0; c < nv; c++) {
            const __m512 lo = _mm512_load_ps(x + 2 * p * BQ + 16 * c);
            const __m512 hi = 2 * p + 1 < n ? _mm512_load_ps(x + (2 * p + 1) * BQ + 16 * c)
                                            : _mm512_setzero_ps();
            _mm512_store_si512(xb + p * PAIRS_ROW + 32 * c, pair_bf16(lo, hi));
        }
}

/* K rows to bf16 rows (stride ldkb uint16, zero past dh). */
static void k_rows_bf16(int64_t n, int64_t dh, const float *k, int64_t ldk, uint16_t *kb,
                        int64_t ldkb)
{
    for (int64_t j = 0; j < n; j++)
        for (int64_t d = 0; d < dh; d += 16) {
            const __m512 x = _mm512_maskz_loadu_ps(tail_mask(dh - d), k + j * ldk + d);
            _mm256_store_si256((__m256i *)(kb + j * ldkb + d), (__m256i)_mm512_cvtneps_pbh(x));
        }
}

/* V rows j, j + 1 to (v[j][d], v[j+1][d]) pairs (stride ldvb pairs). */
static void v_pairs_bf16(int64_t n, int64_t dh, const float *v, int64_t ldv, uint32_t *vb,
                         int64_t ldvb)
{
    for (int64_t p = 0; p < (n + 1) / 2; p++)
        for (int64_t d = 0; d < dh; d += 16) {
            const __mmask16 m = tail_mask(dh - d);
            const __m512 lo = _mm512_maskz_loadu_ps(m, v + 2 * p * ldv + d);
            const __m512 hi = 2 * p + 1 < n ? _mm512_maskz_loadu_ps(m, v + (2 * p + 1) * ldv + d)
                                            : _mm512_setzero_ps();
            _mm512_store_si512(vb + p * ldvb + d, pair_bf16(lo, hi));
        }
}

/* ------------------------------------------------- hooks of attn_driver.h -- */

typedef struct {
    float    *st, *qo;
    uint16_t *pb, *kb;
    uint32_t *vb;
    int64_t   np, ldkb, ldvb, qbf;
} layout;
#define ATTN_LAYOUT layout

static inline void attn_layout(layout *L, int64_t dh, float *scratch)
{
    L->np = (dh + 1) / 2;                     /* d pairs                  */
    L->ldkb = (dh + 31) / 32 * 32;            /* uint16 per bf16 K row    */
    L->ldvb = (dh + 15) / 16 * 16;            /* pairs per V pair row     */
    L->qbf = (L->np * BQ + 15) / 16 * 16;     /* floats of one qb         */
    L->st = scratch;
    L->pb = (uint16_t *)(L->st + BK * BQ);
    L->kb = L->pb + BK * BQ;                  /* BK/2 pair rows of 2*BQ   */
    L->vb = (uint32_t *)(L->kb + BK * L->ldkb);
    L->qo = (float *)(L->vb + BK / 2 * L->ldvb);
}

static inline void attn_block_begin(const layout *L, qblock *b, int slot, int64_t dh)
{
    float *qbuf = L->qo + slot * (L->qbf + dh * BQ);
    qblock_begin(b, qbuf, qbuf + L->qbf);
}

static inline void attn_block_load_q(const layout *L, qblock *b, int64_t dh, const float *q,
                                     int64_t ldq, float scale)
{
    (void)L;
    /* float32 q^T into ot (free until the first key block), then pairs */
    pack_qt(b->nq, b->nv, dh, q, ldq, scale, b->ot);
    pairs_of_rows(dh, b->nv, b->ot, (uint16_t *)b->qt);
}

static inline void attn_kv_load(const layout *L, int64_t n, int64_t dh, const float *k,
                                int64_t ldk, const float *v, int64_t ldv)
{
    k_rows_bf16(n, dh, k, ldk, L->kb, L->ldkb);
    v_pairs_bf16(n, dh, v, ldv, L->vb, L->ldvb);
}

static void attn_block_step(const layout *L, qblock *b, int64_t j0, int64_t nk, int64_t dh,
                            int causal, int64_t off)
{
    const int mask = causal && j0 + nk - 1 > b->i0 + off;
    __m512 bmax[QV], alpha[QV];
    for (int c = 0; c < QV; c++)
        bmax[c] = _mm512_set1_ps(-INFINITY);
    for (int64_t jj = 0; jj < nk; jj += KR) {
        const int nr = nk - jj < KR ? (int)(nk - jj) : KR;
        s_tiles[nr][b->nv - 1](L->np, (const uint16_t *)b->qt, L->kb + jj * L->ldkb, L->ldkb,
                               L->st + jj * BQ, bmax, mask, b->qidx, j0 + jj - off);
    }
    softmax_block(b->nv, nk, L->st, bmax, b->m, b->l, alpha);
    pairs_of_rows(nk, b->nv, L->st, L->pb);
    for (int64_t d0 = 0; d0 < dh; d0 += DR) {
        const int nr = dh - d0 < DR ? (int)(dh - d0) : DR;
        o_tiles[nr][b->nv - 1]((nk + 1) / 2, L->pb, L->vb + d0, L->ldvb, b->ot + d0 * BQ, alpha,
                               j0 == 0);
    }
}

#define attn_block_store store_block
#include "kernels/x86/attn_driver.h"

void vt_attn_bf16_avx512(int64_t tq, int64_t tk, int64_t dh, const float *q, int64_t ldq,
                         const float *k, int64_t ldk, const float *v, int64_t ldv, float scale,
                         int causal, float *out, int64_t ldo, float *scratch)
{
    attn_drive(tq, tk, dh, q, ldq, k, ldk, v, ldv, scale, causal, out, ldo, scratch);
}
