/*
 * jinja_templates.c - the seed systems' own prompt formats as Jinja templates.
 *
 * These systems build their prompts with Python string code rather than a
 * chat_template; each template below reproduces that code for the usual
 * context ({"messages": [...], "add_generation_prompt": bool, ...}) and is
 * checked byte for byte against a Python re-implementation of the original
 * (tests/jinja/check_builtin.py). docs/TEMPLATES.md lists them.
 */
#include "text/jinja.h"

#include <string.h>

/*
 * LLaVA Conversation.get_prompt, SeparatorStyle.TWO (haotian-liu/LLaVA
 * llava/conversation.py): system + sep, then per message i "ROLE: text" +
 * (sep if i is even else sep2), or "ROLE:" for an empty message; sep " ",
 * sep2 "</s>", roles USER/ASSISTANT. add_generation_prompt appends the
 * empty ASSISTANT turn the eval scripts append. A first "system" message
 * replaces the default system text. Roles other than user/assistant are
 * refused (the original has no other roles).
 */
#define VT_TWO_STYLE(SYSTEM)                                                                          \
    "{%- if messages and messages[0]['role'] == 'system' -%}"                                       \
    "{%- set system = messages[0]['content'] -%}{%- set loop_messages = messages[1:] -%}"           \
    "{%- else -%}"                                                                                  \
    "{%- set system = '" SYSTEM "' -%}{%- set loop_messages = messages -%}"                         \
    "{%- endif -%}"                                                                                 \
    "{{- system + ' ' -}}"                                                                          \
    "{%- for message in loop_messages -%}"                                                          \
    "{%- if message['role'] == 'user' -%}{%- set role = 'USER' -%}"                                 \
    "{%- elif message['role'] == 'assistant' -%}{%- set role = 'ASSISTANT' -%}"                     \
    "{%- else -%}{{- raise_exception('Only user and assistant roles are supported after the "       \
    "optional system message') -}}{%- endif -%}"                                                    \
    "{%- if message['content'] -%}"                                                                 \
    "{{- role + ': ' + message['content'] + (' ' if loop.index0 % 2 == 0 else '</s>') -}}"          \
    "{%- else -%}{{- role + ':' -}}{%- endif -%}"                                                   \
    "{%- endfor -%}"                                                                                \
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"

/* conv_vicuna_v1 (conv_templates "v1" / "vicuna_v1"); also Shikra's
 * vicuna_v1.1 (FastChat, same text and separators) and SliME-7B/13B. */
