/*
 * vtok.h - the one public header of vtok, a C11 engine for visual tokenizers.
 *
 * vtok runs the vision encoders that multimodal LLMs use (CLIP, DINOv2,
 * SigLIP, ViT/DeiT/MAE, BLIP-2/EVA ViT-g) from Hugging Face model folders and
 * returns the same features PyTorch/transformers would.
 *
 * Usage:
 *
 *     vtok_status st = {0};
 *     vtok_model_params mp = vtok_model_default_params();
 *     vtok_model *m = vtok_model_load("clip-vit-base-patch32", &mp, &st);
 *     if (!m) { fprintf(stderr, "%s\n", st.msg); return 1; }
 *
 *     vtok_ctx_params cp = vtok_ctx_default_params();
 *     cp.n_threads = 2;
 *     vtok_ctx *ctx = vtok_ctx_new(m, &cp, &st);
 *
 *     vtok_encode_params ep = vtok_encode_default_params();
 *     ep.all_layers = 1;                       // keep every hidden state
 *     if (vtok_encode(ctx, pixels, 1, 3, 224, 224, &ep) != 0)
 *         fprintf(stderr, "%s\n", vtok_ctx_errmsg(ctx));
 *
 *     vtok_view v;
 *     vtok_get_output(ctx, VTOK_OUT_LAST_HIDDEN, 0, &v);   // [1, 50, 768]
 *
 *     vtok_ctx_free(ctx);
 *     vtok_model_free(m);
 *
 * Thread safety: a vtok_model is read-only after load and may be shared by any
 * number of threads. A vtok_ctx belongs to one thread at a time; use one
 * context per thread or request. Functions that take no model or context are
 * thread-safe. Several contexts may share one vtok_threadpool (see
 * vtok_threadpool_new) instead of each starting a thread per core.
 *
 * Params structs and ABI: every *_params struct starts with `size_t size`,
 * which vtok_*_default_params() (an inline function, so it is compiled into
 * the caller) sets to sizeof the struct as the caller's vtok.h declares it.
 * Always start from the default params and change fields. Fields are only
 * ever appended, and each struct ends without tail padding (the library
 * checks this at compile time), so `size` says exactly which fields the
 * caller knows: the library reads those and uses defaults for the rest. A
 * program built against an older vtok.h therefore keeps working with a newer
 * library. A newer program on an older library works as long as the fields
 * the library does not know are zero (as default_params leaves them unless
 * the caller sets them); otherwise the call fails with VTOK_EUNSUPPORTED.
 * A size of 0 (a zeroed struct) is refused with VTOK_EINVAL. Bindings that
 * cannot call inline functions (ctypes) call vtok_*_params_init(&p, sizeof p)
 * themselves: it zeroes `size` bytes, fills the defaults that fit and sets
 * p->size = size.
 *
 * Errors: every fallible call returns 0 on success or a negative VTOK_E* code;
 * vtok_strerror() names the code, vtok_ctx_errmsg() / vtok_status.msg say what
 * went wrong in one line. The library never exits or aborts on bad input.
 */
#ifndef VTOK_H
#define VTOK_H

#include <stddef.h>
#include <stdint.h>

/* VTOK_VERSION_MAJOR, _MINOR, _PATCH, _STRING: generated from CMakeLists.txt
 * into the build tree and installed beside this header. */
#include "vtok_version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Everything declared here is exported from the shared library (built with
 * hidden visibility, so private symbols stay private). */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* Error codes: always negative. */
enum {
    VTOK_OK           = 0,
    VTOK_EINVAL       = -1, /* bad argument (NULL, out of range)            */
    VTOK_ENOMEM       = -2, /* allocation failed                            */
    VTOK_EIO          = -3, /* open/read/mmap/write failed                  */
    VTOK_EFORMAT      = -4, /* malformed file (JSON, safetensors, npy)      */
    VTOK_EUNSUPPORTED = -5, /* architecture, dtype or option not supported  */
    VTOK_EMISSING     = -6, /* a required tensor or config key is missing   */
    VTOK_ESHAPE       = -7, /* a tensor or input has the wrong shape        */
    VTOK_ELIMIT       = -8, /* input exceeds a configured limit             */
    VTOK_EABORTED     = -9, /* the abort callback asked the run to stop     */
};

/* Static name of an error code ("invalid argument", ...). Never NULL. */
const char *vtok_strerror(int code);

/* A code and a one-line message, filled by calls that have no context yet. */
typedef struct vtok_status {
    int  code;
    char msg[512];
} vtok_status;

/* Library version string, static. */
const char *vtok_version(void);

/* ----------------------------------------------------------- threadpool -- */

/*
 * A thread pool that several contexts (and model loads) can share, so that N
 * contexts on an N-core machine do not start N * N threads. n_threads counts
 * the calling thread (n_threads - 1 workers are started); <= 0 means one per
 * online CPU, at most 256. Returns NULL on error (fills *st; st may be NULL).
 *
 * Sharing: the pool runs one parallel operation (a GEMM, an attention, a
 * norm: the steps a forward pass is made of) at a time. Contexts that borrow
 * the same pool may run concurrently from different threads; each operation
 * then waits for the pool and runs alone on it, so their passes interleave
 * operation by operation and stay correct and deterministic. The thread that
 * submits an operation works on it as thread 0. Free the pool only after
 * every context and load that uses it is finished (vtok_ctx_free).
 */
typedef struct vtok_threadpool vtok_threadpool;

vtok_threadpool *vtok_threadpool_new(int n_threads, vtok_status *st);
void             vtok_threadpool_free(vtok_threadpool *tp); /* NULL is a no-op */
int              vtok_threadpool_size(const vtok_threadpool *tp); /* threads incl. the caller */

/* ---------------------------------------------------------------- model -- */

typedef struct vtok_model vtok_model;

/* Compute precision of the Linear layers (weights and the activations they
 * read; sums, norms, softmax and outputs stay float32). */
typedef enum vtok_dtype {
    VTOK_DTYPE_F32 = 0,  /* exact (the parity reference)                           */
    VTOK_DTYPE_BF16,     /* bfloat16 weights and inputs, float32 sums              */
    VTOK_DTYPE_INT8,     /* int8 weights (per output channel) and inputs (per row,
                            dynamic), int32 sums                                   */
    VTOK_DTYPE_Q4,       /* 4-bit weights in blocks of 32 with an f16 scale, int8
                            inputs per block of 32, int32 block sums (LLM decode) */
} vtok_dtype;

/* "f32", "bf16", "int8", "q4" -> dtype; -1 if unknown. And back. */
int         vtok_dtype_from_name(const char *name);
const char *vtok_dtype_name(int dtype);

typedef struct vtok_model_params {
    size_t size;        /* sizeof(vtok_model_params): set by the default params  */
    int use_mmap;       /* map weight files instead of reading them (default 1) */
    int dtype;          /* vtok_dtype (default VTOK_DTYPE_F32)                  */
    int n_threads;      /* threads that convert weights at load; <= 0: one per  */
                        /*   CPU, at most 16 (default 0)                         */
    int reserved0;      /* keep 0 (no tail padding; see "Params structs")       */
    vtok_threadpool *threadpool; /* convert on this pool instead (borrowed;     */
                        /*   n_threads is then ignored). Default NULL            */
} vtok_model_params;

void vtok_model_params_init(vtok_model_params *p, size_t size);
static inline vtok_model_params vtok_model_default_params(void)
{
    vtok_model_params p;
    vtok_model_params_init(&p, sizeof p);
    return p;
}

