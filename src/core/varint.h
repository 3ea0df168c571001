/*
 * Unsigned LEB128 varints (7 bits a byte, low group first, high bit = more)
 * and zigzag for signed values, as in protobuf. At most 10 bytes for 64 bits.
 * Byte-exact definition: docs/formats/log.md, "Varints".
 */
#ifndef SPW_VARINT_H
#define SPW_VARINT_H

#include <stddef.h>
#include <stdint.h>

#define SPW_VARINT_MAX 10

static inline size_t spw_varint_put(uint8_t *p, uint64_t v)
{
    /* One or two bytes (a record's lengths, offsets and deltas, most
     * often) without the loop. */
    if (v < 0x80) {
        p[0] = (uint8_t)v;
        return 1;
    }
    if (v < 0x4000) {
        p[0] = (uint8_t)(v | 0x80);
        p[1] = (uint8_t)(v >> 7);
        return 2;
    }
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static inline size_t spw_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Decodes from [p, end). Returns bytes consumed, or 0 if the varint is
 * truncated, longer than 10 bytes, or overflows 64 bits. */
static inline size_t spw_varint_get(const uint8_t *p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < SPW_VARINT_MAX && p + i < end; i++) {
        uint64_t b = p[i];
        if (i == 9 && b > 1)
            return 0; /* would overflow 64 bits */
        v |= (b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return i + 1;
        }
    }
    return 0;
}

static inline uint64_t spw_zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static inline int64_t spw_unzigzag(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }

#endif
