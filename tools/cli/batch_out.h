/*
 * batch_out.h - the files `vtok batch` writes for a shard: a .npy written
 * row by row without knowing the row count up front, JSON strings, and the
 * commit (fsync, rename, done marker) that makes a shard's outputs appear
 * all at once or not at all.
 */
#ifndef VTOK_CLI_BATCH_OUT_H
#define VTOK_CLI_BATCH_OUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { BO_F32, BO_F16, BO_I64 } bo_dtype;

/* A .npy file (format 1.0, C order) whose header, a fixed 128 bytes, is
 * written again with the final shape [rows, row_shape...] at close. */
typedef struct bo_npy {
    FILE    *f;
    bo_dtype dtype;
    int      row_dims;       /* 0 until the first row's shape is set */
    int64_t  row_shape[4];
    int64_t  row_elems;
    int64_t  rows;
    void    *scratch;        /* float16 conversion buffer             */
    size_t   scratch_cap;
} bo_npy;

int  bo_npy_open(bo_npy *w, const char *path, bo_dtype dtype); /* 0 or -1 (errno) */
/* Fix the shape of a row (before the first append). */
void bo_npy_set_row(bo_npy *w, int dims, const int64_t *shape);
/* Append n rows of row_elems values each (float rows for F32 / F16, int64
 * rows for I64). 0 or -1. */
int  bo_npy_append(bo_npy *w, const void *rows, int64_t n);
/* Write the final header, flush, fsync and close. 0 or -1. */
int  bo_npy_close(bo_npy *w);
void bo_npy_abandon(bo_npy *w); /* close without caring (the temp file is removed elsewhere) */

/* IEEE 754 binary32 -> binary16, round to nearest even (as NumPy's astype). */
uint16_t bo_f32_to_f16(float x);

/* A JSON string literal of s (n bytes): quotes, backslashes and control
 * characters escaped (RFC 8259 section 7); bytes that are not valid UTF-8
 * become U+FFFD so that every line parses. */
void bo_json_str(FILE *f, const char *s, size_t n);

/* fflush + fsync + fclose; 0 or -1. */
int bo_close_sync(FILE *f);
/* fsync a folder (after renames into it, so that they survive a crash). */
void bo_sync_dir(const char *dir);

#endif
