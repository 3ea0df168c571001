/*
 * Sinks (docs/api.md "Sinks"; docs/architecture.md "The
 * sink loop"): built-in writers that drain a stream into a target.
 *
 * A kind is a const struct of callbacks in src/sink/<kind>/; the shared
 * loop (sink*.c, loop.h) does everything else: one worker thread per sink
 * reads the stream's partitions from the sink's committed positions
 * (spw_part_read), batches per partition by events, bytes and time, calls
 * write, commits progress, backs off with jitter while the target fails,
 * bisects rejected batches and dead-letters the bad records, and holds
 * retention at its positions (spw_part_hold).
 *
 * Layout of a data directory (docs/formats/sink-progress.md):
 *   DATA/sinks/NAME/sink.json   the definition (canonical JSON)
 *   DATA/sinks/NAME/progress    next offset per partition (unless the kind
 *                               keeps progress in its target)
 */
#ifndef SPW_SINK_H
#define SPW_SINK_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "sink/rules.h"
#include "svc/metrics.h"

/* One record handed to a kind; pointers valid during the call. */
typedef struct spw_sink_rec {
    uint64_t offset;
    uint64_t id;
    int64_t ts;
    const uint8_t *key;
    int32_t key_len; /* -1: no key */
    const uint8_t *value;
    uint32_t value_len;
} spw_sink_rec;

/* The records of one partition in a group write (group_begin below). */
typedef struct spw_sink_window {
    uint32_t partition;
    const spw_sink_rec *recs;
    uint32_t n;
} spw_sink_window;

