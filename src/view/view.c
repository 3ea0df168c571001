/*
 * The view manager (view.h): the list of views, loaded from DATA/views at
 * open and changed by PUT and DELETE, each view's start and stop, and
 * what GET, /metrics and the read-your-writes wait show. One concept a
 * file beside it, sharing view_int.h:
 *   view_def.c    definitions: parsing, canonical form, help text;
 *   view_store.c  the store's entries and the RocksDB database;
 *   view_apply.c  the apply thread;
 *   view_read.c   key, series and top reads.
 *
 * Layout (docs/formats/view.md):
 *   DATA/views/NAME/view.json   the definition (canonical JSON)
 *   DATA/views/NAME/db/         the view's RocksDB store
 *
 * Lifetime: a view is referenced by the list and by each read in
 * progress; DELETE takes it off the list, stops and joins its thread,
 * and the last reference closes the store and removes the directory.
 */
#include "view/view.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/json.h"
#include "core/msg.h"
#include "core/sorted.h"
#include "core/thread.h"
#include "os/os.h"
#include "view/view_int.h"

static const char *const state_names[] = {"catching_up", "live", "rebuilding", "no_stream", "failed"};

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p) < 0 && errno != ENOENT ? -1 : 0;
}

static spw_view *view_new(spw_views *m, const view_def *d)
{
    spw_view *v = spw_xcalloc(1, sizeof *v);
    v->m = m;
    v->def = *d;
    spw__view_def_compile(&v->def);
    spw_buf b = SPW_BUF_INIT;
    spw__view_def_json(d, &b);
    spw_buf_put(&b, "", 1);
    v->canon = (char *)b.p;
    snprintf(v->dir, sizeof v->dir, "%s/%s", m->dir, d->name);
    pthread_mutex_init(&v->mu, NULL);
    spw_cond_init(&v->cv); /* timed waits: core/clock.h */
    atomic_store(&v->refs, 1);
    v->state = VS_NO_STREAM;
    return v;
}

static void view_free(spw_view *v)
{
    spw__view_store_close(v);
    if (v->deleted) {
        nftw(v->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        spw_os_fsync_dir(v->m->dir);
    }
    if (v->opts) {
        rocksdb_options_destroy(v->opts);
        rocksdb_writeoptions_destroy(v->wo);
        rocksdb_readoptions_destroy(v->ro);
        rocksdb_readoptions_destroy(v->ro_cached);
    }
    spw_free(v->canon);
    pthread_mutex_destroy(&v->mu);
    pthread_cond_destroy(&v->cv);
    spw_free(v);
}

void spw__view_unref(spw_view *v)
{
    if (atomic_fetch_sub(&v->refs, 1) == 1)
        view_free(v);
}

/* Opens the store, reads what it shows and starts the apply thread. The
 * holds are taken by the thread's attach; to have them before the first
 * retention pass, start waits for the first attach attempt. */
static int view_start(spw_view *v, char *err, size_t cap)
{
    int r = spw__view_store_open(v, err, cap);
    if (r < 0)
        return r;
    int found;
    view_meta mt;
    if (spw__view_store_read_meta(v, &mt, &found) == 0 && found)
        v->shown = mt;
    r = pthread_create(&v->th, NULL, spw__view_apply_thread, v);
    if (r == 0)
        spw_thread_name(v->th, "view:%s", v->def.name);
    if (r) {
        snprintf(err, cap, "cannot start the view's thread: %s", spw_strerror(-r));
        return -r;
    }
    v->started = 1;
    /* wait (bounded) until the thread has attached or found no stream */
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&v->mu);
        int attached = v->state != VS_NO_STREAM || v->last_error[0];
        pthread_mutex_unlock(&v->mu);
        if (attached)
            break;
        spw_stream *s = spw_stream_get(v->m->cat, v->def.stream, strlen(v->def.stream));
        if (!s)
            break;
        spw_stream_put(s);
        spw_sleep_until(spw_mono_ns() + 2000000u);
    }
    return 0;
}

static void view_stop(spw_view *v)
{
    pthread_mutex_lock(&v->mu);
    v->stop = 1;
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    if (v->started)
        pthread_join(v->th, NULL);
    v->started = 0;
}

static const char *view_name(const void *p) { return ((const spw_view *)p)->def.name; }

