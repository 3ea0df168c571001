/* The stream catalog: see catalog.h. */
#include "catalog/catalog.h"
#include "catalog/groups.h"
#include "catalog/hotkeys.h"
#include "core/workq.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/invariant.h"
#include "core/msg.h"
#include "core/sorted.h"
#include "log/cursor.h"
#include "os/os.h"

struct spw_catalog {
    spw_log *log;
    char *dir; /* DATA/streams */
    uint64_t segment_bytes; /* 0: default */
    pthread_rwlock_t lock;
    pthread_mutex_t ddl; /* one create/delete at a time */
    spw_stream **v;      /* sorted by name */
    size_t n, cap;
    uint64_t deleted_seq;
    /* Frees a stream's coalescing state (spw_stream.coal): set by the
     * coalescer (admit layer, above this one) before it makes any. */
    void (*coal_free)(struct spw_coal_stream *);
    void (*es_free)(struct spw_es *); /* the version map's (es layer) */
    /* Closes a deleted stream's version store (es layer), if it has one. */
    _Atomic(void (*)(struct spw_stream *)) es_retire;
    /* Where a deleted stream's last reference closes its partitions and
     * removes its directory: I/O workers (spw_catalog_set_io), so that it
     * is never an I/O loop that dropped the reference; NULL: in place. */
    _Atomic(spw_workq *) io;
    _Atomic(struct spw_groups *) groups; /* dropped with their stream (spw_catalog_set_groups) */
};

void spw_catalog_set_io(spw_catalog *cat, spw_workq *io) { atomic_store(&cat->io, io); }

spw_log *spw_catalog_log(const spw_catalog *cat) { return cat->log; }

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rmrf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void part_config(const spw_catalog *cat, const spw_stream_config *c, spw_part_config *pc)
{
    spw_part_config_default(pc);
    if (cat->segment_bytes)
        pc->segment_bytes = cat->segment_bytes;
    pc->retention_ms = c->retention_ms;
    pc->retention_bytes = c->retention_bytes;
    pc->retention_min_age_ms = c->dedupe_window_ms;
}

static void stream_free(spw_stream *s)
{
    /* The version map first: its indexer reads the partitions. */
    struct spw_es *es = atomic_load(&s->es);
    if (es) /* only the es layer makes one, after setting es_free */
        s->cat->es_free(es);
    for (uint32_t i = 0; i < s->cfg.partitions; i++)
        if (s->parts[i])
            spw_part_close(s->parts[i]);
    spw_free(s->parts);
    struct spw_coal_stream *cs = atomic_load(&s->coal);
    if (cs) /* only the coalescer makes one, after setting coal_free */
        s->cat->coal_free(cs);
    spw_hot_close(s->hot);
    spw_free(s);
}

/* Opens the partitions of a stream whose directory is dir. */
static int stream_open(spw_catalog *cat, const spw_stream_config *c, uint64_t incarnation, const char *dir,
                       spw_stream **out)
{
    static _Atomic uint64_t next_uid = 1;
    spw_stream *s = spw_xcalloc(1, sizeof *s);
    s->cfg = *c;
    s->incarnation = incarnation;
    s->cat = cat;
    s->uid = atomic_fetch_add(&next_uid, 1);
    atomic_init(&s->refs, 1);
    s->parts = spw_xcalloc(c->partitions, sizeof *s->parts);
    if (c->hot_split) {
        int r = spw_hot_open(c, dir, &s->hot);
        if (r < 0) {
            spw_error("stream %s: cannot read its hot-key splits: %s", c->name, spw_strerror(r));
            stream_free(s);
            return r;
        }
    }
    spw_part_config pc;
    part_config(cat, c, &pc);
    for (uint32_t i = 0; i < c->partitions; i++) {
        char pd[4096];
        snprintf(pd, sizeof pd, "%s/%u", dir, i);
        spw_recovery_report rep;
        int r = spw_part_open(cat->log, pd, &pc, &s->parts[i], &rep);
        if (r < 0) {
            spw_error("stream %s: cannot open partition %u: %s", c->name, i, spw_strerror(r));
            stream_free(s);
            return r;
        }
    }
    *out = s;
    return 0;
}

static const char *stream_name(const void *p) { return ((const spw_stream *)p)->cfg.name; }

static size_t find_pos(spw_catalog *cat, const char *name, size_t len, int *found)
{
    return spw_named_find((void *const *)cat->v, cat->n, stream_name, name, len, found);
}

static void insert(spw_catalog *cat, spw_stream *s)
{
    if (cat->n == cat->cap) {
        cat->cap = cat->cap ? cat->cap * 2 : 16;
        cat->v = spw_xrealloc(cat->v, cat->cap * sizeof *cat->v);
    }
    spw_named_insert((void **)cat->v, cat->n, stream_name, s);
    cat->n++;
}

