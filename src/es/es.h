/*
 * The version map of a versioned stream (docs/api.md "Event sourcing",
 * docs/architecture.md "es"): for every key (aggregate) of the stream, its
 * current version and the offset of its newest record; and the stream's
 * version store (RocksDB, docs/formats/es-index.md), which indexes every
 * record by (key, version) for history reads, and keeps snapshots.
 *
 * Why here. A conditional append ("only if account A is still at version
 * 7") must be checked where appends are ordered: per partition, before the
 * group commit. A key always lives in one partition (its records are routed
 * by key), so the map is one table per partition with one mutex, and the
 * produce service (svc/produce_submit.c) holds that mutex from the check,
 * through the versions it gives the records and the batch's encoding, to
 * the append that fixes their offsets: versions follow offsets in the log,
 * and of many requests expecting version N exactly one can pass. The
 * check reads memory for every key the map holds, and the records share
 * the group commit with every other append.
 *
 * Memory: the map holds every key whose newest record the store does not
 * hold yet (appended, not yet durable or not yet indexed: pinned), and
 * caches others up to es-cache-keys per stream (about 64 bytes + the key
 * each; spw_es_set_cache_keys), and keys the store does not hold either
 * (version 0: a new aggregate's check and append read the store once);
 * past that, clean entries are evicted and a key not in the map costs one
 * store lookup (bloom filters over the memtable and the tables, block
 * cache), and one reverse seek to its last index entry when it has
 * records (docs/formats/es-index.md "Writing").
 *
 * Durability: the store is filled from durable records only (the record
 * cursor), with each partition's indexed offset in the same write; at open
 * the log's tail past it is indexed, so the whole log is read once, on the
 * stream's first open, never again. An append the log accepted and then
 * failed to write (never acknowledged) marks its partition: once the
 * partition has recovered, its part of the map is rebuilt from the log
 * (the store, then the recovered tail), so versions go on from what the
 * log holds — a version is never given twice to records the log keeps.
 *
 * Threads: any; the per-partition lock orders everything of a partition;
 * one indexer thread per stream, woken by the log's durable hook.
 */
#ifndef SPW_ES_H
#define SPW_ES_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "catalog/catalog.h"

typedef struct spw_es spw_es;

/* A key's state: its current version (0: no record yet) and the offset
 * of its newest record (valid when version > 0). */
typedef struct spw_es_key {
    uint64_t version;
    uint64_t offset;
    uint32_t partition;
} spw_es_key;

/* What a request expects of its key's current version
 * (docs/api.md "Event sourcing"). */
typedef enum spw_es_expect {
    SPW_ES_ANY = 0,    /* no check */
    SPW_ES_NONE = 1,   /* no record of the key yet (version 0) */
    SPW_ES_EXISTS = 2, /* at least one record */
    SPW_ES_EXACT = 3,  /* exactly the given version */
} spw_es_expect;

/*
 * Parses an expectation as the HTTP API writes it: "any", "none",
 * "exists", or a decimal N with 0 <= N <= SPW_VERSION_MAX ("0" is the
 * same as "none"). Returns 0, or -1 (not one of these).
 */
int spw_es_expect_parse(const char *s, size_t n, spw_es_expect *kind, uint64_t *version);
/* Does current satisfy the expectation? */
int spw_es_expect_ok(spw_es_expect kind, uint64_t version, uint64_t current);
/* Writes the expectation as the API does ("any", "none", "exists", N) into
 * buf (at least 24 bytes). */
const char *spw_es_expect_str(spw_es_expect kind, uint64_t version, char *buf, size_t cap);

/*
 * The stream's map and store, opened on first use (the store's tail
 * indexed, its indexer started). REQUIRES: s->cfg.versioned. Returns 0
 * with *out (owned by the stream, valid while the caller holds its
 * reference), or an error (the map is not made; a later call tries again).
 */
int spw_es_of(spw_stream *s, spw_es **out);
/*
 * The stream s is being deleted (called by the catalog before its
 * directory moves, s->deleted already set): the indexer stops and the
 * store closes, so RocksDB creates no file by that path again; the map's
 * later store uses answer SPW_EDELETED (a lookup: no record — appends are
 * refused by the retired partitions anyway), and spw_es_of answers
 * SPW_EDELETED for a stream deleted before its map was made. Any thread.
 */
