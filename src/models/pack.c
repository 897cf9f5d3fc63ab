/*
 * pack.c - Linear weights converted once at load: f32 GEMM panels for the
 * active kernel table, or the portable bf16 / int8 layouts (kernels.h).
 *
 * float32: the GEMM kernels copy a Linear weight into their panel layout on
 * every call unless it was packed beforehand (kernels.h: gemm_pack_nk); at
 * one thread that copy was ~18% of a ViT-B forward. So after the family has
 * filled the vt_vit, every Linear it runs as a whole is packed once, for the
 * table active now. vt_op_linear reads the packed copy only while that table
 * is still the active one, else l->w: w is kept, so after
 * vtok_force_reference_kernels(1) the model runs exactly as if never packed.
 * For an F32 checkpoint w is the mmap: its pages are dropped from the
 * resident set as soon as the weight is packed (they fault back in from the
 * file only on that fallback), so the model holds one f32 copy, not two.
 * F16/BF16 checkpoints keep their converted f32 w for the fallback.
 *
 * bf16 / int8 (vtok_model_params.dtype): every such Linear is converted to
 * the portable low-precision layout of kernels.h, which all tables read, so
 * w is not needed again: converted copies are freed and mapped pages
 * dropped. Resident weights are then ~2 (bf16) or ~1 (int8) bytes per
 * parameter.
 *
 * Time: the conversion is a fast pass; most of the cost is the kernel
 * faulting in the new pages (perf: clear_page ~35%), so it runs on a
 * temporary pool of one thread per CPU (at most 16; or the caller's thread
 * count or shared pool, vtok_model_params): ViT-L/14 f32 loads in
 * ~0.5 s on 2 cores. Transparent huge pages (MADV_HUGEPAGE) did not change
 * the forward pass and sometimes cost seconds of compaction at load, so the
 * block is a plain vt_alloc. If the f32 packing fails the Linears stay
 * unpacked (slower, never wrong); a failed low-precision conversion fails
 * the load (the user asked for that dtype).
 */
#include "pack.h"

#include <stdatomic.h>
#include <stdlib.h>

typedef struct {
    const vt_kernels *k;
    const vt_wsrc    *w;
    int               dtype;  /* vtok_dtype */
    _Atomic int       failed; /* a low-precision pack ran out of memory */
    vt_linear *const *l;      /* the Linears to convert ... */
    char *const      *dst;    /* ... and where each goes    */
} pack_job;

/* Bytes of the converted form of l (0: overflow). */
static size_t packed_bytes(const vt_kernels *k, int dtype, const vt_linear *l)
{
    const size_t np = (size_t)vt_lp_kpad(l->n_out, VT_LP_NR);
    switch (dtype) {
    case VTOK_DTYPE_BF16:
        return vt_lp_bf16_size(l->n_out, l->n_in) * sizeof(uint16_t);
    case VTOK_DTYPE_INT8: /* weights, then scale[np] and wsum[np] */
        return (vt_lp_i8_size(l->n_out, l->n_in) + 63) / 64 * 64 + 2 * np * sizeof(float);
    case VTOK_DTYPE_Q4:
        return vt_lp_q4_size(l->n_out, l->n_in);
    default:
        return k->gemm_packed_floats(l->n_out, l->n_in) * sizeof(float);
    }
}

/* Runs on the pool: only reads the weights object (drop_pages is an madvise). */
static void pack_task(void *arg, int64_t i, int tid)
{
    const vt_linear *l = ((const pack_job *)arg)->l[i];
    pack_job *j = arg;
    char *d = j->dst[i];
    (void)tid;
    if (j->dtype == VTOK_DTYPE_BF16) {
        if (vt_lp_pack_bf16(j->k, l->n_out, l->n_in, l->w, (uint16_t *)d))
            j->failed = 1;
    } else if (j->dtype == VTOK_DTYPE_INT8) {
        const size_t np = (size_t)vt_lp_kpad(l->n_out, VT_LP_NR);
        float *scale = (float *)(d + (vt_lp_i8_size(l->n_out, l->n_in) + 63) / 64 * 64);
        if (vt_lp_pack_i8(j->k, l->n_out, l->n_in, l->w, (int8_t *)d, scale,
                          (int32_t *)(scale + np)))
            j->failed = 1;
    } else if (j->dtype == VTOK_DTYPE_Q4) {
        vt_lp_pack_q4(l->n_out, l->n_in, l->w, (uint8_t *)d);
    } else {
        j->k->gemm_pack_nk(l->n_out, l->n_in, l->w, (float *)d);
    }
    /* Drop the source pages now, not after the whole pass: the peak is then
     * the converted block plus the weights in flight, not plus all of them. */
    vt_wsrc_drop_pages(j->w, l->w);
}

