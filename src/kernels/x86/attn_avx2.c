/*
 * attn_avx2.c - fused attention for one (item, head), AVX2 + FMA.
 *
 * The algorithm and layout of attn_avx512.c (read that file first): blocks
 * of BQ = 48 queries held transposed (qt, ot: queries along the lanes),
 * groups of query blocks walking dense copies of K/V blocks of BK = 64 keys,
 * online softmax with a running max and sum per query lane. With 16 ymm
 * registers the microkernels are 4 keys (or 4 head dims) x 24 queries
 * (3 ymm): 12 accumulators, 12 FMAs per 3 loads + 4 broadcasts; a 48-query
 * block is run as two 24-query halves. Transposes are scalar loops (the
 * query block once, the output once). The block loops are attn_driver.h.
 *
 * exp: the Cephes polynomial of vmath_avx512.h's vt_exp_ps (the same
 * coefficients and ln2 split), with 2^n built in the exponent field, so
 * results below 2^-126 (x < -87.34) are flushed to 0 instead of rounded to
 * a subnormal: an absolute difference < 1.2e-38 from expf on weights that
 * are added to sums of at least 1. x = -inf (masked keys) gives exactly 0.
 *
 * Kept so that AVX2-only machines do not fall back to the scalar reference
 * (15x slower than the old GEMM path there). Rounding vs the reference as
 * for the AVX-512 version.
 */
#include "kernels/kernels_internal.h"

#include <immintrin.h>
#include <math.h>

#define BQ VT_ATTN_BQ /* queries per block: 2 halves of 3 ymm */
#define BK VT_ATTN_BK /* keys per block                       */
#define HV 3          /* ymm per half block (24 queries)      */
#define HQ (8 * HV)
#define KR 4          /* keys per S microkernel call          */
#define DR 4          /* head dims per O microkernel call     */

_Static_assert(BQ == 2 * HQ && BK % KR == 0, "the microkernels assume 2 x 24 queries");

#define ALWAYS_INLINE static inline __attribute__((always_inline))
/* The microkernel instances start on a cache line: where the linker puts
 * them otherwise depends on the size of everything before them, and the
 * hot loops' alignment moved ViT-L/14-336 attention by 2-5% between builds
 * whose kernel code was the same (bench/bench_attn.c). */
#define TILE_FN static __attribute__((aligned(64))) void

static inline __m256 exp8(__m256 x)
{
    /* max(c, x): maxps returns its second operand when one is NaN. */
    const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_set1_ps(-87.33654f), x);
    x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    /* n in [-126, 127] after the clamps: 2^n is a normal float. */
    const __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* --------------------------------------------------------- microkernels -- */

/* S^T rows [0..nr) for lanes [0..8*nv) of a half block (qt, st point at the
 * half); see s_tile in attn_avx512.c. kp rows are dense (stride ldp). */
