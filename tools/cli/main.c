/*
 * vtok - command-line front end. Uses only the public header.
 *
 *   vtok encode --model DIR --pixels X.npy [--layers all|I,J,...] [--threads N] --out DIR
 *   vtok run    --recipe NAME|FILE --model DIR (--image FILE... | --pixels X.npy) --out DIR
 *               [--dump DIR] [--threads N] [--dtype f32|bf16|int8] [--iters N]
 *   vtok tokenize   (as run; a quantising recipe: writes ids.npy and prints the ids)
 *   vtok detokenize --recipe NAME|FILE --model DIR --ids ids.npy --out DIR
 *   vtok info   --model DIR
 *   vtok version
 *
 * Exit status 0 on success; otherwise one line on stderr says what went wrong.
 */
#include "vtok.h"
#include "llm_cli.h"
#include "embed_text.h"
#include "outset.h"
#include "serve.h"
#include "batch.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_LAYER_ARGS 1024
#define MAX_IMAGES 4096

#define die(...) cli_err("vtok: ", __VA_ARGS__)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vtok <command> [options]\n"
            "\n"
            "commands:\n"
            "  encode --model DIR (--pixels X.npy | --image FILE ...) --out DIR\n"
            "         [--layers all|I,J,...] [--threads N]\n"
            "         run the vision encoder; writes last_hidden_state.npy, pooler_output.npy,\n"
            "         image_embeds.npy and hidden_states_NN.npy (float32, batch first)\n"
            "  preprocess --model DIR IMAGE ... --out pixel_values.npy [--fast] [--exif]\n"
            "         decode + preprocess as the folder's preprocessor_config.json says;\n"
            "         --fast lets JPEG decoding downscale in the DCT domain (not Pillow-exact);\n"
            "         --exif applies the EXIF orientation (HF does not; off by default)\n"
            "  run    --recipe NAME|FILE --model DIR (--image FILE ... | --pixels X.npy) --out DIR\n"
            "         [--dump DIR] [--threads N] [--profile] [-p TEXT [--llm DIR] [--format F]]\n"
            "         [--experts A,C|names|none]\n"
            "         the LLM-ready tokens of a recipe (shipped: see `vtok recipes`; or a JSON\n"
            "         file): writes embeddings.npy [N, T, d_llm] and layout.json; --dump writes\n"
            "         every stage (vit.npy, select.npy, projector.npy, ...) and pixels_ENC.npy;\n"
            "         --dtype f32|bf16|int8 converts every Linear (encoders and connector);\n"
            "         --iters N times N runs after a warm-up and prints the median ms per image;\n"
            "         --profile: preprocess / encoder / connector ms; ragged recipes (llava-next,\n"
            "         slime) write [all tokens, d_llm] and per-image counts; slime selects by\n"
            "         the question: -p TEXT, with the LLM of --llm DIR (default: --model);\n"
            "         mova reads -p and runs the experts of --experts, or of the LLM's routing\n"
            "         answer (layout.json: experts, routing_answer)\n"
            "  tokenize --recipe NAME|FILE --model DIR (--image FILE ... | --pixels X.npy) --out DIR\n"
            "         [--dump DIR] [--dtype D] [--threads N] [--iters N]\n"
            "         discrete ids of a quantising recipe (seed): writes ids.npy int64 [N, T]\n"
            "         and prints them, one line per image\n"
            "  detokenize --recipe NAME|FILE --model DIR --ids ids.npy --out DIR\n"
            "         [--dump DIR] [--dtype D] [--threads N] [--iters N]\n"
            "         ids back to embeddings (seed: generation_embeddings.npy [N, 77, 768])\n"
            "  generate --llm DIR -p TEXT [--chat [FORMAT]] [--max-tokens N] [--temperature T]\n"
            "         [--top-k K] [--top-p P] [--min-p M] [--repetition-penalty R] [--seed S]\n"
            "         [--stop STR]... [--dtype f32|bf16|int8|q4] [--ctx N] [--threads N] [--json]\n"
            "         text generation with a LLaMA / Mistral / Qwen2 folder, streamed to stdout;\n"
            "         --chat wraps TEXT as a user turn in the folder's chat template (or a\n"
            "         built-in FORMAT such as vicuna_v1); greedy unless --temperature > 0\n"
            "  chat   --recipe NAME|FILE --model DIR [--llm DIR] --image FILE... [-p TEXT]\n"
            "         [--format NAME|template|raw] [--out DIR] [--experts A,C]\n"
            "         [generation options as generate]\n"
            "         ask about images: the recipe's tokens spliced into the LLM prompt as its\n"
            "         layout says; the question (-p, or stdin) becomes a user turn after one\n"
            "         placeholder per image, in the folder's chat template (vicuna_v1 without\n"
            "         one); raw: TEXT is the whole prompt with its placeholders; a recipe that\n"
            "         writes ids (seed): the answer's image ids to DIR/ids.npy (detokenize);\n"
            "         no -p on a terminal, or -i: a conversation, one turn per line of stdin\n"
            "         (the KV cache of earlier turns kept); --llm defaults to --model (LLaVA,\n"
            "         SliME and llava-hf checkpoints hold their LLM)\n"
            "  tokenize-text --llm DIR [--no-special] TEXT\n"
            "         the ids and vocabulary pieces of TEXT, one per line\n"
            "  embed-text --model DIR (--text TEXT | --text-file F) [--pool cls|pooler|mean]\n"
            "         [--out F.npy] [--hidden H.npy] [--truncate] [--dtype D] [--threads N] [--json]\n"
            "         a BERT text embedding (BertModel folder + tokenizer.json): printed, or\n"
            "         float32 .npy [dim]; --hidden writes last_hidden_state [1, tokens, dim]\n"
            "  zeroshot --model CLIPDIR --image FILE --labels \"a cat,a dog\"\n"
            "         [--template \"a photo of {}\"] [--truncate] [--threads N] [--json]\n"
            "         CLIP zero-shot: label probabilities, softmax of exp(logit_scale) * cosine\n"
            "  serve  (--model DIR | --recipe NAME --model DIR [--llm DIR]) [--host 127.0.0.1]\n"
            "         [--port 8080] [--api-key KEY] [--max-batch-images N] [--max-wait-ms MS] ...\n"
            "         an HTTP server: OpenAI-shaped /v1/embeddings (images as data URIs),\n"
            "         /v1/tokenize, /v1/detokenize, /v1/chat/completions, /health, /metrics\n"
            "         (vtok serve --help; docs/SERVE.md)\n"
            "  batch  (--model DIR | --recipe NAME --model DIR) --input SPEC --out DIR\n"
            "         [--output K] [--fp16] [--batch N] [--workers N] [--threads N]\n"
            "         [--shard-index I --num-shards N] ...\n"
            "         encode / tokenize whole datasets (WebDataset tars, folders, lists), one\n"
            "         .npy + keys per shard, resumable, by rank (vtok batch --help; docs/BATCH.md)\n"
            "  recipes                list the shipped recipes\n"
            "  info   --model DIR     architecture, sizes, dtype and outputs of a model\n"
            "  bench  --model DIR [--batch N] [--size S] [--threads N] [--iters N]\n"
            "         time the encoder on random pixels; prints median ms/image\n"
            "  convert IN OUT.safetensors\n"
            "         rewrite a weights file (a PyTorch .pth/.pt/.bin/.ckpt checkpoint, read\n"
            "         without executing pickle code, or safetensors) as one safetensors file\n"
            "  version                print the version\n"
            "\n"
            "DIR is a Hugging Face model folder (config.json + *.safetensors).\n"
            "X.npy is float32 pixel_values [N, C, H, W] as an HF image processor makes them;\n"
            "images (JPEG, PNG, WebP, GIF) go through DIR/preprocessor_config.json.\n"
            "VTOK_FORCE_REF=1 forces the plain-C reference kernels.\n");
}