/*
 * Load a Hugging Face model folder: config.json plus model.safetensors or
 * shards listed in model.safetensors.index.json. `path` may also name a
 * config.json directly. Returns NULL on error and fills *st (st may be NULL).
 * The returned model is owned by the caller; free it with vtok_model_free
 * after every context made from it is freed.
 */
vtok_model *vtok_model_load(const char *path, const vtok_model_params *p, vtok_status *st);

/*
 * Load a model from memory: `weights` is one safetensors file image of
 * `weights_size` bytes, `config_json` the text of its config.json
 * (config_len bytes; NUL termination not needed). The weights are borrowed,
 * not copied: they must stay valid and unchanged until vtok_model_free (the
 * config is parsed during the call and not kept). p->use_mmap is ignored.
 * Otherwise as vtok_model_load.
 */
vtok_model *vtok_model_load_from_memory(const void *weights, size_t weights_size,
                                        const char *config_json, size_t config_len,
                                        const vtok_model_params *p, vtok_status *st);
void        vtok_model_free(vtok_model *m); /* NULL is a no-op */

typedef struct vtok_model_info {
    const char *arch;          /* family: "clip", "siglip", "dinov2", "vit", "vit_mae", "blip2" */
    const char *model_type;    /* config.json model_type as read                               */
    const char *weight_dtype;  /* dtype of the stored weights: "F32", "F16", "BF16"            */
    const char *compute_dtype; /* what the Linear layers run in: "f32", "bf16", "int8"         */
    int64_t hidden_size;
    int64_t intermediate_size;
    int64_t n_layers;
    int64_t n_heads;
    int64_t patch_size;
    int64_t image_size;        /* native input side in pixels                                 */
    int64_t n_channels;
    int64_t n_prefix_tokens;   /* CLS + register tokens in front of the patch tokens          */
    int64_t projection_dim;    /* 0 if the model has no image projection                      */
    int     has_pooler;        /* produces pooler_output                                      */
    int     any_size;          /* accepts input sizes other than image_size (pos interpolation) */
    const char *hidden_act;
    double  layer_norm_eps;
    int64_t n_params;          /* parameters used by the vision path                           */
} vtok_model_info;

/* Strings in *info point into the model and live as long as it does. */
int vtok_model_get_info(const vtok_model *m, vtok_model_info *info);

/* -------------------------------------------------------------- context -- */

typedef struct vtok_ctx vtok_ctx;

/* Log levels of vtok_ctx_params.log_cb. */
typedef enum vtok_log_level {
    VTOK_LOG_ERROR = 0, /* a call failed: the same line as vtok_ctx_errmsg    */
    VTOK_LOG_WARN  = 1,
    VTOK_LOG_INFO  = 2, /* context set-up: threads, pool, kernels            */
    VTOK_LOG_DEBUG = 3, /* memory planning: the context's block grows        */
} vtok_log_level;

/* A ready-made log_cb: writes "vtok: <level>: <msg>" to stderr. */
void vtok_log_stderr(void *user, int level, const char *msg);

typedef struct vtok_ctx_params {
    size_t size;        /* sizeof(vtok_ctx_params): set by the default params     */
    int n_threads;      /* threads of the context's own pool, including the caller; */
                        /*   <= 0 means one per CPU (default 0)                    */
    int reserved0;      /* keep 0 (no tail padding; see "Params structs")         */
    /* Borrow this pool instead of starting one (n_threads is then ignored). It
     * must outlive the context; see vtok_threadpool_new for sharing. */
    vtok_threadpool *threadpool;
    /* Largest block of working memory (activations, scratch, outputs) one run
     * may plan, in bytes; 0 means the default, 64 GiB. A run that needs more
     * fails with VTOK_ELIMIT and a message naming both numbers. */
    int64_t mem_limit;
    /* Callbacks, all optional (NULL), called on the thread that runs the
     * context, with `user` as given:
     *   abort_cb     polled before every step of a run: an encoder's patch
     *                embedding, each encoder block, a recipe's connector (as
     *                one step); nonzero stops the run, which then returns
     *                VTOK_EABORTED (outputs are not valid).
     *   progress_cb  after each step, with done in 1..total; done rises by
     *                one per call and the last call of a completed run has
     *                done == total (vtok_encode: n_layers + 1).
     *   log_cb       library diagnostics, one line without newline. The
     *                library itself never writes to stdout or stderr: with
     *                log_cb NULL (the default) diagnostics are dropped;
     *                vtok_log_stderr prints them. */
    int  (*abort_cb)(void *user);
    void (*progress_cb)(void *user, int64_t done, int64_t total);
    void (*log_cb)(void *user, int level, const char *msg);
    void  *user;
} vtok_ctx_params;

void vtok_ctx_params_init(vtok_ctx_params *p, size_t size);
static inline vtok_ctx_params vtok_ctx_default_params(void)
{
    vtok_ctx_params p;
    vtok_ctx_params_init(&p, sizeof p);
    return p;
}

/* Returns NULL on error (fills *st). The model (and a borrowed pool) must
 * outlive the context. */
vtok_ctx *vtok_ctx_new(vtok_model *m, const vtok_ctx_params *p, vtok_status *st);
void      vtok_ctx_free(vtok_ctx *ctx); /* NULL is a no-op */

/* Message of the last failed call on ctx; "" if none. Valid until the next call on ctx. */
const char *vtok_ctx_errmsg(const vtok_ctx *ctx);

/* --------------------------------------------------------------- encode -- */

typedef struct vtok_encode_params {
    size_t     size;        /* sizeof(vtok_encode_params): set by the default params   */
    int        all_layers;  /* keep every hidden state 0..n_layers                     */
    int        n_layers;    /* else keep these n_layers hidden-state indices (HF        */
    const int *layers;      /*   indexing; negative counts from the end, -1 = last)     */
} vtok_encode_params;

void vtok_encode_params_init(vtok_encode_params *p, size_t size);
static inline vtok_encode_params vtok_encode_default_params(void)
{
    vtok_encode_params p;
    vtok_encode_params_init(&p, sizeof p);
    return p;
}

/*
 * Run the vision encoder on `pixels`, float32 [n, c, h, w] (NCHW, as an HF
 * image processor's pixel_values). Results stay in ctx until the next
 * vtok_encode on it. Returns 0 or a negative code (see vtok_ctx_errmsg).
 */
int vtok_encode(vtok_ctx *ctx, const float *pixels, int64_t n, int64_t c, int64_t h, int64_t w,
                const vtok_encode_params *p);

typedef enum vtok_output {
    VTOK_OUT_LAST_HIDDEN  = 0, /* [n, tokens, hidden] as HF last_hidden_state          */
    VTOK_OUT_POOLER       = 1, /* [n, hidden]         as HF pooler_output              */
    VTOK_OUT_IMAGE_EMBEDS = 2, /* [n, projection_dim] as HF image_embeds               */
    VTOK_OUT_HIDDEN_STATE = 3, /* [n, tokens, hidden] as HF hidden_states[layer]       */
} vtok_output;

/* A read-only float32 array owned by the context, row-major, batch first. */
typedef struct vtok_view {
    const float *data;
    int          n_dims;
    int64_t      ne[4];        /* sizes, outermost first */
} vtok_view;

/*
 * Look up an output of the last vtok_encode. `layer` is used only for
 * VTOK_OUT_HIDDEN_STATE (0 = embeddings, as HF). Returns VTOK_EMISSING if the
 * model has no such output or the layer was not kept. The view is valid until
 * the next vtok_encode or vtok_ctx_free on ctx.
 */
