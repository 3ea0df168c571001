/*
 * The produce service: one request path for every front end (HTTP
 * http/api_events.c, the binary protocol bin/bin_produce.c, and whatever comes
 * next). A front end decodes its request into a spw_produce_in — the
 * stream, who asks, the ack level and priority it asked for, a dedupe key
 * if any, and an iterator over its events — and calls spw_produce_request
 * once. The service does the rest, in this order, the same for everyone:
 *
 *   1. what can never succeed: ack=replicated (501), a partition the
 *      stream does not have (404);
 *   2. admission (admit/admit.h): the priority against the pressure
 *      level, before any event is looked at (refusing must be cheap);
 *   3. validation of every event (docs/api.md "Produce"): for a JSON
 *      stream one JSON object each, within max_event_bytes, its key taken
 *      from an explicit key or from the stream's key field (a string or a
 *      number), UTF-8 text without control characters either way, its
 *      timestamp from the request or the stream's timestamp field; for a
 *      bytes stream its size and key. One bad event refuses the whole
 *      request, naming the event; nothing is appended;
 *   4. dedupe (admit/dedupe.h): an Idempotency-Key or a producer's
 *      sequence is looked up, resolved and compared with the request
 *      (docs/api.md "Idempotency"); a stored request is answered from the
 *      table;
 *   5. the rate limit (admit/ratelimit.h), refunded if the log refuses;
 *   6. submit: records grouped by partition, one batch per partition, the
 *      budget reserved for all at once, coalesced under pressure for
 *      coalesce streams (svc/coalesce.h), appended; the answer comes
 *      when every batch reached the ack level.
 *
 * The answer is ONE spw_produce_res: a status code (svc/status.h: the
 * code word, HTTP status and wire status come from the table), a
 * sentence, where in the request (event index, byte), retry-after, the
 * rate-limit state, and for an accepted request its partitions, offsets,
 * ids (or that it was a duplicate, or which events coalescing replaced).
 * Front ends only frame it (a JSON body and headers, a frame).
 *
 * Below the request sits the submit step (spw_produce_submit*), which
 * internal producers use directly (the sinks' dead-letter streams): no
 * admission or validation there, the caller's records are trusted.
 *
 * Threads: spw_produce_request runs on the caller's I/O loop; the answer
 * of a submitted request is run on that loop again through the front
 * end's post function. No lock is held across the call.
 */
#ifndef SPW_SVC_PRODUCE_H
#define SPW_SVC_PRODUCE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/crc32c.h"
#include "log/log.h"
#include "admit/dedupe.h"
#include "admit/ratelimit.h"
#include "catalog/catalog.h"
#include "catalog/stream.h"
#include "svc/status.h"

struct spw_svc;

/* ---- the request ---- */

/* One event as the front end decoded it. */
typedef struct spw_produce_ev {
    const char *value; /* its bytes; for a JSON stream, text holding one JSON object */
    uint32_t len;
    const uint8_t *key; /* an explicit key (a binary record's key, Spillway-Key) */
    int32_t key_len;    /* -1: none (a JSON stream's key then comes from its key field) */
    int has_ts;         /* ts given by the request (else the stream's field, else now) */
    int64_t ts;
    const spw_kv *headers; /* record headers (Kafka's), stored as given; NULL: none */
    uint32_t header_count;
    uint32_t index; /* for answers: the event's number as the front end counts it */
    size_t base;    /* for answers: byte offset of value in the request */
} spw_produce_ev;

typedef struct spw_produce_res spw_produce_res;

/* The front end's iterator: 1 with the next event in *ev, 0 at the end,
 * or -1 when the request does not decode (res->code, msg and position
 * set, through spw_produce_refuse_at). */
typedef int (*spw_produce_next)(void *src, spw_produce_ev *ev, spw_produce_res *res);
/* Or several at a time: up to max events into ev[0..), their count; 0 at
 * the end, or -1 as above. A front end whose events are decoded already
 * (a PRODUCE frame's records) hands them out SPW_PRODUCE_EVS a call
 * instead of one call through a pointer per event. */
typedef int (*spw_produce_next_many)(void *src, spw_produce_ev *ev, uint32_t max, spw_produce_res *res);
#define SPW_PRODUCE_EVS 64

/* What may follow the JSON object in an event's value. */
enum {
    SPW_PRODUCE_TRAIL_OBJECT, /* nothing but whitespace: else not_an_object (one value, one object) */
    SPW_PRODUCE_TRAIL_LINE,   /* nothing but whitespace: else invalid_json (an NDJSON line) */
};

