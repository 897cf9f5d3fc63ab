/*
 * pack.h - convert Linear weights once at load (pack.c has the why).
 */
#ifndef VT_PACK_H
#define VT_PACK_H

#include "../core/ops.h"
#include "../io/loader.h"
#include "../io/io.h"

/*
 * Convert the n Linears l[] (each listed once; weights read through l[i]->w)
 * for dtype (vtok_dtype):
 *   VTOK_DTYPE_F32   packed panels of the active kernel table (l->packed,
 *                    packed_by); w stays valid (mapped F32 pages are dropped
 *                    and fault back in if read). Nothing to do, and 0, when
 *                    the table has no packed form; an allocation failure
 *                    leaves the Linears unpacked and returns 0.
 *   VTOK_DTYPE_BF16  l->lp / lpw (/ lp_scale, lp_wsum for INT8); the float32
 *   VTOK_DTYPE_INT8  weight is released through w (vt_wsrc_release) and
 *                    l->w set to NULL, so no other code may read a listed
 *                    Linear's weight tensor afterwards.
 * *block receives the one allocation holding every converted weight (free
 * it with vt_free after the Linears are gone); *lp_max_in (if not NULL) is
 * raised to the widest low-precision input, for vt_exec_lp_bytes.
 * The conversion runs on `pool` if not NULL, else on a temporary pool of
 * n_threads (<= 0: one per CPU, at most 16).
 * Returns 0, or VTOK_ENOMEM for a low-precision dtype that could not be met.
 */
int vt_pack_linears(vt_linear *const *l, int64_t n, int dtype, const vt_wsrc *w, vt_pool *pool,
                    int n_threads, void **block, int64_t *lp_max_in, vtok_status *st);

#endif /* VT_PACK_H */
