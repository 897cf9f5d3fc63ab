/*
 * recipe.c - loading recipes: find the JSON (a shipped name or a file),
 * load each encoder folder as a vtok_model, build its image processor with
 * the recipe's overrides, let the connector kind read its options and
 * weights, then plan one image at the native size to report tokens and
 * width (and to catch incompatible sizes at load, not at the first run).
 */
#include "recipe_internal.h"

#include "../core/ctx.h"

#include "../image/image.h"
#include "../models/eva.h"
#include "../models/family.h"
#include "../models/pack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_RECIPE_BYTES (1u << 20)

static const vt_connector_kind *const kinds[] = {&vt_connector_llava, &vt_connector_comm,
                                                  &vt_connector_gvt, &vt_connector_seed,
                                                  &vt_connector_slime, &vt_connector_mova,
                                                  &vt_connector_expert};

void vtok_recipe_params_init(vtok_recipe_params *p, size_t size)
{
    const vtok_recipe_params d = {.size = sizeof d, .use_mmap = 1, .dtype = VTOK_DTYPE_F32};
    vt_params_init(p, size, &d, sizeof d);
}

int vt_recipe_pack(vt_recipe *r, vt_linear *const *l, int64_t n, const vt_wsrc *w,
                   vtok_status *st)
{
    if (n <= 0)
        return 0;
    if (r->n_packs >= VT_RECIPE_MAX_PACKS)
        return vt_fail(st, VTOK_ELIMIT, "recipe %s: too many converted weight groups", r->name);
    void *block = NULL;
    int rc = vt_pack_linears(l, n, r->dtype, w, r->load_pool, r->load_threads, &block,
                             &r->lp_max_in, st);
    if (block)
        r->packs[r->n_packs++] = block;
    return rc;
}

const char *const *vtok_recipe_names(void)
{
    return vt_builtin_recipe_names();
}

const char *vt_recipe_name(const vt_recipe *r)
{
    return r->name;
}

const vt_connector_kind *vt_recipe_kind(const vt_recipe *r)
{
    return r->kind;
}

void *vt_recipe_conn(const vt_recipe *r)
{
    return r->conn;
}

const char *vt_recipe_model_dir(const vt_recipe *r)
{
    return r->model_dir ? r->model_dir : ".";
}

void vt_recipe_load_opts(const vt_recipe *r, int *use_mmap, int *dtype)
{
    *use_mmap = r->use_mmap;
    *dtype = r->dtype;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static char *join(const char *dir, const char *rel)
{
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *p = malloc(n);
    if (p) {
        if (!strcmp(rel, "."))
            snprintf(p, n, "%s", dir);
        else
            snprintf(p, n, "%s/%s", dir, rel);
    }
    return p;
}

void vt_stage_set(vt_stage *s, const char *name, int n_dims, int64_t a, int64_t b, int64_t c,
                  int64_t d)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->n_dims = n_dims;
    s->ne[0] = a;
    s->ne[1] = b;
    s->ne[2] = c;
    s->ne[3] = d;
}

void vt_select_rows(const float *x, int64_t B, int64_t T, int64_t d, int64_t skip, float *y)
{
    for (int64_t i = 0; i < B; i++)
        memcpy(y + i * (T - skip) * d, x + (i * T + skip) * d,
               (size_t)((T - skip) * d) * sizeof(float));
}

int vt_recipe_encoder(vt_recipe *r, const char *name, const char *where, vtok_status *st)
{
    for (int i = 0; i < r->n_enc; i++)
        if (name && !strcmp(r->enc[i].name, name))
            return i;
    return vt_fail(st, VTOK_EFORMAT, "%s: no encoder named '%s' in the recipe", where,
                   name ? name : "(none)");
}

int64_t vt_recipe_encoder_layers(const vt_recipe *r, int enc)
{
    return r->enc[enc].vit->n_layers;
}

int64_t vt_recipe_encoder_width(const vt_recipe *r, int enc)
{
    return r->enc[enc].vit->d;
}

int vt_recipe_request(vt_recipe *r, int enc, const int64_t *layers, int64_t n_layers,
                      const char *where, vtok_status *st)
{
    vt_recipe_enc *e = &r->enc[enc];
    int64_t L = e->vit->n_layers;
    if (e->layers)
        return vt_fail(st, VTOK_EINVAL, "%s: encoder '%s' requested twice", where, e->name);
    if (n_layers < 1 || n_layers > L + 1)
        return vt_fail(st, VTOK_EINVAL, "%s: needs 1..%lld hidden states of '%s', got %lld",
                       where, (long long)(L + 1), e->name, (long long)n_layers);
    e->layers = malloc((size_t)n_layers * sizeof *e->layers);
    if (!e->layers)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    e->n_req = n_layers;
    e->run_layers = 0;
    for (int64_t i = 0; i < n_layers; i++) {
        int64_t li = layers[i] < 0 ? L + 1 + layers[i] : layers[i];
        if (li < 0 || li > L)
            return vt_fail(st, VTOK_EINVAL,
                           "%s: layer %lld out of range: encoder '%s' has hidden states 0..%lld",
                           where, (long long)layers[i], e->name, (long long)L);
        for (int64_t j = 0; j < i; j++)
            if (e->layers[j] == li)
                return vt_fail(st, VTOK_EINVAL, "%s: hidden state %lld of '%s' requested twice",
                               where, (long long)li, e->name);
        e->layers[i] = li;
        if (li > e->run_layers)
            e->run_layers = li;
    }
    return 0;
}

/* torch.hub.get_dir(): $TORCH_HOME, else $XDG_CACHE_HOME/torch, else ~/.cache/torch. */
static char *torch_home_path(const char *rest)
{
    const char *th = getenv("TORCH_HOME"), *xdg = getenv("XDG_CACHE_HOME"),
               *home = getenv("HOME");
    char buf[4200];
    if (th && *th)
        snprintf(buf, sizeof buf, "%s/%s", th, rest);
    else if (xdg && *xdg)
        snprintf(buf, sizeof buf, "%s/torch/%s", xdg, rest);
    else if (home && *home)
        snprintf(buf, sizeof buf, "%s/.cache/torch/%s", home, rest);
    else
        return NULL;
    return strdup(buf);
}

/* The path a recipe file name stands for (malloc'ed), or NULL if it does not
 * exist. "." counts only if the folder has its own safetensors. */
static char *resolve(const vt_recipe *r, const char *name)
{
    char *path;
    if (!strncmp(name, "$TORCH_HOME/", 12))
        path = torch_home_path(name + 12);
    else if (name[0] == '/')
        path = strdup(name);
    else
        path = join(r->model_dir, name);
    if (!path)
        return NULL;
    int ok;
    if (!strcmp(name, ".")) {
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/model.safetensors", path);
        ok = exists(probe);
        snprintf(probe, sizeof probe, "%s/model.safetensors.index.json", path);
        ok = ok || exists(probe);
    } else {
        ok = exists(path);
    }
    if (!ok) {
        free(path);
        return NULL;
    }
    return path;
}