int vtok_get_output(vtok_ctx *ctx, vtok_output which, int layer, vtok_view *out);

/* --------------------------------------------------------------- images -- */

/* An 8-bit RGB image, rows top to bottom, pixels interleaved R,G,B; row
 * stride is width * 3 bytes. Owned by whoever filled it: vtok_image_free. */
typedef struct vtok_image {
    int64_t  width, height;
    uint8_t *data;
} vtok_image;

/* Limits <= 0 mean "use the default". */
typedef struct vtok_image_params {
    size_t  size;             /* sizeof(vtok_image_params): set by the default params        */
    int64_t max_width;        /* refuse wider images before decoding (default 65500)        */
    int64_t max_height;       /* (default 65500)                                             */
    int64_t max_pixels;       /* refuse more pixels than this before allocating; default     */
                              /*   178956970, Pillow's decompression-bomb error threshold;   */
                              /*   also bounds what a processor makes of it (pad canvas,      */
                              /*   resize target) in vtok_preprocess_batch                    */
    int     exif_orientation; /* 1: apply the EXIF orientation tag (default 0, as HF)        */
    int     jpeg_fast_scale;  /* 1: let libjpeg-turbo downscale in the DCT domain toward     */
                              /*   jpeg_target (not bit-exact with Pillow; default 0)         */
    int64_t jpeg_target;      /* shortest side wanted when jpeg_fast_scale is on             */
} vtok_image_params;

void vtok_image_params_init(vtok_image_params *p, size_t size);
static inline vtok_image_params vtok_image_default_params(void)
{
    vtok_image_params p;
    vtok_image_params_init(&p, sizeof p);
    return p;
}

/* Decode JPEG, PNG, WebP or GIF (first frame) from memory and convert to RGB
 * exactly as Pillow's Image.open(...).convert("RGB") does. */
int vtok_image_decode(const void *buf, size_t size, const vtok_image_params *p, vtok_image *out,
                      vtok_status *st);
int vtok_image_load(const char *path, const vtok_image_params *p, vtok_image *out,
                    vtok_status *st);
void vtok_image_free(vtok_image *img); /* frees data, zeroes the struct; NULL is a no-op */

/* Resampling filters, numbered as Pillow's Image.Resampling (and HF's "resample"). */
typedef enum vtok_resample {
    VTOK_RESAMPLE_NEAREST  = 0,
    VTOK_RESAMPLE_LANCZOS  = 1,
    VTOK_RESAMPLE_BILINEAR = 2,
    VTOK_RESAMPLE_BICUBIC  = 3,
    VTOK_RESAMPLE_BOX      = 4,
    VTOK_RESAMPLE_HAMMING  = 5,
} vtok_resample;

/* Resize to width x height, bit-exact with Pillow 9.4's Image.resize(size,
 * filter) on an RGB image. dst is allocated (free with vtok_image_free). */
int vtok_image_resize(const vtok_image *src, int64_t width, int64_t height, vtok_resample filter,
                      vtok_image *dst, vtok_status *st);

/* ------------------------------------------------------ image processor -- */

/*
 * An image processor as described by a Hugging Face preprocessor_config.json:
 * CLIPImageProcessor, SiglipImageProcessor, BitImageProcessor (DINOv2),
 * ViTImageProcessor, DeiTImageProcessor, BlipImageProcessor,
 * LlavaImageProcessor (do_pad: LLaVA-1.5's expand2square with the mean
 * color), and vtok's "TorchvisionImageProcessor" (Resize((h, w)) on a PIL
 * image + ToTensor + Normalize, as GVT and SEED preprocess). Read-only after
 * load; shareable across threads.
 */
typedef struct vtok_processor vtok_processor;

/* `path` is a folder holding preprocessor_config.json, or the file itself. */
vtok_processor *vtok_processor_load(const char *path, vtok_status *st);
void            vtok_processor_free(vtok_processor *p); /* NULL is a no-op */

/* Output size [3, *h, *w] for an input of width x height. */
int vtok_processor_output_size(const vtok_processor *p, int64_t width, int64_t height,
                               int64_t *h, int64_t *w, vtok_status *st);

/* pixel_values of one image, float32 [3, h, w] written to out (room for
 * out_floats floats), bit-exact with the HF processor on the Pillow image. */
int vtok_preprocess(const vtok_processor *p, const vtok_image *img, float *out,
                    int64_t out_floats, vtok_status *st);

/* Shortest source side the processor needs before its resize (for
 * vtok_image_params.jpeg_target in fast mode); 0 when the source size
 * matters exactly (pad-to-square, no resize). */
int64_t vtok_processor_min_side(const vtok_processor *p);

/* One line describing the processor (static storage inside p). */
const char *vtok_processor_describe(const vtok_processor *p);

/*
 * The pixel_values of a batch, as the HF processor stacks them: n images
 * through p into one float32 [n, 3, h, w] buffer, allocated by vtok (free
 * with vtok_free). Give either `paths` (files, decoded with *ip; ip may be
 * NULL for defaults, and its jpeg_target, when jpeg_fast_scale is on and
 * jpeg_target <= 0, becomes vtok_processor_min_side(p)) or `images`
 * (already decoded); the other must be NULL. Every image must preprocess to
 * the same h x w (VTOK_ESHAPE naming the first that does not). shape gets
 * {n, 3, h, w}. Returns 0 or a negative code (st says why; st may be NULL).
 */
int vtok_preprocess_batch(const vtok_processor *p, const char *const *paths,
                          const vtok_image *images, int64_t n, const vtok_image_params *ip,
                          float **pixels, int64_t shape[4], vtok_status *st);

/* -------------------------------------------------------------- recipes -- */

/*
 * A recipe is the whole visual tokenizer of a multimodal LLM as data (JSON):
 * its encoders (Hugging Face folders or towers inside a PyTorch checkpoint,
 * under a model directory), which hidden
 * states it takes from each, the connector that turns them into tokens
 * (projector, multi-layer merge, ...) with every hyperparameter, and where
 * the tokens go in the prompt. docs/RECIPES.md describes the format.
 *
 *     vtok_recipe *r = vtok_recipe_load("llava-1.5", "models/llava", NULL, &st);
 *     vtok_recipe_ctx *c = vtok_recipe_ctx_new(r, NULL, &st);
 *     vtok_recipe_run_images(c, &img, 1, NULL);     // or vtok_recipe_run(c, pixels, ...)
 *     vtok_view e;
 *     vtok_recipe_get_output(c, &e);                // [1, 576, d_llm]
 *
 * Thread safety as for models: a recipe is read-only after load and may be
 * shared; a recipe context belongs to one thread at a time.
 */
typedef struct vtok_recipe     vtok_recipe;
typedef struct vtok_llm        vtok_llm; /* the LLM runtime, below */
typedef struct vtok_recipe_ctx vtok_recipe_ctx;

typedef struct vtok_recipe_params {
    size_t size;        /* sizeof(vtok_recipe_params): set by the default params */
    int use_mmap;       /* map weight files instead of reading them (default 1) */
    int dtype;          /* vtok_dtype of every encoder and connector Linear
                           (default VTOK_DTYPE_F32)                              */
    int n_threads;      /* threads converting weights at load, as in            */
    int reserved0;      /*   vtok_model_params; reserved0: keep 0               */
    vtok_threadpool *threadpool; /* or this pool (borrowed), default NULL      */
} vtok_recipe_params;

