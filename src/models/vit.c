/*
 * vit.c - one forward pass for every ViT family described by vt_vit.
 *
 * The batch is flattened to M = n*T rows so that every linear layer is one
 * GEMM over all images (better weight reuse for short sequences such as
 * ViT-B/32's 50 tokens); attention runs per image and head. All activation
 * memory comes from `work`, sized by vt_vit_work_floats, so the forward pass
 * never allocates.
 *
 * Numerics follow transformers: LayerNorm with the family's eps, attention
 * softmax(q k^T / sqrt(dh)) v in float32, exact-erf / tanh / quick GELU as
 * configured, bicubic (A = -0.75, align_corners=False, border clamp) position
 * interpolation as torch.nn.functional.interpolate computes it, called with
 * size= or with scale_factor= (vt_vit.pos_offset, see vit.h). EVA-02's
 * 2-D RoPE and sub-LNs follow EVA-CLIP's eva_vit_model.py (as copied in
 * TencentARC/GVT visual_modules/eva.py): RoPE on q and k after the bias, CLS
 * untouched; inner_attn_ln on the concatenated heads before the output
 * projection; ffn_ln on the (gated) hidden before the last MLP Linear.
 */
#include "vit.h"

#include <math.h>
#include <string.h>

typedef struct {
    float *x, *hb, *qkv, *att, *mlp, *glu, *col, *pos, *head;
} vit_buffers;

static int64_t grid_of(const vt_vit *v, int64_t side)
{
    return side / v->patch;
}

int64_t vt_vit_tokens(const vt_vit *v, int64_t h, int64_t w, vtok_status *st)
{
    if (h < v->patch || w < v->patch) {
        vt_fail(st, VTOK_ESHAPE, "input %lldx%lld is smaller than one %lldx%lld patch",
                (long long)h, (long long)w, (long long)v->patch, (long long)v->patch);
        return 0;
    }
    if (!v->pos_interp && (h != v->image_size || w != v->image_size)) {
        vt_fail(st, VTOK_ESHAPE, "input is %lldx%lld but this model takes %lldx%lld pixels",
                (long long)h, (long long)w, (long long)v->image_size, (long long)v->image_size);
        return 0;
    }
    /* Without interpolation the position table is added as it is: its grid must
     * be the input's (a config whose image_size disagrees with the weights' table
     * would read past it; transformers refuses such a checkpoint at load). Found
     * by tests/fuzz/fuzz_model. */
    if (!v->pos_interp && v->pos && (grid_of(v, h) != v->grid_h || grid_of(v, w) != v->grid_w)) {
        vt_fail(st, VTOK_ESHAPE, "the position table is for a %lldx%lld patch grid, the input "
                "gives %lldx%lld (config image_size / patch_size disagree with the weights)",
                (long long)v->grid_h, (long long)v->grid_w, (long long)grid_of(v, h),
                (long long)grid_of(v, w));
        return 0;
    }
    if (v->rope_cos && (grid_of(v, h) != v->grid_h || grid_of(v, w) != v->grid_w)) {
        vt_fail(st, VTOK_ESHAPE, "the rotary table is for a %lldx%lld patch grid",
                (long long)v->grid_h, (long long)v->grid_w);
        return 0;
    }
    if (h > 65536 || w > 65536) {
        vt_fail(st, VTOK_ELIMIT, "input %lldx%lld exceeds 65536 pixels per side", (long long)h,
                (long long)w);
        return 0;
    }
    if (v->pos_interp && v->pos_offset > 0.0) {
        /* F.interpolate makes floor(M * s) cells from a scale_factor s (computed in
         * double, as Python does); the official code asserts that this is the grid
         * (vision_transformer.py:210). The offset keeps it so for any sane size; say
         * so clearly should rounding ever break it. */
        const int64_t g[2] = {grid_of(v, h), grid_of(v, w)}, m[2] = {v->grid_h, v->grid_w};
        for (int i = 0; i < 2; i++) {
            double s = ((double)g[i] + v->pos_offset) / (double)m[i];
            int64_t cells = (int64_t)floor((double)m[i] * s);
            if (cells != g[i]) {
                vt_fail(st, VTOK_ESHAPE,
                        "position interpolation: scale_factor (%lld + %g) / %lld gives %lld "
                        "cells, not the %lld of the patch grid",
                        (long long)g[i], v->pos_offset, (long long)m[i], (long long)cells,
                        (long long)g[i]);
                return 0;
            }
        }
    }
    return (v->cls ? 1 : 0) + v->n_reg + grid_of(v, h) * grid_of(v, w);
}

