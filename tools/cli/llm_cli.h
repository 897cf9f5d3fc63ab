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

/* A JSON string literal of s[0..n) on f (quotes, backslashes and control
 * characters escaped; other bytes as they are). */
void cli_json_text(FILE *f, const char *s, size_t n);

#endif