void vtok_recipe_params_init(vtok_recipe_params *p, size_t size);
static inline vtok_recipe_params vtok_recipe_default_params(void)
{
    vtok_recipe_params p;
    vtok_recipe_params_init(&p, sizeof p);
    return p;
}

/* Names of the recipes built into the library (NULL-terminated, static). */
const char *const *vtok_recipe_names(void);

/*
 * Load a recipe: `recipe` is a shipped name (vtok_recipe_names) or a path to
 * a recipe JSON file (any name containing '/' or ending in ".json").
 * `model_dir` is the folder the recipe's encoder folders and weight files are
 * relative to. Returns NULL on error and fills *st (st may be NULL): unknown
 * recipe, a bad option, a missing folder or file, missing tensors (named).
 * Owned by the caller: vtok_recipe_free after every context made from it.
 */
vtok_recipe *vtok_recipe_load(const char *recipe, const char *model_dir,
                              const vtok_recipe_params *p, vtok_status *st);
void         vtok_recipe_free(vtok_recipe *r); /* NULL is a no-op */

typedef struct vtok_recipe_info {
    const char *name;
    const char *description;
    int64_t     n_encoders;
    int64_t     tokens_per_image; /* at the encoders' native input size                  */
    int64_t     d_out;            /* width of each token (the LLM's hidden size)          */
    int64_t     max_images;       /* images one run accepts                               */
    const char *placeholder;      /* prompt text each image's tokens replace ("<image>")  */
    const char *before;           /* text put before / after the tokens ("" if none),    */
    const char *after;            /*   e.g. "<im_start>" / "<im_end>"                     */
    int64_t     ids_per_image;    /* discrete ids per image (a quantising connector), or 0 */
    int64_t     vocab;            /* ids are in [0, vocab) (0: no ids)                     */
    int         can_detokenize;   /* 1: vtok_recipe_detokenize maps ids back               */
    int         reserved0;
    /* How the tokens enter an LLM prompt (vtok_llm_prompt), "" if unused:
     *   fill:      text repeated once per token between before and after; the
     *              positions of those tokens take the image rows (GVT "I ",
     *              Shikra/COMM "<im_patch>"); "": LLaVA's chunk rule
     *   id_format: discrete ids written as vocabulary tokens, printf-style with
     *              one %d (SEED-LLaMA "<img_%05d>") */
    const char *fill;
    const char *id_format;
    int         needs_text;       /* 1: runs need vtok_run_params.llm and text_ids (SliME) */
    int         ragged;           /* 1: images may give different token counts            */
} vtok_recipe_info;

/* Strings point into the recipe and live as long as it does. */
int vtok_recipe_get_info(const vtok_recipe *r, vtok_recipe_info *info);

/* A context: thread pool, planned memory and the results of the last run.
 * p may be NULL (defaults); its pool, memory limit and callbacks work as for
 * vtok_ctx_new. The recipe (and a borrowed pool) must outlive the context. */
vtok_recipe_ctx *vtok_recipe_ctx_new(vtok_recipe *r, const vtok_ctx_params *p, vtok_status *st);
void             vtok_recipe_ctx_free(vtok_recipe_ctx *c); /* NULL is a no-op */
const char      *vtok_recipe_ctx_errmsg(const vtok_recipe_ctx *c);

/*
 * What a run gets besides the images: conditioning for recipes whose
 * connector routes or selects by the text. SliME's selector
 * (vtok_recipe_info.needs_text) reads llm and text_ids: the prompt's token
 * ids as the LLM will see them, without the image positions (BOS, template
 * and question included: vtok_llm_prompt's ids minus its embed_pos), scored
 * against the LLM's input embedding table; the recipe's separator row comes
 * from that table too. All inputs are checked (prompt valid UTF-8 of at most
 * 16 MiB; cond non-NULL when n_cond > 0; ids in the LLM's vocabulary, its
 * hidden size the recipe's) and handed to the connector for the duration of
 * the call only, never kept.
 */
typedef struct vtok_run_params {
    size_t       size;    /* sizeof(vtok_run_params): set by the default params  */
    const char  *prompt;  /* UTF-8, NUL-terminated, or NULL (default)             */
    const float *cond;    /* a conditioning vector (e.g. a text embedding), or    */
    int64_t      n_cond;  /*   NULL and 0 (default)                               */
    const char *const *image_names; /* vtok_recipe_run_images: a name per image   */
                          /*   (its file) for error messages, or NULL (default):  */
                          /*   "image K"                                          */
    const vtok_llm *llm;      /* text conditioning: the LLM (borrowed), or NULL    */
    const int32_t  *text_ids; /*   the prompt's ids without image positions      */
    int64_t         n_text_ids;
    /* 1: the images are those of this context's last successful run (the
     * caller vouches for that): the encoders are not run again, their hidden
     * states are kept; only the connector runs, e.g. with other routing
     * weights (MoVA's answer pass after its routing pass). Refused when the
     * last run failed or its images had other sizes. Default 0. */
    int             same_images;
    int             reserved0;
} vtok_run_params;

void vtok_run_params_init(vtok_run_params *p, size_t size);
static inline vtok_run_params vtok_run_default_params(void)
{
    vtok_run_params p;
    vtok_run_params_init(&p, sizeof p);
    return p;
}

/* Run on pixel_values float32 [n, ch, h, w]; every encoder gets these same
 * pixels. rp may be NULL (no conditioning). Returns 0 or a negative code
 * (vtok_recipe_ctx_errmsg says why). */
int vtok_recipe_run(vtok_recipe_ctx *c, const float *pixels, int64_t n, int64_t ch, int64_t h,
                    int64_t w, const vtok_run_params *rp);

/* Run on decoded images: each encoder's pixels come from its image processor
 * as the recipe configures it (e.g. LLaVA-1.5's pad to square). */
int vtok_recipe_run_images(vtok_recipe_ctx *c, const vtok_image *images, int64_t n,
                           const vtok_run_params *rp);

/* The tokens of the last run, [n, tokens, d_out]; or, for a run whose images
 * give different token counts (ragged: high-resolution slicing, token
 * selection), all of them one image after another, [total_tokens, d_out].
 * Valid until the next run or vtok_recipe_ctx_free on c. */
int vtok_recipe_get_output(vtok_recipe_ctx *c, vtok_view *out);

/* Image i's tokens of the last run, [tokens_i, d_out] (a view into the
 * output, same lifetime): the way to read ragged runs, and any run. */
int vtok_recipe_get_image_output(vtok_recipe_ctx *c, int64_t i, vtok_view *out);

/* The discrete ids of the last run, [n, ids_per_image] int64 in [0, vocab),
 * for recipes whose connector quantises (vtok_recipe_info.ids_per_image > 0;
 * VTOK_EUNSUPPORTED otherwise). *ids is valid as vtok_recipe_get_output. */
int vtok_recipe_get_ids(vtok_recipe_ctx *c, const int64_t **ids, int64_t *n, int64_t *per_image);

/* The inverse of a quantising recipe (vtok_recipe_info.can_detokenize):
 * ids [n, per_image] -> the connector's decoder output, read with
 * vtok_recipe_get_output / vtok_recipe_get_stage as after a run (e.g.
 * generation embeddings [n, 77, 768] for an image generator). Ids outside
 * [0, vocab) or a wrong per_image are refused (VTOK_EINVAL / VTOK_ESHAPE,
 * one line in vtok_recipe_ctx_errmsg) before anything runs. */
int vtok_recipe_detokenize(vtok_recipe_ctx *c, const int64_t *ids, int64_t n, int64_t per_image);

