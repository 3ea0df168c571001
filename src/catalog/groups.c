/*
 * Consumer-group state, leases and the offsets file: see groups.h and
 * docs/formats/group-offsets.md.
 */
#include "catalog/groups.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/name.h"
#include "core/buf.h"
#include "core/json.h"
#include "core/msg.h"
#include "os/os.h"
#include "catalog/stream.h"

typedef struct gpart {
    uint64_t committed;
    uint64_t lease_id; /* 0: not leased */
    uint64_t lease_from, lease_to;
    int64_t lease_expire_ms;
    char holder[SPW_GROUP_MEMBER_MAX + 1];
} gpart;

struct spw_group {
    char stream[SPW_STREAM_NAME_MAX + 1];
    char name[SPW_GROUP_NAME_MAX + 1];
    uint32_t nparts;
    uint64_t incarnation;    /* the stream's (catalog.h); 0 in files written before incarnations */
    pthread_mutex_t mu;      /* everything below */
    pthread_mutex_t save_mu; /* one save at a time */
    uint32_t rr;             /* next partition acquire tries first */
    uint64_t version;        /* bumped by every change of a committed offset */
    uint64_t saved_version;  /* what the file holds */
    gpart *parts;
    int dropped; /* its stream was deleted: serves nothing, never saved */
    struct spw_group *next;
};

struct spw_groups {
    char *dir; /* DATA/groups */
    pthread_rwlock_t lock;
    spw_group *head;
    spw_group *dropped; /* groups of deleted streams, freed at close */
};

/* Lease ids: 24 bits that change between runs (so a lease from before a
 * restart never matches), then a 40-bit counter. */
static uint64_t lease_nonce;
static _Atomic uint64_t lease_seq;

int spw_group_name_ok(const char *name, size_t len) { return spw_name_ok(name, len, SPW_GROUP_NAME_MAX); }
int spw_group_member_ok(const char *name, size_t len) { return spw_name_ok(name, len, SPW_GROUP_MEMBER_MAX); }

/* ---- the file ---- */

/* Parses the file's JSON (docs/formats/group-offsets.md) into committed[]
 * (up to cap) and checks its names. Returns the partition count or -1. */
static int parse_file(const char *p, size_t n, const char *stream, const char *group, uint64_t *incarnation,
                      uint64_t *committed, uint32_t cap)
{
    *incarnation = 0;
    spw_json_span v;
    const char *vend;
    spw_json_error e;
    if (spw_json_scan(p, p + n, NULL, 0, &v, &vend, &e) < 0)
        return -1;
    /* spw_json_scan fills found[] only for pointers: scan the top value ourselves. */
    while (p < vend && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'))
        p++;
    if (p >= vend || *p != '{')
        return -1;
    spw_json_span obj = {p, (size_t)(vend - p), SPW_JSON_OBJECT}, k, val;
    spw_json_iter it;
    spw_json_iter_init(&it, &obj);
    int have_v = 0, have_s = 0, have_g = 0, nparts = -1;
    while (spw_json_iter_next(&it, &k, &val)) {
        if (spw_json_str_eq(&k, "version")) {
            have_v = val.n == 1 && val.p[0] == '1';
        } else if (spw_json_str_eq(&k, "stream")) {
            have_s = val.type == SPW_JSON_STRING && spw_json_str_eq(&val, stream);
        } else if (spw_json_str_eq(&k, "group")) {
            have_g = val.type == SPW_JSON_STRING && spw_json_str_eq(&val, group);
        } else if (spw_json_str_eq(&k, "incarnation")) {
            int64_t x;
            if (val.type != SPW_JSON_NUMBER || spw_json_int64(&val, &x) || x < 0)
                return -1;
            *incarnation = (uint64_t)x;
        } else if (spw_json_str_eq(&k, "committed")) {
            if (val.type != SPW_JSON_ARRAY)
                return -1;
            const char *q = val.p + 1, *end = val.p + val.n - 1;
            uint32_t cnt = 0;
            for (;;) {
                while (q < end && (*q == ' ' || *q == ',' || *q == '\n' || *q == '\t' || *q == '\r'))
                    q++;
                if (q >= end)
                    break;
                uint64_t x = 0;
                int digits = 0;
                while (q < end && *q >= '0' && *q <= '9') {
                    if (x > (UINT64_MAX - 9) / 10)
                        return -1;
                    x = x * 10 + (uint64_t)(*q++ - '0');
                    digits++;
                }
                if (!digits || cnt >= cap)
                    return -1;
                committed[cnt++] = x;
            }
            nparts = (int)cnt;
        }
    }
    return have_v && have_s && have_g && nparts > 0 ? nparts : -1;
}

static spw_group *group_new(const char *stream, const char *name, uint32_t nparts)
{
    spw_group *g = spw_xcalloc(1, sizeof *g);
    snprintf(g->stream, sizeof g->stream, "%s", stream);
    snprintf(g->name, sizeof g->name, "%s", name);
    g->nparts = nparts;
    g->parts = spw_xcalloc(nparts, sizeof *g->parts);
    pthread_mutex_init(&g->mu, NULL);
    pthread_mutex_init(&g->save_mu, NULL);
    return g;
}

static void group_free(spw_group *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_mutex_destroy(&g->save_mu);
    spw_free(g->parts);
    spw_free(g);
}

static void load_stream_dir(spw_groups *gs, const char *stream)
{
    char dir[4096];
    if ((size_t)snprintf(dir, sizeof dir, "%s/%s", gs->dir, stream) >= sizeof dir)
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    uint64_t *c = spw_xcalloc(SPW_GROUP_PARTS_MAX, sizeof *c);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!spw_group_name_ok(de->d_name, strlen(de->d_name)))
            continue; /* ".", "..", ".NAME.tmp" of a save a crash cut */
        char path[4096 + 256];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        char *text = NULL;
        size_t len = 0;
        int r = spw_os_read_file(path, 1 << 20, &text, &len), n = -1;
        uint64_t inc = 0;
        if (r == 0)
            n = parse_file(text, len, stream, de->d_name, &inc, c, SPW_GROUP_PARTS_MAX);
        spw_free(text);
        if (n < 0) {
            spw_warn("consumer group file %s: %s; group skipped", path,
                     r < 0 ? spw_strerror(r) : "not a valid offsets file");
            continue;
        }
        spw_group *g = group_new(stream, de->d_name, (uint32_t)n);
        g->incarnation = inc;
        for (int i = 0; i < n; i++)
            g->parts[i].committed = c[i];
        g->next = gs->head;
        gs->head = g;
    }
    spw_free(c);
    closedir(d);
}

