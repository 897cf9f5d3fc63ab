/* batch.h - `vtok batch` (batch.c): encode or tokenize whole image datasets,
 * resumably, one process per rank. */
#ifndef VTOK_CLI_BATCH_H
#define VTOK_CLI_BATCH_H

int cli_batch(int argc, char **argv); /* vtok batch ... */

#endif
