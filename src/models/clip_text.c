/*
 * clip_text.c - CLIP's text tower: CLIPTextTransformer and
 * CLIPModel.get_text_features (transformers modeling_clip.py), loaded from
 * a full CLIPModel folder (text_model.*, text_projection.weight,
 * logit_scale) or a CLIPTextModel(WithProjection) folder.
 *
 * embeddings = token_embedding[ids] + position_embedding[0..T)
 * (CLIPTextEmbeddings.forward; T > max_position_embeddings is refused
 * there, as here); the encoder is CLIP's pre-LN block (the vision tower's
 * vt_vit layers, here with causal self-attention: CLIPTextTransformer passes
 * create_causal_mask / is_causal=True); final_layer_norm on every position;
 * pooler_output = the row at the EOS position (vt_clip_text_eos_pos);
 * text_embeds = text_projection(pooler_output), no bias.
 *
 * The tokenizer is the folder's tokenizer.json (src/text: CLIP's
 * normalizer, Split regex and end_of_word_suffix are supported there).
 */
#include "clip_text.h"

#include "../core/ctx.h"
#include "family.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIG_BYTES (16u << 20)
#define CLIP_LEGACY_EOS 49407

static const vt_vit_defaults text_defaults = {
    /* CLIPTextConfig.__init__ defaults (configuration_clip.py) */
    .d = 512, .d_ff = 2048, .layers = 12, .heads = 8, .image = 1, .patch = 1,
    .channels = 1, .act = "quick_gelu", .eps = 1e-5,
};

/* config.json of the folder, and the text settings inside it. */
static int read_config(const char *dir, cJSON **cfg, const cJSON **tcfg, int *composite,
                       vtok_status *st)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = NULL;
    size_t len = 0;
    int rc = vt_read_file(path, MAX_CONFIG_BYTES, &text, &len, st);
    if (rc)
        return rc;
    *cfg = vt_json_parse_object(text, len, "config.json", st);
    free(text);
    if (!*cfg)
        return st && st->code ? st->code : VTOK_EFORMAT;
    const char *mt = NULL;
    if ((rc = vt_opt_str(*cfg, "model_type", NULL, &mt, "config.json", st)))
        return rc;
    if (!mt)
        return vt_fail(st, VTOK_EFORMAT, "%s: no model_type", path);
    if (!strcmp(mt, "clip_vision_model"))
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: a CLIP vision model has no text tower "
                       "(a full CLIPModel folder is needed)", dir);
    if (!strcmp(mt, "clip_text_model")) {
        *tcfg = *cfg;
        *composite = 0;
        return 0;
    }
    if (strcmp(mt, "clip"))
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: model_type '%s' has no CLIP text tower "
                       "(expected clip or clip_text_model)", dir, mt);
    *composite = 1;
    *tcfg = cJSON_GetObjectItemCaseSensitive(*cfg, "text_config");
    if (*tcfg && !cJSON_IsObject(*tcfg))
        return vt_fail(st, VTOK_EFORMAT, "config.json: text_config is not an object");
    return 0;
}

