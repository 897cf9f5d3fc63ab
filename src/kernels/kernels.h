/*
 * kernels.h - compute kernels and their run-time dispatch.
 *
 * Every op has a plain-C reference in ref/ that is the specification; ISA
 * variants (x86/NAME_avx2.c, x86/NAME_avx512.c) are compiled with their own flags
 * and installed into the table at init when the CPU (and OS) support them,
 * in ISA order, so a newer set overrides only what it implements.
 * vt_kernels_init(1) (or VTOK_FORCE_REF=1) keeps the reference table.
 *
 * Kernels are single-threaded: the caller (src/core/ops.c) splits work into
 * chunks across the context's thread pool. Kernels never allocate.
 */
#ifndef VT_KERNELS_H
#define VT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/*
 * GEMM: C[M,N] (row stride ldc) = A[M,K] (row stride lda) x op(B) (+ bias[N])
 *   b_nk = 1: B is [N,K] row-major, stride ldb (a PyTorch Linear weight; C = A B^T)
 *   b_nk = 0: B is [K,N] row-major, stride ldb (C = A B)
 *   accumulate = 1: C += result (bias, if given, is still added once)
 *   bias may be NULL.
 * scratch: at least VT_GEMM_SCRATCH_FLOATS floats, 64-byte aligned, owned by
 * the calling thread (used to pack B: a 256 x 480 block in the x86 kernels,
 * plus 12 rows of A when lda would alias in L1; the reference uses it as a
 * row of accumulators for b_nk = 0). M, N, K >= 0; any of them may be 0.
 * Sums are float32 with FMA; results differ from the reference only by
 * rounding order.
 */
#define VT_GEMM_SCRATCH_FLOATS (512 * 256 + 64)

typedef void (*vt_gemm_f32_fn)(int64_t M, int64_t N, int64_t K,
                               const float *A, int64_t lda,
                               const float *B, int64_t ldb, int b_nk,
                               const float *bias, float *C, int64_t ldc,
                               int accumulate, float *scratch);

/*
 * Prepacked GEMM for Linear layers (C = A W^T + bias with a fixed weight).
 *
 * gemm_f32 with b_nk = 1 copies W into the ISA's panel layout on every call
 * (for ViT-B, ~18% of a forward pass at one thread). A model packs each
 * weight once at load instead:
 *
 *   size_t n = t->gemm_packed_floats(N, K);    floats, 64-byte aligned buffer
 *   t->gemm_pack_nk(N, K, W, packed);          W is [N,K] row-major, dense
 *   t->gemm_f32_packed(M, N, K, n0, n, A, lda, packed, bias, C, ldc, acc, scratch);
 *
 * gemm_f32_packed computes columns [n0, n0 + n) of the full product:
 *   C[M,n] (row stride ldc) = [C +] A[M,K] x W[n0 .. n0+n, :]^T (+ bias[0..n))
 * i.e. exactly gemm_f32(M, n, K, A, lda, W + n0*K, K, 1, bias, C, ldc, acc,
 * scratch) - bit for bit, since both run the same microkernel over the same
 * K blocks - with A, bias and C relative to the chunk as in gemm_f32 and only
 * `packed` describing the whole [N,K] weight. n0 must be a multiple of
 * VT_GEMM_PANEL_ALIGN (chunks then start on a packed panel); n0 + n <= N.
 * scratch as for gemm_f32 (only used to copy A rows whose stride aliases in L1).
 *
 * The packed layout is private to the table that packed it: call
 * gemm_f32_packed only through the same table as gemm_pack_nk, and fall back
 * to gemm_f32 on W when the active table has changed since (a model packed
 * under avx512 and run after vtok_force_reference_kernels(1)). Tables without
 * a packed form (the reference: its gemm_f32 reads W in place and packs
 * nothing) have all three entries NULL.
 *
 * The layout (x86/gemm_*.c) is the one gemm_f32 packs into scratch, for all
 * N columns at once: K in gemm_f32's balanced blocks, each block holding
 * every NR-column panel (NR = 32 for avx512, 16 for avx2) k-major, so the
 * B block of any (column block, K block) step is contiguous as in scratch.
 * The size is about N * K floats (N rounded up to the panel width), the
 * same as the f32 weight. Models pack at load (src/models/model.c,
 * pack_linears) and vt_op_linear picks the packed path (src/core/ops.c).
 */
