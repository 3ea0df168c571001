/*
 * A sink's worker thread. It attaches to its stream (sink_attach.c), then
 * cycles over the partitions: it reads what is durable past the position
 * with the record cursor (collect; log/cursor.h, no append lock), and
 * when the batch is due (loop.h: full by events or bytes, or its oldest
 * record waited max_wait_ms) hands it to delivery (sink_deliver.c).
 * Between cycles it sleeps on its condition variable (at most POLL_MS, or
 * max_wait if less), so stopping is prompt. A stream deleted under the
 * sink drops the attachment; the sink waits for a stream of that name
 * again.
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

/* ---- reading a batch ---- */

/* Collects records of partition pi from offset off into k->b.recs: the
 * sink's position, or where the pending batch ends. Returns the count (0:
 * nothing), or an error. Reads with the record cursor (log/cursor.h):
 * damage met after records ends the window (they are delivered first);
 * damage at the position is skipped to the cursor's resume offset, logged
 * with its offsets, counted in errors_total and shown as last_error. */
/* Sets the key and value pointers of records [from, nrecs), offsets into
 * the arena until the arena stops moving. */
static void fix_pointers(spw_sink *k, uint32_t from)
{
    for (uint32_t i = from; i < k->b.nrecs; i++) {
        k->b.recs[i].key = k->b.arena.p + (uintptr_t)k->b.recs[i].key;
        k->b.recs[i].value = k->b.arena.p + (uintptr_t)k->b.recs[i].value;
    }
}

/* collect's work: reads after the records k->b holds (none unless
 * append), at most one batch's worth; with append the pointers of the
 * records read stay offsets (fix_pointers, once the group is read). */
static int collect_at(spw_sink *k, uint32_t pi, uint64_t off, int append)
{
    spw_part *p = k->s->parts[pi];
    /* a damaged or deleted range moves the position only when reading from it */
    int at_position = off == atomic_load(&k->parts[pi].next);
    if (!append) {
        k->b.nrecs = 0;
        k->b.bytes = 0;
        k->b.arena.len = 0;
    }
    const uint32_t base = k->b.nrecs;
    const uint64_t bytes0 = k->b.bytes;
    const size_t arena0 = k->b.arena.len;
    const spw_sink_batch_cfg *bc = &k->def.batch;
    /* Log bytes for the records wanted, from what earlier reads measured
     * (with a quarter more): a read of max_bytes for a window that
     * max_events fills in a fraction of it would copy and discard the
     * rest. The cursor reads one batch at least and reads again when
     * it needs more, so a short guess costs a read, never a stall. */
    size_t want = bc->max_bytes + 4096;
    if (k->log_per_rec) {
        uint64_t guess = (uint64_t)bc->max_events * k->log_per_rec * 5 / 4 + 4096;
        if (guess < want)
            want = (size_t)guess;
    }
    spw_cursor_seek(&k->cur, p, off);
    k->cur.read_bytes = want > (64u << 20) ? (64u << 20) : want;
    spw_record_view rv;
    int r = 0;
    while (k->b.nrecs - base < bc->max_events && k->b.bytes - bytes0 < bc->max_bytes &&
           (r = spw_cursor_next(&k->cur, &rv)) == 1) {
        const spw_batch_hdr *h = spw_cursor_batch(&k->cur);
        k->log_per_rec = (h->length + h->record_count - 1) / h->record_count;
        if (k->b.nrecs == k->b.recs_cap) {
            k->b.recs_cap = k->b.recs_cap ? k->b.recs_cap * 2 : 256;
            k->b.recs = spw_xrealloc(k->b.recs, k->b.recs_cap * sizeof *k->b.recs);
        }
        size_t kl = rv.key_len > 0 ? (size_t)rv.key_len : 0;
        size_t ka = k->b.arena.len;
        if (spw_buf_put(&k->b.arena, rv.key, kl) || spw_buf_put(&k->b.arena, rv.value, rv.value_len)) {
            k->b.nrecs = base;
            k->b.bytes = bytes0;
            k->b.arena.len = arena0;
            return SPW_ENOMEM;
        }
        /* pointers fixed up below, once the arena stops moving */
        k->b.recs[k->b.nrecs] = (spw_sink_rec){.offset = rv.offset,
                                           .id = rv.id,
                                           .ts = rv.ts,
                                           .key = (const uint8_t *)(uintptr_t)ka,
                                           .key_len = rv.key_len,
                                           .value = (const uint8_t *)(uintptr_t)(ka + kl),
                                           .value_len = rv.value_len};
        k->b.nrecs++;
        k->b.bytes += kl + rv.value_len;
    }
    if (r == SPW_ECORRUPT && k->b.nrecs == base && k->cur.resume && at_position) {
        uint64_t from = k->cur.damage_from, resume = k->cur.resume;
        spw_error("sink %s: partition %u: offsets %" PRIu64 "..%" PRIu64
                  " are damaged on disk and cannot be delivered (run spillway check); skipping them, resuming at "
                  "offset %" PRIu64,
                  k->def.name, pi, from, resume - 1, resume);
        spw__sink_set_error(k, "partition %u: offsets %" PRIu64 "..%" PRIu64 " are damaged on disk: skipped, resumed at %" PRIu64,
                  pi, from, resume - 1, resume);
        atomic_fetch_add(&k->errors, 1);
        atomic_store(&k->parts[pi].next, resume);
        return 0;
    }
    if (r == SPW_ERANGE && k->b.nrecs == base && at_position) {
        spw_part_state st;
        spw_part_state_get(p, &st);
        if (off < st.start_offset) {
            spw_warn("sink %s: partition %u: offset %" PRIu64 " is gone; continuing at %" PRIu64, k->def.name, pi,
                     off, st.start_offset);
            atomic_store(&k->parts[pi].next, st.start_offset);
        }
        return 0;
    }
    if (r < 0 && k->b.nrecs == base)
        return r;
    /* Every return with records comes here (an error after records: those
     * are delivered first); their pointers are offsets until now. */
    if (!append)
        fix_pointers(k, 0);
    return (int)(k->b.nrecs - base);
}

