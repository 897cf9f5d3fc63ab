/*
 * model.c - the public model/context API: load a Hugging Face folder, pick
 * the family by config.json's model_type, pack its Linear weights for the
 * GEMM kernels, size a context's memory before a forward pass (so the pass
 * itself never allocates), run it, hand out views.
 */
#include "family.h"
#include "pack.h"

#include "../core/ctx.h"
#include "../recipes/recipe_internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const vt_family *const families[] = {
    &vt_family_clip, &vt_family_siglip, &vt_family_dinov2, &vt_family_vit, &vt_family_blip2,
    &vt_family_eva, &vt_family_timm_vit,
};

#define MAX_CONFIG_BYTES (16u << 20)

struct vtok_model {
    vt_weights      *w;
    cJSON           *config;
    const vt_family *fam;
    vt_vit           vit;
    char             model_type[64];
    char             prefix[256];
    const char      *act_name;
    vtok_model_info  info;
    void            *packed;       /* every converted Linear weight, one block */
    int64_t          lp_max_in;    /* widest low-precision Linear input (0: none) */
    vt_recipe       *own;          /* the model as a one-encoder recipe: contexts run on it */
};

/* A context is a recipe context over the model's own one-encoder recipe
 * (recipes/run.c does the planning and running); vtok_encode only turns its
 * params into the encoder's hidden-state request and reads the stages. */
struct vtok_ctx {
    vtok_model      *m;
    vtok_recipe_ctx *rc;
    int64_t         *req;     /* n_layers + 1: the hidden states of this encode */
    int              ok;      /* last encode succeeded */
    vtok_status      st;
};

void vtok_model_params_init(vtok_model_params *p, size_t size)
{
    const vtok_model_params d = {.size = sizeof d, .use_mmap = 1, .dtype = VTOK_DTYPE_F32};
    vt_params_init(p, size, &d, sizeof d);
}

void vtok_encode_params_init(vtok_encode_params *p, size_t size)
{
    const vtok_encode_params d = {.size = sizeof d, .all_layers = 0, .layers = NULL,
                                  .n_layers = 0};
    vt_params_init(p, size, &d, sizeof d);
}

static int has_type(const char *const *list, const char *t)
{
    for (; *list; list++)
        if (!strcmp(*list, t))
            return 1;
    return 0;
}

/* config.json and the weights path for `path` (a folder or a config.json). */
static int resolve_paths(const char *path, char *cfg, char *weights, size_t n, vtok_status *st)
{
    if (vt_is_dir(path)) {
        if (snprintf(cfg, n, "%s/config.json", path) >= (int)n)
            return vt_fail(st, VTOK_EINVAL, "path too long: %s", path);
        /* an open_clip hub folder has open_clip_config.json instead (timm_vit.c) */
        struct stat sb;
        if (stat(cfg, &sb) != 0 &&
            snprintf(cfg, n, "%s/open_clip_config.json", path) < (int)n && stat(cfg, &sb) != 0)
            snprintf(cfg, n, "%s/config.json", path);
        snprintf(weights, n, "%s", path);
        return 0;
    }
    const char *slash = strrchr(path, '/');
    if (!slash || (strcmp(slash + 1, "config.json") != 0 &&
                   strcmp(slash + 1, "open_clip_config.json") != 0))
        return vt_fail(st, VTOK_EIO, "%s: not a model folder", path);
    snprintf(cfg, n, "%s", path);
    snprintf(weights, n, "%.*s", (int)(slash - path), path);
    return 0;
}

