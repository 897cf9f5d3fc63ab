/*
 * adv_api.c - the C API under hostile sizes (issue 10, finding 5).
 *
 *     adv_api MODEL_DIR      (a DINOv2 folder with patch_size 1 and a wide MLP,
 *                             made by check_inputs.py)
 *
 * vtok_encode on 2^20 images of 65536x65536 through a patch-1 model: n*T*d
 * fits in int64 but n*T*d_ff does not. The work layout must not overflow
 * (UBSan reports it in the sanitizer build) and the plan must refuse the run
 * before touching the pixels: the buffer given is a few floats, so a plan
 * that wrapped to a small size would read far past it (ASan, or a crash).
 */
#include "vtok.h"

#include <stdio.h>
#include <string.h>

static int fails;

#define CHECK(c, ...)                               \
    do {                                            \
        if (!(c)) {                                 \
            fails++;                                \
            printf("FAIL " __VA_ARGS__);            \
            printf("\n");                           \
        } else {                                    \
            printf("ok   " __VA_ARGS__);            \
            printf("\n");                           \
        }                                           \
    } while (0)

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: adv_api MODEL_DIR\n");
        return 2;
    }
    vtok_status st = {0};
    vtok_model_params mp = vtok_model_default_params();
    mp.n_threads = 1;
    vtok_model *m = vtok_model_load(argv[1], &mp, &st);
    if (!m) {
        printf("FAIL load %s: %s\n", argv[1], st.msg);
        return 1;
    }
    vtok_model_info info;
    vtok_model_get_info(m, &info);
    CHECK(info.patch_size == 1 && info.any_size, "a patch-1 model with position interpolation "
          "(d %lld, d_ff %lld)", (long long)info.hidden_size, (long long)info.intermediate_size);
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = 1;
    vtok_ctx *ctx = vtok_ctx_new(m, &cp, &st);
    CHECK(ctx != NULL, "context: %s", st.msg);
    static float px[64]; /* far too small on purpose: must never be read */
    const int64_t sizes[][3] = {
        {1 << 20, 65536, 65536}, /* n*T*d_ff past int64 */
        {1 << 20, 65536, 1},     /* fits in int64, far over the memory limit */
        {1, 65536, 65536},       /* 2^32 tokens: over the memory limit */
    };
    for (int i = 0; ctx && i < 3; i++) {
        int rc = vtok_encode(ctx, px, sizes[i][0], 3, sizes[i][1], sizes[i][2], NULL);
        const char *msg = vtok_ctx_errmsg(ctx);
        CHECK(rc == VTOK_ELIMIT && strstr(msg, "memory limit"),
              "vtok_encode n=%lld %lldx%lld refused before reading pixels: rc %d: %s",
              (long long)sizes[i][0], (long long)sizes[i][1], (long long)sizes[i][2], rc, msg);
    }
    /* Sizes the API refuses outright. */
    const int64_t bad[][4] = {{0, 3, 4, 4}, {-1, 3, 4, 4}, {(1 << 20) + 1, 3, 4, 4},
                              {1, 4, 4, 4}, {1, 3, 0, 4}, {1, 3, 65537, 4}, {1, 3, 4, -4}};
    for (int i = 0; ctx && i < 7; i++) {
        int rc = vtok_encode(ctx, px, bad[i][0], bad[i][1], bad[i][2], bad[i][3], NULL);
        CHECK(rc < 0 && vtok_ctx_errmsg(ctx)[0], "vtok_encode n=%lld c=%lld %lldx%lld refused: %s",
              (long long)bad[i][0], (long long)bad[i][1], (long long)bad[i][2],
              (long long)bad[i][3], vtok_ctx_errmsg(ctx));
    }
    /* And the context still works after all that. */
    static float small[3 * 4 * 4];
    for (int i = 0; i < 48; i++)
        small[i] = (float)(i % 7) * 0.1f;
    CHECK(ctx && vtok_encode(ctx, small, 1, 3, 4, 4, NULL) == 0, "a normal encode afterwards: %s",
          ctx ? vtok_ctx_errmsg(ctx) : "");
    vtok_ctx_free(ctx);
    vtok_model_free(m);
    printf("%s\n", fails ? "FAILED" : "all passed");
    return fails ? 1 : 0;
}
