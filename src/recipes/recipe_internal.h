/*
 * recipe_internal.h - the recipe struct, shared by recipe.c (load) and
 * run.c (contexts); connectors see only recipe.h.
 */
#ifndef VT_RECIPE_INTERNAL_H
#define VT_RECIPE_INTERNAL_H

#include "recipe.h"

#include "../image/image.h"

#define VT_RECIPE_MAX_PACKS 16

typedef struct vt_recipe_enc {
    char            name[32];
    char           *path;          /* folder loaded (malloc'ed)                         */
    vtok_model     *model;         /* an HF folder (kind "hf"), or NULL ...             */
    vt_vit          own;           /* ... a tower read from a checkpoint (kind "eva")    */
    const vt_vit   *vit;
    vtok_processor *proc;          /* NULL: no preprocessor_config.json (pixels only)  */
    int             pixels_from;   /* encoder whose pixels this one takes (itself: own) */
    int64_t        *layers;        /* requested hidden states, 0..n_layers (malloc'ed)  */
    int64_t         n_req;
    int64_t         run_layers;    /* blocks to run: the deepest requested state        */
    int64_t         in_h, in_w;    /* native input size                                 */
    int             outputs;       /* VT_ENC_OUT_*: encoder outputs given as stages too */
    int             borrowed;      /* model is not the recipe's (a model's own recipe) */
    vt_slicing      slicing;       /* high-resolution slicing of its images (type 0: none) */
    int64_t         slice_base, slice_crop; /* base view and crop sides (its processor's) */
} vt_recipe_enc;

/* Encoder outputs a recipe hands out as stages of their own (a model's
 * one-encoder recipe: last_hidden_state, pooler_output, image_embeds). */
enum { VT_ENC_OUT_LAST = 1, VT_ENC_OUT_POOLER = 2, VT_ENC_OUT_EMBEDS = 4 };

/* The hidden states one run asks of an encoder (a context may override the
 * recipe's request per run: vtok_encode's layers). */
typedef struct vt_enc_req {
    const int64_t *layers;     /* ascending or request order, 0..n_layers */
    int64_t        n_req;
    int64_t        run_layers; /* blocks to run */
} vt_enc_req;

struct vtok_recipe {
    char                     name[64];
    char                    *description;
    cJSON                   *json;
    char                    *model_dir;
    int                      use_mmap;
    int                      load_threads;    /* vtok_recipe_params: weight conversion */
    vt_pool                 *load_pool;       /*   at load (borrowed; NULL after load)  */
    vt_recipe_enc            enc[VT_RECIPE_MAX_ENC];
    int                      n_enc;
    const vt_connector_kind *kind;
    void                    *conn;
    int                      dtype;           /* vtok_dtype of every converted Linear  */
    int64_t                  lp_max_in;       /* widest low-precision Linear input     */
    void                    *packs[VT_RECIPE_MAX_PACKS];  /* vt_pack_linears blocks   */
    int                      n_packs;
    vt_weights              *files[VT_RECIPE_MAX_FILES];
    char                    *file_names[VT_RECIPE_MAX_FILES];
    int                      n_files;
    char                     placeholder[64], before[64], after[64];
    char                     fill[64], id_format[64]; /* layout (vtok_recipe_info) */
    int64_t                  max_images;
    int64_t                  tokens, d_out;   /* per image at the native size */
    int64_t                  ids_per_image, vocab;  /* discrete ids (0: none)    */
    int                      can_detok;       /* the connector maps ids back           */
    int                      wrapper;         /* a model's own one-encoder recipe      */
    int                      slice_enc;       /* the encoder that slices, or -1        */
    int                      ragged;          /* token counts differ per image         */
    vt_owned                 owned;           /* blocks parts derive at load (loader.h) */
};

/* Plan the stages for n images with per-encoder input sizes h[e] x w[e]
 * (grid: the sliced encoder's per-image tiles, `tiles` items in all, for
 * r->slice_enc and the encoders taking its pixels; NULL when none):
 * encoder stages first (its hidden states, then the outputs its `outputs`
 * flags ask for: enc_out[3e + 0/1/2] = stage of last / pooler / embeds or
 * -1), then the connector's. req[e] (NULL: the recipe's requests) says which
 * hidden states. feats gets T/d/K per encoder (hidden pointers unset). */
int vt_recipe_plan(const vt_recipe *r, const vt_enc_req *req, int64_t n, const int64_t *h,
                   const int64_t *w, const vt_tile_grid *grid, int64_t tiles,
                   vt_enc_feats *feats, vt_plan *p, int *enc_stage, int *enc_out,
                   vtok_status *st);

/* The grid of image w x h under the recipe's slicing (r->slice_enc >= 0):
 * g->gw, gh, w, h (first left to the caller). */
int vt_recipe_slice_grid(const vt_recipe *r, int64_t w, int64_t h, vt_tile_grid *g,
                         vtok_status *st);

/* A model's own recipe: one encoder (m, borrowed) whose last_hidden_state,
 * pooler_output and image_embeds are stages, no connector. vtok_encode runs
 * on it through the recipe runtime. */
vt_recipe *vt_recipe_for_model(vtok_model *m, const vt_vit *v, int dtype, int64_t lp_max_in,
                               vtok_status *st);

/* For vtok_ctx (model.c) over a recipe context of a model's own recipe. */
int vt_recipe_ctx_set_request(vtok_recipe_ctx *c, int enc, const int64_t *layers,
                              int64_t n_layers);
int vt_recipe_ctx_stage(vtok_recipe_ctx *c, int which, vtok_view *out); /* VT_ENC_OUT_* */
int vt_recipe_ctx_hidden(vtok_recipe_ctx *c, int64_t layer, vtok_view *out);
vtok_status *vt_recipe_ctx_status(vtok_recipe_ctx *c);
const vtok_recipe *vt_recipe_ctx_recipe(const vtok_recipe_ctx *c);
/* Log a failure found before the run (params, shapes) as a run's would be. */
int vt_recipe_ctx_end(vtok_recipe_ctx *c, const vtok_status *st, int rc);

#endif /* VT_RECIPE_INTERNAL_H */
