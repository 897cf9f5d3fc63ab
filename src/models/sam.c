/*
 * sam.c - the SAM image encoder of MoVA's Vary and SAM-huge experts (sam.h).
 *
 * Line numbers cite TempleX98/MoVA@9c33cb4 mova/model/vision_experts/vary/sam.py.
 *
 * Convolutions run as GEMMs: the patch embedding on non-overlapping patches
 * gathered into rows (c, ky, kx), the 1x1 neck conv as a Linear on the
 * channel-last map, the 3x3 convs (neck.2, net_2) on im2col rows in the
 * weight's own (c, ky, kx) order, zero padded. They are Linears for the
 * bf16 / int8 packing too.
 *
 * Attention (Attention.forward, :282-298) needs an additive bias per
 * (query, key), which the fused kernel has not, so it is written here on the
 * table's GEMM and softmax, as tasks of (window, head) for windowed blocks
 * and (head, block of BQ queries) for global ones. The scores of a task
 * ([queries, keys]) live in a slot of the work memory; tasks run in waves of
 * N_SLOTS, so memory stays bounded (SAM-H's global blocks: 16 heads x 4096^2
 * scores never exist at once). A task:
 *   S = Q K^T (gemm) * scale                 (:289, the scale applied after
 *                                             the product: rounding only)
 *   Ph = Q Rh^T, Pw = Q Rw^T (gemm, unscaled q as :292 passes it), then
 *   S[i, ky * kw + kx] += Ph[i, qy - ky + kh - 1] + Pw[i, qx - kx + kw - 1]
 *                                             (get_rel_pos :376-380 with equal
 *                                             q and k sizes; :411-417)
 *   softmax rows, O = S V (gemm)
 * Windowed blocks gather their window's q, k, v rows from the grid-order qkv
 * output; a key in the zero padding (window_partition pads norm1's output,
 * :314-317) is qkv(0) = the qkv bias, so padded keys are bias rows and take
 * part in the softmax as in the original; padded queries are not computed
 * (window_unpartition drops them, :345-346).
 */
#include "sam.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EPS 1e-6f     /* norm_layer partial(LayerNorm, eps=1e-6) :505; LayerNorm2d :44 */
#define N_SLOTS 32    /* attention tasks per wave */
#define BQ 64         /* queries per task in global blocks */
#define MAX_DEPTH 256

#define NM(b, fmt, i) (snprintf(b, sizeof b, fmt, (long long)(i)), b)

/* The two layouts SAM encoders are released in: the original
 * (segment_anything's image_encoder.*, Vary's, MoVA's) and Hugging Face's
 * SamModel (vision_encoder.*, modeling_sam.py SamVisionEncoder); attn.* and
 * mlp.* are named alike. The one holding "<patch>.weight" is used. */
typedef struct sam_names {
    const char *patch, *block, *norm1, *norm2, *neck[4];
} sam_names;

static const sam_names NAMES[2] = {
    {"patch_embed.proj", "blocks", "norm1", "norm2", {"neck.0", "neck.1", "neck.2", "neck.3"}},
    {"patch_embed.projection", "layers", "layer_norm1", "layer_norm2",
     {"neck.conv1", "neck.layer_norm1", "neck.conv2", "neck.layer_norm2"}},
};

/* "<block>.<i>.<rest>" of layout N */
static const char *bname(char *b, size_t n, const sam_names *N, int64_t i, const char *rest)
{
    snprintf(b, n, "%s.%lld.%s", N->block, (long long)i, rest);
    return b;
}

/* The original builders' arguments (:457-485, _build_sam :496-513). */
typedef struct sam_preset {
    const char *name;
    int64_t     d, depth, heads, use_conv, global[4];
} sam_preset;

static const sam_preset PRESETS[] = {
    {"vit_b", 768, 12, 12, 1, {2, 5, 8, 11}},
    {"vit_l", 1024, 24, 16, 0, {5, 11, 17, 23}},
    {"vit_h", 1280, 32, 16, 0, {7, 15, 23, 31}},
};

static const char *where_of(const vt_loader *ld)
{
    return ld->what ? ld->what : "sam";
}

