/*
 * recipe.h - the recipe runtime: a recipe (JSON) names its encoders (Hugging
 * Face folders under a model directory), the hidden states it needs from
 * each, and one connector that turns them into LLM-ready tokens.
 *
 * A connector kind is a small vtable (llava.c, comm.c, gvt.c, seed.c):
 *   setup    read the "connector" object's own options and ask encoders for
 *            hidden states (vt_recipe_request), once.
 *   load     load its blocks (block.h) through a loader; the runtime picks
 *            the weight source (vt_recipe_load_part), then converts the
 *            Linears the kind lists (linears) for the recipe's dtype.
 *   plan     for n images and the encoders' token counts: its stages (named
 *            outputs, shapes), the work floats, the max tokens it attends over.
 *   forward  run on the planned buffers (it gets its own stages, in the
 *            order it planned them); the last stage is the output
 *            embeddings [n, tokens, d_llm]. A quantising connector (SEED)
 *            also writes ids [n, ids_per_image] when its plan asks for them.
 *            Never allocates. The caller's conditioning of this run
 *            (vtok_run_params: prompt, cond, n_cond) is in e->run, for
 *            connectors that route or select by the text (none yet).
 *   free     release the state.
 *   detok_plan, detok  (optional) the inverse: discrete ids -> embeddings
 *            (SEED's de-tokenizer); plan and run as above, from ids instead
 *            of encoder features. detok checks the ids and may fail.
 * The runtime (run.c) plans one memory block per context: encoder work and
 * scratch, every stage (so --dump can hand out each of them), connector work.
 */
#ifndef VT_RECIPE_H
#define VT_RECIPE_H

#include "../connectors/block.h"
#include "../models/vit.h"

#define VT_RECIPE_MAX_ENC    8
#define VT_RECIPE_MAX_STAGES 24
#define VT_RECIPE_MAX_FILES  16

typedef struct vtok_recipe vt_recipe;  /* the public vtok_recipe */

/* One named output of a pipeline step, [ne0, ne1, ...] row-major. */
typedef struct vt_stage {
    char    name[32];
    int     n_dims;
    int64_t ne[4];
    float  *data;        /* set by the runtime before forward */
    int64_t *rows;       /* the ragged output stage: the plan's out_rows, which the
                            forward may lower (token selection); the runtime packs
                            ne[0] to their sum afterwards. NULL otherwise */
} vt_stage;

/* How a sliced image (LLaVA-NeXT anyres, SliME) became encoder items: its
 * tiles are items [first, first + 1 + gw * gh) of the run, the base view
 * first, then the crops row by row; w x h is the image's own size (unpad). */
typedef struct vt_tile_grid {
    int64_t first, gw, gh, w, h;
} vt_tile_grid;

/* The hidden states an encoder delivers to the connector. */
typedef struct vt_enc_feats {
    const vt_vit       *vit;
    const float        *hidden;  /* [K, items, T, d]: requested hidden states, in request order */
    int64_t             K, T, d;
    int64_t             prefix;  /* CLS + register tokens in front of the patches */
    int64_t             items;   /* encoder items: n images, or their tiles when sliced */
    const vt_tile_grid *grid;    /* sliced: one per image; NULL: item i is image i */
    const float        *pixels;  /* the encoder's input [items, channels, h, w] (forward only) */
    int64_t             h, w;
} vt_enc_feats;

typedef struct vt_plan {
    vt_stage stages[VT_RECIPE_MAX_STAGES];
    int      n_stages;
    int      first;         /* the connector's stages start here (encoder stages before) */
    int64_t  work_floats;
    int64_t  max_tokens;    /* attention length the connector needs scratch for (0: none) */
    int64_t  lp_rows;       /* most rows one connector Linear sees (low-precision buffer) */
    int64_t  lp_max_in;     /* widest low-precision Linear input of parts the connector
                               loaded on demand (prepare), beyond the recipe's own    */
    int64_t  ids_per_image; /* discrete ids the forward writes per image (0: none)       */
    int64_t  vocab;         /* ids are in [0, vocab)                                      */
    /* Ragged output: images of one run may give different token counts
     * (high-resolution slicing, token selection). ragged 0: the output stage
     * is [n, tokens, d] (every image alike). ragged 1: the plan wrote image
     * i's token count to out_rows[i] (n entries the runtime provides) and the
     * output stage is the flat [sum of out_rows, d]. */
    int      ragged;
    int64_t *out_rows;
} vt_plan;