/* Open path once per recipe (several parts may read one file); takes path. */
static int open_file(vt_recipe *r, char *path, vt_weights **w, const char **name,
                     const char *where, vtok_status *st)
{
    for (int k = 0; k < r->n_files; k++)
        if (!strcmp(r->file_names[k], path)) {
            free(path);
            *w = r->files[k];
            *name = r->file_names[k];
            return 0;
        }
    if (r->n_files >= VT_RECIPE_MAX_FILES) {
        free(path);
        return vt_fail(st, VTOK_ELIMIT, "%s: too many weight files", where);
    }
    int rc = vt_weights_open(path, r->use_mmap, w, st);
    if (rc) {
        free(path);
        return rc;
    }
    r->files[r->n_files] = *w;
    r->file_names[r->n_files++] = path;
    *name = path;
    return 0;
}

/* Opens the files of one candidate into g; 1 if they all exist, 0 if one is
 * absent, negative on an error (a file that exists but cannot be read). */
static int open_candidate(vt_recipe *r, const cJSON *c, vt_wsrc *g, const char *where,
                          vtok_status *st)
{
    int n = cJSON_IsArray(c) ? cJSON_GetArraySize(c) : 1;
    memset(g, 0, sizeof *g);
    if (n > VT_SRC_MAX_FILES)
        return vt_fail(st, VTOK_EFORMAT, "%s: a 'file' candidate has over %d files", where,
                       VT_SRC_MAX_FILES);
    for (int i = 0; i < n; i++) { /* all exist, or the candidate is skipped */
        const cJSON *f = cJSON_IsArray(c) ? cJSON_GetArrayItem(c, i) : c;
        char *path = resolve(r, f->valuestring);
        if (!path)
            return 0;
        free(path);
    }
    for (int i = 0; i < n; i++) {
        const cJSON *f = cJSON_IsArray(c) ? cJSON_GetArrayItem(c, i) : c;
        int rc = open_file(r, resolve(r, f->valuestring), &g->w[i], &g->name[i], where, st);
        if (rc)
            return rc;
        g->n = i + 1;
    }
    return 1;
}

static int check_names(const cJSON *file, const cJSON *prefix, const char *where,
                       vtok_status *st)
{
    int ok = cJSON_IsString(file) || (cJSON_IsArray(file) && cJSON_GetArraySize(file) > 0);
    for (const cJSON *c = cJSON_IsArray(file) ? file->child : NULL; ok && c; c = c->next) {
        ok = cJSON_IsString(c) || (cJSON_IsArray(c) && cJSON_GetArraySize(c) > 0);
        for (const cJSON *f = cJSON_IsArray(c) ? c->child : NULL; ok && f; f = f->next)
            ok = cJSON_IsString(f);
    }
    if (!ok)
        return vt_fail(st, VTOK_EFORMAT, "%s: 'file' must be a file name or a list of "
                       "candidates (a name, or a list of names read as one)", where);
    ok = !prefix || cJSON_IsString(prefix) || cJSON_IsArray(prefix);
    for (const cJSON *p = cJSON_IsArray(prefix) ? prefix->child : NULL; ok && p; p = p->next)
        ok = cJSON_IsString(p);
    if (!ok)
        return vt_fail(st, VTOK_EFORMAT, "%s: 'prefix' must be a string or a list of them", where);
    return 0;
}

int vt_recipe_load_part(vt_recipe *r, const cJSON *file, const cJSON *prefix, const char *where,
                        vt_part_load load, vt_part_unload unload, void *arg, vt_wsrc *src,
                        vtok_status *st)
{
    int rc = check_names(file, prefix, where, st);
    if (rc)
        return rc;
    int nc = cJSON_IsArray(file) ? cJSON_GetArraySize(file) : 1;
    int np = cJSON_IsArray(prefix) ? cJSON_GetArraySize(prefix) : 1;
    int tried = 0, found_file = 0, best_rc = 0;
    int64_t best_found = -1;
    vtok_status best = {0};
    for (int ci = 0; ci < nc; ci++) {
        const cJSON *c = cJSON_IsArray(file) ? cJSON_GetArrayItem(file, ci) : file;
        vt_wsrc g;
        rc = open_candidate(r, c, &g, where, st);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;
        found_file = 1;
        for (int pi = 0; pi < np; pi++) {
            const cJSON *p = cJSON_IsArray(prefix) ? cJSON_GetArrayItem(prefix, pi) : prefix;
            g.prefix = cJSON_IsString(p) ? p->valuestring : "";
            if (*g.prefix && !vt_wsrc_has_prefix(&g))
                continue; /* nothing under this prefix in these files */
            vtok_status s = {0};
            vt_loader ld;
            vt_loader_init(&ld, &g, where, &r->owned, &s);
            rc = load(arg, &ld);
            if (!rc)
                rc = vt_loader_finish(&ld);
            if (!rc) {
                *src = g;
                return 0;
            }
            unload(arg);
            if (!ld.n_found && !ld.n_missing) { /* an option error: no candidate helps */
                *st = s;
                return rc;
            }
            if (ld.n_found > best_found) { /* the message of the closest candidate */
                best = s;
                best_rc = rc;
                best_found = ld.n_found;
            }
            tried++;
        }
    }
    if (!found_file) {
        /* name the first candidate's first absent file */
        const cJSON *c = cJSON_IsArray(file) ? cJSON_GetArrayItem(file, 0) : file;
        const char *first = cJSON_IsArray(c) ? cJSON_GetArrayItem(c, 0)->valuestring
                                             : c->valuestring;
        for (const cJSON *f = cJSON_IsArray(c) ? c->child : NULL; f; f = f->next) {
            char *path = resolve(r, f->valuestring);
            if (!path) {
                first = f->valuestring;
                break;
            }
            free(path);
        }
        return vt_fail(st, VTOK_EIO, "%s: missing weight file: %s/%s%s", where, r->model_dir,
                       first, nc > 1 || cJSON_IsArray(c) ? " (or its alternatives in the recipe)"
                                                         : "");
    }
    if (!tried)
        return vt_fail(st, VTOK_EMISSING, "%s: no tensors under the recipe's prefixes in its "
                       "weight files", where);
    *st = best;
    if (tried > 1) {
        char tail[64];
        snprintf(tail, sizeof tail, " (best of %d file/prefix candidates)", tried);
        size_t u = strlen(st->msg), t = strlen(tail);
        if (u + t < sizeof st->msg)
            memcpy(st->msg + u, tail, t + 1);
    }
    return best_rc;
}