#define VT_GEMM_PANEL_ALIGN 32

typedef size_t (*vt_gemm_packed_floats_fn)(int64_t N, int64_t K);
typedef void (*vt_gemm_pack_nk_fn)(int64_t N, int64_t K, const float *W, float *packed);
typedef void (*vt_gemm_f32_packed_fn)(int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n,
                                      const float *A, int64_t lda, const float *packed,
                                      const float *bias, float *C, int64_t ldc, int accumulate,
                                      float *scratch);

/*
 * Low-precision Linear layers (--dtype bf16 | int8).
 *
 * The weight is converted once at load (src/kernels/lowp.c) into a layout
 * that every table reads, so a model converted under one table runs under
 * any other (unlike the f32 packed form above, which is per table):
 *
 *   bf16: panels of VT_LP_NR output columns (N rounded up with zero
 *         columns); inside a panel, k pairs: panel[p][j][2] =
 *         (W[j][2p], W[j][2p+1]), K rounded up to even with zeros.
 *         Element type uint16_t (bfloat16 bits, round-to-nearest-even).
 *   int8: the same with k quads: panel[q][j][4] = W[j][4q .. 4q+3] as int8,
 *         W[j][k] ~= scale[j] * q[j][k], scale[j] = max_k |W[j][k]| / 127
 *         (symmetric, per output channel), plus wsum[j] = 128 * sum_k q[j][k].
 *
 * Activations are converted per call by vt_op_linear, row by row, into a
 * buffer the op owns:
 *   bf16_row: y[0..vt_lp_kpad(K,2)) = bf16(x), zero padded (RNE; input
 *             denormals flushed to zero, as VCVTNEPS2BF16 does).
 *   u8_row:   per row s = max|x| / 127, q = rne(x * (127 / max|x|)) in
 *             [-127, 127], y = q + 128 (so VPDPBUSD's unsigned operand);
 *             padded with 128 to vt_lp_kpad(K,4). Returns s (0 for a zero row).
 *
 * GEMMs compute columns [n0, n0 + n) (n0 a multiple of VT_LP_NR) of
 *   C[M, n] = [C +] A[M, K] W^T (+ bias)    (row stride ldc; accumulate = 1
 *                                            adds the result to C)
 *   bf16: sums of bf16 x bf16 products in float32;
 *   int8: C = (sum_k a8[m][k] q[j][k] - wsum[j]) * scale[j] * a_scale[m]
 *         (+ bias), integer sums exact, then float32 in that order.
 * A rows have stride lda elements (>= vt_lp_kpad). bias is relative to n0.
 */
#define VT_LP_NR 32

static inline int64_t vt_lp_kpad(int64_t K, int64_t q)
{
    return (K + q - 1) / q * q;
}

typedef void (*vt_bf16_row_fn)(int64_t K, const float *x, uint16_t *y);
typedef float (*vt_u8_row_fn)(int64_t K, const float *x, uint8_t *y);
typedef void (*vt_gemm_bf16_fn)(int64_t M, int64_t K, int64_t n0, int64_t n,
                                const uint16_t *A, int64_t lda, const uint16_t *W,
                                const float *bias, float *C, int64_t ldc, int accumulate);
typedef void (*vt_gemm_i8_fn)(int64_t M, int64_t K, int64_t n0, int64_t n, const uint8_t *A,
                              int64_t lda, const float *a_scale, const int8_t *W,
                              const float *w_scale, const int32_t *wsum, const float *bias,
                              float *C, int64_t ldc, int accumulate);

