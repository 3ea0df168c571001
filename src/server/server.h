/*
 * `spillway serve`: the configuration table and the server's lifecycle —
 * open the log and the catalog (recovering every partition), start the
 * HTTP and binary-protocol loops, run until SIGTERM/SIGINT, then stop
 * accepting, let requests in flight finish, flush and fsync every
 * partition, and return.
 */
#ifndef SPW_SERVER_H
#define SPW_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

typedef struct spw_server_config {
    char config[1024];
    char data[1024];
    char listen[256];
    char listen_bin[256]; /* "" or "off": no binary listener */
    uint32_t node_id;
    int insecure;
    uint32_t io_threads;
    uint64_t max_pending_bytes;
    uint32_t max_connections;
    uint64_t max_header_bytes;
    uint64_t max_request_bytes;
    uint64_t idle_timeout_ms;
    uint64_t request_timeout_ms;
    uint32_t max_pipelined;
    uint64_t fsync_interval_ms;
    uint64_t retention_check_ms;
    uint64_t shutdown_drain_ms;
    uint64_t max_disk_bytes; /* 0: no limit */
    uint64_t segment_bytes;
} spw_server_config;

extern const spw_cfg_entry spw_server_cfg_table[];
extern const size_t spw_server_cfg_count;

/* Runs the server until a stop signal. Returns 0 after a clean stop, or 1
 * with the reason printed. ready_fd >= 0 gets "HTTPPORT BINPORT\n" written
 * once listening (BINPORT 0 when the binary listener is off; tests use it
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
