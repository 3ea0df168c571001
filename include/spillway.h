/*
 * Spillway's C client library: a batching, asynchronous producer and a
 * simple synchronous client for fetch and metadata, speaking the binary
 * protocol (docs/protocol.md) to one or more `spillway serve` nodes.
 * Link with `pkg-config --cflags --libs spillway` (libspillway.so, or
 * libspillway.a with --static). Every public name is spillway_* or
 * SPILLWAY_*.
 *
 * Conventions (as libuv's):
 *  - Handles are opaque; each has a constructor and a destructor, and the
 *    caller owns it until the destructor returns.
 *  - Bytes are pointer + length; nothing needs to be NUL-terminated except
 *    the server list and stream names.
 *  - Every fallible call returns 0 (or a count) or a negative error:
 *    -errno for system errors (connection refused, ...), SPILLWAY_ERR_* below,
 *    and for an answer of the server the negative of its status, which
 *    mirrors HTTP: SPILLWAY_ERR_NOT_FOUND is -404. spillway_errstr names them all.
 *  - If a call returns an error, no callback runs for what it was given.
 *
 * Delivery guarantee: at least once. A batch whose connection is lost
 * before its answer arrives is sent again after reconnecting; the server
 * may already have stored it; the producer id and sequence numbers every
 * batch carries (fixed at its first send) let the server answer such a
 * resend from its dedupe table instead of storing it again, within the
 * stream's dedupe window (docs/protocol.md "Idempotence"). Before its
 * 32-bit sequence would wrap, a producer takes a new random producer id
 * and starts again at 0, so no (id, sequence) is ever used twice.
 *
 * Routing: a record with a key goes to one server by consistent hashing
 * (a ring of 160 virtual nodes per server; positions are 64-bit FNV-1a of
 * "host:port#i" and of the key, each passed through the murmur3 fmix64
 * finalizer; a key belongs to the first position at or after its hash,
 * wrapping). Adding a server moves about 1/N of the keys. On that server
 * the stream's partition is chosen by the key (same key, same partition).
 * Records without a key go round robin over the servers.
 *
 * A server that is down (its last connect round failed: refused, timed
 * out, no address, TLS handshake failed): records without a key are sent
 * to the other servers instead (round robin over those not down; the
 * batches already queued for it move too, so one sent before the loss may
 * be stored twice, once on each: at least once). Records with a key are
 * never sent to another server (that would break the key's order and its
 * place): the producer retries the connection with backoff
 * (backoff_ms .. backoff_max_ms), and after connect_attempts_max failed
 * rounds in a row fails the server's queued records with the last connect
 * error (-ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH, SPILLWAY_ERR_TLS); from
 * then on its records fail so as they are queued (a record queued while a
 * new connect is tried waits for that try), until a connect succeeds.
 * spillway_delivery.server names the server of a record,
 * spillway_producer_server_error why it is down.
 */
#ifndef SPILLWAY_H
#define SPILLWAY_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ---- */

#define SPILLWAY_ERR_INVALID (-EINVAL)      /* bad argument */
#define SPILLWAY_ERR_NOMEM (-ENOMEM)
#define SPILLWAY_ERR_TIMEOUT (-ETIMEDOUT)   /* not delivered / answered in time */
#define SPILLWAY_ERR_CANCELED (-ECANCELED)  /* producer closed before delivery */
#define SPILLWAY_ERR_AGAIN (-EAGAIN)        /* buffer full, from a delivery callback */
#define SPILLWAY_ERR_PROTOCOL (-EPROTO)     /* the peer broke the protocol */
#define SPILLWAY_ERR_BAD_REQUEST (-400)
#define SPILLWAY_ERR_UNAUTHORIZED (-401)    /* no token, or not a valid one (config.token / spillway_client_auth) */
#define SPILLWAY_ERR_FORBIDDEN (-403)       /* the token may not do this on this stream */
#define SPILLWAY_ERR_NOT_FOUND (-404)       /* no such stream or partition */
#define SPILLWAY_ERR_REQUEST_TIMEOUT (-408)
#define SPILLWAY_ERR_CONFLICT (-409)        /* sequence_reused: this (producer id, sequence) stored other records;
                                          version_conflict: spillway_client_append's key is at another version */
