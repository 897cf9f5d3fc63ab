/*
 * outset.h - the files one CLI command writes, committed together.
 *
 * Each output is written under a staged name beside its final path
 * (".vtok-PID.NAME" in the same folder, so the final rename stays on one file
 * system) and renamed into place only when the command has written all of
 * them. A failure part way (full disk, file-size limit, a bad stage) removes
 * the staged files and leaves whatever was at the final paths before: never a
 * partial set that looks complete. Only the staged files are ever removed.
 */
#ifndef VTOK_CLI_OUTSET_H
#define VTOK_CLI_OUTSET_H

#include <stdio.h>

/* The staged path to write DIR/NAME to, or NULL (message printed) if the path
 * is too long or memory is short. Owned by the set. */
const char *outset_stage(const char *dir, const char *name);

/* A staged text file opened for writing (exclusive create), or NULL with a
 * message; close it with outset_close, which reports write errors. */
FILE *outset_open_text(const char *dir, const char *name, const char **staged);
int   outset_close(FILE *f, const char *staged);

/* Rename every staged file into place (0), or remove them all (non-zero
 * rc in, or a failed rename: returns 1 with a message). Call once, at exit. */
int outset_finish(int rc);

/* One error line on stderr, prefix (e.g. "vtok: serve: ") then the message;
 * returns 1 (the commands' failure exit code). Every command's die / fail. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int cli_err(const char *prefix, const char *fmt, ...);

/* Create path and its parents: 0 only if it is then a directory. */
int outset_mkdir(const char *path);

#endif