#define PACK_ALIGN 64 /* bytes: the kernels' aligned panel loads */

int vt_pack_linears(vt_linear *const *l, int64_t n, int dtype, const vt_wsrc *w, vt_pool *pool,
                    int n_threads, void **block_out, int64_t *lp_max_in, vtok_status *st)
{
    const vt_kernels *k = vt_kernels_get();
    if (dtype == VTOK_DTYPE_F32 && !k->gemm_packed_floats)
        return 0;
    *block_out = NULL;
    if (n <= 0)
        return 0;
    char **dst = malloc((size_t)n * sizeof *dst);
    size_t *off = malloc((size_t)n * sizeof *off);
    size_t total = 0;
    int ok = dst && off;
    for (int64_t i = 0; ok && i < n; i++) {
        size_t b = packed_bytes(k, dtype, l[i]);
        ok = b > 0 && b <= SIZE_MAX - total - PACK_ALIGN;
        off[i] = total;
        if (ok)
            total += (b + PACK_ALIGN - 1) / PACK_ALIGN * PACK_ALIGN;
    }
    char *block = ok && total > 0 ? vt_alloc(total) : NULL;
    if (block) {
        for (int64_t i = 0; i < n; i++)
            dst[i] = block + off[i];
        pack_job j = {.k = k, .w = w, .dtype = dtype, .l = l, .dst = dst};
        int nt = n_threads > 0 ? n_threads : vt_cpu_count() < 16 ? vt_cpu_count() : 16;
        vt_pool *own = pool ? NULL : vt_pool_new(nt < 256 ? nt : 256);
        if (pool || own) {
            vt_pool_run(pool ? pool : own, pack_task, &j, n);
            vt_pool_free(own);
        } else {
            for (int64_t i = 0; i < n; i++)
                pack_task(&j, i, 0);
        }
        if (j.failed) {
            vt_free(block);
            block = NULL;
            goto done;
        }
        for (int64_t i = 0; i < n; i++) {
            vt_linear *x = l[i];
            if (dtype == VTOK_DTYPE_F32) {
                x->packed = (const float *)dst[i];
                x->packed_by = k;
                continue;
            }
            x->lp = dtype == VTOK_DTYPE_BF16 ? VT_LP_BF16
                    : dtype == VTOK_DTYPE_Q4 ? VT_LP_Q4 : VT_LP_INT8;
            x->lpw = dst[i];
            if (dtype == VTOK_DTYPE_INT8) {
                const size_t np = (size_t)vt_lp_kpad(x->n_out, VT_LP_NR);
                x->lp_scale = (const float *)(dst[i] +
                                              (vt_lp_i8_size(x->n_out, x->n_in) + 63) / 64 * 64);
                x->lp_wsum = (const int32_t *)(x->lp_scale + np);
            }
            if (lp_max_in)
                *lp_max_in = x->n_in > *lp_max_in ? x->n_in : *lp_max_in;
            vt_wsrc_release(w, x->w);
            x->w = NULL;
        }
        *block_out = block;
    }
done:
    free(dst);
    free(off);
    if (!block && dtype != VTOK_DTYPE_F32)
        return vt_fail(st, VTOK_ENOMEM, "out of memory converting the weights to %s (%zu MiB)",
                       vtok_dtype_name(dtype), total >> 20);
    return 0;
}

