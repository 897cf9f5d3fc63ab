/*
 * mov_adapter.c - MoVA's MoV-Adapter (mov_adapter.h).
 *
 * Rounding vs the original: the 2-D RoPE tables are computed as
 * VisionRotaryEmbeddingFast does in float32 (t = arange(R) / R * R, so not
 * exact integers; frequencies 1 / 10000^(2k / 32)), then cos / sin; the
 * gate's mask is added to the float32 logits before the softmax (an expert
 * masked out gets exp(-1e6) = 0); the expert sum runs in expert order.
 */
#include "mov_adapter.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HD 64 /* the RoPE table fixes the head width (builder.py: dim=64//2) */

/* A tensor name with one or two indices, into the char array b. */
#define NM1(b, fmt, i) (snprintf(b, sizeof b, fmt, (long long)(i)), b)
#define NM(b, fmt, i, j) (snprintf(b, sizeof b, fmt, (long long)(i), (long long)(j)), b)

static void load_attn(vt_loader *ld, vt_mov_attn *a, const char *base, int64_t d, int64_t vdim,
                      float eps)
{
    char b[160];
    snprintf(b, sizeof b, "%sq_proj", base);
    vt_get_linear(ld, &a->q, b, d, d, 0);
    snprintf(b, sizeof b, "%sk_proj", base);
    vt_get_linear(ld, &a->k, b, d, vdim, 0);
    snprintf(b, sizeof b, "%sv_proj", base);
    vt_get_linear(ld, &a->v, b, d, vdim, 0);
    snprintf(b, sizeof b, "%sinner_attn_ln", base);
    vt_get_norm(ld, &a->inner_ln, b, d, eps);
    snprintf(b, sizeof b, "%sproj", base);
    vt_get_linear(ld, &a->proj, b, d, d, 1);
}

static void load_reg(vt_loader *ld, vt_mov_reg *r, int i, int64_t d, float eps)
{
    char b[160];
    int64_t se = 0;
    const float *w;
#define REG(name) NM1(b, "downsample.%lld.b1." name, i)
    if ((w = vt_get(ld, REG("conv1.conv.weight"), 4, d, d, 1, 1)))
        r->conv1 = (vt_linear){.w = w, .n_out = d, .n_in = d};
    r->conv2 = vt_get(ld, REG("conv2.conv.weight"), 4, d, 1, 3, 3);
    if ((w = vt_get(ld, REG("conv3.conv.weight"), 4, d, d, 1, 1)))
        r->conv3 = (vt_linear){.w = w, .n_out = d, .n_in = d};
    vt_get_norm(ld, &r->n1, REG("conv1.bn"), d, eps);
    vt_get_norm(ld, &r->n2, REG("conv2.bn"), d, eps);
    vt_get_norm(ld, &r->n3, REG("conv3.bn"), d, eps);
    int64_t s1[4] = {-1, d, 1, 1};
    if ((w = vt_get_shape(ld, REG("se.fc1.weight"), 4, s1)))
        se = s1[0];
    r->fc1 = (vt_linear){.w = w, .b = vt_get(ld, REG("se.fc1.bias"), 1, se, 0, 0, 0),
                         .n_out = se, .n_in = d};
    r->fc2 = (vt_linear){.w = vt_get(ld, REG("se.fc2.weight"), 4, d, se, 1, 1),
                         .b = vt_get(ld, REG("se.fc2.bias"), 1, d, 0, 0, 0), .n_out = d,
                         .n_in = se};
#undef REG
}