ALWAYS_INLINE void s_tile(const int nr, const int nv, int64_t dh, const float *qt,
                          const float *kp, int64_t ldp, float *st, __m256 *bmax, int mask,
                          const __m256i *qidx, int64_t jlim)
{
    __m256 acc[KR][HV];
#pragma GCC unroll 4
    for (int r = 0; r < KR; r++)
#pragma GCC unroll 3
        for (int c = 0; c < HV; c++)
            if (r < nr && c < nv)
                acc[r][c] = _mm256_setzero_ps();
    for (int64_t d = 0; d < dh; d++) {
        const __m256 q0 = _mm256_load_ps(qt);
        const __m256 q1 = nv > 1 ? _mm256_load_ps(qt + 8) : q0;
        const __m256 q2 = nv > 2 ? _mm256_load_ps(qt + 16) : q0;
        qt += BQ;
#pragma GCC unroll 4
        for (int r = 0; r < KR; r++) {
            if (r < nr) {
                const __m256 kv = _mm256_broadcast_ss(kp + r * ldp + d);
                acc[r][0] = _mm256_fmadd_ps(kv, q0, acc[r][0]);
                if (nv > 1)
                    acc[r][1] = _mm256_fmadd_ps(kv, q1, acc[r][1]);
                if (nv > 2)
                    acc[r][2] = _mm256_fmadd_ps(kv, q2, acc[r][2]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < KR; r++) {
#pragma GCC unroll 3
        for (int c = 0; c < HV; c++) {
            if (r < nr && c < nv) {
                __m256 s = acc[r][c];
                if (mask) {
                    const __m256 hide = _mm256_castsi256_ps(
                        _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(jlim + r)), qidx[c]));
                    s = _mm256_blendv_ps(s, _mm256_set1_ps(-INFINITY), hide);
                }
                _mm256_store_ps(st + r * BQ + c * 8, s);
                bmax[c] = _mm256_max_ps(bmax[c], s);
            }
        }
    }
}

/* O^T rows [0..nr) of a half block = alpha * O^T + sum_j vp[j][0..nr) * P^T[j]
 * (first: O^T = 0, not read). */
ALWAYS_INLINE void o_tile(const int nr, const int nv, int64_t n, const float *pt,
                          const float *vp, int64_t ldp, float *ot, const __m256 *alpha,
                          int first)
{
    __m256 acc[DR][HV];
#pragma GCC unroll 4
    for (int r = 0; r < DR; r++)
#pragma GCC unroll 3
        for (int c = 0; c < HV; c++)
            if (r < nr && c < nv)
                acc[r][c] = first ? _mm256_setzero_ps()
                                  : _mm256_mul_ps(_mm256_load_ps(ot + r * BQ + c * 8), alpha[c]);
    for (int64_t j = 0; j < n; j++) {
        const __m256 p0 = _mm256_load_ps(pt);
        const __m256 p1 = nv > 1 ? _mm256_load_ps(pt + 8) : p0;
        const __m256 p2 = nv > 2 ? _mm256_load_ps(pt + 16) : p0;
        pt += BQ;
#pragma GCC unroll 4
        for (int r = 0; r < DR; r++) {
            if (r < nr) {
                const __m256 vv = _mm256_broadcast_ss(vp + r);
                acc[r][0] = _mm256_fmadd_ps(vv, p0, acc[r][0]);
                if (nv > 1)
                    acc[r][1] = _mm256_fmadd_ps(vv, p1, acc[r][1]);
                if (nv > 2)
                    acc[r][2] = _mm256_fmadd_ps(vv, p2, acc[r][2]);
            }
        }
        vp += ldp;
    }
#pragma GCC unroll 4
    for (int r = 0; r < DR; r++)
#pragma GCC unroll 3
        for (int c = 0; c < HV; c++)
            if (r < nr && c < nv)
                _mm256_store_ps(ot + r * BQ + c * 8, acc[r][c]);
}

typedef void (*s_tile_fn)(int64_t dh, const float *qt, const float *kp, int64_t ldp, float *st,
                          __m256 *bmax, int mask, const __m256i *qidx, int64_t jlim);
typedef void (*o_tile_fn)(int64_t n, const float *pt, const float *vp, int64_t ldp, float *ot,
                          const __m256 *alpha, int first);

#define DEF_TILES(nr, nv)                                                                     \
    TILE_FN s_##nr##_##nv(int64_t dh, const float *qt, const float *kp, int64_t ldp,          \
                          float *st, __m256 *bmax, int mask, const __m256i *qidx,             \
                          int64_t jlim)                                                       \
    {                                                                                         \
        s_tile(nr, nv, dh, qt, kp, ldp, st, bmax, mask, qidx, jlim);                          \
    }                                                                                         \
    TILE_FN o_##nr##_##nv(int64_t n, const float *pt, const float *vp, int64_t ldp,           \
                          float *ot, const __m256 *alpha, int first)                          \
    {                                                                                         \
        o_tile(nr, nv, n, pt, vp, ldp, ot, alpha, first);                                     \
    }
#define DEF_TILES3(nr) DEF_TILES(nr, 1) DEF_TILES(nr, 2) DEF_TILES(nr, 3)
DEF_TILES3(1) DEF_TILES3(2) DEF_TILES3(3) DEF_TILES3(4)

static const s_tile_fn s_tiles[KR + 1][HV] = {
    {NULL, NULL, NULL},    {s_1_1, s_1_2, s_1_3}, {s_2_1, s_2_2, s_2_3},
    {s_3_1, s_3_2, s_3_3}, {s_4_1, s_4_2, s_4_3},
};
static const o_tile_fn o_tiles[DR + 1][HV] = {
    {NULL, NULL, NULL},    {o_1_1, o_1_2, o_1_3}, {o_2_1, o_2_2, o_2_3},
    {o_3_1, o_3_2, o_3_3}, {o_4_1, o_4_2, o_4_3},
};

/* ---------------------------------------------------------------- driver -- */

#define QV (2 * HV) /* ymm per block */

typedef struct {
    int64_t i0, nq, kend;
    int     nv; /* ymm of the block in use: 1..6 */
    float  *qt, *ot;
    __m256  m[QV], l[QV];
    __m256i qidx[QV];
} qblock;

static void copy_rows(int64_t n, int64_t dh, const float *x, int64_t ldx, float *xp, int64_t ldp)
{
    for (int64_t j = 0; j < n; j++) {
        int64_t d = 0;
        for (; d + 8 <= dh; d += 8)
            _mm256_store_ps(xp + j * ldp + d, _mm256_loadu_ps(x + j * ldx + d));
        for (; d < dh; d++)
            xp[j * ldp + d] = x[j * ldx + d];
    }
}

static void softmax_block(int nv, int64_t n, float *st, const __m256 *bmax, __m256 *m,
                          __m256 *l, __m256 *alpha)
{
    for (int c = 0; c < nv; c++) {
        const __m256 mnew = _mm256_max_ps(m[c], bmax[c]);
        const __m256 none = _mm256_cmp_ps(mnew, _mm256_set1_ps(-INFINITY), _CMP_EQ_OQ);
        const __m256 muse = _mm256_andnot_ps(none, mnew);
        alpha[c] = exp8(_mm256_sub_ps(m[c], muse));
        __m256 sum = _mm256_setzero_ps();
        float *s = st + c * 8;
        for (int64_t j = 0; j < n; j++, s += BQ) {
            const __m256 p = exp8(_mm256_sub_ps(_mm256_load_ps(s), muse));
            _mm256_store_ps(s, p);
            sum = _mm256_add_ps(sum, p);
        }
        l[c] = _mm256_fmadd_ps(l[c], alpha[c], sum);
        m[c] = mnew;
    }
}

