/*
 * timm_vit.c - timm VisionTransformer towers: bare (a timm hub folder,
 * config.json {"architecture": "vit_base_patch16_224", ...} beside
 * model.safetensors or pytorch_model.bin), or as the trunk of an open_clip
 * TimmModel (open_clip_config.json + open_clip_pytorch_model.bin, the trunk
 * under visual.trunk.): BiomedCLIP's image tower, MoVA's BiomedCLIP expert.
 *
 * Sources: timm/models/vision_transformer.py as MoVA bundles it
 * (TempleX98/MoVA at 9c33cb4) and open_clip/timm_model.py beside it.
 *   - Block.forward: x += attn(norm1(x)) [* ls1.gamma]; x += mlp(norm2(x))
 *     [* ls2.gamma]; Attention: one fused qkv Linear [3d, d] split as
 *     reshape(B, N, 3, heads, dh), scale dh^-0.5, then proj; Mlp: fc1, act,
 *     fc2 with act nn.GELU (exact erf) unless the model says otherwise.
 *   - norm_layer defaults to partial(nn.LayerNorm, eps=1e-6)
 *     (VisionTransformer.__init__); the *_clip_* models pass nn.LayerNorm
 *     (eps 1e-5) with pre_norm=True (norm_pre before the blocks, no patch
 *     bias: PatchEmbed(bias=not pre_norm)).
 *   - _pos_embed: [CLS] (+ reg tokens) then + pos_embed when the table has
 *     their rows; no_embed_class adds the table to the patches only.
 *   - forward_features = norm(blocks(norm_pre(pos(patch_embed(x))))); MoVA's
 *     patched VisionTransformer.forward returns exactly that (forward_head
 *     commented out), and its TimmModel.forward returns trunk(x) with the
 *     head skipped: last_hidden_state here is forward_features, all tokens.
 *   - use_fc_norm (global_pool 'avg', or fc_norm=True) makes `norm` an
 *     Identity and normalises after pooling (fc_norm): then
 *     last_hidden_state is the raw block output, as forward_features gives.
 * hidden_states are the block outputs before the final norm (hidden[0] after
 * norm_pre), as vt_vit_forward gives them for every family.
 *
 * Pooling, for pooler_output / image_embeds (the unpatched TimmModel.forward
 * = head(trunk.forward_head(forward_features(x)))): with the 'token' pool
 * pooler_output = forward_features[:, 0] (fc_norm Identity), or
 * fc_norm(h[:, 0]) when the model has an fc_norm; open_clip's timm_proj
 * 'linear' head (drop, then nn.Linear(d, embed_dim, bias=timm_proj_bias),
 * stored as visual.head.proj.*) gives image_embeds = proj(pooler_output).
 * timm_pool '' keeps the model's default pool ('token' for plain ViTs,
 * BiomedCLIP's case). 'avg' and 'map' pools, and the 'mlp' or 'none'
 * projections, give no pooler_output / image_embeds here (last_hidden_state
 * and hidden_states are unaffected).
 *
 * Sizes come from the tensors (width, channels and patch from
 * patch_embed.proj.weight, depth from the blocks present, MLP width from
 * fc1, the native grid from pos_embed); the head count is not in the
 * tensors: it comes from the timm model name (vit_<size>_patch..., deit_*)
 * or from "num_heads" (top level or timm's "model_args"). Options (top level
 * of either config): "num_heads", "layer_norm_eps", "hidden_act". The input
 * must be the native image size (timm's default, dynamic_img_size=False).
 */
#include "family.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The head counts of timm's ViT sizes (vision_transformer.py, the
 * @register_model functions: embed_dim and num_heads of each size). */
typedef struct timm_size {
    const char *name;
    int64_t     d, heads;
} timm_size;

static const timm_size timm_sizes[] = {
    {"tiny", 192, 3},    {"small", 384, 6},   {"medium", 512, 8},  {"base", 768, 12},
    {"large", 1024, 16}, {"huge", 1280, 16},  {"giant", 1408, 16}, {"gigantic", 1664, 16},
};

