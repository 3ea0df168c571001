/*
 * The catalog: every stream of a data directory, its definition and its
 * open partitions. Layout (docs/architecture.md, "Data directory"):
 *
 *   DATA/streams/NAME/stream.json   canonical definition and incarnation
 *                                   (docs/formats/stream.md; temp file +
 *                                   fsync + rename + fsync of the directory)
 *   DATA/streams/NAME/P/            partition P's segments
 *
 * Lookups take a reference (spw_stream_get / spw_stream_put) so a stream
 * being deleted stays valid until the last request using it finishes.
 */
#ifndef SPW_CATALOG_H
#define SPW_CATALOG_H

#include <pthread.h>
#include <stdatomic.h>

#include "log/log.h"
#include "catalog/stream.h"

#define SPW_STREAM_REJ_MAX 8 /* at least admit.h SPW_REJ__N */
typedef struct spw_stream {
    spw_stream_config cfg;
    spw_part **parts;
    _Atomic uint32_t rr; /* round robin for events without a key */
    uint64_t uid;        /* unique in this process: the stream's dedupe scope */
    /* Which stream of this name this is: a Snowflake id taken when it was
     * created, kept in stream.json (0: created before incarnations were
     * kept). A position stored for a stream (group offsets, sink progress)
     * carries it, so a stream deleted and created again under the same
     * name never inherits the old one's positions. */
    uint64_t incarnation;
    _Atomic int refs;
    _Atomic int deleted;    /* set under the catalog's ddl lock, before the stream is retired; read by holders without it */
    char deleted_dir[4096]; /* where delete moved the files (written while the catalog still holds its reference) */
    struct spw_catalog *cat;
    _Atomic(struct spw_coal_stream *) coal; /* coalescing state (coalesce.h), made on first use */
    _Atomic(struct spw_es *) es; /* a versioned stream's version map (es/es.h), made on first use */
    struct spw_hot *hot;         /* hot_keys (catalog/hotkeys.h): made at open; NULL without hot_keys */
    /* counters for /metrics */
    _Atomic uint64_t events_in, bytes_in, requests_in;
    /* produce requests refused on this stream, by reason (admit/admit.h
     * SPW_REJ_*, counted by svc/svc.h spw_svc_reject) */
    _Atomic uint64_t rejected[SPW_STREAM_REJ_MAX];
} spw_stream;

typedef struct spw_catalog spw_catalog;

/* segment_bytes: every partition's segment size (0: the log's default). */
int spw_catalog_open(spw_log *log, const char *data_dir, uint64_t segment_bytes, spw_catalog **out);
/* How a stream's coalescing state (spw_stream.coal) is freed with the
 * stream; the coalescer sets it before it makes any (the catalog does
 * not include the layers above it). */
/* Deleted streams are closed and removed on io's workers (core/workq.h)
 * from now on (NULL: by whoever drops the last reference). Clear it before
 * destroying io. */
struct spw_workq;
void spw_catalog_set_io(spw_catalog *cat, struct spw_workq *io);
void spw_catalog_set_coal_free(spw_catalog *cat, void (*fn)(struct spw_coal_stream *));
/* The same for a versioned stream's version map (spw_stream.es, es/es.h). */
void spw_catalog_set_es_free(spw_catalog *cat, void (*fn)(struct spw_es *));
/* How a deleted stream's version map stops using its directory (its
 * store closed: es/es.h spw_es_retire), before the directory moves. */
void spw_catalog_set_es_retire(spw_catalog *cat, void (*fn)(struct spw_stream *));
/* The consumer groups (catalog/groups.h) a delete drops with its stream,
 * under the create/delete lock: a stream created again under the name
 * never meets the deleted one's groups, and its own are never taken for
 * them. NULL: none. Clear it before closing gs. */
struct spw_groups;
void spw_catalog_set_groups(spw_catalog *cat, struct spw_groups *gs);
void spw_catalog_close(spw_catalog *cat);
/* The log the catalog's streams are partitions of. */
spw_log *spw_catalog_log(const spw_catalog *cat);
/* DATA/streams: a stream's directory is this/NAME (its state beside its
 * partitions, such as its version store, goes there). */
const char *spw_catalog_dir(const spw_catalog *cat);

/* Creates a stream: 1 created, 0 an identical one exists, SPW_EEXIST-like
 * -EEXIST if one exists with another definition, -ENOTEMPTY if its
 * directory exists with files of no loaded stream (left untouched), or an
 * I/O error (then everything it made is removed, nothing else). */
int spw_catalog_create(spw_catalog *cat, const spw_stream_config *c);
/* Deletes a stream and its data (and its consumer groups:
 * spw_catalog_set_groups). 0, -ENOENT, or an I/O error. */
int spw_catalog_delete(spw_catalog *cat, const char *name);

/* A referenced stream or NULL; release with spw_stream_put. */
spw_stream *spw_stream_get(spw_catalog *cat, const char *name, size_t len);
void spw_stream_put(spw_stream *s);

/* Records a pending automatic hot-key split of s (catalog/hotkeys.h
 * spw_hot_record) under the catalog's create/delete lock, so that a stream
 * deleted meanwhile — its name perhaps created again — never gets it:
 * SPW_ENOENT-like -ENOENT then (the split is given back). REQUIRES: s->hot.
 * Blocking: I/O workers only. */
struct spw_hot_cand;
int spw_stream_hot_record(spw_stream *s, const struct spw_hot_cand *cand, int64_t now_ms);

/* Calls fn for every stream (referenced during the call), sorted by name. */
void spw_catalog_each(spw_catalog *cat, void (*fn)(void *arg, spw_stream *s), void *arg);
uint32_t spw_catalog_count(spw_catalog *cat);

/*
 * At start, before any id is issued: makes the log's id generator issue
 * only ids above every id stored in segments written since since_ms
 * (spw_idgen_observe), so a clock that stepped back while the server was
 * down cannot repeat one. Requests reserve their ids in order and write
 * one batch per partition, and a coalescing partition's batches hold
 * rising ids, so in each partition the batch with the highest base id
 * holds the partition's highest id: its records are read, every other
 * batch costs its 80-byte header. Returns the batches walked.
 */
uint64_t spw_catalog_observe_ids(spw_catalog *cat, int64_t since_ms);

/* Retention for every partition of every stream. */
void spw_catalog_retention(spw_catalog *cat, int64_t now_ms);

#endif
