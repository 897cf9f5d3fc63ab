/*
 * ctx.c - the parts of a context that do not depend on what it runs: params
 * read by vtok.h's size rule, the shared or owned thread pool, abort and
 * progress polling between steps, the memory limit, the log callback.
 *
 * Why `size` and not a version number: a size says exactly which bytes the
 * caller's struct has, so one rule serves every struct and every future
 * field, with no table of versions to keep. It is sound only if a struct's
 * size moves whenever a field is appended, i.e. no struct ends in tail
 * padding (an appended int could otherwise hide in an older struct's padding
 * and be read from uninitialised caller memory): the static asserts below
 * hold every public params struct to that. The larger-size case follows the
 * Linux kernel's copy_struct_from_user: unknown trailing bytes must be zero.
 */
#include "ctx.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* No tail padding: the last field ends at sizeof. */
#define VT_NO_TAIL(T, last) \
    _Static_assert(offsetof(T, last) + sizeof(((T *)0)->last) == sizeof(T), \
                   #T " must end without padding (add a reserved field)")
VT_NO_TAIL(vtok_model_params, threadpool);
VT_NO_TAIL(vtok_ctx_params, user);
VT_NO_TAIL(vtok_encode_params, layers);
VT_NO_TAIL(vtok_image_params, jpeg_target);
VT_NO_TAIL(vtok_recipe_params, threadpool);
VT_NO_TAIL(vtok_run_params, reserved0);

#define MAX_THREADS 256
#define DEFAULT_MEM_LIMIT ((int64_t)64 << 30)

void vtok_ctx_params_init(vtok_ctx_params *p, size_t size)
{
    const vtok_ctx_params d = {.size = sizeof d, .n_threads = 0};
    vt_params_init(p, size, &d, sizeof d);
}

/* ---- public thread pool ---- */

vtok_threadpool *vtok_threadpool_new(int n_threads, vtok_status *st)
{
    int nt = n_threads > 0 ? n_threads : vt_cpu_count();
    vt_pool *p = vt_pool_new(nt > MAX_THREADS ? MAX_THREADS : nt);
    if (!p)
        vt_fail(st, VTOK_ENOMEM, "cannot start a pool of %d threads", nt);
    return p;
}

void vtok_threadpool_free(vtok_threadpool *tp)
{
    vt_pool_free(tp);
}

int vtok_threadpool_size(const vtok_threadpool *tp)
{
    return tp ? vt_pool_size(tp) : 0;
}

void vtok_log_stderr(void *user, int level, const char *msg)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    (void)user;
    fprintf(stderr, "vtok: %s: %s\n", level >= 0 && level <= 3 ? names[level] : "log", msg);
}

/* ---- context base ---- */

int vt_ctx_base_init(vt_ctx_base *b, const vtok_ctx_params *p, const char *what,
                     vtok_status *st)
{
    memset(b, 0, sizeof *b);
    vtok_ctx_params_init(&b->p, sizeof b->p);
    int rc = vt_params_read(&b->p, sizeof b->p, p, "vtok_ctx_params", st);
    if (rc)
        return rc;
    if (b->p.mem_limit < 0)
        return vt_fail(st, VTOK_EINVAL, "vtok_ctx_params.mem_limit is negative (%lld)",
                       (long long)b->p.mem_limit);
    if (b->p.threadpool) {
        b->pool = b->p.threadpool;
    } else {
        int nt = b->p.n_threads > 0 ? b->p.n_threads : vt_cpu_count();
        if (!(b->pool = vt_pool_new(nt > MAX_THREADS ? MAX_THREADS : nt)))
            return vt_fail(st, VTOK_ENOMEM, "out of memory creating a context");
        b->own_pool = 1;
    }
    b->run.abort_cb = b->p.abort_cb;
    b->run.progress_cb = b->p.progress_cb;
    b->run.user = b->p.user;
    b->exec.pool = b->pool;
    b->exec.k = vt_kernels_get();
    b->exec.run = &b->run;
    vt_ctx_log(b, VTOK_LOG_INFO, "%s: %d threads (%s pool), %s kernels", what,
               vt_pool_size(b->pool), b->own_pool ? "own" : "shared", vtok_kernel_name());
    return 0;
}