typedef struct spw_produce_in {
    spw_stream *s;      /* a reference, which the call takes over */
    const char *tenant; /* the authenticated tenant, "" without tokens */
    const char *peer;   /* the client's address (rate limits per ip) */
    int priority;       /* 0..3, or -1: the stream's */
    int ack;            /* a spw_ack, or -1: the stream's */
    uint32_t partition; /* a partition, or UINT32_MAX: route by key */
    uint32_t count_hint; /* events the request holds if known, else 0 */
    /* else at most this many (an NDJSON body's lines), or 0: the records
     * are allocated once for it when its working memory (counted as for
     * count_hint) is within the request's cap, else as they come */
    uint32_t count_bound;
    int trailing;        /* SPW_PRODUCE_TRAIL_* */
    spw_produce_next next;
    spw_produce_next_many next_many; /* used instead of next when set */
    void *src;
    /* dedupe: an Idempotency-Key (HTTP; keyed per tenant), or a producer
     * id and the request's first sequence (binary); neither: none */
    const char *idempotency_key;
    uint64_t producer_id;
    uint32_t producer_seq;
    int supersede_ok; /* the answer can say "superseded" (coalesce.h) */
    int want_parts;   /* the answer lists each event's partition (res.part_of) */
    /* Working memory (docs/operations.md "Memory"): what the request needs
     * per event, from decoding to handing its batches to the log (about
     * SPW_PRODUCE_WORK_PER_EVENT bytes plus the event's size), at most
     * SPW_PRODUCE_WORK_FACTOR x the service's max_request_bytes: a request
     * that would need more is answered 413 body_too_large before it gets
     * it. It is counted, in steps as the events are decoded, with
     * work_add(work, n) — whatever the budget's room: it lives only while
     * spw_produce_request runs, so one request per front-end thread at
     * most — and all given back with work_give before the call returns.
     * work_add NULL: not counted (the cap holds still). */
    void (*work_add)(void *work, uint64_t n);
    void (*work_give)(void *work, uint64_t n);
    void *work;
    /* event sourcing (es/es.h, docs/api.md "Event sourcing"): an expected
     * version (has_expect 0: none given; any given one needs a versioned
     * stream, and a request of one key unless it is "any") */
    int has_expect;
    int expect; /* spw_es_expect */
    uint64_t expected_version;
    /* how the answer of a submitted request reaches the front end: done
     * runs on loop, through post (the front end's "run fn on that loop") */
    void (*post)(void *loop, void (*fn)(void *), void *arg);
    void *loop;
    void (*done)(spw_produce_res *res, void *user);
    void *user;
} spw_produce_in;

/* Working memory of one event beyond its bytes: the validated record
 * (room to double), the submit's copy, its partition, order and id, the
 * encoded record's header at most. */
#define SPW_PRODUCE_WORK_PER_EVENT (3 * sizeof(spw_record) + 2 * sizeof(int32_t) + 2 * sizeof(uint32_t) + 8 + 45)
/* A request's working memory is at most this many times max_request_bytes. */
#define SPW_PRODUCE_WORK_FACTOR 4

/* ---- the answer ---- */

struct spw_produce_res {
    spw_sc code;        /* SPW_SC_OK: accepted (or a duplicate) */
    char msg[512];      /* the sentence of a refusal */
    uint32_t retry_ms;  /* when to retry; 0: not said */
    int at_event;       /* msg is about event `index` of the request ... */
    uint32_t index;
    int at_byte;        /* ... at byte `byte` of the request (ev.base + offset in its value) */
    size_t byte;
    uint32_t n_events;  /* events of the request (as far as decoded when refused) */
    spw_rl_answer rl;   /* the rate limit's answer (rl.limited 0: none applies) */
    /* accepted */
    int duplicate;      /* answered from the dedupe table: nothing appended */
    uint32_t nslots;
    spw_dd_slot *slots; /* per partition written: partition, first_offset, count */
    uint64_t first_ticket; /* event i's id is spw_id_from_ticket(first_ticket + i) ... */
    int ids_known;         /* ... when this is set */
    const uint8_t *superseded; /* NULL, or per event 1 = replaced by coalescing (no offset, no id) */
    uint32_t n_superseded;
    uint32_t *part_of;     /* want_parts: each event's partition, UINT32_MAX superseded */
    /* versioned streams, accepted: each event's version (version_of, in
     * request order), and per key of the request its first version and
     * count, in order of first appearance (vers; keys point into
     * ver_keys). A duplicate carries the versions its original got, read
     * back from the log (NULL when they cannot be: records past the
     * durable end, or removed by retention). */
    uint64_t *version_of;
    uint32_t n_vers;
    struct spw_produce_ver *vers;
    uint8_t *ver_keys;
    int owns_vers; /* the three above are the answer's (freed by spw_produce_res_fini) */
    /* SPW_SC_VERSION_CONFLICT: what was expected, and the key's version */
    int expect;
    uint64_t expected_version;
    uint64_t current_version;
};

