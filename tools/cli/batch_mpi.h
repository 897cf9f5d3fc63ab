/* batch_mpi.h - dynamic shard hand-out for `vtok batch` under mpirun
 * (batch_mpi.c; docs/BATCH.md, "Ranks").
 *
 * Rank 0 runs a dispatcher thread that answers "next shard?" with the next
 * shard index (in list order) whose done marker is absent, each index handed
 * out at most once per run, then "none"; every rank, rank 0 included, asks
 * for its next shard with bm_next(). Built without MPI (VTOK_HAVE_MPI unset)
 * every function is a stub: bm_available() is 0. */
#ifndef VTOK_CLI_BATCH_MPI_H
#define VTOK_CLI_BATCH_MPI_H

#include <stddef.h>
#include <stdint.h>

/* 1 when vtok was built with MPI. */
int bm_available(void);

/* 1 when this process was started by Open MPI's mpirun with more than one
 * rank: OMPI_COMM_WORLD_SIZE > 1 and the launcher's PMIx / ORTE variables
 * (so OMPI_COMM_WORLD_* set by hand, without mpirun, is not mistaken for
 * it). Needs no MPI. */
int bm_launched(void);

/* Whether shard index i is finished (its done marker exists); called from
 * rank 0's dispatcher thread, so it must be thread-safe. */
typedef int (*bm_done_fn)(int64_t i, void *user);

/* MPI_Init_thread (MPI_THREAD_SERIALIZED: the dispatcher thread and the main
 * thread never call MPI at the same time), errors returned, never fatal.
 * Fills rank and size from MPI_COMM_WORLD. 0, or 1 with err filled. */
int bm_init(int *rank, int *size, char *err, size_t err_len);

/* Rank 0 only: start the dispatcher over shards 0..n-1. Call after the
 * stale temporary files are removed: no rank gets a shard before. 0 or 1. */
int bm_serve(int64_t n, bm_done_fn done, void *user, char *err, size_t err_len);

/* This rank's next shard: an index below n (the length of this rank's
 * shard list, checked against rank 0's), -1 when there are none left, -2 on
 * an error (err filled; no more shards for this rank). stop != 0: leave (no
 * more shards wanted), returns -1. */
int64_t bm_next(int64_t n, int stop, char *err, size_t err_len);

/* End: a worker that has not been told "none" says it leaves; rank 0 waits
 * until every other rank has left (each finishes the shard it holds; under
 * mpirun a dead rank ends the whole job), answering their requests, then
 * joins the dispatcher; then MPI_Finalize. Safe to call once after bm_init,
 * whatever happened (rank 0 answers "none" if it never served). stopping: a
 * signal stopped this rank; rank 0 then answers "none" to every request. */
void bm_finish(int stopping);

#endif
