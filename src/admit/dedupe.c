/* The dedupe table: see dedupe.h. */
#include "admit/dedupe.h"
#include "core/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/endian.h"
#include "core/error.h"
#include "core/siphash.h"
#include "os/os.h"

#define STRIPES 64
#define BUCKETS_PER_STRIPE 1024 /* grows by doubling */

enum { ST_BUSY, ST_DONE, ST_INDET };

struct spw_dd_entry {
    uint64_t scope, key;
    uint32_t n_events;
    int state;
    int64_t expires_ms;
    int prev_state; /* ST_INDET: what a reserved entry goes back to if unresolved */
    spw_dd_result res;
    uint32_t slots_cap;
    struct spw_dd_entry *hnext;        /* hash chain */
    struct spw_dd_entry *aprev, *anext; /* age list, oldest first */
    struct stripe *st;
};

typedef struct stripe {
    pthread_mutex_t mu;
    spw_dd_entry **b;
    size_t nb, n;
    spw_dd_entry *old, *young;
} stripe;

struct spw_dd {
    stripe st[STRIPES];
    uint64_t max_keys;
    uint64_t k0, k1; /* the secret keys are hashed under */
    _Atomic uint64_t n, hits, evicted, refused;
    _Atomic int64_t last_sweep_ms;
};

static uint64_t mix(uint64_t x) { return spw_fmix64(x); }

/* 'kind', tenant length (one byte: tenants are at most 63), tenant: the
 * prefix of every key's input; returns its length. */
static size_t key_prefix(uint8_t *b, char kind, const char *tenant)
{
    size_t tl = strlen(tenant);
    if (tl > 255)
        tl = 255;
    b[0] = (uint8_t)kind;
    b[1] = (uint8_t)tl;
    memcpy(b + 2, tenant, tl);
    return 2 + tl;
}

uint64_t spw_dd_http_key(const spw_dd *d, const char *tenant, const char *key)
{
    size_t kl = strlen(key);
    uint8_t stackbuf[512];
    size_t need = 2 + 255 + kl;
    uint8_t *b = need <= sizeof stackbuf ? stackbuf : spw_xmalloc(need);
    size_t n = key_prefix(b, 'H', tenant);
    memcpy(b + n, key, kl);
    uint64_t h = spw_siphash24(d->k0, d->k1, b, n + kl);
    if (b != stackbuf)
        spw_free(b);
    return h ? h : 1;
}

uint64_t spw_dd_producer_key(const spw_dd *d, const char *tenant, uint64_t producer_id, uint32_t producer_seq)
{
    uint8_t b[2 + 255 + 12];
    size_t n = key_prefix(b, 'P', tenant);
    spw_put64(b + n, producer_id);
    spw_put32(b + n + 8, producer_seq);
    uint64_t h = spw_siphash24(d->k0, d->k1, b, n + 12);
    return h ? h : 1;
}

void spw_dd_set_secret(spw_dd *d, uint64_t k0, uint64_t k1)
{
    d->k0 = k0;
    d->k1 = k1;
}

#define SECRET_FILE "dedupe.secret"
#define SECRET_BYTES 16

int spw_dd_secret_load(const char *dir, uint64_t *k0, uint64_t *k1, char *err, size_t cap)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/" SECRET_FILE, dir);
    uint8_t b[SECRET_BYTES];
    int fd = spw_os.open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd >= 0) {
        off_t size = spw_os.size(fd);
        ssize_t n = size == SECRET_BYTES ? spw_os_pread_full(fd, b, SECRET_BYTES, 0) : 0;
        struct stat st;
        if (fstat(fd, &st) == 0 && (st.st_mode & 077))
            fchmod(fd, 0600); /* the owner's only, whoever made it otherwise */
        spw_os.close(fd);
        if (size < 0 || n < 0) {
            int e = size < 0 ? (int)size : (int)n;
            snprintf(err, cap, "%s: %s", path, spw_strerror(e));
            return e;
        }
        if (n != SECRET_BYTES) {
            snprintf(err, cap,
                     "%s holds %lld bytes, not the %d written at the first start: restore it from a backup, or "
                     "delete it (a new secret is then made, and retries of requests sent before are no longer "
                     "recognised as duplicates)",
                     path, (long long)size, SECRET_BYTES);
            return SPW_ECORRUPT;
        }
    } else if (fd != -ENOENT) {
        snprintf(err, cap, "%s: %s", path, spw_strerror(fd));
        return fd;
    } else {
        if (getrandom(b, SECRET_BYTES, 0) != SECRET_BYTES) {
            int e = -errno;
            snprintf(err, cap, "no random bytes for %s: %s", path, spw_strerror(e));
            return e;
        }
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        spw_os.unlink(tmp); /* a leftover of a start that stopped here */
        int r = fd = spw_os.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            r = spw_os_pwrite_all(fd, b, SECRET_BYTES, 0);
            if (r == 0)
                r = spw_os.fsync(fd);
            spw_os.close(fd);
        }
        if (r == 0)
            r = spw_os.rename(tmp, path);
        if (r == 0)
            r = spw_os_fsync_dir(dir);
        if (r < 0) {
            spw_os.unlink(tmp);
            snprintf(err, cap, "writing %s: %s", path, spw_strerror(r));
            return r;
        }
    }
    *k0 = spw_get64(b);
    *k1 = spw_get64(b + 8);
    return 0;
}