int vt_clip_text_load(vt_clip_text *m, const char *path, vtok_status *st)
{
    memset(m, 0, sizeof *m);
    if (!path || strlen(path) > 4000)
        return vt_fail(st, VTOK_EINVAL, "no or too long model path");
    char dir[4100];
    snprintf(dir, sizeof dir, "%s", path);
    if (!vt_is_dir(dir)) { /* DIR/config.json names the folder too */
        char *slash = strrchr(dir, '/');
        if (!slash || strcmp(slash + 1, "config.json"))
            return vt_fail(st, VTOK_EIO, "%s: not a model folder", path);
        *slash = 0;
    }
    cJSON *cfg = NULL, *empty = NULL;
    const cJSON *tcfg = NULL;
    int composite = 0, rc = read_config(dir, &cfg, &tcfg, &composite, st);
    if (rc)
        goto done;
    if (!tcfg)
        tcfg = empty = cJSON_CreateObject(); /* absent: the class defaults */
    vt_vit *v = &m->enc;
    if ((rc = vt_read_vit_config(tcfg, &text_defaults, v, st)) ||
        (rc = vt_opt_int(tcfg, "vocab_size", 49408, &m->vocab, "config.json", st)) ||
        (rc = vt_opt_int(tcfg, "max_position_embeddings", 77, &m->max_pos, "config.json", st)) ||
        /* CLIPTextConfig's default eos_token_id (older releases had 2) */
        (rc = vt_opt_int(tcfg, "eos_token_id", CLIP_LEGACY_EOS, &m->eos_id, "config.json", st)))
        goto done;
    if (v->d < 1 || v->n_heads < 1 || v->d % v->n_heads || v->d_ff < 1 || v->n_layers < 1 ||
        v->n_layers > 1000 || m->vocab < 1 || m->max_pos < 1 || m->max_pos > 1 << 20) {
        rc = vt_fail(st, VTOK_EFORMAT, "config.json: bad text_config sizes (hidden_size %lld, "
                     "heads %lld, layers %lld, vocab %lld, max_position_embeddings %lld)",
                     (long long)v->d, (long long)v->n_heads, (long long)v->n_layers,
                     (long long)m->vocab, (long long)m->max_pos);
        goto done;
    }
    v->causal = 1;
    if ((rc = vt_weights_open(dir, 1, &m->w, st)))
        goto done;

    /* the tower's tensors sit under text_model. in every CLIP text class */
    vt_wsrc src = vt_wsrc_one(m->w, dir, "text_model.");
    if (!vt_wsrc_has_prefix(&src)) {
        rc = vt_fail(st, VTOK_EUNSUPPORTED, "%s: no text tower (no text_model.* tensors; a "
                     "vision-only checkpoint?)", dir);
        goto done;
    }
    vt_loader ld;
    vt_loader_init(&ld, &src, "CLIP text tower", &v->own, st);
    m->tok_emb = vt_get(&ld, "embeddings.token_embedding.weight", 2, m->vocab, v->d, 0, 0);
    m->pos_emb = vt_get(&ld, "embeddings.position_embedding.weight", 2, m->max_pos, v->d, 0, 0);
    vt_load_clip_encoder(v, &ld);
    vt_get_norm(&ld, &m->final_ln, "final_layer_norm", v->d, v->eps);
    /* text_projection and logit_scale sit beside text_model. */
    ld.src.prefix = "";
    int64_t pd = -1;
    if (composite || vt_find(&ld, "text_projection.weight")) {
        int64_t shape[2] = {-1, v->d};
        m->proj.w = vt_get_shape(&ld, "text_projection.weight", 2, shape);
        pd = shape[0];
        m->proj.n_out = m->proj.w ? pd : 0;
        m->proj.n_in = v->d;
    }
    m->logit_scale = 0.0f;
    const vt_st_tensor *ls = vt_find(&ld, "logit_scale");
    if (ls && ls->numel == 1) {
        int64_t shape[VT_MAX_DIMS];
        for (int i = 0; i < VT_MAX_DIMS; i++)
            shape[i] = -1;
        const float *p = vt_get_shape(&ld, "logit_scale", ls->n_dims, shape);
        if (p)
            m->logit_scale = p[0];
    } else if (composite) {
        vt_get(&ld, "logit_scale", 1, 1, 0, 0, 0); /* absent: named as missing */
    }
    if ((rc = vt_loader_finish(&ld)))
        goto done;
    int64_t cfg_pd = 0;
    if (composite && (rc = vt_opt_int(cfg, "projection_dim", pd, &cfg_pd, "config.json", st)))
        goto done;
    if (composite && cfg_pd != pd) {
        rc = vt_fail(st, VTOK_ESHAPE, "config.json: projection_dim %lld but "
                     "text_projection.weight has %lld rows", (long long)cfg_pd, (long long)pd);
        goto done;
    }
    if ((rc = vt_tok_load(&m->tok, dir, st)))
        goto done;
    if (vt_tok_vocab_size(m->tok) > m->vocab) {
        rc = vt_fail(st, VTOK_ESHAPE, "%s: tokenizer has %lld ids but the text tower's vocab_size "
                     "is %lld", dir, (long long)vt_tok_vocab_size(m->tok), (long long)m->vocab);
        goto done;
    }
done:
    cJSON_Delete(cfg);
    cJSON_Delete(empty);
    if (rc)
        vt_clip_text_free(m);
    return rc;
}

void vt_clip_text_free(vt_clip_text *m)
{
    if (!m)
        return;
    vt_vit_free(&m->enc);
    vt_weights_close(m->w);
    vt_tok_free(m->tok);
    memset(m, 0, sizeof *m);
}

