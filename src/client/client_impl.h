/*
 * Internals shared by the files of the C client library (client.c,
 * producer.c, producer_io.c, sync_client.c) and by no one else; what tests
 * reach is client_int.h.
 *
 * Locking: one mutex (spillway_producer.mu) protects all producer state
 * (producer.c, "Locking").
 */
#ifndef SPW_CLIENT_IMPL_H
#define SPW_CLIENT_IMPL_H

#include <netinet/in.h>
#include <poll.h>
#include <sys/types.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/ring.h"
#include "wire/frame.h"
#include "spillway.h"

#define MAX_SERVERS 64
#define MAX_ANSWER_BYTES (256u << 20)
#define READ_CHUNK (64u << 10)

void *spw__producer_main(void *arg); /* the I/O thread */

/* ---- producer state ---- */

typedef struct batch {
    struct batch *next;
    uint32_t server;
    char stream[SPW_STREAM_NAME_WIRE_MAX + 1];
    uint8_t ack;
    uint8_t keyless; /* its records have no key: it may go to another server when this one is down */
    spw_buf frame; /* header + PRODUCE body being built */
    size_t count_at;
    uint32_t count;
    void **opaques;
    uint32_t opaques_cap;
    uint64_t bytes;       /* what this batch counts against buffer_bytes */
    uint64_t created_ms;  /* for linger */
    uint64_t deadline_ms; /* delivery timeout of its first record */
    uint64_t not_before_ms;
    uint64_t request_id;
    int has_seq;  /* pid and seq assigned at the first send, kept by every resend (dedupe) */
    uint64_t pid;
    uint32_t seq;
} batch;

typedef struct bqueue {
    batch *head, *tail;
    uint32_t n;
} bqueue;

static inline void q_push(bqueue *q, batch *b)
{
    b->next = NULL;
    if (q->tail)
        q->tail->next = b;
    else
        q->head = b;
    q->tail = b;
    q->n++;
}

static inline void q_push_front(bqueue *q, batch *b)
{
    b->next = q->head;
    q->head = b;
    if (!q->tail)
        q->tail = b;
    q->n++;
}

static inline batch *q_pop(bqueue *q)
{
    batch *b = q->head;
    if (b) {
        q->head = b->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
        b->next = NULL;
    }
    return b;
}

/* Moves all of src in front of dst, keeping src's order. */
static inline void q_prepend_all(bqueue *dst, bqueue *src)
{
    if (!src->head)
        return;
    src->tail->next = dst->head;
    dst->head = src->head;
    if (!dst->tail)
        dst->tail = src->tail;
    dst->n += src->n;
    src->head = src->tail = NULL;
    src->n = 0;
}

#define SPW_CLIENT_HOST_MAX 253 /* bytes of a host name */
#define SPW_CLIENT_ADDRS_MAX 8  /* addresses of a name tried per connect round */

typedef struct server {
    char name[300];
    char host[SPW_CLIENT_HOST_MAX + 1];
    uint16_t port;
    /* the addresses of the current connect round (resolved at its start;
     * tried in order until one connects): ai is the one being tried, ai
     * >= naddr means the next connect starts a new round */
    struct sockaddr_storage addrs[SPW_CLIENT_ADDRS_MAX];
    socklen_t alens[SPW_CLIENT_ADDRS_MAX];
    int naddr, ai;
    int fd;
    int connecting;  /* non-blocking connect in progress */
    int ever_connected;
    uint64_t connect_started_ms;
    uint64_t next_connect_ms;
    uint32_t backoff_ms;
    batch *open; /* open batches for this server (few: per stream and ack) */
    bqueue queue;    /* sealed, waiting to be sent */
    bqueue inflight; /* written (or in out), waiting for an answer */
    spw_buf out;
    size_t out_off;
    spw_buf in;
    uint64_t auth_id; /* request id of this connection's AUTH, 0 before it is sent */
    void *ssl;        /* the TLS session (tls_ca_file set), else NULL */
    short tls_hs;     /* handshake under way: the poll events it waits for */
    /* Why the last connect failed (0 and "" once connected): written by
     * the I/O thread under the producer's conn_mu, read by
     * spillway_producer_connect_error. */
    int conn_err;
    char conn_why[320];
    /* Connect rounds failed in a row (0 once connected; I/O thread, under
     * mu): > 0 is "down" for routing (include/spillway.h "Routing"). */
    uint32_t failed_rounds;
} server;