int spw_groups_open(const char *data_dir, spw_groups **out)
{
    spw_groups *gs = spw_xcalloc(1, sizeof *gs);
    size_t n = strlen(data_dir) + 8;
    gs->dir = spw_xmalloc(n);
    snprintf(gs->dir, n, "%s/groups", data_dir);
    int r = spw_os_mkdirs(gs->dir, 0755);
    if (r < 0) {
        spw_free(gs->dir);
        spw_free(gs);
        return r;
    }
    pthread_rwlock_init(&gs->lock, NULL);
    uint64_t t = spw_mono_ns() ^ (uint64_t)spw_wall_ms() * 1000000u; /* differs between runs */
    lease_nonce = ((t ^ (uint64_t)getpid() << 8) & 0xffffffu) << 40;
    DIR *d = opendir(gs->dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (spw_stream_name_ok(de->d_name, strlen(de->d_name)))
                load_stream_dir(gs, de->d_name);
        closedir(d);
    }
    *out = gs;
    return 0;
}

void spw_groups_close(spw_groups *gs)
{
    if (!gs)
        return;
    for (int k = 0; k < 2; k++) {
        spw_group **list = k ? &gs->dropped : &gs->head;
        while (*list) {
            spw_group *g = *list;
            *list = g->next;
            group_free(g);
        }
    }
    pthread_rwlock_destroy(&gs->lock);
    spw_free(gs->dir);
    spw_free(gs);
}

static spw_group *lookup(spw_groups *gs, const char *stream, const char *name)
{
    for (spw_group *g = gs->head; g; g = g->next)
        if (strcmp(g->stream, stream) == 0 && strcmp(g->name, name) == 0)
            return g;
    return NULL;
}

/* Removes g's file (g was unlinked from the list and marked dropped). */
static void remove_file(spw_groups *gs, const spw_group *g)
{
    char dir[4096], path[4096 + 300];
    snprintf(dir, sizeof dir, "%s/%s", gs->dir, g->stream);
    snprintf(path, sizeof path, "%s/%s", dir, g->name);
    int r = spw_os.unlink(path);
    if (r == 0)
        r = spw_os_fsync_dir(dir);
    if (r < 0 && r != -ENOENT)
        spw_warn("removing %s: %s", path, spw_strerror(r));
}

/* Moves g from the live list to the dropped one. REQUIRES: gs->lock for writing. */
static void drop_locked(spw_groups *gs, spw_group *g)
{
    for (spw_group **pp = &gs->head; *pp; pp = &(*pp)->next)
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    /* After a save under way: none starts writing once this is set. */
    pthread_mutex_lock(&g->save_mu);
    pthread_mutex_lock(&g->mu);
    g->dropped = 1;
    pthread_mutex_unlock(&g->mu);
    pthread_mutex_unlock(&g->save_mu);
    g->next = gs->dropped;
    gs->dropped = g;
}