static int collect(spw_sink *k, uint32_t pi, uint64_t off) { return collect_at(k, pi, off, 0); }

static void update_rate(spw_sink *k, uint64_t now)
{
    if (now - k->rate_t0_ms < 1000)
        return;
    uint64_t d = atomic_load(&k->delivered);
    atomic_store(&k->rate_milli, (d - k->rate_n0) * 1000000 / (now - k->rate_t0_ms));
    k->rate_t0_ms = now;
    k->rate_n0 = d;
}

/*
 * Is partition pi worth reading from offset `from` now? Both cycles (by
 * partition and by group) ask it. Notes the partition's end (lag shown by
 * GET and /metrics) and when records past `from` were first seen. Only
 * durable records are read (docs/architecture.md, "What readers see"):
 * progress never passes what a power loss keeps; records written and not
 * yet durable ask for the fsync once the batch would be due by age,
 * instead of waiting for the timer. Not due by count or age, and not by
 * bytes either: nothing new since a read found it not due, or fewer
 * records than max_bytes of log holds (log bytes per record, as last
 * measured, exceed the key + value bytes the batch counts): no need to
 * read it yet. WIN_DUE (worth reading) or WIN_WAITING (durable records, not
 * due yet), each with the durable end (*vend) and the oldest record's age
 * (*age); else WIN_NONE (nothing durable past `from`).
 */
enum { WIN_NONE, WIN_WAITING, WIN_DUE };

static int window_wanted(spw_sink *k, const spw_sink_batch_cfg *bc, uint32_t pi, uint64_t from, uint64_t now,
                         uint64_t *vend, uint64_t *age)
{
    sink_part *sp = &k->parts[pi];
    spw_part_state st;
    spw_part_state_get(k->s->parts[pi], &st);
    atomic_store(&sp->end, st.next_offset);
    if (st.written_offset <= from) {
        sp->first_seen_ms = 0;
        return WIN_NONE;
    }
    if (!sp->first_seen_ms)
        sp->first_seen_ms = now;
    *vend = st.durable_offset;
    *age = now - sp->first_seen_ms;
    if (*vend <= from) {
        if (*age >= bc->max_wait_ms)
            spw_part_sync_soon(k->s->parts[pi]);
        return WIN_NONE;
    }
    uint64_t avail = *vend - from;
    if (avail < bc->max_events && *age < bc->max_wait_ms &&
        (sp->checked_end == *vend || (k->log_per_rec && avail * k->log_per_rec < bc->max_bytes)))
        return WIN_WAITING;
    return WIN_DUE;
}

