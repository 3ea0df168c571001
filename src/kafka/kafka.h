/*
 * The Kafka protocol listener (docs/protocol-kafka.md): a third front end
 * over the service layer, beside HTTP (http/http.h) and the binary
 * protocol (bin/binproto.h), on the same connection core (net/conn.h), so
 * that unmodified Kafka clients (librdkafka, kcat, kafkajs) produce to
 * and fetch from Spillway streams: topics are streams, a Produce is the
 * produce service's request (svc/produce.h: admission, validation,
 * dedupe, submit), a Fetch reads through the record cursor
 * (log/cursor.h). Off unless --listen-kafka (config key listen-kafka) is
 * given.
 */
#ifndef SPW_KAFKA_H
#define SPW_KAFKA_H

#include <stdint.h>

#include "svc/svc.h"

typedef struct spw_kafka_server spw_kafka_server;

typedef struct spw_kafka_config {
    const char *listen; /* host:port */
    uint32_t threads;
    uint32_t max_connections;
    uint32_t max_request_bytes; /* a request's size field limit */
    uint32_t idle_timeout_ms;
    uint32_t request_timeout_ms; /* a request must arrive whole within */
    uint32_t max_pipelined;      /* requests queued per connection */
    struct spw_membudget *buffers; /* input memory of all connections; NULL: no limit */
    struct spw_tls *tls;           /* NULL: plain TCP; else TLS, handshake within request_timeout_ms (net/tls.h) */
    int auto_create; /* Metadata naming a missing topic creates it (kafka-auto-create) */
} spw_kafka_config;

/* Binds and starts the loops. svc must outlive the server. 0 or -errno. */
int spw_kafka_start(const spw_kafka_config *c, spw_svc *svc, spw_kafka_server **out);
int spw_kafka_port(spw_kafka_server *s);
/* First step of a drain: no new connection, no new request read. */
void spw_kafka_stop_accepting(spw_kafka_server *s);
/* The drain (net/conn.h), then frees s. */
void spw_kafka_stop(spw_kafka_server *s, uint32_t drain_ms);

/* Registers spillway_kafka_connections, spillway_kafka_requests_total,
 * spillway_kafka_refused_total; s must outlive the registry. */
struct spw_metrics;
void spw_kafka_metrics_register(struct spw_metrics *m, spw_kafka_server *s);

#endif
