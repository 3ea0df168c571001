/*
 * The Kafka listener's private interface (not for use outside src/kafka):
 * the connection (kconn) and loop (kloop) as it extends the connection
 * core's (net/conn.h), the server, a request in its connection's answer
 * queue (kreq), and the handlers each file defines.
 *
 * Kafka answers a connection's requests in the order they came, whatever
 * order they complete in: each request read gets a kreq at the tail of
 * its connection's queue; a handler writes its answer body into q->out
 * and marks it ready (at once, or later: a Produce when the service posts
 * its result, a Fetch with nothing to give when data arrives or its wait
 * ends); kq_flush moves the ready answers at the head of the queue, with
 * their size prefix, to the socket.
 */
#ifndef SPW_KAFKA_INT_H
#define SPW_KAFKA_INT_H

#include "kafka/kafka.h"
#include "kafka/kcodec.h"
#include "net/conn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/invariant.h"
#include "core/msg.h"
#include "svc/auth.h"
#include "svc/produce.h"
#include "svc/request.h"
#include "svc/status.h"

/* API keys we serve (docs/protocol-kafka.md "APIs"). */
enum {
    KAPI_PRODUCE = 0,
    KAPI_FETCH = 1,
    KAPI_LIST_OFFSETS = 2,
    KAPI_METADATA = 3,
    KAPI_OFFSET_COMMIT = 8,
    KAPI_OFFSET_FETCH = 9,
    KAPI_FIND_COORDINATOR = 10,
    KAPI_JOIN_GROUP = 11,
    KAPI_HEARTBEAT = 12,
    KAPI_LEAVE_GROUP = 13,
    KAPI_SYNC_GROUP = 14,
    KAPI_SASL_HANDSHAKE = 17,
    KAPI_API_VERSIONS = 18,
    KAPI_CREATE_TOPICS = 19,
    KAPI_INIT_PRODUCER_ID = 22,
    KAPI_SASL_AUTHENTICATE = 36,
};

/* Kafka error codes we answer. */
enum {
    KERR_UNKNOWN_SERVER_ERROR = -1,
    KERR_NONE = 0,
    KERR_OFFSET_OUT_OF_RANGE = 1,
    KERR_CORRUPT_MESSAGE = 2,
    KERR_UNKNOWN_TOPIC_OR_PARTITION = 3,
    KERR_REQUEST_TIMED_OUT = 7,
    KERR_MESSAGE_TOO_LARGE = 10,
    KERR_INVALID_TOPIC = 17,
    KERR_NOT_ENOUGH_REPLICAS = 19,
    KERR_INVALID_REQUIRED_ACKS = 21,
    KERR_TOPIC_AUTHORIZATION_FAILED = 29,
    KERR_UNSUPPORTED_VERSION = 35,
    KERR_TOPIC_ALREADY_EXISTS = 36,
    KERR_INVALID_PARTITIONS = 37,
    KERR_INVALID_REQUEST = 42,
    KERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53,
    KERR_OUT_OF_ORDER_SEQUENCE = 45,
    KERR_KAFKA_STORAGE_ERROR = 56,
    KERR_UNSUPPORTED_COMPRESSION_TYPE = 76,
    KERR_INVALID_RECORD = 87,
};

typedef struct kloop kloop;
typedef struct spw_kgroups spw_kgroups;
typedef struct kconn kconn;

typedef struct kreq {
    struct kreq *next;
    kconn *c;
    int16_t api_key, api_version;
    int32_t correlation_id;
    int ready;     /* the answer in out is complete */
    int no_answer; /* acks=0: nothing is sent back */
    spw_buf out;   /* the answer: header and body, without the size (framed: with it) */
    int framed;    /* out begins with 4 bytes for the size (spw__kq_begin_framed) */
    /* a Fetch waiting for data: its request's bytes, until when */
    uint8_t *parked;
    size_t parked_len;
    uint64_t deadline_ms;
    /* a Produce waiting for the service */
    struct kprod *prod;
} kreq;

struct kconn {
    union {
        spw_netconn nc;
        struct {
            SPW_NETCONN_FIELDS
        };
    };
    kloop *loop;
    spw_buf in; /* in.cap bytes are taken from the buffer budget */
    size_t in_off;
    uint64_t frame_start_ms;
    kreq *head, *tail; /* the answer queue, oldest first */
    uint32_t nq;
    uint32_t nparked;
    char tenant[64];       /* set by SASL/PLAIN; "" without tokens */
    spw_auth_session auth; /* the SASL/PLAIN login (svc/auth.h) */
    int sasl_raw;          /* after SaslHandshake v0: the next frame is a bare PLAIN message */
};

