/*
 * llama.c - LLaMA / Mistral / Qwen2 decoders in float32 (see llm.h).
 *
 * Rules and their sources (transformers, read at commit 0044e3b of
 * huggingface/transformers; functions named because line numbers move):
 *
 * - LlamaModel.forward (models/llama/modeling_llama.py): inputs_embeds =
 *   embed_tokens(ids) (no scaling); for each decoder layer
 *   h = h + o_proj(attn(input_layernorm(h))), h = h + down_proj(
 *   silu(gate_proj(x)) * up_proj(x)) with x = post_attention_layernorm(h);
 *   then norm(h). output_hidden_states collects h before every layer and the
 *   normed output after the loop (so the last layer's un-normed output is
 *   not a state), n_layers + 1 in all.
 * - LlamaRMSNorm: float32 mean of squares, x * rsqrt(var + eps), weight *
 *   that (vt_op_rmsnorm).
 * - LlamaAttention: q/k/v projections (bias = config.attention_bias;
 *   Qwen2Attention: q/k/v bias always, o_proj none; Mistral: none),
 *   apply_rotary_pos_emb with rotate_half (halves, not pairs), repeat_kv
 *   (consecutive query heads share a K/V head: vt_op_attention_ex kv_heads),
 *   softmax(q k^T / sqrt(head_dim) + causal mask) v.
 * - LlamaRotaryEmbedding: inv_freq from modeling_rope_utils.py
 *   (ROPE_INIT_FUNCTIONS: default, linear, dynamic, llama3; rope_inv_freq
 *   below), freqs = inv_freq x position (float32), cos/sin of cat(freqs,
 *   freqs) times attention_scaling (1 for these types). Dynamic NTK:
 *   _dynamic_frequency_update recomputes inv_freq when max(position_ids) + 1
 *   exceeds max_seq_len_cached (initially max_position_embeddings) and
 *   restores the original when it drops below that again; the cached K
 *   rows keep the angles they were rotated with. vtok keeps that state per
 *   sequence (HF keeps it in the module, across generate calls).
 * - Positions without an attention mask are cache_position = past .. past +
 *   n - 1 (LlamaModel.forward).
 * - Left-padded batches (vt_llm_forward_batch): generate() makes
 *   position_ids = attention_mask.long().cumsum(-1) - 1, then
 *   masked_fill_(attention_mask == 0, 1), and keeps the last new columns on
 *   later steps (generation/utils.py, GenerationMixin.
 *   prepare_inputs_for_generation, "Create missing `position_ids` on the
 *   fly"): a sequence's real tokens sit at 0, 1, ... whatever its padding.
 *   The 4D mask (modeling_llama.py, _prepare_4d_causal_attention_mask_with_
 *   cache_position) adds finfo.min where the 2D mask is 0, so a pad key is
 *   masked for every query and its softmax weight is exactly 0 in float32:
 *   a real query reads only its sequence's real keys up to itself. vtok
 *   therefore stores each sequence's real positions alone (K/V rows from
 *   slot 0) and runs no pad rows at all; a pad query row, whose every key
 *   is masked, gets a uniform softmax over finfo.min scores in the eager
 *   path (the sdpa path unmasks such rows on CUDA, _unmask_unattended):
 *   don't-care values that never reach a real row. The one batch-wide
 *   term is dynamic NTK: _dynamic_frequency_update takes seq_len =
 *   torch.max(position_ids) + 1 over the whole [batch, len] tensor (the
 *   pads' 1 never exceeds it: a batch with pads has a longest sequence of
 *   2 or more), so a batch shares one rope state, updated from the largest
 *   position of the call.
 * - LlamaForCausalLM: logits = lm_head(h) (tie_word_embeddings: the
 *   embedding matrix; Qwen2's small models tie).
 *
 * Not covered (refused): other rope types (yarn, longrope, ntk), hidden_act
 * other than silu, Mistral/Qwen2 sequences longer than an active
 * sliding_window (the window mask of MistralModel._update_causal_mask would
 * change the result). pretraining_tp > 1 splits
 * LLaMA's matmuls into slices: the same sums in another order, so it is
 * accepted and ignored.
 */
#include "llm.h"

#include "../io/opt.h"
#include "pack.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIG_BYTES (1 << 20)
#define VT_PI 3.14159265358979323846 /* math.pi */

/* ---- config ---- */

static const struct {
    const char *model_type, *arch;
    int         id;
} archs[] = {
    {"llama", "LlamaForCausalLM", VT_LLM_LLAMA},
    {"mistral", "MistralForCausalLM", VT_LLM_MISTRAL},
    {"qwen2", "Qwen2ForCausalLM", VT_LLM_QWEN2},
};
#define N_ARCHS ((int)(sizeof archs / sizeof archs[0]))

/* Multimodal checkpoints whose language model is one of those, with the same
 * tensor names at the root (LLaVA's own LlavaLlamaForCausalLM, SliME's,
 * LLaVA-1.6-Mistral, LLaVA-NeXT's Qwen): read as the base architecture, the
 * vision tower and projector tensors beside it left to the recipe. */
static const struct {
    const char *model_type, *arch;
    int         base;
} wrappers[] = {
    {"llava", "LlavaLlamaForCausalLM", VT_LLM_LLAMA},
    {"llava_llama", "LlavaLlamaForCausalLM", VT_LLM_LLAMA},
    {"llava_mistral", "LlavaMistralForCausalLM", VT_LLM_MISTRAL},
    {"llava_qwen", "LlavaQwenForCausalLM", VT_LLM_QWEN2},
};
#define N_WRAPPERS ((int)(sizeof wrappers / sizeof wrappers[0]))

