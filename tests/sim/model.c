/*
 * The shared model checker: see model.h. Two open-addressing tables:
 * (partition, offset) -> what was promised and found there, and content
 * hash -> how often it was found (duplicates at other offsets).
 */
#include "sim/model.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    F_APPENDED = 1,
    F_ACKED = 2,
    F_SEEN = 4,
    F_SEEN_UNDURABLE = 8, /* every sighting was beyond the durable end */
    F_DAMAGED = 16,
    F_DAMAGED_KNOWN = 32, /* in a damaged range the test classed as known */
    F_CORRUPTED = 64,     /* the test damaged the media here (simmodel_corrupted) */
};

enum { P_PROMISED = 1, P_ACKED = 2, P_DAMAGED = 4 }; /* pslot.flags */

#define PRINT_MAX 8

typedef struct slot {
    uint64_t offset;
    uint64_t hash;       /* appended content */
    uint64_t seen_hash;  /* what a reader saw */
    uint64_t found_hash; /* what was found after recovery */
    uint32_t part;
    uint32_t flags;
    uint32_t found_n;
    uint32_t used;
} slot;

typedef struct cslot {
    uint64_t hash;
    uint32_t n;     /* content table: times found; promise table: P_* flags */
    uint32_t used;
} cslot;

struct simmodel {
    pthread_mutex_t mu;
    char name[64];
    slot *v;
    size_t cap, n;
    cslot *c;
    size_t ccap, cn;
    cslot *pr; /* promises by content: hash -> P_* flags */
    size_t prcap, prn;
    uint64_t unreported, unreported_known, damaged, wrong_found;
    uint64_t wrong_seen;
    int printed_wrong;
    struct {
        uint32_t part;
        uint64_t from;
    } known[64];
    int nknown;
};

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t simmodel_hash(const void *key, size_t key_len, const void *value, size_t value_len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const uint8_t *p = key;
    for (size_t i = 0; i < key_len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    h = (h ^ 0xff) * 0x100000001b3ull; /* key/value boundary */
    p = value;
    for (size_t i = 0; i < value_len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n, sz);
    if (!p) {
        fprintf(stderr, "simmodel: out of memory\n");
        abort();
    }
    return p;
}

simmodel *simmodel_new(const char *name)
{
    simmodel *m = xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    snprintf(m->name, sizeof m->name, "%s", name ? name : "model");
    m->cap = 1024;
    m->v = xcalloc(m->cap, sizeof *m->v);
    m->ccap = 1024;
    m->c = xcalloc(m->ccap, sizeof *m->c);
    m->prcap = 1024;
    m->pr = xcalloc(m->prcap, sizeof *m->pr);
    return m;
}

void simmodel_free(simmodel *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m->v);
    free(m->c);
    free(m->pr);
    free(m);
}

static size_t key_slot(const slot *v, size_t cap, uint32_t part, uint64_t offset)
{
    size_t i = (size_t)mix(offset ^ ((uint64_t)part << 48)) & (cap - 1);
    while (v[i].used && !(v[i].part == part && v[i].offset == offset))
        i = (i + 1) & (cap - 1);
    return i;
}

/* The slot of (part, offset), made if missing. REQUIRES: mu held. */
static slot *get(simmodel *m, uint32_t part, uint64_t offset)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap * 2;
        slot *v = xcalloc(cap, sizeof *v);
        for (size_t i = 0; i < m->cap; i++)
            if (m->v[i].used)
                v[key_slot(v, cap, m->v[i].part, m->v[i].offset)] = m->v[i];
        free(m->v);
        m->v = v;
        m->cap = cap;
    }
    size_t i = key_slot(m->v, m->cap, part, offset);
    if (!m->v[i].used) {
        m->v[i] = (slot){.part = part, .offset = offset, .used = 1};
        m->n++;
    }
    return &m->v[i];
}

static size_t content_slot(const cslot *c, size_t cap, uint64_t hash)
{
    size_t i = (size_t)mix(hash) & (cap - 1);
    while (c[i].used && c[i].hash != hash)
        i = (i + 1) & (cap - 1);
    return i;
}