typedef struct spw_produce_ver {
    const uint8_t *key;
    uint32_t key_len;
    uint32_t count;
    uint64_t first;
} spw_produce_ver;

/*
 * Serves one produce request. Returns 1 when answered now: *res is the
 * answer (a refusal, or a duplicate's stored outcome); the caller frames
 * it and calls spw_produce_res_fini. Or returns 0: submitted; the answer
 * comes exactly once, later, as in->done(res, in->user) run on in->loop
 * through in->post (res is the service's, valid during that call). Either
 * way in->s now belongs to the service, and nothing the request points to
 * is used after the call returns (events are copied).
 */
int spw_produce_request(struct spw_svc *svc, const spw_produce_in *in, spw_produce_res *res);
void spw_produce_res_fini(spw_produce_res *res);

/*
 * Above the high watermark (admit.h level 3), is a produce of this
 * priority (-1: the stream's) to stream name (sl bytes, not checked yet)
 * held rather than read? A front end that can leave a request unread
 * (the binary protocol: TCP then slows the producer) asks this before
 * reading it; 1 is counted as backpressure. Priority 0 is never held, nor
 * a request to a stream that does not exist (the request answers that).
 */
int spw_produce_hold(struct spw_svc *svc, const char *name, size_t sl, int priority);
/* Does spw_produce_hold hold anything now? Held requests are let go once
 * it does not (pressure below the low watermark). One atomic load. */
int spw_produce_holding(struct spw_svc *svc);

/* Fills res as a refusal with code c about event ev (NULL: the request),
 * at byte offset at of ev's value (SIZE_MAX: no byte); for iterators. */
