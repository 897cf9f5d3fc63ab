/*
 * fuzz_model.c - libFuzzer target for loading a whole model from memory:
 * vtok_model_load_from_memory with a config.json and a weights image
 * (safetensors, or a torch.save checkpoint), then a tiny encode.
 *
 * Input layout: [u16 LE config length][u8 flags][config JSON][weights].
 * A config length past the end takes what is there (so every input is
 * something). flags & 3 picks the compute dtype (f32, bf16, int8, f32); when
 * flags & 4 and the model loads with an image of at most 64 x 64 pixels, one
 * image of zeros is encoded on one thread and every output the model reports
 * is looked up and read. Both buffers are exact-size copies, so ASan sees
 * any read past either. Failures must leave one non-empty line in the
 * status. Seeds (tests/fuzz/regress-model/) are tiny CLIP, SigLIP, DINOv2,
 * ViT and BLIP-2 towers written by tests/fuzz/make_seeds.py.
 */
#include "vtok.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_msg(const char *msg)
{
    if (!msg[0] || strchr(msg, '\n')) {
        fprintf(stderr, "fuzz_model: bad status message: '%s'\n", msg);
        abort(); /* a failure must say why, in one line */
    }
}

static void encode_once(vtok_model *m, const vtok_model_info *info)
{
    int64_t side = info->image_size, c = info->n_channels;
    if (side <= 0 || side > 64 || c <= 0 || c > 4)
        return;
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = 1;
    vtok_status st = {0};
    vtok_ctx *ctx = vtok_ctx_new(m, &cp, &st);
    if (!ctx) {
        check_msg(st.msg);
        return;
    }
    float *px = calloc((size_t)(c * side * side), sizeof *px);
    if (px) {
        vtok_encode_params ep = vtok_encode_default_params();
        ep.all_layers = 1;
        if (vtok_encode(ctx, px, 1, c, side, side, &ep) != 0) {
            check_msg(vtok_ctx_errmsg(ctx));
        } else {
            volatile float sink = 0;
            for (int which = VTOK_OUT_LAST_HIDDEN; which <= VTOK_OUT_HIDDEN_STATE; which++) {
                int layers = which == VTOK_OUT_HIDDEN_STATE ? (int)info->n_layers + 1 : 1;
                for (int l = 0; l < layers; l++) {
                    vtok_view v;
                    if (vtok_get_output(ctx, (vtok_output)which, l, &v) != 0)
                        continue;
                    int64_t n = 1;
                    for (int d = 0; d < v.n_dims; d++)
                        n *= v.ne[d];
                    if (n > 0)
                        sink += v.data[0] + v.data[n - 1];
                }
            }
            (void)sink;
        }
        free(px);
    }
    vtok_ctx_free(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t clen = (size_t)data[0] | (size_t)data[1] << 8;
    int flags = data[2];
    data += 3;
    size -= 3;
    if (clen > size)
        clen = size;
    char *cfg = malloc(clen ? clen : 1);
    uint8_t *w = malloc(size - clen ? size - clen : 1);
    if (!cfg || !w) {
        free(cfg);
        free(w);
        return 0;
    }
    memcpy(cfg, data, clen);
    memcpy(w, data + clen, size - clen);
    static const int dtypes[] = {VTOK_DTYPE_F32, VTOK_DTYPE_BF16, VTOK_DTYPE_INT8, VTOK_DTYPE_F32};
    vtok_model_params p = vtok_model_default_params();
    p.dtype = dtypes[flags & 3];
    p.n_threads = 1;
    vtok_status st = {0};
    vtok_model *m = vtok_model_load_from_memory(w, size - clen, cfg, clen, &p, &st);
    if (!m) {
        check_msg(st.msg);
    } else {
        vtok_model_info info;
        if (vtok_model_get_info(m, &info) != 0)
            abort();
        if (flags & 4)
            encode_once(m, &info);
        vtok_model_free(m);
    }
    free(cfg);
    free(w);
    return 0;
}