/* Counts one more finding of content hash; returns the count. */
static uint32_t content_found(simmodel *m, uint64_t hash)
{
    if ((m->cn + 1) * 2 > m->ccap) {
        size_t cap = m->ccap * 2;
        cslot *c = xcalloc(cap, sizeof *c);
        for (size_t i = 0; i < m->ccap; i++)
            if (m->c[i].used)
                c[content_slot(c, cap, m->c[i].hash)] = m->c[i];
        free(m->c);
        m->c = c;
        m->ccap = cap;
    }
    size_t i = content_slot(m->c, m->ccap, hash);
    if (!m->c[i].used) {
        m->c[i] = (cslot){.hash = hash, .used = 1};
        m->cn++;
    }
    return ++m->c[i].n;
}

/* The promise slot of hash, made if missing (make) or NULL. REQUIRES: mu. */
static cslot *promise(simmodel *m, uint64_t hash, int make)
{
    if (make && (m->prn + 1) * 2 > m->prcap) {
        size_t cap = m->prcap * 2;
        cslot *c = xcalloc(cap, sizeof *c);
        for (size_t i = 0; i < m->prcap; i++)
            if (m->pr[i].used)
                c[content_slot(c, cap, m->pr[i].hash)] = m->pr[i];
        free(m->pr);
        m->pr = c;
        m->prcap = cap;
    }
    size_t i = content_slot(m->pr, m->prcap, hash);
    if (!m->pr[i].used) {
        if (!make)
            return NULL;
        m->pr[i] = (cslot){.hash = hash, .used = 1};
        m->prn++;
    }
    return &m->pr[i];
}

/* How often content hash was found. REQUIRES: mu. */
static uint32_t content_count(const simmodel *m, uint64_t hash)
{
    size_t i = content_slot(m->c, m->ccap, hash);
    return m->c[i].used ? m->c[i].n : 0;
}

void simmodel_promised(simmodel *m, uint64_t hash, int acked)
{
    pthread_mutex_lock(&m->mu);
    promise(m, hash, 1)->n |= P_PROMISED | (acked ? P_ACKED : 0);
    pthread_mutex_unlock(&m->mu);
}

void simmodel_promise_damaged(simmodel *m, uint64_t hash)
{
    pthread_mutex_lock(&m->mu);
    promise(m, hash, 1)->n |= P_DAMAGED;
    pthread_mutex_unlock(&m->mu);
}

void simmodel_corrupted(simmodel *m, uint32_t part, uint64_t from, uint64_t to)
{
    pthread_mutex_lock(&m->mu);
    for (uint64_t o = from; o < to; o++)
        get(m, part, o)->flags |= F_CORRUPTED;
    pthread_mutex_unlock(&m->mu);
}

void simmodel_appended(simmodel *m, uint32_t part, uint64_t offset, uint64_t hash)
{
    pthread_mutex_lock(&m->mu);
    slot *s = get(m, part, offset);
    s->flags |= F_APPENDED;
    s->hash = hash;
    pthread_mutex_unlock(&m->mu);
}

void simmodel_acked(simmodel *m, uint32_t part, uint64_t offset)
{
    pthread_mutex_lock(&m->mu);
    get(m, part, offset)->flags |= F_ACKED;
    pthread_mutex_unlock(&m->mu);
}

void simmodel_seen(simmodel *m, uint32_t part, uint64_t offset, uint64_t hash, int beyond_durable)
{
    pthread_mutex_lock(&m->mu);
    slot *s = get(m, part, offset);
    if ((s->flags & F_APPENDED) && s->hash != hash) {
        if (m->wrong_seen++ < PRINT_MAX)
            fprintf(stderr, "%s: VIOLATION wrong: a reader saw other content than was appended at %u/%" PRIu64 "\n",
                    m->name, part, offset);
    }
    if (!(s->flags & F_SEEN)) {
        s->flags |= F_SEEN | (beyond_durable ? F_SEEN_UNDURABLE : 0);
        s->seen_hash = hash;
    } else if (!beyond_durable) {
        s->flags &= ~(uint32_t)F_SEEN_UNDURABLE; /* seen while durable at least once */
    }
    pthread_mutex_unlock(&m->mu);
}

