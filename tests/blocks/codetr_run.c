/*
 * codetr_run.c - MoVA's Co-DETR expert (src/models/codetr.h) for
 * tests/blocks/codetr_parity.py.
 *
 *   codetr_run W.safetensors CFG.json|- IN.npy OUT.npy [BASE]
 *       loads the expert from W under the name prefix BASE (default ""),
 *       with the options object in CFG.json ("-": none, the released
 *       defaults); IN [3, S, S] with S = in_size; OUT [out_tokens, C].
 * Errors go to stderr as "codetr_run: MESSAGE", exit status 1.
 */
#include "core/pool.h"
#include "models/codetr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: codetr_run W.safetensors CFG.json|- IN.npy OUT.npy [BASE]\n");
        return 2;
    }
    vtok_status st = {0};
    vt_weights *w = NULL;
    cJSON *cfg = NULL;
    char *text = NULL;
    float *in = NULL, *mem = NULL, *out = NULL;
    vt_codetr m;
    memset(&m, 0, sizeof m);
    vt_pool *pool = NULL;
    vt_owned own = {0};
    int nd, rc;
    int64_t sh[8];
    size_t len;
    if (strcmp(argv[2], "-") &&
        ((rc = vt_read_file(argv[2], 1 << 20, &text, &len, &st)) ||
         !(cfg = vt_json_parse_object(text, len, argv[2], &st)))) {
        rc = rc ? rc : st.code;
        goto done;
    }
    if ((rc = vt_weights_open(argv[1], 0, &w, &st)))
        goto done;
    vt_wsrc src = vt_wsrc_one(w, argv[1], "");
    vt_loader ld;
    vt_loader_init(&ld, &src, "codetr", &own, &st);
    if ((rc = vt_codetr_load(&m, &ld, argc > 5 ? argv[5] : "", cfg)) ||
        (rc = vt_loader_finish(&ld)))
        goto done;
    const int64_t S = vt_codetr_in_size(&m);
    if ((rc = vt_npy_read_f32(argv[3], &in, &nd, sh, &st)))
        goto done;
    if (nd != 3 || sh[0] != 3 || sh[1] != S || sh[2] != S) {
        rc = vt_fail(&st, VTOK_ESHAPE, "%s: the input must be [3, %lld, %lld]", argv[3],
                     (long long)S, (long long)S);
        goto done;
    }
    const int64_t work = vt_codetr_work_floats(&m),
                  scr = vt_exec_scratch_floats(vt_codetr_max_tokens(&m)),
                  T = vt_codetr_out_tokens(&m), C = vt_codetr_out_channels(&m);
    if (!(pool = vt_pool_new(2)) || !(mem = vt_alloc((size_t)(work + 2 * scr) * sizeof(float))) ||
        !(out = vt_alloc((size_t)(T * C) * sizeof(float)))) {
        rc = vt_fail(&st, VTOK_ENOMEM, "out of memory");
        goto done;
    }
    vt_exec e = {.pool = pool, .k = vt_kernels_get(), .scratch = mem + work, .scratch_stride = scr};
    vt_codetr_forward(&m, &e, in, out, mem);
    const int64_t os[2] = {T, C};
    rc = vt_npy_write_f32(argv[4], out, 2, os, &st);
done:
    if (rc)
        fprintf(stderr, "codetr_run: %s\n", st.msg);
    vt_codetr_free(&m);
    vt_owned_free(&own);
    vt_pool_free(pool);
    vt_free(mem);
    vt_free(out);
    vt_free(in);
    cJSON_Delete(cfg);
    free(text);
    vt_weights_close(w);
    return rc ? 1 : 0;
}
