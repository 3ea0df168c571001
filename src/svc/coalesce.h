/*
 * Coalescing (docs/api.md "Coalescing", docs/architecture.md
 * "Coalescing"): on a stream created with "coalesce": true, under
 * pressure, a newer pending event for a key replaces an older one that
 * is not written yet; the older one's request is answered as accepted,
 * with the event counted as superseded. Meant for location-style updates,
 * where only the newest value of a key matters: when the disk is behind,
 * it writes that and skips the values nobody will read.
 *
 * Which requests: spw_produce_submit_ex hands a produce to a coalesce stream
 * over (after routing its events to partitions) when the pressure level
 * (admit.h) is 1 or more — shedding has started — or while the stream
 * still has events buffered, so that a later request never overtakes an
 * earlier one. Everything else takes the normal path, unchanged.
 *
 * How: one buffer per (stream, partition) (admit/coalbuf.h): the pending events
 * in acceptance order, and key → newest. Each event is copied in, with
 * its share of the pending budget reserved (spw_log_reserve; admitted
 * whole or refused 503, as the normal path), so memory stays bounded by
 * max_pending_bytes. A partition has at most one coalesced batch in the
 * log's hands at a time (two when its requests mix ack fsync with
 * lower levels): when none is, the buffer is drained at once, on the
 * request's own thread, so an idle partition adds no delay; while one is,
 * events gather — and coalesce — until it completes, and the drain thread
 * then writes them as the next batch. That is the log's own group commit
 * (one flush cycle of waiting at most), with the newest value per key.
 *
 * Answers: a request completes when each of its events is written at the
 * request's ack level (ack none: handed to the log) or superseded and its
 * replacement written at that level (its replacement's failure is its
 * failure; the replacement is written at the highest ack level among
 * itself and what it replaced). ids
 * are reserved per request in request order, as on the normal path, under
 * the locks of the request's partitions so that every batch's ids rise;
 * a superseded event's id is never stored. Which events may be
 * superseded: only those whose answer can say so and whose request has
 * no dedupe identity — HTTP requests without Idempotency-Key, and binary
 * PRODUCEs with the SUPERSEDE_OK flag and no producer id
 * (docs/protocol.md). The others are never replaced (old binary clients
 * could not read such an answer; a dedupe record must describe the write
 * exactly), but they still replace older pending events of their keys,
 * and an idempotent request's events get a batch of their own, carrying
 * its producer id, sequence and dedupe key as on the normal path.
 *
 * Ordering: per partition, batches follow acceptance order of the
 * survivors; a request's surviving events in one partition are
 * consecutive in one batch (so the answer's slots work as ever); per key
 * the last value written is the newest accepted.
 *
 * Durability: nothing is acknowledged before it reached the ack level; a
 * crash loses only unanswered events. spw_coalesce_close waits until
 * every buffered event is in the log and answered.
 */
#ifndef SPW_COALESCE_H
#define SPW_COALESCE_H

#include <stdint.h>

#include "admit/admit.h"
#include "catalog/catalog.h"
#include "log/log.h"
#include "svc/produce.h"

typedef struct spw_coalescer spw_coalescer;
typedef struct spw_coal_stream spw_coal_stream;

/* What the coalescer writes through: parts of the service context
 * (svc/svc.h), which must outlive it. */
typedef struct spw_coalesce_env {
    spw_log *log;
    spw_catalog *cat;
    spw_pressure *pressure;      /* initialized */
    uint64_t max_disk_bytes;     /* 0: no limit */
    _Atomic uint64_t *rejected;  /* refusal counters, [SPW_REJ__N] (admit.h) */
} spw_coalesce_env;

/* Starts the drain thread; copies *env. */
spw_coalescer *spw_coalesce_new(const spw_coalesce_env *env);

/* Waits until nothing is buffered or in flight (REQUIRES: no more
 * produces, i.e. the front ends are stopped), then stops the thread and
 * frees co. Streams keep their (idle) state until they are freed. */
void spw_coalesce_close(spw_coalescer *co);

/*
 * Called by spw_produce_submit_ex for a coalesce stream, with pr built
 * (routed: slots with partition, first_event and count; order) and in[]
 * the request's records. Returns SPW_COALESCE_DIRECT: not here, take the
 * normal path (pr untouched). Or as spw_produce_submit_ex: 0, and the
 * request completes through spw__produce_complete exactly once (maybe
 * before this returns); or an error and nothing was taken (pr, with its
 * order, is the caller's to free): SPW_EAGAIN, SPW_EMSGSIZE,
 * SPW_EDISKLIMIT or a failed partition's error.
 */
enum { SPW_COALESCE_DIRECT = 1 };
int spw_coalesce_produce(spw_coalescer *co, spw_produce *pr, const spw_record *in, const spw_produce_opts *po);

/* A stream's state, freed with the stream (catalog.c). NULL is fine.
 * REQUIRES: idle (entries and batches hold references to the stream). */
void spw_coal_stream_free(spw_coal_stream *cs);

/* Events of stream s superseded so far. */
uint64_t spw_coalesce_stream_superseded(spw_stream *s);

typedef struct spw_coalesce_stats {
    uint64_t superseded;      /* events replaced by newer ones, all streams */
    uint64_t buffered_events; /* waiting in buffers now */
    uint64_t buffered_bytes;  /* the budget they hold */
    uint64_t batches;         /* coalesced batches handed to the log */
} spw_coalesce_stats;
void spw_coalesce_stats_get(spw_coalescer *co, spw_coalesce_stats *st);

#endif