static void fill_info(vtok_model *m)
{
    const vt_vit *v = &m->vit;
    vtok_model_info *i = &m->info;
    i->arch = m->fam->arch;
    i->model_type = m->model_type;
    i->weight_dtype = "F32";
    char name[512];
    snprintf(name, sizeof name, "%s%s", m->prefix, m->fam->anchor);
    const vt_st_tensor *t = vt_weights_find(m->w, name);
    if (t)
        i->weight_dtype = vt_dtype_name(t->dtype);
    i->hidden_size = v->d;
    i->intermediate_size = v->d_ff;
    i->n_layers = v->n_layers;
    i->n_heads = v->n_heads;
    i->patch_size = v->patch;
    i->image_size = v->image_size;
    i->n_channels = v->channels;
    i->n_prefix_tokens = (v->cls ? 1 : 0) + v->n_reg;
    i->projection_dim = v->proj.n_out ? v->proj.n_out : 0;
    i->has_pooler = v->pool != VT_POOL_NONE;
    i->any_size = v->pos_interp;
    i->hidden_act = v->swiglu ? "swiglu" : vt_act_name(v->act);
    i->layer_norm_eps = v->eps;
    /* Every stored tensor of the tower (plus its projection) counts. */
    int64_t np = v->proj.n_out ? v->proj.n_out * v->proj.n_in : 0;
    size_t pl = strlen(m->prefix);
    for (int64_t k = 0; k < vt_weights_count(m->w); k++) {
        const vt_st_tensor *x = vt_weights_at(m->w, k);
        if (strncmp(x->name, m->prefix, pl) == 0 && x->dtype != VT_I64)
            np += x->numel;
    }
    i->n_params = np;
}

/* ---- Linear weights converted at load (pack.c) ---- */

/* The vt_linear fields of v that vit.c runs as a whole, each once. Not
 * head_in: vit.c runs slices of it (the query row, the key/value rows) as
 * Linears of their own, which must not and do not carry a packed copy. */
static int64_t list_linears(vt_vit *v, vt_linear **out)
{
    int64_t n = 0;
#define ADD(x) \
    do { \
        if ((x).w && (x).n_out > 0 && (x).n_in > 0) { \
            if (out) \
                out[n] = &(x); \
            n++; \
        } \
    } while (0)
    for (int64_t i = 0; v->layers && i < v->n_layers; i++) {
        vt_vit_layer *L = &v->layers[i];
        ADD(L->q);
        ADD(L->k);
        ADD(L->v);
        ADD(L->qkv);
        ADD(L->o);
        ADD(L->fc1);
        ADD(L->fc1_up);
        ADD(L->fc2);
    }
    ADD(v->pool_dense);
    ADD(v->proj);
    ADD(v->head_out);
    ADD(v->head_fc1);
    ADD(v->head_fc2);
#undef ADD
    return n;
}

static int pack_linears(vtok_model *m, const vtok_model_params *p, vtok_status *st)
{
    int64_t n = list_linears(&m->vit, NULL);
    if (n == 0)
        return 0;
    vt_linear **l = malloc((size_t)n * sizeof *l);
    if (!l)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    list_linears(&m->vit, l);
    vt_wsrc src = vt_wsrc_one(m->w, NULL, NULL);
    int rc = vt_pack_linears(l, n, p->dtype, &src, p->threadpool, p->n_threads, &m->packed,
                             &m->lp_max_in, st);
    free(l);
    return rc;
}