static int64_t mlp_width(const vt_vit *v)
{
    return v->layers[0].fc1.n_out + v->layers[0].fc1_up.n_out;
}

static int64_t head_ff(const vt_vit *v)
{
    return v->head_fc1.n_out > v->d ? v->head_fc1.n_out : v->d;
}

/* Layout of the work buffer; with base == NULL it only measures. */
static int64_t layout(const vt_vit *v, int64_t n, int64_t h, int64_t w, float *base,
                      vit_buffers *b)
{
    /* Saturating (vt_szmul): a size past int64_t is refused by the planner. */
    int64_t T = vt_vit_tokens(v, h, w, NULL), M = vt_szmul(n, T), d = v->d, off = 0;
    int64_t kp = vt_szmul3(v->channels, v->patch, v->patch);
    int64_t np = vt_szmul(grid_of(v, h), grid_of(v, w));
    /* position resize: the result plus the antialiased path's horizontal pass */
    int64_t pos = vt_szadd(vt_szmul(np, d), vt_szmul3(v->grid_h, grid_of(v, w), d));
    int64_t head = vt_szadd(vt_szadd(d, vt_szmul3(3, n, d)), vt_szadd(vt_szmul(n, head_ff(v)), T));
    int64_t sizes[9] = {
        vt_szmul(M, d), vt_szmul(M, d), vt_szmul3(M, 3, d), vt_szmul(M, d),
        vt_szmul(M, mlp_width(v)), v->swiglu ? vt_szmul(M, v->d_ff) : 0,
        vt_szmul3(n, np, kp), pos, head,
    };
    float **dst[9] = {&b->x, &b->hb, &b->qkv, &b->att, &b->mlp, &b->glu, &b->col, &b->pos,
                      &b->head};
    for (int i = 0; i < 9; i++) {
        if (base)
            *dst[i] = base + off;
        off = vt_szadd(off, vt_szr16(sizes[i]));
    }
    return off;
}

int64_t vt_vit_work_floats(const vt_vit *v, int64_t n, int64_t h, int64_t w)
{
    vit_buffers b;
    return layout(v, n, h, w, NULL, &b);
}

/* ---- embeddings ---- */

/* torch's cubic convolution weights, A = -0.75 (aten/src/ATen/native/UpSample.h). */
static void cubic_coeffs(float t, float c[4])
{
    const float A = -0.75f;
    float x1 = t + 1.0f, x2 = 1.0f - t, x3 = 2.0f - t;
    c[0] = ((A * x1 - 5.0f * A) * x1 + 8.0f * A) * x1 - 4.0f * A;
    c[1] = ((A + 2.0f) * t - (A + 3.0f)) * t * t + 1.0f;
    c[2] = ((A + 2.0f) * x2 - (A + 3.0f)) * x2 * x2 + 1.0f;
    c[3] = ((A * x3 - 5.0f * A) * x3 + 8.0f * A) * x3 - 4.0f * A;
}

static int64_t clampi(int64_t i, int64_t n)
{
    return i < 0 ? 0 : i >= n ? n - 1 : i;
}

/*
 * Source-coordinate scale of one axis of the position resize (n_in table cells
 * to n_out), as aten computes it for align_corners=False
 * (aten/src/ATen/native/UpSample.h, area_pixel_compute_scale ->
 * compute_scales_value): with a scale_factor s, which F.interpolate hands to the
 * kernel unchanged when recompute_scale_factor is unset, the float of 1.0 / s;
 * with size= the float in / out. The official DINOv2 passes
 * s = float(g + interpolate_offset) / M (facebookresearch/dinov2
 * dinov2/models/vision_transformer.py:195-200 at 112792f; v4.40-era transformers
 * modeling_dinov2.py:96-105 writes the same double as (g + 0.1) / sqrt(N)).
 */
static float pos_axis_scale(const vt_vit *v, int64_t n_in, int64_t n_out)
{
    if (v->pos_offset > 0.0)
        return (float)(1.0 / (((double)n_out + v->pos_offset) / (double)n_in));
    return (float)n_in / (float)n_out;
}

