/*
 * Coalescing: see coalesce.h for what and why.
 *
 * Objects:
 *   creq     one request the coalescer carries: its spw_produce, how
 *            many of its events are unsettled (+1 while a thread still
 *            works on it, so it cannot complete under that thread's feet)
 *   centry   one pending event: a coalbuf node, a copy of key and value,
 *            the budget it holds, and which request and slot it is
 *   cwait    a superseded event waiting for its replacement: one per
 *            supersedable event of a request, in the request (creq.waits)
 *   coal_part one partition: lock, buffer, coalesced batches in the log
 *   bctx     one coalesced batch in the log: its spans (runs of one
 *            request's events), the superseded events waiting on it, and
 *            a reference to the stream
 *
 * A superseded event is settled with its replacement, never before
 * (docs/architecture.md "Coalescing"): it hangs on the entry that replaced
 * it (and moves on with the rest of that entry's waiters if that one is
 * replaced in turn); the entry is written at the highest ack level of its
 * own request and its waiters, and when its batch reaches that level — or
 * fails — the waiters are settled with it, with its error if it failed.
 *
 * Threads: the produce path (I/O loops) queues and, when the partition
 * has no batch in the log, drains inline; the flusher runs batch_cb,
 * which settles the batch's requests (as the normal path's callback
 * does) and passes the batch to the drain thread; the drain thread then
 * counts it done and drains what gathered meanwhile. Locks: a request
 * takes its partitions' locks in ascending order; the drain thread takes
 * one; under them only the log's append (its own lock) is called.
 * Requests complete outside these locks.
 */
#include "svc/coalesce.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/id.h"
#include "core/thread.h"
#include "admit/coalbuf.h"

/* A drain cuts batches at request boundaries past this size. */
#define RUN_MAX_BYTES (4u << 20)

typedef struct creq creq;

typedef struct cwait {
    struct cwait *next;
    creq *q;
} cwait;

struct creq {
    spw_produce *pr;
    _Atomic uint32_t left; /* events not settled, + guards */
    _Atomic uint32_t n_superseded;
    _Atomic uint64_t bytes; /* value bytes written */
    spw_ack ack;
    int own_batch; /* producer id or dedupe key: batches of its own */
    uint64_t producer_id;
    uint32_t producer_seq;
    uint64_t idem_key;
    cwait *waits; /* one per event when its events may be superseded */
    struct creq *next_done;
};

typedef struct centry {
    spw_coalbuf_node node; /* first: a node is its entry */
    creq *q;
    uint32_t idx;  /* the event's index in its request */
    uint32_t slot; /* its partition's slot in q->pr->slots */
    uint32_t value_len;
    uint8_t fsync; /* it or one of its waiters asked for ack fsync */
    int64_t ts;
    uint64_t cost; /* budget bytes it holds */
    cwait *waiters; /* the events it replaced, settled with it */
    uint8_t data[]; /* key bytes, then value bytes */
} centry;

/* What an event holds of the budget: its entry with the key and value
 * copies and a hash-table slot, which also covers its encoded record and
 * its share of a batch header (so a drained batch never needs more than
 * its events hold). */
#define ENTRY_OVERHEAD (sizeof(centry) + 2 * sizeof(void *))
_Static_assert(sizeof(centry) + 2 * sizeof(void *) >= SPW_BATCH_HEADER_LEN, "an entry covers a batch header");

typedef struct coal_part {
    pthread_mutex_t mu;
    spw_coalbuf buf;
    uint32_t inflight; /* coalesced batches in the log, not completed */
} coal_part;

struct spw_coal_stream {
    spw_coalescer *co;
    spw_stream *s; /* not a reference: entries and batches hold those */
    uint32_t nparts;
    _Atomic uint64_t buffered; /* events in this stream's buffers */
    _Atomic uint64_t superseded;
    coal_part parts[];
};