typedef struct {
    const char *model, *pixels, *out, *layers, *dtype, *recipe, *dump, *ids;
    const char *llm, *prompt, *format; /* run: text conditioning (SliME, MoVA) */
    const char *experts;               /* run: MoVA's experts by hand          */
    int         threads, batch, size, iters;
    const char *images[MAX_IMAGES];
    int         n_images;
    int         fast, exif, profile;
} args;

static int parse(int argc, char **argv, args *a)
{
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (k[0] != '-' || !strcmp(k, "--image")) { /* images: positional or --image FILE */
            const char *img = k[0] != '-' ? k : val;
            if (!img)
                return die("option %s needs a value", k);
            if (a->n_images >= MAX_IMAGES)
                return die("too many images (max %s per call)", "4096");
            a->images[a->n_images++] = img;
            i += k[0] != '-' ? 0 : 1;
            continue;
        }
        if (!strcmp(k, "--fast") || !strcmp(k, "--exif") || !strcmp(k, "--profile")) {
            *(!strcmp(k, "--fast") ? &a->fast : !strcmp(k, "--exif") ? &a->exif : &a->profile) = 1;
            continue;
        }
        if (!val)
            return die("option %s needs a value", k);
        if (!strcmp(k, "--model")) a->model = val;
        else if (!strcmp(k, "--pixels")) a->pixels = val;
        else if (!strcmp(k, "--out")) a->out = val;
        else if (!strcmp(k, "--layers")) a->layers = val;
        else if (!strcmp(k, "--dtype")) a->dtype = val;
        else if (!strcmp(k, "--recipe")) a->recipe = val;
        else if (!strcmp(k, "--dump")) a->dump = val;
        else if (!strcmp(k, "--ids")) a->ids = val;
        else if (!strcmp(k, "--llm")) a->llm = val;
        else if (!strcmp(k, "-p") || !strcmp(k, "--prompt")) a->prompt = val;
        else if (!strcmp(k, "--format")) a->format = val;
        else if (!strcmp(k, "--experts")) a->experts = val;
        else if (!strcmp(k, "--threads") || !strcmp(k, "--batch") || !strcmp(k, "--size") ||
                 !strcmp(k, "--iters")) {
            char *end;
            long t = strtol(val, &end, 10);
            if (*end || t < 1 || t > 65536)
                return die("%s: '%s' must be an integer 1..65536", k, val);
            if (!strcmp(k, "--threads")) a->threads = (int)t;
            else if (!strcmp(k, "--batch")) a->batch = (int)t;
            else if (!strcmp(k, "--size")) a->size = (int)t;
            else a->iters = (int)t;
        } else
            return die("unknown option %s (see vtok --help)", k);
        i++;
    }
    return 0;
}

static vtok_model *load_dtype(const char *dir, const char *dtype)
{
    vtok_status st = {0};
    vtok_model_params mp = vtok_model_default_params();
    if (dtype) {
        mp.dtype = vtok_dtype_from_name(dtype);
        if (mp.dtype < 0) {
            die("--dtype %s: expected f32, bf16 or int8", dtype);
            return NULL;
        }
    }
    vtok_model *m = vtok_model_load(dir, &mp, &st);
    if (!m)
        die("%s", st.msg[0] ? st.msg : vtok_strerror(st.code));
    return m;
}

static vtok_model *load(const char *dir)
{
    return load_dtype(dir, NULL);
}

static int cmd_info(const args *a)
{
    if (!a->model)
        return die("%s", "info needs --model DIR");
    vtok_model *m = load(a->model);
    if (!m)
        return 1;
    vtok_model_info i;
    vtok_model_get_info(m, &i);
    printf("arch            %s\n", i.arch);
    printf("model_type      %s\n", i.model_type);
    printf("weights         %s, %lld parameters\n", i.weight_dtype, (long long)i.n_params);
    printf("compute         %s\n", i.compute_dtype);
    printf("hidden_size     %lld\n", (long long)i.hidden_size);
    printf("intermediate    %lld (%s)\n", (long long)i.intermediate_size, i.hidden_act);
    printf("layers          %lld\n", (long long)i.n_layers);
    printf("heads           %lld\n", (long long)i.n_heads);
    printf("image_size      %lld%s\n", (long long)i.image_size, i.any_size ? " (any size)" : "");
    printf("patch_size      %lld\n", (long long)i.patch_size);
    printf("channels        %lld\n", (long long)i.n_channels);
    printf("tokens          %lld prefix + %lld patches\n", (long long)i.n_prefix_tokens,
           (long long)((i.image_size / i.patch_size) * (i.image_size / i.patch_size)));
    printf("layer_norm_eps  %g\n", i.layer_norm_eps);
    printf("outputs         last_hidden_state hidden_states_00..%02lld%s%s\n",
           (long long)i.n_layers, i.has_pooler ? " pooler_output" : "",
           i.projection_dim ? " image_embeds" : "");
    if (i.projection_dim)
        printf("projection_dim  %lld\n", (long long)i.projection_dim);
    printf("kernels         %s\n", vtok_kernel_name());
    vtok_model_free(m);
    return 0;
}