spw_group *spw_group_find(spw_groups *gs, const char *stream, uint64_t incarnation, const char *name, int create,
                          uint32_t nparts, const uint64_t *start, int *created)
{
    if (created)
        *created = 0;
    pthread_rwlock_rdlock(&gs->lock);
    spw_group *g = lookup(gs, stream, name);
    pthread_rwlock_unlock(&gs->lock);
    if (g && g->incarnation == incarnation)
        return g;
    if (g ? g->incarnation > incarnation : !create || nparts == 0 || nparts > SPW_GROUP_PARTS_MAX)
        return NULL; /* no such group, or the caller holds a deleted stream */
    pthread_rwlock_wrlock(&gs->lock);
    g = lookup(gs, stream, name);
    if (g && g->incarnation > incarnation) {
        pthread_rwlock_unlock(&gs->lock);
        return NULL;
    }
    if (g && g->incarnation < incarnation) {
        /* Left from an earlier stream of this name (deleted, then created
         * again): its offsets mean nothing for this one. */
        spw_warn("consumer group %s/%s belonged to an earlier stream %s (incarnation %" PRIu64 ", now %" PRIu64
                 "); its offsets are dropped",
                 stream, name, stream, g->incarnation, incarnation);
        drop_locked(gs, g);
        remove_file(gs, g);
        g = NULL;
    }
    if (!g && create && nparts > 0 && nparts <= SPW_GROUP_PARTS_MAX) {
        g = group_new(stream, name, nparts);
        g->incarnation = incarnation;
        for (uint32_t i = 0; i < nparts; i++)
            g->parts[i].committed = start[i];
        g->version = 1; /* not on disk yet */
        g->next = gs->head;
        gs->head = g;
        if (created)
            *created = 1;
    }
    pthread_rwlock_unlock(&gs->lock);
    return g;
}

uint32_t spw_group_nparts(const spw_group *g) { return g->nparts; }
const char *spw_group_stream(const spw_group *g) { return g->stream; }
const char *spw_group_name(const spw_group *g) { return g->name; }

void spw_groups_each(spw_groups *gs, void (*fn)(void *arg, spw_group *g), void *arg)
{
    pthread_rwlock_rdlock(&gs->lock);
    for (spw_group *g = gs->head; g; g = g->next)
        fn(arg, g);
    pthread_rwlock_unlock(&gs->lock);
}

/* ---- leases ---- */

/* The partition a poll could take now, or -1: not leased, or its lease
 * expired (kept until then so its commit is told "expired", not
 * "unknown"), and records stored past its committed offset. REQUIRES:
 * g->mu. */
static int pick(spw_group *g, const uint64_t *end, const uint64_t *first, uint32_t n, int64_t now_ms)
{
    uint32_t np = g->nparts < n ? g->nparts : n;
    if (g->dropped)
        return -1;
    for (uint32_t k = 0; k < np; k++) {
        uint32_t i = (g->rr + k) % np;
        gpart *p = &g->parts[i];
        uint64_t from = p->committed < first[i] ? first[i] : p->committed;
        if ((!p->lease_id || p->lease_expire_ms <= now_ms) && end[i] > from)
            return (int)i;
    }
    return -1;
}

int spw_group_acquire(spw_group *g, const uint64_t *end, const uint64_t *first, uint32_t n, int64_t now_ms,
                      uint32_t lease_ms, const char *member, spw_lease *l)
{
    pthread_mutex_lock(&g->mu);
    int i = pick(g, end, first, n, now_ms);
    if (i < 0) {
        pthread_mutex_unlock(&g->mu);
        return 0;
    }
    gpart *p = &g->parts[i];
    /* Records below the oldest stored offset are gone (retention): the
     * lease starts at the oldest one, which the commit then moves past. */
    uint64_t from = p->committed < first[i] ? first[i] : p->committed;
    uint64_t id = lease_nonce | ((atomic_fetch_add(&lease_seq, 1) + 1) & ((1ull << 40) - 1));
    p->lease_id = id;
    p->lease_from = p->lease_to = from;
    p->lease_expire_ms = now_ms + lease_ms;
    snprintf(p->holder, sizeof p->holder, "%s", member);
    g->rr = ((uint32_t)i + 1) % g->nparts;
    l->partition = (uint32_t)i;
    l->id = id;
    l->from = l->to = from;
    pthread_mutex_unlock(&g->mu);
    return 1;
}

