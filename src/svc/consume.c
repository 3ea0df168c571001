/*
 * The consume service: parked group polls, the commit queue, leases and
 * the group waiter thread, shared by the HTTP and binary front ends. See
 * consume.h, catalog/groups.h (the groups' state) and docs/architecture.md
 * ("Consumer groups", "The record cursor and the consume service").
 */
#include "svc/consume.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/thread.h"
#include "core/workq.h"
#include "core/error.h"
#include "core/id.h"
#include "core/msg.h"
#include "svc/auth.h"
#include "catalog/groups.h"

/* A commit applied in memory, waiting for its group's file. */
typedef struct gcommit {
    struct gcommit *next;
    spw_group *g;
    void (*post)(void *, void (*)(void *), void *);
    void *loop;
    void (*done)(void *arg, int err);
    void *arg;
    int err; /* the save's result, set by the waiter */
} gcommit;

struct spw_consume {
    spw_catalog *cat;
    spw_log *log;
    _Atomic uint64_t *clamped; /* positions set down at start (may be NULL) */
    spw_groups *gs;
    pthread_t th;
    pthread_mutex_t mu; /* the lists and stop */
    pthread_cond_t cv;
    spw_group_poll *parked;
    gcommit *commits;
    int stop;
    int started;
    _Atomic uint32_t nparked; /* polls parked (read without mu by kicks) */
    _Atomic(spw_workq *) io;  /* where leases are read (spw_consume_set_io) */
    _Atomic int kicked;       /* a kick is on its way to the waiter */
    _Atomic uint64_t skipped; /* records skipped as damaged (spw_consume_read_lease) */
};

static int64_t now_ms(void) { return (int64_t)spw_mono_ms(); }

/* ends[i], firsts[i] of the stream's first n partitions. The end is the
 * durable one: groups deliver only records that survive a power loss
 * (docs/architecture.md, "What readers see"), so a committed offset never
 * passes what recovery keeps. */
static void part_ends(spw_stream *s, uint32_t n, uint64_t *ends, uint64_t *firsts)
{
    for (uint32_t i = 0; i < n; i++) {
        spw_part_state st;
        spw_part_state_get(s->parts[i], &st);
        ends[i] = st.durable_offset;
        if (firsts)
            firsts[i] = st.start_offset;
    }
}

/* A poll found nothing to deliver and waits: partitions with written
 * records past the durable end are fsynced in the next flush cycle (the
 * durable hook then wakes the waiter). Atomic loads only, but for a
 * partition with such records. */
static void ask_sync(spw_stream *s, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        spw_part_sync_soon(s->parts[i]);
}

/* Records still stored after the committed offset (retention may have
 * removed some the group never read: those are not lag any more). */
static uint64_t group_lag(uint64_t committed, uint64_t end, uint64_t first)
{
    uint64_t from = committed < first ? first : committed;
    return end > from ? end - from : 0;
}

static uint32_t nparts_of(spw_stream *s, spw_group *g)
{
    uint32_t n = spw_group_nparts(g);
    return s->cfg.partitions < n ? s->cfg.partitions : n;
}

uint32_t spw_consume_view(spw_stream *s, spw_group *g, spw_consume_part **out)
{
    uint32_t n = nparts_of(s, g);
    uint64_t *ends = spw_xmalloc(2 * ((size_t)n + 1) * sizeof *ends), *firsts = ends + n + 1;
    spw_group_part_info *info = spw_xcalloc((size_t)n + 1, sizeof *info);
    spw_consume_part *v = spw_xcalloc((size_t)n + 1, sizeof *v);
    part_ends(s, n, ends, firsts);
    spw_group_info(g, info, n, now_ms());
    for (uint32_t i = 0; i < n; i++) {
        v[i].info = info[i];
        v[i].end = ends[i];
        v[i].lag = group_lag(info[i].committed, ends[i], firsts[i]);
    }
    spw_free(ends);
    spw_free(info);
    *out = v;
    return n;
}

/* ---- poll (both front ends) ---- */

static void gpoll_free(spw_group_poll *p)
{
    spw_stream_put(p->s);
    spw_free(p);
}

/* A lease read on an I/O worker, then delivered on the poll's loop. */
typedef struct lease_job {
    spw_group_poll *p;
    spw_lease l;
} lease_job;

