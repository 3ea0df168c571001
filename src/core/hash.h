/*
 * The two hashes the code base uses, in one place: FNV-1a 64 (stable and
 * documented: key → partition, docs/api.md; client routing,
 * docs/protocol.md) and murmur3's fmix64 finalizer (to spread FNV's
 * output over every bit before taking buckets, stripes or ring positions).
 */
#ifndef SPW_HASH_H
#define SPW_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SPW_FNV64_OFFSET 0xcbf29ce484222325ull

/* FNV-1a 64 of n bytes at p, continuing from h (SPW_FNV64_OFFSET to start). */
static inline uint64_t spw_fnv1a64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    size_t i = 0;
    /* Four bytes a turn: the same hash, a byte at a time, with a quarter
     * of the loop's own instructions (every produced key is hashed). */
    for (; i + 4 <= n; i += 4) {
        h = (h ^ c[i]) * 0x100000001b3ull;
        h = (h ^ c[i + 1]) * 0x100000001b3ull;
        h = (h ^ c[i + 2]) * 0x100000001b3ull;
        h = (h ^ c[i + 3]) * 0x100000001b3ull;
    }
    for (; i < n; i++) {
        h ^= c[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static inline uint64_t spw_fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

#endif
