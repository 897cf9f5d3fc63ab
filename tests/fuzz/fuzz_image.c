/*
 * fuzz_image.c - libFuzzer target for the image decoders (JPEG, PNG, WebP,
 * GIF) behind vtok_image_decode.
 *
 * The input goes straight from libFuzzer's buffer so ASan sees any read past
 * its end. Limits are small (4096 x 4096, 16M pixels) so one input cannot
 * take more than a few hundred MB; the last input byte's bits switch EXIF
 * orientation and jpeg_fast_scale on and pick a target size, so those paths
 * are fuzzed too (the byte still belongs to the image: it is only peeked at;
 * the first bytes would not do, they are the format's magic). On success
 * every pixel is read so a wrong size shows up, and the status must be
 * clean; on failure the message must be one non-empty line and the output
 * untouched. Build and run with tests/fuzz/run_fuzz.sh.
 */
#include "image/image.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vtok_image_params p = vtok_image_default_params();
    p.max_width = 4096;
    p.max_height = 4096;
    p.max_pixels = (int64_t)16 << 20;
    if (size > 0) {
        uint8_t sel = data[size - 1];
        p.exif_orientation = sel & 1;
        p.jpeg_fast_scale = (sel >> 1) & 1;
        p.jpeg_target = (sel >> 2) * 8;
    }
    vtok_status st = {0};
    vtok_image img = {0};
    int rc = vtok_image_decode(data, size, &p, &img, &st);
    if (rc == VTOK_OK) {
        if (!img.data || img.width <= 0 || img.height <= 0 || img.width * img.height > (16 << 20))
            abort();
        size_t n = (size_t)img.width * (size_t)img.height * 3;
        unsigned sum = 0;
        for (size_t i = 0; i < n; i += 61)
            sum += img.data[i];
        volatile unsigned sink = sum + img.data[n - 1];
        (void)sink;
        vtok_image_free(&img);
    } else {
        if (rc >= 0 || img.data || !st.msg[0] || strchr(st.msg, '\n'))
            abort();
    }
    return 0;
}