static void lease_deliver(void *arg)
{
    lease_job *j = arg;
    j->p->deliver(j->p, &j->l);
    gpoll_free(j->p);
    spw_free(j);
}

static void lease_read(void *arg)
{
    lease_job *j = arg;
    j->p->read(j->p, &j->l);
    j->p->post(j->p->loop, lease_deliver, j);
}

void spw_consume_set_io(spw_consume *cs, spw_workq *io)
{
    if (cs)
        atomic_store(&cs->io, io);
}

/* Tries to lease a partition for p and deliver it; else parks it until the
 * waiter hands it back, or answers "nothing" when its wait is over. On
 * the poll's loop. */
static void try_poll(spw_group_poll *p)
{
    spw_consume *cs = p->cs;
    uint32_t n = nparts_of(p->s, p->g);
    uint64_t *ends = spw_xmalloc(2 * (size_t)n * sizeof *ends + 1), *firsts = ends + n;
    part_ends(p->s, n, ends, firsts);
    int64_t now = now_ms();
    spw_lease l;
    int got = spw_group_acquire(p->g, ends, firsts, n, now, p->lease_ms, p->member, &l);
    spw_free(ends);
    if (got && p->reserve) {
        /* Before anything is read: the answer's room, or the lease back. */
        uint64_t room = p->reserve(p, p->max_bytes);
        if (room == 0) {
            spw_group_release(p->g, &l);
            p->busy(p);
            gpoll_free(p);
            return;
        }
        p->max_bytes = room;
    }
    if (got) {
        spw_workq *io = p->read ? atomic_load(&cs->io) : NULL;
        if (io) {
            lease_job *j = spw_xmalloc(sizeof *j);
            j->p = p;
            j->l = l;
            if (spw_workq_submit(io, lease_read, j) == 0)
                return;
            spw_free(j); /* the queue is full: read here */
        }
        p->deliver(p, &l);
        gpoll_free(p);
        return;
    }
    if (now < p->deadline_ms)
        ask_sync(p->s, n);
    pthread_mutex_lock(&cs->mu);
    int park = !cs->stop && now < p->deadline_ms;
    if (park) {
        p->next = cs->parked;
        cs->parked = p;
        atomic_fetch_add(&cs->nparked, 1);
        pthread_cond_signal(&cs->cv);
    }
    pthread_mutex_unlock(&cs->mu);
    if (!park) {
        p->nothing(p);
        gpoll_free(p);
    }
}

static void poll_again(void *arg) { try_poll(arg); }

/* A fresh group saved (on a worker): on the poll's loop, the poll goes on. */
static void fresh_saved(void *arg)
{
    spw_group_poll *p = arg;
    if (p->err < 0) {
        p->failed(p, p->err);
        gpoll_free(p);
        return;
    }
    p->fresh = 0;
    try_poll(p);
}

static void fresh_save(void *arg)
{
    spw_group_poll *p = arg;
    p->err = spw_group_save(p->cs->gs, p->g);
    p->post(p->loop, fresh_saved, p);
}

void spw_consume_poll(spw_consume *cs, spw_group_poll *p)
{
    p->cs = cs;
    if (p->fresh) {
        /* A new group's starting point is durable before anything is
         * delivered (latest must mean the same after a restart). */
        spw_workq *io = atomic_load(&cs->io);
        if (io && spw_workq_submit(io, fresh_save, p) == 0)
            return;
        p->err = spw_group_save(cs->gs, p->g);
        fresh_saved(p);
        return;
    }
    try_poll(p);
}

spw_groups *spw_consume_groups(spw_consume *cs) { return cs->gs; }

