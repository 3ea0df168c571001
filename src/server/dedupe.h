/*
 * The dedupe table (SPEC §3 "Produce", §4; docs/api.md "Idempotency"):
 * what a request that carried an idempotency key was answered, so that a
 * retry within the stream's dedupe_window_ms is answered the same and
 * appends nothing.
 *
 * Keys are 64-bit hashes within a scope (one per open stream):
 *   HTTP    Idempotency-Key:  hash of (tenant, key)
 *   binary  producer id + the request's first sequence number
 * The hash is also stored in every batch of the request (batch header
 * idem_hash, with producer_id/producer_seq and request_count), which is
 * how the table is rebuilt from the log at start: a restart forgets no
 * key still inside its window.
 *
 * A result is compact: the request's event count, the ticket of its first
 * event (event i's id is spw_id_from_ticket(first_ticket + i): a request's
 * ids are reserved together, in request order) and one slot per partition
 * (partition, first offset, count).
 *
 * Memory: at most max_keys entries (config dedupe-max-keys); an entry is
 * about 100 bytes plus 16 per partition the request touched. An entry is
 * forgotten only once its window has passed (counted as evicted): when
 * the table is full of entries inside their windows, a new key is refused
 * (SPW_DD_FULL, counted; the request is answered 503 and appends nothing)
 * rather than a live key forgotten, whose retry would append again. The
 * rebuild at start (spw_dd_restore) never refuses: the table may start
 * above max_keys. Thread-safe: 64 stripes, each with its own mutex, hash
 * chains and age list.
 */
#ifndef SPW_DEDUPE_H
#define SPW_DEDUPE_H

#include <stdint.h>

typedef struct spw_dd_slot {
    uint32_t partition;
    uint32_t count;
    uint64_t first_offset;
} spw_dd_slot;

typedef struct spw_dd_result {
    uint32_t n_events;
    uint64_t first_ticket; /* valid when complete */
    int complete;          /* every event is stored (0: a rebuilt entry whose request was cut by a crash) */
    int ids_known;         /* first_ticket gives the ids (not after completing a cut request) */
    uint32_t nslots;
    spw_dd_slot *slots; /* spw_malloc'd by spw_dd_begin; the caller frees */
} spw_dd_result;

typedef struct spw_dd spw_dd;
typedef struct spw_dd_entry spw_dd_entry;

spw_dd *spw_dd_new(uint64_t max_keys);
void spw_dd_free(spw_dd *d);

enum {
    SPW_DD_NEW = 0,      /* first time: *e is reserved for this request; finish it */
    SPW_DD_DONE = 1,     /* seen and finished: *res is its result */
    SPW_DD_BUSY = 2,     /* the first request with this key is still in flight */
    SPW_DD_CONFLICT = 3, /* the key was used for a request of another size */
    SPW_DD_PARTIAL = 4,  /* a crash cut the first request: *res has what is stored, *e is reserved to finish it */
    SPW_DD_FULL = 5,     /* a new key, and the table is full of keys inside their windows: refuse the request */
};

/*
 * Looks the key up. n_events is the request's size (a key reused for a
 * different request is a conflict). For NEW and PARTIAL, *e must be
 * finished with spw_dd_finish; for DONE and PARTIAL, free res->slots.
 */
int spw_dd_begin(spw_dd *d, uint64_t scope, uint64_t key, uint32_t n_events, int64_t now_ms, spw_dd_entry **e,
                 spw_dd_result *res);

/* Completes a reserved entry: r the result (copied), kept until
 * expires_ms; or r NULL: the request failed, forget the key. */
void spw_dd_finish(spw_dd *d, spw_dd_entry *e, const spw_dd_result *r, int64_t expires_ms);

/* Rebuild: one stored batch of a keyed request (docs/formats/log.md). */
void spw_dd_restore(spw_dd *d, uint64_t scope, uint64_t key, uint32_t request_count, uint64_t batch_first_ticket,
                    uint32_t partition, uint64_t first_offset, uint32_t count, int64_t expires_ms);

/* Forgets every entry of a scope (a deleted stream). */
void spw_dd_drop_scope(spw_dd *d, uint64_t scope);

typedef struct spw_dd_stats {
    uint64_t entries, max_entries, hits, evicted, refused;
} spw_dd_stats;
void spw_dd_stats_get(spw_dd *d, spw_dd_stats *st);

/* The key of an HTTP Idempotency-Key for tenant (never 0). */
uint64_t spw_dd_http_key(const char *tenant, const char *key);
/* The key of a binary-protocol request (never 0). */
uint64_t spw_dd_producer_key(uint64_t producer_id, uint32_t producer_seq);

#endif