spw_dd *spw_dd_new(uint64_t max_keys)
{
    spw_dd *d = spw_xcalloc(1, sizeof *d);
    d->max_keys = max_keys;
    uint64_t k[2];
    if (getrandom(k, sizeof k, 0) == (ssize_t)sizeof k) {
        d->k0 = k[0];
        d->k1 = k[1];
    } else { /* no entropy: still a per-process value nobody chose */
        d->k0 = spw_fmix64((uint64_t)(uintptr_t)d ^ (uint64_t)getpid());
        d->k1 = spw_fmix64(d->k0 ^ 0x9e3779b97f4a7c15ull);
    }
    for (int i = 0; i < STRIPES; i++) {
        pthread_mutex_init(&d->st[i].mu, NULL);
        d->st[i].nb = BUCKETS_PER_STRIPE;
        d->st[i].b = spw_xcalloc(BUCKETS_PER_STRIPE, sizeof *d->st[i].b);
    }
    return d;
}

void spw_dd_result_free(spw_dd_result *r)
{
    spw_free(r->slots);
    spw_free(r->unknown);
    r->slots = NULL;
    r->unknown = NULL;
    r->nslots = r->nunknown = 0;
}

static void entry_free(spw_dd_entry *e)
{
    spw_dd_result_free(&e->res);
    spw_free(e);
}

void spw_dd_free(spw_dd *d)
{
    if (!d)
        return;
    for (int i = 0; i < STRIPES; i++) {
        for (spw_dd_entry *e = d->st[i].old, *next; e; e = next) {
            next = e->anext;
            entry_free(e);
        }
        spw_free(d->st[i].b);
        pthread_mutex_destroy(&d->st[i].mu);
    }
    spw_free(d);
}

static stripe *stripe_of(spw_dd *d, uint64_t scope, uint64_t key, uint64_t *h)
{
    *h = mix(scope * 0x9e3779b97f4a7c15ull ^ key);
    return &d->st[*h % STRIPES];
}

static spw_dd_entry **find(stripe *s, uint64_t h, uint64_t scope, uint64_t key)
{
    spw_dd_entry **pp = &s->b[(h / STRIPES) & (s->nb - 1)];
    while (*pp && !((*pp)->scope == scope && (*pp)->key == key))
        pp = &(*pp)->hnext;
    return pp;
}

static void unlink_entry(spw_dd *d, stripe *s, spw_dd_entry *e)
{
    uint64_t h = mix(e->scope * 0x9e3779b97f4a7c15ull ^ e->key);
    spw_dd_entry **pp = find(s, h, e->scope, e->key);
    if (*pp == e)
        *pp = e->hnext;
    if (e->aprev)
        e->aprev->anext = e->anext;
    else
        s->old = e->anext;
    if (e->anext)
        e->anext->aprev = e->aprev;
    else
        s->young = e->aprev;
    s->n--;
    atomic_fetch_sub(&d->n, 1);
}

static void grow(stripe *s)
{
    size_t nb = s->nb * 2;
    spw_dd_entry **b = spw_xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < s->nb; i++) {
        for (spw_dd_entry *e = s->b[i], *next; e; e = next) {
            next = e->hnext;
            uint64_t h = mix(e->scope * 0x9e3779b97f4a7c15ull ^ e->key);
            spw_dd_entry **slot = &b[(h / STRIPES) & (nb - 1)];
            e->hnext = *slot;
            *slot = e;
        }
    }
    spw_free(s->b);
    s->b = b;
    s->nb = nb;
}

/* Drops expired entries from the old end. Called with s->mu held. An
 * entry inside its window is never dropped to make room (dedupe.h). */
static void make_room(spw_dd *d, stripe *s, int64_t now_ms)
{
    while (s->old && s->old->state != ST_BUSY && s->old->expires_ms <= now_ms) {
        spw_dd_entry *e = s->old;
        unlink_entry(d, s, e);
        entry_free(e);
    }
}

