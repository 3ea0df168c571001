/*
 * The version map (es.h) and its store.
 *
 * Two parts:
 *   - the map: one chained hash table per partition, keyed by the key's
 *     bytes, each under its partition's mutex — the keys the produce path
 *     touched recently. An entry whose newest record is not yet in the
 *     store (its offset at or past the partition's indexed offset, or not
 *     known yet) is pinned; the others are a cache, evicted (CLOCK over the
 *     buckets) once the partition holds more than its share of
 *     es-cache-keys. A key not in the map is looked up in the store.
 *   - the store: a RocksDB database per stream, DATA/streams/NAME/es/
 *     (docs/formats/es-index.md), filled by one indexer thread per stream
 *     from the durable records of each partition (the record cursor), each
 *     write one WriteBatch holding the records' entries (in key order,
 *     with a memtable insert hint: ix_flush) and the
 *     partition's new indexed offset. Opening = read the indexed offsets,
 *     index the log's tail past them, start the thread: never the whole
 *     log again. Each write also names its records in one 'o' entry
 *     (offset order), so that once retention deleted their offsets the
 *     indexer deletes their entries (prune_step): the index holds what
 *     the log holds, and a key's first entry past the partition's start
 *     is its oldest kept version. Only durable records enter the store,
 *     so a crash can never leave it ahead of the log; what the log
 *     accepted and the store does not hold yet is pinned in the map, so a
 *     version once given is never given again.
 */
#include "es/es.h"

#include <errno.h>
#include <inttypes.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/endian.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/invariant.h"
#include "core/msg.h"
#include "core/thread.h"
#include "log/cursor.h"
#include "log/format.h"

typedef struct es_ent {
    struct es_ent *next;
    uint64_t hash;
    uint64_t version;
    uint64_t offset; /* UINT64_MAX: not known yet (its batch being appended) */
    uint32_t klen;
    uint8_t key[];
} es_ent;

typedef struct es_part {
    pthread_mutex_t mu;
    es_ent **buckets;
    size_t nbuckets; /* a power of two */
    size_t n;
    size_t clock;              /* the next bucket eviction looks at */
    _Atomic uint64_t indexed;  /* every record below is in the store */
    /* The store's writes of the partition (index_step, prune_step: the
     * indexer thread, and resync on a produce thread) one at a time, so
     * that each 'c' entry it writes counts the entries beside it. Taken
     * inside mu (resync), never the other way. */
    pthread_mutex_t store_mu;
    _Atomic uint64_t entries; /* its 'e' entries in the store (the 'c' entry's count) */
    uint64_t pruned;          /* every 'e' entry of a record below this offset is deleted (store_mu) */
    int kall;                 /* every record gets a 'k' entry, not only first versions (store_mu; index_step) */
    spw_hold *hold;            /* retention keeps what is not indexed yet (at indexed) */
    _Atomic int suspect;       /* an append failed: resync at the next lock once the partition recovered */
} es_part;

struct spw_es {
    spw_stream *s; /* the stream that owns this map (no reference: it frees the map) */
    uint32_t nparts;
    size_t cap; /* cached keys per partition before eviction */
    /* Every use of db holds db_lock for reading; spw_es_retire closes the
     * store under it for writing and sets db NULL (the stream was deleted:
     * its directory is about to move, and RocksDB creates files in it by
     * path). A use then answers SPW_EDELETED. */
    pthread_rwlock_t db_lock;
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
    rocksdb_block_based_table_options_t *bbo;
    rocksdb_filterpolicy_t *bloom;
    pthread_t th;
    int th_started;
    _Atomic int stop;
    /* the indexer sleeps until the log's durable hook (or stop) kicks it */
    pthread_mutex_t wake_mu;
    pthread_cond_t wake_cv;
    int kicked;
    int hooked; /* its durable hook is registered with the log */
    _Atomic uint64_t passes;      /* indexer passes over the partitions */
    _Atomic uint64_t store_reads; /* lookups the map could not answer */
    _Atomic uint64_t history_records; /* records history reads decoded (spw_es_count_history) */
    _Atomic uint64_t pruned_total;    /* 'e' entries deleted since open (prune_step) */
    es_part parts[];
};

#define SPW_EIO_STORE (-EIO) /* the store failed (RocksDB's sentence is logged) */

static _Atomic uint64_t cache_keys = 1000000;

void spw_es_set_cache_keys(uint64_t n) { atomic_store(&cache_keys, n < 16 ? 16 : n); }

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

/* ---- store keys (docs/formats/es-index.md) ---- */

/* 'c' u32be partition → u64le indexed offset, u64le 'e' entries of the
 * partition, u64le pruned offset, u64le flags (CFLAG_*) (32 bytes; a
 * store written before pruning holds the offset alone: store_open
 * migrates it) */
static size_t ckey(uint8_t out[5], uint32_t p)
{
    out[0] = 'c';
    out[1] = (uint8_t)(p >> 24);
    out[2] = (uint8_t)(p >> 16);
    out[3] = (uint8_t)(p >> 8);
    out[4] = (uint8_t)p;
    return 5;
}

#define CVAL_LEN 32
/* The partition's keys may start past version 1 in the store (records
 * deleted or damaged before they were indexed): every record writes its
 * 'k' entry, so that a key with entries always has one (index_step). */
#define CFLAG_KALL 1u

static void put_c(rocksdb_writebatch_t *wb, uint32_t i, uint64_t indexed, uint64_t entries, uint64_t pruned,
                  int kall)
{
    uint8_t ck[5], cv[CVAL_LEN];
    ckey(ck, i);
    spw_put64(cv, indexed);
    spw_put64(cv + 8, entries);
    spw_put64(cv + 16, pruned);
    spw_put64(cv + 24, kall ? CFLAG_KALL : 0);
    rocksdb_writebatch_put(wb, (const char *)ck, 5, (const char *)cv, CVAL_LEN);
}

/* 'o' u32be partition u64be offset → the versioned records one index
 * step wrote from that offset on, each u64le offset, u64le version,
 * u32le key length, the key: what pruning deletes once retention took
 * those offsets (the 'e' entries are in key order, not offset order) */
#define OKEY_LEN 13
#define OREC_HDR 20