typedef struct span {
    creq *q;
    uint32_t count;
    int at_cb; /* settled by batch_cb (ack written/fsync) */
} span;

typedef struct bctx {
    struct bctx *next;
    spw_coal_stream *cs;
    cwait *waiters; /* superseded events settled by batch_cb (ack written/fsync) */
    uint32_t pi;
    uint32_t nspans;
    span spans[];
} bctx;

struct spw_coalescer {
    spw_coalesce_env env; /* the service parts it writes through */
    uint64_t seed;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* batches to count done, or stop */
    pthread_cond_t idle_cv; /* the drain thread finished a round */
    bctx *done_head, *done_tail;
    int stop;
    _Atomic uint64_t inflight; /* coalesced batches in the log or waiting for the drain thread */
    _Atomic uint64_t superseded, buffered_events, buffered_bytes, batches;
};

static uint64_t entry_cost(const spw_record *v)
{
    return ENTRY_OVERHEAD + (spw_batch_bound(v, 1) - SPW_BATCH_HEADER_LEN);
}

/* ---- settling requests ---- */

static void set_err(creq *q, int err)
{
    int zero = 0;
    atomic_compare_exchange_strong(&q->pr->err, &zero, err);
}

/* k more of q's events (or guards) are settled; the last puts q on *done. */
static void settle(creq *q, uint32_t k, creq **done)
{
    if (k && atomic_fetch_sub(&q->left, k) == k) {
        q->next_done = *done;
        *done = q;
    }
}

/* Settles the superseded events of list w, with error err if not 0. */
static void settle_waiters(cwait *w, int err, creq **done)
{
    while (w) {
        cwait *next = w->next; /* w is its request's: gone once settled */
        if (err)
            set_err(w->q, err);
        settle(w->q, 1, done);
        w = next;
    }
}

/* Completes settled requests. Called with no coalescer lock held. */
static void finish_list(creq *q)
{
    while (q) {
        creq *next = q->next_done;
        spw_produce *pr = q->pr;
        pr->n_superseded = atomic_load(&q->n_superseded);
        pr->bytes = atomic_load(&q->bytes);
        /* Partitions whose every event was superseded are not listed. */
        uint32_t k = 0;
        for (uint32_t i = 0; i < pr->n_slots; i++)
            if (pr->slots[i].count || pr->slots[i].stored)
                pr->slots[k++] = pr->slots[i];
        pr->n_slots = k;
        spw_free(q->waits);
        spw_free(q);
        spw__produce_complete(pr);
        q = next;
    }
}

/* ---- draining ---- */

static void batch_cb(void *arg, int status, const spw_append_result *r);

/*
 * Encodes m entries from n (consecutive in the queue) as one batch and
 * hands it to the log, then frees them. own: the one idempotent request
 * they all belong to, or NULL. REQUIRES: the partition's lock held.
 */