void spw_es_retire(spw_stream *s);
/* Opens every versioned stream's map (at start, before the listeners). */
void spw_es_open_all(spw_catalog *cat);
/* Keys each stream's map caches (at least 16; default 1000000); for maps
 * opened after the call. */
void spw_es_set_cache_keys(uint64_t n);

/* An append to the partition failed after the log accepted it (its write
 * or fsync): once the partition has recovered, the next lock of it
 * rebuilds its part of the map from the log (es.c: resync). Any thread. */
void spw_es_append_failed(spw_es *es, uint32_t partition);

/* The partition's lock: held from the check to the append (see above). */
void spw_es_lock(spw_es *es, uint32_t partition);
void spw_es_unlock(spw_es *es, uint32_t partition);

/* The key's state in partition: 1 found (*out set), 0 never written.
 * REQUIRES: the partition's lock held. */
int spw_es_get_locked(spw_es *es, uint32_t partition, const void *key, size_t n, spw_es_key *out);
/* Sets the key's version and newest offset (UINT64_MAX: not known yet,
 * the batch not appended yet); the produce path gives the next version,
 * or puts back the state it read when its batch is not appended.
 * REQUIRES: the partition's lock held. */
void spw_es_put_locked(spw_es *es, uint32_t partition, const void *key, size_t n, uint64_t version, uint64_t offset);

/* A key's state (takes the lock of its partition). 1 found, 0 never written. */
int spw_es_lookup(spw_es *es, const void *key, size_t n, spw_es_key *out);

/* Keys in the map now (all partitions), and lookups it sent to the store. */
uint64_t spw_es_cached_keys(spw_es *es);
uint64_t spw_es_store_reads(spw_es *es);
/* Every record of the partition below this offset is in the store. */
uint64_t spw_es_indexed(spw_es *es, uint32_t partition);
/* Durable records of the stream the store does not hold yet (the indexer's
 * lag); the indexer's passes over the partitions (it passes once per
 * durable advance of the log, not on a timer: docs/operations.md). */
uint64_t spw_es_unindexed(spw_es *es);
uint64_t spw_es_indexer_passes(spw_es *es);
/* The store's index entries (one per indexed record of the stream still
 * in the log, and those of deleted records pruning has not reached yet:
 * it runs at the indexer's passes), and those pruning deleted since the
 * map was opened (docs/formats/es-index.md "Pruning"). */
uint64_t spw_es_index_entries(spw_es *es);
uint64_t spw_es_pruned(spw_es *es);
/* Records history reads decoded from the log (svc/keys.c counts them):
 * an aggregate's read decodes its own records, not its partition's. */
void spw_es_count_history(spw_es *es, uint64_t records);
uint64_t spw_es_history_records(spw_es *es);

/*
 * A key's indexed records from version from_version on, in version order:
 * at most max (versions[i], offsets[i]). Returns how many, or an error.
 * Records past the partition's indexed offset are not there yet (the
 * caller reads them from the log).
 */
int spw_es_history(spw_es *es, const void *key, size_t n, uint64_t from_version, uint32_t max, uint64_t *versions,
                   uint64_t *offsets);

/*
 * Retention on a versioned stream deletes a key's oldest records (never
 * one the store has not indexed: es.c take_holds), and pruning their
 * index entries (es.c prune_step): its oldest version still in the log,
 * given its current version and its partition's start offset; current + 1
 * when every record of the key went. 0, or an error.
 */
int spw_es_oldest_kept(spw_es *es, const void *key, size_t n, uint64_t current, uint64_t start_offset,
                       uint64_t *oldest);

/* A key's newest snapshot: its version and the state's JSON text. put
 * replaces it (REQUIRES: the caller checked version against the key's);
 * get returns 1 with it, 0 if none, or an error. */
int spw_es_snapshot_put(spw_es *es, const void *key, size_t n, uint64_t version, const char *state, size_t len);
int spw_es_snapshot_get(spw_es *es, const void *key, size_t n, uint64_t *version, spw_buf *state);

#endif
