/*
 * processor.c - Hugging Face image processors, reproduced to the bit.
 *
 * The "slow" HF processors work on a uint8 HWC image: optional pad to square
 * (LLaVA), Pillow resize of the uint8 image (vtok_image_resize is
 * Pillow-exact), center crop with HF's offsets (top = (H - h) // 2, zero
 * padding when the image is smaller), then rescale in float64 and cast to
 * float32 (image_transforms.rescale), then normalize in float32
 * ((x - mean) / std with mean/std cast to float32). torchvision's ToTensor
 * instead divides in float32 (x / 255). Each of those maps a byte value to
 * one float, so both are a 256-entry table per channel built with exactly
 * those operations (this file is compiled without FP contraction, as ISO C
 * mode implies, so no FMA fuses the steps).
 */
#include "image.h"

#include "../io/io.h"
#include "../io/opt.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum { RESIZE_NONE = 0, RESIZE_SHORTEST, RESIZE_EXACT, RESIZE_LONGEST } resize_mode;

struct vtok_processor {
    char        type[64];
    int         pad_square;
    uint8_t     pad_color[3];
    int64_t     pad_h, pad_w;  /* > 0: SAM's pad to this size, bottom / right, 0.0 after normalize */
    resize_mode resize;
    int64_t     shortest, longest, rh, rw;
    int         resample;
    int         crop;
    int64_t     ch, cw;
    int         rescale, torchvision;
    double      rescale_factor;
    int         normalize;
    double      mean[3], std[3];
    float       lut[3][256];
    char        desc[512];
};

static const double clip_mean[3] = {0.48145466, 0.4578275, 0.40821073};
static const double clip_std[3] = {0.26862954, 0.26130258, 0.27577711};
static const double inet_mean[3] = {0.485, 0.456, 0.406};
static const double inet_std[3] = {0.229, 0.224, 0.225};
static const double half[3] = {0.5, 0.5, 0.5};

/* Class defaults (transformers image_processing_*.py __init__). */
typedef struct {
    const char   *name;
    resize_mode   resize;
    int64_t       size;          /* shortest edge, or square side */
    int           resample;
    int           crop;
    int64_t       crop_size;
    const double *mean, *std;
    int           square_default; /* get_size_dict(default_to_square=...) for an int size */
    int           pad_to_size;    /* do_pad (default on) pads to pad_size, not to a square */
} proc_class;

static const proc_class classes[] = {
    {"CLIPImageProcessor", RESIZE_SHORTEST, 224, 3, 1, 224, clip_mean, clip_std, 0, 0},
    {"LlavaImageProcessor", RESIZE_SHORTEST, 224, 3, 1, 224, clip_mean, clip_std, 0, 0},
    {"BitImageProcessor", RESIZE_SHORTEST, 224, 3, 1, 224, clip_mean, clip_std, 0, 0},
    {"SiglipImageProcessor", RESIZE_EXACT, 224, 3, 0, 0, half, half, 1, 0},
    {"ViTImageProcessor", RESIZE_EXACT, 224, 2, 0, 0, half, half, 1, 0},
    {"DeiTImageProcessor", RESIZE_EXACT, 256, 3, 1, 224, inet_mean, inet_std, 1, 0},
    {"BlipImageProcessor", RESIZE_EXACT, 384, 3, 0, 0, clip_mean, clip_std, 1, 0},
    {"TorchvisionImageProcessor", RESIZE_EXACT, 224, 3, 0, 0, clip_mean, clip_std, 1, 0},
    /* image_processing_sam.py: longest_edge 1024, BILINEAR, ImageNet mean/std, pad 1024 */
    {"SamImageProcessor", RESIZE_LONGEST, 1024, 2, 0, 0, inet_mean, inet_std, 0, 1},
};

static const proc_class *find_class(const char *type)
{
    char base[64];
    snprintf(base, sizeof base, "%s", type);
    /* "CLIPImageProcessorFast" and legacy "CLIPFeatureExtractor" name the same processing. */
    size_t n = strlen(base);
    if (n > 4 && !strcmp(base + n - 4, "Fast"))
        base[n - 4] = '\0';
    char *fe = strstr(base, "FeatureExtractor");
    if (fe)
        snprintf(fe, sizeof base - (size_t)(fe - base), "ImageProcessor");
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (!strcmp(classes[i].name, base))
            return &classes[i];
    return NULL;
}