/* ---- loading ---- */

static int is_path(const char *s)
{
    size_t n = strlen(s);
    return strchr(s, '/') || (n > 5 && !strcmp(s + n - 5, ".json"));
}

static cJSON *read_recipe(const char *recipe, vtok_status *st)
{
    char *text = NULL;
    size_t len = 0;
    const char *label = recipe;
    cJSON *j;
    if (is_path(recipe)) {
        if (vt_read_file(recipe, MAX_RECIPE_BYTES, &text, &len, st))
            return NULL;
        j = vt_json_parse_object(text, len, label, st);
        free(text);
    } else {
        const char *emb = vt_builtin_recipe(recipe, &len);
        if (!emb) {
            char names[256] = "";
            for (const char *const *n = vt_builtin_recipe_names(); *n; n++) {
                size_t u = strlen(names);
                snprintf(names + u, sizeof names - u, "%s%s", u ? ", " : "", *n);
            }
            vt_fail(st, VTOK_EINVAL, "unknown recipe '%s' (shipped: %s; or give a .json path)",
                    recipe, names);
            return NULL;
        }
        j = vt_json_parse_object(emb, len, label, st);
    }
    if (!j)
        vt_msg_prefix(st, "recipe");
    return j;
}

static int copy_str(const cJSON *o, const char *key, char *dst, size_t n, const char *where,
                    vtok_status *st)
{
    const char *s;
    int rc = vt_opt_str(o, key, "", &s, where, st);
    if (rc)
        return rc;
    if (strlen(s) >= n)
        return vt_fail(st, VTOK_EFORMAT, "%s: '%s' is too long", where, key);
    snprintf(dst, n, "%s", s);
    return 0;
}

vtok_processor *vt_recipe_processor(const char *folder, const cJSON *over, int *none,
                                    const char *where, vtok_status *st)
{
    char file[4200];
    cJSON *cfg;
    if (none)
        *none = 0;
    if (!folder) {
        if (!(cfg = cJSON_CreateObject()) ||
            !cJSON_AddStringToObject(cfg, "image_processor_type", "TorchvisionImageProcessor")) {
            cJSON_Delete(cfg);
            vt_fail(st, VTOK_ENOMEM, "out of memory");
            return NULL;
        }
        goto merge;
    }
    snprintf(file, sizeof file, "%s/preprocessor_config.json", folder);
    if (!exists(file)) {
        if (!none || (over && cJSON_GetArraySize(over) > 0)) {
            vt_fail(st, VTOK_EIO, "%s: missing %s%s", where, file,
                    none ? " (the recipe overrides its keys)" : "");
            return NULL;
        }
        *none = 1;
        return NULL; /* pixels only */
    }
    char *text = NULL;
    size_t len = 0;
    if (vt_read_file(file, 4u << 20, &text, &len, st))
        return NULL;
    cfg = vt_json_parse_object(text, len, file, st);
    free(text);
    if (!cfg)
        return NULL;
merge:
    for (const cJSON *it = over ? over->child : NULL; it; it = it->next) {
        cJSON *dup = cJSON_Duplicate(it, 1);
        if (!dup || !cJSON_ReplaceItemInObjectCaseSensitive(cfg, it->string, dup)) {
            if (dup && cJSON_AddItemToObject(cfg, it->string, dup))
                continue;
            cJSON_Delete(dup);
            cJSON_Delete(cfg);
            vt_fail(st, VTOK_ENOMEM, "out of memory");
            return NULL;
        }
    }
    vtok_processor *proc = vt_processor_from_json(cfg, st);
    cJSON_Delete(cfg);
    if (!proc) {
        vt_msg_prefix(st, where);
        if (!st->code)
            st->code = VTOK_EFORMAT;
    }
    return proc;
}

/* The processor: preprocessor_config.json of the encoder folder (HF), or
 * for a tower read from a checkpoint the torchvision pipeline its code uses
 * (TorchvisionImageProcessor: Resize((224, 224), BICUBIC) on PIL, ToTensor,
 * Normalize with CLIP's mean/std), with the recipe's keys merged over it. */
static int load_processor(vt_recipe *r, vt_recipe_enc *e, const cJSON *over, const char *where,
                          vtok_status *st)
{
    int none = 0;
    (void)r;
    e->proc = vt_recipe_processor(e->model ? e->path : NULL, over, &none, where, st);
    return e->proc || none ? 0 : (st->code ? st->code : VTOK_EFORMAT);
}

/* An EVA tower inside a PyTorch checkpoint (GVT's .pth, LAVIS eva_vit_g.pth
 * for SEED): "file" and "prefix" candidates (vt_recipe_load_part), "variant"
 * and "config" for vt_eva_load. Its Linears are converted for the recipe's
 * dtype here, as vtok_model_load does for HF folders. The files stay open in
 * the recipe, shared with the connector. */
typedef struct {
    vt_vit      *v;
    const cJSON *cfg;
} eva_part;

static int eva_try(void *arg, vt_loader *ld)
{
    eva_part *p = arg;
    return vt_eva_load(p->v, ld, p->cfg);
}

static void eva_undo(void *arg)
{
    vt_vit_free(((eva_part *)arg)->v);
}

static int load_eva(vt_recipe *r, vt_recipe_enc *e, const cJSON *ej, const char *where,
                    vtok_status *st)
{
    const cJSON *cj = cJSON_GetObjectItemCaseSensitive(ej, "config");
    const cJSON *vj = cJSON_GetObjectItemCaseSensitive(ej, "variant");
    if ((cj && !cJSON_IsObject(cj)) || (vj && !cJSON_IsString(vj)))
        return vt_fail(st, VTOK_EFORMAT, "%s: 'config' must be an object, 'variant' a string",
                       where);
    cJSON *cfg = cj ? cJSON_Duplicate(cj, 1) : cJSON_CreateObject();
    if (cfg && vj) {
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, "variant");
        if (!cJSON_AddStringToObject(cfg, "variant", vj->valuestring)) {
            cJSON_Delete(cfg);
            cfg = NULL;
        }
    }
    if (!cfg)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    eva_part part = {.v = &e->own, .cfg = cfg};
    vt_wsrc src;
    int rc = vt_recipe_load_part(r, cJSON_GetObjectItemCaseSensitive(ej, "file"),
                                 cJSON_GetObjectItemCaseSensitive(ej, "prefix"), where, eva_try,
                                 eva_undo, &part, &src, st);
    cJSON_Delete(cfg);
    if (rc)
        return rc;
    char files[400];
    if (!(e->path = strdup(vt_wsrc_files(&src, files, sizeof files))))
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    e->vit = &e->own;
    int64_t n = vt_vit_linears(&e->own, NULL);
    vt_linear **l = malloc((size_t)(n > 0 ? n : 1) * sizeof *l);
    if (!l)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    vt_vit_linears(&e->own, l);
    rc = vt_recipe_pack(r, l, n, &src, st);
    free(l);
    e->own.attn_lowp = r->dtype != VTOK_DTYPE_F32; /* as vtok_model_load does */
    return rc;
}

