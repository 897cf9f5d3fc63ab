/*
 * ops.c - threaded ops: split into chunks, run kernels on the context pool.
 *
 * Chunk sizes are chosen so that a 2-16 thread pool has several chunks per
 * thread (the atomic counter balances them) while each chunk is big enough
 * to amortise B-panel packing in the GEMM.
 */
#include "ops.h"
#include "vt.h"

#include <assert.h>
#include <string.h>

static float *thread_scratch(const vt_exec *e, int tid)
{
    return e->scratch + (int64_t)tid * e->scratch_stride;
}

static int64_t round16(int64_t n)
{
    return (n + 15) / 16 * 16;
}

/* Attention no longer keeps a tokens x tokens score matrix: its kernels use
 * VT_ATTN_SCRATCH_FLOATS(dh), which VT_ATTN_GROUP keeps under the GEMM's
 * scratch for every dh <= VT_ATTN_MAX_DH (larger dh runs the scratch-free
 * reference; vt_op_attention_ex checks the stride too), and an op
 * never runs a GEMM and attention at once on a thread. `tokens` stays in the
 * signature for ops that may need per-token scratch again. */
_Static_assert(VT_ATTN_SCRATCH_FLOATS(64) <= VT_GEMM_SCRATCH_FLOATS &&
                   VT_ATTN_SCRATCH_FLOATS(VT_ATTN_MAX_DH) <= VT_GEMM_SCRATCH_FLOATS,
               "attention scratch must fit the GEMM scratch");

int64_t vt_exec_scratch_floats(int64_t tokens)
{
    (void)tokens;
    return round16(VT_GEMM_SCRATCH_FLOATS);
}

/* ---- linear ----
 *
 * Tasks are (row block, column chunk) pairs. Column chunks of ~256 (each
 * packs its slice of W once, unless W was converted at load), as many per
 * thread, starting on multiples of VT_GEMM_PANEL_ALIGN (= VT_LP_NR), where
 * prepacked and low-precision panels start.
 *
 * Low-precision Linears (l->lp) first convert x's rows once into lp_buf
 * (bf16, or u8 + a scale per row: one more pool run), then every chunk
 * reads the converted rows. Their row stride is the padded K plus 64 bytes,
 * so 12 consecutive rows never share an L1 set when K is a power of two.
 */

_Static_assert(VT_GEMM_PANEL_ALIGN % VT_LP_NR == 0, "chunks must start on a panel");

typedef struct {
    const vt_exec   *e;
    const vt_linear *l;
    const float     *x;
    float           *y;
    int64_t          M, ldx, ldy, mb, nb, n_mblk;
    int              packed;  /* l->packed is in e->k's layout */
    int              accumulate;
    const vt_linear_opts *o;  /* pre-ops fused into the conversion, or NULL */
    vt_act_f32_fn    act;
    void            *a;       /* low precision: converted rows ... */
    int64_t          lda;     /* ... their stride (elements) ... */
    float           *a_scale; /* ... and int8 row scales */
} linear_job;

static int64_t lp_lda(int64_t K)
{
    /* elements of 2 bytes: a bf16 row; int8 rows (K bytes) and q8 rows
     * (1.25 K bytes, vt_q8_row_bytes) fit in 2 * lda bytes */
    return vt_lp_kpad(K, VT_Q4_BLOCK) + 64 / 2;
}

size_t vt_exec_lp_bytes(int64_t M, int64_t K)
{
    if (M <= 0 || K <= 0)
        return 0;
    /* bf16 rows (2 bytes each) bound the u8 rows + their float scales;
     * saturating: SIZE_MAX fails the plan (vt_plan_bytes) */
    int64_t b = vt_szadd(vt_szmul3(M, lp_lda(K), 2), vt_szadd(vt_szmul(M, (int64_t)sizeof(float)), 64));
    return b == VT_SIZE_INF || (uint64_t)b > SIZE_MAX ? SIZE_MAX : (size_t)b;
}

#define LP_ROWS 16