/*
 * Whether the patch rows are resized for an h x w input. Official DINOv2 and HF
 * return the table untouched iff #patches == #rows and H == W
 * (vision_transformer.py:184); a resize to the same grid is the identity under
 * the size= rule but not under scale_factor (1/s != 1), so only the latter
 * needs H == W.
 */
static int pos_resized(const vt_vit *v, int64_t h, int64_t w)
{
    if (grid_of(v, h) != v->grid_h || grid_of(v, w) != v->grid_w)
        return 1;
    return v->pos_offset > 0.0 && h != w;
}

/* aten area_pixel_compute_source_index (UpSample.h), cubic, align_corners=False:
 * scale * (dst + 0.5) - 0.5 evaluated in double (dst + 0.5 is a double there),
 * then stored as float; not clamped at 0 (the taps are). */
static float src_index(float scale, int64_t dst)
{
    return (float)((double)scale * ((double)dst + 0.5) - 0.5);
}

/*
 * Resize the [gh0*gw0, d] patch position table to [gh*gw, d] as
 * F.interpolate(mode="bicubic", align_corners=False) does, with source
 * coordinate scale sy, sx per axis (pos_axis_scale); taps clamped at the border
 * (aten UpSampleKernel.cpp, HelperInterpCubic).
 */
void vt_pos_bicubic(const float *src, int64_t gh0, int64_t gw0, int64_t d, int64_t gh,
                       int64_t gw, float sy, float sx, float *dst)
{
    for (int64_t oy = 0; oy < gh; oy++) {
        float ry = src_index(sy, oy);
        int64_t iy = (int64_t)floorf(ry);
        float cy[4];
        cubic_coeffs(ry - (float)iy, cy);
        for (int64_t ox = 0; ox < gw; ox++) {
            float rx = src_index(sx, ox);
            int64_t ix = (int64_t)floorf(rx);
            float cx[4];
            cubic_coeffs(rx - (float)ix, cx);
            float *o = dst + (oy * gw + ox) * d;
            for (int64_t c = 0; c < d; c++) {
                float acc = 0.0f;
                for (int a = 0; a < 4; a++) {
                    const float *row = src + clampi(iy - 1 + a, gh0) * gw0 * d;
                    float r = 0.0f;
                    for (int bb = 0; bb < 4; bb++)
                        r += row[clampi(ix - 1 + bb, gw0) * d + c] * cx[bb];
                    acc += r * cy[a];
                }
                o[c] = acc;
            }
        }
    }
}

/*
 * Antialiased bicubic resize as torch computes it for F.interpolate(...,
 * mode="bicubic", antialias=True) (aten UpSampleKernel.cpp, separable AA
 * path, HelperInterpBase::_compute_indices_min_size_weights_aa): Pillow's
 * cubic filter with a = -0.5, support 2 * max(scale, 1), at most
 * 2 * ceil(support) + 1 taps, weights normalised to sum 1, horizontal pass
 * first, a pass skipped when that side keeps its size
 * (separable_upsample_generic_Nd_kernel_impl). The scale is the same
 * pos_axis_scale as without antialias: _compute_index_ranges_weights takes it
 * from area_pixel_compute_scale too, so a scale_factor moves the centres here
 * as well. (torch 1.13 ran both passes even for an unchanged side; a
 * scale_factor resize that keeps one side differs there.)
 */
static float aa_cubic(float x)
{
    const float a = -0.5f;
    x = fabsf(x);
    if (x < 1.0f)
        return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
    if (x < 2.0f)
        return (((x - 5.0f) * x + 8.0f) * x - 4.0f) * a;
    return 0.0f;
}

/* aten's antialiased bilinear filter (HelperInterpLinear::aa_filter). */
static float aa_linear(float x)
{
    x = fabsf(x);
    return x < 1.0f ? 1.0f - x : 0.0f;
}

