/*
 * batch_input.h - what `vtok batch` reads: --input specs expanded into an
 * ordered list of shards, the unit of output, of resumption and of work
 * handed to a rank.
 *
 * A spec is a WebDataset tar (a path, or "pipe:CMD" read from a command's
 * standard output), a folder of images (walked recursively, sorted), or a
 * text file listing one image path per line (or one tar per line, when every
 * line names a .tar). Brace patterns expand as in bash and WebDataset:
 * "{00000..00999}" counts with the zero padding of its bounds, "{a,b}" lists.
 * Several specs are joined by commas outside braces (a pipe: spec is taken
 * whole). Folders and image lists are cut into shards of --shard-size images
 * named STEM-00000, STEM-00001, ... Every rank builds the same list, in the
 * same order, from the same arguments.
 */
#ifndef VTOK_CLI_BATCH_INPUT_H
#define VTOK_CLI_BATCH_INPUT_H

#include <stddef.h>
#include <stdint.h>

typedef enum { BS_TAR, BS_PIPE, BS_FILES } bs_kind;

typedef struct bs_files { /* the images of one folder or list file */
    char   **keys;    /* relative path (folder) or the line as written (list) */
    char    *base;    /* prefix joined before a relative key ("" for none)     */
    int64_t  n, cap;
} bs_files;

typedef struct bs_shard {
    bs_kind   kind;
    char     *name;   /* output stem: NAME.npy, NAME.keys.txt, ...             */
    char     *source; /* the tar path, the pipe command, or the folder / list  */
    bs_files *files;  /* BS_FILES: images [first, first + count) of files      */
    int64_t   first, count;
} bs_shard;

typedef struct bs_plan {
    bs_shard  *shards;
    int64_t    n, cap;
    bs_files **sources;
    int64_t    n_sources;
} bs_plan;

/* Expand the specs (each may hold several, comma-separated). exts: image
 * extensions, ';'-separated, lowercase ("jpg;png;jpeg;webp"), used to pick
 * images in folders. 0, or -1 with a message in err. */
int  bs_plan_build(const char *const *specs, int n_specs, const char *exts, int64_t shard_size,
                   bs_plan *plan, char *err, size_t errlen);
void bs_plan_free(bs_plan *plan);

/* Bash-style brace expansion of s: calls emit for each word in order.
 * Returns the number of words, or -1 (err) past max_words or on a callback
 * failure. */
int64_t bs_expand_braces(const char *s, int64_t max_words,
                         int (*emit)(void *user, const char *word), void *user, char *err,
                         size_t errlen);

/* Whether ext (no dot, any case) is in the ';'-list exts (lowercase). */
int bs_ext_in(const char *ext, size_t ext_len, const char *exts);

#endif
