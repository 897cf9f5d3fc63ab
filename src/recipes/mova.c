/*
 * mova.c - the MoVA connector (TempleX98/MoVA; spec mova-slime-llava.md
 * section 2). The recipe's encoder is the base CLIP at 672 (48 x 48 patch
 * tokens, hidden_states[select_layer] without CLS); the connector owns the
 * rest, per image (MoVA runs batch 1):
 *
 *   text     BERT [CLS] of "question 0: " + prompt.lower() + "\n\n"
 *            (mova/model/multimodal_projector/builder.py, the text given to
 *            the adapter's text encoder; BertTokenizer, right truncation at
 *            the model's positions)
 *   experts  for each expert the run's routing turns on (vtok_run_params
 *            cond: MoVA's routing_weights, one float per expert in the
 *            adapter's order, 0 = off; n_cond 0 = all off, the routing
 *            pass): its input from the image, its forward, its map resized
 *            bilinearly to 48 x 48 (mova_encoder.py feature_align). Experts
 *            load on first use (prepare): one routing never picks is neither
 *            loaded nor run.
 *   tokens   the MoV-Adapter (connectors/mov_adapter.h) -> 576 tokens
 *   routing  their 2 x 2 average (adaptive_avg_pool2d 24 -> 12, arch.py's
 *            has_routing branch): the 144 tokens of the routing prompt.
 *
 * The routing pass and the answer pass are two runs: first with no routing
 * (read the "routing" stage, generate the LLM's routing answer, parse it
 * with vtok_recipe_parse_routing), then with the mask. The base encoder
 * runs in both (MoVA caches it; a context that kept it is future work).
 *
 * Expert inputs ("input" of each expert):
 *   "base"     the base encoder's pixels (CLIP-normalised 672) resized
 *              bilinearly to "resize" (BiomedCLIP: 224, mova_encoder.py)
 *   "image"    the expert's own processor on the image ("processor": its
 *              folder's preprocessor_config.json or torchvision's pipeline,
 *              recipe keys merged over it), then optionally "resize"
 *              (DINOv2: 672 -> 518, F.interpolate bilinear, no antialias)
 *   "patches"  Pix2Struct's flattened patches (models/pix2struct.h) of the
 *              image padded to a square with CLIP's mean colour
 *              (expand2square with image_processor_4.image_mean).
 * Expert kinds ("type"): "vit" (an HF vision folder: DINOv2, BiomedCLIP
 * through open_clip/timm, ...; "layer" an HF hidden-state index or "last"
 * for last_hidden_state), more as their blocks land.
 *
 * Stages: text [n, d_text], experts [n, sum_e R^2 C_e] (each expert's
 * aligned map, expert after expert; zero when off), times_ms [n, 2 + E]
 * (wall ms of BERT, the adapter and each expert, 0 when not run: for
 * benchmarks), routing [n, 144, C], tokens [n, 576, C].
 */
#include "recipe.h"

#include "mova_route.h"

#include "../connectors/mov_adapter.h"
#include "../image/image.h"
#include "../models/bert.h"
#include "../models/family.h"
#include "../models/codetr.h"
#include "../models/p2s_enc.h"
#include "../models/sam.h"
#include "../models/pack.h"
#include "../models/pix2struct.h"
#include "../text/tokenizer.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { EXP_VIT, EXP_SAM, EXP_CODETR, EXP_P2S, EXP_N_KINDS };
enum { IN_BASE, IN_IMAGE, IN_PATCHES };
#define LAYER_LAST INT64_MIN

typedef struct {
    char         name[32];
    int          kind, input;
    char        *path;         /* its folder (absolute or under the model folder)  */
    const cJSON *json;         /* its recipe object (the recipe's JSON)            */
    int64_t      resize;       /* bilinear to resize x resize after the input (0: no) */
    int64_t      layer;        /* "vit": hidden state (HF index) or LAYER_LAST      */
    int64_t      max_patches, patch; /* "patches" */
    int          pad;          /* "patches": square-pad in CLIP's mean first (MoVA)  */
    const char  *prefix;       /* block experts: their tensors' prefix in the folder's weights */
    const char  *ckpt_prefix;  /* the expert's copy in the model folder's own checkpoint
                                  (MoVA's model.vision_tower.vision_tower_K.), tried first */
    /* on demand (prepare, under the state's lock) */
    int          loaded;
    vtok_model  *model;        /* "vit": an HF vision folder                        */
    const vt_vit *vit;
    vt_weights  *w;            /* block experts: the folder's weights, and ...     */
    void        *blk;          /*   the block (vt_p2s_enc, ...)                    */
    void        *packed;
    vt_owned     own;          /*   buffers its loader derived                     */
    vtok_processor *proc;
    int64_t      in_c, in_h, in_w;   /* its pixel input                               */
    int64_t      T, prefix_rows, d, side; /* raw output: T tokens (prefix rows dropped), width d */
    int64_t      lp_max_in;
} mova_expert;

typedef struct {
    int             enc;
    int64_t         layer;
    vt_mov_adapter  ad;
    vt_bert         bert;
    vt_tokenizer   *tok;
    int64_t         text_max;        /* BERT positions                      */
    int             n_exp;
    mova_expert     ex[VT_MOV_MAX_EXPERTS];
    pthread_mutex_t lock;
    int             lock_ok;
    char            model_dir[4096];
    int             use_mmap, dtype;
} mova_state;

static const char *const kind_names[] = {"vit", "sam", "codetr", "pix2struct", NULL};
static const char *const input_names[] = {"base", "image", "patches", NULL};

/* ---- setup ---- */

