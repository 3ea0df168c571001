/*
 * The sink manager and the shared loop: see sink.h.
 *
 * Each sink has one worker thread. It attaches to its stream (a catalog
 * reference and one retention hold per partition at the sink's position),
 * then cycles over the partitions: it reads what is durable past the
 * position (spw_part_read, which takes no append lock), and when the batch
 * is due (loop.h: full by events or bytes, or its oldest record waited
 * max_wait_ms) delivers it with spw_sink_deliver — kind write, bisection,
 * dead letters, progress commit (file or kind) and hold move. Between
 * cycles it sleeps on its condition variable (at most 20 ms, or max_wait
 * if less), so stopping is prompt. A stream deleted under the sink drops
 * the attachment; the sink waits for a stream of that name again.
 *
 * Locking: m->mu guards the list of sinks; k->mu guards a sink's state
 * shown by GET (partition table, last error) and its "deleted" flag, which
 * is checked under it before a progress file is written, so a deleted
 * sink never writes into a directory a new sink of its name now owns.
 */
#include "sink/sink.h"

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
#include "svc/produce.h"
#include "svc/svc.h"
#include "catalog/catalog.h"

#define SINKS_MAX 256
#define OPTIONS_MAX 65536
#define DEF_MAX (OPTIONS_MAX + 4096)
#define POLL_MS 20

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
} sink_part;

enum { ST_RUNNING, ST_RETRYING, ST_NO_STREAM, ST_STOPPED };
static const char *const state_names[] = {"running", "retrying", "no_stream", "stopped"};

/* A batch of records of one partition: the records (their key and value
 * pointers into arena) and their key + value bytes. */
typedef struct sink_batch {
    uint32_t part;
    spw_sink_rec *recs;
    uint32_t nrecs, recs_cap;
    spw_buf arena;
    uint64_t bytes;
} sink_batch;

typedef struct spw_sink {
    struct spw_sinks *m;
    sink_def def;
    char *canon; /* canonical definition JSON */
    void *kst;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;    /* under mu */
    int deleted; /* under mu */
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
    struct spw_sink *next_dead;
} spw_sink;

struct spw_sinks {
    spw_svc *api;
    char dir[3800];
    pthread_mutex_t mu;
    spw_sink *v[SINKS_MAX];
    uint32_t n;
    spw_sink *dying; /* deleted, worker still stopping: joined at close */
};

/* ---- JSON output ---- */

static void jstr(spw_buf *b, const char *p, size_t n)
{
    if (spw_json_put_str(b, p, n))
        abort(); /* as spw_xmalloc */
}

static void jb64(spw_buf *b, const uint8_t *p, size_t n)
{
    if (spw_json_put_b64(b, p, n))
        abort();
}

static void jf(spw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jf(spw_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = spw_buf_vprintf(b, fmt, ap);
    va_end(ap);
    if (r == SPW_ENOMEM)
        abort(); /* as spw_xmalloc */
}

/* ---- definitions ---- */

/*
 * A definition's fields, and batch's and retry's, in option tables
 * (core/opts.h); each callback runs after the fields above it in its
 * table, so "batch" sees "kind". The stored and compared form is def_json
 * of the parsed definition, with "options" canonicalized by the kind's
 * table: definitions that mean the same are equal (docs/api.md "PUT
 * /v1/sinks/{name}").
 */
static const spw_opt batch_opts[] = {
    {.name = "max_events", .type = SPW_OPT_INT, .off = offsetof(sink_def, batch.max_events), .size = 4,
     .def = 5000, .min = 1, .max = 1000000, .help = "records in one write at most (the kind may choose another default)"},
    {.name = "max_bytes", .type = SPW_OPT_INT, .off = offsetof(sink_def, batch.max_bytes), .size = 8,
     .def = 4 << 20, .min = 1, .max = 256 << 20, .help = "keys and values in one write at most"},
    {.name = "max_wait_ms", .type = SPW_OPT_INT, .off = offsetof(sink_def, batch.max_wait_ms), .size = 4, .def = 200,
     .min = 0, .max = 3600000, .help = "how long a partial batch waits"},
};

static const spw_opt retry_opts[] = {
    {.name = "initial_ms", .type = SPW_OPT_INT, .off = offsetof(sink_def, retry_initial_ms), .size = 8, .def = 100,
     .min = 1, .max = 3600000, .help = "the first retry's delay"},
    {.name = "max_ms", .type = SPW_OPT_INT, .off = offsetof(sink_def, retry_max_ms), .size = 8, .def = 30000,
     .min = 1, .max = 3600000, .help = "the longest delay between retries"},
};

static int has_member(const spw_json_span *obj, const char *name)
{
    spw_json_iter it;
    spw_json_span k, v;
    spw_json_iter_init(&it, obj);
    while (spw_json_iter_next(&it, &k, &v))
        if (spw_json_str_eq(&k, name))
            return 1;
    return 0;
}

static const char *sub_table(sink_def *d, const spw_json_span *v, const spw_opt *t, size_t n, const char *where,
                             char *buf, size_t cap)
{
    return spw_opts_parse(t, n, where, "sink", v->p, v->n, NULL, d, NULL, buf, cap) == 0 ? NULL : buf;
}

static const char *def_name(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    return spw_json_str_eq(v, ((sink_def *)obj)->name) ? NULL : "\"name\" must be the name in the path";
}

static const char *def_stream(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)v, (void)o, (void)buf, (void)cap;
    const char *s = ((sink_def *)obj)->stream;
    return spw_stream_name_ok(s, strlen(s)) ? NULL : "\"stream\" must be a stream name";
}