/* Outputs go through the command's output set (outset.h): all or none. */
static int save(const char *dir, const char *name, const vtok_view *v)
{
    vtok_status st = {0};
    /* names come from recipes (encoder names): never a path of their own */
    if (!name[0] || name[0] == '.' || strchr(name, '/'))
        return die("refusing to write output named '%s'", name);
    const char *path = outset_stage(dir, name);
    if (!path)
        return 1;
    if (vtok_npy_save(path, v->data, v->n_dims, v->ne, &st))
        return die("%s/%s: %s", dir, name, st.msg);
    printf("%-22s [", name);
    for (int i = 0; i < v->n_dims; i++)
        printf("%s%lld", i ? ", " : "", (long long)v->ne[i]);
    printf("]\n");
    return 0;
}

/* "all" or a comma list of ints (negative = from the end). */
static int parse_layers(const char *s, int *out, int *n, int *all)
{
    *n = 0;
    *all = 0;
    if (!s)
        return 0;
    if (!strcmp(s, "all")) {
        *all = 1;
        return 0;
    }
    const char *p = s;
    for (;;) { /* I,J,...: a number before every comma and after the last one */
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < -100000 || v > 100000 || (*end && *end != ',') ||
            *n >= MAX_LAYER_ARGS)
            return die("bad --layers '%s' (want all or I,J,...)", s);
        out[(*n)++] = (int)v;
        if (!*end)
            return 0;
        p = end + 1;
    }
}

/*
 * pixel_values for the images, [N, 3, H, W], through the folder's
 * preprocessor_config.json (vtok_preprocess_batch: every image must come out
 * the same size, as stacking in the HF processor requires). *px is freed
 * with vtok_free.
 */
static int images_to_pixels(const char *proc_dir, const char *const *images, int n, int fast,
                            int exif, float **px, int64_t shape[4])
{
    vtok_status st = {0};
    vtok_processor *p = vtok_processor_load(proc_dir, &st);
    if (!p)
        return die("%s", st.msg);
    vtok_image_params ip = vtok_image_default_params();
    ip.exif_orientation = exif;
    ip.jpeg_fast_scale = fast; /* JPEG DCT-domain downscale: faster, not bit-exact with Pillow */
    int rc = vtok_preprocess_batch(p, images, NULL, n, &ip, px, shape, &st);
    vtok_processor_free(p);
    return rc ? die("%s", st.msg) : 0;
}

static int cmd_preprocess(const args *a)
{
    if (!a->model || !a->out || a->n_images == 0)
        return die("%s", "preprocess needs --model DIR, images and --out pixel_values.npy");
    float *px = NULL;
    int64_t shape[4];
    if (images_to_pixels(a->model, a->images, a->n_images, a->fast, a->exif, &px, shape))
        return 1;
    vtok_status st = {0};
    int rc = vtok_npy_save(a->out, px, 4, shape, &st);
    vtok_free(px);
    if (rc)
        return die("%s", st.msg);
    printf("pixel_values [%lld, %lld, %lld, %lld] -> %s\n", (long long)shape[0],
           (long long)shape[1], (long long)shape[2], (long long)shape[3], a->out);
    return 0;
}

static void free_images(vtok_image *imgs, int n);
static double now_ms(void);

/* A folder that is a MoVA expert block rather than an HF vision model
 * (SAM / Vary, Co-DETR: no config.json, or one of block options without a
 * model_type; Pix2Struct / DePlot: model_type pix2struct; a Hugging Face
 * SamModel: model_type sam): its built-in recipe (recipes/sam.json,
 * codetr.json, pix2struct.json) that loads, or NULL; *why says why a folder
 * whose model_type names a block (sam, pix2struct) did not load. */
static vtok_recipe *expert_recipe(const char *model, const char *dtype, vtok_status *why)
{
    char path[4200];
    struct stat sb;
    /* regular files only (stat first: opening a FIFO would block) */
    snprintf(path, sizeof path, "%s/open_clip_config.json", model);
    if (stat(path, &sb) == 0) /* an open_clip tower: the timm family */
        return NULL;
    snprintf(path, sizeof path, "%s/config.json", model);
    const int has_cfg = stat(path, &sb) == 0;
    if (has_cfg && (!S_ISREG(sb.st_mode) || sb.st_size > (1 << 20)))
        return NULL; /* the model loader reports it */
    const char *type = NULL;
    cJSON *cfg = NULL;
    if (has_cfg) {
        FILE *f = fopen(path, "rb");
        char *buf = malloc((size_t)sb.st_size + 1);
        size_t n = f && buf ? fread(buf, 1, (size_t)sb.st_size, f) : 0;
        if (f)
            fclose(f);
        if (buf)
            cfg = cJSON_ParseWithLength(buf, n);
        free(buf);
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
        type = cJSON_IsString(mt) ? mt->valuestring : NULL;
    }
    static const char *const blocks[] = {"sam", "codetr"};
    const char *only = !type ? NULL : !strcmp(type, "pix2struct") ? "pix2struct"
                                    : !strcmp(type, "sam") ? "sam" : "";
    vtok_recipe *r = NULL;
    vtok_recipe_params rp = vtok_recipe_default_params();
    if (only && !only[0]) /* an HF model: its family */
        goto out;
    if (dtype && (rp.dtype = vtok_dtype_from_name(dtype)) < 0)
        goto out;
    for (int i = 0; i < (only ? 1 : 2) && !r; i++) {
        vtok_status st = {0};
        r = vtok_recipe_load(only ? only : blocks[i], model, &rp, &st);
        if (!r && only)
            *why = st;
    }
out:
    cJSON_Delete(cfg);
    return r;
}

