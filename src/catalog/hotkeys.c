/*
 * Hot keys: the split table, the heavy-hitters table and the durable
 * record of automatic splits. See hotkeys.h for the design; the file's
 * bytes are in docs/formats/hotkeys.md.
 */
#include "catalog/hotkeys.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/crc32c.h"
#include "core/endian.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/invariant.h"
#include "core/msg.h"
#include "os/os.h"

/* docs/formats/hotkeys.md */
#define HOT_FILE "hot_keys"
#define HOT_TMP "hot_keys.tmp"
#define HOT_MAGIC "SPWHOTK1"
#define HOT_HEAD 12  /* magic, count */
#define HOT_ENTRY 24 /* key_len, split, reserved, at_ms, per_s; then the key */

#define SLOTS (2 * SPW_HOT_SPLITS) /* open addressing at most half full */

enum { E_FREE, E_PENDING, E_READY, E_FAILED };

typedef struct hot_entry {
    _Atomic int state; /* E_*: FREE -> PENDING -> READY, or PENDING -> FAILED -> PENDING */
    uint32_t split;
    uint32_t len;
    int automatic;
    uint64_t hash;
    int64_t at_ms;
    double per_s;
    _Atomic uint32_t rr; /* round robin of requests without an idempotency key */
    char key[SPW_HOT_KEY_BYTES + 1];
} hot_entry;

typedef struct hot_counter {
    uint64_t hash, count, err;
    uint32_t len;
    char key[SPW_HOT_KEY_BYTES + 1];
} hot_counter;

struct spw_hot {
    uint32_t split;
    double above_per_s; /* 0: no automatic splits */
    int64_t window_ms;
    uint32_t top;
    char dir[4096];
    _Atomic uint32_t nready; /* entries READY: 0 lets spw_hot_route return at once */
    pthread_mutex_t mu;      /* entries' writers, the counters */
    pthread_mutex_t file;    /* one writer of dir/hot_keys at a time */
    uint32_t nused;          /* entries not FREE */
    _Atomic uint64_t refused;
    int warned_full;
    hot_entry e[SLOTS];
    /* heavy hitters: this window's counters, and the last complete one's */
    int64_t win_start; /* monotonic ms; 0 before the first count */
    hot_counter cur[SPW_HOT_TRACK];
    uint32_t ncur;
    hot_counter last[SPW_HOT_TRACK];
    uint32_t nlast;
    int64_t last_start;
};

static uint64_t key_hash(const void *k, size_t n) { return spw_fnv1a64(SPW_FNV64_OFFSET ^ 0x5bd1e995u, k, n); }

/* The entry of key in any state but FREE, or the FREE slot where it would
 * go (NULL: table full). */
static hot_entry *find_slot(spw_hot *h, const void *key, size_t n, uint64_t hash)
{
    for (uint32_t i = 0; i < SLOTS; i++) {
        hot_entry *e = &h->e[(hash + i) % SLOTS];
        int st = atomic_load_explicit(&e->state, memory_order_acquire);
        if (st == E_FREE)
            return e;
        if (e->hash == hash && e->len == n && memcmp(e->key, key, n) == 0)
            return e;
    }
    return NULL;
}

/* REQUIRES: h->mu held (or h not yet shared). Adds key as state st; NULL
 * when SPW_HOT_SPLITS entries are used or it exists. */
static hot_entry *add(spw_hot *h, const void *key, size_t n, int st, int automatic)
{
    SPW_ASSERT(n >= 1 && n <= SPW_HOT_KEY_BYTES);
    uint64_t hash = key_hash(key, n);
    hot_entry *e = find_slot(h, key, n, hash);
    if (!e || atomic_load(&e->state) != E_FREE || h->nused >= SPW_HOT_SPLITS)
        return NULL;
    e->hash = hash;
    e->len = (uint32_t)n;
    memcpy(e->key, key, n);
    e->key[n] = 0;
    e->split = h->split;
    e->automatic = automatic;
    h->nused++;
    atomic_store_explicit(&e->state, st, memory_order_release);
    if (st == E_READY)
        atomic_fetch_add(&h->nready, 1);
    return e;
}