static const char *def_dlq(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)v, (void)o, (void)buf, (void)cap;
    const char *s = ((sink_def *)obj)->dlq;
    return !s[0] || spw_stream_name_ok(s, strlen(s)) ? NULL : "\"dlq\" must be a stream name or null";
}

static const char *def_kind(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    sink_def *d = obj;
    char kn[32];
    long n = spw_json_unescape(v, kn, sizeof kn - 1);
    if (n < 0)
        return "\"kind\" must be a sink kind's name";
    /* unknown, or not built in (kinds.c): def_parse answers with its code */
    d->kind_err = spw_sink_kind_lookup(kn, (size_t)n, &d->kind, buf, cap);
    return d->kind_err < 0 ? buf : NULL;
}

static const char *def_batch(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    sink_def *d = obj;
    const char *bad = sub_table(d, v, batch_opts, sizeof batch_opts / sizeof batch_opts[0], "batch", buf, cap);
    if (!bad && d->kind->default_max_events && !has_member(v, "max_events"))
        d->batch.max_events = d->kind->default_max_events;
    if (!bad && d->kind->default_max_bytes && !has_member(v, "max_bytes"))
        d->batch.max_bytes = d->kind->default_max_bytes;
    return bad;
}

static const char *def_retry(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    return sub_table(obj, v, retry_opts, sizeof retry_opts / sizeof retry_opts[0], "retry", buf, cap);
}

/* "options": canonicalized by the kind's table (its values checked by it;
 * the kind's open checks the rest). */
static const char *def_options(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    sink_def *d = obj;
    if (v->n > OPTIONS_MAX)
        return "\"options\" must be an object of at most 65536 bytes";
    char what[48];
    snprintf(what, sizeof what, "%s sink", d->kind->name);
    spw_buf c = SPW_BUF_INIT;
    if (spw_opts_parse(d->kind->opts, d->kind->nopts, "options", what, v->p, v->n, d->stream, NULL, &c, buf, cap) <
        0) {
        spw_buf_fini(&c);
        return buf;
    }
    spw_free(d->options);
    d->options = spw_xmalloc(c.len + 1);
    memcpy(d->options, c.p, c.len);
    d->options[c.len] = 0;
    d->options_len = c.len;
    spw_buf_fini(&c);
    return NULL;
}

static const spw_opt def_opts[] = {
    {.name = "name", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_STRING, .parse = def_name,
     .must = "the name in the path", .help = "the sink's name, as in the path"},
    {.name = "stream", .type = SPW_OPT_STR, .off = offsetof(sink_def, stream), .size = sizeof ((sink_def *)0)->stream,
     .parse = def_stream, .flags = SPW_OPT_REQUIRED, .must = "a stream name", .help = "the stream delivered"},
    {.name = "kind", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_STRING, .parse = def_kind, .flags = SPW_OPT_REQUIRED,
     .must = "a sink kind's name", .help = "the kind: forward, postgres or kafka (those built in)"},
    {.name = "batch", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_OBJECT, .def_str = "{}", .parse = def_batch,
     .must = "an object", .help = "{max_events, max_bytes, max_wait_ms}"},
    {.name = "retry", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_OBJECT, .def_str = "{}", .parse = def_retry,
     .must = "an object", .help = "{initial_ms, max_ms}"},
    {.name = "dlq", .type = SPW_OPT_STR, .off = offsetof(sink_def, dlq), .size = sizeof ((sink_def *)0)->dlq,
     .parse = def_dlq, .flags = SPW_OPT_NULLABLE, .must = "a stream name or null",
     .help = "the dead-letter stream, or null"},
    {.name = "options", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_OBJECT, .def_str = "{}", .parse = def_options,
     .must = "an object", .help = "the kind's options"},
};

void spw_sinks_help(spw_buf *out)
{
    spw_opts_help(def_opts, sizeof def_opts / sizeof def_opts[0], NULL, out);
    spw_opts_help(batch_opts, sizeof batch_opts / sizeof batch_opts[0], "batch", out);
    spw_opts_help(retry_opts, sizeof retry_opts / sizeof retry_opts[0], "retry", out);
    const spw_sink_kind *k;
    for (size_t i = 0; (k = spw_sink_kind_at(i)) != NULL; i++) {
        spw_buf_printf(out, "\n  kind \"%s\" options:\n", k->name);
        spw_opts_help(k->opts, k->nopts, "options", out);
    }
}

#define FAIL(...)                                                                                                      \
    do {                                                                                                               \
        snprintf(err, cap, __VA_ARGS__);                                                                               \
        return SPW_EINVAL;                                                                                             \
    } while (0)

