/*
 * The durable partition log: Spillway's write-ahead log and buffer at once.
 *
 * A spw_log is one data directory's write path: one flusher thread, a pool
 * of fsync threads, the global budget of accepted-but-unwritten bytes and a
 * Snowflake id generator. A spw_part is one partition: a directory of
 * segment files (NNNNNNNNNNNNNNNNNNNN.log + .idx, named by base offset).
 *
 * Appends are record batches (log/format.h). Any number of threads append
 * to any partitions at once; an append assigns offsets in a short critical
 * section, copies the batch into the partition's fill buffer and returns.
 * Completion is asynchronous: the callback runs when the batch reaches the
 * requested ack level (docs/architecture.md, "Flush cycle"):
 *   SPW_ACK_NONE     before spw_part_append returns, on the caller's thread
 *   SPW_ACK_WRITTEN  on the flusher thread, after write(2) of the batch
 *   SPW_ACK_FSYNC    on the flusher thread, after fdatasync covering it
 * If spw_part_append returns an error the callback never runs; otherwise it
 * runs exactly once, with status 0 or the I/O error that failed the batch.
 * A failed write or fdatasync fails every batch waiting on it and puts the
 * partition in a failed state: appends return SPW_EROFS (spw_part_failed
 * says why) until the flusher has recovered it. Recovery is retried with
 * backoff (100 ms doubling to 5 s) and does what opening does: it checks
 * every batch written since the last good fdatasync, cuts what does not
 * validate, writes the rest again from the page cache, fdatasyncs it and
 * rebuilds the index tail; only then are appends accepted again. An fsync
 * is never retried and then acknowledged: nothing a failed cycle covered is
 * acknowledged, and what recovery keeps of it was synced again.
 *
 * Thread safety: all functions may be called from any thread, except that
 * spw_part_close and spw_log_close must not race with other calls on the
 * same object. Callbacks must not block for long (they run on the flusher)
 * and must not call spw_part_close nor append without SPW_APPEND_NOWAIT (a
 * blocking append waits for the flusher that runs the callback).
 */
#ifndef SPW_LOG_H
#define SPW_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "core/ack.h"
#include "core/buf.h"
#include "core/id.h"
#include "log/fdcache.h"
#include "log/format.h"


const char *spw_ack_name(spw_ack a);
int spw_ack_parse(const char *s, spw_ack *out); /* 0 or SPW_EINVAL */

typedef struct spw_log spw_log;
typedef struct spw_part spw_part;

typedef struct spw_log_config {
    uint64_t max_pending_bytes; /* budget of accepted, unwritten bytes (default 64 MiB) */
    uint32_t sync_threads;      /* parallel fdatasync threads (default 4) */
    uint32_t fsync_interval_ms; /* fsync data written at lower ack levels at least this often (default 1000) */
    uint32_t node_id;           /* Snowflake node id, 0..1023 */
    uint32_t fd_cache_segments; /* sealed segments whose files stay open (default 256; log/fdcache.h) */
} spw_log_config;

typedef struct spw_part_config {
    uint64_t segment_bytes;        /* roll when the next batch would pass this (default 128 MiB) */
    int64_t segment_ms;            /* roll a segment this old at the next append (default 7 days) */
    uint32_t index_interval_bytes; /* bytes between sparse index entries (default 4096) */
    int64_t retention_bytes;       /* -1 = no limit */
    int64_t retention_ms;          /* -1 = no limit */
    /* Retention by bytes keeps every segment written within this many ms
     * (0 = none): the stream's dedupe window, whose batch headers the
     * server reads back at start to remember idempotency keys and producer
     * sequences (docs/architecture.md, "Retention and the dedupe window"). */
    int64_t retention_min_age_ms;
} spw_part_config;

void spw_log_config_default(spw_log_config *c);
void spw_part_config_default(spw_part_config *c);

/* Starts the flusher. *out is owned by the caller; free with spw_log_close. */
int spw_log_open(const spw_log_config *c, spw_log **out);
/* REQUIRES: every partition closed. Stops the flusher and frees the log. */
void spw_log_close(spw_log *log);
spw_idgen *spw_log_idgen(spw_log *log);