/* The connector: the kind's own options once, then its blocks from the first
 * weight source that has them all, then its Linears for the recipe dtype. */
typedef struct {
    vt_recipe   *r;
    const cJSON *cfg;
} conn_part;

static int conn_try(void *arg, vt_loader *ld)
{
    conn_part *p = arg;
    return p->r->kind->load(p->r, p->cfg, p->r->conn, ld);
}

static void conn_undo(void *arg)
{
    conn_part *p = arg;
    p->r->kind->unload(p->r->conn);
}

static int load_connector(vt_recipe *r, const cJSON *cfg, const char *where, vtok_status *st)
{
    if (!(r->conn = calloc(1, r->kind->state_size)))
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    const cJSON *wj = cfg;
    int rc = r->kind->setup(r, cfg, r->conn, &wj, st);
    if (rc)
        return rc;
    char w2[160];
    snprintf(w2, sizeof w2, "%s: connector", where);
    conn_part part = {.r = r, .cfg = cfg};
    vt_wsrc src;
    if ((rc = vt_recipe_load_part(r, cJSON_GetObjectItemCaseSensitive(wj, "file"),
                                  cJSON_GetObjectItemCaseSensitive(wj, "prefix"), w2, conn_try,
                                  conn_undo, &part, &src, st)))
        return rc;
    int64_t n = r->kind->linears(r->conn, NULL);
    vt_linear **l = malloc((size_t)(n > 0 ? n : 1) * sizeof *l);
    if (!l)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    n = r->kind->linears(r->conn, l);
    rc = vt_recipe_pack(r, l, n, &src, st);
    free(l);
    if (!rc && r->kind->load_more)
        rc = r->kind->load_more(r, r->conn, cfg, st);
    return rc;
}

/* An HF folder: path is a folder name or candidates; the first holding a config.json wins. */
static int load_hf(vt_recipe *r, vt_recipe_enc *e, const cJSON *ej, const char *where,
                   vtok_status *st)
{
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(ej, "path");
    int n = cJSON_IsArray(pj) ? cJSON_GetArraySize(pj) : 1;
    if (!pj || (!cJSON_IsString(pj) && !cJSON_IsArray(pj)) || n < 1)
        return vt_fail(st, VTOK_EFORMAT, "%s: 'path' must be a folder name or a list of them",
                       where);
    const char *first = NULL;
    for (int i = 0; i < n && !e->path; i++) {
        const cJSON *f = cJSON_IsArray(pj) ? cJSON_GetArrayItem(pj, i) : pj;
        if (!cJSON_IsString(f))
            return vt_fail(st, VTOK_EFORMAT, "%s: 'path' entries must be strings", where);
        first = first ? first : f->valuestring;
        char *path = join(r->model_dir, f->valuestring), cfg[4200];
        if (!path)
            return vt_fail(st, VTOK_ENOMEM, "out of memory");
        snprintf(cfg, sizeof cfg, "%s/config.json", path);
        if (exists(cfg))
            e->path = path;
        else
            free(path);
    }
    if (!e->path)
        return vt_fail(st, VTOK_EIO, "%s: missing model folder %s/%s (no config.json)%s", where,
                       r->model_dir, first, n > 1 ? " or its alternatives" : "");
    vtok_model_params mp = vtok_model_default_params();
    mp.use_mmap = r->use_mmap;
    mp.dtype = r->dtype;
    mp.n_threads = r->load_threads;
    mp.threadpool = r->load_pool;
    /* "weights": places that may hold a fine-tuned copy of the tower
     * (LLaVA-1.6 and SliME checkpoints: clip_encoder.py builds CLIP from
     * the folder, then the checkpoint's state dict overwrites it); the
     * first that holds one wins, else the folder's own weights. */
    const cJSON *wj = cJSON_GetObjectItemCaseSensitive(ej, "weights");
    int nw = cJSON_IsArray(wj) ? cJSON_GetArraySize(wj) : wj ? 1 : 0;
    for (int i = 0; i < nw && !e->model; i++) {
        const cJSON *f = cJSON_IsArray(wj) ? cJSON_GetArrayItem(wj, i) : wj;
        if (!cJSON_IsString(f))
            return vt_fail(st, VTOK_EFORMAT, "%s: 'weights' must be a name or a list of them",
                           where);
        char *wpath = join(r->model_dir, f->valuestring);
        if (!wpath)
            return vt_fail(st, VTOK_ENOMEM, "out of memory");
        if (exists(wpath)) {
            vtok_status s2 = {0};
            e->model = vt_model_load_weights(e->path, wpath, NULL, &mp, &s2);
            if (!e->model && s2.code != VTOK_EMISSING) { /* EMISSING: no tower (or no weights) there */
                *st = s2;
                vt_msg_prefix(st, wpath);
                free(wpath);
                return st->code ? st->code : VTOK_EFORMAT;
            }
        }
        free(wpath);
    }
    if (!e->model)
        e->model = vtok_model_load(e->path, &mp, st);
    if (!e->model)
        return st->code ? st->code : VTOK_EFORMAT;
    /* "pos_interp": "bicubic": run at the processor's size with the position
     * table resized (MoVA's CLIP at 672 from a 336 checkpoint) */
    static const char *const interps[] = {"none", "bicubic", NULL};
    int interp = 0;
    int rc = vt_opt_enum(ej, "pos_interp", interps, 0, &interp, where, st);
    if (rc)
        return rc;
    if (interp && vt_model_set_pos_interp(e->model, VT_POS_BICUBIC))
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: pos_interp: this tower cannot resize its "
                       "position table that way", where);
    e->vit = vt_model_vit(e->model);
    int64_t lp = vt_model_lp_max_in(e->model);
    r->lp_max_in = lp > r->lp_max_in ? lp : r->lp_max_in;
    return 0;
}

/* The later LLaVA-NeXT repo's string form "(1x1),...,(6x6)" (llava/mm_utils.py,
 * process_anyres_image): the first and last "(AxB)" bound a range, every
 * (i, j) in it, i outer, scaled by the processor's size: [i * side, j * side]. */
