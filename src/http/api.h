/*
 * The HTTP API v1 (SPEC §3; docs/api.md): routing and the handlers for
 * streams, produce, read, ids, health, status and metrics. Handlers run on
 * the I/O loop that owns the connection; a produce goes through the
 * produce service (svc/produce.h), which answers asynchronously once the
 * log reports every partition's batch at the requested ack level.
 */
#ifndef SPW_API_H
#define SPW_API_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/hist.h"
#include "log/log.h"
#include "http/http.h"
#include "admit/admit.h"
#include "catalog/catalog.h"
#include "admit/dedupe.h"
#include "svc/produce.h"


struct spw_bin_server;
struct spw_auth;
struct spw_coalescer;
struct spw_consume;

typedef struct spw_api {
    spw_log *log;
    spw_catalog *cat;
    /* Set by the server after each listener's loops started, while the
     * other listener's loops may already read them (/status, /metrics):
     * atomic, NULL until set. */
    spw_http_server *_Atomic http;
    struct spw_bin_server *_Atomic bin; /* NULL when the binary listener is off */
    struct spw_auth *auth;      /* the tokens (svc/auth.h); NULL when no tokens file is configured */
    const char *data_dir;
    uint32_t node_id;
    int64_t started_ms;
    uint64_t max_request_bytes;
    uint64_t max_pending_bytes;
    uint32_t max_connections;
    spw_pressure pressure;    /* watermarks and shedding (admit.h) */
    struct spw_rl_table *rl; /* rate limits (admit/ratelimit.h); NULL: none */
    spw_dd *dd;              /* idempotency keys and producer sequences (dedupe.h); NULL: none */
    struct spw_coalescer *coal; /* coalesce: true streams under pressure (coalesce.h); NULL: off */
    uint64_t max_disk_bytes; /* 0: no limit (spw_produce_submit refuses past it) */
    struct spw_consume *groups; /* consumer groups (svc/consume.h); NULL: their routes answer 404 */
    struct spw_membudget *buffers; /* connection input memory (net/membudget.h), for /metrics */
    struct spw_sinks *sinks;       /* sinks (sink/sink.h); NULL until started */
    struct spw_metrics *metrics;   /* what /metrics shows (svc/metrics.h); each module registers its own */
    spw_hist produce_latency; /* request complete → answered, µs */
    _Atomic uint64_t rejected[SPW_REJ__N];
    _Atomic uint64_t events_in, bytes_in;
    _Atomic uint64_t duplicates; /* requests answered from the dedupe table */
    /* Persisted reader positions (group offsets, sink progress) found past
     * their partition's end at attach and moved down to it. */
    _Atomic uint64_t positions_clamped;
} spw_api;

/* Test builds only (src/server/testhooks.c, linked into spillway_test):
 * serves /debug/...; NULL in spillway, where those paths answer 404. */
extern void (*spw_api_debug_handler)(spw_api *api, spw_http_req *req);

/*
 * Reads up to limit records of partition part from offset into out as
 * NDJSON lines (the read endpoint's shape, docs/api.md), at most about 8
 * MiB. Returns the number of records, *next the offset after the last
 * one; or, when nothing is readable at offset, the error (SPW_ECORRUPT
 * with *bad the first offset past the damaged range, when known).
 * REQUIRES: part < s's partitions; offset within the partition.
 */
int spw_api_read_ndjson(spw_stream *s, uint32_t part, uint64_t offset, uint64_t limit, spw_buf *out, uint64_t *next,
                        uint64_t *bad);

/* api.c's query-string parsing, for the handlers in other files:
 * 1 found, 0 absent, -1 malformed (query_str: or longer than cap - 1). */
int spw__api_query_u64(const char *q, const char *name, uint64_t *v);
int spw__api_query_str(const char *q, const char *name, char *out, size_t cap);

/* Registers the server's metric families into api->metrics (produce's,
 * the log's, pressure, dedupe, buffers, rate limits, disk, HTTP, tokens,
 * consumer groups, sinks); a listener registers its own (binproto.h). */
void spw_api_metrics_register(spw_api *api);

/* The spw_http_handler for the API; ctx is a spw_api. */
void spw_api_handle(void *ctx, spw_http_req *req);

#endif