int spw_consume_poll_group(spw_consume *cs, spw_stream *s, const char *gname, int latest, spw_group **out,
                           int *fresh)
{
    if (s->cfg.partitions > SPW_GROUP_PARTS_MAX)
        return -E2BIG;
    uint32_t n = s->cfg.partitions;
    uint64_t *at = spw_xmalloc((size_t)n * sizeof *at + 1);
    if (latest)
        part_ends(s, n, at, NULL);
    else
        for (uint32_t i = 0; i < n; i++) {
            spw_part_state st;
            spw_part_state_get(s->parts[i], &st);
            at[i] = st.start_offset;
        }
    int created = 0;
    spw_group *g = spw_group_find(cs->gs, s->cfg.name, s->incarnation, gname, 1, n, at, &created);
    spw_free(at);
    if (fresh) {
        *fresh = created;
        created = 0; /* saved by the poll (spw_consume_poll) */
    }
    if (created) {
        /* A new group's starting point is durable before anything is
         * delivered (latest must mean the same after a restart). */
        int e = spw_group_save(cs->gs, g);
        if (e < 0)
            return e;
    }
    *out = g;
    return 0;
}

/* Damaged records [l->from, bad): the group's committed offset and the
 * lease move to bad, logged and counted. 0, or -1 (bad not past l->from,
 * or the lease is gone). */
static int skip_damaged(spw_group_poll *p, spw_lease *l, uint64_t bad)
{
    uint64_t from = l->from;
    if (bad <= from || spw_group_skip(p->g, l, bad) < 0)
        return -1;
    atomic_fetch_add(&p->cs->skipped, bad - from);
    spw_error("group %s of stream %s: partition %" PRIu32 " offsets %" PRIu64 "..%" PRIu64
              " are damaged on disk and cannot be delivered; the group skips them, resuming at offset %" PRIu64
              " (run spillway check)",
              spw_group_name(p->g), p->s->cfg.name, l->partition, from, bad - 1, bad);
    return 0;
}

int spw_consume_read_lease(spw_group_poll *p, spw_lease *l,
                           int (*read)(void *arg, uint64_t from, uint64_t *next, uint64_t *bad), void *arg,
                           uint64_t *next, uint64_t *bad)
{
    int n, skips = 0;
    *next = l->from;
    *bad = 0;
    while ((n = read(arg, l->from, next, bad)) == SPW_ECORRUPT && skips < SPW_GROUP_SKIPS_MAX &&
           skip_damaged(p, l, *bad) == 0)
        skips++;
    if (n == 0 && !skips)
        return -EIO; /* a lease is only taken with durable records past the committed offset */
    return n;
}

/* ---- commit ---- */

void spw_consume_commit_saved(spw_consume *cs, spw_group *g, void (*post)(void *, void (*)(void *), void *),
                                  void *loop, void (*done)(void *arg, int err), void *arg)
{
    gcommit *c = spw_xcalloc(1, sizeof *c);
    c->g = g;
    c->post = post;
    c->loop = loop;
    c->done = done;
    c->arg = arg;
    pthread_mutex_lock(&cs->mu);
    int queued = !cs->stop;
    if (queued) {
        c->next = cs->commits;
        cs->commits = c;
        pthread_cond_signal(&cs->cv);
    }
    pthread_mutex_unlock(&cs->mu);
    if (!queued) {
        int err = spw_group_save(cs->gs, g);
        spw_free(c);
        done(arg, err);
    }
}

static void commit_ran(void *arg)
{
    gcommit *c = arg;
    c->done(c->arg, c->err);
    spw_free(c);
}

/* ---- the waiter ---- */

/* Saves the groups of the commits in list (once each) and posts every
 * answer to its loop. */
static void finish_commits(spw_consume *cs, gcommit *list)
{
    for (gcommit *c = list; c; c = c->next)
        c->err = 1; /* not saved yet */
    for (gcommit *c = list; c; c = c->next) {
        if (c->err != 1)
            continue;
        int r = spw_group_save(cs->gs, c->g);
        for (gcommit *d = c; d; d = d->next)
            if (d->g == c->g)
                d->err = r;
    }
    while (list) {
        gcommit *c = list;
        list = c->next;
        c->post(c->loop, commit_ran, c);
    }
}

static int poll_ready(spw_group_poll *p, int64_t now)
{
    if (now >= p->deadline_ms)
        return 1;
    uint32_t n = nparts_of(p->s, p->g);
    uint64_t small[2 * 64];
    uint64_t *ends = n <= 64 ? small : spw_xmalloc(2 * (size_t)n * sizeof *ends), *firsts = ends + n;
    part_ends(p->s, n, ends, firsts);
    int r = spw_group_ready(p->g, ends, firsts, n, now);
    if (ends != small)
        spw_free(ends);
    if (!r)
        ask_sync(p->s, n); /* records written since it parked */
    return r;
}

