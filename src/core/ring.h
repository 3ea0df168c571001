/*
 * A consistent-hash ring with virtual nodes (the postgres sink's key →
 * shard map; docs/api.md "postgres sink").
 *
 * Shard s owns SPW_RING_VNODES (1024: with 160 a shard's share strays
 * by 15%; 1024 keeps it within 5%) points; point v of shard s is
 * fmix64(FNV-1a 64("s:v")) with s and v in decimal ("2:17"). A key's
 * point is fmix64(FNV-1a 64(key bytes)) (a record without a key hashes
 * as the empty key); the key belongs to the shard owning the first
 * point at or after it, wrapping around (ties: the lower shard). A
 * shard's points depend only on its index, so going from N to N+1
 * shards moves only the keys the new shard takes: about 1/(N+1).
 */
#ifndef SPW_RING_H
#define SPW_RING_H

#include <stddef.h>
#include <stdint.h>

#define SPW_RING_VNODES 1024
#define SPW_RING_SHARDS_MAX 256

typedef struct spw_ring_point {
    uint64_t h;
    uint32_t shard;
} spw_ring_point;

typedef struct spw_ring {
    spw_ring_point *pts; /* sorted by (h, shard) */
    uint32_t npts;
    uint32_t nshards;
} spw_ring;

/* Builds the ring of nshards (1 .. SPW_RING_SHARDS_MAX) shards: 0 or SPW_EINVAL. */
int spw_ring_init(spw_ring *r, uint32_t nshards);
void spw_ring_free(spw_ring *r);
/* The shard of a key (key may be NULL when len is 0). */
uint32_t spw_ring_shard(const spw_ring *r, const void *key, size_t len);

#endif