/* Stage i of the last run (encoder hidden states, selections, connector
 * steps; the last stage is the output), with its name ("vit", "select",
 * "projector", ...). Returns VTOK_EINVAL past the last stage. Same lifetime
 * as vtok_recipe_get_output; *name lives as long as c. */
int vtok_recipe_get_stage(vtok_recipe_ctx *c, int i, const char **name, vtok_view *out);

/*
 * Routing recipes (MoVA): an LLM picks the vision experts that run. The
 * flow is two runs of one context on the same image and question
 * (vtok_run_params.prompt = the question, for the adapter's text encoder):
 *   1. run with no routing (cond NULL): stage "routing" holds the coarse
 *      tokens of the routing prompt (MoVA: 144, the 576 output tokens
 *      without experts, 2 x 2 averaged);
 *   2. the LLM answers vtok_recipe_routing_prompt() + question (the
 *      routing tokens at the image placeholder; greedy, a few tokens);
 *      vtok_recipe_parse_routing turns the answer into routing weights
 *      (vtok_recipe_route, below the LLM API, does steps 1 and 2);
 *   3. run again with cond = those weights, n_cond = vtok_recipe_n_experts:
 *      the chosen experts load (once) and run; the output is the answer
 *      pass's tokens.
 * An expert whose weight is 0 is neither loaded nor run; cond may also be
 * set by hand (vtok run --experts A,C).
 */
int64_t     vtok_recipe_n_experts(const vtok_recipe *r);   /* 0: the recipe does not route */
const char *vtok_recipe_expert_name(const vtok_recipe *r, int64_t k); /* NULL past the end */
/* The text put before the question in the routing prompt (MoVA's
 * ROUTING_PROMPT, ending "Question:\n"), or NULL. */
const char *vtok_recipe_routing_prompt(const vtok_recipe *r);
/* Routing weights [n] (n = vtok_recipe_n_experts) from the LLM's routing
 * answer, as the original parser reads it (MoVA: the text before the third
 * comma; expert k is on when its letter 'A' + k occurs in it). Returns how
 * many experts are on, or a negative code for bad arguments. */
int64_t     vtok_recipe_parse_routing(const vtok_recipe *r, const char *answer, float *weights,
                                      int64_t n);

/* The pixels encoder `enc` (recipe order) ran on in the last
 * vtok_recipe_run_images, [items, 3, h, w] (a slicing encoder: every tile,
 * each image's base view then its crops), with the encoder's name.
 * VTOK_EMISSING when that run made none for it (given pixels, or it shares
 * another encoder's). Same lifetime as vtok_recipe_get_output. */
int vtok_recipe_get_pixels(vtok_recipe_ctx *c, int enc, const char **name, vtok_view *out);

/* ------------------------------------------------------------------ npy -- */

/* Read a NumPy .npy file of float32 (or float64/float16, converted) in C
 * order. *data is allocated by vtok; free it with vtok_free. shape has room
 * for 8 dims. Returns 0 or a negative code (st says why; st may be NULL). */
int vtok_npy_load(const char *path, float **data, int *n_dims, int64_t shape[8], vtok_status *st);

/* Write float32 data as a .npy file ('<f4', C order). */
int vtok_npy_save(const char *path, const float *data, int n_dims, const int64_t *shape,
                  vtok_status *st);

/* Integer arrays (discrete ids): read '<i8' or '<i4' (widened) into int64
 * (free *data with vtok_free), write int64 as '<i8'. */
int vtok_npy_load_i64(const char *path, int64_t **data, int *n_dims, int64_t shape[8],
                      vtok_status *st);
int vtok_npy_save_i64(const char *path, const int64_t *data, int n_dims, const int64_t *shape,
                      vtok_status *st);

/* ------------------------------------------------------------- weights -- */

/* Convert any weights file vtok can open (.safetensors, a sharded index, or a
 * PyTorch checkpoint .pth/.pt/.bin/.ckpt, read without executing pickle code)
 * to one safetensors file: same names, dtypes and shapes, tensors sorted by
 * name, "__metadata__": {"format": "pt"}. Returns the number of tensors
 * written (>= 0) or a negative code (st says why; st may be NULL). */
int vtok_convert_to_safetensors(const char *in_path, const char *out_path, vtok_status *st);

/* Free memory vtok allocated for the caller. NULL is a no-op. */
void vtok_free(void *p);

/* ------------------------------------------------------------------ LLM -- */

/*
 * Decoder LLMs (LLaMA-2 / Vicuna, LLaMA-3, Mistral, Qwen2) from Hugging Face
 * folders: config.json + safetensors (sharded or not) + tokenizer.json
 * (+ tokenizer_config.json: special tokens, chat_template). The numerics are
 * transformers' (float32 is the parity path; bf16 / int8 / q4 weights via
 * vtok_model_params.dtype).
 *
 * Thread safety: a vtok_llm is read-only after load and may be shared by
 * threads; a vtok_llm_ctx (one sequence: KV cache, work memory, sampler)
 * belongs to one thread at a time. Pointers returned by a context are valid
 * until its next call.
 */
typedef struct vtok_llm_ctx vtok_llm_ctx;

/* path: the model folder (or its config.json); the tokenizer is read from
 * the same folder. p: dtype, n_threads and threadpool as for vision models
 * (NULL = defaults). NULL on error with *st filled. */
vtok_llm *vtok_llm_load(const char *path, const vtok_model_params *p, vtok_status *st);
void      vtok_llm_free(vtok_llm *m); /* after every context made from it */

typedef struct vtok_llm_info {
    const char *arch;          /* "llama", "mistral", "qwen2"                           */
    const char *compute_dtype; /* "f32", "bf16", "int8", "q4"                           */
    int64_t vocab;             /* logits per position (config vocab_size)              */
    int64_t hidden_size;       /* rows of embeddings spliced in (inputs_embeds)         */
    int64_t n_layers, n_heads, n_kv_heads, head_dim;
    int64_t max_tokens;        /* positions a context may hold at most                  */
    int32_t bos, eos;          /* token ids, -1 if the tokenizer has none               */
    int     has_chat_template; /* tokenizer_config.json has one                         */
    int     reserved0;
} vtok_llm_info;
int vtok_llm_get_info(const vtok_llm *m, vtok_llm_info *info);

/* Text <-> ids, as Hugging Face tokenizers (encode: add_special applies the
 * post-processor, e.g. BOS). Both return the full count (ids / bytes) and
 * write at most cap (like snprintf: cap 0 to size a buffer; decode writes a
 * NUL when cap > 0), or a negative code. */
int64_t vtok_tokenize(const vtok_llm *m, const char *text, size_t len, int add_special,
                      int32_t *ids, int64_t cap, vtok_status *st);
int64_t vtok_detokenize(const vtok_llm *m, const int32_t *ids, int64_t n, int skip_special,
                        char *buf, size_t cap, vtok_status *st);
/* The vocabulary entry of id (as stored: "Ġthe", "▁the"), NULL if none. */
const char *vtok_token_piece(const vtok_llm *m, int32_t id);
/* The id of a vocabulary entry or added token, -1 if absent. */
int32_t vtok_token_id(const vtok_llm *m, const char *piece);

/* A chat rendered to prompt text. template_name: NULL for the folder's
 * tokenizer_config.json chat_template, or a built-in format ("vicuna_v1",
 * ...: vtok_chat_template_name). *out is allocated (free with vtok_free). */