/* global_attn_indexes: a list of block indexes in [0, depth) into flags. */
static int read_globals(const cJSON *cfg, int64_t depth, char *is_global, int *given,
                        vt_loader *ld)
{
    const cJSON *it = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "global_attn_indexes") : NULL;
    *given = 0;
    if (!it || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsArray(it))
        return vt_fail(ld->st, VTOK_EFORMAT, "%s: 'global_attn_indexes' must be a list of "
                       "block indexes", where_of(ld));
    for (const cJSON *v = it->child; v; v = v->next) {
        const double x = v->valuedouble;
        if (!cJSON_IsNumber(v) || x != floor(x) || x < 0 || x >= (double)depth)
            return vt_fail(ld->st, VTOK_EFORMAT, "%s: 'global_attn_indexes' entries must be "
                           "block indexes in [0, %lld)", where_of(ld), (long long)depth);
        is_global[(int64_t)x] = 1;
    }
    *given = 1;
    return 0;
}

static int load_blocks(vt_sam *m, vt_loader *ld, const cJSON *cfg, const sam_preset *ps,
                       int64_t heads_opt, int64_t win_opt, const sam_names *N)
{
    const int64_t d = m->d, G = m->grid;
    char is_global[MAX_DEPTH] = {0}, b[160];
    int given, rc;
    if ((rc = read_globals(cfg, m->depth, is_global, &given, ld)))
        return rc;
    if (!given && ps)
        for (int k = 0; k < 4; k++)
            is_global[ps->global[k]] = 1;
    /* the tables' lengths tell global (2 G - 1) from windowed (2 w - 1) blocks */
    int64_t len[MAX_DEPTH], hd = 0;
    for (int64_t i = 0; i < m->depth; i++) {
        int64_t s[2] = {-1, -1};
        m->blocks[i].rel_h = vt_get_shape(ld, bname(b, sizeof b, N, i, "attn.rel_pos_h"), 2, s);
        len[i] = m->blocks[i].rel_h ? s[0] : -1;
        if (m->blocks[i].rel_h && !hd)
            hd = s[1];
        if (!given && !ps && len[i] >= 0)
            is_global[i] = len[i] == 2 * G - 1;
    }
    if (ld->err || !hd)
        return ld->err;
    int64_t win = win_opt;
    for (int64_t i = 0; i < m->depth && win < 0; i++)
        if (!is_global[i] && len[i] > 0 && len[i] % 2)
            win = (len[i] + 1) / 2;
    m->window = win < 0 ? 14 : win; /* window_size=14 :511 */
    m->heads = heads_opt > 0 ? heads_opt : d / hd;
    if (m->window < 1 || m->heads < 1 || d % m->heads || d / m->heads != hd)
        return vt_loader_fail(ld, VTOK_ESHAPE, "width %lld with %lld heads and window %lld "
                              "does not fit rel_pos tables of head_dim %lld",
                              (long long)d, (long long)m->heads, (long long)m->window,
                              (long long)hd);
    m->hd = hd;
    for (int64_t i = 0; i < m->depth; i++) {
        vt_sam_block *B = &m->blocks[i];
        /* window_size if i not in global_attn_indexes else 0 (:127); the
         * tables have 2 S - 1 rows, S = window or grid (:216, :279-280) */
        B->win = is_global[i] ? 0 : m->window;
        const int64_t S = B->win ? B->win : G;
        if (B->rel_h && len[i] != 2 * S - 1)
            return vt_loader_fail(ld, VTOK_ESHAPE, "%s.%lld.attn.rel_pos_h has %lld rows; "
                                  "a %s block needs 2 * %lld - 1 = %lld (set window_size / "
                                  "global_attn_indexes, or the weights are for another "
                                  "img_size)", N->block, (long long)i, (long long)len[i],
                                  B->win ? "windowed" : "global", (long long)S,
                                  (long long)(2 * S - 1));
        /* (rel_h missing: B's kind is unknown, take rel_w as it comes) */
        B->rel_w = vt_get(ld, bname(b, sizeof b, N, i, "attn.rel_pos_w"), 2,
                          B->rel_h ? 2 * S - 1 : -1, hd, 0, 0);
        vt_get_norm(ld, &B->norm1, bname(b, sizeof b, N, i, N->norm1), d, EPS);
        vt_get_norm(ld, &B->norm2, bname(b, sizeof b, N, i, N->norm2), d, EPS);
        vt_get_linear(ld, &B->qkv, bname(b, sizeof b, N, i, "attn.qkv"), 3 * d, d, 1);
        vt_get_linear(ld, &B->proj, bname(b, sizeof b, N, i, "attn.proj"), d, d, 1);
        vt_get_linear(ld, &B->lin1, bname(b, sizeof b, N, i, "mlp.lin1"),
                      m->d_ff ? m->d_ff : -1, d, 1);
        if (B->lin1.w && !m->d_ff)
            m->d_ff = B->lin1.n_out;
        vt_get_linear(ld, &B->lin2, bname(b, sizeof b, N, i, "mlp.lin2"), d,
                      m->d_ff ? m->d_ff : -1, 1);
    }
    return ld->err;
}

