/*
 * ops.c - threaded ops: split into chunks, run kernels on the context pool.
 *
 * Chunk sizes are chosen so that a 2-16 thread pool has several chunks per
 * thread (the atomic counter balances them) while each chunk is big enough
 * to amortise B-panel packing in the GEMM.
 */
#include "ops.h"

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

/* ---- linear ---- */

typedef struct {
    const vt_exec   *e;
    const vt_linear *l;
    const float     *x;
    float           *y;
    int64_t          M, ldx, ldy, mb, nb, n_mblk;
    int              packed;  /* l->packed is in e->k's layout */
} linear_job;

static void linear_task(void *arg, int64_t i, int tid)
{
    const linear_job *j = arg;
    const vt_linear *l = j->l;
    int64_t m0 = (i % j->n_mblk) * j->mb, n0 = (i / j->n_mblk) * j->nb;
    int64_t m = j->M - m0 < j->mb ? j->M - m0 : j->mb;
    int64_t n = l->n_out - n0 < j->nb ? l->n_out - n0 : j->nb;
    const float *b = l->b ? l->b + n0 : NULL;
    if (j->packed)
        j->e->k->gemm_f32_packed(m, l->n_out, l->n_in, n0, n, j->x + m0 * j->ldx, j->ldx,
                                 l->packed, b, j->y + m0 * j->ldy + n0, j->ldy, 0,
                                 thread_scratch(j->e, tid));
    else
        j->e->k->gemm_f32(m, n, l->n_in, j->x + m0 * j->ldx, j->ldx, l->w + n0 * l->n_in,
                          l->n_in, 1, b, j->y + m0 * j->ldy + n0, j->ldy, 0,
                          thread_scratch(j->e, tid));
}

void vt_op_linear(const vt_exec *e, int64_t M, const float *x, int64_t ldx, const vt_linear *l,
                  float *y, int64_t ldy)
{
    if (M <= 0 || l->n_out <= 0)
        return;
    linear_job j = {.e = e, .l = l, .x = x, .y = y, .M = M,
                    .ldx = ldx ? ldx : l->n_in, .ldy = ldy ? ldy : l->n_out,
                    .packed = l->packed && l->packed_by == e->k};
    int nt = vt_pool_size(e->pool);
    j.mb = M <= 512 ? M : 256;
    j.n_mblk = (M + j.mb - 1) / j.mb;
    /* Column chunks of ~256 (each packs its slice of W once, unless W was
     * packed at load), as many per thread. Chunks start on multiples of
     * VT_GEMM_PANEL_ALIGN, where prepacked panels start. */
    int64_t per = nt * j.n_mblk;
    int64_t m = (l->n_out + 256 * per - 1) / (256 * per);
    j.nb = (l->n_out + per * m - 1) / (per * m);
    j.nb = (j.nb + VT_GEMM_PANEL_ALIGN - 1) / VT_GEMM_PANEL_ALIGN * VT_GEMM_PANEL_ALIGN;
    int64_t n_nblk = (l->n_out + j.nb - 1) / j.nb;
    vt_pool_run(e->pool, linear_task, &j, j.n_mblk * n_nblk);
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

void vt_op_act(const vt_exec *e, vt_act act, int64_t n, float *x)
{
    act_job j = {.x = x, .n = n};
    switch (act) {
    case VT_ACT_GELU_ERF:   j.fn = e->k->gelu_erf_f32; break;
    case VT_ACT_GELU_TANH:  j.fn = e->k->gelu_tanh_f32; break;
    case VT_ACT_QUICK_GELU: j.fn = e->k->quick_gelu_f32; break;
    case VT_ACT_SILU:       j.fn = e->k->silu_f32; break;
    case VT_ACT_TANH:       j.fn = e->k->tanh_f32; break;
    case VT_ACT_RELU:       j.fn = relu_f32; break;
    case VT_ACT_NONE:       return;
    }
    vt_pool_run(e->pool, act_task, &j, (n + ACT_CHUNK - 1) / ACT_CHUNK);
}

/* ---- attention ---- */

/*
 * One task per (item, head, query block). The kernel (kernels.h, attn_f32)
 * runs one (item, head) on a query range; when batch * heads alone would
 * leave threads idle (batch 1 of a 12-head ViT on 16 threads), the queries
 * are split into blocks of a multiple of VT_ATTN_BQ rows. A query block
 * [q0, q0 + nq) of a causal call is itself causal over the first
 * q0 + nq + (tk - tq) keys: query q0 + i sees key j iff
 * j <= i + (q0 + nq + tk - tq) - nq, the kernel's rule for that key count.
 */
typedef struct {
    const vt_exec      *e;
    const vt_attn_args *a;
    vt_attn_f32_fn      fn;
    int64_t             bs_q, bs_k, bs_v, bs_o, qb, n_qblk;
} attn_job;

static void attn_task(void *arg, int64_t i, int tid)
{
    const attn_job *j = arg;
    const vt_attn_args *a = j->a;
    const int64_t bh = i / j->n_qblk, q0 = (i % j->n_qblk) * j->qb;
    const int64_t b = bh / a->heads, h = bh % a->heads;
    const int64_t nq = a->tq - q0 < j->qb ? a->tq - q0 : j->qb;
    int64_t tk = a->tk;
    if (a->causal) {
        tk = q0 + nq + (a->tk - a->tq);
        tk = tk < 0 ? 0 : tk > a->tk ? a->tk : tk;
    }
    j->fn(nq, tk, a->dh, a->q + b * j->bs_q + q0 * a->ldq + h * a->dh, a->ldq,
          a->k + b * j->bs_k + h * a->dh, a->ldk, a->v + b * j->bs_v + h * a->dh, a->ldv,
          a->scale, a->causal, a->out + b * j->bs_o + q0 * a->ldo + h * a->dh, a->ldo,
          thread_scratch(j->e, tid));
}

void vt_op_attention_ex(const vt_exec *e, const vt_attn_args *a)
{
    if (a->batch <= 0 || a->heads <= 0 || a->tq <= 0)
        return;
    attn_job j = {.e = e, .a = a, .fn = e->k->attn_f32,
                  .bs_q = a->bs_q ? a->bs_q : a->tq * a->ldq,
                  .bs_k = a->bs_k ? a->bs_k : a->tk * a->ldk,
                  .bs_v = a->bs_v ? a->bs_v : a->tk * a->ldv,
                  .bs_o = a->bs_o ? a->bs_o : a->tq * a->ldo};
    /* The ISA kernels' scratch grows with dh (the reference needs none). */
    if (a->dh > VT_ATTN_MAX_DH || VT_ATTN_SCRATCH_FLOATS(a->dh) > e->scratch_stride)
        j.fn = vt_kernels_ref()->attn_f32;
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