static void lp_convert_task(void *arg, int64_t i, int tid)
{
    const linear_job *j = arg;
    (void)tid;
    int64_t r1 = (i + 1) * LP_ROWS < j->M ? (i + 1) * LP_ROWS : j->M;
    for (int64_t r = i * LP_ROWS; r < r1; r++) {
        const float *x = j->x + r * j->ldx;
        if (j->o && j->o->ln) {
            const vt_norm *nm = j->o->ln;
            j->e->k->layernorm_f32(j->l->n_in, j->o->ln_src + r * j->l->n_in, nm->w, nm->b,
                                   nm->eps, (float *)x);
        }
        if (j->act)
            j->act(j->l->n_in, (float *)x);
        if (j->l->lp == VT_LP_BF16)
            j->e->k->bf16_row(j->l->n_in, x, (uint16_t *)j->a + r * j->lda);
        else if (j->l->lp == VT_LP_Q4) /* lda in bytes: 2 per bf16 element */
            j->e->k->q8_row(j->l->n_in, x, (uint8_t *)j->a + r * 2 * j->lda);
        else
            j->a_scale[r] = j->e->k->u8_row(j->l->n_in, x, (uint8_t *)j->a + r * j->lda);
    }
}

static void linear_task(void *arg, int64_t i, int tid)
{
    const linear_job *j = arg;
    const vt_linear *l = j->l;
    const vt_kernels *k = j->e->k;
    int64_t m0 = (i % j->n_mblk) * j->mb, n0 = (i / j->n_mblk) * j->nb;
    int64_t m = j->M - m0 < j->mb ? j->M - m0 : j->mb;
    int64_t n = l->n_out - n0 < j->nb ? l->n_out - n0 : j->nb;
    const float *b = l->b ? l->b + n0 : NULL;
    float *y = j->y + m0 * j->ldy + n0;
    if (l->lp == VT_LP_BF16)
        k->gemm_bf16(m, l->n_in, n0, n, (const uint16_t *)j->a + m0 * j->lda, j->lda, l->lpw, b,
                     y, j->ldy, j->accumulate);
    else if (l->lp == VT_LP_Q4)
        k->gemm_q4(m, l->n_in, n0, n, (const uint8_t *)j->a + m0 * 2 * j->lda, 2 * j->lda, l->lpw,
                   b, y, j->ldy, j->accumulate);
    else if (l->lp == VT_LP_INT8)
        k->gemm_i8(m, l->n_in, n0, n, (const uint8_t *)j->a + m0 * j->lda, j->lda,
                   j->a_scale + m0, l->lpw, l->lp_scale, l->lp_wsum, b, y, j->ldy, j->accumulate);
    else if (j->packed)
        k->gemm_f32_packed(m, l->n_out, l->n_in, n0, n, j->x + m0 * j->ldx, j->ldx, l->packed, b,
                           y, j->ldy, j->accumulate, thread_scratch(j->e, tid));
    else
        k->gemm_f32(m, n, l->n_in, j->x + m0 * j->ldx, j->ldx, l->w + n0 * l->n_in, l->n_in, 1, b,
                    y, j->ldy, j->accumulate, thread_scratch(j->e, tid));
}

static vt_act_f32_fn act_kernel(const vt_kernels *k, vt_act act);

void vt_op_linear_ex(const vt_exec *e, int64_t M, float *x, int64_t ldx, const vt_linear *l,
                     float *y, int64_t ldy, const vt_linear_opts *o)
{
    if (M <= 0 || l->n_out <= 0)
        return;
    linear_job j = {.e = e, .l = l, .x = x, .y = y, .M = M,
                    .ldx = ldx ? ldx : l->n_in, .ldy = ldy ? ldy : l->n_out,
                    .packed = l->packed && l->packed_by == e->k,
                    .accumulate = o && o->accumulate};
    if (o && (o->ln || o->act != VT_ACT_NONE)) {
        assert(j.ldx == l->n_in); /* invariant: fused LN/act callers pass dense rows */
        if (l->lp != VT_LP_NONE) { /* done row by row in the conversion */
            j.o = o;
            j.act = act_kernel(e->k, o->act);
        } else {
            if (o->ln)
                vt_op_layernorm(e, M, l->n_in, o->ln_src, o->ln, x);
            vt_op_act(e, o->act, M * l->n_in, x);
        }
    }
    if (l->lp != VT_LP_NONE) {
        /* invariant: the planner sized lp_buf for the run (vt_ctx_plan_exec) */
        assert(e->lp_buf && e->lp_bytes >= vt_exec_lp_bytes(M, l->n_in));
        /* lp_buf: M converted rows, then the row scales */
        j.a = e->lp_buf;
        j.lda = lp_lda(l->n_in);
        j.a_scale = (float *)((char *)e->lp_buf + ((size_t)M * (size_t)j.lda * 2 + 63) / 64 * 64);
        vt_pool_run(e->pool, lp_convert_task, &j, (M + LP_ROWS - 1) / LP_ROWS);
    }
    int nt = vt_pool_size(e->pool);
    j.mb = M <= 512 ? M : 256;
    j.n_mblk = (M + j.mb - 1) / j.mb;
    int64_t per = nt * j.n_mblk;
    int64_t m = (l->n_out + 256 * per - 1) / (256 * per);
    j.nb = (l->n_out + per * m - 1) / (per * m);
    j.nb = (j.nb + VT_GEMM_PANEL_ALIGN - 1) / VT_GEMM_PANEL_ALIGN * VT_GEMM_PANEL_ALIGN;
    int64_t n_nblk = (l->n_out + j.nb - 1) / j.nb;
    vt_pool_run(e->pool, linear_task, &j, j.n_mblk * n_nblk);
}