static void okey(uint8_t out[OKEY_LEN], uint32_t p, uint64_t offset)
{
    ckey(out, p);
    out[0] = 'o';
    for (int i = 0; i < 8; i++)
        out[5 + i] = (uint8_t)(offset >> (56 - 8 * i));
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void orec_put(spw_buf *b, uint64_t offset, uint64_t version, const void *key, size_t n)
{
    uint8_t h[OREC_HDR];
    spw_put64(h, offset);
    spw_put64(h + 8, version);
    spw_put32(h + 16, (uint32_t)n);
    if (spw_buf_put(b, h, OREC_HDR) || spw_buf_put(b, key, n))
        abort();
}

/* 'k' key → u64le version, u64le offset, u32le partition: a record of the
 * key (its version 1, the newest one pruning deleted, or every one in a
 * k-all partition); the newest is the newer of it and the last 'e' */
static size_t kkey(spw_buf *b, const void *key, size_t n)
{
    b->len = 0;
    if (spw_buf_reserve(b, 1 + n))
        abort();
    b->p[0] = 'k';
    memcpy(b->p + 1, key, n);
    return b->len = 1 + n;
}

/* 'e' key 0x00 u64be version → u64le offset (every record; keys hold no 0x00) */
static size_t ekey(spw_buf *b, const void *key, size_t n, uint64_t version)
{
    b->len = 0;
    if (spw_buf_reserve(b, 1 + n + 9))
        abort();
    b->p[0] = 'e';
    memcpy(b->p + 1, key, n);
    b->p[1 + n] = 0;
    for (int i = 0; i < 8; i++)
        b->p[2 + n + i] = (uint8_t)(version >> (56 - 8 * i));
    return b->len = 1 + n + 9;
}

/* 's' key → u64le version, then the state's JSON text (the newest snapshot) */
static size_t skey(spw_buf *b, const void *key, size_t n)
{
    kkey(b, key, n);
    b->p[0] = 's';
    return b->len;
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
    p->clock = 0;
}

/* Is e only a cache of the store (its newest record indexed, or no
 * record at all: version 0, what the store says of a key it lacks)? */
static int ent_clean(const es_part *p, const es_ent *e)
{
    return e->version == 0 || (e->offset != UINT64_MAX && e->offset < atomic_load(&p->indexed));
}

/* Evicts clean entries, CLOCK order over the buckets, until the partition
 * holds at most 7/8 of its cap (or every bucket was looked at once:
 * pinned entries are never evicted, so the map can pass its cap while
 * the store lags, and then catches up). REQUIRES: p's lock. */
static void evict(es_part *p, size_t cap)
{
    size_t want = cap - cap / 8;
    for (size_t seen = 0; p->n > want && seen < p->nbuckets; seen++) {
        es_ent **pe = &p->buckets[p->clock];
        while (*pe) {
            es_ent *e = *pe;
            if (ent_clean(p, e)) {
                *pe = e->next;
                spw_free(e);
                p->n--;
            } else {
                pe = &e->next;
            }
        }
        p->clock = (p->clock + 1) & (p->nbuckets - 1);
    }
}

static es_ent *set(spw_es *es, es_part *p, const void *key, size_t n, uint64_t version, uint64_t offset)
{
    uint64_t h = key_hash(key, n);
    es_ent *e = find(p, h, key, n);
    if (!e) {
        if (p->n >= es->cap)
            evict(p, es->cap);
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
    return e;
}

/* RocksDB counts every key comparison and lookup step in thread-local
 * counters by default (its perf context, through the dynamic linker's
 * TLS lookup at each): about a tenth of the indexer's instructions, for
 * counters nothing reads. The level is per thread: each thread that
 * calls into the store turns them off once. */
static void perf_off(void)
{
    static _Thread_local int off;
    if (!off) {
        rocksdb_set_perf_level(rocksdb_disable);
        off = 1;
    }
}

/* A use of the store: 0 with db_lock held for reading, or SPW_EDELETED
 * (retired: nothing held). */
static int db_begin(spw_es *es)
{
    pthread_rwlock_rdlock(&es->db_lock);
    if (es->db)
        return 0;
    pthread_rwlock_unlock(&es->db_lock);
    return SPW_EDELETED;
}

static void db_end(spw_es *es) { pthread_rwlock_unlock(&es->db_lock); }

/* The store's state of a key: 1 found (its newest indexed record), 0
 * none (also when the store is retired: its stream was deleted and its
 * partitions refuse every append, so no version taken from that answer
 * is ever written). A key with records has a 'k' entry (its first version's, or one
 * pruning wrote, or every record's: docs/formats/es-index.md), so a key
 * without one is new — the common case, answered by the bloom filters —
 * and for the others the newest version is the newer of the 'k' entry
 * and the key's last 'e' entry. */
static int store_key(spw_es *es, const void *key, size_t n, spw_es_key *out)
{
    perf_off();
    if (db_begin(es) < 0)
        return 0;
    spw_buf k = SPW_BUF_INIT;
    kkey(&k, key, n);
    char *err = NULL;
    size_t vl = 0;
    char *v = rocksdb_get(es->db, es->ro, (const char *)k.p, k.len, &vl, &err);
    spw_buf_fini(&k);
    atomic_fetch_add(&es->store_reads, 1);
    if (err) {
        /* An I/O error of the store: the produce path must not guess a
         * version. Stop rather than give one twice. */
        spw_error("version store of stream %s: %s", es->s->cfg.name, err);
        SPW_ASSERT(!"the version store cannot be read");
    }
    int found = v && vl == 20;
    if (found)
        *out = (spw_es_key){.version = spw_get64((uint8_t *)v), .offset = spw_get64((uint8_t *)v + 8),
                            .partition = spw_get32((uint8_t *)v + 16)};
    rocksdb_free(v);
    if (!found) {
        db_end(es);
        return 0;
    }
    spw_buf e = SPW_BUF_INIT;
    ekey(&e, key, n, SPW_VERSION_MAX + 1);
    rocksdb_iterator_t *it = rocksdb_create_iterator(es->db, es->ro);
    rocksdb_iter_seek_for_prev(it, (const char *)e.p, e.len);
    if (rocksdb_iter_valid(it)) {
        size_t kl, il;
        const uint8_t *ik = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *iv = (const uint8_t *)rocksdb_iter_value(it, &il);
        uint64_t ver = kl == e.len && memcmp(ik, e.p, 1 + n + 1) == 0 && il == 8 ? get_be64(ik + 2 + n) : 0;
        if (ver > out->version) {
            out->version = ver;
            out->offset = spw_get64(iv);
        }
    }
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    db_end(es);
    spw_buf_fini(&e);
    if (err) {
        spw_error("version store of stream %s: %s", es->s->cfg.name, err);
        SPW_ASSERT(!"the version store cannot be read");
    }
    return 1;
}

/* ---- indexing ---- */

/*
 * A step's entries, put into its WriteBatch in key order. RocksDB inserts
 * a batch's entries into its memtable (a skip list) one by one, each
 * search starting from the place the previous one found: in arrival order
 * (random keys, 'k' and 'e' entries alternating) every insert searches
 * the list from its top, in key order it starts from a near neighbour.
 * Under load the memtable inserts were most of the indexer's instructions
 * (docs/performance.md "Event sourcing"). Entries of one key (a k-all
 * partition's 'k' entries) keep their order: the last one wins.
 */
typedef struct ix_ent {
    size_t at;    /* the key's offset in the step's arena, then its value */
    uint32_t klen, vlen;
    uint32_t seq; /* its place in the step */
    const uint8_t *k;
} ix_ent;

typedef struct ix_batch {
    spw_buf arena;
    ix_ent *v;
    ix_ent **sorted; /* pointers sorted (qsort moves 8 bytes, not an entry) */
    size_t n, cap;
} ix_batch;

static void ix_add(ix_batch *b, const void *k, size_t klen, const void *v, size_t vlen)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        b->v = spw_xrealloc(b->v, b->cap * sizeof *b->v);
    }
    b->v[b->n] = (ix_ent){.at = b->arena.len, .klen = (uint32_t)klen, .vlen = (uint32_t)vlen, .seq = (uint32_t)b->n};
    b->n++;
    if (spw_buf_put(&b->arena, k, klen) || spw_buf_put(&b->arena, v, vlen))
        abort();
}

