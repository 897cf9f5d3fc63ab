/* llm_cli.h - the language-model commands of the CLI (llm.c). */
#ifndef VTOK_CLI_LLM_H
#define VTOK_CLI_LLM_H

int cli_generate(int argc, char **argv);      /* vtok generate ...      */
int cli_tokenize_text(int argc, char **argv); /* vtok tokenize-text ... */
int cli_chat(int argc, char **argv);          /* vtok chat ...          */
int cli_zeroshot(int argc, char **argv);      /* vtok zeroshot (zeroshot.c) */

#include <stddef.h>
#include <stdio.h>

#include "vtok.h"

/* The prompt's ids without its image positions, as `vtok chat` builds the
 * prompt for question q (format: a built-in name, "template", "raw" or
 * NULL), for recipes that select by the text (vtok_run_params.text_ids).
 * *ids is malloc'ed. Returns 0, or 1 after printing the error. */
int cli_text_ids(const vtok_llm *m, const vtok_recipe_info *ri, int n_images, const char *q,
                 const char *format, int32_t **ids, int64_t *n);

/* Routing recipes (vtok_recipe_n_experts > 0, MoVA): the routing weights w
 * [n_experts] for question q: from --experts (letters, names or "none") when
 * given, else MoVA's coarse pass (vtok_recipe_route on c, NULL: a context
 * of its own). *answer (malloc'ed) is the stripped routing answer (NULL with
 * --experts); held (may be NULL) gets the routing prompt's positions (ids,
 * -1 for image rows; malloc'ed), for layout.json; gen (may be NULL) [16]
 * the generated ids. 0, or 1 after printing. */
int  cli_route(vtok_llm *m, vtok_llm_ctx *c, vtok_recipe *r, vtok_recipe_ctx *rc,
               const vtok_recipe_info *ri, const vtok_image *imgs, int n_images,
               const char *const *names, const char *q, const char *format,
               const char *experts, float *w, char **answer, int32_t **held, int64_t *n_held,
               int32_t *gen, int64_t *n_gen);
void cli_route_report(const vtok_recipe *r, const float *w, const char *answer);
/* --experts SPEC (letters "A,C", the recipe's expert names, or "none") into
 * w[n]. 0, or 1 after printing. */
int  cli_parse_experts(const vtok_recipe *r, const char *spec, float *w, int64_t n);

/* A JSON string literal of s[0..n) on f (quotes, backslashes and control
 * characters escaped; other bytes as they are). */
void cli_json_text(FILE *f, const char *s, size_t n);

#endif