#define WHERE "preprocessor_config.json"

/* An integer size 1..65500 if present (*present says whether it was). */
static int get_int(const cJSON *o, const char *k, int64_t *out, int *present, vtok_status *st)
{
    int64_t v = 0;
    int rc = vt_opt_int(o, k, 0, &v, WHERE, st);
    *present = !rc && cJSON_GetObjectItemCaseSensitive(o, k) &&
               !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, k));
    if (rc)
        return rc;
    if (*present && (v < 1 || v > 65500))
        return vt_fail(st, VTOK_EFORMAT, WHERE ": '%s' must be an integer 1..65500", k);
    if (*present)
        *out = v;
    return 0;
}

/* size / crop_size: an int (legacy) or a dict as get_size_dict makes it. */
static int read_size(const cJSON *cfg, const char *key, int square_default, resize_mode *mode,
                     int64_t *shortest, int64_t *longest, int64_t *h, int64_t *w, vtok_status *st)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(cfg, key);
    int present = 0, rc;
    if (!it || cJSON_IsNull(it))
        return 0;
    if (cJSON_IsNumber(it)) {
        int64_t n;
        if ((rc = get_int(cfg, key, &n, &present, st)))
            return rc;
        if (square_default) {
            *mode = RESIZE_EXACT;
            *h = *w = n;
        } else {
            *mode = RESIZE_SHORTEST;
            *shortest = n;
        }
        return 0;
    }
    if (!cJSON_IsObject(it))
        return vt_fail(st, VTOK_EFORMAT, "preprocessor_config.json: '%s' must be an int or object", key);
    int64_t se = 0, le = 0, hh = 0, ww = 0;
    int has_se, has_le, has_h, has_w;
    if ((rc = get_int(it, "shortest_edge", &se, &has_se, st)) ||
        (rc = get_int(it, "longest_edge", &le, &has_le, st)) ||
        (rc = get_int(it, "height", &hh, &has_h, st)) || (rc = get_int(it, "width", &ww, &has_w, st)))
        return rc;
    if (has_h && has_w) {
        *mode = RESIZE_EXACT;
        *h = hh;
        *w = ww;
    } else if (has_se) {
        *mode = RESIZE_SHORTEST;
        *shortest = se;
        *longest = has_le ? le : 0;
    } else if (has_le) { /* SAM: the longest side to le, the aspect kept */
        *mode = RESIZE_LONGEST;
        *longest = le;
    } else {
        return vt_fail(st, VTOK_EUNSUPPORTED,
                       "preprocessor_config.json: '%s' needs height+width or shortest_edge", key);
    }
    return 0;
}

static void build_lut(vtok_processor *p)
{
    for (int c = 0; c < 3; c++) {
        float m = (float)p->mean[c], s = (float)p->std[c];
        for (int v = 0; v < 256; v++) {
            float x;
            if (!p->rescale)
                x = (float)v;
            else if (p->torchvision)
                x = (float)v / 255.0f;                       /* ToTensor: float32 div */
            else
                x = (float)((double)v * p->rescale_factor);  /* HF rescale: float64 */
            if (p->normalize)
                x = (x - m) / s;
            p->lut[c][v] = x;
        }
    }
}