static void flush_run(spw_coal_stream *cs, uint32_t pi, spw_coalbuf_node *n, size_t m, int fsync, creq *own,
                      creq **done)
{
    spw_coalescer *co = cs->co;
    const spw_coalesce_env *env = &co->env;
    coal_part *cp = &cs->parts[pi];
    spw_record *recs = spw_xmalloc(m * sizeof *recs);
    uint64_t *tickets = spw_xmalloc(m * sizeof *tickets);
    centry **ents = spw_xmalloc(m * sizeof *ents);
    uint64_t cost = 0;
    uint32_t nspans = 0;
    cwait *w_cb = NULL, *w_now = NULL; /* waiters settled by batch_cb / once appended */
    for (size_t j = 0; j < m; j++, n = n->next) {
        centry *e = (centry *)n;
        ents[j] = e;
        for (cwait *w = e->waiters, *next; w; w = next) {
            next = w->next;
            cwait **to = w->q->ack == SPW_ACK_NONE ? &w_now : &w_cb;
            w->next = *to;
            *to = w;
        }
        e->waiters = NULL;
        size_t kl = e->node.key_len > 0 ? (size_t)e->node.key_len : 0;
        recs[j] = (spw_record){.key = e->node.key_len >= 0 ? e->data : NULL,
                               .key_len = e->node.key_len,
                               .value = e->data + kl,
                               .value_len = e->value_len,
                               .ts = e->ts};
        tickets[j] = e->q->pr->first_ticket + e->idx;
        cost += e->cost;
        nspans += j == 0 || ents[j - 1]->q != e->q;
    }
    bctx *b = spw_xcalloc(1, sizeof *b + nspans * sizeof(span));
    b->cs = cs;
    b->pi = pi;
    b->nspans = nspans;
    b->waiters = w_cb;
    for (size_t j = 0, k = 0; j < m; j++) {
        if (j && ents[j - 1]->q == ents[j]->q) {
            b->spans[k - 1].count++;
            continue;
        }
        b->spans[k++] = (span){.q = ents[j]->q, .count = 1, .at_cb = ents[j]->q->ack != SPW_ACK_NONE};
    }
    spw_batch_opts o = {.idgen = spw_log_idgen(env->log), .tickets = tickets, .compression = cs->s->cfg.compression};
    if (own) {
        o.producer_id = own->producer_id;
        o.producer_seq = own->producer_seq;
        o.request_count = own->idem_key ? own->pr->n_events : 0;
        o.idem_hash = own->idem_key;
    }
    spw_buf enc = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    int r = spw_batch_encode(&enc, &scratch, recs, (uint32_t)m, &o);
    assert(r != SPW_EINVAL); /* tickets rise: taken under the partition lock, in request order */
    if (r == 0 && enc.len > cost) {
        /* Cannot happen (ENTRY_OVERHEAD covers a header), but never
         * append more than was reserved. */
        r = spw_log_reserve(env->log, enc.len - cost, 1);
        if (r == 0)
            cost = enc.len;
    }
    /* Each request keeps a guard until its slots are filled in below:
     * batch_cb may run on the flusher as soon as the append returns. */
    for (uint32_t k = 0; k < nspans; k++)
        atomic_fetch_add(&b->spans[k].q->left, 1);
    spw_append_result res = {0};
    size_t enc_len = enc.len;
    if (r == 0) {
        spw_part *part = cs->s->parts[pi];
        /* enc's block is given to the log (emptied) unless refused. */
        r = spw_part_append_give(part, &enc, fsync ? SPW_ACK_FSYNC : SPW_ACK_WRITTEN, SPW_APPEND_RESERVED, batch_cb,
                                 b, &res);
        if (r == SPW_EROFS) {
            /* Failed since the request was admitted: answer with what failed it. */
            int f = spw_part_failed(part);
            r = f ? f : r;
        }
    }
    if (r) {
        spw_log_release(env->log, cost);
        for (uint32_t k = 0; k < nspans; k++) {
            set_err(b->spans[k].q, r);
            settle(b->spans[k].q, b->spans[k].count + 1, done);
        }
        settle_waiters(w_cb, r, done);
        settle_waiters(w_now, r, done);
        spw_free(b);
    } else {
        spw_log_release(env->log, cost - enc_len);
        cp->inflight++;
        atomic_fetch_add(&co->inflight, 1);
        atomic_fetch_add(&co->batches, 1);
        /* b holds a stream reference until the drain thread is done with
         * it (the stream, and this state with it, must outlive b). */
        atomic_fetch_add(&cs->s->refs, 1);
        for (size_t j = 0; j < m; j++) {
            centry *e = ents[j];
            spw_produce *pr = e->q->pr;
            spw_produce_part *sl = &pr->slots[e->slot];
            if (sl->count == 0)
                sl->first_offset = res.base_offset + j;
            pr->order[sl->first_event + sl->count++] = e->idx;
            atomic_fetch_add(&e->q->bytes, e->value_len);
        }
        /* The drain thread frees b only after taking this partition's
         * lock, which is held: reading b here is safe. */
        settle_waiters(w_now, 0, done); /* before the spans, as in batch_cb */
        for (uint32_t k = 0; k < nspans; k++)
            settle(b->spans[k].q, 1 + (b->spans[k].at_cb ? 0 : b->spans[k].count), done);
    }
    for (size_t j = 0; j < m; j++)
        spw_free(ents[j]);
    spw_buf_fini(&enc);
    spw_buf_fini(&scratch);
    spw_free(recs);
    spw_free(tickets);
    spw_free(ents);
}