/* Parses a PUT body into d (options canonicalized and copied: free with def_fini). */
static int def_parse(sink_def *d, const char *name, const char *body, size_t len, char *err, size_t cap)
{
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    if (len > DEF_MAX)
        FAIL("the definition is over %d bytes", DEF_MAX);
    if (spw_opts_parse(def_opts, sizeof def_opts / sizeof def_opts[0], NULL, "sink", body, len, NULL, d, NULL, err,
                       cap) < 0) {
        spw_free(d->options);
        d->options = NULL;
        return d->kind_err < 0 ? d->kind_err : SPW_EINVAL; /* SPW_SINK_ENOTBUILT: its own answer */
    }
    if (d->retry_max_ms < d->retry_initial_ms) {
        spw_free(d->options);
        d->options = NULL;
        FAIL("retry.max_ms must be at least retry.initial_ms");
    }
    if (strcmp(d->dlq, d->stream) == 0) {
        spw_free(d->options);
        d->options = NULL;
        FAIL("\"dlq\" must not be the sink's own stream");
    }
    return 0;
}

static void def_fini(sink_def *d)
{
    spw_free(d->options);
    d->options = NULL;
}

static void def_json(const sink_def *d, spw_buf *b)
{
    jf(b, "{\"name\":");
    jstr(b, d->name, strlen(d->name));
    jf(b, ",\"stream\":");
    jstr(b, d->stream, strlen(d->stream));
    jf(b, ",\"kind\":\"%s\",\"batch\":{\"max_events\":%" PRIu32 ",\"max_bytes\":%" PRIu64
          ",\"max_wait_ms\":%" PRIu32 "},\"retry\":{\"initial_ms\":%" PRIu64 ",\"max_ms\":%" PRIu64 "},\"dlq\":",
       d->kind->name, d->batch.max_events, d->batch.max_bytes, d->batch.max_wait_ms, d->retry_initial_ms,
       d->retry_max_ms);
    if (d->dlq[0])
        jstr(b, d->dlq, strlen(d->dlq));
    else
        jf(b, "null");
    jf(b, ",\"options\":");
    spw_buf_put(b, d->options, d->options_len);
    jf(b, "}");
}

/* ---- files ---- */


static void sink_dir(const spw_sink *k, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", k->m->dir, k->def.name);
}

/* Writes the progress file (the positions of every partition). */
static int save_progress(spw_sink *k)
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