typedef struct timm_cfg {
    char        name[128];  /* timm model name without the ".pretrained_tag" */
    const char *where;      /* config file name for messages */
    const cJSON *top, *args;/* top-level options, timm's model_args (may be NULL) */
    const char *pool;       /* global pool the head uses: "token", "avg", "map", "" */
    int         open_clip;  /* open_clip TimmModel: its head lives beside the trunk */
    const char *proj;       /* open_clip timm_proj: "linear", "mlp", "none", "" */
    int         proj_bias;
    int64_t     embed_dim, image_size;
} timm_cfg;

static int has_word(const char *name, const char *w)
{
    return strstr(name, w) != NULL;
}

/* Heads of a timm model name: "vit_base_patch16_224" -> 12. 0 if unknown. */
static int64_t heads_from_name(const char *name, int64_t d)
{
    /* vit_base_patch16_gap_224 is the one base model with 16 heads (registered
     * with num_heads=16 in vision_transformer.py). */
    if (!strcmp(name, "vit_base_patch16_gap_224"))
        return 16;
    const char *s = NULL;
    if (!strncmp(name, "vit_", 4))
        s = name + 4;
    else if (!strncmp(name, "deit3_", 6))
        s = name + 6;
    else if (!strncmp(name, "deit_", 5))
        s = name + 5;
    if (!s)
        return 0;
    for (size_t i = 0; i < sizeof timm_sizes / sizeof timm_sizes[0]; i++) {
        size_t n = strlen(timm_sizes[i].name);
        if (!strncmp(s, timm_sizes[i].name, n) && s[n] == '_' && timm_sizes[i].d == d)
            return timm_sizes[i].heads;
    }
    return 0;
}

/* open_clip_config.json {"model_cfg": {"embed_dim", "vision_cfg": {...}},
 * "preprocess_cfg"} or timm's config.json {"architecture", "global_pool",
 * "model_args", "pretrained_cfg"}; a vtok config.json with "model_type":
 * "timm_vit" takes the timm form. */
static int read_cfg(const cJSON *cfg, timm_cfg *c, vtok_status *st)
{
    const cJSON *mc = cJSON_GetObjectItemCaseSensitive(cfg, "model_cfg");
    const char *name = NULL;
    int rc;
    c->top = cfg;
    c->pool = "";
    c->proj = "";
    if (mc) {
        c->where = "open_clip_config.json";
        c->open_clip = 1;
        const cJSON *vc = cJSON_GetObjectItemCaseSensitive(mc, "vision_cfg");
        if (!cJSON_IsObject(mc) || !cJSON_IsObject(vc))
            return vt_fail(st, VTOK_EFORMAT, "%s: model_cfg.vision_cfg is not an object",
                           c->where);
        /* open_clip model.py CLIPVisionCfg: timm_pool 'avg', timm_proj 'linear',
         * timm_proj_bias False, image_size 224 by default; BiomedCLIP sets
         * timm_pool "" and timm_proj "linear". */
        if ((rc = vt_opt_str(vc, "timm_model_name", NULL, &name, c->where, st)) ||
            (rc = vt_opt_str(vc, "timm_pool", "avg", &c->pool, c->where, st)) ||
            (rc = vt_opt_str(vc, "timm_proj", "linear", &c->proj, c->where, st)) ||
            (rc = vt_opt_bool(vc, "timm_proj_bias", 0, &c->proj_bias, c->where, st)) ||
            (rc = vt_opt_side(vc, "image_size", 224, &c->image_size, c->where, st)) ||
            (rc = vt_opt_int(mc, "embed_dim", 0, &c->embed_dim, c->where, st)))
            return rc;
        if (!name)
            return vt_fail(st, VTOK_EUNSUPPORTED,
                           "%s: vision_cfg has no timm_model_name (only open_clip towers with "
                           "a timm trunk are supported)", c->where);
    } else {
        c->where = "config.json";
        if ((rc = vt_opt_str(cfg, "architecture", NULL, &name, c->where, st)))
            return rc;
        if (!name)
            return vt_fail(st, VTOK_EFORMAT, "%s: no \"architecture\" (the timm model name)",
                           c->where);
        c->args = cJSON_GetObjectItemCaseSensitive(cfg, "model_args");
        if (c->args && !cJSON_IsObject(c->args))
            return vt_fail(st, VTOK_EFORMAT, "%s: model_args is not an object", c->where);
        /* save_config_for_hf writes the model's global_pool when it is set */
        if ((rc = vt_opt_str(cfg, "global_pool", "", &c->pool, c->where, st)))
            return rc;
    }
    const char *dot = strchr(name, '.');
    size_t n = dot ? (size_t)(dot - name) : strlen(name);
    if (n == 0 || n >= sizeof c->name)
        return vt_fail(st, VTOK_EFORMAT, "%s: bad timm model name '%s'", c->where, name);
    memcpy(c->name, name, n);
    c->name[n] = '\0';
    if (strncmp(c->name, "vit_", 4) && strncmp(c->name, "deit_", 5) &&
        strncmp(c->name, "deit3_", 6))
        return vt_fail(st, VTOK_EUNSUPPORTED,
                       "%s: timm model '%s' is not a VisionTransformer (vit_*, deit_*)",
                       c->where, c->name);
    if (c->args) { /* timm create_model kwargs win over the defaults below */
        const char *gp = NULL;
        if ((rc = vt_opt_str(c->args, "global_pool", NULL, &gp, c->where, st)))
            return rc;
        if (gp && !c->open_clip)
            c->pool = gp;
    }
    return 0;
}