static int ix_cmp(const void *a, const void *b)
{
    const ix_ent *x = *(ix_ent *const *)a, *y = *(ix_ent *const *)b;
    int c = memcmp(x->k, y->k, x->klen < y->klen ? x->klen : y->klen);
    if (c)
        return c;
    if (x->klen != y->klen)
        return x->klen < y->klen ? -1 : 1;
    return x->seq < y->seq ? -1 : 1;
}

/* Puts the step's entries into wb in key order. */
static void ix_flush(ix_batch *b, rocksdb_writebatch_t *wb)
{
    if (!b->n)
        return;
    b->sorted = spw_xmalloc(b->n * sizeof *b->sorted);
    for (size_t i = 0; i < b->n; i++) {
        b->v[i].k = b->arena.p + b->v[i].at;
        b->sorted[i] = &b->v[i];
    }
    qsort(b->sorted, b->n, sizeof *b->sorted, ix_cmp);
    for (size_t i = 0; i < b->n; i++) {
        const ix_ent *e = b->sorted[i];
        rocksdb_writebatch_put(wb, (const char *)e->k, e->klen, (const char *)e->k + e->klen, e->vlen);
    }
}

static void ix_fini(ix_batch *b)
{
    spw_buf_fini(&b->arena);
    spw_free(b->v);
    spw_free(b->sorted);
}

/* Indexes durable records of partition i from its indexed offset: at most
 * max records in one WriteBatch (in key order: ix_flush) with their 'o'
 * entry and the partition's new 'c' entry. Returns the records read (0:
 * caught up), or an error. */
static long index_step(spw_es *es, uint32_t i, spw_cursor *c, long max)
{
    spw_stream *s = es->s;
    es_part *p = &es->parts[i];
    pthread_mutex_lock(&p->store_mu);
    spw_part_state st;
    spw_part_state_get(s->parts[i], &st);
    uint64_t from = atomic_load(&p->indexed);
    if (from < st.start_offset) {
        from = st.start_offset;
        p->kall = 1; /* records went before they were indexed (es.c take_holds) */
    }
    if (from >= st.durable_offset) {
        pthread_mutex_unlock(&p->store_mu);
        return 0;
    }
    spw_cursor_seek(c, s->parts[i], from);
    spw_buf k = SPW_BUF_INIT, ov = SPW_BUF_INIT;
    ix_batch ib = {SPW_BUF_INIT, NULL, NULL, 0, 0};
    spw_record_view rv;
    long n = 0;
    uint64_t added = 0, ofirst = 0;
    int r = 0;
    while (n < max && c->next < st.durable_offset && (r = spw_cursor_next(c, &rv)) == 1) {
        n++;
        if (!rv.version || rv.key_len < 0)
            continue;
        uint8_t v[20];
        spw_put64(v, rv.version);
        spw_put64(v + 8, rv.offset);
        spw_put32(v + 16, i);
        if (rv.version == 1 || p->kall) {
            kkey(&k, rv.key, (size_t)rv.key_len);
            ix_add(&ib, k.p, k.len, v, 20);
        }
        ekey(&k, rv.key, (size_t)rv.key_len, rv.version);
        ix_add(&ib, k.p, k.len, v + 8, 8);
        if (!added++)
            ofirst = rv.offset;
        orec_put(&ov, rv.offset, rv.version, rv.key, (size_t)rv.key_len);
    }
    uint64_t next = c->next;
    if (r == SPW_ECORRUPT && c->resume > c->next) {
        spw_warn("stream %s partition %u: offsets %" PRIu64 "..%" PRIu64
                 " are damaged; the version store skips them (spillway check reports them)",
                 s->cfg.name, i, c->damage_from, c->resume);
        next = c->resume;
        n++;
        p->kall = 1; /* the keys of the records after it may have no first version */
    } else if (r < 0) {
        ix_fini(&ib);
        spw_buf_fini(&k);
        spw_buf_fini(&ov);
        pthread_mutex_unlock(&p->store_mu);
        return r;
    }
    int ret = 0;
    if (next > from) {
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        ix_flush(&ib, wb);
        if (added) {
            uint8_t ok[OKEY_LEN];
            okey(ok, i, ofirst);
            rocksdb_writebatch_put(wb, (const char *)ok, OKEY_LEN, (const char *)ov.p, ov.len);
        }
        uint64_t entries = atomic_load(&p->entries) + added;
        put_c(wb, i, next, entries, p->pruned, p->kall);
        char *err = NULL;
        if (db_begin(es) < 0) {
            rocksdb_writebatch_destroy(wb);
            ix_fini(&ib);
            spw_buf_fini(&k);
            spw_buf_fini(&ov);
            pthread_mutex_unlock(&p->store_mu);
            return SPW_EDELETED;
        }
        rocksdb_write(es->db, es->wo, wb, &err);
        db_end(es);
        rocksdb_writebatch_destroy(wb);
        if (err) {
            spw_error("version store of stream %s: %s", s->cfg.name, err);
            rocksdb_free(err);
            ret = SPW_EIO_STORE;
        } else {
            atomic_store(&p->entries, entries);
            atomic_store(&p->indexed, next);
            /* Retention may now take what the store holds. */
            if (p->hold)
                spw_hold_move(p->hold, next);
        }
    }
    ix_fini(&ib);
    spw_buf_fini(&k);
    spw_buf_fini(&ov);
    pthread_mutex_unlock(&p->store_mu);
    return ret ? ret : n;
}

static int entry_get_db(spw_es *es, const void *key, size_t n, uint64_t v, uint64_t *offset);