void vt_ctx_base_free(vt_ctx_base *b)
{
    if (b->own_pool)
        vt_pool_free(b->pool);
    b->pool = NULL;
}

void vt_ctx_log(const vt_ctx_base *b, int level, const char *fmt, ...)
{
    if (!b->p.log_cb)
        return;
    char line[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    b->p.log_cb(b->p.user, level, line);
}

void vt_ctx_run_begin(vt_ctx_base *b, int64_t total, const char *prompt, const float *cond,
                      int64_t n_cond)
{
    b->run.done = 0;
    b->run.total = total;
    b->run.aborted = 0;
    b->run.prompt = prompt;
    b->run.cond = cond;
    b->run.n_cond = n_cond;
}

int vt_ctx_end(const vt_ctx_base *b, const vtok_status *st, int rc)
{
    if (rc < 0)
        vt_ctx_log(b, VTOK_LOG_ERROR, "%s", st->msg[0] ? st->msg : vtok_strerror(rc));
    return rc;
}

int vt_ctx_check_mem(const vt_ctx_base *b, int ok, int64_t floats, const char *what,
                     vtok_status *st)
{
    int64_t limit = b->p.mem_limit > 0 ? b->p.mem_limit : DEFAULT_MEM_LIMIT;
    if (!ok || floats < 0 || floats > INT64_MAX / (int64_t)sizeof(float))
        return vt_fail(st, VTOK_ELIMIT, "%s needs more bytes than fit in 64 bits, over the "
                       "memory limit of %lld bytes", what, (long long)limit);
    int64_t bytes = floats * (int64_t)sizeof(float);
    if (bytes > limit)
        return vt_fail(st, VTOK_ELIMIT,
                       "%s needs %lld bytes of working memory, over the memory limit of %lld "
                       "bytes (vtok_ctx_params.mem_limit)", what, (long long)bytes,
                       (long long)limit);
    return 0;
}

void vt_ctx_plan_exec(vt_ctx_base *b, vt_planner *p, int64_t max_tokens, int64_t lp_rows,
                      int64_t lp_max_in)
{
    int64_t scr = vt_szr16(vt_exec_scratch_floats(max_tokens));
    b->plan_scr = scr;
    b->plan_lp = lp_max_in > 0 ? vt_exec_lp_bytes(lp_rows, lp_max_in) : 0;
    vt_plan_floats(p, &b->exec.scratch, vt_szmul(vt_pool_size(b->pool), scr));
    vt_plan_bytes(p, &b->exec.lp_buf, b->plan_lp);
}

int vt_ctx_commit(vt_ctx_base *b, vt_planner *p, vt_arena *a, const char *what,
                  vtok_status *st)
{
    size_t need = vt_planner_bytes(p);
    int rc = vt_ctx_check_mem(b, !p->err, (int64_t)(need / sizeof(float)), what, st);
    if (rc)
        return rc;
    if (need > a->cap)
        vt_ctx_log(b, VTOK_LOG_DEBUG, "context memory grows to %zu bytes for %s", need, what);
    if ((rc = vt_planner_commit(p, a, 0, what, st)))
        return rc;
    b->exec.scratch_stride = b->plan_scr;
    b->exec.lp_bytes = b->plan_lp;
    if (!b->plan_lp)
        b->exec.lp_buf = NULL;
    b->exec.k = vt_kernels_get();
    return 0;
}

/* ---- steps of a run ---- */

int vt_run_poll(const vt_exec *e)
{
    vt_run *r = e->run;
    if (!r)
        return 0;
    if (!r->aborted && r->abort_cb && r->abort_cb(r->user))
        r->aborted = 1;
    return r->aborted;
}

void vt_run_step_done(const vt_exec *e)
{
    vt_run *r = e->run;
    if (!r)
        return;
    r->done++;
    if (r->progress_cb)
        r->progress_cb(r->user, r->done, r->total);
}