static size_t find_pos(spw_views *m, const char *name, int *found)
{
    return spw_named_find((void *const *)m->v, m->n, view_name, name, strlen(name), found);
}

static void insert(spw_views *m, spw_view *v)
{
    pthread_mutex_lock(&m->kick_mu);
    spw_named_insert((void **)m->v, m->n, view_name, v);
    m->n++;
    pthread_mutex_unlock(&m->kick_mu);
}

spw_view *spw__view_ref(spw_views *m, const char *name)
{
    pthread_mutex_lock(&m->mu);
    int found;
    size_t at = find_pos(m, name, &found);
    spw_view *v = found ? m->v[at] : NULL;
    if (v)
        atomic_fetch_add(&v->refs, 1);
    pthread_mutex_unlock(&m->mu);
    return v;
}

static void load_one(spw_views *m, const char *name)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s/view.json", m->dir, name);
    char *text;
    size_t len;
    int r = spw_os_read_file(path, VIEW_DEF_MAX, &text, &len);
    if (r < 0) {
        if (r != -ENOENT)
            spw_error("view %s: reading %s: %s; not started", name, path, spw_strerror(r));
        return;
    }
    view_def d;
    char err[400];
    if (spw__view_def_parse(&d, name, text, len, err, sizeof err) < 0) {
        spw_error("view %s: %s: %s; not started", name, path, err);
    } else if (m->n >= SPW_VIEWS_MAX) {
        spw_error("view %s: more than %d views; not started", name, SPW_VIEWS_MAX);
    } else {
        spw_view *v = view_new(m, &d);
        if (view_start(v, err, sizeof err) < 0) {
            spw_error("view %s: %s; not started", name, err);
            view_stop(v);
            spw__view_unref(v);
        } else {
            insert(m, v);
            pthread_mutex_lock(&v->mu);
            int st = v->state;
            pthread_mutex_unlock(&v->mu);
            spw_info("view %s: %s of stream %s", name, state_names[st], d.stream);
        }
    }
    spw_free(text);
}

/* The log's durable hook (flusher thread): records became readable; every
 * apply thread looks (an idle one sleeps until this or VIEW_IDLE_MS).
 * Under kick_mu, not m->mu, which PUT holds across file writes and
 * fsyncs: the flusher must not wait for those. */
static void durable_kick(void *arg)
{
    spw_views *m = arg;
    pthread_mutex_lock(&m->kick_mu);
    for (uint32_t i = 0; i < m->n; i++) {
        spw_view *v = m->v[i];
        pthread_mutex_lock(&v->mu);
        v->kicked = 1;
        pthread_cond_signal(&v->cv);
        pthread_mutex_unlock(&v->mu);
    }
    pthread_mutex_unlock(&m->kick_mu);
}

int spw_views_open(spw_catalog *cat, const char *data_dir, uint64_t flush_ms, spw_views **out)
{
    spw_views *m = spw_xcalloc(1, sizeof *m);
    m->cat = cat;
    m->flush_ms = flush_ms ? flush_ms : VIEW_FLUSH_MS;
    snprintf(m->dir, sizeof m->dir, "%s/views", data_dir);
    pthread_mutex_init(&m->mu, NULL);
    pthread_mutex_init(&m->kick_mu, NULL);
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
    m->log = spw_catalog_log(cat);
    if (m->log && (r = spw_log_add_durable_hook(m->log, durable_kick, m)) < 0) {
        spw_warn("views: no wake-up by the log (%s): apply threads look every %d ms", spw_strerror(r), VIEW_IDLE_MS);
        m->log = NULL;
    }
    *out = m;
    return 0;
}

void spw_views_close(spw_views *m)
{
    if (!m)
        return;
    if (m->log) /* no call in progress once this returns */
        spw_log_remove_durable_hook(m->log, durable_kick, m);
    pthread_mutex_lock(&m->mu);
    for (uint32_t i = 0; i < m->n; i++) {
        pthread_mutex_lock(&m->v[i]->mu);
        m->v[i]->stop = 1;
        pthread_cond_broadcast(&m->v[i]->cv);
        pthread_mutex_unlock(&m->v[i]->mu);
    }
    for (uint32_t i = 0; i < m->n; i++) {
        view_stop(m->v[i]);
        spw__view_unref(m->v[i]);
    }
    m->n = 0;
    pthread_mutex_unlock(&m->mu);
    pthread_mutex_destroy(&m->mu);
    pthread_mutex_destroy(&m->kick_mu);
    spw_free(m);
}