int spw_catalog_open(spw_log *log, const char *data_dir, uint64_t segment_bytes, spw_catalog **out)
{
    spw_catalog *cat = spw_xcalloc(1, sizeof *cat);
    cat->log = log;
    cat->segment_bytes = segment_bytes;
    size_t n = strlen(data_dir) + 16;
    cat->dir = spw_xmalloc(n);
    snprintf(cat->dir, n, "%s/streams", data_dir);
    pthread_rwlock_init(&cat->lock, NULL);
    pthread_mutex_init(&cat->ddl, NULL);
    int r = spw_os_mkdirs(cat->dir, 0755);
    if (r < 0) {
        spw_catalog_close(cat);
        return r;
    }
    DIR *d = opendir(cat->dir);
    if (!d) {
        r = -errno;
        spw_catalog_close(cat);
        return r;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[4096];
        if (strncmp(de->d_name, ".deleted-", 9) == 0) {
            /* A delete that did not finish before a crash. */
            snprintf(path, sizeof path, "%s/%s", cat->dir, de->d_name);
            rmrf(path);
            continue;
        }
        if (!spw_stream_name_ok(de->d_name, strlen(de->d_name)))
            continue;
        snprintf(path, sizeof path, "%s/%s/stream.json", cat->dir, de->d_name);
        char *body;
        size_t blen;
        if ((r = spw_os_read_file(path, 1 << 20, &body, &blen)) < 0) {
            if (r != -ENOENT)
                spw_error("catalog: %s: %s; stream skipped", path, spw_strerror(r));
            continue;
        }
        spw_stream_config c;
        uint64_t inc;
        char err[256];
        r = spw_stream_def_parse(&c, &inc, de->d_name, body, blen, err, sizeof err);
        spw_free(body);
        if (r) {
            spw_error("catalog: %s: %s; stream skipped", path, err);
            continue;
        }
        if (spw_stream_config_check(&c, err, sizeof err))
            spw_warn("catalog: stream %s: %s (a stream made before this rule; loaded as it is)", de->d_name, err);
        snprintf(path, sizeof path, "%s/%s", cat->dir, de->d_name);
        spw_stream *s;
        if (stream_open(cat, &c, inc, path, &s) == 0)
            insert(cat, s);
    }
    closedir(d);
    spw_info("catalog: %zu stream(s) in %s", cat->n, cat->dir);
    *out = cat;
    return 0;
}

const char *spw_catalog_dir(const spw_catalog *cat) { return cat->dir; }

void spw_catalog_set_es_free(spw_catalog *cat, void (*fn)(struct spw_es *)) { cat->es_free = fn; }

void spw_catalog_set_es_retire(spw_catalog *cat, void (*fn)(struct spw_stream *)) { atomic_store(&cat->es_retire, fn); }
void spw_catalog_set_groups(spw_catalog *cat, struct spw_groups *gs) { atomic_store(&cat->groups, gs); }

void spw_catalog_set_coal_free(spw_catalog *cat, void (*fn)(struct spw_coal_stream *))
{
    cat->coal_free = fn;
}

int spw_stream_hot_record(spw_stream *s, const spw_hot_cand *cand, int64_t now_ms)
{
    pthread_mutex_lock(&s->cat->ddl);
    int r = -ENOENT;
    if (!atomic_load(&s->deleted))
        r = spw_hot_record(s->hot, cand, now_ms);
    else
        spw_hot_abandon(s->hot, cand);
    pthread_mutex_unlock(&s->cat->ddl);
    return r;
}

void spw_catalog_close(spw_catalog *cat)
{
    for (size_t i = 0; i < cat->n; i++)
        spw_stream_put(cat->v[i]);
    spw_free(cat->v);
    pthread_rwlock_destroy(&cat->lock);
    pthread_mutex_destroy(&cat->ddl);
    spw_free(cat->dir);
    spw_free(cat);
}

/* Writes stream.json atomically: temp file, fsync, rename, fsync dir. The
 * canonical definition with "incarnation" added as its last member. */
static int write_def(const char *dir, const spw_stream_config *c, uint64_t incarnation)
{
    spw_buf b = SPW_BUF_INIT;
    int r = spw_stream_config_json(c, &b);
    if (r == 0) {
        b.len--; /* the closing brace */
        r = spw_buf_printf(&b, ",\"incarnation\":%" PRIu64 "}", incarnation);
    }
    if (r == 0)
        r = spw_os_write_file_atomic(dir, "stream.json", "stream.json.tmp", b.p, b.len, SPW_OS_SYNC_FULL);
    spw_buf_fini(&b);
    return r;
}