int64_t vt_clip_text_ids(const vt_clip_text *m, const char *text, int truncate, int32_t *ids,
                         int64_t cap, vtok_status *st)
{
    if (!m || !m->tok || !text || cap < 0 || (!ids && cap))
        return vt_fail(st, VTOK_EINVAL, "vt_clip_text_ids: bad arguments");
    size_t len = strlen(text);
    int64_t n = vt_tok_encode(m->tok, text, len, 1, NULL, 0, st);
    if (n < 0)
        return n;
    int32_t *all = malloc((size_t)(n ? n : 1) * sizeof *all);
    if (!all)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    int64_t r = vt_tok_encode(m->tok, text, len, 1, all, n, st);
    if (r >= 0 && n > m->max_pos) {
        if (!truncate) {
            r = vt_fail(st, VTOK_ELIMIT, "text is %lld tokens, over max_position_embeddings "
                        "%lld (truncation is off)", (long long)n, (long long)m->max_pos);
        } else {
            /* HF truncation=True, max_length=max_pos: the text's ids are cut
             * so that they and the post-processor's special ids fit
             * (tokenizers' truncate before post_process, with
             * added_tokens(is_pair=false) subtracted) */
            int64_t np = vt_tok_encode(m->tok, text, len, 0, NULL, 0, st);
            int32_t *plain = np >= 0 ? malloc((size_t)(np ? np : 1) * sizeof *plain) : NULL;
            int64_t k = n - np, a = 0;
            if (np < 0) {
                r = np;
            } else if (!plain) {
                r = vt_fail(st, VTOK_ENOMEM, "out of memory");
            } else if ((r = vt_tok_encode(m->tok, text, len, 0, plain, np, st)) >= 0) {
                /* where the text's ids sit inside the template's */
                while (a <= k && memcmp(all + a, plain, (size_t)np * sizeof *plain))
                    a++;
                if (a > k || k >= m->max_pos) {
                    r = vt_fail(st, VTOK_ELIMIT, "cannot truncate to %lld tokens",
                                (long long)m->max_pos);
                } else {
                    int64_t keep = m->max_pos - k;
                    memmove(all + a + keep, all + a + np, (size_t)(k - a) * sizeof *all);
                    n = m->max_pos;
                    r = n;
                }
            }
            free(plain);
        }
    }
    if (r >= 0) {
        if (ids && cap > 0) /* cap 0 (ids NULL) only sizes */
            memcpy(ids, all, (size_t)(n < cap ? n : cap) * sizeof *ids);
        r = n;
    }
    free(all);
    return r;
}

/*
 * The pooled position, as CLIPTextTransformer.forward picks it (transformers
 * main, modeling_clip.py, huggingface/transformers@000f1ffd): when the
 * largest id of the sequence is 49407 (openai's <|endoftext|>, which ends
 * every sequence of their tokenizer) the first position of the largest id
 * (input_ids.argmax), else the first position equal to config eos_token_id
 * (argmax of (ids == eos), i.e. 0 when absent). Releases before that
 * commit tested `self.eos_token_id == 2` (the legacy value openai's configs
 * carry) instead of the largest id; the two agree for openai's checkpoints
 * and for any config whose eos_token_id is the tokenizer's EOS.
 */
int64_t vt_clip_text_eos_pos(const vt_clip_text *m, const int32_t *ids, int64_t T)
{
    int64_t best = 0;
    for (int64_t i = 1; i < T; i++)
        if (ids[i] > ids[best])
            best = i;
    if (T > 0 && ids[best] == CLIP_LEGACY_EOS)
        return best;
    for (int64_t i = 0; i < T; i++)
        if (ids[i] == m->eos_id)
            return i;
    return 0;
}

int64_t vt_clip_text_work_floats(const vt_clip_text *m, int64_t T)
{
    return vt_szadd(vt_szr16(vt_szmul3(2, T, m->enc.d)), vt_vit_encoder_work_floats(&m->enc, 1, T));
}

int vt_clip_text_forward(const vt_clip_text *m, const vt_exec *e, const int32_t *ids, int64_t T,
                         float *work, float *last, float *pooled, float *embeds,
                         vtok_status *st)
{
    int64_t d = m->enc.d;
    if (T < 1 || T > m->max_pos)
        return vt_fail(st, VTOK_ELIMIT, "%lld tokens: the text tower takes 1..%lld "
                       "(max_position_embeddings)", (long long)T, (long long)m->max_pos);
    for (int64_t i = 0; i < T; i++)
        if (ids[i] < 0 || ids[i] >= m->vocab)
            return vt_fail(st, VTOK_EINVAL, "token id %d at position %lld is outside the "
                           "vocabulary (%lld)", (int)ids[i], (long long)i, (long long)m->vocab);
    if (embeds && !m->proj.n_out)
        return vt_fail(st, VTOK_EMISSING, "this model has no text_projection");
    float *x = work, *y = work + T * d, *enc_work = work + vt_szr16(vt_szmul3(2, T, d));
    for (int64_t t = 0; t < T; t++) {
        const float *te = m->tok_emb + (int64_t)ids[t] * d, *pe = m->pos_emb + t * d;
        for (int64_t c = 0; c < d; c++)
            x[t * d + c] = te[c] + pe[c];
    }
    vt_vit_encoder(&m->enc, e, 1, T, x, enc_work, NULL);
    if (e->run && e->run->aborted)
        return vt_fail(st, VTOK_EABORTED, "aborted");
    vt_op_layernorm(e, T, d, x, &m->final_ln, y);
    if (last)
        memcpy(last, y, (size_t)(T * d) * sizeof *y);
    const float *row = y + vt_clip_text_eos_pos(m, ids, T) * d;
    if (pooled)
        memcpy(pooled, row, (size_t)d * sizeof *row);
    if (embeds)
        vt_op_linear(e, 1, row, 0, &m->proj, embeds, 0);
    return 0;
}