/*
 * Pruning: once retention deleted the partition's records below its start
 * offset, their 'e' entries point nowhere. Deletes them, with the 'o'
 * entries that name them, from the partition's pruned offset on: at most
 * about max records in one WriteBatch with the partition's new 'c' entry
 * (its count and pruned offset). An 'o' entry that reaches past the start
 * is written again from its first kept record. A key's 'k' entry takes
 * the version of its newest entry pruning deletes (its version goes on
 * after its records are deleted), so the oldest kept version of a key is
 * its first 'e' entry (spw_es_oldest_kept).
 * Returns 1 (more to do), 0 (pruned up to the start offset), or an error.
 */
static int prune_step(spw_es *es, uint32_t i, long max)
{
    es_part *p = &es->parts[i];
    pthread_mutex_lock(&p->store_mu);
    spw_part_state st;
    spw_part_state_get(es->s->parts[i], &st);
    uint64_t upto = st.start_offset;
    if (upto <= p->pruned) {
        pthread_mutex_unlock(&p->store_mu);
        return 0;
    }
    if (db_begin(es) < 0) {
        pthread_mutex_unlock(&p->store_mu);
        return SPW_EDELETED;
    }
    uint8_t ok[OKEY_LEN];
    okey(ok, i, p->pruned);
    rocksdb_iterator_t *it = rocksdb_create_iterator(es->db, es->ro);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    spw_buf k = SPW_BUF_INIT, rest = SPW_BUF_INIT;
    long seen = 0;
    uint64_t deleted = 0, reached = upto;
    int ret = 0;
    for (rocksdb_iter_seek(it, (const char *)ok, OKEY_LEN); rocksdb_iter_valid(it) && !ret;
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *ik = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl != OKEY_LEN || memcmp(ik, ok, 5) != 0)
            break; /* past the partition's 'o' entries */
        uint64_t first = get_be64(ik + 5);
        if (first >= upto)
            break;
        if (seen >= max) {
            reached = first; /* the next step goes on from here */
            break;
        }
        const uint8_t *iv = (const uint8_t *)rocksdb_iter_value(it, &vl);
        rest.len = 0;
        uint64_t rest_first = 0;
        for (size_t at = 0; at + OREC_HDR <= vl;) {
            uint64_t off = spw_get64(iv + at), ver = spw_get64(iv + at + 8);
            uint32_t n = spw_get32(iv + at + 16);
            if (at + OREC_HDR + n > vl)
                break; /* written by index_step: cannot be short */
            const uint8_t *key = iv + at + OREC_HDR;
            if (off < upto) {
                ekey(&k, key, n, ver);
                rocksdb_writebatch_delete(wb, (const char *)k.p, k.len);
                deleted++;
                /* The key's newest entry going (no next version in the
                 * store): its 'k' entry takes its version, which must
                 * outlive its records (versions go on). */
                uint64_t noff;
                int more = entry_get_db(es, key, n, ver + 1, &noff);
                if (more < 0) {
                    ret = more;
                    break;
                }
                if (!more) {
                    uint8_t kv[20];
                    spw_put64(kv, ver);
                    spw_put64(kv + 8, off);
                    spw_put32(kv + 16, i);
                    kkey(&k, key, n);
                    rocksdb_writebatch_put(wb, (const char *)k.p, k.len, (const char *)kv, 20);
                }
            } else {
                if (!rest.len)
                    rest_first = off;
                orec_put(&rest, off, ver, key, n);
            }
            at += OREC_HDR + n;
            seen++;
        }
        if (ret)
            break;
        rocksdb_writebatch_delete(wb, (const char *)ik, kl);
        if (rest.len) {
            uint8_t nk[OKEY_LEN];
            okey(nk, i, rest_first);
            rocksdb_writebatch_put(wb, (const char *)nk, OKEY_LEN, (const char *)rest.p, rest.len);
        }
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err) {
        spw_error("version store of stream %s: %s", es->s->cfg.name, err);
        rocksdb_free(err);
        ret = SPW_EIO_STORE;
    } else if (!ret) {
        uint64_t entries = atomic_load(&p->entries);
        entries = entries > deleted ? entries - deleted : 0;
        put_c(wb, i, atomic_load(&p->indexed), entries, reached, p->kall);
        rocksdb_write(es->db, es->wo, wb, &err);
        if (err) {
            spw_error("version store of stream %s: %s", es->s->cfg.name, err);
            rocksdb_free(err);
            ret = SPW_EIO_STORE;
        } else {
            atomic_store(&p->entries, entries);
            p->pruned = reached;
            atomic_fetch_add(&es->pruned_total, deleted);
            ret = reached < upto;
        }
    }
    db_end(es);
    rocksdb_writebatch_destroy(wb);
    spw_buf_fini(&k);
    spw_buf_fini(&rest);
    pthread_mutex_unlock(&p->store_mu);
    return ret;
}

/* Indexes every partition until caught up with its durable end; *records
 * counts the records read. */
static int index_all(spw_es *es, uint64_t *records)
{
    spw_cursor c;
    spw_cursor_init(&c, es->s->parts[0], 0, 1 << 20);
    int r = 0;
    for (uint32_t i = 0; i < es->nparts && r == 0; i++) {
        long n;
        while ((n = index_step(es, i, &c, 65536)) > 0)
            *records += (uint64_t)n;
        if (n < 0)
            r = (int)n;
        while (r == 0 && (n = prune_step(es, i, 65536)) > 0)
            ;
        if (r == 0 && n < 0)
            r = (int)n;
    }
    spw_cursor_fini(&c);
    return r;
}

/* The log's durable hook (flusher thread): some partition's durable end
 * advanced — perhaps one of this stream's. Must not block: a leaf lock. */
static void durable_kick(void *arg)
{
    spw_es *es = arg;
    pthread_mutex_lock(&es->wake_mu);
    es->kicked = 1;
    pthread_cond_signal(&es->wake_cv);
    pthread_mutex_unlock(&es->wake_mu);
}

/* Safety net only: every durable advance kicks the indexer, and a kick
 * is never lost (the flag), so it sleeps this long only when idle. */
#define INDEXER_IDLE_NS (60ull * 1000000000ull)
/* Under load a durable advance comes at every group commit, a few
 * records per partition each: a pass that indexed records is followed by
 * the next one no sooner than this, so that each write to the store (a
 * write of its log, a lock, the 'c' and 'o' entries) carries more
 * records. Records are indexed this much later (history reads read that
 * tail from the log; the map pins their keys meanwhile). */
#define INDEXER_BATCH_NS (5ull * 1000000ull)