/*
 * Hands everything buffered in partition pi to the log: one batch per
 * run of events that can share one (the same ack class — fsync or not —
 * and no idempotent request mixed with others), cut at request
 * boundaries past RUN_MAX_BYTES. REQUIRES: the partition's lock held.
 */
static void drain(spw_coal_stream *cs, uint32_t pi, creq **done)
{
    spw_coalescer *co = cs->co;
    spw_coalbuf_node *n = spw_coalbuf_take(&cs->parts[pi].buf);
    uint64_t count = 0, bytes = 0;
    for (spw_coalbuf_node *x = n; x; x = x->next) {
        count++;
        bytes += ((centry *)x)->cost;
    }
    atomic_fetch_sub(&cs->buffered, count);
    atomic_fetch_sub(&co->buffered_events, count);
    atomic_fetch_sub(&co->buffered_bytes, bytes);
    while (n) {
        centry *first = (centry *)n;
        creq *own = first->q->own_batch ? first->q : NULL;
        int fsync = first->fsync;
        size_t m = 0;
        uint64_t run = 0;
        spw_coalbuf_node *end = n;
        creq *prev = NULL;
        while (end) {
            centry *e = (centry *)end;
            if (m && (e->fsync != fsync || (own ? e->q != own : e->q->own_batch) ||
                      (e->q != prev && run >= RUN_MAX_BYTES)))
                break;
            m++;
            run += e->cost;
            prev = e->q;
            end = end->next;
        }
        flush_run(cs, pi, n, m, fsync, own, done);
        n = end;
    }
}

/* On the flusher: the batch reached its ack level (or failed). */
static void batch_cb(void *arg, int status, const spw_append_result *r)
{
    (void)r;
    bctx *b = arg;
    spw_coalescer *co = b->cs->co;
    creq *done = NULL;
    /* The waiters first: finish_list completes the last settled first, so
     * a replacement's answer goes out before those of the events it
     * replaced. */
    settle_waiters(b->waiters, status, &done);
    b->waiters = NULL;
    for (uint32_t k = 0; k < b->nspans; k++) {
        if (!b->spans[k].at_cb)
            continue;
        if (status)
            set_err(b->spans[k].q, status);
        settle(b->spans[k].q, b->spans[k].count, &done);
    }
    finish_list(done);
    /* The partition's next drain, and the stream reference, are the
     * drain thread's: neither may happen on the flusher. */
    pthread_mutex_lock(&co->mu);
    b->next = NULL;
    if (co->done_tail)
        co->done_tail->next = b;
    else
        co->done_head = b;
    co->done_tail = b;
    pthread_cond_signal(&co->cv);
    pthread_mutex_unlock(&co->mu);
}

