/*
 * mlp.c - Linear / mlpNx_gelu / identity projectors (mlp.h).
 *
 * LLaVA: Sequential(Linear(mm_hidden, d_llm), GELU(), Linear(d_llm, d_llm))
 * for mlp2x_gelu; every Linear has a bias. The activation runs in place on
 * the intermediate buffer; two intermediate buffers alternate for depth > 2.
 */
#include "mlp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vt_mlp_depth(const char *type)
{
    if (!strcmp(type, "identity"))
        return 0;
    if (!strcmp(type, "linear"))
        return 1;
    int n = 0, len = 0;
    if (sscanf(type, "mlp%dx_gelu%n", &n, &len) == 1 && len == (int)strlen(type) && n >= 1 &&
        n <= VT_MLP_MAX_DEPTH)
        return n;
    return -1;
}

int vt_mlp_load(vt_mlp *x, vt_loader *ld, const char *base, const cJSON *cfg, int64_t d_in,
                const char *where)
{
    vtok_status *st = ld->st;
    static const char *const keys[] = {"type", "bias", "act", "prefix", "file", NULL};
    memset(x, 0, sizeof *x);
    const char *type, *act;
    int bias, rc;
    if ((rc = vt_opt_check_keys(cfg, keys, where, st)) ||
        (rc = vt_opt_str(cfg, "type", "mlp2x_gelu", &type, where, st)) ||
        (rc = vt_opt_str(cfg, "act", "gelu", &act, where, st)) ||
        (rc = vt_opt_bool(cfg, "bias", 1, &bias, where, st)))
        return rc;
    x->depth = vt_mlp_depth(type);
    if (x->depth < 0)
        return vt_fail(st, VTOK_EUNSUPPORTED,
                       "%s: unknown projector type '%s' (linear, mlpNx_gelu, identity)", where, type);
    int a = vt_act_from_name(act);
    if (a < 0)
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: unknown activation '%s'", where, act);
    x->act = (vt_act)a;
    x->d_in = x->d_out = d_in;
    if (x->depth == 0)
        return 0;

    const char *saved = vt_loader_base(ld, base);
    int style = 0; /* 0: Sequential "2i", 1: llava-hf "linear_{i+1}", 2: bare Linear */
    if (!vt_find(ld, "0.weight")) {
        if (vt_find(ld, "linear_1.weight"))
            style = 1;
        else if (x->depth == 1 && vt_find(ld, "weight"))
            style = 2;
    }
    int64_t prev = d_in > 0 ? d_in : -1;
    for (int i = 0; i < x->depth; i++) {
        char name[64];
        if (style == 0)
            snprintf(name, sizeof name, "%d", 2 * i);
        else if (style == 1)
            snprintf(name, sizeof name, "linear_%d", i + 1);
        if (style == 2) { /* bare Linear: prefix + "weight" */
            int64_t ws[2] = {-1, prev}, bs[1] = {-1};
            x->fc[0].w = vt_get_shape(ld, "weight", 2, ws);
            x->fc[0].n_out = ws[0];
            x->fc[0].n_in = ws[1];
            if (bias && x->fc[0].w) {
                bs[0] = ws[0];
                x->fc[0].b = vt_get_shape(ld, "bias", 1, bs);
            }
        } else {
            vt_get_linear(ld, &x->fc[i], name, -1, prev, bias);
        }
        if (!x->fc[i].w)
            prev = -1;
        else
            prev = x->fc[i].n_out;
    }
    vt_loader_base(ld, saved);
    for (int i = 0; i < x->depth; i++)
        if (!x->fc[i].w) /* missing: listed by the loader; sizes stay unknown */
            return ld->err;
    x->d_in = x->fc[0].n_in;
    x->d_out = x->fc[x->depth - 1].n_out;
    for (int i = 0; i + 1 < x->depth; i++)
        if (x->fc[i].n_out > x->d_hidden)
            x->d_hidden = x->fc[i].n_out;
    return 0;
}

int64_t vt_mlp_work_floats(const vt_mlp *x, int64_t n, int64_t t_in)
{
    int64_t bufs = x->depth > 2 ? 2 : x->depth > 1 ? 1 : 0;
    return vt_szmul(vt_szmul3(bufs, n, t_in), x->d_hidden);
}

int64_t vt_mlp_max_tokens(const vt_mlp *x, int64_t t_in)
{
    return t_in;
}

void vt_mlp_forward(const vt_mlp *x, const vt_exec *e, const float *in, int64_t n, int64_t t_in,
                    float *out, float *work)
{
    int64_t M = n * t_in;
    if (x->depth == 0) {
        memcpy(out, in, (size_t)(M * x->d_in) * sizeof(float));
        return;
    }
    float *buf[2] = {work, work + M * x->d_hidden};
    const float *src = in;
    for (int i = 0; i < x->depth; i++) {
        float *dst = i == x->depth - 1 ? out : buf[i % 2];
        vt_op_linear(e, M, src, 0, &x->fc[i], dst, 0);
        if (i < x->depth - 1)
            vt_op_act(e, x->act, M * x->fc[i].n_out, dst);
        src = dst;
    }
}

int64_t vt_mlp_linears(vt_mlp *x, vt_linear **out)
{
    for (int i = 0; out && i < x->depth; i++)
        out[i] = &x->fc[i];
    return x->depth;
}

void vt_mlp_free(vt_mlp *x)
{
    if (x)
        memset(x, 0, sizeof *x);
}