static void *indexer_main(void *arg)
{
    spw_es *es = arg;
    perf_off();
    spw_cursor c;
    spw_cursor_init(&c, es->s->parts[0], 0, 1 << 20);
    while (!atomic_load(&es->stop) && !atomic_load(&es->s->deleted)) {
        /* A kick from here on asks for another pass. */
        pthread_mutex_lock(&es->wake_mu);
        es->kicked = 0;
        pthread_mutex_unlock(&es->wake_mu);
        long total = 0, full = 0;
        uint64_t t0 = spw_mono_ns();
        for (uint32_t i = 0; i < es->nparts; i++) {
            long n = index_step(es, i, &c, 4096);
            full |= n >= 4096;
            if (n > 0)
                total += n;
            /* What retention deleted since the last pass: its entries go
             * (an idle stream's at the next durable append, or within
             * INDEXER_IDLE_NS). */
            if (prune_step(es, i, 4096) > 0)
                total++;
        }
        atomic_fetch_add(&es->passes, 1);
        if (total > 0 && !full) {
            /* Let records gather (kicks meanwhile only ask for the next
             * pass); stop ends the wait. */
            pthread_mutex_lock(&es->wake_mu);
            while (!atomic_load(&es->stop) &&
                   spw_cond_wait_until(&es->wake_cv, &es->wake_mu, t0 + INDEXER_BATCH_NS) != ETIMEDOUT)
                ;
            pthread_mutex_unlock(&es->wake_mu);
        }
        if (total > 0)
            continue;
        /* Caught up: sleep until a durable end moves (the log's hook). */
        pthread_mutex_lock(&es->wake_mu);
        if (!es->kicked && !atomic_load(&es->stop))
            spw_cond_wait_ns(&es->wake_cv, &es->wake_mu, INDEXER_IDLE_NS);
        pthread_mutex_unlock(&es->wake_mu);
    }
    spw_cursor_fini(&c);
    return NULL;
}

/* ---- open, close ---- */

static int index_all(spw_es *es, uint64_t *records);

static void es_free(spw_es *es)
{
    if (es->hooked)
        spw_log_remove_durable_hook(spw_catalog_log(es->s->cat), durable_kick, es);
    if (es->th_started) {
        atomic_store(&es->stop, 1);
        durable_kick(es);
        pthread_join(es->th, NULL);
        /* A clean close indexes what is durable, so the next open has no
         * tail to index (the partitions are still open: the stream frees
         * its map first). */
        uint64_t n = 0;
        if (!atomic_load(&es->s->deleted))
            index_all(es, &n);
    }
    for (uint32_t i = 0; i < es->nparts; i++) {
        es_part *p = &es->parts[i];
        if (p->hold)
            spw_hold_release(p->hold);
        for (size_t b = 0; b < p->nbuckets; b++)
            for (es_ent *e = p->buckets[b], *next; e; e = next) {
                next = e->next;
                spw_free(e);
            }
        spw_free(p->buckets);
        pthread_mutex_destroy(&p->mu);
        pthread_mutex_destroy(&p->store_mu);
    }
    if (es->db)
        rocksdb_close(es->db);
    if (es->wo)
        rocksdb_writeoptions_destroy(es->wo);
    if (es->ro)
        rocksdb_readoptions_destroy(es->ro);
    if (es->opts)
        rocksdb_options_destroy(es->opts);
    if (es->bbo)
        rocksdb_block_based_options_destroy(es->bbo); /* owns the bloom filter */
    pthread_mutex_destroy(&es->wake_mu);
    pthread_cond_destroy(&es->wake_cv);
    pthread_rwlock_destroy(&es->db_lock);
    spw_free(es);
}

/*
 * A store written before pruning existed: its 'c' entries hold the
 * indexed offset alone and it has no 'o' entries. Once, at open: every
 * 'e' entry is read; those of deleted records (below their partition's
 * start offset) are deleted, the others get an 'o' entry each, and the
 * 'c' entries are written with the counts (last, so that a crash before
 * does the whole migration again: every step of it can be repeated).
 */
static int migrate(spw_es *es)
{
    spw_info("stream %s: version store written by an older version: counting and pruning its index once",
             es->s->cfg.name);
    uint64_t *start = spw_xcalloc(es->nparts, sizeof *start);
    for (uint32_t i = 0; i < es->nparts; i++) {
        spw_part_state st;
        spw_part_state_get(es->s->parts[i], &st);
        start[i] = st.start_offset;
        atomic_store(&es->parts[i].entries, 0);
        es->parts[i].pruned = st.start_offset;
    }
    rocksdb_iterator_t *it = rocksdb_create_iterator(es->db, es->ro);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    spw_buf ov = SPW_BUF_INIT;
    char *err = NULL;
    uint64_t deleted = 0;
    for (rocksdb_iter_seek(it, "e", 1); rocksdb_iter_valid(it) && !err; rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *ik = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *iv = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl < 1 + 9 || ik[0] != 'e')
            break;
        if (vl != 8)
            continue;
        size_t n = kl - 10;
        uint64_t off = spw_get64(iv), ver = get_be64(ik + 2 + n);
        uint32_t i = spw_stream_partition(ik + 1, n, es->nparts);
        if (off < start[i]) {
            rocksdb_writebatch_delete(wb, (const char *)ik, kl);
            deleted++;
        } else {
            ov.len = 0;
            orec_put(&ov, off, ver, ik + 1, n);
            uint8_t ok[OKEY_LEN];
            okey(ok, i, off);
            rocksdb_writebatch_put(wb, (const char *)ok, OKEY_LEN, (const char *)ov.p, ov.len);
            atomic_fetch_add(&es->parts[i].entries, 1);
        }
        if (rocksdb_writebatch_count(wb) >= 65536) {
            rocksdb_write(es->db, es->wo, wb, &err);
            rocksdb_writebatch_clear(wb);
        }
    }
    if (!err)
        rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (!err) {
        for (uint32_t i = 0; i < es->nparts; i++)
            put_c(wb, i, atomic_load(&es->parts[i].indexed), atomic_load(&es->parts[i].entries),
                  es->parts[i].pruned, es->parts[i].kall);
        rocksdb_write(es->db, es->wo, wb, &err);
    }
    rocksdb_writebatch_destroy(wb);
    spw_buf_fini(&ov);
    spw_free(start);
    if (err) {
        spw_error("stream %s: version store: %s", es->s->cfg.name, err);
        rocksdb_free(err);
        return SPW_EIO_STORE;
    }
    atomic_fetch_add(&es->pruned_total, deleted);
    return 0;
}

/* Opens (creating) the store at dir; reads every partition's indexed
 * offset; a store ahead of its log (the log lost records it had indexed:
 * only damage can do that) is dropped and rebuilt. */