int spw_group_lease_delivered(spw_group *g, const spw_lease *l, uint64_t to)
{
    int r = -ESTALE;
    pthread_mutex_lock(&g->mu);
    gpart *p = &g->parts[l->partition];
    if (p->lease_id == l->id) {
        p->lease_to = to;
        r = 0;
    }
    pthread_mutex_unlock(&g->mu);
    return r;
}

int spw_group_skip(spw_group *g, spw_lease *l, uint64_t to)
{
    int r = -ESTALE;
    pthread_mutex_lock(&g->mu);
    gpart *p = &g->parts[l->partition];
    if (p->lease_id == l->id && to > p->lease_from) {
        if (p->committed < to) {
            p->committed = to;
            g->version++;
        }
        p->lease_from = p->lease_to = to;
        l->from = l->to = to;
        r = 0;
    }
    pthread_mutex_unlock(&g->mu);
    return r;
}

void spw_group_release(spw_group *g, const spw_lease *l)
{
    pthread_mutex_lock(&g->mu);
    if (g->parts[l->partition].lease_id == l->id)
        g->parts[l->partition].lease_id = 0;
    pthread_mutex_unlock(&g->mu);
}

int spw_group_ready(spw_group *g, const uint64_t *end, const uint64_t *first, uint32_t n, int64_t now_ms)
{
    pthread_mutex_lock(&g->mu);
    int i = pick(g, end, first, n, now_ms);
    pthread_mutex_unlock(&g->mu);
    return i >= 0;
}

int spw_group_commit(spw_group *g, uint32_t partition, uint64_t id, uint64_t offset, int64_t now_ms)
{
    if (partition >= g->nparts)
        return -EINVAL;
    int r = 0;
    pthread_mutex_lock(&g->mu);
    gpart *p = &g->parts[partition];
    if (!id || p->lease_id != id)
        r = -ESTALE;
    else if (p->lease_expire_ms <= now_ms)
        r = -ETIME;
    else if (offset < p->lease_from || offset > p->lease_to)
        r = -ERANGE;
    if (r == 0) {
        if (offset != p->committed) {
            p->committed = offset;
            g->version++;
        }
        p->lease_id = 0;
    } else if (r == -ETIME) {
        p->lease_id = 0;
    }
    pthread_mutex_unlock(&g->mu);
    return r;
}

int spw_group_set_committed(spw_group *g, uint32_t partition, uint64_t offset)
{
    if (partition >= g->nparts)
        return -EINVAL;
    pthread_mutex_lock(&g->mu);
    gpart *p = &g->parts[partition];
    if (offset != p->committed) {
        p->committed = offset;
        g->version++;
    }
    p->lease_id = 0;
    pthread_mutex_unlock(&g->mu);
    return 0;
}

int spw_group_reset(spw_group *g, const uint64_t *to, uint32_t n, int64_t now_ms, char *holder, size_t cap)
{
    pthread_mutex_lock(&g->mu);
    for (uint32_t i = 0; i < g->nparts; i++) {
        gpart *p = &g->parts[i];
        if (p->lease_id && p->lease_expire_ms > now_ms) {
            if (holder)
                snprintf(holder, cap, "%s", p->holder);
            pthread_mutex_unlock(&g->mu);
            return -EBUSY;
        }
    }
    for (uint32_t i = 0; i < g->nparts; i++) {
        gpart *p = &g->parts[i];
        p->lease_id = 0;
        if (i < n && to[i] != UINT64_MAX && to[i] != p->committed) {
            p->committed = to[i];
            g->version++;
        }
    }
    pthread_mutex_unlock(&g->mu);
    return 0;
}

int spw_group_clamp(spw_group *g, uint32_t partition, uint64_t end, uint64_t *old)
{
    int r = 0;
    pthread_mutex_lock(&g->mu);
    if (partition < g->nparts && g->parts[partition].committed > end) {
        gpart *p = &g->parts[partition];
        *old = p->committed;
        p->committed = end;
        p->lease_id = 0;
        g->version++;
        r = 1;
    }
    pthread_mutex_unlock(&g->mu);
    return r;
}

void spw_group_info(spw_group *g, spw_group_part_info *out, uint32_t n, int64_t now_ms)
{
    pthread_mutex_lock(&g->mu);
    for (uint32_t i = 0; i < n && i < g->nparts; i++) {
        gpart *p = &g->parts[i];
        out[i].committed = p->committed;
        out[i].held = p->lease_id && p->lease_expire_ms > now_ms;
        out[i].lease_left_ms = out[i].held ? p->lease_expire_ms - now_ms : 0;
        snprintf(out[i].holder, sizeof out[i].holder, "%s", out[i].held ? p->holder : "");
    }
    for (uint32_t i = g->nparts; i < n; i++)
        memset(&out[i], 0, sizeof out[i]);
    pthread_mutex_unlock(&g->mu);
}