#define SPILLWAY_ERR_TOO_LARGE (-413)       /* record over max_event_bytes, frame or batch too large */
#define SPILLWAY_ERR_OUT_OF_RANGE (-416)    /* fetch offset outside the partition */
#define SPILLWAY_ERR_REPLICATION_REJECTED (-422) /* ack=replicated: durable on the server, but its replica's
                                                    target refused a record (dead-lettered); never retried */
#define SPILLWAY_ERR_RATE_LIMITED (-429)    /* retried by the producer */
#define SPILLWAY_ERR_INTERNAL (-500)
#define SPILLWAY_ERR_NOT_IMPLEMENTED (-501) /* not sent by this server version (kept for older servers) */
#define SPILLWAY_ERR_OVERLOADED (-503)      /* retried by the producer (replication_unavailable too) */
#define SPILLWAY_ERR_REPLICATION_TIMEOUT (-504) /* ack=replicated: durable on the server, not confirmed by its
                                                   replica in time (a retry with the same sequence appends nothing) */
#define SPILLWAY_ERR_DISK (-507)            /* disk limit or disk failure */
#define SPILLWAY_ERR_TLS (-1000)            /* TLS: the CA file did not load, or the handshake failed */

/* A static sentence for any error this library returns. */
const char *spillway_errstr(int err);

/* ---- acknowledgement levels (docs/operations.md "Durability levels") ---- */

enum {
    SPILLWAY_ACK_LEVEL_NONE = 0,       /* after validation, before any write */
    SPILLWAY_ACK_LEVEL_WRITTEN = 1,    /* after write(2): survives a process crash */
    SPILLWAY_ACK_LEVEL_FSYNC = 2,      /* after fdatasync: survives power loss */
    SPILLWAY_ACK_LEVEL_REPLICATED = 3, /* needs a replicated backend (else -501) */
    SPILLWAY_ACK_LEVEL_DEFAULT = 255,  /* the stream's default */
};

#define SPILLWAY_TS_NOW INT64_MIN /* let the server stamp the record (or read the stream's timestamp field) */

/* ---- producer ---- */

typedef struct spillway_producer spillway_producer;

/* What a delivery callback learns about one record. Pointers are valid
 * during the callback only. */
typedef struct spillway_delivery {
    int status;         /* 0, or a negative error: then partition/offset are 0 */
    const char *stream; /* NUL-terminated */
    uint32_t partition;
    uint64_t offset;
    void *opaque; /* as given to spillway_producer_send */
    uint32_t server; /* the server it went to (or last waited for): its index in the servers list */
} spillway_delivery;

/* Runs on the producer's I/O thread, once per record spillway_producer_send
 * accepted, in no particular order across servers. It must not block for
 * long and must not call spillway_producer_flush or spillway_producer_close. */
typedef void (*spillway_delivery_cb)(void *cb_opaque, const spillway_delivery *d);

typedef struct spillway_producer_config {
    uint32_t linger_ms;           /* wait this long for a batch to fill (default 5) */
    uint32_t batch_bytes;         /* send a batch once it is this big (default 256 KiB) */
    uint32_t max_in_flight;       /* unanswered batches per server (default 16) */
    uint64_t buffer_bytes;        /* records accepted but not yet delivered; send blocks past it (default 64 MiB) */
    uint32_t delivery_timeout_ms; /* fail a record not delivered within this (default 120000) */
    uint32_t backoff_ms;          /* first reconnect delay, doubled up to backoff_max_ms (default 50) */
    uint32_t backoff_max_ms;      /* (default 2000) */
    uint32_t connect_timeout_ms;  /* (default 5000) */
    int priority;                 /* 0 (most important) .. 3, or -1 for the stream's default (default -1) */
    spillway_delivery_cb on_delivery;  /* may be NULL */
    void *opaque;                 /* passed to on_delivery */
    const char *token;            /* bearer token sent (AUTH) first on every connection; NULL or "": none.
                                     Copied by spillway_producer_new. Without a valid one, a server with tokens
                                     fails the records with SPILLWAY_ERR_UNAUTHORIZED (or SPILLWAY_ERR_FORBIDDEN) */
    const char *tls_ca_file;      /* non-NULL: every connection speaks TLS (1.2 or later), the server's certificate
                                     verified against this PEM file of CA certificates ("": the system's) and its
                                     name against the host of the address; copied. A server that fails the check
                                     is not written to (it is down: "Routing"). NULL: plain TCP (default) */
    int stop_on_error;            /* 1: the first record that fails (an error answer, a delivery timeout)
                                     stops the producer: every record not yet written to a server fails
                                     with SPILLWAY_ERR_CANCELED and spillway_producer_send returns SPILLWAY_ERR_CANCELED,
                                     until a spillway_producer_flush returns 0 (every record answered; one
                                     that times out keeps the stop). With max_in_flight 1 nothing sent
                                     after the failed batch is delivered, so a resend from the first
                                     failed record keeps the order (default 0: later batches go on) */
    uint32_t connect_attempts_max; /* failed connect rounds in a row after which a server's queued records fail
                                      with the connect error ("Routing" above). 0: none, records wait for
                                      delivery_timeout_ms. Default SPILLWAY_CONNECT_ATTEMPTS_DEFAULT: 8 (about
                                      7 s with the default backoff) with several servers, 0 with one (a single
                                      server's restart is ridden out up to delivery_timeout_ms) */
} spillway_producer_config;

