/*
 * attn_avx512.c - fused (flash-style) attention for one (item, head), AVX-512.
 *
 * FlashAttention's blocking (Dao et al. 2022, "FlashAttention: fast and
 * memory-efficient exact attention with IO-awareness", Alg. 1) on a CPU
 * core: queries in blocks of BQ = 48, keys in blocks of BK = 64, and an
 * online softmax that keeps per query a running max m and sum l and
 * rescales the partial output by exp(m_old - m_new) when the max grows.
 * The tq x tk score matrix never exists. Per query block the scratch holds
 *
 *   qt [dh][BQ]  the block's queries transposed, times scale
 *   ot [dh][BQ]  its unnormalised output, transposed
 *
 * and, shared by a group of up to VT_ATTN_GROUP(dh) query blocks (8 at
 * dh <= 96) that walk the keys together,
 *
 *   kp, vp [BK][dh]  the key block's K and V rows at a dense stride
 *   st [BK][BQ]      one query block's scores for the key block, then exp
 *
 * (VT_ATTN_SCRATCH_FLOATS(dh) in kernels.h; ~300 KiB at dh = 64, in L2).
 *
 * Why transposed: with queries along the 16 lanes, both products are the
 * GEMM microkernel shape with no transposed copy of K:
 *   S^T[j][i]  += k[j][d] (broadcast from K's row) * qt[d][i..i+16]
 *   O^T[d][i]  += v[j][d] (broadcast from V's row) * P^T[j][i..i+16]
 * and every softmax step (max over keys, exp, sum over keys, rescale) is a
 * lane-wise vector operation - no horizontal reductions. Only the query
 * block is transposed (16 x 16 in registers, once, amortised over all tk
 * keys), and the output once at the end. Both microkernels hold 8 x 3 zmm
 * accumulators (8 keys or 8 head dims x 48 queries): 24 FMAs per 3 loads +
 * 8 broadcasts, like the GEMM's 12 x 2. Blocks of fewer than 48 queries use
 * 1 or 2 vectors (197 tokens = 4 x 48 + 5 computes 208 lanes, not 240).
 *
 * Why copy K and V rows: at a fused-qkv row stride (ViT-L: 3 * 1024 floats)
 * every row maps to the same few L1 and L2 sets, so read in place they came
 * from L3 on each use; the copies (plus a software prefetch of the next key
 * block) are read once per group. Grouping query blocks makes that one pass
 * over K and V for 197 or 257 tokens and two for 577. The loops over
 * groups, blocks and keys are attn_driver.h, shared with the other fused
 * kernels; this file supplies the microkernels and hooks.
 *
 * Measured (bench/bench_attn.c, 1 thread, Zen 5 VM, noisy): ViT-B/16 layer
 * attention 0.75 ms (~160 GFLOP/s) vs 1.0 ms for GEMM + softmax + GEMM;
 * ViT-L/14-336 ~10 ms (~135 GFLOP/s) vs 11-14 ms. The microkernels run near
 * the FMA peak; the rest is exp (~9%), the copies and transposes.
 *
 * Causal masking: a key block no query of the block sees is never visited
 * (kend below); a block only partly visible sets the hidden scores to -inf
 * before the max, and exp(-inf) = 0 exactly, as the reference's weight 0.
 * A query that sees no key keeps m = -inf; its exp arguments use 0 instead
 * so nothing becomes NaN, l stays 0 and its output row is 0.
 *
 * Rounding vs the reference (ref/ref_attn.c): the scale is applied to q
 * (exact for power-of-two scales such as 1/8 at dh = 64), dot products are
 * FMA chains, exp is vt_exp_ps (<= 1 ulp from expf), and the running
 * max/sum rescaling adds one rounding per key block where the max grows.
 */
#include "kernels/kernels_internal.h"
#include "kernels/x86/attn_avx512.h"

#define KR 8          /* keys per S microkernel call      */
#define DR 8          /* head dims per O microkernel call */

_Static_assert(BQ == 48 && BK % KR == 0, "the microkernels assume 3 query vectors");
/* Scratch use: st BK * BQ, kp and vp BK * round16(dh), qt and ot dh * BQ per
 * query block of a group - within VT_ATTN_SCRATCH_FLOATS(dh) =
 * (2 G BQ + 2 BK)(dh + 16) + 2 BK BQ for every dh. */

