/*
 * consumer.c - a program outside the project, built by test_install.sh
 * against an installed vtok (pkg-config, shared and static; find_package).
 * It checks that the installed header and library agree on the version and
 * touches JSON, image decoding and the thread pool, so a link line missing
 * one of the dependencies fails.
 *
 * Usage: consumer IMAGE MODEL_DIR
 */
#include <vtok.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: consumer IMAGE MODEL_DIR\n");
        return 2;
    }
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", VTOK_VERSION_MAJOR, VTOK_VERSION_MINOR,
             VTOK_VERSION_PATCH);
    if (strcmp(want, vtok_version()) != 0 || strcmp(VTOK_VERSION_STRING, vtok_version()) != 0) {
        fprintf(stderr, "consumer: header says %s (%s), library says %s\n", want,
                VTOK_VERSION_STRING, vtok_version());
        return 1;
    }

    vtok_status st = {0};
    vtok_image img = {0};
    if (vtok_image_load(argv[1], NULL, &img, &st) != 0) {
        fprintf(stderr, "consumer: %s\n", st.msg);
        return 1;
    }
    vtok_model *m = vtok_model_load(argv[2], NULL, &st);
    if (!m) {
        fprintf(stderr, "consumer: %s\n", st.msg);
        vtok_image_free(&img);
        return 1;
    }
    vtok_ctx *ctx = vtok_ctx_new(m, NULL, &st);
    if (!ctx) {
        fprintf(stderr, "consumer: %s\n", st.msg);
        vtok_model_free(m);
        vtok_image_free(&img);
        return 1;
    }
    printf("vtok %s, kernels %s, image %lldx%lld\n", vtok_version(), vtok_kernel_name(),
           (long long)img.width, (long long)img.height);
    vtok_ctx_free(ctx);
    vtok_model_free(m);
    vtok_image_free(&img);
    return 0;
}
