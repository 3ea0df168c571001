/*
 * The version map (es.h): one chained hash table per partition, keyed by
 * the key's bytes, each under its partition's mutex. Entries are single
 * allocations (header + key bytes); buckets double when the table holds
 * more entries than buckets. The map is built once per stream, on first
 * use, from every record of its partitions (the record cursor): a
 * record's version is the key's version after it.
 */
#include "es/es.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/invariant.h"
#include "core/msg.h"
#include "log/cursor.h"
#include "log/format.h"

typedef struct es_ent {
    struct es_ent *next;
    uint64_t hash;
    uint64_t version;
    uint64_t offset;
    uint32_t klen;
    uint8_t key[];
} es_ent;

typedef struct es_part {
    pthread_mutex_t mu;
    es_ent **buckets;
    size_t nbuckets; /* a power of two */
    size_t n;
} es_part;

struct spw_es {
    uint32_t nparts;
    es_part parts[];
};

/* ---- expectations ---- */

int spw_es_expect_parse(const char *s, size_t n, spw_es_expect *kind, uint64_t *version)
{
    *version = 0;
    if (n == 3 && memcmp(s, "any", 3) == 0) {
        *kind = SPW_ES_ANY;
        return 0;
    }
    if (n == 4 && memcmp(s, "none", 4) == 0) {
        *kind = SPW_ES_NONE;
        return 0;
    }
    if (n == 6 && memcmp(s, "exists", 6) == 0) {
        *kind = SPW_ES_EXISTS;
        return 0;
    }
    /* A decimal number: digits only (no sign, no spaces), at most
     * SPW_VERSION_MAX, so that "-1", "1e3" and 2^64 are refused. */
    if (n == 0 || n > 16)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > SPW_VERSION_MAX)
        return -1;
    *kind = v == 0 ? SPW_ES_NONE : SPW_ES_EXACT;
    *version = v;
    return 0;
}

int spw_es_expect_ok(spw_es_expect kind, uint64_t version, uint64_t current)
{
    switch (kind) {
    case SPW_ES_ANY:
        return 1;
    case SPW_ES_NONE:
        return current == 0;
    case SPW_ES_EXISTS:
        return current > 0;
    case SPW_ES_EXACT:
        return current == version;
    }
    return 0;
}

const char *spw_es_expect_str(spw_es_expect kind, uint64_t version, char *buf, size_t cap)
{
    switch (kind) {
    case SPW_ES_ANY:
        snprintf(buf, cap, "any");
        break;
    case SPW_ES_NONE:
        snprintf(buf, cap, "none");
        break;
    case SPW_ES_EXISTS:
        snprintf(buf, cap, "exists");
        break;
    case SPW_ES_EXACT:
        snprintf(buf, cap, "%" PRIu64, version);
        break;
    }
    return buf;
}

/* ---- the table ---- */

static uint64_t key_hash(const void *key, size_t n) { return spw_fmix64(spw_fnv1a64(SPW_FNV64_OFFSET, key, n)); }

static es_ent *find(es_part *p, uint64_t h, const void *key, size_t n)
{
    for (es_ent *e = p->buckets[h & (p->nbuckets - 1)]; e; e = e->next)
        if (e->hash == h && e->klen == n && memcmp(e->key, key, n) == 0)
            return e;
    return NULL;
}

static void grow(es_part *p)
{
    size_t nb = p->nbuckets * 2;
    es_ent **b = spw_xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < p->nbuckets; i++)
        for (es_ent *e = p->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    spw_free(p->buckets);
    p->buckets = b;
    p->nbuckets = nb;
}

static void set(es_part *p, const void *key, size_t n, uint64_t version, uint64_t offset)
{
    uint64_t h = key_hash(key, n);
    es_ent *e = find(p, h, key, n);
    if (!e) {
        e = spw_xmalloc(sizeof *e + n);
        e->hash = h;
        e->klen = (uint32_t)n;
        memcpy(e->key, key, n);
        e->next = p->buckets[h & (p->nbuckets - 1)];
        p->buckets[h & (p->nbuckets - 1)] = e;
        if (++p->n > p->nbuckets)
            grow(p);
    }
    e->version = version;
    e->offset = offset;
}

static spw_es *es_new(uint32_t nparts)
{
    spw_es *es = spw_xcalloc(1, sizeof *es + nparts * sizeof(es_part));
    es->nparts = nparts;
    for (uint32_t i = 0; i < nparts; i++) {
        pthread_mutex_init(&es->parts[i].mu, NULL);
        es->parts[i].nbuckets = 64;
        es->parts[i].buckets = spw_xcalloc(64, sizeof(es_ent *));
    }
    return es;
}