static int load_neck(vt_sam *m, vt_loader *ld, int use_conv, const sam_names *N)
{
    const float *w;
    char b[64];
    int64_t s0[4] = {-1, m->d, 1, 1};
    snprintf(b, sizeof b, "%s.weight", N->neck[0]);
    if ((w = vt_get_shape(ld, b, 4, s0))) /* Conv2d 1x1, bias=False :133-138 */
        m->neck0 = (vt_linear){.w = w, .n_out = s0[0], .n_in = m->d};
    const int64_t o = m->neck0.w ? s0[0] : -1;
    if (o < 0)
        return ld->err;
    m->out_ch = o;
    vt_get_norm(ld, &m->neck1, N->neck[1], o, EPS); /* LayerNorm2d :139 */
    snprintf(b, sizeof b, "%s.weight", N->neck[2]);
    if ((w = vt_get(ld, b, 4, o, o, 3, 3))) /* 3x3, padding 1, no bias :140-146 */
        m->neck2 = (vt_linear){.w = w, .n_out = o, .n_in = o * 9};
    vt_get_norm(ld, &m->neck3, N->neck[3], o, EPS);
    if (use_conv) { /* net_2 = Conv2d(256, 512, 3, stride 2, padding 1, bias=False) :150-152 */
        int64_t s2[4] = {-1, o, 3, 3};
        if ((w = vt_get_shape(ld, "net_2.weight", 4, s2))) {
            m->net2 = (vt_linear){.w = w, .n_out = s2[0], .n_in = o * 9};
            m->out2_ch = s2[0];
        }
    }
    return ld->err;
}