/* The model's own default pool: VisionTransformer(global_pool='token'),
 * 'avg' for the *_gap_* models, 'map' for the SigLIP towers. */
static const char *default_pool(const timm_cfg *c)
{
    if (has_word(c->name, "_gap"))
        return "avg";
    if (has_word(c->name, "siglip"))
        return "map";
    return "token";
}

/* Tensors of timm options vit.c does not run: refuse rather than ignore. */
static int check_unsupported(vt_loader *ld, int64_t n_layers)
{
    static const char *const names[] = {
        "attn.q_norm.weight", "attn.k_norm.weight", "attn.norm.weight", "mlp.norm.weight",
    };
    char b[160];
    if (vt_find(ld, "patch_embed.norm.weight"))
        return vt_loader_fail(ld, VTOK_EUNSUPPORTED,
                              "timm ViT: patch_embed.norm (embed norm) is not supported");
    for (int64_t i = 0; i < n_layers; i++)
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
            snprintf(b, sizeof b, "blocks.%lld.%s", (long long)i, names[k]);
            if (vt_find(ld, b))
                return vt_loader_fail(ld, VTOK_EUNSUPPORTED,
                                      "timm ViT: %s (qk_norm / scale_norm) is not supported", b);
        }
    return 0;
}

/* name.weight [n_out, n_in] with name.bias when the checkpoint has one. */
static void get_linear_opt_bias(vt_loader *ld, vt_linear *l, const char *name, int64_t n_out,
                                int64_t n_in)
{
    char b[200];
    snprintf(b, sizeof b, "%s.bias", name);
    vt_get_linear(ld, l, name, n_out, n_in, vt_find(ld, b) != NULL);
}

static void load_block(vt_vit *v, vt_loader *ld, int64_t i)
{
    vt_vit_layer *L = &v->layers[i];
    int64_t d = v->d, h = v->d_ff;
    char b[160];
#define N(s) (snprintf(b, sizeof b, "blocks.%lld." s, (long long)i), b)
    vt_get_norm(ld, &L->ln1, N("norm1"), d, v->eps);
    get_linear_opt_bias(ld, &L->qkv, N("attn.qkv"), 3 * d, d);   /* qkv_bias */
    get_linear_opt_bias(ld, &L->o, N("attn.proj"), d, d);        /* proj_bias */
    L->ls1 = vt_get_opt(ld, N("ls1.gamma"), 1, d, 0, 0, 0);      /* init_values */
    vt_get_norm(ld, &L->ln2, N("norm2"), d, v->eps);
    get_linear_opt_bias(ld, &L->fc1, N("mlp.fc1"), h, d);
    get_linear_opt_bias(ld, &L->fc2, N("mlp.fc2"), d, h);
    L->ls2 = vt_get_opt(ld, N("ls2.gamma"), 1, d, 0, 0, 0);
#undef N
}