static void *drain_main(void *arg)
{
    spw_coalescer *co = arg;
    pthread_mutex_lock(&co->mu);
    for (;;) {
        while (!co->done_head && !co->stop)
            pthread_cond_wait(&co->cv, &co->mu);
        if (!co->done_head)
            break;
        bctx *b = co->done_head;
        co->done_head = co->done_tail = NULL;
        pthread_mutex_unlock(&co->mu);
        while (b) {
            bctx *next = b->next;
            spw_coal_stream *cs = b->cs;
            coal_part *cp = &cs->parts[b->pi];
            creq *done = NULL;
            pthread_mutex_lock(&cp->mu);
            cp->inflight--;
            if (cp->inflight == 0 && cp->buf.len)
                drain(cs, b->pi, &done);
            pthread_mutex_unlock(&cp->mu);
            finish_list(done);
            spw_stream *s = cs->s;
            spw_free(b);
            atomic_fetch_sub(&co->inflight, 1);
            spw_stream_put(s); /* may free the stream and cs: touch neither after */
            b = next;
        }
        pthread_mutex_lock(&co->mu);
        pthread_cond_broadcast(&co->idle_cv);
    }
    pthread_mutex_unlock(&co->mu);
    return NULL;
}

/* ---- the produce path ---- */

static spw_coal_stream *stream_state(spw_coalescer *co, spw_stream *s)
{
    spw_coal_stream *cs = atomic_load(&s->coal);
    if (cs)
        return cs;
    uint32_t P = s->cfg.partitions;
    spw_coal_stream *n = spw_xcalloc(1, sizeof *n + P * sizeof(coal_part));
    n->co = co;
    n->s = s;
    n->nparts = P;
    for (uint32_t i = 0; i < P; i++) {
        pthread_mutex_init(&n->parts[i].mu, NULL);
        spw_coalbuf_init(&n->parts[i].buf, co->seed ^ (s->uid * 0x9e3779b97f4a7c15ull) ^ i);
    }
    if (atomic_compare_exchange_strong(&s->coal, &cs, n))
        return n;
    spw_coal_stream_free(n);
    return cs; /* another thread made it first */
}