/* --------------------------------------------------------- microkernels -- */

/*
 * S^T[0..nr)[0..16*nv) = K rows [0..nr) . qt, with the query-block max folded
 * into bmax. Rows are addressed from three bases three rows apart (as the
 * GEMM's A rows) to stay within the general registers. mask: hide the keys
 * that query lane i does not see, i.e. key row r hidden for i < jlim + r,
 * with qidx the lanes' query indices.
 */
ALWAYS_INLINE void s_tile(const int nr, const int nv, int64_t dh, const float *qt,
                          const float *k, int64_t ldk, float *st, __m512 *bmax, int mask,
                          const __m512i *qidx, int64_t jlim)
{
    __m512 acc[KR][QV];
#pragma GCC unroll 8
    for (int r = 0; r < KR; r++)
#pragma GCC unroll 3
        for (int c = 0; c < QV; c++)
            if (r < nr && c < nv)
                acc[r][c] = _mm512_setzero_ps();
    const size_t ldkb = (size_t)ldk * sizeof(float);
    const char *p0 = (const char *)k;
    const char *p1 = nr > 3 ? p0 + 3 * ldkb : p0;
    const char *p2 = nr > 6 ? p0 + 6 * ldkb : p0;
    for (int64_t d = 0; d < dh; d++) {
        const __m512 q0 = _mm512_load_ps(qt);
        const __m512 q1 = nv > 1 ? _mm512_load_ps(qt + 16) : q0;
        const __m512 q2 = nv > 2 ? _mm512_load_ps(qt + 32) : q0;
        qt += BQ;
#pragma GCC unroll 8
        for (int r = 0; r < KR; r++) {
            if (r < nr) {
                const char *base = r < 3 ? p0 : r < 6 ? p1 : p2;
                const __m512 kv = _mm512_set1_ps(*(const float *)(base + (r % 3) * ldkb));
                acc[r][0] = _mm512_fmadd_ps(kv, q0, acc[r][0]);
                if (nv > 1)
                    acc[r][1] = _mm512_fmadd_ps(kv, q1, acc[r][1]);
                if (nv > 2)
                    acc[r][2] = _mm512_fmadd_ps(kv, q2, acc[r][2]);
            }
        }
        p0 += sizeof(float);
        p1 += sizeof(float);
        p2 += sizeof(float);
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

/*
 * O^T[0..nr)[0..16*nv) = alpha * O^T + sum_{j < n} v[j][0..nr) * P^T[j]:
 * nr head dims of the output, over the n keys of the block. first: the
 * query block's first key block, O^T = 0 (not read).
 */
ALWAYS_INLINE void o_tile(const int nr, const int nv, int64_t n, const float *pt,
                          const float *v, int64_t ldv, float *ot, const __m512 *alpha,
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
    for (int64_t j = 0; j < n; j++) {
        const __m512 p0 = _mm512_load_ps(pt);
        const __m512 p1 = nv > 1 ? _mm512_load_ps(pt + 16) : p0;
        const __m512 p2 = nv > 2 ? _mm512_load_ps(pt + 32) : p0;
        pt += BQ;
#pragma GCC unroll 8
        for (int r = 0; r < DR; r++) {
            if (r < nr) {
                const __m512 vv = _mm512_set1_ps(v[r]);
                acc[r][0] = _mm512_fmadd_ps(vv, p0, acc[r][0]);
                if (nv > 1)
                    acc[r][1] = _mm512_fmadd_ps(vv, p1, acc[r][1]);
                if (nv > 2)
                    acc[r][2] = _mm512_fmadd_ps(vv, p2, acc[r][2]);
            }
        }
        v += ldv;
    }
#pragma GCC unroll 8
    for (int r = 0; r < DR; r++)
#pragma GCC unroll 3
        for (int c = 0; c < QV; c++)
            if (r < nr && c < nv)
                _mm512_store_ps(ot + r * BQ + c * 16, acc[r][c]);
}

typedef void (*s_tile_fn)(int64_t dh, const float *qt, const float *k, int64_t ldk, float *st,
                          __m512 *bmax, int mask, const __m512i *qidx, int64_t jlim);
typedef void (*o_tile_fn)(int64_t n, const float *pt, const float *v, int64_t ldv, float *ot,
                          const __m512 *alpha, int first);

#define DEF_TILES(nr, nv)                                                                     \
    TILE_FN s_##nr##_##nv(int64_t dh, const float *qt, const float *k, int64_t ldk,           \
                          float *st, __m512 *bmax, int mask, const __m512i *qidx,             \
                          int64_t jlim)                                                       \
    {                                                                                         \
        s_tile(nr, nv, dh, qt, k, ldk, st, bmax, mask, qidx, jlim);                           \
    }                                                                                         \
    TILE_FN o_##nr##_##nv(int64_t n, const float *pt, const float *v, int64_t ldv,            \
                          float *ot, const __m512 *alpha, int first)                          \
    {                                                                                         \
        o_tile(nr, nv, n, pt, v, ldv, ot, alpha, first);                                      \
    }
