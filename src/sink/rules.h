/*
 * The sink rules: the pure parts of the sink loop (src/sink/sink_worker.c and
 * sink_deliver.c drive them): when a batch is due, how long to back off,
 * how a batch is delivered — written through the kind, bisected when the
 * target rejects records, bad records dead-lettered — and the progress
 * file's text form
 * (docs/formats/sink-progress.md). Nothing here does I/O or takes locks,
 * so tests/unit/test_sink.c drives it with fakes.
 */
#ifndef SPW_SINK_RULES_H
#define SPW_SINK_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* What a kind's write callback answers (sink.h). */
enum {
    SPW_SINK_OK = 0,     /* every record delivered */
    SPW_SINK_RETRY = 1,  /* the target is down or busy: the same records again later */
    SPW_SINK_REJECT = 2, /* the target refused (some of) these records as bad data */
};

typedef struct spw_sink_batch_cfg {
    uint32_t max_events; /* 1 .. 1,000,000 (default 5000) */
    uint64_t max_bytes;  /* keys + values (default 4 MiB) */
    uint32_t max_wait_ms; /* a partial batch waits at most this long (default 200) */
} spw_sink_batch_cfg;

/* Is a batch of count records and bytes bytes, the oldest waiting age_ms,
 * to be written now? Full by events or bytes, or old enough. */
int spw_sink_batch_due(const spw_sink_batch_cfg *c, uint32_t count, uint64_t bytes, uint64_t age_ms);

/* The wait before retry number attempt (0 = first): d = min(max_ms,
 * initial_ms << attempt), then a uniform draw from [d/2, d] using rnd
 * ("equal jitter": never less than half, so retries stay spaced). */
uint64_t spw_sink_backoff_ms(uint64_t initial_ms, uint64_t max_ms, uint32_t attempt, uint64_t rnd);

/* The delivery of one batch of n records, indexes 0..n-1 (see spw_sink_deliver). */
typedef struct spw_sink_deliver_ops {
    /* Writes records [from, from+n): SPW_SINK_*. *done (preset 0) may
     * say how many leading records reached the target even when the
     * answer is RETRY or REJECT; err gets the target's sentence. */
    int (*write)(void *arg, uint32_t from, uint32_t n, uint32_t *done, char *err, size_t cap);
    /* Record i is bad (the target rejected it alone): dead-letter it with
     * err. 0, or an error (then waited on and tried again). */
    int (*dead)(void *arg, uint32_t i, const char *err);
    /* Records [0, upto) are delivered or dead-lettered: commit. 0 or an
     * error (then waited on and tried again). */
    int (*progress)(void *arg, uint32_t upto);
    /* Something failed (err says what): wait before attempt number
     * attempt. Returns nonzero to give up (the sink is stopping). */
    int (*wait)(void *arg, uint32_t attempt, const char *err);
} spw_sink_deliver_ops;

/*
 * Delivers n records: writes windows of them, starting with all n; a
 * rejected window is halved from its first undelivered record until a
 * window of one is rejected, which is dead-lettered; each success doubles
 * the window again (up to n). So k bad records among n cost about
 * k * log2(n) extra writes, and every good record is written once unless
 * a write reports it undelivered. RETRY answers wait (ops->wait) and write
 * the same window again. Progress is committed after every step that
 * delivered or dead-lettered something. Returns 0 when all n are done, or
 * SPW_ECANCELED when wait said stop (progress says how far it got).
 */
int spw_sink_deliver(const spw_sink_deliver_ops *ops, void *arg, uint32_t n);

/* Commits progress for [0, upto) after a write delivered all of it
 * outside spw_sink_deliver (a pipelined write's end), waiting out
 * failures as spw_sink_deliver does: 0, or SPW_ECANCELED when wait said
 * stop. */
int spw_sink_commit(const spw_sink_deliver_ops *ops, void *arg, uint32_t upto);

/* Progress file (docs/formats/sink-progress.md): the incarnation of the
 * stream the positions belong to (catalog/catalog.h), and next[i], partition
 * i's next offset to deliver. encode appends the text (version 2) to out;
 * parse reads version 1 (incarnation 0) or 2, returns 0 and fills
 * *incarnation and next[0..*n) (at most cap), or SPW_ECORRUPT. */
int spw_sink_progress_encode(spw_buf *out, uint64_t incarnation, const uint64_t *next, uint32_t n);
int spw_sink_progress_parse(const char *text, size_t len, uint64_t *incarnation, uint64_t *next, uint32_t cap,
                            uint32_t *n);

#endif