/* Counters since open (for /metrics and benchmarks). */
typedef struct spw_log_stats {
    uint64_t cycles;          /* flush cycles that wrote or synced something */
    uint64_t writes;          /* pwrite calls of segment data */
    uint64_t bytes_written;   /* segment bytes written */
    uint64_t batches_written; /* batches written */
    uint64_t fsyncs;          /* fdatasync calls of segment data */
    uint64_t fsync_ns;        /* total time in those fdatasync calls, by cycle */
    uint64_t acks_fsync;      /* appends completed at ack=fsync */
} spw_log_stats;
void spw_log_stats_get(spw_log *log, spw_log_stats *out);
/* Live histograms: fdatasync round time (µs) and appends per fsync round. */
struct spw_hist;
void spw_log_hists(spw_log *log, struct spw_hist **fsync_us, struct spw_hist **group_size);
uint64_t spw_log_pending_bytes(const spw_log *log);
/* The segment fd cache's state (log/fdcache.h). */
void spw_log_fdcache_stats(spw_log *log, spw_fdcache_stats *out);
/* Bytes of segment data of every open partition of this log (kept as
 * segments grow, are cut, rolled, deleted by retention or closed; one
 * atomic load). Index files and zeros written ahead are not counted. */
uint64_t spw_log_disk_bytes(const spw_log *log);
/* Partitions failed now (refusing appends until recovered), and how many
 * recoveries succeeded since open. */
uint32_t spw_log_failed_partitions(const spw_log *log);
uint64_t spw_log_recoveries(const spw_log *log);

/* What recovery found when a partition was opened. */
typedef struct spw_recovery_report {
    uint32_t segments;
    uint64_t truncated_bytes;   /* torn tail cut from the newest segment (after the recovery point) */
    uint32_t truncated_batches; /* whole-header batches among what was cut */
    uint64_t saved_bytes;       /* of those, bytes saved aside first (NNN.log.cut-POS-MS; zeros are not) */
    uint32_t damaged_batches;   /* damaged ranges kept in place (mid-segment batches and holes) */
    uint32_t holes;             /* of those, ranges whose end was found by searching for the next valid batch */
    uint64_t hole_offsets;      /* offsets inside those holes (reads of them fail, bad_next = the hole's end) */
    uint32_t indexes_rebuilt;
} spw_recovery_report;

/*
 * Opens (creating if missing) the partition in dir and recovers it
 * (docs/formats/log.md, "Recovery rules"): verifies the newest segment
 * from its start; below the recovery point (the last position known
 * fsynced) damage is kept in place as a damaged range and every batch
 * after it is kept; after it a torn tail is saved aside, then cut at the
 * last whole batch. Rebuilds missing or damaged indexes, and reports
 * through spw_msg and *report (may be NULL).
 */
int spw_part_open(spw_log *log, const char *dir, const spw_part_config *c, spw_part **out,
                  spw_recovery_report *report);
/* Waits until everything appended is written and fsynced, then frees p. */
void spw_part_close(spw_part *p);
/*
 * Retires p: its directory is about to be moved and its path may name
 * another partition's soon (a stream deleted and created again under its
 * name). Waits for every use of the directory by path in progress; from
 * then on p never uses its path again: an append answers SPW_EDELETED,
 * batches appended before and not written yet fail with it (a roll would
 * create a file), the recovery point is no longer written, retention and
 * recovery leave p alone, and a sealed segment whose files the fd cache
 * closed reads as SPW_EDELETED. What was written stays readable through
 * the files open now, and is synced at close by its descriptors. Any
 * thread; at most once before spw_part_close.
 */
void spw_part_retire(spw_part *p);
int spw_part_retired(spw_part *p);

typedef struct spw_append_result {
    uint64_t base_offset;
    uint32_t count;
    uint64_t base_id;
} spw_append_result;

/* status: 0 or the negative error that failed the append. r is valid during the call. */
typedef void (*spw_append_cb)(void *arg, int status, const spw_append_result *r);

enum {
    SPW_APPEND_NOWAIT = 1,   /* budget full: return SPW_EAGAIN instead of blocking */
    SPW_APPEND_RESERVED = 2, /* the caller already took len bytes with spw_log_reserve */
};

/*
 * Takes n bytes of the pending budget for appends to come (a request that
 * appends to several partitions reserves once, so it is admitted whole or
 * not at all). Returns 0, SPW_EAGAIN (nowait and full), SPW_EMSGSIZE.
 * Each appended batch with SPW_APPEND_RESERVED consumes its length; give
 * back what was not appended with spw_log_release.
 */
int spw_log_reserve(spw_log *log, uint64_t n, int nowait);
void spw_log_release(spw_log *log, uint64_t n);

