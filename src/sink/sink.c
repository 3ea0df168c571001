/*
 * The sink manager (see sink.h): the list of sinks, loaded from
 * DATA/sinks at open and changed by PUT and DELETE, each sink's start
 * (pre-holds, then its worker thread) and stop, and what GET and
 * /metrics show. One concept a file beside it, sharing sink_int.h:
 *   sink_def.c      definitions: parsing, canonical form, help text;
 *   sink_attach.c   progress file, holds, attaching to the stream;
 *   sink_worker.c   the worker thread: reading batches, its cycle;
 *   sink_deliver.c  delivery: kind writes, retries, bisection, DLQ,
 *                   progress commit.
 * Locking: sink_int.h.
 */
#include "svc/metrics.h"
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
#include "core/sorted.h"
#include "core/msg.h"
#include "core/thread.h"
#include "log/cursor.h"
#include "log/format.h"
#include "os/os.h"
#include "sink/sink_int.h"

int (*spw_sink_test_hold)(const char *sink, const char *point); /* sink.h: NULL but in spillway_test */

static const char *const state_names[] = {"running", "retrying", "no_stream", "stopped"};

/* ---- manager ---- */

static spw_sink *sink_new(spw_sinks *m, sink_def *d, void *kst)
{
    spw_sink *k = spw_xcalloc(1, sizeof *k);
    k->m = m;
    k->def = *d;
    k->kst = kst;
    spw_buf b = SPW_BUF_INIT;
    spw__sink_def_json(d, &b);
    spw_buf_put(&b, "", 1);
    k->canon = (char *)b.p;
    spw_buf r = SPW_BUF_INIT;
    spw_sinks_redact(k->canon, strlen(k->canon), &r);
    spw_buf_put(&r, "", 1);
    k->shown = (char *)r.p;
    pthread_mutex_init(&k->mu, NULL);
    spw_cond_init(&k->cv);
    return k;
}