void vt_op_linear(const vt_exec *e, int64_t M, const float *x, int64_t ldx, const vt_linear *l,
                  float *y, int64_t ldy)
{
    /* no options: x is only read */
    vt_op_linear_ex(e, M, (float *)x, ldx, l, y, ldy, NULL);
}

/* ---- layernorm ---- */

typedef struct {
    const vt_exec *e;
    const vt_norm *nm;
    const float   *x;
    float         *y;
    int64_t        M, n;
} norm_job;

#define NORM_ROWS 16

static void norm_task(void *arg, int64_t i, int tid)
{
    const norm_job *j = arg;
    int64_t r1 = (i + 1) * NORM_ROWS < j->M ? (i + 1) * NORM_ROWS : j->M;
    for (int64_t r = i * NORM_ROWS; r < r1; r++)
        j->e->k->layernorm_f32(j->n, j->x + r * j->n, j->nm->w, j->nm->b, j->nm->eps,
                               j->y + r * j->n);
}

void vt_op_layernorm(const vt_exec *e, int64_t M, int64_t n, const float *x, const vt_norm *nm,
                     float *y)
{
    norm_job j = {.e = e, .nm = nm, .x = x, .y = y, .M = M, .n = n};
    vt_pool_run(e->pool, norm_task, &j, (M + NORM_ROWS - 1) / NORM_ROWS);
}

/* ---- activations ---- */

typedef struct {
    vt_act_f32_fn fn;
    float        *x;
    int64_t       n;
} act_job;

#define ACT_CHUNK 16384

static void act_task(void *arg, int64_t i, int tid)
{
    const act_job *j = arg;
    int64_t n = j->n - i * ACT_CHUNK < ACT_CHUNK ? j->n - i * ACT_CHUNK : ACT_CHUNK;
    j->fn(n, j->x + i * ACT_CHUNK);
}

static void relu_f32(int64_t n, float *x)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static vt_act_f32_fn act_kernel(const vt_kernels *k, vt_act act)
{
    switch (act) {
    case VT_ACT_GELU_ERF:   return k->gelu_erf_f32;
    case VT_ACT_GELU_TANH:  return k->gelu_tanh_f32;
    case VT_ACT_QUICK_GELU: return k->quick_gelu_f32;
    case VT_ACT_SILU:       return k->silu_f32;
    case VT_ACT_TANH:       return k->tanh_f32;
    case VT_ACT_RELU:       return relu_f32;
    case VT_ACT_NONE:       break;
    }
    return NULL;
}

void vt_op_act(const vt_exec *e, vt_act act, int64_t n, float *x)
{
    act_job j = {.x = x, .n = n, .fn = act_kernel(e->k, act)};
    if (!j.fn)
        return;
    vt_pool_run(e->pool, act_task, &j, (n + ACT_CHUNK - 1) / ACT_CHUNK);
}

/* ---- swiglu ---- */

typedef struct {
    const vt_exec *e;
    const float   *in;
    float         *out;
    int64_t        M, hf;
} swiglu_job;

static void swiglu_task(void *arg, int64_t i, int tid)
{
    const swiglu_job *j = arg;
    (void)tid;
    int64_t r1 = (i + 1) * NORM_ROWS < j->M ? (i + 1) * NORM_ROWS : j->M;
    for (int64_t r = i * NORM_ROWS; r < r1; r++) {
        const float *a = j->in + r * 2 * j->hf;
        float *g = j->out + r * j->hf;
        memcpy(g, a, (size_t)j->hf * sizeof(float));
        j->e->k->silu_f32(j->hf, g);
        for (int64_t c = 0; c < j->hf; c++)
            g[c] *= a[j->hf + c];
    }
}