static int expert_setup(vt_recipe *r, mova_state *s, mova_expert *x, const cJSON *j,
                        int in_mova, const char *where, vtok_status *st)
{
    static const char *const keys[] = {"name", "type", "path", "input", "processor", "resize",
                                       "layer", "max_patches", "patch", "prefix", "config",
                                       "checkpoint_prefix", "_comment", NULL};
    const char *name = NULL, *path = NULL;
    int rc;
    if (!cJSON_IsObject(j))
        return vt_fail(st, VTOK_EFORMAT, "%s: each expert is an object", where);
    if ((rc = vt_opt_check_keys(j, keys, where, st)) ||
        (rc = vt_opt_str(j, "name", NULL, &name, where, st)) ||
        (rc = vt_opt_enum(j, "type", kind_names, EXP_VIT, &x->kind, where, st)) ||
        (rc = vt_opt_str(j, "path", NULL, &path, where, st)) ||
        (rc = vt_opt_enum(j, "input", input_names, IN_IMAGE, &x->input, where, st)) ||
        (rc = vt_opt_int(j, "resize", 0, &x->resize, where, st)) ||
        (rc = vt_opt_int(j, "max_patches", 2025, &x->max_patches, where, st)) ||
        (rc = vt_opt_int(j, "patch", 16, &x->patch, where, st)) ||
        (rc = vt_opt_str(j, "prefix", NULL, &x->prefix, where, st)) ||
        (rc = vt_opt_str(j, "checkpoint_prefix", NULL, &x->ckpt_prefix, where, st)))
        return rc;
    if (!name || !name[0] || strlen(name) >= sizeof x->name)
        return vt_fail(st, VTOK_EFORMAT, "%s: an expert needs a short 'name'", where);
    snprintf(x->name, sizeof x->name, "%s", name);
    if (!path)
        return vt_fail(st, VTOK_EFORMAT, "%s: expert %s needs a 'path'", where, name);
    const cJSON *lj = cJSON_GetObjectItemCaseSensitive(j, "layer");
    x->layer = -2;
    if (cJSON_IsString(lj) && !strcmp(lj->valuestring, "last"))
        x->layer = LAYER_LAST;
    else if (lj && (rc = vt_opt_int(j, "layer", -2, &x->layer, where, st)))
        return rc;
    if (x->resize < 0 || x->resize > 8192 || x->max_patches < 1 || x->max_patches > 1 << 16 ||
        x->patch < 1 || x->patch > 64)
        return vt_fail(st, VTOK_EFORMAT, "%s: expert %s: bad resize, max_patches or patch",
                       where, name);
    if ((x->input == IN_PATCHES) != (x->kind == EXP_P2S))
        return vt_fail(st, VTOK_EFORMAT, "%s: expert %s: 'patches' input goes with type "
                       "'pix2struct' and only with it", where, name);
    if (in_mova && x->kind == EXP_P2S &&
        vt_square_side(x->max_patches) * vt_square_side(x->max_patches) != x->max_patches)
        return vt_fail(st, VTOK_EFORMAT, "%s: expert %s: max_patches %lld is not a square (MoVA "
                       "reshapes the rows as one: 2025 = 45 x 45)", where, name,
                       (long long)x->max_patches);
    if ((x->kind == EXP_CODETR || x->kind == EXP_SAM) && x->input != IN_IMAGE)
        return vt_fail(st, VTOK_EFORMAT, "%s: expert %s takes 'image' input (the high-resolution "
                       "processor)", where, name);
    if (!x->prefix) /* the released checkpoints' own layouts */
        x->prefix = x->kind == EXP_P2S ? "encoder." : "";
    if (x->input == IN_BASE && !x->resize)
        return vt_fail(st, VTOK_EFORMAT, "%s: expert %s: input 'base' needs 'resize'", where,
                       name);
    size_t n = strlen(path) + strlen(s->model_dir) + 2;
    if (!(x->path = malloc(n)))
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    if (path[0] == '/')
        snprintf(x->path, n, "%s", path);
    else
        snprintf(x->path, n, "%s/%s", s->model_dir, path);
    x->json = j;
    x->pad = 1;
    (void)r;
    return 0;
}

static int mova_setup(vt_recipe *r, const cJSON *cfg, void *state, const cJSON **weights,
                      vtok_status *st)
{
    static const char *const keys[] = {"type", "encoder", "select_layer", "file", "prefix",
                                       "text_encoder", "experts", "adapter", "_comment",
                                       "_comment_experts", NULL};
    mova_state *s = state;
    char where[128];
    snprintf(where, sizeof where, "recipe %s: connector", vt_recipe_name(r));
    const char *enc = NULL;
    int rc;
    (void)weights;
    if ((rc = vt_opt_check_keys(cfg, keys, where, st)) ||
        (rc = vt_opt_str(cfg, "encoder", "clip", &enc, where, st)) ||
        (rc = vt_opt_int(cfg, "select_layer", -2, &s->layer, where, st)))
        return rc;
    if (pthread_mutex_init(&s->lock, NULL))
        return vt_fail(st, VTOK_ENOMEM, "cannot create a lock");
    s->lock_ok = 1;
    snprintf(s->model_dir, sizeof s->model_dir, "%s", vt_recipe_model_dir(r));
    vt_recipe_load_opts(r, &s->use_mmap, &s->dtype);
    const cJSON *ej = cJSON_GetObjectItemCaseSensitive(cfg, "experts");
    if (ej && !cJSON_IsArray(ej))
        return vt_fail(st, VTOK_EFORMAT, "%s: 'experts' must be a list", where);
    s->n_exp = cJSON_GetArraySize(ej);
    if (s->n_exp > VT_MOV_MAX_EXPERTS)
        return vt_fail(st, VTOK_EFORMAT, "%s: at most %d experts", where, VT_MOV_MAX_EXPERTS);
    for (int k = 0; k < s->n_exp; k++)
        if ((rc = expert_setup(r, s, &s->ex[k], cJSON_GetArrayItem(ej, k), 1, where, st)))
            return rc;
    /* the BERT's sizes and tokenizer come from a folder (bert-large-uncased) */
    const cJSON *tj = cJSON_GetObjectItemCaseSensitive(cfg, "text_encoder");
    static const char *const tkeys[] = {"path", "file", "prefix", "_comment", NULL};
    const char *tpath = NULL;
    if (!cJSON_IsObject(tj))
        return vt_fail(st, VTOK_EFORMAT, "%s: needs a 'text_encoder' object (path: the BERT "
                       "folder with config.json and the tokenizer)", where);
    if ((rc = vt_opt_check_keys(tj, tkeys, where, st)) ||
        (rc = vt_opt_str(tj, "path", "bert-large-uncased", &tpath, where, st)))
        return rc;
    char dir[4200];
    snprintf(dir, sizeof dir, tpath[0] == '/' ? "%s%s" : "%s/%s",
             tpath[0] == '/' ? "" : s->model_dir, tpath);
    if ((rc = vt_bert_read_config(&s->bert, dir, st)) || (rc = vt_tok_load(&s->tok, dir, st))) {
        vt_msg_prefix(st, where);
        return rc;
    }
    s->text_max = s->bert.c.max_pos;
    if ((s->enc = vt_recipe_encoder(r, enc, where, st)) < 0)
        return s->enc;
    return vt_recipe_request(r, s->enc, &s->layer, 1, where, st);
}

/* ---- load: the adapter (and BERT, from the text_encoder's own source) ---- */

typedef struct {
    mova_state *s;
} bert_part;

static int bert_load(void *arg, vt_loader *ld)
{
    mova_state *s = ((bert_part *)arg)->s;
    vt_bert_config c = s->bert.c;
    vt_bert_free(&s->bert);
    s->bert.c = c;
    return vt_bert_load_tensors(&s->bert, ld);
}

static void bert_unload(void *arg)
{
    mova_state *s = ((bert_part *)arg)->s;
    vt_bert_config c = s->bert.c;
    vt_bert_free(&s->bert);
    s->bert.c = c;
}

static int mova_load(vt_recipe *r, const cJSON *cfg, void *state, vt_loader *ld)
{
    mova_state *s = state;
    char where[128];
    snprintf(where, sizeof where, "recipe %s: connector", vt_recipe_name(r));
    int rc = vt_mov_adapter_load(&s->ad, ld, "", cJSON_GetObjectItemCaseSensitive(cfg, "adapter"),
                                 where);
    if (rc)
        return rc;
    if (!ld->err && s->ad.n_exp != s->n_exp)
        return vt_loader_fail(ld, VTOK_ESHAPE, "%s: the adapter has %lld experts, the recipe "
                              "lists %d", where, (long long)s->ad.n_exp, s->n_exp);
    if (!ld->err && s->ad.d_text != s->bert.c.hidden)
        return vt_loader_fail(ld, VTOK_ESHAPE, "%s: the adapter's gate takes %lld text "
                              "features, the BERT gives %lld", where, (long long)s->ad.d_text,
                              (long long)s->bert.c.hidden);
    return ld->err;
}

static void mova_unload(void *state)
{
    mova_state *s = state;
    vt_mov_adapter_free(&s->ad);
}

static int64_t mova_linears(void *state, vt_linear **l)
{
    mova_state *s = state;
    return vt_mov_adapter_linears(&s->ad, l);
}

/* The text encoder, after the adapter (load_more): config and tokenizer
 * from its folder (setup), tensors from "file" / "prefix" (default the
 * checkpoint's fine-tuned copy, model.mm_projector.text_encoder.bert.). */
