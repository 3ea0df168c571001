/*
 * ListOffsets and Fetch over the Kafka protocol (docs/protocol-kafka.md):
 * both read partitions through the log's read side only as every reader
 * does — ends and offsets capped at the durable end (log/log.h,
 * "Visibility"), records through the record cursor (log/cursor.h) — so a
 * Kafka consumer sees exactly what an HTTP or binary reader sees.
 *
 * Fetch answers record batches of magic 2 built from the stored records
 * (uncompressed; one Kafka batch per run of records from one stored
 * batch), with their offsets, timestamps, keys, values and headers. A
 * Fetch that finds fewer than its min_bytes to give waits up to its
 * max_wait_ms, parked on its connection (kafka_int.h), its request's bytes
 * kept: the log's durable hook (log/log.h) wakes every loop with parked
 * Fetches, which look at them again and answer those that have min_bytes
 * now; the connection's tick answers the others at their deadline with
 * what there is. A wake-up is never lost: a Fetch reads the server's
 * count of durable-end moves before it looks, and after it parked (the
 * loop's parked count raised) compares: a move in between wakes its own
 * loop, as the hook would have had it seen the park.
 *
 * An answer is built whole in one buffer (no copy to the connection:
 * kq_flush hands it over). Once a large one is written the connection
 * core gives its buffer back (k_out_sent) and it becomes the loop's
 * spare (kloop.spare), in which the loop's next Fetch is built: its pages
 * stay mapped, where a new buffer per Fetch had the kernel fault in, zero
 * and unmap every page each time (a quarter of the server's time per
 * message reading a backlog). Unused for K_SPARE_IDLE_MS, it is freed.
 */
#include "kafka/kafka_int.h"

#include "core/clock.h"
#include "log/cursor.h"

#define FETCH_MAX_BYTES (16u << 20)

/* ---- ListOffsets ---- */

void spw__k_list_offsets(kconn *c, kreq *q, spw_kr *r)
{
    int v = q->api_version;
    (void)spw_kr_i32(r); /* replica id */
    if (v >= 2)
        (void)spw_kr_i8(r); /* isolation level: every visible record is committed */
    spw_buf *o = &q->out;
    int e = spw__kq_begin(q);
    if (v >= 2)
        e = e || spw_kw_i32(o, 0);
    int32_t nt = spw_kr_array(r, 6);
    e = e || spw_kw_i32(o, nt < 0 ? 0 : nt);
    for (int32_t t = 0; !e && t < nt && !r->bad; t++) {
        const char *n;
        int32_t l;
        spw_kr_str(r, &n, &l);
        int32_t np = spw_kr_array(r, 12);
        e = spw_kw_str(o, n, l) || spw_kw_i32(o, np < 0 ? 0 : np);
        int16_t serr;
        spw_stream *s = r->bad ? NULL : spw__k_stream(c, n, l, SPW_PERM_CONSUME, &serr);
        for (int32_t i = 0; !e && i < np && !r->bad; i++) {
            int32_t part = spw_kr_i32(r);
            if (v >= 4)
                (void)spw_kr_i32(r); /* current leader epoch */
            int64_t ts = spw_kr_i64(r);
            int16_t err = s ? 0 : serr;
            int64_t off = -1;
            if (s && (part < 0 || (uint32_t)part >= s->cfg.partitions))
                err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
            if (!err) {
                spw_part *p = s->parts[part];
                spw_part_state st;
                spw_part_state_get(p, &st);
                if (ts == -1) {
                    off = (int64_t)st.durable_offset;
                } else if (ts == -2) {
                    off = (int64_t)st.start_offset;
                } else {
                    uint64_t at;
                    if (spw_part_offset_for_ts(p, ts, &at))
                        err = KERR_KAFKA_STORAGE_ERROR;
                    else
                        off = at >= st.durable_offset ? -1 : (int64_t)at; /* -1: no record that late */
                }
            }
            e = spw_kw_i32(o, part) || spw_kw_i16(o, err) || spw_kw_i64(o, -1) || spw_kw_i64(o, err ? -1 : off);
            if (v >= 4)
                e = e || spw_kw_i32(o, 0);
        }
        if (s)
            spw_stream_put(s);
    }
    if (r->bad || e) {
        o->len = 0;
        spw__kq_begin(q);
        if (v >= 2)
            spw_kw_i32(o, 0);
        spw_kw_i32(o, 0); /* no topics: the request did not decode */
    }
    q->ready = 1;
}

/* ---- Fetch ---- */

/* Appends partition p's records from offset as Kafka batches, within
 * pmax bytes (one record at least when must_one); *got the bytes added.
 * 0, or the Kafka error. */
