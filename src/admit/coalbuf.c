/* The coalescing buffer of one partition: see cbuf.h. */
#include "admit/coalbuf.h"
#include "core/hash.h"

#include <assert.h>
#include <string.h>

#include "core/alloc.h"

#define BUCKETS_MIN 16
/* After a take, a bucket array larger than this is freed rather than
 * cleared: a burst should not pin its table for good. */
#define BUCKETS_KEEP 1024

void spw_coalbuf_init(spw_coalbuf *b, uint64_t seed)
{
    memset(b, 0, sizeof *b);
    b->seed = seed;
}

void spw_coalbuf_fini(spw_coalbuf *b)
{
    assert(b->len == 0);
    spw_free(b->buckets);
    b->buckets = NULL;
    b->nbuckets = 0;
}

static uint64_t key_hash(uint64_t seed, const uint8_t *p, size_t n)
{
    /* fmix64, so the low bits (the bucket) depend on every byte. */
    return spw_fmix64(spw_fnv1a64(SPW_FNV64_OFFSET ^ seed, p, n));
}

static int same_key(const spw_coalbuf_node *a, const spw_coalbuf_node *b)
{
    return a->hash == b->hash && a->key_len == b->key_len && memcmp(a->key, b->key, (size_t)a->key_len) == 0;
}

/* Doubles the bucket array (or makes the first); keeps the old one when
 * memory is short. */
static void grow(spw_coalbuf *b)
{
    size_t nb = b->nbuckets ? b->nbuckets * 2 : BUCKETS_MIN;
    spw_coalbuf_node **v = spw_try_malloc(nb * sizeof *v);
    if (!v)
        return;
    memset(v, 0, nb * sizeof *v);
    for (size_t i = 0; i < b->nbuckets; i++) {
        spw_coalbuf_node *n = b->buckets[i];
        while (n) {
            spw_coalbuf_node *next = n->hnext;
            size_t k = n->hash & (nb - 1);
            n->hnext = v[k];
            v[k] = n;
            n = next;
        }
    }
    spw_free(b->buckets);
    b->buckets = v;
    b->nbuckets = nb;
}

static void unqueue(spw_coalbuf *b, spw_coalbuf_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        b->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        b->tail = n->prev;
    n->next = n->prev = NULL;
    b->len--;
}

spw_coalbuf_node *spw_coalbuf_put(spw_coalbuf *b, spw_coalbuf_node *n)
{
    spw_coalbuf_node *gone = NULL;
    n->in_map = 0;
    n->hnext = NULL;
    if (n->key_len >= 0) {
        n->hash = key_hash(b->seed, n->key, (size_t)n->key_len);
        if (b->nkeys >= b->nbuckets)
            grow(b);
        if (b->nbuckets) {
            spw_coalbuf_node **at = &b->buckets[n->hash & (b->nbuckets - 1)];
            while (*at && !same_key(*at, n))
                at = &(*at)->hnext;
            spw_coalbuf_node *old = *at;
            if (old) {
                /* n takes old's place in the chain as the key's newest. */
                n->hnext = old->hnext;
                old->hnext = NULL;
                old->in_map = 0;
                if (old->supersedable) {
                    unqueue(b, old);
                    gone = old;
                }
            } else {
                b->nkeys++;
            }
            *at = n;
            n->in_map = 1;
        }
        /* (No bucket array at all: memory is short; n is queued unmapped
         * and simply not coalesced.) */
    }
    n->next = NULL;
    n->prev = b->tail;
    if (b->tail)
        b->tail->next = n;
    else
        b->head = n;
    b->tail = n;
    b->len++;
    return gone;
}

spw_coalbuf_node *spw_coalbuf_take(spw_coalbuf *b)
{
    spw_coalbuf_node *h = b->head;
    for (spw_coalbuf_node *n = h; n; n = n->next) {
        n->in_map = 0;
        n->hnext = NULL;
    }
    b->head = b->tail = NULL;
    b->len = 0;
    b->nkeys = 0;
    if (b->nbuckets > BUCKETS_KEEP) {
        spw_free(b->buckets);
        b->buckets = NULL;
        b->nbuckets = 0;
    } else if (b->nbuckets) {
        memset(b->buckets, 0, b->nbuckets * sizeof *b->buckets);
    }
    return h;
}
