/* The worker pool: see workq.h. One mutex, one condition variable for the
 * workers, a FIFO list of jobs. */
#include "core/workq.h"

#include <pthread.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/thread.h"

typedef struct job {
    struct job *next;
    void (*fn)(void *);
    void *arg;
} job;

struct spw_workq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    uint32_t queued, running, max_queued, nthreads;
    uint64_t done, refused;
    int stop;
    pthread_t *th;
};

static void *worker(void *arg)
{
    spw_workq *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->head && !q->stop)
            pthread_cond_wait(&q->cv, &q->mu);
        job *j = q->head;
        if (!j)
            break; /* stopping, nothing left */
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        q->queued--;
        q->running++;
        pthread_mutex_unlock(&q->mu);
        j->fn(j->arg);
        spw_free(j);
        pthread_mutex_lock(&q->mu);
        q->running--;
        q->done++;
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

spw_workq *spw_workq_create(const char *name, uint32_t threads, uint32_t max_queued)
{
    spw_workq *q = spw_xcalloc(1, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->max_queued = max_queued ? max_queued : 1;
    q->th = spw_xcalloc(threads ? threads : 1, sizeof *q->th);
    for (uint32_t i = 0; i < (threads ? threads : 1); i++) {
        if (pthread_create(&q->th[i], NULL, worker, q) != 0)
            break;
        spw_thread_name(q->th[i], "%s-%u", name, i);
        q->nthreads++;
    }
    if (q->nthreads == 0)
        abort(); /* like the log's threads: no server without them */
    return q;
}

void spw_workq_destroy(spw_workq *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (uint32_t i = 0; i < q->nthreads; i++)
        pthread_join(q->th[i], NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    spw_free(q->th);
    spw_free(q);
}

int spw_workq_submit(spw_workq *q, void (*fn)(void *arg), void *arg)
{
    job *j = spw_xmalloc(sizeof *j);
    j->next = NULL;
    j->fn = fn;
    j->arg = arg;
    pthread_mutex_lock(&q->mu);
    if (q->queued >= q->max_queued) {
        q->refused++;
        pthread_mutex_unlock(&q->mu);
        spw_free(j);
        return SPW_EAGAIN;
    }
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->queued++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

void spw_workq_stats_get(spw_workq *q, spw_workq_stats *out)
{
    pthread_mutex_lock(&q->mu);
    *out = (spw_workq_stats){.threads = q->nthreads,
                             .queued = q->queued,
                             .running = q->running,
                             .done = q->done,
                             .refused = q->refused};
    pthread_mutex_unlock(&q->mu);
}
