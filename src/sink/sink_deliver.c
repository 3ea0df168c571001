/*
 * Delivery of a batch a sink's worker read: the kind's write (whole, or in
 * halves with write_begin/write_end so the next batch is read meanwhile),
 * and around it the shared delivery rules of rules.c through deliver_ops — retries
 * with backoff, bisection of a rejected batch, dead letters to the DLQ
 * stream (produced like any record, and waited for), then
 * progress (file or the kind's commit) and the hold moved. A kind with
 * group_begin writes the windows of several partitions as one unit; when
 * that fails, each window is delivered by itself by the same rules.
 * Worker thread only.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/id.h"
#include "core/json.h"
#include "core/opts.h"
#include "core/msg.h"
#include "log/cursor.h"
#include "log/format.h"
#include "os/os.h"
#include "sink/sink_int.h"
#include "svc/produce.h"
#include "svc/replicate.h"

/* ---- delivery ---- */

/* Counts a write's answer r for records [from, from+n) of the batch. */
static void account(spw_sink *k, int r, uint32_t from, uint32_t n, uint32_t done, const char *err)
{
    if (r == SPW_SINK_OK) {
        uint64_t bytes = 0;
        for (uint32_t i = 0; i < n; i++)
            bytes += (k->b.recs[from + i].key_len > 0 ? (uint64_t)k->b.recs[from + i].key_len : 0) +
                     k->b.recs[from + i].value_len;
        atomic_fetch_add(&k->delivered, n);
        atomic_fetch_add(&k->delivered_bytes, bytes);
        if (atomic_load(&k->state) == ST_RETRYING)
            atomic_store(&k->state, ST_RUNNING);
    } else {
        atomic_fetch_add(&k->delivered, done < n ? done : n);
        atomic_fetch_add(&k->errors, 1);
        spw__sink_set_error(k, "%s: %s", r == SPW_SINK_REJECT ? "rejected" : "target unavailable", err);
    }
}

static int op_write(void *arg, uint32_t from, uint32_t n, uint32_t *done, char *err, size_t cap)
{
    spw_sink *k = arg;
    if (spw__sink_stopping(k)) /* deleted or shutting down: op_wait ends the delivery */
        return SPW_SINK_RETRY;
    const spw_sink_kind *kd = k->def.kind;
    int r;
    if (kd->write) {
        r = kd->write(k->kst, k->b.part, k->b.recs + from, n, done, err, cap);
    } else { /* a kind that writes in halves: both, now */
        r = kd->write_begin(k->kst, k->b.part, k->b.recs + from, n, done, err, cap);
        if (r == SPW_SINK_OK)
            r = kd->write_end(k->kst, k->b.part, k->b.recs + from, n, done, err, cap);
    }
    account(k, r, from, n, *done, err);
    return r;
}

typedef struct dlq_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int err;
    spw_produce *pr;
} dlq_wait;