int spw_coalesce_produce(spw_coalescer *co, spw_produce *pr, const spw_record *in, const spw_produce_opts *po)
{
    const spw_coalesce_env *env = &co->env;
    spw_stream *s = pr->s;
    spw_coal_stream *cs = atomic_load(&s->coal);
    if (spw_pressure_level(env->pressure) < 1 && (!cs || atomic_load(&cs->buffered) == 0))
        return SPW_COALESCE_DIRECT;
    cs = stream_state(co, s);
    uint32_t n = pr->n_events;

    /* Completing a request a crash cut: as spw_produce_submit_ex. */
    if (po->stored) {
        pr->ids_unknown = 1;
        for (uint32_t k = 0; k < pr->n_slots; k++)
            for (uint32_t j = 0; j < po->stored->nslots; j++)
                if (po->stored->slots[j].partition == pr->slots[k].partition) {
                    pr->slots[k].stored = 1;
                    pr->slots[k].first_offset = po->stored->slots[j].first_offset;
                }
    }
    /* The budget, and the disk checks of the normal path. */
    uint64_t total = 0;
    for (uint32_t k = 0; k < pr->n_slots; k++) {
        spw_produce_part *sl = &pr->slots[k];
        for (uint32_t j = 0; !sl->stored && j < sl->count; j++) {
            const spw_record *v = &in[pr->order[sl->first_event + j]];
            assert(v->header_count == 0); /* the front ends send none; entries do not keep them */
            total += entry_cost(v);
        }
    }
    int r = 0, rej = SPW_REJ_DISK;
    if (env->max_disk_bytes &&
        spw_log_disk_bytes(env->log) + spw_log_pending_bytes(env->log) + total > env->max_disk_bytes)
        r = SPW_EDISKLIMIT;
    for (uint32_t k = 0; r == 0 && k < pr->n_slots; k++) {
        int f = pr->slots[k].stored ? 0 : spw_part_failed(s->parts[pr->slots[k].partition]);
        if (f)
            r = f;
    }
    if (r == 0 && (r = spw_log_reserve(env->log, total, 1))) {
        rej = r == SPW_EAGAIN ? SPW_REJ_BACKPRESSURE : SPW_REJ_INVALID;
        if (r == SPW_EAGAIN)
            spw_pressure_note_full(env->pressure);
    }
    if (r) {
        atomic_fetch_add(&env->rejected[rej], 1);
        atomic_fetch_add(&s->rejected[rej], 1);
        return r;
    }

    creq *q = spw_xcalloc(1, sizeof *q);
    q->pr = pr;
    q->ack = po->ack;
    q->own_batch = po->producer_id || po->idem_key;
    q->producer_id = po->producer_id;
    q->producer_seq = po->producer_seq;
    q->idem_key = po->idem_key;
    atomic_init(&q->left, n + 1); /* + our guard */
    int sup = po->supersede_ok && !q->own_batch;
    if (sup) {
        pr->superseded = spw_xcalloc(n, 1);
        q->waits = spw_xcalloc(n, sizeof *q->waits);
    }
    pr->dd = po->dd;
    atomic_fetch_add(&s->requests_in, 1);

    /* The entries, before any lock. Slot counts restart at 0: the drain
     * counts the events it writes. */
    centry **ents = spw_xmalloc(n * sizeof *ents);
    uint32_t ne = 0, stored = 0;
    for (uint32_t k = 0; k < pr->n_slots; k++) {
        spw_produce_part *sl = &pr->slots[k];
        if (sl->stored) {
            stored += sl->count;
            continue;
        }
        for (uint32_t j = 0; j < sl->count; j++) {
            uint32_t e = pr->order[sl->first_event + j];
            const spw_record *v = &in[e];
            size_t kl = v->key_len > 0 ? (size_t)v->key_len : 0;
            centry *c = spw_xmalloc(sizeof *c + kl + v->value_len);
            memset(c, 0, sizeof *c);
            if (kl)
                memcpy(c->data, v->key, kl);
            if (v->value_len)
                memcpy(c->data + kl, v->value, v->value_len);
            c->node.key = c->data;
            c->node.key_len = v->key_len < 0 ? -1 : v->key_len;
            c->node.supersedable = (uint8_t)sup;
            c->q = q;
            c->idx = e;
            c->slot = k;
            c->value_len = v->value_len;
            c->fsync = q->ack == SPW_ACK_FSYNC;
            c->ts = v->ts;
            c->cost = entry_cost(v);
            ents[ne++] = c;
        }
        sl->count = 0;
    }

    /* Lock the partitions (slots are in ascending partition order), take
     * the ids, queue, and drain the partitions that have no batch in the
     * log. The ids are taken under the locks so that every partition's
     * queue holds rising tickets. */
    for (uint32_t k = 0; k < pr->n_slots; k++)
        if (!pr->slots[k].stored)
            pthread_mutex_lock(&cs->parts[pr->slots[k].partition].mu);
    pr->first_ticket = spw_idgen_reserve(spw_log_idgen(env->log), n);
    atomic_fetch_add(&cs->buffered, ne);
    atomic_fetch_add(&co->buffered_events, ne);
    atomic_fetch_add(&co->buffered_bytes, total);
    spw_coalbuf_node *gone = NULL;
    uint64_t ngone = 0, gone_bytes = 0;
    for (uint32_t i = 0; i < ne; i++) {
        coal_part *cp = &cs->parts[pr->slots[ents[i]->slot].partition];
        spw_coalbuf_node *old = spw_coalbuf_put(&cp->buf, &ents[i]->node);
        if (old) {
            /* The replaced event waits on its replacement, and so do the
             * events it had replaced; the replacement is written at the
             * highest ack level among them. */
            centry *o = (centry *)old;
            cwait *w = &o->q->waits[o->idx];
            w->q = o->q;
            w->next = o->waiters;
            o->waiters = NULL;
            ents[i]->waiters = w;
            ents[i]->fsync |= o->fsync;
            /* Marked and counted here, under the lock: the replacement's
             * batch may settle o's request on the flusher before the lock
             * is let go. */
            o->q->pr->superseded[o->idx] = 1;
            atomic_fetch_add(&o->q->n_superseded, 1);
            atomic_fetch_add(&cs->superseded, 1);
            atomic_fetch_add(&co->superseded, 1);
            old->next = gone;
            gone = old;
            ngone++;
            gone_bytes += ((centry *)old)->cost;
        }
    }
    atomic_fetch_sub(&cs->buffered, ngone);
    atomic_fetch_sub(&co->buffered_events, ngone);
    atomic_fetch_sub(&co->buffered_bytes, gone_bytes);
    creq *done = NULL;
    for (uint32_t k = pr->n_slots; k-- > 0;) {
        spw_produce_part *sl = &pr->slots[k];
        if (sl->stored)
            continue;
        coal_part *cp = &cs->parts[sl->partition];
        if (cp->inflight == 0 && cp->buf.len)
            drain(cs, sl->partition, &done);
        pthread_mutex_unlock(&cp->mu);
    }
    spw_free(ents);

    /* The replaced events: their requests learn it, their budget returns;
     * they are settled with their replacements (flush_run, batch_cb). */
    while (gone) {
        centry *e = (centry *)gone;
        gone = gone->next;
        spw_log_release(env->log, e->cost);
        spw_free(e);
    }
    settle(q, 1 + stored, &done);
    finish_list(done);
    return 0;
}

