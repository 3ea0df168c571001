/* The server's lifecycle: see server.h. */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/id.h"
#include "core/msg.h"
#include "log/log.h"
#include "net/binproto.h"
#include "net/frame.h"
#include "net/http.h"
#include "server/api.h"
#include "server/catalog.h"

#define CFG(name, type, field, def, min, max, help)                                                                    \
    {name, type, offsetof(spw_server_config, field), sizeof(((spw_server_config *)0)->field), def, min, max, help}

const spw_cfg_entry spw_server_cfg_table[] = {
    CFG("data", SPW_CFG_STR, data, "./data", 0, 0, "data directory"),
    CFG("listen", SPW_CFG_STR, listen, "127.0.0.1:7700", 0, 0, "HTTP address host:port"),
    CFG("listen-bin", SPW_CFG_STR, listen_bin, "127.0.0.1:7701", 0, 0,
        "binary protocol address host:port (docs/protocol.md); \"\" or \"off\" disables it"),
    CFG("node-id", SPW_CFG_U32, node_id, "0", 0, 1023, "Snowflake node id, unique per node"),
    CFG("insecure", SPW_CFG_BOOL, insecure, "false", 0, 0, "allow a non-loopback listen address without tokens"),
    CFG("io-threads", SPW_CFG_U32, io_threads, "0", 0, 256, "I/O loops; 0 = one per core"),
    CFG("max-pending-bytes", SPW_CFG_SIZE, max_pending_bytes, "64MiB", 4096, 1ull << 40,
        "budget of accepted, not yet written bytes"),
    CFG("max-connections", SPW_CFG_U32, max_connections, "10000", 1, 1000000, "open client connections"),
    CFG("max-header-bytes", SPW_CFG_SIZE, max_header_bytes, "16KiB", 1024, 1 << 20, "request line + headers"),
    CFG("max-request-bytes", SPW_CFG_SIZE, max_request_bytes, "16MiB", 1024, 1ull << 30, "request body"),
    CFG("idle-timeout", SPW_CFG_DURATION, idle_timeout_ms, "60s", 100, 86400000, "close idle connections after"),
    CFG("request-timeout", SPW_CFG_DURATION, request_timeout_ms, "30s", 100, 86400000,
        "a request must arrive whole within"),
    CFG("max-pipelined", SPW_CFG_U32, max_pipelined, "64", 1, 4096, "requests in flight per connection"),
    CFG("fsync-interval", SPW_CFG_DURATION, fsync_interval_ms, "1s", 1, 3600000,
        "fsync data written at ack none/written at least this often"),
    CFG("retention-check", SPW_CFG_DURATION, retention_check_ms, "10s", 100, 86400000,
        "how often retention runs"),
    CFG("shutdown-drain", SPW_CFG_DURATION, shutdown_drain_ms, "10s", 0, 600000,
        "on SIGTERM, wait this long for requests in flight"),
    CFG("max-disk-bytes", SPW_CFG_SIZE, max_disk_bytes, "0", 0, 1ull << 60,
        "segment bytes of all streams together; at the limit produce answers 507 disk_limit; 0 = no limit"),
    CFG("segment-bytes", SPW_CFG_SIZE, segment_bytes, "128MiB", 1024, 1ull << 31,
        "roll a partition's segment file at this size (retention deletes whole segments)"),
};
const size_t spw_server_cfg_count = sizeof spw_server_cfg_table / sizeof *spw_server_cfg_table;

void (*spw_server_test_start)(const spw_server_config *c);