/* VisionRotaryEmbeddingFast(dim=32, pt_seq_len=R, ft_seq_len=R): [R^2, 64]. */
static int build_rope(vt_mov_adapter *a, vt_loader *ld)
{
    const int64_t R = a->res;
    a->rope_cos = vt_loader_alloc(ld, R * R * HD);
    a->rope_sin = vt_loader_alloc(ld, R * R * HD);
    if (!a->rope_cos || !a->rope_sin)
        return ld->err;
    float f[16];
    for (int k = 0; k < 16; k++) /* 1 / (theta ** (arange(0, 32, 2).float() / 32)) */
        f[k] = 1.0f / (float)pow(10000.0, (double)((float)(2 * k) / 32.0f));
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < R; j++) {
            const float ti = (float)i / (float)R * (float)R, tj = (float)j / (float)R * (float)R;
            float *c = a->rope_cos + (i * R + j) * HD, *s = a->rope_sin + (i * R + j) * HD;
            for (int k = 0; k < 16; k++)
                for (int r = 0; r < 2; r++) {
                    const float ar = ti * f[k], ac = tj * f[k];
                    c[2 * k + r] = (float)cos((double)ar);
                    s[2 * k + r] = (float)sin((double)ar);
                    c[32 + 2 * k + r] = (float)cos((double)ac);
                    s[32 + 2 * k + r] = (float)sin((double)ac);
                }
        }
    return 0;
}

int vt_mov_adapter_load(vt_mov_adapter *a, vt_loader *ld, const char *base, const cJSON *cfg,
                        const char *where)
{
    static const char *const keys[] = {"topk_experts", "eps", NULL};
    memset(a, 0, sizeof *a);
    vtok_status *st = ld->st;
    double eps;
    int rc;
    if ((rc = vt_opt_check_keys(cfg, keys, where, st)) ||
        (rc = vt_opt_int(cfg, "topk_experts", 3, &a->topk, where, st)) ||
        (rc = vt_opt_float(cfg, "eps", 1e-5, &eps, where, st)))
        return rc;
    const char *saved = vt_loader_base(ld, base);
    for (char b[64]; a->n_blocks < 64 && vt_find(ld, NM1(b, "blocks.%lld.norm3.weight",
                                                           a->n_blocks));)
        a->n_blocks++; /* num_projector_layers: as many as the weights hold */
    if (!a->n_blocks) {
        vt_loader_base(ld, saved);
        return vt_loader_fail(ld, VTOK_EMISSING, "%s: no adapter blocks (blocks.0.norm3.weight)",
                              where);
    }
    int64_t ps[3] = {1, -1, -1};
    a->pos = vt_get_shape(ld, "pos_embed", 3, ps);
    const int64_t R = a->pos ? vt_square_side(ps[1]) : 0;
    if (!a->pos || R * R != ps[1] || R % 2 || ps[2] % HD) {
        vt_loader_base(ld, saved);
        return ld->err ? ld->err : vt_loader_fail(ld, VTOK_ESHAPE, "%s: pos_embed must be "
                                                  "[1, R^2, d] with R even and d a multiple of "
                                                  "64", where);
    }
    const int64_t d = ps[2];
    a->d = d;
    a->res = R;
    /* the experts: every cross_attn.E.k_proj of block 0, in order */
    for (int64_t e = 0; e < VT_MOV_MAX_EXPERTS; e++) {
        char b[160];
        const vt_st_tensor *t = vt_find(ld, NM1(b, "blocks.0.cross_attn.%lld.k_proj.weight", e));
        if (!t || t->n_dims != 2)
            break;
        a->ch[e] = t->shape[1];
        a->n_exp = e + 1;
    }
    if (!a->n_exp || a->topk < 1 || a->topk > a->n_exp) {
        vt_loader_base(ld, saved);
        return vt_loader_fail(ld, a->n_exp ? VTOK_EFORMAT : VTOK_EMISSING,
                              "%s: %lld experts (blocks.0.cross_attn.N.k_proj) and topk_experts "
                              "%lld", where, (long long)a->n_exp, (long long)a->topk);
    }
    if (!(a->blocks = calloc((size_t)a->n_blocks, sizeof *a->blocks))) {
        vt_loader_base(ld, saved);
        return vt_loader_fail(ld, VTOK_ENOMEM, "out of memory");
    }
    const float ep = (float)eps;
    for (int64_t i = 0; i < a->n_blocks; i++) {
        vt_mov_block *B = &a->blocks[i];
        char b[160];
        for (int64_t e = 0; e < a->n_exp; e++) {
            load_attn(ld, &B->cross[e], NM(b, "blocks.%lld.cross_attn.%lld.", i, e), d,
                      a->ch[e], ep);
            vt_get_norm(ld, &B->norm1[e], NM(b, "blocks.%lld.norm1.%lld", i, e), d, ep);
            vt_get_norm(ld, &B->norm2[e], NM(b, "blocks.%lld.norm2.%lld", i, e),
                        a->ch[e], ep);
        }
        load_attn(ld, &B->self, NM1(b, "blocks.%lld.self_attn.", i), d, d, ep);
        vt_get_norm(ld, &B->norm3, NM1(b, "blocks.%lld.norm3", i), d, ep);
        vt_get_norm(ld, &B->norm4, NM1(b, "blocks.%lld.norm4", i), d, ep);
        vt_get_linear(ld, &B->w1, NM1(b, "blocks.%lld.mlp.w1", i), -1, d, 1);
        a->d_ff = B->w1.n_out;
        vt_get_linear(ld, &B->w2, NM1(b, "blocks.%lld.mlp.w2", i), a->d_ff, d, 1);
        vt_get_norm(ld, &B->ffn_ln, NM1(b, "blocks.%lld.mlp.ffn_ln", i), a->d_ff, ep);
        vt_get_linear(ld, &B->w3, NM1(b, "blocks.%lld.mlp.w3", i), d, a->d_ff, 1);
        vt_get_linear(ld, &B->gate0, NM1(b, "blocks.%lld.gate.0", i), d, -1, 1);
        a->d_text = B->gate0.n_in - d;
        vt_get_linear(ld, &B->gate2, NM1(b, "blocks.%lld.gate.2", i), a->n_exp, d, 1);
    }
    for (int i = 0; i < 2; i++)
        load_reg(ld, &a->reg[i], 2 * i, d, ep);
    if (!ld->err && !ld->n_missing && a->d_text < 1)
        vt_loader_fail(ld, VTOK_ESHAPE, "%s: the gate takes %lld inputs, not more than the "
                       "width %lld", where, (long long)(a->d_text + d), (long long)d);
    if (!ld->err)
        build_rope(a, ld);
    vt_loader_base(ld, saved);
    if (ld->err)
        return ld->err;
    char mbase[160]; /* mlp.0 / mlp.2 beside the blocks */
    snprintf(mbase, sizeof mbase, "%smlp.", base ? base : "");
    return vt_mlp_load(&a->mlp, ld, mbase, NULL, d, where);
}

