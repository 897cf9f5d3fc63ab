/*
 * family.h - the small vtable each vision family implements.
 *
 * A family maps config.json model_types to a loader that fills a vt_vit from
 * the checkpoint's own tensor names. Adding a family = one file + one line in
 * the registry in model.c.
 */
#ifndef VT_FAMILY_H
#define VT_FAMILY_H

#include "vit.h"

typedef struct vt_family {
    const char        *arch;          /* short name reported by vtok info */
    const char        *anchor;        /* a tensor-name suffix that locates the tower */
    const char *const *model_types;   /* NULL-terminated                    */
    /* model_types whose vision settings live under "vision_config" */
    const char *const *composite_types;
    int (*load)(vt_vit *v, vt_loader *ld, const cJSON *vcfg); /* tensors through ld */
} vt_family;

extern const vt_family vt_family_clip, vt_family_siglip, vt_family_dinov2, vt_family_vit,
    vt_family_blip2, vt_family_eva, vt_family_timm_vit;

/* Class defaults of the sizes every ViT config has. */
typedef struct vt_vit_defaults {
    int64_t     d, d_ff, layers, heads, image, patch, channels;
    const char *act;
    double      eps;
} vt_vit_defaults;

/* Read hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 * num_channels, image_size, patch_size, hidden_act, layer_norm_eps. */
int vt_read_vit_config(const cJSON *cfg, const vt_vit_defaults *def, vt_vit *v, vtok_status *st);

/* Position table [1 or absent, P, d]: sets v->pos, grid_h/grid_w from P - prefix rows. */
int vt_get_pos_table(vt_vit *v, vt_loader *ld, const char *name, int leading_one, int64_t prefix_rows);

/* encoder.layers.N.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}:
 * the layer names CLIP and SigLIP share. */
int vt_load_clip_encoder(vt_vit *v, vt_loader *ld);

/* The encoder of a loaded model (model.c), for callers that run it on memory
 * they planned themselves (recipes: vt_vit_forward on a shallow copy). */
const vt_vit *vt_model_vit(const vtok_model *m);

/* Let a fixed-size tower (CLIP) run at other sizes with its patch position
 * table resized (VT_POS_BICUBIC: F.interpolate(size=grid, bicubic,
 * align_corners=False), the CLS row kept: MoVA's resize_image_embeddings for
 * CLIP at 672). VTOK_EUNSUPPORTED if the tower has no table or already
 * interpolates another way. Only on a model not yet shared. */
int vt_model_set_pos_interp(vtok_model *m, int kind);

/* vtok_model_load with the tower's tensors from elsewhere: config.json (and
 * the family) from `folder`, weights from `weights` (a folder or a file;
 * NULL: the folder's own; p already read),
 * where the tower is found by its anchor tensor whatever its prefix, or
 * under `prefix` when given (a checkpoint holding several towers: MoVA's
 * model.vision_tower.vision_tower_K.) (a
 * LLaVA-1.6 / SliME checkpoint holds its fine-tuned CLIP under
 * model.vision_tower.vision_tower.). VTOK_EMISSING with "no vision tower
 * found" when `weights` holds none. */
vtok_model *vt_model_load_weights(const char *folder, const char *weights, const char *prefix,
                                  const vtok_model_params *p, vtok_status *st);

/* Widest input of the model's low-precision Linears (0: none), for vt_exec_lp_bytes. */
int64_t vt_model_lp_max_in(const vtok_model *m);

/* The Linears of v that vt_pack_linears may convert, each once (out may be
 * NULL to count them): for towers loaded outside vtok_model_load (vt_eva_load). */
int64_t vt_vit_linears(vt_vit *v, vt_linear **out);

#endif /* VT_FAMILY_H */