/*
 * 4-bit weights in blocks of 32 (q4; LLM weights, where decode streams every
 * weight once per token: 0.5625 bytes per weight, 7.1x less than f32).
 *
 * Weight W[N, K], per output column j and k-block b of VT_Q4_BLOCK (32):
 *   d = f16(max_k |W[j][k]| / 7) (round to nearest even; 0 for an all-zero,
 *   tiny or non-finite block), q = clamp(rne(W / d), -8, 7) + 8 in 0..15
 *   (q = 8 where d is 0), so W ~= d * (q - 8).
 * Layout: for each panel of VT_LP_NR (32) columns, for each k-block (K
 * rounded up to 32 with zeros; N to 32 with zero columns), VT_Q4_BYTES
 * (576) bytes: 512 bytes of nibbles, then the 32 scales as f16. Nibble byte
 * h*256 + L*64 + i (half h of 16 columns, L = 0..3, i = 0..63) holds
 * column 16h + i/4, k = 8L + i%4 in its low nibble and k = 8L + 4 + i%4 in
 * its high one (k within the block): one 64-byte load is two k quads of 16
 * columns, as VPDPBUSD takes them. A panel is one contiguous sweep.
 *
 * Activations are quantised per call, per row and per k-block (q8_row):
 *   s = max|x| / 127 over the block, a = rne(x * (127 / max|x|)) in
 *   [-127, 127] as int8 (NaN -> 0; s = 0 for a zero or non-finite block),
 *   row bytes: Kp (a), then nb floats s, then nb int32 sums of a
 *   (nb = Kp / 32, Kp = K rounded up to 32, padding a = 0): VT_Q8_ROW_BYTES.
 * GEMM columns [n0, n0 + n) (n0 a multiple of VT_LP_NR):
 *   acc = 0; for each block b in order:
 *       acc = fmaf((float)(sum_k a[k] q[j][k] - 8 * asum[b]), d[j][b] * s[b], acc)
 *   C[m][j] = [C +] acc (+ bias[j - n0]); integer sums exact. A rows have
 *   stride lda bytes.
 */
#define VT_Q4_BLOCK 32
#define VT_Q4_BYTES (VT_LP_NR * VT_Q4_BLOCK / 2 + VT_LP_NR * 2)

static inline int64_t vt_q8_row_bytes(int64_t K)
{
    const int64_t kp = vt_lp_kpad(K, VT_Q4_BLOCK);
    return kp + kp / VT_Q4_BLOCK * 8;
}

typedef void (*vt_q8_row_fn)(int64_t K, const float *x, uint8_t *row);
typedef void (*vt_gemm_q4_fn)(int64_t M, int64_t K, int64_t n0, int64_t n, const uint8_t *A,
                              int64_t lda, const uint8_t *W, const float *bias, float *C,
                              int64_t ldc, int accumulate);

/* Weight converters (lowp.c), through table k's row converters (all tables
 * give the same bytes). Sizes in elements (bf16) / bytes (int8). The packs
 * return 0, or -1 if a row buffer could not be allocated. */
struct vt_kernels;
size_t vt_lp_bf16_size(int64_t N, int64_t K);
int    vt_lp_pack_bf16(const struct vt_kernels *k, int64_t N, int64_t K, const float *W,
                       uint16_t *packed);
size_t vt_lp_i8_size(int64_t N, int64_t K);
/* scale and wsum get vt_lp_kpad(N, VT_LP_NR) entries (zero past N). */
int    vt_lp_pack_i8(const struct vt_kernels *k, int64_t N, int64_t K, const float *W,
                     int8_t *packed, float *scale, int32_t *wsum);
/* q4: bytes of the packed weight; the pack (plain C, the contract above). */
size_t vt_lp_q4_size(int64_t N, int64_t K);
void   vt_lp_pack_q4(int64_t N, int64_t K, const float *W, uint8_t *packed);

/* y[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i] over one row of n
 * (biased variance, as torch.nn.LayerNorm; mean/var accumulated in float32
 * two-pass). w, b may be NULL (identity). y may alias x. */