#define SPILLWAY_CONNECT_ATTEMPTS_DEFAULT UINT32_MAX

/* Fills c with the defaults. */
void spillway_producer_config_init(spillway_producer_config *c);

/*
 * Creates a producer for the servers "host:port[,host:port...]" (at most
 * 64; a host is a name, resolved with getaddrinfo at every connect, IPv4
 * and IPv6 addresses tried in the resolver's order, or an IPv4 address)
 * and starts its I/O thread. Connections are made lazily and remade
 * after loss; the lookups run on the I/O thread. c may be NULL for the
 * defaults; it is copied. *out is the caller's until spillway_producer_close.
 * Returns 0, SPILLWAY_ERR_INVALID (bad list or config) or -errno.
 */
int spillway_producer_new(const char *servers, const spillway_producer_config *c, spillway_producer **out);

/*
 * Queues one record for stream (1-128 bytes, NUL-terminated). key_len -1
 * means no key (key may be NULL); ts is ms since the Unix epoch or
 * SPILLWAY_TS_NOW; ack one of SPILLWAY_ACK_LEVEL_*. key and value are copied before
 * this returns. Blocks while buffer_bytes are outstanding (at most
 * delivery_timeout_ms: then SPILLWAY_ERR_TIMEOUT; from a delivery callback it
 * returns SPILLWAY_ERR_AGAIN instead of blocking). On 0 the delivery callback
 * runs exactly once for the record, with opaque.
 */
int spillway_producer_send(spillway_producer *p, const char *stream, const void *key, int32_t key_len, const void *value,
                      size_t value_len, int64_t ts, int ack, void *opaque);

/* Sends what is lingering and waits until every record sent so far has
 * had its callback. Returns 0, or SPILLWAY_ERR_TIMEOUT after timeout_ms. Ends a
 * stop (stop_on_error) either way. */
int spillway_producer_flush(spillway_producer *p, uint32_t timeout_ms);
/* Thread-safe, from any thread: a flush in progress, and every later one,
 * returns SPILLWAY_ERR_CANCELED at once (records still outstanding are then
 * failed by spillway_producer_close). For a caller that must stop a flush
 * without waiting for it; the producer is good for nothing but close
 * afterwards. */
void spillway_producer_interrupt(spillway_producer *p);

/* Flushes for up to timeout_ms, then fails what is left with
 * SPILLWAY_ERR_CANCELED (callbacks run before this returns), stops the thread
 * and frees p. */
void spillway_producer_close(spillway_producer *p, uint32_t timeout_ms);

/* Connections made again after a loss, since creation (for tests and metrics). */
uint64_t spillway_producer_reconnects(spillway_producer *p);
/* Why connecting failed, while a server the producer needs is not
 * connected: 0 when none has failed since it last connected; else the
 * last attempt's error (-ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH for a
 * name that does not resolve, SPILLWAY_ERR_TLS, ...) and its sentence in
 * why (cap bytes; may be NULL). Records of a key keep waiting, retried,
 * until connect_attempts_max failed rounds or their delivery timeout
 * ("Routing"): this says why meanwhile. */
int spillway_producer_connect_error(spillway_producer *p, char *why, size_t cap);
/* The same for one server, by its index in the servers list (0 also for
 * an index past the list): 0 while it is connected or not yet tried. */
int spillway_producer_server_error(spillway_producer *p, uint32_t server, char *why, size_t cap);