void vt_aa_pass(const float *src, int64_t n_in, int64_t n_out, float scale, int64_t stride_in,
                int64_t stride_out, int64_t outer, int64_t outer_in, int64_t outer_out,
                int64_t d, int linear, float *dst)
{
    float (*const aa_filter)(float) = linear ? aa_linear : aa_cubic;
    const float base = linear ? 1.0f : 2.0f; /* the filter's support at scale 1 */
    float support = scale >= 1.0f ? base * scale : base;
    float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
    int64_t max_taps = (int64_t)ceilf(support) * 2 + 1;
    for (int64_t i = 0; i < n_out; i++) {
        float center = (float)((double)scale * ((double)i + 0.5));
        int64_t xmin = (int64_t)((double)(center - support) + 0.5);
        if (xmin < 0)
            xmin = 0;
        int64_t xmax = (int64_t)((double)(center + support) + 0.5);
        if (xmax > n_in)
            xmax = n_in;
        if (xmax - xmin > max_taps)
            xmax = xmin + max_taps;
        /* Weights are recomputed per use rather than stored: no buffer, any scale. */
        float total = 0.0f;
        for (int64_t j = xmin; j < xmax; j++)
            total += aa_filter((float)(((double)((float)j - center) + 0.5) * invscale));
        float norm = total != 0.0f ? total : 1.0f;
        for (int64_t o = 0; o < outer; o++) {
            const float *s0 = src + o * outer_in;
            float *t = dst + o * outer_out + i * stride_out;
            for (int64_t c = 0; c < d; c++)
                t[c] = 0.0f;
            for (int64_t j = xmin; j < xmax; j++) {
                float wj = aa_filter((float)(((double)((float)j - center) + 0.5) * invscale)) / norm;
                const float *sj = s0 + j * stride_in;
                for (int64_t c = 0; c < d; c++)
                    t[c] += sj[c] * wj;
            }
        }
    }
}

static void interp_pos_aa(const float *src, int64_t gh0, int64_t gw0, int64_t d, int64_t gh,
                          int64_t gw, float sy, float sx, float *tmp, float *dst)
{
    const float *cur = src;
    if (gw != gw0) { /* horizontal: [gh0, gw0, d] -> [gh0, gw, d] */
        vt_aa_pass(cur, gw0, gw, sx, d, d, gh0, gw0 * d, gw * d, d, 0, gh == gh0 ? dst : tmp);
        cur = gh == gh0 ? dst : tmp;
    }
    if (gh != gh0) /* vertical: [gh0, gw, d] -> [gh, gw, d], rows of gw*d */
        vt_aa_pass(cur, gh0, gh, sy, gw * d, gw * d, 1, 0, 0, gw * d, 0, dst);
    else if (gw == gw0)
        memcpy(dst, src, (size_t)(gh * gw * d) * sizeof(float));
}

static void embed(const vt_vit *v, const vt_exec *e, const float *px, int64_t n, int64_t h,
                  int64_t w, int64_t T, const vit_buffers *b)
{
    int64_t p = v->patch, C = v->channels, d = v->d;
    int64_t gh = grid_of(v, h), gw = grid_of(v, w), np = gh * gw, kp = C * p * p;

    /* im2col: rows are patches, columns (c, ky, kx) as the conv weight is laid out. */
    for (int64_t im = 0; im < n; im++)
        for (int64_t py = 0; py < gh; py++)
            for (int64_t pxi = 0; pxi < gw; pxi++) {
                float *row = b->col + ((im * np) + py * gw + pxi) * kp;
                for (int64_t c = 0; c < C; c++)
                    for (int64_t ky = 0; ky < p; ky++)
                        memcpy(row + (c * p + ky) * p,
                               px + ((im * C + c) * h + py * p + ky) * w + pxi * p,
                               (size_t)p * sizeof(float));
            }
    vt_linear conv = {.w = v->patch_w, .b = v->patch_b, .n_out = d, .n_in = kp};
    vt_op_linear(e, n * np, b->col, 0, &conv, b->hb, 0);

    const float *pos = v->pos + v->pos_prefix * d;
    if (v->pos_interp && pos_resized(v, h, w)) {
        float sy = pos_axis_scale(v, v->grid_h, gh), sx = pos_axis_scale(v, v->grid_w, gw);
        if (v->pos_interp == VT_POS_BICUBIC_AA)
            interp_pos_aa(pos, v->grid_h, v->grid_w, d, gh, gw, sy, sx, b->pos + gh * gw * d,
                          b->pos);
        else
            vt_pos_bicubic(pos, v->grid_h, v->grid_w, d, gh, gw, sy, sx, b->pos);
        pos = b->pos;
    }
    for (int64_t im = 0; im < n; im++) {
        float *x = b->x + im * T * d;
        int64_t row = 0; /* prefix tokens take position rows while the table has them */
        if (v->cls) {
            for (int64_t c = 0; c < d; c++)
                x[c] = v->cls[c] + (row < v->pos_prefix ? v->pos[row * d + c] : 0.0f);
            x += d;
            row++;
        }
        for (int64_t r = 0; r < v->n_reg; r++, row++, x += d)
            for (int64_t c = 0; c < d; c++)
                x[c] = v->reg[r * d + c] + (row < v->pos_prefix ? v->pos[row * d + c] : 0.0f);
        const float *pe = b->hb + im * np * d;
        for (int64_t i = 0; i < np * d; i++)
            x[i] = pe[i] + pos[i];
    }
}

