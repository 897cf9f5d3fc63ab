/*
 * codetr.c - MoVA's Co-DETR expert (codetr.h).
 *
 * Line numbers are TempleX98/MoVA@9c33cb4 mova/model/vision_experts/codetr/
 * vit.py. The module is built by _build_codetr (:739-789) with hard-coded
 * ViT-L sizes; build_codetr_vit_l's own arguments (1280 wide, 32 layers,
 * :791-797) are ignored there.
 *
 * Why it works this way:
 * - The nearest resize to img_size (:715) is never materialised: the patch
 *   im2col reads each pixel through torch's nearest index (aten
 *   nearest_neighbor_compute_source_index: src = min(floor(dst * scale),
 *   in - 1) with scale = (float)in / out in float32), so no 1280^2 image.
 * - Window blocks partition the *normed* tokens and pad with zeros after
 *   norm1 (:448-452, window_partition :195-198). A padded token is therefore
 *   a real key of its window: q = q_bias, k = 0 (so its logit is 0 after
 *   RoPE), v = v_bias. The Linears run over the padded windows to keep that.
 *   The projection is row-wise, so it runs after the unpartition on real
 *   tokens only (the original projects the padded windows, :385, and drops
 *   the padding, :222).
 * - RoPE tables are recomputed as VisionRotaryEmbeddingFast does in float32
 *   (:93, :102-110): f_k = 1 / theta^((2k) / half) for half = head_dim / 2,
 *   t = (i / ft) * pt, angles t * f_k repeated pairwise, rows by the first
 *   half, columns by the second; window blocks use ft = window (:563-567),
 *   global blocks ft = img_size / patch (:561, :568-572; use_lsj=True keeps
 *   rope_glb, :574, :774): arange(80) / 80 * 16 for MoVA.
 * - The MLP runs in blocks of rows so its [rows, 3 d_ff] scratch stays small.
 * - The neck's 3x3 conv is an im2col plus one Linear over (cin, ky, kx), the
 *   conv weight's own layout, so it threads and packs like the rest.
 */
#include "codetr.h"
#include "vit.h" /* vt_pos_bicubic: get_abs_pos's resize */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHERE     "codetr"
#define MLP_ROWS  1024 /* rows per MLP block */
#define ROW_CHUNK 64   /* rows per pool task in the element-wise passes */
#define MAX_WIN_IDX 4096

#define NM(b, fmt, i) (snprintf(b, sizeof b, fmt, (long long)(i)), b)

/* window_block_indexes (:493, default :749): an array of layer indexes. */
static int read_windows(const cJSON *cfg, unsigned char *flag, vtok_status *st)
{
    const cJSON *it = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "window_block_indexes") : NULL;
    memset(flag, 0, MAX_WIN_IDX);
    if (!it) { /* list(range(0, 5)) + list(range(6, 11)) + ... + list(range(18, 23)) */
        for (int i = 0; i < 23; i++)
            flag[i] = i % 6 != 5;
        return 0;
    }
    if (!cJSON_IsArray(it))
        return vt_fail(st, VTOK_EFORMAT, "%s: 'window_block_indexes' must be an array of layer "
                       "indexes", WHERE);
    for (const cJSON *x = it->child; x; x = x->next) {
        const double v = x->valuedouble;
        if (!cJSON_IsNumber(x) || v != floor(v) || v < 0 || v >= MAX_WIN_IDX)
            return vt_fail(st, VTOK_EFORMAT, "%s: 'window_block_indexes' must hold integers in "
                           "[0, %d)", WHERE, MAX_WIN_IDX);
        flag[(int)v] = 1;
    }
    return 0;
}

