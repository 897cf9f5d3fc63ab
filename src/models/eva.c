/*
 * eva.c - EVA-CLIP vision towers: EVA-02 (as GVT builds it) and EVA ViT-g
 * (LAVIS eva_vit_g, used by BLIP-2 and SEED).
 *
 * Sources: TencentARC/GVT gvt/gvt/modules/visual_modules/eva.py (EVA-CLIP's
 * EVAVisionTransformer) and AILab-CVC/SEED v1 models/eva_vit.py (LAVIS).
 * Both are pre-norm ViTs with conv patch embedding (bias), CLS, an absolute
 * position table [1, 1 + N, d], q_bias and v_bias but no k bias, and no final
 * norm on the returned tokens. EVA-02 adds (subln=True) separate q/k/v_proj,
 * inner_attn_ln before attn.proj and ffn_ln before the last MLP Linear,
 * SwiGLU w1/w2/w3 (naiveswiglu) and a 2-D RoPE on the patch tokens; LAVIS
 * ViT-g uses a fused qkv Linear and an exact-GELU fc1/fc2 MLP. SEED builds
 * ViT-g with depth 39 from the 40-block checkpoint (strict=False), so
 * `layers` = 39 simply ignores blocks.39.
 *
 * RoPE table (VisionRotaryEmbeddingFast(dim = dh/2, pt_seq_len, ft_seq_len)):
 * f_k = 1 / theta^(2k / (dh/2)), k < dh/4; positions t_i = i / ft * pt
 * (intp_freq: ft = image/patch, else ft = pt); each angle repeated twice
 * (interleaved pairs); row r*ft + c = [row angles of t_r | column angles of
 * t_c]. Computed here in float32 step by step as torch does (arange / ft * pt,
 * theta ** x, 1 / that, outer product), then cos/sin.
 */
#include "eva.h"
#include "family.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct eva_defaults {
    int64_t width, layers, heads;
    double  mlp_ratio;
    int     subln, swiglu, rope;
} eva_defaults;

static const eva_defaults eva02_def = {1024, 24, 16, 2.6667, 1, 1, 1};
static const eva_defaults vit_g_def = {1408, 39, 16, 4.3637, 0, 0, 0};

typedef struct eva_cfg {
    int     subln, swiglu, rope, intp_freq, qkv_bias;
    int64_t pt_seq;
    double  theta;
} eva_cfg;

static int read_cfg(const cJSON *cfg, vt_vit *v, eva_cfg *c, vtok_status *st)
{
    const char *variant = NULL, *act = NULL;
    double mlp_ratio = 0.0, eps = 0.0;
    int rc = vt_opt_str(cfg, "variant", "eva02", &variant, "config.json", st);
    if (rc)
        return rc;
    const eva_defaults *d = !strcmp(variant, "eva02")     ? &eva02_def
                            : !strcmp(variant, "eva_vit_g") ? &vit_g_def
                                                            : NULL;
    if (!d)
        return vt_fail(st, VTOK_EUNSUPPORTED,
                       "EVA variant '%s' is not 'eva02' or 'eva_vit_g'", variant);
    if ((rc = vt_opt_side(cfg, "image_size", 224, &v->image_size, "config.json", st)) ||
        (rc = vt_opt_side(cfg, "patch_size", 14, &v->patch, "config.json", st)) ||
        (rc = vt_opt_int(cfg, "width", d->width, &v->d, "config.json", st)) ||
        (rc = vt_opt_int(cfg, "layers", d->layers, &v->n_layers, "config.json", st)) ||
        (rc = vt_opt_int(cfg, "heads", d->heads, &v->n_heads, "config.json", st)) ||
        (rc = vt_opt_int(cfg, "channels", 3, &v->channels, "config.json", st)) ||
        (rc = vt_opt_float(cfg, "mlp_ratio", d->mlp_ratio, &mlp_ratio, "config.json", st)) ||
        (rc = vt_opt_float(cfg, "eps", 1e-6, &eps, "config.json", st)) ||
        (rc = vt_opt_str(cfg, "act", "gelu", &act, "config.json", st)) ||
        (rc = vt_opt_bool(cfg, "qkv_bias", 1, &c->qkv_bias, "config.json", st)) ||
        (rc = vt_opt_bool(cfg, "subln", d->subln, &c->subln, "config.json", st)) ||
        (rc = vt_opt_bool(cfg, "swiglu", d->swiglu, &c->swiglu, "config.json", st)) ||
        (rc = vt_opt_bool(cfg, "rope", d->rope, &c->rope, "config.json", st)) ||
        (rc = vt_opt_bool(cfg, "intp_freq", 1, &c->intp_freq, "config.json", st)) ||
        (rc = vt_opt_int(cfg, "pt_hw_seq_len", 16, &c->pt_seq, "config.json", st)) ||
        (rc = vt_opt_float(cfg, "rope_theta", 10000.0, &c->theta, "config.json", st)))
        return rc;
    int a = vt_act_from_name(act);
    if (a < 0)
        return vt_fail(st, VTOK_EUNSUPPORTED, "EVA: unsupported act '%s'", act);
    if (!(mlp_ratio > 0.0) || mlp_ratio > 64.0)
        return vt_fail(st, VTOK_EFORMAT, "EVA: bad mlp_ratio %g", mlp_ratio);
    if (v->n_layers < 0 || v->n_layers > 1024)
        return vt_fail(st, VTOK_EFORMAT, "EVA: bad layers %lld", (long long)v->n_layers);
    /* Block: mlp_hidden_dim = int(dim * mlp_ratio) (2730 for EVA-02-L, 6144 for ViT-g). */
    v->d_ff = (int64_t)((double)v->d * mlp_ratio);
    v->act = c->swiglu ? VT_ACT_SILU : (vt_act)a;
    v->swiglu = c->swiglu;
    v->eps = (float)eps;
    if ((rc = vt_vit_check(v, st)))
        return rc;
    if (c->rope) {
        int64_t dh = v->d / v->n_heads, grid = v->image_size / v->patch;
        int64_t ft = c->intp_freq ? grid : c->pt_seq;
        if (dh % 4 != 0)
            return vt_fail(st, VTOK_EUNSUPPORTED,
                           "EVA: RoPE needs a head width divisible by 4, not %lld",
                           (long long)dh);
        if (c->pt_seq <= 0 || c->pt_seq > 4096 || !(c->theta > 0.0))
            return vt_fail(st, VTOK_EFORMAT, "EVA: bad pt_hw_seq_len or rope_theta");
        if (ft != grid) /* eva.py would fail to broadcast the table over the tokens */
            return vt_fail(st, VTOK_EFORMAT,
                           "EVA: RoPE table is %lldx%lld but the image has %lldx%lld patches "
                           "(set intp_freq)",
                           (long long)ft, (long long)ft, (long long)grid, (long long)grid);
    }
    return 0;
}

