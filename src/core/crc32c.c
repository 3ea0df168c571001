/*
 * CRC32C: hardware instruction on x86-64 with SSE4.2, table otherwise.
 * The dispatch is decided once (first call) and cached in a function pointer.
 */
#include "core/crc32c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

uint32_t spw__crc32c_sw(uint32_t crc, const void *buf, size_t n)
{
    pthread_once(&table_once, build_table); /* built once, by the first caller */
    const uint8_t *p = buf;
    crc = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc; /* little-endian: low 4 bytes mix with the crc */
        crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
              table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
              table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

#if defined(__x86_64__)
/* The crc32 instruction takes 3 cycles to give its result but can start one
 * per cycle, so one dependent chain runs at a third of the speed the CPU
 * can go. Long buffers (a record batch, docs/formats/log.md) are therefore
 * done as three chains over three adjacent LANE-byte lanes, whose registers
 * are joined after each round: the raw register (no pre/post inversion) is
 * linear over GF(2), so crc(A || B) = shift(crc(A)) ^ crc0(B), where shift
 * runs the register over LANE zero bytes and crc0 starts from 0. shift is
 * a linear map of 32 bits, kept as four byte tables built once with the
 * instruction itself. Short buffers (a record's key and value) use one
 * chain, 8 bytes at a time from any alignment (unaligned loads are cheap
 * here), the tail in 4, 2 and 1 bytes. */
#define LANE 512
static uint32_t lane_shift[4][256];
static pthread_once_t lane_shift_once = PTHREAD_ONCE_INIT;

__attribute__((target("sse4.2"))) static uint32_t zeros_raw(uint32_t c)
{
    uint64_t r = c;
    for (int i = 0; i < LANE / 8; i++)
        r = __builtin_ia32_crc32di(r, 0);
    return (uint32_t)r;
}

__attribute__((target("sse4.2"))) static void build_lane_shift(void)
{
    for (int j = 0; j < 4; j++)
        for (uint32_t v = 0; v < 256; v++)
            lane_shift[j][v] = zeros_raw(v << (8 * j));
}

static inline uint32_t shift_lane(uint32_t c)
{
    return lane_shift[0][c & 0xff] ^ lane_shift[1][(c >> 8) & 0xff] ^ lane_shift[2][(c >> 16) & 0xff] ^
           lane_shift[3][c >> 24];
}

/* The register c (inverted) run over p[0..n): one chain, 32 bytes a turn
 * (the loop's own instructions are what an unrolled loop saves: an
 * event's value, a record's key), then 8, 4, 2 and 1. Inline: the long
 * path below and the record's checksum (spw_crc32c_lens_key_value) share it. */
__attribute__((target("sse4.2"))) static inline __attribute__((always_inline)) uint64_t
crc_chain(uint64_t c, const uint8_t *p, size_t n)
{
    while (n >= 32) {
        uint64_t w0, w1, w2, w3;
        memcpy(&w0, p, 8);
        memcpy(&w1, p + 8, 8);
        memcpy(&w2, p + 16, 8);
        memcpy(&w3, p + 24, 8);
        c = __builtin_ia32_crc32di(c, w0);
        c = __builtin_ia32_crc32di(c, w1);
        c = __builtin_ia32_crc32di(c, w2);
        c = __builtin_ia32_crc32di(c, w3);
        p += 32;
        n -= 32;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        n -= 8;
    }
    if (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        c = __builtin_ia32_crc32si((uint32_t)c, w);
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        c = __builtin_ia32_crc32hi((uint32_t)c, w);
        p += 2;
        n -= 2;
    }
    if (n)
        c = __builtin_ia32_crc32qi((uint32_t)c, *p);
    return c;
}

__attribute__((target("sse4.2"))) uint32_t spw__crc32c_hw(uint32_t crc, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    uint64_t c = ~crc;
    if (n >= 3 * LANE) {
        /* built once, by the first caller; the others wait for it */
        pthread_once(&lane_shift_once, build_lane_shift);
        do {
            uint64_t c1 = 0, c2 = 0;
            for (size_t i = 0; i < LANE; i += 8) {
                uint64_t w0, w1, w2;
                memcpy(&w0, p + i, 8);
                memcpy(&w1, p + LANE + i, 8);
                memcpy(&w2, p + 2 * LANE + i, 8);
                c = __builtin_ia32_crc32di(c, w0);
                c1 = __builtin_ia32_crc32di(c1, w1);
                c2 = __builtin_ia32_crc32di(c2, w2);
            }
            c = shift_lane(shift_lane((uint32_t)c) ^ (uint32_t)c1) ^ (uint32_t)c2;
            p += 3 * LANE;
            n -= 3 * LANE;
        } while (n >= 3 * LANE);
    }
    return ~(uint32_t)crc_chain(c, p, n);
}

/* Three little-endian 32-bit words (x86-64 is little-endian: a | b << 32 is
 * the bytes of a then b): two instructions instead of 12 bytes built and a
 * call. */
__attribute__((target("sse4.2"))) static uint32_t le32x3_hw(uint32_t crc, uint32_t a, uint32_t b, uint32_t c)
{
    uint64_t r = __builtin_ia32_crc32di(~crc, (uint64_t)a | (uint64_t)b << 32);
    return ~__builtin_ia32_crc32si((uint32_t)r, c);
}

/* spw_crc32c_lens_key_value's instruction path: one function, no dispatch
 * between its parts. */
__attribute__((target("sse4.2"))) static uint32_t lkv_hw(uint32_t crc, uint32_t a, uint32_t b, uint32_t c,
                                                         const void *k, size_t kn, const void *v, size_t vn)
{
    uint64_t r = __builtin_ia32_crc32di(~crc, (uint64_t)a | (uint64_t)b << 32);
    r = __builtin_ia32_crc32si((uint32_t)r, c);
    r = crc_chain(r, k, kn);
    return ~(uint32_t)crc_chain(r, v, vn);
}

int spw__crc32c_hw_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
}
#else
uint32_t spw__crc32c_hw(uint32_t crc, const void *buf, size_t n) { return spw__crc32c_sw(crc, buf, n); }
int spw__crc32c_hw_available(void) { return 0; }
#endif