static int read_rope_scaling(vt_llm_config *c, const cJSON *cfg, vtok_status *st)
{
    const char *W = "config.json: rope_scaling";
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling");
    c->rope_type = VT_ROPE_DEFAULT;
    c->rope_factor = 1.0;
    if (!rs || cJSON_IsNull(rs))
        return 0;
    if (!cJSON_IsObject(rs))
        return vt_fail(st, VTOK_EFORMAT, "%s must be an object or null", W);
    /* "type" is the older spelling of "rope_type" (modeling_rope_utils.py,
     * rope_config_validation). */
    const char *type = NULL;
    if (vt_opt_str(rs, "rope_type", NULL, &type, W, st))
        return VTOK_EFORMAT;
    if (!type && vt_opt_str(rs, "type", "default", &type, W, st))
        return VTOK_EFORMAT;
    if (!strcmp(type, "default"))
        return 0;
    if (!strcmp(type, "linear"))
        c->rope_type = VT_ROPE_LINEAR;
    else if (!strcmp(type, "dynamic"))
        c->rope_type = VT_ROPE_DYNAMIC;
    else if (!strcmp(type, "llama3"))
        c->rope_type = VT_ROPE_LLAMA3;
    else
        return vt_fail(st, VTOK_EUNSUPPORTED,
                       "%s: rope_type '%s' is not supported (default, linear, dynamic, llama3)",
                       W, type);
    /* factor is required for all three (_validate_*_parameters). */
    if (!cJSON_GetObjectItemCaseSensitive(rs, "factor"))
        return vt_fail(st, VTOK_EMISSING, "%s: 'factor' is required for rope_type '%s'", W,
                       type);
    if (vt_opt_float(rs, "factor", 1.0, &c->rope_factor, W, st))
        return VTOK_EFORMAT;
    if (!(c->rope_factor > 0) || !isfinite(c->rope_factor))
        return vt_fail(st, VTOK_EINVAL, "%s: factor must be positive", W);
    if (c->rope_type == VT_ROPE_LLAMA3) {
        static const char *const req[] = {"original_max_position_embeddings", "low_freq_factor",
                                          "high_freq_factor"};
        for (int i = 0; i < 3; i++)
            if (!cJSON_GetObjectItemCaseSensitive(rs, req[i]))
                return vt_fail(st, VTOK_EMISSING, "%s: '%s' is required for rope_type 'llama3'",
                               W, req[i]);
        if (vt_opt_int(rs, "original_max_position_embeddings", 0, &c->rope_orig_max, W, st) ||
            vt_opt_float(rs, "low_freq_factor", 0, &c->low_freq_factor, W, st) ||
            vt_opt_float(rs, "high_freq_factor", 0, &c->high_freq_factor, W, st))
            return VTOK_EFORMAT;
        if (c->rope_orig_max <= 0 || !(c->low_freq_factor > 0) ||
            !(c->high_freq_factor > c->low_freq_factor))
            return vt_fail(st, VTOK_EINVAL,
                           "%s: llama3 needs original_max_position_embeddings > 0 and "
                           "0 < low_freq_factor < high_freq_factor",
                           W);
    }
    return 0;
}