void vt_mov_adapter_free(vt_mov_adapter *a)
{
    if (!a)
        return;
    free(a->blocks);
    vt_mlp_free(&a->mlp);
    memset(a, 0, sizeof *a);
}

int64_t vt_mov_adapter_linears(vt_mov_adapter *a, vt_linear **out)
{
    int64_t n = 0;
#define ADD(l) do { if (out) out[n] = (l); n++; } while (0)
    for (int64_t i = 0; i < a->n_blocks; i++) {
        vt_mov_block *B = &a->blocks[i];
        for (int64_t e = 0; e <= a->n_exp; e++) {
            vt_mov_attn *t = e < a->n_exp ? &B->cross[e] : &B->self;
            ADD(&t->q);
            ADD(&t->k);
            ADD(&t->v);
            ADD(&t->proj);
        }
        ADD(&B->w1);
        ADD(&B->w2);
        ADD(&B->w3);
    }
    for (int i = 0; i < 2; i++) {
        ADD(&a->reg[i].conv1);
        ADD(&a->reg[i].conv3);
    }
#undef ADD
    return n + vt_mlp_linears(&a->mlp, out ? out + n : NULL);
}

/* ---- forward ---- */

typedef struct {
    float *x, *h, *kv, *q, *k, *v, *att, *acc, *y, *ff1, *ff2, *map, *map2;
} mv_buffers;