static int mova_load_text(vt_recipe *r, void *state, const cJSON *cfg, vtok_status *st)
{
    mova_state *s = state;
    char where[128];
    snprintf(where, sizeof where, "recipe %s: text_encoder", vt_recipe_name(r));
    const cJSON *tj = cJSON_GetObjectItemCaseSensitive(cfg, "text_encoder");
    cJSON *file = NULL, *prefix = NULL;
    const cJSON *fj = cJSON_GetObjectItemCaseSensitive(tj, "file");
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(tj, "prefix");
    if (!fj)
        fj = file = cJSON_CreateString(".");
    if (!pj)
        pj = prefix = cJSON_CreateString("model.mm_projector.text_encoder.bert.");
    if (!fj || !pj) {
        cJSON_Delete(file);
        cJSON_Delete(prefix);
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    }
    bert_part bp = {s};
    vt_wsrc src;
    int rc = vt_recipe_load_part(r, fj, pj, where, bert_load, bert_unload, &bp, &src, st);
    cJSON_Delete(file);
    cJSON_Delete(prefix);
    if (rc)
        return rc;
    const int64_t n = vt_bert_linears(&s->bert, NULL);
    vt_linear **ls = malloc((size_t)(n > 0 ? n : 1) * sizeof *ls);
    if (!ls)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    vt_bert_linears(&s->bert, ls);
    rc = vt_recipe_pack(r, ls, n, &src, st);
    free(ls);
    return rc;
}

/* ---- experts on demand ---- */

/* The experts that take [3, S, S] pixels (block.h style, one image). */
typedef struct {
    size_t  size;
    int     (*load)(void *m, vt_loader *ld, const char *base, const cJSON *cfg);
    int64_t (*in_size)(const void *m);
    int64_t (*tokens)(const void *m);
    int64_t (*channels)(const void *m);
    int64_t (*work)(const void *m);
    int64_t (*max_tokens)(const void *m);
    void    (*forward)(const void *m, const vt_exec *e, const float *in, float *out, float *work);
    int64_t (*linears)(void *m, vt_linear **out);
    void    (*free)(void *m);
    void    (*set_lowp)(void *m, int on);
} pix_block;

#define WRAP(T, name) /* name: the struct (unused) */                                                                              \
    static int T##_load_(void *m, vt_loader *ld, const char *b, const cJSON *c)                    \
    { return vt_##T##_load(m, ld, b, c); }                                                         \
    static int64_t T##_in_(const void *m) { return vt_##T##_in_size(m); }                          \
    static int64_t T##_tok_(const void *m) { return vt_##T##_out_tokens(m); }                      \
    static int64_t T##_ch_(const void *m) { return vt_##T##_out_channels(m); }                     \
    static int64_t T##_work_(const void *m) { return vt_##T##_work_floats(m); }                    \
    static void T##_fwd_(const void *m, const vt_exec *e, const float *in, float *out, float *w)   \
    { vt_##T##_forward(m, e, in, out, w); }                                                        \
    static int64_t T##_lin_(void *m, vt_linear **o) { return vt_##T##_linears(m, o); }             \
    static void T##_free_(void *m) { vt_##T##_free(m); }
WRAP(codetr, vt_codetr)
WRAP(sam, vt_sam)
#undef WRAP

static void codetr_lowp_(void *m, int on)
{
    ((vt_codetr *)m)->attn_lowp = on;
}

static void sam_lowp_(void *m, int on)
{
    (void)m; /* SAM's attention (with its relative-position bias) runs in float32 */
    (void)on;
}

static int64_t codetr_maxt_(const void *m)
{
    return vt_codetr_max_tokens(m);
}

static int64_t sam_maxt_(const void *m)
{
    const int64_t g = vt_sam_in_size(m) / 16;
    return g * g;
}

static const pix_block pix_blocks[EXP_N_KINDS] = {
    [EXP_CODETR] = {sizeof(vt_codetr), codetr_load_, codetr_in_, codetr_tok_, codetr_ch_,
                    codetr_work_, codetr_maxt_, codetr_fwd_, codetr_lin_, codetr_free_,
                    codetr_lowp_},
    [EXP_SAM] = {sizeof(vt_sam), sam_load_, sam_in_, sam_tok_, sam_ch_, sam_work_, sam_maxt_,
                 sam_fwd_, sam_lin_, sam_free_, sam_lowp_},
};

static void blk_free(mova_expert *x)
{
    if (x->blk && x->kind == EXP_P2S)
        vt_p2s_enc_free(x->blk);
    else if (x->blk && pix_blocks[x->kind].free)
        pix_blocks[x->kind].free(x->blk);
    free(x->blk);
    x->blk = NULL;
}

static void expert_free(mova_expert *x)
{
    vtok_model_free(x->model);
    vtok_processor_free(x->proc);
    blk_free(x);
    vt_free(x->packed);
    vt_owned_free(&x->own);
    vt_weights_close(x->w);
    x->model = NULL;
    x->proc = NULL;
    x->vit = NULL;
    x->packed = NULL;
    x->w = NULL;
    x->loaded = 0;
}

/* The options of a block expert: the recipe's "config", else its folder's
 * config.json (NULL when neither: the weights' shapes decide). *own is
 * what the caller deletes. */
static int block_config(const mova_expert *x, cJSON **own, const cJSON **cfg, vtok_status *st)
{
    char file[4200];
    *own = NULL;
    *cfg = cJSON_GetObjectItemCaseSensitive(x->json, "config");
    if (*cfg)
        return 0;
    snprintf(file, sizeof file, "%s/config.json", x->path);
    struct stat sb; /* only a regular file: stat, never open (a FIFO would block) */
    if (stat(file, &sb) != 0 || !S_ISREG(sb.st_mode))
        return 0;
    char *text = NULL;
    size_t len = 0;
    if (vt_read_file(file, 4u << 20, &text, &len, st))
        return st->code;
    *own = vt_json_parse_object(text, len, file, st);
    free(text);
    *cfg = *own;
    if (!*own)
        return st->code;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(*own, "model_type");
    if (x->kind == EXP_SAM && cJSON_IsString(mt) && !strcmp(mt->valuestring, "sam")) {
        /* a Hugging Face SamModel: its SamVisionConfig's names for the block's
         * options (configuration_sam.py); the rest the weights' shapes tell */
        static const char *const map[][2] = {{"num_attention_heads", "num_heads"},
                                             {"window_size", "window_size"},
                                             {"global_attn_indexes", "global_attn_indexes"}};
        const cJSON *vc = cJSON_GetObjectItemCaseSensitive(*own, "vision_config");
        cJSON *o = cJSON_CreateObject();
        for (size_t i = 0; o && i < sizeof map / sizeof map[0]; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(vc, map[i][0]);
            cJSON *dup = v && !cJSON_IsNull(v) ? cJSON_Duplicate(v, 1) : NULL;
            if (dup && !cJSON_AddItemToObject(o, map[i][1], dup))
                cJSON_Delete(dup);
        }
        static const char *const need[] = {"use_abs_pos", "use_rel_pos"}; /* as released */
        for (int i = 0; i < 2; i++)
            if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(vc, need[i]))) {
                cJSON_Delete(o);
                cJSON_Delete(*own);
                *own = NULL;
                *cfg = NULL;
                return vt_fail(st, VTOK_EUNSUPPORTED, "%s: vision_config.%s false is not "
                               "supported", file, need[i]);
            }
        cJSON_Delete(*own);
        *own = o;
        *cfg = o;
        if (!o)
            return vt_fail(st, VTOK_ENOMEM, "out of memory");
    }
    return 0;
}

/* A block expert's tensors through ld and its sizes (x->blk allocated here;
 * expert_free releases it). */
