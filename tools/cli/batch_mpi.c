/*
 * batch_mpi.c - dynamic shard hand-out for `vtok batch` under mpirun.
 *
 * Protocol (MPI_COMM_WORLD, point to point): a worker (rank > 0) sends rank 0
 * a request {kind, n} with tag TAG_REQ, kind REQ_NEXT ("next shard?", n: the
 * number of shards in its own list) or REQ_LEAVE (it wants no more); rank 0's
 * dispatcher answers REQ_NEXT with tag TAG_REP: the next shard index, in list
 * order, whose done marker is absent, or -1 ("none"), or -3 when the two
 * shard lists differ in length (the ranks do not see the same inputs). Each
 * index is handed out at most once per run (a cursor that only moves on), so
 * no two ranks run the same shard; done markers decide what is left, so a
 * rerun after a crash finishes the rest exactly as with the static split.
 *
 * The dispatcher is a thread on rank 0 polling MPI_Iprobe every millisecond
 * (a blocking receive would spin a core that rank 0 needs for its own
 * shards); rank 0's main thread takes its shards from the same cursor under a
 * mutex, without MPI. Only one thread of the process calls MPI at any time
 * (the main thread before the dispatcher starts and after it is joined), so
 * MPI_THREAD_SERIALIZED suffices (MPI 3.1, section 12.4.3). MPI errors are
 * returned (MPI_ERRORS_RETURN), never fatal. A dead worker makes mpirun
 * abort the job; a rerun finishes the remaining shards.
 */
#include "batch_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef VTOK_HAVE_MPI

int bm_available(void)
{
    return 0;
}

int bm_init(int *rank, int *size, char *err, size_t err_len)
{
    (void)rank;
    (void)size;
    snprintf(err, err_len, "vtok was built without MPI");
    return 1;
}

int bm_serve(int64_t n, bm_done_fn done, void *user, char *err, size_t err_len)
{
    (void)n;
    (void)done;
    (void)user;
    snprintf(err, err_len, "vtok was built without MPI");
    return 1;
}

int64_t bm_next(int64_t n, int stop, char *err, size_t err_len)
{
    (void)n;
    (void)stop;
    snprintf(err, err_len, "vtok was built without MPI");
    return -2;
}

void bm_finish(int stopping)
{
    (void)stopping;
}

#else

#include <mpi.h>
#include <pthread.h>
#include <time.h>

enum { TAG_REQ = 7301, TAG_REP = 7302 };
enum { REQ_NEXT = 0, REQ_LEAVE = 1 };
#define REP_NONE     (-1)
#define REP_MISMATCH (-3)

static struct {
    int             inited, rank, size;
    int             told_none; /* a worker: no more requests to send */
    pthread_mutex_t mu;
    pthread_t       thread;
    int             serving;  /* the dispatcher thread runs */
    int             closing;  /* rank 0 stops: "none" to every request */
    int64_t         cursor, n;
    bm_done_fn      done;
    void           *user;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void mpi_msg(int code, const char *what, char *err, size_t err_len)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, s, &len) != MPI_SUCCESS)
        snprintf(s, sizeof s, "error %d", code);
    snprintf(err, err_len, "MPI: %s: %s", what, s);
}

int bm_available(void)
{
    return 1;
}

int bm_init(int *rank, int *size, char *err, size_t err_len)
{
    int provided = 0, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) {
        snprintf(err, err_len, "MPI_Init_thread failed (error %d)", rc);
        return 1;
    }
    g.inited = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g.size);
    *rank = g.rank;
    *size = g.size;
    if (provided < MPI_THREAD_SERIALIZED) {
        snprintf(err, err_len, "the MPI library gives thread level %d, below "
                 "MPI_THREAD_SERIALIZED (rank 0's dispatcher is a thread)", provided);
        return 1;
    }
    return 0;
}

/* The next unfinished shard from the shared cursor, or REP_NONE. */
static int64_t take(void)
{
    int64_t i = REP_NONE;
    pthread_mutex_lock(&g.mu);
    while (!g.closing && g.cursor < g.n) {
        int64_t c = g.cursor++;
        if (!g.done || !g.done(c, g.user)) {
            i = c;
            break;
        }
    }
    pthread_mutex_unlock(&g.mu);
    return i;
}

/* Answer requests until every other rank has left (been told "none", or
 * said it leaves). */
