/*
 * Stream definitions (docs/architecture.md "Streams"): the validated configuration a
 * `PUT /v1/streams/{name}` body describes, its canonical JSON form (stored
 * as DATA/streams/NAME/stream.json and returned by GET), and the key →
 * partition hash.
 */
#ifndef SPW_STREAM_H
#define SPW_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/hash.h"
#include "log/log.h"

#define SPW_STREAM_NAME_MAX 128
#define SPW_STREAM_PARTITIONS_MAX 1024

/* hot_keys bounds (docs/api.md "Hot keys"; catalog/hotkeys.h) */
#define SPW_HOT_SPLIT_MAX 16     /* k: sub-keys of a split key (and at most the partitions) */
#define SPW_HOT_KEYS_MAX 16      /* keys listed in a definition */
#define SPW_HOT_KEY_BYTES 128    /* longest key that can be split */
#define SPW_HOT_TOP_MAX 16       /* hottest keys shown per stream */

typedef struct spw_stream_config {
    char name[SPW_STREAM_NAME_MAX + 1];
    uint32_t partitions;       /* default 4 */
    int format_bytes;          /* 0 = json, 1 = bytes */
    char key[128];             /* JSON pointer, "" = none */
    char timestamp[128];       /* JSON pointer, "" = receive time */
    spw_ack ack;               /* default fsync */
    int64_t retention_ms;      /* -1 = none */
    int64_t retention_bytes;   /* -1 = none, per partition */
    int64_t dedupe_window_ms;  /* default 86400000 */
    int coalesce;
    int versioned;
    uint32_t max_event_bytes;  /* default 1 MiB */
    double rate;               /* events/s, 0 = unlimited */
    double burst;
    int rate_per;              /* 0 = tenant, 1 = ip */
    int rate_algo;             /* 0 = token_bucket, 1 = sliding_window (burst 0, unused) */
    int priority;              /* default Spillway-Priority, 0 (most important) .. 3; default 1 */
    int compression;           /* batches written: SPW_COMPRESS_NONE, _LZ4 or _ZSTD (log/format.h); default none */
    char replicate_to[SPW_STREAM_NAME_MAX + 1]; /* ack=replicated: the sink whose commits acknowledge; "" = none */
    int64_t replication_timeout_ms;             /* ack=replicated: 504 past this; default 5000 */
    /* hot_keys (catalog/hotkeys.h): hot_split 0 = none; else each split
     * key's records go to hot_split partitions. Automatic splits when
     * hot_above_per_s > 0 (a key's events in one window of hot_window_ms
     * past hot_above_per_s * window); hot_keys[0..hot_nkeys) are split
     * from the start. hot_top: hottest keys shown (metrics, describe). */
    uint32_t hot_split;
    double hot_above_per_s;
    int64_t hot_window_ms; /* default 1000 */
    uint32_t hot_top;      /* default 5 */
    uint32_t hot_nkeys;
    char hot_keys[SPW_HOT_KEYS_MAX][SPW_HOT_KEY_BYTES + 1];
} spw_stream_config;

/* Is name a valid stream name ([a-zA-Z0-9._-]{1,128}, not starting with
 * '.': so never "." or "..", and never the catalog's own ".deleted-*")? */
int spw_stream_name_ok(const char *name, size_t len);

/*
 * Parses a create body (may be empty: all defaults) into c, with c->name set
 * from name. Unknown fields, wrong types and out-of-range values are errors:
 * returns 0, or -1 with a sentence in err (and the field in *field).
 */
int spw_stream_config_parse(spw_stream_config *c, const char *name, const char *body, size_t len, char *err,
                            size_t errcap);

/*
 * Parses a stored definition (DATA/streams/NAME/stream.json): the create
 * body's fields plus "incarnation" (docs/formats/stream.md), which a PUT body
 * may not carry. *incarnation is 0 when the file has none (written before
 * incarnations existed).
 */
int spw_stream_def_parse(spw_stream_config *c, uint64_t *incarnation, const char *name, const char *body,
                         size_t len, char *err, size_t errcap);

/*
 * Rules between fields that a new stream must keep (PUT), beyond parse's
 * per-field ones; streams already stored are loaded as they are. A
 * retention.ms shorter than dedupe_window_ms is refused: the batches that
 * carry the keys (docs/formats/log.md) would be deleted while their keys
 * should still be answered, and the table rebuilt at start would forget
 * them. Returns 0, or -1 with a sentence in err.
 */
int spw_stream_config_check(const spw_stream_config *c, char *err, size_t errcap);

/* The fields of a stream definition, one line each, from the table the
 * parser uses (for serve --help). */
void spw_stream_help(spw_buf *out);

/* Canonical JSON of c (every field, fixed order) appended to out. */
int spw_stream_config_json(const spw_stream_config *c, spw_buf *out);

/* Same definition (for PUT: 200 if identical, 409 if different)? */
int spw_stream_config_equal(const spw_stream_config *a, const spw_stream_config *b);

/* Partition of a key: FNV-1a 64-bit of the key bytes, mod partitions
 * (docs/api.md "Partitioning"). Inline (every produced key comes here);
 * a power of two of partitions takes the low bits, the same number as the
 * remainder without a division. REQUIRES: partitions > 0. */
static inline uint32_t spw_stream_partition(const void *key, size_t len, uint32_t partitions)
{
    uint64_t h = spw_fnv1a64(SPW_FNV64_OFFSET, key, len);
    if ((partitions & (partitions - 1)) == 0)
        return (uint32_t)(h & (partitions - 1));
    return (uint32_t)(h % partitions);
}

#endif