int vtok_dtype_from_name(const char *name)
{
    static const char *const names[] = {"f32", "bf16", "int8", "q4"};
    for (int i = 0; name && i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    if (name && strcmp(name, "float32") == 0)
        return VTOK_DTYPE_F32;
    if (name && strcmp(name, "bfloat16") == 0)
        return VTOK_DTYPE_BF16;
    return -1;
}

const char *vtok_dtype_name(int dtype)
{
    switch (dtype) {
    case VTOK_DTYPE_F32:  return "f32";
    case VTOK_DTYPE_BF16: return "bf16";
    case VTOK_DTYPE_INT8: return "int8";
    case VTOK_DTYPE_Q4:   return "q4";
    }
    return "unknown";
}

/* Shared by both loaders: parse the config text (labelled `cfg_name` in
 * messages), open the weights (a path, or wbuf when path is NULL), load the
 * family, convert the Linears. */
static vtok_model *load_model(const char *cfg_name, const char *text, size_t len,
                              const char *w_path, const void *wbuf, size_t wsize,
                              const char *prefix, const vtok_model_params *p, vtok_status *st)
{
    vtok_model *m = calloc(1, sizeof *m);
    if (!m) {
        vt_fail(st, VTOK_ENOMEM, "out of memory");
        return NULL;
    }
    cJSON *empty = NULL;
    if (p->dtype < VTOK_DTYPE_F32 || p->dtype > VTOK_DTYPE_Q4) {
        vt_fail(st, VTOK_EINVAL, "unknown dtype %d", p->dtype);
        goto fail;
    }
    if (!(m->config = vt_json_parse_object(text, len, cfg_name, st)))
        goto fail;
    const char *mt = NULL;
    if (vt_opt_str(m->config, "model_type", NULL, &mt, "config.json", st))
        goto fail;
    /* No model_type: timm's hub config.json ("architecture") or open_clip's
     * open_clip_config.json ("model_cfg") describe a timm tower (timm_vit.c). */
    if (!mt && (cJSON_GetObjectItemCaseSensitive(m->config, "architecture") ||
                cJSON_GetObjectItemCaseSensitive(m->config, "model_cfg")))
        mt = "timm_vit";
    if (!mt) {
        vt_fail(st, VTOK_EFORMAT, "%s: no model_type", cfg_name);
        goto fail;
    }
    snprintf(m->model_type, sizeof m->model_type, "%s", mt);
    for (size_t i = 0; i < sizeof families / sizeof families[0] && !m->fam; i++)
        if (has_type(families[i]->model_types, mt))
            m->fam = families[i];
    if (!m->fam) {
        vt_fail(st, VTOK_EUNSUPPORTED, "unsupported architecture: model_type '%s'", mt);
        goto fail;
    }
    const cJSON *vcfg = m->config;
    if (has_type(m->fam->composite_types, mt)) {
        vcfg = cJSON_GetObjectItemCaseSensitive(m->config, "vision_config");
        if (vcfg && !cJSON_IsObject(vcfg)) {
            vt_fail(st, VTOK_EFORMAT, "%s: vision_config is not an object", cfg_name);
            goto fail;
        }
        if (!vcfg) /* absent: every value is the class default */
            vcfg = empty = cJSON_CreateObject();
    }
    if (w_path ? vt_weights_open(w_path, p->use_mmap, &m->w, st)
               : vt_weights_open_mem(wbuf, wsize, "weights in memory", &m->w, st))
        goto fail;
    if (prefix) { /* the caller names the tower's prefix (a checkpoint of several) */
        char anchor[600];
        snprintf(anchor, sizeof anchor, "%s%s", prefix, m->fam->anchor);
        if (!vt_weights_find(m->w, anchor)) {
            vt_fail(st, VTOK_EMISSING, "no vision tower found under '%s' (no %s)", prefix,
                    anchor);
            goto fail;
        }
        snprintf(m->prefix, sizeof m->prefix, "%s", prefix);
    } else if (vt_find_prefix(m->w, m->fam->anchor, m->prefix, sizeof m->prefix, st)) {
        goto fail;
    }
    vt_wsrc src = vt_wsrc_one(m->w, w_path ? w_path : "weights in memory", m->prefix);
    vt_loader ld;
    vt_loader_init(&ld, &src, NULL, &m->vit.own, st);
    int rc = m->fam->load(&m->vit, &ld, vcfg);
    if (!rc)
        rc = vt_loader_finish(&ld);
    if (rc) {
        if (!st->code)
            vt_fail(st, rc, "failed to load %s", w_path ? w_path : cfg_name);
        goto fail;
    }
    cJSON_Delete(empty);
    empty = NULL;
    fill_info(m);
    m->info.compute_dtype = vtok_dtype_name(p->dtype);
    if (pack_linears(m, p, st))
        goto fail;
    m->vit.attn_lowp = p->dtype != VTOK_DTYPE_F32;
    if (!(m->own = vt_recipe_for_model(m, &m->vit, p->dtype, m->lp_max_in, st)))
        goto fail;
    return m;

fail:
    cJSON_Delete(empty);
    vtok_model_free(m);
    return NULL;
}

vtok_model *vt_model_load_weights(const char *folder, const char *weights, const char *prefix,
                                  const vtok_model_params *p, vtok_status *st)
{
    char cfg_path[4096], w_path[4096];
    if (resolve_paths(folder, cfg_path, w_path, sizeof cfg_path, st))
        return NULL;
    char *text = NULL;
    size_t len = 0;
    if (vt_read_file(cfg_path, MAX_CONFIG_BYTES, &text, &len, st))
        return NULL;
    vtok_model *m = load_model(cfg_path, text, len, weights ? weights : w_path, NULL, 0, prefix,
                               p, st);
    free(text);
    return m;
}

vtok_model *vtok_model_load(const char *path, const vtok_model_params *p, vtok_status *st)
{
    vtok_status local;
    if (!st)
        st = &local;
    st->code = 0;
    st->msg[0] = '\0';
    vtok_model_params mp = vtok_model_default_params();
    if (vt_params_read(&mp, sizeof mp, p, "vtok_model_params", st))
        return NULL;
    if (!path || !*path) {
        vt_fail(st, VTOK_EINVAL, "no model path given");
        return NULL;
    }
    return vt_model_load_weights(path, NULL, NULL, &mp, st);
}

vtok_model *vtok_model_load_from_memory(const void *weights, size_t weights_size,
                                        const char *config_json, size_t config_len,
                                        const vtok_model_params *p, vtok_status *st)
{
    vtok_status local;
    if (!st)
        st = &local;
    st->code = 0;
    st->msg[0] = '\0';
    vtok_model_params mp = vtok_model_default_params();
    if (vt_params_read(&mp, sizeof mp, p, "vtok_model_params", st))
        return NULL;
    if (!weights || !weights_size || !config_json) {
        vt_fail(st, VTOK_EINVAL, "vtok_model_load_from_memory: no weights or no config");
        return NULL;
    }
    if (config_len > MAX_CONFIG_BYTES) {
        vt_fail(st, VTOK_ELIMIT, "config in memory: %zu bytes, over the limit of %u",
                config_len, MAX_CONFIG_BYTES);
        return NULL;
    }
    return load_model("config in memory", config_json, config_len, NULL, weights, weights_size,
                      NULL, &mp, st);
}

void vtok_model_free(vtok_model *m)
{
    if (!m)
        return;
    vtok_recipe_free(m->own);
    vt_vit_free(&m->vit);
    vt_free(m->packed);
    vt_weights_close(m->w);
    cJSON_Delete(m->config);
    free(m);
}

const vt_vit *vt_model_vit(const vtok_model *m)
{
    return m ? &m->vit : NULL;
}

int vt_model_set_pos_interp(vtok_model *m, int kind)
{
    if (!m || !m->vit.pos || m->vit.pos_interp)
        return m && m->vit.pos_interp == kind ? 0 : VTOK_EUNSUPPORTED;
    m->vit.pos_interp = kind;
    m->vit.pos_offset = 0.0; /* size= rule */
    return 0;
}

int64_t vt_model_lp_max_in(const vtok_model *m)
{
    return m ? m->lp_max_in : 0;
}

int64_t vt_vit_linears(vt_vit *v, vt_linear **out)
{
    return list_linears(v, out);
}

int vtok_model_get_info(const vtok_model *m, vtok_model_info *info)
{
    if (!m || !info)
        return VTOK_EINVAL;
    *info = m->info;
    return 0;
}

/* ---- context ---- */

vtok_ctx *vtok_ctx_new(vtok_model *m, const vtok_ctx_params *p, vtok_status *st)
{
    if (!m) {
        vt_fail(st, VTOK_EINVAL, "no model");
        return NULL;
    }
    vtok_ctx *c = calloc(1, sizeof *c);
    if (!c || !(c->req = calloc((size_t)m->vit.n_layers + 1, sizeof *c->req))) {
        vtok_ctx_free(c);
        vt_fail(st, VTOK_ENOMEM, "out of memory creating a context");
        return NULL;
    }
    if (!(c->rc = vtok_recipe_ctx_new(m->own, p, st))) {
        vtok_ctx_free(c);
        return NULL;
    }
    c->m = m;
    return c;
}

void vtok_ctx_free(vtok_ctx *ctx)
{
    if (!ctx)
        return;
    vtok_recipe_ctx_free(ctx->rc);
    free(ctx->req);
    free(ctx);
}

const char *vtok_ctx_errmsg(const vtok_ctx *ctx)
{
    return ctx ? ctx->st.msg : "no context";
}

/* Checks whose messages name the model's terms, then the run on the model's
 * own recipe with the hidden states the params ask for. */
static int encode(vtok_ctx *ctx, const float *pixels, int64_t n, int64_t c, int64_t h, int64_t w,
                  const vtok_encode_params *user_p, int *ran)
{
    vtok_encode_params ep = vtok_encode_default_params();
    int rc = vt_params_read(&ep, sizeof ep, user_p, "vtok_encode_params", &ctx->st);
    if (rc)
        return rc;
    const vtok_encode_params *p = &ep;
    const vt_vit *v = &ctx->m->vit;
    if (!pixels || n < 1 || n > 1 << 20)
        return vt_fail(&ctx->st, VTOK_EINVAL, "pixels must be a non-empty batch");
    if (c != v->channels)
        return vt_fail(&ctx->st, VTOK_ESHAPE, "pixels have %lld channels, the model takes %lld",
                       (long long)c, (long long)v->channels);
    if (vt_vit_tokens(v, h, w, &ctx->st) <= 0)
        return ctx->st.code;

    /* Which hidden states to keep: ascending, each once. */
    int64_t L = v->n_layers, n_req = 0;
    if (!p->all_layers && p->n_layers > 0 && !p->layers)
        return vt_fail(&ctx->st, VTOK_EINVAL, "layers is NULL");
    for (int i = 0; !p->all_layers && i < p->n_layers; i++) {
        int64_t li = p->layers[i] < 0 ? L + 1 + p->layers[i] : p->layers[i];
        if (li < 0 || li > L)
            return vt_fail(&ctx->st, VTOK_EINVAL,
                           "layer %d out of range: the model has hidden states 0..%lld",
                           p->layers[i], (long long)L);
    }
    for (int64_t li = 0; li <= L; li++) {
        int want = p->all_layers;
        for (int i = 0; !want && i < p->n_layers; i++)
            want = (p->layers[i] < 0 ? L + 1 + p->layers[i] : p->layers[i]) == li;
        if (want)
            ctx->req[n_req++] = li;
    }
    vt_recipe_ctx_set_request(ctx->rc, 0, ctx->req, n_req);
    *ran = 1; /* the recipe runtime logs its own failures */
    rc = vtok_recipe_run(ctx->rc, pixels, n, c, h, w, NULL);
    if (rc)
        ctx->st = *vt_recipe_ctx_status(ctx->rc);
    return rc;
}

int vtok_encode(vtok_ctx *ctx, const float *pixels, int64_t n, int64_t c, int64_t h, int64_t w,
                const vtok_encode_params *p)
{
    if (!ctx)
        return VTOK_EINVAL;
    ctx->ok = 0;
    ctx->st.code = 0;
    ctx->st.msg[0] = '\0';
    int ran = 0;
    int rc = encode(ctx, pixels, n, c, h, w, p, &ran);
    if (rc && !ran)
        vt_recipe_ctx_end(ctx->rc, &ctx->st, rc);
    ctx->ok = rc == 0;
    return rc;
}

int vtok_get_output(vtok_ctx *ctx, vtok_output which, int layer, vtok_view *out)
{
    if (!ctx || !out)
        return VTOK_EINVAL;
    if (!ctx->ok)
        return vt_fail(&ctx->st, VTOK_EINVAL, "no successful encode on this context");
    const vt_vit *v = &ctx->m->vit;
    memset(out, 0, sizeof *out);
    switch (which) {
    case VTOK_OUT_LAST_HIDDEN:
        return vt_recipe_ctx_stage(ctx->rc, VT_ENC_OUT_LAST, out);
    case VTOK_OUT_HIDDEN_STATE: {
        int64_t li = layer < 0 ? v->n_layers + 1 + layer : layer;
        if (li < 0 || li > v->n_layers || vt_recipe_ctx_hidden(ctx->rc, li, out))
            return vt_fail(&ctx->st, VTOK_EMISSING, "hidden state %d was not kept", layer);
        return 0;
    }
    case VTOK_OUT_POOLER:
        if (vt_recipe_ctx_stage(ctx->rc, VT_ENC_OUT_POOLER, out))
            return vt_fail(&ctx->st, VTOK_EMISSING, "this model has no pooler_output");
        return 0;
    case VTOK_OUT_IMAGE_EMBEDS:
        if (vt_recipe_ctx_stage(ctx->rc, VT_ENC_OUT_EMBEDS, out))
            return vt_fail(&ctx->st, VTOK_EMISSING, "this model has no image projection");
        return 0;
    }
    return vt_fail(&ctx->st, VTOK_EINVAL, "unknown output %d", (int)which);
}