typedef struct spw_sink_kind {
    const char *name;
    /* Checks the "options" object (raw JSON text, len bytes) and creates
     * the kind's state: 0 and *st, or SPW_EINVAL with a sentence in err.
     * Must not wait on the target (open is called by PUT). */
    int (*open)(const char *sink, const char *stream, const char *options, size_t len, void **st, char *err,
                size_t cap);
    /* Writes n >= 1 records of one partition, in offset order (optional
     * when write_begin and write_end are given: then both, in turn). Returns
     * SPW_SINK_OK, SPW_SINK_RETRY (target unavailable: nothing or only
     * the first *done records got there) or SPW_SINK_REJECT (the target
     * refused records as bad data; *done as for RETRY). err gets the
     * target's sentence. Runs on the sink's worker thread only. */
    int (*write)(void *st, uint32_t partition, const spw_sink_rec *recs, uint32_t n, uint32_t *done, char *err,
                 size_t cap);
    /* Optional, both or neither: write in two halves, so the loop reads
     * the next batch while the target finishes this one. write_begin
     * starts writing records [0, n), which stay valid and unchanged until
     * write_end, and answers SPW_SINK_OK when write_end must follow, or as
     * write does (then write_end is not called). write_end waits and
     * answers as write does for the whole batch. No other callback runs
     * between them. Retries and bisection write (or begin + end) again. */
    int (*write_begin)(void *st, uint32_t partition, const spw_sink_rec *recs, uint32_t n, uint32_t *done, char *err,
                       size_t cap);
    int (*write_end)(void *st, uint32_t partition, const spw_sink_rec *recs, uint32_t n, uint32_t *done, char *err,
                     size_t cap);
    /* Optional, both or neither, and only with write_begin/write_end:
     * write windows of several partitions (each partition once, each
     * window in offset order) as one unit, e.g. one transaction per
     * target, so that one commit carries them all. Halves as write_begin
     * and write_end: the windows stay valid until group_end, and no other
     * callback runs between them. group_end answers SPW_SINK_OK when every
     * record of every window got there (the kind's stored progress
     * included). Any other answer of either: the loop delivers each
     * window again by itself (write_begin/write_end, with retries,
     * bisection and dead letters), and the kind must not write twice what
     * did get there (as after a RETRY). */
    int (*group_begin)(void *st, const spw_sink_window *w, uint32_t nw, char *err, size_t cap);
    int (*group_end)(void *st, const spw_sink_window *w, uint32_t nw, char *err, size_t cap);
    /* Optional, with group_begin: how many lanes a group's windows go by
     * at once (e.g. connections, each its own transaction), partition p's
     * by lane p % lanes. The loop caps each lane's share of a group at
     * max_events / max_bytes, not the whole group, so a backlog keeps
     * every lane busy. NULL: 1. */
    uint32_t (*group_lanes)(void *st);
    /* Optional. Non-NULL: the kind keeps progress in the target (e.g. in
     * the transaction that writes the rows): position gives partition's
     * next offset at start (0 or a negative error, then retried). The
     * stream's incarnation (catalog/catalog.h) is stored with the progress
     * and a position stored for another incarnation counts as none. The
     * progress file is then a lower bound only, for retention holds
     * before the target is reachable (docs/formats/sink-progress.md). */
    int (*position)(void *st, uint64_t incarnation, uint32_t partition, uint64_t *next);
    /* Optional: after position failed, the target's sentence saying why
     * (shown as the sink's last_error), or NULL. */
    const char *(*position_error)(void *st);
    /* Optional. Records below next are delivered or dead-lettered; a kind
     * with position stores it (write already stored what it wrote). */
    int (*commit)(void *st, uint32_t partition, uint64_t next);
    /* Required with position; called at attach for every partition. Set
     * any position the target keeps for partition past end (the
     * partition's end when opened: records past it were cut after the
     * target got them, and their offsets go to new records) down to end,
     * so the records that now take those offsets are written, not
     * skipped. 1 if something was set down, 0 if nothing was past end, or
     * a negative error (attach is retried). */
    int (*rewind)(void *st, uint32_t partition, uint64_t end);
    /* Frees the state; may block briefly (closing connections). */
    void (*close)(void *st);
    /* Optional. Called from another thread, any number of times, once the
     * sink is stopping (deleted, or the server stops): makes a write,
     * write_end or position in progress on the worker give up soon (it
     * answers SPW_SINK_RETRY or an error, and nothing it did not report
     * counts as done), e.g. by cancelling the statement on the target.
     * Must be safe against every callback running on the worker at the
     * same time; close is never called concurrently with it. */
    void (*interrupt)(void *st);
    /* Optional: can this target acknowledge ack=replicated (docs/api.md
     * "Replicated acknowledgement")? Asked on the worker at attach, only
     * for a sink its stream names in replicate_to; may ask the target.
     * 1: every write it answers OK is held by replicas too (for postgres,
     * its commits wait for a synchronous standby); 0 with the sentence
     * why not in why. NULL: the kind cannot replicate. */
    int (*replicates)(void *st, char *why, size_t cap);
    /* Optional, for a kind that changes online (the postgres sink's
     * resharding). set_dir gives the kind its directory (DATA/sinks/NAME),
     * once, after open and before the worker starts; the kind keeps its
     * own state files there. change: a PUT whose definition differs from
     * the running one's in "options" only (options, len: the new ones):
     * 1 if the kind takes it online (it has saved what it needs; the sink
     * is then restarted with the new definition), 0 if it is no such
     * change (the PUT answers 409 as for any other), or -EEXIST, SPW_EINVAL
     * or an I/O error with the sentence. Called on the PUT's thread while
     * the worker runs. status_json appends ,"member":{...} to GET's sink
     * object (or nothing); any thread. abort rolls an online change back
     * on a state of its own (open, no set_dir, no worker: the sink is
     * stopped meanwhile): 0 with the options to run with in out, -EEXIST
     * (nothing to roll back), or an error, with the sentence. */
    void (*set_dir)(void *st, const char *dir);
    int (*change)(void *st, const char *options, size_t len, char *err, size_t cap);
    void (*status_json)(void *st, struct spw_buf *b);
    /* Optional: the online change's phase while one runs (a name), else
     * NULL; for /metrics and spillway top. Any thread. */
    const char *(*phase)(void *st);
    int (*abort)(void *st, const char *dir, const char *options, size_t len, struct spw_buf *out, char *err,
                 size_t cap);
    /* The kind's defaults for batch.max_events and batch.max_bytes when a
     * definition leaves them out (0: the framework's, 5000 and 4 MiB). */
    uint32_t default_max_events;
    uint64_t default_max_bytes;
    /* The "options" fields (core/opts.h): open parses options by this
     * table, and a definition's stored and compared form carries the
     * options canonicalized by it. */
    const struct spw_opt *opts;
    size_t nopts;
    /* Optional: a PUT of a running sink whose options carry secrets as
     * GET shows them ("[redacted]", spw_sinks_redact) gets them back from
     * the running definition where the redacted value is the running
     * one's, redacted alike: 1 with the options so restored in out, 0 if
     * none is redacted, or SPW_EINVAL with the sentence (a redacted
     * secret that is not the running one's). Any thread; st is not
     * changed. */
    int (*unredact)(void *st, const char *options, size_t len, struct spw_buf *out, char *err, size_t cap);
} spw_sink_kind;

/* The kinds (kinds.c). spw_sink_kind_lookup: 0 and *out, SPW_EINVAL for a
 * name no kind has, or SPW_SINK_ENOTBUILT for a kind this build leaves out
 * (a build option); both with a sentence in err. spw_sink_kind_find: the
 * kind, or NULL for either. spw_sink_kinds_built writes "forward,
 * postgres, ..." (the kinds built in) to out and returns its length. */
#define SPW_SINK_ENOTBUILT (-ENOTSUP)
int spw_sink_kind_lookup(const char *name, size_t len, const spw_sink_kind **out, char *err, size_t cap);
const spw_sink_kind *spw_sink_kind_find(const char *name, size_t len);
size_t spw_sink_kinds_built(char *out, size_t cap);
/* The i-th kind built in (i from 0), NULL past the last. */
const spw_sink_kind *spw_sink_kind_at(size_t i);

