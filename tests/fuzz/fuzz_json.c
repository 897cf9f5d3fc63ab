/*
 * fuzz_json.c - libFuzzer target for the JSON options vtok reads: a model's
 * config.json, preprocessor_config.json and recipe files.
 *
 * The first input byte picks the path (byte % 3) and a variant (byte / 3);
 * the rest is the JSON text, handed over without a terminating NUL so ASan
 * sees any read past its end:
 *   0  config.json: vtok_model_load_from_memory with the committed tiny CLIP
 *      weights (models/tiny-clip/model.safetensors, read once at start), so
 *      model_type selects a family and its loader reads every key it knows;
 *      the variant picks the compute dtype (f32, bf16, int8: the Linear
 *      conversions run too). On success the reported sizes must agree with
 *      the weights' (hidden 64, at most their 4 layers).
 *   1  preprocessor_config.json: vt_json_parse_object + vt_processor_from_json
 *      (what vtok_processor_load and the recipes use), then the output size for
 *      a few input sizes and, when the output is small, vtok_preprocess on a
 *      synthetic image whose size the variant picks.
 *   2  a recipe: the text is written to a private temp file (recipes are read
 *      by path) and loaded with vtok_recipe_load against models/tiny-llava,
 *      so encoders, processors and connectors are resolved for real.
 * Every failure must leave one non-empty line in the status. The repository
 * root comes from VTOK_FUZZ_ROOT (compiled in by tests/fuzz/run_fuzz.sh).
 */
#include "image/image.h"
#include "io/opt.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef VTOK_FUZZ_ROOT
#define VTOK_FUZZ_ROOT "."
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *g_weights;
static size_t   g_weights_size;
static char     g_recipe_path[256];

static void check_msg(const vtok_status *st)
{
    if (!st->msg[0] || strchr(st->msg, '\n')) {
        fprintf(stderr, "fuzz_json: bad status message: code %d, '%s'\n", st->code, st->msg);
        abort(); /* a failure must say why, in one line */
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *path = VTOK_FUZZ_ROOT "/models/tiny-clip/model.safetensors";
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0) {
        fprintf(stderr, "fuzz_json: cannot read %s\n", path);
        exit(2);
    }
    long n = ftell(f);
    rewind(f);
    g_weights = malloc(n > 0 ? (size_t)n : 1);
    if (n <= 0 || !g_weights || fread(g_weights, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "fuzz_json: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    g_weights_size = (size_t)n;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_recipe_path, sizeof g_recipe_path, "%s/vtok-fuzz-recipe-%ld.json",
             tmp && *tmp ? tmp : "/tmp", (long)getpid());
    return 0;
}

static void fuzz_config(const char *text, size_t len, int variant)
{
    static const int dtypes[] = {VTOK_DTYPE_F32, VTOK_DTYPE_BF16, VTOK_DTYPE_INT8};
    vtok_model_params p = vtok_model_default_params();
    p.dtype = dtypes[variant % 3];
    vtok_status st = {0};
    vtok_model *m = vtok_model_load_from_memory(g_weights, g_weights_size, text, len, &p, &st);
    if (!m) {
        check_msg(&st);
        return;
    }
    vtok_model_info info;
    /* The width is the weights'; a config may use fewer layers than stored
     * (as transformers does, ignoring the rest), never more. */
    if (vtok_model_get_info(m, &info) != 0 || info.hidden_size != 64 || info.n_layers < 0 ||
        info.n_layers > 4)
        abort();
    vtok_model_free(m);
}

static void fuzz_processor(const char *text, size_t len, int variant)
{
    vtok_status st = {0};
    cJSON *cfg = vt_json_parse_object(text, len, "preprocessor_config.json", &st);
    if (!cfg) {
        check_msg(&st);
        return;
    }
    vtok_processor *p = vt_processor_from_json(cfg, &st);
    cJSON_Delete(cfg);
    if (!p) {
        check_msg(&st);
        return;
    }
    (void)vtok_processor_describe(p);
    (void)vtok_processor_min_side(p);
    static const int64_t sizes[][2] = {{1, 1}, {65500, 1}, {1, 65500}, {65500, 65500}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int64_t h = 0, w = 0;
        vtok_status s2 = {0};
        if (vtok_processor_output_size(p, sizes[i][0], sizes[i][1], &h, &w, &s2) == 0) {
            if (h <= 0 || w <= 0)
                abort();
        } else {
            check_msg(&s2);
        }
    }
    /* A small synthetic image: 1..32 x 1..32 from the variant. */
    vtok_image img = {.width = 1 + (variant & 31), .height = 1 + ((variant * 7) & 31)};
    int64_t h = 0, w = 0;
    if (vtok_processor_output_size(p, img.width, img.height, &h, &w, &st) == 0 &&
        h * w <= (1 << 20)) {
        size_t n = (size_t)(img.width * img.height * 3);
        img.data = malloc(n);
        float *out = malloc((size_t)(3 * h * w) * sizeof *out);
        if (img.data && out) {
            for (size_t i = 0; i < n; i++)
                img.data[i] = (uint8_t)(i * 37 + (size_t)variant);
            if (vtok_preprocess(p, &img, out, 3 * h * w, &st) != 0)
                check_msg(&st);
        }
        free(out);
        free(img.data);
    }
    vtok_processor_free(p);
}

static void fuzz_recipe(const uint8_t *text, size_t len)
{
    FILE *f = fopen(g_recipe_path, "wb");
    if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "fuzz_json: cannot write %s\n", g_recipe_path);
        abort();
    }
    vtok_recipe_params p = vtok_recipe_default_params();
    p.n_threads = 1;
    vtok_status st = {0};
    vtok_recipe *r = vtok_recipe_load(g_recipe_path, VTOK_FUZZ_ROOT "/models/tiny-llava", &p, &st);
    if (!r) {
        check_msg(&st);
    } else {
        vtok_recipe_info info;
        if (vtok_recipe_get_info(r, &info) != 0)
            abort();
        vtok_recipe_free(r);
    }
    remove(g_recipe_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int sel = data[0] % 3, variant = data[0] / 3;
    /* An exact-size copy of the text: the parsers get (pointer, length). */
    size_t len = size - 1;
    char *text = malloc(len ? len : 1);
    if (!text)
        return 0;
    memcpy(text, data + 1, len);
    if (sel == 0)
        fuzz_config(text, len, variant);
    else if (sel == 1)
        fuzz_processor(text, len, variant);
    else
        fuzz_recipe(data + 1, len);
    free(text);
    return 0;
}
