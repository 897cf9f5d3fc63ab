/*
 * mova_run.c - MoVA's pieces for tests/blocks/mova_parity.py: the routing
 * prompt and parser (src/recipes/mova_route.h), Pix2Struct's patch grid
 * (src/image/pix2struct.h).
 *
 *   mova_run --prompt           the routing prompt, as raw bytes on stdout
 *   mova_run < answers.txt      per answer (one per line, "\n" and "\\" escaped
 *                               as in C), the mask as 7 digits on a line
 *   mova_run --grid MAX P < sizes.txt
 *                               per "h w" line, "rows cols" of the patch grid for
 *                               max_patches MAX and P x P patches
 *   mova_run --adapter W.safetensors X.npy TEXT.npy ROUTING OUT.npy [E0.npy ...]
 *                               the MoV-Adapter (src/connectors/mov_adapter.h):
 *                               X [R^2, d], TEXT [d_text], ROUTING "1,0,1,..."
 *                               (or "none": the routing pass), one feature file
 *                               per expert [R^2, C_e]; OUT [(R/2)^2, d_llm]
 *   mova_run --pix2struct MAX P IMAGE OUT.npy
 *                               Pix2Struct's flattened patches of an image file
 *                               (vt_pix2struct_patches): OUT [MAX, 2 + P P 3]
 *   mova_run --topk < lines      per "k v0 v1 ..." line, the indices of
 *                               vt_mov_topk (torch.topk's order, ties included)
 *   mova_run --align OH OW IN.npy OUT.npy
 *                               feature_align: IN [h, w, C] resized bilinear
 *                               (vt_resize_bilinear) to OUT [OH, OW, C]
 */
#include "connectors/mov_adapter.h"
#include "core/pool.h"
#include "models/pix2struct.h"
#include "recipes/mova_route.h"

#include <stdlib.h>

#include <stdio.h>
#include <string.h>

static int adapter(int argc, char **argv)
{
    vtok_status st = {0};
    vt_weights *w = NULL;
    float *x = NULL, *t = NULL, *f[VT_MOV_MAX_EXPERTS] = {0}, *mem = NULL, *out = NULL;
    vt_mov_adapter a;
    memset(&a, 0, sizeof a);
    vt_pool *pool = NULL;
    vt_owned own = {0};
    int nd, rc;
    int64_t sx[8], st_[8], sf[8];
    if ((rc = vt_weights_open(argv[2], 0, &w, &st)) || (rc = vt_npy_read_f32(argv[3], &x, &nd, sx, &st)) ||
        (rc = vt_npy_read_f32(argv[4], &t, &nd, st_, &st)))
        goto done;
    vt_wsrc src = vt_wsrc_one(w, argv[2], "");
    vt_loader ld;
    vt_loader_init(&ld, &src, "mov_adapter", &own, &st);
    if ((rc = vt_mov_adapter_load(&a, &ld, "", NULL, "mov_adapter")) || (rc = vt_loader_finish(&ld)))
        goto done;
    float routing[VT_MOV_MAX_EXPERTS] = {0};
    const int none = !strcmp(argv[5], "none");
    for (int64_t k = 0; !none && k < a.n_exp; k++)
        routing[k] = argv[5][2 * k] == '1';
    for (int64_t k = 0; k < a.n_exp && 7 + k < argc; k++)
        if ((rc = vt_npy_read_f32(argv[7 + k], &f[k], &nd, sf, &st)))
            goto done;
    const int64_t work = vt_mov_adapter_work_floats(&a), scr = vt_exec_scratch_floats(a.res * a.res);
    const int64_t H = a.res / 2, n_out = H * H * a.mlp.d_out;
    if (!(pool = vt_pool_new(2)) || !(mem = vt_alloc((size_t)(work + 2 * scr) * sizeof(float))) ||
        !(out = vt_alloc((size_t)n_out * sizeof(float)))) {
        rc = vt_fail(&st, VTOK_ENOMEM, "out of memory");
        goto done;
    }
    vt_exec e = {.pool = pool, .k = vt_kernels_get(), .scratch = mem + work, .scratch_stride = scr};
    vt_mov_adapter_forward(&a, &e, x, (const float *const *)f, none ? NULL : routing, t, out, mem);
    int64_t os[2] = {H * H, a.mlp.d_out};
    rc = vt_npy_write_f32(argv[6], out, 2, os, &st);
done:
    vt_owned_free(&own);
    if (rc)
        fprintf(stderr, "mova_run: %s\n", st.msg);
    vt_mov_adapter_free(&a);
    vt_pool_free(pool);
    vt_free(mem);
    vt_free(out);
    vt_free(x);
    vt_free(t);
    for (int k = 0; k < VT_MOV_MAX_EXPERTS; k++)
        vt_free(f[k]);
    vt_weights_close(w);
    return rc ? 1 : 0;
}

