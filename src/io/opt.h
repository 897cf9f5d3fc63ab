/*
 * opt.h - typed reads of JSON options (config.json, recipes, block configs).
 *
 * Every reader takes the object (may be NULL: all defaults), the key, the
 * default, and `where` for messages ("config.json", "recipe comm:
 * clip_merge", "qformer"): errors read "WHERE: 'key' must be an integer".
 */
#ifndef VT_OPT_H
#define VT_OPT_H

#include "../core/vt.h"

#include <cjson/cJSON.h>

/* Fail on keys of obj not in allowed (NULL-terminated): catches typos. Keys
 * starting with '_' (comments) are allowed. */
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
/* image_size / patch_size: an int or an [h, w] pair; both must be equal for now. */
int vt_opt_side(const cJSON *obj, const char *key, int64_t def, int64_t *out, const char *where,
                vtok_status *st);

/* n numbers (a list of n, or one number for all); out untouched when absent. */
int vt_opt_floats(const cJSON *obj, const char *key, int n, double *out, const char *where,
                  vtok_status *st);

/* Parse text as a JSON object; refuses anything else, and an object (at any
 * depth) with a key twice. NULL + st on error; free with cJSON_Delete. */
cJSON *vt_json_parse_object(const char *text, size_t len, const char *what, vtok_status *st);

/* st->msg = "prefix: " + st->msg (truncated to fit). */
void vt_msg_prefix(vtok_status *st, const char *prefix);

#endif /* VT_OPT_H */
