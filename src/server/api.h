/*
 * The HTTP API v1 (SPEC §3; docs/api.md): routing and the handlers for
 * streams, produce, read, ids, health, status and metrics. Handlers run on
 * the I/O loop that owns the connection; a produce answers asynchronously
 * once the log reports every partition's batch at the requested ack level.
 */
#ifndef SPW_API_H
#define SPW_API_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/hist.h"
#include "log/log.h"
#include "net/http.h"
#include "server/admit.h"
#include "server/catalog.h"
#include "server/dedupe.h"

enum { SPW_REJ_INVALID, SPW_REJ_RATE_LIMIT, SPW_REJ_SHED, SPW_REJ_BACKPRESSURE, SPW_REJ_DISK, SPW_REJ__N };

struct spw_bin_server;
struct spw_auth;
struct spw_coalescer;
struct spw_groups_http;

typedef struct spw_api {
    spw_log *log;
    spw_catalog *cat;
    /* Set by the server after each listener's loops started, while the
     * other listener's loops may already read them (/status, /metrics):
     * atomic, NULL until set. */
    spw_http_server *_Atomic http;
    struct spw_bin_server *_Atomic bin; /* NULL when the binary listener is off */
    struct spw_auth *auth;      /* the tokens (server/auth.h); NULL when no tokens file is configured */
    const char *data_dir;
    uint32_t node_id;
    int64_t started_ms;
    uint64_t max_request_bytes;
    uint64_t max_pending_bytes;
    uint32_t max_connections;
    spw_pressure pressure;    /* watermarks and shedding (admit.h) */
    struct spw_rl_table *rl; /* rate limits (server/ratelimit.h); NULL: none */
    spw_dd *dd;              /* idempotency keys and producer sequences (dedupe.h); NULL: none */
    struct spw_coalescer *coal; /* coalesce: true streams under pressure (coalesce.h); NULL: off */
    uint64_t max_disk_bytes; /* 0: no limit (spw_api_produce refuses past it) */
    struct spw_groups_http *groups; /* consumer groups (groups_http.h); NULL: their routes answer 404 */
    struct spw_membudget *buffers; /* connection input memory (net/membudget.h), for /metrics */
    struct spw_sinks *sinks;       /* sinks (sink/sink.h); NULL until started */
    spw_hist produce_latency; /* request complete → answered, µs */
    _Atomic uint64_t rejected[SPW_REJ__N];
    _Atomic uint64_t events_in, bytes_in;
    _Atomic uint64_t duplicates; /* requests answered from the dedupe table */
    /* Persisted reader positions (group offsets, sink progress) found past
     * their partition's end at attach and moved down to it. */
    _Atomic uint64_t positions_clamped;
} spw_api;

/*
 * One produce in flight, shared by the HTTP and binary front ends so an
 * event from either is the same record: the records grouped by partition
 * (FNV-1a of the key mod partitions, round robin without a key, or one
 * fixed partition), one batch per partition, the budget reserved for all
 * of them at once, then appended. slots[k] is partition k's batch;
 * order[slots[k].first_event + j] is the request index of its record j.
 */
typedef struct spw_produce spw_produce;
typedef void (*spw_produce_done)(spw_produce *pr, void *user);

typedef struct spw_produce_part {
    struct spw_produce *pr;
    uint32_t partition;
    uint32_t count;
    uint64_t first_offset;
    uint32_t first_event;
    int stored; /* already in the log (completing a request a crash cut) */
    uint32_t fp; /* keyed requests: fingerprint of its records (spw_api_dd_fingerprint) */
} spw_produce_part;

struct spw_produce {
    struct spw_api *api;
    spw_stream *s;
    _Atomic int pending;
    _Atomic int err; /* 0, or the first append error */
    uint32_t n_events;
    uint32_t n_slots;
    uint64_t t0; /* spw_mono_ns at start */
    uint64_t bytes;
    uint64_t first_ticket; /* event i's id: spw_id_from_ticket(first_ticket + i) */
    int ids_unknown;       /* some partitions were stored by an earlier attempt */
    struct spw_dd_entry *dd; /* dedupe entry to finish, or NULL */
    uint32_t *order;
    /* Coalesced requests (server/coalesce.h): events replaced by newer
     * ones for their key before they were written. superseded is NULL,
     * or one byte per request event, 1 = superseded (no offset, no id);
     * slots and order then list only the events written. */
    uint32_t n_superseded;
    uint8_t *superseded;
    spw_produce_done done;
    void *user;
    spw_produce_part slots[];
};

/*
 * Appends n records (copied: recs and what they point to may go once this
 * returns) to stream s at ack level ack. partition is a partition index or
 * UINT32_MAX to route by key. producer_id/producer_seq go into each batch
 * header (docs/protocol.md); dropping duplicates is the front ends' step
 * before this call (spw_api_dd_begin, with the dedupe entry in o->dd).
 * Returns 0: done(pr, user) then runs exactly once, on any thread (the
 * caller's for ack none, the flusher's otherwise), with pr->err set; the
 * reference to s now belongs to pr, released by spw_api_produce_free, and
 * events_in/bytes_in (or rejected disk) are counted before done runs.
 * Or returns an error and nothing was appended (s still the caller's):
 * SPW_EAGAIN the budget is full (503), SPW_EMSGSIZE larger than the budget
 * (413), SPW_EINVAL no records or no such partition, SPW_ENOMEM encoding
 * failed; or a disk refusal (spw_api_disk_error says which): SPW_EDISKLIMIT
 * (max_disk_bytes reached), or the error that failed one of the request's
 * partitions, which refuses appends until it recovers.
 * REQUIRES: ack is not SPW_ACK_REPLICATED (callers answer 501).
 */
