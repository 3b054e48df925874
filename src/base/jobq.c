#include "base/jobq.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct jobq_item {
    jobq_fn fn;
    void *arg;
};

struct jobq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct jobq_item *ring; /* capacity slots */
    int cap, head, count;
    bool stopping;
    int n_workers;
    pthread_t *threads;
};

struct jobq_worker_arg {
    struct jobq *q;
    int index;
};

static void *jobq_worker(void *p)
{
    struct jobq_worker_arg *wa = p;
    struct jobq *q = wa->q;
    int index = wa->index;
    free(wa);
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (q->count == 0 && !q->stopping) pthread_cond_wait(&q->cv, &q->mu);
        if (q->count == 0 && q->stopping) break;
        struct jobq_item it = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
        pthread_mutex_unlock(&q->mu);
        it.fn(it.arg, index);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

struct jobq *jobq_new(int n_workers, int capacity, struct err *err)
{
    if (n_workers < 1 || n_workers > 1024 || capacity < 1 || capacity > 1 << 20) {
        err_set(err, ERR_INVALID, "job queue: workers must be 1..1024 and capacity 1..1048576 "
                                  "(got %d workers, capacity %d)", n_workers, capacity);
        return NULL;
    }
    struct jobq *q = calloc(1, sizeof *q);
    if (!q) goto nomem;
    q->ring = calloc((size_t)capacity, sizeof *q->ring);
    q->threads = calloc((size_t)n_workers, sizeof *q->threads);
    if (!q->ring || !q->threads) goto nomem;
    q->cap = capacity;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    for (int i = 0; i < n_workers; i++) {
        struct jobq_worker_arg *wa = malloc(sizeof *wa);
        if (!wa) goto fail_threads;
        wa->q = q;
        wa->index = i;
        if (pthread_create(&q->threads[i], NULL, jobq_worker, wa) != 0) {
            free(wa);
            goto fail_threads;
        }
        q->n_workers++;
    }
    return q;
fail_threads:
    err_set(err, ERR_NOMEM, "job queue: could not start worker thread %d of %d", q->n_workers,
            n_workers);
    jobq_free(q);
    return NULL;
nomem:
    if (q) {
        free(q->ring);
        free(q->threads);
        free(q);
    }
    err_set(err, ERR_NOMEM, "job queue: out of memory");
    return NULL;
}

int jobq_submit(struct jobq *q, jobq_fn fn, void *arg)
{
    pthread_mutex_lock(&q->mu);
    if (q->stopping) {
        pthread_mutex_unlock(&q->mu);
        return ERR_INVALID;
    }
    if (q->count == q->cap) {
        pthread_mutex_unlock(&q->mu);
        return ERR_BUSY;
    }
    q->ring[(q->head + q->count) % q->cap] = (struct jobq_item){fn, arg};
    q->count++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

int jobq_depth(struct jobq *q)
{
    pthread_mutex_lock(&q->mu);
    int n = q->count;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int jobq_workers(const struct jobq *q)
{
    return q->n_workers;
}

void jobq_free(struct jobq *q)
{
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    q->stopping = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < q->n_workers; i++) pthread_join(q->threads[i], NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q->ring);
    free(q->threads);
    free(q);
}
