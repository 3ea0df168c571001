/*
 * Views: read models kept from one stream's records in an embedded LSM
 * store (RocksDB), current within a flush cycle of the write
 * (docs/api.md "Views"; what a store holds: docs/formats/view.md).
 *
 * A view is a definition (view_def.c: kind latest, sum or aggregate, its
 * field, grouping, windows) and a store DATA/views/NAME/db, one RocksDB
 * database per view, so that deleting or rebuilding a view is removing
 * one directory and no view's compaction or flush waits on another's
 * (docs/architecture.md "Views"). One apply thread per view
 * (view_apply.c; with a commit thread that writes batch N while it folds
 * batch N+1 when the view catches up) reads the stream with the record cursor (log/cursor.h:
 * durable records only), folds a batch of records in memory (N records of
 * one key cost one store write per entry, not N: a merge operand the
 * store's merge operator combines; an aggregate's buckets of the windows
 * up to its page level are one page entry per key and page, so a key's
 * records all over an hour are one write, not one per bucket) and
 * commits the state changes together with the next offset of every
 * partition in ONE WriteBatch. RocksDB's own WAL is off: the log is the
 * WAL. After a crash
 * the store comes back at its last flush, a consistent prefix of the
 * batches, and the thread goes on from the offsets that prefix holds: no
 * record is counted twice or skipped. Retention is held at the offsets
 * the store has flushed (not merely applied), so what a crash would make
 * the view apply again is still in the log.
 *
 * Reads (view_read.c) run on the caller's thread against RocksDB (a
 * snapshot where an answer spans several entries) and never wait for the
 * apply thread.
 *
 * Errors are negative errno values with a sentence in err: SPW_EINVAL
 * (bad definition or parameter), -ENOENT (no such view, or no such
 * stream at PUT: *what says which), -EEXIST (exists differently),
 * SPW_VIEW_ENOKEY (a key the view never saw), or an I/O error.
 *
 * Threads: every function may be called from any thread.
 */
#ifndef SPW_VIEW_H
#define SPW_VIEW_H

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "catalog/catalog.h"

#define SPW_VIEW_ENOKEY (-ENODATA)
#define SPW_VIEW_MAX_WINDOWS 6
#define SPW_VIEWS_MAX 256

typedef struct spw_views spw_views;

/* Loads every DATA/views/NAME/view.json and starts its apply thread
 * (holds taken before this returns, so before the first retention pass).
 * flush_ms: how often a store that changed is flushed (0: 1000), and so
 * how far behind its applied offsets its retention holds may be. cat
 * must stay open until spw_views_close. */
int spw_views_open(spw_catalog *cat, const char *data_dir, uint64_t flush_ms, spw_views **out);
/* Stops every apply thread (the batch in progress commits), flushes every
 * store, releases the holds and frees. REQUIRES: no request is using m. */
void spw_views_close(spw_views *m);
/* Tests: records one apply batch folds at most (0: the default bound),
 * read at each batch; a small one makes a view's catch-up many batches
 * through the commit pipeline (view_apply.c). */
extern _Atomic uint32_t spw__view_batch_records;
/* Test builds only (server/testhooks.c): called by a view's store open
 * (a PUT, a start, a rebuild) before RocksDB opens it; NULL otherwise. */
extern void (*spw_view_test_open_pause)(const char *view);

/* PUT: 1 created, 0 an identical one exists (canon gets the canonical
 * definition either way), or SPW_EINVAL, -ENOENT (no stream), -EEXIST,
 * an I/O error. */
int spw_views_put(spw_views *m, const char *name, const char *body, size_t len, spw_buf *canon, char *err,
                  size_t cap);
/* DELETE: 0 or -ENOENT. The store is removed once its thread stopped. */
int spw_views_delete(spw_views *m, const char *name);
/* POST rebuild: 0 or -ENOENT; the apply thread wipes the store and
 * applies the stream again from its start. */
int spw_views_rebuild(spw_views *m, const char *name);
/* GET one (-ENOENT) and the list ({"views":[...]}). */
int spw_views_get_json(spw_views *m, const char *name, spw_buf *out);
void spw_views_list_json(spw_views *m, spw_buf *out);
/* The stream view name is kept from, into out (cap >= 129): 0 or -ENOENT
 * (for permission checks: reading a view is reading its stream). */
int spw_views_stream_of(spw_views *m, const char *name, char *out, size_t cap);
/* Prometheus text of the views' families (nothing when there is no
 * view): each family whole, # HELP and # TYPE first, one sample per view
 * whose stream sees(ctx, stream) accepts (sees NULL: every view). */
void spw_views_metrics(spw_views *m, spw_buf *out, int (*sees)(void *ctx, const char *stream), void *ctx);

/* A read's position condition: partition p has applied offset o. */
typedef struct spw_view_min {
    uint32_t partition;
    uint64_t offset;
} spw_view_min;

/* Has the view applied every min[i] (1), not yet (0), or -ENOENT? */
int spw_views_applied(spw_views *m, const char *name, const spw_view_min *min, uint32_t n);

/*
 * Calls done(arg, r) once, from the view's apply thread (or at once from
 * the caller's, when already so or the view is unknown), with r = 1 when
 * every min[i] is applied, 0 when deadline_ms (spw_mono_ms) passed first,
 * -ENOENT when the view is gone or the server closes. done must not call
 * back into the views. Returns 0.
 */
int spw_views_wait(spw_views *m, const char *name, const spw_view_min *min, uint32_t n, uint64_t deadline_ms,
                   void (*done)(void *arg, int r), void *arg);

/* Reads (view_read.c). Each appends one JSON object to out. With cached
 * set, a read that would have to read a file of the store (what it needs
 * is in neither the memtable nor the block cache: RocksDB's read tier
 * kBlockCacheTier) reads nothing and returns SPW_VIEW_EUNCACHED, out
 * unchanged: an I/O loop then sends it to an I/O worker, where it runs
 * again without cached. */
#define SPW_VIEW_EUNCACHED (-EWOULDBLOCK)
int spw_views_read_key(spw_views *m, const char *name, const void *key, size_t klen, int cached, spw_buf *out,
                       char *err, size_t cap);
/* window: its text ("1m"); from/to in ms (INT64_MIN: the default). */
int spw_views_read_series(spw_views *m, const char *name, const void *key, size_t klen, const char *window,
                          int64_t from, int64_t to, int cached, spw_buf *out, char *err, size_t cap);
/* by: "count" or "sum"; at INT64_MIN: the newest bucket; n >= 1. */
int spw_views_read_top(spw_views *m, const char *name, const char *window, int64_t at, const char *by, uint32_t n,
                       int cached, spw_buf *out, char *err, size_t cap);

/*
 * Verify (view_verify.c): recomputes the view from its log up to the
 * offsets its store holds (one RocksDB snapshot) and compares counters,
 * watermarks and the entries of the view keys whose hash is a multiple
 * of sample (1: every key, and the entry count too). Appends
 * {"view","ok","sample","records","entries_checked","mismatches",
 * "applied","first_mismatches"}; SPW_EINVAL when the log no longer holds
 * the view's first records (retention) or the view is being rebuilt.
 * Reads the whole log below the view's offsets on the caller's thread.
 */
int spw_views_verify(spw_views *m, const char *name, uint32_t sample, spw_buf *out, char *err, size_t cap);

/* The fields of a view definition, one line each (serve --help). */
void spw_views_help(spw_buf *out);

#endif
