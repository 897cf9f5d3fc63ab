/*
 * block.c - shared helpers of the connector blocks (block.h): tensor reads
 * that list every missing tensor in one message, and recipe option readers
 * whose messages say which recipe and block the bad option belongs to.
 */
#include "block.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int full_name(const vt_bload *b, const char *name, char *buf, size_t n)
{
    return snprintf(buf, n, "%s%s", b->prefix ? b->prefix : "", name) < (int)n;
}

int vt_bhas(const vt_bload *b, const char *name)
{
    char full[512];
    return full_name(b, name, full, sizeof full) && vt_weights_find(b->w, full) != NULL;
}

const float *vt_bget(vt_bload *b, const char *name, int n_dims, int64_t *shape)
{
    if (b->err)
        return NULL;
    char full[512];
    if (!full_name(b, name, full, sizeof full)) {
        b->err = vt_fail(b->st, VTOK_EINVAL, "tensor name too long: %s%s", b->prefix, name);
        return NULL;
    }
    if (!vt_weights_find(b->w, full)) {
        /* Appended by hand: gcc -O0 flags the snprintf equivalent as
         * possibly truncating (-Wformat-truncation) despite the check. */
        size_t used = strlen(b->missing), n = strlen(full);
        if (used + n + 3 < sizeof b->missing) {
            if (used) {
                memcpy(b->missing + used, ", ", 2);
                used += 2;
            }
            memcpy(b->missing + used, full, n + 1);
        }
        b->n_missing++;
        return NULL;
    }
    const float *p = NULL;
    int rc = vt_weights_f32(b->w, full, n_dims, shape, &p, b->st);
    if (rc) {
        if (b->file)
            vt_msg_prefix(b->st, b->file);
        b->err = rc;
        return NULL;
    }
    return p;
}

void vt_bget_linear(vt_bload *b, vt_linear *l, const char *name, int64_t n_out, int64_t n_in,
                    int bias)
{
    char nm[256];
    int64_t ws[2] = {n_out, n_in};
    snprintf(nm, sizeof nm, "%s.weight", name);
    memset(l, 0, sizeof *l);
    l->w = vt_bget(b, nm, 2, ws);
    l->n_out = l->w ? ws[0] : n_out;
    l->n_in = l->w ? ws[1] : n_in;
    if (bias) {
        int64_t bs[1] = {l->w ? ws[0] : n_out};
        snprintf(nm, sizeof nm, "%s.bias", name);
        l->b = vt_bget(b, nm, 1, bs);
    }
}

int vt_bload_finish(vt_bload *b)
{
    if (b->err)
        return b->err;
    if (b->n_missing) {
        int shown = 0;
        for (const char *p = b->missing; *p; p++)
            shown += *p == ',';
        shown++;
        if (shown < b->n_missing)
            return vt_fail(b->st, VTOK_EMISSING, "%s: missing tensors %s (and %d more)",
                           b->file ? b->file : "weights", b->missing, b->n_missing - shown);
        return vt_fail(b->st, VTOK_EMISSING, "%s: missing tensor%s %s",
                       b->file ? b->file : "weights", b->n_missing > 1 ? "s" : "", b->missing);
    }
    return 0;
}

void vt_msg_prefix(vtok_status *st, const char *prefix)
{
    char tmp[2 * sizeof st->msg];
    snprintf(tmp, sizeof tmp, "%s: %s", prefix, st->msg);
    size_t n = strlen(tmp);
    if (n >= sizeof st->msg)
        n = sizeof st->msg - 1;
    memcpy(st->msg, tmp, n);
    st->msg[n] = '\0';
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