static void dispatch(void)
{
    int left = 0;
    while (left < g.size - 1) {
        int flag = 0;
        MPI_Status st;
        int rc = MPI_Iprobe(MPI_ANY_SOURCE, TAG_REQ, MPI_COMM_WORLD, &flag, &st);
        if (rc != MPI_SUCCESS) {
            char e[MPI_MAX_ERROR_STRING + 64];
            mpi_msg(rc, "rank 0 cannot receive requests", e, sizeof e);
            fprintf(stderr, "vtok batch: %s\n", e);
            return; /* mpirun ends the job when ranks exit with an error */
        }
        if (!flag) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        int64_t req[2] = {REQ_LEAVE, 0};
        rc = MPI_Recv(req, 2, MPI_INT64_T, st.MPI_SOURCE, TAG_REQ, MPI_COMM_WORLD,
                      MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS || req[0] == REQ_LEAVE) {
            left++;
            continue;
        }
        int64_t rep;
        pthread_mutex_lock(&g.mu);
        int64_t n = g.n;
        int closing = g.closing;
        pthread_mutex_unlock(&g.mu);
        if (closing)
            rep = REP_NONE;
        else if (req[1] != n) {
            fprintf(stderr, "vtok batch: rank %d lists %lld shards, rank 0 %lld: every rank "
                    "must see the same inputs; it gets none\n", st.MPI_SOURCE,
                    (long long)req[1], (long long)n);
            rep = REP_MISMATCH;
        } else
            rep = take();
        if (rep < 0)
            left++;
        if (MPI_Send(&rep, 1, MPI_INT64_T, st.MPI_SOURCE, TAG_REP, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
            fprintf(stderr, "vtok batch: rank 0 cannot answer rank %d\n", st.MPI_SOURCE);
    }
}

static void *dispatch_main(void *arg)
{
    (void)arg;
    dispatch();
    return NULL;
}

int bm_serve(int64_t n, bm_done_fn done, void *user, char *err, size_t err_len)
{
    if (!g.inited || g.rank != 0) {
        snprintf(err, err_len, "bm_serve: only rank 0, after bm_init");
        return 1;
    }
    pthread_mutex_lock(&g.mu);
    g.n = n;
    g.cursor = 0;
    g.done = done;
    g.user = user;
    pthread_mutex_unlock(&g.mu);
    if (g.size > 1) {
        if (pthread_create(&g.thread, NULL, dispatch_main, NULL) != 0) {
            snprintf(err, err_len, "cannot start rank 0's dispatcher thread");
            return 1;
        }
        g.serving = 1;
    }
    return 0;
}

int64_t bm_next(int64_t n, int stop, char *err, size_t err_len)
{
    if (!g.inited) {
        snprintf(err, err_len, "bm_next before bm_init");
        return -2;
    }
    if (g.rank == 0) /* the others go on getting shards until bm_finish */
        return stop ? REP_NONE : take();
    if (g.told_none)
        return REP_NONE;
    int64_t req[2] = {stop ? REQ_LEAVE : REQ_NEXT, n}, rep = REP_NONE;
    int rc = MPI_Send(req, 2, MPI_INT64_T, 0, TAG_REQ, MPI_COMM_WORLD);
    g.told_none = stop || rc != MPI_SUCCESS;
    if (rc != MPI_SUCCESS) {
        mpi_msg(rc, "cannot ask rank 0 for a shard", err, err_len);
        return -2;
    }
    if (stop)
        return REP_NONE;
    rc = MPI_Recv(&rep, 1, MPI_INT64_T, 0, TAG_REP, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
        g.told_none = 1;
        mpi_msg(rc, "no answer from rank 0", err, err_len);
        return -2;
    }
    if (rep < 0)
        g.told_none = 1;
    if (rep == REP_MISMATCH) {
        snprintf(err, err_len, "this rank lists %lld shards and rank 0 another number: every "
                 "rank must see the same inputs", (long long)n);
        return -2;
    }
    if (rep >= n) {
        snprintf(err, err_len, "rank 0 handed out shard %lld of %lld", (long long)rep,
                 (long long)n);
        return -2;
    }
    return rep;
}

void bm_finish(int stopping)
{
    if (!g.inited)
        return;
    if (g.rank == 0) {
        pthread_mutex_lock(&g.mu);
        if (stopping)
            g.closing = 1;
        pthread_mutex_unlock(&g.mu);
        if (g.serving)
            pthread_join(g.thread, NULL);
        else if (g.size > 1) { /* never served (an early error): answer "none" */
            pthread_mutex_lock(&g.mu);
            g.closing = 1;
            pthread_mutex_unlock(&g.mu);
            dispatch();
        }
        g.serving = 0;
    } else if (!g.told_none) {
        char e[16];
        bm_next(0, 1, e, sizeof e);
    }
    MPI_Finalize();
    g.inited = 0;
}

#endif

int bm_launched(void)
{
    const char *s = getenv("OMPI_COMM_WORLD_SIZE");
    char *end;
    long n = s && *s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || n < 2)
        return 0;
    /* set by mpirun (ORTE / PRRTE with PMIx) for the processes it starts */
    return getenv("PMIX_RANK") || getenv("OMPI_MCA_orte_hnp_uri") ||
           getenv("OMPI_MCA_orte_launch");
}
