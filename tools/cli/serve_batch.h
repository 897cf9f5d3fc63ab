/*
 * serve_batch.h - dynamic batching for `vtok serve`: requests put jobs (one
 * request's images) on a bounded queue; worker threads, each with a context
 * of its own over the one shared read-only model or recipe, gather the jobs
 * that can run together up to max_batch images or until the oldest has
 * waited max_wait_ms, and run them as one vtok_encode / vtok_recipe_run_images
 * call. Each job then gets its own rows back.
 */
#ifndef VTOK_CLI_SERVE_BATCH_H
#define VTOK_CLI_SERVE_BATCH_H

#include <pthread.h>
#include <stdint.h>

#include "serve_util.h"
#include "vtok.h"

typedef enum sv_job_kind {
    SV_JOB_EMBED,      /* encoder: one output row per image; recipe: its tokens */
    SV_JOB_TOKENIZE,   /* recipe: discrete ids                                  */
    SV_JOB_DETOKENIZE, /* recipe: ids back to the decoder's output (alone)      */
} sv_job_kind;

typedef struct sv_job {
    /* in: set by the request before sv_batcher_submit; owned by the job's
     * creator, read by a worker until done */
    sv_job_kind  kind;
    int64_t      n;              /* images, or id rows for DETOKENIZE           */
    const float *pixels;         /* encoder: [n, ch, h, w] as preprocessed       */
    int64_t      ch, h, w;
    const vtok_image *images;    /* recipe: n decoded images                    */
    const int64_t *ids;          /* DETOKENIZE: [n, per]                        */
    int64_t      per;
    int          output;         /* encoder: the vtok_output returned           */
    /* out: valid once sv_job_wait returns; free with sv_job_clear */
    int      err;                /* 0 or a VTOK_E* code                         */
    char     msg[512];
    float   *out;                /* every image's rows, one image after another */
    int64_t *rows;               /* [n] rows per image                          */
    int64_t  d;                  /* row width                                   */
    int64_t *out_ids;            /* TOKENIZE: [n, out_per]                      */
    int64_t  out_per;
    int64_t  tokens;             /* usage: tokens the images made               */
    int64_t  batch_images;       /* images in the run this job was part of      */
    /* private */
    double   t_enq;
    int      done;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    struct sv_job  *next;
} sv_job;

typedef struct sv_batch_cfg {
    vtok_model  *model;      /* an encoder, or NULL                              */
    vtok_recipe *recipe;     /* a recipe, or NULL (exactly one of the two)       */
    int          workers;    /* threads, each with its own context               */
    int          threads;    /* compute threads per context (<= 0: per CPU)      */
    int64_t      max_batch;  /* images per run                                   */
    double       max_wait_ms;
    int64_t      max_queue;  /* jobs waiting; more is refused (SV_EFULL)         */
    sv_metrics  *metrics;
} sv_batch_cfg;

enum { SV_EFULL = 1, SV_ESTOPPED = 2 };

typedef struct sv_batcher sv_batcher;

/* Starts the workers (their contexts are made before this returns).
 * NULL with a message in err on failure. */
sv_batcher *sv_batcher_new(const sv_batch_cfg *cfg, char *err, size_t errlen);
/* Initialise a job's private fields (call once, before filling it). */
void sv_job_init(sv_job *j);
/* 0 queued; SV_EFULL: the queue holds max_queue jobs; SV_ESTOPPED. */
int  sv_batcher_submit(sv_batcher *b, sv_job *j);
void sv_job_wait(sv_job *j);
void sv_job_clear(sv_job *j); /* frees the results and the job's mutex / cond */
int64_t sv_batcher_depth(sv_batcher *b);
/* Finish every queued job, stop and join the workers, free. NULL is a no-op. */
void sv_batcher_free(sv_batcher *b);

#endif
