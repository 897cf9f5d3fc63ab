/*
 * gemm_avx2.c - float32 GEMM for AVX2 + FMA.
 *
 * Same Goto/BLIS structure as gemm_avx512.c (see there for the reasoning):
 * B packed into scratch as 16-column panels (k-major, zero-padded; 8 wide for
 * a last panel of <= 8), A broadcast from its rows (copied to a padded
 * stride first when lda would alias in L1), and a 6 x 16
 * microkernel: 12 ymm accumulators + 2 B vectors + 1 broadcast = 15 of the
 * 16 ymm registers, 2 loads + 6 broadcasts per 12 FMAs.
 * Columns past N are computed on the zero padding and never stored
 * (vmaskmovps stores); rows past M use a kernel instantiated for fewer rows.
 * Linear weights can be packed once at load into the same panels
 * (vt_gemm_pack_nk_avx2, vt_gemm_f32_packed_avx2). The blocking loops of both
 * GEMMs are one driver, gemm_driver.h; this file has the AVX2 parts.
 */
#include "kernels/kernels_internal.h"

#include <immintrin.h>

#define MR 6
#define NR 16
#define KC 256
#define NC 480

/* Row stride of the copied A rows: 32-byte aligned and padded (see avx512). */
#define APACK_LD(kc) (((kc) + 7) / 8 * 8 + 16)

_Static_assert(KC * NC + MR * APACK_LD(KC) <= VT_GEMM_SCRATCH_FLOATS,
               "packed B and the A rows must fit the scratch");

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Lane i is all-ones when i < n: the mask vmaskmovps wants. */
static inline __m256i tail_mask8(int64_t n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int c = n >= 8 ? 8 : (int)n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), idx);
}

/* ------------------------------------------------------------- packing -- */

/* B is [K,N]: panel[k][0..w) = B[pc+k][j0..j0+w), zero past nr. */
static void pack_kn(int64_t kc, int64_t nc, const float *B, int64_t ldb, float *dst)
{
    for (int64_t j = 0; j < nc; j += NR) {
        const int64_t nr = nc - j < NR ? nc - j : NR;
        const float *src = B + j;
        float *p = dst + j * kc;
        if (nr == NR) {
            for (int64_t k = 0; k < kc; k++, src += ldb, p += 16) {
                _mm256_store_ps(p, _mm256_loadu_ps(src));
                _mm256_store_ps(p + 8, _mm256_loadu_ps(src + 8));
            }
        } else if (nr > 8) {
            const __m256i m1 = tail_mask8(nr - 8);
            for (int64_t k = 0; k < kc; k++, src += ldb, p += 16) {
                _mm256_store_ps(p, _mm256_loadu_ps(src));
                _mm256_store_ps(p + 8, _mm256_maskload_ps(src + 8, m1));
            }
        } else {
            const __m256i m0 = tail_mask8(nr);
            for (int64_t k = 0; k < kc; k++, src += ldb, p += 8)
                _mm256_store_ps(p, _mm256_maskload_ps(src, m0));
        }
    }
}

ALWAYS_INLINE void transpose8(__m256 r[8])
{
    __m256 t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
        t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
    }
    for (int i = 0; i < 8; i++)
        r[i] = t[i];
}

/* 8 rows of B (n) x kc into a panel of width w. */
static void pack_nk8(int64_t kc, int64_t nr, const float *B, int64_t ldb, float *p, int w)
{
    __m256 r[8];
    int64_t k = 0;
    if (nr == 8) {
        for (; k + 8 <= kc; k += 8) {
            /* Short strided streams: prefetch two lines ahead (see avx512). */
            for (int i = 0; i < 8; i++)
                _mm_prefetch((const char *)(B + i * ldb + k + 32), _MM_HINT_T0);
            for (int i = 0; i < 8; i++)
                r[i] = _mm256_loadu_ps(B + i * ldb + k);
            transpose8(r);
            for (int i = 0; i < 8; i++)
                _mm256_store_ps(p + (k + i) * w, r[i]);
        }
    }
    /* Tails (k past a multiple of 8, or fewer than 8 rows): scalar. */
    for (; k < kc; k++)
        for (int64_t i = 0; i < 8; i++)
            p[k * w + i] = i < nr ? B[i * ldb + k] : 0.0f;
}

/* B is [N,K]: panel[k][n] = B[j0+n][pc+k], zero past nr. */
static void pack_nk(int64_t kc, int64_t nc, const float *B, int64_t ldb, float *dst)
{
    for (int64_t j = 0; j < nc; j += NR) {
        const int64_t nr = nc - j < NR ? nc - j : NR;
        float *p = dst + j * kc;
        const float *src = B + j * ldb;
        if (nr > 8) {
            pack_nk8(kc, 8, src, ldb, p, 16);
            pack_nk8(kc, nr - 8, src + 8 * ldb, ldb, p + 8, 16);
        } else {
            pack_nk8(kc, nr, src, ldb, p, 8);
        }
    }
}

