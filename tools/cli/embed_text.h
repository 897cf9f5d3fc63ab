/* embed_text.h - `vtok embed-text` (embed_text.c): a BERT text embedding. */
#ifndef VTOK_CLI_EMBED_TEXT_H
#define VTOK_CLI_EMBED_TEXT_H

int cli_embed_text(int argc, char **argv); /* vtok embed-text ... */

#endif