static int block_load_ld(mova_expert *x, vt_loader *ld, int dtype, vtok_status *st)
{
    cJSON *own;
    const cJSON *cj;
    int rc = block_config(x, &own, &cj, st);
    if (rc)
        return rc;
    const size_t size = x->kind == EXP_P2S ? sizeof(vt_p2s_enc) : pix_blocks[x->kind].size;
    if (!(x->blk = calloc(1, size))) {
        cJSON_Delete(own);
        return vt_loader_fail(ld, VTOK_ENOMEM, "out of memory");
    }
    rc = x->kind == EXP_P2S ? vt_p2s_enc_load(x->blk, ld, "", cj)
                            : pix_blocks[x->kind].load(x->blk, ld, "", cj);
    cJSON_Delete(own);
    if (rc || ld->err)
        return rc ? rc : ld->err;
    if (x->kind == EXP_P2S) {
        vt_p2s_enc *m = x->blk;
        if (vt_p2s_enc_in_width(m) != 2 + x->patch * x->patch * 3)
            return vt_loader_fail(ld, VTOK_ESHAPE, "expert %s: the encoder takes rows of %lld, "
                                  "%lld x %lld patches give %lld", x->name,
                                  (long long)vt_p2s_enc_in_width(m), (long long)x->patch,
                                  (long long)x->patch, (long long)(2 + x->patch * x->patch * 3));
        m->attn_lowp = dtype != VTOK_DTYPE_F32;
        x->d = vt_p2s_enc_out_channels(m);
        x->T = x->max_patches;
    } else {
        const pix_block *pb = &pix_blocks[x->kind];
        pb->set_lowp(x->blk, dtype != VTOK_DTYPE_F32);
        x->d = pb->channels(x->blk);
        x->T = pb->tokens(x->blk);
        x->in_c = 3;
        x->in_h = x->in_w = pb->in_size(x->blk);
    }
    x->prefix_rows = 0;
    return 0;
}

/* Its Linears (out NULL: count). */
static int64_t block_linears(mova_expert *x, vt_linear **out)
{
    if (!x->blk)
        return 0;
    return x->kind == EXP_P2S ? vt_p2s_enc_linears(x->blk, out)
                              : pix_blocks[x->kind].linears(x->blk, out);
}

/* A block expert on demand (MoVA): the folder's weights under x->prefix,
 * Linears packed for the recipe's dtype. */
static int block_load(mova_state *s, mova_expert *x, const char *where, vtok_status *st)
{
    int rc;
    vt_wsrc src;
    /* the model's own checkpoint first when it holds the expert under its prefix */
    if (x->ckpt_prefix) {
        vtok_status s2 = {0};
        if (vt_weights_open(s->model_dir, s->use_mmap, &x->w, &s2) == 0) {
            src = vt_wsrc_one(x->w, s->model_dir, x->ckpt_prefix);
            if (vt_wsrc_has_prefix(&src))
                goto have;
            vt_weights_close(x->w);
            x->w = NULL;
        }
    }
    if ((rc = vt_weights_open(x->path, s->use_mmap, &x->w, st)))
        return rc;
    src = vt_wsrc_one(x->w, x->path, x->prefix);
    if (x->kind == EXP_SAM && !x->prefix[0] && !vt_wsrc_find(&src, "pos_embed", NULL)) {
        /* a Hugging Face SamModel folder keeps its encoder under vision_encoder. */
        vt_wsrc hf = vt_wsrc_one(x->w, x->path, "vision_encoder.");
        if (vt_wsrc_find(&hf, "pos_embed", NULL))
            src = hf;
    }
have:;
    vt_loader ld;
    vt_loader_init(&ld, &src, where, &x->own, st);
    if ((rc = block_load_ld(x, &ld, s->dtype, st)) || (rc = vt_loader_finish(&ld)))
        return rc;
    int64_t n = block_linears(x, NULL);
    vt_linear **ls = malloc((size_t)(n > 0 ? n : 1) * sizeof *ls);
    if (!ls)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    block_linears(x, ls);
    rc = vt_pack_linears(ls, n, s->dtype, &src, NULL, 0, &x->packed, &x->lp_max_in, st);
    free(ls);
    return rc;
}

/* The pixels an expert sees: the base encoder's resized, or its own
 * processor's (a fixed size whatever the image: pad, crop or exact resize)
 * then resized. A block that takes a fixed side must get it. */
static int pixel_input(mova_expert *x, const char *where, vtok_status *st)
{
    const int64_t want = x->kind == EXP_VIT ? 0 : x->in_h;
    if (x->input == IN_BASE) {
        x->in_h = x->in_w = x->resize;
    } else {
        const cJSON *pj = cJSON_GetObjectItemCaseSensitive(x->json, "processor");
        int none = 0;
        if (!(x->proc = vt_recipe_processor(x->path, pj, &none, where, st))) {
            if (none)
                vt_fail(st, VTOK_EMISSING, "%s: no preprocessor_config.json in %s", where,
                        x->path);
            return st->code ? st->code : VTOK_EFORMAT;
        }
        int64_t h1, w1, h2, w2;
        if (vtok_processor_output_size(x->proc, 1000, 300, &h1, &w1, st) ||
            vtok_processor_output_size(x->proc, 300, 1000, &h2, &w2, st))
            return st->code;
        if (h1 != h2 || w1 != w2)
            return vt_fail(st, VTOK_EUNSUPPORTED, "%s: its processor's output size depends on "
                           "the image (%lldx%lld vs %lldx%lld): crop, pad or resize exactly",
                           where, (long long)w1, (long long)h1, (long long)w2, (long long)h2);
        x->in_h = x->resize ? x->resize : h1;
        x->in_w = x->resize ? x->resize : w1;
    }
    x->in_c = 3;
    if (want && (x->in_h != want || x->in_w != want))
        return vt_fail(st, VTOK_ESHAPE, "%s takes %lldx%lld pixels, its input gives %lldx%lld",
                       where, (long long)want, (long long)want, (long long)x->in_w,
                       (long long)x->in_h);
    return 0;
}

