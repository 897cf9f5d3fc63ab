/*
 * ops.h - multi-threaded tensor ops over the kernel table.
 *
 * Each op splits its work into independent chunks (row blocks, column
 * panels, attention heads) and runs them on the context's pool; the kernels
 * themselves are single-threaded. Ops never allocate: per-thread scratch
 * comes from the vt_exec given by the caller, sized by vt_exec_scratch_floats.
 */
#ifndef VT_OPS_H
#define VT_OPS_H

#include "../kernels/kernels.h"
#include "pool.h"

typedef enum vt_act {
    VT_ACT_NONE = 0,
    VT_ACT_GELU_ERF,     /* "gelu" in transformers: exact erf form          */
    VT_ACT_GELU_TANH,    /* "gelu_pytorch_tanh", "gelu_new", "gelu_fast"    */
    VT_ACT_QUICK_GELU,   /* "quick_gelu": x * sigmoid(1.702 x)              */
    VT_ACT_SILU,
    VT_ACT_RELU,
    VT_ACT_TANH,
} vt_act;

/*
 * Linear layer weights as stored by PyTorch: w [n_out, n_in], b [n_out] or NULL.
 * packed: w in packed_by's GEMM panel layout (kernels.h, gemm_pack_nk), made
 * once at model load (src/models/model.c), or NULL. vt_op_linear uses it only
 * while packed_by is the active table and otherwise reads w, so w must stay
 * valid either way. A vt_linear made from part of another (a slice of its
 * rows) must leave packed NULL: the packed copy describes the whole weight.
 */
typedef enum vt_lp {
    VT_LP_NONE = 0, /* float32 */
    VT_LP_BF16,     /* lpw: uint16_t bf16 pair panels (kernels.h)        */
    VT_LP_INT8,     /* lpw: int8 quad panels + lp_scale, lp_wsum          */
    VT_LP_Q4,       /* lpw: 4-bit blocks with f16 scales (kernels.h q4)   */
} vt_lp;

/*
 * Low precision: lp != VT_LP_NONE means lpw holds the weight in the
 * portable layout of kernels.h (every table reads it) and vt_op_linear uses
 * it instead of w, converting x per call into vt_exec.lp_buf. w may then be
 * NULL (the loader released the float32 copy).
 */
typedef struct vt_linear {
    const float      *w;
    const float      *b;
    int64_t           n_out, n_in;
    const float      *packed;
    const vt_kernels *packed_by;
    int               lp;       /* vt_lp */
    const void       *lpw;
    const float      *lp_scale; /* int8: per output column (padded to VT_LP_NR) */
    const int32_t    *lp_wsum;  /* int8: 128 * column sums                       */
} vt_linear;

typedef struct vt_norm {
    const float *w, *b;
    float        eps;
} vt_norm;

/*
 * One run's control block (core/ctx.c): the caller's abort and progress
 * callbacks, step counting, and the run's conditioning inputs
 * (vtok_run_params), which connectors may read through vt_exec.run during
 * forward (SliME's selector reads llm and text_ids). Mutable behind a const vt_exec: a run
 * belongs to one thread (pool workers never touch it).
 */
typedef struct vt_run {
    int  (*abort_cb)(void *user);
    void (*progress_cb)(void *user, int64_t done, int64_t total);
    void        *user;
    int64_t      done, total;    /* steps finished / planned (progress_cb)  */
    int          aborted;        /* sticky: abort_cb returned nonzero       */
    const char  *prompt;         /* UTF-8 or NULL, valid during the run     */
    const float *cond;           /* n_cond floats or NULL                   */
    int64_t      n_cond;
    const struct vtok_llm *llm;  /* text conditioning (vtok_run_params):    */
    const int32_t *text_ids;     /*   the LLM and the prompt's ids, or NULL */
    int64_t      n_text;
    const struct vtok_image *images; /* the run's decoded images (vtok_recipe_run_images), */
    int64_t      n_images;           /*   or NULL: pixels only                          */
} vt_run;

/* What an op needs to run: the pool, the kernels and per-thread scratch. */
typedef struct vt_exec {
    vt_pool          *pool;
    const vt_kernels *k;
    float            *scratch;        /* n_threads * scratch_stride floats */
    int64_t           scratch_stride; /* floats per thread                 */
    /* Shared buffer for low-precision Linears' converted input rows, at
     * least vt_exec_lp_bytes(max rows, max n_in) bytes (NULL if no Linear
     * is low precision). */
    void             *lp_buf;
    size_t            lp_bytes;
    vt_run           *run;            /* callbacks + inputs of this run, or NULL */
} vt_exec;

/* Between the steps of a run (encoder blocks, the connector): a step is
 * about to start. Polls abort_cb; once aborted a run stays so. Returns 1 if
 * the run must stop. e->run may be NULL (never stops). */