static int64_t layout(const vt_mov_adapter *a, float *base, mv_buffers *b)
{
    const int64_t N = a->res * a->res, d = a->d;
    int64_t cmax = d;
    for (int64_t e = 0; e < a->n_exp; e++)
        cmax = a->ch[e] > cmax ? a->ch[e] : cmax;
    const int64_t mlp = vt_mlp_work_floats(&a->mlp, 1, N / 4);
    int64_t sizes[13] = {N * d, N * d, N * cmax, N * d, N * d, N * d, N * d, N * d, N * d,
                         N * a->d_ff, N * a->d_ff, N * d, mlp > N * d ? mlp : N * d};
    float **dst[13] = {&b->x, &b->h, &b->kv, &b->q, &b->k, &b->v, &b->att, &b->acc, &b->y,
                       &b->ff1, &b->ff2, &b->map, &b->map2};
    int64_t off = 0;
    for (int i = 0; i < 13; i++) {
        if (base)
            *dst[i] = base + off;
        off = vt_szadd(off, vt_szr16(sizes[i]));
    }
    return off;
}

int64_t vt_mov_adapter_work_floats(const vt_mov_adapter *a)
{
    mv_buffers b;
    return layout(a, NULL, &b);
}

int64_t vt_mov_adapter_max_tokens(const vt_mov_adapter *a)
{
    return a->res * a->res;
}

/* q or k rows [N, d] in place: each 64-wide head rotated by its token's table row. */
static void rope(const vt_mov_adapter *a, float *x)
{
    const int64_t N = a->res * a->res, d = a->d;
    for (int64_t p = 0; p < N; p++) {
        const float *c = a->rope_cos + p * HD, *s = a->rope_sin + p * HD;
        for (int64_t h = 0; h < d; h += HD) {
            float *v = x + p * d + h;
            for (int m = 0; m < HD; m += 2) {
                const float x0 = v[m], x1 = v[m + 1];
                v[m] = x0 * c[m] + -x1 * s[m];
                v[m + 1] = x1 * c[m + 1] + x0 * s[m + 1];
            }
        }
    }
}

/* Attention(q_in [N, d], kv_in [N, vdim]) into out [N, d] (b->q, k, v, att used). */
static void attention(const vt_mov_adapter *a, const vt_exec *e, const vt_mov_attn *t,
                      const float *q_in, const float *kv_in, float *out, mv_buffers *b)
{
    const int64_t N = a->res * a->res, d = a->d;
    vt_op_linear(e, N, q_in, 0, &t->q, b->q, 0);
    vt_op_linear(e, N, kv_in, 0, &t->k, b->k, 0);
    vt_op_linear(e, N, kv_in, 0, &t->v, b->v, 0);
    rope(a, b->q);
    rope(a, b->k);
    vt_attn_args at = {.batch = 1, .heads = d / HD, .tq = N, .tk = N, .dh = HD, .q = b->q,
                       .k = b->k, .v = b->v, .ldq = d, .ldk = d, .ldv = d, .out = b->att,
                       .ldo = d, .scale = 0.125f};
    vt_op_attention_ex(e, &at);
    vt_op_layernorm(e, N, d, b->att, &t->inner_ln, b->att);
    vt_op_linear(e, N, b->att, 0, &t->proj, out, 0);
}

/* The gate's weights over the experts: softmax(logits + mask), its top-k kept, renormalised. */
/*
 * torch.topk(largest=True) on the CPU, ties included. torch 1.13's kernel
 * (aten/src/ATen/native/TopKImpl.h, topk_impl_loop) fills (value, index)
 * pairs and, unless k * 64 <= n, calls std::nth_element(begin, begin + k -
 * 1, end, comp) and then std::sort(begin, begin + k - 1, comp) with comp(x,
 * y) = (isnan(x) && !isnan(y)) || x > y; equal values end up wherever
 * libstdc++'s introselect leaves them (a 4-way tie at k = 1 keeps index 2).
 * The steps below are those algorithms' (bits/stl_algo.h: __introselect
 * with median-of-three pivots and __unguarded_partition, insertion sort
 * below 4 elements; __introsort_loop / __final_insertion_sort), for the
 * small n here (<= 8: each pass drops at least one element, so the depth
 * limit 2 log2(n) and its heap fallback are never reached). Checked against
 * torch.topk on 20000 tie-heavy vectors (tests/blocks/mova_parity.py).
 */
