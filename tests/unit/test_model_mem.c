/*
 * test_model_mem.c - vtok_model_load_from_memory + vtok_encode on the inputs
 * of tests/fuzz/regress-model/ ([u16 config length][flags][config][weights],
 * see tests/fuzz/fuzz_model.c), outside the fuzzer: every seed-* model loads
 * and encodes its native size; crash-pos-table-grid (config image_size 32,
 * position table for a 2x2 grid) loads but encode refuses the input with
 * VTOK_ESHAPE instead of reading past the table. Run from the repository
 * root (ctest does). Returns non-zero on failure.
 */
#include "vtok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define DIR "tests/fuzz/regress-model/"

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b = NULL;
    long sz;
    if (f && fseek(f, 0, SEEK_END) == 0 && (sz = ftell(f)) > 0) {
        rewind(f);
        b = malloc((size_t)sz);
        if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
            free(b);
            b = NULL;
        }
        *n = (size_t)sz;
    }
    if (f)
        fclose(f);
    return b;
}

/* Load the input at path; encode zeros of its native size. Returns the encode
 * status (VTOK_OK) or the load's, with the message in msg. */
static int load_and_encode(const char *path, char *msg, size_t cap)
{
    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    msg[0] = '\0';
    if (!b || n < 3) {
        snprintf(msg, cap, "cannot read %s", path);
        free(b);
        return -1000;
    }
    size_t clen = (size_t)b[0] | (size_t)b[1] << 8;
    if (clen > n - 3)
        clen = n - 3;
    vtok_status st = {0};
    vtok_model *m = vtok_model_load_from_memory(b + 3 + clen, n - 3 - clen, (const char *)b + 3,
                                                clen, NULL, &st);
    int rc = st.code;
    if (m) {
        vtok_model_info info;
        vtok_model_get_info(m, &info);
        int64_t s = info.image_size, c = info.n_channels;
        vtok_ctx_params cp = vtok_ctx_default_params();
        cp.n_threads = 1;
        vtok_ctx *ctx = vtok_ctx_new(m, &cp, &st);
        float *px = calloc((size_t)(c * s * s), sizeof *px);
        rc = ctx && px ? vtok_encode(ctx, px, 1, c, s, s, NULL) : -1000;
        snprintf(msg, cap, "%s", ctx ? vtok_ctx_errmsg(ctx) : st.msg);
        free(px);
        vtok_ctx_free(ctx);
        vtok_model_free(m);
    } else {
        snprintf(msg, cap, "%s", st.msg);
    }
    free(b);
    return rc;
}

int main(void)
{
    static const char *const seeds[] = {"seed-clip", "seed-siglip", "seed-dinov2", "seed-vit",
                                        "seed-blip2", "seed-clip-torch-zip"};
    char msg[512];
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, DIR "%s", seeds[i]);
        int rc = load_and_encode(path, msg, sizeof msg);
        CHECK(rc == VTOK_OK, "%s: rc %d: %s", seeds[i], rc, msg);
    }
    int rc = load_and_encode(DIR "crash-pos-table-grid", msg, sizeof msg);
    CHECK(rc == VTOK_ESHAPE && strstr(msg, "position table is for a 2x2 patch grid"),
          "crash-pos-table-grid: rc %d: %s", rc, msg);
    printf("test_model_mem: %d checks, %d failures\n", n_check, n_fail);
    return n_fail != 0;
}