void simmodel_found(simmodel *m, uint32_t part, uint64_t offset, uint64_t hash)
{
    pthread_mutex_lock(&m->mu);
    slot *s = get(m, part, offset);
    if ((s->flags & F_CORRUPTED) && !(s->flags & F_APPENDED) && promise(m, hash, 0)) {
        /* A copy inside a range the test damaged, of a record whose
         * acknowledgement names another offset: the damage hid this copy's
         * dedupe key, so a retry stored the record again. Not counted. */
        s->found_n++;
        s->found_hash = hash;
        pthread_mutex_unlock(&m->mu);
        return;
    }
    cslot *pr = promise(m, hash, 0);
    int promised = pr && (pr->n & P_PROMISED);
    if (((s->flags & F_APPENDED) && s->hash != hash) || (!(s->flags & F_APPENDED) && !promised)) {
        m->wrong_found++;
        if (m->printed_wrong++ < PRINT_MAX)
            fprintf(stderr, "%s: VIOLATION wrong: offset %u/%" PRIu64 " holds %s\n", m->name, part, offset,
                    s->flags & F_APPENDED ? "other content than was appended there" : "a record never appended");
    }
    s->found_n++;
    s->found_hash = hash;
    content_found(m, hash);
    pthread_mutex_unlock(&m->mu);
}

void simmodel_damaged(simmodel *m, uint32_t part, uint64_t from, uint64_t to, int how)
{
    pthread_mutex_lock(&m->mu);
    for (uint64_t o = from; o < to; o++) {
        get(m, part, o)->flags |= F_DAMAGED | (how == SIMMODEL_UNREPORTED_KNOWN ? F_DAMAGED_KNOWN : 0);
        m->damaged++;
        if (how == SIMMODEL_UNREPORTED)
            m->unreported++;
        else if (how == SIMMODEL_UNREPORTED_KNOWN)
            m->unreported_known++;
    }
    if (how == SIMMODEL_UNREPORTED)
        fprintf(stderr, "%s: VIOLATION unreported: offsets %u/%" PRIu64 "..%" PRIu64
                        " are damaged but recovery reported no damage\n",
                m->name, part, from, to - 1);
    pthread_mutex_unlock(&m->mu);
}

void simmodel_found_reset(simmodel *m)
{
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->cap; i++) {
        m->v[i].found_n = 0;
        m->v[i].found_hash = 0;
        m->v[i].flags &= ~(uint32_t)(F_DAMAGED | F_DAMAGED_KNOWN);
    }
    memset(m->c, 0, m->ccap * sizeof *m->c);
    m->cn = 0;
    m->unreported = m->unreported_known = m->damaged = m->wrong_found = 0;
    m->printed_wrong = 0;
    pthread_mutex_unlock(&m->mu);
}

void simmodel_forget_from(simmodel *m, uint32_t part, uint64_t from)
{
    pthread_mutex_lock(&m->mu);
    /* Slots stay in the table (open addressing): only their state goes. */
    for (size_t i = 0; i < m->cap; i++) {
        slot *s = &m->v[i];
        if (s->used && s->part == part && s->offset >= from)
            *s = (slot){.part = s->part, .offset = s->offset, .used = 1};
    }
    pthread_mutex_unlock(&m->mu);
}

void simmodel_known_from(simmodel *m, uint32_t part, uint64_t from)
{
    pthread_mutex_lock(&m->mu);
    int i;
    for (i = 0; i < m->nknown && m->known[i].part != part; i++)
        ;
    if (i == m->nknown && m->nknown < 64) {
        m->known[m->nknown].part = part;
        m->known[m->nknown++].from = from;
    } else if (i < m->nknown && from < m->known[i].from) {
        m->known[i].from = from;
    }
    pthread_mutex_unlock(&m->mu);
}

/* REQUIRES: mu held. */
static int is_known(const simmodel *m, uint32_t part, uint64_t off)
{
    for (int i = 0; i < m->nknown; i++)
        if (m->known[i].part == part && off >= m->known[i].from)
            return 1;
    return 0;
}

uint64_t simmodel_violations(const simmodel_result *r)
{
    return r->lost + r->wrong + r->duplicated + r->seen_lost + r->unreported;
}

void simmodel_result_add(simmodel_result *a, const simmodel_result *b)
{
    a->appended += b->appended;
    a->acked += b->acked;
    a->seen += b->seen;
    a->found += b->found;
    a->damaged += b->damaged;
    a->lost += b->lost;
    a->wrong += b->wrong;
    a->duplicated += b->duplicated;
    a->seen_lost += b->seen_lost;
    a->seen_undurable += b->seen_undurable;
    a->unreported += b->unreported;
    a->unreported_known += b->unreported_known;
    a->lost_known += b->lost_known;
    a->seen_known += b->seen_known;
    a->promised += b->promised;
    a->promised_acked += b->promised_acked;
    a->lost_damaged += b->lost_damaged;
}

