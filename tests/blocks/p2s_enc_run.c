/*
 * p2s_enc_run.c - the Pix2Struct vision encoder (src/models/p2s_enc.h) for
 * tests/blocks/p2s_enc_parity.py.
 *
 *   p2s_enc_run W.safetensors CFG.json|- BASE PATCHES.npy OUT.npy [THREADS]
 *
 * loads the encoder's tensors under BASE ("" allowed) with the options of
 * CFG ("-": none), checks the patch rows' ids (vt_p2s_enc_check) and writes
 * last_hidden_state [L, hidden] for PATCHES [L, 2 + P]. Errors go to stderr
 * with exit status 1.
 */
#include "core/pool.h"
#include "models/p2s_enc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: p2s_enc_run W.safetensors CFG.json|- BASE PATCHES.npy OUT.npy "
                        "[THREADS]\n");
        return 2;
    }
    vtok_status st = {0};
    vt_weights *w = NULL;
    cJSON *cfg = NULL;
    float *x = NULL, *mem = NULL, *out = NULL;
    vt_p2s_enc m;
    memset(&m, 0, sizeof m);
    vt_pool *pool = NULL;
    vt_owned own = {0};
    int nd = 0, rc = vt_weights_open(argv[1], 0, &w, &st);
    int64_t sx[VT_MAX_DIMS];
    const int threads = argc > 6 ? atoi(argv[6]) : 2;
    if (!rc && strcmp(argv[2], "-")) {
        char *text = NULL;
        size_t size = 0;
        if (!(rc = vt_read_file(argv[2], 1 << 20, &text, &size, &st)) &&
            !(cfg = cJSON_ParseWithLength(text, size)))
            rc = vt_fail(&st, VTOK_EFORMAT, "%s: not JSON", argv[2]);
        free(text);
    }
    if (!rc)
        rc = vt_npy_read_f32(argv[4], &x, &nd, sx, &st);
    if (rc)
        goto done;
    vt_wsrc src = vt_wsrc_one(w, argv[1], "");
    vt_loader ld;
    vt_loader_init(&ld, &src, "p2s_enc", &own, &st);
    if ((rc = vt_p2s_enc_load(&m, &ld, argv[3], cfg)) || (rc = vt_loader_finish(&ld)))
        goto done;
    if (nd != 2 || sx[1] != vt_p2s_enc_in_width(&m) || sx[0] < 1) {
        rc = vt_fail(&st, VTOK_ESHAPE, "PATCHES must be [L, %lld]",
                     (long long)vt_p2s_enc_in_width(&m));
        goto done;
    }
    const int64_t L = sx[0];
    if ((rc = vt_p2s_enc_check(&m, x, L, &st)))
        goto done;
    const int64_t work = vt_p2s_enc_work_floats(&m, L), scr = vt_exec_scratch_floats(L);
    const int64_t n_out = vt_p2s_enc_out_tokens(&m, L) * vt_p2s_enc_out_channels(&m);
    if (!(pool = vt_pool_new(threads > 0 ? threads : 1)) ||
        !(mem = vt_alloc((size_t)(work + (threads > 0 ? threads : 1) * scr) * sizeof(float))) ||
        !(out = vt_alloc((size_t)n_out * sizeof(float)))) {
        rc = vt_fail(&st, VTOK_ENOMEM, "out of memory");
        goto done;
    }
    vt_exec e = {.pool = pool, .k = vt_kernels_get(), .scratch = mem + work,
                 .scratch_stride = scr};
    vt_p2s_enc_forward(&m, &e, x, L, out, mem);
    int64_t os[2] = {L, vt_p2s_enc_out_channels(&m)};
    rc = vt_npy_write_f32(argv[5], out, 2, os, &st);
done:
    if (rc)
        fprintf(stderr, "p2s_enc_run: %s\n", st.msg);
    vt_owned_free(&own);
    vt_p2s_enc_free(&m);
    vt_pool_free(pool);
    vt_free(mem);
    vt_free(out);
    vt_free(x);
    cJSON_Delete(cfg);
    vt_weights_close(w);
    return rc ? 1 : 0;
}
