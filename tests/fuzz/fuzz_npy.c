/*
 * fuzz_npy.c - libFuzzer target for the .npy reader.
 *
 * The input is parsed as a whole .npy file through vt_npy_read_f32_mem,
 * straight from libFuzzer's buffer so ASan sees any read past its end; on
 * success the first and last elements are touched so a wrong size shows up.
 * Build and run with tests/fuzz/run_fuzz.sh.
 */
#include "io/io.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vtok_status st = {0};
    float *out = NULL;
    int n_dims = 0;
    int64_t shape[VT_MAX_DIMS];
    if (vt_npy_read_f32_mem(data, size, "fuzz", &out, &n_dims, shape, &st) != 0)
        return 0;
    int64_t numel = 1;
    for (int i = 0; i < n_dims; i++)
        numel *= shape[i];
    volatile float sink = 0;
    if (numel > 0)
        sink = out[0] + out[numel - 1];
    (void)sink;
    vt_free(out);
    return 0;
}