static int read_pinpoint_range(vt_slicing *s, const char *t, int64_t side, const char *where,
                               vtok_status *st)
{
    int64_t first[2] = {-1, -1}, last[2] = {-1, -1};
    for (const char *p = strchr(t, '('); p; p = strchr(p + 1, '(')) {
        long a, b;
        int used = 0;
        if (sscanf(p, "(%ldx%ld)%n", &a, &b, &used) == 2 && used > 0 && a > 0 && b > 0 &&
            a < 1000 && b < 1000) {
            if (first[0] < 0) {
                first[0] = a;
                first[1] = b;
            }
            last[0] = a;
            last[1] = b;
        }
    }
    if (first[0] < 0)
        return vt_fail(st, VTOK_EFORMAT, "%s: grid_pinpoints '%.60s' holds no (AxB)", where, t);
    int n = 0;
    for (int64_t i = first[0]; i <= last[0]; i++)
        for (int64_t j = first[1]; j <= last[1]; j++) {
            if (n == VT_SLICE_MAX_PIN)
                return vt_fail(st, VTOK_EFORMAT, "%s: grid_pinpoints '%.60s' makes over %d "
                               "pinpoints", where, t, VT_SLICE_MAX_PIN);
            s->pin[2 * n] = i * side;
            s->pin[2 * n + 1] = j * side;
            n++;
        }
    if (!n)
        return vt_fail(st, VTOK_EFORMAT, "%s: grid_pinpoints '%.60s' is an empty range", where, t);
    s->n_pin = n;
    return 0;
}

/* image_grid_pinpoints as config.json holds them: [[w, h], ...], or the
 * string range form. */
static int read_pinpoints(vt_slicing *s, const cJSON *pl, int64_t side, const char *where,
                          vtok_status *st)
{
    if (cJSON_IsString(pl))
        return read_pinpoint_range(s, pl->valuestring, side, where, st);
    int n = cJSON_IsArray(pl) ? cJSON_GetArraySize(pl) : 0;
    if (n < 1 || n > VT_SLICE_MAX_PIN)
        return vt_fail(st, VTOK_EFORMAT, "%s: grid_pinpoints must list 1..%d [width, height] "
                       "pairs", where, VT_SLICE_MAX_PIN);
    for (int i = 0; i < n; i++) {
        const cJSON *pr = cJSON_GetArrayItem(pl, i);
        for (int k = 0; k < 2; k++) {
            const cJSON *v = cJSON_IsArray(pr) && cJSON_GetArraySize(pr) == 2
                                 ? cJSON_GetArrayItem(pr, k) : NULL;
            if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble ||
                v->valuedouble < 1 || v->valuedouble > VT_SLICE_MAX_SIDE)
                return vt_fail(st, VTOK_EFORMAT, "%s: grid_pinpoints[%d] must be [width, height] "
                               "of whole pixels in 1..%d", where, i, VT_SLICE_MAX_SIDE);
            s->pin[2 * i + k] = (int64_t)v->valuedouble;
        }
    }
    s->n_pin = n;
    return 0;
}

cJSON *vt_recipe_model_config(const vt_recipe *r, vtok_status *st)
{
    char file[4200], *text = NULL;
    size_t len = 0;
    snprintf(file, sizeof file, "%s/config.json", r->model_dir);
    if (!exists(file) || vt_read_file(file, 4u << 20, &text, &len, st))
        return NULL;
    cJSON *cfg = vt_json_parse_object(text, len, file, st);
    free(text);
    return cfg;
}

/*
 * "slicing": {"type": "anyres", "grid_pinpoints": [[w, h], ...]} (LLaVA-NeXT;
 * without grid_pinpoints, image_grid_pinpoints of the model folder's
 * config.json, as llava-v1.6 and llava-hf checkpoints hold them), or
 * {"type": "uhd", "unit": 336, "max_slices": 6} (SliME). Crops are the
 * processor's crop size, the base view its resize side.
 */
static int load_slicing(vt_recipe *r, vt_recipe_enc *e, const cJSON *sj, int idx,
                        const char *where, vtok_status *st)
{
    static const char *const keys[] = {"type", "grid_pinpoints", "unit", "max_slices", NULL};
    static const char *const types[] = {"none", "anyres", "uhd", NULL};
    if (!sj)
        return 0;
    char w[160];
    snprintf(w, sizeof w, "%s: slicing", where);
    vt_slicing *s = &e->slicing;
    int rc;
    if (!cJSON_IsObject(sj))
        return vt_fail(st, VTOK_EFORMAT, "%s must be an object", w);
    if ((rc = vt_opt_check_keys(sj, keys, w, st)) ||
        (rc = vt_opt_enum(sj, "type", types, 0, &s->type, w, st)) ||
        (rc = vt_opt_int(sj, "unit", 336, &s->unit, w, st)) ||
        (rc = vt_opt_int(sj, "max_slices", 6, &s->max_slices, w, st)))
        return rc;
    if (s->type == VT_SLICE_NONE)
        return 0;
    if (!e->proc)
        return vt_fail(st, VTOK_EMISSING, "%s: the encoder has no image processor to slice for",
                       w);
    if (r->slice_enc >= 0)
        return vt_fail(st, VTOK_EFORMAT, "%s: only one encoder of a recipe may slice", w);
    vt_processor_slice_sizes(e->proc, &e->slice_base, &e->slice_crop);
    if (e->slice_base < 1 || e->slice_crop < 1)
        return vt_fail(st, VTOK_EFORMAT, "%s: the processor neither resizes nor crops to a "
                       "fixed size", w);
    if (s->unit < 1 || s->unit > 4096 || s->max_slices < 1 || s->max_slices > 64)
        return vt_fail(st, VTOK_EFORMAT, "%s: unit must be 1..4096 and max_slices 1..64", w);
    if (s->type == VT_SLICE_ANYRES) {
        const cJSON *pl = cJSON_GetObjectItemCaseSensitive(sj, "grid_pinpoints");
        cJSON *cfg = NULL;
        if (!pl) {
            st->code = 0;
            cfg = vt_recipe_model_config(r, st);
            if (!cfg && st->code)
                return st->code;
            pl = cJSON_GetObjectItemCaseSensitive(cfg, "image_grid_pinpoints");
            if (!pl) {
                cJSON_Delete(cfg);
                return vt_fail(st, VTOK_EMISSING, "%s: no grid_pinpoints, and no "
                               "image_grid_pinpoints in %s/config.json", w, r->model_dir);
            }
        }
        rc = read_pinpoints(s, pl, e->slice_base, w, st);
        cJSON_Delete(cfg);
        if (rc)
            return rc;
        for (int i = 0; i < s->n_pin; i++) {
            const int64_t pw = s->pin[2 * i], ph = s->pin[2 * i + 1], c = e->slice_crop;
            if (pw % c || ph % c)
                return vt_fail(st, VTOK_EFORMAT, "%s: pinpoint %lldx%lld is not a multiple of "
                               "the %lld-pixel crop", w, (long long)pw, (long long)ph,
                               (long long)c);
            if ((pw / c) * (ph / c) >= VT_SLICE_MAX_TILES)
                return vt_fail(st, VTOK_ELIMIT, "%s: pinpoint %lldx%lld makes %lld crops of %lld "
                               "pixels (at most %d)", w, (long long)pw, (long long)ph,
                               (long long)((pw / c) * (ph / c)), (long long)c,
                               VT_SLICE_MAX_TILES - 1);
        }
    } else if (s->unit % e->slice_crop) {
        return vt_fail(st, VTOK_EFORMAT, "%s: unit %lld is not a multiple of the %lld-pixel "
                       "crop", w, (long long)s->unit, (long long)e->slice_crop);
    }
    r->slice_enc = idx;
    return 0;
}