typedef void (*vt_layernorm_f32_fn)(int64_t n, const float *x, const float *w, const float *b,
                                    float eps, float *y);

/* In-place softmax over one row of n: exp(x - max) / sum. */
typedef void (*vt_softmax_f32_fn)(int64_t n, float *x);

/*
 * Fused attention for one (batch item, head), flash-attention style:
 *   out[i, 0..dh) = sum_j softmax_j(scale * q[i] . k[j]) v[j]
 * for i < tq, j < tk; q, k, v, out rows have strides ldq, ldk, ldv, ldo.
 * causal: query i sees keys j <= i + (tk - tq) only; a query that sees no key
 * (or tk = 0) gets a zero row. out must not overlap q, k or v.
 * scratch: VT_ATTN_SCRATCH_FLOATS(dh) floats, 64-byte aligned, owned by the
 * calling thread - VT_ATTN_GROUP(dh) blocks of VT_ATTN_BQ queries against
 * blocks of VT_ATTN_BK keys, never a tq x tk score matrix. The reference
 * (ref/ref_attn.c) needs none and runs any dh; ISA versions need the scratch,
 * so callers keep dh <= VT_ATTN_MAX_DH for them (src/core/ops.c falls back to
 * the reference above it). attn_bf16 (same contract) rounds q, k, v and the
 * probabilities to bfloat16 and is not bit-close to attn_f32.
 * Softmax and sums are float32; ISA versions differ from the reference only
 * by rounding (online softmax: the running max is folded in per key block).
 */
#define VT_ATTN_BQ 48
#define VT_ATTN_BK 64
#define VT_ATTN_MAX_DH 512
/* Query blocks that share one pass over K and V: as many as keep the
 * scratch under ~124000 floats (the GEMM's scratch, which ops.c shares),
 * at most 8 (dh 64..96: 8, 128: 7, 256: 3, 512: 1). */
#define VT_ATTN_GROUP_FIT(dh)                                                          \
    ((124000 - 2 * VT_ATTN_BK * ((int64_t)(dh) + 16)) / (2 * VT_ATTN_BQ * ((int64_t)(dh) + 16)))
#define VT_ATTN_GROUP(dh)                                                              \
    (VT_ATTN_GROUP_FIT(dh) > 8 ? 8 : VT_ATTN_GROUP_FIT(dh) < 1 ? 1 : VT_ATTN_GROUP_FIT(dh))
#define VT_ATTN_SCRATCH_FLOATS(dh)                                                     \
    ((2 * VT_ATTN_GROUP(dh) * VT_ATTN_BQ + 2 * VT_ATTN_BK) * ((int64_t)(dh) + 16) +      \
     2 * VT_ATTN_BK * VT_ATTN_BQ)

typedef void (*vt_attn_f32_fn)(int64_t tq, int64_t tk, int64_t dh, const float *q, int64_t ldq,
                               const float *k, int64_t ldk, const float *v, int64_t ldv,
                               float scale, int causal, float *out, int64_t ldo, float *scratch);

/* Activations, in place over n elements. */
typedef void (*vt_act_f32_fn)(int64_t n, float *x);

/*
 * Element-wise and per-row ops of the LLM runtime (LLaMA family; the
 * reference, ref/ref_eltwise.c, cites transformers for each):
 *   add_f32:     y[i] += x[i] over n (residual add)
 *   scale_f32:   y[i] = a * x[i] over n (y may alias x)
 *   rmsnorm_f32: one row of n, LlamaRMSNorm in float32:
 *                y = w * (x * (1 / sqrt(mean(x^2) + eps))); w may be NULL
 *                (no weight); y may alias x
 *   rope_f32:    rotary embedding (rotate_half convention) in place over
 *                `heads` head vectors of dh floats (even dh) at stride ldh,
 *                all at one position, whose angles cs, sn [dh / 2] come
 *                from vt_rope_angles:
 *                  x[i]        = x[i] cs[i] - x[i + dh/2] sn[i]
 *                  x[i + dh/2] = x[i + dh/2] cs[i] + x[i] sn[i]
 * ISA versions multiply and add in the reference's order (results agree
 * to rounding; tests/kernels checks).
 */
