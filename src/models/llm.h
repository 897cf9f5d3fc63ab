/*
 * llm.h - decoder-only language models of the LLaMA family (internal).
 *
 * Hugging Face folders (config.json + model.safetensors, or shards with
 * model.safetensors.index.json) of LlamaForCausalLM (LLaMA-2 / Vicuna,
 * LLaMA-3 / 3.1), MistralForCausalLM and Qwen2ForCausalLM, in float32, with
 * transformers' numerics (src/transformers/models/llama/modeling_llama.py,
 * modeling_mistral.py, modeling_qwen2.py, modeling_rope_utils.py; see
 * llama.c for the rules and their sources).
 *
 * A model (vt_llm) is read-only after load and may be shared; a sequence
 * (vt_llm_seq) holds one sequence's KV cache (or a batch's), its dynamic-RoPE
 * state and the work memory of a forward call, all allocated once by
 * vt_llm_seq_init: a forward call never allocates. One call runs any number
 * of new tokens (a whole prompt in batched matmuls, or one decode step)
 * after those already cached.
 *
 * Linears are vt_linear (src/core/ops.h), so packed f32, bf16 and int8
 * weights can plug in later through the same vt_op_linear path.
 */
#ifndef VT_LLM_H
#define VT_LLM_H

#include "../io/loader.h"

typedef enum vt_llm_arch {
    VT_LLM_LLAMA = 0, /* model_type "llama",   LlamaForCausalLM   */
    VT_LLM_MISTRAL,   /* model_type "mistral", MistralForCausalLM */
    VT_LLM_QWEN2,     /* model_type "qwen2",   Qwen2ForCausalLM   */
} vt_llm_arch;

typedef enum vt_llm_rope {
    VT_ROPE_DEFAULT = 0,
    VT_ROPE_LINEAR,
    VT_ROPE_DYNAMIC,
    VT_ROPE_LLAMA3,
} vt_llm_rope;

typedef struct vt_llm_config {
    int     arch;                      /* vt_llm_arch */
    int64_t vocab, hidden, inter, n_layers, heads, kv_heads, head_dim;
    int64_t max_pos;                   /* max_position_embeddings */
    int64_t max_tokens;                /* positions a sequence may reach (see llama.c) */
    double  eps, rope_theta;
    int     rope_type;                 /* vt_llm_rope */
    double  rope_factor, low_freq_factor, high_freq_factor;
    int64_t rope_orig_max;             /* llama3: original_max_position_embeddings */
    int64_t sliding_window;            /* 0: none in effect */
    int     attn_bias, o_bias, mlp_bias, tie;
} vt_llm_config;

typedef struct vt_llm_layer {
    const float *attn_norm, *mlp_norm; /* input_layernorm, post_attention_layernorm [hidden] */
    vt_linear    q, k, v, o, gate, up, down;
} vt_llm_layer;

typedef struct vt_llm {
    vt_llm_config c;
    const float  *embed;     /* model.embed_tokens.weight [vocab, hidden] */
    vt_llm_layer *layers;
    const float  *norm;      /* model.norm.weight [hidden] */
    vt_linear     lm_head;   /* lm_head.weight, or embed_tokens when tied */
    float        *inv_freq;  /* [head_dim / 2], as the rotary module builds at init */
    float         attn_scaling;
    vt_weights   *w;
    vt_owned      own;
    void        **packs;     /* the converted Linears' blocks (one per layer, lm_head) */
    int64_t       n_packs;
    int64_t       lp_max_in; /* widest low-precision Linear input (vt_exec_lp_bytes) */
} vt_llm;

/* Load the folder (or a .safetensors / index file with config.json beside
 * it) and convert its Linears for dtype (src/models/pack.h, vtok_dtype)
 * layer by layer as they load: F32 packs the active table's GEMM panels
 * (results unchanged up to the table's own rounding); BF16 / INT8 / Q4
 * replace the weights, and the exec then needs an lp_buf of
 * vt_exec_lp_bytes(max_chunk, m->lp_max_in). A tied lm_head (the embedding
 * matrix) stays float32. Unknown model_type / architecture, options outside
 * the supported set and missing or misshaped tensors (all named in one
 * message) fail with st set. vt_llm_free undoes it (also after a failed
 * load). */
int  vt_llm_load(vt_llm *m, const char *path, int dtype, vt_pool *pool, vtok_status *st);
void vt_llm_free(vt_llm *m);

/* Linears of the model (for packing/low precision later): fills out (NULL:
 * count only), returns the count. */
int64_t vt_llm_linears(vt_llm *m, vt_linear **out);