int vt_sam_load(vt_sam *m, vt_loader *ld, const char *base, const cJSON *cfg)
{
    static const char *const keys[] = {"preset", "num_heads", "window_size",
                                       "global_attn_indexes", "use_output_conv", NULL};
    static const char *const names[] = {"vit_b", "vit_l", "vit_h", NULL};
    memset(m, 0, sizeof *m);
    const char *where = where_of(ld);
    vtok_status *st = ld->st;
    int64_t heads, win;
    int pi = -1, use_conv = -1, rc;
    const cJSON *conv_opt = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "use_output_conv") : NULL;
    const int has_conv_opt = conv_opt && !cJSON_IsNull(conv_opt);
    if ((rc = vt_opt_check_keys(cfg, keys, where, st)) ||
        (rc = vt_opt_enum(cfg, "preset", names, -1, &pi, where, st)))
        return rc;
    const sam_preset *ps = pi >= 0 ? &PRESETS[pi] : NULL;
    if ((rc = vt_opt_int(cfg, "num_heads", ps ? ps->heads : 0, &heads, where, st)) ||
        (rc = vt_opt_int(cfg, "window_size", ps ? 14 : -1, &win, where, st)) ||
        (rc = vt_opt_bool(cfg, "use_output_conv", ps ? (int)ps->use_conv : 0, &use_conv, where,
                          st)))
        return rc;
    if ((cfg && cJSON_GetObjectItemCaseSensitive(cfg, "num_heads") && heads < 1) ||
        (cfg && cJSON_GetObjectItemCaseSensitive(cfg, "window_size") && win < 1))
        return vt_fail(st, VTOK_EFORMAT, "%s: num_heads and window_size must be positive", where);
    const char *saved = vt_loader_base(ld, base);

    /* PatchEmbed: Conv2d(in_chans, embed_dim, p, stride p) with bias (:445-447) */
    const sam_names *N = &NAMES[vt_find(ld, "patch_embed.projection.weight") ? 1 : 0];
    char b[160];
    int64_t sp[4] = {-1, -1, -1, -1}, sq[4] = {1, -1, -1, -1};
    snprintf(b, sizeof b, "%s.weight", N->patch);
    const float *pw = vt_get_shape(ld, b, 4, sp);
    m->pos = vt_get_shape(ld, "pos_embed", 4, sq); /* [1, G, G, C] (:112-113) */
    if (!pw || !m->pos) {
        vt_loader_base(ld, saved);
        return ld->err;
    }
    if (sp[2] != sp[3] || sq[1] != sq[2] || sq[3] != sp[0] || sp[2] < 1 || sq[1] < 1) {
        vt_loader_base(ld, saved);
        return vt_loader_fail(ld, VTOK_ESHAPE, "%s.weight [%lld, %lld, %lld, "
                              "%lld] and pos_embed [1, %lld, %lld, %lld] do not fit (square "
                              "patches, a square grid, one width)", N->patch, (long long)sp[0],
                              (long long)sp[1], (long long)sp[2], (long long)sp[3],
                              (long long)sq[1], (long long)sq[2], (long long)sq[3]);
    }
    m->d = sp[0];
    m->in_ch = sp[1];
    m->patch = sp[2];
    m->grid = sq[1];
    m->patch_embed = (vt_linear){.w = pw, .n_out = m->d, .n_in = m->in_ch * m->patch * m->patch,
                                 .b = vt_get(ld, (snprintf(b, sizeof b, "%s.bias", N->patch), b),
                                             1, m->d, 0, 0, 0)};
    char nw[32];
    snprintf(nw, sizeof nw, "%s.weight", N->norm1);
    while (m->depth < MAX_DEPTH && vt_find(ld, bname(b, sizeof b, N, m->depth, nw)))
        m->depth++;
    if (m->depth == MAX_DEPTH && vt_find(ld, bname(b, sizeof b, N, m->depth, nw))) {
        vt_loader_base(ld, saved);
        return vt_loader_fail(ld, VTOK_ESHAPE, "more than %d blocks", MAX_DEPTH);
    }
    if (!m->depth) { /* collected as missing: the caller names it */
        vt_get(ld, bname(b, sizeof b, N, 0, nw), 1, m->d, 0, 0, 0);
        vt_loader_base(ld, saved);
        return ld->err;
    }
    if (ps && (m->d != ps->d || m->depth != ps->depth)) {
        vt_loader_base(ld, saved);
        return vt_loader_fail(ld, VTOK_ESHAPE, "preset %s is width %lld, depth %lld; the "
                              "weights have width %lld, %lld blocks", ps->name,
                              (long long)ps->d, (long long)ps->depth, (long long)m->d,
                              (long long)m->depth);
    }
    if (!(m->blocks = calloc((size_t)m->depth, sizeof *m->blocks))) {
        vt_loader_base(ld, saved);
        return vt_loader_fail(ld, VTOK_ENOMEM, "out of memory");
    }
    if (!ps && !has_conv_opt) /* present in the weights => applied */
        use_conv = vt_find(ld, "net_2.weight") != NULL;
    if (!(rc = load_blocks(m, ld, cfg, ps, heads, win, N)))
        rc = load_neck(m, ld, use_conv, N);
    vt_loader_base(ld, saved);
    return rc;
}

void vt_sam_free(vt_sam *m)
{
    if (!m)
        return;
    free(m->blocks);
    memset(m, 0, sizeof *m);
}

int64_t vt_sam_linears(vt_sam *m, vt_linear **out)
{
    int64_t n = 0;
#define ADD(l) do { if ((l)->w || (l)->lpw) { if (out) out[n] = (l); n++; } } while (0)
    ADD(&m->patch_embed);
    for (int64_t i = 0; i < m->depth; i++) {
        ADD(&m->blocks[i].qkv);
        ADD(&m->blocks[i].proj);
        ADD(&m->blocks[i].lin1);
        ADD(&m->blocks[i].lin2);
    }
    ADD(&m->neck0);
    ADD(&m->neck2);
    ADD(&m->net2);
#undef ADD
    return n;
}

int64_t vt_sam_in_size(const vt_sam *m)
{
    return m->grid * m->patch;
}

static int64_t out_side(const vt_sam *m)
{
    return m->out2_ch ? (m->grid - 1) / 2 + 1 : m->grid; /* (G + 2 - 3) / 2 + 1 */
}

int64_t vt_sam_out_tokens(const vt_sam *m)
{
    return out_side(m) * out_side(m);
}

int64_t vt_sam_out_channels(const vt_sam *m)
{
    return m->out2_ch ? m->out2_ch : m->out_ch;
}

/* ---- work memory ---- */