static int store_open(spw_es *es, const char *dir)
{
    es->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(es->opts, 1);
    rocksdb_options_set_info_log_level(es->opts, 4); /* header only */
    rocksdb_options_set_keep_log_file_num(es->opts, 2);
    rocksdb_options_set_max_open_files(es->opts, 64);
    rocksdb_options_set_write_buffer_size(es->opts, 8 << 20);
    /* Most lookups that reach the store are of new keys (a new aggregate's
     * first append): a bloom filter over the memtable's keys answers
     * those without a search of its skip list, as the tables' filters do
     * for the files. */
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(es->opts, 0.1);
    rocksdb_options_set_memtable_whole_key_filtering(es->opts, 1);
    /* Each step's entries arrive sorted (ix_flush): the memtable keeps
     * the place of the last insert per first byte ('e', 'k', 'o', 'c'),
     * and each insert searches from there, climbing only as far as it
     * must (a search from the top without the hint). The hint applies to
     * writes that are not concurrent memtable writes: each stream's
     * writes come from its indexer (and, rarely, a resync) and RocksDB
     * orders them anyway. */
    rocksdb_options_set_allow_concurrent_memtable_write(es->opts, 0);
    {
        char *err = NULL;
        rocksdb_options_t *o = rocksdb_options_create();
        rocksdb_get_options_from_string(es->opts, "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1",
                                        o, &err);
        if (err) {
            spw_error("stream %s: version store options: %s", es->s->cfg.name, err);
            rocksdb_free(err);
            rocksdb_options_destroy(o);
        } else {
            rocksdb_options_destroy(es->opts);
            es->opts = o;
        }
    }
    es->bbo = rocksdb_block_based_options_create();
    es->bloom = rocksdb_filterpolicy_create_bloom(10);
    rocksdb_block_based_options_set_filter_policy(es->bbo, es->bloom);
    rocksdb_options_set_block_based_table_factory(es->opts, es->bbo);
    es->wo = rocksdb_writeoptions_create(); /* no sync: the log is the truth, the store a replayable index */
    es->ro = rocksdb_readoptions_create();
    for (int attempt = 0; attempt < 2; attempt++) {
        char *err = NULL;
        es->db = rocksdb_open(es->opts, dir, &err);
        if (err) {
            spw_error("stream %s: cannot open its version store %s: %s", es->s->cfg.name, dir, err);
            rocksdb_free(err);
            es->db = NULL;
            return SPW_EIO_STORE;
        }
        int ahead = 0, legacy = 0;
        for (uint32_t i = 0; i < es->nparts; i++) {
            uint8_t ck[5];
            ckey(ck, i);
            size_t vl = 0;
            char *v = rocksdb_get(es->db, es->ro, (const char *)ck, 5, &vl, &err);
            if (err) {
                spw_error("stream %s: version store: %s", es->s->cfg.name, err);
                rocksdb_free(err);
                return SPW_EIO_STORE;
            }
            uint64_t off = v && (vl == 8 || vl == CVAL_LEN) ? spw_get64((uint8_t *)v) : 0;
            es_part *p = &es->parts[i];
            if (v && vl == CVAL_LEN) {
                atomic_store(&p->entries, spw_get64((uint8_t *)v + 8));
                p->pruned = spw_get64((uint8_t *)v + 16);
                p->kall = (spw_get64((uint8_t *)v + 24) & CFLAG_KALL) != 0;
            } else if (v) {
                legacy = 1; /* written before pruning: no counts, no 'o' entries */
                p->kall = 1;  /* and a 'k' entry per key, as every record wrote it */
            }
            rocksdb_free(v);
            spw_part_state st;
            spw_part_state_get(es->s->parts[i], &st);
            if (off > st.durable_offset)
                ahead = 1;
            atomic_store(&p->indexed, off);
        }
        if (!ahead)
            return legacy ? migrate(es) : 0;
        spw_warn("stream %s: its version store indexed records past the end of the log; rebuilding it from the log",
                 es->s->cfg.name);
        rocksdb_close(es->db);
        es->db = NULL;
        rocksdb_destroy_db(es->opts, dir, &err);
        if (err) {
            spw_error("stream %s: cannot remove its version store: %s", es->s->cfg.name, err);
            rocksdb_free(err);
            return SPW_EIO_STORE;
        }
    }
    return SPW_EIO_STORE;
}

/*
 * Retention (a versioned stream may have one): each partition's hold at
 * its indexed offset keeps every record the store does not hold yet, so
 * no version leaves the log before it is in the store (the map lets go
 * of a key only once the store has its newest version: versions go on
 * after the key's records are deleted). Taken at open, before the tail is
 * indexed and before the server's first retention pass. When the log
 * already starts past the indexed offset (a store rebuilt after records
 * were deleted), the versions of keys whose records all went are lost:
 * said once, and the hold starts where the log does.
 */