typedef struct vt_connector_kind {
    const char *name;
    size_t      state_size;
    /* Options of the connector itself and the encoder requests; runs once.
     * *weights = the JSON object holding "file" and "prefix" (cfg itself,
     * or a sub-object such as LLaVA's "projector"). */
    int  (*setup)(vt_recipe *r, const cJSON *cfg, void *state, const cJSON **weights,
                  vtok_status *st);
    /* The blocks: their options and tensors through ld (block.h). May run
     * once per candidate source; unload undoes it (zeroed, ready to retry). */
    int  (*load)(vt_recipe *r, const cJSON *cfg, void *state, vt_loader *ld);
    void (*unload)(void *state);
    /* Linears to convert for the recipe's dtype, each once (out NULL: count). */
    int64_t (*linears)(void *state, vt_linear **out);
    int  (*plan)(const void *state, const vt_enc_feats *in, int64_t n, vt_plan *p,
                 vtok_status *st);
    void (*forward)(const void *state, const vt_exec *e, const vt_enc_feats *in, int64_t n,
                    vt_stage *stages, int64_t *ids, float *work);
    /* (optional) A connector that reads the run's text (vt_run: llm,
     * text_ids) checks it here, before anything runs; forward may then rely
     * on it. Its presence marks the recipe as needing text. */
    int  (*check_run)(const void *state, const vt_run *run, vtok_status *st);
    /* (optional) After check_run, before planning: a connector whose parts
     * load on demand (MoVA's experts, by the run's routing) loads what this
     * run needs. May run on several contexts' threads at once: the kind
     * serialises its own loading. */
    int  (*prepare)(vt_recipe *r, void *state, const vt_run *run, vtok_status *st);
    /* (optional) forward for a connector that can fail while running (it
     * preprocesses the run's images itself: e->run->images); replaces forward. */
    int  (*forward_run)(const void *state, const vt_exec *e, const vt_enc_feats *in, int64_t n,
                        vt_stage *stages, float *work, vtok_status *st);
    /* (optional) Parts loaded from a source of their own after the blocks
     * (MoVA's text encoder), and what setup made besides them (freed last). */
    int  (*load_more)(vt_recipe *r, void *state, const cJSON *cfg, vtok_status *st);
    void (*free_state)(void *state);
    int  needs_llm;  /* runs need vtok_run_params llm + text_ids (check_run checks them) */
    int  (*detok_plan)(const void *state, int64_t n, int64_t t, vt_plan *p, vtok_status *st);
    int  (*detok)(const void *state, const vt_exec *e, const int64_t *ids, int64_t n, int64_t t,
                  vt_stage *stages, float *work, vtok_status *st);
} vt_connector_kind;

extern const vt_connector_kind vt_connector_llava, vt_connector_comm, vt_connector_gvt,
    vt_connector_seed, vt_connector_slime, vt_connector_mova, vt_connector_expert;

/* The model folder's config.json parsed (cJSON_Delete it), or NULL with
 * *st untouched when the folder has none; NULL with st set if unreadable. */
cJSON *vt_recipe_model_config(const vt_recipe *r, vtok_status *st);

/* An image processor: folder's preprocessor_config.json (folder NULL: the
 * torchvision pipeline, TorchvisionImageProcessor) with the keys of `over`
 * (may be NULL) merged over it. A folder without the file gives NULL with
 * *none = 1 when none is not NULL and over is empty, else a failure. */
