/*
 * The ack=replicated registry: see replicate.h.
 *
 * One mutex guards everything: the sinks' entries (name, stream,
 * incarnation, committed offsets, whether the target replicates) and the
 * waiters, each on its sink entry's list (checked on that sink's commits)
 * and on one list of all (the timer's). Completed waiters are taken off
 * both lists under the mutex and their callbacks run after it is
 * released, so a callback may call anything, this registry included.
 *
 * A record the sink dead-lettered is not in the replicated target, yet
 * the sink's progress passes it: so every entry keeps the offsets of its
 * last dead letters (a ring of SPW_REPL_DEAD_KEPT), and a waiter whose
 * records the progress covers is answered SPW_REPL_REJECTED, not OK,
 * when one of them is among those offsets (settle). Dead letters are
 * rare (a row the target refuses), so the ring is scanned, not indexed.
 */
#include "svc/replicate.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/hist.h"
#include "core/thread.h"
#include "svc/metrics.h"

#define NAME_MAX_ 129
#define WHY_MAX 400

typedef struct waiter waiter;
typedef struct entry entry;

typedef struct wslot {
    uint32_t partition;
    uint64_t start; /* the request's first record in partition */
    uint64_t end;   /* the offset after the request's last record in partition */
} wslot;

struct waiter {
    waiter *prev, *next;   /* the entry's list */
    waiter *gprev, *gnext; /* all waiters (the timer's); gnext also links completed ones */
    entry *e;
    uint64_t t0_ns, deadline_ns;
    spw_repl_cb cb;
    void *arg;
    int outcome;
    char why[WHY_MAX];
    uint32_t n;
    wslot s[];
};

struct entry {
    char sink[NAME_MAX_];
    char stream[NAME_MAX_];
    uint64_t incarnation;
    int attached;
    char why_not[WHY_MAX]; /* "" = its target replicates */
    uint32_t nparts;
    uint64_t *next;
    waiter *head;
    /* the last dead-lettered records: dead[i % SPW_REPL_DEAD_KEPT] for i < ndead */
    struct {
        uint32_t part;
        uint64_t offset;
    } dead[SPW_REPL_DEAD_KEPT];
    uint64_t ndead;
    void (*kick)(void *arg);
    void *kick_arg;
};

struct spw_repl {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t timer;
    int stop;
    entry **v;
    size_t n, cap;
    waiter *all;
    _Atomic uint64_t waiting, acked, timeouts, unavailable, rejected;
    spw_hist latency; /* fsynced here -> committed by the replica, µs */
};

static entry *find(spw_repl *r, const char *sink)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i]->sink, sink) == 0)
            return r->v[i];
    return NULL;
}

static void unlink_waiter(spw_repl *r, waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else if (w->e)
        w->e->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    if (w->gprev)
        w->gprev->gnext = w->gnext;
    else
        r->all = w->gnext;
    if (w->gnext)
        w->gnext->gprev = w->gprev;
    w->prev = w->next = w->gprev = w->gnext = NULL;
    r->waiting--;
}

/* Takes w off the lists and onto *done, to be called back unlocked. */
static void complete(spw_repl *r, waiter *w, int outcome, const char *why, waiter **done)
{
    unlink_waiter(r, w);
    w->outcome = outcome;
    snprintf(w->why, sizeof w->why, "%s", why ? why : "");
    if (outcome == SPW_REPL_OK) {
        r->acked++;
        spw_hist_add(&r->latency, (spw_mono_ns() - w->t0_ns) / 1000);
    }
    else if (outcome == SPW_REPL_TIMEOUT)
        r->timeouts++;
    else if (outcome == SPW_REPL_UNAVAILABLE)
        r->unavailable++;
    else if (outcome == SPW_REPL_REJECTED)
        r->rejected++;
    w->gnext = *done;
    *done = w;
}

static void run_done(waiter *done)
{
    while (done) {
        waiter *w = done;
        done = w->gnext;
        w->cb(w->arg, w->outcome, w->why[0] ? w->why : NULL);
        spw_free(w);
    }
}

static int covered(const entry *e, const waiter *w)
{
    for (uint32_t i = 0; i < w->n; i++)
        if (w->s[i].partition >= e->nparts || e->next[w->s[i].partition] < w->s[i].end)
            return 0;
    return 1;
}