static int read_config(vt_llm_config *c, const cJSON *cfg, vtok_status *st)
{
    const char *W = "config.json";
    memset(c, 0, sizeof *c);
    const char *mt = NULL;
    if (vt_opt_str(cfg, "model_type", NULL, &mt, W, st))
        return VTOK_EFORMAT;
    if (!mt)
        return vt_fail(st, VTOK_EMISSING, "%s: 'model_type' is missing", W);
    int a = -1;
    const char *arch_name = NULL;
    for (int i = 0; i < N_ARCHS; i++)
        if (!strcmp(mt, archs[i].model_type))
            a = i;
    for (int i = 0; a < 0 && i < N_WRAPPERS; i++)
        if (!strcmp(mt, wrappers[i].model_type)) {
            for (int k = 0; k < N_ARCHS; k++)
                a = archs[k].id == wrappers[i].base ? k : a;
            arch_name = wrappers[i].arch;
        }
    if (a < 0)
        return vt_fail(st, VTOK_EUNSUPPORTED,
                       "%s: model_type '%s' is not a supported decoder (llama, mistral, qwen2, "
                       "or LLaVA's llava_llama / llava_mistral / llava_qwen around one)", W, mt);
    arch_name = arch_name ? arch_name : archs[a].arch;
    c->arch = archs[a].id;
    /* architectures, when given, must name the causal-LM head of that type. */
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(cfg, "architectures");
    if (ar && !cJSON_IsNull(ar)) {
        const cJSON *a0 = cJSON_IsArray(ar) ? cJSON_GetArrayItem(ar, 0) : NULL;
        if (!cJSON_IsString(a0))
            return vt_fail(st, VTOK_EFORMAT, "%s: 'architectures' must be a list of names", W);
        if (strcmp(a0->valuestring, arch_name))
            return vt_fail(st, VTOK_EUNSUPPORTED,
                           "%s: architecture '%s' is not supported for model_type '%s' "
                           "(expected %s)",
                           W, a0->valuestring, mt, arch_name);
    }
    /* Defaults: LlamaConfig / MistralConfig / Qwen2Config __init__. */
    const int ll = c->arch == VT_LLM_LLAMA, mi = c->arch == VT_LLM_MISTRAL;
    int64_t tp = 1, kvh = 0;
    int use_sw = 0;
    const char *act = NULL;
    if (vt_opt_int(cfg, "vocab_size", ll || mi ? 32000 : 151936, &c->vocab, W, st) ||
        vt_opt_int(cfg, "hidden_size", 4096, &c->hidden, W, st) ||
        vt_opt_int(cfg, "intermediate_size", ll ? 11008 : mi ? 14336 : 22016, &c->inter, W, st) ||
        vt_opt_int(cfg, "num_hidden_layers", 32, &c->n_layers, W, st) ||
        vt_opt_int(cfg, "num_attention_heads", 32, &c->heads, W, st) ||
        vt_opt_int(cfg, "num_key_value_heads", mi ? 8 : 0, &kvh, W, st) ||
        vt_opt_int(cfg, "max_position_embeddings", ll ? 2048 : mi ? 4096 * 32 : 32768,
                   &c->max_pos, W, st) ||
        vt_opt_float(cfg, "rms_norm_eps", 1e-6, &c->eps, W, st) ||
        vt_opt_float(cfg, "rope_theta", 10000.0, &c->rope_theta, W, st) ||
        vt_opt_str(cfg, "hidden_act", "silu", &act, W, st) ||
        vt_opt_bool(cfg, "tie_word_embeddings", 0, &c->tie, W, st) ||
        vt_opt_int(cfg, "pretraining_tp", 1, &tp, W, st))
        return VTOK_EFORMAT;
    /* num_key_value_heads None -> num_attention_heads (LlamaConfig, Qwen2Config). */
    c->kv_heads = kvh > 0 ? kvh : c->heads;
    if (kvh < 0)
        return vt_fail(st, VTOK_EINVAL, "%s: num_key_value_heads must be positive", W);
    if (ll) {
        if (vt_opt_bool(cfg, "attention_bias", 0, &c->attn_bias, W, st) ||
            vt_opt_bool(cfg, "mlp_bias", 0, &c->mlp_bias, W, st))
            return VTOK_EFORMAT;
        c->o_bias = c->attn_bias;
    } else if (!mi) {
        c->attn_bias = 1; /* Qwen2Attention: q/k/v Linear(bias=True), o_proj bias=False */
    }
    if (mi) {
        /* sliding_window 4096 by default; null disables it. */
        const cJSON *sw = cJSON_GetObjectItemCaseSensitive(cfg, "sliding_window");
        if (!sw)
            c->sliding_window = 4096;
        else if (!cJSON_IsNull(sw) && vt_opt_int(cfg, "sliding_window", 0, &c->sliding_window, W, st))
            return VTOK_EFORMAT;
    } else if (!ll) {
        /* Qwen2: the window applies only with use_sliding_window. */
        int64_t sw = 0;
        if (vt_opt_bool(cfg, "use_sliding_window", 0, &use_sw, W, st))
            return VTOK_EFORMAT;
        const cJSON *swj = cJSON_GetObjectItemCaseSensitive(cfg, "sliding_window");
        if (use_sw && swj && !cJSON_IsNull(swj) &&
            vt_opt_int(cfg, "sliding_window", 4096, &sw, W, st))
            return VTOK_EFORMAT;
        c->sliding_window = use_sw ? (swj && !cJSON_IsNull(swj) ? sw : 4096) : 0;
    }
    if (strcmp(act, "silu") && strcmp(act, "swish"))
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: hidden_act '%s' is not supported (silu)", W,
                       act);
    if (c->vocab <= 0 || c->hidden <= 0 || c->inter <= 0 || c->n_layers <= 0 || c->heads <= 0 ||
        c->max_pos <= 0 || c->n_layers > 100000)
        return vt_fail(st, VTOK_EINVAL, "%s: sizes must be positive", W);
    if (c->heads % c->kv_heads)
        return vt_fail(st, VTOK_EINVAL,
                       "%s: num_attention_heads (%lld) must be a multiple of "
                       "num_key_value_heads (%lld)",
                       W, (long long)c->heads, (long long)c->kv_heads);
    /* head_dim: the config's, else hidden_size // num_attention_heads. */
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(cfg, "head_dim");
    if (hd && !cJSON_IsNull(hd)) {
        if (vt_opt_int(cfg, "head_dim", 0, &c->head_dim, W, st))
            return VTOK_EFORMAT;
    } else {
        if (c->hidden % c->heads)
            return vt_fail(st, VTOK_EINVAL, "%s: hidden_size must be a multiple of heads", W);
        c->head_dim = c->hidden / c->heads;
    }
    if (c->head_dim <= 0 || c->head_dim % 2 || c->head_dim > VT_ATTN_MAX_DH)
        return vt_fail(st, VTOK_EUNSUPPORTED, "%s: head_dim %lld must be even and <= %d", W,
                       (long long)c->head_dim, VT_ATTN_MAX_DH);
    if (!(c->eps >= 0) || !isfinite(c->eps) || !(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return vt_fail(st, VTOK_EINVAL, "%s: rms_norm_eps and rope_theta must be finite", W);
    if (read_rope_scaling(c, cfg, st))
        return st->code ? st->code : VTOK_EFORMAT;
    /* Positions a sequence may reach: max_position_embeddings, except that
     * dynamic NTK exists to run past it (there max_position_embeddings is the
     * original length the formula scales from), up to factor times it. */
    c->max_tokens = c->max_pos;
    if (c->rope_type == VT_ROPE_DYNAMIC && c->rope_factor > 1.0) {
        double mt2 = floor((double)c->max_pos * c->rope_factor);
        c->max_tokens = mt2 < 9e15 ? (int64_t)mt2 : c->max_pos;
    }
    return 0;
}

/* ---- RoPE inverse frequencies (modeling_rope_utils.py) ----
 * Every step in float32 where torch computes in float32: Python scalars
 * meet float32 tensors as float32, Python-only arithmetic stays double. */

/* _compute_default_rope_parameters: 1.0 / (base ** (arange(0, dim, 2).float() / dim)),
 * base a Python float (cast to float32 by the op). */
static void inv_freq_base(float *inv, int64_t dim, float base)
{
    for (int64_t i = 0; i < dim / 2; i++)
        inv[i] = 1.0f / powf(base, (float)(2 * i) / (float)dim);
}

/* The dynamic NTK update at run time (_compute_dynamic_ntk_parameters with
 * seq_len = torch.max(position_ids) + 1, an int64 tensor): then
 * factor * seq_len / max - (factor - 1) and its power are float32 tensor
 * ops, base * that a float32 tensor. */
static void inv_freq_dynamic(const vt_llm_config *c, int64_t seq_len, float *inv)
{
    const int64_t dim = c->head_dim;
    float t = (float)c->rope_factor * (float)seq_len;
    t = t / (float)c->max_pos;
    t = t - (float)(c->rope_factor - 1.0);
    t = powf(t, (float)((double)dim / (double)(dim - 2)));
    const float base = (float)c->rope_theta * t;
    inv_freq_base(inv, dim, base);
}

static void rope_init(const vt_llm_config *c, float *inv)
{
    const int64_t dim = c->head_dim, half = dim / 2;
    switch (c->rope_type) {
    case VT_ROPE_DYNAMIC: {
        /* At init seq_len is None -> max_position_embeddings, all Python
         * floats: base * ((factor * max / max) - (factor - 1)) ** (dim / (dim - 2)). */
        const double f = c->rope_factor, mp = (double)c->max_pos;
        const double base = c->rope_theta * pow((f * mp / mp) - (f - 1.0),
                                                (double)dim / (double)(dim - 2));
        inv_freq_base(inv, dim, (float)base);
        break;
    }
    case VT_ROPE_LINEAR:
        /* _compute_linear_scaling_rope_parameters: inv_freq /= factor */
        inv_freq_base(inv, dim, (float)c->rope_theta);
        for (int64_t i = 0; i < half; i++)
            inv[i] = inv[i] / (float)c->rope_factor;
        break;
    case VT_ROPE_LLAMA3: {
        /* _compute_llama3_parameters: wavelengths against
         * old_context_len / {low,high}_freq_factor (Python floats, compared
         * as float32); long waves divided by factor, short kept, the band
         * between smoothed. */
        inv_freq_base(inv, dim, (float)c->rope_theta);
        const float factor = (float)c->rope_factor, lowf = (float)c->low_freq_factor;
        const double old = (double)c->rope_orig_max;
        const float low_wl = (float)(old / c->low_freq_factor);
        const float high_wl = (float)(old / c->high_freq_factor);
        const float span = (float)(c->high_freq_factor - c->low_freq_factor);
        for (int64_t i = 0; i < half; i++) {
            const float wl = (float)(2.0 * VT_PI) / inv[i];
            const float il = wl > low_wl ? inv[i] / factor : inv[i];
            const float sm = ((float)old / wl - lowf) / span;
            const float smoothed = (1.0f - sm) * il / factor + sm * il;
            const int medium = !(wl < high_wl) && !(wl > low_wl);
            inv[i] = medium ? smoothed : il;
        }
        break;
    }
    default:
        inv_freq_base(inv, dim, (float)c->rope_theta);
    }
}

/* ---- load ---- */

static int parse_config_file(const char *path, cJSON **out, char *dir, size_t dir_n,
                             vtok_status *st)
{
    /* A folder, or a file inside one (model.safetensors / index json). */
    size_t n = strlen(path);
    if (n + 16 >= dir_n)
        return vt_fail(st, VTOK_EINVAL, "path too long: %s", path);
    char cfg_path[4200];
    const char *dot = strrchr(path, '.');
    if (dot && (!strcmp(dot, ".safetensors") || !strcmp(dot, ".json"))) {
        const char *slash = strrchr(path, '/');
        size_t d = slash ? (size_t)(slash - path) : 0;
        if (d == 0 && slash)
            d = 1;
        memcpy(dir, slash ? path : ".", slash ? d : 1);
        dir[slash ? d : 1] = 0;
    } else {
        memcpy(dir, path, n + 1);
    }
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    char *text = NULL;
    size_t len = 0;
    if (vt_read_file(cfg_path, MAX_CONFIG_BYTES, &text, &len, st))
        return st->code ? st->code : VTOK_EIO;
    *out = vt_json_parse_object(text, len, "config.json", st);
    free(text);
    return *out ? 0 : VTOK_EFORMAT;
}

static void load_layer(vt_llm *m, vt_loader *ld, int64_t i)
{
    const vt_llm_config *c = &m->c;
    vt_llm_layer *L = &m->layers[i];
    char p[96], name[160];
    const int64_t H = c->hidden, qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
    snprintf(p, sizeof p, "model.layers.%lld.", (long long)i);
#define NM(s) (snprintf(name, sizeof name, "%s%s", p, s), name)
    L->attn_norm = vt_get(ld, NM("input_layernorm.weight"), 1, H, 0, 0, 0);
    L->mlp_norm = vt_get(ld, NM("post_attention_layernorm.weight"), 1, H, 0, 0, 0);
    vt_get_linear(ld, &L->q, NM("self_attn.q_proj"), qd, H, c->attn_bias);
    vt_get_linear(ld, &L->k, NM("self_attn.k_proj"), kvd, H, c->attn_bias);
    vt_get_linear(ld, &L->v, NM("self_attn.v_proj"), kvd, H, c->attn_bias);
    vt_get_linear(ld, &L->o, NM("self_attn.o_proj"), H, qd, c->o_bias);
    vt_get_linear(ld, &L->gate, NM("mlp.gate_proj"), c->inter, H, c->mlp_bias);
    vt_get_linear(ld, &L->up, NM("mlp.up_proj"), c->inter, H, c->mlp_bias);
    vt_get_linear(ld, &L->down, NM("mlp.down_proj"), H, c->inter, c->mlp_bias);
#undef NM
}

/* Convert one group of Linears now (pack.h) and keep its block: loading
 * converts the file's bf16 / f16 tensors to float32 copies, so packing layer
 * by layer (each group's copies released right after) keeps the peak to one
 * layer's float32 instead of the whole model's (8.5 GB instead of 3 for a
 * 1.1B in bf16). Skipped once the load has failed (vt_loader_finish says
 * why). */
static void pack_group(vt_llm *m, vt_loader *ld, vt_linear *const *ls, int n, int dtype,
                       vt_pool *pool)
{
    if (ld->err || ld->n_missing || !m->packs)
        return;
    int rc = vt_pack_linears(ls, n, dtype, &ld->src, pool, 0, &m->packs[m->n_packs],
                             &m->lp_max_in, ld->st);
    if (m->packs[m->n_packs])
        m->n_packs++;
    if (rc)
        ld->err = rc; /* st holds the message */
}

int vt_llm_load(vt_llm *m, const char *path, int dtype, vt_pool *pool, vtok_status *st)
{
    memset(m, 0, sizeof *m);
    cJSON *cfg = NULL;
    char dir[4096];
    int rc = parse_config_file(path, &cfg, dir, sizeof dir, st);
    /* llava-hf folders (LlavaForConditionalGeneration,
     * LlavaNextForConditionalGeneration): the decoder's config is text_config,
     * its tensors under language_model. */
    const char *prefix = "";
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(cfg, "text_config");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    const cJSON *use = cfg;
    if (!rc && cJSON_IsObject(tc) && cJSON_IsString(mt) &&
        (!strcmp(mt->valuestring, "llava") || !strcmp(mt->valuestring, "llava_next"))) {
        use = tc;
        prefix = "language_model.";
        if (!cJSON_GetObjectItemCaseSensitive(tc, "model_type")) /* LlavaConfig's default */
            cJSON_AddStringToObject((cJSON *)tc, "model_type", "llama");
    }
    if (!rc)
        rc = read_config(&m->c, use, st);
    cJSON_Delete(cfg);
    if (rc)
        return rc;
    const vt_llm_config *c = &m->c;
    if ((rc = vt_weights_open(path, 1, &m->w, st)))
        return rc;
    vt_wsrc src = vt_wsrc_one(m->w, path, prefix);
    vt_loader ld;
    vt_loader_init(&ld, &src, "llm", &m->own, st);
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    m->packs = calloc((size_t)c->n_layers + 1, sizeof *m->packs);
    m->inv_freq = vt_loader_alloc(&ld, c->head_dim / 2);
    if (!m->layers || !m->packs)
        vt_loader_fail(&ld, VTOK_ENOMEM, "out of memory");
    m->embed = vt_get(&ld, "model.embed_tokens.weight", 2, c->vocab, c->hidden, 0, 0);
    for (int64_t i = 0; m->layers && i < c->n_layers; i++) {
        load_layer(m, &ld, i);
        vt_llm_layer *L = &m->layers[i];
        vt_linear *ls[7] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down};
        pack_group(m, &ld, ls, 7, dtype, pool);
    }
    m->norm = vt_get(&ld, "model.norm.weight", 1, c->hidden, 0, 0, 0);
    /* tie_word_embeddings: lm_head shares embed_tokens' matrix (HF ties the
     * parameter and ignores a stored lm_head.weight). */
    if (c->tie)
        m->lm_head = (vt_linear){.w = m->embed, .n_out = c->vocab, .n_in = c->hidden};
    else
        vt_get_linear(&ld, &m->lm_head, "lm_head", c->vocab, c->hidden, 0);
    if (!c->tie) {
        vt_linear *lh = &m->lm_head;
        pack_group(m, &ld, &lh, 1, dtype, pool);
    }
    if ((rc = vt_loader_finish(&ld))) {
        vt_llm_free(m);
        return rc;
    }
    rope_init(c, m->inv_freq);
    m->attn_scaling = 1.0f; /* attention_factor of default/linear/dynamic/llama3 */
    return 0;
}