/* ---- synchronous client: fetch and metadata ---- */

typedef struct spillway_client spillway_client;

/* Connects to one server "host:port" (host as for spillway_producer_new; each
 * address the name resolves to is tried in turn, each for up to
 * timeout_ms). Returns 0 or -errno / SPILLWAY_ERR_* (SPILLWAY_ERR_INVALID: a bad
 * address, or a name that does not resolve). */
int spillway_client_connect(const char *server, uint32_t timeout_ms, spillway_client **out);
/* The same over TLS (1.2 or later): the server's certificate is verified
 * against ca_file (PEM CA certificates; NULL or "": the system's) and its
 * name against the host of server; the handshake is bounded by timeout_ms.
 * SPILLWAY_ERR_TLS: the CA file did not load or the handshake failed (a
 * certificate that does not verify, a server without TLS). */
int spillway_client_connect_tls(const char *server, uint32_t timeout_ms, const char *ca_file, spillway_client **out);
void spillway_client_close(spillway_client *c);
/* Authenticates the connection with a bearer token (the AUTH request,
 * docs/protocol.md); later calls on c run as its tenant. Returns 0, or
 * SPILLWAY_ERR_UNAUTHORIZED (the connection is then unauthenticated), ... */
int spillway_client_auth(spillway_client *c, const char *token);
/* The server's sentence for the last error answer ("" if none). Valid
 * until the next call on c. */
const char *spillway_client_last_error(spillway_client *c);
/* After a fetch answered SPILLWAY_ERR_INTERNAL "damaged" (records damaged on
 * disk, docs/protocol.md "Answers"): the first offset after the damage,
 * where reading can resume knowingly; 0 when the last call's answer named
 * none. */
uint64_t spillway_client_resume_offset(spillway_client *c);

/* ---- versioned streams: conditional appends (docs/api.md "Event sourcing") ---- */

/* What spillway_client_append expects of its key's current version. */
enum {
    SPILLWAY_EXPECT_VERSION_ANY = 0,    /* no check */
    SPILLWAY_EXPECT_VERSION_NONE = 1,   /* the key has no event yet */
    SPILLWAY_EXPECT_VERSION_EXISTS = 2, /* it has at least one */
    SPILLWAY_EXPECT_VERSION_EXACT = 3,  /* its current version is exactly the given one */
};

/* One value to append. */
typedef struct spillway_value {
    const void *p;
    uint32_t len;
} spillway_value;

/*
 * Appends n values (1 ≤ n), all of key (key_len ≥ 0 bytes), to the
 * versioned stream, if the key's current version satisfies expect (one of
 * SPILLWAY_EXPECT_VERSION_*; version is read with _EXACT only, at most
 * 2^53 - 1), and waits for ack (SPILLWAY_ACK_LEVEL_*). The check and the
 * append are one step on the server: of many writers expecting the same
 * version, one succeeds. Returns 0 with *first_version (may be NULL) the
 * first value's version (the others follow it: first + 1, …), or
 * SPILLWAY_ERR_CONFLICT when the key is at another version — nothing was
 * appended, and spillway_client_current_version tells the key's version — or
 * another error (SPILLWAY_ERR_BAD_REQUEST: the stream is not versioned, a bad
 * expectation, ...; see spillway_client_last_error).
 */
int spillway_client_append(spillway_client *c, const char *stream, const void *key, int32_t key_len, const spillway_value *values,
                      uint32_t n, int expect, uint64_t version, int ack, uint64_t *first_version);
/* After spillway_client_append answered SPILLWAY_ERR_CONFLICT (version_conflict):
 * the key's current version on the server then; 0 after any other answer. */
uint64_t spillway_client_current_version(spillway_client *c);

/* A key's history (spillway_client_history): its current version, its newest
 * snapshot when asked for, and events in version order. */
typedef struct spillway_history spillway_history;
typedef struct spillway_event {
    uint64_t version;
    uint64_t offset;
    int64_t ts;
    const void *value; /* valid until spillway_history_free */
    uint32_t value_len;
} spillway_event;

/*
 * Reads key's events of the versioned stream in version order (durable
 * ones: docs/api.md "Event sourcing"), at most max (1..10000): from
 * from_version, or with from_version 0 from the key's newest snapshot —
 * the result then carries it and the events after it. Served by the
 * server's (key, version) index. Returns 0 and a result to free with
 * spillway_history_free, SPILLWAY_ERR_NOT_FOUND (the key was never written) or
 * another error.
 */
