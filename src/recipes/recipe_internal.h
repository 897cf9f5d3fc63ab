/*
 * recipe_internal.h - the recipe struct, shared by recipe.c (load) and
 * run.c (contexts); connectors see only recipe.h.
 */
#ifndef VT_RECIPE_INTERNAL_H
#define VT_RECIPE_INTERNAL_H

#include "recipe.h"

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
} vt_recipe_enc;

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
    int64_t                  max_images;
    int64_t                  tokens, d_out;   /* per image at the native size */
    int64_t                  ids_per_image, vocab;  /* discrete ids (0: none)    */
    int                      can_detok;       /* the connector maps ids back           */
};

/* Plan the stages for n images with per-encoder input sizes h[e] x w[e]:
 * encoder stages first, then the connector's. feats gets T/d/K per encoder
 * (hidden pointers unset). Returns 0 or an error. */
int vt_recipe_plan(const vt_recipe *r, int64_t n, const int64_t *h, const int64_t *w,
                   vt_enc_feats *feats, vt_plan *p, int *enc_stage, vtok_status *st);

#endif /* VT_RECIPE_INTERNAL_H */