/* open_clip's head (visual.head.proj) sits beside visual.trunk.: read it when
 * the prefix ends in "trunk." and the head is a plain Linear. */
static int load_open_clip_head(vt_vit *v, vt_loader *ld, const timm_cfg *c)
{
    const char *pre = ld->src.prefix;
    size_t pl = strlen(pre), tail = strlen("trunk.");
    if (!c->open_clip || strcmp(c->proj, "linear") != 0 || pl < tail ||
        strcmp(pre + pl - tail, "trunk.") != 0)
        return 0;
    char w[512], bn[512];
    snprintf(w, sizeof w, "%.*shead.proj.weight", (int)(pl - tail), pre);
    snprintf(bn, sizeof bn, "%.*shead.proj.bias", (int)(pl - tail), pre);
    vt_wsrc top = ld->src;
    top.prefix = "";
    const vt_st_tensor *t = vt_wsrc_find(&top, w, NULL);
    if (!t || ld->err)
        return ld->err; /* a trunk saved alone: no embeds */
    int64_t pd = t->n_dims == 2 ? t->shape[0] : 0;
    if (c->embed_dim && pd != c->embed_dim)
        return vt_loader_fail(ld, VTOK_ESHAPE, "%s: embed_dim %lld but %s has %lld rows",
                              c->where, (long long)c->embed_dim, w, (long long)pd);
    ld->src.prefix = "";
    v->proj.w = vt_get(ld, w, 2, pd, v->d, 0, 0);
    if (c->proj_bias)
        v->proj.b = vt_get(ld, bn, 1, pd, 0, 0, 0);
    v->proj.n_out = pd;
    v->proj.n_in = v->d;
    ld->src.prefix = pre;
    return ld->err;
}

