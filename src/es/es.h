/*
 * The version map of a versioned stream (docs/api.md "Event sourcing",
 * docs/architecture.md "Event sourcing"): for every key (aggregate) of the
 * stream, its current version and the offset of its newest record.
 *
 * Why here. A conditional append ("only if account A is still at version
 * 7") must be checked where appends are ordered: per partition, before the
 * group commit. A key always lives in one partition (its records are routed
 * by key), so the map is one table per partition with one mutex, and the
 * produce service (svc/produce_submit.c) holds that mutex from the check,
 * through the versions it gives the records and the batch's encoding, to
 * the append that fixes their offsets: versions follow offsets in the log,
 * and of many requests expecting version N exactly one can pass. The check
 * reads memory only; the records share the group commit with every other
 * append.
 *
 * State. The map is made on a stream's first use (spw_es_of) by reading
 * every record of its partitions once with the record cursor, and then
 * kept by the produce path: an append's versions enter the map under the
 * partition's lock as soon as the log accepted the batch (before it is
 * durable), so a later request sees them whatever their fsync does. A
 * batch the log accepted and then failed to write leaves its versions
 * taken: a retry gets the next ones (a gap is possible only then, never a
 * repeat).
 *
 * Memory: one entry per key of the stream (about 48 bytes + the key).
 *
 * Threads: any; the per-partition lock orders everything of a partition.
 */
#ifndef SPW_ES_H
#define SPW_ES_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

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
 * The stream's map, made on first use (reads every record of the stream
 * once). REQUIRES: s->cfg.versioned. Returns 0 with *out (owned by the
 * stream, valid while the caller holds its reference), or an error of
 * the read (the map is not made; a later call tries again).
 */
int spw_es_of(spw_stream *s, spw_es **out);

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

/* Keys in the map (all partitions), for /metrics and tests. */
uint64_t spw_es_keys(spw_es *es);

#endif