/* The first of e's kept dead letters among w's records, or -1. */
static int64_t dead_in(const entry *e, const waiter *w)
{
    uint64_t kept = e->ndead < SPW_REPL_DEAD_KEPT ? e->ndead : SPW_REPL_DEAD_KEPT;
    for (uint64_t i = e->ndead - kept; i < e->ndead; i++) {
        uint32_t part = e->dead[i % SPW_REPL_DEAD_KEPT].part;
        uint64_t off = e->dead[i % SPW_REPL_DEAD_KEPT].offset;
        for (uint32_t j = 0; j < w->n; j++)
            if (w->s[j].partition == part && off >= w->s[j].start && off < w->s[j].end)
                return (int64_t)j;
    }
    return -1;
}

/* Under mu: answers w if e's progress covers its records: OK, or
 * REJECTED when one of them was dead-lettered. */
static void settle(spw_repl *r, entry *e, waiter *w, waiter **done)
{
    if (!covered(e, w))
        return;
    if (e->ndead && dead_in(e, w) >= 0) {
        char why[WHY_MAX];
        snprintf(why, sizeof why, "sink %s dead-lettered a record of the request: its target refused it", e->sink);
        complete(r, w, SPW_REPL_REJECTED, why, done);
        return;
    }
    complete(r, w, SPW_REPL_OK, NULL, done);
}

