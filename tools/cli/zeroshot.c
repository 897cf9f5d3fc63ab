/*
 * zeroshot.c - `vtok zeroshot`: CLIP zero-shot classification of an image.
 *
 *   vtok zeroshot --model CLIPDIR --image F --labels "a cat,a dog"
 *                 [--template "a photo of {}"] [--truncate] [--threads N] [--json]
 *
 * As CLIPModel.forward (transformers modeling_clip.py): image_embeds =
 * visual_projection(pooler_output) through the vision encoder
 * (vtok_encode, VTOK_OUT_IMAGE_EMBEDS), text_embeds = get_text_features
 * per label (vtok_text_encode), both divided by their L2 norm,
 * logits_per_image = exp(logit_scale) * cosine, then softmax over the
 * labels (the usual zero-shot read-out, CLIP's model card). Labels are
 * printed by probability, highest first. Uses only the public header.
 */
#include "vtok.h"
#include "llm_cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 1024

static int zdie(const char *msg, const char *detail)
{
    fprintf(stderr, "vtok: %s%s%s\n", msg, detail ? ": " : "", detail ? detail : "");
    return 1;
}

static void l2_normalise(float *v, int64_t n)
{
    double s = 0.0; /* _get_vector_norm: sqrt(sum(v^2)) */
    for (int64_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    float norm = (float)sqrt(s);
    for (int64_t i = 0; i < n; i++)
        v[i] = norm > 0.0f ? v[i] / norm : 0.0f;
}

static void json_str(const char *s)
{
    cli_json_text(stdout, s, strlen(s));
}

int cli_zeroshot(int argc, char **argv)
{
    const char *model = NULL, *image = NULL, *labels = NULL, *tmpl = NULL;
    int json = 0, truncate = 0, threads = 0;
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--json")) { json = 1; continue; }
        if (!strcmp(k, "--truncate")) { truncate = 1; continue; }
        if (!v) return zdie("option needs a value", k);
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--image")) image = v;
        else if (!strcmp(k, "--labels")) labels = v;
        else if (!strcmp(k, "--template")) tmpl = v;
        else if (!strcmp(k, "--threads")) threads = atoi(v);
        else return zdie("unknown option (see vtok --help)", k);
        i++;
    }
    if (!model || !image || !labels)
        return zdie("zeroshot needs --model DIR, --image FILE and --labels \"a,b,...\"", NULL);
    if (tmpl && !strstr(tmpl, "{}"))
        return zdie("--template must contain {}", tmpl);

    /* labels: comma separated, each non-empty */
    char *lab = strdup(labels);
    char *names[MAX_LABELS];
    int n = 0, rc = 1;
    for (char *p = lab, *save = NULL, *t; lab && (t = strtok_r(p, ",", &save)); p = NULL) {
        if (n == MAX_LABELS) { free(lab); return zdie("too many labels (max 1024)", NULL); }
        names[n++] = t;
    }
    if (!lab || n == 0) { free(lab); return zdie("--labels has no label", labels); }

    vtok_status st = {0};
    vtok_text_model *tm = NULL;
    vtok_model *vm = NULL;
    vtok_processor *proc = NULL;
    vtok_ctx *ctx = NULL;
    float *px = NULL, *temb = NULL, *img = NULL;
    double *prob = NULL, *logit = NULL;
    int *order = NULL;
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = threads;

    if (!(tm = vtok_text_model_load(model, NULL, &st))) { zdie(st.msg, NULL); goto out; }
    int64_t dim = vtok_text_model_dim(tm);
    if (dim < 1) { zdie("the model has no text_projection", model); goto out; }
    if (!(vm = vtok_model_load(model, NULL, &st))) { zdie(st.msg, NULL); goto out; }
    vtok_model_info info;
    vtok_model_get_info(vm, &info);
    if (info.projection_dim != dim) {
        zdie("the model has no visual_projection of the text projection's size", model);
        goto out;
    }
    int64_t shape[4];
    const char *paths[1] = {image};
    if (!(proc = vtok_processor_load(model, &st))) { zdie(st.msg, NULL); goto out; }
    vtok_image_params ip = vtok_image_default_params();
    if (vtok_preprocess_batch(proc, paths, NULL, 1, &ip, &px, shape, &st)) {
        zdie(st.msg, NULL);
        goto out;
    }
    if (!(ctx = vtok_ctx_new(vm, &cp, &st))) { zdie(st.msg, NULL); goto out; }
    vtok_encode_params ep = vtok_encode_default_params();
    vtok_view v;
    if (vtok_encode(ctx, px, shape[0], shape[1], shape[2], shape[3], &ep) ||
        vtok_get_output(ctx, VTOK_OUT_IMAGE_EMBEDS, 0, &v)) {
        zdie(vtok_ctx_errmsg(ctx), NULL);
        goto out;
    }
    img = malloc((size_t)dim * sizeof *img);
    temb = malloc((size_t)n * (size_t)dim * sizeof *temb);
    prob = malloc((size_t)n * sizeof *prob);
    logit = malloc((size_t)n * sizeof *logit);
    order = malloc((size_t)n * sizeof *order);
    if (!img || !temb || !prob || !logit || !order) { zdie("out of memory", NULL); goto out; }
    memcpy(img, v.data, (size_t)dim * sizeof *img);
    l2_normalise(img, dim);
    for (int i = 0; i < n; i++) {
        char text[8192];
        if (tmpl) {
            const char *at = strstr(tmpl, "{}");
            if (snprintf(text, sizeof text, "%.*s%s%s", (int)(at - tmpl), tmpl, names[i], at + 2)
                >= (int)sizeof text) { zdie("label text too long", names[i]); goto out; }
        } else {
            snprintf(text, sizeof text, "%s", names[i]);
        }
        if (vtok_text_encode(tm, text, temb + (int64_t)i * dim, truncate, &cp, &st)) {
            fprintf(stderr, "vtok: label '%s': %s\n", names[i], st.msg);
            goto out;
        }
        l2_normalise(temb + (int64_t)i * dim, dim);
    }
    /* logits_per_image = exp(logit_scale) * cos; softmax over the labels */
    float scale = expf(vtok_text_model_logit_scale(tm));
    double mx = -INFINITY, sum = 0.0;
    for (int i = 0; i < n; i++) {
        float c = 0.0f;
        for (int64_t j = 0; j < dim; j++)
            c += temb[(int64_t)i * dim + j] * img[j];
        prob[i] = logit[i] = (double)(c * scale);
        if (prob[i] > mx) mx = prob[i];
    }
    for (int i = 0; i < n; i++) sum += prob[i] = exp(prob[i] - mx);
    for (int i = 0; i < n; i++) { prob[i] /= sum; order[i] = i; }
    for (int i = 1; i < n; i++) /* insertion sort, stable: ties keep label order */
        for (int j = i; j > 0 && prob[order[j]] > prob[order[j - 1]]; j--) {
            int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
    if (json) printf("{\"labels\": [");
    for (int k = 0; k < n; k++) {
        int i = order[k];
        if (json) {
            printf("%s{\"label\": ", k ? ", " : "");
            json_str(names[i]);
            printf(", \"prob\": %.9g, \"logit\": %.9g}", prob[i], logit[i]);
        } else {
            printf("%8.4f%%  %s\n", 100.0 * prob[i], names[i]);
        }
    }
    if (json) printf("]}\n");
    rc = 0;
out:
    free(order);
    free(prob);
    free(logit);
    free(temb);
    free(img);
    vtok_free(px);
    vtok_ctx_free(ctx);
    vtok_processor_free(proc);
    vtok_model_free(vm);
    vtok_text_model_free(tm);
    free(lab);
    return rc;
}