/* ---- encoder ---- */

static void add_scaled(int64_t M, int64_t d, float *x, const float *y, const float *scale)
{
    if (scale) {
        for (int64_t r = 0; r < M; r++)
            for (int64_t c = 0; c < d; c++)
                x[r * d + c] += y[r * d + c] * scale[c];
    } else {
        for (int64_t i = 0; i < M * d; i++)
            x[i] += y[i];
    }
}

/*
 * EVA-02 RoPE on q and k of the patch rows (the first T - grid rows of each
 * image, CLS, are left alone as eva.py's q[:, :, 1:]). rotate_half maps the
 * pair (t[2i], t[2i+1]) to (-t[2i+1], t[2i]), so
 * t'[2i] = t[2i] cos[2i] - t[2i+1] sin[2i], t'[2i+1] = t[2i+1] cos + t[2i] sin.
 */
static void apply_rope(const vt_vit *v, int64_t n, int64_t T, float *qkv)
{
    int64_t d = v->d, dh = d / v->n_heads, np = v->grid_h * v->grid_w, pre = T - np;
    for (int64_t im = 0; im < n; im++)
        for (int64_t p = 0; p < np; p++) {
            const float *c = v->rope_cos + p * dh, *s = v->rope_sin + p * dh;
            float *row = qkv + (im * T + pre + p) * 3 * d;
            for (int64_t part = 0; part < 2; part++) /* q, then k */
                for (int64_t h = 0; h < v->n_heads; h++) {
                    float *x = row + part * d + h * dh;
                    for (int64_t i = 0; i + 1 < dh; i += 2) {
                        float x0 = x[i], x1 = x[i + 1];
                        x[i] = x0 * c[i] - x1 * s[i];
                        x[i + 1] = x1 * c[i + 1] + x0 * s[i + 1];
                    }
                }
        }
}

static void layer_forward(const vt_vit *v, const vt_vit_layer *L, const vt_exec *e, int64_t n,
                          int64_t T, const vit_buffers *b)
{
    int64_t M = n * T, d = v->d, dh = d / v->n_heads;

    /* LayerNorms, the activation and residual adds are fused into the
     * Linears next to them (vt_op_linear_ex): same results, fewer passes. */
    const vt_linear_opts pre_ln1 = {.ln_src = b->x, .ln = &L->ln1};
    if (L->qkv.n_out) {
        vt_op_linear_ex(e, M, b->hb, 0, &L->qkv, b->qkv, 3 * d, &pre_ln1);
    } else {
        vt_op_linear_ex(e, M, b->hb, 0, &L->q, b->qkv, 3 * d, &pre_ln1);
        vt_op_linear(e, M, b->hb, 0, &L->k, b->qkv + d, 3 * d);
        vt_op_linear(e, M, b->hb, 0, &L->v, b->qkv + 2 * d, 3 * d);
    }
    if (v->rope_cos)
        apply_rope(v, n, T, b->qkv);
    const vt_attn_args at = {.batch = n, .heads = v->n_heads, .tq = T, .tk = T, .dh = dh,
                             .q = b->qkv, .k = b->qkv + d, .v = b->qkv + 2 * d,
                             .ldq = 3 * d, .ldk = 3 * d, .ldv = 3 * d, .out = b->att, .ldo = d,
                             .scale = 1.0f / sqrtf((float)dh), .lowp = v->attn_lowp,
                             .causal = v->causal ? VT_ATTN_CAUSAL : 0};
    vt_op_attention_ex(e, &at);
    if (L->attn_ln.w)
        vt_op_layernorm(e, M, d, b->att, &L->attn_ln, b->att);
    const vt_linear_opts residual = {.accumulate = 1};
    if (L->ls1) {
        vt_op_linear(e, M, b->att, 0, &L->o, b->hb, 0);
        add_scaled(M, d, b->x, b->hb, L->ls1);
    } else {
        vt_op_linear_ex(e, M, b->att, 0, &L->o, b->x, 0, &residual);
    }

    const vt_linear_opts pre_ln2 = {.ln_src = b->x, .ln = &L->ln2};
    if (L->fc1_up.n_out) { /* two Linears write the two halves of each mlp row (w is NULL
                            * once converted to bf16 / int8: test the size) */
        int64_t w = mlp_width(v);
        vt_op_linear_ex(e, M, b->hb, 0, &L->fc1, b->mlp, w, &pre_ln2);
        vt_op_linear(e, M, b->hb, 0, &L->fc1_up, b->mlp + L->fc1.n_out, w);
    } else {
        vt_op_linear_ex(e, M, b->hb, 0, &L->fc1, b->mlp, 0, &pre_ln2);
    }
    float *mid = b->mlp;
    vt_linear_opts fc2 = {.accumulate = !L->ls2};
    if (v->swiglu) {
        /* Dinov2SwiGLUFFN: x1, x2 = fc1(x).chunk(2); silu(x1) * x2 */
        vt_op_swiglu(e, M, v->d_ff, b->mlp, b->glu);
        mid = b->glu;
    } else if (L->ffn_ln.w) {
        vt_op_act(e, v->act, M * v->d_ff, b->mlp);
    } else {
        fc2.act = v->act;
    }
    if (L->ffn_ln.w)
        vt_op_layernorm(e, M, v->d_ff, mid, &L->ffn_ln, mid);
    if (fc2.accumulate) {
        vt_op_linear_ex(e, M, mid, 0, &L->fc2, b->x, 0, &fc2);
    } else {
        vt_op_linear_ex(e, M, mid, 0, &L->fc2, b->hb, 0, &fc2);
        add_scaled(M, d, b->x, b->hb, L->ls2);
    }
}