static void bilinear_taps(int64_t o, int64_t n_in, int64_t n_out, int64_t *i0, int64_t *i1,
                          float *l0, float *l1)
{
    const float scale = (float)n_in / (float)n_out;
    float src = scale * ((float)o + 0.5f) - 0.5f;
    src = src < 0 ? 0 : src;
    *i0 = (int64_t)src;
    *i1 = *i0 + (*i0 < n_in - 1);
    *l1 = src - (float)*i0;
    *l0 = 1.0f - *l1;
}

typedef struct {
    const float *in;
    float       *col;
    int64_t      H, W, C, stride, Wo;
} im2col_job;

static void im2col_task(void *arg, int64_t oy, int tid)
{
    const im2col_job *a = arg;
    const int64_t C = a->C;
    (void)tid;
    for (int64_t ox = 0; ox < a->Wo; ox++) {
        float *row = a->col + (oy * a->Wo + ox) * C * 9;
        for (int64_t ky = 0; ky < 3; ky++)
            for (int64_t kx = 0; kx < 3; kx++) {
                const int64_t iy = oy * a->stride + ky - 1, ix = ox * a->stride + kx - 1;
                const int64_t k = ky * 3 + kx;
                if (iy < 0 || iy >= a->H || ix < 0 || ix >= a->W) {
                    for (int64_t c = 0; c < C; c++)
                        row[c * 9 + k] = 0;
                    continue;
                }
                const float *src = a->in + (iy * a->W + ix) * C;
                for (int64_t c = 0; c < C; c++)
                    row[c * 9 + k] = src[c];
            }
    }
}

void vt_op_im2col3x3(const vt_exec *e, const float *in, int64_t H, int64_t W, int64_t C,
                     int64_t stride, float *col)
{
    im2col_job a = {.in = in, .col = col, .H = H, .W = W, .C = C, .stride = stride,
                    .Wo = (W - 1) / stride + 1};
    vt_pool_run(e->pool, im2col_task, &a, (H - 1) / stride + 1);
}

void vt_resize_bilinear(const float *src, int64_t h, int64_t w, int64_t C, int64_t oh,
                        int64_t ow, float *dst)
{
    for (int64_t y = 0; y < oh; y++) {
        int64_t y0, y1;
        float hy0, hy1;
        bilinear_taps(y, h, oh, &y0, &y1, &hy0, &hy1);
        for (int64_t x = 0; x < ow; x++, dst += C) {
            int64_t x0, x1;
            float wx0, wx1;
            bilinear_taps(x, w, ow, &x0, &x1, &wx0, &wx1);
            const float *a = src + (y0 * w + x0) * C, *b = src + (y0 * w + x1) * C;
            const float *c = src + (y1 * w + x0) * C, *e = src + (y1 * w + x1) * C;
            for (int64_t k = 0; k < C; k++)
                dst[k] = hy0 * (wx0 * a[k] + wx1 * b[k]) + hy1 * (wx0 * c[k] + wx1 * e[k]);
        }
    }
}

void vt_op_swiglu(const vt_exec *e, int64_t M, int64_t hf, const float *in, float *out)
{
    swiglu_job j = {.e = e, .in = in, .out = out, .M = M, .hf = hf};
    vt_pool_run(e->pool, swiglu_task, &j, (M + NORM_ROWS - 1) / NORM_ROWS);
}

/* ---- attention ---- */

/*
 * One task per (item, head, query block). The kernel (kernels.h, attn_f32)
 * runs one (item, head) on a query range; when batch * heads alone would
 * leave threads idle (batch 1 of a 12-head ViT on 16 threads), the queries
 * are split into blocks of a multiple of VT_ATTN_BQ rows. A query block
 * [q0, q0 + nq) of a causal call is itself causal over the first
 * q0 + nq + off keys: query q0 + i sees key j iff
 * j <= i + (q0 + nq + off) - nq, the kernel's rule for that key count
 * (off = tk - tq, or q_pos for VT_ATTN_CAUSAL_POS). GQA needs no copy:
 * a query head's task reads its K/V head's columns in place.
 */