static const char VICUNA_V1[] = VT_TWO_STYLE(
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user\\'s questions.");

/* conv_llava_v1 ("llava_v1"): the same with "human" in the system text. */
static const char LLAVA_V1[] = VT_TWO_STYLE(
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human\\'s questions.");

/*
 * GVT (TencentARC/GVT gvt/gvt/modules/modeling_gvt.py, _decorate_image_embeds):
 * "<Img> " + " ".join(["I"] * num_latents) + " " + "</Img>" + prompt, where
 * the embeddings of the num_latents "I" tokens are replaced by the visual
 * tokens. prompt: predict_answers uses "Question: {q} Answer:" (gvt_vqa),
 * generate uses the question verbatim (gvt, for OC/MCI) or a fixed caption
 * prompt (gvt_caption, typo as in the code). The question is the content of
 * the last message; num_image_tokens defaults to 32 (num_latents). No BOS:
 * the tokenizer adds it.
 */
#define VT_GVT_HEAD                                                                                   \
    "{%- set n = num_image_tokens if num_image_tokens is defined else 32 -%}"                       \
    "{%- if not messages -%}{{- raise_exception('gvt: no message') -}}{%- endif -%}"                \
    "{%- set q = messages[-1]['content'] -%}"                                                       \
    "{{- '<Img> ' + ('I ' * n) + '</Img>' -}}"

static const char GVT_VQA[] = VT_GVT_HEAD "{{- 'Question: ' + q + ' Answer:' -}}";
static const char GVT[] = VT_GVT_HEAD "{{- q -}}";
static const char GVT_CAPTION[] = VT_GVT_HEAD
    "{{- 'Descibe the image in detail in a sentence: This is an image of ' -}}";

/*
 * SEED-LLaMA (AILab-CVC/SEED scripts/seed_llama_inference_8B.py and _14B.py):
 *   8B:  bos_token + "USER:" + " " + img_tokens + question + "\n" + "ASSISTANT:"
 *   14B: bos_token + "[INST] " + img_tokens + question + " [/INST]" + "\n"
 * img_tokens = "<img>" + "".join("<img_{:05d}>" per code) + "</img>". Here
 * "<image>" in the user text is replaced by img_tokens built from the
 * context list image_codes (when given). The scripts define single-turn
 * prompts only, so other conversations are refused.
 */
#define VT_SEED_HEAD                                                                                  \
    "{%- if messages|length != 1 or messages[0]['role'] != 'user' -%}"                              \
    "{{- raise_exception('seed_llama: only a single user turn is defined by the reference "        \
    "scripts') -}}{%- endif -%}"                                                                    \
    "{%- set q = messages[0]['content'] -%}"                                                        \
    "{%- if image_codes is defined -%}"                                                             \
    "{%- set ns = namespace(img='<img>') -%}"                                                       \
    "{%- for c in image_codes -%}"                                                                  \
    "{%- if c is not integer or c < 0 or c > 99999 -%}"                                            \
    "{{- raise_exception('seed_llama: image codes must be integers in 0..99999') -}}{%- endif -%}"  \
    "{%- set ns.img = ns.img + '<img_' + ('0000' ~ c)[-5:] + '>' -%}"                               \
    "{%- endfor -%}"                                                                                \
    "{%- set q = q.replace('<image>', ns.img + '</img>') -%}"                                       \
    "{%- endif -%}"                                                                                 \
    "{{- bos_token if bos_token is defined else '<s>' -}}"

static const char SEED_LLAMA_8B[] = VT_SEED_HEAD "{{- 'USER: ' + q + '\\nASSISTANT:' -}}";
static const char SEED_LLAMA_14B[] = VT_SEED_HEAD "{{- '[INST] ' + q + ' [/INST]\\n' -}}";

/*
 * MoVA-8B (TempleX98/MoVA mova/conversation.py conv_mova_llama3,
 * SeparatorStyle.MPT): system + sep, then per message role + text + sep, or
 * the bare role for an empty message (the generation prompt); sep
 * "<|eot_id|>", roles the Llama-3 user / assistant headers. The system text
 * starts with a literal "<|begin_of_text|>" (the tokenizer may add BOS
 * again: MoVA's prompts begin with two). A first "system" message replaces
 * the system text after that header, as a changed conv.system would.
 */
#define VT_L3_HDR(role) "<|start_header_id|>" role "<|end_header_id|>\n\n"
static const char MOVA_LLAMA3[] =
    "{%- set head = '<|begin_of_text|>" VT_L3_HDR("system") "' -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = head + messages[0]['content'] -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system = head + 'You are a helpful language and vision assistant. You are able to "
    "understand the visual content that the user provides, and assist the user with a variety "
    "of tasks using natural language.' -%}{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{{- system + '<|eot_id|>' -}}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}{%- set role = '" VT_L3_HDR("user") "' -%}"
    "{%- elif message['role'] == 'assistant' -%}{%- set role = '" VT_L3_HDR("assistant") "' -%}"
    "{%- else -%}{{- raise_exception('Only user and assistant roles are supported after the "
    "optional system message') -}}{%- endif -%}"
    "{%- if message['content'] -%}{{- role + message['content'] + '<|eot_id|>' -}}"
    "{%- else -%}{{- role -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '" VT_L3_HDR("assistant") "' -}}{%- endif -%}";

static const struct {
    const char *name, *src;
} BUILTINS[] = {
    {"vicuna_v1", VICUNA_V1},           {"llava_v1", LLAVA_V1},   {"shikra", VICUNA_V1},
    {"gvt", GVT},                       {"gvt_vqa", GVT_VQA},     {"gvt_caption", GVT_CAPTION},
    {"seed_llama_8b", SEED_LLAMA_8B},   {"seed_llama_14b", SEED_LLAMA_14B},
    {"mova_llama3", MOVA_LLAMA3},
};

const char *vt_jinja_builtin(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof(BUILTINS) / sizeof(BUILTINS[0]); i++)
        if (!strcmp(BUILTINS[i].name, name))
            return BUILTINS[i].src;
    return NULL;
}

const char *vt_jinja_builtin_name(int i)
{
    if (i < 0 || (size_t)i >= sizeof(BUILTINS) / sizeof(BUILTINS[0]))
        return NULL;
    return BUILTINS[i].name;
}
