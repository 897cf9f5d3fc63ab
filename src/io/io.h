/*
 * io.h - file formats: safetensors (single or sharded, mmapped) and .npy.
 *
 * Every parser here treats its input as untrusted: sizes are checked for
 * overflow, offsets for range and overlap, and every failure is a vtok_status
 * naming the file and the problem. Nothing here aborts or exits.
 */
#ifndef VT_IO_H
#define VT_IO_H

#include "../core/vt.h"

#include <stdio.h>

#define VT_MAX_DIMS 8

/* One tensor of a safetensors file; data points into the mapping (or the read buffer). */
typedef struct vt_st_tensor {
    const char *name;
    vt_dtype    dtype;
    int         n_dims;
    int64_t     shape[VT_MAX_DIMS];
    int64_t     numel;
    const void *data;
    size_t      nbytes;
    int         file;          /* index of the shard that holds it */
} vt_st_tensor;

typedef struct vt_weights vt_weights;

/*
 * Open weights at `path`:
 *   - a directory: model.safetensors.index.json (sharded) if present, else
 *     model.safetensors, else the only *.safetensors file in it;
 *   - a .safetensors file;
 *   - a model.safetensors.index.json file.
 * use_mmap=0 reads files into memory instead. Returns 0 or a negative code.
 */
int  vt_weights_open(const char *path, int use_mmap, vt_weights **out, vtok_status *st);
void vt_weights_close(vt_weights *w);                  /* NULL is a no-op */

int64_t             vt_weights_count(const vt_weights *w);
const vt_st_tensor *vt_weights_at(const vt_weights *w, int64_t i);
const vt_st_tensor *vt_weights_find(const vt_weights *w, const char *name); /* NULL if absent */

/*
 * Float32 data of tensor `name`, which must have exactly n_dims dims equal to
 * shape[] (a shape entry of -1 matches any size; the actual sizes are then
 * written back into shape[]). F32 data 4-byte aligned is returned in place;
 * F16/BF16/F64 (or unaligned F32) is converted once into memory owned by w.
 * Errors: VTOK_EMISSING "missing tensor 'name'", VTOK_ESHAPE "tensor 'name'
 * has shape [..], expected [..]", VTOK_EUNSUPPORTED for other dtypes.
 * Not thread-safe (it fills w's conversion cache): call it while loading a
 * model, from one thread. count/at/find are read-only and safe to share.
 * vt_weights_at enumerates tensors sorted by name (then shard).
 */
int vt_weights_f32(vt_weights *w, const char *name, int n_dims, int64_t *shape,
                   const float **out, vtok_status *st);

/*
 * Memory behind a view from vt_weights_f32 that the caller will not read
 * again (the model keeps a converted copy of the weight instead):
 *   vt_weights_drop_pages: if `data` lies in a file mapping, the whole pages
 *     inside the tensor leave the resident set (MADV_DONTNEED; they fault
 *     back in from the file if read after all, so the view stays valid);
 *     anything else is left alone.
 *   vt_weights_release: the same, and a float32 copy made by vt_weights_f32
 *     is freed: the view is then dangling and must be forgotten.
 * Neither touches other tensors' bytes (partial pages are kept). Loader
 * thread only, like vt_weights_f32.
 */
void vt_weights_drop_pages(vt_weights *w, const float *data);
void vt_weights_release(vt_weights *w, const float *data);

/*
 * Added for fuzzing and embedded use: open one safetensors image that is
 * already in memory. `buf` is borrowed, not copied; it must stay valid and
 * unchanged until vt_weights_close. `name` only labels messages.
 */
int vt_weights_open_mem(const void *buf, size_t size, const char *name, vt_weights **out,
                        vtok_status *st);

/* ---- .npy (NumPy format 1.0/2.0/3.0, C order) ---- */

/* Read a .npy of dtype <f4, <f8 or <f2 (converted to float32) into a
 * vt_alloc'ed buffer (*data, caller frees with vt_free). */
int vt_npy_read_f32(const char *path, float **data, int *n_dims, int64_t shape[VT_MAX_DIMS],
                    vtok_status *st);