typedef struct {
    const vt_exec      *e;
    const vt_attn_args *a;
    vt_attn_f32_fn      fn;
    int64_t             bs_q, bs_k, bs_v, bs_o, qb, n_qblk;
    int64_t             group; /* query heads per K/V head */
    int64_t             off;   /* causal: query i sees keys j <= i + off */
} attn_job;

static void attn_task(void *arg, int64_t i, int tid)
{
    const attn_job *j = arg;
    const vt_attn_args *a = j->a;
    const int64_t bh = i / j->n_qblk, q0 = (i % j->n_qblk) * j->qb;
    const int64_t b = bh / a->heads, h = bh % a->heads, g = h / j->group;
    const int64_t nq = a->tq - q0 < j->qb ? a->tq - q0 : j->qb;
    const float *q = a->q + b * j->bs_q + q0 * a->ldq + h * a->dh;
    const float *k = a->k + b * j->bs_k + g * a->dh, *v = a->v + b * j->bs_v + g * a->dh;
    float *out = a->out + b * j->bs_o + q0 * a->ldo + h * a->dh;
    float *scratch = thread_scratch(j->e, tid);
    if (!a->causal) {
        j->fn(nq, a->tk, a->dh, q, a->ldq, k, a->ldk, v, a->ldv, a->scale, 0, out, a->ldo,
              scratch);
        return;
    }
    /* Query q0 + i sees keys j <= q0 + i + off: the kernel's causal rule
     * for nq queries over tk' = q0 + nq + off keys, as long as that is not
     * more than there are. Past that (only with VT_ATTN_CAUSAL_POS and
     * q_pos > tk - tq), the rows from tk - off on see every key: a second,
     * unmasked call. */
    const int64_t off = j->off;
    int64_t n1 = nq, tk1 = q0 + nq + off;
    if (tk1 > a->tk) {
        n1 = a->tk - off - q0;
        n1 = n1 < 0 ? 0 : n1;
        tk1 = q0 + n1 + off;
    }
    tk1 = tk1 < 0 ? 0 : tk1;
    if (n1 > 0)
        j->fn(n1, tk1, a->dh, q, a->ldq, k, a->ldk, v, a->ldv, a->scale, 1, out, a->ldo,
              scratch);
    if (n1 < nq)
        j->fn(nq - n1, a->tk, a->dh, q + n1 * a->ldq, a->ldq, k, a->ldk, v, a->ldv, a->scale, 0,
              out + n1 * a->ldo, a->ldo, scratch);
}

/*
 * Decode (one query per item) with GQA: the `group` query heads of one K/V
 * head are adjacent dh-column blocks of the query row, so they go to the
 * kernel as `group` query rows (ldq = dh) of one call. K and V are then read
 * and copied once per K/V head, not once per query head, and the query
 * lanes of a vector are 8 of 16 live instead of 1 (TinyLlama: 32 heads on 4).
 * Each query's lane runs the same operations as alone, so the result is the
 * same bit for bit. The one query sees its first q_pos + 1 keys (or all).
 */
static void attn_decode_task(void *arg, int64_t i, int tid)
{
    const attn_job *j = arg;
    const vt_attn_args *a = j->a;
    const int64_t kvh = a->heads / j->group, b = i / kvh, g = i % kvh;
    int64_t tk = a->tk;
    if (a->causal && j->off + 1 < tk)
        tk = j->off + 1 < 0 ? 0 : j->off + 1;
    j->fn(j->group, tk, a->dh, a->q + b * j->bs_q + g * j->group * a->dh, a->dh,
          a->k + b * j->bs_k + g * a->dh, a->ldk, a->v + b * j->bs_v + g * a->dh, a->ldv,
          a->scale, 0, a->out + b * j->bs_o + g * j->group * a->dh, a->dh,
          thread_scratch(j->e, tid));
}