int vt_run_poll(const vt_exec *e);
/* A step finished: done + 1, reported to progress_cb. */
void vt_run_step_done(const vt_exec *e);

/* Bytes of vt_exec.lp_buf for Linears over up to M rows of up to K inputs. */
size_t vt_exec_lp_bytes(int64_t M, int64_t K);

/* Floats of per-thread scratch the ops need for sequences of up to `tokens`
 * tokens. Since attention is fused (no tokens x tokens scores) this is the
 * GEMM's scratch for any `tokens`; the parameter stays for future ops. */
int64_t vt_exec_scratch_floats(int64_t tokens);

/* y[M, n_out] = x[M, n_in] W^T + b. ldx/ldy are row strides (0 = dense). */
void vt_op_linear(const vt_exec *e, int64_t M, const float *x, int64_t ldx, const vt_linear *l,
                  float *y, int64_t ldy);

/*
 * vt_op_linear with the neighbouring passes fused in:
 *   ln:         x[r] = LayerNorm(ln_src[r]) first (rows of n_in, ln_src
 *               dense), as vt_op_layernorm(ln_src -> x) would;
 *   act:        then x[r] = act(x[r]) in place, as vt_op_act would;
 *   accumulate: y += x W^T + b (a residual add) instead of y = ...
 * x ends up holding exactly what the separate ops would leave there (x is
 * written, so it is not const). The gain is in the low-precision paths,
 * which transform and convert each input row while it is in L1 instead of
 * in two more passes over memory; accumulate saves the pass that adds the
 * Linear's output to the residual stream. Only with dense x (ldx = 0 or
 * n_in) when ln or act is set.
 */
typedef struct vt_linear_opts {
    const float   *ln_src;
    const vt_norm *ln;        /* NULL: no LayerNorm */
    vt_act         act;       /* VT_ACT_NONE: none  */
    int            accumulate;
} vt_linear_opts;

void vt_op_linear_ex(const vt_exec *e, int64_t M, float *x, int64_t ldx, const vt_linear *l,
                     float *y, int64_t ldy, const vt_linear_opts *o);

/* Row-wise LayerNorm of x[M, n] into y (may alias). */
void vt_op_layernorm(const vt_exec *e, int64_t M, int64_t n, const float *x, const vt_norm *nm,
                     float *y);

/* A channel-last map [h * w, C] resized to [oh * ow, C] as
 * F.interpolate(mode="bilinear", align_corners=False, antialias=False) does
 * on the channel-first tensor (aten upsample_bilinear2d: source index
 * scale * (o + 0.5) - 0.5 clamped at 0, scale = in / out in float, the
 * second tap clamped at the edge; MoVA's feature_align, LLaVA-NeXT's
 * anyres_max). Single-threaded: small maps. */
void vt_resize_bilinear(const float *src, int64_t h, int64_t w, int64_t C, int64_t oh,
                        int64_t ow, float *dst);

/* im2col of a 3x3 convolution with padding 1 and stride s on a channel-last
 * map in [H * W, C]: col [Ho * Wo, 9 C] (Ho = (H - 1) / s + 1, likewise Wo),
 * row (oy, ox) holding in[(oy s + ky - 1, ox s + kx - 1), c] at column
 * c * 9 + ky * 3 + kx (0 outside the map): the order of a PyTorch Conv2d
 * weight [d, C, 3, 3] seen as a linear of n_in = 9 C. One task per row. */
void vt_op_im2col3x3(const vt_exec *e, const float *in, int64_t H, int64_t W, int64_t C,
                     int64_t stride, float *col);

/* SwiGLU rows: out[r, c] = silu(in[r, c]) * in[r, hf + c], in rows of 2*hf,
 * out rows of hf (Dinov2SwiGLUFFN / EVA-02 with a fused fc1). */
void vt_op_swiglu(const vt_exec *e, int64_t M, int64_t hf, const float *in, float *out);

/* In-place activation over n elements. */
void vt_op_act(const vt_exec *e, vt_act act, int64_t n, float *x);