static void *timer_main(void *arg)
{
    spw_repl *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        uint64_t now = spw_mono_ns(), wake = now + 1000000000ull;
        waiter *done = NULL;
        for (waiter *w = r->all, *nx; w; w = nx) {
            nx = w->gnext;
            if (w->deadline_ns <= now)
                complete(r, w, SPW_REPL_TIMEOUT, NULL, &done);
            else if (w->deadline_ns < wake)
                wake = w->deadline_ns;
        }
        if (done) {
            pthread_mutex_unlock(&r->mu);
            run_done(done);
            pthread_mutex_lock(&r->mu);
            continue;
        }
        spw_cond_wait_until(&r->cv, &r->mu, wake);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

spw_repl *spw_repl_new(void)
{
    spw_repl *r = spw_xcalloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    spw_cond_init(&r->cv);
    if (pthread_create(&r->timer, NULL, timer_main, r) != 0) {
        spw_free(r);
        return NULL;
    }
    spw_thread_name(r->timer, "spw-repl-timer");
    return r;
}

void spw_repl_stop(spw_repl *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    int was = r->stop;
    r->stop = 1;
    waiter *done = NULL;
    while (r->all)
        complete(r, r->all, SPW_REPL_STOPPING, "the server is stopping", &done);
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    run_done(done);
    if (!was)
        pthread_join(r->timer, NULL);
}

void spw_repl_free(spw_repl *r)
{
    if (!r)
        return;
    spw_repl_stop(r);
    for (size_t i = 0; i < r->n; i++) {
        spw_free(r->v[i]->next);
        spw_free(r->v[i]);
    }
    spw_free(r->v);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    spw_free(r);
}

/* Answers every waiter of e with outcome (under mu; onto *done). */
static void fail_all(spw_repl *r, entry *e, int outcome, const char *why, waiter **done)
{
    while (e->head)
        complete(r, e->head, outcome, why, done);
}

void spw_repl_attach(spw_repl *r, const char *sink, const char *stream, uint64_t incarnation, uint32_t nparts,
                     const uint64_t *next, const char *why_not, void (*kick)(void *arg), void *kick_arg)
{
    pthread_mutex_lock(&r->mu);
    entry *e = find(r, sink);
    waiter *done = NULL;
    if (!e) {
        if (r->n == r->cap) {
            r->cap = r->cap ? 2 * r->cap : 16;
            r->v = spw_xrealloc(r->v, r->cap * sizeof *r->v);
        }
        e = spw_xcalloc(1, sizeof *e);
        snprintf(e->sink, sizeof e->sink, "%s", sink);
        r->v[r->n++] = e;
    } else if (strcmp(e->stream, stream) != 0 || e->incarnation != incarnation) {
        fail_all(r, e, SPW_REPL_UNAVAILABLE, "the sink now drains another stream", &done);
        e->ndead = 0; /* offsets of another stream */
    }
    snprintf(e->stream, sizeof e->stream, "%s", stream);
    e->incarnation = incarnation;
    snprintf(e->why_not, sizeof e->why_not, "%s", why_not ? why_not : "");
    spw_free(e->next);
    e->next = spw_xcalloc(nparts ? nparts : 1, sizeof *e->next);
    memcpy(e->next, next, nparts * sizeof *next);
    e->nparts = nparts;
    e->attached = 1;
    e->kick = kick;
    e->kick_arg = kick_arg;
    if (e->why_not[0])
        fail_all(r, e, SPW_REPL_UNAVAILABLE, e->why_not, &done);
    else
        for (waiter *w = e->head, *nx; w; w = nx) {
            nx = w->next;
            settle(r, e, w, &done);
        }
    pthread_mutex_unlock(&r->mu);
    run_done(done);
}

void spw_repl_progress(spw_repl *r, const char *sink, uint32_t part, uint64_t next)
{
    pthread_mutex_lock(&r->mu);
    entry *e = find(r, sink);
    waiter *done = NULL;
    if (e && e->attached && part < e->nparts && next > e->next[part]) {
        e->next[part] = next;
        for (waiter *w = e->head, *nx; w; w = nx) {
            nx = w->next;
            settle(r, e, w, &done);
        }
    }
    pthread_mutex_unlock(&r->mu);
    run_done(done);
}

void spw_repl_dead(spw_repl *r, const char *sink, uint32_t part, uint64_t offset, const char *why)
{
    pthread_mutex_lock(&r->mu);
    entry *e = find(r, sink);
    waiter *done = NULL;
    if (e && e->attached && part < e->nparts) {
        e->dead[e->ndead % SPW_REPL_DEAD_KEPT].part = part;
        e->dead[e->ndead % SPW_REPL_DEAD_KEPT].offset = offset;
        e->ndead++;
        char msg[WHY_MAX];
        snprintf(msg, sizeof msg,
                 "sink %s dead-lettered the record at partition %u offset %llu: its target refused it (%s)", e->sink,
                 part, (unsigned long long)offset, why ? why : "rejected");
        for (waiter *w = e->head, *nx; w; w = nx) {
            nx = w->next;
            for (uint32_t j = 0; j < w->n; j++)
                if (w->s[j].partition == part && offset >= w->s[j].start && offset < w->s[j].end) {
                    complete(r, w, SPW_REPL_REJECTED, msg, &done);
                    break;
                }
        }
    }
    pthread_mutex_unlock(&r->mu);
    run_done(done);
}

void spw_repl_detach(spw_repl *r, const char *sink, const char *why)
{
    pthread_mutex_lock(&r->mu);
    entry *e = find(r, sink);
    waiter *done = NULL;
    if (e) {
        e->attached = 0;
        e->kick = NULL;
        fail_all(r, e, SPW_REPL_UNAVAILABLE, why, &done);
    }
    pthread_mutex_unlock(&r->mu);
    run_done(done);
}

/* Under mu: 1 if e can take a replicated request to stream, else 0 and why. */
static int ready_locked(const entry *e, const char *sink, const char *stream, uint64_t incarnation, char *why,
                        size_t cap)
{
    if (!e || !e->attached) {
        snprintf(why, cap,
                 "the stream replicates through sink %s, which does not exist or has not attached to its target yet; "
                 "nothing was appended, retry later",
                 sink);
        return 0;
    }
    if (strcmp(e->stream, stream) != 0 || e->incarnation != incarnation) {
        snprintf(why, cap, "sink %s drains stream %s, not this one; nothing was appended", sink, e->stream);
        return 0;
    }
    if (e->why_not[0]) {
        snprintf(why, cap, "sink %s cannot replicate: %s; nothing was appended", sink, e->why_not);
        return 0;
    }
    return 1;
}

int spw_repl_ready(spw_repl *r, const char *sink, const char *stream, uint64_t incarnation, char *why, size_t cap)
{
    pthread_mutex_lock(&r->mu);
    int ok = !r->stop && ready_locked(find(r, sink), sink, stream, incarnation, why, cap);
    if (r->stop)
        snprintf(why, cap, "the server is stopping");
    pthread_mutex_unlock(&r->mu);
    return ok;
}

void spw_repl_wait(spw_repl *r, const char *sink, const char *stream, uint64_t incarnation, const spw_dd_slot *slots,
                   uint32_t n, uint64_t timeout_ms, spw_repl_cb cb, void *arg)
{
    waiter *w = spw_xcalloc(1, sizeof *w + n * sizeof w->s[0]);
    w->cb = cb;
    w->arg = arg;
    w->n = n;
    for (uint32_t i = 0; i < n; i++)
        w->s[i] = (wslot){.partition = slots[i].partition,
                          .start = slots[i].first_offset,
                          .end = slots[i].first_offset + slots[i].count};
    w->t0_ns = spw_mono_ns();
    w->deadline_ns = w->t0_ns + timeout_ms * 1000000ull;
    pthread_mutex_lock(&r->mu);
    entry *e = find(r, sink);
    waiter *done = NULL;
    char why[WHY_MAX];
    /* on the lists first, so complete() can take it off them */
    w->gnext = r->all;
    if (r->all)
        r->all->gprev = w;
    r->all = w;
    r->waiting++;
    if (r->stop) {
        complete(r, w, SPW_REPL_STOPPING, "the server is stopping", &done);
    } else if (!ready_locked(e, sink, stream, incarnation, why, sizeof why)) {
        complete(r, w, SPW_REPL_UNAVAILABLE, why, &done);
    } else {
        w->e = e;
        w->next = e->head;
        if (e->head)
            e->head->prev = w;
        e->head = w;
        if (covered(e, w)) {
            settle(r, e, w, &done);
        } else {
            pthread_cond_signal(&r->cv); /* the timer may need to wake sooner */
            if (e->kick)
                e->kick(e->kick_arg); /* deliver now, not at the sink's next poll */
        }
    }
    pthread_mutex_unlock(&r->mu);
    run_done(done);
}

void spw_repl_stats_get(spw_repl *r, spw_repl_stats *out)
{
    *out = (spw_repl_stats){.waiting = atomic_load(&r->waiting), .acked = atomic_load(&r->acked),
                            .timeouts = atomic_load(&r->timeouts), .unavailable = atomic_load(&r->unavailable),
                            .rejected = atomic_load(&r->rejected)};
}

/* The counters are changed under mu and read without it (one load each). */
static uint64_t m_waiting(void *a) { return atomic_load(&((spw_repl *)a)->waiting); }
static uint64_t m_acked(void *a) { return atomic_load(&((spw_repl *)a)->acked); }
static uint64_t m_timeouts(void *a) { return atomic_load(&((spw_repl *)a)->timeouts); }
static uint64_t m_unavailable(void *a) { return atomic_load(&((spw_repl *)a)->unavailable); }
static uint64_t m_rejected(void *a) { return atomic_load(&((spw_repl *)a)->rejected); }

void spw_repl_metrics_register(spw_repl *r, spw_metrics *m)
{
    spw_metrics_add_u64(m, "spillway_replicated_waiting", "ack=replicated requests durable here and waiting for their replica",
                        SPW_METRIC_GAUGE, m_waiting, r);
    spw_metrics_add_u64(m, "spillway_replicated_acked_total",
                        "ack=replicated requests answered after their replicate_to sink committed them",
                        SPW_METRIC_COUNTER, m_acked, r);
    spw_metrics_add_u64(m, "spillway_replicated_timeouts_total",
                        "ack=replicated requests answered 504 replication_timeout (durable here, still delivered)",
                        SPW_METRIC_COUNTER, m_timeouts, r);
    spw_metrics_add_u64(m, "spillway_replicated_unavailable_total",
                        "ack=replicated requests answered 503 replication_unavailable after their append (the sink went "
                        "or cannot replicate)",
                        SPW_METRIC_COUNTER, m_unavailable, r);
    spw_metrics_add_u64(m, "spillway_replicated_rejected_total",
                        "ack=replicated requests answered 422 replication_rejected (the sink dead-lettered a record: "
                        "its target refused it)",
                        SPW_METRIC_COUNTER, m_rejected, r);
    spw_metrics_add_hist(m, "spillway_replicated_wait_seconds",
                         "ack=replicated: from durable here to committed by the replica", &r->latency, 1e6);
}
