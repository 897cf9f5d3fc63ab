/*
 * loader.h - the one way tensors get from checkpoint files into a model part.
 *
 * A part (a vision tower, a connector, a block inside one) reads its tensors
 * from a *source*: one or more opened weight files read as one, under one
 * name prefix. Files later in the list override earlier ones, as successive
 * load_state_dict(strict=False) calls do in the originals (SEED v1 loads
 * causal_qformer.pth, then seed_tokenizer.pth, over a ViT from a third file).
 *
 * A *loader* walks a part's tensors through a source. It never stops at a
 * missing tensor: the originals load with strict=False, so a C loader must
 * insist on every tensor it uses, and a user fixing a converted or truncated
 * file wants the whole list at once. Missing names are collected; any other
 * failure (wrong shape, unsupported dtype, out of memory) is kept as the first
 * hard error, skips later reads, and wins over the missing list since it
 * usually means the config is wrong. vt_loader_finish turns the outcome into
 * one message naming the part, the files and the prefix searched.
 *
 * The count of tensors found lets a caller choose among candidate sources
 * (file sets x prefixes) by the tensors the part actually needs
 * (recipes/recipe.c, vt_recipe_load_part).
 */
#ifndef VT_LOADER_H
#define VT_LOADER_H

#include "../core/ops.h"
#include "io.h"

#define VT_SRC_MAX_FILES 8

/* Several opened files read as one, under one prefix. All pointers borrowed. */
typedef struct vt_wsrc {
    vt_weights *w[VT_SRC_MAX_FILES];
    const char *name[VT_SRC_MAX_FILES]; /* paths, for messages */
    int         n;
    const char *prefix;                 /* "" when none */
} vt_wsrc;

/* A source of one file. */
vt_wsrc vt_wsrc_one(vt_weights *w, const char *name, const char *prefix);

/* prefix + name in the union (the last file holding it wins), or NULL.
 * *file (if not NULL) receives the index of that file. */
const vt_st_tensor *vt_wsrc_find(const vt_wsrc *s, const char *name, int *file);

/* 1 if any file of s has a tensor whose name starts with s->prefix. */
int vt_wsrc_has_prefix(const vt_wsrc *s);

/* vt_weights_release on whichever file data came from (pack.c). */
void vt_wsrc_release(const vt_wsrc *s, const float *data);
void vt_wsrc_drop_pages(const vt_wsrc *s, const float *data);

/* "a.pth + b.pth" into buf, for messages. */
const char *vt_wsrc_files(const vt_wsrc *s, char *buf, size_t n);

/* Blocks that a part allocates while loading (derived tensors, such as a
 * fused qkv bias built from q_bias and v_bias); freed with the part. */
typedef struct vt_owned {
    void **p;
    int    n, cap;
} vt_owned;
void vt_owned_free(vt_owned *o);

typedef struct vt_loader {
    vt_wsrc      src;
    const char  *what;        /* part name for messages ("qformer"), or NULL */
    const char  *base;        /* a block's own prefix after src.prefix ("" when none):
                                 names read are src.prefix + base + name            */
    vtok_status *st;          /* receives the first hard error, and finish's message */
    vt_owned    *own;         /* where vt_loader_alloc keeps blocks (may be NULL) */
    int          err;         /* first hard error; later reads are skipped */
    int64_t      n_found;     /* tensors read successfully (to rank candidate sources) */
    int          n_missing, n_listed;
    char         missing[320];
} vt_loader;

void vt_loader_init(vt_loader *ld, const vt_wsrc *src, const char *what, vt_owned *own,
                    vtok_status *st);

/* Set ld->base for a block; returns the previous one to restore. */
const char *vt_loader_base(vt_loader *ld, const char *base);

/* Float32 data of prefix + base + name with exactly n_dims dims equal to shape[]
 * (-1 = any; actual sizes written back), converted as vt_weights_f32 does.
 * NULL when missing (collected) or on a hard error. */
const float *vt_get_shape(vt_loader *ld, const char *name, int n_dims, int64_t *shape);
/* The same with sizes given inline (unused trailing dims: 0). */
const float *vt_get(vt_loader *ld, const char *name, int n_dims, int64_t d0, int64_t d1,
                    int64_t d2, int64_t d3);
/* The same, but an absent tensor is not an error: NULL, nothing recorded. */
const float *vt_get_opt(vt_loader *ld, const char *name, int n_dims, int64_t d0, int64_t d1,
                        int64_t d2, int64_t d3);
/* The tensor record of prefix + name, or NULL (nothing recorded). */
const vt_st_tensor *vt_find(const vt_loader *ld, const char *name);

/* name.weight [n_out, n_in] and, if bias, name.bias [n_out]; a size of -1 is
 * taken from the file. */
void vt_get_linear(vt_loader *ld, vt_linear *l, const char *name, int64_t n_out, int64_t n_in,
                   int bias);
/* name.weight, name.bias [d]. */
void vt_get_norm(vt_loader *ld, vt_norm *n, const char *name, int64_t d, float eps);

/* Zeroed floats kept in ld->own; NULL + hard error on failure. */
float *vt_loader_alloc(vt_loader *ld, int64_t n);

/* Record a hard error of the part's own (a config that does not fit the
 * tensors); returns code. */
int vt_loader_fail(vt_loader *ld, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 0 if every read succeeded; else the hard error, or VTOK_EMISSING with
 * "WHAT: N tensors missing: a, b, ... and K more (prefix 'P' in FILES)". */
int vt_loader_finish(vt_loader *ld);

#endif /* VT_LOADER_H */