const char *spw_hot_file_check(const uint8_t *p, size_t len, uint32_t *count)
{
    *count = 0;
    if (len < HOT_HEAD + 4 || memcmp(p, HOT_MAGIC, 8) != 0)
        return "not a hot_keys file";
    if (spw_crc32c(p, len - 4) != spw_get32(p + len - 4))
        return "checksum mismatch";
    uint32_t n = spw_get32(p + 8);
    if (n > SPW_HOT_SPLITS)
        return "more entries than a stream splits";
    size_t at = HOT_HEAD;
    for (uint32_t i = 0; i < n; i++) {
        if (at + HOT_ENTRY > len - 4)
            return "truncated entry";
        uint32_t kl = spw_get16(p + at), split = spw_get16(p + at + 2);
        if (kl < 1 || kl > SPW_HOT_KEY_BYTES || at + HOT_ENTRY + kl > len - 4 || split < 2 ||
            split > SPW_HOT_SPLIT_MAX)
            return "bad entry";
        at += HOT_ENTRY + kl;
    }
    if (at != len - 4)
        return "trailing bytes";
    *count = n;
    return NULL;
}

/* Parses dir/hot_keys into READY automatic entries: all of them, or none
 * when any part of the file is damaged (docs/formats/hotkeys.md "Reads"). */
static int load(spw_hot *h)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", h->dir, HOT_FILE);
    char *body;
    size_t len;
    int r = spw_os_read_file(path, 1 << 20, &body, &len);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    const uint8_t *p = (const uint8_t *)body;
    uint32_t n;
    const char *why = spw_hot_file_check(p, len, &n);
    size_t at = HOT_HEAD;
    for (uint32_t i = 0; !why && i < n; i++) {
        uint32_t kl = spw_get16(p + at), split = spw_get16(p + at + 2);
        int64_t at_ms = (int64_t)spw_get64(p + at + 8);
        uint64_t bits = spw_get64(p + at + 16);
        double per_s;
        memcpy(&per_s, &bits, 8);
        hot_entry *e = find_slot(h, p + at + HOT_ENTRY, kl, key_hash(p + at + HOT_ENTRY, kl));
        if (e && atomic_load(&e->state) == E_FREE) {
            e = add(h, p + at + HOT_ENTRY, kl, E_PENDING, 1);
            if (e) {
                e->split = split;
                e->at_ms = at_ms;
                e->per_s = per_s;
                atomic_store(&e->state, E_READY);
                atomic_fetch_add(&h->nready, 1);
            }
        }
        at += HOT_ENTRY + kl;
    }
    if (why)
        spw_error("stream in %s: %s: %s; its automatic hot-key splits are not applied until a new one is recorded",
                  h->dir, HOT_FILE, why);
    spw_free(body);
    return 0;
}

int spw_hot_open(const spw_stream_config *c, const char *dir, spw_hot **out)
{
    SPW_ASSERT(c->hot_split >= 2);
    spw_hot *h = spw_xcalloc(1, sizeof *h);
    h->split = c->hot_split;
    h->above_per_s = c->hot_above_per_s;
    h->window_ms = c->hot_window_ms > 0 ? c->hot_window_ms : 1000;
    h->top = c->hot_top ? c->hot_top : 5;
    snprintf(h->dir, sizeof h->dir, "%s", dir);
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->file, NULL);
    for (uint32_t i = 0; i < c->hot_nkeys; i++)
        add(h, c->hot_keys[i], strlen(c->hot_keys[i]), E_READY, 0);
    int r = load(h);
    if (r < 0) {
        spw_hot_close(h);
        return r;
    }
    *out = h;
    return 0;
}

void spw_hot_close(spw_hot *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->file);
    spw_free(h);
}

uint32_t spw_hot_route(spw_hot *h, const void *key, size_t n, uint32_t home, uint32_t partitions, uint64_t idem_key,
                       uint32_t i)
{
    if (atomic_load_explicit(&h->nready, memory_order_acquire) == 0 || n < 1 || n > SPW_HOT_KEY_BYTES)
        return UINT32_MAX;
    uint64_t hash = key_hash(key, n);
    for (uint32_t j = 0; j < SLOTS; j++) {
        hot_entry *e = &h->e[(hash + j) % SLOTS];
        int st = atomic_load_explicit(&e->state, memory_order_acquire);
        if (st == E_FREE)
            return UINT32_MAX;
        if (st != E_READY || e->hash != hash || e->len != n || memcmp(e->key, key, n) != 0)
            continue;
        uint32_t k = e->split < partitions ? e->split : partitions;
        uint32_t sub = idem_key ? (uint32_t)((idem_key + i) % k)
                                : atomic_fetch_add_explicit(&e->rr, 1, memory_order_relaxed) % k;
        return (home + sub) % partitions;
    }
    return UINT32_MAX;
}

