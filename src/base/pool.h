/** A fork-join thread pool for compute kernels: pool_for splits [0, n) into small chunks that
 *  threads take dynamically (so one slow core on a shared machine does not stall the rest),
 *  and the caller's thread works too. Idle threads spin briefly, then block. */
#ifndef BASE_POOL_H
#define BASE_POOL_H

#include <stddef.h>

struct pool; /* opaque */

/** Body of a parallel loop: handles indices [begin, end); `tid` is 0..n_threads-1. */
typedef void (*pool_fn)(void *ctx, size_t begin, size_t end, int tid);

/** n_threads counts the caller: 1 means no extra threads. */
struct pool *pool_new(int n_threads);
void pool_free(struct pool *p);
int pool_threads(const struct pool *p);
/** Runs fn over [0, n) in chunks of `chunk` indices (0 = choose), returns when all are done.
 *  Not re-entrant: one pool_for at a time per pool. A NULL pool runs everything inline. */
void pool_for(struct pool *p, size_t n, size_t chunk, pool_fn fn, void *ctx);

#endif