static int expert_load(mova_state *s, mova_expert *x, int64_t want_ch, int64_t base_side,
                       vtok_status *st)
{
    char where[96];
    snprintf(where, sizeof where, "MoVA expert %s", x->name);
    if (x->kind != EXP_VIT) {
        int rc = block_load(s, x, where, st);
        if (!rc && x->d != want_ch)
            rc = vt_fail(st, VTOK_ESHAPE, "%s gives %lld channels, the adapter takes %lld",
                         where, (long long)x->d, (long long)want_ch);
        if (!rc && x->kind != EXP_P2S)
            rc = pixel_input(x, where, st);
        if (rc) {
            if (strncmp(st->msg, where, strlen(where)))
                vt_msg_prefix(st, where);
            expert_free(x);
            return rc;
        }
        x->side = vt_square_side(x->T);
        x->loaded = 1;
        return 0;
    }
    vtok_model_params mp = vtok_model_default_params();
    mp.use_mmap = s->use_mmap;
    mp.dtype = s->dtype;
    if (x->ckpt_prefix) { /* the model's own checkpoint first, if it holds the tower */
        vtok_status s2 = {0};
        x->model = vt_model_load_weights(x->path, s->model_dir, x->ckpt_prefix, &mp, &s2);
        if (!x->model && s2.code != VTOK_EMISSING && s2.code != VTOK_EIO) {
            *st = s2;
            vt_msg_prefix(st, where);
            return st->code;
        }
    }
    if (!x->model && !(x->model = vtok_model_load(x->path, &mp, st))) {
        vt_msg_prefix(st, where);
        return st->code;
    }
    x->vit = vt_model_vit(x->model);
    x->lp_max_in = vt_model_lp_max_in(x->model);
    const vt_vit *v = x->vit;
    const int64_t L = v->n_layers;
    if (x->layer != LAYER_LAST) {
        int64_t l = x->layer < 0 ? L + 1 + x->layer : x->layer;
        if (l < 0 || l > L) {
            vt_fail(st, VTOK_EINVAL, "%s: layer %lld is outside 0..%lld", where,
                    (long long)x->layer, (long long)L);
            goto fail;
        }
        x->layer = l;
    }
    x->d = v->d;
    if (x->d != want_ch) {
        vt_fail(st, VTOK_ESHAPE, "%s gives %lld channels, the adapter takes %lld", where,
                (long long)x->d, (long long)want_ch);
        goto fail;
    }
    if (pixel_input(x, where, st))
        goto fail;
    int64_t T = vt_vit_tokens(v, x->in_h, x->in_w, st);
    if (T <= 0)
        goto fail;
    x->prefix_rows = (v->cls ? 1 : 0) + v->n_reg;
    x->T = T - x->prefix_rows;
    x->side = vt_square_side(x->T);
    if (x->side * x->side != x->T) {
        vt_fail(st, VTOK_ESHAPE, "%s: %lld patch tokens are not a square map", where,
                (long long)x->T);
        goto fail;
    }
    (void)base_side;
    x->loaded = 1;
    return 0;
fail:
    vt_msg_prefix(st, where);
    expert_free(x);
    return st->code ? st->code : VTOK_EFORMAT;
}

static int mova_check_run(const void *state, const vt_run *run, vtok_status *st)
{
    const mova_state *s = state;
    if (run->n_cond && run->n_cond != s->n_exp)
        return vt_fail(st, VTOK_EINVAL, "mova: the routing (vtok_run_params cond) has %lld "
                       "weights, the recipe %d experts", (long long)run->n_cond, s->n_exp);
    for (int64_t k = 0; k < run->n_cond; k++)
        if (!isfinite(run->cond[k]) || run->cond[k] < 0)
            return vt_fail(st, VTOK_EINVAL, "mova: routing weight %lld is not a finite "
                           "number >= 0", (long long)k);
    return 0;
}

