/* Little-endian loads and stores of fixed-width integers (all formats are LE). */
#ifndef SPW_ENDIAN_H
#define SPW_ENDIAN_H

#include <stdint.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "spillway's formats are written for little-endian hosts; add byte swaps here to port"
#endif

static inline void spw_put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void spw_put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void spw_put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint16_t spw_get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t spw_get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t spw_get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

#endif
