/*
 * The service context: every subsystem a request needs, whatever protocol
 * it came over (docs/architecture.md "Layers"). The front ends (http/api.h,
 * bin/binproto.h) and the sinks hold a pointer to it; it knows none of
 * them, nor the listeners. server.c fills it before any listener starts
 * and tears it down after they stopped; the pointers are not changed in
 * between, the counters are atomic.
 */
#ifndef SPW_SVC_H
#define SPW_SVC_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/hist.h"
#include "log/log.h"
#include "admit/admit.h"
#include "admit/dedupe.h"
#include "catalog/catalog.h"

struct spw_auth;
struct spw_coalescer;
struct spw_consume;
struct spw_metrics;
struct spw_rl_table;
struct spw_workq;
struct spw_views;
struct spw_repl;

typedef struct spw_svc {
    spw_log *log;
    spw_catalog *cat;
    struct spw_auth *auth; /* the tokens (svc/auth.h); NULL when no tokens file is configured */
    const char *data_dir;
    uint32_t node_id;
    int64_t started_ms;
    uint64_t max_request_bytes;
    uint64_t max_pending_bytes;
    spw_pressure pressure;      /* watermarks and shedding (admit.h) */
    struct spw_rl_table *rl;    /* rate limits (admit/ratelimit.h); NULL: none */
    spw_dd *dd;                 /* idempotency keys and producer sequences (dedupe.h); NULL: none */
    struct spw_coalescer *coal; /* coalesce: true streams under pressure (svc/coalesce.h); NULL: off */
    uint64_t max_disk_bytes;    /* 0: no limit (spw_produce_submit refuses past it) */
    struct spw_consume *groups; /* consumer groups (svc/consume.h); NULL: their requests answer not found */
    struct spw_metrics *metrics; /* what /metrics shows (svc/metrics.h); each module registers its own */
    /* Disk work of requests, off the I/O loops (core/workq.h): segment reads,
     * stream deletion, a new group's first fsyncs. NULL: done in place. */
    struct spw_workq *io;
    struct spw_repl *repl;       /* ack=replicated waits for sinks' commits (svc/replicate.h) */
    struct spw_views *views;     /* read models (view/view.h, served by svc/views.h); NULL: not running */
    spw_hist produce_latency;   /* request complete → answered, µs */
    _Atomic uint64_t rejected[SPW_REJ__N];
    _Atomic uint64_t events_in, bytes_in;
    _Atomic uint64_t duplicates; /* requests answered from the dedupe table */
    _Atomic uint64_t version_conflicts; /* 409 version_conflict answers (versioned streams) */
    /* Persisted reader positions (group offsets, sink progress) found past
     * their partition's end at attach and moved down to it. */
    _Atomic uint64_t positions_clamped;
    _Atomic int ready; /* set once startup is done (svc/health.h) */
    _Atomic uint64_t disk_refused_bytes; /* the last request max_disk_bytes refused (svc/health.h) */
} spw_svc;

#endif
