/*
 * sample_run.c - the next-token sampler (src/models/sample.c) on .npy logits,
 * for tests/blocks/sample_parity.py.
 *
 *   sample_run --logits L.npy [--history H.npy] --out DIR [--greedy]
 *              [--temperature T] [--top-k K] [--top-p P] [--min-p M]
 *              [--penalty R] [--seed S] [--draws N]
 *
 *   L float [rows, vocab]; H int64 [rows, h] (the ids so far, per row)
 *   DIR/filtered.npy  float [rows, vocab]  the processors' output (-inf removed)
 *   DIR/ids.npy       int64 [rows]         vt_sample's choice (one draw)
 *   DIR/counts.npy    int64 [rows, vocab]  with --draws N: how often each id
 *                                          was drawn in N draws
 * Errors (bad parameters included): one line on stderr, exit status 1.
 */
#include "models/sample.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *lp = NULL, *hp = NULL, *out = NULL;
    vt_sample_params p = {.temperature = 1.0f, .top_p = 1.0f, .repetition_penalty = 1.0f,
                          .seed = 1};
    int64_t draws = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--greedy")) {
            p.greedy = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "sample_run: %s needs a value\n", k);
            return 1;
        }
        i++;
        if (!strcmp(k, "--logits")) lp = v;
        else if (!strcmp(k, "--history")) hp = v;
        else if (!strcmp(k, "--out")) out = v;
        else if (!strcmp(k, "--temperature")) p.temperature = strtof(v, NULL);
        else if (!strcmp(k, "--top-k")) p.top_k = strtoll(v, NULL, 10);
        else if (!strcmp(k, "--top-p")) p.top_p = strtof(v, NULL);
        else if (!strcmp(k, "--min-p")) p.min_p = strtof(v, NULL);
        else if (!strcmp(k, "--penalty")) p.repetition_penalty = strtof(v, NULL);
        else if (!strcmp(k, "--seed")) p.seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--draws")) draws = strtoll(v, NULL, 10);
        else {
            fprintf(stderr, "sample_run: unknown option %s\n", k);
            return 1;
        }
    }
    if (!lp || !out) {
        fprintf(stderr, "sample_run: needs --logits and --out\n");
        return 1;
    }
    vtok_status st = {0};
    float *L = NULL;
    int64_t *H = NULL, ls[8], hs[8] = {0};
    int nd = 0, hd = 0, rc = 1;
    float *filtered = NULL;
    int64_t *ids = NULL, *counts = NULL;
    vt_sampler s = {0};
    int32_t *hist = NULL;
    if (vtok_npy_load(lp, &L, &nd, ls, &st) || nd != 2 ||
        (hp && (vtok_npy_load_i64(hp, &H, &hd, hs, &st) || hd != 2 || hs[0] != ls[0]))) {
        fprintf(stderr, "sample_run: %s\n", st.msg[0] ? st.msg : "bad input shapes");
        goto out;
    }
    const int64_t R = ls[0], V = ls[1], nh = H ? hs[1] : 0;
    if (vt_sampler_init(&s, &p, V, &st)) {
        fprintf(stderr, "sample_run: %s\n", st.msg);
        goto out;
    }
    filtered = malloc((size_t)(R * V) * sizeof *filtered);
    ids = malloc((size_t)R * sizeof *ids);
    counts = draws > 0 ? calloc((size_t)(R * V), sizeof *counts) : NULL;
    hist = malloc((size_t)(nh > 0 ? nh : 1) * sizeof *hist);
    if (!filtered || !ids || (draws > 0 && !counts) || !hist) {
        fprintf(stderr, "sample_run: out of memory\n");
        goto out;
    }
    for (int64_t r = 0; r < R; r++) {
        for (int64_t k = 0; k < nh; k++)
            hist[k] = (int32_t)H[r * nh + k];
        vt_sampler_filter(&s, L + r * V, hist, nh);
        memcpy(filtered + r * V, s.work, (size_t)V * sizeof *filtered);
        ids[r] = vt_sample(&s, L + r * V, hist, nh);
        for (int64_t d = 0; d < draws; d++)
            counts[r * V + vt_sample(&s, L + r * V, hist, nh)]++;
    }
    char path[4096];
    int64_t shp[2] = {R, V};
    snprintf(path, sizeof path, "%s/filtered.npy", out);
    if (vtok_npy_save(path, filtered, 2, shp, &st))
        goto save_fail;
    snprintf(path, sizeof path, "%s/ids.npy", out);
    if (vtok_npy_save_i64(path, ids, 1, shp, &st))
        goto save_fail;
    snprintf(path, sizeof path, "%s/counts.npy", out);
    if (counts && vtok_npy_save_i64(path, counts, 2, shp, &st))
        goto save_fail;
    rc = 0;
    goto out;
save_fail:
    fprintf(stderr, "sample_run: %s\n", st.msg);
out:
    vt_sampler_free(&s);
    vtok_free(L);
    vtok_free(H);
    free(filtered), free(ids), free(counts), free(hist);
    return rc;
}
