/*
 * tokenizer.h - text tokenizers read from a Hugging Face tokenizer.json.
 *
 * Supported (see docs/TEXT.md): the BPE model with byte-level pre-tokenizing
 * (GPT-2, LLaMA-3, Qwen2/3) and SentencePiece-style BPE (LLaMA-2, Mistral:
 * Prepend/Replace normalizers or the Metaspace pre-tokenizer, byte fallback);
 * added/special tokens; TemplateProcessing; the matching decoders. Anything
 * else in the file (another model type, normalizer, regex, decoder) is
 * refused at load with VTOK_EUNSUPPORTED naming it, never approximated.
 *
 * A vt_tokenizer is read-only after loading: one may be shared by threads.
 * Errors: negative VTOK_E* codes with a one-line message in st (may be NULL).
 */
#ifndef VT_TEXT_TOKENIZER_H
#define VT_TEXT_TOKENIZER_H

#include "../core/vt.h"

typedef struct vt_tokenizer vt_tokenizer;

/* Load path: a tokenizer.json file, or a directory holding tokenizer.json
 * (and optionally tokenizer_config.json beside it, read for bos/eos names,
 * add_bos_token/add_eos_token and clean_up_tokenization_spaces). */
int vt_tok_load(vt_tokenizer **out, const char *path, vtok_status *st);

/* From memory (for fuzzing): json/json_len is tokenizer.json, config (may be
 * NULL) tokenizer_config.json. Both are copied as needed; `name` labels
 * messages. */
int vt_tok_load_from_memory(vt_tokenizer **out, const char *json, size_t json_len,
                            const char *config, size_t config_len, const char *name,
                            vtok_status *st);

void vt_tok_free(vt_tokenizer *t);                   /* NULL is a no-op */

/* Encode UTF-8 text[0..len) (invalid UTF-8 is refused with VTOK_EINVAL).
 * add_special: apply the post-processor (e.g. prepend BOS), as HF
 * add_special_tokens=True. Returns the total number of ids (>= 0), of which
 * the first min(total, cap) are written to ids (like snprintf: call with cap
 * 0 to size the buffer), or a negative code. */
int64_t vt_tok_encode(const vt_tokenizer *t, const char *text, size_t len, int add_special,
                      int32_t *ids, int64_t cap, vtok_status *st);

/* Decode ids to UTF-8 text (as HF decode: the decoder chain, then
 * clean_up_tokenization_spaces when the config asks). skip_special drops
 * special added tokens. Returns the byte length of the text (>= 0); the
 * first min(len, cap - 1) bytes and a NUL are written to buf when cap > 0.
 * An id outside [0, vocab size) or without a piece is VTOK_EINVAL. */
int64_t vt_tok_decode(const vt_tokenizer *t, const int32_t *ids, int64_t n, int skip_special,
                      char *buf, size_t cap, vtok_status *st);

int32_t     vt_tok_id(const vt_tokenizer *t, const char *token);  /* -1 if absent */
const char *vt_tok_piece(const vt_tokenizer *t, int32_t id);       /* NULL if none; owned by t */
int64_t     vt_tok_vocab_size(const vt_tokenizer *t);              /* max id + 1 */
int32_t     vt_tok_bos(const vt_tokenizer *t);                     /* -1 if none */
int32_t     vt_tok_eos(const vt_tokenizer *t);                     /* -1 if none */
int         vt_tok_is_special(const vt_tokenizer *t, int32_t id);

/* What add_special wraps around the text (the post-processor's template, or
 * the config's bos/eos): *n ids, -1 where the text goes; NULL and 0 when
 * nothing is added. Owned by t. (Truncating callers rebuild the ids.) */
const int32_t *vt_tok_template(const vt_tokenizer *t, int64_t *n);

#endif /* VT_TEXT_TOKENIZER_H */