int spw_api_produce(spw_api *api, spw_stream *s, const spw_record *recs, uint32_t n, uint32_t partition, spw_ack ack,
                    uint64_t producer_id, uint32_t producer_seq, spw_produce_done done, void *user);
void spw_api_produce_free(spw_produce *pr);

/* spw_api_produce with every option. */
typedef struct spw_produce_opts {
    uint32_t partition; /* UINT32_MAX: route by key */
    spw_ack ack;
    uint64_t producer_id;
    uint32_t producer_seq;       /* the request's first sequence number */
    uint64_t idem_key;           /* 0, or the dedupe key (dedupe.h): stored in every batch */
    struct spw_dd_entry *dd;     /* reserved dedupe entry, finished when the request completes */
    const spw_dd_result *stored; /* partitions a cut earlier attempt stored: not appended again */
    int supersede_ok;            /* the answer can say "superseded" (coalesce.h): HTTP yes, binary by flag */
} spw_produce_opts;
int spw_api_produce_ex(spw_api *api, spw_stream *s, const spw_record *recs, uint32_t n, const spw_produce_opts *o,
                       spw_produce_done done, void *user);

/* Finishes a produce the coalescer carried (server/coalesce.h): dedupe
 * entry, counters, then done. REQUIRES: pr->err, slots and order final. */
void spw__api_produce_complete(spw_produce *pr);

/* The partition of request event i (as spw_api_produce routes it). */
uint32_t spw_api_route(spw_stream *s, const spw_record *v, uint32_t i, uint32_t partition, uint64_t idem_key);

/*
 * The dedupe step of a keyed produce, for both front ends: spw_dd_begin,
 * then
 *   - an indeterminate key (a failed request that may have left batches,
 *     dedupe.h) is resolved from the headers of the partitions it wrote to,
 *     once none of them is failed; while one is, SPW_DD_UNRESOLVED
 *     (answered in_progress, as SPW_DD_BUSY);
 *   - a stored request (DONE, PARTIAL) is compared with this one, partition
 *     by partition (count and fingerprint of the records, read back from
 *     the log where the table has none): different content is
 *     SPW_DD_REUSED, and nothing is reserved.
 * Returns as spw_dd_begin (never SPW_DD_INDET), SPW_DD_UNRESOLVED or
 * SPW_DD_REUSED; e is reserved only for SPW_DD_NEW and SPW_DD_PARTIAL.
 * partition: as spw_api_produce_ex (UINT32_MAX: by key).
 */
enum { SPW_DD_REUSED = 16, SPW_DD_UNRESOLVED = 17 };
int spw_api_dd_begin(spw_api *api, spw_stream *s, uint64_t key, const spw_record *in, uint32_t n, uint32_t partition,
                     struct spw_dd_entry **e, spw_dd_result *res);

/* The fingerprint of records (CRC32C over each one's key, value and
 * headers, lengths included; not the timestamp), continuing crc. */
uint32_t spw_api_dd_fingerprint(uint32_t crc, const spw_record *v);

/*
 * Pressure admission for a produce of this priority (admit.h), counted in
 * rejected[] when refused. Returns 0, or 503's code ("shed" or
 * "backpressure") with *retry_ms set.
 */
const char *spw_api_admit(spw_api *api, int priority, uint32_t *retry_ms);

/*
 * How both front ends answer a produce that the disk refused or failed
 * (docs/api.md, docs/protocol.md): err is spw_api_produce's return
 * (refused = 1: nothing was appended) or pr->err (refused = 0: the write
 * failed on the way and nothing of it is acknowledged). Fills the HTTP
 * status, the binary status, the code word and a sentence in msg (cap
 * bytes), and returns 1 if err is a disk error:
 *   SPW_EDISKLIMIT          507 disk_limit
 *   -ENOSPC, -EDQUOT        507 disk_full
 *   any other I/O error     500 write_failed (SPW_ST_INTERNAL)
 * or 0 for the errors that are not (budget, size, encoding, closing),
 * which a pr->err is answered as 500 write_failed all the same.
 */
int spw_api_disk_error(int err, int refused, int *http_status, uint16_t *bin_status, const char **code, char *msg,
                       size_t cap);

/* Test builds only (src/server/testhooks.c, linked into spillway_test):
 * serves /debug/...; NULL in spillway, where those paths answer 404. */
extern void (*spw_api_debug_handler)(spw_api *api, spw_http_req *req);

/* Is a key valid UTF-8 without control characters (so reads can show it
 * as a JSON string)? Both front ends require it. */
int spw__key_text_ok(const uint8_t *p, size_t n);

/* Fills api->dd from the batches of every stream's dedupe window (at start). */
void spw_api_dedupe_rebuild(spw_api *api);

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

/* The spw_http_handler for the API; ctx is a spw_api. */
void spw_api_handle(void *ctx, spw_http_req *req);

#endif