static int parse(vtok_processor *p, const cJSON *cfg, vtok_status *st)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, "image_processor_type");
    if (!cJSON_IsString(t))
        t = cJSON_GetObjectItemCaseSensitive(cfg, "feature_extractor_type");
    if (!cJSON_IsString(t))
        return vt_fail(st, VTOK_EFORMAT,
                       "preprocessor_config.json: no image_processor_type or feature_extractor_type");
    const proc_class *pc = find_class(t->valuestring);
    if (!pc)
        return vt_fail(st, VTOK_EUNSUPPORTED, "unsupported image processor '%s'", t->valuestring);
    snprintf(p->type, sizeof p->type, "%s", t->valuestring);

    int do_resize = 1, do_crop = pc->crop, do_rescale = 1, do_norm = 1, do_pad = pc->pad_to_size,
        rc;
    p->resize = pc->resize;
    p->shortest = p->rh = p->rw = pc->size;
    p->longest = pc->resize == RESIZE_LONGEST ? pc->size : 0;
    p->resample = pc->resample;
    p->ch = p->cw = pc->crop_size;
    p->rescale_factor = 1.0 / 255.0;
    memcpy(p->mean, pc->mean, sizeof p->mean);
    memcpy(p->std, pc->std, sizeof p->std);
    p->torchvision = !strcmp(pc->name, "TorchvisionImageProcessor");

    int64_t resample = p->resample;
    resize_mode crop_mode = RESIZE_EXACT;
    int64_t dummy = 0;
    if ((rc = vt_opt_bool(cfg, "do_resize", do_resize, &do_resize, WHERE, st)) ||
        (rc = vt_opt_bool(cfg, "do_center_crop", do_crop, &do_crop, WHERE, st)) ||
        (rc = vt_opt_bool(cfg, "do_rescale", do_rescale, &do_rescale, WHERE, st)) ||
        (rc = vt_opt_bool(cfg, "do_normalize", do_norm, &do_norm, WHERE, st)) ||
        (rc = vt_opt_bool(cfg, "do_pad", do_pad, &do_pad, WHERE, st)) ||
        (rc = read_size(cfg, "size", pc->square_default, &p->resize, &p->shortest, &p->longest,
                        &p->rh, &p->rw, st)) ||
        (rc = read_size(cfg, "crop_size", 1, &crop_mode, &dummy, &dummy, &p->ch, &p->cw, st)) ||
        (rc = vt_opt_floats(cfg, "image_mean", 3, p->mean, WHERE, st)) ||
        (rc = vt_opt_floats(cfg, "image_std", 3, p->std, WHERE, st)))
        return rc;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(cfg, "resample");
    if (r && !cJSON_IsNull(r)) {
        if (!cJSON_IsNumber(r) || r->valuedouble < 0 || r->valuedouble > 5 ||
            r->valuedouble != floor(r->valuedouble))
            return vt_fail(st, VTOK_EFORMAT, "preprocessor_config.json: 'resample' must be 0..5");
        resample = (int64_t)r->valuedouble;
    }
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(cfg, "rescale_factor");
    if (rf && !cJSON_IsNull(rf)) {
        if (!cJSON_IsNumber(rf) || !isfinite(rf->valuedouble))
            return vt_fail(st, VTOK_EFORMAT, "preprocessor_config.json: bad rescale_factor");
        p->rescale_factor = rf->valuedouble;
    }
    if (crop_mode != RESIZE_EXACT)
        return vt_fail(st, VTOK_EUNSUPPORTED, "preprocessor_config.json: crop_size must be height/width");
    if (p->resize == RESIZE_SHORTEST && p->longest)
        return vt_fail(st, VTOK_EUNSUPPORTED, "preprocessor_config.json: shortest_edge with "
                       "longest_edge is not supported yet");
    if (pc->pad_to_size && do_pad) { /* pad_size: {"height", "width"}, default 1024 x 1024 */
        resize_mode pm = RESIZE_EXACT;
        int64_t ps = 0;
        p->pad_h = p->pad_w = pc->size;
        if ((rc = read_size(cfg, "pad_size", 1, &pm, &ps, &ps, &p->pad_h, &p->pad_w, st)))
            return rc;
        if (pm != RESIZE_EXACT)
            return vt_fail(st, VTOK_EFORMAT, "preprocessor_config.json: pad_size must be "
                           "height/width");
        do_pad = 0; /* not the square pad */
    }
    /* A std this small turns every pixel into +-inf or huge values: no
     * released processor uses one, so it is a broken file, not a choice. */
    for (int c = 0; c < 3; c++)
        if (do_norm && !(fabs(p->std[c]) >= 1e-6))
            return vt_fail(st, VTOK_EFORMAT, "preprocessor_config.json: image_std %g is too small "
                           "(under 1e-6)", p->std[c]);
    if (!do_resize)
        p->resize = RESIZE_NONE;
    p->resample = (int)resample;
    p->crop = do_crop;
    p->rescale = do_rescale;
    p->normalize = do_norm;
    p->pad_square = do_pad;
    /* LlavaImageProcessor.pad_to_square: background = tuple(int(x * 255) for x in image_mean).
     * "pad_color" [r, g, b] (0..255) is a vtok key, not HF's, for recipes
     * whose code pads with another colour (Shikra/COMM: white). */
    double pc3[3] = {-1, -1, -1};
    if ((rc = vt_opt_floats(cfg, "pad_color", 3, pc3, WHERE, st)))
        return rc;
    for (int c = 0; c < 3; c++) {
        double b = pc3[0] >= 0 ? pc3[c] : p->mean[c] * 255.0;
        if (pc3[0] >= 0 && (b != floor(b) || b < 0 || b > 255))
            return vt_fail(st, VTOK_EFORMAT, "preprocessor_config.json: 'pad_color' must be 3 integers 0..255");
        p->pad_color[c] = (uint8_t)(b < 0 ? 0 : b > 255 ? 255 : (int)b);
    }
    build_lut(p);
    static const char *const rs[] = {"nearest", "lanczos", "bilinear", "bicubic", "box", "hamming"};
    int n = snprintf(p->desc, sizeof p->desc, "%s:%s", p->type, p->pad_square ? " pad-to-square," : "");
    if (p->resize == RESIZE_SHORTEST)
        n += snprintf(p->desc + n, sizeof p->desc - (size_t)n, " resize shortest edge %lld (%s),",
                      (long long)p->shortest, rs[p->resample]);
    else if (p->resize == RESIZE_LONGEST)
        n += snprintf(p->desc + n, sizeof p->desc - (size_t)n, " resize longest edge %lld (%s),",
                      (long long)p->longest, rs[p->resample]);
    else if (p->resize == RESIZE_EXACT)
        n += snprintf(p->desc + n, sizeof p->desc - (size_t)n, " resize %lldx%lld (%s),",
                      (long long)p->rw, (long long)p->rh, rs[p->resample]);
    if (p->crop)
        n += snprintf(p->desc + n, sizeof p->desc - (size_t)n, " center crop %lldx%lld,",
                      (long long)p->cw, (long long)p->ch);
    snprintf(p->desc + n, sizeof p->desc - (size_t)n, " %s%s%s",
             p->rescale ? (p->torchvision ? "/255 (float32)" : "rescale") : "no rescale",
             p->normalize ? ", normalize" : "", p->pad_h ? ", pad bottom/right" : "");
    return 0;
}