struct spillway_producer {
    spillway_producer_config cfg; /* cfg.token points at token below */
    char *token;
    size_t token_len;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* outstanding changed */
    pthread_t th;
    int wake[2];
    int stop;
    int interrupted; /* spillway_producer_interrupt: flush returns at once (under mu) */
    server *servers;
    uint32_t nservers;
    spw_ring ring; /* servers by key: core/ring.h */
    uint32_t rr;
    uint64_t next_id;
    uint64_t producer_id;
    uint32_t producer_seq; /* next record sequence number (all servers) */
    uint64_t outstanding_records, outstanding_bytes;
    int stopped; /* stop_on_error: a batch failed, nothing more is written */
    _Atomic uint64_t reconnects;
    pthread_mutex_t conn_mu; /* the servers' conn_err and conn_why */
    batch *done_head; /* finished batches, callbacks pending (I/O thread) */
    void *tls_ctx;    /* cfg.tls_ca_file set: every connection speaks TLS */
    char *tls_ca_file;
};

/* A finished batch carries its results until its callbacks run. */
typedef struct result {
    int status;
    uint32_t *partitions; /* per record, or NULL on error */
    uint64_t *offsets;
} result;

typedef struct done_item {
    struct done_item *next;
    batch *b;
    result r;
} done_item;


/* client.c: checks "host:port" of length n (host: a name of letters,
 * digits, '-' and '.', or an IPv4 address) and copies it into name, its
 * host into host (SPW_CLIENT_HOST_MAX + 1 bytes) and its port into *port.
 * Resolves nothing. 0 or SPILLWAY_ERR_INVALID. */
int spw__client_parse_hostport(const char *s, size_t n, char *name, size_t namecap, char *host, uint16_t *port);
/* Resolves host (getaddrinfo: /etc/hosts, DNS, ... as the system is set
 * up; IPv4 and IPv6) for a TCP connection to port: up to
 * SPW_CLIENT_ADDRS_MAX addresses, in the resolver's order, into out and
 * their lengths into lens. Returns how many (>= 1), or SPILLWAY_ERR_INVALID
 * when the name does not resolve. Blocks while the resolver works. */
int spw__client_resolve(const char *host, uint16_t port, struct sockaddr_storage *out, socklen_t *lens);

/* tls_client.c: TLS of both clients (OpenSSL; void * keeps its headers
 * out of the others). A context verifying against ca_file ("" or NULL: the
 * system's CAs), NULL if it cannot load; a session over fd checking the
 * certificate's name against host (an IPv4 literal as an address), NULL on
 * failure. handshake: 0 done, POLLIN/POLLOUT to wait for, -1 failed.
 * send/recv: like send(2)/recv(2) (EAGAIN: wait; a peer that closed: 0
 * from recv); send never raises SIGPIPE. */
void *spw__client_tls_ctx(const char *ca_file);
void spw__client_tls_ctx_free(void *ctx);
void *spw__client_tls_session(void *ctx, int fd, const char *host);
void spw__client_tls_free(void *ssl);
int spw__client_tls_handshake(void *ssl);
ssize_t spw__client_tls_send(void *ssl, const void *p, size_t n);
ssize_t spw__client_tls_recv(void *ssl, void *p, size_t n);
int spw__client_tls_pending(void *ssl);

/* producer.c */
uint64_t spw__producer_random_id(void *old); /* never 0, never *(uint64_t *)old */
void spw__producer_wake_io(spillway_producer *p);
void spw__producer_finish(spillway_producer *p, done_item **list, batch *b, int status, uint32_t *parts,
                          uint64_t *offs);
void spw__producer_run_done(spillway_producer *p, done_item *list);
void spw__producer_seal(spillway_producer *p, server *s, batch *b);
/* The next server for a record without a key (producer.c). REQUIRES: mu. */
uint32_t spw__producer_next_up(spillway_producer *p);
void spw__producer_seal_all(spillway_producer *p);
void spw__producer_cancel_unsent(spillway_producer *p, server *s, done_item **done);

#endif