static void store_block(const qblock *b, int64_t dh, float *out, int64_t ldo)
{
    float inv[BQ];
    for (int c = 0; c < b->nv; c++) {
        const __m256 seen = _mm256_cmp_ps(b->l[c], _mm256_setzero_ps(), _CMP_NEQ_UQ);
        const __m256 x = _mm256_and_ps(seen, _mm256_div_ps(_mm256_set1_ps(1.0f), b->l[c]));
        _mm256_storeu_ps(inv + 8 * c, b->kend > 0 ? x : _mm256_setzero_ps());
    }
    for (int64_t i = 0; i < b->nq; i++) {
        float *o = out + (b->i0 + i) * ldo;
        for (int64_t d = 0; d < dh; d++)
            o[d] = b->kend > 0 ? b->ot[d * BQ + i] * inv[i] : 0.0f;
    }
}

/* ------------------------------------------------- hooks of attn_driver.h -- */

typedef struct {
    float  *st, *kp, *vp, *qo;
    int64_t ldp;
} layout;
#define ATTN_LAYOUT layout
#define ATTN_BLOCK  qblock

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
    b->nv = (int)((b->nq + 7) / 8);
    b->qt = L->qo + 2 * slot * dh * BQ;
    b->ot = b->qt + dh * BQ;
    for (int c = 0; c < QV; c++) {
        b->m[c] = _mm256_set1_ps(-INFINITY);
        b->l[c] = _mm256_setzero_ps();
        b->qidx[c] = _mm256_add_epi32(_mm256_set1_epi32((int)(b->i0 + 8 * c)),
                                      _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
}

/* qt[d][i] = scale * q[i][d], lanes past nq zero (scalar: once per block,
 * amortised over all tk keys). */
static inline void attn_block_load_q(const layout *L, qblock *b, int64_t dh, const float *q,
                                     int64_t ldq, float scale)
{
    (void)L;
    for (int64_t i = 0; i < b->nv * 8; i++) {
        const float *qi = q + i * ldq;
        for (int64_t d = 0; d < dh; d++)
            b->qt[d * BQ + i] = i < b->nq ? qi[d] * scale : 0.0f;
    }
}

static inline void attn_kv_load(const layout *L, int64_t n, int64_t dh, const float *k,
                                int64_t ldk, const float *v, int64_t ldv)
{
    copy_rows(n, dh, k, ldk, L->kp, L->ldp);
    copy_rows(n, dh, v, ldv, L->vp, L->ldp);
}

static void attn_block_step(const layout *L, qblock *b, int64_t j0, int64_t n, int64_t dh,
                            int causal, int64_t off)
{
    const float *kp = L->kp, *vp = L->vp;
    const int64_t ldp = L->ldp;
    float *st = L->st;
    const int mask = causal && j0 + n - 1 > b->i0 + off;
    __m256 bmax[QV], alpha[QV];
    for (int c = 0; c < QV; c++)
        bmax[c] = _mm256_set1_ps(-INFINITY);
    for (int h = 0; h * HV < b->nv; h++) {
        const int nv = b->nv - h * HV < HV ? b->nv - h * HV : HV;
        for (int64_t jj = 0; jj < n; jj += KR) {
            const int nr = n - jj < KR ? (int)(n - jj) : KR;
            s_tiles[nr][nv - 1](dh, b->qt + h * HQ, kp + jj * ldp, ldp, st + jj * BQ + h * HQ,
                                bmax + h * HV, mask, b->qidx + h * HV, j0 + jj - off);
        }
    }
    softmax_block(b->nv, n, st, bmax, b->m, b->l, alpha);
    for (int h = 0; h * HV < b->nv; h++) {
        const int nv = b->nv - h * HV < HV ? b->nv - h * HV : HV;
        for (int64_t d0 = 0; d0 < dh; d0 += DR) {
            const int nr = dh - d0 < DR ? (int)(dh - d0) : DR;
            o_tiles[nr][nv - 1](n, st + h * HQ, vp + d0, ldp, b->ot + d0 * BQ + h * HQ,
                                alpha + h * HV, j0 == 0);
        }
    }
}

#define attn_block_store store_block
#include "kernels/x86/attn_driver.h"

void vt_attn_f32_avx2(int64_t tq, int64_t tk, int64_t dh, const float *q, int64_t ldq,
                      const float *k, int64_t ldk, const float *v, int64_t ldv, float scale,
                      int causal, float *out, int64_t ldo, float *scratch)
{
    attn_drive(tq, tk, dh, q, ldq, k, ldk, v, ldv, scale, causal, out, ldo, scratch);
}