/* VisionRotaryEmbeddingFast(dim=dh/2, pt_seq_len=pt, ft_seq_len=ft) (:77-113): [ft^2, dh]. */
static int rope_table(vt_loader *ld, int64_t ft, int64_t pt, int64_t dh, double theta,
                      float **cos_out, float **sin_out)
{
    const int64_t half = dh / 2, nf = half / 2;
    float *c = vt_loader_alloc(ld, ft * ft * dh), *s = vt_loader_alloc(ld, ft * ft * dh);
    float *f = vt_loader_alloc(ld, nf), *t = vt_loader_alloc(ld, ft);
    if (!c || !s || !f || !t)
        return ld->err;
    for (int64_t k = 0; k < nf; k++) /* 1. / (theta ** (arange(0, dim, 2).float() / dim)) */
        f[k] = 1.0f / (float)pow(theta, (double)((float)(2 * k) / (float)half));
    for (int64_t i = 0; i < ft; i++) /* arange(ft) / ft * pt, in float32 */
        t[i] = ((float)i / (float)ft) * (float)pt;
    for (int64_t r = 0; r < ft; r++)
        for (int64_t col = 0; col < ft; col++) {
            float *cr = c + (r * ft + col) * dh, *sr = s + (r * ft + col) * dh;
            for (int64_t k = 0; k < nf; k++) {
                const float ar = t[r] * f[k], ac = t[col] * f[k];
                cr[2 * k] = cr[2 * k + 1] = (float)cos((double)ar);
                sr[2 * k] = sr[2 * k + 1] = (float)sin((double)ar);
                cr[half + 2 * k] = cr[half + 2 * k + 1] = (float)cos((double)ac);
                sr[half + 2 * k] = sr[half + 2 * k + 1] = (float)sin((double)ac);
            }
        }
    *cos_out = c;
    *sin_out = s;
    return 0;
}

/* A persistent RoPE buffer of the checkpoint, when there, must have the shape
 * the options give (load_state_dict refuses a mismatch even with strict=False). */
static void check_rope(vt_loader *ld, const char *name, int64_t rows, int64_t dh)
{
    const vt_st_tensor *t = vt_find(ld, name);
    if (t && !ld->err && (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != dh))
        vt_loader_fail(ld, VTOK_ESHAPE, "%s%s%s is [%lld, %lld], not [%lld, %lld]: check "
                       "num_heads, window_size and img_size", ld->src.prefix ? ld->src.prefix : "",
                       ld->base ? ld->base : "", name, (long long)t->shape[0],
                       (long long)(t->n_dims > 1 ? t->shape[1] : 0), (long long)rows,
                       (long long)dh);
}

static void load_layer(vt_codetr *m, vt_loader *ld, int64_t i, float eps)
{
    vt_codetr_layer *L = &m->layers[i];
    const int64_t d = m->d;
    char b[128], b2[128];
    vt_get_norm(ld, &L->norm1, NM(b, "blocks.%lld.norm1", i), d, eps);
    vt_get_linear(ld, &L->q, NM(b, "blocks.%lld.attn.q_proj", i), d, d, 0); /* :336-338 */
    vt_get_linear(ld, &L->k, NM(b, "blocks.%lld.attn.k_proj", i), d, d, 0);
    vt_get_linear(ld, &L->v, NM(b, "blocks.%lld.attn.v_proj", i), d, d, 0);
    L->q.b = vt_get(ld, NM(b, "blocks.%lld.attn.q_bias", i), 1, d, 0, 0, 0); /* :340-342 */
    L->v.b = vt_get(ld, NM(b, "blocks.%lld.attn.v_bias", i), 1, d, 0, 0, 0);
    vt_get_linear(ld, &L->proj, NM(b, "blocks.%lld.attn.proj", i), d, d, 1);
    vt_get_norm(ld, &L->norm2, NM(b, "blocks.%lld.norm2", i), d, eps);
    /* SwiGLU(dim, int(dim * 4 * 2 / 3), subln=True, norm_layer eps 1e-6) (:435-440, :298-303) */
    vt_get_linear(ld, &L->w1, NM(b, "blocks.%lld.mlp.w1", i), -1, d, 1);
    if (!m->d_ff)
        m->d_ff = L->w1.n_out;
    if (L->w1.w && L->w1.n_out != m->d_ff && !ld->err)
        vt_loader_fail(ld, VTOK_ESHAPE, "blocks.%lld.mlp.w1 has %lld rows, block 0 %lld",
                       (long long)i, (long long)L->w1.n_out, (long long)m->d_ff);
    vt_get_linear(ld, &L->w2, NM(b, "blocks.%lld.mlp.w2", i), m->d_ff ? m->d_ff : -1, d, 1);
    if (!m->d_ff)
        m->d_ff = L->w2.n_out;
    vt_get_norm(ld, &L->ffn_ln, NM(b, "blocks.%lld.mlp.ffn_ln", i), m->d_ff, eps);
    vt_get_linear(ld, &L->w3, NM(b, "blocks.%lld.mlp.w3", i), d, m->d_ff, 1);
    if (L->window && m->window)
        check_rope(ld, NM(b2, "blocks.%lld.attn.rope.freqs_cos", i), m->window * m->window,
                   d / m->heads);
    else if (!L->window)
        check_rope(ld, NM(b2, "blocks.%lld.attn.rope.freqs_cos", i), m->grid * m->grid,
                   d / m->heads);
}