/*
 * Multi-head attention, general form (self or cross, optionally causal,
 * optionally grouped-query): for each batch item b and head h,
 *   out_b[i, h*dh .. +dh) = softmax_j(scale * q_b[i] . k_b[j]) v_b[j]
 * over the head's columns [h*dh, (h+1)*dh) of q and out, and the columns
 * [g*dh, (g+1)*dh) of k and v of its K/V head g = h / (heads / kv_heads)
 * (GQA as transformers' repeat_kv: consecutive query heads share a K/V
 * head; kv_heads 0 = heads, otherwise it must divide heads).
 * Rows have strides ldq/ldk/ldv/ldo (floats); batch item b starts at
 * b * bs_x (0 = the dense default: tq*ldq for q and out, tk*ldk / tk*ldv).
 * causal:
 *   0                    none
 *   VT_ATTN_CAUSAL (1)   query i sees keys j <= i + (tk - tq) only (the
 *                        -10000 / -inf additive masks of BERT/SEED: exp
 *                        underflows to exactly 0 in float32; the last query
 *                        sees every key)
 *   VT_ATTN_CAUSAL_POS   query i sits at position q_pos + i (q_pos >= 0) of
 *                        a sequence whose keys are positions 0 .. tk-1 (a
 *                        KV cache) and sees keys j <= q_pos + i; q_pos =
 *                        tk - tq is VT_ATTN_CAUSAL
 * out must not overlap q, k or v. Runs the table's fused kernel (attn_f32,
 * no tq x tk buffer), one task per (item, head, block of queries).
 * Per-thread scratch must hold vt_exec_scratch_floats(max(tq, tk)).
 */
#define VT_ATTN_CAUSAL     1
#define VT_ATTN_CAUSAL_POS 2

typedef struct vt_attn_args {
    int64_t      batch, heads, tq, tk, dh;
    const float *q, *k, *v;
    int64_t      ldq, ldk, ldv;
    int64_t      bs_q, bs_k, bs_v, bs_o;  /* batch strides, 0 = dense */
    float       *out;
    int64_t      ldo;
    float        scale;
    int          causal;   /* 0, VT_ATTN_CAUSAL or VT_ATTN_CAUSAL_POS */
    int64_t      kv_heads; /* GQA: K/V heads, 0 = heads                */
    int64_t      q_pos;    /* VT_ATTN_CAUSAL_POS: position of query 0  */
    int          lowp;    /* bf16 products (kernels.h attn_bf16) where the table has them:
                             the --dtype bf16 / int8 models; f32 otherwise */
} vt_attn_args;

void vt_op_attention_ex(const vt_exec *e, const vt_attn_args *a);

/*
 * Multi-head self-attention core for `batch` sequences of T tokens:
 * q, k, v rows have stride ld (so fused qkv buffers work), head h uses
 * columns [h*dh, (h+1)*dh). out[b*T + t, h*dh + j] (stride d = heads*dh)
 * = softmax(scale * q k^T) v, per batch item and head. (vt_op_attention_ex
 * with ldq = ldk = ldv = ld, ldo = heads*dh.)
 */
void vt_op_attention(const vt_exec *e, int64_t batch, int64_t T, int64_t heads, int64_t dh,
                     const float *q, const float *k, const float *v, int64_t ld, float scale,
                     float *out);

/* ---- element-wise ops of the LLM runtime (kernels.h; references in
 * src/kernels/ref/ref_eltwise.c) ---- */

/* y[i] += x[i] over n (residual add). */
void vt_op_add(const vt_exec *e, int64_t n, const float *x, float *y);

/* y[i] = a * x[i] over n (y may alias x). */
void vt_op_scale(const vt_exec *e, int64_t n, float a, const float *x, float *y);

/* Row-wise LlamaRMSNorm of x[M, n] (dense) into y (may alias):
 * y = w * (x / sqrt(mean(x^2) + eps)), in float32; w [n] or NULL. */
void vt_op_rmsnorm(const vt_exec *e, int64_t M, int64_t n, const float *x, const float *w,
                   float eps, float *y);

/* 1-D RoPE (LLaMA rotate_half convention) in place: row r of x (stride ldx
 * floats, 0 = heads * dh) holds `heads` head vectors of dh (even) floats at
 * columns [h*dh, (h+1)*dh), all rotated to position pos[r] with angles
 * pos * theta^(-2i / dh) (theta: rope_theta, 10000 for LLaMA). Apply it to
 * the q rows and to the k rows (with their own head count) separately. */
void vt_op_rope(const vt_exec *e, int64_t M, int64_t heads, int64_t dh, float *x, int64_t ldx,
                const int64_t *pos, float theta);

/* vt_op_rope with the angles pos * inv_freq[i] (i < dh / 2) of a scaled
 * RoPE (transformers' modeling_rope_utils.py: linear, dynamic NTK, llama3
 * change inv_freq) and cos, sin multiplied by cs_scale (the rope's
 * attention_scaling; 1 for those three). */
void vt_op_rope_freq(const vt_exec *e, int64_t M, int64_t heads, int64_t dh, float *x,
                     int64_t ldx, const int64_t *pos, const float *inv_freq, float cs_scale);

/* Name -> activation ("gelu", "quick_gelu", ...); -1 if unknown. */
int vt_act_from_name(const char *name);
const char *vt_act_name(vt_act a);

#endif /* VT_OPS_H */
