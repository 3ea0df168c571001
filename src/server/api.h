/*
 * The HTTP API v1 (SPEC §3; docs/api.md): routing and the handlers for
 * streams, produce, read, ids, health, status and metrics. Handlers run on
 * the I/O loop that owns the connection; a produce answers asynchronously
 * once the log reports every partition's batch at the requested ack level.
 */
#ifndef SPW_API_H
#define SPW_API_H

#include <stdint.h>

#include "core/hist.h"
#include "log/log.h"
#include "net/http.h"
#include "server/catalog.h"

enum { SPW_REJ_INVALID, SPW_REJ_RATE_LIMIT, SPW_REJ_SHED, SPW_REJ_BACKPRESSURE, SPW_REJ_DISK, SPW_REJ__N };

typedef struct spw_api {
    spw_log *log;
    spw_catalog *cat;
    spw_http_server *http;
    const char *data_dir;
    uint32_t node_id;
    int64_t started_ms;
    uint64_t max_request_bytes;
    uint64_t max_pending_bytes;
    uint32_t max_connections;
    spw_hist produce_latency; /* request complete → answered, µs */
    _Atomic uint64_t rejected[SPW_REJ__N];
    _Atomic uint64_t events_in, bytes_in;
} spw_api;

/* The spw_http_handler for the API; ctx is a spw_api. */
void spw_api_handle(void *ctx, spw_http_req *req);

#endif