int vt_recipe_slice_grid(const vt_recipe *r, int64_t w, int64_t h, vt_tile_grid *g,
                         vtok_status *st)
{
    const vt_recipe_enc *e = &r->enc[r->slice_enc];
    int64_t bw, bh;
    int rc = vt_slice_grid(&e->slicing, w, h, e->slice_crop, &bw, &bh, st);
    if (rc)
        return rc;
    g->gw = bw / e->slice_crop;
    g->gh = bh / e->slice_crop;
    g->w = w;
    g->h = h;
    return 0;
}

static int load_encoder(vt_recipe *r, const cJSON *ej, int idx, vtok_status *st)
{
    static const char *const hf_keys[] = {"name", "kind", "path", "weights", "processor",
                                          "slicing", "pos_interp", NULL};
    static const char *const eva_keys[] = {"name", "kind", "file", "prefix", "variant", "config",
                                           "processor", "slicing", NULL};
    static const char *const enc_kinds[] = {"hf", "eva", NULL};
    char where[128];
    snprintf(where, sizeof where, "recipe %s: encoders[%d]", r->name, idx);
    vt_recipe_enc *e = &r->enc[idx];
    int kind = 0;
    int rc = vt_opt_enum(ej, "kind", enc_kinds, 0, &kind, where, st);
    if (rc || (rc = vt_opt_check_keys(ej, kind ? eva_keys : hf_keys, where, st)) ||
        (rc = copy_str(ej, "name", e->name, sizeof e->name, where, st)))
        return rc;
    if (!e->name[0])
        return vt_fail(st, VTOK_EFORMAT, "%s: needs a 'name'", where);
    /* The name becomes a file name (--dump writes NAME.npy): letters, digits,
     * '_', '-', '.', not starting with '.', so it can never leave the folder. */
    for (const char *c = e->name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '-' || (*c == '.' && c != e->name)))
            return vt_fail(st, VTOK_EFORMAT, "%s: name '%s' may use only letters, digits, '_', "
                           "'-' and '.' (not first): it names output files", where, e->name);
    for (int i = 0; i < idx; i++)
        if (!strcmp(r->enc[i].name, e->name))
            return vt_fail(st, VTOK_EFORMAT, "%s: two encoders named '%s'", where, e->name);
    snprintf(where, sizeof where, "recipe %s: encoder %s", r->name, e->name);
    if ((rc = kind ? load_eva(r, e, ej, where, st) : load_hf(r, e, ej, where, st)))
        return rc;
    e->pixels_from = idx;
    e->in_h = e->in_w = e->vit->image_size;

    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(ej, "processor");
    if (pr && !cJSON_IsObject(pr))
        return vt_fail(st, VTOK_EFORMAT, "%s: 'processor' must be an object", where);
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(pr, "from");
    if (from) {
        if (!cJSON_IsString(from) || cJSON_GetArraySize(pr) != 1)
            return vt_fail(st, VTOK_EFORMAT,
                           "%s: processor 'from' takes an encoder name and no other keys", where);
        int src = -1;
        for (int i = 0; i < idx; i++)
            if (!strcmp(r->enc[i].name, from->valuestring))
                src = i;
        if (src < 0)
            return vt_fail(st, VTOK_EFORMAT, "%s: processor 'from': no earlier encoder '%s'",
                           where, from->valuestring);
        e->pixels_from = r->enc[src].pixels_from;
        e->in_h = r->enc[src].in_h;
        e->in_w = r->enc[src].in_w;
        if (cJSON_GetObjectItemCaseSensitive(ej, "slicing"))
            return vt_fail(st, VTOK_EFORMAT, "%s: 'slicing' belongs to the encoder whose "
                           "processor makes the pixels", where);
        return 0;
    }
    if ((rc = load_processor(r, e, pr, where, st)))
        return rc;
    if ((rc = load_slicing(r, e, cJSON_GetObjectItemCaseSensitive(ej, "slicing"), idx, where,
                           st)))
        return rc;
    if (e->proc) { /* native input: what the processor makes of a square image */
        int64_t s = e->vit->image_size, h, w;
        if (vtok_processor_output_size(e->proc, s, s, &h, &w, st) == 0) {
            e->in_h = h;
            e->in_w = w;
        }
    }
    return 0;
}

static int64_t pool_dim(const vt_vit *v)
{
    return v->pool == VT_POOL_CLS_DENSE_TANH ? v->pool_dense.n_out : v->d;
}

