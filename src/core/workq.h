/*
 * A pool of worker threads for blocking work the I/O loops must not do
 * (docs/architecture.md, "Threads of spillway serve"): reads of segments
 * for a request, deleting a stream's directory, the fsyncs of a group's
 * first offsets file. A loop submits a job and goes on with its other
 * connections; the job runs on a worker and posts its answer back to the
 * loop (the front end's post function), as a log append's ack does.
 *
 * Bounded: at most max_queued jobs wait; past it spw_workq_submit refuses
 * (SPW_EAGAIN) and the caller answers "busy" at once, so a flood of slow
 * reads costs a bounded queue, never unbounded memory. Jobs run in FIFO
 * order; each runs exactly once, also those still queued at destroy.
 * Not the log's fsync pool (log.c): that one is the flusher's, sized and
 * timed for group commit, and a read queued in front of an fsync there
 * would delay every ack.
 */
#ifndef SPW_WORKQ_H
#define SPW_WORKQ_H

#include <stdint.h>

typedef struct spw_workq spw_workq;

/* threads >= 1, max_queued >= 1; its threads are named NAME-0, NAME-1, ... (core/thread.h). */
spw_workq *spw_workq_create(const char *name, uint32_t threads, uint32_t max_queued);
/* Runs the jobs still queued, then joins the workers. REQUIRES: no submit
 * after or during it. */
void spw_workq_destroy(spw_workq *q);
/* Queues fn(arg) for a worker: 0, or SPW_EAGAIN when max_queued jobs wait
 * (fn never runs then). Any thread. */
int spw_workq_submit(spw_workq *q, void (*fn)(void *arg), void *arg);

typedef struct spw_workq_stats {
    uint32_t threads, queued, running;
    uint64_t done, refused;
} spw_workq_stats;
void spw_workq_stats_get(spw_workq *q, spw_workq_stats *out);

#endif