static void shown_def(const view_def *d, const char *canon, spw_buf *b);

int spw_views_put(spw_views *m, const char *name, const char *body, size_t len, spw_buf *canon, char *err,
                  size_t cap)
{
    view_def d;
    int r = spw__view_def_parse(&d, name, body, len, err, cap);
    if (r < 0)
        return r;
    spw_stream *s = spw_stream_get(m->cat, d.stream, strlen(d.stream));
    if (!s) {
        snprintf(err, cap, "no stream named %s", d.stream);
        return -ENOENT;
    }
    int bytes = s->cfg.format_bytes;
    spw_stream_put(s);
    if (bytes) {
        snprintf(err, cap, "stream %s holds bytes, not JSON: views read JSON streams", d.stream);
        return SPW_EINVAL;
    }
    spw_buf b = SPW_BUF_INIT;
    spw__view_def_json(&d, &b);
    pthread_mutex_lock(&m->mu);
    int found;
    find_pos(m, name, &found);
    if (found) {
        size_t at = find_pos(m, name, &found);
        const char *c = m->v[at]->canon;
        int same = strlen(c) == b.len && memcmp(c, b.p, b.len) == 0;
        pthread_mutex_unlock(&m->mu);
        if (!same) {
            snprintf(err, cap, "view %s exists with a different definition", name);
            spw_buf_fini(&b);
            return -EEXIST;
        }
        spw_buf_put(&b, "", 1);
        shown_def(&d, (const char *)b.p, canon);
        spw_buf_fini(&b);
        return 0;
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", m->dir, name);
    struct stat st;
    if (m->n >= SPW_VIEWS_MAX) {
        snprintf(err, cap, "at most %d views", SPW_VIEWS_MAX);
        r = SPW_EINVAL;
    } else if (stat(dir, &st) == 0) {
        snprintf(err, cap, "a deleted view named %s is still being removed; try again", name);
        r = -EBUSY;
    } else {
        r = spw_os_mkdirs(dir, 0755);
        if (r == 0)
            r = spw_os_write_file_atomic(dir, "view.json", "view.json.tmp", b.p, b.len, SPW_OS_SYNC_FULL);
        if (r == 0)
            r = spw_os_fsync_dir(m->dir);
        if (r < 0)
            snprintf(err, cap, "writing %s/view.json: %s", dir, spw_strerror(r));
    }
    spw_view *v = NULL;
    if (r == 0) {
        v = view_new(m, &d);
        r = view_start(v, err, cap);
        if (r < 0) {
            view_stop(v);
            v->deleted = 1; /* its directory goes with it */
            spw__view_unref(v);
        }
    }
    if (r < 0) {
        pthread_mutex_unlock(&m->mu);
        spw_buf_fini(&b);
        return r;
    }
    insert(m, v);
    pthread_mutex_unlock(&m->mu);
    spw_info("view %s: created (a %s view of stream %s)", name,
             d.kind == VK_LATEST ? "latest" : d.kind == VK_SUM ? "sum" : "aggregate", d.stream);
    spw_buf_put(&b, "", 1);
    shown_def(&d, (const char *)b.p, canon);
    spw_buf_fini(&b);
    return 1;
}

int spw_views_delete(spw_views *m, const char *name)
{
    pthread_mutex_lock(&m->mu);
    int found;
    size_t at = find_pos(m, name, &found);
    if (!found) {
        pthread_mutex_unlock(&m->mu);
        return -ENOENT;
    }
    spw_view *v = m->v[at];
    pthread_mutex_lock(&m->kick_mu);
    memmove(m->v + at, m->v + at + 1, (m->n - at - 1) * sizeof *m->v);
    m->n--;
    pthread_mutex_unlock(&m->kick_mu);
    /* the definition goes first: a crash from here on loads no view */
    char path[4400];
    snprintf(path, sizeof path, "%s/view.json", v->dir);
    unlink(path);
    spw_os_fsync_dir(v->dir);
    pthread_mutex_unlock(&m->mu);
    view_stop(v);
    v->deleted = 1;
    spw__view_unref(v);
    spw_info("view %s: deleted", name);
    return 0;
}

int spw_views_stream_of(spw_views *m, const char *name, char *out, size_t cap)
{
    spw_view *v = spw__view_ref(m, name);
    if (!v)
        return -ENOENT;
    snprintf(out, cap, "%s", v->def.stream);
    spw__view_unref(v);
    return 0;
}

int spw_views_rebuild(spw_views *m, const char *name)
{
    spw_view *v = spw__view_ref(m, name);
    if (!v)
        return -ENOENT;
    pthread_mutex_lock(&v->mu);
    v->rebuild = 1;
    v->state = VS_REBUILDING;
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    spw__view_unref(v);
    return 0;
}

/* The definition as answers show it: a forward token is a secret,
 * replaced by "[redacted]" (as sinks' secrets are, docs/operations.md
 * "Security"); the stored and compared form keeps it. */
static void shown_def(const view_def *d, const char *canon, spw_buf *b)
{
    if (!d->fwd_token[0]) {
        spw_buf_xprintf(b, "%s", canon);
        return;
    }
    view_def shown = *d;
    snprintf(shown.fwd_token, sizeof shown.fwd_token, "[redacted]");
    spw__view_def_json(&shown, b);
}

static void one_json(spw_view *v, spw_buf *b)
{
    spw_buf_xprintf(b, "{\"name\":");
    spw_json_xput_str(b, v->def.name, strlen(v->def.name));
    spw_buf_xprintf(b, ",\"definition\":");
    shown_def(&v->def, v->canon, b);
    pthread_mutex_lock(&v->mu);
    const view_meta *mt = &v->shown;
    uint64_t lag = 0;
    spw_buf_xprintf(b, ",\"state\":\"%s\",\"applied\":[", state_names[v->state]);
    for (uint32_t i = 0; i < mt->nparts; i++) {
        spw_buf_xprintf(b, "%s{\"partition\":%" PRIu32 ",\"offset\":%" PRIu64 "}", i ? "," : "", i, mt->next[i]);
        lag += v->end[i] > mt->next[i] ? v->end[i] - mt->next[i] : 0;
    }
    uint64_t lag_ms = v->behind_since_ms && lag ? spw_mono_ms() - v->behind_since_ms : 0;
    spw_buf_xprintf(b,
                    "],\"lag_events\":%" PRIu64 ",\"lag_ms\":%" PRIu64 ",\"keys\":%" PRIu64 ",\"late\":%" PRIu64
                    ",\"skipped_damaged\":%" PRIu64 ",\"skipped_invalid\":%" PRIu64 ",\"applied_total\":%" PRIu64,
                    lag, lag_ms, mt->keys, mt->late, mt->skipped_damaged, mt->skipped_invalid, mt->applied);
    spw_buf_xprintf(b, ",\"last_error\":");
    if (v->last_error[0])
        spw_json_xput_str(b, v->last_error, strlen(v->last_error));
    else
        spw_buf_xprintf(b, "null");
    pthread_mutex_unlock(&v->mu);
    spw_buf_xprintf(b, "}");
}

int spw_views_get_json(spw_views *m, const char *name, spw_buf *out)
{
    pthread_mutex_lock(&m->mu);
    int found;
    size_t at = find_pos(m, name, &found);
    if (found)
        one_json(m->v[at], out);
    pthread_mutex_unlock(&m->mu);
    return found ? 0 : -ENOENT;
}

void spw_views_list_json(spw_views *m, spw_buf *out)
{
    spw_buf_xprintf(out, "{\"views\":[");
    pthread_mutex_lock(&m->mu);
    for (uint32_t i = 0; i < m->n; i++) {
        if (i)
            spw_buf_xprintf(out, ",");
        one_json(m->v[i], out);
    }
    pthread_mutex_unlock(&m->mu);
    spw_buf_xprintf(out, "]}");
}

void spw_views_metrics(spw_views *m, spw_buf *b, int (*sees)(void *ctx, const char *stream), void *ctx)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"spillway_view_lag_events", "gauge", "records of the view's stream appended and not yet applied"},
        {"spillway_view_applied_total", "counter", "records the view has applied, as its store holds it"},
        {"spillway_view_store_writes_total", "counter",
         "entries written to the view's store: at most one per entry per apply batch"},
        {"spillway_view_batches_total", "counter", "apply batches committed since start, one store write each"},
        {"spillway_view_late_total", "counter", "records later than their window's grace"},
        {"spillway_view_skipped_total", "counter", "records skipped: damaged on disk, or unusable by the view"},
        {"spillway_view_keys", "gauge", "view keys in the store"},
        {"spillway_view_durable_wakeups_total", "counter",
         "times the log's durable hook woke the view's apply thread (or kept it from sleeping)"},
    };
    typedef struct row {
        const char *name;
        uint64_t v[9];
    } row;
    pthread_mutex_lock(&m->mu);
    row *rows = spw_xcalloc(m->n ? m->n : 1, sizeof *rows);
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->n; i++) {
        spw_view *v = m->v[i];
        if (sees && !sees(ctx, v->def.stream))
            continue;
        pthread_mutex_lock(&v->mu);
        uint64_t lag = 0;
        for (uint32_t j = 0; j < v->shown.nparts; j++)
            lag += v->end[j] > v->shown.next[j] ? v->end[j] - v->shown.next[j] : 0;
        row *r = &rows[n++];
        r->name = v->def.name;
        r->v[0] = lag;
        r->v[1] = v->shown.applied;
        r->v[2] = atomic_load(&v->store_writes);
        r->v[3] = atomic_load(&v->batches);
        r->v[4] = v->shown.late;
        r->v[5] = v->shown.skipped_damaged;
        r->v[6] = v->shown.skipped_invalid;
        r->v[7] = v->shown.keys;
        r->v[8] = atomic_load(&v->wake_durable);
        pthread_mutex_unlock(&v->mu);
    }
    for (size_t f = 0; f < sizeof fam / sizeof fam[0] && n; f++) {
        spw_buf_xprintf(b, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name, fam[f].type);
        for (uint32_t i = 0; i < n; i++) {
            if (f == 5) {
                spw_buf_xprintf(b, "%s{view=\"%s\",reason=\"damaged\"} %" PRIu64 "\n", fam[f].name, rows[i].name,
                                rows[i].v[5]);
                spw_buf_xprintf(b, "%s{view=\"%s\",reason=\"invalid\"} %" PRIu64 "\n", fam[f].name, rows[i].name,
                                rows[i].v[6]);
            } else {
                spw_buf_xprintf(b, "%s{view=\"%s\"} %" PRIu64 "\n", fam[f].name, rows[i].name,
                                rows[i].v[f >= 6 ? f + 1 : f]);
            }
        }
    }
    pthread_mutex_unlock(&m->mu);
    spw_free(rows);
}