uint64_t simmodel_check(simmodel *m, int allow_duplicates, simmodel_result *out)
{
    pthread_mutex_lock(&m->mu);
    simmodel_result r = {.damaged = m->damaged, .unreported = m->unreported, .unreported_known = m->unreported_known,
                         .wrong = m->wrong_found + m->wrong_seen};
    int np_lost = 0, np_dup = 0, np_seen = 0;
    for (size_t i = 0; i < m->cap; i++) {
        slot *s = &m->v[i];
        if (!s->used)
            continue;
        r.appended += (s->flags & F_APPENDED) != 0;
        r.seen += (s->flags & F_SEEN) != 0;
        r.found += s->found_n;
        if (s->flags & F_ACKED) {
            r.acked++;
            if ((s->found_n == 0 || s->found_hash != s->hash) &&
                ((s->flags & F_DAMAGED_KNOWN) || is_known(m, s->part, s->offset))) {
                r.lost_known++;
            } else if ((s->found_n == 0 || s->found_hash != s->hash) &&
                       (s->flags & (F_CORRUPTED | F_DAMAGED)) == (F_CORRUPTED | F_DAMAGED) &&
                       !(s->flags & F_DAMAGED_KNOWN) && s->found_n == 0) {
                r.lost_damaged++; /* the test damaged it, and the damage was reported */
            } else if (s->found_n == 0 || s->found_hash != s->hash) {
                r.lost++;
                if (np_lost++ < PRINT_MAX)
                    fprintf(stderr, "%s: VIOLATION lost: acknowledged offset %u/%" PRIu64 " %s\n", m->name, s->part,
                            s->offset,
                            s->found_n                  ? "holds other content"
                            : (s->flags & F_DAMAGED) ? "is damaged"
                                                     : "is gone");
            }
        }
        if (s->found_n > 1 && !allow_duplicates) {
            r.duplicated++;
            if (np_dup++ < PRINT_MAX)
                fprintf(stderr, "%s: VIOLATION duplicated: offset %u/%" PRIu64 " found %u times\n", m->name, s->part,
                        s->offset, s->found_n);
        }
        if ((s->flags & F_SEEN) && (s->found_n == 0 || s->found_hash != s->seen_hash)) {
            if (s->found_n == 0 && (s->flags & (F_CORRUPTED | F_DAMAGED)) == (F_CORRUPTED | F_DAMAGED)) {
                /* damaged by the test, reported: not a reader's loss */
            } else if (s->flags & F_SEEN_UNDURABLE) {
                r.seen_undurable++;
            } else if (is_known(m, s->part, s->offset)) {
                r.seen_known++;
            } else {
                r.seen_lost++;
                if (np_seen++ < PRINT_MAX)
                    fprintf(stderr, "%s: VIOLATION seen_lost: offset %u/%" PRIu64 " was read while durable and is %s\n",
                            m->name, s->part, s->offset, s->found_n ? "changed" : "gone");
            }
        }
    }
    for (size_t i = 0; i < m->prcap; i++) {
        cslot *p = &m->pr[i];
        if (!p->used || !(p->n & P_PROMISED))
            continue;
        r.promised++;
        uint32_t n = content_count(m, p->hash);
        if (p->n & P_ACKED) {
            r.promised_acked++;
            if (n == 0 && (p->n & P_DAMAGED)) {
                r.lost_damaged++;
            } else if (n == 0) {
                r.lost++;
                if (np_lost++ < PRINT_MAX)
                    fprintf(stderr, "%s: VIOLATION lost: an acknowledged record (content %016" PRIx64 ") is gone\n",
                            m->name, p->hash);
            }
        }
    }
    if (!allow_duplicates)
        for (size_t i = 0; i < m->ccap; i++)
            if (m->c[i].used && m->c[i].n > 1) {
                r.duplicated++;
                if (np_dup++ < PRINT_MAX)
                    fprintf(stderr, "%s: VIOLATION duplicated: one record's content found %u times\n", m->name,
                            m->c[i].n);
            }
    pthread_mutex_unlock(&m->mu);
    if (out)
        *out = r;
    return simmodel_violations(&r);
}