/* REQUIRES: h->mu. Starts a new window when now passed the current one;
 * the counters of a window that ended before the one just passed are
 * stale (a window with no keyed events came between). */
static void roll(spw_hot *h, int64_t now_ms)
{
    if (h->win_start == 0) {
        h->win_start = now_ms;
        return;
    }
    if (now_ms < h->win_start + h->window_ms)
        return;
    int64_t behind = (now_ms - h->win_start) / h->window_ms;
    if (behind == 1) {
        memcpy(h->last, h->cur, h->ncur * sizeof *h->cur);
        h->nlast = h->ncur;
    } else {
        h->nlast = 0;
    }
    h->last_start = h->win_start + (behind - 1) * h->window_ms;
    h->win_start += behind * h->window_ms;
    h->ncur = 0;
}

/* REQUIRES: h->mu. Space-saving: the key's counter after one more event. */
static hot_counter *count_one(spw_hot *h, const void *key, size_t n, uint64_t hash)
{
    hot_counter *min = NULL;
    for (uint32_t i = 0; i < h->ncur; i++) {
        hot_counter *c = &h->cur[i];
        if (c->hash == hash && c->len == n && memcmp(c->key, key, n) == 0) {
            c->count++;
            return c;
        }
        if (!min || c->count < min->count)
            min = c;
    }
    hot_counter *c;
    uint64_t base = 0;
    if (h->ncur < SPW_HOT_TRACK) {
        c = &h->cur[h->ncur++];
    } else {
        c = min;
        base = min->count;
    }
    c->hash = hash;
    c->len = (uint32_t)n;
    memcpy(c->key, key, n);
    c->key[n] = 0;
    c->count = base + 1;
    c->err = base;
    return c;
}

uint32_t spw_hot_count(spw_hot *h, const spw_record *recs, uint32_t n, int64_t now_ms, spw_hot_cand *out,
                       uint32_t cap)
{
    uint32_t nout = 0;
    double limit = h->above_per_s * (double)h->window_ms / 1000.0;
    pthread_mutex_lock(&h->mu);
    roll(h, now_ms);
    for (uint32_t i = 0; i < n; i++) {
        const spw_record *r = &recs[i];
        if (r->key_len < 1 || r->key_len > SPW_HOT_KEY_BYTES)
            continue; /* no key, or one too long to split */
        uint64_t hash = key_hash(r->key, (size_t)r->key_len);
        hot_counter *c = count_one(h, r->key, (size_t)r->key_len, hash);
        if (h->above_per_s <= 0 || (double)(c->count - c->err) <= limit || nout == cap)
            continue;
        hot_entry *e = find_slot(h, r->key, (size_t)r->key_len, hash);
        int st = e ? atomic_load(&e->state) : E_FREE;
        if (st == E_PENDING || st == E_READY)
            continue;
        if (st == E_FAILED) {
            atomic_store(&e->state, E_PENDING);
        } else if (!add(h, r->key, (size_t)r->key_len, E_PENDING, 1)) {
            atomic_fetch_add(&h->refused, 1);
            if (!h->warned_full) {
                h->warned_full = 1;
                spw_warn("stream in %s: %d keys are split already; no more are (hot_keys)", h->dir, SPW_HOT_SPLITS);
            }
            continue;
        }
        spw_hot_cand *o = &out[nout++];
        memcpy(o->key, r->key, (size_t)r->key_len);
        o->key[r->key_len] = 0;
        o->len = (uint32_t)r->key_len;
        o->per_s = (double)(c->count - c->err) * 1000.0 / (double)h->window_ms;
    }
    pthread_mutex_unlock(&h->mu);
    return nout;
}

static hot_entry *find_locked(spw_hot *h, const spw_hot_cand *cand)
{
    hot_entry *e = find_slot(h, cand->key, cand->len, key_hash(cand->key, cand->len));
    return e && atomic_load(&e->state) != E_FREE ? e : NULL;
}

void spw_hot_abandon(spw_hot *h, const spw_hot_cand *cand)
{
    pthread_mutex_lock(&h->mu);
    hot_entry *e = find_locked(h, cand);
    if (e && atomic_load(&e->state) == E_PENDING)
        atomic_store(&e->state, E_FAILED);
    pthread_mutex_unlock(&h->mu);
}

