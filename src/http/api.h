/*
 * The HTTP API v1 (docs/api.md): routing and the handlers for
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
#include "svc/svc.h"


struct spw_bin_server;
struct spw_membudget;
struct spw_sinks;

/* The HTTP front end's context: the service (svc/svc.h) and what only
 * the HTTP routes see (the listeners for /status and /metrics, the sinks
 * for /sinks). */
typedef struct spw_api {
    spw_svc svc;
    /* Set by the server after each listener's loops started, while the
     * other listener's loops may already read them (/status, /metrics):
     * atomic, NULL until set. */
    spw_http_server *_Atomic http;
    struct spw_bin_server *_Atomic bin; /* NULL when the binary listener is off */
    uint32_t max_connections;
    struct spw_membudget *buffers; /* connection input memory (net/membudget.h), for /metrics */
    struct spw_membudget *unsent;  /* answers not yet written (net/conn.h), for /metrics */
    struct spw_sinks *sinks;       /* sinks (sink/sink.h); NULL until started */
} spw_api;

/* Test builds only (src/server/testhooks.c, linked into spillway_test):
 * serves /debug/...; NULL in spillway, where those paths answer 404. */
extern void (*spw_api_debug_handler)(spw_api *api, spw_http_req *req);

#define SPW_API_READ_MAX_BYTES (8u << 20) /* a read answer's size, at most (plus one record) */

/*
 * Reads up to limit records of partition part from offset into out as
 * NDJSON lines (the read endpoint's shape, docs/api.md), stopping once
 * out holds max_bytes (at least one record). Returns the number of records, *next the offset after the last
 * one; or, when nothing is readable at offset, the error (SPW_ECORRUPT
 * with *bad the first offset past the damaged range, when known).
 * REQUIRES: part < s's partitions; offset within the partition.
 */
int spw_api_read_ndjson(spw_stream *s, uint32_t part, uint64_t offset, uint64_t limit, uint64_t max_bytes, spw_buf *out,
                        uint64_t *next, uint64_t *bad);

/* api.c's query-string parsing, for the handlers in other files:
 * 1 found, 0 absent, -1 malformed (query_str: or longer than cap - 1). */
int spw__api_query_u64(const char *q, const char *name, uint64_t *v);
int spw__api_query_str(const char *q, const char *name, char *out, size_t cap);

/* Registers the server's metric families into api->metrics (produce's,
 * the log's, pressure, dedupe, buffers, rate limits, disk, HTTP, tokens,
 * consumer groups, sinks); a listener registers its own (binproto.h). */
void spw_api_metrics_register(spw_api *api);

/* spw_http_config.body_allowed for the API (ctx a spw_api): with tokens,
 * only a request whose headers carry a valid one may have its body kept
 * (docs/operations.md "Memory"). */
int spw_api_body_allowed(void *ctx, const spw_http_req *req, const char *url);

/* The spw_http_handler for the API; ctx is a spw_api. */
void spw_api_handle(void *ctx, spw_http_req *req);

#endif
