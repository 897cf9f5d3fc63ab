/*
 * fuzz_torch.c - libFuzzer target for the PyTorch checkpoint reader
 * (src/io/torch.c: zip and legacy containers, the restricted unpickler).
 *
 * The input goes straight from libFuzzer's buffer to vt_torch_parse, so ASan
 * sees any read past its end, and then through vt_weights_open_mem (which
 * routes zip / legacy-magic images to the same reader) with every tensor
 * converted by vt_weights_f32 and every byte of every tensor read, which
 * checks that the storage bounds the reader verified really hold. Build and
 * run with tests/fuzz/run_fuzz.sh.
 */
#include "io/io.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vtok_status st = {0};
    vt_pt_checkpoint c;
    unsigned sum = 0;
    if (vt_torch_parse(data, size, "fuzz", &c, &st) == 0) {
        for (int64_t i = 0; i < c.n_tensors; i++) {
            const uint8_t *p = c.tensors[i].data;
            for (size_t j = 0; j < c.tensors[i].nbytes; j++)
                sum += p[j];
        }
        vt_torch_release(&c);
    }
    vt_weights *w = NULL;
    if (vt_weights_open_mem(data, size, "fuzz", &w, &st) == 0) {
        for (int64_t i = 0; i < vt_weights_count(w); i++) {
            const vt_st_tensor *t = vt_weights_at(w, i);
            int64_t shape[VT_MAX_DIMS];
            for (int d = 0; d < VT_MAX_DIMS; d++)
                shape[d] = -1;
            const float *p = NULL;
            if (vt_weights_f32(w, t->name, t->n_dims, shape, &p, &st) == 0 && t->numel > 0)
                sum += (unsigned)(p[0] + p[t->numel - 1] != 0);
            if (vt_weights_find(w, t->name) == NULL)
                __builtin_trap(); /* every listed tensor must be found by name */
        }
        vt_weights_close(w);
    }
    (void)sum;
    return 0;
}
