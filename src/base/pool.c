/* Fork-join pool. Work is handed out in chunks from one atomic counter, so a thread that is
 * descheduled (the machines are shared) holds up at most one chunk. Waiting threads spin for
 * a short while (a decode step issues a pool_for every few tens of microseconds) and then
 * block on a condition variable, so an idle pool costs no CPU. */
#include "base/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define POOL_PAUSE() _mm_pause()
#else
#define POOL_PAUSE() ((void)0)
#endif

#define POOL_SPIN 4000

struct pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    _Atomic uint64_t gen;
    _Atomic size_t next;
    _Atomic int pending; /* worker threads that have not finished the current generation */
    _Atomic bool stop;
    pool_fn fn;
    void *ctx;
    size_t n, chunk;
};

struct pool_thread_arg {
    struct pool *p;
    int tid;
};

static void pool_run_chunks(struct pool *p, int tid)
{
    for (;;) {
        size_t b = atomic_fetch_add_explicit(&p->next, p->chunk, memory_order_relaxed);
        if (b >= p->n) break;
        size_t e = b + p->chunk < p->n ? b + p->chunk : p->n;
        p->fn(p->ctx, b, e, tid);
    }
}

static void *pool_thread(void *arg)
{
    struct pool_thread_arg *ta = arg;
    struct pool *p = ta->p;
    int tid = ta->tid;
    free(ta);
    uint64_t seen = 0;
    for (;;) {
        uint64_t g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int i = 0; g == seen && i < POOL_SPIN; i++) {
            POOL_PAUSE();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv_work, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = g;
        pool_run_chunks(p, tid);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_broadcast(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

struct pool *pool_new(int n_threads)
{
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 256) n_threads = 256;
    struct pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            pool_free(p);
            return NULL;
        }
        for (int i = 1; i < n_threads; i++) {
            struct pool_thread_arg *ta = malloc(sizeof *ta);
            if (!ta) break;
            ta->p = p;
            ta->tid = i;
            if (pthread_create(&p->threads[i - 1], NULL, pool_thread, ta) != 0) {
                free(ta);
                break;
            }
            p->n_threads++;
        }
    }
    return p;
}

void pool_free(struct pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p->threads);
    free(p);
}

int pool_threads(const struct pool *p)
{
    return p ? p->n_threads : 1;
}

void pool_for(struct pool *p, size_t n, size_t chunk, pool_fn fn, void *ctx)
{
    if (n == 0) return;
    if (!p || p->n_threads == 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    if (chunk == 0) {
        chunk = n / ((size_t)p->n_threads * 8);
        if (chunk == 0) chunk = 1;
    }
    if (chunk >= n) { /* one chunk: no point waking anyone */
        fn(ctx, 0, n, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->chunk = chunk;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);

    pool_run_chunks(p, 0);

    for (int i = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) {
        if (i < POOL_SPIN) {
            POOL_PAUSE();
            continue;
        }
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->cv_done, &p->mu);
        pthread_mutex_unlock(&p->mu);
        break;
    }
}