static void *waiter(void *arg)
{
    spw_consume *cs = arg;
    pthread_mutex_lock(&cs->mu);
    for (;;) {
        int stop = cs->stop;
        if (!stop && !cs->commits) {
            if (!cs->parked) {
                pthread_cond_wait(&cs->cv, &cs->mu);
            } else {
                spw_cond_wait_ns(&cs->cv, &cs->mu, SPW_GROUPS_TICK_MS * 1000000u);
            }
            stop = cs->stop;
        }
        atomic_store(&cs->kicked, 0); /* later writes kick again */
        gcommit *commits = cs->commits;
        cs->commits = NULL;
        spw_group_poll *wake = NULL, **pp = &cs->parked;
        int64_t now = now_ms();
        while (*pp) {
            spw_group_poll *p = *pp;
            if (stop || poll_ready(p, now)) {
                *pp = p->next;
                atomic_fetch_sub(&cs->nparked, 1);
                p->next = wake;
                wake = p;
            } else {
                pp = &p->next;
            }
        }
        pthread_mutex_unlock(&cs->mu);
        if (commits)
            finish_commits(cs, commits);
        while (wake) {
            spw_group_poll *p = wake;
            wake = p->next;
            p->post(p->loop, poll_again, p);
        }
        pthread_mutex_lock(&cs->mu);
        if (stop && !cs->commits && !cs->parked)
            break;
    }
    pthread_mutex_unlock(&cs->mu);
    return NULL;
}

/* The log's durable hook: records became visible; parked polls look. */
static void durable_kick(void *arg) { spw_consume_kick(arg); }

typedef struct clamp_ctx {
    spw_consume *cs;
    spw_group **v; /* groups to clamp, walked after the list's lock */
    size_t n, cap;
} clamp_ctx;

static void clamp_collect(void *arg, spw_group *g)
{
    clamp_ctx *x = arg;
    if (x->n == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 16;
        x->v = spw_xrealloc(x->v, x->cap * sizeof *x->v);
    }
    x->v[x->n++] = g;
}

/*
 * Attach: a committed offset past its partition's end points at offsets
 * recovery gave to new records (a power loss cut records a group was
 * shown before reads were limited to durable records, or the log was cut
 * by hand): delivering from there would skip the new records forever.
 * Set it down to the end, loudly, and save the group.
 */
static void clamp_groups(spw_consume *cs)
{
    clamp_ctx x = {.cs = cs};
    spw_groups_each(cs->gs, clamp_collect, &x);
    for (size_t k = 0; k < x.n; k++) {
        spw_group *g = x.v[k];
        const char *sn = spw_group_stream(g);
        spw_stream *s = spw_stream_get(cs->cat, sn, strlen(sn));
        if (!s)
            continue;
        uint32_t n = nparts_of(s, g);
        int changed = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t end = spw_part_open_end(s->parts[i]), old;
            if (!spw_group_clamp(g, i, end, &old))
                continue;
            changed = 1;
            if (cs->clamped)
                atomic_fetch_add(cs->clamped, 1);
            spw_error("group %s of stream %s: partition %" PRIu32 " committed offset %" PRIu64
                      " is past the partition's end %" PRIu64 " (records were lost, and their offsets go to new "
                      "records); the group continues at %" PRIu64,
                      spw_group_name(g), sn, i, old, end, end);
        }
        if (changed) {
            int e = spw_group_save(cs->gs, g);
            if (e < 0)
                spw_error("group %s of stream %s: saving the clamped offsets: %s", spw_group_name(g), sn,
                          spw_strerror(e));
        }
        spw_stream_put(s);
    }
    spw_free(x.v);
}

