/*
 * attn_driver.h - the one block driver of the fused attention kernels
 * (attn_avx2.c, attn_avx512.c, attn_bf16_avx512.c).
 *
 * Every fused attention kernel walks the same loops (FlashAttention's
 * blocking; attn_avx512.c explains the choices): queries in blocks of BQ,
 * grouped so that up to VT_ATTN_GROUP(dh) blocks share one pass over K and
 * V; per group, K/V blocks of BK rows are loaded once into scratch (with a
 * software prefetch of the next block, or of the next group's queries) and
 * run against each query block, which keeps its online-softmax state (the
 * running max m and sum l) across the key loop; then each block is stored.
 * What differs per ISA is only the microkernels and the data layouts around
 * them, so this file is included by each ISA file after it has defined
 *
 *   ATTN_BLOCK        its query-block type, with int64_t fields i0, nq, kend
 *                     (set here before the hooks run) and its vector state
 *   ATTN_LAYOUT       its scratch layout type (pointers into scratch)
 *   attn_layout(L, dh, scratch)                       carve scratch
 *   attn_block_begin(L, b, slot, dh)                  reset b's state (all
 *                     blocks, also those that see no key: they store zeros)
 *   attn_block_load_q(L, b, dh, q, ldq, scale)        pack b's queries
 *                     (only blocks that see a key)
 *   attn_kv_load(L, n, dh, k, ldk, v, ldv)            keys [j0, j0 + n) into
 *                     scratch
 *   attn_block_step(L, b, j0, n, dh, causal, off)     scores, online softmax
 *                     and output update of block b against those n keys
 *   attn_block_store(b, dh, out, ldo)                 normalise and store
 *
 * as static functions. Including the driver into each ISA file (rather than
 * calling hooks through pointers from a shared .c) compiles it with that
 * file's ISA flags and lets the compiler inline the hooks into the loops,
 * so the shared driver costs nothing over the three copies it replaced.
 */
#ifndef VT_ATTN_DRIVER_H
#define VT_ATTN_DRIVER_H

#include "kernels/kernels.h"

#include <xmmintrin.h> /* _mm_prefetch: SSE, part of the x86-64 baseline */

/* n rows of dh floats at stride ldx into L2 (the next K/V block or group's
 * queries: strided rows are out of reach of the hardware prefetcher). */
static inline void attn_prefetch_rows(int64_t n, int64_t dh, const float *x, int64_t ldx)
{
    for (int64_t j = 0; j < n; j++)
        for (int64_t d = 0; d < dh; d += 16)
            _mm_prefetch((const char *)(x + j * ldx + d), _MM_HINT_T1);
}

/* Query blocks per group: at most VT_ATTN_GROUP(dh), balanced (197
 * queries: one group of 5 blocks; 577: 7 + 6, not 8 + 5). */
static inline int attn_group_size(int64_t tq, int64_t dh)
{
    const int64_t nblk = (tq + VT_ATTN_BQ - 1) / VT_ATTN_BQ, gmax = VT_ATTN_GROUP(dh);
    const int64_t ng = (nblk + gmax - 1) / gmax;
    return (int)((nblk + ng - 1) / ng);
}

/* The kernel contract of kernels.h (vt_attn_f32_fn). */
static inline __attribute__((always_inline)) void
attn_drive(int64_t tq, int64_t tk, int64_t dh, const float *q, int64_t ldq, const float *k,
           int64_t ldk, const float *v, int64_t ldv, float scale, int causal, float *out,
           int64_t ldo, float *scratch)
{
    const int G = attn_group_size(tq, dh);
    const int64_t BQ_ = VT_ATTN_BQ, BK_ = VT_ATTN_BK;
    const int64_t off = tk - tq; /* causal: query i sees keys j <= i + off */
    ATTN_LAYOUT L;
    attn_layout(&L, dh, scratch);
    ATTN_BLOCK blk[8];
    for (int64_t g0 = 0; g0 < tq; g0 += G * BQ_) {
        int nb = 0;
        int64_t kend = 0;
        for (int64_t i0 = g0; i0 < tq && nb < G; i0 += BQ_, nb++) {
            ATTN_BLOCK *b = &blk[nb];
            b->i0 = i0;
            b->nq = tq - i0 < BQ_ ? tq - i0 : BQ_;
            b->kend = causal && i0 + b->nq + off < tk ? i0 + b->nq + off : tk;
            attn_block_begin(&L, b, nb, dh);
            if (b->kend <= 0)
                continue;
            kend = b->kend > kend ? b->kend : kend;
            attn_block_load_q(&L, b, dh, q + i0 * ldq, ldq, scale);
        }
        for (int64_t j0 = 0; j0 < kend; j0 += BK_) {
            const int64_t n = kend - j0 < BK_ ? kend - j0 : BK_;
            attn_kv_load(&L, n, dh, k + j0 * ldk, ldk, v + j0 * ldv, ldv);
            /* Fetch the next K/V block (or the next group's q rows) into L2
             * while this one computes: each copy otherwise waits on L3. */
            if (j0 + BK_ < kend) {
                const int64_t n2 = kend - j0 - BK_ < BK_ ? kend - j0 - BK_ : BK_;
                attn_prefetch_rows(n2, dh, k + (j0 + BK_) * ldk, ldk);
                attn_prefetch_rows(n2, dh, v + (j0 + BK_) * ldv, ldv);
            } else if (g0 + G * BQ_ < tq) {
                const int64_t g1 = g0 + G * BQ_;
                attn_prefetch_rows(tq - g1 < G * BQ_ ? tq - g1 : G * BQ_, dh, q + g1 * ldq, ldq);
            }
            for (int i = 0; i < nb; i++) {
                ATTN_BLOCK *b = &blk[i];
                if (b->kend > j0)
                    attn_block_step(&L, b, j0, b->kend - j0 < n ? b->kend - j0 : n, dh, causal,
                                    off);
            }
        }
        for (int i = 0; i < nb; i++)
            attn_block_store(&blk[i], dh, out, ldo);
    }
}

#endif /* VT_ATTN_DRIVER_H */
