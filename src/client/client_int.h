/*
 * The C client's internals that tests reach (tests/unit/test_client_seq.c,
 * tests/integration/test_idempotency.c); not part of include/spillway.h.
 *
 * Producer sequences (docs/protocol.md "Idempotence"): a producer numbers
 * its records with a 32-bit sequence under its producer id, and the server
 * remembers (producer id, sequence of a request's first record) for the
 * stream's dedupe window. So a sequence must never come round again under
 * the same id: before a batch's records would run past 2^32 - 1, the
 * producer takes a new random producer id and starts again at 0.
 */
#ifndef SPW_CLIENT_INT_H
#define SPW_CLIENT_INT_H

#include <stdint.h>

#include "spillway.h"

/*
 * Assigns a batch of count records (count >= 1) its producer id and first
 * sequence from the producer's state (*pid, *next): the batch gets
 * [*next, *next + count) under *pid, unless that would pass UINT32_MAX:
 * then *pid becomes new_id(arg) (never 0, never the old id) and the batch
 * starts at 0. *next is left one past the batch. Returns 1 when it took
 * a new id, else 0.
 */
int spw__producer_seq_take(uint64_t *pid, uint32_t *next, uint32_t count, uint64_t (*new_id)(void *arg), void *arg,
                           uint64_t *out_pid, uint32_t *out_seq);

/* Tests: the sequence the producer's next batch starts from. */
void spw__producer_set_next_seq(spillway_producer *p, uint32_t seq);

/* The producer id the producer's next batch would use. */
uint64_t spw__producer_id(spillway_producer *p);
/* Tests: the producer id its next batch uses (not 0). */
void spw__producer_set_id(spillway_producer *p, uint64_t id);

/* The server (index into the servers string) a record with this key goes
 * to (key_len -1: no key, round robin). */
uint32_t spw__producer_route(spillway_producer *p, const void *key, int32_t key_len);
/* The connect_attempts_max in force (the default resolved by the server count). */
uint32_t spw__producer_connect_attempts_max(const spillway_producer *p);

#endif