/* SigLIP's MultiheadAttentionPoolingHead: one learned probe attends over the tokens. */
static void map_head(const vt_vit *v, const vt_exec *e, int64_t n, int64_t T, const float *last,
                     const vit_buffers *b, float *pooler)
{
    int64_t d = v->d, H = v->n_heads, dh = d / H;
    float *q = b->head, *o = q + d, *r = o + n * d, *m = r + n * d;
    float *kv = b->qkv; /* [M, 2d]: keys then values */
    vt_linear wq = {.w = v->head_in.w, .b = v->head_in.b, .n_out = d, .n_in = d};
    vt_linear wkv = {.w = v->head_in.w + d * d, .b = v->head_in.b + d, .n_out = 2 * d, .n_in = d};
    vt_op_linear(e, 1, v->probe, 0, &wq, q, 0);
    vt_op_linear(e, n * T, last, 0, &wkv, kv, 0);
    /* The shared attention op (one query, T keys, all heads on the pool);
     * one call per image since every image reuses the one probe query. */
    for (int64_t im = 0; im < n; im++) {
        const vt_attn_args at = {.batch = 1, .heads = H, .tq = 1, .tk = T, .dh = dh,
                                 .q = q, .k = kv + im * T * 2 * d, .v = kv + im * T * 2 * d + d,
                                 .ldq = d, .ldk = 2 * d, .ldv = 2 * d, .out = o + im * d,
                                 .ldo = d, .scale = 1.0f / sqrtf((float)dh)};
        vt_op_attention_ex(e, &at);
    }
    vt_op_linear(e, n, o, 0, &v->head_out, r, 0);            /* residual */
    vt_op_layernorm(e, n, d, r, &v->head_ln, o);
    vt_op_linear(e, n, o, 0, &v->head_fc1, m, 0);
    vt_op_act(e, v->act, n * v->head_fc1.n_out, m);
    vt_op_linear(e, n, m, 0, &v->head_fc2, pooler, 0);
    for (int64_t i = 0; i < n * d; i++)
        pooler[i] += r[i];
}

static void gather_cls(const float *x, int64_t n, int64_t T, int64_t d, float *dst)
{
    for (int64_t im = 0; im < n; im++)
        memcpy(dst + im * d, x + im * T * d, (size_t)d * sizeof(float));
}