int vt_codetr_load(vt_codetr *m, vt_loader *ld, const char *base, const cJSON *cfg)
{
    static const char *const keys[] = {"num_heads", "window_size", "window_block_indexes",
                                       "img_size", "in_size", "out_size", "pt_hw_seq_len",
                                       "rope_theta", "eps", "out_norm_eps", "neck_eps", NULL};
    memset(m, 0, sizeof *m);
    vtok_status *st = ld->st;
    unsigned char *win = calloc(MAX_WIN_IDX, 1);
    int64_t pt;
    double theta, eps, eps_out, eps_neck;
    int rc;
    if (!win)
        return vt_loader_fail(ld, VTOK_ENOMEM, "out of memory");
    /* defaults: _build_codetr (:752-779) and ViT02 (:473-500) */
    if ((rc = vt_opt_check_keys(cfg, keys, WHERE, st)) ||
        (rc = vt_opt_int(cfg, "num_heads", 16, &m->heads, WHERE, st)) ||
        (rc = vt_opt_int(cfg, "window_size", 16, &m->window, WHERE, st)) ||
        (rc = read_windows(cfg, win, st)) ||
        (rc = vt_opt_int(cfg, "img_size", 1280, &m->img_size, WHERE, st)) ||
        (rc = vt_opt_int(cfg, "in_size", 1024, &m->in_size, WHERE, st)) ||
        (rc = vt_opt_int(cfg, "out_size", 37, &m->out_size, WHERE, st)) ||
        (rc = vt_opt_int(cfg, "pt_hw_seq_len", 16, &pt, WHERE, st)) ||
        (rc = vt_opt_float(cfg, "rope_theta", 10000.0, &theta, WHERE, st)) ||
        (rc = vt_opt_float(cfg, "eps", 1e-6, &eps, WHERE, st)) ||           /* :763 */
        (rc = vt_opt_float(cfg, "out_norm_eps", 1e-5, &eps_out, WHERE, st)) || /* :603 */
        (rc = vt_opt_float(cfg, "neck_eps", 1e-6, &eps_neck, WHERE, st))) { /* :33 */
        free(win);
        return rc;
    }
    if (m->heads < 1 || m->window < 0 || m->window > 1024 || m->img_size < 1 ||
        m->img_size > 16384 || m->in_size < 1 || m->in_size > 16384 || m->out_size < 0 ||
        m->out_size > 4096 || pt < 1 || pt > 1 << 20 || !(theta > 0) || !(eps >= 0) ||
        !(eps_out >= 0) || !(eps_neck >= 0)) {
        free(win);
        return vt_fail(st, VTOK_EFORMAT, "%s: num_heads, window_size, img_size, in_size, "
                       "out_size, pt_hw_seq_len, rope_theta or an eps out of range", WHERE);
    }
    const char *saved = vt_loader_base(ld, base);

    /* patch embedding: Conv2d(3, d, p, stride p) with bias (:173-175) */
    int64_t ps[4] = {-1, 3, -1, -1};
    const float *pw = vt_get_shape(ld, "patch_embed.proj.weight", 4, ps);
    if (pw && ps[2] != ps[3] && !ld->err)
        vt_loader_fail(ld, VTOK_ESHAPE, "patch_embed.proj.weight must be square");
    if (pw) {
        m->d = ps[0];
        m->patch = ps[2];
    }
    for (char b[64]; m->n_layers < MAX_WIN_IDX && vt_find(ld, NM(b, "blocks.%lld.norm1.weight",
                                                                 m->n_layers));)
        m->n_layers++; /* depth: as many blocks as the weights hold */
    if (!pw || !m->n_layers || ld->err) {
        free(win);
        vt_loader_base(ld, saved);
        if (ld->err)
            return ld->err;
        if (!pw) /* without the width nothing else can be read; the name is on the list */
            return 0;
        return vt_loader_fail(ld, VTOK_EMISSING, "no transformer blocks (blocks.0.norm1.weight)");
    }
    const int64_t d = m->d, dh = d / m->heads;
    m->grid = m->img_size / m->patch; /* hw_seq_len (:561), the conv's output grid */
    if (d % m->heads || dh % 4 || m->grid < 1) {
        free(win);
        vt_loader_base(ld, saved);
        return vt_loader_fail(ld, VTOK_ESHAPE, "width %lld with %lld heads needs a head "
                              "width that is a multiple of 4 (2-D RoPE pairs), and img_size >= "
                              "patch %lld", (long long)d, (long long)m->heads,
                              (long long)m->patch);
    }
    m->patch_embed = (vt_linear){.w = pw, .b = vt_get(ld, "patch_embed.proj.bias", 1, d, 0, 0, 0),
                                 .n_out = d, .n_in = 3 * m->patch * m->patch};

    /* pos_embed [1, 1 + P^2, d] (pretrain_use_cls_token=True, :776, :551-555); get_abs_pos
     * drops the CLS row and resizes bicubic only if P differs from the grid (:228-256) */
    int64_t qs[3] = {1, -1, d};
    const float *pos = vt_get_shape(ld, "pos_embed", 3, qs);
    if (pos) {
        const int64_t P = vt_square_side(qs[1] - 1);
        if (qs[1] < 2 || P * P != qs[1] - 1) {
            if (!ld->err)
                vt_loader_fail(ld, VTOK_ESHAPE, "pos_embed must be [1, 1 + P^2, %lld]",
                               (long long)d);
        } else {
            m->pos_grid = P;
            m->pos = pos + d;
            const int64_t G = m->grid;
            float *r = P != G ? vt_loader_alloc(ld, G * G * d) : NULL;
            if (r) { /* F.interpolate(size=(h, w), bicubic): scale = (float)P / G */
                vt_pos_bicubic(pos + d, P, P, d, G, G, (float)P / (float)G, (float)P / (float)G, r);
                m->pos = r;
            }
        }
    }

    if (!(m->layers = calloc((size_t)m->n_layers, sizeof *m->layers))) {
        free(win);
        vt_loader_base(ld, saved);
        return vt_loader_fail(ld, VTOK_ENOMEM, "out of memory");
    }
    for (int64_t i = 0; i < m->n_layers; i++) /* window_size if i in window_block_indexes (:588) */
        m->layers[i].window = m->window > 0 && win[i];
    free(win);
    for (int64_t i = 0; i < m->n_layers; i++)
        load_layer(m, ld, i, (float)eps);

    /* out_norm = nn.LayerNorm(embed_dim), eps 1e-5 (:603); neck (:608-625): Conv 1x1 no
     * bias, LayerNorm2d (eps 1e-6, :33), GELU, Conv 3x3 pad 1 no bias, LayerNorm2d */
    vt_get_norm(ld, &m->out_norm, "out_norm", d, (float)eps_out);
    int64_t ns[4] = {-1, d, 1, 1};
    const float *n0 = vt_get_shape(ld, "neck.0.weight", 4, ns);
    if (n0) {
        const int64_t C = ns[0];
        m->out_chans = C;
        m->neck0 = (vt_linear){.w = n0, .n_out = C, .n_in = d};
        vt_get_norm(ld, &m->neck1, "neck.1", C, (float)eps_neck);
        const float *n3 = vt_get(ld, "neck.3.weight", 4, C, C, 3, 3);
        if (n3)
            m->neck3 = (vt_linear){.w = n3, .n_out = C, .n_in = 9 * C};
        vt_get_norm(ld, &m->neck4, "neck.4", C, (float)eps_neck);
    }
    if (m->window)
        check_rope(ld, "rope_win.freqs_cos", m->window * m->window, dh);
    check_rope(ld, "rope_glb.freqs_cos", m->grid * m->grid, dh);
    if (!ld->err && m->window)
        rope_table(ld, m->window, pt, dh, theta, &m->rope_win_cos, &m->rope_win_sin);
    if (!ld->err)
        rope_table(ld, m->grid, pt, dh, theta, &m->rope_glb_cos, &m->rope_glb_sin);
    vt_loader_base(ld, saved);
    return ld->err;
}