struct kloop {
    union {
        spw_netloop nl;
        struct {
            SPW_NETLOOP_FIELDS
        };
    };
    spw_kafka_server *srv;
    /* Fetches parked on this loop's connections (written by the loop,
     * read by the durable hook), and a wake-up posted and not yet run. */
    _Atomic uint32_t parked;
    _Atomic int kicked;
    /* Fetch's record cursor (the server's curs[i]): its buffers are kept
     * from one Fetch to the next rather than allocated for each. */
    struct spw_cursor *cur;
    /* The loop's spare answer buffer (the server's spares[i]): a large
     * Fetch answer's buffer, once written whole, is kept here and the next
     * Fetch on the loop builds its answer in it, its pages already mapped
     * (a new buffer of up to 32 MiB per Fetch cost a page fault per 4 KiB,
     * the kernel zeroing each page, and the unmapping: a quarter of the
     * server's time per message in a consumer-group read). One per loop;
     * freed once unused for K_SPARE_IDLE_MS (kafka_fetch.c). */
    spw_buf *spare;
    uint64_t spare_ms; /* when it was last given or taken */
};

struct spw_kafka_server {
    spw_netsrv ns;
    spw_kafka_config cfg;
    spw_svc *svc;
    _Atomic uint64_t st_requests, st_refused;
    /* InitProducerId's next producer id: the wall clock in ms << 12 at
     * start, so ids never repeat across restarts (the dedupe table
     * outlives them) unless a run hands out over 4096 ids a ms. */
    _Atomic int64_t next_pid;
    spw_kgroups *kg; /* the Kafka groups' membership (kafka_group.c) */
    /* The log's durable hook (kafka_fetch.c): counts durable-end moves
     * and wakes the loops with parked Fetches. hooked: it is set (else
     * parked Fetches look again every tick). */
    _Atomic uint64_t durable_gen;
    _Atomic int hooked; /* set once the loops run: read by them */
    struct spw_cursor *curs; /* one per loop (kloop.cur), freed after the loops */
    spw_buf *spares;          /* one per loop (kloop.spare), freed after the loops */
    uint32_t ncurs;
};

/* kafka_fetch.c: the loop's spare answer buffer (kloop.spare) */
#define K_SPARE_IDLE_MS 2000
/* Keeps b's memory as l's spare if l has none and it is large (b is left
 * zeroed), else frees it. */
void spw__k_spare_give(kloop *l, spw_buf *b);
/* Frees l's spare once unused for K_SPARE_IDLE_MS (every tick). */
void spw__k_spare_tick(kloop *l, uint64_t now);

/* kafka.c */
void spw__kq_flush(kconn *c);
void spw__kloop_post(void *loop, void (*fn)(void *), void *arg);
/* The answer header (correlation id) at the start of q->out. */
int spw__kq_begin(kreq *q);
/* The same after 4 bytes kq_flush fills with the size, so that a large
 * answer becomes the connection's output as it is, without a copy (Fetch:
 * every position in the answer is relative to where it began). */
int spw__kq_begin_framed(kreq *q);
/* A status-table code as a Kafka error code. */
int16_t spw__kerr_of(spw_sc sc);
/* The stream a topic names, after the checks every request makes
 * (svc/request.h); NULL with *err set. */
spw_stream *spw__k_stream(kconn *c, const char *name, int32_t len, unsigned perms, int16_t *err);

/* The connection's token: 1 with *who (NULL when no tokens file is
 * configured), or 0 when tokens are configured and the connection has not
 * logged in with SASL/PLAIN (or its token was revoked). */
int spw__k_who(kconn *c, const spw_token **who);

/* This node's address as the client reached it (Metadata, FindCoordinator). */
void spw__k_local_addr(kconn *c, char *host, size_t cap, int *port);

/* kafka_group.c */
spw_kgroups *spw__kg_new(void);
void spw__kg_free(spw_kgroups *kg);
void spw__kg_tick(spw_kgroups *kg, kloop *l, int stopping);
void spw__k_find_coordinator(kconn *c, kreq *q, spw_kr *r);
void spw__k_join_group(kconn *c, kreq *q, spw_kr *r);
void spw__k_sync_group(kconn *c, kreq *q, spw_kr *r);
void spw__k_heartbeat(kconn *c, kreq *q, spw_kr *r);
void spw__k_leave_group(kconn *c, kreq *q, spw_kr *r);
void spw__k_offset_commit(kconn *c, kreq *q, spw_kr *r);
void spw__k_offset_fetch(kconn *c, kreq *q, spw_kr *r);

/* kafka_produce.c */
void spw__k_produce(kconn *c, kreq *q, spw_kr *r);
void spw__k_prod_free(struct kprod *pr);

/* kafka_fetch.c */
void spw__k_list_offsets(kconn *c, kreq *q, spw_kr *r);
/* Answers the Fetch in body (after the header) now, or parks q when it
 * has less than its min_bytes to give and its wait is not over (final: it
 * is). */
void spw__k_fetch(kconn *c, kreq *q, const uint8_t *body, size_t len, int final);
/* Looks again at c's parked Fetches: all of them (all), or those whose
 * wait is over (now past their deadline, or the loop stopping). */
void spw__k_fetch_recheck(kconn *c, uint64_t now, int all);
/* The log's durable hook (flusher thread): wakes the loops with parked
 * Fetches, which look again at them (spw__k_fetch_recheck). */
void spw__k_durable(void *srv);

#endif