typedef struct {
    float v;
    int   i;
} tk_pair;

static int tk_before(tk_pair x, tk_pair y)
{
    return (isnan(x.v) && !isnan(y.v)) || x.v > y.v;
}

static void tk_swap(tk_pair *a, tk_pair *b)
{
    tk_pair t = *a;
    *a = *b;
    *b = t;
}

static void tk_median_to_first(tk_pair *q, int r, int a, int b, int c)
{
    if (tk_before(q[a], q[b])) {
        if (tk_before(q[b], q[c]))
            tk_swap(&q[r], &q[b]);
        else if (tk_before(q[a], q[c]))
            tk_swap(&q[r], &q[c]);
        else
            tk_swap(&q[r], &q[a]);
    } else if (tk_before(q[a], q[c])) {
        tk_swap(&q[r], &q[a]);
    } else if (tk_before(q[b], q[c])) {
        tk_swap(&q[r], &q[c]);
    } else {
        tk_swap(&q[r], &q[b]);
    }
}

static int tk_partition(tk_pair *q, int first, int last, int pivot)
{
    for (;;) {
        while (tk_before(q[first], q[pivot]))
            first++;
        last--;
        while (tk_before(q[pivot], q[last]))
            last--;
        if (!(first < last))
            return first;
        tk_swap(&q[first], &q[last]);
        first++;
    }
}

static void tk_insertion_sort(tk_pair *q, int first, int last)
{
    for (int i = first + 1; i < last; i++) {
        tk_pair val = q[i];
        if (tk_before(val, q[first])) {
            for (int j = i; j > first; j--)
                q[j] = q[j - 1];
            q[first] = val;
        } else {
            int j = i;
            while (tk_before(val, q[j - 1])) {
                q[j] = q[j - 1];
                j--;
            }
            q[j] = val;
        }
    }
}

static int tk_pivot_cut(tk_pair *q, int first, int last)
{
    const int mid = first + (last - first) / 2;
    tk_median_to_first(q, first, first + 1, mid, last - 1);
    return tk_partition(q, first + 1, last, first);
}

int64_t vt_mov_topk(const float *p, int64_t n, int64_t k, int *sel)
{
    tk_pair q[VT_MOV_MAX_EXPERTS];
    if (n < 1 || n > VT_MOV_MAX_EXPERTS || k < 1 || k > n)
        return 0;
    for (int i = 0; i < (int)n; i++)
        q[i] = (tk_pair){p[i], i};
    /* std::nth_element(q, q + k - 1, q + n) */
    int first = 0, last = (int)n;
    const int nth = (int)k - 1;
    while (last - first > 3) {
        const int cut = tk_pivot_cut(q, first, last);
        if (cut <= nth)
            first = cut;
        else
            last = cut;
    }
    tk_insertion_sort(q, first, last);
    /* std::sort(q, q + k - 1): at most 7 elements, one insertion sort */
    tk_insertion_sort(q, 0, nth);
    for (int i = 0; i < (int)k; i++)
        sel[i] = q[i].i;
    return k;
}