int vt_recipe_plan(const vt_recipe *r, const vt_enc_req *req, int64_t n, const int64_t *h,
                   const int64_t *w, const vt_tile_grid *grid, int64_t tiles,
                   vt_enc_feats *feats, vt_plan *p, int *enc_stage, int *enc_out,
                   vtok_status *st)
{
    int64_t *rows = p->out_rows; /* the caller's buffer survives the reset */
    memset(p, 0, sizeof *p);
    p->out_rows = rows;
    for (int i = 0; i < r->n_enc; i++) {
        const vt_recipe_enc *e = &r->enc[i];
        int64_t n_req = req ? req[i].n_req : e->n_req;
        vt_enc_feats *f = &feats[i];
        memset(f, 0, sizeof *f);
        f->vit = e->vit;
        enc_stage[i] = -1;
        for (int k = 0; k < 3; k++)
            enc_out[3 * i + k] = -1;
        if (!n_req && !e->outputs)
            continue;
        const int sliced = grid && r->slice_enc >= 0 && e->pixels_from == r->slice_enc;
        f->items = sliced ? tiles : n;
        f->grid = sliced ? grid : NULL;
        f->T = vt_vit_tokens(e->vit, h[i], w[i], st);
        if (f->T <= 0) {
            char pre[64];
            snprintf(pre, sizeof pre, "encoder %s", e->name);
            vt_msg_prefix(st, pre);
            return st->code ? st->code : VTOK_ESHAPE;
        }
        f->K = n_req;
        f->d = e->vit->d;
        f->prefix = (e->vit->cls ? 1 : 0) + e->vit->n_reg;
        if (n_req) {
            enc_stage[i] = p->n_stages;
            vt_stage *s = &p->stages[p->n_stages++];
            if (f->K == 1)
                vt_stage_set(s, e->name, 3, f->items, f->T, f->d, 0);
            else
                vt_stage_set(s, e->name, 4, f->K, f->items, f->T, f->d);
        }
        const vt_vit *v = e->vit;
        if (e->outputs & VT_ENC_OUT_LAST) {
            enc_out[3 * i] = p->n_stages;
            vt_stage_set(&p->stages[p->n_stages++], "last_hidden_state", 3, f->items, f->T, f->d,
                         0);
        }
        if ((e->outputs & VT_ENC_OUT_POOLER) && v->pool != VT_POOL_NONE) {
            enc_out[3 * i + 1] = p->n_stages;
            vt_stage_set(&p->stages[p->n_stages++], "pooler_output", 2, f->items, pool_dim(v), 0,
                         0);
        }
        if ((e->outputs & VT_ENC_OUT_EMBEDS) && v->proj.n_out) {
            enc_out[3 * i + 2] = p->n_stages;
            vt_stage_set(&p->stages[p->n_stages++], "image_embeds", 2, f->items, v->proj.n_out, 0,
                         0);
        }
    }
    int first = p->first = p->n_stages;
    int rc = r->kind->plan(r->conn, feats, n, p, st);
    if (rc)
        return rc;
    if (p->n_stages <= first && !r->wrapper)
        return vt_fail(st, VTOK_EINVAL, "recipe %s: the connector produced no output", r->name);
    return 0;
}

/* ---- a model's own recipe ---- */

/* The connector of a model's own recipe: nothing after the encoder (its
 * outputs are the recipe's stages). */
static int feat_plan(const void *state, const vt_enc_feats *in, int64_t n, vt_plan *p,
                     vtok_status *st)
{
    (void)state, (void)in, (void)n, (void)p, (void)st;
    return 0;
}

static void feat_forward(const void *state, const vt_exec *e, const vt_enc_feats *in, int64_t n,
                         vt_stage *stages, int64_t *ids, float *work)
{
    (void)state, (void)e, (void)in, (void)n, (void)stages, (void)ids, (void)work;
}

static void feat_unload(void *state)
{
    (void)state;
}

static const vt_connector_kind features_kind = {
    .name = "features",
    .state_size = 1,
    .unload = feat_unload,
    .plan = feat_plan,
    .forward = feat_forward,
};

