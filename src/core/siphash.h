/*
 * SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
 * 2012), 64-bit output, written from the paper's description: a keyed hash
 * whose outputs an attacker without the 128-bit key (k0, k1) can neither
 * predict nor make collide. Used where a client's input picks a hash
 * value another party depends on: the tokens table's lookup (svc/auth.c,
 * a random key per table) and the dedupe keys (admit/dedupe.c, the data
 * directory's dedupe secret, docs/formats/dedupe-secret.md). k0 and k1 are
 * the key's two halves read little-endian; tests/unit/test_tokens.c checks
 * the paper's test vectors.
 */
#ifndef SPW_SIPHASH_H
#define SPW_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t spw_siphash24(uint64_t k0, uint64_t k1, const void *data, size_t len);

#endif