typedef struct {
    float  *x, *h, *u, *slots;
    int64_t slot;
} sam_buffers;

/* Floats of one attention task's slot for a block of window win (0: global). */
static int64_t slot_floats(const vt_sam *m, int64_t win)
{
    const int64_t G = m->grid, T = win ? win * win : G * G, S = win ? win : G;
    const int64_t nq = win ? T : (BQ < T ? BQ : T);
    int64_t n = vt_szr16(vt_szmul(nq, T));               /* scores */
    n = vt_szadd(n, vt_szr16(vt_szmul(nq, 4 * S - 2))); /* Ph | Pw */
    if (win) /* the window's gathered Q, K, V and its output O */
        n = vt_szadd(n, vt_szmul(4, vt_szr16(vt_szmul(T, m->hd))));
    return n;
}

static int64_t layout(const vt_sam *m, float *base, sam_buffers *b)
{
    const int64_t G = m->grid, N = G * G, d = m->d, o = m->out_ch, s2 = out_side(m);
    int64_t h = vt_szmul(N, d), u = vt_szmul(N, 3 * d), slot = 0;
    const int64_t kp = vt_szmul(N, m->patch_embed.n_in), c3 = vt_szmul(N, 9 * o),
                  c2 = vt_szmul(s2 * s2, 9 * o), ff = vt_szmul(N, m->d_ff), nk = vt_szmul(N, 2 * o);
    h = kp > h ? kp : h;
    h = c3 > h ? c3 : h;
    h = c2 > h ? c2 : h;
    u = ff > u ? ff : u;
    u = nk > u ? nk : u;
    for (int64_t i = 0; i < m->depth; i++) {
        const int64_t s = slot_floats(m, m->blocks[i].win);
        slot = s > slot ? s : slot;
    }
    const int64_t sizes[4] = {vt_szmul(N, d), h, u, vt_szmul(N_SLOTS, slot)};
    float **dst[4] = {&b->x, &b->h, &b->u, &b->slots};
    int64_t off = 0;
    for (int i = 0; i < 4; i++) {
        if (base)
            *dst[i] = base + off;
        off = vt_szadd(off, vt_szr16(sizes[i]));
    }
    b->slot = slot;
    return off;
}

int64_t vt_sam_work_floats(const vt_sam *m)
{
    sam_buffers b;
    return layout(m, NULL, &b);
}

/* ---- convolutions as GEMMs ---- */

typedef struct {
    const float *in;
    float       *col;
    int64_t      H, W, C, Wo, p;
} col_args;

/* Patch rows of the image [C, H, W]: row (py, px) = in[c, py p + ky, px p + kx]
 * in (c, ky, kx) order, as the conv weight [d, C, p, p] is laid out. */
static void patch_row(void *arg, int64_t py, int tid)
{
    const col_args *a = arg;
    const int64_t p = a->p, kp = a->C * p * p;
    (void)tid;
    for (int64_t px = 0; px < a->Wo; px++) {
        float *row = a->col + (py * a->Wo + px) * kp;
        for (int64_t c = 0; c < a->C; c++)
            for (int64_t ky = 0; ky < p; ky++)
                memcpy(row + (c * p + ky) * p, a->in + (c * a->H + py * p + ky) * a->W + px * p,
                       (size_t)p * sizeof(float));
    }
}

static void conv3x3(const vt_exec *e, const vt_linear *l, const float *in, int64_t H, int64_t W,
                    int64_t stride, float *col, float *out)
{
    const int64_t Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1;
    vt_op_im2col3x3(e, in, H, W, l->n_in / 9, stride, col);
    vt_op_linear(e, Ho * Wo, col, 0, l, out, 0);
}

/* ---- attention ---- */

typedef struct {
    const vt_sam       *m;
    const vt_sam_block *B;
    const vt_exec      *e;
    const float        *qkv;   /* [N, 3 d] grid order */
    float              *out;   /* [N, d] grid order */
    float              *slots;
    int64_t             slot, t0, n_qb;
    float               scale;
} attn_args;

/* One task over an S x S tile of keys: queries Q [nq, hd] (row stride ldq)
 * at tile positions ((q_off + i) / qcols, (q_off + i) % qcols); keys and
 * values K, V [S * S, hd] (row stride ldk); O [nq, hd] (row stride ldo).
 * slot: the scores [nq, S * S] and Ph | Pw [nq, 2 (2 S - 1)]. */