static void set_error(spw_sink *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(spw_sink *k, const char *fmt, ...)
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
static int nap(spw_sink *k, uint64_t ms)
{
    struct timespec ts = spw_deadline(CLOCK_MONOTONIC, ms * 1000000u);
    pthread_mutex_lock(&k->mu);
    while (!k->stop && pthread_cond_timedwait(&k->cv, &k->mu, &ts) == 0) {
    }
    int stop = k->stop;
    pthread_mutex_unlock(&k->mu);
    return stop;
}

static int stopping(spw_sink *k)
{
    pthread_mutex_lock(&k->mu);
    int s = k->stop;
    pthread_mutex_unlock(&k->mu);
    return s;
}

static void detach(spw_sink *k)
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

static void release_pre(spw_sink *k)
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
static void take_pre_holds(spw_sink *k)
{
    spw_stream *s = spw_stream_get(k->m->api->cat, k->def.stream, strlen(k->def.stream));
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
static int attach(spw_sink *k)
{
    spw_stream *s = spw_stream_get(k->m->api->cat, k->def.stream, strlen(k->def.stream));
    if (!s) {
        release_pre(k);
        return -ENOENT;
    }
    if (k->pre_s && k->pre_s != s)
        release_pre(k); /* held a stream deleted since */
    uint32_t np = s->cfg.partitions;
    uint64_t next[SPW_STREAM_PARTITIONS_MAX];
    memset(next, 0, sizeof next);
    if (k->def.kind->position) {
        for (uint32_t i = 0; i < np; i++) {
            int r = k->def.kind->position(k->kst, s->incarnation, i, &next[i]);
            if (r < 0) {
                spw_stream_put(s);
                const char *why = k->def.kind->position_error ? k->def.kind->position_error(k->kst) : NULL;
                set_error(k, "reading the position of partition %u from the target: %s", i,
                          why && *why ? why : spw_strerror(r));
                return r;
            }
        }
    } else {
        int r = read_progress(k, s, next, np);
        if (r == SPW_ECORRUPT) {
            char dir[4200];
            sink_dir(k, dir, sizeof dir);
            set_error(k, "progress file damaged: %s/progress", dir);
            spw_stream_put(s);
            return r;
        }
        if (r < 0 && r != -ENOENT) {
            spw_stream_put(s);
            set_error(k, "reading the progress file: %s", spw_strerror(r));
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
        int rewound = 0;
        if (k->def.kind->position) {
            /* Asked even when the position (the kind's lowest) is not past
             * the end: a part of the target (a shard) may be. */
            int r = k->def.kind->rewind ? k->def.kind->rewind(k->kst, i, end) : next[i] > end ? -ENOTSUP : 0;
            if (r < 0) {
                spw_stream_put(s);
                set_error(k, "partition %u: setting the target's position %" PRIu64 " down to the end %" PRIu64
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
        atomic_fetch_add(&k->m->api->positions_clamped, 1);
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
            set_error(k, "holding partition %u: %s", i, spw_strerror(r));
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
    release_pre(k); /* the holds at the real positions replace them */
    if (clamped && !k->def.kind->position) {
        int r = save_progress(k);
        if (r < 0)
            spw_warn("sink %s: saving the clamped progress: %s (the next commit saves it)", k->def.name,
                     spw_strerror(r));
    }
    return 0;
}

/* ---- reading a batch ---- */

/* Collects records of partition pi from offset off into k->b.recs: the
 * sink's position, or where the pending batch ends. Returns the count (0:
 * nothing), or an error. Reads with the record cursor (log/cursor.h):
 * damage met after records ends the window (they are delivered first);
 * damage at the position is skipped to the cursor's resume offset, logged
 * with its offsets, counted in errors_total and shown as last_error. */
static int collect(spw_sink *k, uint32_t pi, uint64_t off)
{
    spw_part *p = k->s->parts[pi];
    /* a damaged or deleted range moves the position only when reading from it */
    int at_position = off == atomic_load(&k->parts[pi].next);
    k->b.nrecs = 0;
    k->b.bytes = 0;
    k->b.arena.len = 0;
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
    while (k->b.nrecs < bc->max_events && k->b.bytes < bc->max_bytes && (r = spw_cursor_next(&k->cur, &rv)) == 1) {
        const spw_batch_hdr *h = spw_cursor_batch(&k->cur);
        k->log_per_rec = (h->length + h->record_count - 1) / h->record_count;
        if (k->b.nrecs == k->b.recs_cap) {
            k->b.recs_cap = k->b.recs_cap ? k->b.recs_cap * 2 : 256;
            k->b.recs = spw_xrealloc(k->b.recs, k->b.recs_cap * sizeof *k->b.recs);
        }
        size_t kl = rv.key_len > 0 ? (size_t)rv.key_len : 0;
        size_t ka = k->b.arena.len;
        if (spw_buf_put(&k->b.arena, rv.key, kl) || spw_buf_put(&k->b.arena, rv.value, rv.value_len)) {
            k->b.nrecs = 0;
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
    if (r == SPW_ECORRUPT && k->b.nrecs == 0 && k->cur.resume && at_position) {
        uint64_t from = k->cur.damage_from, resume = k->cur.resume;
        spw_error("sink %s: partition %u: offsets %" PRIu64 "..%" PRIu64
                  " are damaged on disk and cannot be delivered (run spillway check); skipping them, resuming at "
                  "offset %" PRIu64,
                  k->def.name, pi, from, resume - 1, resume);
        set_error(k, "partition %u: offsets %" PRIu64 "..%" PRIu64 " are damaged on disk: skipped, resumed at %" PRIu64,
                  pi, from, resume - 1, resume);
        atomic_fetch_add(&k->errors, 1);
        atomic_store(&k->parts[pi].next, resume);
        return 0;
    }
    if (r == SPW_ERANGE && k->b.nrecs == 0 && at_position) {
        spw_part_state st;
        spw_part_state_get(p, &st);
        if (off < st.start_offset) {
            spw_warn("sink %s: partition %u: offset %" PRIu64 " is gone; continuing at %" PRIu64, k->def.name, pi,
                     off, st.start_offset);
            atomic_store(&k->parts[pi].next, st.start_offset);
        }
        return 0;
    }
    if (r < 0 && !k->b.nrecs)
        return r;
    /* Every return with records comes here (an error after records: those
     * are delivered first); their pointers are offsets until now. */
    for (uint32_t i = 0; i < k->b.nrecs; i++) {
        k->b.recs[i].key = k->b.arena.p + (uintptr_t)k->b.recs[i].key;
        k->b.recs[i].value = k->b.arena.p + (uintptr_t)k->b.recs[i].value;
    }
    return (int)k->b.nrecs;
}

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
        set_error(k, "%s: %s", r == SPW_SINK_REJECT ? "rejected" : "target unavailable", err);
    }
}

static int op_write(void *arg, uint32_t from, uint32_t n, uint32_t *done, char *err, size_t cap)
{
    spw_sink *k = arg;
    if (stopping(k)) /* deleted or shutting down: op_wait ends the delivery */
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
    jf(b, "{\"error\":");
    jstr(b, err, strlen(err));
    jf(b, ",\"sink\":");
    jstr(b, k->def.name, strlen(k->def.name));
    jf(b, ",\"stream\":");
    jstr(b, k->def.stream, strlen(k->def.stream));
    jf(b, ",\"partition\":%" PRIu32 ",\"offset\":%" PRIu64 ",\"id\":%" PRIu64 ",\"ts\":%" PRId64 ",", k->b.part,
       r->offset, r->id, r->ts);
    if (r->key_len < 0)
        jf(b, "\"key\":null");
    else if (spw__key_text_ok(r->key, (size_t)r->key_len)) {
        jf(b, "\"key\":");
        jstr(b, (const char *)r->key, (size_t)r->key_len);
    } else {
        jf(b, "\"key_b64\":");
        jb64(b, r->key, (size_t)r->key_len);
    }
    if (!k->s->cfg.format_bytes) {
        jf(b, ",\"value\":");
        spw_buf_put(b, r->value, r->value_len);
    } else {
        jf(b, ",\"value_b64\":");
        jb64(b, r->value, r->value_len);
    }
    jf(b, "}");
}

static int op_dead(void *arg, uint32_t i, const char *err)
{
    spw_sink *k = arg;
    const spw_sink_rec *r = &k->b.recs[i];
    if (!k->def.dlq[0]) {
        set_error(k, "record at partition %u offset %" PRIu64 " rejected (%s) and the sink has no dlq: stopped there",
                  k->b.part, r->offset, err);
        return SPW_EINVAL;
    }
    spw_stream *d = spw_stream_get(k->m->api->cat, k->def.dlq, strlen(k->def.dlq));
    if (!d) {
        set_error(k, "dead-letter stream %s does not exist", k->def.dlq);
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
    int rc = spw_produce_submit(k->m->api, d, &rec, 1, UINT32_MAX, SPW_ACK_FSYNC, 0, 0, dlq_done, &w);
    spw_buf_fini(&v);
    if (rc < 0) {
        spw_stream_put(d);
        set_error(k, "appending to dead-letter stream %s: %s", k->def.dlq, spw_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    spw_produce_free(w.pr); /* releases the reference to d */
    if (w.err) {
        set_error(k, "appending to dead-letter stream %s: %s", k->def.dlq, spw_strerror(w.err));
        return w.err;
    }
    atomic_fetch_add(&k->dlq, 1);
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
    int r = 0;
    if (k->def.kind->commit)
        r = k->def.kind->commit(k->kst, k->b.part, next);
    if (r == 0 && !k->def.kind->position) {
        r = save_progress(k);
    } else if (r == 0) {
        /* The target holds the position; the file is the lower bound that
         * retention holds at before the target answers again after a
         * restart. Lagging is safe, so at most once a second, and a
         * failure only logged. */
        uint64_t now = (uint64_t)spw_wall_ms();
        if (now - k->lb_saved_ms >= 1000) {
            k->lb_saved_ms = now;
            int e = save_progress(k);
            if (e < 0)
                spw_warn("sink %s: saving the local lower bound of its progress: %s", k->def.name, spw_strerror(e));
        }
    }
    if (r == 0 && sp->hold)
        spw_hold_move(sp->hold, next); /* ERANGE impossible: next is above the held offset */
    return r;
}

static int op_wait(void *arg, uint32_t attempt, const char *err)
{
    spw_sink *k = arg;
    if (stopping(k))
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
    return nap(k, ms);
}

static const spw_sink_deliver_ops deliver_ops = {op_write, op_dead, op_progress, op_wait};

/* ---- pipelined writes (the kind's write_begin/write_end) ---- */

/* The offset after the pending batch's last record. */
static uint64_t pend_end(const spw_sink *k) { return k->pend.recs[k->pend.nrecs - 1].offset + 1; }

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

/* Ends the pending batch: progress when all of it got there, else the
 * usual delivery of what did not. */
static void finish_pending(spw_sink *k)
{
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
static void deliver_batch(spw_sink *k)
{
    if (k->def.kind->write_begin && !stopping(k)) {
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

static void update_rate(spw_sink *k, uint64_t now)
{
    if (now - k->rate_t0_ms < 1000)
        return;
    uint64_t d = atomic_load(&k->delivered);
    atomic_store(&k->rate_milli, (d - k->rate_n0) * 1000000 / (now - k->rate_t0_ms));
    k->rate_t0_ms = now;
    k->rate_n0 = d;
}

static void *worker(void *arg)
{
    spw_sink *k = arg;
    uint32_t attempt = 0;
    k->rate_t0_ms = (uint64_t)spw_wall_ms();
    while (!stopping(k)) {
        if (!k->s) {
            int r = attach(k);
            if (r == -ENOENT) {
                atomic_store(&k->state, ST_NO_STREAM);
                if (nap(k, 500))
                    break;
                continue;
            }
            if (r < 0) {
                if (op_wait(k, attempt++, "attaching to the stream"))
                    break;
                continue;
            }
            attempt = 0;
            atomic_store(&k->state, ST_RUNNING);
        }
        if (k->s->deleted) {
            set_error(k, "stream %s was deleted", k->def.stream);
            if (k->has_pend)
                finish_pending(k);
            detach(k);
            continue;
        }
        uint64_t now = (uint64_t)spw_wall_ms();
        uint64_t sleep_ms = k->def.batch.max_wait_ms < POLL_MS ? k->def.batch.max_wait_ms : POLL_MS;
        int worked = 0;
        for (uint32_t i = 0; i < k->nparts && !stopping(k); i++) {
            sink_part *sp = &k->parts[i];
            spw_part_state st;
            spw_part_state_get(k->s->parts[i], &st);
            atomic_store(&sp->end, st.next_offset);
            /* reading goes on after the pending batch, if it is this partition's */
            uint64_t from = k->has_pend && k->pend.part == i ? pend_end(k) : atomic_load(&sp->next);
            /* Only durable records are read (docs/architecture.md, "What
             * readers see"): progress never passes what a power loss keeps. */
            uint64_t vend = st.durable_offset;
            if (st.written_offset <= from) {
                sp->first_seen_ms = 0;
                continue;
            }
            if (!sp->first_seen_ms)
                sp->first_seen_ms = now;
            if (vend <= from) {
                /* Written, not yet durable: once the batch would be due by
                 * age, ask for the fsync instead of waiting for the timer. */
                if (now - sp->first_seen_ms >= k->def.batch.max_wait_ms)
                    spw_part_sync_soon(k->s->parts[i]);
                continue;
            }
            uint64_t avail = vend - from;
            uint64_t age = now - sp->first_seen_ms;
            /* Not due by count or age, and not by bytes either: nothing
             * new since a read found it not due, or fewer records than
             * max_bytes of log holds (log bytes per record, as last
             * measured, exceed the key + value bytes the batch counts).
             * No need to read it yet. */
            if (avail < k->def.batch.max_events && age < k->def.batch.max_wait_ms &&
                (sp->checked_end == vend ||
                 (k->log_per_rec && avail * k->log_per_rec < k->def.batch.max_bytes)))
                continue;
            int n = collect(k, i, from);
            if (n < 0) {
                set_error(k, "reading partition %u: %s", i, spw_strerror(n));
                atomic_fetch_add(&k->errors, 1);
                continue;
            }
            if (n == 0 || !spw_sink_batch_due(&k->def.batch, (uint32_t)n, k->b.bytes, age)) {
                sp->checked_end = vend;
                continue;
            }
            sp->checked_end = 0;
            if (k->has_pend) {
                int same = k->pend.part == i;
                finish_pending(k);
                if (stopping(k))
                    break;
                /* what was read after the pending batch follows on only if all of it got there */
                if (same && atomic_load(&sp->next) != from)
                    continue;
            }
            k->b.part = i;
            deliver_batch(k);
            if (stopping(k))
                break;
            uint64_t after = k->has_pend ? pend_end(k) : atomic_load(&sp->next);
            sp->first_seen_ms = after < vend ? now : 0;
            worked = 1;
        }
        /* nothing else to write: the pending batch is not kept waiting */
        if (k->has_pend && !worked) {
            finish_pending(k);
            worked = 1;
        }
        update_rate(k, (uint64_t)spw_wall_ms());
        if (!worked && nap(k, sleep_ms ? sleep_ms : 1))
            break;
    }
    if (k->has_pend)
        finish_pending(k);
    detach(k);
    release_pre(k);
    atomic_store(&k->state, ST_STOPPED);
    return NULL;
}

/* ---- manager ---- */

static spw_sink *sink_new(spw_sinks *m, sink_def *d, void *kst)
{
    spw_sink *k = spw_xcalloc(1, sizeof *k);
    k->m = m;
    k->def = *d;
    k->kst = kst;
    spw_buf b = SPW_BUF_INIT;
    def_json(d, &b);
    spw_buf_put(&b, "", 1);
    k->canon = (char *)b.p;
    pthread_mutex_init(&k->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&k->cv, &ca);
    pthread_condattr_destroy(&ca);
    return k;
}

static int sink_start(spw_sink *k)
{
    take_pre_holds(k);
    int r = pthread_create(&k->th, NULL, worker, k);
    if (r)
        release_pre(k);
    return r ? -r : 0;
}

static void sink_stop_free(spw_sink *k)
{
    pthread_mutex_lock(&k->mu);
    k->stop = 1;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->th, NULL);
    k->def.kind->close(k->kst);
    def_fini(&k->def);
    spw_free(k->canon);
    spw_free(k->parts);
    spw_free(k->b.recs);
    spw_buf_fini(&k->b.arena);
    spw_free(k->pend.recs);
    spw_buf_fini(&k->pend.arena);
    spw_cursor_fini(&k->cur);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    spw_free(k);
}

static size_t find_pos(spw_sinks *m, const char *name, int *found)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(m->v[mid]->def.name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static void insert(spw_sinks *m, spw_sink *k)
{
    int found;
    size_t at = find_pos(m, k->def.name, &found);
    memmove(m->v + at + 1, m->v + at, (m->n - at) * sizeof *m->v);
    m->v[at] = k;
    m->n++;
}

static void load_one(spw_sinks *m, const char *name)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s/sink.json", m->dir, name);
    char *text;
    size_t len;
    int r = spw_os_read_file(path, DEF_MAX, &text, &len);
    if (r < 0) {
        if (r != -ENOENT)
            spw_error("sink %s: reading %s: %s; not started", name, path, spw_strerror(r));
        return;
    }
    sink_def d;
    char err[300];
    void *kst = NULL;
    if (def_parse(&d, name, text, len, err, sizeof err) < 0) {
        spw_error("sink %s: %s: %s; not started", name, path, err);
    } else if (d.kind->open(d.name, d.stream, d.options, d.options_len, &kst, err, sizeof err) < 0) {
        spw_error("sink %s: %s; not started", name, err);
        def_fini(&d);
    } else if (m->n >= SINKS_MAX) {
        spw_error("sink %s: more than %d sinks; not started", name, SINKS_MAX);
        d.kind->close(kst);
        def_fini(&d);
    } else {
        spw_sink *k = sink_new(m, &d, kst);
        if (sink_start(k) < 0) {
            spw_error("sink %s: cannot start its thread", name);
        } else {
            insert(m, k);
            spw_info("sink %s: %s from stream %s", name, d.kind->name, d.stream);
        }
    }
    spw_free(text);
}

int spw_sinks_open(spw_svc *api, spw_sinks **out)
{
    spw_sinks *m = spw_xcalloc(1, sizeof *m);
    m->api = api;
    snprintf(m->dir, sizeof m->dir, "%s/sinks", api->data_dir);
    pthread_mutex_init(&m->mu, NULL);
    int r = spw_os_mkdirs(m->dir, 0755);
    if (r < 0) {
        spw_free(m);
        return r;
    }
    DIR *dir = opendir(m->dir);
    if (!dir) {
        r = -errno;
        spw_free(m);
        return r;
    }
    struct dirent *de;
    pthread_mutex_lock(&m->mu);
    while ((de = readdir(dir)) != NULL)
        if (spw_stream_name_ok(de->d_name, strlen(de->d_name)))
            load_one(m, de->d_name);
    pthread_mutex_unlock(&m->mu);
    closedir(dir);
    *out = m;
    return 0;
}

void spw_sinks_close(spw_sinks *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    for (uint32_t i = 0; i < m->n; i++) {
        pthread_mutex_lock(&m->v[i]->mu);
        m->v[i]->stop = 1;
        pthread_cond_broadcast(&m->v[i]->cv);
        pthread_mutex_unlock(&m->v[i]->mu);
    }
    for (uint32_t i = 0; i < m->n; i++)
        sink_stop_free(m->v[i]);
    m->n = 0;
    while (m->dying) {
        spw_sink *k = m->dying;
        m->dying = k->next_dead;
        sink_stop_free(k);
    }
    pthread_mutex_unlock(&m->mu);
    pthread_mutex_destroy(&m->mu);
    spw_free(m);
}

int spw_sinks_put(spw_sinks *m, const char *name, const char *body, size_t len, spw_buf *canon, char *err,
                  size_t cap)
{
    sink_def d;
    int r = def_parse(&d, name, body, len, err, cap);
    if (r < 0)
        return r;
    spw_stream *s = spw_stream_get(m->api->cat, d.stream, strlen(d.stream));
    if (!s) {
        snprintf(err, cap, "no stream named %s", d.stream);
        def_fini(&d);
        return -ENOENT;
    }
    spw_stream_put(s);
    if (d.dlq[0]) {
        s = spw_stream_get(m->api->cat, d.dlq, strlen(d.dlq));
        if (!s) {
            snprintf(err, cap, "no stream named %s (the dlq)", d.dlq);
            def_fini(&d);
            return -ENOENT;
        }
        spw_stream_put(s);
    }
    spw_buf b = SPW_BUF_INIT;
    def_json(&d, &b);
    pthread_mutex_lock(&m->mu);
    int found;
    size_t at = find_pos(m, name, &found);
    if (found) {
        const char *c = m->v[at]->canon;
        int same = strlen(c) == b.len && memcmp(c, b.p, b.len) == 0;
        pthread_mutex_unlock(&m->mu);
        def_fini(&d);
        if (!same) {
            snprintf(err, cap, "sink %s exists with a different definition", name);
            spw_buf_fini(&b);
            return -EEXIST;
        }
        spw_buf_put(canon, b.p, b.len);
        spw_buf_fini(&b);
        return 0;
    }
    void *kst = NULL;
    if (m->n >= SINKS_MAX) {
        snprintf(err, cap, "at most %d sinks", SINKS_MAX);
        r = SPW_EINVAL;
    } else {
        r = d.kind->open(d.name, d.stream, d.options, d.options_len, &kst, err, cap);
    }
    if (r == 0) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", m->dir, name);
        char pp[4300];
        snprintf(pp, sizeof pp, "%s/progress", dir);
        r = spw_os_mkdirs(dir, 0755);
        if (r == 0)
            unlink(pp); /* a leftover of a deleted sink of this name */
        if (r == 0)
            r = spw_os_write_file_atomic(dir, "sink.json", "sink.json.tmp", b.p, b.len, SPW_OS_SYNC_FULL);
        if (r == 0)
            r = spw_os_fsync_dir(m->dir);
        if (r < 0) {
            snprintf(err, cap, "writing %s/sink.json: %s", dir, spw_strerror(r));
            d.kind->close(kst);
        }
    }
    if (r < 0) {
        pthread_mutex_unlock(&m->mu);
        def_fini(&d);
        spw_buf_fini(&b);
        return r;
    }
    spw_sink *k = sink_new(m, &d, kst);
    r = sink_start(k);
    if (r < 0) {
        snprintf(err, cap, "cannot start the sink's thread: %s", spw_strerror(r));
        k->th = pthread_self();
        pthread_mutex_unlock(&m->mu);
        k->def.kind->close(k->kst);
        def_fini(&k->def);
        spw_free(k->canon);
        spw_free(k);
        spw_buf_fini(&b);
        return r;
    }
    insert(m, k);
    pthread_mutex_unlock(&m->mu);
    spw_info("sink %s: created (%s from stream %s)", name, d.kind->name, d.stream);
    spw_buf_put(canon, b.p, b.len);
    spw_buf_fini(&b);
    return 1;
}

int spw_sinks_delete(spw_sinks *m, const char *name)
{
    pthread_mutex_lock(&m->mu);
    int found;
    size_t at = find_pos(m, name, &found);
    if (!found) {
        pthread_mutex_unlock(&m->mu);
        return -ENOENT;
    }
    spw_sink *k = m->v[at];
    memmove(m->v + at, m->v + at + 1, (m->n - at - 1) * sizeof *m->v);
    m->n--;
    pthread_mutex_lock(&k->mu);
    k->stop = 1;
    k->deleted = 1;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    char path[4400];
    snprintf(path, sizeof path, "%s/%s/sink.json", m->dir, name);
    unlink(path);
    snprintf(path, sizeof path, "%s/%s/progress", m->dir, name);
    unlink(path);
    snprintf(path, sizeof path, "%s/%s", m->dir, name);
    rmdir(path);
    spw_os_fsync_dir(m->dir);
    k->next_dead = m->dying;
    m->dying = k;
    pthread_mutex_unlock(&m->mu);
    spw_info("sink %s: deleted", name);
    return 0;
}

static void one_json(spw_sink *k, spw_buf *b)
{
    jf(b, "{\"name\":");
    jstr(b, k->def.name, strlen(k->def.name));
    jf(b, ",\"definition\":%s,\"state\":\"%s\"", k->canon, state_names[atomic_load(&k->state)]);
    pthread_mutex_lock(&k->mu);
    uint64_t lag = 0;
    spw_buf parts = SPW_BUF_INIT;
    for (uint32_t i = 0; i < k->nparts; i++) {
        uint64_t next = atomic_load(&k->parts[i].next), end = atomic_load(&k->parts[i].end);
        uint64_t l = end > next ? end - next : 0;
        lag += l;
        jf(&parts, "%s{\"partition\":%" PRIu32 ",\"position\":%" PRIu64 ",\"end\":%" PRIu64 ",\"lag\":%" PRIu64 "}",
           i ? "," : "", i, next, end, l);
    }
    jf(b, ",\"lag\":%" PRIu64 ",\"partitions\":[", lag);
    spw_buf_put(b, parts.p, parts.len);
    spw_buf_fini(&parts);
    jf(b, "],\"delivered_total\":%" PRIu64 ",\"delivered_bytes_total\":%" PRIu64 ",\"dlq_total\":%" PRIu64
          ",\"errors_total\":%" PRIu64 ",\"events_per_sec\":%.1f,\"last_error\":",
       atomic_load(&k->delivered), atomic_load(&k->delivered_bytes), atomic_load(&k->dlq), atomic_load(&k->errors),
       (double)atomic_load(&k->rate_milli) / 1000.0);
    if (k->last_error[0]) {
        jstr(b, k->last_error, strlen(k->last_error));
        jf(b, ",\"last_error_ms\":%" PRId64, k->last_error_ms);
    } else {
        jf(b, "null");
    }
    pthread_mutex_unlock(&k->mu);
    jf(b, "}");
}

int spw_sinks_get_json(spw_sinks *m, const char *name, spw_buf *out)
{
    pthread_mutex_lock(&m->mu);
    int found;
    size_t at = find_pos(m, name, &found);
    if (found)
        one_json(m->v[at], out);
    pthread_mutex_unlock(&m->mu);
    return found ? 0 : -ENOENT;
}

void spw_sinks_list_json(spw_sinks *m, spw_buf *out)
{
    jf(out, "{\"sinks\":[");
    pthread_mutex_lock(&m->mu);
    for (uint32_t i = 0; i < m->n; i++) {
        if (i)
            jf(out, ",");
        one_json(m->v[i], out);
    }
    pthread_mutex_unlock(&m->mu);
    jf(out, "]}");
}

void spw_sinks_metrics(spw_sinks *m, spw_buf *b)
{
    pthread_mutex_lock(&m->mu);
    if (m->n)
        jf(b, "# TYPE spillway_sink_lag gauge\n# TYPE spillway_sink_delivered_total counter\n"
              "# TYPE spillway_sink_errors_total counter\n# TYPE spillway_sink_dlq_total counter\n"
              "# TYPE spillway_sink_state gauge\n");
    for (uint32_t i = 0; i < m->n; i++) {
        spw_sink *k = m->v[i];
        pthread_mutex_lock(&k->mu);
        uint64_t lag = 0;
        for (uint32_t j = 0; j < k->nparts; j++) {
            uint64_t next = atomic_load(&k->parts[j].next), end = atomic_load(&k->parts[j].end);
            lag += end > next ? end - next : 0;
        }
        pthread_mutex_unlock(&k->mu);
        jf(b,
           "spillway_sink_lag{sink=\"%s\"} %" PRIu64 "\nspillway_sink_delivered_total{sink=\"%s\"} %" PRIu64
           "\nspillway_sink_errors_total{sink=\"%s\"} %" PRIu64 "\nspillway_sink_dlq_total{sink=\"%s\"} %" PRIu64
           "\n",
           k->def.name, lag, k->def.name, atomic_load(&k->delivered), k->def.name, atomic_load(&k->errors),
           k->def.name, atomic_load(&k->dlq));
        jf(b, "spillway_sink_state{sink=\"%s\",state=\"%s\"} 1\n", k->def.name, state_names[atomic_load(&k->state)]);
    }
    pthread_mutex_unlock(&m->mu);
}
