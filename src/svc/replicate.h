/*
 * ack=replicated (docs/api.md "Replicated acknowledgement";
 * docs/operations.md "Replication"): a request is answered once a system
 * that replicates holds it — the sink a stream names in replicate_to
 * (a postgres target whose commits wait for a synchronous standby, or
 * Kafka with acks=all) has committed every record of the request.
 *
 * This is the registry between the two sides, and nothing else:
 *   - the sink side (sink/): a sink says where it attached (its stream,
 *     its incarnation, each partition's committed next offset) and
 *     whether its target replicates (spw_repl_attach), moves a
 *     partition's committed offset after each commit
 *     (spw_repl_progress), and says when it goes (spw_repl_detach);
 *   - the produce side (svc/produce.c): a request appended and fsynced
 *     here waits (spw_repl_wait) until the sink's committed offsets
 *     cover each of its partitions' records, or its timeout passes, or
 *     the sink goes.
 *
 * The callback runs exactly once per wait, on the thread that completed
 * it (a sink's worker, the registry's timer thread, or the caller of
 * spw_repl_wait/spw_repl_stop), with no lock held.
 *
 * Cost: a commit looks at the waiters of its own sink only; a waiter is
 * checked against the offsets of its partitions (at most the request's
 * partitions). Waiters are bounded by the requests in flight, which the
 * front ends bound.
 */
#ifndef SPW_SVC_REPLICATE_H
#define SPW_SVC_REPLICATE_H

#include <stddef.h>
#include <stdint.h>

#include "admit/dedupe.h"

typedef struct spw_repl spw_repl;

/* Outcomes given to a waiter's callback. */
enum {
    SPW_REPL_OK = 0,          /* every record committed by the sink */
    SPW_REPL_TIMEOUT = 1,     /* replication_timeout_ms passed (durable here, still delivered) */
    SPW_REPL_UNAVAILABLE = 2, /* the sink is not attached, cannot replicate, or went */
    SPW_REPL_STOPPING = 3,    /* the server is stopping (durable here, delivered after a restart) */
    SPW_REPL_REJECTED = 4,    /* the target refused one of its records: the sink dead-lettered it */
};

spw_repl *spw_repl_new(void);
/* Completes every waiter with SPW_REPL_STOPPING and refuses new ones (also
 * SPW_REPL_STOPPING, at once). Idempotent. */
void spw_repl_stop(spw_repl *r);
void spw_repl_free(spw_repl *r); /* stops first */

/* ---- the sink side ---- */

/* Sink `sink` attached to stream `stream` (incarnation) with nparts
 * partitions whose committed next offsets are next[]. why_not NULL: its
 * target replicates; else the sentence saying why it cannot, which
 * replicated requests to a stream naming it are answered with (503).
 * kick(kick_arg) is called (under the registry's lock: it must only wake
 * the sink, quickly) whenever a request starts waiting for it, so the sink
 * delivers at once instead of at its next poll; until spw_repl_detach. */
void spw_repl_attach(spw_repl *r, const char *sink, const char *stream, uint64_t incarnation, uint32_t nparts,
                     const uint64_t *next, const char *why_not, void (*kick)(void *arg), void *kick_arg);
/* Records below next of partition part are committed by the sink's target. */
void spw_repl_progress(spw_repl *r, const char *sink, uint32_t part, uint64_t next);
/* The record at offset of partition part was dead-lettered by the sink
 * (its target refused it as bad data: it is not in the replicated
 * target). Called before the progress that passes it. A waiter holding
 * it is answered SPW_REPL_REJECTED with why (the target's sentence), and
 * so is one that starts waiting for it later (a request answered from
 * the dedupe table): the registry keeps the last SPW_REPL_DEAD_KEPT dead
 * offsets of each sink. */
#define SPW_REPL_DEAD_KEPT 1024
void spw_repl_dead(spw_repl *r, const char *sink, uint32_t part, uint64_t offset, const char *why);
/* The sink is gone or detached: its waiters are answered
 * SPW_REPL_UNAVAILABLE with why. */
void spw_repl_detach(spw_repl *r, const char *sink, const char *why);

/* ---- the produce side ---- */

/* Can a replicated request to stream (incarnation) through sink be taken
 * now? 1, or 0 with the sentence why not in why. */
int spw_repl_ready(spw_repl *r, const char *sink, const char *stream, uint64_t incarnation, char *why, size_t cap);

typedef void (*spw_repl_cb)(void *arg, int outcome, const char *why);

/* Waits until the sink's committed offsets cover slots[0..n) (each a
 * partition's first_offset and count), at most timeout_ms. cb(arg,
 * outcome, why) runs exactly once (why: a sentence, or NULL), maybe
 * before this returns. */
void spw_repl_wait(spw_repl *r, const char *sink, const char *stream, uint64_t incarnation, const spw_dd_slot *slots,
                   uint32_t n, uint64_t timeout_ms, spw_repl_cb cb, void *arg);

/* Counters for /metrics. */
typedef struct spw_repl_stats {
    uint64_t waiting;  /* requests waiting now */
    uint64_t acked;    /* answered after the sink's commit */
    uint64_t timeouts; /* answered 504 */
    uint64_t unavailable;
    uint64_t rejected; /* answered 422: a record dead-lettered */
} spw_repl_stats;
void spw_repl_stats_get(spw_repl *r, spw_repl_stats *out);
struct spw_metrics;
/* The families above and the wait's latency histogram, in /metrics. */
void spw_repl_metrics_register(spw_repl *r, struct spw_metrics *m);

#endif