void vt_op_attention_ex(const vt_exec *e, const vt_attn_args *a)
{
    if (a->batch <= 0 || a->heads <= 0 || a->tq <= 0)
        return;
    const int64_t kvh = a->kv_heads > 0 ? a->kv_heads : a->heads;
    /* invariants: loaders refuse configs whose heads are not a multiple of the
     * K/V heads; q_pos comes from the caller's own position counter */
    assert(a->heads % kvh == 0);
    assert(a->causal != VT_ATTN_CAUSAL_POS || a->q_pos >= 0);
    attn_job j = {.e = e, .a = a, .fn = e->k->attn_f32,
                  .group = a->heads / kvh,
                  .off = a->causal == VT_ATTN_CAUSAL_POS ? a->q_pos : a->tk - a->tq,
                  .bs_q = a->bs_q ? a->bs_q : a->tq * a->ldq,
                  .bs_k = a->bs_k ? a->bs_k : a->tk * a->ldk,
                  .bs_v = a->bs_v ? a->bs_v : a->tk * a->ldv,
                  .bs_o = a->bs_o ? a->bs_o : a->tq * a->ldo};
    /* The ISA kernels' scratch grows with dh (the reference needs none). */
    if (a->dh > VT_ATTN_MAX_DH || VT_ATTN_SCRATCH_FLOATS(a->dh) > e->scratch_stride)
        j.fn = vt_kernels_ref()->attn_f32;
    else if (a->lowp && e->k->attn_bf16)
        j.fn = e->k->attn_bf16;
    if (a->tq == 1 && j.group > 1) {
        vt_pool_run(e->pool, attn_decode_task, &j, a->batch * kvh);
        return;
    }
    /* Aim at >= 4 tasks per thread so uneven (causal) blocks balance. */
    const int64_t bh = a->batch * a->heads, want = 4 * (int64_t)vt_pool_size(e->pool);
    int64_t split = bh >= want ? 1 : (want + bh - 1) / bh;
    j.qb = (a->tq + split - 1) / split;
    j.qb = (j.qb + VT_ATTN_BQ - 1) / VT_ATTN_BQ * VT_ATTN_BQ;
    j.n_qblk = (a->tq + j.qb - 1) / j.qb;
    vt_pool_run(e->pool, attn_task, &j, bh * j.n_qblk);
}

void vt_op_attention(const vt_exec *e, int64_t batch, int64_t T, int64_t heads, int64_t dh,
                     const float *q, const float *k, const float *v, int64_t ld, float scale,
                     float *out)
{
    vt_attn_args a = {.batch = batch, .heads = heads, .tq = T, .tk = T, .dh = dh,
                      .q = q, .k = k, .v = v, .ldq = ld, .ldk = ld, .ldv = ld,
                      .out = out, .ldo = heads * dh, .scale = scale};
    vt_op_attention_ex(e, &a);
}

/* ---- element-wise ops of the LLM runtime ---- */

typedef struct {
    const vt_exec *e;
    const float   *x, *w;
    float         *y;  /* add, scale, rmsnorm: out; rope: rows rotated in place */
    int64_t        n, M, heads, dh, ldx;
    float          a, eps, theta;
    const int64_t *pos;
    const float   *inv_freq; /* rope_freq: per-pair inverse frequencies ... */
    float          cs_scale; /* ... and the cos/sin factor (attention_scaling) */
} elt_job;

#define ELT_CHUNK 16384 /* floats per task of add / scale: 64 KiB, L2-sized */

static void add_task(void *arg, int64_t i, int tid)
{
    const elt_job *j = arg;
    (void)tid;
    const int64_t n = j->n - i * ELT_CHUNK < ELT_CHUNK ? j->n - i * ELT_CHUNK : ELT_CHUNK;
    j->e->k->add_f32(n, j->x + i * ELT_CHUNK, j->y + i * ELT_CHUNK);
}

void vt_op_add(const vt_exec *e, int64_t n, const float *x, float *y)
{
    if (n <= 0)
        return;
    elt_job j = {.e = e, .x = x, .y = y, .n = n};
    vt_pool_run(e->pool, add_task, &j, (n + ELT_CHUNK - 1) / ELT_CHUNK);
}

static void scale_task(void *arg, int64_t i, int tid)
{
    const elt_job *j = arg;
    (void)tid;
    const int64_t n = j->n - i * ELT_CHUNK < ELT_CHUNK ? j->n - i * ELT_CHUNK : ELT_CHUNK;
    j->e->k->scale_f32(n, j->a, j->x + i * ELT_CHUNK, j->y + i * ELT_CHUNK);
}

void vt_op_scale(const vt_exec *e, int64_t n, float a, const float *x, float *y)
{
    if (n <= 0)
        return;
    elt_job j = {.e = e, .x = x, .y = y, .n = n, .a = a};
    vt_pool_run(e->pool, scale_task, &j, (n + ELT_CHUNK - 1) / ELT_CHUNK);
}