/* A directory that holds nothing but what a create cut by a crash leaves
 * (stream.json.tmp: stream.json is written before any partition)? */
static int leftover_of_create(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    int ok = 1;
    while (ok && (de = readdir(d)))
        ok = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
             strcmp(de->d_name, "stream.json.tmp") == 0;
    closedir(d);
    return ok;
}

int spw_catalog_create(spw_catalog *cat, const spw_stream_config *c)
{
    pthread_mutex_lock(&cat->ddl);
    int found, r;
    pthread_rwlock_rdlock(&cat->lock);
    size_t at = find_pos(cat, c->name, strlen(c->name), &found);
    if (found) {
        r = spw_stream_config_equal(&cat->v[at]->cfg, c) ? 0 : -EEXIST;
        pthread_rwlock_unlock(&cat->lock);
        goto out;
    }
    pthread_rwlock_unlock(&cat->lock);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", cat->dir, c->name);
    spw_stream *s;
    /* The directory must be new (or what a create cut by a crash left):
     * one the catalog did not load — its stream.json missing or bad, with
     * partitions in it — is never adopted, overwritten or, on a failure
     * below, deleted. */
    uint64_t inc = spw_idgen_next(spw_log_idgen(cat->log));
    r = spw_os.mkdir(dir, 0755);
    if (r == -EEXIST && !leftover_of_create(dir)) {
        spw_error("stream %s: create refused: %s exists and holds files of no loaded stream (see the messages at "
                  "start); move it away, or repair its stream.json and restart",
                  c->name, dir);
        r = -ENOTEMPTY;
        goto out;
    }
    if ((r < 0 && r != -EEXIST) || (r = spw_os_fsync_dir(cat->dir)) < 0 || (r = write_def(dir, c, inc)) < 0 ||
        (r = stream_open(cat, c, inc, dir, &s)) < 0) {
        spw_error("stream %s: create failed: %s", c->name, spw_strerror(r));
        rmrf(dir); /* all of it made here (or by the create a crash cut) */
        goto out;
    }
    pthread_rwlock_wrlock(&cat->lock);
    insert(cat, s);
    pthread_rwlock_unlock(&cat->lock);
    spw_info("stream %s: created with %u partition(s), incarnation %" PRIu64, c->name, c->partitions, inc);
    r = 1;
out:
    pthread_mutex_unlock(&cat->ddl);
    return r;
}

int spw_catalog_delete(spw_catalog *cat, const char *name)
{
    pthread_mutex_lock(&cat->ddl);
    int found;
    pthread_rwlock_wrlock(&cat->lock);
    size_t at = find_pos(cat, name, strlen(name), &found);
    spw_stream *s = found ? cat->v[at] : NULL;
    if (s) {
        memmove(cat->v + at, cat->v + at + 1, (cat->n - at - 1) * sizeof *cat->v);
        cat->n--;
    }
    pthread_rwlock_unlock(&cat->lock);
    int r = s ? 0 : -ENOENT;
    if (s) {
        /* Retire first: requests still holding s may go on using it, but
         * nothing of s uses the directory by its path again — not its
         * partitions (rolls, recovery points, retention), not its version
         * store — since that path names the next stream of this name as
         * soon as the ddl lock is released (docs/architecture.md, "Stream
         * incarnations"). deleted is set before, so a version store being
         * opened for s now sees it (spw_es_of) and refuses. */
        atomic_store(&s->deleted, 1);
        for (uint32_t i = 0; i < s->cfg.partitions; i++)
            spw_part_retire(s->parts[i]);
        void (*es_retire)(struct spw_stream *) = atomic_load(&cat->es_retire);
        if (es_retire && s->cfg.versioned)
            es_retire(s);
        /* Move the directory aside now so the name can be reused at once;
         * the files go when the last request using the stream is done. */
        char from[4096], to[4096];
        snprintf(from, sizeof from, "%s/%s", cat->dir, name);
        snprintf(to, sizeof to, "%s/.deleted-%s-%" PRIu64, cat->dir, name, ++cat->deleted_seq);
        r = spw_os.rename(from, to);
        if (r == 0)
            r = spw_os_fsync_dir(cat->dir);
        snprintf(s->deleted_dir, sizeof s->deleted_dir, "%s", to);
        spw_info("stream %s: deleted", name);
        /* Its groups too, before the name is free again. */
        spw_groups *gs = atomic_load(&cat->groups);
        if (gs)
            spw_groups_drop_stream(gs, name);
        spw_stream_put(s);
    }
    pthread_mutex_unlock(&cat->ddl);
    return r;
}