int spillway_client_history(spillway_client *c, const char *stream, const void *key, int32_t key_len, uint64_t from_version,
                       uint32_t max, spillway_history **out);
uint64_t spillway_history_current_version(const spillway_history *h);
/* The snapshot's version (0: none) and its state (JSON text). */
uint64_t spillway_history_snapshot(const spillway_history *h, const void **state, uint32_t *state_len);
size_t spillway_history_count(const spillway_history *h);
void spillway_history_get(const spillway_history *h, size_t i, spillway_event *out);
void spillway_history_free(spillway_history *h);

/* Stores key's snapshot at version (1 .. the key's current version, else
 * SPILLWAY_ERR_CONFLICT) with state, the JSON text of one object (1 B .. 1 MiB). */
int spillway_client_snapshot_put(spillway_client *c, const char *stream, const void *key, int32_t key_len, uint64_t version,
                            const void *state, uint32_t state_len);

typedef struct spillway_fetch_result spillway_fetch_result;

/* One fetched record; pointers live as long as the result. */
typedef struct spillway_fetched {
    uint64_t offset;
    uint64_t id; /* Snowflake id */
    int64_t ts;
    const uint8_t *key;
    int32_t key_len; /* -1: no key */
    const uint8_t *value;
    uint32_t value_len;
} spillway_fetched;

/*
 * Reads records of stream's partition from offset: at least one if any
 * exists there, more while they fit in max_bytes (0: the server's default,
 * 1 MiB). Returns 0 and a result to free with spillway_fetch_free, or an error
 * (SPILLWAY_ERR_OUT_OF_RANGE, SPILLWAY_ERR_NOT_FOUND, ...). Only durable (fsynced)
 * records are readable: a fetch at the durable end returns none, and asks
 * the server to fsync the records written after it, so a fetch repeated
 * shortly after sees them (docs/protocol.md, FETCH).
 */
int spillway_client_fetch(spillway_client *c, const char *stream, uint32_t partition, uint64_t offset, uint32_t max_bytes,
                     spillway_fetch_result **out);
size_t spillway_fetch_count(const spillway_fetch_result *r);
/* REQUIRES: i < spillway_fetch_count(r). */
void spillway_fetch_get(const spillway_fetch_result *r, size_t i, spillway_fetched *out);
/* Where the next fetch should start, and the partition's readable
 * (durable) end when read. */
uint64_t spillway_fetch_next_offset(const spillway_fetch_result *r);
uint64_t spillway_fetch_end_offset(const spillway_fetch_result *r);
void spillway_fetch_free(spillway_fetch_result *r);

typedef struct spillway_metadata spillway_metadata;
typedef struct spillway_stream_info {
    const char *name; /* NUL-terminated */
    uint32_t partitions;
    int format_bytes; /* 0 JSON, 1 bytes */
    int ack;          /* the stream's default SPILLWAY_ACK_LEVEL_* */
    /* [partitions]: end: written; durable: fsynced, what a fetch can read */
    const uint64_t *start_offsets, *end_offsets, *durable_offsets;
} spillway_stream_info;

/* Streams and their partitions' offsets: one stream, or all when stream
 * is NULL or "". Free the result with spillway_metadata_free. */
int spillway_client_metadata(spillway_client *c, const char *stream, spillway_metadata **out);
size_t spillway_metadata_count(const spillway_metadata *m);
/* Pointers live as long as m. Returns 0 or SPILLWAY_ERR_INVALID (i out of range). */
int spillway_metadata_stream(const spillway_metadata *m, size_t i, spillway_stream_info *out);
void spillway_metadata_free(spillway_metadata *m);

/*
 * Creates stream name from definition, the JSON object of PUT
 * /v1/streams/NAME (docs/api.md "Streams"; NULL or "" for every default),
 * over the binary protocol's STREAM_CREATE (needs admin on the stream).
 * Returns 0 with *created (may be NULL) 1 for a new stream, 0 when an
 * identical one existed; SPILLWAY_ERR_CONFLICT when one exists with
 * another definition; SPILLWAY_ERR_BAD_REQUEST for a bad name or
 * definition (spillway_client_last_error says why), or another error.
 */