/* The pending group batch's window of partition pi, or NULL. */
static const sink_win *pend_win(const spw_sink *k, uint32_t pi)
{
    for (uint32_t j = 0; k->has_pend && j < k->pend.nwin; j++)
        if (k->pend.win[j].part == pi)
            return &k->pend.win[j];
    return NULL;
}

/* Has a lane's share of a group (n records, bytes) reached the cap? */
static inline int lane_full(const spw_sink_batch_cfg *bc, uint32_t n, uint64_t bytes)
{
    return n >= bc->max_events || bytes >= bc->max_bytes;
}

/*
 * One cycle of a kind that writes groups (sink.h, group_begin): the due
 * windows of every partition (each as the per-partition cycle would read
 * it, from the position or after the pending group's window) and, once one
 * is due, the durable records of the partitions not due yet go into one
 * batch, up to max_events or max_bytes for each of the kind's lanes
 * (group_lanes: partition p by lane p % lanes; a window that crosses its
 * lane's cap is that lane's last; the next cycle starts with a partition
 * left out for its lane being full, or after the last one that filled a
 * lane, so no partition waits behind others), and are written as one
 * unit while the next group is read (the replica of a stream,
 * replicate_to, ends it first unless the cap cut it: see below). One
 * commit then carries what several partitions had waiting: for a
 * replicated stream, the requests of every partition wait for one round
 * of the target's commit, not one round per partition. Returns whether
 * something was written or ended.
 */