int spw_consume_start(const char *data_dir, spw_catalog *cat, spw_log *log, _Atomic uint64_t *clamped,
                      spw_consume **out)
{
    spw_consume *cs = spw_xcalloc(1, sizeof *cs);
    cs->cat = cat;
    cs->log = log;
    cs->clamped = clamped;
    int r = spw_groups_open(data_dir, &cs->gs);
    if (r < 0) {
        spw_free(cs);
        return r;
    }
    pthread_mutex_init(&cs->mu, NULL);
    spw_cond_init(&cs->cv); /* the waiter's tick */
    if ((r = pthread_create(&cs->th, NULL, waiter, cs)) == 0)
        spw_thread_name(cs->th, "spw-group-wait");
    else {
        pthread_mutex_destroy(&cs->mu);
        pthread_cond_destroy(&cs->cv);
        spw_groups_close(cs->gs);
        spw_free(cs);
        return -r;
    }
    cs->started = 1;
    if (cat) {
        spw_catalog_set_groups(cat, cs->gs); /* dropped with their stream */
        clamp_groups(cs);
    }
    if (log)
        spw_log_set_durable_hook(log, durable_kick, cs);
    *out = cs;
    return 0;
}

void spw_consume_stop(spw_consume *cs)
{
    if (!cs || !cs->started)
        return;
    /* No more wake-ups from the flusher (the log may be closed before
     * this is freed; parked polls are answered below). */
    if (cs->log)
        spw_log_set_durable_hook(cs->log, NULL, NULL);
    pthread_mutex_lock(&cs->mu);
    cs->stop = 1;
    pthread_cond_signal(&cs->cv);
    pthread_mutex_unlock(&cs->mu);
    pthread_join(cs->th, NULL);
    cs->started = 0;
}

void spw_consume_free(spw_consume *cs)
{
    if (!cs)
        return;
    spw_consume_stop(cs);
    pthread_mutex_destroy(&cs->mu);
    pthread_cond_destroy(&cs->cv);
    if (cs->cat)
        spw_catalog_set_groups(cs->cat, NULL);
    spw_groups_close(cs->gs);
    spw_free(cs);
}

void spw_consume_kick(spw_consume *cs)
{
    if (!cs || !atomic_load_explicit(&cs->nparked, memory_order_relaxed))
        return;
    if (atomic_exchange(&cs->kicked, 1))
        return; /* one signal per waiter round, however many writes */
    pthread_mutex_lock(&cs->mu);
    pthread_cond_signal(&cs->cv);
    pthread_mutex_unlock(&cs->mu);
}

/* ---- metrics ---- */

typedef struct metrics_ctx {
    spw_consume *cs;
    spw_buf *b;
    const spw_token *who;
    int pass; /* 0 committed, 1 lag */
} metrics_ctx;

static void metrics_group(void *arg, spw_group *g)
{
    metrics_ctx *x = arg;
    const char *sn = spw_group_stream(g);
    size_t sl = strlen(sn);
    if (x->who && !spw_token_sees(x->who, sn, sl))
        return;
    spw_stream *s = spw_stream_get(x->cs->cat, sn, sl);
    if (!s)
        return;
    spw_consume_part *v;
    uint32_t n = spw_consume_view(s, g, &v);
    for (uint32_t i = 0; i < n; i++)
        spw_buf_xprintf(x->b, "spillway_group_%s{stream=\"%s\",group=\"%s\",partition=\"%" PRIu32 "\"} %" PRIu64 "\n",
              x->pass == 0 ? "committed_offset" : "lag", sn, spw_group_name(g), i,
              x->pass == 0 ? v[i].info.committed : v[i].lag);
    spw_free(v);
    spw_stream_put(s);
}

void spw_consume_metrics(spw_consume *cs, spw_buf *b, const spw_token *who)
{
    if (!cs)
        return;
    metrics_ctx x = {cs, b, who, 0};
    spw_buf_xprintf(b, "# HELP spillway_group_committed_offset a consumer group's committed offset (next to read)\n"
             "# TYPE spillway_group_committed_offset gauge\n");
    spw_groups_each(cs->gs, metrics_group, &x);
    x.pass = 1;
    spw_buf_xprintf(b, "# HELP spillway_group_lag records after a consumer group's committed offset\n"
             "# TYPE spillway_group_lag gauge\n");
    spw_groups_each(cs->gs, metrics_group, &x);
    spw_buf_xprintf(b,
          "# HELP spillway_group_damaged_skipped_total records consumer groups skipped because they are damaged on "
          "disk\n# TYPE spillway_group_damaged_skipped_total counter\nspillway_group_damaged_skipped_total %" PRIu64
          "\n",
          atomic_load(&cs->skipped));
}