static int align(char **argv)
{
    vtok_status st = {0};
    float *x = NULL, *y = NULL;
    int nd;
    int64_t sh[8];
    const int64_t oh = atoll(argv[2]), ow = atoll(argv[3]);
    int rc = vt_npy_read_f32(argv[4], &x, &nd, sh, &st);
    if (!rc && (nd != 3 || oh < 1 || ow < 1))
        rc = vt_fail(&st, VTOK_ESHAPE, "IN must be [h, w, C] and OH, OW positive");
    if (!rc && !(y = vt_alloc((size_t)(oh * ow * sh[2]) * sizeof(float))))
        rc = vt_fail(&st, VTOK_ENOMEM, "out of memory");
    if (!rc) {
        vt_resize_bilinear(x, sh[0], sh[1], sh[2], oh, ow, y);
        int64_t os[3] = {oh, ow, sh[2]};
        rc = vt_npy_write_f32(argv[5], y, 3, os, &st);
    }
    if (rc)
        fprintf(stderr, "mova_run: %s\n", st.msg);
    vt_free(x);
    vt_free(y);
    return rc ? 1 : 0;
}

static int pix2struct(char **argv)
{
    vtok_status st = {0};
    vtok_image img = {0};
    float *out = NULL, *work = NULL;
    const int64_t mp = atoll(argv[2]), p = atoll(argv[3]);
    int rc = vtok_image_load(argv[4], NULL, &img, &st);
    if (!rc && (mp < 1 || p < 1))
        rc = vt_fail(&st, VTOK_EINVAL, "MAX and P must be positive");
    if (!rc && (!(out = vt_alloc((size_t)(mp * (2 + p * p * 3)) * sizeof(float))) ||
                !(work = vt_alloc((size_t)vt_pix2struct_work_floats(img.height, img.width, mp, p) *
                                  sizeof(float)))))
        rc = vt_fail(&st, VTOK_ENOMEM, "out of memory");
    if (!rc)
        rc = vt_pix2struct_patches(&img, mp, p, out, work, &st);
    if (!rc) {
        int64_t os[2] = {mp, 2 + p * p * 3};
        rc = vt_npy_write_f32(argv[5], out, 2, os, &st);
    }
    if (rc)
        fprintf(stderr, "mova_run: %s\n", st.msg);
    vtok_image_free(&img);
    vt_free(out);
    vt_free(work);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc > 5 && !strcmp(argv[1], "--pix2struct"))
        return pix2struct(argv);
    if (argc > 5 && !strcmp(argv[1], "--align"))
        return align(argv);
    if (argc > 6 && !strcmp(argv[1], "--adapter"))
        return adapter(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "--prompt")) {
        fputs(vt_mova_routing_prompt(), stdout);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "--topk")) { /* "k v0 v1 ..." lines -> indices */
        char buf[1024];
        while (fgets(buf, sizeof buf, stdin)) {
            float v[VT_MOV_MAX_EXPERTS];
            int sel[VT_MOV_MAX_EXPERTS], n = 0, used = 0;
            long long k = 0;
            const char *c = buf;
            if (sscanf(c, "%lld%n", &k, &used) != 1)
                continue;
            c += used;
            while (n < VT_MOV_MAX_EXPERTS && sscanf(c, "%f%n", &v[n], &used) == 1) {
                c += used;
                n++;
            }
            const int64_t got = vt_mov_topk(v, n, k, sel);
            for (int64_t i = 0; i < got; i++)
                printf("%s%d", i ? " " : "", sel[i]);
            printf("\n");
        }
        return 0;
    }
    if (argc > 3 && !strcmp(argv[1], "--grid")) {
        const long long mp = atoll(argv[2]), p = atoll(argv[3]);
        long long h, w;
        while (scanf("%lld %lld", &h, &w) == 2) {
            int64_t r, c;
            vt_pix2struct_grid(h, w, mp, p, p, &r, &c);
            printf("%lld %lld\n", (long long)r, (long long)c);
        }
        return 0;
    }
    char line[8192], text[8192];
    while (fgets(line, sizeof line, stdin)) {
        size_t n = 0;
        for (size_t i = 0; line[i] && line[i] != '\n' && n < sizeof text; i++) {
            if (line[i] == '\\' && line[i + 1] == 'n') {
                text[n++] = '\n';
                i++;
            } else if (line[i] == '\\' && line[i + 1] == '\\') {
                text[n++] = '\\';
                i++;
            } else {
                text[n++] = line[i];
            }
        }
        int mask[VT_MOVA_EXPERTS];
        vt_mova_parse_routing(text, n, mask);
        for (int k = 0; k < VT_MOVA_EXPERTS; k++)
            putchar('0' + mask[k]);
        putchar('\n');
    }
    return 0;
}