static int16_t fetch_records(spw_cursor *cur, spw_buf *o, spw_part *p, uint64_t offset, uint64_t vend, size_t pmax,
                             int must_one, size_t *got)
{
    size_t start = o->len;
    *got = 0;
    if (offset >= vend) {
        spw_part_sync_soon(p); /* a reader at the end: fsync what is written after it */
        return 0;
    }
    /* Room for this partition's records at once (address space: pages
     * are taken as they are written; a large buffer grows by mremap, not
     * by copying): then no copy to the connection either
     * (spw__kq_begin_framed). */
    if (spw_buf_reserve(o, o->len + pmax + 256))
        return KERR_UNKNOWN_SERVER_ERROR;
    spw_cursor_seek(cur, p, offset);
    spw_kbatch_w w;
    int open = 0, n = 0;
    uint64_t log_batch = UINT64_MAX, next = offset;
    int16_t err = 0;
    while (next < vend) {
        size_t used = o->len - start;
        if (used >= pmax && !(must_one && used == 0))
            break;
        cur->read_bytes = pmax > used ? pmax - used : (64u << 10);
        if (cur->read_bytes < (64u << 10))
            cur->read_bytes = 64u << 10;
        spw_record_view rv;
        if ((n = spw_cursor_next(cur, &rv)) != 1)
            break;
        const spw_batch_hdr *bh = spw_cursor_batch(cur);
        size_t sz = 32 + (rv.key_len > 0 ? (size_t)rv.key_len : 0) + rv.value_len + rv.headers_len;
        if (used > 0 && used + sz > pmax)
            break;
        if (!open || bh->base_offset != log_batch) {
            if (open)
                spw_kbatch_end(o, &w);
            if (spw_kbatch_begin(o, &w, (int64_t)rv.offset, rv.ts)) {
                err = KERR_UNKNOWN_SERVER_ERROR;
                open = 0;
                break;
            }
            open = 1;
            log_batch = bh->base_offset;
        }
        if (spw_kbatch_add(o, &w, (int64_t)rv.offset, rv.ts, rv.key, rv.key_len, rv.value, (int32_t)rv.value_len,
                           rv.headers, rv.headers_len, rv.header_count)) {
            err = KERR_UNKNOWN_SERVER_ERROR;
            break;
        }
        next = rv.offset + 1;
    }
    if (open && !err)
        spw_kbatch_end(o, &w);
    if (err) {
        o->len = start;
        return err;
    }
    if (n < 0 && o->len == start)
        return n == SPW_ECORRUPT ? KERR_CORRUPT_MESSAGE : KERR_KAFKA_STORAGE_ERROR;
    *got = o->len - start;
    return 0;
}

static void k_wake(void *arg);

void spw__k_spare_give(kloop *l, spw_buf *b)
{
    if (b->cap > (1u << 20) && !l->spare->cap) {
        *l->spare = *b;
        l->spare->len = 0;
        *b = (spw_buf){0};
        l->spare_ms = spw_mono_ms();
    } else {
        spw_buf_fini(b);
    }
}

void spw__k_spare_tick(kloop *l, uint64_t now)
{
    if (l->spare->cap && now - l->spare_ms >= K_SPARE_IDLE_MS)
        spw_buf_fini(l->spare);
}