void vt_llm_free(vt_llm *m)
{
    if (!m)
        return;
    free(m->layers);
    for (int64_t i = 0; i < m->n_packs; i++)
        vt_free(m->packs[i]);
    free(m->packs);
    vt_owned_free(&m->own);
    vt_weights_close(m->w);
    memset(m, 0, sizeof *m);
}

int64_t vt_llm_linears(vt_llm *m, vt_linear **out)
{
    int64_t n = 0;
    for (int64_t i = 0; i < m->c.n_layers; i++) {
        vt_llm_layer *L = &m->layers[i];
        vt_linear *ls[7] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down};
        for (int j = 0; j < 7; j++, n++)
            if (out)
                out[n] = ls[j];
    }
    if (!m->c.tie) {
        if (out)
            out[n] = &m->lm_head;
        n++;
    }
    return n;
}

/* ---- sequences ---- */

/* Work floats of a call of up to T rows over n_seq sequences: x, xn [T, H],
 * q, att [T, qd], gate|up [T, 2I], act [T, I]; with n_seq > 1 also the new
 * K and V rows [T, kv_dim] each (scattered to the sequences' caches) and the
 * last rows [n_seq, H] for lm_head; -1 on overflow. */
static int64_t work_floats(const vt_llm_config *c, int64_t T, int64_t n_seq)
{
    const int64_t kvd = c->kv_heads * c->head_dim;
    const int64_t per = 2 * c->hidden + 2 * c->heads * c->head_dim + 3 * c->inter +
                        (n_seq > 1 ? 2 * kvd : 0);
    int64_t n, g;
    if (!vt_mul_ok(T, per, &n) || !vt_mul_ok(n_seq > 1 ? n_seq : 0, c->hidden, &g) ||
        n > INT64_MAX / 16 || g > INT64_MAX / 16)
        return -1;
    return n + g + 64;
}