static void gate(const vt_mov_adapter *a, const vt_exec *e, const vt_mov_block *B,
                 const float *x, const float *text, const float *routing, float *p, float *tmp)
{
    const int64_t N = a->res * a->res, d = a->d, E = a->n_exp;
    float *in = tmp, *hid = tmp + a->d_text + d, logit[VT_MOV_MAX_EXPERTS];
    memcpy(in, text, (size_t)a->d_text * sizeof(float)); /* cat([text_feat, x.mean(1)]) */
    for (int64_t c = 0; c < d; c++)
        in[a->d_text + c] = 0;
    for (int64_t r = 0; r < N; r++)
        for (int64_t c = 0; c < d; c++)
            in[a->d_text + c] += x[r * d + c];
    for (int64_t c = 0; c < d; c++)
        in[a->d_text + c] /= (float)N;
    vt_op_linear(e, 1, in, 0, &B->gate0, hid, 0);
    vt_op_act(e, VT_ACT_GELU_ERF, d, hid);
    vt_op_linear(e, 1, hid, 0, &B->gate2, logit, 0);
    float mx = -INFINITY, sum = 0;
    for (int64_t k = 0; k < E; k++) {
        const float r = routing ? routing[k] : 0.0f;
        logit[k] += (1.0f - r) * -1e6f;
        mx = logit[k] > mx ? logit[k] : mx;
    }
    for (int64_t k = 0; k < E; k++)
        sum += (p[k] = expf(logit[k] - mx));
    for (int64_t k = 0; k < E; k++)
        p[k] /= sum;
    /* torch.topk(p, k), ties resolved as its CPU kernel resolves them */
    int keep[VT_MOV_MAX_EXPERTS] = {0}, sel[VT_MOV_MAX_EXPERTS];
    const int64_t kk = vt_mov_topk(p, E, a->topk < E ? a->topk : E, sel);
    for (int64_t n = 0; n < kk; n++)
        keep[sel[n]] = 1;
    float z = 0;
    for (int64_t k = 0; k < E; k++)
        z += (p[k] = keep[k] ? p[k] : 0.0f);
    for (int64_t k = 0; k < E; k++)
        p[k] /= z;
}

/* One RegStage bottleneck on a C-last map [H * W, C] in place (y, t scratch). */
static void regstage(const vt_mov_adapter *a, const vt_exec *e, const vt_mov_reg *r, int64_t H,
                     int64_t W, float *x, float *y, float *t)
{
    const int64_t C = a->d, N = H * W;
    vt_op_linear(e, N, x, 0, &r->conv1, y, 0);
    vt_op_layernorm(e, N, C, y, &r->n1, y);
    vt_op_act(e, VT_ACT_SILU, N * C, y);
    for (int64_t i = 0; i < H; i++) /* depthwise 3x3, zero padding 1 */
        for (int64_t j = 0; j < W; j++)
            for (int64_t c = 0; c < C; c++) {
                float acc = 0;
                for (int64_t di = 0; di < 3; di++)
                    for (int64_t dj = 0; dj < 3; dj++) {
                        const int64_t ii = i + di - 1, jj = j + dj - 1;
                        if (ii >= 0 && ii < H && jj >= 0 && jj < W)
                            acc += r->conv2[c * 9 + di * 3 + dj] * y[(ii * W + jj) * C + c];
                    }
                t[(i * W + j) * C + c] = acc;
            }
    vt_op_layernorm(e, N, C, t, &r->n2, t);
    vt_op_act(e, VT_ACT_SILU, N * C, t);
    float *m = y, *se = y + C; /* squeeze-excitation: mean over the map, two 1x1 convs */
    for (int64_t c = 0; c < C; c++)
        m[c] = 0;
    for (int64_t p = 0; p < N; p++)
        for (int64_t c = 0; c < C; c++)
            m[c] += t[p * C + c];
    for (int64_t c = 0; c < C; c++)
        m[c] /= (float)N;
    vt_op_linear(e, 1, m, 0, &r->fc1, se, 0);
    vt_op_act(e, VT_ACT_SILU, r->fc1.n_out, se);
    vt_op_linear(e, 1, se, 0, &r->fc2, m, 0);
    for (int64_t c = 0; c < C; c++)
        m[c] = 1.0f / (1.0f + expf(-m[c]));
    for (int64_t p = 0; p < N; p++)
        for (int64_t c = 0; c < C; c++)
            t[p * C + c] *= m[c];
    vt_op_linear(e, N, t, 0, &r->conv3, y, 0);
    vt_op_layernorm(e, N, C, y, &r->n3, y);
    for (int64_t i = 0; i < N * C; i++)
        x[i] += y[i];
}