typedef struct vtok_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content; /* UTF-8                         */
} vtok_chat_msg;
int vtok_chat_render(const vtok_llm *m, const char *template_name, const vtok_chat_msg *msgs,
                     int64_t n, int add_generation_prompt, char **out, vtok_status *st);
/* Whether tokenizing a rendered chat prompt still has to add the
 * tokenizer's special tokens (BOS): format NULL (the folder's own template,
 * which writes them as text) -> 0; a built-in format -> 1 unless the text
 * already begins with the BOS piece, except "mova_llama3" -> 1 (MoVA
 * tokenizes its prompt, which starts with a literal <|begin_of_text|>, with
 * the special tokens on: Llama-3's tokenizer gives two BOS, as MoVA does). */
int vtok_chat_add_special(const vtok_llm *m, const char *format, const char *text);

/* The format a chat is rendered in, as vtok_chat_render takes it: format
 * NULL or "template" -> NULL (the folder's chat_template) when the folder
 * has one, else "vicuna_v1"; any other name as given. One rule for the CLI,
 * the server, the bindings and vtok_chat_prompt. */
const char *vtok_chat_format_name(const vtok_llm *m, const char *format);

/* Built-in chat formats: the i-th name, NULL past the last. */
const char *vtok_chat_template_name(int i);

/* A context: one sequence of up to n_ctx positions (0 = min(max_tokens,
 * 4096)). p as for vision contexts: threads, pool, mem_limit, callbacks
 * (abort_cb is polled before each layer of an eval). */
vtok_llm_ctx *vtok_llm_ctx_new(vtok_llm *m, int64_t n_ctx, const vtok_ctx_params *p,
                               vtok_status *st);
void          vtok_llm_ctx_free(vtok_llm_ctx *c);
void          vtok_llm_reset(vtok_llm_ctx *c);             /* forget the sequence  */
int64_t       vtok_llm_n_past(const vtok_llm_ctx *c);      /* positions held       */
/* Keep the first n positions held (0 <= n <= n_past) and forget the rest,
 * with their ids in the repetition penalty's history: a conversation whose
 * next prompt starts as the last one did evaluates only the new part. The
 * logits are gone until the next eval. One-sequence contexts only. */
int           vtok_llm_truncate(vtok_llm_ctx *c, int64_t n);
const char   *vtok_llm_errmsg(const vtok_llm_ctx *c);

/* New positions after those held: n ids, or rows of hidden_size floats
 * (inputs_embeds: how image rows enter), or ids with some positions taken
 * from embeds (embed_pos[k] < n gets row k). */
typedef struct vtok_llm_batch {
    int64_t        n;
    const int32_t *ids;       /* n ids, or NULL: every row from embeds       */
    const float   *embeds;    /* rows of hidden_size floats, or NULL          */
    const int64_t *embed_pos; /* with ids: the positions of the embeds rows   */
    int64_t        n_embeds;  /* rows in embeds                               */
} vtok_llm_batch;

/* Run the batch through the model (a whole prompt at once, or one token)
 * and keep its positions. Afterwards vtok_llm_logits gives the last
 * position's logits [vocab]. Refuses ids out of range and batches past the
 * context (VTOK_ELIMIT: "N positions held + M new > n_ctx"). */
int          vtok_llm_eval(vtok_llm_ctx *c, const vtok_llm_batch *b);
/* vtok_llm_eval of b as the whole sequence from position 0, keeping what c
 * already holds of it: the longest prefix of b whose ids equal the ids c
 * holds there (as recorded by vtok_llm_eval and vtok_llm_generate; an
 * embedding row matches an embedding row only when same_embeds says the
 * caller knows them to be the same rows) stays in the KV cache, c is
 * truncated to it and the rest of b evaluated; b's last position is always
 * evaluated (its logits). *reused (may be NULL) gets the positions kept: a
 * chat whose next prompt repeats the last one's prompt and answer runs only
 * what is new. One-sequence contexts. */
int          vtok_llm_eval_reuse(vtok_llm_ctx *c, const vtok_llm_batch *b, int same_embeds,
                                 int64_t *reused);
const float *vtok_llm_logits(const vtok_llm_ctx *c);

/*
 * Batches: n_seq sequences in one context, run together as transformers
 * runs a batch left-padded to the longest with its attention_mask
 * (generate(): position_ids = cumsum(mask) - 1; the pads are masked out for
 * every query, so vtok never computes them). A sequence's logits are those
 * it gets alone, except with rope_scaling "dynamic", whose scaling the batch
 * shares, taken from its largest position, as in transformers. The row-wise
 * work is one matmul over all sequences' rows (a decode step: n_seq rows),
 * which reads each weight once per step for every sequence.
 *   vtok_llm_ctx_new_batch: 1 to 4096 sequences of up to n_ctx positions
 *     each (n_ctx 0 as vtok_llm_ctx_new); n_seq 1 is vtok_llm_ctx_new.
 *   vtok_llm_eval_batch: n_ids[i] >= 1 ids for each sequence i, after its
 *     held positions. vtok_llm_eval_seqs: the same from one vtok_llm_batch
 *     per sequence (ids, inputs_embeds rows, or ids with rows: images).
 *   vtok_llm_decode_batch: one id per sequence (ids[n_seq]), a decode step.
 *   All refuse (no sequence changed) an empty sequence, ids outside the
 *   vocabulary and a sequence past n_ctx, naming the sequence.
 *   vtok_llm_logits_seq: sequence seq's last-position logits [vocab] after
 *     the last eval / decode (NULL if none or seq out of range).
 * Generate with vtok_llm_generate_batch (below). On a context of n_seq > 1,
 * vtok_llm_eval and vtok_llm_generate refuse;
 * vtok_llm_logits and vtok_llm_n_past give sequence 0's.
 */
vtok_llm_ctx *vtok_llm_ctx_new_batch(vtok_llm *m, int64_t n_seq, int64_t n_ctx,
                                     const vtok_ctx_params *p, vtok_status *st);
int64_t       vtok_llm_n_seq(const vtok_llm_ctx *c);
int64_t       vtok_llm_n_past_seq(const vtok_llm_ctx *c, int64_t seq);
int           vtok_llm_eval_batch(vtok_llm_ctx *c, const int32_t *const *ids,
                                  const int64_t *n_ids);
int           vtok_llm_eval_seqs(vtok_llm_ctx *c, const vtok_llm_batch *seqs);
int           vtok_llm_decode_batch(vtok_llm_ctx *c, const int32_t *ids);
const float  *vtok_llm_logits_seq(const vtok_llm_ctx *c, int64_t seq);

/*
 * A prompt with images, spliced as a recipe's layout says (vtok_recipe_info):
 * text holds layout->placeholder once per image, image k giving
 * image_tokens[k] tokens (vtok_recipe_get_image_output's row count; the
 * same T for every image with the fill and id_format layouts):
 *   id_format set (SEED): each placeholder becomes before + the image's T ids
 *     written as vocabulary tokens + after, and the whole text is tokenized:
 *     b gets ids only (image_ids: n_images * T ids);
 *   fill set (GVT, Shikra/COMM): each placeholder becomes before + fill x T +
 *     after, the whole text is tokenized, and each image's run of T fill
 *     tokens becomes its embedding positions (GVT modeling_gvt.py
 *     _decorate_image_embeds);
 *   neither (LLaVA): the text between placeholders is tokenized piece by
 *     piece and joined with T embedding positions per image, the BOS kept
 *     once (LLaVA llava/mm_utils.py tokenizer_image_token).
 * add_special: the tokenizer's post-processor (BOS) as for vtok_tokenize.
 * b->ids and b->embed_pos are allocated (vtok_llm_batch_free); set b->embeds
 * to the recipe's output rows (image 0's T rows first) before vtok_llm_eval.
 */