static void attn_core(const attn_args *a, float *slot, int tid, int64_t S, int64_t nq,
                      int64_t q_off, int64_t qcols, const float *Q, int64_t ldq, const float *K,
                      const float *V, int64_t ldk, float *O, int64_t ldo)
{
    const vt_kernels *k = a->e->k;
    float *scr = a->e->scratch + (int64_t)tid * a->e->scratch_stride;
    const int64_t T = S * S, hd = a->m->hd, L = 2 * S - 1;
    float *Sc = slot, *P = Sc + vt_szr16(nq * T);
    /* (q * scale) @ k^T (:289); the rel-pos terms take the unscaled q (:292, :411-413) */
    k->gemm_f32(nq, T, hd, Q, ldq, K, ldk, 1, NULL, Sc, T, 0, scr);
    k->gemm_f32(nq, L, hd, Q, ldq, a->B->rel_h, hd, 1, NULL, P, 2 * L, 0, scr);
    k->gemm_f32(nq, L, hd, Q, ldq, a->B->rel_w, hd, 1, NULL, P + L, 2 * L, 0, scr);
    for (int64_t i = 0; i < nq; i++) {
        const int64_t qy = (q_off + i) / qcols, qx = (q_off + i) % qcols;
        /* Rh[qy - ky + S - 1]: get_rel_pos with q_size == k_size (:376-380) */
        const float *ph = P + i * 2 * L + qy + S - 1, *pw = P + i * 2 * L + L + qx + S - 1;
        float *row = Sc + i * T;
        for (int64_t ky = 0; ky < S; ky++) {
            const float rh = ph[-ky];
            float *r = row + ky * S;
            for (int64_t kx = 0; kx < S; kx++)
                r[kx] = r[kx] * a->scale + rh + pw[-kx]; /* attn + rel_h + rel_w (:415-417) */
        }
        k->softmax_f32(T, row); /* :294 */
    }
    k->gemm_f32(nq, hd, T, Sc, T, V, ldk, 0, NULL, O, ldo, 0, scr); /* attn @ v (:295) */
}

/* Global block: task = (head, block of BQ queries) over the whole G x G grid. */
static void attn_global(void *arg, int64_t i, int tid)
{
    const attn_args *a = arg;
    const vt_sam *m = a->m;
    const int64_t t = a->t0 + i, head = t / a->n_qb, q0 = (t % a->n_qb) * BQ;
    const int64_t G = m->grid, N = G * G, d = m->d, hd = m->hd, nq = N - q0 < BQ ? N - q0 : BQ;
    const float *qkv = a->qkv + head * hd;
    attn_core(a, a->slots + i * a->slot, tid, G, nq, q0, G, qkv + q0 * 3 * d, 3 * d, qkv + d,
              qkv + 2 * d, 3 * d, a->out + q0 * d + head * hd, d);
}

/* Windowed block: task = (window, head). window_partition (:301-322) pads the
 * grid with zeros to a multiple of the window; the padded keys are qkv(0). */
static void attn_window(void *arg, int64_t i, int tid)
{
    const attn_args *a = arg;
    const vt_sam *m = a->m;
    const int64_t t = a->t0 + i, heads = m->heads, w = t / heads, head = t % heads;
    const int64_t G = m->grid, d = m->d, hd = m->hd, ws = a->B->win, T = ws * ws;
    const int64_t nwx = (G + ws - 1) / ws, y0 = w / nwx * ws, x0 = w % nwx * ws;
    const int64_t rh = G - y0 < ws ? G - y0 : ws, rw = G - x0 < ws ? G - x0 : ws;
    float *slot = a->slots + i * a->slot;
    float *Q = slot + vt_szr16(T * T) + vt_szr16(T * (4 * ws - 2)), *K = Q + vt_szr16(T * hd),
          *V = K + vt_szr16(T * hd), *O = V + vt_szr16(T * hd);
    const float *bias = a->B->qkv.b;
    const size_t row = (size_t)hd * sizeof(float);
    for (int64_t ky = 0; ky < ws; ky++)
        for (int64_t kx = 0; kx < ws; kx++) {
            const int64_t j = ky * ws + kx;
            if (ky < rh && kx < rw) {
                const float *src = a->qkv + ((y0 + ky) * G + x0 + kx) * 3 * d + head * hd;
                memcpy(Q + (ky * rw + kx) * hd, src, row);
                memcpy(K + j * hd, src + d, row);
                memcpy(V + j * hd, src + 2 * d, row);
            } else if (bias) {
                memcpy(K + j * hd, bias + d + head * hd, row);
                memcpy(V + j * hd, bias + 2 * d + head * hd, row);
            } else {
                memset(K + j * hd, 0, row);
                memset(V + j * hd, 0, row);
            }
        }
    attn_core(a, slot, tid, ws, rh * rw, 0, rw, Q, hd, K, V, hd, O, hd);
    for (int64_t qy = 0; qy < rh; qy++) /* window_unpartition and crop (:339-346) */
        for (int64_t qx = 0; qx < rw; qx++)
            memcpy(a->out + ((y0 + qy) * G + x0 + qx) * d + head * hd, O + (qy * rw + qx) * hd,
                   row);
}

