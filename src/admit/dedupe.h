/*
 * The dedupe table (docs/api.md "Idempotency"):
 * what a request that carried an idempotency key was answered, so that a
 * retry within the stream's dedupe_window_ms is answered the same and
 * appends nothing.
 *
 * Keys are 64-bit hashes within a scope (one per open stream), SipHash-2-4
 * (core/siphash.h) under the data directory's dedupe secret
 * (docs/formats/dedupe-secret.md) of the tenant (the token's; "" without
 * tokens) and the request's own key:
 *   HTTP    Idempotency-Key:  'H', tenant length, tenant, the key
 *   binary  'P', tenant length, tenant, producer id, the request's first
 *           sequence number
 * so no client can compute another's key, nor make its own collide with
 * one of another tenant's (a colliding key would have its request
 * answered as the other's duplicate, or refused as reused).
 * The hash is also stored in every batch of the request (batch header
 * idem_hash, with producer_id/producer_seq and request_count), which is
 * how the table is rebuilt from the log at start: a restart forgets no
 * key still inside its window.
 *
 * A result is compact: the request's event count, the ticket of its first
 * event (event i's id is spw_id_from_ticket(first_ticket + i): a request's
 * ids are reserved together, in request order) and one slot per partition
 * (partition, first offset, count, and the fingerprint of the request's
 * records there — see below).
 *
 * A request that failed after it was handed to the log may still have
 * left batches behind: a partition whose append succeeded, or a failed one
 * whose recovery found the batch whole on disk and kept it. So a failed
 * request's key is not forgotten but kept *indeterminate*: the slots known
 * to be stored (from an earlier cut attempt) plus the partitions whose
 * outcome is unknown and the failed attempt's first ticket. The next
 * request with the key gets SPW_DD_INDET and resolves it (api.c: once none
 * of those partitions is failed, their batch headers since the attempt
 * say what is there — batches carry the key, docs/formats/log.md); until
 * then it is answered in_progress. Resolved, the key is a finished
 * request (answered as a duplicate), a cut one (the retry completes the
 * missing partitions), or nothing stored (the retry is new).
 *
 * Fingerprints: CRC32C over a partition's records of the request (keys,
 * values, headers; svc/produce.c spw_produce_fingerprint), so that a key reused for
 * different content is refused instead of answered as a duplicate. Slots
 * rebuilt from the log, or resolved from it, have none (fp_known 0): the
 * caller derives it from the stored records when it needs it.
 *
 * Memory: at most max_keys entries (config dedupe-max-keys); an entry is
 * about 100 bytes plus 24 per partition the request touched. An entry is
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

#include <stddef.h>
#include <stdint.h>

typedef struct spw_dd_slot {
    uint32_t partition;
    uint32_t count;
    uint64_t first_offset;
    uint32_t fp;       /* fingerprint of the request's records in this partition */
    uint32_t fp_known; /* 0: derive it from the log */
} spw_dd_slot;

typedef struct spw_dd_result {
    uint32_t n_events;
    uint64_t first_ticket; /* valid when complete */
    int complete;          /* every event is stored (0: a rebuilt entry whose request was cut by a crash) */
    int ids_known;         /* first_ticket gives the ids (not after completing a cut request) */
    uint32_t nslots;
    spw_dd_slot *slots; /* spw_malloc'd by spw_dd_begin; the caller frees (spw_dd_result_free) */
    /* SPW_DD_INDET only: partitions a failed attempt may or may not have
     * stored, and that attempt's first ticket (its batches' ids). */
    uint32_t nunknown;
    uint32_t *unknown;
    uint64_t attempt_ticket;
} spw_dd_result;

/* Frees what spw_dd_begin allocated in r (slots, unknown). */
void spw_dd_result_free(spw_dd_result *r);

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
    SPW_DD_INDET = 5,    /* the first request failed maybe partly stored: *res has what is known, *e is reserved
                            to resolve it (spw_dd_update, spw_dd_finish or spw_dd_unresolved) */
    SPW_DD_FULL = 6,     /* a new key, and the table is full of keys inside their windows: refuse the request */
};

/*
 * Looks the key up. n_events is the request's size (a key reused for a
 * different request is a conflict). For NEW and PARTIAL, *e must be
 * finished with spw_dd_finish; for DONE and PARTIAL, free res->slots.
 */
int spw_dd_begin(spw_dd *d, uint64_t scope, uint64_t key, uint32_t n_events, int64_t now_ms, spw_dd_entry **e,
                 spw_dd_result *res);

/* Completes a reserved entry: r the result (copied), kept until
 * expires_ms; or r NULL: the request was not appended at all — forget the
 * key (an entry that knows stored slots keeps them, as a cut request). */
void spw_dd_finish(spw_dd *d, spw_dd_entry *e, const spw_dd_result *r, int64_t expires_ms);

/* A reserved entry's request failed after it was handed to the log: keep
 * the key indeterminate until expires_ms. known: slots stored by an
 * earlier attempt (NULL or none); unknown: the partitions this attempt
 * wrote to; attempt_ticket: its first ticket. */
void spw_dd_fail(spw_dd *d, spw_dd_entry *e, const spw_dd_result *known, const uint32_t *unknown,
                 uint32_t nunknown, uint64_t attempt_ticket, int64_t expires_ms);

/* A reserved entry that could not be resolved yet (SPW_DD_INDET): back to
 * indeterminate, as it was. */
void spw_dd_unresolved(spw_dd *d, spw_dd_entry *e);

/* A reserved entry's stored slots are now r (copied; resolved from the
 * log): it stays reserved, and a spw_dd_finish(NULL) keeps them. */
void spw_dd_update(spw_dd *d, spw_dd_entry *e, const spw_dd_result *r);

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
uint64_t spw_dd_http_key(const spw_dd *d, const char *tenant, const char *key);
/* The key of a binary-protocol request of tenant (never 0). */
uint64_t spw_dd_producer_key(const spw_dd *d, const char *tenant, uint64_t producer_id, uint32_t producer_seq);
/* The secret the keys are hashed under: spw_dd_new takes a random one (a
 * table that lives as long as its process); the server sets the data
 * directory's, so keys stored in batch headers mean the same after a
 * restart. */
void spw_dd_set_secret(spw_dd *d, uint64_t k0, uint64_t k1);
/* DIR/dedupe.secret (docs/formats/dedupe-secret.md): read into *k0, *k1,
 * or, when the file does not exist, made (16 random bytes, mode 0600,
 * fsynced with its directory) and kept. 0, or a negative errno with a
 * sentence in err (a file of another size, unreadable, ...). */
int spw_dd_secret_load(const char *dir, uint64_t *k0, uint64_t *k1, char *err, size_t cap);

#endif