/*
 * Sequences: one (vt_llm_seq_init) or a batch of n_seq (vt_llm_seq_init_batch)
 * sharing one KV block, one dynamic-RoPE state and one work area. A batch
 * gives the real positions of transformers' left-padded batch (an
 * attention_mask and position_ids = cumsum(mask) - 1; see llama.c): each
 * sequence holds only its own positions, from slot 0 of its KV rows, since
 * the mask removes every pad from every real query; the one batch-wide
 * effect, dynamic NTK's seq_len = max(position_ids) + 1 over the batch, is
 * kept (one rope state).
 */
typedef struct vt_llm_seq {
    const vt_llm *m;
    int64_t       n_seq;     /* sequences: 1, or a batch's B                     */
    int64_t       cap;       /* KV capacity (positions) of each sequence         */
    int64_t       max_chunk; /* most rows one forward call may run (all sequences) */
    int64_t       n_past;    /* positions cached (n_seq 1)                       */
    int64_t      *past;      /* n_seq > 1: [n_seq] positions cached; NULL for 1  */
    float        *kv;        /* per layer: K [n_seq][cap][kv_dim], then V alike  */
    float        *inv_freq;  /* the current inv_freq (dynamic NTK)               */
    int64_t       rope_cached; /* max_seq_len_cached of the rotary module */
    float        *work;
    int64_t      *pos;
} vt_llm_seq;

/* cap: KV capacity (0 = the model's max_tokens); max_chunk: the most tokens
 * of one call (0 = cap). Refuses cap over the model's max_tokens. */
int  vt_llm_seq_init(vt_llm_seq *s, const vt_llm *m, int64_t cap, int64_t max_chunk,
                     vtok_status *st);
/* n_seq sequences of cap positions each (1 <= n_seq <= VT_LLM_MAX_SEQ);
 * max_rows: the most rows of one call over all sequences (0 = n_seq * cap;
 * raised to n_seq so that one decode step of every sequence fits). n_seq 1
 * is vt_llm_seq_init. */
#define VT_LLM_MAX_SEQ 4096
int  vt_llm_seq_init_batch(vt_llm_seq *s, const vt_llm *m, int64_t n_seq, int64_t cap,
                           int64_t max_rows, vtok_status *st);
void vt_llm_seq_reset(vt_llm_seq *s); /* forget the cached positions (of every sequence) */
void vt_llm_seq_free(vt_llm_seq *s);
/* Positions cached by sequence i. */
int64_t vt_llm_seq_past(const vt_llm_seq *s, int64_t i);

/* One call's inputs: n tokens at positions n_past .. n_past + n - 1.
 *   ids:       n token ids, or NULL (then every row comes from embeds);
 *   embeds:    rows of hidden floats (inputs_embeds: image rows);
 *   embed_pos: with ids, the n_embed positions (< n) whose rows are
 *              embeds[k] instead of the id's embedding (their ids are not
 *              read); NULL with ids: embeds unused. Without ids, embeds has
 *              n rows. */
typedef struct vt_llm_input {
    int64_t        n;
    const int64_t *ids;
    const float   *embeds;
    const int64_t *embed_pos;
    int64_t        n_embed;
} vt_llm_input;

/* Outputs of a call (any may be NULL):
 *   logits:  [vocab] of the last position, or [n, vocab] with all_logits;
 *   hidden:  n_layers + 1 states as HF output_hidden_states (0 = the
 *            embeddings, i = after layer i - 1, the last = after the final
 *            norm), state l at hidden + l * hidden_stride, rows of `hidden`
 *            floats (hidden_stride 0 = n * hidden). */
typedef struct vt_llm_output {
    float  *logits;
    int     all_logits;
    float  *hidden;
    int64_t hidden_stride;
} vt_llm_output;

/* Runs the call and appends its positions to the cache. Refuses (st, cache
 * untouched) ids outside [0, vocab), n over max_chunk, and positions past
 * the KV capacity or the model's max_tokens. */
int vt_llm_forward(vt_llm_seq *s, const vt_exec *e, const vt_llm_input *in, vt_llm_output *out,
                   vtok_status *st);

/* One call over a batch: in[i] holds sequence i's new tokens (n 0: the
 * sequence sits this call out; at least one must have some), after its own
 * cached positions. Their rows are packed in sequence order (sequence i's
 * rows start at the sum of the n before it), and out is as for
 * vt_llm_forward over those rows, except that without all_logits logits is
 * [n_seq, vocab]: row i the last position of sequence i (rows of sequences
 * sitting out are not written). Refuses as vt_llm_forward, naming the
 * sequence, with every cache untouched. */
int vt_llm_forward_batch(vt_llm_seq *s, const vt_exec *e, const vt_llm_input *in,
                         vt_llm_output *out, vtok_status *st);

/* The input embedding table of an LLM handle (model.embed_tokens.weight
 * [vocab, hidden], float32, kept whatever the dtype), for connectors that
 * read it in place (SliME's selector and separator). */
struct vtok_llm;
const float *vt_llm_embed_table(const struct vtok_llm *m, int64_t *vocab, int64_t *hidden);

#endif /* VT_LLM_H */
