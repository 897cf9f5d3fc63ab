/*
 * gemm_driver.h - the one K/N blocking driver of the float32 GEMMs
 * (gemm_avx2.c, gemm_avx512.c), per-call and prepacked.
 *
 * Both GEMMs are the same Goto/BLIS loop nest (gemm_avx512.c explains it):
 * N in balanced blocks of <= NC columns, K in balanced blocks of <= KC,
 * B's (column block, K block) packed into NR-wide k-major panels (a last
 * panel half wide when it has <= NR / 2 columns left), then MR-row tiles of
 * A against each panel, with the bias added in the first K block only and C
 * reloaded after it. The prepacked form reads the same panels from a buffer
 * made at load. Only the microkernels, the packers and the tile masks are
 * ISA-specific, so each ISA file defines, before including this file,
 *
 *   MR, NR, KC, NC, APACK_LD(kc)   tile and block sizes, padded A stride
 *   GEMM_L1_ROWS_PER_SET           how many of the MR A rows may share an
 *                                  L1 set before A is copied (see
 *                                  rows_share_l1_sets)
 *   GEMM_ISA                       the suffix of the public names
 *   tile_io                        the tile's epilogue arguments, built by
 *   gemm_tile_io(bias, load_c, nr, wide)   (nr columns stored of a panel
 *                                  NR or NR/2 wide)
 *   ukernels[mr][wide]             microkernels (kc, a, lda, bp, c, ldc, io)
 *   pack_nk, pack_kn, pack_a       B block ([N,K] or [K,N]) and A row packers
 *
 * and gets vt_gemm_f32_<ISA>, vt_gemm_packed_floats_<ISA>,
 * vt_gemm_pack_nk_<ISA> and vt_gemm_f32_packed_<ISA> (kernels_internal.h).
 * Included (not linked) so the driver is compiled with the file's ISA flags
 * and its calls to the packers inline as they did in the per-ISA copies.
 */
#ifndef VT_GEMM_DRIVER_H
#define VT_GEMM_DRIVER_H

#include "kernels/kernels_internal.h"

#include <assert.h>

#define GEMM_CAT2(a, b) a##b
#define GEMM_CAT(a, b)  GEMM_CAT2(a, b)
#define GEMM_NAME(base) GEMM_CAT(base, GEMM_ISA)

/* Would MR rows at stride lda crowd the L1 (64 sets of 64-byte lines on
 * every core we target)? More than GEMM_L1_ROWS_PER_SET of the MR rows in
 * one set, with the B stream passing through the same sets, evicts A lines
 * before their k's are used (avx512: ops.c's 128-column Linear chunks with
 * K = 1024 ran at 135 GFLOP/s with A in place and 167 with the copy; with
 * K = 768, 3 rows per set, the copy lost ~5%). */
static int rows_share_l1_sets(int64_t lda)
{
    int count[64] = {0}, worst = 0;
    for (int64_t r = 0; r < MR; r++) {
        int set = (int)(((uint64_t)(r * lda) * sizeof(float) / 64) % 64);
        worst = ++count[set] > worst ? count[set] : worst;
    }
    return worst > GEMM_L1_ROWS_PER_SET;
}

/*
 * One packed block of B (kc x nc, panels at bp + jr * kc) against all M rows:
 * C[0..M, 0..nc) (+)= A[0..M, 0..kc) x block. A panel is NR wide unless the
 * packed matrix has <= NR / 2 columns left from it (`packed_left` counts them
 * from the block's first column), in which case it was packed half wide;
 * this is the only thing the per-call and the prepacked paths do differently.
 */
static void run_block(int64_t M, int64_t kc, const float *A, int64_t lda, const float *bp,
                      int64_t nc, int64_t packed_left, const float *bias, float *C, int64_t ldc,
                      int load_c, int pack_a_rows, float *apack, int64_t ldp)
{
    for (int64_t ic = 0; ic < M; ic += MR) {
        const int mr = M - ic < MR ? (int)(M - ic) : MR;
        const float *a = A + ic * lda;
        int64_t lda_k = lda;
        if (pack_a_rows) {
            pack_a(mr, kc, a, lda, apack, ldp);
            a = apack;
            lda_k = ldp;
        }
        float *c = C + ic * ldc;
        for (int64_t jr = 0; jr < nc; jr += NR) {
            const int64_t nr = nc - jr < NR ? nc - jr : NR;
            const int wide = packed_left - jr > NR / 2;
            const tile_io io = gemm_tile_io(bias ? bias + jr : NULL, load_c, nr, wide);
            ukernels[mr][wide](kc, a, lda_k, bp + jr * kc, c + jr, ldc, &io);
        }
    }
}

