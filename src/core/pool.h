/*
 * pool.h - a context's own thread pool.
 *
 * vt_pool_run(pool, fn, arg, n) calls fn(arg, i, tid) for every i in [0, n),
 * spreading the indices over the pool's threads (the caller is thread 0);
 * indices are claimed one at a time from an atomic counter, so uneven chunks
 * balance themselves. It returns when all calls have returned. Not reentrant:
 * fn must not call vt_pool_run on the same pool.
 *
 * Several threads may call vt_pool_run on one pool (contexts sharing a public
 * vtok_threadpool, which is this struct): a submit mutex lets one job at a
 * time own the workers; the others wait for it. Each job still runs on every
 * thread of the pool, and its result does not depend on who else submits.
 */
#ifndef VT_POOL_H
#define VT_POOL_H

#include <stdint.h>

typedef struct vtok_threadpool vt_pool; /* the public vtok_threadpool */
typedef void (*vt_task_fn)(void *arg, int64_t i, int tid);

/* n_threads >= 1 (including the caller). Returns NULL on failure. */
vt_pool *vt_pool_new(int n_threads);
void     vt_pool_free(vt_pool *p);   /* NULL is a no-op */
int      vt_pool_size(const vt_pool *p);
void     vt_pool_run(vt_pool *p, vt_task_fn fn, void *arg, int64_t n);

/* Number of online CPUs (>= 1). */
int vt_cpu_count(void);

#endif /* VT_POOL_H */