/* The worker, then "exited" for sink_stop_free's wait. */
static void *worker_main(void *arg)
{
    spw_sink *k = arg;
    spw__sink_worker(k);
    pthread_mutex_lock(&k->mu);
    k->exited = 1;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

static int sink_start(spw_sink *k)
{
    spw__sink_take_pre_holds(k);
    int r = pthread_create(&k->th, NULL, worker_main, k);
    if (r)
        spw__sink_release_pre(k);
    else
        spw_thread_name(k->th, "sink:%s", k->def.name);
    return r ? -r : 0;
}

static void sink_signal_stop(spw_sink *k)
{
    pthread_mutex_lock(&k->mu);
    k->stop = 1;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    if (k->def.kind->interrupt)
        k->def.kind->interrupt(k->kst);
}

/* Stops k's worker and frees k with everything it started. The worker
 * finishes the step it is in: the kind is interrupted again every 100 ms
 * (a step that began just before the stop was seen is cut short too),
 * and after a second, and every 5 s after, the log says what the stop
 * waits for. */
static void sink_stop_free(spw_sink *k)
{
    sink_signal_stop(k);
    uint64_t t0 = spw_mono_ms(), said = 0;
    for (;;) {
        uint64_t until = spw_mono_ns() + 100 * 1000000u;
        pthread_mutex_lock(&k->mu);
        while (!k->exited && spw_cond_wait_until(&k->cv, &k->mu, until) == 0) {
        }
        int exited = k->exited;
        pthread_mutex_unlock(&k->mu);
        if (exited)
            break;
        if (k->def.kind->interrupt)
            k->def.kind->interrupt(k->kst);
        uint64_t waited = spw_mono_ms() - t0;
        if (waited >= 1000 && (said == 0 || waited - said >= 5000)) {
            said = waited;
            spw_warn("sink %s: stopping: waited %.1f s for its worker (%s sink from stream %s), which is still in a "
                     "step with its target; its kind is being interrupted",
                     k->def.name, (double)waited / 1000.0, k->def.kind->name, k->def.stream);
        }
    }
    pthread_join(k->th, NULL); /* it has returned: at once */
    k->def.kind->close(k->kst);
    spw__sink_def_fini(&k->def);
    spw_free(k->canon);
    spw_free(k->shown);
    spw_free(k->parts);
    spw_free(k->b.recs);
    spw_buf_fini(&k->b.arena);
    spw_free(k->pend.recs);
    spw_buf_fini(&k->pend.arena);
    spw_free(k->b.win);
    spw_free(k->pend.win);
    spw_free(k->gw);
    spw_cursor_fini(&k->cur);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    spw_free(k);
}

/* The kind's directory, for kinds that keep state files there (sink.h set_dir). */
static void give_dir(spw_sinks *m, const sink_def *d, void *kst)
{
    if (!d->kind->set_dir)
        return;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", m->dir, d->name);
    d->kind->set_dir(kst, dir);
}

static const char *sink_name(const void *p) { return ((const spw_sink *)p)->def.name; }

static size_t find_pos(spw_sinks *m, const char *name, int *found)
{
    return spw_named_find((void *const *)m->v, m->n, sink_name, name, strlen(name), found);
}

static void insert(spw_sinks *m, spw_sink *k)
{
    spw_named_insert((void **)m->v, m->n, sink_name, k);
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
    if (spw__sink_def_parse(&d, name, text, len, err, sizeof err) < 0) {
        spw_error("sink %s: %s: %s; not started", name, path, err);
    } else if (d.kind->open(d.name, d.stream, d.options, d.options_len, &kst, err, sizeof err) < 0) {
        spw_error("sink %s: %s; not started", name, err);
        spw__sink_def_fini(&d);
    } else if (m->n >= SINKS_MAX) {
        spw_error("sink %s: more than %d sinks; not started", name, SINKS_MAX);
        d.kind->close(kst);
        spw__sink_def_fini(&d);
    } else {
        give_dir(m, &d, kst);
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

int spw_sinks_open(spw_svc *svc, spw_sinks **out)
{
    spw_sinks *m = spw_xcalloc(1, sizeof *m);
    m->svc = svc;
    snprintf(m->dir, sizeof m->dir, "%s/sinks", svc->data_dir);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->reaped, NULL);
    /* Definitions may hold secrets: the directory is the owner's only
     * (also when an older version made it 0755). */
    int r = spw_os_mkdirs(m->dir, 0700);
    if (r == 0 && chmod(m->dir, 0700) < 0)
        r = -errno;
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
        if (spw_stream_name_ok(de->d_name, strlen(de->d_name))) {
            char p[4400];
            snprintf(p, sizeof p, "%s/%s", m->dir, de->d_name);
            chmod(p, 0700);
            snprintf(p, sizeof p, "%s/%s/sink.json", m->dir, de->d_name);
            chmod(p, 0600);
            load_one(m, de->d_name);
        }
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
    if (m->n)
        spw_info("stopping %u sink(s)", m->n);
    for (uint32_t i = 0; i < m->n; i++)
        sink_signal_stop(m->v[i]);
    for (uint32_t i = 0; i < m->n; i++)
        sink_stop_free(m->v[i]);
    m->n = 0;
    if (m->reaping)
        spw_info("waiting for %u deleted sink(s) to stop", m->reaping);
    while (m->reaping)
        pthread_cond_wait(&m->reaped, &m->mu);
    pthread_mutex_unlock(&m->mu);
    pthread_cond_destroy(&m->reaped);
    pthread_mutex_destroy(&m->mu);
    spw_free(m);
}

/* A stream naming sink `name` in replicate_to, other than the one it drains. */
typedef struct repl_named {
    const char *sink, *drains;
    char other[SPW_STREAM_NAME_MAX + 1];
    int any; /* some stream names it */
} repl_named;

static void repl_named_one(void *arg, spw_stream *s)
{
    repl_named *x = arg;
    if (strcmp(s->cfg.replicate_to, x->sink) != 0)
        return;
    x->any = 1;
    if (strcmp(s->cfg.name, x->drains) != 0 && !x->other[0])
        snprintf(x->other, sizeof x->other, "%s", s->cfg.name);
}

/* A sink that streams name in replicate_to must drain that stream and be
 * of a kind that can replicate (docs/api.md "Replicated
 * acknowledgement"): 0, or SPW_EINVAL with the sentence. */
static int repl_def_ok(spw_sinks *m, const sink_def *d, char *err, size_t cap)
{
    repl_named x = {.sink = d->name, .drains = d->stream};
    spw_catalog_each(m->svc->cat, repl_named_one, &x);
    if (x.other[0]) {
        snprintf(err, cap,
                 "stream %s names sink %s in replicate_to, so the sink must drain it, not stream %s (a stream's "
                 "replica is its own sink)",
                 x.other, d->name, d->stream);
        return SPW_EINVAL;
    }
    if (x.any && !d->kind->replicates) {
        snprintf(err, cap,
                 "stream %s names sink %s in replicate_to, and a %s sink cannot acknowledge ack=replicated "
                 "(postgres and kafka can)",
                 d->stream, d->name, d->kind->name);
        return SPW_EINVAL;
    }
    return 0;
}

int spw_sinks_dlq_user(spw_sinks *m, const char *stream, char *sink)
{
    if (!m)
        return 0;
    int found = 0;
    pthread_mutex_lock(&m->mu);
    for (uint32_t i = 0; i < m->n && !found; i++)
        if (strcmp(m->v[i]->def.dlq, stream) == 0) {
            memcpy(sink, m->v[i]->def.name, sizeof m->v[i]->def.name);
            found = 1;
        }
    pthread_mutex_unlock(&m->mu);
    return found;
}

int spw_sinks_replica_ok(spw_sinks *m, const char *sink, const char *stream, char *err, size_t cap)
{
    if (!m)
        return 0;
    pthread_mutex_lock(&m->mu);
    int found, r = 0;
    size_t at = find_pos(m, sink, &found);
    if (found && strcmp(m->v[at]->def.stream, stream) != 0) {
        snprintf(err, cap, "sink %s drains stream %s; the sink a stream names in replicate_to must drain it", sink,
                 m->v[at]->def.stream);
        r = SPW_EINVAL;
    } else if (found && !m->v[at]->def.kind->replicates) {
        snprintf(err, cap, "sink %s is a %s sink, which cannot acknowledge ack=replicated (postgres and kafka can)",
                 sink, m->v[at]->def.kind->name);
        r = SPW_EINVAL;
    }
    pthread_mutex_unlock(&m->mu);
    return r;
}

/* Is d the running sink k's definition but for "options"? */
static int only_options_differ(const spw_sink *k, const sink_def *d)
{
    sink_def x = *d;
    x.options = k->def.options;
    x.options_len = k->def.options_len;
    spw_buf b = SPW_BUF_INIT;
    spw__sink_def_json(&x, &b);
    int same = strlen(k->canon) == b.len && memcmp(k->canon, b.p, b.len) == 0;
    spw_buf_fini(&b);
    return same;
}

int spw_sinks_put(spw_sinks *m, const char *name, const char *body, size_t len, spw_buf *canon, char *err,
                  size_t cap)
{
    sink_def d;
    int r = spw__sink_def_parse(&d, name, body, len, err, cap);
    if (r < 0)
        return r;
    if ((r = repl_def_ok(m, &d, err, cap)) < 0) {
        spw__sink_def_fini(&d);
        return r;
    }
    spw_stream *s = spw_stream_get(m->svc->cat, d.stream, strlen(d.stream));
    if (!s) {
        snprintf(err, cap, "no stream named %s", d.stream);
        spw__sink_def_fini(&d);
        return -ENOENT;
    }
    spw_stream_put(s);
    if (d.dlq[0]) {
        s = spw_stream_get(m->svc->cat, d.dlq, strlen(d.dlq));
        if (!s) {
            snprintf(err, cap, "no stream named %s (the dlq)", d.dlq);
            spw__sink_def_fini(&d);
            return -ENOENT;
        }
        spw_stream_put(s);
    }
    spw_buf b = SPW_BUF_INIT;
    spw__sink_def_json(&d, &b);
    pthread_mutex_lock(&m->mu);
    int found;
    size_t at = find_pos(m, name, &found);
    spw_sink *replaced = NULL;
    if (found && d.kind == m->v[at]->def.kind && d.kind->unredact) {
        /* a definition as GET shows it: its redacted secrets are the running ones */
        spw_buf u = SPW_BUF_INIT, c = SPW_BUF_INIT;
        r = d.kind->unredact(m->v[at]->kst, d.options, d.options_len, &u, err, cap);
        if (r > 0 && spw_opts_parse(d.kind->opts, d.kind->nopts, "options", "options", (const char *)u.p, u.len,
                                    d.stream, NULL, &c, err, cap) < 0)
            r = SPW_EINVAL;
        if (r > 0) {
            spw_free(d.options);
            d.options = spw_xmalloc(c.len + 1);
            memcpy(d.options, c.p, c.len);
            d.options[c.len] = 0;
            d.options_len = c.len;
            b.len = 0;
            spw__sink_def_json(&d, &b);
        }
        spw_buf_fini(&u);
        spw_buf_fini(&c);
        if (r < 0) {
            pthread_mutex_unlock(&m->mu);
            spw__sink_def_fini(&d);
            spw_buf_fini(&b);
            return r;
        }
    }
    if (found) {
        const char *c = m->v[at]->canon;
        int same = strlen(c) == b.len && memcmp(c, b.p, b.len) == 0;
        if (!same && d.kind == m->v[at]->def.kind && d.kind->change && only_options_differ(m->v[at], &d)) {
            r = d.kind->change(m->v[at]->kst, d.options, d.options_len, err, cap);
            if (r == 1) {
                replaced = m->v[at];
                goto create;
            }
            if (r < 0) {
                pthread_mutex_unlock(&m->mu);
                spw__sink_def_fini(&d);
                spw_buf_fini(&b);
                return r;
            }
        }
        pthread_mutex_unlock(&m->mu);
        spw__sink_def_fini(&d);
        if (!same) {
            snprintf(err, cap, "sink %s exists with a different definition", name);
            spw_buf_fini(&b);
            return -EEXIST;
        }
        spw_sinks_redact((const char *)b.p, b.len, canon);
        spw_buf_fini(&b);
        return 0;
    }
create:;
    void *kst = NULL;
    if (m->n >= SINKS_MAX && !replaced) {
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
        r = spw_os_mkdirs(dir, 0700);
        if (r == 0 && !replaced) {
            unlink(pp); /* leftovers of a deleted sink of this name */
            snprintf(pp, sizeof pp, "%s/reshard", dir);
            unlink(pp);
        }
        if (r == 0)
            r = spw_os_write_file_atomic(dir, "sink.json", "sink.json.tmp", b.p, b.len, SPW_OS_SYNC_FULL);
        if (r == 0) { /* it may hold secrets (the directory is 0700 already) */
            snprintf(pp, sizeof pp, "%s/sink.json", dir);
            if (chmod(pp, 0600) < 0)
                r = -errno;
        }
        if (r == 0)
            r = spw_os_fsync_dir(m->dir);
        if (r < 0) {
            snprintf(err, cap, "writing %s/sink.json: %s", dir, spw_strerror(r));
            d.kind->close(kst);
        }
    }
    if (r < 0) {
        pthread_mutex_unlock(&m->mu);
        spw__sink_def_fini(&d);
        spw_buf_fini(&b);
        return r;
    }
    if (replaced) {
        /* the running sink stops (its step finishes) before the new one starts */
        size_t ra = find_pos(m, name, &found);
        memmove(m->v + ra, m->v + ra + 1, (m->n - ra - 1) * sizeof *m->v);
        m->n--;
        sink_stop_free(replaced);
    }
    give_dir(m, &d, kst);
    spw_sink *k = sink_new(m, &d, kst);
    k->continues = replaced != NULL;
    r = sink_start(k);
    if (r < 0) {
        snprintf(err, cap, "cannot start the sink's thread: %s", spw_strerror(r));
        k->th = pthread_self();
        pthread_mutex_unlock(&m->mu);
        k->def.kind->close(k->kst);
        spw__sink_def_fini(&k->def);
        spw_free(k->canon);
        spw_free(k->shown);
        spw_free(k);
        spw_buf_fini(&b);
        return r;
    }
    insert(m, k);
    pthread_mutex_unlock(&m->mu);
    if (replaced)
        spw_info("sink %s: definition changed online (%s from stream %s)", name, d.kind->name, d.stream);
    else
        spw_info("sink %s: created (%s from stream %s)", name, d.kind->name, d.stream);
    spw_sinks_redact((const char *)b.p, b.len, canon);
    spw_buf_fini(&b);
    return replaced ? 2 : 1;
}

/* Writes d as DATA/sinks/NAME/sink.json (the directory exists). */
static int write_def(spw_sinks *m, const sink_def *d, const spw_buf *b, char *err, size_t cap)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", m->dir, d->name);
    int r = spw_os_write_file_atomic(dir, "sink.json", "sink.json.tmp", b->p, b->len, SPW_OS_SYNC_FULL);
    if (r < 0)
        snprintf(err, cap, "writing %s/sink.json: %s", dir, spw_strerror(r));
    return r;
}

int spw_sinks_abort_change(spw_sinks *m, const char *name, char *err, size_t cap)
{
    pthread_mutex_lock(&m->mu);
    int found;
    size_t at = find_pos(m, name, &found);
    if (!found) {
        pthread_mutex_unlock(&m->mu);
        snprintf(err, cap, "no sink named %s", name);
        return -ENOENT;
    }
    spw_sink *k = m->v[at];
    if (!k->def.kind->abort) {
        pthread_mutex_unlock(&m->mu);
        snprintf(err, cap, "sink %s is a %s sink, which has nothing to abort (resharding is the postgres sink's)", name,
                 k->def.kind->name);
        return SPW_EINVAL;
    }
    /* The definition, copied before the sink (and its copy) is freed. */
    spw_buf canon = SPW_BUF_INIT;
    spw_buf_puts(&canon, k->canon);
    memmove(m->v + at, m->v + at + 1, (m->n - at - 1) * sizeof *m->v);
    m->n--;
    sink_stop_free(k);
    sink_def d, nd;
    void *kst = NULL, *ast = NULL;
    int r = spw__sink_def_parse(&d, name, (const char *)canon.p, canon.len, err, cap);
    if (r == 0)
        r = d.kind->open(d.name, d.stream, d.options, d.options_len, &ast, err, cap);
    if (r < 0) { /* cannot happen: it ran with this definition */
        pthread_mutex_unlock(&m->mu);
        spw_error("sink %s: reopening for abort: %s; not started", name, err);
        spw_buf_fini(&canon);
        return r;
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", m->dir, name);
    spw_buf opts = SPW_BUF_INIT, nb = SPW_BUF_INIT;
    r = d.kind->abort(ast, dir, d.options, d.options_len, &opts, err, cap);
    d.kind->close(ast);
    int changed = 0;
    if (r == 0) {
        /* the same definition with the options the kind answered */
        spw_buf body = SPW_BUF_INIT;
        char *keep = d.options;
        size_t keep_len = d.options_len;
        d.options = (char *)opts.p;
        d.options_len = opts.len;
        spw__sink_def_json(&d, &body);
        d.options = keep;
        d.options_len = keep_len;
        r = spw__sink_def_parse(&nd, name, (const char *)body.p, body.len, err, cap);
        spw_buf_fini(&body);
        if (r == 0) {
            spw__sink_def_json(&nd, &nb);
            r = write_def(m, &nd, &nb, err, cap);
            if (r == 0) {
                spw__sink_def_fini(&d);
                d = nd;
                changed = 1;
            } else {
                spw__sink_def_fini(&nd);
            }
        }
    }
    spw_buf_fini(&opts);
    spw_buf_fini(&nb);
    spw_buf_fini(&canon);
    /* started again: with the answered definition, or as it was */
    int r2 = d.kind->open(d.name, d.stream, d.options, d.options_len, &kst, err + (r < 0 ? strlen(err) : 0),
                          r < 0 ? cap - strlen(err) : cap);
    if (r2 == 0) {
        give_dir(m, &d, kst);
        spw_sink *nk = sink_new(m, &d, kst);
        nk->continues = 1;
        if (sink_start(nk) == 0) {
            insert(m, nk);
        } else {
            spw_error("sink %s: cannot start its thread", name);
            nk->def.kind->close(nk->kst);
            spw__sink_def_fini(&nk->def);
            spw_free(nk->canon);
            spw_free(nk->shown);
            spw_free(nk);
        }
    } else {
        spw__sink_def_fini(&d);
    }
    pthread_mutex_unlock(&m->mu);
    if (changed)
        spw_info("sink %s: its online change was rolled back", name);
    return r;
}

/* A deleted sink's stop, off the caller's thread: its worker joined and
 * its kind closed (librdkafka's threads, connections), then the count
 * spw_sinks_close waits on goes down. */
static void *reaper(void *arg)
{
    spw_sink *k = arg;
    spw_sinks *m = k->m;
    char name[sizeof k->def.name];
    snprintf(name, sizeof name, "%s", k->def.name);
    sink_stop_free(k);
    spw_info("sink %s: stopped and freed", name);
    pthread_mutex_lock(&m->mu);
    m->reaping--;
    pthread_cond_broadcast(&m->reaped);
    pthread_mutex_unlock(&m->mu);
    return NULL;
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
    snprintf(path, sizeof path, "%s/%s/reshard", m->dir, name); /* a kind's state (postgres resharding) */
    unlink(path);
    snprintf(path, sizeof path, "%s/%s", m->dir, name);
    rmdir(path);
    spw_os_fsync_dir(m->dir);
    m->reaping++;
    pthread_mutex_unlock(&m->mu);
    pthread_t th;
    pthread_attr_t pa;
    pthread_attr_init(&pa);
    pthread_attr_setdetachstate(&pa, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &pa, reaper, k) != 0)
        reaper(k); /* no thread to spare: stop it here */
    pthread_attr_destroy(&pa);
    spw_info("sink %s: deleted", name);
    return 0;
}

static void one_json(spw_sink *k, spw_buf *b)
{
    spw_buf_xprintf(b, "{\"name\":");
    spw_json_xput_str(b, k->def.name, strlen(k->def.name));
    spw_buf_xprintf(b, ",\"definition\":%s,\"state\":\"%s\"", k->shown, state_names[atomic_load(&k->state)]);
    pthread_mutex_lock(&k->mu);
    uint64_t lag = 0;
    spw_buf parts = SPW_BUF_INIT;
    for (uint32_t i = 0; i < k->nparts; i++) {
        uint64_t next = atomic_load(&k->parts[i].next), end = atomic_load(&k->parts[i].end);
        uint64_t l = end > next ? end - next : 0;
        lag += l;
        spw_buf_xprintf(&parts, "%s{\"partition\":%" PRIu32 ",\"position\":%" PRIu64 ",\"end\":%" PRIu64 ",\"lag\":%" PRIu64 "}",
           i ? "," : "", i, next, end, l);
    }
    spw_buf_xprintf(b, ",\"lag\":%" PRIu64 ",\"partitions\":[", lag);
    spw_buf_put(b, parts.p, parts.len);
    spw_buf_fini(&parts);
    spw_buf_xprintf(b, "],\"delivered_total\":%" PRIu64 ",\"delivered_bytes_total\":%" PRIu64 ",\"dlq_total\":%" PRIu64
          ",\"errors_total\":%" PRIu64 ",\"events_per_sec\":%.1f,\"last_error\":",
       atomic_load(&k->delivered), atomic_load(&k->delivered_bytes), atomic_load(&k->dlq), atomic_load(&k->errors),
       (double)atomic_load(&k->rate_milli) / 1000.0);
    if (k->last_error[0]) {
        spw_json_xput_str(b, k->last_error, strlen(k->last_error));
        spw_buf_xprintf(b, ",\"last_error_ms\":%" PRId64, k->last_error_ms);
    } else {
        spw_buf_xprintf(b, "null");
    }
    pthread_mutex_unlock(&k->mu);
    if (k->def.kind->status_json)
        k->def.kind->status_json(k->kst, b);
    spw_buf_xprintf(b, "}");
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

int spw_sinks_streams(spw_sinks *m, const char *name, char *stream, char *dlq)
{
    pthread_mutex_lock(&m->mu);
    int found;
    size_t at = find_pos(m, name, &found);
    if (found) {
        memcpy(stream, m->v[at]->def.stream, sizeof m->v[at]->def.stream);
        memcpy(dlq, m->v[at]->def.dlq, sizeof m->v[at]->def.dlq);
    }
    pthread_mutex_unlock(&m->mu);
    return found ? 0 : -ENOENT;
}

void spw_sinks_list_json(spw_sinks *m, spw_buf *out, int (*visible)(void *arg, const char *stream), void *arg)
{
    spw_buf_xprintf(out, "{\"sinks\":[");
    pthread_mutex_lock(&m->mu);
    int first = 1;
    for (uint32_t i = 0; i < m->n; i++) {
        if (visible && !visible(arg, m->v[i]->def.stream))
            continue;
        if (!first)
            spw_buf_xprintf(out, ",");
        first = 0;
        one_json(m->v[i], out);
    }
    pthread_mutex_unlock(&m->mu);
    spw_buf_xprintf(out, "]}");
}

/* The sink families, each whole (Prometheus text: a family's samples are
 * contiguous), with a sample per sink whose source stream the viewer may
 * see (spw_metrics_sees). */
void spw_sinks_metrics(spw_sinks *m, spw_metrics_out *o)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"spillway_sink_lag", "gauge", "records of the source stream not yet delivered, all partitions"},
        {"spillway_sink_delivered_total", "counter", "records the sink's target accepted since start"},
        {"spillway_sink_errors_total", "counter", "failed writes to the target (each retry counts) and damaged "
                                                  "records skipped"},
        {"spillway_sink_dlq_total", "counter", "records moved to the sink's dead-letter stream"},
        {"spillway_sink_state", "gauge", "1 for the sink's current state, 0 for the others"},
    };
    pthread_mutex_lock(&m->mu);
    for (size_t f = 0; f < sizeof fam / sizeof fam[0] && m->n; f++) {
        spw_buf_xprintf(o->b, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name, fam[f].type);
        for (uint32_t i = 0; i < m->n; i++) {
            spw_sink *k = m->v[i];
            if (!spw_metrics_sees(o, k->def.stream))
                continue;
            char labels[300];
            snprintf(labels, sizeof labels, "sink=\"%s\"", k->def.name);
            switch (f) {
            case 0: {
                uint64_t lag = 0;
                pthread_mutex_lock(&k->mu);
                for (uint32_t j = 0; j < k->nparts; j++) {
                    uint64_t next = atomic_load(&k->parts[j].next), end = atomic_load(&k->parts[j].end);
                    lag += end > next ? end - next : 0;
                }
                pthread_mutex_unlock(&k->mu);
                spw_metrics_line(o, fam[f].name, labels, lag);
                break;
            }
            case 1:
                spw_metrics_line(o, fam[f].name, labels, atomic_load(&k->delivered));
                break;
            case 2:
                spw_metrics_line(o, fam[f].name, labels, atomic_load(&k->errors));
                break;
            case 3:
                spw_metrics_line(o, fam[f].name, labels, atomic_load(&k->dlq));
                break;
            default: {
                unsigned st = (unsigned)atomic_load(&k->state);
                for (unsigned s = 0; s < sizeof state_names / sizeof state_names[0]; s++) {
                    snprintf(labels, sizeof labels, "sink=\"%s\",state=\"%s\"", k->def.name, state_names[s]);
                    spw_metrics_line(o, fam[f].name, labels, s == st);
                }
            }
            }
        }
    }
    /* a family of its own, only while some sink changes online */
    int head = 0;
    for (uint32_t i = 0; i < m->n; i++) {
        spw_sink *k = m->v[i];
        const char *ph = k->def.kind->phase ? k->def.kind->phase(k->kst) : NULL;
        if (!ph || !spw_metrics_sees(o, k->def.stream))
            continue;
        if (!head++)
            spw_buf_xprintf(o->b, "# HELP spillway_sink_reshard_phase 1 for a sink resharding, labelled with its phase "
                                  "(docs/api.md \"Resharding a postgres sink\")\n"
                                  "# TYPE spillway_sink_reshard_phase gauge\n");
        char labels[300];
        snprintf(labels, sizeof labels, "sink=\"%s\",phase=\"%s\"", k->def.name, ph);
        spw_metrics_line(o, "spillway_sink_reshard_phase", labels, 1);
    }
    pthread_mutex_unlock(&m->mu);
}