vtok_processor *vt_recipe_processor(const char *folder, const cJSON *over, int *none,
                                    const char *where, vtok_status *st);

/* Index of the encoder named `name` in the recipe, or a failure naming it. */
int vt_recipe_encoder(vt_recipe *r, const char *name, const char *where, vtok_status *st);

/* Ask encoder `enc` for hidden states (HF indexing: 0 = embeddings, i = after
 * layer i, negative from the end). Call once per encoder; the connector then
 * gets them stacked in this order. */
int vt_recipe_request(vt_recipe *r, int enc, const int64_t *layers, int64_t n_layers,
                      const char *where, vtok_status *st);

/* Layer count of encoder `enc` (for option defaults such as "all layers"). */
int64_t vt_recipe_encoder_layers(const vt_recipe *r, int enc);
/* Hidden width of encoder `enc`. */
int64_t vt_recipe_encoder_width(const vt_recipe *r, int enc);

/*
 * Load one part (an encoder tower read from a checkpoint, a connector) from
 * the first candidate source that has every tensor it needs:
 *   file    a name, or a list of candidates; a candidate is a name or a list
 *           of names read as one (later files override earlier ones, like
 *           successive load_state_dict(strict=False)); a candidate counts
 *           only if all its files exist. Names are relative to the model
 *           folder, absolute, or "$TORCH_HOME/..." (torch.hub's cache:
 *           $TORCH_HOME, else $XDG_CACHE_HOME/torch, else ~/.cache/torch);
 *           "." is the folder's own safetensors.
 *   prefix  a name prefix or a list of them ("" when absent).
 * For each existing candidate in order, each prefix in order: load(arg, ld)
 * then vt_loader_finish; the first success wins (*src = that source). A
 * failure caused by options (nothing read) stops at once; otherwise unload
 * and try the next. If none has everything, the error is the one of the
 * candidate that had the most tensors, naming its files, prefix and every
 * missing or misshaped tensor.
 */
typedef int (*vt_part_load)(void *arg, vt_loader *ld);
typedef void (*vt_part_unload)(void *arg);
int vt_recipe_load_part(vt_recipe *r, const cJSON *file, const cJSON *prefix, const char *where,
                        vt_part_load load, vt_part_unload unload, void *arg, vt_wsrc *src,
                        vtok_status *st);

/* Convert n Linears (each listed once) for the recipe's dtype with
 * vt_pack_linears: f32 panels, or bf16 / int8 with the float weights
 * released (never read a listed Linear's w afterwards; keep tensors read as
 * plain floats, such as a VQ codebook, out of the list). src is where they
 * came from. The converted block lives as long as the recipe. */
int vt_recipe_pack(vt_recipe *r, vt_linear *const *l, int64_t n, const vt_wsrc *src,
                   vtok_status *st);

/* Name of the recipe (for messages). */
const char *vt_recipe_name(const vt_recipe *r);
/* The recipe's connector kind and state. */
const vt_connector_kind *vt_recipe_kind(const vt_recipe *r);
void                    *vt_recipe_conn(const vt_recipe *r);
/* The model folder, and the load options parts loaded later must follow. */
const char *vt_recipe_model_dir(const vt_recipe *r);
void        vt_recipe_load_opts(const vt_recipe *r, int *use_mmap, int *dtype);

/* Copy the patch rows of x [B, T, d] (skipping `skip` prefix rows) to y [B, T - skip, d]. */
void vt_select_rows(const float *x, int64_t B, int64_t T, int64_t d, int64_t skip, float *y);

/* Fill a stage entry. */
void vt_stage_set(vt_stage *s, const char *name, int n_dims, int64_t a, int64_t b, int64_t c,
                  int64_t d);

/* The JSON of a shipped recipe (recipes/NAME.json, embedded at build time), or NULL. */
const char *vt_builtin_recipe(const char *name, size_t *len);
/* NULL-terminated names of the shipped recipes. */
const char *const *vt_builtin_recipe_names(void);

#endif /* VT_RECIPE_H */