static int is_loopback(const char *listen)
{
    const char *colon = strrchr(listen, ':');
    char host[256];
    size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
    if (n >= sizeof host)
        return 0;
    memcpy(host, listen, n);
    host[n] = 0;
    if (strcmp(host, "localhost") == 0)
        return 1;
    struct in_addr a;
    return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

int spw_server_run(const spw_server_config *c, int ready_fd)
{
    int bin_on = c->listen_bin[0] && strcmp(c->listen_bin, "off") != 0;
    const char *addrs[2] = {c->listen, bin_on ? c->listen_bin : NULL};
    for (int i = 0; i < 2; i++) {
        if (addrs[i] && !is_loopback(addrs[i]) && !c->insecure) {
            fprintf(stderr, "spillway serve: refusing to listen on %s: no tokens are configured, so only loopback "
                            "addresses are allowed (start with --insecure to override)\n",
                    addrs[i]);
            return 1;
        }
    }
    /* Signals are taken synchronously by this thread; block them everywhere. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (spw_server_test_start)
        spw_server_test_start(c);
    spw_log_config lc;
    spw_log_config_default(&lc);
    lc.max_pending_bytes = c->max_pending_bytes;
    lc.fsync_interval_ms = (uint32_t)c->fsync_interval_ms;
    lc.node_id = c->node_id;
    spw_log *log;
    int r = spw_log_open(&lc, &log);
    if (r) {
        fprintf(stderr, "spillway serve: %s\n", spw_strerror(r));
        return 1;
    }
    spw_catalog *cat;
    if ((r = spw_catalog_open(log, c->data, c->segment_bytes, &cat)) < 0) {
        fprintf(stderr, "spillway serve: data directory %s: %s\n", c->data, spw_strerror(r));
        spw_log_close(log);
        return 1;
    }
    if (c->max_disk_bytes && spw_log_disk_bytes(log) >= c->max_disk_bytes)
        spw_warn("the data directory holds %" PRIu64 " segment bytes and max-disk-bytes is %" PRIu64
                 ": produce answers 507 disk_limit until retention or deleted streams free space",
                 spw_log_disk_bytes(log), c->max_disk_bytes);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    spw_api api = {
        .log = log,
        .cat = cat,
        .data_dir = c->data,
        .node_id = c->node_id,
        .started_ms = spw_wall_ms(),
        .max_request_bytes = c->max_request_bytes,
        .max_pending_bytes = c->max_pending_bytes,
        .max_connections = c->max_connections,
        .max_disk_bytes = c->max_disk_bytes,
    };
    spw_http_config hc = {
        .listen = c->listen,
        .threads = c->io_threads ? c->io_threads : (uint32_t)(ncpu > 0 ? ncpu : 1),
        .max_connections = c->max_connections,
        .max_header_bytes = (uint32_t)c->max_header_bytes,
        .max_body_bytes = c->max_request_bytes,
        .idle_timeout_ms = (uint32_t)c->idle_timeout_ms,
        .request_timeout_ms = (uint32_t)c->request_timeout_ms,
        .max_pipelined = c->max_pipelined,
    };
    spw_http_server *http;
    if ((r = spw_http_start(&hc, spw_api_handle, &api, &http)) < 0) {
        fprintf(stderr, "spillway serve: cannot listen on %s: %s\n", c->listen, spw_strerror(r));
        spw_catalog_close(cat);
        spw_log_close(log);
        return 1;
    }
    api.http = http;
    spw_bin_server *bin = NULL;
    if (bin_on) {
        spw_bin_config bc = {
            .listen = c->listen_bin,
            .threads = hc.threads,
            .max_connections = c->max_connections,
            .max_frame_bytes = c->max_request_bytes > SPW_FRAME_MAX_HARD ? SPW_FRAME_MAX_HARD
                                                                         : (uint32_t)c->max_request_bytes,
            .idle_timeout_ms = (uint32_t)c->idle_timeout_ms,
            .request_timeout_ms = (uint32_t)c->request_timeout_ms,
            .max_pipelined = c->max_pipelined,
        };
        if ((r = spw_bin_start(&bc, &api, &bin)) < 0) {
            fprintf(stderr, "spillway serve: cannot listen on %s: %s\n", c->listen_bin, spw_strerror(r));
            spw_http_stop(http, 0);
            spw_catalog_close(cat);
            spw_log_close(log);
            return 1;
        }
        api.bin = bin;
        spw_info("binary protocol on %.*s:%d", (int)(strrchr(c->listen_bin, ':') - c->listen_bin), c->listen_bin,
                 spw_bin_port(bin));
    }
    spw_info("listening on http://%.*s:%d with %u I/O thread(s), data in %s",
             (int)(strrchr(c->listen, ':') - c->listen), c->listen, spw_http_port(http), hc.threads, c->data);
    if (ready_fd >= 0) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%d %d\n", spw_http_port(http), bin ? spw_bin_port(bin) : 0);
        if (write(ready_fd, buf, (size_t)n) < 0) {
        }
    }
    /* Wait for a stop signal, running retention on the way. */
    for (;;) {
        struct timespec ts = {.tv_sec = (time_t)(c->retention_check_ms / 1000),
                              .tv_nsec = (long)(c->retention_check_ms % 1000) * 1000000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            spw_info("signal %d: stopping (finishing requests in flight, then flush and fsync)", sig);
            break;
        }
        if (sig == SIGHUP) {
            spw_info("SIGHUP: nothing to reload yet (tokens and limits arrive with admission control)");
            continue;
        }
        spw_catalog_retention(cat, spw_wall_ms());
    }
    if (bin)
        spw_bin_stop_accepting(bin);
    spw_http_stop(http, (uint32_t)c->shutdown_drain_ms);
    if (bin)
        spw_bin_stop(bin, (uint32_t)c->shutdown_drain_ms);
    spw_catalog_close(cat);
    spw_log_close(log);
    spw_info("stopped cleanly");
    return 0;
}