/* The [ft*ft, dh] cos/sin tables of VisionRotaryEmbeddingFast (see the top of the file). */
static int build_rope(vt_vit *v, vt_loader *ld, const eva_cfg *c)
{
    int64_t dh = v->d / v->n_heads, half = dh / 2, nf = half / 2;
    int64_t ft = c->intp_freq ? v->image_size / v->patch : c->pt_seq;
    float f[1024], t[4096];
    if (nf > 1024 || ft > 4096)
        return vt_loader_fail(ld, VTOK_EUNSUPPORTED, "EVA: RoPE table too large");
    float *cs = vt_loader_alloc(ld, 2 * ft * ft * dh);
    if (!cs)
        return ld->err;
    for (int64_t k = 0; k < nf; k++) {
        float e = (float)(2 * k) / (float)half;
        float p = (float)pow(c->theta, (double)e);
        f[k] = 1.0f / p;
    }
    for (int64_t i = 0; i < ft; i++)
        t[i] = ((float)i / (float)ft) * (float)c->pt_seq;
    float *cosv = cs, *sinv = cs + ft * ft * dh;
    for (int64_t r = 0; r < ft; r++)
        for (int64_t col = 0; col < ft; col++) {
            int64_t row = (r * ft + col) * dh;
            for (int64_t k = 0; k < nf; k++)
                for (int64_t j = 0; j < 2; j++) {
                    float ar = t[r] * f[k], ac = t[col] * f[k];
                    cosv[row + 2 * k + j] = (float)cos((double)ar);
                    sinv[row + 2 * k + j] = (float)sin((double)ar);
                    cosv[row + half + 2 * k + j] = (float)cos((double)ac);
                    sinv[row + half + 2 * k + j] = (float)sin((double)ac);
                }
        }
    v->rope_cos = cosv;
    v->rope_sin = sinv;
    return 0;
}

