/*
 * tensor.h - the one tensor type, and the planner that places every tensor
 * of a run in one arena before the run starts.
 *
 * A vt_tensor is {dtype, n_dims, ne[4], nb[4], data} (ggml's shape, but
 * indexed as NumPy does: ne[0] is the outermost dimension and nb[] are byte
 * strides, so a contiguous [n, T, d] float tensor has nb = {T*d*4, d*4, 4}).
 *
 * Memory of a run is planned, never allocated inside the forward pass:
 *   1. a vt_planner collects requests: tensors (vt_plan_tensor), raw blocks
 *      (scratch, low-precision buffers: vt_plan_bytes) and *ragged* tensors
 *      whose items have different row counts (vt_plan_ragged: anyres tiles,
 *      per-image token counts), each 64-byte aligned;
 *   2. vt_planner_commit places them in a vt_arena, growing it once (between
 *      runs) when the plan is larger than the arena, and refusing a plan
 *      over the memory limit with VTOK_ELIMIT and the bytes it needs;
 *   3. the run reads and writes only the placed tensors.
 * An arena keeps its block across runs (a larger run grows it, a smaller one
 * reuses it). Persistent tensors (a KV cache) live in an arena of their own
 * that is planned once and never reset with the per-run one.
 */
#ifndef VT_TENSOR_H
#define VT_TENSOR_H

#include "vt.h"

#define VT_TENSOR_MAX_DIMS 4

typedef struct vt_tensor {
    vt_dtype dtype;
    int      n_dims;
    int64_t  ne[VT_TENSOR_MAX_DIMS];   /* sizes, outermost first; unused dims are 1 */
    int64_t  nb[VT_TENSOR_MAX_DIMS];   /* byte strides                                */
    void    *data;
} vt_tensor;

/* A contiguous tensor description (data NULL); n_dims 1..4, sizes >= 0.
 * 0 on success, VTOK_ELIMIT if the byte size overflows. */
int vt_tensor_init(vt_tensor *t, vt_dtype dtype, int n_dims, const int64_t *ne);
int64_t vt_tensor_nelem(const vt_tensor *t);
size_t  vt_tensor_nbytes(const vt_tensor *t);      /* of a contiguous tensor */
int     vt_tensor_is_contiguous(const vt_tensor *t);
/* Item i of the outermost dimension as a tensor of n_dims - 1 dims (a view). */
vt_tensor vt_tensor_item(const vt_tensor *t, int64_t i);

/* Items of different outer sizes stored one after another: item i is
 * rows[i] rows of `inner` (the trailing dims, the same for every item),
 * starting at row off[i] of one [total_rows, inner...] tensor. */
typedef struct vt_ragged {
    vt_tensor flat;      /* [total_rows, inner...]          */
    int64_t   n;         /* items                           */
    int64_t  *off;       /* n + 1 row offsets (off[n] = total) */
} vt_ragged;

/* Item i of a ragged tensor as a contiguous view [rows[i], inner...]. */
vt_tensor vt_ragged_item(const vt_ragged *r, int64_t i);

/* One block of memory a context keeps between runs; 64-byte aligned. */
typedef struct vt_arena {
    void  *mem;
    size_t cap;
    size_t keep;   /* bytes at the start a commit that grows the block copies over */
} vt_arena;

void vt_arena_free(vt_arena *a);

typedef struct vt_plan_req {
    vt_tensor *t;        /* tensor to place (or NULL) ...            */
    void     **raw;      /* ... or a raw block's pointer             */
    size_t     bytes;
    size_t     at;       /* offset in the arena, set by the planner  */
} vt_plan_req;

typedef struct vt_planner {
    vt_plan_req *req;
    int          n, cap;
    size_t       total;
    int          err;    /* first error (overflow, out of memory); commit reports it */
} vt_planner;

void vt_planner_init(vt_planner *p);
void vt_planner_free(vt_planner *p);   /* the requests, not the arena */

/* Request a contiguous tensor; t->data is set by commit. */
void vt_plan_tensor(vt_planner *p, vt_tensor *t, vt_dtype dtype, int n_dims, int64_t a,
                    int64_t b, int64_t c, int64_t d);
/* Request `bytes` raw bytes; *ptr is set by commit. */
void vt_plan_bytes(vt_planner *p, void **ptr, size_t bytes);
/* Request n floats (a work size computed with vt_szmul / vt_szadd: a negative
 * or saturated VT_SIZE_INF n fails the plan with VTOK_ELIMIT). */
void vt_plan_floats(vt_planner *p, float **ptr, int64_t n);
/* Request a ragged tensor of n items with rows[i] rows of inner [n_inner
 * dims] each; r->off must have room for n + 1 entries (the caller owns it:
 * it is planner-independent metadata). */
void vt_plan_ragged(vt_planner *p, vt_ragged *r, vt_dtype dtype, int64_t n,
                    const int64_t *rows, int n_inner, const int64_t *inner, int64_t *off);

/* Bytes the plan needs. */
size_t vt_planner_bytes(const vt_planner *p);

/* Place every request in a (grown if needed; never above limit bytes, 0 =
 * no limit). Errors: VTOK_ELIMIT "needs N MiB, the limit is M MiB" (what
 * names the run), VTOK_ENOMEM. The previous contents of a are not kept. */
int vt_planner_commit(vt_planner *p, vt_arena *a, size_t limit, const char *what,
                      vtok_status *st);

#endif /* VT_TENSOR_H */
