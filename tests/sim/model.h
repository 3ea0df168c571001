/*
 * The model checker the crash tests share: what a run promised, and a
 * check of what survived against it (docs/architecture.md, "Testing
 * durability").
 *
 * A run tells the model, per (partition, offset) — a partition is any
 * 32-bit id the test chooses, a stream's partition or a PostgreSQL shard:
 *   simmodel_appended  an append was accepted with this content at this
 *                      offset (content: a 64-bit hash the test computes)
 *   simmodel_acked     its acknowledgement said durable (ack >= fsync)
 *   simmodel_seen      a reader saw this content at this offset;
 *                      beyond_durable says the reader saw it while it
 *                      was not yet durable (readers must see only
 *                      durable data: such a record may be lost later)
 * Then, after the crash and recovery, what a reader finds:
 *   simmodel_found     a record read back at this offset
 *   simmodel_damaged   [from, to) could not be read (SPW_ECORRUPT);
 *                      how: SIMMODEL_REPORTED (recovery reported damage),
 *                      SIMMODEL_UNREPORTED, or SIMMODEL_UNREPORTED_KNOWN
 *                      (unreported, of a kind the test knows the log
 *                      does not report yet: counted apart)
 * and simmodel_check compares:
 *   lost        an acknowledged record is not found at its offset
 *   wrong       an offset holds content other than what was appended
 *               there, or something where nothing was appended
 *   duplicated  a content found at more than one offset, or one offset
 *               found more than once (unless duplicates are allowed:
 *               at-least-once deliveries)
 *   seen_lost   a record a reader saw while durable is gone or changed
 *   seen_undurable  the same for records seen beyond the durable end
 *   unreported  damaged offsets without a recovery report
 * Every count but seen_undurable, unreported_known, lost_known,
 * seen_known and lost_damaged is a violation; simmodel_check prints the
 * first few of each kind.
 *
 * Thread-safe: one mutex. simmodel_found_reset forgets what was found, so
 * one run can be checked against several readers (the log, a consumer
 * group's deliveries, a sink's rows).
 */
#ifndef SPW_TEST_MODEL_H
#define SPW_TEST_MODEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct simmodel simmodel;

typedef struct simmodel_result {
    uint64_t appended, acked, seen, found, damaged; /* what was tracked */
    uint64_t lost, wrong, duplicated, seen_lost, seen_undurable, unreported, unreported_known;
    uint64_t lost_known; /* acknowledged, unreadable inside a range marked SIMMODEL_UNREPORTED_KNOWN, or
                          * lost at or after a simmodel_known_from offset */
    uint64_t seen_known; /* seen while durable, lost or changed at or after a simmodel_known_from offset */
    uint64_t promised, promised_acked; /* simmodel_promised */
    uint64_t lost_damaged; /* acknowledged, lost inside a range simmodel_corrupted hit and recovery reported */
} simmodel_result;

enum { SIMMODEL_REPORTED = 1, SIMMODEL_UNREPORTED = 0, SIMMODEL_UNREPORTED_KNOWN = 2 };

simmodel *simmodel_new(const char *name);
void simmodel_free(simmodel *m);

/* FNV-1a of a record's key and value: the content the model compares. */
uint64_t simmodel_hash(const void *key, size_t key_len, const void *value, size_t value_len);

void simmodel_appended(simmodel *m, uint32_t part, uint64_t offset, uint64_t hash);
void simmodel_acked(simmodel *m, uint32_t part, uint64_t offset);
void simmodel_seen(simmodel *m, uint32_t part, uint64_t offset, uint64_t hash, int beyond_durable);

void simmodel_found(simmodel *m, uint32_t part, uint64_t offset, uint64_t hash);
void simmodel_damaged(simmodel *m, uint32_t part, uint64_t from, uint64_t to, int how);
void simmodel_found_reset(simmodel *m);
/* Forgets everything about offsets >= from of part (after a check judged
 * them: a recovery ended there and new appends will reuse them). */
void simmodel_forget_from(simmodel *m, uint32_t part, uint64_t from);

/* Promises by content, for records whose sender does not learn their
 * offset (or not reliably: an answer that never arrived): a record with
 * content hash was sent; acked says it was acknowledged (ack >= fsync).
 * The check then wants an acked content found exactly once (somewhere:
 * not found is lost), and any promised content found at most once (unless
 * duplicates are allowed); found content that was promised is not wrong
 * at an offset where nothing was appended. Promises survive
 * simmodel_found_reset. */
void simmodel_promised(simmodel *m, uint64_t hash, int acked);

/* Media damage the test made itself (zeroed sectors, flipped bits), as
 * the offsets it hit: an acknowledged record there may be lost without a
 * violation (counted as lost_damaged) — but only if the range was also
 * reported (simmodel_damaged with SIMMODEL_REPORTED); content promised
 * only by hash cannot be placed, so the test also declares it:
 * simmodel_promise_damaged says that content was in a damaged range. */
void simmodel_corrupted(simmodel *m, uint32_t part, uint64_t from, uint64_t to);
/* (A promised record found inside such a range where nothing was appended
 * is a copy whose dedupe key the damage hid from a retry: neither wrong
 * nor counted as a duplicate.) */
void simmodel_promise_damaged(simmodel *m, uint64_t hash);

/* Known damage: from offset from of part on, the test knows the code under
 * test may lose or change records for a reason it names (a finding being
 * fixed); lost and seen_lost records there are counted as lost_known and
 * seen_known, not as violations. The lowest from per part counts. */
void simmodel_known_from(simmodel *m, uint32_t part, uint64_t from);

/* Compares; fills *out. Returns the number of violations (0: all held). */
uint64_t simmodel_check(simmodel *m, int allow_duplicates, simmodel_result *out);
/* Adds b's counts to a. */
void simmodel_result_add(simmodel_result *a, const simmodel_result *b);
uint64_t simmodel_violations(const simmodel_result *r);

#endif