vtok_processor *vtok_processor_load(const char *path, vtok_status *st)
{
    if (!path) {
        vt_fail(st, VTOK_EINVAL, "no processor path");
        return NULL;
    }
    char file[4096];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(file, sizeof file, "%s/preprocessor_config.json", path);
    else
        snprintf(file, sizeof file, "%s", path);
    char *text = NULL;
    size_t len = 0;
    if (vt_read_file(file, 4u << 20, &text, &len, st))
        return NULL;
    cJSON *cfg = vt_json_parse_object(text, len, file, st);
    free(text);
    if (!cfg)
        return NULL;
    vtok_processor *p = vt_processor_from_json(cfg, st);
    cJSON_Delete(cfg);
    return p;
}

vtok_processor *vt_processor_from_json(const cJSON *cfg, vtok_status *st)
{
    vtok_processor *p = calloc(1, sizeof *p);
    if (!p) {
        vt_fail(st, VTOK_ENOMEM, "out of memory");
        return NULL;
    }
    if (parse(p, cfg, st)) {
        free(p);
        return NULL;
    }
    return p;
}

void vtok_processor_free(vtok_processor *p)
{
    free(p);
}

int64_t vtok_processor_min_side(const vtok_processor *p)
{
    if (!p || p->pad_square || p->resize == RESIZE_NONE || p->resize == RESIZE_LONGEST)
        return 0;
    if (p->resize == RESIZE_SHORTEST)
        return p->shortest;
    return p->rh > p->rw ? p->rh : p->rw; /* a squash needs both sides at least this big */
}

