/*
 * opt.c - the one reader of JSON options: config.json of HF folders, recipe
 * objects, block configs (opt.h).
 *
 * transformers writes config.json as a diff against the config class
 * defaults, so an absent (or null) key means "the default", which the caller
 * passes. A key that is present with the wrong type is an error, never
 * silently replaced.
 */
#include "opt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vt_msg_prefix(vtok_status *st, const char *prefix)
{
    char tmp[2 * sizeof st->msg];
    snprintf(tmp, sizeof tmp, "%s: %s", prefix, st->msg);
    size_t n = strlen(tmp);
    if (n >= sizeof st->msg)
        n = sizeof st->msg - 1;
    memcpy(st->msg, tmp, n);
    st->msg[n] = '\0';
    vt_msg_oneline(st->msg); /* the prefix may quote a name from a file */
}

/* ---- options ---- */

static const cJSON *opt(const cJSON *obj, const char *key)
{
    const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    return cJSON_IsNull(it) ? NULL : it;
}

int vt_opt_check_keys(const cJSON *obj, const char *const *allowed, const char *where,
                      vtok_status *st)
{
    if (!obj)
        return 0;
    if (!cJSON_IsObject(obj))
        return vt_fail(st, VTOK_EFORMAT, "%s: must be a JSON object", where);
    for (const cJSON *it = obj->child; it; it = it->next) {
        int ok = it->string && it->string[0] == '_'; /* "_comment" keys are free */
        for (const char *const *a = allowed; !ok && *a; a++)
            ok = !strcmp(*a, it->string);
        if (!ok)
            return vt_fail(st, VTOK_EFORMAT, "%s: unknown option '%s'", where,
                           it->string ? it->string : "?");
    }
    return 0;
}

int vt_opt_int(const cJSON *obj, const char *key, int64_t def, int64_t *out, const char *where,
               vtok_status *st)
{
    const cJSON *it = opt(obj, key);
    *out = def;
    if (!it)
        return 0;
    double d = it->valuedouble;
    if (!cJSON_IsNumber(it) || d != floor(d) || fabs(d) > 9e15)
        return vt_fail(st, VTOK_EFORMAT, "%s: '%s' must be an integer", where, key);
    *out = (int64_t)d;
    return 0;
}

int vt_opt_float(const cJSON *obj, const char *key, double def, double *out, const char *where,
                 vtok_status *st)
{
    const cJSON *it = opt(obj, key);
    *out = def;
    if (!it)
        return 0;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return vt_fail(st, VTOK_EFORMAT, "%s: '%s' must be a number", where, key);
    *out = it->valuedouble;
    return 0;
}

int vt_opt_bool(const cJSON *obj, const char *key, int def, int *out, const char *where,
                vtok_status *st)
{
    const cJSON *it = opt(obj, key);
    *out = def;
    if (!it)
        return 0;
    if (!cJSON_IsBool(it))
        return vt_fail(st, VTOK_EFORMAT, "%s: '%s' must be true or false", where, key);
    *out = cJSON_IsTrue(it);
    return 0;
}

int vt_opt_str(const cJSON *obj, const char *key, const char *def, const char **out,
               const char *where, vtok_status *st)
{
    const cJSON *it = opt(obj, key);
    *out = def;
    if (!it)
        return 0;
    if (!cJSON_IsString(it))
        return vt_fail(st, VTOK_EFORMAT, "%s: '%s' must be a string", where, key);
    *out = it->valuestring;
    return 0;
}

int vt_opt_enum(const cJSON *obj, const char *key, const char *const *choices, int def, int *out,
                const char *where, vtok_status *st)
{
    const char *s = NULL;
    int rc = vt_opt_str(obj, key, NULL, &s, where, st);
    *out = def;
    if (rc || !s)
        return rc;
    for (int i = 0; choices[i]; i++)
        if (!strcmp(choices[i], s)) {
            *out = i;
            return 0;
        }
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        size_t u = strlen(list);
        snprintf(list + u, sizeof list - u, "%s%s", i ? ", " : "", choices[i]);
    }
    return vt_fail(st, VTOK_EFORMAT, "%s: '%s' is '%s', expected one of %s", where, key, s, list);
}