void GEMM_NAME(vt_gemm_f32_)(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                             const float *B, int64_t ldb, int b_nk, const float *bias, float *C,
                             int64_t ldc, int accumulate, float *scratch)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        /* Nothing to multiply: C = [C +] bias, exactly as the reference. */
        vt_ref_gemm_f32(M, N, 0, A, lda, B, ldb, b_nk, bias, C, ldc, accumulate, scratch);
        return;
    }
    const int64_t nc_max = vt_balanced_block(N, NC, NR);
    const int64_t kc_max = vt_balanced_block(K, KC, 8);
    /* The A copy is cheap (kc/16 vector moves per row) but measurably
     * slower than reading A in place when the stride is harmless. */
    const int pack_a_rows = N > NR && rows_share_l1_sets(lda);
    for (int64_t jc = 0; jc < N; jc += nc_max) {
        const int64_t nc = N - jc < nc_max ? N - jc : nc_max;
        for (int64_t pc = 0; pc < K; pc += kc_max) {
            const int64_t kc = K - pc < kc_max ? K - pc : kc_max;
            if (b_nk)
                pack_nk(kc, nc, B + jc * ldb + pc, ldb, scratch);
            else
                pack_kn(kc, nc, B + pc * ldb + jc, ldb, scratch);
            const int first = pc == 0;
            run_block(M, kc, A + pc, lda, scratch, nc, nc, first && bias ? bias + jc : NULL,
                      C + jc, ldc, accumulate || !first, pack_a_rows, scratch + KC * NC,
                      APACK_LD(kc_max));
        }
    }
}

/*
 * Prepacked layout (see kernels.h for the contract): the blocks gemm_f32
 * would pack into scratch, for all N columns at once. K is cut into the same
 * balanced blocks of <= KC; block pc holds every panel of N, each kc x NR
 * (k-major; the last panel half wide if N has <= NR / 2 columns left), so
 *   block(pc) = packed + pc * packed_cols(N),  panel(j) = block + j * kc.
 * Any run of whole panels inside a K block - the B block of one (jc, pc)
 * step of a chunk - is then one contiguous stretch of memory, as it was in
 * scratch, and offsets stay vector aligned (packed_cols is a multiple of
 * NR / 2).
 */
static int64_t packed_cols(int64_t N)
{
    const int64_t nfull = N / NR * NR, rem = N - nfull;
    return nfull + (rem == 0 ? 0 : rem > NR / 2 ? NR : NR / 2);
}

_Static_assert(VT_GEMM_PANEL_ALIGN % NR == 0, "chunks must start on a panel");

size_t GEMM_NAME(vt_gemm_packed_floats_)(int64_t N, int64_t K)
{
    return N > 0 && K > 0 ? (size_t)packed_cols(N) * (size_t)K : 0;
}

void GEMM_NAME(vt_gemm_pack_nk_)(int64_t N, int64_t K, const float *W, float *packed)
{
    if (N <= 0 || K <= 0)
        return;
    const int64_t kc_max = vt_balanced_block(K, KC, 8), np = packed_cols(N);
    for (int64_t pc = 0; pc < K; pc += kc_max) {
        const int64_t kc = K - pc < kc_max ? K - pc : kc_max;
        pack_nk(kc, N, W + pc, K, packed + pc * np);
    }
}

void GEMM_NAME(vt_gemm_f32_packed_)(int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n,
                                    const float *A, int64_t lda, const float *packed,
                                    const float *bias, float *C, int64_t ldc, int accumulate,
                                    float *scratch)
{
    assert(n0 >= 0 && n0 % NR == 0 && n0 + n <= N); /* invariant: ops.c chunks columns so */
    if (M <= 0 || n <= 0)
        return;
    if (K <= 0) {
        vt_ref_gemm_f32_k0(M, n, bias, C, ldc, accumulate);
        return;
    }
    /* The same blocking as gemm_f32 on this chunk, so the sums are identical. */
    const int64_t nc_max = vt_balanced_block(n, NC, NR);
    const int64_t kc_max = vt_balanced_block(K, KC, 8), np = packed_cols(N);
    const int pack_a_rows = n > NR && rows_share_l1_sets(lda);
    for (int64_t jc = 0; jc < n; jc += nc_max) {
        const int64_t nc = n - jc < nc_max ? n - jc : nc_max;
        for (int64_t pc = 0; pc < K; pc += kc_max) {
            const int64_t kc = K - pc < kc_max ? K - pc : kc_max;
            const int first = pc == 0;
            run_block(M, kc, A + pc, lda, packed + pc * np + (n0 + jc) * kc, nc,
                      N - (n0 + jc), first && bias ? bias + jc : NULL, C + jc, ldc,
                      accumulate || !first, pack_a_rows, scratch, APACK_LD(kc_max));
        }
    }
}

#endif /* VT_GEMM_DRIVER_H */