spw_stream *spw_stream_get(spw_catalog *cat, const char *name, size_t len)
{
    int found;
    pthread_rwlock_rdlock(&cat->lock);
    size_t at = find_pos(cat, name, len, &found);
    spw_stream *s = found ? cat->v[at] : NULL;
    if (s)
        atomic_fetch_add(&s->refs, 1);
    pthread_rwlock_unlock(&cat->lock);
    return s;
}

/* Removes a deleted stream's files (moved aside when it was deleted). */
static void remove_dir(void *arg)
{
    char *dir = arg;
    rmrf(dir);
    spw_free(dir);
}

/* A stream's last reference is gone: it is closed at once, by the thread
 * that dropped it (a deleted one was retired before its directory moved:
 * its close writes nothing by path) and, if it was deleted, its files
 * are removed on an I/O worker (in place without one). */
void spw_stream_put(spw_stream *s)
{
    int refs = atomic_fetch_sub(&s->refs, 1);
    SPW_ASSERT(refs >= 1); /* a put without its get */
    if (refs != 1)
        return;
    char *dir = s->deleted ? spw_xstrdup(s->deleted_dir) : NULL;
    spw_workq *io = atomic_load(&s->cat->io);
    stream_free(s);
    if (!dir)
        return;
    if (io && spw_workq_submit(io, remove_dir, dir) == 0)
        return;
    remove_dir(dir);
}

void spw_catalog_each(spw_catalog *cat, void (*fn)(void *arg, spw_stream *s), void *arg)
{
    pthread_rwlock_rdlock(&cat->lock);
    size_t n = cat->n;
    spw_stream **v = spw_xmalloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        v[i] = cat->v[i];
        atomic_fetch_add(&v[i]->refs, 1);
    }
    pthread_rwlock_unlock(&cat->lock);
    for (size_t i = 0; i < n; i++) {
        fn(arg, v[i]);
        spw_stream_put(v[i]);
    }
    spw_free(v);
}

uint32_t spw_catalog_count(spw_catalog *cat)
{
    pthread_rwlock_rdlock(&cat->lock);
    uint32_t n = (uint32_t)cat->n;
    pthread_rwlock_unlock(&cat->lock);
    return n;
}

static void retain_one(void *arg, spw_stream *s)
{
    int64_t now = *(int64_t *)arg;
    for (uint32_t i = 0; i < s->cfg.partitions; i++)
        spw_part_enforce_retention(s->parts[i], now);
}

void spw_catalog_retention(spw_catalog *cat, int64_t now_ms) { spw_catalog_each(cat, retain_one, &now_ms); }

/* ---- ids after a restart ---- */

typedef struct ids_ctx {
    int64_t since_ms;
    spw_idgen *g;
    uint64_t batches;
    /* per partition, while its headers are walked: */
    int have;
    uint64_t top_ticket, top_offset, top_base_id;
} ids_ctx;

static void ids_header(void *arg, const spw_batch_hdr *h)
{
    ids_ctx *x = arg;
    x->batches++;
    spw_idgen_observe(x->g, h->base_id);
    uint64_t t = spw_id_ticket(h->base_id);
    if (!x->have || t > x->top_ticket) {
        x->have = 1;
        x->top_ticket = t;
        x->top_offset = h->base_offset;
        x->top_base_id = h->base_id;
    }
}

/* The highest id of the batch at offset (its base id if it cannot be read:
 * the record cursor answers damage for a batch whose records do not
 * decode, and returns none of them). */
static uint64_t batch_max_id(spw_part *p, uint64_t offset, uint64_t base_id)
{
    spw_cursor c;
    spw_cursor_init(&c, p, offset, 1);
    uint64_t id = base_id;
    spw_record_view rv;
    while (spw_cursor_next(&c, &rv) == 1) {
        const spw_batch_hdr *h = spw_cursor_batch(&c);
        if (h->base_offset != offset)
            break;
        if (rv.id > id)
            id = rv.id;
        if (c.next >= spw_batch_next_offset(h))
            break;
    }
    spw_cursor_fini(&c);
    return id;
}

static void ids_stream(void *arg, spw_stream *s)
{
    ids_ctx *x = arg;
    for (uint32_t i = 0; i < s->cfg.partitions; i++) {
        x->have = 0;
        if (spw_part_scan_headers(s->parts[i], x->since_ms, ids_header, x) < 0 || !x->have)
            continue;
        spw_idgen_observe(x->g, batch_max_id(s->parts[i], x->top_offset, x->top_base_id));
    }
}

uint64_t spw_catalog_observe_ids(spw_catalog *cat, int64_t since_ms)
{
    ids_ctx x = {.since_ms = since_ms, .g = spw_log_idgen(cat->log)};
    spw_catalog_each(cat, ids_stream, &x);
    return x.batches;
}
