/*
 * `spillway serve`: the configuration table and the server's lifecycle —
 * open the log and the catalog (recovering every partition), start the
 * HTTP and binary-protocol loops, run until SIGTERM/SIGINT, then stop
 * accepting, let requests in flight finish, flush and fsync every
 * partition, and return. SIGHUP reloads the tokens file (svc/auth.h).
 */
#ifndef SPW_SERVER_H
#define SPW_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

#define SPW_SERVER_CFG_MAX 64 /* rows of spw_server_cfg_table, at most */

typedef struct spw_server_config {
    char config[1024];
    char data[1024];
    char listen[256];
    char listen_bin[256]; /* "" or "off": no binary listener */
    char listen_kafka[256]; /* "" or "off" (the default): no Kafka listener */
    int kafka_auto_create;  /* Kafka Metadata creates missing topics */
    uint32_t node_id;
    int insecure;
    char tokens_file[1024]; /* "" = no tokens: loopback only unless insecure */
    char tls_cert[1024];    /* PEM certificate (chain) of every listener; "" = plain TCP */
    char tls_key[1024];     /* its PEM private key; both or neither */
    uint32_t io_threads;
    int io_uring; /* the HTTP and binary loops send a round's answers in one io_uring submission */
    uint64_t max_pending_bytes;
    uint32_t high_watermark_pct, low_watermark_pct, shed3_pct, shed2_pct;
    uint32_t max_connections;
    uint32_t dedupe_max_keys;
    uint32_t es_cache_keys;
    uint64_t max_header_bytes;
    uint64_t max_request_bytes;
    uint64_t idle_timeout_ms;
    uint64_t request_timeout_ms;
    uint32_t max_pipelined;
    uint64_t fsync_interval_ms;
    uint64_t retention_check_ms;
    uint64_t view_flush_ms;
    uint64_t shutdown_drain_ms;
    uint32_t rate_limit;             /* default events/s per key for streams without rate_limit; 0 = off */
    uint32_t rate_limit_burst;       /* token bucket capacity; 0 = rate_limit */
    char rate_limit_per[16];         /* "tenant" | "ip" */
    char rate_limit_algorithm[32];   /* "token_bucket" | "sliding_window" */
    uint32_t rate_limit_max_keys;    /* entries of the limiter table (admit/ratelimit.h) */
    /* Not in the table: set by the command line. from_flag[i] says table
     * entry i was given as a flag, so it still wins over the file when
     * SIGHUP re-reads it. */
    unsigned char from_flag[SPW_SERVER_CFG_MAX];
    uint64_t max_disk_bytes; /* 0: no limit */
    uint64_t segment_bytes;
    uint32_t fd_cache_segments;
    uint64_t max_buffer_bytes; /* input memory of all connections (net/membudget.h) */
    uint64_t max_unsent_bytes; /* answers not yet written, all connections (net/conn.h) */
    uint64_t send_timeout_ms;  /* close a connection whose unsent answers do not move for this long */
    char log_format[8];        /* "text" | "json" (core/msg.h) */
    char log_level[8];         /* "debug" | "info" | "warn" | "error" */
} spw_server_config;

extern const spw_cfg_entry spw_server_cfg_table[];
extern const size_t spw_server_cfg_count;

/* Runs the server until a stop signal. Returns 0 after a clean stop, 2 for
 * a setting the table cannot judge alone (rate-limit-per, ...), or 1 with
 * the reason printed. SIGHUP re-reads c->config (if set) and applies its
 * rate-limit settings (docs/operations.md "Signals"). ready_fd >= 0 gets "HTTPPORT BINPORT\n"
 * written once listening, "HTTPPORT BINPORT KAFKAPORT\n" with the Kafka listener on (BINPORT 0
 * when the binary listener is off; tests use it
 * to learn the ports of "--listen 127.0.0.1:0 --listen-bin 127.0.0.1:0"). */
int spw_server_run(const spw_server_config *c, int ready_fd);

/*
 * Test builds only: src/server/testhooks.c, linked into spillway_test and
 * never into spillway, sets this before main runs; spw_server_run calls it
 * with the configuration before it opens the data directory (the hook wraps
 * spw_os to inject faults there). NULL in the production binary.
 */
extern void (*spw_server_test_start)(const spw_server_config *c);

#endif