/* ---- public API (vtok.h) ---- */

struct vtok_text_model {
    vt_clip_text t;
};

vtok_text_model *vtok_text_model_load(const char *path, const vtok_model_params *p,
                                      vtok_status *st)
{
    vtok_status local;
    if (!st)
        st = &local;
    st->code = 0;
    st->msg[0] = 0;
    vtok_model_params mp = vtok_model_default_params();
    if (vt_params_read(&mp, sizeof mp, p, "vtok_model_params", st))
        return NULL;
    if (mp.dtype != VTOK_DTYPE_F32) {
        vt_fail(st, VTOK_EUNSUPPORTED, "the CLIP text tower runs in f32 only");
        return NULL;
    }
    vtok_text_model *m = calloc(1, sizeof *m);
    if (!m) {
        vt_fail(st, VTOK_ENOMEM, "out of memory");
        return NULL;
    }
    if (vt_clip_text_load(&m->t, path, st)) {
        free(m);
        return NULL;
    }
    return m;
}

void vtok_text_model_free(vtok_text_model *m)
{
    if (!m)
        return;
    vt_clip_text_free(&m->t);
    free(m);
}

int64_t vtok_text_model_dim(const vtok_text_model *m)
{
    return m ? m->t.proj.n_out : 0;
}

float vtok_text_model_logit_scale(const vtok_text_model *m)
{
    return m ? m->t.logit_scale : 0.0f;
}

int64_t vtok_text_tokenize(const vtok_text_model *m, const char *text, int truncate,
                                int32_t *ids, int64_t cap, vtok_status *st)
{
    if (!m)
        return vt_fail(st, VTOK_EINVAL, "no text model");
    return vt_clip_text_ids(&m->t, text, truncate, ids, cap, st);
}

int vtok_text_encode(const vtok_text_model *m, const char *text, float *out_projected,
                     int truncate, const vtok_ctx_params *cp, vtok_status *st)
{
    vtok_status local;
    if (!st)
        st = &local;
    st->code = 0;
    st->msg[0] = 0;
    if (!m || !text || !out_projected)
        return vt_fail(st, VTOK_EINVAL, "vtok_text_encode: bad arguments");
    const vt_clip_text *t = &m->t;
    int32_t *ids = malloc((size_t)t->max_pos * sizeof *ids);
    if (!ids)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    int64_t T = vt_clip_text_ids(t, text, truncate, ids, t->max_pos, st);
    vt_ctx_base b;
    int rc = T < 0 ? (int)T : vt_ctx_base_init(&b, cp, "text", st);
    if (rc) {
        free(ids);
        return rc;
    }
    int64_t nt = vt_pool_size(b.pool), scr = vt_exec_scratch_floats(T);
    int64_t work_n = vt_clip_text_work_floats(t, T);
    int64_t total = vt_szadd(work_n, vt_szmul(nt, scr));
    rc = vt_ctx_check_mem(&b, total < INT64_MAX, total, "the text tower", st);
    float *work = rc ? NULL : vt_alloc((size_t)total * sizeof(float));
    if (!rc && !work)
        rc = vt_fail(st, VTOK_ENOMEM, "out of memory (%lld floats)", (long long)total);
    if (!rc) {
        b.exec.scratch = work + work_n;
        b.exec.scratch_stride = scr;
        vt_ctx_run_begin(&b, t->enc.n_layers, NULL, NULL, 0);
        rc = vt_clip_text_forward(t, &b.exec, ids, T, work, NULL, NULL, out_projected, st);
    }
    vt_free(work);
    vt_ctx_base_free(&b);
    free(ids);
    return rc;
}