typedef void (*vt_add_f32_fn)(int64_t n, const float *x, float *y);
typedef void (*vt_scale_f32_fn)(int64_t n, float a, const float *x, float *y);
typedef void (*vt_rmsnorm_f32_fn)(int64_t n, const float *x, const float *w, float eps,
                                  float *y);
typedef void (*vt_rope_f32_fn)(int64_t heads, int64_t dh, float *x, int64_t ldh,
                               const float *cs, const float *sn);

/* cs[i], sn[i] = cos, sin(pos * theta^(-2i / dh)), i < dh / 2, in float32 as
 * transformers' LlamaRotaryEmbedding (ref/ref_eltwise.c). Plain C, shared
 * by every table (the op calls it once per row, not per head). */
void vt_rope_angles(int64_t dh, int64_t pos, float theta, float *cs, float *sn);
/* The same from given inverse frequencies inv_freq [dh / 2]: f = pos * inv_freq[i]
 * (float32), cs[i] = cos(f) * scale, sn[i] = sin(f) * scale, as
 * LlamaRotaryEmbedding.forward with its attention_scaling. */
void vt_rope_angles_freq(int64_t dh, int64_t pos, const float *inv_freq, float scale, float *cs,
                         float *sn);

/*
 * Image resampling passes (src/image/resample.c), bit-exact with Pillow's
 * ImagingResample{Horizontal,Vertical}_8bpc (libImaging/Resample.c) in every
 * table: integer sums, so ISA versions give the same bytes as the reference
 * (ref/ref_resample.c). In the table (rather than chosen by resample.c) so
 * that VTOK_FORCE_REF / vtok_force_reference_kernels govern them too.
 *
 * Pillow's fixed-point format (PRECISION_BITS = 32 - 8 - 2): coefficients
 * carry 22 fraction bits, sums start at 1 << 21 (round half up), results
 * are clip8(sum >> 22). One axis' coefficients as Pillow's
 * precompute_coeffs + normalize_coeffs_8bpc make them: output i reads
 * n = bounds[2i+1] source pixels from bounds[2i] on, with weights
 * k[i*ksize .. i*ksize+n).
 */
#define VT_RESAMPLE_PRECISION_BITS (32 - 8 - 2)

typedef struct vt_resample_coeffs {
    int      out_size;
    int      ksize;   /* row stride of k (Pillow's ksize) */
    int32_t *bounds;  /* [out_size][2]: first source index, tap count */
    int32_t *k;       /* [out_size][ksize], VT_RESAMPLE_PRECISION_BITS fraction */
} vt_resample_coeffs;

/*
 * Horizontal: rows [0, rows) of src (stride src_stride bytes, RGB8, in_w
 * pixels) -> rows of dst (stride dst_stride, c->out_size pixels). table is
 * resample_h_table_ints(c) int32s (0 for the reference: pass NULL) filled by
 * resample_h_prepare(c, table) once per coefficient set. A version may read
 * up to 8 bytes past a pixel it uses, so a row whose read would pass src_end
 * is first copied into pad (at least in_w * 3 + 32 bytes).
 * Vertical: dst row i (row_bytes bytes) = the taps of c over src rows;
 * acc: row_bytes uint32 of scratch (the reference's row of sums).
 */
typedef size_t (*vt_resample_h_table_ints_fn)(const vt_resample_coeffs *c);
typedef void (*vt_resample_h_prepare_fn)(const vt_resample_coeffs *c, int32_t *table);
typedef void (*vt_resample_h_fn)(const uint8_t *src, size_t src_stride, int rows, int in_w,
                                 const uint8_t *src_end, uint8_t *pad, uint8_t *dst,
                                 size_t dst_stride, const vt_resample_coeffs *c,
                                 const int32_t *table);
