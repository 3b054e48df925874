/** A bounded job queue served by a pool of worker threads (the serving model's compute
 *  workers). Submitting to a full queue fails at once with ERR_BUSY, so callers can answer
 *  503 instead of piling up work. */
#ifndef BASE_JOBQ_H
#define BASE_JOBQ_H

#include "base/err.h"

struct jobq; /* opaque */

/** A job runs on one worker. `worker` is the worker's index (0..n_workers-1), so a job can use
 *  per-worker scratch memory without locking. */
typedef void (*jobq_fn)(void *arg, int worker);

/** Starts `n_workers` threads; at most `capacity` jobs wait (running ones not counted). */
struct jobq *jobq_new(int n_workers, int capacity, struct err *err);
/** Queues a job; ERR_BUSY if the queue is full, ERR_INVALID after jobq_free began. */
int jobq_submit(struct jobq *q, jobq_fn fn, void *arg);
/** Jobs waiting (not yet running). */
int jobq_depth(struct jobq *q);
int jobq_workers(const struct jobq *q);
/** Runs every queued job, then joins the workers. NULL is fine. */
void jobq_free(struct jobq *q);

#endif