static void dlq_done(spw_produce *pr, void *user)
{
    dlq_wait *w = user;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    w->err = atomic_load(&pr->err);
    w->pr = pr;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* The dead-letter record (docs/formats/sink-progress.md, "Dead-letter record"). */
static void dlq_value(spw_sink *k, const spw_sink_rec *r, const char *err, spw_buf *b)
{
    spw_buf_xprintf(b, "{\"error\":");
    spw_json_xput_str(b, err, strlen(err));
    spw_buf_xprintf(b, ",\"sink\":");
    spw_json_xput_str(b, k->def.name, strlen(k->def.name));
    spw_buf_xprintf(b, ",\"stream\":");
    spw_json_xput_str(b, k->def.stream, strlen(k->def.stream));
    spw_buf_xprintf(b, ",\"partition\":%" PRIu32 ",\"offset\":%" PRIu64 ",\"id\":%" PRIu64 ",\"ts\":%" PRId64 ",", k->b.part,
       r->offset, r->id, r->ts);
    if (r->key_len < 0)
        spw_buf_xprintf(b, "\"key\":null");
    else if (spw__key_text_ok(r->key, (size_t)r->key_len)) {
        spw_buf_xprintf(b, "\"key\":");
        spw_json_xput_str(b, (const char *)r->key, (size_t)r->key_len);
    } else {
        spw_buf_xprintf(b, "\"key_b64\":");
        spw_json_xput_b64(b, r->key, (size_t)r->key_len);
    }
    if (!k->s->cfg.format_bytes) {
        spw_buf_xprintf(b, ",\"value\":");
        spw_buf_put(b, r->value, r->value_len);
    } else {
        spw_buf_xprintf(b, ",\"value_b64\":");
        spw_json_xput_b64(b, r->value, r->value_len);
    }
    spw_buf_xprintf(b, "}");
}

static int op_dead(void *arg, uint32_t i, const char *err)
{
    spw_sink *k = arg;
    const spw_sink_rec *r = &k->b.recs[i];
    if (!k->def.dlq[0]) {
        spw__sink_set_error(k, "record at partition %u offset %" PRIu64 " rejected (%s) and the sink has no dlq: stopped there",
                  k->b.part, r->offset, err);
        return SPW_EINVAL;
    }
    spw_stream *d = spw_stream_get(k->m->svc->cat, k->def.dlq, strlen(k->def.dlq));
    if (!d) {
        spw__sink_set_error(k, "dead-letter stream %s does not exist", k->def.dlq);
        return -ENOENT;
    }
    spw_buf v = SPW_BUF_INIT;
    dlq_value(k, r, err, &v);
    spw_record rec = {.key = r->key_len >= 0 ? r->key : NULL,
                      .key_len = r->key_len,
                      .value = v.p,
                      .value_len = (uint32_t)v.len,
                      .ts = spw_wall_ms()};
    dlq_wait w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    int rc = spw_produce_submit(k->m->svc, d, &rec, 1, UINT32_MAX, SPW_ACK_FSYNC, 0, 0, dlq_done, &w);
    spw_buf_fini(&v);
    if (rc < 0) {
        spw_stream_put(d);
        spw__sink_set_error(k, "appending to dead-letter stream %s: %s", k->def.dlq, spw_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    spw_produce_free(w.pr); /* releases the reference to d */
    if (w.err) {
        spw__sink_set_error(k, "appending to dead-letter stream %s: %s", k->def.dlq, spw_strerror(w.err));
        return w.err;
    }
    atomic_fetch_add(&k->dlq, 1);
    /* not in the target: an ack=replicated request holding it must not
     * be answered as replicated when the progress passes it */
    if (k->m->svc->repl)
        spw_repl_dead(k->m->svc->repl, k->def.name, k->b.part, r->offset, err);
    spw_warn("sink %s: partition %u offset %" PRIu64 " sent to dead-letter stream %s: %s", k->def.name, k->b.part,
             r->offset, k->def.dlq, err);
    return 0;
}

static int op_progress(void *arg, uint32_t upto)
{
    spw_sink *k = arg;
    uint64_t next = k->b.recs[upto - 1].offset + 1;
    sink_part *sp = &k->parts[k->b.part];
    atomic_store(&sp->next, next);
    /* ack=replicated requests covered by these records are answered now:
     * the write that got them there (a kind that replicates: sink.h) or
     * the dead letter is done, and what follows is bookkeeping (the
     * kind's commit, which for postgres moves shards that had no rows; the
     * progress file and its fsync) that they need not wait for. */
    if (k->m->svc->repl)
        spw_repl_progress(k->m->svc->repl, k->def.name, k->b.part, next);
    int r = 0;
    if (k->def.kind->commit)
        r = k->def.kind->commit(k->kst, k->b.part, next);
    if (r == 0 && !k->def.kind->position) {
        r = spw__sink_save_progress(k);
    } else if (r == 0) {
        /* The target holds the position; the file is the lower bound that
         * retention holds at before the target answers again after a
         * restart. Lagging is safe, so at most once a second, and a
         * failure only logged. */
        uint64_t now = (uint64_t)spw_wall_ms();
        if (now - k->lb_saved_ms >= 1000) {
            k->lb_saved_ms = now;
            int e = spw__sink_save_progress(k);
            if (e < 0)
                spw_warn("sink %s: saving the local lower bound of its progress: %s", k->def.name, spw_strerror(e));
        }
    }
    if (r == 0 && sp->hold)
        spw_hold_move(sp->hold, next); /* ERANGE impossible: next is above the held offset */
    return r;
}

int spw__sink_op_wait(void *arg, uint32_t attempt, const char *err)
{
    spw_sink *k = arg;
    if (spw__sink_stopping(k))
        return 1;
    atomic_store(&k->state, ST_RETRYING);
    /* The cycle that updates each partition's end waits for this retry:
     * keep the lag shown by GET and /metrics current meanwhile. */
    for (uint32_t i = 0; k->s && i < k->nparts; i++) {
        spw_part_state st;
        spw_part_state_get(k->s->parts[i], &st);
        atomic_store(&k->parts[i].end, st.next_offset);
    }
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
        rnd = spw_mono_ns();
    uint64_t ms = spw_sink_backoff_ms(k->def.retry_initial_ms, k->def.retry_max_ms, attempt, rnd);
    if (attempt == 0 || attempt % 10 == 0)
        spw_warn("sink %s: %s; retrying in %" PRIu64 " ms (attempt %u)", k->def.name, err, ms, attempt + 1);
    return spw__sink_nap(k, ms);
}

static const spw_sink_deliver_ops deliver_ops = {op_write, op_dead, op_progress, spw__sink_op_wait};

/* ---- pipelined writes (the kind's write_begin/write_end) ---- */

/* The offset after the pending batch's last record. */
uint64_t spw__sink_pend_end(const spw_sink *k) { return k->pend.recs[k->pend.nrecs - 1].offset + 1; }

/* Exchanges the batch being read with the pending one (their buffers move, nothing is copied). */
static void swap_pend(spw_sink *k)
{
    sink_batch t = k->b;
    k->b = k->pend;
    k->pend = t;
}

/* After a pipelined write answered r with the first done records
 * delivered: progress for those, then the usual delivery of the rest
 * (retries, bisection, dead letters), as spw_sink_deliver would have gone
 * on after such an answer. */
static void deliver_rest(spw_sink *k, int r, uint32_t done)
{
    uint32_t n = k->b.nrecs;
    if (r == SPW_SINK_OK)
        done = n;
    if (done > n)
        done = n;
    if (done && spw_sink_commit(&deliver_ops, k, done) < 0)
        return; /* stopping */
    if (done == n)
        return;
    spw_sink_rec *base = k->b.recs; /* the rest as a batch of its own */
    k->b.recs += done;
    k->b.nrecs -= done;
    spw_sink_deliver(&deliver_ops, k, n - done);
    k->b.recs = base;
    k->b.nrecs = n;
}

/* ---- group writes (the kind's group_begin/group_end) ---- */

/* The kind's view of k->b's windows (k->gw). */
static uint32_t group_windows(spw_sink *k)
{
    if (k->gw_cap < k->b.nwin) {
        k->gw_cap = k->b.nwin;
        k->gw = spw_xrealloc(k->gw, (size_t)k->gw_cap * sizeof *k->gw);
    }
    for (uint32_t j = 0; j < k->b.nwin; j++)
        k->gw[j] = (spw_sink_window){.partition = k->b.win[j].part,
                                     .recs = k->b.recs + k->b.win[j].first,
                                     .n = k->b.win[j].n};
    return k->b.nwin;
}

/* After a group write answered r: each window's progress (OK), or each
 * window delivered again by itself (the usual retries, bisection and dead
 * letters; the kind skips what got there). k->b is made each window's
 * batch in turn and restored. */
static void group_after(spw_sink *k, int r, const char *err)
{
    spw_sink_rec *base = k->b.recs;
    uint32_t n = k->b.nrecs, part = k->b.part;
    if (r != SPW_SINK_OK)
        account(k, r, 0, 0, 0, err);
    for (uint32_t j = 0; j < k->b.nwin && !spw__sink_stopping(k); j++) {
        const sink_win *w = &k->b.win[j];
        k->b.recs = base + w->first;
        k->b.nrecs = w->n;
        k->b.part = w->part;
        if (r == SPW_SINK_OK) {
            account(k, r, 0, w->n, w->n, "");
            if (spw_sink_commit(&deliver_ops, k, w->n) < 0)
                break; /* stopping */
        } else {
            spw_sink_deliver(&deliver_ops, k, w->n);
        }
    }
    k->b.recs = base;
    k->b.nrecs = n;
    k->b.part = part;
}

/* Ends the pending group batch (group kinds): progress of every window,
 * or each delivered by itself. */
static void finish_pending_group(spw_sink *k)
{
    k->has_pend = 0;
    swap_pend(k);
    char err[512] = "";
    uint32_t nw = group_windows(k);
    int r = k->def.kind->group_end(k->kst, k->gw, nw, err, sizeof err);
    group_after(k, r, err);
    swap_pend(k);
}

/* Delivers the group batch just read (k->b.win, at least one window):
 * begun and left pending, or at once by window when the begin failed. */
void spw__sink_deliver_group(spw_sink *k)
{
    if (spw__sink_stopping(k))
        return;
    char err[512] = "";
    uint32_t nw = group_windows(k);
    int r = k->def.kind->group_begin(k->kst, k->gw, nw, err, sizeof err);
    if (r == SPW_SINK_OK) {
        swap_pend(k);
        k->has_pend = 1;
        return;
    }
    group_after(k, r, err);
}

/* Ends the pending batch: progress when all of it got there, else the
 * usual delivery of what did not. */
void spw__sink_finish_pending(spw_sink *k)
{
    if (k->def.kind->group_end) {
        finish_pending_group(k);
        return;
    }
    k->has_pend = 0;
    swap_pend(k);
    uint32_t done = 0;
    char err[512] = "";
    int r = k->def.kind->write_end(k->kst, k->b.part, k->b.recs, k->b.nrecs, &done, err, sizeof err);
    account(k, r, 0, k->b.nrecs, done, err);
    deliver_rest(k, r, done);
    swap_pend(k);
}

/* Delivers the batch just read: begun and left pending when the kind
 * writes in halves (the next batch is read meanwhile), else written now. */
void spw__sink_deliver_batch(spw_sink *k)
{
    if (k->def.kind->write_begin && !spw__sink_stopping(k)) {
        uint32_t done = 0;
        char err[512] = "";
        int r = k->def.kind->write_begin(k->kst, k->b.part, k->b.recs, k->b.nrecs, &done, err, sizeof err);
        if (r == SPW_SINK_OK) {
            swap_pend(k);
            k->has_pend = 1;
            return;
        }
        account(k, r, 0, k->b.nrecs, done, err);
        deliver_rest(k, r, done);
        return;
    }
    spw_sink_deliver(&deliver_ops, k, k->b.nrecs);
}
