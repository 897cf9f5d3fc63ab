/*
 * block.h - what every connector block (projector, merge, resampler, ...)
 * shares: a tensor getter that collects missing names instead of stopping
 * at the first, and typed readers of a block's JSON options.
 *
 * Block convention (one file per block under src/connectors/):
 *   int     vt_X_load(vt_X *x, vt_weights *w, const char *prefix, const cJSON *cfg, vtok_status *st);
 *   int64_t vt_X_work_floats(const vt_X *x, int64_t n, int64_t t_in);
 *   int64_t vt_X_max_tokens(const vt_X *x, int64_t t_in);   (tokens out, for scratch and planning)
 *   void    vt_X_forward(const vt_X *x, const vt_exec *e, const float *in, int64_t n,
 *                        int64_t t_in, float *out, float *work);
 *   void    vt_X_free(vt_X *x);
 * Weights stay in the vt_weights they were read from (which must outlive x);
 * forward never allocates.
 */
#ifndef VT_BLOCK_H
#define VT_BLOCK_H

#include "../core/ops.h"
#include "../io/io.h"

#include <cjson/cJSON.h>

/* Loading state of one block: tensors are `prefix + name`. Missing tensors
 * are collected (all of them are named in the final error); any other error
 * stops further reads. */
typedef struct vt_bload {
    vt_weights  *w;
    const char  *prefix;
    const char  *file;        /* for messages */
    vtok_status *st;
    int          err;
    int          n_missing;
    char         missing[384];
} vt_bload;

/* Float32 data of prefix+name with n_dims dims equal to shape (-1 = any;
 * actual sizes written back). NULL if missing or misshaped. */
const float *vt_bget(vt_bload *b, const char *name, int n_dims, int64_t *shape);
/* 1 if prefix+name exists. */
int vt_bhas(const vt_bload *b, const char *name);
/* Linear prefix+name.weight [n_out, n_in] (+ .bias [n_out] if bias); sizes
 * given as -1 are taken from the file. */
void vt_bget_linear(vt_bload *b, vt_linear *l, const char *name, int64_t n_out, int64_t n_in,
                    int bias);
/* st->msg = "prefix: " + st->msg (truncated to fit). */
void vt_msg_prefix(vtok_status *st, const char *prefix);

/* 0, or the error: "FILE: missing tensors a, b, c". */
int vt_bload_finish(vt_bload *b);

/* ---- options (messages name `where`, e.g. "recipe comm: clip_merge") ---- */

/* Fail on keys of obj not in allowed (NULL-terminated): catches typos in recipes. */
int vt_opt_check_keys(const cJSON *obj, const char *const *allowed, const char *where,
                      vtok_status *st);
int vt_opt_int(const cJSON *obj, const char *key, int64_t def, int64_t *out, const char *where,
               vtok_status *st);
int vt_opt_float(const cJSON *obj, const char *key, double def, double *out, const char *where,
                 vtok_status *st);
int vt_opt_bool(const cJSON *obj, const char *key, int def, int *out, const char *where,
                vtok_status *st);
/* String option; *out points into obj (or is def). */
int vt_opt_str(const cJSON *obj, const char *key, const char *def, const char **out,
               const char *where, vtok_status *st);
/* String option that must be one of choices (NULL-terminated); *out = its index. */
int vt_opt_enum(const cJSON *obj, const char *key, const char *const *choices, int def, int *out,
                const char *where, vtok_status *st);

#endif /* VT_BLOCK_H */