static void load_block(vt_vit *v, vt_loader *ld, const eva_cfg *c, int64_t i)
{
    vt_vit_layer *L = &v->layers[i];
    int64_t d = v->d, h = v->d_ff;
    char b[160];
#define N(s) (snprintf(b, sizeof b, "blocks.%lld." s, (long long)i), b)
    vt_get_norm(ld, &L->ln1, N("norm1"), d, v->eps);
    const float *qb = NULL, *vb = NULL;
    if (c->qkv_bias) {
        qb = vt_get(ld, N("attn.q_bias"), 1, d, 0, 0, 0);
        vb = vt_get(ld, N("attn.v_bias"), 1, d, 0, 0, 0);
    }
    if (c->subln) {
        /* F.linear(x, q_proj.weight, q_bias), k without bias, v with v_bias */
        vt_get_linear(ld, &L->q, N("attn.q_proj"), d, d, 0);
        vt_get_linear(ld, &L->k, N("attn.k_proj"), d, d, 0);
        vt_get_linear(ld, &L->v, N("attn.v_proj"), d, d, 0);
        L->q.b = qb;
        L->v.b = vb;
        vt_get_norm(ld, &L->attn_ln, N("attn.inner_attn_ln"), d, v->eps);
    } else {
        /* qkv_bias = cat(q_bias, zeros, v_bias) on the fused qkv Linear */
        vt_get_linear(ld, &L->qkv, N("attn.qkv"), 3 * d, d, 0);
        if (c->qkv_bias) {
            float *bias = vt_loader_alloc(ld, 3 * d);
            if (bias && qb && vb) {
                memcpy(bias, qb, (size_t)d * sizeof(float));
                memcpy(bias + 2 * d, vb, (size_t)d * sizeof(float));
            }
            L->qkv.b = bias;
        }
    }
    vt_get_linear(ld, &L->o, N("attn.proj"), d, d, 1);
    vt_get_norm(ld, &L->ln2, N("norm2"), d, v->eps);
    if (c->swiglu) {
        vt_get_linear(ld, &L->fc1, N("mlp.w1"), h, d, 1);
        vt_get_linear(ld, &L->fc1_up, N("mlp.w2"), h, d, 1);
        vt_get_linear(ld, &L->fc2, N("mlp.w3"), d, h, 1);
    } else {
        vt_get_linear(ld, &L->fc1, N("mlp.fc1"), h, d, 1);
        vt_get_linear(ld, &L->fc2, N("mlp.fc2"), d, h, 1);
    }
    if (c->subln)
        vt_get_norm(ld, &L->ffn_ln, N("mlp.ffn_ln"), h, v->eps);
#undef N
}

int vt_eva_load(vt_vit *v, vt_loader *ld, const cJSON *cfg)
{
    memset(v, 0, sizeof *v);
    eva_cfg c;
    memset(&c, 0, sizeof c);
    ld->own = &v->own;
    int rc = read_cfg(cfg, v, &c, ld->st);
    if (rc)
        return rc;
    int64_t d = v->d, p = v->patch, grid = v->image_size / p;

    v->patch_w = vt_get(ld, "patch_embed.proj.weight", 4, d, v->channels, p, p);
    v->patch_b = vt_get(ld, "patch_embed.proj.bias", 1, d, 0, 0, 0);
    v->cls = vt_get(ld, "cls_token", 3, 1, 1, d, 0);
    vt_get_pos_table(v, ld, "pos_embed", 1, 1);
    if (v->pos && (v->grid_h != grid || v->grid_w != grid)) {
        /* LAVIS interpolate_pos_embed resizes a table trained at another size once at load
         * (F.interpolate bicubic, align_corners=False); vit.c does the same resize from
         * the stored table. EVA-02's RoPE table has no such path in eva.py. */
        if (c.rope)
            vt_loader_fail(ld, VTOK_ESHAPE,
                           "EVA: pos_embed is for %lldx%lld patches, the image has %lldx%lld",
                           (long long)v->grid_h, (long long)v->grid_w, (long long)grid,
                           (long long)grid);
        else
            v->pos_interp = VT_POS_BICUBIC;
    }
    if (!ld->err && c.rope)
        build_rope(v, ld, &c);
    if (!ld->err)
        vt_vit_alloc_layers(v, ld, v->n_layers);
    for (int64_t i = 0; i < v->n_layers && !ld->err; i++)
        load_block(v, ld, &c, i);
    v->pool = VT_POOL_NONE; /* post_ln stays empty: no final norm */
    return ld->err;
}

/* vtok encode on an EVA tower: a folder with a config.json of vtok's own
 * ({"model_type": "eva", "variant": "eva_vit_g" | "eva02", and the keys of
 * vt_eva_load}) beside the checkpoint as released (LAVIS eva_vit_g.pth, a
 * GVT or SEED file: the tower is found by its patch embedding, under any
 * prefix). EVA checkpoints come without an HF config, so the config is the
 * user's statement of the architecture, as the recipes' "config" is. */
static int eva_family_load(vt_vit *v, vt_loader *ld, const cJSON *cfg)
{
    return vt_eva_load(v, ld, cfg);
}

static const char *const eva_types[] = {"eva", NULL};
static const char *const eva_composite[] = {NULL};

const vt_family vt_family_eva = {
    .arch = "eva",
    .anchor = "patch_embed.proj.weight",
    .model_types = eva_types,
    .composite_types = eva_composite,
    .load = eva_family_load,
};
