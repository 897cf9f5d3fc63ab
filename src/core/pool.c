/*
 * pool.c - the thread pool of a context (or several): workers wait on a
 * generation counter, spin briefly before sleeping (ops in a ViT forward are
 * short and many, so a condition-variable wake per op would cost more than
 * the op), and claim task indices from an atomic counter.
 *
 * Shared pools: jobs from different submitting threads are serialised by
 * `submit`, held for the whole job. The job fields (fn, arg, n, next, busy)
 * are then written by one submitter at a time, after the previous job's
 * workers have all checked out (busy == 0), which is exactly the
 * single-submitter protocol; the mutex hand-over orders one submitter's
 * completion before the next one's writes. Per job, not per run: two
 * contexts interleave op by op, and neither waits for the other's whole
 * forward pass.
 */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define VT_SPIN_ITERS 20000

struct vtok_threadpool {
    int             n_threads;
    pthread_t      *threads;
    pthread_mutex_t submit;      /* one job at a time on the workers */
    pthread_mutex_t mu;
    pthread_cond_t  wake;
    pthread_cond_t  done_cv;

    /* Current job; written by the caller before bumping gen. */
    vt_task_fn      fn;
    void           *arg;
    int64_t         n;

    atomic_int_fast64_t next;    /* next task index to claim */
    atomic_int      gen;         /* job generation; odd/even not meaningful */
    atomic_int      busy;        /* workers still inside the current job */
    atomic_int      quit;
    int             n_sleeping;  /* protected by mu */
};

typedef struct { vt_pool *p; int tid; } worker_arg;

static void run_tasks(vt_pool *p, int tid)
{
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->n)
            break;
        p->fn(p->arg, i, tid);
    }
}

static void *worker_main(void *varg)
{
    worker_arg *wa = varg;
    vt_pool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    int seen = 0; /* gen at creation; a job may be posted before this thread runs */
    for (;;) {
        int g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&p->quit, memory_order_relaxed) && spins < VT_SPIN_ITERS)
            spins++;
        if (g == seen && !atomic_load(&p->quit)) {
            pthread_mutex_lock(&p->mu);
            p->n_sleeping++;
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->wake, &p->mu);
            p->n_sleeping--;
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit))
            return NULL;
        seen = g;
        run_tasks(p, tid);
        if (atomic_fetch_sub_explicit(&p->busy, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

vt_pool *vt_pool_new(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    vt_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->submit, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->next, 0);
    atomic_init(&p->gen, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->quit, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            vt_pool_free(p);
            return NULL;
        }
        for (int t = 1; t < n_threads; t++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa || (wa->p = p, wa->tid = t,
                        pthread_create(&p->threads[t - 1], NULL, worker_main, wa) != 0)) {
                free(wa);
                p->n_threads = t; /* only t-1 workers exist */
                vt_pool_free(p);
                return NULL;
            }
        }
    }
    return p;
}

void vt_pool_free(vt_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->n_threads; t++)
        pthread_join(p->threads[t - 1], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->submit);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done_cv);
    free(p);
}

int vt_pool_size(const vt_pool *p)
{
    return p ? p->n_threads : 1;
}

void vt_pool_run(vt_pool *p, vt_task_fn fn, void *arg, int64_t n)
{
    if (n <= 0)
        return;
    if (!p || p->n_threads == 1 || n == 1) {
        for (int64_t i = 0; i < n; i++)
            fn(arg, i, 0);
        return;
    }
    pthread_mutex_lock(&p->submit);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->busy, p->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    if (p->n_sleeping)
        pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    run_tasks(p, 0);

    int spins = 0;
    while (atomic_load_explicit(&p->busy, memory_order_acquire) != 0 && spins < VT_SPIN_ITERS)
        spins++;
    if (atomic_load(&p->busy) != 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->busy) != 0)
            pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->submit);
}

int vt_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}