/* ---- saving ---- */

int spw_group_save(spw_groups *gs, spw_group *g)
{
    pthread_mutex_lock(&g->save_mu);
    pthread_mutex_lock(&g->mu);
    uint64_t v = g->dropped ? g->saved_version : g->version; /* a dropped group is not written */
    int r = 0;
    spw_buf b = SPW_BUF_INIT;
    if (v != g->saved_version) {
        r = spw_buf_puts(&b, "{\"version\":1,\"stream\":\"") || spw_buf_puts(&b, g->stream) ||
            spw_buf_puts(&b, "\",\"group\":\"") || spw_buf_puts(&b, g->name) ||
            spw_buf_puts(&b, "\",\"incarnation\":") || spw_buf_put_u64(&b, g->incarnation) ||
            spw_buf_puts(&b, ",\"committed\":[");
        for (uint32_t i = 0; i < g->nparts && !r; i++)
            r = (i && spw_buf_puts(&b, ",")) || spw_buf_put_u64(&b, g->parts[i].committed);
        if (!r)
            r = spw_buf_puts(&b, "]}\n");
        r = r ? -ENOMEM : 0;
    }
    pthread_mutex_unlock(&g->mu);
    if (v != g->saved_version && r == 0) {
        char dir[4096], tmp[300];
        snprintf(dir, sizeof dir, "%s/%s", gs->dir, g->stream);
        snprintf(tmp, sizeof tmp, ".%s.tmp", g->name);
        int fresh = 0;
        if (access(dir, F_OK) != 0) {
            r = spw_os_mkdirs(dir, 0755);
            fresh = 1;
        }
        if (r == 0)
            r = spw_os_write_file_atomic(dir, g->name, tmp, b.p, b.len, SPW_OS_SYNC_FULL);
        if (r == 0 && fresh)
            r = spw_os_fsync_dir(gs->dir);
        if (r == 0) {
            pthread_mutex_lock(&g->mu);
            g->saved_version = v;
            pthread_mutex_unlock(&g->mu);
        } else {
            spw_warn("saving consumer group %s/%s: %s", g->stream, g->name, spw_strerror(r));
        }
    }
    spw_buf_fini(&b);
    pthread_mutex_unlock(&g->save_mu);
    return r;
}

void (*spw_groups_test_drop_pause)(const char *stream);

int spw_groups_drop_stream(spw_groups *gs, const char *stream)
{
    if (spw_groups_test_drop_pause)
        spw_groups_test_drop_pause(stream);
    pthread_rwlock_wrlock(&gs->lock);
    spw_group **pp = &gs->head;
    while (*pp) {
        spw_group *g = *pp;
        if (strcmp(g->stream, stream) != 0) {
            pp = &g->next;
            continue;
        }
        drop_locked(gs, g);
    }
    pthread_rwlock_unlock(&gs->lock);
    char dir[4096];
    if ((size_t)snprintf(dir, sizeof dir, "%s/%s", gs->dir, stream) >= sizeof dir)
        return -ENAMETOOLONG;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char path[4096 + 256];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        int e = spw_os.unlink(path);
        if (e < 0 && r == 0)
            r = e;
    }
    closedir(d);
    if (r == 0 && rmdir(dir) != 0)
        r = -errno;
    if (r == 0)
        r = spw_os_fsync_dir(gs->dir);
    if (r < 0)
        spw_warn("removing the consumer groups of deleted stream %s (%s): %s", stream, dir, spw_strerror(r));
    return r;
}

/* ---- lease ids on the wire ---- */

void spw_lease_format(const spw_lease *l, char *out, size_t cap)
{
    snprintf(out, cap, "%" PRIu32 "-%016" PRIx64, l->partition, l->id);
}

int spw_lease_parse(const char *s, size_t n, uint32_t *partition, uint64_t *id)
{
    size_t i = 0;
    uint64_t p = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9' && i < 10)
        p = p * 10 + (uint64_t)(s[i++] - '0');
    if (i == 0 || i >= n || s[i] != '-' || p >= SPW_GROUP_PARTS_MAX || n - i - 1 != 16)
        return -EINVAL;
    uint64_t x = 0;
    for (i++; i < n; i++) {
        char c = s[i];
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (h < 0)
            return -EINVAL;
        x = x << 4 | (uint64_t)h;
    }
    *partition = (uint32_t)p;
    *id = x;
    return 0;
}
