/*
 * jinja.h - a bounded Jinja subset for chat templates (internal API).
 *
 * Renders the `chat_template` of a Hugging Face tokenizer_config.json the way
 * transformers does: jinja2 with trim_blocks=True, lstrip_blocks=True, the
 * loopcontrols extension, and the globals raise_exception / strftime_now and
 * transformers' own tojson (transformers/utils/chat_template_utils.py,
 * _compile_jinja_template). The subset is what the LLaMA-2/3, Mistral, Qwen2/3
 * and similar templates use; see docs/TEMPLATES.md for the list and the known
 * differences from Python.
 *
 * The engine is bounded: nesting depth, macro depth, loop iterations, total
 * evaluation steps, memory and output size are capped, and a template that
 * exceeds a cap fails with VTOK_ELIMIT and a message. Nothing here executes
 * code or touches files. It never aborts on input.
 *
 * Thread safety: a parsed vt_jinja is read-only; any number of threads may
 * render it at once (each render has its own arena).
 */
#ifndef VT_JINJA_H
#define VT_JINJA_H

#include <stddef.h>

struct cJSON;
typedef struct vt_jinja vt_jinja;

/* Limits (per render unless noted). */
#define VT_JINJA_MAX_SOURCE   (1u << 20)   /* template bytes (parse)          */
#define VT_JINJA_MAX_DEPTH    128          /* syntax nesting (parse)          */
#define VT_JINJA_MAX_CALLS    32           /* macro call depth                */
#define VT_JINJA_MAX_RDEPTH   600          /* nested evaluation (C stack)     */
#define VT_JINJA_MAX_ITERS    1000000      /* loop iterations, all loops      */
#define VT_JINJA_MAX_STEPS    20000000     /* statements + expressions run    */
#define VT_JINJA_MAX_MEMORY   ((size_t)64 << 20)  /* render arena bytes      */
#define VT_JINJA_MAX_OUTPUT   ((size_t)16 << 20)  /* rendered bytes          */

/*
 * Parse src[0..len) (UTF-8). On success *out owns the template (free with
 * vt_jinja_free) and 0 is returned. On failure returns VTOK_EFORMAT (syntax,
 * message "line L:C: ..."), VTOK_EUNSUPPORTED (a Jinja feature outside the
 * subset), VTOK_ELIMIT or VTOK_ENOMEM, with a one-line message in err.
 */
int vt_jinja_parse(vt_jinja **out, const char *src, size_t len, char *err, size_t errlen);

/*
 * Render with the variables of the JSON object `context` (NULL = none), e.g.
 * {"messages": [...], "add_generation_prompt": true, "bos_token": "<s>"}.
 * JSON numbers that are integral and below 2^53 in magnitude are ints, other
 * numbers floats. On success *out is a malloc'd NUL-terminated string of
 * *out_len bytes (the caller frees it). Errors: VTOK_EINVAL when the template
 * calls raise_exception (message "template error: <its message>") or an
 * operation is invalid for its values, VTOK_ELIMIT, VTOK_ENOMEM,
 * VTOK_EUNSUPPORTED; *out is then NULL.
 */
int vt_jinja_render(const vt_jinja *t, const struct cJSON *context, char **out, size_t *out_len,
                    char *err, size_t errlen);

/* Free a template; NULL is a no-op. */
void vt_jinja_free(vt_jinja *t);

/*
 * Built-in templates for the seed systems' own prompt formats (names in
 * docs/TEMPLATES.md, e.g. "vicuna_v1"). Returns the Jinja source (static
 * storage) or NULL for an unknown name. vt_jinja_builtin_name(i) lists them:
 * NULL past the last.
 */
const char *vt_jinja_builtin(const char *name);
const char *vt_jinja_builtin_name(int i);

#endif