static void block_forward(const vt_sam *m, const vt_sam_block *B, const vt_exec *e,
                          const sam_buffers *b)
{
    const int64_t G = m->grid, N = G * G;
    /* Block.forward (:224-240): x += attn(norm1(x)); x += mlp(norm2(x)) */
    vt_linear_opts o1 = {.ln_src = b->x, .ln = &B->norm1};
    vt_op_linear_ex(e, N, b->h, 0, &B->qkv, b->u, 0, &o1);
    attn_args a = {.m = m, .B = B, .e = e, .qkv = b->u, .out = b->h, .slots = b->slots,
                   .slot = b->slot, .n_qb = (N + BQ - 1) / BQ,
                   .scale = (float)(1.0 / sqrt((double)m->hd))}; /* head_dim**-0.5 (:268) */
    int64_t n = m->heads * a.n_qb;
    if (B->win) {
        const int64_t nw = (G + B->win - 1) / B->win;
        n = nw * nw * m->heads;
    }
    for (a.t0 = 0; a.t0 < n; a.t0 += N_SLOTS)
        vt_pool_run(e->pool, B->win ? attn_window : attn_global, &a,
                    n - a.t0 < N_SLOTS ? n - a.t0 : N_SLOTS);
    vt_linear_opts acc = {.accumulate = 1};
    vt_op_linear_ex(e, N, b->h, 0, &B->proj, b->x, 0, &acc);
    vt_linear_opts o2 = {.ln_src = b->x, .ln = &B->norm2};
    vt_op_linear_ex(e, N, b->h, 0, &B->lin1, b->u, 0, &o2);
    /* MLPBlock: lin2(GELU(lin1 x)), nn.GELU's exact erf form (:25-38) */
    vt_linear_opts o3 = {.act = VT_ACT_GELU_ERF, .accumulate = 1};
    vt_op_linear_ex(e, N, b->u, 0, &B->lin2, b->x, 0, &o3);
}

void vt_sam_forward(const vt_sam *m, const vt_exec *e, const float *in, float *out, float *work)
{
    const int64_t G = m->grid, N = G * G, d = m->d, o = m->out_ch;
    sam_buffers b;
    layout(m, work, &b);
    if (vt_run_poll(e))
        return;
    /* patch_embed (:156, :445-452), then + pos_embed (:157-158) */
    col_args pa = {.in = in, .col = b.h, .H = G * m->patch, .W = G * m->patch, .C = m->in_ch,
                   .Wo = G, .p = m->patch};
    vt_pool_run(e->pool, patch_row, &pa, G);
    vt_op_linear(e, N, b.h, 0, &m->patch_embed, b.x, 0);
    for (int64_t i = 0; i < N * d; i++)
        b.x[i] += m->pos[i];
    for (int64_t l = 0; l < m->depth; l++) {
        if (vt_run_poll(e))
            return;
        block_forward(m, &m->blocks[l], e, &b);
    }
    /* neck (:132-148, :163) on the channel-last map, then net_2 (:164-165) */
    float *y1 = b.u, *y2 = m->out2_ch ? b.u + vt_szr16(N * o) : out;
    vt_op_linear(e, N, b.x, 0, &m->neck0, y1, 0);
    vt_op_layernorm(e, N, o, y1, &m->neck1, y1);
    conv3x3(e, &m->neck2, y1, G, G, 1, b.h, y2);
    vt_op_layernorm(e, N, o, y2, &m->neck3, y2);
    if (y2 != out)
        conv3x3(e, &m->net2, y2, G, G, 2, b.h, out);
}
