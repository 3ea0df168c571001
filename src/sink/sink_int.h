/*
 * Internals shared by the files of the sink manager and its worker
 * (sink.c, sink_def.c, sink_attach.c, sink_worker.c, sink_deliver.c) and
 * by no one else: the definition, the sink and the manager structs. The
 * kinds see only sink.h; the shared delivery loop is loop.h.
 *
 * Locking: m->mu guards the list of sinks; k->mu guards a sink's state
 * shown by GET (partition table, last error) and its "deleted" flag, which
 * is checked under it before a progress file is written, so a deleted
 * sink never writes into a directory a new sink of its name now owns.
 */
#ifndef SPW_SINK_INT_H
#define SPW_SINK_INT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/json.h"
#include "log/cursor.h"
#include "svc/svc.h"
#include "catalog/catalog.h"
#include "sink/rules.h"
#include "sink/sink.h"

#define SINKS_MAX 256
#define OPTIONS_MAX 65536
#define DEF_MAX (OPTIONS_MAX + 4096)
#define POLL_MS 20
#define SINK_MAX_LANES 64 /* a group kind's lanes (sink.h, group_lanes) the loop caps one by one */

typedef struct sink_def {
    char name[SPW_STREAM_NAME_MAX + 1];
    char stream[SPW_STREAM_NAME_MAX + 1];
    char dlq[SPW_STREAM_NAME_MAX + 1]; /* "" = none */
    const spw_sink_kind *kind;
    spw_sink_batch_cfg batch;
    uint64_t retry_initial_ms, retry_max_ms;
    char *options; /* raw JSON object text */
    size_t options_len;
    int kind_err; /* while parsing: the kind lookup's error (kinds.c), 0 if none */
} sink_def;

typedef struct sink_part {
    _Atomic uint64_t next; /* committed position */
    _Atomic uint64_t end;  /* partition's next offset when last looked */
    spw_hold *hold;
    uint64_t first_seen_ms; /* when records past next were first seen (0: none) */
    uint64_t checked_end;   /* written offset at the last read that was not due */
    uint64_t grp_cycle;     /* group kinds: the cycle (spw_sink.grp_cycle) that last read it */
} sink_part;

enum { ST_RUNNING, ST_RETRYING, ST_NO_STREAM, ST_STOPPED };

/* One partition's records in a group batch: recs[first, first + n),
 * read from offset from while the partition's durable end was vend. */
typedef struct sink_win {
    uint32_t part;
    uint32_t first, n;
    uint64_t from, vend;
} sink_win;

/* A batch of records of one partition: the records (their key and value
 * pointers into arena) and their key + value bytes. A kind with
 * group_begin (sink.h) reads batches of several partitions: win[0, nwin)
 * say which records are whose, and part is set to a window's while that
 * window alone is delivered. */
typedef struct sink_batch {
    uint32_t part;
    spw_sink_rec *recs;
    uint32_t nrecs, recs_cap;
    spw_buf arena;
    uint64_t bytes;
    sink_win *win;
    uint32_t nwin, win_cap;
} sink_batch;

typedef struct spw_sink {
    struct spw_sinks *m;
    sink_def def;
    char *canon; /* canonical definition JSON */
    char *shown; /* the same with its secrets redacted (spw_sinks_redact): what answers show */
    void *kst;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;    /* under mu */
    int deleted; /* under mu */
    int exited;  /* under mu: the worker has returned (signalled on cv) */
    int kicked;  /* under mu: a replicated request waits (svc/replicate.h): the nap ends at once */
    /* Replaces a sink of this name stopped in this process (an online
     * change, sink.h): the positions its target keeps were written in this
     * process, so at its first attach they are valid up to the visible end,
     * not only the end at open. Worker only after sink_start. */
    int continues;
    /* Holds taken when the sink was loaded or created, at its local lower
     * bound (the progress file), before the worker attaches: retention
     * must not delete what the sink has not delivered while the target is
     * down and position cannot be asked (docs/architecture.md, "Sinks
     * and retention"). Released once attach holds at the real positions,
     * or when the stream goes. Worker only after sink_start. */
    spw_stream *pre_s;
    spw_hold **pre_holds;
    uint32_t pre_n;
    uint64_t lb_saved_ms; /* when the lower-bound file was last written (kinds with position) */
    /* attachment: parts replaced only under mu */
    spw_stream *s;
    uint32_t nparts;
    sink_part *parts;
    _Atomic int state;
    char last_error[512]; /* under mu */
    int64_t last_error_ms;
    _Atomic uint64_t delivered, delivered_bytes, errors, dlq;
    /* throughput, worker only (read racy as a plain double: display) */
    uint64_t rate_t0_ms, rate_n0;
    _Atomic uint64_t rate_milli; /* events/s * 1000 */
    /* the batch being read and delivered, and the one begun with the
     * kind's write_begin and not yet ended, kept while the next is read
     * (worker only; swapped whole, buffers and all) */
    sink_batch b, pend;
    int has_pend;
    spw_cursor cur;        /* collect's (log/cursor.h) */
    uint64_t log_per_rec;  /* log bytes per record in the last batch read (collect's read size) */
    uint32_t grp_start;    /* group kinds: the partition the next group batch is read from first */
    uint64_t grp_cycle;    /* group kinds: cycles of cycle_group, counted from 1 */
    int pend_cut;          /* group kinds: the pending group was cut by max_events or max_bytes, or holds an eighth of either */
    spw_sink_window *gw;   /* group kinds: the windows handed to group_begin/group_end */
    uint32_t gw_cap;
} spw_sink;

struct spw_sinks {
    spw_svc *svc;
    char dir[3800];
    pthread_mutex_t mu;
    spw_sink *v[SINKS_MAX];
    uint32_t n;
    uint32_t reaping;  /* deleted sinks still stopping on their reaper threads (under mu) */
    pthread_cond_t reaped; /* reaping went down */
};


/* sink_def.c */
int spw__sink_def_parse(sink_def *d, const char *name, const char *body, size_t len, char *err, size_t cap);
void spw__sink_def_fini(sink_def *d);
void spw__sink_def_json(const sink_def *d, spw_buf *b); /* the canonical form */

/* sink_attach.c */
int spw__sink_save_progress(spw_sink *k); /* writes the progress file */
void spw__sink_set_error(spw_sink *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int spw__sink_nap(spw_sink *k, uint64_t ms); /* sleeps up to ms or until stop; returns stop */
int spw__sink_stopping(spw_sink *k);
int spw__sink_attach(spw_sink *k);  /* 0, -ENOENT (no stream) or an error */
void spw__sink_detach(spw_sink *k); /* drops the stream and the holds */
void spw__sink_release_pre(spw_sink *k);
void spw__sink_take_pre_holds(spw_sink *k); /* before the worker starts */

/* sink_deliver.c */
int spw__sink_op_wait(void *arg, uint32_t attempt, const char *err); /* backoff nap; returns stop */
uint64_t spw__sink_pend_end(const spw_sink *k); /* the offset after the pending batch */
void spw__sink_finish_pending(spw_sink *k);
void spw__sink_deliver_batch(spw_sink *k);
void spw__sink_deliver_group(spw_sink *k); /* group kinds: the group batch just read (k->b.win) */

/* sink_worker.c */
void *spw__sink_worker(void *arg);

#endif