/* The fields of a sink definition and of each kind's options, one line
 * each, from their tables (for serve --help). */
struct spw_buf;
void spw_sinks_help(struct spw_buf *out);

struct spw_svc;
typedef struct spw_sinks spw_sinks;

/* Loads every DATA/sinks/NAME/sink.json and starts every sink; svc must stay valid until
 * spw_sinks_close. Definitions that do not load are logged and skipped. */
int spw_sinks_open(struct spw_svc *svc, spw_sinks **out);
/* Stops every worker (a write in progress finishes first), releases
 * their holds and frees. REQUIRES: before the catalog closes. */
void spw_sinks_close(spw_sinks *m);

/* PUT: 1 created, 0 identical existed, 2 changed online (the kind's change), or an error with a sentence in err:
 * SPW_EINVAL (bad definition), SPW_SINK_ENOTBUILT (a kind this build
 * leaves out), -ENOENT (no such stream), -EEXIST (exists with another
 * definition), or an I/O error. */
int spw_sinks_put(spw_sinks *m, const char *name, const char *body, size_t len, spw_buf *canon, char *err,
                  size_t cap);
/* POST /v1/sinks/{name}/reshard/abort: the kind's online change rolled
 * back (spw_sink_kind.abort) with the sink stopped meanwhile, and the sink
 * started again with the definition it answers. 0, -ENOENT (no sink),
 * -EEXIST (nothing to roll back; sentence in err), SPW_EINVAL (the kind
 * has no such change) or an error (the target; the sink runs on as it
 * was). */
int spw_sinks_abort_change(spw_sinks *m, const char *name, char *err, size_t cap);
/* canon (above) and every answer carry the definition with its secrets
 * replaced by "[redacted]": string values of members whose name says
 * secret (password, secret, token, jaas, ...) and the passwords inside
 * connection strings and URIs. Appends json[0..n) so redacted to out. */
void spw_sinks_redact(const char *json, size_t n, spw_buf *out);
/* May stream name sink in replicate_to? 0 when the sink does not exist
 * (it may be defined later) or drains stream with a kind that can
 * replicate; else SPW_EINVAL with the sentence in err. m NULL: 0. */
int spw_sinks_replica_ok(spw_sinks *m, const char *sink, const char *stream, char *err, size_t cap);
/* Is stream some sink's dead-letter stream? 1 with that sink's name in
 * sink (SPW_STREAM_NAME_MAX + 1 bytes), else 0. Such a stream cannot be
 * deleted while the sink exists (its bad records would have nowhere to
 * go). m NULL: 0. */
int spw_sinks_dlq_user(spw_sinks *m, const char *stream, char *sink);
/* DELETE: 0 or -ENOENT. The worker stops in the background, and
 * everything the sink started (its thread, the kind's connections and
 * threads) is stopped and freed there: the kind is interrupted (see
 * interrupt above) until its worker has stopped. */
int spw_sinks_delete(spw_sinks *m, const char *name);
/* GET one (JSON object appended; -ENOENT) or all ({"sinks":[...]}):
 * definitions with their secrets redacted (docs/operations.md
 * "Security"). The list holds the sinks for which visible(arg, source
 * stream) is non-zero (visible NULL: all). */
int spw_sinks_get_json(spw_sinks *m, const char *name, spw_buf *out);
void spw_sinks_list_json(spw_sinks *m, spw_buf *out, int (*visible)(void *arg, const char *stream), void *arg);
/* The source and dead-letter streams of a sink ("" for no dlq); stream
 * and dlq hold SPW_STREAM_NAME_MAX + 1 bytes. 0 or -ENOENT. */
int spw_sinks_streams(spw_sinks *m, const char *name, char *stream, char *dlq);
/* The same from a PUT body, before anything is created (the permission
 * check comes first): 0, or an error as spw_sinks_put's with a sentence. */
int spw_sinks_def_streams(const char *name, const char *body, size_t len, char *stream, char *dlq, char *err,
                          size_t cap);
/* The sink families for /metrics (a block of svc/metrics.h): lag,
 * delivered, errors, dead-lettered, and the state as one 0/1 series per
 * state; only sinks whose source stream the viewer may see. */
void spw_sinks_metrics(spw_sinks *m, spw_metrics_out *o);

/*
 * Test builds only: src/server/testhooks.c, linked into spillway_test and
 * never into spillway, sets this before main runs; NULL in the production
 * binary. A kind's background thread asks it at a named point (sink, then
 * point: "reshard_cutover_deleted" — a postgres reshard's cutover has
 * deleted the moved rows of one old shard, phase cutover durable) and,
 * while it answers non-zero, waits there (re-asking every 10 ms; a stop of
 * the sink ends the wait), so a test can kill the server at that point.
 */
extern int (*spw_sink_test_hold)(const char *sink, const char *point);

#endif