static void es_free(spw_es *es)
{
    for (uint32_t i = 0; i < es->nparts; i++) {
        es_part *p = &es->parts[i];
        for (size_t b = 0; b < p->nbuckets; b++)
            for (es_ent *e = p->buckets[b], *next; e; e = next) {
                next = e->next;
                spw_free(e);
            }
        spw_free(p->buckets);
        pthread_mutex_destroy(&p->mu);
    }
    spw_free(es);
}


/* ---- building ---- */

/* Reads partition i of s whole into the map. Damage is skipped with a
 * warning (its records' versions are unknown: a key whose newest record
 * is in it continues from its newest readable version). */
static int build_part(spw_stream *s, spw_es *es, uint32_t i)
{
    spw_part_state st;
    spw_part_state_get(s->parts[i], &st);
    spw_cursor c;
    spw_cursor_init(&c, s->parts[i], st.start_offset, 1 << 20);
    spw_record_view rv;
    int r;
    for (;;) {
        r = spw_cursor_next(&c, &rv);
        if (r == 1) {
            if (rv.version && rv.key_len >= 0) {
                es_part *p = &es->parts[i];
                uint64_t h = key_hash(rv.key, (size_t)rv.key_len);
                es_ent *e = find(p, h, rv.key, (size_t)rv.key_len);
                if (!e || rv.version > e->version)
                    set(p, rv.key, (size_t)rv.key_len, rv.version, rv.offset);
            }
            continue;
        }
        if (r == SPW_ECORRUPT && c.resume > c.next) {
            spw_warn("stream %s partition %u: offsets %" PRIu64 "..%" PRIu64
                     " are damaged; the version map skips them (spillway check reports them)",
                     s->cfg.name, i, c.damage_from, c.resume);
            spw_cursor_seek(&c, s->parts[i], c.resume);
            continue;
        }
        break;
    }
    spw_cursor_fini(&c);
    return r == 0 ? 0 : r;
}

static pthread_mutex_t build_mu = PTHREAD_MUTEX_INITIALIZER;

int spw_es_of(spw_stream *s, spw_es **out)
{
    SPW_ASSERT(s->cfg.versioned);
    spw_es *es = atomic_load_explicit(&s->es, memory_order_acquire);
    if (es) {
        *out = es;
        return 0;
    }
    /* One build at a time (first uses only: later calls take the load
     * above), so a stream's map is built once. */
    pthread_mutex_lock(&build_mu);
    es = atomic_load_explicit(&s->es, memory_order_acquire);
    int r = 0;
    if (!es) {
        es = es_new(s->cfg.partitions);
        for (uint32_t i = 0; r == 0 && i < s->cfg.partitions; i++)
            r = build_part(s, es, i);
        if (r) {
            spw_warn("stream %s: the version map could not be built: %s", s->cfg.name, spw_strerror(r));
            es_free(es);
            es = NULL;
        } else {
            /* The catalog frees the map with the stream (it cannot name
             * this layer): told before the first map is kept. */
            spw_catalog_set_es_free(s->cat, es_free);
            atomic_store_explicit(&s->es, es, memory_order_release);
        }
    }
    pthread_mutex_unlock(&build_mu);
    *out = es;
    return r;
}

/* ---- use ---- */

void spw_es_lock(spw_es *es, uint32_t partition)
{
    SPW_ASSERT(partition < es->nparts);
    pthread_mutex_lock(&es->parts[partition].mu);
}

void spw_es_unlock(spw_es *es, uint32_t partition) { pthread_mutex_unlock(&es->parts[partition].mu); }

int spw_es_get_locked(spw_es *es, uint32_t partition, const void *key, size_t n, spw_es_key *out)
{
    es_part *p = &es->parts[partition];
    es_ent *e = find(p, key_hash(key, n), key, n);
    if (e && e->version)
        *out = (spw_es_key){.version = e->version, .offset = e->offset, .partition = partition};
    return e && e->version;
}

void spw_es_put_locked(spw_es *es, uint32_t partition, const void *key, size_t n, uint64_t version, uint64_t offset)
{
    SPW_ASSERT(partition < es->nparts);
    SPW_ASSERT(version <= SPW_VERSION_MAX);
    set(&es->parts[partition], key, n, version, offset);
}

int spw_es_lookup(spw_es *es, const void *key, size_t n, spw_es_key *out)
{
    uint32_t part = spw_stream_partition(key, n, es->nparts);
    es_part *p = &es->parts[part];
    pthread_mutex_lock(&p->mu);
    int found = spw_es_get_locked(es, part, key, n, out);
    pthread_mutex_unlock(&p->mu);
    return found;
}

uint64_t spw_es_keys(spw_es *es)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < es->nparts; i++) {
        pthread_mutex_lock(&es->parts[i].mu);
        n += es->parts[i].n;
        pthread_mutex_unlock(&es->parts[i].mu);
    }
    return n;
}
