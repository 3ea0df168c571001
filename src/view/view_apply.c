/*
 * A view's apply thread (view.h has the design). Its cycle:
 *
 *   1. read: from each partition's next offset, records with the record
 *      cursor (durable records only), up to the durable end or a bound
 *      (VIEW_BATCH_RECORDS records, VIEW_BATCH_ENTRIES fold entries,
 *      VIEW_BATCH_BYTES of latest values);
 *      a damaged range is skipped to the cursor's resume offset and its
 *      size counted (skipped_damaged); a record the view cannot use (no
 *      key, no group_by value, no number at field, a value that is not
 *      JSON) is counted in skipped_invalid;
 *   2. fold: each record changes an in-memory table of store entries
 *      (a pre-aggregation: N records of one key in a batch are one entry
 *      per window level); an aggregate's buckets up to the page level
 *      are sub-buckets of one page entry per key and page (a key with
 *      records all over an hour is one entry, not one per bucket), and
 *      the windows above the page level are rolled up from the pages at
 *      the end of the fold (docs/formats/view.md);
 *   3. commit: each entry becomes one merge operand (the store's merge
 *      operator combines it with what is stored; a key's entry is read
 *      first only to count a new key) in one WriteBatch, with the meta
 *      entry (every partition's next offset and watermark, the counters)
 *      — one rocksdb_write with the WAL off;
 *   4. every flush interval (view-flush-interval) with something
 *      written: a flush, after which the retention holds move up to the
 *      flushed offsets.
 *
 * While the view catches up, steps 3 and 4 of batch N run on the view's
 * commit thread while the apply thread does 1 and 2 of batch N+1 ("the
 * pipeline" below has the rules).
 *
 * Late records (aggregate): a record whose smallest window ended, with
 * grace, at or before its partition's watermark (the highest time that
 * partition applied before it) is counted in late and in the key's
 * all-time totals, and in no window (docs/api.md "Views").
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/id.h"
#include "core/invariant.h"
#include "core/msg.h"
#include "core/thread.h"
#include "view/view_int.h"

#define VIEW_BATCH_BYTES (64u << 20) /* value bytes folded into one batch at most */

_Atomic uint32_t spw__view_batch_records;

/* ---- commit ---- */

/* Entries in store-key order: the reads and the batch's inserts then walk
 * the memtable and the tables in order. Sorted by the keys' first 24 bytes
 * as three big-endian integers, whole keys compared only on a tie. */
typedef struct okey {
    uint64_t a, b, c; /* key bytes 0-7, 8-15, 16-23, big-endian (zeros past the end) */
    uint32_t i;
} okey;

static uint64_t be8(const uint8_t *k, size_t n)
{
    uint64_t v = 0;
    for (size_t j = 0; j < 8; j++)
        v = v << 8 | (j < n ? k[j] : 0);
    return v;
}

static int okey_cmp(const fold *f, const okey *x, const okey *y)
{
    if (x->a != y->a)
        return x->a < y->a ? -1 : 1;
    if (x->b != y->b)
        return x->b < y->b ? -1 : 1;
    if (x->c != y->c)
        return x->c < y->c ? -1 : 1;
    const fent *ex = &f->e[x->i], *ey = &f->e[y->i];
    size_t n = ex->klen < ey->klen ? ex->klen : ey->klen;
    int c = memcmp(f->arena.p + ex->koff, f->arena.p + ey->koff, n);
    return c ? c : (ex->klen > ey->klen) - (ex->klen < ey->klen);
}