int vt_llm_seq_init_batch(vt_llm_seq *s, const vt_llm *m, int64_t n_seq, int64_t cap,
                          int64_t max_rows, vtok_status *st)
{
    memset(s, 0, sizeof *s);
    const vt_llm_config *c = &m->c;
    if (n_seq < 1 || n_seq > VT_LLM_MAX_SEQ)
        return vt_fail(st, VTOK_EINVAL, "%lld sequences: a batch holds 1 to %d",
                       (long long)n_seq, VT_LLM_MAX_SEQ);
    if (cap <= 0)
        cap = c->max_tokens;
    if (cap > c->max_tokens)
        return vt_fail(st, VTOK_ELIMIT, "KV capacity %lld exceeds the model's %lld positions",
                       (long long)cap, (long long)c->max_tokens);
    const int64_t rows_all = vt_szmul(n_seq, cap);
    if (max_rows <= 0 || max_rows > rows_all)
        max_rows = rows_all;
    if (max_rows < n_seq)
        max_rows = n_seq;
    const int64_t kvd = c->kv_heads * c->head_dim;
    int64_t kv_n, w_n;
    if (!vt_mul_ok(rows_all, 2 * kvd, &kv_n) || !vt_mul_ok(kv_n, c->n_layers, &kv_n) ||
        kv_n > INT64_MAX / 8 || (w_n = work_floats(c, max_rows, n_seq)) <= 0)
        return vt_fail(st, VTOK_ELIMIT, "KV cache of %lld x %lld positions is too large",
                       (long long)n_seq, (long long)cap);
    s->m = m;
    s->n_seq = n_seq;
    s->cap = cap;
    s->max_chunk = max_rows;
    s->kv = vt_alloc((size_t)kv_n * sizeof(float));
    s->work = vt_alloc((size_t)w_n * sizeof(float));
    s->pos = vt_alloc((size_t)max_rows * sizeof(int64_t));
    s->inv_freq = vt_alloc((size_t)(c->head_dim / 2) * sizeof(float));
    s->past = n_seq > 1 ? vt_alloc((size_t)n_seq * sizeof(int64_t)) : NULL;
    if (!s->kv || !s->work || !s->pos || !s->inv_freq || (n_seq > 1 && !s->past)) {
        vt_llm_seq_free(s);
        return vt_fail(st, VTOK_ENOMEM, "out of memory for a KV cache of %lld x %lld positions",
                       (long long)n_seq, (long long)cap);
    }
    vt_llm_seq_reset(s);
    return 0;
}