void spw_produce_refuse_at(spw_produce_res *res, spw_sc c, const spw_produce_ev *ev, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ---- submit: below the request ---- */

/*
 * One produce in flight: the records grouped by partition (FNV-1a of the
 * key mod partitions, round robin without a key, or one fixed partition),
 * one batch per partition, the budget reserved for all of them at once,
 * then appended. slots[k] is partition k's batch; order[slots[k].first_event
 * + j] is the request index of its record j.
 */
typedef struct spw_produce spw_produce;
typedef void (*spw_produce_done)(spw_produce *pr, void *user);

typedef struct spw_produce_part {
    struct spw_produce *pr;
    uint32_t partition;
    uint32_t count;
    uint64_t first_offset;
    uint32_t first_event;
    int stored; /* already in the log (completing a request a crash cut) */
    uint32_t fp; /* keyed requests: fingerprint of its records (spw_produce_fingerprint) */
} spw_produce_part;

struct spw_produce {
    struct spw_svc *svc;
    spw_stream *s;
    _Atomic int pending;
    _Atomic int err; /* 0, or the first append error */
    uint32_t n_events;
    uint32_t n_slots;
    uint64_t t0; /* spw_mono_ns at start */
    uint64_t bytes;
    uint64_t first_ticket; /* event i's id: spw_id_from_ticket(first_ticket + i) */
    int ids_unknown;       /* some partitions were stored by an earlier attempt */
    struct spw_dd_entry *dd; /* dedupe entry to finish, or NULL */
    uint32_t *order; /* in pr's own block, after slots */
    /* Coalesced requests (svc/coalesce.h): events replaced by newer
     * ones for their key before they were written. superseded is NULL,
     * or one byte per request event, 1 = superseded (no offset, no id);
     * slots and order then list only the events written. */
    uint32_t n_superseded;
    uint8_t *superseded;
    uint64_t *version_of; /* versioned streams: each request event's version, else NULL */
    struct spw_produce_ver *vers; /* and per key: first version, count (keys in ver_keys) */
    uint32_t n_vers;
    uint8_t *ver_keys;
    spw_produce_done done;
    void *user;
    spw_produce_part slots[];
};

/*
 * Appends n records (copied: recs and what they point to may go once this
 * returns) to stream s at ack level ack. partition is a partition index or
 * UINT32_MAX to route by key. producer_id/producer_seq go into each batch
 * header (docs/protocol.md). No admission, validation or dedupe: that is
 * spw_produce_request's.
 * Returns 0: done(pr, user) then runs exactly once, on any thread (the
 * caller's for ack none, the flusher's otherwise), with pr->err set; the
 * reference to s now belongs to pr, released by spw_produce_free, and
 * events_in/bytes_in (or rejected disk) are counted before done runs.
 * Or returns an error and nothing was appended (s still the caller's):
 * SPW_EAGAIN the budget is full (503), SPW_EMSGSIZE larger than the budget
 * (413), SPW_EINVAL no records or no such partition, SPW_ENOMEM encoding
 * failed; or a disk refusal (spw_sc_disk says which): SPW_EDISKLIMIT
 * (max_disk_bytes reached), or the error that failed one of the request's
 * partitions, which refuses appends until it recovers.
 * REQUIRES: ack is not SPW_ACK_REPLICATED.
 */
int spw_produce_submit(struct spw_svc *svc, spw_stream *s, const spw_record *recs, uint32_t n, uint32_t partition,
                       spw_ack ack, uint64_t producer_id, uint32_t producer_seq, spw_produce_done done, void *user);
void spw_produce_free(spw_produce *pr);

/* spw_produce_submit with every option. */
typedef struct spw_produce_opts {
    uint32_t partition; /* UINT32_MAX: route by key */
    spw_ack ack;
    uint64_t producer_id;
    uint32_t producer_seq;       /* the request's first sequence number */
    uint64_t idem_key;           /* 0, or the dedupe key (dedupe.h): stored in every batch */
    struct spw_dd_entry *dd;     /* reserved dedupe entry, finished when the request completes */
    const spw_dd_result *stored; /* partitions a cut earlier attempt stored: not appended again */
    int supersede_ok;            /* the answer can say "superseded" (coalesce.h) */
    /* versioned streams: the expectation (es.h spw_es_expect; SPW_ES_ANY:
     * none) of the request's one key, checked with the append under the
     * partition's version lock; a mismatch returns SPW_ECONFLICT with the
     * key's version in *current and appends nothing */
    int expect;
    uint64_t expected_version;
    uint64_t *current;
} spw_produce_opts;
int spw_produce_submit_ex(struct spw_svc *svc, spw_stream *s, const spw_record *recs, uint32_t n,
                          const spw_produce_opts *o, spw_produce_done done, void *user);

/* Finishes a produce the coalescer carried (svc/coalesce.h): dedupe
 * entry, counters, then done. REQUIRES: pr->err, slots and order final. */
void spw__produce_complete(spw_produce *pr);

/* The partition of request event i (as spw_produce_submit routes it). */
uint32_t spw_produce_route(spw_stream *s, const spw_record *v, uint32_t i, uint32_t partition, uint64_t idem_key);

/* The headers' part of spw_produce_fingerprint (produce_dedupe.c). */
uint32_t spw__produce_fingerprint_headers(uint32_t crc, const spw_record *v);

/* The fingerprint of records (CRC32C over each one's key, value and
 * headers, lengths included; not the timestamp), continuing crc: over
 * (key length, value length, header count), key, value, then each
 * header's (key length, value length), key, value. Inline: it runs for
 * every record of a keyed request, most without headers (one call). */
static inline uint32_t spw_produce_fingerprint(uint32_t crc, const spw_record *v)
{
    crc = spw_crc32c_lens_key_value(crc, (uint32_t)v->key_len, v->value_len, v->header_count, v->key,
                                    v->key_len > 0 ? (size_t)v->key_len : 0, v->value, v->value_len);
    return v->header_count ? spw__produce_fingerprint_headers(crc, v) : crc;
}

/* Is a key valid UTF-8 without control characters (so reads can show it
 * as a JSON string)? Every produce requires it. Inline for the common
 * key, 8 to 16 bytes of printable ASCII: its first and last 8 bytes (they
 * may overlap) in two words (SWAR: all of a word's bytes are 0x20..0x7f
 * when none has its high bit set and none below 0x20 borrows); anything
 * else goes the long way (spw__key_text_ok_long). */
int spw__key_text_ok_long(const uint8_t *p, size_t n);
static inline int spw__key_text_ok(const uint8_t *p, size_t n)
{
    if (n >= 8 && n <= 16) {
        const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
        uint64_t x, y;
        memcpy(&x, p, 8);
        memcpy(&y, p + n - 8, 8);
        if (!((x | ((x - ones * 0x20) & ~x) | y | ((y - ones * 0x20) & ~y)) & highs))
            return 1;
    }
    return spw__key_text_ok_long(p, n);
}

/* Registers the produce service's metrics (events and bytes in, per
 * stream too, refusals by reason, duplicates, produce latency) and those
 * of its steps (pressure and watermarks, coalescing, the dedupe table,
 * rate limits). */
struct spw_metrics;
void spw_produce_metrics_register(struct spw_metrics *m, struct spw_svc *svc);

/* Fills svc->dd from the batches of every stream's dedupe window (at start). */
void spw_produce_dedupe_rebuild(struct spw_svc *svc);

#endif