const char *vtok_processor_describe(const vtok_processor *p)
{
    return p ? p->desc : "";
}

/* Size after the resize step (height, width), as get_resize_output_image_size. */
static void resized_size(const vtok_processor *p, int64_t w, int64_t h, int64_t *oh, int64_t *ow)
{
    if (p->resize == RESIZE_EXACT) {
        *oh = p->rh;
        *ow = p->rw;
    } else if (p->resize == RESIZE_SHORTEST) {
        /* short, long = (w, h) if w <= h else (h, w); new_long = int(size * long / short) */
        int64_t s = w <= h ? w : h, l = w <= h ? h : w;
        int64_t nl = (int64_t)((double)p->shortest * (double)l / (double)s);
        if (w <= h) {
            *ow = p->shortest;
            *oh = nl;
        } else {
            *oh = p->shortest;
            *ow = nl;
        }
    } else if (p->resize == RESIZE_LONGEST) {
        /* get_preprocess_shape: scale = longest_edge * 1.0 / max(h, w), each side
         * int(side * scale + 0.5) (image_processing_sam.py) */
        const double scale = (double)p->longest * 1.0 / (double)(h > w ? h : w);
        *oh = (int64_t)((double)h * scale + 0.5);
        *ow = (int64_t)((double)w * scale + 0.5);
    } else {
        *oh = h;
        *ow = w;
    }
}

/* Output size, and the limits on every image the steps make before any of
 * them is allocated: the square canvas and the resize target each hold at
 * most mp pixels (the decode limit, vtok_image_params.max_pixels) and 65500
 * per side. A 30000x1 image padded to square would otherwise ask for 2.6 GB
 * from a 167-byte PNG. (The resampler bounds its own intermediate.) */
static int out_size(const vtok_processor *p, int64_t width, int64_t height, int64_t mp,
                    int64_t *h, int64_t *w, vtok_status *st)
{
    if (!p || !h || !w || width < 1 || height < 1)
        return vt_fail(st, VTOK_EINVAL, "bad image size %lldx%lld", (long long)width,
                       (long long)height);
    if (p->pad_square && width != height) {
        int64_t n = width > height ? width : height;
        if (n > 65500 || vt_szmul(n, n) > mp)
            return vt_fail(st, VTOK_ELIMIT, "padding the %lldx%lld image to a square makes "
                           "%lldx%lld pixels, over the limit of %lld (vtok_image_params."
                           "max_pixels) or 65500 per side", (long long)width, (long long)height,
                           (long long)n, (long long)n, (long long)mp);
        width = height = n;
    }
    resized_size(p, width, height, h, w);
    if (*h < 1 || *w < 1 || *h > 65500 || *w > 65500 || vt_szmul(*h, *w) > mp)
        return vt_fail(st, VTOK_ELIMIT, "the %lldx%lld image resizes to %lldx%lld, over the "
                       "limit of %lld pixels (vtok_image_params.max_pixels) or 1..65500 per "
                       "side", (long long)width, (long long)height, (long long)*w,
                       (long long)*h, (long long)mp);
    if (p->crop) {
        *h = p->ch;
        *w = p->cw;
    }
    if (p->pad_h) {
        if (*h > p->pad_h || *w > p->pad_w)
            return vt_fail(st, VTOK_EFORMAT, "preprocessor_config.json: the image resizes to "
                           "%lldx%lld, larger than pad_size %lldx%lld", (long long)*w,
                           (long long)*h, (long long)p->pad_w, (long long)p->pad_h);
        *h = p->pad_h;
        *w = p->pad_w;
    }
    return 0;
}

int vtok_processor_output_size(const vtok_processor *p, int64_t width, int64_t height,
                               int64_t *h, int64_t *w, vtok_status *st)
{
    return out_size(p, width, height, vtok_image_default_params().max_pixels, h, w, st);
}

void vt_processor_slice_sizes(const vtok_processor *p, int64_t *base, int64_t *crop)
{
    *base = p->resize == RESIZE_SHORTEST ? p->shortest : p->resize == RESIZE_EXACT ? p->rh
          : p->resize == RESIZE_LONGEST ? p->longest : 0;
    *crop = p->crop ? p->ch : *base;
}

