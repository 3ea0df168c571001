/*
 * The consistent-hash ring with virtual nodes, once, for both of its uses:
 *   - the postgres sink's key → shard map (docs/api.md "postgres sink"):
 *     spw_ring_init; node s owns SPW_RING_VNODES (1024: with 160 a
 *     shard's share strays by 15%; 1024 keeps it within 5%) points, point
 *     v labelled "s:v" (decimal);
 *   - the C client's key → server map (include/spillway.h "Routing",
 *     docs/protocol.md): spw_ring_build with SPW_RING_CLIENT_VNODES (160)
 *     points a server, point v labelled "host:port#v", so a server keeps
 *     its keys whatever its place in the list.
 *
 * A point is fmix64(FNV-1a 64(label)); a key's point is fmix64(FNV-1a
 * 64(key bytes)) (a record without a key hashes as the empty key); the
 * key belongs to the node owning the first point at or after it, wrapping
 * around (ties: the lower node). A node's points depend only on its
 * label, so adding a node moves only the keys the new node takes: about
 * 1/(N+1). Both maps are documented, and they differ only in their labels
 * and point counts (tests/unit/test_ring.c holds each one's placements).
 */
#ifndef SPW_RING_H
#define SPW_RING_H

#include <stddef.h>
#include <stdint.h>

#define SPW_RING_VNODES 1024
#define SPW_RING_CLIENT_VNODES 160
#define SPW_RING_SHARDS_MAX 256
#define SPW_RING_POINTS_MAX (1u << 24)

typedef struct spw_ring_point {
    uint64_t h;
    uint32_t shard;
} spw_ring_point;

typedef struct spw_ring {
    spw_ring_point *pts; /* sorted by (h, shard) */
    uint32_t npts;
    uint32_t nshards;
} spw_ring;

/* Writes the label of point v of node i into out (at most cap bytes);
 * returns its length (below cap) or -1. */
typedef int (*spw_ring_label_fn)(void *arg, uint32_t node, uint32_t v, char *out, size_t cap);

/* Builds a ring of nnodes (>= 1) nodes with vnodes (>= 1) points each,
 * labelled by label. 0, SPW_EINVAL (bad counts or a label that does not
 * fit) or SPW_ENOMEM (r unchanged). */
int spw_ring_build(spw_ring *r, uint32_t nnodes, uint32_t vnodes, spw_ring_label_fn label, void *arg);
/* The postgres sink's ring of nshards (1 .. SPW_RING_SHARDS_MAX) shards. */
int spw_ring_init(spw_ring *r, uint32_t nshards);
void spw_ring_free(spw_ring *r);
/* The node of a key (key may be NULL when len is 0). */
uint32_t spw_ring_shard(const spw_ring *r, const void *key, size_t len);

#endif
