/*
 * bench_resize.c - time vtok_image_resize (Pillow-exact bicubic) on the
 * sizes a vision preprocessor meets most: 640x480 -> 224x224 and
 * 1920x1080 -> 336x336. Prints the median of many runs, for the best code
 * path and for the plain-C reference (vtok_force_reference_kernels).
 * tests/image/check_resample.py --bench --bench-tool build/bench_resize
 * times Pillow on the same images and prints the ratio.
 *
 * Build (from the repo root, after cmake --build build):
 *   gcc -O2 -std=c11 -Iinclude -Ibuild/generated/include bench/bench_resize.c build/libvtok.a -lcjson -ljpeg -lpng -lwebp -lz -lm -lpthread -o build/bench_resize
 */
#define _POSIX_C_SOURCE 200809L
#include "vtok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Same pattern as bench_image() in tests/image/check_resample.py. */
static void fill(vtok_image *img, int64_t w, int64_t h)
{
    img->width = w;
    img->height = h;
    img->data = malloc((size_t)(w * h * 3));
    if (!img->data) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++)
            for (int64_t c = 0; c < 3; c++)
                img->data[(y * w + x) * 3 + c] =
                    (uint8_t)((x * 3 + y * 5 + c * 71 + ((x * y) >> 6)) & 255);
}

#define REPS 60

static int run(const char *label, int64_t w, int64_t h, int64_t ow, int64_t oh)
{
    vtok_image src, dst = {0};
    vtok_status st = {0};
    double t[REPS];
    fill(&src, w, h);
    for (int i = 0; i < REPS + 3; i++) {
        double t0 = now_ms();
        int rc = vtok_image_resize(&src, ow, oh, VTOK_RESAMPLE_BICUBIC, &dst, &st);
        double dt = now_ms() - t0;
        if (rc) {
            fprintf(stderr, "resize failed: %s\n", st.msg);
            free(src.data);
            return 1;
        }
        vtok_free(dst.data);
        if (i >= 3) /* warm-up runs are not counted */
            t[i - 3] = dt;
    }
    qsort(t, REPS, sizeof t[0], cmp_double);
    printf("%lldx%lld -> %lldx%lld bicubic%s: %.3f ms (median of %d, min %.3f)\n", (long long)w,
           (long long)h, (long long)ow, (long long)oh, label, t[REPS / 2], REPS, t[0]);
    free(src.data);
    return 0;
}

int main(void)
{
    int rc = 0;
    printf("vtok %s, kernels %s\n", vtok_version(), vtok_kernel_name());
    rc |= run("", 640, 480, 224, 224);
    rc |= run("", 1920, 1080, 336, 336);
    vtok_force_reference_kernels(1);
    rc |= run(" [plain C]", 640, 480, 224, 224);
    rc |= run(" [plain C]", 1920, 1080, 336, 336);
    return rc;
}
