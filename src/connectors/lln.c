/*
 * lln.c - LLN-Layerscale merge (lln.h). The scales are normalised once at
 * load (softmax in double, then rounded to float: the merge weights are
 * constants of the model, so the forward pass does no exp()).
 */
#include "lln.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vt_lln_load(vt_lln *x, vt_loader *ld, const char *base, const cJSON *cfg, int64_t K,
                int64_t d_in, const char *where)
{
    vtok_status *st = ld->st;
    static const char *const keys[] = {"order", "shared", "scale_norm", "eps", "bias", "prefix",
                                       NULL};
    static const char *const orders[] = {"ln_linear", "linear_ln", NULL};
    static const char *const norms[] = {"none", "softmax", "sum", NULL};
    memset(x, 0, sizeof *x);
    int order, shared, scale_norm, bias, rc;
    double eps;
    if ((rc = vt_opt_check_keys(cfg, keys, where, st)) ||
        (rc = vt_opt_enum(cfg, "order", orders, 0, &order, where, st)) ||
        (rc = vt_opt_bool(cfg, "shared", 0, &shared, where, st)) ||
        (rc = vt_opt_enum(cfg, "scale_norm", norms, 0, &scale_norm, where, st)) ||
        (rc = vt_opt_float(cfg, "eps", 1e-5, &eps, where, st)) ||
        (rc = vt_opt_bool(cfg, "bias", 1, &bias, where, st)))
        return rc;
    if (K < 1 || K > 4096)
        return vt_fail(st, VTOK_EINVAL, "%s: needs 1..4096 layers, got %lld", where, (long long)K);
    if (eps <= 0)
        return vt_fail(st, VTOK_EFORMAT, "%s: 'eps' must be positive", where);
    x->K = K;
    x->linear_first = order == 1;
    x->shared = shared;
    x->ln = calloc((size_t)K, sizeof *x->ln);
    x->lin = calloc((size_t)K, sizeof *x->lin);
    x->scale = calloc((size_t)K, sizeof *x->scale);
    if (!x->ln || !x->lin || !x->scale)
        return vt_loader_fail(ld, VTOK_ENOMEM, "out of memory");

    const char *saved = vt_loader_base(ld, base);
    int64_t n_mod = shared ? 1 : K;
    for (int64_t k = 0; k < n_mod; k++) {
        char lin[64], nw[64], nb[64];
        if (shared) {
            snprintf(lin, sizeof lin, "linear");
            snprintf(nw, sizeof nw, "norm.weight");
            snprintf(nb, sizeof nb, "norm.bias");
        } else {
            snprintf(lin, sizeof lin, "layers.%lld.linear", (long long)k);
            snprintf(nw, sizeof nw, "layers.%lld.norm.weight", (long long)k);
            snprintf(nb, sizeof nb, "layers.%lld.norm.bias", (long long)k);
        }
        vt_get_linear(ld, &x->lin[k], lin, k ? x->lin[0].n_out : -1, d_in > 0 ? d_in : -1, bias);
        /* LN over the input (ln_linear) or over the Linear's output (linear_ln) */
        int64_t dl = x->linear_first ? x->lin[k].n_out : x->lin[k].n_in;
        int64_t s1[1] = {dl > 0 ? dl : -1}, s2[1] = {dl > 0 ? dl : -1};
        x->ln[k].w = vt_get_shape(ld, nw, 1, s1);
        x->ln[k].b = vt_get_shape(ld, nb, 1, s2);
        x->ln[k].eps = (float)eps;
    }
    int64_t ss[1] = {K};
    const float *alpha = vt_get_shape(ld, "scales", 1, ss);
    vt_loader_base(ld, saved);
    if (!alpha || !x->lin[0].w || ld->err) /* missing ones are listed by the loader */
        return ld->err;
    for (int64_t k = n_mod; k < K; k++) {
        x->lin[k] = x->lin[0];
        x->ln[k] = x->ln[0];
    }
    x->d_in = x->lin[0].n_in;
    x->d_out = x->lin[0].n_out;

    /* Effective scales. */
    double mx = -INFINITY, sum = 0;
    for (int64_t k = 0; k < K; k++)
        mx = alpha[k] > mx ? alpha[k] : mx;
    for (int64_t k = 0; k < K; k++)
        sum += scale_norm == 1 ? exp((double)alpha[k] - mx) : (double)alpha[k];
    if (scale_norm == 2 && sum == 0)
        return vt_loader_fail(ld, VTOK_EFORMAT, "%s: scale_norm 'sum' but the scales sum to 0",
                              where);
    for (int64_t k = 0; k < K; k++) {
        double a = alpha[k];
        x->scale[k] = (float)(scale_norm == 0 ? a : scale_norm == 1 ? exp(a - mx) / sum : a / sum);
    }
    return 0;
}

int64_t vt_lln_work_floats(const vt_lln *x, int64_t n, int64_t t_in)
{
    return vt_szmul3(n, t_in, vt_szadd(x->d_in, x->d_out));
}

int64_t vt_lln_max_tokens(const vt_lln *x, int64_t t_in)
{
    return t_in;
}

void vt_lln_forward(const vt_lln *x, const vt_exec *e, const float *in, int64_t n, int64_t t_in,
                    float *out, float *work)
{
    int64_t M = n * t_in, di = x->d_in, d = x->d_out;
    float *a = work, *y = work + M * di;
    memset(out, 0, (size_t)(M * d) * sizeof(float));
    for (int64_t k = 0; k < x->K; k++) {
        const float *xk = in + k * M * di;
        if (x->linear_first) {
            vt_op_linear(e, M, xk, 0, &x->lin[x->shared ? 0 : k], y, 0);
            vt_op_layernorm(e, M, d, y, &x->ln[k], y);
        } else {
            vt_op_layernorm(e, M, di, xk, &x->ln[k], a);
            vt_op_linear(e, M, a, 0, &x->lin[x->shared ? 0 : k], y, 0);
        }
        float s = x->scale[k];
        for (int64_t i = 0; i < M * d; i++)
            out[i] += s * y[i];
    }
}

int64_t vt_lln_linears(vt_lln *x, vt_linear **out)
{
    int64_t n = x->shared ? 1 : x->K; /* shared: lin[k] are copies of lin[0], run as lin[0] */
    for (int64_t k = 0; out && k < n; k++)
        out[k] = &x->lin[k];
    return n;
}

void vt_lln_free(vt_lln *x)
{
    if (!x)
        return;
    free(x->ln);
    free(x->lin);
    free(x->scale);
    memset(x, 0, sizeof *x);
}
