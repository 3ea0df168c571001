/*
 * The coalescing buffer of one partition (svc/coalesce.h; docs/operations.md "Admission"
 * "Coalescing"): events accepted but not yet handed to the log, queued in
 * acceptance order, with a map from key to the newest of them so that a
 * newer event for a key replaces an older one in O(1).
 *
 * Rules (docs/api.md "Coalescing"):
 *   - An event without a key (key_len < 0) is only queued: it never
 *     replaces and is never replaced.
 *   - A keyed event goes to the tail of the queue. If the newest queued
 *     event with the same key is supersedable, that one leaves the queue
 *     and is returned to the caller (who answers its request); if it is
 *     not, it stays queued (it will be written before the newcomer).
 *     Either way the newcomer becomes the key's newest.
 *   So the queue always holds the survivors in acceptance order, and per
 *   key the newest event is the last one written.
 *
 * Intrusive: the caller embeds a spw_coalbuf_node in its own entry and sets
 * key, key_len and supersedable before spw_coalbuf_put; the key bytes must
 * stay put while the node is queued. The buffer allocates only its bucket
 * array (a power of two, doubled while it holds more keys than buckets;
 * if growing fails the chains just get longer). Keys are hashed with a
 * per-buffer seed so clients cannot aim their keys at one chain.
 *
 * Not thread-safe: the caller serializes (coalesce.c holds the
 * partition's lock).
 */
#ifndef SPW_COALBUF_H
#define SPW_COALBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct spw_coalbuf_node {
    struct spw_coalbuf_node *next, *prev; /* queue, oldest first */
    struct spw_coalbuf_node *hnext;       /* hash chain, while in_map */
    uint64_t hash;
    const uint8_t *key;
    int32_t key_len; /* -1: no key */
    uint8_t supersedable;
    uint8_t in_map; /* the newest queued event of its key */
} spw_coalbuf_node;

typedef struct spw_coalbuf {
    spw_coalbuf_node *head, *tail;
    size_t len; /* nodes queued */
    spw_coalbuf_node **buckets;
    size_t nbuckets; /* 0 or a power of two */
    size_t nkeys;    /* nodes in the map */
    uint64_t seed;
} spw_coalbuf;

void spw_coalbuf_init(spw_coalbuf *b, uint64_t seed);
/* Frees the bucket array. REQUIRES: nothing queued. */
void spw_coalbuf_fini(spw_coalbuf *b);

/* Queues n (see the rules above). Returns the node n replaced, now out of
 * the buffer and the caller's again, or NULL. */
spw_coalbuf_node *spw_coalbuf_put(spw_coalbuf *b, spw_coalbuf_node *n);

/* Detaches every queued node and returns the oldest (follow next; the
 * last has next NULL), or NULL when empty. The buffer is empty after. */
spw_coalbuf_node *spw_coalbuf_take(spw_coalbuf *b);

#endif