int vt_llm_seq_init(vt_llm_seq *s, const vt_llm *m, int64_t cap, int64_t max_chunk,
                    vtok_status *st)
{
    if (cap <= 0)
        cap = m->c.max_tokens;
    if (max_chunk <= 0 || max_chunk > cap)
        max_chunk = cap;
    return vt_llm_seq_init_batch(s, m, 1, cap, max_chunk, st);
}

void vt_llm_seq_reset(vt_llm_seq *s)
{
    s->n_past = 0;
    for (int64_t i = 0; s->past && i < s->n_seq; i++)
        s->past[i] = 0;
    memcpy(s->inv_freq, s->m->inv_freq, (size_t)(s->m->c.head_dim / 2) * sizeof(float));
    s->rope_cached = s->m->c.max_pos; /* max_seq_len_cached at init */
}

void vt_llm_seq_free(vt_llm_seq *s)
{
    if (!s)
        return;
    vt_free(s->kv);
    vt_free(s->work);
    vt_free(s->pos);
    vt_free(s->inv_freq);
    vt_free(s->past);
    memset(s, 0, sizeof *s);
}

int64_t vt_llm_seq_past(const vt_llm_seq *s, int64_t i)
{
    if (i < 0 || i >= s->n_seq)
        return 0;
    return s->past ? s->past[i] : s->n_past;
}

/* LlamaRotaryEmbedding._dynamic_frequency_update for a call whose largest
 * position is seq_len - 1 (over the whole batch: torch.max(position_ids)). */
static void dynamic_update(vt_llm_seq *s, int64_t seq_len)
{
    const vt_llm_config *c = &s->m->c;
    if (seq_len > s->rope_cached) { /* growth */
        inv_freq_dynamic(c, seq_len, s->inv_freq);
        s->rope_cached = seq_len;
    }
    if (seq_len < c->max_pos && s->rope_cached > c->max_pos) { /* reset */
        memcpy(s->inv_freq, s->m->inv_freq, (size_t)(c->head_dim / 2) * sizeof(float));
        s->rope_cached = c->max_pos;
    }
}

