/*
 * vq.c - SEED encode layer + nearest-code search (see vq.h).
 *
 * The search is a plain loop rather than a GEMM on purpose: the GEMM kernels
 * sum in an order that depends on the ISA table and on where a codebook row
 * falls in a panel, which can flip a near-tie between tables and would break
 * the "equal rows tie exactly" guarantee. SEED's size (32 rows x 8192 codes x
 * 32 dims = 8.4 M multiply-adds per image) is small next to the ViT.
 */
#include "vq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *WHAT = "vq";

void vt_vq_free(vt_vq *q)
{
    if (!q)
        return;
    vt_free(q->code_sq);
    memset(q, 0, sizeof *q);
}

/* Dot product in one fixed order: four interleaved partial sums, then
 * ((s0 + s1) + (s2 + s3)) + tail. */
static float dot_fixed(const float *a, const float *b, int64_t n)
{
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        s0 += a[j] * b[j];
        s1 += a[j + 1] * b[j + 1];
        s2 += a[j + 2] * b[j + 2];
        s3 += a[j + 3] * b[j + 3];
    }
    float s = (s0 + s1) + (s2 + s3);
    for (; j < n; j++)
        s += a[j] * b[j];
    return s;
}

int vt_vq_load(vt_vq *q, vt_loader *ld, const cJSON *cfg)
{
    memset(q, 0, sizeof *q);
    vtok_status *st = ld->st;
    const char *enc, *cb;
    int rc;
    if ((rc = vt_opt_int(cfg, "hidden_size", 768, &q->d, WHAT, st)) ||
        (rc = vt_opt_int(cfg, "codebook_embed_dim", 32, &q->e_dim, WHAT, st)) ||
        (rc = vt_opt_int(cfg, "n_embed", 8192, &q->n_embed, WHAT, st)) ||
        (rc = vt_opt_str(cfg, "encode_layer", "encode_task_layer", &enc, WHAT, st)) ||
        (rc = vt_opt_str(cfg, "codebook", "quantize.embedding.weight", &cb, WHAT, st)))
        return rc;
    if (q->d <= 0 || q->e_dim <= 0 || q->n_embed <= 0)
        return vt_fail(st, VTOK_EINVAL, "%s config: bad sizes (hidden %lld, dim %lld, codes %lld)",
                       WHAT, (long long)q->d, (long long)q->e_dim, (long long)q->n_embed);
    char b[512];
    /* nn.Sequential(Linear, Tanh, Linear): modules 0 and 2 */
    snprintf(b, sizeof b, "%s.0", enc);
    vt_get_linear(ld, &q->enc1, b, q->d, q->d, 1);
    snprintf(b, sizeof b, "%s.2", enc);
    vt_get_linear(ld, &q->enc2, b, q->e_dim, q->d, 1);
    q->codebook = vt_get(ld, cb, 2, q->n_embed, q->e_dim, 0, 0);
    if (!q->codebook) /* missing (reported by the loader) or a hard error */
        return ld->err;
    q->code_sq = vt_alloc((size_t)q->n_embed * sizeof(float));
    if (!q->code_sq)
        return vt_loader_fail(ld, VTOK_ENOMEM, "%s: out of memory", WHAT);
    for (int64_t k = 0; k < q->n_embed; k++) {
        const float *r = q->codebook + k * q->e_dim;
        q->code_sq[k] = dot_fixed(r, r, q->e_dim);
    }
    return 0;
}

int64_t vt_vq_work_floats(const vt_vq *q, int64_t n, int64_t t)
{
    return vt_szmul3(n, t, vt_szadd(q->d, q->e_dim));
}

typedef struct {
    const vt_vq *q;
    const float *z;
    int64_t     *ids;
    int64_t      rows;
} argmin_job;

#define ROWS_PER_TASK 8

static void argmin_task(void *arg, int64_t i, int tid)
{
    (void)tid;
    const argmin_job *j = arg;
    const vt_vq *q = j->q;
    int64_t r1 = (i + 1) * ROWS_PER_TASK < j->rows ? (i + 1) * ROWS_PER_TASK : j->rows;
    for (int64_t r = i * ROWS_PER_TASK; r < r1; r++) {
        const float *z = j->z + r * q->e_dim;
        float zz = dot_fixed(z, z, q->e_dim), best = 0.0f;
        int64_t bi = -1;
        for (int64_t k = 0; k < q->n_embed; k++) {
            /* torch: sum(z^2) + sum(e^2) - 2 * (z . e), argmin */
            float dist = (zz + q->code_sq[k]) - 2.0f * dot_fixed(z, q->codebook + k * q->e_dim,
                                                                  q->e_dim);
            if (isnan(dist)) { /* torch.argmin: NaN is the minimum, first one wins */
                bi = k;
                break;
            }
            if (bi < 0 || dist < best) {
                best = dist;
                bi = k;
            }
        }
        j->ids[r] = bi;
    }
}

void vt_vq_argmin(const vt_vq *q, const vt_exec *e, const float *z, int64_t rows,
                  int64_t *ids)
{
    argmin_job j = {.q = q, .z = z, .ids = ids, .rows = rows};
    if (rows > 0)
        vt_pool_run(e->pool, argmin_task, &j, (rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK);
}

void vt_vq_forward(const vt_vq *q, const vt_exec *e, const float *x, int64_t n, int64_t t,
                   int64_t *ids, float *z_out, float *work)
{
    int64_t rows = n * t;
    float *h = work, *z = h + rows * q->d;
    vt_op_linear(e, rows, x, q->d, &q->enc1, h, q->d);
    vt_op_act(e, VT_ACT_TANH, rows * q->d, h);
    vt_op_linear(e, rows, h, q->d, &q->enc2, z, q->e_dim);
    vt_vq_argmin(q, e, z, rows, ids);
    if (z_out)
        memcpy(z_out, z, (size_t)(rows * q->e_dim) * sizeof(float));
}

int vt_vq_lookup(const float *codebook, int64_t n_embed, int64_t e_dim, const int64_t *ids,
                 int64_t count, float *out, vtok_status *st)
{
    for (int64_t i = 0; i < count; i++)
        if (ids[i] < 0 || ids[i] >= n_embed)
            return vt_fail(st, VTOK_EINVAL, "token id %lld at position %lld is outside [0, %lld)",
                           (long long)ids[i], (long long)i, (long long)n_embed);
    for (int64_t i = 0; i < count; i++)
        memcpy(out + i * e_dim, codebook + ids[i] * e_dim, (size_t)e_dim * sizeof(float));
    return 0;
}

int64_t vt_vq_linears(vt_vq *q, vt_linear **out, int64_t cap)
{
    if (cap > 0)
        out[0] = &q->enc1;
    if (cap > 1)
        out[1] = &q->enc2;
    return 2;
}