/* expand2square / pad_to_square: paste centered on a square of the pad color. */
static int pad_square(const vtok_processor *p, const vtok_image *src, vtok_image *dst,
                      vtok_status *st)
{
    int64_t n = src->width > src->height ? src->width : src->height;
    dst->width = dst->height = n;
    dst->data = vt_alloc((size_t)(n * n * 3));
    if (!dst->data)
        return vt_fail(st, VTOK_ENOMEM, "out of memory padding a %lldx%lld image", (long long)n,
                       (long long)n);
    for (int64_t i = 0; i < n * n; i++)
        memcpy(dst->data + i * 3, p->pad_color, 3);
    int64_t x0 = src->width < n ? (n - src->width) / 2 : 0;
    int64_t y0 = src->height < n ? (n - src->height) / 2 : 0;
    for (int64_t y = 0; y < src->height; y++)
        memcpy(dst->data + ((y0 + y) * n + x0) * 3, src->data + y * src->width * 3,
               (size_t)(src->width * 3));
    return 0;
}

static int64_t floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static int preprocess(const vtok_processor *p, const vtok_image *img, float *out,
                      int64_t out_floats, int64_t mp, vtok_status *st)
{
    if (!p || !img || !img->data || !out || img->width < 1 || img->height < 1)
        return vt_fail(st, VTOK_EINVAL, "vtok_preprocess: bad argument");
    int64_t oh, ow;
    int rc = out_size(p, img->width, img->height, mp, &oh, &ow, st);
    if (rc)
        return rc;
    if (out_floats < 3 * oh * ow)
        return vt_fail(st, VTOK_EINVAL, "output buffer holds %lld floats, need %lld",
                       (long long)out_floats, (long long)(3 * oh * ow));
    vtok_image padded = {0}, resized = {0};
    const vtok_image *cur = img;
    if (p->pad_square && img->width != img->height) {
        if ((rc = pad_square(p, img, &padded, st)))
            return rc;
        cur = &padded;
    }
    if (p->resize != RESIZE_NONE) {
        int64_t rh, rw;
        resized_size(p, cur->width, cur->height, &rh, &rw);
        if ((rc = vtok_image_resize(cur, rw, rh, (vtok_resample)p->resample, &resized, st))) {
            vtok_image_free(&padded);
            return rc;
        }
        cur = &resized;
    }
    /* center_crop: top = (H - h) // 2 (floor), zero padding where the crop leaves the image. */
    int64_t top = 0, left = 0;
    if (p->crop) {
        top = floordiv(cur->height - oh, 2);
        left = floordiv(cur->width - ow, 2);
        if (top < 0 || left < 0 || top + oh > cur->height || left + ow > cur->width) {
            /* HF pads to max(size, crop) centered with ceil((new - orig) / 2), then crops. */
            int64_t nh = oh > cur->height ? oh : cur->height, nw = ow > cur->width ? ow : cur->width;
            int64_t tp = (nh - cur->height + 1) / 2, lp = (nw - cur->width + 1) / 2;
            top = floordiv(nh - oh, 2) - tp;
            left = floordiv(nw - ow, 2) - lp;
        }
    }
    int64_t plane = oh * ow;
    for (int64_t y = 0; y < oh; y++) {
        int64_t sy = top + y;
        for (int64_t x = 0; x < ow; x++) {
            int64_t sx = left + x;
            const uint8_t *px = NULL;
            if (sy >= 0 && sy < cur->height && sx >= 0 && sx < cur->width)
                px = cur->data + (sy * cur->width + sx) * 3;
            for (int c = 0; c < 3; c++) /* SAM's pad is 0 after normalize; a crop's is pixel 0 */
                out[c * plane + y * ow + x] = px ? p->lut[c][px[c]] : p->pad_h ? 0.0f
                                                                               : p->lut[c][0];
        }
    }
    vtok_image_free(&resized);
    vtok_image_free(&padded);
    return 0;
}

