/*
 * cload.c - connector tensor reads that collect every missing name (cload.h).
 */
#include "cload.h"

#include "../models/vit.h"

#include <stdio.h>
#include <string.h>

void vt_cload_init(vt_cload *c, vt_weights *w, const char *prefix, const char *what)
{
    memset(c, 0, sizeof *c);
    c->w = w;
    c->prefix = prefix ? prefix : "";
    c->what = what;
}

static void note_missing(vt_cload *c, const char *name)
{
    c->n_missing++;
    size_t used = strlen(c->missing), need = strlen(name) + (used ? 2 : 0);
    /* keep room for the rest of the message (vtok_status.msg is 512 bytes) */
    if (used + need + 1 > sizeof c->missing)
        return;
    /* Fits (checked above); testing the result also keeps gcc's
     * -Wformat-truncation quiet where it cannot see that. */
    if (snprintf(c->missing + used, sizeof c->missing - used, "%s%s", used ? ", " : "", name) > 0)
        c->n_listed++;
}

const float *vt_cload_get(vt_cload *c, const char *name, int n_dims, int64_t d0, int64_t d1,
                          int64_t d2, int64_t d3)
{
    char full[512];
    if (snprintf(full, sizeof full, "%s%s", c->prefix, name) >= (int)sizeof full) {
        if (!c->err)
            c->err = vt_fail(&c->err_st, VTOK_EINVAL, "%s: tensor name too long: %s%s",
                             c->what, c->prefix, name);
        return NULL;
    }
    if (!vt_weights_find(c->w, full)) {
        note_missing(c, name);
        return NULL;
    }
    int64_t shape[4] = {d0, d1, d2, d3};
    const float *p = NULL;
    vtok_status st = {0};
    int rc = vt_weights_f32(c->w, full, n_dims, shape, &p, &st);
    if (rc) {
        if (!c->err)
            c->err = vt_fail(&c->err_st, rc, "%s: %s", c->what, st.msg);
        return NULL;
    }
    return p;
}

void vt_cload_linear(vt_cload *c, vt_linear *l, const char *name, int64_t n_out, int64_t n_in,
                     int bias)
{
    char buf[512];
    memset(l, 0, sizeof *l);
    snprintf(buf, sizeof buf, "%s.weight", name);
    l->w = vt_cload_get(c, buf, 2, n_out, n_in, 0, 0);
    l->n_out = n_out;
    l->n_in = n_in;
    if (bias) {
        snprintf(buf, sizeof buf, "%s.bias", name);
        l->b = vt_cload_get(c, buf, 1, n_out, 0, 0, 0);
    }
}

void vt_cload_norm(vt_cload *c, vt_norm *n, const char *name, int64_t d, float eps)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s.weight", name);
    n->w = vt_cload_get(c, buf, 1, d, 0, 0, 0);
    snprintf(buf, sizeof buf, "%s.bias", name);
    n->b = vt_cload_get(c, buf, 1, d, 0, 0, 0);
    n->eps = eps;
}

int vt_cload_finish(vt_cload *c, vtok_status *st)
{
    if (c->err) {
        if (st)
            *st = c->err_st;
        return c->err;
    }
    if (!c->n_missing)
        return 0;
    int more = c->n_missing - c->n_listed;
    char tail[48] = "";
    if (more)
        snprintf(tail, sizeof tail, " and %d more", more);
    return vt_fail(st, VTOK_EMISSING, "%s: %d tensor%s missing under '%s': %s%s", c->what,
                   c->n_missing, c->n_missing == 1 ? "" : "s", c->prefix, c->missing, tail);
}

/* ---- config ---- */

static int cfg_fail(const char *what, int rc, vtok_status *st)
{
    /* vt_cfg_* say "config.json: ..."; name the block instead. */
    if (st) {
        char msg[sizeof st->msg];
        const char *m = strncmp(st->msg, "config.json: ", 13) == 0 ? st->msg + 13 : st->msg;
        snprintf(msg, sizeof msg, "%s", m);
        vt_fail(st, rc, "%s config: %.480s", what, msg);
    }
    return rc;
}

int vt_ccfg_int(const cJSON *cfg, const char *what, const char *key, int64_t def, int64_t *out,
                vtok_status *st)
{
    int rc = vt_cfg_int(cfg, key, def, out, st);
    return rc ? cfg_fail(what, rc, st) : 0;
}

int vt_ccfg_float(const cJSON *cfg, const char *what, const char *key, double def, double *out,
                  vtok_status *st)
{
    int rc = vt_cfg_float(cfg, key, def, out, st);
    return rc ? cfg_fail(what, rc, st) : 0;
}

int vt_ccfg_str(const cJSON *cfg, const char *what, const char *key, const char *def,
                const char **out, vtok_status *st)
{
    int rc = vt_cfg_str(cfg, key, def, out, st);
    return rc ? cfg_fail(what, rc, st) : 0;
}

int vt_ccfg_bool(const cJSON *cfg, const char *what, const char *key, int def, int *out,
                 vtok_status *st)
{
    int rc = vt_cfg_bool(cfg, key, def, out, st);
    return rc ? cfg_fail(what, rc, st) : 0;
}
