/*
 * sam_run.c - the SAM image encoder (src/models/sam.h) for
 * tests/blocks/sam_parity.py.
 *
 *   sam_run W.safetensors IN.npy OUT.npy [CFG [BASE [THREADS]]]
 *     IN [C, S, S] (S = vt_sam_in_size), OUT [tokens, channels];
 *     CFG a JSON options object or "-" (none), BASE the tensors' prefix
 *     ("" by default), THREADS the pool size (2).
 *   Prints what was loaded: "depth D width C heads H window W global i,j,...
 *   in S out T x C".
 */
#include "core/pool.h"
#include "models/sam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: sam_run W.safetensors IN.npy OUT.npy [CFG [BASE [THREADS]]]\n");
        return 2;
    }
    vtok_status st = {0};
    vt_weights *w = NULL;
    cJSON *cfg = NULL;
    float *x = NULL, *mem = NULL, *out = NULL;
    vt_sam m;
    memset(&m, 0, sizeof m);
    vt_pool *pool = NULL;
    vt_owned own = {0};
    int nd, rc;
    int64_t sx[8];
    const char *base = argc > 5 ? argv[5] : "";
    const int threads = argc > 6 ? atoi(argv[6]) : 2;
    if (argc > 4 && strcmp(argv[4], "-") &&
        !(cfg = vt_json_parse_object(argv[4], strlen(argv[4]), "CFG", &st))) {
        rc = 1;
        goto done;
    }
    if ((rc = vt_weights_open(argv[1], 0, &w, &st)) ||
        (rc = vt_npy_read_f32(argv[2], &x, &nd, sx, &st)))
        goto done;
    vt_wsrc src = vt_wsrc_one(w, argv[1], "");
    vt_loader ld;
    vt_loader_init(&ld, &src, "sam", &own, &st);
    rc = vt_sam_load(&m, &ld, base, cfg);
    if (!rc || !st.msg[0]) /* tensors only missing: finish names them */
        rc = vt_loader_finish(&ld);
    if (rc)
        goto done;
    const int64_t S = vt_sam_in_size(&m), T = vt_sam_out_tokens(&m), C = vt_sam_out_channels(&m);
    if (nd != 3 || sx[0] != m.in_ch || sx[1] != S || sx[2] != S) {
        rc = vt_fail(&st, VTOK_ESHAPE, "IN must be [%lld, %lld, %lld]", (long long)m.in_ch,
                     (long long)S, (long long)S);
        goto done;
    }
    printf("depth %lld width %lld heads %lld window %lld global ", (long long)m.depth,
           (long long)m.d, (long long)m.heads, (long long)m.window);
    for (int64_t i = 0, k = 0; i < m.depth; i++)
        if (!m.blocks[i].win)
            printf("%s%lld", k++ ? "," : "", (long long)i);
    printf(" in %lld out %lld x %lld\n", (long long)S, (long long)T, (long long)C);
    const int64_t work = vt_sam_work_floats(&m), scr = vt_exec_scratch_floats(0);
    if (!(pool = vt_pool_new(threads < 1 ? 1 : threads)) ||
        !(mem = vt_alloc((size_t)(work + vt_pool_size(pool) * scr) * sizeof(float))) ||
        !(out = vt_alloc((size_t)(T * C) * sizeof(float)))) {
        rc = vt_fail(&st, VTOK_ENOMEM, "out of memory");
        goto done;
    }
    vt_exec e = {.pool = pool, .k = vt_kernels_get(), .scratch = mem + work, .scratch_stride = scr};
    vt_sam_forward(&m, &e, x, out, mem);
    int64_t os[2] = {T, C};
    rc = vt_npy_write_f32(argv[3], out, 2, os, &st);
done:
    if (rc)
        fprintf(stderr, "sam_run: %s\n", st.msg[0] ? st.msg : "failed");
    vt_owned_free(&own);
    vt_sam_free(&m);
    vt_pool_free(pool);
    cJSON_Delete(cfg);
    vt_free(mem);
    vt_free(out);
    vt_free(x);
    vt_weights_close(w);
    return rc ? 1 : 0;
}