static int timm_load(vt_vit *v, vt_loader *ld, const cJSON *cfg)
{
    timm_cfg c;
    memset(&c, 0, sizeof c);
    vtok_status *st = ld->st;
    int rc = read_cfg(cfg, &c, st);
    if (rc)
        return rc;

    /* patch_embed.proj: Conv2d(in_chans, embed_dim, patch, stride=patch) */
    int64_t ps[4] = {-1, -1, -1, -1};
    v->patch_w = vt_get_shape(ld, "patch_embed.proj.weight", 4, ps);
    if (!v->patch_w)
        return vt_loader_finish(ld);
    if (ps[2] != ps[3])
        return vt_loader_fail(ld, VTOK_EUNSUPPORTED, "timm ViT: non-square patch %lldx%lld",
                              (long long)ps[2], (long long)ps[3]);
    v->d = ps[0];
    v->channels = ps[1];
    v->patch = ps[2];
    int64_t d = v->d;

    int64_t heads = heads_from_name(c.name, d);
    double eps = has_word(c.name, "_clip_") ? 1e-5 : 1e-6;
    const char *act = has_word(c.name, "quickgelu") ? "quick_gelu" : "gelu";
    if ((rc = vt_opt_int(c.args, "num_heads", heads, &heads, c.where, st)) ||
        (rc = vt_opt_int(c.top, "num_heads", heads, &heads, c.where, st)) ||
        (rc = vt_opt_float(c.top, "layer_norm_eps", eps, &eps, c.where, st)) ||
        (rc = vt_opt_str(c.top, "hidden_act", act, &act, c.where, st)))
        return rc;
    if (heads <= 0)
        return vt_fail(st, VTOK_EUNSUPPORTED,
                       "%s: cannot tell the head count of timm model '%s' (width %lld): add "
                       "\"num_heads\"", c.where, c.name, (long long)d);
    int a = vt_act_from_name(act);
    if (a < 0)
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: unsupported hidden_act '%s'", c.where, act);
    v->n_heads = heads;
    v->eps = (float)eps;
    v->act = (vt_act)a;

    /* depth: the blocks present (timm numbers them from 0, nn.Sequential) */
    int64_t L = 0;
    char bn[64];
    for (; L < 4096; L++) {
        snprintf(bn, sizeof bn, "blocks.%lld.norm1.weight", (long long)L);
        if (!vt_find(ld, bn))
            break;
    }
    if (L == 0)
        return vt_loader_fail(ld, VTOK_EUNSUPPORTED,
                              "timm ViT: no blocks.0.norm1.weight (not a plain ViT block stack)");
    v->n_layers = L;
    const vt_st_tensor *fc1 = vt_find(ld, "blocks.0.mlp.fc1.weight");
    v->d_ff = fc1 && fc1->n_dims == 2 ? fc1->shape[0] : 0;
    if (check_unsupported(ld, L))
        return ld->err;

    v->patch_b = vt_get_opt(ld, "patch_embed.proj.bias", 1, d, 0, 0, 0); /* not pre_norm */
    v->cls = vt_get_opt(ld, "cls_token", 3, 1, 1, d, 0);
    const vt_st_tensor *reg = vt_find(ld, "reg_token");
    if (reg) {
        v->n_reg = reg->n_dims == 3 ? reg->shape[1] : 0;
        v->reg = vt_get(ld, "reg_token", 3, 1, v->n_reg, d, 0);
    }
    /* pos_embed rows: prefix tokens + grid, or the grid alone (no_embed_class) */
    const vt_st_tensor *pt = vt_find(ld, "pos_embed");
    int64_t prefix = (v->cls ? 1 : 0) + v->n_reg;
    if (pt && pt->n_dims == 3) {
        int64_t rows = pt->shape[1];
        int64_t g = (int64_t)llround(sqrt((double)rows));
        if (prefix && g * g == rows)
            prefix = 0;
    }
    vt_get_pos_table(v, ld, "pos_embed", 1, prefix);
    v->image_size = v->grid_h * v->patch;
    v->pos_interp = VT_POS_FIXED;
    if (!ld->err && c.open_clip && c.image_size != v->image_size)
        return vt_loader_fail(ld, VTOK_ESHAPE, "%s: image_size %lld but pos_embed is for "
                              "%lldx%lld patches of %lld", c.where, (long long)c.image_size,
                              (long long)v->grid_h, (long long)v->grid_w, (long long)v->patch);
    if (vt_find(ld, "norm_pre.weight")) /* pre_norm=True (the *_clip_* towers) */
        vt_get_norm(ld, &v->pre_ln, "norm_pre", d, v->eps);
    if (ld->err || (rc = vt_vit_check(v, st)))
        return ld->err ? ld->err : rc;

    if (vt_vit_alloc_layers(v, ld, v->n_layers))
        return ld->err;
    for (int64_t i = 0; i < v->n_layers && !ld->err; i++)
        load_block(v, ld, i);

    /* Outputs (see the top of the file). */
    int has_norm = vt_find(ld, "norm.weight") != NULL;
    int has_fc_norm = vt_find(ld, "fc_norm.weight") != NULL;
    const char *pool = *c.pool ? c.pool : default_pool(&c);
    int token = !strcmp(pool, "token") && v->cls;
    if (has_norm)
        vt_get_norm(ld, &v->post_ln, "norm", d, v->eps);
    if (token && has_fc_norm && !has_norm) {
        vt_get_norm(ld, &v->post_ln, "fc_norm", d, v->eps);
        v->pool = VT_POOL_CLS_LN;    /* last = h, pooler = fc_norm(h[:, 0]) */
    } else if (token && !has_fc_norm) {
        v->pool = has_norm ? VT_POOL_CLS : VT_POOL_NONE;
    } else {
        v->pool = VT_POOL_NONE;      /* last = norm(h), or h without a norm */
        token = 0;
    }
    if (v->pool == VT_POOL_NONE && !has_norm)
        memset(&v->post_ln, 0, sizeof v->post_ln);
    if (token && v->pool != VT_POOL_NONE && !ld->err)
        load_open_clip_head(v, ld, &c);
    return ld->err;
}

static const char *const timm_types[] = {"timm_vit", NULL};
static const char *const timm_composite[] = {NULL};

const vt_family vt_family_timm_vit = {
    .arch = "timm_vit",
    .anchor = "patch_embed.proj.weight",
    .model_types = timm_types,
    .composite_types = timm_composite,
    .load = timm_load,
};