/*
 * Appends an encoded batch (spw_batch_encode) of len bytes; the log copies
 * it, so batch may be reused at once. res (may be NULL) gets the offsets.
 * Errors: SPW_EINVAL (not a valid batch, bad ack), SPW_EMSGSIZE (larger than
 * the whole budget), SPW_EAGAIN (budget full and SPW_APPEND_NOWAIT),
 * SPW_EROFS (partition failed), SPW_ECANCELED (closing), -ENOTSUP
 * (SPW_ACK_REPLICATED).
 */
int spw_part_append_batch(spw_part *p, const uint8_t *batch, size_t len, spw_ack ack, int flags, spw_append_cb cb,
                          void *arg, spw_append_result *res);

/*
 * As spw_part_append_batch, but batch's block (batch->p, from the
 * core/alloc.h allocator as an spw_buf's) is given to the log instead of
 * copied: on 0 the log owns it, frees it once the batch was written or
 * dropped, and *batch is emptied; on an error *batch stays the caller's
 * (its block possibly moved: free it with spw_buf_fini). A batch under
 * SPW_GIVE_MIN bytes is copied (a fill chunk holds many) and its block
 * freed at once. The copy it saves (~125 KB for 1000 100-byte events) was
 * made under the partition's lock.
 */
#define SPW_GIVE_MIN 4096
int spw_part_append_give(spw_part *p, spw_buf *batch, spw_ack ack, int flags, spw_append_cb cb, void *arg,
                         spw_append_result *res);

/* Encodes recs with the log's id generator (and o's options, may be NULL)
 * into a per-thread buffer, then appends as spw_part_append_batch. */
int spw_part_append(spw_part *p, const spw_record *recs, uint32_t n, const spw_batch_opts *o, spw_ack ack,
                    int flags, spw_append_cb cb, void *arg, spw_append_result *res);

/* Appends and waits for the ack level; returns 0 or the error. */
int spw_part_append_wait(spw_part *p, const spw_record *recs, uint32_t n, const spw_batch_opts *o, spw_ack ack,
                         spw_append_result *res);

typedef struct spw_part_state {
    uint64_t start_offset;   /* oldest offset still stored */
    uint64_t next_offset;    /* next offset an append gets */
    uint64_t written_offset; /* offsets below are in the segment files (not yet readable) */
    uint64_t durable_offset; /* offsets below survived fdatasync: the visible end, readable */
    uint64_t bytes;          /* bytes in segment files */
    /* bytes retention.bytes would have deleted at its last pass but kept
     * because they are younger than retention_min_age_ms */
    uint64_t retention_held_bytes;
    uint32_t segments;
    int failed; /* 0 or the error that put the partition in the failed state */
} spw_part_state;

void spw_part_state_get(spw_part *p, spw_part_state *s);
/* 0, or the error that failed the partition (one atomic load). */
int spw_part_failed(spw_part *p);

/*
 * Visibility (docs/architecture.md, "What readers see"): readers see only
 * durable records, the offsets below durable_offset (the high watermark).
 * A record that is written but not yet fsynced can still be lost — a power
 * loss, or a failed fdatasync, cuts it and recovery gives its offset to a
 * new record — so no reader may see it, and no position a reader keeps
 * (a consumer group's committed offset, a sink's progress) can point past
 * what survives. Every read below (spw_part_read, spw_part_offset_for_ts)
 * and every end reported to readers is capped at spw_part_visible_end;
 * there is no read of the written tail.
 *
 * The durable end moves at each fdatasync: at once for ack=fsync appends,
 * and at least every fsync_interval_ms for the others. A reader that waits
 * at the visible end calls spw_part_sync_soon: if records are written past
 * it (written_offset > durable_offset), the flusher fsyncs p in its next
 * cycle, as if an ack=fsync append waited. Two atomic loads when nothing
 * is written past the durable end or a request is pending already;
 * otherwise the log's lock to queue p. Any thread.
 */
uint64_t spw_part_visible_end(spw_part *p); /* durable_offset: one atomic load */
void spw_part_sync_soon(spw_part *p);

/*
 * The partition's end when spw_part_open returned (after recovery; 0 for
 * a partition created then). A position a reader kept from before this
 * open (a group's committed offset, a sink's progress) can be valid only
 * up to it: offsets past it were either cut by recovery or given to
 * records appended since. Readers clamp such positions to it when they
 * attach (docs/architecture.md, "What readers see").
 */