/* The LLM's input embeddings (model.embed_tokens) of n ids into out
 * [n, hidden_size]: the rows a prompt's ids become. VTOK_EINVAL for an id
 * outside the vocabulary. */
int  vtok_llm_embed(const vtok_llm *m, const int32_t *ids, int64_t n, float *out,
                    vtok_status *st);

int  vtok_llm_prompt(const vtok_llm *m, const vtok_recipe_info *layout, const char *text,
                     int64_t n_images, const int64_t *image_tokens, const int64_t *image_ids,
                     int add_special, vtok_llm_batch *b, vtok_status *st);
void vtok_llm_batch_free(vtok_llm_batch *b);
/* b's ids without its image positions (embed_pos): what a recipe that
 * selects by the prompt (vtok_recipe_info.needs_text, SliME) takes as
 * vtok_run_params.text_ids. The image counts b was built with do not change
 * them. Writes at most cap ids; returns how many there are (may exceed cap),
 * or VTOK_EINVAL. */
int64_t vtok_llm_batch_text_ids(const vtok_llm_batch *b, int32_t *ids, int64_t cap);

/* The prompt of one question about n_images images as `vtok chat` builds it
 * (one code path for the CLI, the server and the bindings): a user turn of
 * one layout->placeholder per image, "\n" (none for seed_llama*), then the
 * question, rendered in `format` (NULL or "template": the folder's chat
 * template, or "vicuna_v1" when it has none; a built-in name; "raw": the
 * question is the whole prompt, placeholders in it), BOS as
 * vtok_chat_add_special says, tokenized by vtok_llm_prompt with
 * image_tokens / image_ids. *text (may be NULL) gets the rendered text
 * (vtok_free; NULL for raw). */
int vtok_chat_prompt(const vtok_llm *m, const vtok_recipe_info *layout, const char *format,
                     const char *question, int64_t n_images, const int64_t *image_tokens,
                     const int64_t *image_ids, vtok_llm_batch *b, char **text,
                     vtok_status *st);

/* Step 2 of a routing recipe (MoVA), as `vtok chat` runs it: the recipe runs
 * on the images with no routing and prompt = question (rp, may be NULL, for
 * image_names), then the LLM context lc reads the chat prompt
 * (vtok_chat_prompt's format; "raw" counts as the folder's template) of
 * vtok_recipe_routing_prompt() + question with each image's "routing" rows
 * at its placeholder, and answers greedily in at most 16 ids (MoVA's
 * max_new_tokens); the answer, whitespace-stripped as Python's strip(),
 * goes through vtok_recipe_parse_routing into weights[n_weights] (n_weights
 * = vtok_recipe_n_experts). lc keeps what it already holds of the routing
 * prompt (vtok_llm_eval_reuse: a shared system prompt is not run again).
 * Afterwards c holds the images' encoder states (step 3: run with cond =
 * weights and same_images = 1) and lc the routing prompt and answer. out (may be NULL) gets the details. Returns 0 or a
 * negative code (st says why). */
typedef struct vtok_routing {
    char    *answer;     /* the stripped answer text (vtok_routing_free)         */
    int32_t  ids[16];    /* the ids generated                                     */
    int64_t  n_ids;
    int32_t *prompt_ids; /* the routing prompt's positions, -1 at image rows     */
    int64_t  n_prompt;   /*   (lc holds them, then ids[0 .. n_ids - 1))           */
    double   recipe_ms;  /* the coarse run                                        */
    double   llm_ms;     /* prompt + answer                                       */
} vtok_routing;
int  vtok_recipe_route(vtok_recipe_ctx *c, vtok_llm_ctx *lc, const vtok_image *images, int64_t n,
                       const vtok_run_params *rp, const char *question, const char *format,
                       float *weights, int64_t n_weights, vtok_routing *out, vtok_status *st);
void vtok_routing_free(vtok_routing *r); /* NULL is a no-op; zeroes *r */


/* The reverse of id_format: the image ids in ids (e.g. generated by an LLM
 * that writes images, as SEED-LLaMA does). Each id whose token text is
 * exactly layout->id_format of a code in [0, layout->vocab) gives that code,
 * in order; other ids are skipped. Writes at most cap codes; returns how many
 * there are (which may exceed cap), or a negative VTOK_E* (VTOK_EINVAL: the
 * layout has no id_format). Feed groups of layout->ids_per_image codes to
 * vtok_recipe_detokenize. */
int64_t vtok_llm_image_ids(const vtok_llm *m, const vtok_recipe_info *layout, const int32_t *ids,
                           int64_t n, int64_t *codes, int64_t cap, vtok_status *st);

typedef struct vtok_gen_params {
    size_t   size;               /* sizeof(vtok_gen_params): set by the default params   */
    int64_t  max_tokens;         /* new tokens at most (default 256)                      */
    int      greedy;             /* 1: argmax, as do_sample=False (default 1)             */
    float    temperature;        /* sampling: > 0 (default 1)                             */
    int64_t  top_k;              /* 0 = off (default)                                     */
    float    top_p;              /* (0, 1], 1 = off (default)                             */
    float    min_p;              /* [0, 1], 0 = off (default)                             */
    float    repetition_penalty; /* > 0, 1 = off (default)                                */
    int      reserved0;
    uint64_t seed;               /* sampling generator seed (default 0)                   */
    const int32_t *stop_ids;     /* stop after emitting one of these; NULL: the EOS id    */
    int64_t  n_stop_ids;
    const char *const *stop_strings; /* stop when the text ends with one (NULL: none)     */
    int64_t  n_stop_strings;
    /* Called with each new token and its text as it is completed (UTF-8; a
     * token that ends mid-character is held back until the character is
     * whole); nonzero stops generation. NULL: no streaming. */
    int    (*on_token)(void *user, int32_t id, const char *text, size_t len);
    void    *user;
    /* The same naming the sequence (vtok_llm_generate_batch; used instead of
     * on_token when set, also for one sequence, as seq 0); nonzero stops
     * that sequence only. */
    int    (*on_token_seq)(void *user, int64_t seq, int32_t id, const char *text, size_t len);
} vtok_gen_params;

void vtok_gen_params_init(vtok_gen_params *p, size_t size);
static inline vtok_gen_params vtok_gen_default_params(void)
{
    vtok_gen_params p;
    vtok_gen_params_init(&p, sizeof p);
    return p;
}

/* Generate after the positions held (evaluate the prompt first with
 * vtok_llm_eval): up to max_tokens ids into out (cap entries), stopping at a
 * stop id (which is written), a stop string, on_token's request or the
 * context's end (VTOK_ELIMIT after writing what fit). *n_out: ids written.
 * Returns 0 or a code (the ids before the failure are in out). */
int vtok_llm_generate(vtok_llm_ctx *c, const vtok_gen_params *p, int32_t *out, int64_t cap,
                      int64_t *n_out);

/* Generate for every sequence of a batch context (after vtok_llm_eval_batch
 * / _seqs), all in step: each step samples every running sequence from its
 * own logits and runs those still running as one decode call (M = running
 * sequences: the weights are read once per step for all of them); a
 * sequence that stops (stop id or string, on_token_seq, max_tokens) sits
 * out the later steps. Sequence i: up to max_tokens ids into out + i * cap,
 * n_out[i] written (n_out has n_seq entries); it samples with seed + i, its
 * repetition penalty sees its own prompt ids and generated ids. A sequence
 * that fills its context stops there and the others go on; VTOK_ELIMIT is
 * then returned at the end, naming it. Stop rules and streaming as
 * vtok_llm_generate (stream a batch with on_token_seq). On a one-sequence
 * context this is vtok_llm_generate. */
