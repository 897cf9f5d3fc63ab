/*
 * ctx.h - what vtok_ctx and vtok_recipe_ctx share: the caller's params read
 * by the size rule, the thread pool (own or borrowed), the exec state, the
 * run control block (abort / progress / conditioning), the memory limit and
 * the log callback.
 */
#ifndef VT_CTX_H
#define VT_CTX_H

#include "ops.h"
#include "tensor.h"
#include "vt.h"

typedef struct vt_ctx_base {
    vtok_ctx_params p;        /* the caller's params over the defaults */
    vt_pool        *pool;
    int             own_pool; /* 0: borrowed from p.threadpool         */
    vt_exec         exec;     /* exec.run points at run                 */
    vt_run          run;
    int64_t         plan_scr;  /* scratch floats per thread of the planned run  */
    size_t          plan_lp;   /* low-precision input bytes of the planned run  */
} vt_ctx_base;

/* Read p (may be NULL), start or borrow the pool, fill exec. `what` names
 * the context kind in messages. Returns 0 or a code (st). */
int  vt_ctx_base_init(vt_ctx_base *b, const vtok_ctx_params *p, const char *what,
                      vtok_status *st);
void vt_ctx_base_free(vt_ctx_base *b); /* stops an owned pool */

/* Log one line through p.log_cb (no-op without one). */
void vt_ctx_log(const vt_ctx_base *b, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* A run starts: total steps for progress_cb, conditioning inputs (may be NULL). */
void vt_ctx_run_begin(vt_ctx_base *b, int64_t total, const char *prompt, const float *cond,
                      int64_t n_cond);

/* A public call ends with rc: a failure is logged at VTOK_LOG_ERROR with its
 * message. Returns rc. */
int vt_ctx_end(const vt_ctx_base *b, const vtok_status *st, int rc);

/* Check a planned block of `floats` floats (ok = 0: the size overflowed)
 * against the memory limit; `what` describes the run for the message. */
int vt_ctx_check_mem(const vt_ctx_base *b, int ok, int64_t floats, const char *what,
                     vtok_status *st);

/* Plan the exec buffers of a run: per-thread scratch for sequences of up to
 * max_tokens tokens, and (lp_max_in > 0) the low-precision input buffer for
 * lp_rows rows of up to lp_max_in inputs. vt_ctx_commit points b->exec at them. */
void vt_ctx_plan_exec(vt_ctx_base *b, vt_planner *p, int64_t max_tokens, int64_t lp_rows,
                      int64_t lp_max_in);

/* Place a run's planned tensors in the context's arena: refuses a plan over
 * the memory limit (VTOK_ELIMIT naming the bytes and the limit), logs when
 * the arena grows. `what` describes the run. */
int vt_ctx_commit(vt_ctx_base *b, vt_planner *p, vt_arena *a, const char *what,
                  vtok_status *st);

#endif /* VT_CTX_H */