/* ---- lifecycle and stats ---- */

spw_coalescer *spw_coalesce_new(const spw_coalesce_env *env)
{
    spw_coalescer *co = spw_xcalloc(1, sizeof *co);
    co->env = *env;
    spw_catalog_set_coal_free(env->cat, spw_coal_stream_free);
    if (getrandom(&co->seed, sizeof co->seed, GRND_NONBLOCK) != (ssize_t)sizeof co->seed)
        co->seed = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)co;
    pthread_mutex_init(&co->mu, NULL);
    pthread_cond_init(&co->cv, NULL);
    spw_cond_init(&co->idle_cv);
    if (pthread_create(&co->th, NULL, drain_main, co))
        abort(); /* like the log's threads: no server without it */
    spw_thread_name(co->th, "spw-coalesce");
    return co;
}

void spw_coalesce_close(spw_coalescer *co)
{
    if (!co)
        return;
    pthread_mutex_lock(&co->mu);
    /* Every buffered event is drained once its partition's batch in the
     * log completes; wait for the last of them (as long as the log takes). */
    while (atomic_load(&co->inflight) || atomic_load(&co->buffered_events)) {
        spw_cond_wait_ns(&co->idle_cv, &co->mu, 100 * 1000000u);
    }
    co->stop = 1;
    pthread_cond_signal(&co->cv);
    pthread_mutex_unlock(&co->mu);
    pthread_join(co->th, NULL);
    pthread_cond_destroy(&co->cv);
    pthread_cond_destroy(&co->idle_cv);
    pthread_mutex_destroy(&co->mu);
    spw_free(co);
}

void spw_coal_stream_free(spw_coal_stream *cs)
{
    if (!cs)
        return;
    for (uint32_t i = 0; i < cs->nparts; i++) {
        assert(cs->parts[i].inflight == 0);
        spw_coalbuf_fini(&cs->parts[i].buf);
        pthread_mutex_destroy(&cs->parts[i].mu);
    }
    spw_free(cs);
}

uint64_t spw_coalesce_stream_superseded(spw_stream *s)
{
    spw_coal_stream *cs = atomic_load(&s->coal);
    return cs ? atomic_load(&cs->superseded) : 0;
}

void spw_coalesce_stats_get(spw_coalescer *co, spw_coalesce_stats *st)
{
    st->superseded = atomic_load(&co->superseded);
    st->buffered_events = atomic_load(&co->buffered_events);
    st->buffered_bytes = atomic_load(&co->buffered_bytes);
    st->batches = atomic_load(&co->batches);
}