void vt_codetr_free(vt_codetr *m)
{
    if (!m)
        return;
    free(m->layers);
    memset(m, 0, sizeof *m);
}

int64_t vt_codetr_linears(vt_codetr *m, vt_linear **out)
{
    int64_t n = 0;
#define ADD(l) do { if ((l).n_out > 0) { if (out) out[n] = &(l); n++; } } while (0)
    for (int64_t i = 0; m->layers && i < m->n_layers; i++) {
        vt_codetr_layer *L = &m->layers[i];
        ADD(L->q);
        ADD(L->k);
        ADD(L->v);
        ADD(L->proj);
        ADD(L->w1);
        ADD(L->w2);
        ADD(L->w3);
    }
    ADD(m->neck0);
    ADD(m->neck3);
#undef ADD
    return n;
}

int64_t vt_codetr_in_size(const vt_codetr *m)
{
    return m->in_size;
}

int64_t vt_codetr_out_tokens(const vt_codetr *m)
{
    return m->out_size ? m->out_size * m->out_size : m->grid * m->grid;
}

int64_t vt_codetr_out_channels(const vt_codetr *m)
{
    return m->out_chans;
}

/* Tokens of the padded window layout (Hp * Wp, :195-200), or grid^2. */
static int64_t padded_tokens(const vt_codetr *m)
{
    int64_t any = 0;
    for (int64_t i = 0; m->layers && i < m->n_layers; i++)
        any |= m->layers[i].window;
    if (!any)
        return m->grid * m->grid;
    const int64_t nw = (m->grid + m->window - 1) / m->window;
    return vt_szmul3(nw, nw, m->window * m->window);
}