int vt_opt_side(const cJSON *cfg, const char *key, int64_t def, int64_t *out, const char *where,
                vtok_status *st)
{
    const cJSON *it = opt(cfg, key);
    if (cJSON_IsArray(it)) {
        const cJSON *a = cJSON_GetArrayItem(it, 0), *b = cJSON_GetArrayItem(it, 1);
        if (cJSON_GetArraySize(it) != 2 || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) ||
            a->valuedouble != floor(a->valuedouble) || fabs(a->valuedouble) > 9e15)
            return vt_fail(st, VTOK_EFORMAT, "%s: '%s' must be an integer or [h, w]",
                           where, key);
        if (a->valuedouble != b->valuedouble)
            return vt_fail(st, VTOK_EUNSUPPORTED, "%s: non-square '%s' [%g, %g]", where, key,
                           a->valuedouble, b->valuedouble);
        *out = (int64_t)a->valuedouble;
        return 0;
    }
    return vt_opt_int(cfg, key, def, out, where, st);
}

int vt_opt_floats(const cJSON *obj, const char *key, int n, double *out, const char *where,
                  vtok_status *st)
{
    const cJSON *it = opt(obj, key);
    if (!it)
        return 0;
    if (cJSON_IsNumber(it) && !isfinite(it->valuedouble))
        return vt_fail(st, VTOK_EFORMAT, "%s: '%s' must be finite", where, key);
    if (cJSON_IsNumber(it)) { /* one value for every entry */
        for (int i = 0; i < n; i++)
            out[i] = it->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != n)
        return vt_fail(st, VTOK_EFORMAT, "%s: '%s' must be %d numbers", where, key, n);
    for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetArrayItem(it, i);
        if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
            return vt_fail(st, VTOK_EFORMAT, "%s: '%s' must be %d numbers", where, key, n);
        out[i] = x->valuedouble;
    }
    return 0;
}

/* ---- parsing ---- */

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first key that appears twice in an object, anywhere below j; NULL if none.
 * *oom is set when the check could not allocate. */
static const char *duplicate_key(const cJSON *j, int *oom)
{
    if (!cJSON_IsObject(j) && !cJSON_IsArray(j))
        return NULL;
    int n = 0;
    for (const cJSON *c = j->child; c; c = c->next)
        n++;
    if (cJSON_IsObject(j) && n > 1) {
        const char **keys = malloc((size_t)n * sizeof *keys);
        if (!keys) {
            *oom = 1;
            return NULL;
        }
        int k = 0;
        for (const cJSON *c = j->child; c; c = c->next)
            keys[k++] = c->string ? c->string : "";
        qsort(keys, (size_t)n, sizeof *keys, cmp_key);
        const char *dup = NULL;
        for (int i = 1; i < n && !dup; i++)
            if (!strcmp(keys[i - 1], keys[i]))
                dup = keys[i];
        free(keys);
        if (dup)
            return dup;
    }
    for (const cJSON *c = j->child; c; c = c->next) {
        const char *d = duplicate_key(c, oom);
        if (d || *oom)
            return d;
    }
    return NULL;
}

cJSON *vt_json_parse_object(const char *text, size_t len, const char *what, vtok_status *st)
{
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        vt_fail(st, VTOK_EFORMAT, "%s: not a valid JSON object", what);
        return NULL;
    }
    /* Python's json (what transformers reads configs with) keeps the last of
     * two equal keys, cJSON the first: a file that means different things to
     * the two is refused rather than read one way silently. */
    int oom = 0;
    const char *dup = duplicate_key(j, &oom);
    if (dup || oom) {
        if (oom)
            vt_fail(st, VTOK_ENOMEM, "%s: out of memory checking keys", what);
        else
            vt_fail(st, VTOK_EFORMAT, "%s: duplicate key '%.100s' (JSON readers disagree on "
                    "which one counts)", what, dup);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}