uint64_t spw_part_open_end(const spw_part *p);

/*
 * Called on the flusher thread after a cycle in which some partition's
 * durable end advanced (fdatasync, or a recovery): wakes readers waiting
 * for records to become visible. Must not block nor call into the log
 * but spw_part_sync_soon and reads. NULL removes it; once this returns, a
 * call in progress has finished, so arg may be freed.
 */
void spw_log_set_durable_hook(spw_log *log, void (*fn)(void *arg), void *arg);
/*
 * More durable hooks, called as the one above (after it, under the same
 * rules), for readers that live apart from it (a versioned stream's
 * indexer, es/es.h). add: 0 or SPW_ENOMEM. remove: once it returns, a
 * call in progress has finished, so arg may be freed. Hooks left at
 * spw_log_close are dropped.
 */
int spw_log_add_durable_hook(spw_log *log, void (*fn)(void *arg), void *arg);
void spw_log_remove_durable_hook(spw_log *log, void (*fn)(void *arg), void *arg);

/*
 * Reads whole, CRC-checked batches holding offsets >= offset into out
 * (out->len set; out is reused, nothing else is allocated): at least one
 * batch when any is readable, then more while they fit in max_bytes,
 * never past the visible (durable) end and never across a segment. The
 * first batch may begin before offset; skip its earlier records.
 * Returns the number of batches (0: offset is the visible end, nothing
 * yet), SPW_ERANGE (offset before start or after the visible end),
 * SPW_ECORRUPT (the batch at offset is damaged; *bad_next, if not NULL,
 * gets the first offset after the damaged range so a reader can skip it),
 * or an I/O error. Lock-free but for the segment list's read lock.
 */
int spw_part_read(spw_part *p, uint64_t offset, size_t max_bytes, spw_buf *out, uint64_t *bad_next);

/*
 * Walks the headers of the batches in segments written to since
 * since_ms (wall clock; a segment's last write), oldest first, calling
 * cb for each whole batch below the written end. Reads only the 80-byte
 * headers (the CRC is not checked: recovery checked the newest segment,
 * and a damaged older batch only misleads the caller's bookkeeping, never
 * a read). At a header that does not parse or does not continue its
 * predecessor's offsets the walk goes on after the damaged range
 * (docs/formats/log.md, "Damaged ranges"). Returns 0 or -errno.
 * Used to rebuild the dedupe table at start (admit/dedupe.h).
 */
struct spw_batch_hdr;
int spw_part_scan_headers(spw_part *p, int64_t since_ms, void (*cb)(void *arg, const struct spw_batch_hdr *h),
                          void *arg);

/* The offset of the first visible record with ts >= ts_ms (the visible
 * end if none); *offset is set. Returns 0 or an error as spw_part_read. */
int spw_part_offset_for_ts(spw_part *p, int64_t ts_ms, uint64_t *offset);

/*
 * Holds: what retention must keep. Each reader that must not lose data —
 * a sink, a protected consumer group — takes one hold per partition at the
 * first offset it still needs (its committed offset) and moves it as it
 * commits; retention never deletes a segment holding an offset at or
 * above the lowest hold. Holds live in memory: a holder takes its holds
 * again when it starts (before the server's first retention pass), from
 * the offsets it keeps durably itself.
 *
 * spw_part_hold: 0 and *out, or SPW_ERANGE when offset is below the
 * partition's start offset (those records are gone already: the holder
 * learns where data starts from spw_part_state_get). Taking a hold and
 * retention's choice are serialized, so a hold that was granted protects
 * its offset. spw_hold_move: the same check; 0 or SPW_ERANGE (the hold
 * is unchanged then). Any thread. REQUIRES: every hold of p released
 * before spw_part_close(p).
 */
typedef struct spw_hold spw_hold;
int spw_part_hold(spw_part *p, uint64_t offset, spw_hold **out);
int spw_hold_move(spw_hold *h, uint64_t offset);
void spw_hold_release(spw_hold *h);
/* The lowest held offset, UINT64_MAX when nothing is held. */
uint64_t spw_part_protected(spw_part *p);
/* Deletes whole segments beyond retention bytes/age (never the active one,
 * never one holding an offset >= the lowest hold, and by bytes never one
 * written within retention_min_age_ms: those count in
 * retention_held_bytes). Returns the number of segments deleted or an
 * error. */
int spw_part_enforce_retention(spw_part *p, int64_t now_ms);

#endif