/* One sequence's inputs after p0 cached positions; who: "" or "sequence i: ". */
static int check_input(const vt_llm_seq *s, int64_t p0, const vt_llm_input *in, const char *who,
                       vtok_status *st)
{
    const vt_llm_config *c = &s->m->c;
    const int64_t n = in->n;
    if (p0 + n > c->max_tokens)
        return vt_fail(st, VTOK_ELIMIT,
                       "%s%lld tokens after %lld cached exceed the model's %lld positions "
                       "(max_position_embeddings)",
                       who, (long long)n, (long long)p0, (long long)c->max_tokens);
    if (p0 + n > s->cap)
        return vt_fail(st, VTOK_ELIMIT,
                       "%s%lld tokens after %lld cached exceed the KV capacity of %lld positions",
                       who, (long long)n, (long long)p0, (long long)s->cap);
    if (c->sliding_window > 0 && p0 + n > c->sliding_window)
        return vt_fail(st, VTOK_EUNSUPPORTED,
                       "%ssequences longer than sliding_window (%lld) are not supported", who,
                       (long long)c->sliding_window);
    if (n == 0)
        return 0;
    if (!in->ids && !in->embeds)
        return vt_fail(st, VTOK_EINVAL, "%sneither ids nor embeddings given", who);
    if (in->ids && in->n_embed && (!in->embeds || !in->embed_pos))
        return vt_fail(st, VTOK_EINVAL, "%sembedding positions without embeddings", who);
    if (in->ids) {
        for (int64_t k = 0; k < in->n_embed; k++)
            if (in->embed_pos[k] < 0 || in->embed_pos[k] >= n)
                return vt_fail(st, VTOK_EINVAL, "%sembedding position %lld outside [0, %lld)", who,
                               (long long)in->embed_pos[k], (long long)n);
        for (int64_t i = 0; i < n; i++) {
            if (in->ids[i] >= 0 && in->ids[i] < c->vocab)
                continue;
            int replaced = 0;
            for (int64_t k = 0; k < in->n_embed && !replaced; k++)
                replaced = in->embed_pos[k] == i;
            if (!replaced)
                return vt_fail(st, VTOK_EINVAL,
                               "%stoken id %lld at position %lld outside [0, %lld)", who,
                               (long long)in->ids[i], (long long)i, (long long)c->vocab);
        }
    }
    return 0;
}

/* Every sequence's inputs, and the rows of the call; 0 or a failure. */
static int check_call(const vt_llm_seq *s, const int64_t *past, const vt_llm_input *in,
                      int64_t *rows, vtok_status *st)
{
    int64_t R = 0;
    for (int64_t b = 0; b < s->n_seq; b++) {
        char who[48] = "";
        if (s->n_seq > 1)
            snprintf(who, sizeof who, "sequence %lld: ", (long long)b);
        if (in[b].n < 0 || (s->n_seq == 1 && in[b].n == 0))
            return vt_fail(st, VTOK_EINVAL, "%sno tokens to run", who);
        int rc = check_input(s, past[b], &in[b], who, st);
        if (rc)
            return rc;
        R += in[b].n; /* <= n_seq * cap: no overflow */
    }
    if (R == 0)
        return vt_fail(st, VTOK_EINVAL, "no tokens to run");
    if (R > s->max_chunk)
        return vt_fail(st, VTOK_ELIMIT, "%lld tokens in one call exceed the planned %lld",
                       (long long)R, (long long)s->max_chunk);
    *rows = R;
    return 0;
}

/*
 * The forward pass over the packed rows of every sequence in the call: the
 * row-wise parts (norms, projections, MLP, lm_head) as one matmul over all
 * rows (decode: M = n_seq), the attention per sequence over its own cache
 * rows. With one sequence the calls are those of the single-sequence path
 * (new K/V rows straight into the cache).
 */