/* The table is full: frees every expired entry of every stripe (windows
 * differ per stream, so age order is not expiry order), at most once a
 * second. Takes the stripes' mutexes one at a time; none may be held. */
static void sweep(spw_dd *d, int64_t now_ms)
{
    int64_t last = atomic_load(&d->last_sweep_ms);
    if (now_ms - last < 1000 || !atomic_compare_exchange_strong(&d->last_sweep_ms, &last, now_ms))
        return;
    for (int i = 0; i < STRIPES; i++) {
        stripe *s = &d->st[i];
        pthread_mutex_lock(&s->mu);
        for (spw_dd_entry *e = s->old, *next; e; e = next) {
            next = e->anext;
            if (e->state == ST_DONE && e->expires_ms <= now_ms) {
                unlink_entry(d, s, e);
                entry_free(e);
                atomic_fetch_add(&d->evicted, 1);
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
}

static spw_dd_entry *insert(spw_dd *d, stripe *s, uint64_t h, uint64_t scope, uint64_t key, int64_t now_ms)
{
    make_room(d, s, now_ms);
    if (s->n >= s->nb)
        grow(s);
    spw_dd_entry *e = spw_xcalloc(1, sizeof *e);
    e->scope = scope;
    e->key = key;
    e->st = s;
    spw_dd_entry **slot = &s->b[(h / STRIPES) & (s->nb - 1)];
    e->hnext = *slot;
    *slot = e;
    e->aprev = s->young;
    if (s->young)
        s->young->anext = e;
    else
        s->old = e;
    s->young = e;
    s->n++;
    atomic_fetch_add(&d->n, 1);
    return e;
}

static void copy_result(spw_dd_result *dst, const spw_dd_result *src)
{
    *dst = *src;
    dst->slots = spw_xmalloc((src->nslots ? src->nslots : 1) * sizeof *dst->slots);
    if (src->nslots)
        memcpy(dst->slots, src->slots, src->nslots * sizeof *dst->slots);
    dst->unknown = NULL;
    if (src->nunknown) {
        dst->unknown = spw_xmalloc(src->nunknown * sizeof *dst->unknown);
        memcpy(dst->unknown, src->unknown, src->nunknown * sizeof *dst->unknown);
    }
}

int spw_dd_begin(spw_dd *d, uint64_t scope, uint64_t key, uint32_t n_events, int64_t now_ms, spw_dd_entry **out,
                 spw_dd_result *res)
{
    uint64_t h;
    stripe *s = stripe_of(d, scope, key, &h);
    if (atomic_load(&d->n) >= d->max_keys)
        sweep(d, now_ms);
    pthread_mutex_lock(&s->mu);
    spw_dd_entry *e = *find(s, h, scope, key);
    if (e && e->state != ST_BUSY && e->expires_ms <= now_ms) {
        unlink_entry(d, s, e);
        entry_free(e);
        e = NULL;
    }
    if (!e)
        make_room(d, s, now_ms);
    int r;
    if (!e && atomic_load(&d->n) >= d->max_keys) {
        /* Full of keys still inside their windows: forgetting one would
         * let its retry append again, so the new key is refused instead. */
        atomic_fetch_add(&d->refused, 1);
        r = SPW_DD_FULL;
    } else if (!e) {
        e = insert(d, s, h, scope, key, now_ms);
        e->n_events = n_events;
        e->state = ST_BUSY;
        *out = e;
        r = SPW_DD_NEW;
    } else if (e->n_events != n_events) {
        r = SPW_DD_CONFLICT;
    } else if (e->state == ST_BUSY) {
        r = SPW_DD_BUSY;
    } else if (e->state == ST_INDET) {
        copy_result(res, &e->res);
        e->state = ST_BUSY;
        e->prev_state = ST_INDET;
        *out = e;
        r = SPW_DD_INDET;
    } else {
        copy_result(res, &e->res);
        atomic_fetch_add(&d->hits, 1);
        if (e->res.complete) {
            r = SPW_DD_DONE;
        } else {
            e->state = ST_BUSY;
            e->prev_state = ST_DONE;
            *out = e;
            r = SPW_DD_PARTIAL;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

void spw_dd_finish(spw_dd *d, spw_dd_entry *e, const spw_dd_result *r, int64_t expires_ms)
{
    stripe *s = e->st;
    pthread_mutex_lock(&s->mu);
    if (!r) {
        if (e->res.nslots) {
            e->state = ST_DONE; /* a rebuilt partial entry stays what the log holds */
        } else {
            unlink_entry(d, s, e);
            entry_free(e);
        }
    } else {
        spw_dd_result_free(&e->res);
        copy_result(&e->res, r);
        e->res.nunknown = 0;
        spw_free(e->res.unknown);
        e->res.unknown = NULL;
        e->slots_cap = r->nslots;
        e->expires_ms = expires_ms;
        e->state = ST_DONE;
    }
    pthread_mutex_unlock(&s->mu);
}

void spw_dd_fail(spw_dd *d, spw_dd_entry *e, const spw_dd_result *known, const uint32_t *unknown,
                 uint32_t nunknown, uint64_t attempt_ticket, int64_t expires_ms)
{
    (void)d;
    stripe *s = e->st;
    spw_dd_result r = {.n_events = e->n_events,
                       .nslots = known ? known->nslots : 0,
                       .slots = known ? known->slots : NULL,
                       .nunknown = nunknown,
                       .unknown = (uint32_t *)unknown,
                       .attempt_ticket = attempt_ticket};
    spw_dd_result c;
    copy_result(&c, &r); /* outside the lock: it allocates */
    pthread_mutex_lock(&s->mu);
    spw_dd_result_free(&e->res);
    e->res = c;
    e->slots_cap = c.nslots;
    if (expires_ms > e->expires_ms)
        e->expires_ms = expires_ms;
    e->state = ST_INDET;
    pthread_mutex_unlock(&s->mu);
}

void spw_dd_unresolved(spw_dd *d, spw_dd_entry *e)
{
    (void)d;
    stripe *s = e->st;
    pthread_mutex_lock(&s->mu);
    e->state = e->prev_state;
    pthread_mutex_unlock(&s->mu);
}

void spw_dd_update(spw_dd *d, spw_dd_entry *e, const spw_dd_result *r)
{
    (void)d;
    spw_dd_result c;
    copy_result(&c, r);
    spw_free(c.unknown);
    c.unknown = NULL;
    c.nunknown = 0;
    stripe *s = e->st;
    pthread_mutex_lock(&s->mu);
    spw_dd_result_free(&e->res);
    e->res = c;
    e->slots_cap = c.nslots;
    e->prev_state = ST_DONE;
    pthread_mutex_unlock(&s->mu);
}

void spw_dd_restore(spw_dd *d, uint64_t scope, uint64_t key, uint32_t request_count, uint64_t batch_first_ticket,
                    uint32_t partition, uint64_t first_offset, uint32_t count, int64_t expires_ms)
{
    uint64_t h;
    stripe *s = stripe_of(d, scope, key, &h);
    pthread_mutex_lock(&s->mu);
    spw_dd_entry *e = *find(s, h, scope, key);
    if (!e) {
        e = insert(d, s, h, scope, key, 0);
        e->n_events = request_count;
        e->state = ST_DONE;
        e->res.n_events = request_count;
        e->res.first_ticket = batch_first_ticket;
    }
    if (e->n_events == request_count) {
        if (e->res.nslots == e->slots_cap) {
            e->slots_cap = e->slots_cap ? e->slots_cap * 2 : 4;
            e->res.slots = spw_xrealloc(e->res.slots, e->slots_cap * sizeof *e->res.slots);
        }
        e->res.slots[e->res.nslots++] = (spw_dd_slot){.partition = partition, .count = count, .first_offset = first_offset};
        if (batch_first_ticket < e->res.first_ticket)
            e->res.first_ticket = batch_first_ticket;
        if (expires_ms > e->expires_ms)
            e->expires_ms = expires_ms;
        uint64_t stored = 0;
        for (uint32_t i = 0; i < e->res.nslots; i++)
            stored += e->res.slots[i].count;
        e->res.complete = e->res.ids_known = stored >= request_count;
    }
    pthread_mutex_unlock(&s->mu);
}

void spw_dd_drop_scope(spw_dd *d, uint64_t scope)
{
    for (int i = 0; i < STRIPES; i++) {
        stripe *s = &d->st[i];
        pthread_mutex_lock(&s->mu);
        for (spw_dd_entry *e = s->old, *next; e; e = next) {
            next = e->anext;
            if (e->scope == scope && e->state != ST_BUSY) {
                unlink_entry(d, s, e);
                entry_free(e);
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
}

void spw_dd_stats_get(spw_dd *d, spw_dd_stats *st)
{
    st->entries = atomic_load(&d->n);
    st->max_entries = d->max_keys;
    st->hits = atomic_load(&d->hits);
    st->evicted = atomic_load(&d->evicted);
    st->refused = atomic_load(&d->refused);
}