int vtok_preprocess(const vtok_processor *p, const vtok_image *img, float *out,
                    int64_t out_floats, vtok_status *st)
{
    return preprocess(p, img, out, out_floats, vtok_image_default_params().max_pixels, st);
}

/* One image of a batch: decode it from paths[i] into *tmp, or take images[i]. */
static const vtok_image *batch_image(const char *const *paths, const vtok_image *images,
                                     int64_t i, const vtok_image_params *ip, vtok_image *tmp,
                                     vtok_status *st)
{
    if (images)
        return &images[i];
    if (!paths[i]) {
        vt_fail(st, VTOK_EINVAL, "vtok_preprocess_batch: path %lld is NULL", (long long)i);
        return NULL;
    }
    return vtok_image_load(paths[i], ip, tmp, st) ? NULL : tmp;
}

/*
 * What every tool did by hand (the CLI's encode and preprocess): the batch
 * is sized from image 0, and each image is decoded, checked and preprocessed
 * straight into its slot, so at most one decoded image is alive at a time.
 */
int vtok_preprocess_batch(const vtok_processor *p, const char *const *paths,
                          const vtok_image *images, int64_t n, const vtok_image_params *ip,
                          float **pixels, int64_t shape[4], vtok_status *st)
{
    if (!pixels || !shape)
        return vt_fail(st, VTOK_EINVAL, "vtok_preprocess_batch: pixels or shape is NULL");
    *pixels = NULL;
    if (!p || !paths == !images || n < 1)
        return vt_fail(st, VTOK_EINVAL, "vtok_preprocess_batch needs a processor, n >= 1 and "
                       "either paths or images");
    vtok_image_params dp = vtok_image_default_params();
    int rc = ip ? vt_params_read(&dp, sizeof dp, ip, "vtok_image_params", st) : 0;
    if (rc)
        return rc;
    if (dp.jpeg_fast_scale && dp.jpeg_target <= 0)
        dp.jpeg_target = vtok_processor_min_side(p);
    float *buf = NULL;
    int64_t h0 = 0, w0 = 0, per = 0;
    for (int64_t i = 0; i < n; i++) {
        vtok_image tmp = {0};
        const vtok_image *img = batch_image(paths, images, i, &dp, &tmp, st);
        int64_t h = 0, w = 0, total;
        int64_t mp = dp.max_pixels > 0 ? dp.max_pixels : vtok_image_default_params().max_pixels;
        rc = img ? out_size(p, img->width, img->height, mp, &h, &w, st)
                 : st && st->code ? st->code : VTOK_EIO;
        if (!rc && i == 0) {
            h0 = h;
            w0 = w;
            per = 3 * h * w;
            if (!vt_mul_ok(per, n, &total) || total > INT64_MAX / (int64_t)sizeof(float))
                rc = vt_fail(st, VTOK_ELIMIT, "a batch of %lld images of %lldx%lld is too large",
                             (long long)n, (long long)w, (long long)h);
            else if (!(buf = vt_alloc((size_t)total * sizeof *buf)))
                rc = vt_fail(st, VTOK_ENOMEM, "out of memory (%lld MiB of pixels)",
                             (long long)(total * 4 >> 20));
        } else if (!rc && (h != h0 || w != w0)) {
            char a[32], b[32];
            snprintf(a, sizeof a, "image %lld", (long long)i);
            snprintf(b, sizeof b, "image 0");
            rc = vt_fail(st, VTOK_ESHAPE, "%s preprocesses to %lldx%lld but %s to %lldx%lld; "
                         "images of one batch must match", paths ? paths[i] : a, (long long)w,
                         (long long)h, paths ? paths[0] : b, (long long)w0, (long long)h0);
        }
        if (!rc)
            rc = preprocess(p, img, buf + per * i, per, mp, st);
        if (rc && img && paths)
            vt_msg_prefix(st, paths[i]); /* which file of the batch */
        vtok_image_free(&tmp);
        if (rc) {
            vt_free(buf);
            return rc;
        }
    }
    shape[0] = n;
    shape[1] = 3;
    shape[2] = h0;
    shape[3] = w0;
    *pixels = buf;
    return 0;
}
