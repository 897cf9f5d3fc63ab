/*
 * batch_tar.h - a streaming tar reader for `vtok batch` (WebDataset shards).
 *
 * Reads members one after another from a FILE * (a file or a pipe: it never
 * seeks), as POSIX.1-2001 pax / ustar / GNU tar write them: 512-byte headers
 * with a checksum, octal or base-256 sizes, ustar's name prefix, GNU 'L' long
 * names and pax 'x' records (path, size). Every number read from the archive
 * is bounded before it is used: a member's data is handed out only up to a
 * caller's limit (larger ones are read past, never held), long names and pax
 * records are capped, and a short read is reported as a truncated archive.
 * Nothing in an archive can make the reader crash or allocate without bound.
 */
#ifndef VTOK_CLI_BATCH_TAR_H
#define VTOK_CLI_BATCH_TAR_H

#include <stdint.h>
#include <stdio.h>

typedef struct bt_reader {
    FILE    *f;
    uint64_t offset;       /* bytes consumed so far                                */
    char     err[256];     /* why reading stopped ("" after a clean end)           */
    char    *long_name;    /* pending GNU 'L' / pax path for the next member       */
    int64_t  pax_size;     /* pending pax size (-1: none)                          */
    int      ended;
} bt_reader;

typedef struct bt_member {
    char    name[4096 + 1]; /* path inside the archive (NUL-terminated)             */
    int64_t size;           /* declared data size in bytes                          */
    int     regular;        /* 1: a regular file; others' data is skipped           */
} bt_member;

void bt_init(bt_reader *r, FILE *f);
void bt_release(bt_reader *r); /* frees pending names; does not close f */

/*
 * The next regular-file header (directories, links, pax globals and other
 * entries are skipped). Returns 1 with *m filled, 0 at the archive's end
 * (two zero blocks, or a clean EOF on a block boundary), or -1 on a
 * malformed or truncated archive (r->err says why and where; reading stops).
 * After 1, call bt_read_data or bt_skip_data before the next bt_next.
 */
int bt_next(bt_reader *r, bt_member *m);

/* Read the current member's data into buf (room for m->size bytes; the
 * caller checked the size against its limit) and its padding. 0 or -1. */
int bt_read_data(bt_reader *r, const bt_member *m, void *buf);

/* Read past the current member's data and padding. 0 or -1. */
int bt_skip_data(bt_reader *r, const bt_member *m);

#endif