vt_recipe *vt_recipe_for_model(vtok_model *m, const vt_vit *v, int dtype, int64_t lp_max_in,
                               vtok_status *st)
{
    vt_recipe *r = calloc(1, sizeof *r);
    if (r)
        r->slice_enc = -1;
    if (!r || !(r->conn = calloc(1, 1))) {
        free(r);
        vt_fail(st, VTOK_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(r->name, sizeof r->name, "model");
    r->wrapper = 1;
    r->kind = &features_kind;
    r->max_images = (int64_t)1 << 20;
    r->dtype = dtype;
    r->lp_max_in = lp_max_in;
    r->n_enc = 1;
    vt_recipe_enc *e = &r->enc[0];
    snprintf(e->name, sizeof e->name, "model");
    e->model = m;
    e->borrowed = 1;
    e->vit = v;
    e->outputs = VT_ENC_OUT_LAST | VT_ENC_OUT_POOLER | VT_ENC_OUT_EMBEDS;
    e->run_layers = v->n_layers;
    e->in_h = e->in_w = v->image_size;
    return r;
}


static int finish_load(vt_recipe *r, vtok_status *st)
{
    vt_enc_feats feats[VT_RECIPE_MAX_ENC];
    int64_t h[VT_RECIPE_MAX_ENC], w[VT_RECIPE_MAX_ENC];
    int es[VT_RECIPE_MAX_ENC];
    for (int i = 0; i < r->n_enc; i++) {
        h[i] = r->enc[i].in_h;
        w[i] = r->enc[i].in_w;
    }
    vt_plan *p = malloc(sizeof *p);
    if (!p)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    int eo[3 * VT_RECIPE_MAX_ENC];
    /* A slicing recipe's native image: a square of its encoder's input size. */
    vt_tile_grid g = {0};
    int64_t rows = 0;
    int rc = 0;
    if (r->slice_enc >= 0)
        rc = vt_recipe_slice_grid(r, r->enc[r->slice_enc].in_w, r->enc[r->slice_enc].in_h, &g,
                                  st);
    memset(p, 0, sizeof *p);
    p->out_rows = &rows;
    if (!rc)
        rc = vt_recipe_plan(r, NULL, 1, h, w, r->slice_enc >= 0 ? &g : NULL, 1 + g.gw * g.gh,
                            feats, p, es, eo, st);
    if (!rc) {
        const vt_stage *o = &p->stages[p->n_stages - 1];
        r->tokens = p->ragged ? rows : o->ne[1];
        r->ragged = p->ragged;
        r->d_out = o->ne[o->n_dims - 1];
        r->ids_per_image = p->ids_per_image;
        r->vocab = p->vocab;
        /* the inverse exists if it plans for what the forward gives */
        vtok_status ignore = {0};
        memset(p, 0, sizeof *p);
        r->can_detok = r->kind->detok_plan &&
                       r->kind->detok_plan(r->conn, 1, r->ids_per_image, p, &ignore) == 0;
    }
    free(p);
    return rc;
}

vtok_recipe *vtok_recipe_load(const char *recipe, const char *model_dir,
                              const vtok_recipe_params *p, vtok_status *st)
{
    vtok_status local;
    if (!st)
        st = &local;
    st->code = 0;
    st->msg[0] = '\0';
    vtok_recipe_params rp = vtok_recipe_default_params();
    if (vt_params_read(&rp, sizeof rp, p, "vtok_recipe_params", st))
        return NULL;
    p = &rp;
    if (!recipe || !*recipe || !model_dir || !*model_dir) {
        vt_fail(st, VTOK_EINVAL, "a recipe needs a name (or .json path) and a model folder");
        return NULL;
    }
    struct stat sb;
    if (stat(model_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        vt_fail(st, VTOK_EIO, "%s: not a model folder", model_dir);
        return NULL;
    }
    cJSON *j = read_recipe(recipe, st);
    if (!j)
        return NULL;
    vt_recipe *r = calloc(1, sizeof *r);
    if (r)
        r->slice_enc = -1;
    if (!r) {
        cJSON_Delete(j);
        vt_fail(st, VTOK_ENOMEM, "out of memory");
        return NULL;
    }
    r->json = j;
    r->use_mmap = p->use_mmap;
    r->dtype = p->dtype;
    r->load_threads = p->n_threads;
    r->load_pool = p->threadpool;
    if (p->dtype < VTOK_DTYPE_F32 || p->dtype > VTOK_DTYPE_Q4) {
        vtok_recipe_free(r);
        vt_fail(st, VTOK_EINVAL, "unknown dtype %d", p->dtype);
        return NULL;
    }
    r->model_dir = join(model_dir, ".");
    static const char *const keys[] = {"name", "description", "max_images", "encoders",
                                       "connector", "layout", NULL};
    static const char *const lkeys[] = {"placeholder", "before", "after", "fill", "id_format",
                                        NULL};
    char where[128];
    snprintf(where, sizeof where, "recipe %s", recipe);
    const cJSON *layout = cJSON_GetObjectItemCaseSensitive(j, "layout");
    const char *desc = NULL;
    int rc = r->model_dir ? 0 : vt_fail(st, VTOK_ENOMEM, "out of memory");
    if (rc || (rc = vt_opt_check_keys(j, keys, where, st)) ||
        (rc = copy_str(j, "name", r->name, sizeof r->name, where, st)) ||
        (rc = vt_opt_str(j, "description", "", &desc, where, st)) ||
        (rc = vt_opt_int(j, "max_images", 64, &r->max_images, where, st)) ||
        (rc = vt_opt_check_keys(layout, lkeys, where, st)))
        goto fail;
    if (!r->name[0])
        snprintf(r->name, sizeof r->name, "%s", recipe);
    snprintf(where, sizeof where, "recipe %s", r->name);
    if ((rc = copy_str(layout, "placeholder", r->placeholder, sizeof r->placeholder, where, st)) ||
        (rc = copy_str(layout, "before", r->before, sizeof r->before, where, st)) ||
        (rc = copy_str(layout, "after", r->after, sizeof r->after, where, st)) ||
        (rc = copy_str(layout, "fill", r->fill, sizeof r->fill, where, st)) ||
        (rc = copy_str(layout, "id_format", r->id_format, sizeof r->id_format, where, st)))
        goto fail;
    if (r->id_format[0] && vt_id_format_check(r->id_format)) {
        rc = vt_fail(st, VTOK_EFORMAT, "%s: layout id_format '%s' must hold one %%d or %%0Nd "
                     "(N <= 9) and no other %% but %%%%", where, r->id_format);
        goto fail;
    }
    r->description = strdup(desc);
    if (r->max_images < 1 || r->max_images > 65536) {
        rc = vt_fail(st, VTOK_EFORMAT, "%s: max_images must be 1..65536", where);
        goto fail;
    }
    const cJSON *encs = cJSON_GetObjectItemCaseSensitive(j, "encoders");
    int ne = cJSON_IsArray(encs) ? cJSON_GetArraySize(encs) : 0;
    /* a connector that reads the images itself (one expert on its own) has none */
    const cJSON *ctype = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(j, "connector"), "type");
    const int own_images = cJSON_IsString(ctype) && !strcmp(ctype->valuestring, "expert");
    if (ne < !own_images || ne > (own_images ? 0 : VT_RECIPE_MAX_ENC)) {
        rc = own_images ? vt_fail(st, VTOK_EFORMAT, "%s: connector 'expert' takes no encoders",
                                  where)
                        : vt_fail(st, VTOK_EFORMAT, "%s: 'encoders' must list 1..%d encoders",
                                  where, VT_RECIPE_MAX_ENC);
        goto fail;
    }
    for (int i = 0; i < ne; i++) {
        r->n_enc = i + 1;
        if ((rc = load_encoder(r, cJSON_GetArrayItem(encs, i), i, st)))
            goto fail;
    }
    const cJSON *conn = cJSON_GetObjectItemCaseSensitive(j, "connector");
    const char *type = NULL;
    if (!cJSON_IsObject(conn) || (rc = vt_opt_str(conn, "type", NULL, &type, where, st)) ||
        !type) {
        rc = rc ? rc : vt_fail(st, VTOK_EFORMAT, "%s: needs a 'connector' with a 'type'", where);
        goto fail;
    }
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(kinds[i]->name, type))
            r->kind = kinds[i];
    if (!r->kind) {
        rc = vt_fail(st, VTOK_EUNSUPPORTED,
                     "%s: unknown connector type '%s' (llava, comm, gvt, seed, slime, mova, "
                     "expert)",
                     where, type);
        goto fail;
    }
    if ((rc = load_connector(r, conn, where, st)) || (rc = finish_load(r, st)))
        goto fail;
    r->load_pool = NULL; /* borrowed for the load only */
    return r;
fail:
    if (!st->code)
        vt_fail(st, rc ? rc : VTOK_EFORMAT, "%s: failed to load", where);
    vtok_recipe_free(r);
    return NULL;
}

void vtok_recipe_free(vtok_recipe *r)
{
    if (!r)
        return;
    if (r->kind && r->conn)
        r->kind->unload(r->conn);
    if (r->kind && r->conn && r->kind->free_state)
        r->kind->free_state(r->conn);
    free(r->conn);
    for (int i = 0; i < r->n_enc; i++) {
        if (!r->enc[i].borrowed)
            vtok_model_free(r->enc[i].model);
        if (r->enc[i].vit == &r->enc[i].own)
            vt_vit_free(&r->enc[i].own);
        vtok_processor_free(r->enc[i].proc);
        free(r->enc[i].layers);
        free(r->enc[i].path);
    }
    for (int i = 0; i < r->n_packs; i++)
        vt_free(r->packs[i]);
    vt_owned_free(&r->owned);
    for (int i = 0; i < r->n_files; i++) {
        vt_weights_close(r->files[i]);
        free(r->file_names[i]);
    }
    cJSON_Delete(r->json);
    free(r->description);
    free(r->model_dir);
    free(r);
}

int vtok_recipe_get_info(const vtok_recipe *r, vtok_recipe_info *info)
{
    if (!r || !info)
        return VTOK_EINVAL;
    *info = (vtok_recipe_info){
        .name = r->name, .description = r->description ? r->description : "",
        .n_encoders = r->n_enc, .tokens_per_image = r->tokens, .d_out = r->d_out,
        .max_images = r->max_images, .placeholder = r->placeholder, .before = r->before,
        .fill = r->fill, .id_format = r->id_format,
        .after = r->after, .ids_per_image = r->ids_per_image, .vocab = r->vocab,
        .can_detokenize = r->can_detok, .needs_text = r->kind && r->kind->needs_llm,
        .ragged = r->ragged,
    };
    return 0;
}