/* Added for fuzzing: as vt_npy_read_f32, from a .npy image in memory.
 * `name` only labels messages. */
int vt_npy_read_f32_mem(const void *buf, size_t size, const char *name, float **data,
                        int *n_dims, int64_t shape[VT_MAX_DIMS], vtok_status *st);

/* Write float32 C-order data as .npy version 1.0 ('<f4'). */
int vt_npy_write_f32(const char *path, const float *data, int n_dims, const int64_t *shape,
                     vtok_status *st);

/* Integer arrays (discrete token ids): read '<i8' or '<i4' (widened) into a
 * vt_alloc'ed int64 buffer; write int64 as '<i8'. Same checks as above. */
int vt_npy_read_i64(const char *path, int64_t **data, int *n_dims, int64_t shape[VT_MAX_DIMS],
                    vtok_status *st);
int vt_npy_write_i64(const char *path, const int64_t *data, int n_dims, const int64_t *shape,
                     vtok_status *st);

/* An output file written completely or not at all: vt_out_open creates a
 * temp file beside path (refusing a path that exists and is not a regular
 * file); write to o->f; vt_out_commit(o, ok) closes it and renames it over
 * path if ok and every write succeeded, else removes the temp file (never
 * path) and fails with the reason (errno). A reader never sees a partial file
 * at path, and a failed write leaves what was there. */
typedef struct vt_out_file {
    FILE       *f;
    const char *path;
    char        tmp[4200];
} vt_out_file;
int vt_out_open(vt_out_file *o, const char *path, vtok_status *st);
int vt_out_commit(vt_out_file *o, int ok, vtok_status *st);

/* open() for reading that refuses anything but a regular file (a FIFO, a
 * device, a directory) without blocking: the fd, or a negative code with
 * "cannot WHAT PATH: not a regular file" in st. */
int vt_open_regular(const char *path, const char *what, vtok_status *st);

/* Whole-file read of a regular file into a malloc'ed NUL-terminated buffer;
 * size limit in bytes. */
int vt_read_file(const char *path, size_t max_size, char **out, size_t *size, vtok_status *st);

/* ---- PyTorch checkpoints (torch.c) ---- */

/*
 * One tensor of a PyTorch checkpoint, named by flattening nested dicts with
 * '.' (lists and tuples by index). data points into the file image when the
 * tensor is contiguous in a STORED zip entry or the legacy data area, else
 * into a block of vt_pt_checkpoint.owned (inflated or materialised views).
 */
typedef struct vt_pt_tensor {
    char       *name;                /* malloc'ed */
    vt_dtype    dtype;
    int         n_dims;
    int64_t     shape[VT_MAX_DIMS];
    int64_t     numel;
    const void *data;
    size_t      nbytes;
} vt_pt_tensor;

typedef struct vt_pt_checkpoint {
    vt_pt_tensor *tensors;
    int64_t       n_tensors;
    void        **owned;             /* vt_alloc'ed blocks tensors may point into */
    int64_t       n_owned;
} vt_pt_checkpoint;

/* 1 if the image looks like a torch.save file: a zip ("PK\3\4") or the
 * legacy pickle magic, or (when path is not NULL) a name ending in .pth,
 * .pt, .bin or .ckpt. */
int vt_torch_detect(const char *path, const void *buf, size_t size);

/*
 * Parse a torch.save image (zip format, torch >= 1.6, STORED/DEFLATE/Zip64;
 * or the legacy format) with a restricted unpickler that executes nothing:
 * only the globals torch.save emits for state dicts are accepted, anything
 * else fails with "refusing pickle global 'mod.name'". buf is borrowed and
 * must outlive the tensors. On success *out owns names, table and blocks;
 * release it with vt_torch_release (also safe on a zeroed struct).
 */
int  vt_torch_parse(const void *buf, size_t size, const char *name, vt_pt_checkpoint *out,
                    vtok_status *st);
void vt_torch_release(vt_pt_checkpoint *c);

#endif /* VT_IO_H */