/* vtok encode on an expert block: its map as last_hidden_state [N, T, C]. */
static int encode_expert(const args *a, vtok_recipe *r)
{
    vtok_recipe_info ri;
    vtok_recipe_get_info(r, &ri);
    if (!a->n_images) {
        die("%s is a %s expert: it takes images (--image FILE ...), not --pixels", a->model,
            ri.name);
        vtok_recipe_free(r);
        return 1;
    }
    vtok_status st = {0};
    int rc = 1;
    vtok_image *imgs = calloc((size_t)a->n_images, sizeof *imgs);
    vtok_recipe_ctx *c = NULL;
    if (!imgs) {
        vtok_recipe_free(r);
        return die("%s", "out of memory");
    }
    vtok_image_params ip = vtok_image_default_params();
    ip.exif_orientation = a->exif;
    for (int i = 0; i < a->n_images; i++)
        if (vtok_image_load(a->images[i], &ip, &imgs[i], &st)) {
            die("%s", st.msg);
            goto out;
        }
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = a->threads;
    if (!(c = vtok_recipe_ctx_new(r, &cp, &st))) {
        die("%s", st.msg);
        goto out;
    }
    vtok_run_params rp = vtok_run_default_params();
    rp.image_names = a->images;
    double t0 = now_ms();
    if (vtok_recipe_run_images(c, imgs, a->n_images, &rp)) {
        die("%s", vtok_recipe_ctx_errmsg(c));
        goto out;
    }
    double ms = now_ms() - t0;
    vtok_view v;
    if (vtok_recipe_get_output(c, &v) || save(a->out, "last_hidden_state.npy", &v))
        goto out;
    fprintf(stderr, "vtok: %s expert, %d image(s) in %.1f ms (%s kernels)\n", ri.name,
            a->n_images, ms, vtok_kernel_name());
    rc = 0;
out:
    vtok_recipe_ctx_free(c);
    vtok_recipe_free(r);
    free_images(imgs, a->n_images);
    return rc;
}

