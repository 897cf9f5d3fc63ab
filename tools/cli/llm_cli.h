/* llm_cli.h - the language-model commands of the CLI (llm.c). */
#ifndef VTOK_CLI_LLM_H
#define VTOK_CLI_LLM_H

int cli_generate(int argc, char **argv);      /* vtok generate ...      */
int cli_tokenize_text(int argc, char **argv); /* vtok tokenize-text ... */
int cli_chat(int argc, char **argv);          /* vtok chat ...          */
int cli_zeroshot(int argc, char **argv);      /* vtok zeroshot (zeroshot.c) */

#include <stddef.h>
#include <stdio.h>

/* A JSON string literal of s[0..n) on f (quotes, backslashes and control
 * characters escaped; other bytes as they are). */
void cli_json_text(FILE *f, const char *s, size_t n);

#endif
