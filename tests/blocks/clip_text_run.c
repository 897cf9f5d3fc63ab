/*
 * clip_text_run - the CLIP text tower on texts, for tests/blocks/clip_text_parity.py.
 *
 *   clip_text_run MODEL_DIR TEXTS.json OUT_DIR [--truncate] [--threads N]
 *
 * For text i writes OUT_DIR/last_i.npy [T, d], pooled_i.npy [d],
 * embeds_i.npy [proj] and prints one JSON line {"ids": [[...], ...]};
 * a text that fails prints {"error": "..."} for it instead. A model that
 * does not load: the message on stderr, exit 1.
 */
#include "../../src/core/ops.h"
#include "../../src/io/io.h"
#include "../../src/io/opt.h"
#include "../../src/models/clip_text.h"
#include "vtok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: clip_text_run MODEL_DIR TEXTS.json OUT_DIR [--truncate] "
                        "[--threads N]\n");
        return 2;
    }
    int truncate = 0, threads = 2;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--truncate")) truncate = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    }
    vtok_status st = {0};
    vt_clip_text m;
    if (vt_clip_text_load(&m, argv[1], &st)) {
        fprintf(stderr, "%s\n", st.msg);
        return 1;
    }
    char *text = NULL;
    size_t len = 0;
    cJSON *texts = NULL;
    if (vt_read_file(argv[2], 1 << 24, &text, &len, &st) ||
        !(texts = cJSON_ParseWithLength(text, len)) || !cJSON_IsArray(texts)) {
        fprintf(stderr, "%s: cannot read a JSON list\n", argv[2]);
        return 1;
    }
    free(text);
    vt_pool *pool = vt_pool_new(threads);
    int64_t d = m.enc.d, pd = m.proj.n_out, T = m.max_pos;
    float *work = vt_alloc((size_t)(vt_clip_text_work_floats(&m, T) +
                                    threads * vt_exec_scratch_floats(T)) * sizeof(float));
    float *last = malloc((size_t)(T * d) * sizeof(float)), *pooled = malloc((size_t)d * 4);
    float *embeds = malloc((size_t)(pd ? pd : 1) * 4);
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    vt_exec e = {.pool = pool, .k = vt_kernels_get(),
                 .scratch = work + vt_clip_text_work_floats(&m, T),
                 .scratch_stride = vt_exec_scratch_floats(T)};
    printf("[");
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, texts) {
        printf("%s", i ? ",\n" : "");
        st.msg[0] = 0;
        int64_t n = vt_clip_text_ids(&m, it->valuestring ? it->valuestring : "", truncate, ids, T,
                                     &st);
        if (n < 0 || vt_clip_text_forward(&m, &e, ids, n, work, last, pooled, pd ? embeds : NULL,
                                          &st)) {
            printf("{\"error\": ");
            put_json_str(st.msg);
            printf("}");
            i++;
            continue;
        }
        char path[4200];
        int64_t sh[2] = {n, d};
        snprintf(path, sizeof path, "%s/last_%d.npy", argv[3], i);
        vtok_npy_save(path, last, 2, sh, &st);
        snprintf(path, sizeof path, "%s/pooled_%d.npy", argv[3], i);
        vtok_npy_save(path, pooled, 1, &d, &st);
        if (pd) {
            snprintf(path, sizeof path, "%s/embeds_%d.npy", argv[3], i);
            vtok_npy_save(path, embeds, 1, &pd, &st);
        }
        printf("{\"ids\": [");
        for (int64_t k = 0; k < n; k++) printf("%s%d", k ? ", " : "", (int)ids[k]);
        printf("], \"eos_pos\": %lld}", (long long)vt_clip_text_eos_pos(&m, ids, n));
        i++;
    }
    printf("]\n");
    cJSON_Delete(texts);
    free(last);
    free(pooled);
    free(embeds);
    free(ids);
    vt_free(work);
    vt_pool_free(pool);
    vt_clip_text_free(&m);
    return 0;
}