void vt_mov_adapter_forward(const vt_mov_adapter *a, const vt_exec *e, const float *x0,
                            const float *const *experts, const float *routing,
                            const float *text, float *out, float *work)
{
    const int64_t R = a->res, N = R * R, d = a->d, E = a->n_exp;
    mv_buffers b;
    layout(a, work, &b);
    float on = 0;
    for (int64_t k = 0; routing && k < E; k++)
        on += routing[k];
    const float bin = on > 0 ? 1.0f : 0.0f; /* routing_binary_weight */
    for (int64_t i = 0; i < N * d; i++)
        b.x[i] = x0[i] + a->pos[i];
    for (int64_t li = 0; li < a->n_blocks; li++) {
        const vt_mov_block *B = &a->blocks[li];
        float p[VT_MOV_MAX_EXPERTS];
        gate(a, e, B, b.x, text, routing, p, b.acc);
        int any = 0;
        for (int64_t k = 0; k < E; k++) {
            if (!routing || routing[k] == 0)
                continue; /* not run: its output is zero */
            vt_op_layernorm(e, N, d, b.x, &B->norm1[k], b.h);
            vt_op_layernorm(e, N, a->ch[k], experts[k], &B->norm2[k], b.kv);
            attention(a, e, &B->cross[k], b.h, b.kv, b.y, &b);
            if (!any)
                for (int64_t i = 0; i < N * d; i++)
                    b.acc[i] = 0;
            for (int64_t i = 0; i < N * d; i++)
                b.acc[i] += b.y[i] * p[k];
            any = 1;
        }
        if (any)
            for (int64_t i = 0; i < N * d; i++)
                b.x[i] += b.acc[i] * bin;
        vt_op_layernorm(e, N, d, b.x, &B->norm3, b.h);
        attention(a, e, &B->self, b.h, b.h, b.y, &b);
        for (int64_t i = 0; i < N * d; i++)
            b.x[i] += b.y[i];
        vt_op_layernorm(e, N, d, b.x, &B->norm4, b.h);
        vt_op_linear(e, N, b.h, 0, &B->w1, b.ff1, 0);
        vt_op_linear(e, N, b.h, 0, &B->w2, b.ff2, 0);
        vt_op_act(e, VT_ACT_SILU, N * a->d_ff, b.ff1);
        for (int64_t i = 0; i < N * a->d_ff; i++)
            b.ff1[i] *= b.ff2[i];
        vt_op_layernorm(e, N, a->d_ff, b.ff1, &B->ffn_ln, b.ff1);
        vt_op_linear(e, N, b.ff1, 0, &B->w3, b.y, 0);
        for (int64_t i = 0; i < N * d; i++)
            b.x[i] += b.y[i];
    }
    for (int64_t i = 0; i < N * d; i++) /* (x + residual) / 2, as an R x R map, C last */
        b.map[i] = (b.x[i] + x0[i]) / 2;
    regstage(a, e, &a->reg[0], R, R, b.map, b.y, b.ff1);
    const int64_t H = R / 2; /* AdaptiveAvgPool2d(R / 2): exact 2 x 2 means */
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < H; j++)
            for (int64_t c = 0; c < d; c++) {
                const float *m = b.map + c;
                const float s = m[((2 * i) * R + 2 * j) * d] + m[((2 * i) * R + 2 * j + 1) * d] +
                                m[((2 * i + 1) * R + 2 * j) * d] +
                                m[((2 * i + 1) * R + 2 * j + 1) * d];
                b.h[(i * H + j) * d + c] = s / 4;
            }
    regstage(a, e, &a->reg[1], H, H, b.h, b.y, b.ff1);
    vt_mlp_forward(&a->mlp, e, b.h, 1, H * H, out, b.map2);
}
