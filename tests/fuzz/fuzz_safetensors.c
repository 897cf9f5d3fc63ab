/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors header parser.
 *
 * The input is used as a whole safetensors file through vt_weights_open_mem,
 * straight from libFuzzer's buffer so ASan sees any read past its end. Every
 * tensor that opens is then converted with vt_weights_f32 (shape wildcards),
 * which exercises the offsets and the F16/BF16/F64/unaligned F32 paths on
 * whatever the header claims. Build and run with tests/fuzz/run_fuzz.sh.
 */
#include "io/io.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vtok_status st = {0};
    vt_weights *w = NULL;
    if (vt_weights_open_mem(data, size, "fuzz", &w, &st) != 0)
        return 0;
    float sink = 0;
    for (int64_t i = 0; i < vt_weights_count(w); i++) {
        const vt_st_tensor *t = vt_weights_at(w, i);
        int64_t shape[VT_MAX_DIMS];
        for (int d = 0; d < VT_MAX_DIMS; d++)
            shape[d] = -1;
        const float *p = NULL;
        /* No size cap needed: open checked numel * dtype size against the
         * offsets, so a tensor never claims more bytes than the input has. */
        if (vt_weights_f32(w, t->name, t->n_dims, shape, &p, &st) == 0 && t->numel > 0)
            sink += p[0] + p[t->numel - 1];
        if (vt_weights_find(w, t->name) == NULL)
            __builtin_trap(); /* every listed tensor must be found by name */
    }
    (void)sink;
    vt_weights_close(w);
    return 0;
}