static int forward_rows(vt_llm_seq *s, int64_t *past, const vt_exec *e, const vt_llm_input *in,
                        vt_llm_output *out, vtok_status *st)
{
    int64_t R = 0;
    int rc = check_call(s, past, in, &R, st);
    if (rc)
        return rc;
    const vt_llm *m = s->m;
    const vt_llm_config *c = &m->c;
    const int64_t B = s->n_seq, H = c->hidden, I = c->inter, dh = c->head_dim;
    const int64_t qd = c->heads * dh, kvd = c->kv_heads * dh, kv_seq = s->cap * kvd;
    float *x = s->work, *xn = x + R * H, *q = xn + R * H, *att = q + R * qd, *gu = att + R * qd,
          *act = gu + R * 2 * I;
    /* batches only (work_floats): new K and V rows, the last row of each sequence */
    float *knew = B > 1 ? act + R * I : NULL, *vnew = B > 1 ? knew + R * kvd : NULL;
    float *last = B > 1 ? vnew + R * kvd : NULL;
    const size_t row = (size_t)H * sizeof(float), kv_row = (size_t)kvd * sizeof(float);
    const int64_t hs = out && out->hidden ? (out->hidden_stride ? out->hidden_stride : R * H) : 0;

    /* Embeddings: rows of embed_tokens, then the given rows over them;
     * positions continue each sequence's own (position_ids = cumsum(mask)
     * - 1 of a left-padded batch: a sequence's real tokens count from 0). */
    int64_t seq_len = 0;
    for (int64_t b = 0, r = 0; b < B; r += in[b].n, b++) {
        const vt_llm_input *ib = &in[b];
        float *xb = x + r * H;
        if (ib->n == 0)
            continue;
        if (ib->ids) {
            for (int64_t i = 0; i < ib->n; i++)
                if (ib->ids[i] >= 0 && ib->ids[i] < c->vocab)
                    memcpy(xb + i * H, m->embed + ib->ids[i] * H, row);
            for (int64_t k = 0; k < ib->n_embed; k++)
                memcpy(xb + ib->embed_pos[k] * H, ib->embeds + k * H, row);
        } else {
            memcpy(xb, ib->embeds, (size_t)ib->n * row);
        }
        for (int64_t i = 0; i < ib->n; i++)
            s->pos[r + i] = past[b] + i;
        seq_len = past[b] + ib->n > seq_len ? past[b] + ib->n : seq_len;
    }
    if (c->rope_type == VT_ROPE_DYNAMIC)
        dynamic_update(s, seq_len);
    if (hs)
        memcpy(out->hidden, x, (size_t)R * row);

    const float scale = (float)(1.0 / sqrt((double)dh));
    for (int64_t l = 0; l < c->n_layers; l++) {
        if (vt_run_poll(e))
            return vt_fail(st, VTOK_EABORTED, "aborted");
        const vt_llm_layer *L = &m->layers[l];
        float *K = s->kv + l * 2 * B * kv_seq, *V = K + B * kv_seq;
        /* attention block */
        vt_op_rmsnorm(e, R, H, x, L->attn_norm, (float)c->eps, xn);
        vt_op_linear(e, R, xn, 0, &L->q, q, 0);
        vt_op_rope_freq(e, R, c->heads, dh, q, qd, s->pos, s->inv_freq, m->attn_scaling);
        if (B == 1) { /* new K/V rows straight into the cache */
            vt_op_linear(e, R, xn, 0, &L->k, K + past[0] * kvd, kvd);
            vt_op_linear(e, R, xn, 0, &L->v, V + past[0] * kvd, kvd);
            vt_op_rope_freq(e, R, c->kv_heads, dh, K + past[0] * kvd, kvd, s->pos, s->inv_freq,
                            m->attn_scaling);
        } else { /* all rows at once, then each sequence's to its cache */
            vt_op_linear(e, R, xn, 0, &L->k, knew, kvd);
            vt_op_linear(e, R, xn, 0, &L->v, vnew, kvd);
            vt_op_rope_freq(e, R, c->kv_heads, dh, knew, kvd, s->pos, s->inv_freq,
                            m->attn_scaling);
            for (int64_t b = 0, r = 0; b < B; r += in[b].n, b++) {
                memcpy(K + b * kv_seq + past[b] * kvd, knew + r * kvd, (size_t)in[b].n * kv_row);
                memcpy(V + b * kv_seq + past[b] * kvd, vnew + r * kvd, (size_t)in[b].n * kv_row);
            }
        }
        /* Each sequence's queries over its own keys 0 .. past + n - 1: the
         * keys of a left-padded batch that its mask leaves (the pads come
         * first and are masked for every query; see the file comment). */
        for (int64_t b = 0, r = 0; b < B; r += in[b].n, b++) {
            if (in[b].n == 0)
                continue;
            vt_attn_args a = {.batch = 1, .heads = c->heads, .tq = in[b].n,
                              .tk = past[b] + in[b].n, .dh = dh, .q = q + r * qd,
                              .k = K + b * kv_seq, .v = V + b * kv_seq, .ldq = qd, .ldk = kvd,
                              .ldv = kvd, .out = att + r * qd, .ldo = qd, .scale = scale,
                              .causal = VT_ATTN_CAUSAL_POS, .kv_heads = c->kv_heads,
                              .q_pos = past[b]};
            vt_op_attention_ex(e, &a);
        }
        vt_linear_opts acc = {.accumulate = 1};
        vt_op_linear_ex(e, R, att, 0, &L->o, x, 0, &acc); /* residual + o_proj(...) */
        /* MLP: down(silu(gate(x)) * up(x)), gate | up side by side for vt_op_swiglu */
        vt_op_rmsnorm(e, R, H, x, L->mlp_norm, (float)c->eps, xn);
        vt_op_linear(e, R, xn, 0, &L->gate, gu, 2 * I);
        vt_op_linear(e, R, xn, 0, &L->up, gu + I, 2 * I);
        vt_op_swiglu(e, R, I, gu, act);
        vt_op_linear_ex(e, R, act, 0, &L->down, x, 0, &acc);
        if (hs && l + 1 < c->n_layers)
            memcpy(out->hidden + (l + 1) * hs, x, (size_t)R * row);
    }
    vt_op_rmsnorm(e, R, H, x, m->norm, (float)c->eps, xn);
    if (hs)
        memcpy(out->hidden + c->n_layers * hs, xn, (size_t)R * row);
    if (out && out->logits) {
        int all_active = 1;
        for (int64_t b = 0; b < B; b++)
            all_active &= in[b].n > 0;
        if (out->all_logits) {
            vt_op_linear(e, R, xn, 0, &m->lm_head, out->logits, 0);
        } else if (B == 1) {
            vt_op_linear(e, 1, xn + (R - 1) * H, 0, &m->lm_head, out->logits, 0);
        } else if (all_active) { /* the last rows together: one matmul of M = n_seq */
            for (int64_t b = 0, r = 0; b < B; b++) {
                r += in[b].n;
                memcpy(last + b * H, xn + (r - 1) * H, row);
            }
            vt_op_linear(e, B, last, 0, &m->lm_head, out->logits, 0);
        } else {
            for (int64_t b = 0, r = 0; b < B; b++) {
                r += in[b].n;
                if (in[b].n)
                    vt_op_linear(e, 1, xn + (r - 1) * H, 0, &m->lm_head,
                                 out->logits + b * c->vocab, 0);
            }
        }
    }
    for (int64_t b = 0; b < B; b++)
        past[b] += in[b].n;
    return 0;
}

int vt_llm_forward(vt_llm_seq *s, const vt_exec *e, const vt_llm_input *in, vt_llm_output *out,
                   vtok_status *st)
{
    if (s->n_seq != 1)
        return vt_fail(st, VTOK_EINVAL, "a batch of %lld sequences: use vt_llm_forward_batch",
                       (long long)s->n_seq);
    return forward_rows(s, &s->n_past, e, in, out, st);
}

int vt_llm_forward_batch(vt_llm_seq *s, const vt_exec *e, const vt_llm_input *in,
                         vt_llm_output *out, vtok_status *st)
{
    if (!in)
        return vt_fail(st, VTOK_EINVAL, "no inputs");
    return forward_rows(s, s->past ? s->past : &s->n_past, e, in, out, st);
}
