/*
 * The binary protocol listener (docs/protocol.md): length-prefixed frames
 * on their own port (default 127.0.0.1:7701), served by epoll loops built
 * like the HTTP ones (http/http.h): one loop per I/O thread, all on one
 * listening socket (net/loop.h), everything about a connection on its loop's
 * thread, completions from the log's flusher brought back by a posted
 * function. PRODUCE is decoded into the produce service's request
 * (svc/produce.h), the same path as HTTP produce, and its one answer is
 * framed with the status table's wire status and word (svc/status.h), so
 * a record and an answer are the same whichever protocol carried them.
 *
 * Pipelining: up to max_pipelined requests per connection are in flight;
 * past that the loop stops reading the socket (TCP flow control pushes
 * back on the client) until answers go out. Answers are sent as they
 * complete, so they may come back in another order than the requests:
 * clients match them by request id.
 *
 * A frame that cannot be framed (length below 12, over the limit, unknown
 * flag bits) is answered with an error frame (request id 0 when the header
 * was unreadable) and the connection is closed once that answer and the
 * answers in flight are sent.
 */
#ifndef SPW_BINPROTO_H
#define SPW_BINPROTO_H

#include <stdint.h>

#include "svc/svc.h"

typedef struct spw_bin_server spw_bin_server;

typedef struct spw_bin_config {
    const char *listen; /* host:port */
    uint32_t threads;
    uint32_t max_connections; /* of this listener */
    uint32_t max_frame_bytes; /* length field limit (max-request-bytes) */
    uint32_t idle_timeout_ms;
    uint32_t request_timeout_ms; /* a frame must arrive whole within */
    uint32_t max_pipelined;      /* requests in flight per connection */
    struct spw_membudget *buffers; /* input memory of all connections (net/membudget.h); NULL: no limit */
    struct spw_membudget *unsent;  /* answers not yet written, all connections (net/conn.h); NULL: no limit */
    uint32_t send_timeout_ms;      /* close a connection whose unsent answers do not move for this long; 0: never */
    int io_uring; /* a round's answers in one io_uring submission where the kernel allows it (net/conn.h) */
    struct spw_tls *tls;           /* NULL: plain TCP; else TLS, handshake within request_timeout_ms (net/tls.h) */
} spw_bin_config;

/* Binds and starts the loops. svc must outlive the server. 0 or -errno. */
int spw_bin_start(const spw_bin_config *c, spw_svc *svc, spw_bin_server **out);
int spw_bin_port(spw_bin_server *s);
/* Stops accepting connections and reading requests (first step of a
 * drain): requests already dispatched are still answered. */
void spw_bin_stop_accepting(spw_bin_server *s);
/* Stops accepting, waits until every request in flight is answered (past
 * drain_ms too, with a warning), closes every connection and frees s: the
 * drain of the connection core both listeners run on (net/conn.h). */
void spw_bin_stop(spw_bin_server *s, uint32_t drain_ms);

typedef struct spw_bin_stats {
    uint64_t connections_open, connections_total, requests, rejected_frames;
    uint64_t accept_fd_errors; /* accepts that failed for want of an fd (net/conn.h) */
    uint64_t send_timeouts; /* connections closed because their answers did not move for send-timeout */
    uint64_t uring_sends;   /* answers' sends submitted through io_uring (net/conn.h spw_netloop_flush) */
    uint32_t uring_loops;   /* loops whose io_uring is open */
} spw_bin_stats;
void spw_bin_stats_get(spw_bin_server *s, spw_bin_stats *st);

/* Registers the listener's families (connections, requests, refused
 * frames) into a metrics registry (svc/metrics.h); s must outlive it. */
struct spw_metrics;
void spw_bin_metrics_register(struct spw_metrics *m, spw_bin_server *s);

#endif