uint32_t spw_crc32c_le32x3(uint32_t crc, uint32_t a, uint32_t b, uint32_t c)
{
#if defined(__x86_64__)
    static atomic_int hw = -1;
    int h = atomic_load_explicit(&hw, memory_order_relaxed);
    if (h < 0) {
        h = spw__crc32c_hw_available();
        atomic_store_explicit(&hw, h, memory_order_relaxed);
    }
    if (h)
        return le32x3_hw(crc, a, b, c);
#endif
    uint8_t w[12] = {(uint8_t)a, (uint8_t)(a >> 8), (uint8_t)(a >> 16), (uint8_t)(a >> 24),
                     (uint8_t)b, (uint8_t)(b >> 8), (uint8_t)(b >> 16), (uint8_t)(b >> 24),
                     (uint8_t)c, (uint8_t)(c >> 8), (uint8_t)(c >> 16), (uint8_t)(c >> 24)};
    return spw__crc32c_sw(crc, w, sizeof w);
}

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);
static _Atomic(crc_fn) impl;

uint32_t spw_crc32c_extend(uint32_t crc, const void *buf, size_t n)
{
    crc_fn f = atomic_load_explicit(&impl, memory_order_relaxed);
    if (!f) {
        f = spw__crc32c_hw_available() ? spw__crc32c_hw : spw__crc32c_sw;
        atomic_store_explicit(&impl, f, memory_order_relaxed);
    }
    return f(crc, buf, n);
}

/* The table path of spw_crc32c_lens_key_value. */
static uint32_t lkv_sw(uint32_t crc, uint32_t a, uint32_t b, uint32_t c, const void *k, size_t kn, const void *v,
                       size_t vn)
{
    crc = spw_crc32c_le32x3(crc, a, b, c);
    crc = spw__crc32c_sw(crc, k, kn);
    return spw__crc32c_sw(crc, v, vn);
}

typedef uint32_t (*lkv_fn)(uint32_t, uint32_t, uint32_t, uint32_t, const void *, size_t, const void *, size_t);
static _Atomic(lkv_fn) lkv_impl;

uint32_t spw_crc32c_lens_key_value(uint32_t crc, uint32_t a, uint32_t b, uint32_t c, const void *k, size_t kn,
                                   const void *v, size_t vn)
{
    lkv_fn f = atomic_load_explicit(&lkv_impl, memory_order_relaxed);
    if (!f) {
#if defined(__x86_64__)
        f = spw__crc32c_hw_available() ? lkv_hw : lkv_sw;
#else
        f = lkv_sw;
#endif
        atomic_store_explicit(&lkv_impl, f, memory_order_relaxed);
    }
    return f(crc, a, b, c, k, kn, v, vn);
}
