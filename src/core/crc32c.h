/*
 * CRC32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), the
 * checksum of every record batch (docs/formats/log.md). Uses the SSE4.2
 * crc32 instruction when the CPU has it and a slicing-by-8 table otherwise;
 * both give identical results (tests/unit/test_crc32c.c checks this).
 *
 * spw_crc32c_extend(crc, ...) continues a running checksum: start from 0;
 * spw_crc32c(buf, n) == spw_crc32c_extend(0, buf, n).
 */
#ifndef SPW_CRC32C_H
#define SPW_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t spw_crc32c_extend(uint32_t crc, const void *buf, size_t n);
static inline uint32_t spw_crc32c(const void *buf, size_t n) { return spw_crc32c_extend(0, buf, n); }

/* spw_crc32c_extend over the 12 bytes of a, b and c, each little-endian
 * (a record's lengths in a dedupe fingerprint: one call per record). */
uint32_t spw_crc32c_le32x3(uint32_t crc, uint32_t a, uint32_t b, uint32_t c);

/* spw_crc32c_le32x3(crc, a, b, c), then spw_crc32c_extend over k[0..kn) and
 * v[0..vn), in one call: a dedupe fingerprint's record without headers
 * (its lengths, key and value). k and v may be NULL when their n is 0. */
uint32_t spw_crc32c_lens_key_value(uint32_t crc, uint32_t a, uint32_t b, uint32_t c, const void *k, size_t kn,
                                   const void *v, size_t vn);

/* The two implementations, exposed so tests can compare them. */
uint32_t spw__crc32c_sw(uint32_t crc, const void *buf, size_t n);
uint32_t spw__crc32c_hw(uint32_t crc, const void *buf, size_t n); /* REQUIRES: spw__crc32c_hw_available() */
int spw__crc32c_hw_available(void);

#endif
