/*
 * A sink's progress and its hold on the stream. The progress file
 * (DATA/sinks/NAME/progress, docs/formats/sink-progress.md) holds the
 * next position of every partition; attaching takes a catalog reference
 * and one retention hold per partition at the sink's position (the
 * progress file's, or the kind's own position), and the holds taken before the worker starts
 * (pre-holds) keep retention off what the sink has not delivered while
 * the target is down. Also the small pieces of sink state the worker and
 * delivery share: last error, nap, stop check, detach.
 * Contract: a progress file is written only under k->mu with k->deleted
 * unset, so a deleted sink never writes into its successor's directory.
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
#include "svc/replicate.h"

/* ---- files ---- */

static void sink_dir(const spw_sink *k, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", k->m->dir, k->def.name);
}

/* Writes the progress file (the positions of every partition). */
int spw__sink_save_progress(spw_sink *k)
{
    uint64_t next[SPW_STREAM_PARTITIONS_MAX];
    for (uint32_t i = 0; i < k->nparts; i++)
        next[i] = atomic_load(&k->parts[i].next);
    spw_buf b = SPW_BUF_INIT;
    int r = spw_sink_progress_encode(&b, k->s->incarnation, next, k->nparts);
    char dir[4200];
    sink_dir(k, dir, sizeof dir);
    pthread_mutex_lock(&k->mu);
    if (r == 0 && !k->deleted)
        r = spw_os_write_file_atomic(dir, "progress", "progress.tmp", b.p, b.len, SPW_OS_SYNC_FULL);
    pthread_mutex_unlock(&k->mu);
    spw_buf_fini(&b);
    return r;
}

/* ---- state ---- */

void spw__sink_set_error(spw_sink *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void spw__sink_set_error(spw_sink *k, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&k->mu);
    va_start(ap, fmt);
    vsnprintf(k->last_error, sizeof k->last_error, fmt, ap);
    va_end(ap);
    k->last_error_ms = spw_wall_ms();
    pthread_mutex_unlock(&k->mu);
}

/* Sleeps up to ms or until stop; returns stop. */
int spw__sink_nap(spw_sink *k, uint64_t ms)
{
    uint64_t until = spw_mono_ns() + ms * 1000000u;
    pthread_mutex_lock(&k->mu);
    while (!k->stop && !k->kicked && spw_cond_wait_until(&k->cv, &k->mu, until) == 0) {
    }
    k->kicked = 0;
    int stop = k->stop;
    pthread_mutex_unlock(&k->mu);
    return stop;
}

int spw__sink_stopping(spw_sink *k)
{
    pthread_mutex_lock(&k->mu);
    int s = k->stop;
    pthread_mutex_unlock(&k->mu);
    return s;
}

void spw__sink_detach(spw_sink *k)
{
    pthread_mutex_lock(&k->mu);
    for (uint32_t i = 0; i < k->nparts; i++)
        if (k->parts[i].hold) {
            spw_hold_release(k->parts[i].hold);
            k->parts[i].hold = NULL;
        }
    spw_stream *s = k->s;
    k->s = NULL;
    pthread_mutex_unlock(&k->mu);
    if (s && k->m->svc->repl)
        spw_repl_detach(k->m->svc->repl, k->def.name, "the sink stopped or its stream was deleted");
    if (s)
        spw_stream_put(s);
}

/* Takes a hold at *pos (moved up to the partition's start if retention
 * already passed it). 0 or an error. */
static int take_hold(spw_part *p, uint64_t *pos, spw_hold **h)
{
    for (int tries = 0; tries < 100; tries++) {
        spw_part_state st;
        spw_part_state_get(p, &st);
        if (*pos > st.next_offset)
            *pos = st.next_offset;
        if (*pos < st.start_offset)
            *pos = st.start_offset;
        int r = spw_part_hold(p, *pos, h);
        if (r != SPW_ERANGE)
            return r;
    }
    return SPW_ERANGE;
}

/* Reads the progress file into next[] for the stream s (np partitions):
 * 0 (partitions the file lacks, and every partition when the file is of
 * another incarnation of the stream, start at 0), -ENOENT (no file),
 * SPW_ECORRUPT (damaged; logged), or an I/O error. */