static int satisfied(const view_meta *mt, const spw_view_min *min, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (min[i].partition >= mt->nparts || mt->next[min[i].partition] <= min[i].offset)
            return 0;
    return 1;
}

int spw_views_applied(spw_views *m, const char *name, const spw_view_min *min, uint32_t n)
{
    spw_view *v = spw__view_ref(m, name);
    if (!v)
        return -ENOENT;
    pthread_mutex_lock(&v->mu);
    int r = satisfied(&v->shown, min, n);
    pthread_mutex_unlock(&v->mu);
    spw__view_unref(v);
    return r;
}

int spw_views_wait(spw_views *m, const char *name, const spw_view_min *min, uint32_t n, uint64_t deadline_ms,
                   void (*done)(void *arg, int r), void *arg)
{
    spw_view *v = spw__view_ref(m, name);
    if (!v) {
        done(arg, -ENOENT);
        return 0;
    }
    pthread_mutex_lock(&v->mu);
    int r = satisfied(&v->shown, min, n);
    if (r || v->stop || spw_mono_ms() >= deadline_ms) {
        int stopped = v->stop;
        pthread_mutex_unlock(&v->mu);
        spw__view_unref(v);
        done(arg, r ? 1 : stopped ? -ENOENT : 0);
        return 0;
    }
    view_waiter *w = spw_xcalloc(1, sizeof *w);
    w->min = spw_xmalloc((n ? n : 1) * sizeof *min);
    memcpy(w->min, min, n * sizeof *min);
    w->n = n;
    w->deadline_ms = deadline_ms;
    w->done = done;
    w->arg = arg;
    w->next = v->waiters;
    v->waiters = w;
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    spw__view_unref(v);
    return 0;
}
