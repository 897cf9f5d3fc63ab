/*
 * clip_text.h - CLIP's text tower (transformers modeling_clip.py
 * CLIPTextTransformer + CLIPModel.text_projection) and its tokenizer, read
 * from a full CLIPModel folder. The public face is vtok_text_model_* in
 * vtok.h; the parity runner uses this header directly.
 */
#ifndef VT_CLIP_TEXT_H
#define VT_CLIP_TEXT_H

#include "../text/tokenizer.h"
#include "vit.h"

typedef struct vt_clip_text {
    vt_weights   *w;
    vt_vit        enc;        /* the encoder blocks (CLIP layer names), causal       */
    const float  *tok_emb;    /* [vocab, d]                                          */
    const float  *pos_emb;    /* [max_pos, d]                                        */
    int64_t       vocab, max_pos;
    vt_norm       final_ln;
    vt_linear     proj;       /* text_projection [proj_dim, d], no bias              */
    float         logit_scale;/* the stored parameter (logits use exp of it)         */
    int64_t       eos_id;     /* text_config eos_token_id                            */
    vt_tokenizer *tok;
} vt_clip_text;

/* path: a CLIPModel folder (config.json with text_config, safetensors,
 * tokenizer.json). Errors name missing text_model tensors; a folder without
 * a text tower is VTOK_EUNSUPPORTED "no text tower". */
int  vt_clip_text_load(vt_clip_text *m, const char *path, vtok_status *st);
void vt_clip_text_free(vt_clip_text *m);

/* Ids of text with <|startoftext|> ... <|endoftext|> (the post-processor).
 * More than max_pos ids: VTOK_ELIMIT unless truncate, which keeps the first
 * max_pos - (specials) text ids, as the HF tokenizer with truncation=True,
 * max_length=max_pos. Returns the count (written up to cap) or a code. */
int64_t vt_clip_text_ids(const vt_clip_text *m, const char *text, int truncate, int32_t *ids,
                         int64_t cap, vtok_status *st);

/* Index of the pooled (EOS) position of ids[0..T) (see clip_text.c). */
int64_t vt_clip_text_eos_pos(const vt_clip_text *m, const int32_t *ids, int64_t T);

int64_t vt_clip_text_work_floats(const vt_clip_text *m, int64_t T);

/* One sequence of T ids (1 <= T <= max_pos, each < vocab: checked). Outputs,
 * each optional: last [T, d] (last_hidden_state, after final_layer_norm),
 * pooled [d] (pooler_output), embeds [proj_dim] (get_text_features). */
int vt_clip_text_forward(const vt_clip_text *m, const vt_exec *e, const int32_t *ids, int64_t T,
                         float *work, float *last, float *pooled, float *embeds,
                         vtok_status *st);

#endif /* VT_CLIP_TEXT_H */