static int mova_prepare(vt_recipe *r, void *state, const vt_run *run, vtok_status *st)
{
    mova_state *s = state;
    (void)r;
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    for (int k = 0; k < s->n_exp && !rc; k++)
        if (k < run->n_cond && run->cond[k] != 0 && !s->ex[k].loaded) {
            if (!run->images)
                rc = vt_fail(st, VTOK_EINVAL, "mova: expert %s takes the decoded image: run "
                             "on images, not pixels", s->ex[k].name);
            else
                rc = expert_load(s, &s->ex[k], s->ad.ch[k], s->ad.res, st);
        }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* ---- plan / forward ---- */

typedef struct {
    float  *bert_h, *bert_w, *pix, *pix2, *ework, *eout, *ad;
    int32_t *ids;
} mv_buf;

static int64_t expert_pix_floats(const mova_expert *x)
{
    return vt_szmul3(x->in_c, x->in_h, x->in_w);
}

/* Work layout; the experts counted are those loaded (the run's are, after
 * prepare); a run plans again, so an expert loaded later is counted then. */
static int64_t layout(const mova_state *s, int64_t base_px, float *base, mv_buf *b)
{
    const int64_t H = s->bert.c.hidden, Tm = s->text_max;
    int64_t pix = 0, pix2 = 0, ework = 0, eout = 0;
    for (int k = 0; k < s->n_exp; k++) {
        const mova_expert *x = &s->ex[k];
        if (!x->loaded)
            continue;
        int64_t p = expert_pix_floats(x), p2 = 0, w = 0, o = 0;
        if (x->input == IN_IMAGE && x->resize && x->proc) {
            int64_t h, wd;
            vtok_status ig = {0};
            if (vtok_processor_output_size(x->proc, 64, 64, &h, &wd, &ig) == 0)
                p2 = vt_szmul(3, vt_szmul(h, wd));
        }
        if (x->input == IN_BASE)
            p2 = base_px;
        if (x->kind == EXP_CODETR || x->kind == EXP_SAM) {
            w = pix_blocks[x->kind].work(x->blk);
            o = vt_szmul(x->T, x->d);
        }
        if (x->kind == EXP_P2S) {
            p = vt_szmul(x->max_patches, 2 + x->patch * x->patch * 3);
            w = vt_p2s_enc_work_floats(x->blk, x->max_patches);
            o = vt_szmul(x->max_patches, x->d);
        }
        if (x->kind == EXP_VIT) {
            const vt_vit *v = x->vit;
            int64_t T = x->T + x->prefix_rows;
            w = vt_szadd(vt_szr16(vt_vit_work_floats(v, 1, x->in_h, x->in_w)),
                         vt_szadd(vt_szr16(vt_szmul(T, v->d)), vt_szr16(v->d * 2 + 16)));
            o = vt_szmul(T, v->d);
        }
        pix = p > pix ? p : pix;
        pix2 = p2 > pix2 ? p2 : pix2;
        ework = w > ework ? w : ework;
        eout = o > eout ? o : eout;
    }
    int64_t sizes[7] = {vt_szmul(Tm, H), vt_bert_work_floats(&s->bert, Tm), pix, pix2, ework,
                        eout, s->ad.d ? vt_mov_adapter_work_floats(&s->ad) : 0};
    float **dst[7] = {&b->bert_h, &b->bert_w, &b->pix, &b->pix2, &b->ework, &b->eout, &b->ad};
    int64_t off = 0;
    for (int i = 0; i < 7; i++) {
        if (base)
            *dst[i] = base + off;
        off = vt_szadd(off, vt_szr16(sizes[i]));
    }
    if (base)
        b->ids = (int32_t *)(base + off);
    off = vt_szadd(off, vt_szr16(Tm / 2 + 1));
    return off;
}

static int mova_plan(const void *state, const vt_enc_feats *in, int64_t n, vt_plan *p,
                     vtok_status *st)
{
    const mova_state *s = state;
    const vt_enc_feats *f = &in[s->enc];
    const int64_t t = f->T - f->prefix, R = s->ad.res, C = s->ad.mlp.d_out;
    if (f->grid)
        return vt_fail(st, VTOK_EUNSUPPORTED, "mova: the base encoder does not slice");
    if (t != R * R || f->d != s->ad.d)
        return vt_fail(st, VTOK_ESHAPE, "mova: the adapter takes a %lldx%lld map of %lld "
                       "features, the base encoder gives %lld tokens of %lld (run it at %lld "
                       "px)", (long long)R, (long long)R, (long long)s->ad.d, (long long)t,
                       (long long)f->d, (long long)(R * f->vit->patch));
    int64_t sumc = 0;
    for (int k = 0; k < s->n_exp; k++)
        sumc += s->ad.ch[k];
    const int64_t q = R / 2, rq = q / 2;
    vt_stage_set(&p->stages[p->n_stages++], "text", 2, n, s->bert.c.hidden, 0, 0);
    vt_stage_set(&p->stages[p->n_stages++], "experts", 2, n, vt_szmul(R * R, sumc), 0, 0);
    vt_stage_set(&p->stages[p->n_stages++], "times_ms", 2, n, 2 + s->n_exp, 0, 0);
    vt_stage_set(&p->stages[p->n_stages++], "routing", 3, n, rq * rq, C, 0);
    vt_stage_set(&p->stages[p->n_stages++], "tokens", 3, n, q * q, C, 0);
    mv_buf b;
    const int64_t base_px = vt_szmul3(f->vit->channels, f->h > 0 ? f->h : R * f->vit->patch,
                                      f->w > 0 ? f->w : R * f->vit->patch);
    /* plan runs under no lock: the experts' loaded flags only ever turn on
     * for this run's experts before it (prepare), so reading them is safe
     * for what this run uses */
    pthread_mutex_lock((pthread_mutex_t *)&s->lock);
    p->work_floats = layout(s, base_px, NULL, &b);
    int64_t maxT = vt_mov_adapter_max_tokens(&s->ad), lpm = 0, rows = R * R;
    for (int k = 0; k < s->n_exp; k++) {
        const mova_expert *x = &s->ex[k];
        if (!x->loaded)
            continue;
        /* the longest sequence its attention and Linears see (a pixel block's
         * grid before its neck: SAM's 64 x 64, Co-DETR's 80 x 80) */
        int64_t tk = x->T + x->prefix_rows;
        if (x->kind == EXP_CODETR || x->kind == EXP_SAM)
            tk = pix_blocks[x->kind].max_tokens(x->blk);
        maxT = tk > maxT ? tk : maxT;
        rows = tk > rows ? tk : rows;
        lpm = x->lp_max_in > lpm ? x->lp_max_in : lpm;
    }
    pthread_mutex_unlock((pthread_mutex_t *)&s->lock);
    p->max_tokens = maxT > s->text_max ? maxT : s->text_max;
    p->lp_rows = rows > s->text_max ? rows : s->text_max;
    p->lp_max_in = lpm;
    return 0;
}

/* "question 0: " + q.lower() + "\n\n" as BERT ids into ids (at most
 * s->text_max, right-truncated keeping [SEP]); returns the count or < 0. */
static int64_t text_ids(const mova_state *s, const char *q, int32_t *ids, vtok_status *st)
{
    size_t n = strlen(q ? q : "");
    char *t = malloc(n + 16);
    if (!t)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    /* Python's str.lower(); BERT's uncased tokenizer lowercases (and strips
     * accents) anyway, so ASCII is the part that must match here */
    size_t k = (size_t)snprintf(t, 16, "question 0: ");
    for (size_t i = 0; i < n; i++)
        t[k++] = (char)tolower((unsigned char)q[i]);
    t[k++] = '\n';
    t[k++] = '\n';
    t[k] = '\0';
    int64_t m = vt_tok_encode(s->tok, t, k, 1, NULL, 0, st);
    int32_t *all = m > 0 ? malloc((size_t)m * sizeof *all) : NULL;
    if (m > 0 && !all)
        m = vt_fail(st, VTOK_ENOMEM, "out of memory");
    if (m > 0 && vt_tok_encode(s->tok, t, k, 1, all, m, st) != m)
        m = vt_fail(st, VTOK_EFORMAT, "the tokenizer gave two counts");
    free(t);
    if (m > s->text_max) { /* truncation='longest_first', right: keep the last id ([SEP]) */
        memcpy(ids, all, (size_t)(s->text_max - 1) * sizeof *ids);
        ids[s->text_max - 1] = all[m - 1];
        m = s->text_max;
    } else if (m > 0) {
        memcpy(ids, all, (size_t)m * sizeof *ids);
    }
    free(all);
    if (m == 0)
        m = vt_fail(st, VTOK_EINVAL, "mova: the question gives no BERT tokens");
    return m;
}

/* Channel-first planes [c, h, w] resized bilinearly (F.interpolate,
 * align_corners=False, no antialias) to [c, oh, ow]. */
static void resize_planes(const float *src, int64_t c, int64_t h, int64_t w, int64_t oh,
                          int64_t ow, float *dst)
{
    for (int64_t i = 0; i < c; i++)
        vt_resize_bilinear(src + i * h * w, h, w, 1, oh, ow, dst + i * oh * ow);
}

/* expand2square with CLIP's mean as the colour (MoVA sets Pix2Struct's
 * image_mean to CLIP's only for this: tuple(int(x * 255) for x in mean)). */
static int pad_square_clip(const vtok_image *src, vtok_image *dst, vtok_status *st)
{
    static const uint8_t fill[3] = {122, 116, 104};
    const int64_t n = src->width > src->height ? src->width : src->height;
    if (!(dst->data = malloc((size_t)(n * n * 3))))
        return vt_fail(st, VTOK_ENOMEM, "out of memory padding a %lldx%lld image",
                       (long long)src->width, (long long)src->height);
    dst->width = dst->height = n;
    for (int64_t i = 0; i < n * n; i++)
        memcpy(dst->data + 3 * i, fill, 3);
    const int64_t x0 = (n - src->width) / 2, y0 = (n - src->height) / 2;
    for (int64_t y = 0; y < src->height; y++)
        memcpy(dst->data + 3 * ((y0 + y) * n + x0), src->data + 3 * y * src->width,
               (size_t)(3 * src->width));
    return 0;
}

/* Pix2Struct / DePlot: the flattened patches of the square-padded image,
 * the encoder over all max_patches rows (padding rows included, as MoVA
 * reshapes them into the square), the map aligned. */
static int run_p2s(const mova_expert *x, const vt_exec *e, int64_t k, const mv_buf *b,
                   vtok_status *st)
{
    vtok_image sq = {0};
    const vtok_image *img = &e->run->images[k];
    int rc = x->pad ? pad_square_clip(img, &sq, st) : 0;
    if (rc)
        return rc;
    if (!x->pad)
        sq = *img;
    const int64_t L = x->max_patches;
    int64_t wf = vt_pix2struct_work_floats(sq.height, sq.width, L, x->patch);
    float *work = wf > 0 ? vt_alloc((size_t)wf * sizeof *work) : NULL;
    if (!work)
        rc = vt_fail(st, VTOK_ENOMEM, "out of memory for the patches of a %lldx%lld image",
                     (long long)sq.width, (long long)sq.height);
    else
        rc = vt_pix2struct_patches(&sq, L, x->patch, b->pix, work, st);
    vt_free(work);
    if (x->pad)
        free(sq.data);
    if (rc || (rc = vt_p2s_enc_check(x->blk, b->pix, L, st)))
        return rc;
    vt_p2s_enc_forward(x->blk, e, b->pix, L, b->eout, b->ework);
    return e->run && e->run->aborted ? VTOK_EABORTED : 0;
}

/* Expert x on image k: its input, its forward; *map = its raw map [T, d]
 * (prefix rows dropped) in the work memory. */
static int run_expert(const mova_expert *x, const vt_exec *e, const vt_enc_feats *f, int64_t k,
                      const mv_buf *b, const float **map, vtok_status *st)
{
    const float *pix = b->pix;
    *map = b->eout;
    if (x->kind == EXP_P2S)
        return run_p2s(x, e, k, b, st);
    if (x->input == IN_BASE) {
        const int64_t c = f->vit->channels;
        resize_planes(f->pixels + k * c * f->h * f->w, c, f->h, f->w, x->in_h, x->in_w, b->pix);
    } else {
        const vtok_image *img = &e->run->images[k];
        int64_t h, w;
        int rc;
        if ((rc = vtok_processor_output_size(x->proc, img->width, img->height, &h, &w, st)))
            return rc;
        float *dst = x->resize ? b->pix2 : b->pix;
        if ((rc = vtok_preprocess(x->proc, img, dst, 3 * h * w, st)))
            return rc;
        if (x->resize)
            resize_planes(b->pix2, 3, h, w, x->in_h, x->in_w, b->pix);
    }
    if (x->kind != EXP_VIT) { /* a pixel block */
        pix_blocks[x->kind].forward(x->blk, e, pix, b->eout, b->ework);
        return e->run && e->run->aborted ? VTOK_EABORTED : 0;
    }
    /* "vit" */
    const vt_vit *v0 = x->vit;
    vt_vit v = *v0;
    const int64_t T = x->T + x->prefix_rows, d = v.d;
    float *hidden[1];
    float **hs = NULL;
    float *work = b->ework;
    float *last = work + vt_szr16(vt_vit_work_floats(v0, 1, x->in_h, x->in_w));
    float *pool = last + vt_szr16(T * d);
    float *res = last;
    float *slots[1024];
    if (x->layer != LAYER_LAST) {
        if (x->layer > 1023)
            return vt_fail(st, VTOK_ELIMIT, "mova: layer %lld too deep", (long long)x->layer);
        v.n_layers = x->layer;
        for (int64_t l = 0; l <= x->layer; l++)
            slots[l] = NULL;
        slots[x->layer] = b->eout;
        hs = slots;
        res = b->eout;
    }
    (void)hidden;
    vt_vit_out o = {.last = last, .pooler = pool, .embeds = NULL, .hidden = hs};
    vt_vit_forward(&v, e, pix, 1, x->in_h, x->in_w, work, &o);
    *map = res + x->prefix_rows * d;
    return e->run && e->run->aborted ? VTOK_EABORTED : 0;
}

/* feature_align: the side x side map resized bilinearly to R x R (copied
 * when it already is). */
static void align_map(const mova_expert *x, const float *map, int64_t R, float *out)
{
    if (x->side == R)
        memcpy(out, map, (size_t)(R * R * x->d) * sizeof *out);
    else
        vt_resize_bilinear(map, x->side, x->side, x->d, R, R, out);
}


static int mova_forward_run(const void *state, const vt_exec *e, const vt_enc_feats *in,
                            int64_t n, vt_stage *stages, float *work, vtok_status *st)
{
    const mova_state *s = state;
    const vt_enc_feats *f = &in[s->enc];
    const int64_t R = s->ad.res, d = s->ad.d, C = s->ad.mlp.d_out, q = R / 2, rq = q / 2;
    const int64_t Hb = s->bert.c.hidden;
    mv_buf b;
    const int64_t base_px = vt_szmul3(f->vit->channels, f->h, f->w);
    layout(s, base_px, work, &b);
    int64_t sumc = 0;
    for (int k = 0; k < s->n_exp; k++)
        sumc += s->ad.ch[k];
    /* BERT and the experts step through layers of their own: they poll the
     * run's abort callback, but their steps are not the run's (the
     * connector is one step of it) */
    vt_run quiet = *e->run;
    quiet.progress_cb = NULL;
    vt_exec eq = *e;
    eq.run = &quiet;
    float routing[VT_MOV_MAX_EXPERTS] = {0};
    int any = 0;
    for (int k = 0; k < s->n_exp && k < e->run->n_cond; k++) {
        routing[k] = e->run->cond[k];
        any |= routing[k] != 0;
    }
    for (int64_t i = 0; i < n; i++) {
        float *ms = stages[2].data + i * (2 + s->n_exp);
        memset(ms, 0, (size_t)(2 + s->n_exp) * sizeof *ms);
        double t0 = vt_now_ms();
        /* the question's BERT [CLS] */
        int64_t T = text_ids(s, e->run->prompt, b.ids, st);
        if (T < 0)
            return (int)T;
        int rc = vt_bert_forward(&s->bert, &eq, b.ids, T, b.bert_h, NULL, b.bert_w);
        if (rc || quiet.aborted) {
            e->run->aborted |= quiet.aborted;
            return rc ? rc : VTOK_EABORTED;
        }
        float *text = stages[0].data + i * Hb;
        memcpy(text, b.bert_h, (size_t)Hb * sizeof *text);
        ms[0] = (float)(vt_now_ms() - t0);
        /* the experts routing turned on */
        float *ex = stages[1].data + i * R * R * sumc;
        const float *eptr[VT_MOV_MAX_EXPERTS] = {0};
        memset(ex, 0, (size_t)(R * R * sumc) * sizeof *ex);
        for (int k = 0, off = 0; k < s->n_exp; off += (int)(R * R * s->ad.ch[k]), k++) {
            if (routing[k] == 0)
                continue;
            double t1 = vt_now_ms();
            const float *map;
            if ((rc = run_expert(&s->ex[k], &eq, f, i, &b, &map, st))) {
                e->run->aborted |= quiet.aborted;
                if (rc != VTOK_EABORTED)
                    vt_msg_prefix(st, s->ex[k].name);
                return rc;
            }
            align_map(&s->ex[k], map, R, ex + off);
            ms[2 + k] = (float)(vt_now_ms() - t1);
            eptr[k] = ex + off;
        }
        /* the adapter on the base map (patch rows of the requested state) */
        const float *x0 = f->hidden + (i * f->T + f->prefix) * d;
        double t2 = vt_now_ms();
        float *tok = stages[4].data + i * q * q * C;
        vt_mov_adapter_forward(&s->ad, e, x0, eptr, any ? routing : NULL, text, tok, b.ad);
        /* the routing tokens: 2 x 2 means of the q x q token map */
        float *rt = stages[3].data + i * rq * rq * C;
        for (int64_t y = 0; y < rq; y++)
            for (int64_t x = 0; x < rq; x++)
                for (int64_t c = 0; c < C; c++) {
                    const float *c0 = tok + ((2 * y) * q + 2 * x) * C + c;
                    rt[(y * rq + x) * C + c] =
                        ((c0[0] + c0[C]) + (c0[q * C] + c0[q * C + C])) / 4.0f;
                }
        ms[1] = (float)(vt_now_ms() - t2);
    }
    return 0;
}

static void mova_free_state(void *state)
{
    mova_state *s = state;
    for (int k = 0; k < s->n_exp; k++) {
        expert_free(&s->ex[k]);
        free(s->ex[k].path);
        s->ex[k].path = NULL;
    }
    vt_bert_free(&s->bert);
    vt_tok_free(s->tok);
    s->tok = NULL;
    if (s->lock_ok)
        pthread_mutex_destroy(&s->lock);
    s->lock_ok = 0;
}

/* ---- the public routing calls (vtok.h) ---- */

static const mova_state *routing_state(const vtok_recipe *r)
{
    return r && vt_recipe_kind(r) == &vt_connector_mova ? vt_recipe_conn(r) : NULL;
}

int64_t vtok_recipe_n_experts(const vtok_recipe *r)
{
    const mova_state *s = routing_state(r);
    return s ? s->n_exp : 0;
}

const char *vtok_recipe_expert_name(const vtok_recipe *r, int64_t k)
{
    const mova_state *s = routing_state(r);
    return s && k >= 0 && k < s->n_exp ? s->ex[k].name : NULL;
}

const char *vtok_recipe_routing_prompt(const vtok_recipe *r)
{
    return routing_state(r) ? vt_mova_routing_prompt() : NULL;
}

int64_t vtok_recipe_parse_routing(const vtok_recipe *r, const char *answer, float *weights,
                                  int64_t n)
{
    const mova_state *s = routing_state(r);
    if (!s || !answer || !weights || n != s->n_exp)
        return VTOK_EINVAL;
    int mask[VT_MOVA_EXPERTS];
    vt_mova_parse_routing(answer, strlen(answer), mask);
    int64_t on = 0;
    for (int64_t k = 0; k < n; k++) {
        weights[k] = k < VT_MOVA_EXPERTS && mask[k] ? 1.0f : 0.0f;
        on += weights[k] != 0;
    }
    return on;
}

const vt_connector_kind vt_connector_mova = {
    .name = "mova",
    .state_size = sizeof(mova_state),
    .setup = mova_setup,
    .load = mova_load,
    .unload = mova_unload,
    .linears = mova_linears,
    .plan = mova_plan,
    .check_run = mova_check_run,
    .prepare = mova_prepare,
    .forward_run = mova_forward_run,
    .free_state = mova_free_state,
    .load_more = mova_load_text,
};

/* ---- one expert on its own (recipes sam, codetr, pix2struct: vtok run, and
 * vtok encode on such a folder) ----
 *
 * Connector "expert": {"expert": {"name", "type": sam|codetr|pix2struct,
 * "path": "." ...}, "file", "prefix"}: the block from the first weight
 * candidate / prefix that has it (its released layouts: the bare module
 * names, SAM's image_encoder., Pix2Struct's encoder., MoVA's vision_tower_K.),
 * its input from the folder's preprocessor_config.json (sam, codetr) or
 * Pix2Struct's flattened patches of the image as it is (max_patches from
 * the folder's preprocessor_config.json, else 2048 as the HF processor);
 * output last_hidden_state [n, T, C]: the raw map (no feature_align). */

static int expert_only_setup(vt_recipe *r, const cJSON *cfg, void *state, const cJSON **weights,
                             vtok_status *st)
{
    static const char *const keys[] = {"type", "expert", "file", "prefix", "_comment", NULL};
    mova_state *s = state;
    char where[128];
    snprintf(where, sizeof where, "recipe %s: connector", vt_recipe_name(r));
    int rc = vt_opt_check_keys(cfg, keys, where, st);
    if (rc)
        return rc;
    snprintf(s->model_dir, sizeof s->model_dir, "%s", vt_recipe_model_dir(r));
    vt_recipe_load_opts(r, &s->use_mmap, &s->dtype);
    const cJSON *ej = cJSON_GetObjectItemCaseSensitive(cfg, "expert");
    if (!cJSON_IsObject(ej))
        return vt_fail(st, VTOK_EFORMAT, "%s: needs an 'expert' object", where);
    mova_expert *x = &s->ex[0];
    s->n_exp = 1;
    if ((rc = expert_setup(r, s, x, ej, 0, where, st)))
        return rc;
    if (x->kind == EXP_VIT)
        return vt_fail(st, VTOK_EINVAL, "%s: a 'vit' expert is an HF vision folder: use it "
                       "with vtok encode", where);
    x->pad = 0;
    if (x->kind == EXP_P2S && !cJSON_GetObjectItemCaseSensitive(ej, "max_patches")) {
        char file[4200];
        snprintf(file, sizeof file, "%s/preprocessor_config.json", x->path);
        x->max_patches = 2048; /* Pix2StructImageProcessor's default */
        struct stat sb;
        if (stat(file, &sb) == 0 && S_ISREG(sb.st_mode)) {
            char *text = NULL;
            size_t len = 0;
            cJSON *pc = NULL;
            if (vt_read_file(file, 1u << 20, &text, &len, st) ||
                !(pc = vt_json_parse_object(text, len, file, st))) {
                free(text);
                return st->code ? st->code : VTOK_EFORMAT;
            }
            free(text);
            rc = vt_opt_int(pc, "max_patches", 2048, &x->max_patches, file, st);
            const cJSON *ps = cJSON_GetObjectItemCaseSensitive(pc, "patch_size");
            if (!rc && ps && !cJSON_GetObjectItemCaseSensitive(ej, "patch")) {
                int64_t ph = 0, pw = 0;
                if (!(rc = vt_opt_int(ps, "height", 16, &ph, file, st)) &&
                    !(rc = vt_opt_int(ps, "width", 16, &pw, file, st)) && ph != pw)
                    rc = vt_fail(st, VTOK_EUNSUPPORTED, "%s: patch_size %lldx%lld is not "
                                 "square", file, (long long)pw, (long long)ph);
                x->patch = ph;
                if (!rc && (ph < 1 || ph > 64))
                    rc = vt_fail(st, VTOK_EFORMAT, "%s: bad patch_size", file);
            }
            cJSON_Delete(pc);
            if (rc)
                return rc;
            if (x->max_patches < 1 || x->max_patches > 1 << 16)
                return vt_fail(st, VTOK_EFORMAT, "%s: bad max_patches", file);
        }
    }
    *weights = cfg;
    return 0;
}

static int expert_only_load(vt_recipe *r, const cJSON *cfg, void *state, vt_loader *ld)
{
    mova_state *s = state;
    mova_expert *x = &s->ex[0];
    char where[96];
    (void)r;
    (void)cfg;
    snprintf(where, sizeof where, "expert %s", x->name);
    int rc = block_load_ld(x, ld, s->dtype, ld->st);
    if (!rc && !ld->err && x->kind != EXP_P2S)
        rc = pixel_input(x, where, ld->st);
    if (!rc && !ld->err)
        x->loaded = 1;
    return rc ? rc : ld->err;
}

static void expert_only_unload(void *state)
{
    mova_state *s = state;
    expert_free(&s->ex[0]);
}

static int64_t expert_only_linears(void *state, vt_linear **l)
{
    return block_linears(&((mova_state *)state)->ex[0], l);
}

static int expert_only_plan(const void *state, const vt_enc_feats *in, int64_t n, vt_plan *p,
                            vtok_status *st)
{
    const mova_state *s = state;
    const mova_expert *x = &s->ex[0];
    mv_buf b;
    (void)in;
    (void)st;
    vt_stage_set(&p->stages[p->n_stages++], "last_hidden_state", 3, n, x->T, x->d, 0);
    p->work_floats = layout(s, 0, NULL, &b);
    int64_t tk = x->kind == EXP_P2S ? x->max_patches : pix_blocks[x->kind].max_tokens(x->blk);
    p->max_tokens = tk;
    p->lp_rows = tk;
    return 0;
}

static int expert_only_check(const void *state, const vt_run *run, vtok_status *st)
{
    (void)state;
    if (!run->images)
        return vt_fail(st, VTOK_EINVAL, "this expert takes decoded images, not pixels");
    return 0;
}

static int expert_only_forward(const void *state, const vt_exec *e, const vt_enc_feats *in,
                               int64_t n, vt_stage *stages, float *work, vtok_status *st)
{
    const mova_state *s = state;
    const mova_expert *x = &s->ex[0];
    mv_buf b;
    layout(s, 0, work, &b);
    vt_run quiet = *e->run; /* its layers are not steps of the run (see mova_forward_run) */
    quiet.progress_cb = NULL;
    vt_exec eq = *e;
    eq.run = &quiet;
    for (int64_t i = 0; i < n; i++) {
        const float *map;
        int rc = run_expert(x, &eq, in, i, &b, &map, st);
        e->run->aborted |= quiet.aborted;
        if (rc)
            return rc;
        memcpy(stages[0].data + i * x->T * x->d, map, (size_t)(x->T * x->d) * sizeof *map);
    }
    return 0;
}

const vt_connector_kind vt_connector_expert = {
    .name = "expert",
    .state_size = sizeof(mova_state),
    .setup = expert_only_setup,
    .load = expert_only_load,
    .unload = expert_only_unload,
    .linears = expert_only_linears,
    .plan = expert_only_plan,
    .check_run = expert_only_check,
    .forward_run = expert_only_forward,
    .free_state = mova_free_state,
};