int vtok_llm_generate_batch(vtok_llm_ctx *c, const vtok_gen_params *p, int32_t *out,
                            int64_t cap, int64_t *n_out);

/* ----------------------------------------------------------------- BERT -- */

/*
 * BERT text encoders (Hugging Face BertModel: bert-base/large-uncased and
 * the like) from a folder: config.json + weights (model.safetensors, shards
 * or pytorch_model.bin; BertModel's tensor names or the released "bert."
 * prefixed ones of BertForPreTraining / BertForMaskedLM) + tokenizer.json
 * (WordPiece; its post-processor adds [CLS] ... [SEP]). float32 is the
 * parity path (transformers' modeling_bert.py); see docs/BERT.md.
 *
 * Thread safety: a vtok_bert is read-only after load and may be shared by
 * threads; a vtok_bert_ctx (work memory and the last result) belongs to one
 * thread at a time. Pointers returned by a context are valid until its next
 * encode or vtok_bert_ctx_free.
 */
typedef struct vtok_bert     vtok_bert;
typedef struct vtok_bert_ctx vtok_bert_ctx;

/* What vtok_bert_encode writes (vtok_bert_dim floats). */
typedef enum vtok_bert_pooling {
    VTOK_BERT_CLS    = 0, /* last_hidden_state[0]: the [CLS] token's row              */
    VTOK_BERT_POOLER = 1, /* pooler_output = tanh(pooler.dense(CLS)); VTOK_EUNSUPPORTED */
                          /*   for a checkpoint without a pooler                        */
    VTOK_BERT_MEAN   = 2, /* mean of last_hidden_state over the tokens, weighted by the */
                          /*   attention mask (all ones: one unpadded sequence)         */
} vtok_bert_pooling;

/* path: the folder (or its config.json). p: dtype, n_threads, threadpool,
 * use_mmap as for vision models (NULL = defaults). Missing tensors are all
 * named in one message. NULL on error with *st filled. */
vtok_bert *vtok_bert_load(const char *path, const vtok_model_params *p, vtok_status *st);
void       vtok_bert_free(vtok_bert *m); /* after every context; NULL is a no-op */

int64_t vtok_bert_dim(const vtok_bert *m);        /* hidden_size                       */
int64_t vtok_bert_max_tokens(const vtok_bert *m); /* max_position_embeddings           */
int     vtok_bert_has_pooler(const vtok_bert *m); /* 1 if VTOK_BERT_POOLER is possible */

/* Ids of text as the encoder reads them ([CLS] ... [SEP], not truncated):
 * returns the count, writing at most cap (cap 0 sizes), or a negative code. */
int64_t vtok_bert_tokenize(const vtok_bert *m, const char *text, int32_t *ids, int64_t cap,
                           vtok_status *st);

/* A context (p as for vision contexts: threads, pool, mem_limit, callbacks;
 * abort_cb is polled before each layer). NULL on error with *st filled. */
vtok_bert_ctx *vtok_bert_ctx_new(vtok_bert *m, const vtok_ctx_params *p, vtok_status *st);
void           vtok_bert_ctx_free(vtok_bert_ctx *c); /* NULL is a no-op */
const char    *vtok_bert_errmsg(const vtok_bert_ctx *c);

/*
 * Encode UTF-8 text (NUL-terminated): tokenize, run the encoder, and write
 * the pooling's vtok_bert_dim floats to out (out may be NULL: read the
 * states with vtok_bert_last_hidden). A text of more tokens than
 * max_position_embeddings fails with VTOK_ELIMIT unless truncate is nonzero:
 * then the text's tokens are cut so that they fit with [CLS]/[SEP], as
 * transformers' tokenizer(text, truncation=True, max_length=max_tokens).
 * A text giving no tokens at all (no post-processor, empty text) is
 * VTOK_EINVAL. Returns 0 or a negative code (vtok_bert_errmsg says why).
 */
int vtok_bert_encode(vtok_bert_ctx *c, const char *text, int pooling, int truncate, float *out);

/* The same from ids (as vtok_bert_tokenize gives; each in [0, vocab_size),
 * 1 <= n <= max_tokens). */
int vtok_bert_encode_ids(vtok_bert_ctx *c, const int32_t *ids, int64_t n, int pooling,
                         float *out);

/* last_hidden_state of the last encode, [1, tokens, hidden], and the ids it
 * read (*n of them). Valid until the next encode on c. */
int vtok_bert_last_hidden(const vtok_bert_ctx *c, vtok_view *out);
int vtok_bert_get_ids(const vtok_bert_ctx *c, const int32_t **ids, int64_t *n);

/* ------------------------------------------------------------ CLIP text -- */

/*
 * CLIP's text tower (CLIPModel.get_text_features) and tokenizer, from a full
 * CLIPModel folder (config.json with text_config, safetensors with
 * text_model.* / text_projection.weight / logit_scale, tokenizer.json); the
 * same folder's vision side loads with vtok_model_load (VTOK_OUT_IMAGE_EMBEDS
 * is image_embeds). Zero-shot: L2-normalise both, logits =
 * exp(logit_scale) * cosine, as CLIPModel's logits_per_image. A vision-only
 * folder is VTOK_EUNSUPPORTED ("no text tower"). Read-only after load:
 * share it between threads; each call plans its own work memory.
 */
typedef struct vtok_text_model vtok_text_model;

/* p: dtype must be f32 (NULL = defaults). NULL on error with *st filled. */
vtok_text_model *vtok_text_model_load(const char *path, const vtok_model_params *p,
                                      vtok_status *st);
void    vtok_text_model_free(vtok_text_model *m);            /* NULL is a no-op */
int64_t vtok_text_model_dim(const vtok_text_model *m);       /* projection_dim; 0 if none */
float   vtok_text_model_logit_scale(const vtok_text_model *m); /* stored (log) value */

/* The ids the tower reads for text (<|startoftext|> ... <|endoftext|>).
 * Longer than max_position_embeddings (77): VTOK_ELIMIT, or with truncate
 * the text's ids are cut to fit (HF truncation=True, max_length=77).
 * Returns the count, writing at most cap (cap 0 sizes), or a code. */
int64_t vtok_text_tokenize(const vtok_text_model *m, const char *text, int truncate,
                           int32_t *ids, int64_t cap, vtok_status *st);

/* text_embeds of one UTF-8 text into out_projected [vtok_text_model_dim]
 * (not normalised, as get_text_features). cp: threads / pool / mem_limit /
 * abort_cb as for a vision context (NULL = defaults). Returns 0 or a code. */
int vtok_text_encode(const vtok_text_model *m, const char *text, float *out_projected,
                     int truncate, const vtok_ctx_params *cp, vtok_status *st);

/* ------------------------------------------------------------- platform -- */

/* Force the plain-C reference kernels (1) or allow ISA-specific ones (0).
 * Process-wide; call before creating contexts. The environment variable
 * VTOK_FORCE_REF=1 has the same effect. */
void vtok_force_reference_kernels(int on);

/* Name of the kernel set in use: "ref", "avx2", "avx512". Static string. */
const char *vtok_kernel_name(void);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* VTOK_H */