static void take_holds(spw_es *es)
{
    for (uint32_t i = 0; i < es->nparts; i++) {
        es_part *p = &es->parts[i];
        uint64_t at = atomic_load(&p->indexed);
        if (spw_part_hold(es->s->parts[i], at, &p->hold) == 0)
            continue;
        spw_part_state st;
        spw_part_state_get(es->s->parts[i], &st);
        spw_warn("stream %s partition %u: retention deleted records %" PRIu64 "..%" PRIu64
                 " before the version store indexed them; keys whose every record went there start their versions "
                 "again",
                 es->s->cfg.name, i, at, st.start_offset);
        if (spw_part_hold(es->s->parts[i], st.start_offset, &p->hold))
            p->hold = NULL; /* moved on again meanwhile: the next index step's offsets are past it */
    }
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
    /* One open at a time (first uses only: later calls take the load
     * above), so a stream's map is made once. */
    pthread_mutex_lock(&build_mu);
    /* Told before deleted is read: a delete that sets deleted after the
     * read below then finds the hook, and its spw_es_retire waits on
     * build_mu for this open to end, then closes what it made. */
    spw_catalog_set_es_retire(s->cat, spw_es_retire);
    es = atomic_load_explicit(&s->es, memory_order_acquire);
    int r = 0;
    if (!es && atomic_load(&s->deleted)) {
        /* Its directory moves (or moved): never open a store there. */
        r = SPW_EDELETED;
    } else if (!es) {
        es = spw_xcalloc(1, sizeof *es + s->cfg.partitions * sizeof(es_part));
        es->s = s;
        es->nparts = s->cfg.partitions;
        uint64_t ck = atomic_load(&cache_keys);
        es->cap = (size_t)(ck / es->nparts > 16 ? ck / es->nparts : 16);
        pthread_mutex_init(&es->wake_mu, NULL);
        spw_cond_init(&es->wake_cv);
        pthread_rwlock_init(&es->db_lock, NULL);
        for (uint32_t i = 0; i < es->nparts; i++) {
            pthread_mutex_init(&es->parts[i].mu, NULL);
            pthread_mutex_init(&es->parts[i].store_mu, NULL);
            es->parts[i].nbuckets = 64;
            es->parts[i].buckets = spw_xcalloc(64, sizeof(es_ent *));
        }
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s/es", spw_catalog_dir(s->cat), s->cfg.name);
        r = store_open(es, dir);
        if (r == 0)
            take_holds(es);
        uint64_t tail = 0;
        if (r == 0)
            r = index_all(es, &tail);
        if (r == 0)
            spw_info("stream %s: version store open; %" PRIu64 " record(s) of the log's tail indexed", s->cfg.name,
                     tail);
        if (r == 0) {
            r = spw_log_add_durable_hook(spw_catalog_log(s->cat), durable_kick, es);
            es->hooked = r == 0;
        }
        if (r == 0 && pthread_create(&es->th, NULL, indexer_main, es) != 0)
            r = SPW_ENOMEM;
        else if (r == 0) {
            es->th_started = 1;
            spw_thread_name(es->th, "spw-es-index");
        }
        if (r) {
            spw_warn("stream %s: the version map could not be opened: %s", s->cfg.name, spw_strerror(r));
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

static void open_one(void *arg, spw_stream *s)
{
    (void)arg;
    spw_es *es;
    if (s->cfg.versioned)
        spw_es_of(s, &es);
}

void spw_es_open_all(spw_catalog *cat)
{
    spw_catalog_set_es_retire(cat, spw_es_retire);
    spw_catalog_each(cat, open_one, NULL);
}

void spw_es_retire(spw_stream *s)
{
    pthread_mutex_lock(&build_mu); /* an open in progress ends first */
    spw_es *es = atomic_load_explicit(&s->es, memory_order_acquire);
    if (es && es->th_started) {
        atomic_store(&es->stop, 1);
        durable_kick(es);
        pthread_join(es->th, NULL);
        es->th_started = 0;
    }
    if (es) {
        pthread_rwlock_wrlock(&es->db_lock);
        if (es->db)
            rocksdb_close(es->db);
        es->db = NULL;
        pthread_rwlock_unlock(&es->db_lock);
    }
    pthread_mutex_unlock(&build_mu);
}

/* ---- use ---- */

void spw_es_append_failed(spw_es *es, uint32_t partition) { atomic_store(&es->parts[partition].suspect, 1); }

/*
 * After an append of the partition failed (its write or fsync), the map's
 * entries of the partition may name records that recovery did not keep.
 * Once the partition has recovered — what it kept is durable, and no
 * versioned append can come in meanwhile (they all take this lock) — the
 * map's entries of the partition are dropped and the store indexes the
 * partition to its end, so the map again starts from what the log holds.
 * REQUIRES: the partition's lock.
 */
static void resync(spw_es *es, uint32_t i)
{
    es_part *p = &es->parts[i];
    if (!atomic_load(&p->suspect) || spw_part_failed(es->s->parts[i]))
        return;
    for (size_t b = 0; b < p->nbuckets; b++) {
        for (es_ent *e = p->buckets[b], *next; e; e = next) {
            next = e->next;
            spw_free(e);
        }
        p->buckets[b] = NULL;
    }
    p->n = 0;
    spw_cursor c;
    spw_cursor_init(&c, es->s->parts[i], 0, 1 << 20);
    long n;
    while ((n = index_step(es, i, &c, 65536)) > 0)
        ;
    spw_cursor_fini(&c);
    if (n == 0) {
        atomic_store(&p->suspect, 0);
        spw_warn("stream %s partition %u: an append failed; its version map was rebuilt from the log",
                 es->s->cfg.name, i);
    }
}

void spw_es_lock(spw_es *es, uint32_t partition)
{
    SPW_ASSERT(partition < es->nparts);
    pthread_mutex_lock(&es->parts[partition].mu);
    resync(es, partition);
}

void spw_es_unlock(spw_es *es, uint32_t partition) { pthread_mutex_unlock(&es->parts[partition].mu); }

int spw_es_get_locked(spw_es *es, uint32_t partition, const void *key, size_t n, spw_es_key *out)
{
    es_part *p = &es->parts[partition];
    es_ent *e = find(p, key_hash(key, n), key, n);
    if (!e) {
        /* Not in the map: the store holds the key's newest record, since
         * every record it lacks is pinned in the map. Cache what it says,
         * "no record" too (version 0): a new key's check and the version
         * its append takes then cost one store read, not two. */
        spw_es_key sk = {0};
        if (!store_key(es, key, n, &sk))
            sk.version = sk.offset = 0;
        e = set(es, p, key, n, sk.version, sk.offset);
    }
    if (e->version)
        *out = (spw_es_key){.version = e->version, .offset = e->offset, .partition = partition};
    return e->version != 0;
}

void spw_es_put_locked(spw_es *es, uint32_t partition, const void *key, size_t n, uint64_t version, uint64_t offset)
{
    SPW_ASSERT(partition < es->nparts);
    SPW_ASSERT(version <= SPW_VERSION_MAX);
    set(es, &es->parts[partition], key, n, version, offset);
}

int spw_es_lookup(spw_es *es, const void *key, size_t n, spw_es_key *out)
{
    uint32_t part = spw_stream_partition(key, n, es->nparts);
    spw_es_lock(es, part);
    int found = spw_es_get_locked(es, part, key, n, out);
    spw_es_unlock(es, part);
    return found;
}

uint64_t spw_es_cached_keys(spw_es *es)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < es->nparts; i++) {
        pthread_mutex_lock(&es->parts[i].mu);
        n += es->parts[i].n;
        pthread_mutex_unlock(&es->parts[i].mu);
    }
    return n;
}

uint64_t spw_es_store_reads(spw_es *es) { return atomic_load(&es->store_reads); }

uint64_t spw_es_indexer_passes(spw_es *es) { return atomic_load(&es->passes); }

void spw_es_count_history(spw_es *es, uint64_t records) { atomic_fetch_add(&es->history_records, records); }

uint64_t spw_es_history_records(spw_es *es) { return atomic_load(&es->history_records); }

uint64_t spw_es_unindexed(spw_es *es)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < es->nparts; i++) {
        spw_part_state st;
        spw_part_state_get(es->s->parts[i], &st);
        uint64_t from = atomic_load(&es->parts[i].indexed);
        if (from < st.start_offset)
            from = st.start_offset;
        if (st.durable_offset > from)
            n += st.durable_offset - from;
    }
    return n;
}

uint64_t spw_es_indexed(spw_es *es, uint32_t partition) { return atomic_load(&es->parts[partition].indexed); }