static int cmd_encode(const args *a)
{
    if (!a->model || !a->out)
        return die("%s", "encode needs --model DIR and --out DIR");
    if (outset_mkdir(a->out)) /* before any work: a bad --out fails fast */
        return die("cannot create output folder %s", a->out);
    if (!a->pixels == !a->n_images)
        return die("%s", "encode needs --pixels X.npy or images (--image FILE ...), not both");
    static int layer_list[MAX_LAYER_ARGS];
    int n_layers = 0, all = 0;
    if (parse_layers(a->layers, layer_list, &n_layers, &all))
        return 1;
    vtok_status why = {0};
    vtok_recipe *er = expert_recipe(a->model, a->dtype, &why);
    if (er)
        return encode_expert(a, er);
    if (why.code)
        return die("%s", why.msg);

    vtok_status st = {0};
    float *px = NULL;
    int nd = 4;
    int64_t shape[8];
    if (a->n_images) {
        float *tmp = NULL;
        if (images_to_pixels(a->model, a->images, a->n_images, a->fast, a->exif, &tmp, shape))
            return 1;
        px = tmp;
    } else {
        if (vtok_npy_load(a->pixels, &px, &nd, shape, &st))
            return die("%s", st.msg);
        if (nd != 4) {
            vtok_free(px);
            return die("%s: pixel_values must be 4-D [N, C, H, W]", a->pixels);
        }
    }
    vtok_model *m = load_dtype(a->model, a->dtype);
    if (!m) {
        vtok_free(px);
        return 1;
    }
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = a->threads;
    vtok_ctx *ctx = vtok_ctx_new(m, &cp, &st);
    int rc = 1;
    if (!ctx) {
        die("%s", st.msg);
        goto out;
    }
    vtok_encode_params ep = vtok_encode_default_params();
    ep.all_layers = all;
    ep.layers = layer_list;
    ep.n_layers = n_layers;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (vtok_encode(ctx, px, shape[0], shape[1], shape[2], shape[3], &ep)) {
        die("%s", vtok_ctx_errmsg(ctx));
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (outset_mkdir(a->out)) {
        die("cannot create output folder %s", a->out);
        goto out;
    }
    vtok_model_info info;
    vtok_model_get_info(m, &info);
    vtok_view v;
    if (vtok_get_output(ctx, VTOK_OUT_LAST_HIDDEN, 0, &v) == 0 &&
        save(a->out, "last_hidden_state.npy", &v))
        goto out;
    if (vtok_get_output(ctx, VTOK_OUT_POOLER, 0, &v) == 0 && save(a->out, "pooler_output.npy", &v))
        goto out;
    if (vtok_get_output(ctx, VTOK_OUT_IMAGE_EMBEDS, 0, &v) == 0 &&
        save(a->out, "image_embeds.npy", &v))
        goto out;
    for (int64_t l = 0; l <= info.n_layers; l++) {
        if (vtok_get_output(ctx, VTOK_OUT_HIDDEN_STATE, (int)l, &v) != 0)
            continue;
        char name[64];
        snprintf(name, sizeof name, "hidden_states_%02lld.npy", (long long)l);
        if (save(a->out, name, &v))
            goto out;
    }
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    fprintf(stderr, "vtok: %s, %lld image(s) in %.1f ms (%s kernels)\n", info.arch,
            (long long)shape[0], ms, vtok_kernel_name());
    rc = 0;
out:
    vtok_ctx_free(ctx);
    vtok_model_free(m);
    vtok_free(px);
    return rc;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median wall time of vtok_encode on deterministic pseudo-random pixels. */
static int cmd_bench(const args *a)
{
    if (!a->model)
        return die("%s", "bench needs --model DIR");
    vtok_model *m = load_dtype(a->model, a->dtype);
    if (!m)
        return 1;
    vtok_model_info info;
    vtok_model_get_info(m, &info);
    int64_t n = a->batch ? a->batch : 1, s = a->size ? a->size : info.image_size;
    int iters = a->iters ? a->iters : 10;
    /* The size is checked against the model before any pixels are made. */
    if (!info.any_size && s != info.image_size) {
        vtok_model_free(m);
        return die("--size %lld: this model takes %lldx%lld pixels only (no position "
                   "interpolation)", (long long)s, (long long)info.image_size,
                   (long long)info.image_size);
    }
    if (s < info.patch_size || s > 65536 || n > 4096) {
        vtok_model_free(m);
        return die("--size %lld / --batch %lld: size must be %lld..65536 and batch 1..4096",
                   (long long)s, (long long)n, (long long)info.patch_size);
    }
    int64_t count = n * info.n_channels * s * s;
    float *px = malloc((size_t)count * sizeof *px);
    vtok_status st = {0};
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = a->threads;
    vtok_ctx *ctx = px ? vtok_ctx_new(m, &cp, &st) : NULL;
    double *t = calloc((size_t)iters, sizeof *t);
    int rc = 1;
    if (!px || !ctx || !t) {
        die("%s", st.msg[0] ? st.msg : "out of memory");
        goto out;
    }
    uint32_t r = 12345;
    for (int64_t i = 0; i < count; i++) {
        r = r * 1664525u + 1013904223u;
        px[i] = (float)(r >> 8) / 16777216.0f * 4.0f - 2.0f;
    }
    vtok_encode_params ep = vtok_encode_default_params();
    for (int i = -1; i < iters; i++) { /* one warm-up run */
        double t0 = now_ms();
        if (vtok_encode(ctx, px, n, info.n_channels, s, s, &ep)) {
            die("%s", vtok_ctx_errmsg(ctx));
            goto out;
        }
        if (i >= 0)
            t[i] = now_ms() - t0;
    }
    qsort(t, (size_t)iters, sizeof *t, cmp_double);
    printf("{\"model\": \"%s\", \"arch\": \"%s\", \"batch\": %lld, \"size\": %lld, "
           "\"threads\": %d, \"kernels\": \"%s\", \"dtype\": \"%s\", \"iters\": %d, \"median_ms\": %.3f, "
           "\"ms_per_image\": %.3f, \"min_ms\": %.3f}\n",
           a->model, info.arch, (long long)n, (long long)s, a->threads, vtok_kernel_name(),
           info.compute_dtype, iters,
           t[iters / 2], t[iters / 2] / (double)n, t[0]);
    rc = 0;
out:
    free(t);
    free(px);
    vtok_ctx_free(ctx);
    vtok_model_free(m);
    return rc;
}

/* vtok convert IN OUT.safetensors: any weights file vtok opens (a PyTorch
 * checkpoint included) rewritten as one safetensors file. */
static int cmd_convert(const args *a)
{
    if (a->n_images != 2)
        return die("%s", "usage: vtok convert IN(.pth|.pt|.bin|.ckpt|.safetensors) OUT.safetensors");
    vtok_status st = {0};
    int n = vtok_convert_to_safetensors(a->images[0], a->images[1], &st);
    if (n < 0)
        return die("%s", st.msg[0] ? st.msg : vtok_strerror(st.code));
    printf("converted %d tensors: %s -> %s\n", n, a->images[0], a->images[1]);
    return 0;
}

static void json_str(FILE *f, const char *s)
{
    cli_json_text(f, s, strlen(s));
}

/* layout.json: how many tokens each image gives and where they go in the prompt. */
/* The routing of the run (MoVA), for layout.json. */
typedef struct {
    const vtok_recipe *r;
    const float       *w;        /* NULL: the recipe does not route */
    const char        *answer;   /* the LLM's routing answer, or NULL (--experts) */
    const int32_t     *prompt;   /* its prompt (ids, -1 for image rows) and answer ids */
    int64_t            n_prompt;
    const int32_t     *gen;
    int64_t            n_gen;
} run_routing;

static int write_layout(const char *dir, const vtok_recipe_info *ri, vtok_recipe_ctx *c,
                        int64_t n, const vtok_view *e, const vtok_run_params *text,
                        const run_routing *rt)
{
    const char *path;
    FILE *f = outset_open_text(dir, "layout.json", &path);
    if (!f)
        return 1;
    /* ragged (slicing, selection): embeddings.npy is [all tokens, d], image i's
     * rows are tokens[i] of them, in image order */
    const int ragged = e->n_dims == 2;
    const int64_t d = e->ne[e->n_dims - 1];
    fprintf(f, "{\n  \"recipe\": ");
    json_str(f, ri->name);
    fprintf(f, ",\n  \"images\": %lld,\n", (long long)n);
    if (ragged) {
        fprintf(f, "  \"tokens\": [");
        for (int64_t i = 0; i < n; i++) {
            vtok_view v;
            fprintf(f, "%s%lld", i ? ", " : "",
                    (long long)(vtok_recipe_get_image_output(c, i, &v) ? -1 : v.ne[0]));
        }
        fprintf(f, "],\n  \"d_llm\": %lld,\n", (long long)d);
    } else {
        fprintf(f, "  \"tokens_per_image\": %lld,\n  \"d_llm\": %lld,\n", (long long)e->ne[1],
                (long long)d);
    }
    if (text->n_text_ids) { /* the prompt's ids the recipe selected by */
        fprintf(f, "  \"text_ids\": [");
        for (int64_t i = 0; i < text->n_text_ids; i++)
            fprintf(f, "%s%d", i ? ", " : "", text->text_ids[i]);
        fprintf(f, "],\n");
    }
    /* a selecting recipe (SliME): each image's kept local token indices */
    vtok_view kv;
    const char *sn;
    for (int i = 0; vtok_recipe_get_stage(c, i, &sn, &kv) == 0; i++) {
        if (strcmp(sn, "kept") || kv.n_dims != 2)
            continue;
        fprintf(f, "  \"kept\": [");
        for (int64_t r = 0; r < kv.ne[0]; r++) {
            fprintf(f, "%s[", r ? ", " : "");
            for (int64_t j = 0; j < kv.ne[1] && kv.data[r * kv.ne[1] + j] >= 0; j++)
                fprintf(f, "%s%lld", j ? ", " : "", (long long)kv.data[r * kv.ne[1] + j]);
            fprintf(f, "]");
        }
        fprintf(f, "],\n");
    }
    if (rt->w) { /* which experts ran, and why */
        fprintf(f, "  \"experts\": [");
        for (int64_t k = 0, m = 0; k < vtok_recipe_n_experts(rt->r); k++)
            if (rt->w[k] != 0) {
                fprintf(f, "%s", m++ ? ", " : "");
                json_str(f, vtok_recipe_expert_name(rt->r, k));
            }
        fprintf(f, "],\n  \"routing_answer\": ");
        if (rt->answer)
            json_str(f, rt->answer);
        else
            fprintf(f, "null");
        fprintf(f, ",\n");
        if (rt->answer) {
            fprintf(f, "  \"routing_prompt_ids\": [");
            for (int64_t i = 0; i < rt->n_prompt; i++)
                fprintf(f, "%s%d", i ? ", " : "", rt->prompt[i]);
            fprintf(f, "],\n  \"routing_ids\": [");
            for (int64_t i = 0; i < rt->n_gen; i++)
                fprintf(f, "%s%d", i ? ", " : "", rt->gen[i]);
            fprintf(f, "],\n");
        }
    }
    fprintf(f, "  \"embeddings\": \"embeddings.npy\",\n  \"placeholder\": ");
    json_str(f, ri->placeholder);
    fprintf(f, ",\n  \"before\": ");
    json_str(f, ri->before);
    fprintf(f, ",\n  \"after\": ");
    json_str(f, ri->after);
    fprintf(f, ",\n  \"fill\": ");
    json_str(f, ri->fill);
    fprintf(f, ",\n  \"id_format\": ");
    json_str(f, ri->id_format);
    fprintf(f, ",\n  \"splice\": ");
    char how[512];
    if (ragged)
        snprintf(how, sizeof how,
                 "the i-th %s in the prompt becomes %s%stokens[i] embedding rows (image i's, "
                 "after those of the images before it)%s%s",
                 ri->placeholder[0] ? ri->placeholder : "image", ri->before,
                 ri->before[0] ? " + " : "", ri->after[0] ? " + " : "", ri->after);
    else
        snprintf(how, sizeof how,
                 "the i-th %s in the prompt becomes %s%s%lld embedding rows embeddings[i]%s%s",
                 ri->placeholder[0] ? ri->placeholder : "image", ri->before,
                 ri->before[0] ? " + " : "", (long long)e->ne[1], ri->after[0] ? " + " : "",
                 ri->after);
    json_str(f, how);
    fprintf(f, "\n}\n");
    return outset_close(f, path);
}

static void free_images(vtok_image *imgs, int n)
{
    for (int i = 0; imgs && i < n; i++)
        vtok_image_free(&imgs[i]);
    free(imgs);
}

/* The shape as "[a, b, c]" on stdout after a saved file's name. */
static int save_ids(const char *dir, const int64_t *ids, int64_t n, int64_t t)
{
    vtok_status st = {0};
    int64_t shape[2] = {n, t};
    const char *path = outset_stage(dir, "ids.npy");
    if (!path)
        return 1;
    if (vtok_npy_save_i64(path, ids, 2, shape, &st))
        return die("%s/ids.npy: %s", dir, st.msg);
    printf("%-22s [%lld, %lld] int64\n", "ids.npy", (long long)n, (long long)t);
    for (int64_t i = 0; i < n; i++) {
        printf("image %lld:", (long long)i);
        for (int64_t j = 0; j < t; j++)
            printf(" %lld", (long long)ids[i * t + j]);
        printf("\n");
    }
    return 0;
}

typedef enum { MODE_RUN, MODE_TOKENIZE, MODE_DETOKENIZE } run_mode;

/* One call of the recipe on the inputs of a (pixels, images or ids). */
/* --profile: when the steps of one run end (progress_cb): the encoders'
 * embeddings and blocks, then the connector as the last step. */
typedef struct {
    double t0, first, enc_end, end; /* ms: run start, step 1, step total - 1, last */
    double prep, enc, conn;         /* sums over the timed runs */
} run_profile;

static void profile_step(void *user, int64_t done, int64_t total)
{
    run_profile *p = user;
    double t = now_ms();
    if (done == 1 && total > 1) /* (one step: a connector alone, its input made inside) */
        p->first = t;
    if (done == total - 1 && total > 1)
        p->enc_end = t;
    if (done == total)
        p->end = t;
}

static int run_once(vtok_recipe_ctx *c, run_mode mode, const float *px, const int64_t *shape,
                    const vtok_image *imgs, const char *const *names, int n_images,
                    const int64_t *ids, const int64_t *ids_shape, const vtok_run_params *text)
{
    if (mode == MODE_DETOKENIZE)
        return vtok_recipe_detokenize(c, ids, ids_shape[0], ids_shape[1]);
    vtok_run_params rp = *text;
    rp.image_names = names; /* errors name the file */
    return px ? vtok_recipe_run(c, px, shape[0], shape[1], shape[2], shape[3], NULL)
              : vtok_recipe_run_images(c, imgs, n_images, &rp);
}

static int cmd_run(const args *a, run_mode mode)
{
    static const char *const names[] = {"run", "tokenize", "detokenize"};
    const char *cmd = names[mode];
    char msg[160];
    if (!a->recipe || !a->model || !a->out) {
        snprintf(msg, sizeof msg, "%s needs --recipe NAME|FILE, --model DIR and --out DIR", cmd);
        return die("%s", msg);
    }
    if (outset_mkdir(a->out)) /* before any work: a bad --out / --dump fails fast */
        return die("cannot create output folder %s", a->out);
    if (a->dump && outset_mkdir(a->dump))
        return die("cannot create dump folder %s", a->dump);
    if (mode == MODE_DETOKENIZE ? (!a->ids || a->pixels || a->n_images)
                                : (a->ids || !a->pixels == !a->n_images)) {
        snprintf(msg, sizeof msg, "%s needs %s", cmd,
                 mode == MODE_DETOKENIZE ? "--ids ids.npy (and no pixels or images)"
                                         : "--pixels X.npy or images (--image FILE ...), not both");
        return die("%s", msg);
    }
    vtok_recipe_params rp = vtok_recipe_default_params();
    if (a->dtype && (rp.dtype = vtok_dtype_from_name(a->dtype)) < 0)
        return die("--dtype %s: expected f32, bf16 or int8", a->dtype);
    vtok_status st = {0};
    float *px = NULL;
    int64_t *ids = NULL;
    int nd = 0;
    int64_t shape[8];
    vtok_image *imgs = NULL;
    if (a->ids) {
        if (vtok_npy_load_i64(a->ids, &ids, &nd, shape, &st))
            return die("%s", st.msg);
        if (nd != 2) {
            vtok_free(ids);
            return die("%s: ids must be 2-D [N, ids per image] (int64 or int32)", a->ids);
        }
    } else if (a->pixels) {
        if (vtok_npy_load(a->pixels, &px, &nd, shape, &st))
            return die("%s", st.msg);
        if (nd != 4) {
            vtok_free(px);
            return die("%s: pixel_values must be 4-D [N, C, H, W]", a->pixels);
        }
    } else {
        imgs = calloc((size_t)a->n_images, sizeof *imgs);
        if (!imgs)
            return die("%s", "out of memory");
        vtok_image_params ip = vtok_image_default_params();
        ip.exif_orientation = a->exif;
        for (int i = 0; i < a->n_images; i++)
            if (vtok_image_load(a->images[i], &ip, &imgs[i], &st)) {
                free_images(imgs, a->n_images);
                return die("%s", st.msg);
            }
    }
    int rc = 1;
    vtok_recipe_ctx *c = NULL;
    vtok_llm *llm = NULL;
    int32_t *text_ids = NULL;
    int64_t n_text_ids = 0;
    float route_w[16];
    char *route_ans = NULL;
    int32_t *route_prompt = NULL, route_gen[16];
    vtok_recipe *r = vtok_recipe_load(a->recipe, a->model, &rp, &st);
    run_routing route = {.r = r};
    if (!r) {
        die("%s", st.msg[0] ? st.msg : vtok_strerror(st.code));
        goto out;
    }
    vtok_recipe_info ri;
    vtok_recipe_get_info(r, &ri);
    if (mode == MODE_TOKENIZE && ri.ids_per_image == 0) {
        die("recipe %s gives embeddings, not discrete ids: use vtok run", ri.name);
        goto out;
    }
    if (mode == MODE_DETOKENIZE && !ri.can_detokenize) {
        die("recipe %s has no de-tokenizer", ri.name);
        goto out;
    }
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = a->threads;
    run_profile prof = {0};
    if (a->profile) {
        cp.progress_cb = profile_step;
        cp.user = &prof;
    }
    if (!(c = vtok_recipe_ctx_new(r, &cp, &st))) {
        die("%s", st.msg);
        goto out;
    }
    /* A recipe that selects by the text: the LLM and the prompt's ids. */
    vtok_run_params text = vtok_run_default_params();
    if (ri.needs_text && a->n_images) {
        if (!a->prompt) {
            die("recipe %s chooses image tokens by the question: give it with -p TEXT (and "
                "--llm DIR unless the LLM is in --model's checkpoint)", ri.name);
            goto out;
        }
        vtok_model_params mp = vtok_model_default_params();
        mp.n_threads = a->threads;
        if (!(llm = vtok_llm_load(a->llm ? a->llm : a->model, &mp, &st))) {
            die("%s", st.msg);
            goto out;
        }
        if (cli_text_ids(llm, &ri, a->n_images, a->prompt, a->format, &text_ids, &n_text_ids))
            goto out;
        text.llm = llm;
        text.text_ids = text_ids;
        text.n_text_ids = n_text_ids;
    } else if (vtok_recipe_n_experts(r) && a->n_images) {
        /* a routing recipe (MoVA): the question for its text encoder; the
         * experts from --experts or the LLM's coarse pass */
        if (!a->prompt) {
            die("recipe %s reads the question: give it with -p TEXT", ri.name);
            goto out;
        }
        if (vtok_recipe_n_experts(r) > 16) {
            die("recipe %s: more than 16 experts", ri.name);
            goto out;
        }
        if (!a->experts) {
            vtok_model_params mp = vtok_model_default_params();
            mp.n_threads = a->threads;
            if (!(llm = vtok_llm_load(a->llm ? a->llm : a->model, &mp, &st))) {
                if (a->llm)
                    die("%s", st.msg);
                else
                    die("recipe %s chooses its experts with an LLM: give --llm DIR or "
                        "--experts A,C (%s)", ri.name, st.msg);
                goto out;
            }
        }
        if (cli_route(llm, NULL, r, c, &ri, imgs, a->n_images, a->images, a->prompt, a->format,
                      a->experts, route_w, &route_ans, &route_prompt, &route.n_prompt,
                      route_gen, &route.n_gen))
            goto out;
        route.prompt = route_prompt;
        route.gen = route_gen;
        route.w = route_w;
        route.answer = route_ans;
        text.prompt = a->prompt;
        text.cond = route_w;
        text.n_cond = vtok_recipe_n_experts(r);
        text.same_images = route_ans != NULL; /* the routing pass ran the base encoder */
    } else if (a->llm || a->prompt || a->experts) {
        die("recipe %s does not read the text: --llm / -p / --experts are for recipes that "
            "select or route by it (slime, mova)", ri.name);
        goto out;
    }
    /* --iters N: one warm-up call, then N timed ones (median). */
    int iters = a->iters > 0 ? a->iters : 1;
    double *ms = calloc((size_t)iters, sizeof *ms);
    if (!ms) {
        die("%s", "out of memory");
        goto out;
    }
    int e = a->iters > 0 ? run_once(c, mode, px, shape, imgs, a->images, a->n_images, ids, shape, &text) : 0;
    for (int it = 0; it < iters && !e; it++) {
        double t0 = now_ms();
        prof.first = prof.enc_end = prof.end = t0;
        e = run_once(c, mode, px, shape, imgs, a->images, a->n_images, ids, shape, &text);
        ms[it] = now_ms() - t0;
        prof.prep += prof.first - t0; /* decoded images in; preprocess + first embedding */
        prof.enc += prof.enc_end - prof.first;
        prof.conn += prof.end - prof.enc_end;
    }
    qsort(ms, (size_t)iters, sizeof *ms, cmp_double);
    double med = ms[iters / 2];
    free(ms);
    if (e) {
        die("%s", vtok_recipe_ctx_errmsg(c));
        goto out;
    }
    if (outset_mkdir(a->out)) {
        die("cannot create output folder %s", a->out);
        goto out;
    }
    if (a->dump && outset_mkdir(a->dump)) {
        die("cannot create dump folder %s", a->dump);
        goto out;
    }
    vtok_view v;
    const char *name;
    int n_stages = 0;
    while (vtok_recipe_get_stage(c, n_stages, &name, &v) == 0)
        n_stages++;
    const int64_t *out_ids = NULL;
    int64_t n_out = 0, t_out = 0;
    int ragged = 0;
    if (mode == MODE_TOKENIZE) {
        if (vtok_recipe_get_ids(c, &out_ids, &n_out, &t_out) ||
            save_ids(a->out, out_ids, n_out, t_out))
            goto out;
    } else if (mode == MODE_DETOKENIZE) {
        char file[64];
        vtok_recipe_get_stage(c, n_stages - 1, &name, &v);
        snprintf(file, sizeof file, "%s.npy", name);
        if (save(a->out, file, &v))
            goto out;
        n_out = v.ne[0];
        t_out = v.ne[1];
    } else {
        vtok_recipe_get_output(c, &v);
        const int64_t n_img = v.n_dims == 2 ? a->n_images : v.ne[0];
        if (save(a->out, "embeddings.npy", &v) ||
            write_layout(a->out, &ri, c, n_img, &v, &text, &route))
            goto out;
        n_out = v.n_dims == 2 ? n_img : v.ne[0];
        t_out = v.n_dims == 2 ? v.ne[0] : v.ne[1]; /* ragged: all images' tokens */
        ragged = v.n_dims == 2;
        if (ri.ids_per_image && (vtok_recipe_get_ids(c, &out_ids, &n_out, &t_out) ||
                                 save_ids(a->out, out_ids, n_out, t_out)))
            goto out;
    }
    for (int i = 0; a->dump && i < n_stages; i++) {
        char file[64];
        vtok_recipe_get_stage(c, i, &name, &v);
        snprintf(file, sizeof file, "%s.npy", name);
        if (save(a->dump, file, &v))
            goto out;
    }
    for (int i = 0; a->dump && i < (int)ri.n_encoders; i++) { /* what each encoder saw */
        char file[64];
        if (vtok_recipe_get_pixels(c, i, &name, &v))
            continue;
        snprintf(file, sizeof file, "pixels_%s.npy", name);
        if (save(a->dump, file, &v))
            goto out;
    }
    if (route.w)
        cli_route_report(r, route_w, route_ans);
    fprintf(stderr, "vtok: %s %s (%s), %lld %s -> %lld %s %s in %.1f ms (%s kernels)\n", cmd,
            ri.name, a->dtype ? a->dtype : "f32", (long long)n_out,
            mode == MODE_DETOKENIZE ? "id row(s)" : "image(s)", (long long)t_out,
            mode == MODE_TOKENIZE ? "ids" : "tokens", ragged ? "in all" : "each", med,
            vtok_kernel_name());
    if (a->iters > 0)
        printf("{\"command\": \"%s\", \"recipe\": \"%s\", \"dtype\": \"%s\", \"threads\": %d, "
               "\"batch\": %lld, \"iters\": %d, \"median_ms\": %.3f, \"ms_per_image\": %.3f, "
               "\"tokens\": %lld}\n",
               cmd, ri.name, a->dtype ? a->dtype : "f32", a->threads, (long long)n_out, iters,
               med, med / (double)n_out, (long long)t_out * (ragged ? 1 : n_out));
    if (a->profile) /* means over the timed runs */
        printf("{\"profile\": {\"preprocess_ms\": %.3f, \"encoders_ms\": %.3f, "
               "\"connector_ms\": %.3f}}\n", prof.prep / iters, prof.enc / iters,
               prof.conn / iters);
    rc = 0;
out:
    vtok_recipe_ctx_free(c);
    vtok_recipe_free(r);
    vtok_llm_free(llm);
    free(text_ids);
    free(route_ans);
    free(route_prompt);
    vtok_free(px);
    vtok_free(ids);
    free_images(imgs, a->n_images);
    return rc;
}

static int cmd_recipes(void)
{
    for (const char *const *n = vtok_recipe_names(); *n; n++)
        printf("%s\n", *n);
    return 0;
}

int main(int argc, char **argv)
{
    /* Over a file-size limit a write must fail with EFBIG (reported, the
     * partial temp file removed), not kill the process mid-file. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("vtok %s\n", vtok_version());
        return 0;
    }
    /* The language-model commands read their own options. */
    if (!strcmp(cmd, "generate"))
        return cli_generate(argc, argv);
    if (!strcmp(cmd, "tokenize-text"))
        return cli_tokenize_text(argc, argv);
    if (!strcmp(cmd, "chat"))
        return outset_finish(cli_chat(argc, argv));
    if (!strcmp(cmd, "embed-text"))
        return cli_embed_text(argc, argv);
    if (!strcmp(cmd, "zeroshot"))
        return cli_zeroshot(argc, argv);
    if (!strcmp(cmd, "serve"))
        return cli_serve(argc, argv);
    if (!strcmp(cmd, "batch"))
        return cli_batch(argc, argv);
    args a = {0};
    if (parse(argc, argv, &a))
        return 1;
    int rc;
    if (!strcmp(cmd, "encode"))
        rc = cmd_encode(&a);
    else if (!strcmp(cmd, "info"))
        rc = cmd_info(&a);
    else if (!strcmp(cmd, "bench"))
        rc = cmd_bench(&a);
    else if (!strcmp(cmd, "preprocess"))
        rc = cmd_preprocess(&a);
    else if (!strcmp(cmd, "convert"))
        rc = cmd_convert(&a);
    else if (!strcmp(cmd, "run"))
        rc = cmd_run(&a, MODE_RUN);
    else if (!strcmp(cmd, "tokenize"))
        rc = cmd_run(&a, MODE_TOKENIZE);
    else if (!strcmp(cmd, "detokenize"))
        rc = cmd_run(&a, MODE_DETOKENIZE);
    else if (!strcmp(cmd, "recipes"))
        rc = cmd_recipes();
    else
        return die("unknown command '%s' (see vtok --help)", cmd);
    return outset_finish(rc); /* a command's outputs land together or not at all */
}
