/*
 * lowp_avx512.h - what the bf16 and int8 Linear GEMMs (lowp_avx512bf16.c,
 * lowp_avx512vnni.c) share: the tile walk over the portable panels of
 * kernels.h and the float32 epilogue of a 12 x 32 tile.
 *
 * Both are Goto-style loops over 32-column panels (VT_LP_NR) with a 12-row
 * microkernel whose inner product is one instruction (VDPBF16PS on k pairs,
 * VPDPBUSD on k quads); they differ in the instruction, in the K blocking
 * (bf16 cuts K into balanced blocks of <= 256 pairs; int8 runs all of K in
 * one block, its panels being half the bytes) and in the int8 dequantising
 * multiply before the epilogue. Included by those files only, so the walk
 * and the epilogue are compiled with each file's flags and inlined into its
 * microkernels (needs AVX-512F).
 */
#ifndef VT_LOWP_AVX512_H
#define VT_LOWP_AVX512_H

#include "kernels/kernels_internal.h"
#include "kernels/x86/vmath_avx512.h"

#include <immintrin.h>

#define MR 12
#define NR VT_LP_NR

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* A tile's epilogue arguments. */
typedef struct {
    const float   *bias;    /* bias + column, or NULL (first K block only)    */
    int            load_c;  /* add the old C (accumulate, or a later K block)  */
    __mmask16      m0, m1;  /* columns stored of the two vectors               */
    /* int8 only: the dequantisation of the integer sums */
    const float   *w_scale, *a_scale;
    const int32_t *wsum;
} lp_io;

/* Masked bias of the tile's two vectors (zero without a bias). */
ALWAYS_INLINE void lp_bias(const lp_io *io, __m512 *b0, __m512 *b1)
{
    *b0 = _mm512_setzero_ps();
    *b1 = _mm512_setzero_ps();
    if (io->bias) {
        *b0 = _mm512_maskz_loadu_ps(io->m0, io->bias);
        *b1 = _mm512_maskz_loadu_ps(io->m1, io->bias + 16);
    }
}

/* Row cr of the tile = [cr +] v + bias, in that order (the reference's). */
ALWAYS_INLINE void lp_store_row(const lp_io *io, float *cr, __m512 v0, __m512 v1, __m512 b0,
                                __m512 b1)
{
    if (io->bias) {
        v0 = _mm512_add_ps(v0, b0);
        v1 = _mm512_add_ps(v1, b1);
    }
    if (io->load_c) {
        v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(io->m0, cr), v0);
        v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(io->m1, cr + 16), v1);
    }
    _mm512_mask_storeu_ps(cr, io->m0, v0);
    _mm512_mask_storeu_ps(cr + 16, io->m1, v1);
}

/* One tile of the walk: rows [ic, ic + mr), chunk columns [j, j + 32) of
 * which nr are stored, k steps [pc, pc + kb) (pairs or quads). */
typedef struct {
    int64_t ic, j, nr, pc, kb;
    int     mr, first;
} lp_tile;

/*
 * Columns in blocks of <= nc_max (panels of NR), K steps in balanced blocks
 * of <= kb_max (multiples of kq), rows in tiles of MR: for each tile, in
 * that order (column block, K block, row tile, panel), tile(ctx, &t). With
 * tile a constant function (always the case) the call inlines.
 */
ALWAYS_INLINE void lp_walk(int64_t M, int64_t n, int64_t nc_max, int64_t ksteps, int64_t kb_max,
                           void (*tile)(const void *ctx, const lp_tile *t), const void *ctx)
{
    for (int64_t jc = 0; jc < n; jc += nc_max) {
        const int64_t nc = n - jc < nc_max ? n - jc : nc_max;
        for (int64_t pc = 0; pc < ksteps; pc += kb_max) {
            const int64_t kb = ksteps - pc < kb_max ? ksteps - pc : kb_max;
            for (int64_t ic = 0; ic < M; ic += MR) {
                const int mr = M - ic < MR ? (int)(M - ic) : MR;
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const lp_tile t = {.ic = ic, .j = jc + jr, .nr = nc - jr, .pc = pc,
                                       .kb = kb, .mr = mr, .first = pc == 0};
                    tile(ctx, &t);
                }
            }
        }
    }
}

#endif /* VT_LOWP_AVX512_H */