int64_t vt_codetr_max_tokens(const vt_codetr *m)
{
    return padded_tokens(m);
}

/* ---- forward ---- */

typedef struct {
    float *x, *h, *q, *k, *v, *att, *big;
} ct_buffers;

static int64_t layout(const vt_codetr *m, float *base, ct_buffers *b)
{
    const int64_t N = m->grid * m->grid, R = padded_tokens(m), d = m->d, C = m->out_chans;
    const int64_t mlp_rows = N < MLP_ROWS ? N : MLP_ROWS;
    int64_t big = vt_szmul(N, 3 * m->patch * m->patch);
    const int64_t mlp = vt_szmul(mlp_rows, 3 * m->d_ff), neck = vt_szmul(N, 11 * C);
    big = mlp > big ? mlp : big;
    big = neck > big ? neck : big;
    const int64_t sizes[7] = {vt_szmul(N, d), vt_szmul(R, d), vt_szmul(R, d), vt_szmul(R, d),
                              vt_szmul(R, d), vt_szmul(R, d), big};
    float **dst[7] = {&b->x, &b->h, &b->q, &b->k, &b->v, &b->att, &b->big};
    int64_t off = 0;
    for (int i = 0; i < 7; i++) {
        if (base)
            *dst[i] = base + off;
        off = vt_szadd(off, vt_szr16(sizes[i]));
    }
    return off;
}

int64_t vt_codetr_work_floats(const vt_codetr *m)
{
    ct_buffers b;
    return layout(m, NULL, &b);
}

/* Patch im2col of the nearest-resized image, one task per patch row. */
typedef struct {
    const vt_codetr *m;
    const float     *img;
    float           *col;
    float            scale;
} patch_job;

static int64_t nearest_src(int64_t dst, float scale, int64_t in)
{
    /* aten nearest_neighbor_compute_source_index: min(floorf(dst * scale), in - 1) */
    const int64_t s = (int64_t)floorf((float)dst * scale);
    return s < in - 1 ? s : in - 1;
}

static void patch_task(void *arg, int64_t py, int tid)
{
    const patch_job *j = arg;
    const vt_codetr *m = j->m;
    const int64_t p = m->patch, G = m->grid, S = m->in_size, kp = 3 * p * p;
    (void)tid;
    for (int64_t px = 0; px < G; px++) {
        float *row = j->col + (py * G + px) * kp; /* columns (c, ky, kx) as the conv weight */
        for (int64_t c = 0; c < 3; c++)
            for (int64_t ky = 0; ky < p; ky++) {
                const float *src = j->img + (c * S + nearest_src(py * p + ky, j->scale, S)) * S;
                float *o = row + (c * p + ky) * p;
                for (int64_t kx = 0; kx < p; kx++)
                    o[kx] = src[nearest_src(px * p + kx, j->scale, S)];
            }
    }
}

/* window_partition / window_unpartition (:183-225) between token order [G^2, d]
 * and the padded window layout [n_win * ws^2, d]; one task per window. */