#define DEF_TILES3(nr) DEF_TILES(nr, 1) DEF_TILES(nr, 2) DEF_TILES(nr, 3)
DEF_TILES3(1) DEF_TILES3(2) DEF_TILES3(3) DEF_TILES3(4)
DEF_TILES3(5) DEF_TILES3(6) DEF_TILES3(7) DEF_TILES3(8)

/* [nr][nv - 1]; KR == DR == 8 */
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

/* ------------------------------------------------- hooks of attn_driver.h -- */

typedef struct {
    float  *st, *kp, *vp, *qo;
    int64_t ldp;
} layout;
#define ATTN_LAYOUT layout

static inline void attn_layout(layout *L, int64_t dh, float *scratch)
{
    L->ldp = (dh + 15) / 16 * 16;
    L->st = scratch;
    L->kp = L->st + BK * BQ;
    L->vp = L->kp + BK * L->ldp;
    L->qo = L->vp + BK * L->ldp;
}

static inline void attn_block_begin(const layout *L, qblock *b, int slot, int64_t dh)
{
    float *qt = L->qo + 2 * slot * dh * BQ;
    qblock_begin(b, qt, qt + dh * BQ);
}

static inline void attn_block_load_q(const layout *L, qblock *b, int64_t dh, const float *q,
                                     int64_t ldq, float scale)
{
    (void)L;
    pack_qt(b->nq, b->nv, dh, q, ldq, scale, b->qt);
}

static inline void attn_kv_load(const layout *L, int64_t n, int64_t dh, const float *k,
                                int64_t ldk, const float *v, int64_t ldv)
{
    copy_rows(n, dh, k, ldk, L->kp, L->ldp);
    copy_rows(n, dh, v, ldv, L->vp, L->ldp);
}

/* The n keys [j0, j0 + n) (dense copies kp, vp) against one query block. */
static void attn_block_step(const layout *L, qblock *b, int64_t j0, int64_t n, int64_t dh,
                            int causal, int64_t off)
{
    const int64_t ldp = L->ldp;
    float *st = L->st;
    /* Partly hidden: the block's first query misses its last key. */
    const int mask = causal && j0 + n - 1 > b->i0 + off;
    __m512 bmax[QV], alpha[QV];
    for (int c = 0; c < QV; c++)
        bmax[c] = _mm512_set1_ps(-INFINITY);
    for (int64_t jj = 0; jj < n; jj += KR) {
        const int nr = n - jj < KR ? (int)(n - jj) : KR;
        s_tiles[nr][b->nv - 1](dh, b->qt, L->kp + jj * ldp, ldp, st + jj * BQ, bmax, mask,
                               b->qidx, j0 + jj - off);
    }
    softmax_block(b->nv, n, st, bmax, b->m, b->l, alpha);
    for (int64_t d0 = 0; d0 < dh; d0 += DR) {
        const int nr = dh - d0 < DR ? (int)(dh - d0) : DR;
        o_tiles[nr][b->nv - 1](n, st, L->vp + d0, ldp, b->ot + d0 * BQ, alpha, j0 == 0);
    }
}

#define attn_block_store store_block
#include "kernels/x86/attn_driver.h"

void vt_attn_f32_avx512(int64_t tq, int64_t tk, int64_t dh, const float *q, int64_t ldq,
                        const float *k, int64_t ldk, const float *v, int64_t ldv, float scale,
                        int causal, float *out, int64_t ldo, float *scratch)
{
    attn_drive(tq, tk, dh, q, ldq, k, ldk, v, ldv, scale, causal, out, ldo, scratch);
}