static int read_progress(spw_sink *k, const spw_stream *s, uint64_t *next, uint32_t np)
{
    char dir[4200], path[4300];
    sink_dir(k, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/progress", dir);
    char *text;
    size_t len;
    int r = spw_os_read_file(path, 64 + 48 * (size_t)SPW_STREAM_PARTITIONS_MAX, &text, &len);
    if (r == -EFBIG) {
        text = spw_xstrdup(""); /* larger than any progress file: damaged, as below */
        len = 0;
    } else if (r < 0) {
        return r;
    }
    uint32_t n = 0;
    uint64_t inc = 0;
    r = spw_sink_progress_parse(text, len, &inc, next, SPW_STREAM_PARTITIONS_MAX, &n);
    spw_free(text);
    if (r < 0) {
        spw_error("sink %s: %s is damaged%s", k->def.name, path,
                  k->def.kind->position ? "" : "; not starting (move it aside to start from the beginning)");
        return SPW_ECORRUPT;
    }
    if (inc != s->incarnation) {
        spw_warn("sink %s: %s belongs to an earlier stream %s (incarnation %" PRIu64 ", now %" PRIu64
                 "); starting from the oldest offsets",
                 k->def.name, path, s->cfg.name, inc, s->incarnation);
        n = 0;
    }
    for (uint32_t i = n; i < np; i++)
        next[i] = 0;
    return 0;
}

void spw__sink_release_pre(spw_sink *k)
{
    for (uint32_t i = 0; i < k->pre_n; i++)
        if (k->pre_holds[i])
            spw_hold_release(k->pre_holds[i]);
    spw_free(k->pre_holds);
    k->pre_holds = NULL;
    k->pre_n = 0;
    if (k->pre_s)
        spw_stream_put(k->pre_s);
    k->pre_s = NULL;
}

static int take_hold(spw_part *p, uint64_t *pos, spw_hold **h);

/* Takes the holds kept until the worker attaches (see pre_s): at the
 * progress file's positions, or at each partition's start when there is
 * no file or it does not say (a new sink delivers from the oldest
 * offset). Runs before sink_start, so before the server's first
 * retention pass and before its listeners. */
void spw__sink_take_pre_holds(spw_sink *k)
{
    spw_stream *s = spw_stream_get(k->m->svc->cat, k->def.stream, strlen(k->def.stream));
    if (!s)
        return; /* nothing to hold yet */
    uint32_t np = s->cfg.partitions;
    uint64_t *next = spw_xcalloc(SPW_STREAM_PARTITIONS_MAX, sizeof *next);
    if (read_progress(k, s, next, np) < 0)
        memset(next, 0, SPW_STREAM_PARTITIONS_MAX * sizeof *next);
    k->pre_s = s;
    k->pre_holds = spw_xcalloc(np, sizeof *k->pre_holds);
    k->pre_n = np;
    for (uint32_t i = 0; i < np; i++) {
        uint64_t pos = next[i];
        int r = take_hold(s->parts[i], &pos, &k->pre_holds[i]);
        if (r < 0)
            spw_error("sink %s: holding partition %u of %s at %" PRIu64 ": %s", k->def.name, i, s->cfg.name, pos,
                      spw_strerror(r));
    }
    spw_free(next);
}

/* Attaches to the stream: positions from the progress file (or the kind),
 * holds taken. 0, or -ENOENT (no stream yet), or an error. */
/* The registry's kick: a replicated request waits for this sink. */
static void repl_kick(void *arg)
{
    spw_sink *k = arg;
    pthread_mutex_lock(&k->mu);
    k->kicked = 1;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
}

/* Does the JSON string span sp hold exactly name (a stream or sink
 * name: no characters JSON escapes)? */
static int span_is(const spw_json_span *sp, const char *name)
{
    size_t n = strlen(name);
    return sp->type == SPW_JSON_STRING && sp->n == n + 2 && memcmp(sp->p + 1, name, n) == 0;
}

static int span_u64(const spw_json_span *sp, uint64_t *v)
{
    char t[24];
    if (sp->type != SPW_JSON_NUMBER || sp->n == 0 || sp->n >= sizeof t)
        return -1;
    memcpy(t, sp->p, sp->n);
    t[sp->n] = 0;
    char *e;
    *v = strtoull(t, &e, 10);
    return *e ? -1 : 0;
}

/* How many of the dead-letter stream's last records, per partition, a
 * replica reads back at attach (the registry keeps SPW_REPL_DEAD_KEPT). */
#define DEAD_READ_BACK 4096

/*
 * The registry's dead letters (svc/replicate.h spw_repl_dead) live in
 * memory: after a restart, a retried replicated request whose record this
 * sink had dead-lettered would be answered 202 (the progress passed it).
 * So a replica reads its dead letters back from the tail of its dlq
 * stream (docs/formats/sink-progress.md, "Dead-letter record"): those of
 * this sink and stream, of records newer than the stream's incarnation
 * (record ids and incarnations come from the same Snowflake generator:
 * an older stream of that name had smaller ones). Best effort: a record
 * that does not parse is skipped.
 */
static void repl_read_back_dead(spw_sink *k, spw_stream *s)
{
    if (!k->def.dlq[0] || !s->incarnation)
        return;
    spw_stream *d = spw_stream_get(k->m->svc->cat, k->def.dlq, strlen(k->def.dlq));
    if (!d)
        return;
    static const char *const paths[] = {"/sink", "/stream", "/partition", "/offset", "/id"};
    spw_json_ptr ptrs[5];
    for (int i = 0; i < 5; i++)
        if (spw_json_ptr_compile(&ptrs[i], paths[i]) != 0) {
            spw_stream_put(d);
            return;
        }
    spw_cursor c;
    spw_cursor_init(&c, d->parts[0], 0, 1u << 20);
    uint32_t seeded = 0;
    for (uint32_t pi = 0; pi < d->cfg.partitions; pi++) {
        spw_part_state st;
        spw_part_state_get(d->parts[pi], &st);
        uint64_t end = st.durable_offset;
        uint64_t from = end > DEAD_READ_BACK ? end - DEAD_READ_BACK : 0;
        if (from < st.start_offset)
            from = st.start_offset;
        spw_cursor_seek(&c, d->parts[pi], from);
        spw_record_view rv;
        while (spw_cursor_next(&c, &rv) == 1 && rv.offset < end) {
            spw_json_span f[5];
            spw_json_error je;
            const char *vend;
            const char *v = (const char *)rv.value;
            uint64_t part, off, id;
            if (spw_json_scan(v, v + rv.value_len, ptrs, 5, f, &vend, &je) != 0 || !span_is(&f[0], k->def.name) ||
                !span_is(&f[1], s->cfg.name) || span_u64(&f[2], &part) || span_u64(&f[3], &off) ||
                span_u64(&f[4], &id) || id <= s->incarnation || part >= s->cfg.partitions)
                continue;
            spw_repl_dead(k->m->svc->repl, k->def.name, (uint32_t)part, off, "dead-lettered before the server restarted");
            seeded++;
        }
    }
    spw_cursor_fini(&c);
    spw_stream_put(d);
    if (seeded)
        spw_info("sink %s: %u dead letters of stream %s read back from %s: replicated requests holding them are "
                 "answered 422",
                 k->def.name, seeded, s->cfg.name, k->def.dlq);
}

/* Tells the ack=replicated registry (svc/replicate.h) where the sink
 * attached and whether its target replicates; asked of the kind only when
 * the stream names this sink in replicate_to. */
static void repl_attach(spw_sink *k, spw_stream *s, const uint64_t *next, uint32_t np)
{
    spw_repl *r = k->m->svc->repl;
    if (!r)
        return;
    char why[400] = "";
    if (strcmp(s->cfg.replicate_to, k->def.name) == 0) {
        if (!k->def.kind->replicates)
            snprintf(why, sizeof why, "a %s sink cannot acknowledge ack=replicated (postgres and kafka can)",
                     k->def.kind->name);
        else if (k->def.kind->replicates(k->kst, why, sizeof why) != 1 && !why[0])
            snprintf(why, sizeof why, "its target does not replicate synchronously");
        if (why[0])
            spw_warn("sink %s: stream %s names it in replicate_to, but %s: ack=replicated requests are refused (503)",
                     k->def.name, s->cfg.name, why);
    }
    spw_repl_attach(r, k->def.name, s->cfg.name, s->incarnation, np, next, why[0] ? why : NULL, repl_kick, k);
    if (!why[0] && strcmp(s->cfg.replicate_to, k->def.name) == 0)
        repl_read_back_dead(k, s);
}

int spw__sink_attach(spw_sink *k)
{
    spw_stream *s = spw_stream_get(k->m->svc->cat, k->def.stream, strlen(k->def.stream));
    if (!s) {
        spw__sink_release_pre(k);
        return -ENOENT;
    }
    if (k->pre_s && k->pre_s != s)
        spw__sink_release_pre(k); /* held a stream deleted since */
    uint32_t np = s->cfg.partitions;
    uint64_t next[SPW_STREAM_PARTITIONS_MAX];
    memset(next, 0, sizeof next);
    if (k->def.kind->position) {
        for (uint32_t i = 0; i < np; i++) {
            int r = k->def.kind->position(k->kst, s->incarnation, i, &next[i]);
            if (r < 0) {
                spw_stream_put(s);
                const char *why = k->def.kind->position_error ? k->def.kind->position_error(k->kst) : NULL;
                spw__sink_set_error(k, "reading the position of partition %u from the target: %s", i,
                          why && *why ? why : spw_strerror(r));
                return r;
            }
        }
    } else {
        int r = read_progress(k, s, next, np);
        if (r == SPW_ECORRUPT) {
            char dir[4200];
            sink_dir(k, dir, sizeof dir);
            spw__sink_set_error(k, "progress file damaged: %s/progress", dir);
            spw_stream_put(s);
            return r;
        }
        if (r < 0 && r != -ENOENT) {
            spw_stream_put(s);
            spw__sink_set_error(k, "reading the progress file: %s", spw_strerror(r));
            return r;
        }
    }
    /* A position past the partition's end points at offsets recovery gave
     * to new records (the sink was shown records a power loss then cut,
     * before reads were limited to durable ones, or the log was cut by
     * hand): go on from there and the new records are skipped. Set it
     * down to the end, loudly (docs/architecture.md, "What readers see"). */
    int clamped = 0;
    for (uint32_t i = 0; i < np; i++) {
        /* The end at open, not now: records appended since (the sink may
         * attach late, e.g. while its target is down) take the offsets a
         * stale position points at. A sink attaches once per partition
         * (a re-created stream has new partitions), so a position it kept
         * is from before this open. */
        uint64_t end = spw_part_open_end(s->parts[i]);
        if (k->continues && spw_part_visible_end(s->parts[i]) > end)
            end = spw_part_visible_end(s->parts[i]);
        int rewound = 0;
        if (k->def.kind->position) {
            /* Asked even when the position (the kind's lowest) is not past
             * the end: a part of the target (a shard) may be. */
            int r = k->def.kind->rewind ? k->def.kind->rewind(k->kst, i, end) : next[i] > end ? -ENOTSUP : 0;
            if (r < 0) {
                spw_stream_put(s);
                spw__sink_set_error(k, "partition %u: setting the target's position %" PRIu64 " down to the end %" PRIu64
                             ": %s",
                          i, next[i], end, spw_strerror(r));
                return r;
            }
            rewound = r > 0;
        }
        if (next[i] <= end && !rewound)
            continue;
        if (next[i] > end)
            spw_error("sink %s: partition %u position %" PRIu64 " is past the partition's end %" PRIu64
                      " (records were lost and their offsets go to new records, or the stream was created again);"
                      " continuing at %" PRIu64,
                      k->def.name, i, next[i], end, end);
        else
            spw_error("sink %s: partition %u: the target's position was past the partition's end %" PRIu64
                      " in part (records were lost and their offsets go to new records, or the stream was created"
                      " again); set down to it",
                      k->def.name, i, end);
        atomic_fetch_add(&k->m->svc->positions_clamped, 1);
        if (next[i] > end)
            next[i] = end;
        clamped = 1;
    }
    sink_part *parts = spw_xcalloc(np, sizeof *parts);
    for (uint32_t i = 0; i < np; i++) {
        uint64_t pos = next[i];
        int r = take_hold(s->parts[i], &pos, &parts[i].hold);
        if (r < 0) {
            for (uint32_t j = 0; j < i; j++)
                spw_hold_release(parts[j].hold);
            spw_free(parts);
            spw_stream_put(s);
            spw__sink_set_error(k, "holding partition %u: %s", i, spw_strerror(r));
            return r;
        }
        if (pos != next[i] && next[i] != 0)
            spw_warn("sink %s: partition %u position %" PRIu64 " is outside the partition; starting at %" PRIu64,
                     k->def.name, i, next[i], pos);
        atomic_store(&parts[i].next, pos);
    }
    pthread_mutex_lock(&k->mu);
    sink_part *old = k->parts;
    k->parts = parts;
    k->nparts = np;
    k->s = s;
    pthread_mutex_unlock(&k->mu);
    spw_free(old);
    spw__sink_release_pre(k); /* the holds at the real positions replace them */
    k->continues = 0;
    if (clamped && !k->def.kind->position) {
        int r = spw__sink_save_progress(k);
        if (r < 0)
            spw_warn("sink %s: saving the clamped progress: %s (the next commit saves it)", k->def.name,
                     spw_strerror(r));
    }
    repl_attach(k, s, next, np);
    return 0;
}