typedef struct {
    const vt_codetr *m;
    const float     *src;
    float           *dst;
    int              back; /* 0: tokens -> windows (zero padding), 1: windows -> tokens */
} win_job;

static void win_task(void *arg, int64_t w, int tid)
{
    const win_job *j = arg;
    const int64_t G = j->m->grid, ws = j->m->window, d = j->m->d, nw = (G + ws - 1) / ws;
    const int64_t wy = w / nw, wx = w % nw;
    (void)tid;
    for (int64_t iy = 0; iy < ws; iy++)
        for (int64_t ix = 0; ix < ws; ix++) {
            const int64_t gy = wy * ws + iy, gx = wx * ws + ix, r = (w * ws + iy) * ws + ix;
            const int in = gy < G && gx < G;
            if (j->back) {
                if (in)
                    memcpy(j->dst + (gy * G + gx) * d, j->src + r * d, (size_t)d * sizeof(float));
            } else if (in) {
                memcpy(j->dst + r * d, j->src + (gy * G + gx) * d, (size_t)d * sizeof(float));
            } else {
                memset(j->dst + r * d, 0, (size_t)d * sizeof(float)); /* F.pad after norm1 */
            }
        }
}

/* RoPE on q and k (:364-367): row r uses table row r % period;
 * t * cos + rotate_half(t) * sin with rotate_half(t)[2i] = -t[2i+1],
 * [2i+1] = t[2i] (:71-75). */
typedef struct {
    const vt_codetr *m;
    float           *q, *k;
    const float     *cos, *sin;
    int64_t          rows, period;
} rope_job;

static void rope_task(void *arg, int64_t ch, int tid)
{
    const rope_job *j = arg;
    const int64_t d = j->m->d, dh = d / j->m->heads;
    const int64_t r0 = ch * ROW_CHUNK, r1 = r0 + ROW_CHUNK < j->rows ? r0 + ROW_CHUNK : j->rows;
    (void)tid;
    for (int64_t r = r0; r < r1; r++) {
        const float *c = j->cos + (r % j->period) * dh, *s = j->sin + (r % j->period) * dh;
        for (int part = 0; part < 2; part++) {
            float *row = (part ? j->k : j->q) + r * d;
            for (int64_t h = 0; h < d; h += dh)
                for (int64_t i = 0; i < dh; i += 2) {
                    const float x0 = row[h + i], x1 = row[h + i + 1];
                    row[h + i] = x0 * c[i] + -x1 * s[i];
                    row[h + i + 1] = x1 * c[i + 1] + x0 * s[i + 1];
                }
        }
    }
}