int spw_hot_record(spw_hot *h, const spw_hot_cand *cand, int64_t now_ms)
{
    pthread_mutex_lock(&h->file);
    /* The file: every automatic READY entry and this one. */
    uint8_t *buf = spw_xmalloc(HOT_HEAD + SPW_HOT_SPLITS * (HOT_ENTRY + SPW_HOT_KEY_BYTES) + 4);
    memcpy(buf, HOT_MAGIC, 8);
    size_t at = HOT_HEAD;
    uint32_t n = 0;
    pthread_mutex_lock(&h->mu);
    hot_entry *me = find_locked(h, cand);
    SPW_ASSERT(me && atomic_load(&me->state) == E_PENDING);
    me->at_ms = now_ms;
    me->per_s = cand->per_s;
    for (uint32_t i = 0; i < SLOTS; i++) {
        hot_entry *e = &h->e[i];
        int st = atomic_load(&e->state);
        if (!e->automatic || (st != E_READY && e != me))
            continue;
        uint64_t bits;
        memcpy(&bits, &e->per_s, 8);
        spw_put16(buf + at, (uint16_t)e->len);
        spw_put16(buf + at + 2, (uint16_t)e->split);
        spw_put32(buf + at + 4, 0);
        spw_put64(buf + at + 8, (uint64_t)e->at_ms);
        spw_put64(buf + at + 16, bits);
        memcpy(buf + at + HOT_ENTRY, e->key, e->len);
        at += HOT_ENTRY + e->len;
        n++;
    }
    pthread_mutex_unlock(&h->mu);
    spw_put32(buf + 8, n);
    spw_put32(buf + at, spw_crc32c(buf, at));
    at += 4;
    int r = spw_os_write_file_atomic(h->dir, HOT_FILE, HOT_TMP, buf, at, SPW_OS_SYNC_FULL);
    spw_free(buf);
    pthread_mutex_lock(&h->mu);
    if (r == 0) {
        atomic_store_explicit(&me->state, E_READY, memory_order_release);
        atomic_fetch_add(&h->nready, 1);
    } else {
        atomic_store(&me->state, E_FAILED);
    }
    pthread_mutex_unlock(&h->mu);
    pthread_mutex_unlock(&h->file);
    if (r == 0)
        spw_info("stream in %s: key \"%s\" split %u ways (%.1f events/s)", h->dir, cand->key, me->split,
                 cand->per_s);
    else
        spw_error("stream in %s: recording the split of key \"%s\": %s; not split", h->dir, cand->key,
                  spw_strerror(r));
    return r;
}

uint32_t spw_hot_splits(spw_hot *h, spw_hot_split_info *out, uint32_t cap)
{
    uint32_t n = 0;
    pthread_mutex_lock(&h->mu);
    for (uint32_t i = 0; i < SLOTS && n < cap; i++) {
        hot_entry *e = &h->e[i];
        if (atomic_load(&e->state) != E_READY)
            continue;
        spw_hot_split_info *o = &out[n++];
        memcpy(o->key, e->key, e->len + 1);
        o->split = e->split;
        o->automatic = e->automatic;
        o->at_ms = e->at_ms;
        o->per_s = e->per_s;
    }
    pthread_mutex_unlock(&h->mu);
    return n;
}

uint32_t spw_hot_top(spw_hot *h, int64_t now_ms, spw_hot_top_info *out, uint32_t cap)
{
    if (cap > h->top)
        cap = h->top;
    uint32_t n = 0;
    pthread_mutex_lock(&h->mu);
    if (h->win_start)
        roll(h, now_ms);
    /* selection of the largest counts: cap is small (<= SPW_HOT_TOP_MAX) */
    uint8_t taken[SPW_HOT_TRACK] = {0};
    while (n < cap) {
        int best = -1;
        for (uint32_t i = 0; i < h->nlast; i++)
            if (!taken[i] && (best < 0 || h->last[i].count > h->last[best].count))
                best = (int)i;
        if (best < 0)
            break;
        taken[best] = 1;
        spw_hot_top_info *o = &out[n++];
        memcpy(o->key, h->last[best].key, h->last[best].len + 1);
        o->events = h->last[best].count;
        o->per_s = (double)h->last[best].count * 1000.0 / (double)h->window_ms;
    }
    pthread_mutex_unlock(&h->mu);
    return n;
}

uint64_t spw_hot_refused(spw_hot *h) { return atomic_load(&h->refused); }