int spw_es_history(spw_es *es, const void *key, size_t n, uint64_t from_version, uint32_t max, uint64_t *versions,
                   uint64_t *offsets)
{
    perf_off();
    if (db_begin(es) < 0)
        return SPW_EDELETED;
    spw_buf k = SPW_BUF_INIT, end = SPW_BUF_INIT;
    ekey(&k, key, n, from_version);
    ekey(&end, key, n, SPW_VERSION_MAX + 1);
    rocksdb_iterator_t *it = rocksdb_create_iterator(es->db, es->ro);
    uint32_t got = 0;
    for (rocksdb_iter_seek(it, (const char *)k.p, k.len); got < max && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *ik = rocksdb_iter_key(it, &kl);
        if (kl != end.len || memcmp(ik, end.p, 1 + n + 1) != 0)
            break; /* another key */
        const char *iv = rocksdb_iter_value(it, &vl);
        if (vl != 8)
            break;
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | (uint8_t)ik[2 + n + i];
        versions[got] = v;
        offsets[got] = spw_get64((const uint8_t *)iv);
        got++;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    db_end(es);
    spw_buf_fini(&k);
    spw_buf_fini(&end);
    if (err) {
        spw_error("version store of stream %s: %s", es->s->cfg.name, err);
        rocksdb_free(err);
        return SPW_EIO_STORE;
    }
    return (int)got;
}

/* The 'e' entry of version v: 1 with *offset, 0 none, or an error.
 * REQUIRES: db_begin. */
static int entry_get_db(spw_es *es, const void *key, size_t n, uint64_t v, uint64_t *offset)
{
    spw_buf k = SPW_BUF_INIT;
    ekey(&k, key, n, v);
    char *err = NULL;
    size_t vl = 0;
    char *val = rocksdb_get(es->db, es->ro, (const char *)k.p, k.len, &vl, &err);
    spw_buf_fini(&k);
    if (err) {
        spw_error("version store of stream %s: %s", es->s->cfg.name, err);
        rocksdb_free(err);
        return SPW_EIO_STORE;
    }
    int found = val && vl == 8;
    if (found)
        *offset = spw_get64((uint8_t *)val);
    rocksdb_free(val);
    return found;
}

int spw_es_oldest_kept(spw_es *es, const void *key, size_t n, uint64_t current, uint64_t start_offset,
                       uint64_t *oldest)
{
    /* A key's versions follow its offsets, and retention deletes from the
     * start: its deleted versions are a prefix 1..d of its indexed ones,
     * and versions not indexed yet are kept. Pruning deletes the entries
     * of that prefix (those it has not reached yet have offsets below
     * start_offset), so the oldest kept is the key's first entry at or
     * past start_offset; with none, every indexed version went and the
     * oldest kept is the one after the newest indexed (the newer of its
     * 'k' entry and its last entry pruning has not reached). One
     * iterator: the entries and the 'k' entry it sees are of one moment
     * of the store, whatever the indexer writes meanwhile. */
    if (db_begin(es) < 0)
        return SPW_EDELETED;
    spw_buf k = SPW_BUF_INIT;
    ekey(&k, key, n, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator(es->db, es->ro);
    uint64_t found = 0, newest = 0;
    for (rocksdb_iter_seek(it, (const char *)k.p, k.len); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *ik = rocksdb_iter_key(it, &kl);
        if (kl != k.len || memcmp(ik, k.p, 1 + n + 1) != 0)
            break; /* another key */
        const char *iv = rocksdb_iter_value(it, &vl);
        uint64_t v = get_be64((const uint8_t *)ik + 2 + n);
        if (vl == 8 && spw_get64((const uint8_t *)iv) >= start_offset) {
            found = v;
            break;
        }
        newest = v;
    }
    if (!found) {
        kkey(&k, key, n);
        rocksdb_iter_seek(it, (const char *)k.p, k.len);
        size_t kl, vl;
        if (rocksdb_iter_valid(it)) {
            const char *ik = rocksdb_iter_key(it, &kl);
            const char *iv = rocksdb_iter_value(it, &vl);
            if (kl == k.len && memcmp(ik, k.p, k.len) == 0 && vl == 20 && spw_get64((const uint8_t *)iv) > newest)
                newest = spw_get64((const uint8_t *)iv);
        }
        found = (newest < current ? newest : current) + 1;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    db_end(es);
    spw_buf_fini(&k);
    if (err) {
        spw_error("version store of stream %s: %s", es->s->cfg.name, err);
        rocksdb_free(err);
        return SPW_EIO_STORE;
    }
    *oldest = found;
    return 0;
}

uint64_t spw_es_index_entries(spw_es *es)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < es->nparts; i++)
        n += atomic_load(&es->parts[i].entries);
    return n;
}

uint64_t spw_es_pruned(spw_es *es) { return atomic_load(&es->pruned_total); }

int spw_es_snapshot_put(spw_es *es, const void *key, size_t n, uint64_t version, const char *state, size_t len)
{
    spw_buf k = SPW_BUF_INIT, v = SPW_BUF_INIT;
    skey(&k, key, n);
    if (spw_buf_reserve(&v, 8 + len))
        abort();
    spw_put64(v.p, version);
    memcpy(v.p + 8, state, len);
    char *err = NULL;
    int r = db_begin(es);
    if (r == 0) {
        rocksdb_put(es->db, es->wo, (const char *)k.p, k.len, (const char *)v.p, 8 + len, &err);
        db_end(es);
    }
    spw_buf_fini(&k);
    spw_buf_fini(&v);
    if (r < 0)
        return r;
    if (err) {
        spw_error("version store of stream %s: %s", es->s->cfg.name, err);
        rocksdb_free(err);
        return SPW_EIO_STORE;
    }
    return 0;
}

int spw_es_snapshot_get(spw_es *es, const void *key, size_t n, uint64_t *version, spw_buf *state)
{
    if (db_begin(es) < 0)
        return SPW_EDELETED;
    spw_buf k = SPW_BUF_INIT;
    skey(&k, key, n);
    char *err = NULL;
    size_t vl = 0;
    char *v = rocksdb_get(es->db, es->ro, (const char *)k.p, k.len, &vl, &err);
    db_end(es);
    spw_buf_fini(&k);
    if (err) {
        spw_error("version store of stream %s: %s", es->s->cfg.name, err);
        rocksdb_free(err);
        return SPW_EIO_STORE;
    }
    if (!v || vl < 8) {
        rocksdb_free(v);
        return 0;
    }
    *version = spw_get64((uint8_t *)v);
    state->len = 0;
    if (spw_buf_reserve(state, vl - 8))
        abort();
    memcpy(state->p, v + 8, vl - 8);
    state->len = vl - 8;
    rocksdb_free(v);
    return 1;
}