void spw__k_fetch(kconn *c, kreq *q, const uint8_t *body, size_t len, int final)
{
    int v = q->api_version;
    spw_kr rr, *r = &rr;
    spw_kr_init(r, body, len);
    kloop *lp = c->loop;
    uint64_t gen = atomic_load(&lp->srv->durable_gen); /* before looking: see the file's comment */
    (void)spw_kr_i32(r); /* replica id */
    int32_t max_wait = spw_kr_i32(r);
    int32_t min_bytes = spw_kr_i32(r);
    int32_t max_bytes = spw_kr_i32(r);
    (void)spw_kr_i8(r); /* isolation level */
    if (v >= 7) {
        (void)spw_kr_i32(r); /* session id: sessions are not kept, every fetch is a full one */
        (void)spw_kr_i32(r);
    }
    size_t total_max = max_bytes <= 0 || (uint32_t)max_bytes > FETCH_MAX_BYTES ? FETCH_MAX_BYTES : (size_t)max_bytes;
    spw_buf *o = &q->out;
    if (lp->spare->cap > o->cap && total_max >= (1u << 20)) { /* the loop's spare: its pages are mapped */
        spw_buf_fini(o);
        *o = *lp->spare;
        *lp->spare = (spw_buf){0};
        lp->spare_ms = spw_mono_ms();
    }
    int e = spw__kq_begin_framed(q) || spw_kw_i32(o, 0);
    if (v >= 7)
        e = e || spw_kw_i16(o, 0) || spw_kw_i32(o, 0);
    int32_t nt = spw_kr_array(r, 6);
    e = e || spw_kw_i32(o, nt < 0 ? 0 : nt);
    size_t total = 0;
    int any_err = 0; /* an error to give: answer now */
    for (int32_t t = 0; !e && t < nt && !r->bad; t++) {
        const char *n;
        int32_t l;
        spw_kr_str(r, &n, &l);
        int32_t np = spw_kr_array(r, 16);
        e = spw_kw_str(o, n, l) || spw_kw_i32(o, np < 0 ? 0 : np);
        int16_t serr;
        spw_stream *s = r->bad ? NULL : spw__k_stream(c, n, l, SPW_PERM_CONSUME, &serr);
        for (int32_t i = 0; !e && i < np && !r->bad; i++) {
            int32_t part = spw_kr_i32(r);
            if (v >= 9)
                (void)spw_kr_i32(r); /* current leader epoch */
            int64_t off = spw_kr_i64(r);
            if (v >= 5)
                (void)spw_kr_i64(r); /* the follower's log start offset */
            int32_t pmax = spw_kr_i32(r);
            if (r->bad)
                break;
            int16_t err = s ? 0 : serr;
            spw_part_state st = {0};
            if (s && (part < 0 || (uint32_t)part >= s->cfg.partitions))
                err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
            if (!err) {
                spw_part_state_get(s->parts[part], &st);
                if (off < 0 || (uint64_t)off < st.start_offset || (uint64_t)off > st.durable_offset)
                    err = KERR_OFFSET_OUT_OF_RANGE;
            }
            size_t err_at = o->len + 4;
            e = spw_kw_i32(o, part) || spw_kw_i16(o, err) || spw_kw_i64(o, err ? -1 : (int64_t)st.durable_offset) ||
                spw_kw_i64(o, err ? -1 : (int64_t)st.durable_offset);
            if (v >= 5)
                e = e || spw_kw_i64(o, err ? -1 : (int64_t)st.start_offset);
            e = e || spw_kw_i32(o, 0); /* aborted transactions: none */
            if (v >= 11)
                e = e || spw_kw_i32(o, -1); /* preferred read replica: none */
            size_t len_at = o->len;
            e = e || spw_kw_i32(o, 0);
            if (e)
                break;
            size_t got = 0;
            if (!err && total < total_max) {
                size_t room = total_max - total;
                size_t lim = pmax > 0 && (size_t)pmax < room ? (size_t)pmax : room;
                err = fetch_records(lp->cur, o, s->parts[part], (uint64_t)off, st.durable_offset, lim, total == 0,
                                    &got);
                if (err) { /* a read error: the partition's error code says it */
                    o->p[err_at] = (uint8_t)((uint16_t)err >> 8);
                    o->p[err_at + 1] = (uint8_t)err;
                }
            }
            if (err)
                any_err = 1;
            spw_kw_set_i32(o, len_at, (int32_t)got);
            total += got;
        }
        if (s)
            spw_stream_put(s);
    }
    if (r->bad || e) {
        o->len = 0;
        spw__kq_begin_framed(q);
        spw_kw_i32(o, 0);
        if (v >= 7) {
            spw_kw_i16(o, KERR_INVALID_REQUEST);
            spw_kw_i32(o, 0);
        }
        spw_kw_i32(o, 0);
        q->ready = 1;
        return;
    }
    if (!any_err && total < (size_t)(min_bytes < 0 ? 0 : min_bytes) && !final && max_wait > 0 && !lp->stopping) {
        /* Less than min_bytes to give: wait for records, up to max_wait. */
        uint8_t *copy = spw_try_malloc(len ? len : 1);
        if (copy) {
            memcpy(copy, body, len);
            spw__k_spare_give(lp, o); /* no answer held while it waits */
            q->parked = copy;
            q->parked_len = len;
            if (!q->deadline_ms)
                q->deadline_ms = spw_mono_ms() + (uint64_t)max_wait;
            c->nparked++;
            atomic_fetch_add(&lp->parked, 1);
            if (atomic_load(&lp->srv->hooked) && atomic_load(&lp->srv->durable_gen) != gen &&
                !atomic_exchange(&lp->kicked, 1))
                spw__kloop_post(lp, k_wake, lp); /* moved while we looked */
            return;
        }
    }
    q->ready = 1;
}

void spw__k_fetch_recheck(kconn *c, uint64_t now, int all)
{
    kloop *l = c->loop;
    for (kreq *q = c->head; q; q = q->next) {
        if (!q->parked || q->ready)
            continue;
        int final = now >= q->deadline_ms || l->stopping;
        if (!all && !final)
            continue;
        uint8_t *body = q->parked;
        size_t len = q->parked_len;
        q->parked = NULL;
        c->nparked--;
        atomic_fetch_sub(&l->parked, 1);
        spw__k_fetch(c, q, body, len, final); /* may park q again */
        spw_free(body);
    }
    spw__kq_flush(c);
}

/* On the loop: every connection's parked Fetches look again. */
static void k_wake(void *arg)
{
    kloop *l = arg;
    atomic_store(&l->kicked, 0); /* a move from now on posts again */
    uint64_t now = spw_mono_ms();
    for (spw_netconn *nc = l->conns, *next; nc; nc = next) {
        next = nc->next; /* a flush may close nc */
        kconn *c = (kconn *)nc;
        if (c->nparked && !c->closed)
            spw__k_fetch_recheck(c, now, 1);
    }
}

void spw__k_durable(void *arg)
{
    spw_kafka_server *s = arg;
    atomic_fetch_add(&s->durable_gen, 1);
    for (uint32_t i = 0; i < s->ns.nloops; i++) {
        kloop *l = (kloop *)spw_netsrv_loop(&s->ns, i);
        if (atomic_load(&l->parked) && !atomic_exchange(&l->kicked, 1))
            spw__kloop_post(l, k_wake, l);
    }
}