static int cycle_group(spw_sink *k, const spw_sink_batch_cfg *bc, uint64_t now, int replica)
{
    sink_batch *b = &k->b;
    int worked = 0;
    if (replica && k->has_pend && !k->pend_cut) {
        /* Replicated requests wait for these commits: the pending group
         * is ended first, so what became durable while it committed goes
         * into the very next group. Read before it ended (as below), that
         * next group would hold only what came in the moment between, and
         * the rest would wait for a third commit. Not so when the cap cut
         * the pending group (more was waiting than one group takes), or
         * it holds an eighth of the cap or more (pend_cut): the next group
         * is large either way, and reading it while the target parses and
         * commits overlaps the two, as for any other sink; ending first
         * would leave the target idle while the sink reads. */
        spw__sink_finish_pending(k);
        worked = 1;
        if (spw__sink_stopping(k))
            return worked;
        now = (uint64_t)spw_wall_ms();
    }
    b->nrecs = 0;
    b->bytes = 0;
    b->arena.len = 0;
    b->nwin = 0;
    int cut = 0; /* a lane's share stopped at max_events or max_bytes */
    int due = 0; /* some window is due: the group goes */
    uint32_t np = k->nparts;
    uint64_t cyc = ++k->grp_cycle;
    /* The kind's lanes (sink.h, group_lanes): partition p goes by lane
     * p % nl, and each lane's share is capped by itself. */
    uint32_t nl = k->def.kind->group_lanes ? k->def.kind->group_lanes(k->kst) : 1;
    nl = nl < 1 ? 1 : nl > SINK_MAX_LANES ? SINK_MAX_LANES : nl;
    uint32_t lane_n[SINK_MAX_LANES] = {0}, full = 0;
    uint64_t lane_b[SINK_MAX_LANES] = {0};
    int64_t skipped = -1; /* the first partition passed over for its lane being full */
    uint32_t start = k->grp_start, next_start = start;
    /* Pass 0 reads the windows that may be due. Once one is, pass 1 adds
     * what the partitions not due yet hold durable: it goes in the same
     * commit instead of one commit each as they become due in turn (their
     * records seen a poll apart, or just too few). */
    for (int pass = 0; pass < 2 && full < nl && (pass == 0 || due); pass++) {
        for (uint32_t c = 0; c < np && !spw__sink_stopping(k); c++) {
            uint32_t i = (start + c) % np;
            sink_part *sp = &k->parts[i];
            if (sp->grp_cycle == cyc)
                continue;
            uint32_t l = i % nl;
            if (lane_full(bc, lane_n[l], lane_b[l])) {
                if (skipped < 0)
                    skipped = i;
                continue;
            }
            const sink_win *pw = pend_win(k, i);
            uint64_t from = pw ? k->pend.recs[pw->first + pw->n - 1].offset + 1 : atomic_load(&sp->next);
            uint64_t vend, age;
            if (window_wanted(k, bc, i, from, now, &vend, &age) != (pass == 0 ? WIN_DUE : WIN_WAITING))
                continue;
            sp->grp_cycle = cyc; /* read once a cycle, whatever the read gives */
            uint32_t base = b->nrecs;
            uint64_t bytes0 = b->bytes;
            int n = collect_at(k, i, from, 1);
            if (n < 0) {
                spw__sink_set_error(k, "reading partition %u: %s", i, spw_strerror(n));
                atomic_fetch_add(&k->errors, 1);
                continue;
            }
            if (n == 0) {
                sp->checked_end = vend;
                continue;
            }
            if (spw_sink_batch_due(bc, (uint32_t)n, b->bytes - bytes0, age))
                due = 1;
            if (b->nwin == b->win_cap) {
                b->win_cap = b->win_cap ? b->win_cap * 2 : 8;
                b->win = spw_xrealloc(b->win, (size_t)b->win_cap * sizeof *b->win);
            }
            b->win[b->nwin++] = (sink_win){.part = i, .first = base, .n = (uint32_t)n, .from = from, .vend = vend};
            lane_n[l] += (uint32_t)n;
            lane_b[l] += b->bytes - bytes0;
            if (lane_full(bc, lane_n[l], lane_b[l])) {
                next_start = (i + 1) % np;
                cut = due = 1;
                if (++full == nl)
                    break;
            }
        }
    }
    /* the next cycle starts after the last partition taken, or with one
     * passed over because its lane was full, so none waits behind others */
    k->grp_start = skipped >= 0 ? (uint32_t)skipped : next_start;
    /* nothing due: what was read waits, and its partitions are not read
     * again before they may be due (window_wanted) */
    for (uint32_t j = 0; j < b->nwin; j++)
        k->parts[b->win[j].part].checked_end = due ? 0 : b->win[j].vend;
    if (!due) {
        b->nrecs = 0;
        b->bytes = 0;
        b->arena.len = 0;
        b->nwin = 0;
    }
    fix_pointers(k, 0);
    if (k->has_pend) {
        spw__sink_finish_pending(k);
        worked = 1;
        if (spw__sink_stopping(k))
            return worked;
        /* a window read after the pending group's follows on only if all of that one got there */
        uint32_t keep = 0;
        for (uint32_t j = 0; j < b->nwin; j++)
            if (atomic_load(&k->parts[b->win[j].part].next) == b->win[j].from)
                b->win[keep++] = b->win[j];
        b->nwin = keep;
    }
    if (b->nwin == 0)
        return worked;
    spw__sink_deliver_group(k);
    /* the group is k->pend now if it was begun (the buffers swapped), else still b */
    const sink_batch *g = k->has_pend ? &k->pend : b;
    /* A group of an eighth of the caps or more counts as cut: the target
     * parses it for long, and the next group read meanwhile is large. */
    k->pend_cut = k->has_pend && (cut || g->nrecs * 8ull >= bc->max_events || g->bytes * 8 >= bc->max_bytes);
    for (uint32_t j = 0; j < g->nwin; j++) {
        const sink_win *w = &g->win[j];
        const spw_sink_rec *last = g->recs + w->first + w->n - 1;
        sink_part *sp = &k->parts[w->part];
        uint64_t after = k->has_pend ? last->offset + 1 : atomic_load(&sp->next);
        sp->first_seen_ms = after < w->vend ? now : 0;
    }
    return 1;
}