static void rmsnorm_task(void *arg, int64_t i, int tid)
{
    const elt_job *j = arg;
    (void)tid;
    const int64_t r1 = (i + 1) * NORM_ROWS < j->M ? (i + 1) * NORM_ROWS : j->M;
    for (int64_t r = i * NORM_ROWS; r < r1; r++)
        j->e->k->rmsnorm_f32(j->n, j->x + r * j->n, j->w, j->eps, j->y + r * j->n);
}

void vt_op_rmsnorm(const vt_exec *e, int64_t M, int64_t n, const float *x, const float *w,
                   float eps, float *y)
{
    if (M <= 0 || n <= 0)
        return;
    elt_job j = {.e = e, .x = x, .w = w, .y = y, .n = n, .M = M, .eps = eps};
    vt_pool_run(e->pool, rmsnorm_task, &j, (M + NORM_ROWS - 1) / NORM_ROWS);
}

/* Angles once per row (dh/2 cos + sin in the thread's scratch), applied to
 * all of the row's heads: the trigonometry would otherwise cost more than
 * the rotation itself. */
static void rope_task(void *arg, int64_t i, int tid)
{
    const elt_job *j = arg;
    float *cs = thread_scratch(j->e, tid), *sn = cs + j->dh / 2;
    const int64_t r1 = (i + 1) * NORM_ROWS < j->M ? (i + 1) * NORM_ROWS : j->M;
    for (int64_t r = i * NORM_ROWS; r < r1; r++) {
        if (r == i * NORM_ROWS || j->pos[r] != j->pos[r - 1]) {
            if (j->inv_freq)
                vt_rope_angles_freq(j->dh, j->pos[r], j->inv_freq, j->cs_scale, cs, sn);
            else
                vt_rope_angles(j->dh, j->pos[r], j->theta, cs, sn);
        }
        j->e->k->rope_f32(j->heads, j->dh, j->y + r * j->ldx, j->dh, cs, sn);
    }
}

void vt_op_rope(const vt_exec *e, int64_t M, int64_t heads, int64_t dh, float *x, int64_t ldx,
                const int64_t *pos, float theta)
{
    /* invariant: loaders refuse odd head sizes; scratch is planned per head */
    assert(dh % 2 == 0 && dh <= e->scratch_stride);
    if (M <= 0 || heads <= 0 || dh <= 0)
        return;
    elt_job j = {.e = e, .y = x, .M = M, .heads = heads, .dh = dh,
                 .ldx = ldx ? ldx : heads * dh, .pos = pos, .theta = theta};
    vt_pool_run(e->pool, rope_task, &j, (M + NORM_ROWS - 1) / NORM_ROWS);
}

void vt_op_rope_freq(const vt_exec *e, int64_t M, int64_t heads, int64_t dh, float *x,
                     int64_t ldx, const int64_t *pos, const float *inv_freq, float cs_scale)
{
    assert(dh % 2 == 0 && dh <= e->scratch_stride);
    if (M <= 0 || heads <= 0 || dh <= 0)
        return;
    elt_job j = {.e = e, .y = x, .M = M, .heads = heads, .dh = dh,
                 .ldx = ldx ? ldx : heads * dh, .pos = pos, .inv_freq = inv_freq,
                 .cs_scale = cs_scale};
    vt_pool_run(e->pool, rope_task, &j, (M + NORM_ROWS - 1) / NORM_ROWS);
}

/* ---- names ---- */

static const struct { const char *name; vt_act act; } act_names[] = {
    {"gelu", VT_ACT_GELU_ERF},           {"gelu_python", VT_ACT_GELU_ERF},
    {"gelu_pytorch_tanh", VT_ACT_GELU_TANH}, {"gelu_new", VT_ACT_GELU_TANH},
    {"gelu_fast", VT_ACT_GELU_TANH},     {"quick_gelu", VT_ACT_QUICK_GELU},
    {"silu", VT_ACT_SILU},               {"swish", VT_ACT_SILU},
    {"relu", VT_ACT_RELU},               {"tanh", VT_ACT_TANH},
};

int vt_act_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof act_names / sizeof act_names[0]; i++)
        if (strcmp(name, act_names[i].name) == 0)
            return (int)act_names[i].act;
    return -1;
}

const char *vt_act_name(vt_act a)
{
    for (size_t i = 0; i < sizeof act_names / sizeof act_names[0]; i++)
        if (act_names[i].act == a)
            return act_names[i].name;
    return "none";
}