/* Copy A rows [0, mr) x [0, kc) to ap with row stride ldp (see gemm_avx512.c:
 * un-aliases a power-of-two lda in L1). */
static void pack_a(int mr, int64_t kc, const float *A, int64_t lda, float *ap, int64_t ldp)
{
    const __m256i mt = tail_mask8(kc & 7);
    for (int i = 0; i < mr; i++) {
        const float *src = A + i * lda;
        float *dst = ap + i * ldp;
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8)
            _mm256_store_ps(dst + k, _mm256_loadu_ps(src + k));
        if (k < kc)
            _mm256_store_ps(dst + k, _mm256_maskload_ps(src + k, mt));
    }
}

/* --------------------------------------------------------- microkernel -- */

typedef struct {
    const float *bias; /* bias + j, or NULL (only in the first K block)     */
    int load_c;        /* add the old C (accumulate, or not the first block) */
    int full;          /* all 16 (or 8) columns are stored                   */
    __m256i m0, m1;    /* store masks for the 1st / 2nd vector of the tile  */
} tile_io;

ALWAYS_INLINE __m256 ld(const float *p, int full, __m256i m)
{
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}

ALWAYS_INLINE void st(float *p, int full, __m256i m, __m256 v)
{
    if (full)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, m, v);
}

ALWAYS_INLINE void ukernel(const int mr, const int nv, int64_t kc, const float *a, int64_t lda,
                           const float *bp, float *c, int64_t ldc, const tile_io *io)
{
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        if (r < mr) {
            acc[r][0] = _mm256_setzero_ps();
            acc[r][1] = _mm256_setzero_ps();
        }
    }
    const size_t ldab = (size_t)lda * sizeof(float);
    const char *p0 = (const char *)a;
    const char *p1 = mr > 3 ? p0 + 3 * ldab : p0;
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(bp);
        const __m256 b1 = nv > 1 ? _mm256_load_ps(bp + 8) : b0;
        bp += 8 * nv;
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            if (r < mr) {
                const char *base = r < 3 ? p0 : p1;
                const __m256 av = _mm256_broadcast_ss((const float *)(base + (r % 3) * ldab));
                acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
                if (nv > 1)
                    acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
            }
        }
        p0 += sizeof(float);
        p1 += sizeof(float);
    }
    const int full = io->full;
    __m256 bias0 = _mm256_setzero_ps(), bias1 = _mm256_setzero_ps();
    if (io->bias) {
        bias0 = ld(io->bias, full, io->m0);
        if (nv > 1)
            bias1 = ld(io->bias + 8, full, io->m1);
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        if (r < mr) {
            float *cr = c + r * ldc;
            __m256 v0 = acc[r][0], v1 = acc[r][1];
            if (io->bias) {
                v0 = _mm256_add_ps(v0, bias0);
                v1 = _mm256_add_ps(v1, bias1);
            }
            if (io->load_c)
                v0 = _mm256_add_ps(ld(cr, full, io->m0), v0);
            st(cr, full, io->m0, v0);
            if (nv > 1) {
                if (io->load_c)
                    v1 = _mm256_add_ps(ld(cr + 8, full, io->m1), v1);
                st(cr + 8, full, io->m1, v1);
            }
        }
    }
}

typedef void (*ukernel_fn)(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                           int64_t ldc, const tile_io *io);

#define DEF_UK(mr, nv)                                                                      \
    static void uk_##mr##_##nv(int64_t kc, const float *a, int64_t lda, const float *bp,    \
                               float *c, int64_t ldc, const tile_io *io)                    \
    {                                                                                       \
        ukernel(mr, nv, kc, a, lda, bp, c, ldc, io);                                        \
    }
#define DEF_UK2(mr) DEF_UK(mr, 1) DEF_UK(mr, 2)
DEF_UK2(1) DEF_UK2(2) DEF_UK2(3) DEF_UK2(4) DEF_UK2(5) DEF_UK2(6)

static const ukernel_fn ukernels[MR + 1][2] = {
    {NULL, NULL},     {uk_1_1, uk_1_2}, {uk_2_1, uk_2_2}, {uk_3_1, uk_3_2},
    {uk_4_1, uk_4_2}, {uk_5_1, uk_5_2}, {uk_6_1, uk_6_2},
};

/* ------------------------------------------------------------- driver -- */

/* Epilogue arguments of a tile storing nr columns of a panel. */
static inline tile_io gemm_tile_io(const float *bias, int load_c, int64_t nr, int wide)
{
    return (tile_io){
        .bias = bias,
        .load_c = load_c,
        .full = nr == (wide ? 16 : 8),
        .m0 = tail_mask8(nr),
        .m1 = tail_mask8(nr > 8 ? nr - 8 : 0),
    };
}

#define GEMM_L1_ROWS_PER_SET 2
#define GEMM_ISA avx2
#include "kernels/x86/gemm_driver.h"