void *spw__sink_worker(void *arg)
{
    spw_sink *k = arg;
    uint32_t attempt = 0;
    k->rate_t0_ms = (uint64_t)spw_wall_ms();
    while (!spw__sink_stopping(k)) {
        if (!k->s) {
            int r = spw__sink_attach(k);
            if (r == -ENOENT) {
                atomic_store(&k->state, ST_NO_STREAM);
                if (spw__sink_nap(k, 500))
                    break;
                continue;
            }
            if (r < 0) {
                if (spw__sink_op_wait(k, attempt++, "attaching to the stream"))
                    break;
                continue;
            }
            attempt = 0;
            atomic_store(&k->state, ST_RUNNING);
        }
        if (k->s->deleted) {
            spw__sink_set_error(k, "stream %s was deleted", k->def.stream);
            if (k->has_pend)
                spw__sink_finish_pending(k);
            spw__sink_detach(k);
            continue;
        }
        uint64_t now = (uint64_t)spw_wall_ms();
        uint64_t sleep_ms = k->def.batch.max_wait_ms < POLL_MS ? k->def.batch.max_wait_ms : POLL_MS;
        /* The replica of its stream (replicate_to): replicated requests
         * wait for its commits, so it batches what is there and does not
         * wait to batch (docs/api.md "Replicated acknowledgement"). */
        spw_sink_batch_cfg bc = k->def.batch;
        int replica = strcmp(k->s->cfg.replicate_to, k->def.name) == 0;
        if (replica)
            bc.max_wait_ms = 0;
        int worked = 0;
        if (k->def.kind->group_begin) {
            worked = cycle_group(k, &bc, now, replica);
            update_rate(k, (uint64_t)spw_wall_ms());
            if (!worked && spw__sink_nap(k, sleep_ms ? sleep_ms : 1))
                break;
            continue;
        }
        for (uint32_t i = 0; i < k->nparts && !spw__sink_stopping(k); i++) {
            sink_part *sp = &k->parts[i];
            /* reading goes on after the pending batch, if it is this partition's */
            uint64_t from = k->has_pend && k->pend.part == i ? spw__sink_pend_end(k) : atomic_load(&sp->next);
            uint64_t vend, age;
            if (window_wanted(k, &bc, i, from, now, &vend, &age) != WIN_DUE)
                continue;
            int n = collect(k, i, from);
            if (n < 0) {
                spw__sink_set_error(k, "reading partition %u: %s", i, spw_strerror(n));
                atomic_fetch_add(&k->errors, 1);
                continue;
            }
            if (n == 0 || !spw_sink_batch_due(&bc, (uint32_t)n, k->b.bytes, age)) {
                sp->checked_end = vend;
                continue;
            }
            sp->checked_end = 0;
            if (k->has_pend) {
                int same = k->pend.part == i;
                spw__sink_finish_pending(k);
                if (spw__sink_stopping(k))
                    break;
                /* what was read after the pending batch follows on only if all of it got there */
                if (same && atomic_load(&sp->next) != from)
                    continue;
            }
            k->b.part = i;
            spw__sink_deliver_batch(k);
            if (spw__sink_stopping(k))
                break;
            uint64_t after = k->has_pend ? spw__sink_pend_end(k) : atomic_load(&sp->next);
            sp->first_seen_ms = after < vend ? now : 0;
            worked = 1;
        }
        /* nothing else to write: the pending batch is not kept waiting */
        if (k->has_pend && !worked) {
            spw__sink_finish_pending(k);
            worked = 1;
        }
        update_rate(k, (uint64_t)spw_wall_ms());
        if (!worked && spw__sink_nap(k, sleep_ms ? sleep_ms : 1))
            break;
    }
    if (k->has_pend)
        spw__sink_finish_pending(k);
    spw__sink_detach(k);
    spw__sink_release_pre(k);
    atomic_store(&k->state, ST_STOPPED);
    return NULL;
}