typedef void (*vt_resample_v_fn)(const uint8_t *src, size_t src_stride, size_t row_bytes,
                                 uint8_t *dst, size_t dst_stride, const vt_resample_coeffs *c,
                                 uint32_t *acc);

typedef struct vt_kernels {
    const char          *name;        /* "ref", "avx2", "avx512" */
    vt_gemm_f32_fn       gemm_f32;
    vt_gemm_packed_floats_fn gemm_packed_floats; /* NULL: no packed form */
    vt_gemm_pack_nk_fn       gemm_pack_nk;
    vt_gemm_f32_packed_fn    gemm_f32_packed;
    vt_layernorm_f32_fn  layernorm_f32;
    vt_softmax_f32_fn    softmax_f32;
    vt_attn_f32_fn       attn_f32;         /* fused attention, one (item, head)      */
    vt_attn_f32_fn       attn_bf16;        /* the same with bf16 products (AVX512-BF16),
                                              f32 softmax; NULL if absent; not default */
    vt_act_f32_fn        gelu_erf_f32;     /* 0.5 x (1 + erf(x / sqrt 2))            */
    vt_act_f32_fn        gelu_tanh_f32;    /* 0.5 x (1 + tanh(sqrt(2/pi)(x+0.044715x^3))) */
    vt_act_f32_fn        quick_gelu_f32;   /* x * sigmoid(1.702 x)                    */
    vt_act_f32_fn        silu_f32;         /* x * sigmoid(x)                          */
    vt_act_f32_fn        tanh_f32;
    vt_add_f32_fn        add_f32;          /* y += x                                  */
    vt_scale_f32_fn      scale_f32;        /* y = a x                                 */
    vt_rmsnorm_f32_fn    rmsnorm_f32;      /* LlamaRMSNorm, one row                   */
    vt_rope_f32_fn       rope_f32;         /* rotate_half RoPE, one position          */
    /* low precision (every table has them; see above) */
    vt_bf16_row_fn       bf16_row;
    vt_u8_row_fn         u8_row;
    vt_gemm_bf16_fn      gemm_bf16;
    vt_gemm_i8_fn        gemm_i8;
    vt_q8_row_fn         q8_row;           /* q4 weights: activations per 32-block  */
    vt_gemm_q4_fn        gemm_q4;
    /* image resampling (every table; bit-identical, see above) */
    vt_resample_h_table_ints_fn resample_h_table_ints;
    vt_resample_h_prepare_fn    resample_h_prepare;
    vt_resample_h_fn            resample_h;
    vt_resample_v_fn            resample_v;
} vt_kernels;

/* Build the table once (thread-safe, idempotent unless force_ref changes). */
void vt_kernels_init(int force_ref);

/* The active table; calls vt_kernels_init(env VTOK_FORCE_REF) on first use. */
const vt_kernels *vt_kernels_get(void);

/* Tables for tests: the reference, and each ISA table if the CPU supports it
 * (NULL otherwise). An ISA table is complete: ops it does not implement point
 * at the reference. */
const vt_kernels *vt_kernels_ref(void);
const vt_kernels *vt_kernels_avx2(void);
const vt_kernels *vt_kernels_avx512(void);

/* CPU features found at run time. */
typedef struct vt_cpu {
    int avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512bf16, avx512vnni, amx_tile, amx_bf16, amx_int8;
    /* Added with the x86 kernels: AVX512DQ (the *_avx512.c files are built
     * with it), and whether the OS saves YMM / ZMM state (XCR0). Every AVX
     * flag above is already 0 when the OS does not enable its state; the AMX
     * flags need XTILECFG/XTILEDATA in XCR0, and Linux additionally requires
     * arch_prctl(ARCH_REQ_XCOMP_PERM) before the first tile instruction. */
    int avx512dq, os_avx, os_avx512;
} vt_cpu;
const vt_cpu *vt_cpu_get(void);

#endif /* VT_KERNELS_H */