int spillway_client_create_stream(spillway_client *c, const char *name, const char *definition, int *created);
/* Stream name's definition, incarnation and partition state, as the JSON
 * of GET /v1/streams/NAME, over STREAM_DESCRIBE: 0 with *json (malloc'ed,
 * NUL-terminated; free() it), SPILLWAY_ERR_NOT_FOUND, or another error. */
int spillway_client_describe_stream(spillway_client *c, const char *name, char **json);
/* Stream's consumer groups, as the JSON of GET /v1/streams/STREAM/groups
 * (name, partitions, lag, leased_partitions, active), over GROUP_LIST: 0
 * with *json (malloc'ed, NUL-terminated; free() it),
 * SPILLWAY_ERR_NOT_FOUND (no such stream), or another error. */
int spillway_client_list_groups(spillway_client *c, const char *stream, char **json);
/* Resets consumer group `group` of stream, over GROUP_RESET: reset is the
 * JSON body of POST /v1/streams/STREAM/groups/GROUP/reset
 * ({"to":"earliest"|"latest"|OFFSET[,"partition":P]}); 0 with *json (that
 * POST's answer: each partition's offset before and after; malloc'ed,
 * free() it) once the offsets are saved; SPILLWAY_ERR_CONFLICT while the
 * group has active members (a lease, or a Kafka consumer);
 * SPILLWAY_ERR_NOT_FOUND (no such stream or group); SPILLWAY_ERR_FORBIDDEN
 * without the admin permission; SPILLWAY_ERR_BAD_REQUEST for a bad body
 * (spillway_client_last_error says why), or another error. */
int spillway_client_reset_group(spillway_client *c, const char *stream, const char *group, const char *reset,
                                char **json);
/* ---- views: read models kept by the server (docs/api.md "Views") ---- */

/* Read your writes: the view has applied offset of partition (a produce's
 * acknowledged offsets, e.g. the last of each partition it wrote). */
typedef struct spillway_view_min {
    uint32_t partition;
    uint64_t offset;
} spillway_view_min;
#define SPILLWAY_VIEW_TIME_DEFAULT INT64_MIN /* from, to, at: the server's default */

/*
 * The view reads of docs/api.md "Views" over the binary protocol
 * (VIEW_READ, docs/protocol.md): the same answers as HTTP's, as the JSON
 * document HTTP answers. With n_min pairs in min (0..1024; min may be NULL
 * with 0), the read waits until the view has applied each, at most wait_ms
 * (0..60000; the call's timeout grows by it). Each returns 0 and *json (a
 * NUL-terminated JSON object, *json_len bytes without the NUL; free it
 * with spillway_view_json_free), or SPILLWAY_ERR_NOT_FOUND (no such view,
 * or a key the view never saw: spillway_client_last_error says which),
 * SPILLWAY_ERR_REQUEST_TIMEOUT (view_lag: min not applied within wait_ms),
 * SPILLWAY_ERR_BAD_REQUEST (a window the view does not have, a time out of
 * range, ...), SPILLWAY_ERR_FORBIDDEN (the token may not consume the
 * view's stream), SPILLWAY_ERR_INVALID (a bad argument) or another error.
 */
/* A key's entry: latest record, running total, or all-time aggregate. */
int spillway_client_view_get(spillway_client *c, const char *view, const void *key, uint32_t key_len,
                             const spillway_view_min *min, uint32_t n_min, uint32_t wait_ms, char **json,
                             size_t *json_len);
/* An aggregate's buckets of window ("1m"; NULL or "": the smallest) from
 * from to to (ms since the epoch; SPILLWAY_VIEW_TIME_DEFAULT: the defaults). */
int spillway_client_view_series(spillway_client *c, const char *view, const void *key, uint32_t key_len,
                                const char *window, int64_t from, int64_t to, const spillway_view_min *min,
                                uint32_t n_min, uint32_t wait_ms, char **json, size_t *json_len);
/* The n (0: 10; at most 1000) keys with the largest count (by "count",
 * NULL or "") or sum (by "sum") in window's bucket at at
 * (SPILLWAY_VIEW_TIME_DEFAULT: the newest). */
int spillway_client_view_top(spillway_client *c, const char *view, const char *window, int64_t at, const char *by,
                             uint32_t n, const spillway_view_min *min, uint32_t n_min, uint32_t wait_ms, char **json,
                             size_t *json_len);
void spillway_view_json_free(char *json);

#ifdef __cplusplus
}
#endif

#endif