/* Block.forward (:446-464). */
static void layer_forward(const vt_codetr *m, const vt_codetr_layer *L, const vt_exec *e,
                          const ct_buffers *b)
{
    const int64_t G = m->grid, N = G * G, d = m->d, dh = d / m->heads;
    int64_t rows = N, T = N, batch = 1;
    const float *cs = m->rope_glb_cos, *sn = m->rope_glb_sin;
    if (L->window) {
        const int64_t ws = m->window, nw = (G + ws - 1) / ws;
        vt_op_layernorm(e, N, d, b->x, &L->norm1, b->att);
        win_job wj = {.m = m, .src = b->att, .dst = b->h, .back = 0};
        vt_pool_run(e->pool, win_task, &wj, nw * nw);
        T = ws * ws;
        batch = nw * nw;
        rows = batch * T;
        cs = m->rope_win_cos;
        sn = m->rope_win_sin;
        vt_op_linear(e, rows, b->h, 0, &L->q, b->q, 0);
    } else {
        const vt_linear_opts ln1 = {.ln_src = b->x, .ln = &L->norm1};
        vt_op_linear_ex(e, N, b->h, 0, &L->q, b->q, 0, &ln1);
    }
    vt_op_linear(e, rows, b->h, 0, &L->k, b->k, 0);
    vt_op_linear(e, rows, b->h, 0, &L->v, b->v, 0);
    rope_job rj = {.m = m, .q = b->q, .k = b->k, .cos = cs, .sin = sn, .rows = rows, .period = T};
    vt_pool_run(e->pool, rope_task, &rj, (rows + ROW_CHUNK - 1) / ROW_CHUNK);
    /* xattn=False (:778): softmax(q * head_dim^-0.5 @ k^T) @ v (:379-383) */
    const vt_attn_args at = {.batch = batch, .heads = m->heads, .tq = T, .tk = T, .dh = dh,
                             .q = b->q, .k = b->k, .v = b->v, .ldq = d, .ldk = d, .ldv = d,
                             .out = b->att, .ldo = d, .scale = 1.0f / sqrtf((float)dh),
                             .lowp = m->attn_lowp};
    vt_op_attention_ex(e, &at);
    float *a = b->att;
    if (L->window) {
        const int64_t nw = (G + m->window - 1) / m->window;
        win_job wj = {.m = m, .src = b->att, .dst = b->h, .back = 1};
        vt_pool_run(e->pool, win_task, &wj, nw * nw);
        a = b->h;
    }
    const vt_linear_opts res = {.accumulate = 1}; /* x = shortcut + proj(...) (:461) */
    vt_op_linear_ex(e, N, a, 0, &L->proj, b->x, 0, &res);

    /* x = x + mlp(norm2(x)) (:462), SwiGLU.forward (:307-314), in blocks of rows */
    const int64_t F = m->d_ff, mlp_rows = N < MLP_ROWS ? N : MLP_ROWS;
    float *ff = b->big, *glu = b->big + mlp_rows * 2 * F;
    for (int64_t r0 = 0; r0 < N; r0 += MLP_ROWS) {
        const int64_t M = N - r0 < MLP_ROWS ? N - r0 : MLP_ROWS;
        float *x = b->x + r0 * d;
        const vt_linear_opts ln2 = {.ln_src = x, .ln = &L->norm2};
        vt_op_linear_ex(e, M, b->h, 0, &L->w1, ff, 2 * F, &ln2);
        vt_op_linear(e, M, b->h, 0, &L->w2, ff + F, 2 * F);
        vt_op_swiglu(e, M, F, ff, glu); /* act(w1 x) * w2 x, act = SiLU */
        vt_op_layernorm(e, M, F, glu, &L->ffn_ln, glu);
        vt_op_linear_ex(e, M, glu, 0, &L->w3, x, 0, &res);
    }
}

void vt_codetr_forward(const vt_codetr *m, const vt_exec *e, const float *in, float *out,
                       float *work)
{
    const int64_t G = m->grid, N = G * G, d = m->d, C = m->out_chans;
    ct_buffers b;
    layout(m, work, &b);

    /* F.interpolate(x, (img_size, img_size), 'nearest') (:715) folded into the patch
     * im2col; scale = (float)in / out as aten compute_scales_value */
    patch_job pj = {.m = m, .img = in, .col = b.big,
                    .scale = (float)m->in_size / (float)m->img_size};
    vt_pool_run(e->pool, patch_task, &pj, G);
    vt_op_linear(e, N, b.big, 0, &m->patch_embed, b.x, 0);
    for (int64_t i = 0; i < N * d; i++) /* + get_abs_pos(...) (:719-722) */
        b.x[i] += m->pos[i];

    for (int64_t i = 0; i < m->n_layers; i++)
        layer_forward(m, &m->layers[i], e, &b);

    /* out_norm, then the neck on the channels-first map (:727-728) */
    float *n1 = b.big, *n2 = b.big + N * C, *col = b.big + 2 * N * C;
    const vt_linear_opts on = {.ln_src = b.x, .ln = &m->out_norm};
    vt_op_linear_ex(e, N, b.h, 0, &m->neck0, n1, 0, &on);
    vt_op_layernorm(e, N, C, n1, &m->neck1, n1); /* LayerNorm2d: per pixel over C (:46-51) */
    vt_op_act(e, VT_ACT_GELU_ERF, N * C, n1);    /* nn.GELU(): exact erf */
    vt_op_im2col3x3(e, n1, G, G, C, 1, col); /* the neck's 3x3 conv, padding 1 (:617-623) */
    vt_op_linear(e, N, col, 0, &m->neck3, n2, 0);
    vt_op_layernorm(e, N, C, n2, &m->neck4, n2);
    /* F.interpolate(size=(37, 37), mode='bilinear'), align_corners False (:731) */
    if (m->out_size)
        vt_resize_bilinear(n2, G, G, C, m->out_size, m->out_size, out);
    else
        memcpy(out, n2, (size_t)(N * C) * sizeof(float));
}