void vt_vit_forward(const vt_vit *v, const vt_exec *e, const float *pixels, int64_t n, int64_t h,
                    int64_t w, float *work, const vt_vit_out *out)
{
    int64_t T = vt_vit_tokens(v, h, w, NULL), d = v->d, M = n * T;
    size_t row_bytes = (size_t)(M * d) * sizeof(float);
    vit_buffers b;
    layout(v, n, h, w, work, &b);

    if (vt_run_poll(e)) /* the caller's abort_cb: outputs are then invalid */
        return;
    embed(v, e, pixels, n, h, w, T, &b);
    if (v->pre_ln.w)
        vt_op_layernorm(e, M, d, b.x, &v->pre_ln, b.x);
    if (out->hidden && out->hidden[0])
        memcpy(out->hidden[0], b.x, row_bytes);
    vt_run_step_done(e);
    for (int64_t l = 0; l < v->n_layers; l++) {
        if (vt_run_poll(e))
            return;
        layer_forward(v, &v->layers[l], e, n, T, &b);
        if (out->hidden && out->hidden[l + 1])
            memcpy(out->hidden[l + 1], b.x, row_bytes);
        vt_run_step_done(e);
    }

    float *cls = b.head; /* n*d scratch for gathered CLS rows */
    switch (v->pool) {
    case VT_POOL_CLS_LN:
        memcpy(out->last, b.x, row_bytes);
        gather_cls(b.x, n, T, d, cls);
        vt_op_layernorm(e, n, d, cls, &v->post_ln, out->pooler);
        break;
    case VT_POOL_NONE:
        if (!v->post_ln.w) { /* EVA-CLIP towers: all tokens, no final norm */
            memcpy(out->last, b.x, row_bytes);
            break;
        }
        /* fall through */
    case VT_POOL_CLS:
    case VT_POOL_CLS_DENSE_TANH:
    case VT_POOL_CLS_LN_TWICE:
    case VT_POOL_MAP:
        vt_op_layernorm(e, M, d, b.x, &v->post_ln, out->last);
        if (v->pool == VT_POOL_CLS) {
            gather_cls(out->last, n, T, d, out->pooler);
        } else if (v->pool == VT_POOL_CLS_DENSE_TANH) {
            gather_cls(out->last, n, T, d, cls);
            vt_op_linear(e, n, cls, 0, &v->pool_dense, out->pooler, 0);
            vt_op_act(e, VT_ACT_TANH, n * v->pool_dense.n_out, out->pooler);
        } else if (v->pool == VT_POOL_CLS_LN_TWICE) {
            gather_cls(out->last, n, T, d, cls);
            vt_op_layernorm(e, n, d, cls, &v->post_ln, out->pooler);
        } else if (v->pool == VT_POOL_MAP) {
            map_head(v, e, n, T, out->last, &b, out->pooler);
        }
        break;
    }
    if (v->proj.n_out && out->embeds)
        vt_op_linear(e, n, out->pooler, 0, &v->proj, out->embeds, 0);
}

/* ---- the encoder blocks alone ---- */

static int64_t encoder_layout(const vt_vit *v, int64_t n, int64_t T, float *base, vit_buffers *b)
{
    int64_t M = vt_szmul(n, T), d = v->d, off = 0;
    int64_t sizes[5] = {vt_szmul(M, d), vt_szmul3(M, 3, d), vt_szmul(M, d),
                        vt_szmul(M, mlp_width(v)), v->swiglu ? vt_szmul(M, v->d_ff) : 0};
    float **dst[5] = {&b->hb, &b->qkv, &b->att, &b->mlp, &b->glu};
    for (int i = 0; i < 5; i++) {
        if (base)
            *dst[i] = base + off;
        off = vt_szadd(off, vt_szr16(sizes[i]));
    }
    return off;
}

int64_t vt_vit_encoder_work_floats(const vt_vit *v, int64_t n, int64_t T)
{
    vit_buffers b;
    return encoder_layout(v, n, T, NULL, &b);
}

void vt_vit_encoder(const vt_vit *v, const vt_exec *e, int64_t n, int64_t T, float *x,
                    float *work, float **hidden)
{
    vit_buffers b = {0};
    size_t row_bytes = (size_t)(n * T * v->d) * sizeof(float);
    encoder_layout(v, n, T, work, &b);
    b.x = x;
    if (hidden && hidden[0])
        memcpy(hidden[0], x, row_bytes);
    for (int64_t l = 0; l < v->n_layers; l++) {
        if (vt_run_poll(e))
            return;
        layer_forward(v, &v->layers[l], e, n, T, &b);
        if (hidden && hidden[l + 1])
            memcpy(hidden[l + 1], x, row_bytes);
        vt_run_step_done(e);
    }
}
