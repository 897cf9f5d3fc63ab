/*
 * cload.h - tensor reads for connector blocks that report every missing tensor.
 *
 * The original connectors (SEED, BLIP-2) load their checkpoints with
 * load_state_dict(strict=False): a tensor absent from the file silently keeps
 * its random or bert-base initialisation. A C loader must therefore insist on
 * every tensor it uses, and a user fixing a converted or truncated file wants
 * the whole list at once, not one name per attempt. So a vt_cload keeps going
 * after a missing tensor, collects the names, and vt_cload_finish turns them
 * into one message ("N tensors missing under 'prefix': a, b, ... and K more").
 * Any other error (wrong shape or dtype) is kept as the first such error and
 * wins over the missing list, since it usually means the config is wrong.
 */
#ifndef VT_CLOAD_H
#define VT_CLOAD_H

#include "../core/ops.h"
#include "../io/io.h"

#include <cjson/cJSON.h>

typedef struct vt_cload {
    vt_weights  *w;
    const char  *prefix;       /* prepended to every name ("model." for SEED's files) */
    const char  *what;         /* block name for messages ("qformer") */
    int          err;          /* first error other than a missing tensor */
    vtok_status  err_st;       /* its message */
    int          n_missing;
    int          n_listed;
    char         missing[400]; /* the first names, comma separated */
} vt_cload;

void vt_cload_init(vt_cload *c, vt_weights *w, const char *prefix, const char *what);

/* prefix + name as float32 with exactly n_dims dims d0.. (-1 = any; see
 * vt_weights_f32). NULL if missing or wrong (recorded in c). */
const float *vt_cload_get(vt_cload *c, const char *name, int n_dims, int64_t d0, int64_t d1,
                          int64_t d2, int64_t d3);

/* name.weight [n_out, n_in] and, if bias, name.bias [n_out]. */
void vt_cload_linear(vt_cload *c, vt_linear *l, const char *name, int64_t n_out, int64_t n_in,
                     int bias);

/* name.weight, name.bias [d]. */
void vt_cload_norm(vt_cload *c, vt_norm *n, const char *name, int64_t d, float eps);

/* 0 if every read succeeded; else the error code (VTOK_EMISSING for missing
 * tensors only) with one line in st. */
int vt_cload_finish(vt_cload *c, vtok_status *st);

/* Config reads shared by the connector blocks (BERT/HF key names): the value
 * of key in cfg (may be NULL), else def; errors name the block and key. */
int vt_ccfg_int(const cJSON *cfg, const char *what, const char *key, int64_t def, int64_t *out,
                vtok_status *st);
int vt_ccfg_float(const cJSON *cfg, const char *what, const char *key, double def, double *out,
                  vtok_status *st);
int vt_ccfg_str(const cJSON *cfg, const char *what, const char *key, const char *def,
                const char **out, vtok_status *st);
int vt_ccfg_bool(const cJSON *cfg, const char *what, const char *key, int def, int *out,
                 vtok_status *st);

#endif /* VT_CLOAD_H */