static void okey_sort(const fold *f, okey *v, size_t n)
{
    while (n > 16) {
        okey *m = &v[n / 2], *l = &v[n - 1], t;
        if (okey_cmp(f, m, v) < 0)
            t = *m, *m = *v, *v = t;
        if (okey_cmp(f, l, v) < 0)
            t = *l, *l = *v, *v = t;
        if (okey_cmp(f, l, m) < 0)
            t = *l, *l = *m, *m = t;
        okey pv = *m;
        size_t i = 0, j = n - 1;
        for (;;) {
            while (okey_cmp(f, &v[i], &pv) < 0)
                i++;
            while (okey_cmp(f, &pv, &v[j]) < 0)
                j--;
            if (i >= j)
                break;
            t = v[i], v[i] = v[j], v[j] = t;
            i++, j--;
        }
        /* [0, j] <= pivot <= [j + 1, n): the smaller side recursively */
        size_t left = j + 1;
        if (left < n - left) {
            okey_sort(f, v, left);
            v += left;
            n -= left;
        } else {
            okey_sort(f, v + left, n - left);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        okey x = v[i];
        size_t j = i;
        for (; j > 0 && okey_cmp(f, &x, &v[j - 1]) < 0; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}


#define READ_CHUNK 512
#define COMMIT_AHEAD 4 /* entries: a page's sub-buckets are prefetched this far before its value is made */

/* The operand of entry e (its store key k) into val: a latest record, a
 * page's sub-buckets, or an aggregate. */
static void operand(const view_def *d, const fold *f, const fent *e, const uint8_t *k, const uint64_t *subs,
                    spw_buf *val)
{
    val->len = 0;
    if (k[0] == VIEW_P_PAGE) {
        spw__view_page_value(d, f, e, subs, val);
    } else if (k[0] == VIEW_P_LATEST) {
        uint8_t h[28];
        memcpy(h, &e->part, 4);
        memcpy(h + 4, &e->offset, 8);
        memcpy(h + 12, &e->id, 8);
        memcpy(h + 20, &e->ts, 8);
        if (spw_buf_put(val, h, sizeof h) || spw_buf_put(val, f->arena.p + e->voff, e->vlen))
            abort();
    } else {
        if (spw_buf_reserve(val, VIEW_AGG_LEN))
            abort();
        spw__view_agg_encode(&e->agg, val->p);
        val->len = VIEW_AGG_LEN;
    }
}

/* One batch on its way to the store: the fold, the meta the store holds
 * once it commits, and what the apply thread does with the answer
 * (finish). Filled by the apply thread; committed by it or, while the
 * view catches up, by its commit thread (the pipeline below). */
typedef struct batch_job {
    fold *f;
    view_meta before; /* the meta before the batch: the apply thread's again if it fails */
    view_meta mt;     /* after it (its keys counted by commit) */
    uint64_t end[SPW_STREAM_PARTITIONS_MAX]; /* partition ends seen by its cycle */
    uint32_t np;
    int all_done;
    spw_buf val, mb;
    int flush; /* flush the store after the batch (the flush interval passed) */
    /* commit's answer */
    int r;
    uint64_t writes;
    uint32_t *fresh, nfresh; /* entries whose keys were new to the store (in freshb) */
    /* commit's scratch, kept from batch to batch while the view catches
     * up (a large batch's: megabytes, faulted in again if allocated anew
     * each time); freed by job_scratch_free when it is caught up */
    spw_buf ordb, freshb, pstartb, psubsb;
    rocksdb_writebatch_t *wb; /* cleared for each batch: its buffer stays */
    size_t wb_bytes;          /* the last batch's size */
    int flushed;             /* a flush of the store as the batch left it was asked for (not waited for) */
} batch_job;

/* Flushes the store's memtables (wait: and waits for the flush; else the
 * memtable becomes immutable now and is written in the background): 0
 * or -EIO. Changes nothing of v. */
static int flush_db(spw_view *v, int wait)
{
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, wait);
    char *e = NULL;
    rocksdb_flush(v->db, fo, &e);
    rocksdb_flushoptions_destroy(fo);
    if (e) {
        spw_error("view %s: flushing its store: %s", v->def.name, e);
        rocksdb_free(e);
        return -EIO;
    }
    return 0;
}

/*
 * Every entry of the fold becomes one merge operand (the store's merge
 * operator, view_store.c, combines it with what is there): no entry is
 * read to be written. A key's own entry ('L', 'S', 'A') is read only when
 * the apply thread does not know it to be in the store (v->known), to
 * count new keys (into j->mt.keys); reads go in key order, READ_CHUNK at
 * a time. Changes nothing of v but its store: it runs on the commit
 * thread while the apply thread folds the next batch, which touches
 * neither v->known nor the store until finish.
 */
/* Room for n items of size sz in b (its contents dropped). */
static void *scratch(spw_buf *b, size_t n, size_t sz)
{
    b->len = 0;
    if (spw_buf_reserve(b, (n ? n : 1) * sz))
        abort();
    return b->p;
}

static void job_scratch_free(batch_job *j)
{
    spw_buf_fini(&j->ordb);
    spw_buf_fini(&j->freshb);
    spw_buf_fini(&j->pstartb);
    spw_buf_fini(&j->psubsb);
    if (j->wb)
        rocksdb_writebatch_destroy(j->wb);
    j->wb = NULL;
}

static void commit(spw_view *v, batch_job *j)
{
    fold *f = j->f;
    if (!j->wb)
        j->wb = rocksdb_writebatch_create();
    rocksdb_writebatch_t *wb = j->wb;
    rocksdb_writebatch_clear(wb);
    uint64_t writes = 0;
    int r = 0;
    okey *ord = scratch(&j->ordb, f->n, sizeof *ord);
    uint32_t *fresh = scratch(&j->freshb, f->n, sizeof *fresh), nfresh = 0;
    for (uint32_t i = 0; i < f->n; i++) {
        const uint8_t *k = f->arena.p + f->e[i].koff;
        uint32_t kl = f->e[i].klen;
        ord[i] = (okey){be8(k, kl), kl > 8 ? be8(k + 8, kl - 8) : 0, kl > 16 ? be8(k + 16, kl - 16) : 0, i};
    }
    okey_sort(f, ord, f->n);
    for (uint32_t i = 1; i < f->n; i++) /* the store keys are distinct */
        SPW_ASSERT(okey_cmp(f, &ord[i - 1], &ord[i]) < 0);
    /* the pages' sub-buckets side by side; a page's are prefetched a few
     * entries before its value is made (their loads overlap) */
    uint32_t *pstart = NULL;
    uint64_t *psubs = NULL;
    if (f->nsub) {
        pstart = scratch(&j->pstartb, f->n, sizeof *pstart);
        psubs = scratch(&j->psubsb, f->nsub, sizeof *psubs);
        spw__view_page_order(f, pstart, psubs);
    }
    const char *keys[READ_CHUNK];
    size_t klens[READ_CHUNK], vlens[READ_CHUNK];
    char *vals[READ_CHUNK], *errs[READ_CHUNK];
    for (uint32_t i = 0; i < f->n && r == 0;) {
        uint32_t nk = 0;
        for (; i < f->n && nk < READ_CHUNK; i++) {
            fent *e = &f->e[ord[i].i];
            const uint8_t *k = f->arena.p + e->koff;
            if (psubs && i + COMMIT_AHEAD < f->n) {
                uint32_t a = ord[i + COMMIT_AHEAD].i;
                for (uint32_t x = 0; x < f->e[a].nsubs; x++) {
                    const fbkt *b = &f->sub[(uint32_t)psubs[pstart[a] + x]];
                    __builtin_prefetch(b);
                    __builtin_prefetch((const char *)b + 64);
                }
            }
            if (k[0] != VIEW_P_BUCKET && k[0] != VIEW_P_PAGE && !spw__view_kset_has(&v->known, k, e->klen)) {
                keys[nk] = (const char *)k;
                klens[nk++] = e->klen;
                fresh[nfresh++] = ord[i].i;
            }
            operand(&v->def, f, e, k, psubs ? psubs + pstart[ord[i].i] : NULL, &j->val);
            rocksdb_writebatch_merge(wb, (const char *)k, e->klen, (const char *)j->val.p, j->val.len);
            writes++;
        }
        if (!nk)
            continue;
        rocksdb_multi_get(v->db, v->ro, nk, keys, klens, vals, vlens, errs);
        for (uint32_t x = 0; x < nk; x++) {
            if (errs[x]) {
                spw_error("view %s: store read: %s", v->def.name, errs[x]);
                rocksdb_free(errs[x]);
                r = -EIO;
            }
            if (vals[x])
                rocksdb_free(vals[x]);
            else if (!errs[x])
                j->mt.keys++; /* a new key */
        }
    }
    if (r == 0) {
        spw__view_meta_encode(&j->mt, &j->mb);
        rocksdb_writebatch_put(wb, VIEW_META_KEY, VIEW_META_KEY_LEN, (const char *)j->mb.p, j->mb.len);
        char *e = NULL;
        rocksdb_write(v->db, v->wo, wb, &e);
        if (e) {
            spw_error("view %s: writing its store: %s", v->def.name, e);
            rocksdb_free(e);
            r = -EIO;
        }
    }
    size_t wbl = 0;
    rocksdb_writebatch_data(wb, &wbl);
    j->wb_bytes = wbl;
    rocksdb_writebatch_clear(wb);
    j->r = r;
    j->writes = writes;
    j->fresh = fresh;
    j->nfresh = nfresh;
    j->flushed = 0;
    if (r == 0 && j->flush) /* the store as this batch left it: on disk soon (flush_done says when) */
        j->flushed = flush_db(v, 0) == 0;
}

/* ---- holds, attach ---- */

static void set_error(spw_view *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(spw_view *v, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&v->mu);
    va_start(ap, fmt);
    vsnprintf(v->last_error, sizeof v->last_error, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&v->mu);
}

static void release_holds(spw_view *v)
{
    for (uint32_t i = 0; i < SPW_STREAM_PARTITIONS_MAX; i++)
        if (v->holds[i]) {
            spw_hold_release(v->holds[i]);
            v->holds[i] = NULL;
        }
}

/* A hold at *pos, moved up to the partition's start if retention passed it. */
static int take_hold(spw_part *p, uint64_t *pos, spw_hold **h)
{
    for (int tries = 0; tries < 100; tries++) {
        spw_part_state st;
        spw_part_state_get(p, &st);
        if (*pos < st.start_offset)
            *pos = st.start_offset;
        int r = *h ? spw_hold_move(*h, *pos) : spw_part_hold(p, *pos, h);
        if (r != SPW_ERANGE)
            return r;
    }
    return SPW_ERANGE;
}

static void publish(spw_view *v, int state)
{
    pthread_mutex_lock(&v->mu);
    v->shown = v->meta;
    if (state >= 0)
        v->state = state;
    pthread_mutex_unlock(&v->mu);
}

static void detach(spw_view *v)
{
    v->fl_pending = 0; /* its offsets are of the stream let go */
    release_holds(v);
    if (v->s)
        spw_stream_put(v->s);
    v->s = NULL;
}

/* Attaches to the stream: 0, -ENOENT (no stream yet) or an error. */
static int attach(spw_view *v)
{
    spw_stream *s = spw_stream_get(v->m->cat, v->def.stream, strlen(v->def.stream));
    if (!s)
        return -ENOENT;
    if (atomic_load(&s->deleted)) {
        spw_stream_put(s);
        return -ENOENT;
    }
    char err[300];
    int found;
    view_meta mt;
    spw_buf raw = SPW_BUF_INIT;
    int version = spw__view_store_get(v, NULL, VIEW_META_KEY, VIEW_META_KEY_LEN, &raw) == 1 && raw.len ? raw.p[0] : -1;
    spw_buf_fini(&raw);
    int r = spw__view_store_read_meta(v, &mt, &found);
    if (r < 0 || (found && (mt.incarnation != s->incarnation || mt.nparts != s->cfg.partitions))) {
        if (r < 0 && version >= 1 && version < VIEW_META_VERSION)
            spw_warn("view %s: its store has the format of version %d (this build reads version %d); rebuilding it "
                     "from the log",
                     v->def.name, version, VIEW_META_VERSION);
        else if (r < 0)
            spw_error("view %s: its store's meta entry is damaged; rebuilding it from the log", v->def.name);
        else
            spw_warn("view %s: its store belongs to an earlier stream %s; rebuilding it from the log", v->def.name,
                     v->def.stream);
        spw__view_meta_reset(&mt, s->incarnation, s->cfg.partitions);
        if ((r = spw__view_store_wipe(v, &mt, err, sizeof err)) < 0) {
            spw_stream_put(s);
            set_error(v, "%s", err);
            return r;
        }
        found = 0;
    }
    if (!found)
        spw__view_meta_reset(&mt, s->incarnation, s->cfg.partitions);
    v->meta = mt;
    spw__view_kset_clear(&v->known);
    v->s = s;
    for (uint32_t i = 0; i < mt.nparts; i++) {
        uint64_t pos = mt.next[i];
        spw_part_state st;
        spw_part_state_get(s->parts[i], &st);
        if (pos > st.next_offset) {
            /* the log lost records the store had applied (a power cut with
             * data the disk did not keep): apply what takes their offsets */
            spw_warn("view %s: partition %u: applied up to %" PRIu64 " but the log ends at %" PRIu64
                     "; continuing at its end",
                     v->def.name, i, pos, st.next_offset);
            pos = v->meta.next[i] = st.next_offset;
        }
        r = take_hold(s->parts[i], &pos, &v->holds[i]);
        if (r < 0) {
            detach(v);
            return r;
        }
        v->flushed[i] = pos;
    }
    publish(v, VS_CATCHING_UP);
    return 0;
}

static void move_holds(spw_view *v, const uint64_t *next, uint32_t nparts)
{
    for (uint32_t i = 0; i < nparts; i++) {
        uint64_t pos = next[i];
        if (pos > v->flushed[i] && take_hold(v->s->parts[i], &pos, &v->holds[i]) == 0)
            v->flushed[i] = pos;
    }
}

/* A flush of the store holding mt was asked for (done: and waited for):
 * the memtable is a new one, empty; the retention holds move up to mt's
 * offsets once that flush is on disk (now if done, else flush_done). */
static void flushed(spw_view *v, const view_meta *mt, int done)
{
    atomic_fetch_add(&v->flushes, 1);
    v->dirty = 0;
    spw__view_store_chain(v, 0); /* the memtable is empty: no chain there (a failure leaves the bound on) */
    v->last_flush_ms = spw_mono_ms();
    if (done) {
        move_holds(v, mt->next, mt->nparts);
        v->fl_pending = 0; /* mt is at or past what it waited for */
        return;
    }
    memcpy(v->fl_next, mt->next, mt->nparts * sizeof *mt->next);
    v->fl_nparts = mt->nparts;
    v->fl_pending = 1;
}

/* A flush asked for without waiting is on disk once the store has no
 * immutable memtable left (every memtable switched before now written):
 * then the holds move up to the offsets it covers. */
static void flush_done(spw_view *v)
{
    uint64_t imm = 1;
    if (v->fl_pending && v->db && v->s &&
        rocksdb_property_int(v->db, "rocksdb.num-immutable-mem-table", &imm) == 0 && imm == 0) {
        move_holds(v, v->fl_next, v->fl_nparts);
        v->fl_pending = 0;
    }
}

static int flush_store(spw_view *v)
{
    int r = flush_db(v, 1);
    if (r == 0)
        flushed(v, &v->meta, 1);
    return r;
}

/* ---- waiters ---- */

static int satisfied(const view_meta *mt, const spw_view_min *min, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (min[i].partition >= mt->nparts || mt->next[min[i].partition] <= min[i].offset)
            return 0;
    return 1;
}

/* Answers the waiters that are satisfied (1) or past their deadline (0),
 * or, with all, every waiter with all_r. */
static void kick_waiters(spw_view *v, int all, int all_r)
{
    view_waiter *done = NULL;
    uint64_t now = spw_mono_ms();
    pthread_mutex_lock(&v->mu);
    view_waiter **pp = &v->waiters;
    while (*pp) {
        view_waiter *w = *pp;
        int r = all ? all_r : satisfied(&v->shown, w->min, w->n) ? 1 : now >= w->deadline_ms ? 0 : -1;
        if (r < 0) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        w->next = done;
        w->r = r;
        done = w;
    }
    pthread_mutex_unlock(&v->mu);
    while (done) {
        view_waiter *w = done;
        done = w->next;
        w->done(w->arg, w->r);
        spw_free(w->min);
        spw_free(w);
    }
}

/* ---- the pipeline ---- */

/*
 * While a view catches up (a cycle ends with its batch full), the apply
 * thread hands each batch to the view's commit thread and folds the next
 * one into the other fold table meanwhile: the read and fold of batch
 * N+1 on one core, the WriteBatch of batch N and its rocksdb_write on
 * the other. At most one batch is in flight, and the apply thread takes
 * its answer (drain, then finish) before it submits the next: batches
 * commit in order, each with its own offsets (one WriteBatch), and
 * everything the commit reads (v->known, the store) or the answer
 * changes (v->known, v->shown, counters) is the apply thread's again
 * when finish runs. A failed commit puts the apply thread's meta back at
 * the batch's start and drops the batch folded meanwhile: the next cycle
 * reads both again. Everything else the apply thread does — flush,
 * forward, attach, rebuild, stop, an idle nap — comes after a drain, so
 * it sees the store as committed. A cycle that ends caught up commits on
 * the apply thread itself (a live view's small batches gain nothing from
 * a hand-off).
 */
typedef struct apply_ctx {
    spw_view *v;
    fold f[2];
    int cur;  /* the fold the next cycle fills */
    int busy; /* job submitted, not finished */
    batch_job job;
    pthread_t th;
    int started;
    pthread_mutex_t mu; /* guards pending, done, quit */
    pthread_cond_t cv;
    int pending, done, quit;
} apply_ctx;

static void *commit_thread(void *arg)
{
    apply_ctx *ax = arg;
    rocksdb_set_perf_level(rocksdb_disable); /* as on the apply thread */
    pthread_mutex_lock(&ax->mu);
    for (;;) {
        while (!ax->pending && !ax->quit)
            pthread_cond_wait(&ax->cv, &ax->mu);
        if (!ax->pending)
            break;
        pthread_mutex_unlock(&ax->mu);
        commit(ax->v, &ax->job);
        pthread_mutex_lock(&ax->mu);
        ax->pending = 0;
        ax->done = 1;
        pthread_cond_broadcast(&ax->cv);
    }
    pthread_mutex_unlock(&ax->mu);
    return NULL;
}

/* Shows a cycle's result: the committed meta mt, the partition ends it
 * saw, and the view live once a cycle read everything. */
static void publish_cycle(spw_view *v, const view_meta *mt, const uint64_t *end, uint32_t np, int all_done)
{
    pthread_mutex_lock(&v->mu);
    v->shown = *mt;
    uint64_t behind = 0;
    for (uint32_t p = 0; p < np; p++) {
        v->end[p] = end[p];
        behind += end[p] > mt->next[p] ? end[p] - mt->next[p] : 0;
    }
    if (behind == 0)
        v->behind_since_ms = 0;
    else if (v->behind_since_ms == 0)
        v->behind_since_ms = spw_mono_ms();
    if (all_done && v->state != VS_LIVE)
        v->state = VS_LIVE;
    pthread_mutex_unlock(&v->mu);
}

/* The apply thread takes a committed batch's answer: 0, or the error
 * (v->meta back at the batch's start). */
static int finish(spw_view *v, batch_job *j)
{
    int r = j->r;
    if (r == 0) {
        for (uint32_t i = 0; i < j->nfresh; i++) /* in the store now */
            spw__view_kset_add(&v->known, j->f->arena.p + j->f->e[j->fresh[i]].koff, j->f->e[j->fresh[i]].klen);
        atomic_fetch_add(&v->store_writes, j->writes);
        atomic_fetch_add(&v->batches, 1);
        v->dirty++;
        v->meta.keys += j->mt.keys - j->before.keys; /* the new keys commit counted */
        publish_cycle(v, &j->mt, j->end, j->np, j->all_done);
        if (j->flushed)
            flushed(v, &j->mt, 0);
    } else {
        v->meta = j->before; /* the store has none of it: read it again */
        set_error(v, "writing the store: %s", spw_strerror(r));
    }
    j->fresh = NULL; /* in j->freshb */
    j->nfresh = 0;
    return r;
}

/* Waits for the batch in flight, if any, and finishes it: 0 or its error. */
static int drain(apply_ctx *ax)
{
    if (!ax->busy)
        return 0;
    pthread_mutex_lock(&ax->mu);
    while (!ax->done)
        pthread_cond_wait(&ax->cv, &ax->mu);
    ax->done = 0;
    pthread_mutex_unlock(&ax->mu);
    ax->busy = 0;
    return finish(ax->v, &ax->job);
}

static void submit(apply_ctx *ax)
{
    SPW_ASSERT(!ax->busy);
    if (!ax->started) {
        pthread_create(&ax->th, NULL, commit_thread, ax);
        spw_thread_name(ax->th, "vcommit:%s", ax->v->def.name);
        ax->started = 1;
    }
    pthread_mutex_lock(&ax->mu);
    ax->pending = 1;
    pthread_cond_broadcast(&ax->cv);
    pthread_mutex_unlock(&ax->mu);
    ax->busy = 1;
}

static void apply_ctx_fini(apply_ctx *ax)
{
    drain(ax);
    if (ax->started) {
        pthread_mutex_lock(&ax->mu);
        ax->quit = 1;
        pthread_cond_broadcast(&ax->cv);
        pthread_mutex_unlock(&ax->mu);
        pthread_join(ax->th, NULL);
        ax->started = 0;
    }
    spw__view_fold_free(&ax->f[0]);
    spw__view_fold_free(&ax->f[1]);
    spw_buf_fini(&ax->job.val);
    spw_buf_fini(&ax->job.mb);
    job_scratch_free(&ax->job);
    pthread_mutex_destroy(&ax->mu);
    pthread_cond_destroy(&ax->cv);
}

/* ---- the cycle ---- */

/* One read-fold-commit cycle. Returns 0 if more records are waiting
 * (the batch was full: it may still be committing on the commit thread),
 * 1 if not (caught up, or a partition cannot be read now: the thread
 * naps; nothing in flight), or the error of a failed commit. */
static int cycle(spw_view *v, apply_ctx *ax, char *kbuf, uint32_t *rot)
{
    fold *f = &ax->f[ax->cur]; /* not the one in flight */
    view_meta *mt = &v->meta;
    view_meta before = *mt;
    spw__view_fold_reset(f);
    uint32_t total = 0;
    int all_done = 1, more = 0, stuck = 0;
    uint32_t np = mt->nparts;
    uint64_t end[SPW_STREAM_PARTITIONS_MAX];
    uint32_t records_max = atomic_load(&spw__view_batch_records);
    if (!records_max || records_max > VIEW_BATCH_RECORDS)
        records_max = VIEW_BATCH_RECORDS;
    for (uint32_t j = 0; j < np; j++) {
        uint32_t p = (j + *rot) % np;
        spw_part *part = v->s->parts[p];
        spw_part_state st;
        spw_part_state_get(part, &st);
        end[p] = st.next_offset;
        if (mt->next[p] >= st.durable_offset && mt->next[p] >= st.start_offset)
            continue;
        spw_cursor_seek(&v->cur, part, mt->next[p]);
        spw_record_view rv;
        int r;
        for (;;) {
            if (total >= records_max || f->bytes >= VIEW_BATCH_BYTES || f->n >= VIEW_BATCH_ENTRIES) {
                all_done = 0;
                more = 1;
                break;
            }
            r = spw_cursor_next(&v->cur, &rv);
            if (r == 1) {
                spw__view_fold_ahead(&v->def, f, &v->cur);
                spw__view_fold_record(&v->def, &v->meta, f, p, &rv, kbuf, 1);
                mt->next[p] = rv.offset + 1;
                mt->applied++;
                total++;
                continue;
            }
            if (r == 0)
                break;
            if (r == SPW_ECORRUPT && v->cur.resume > v->cur.damage_from) {
                uint64_t from = v->cur.damage_from, resume = v->cur.resume;
                spw_error("view %s: partition %u: offsets %" PRIu64 "..%" PRIu64
                          " are damaged on disk (run spillway check); skipping them, resuming at %" PRIu64,
                          v->def.name, p, from, resume - 1, resume);
                set_error(v, "partition %u: offsets %" PRIu64 "..%" PRIu64 " are damaged on disk: skipped", p, from,
                          resume - 1);
                mt->skipped_damaged += resume - from;
                mt->next[p] = resume;
                spw_cursor_seek(&v->cur, part, resume);
                continue;
            }
            if (r == SPW_ERANGE) {
                spw_part_state_get(part, &st);
                if (mt->next[p] < st.start_offset) {
                    spw_warn("view %s: partition %u: offset %" PRIu64 " is gone; continuing at %" PRIu64, v->def.name,
                             p, mt->next[p], st.start_offset);
                    mt->next[p] = st.start_offset;
                    spw_cursor_seek(&v->cur, part, mt->next[p]);
                    continue;
                }
                break;
            }
            set_error(v, "partition %u: reading at offset %" PRIu64 ": %s", p, mt->next[p], spw_strerror(r));
            all_done = 0;
            stuck = 1; /* tried again after a nap */
            break;
        }
    }
    *rot = np ? (*rot + 1) % np : 0;
    (void)stuck;
    int changed = memcmp(&before, mt, sizeof before) != 0;
    if (changed && v->def.kind == VK_AGGREGATE && (uint32_t)v->def.page_level + 1 < v->def.nwin)
        spw__view_rollup(&v->def, f, (uint8_t *)kbuf + VIEW_KEY_MAX + 16);
    /* the batch before this one first: batches commit in order */
    int r = drain(ax);
    if (r < 0)
        return r; /* this fold built on it: dropped (v->meta is back before both) */
    before.keys = mt->keys; /* the new keys it counted (a fold counts none) */
    if (!changed) {
        publish_cycle(v, mt, end, np, all_done);
        return more ? 0 : 1;
    }
    batch_job *j = &ax->job;
    j->f = f;
    j->before = before;
    j->mt = *mt;
    memcpy(j->end, end, np * sizeof *end);
    j->np = np;
    j->all_done = all_done;
    /* chains of more operands than VIEW_CHAIN_MAX may form in the memtable */
    if (v->dirty >= VIEW_CHAIN_MAX && (r = spw__view_store_chain(v, 1)) < 0) {
        *mt = before;
        set_error(v, "writing the store: %s", spw_strerror(r));
        return r;
    }
    /* a flush due rides on the batch in flight (the commit thread waits for
     * it, not the apply thread); a batch committed here is flushed by the
     * loop if due */
    j->flush = more && spw_mono_ms() - v->last_flush_ms >= v->m->flush_ms;
    if (more) {
        submit(ax);
        ax->cur ^= 1;
        return 0;
    }
    commit(v, j);
    r = finish(v, j);
    return r < 0 ? r : 1;
}

static int do_rebuild(spw_view *v)
{
    char err[300];
    spw_info("view %s: rebuilding from the start of stream %s", v->def.name, v->def.stream);
    v->fl_pending = 0; /* its offsets are of the store wiped below */
    if (v->s)
        for (uint32_t i = 0; i < v->meta.nparts; i++) {
            uint64_t pos = 0;
            take_hold(v->s->parts[i], &pos, &v->holds[i]); /* down to the start: kept until flushed past */
            v->flushed[i] = pos;
        }
    view_meta fresh;
    spw__view_meta_reset(&fresh, v->s->incarnation, v->s->cfg.partitions);
    fresh.fwd_next = v->meta.fwd_next; /* sent buckets are not sent again (they would be deduplicated anyway) */
    int r = spw__view_store_wipe(v, &fresh, err, sizeof err);
    if (r < 0) {
        set_error(v, "%s", err);
        return r;
    }
    v->meta = fresh;
    spw__view_kset_clear(&v->known);
    v->dirty++;
    publish(v, VS_REBUILDING);
    return 0;
}

/* Caught up: sleeps until the log's durable hook (view.c) says there is
 * more, a stop, a rebuild or a new waiter, or the earliest of a waiter's
 * deadline, the forward retry and the fallback (VIEW_IDLE_MS; 500 ms
 * after a failed cycle). */
static void idle_wait(spw_view *v, int failed, uint64_t fwd_retry_ms)
{
    uint64_t now = spw_mono_ms(), until = now + (failed ? 500 : VIEW_IDLE_MS);
    pthread_mutex_lock(&v->mu);
    for (view_waiter *w = v->waiters; w; w = w->next)
        if (w->deadline_ms < until)
            until = w->deadline_ms;
    if (v->def.fwd_host[0] && fwd_retry_ms > now && fwd_retry_ms < until)
        until = fwd_retry_ms;
    if (!v->stop && !v->rebuild && !v->kicked && until > now)
        spw_cond_wait_ns(&v->cv, &v->mu, (until - now) * 1000000ull);
    pthread_mutex_unlock(&v->mu);
}

void *spw__view_apply_thread(void *arg)
{
    spw_view *v = arg;
    apply_ctx ax = {.v = v, .job = {.val = SPW_BUF_INIT, .mb = SPW_BUF_INIT}};
    pthread_mutex_init(&ax.mu, NULL);
    pthread_cond_init(&ax.cv, NULL);
    char *kbuf = spw_xmalloc(2 * (VIEW_KEY_MAX + 16) + 32);
    uint32_t rot = 0;
    uint64_t fwd_retry_ms = 0;
    spw_cursor_init(&v->cur, NULL, 0, VIEW_READ_BYTES);
    v->last_flush_ms = spw_mono_ms();
    /* RocksDB's per-thread perf counters off on this thread: every write
     * of a batch's entries counts nothing nobody reads */
    rocksdb_set_perf_level(rocksdb_disable);
    for (;;) {
        pthread_mutex_lock(&v->mu);
        int stop = v->stop, rebuild = v->rebuild;
        v->rebuild = 0;
        /* the cycle below reads what is durable now; counted here, not when
         * idle_wait returns: a kick after that (another waiter, or the
         * timer, ended the wait) sets off this cycle too */
        if (v->kicked)
            atomic_fetch_add(&v->wake_durable, 1);
        v->kicked = 0;
        pthread_mutex_unlock(&v->mu);
        int gone = v->s && atomic_load(&v->s->deleted);
        if (stop || rebuild || gone)
            drain(&ax); /* the batch in flight first (an error: read again, or never) */
        if (stop)
            break;
        if (gone) {
            spw_warn("view %s: stream %s was deleted; waiting for a stream of that name", v->def.name, v->def.stream);
            if (v->dirty)
                flush_store(v);
            detach(v);
        }
        if (!v->s) {
            int r = attach(v);
            if (r < 0) {
                pthread_mutex_lock(&v->mu);
                v->rebuild |= rebuild; /* done once attached */
                v->state = VS_NO_STREAM;
                pthread_mutex_unlock(&v->mu);
                kick_waiters(v, 0, 0);
                pthread_mutex_lock(&v->mu);
                if (!v->stop)
                    spw_cond_wait_ns(&v->cv, &v->mu, 200 * 1000000ull);
                pthread_mutex_unlock(&v->mu);
                continue;
            }
        }
        if (rebuild && do_rebuild(v) < 0) {
            pthread_mutex_lock(&v->mu);
            v->state = VS_FAILED;
            pthread_mutex_unlock(&v->mu);
        }
        int r = v->db ? cycle(v, &ax, kbuf, &rot) : -EIO;
        kick_waiters(v, 0, 0);
        flush_done(v);
        /* (a batch in flight carries its own flush when one is due) */
        if (!ax.busy && v->dirty && spw_mono_ms() - v->last_flush_ms >= v->m->flush_ms)
            flush_store(v);
        int fwd_more = 0;
        if (v->def.fwd_host[0] && v->s && v->db) {
            char ferr[400];
            int dr = drain(&ax); /* forward reads the store and writes its meta */
            if (r == 0 && dr < 0)
                r = dr;
            int fr = spw__view_forward(v, &fwd_retry_ms, ferr, sizeof ferr);
            if (fr < 0) {
                spw_warn("view %s: %s; trying again", v->def.name, ferr);
                set_error(v, "%s", ferr);
            }
            fwd_more = fr > 0;
        }
        if (r == 0 || fwd_more)
            continue; /* more is waiting */
        SPW_ASSERT(!ax.busy); /* a cycle that did not end full committed its batch itself */
        /* caught up: a large batch's tables are not kept for the small ones of a live view */
        for (int i = 0; i < 2; i++)
            if (ax.f[i].cap > 65536 || ax.f[i].subcap > 65536)
                spw__view_fold_free(&ax.f[i]);
        if (ax.job.psubsb.cap > (1u << 20) || ax.job.ordb.cap > (1u << 20) || ax.job.wb_bytes > (4u << 20))
            job_scratch_free(&ax.job);
        idle_wait(v, r < 0, fwd_retry_ms);
    }
    apply_ctx_fini(&ax); /* the batch in flight committed (or not) before the last flush */
    if (v->db && v->dirty && v->s)
        flush_store(v);
    kick_waiters(v, 1, -ENOENT);
    detach(v);
    spw_cursor_fini(&v->cur);
    spw__view_kset_free(&v->known);
    spw_free(kbuf);
    return NULL;
}
