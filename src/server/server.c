/* The server's lifecycle: see server.h. */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/id.h"
#include "core/hostport.h"
#include "core/msg.h"
#include "core/thread.h"
#include "core/workq.h"
#include "log/log.h"
#include "bin/binproto.h"
#include "wire/frame.h"
#include "http/http.h"
#include "net/conn.h"
#include "net/membudget.h"
#include "net/tls.h"
#include "os/os.h"
#include "http/api.h"
#include "svc/auth.h"
#include "catalog/catalog.h"
#include "sink/sink.h"
#include "kafka/kafka.h"
#include "svc/views.h"
#include "view/view.h"
#include "svc/coalesce.h"
#include "svc/consume.h"
#include "admit/ratelimit.h"
#include "server/sink_config.h"
#include "svc/metrics.h"
#include "svc/replicate.h"
#include "es/es.h"

#define CFG(name, type, field, def, min, max, help)                                                                    \
    {name, type, offsetof(spw_server_config, field), sizeof(((spw_server_config *)0)->field), def, min, max, help}

const spw_cfg_entry spw_server_cfg_table[] = {
    CFG("data", SPW_CFG_STR, data, "./data", 0, 0, "data directory"),
    CFG("listen", SPW_CFG_STR, listen, "127.0.0.1:7700", 0, 0,
        "HTTP address host:port; IPv6 in brackets: [::1]:7700, or [::]:7700 for every IPv4 and IPv6 address"),
    CFG("listen-bin", SPW_CFG_STR, listen_bin, "127.0.0.1:7701", 0, 0,
        "binary protocol address host:port (docs/protocol.md); \"\" or \"off\" disables it"),
    CFG("listen-kafka", SPW_CFG_STR, listen_kafka, "off", 0, 0,
        "Kafka protocol address host:port, conventionally 127.0.0.1:9092 (docs/protocol-kafka.md); \"\" or \"off\" "
        "(the default) disables it"),
    CFG("kafka-auto-create", SPW_CFG_BOOL, kafka_auto_create, "false", 0, 0,
        "a Kafka Metadata request naming a missing topic creates it as a bytes stream with the default partitions "
        "(as Kafka's auto.create.topics.enable); with tokens the login needs admin"),
    CFG("node-id", SPW_CFG_U32, node_id, "0", 0, 1023, "Snowflake node id, unique per node"),
    CFG("insecure", SPW_CFG_BOOL, insecure, "false", 0, 0,
        "allow a non-loopback listen address without tokens and TLS"),
    CFG("tokens-file", SPW_CFG_STR, tokens_file, "", 0, 0,
        "JSON file of bearer tokens (docs/operations.md); with it every request but /healthz needs a token, "
        "SIGHUP reloads it; a non-loopback listen address needs it and TLS"),
    CFG("tls-cert", SPW_CFG_STR, tls_cert, "", 0, 0,
        "PEM file of the server certificate (then any intermediates); with tls-key every listener speaks TLS "
        "(1.2 or later), SIGHUP reloads both; \"\" = plain TCP (docs/operations.md \"TLS\")"),
    CFG("tls-key", SPW_CFG_STR, tls_key, "", 0, 0, "PEM file of the private key of tls-cert"),
    CFG("io-threads", SPW_CFG_U32, io_threads, "0", 0, 256, "I/O loops; 0 = one per core"),
    CFG("max-pending-bytes", SPW_CFG_SIZE, max_pending_bytes, "64MiB", 4096, 1ull << 40,
        "budget of accepted, not yet written bytes"),
    CFG("pending-high-watermark", SPW_CFG_U32, high_watermark_pct, "80", 1, 100,
        "percent of max-pending-bytes above which all but priority-0 produces are refused (503 backpressure; the "
        "binary protocol stops reading)"),
    CFG("pending-low-watermark", SPW_CFG_U32, low_watermark_pct, "60", 0, 99,
        "percent of max-pending-bytes below which producers are let in again"),
    CFG("shed-priority-3-at", SPW_CFG_U32, shed3_pct, "50", 1, 100,
        "percent of max-pending-bytes from which priority-3 produces are shed (503 shed)"),
    CFG("shed-priority-2-at", SPW_CFG_U32, shed2_pct, "65", 1, 100,
        "percent of max-pending-bytes from which priority-2 produces are shed"),
    CFG("dedupe-max-keys", SPW_CFG_U32, dedupe_max_keys, "1000000", 1024, 100000000,
        "idempotency keys and producer sequences remembered (about 100 bytes each); past it new keys get 503 dedupe_full"),
    CFG("es-cache-keys", SPW_CFG_U32, es_cache_keys, "1000000", 16, 1000000000,
        "keys of each versioned stream whose versions stay in memory (about 64 bytes + the key each); others are "
        "read from the stream's version store (docs/api.md \"Event sourcing\")"),
    CFG("max-connections", SPW_CFG_U32, max_connections, "10000", 1, 1000000, "open client connections"),
    CFG("max-header-bytes", SPW_CFG_SIZE, max_header_bytes, "16KiB", 1024, 1 << 20, "request line + headers"),
    CFG("max-request-bytes", SPW_CFG_SIZE, max_request_bytes, "16MiB", 1024, 1ull << 30, "request body"),
    CFG("max-buffer-bytes", SPW_CFG_SIZE, max_buffer_bytes, "256MiB", 1ull << 20, 1ull << 40,
        "request bodies and frames being read, all connections together; past it connections are not read "
        "until memory comes back (at least max-request-bytes + 1MiB)"),
    CFG("idle-timeout", SPW_CFG_DURATION, idle_timeout_ms, "60s", 100, 86400000, "close idle connections after"),
    CFG("request-timeout", SPW_CFG_DURATION, request_timeout_ms, "30s", 100, 86400000,
        "a request must arrive whole within"),
    CFG("max-pipelined", SPW_CFG_U32, max_pipelined, "64", 1, 4096, "requests in flight per connection"),
    CFG("io-uring", SPW_CFG_BOOL, io_uring, "true", 0, 0,
        "the HTTP and binary I/O loops send the answers of a round (a group commit's) in one io_uring "
        "submission; false, or a kernel that refuses io_uring: one send(2) per connection"),
    CFG("fsync-interval", SPW_CFG_DURATION, fsync_interval_ms, "1s", 1, 3600000,
        "fsync data written at ack none/written at least this often"),
    CFG("retention-check", SPW_CFG_DURATION, retention_check_ms, "10s", 100, 86400000,
        "how often retention runs"),
    CFG("view-flush-interval", SPW_CFG_DURATION, view_flush_ms, "1s", 10, 86400000,
        "how often a view's store is flushed when it changed: a crash re-applies at most this much, and "
        "retention is held at the last flush"),
    CFG("shutdown-drain", SPW_CFG_DURATION, shutdown_drain_ms, "10s", 0, 600000,
        "on SIGTERM, wait this long for requests in flight"),
    CFG("rate-limit", SPW_CFG_U32, rate_limit, "0", 0, 1000000000,
        "events/s per tenant or IP for streams without their own rate_limit; 0 = off (SIGHUP reloads)"),
    CFG("rate-limit-burst", SPW_CFG_U32, rate_limit_burst, "0", 0, 1000000000,
        "token bucket capacity of that default; 0 = rate-limit (SIGHUP reloads)"),
    CFG("rate-limit-per", SPW_CFG_STR, rate_limit_per, "tenant", 0, 0,
        "key of that default: tenant (the client IP without one) or ip (SIGHUP reloads)"),
    CFG("rate-limit-algorithm", SPW_CFG_STR, rate_limit_algorithm, "token_bucket", 0, 0,
        "token_bucket or sliding_window (rate-limit events in any 1 s; SIGHUP reloads)"),
    CFG("rate-limit-max-keys", SPW_CFG_U32, rate_limit_max_keys, "100000", 64, 100000000,
        "rate-limiter entries kept (stream x tenant or IP); idle ones are evicted first"),
    CFG("max-disk-bytes", SPW_CFG_SIZE, max_disk_bytes, "0", 0, 1ull << 60,
        "segment bytes of all streams together; at the limit produce answers 507 disk_limit; 0 = no limit"),
    CFG("segment-bytes", SPW_CFG_SIZE, segment_bytes, "128MiB", 1024, 1ull << 31,
        "roll a partition's segment file at this size (retention deletes whole segments)"),
    CFG("fd-cache-segments", SPW_CFG_U32, fd_cache_segments, "256", 1, 1000000,
        "older segments whose files stay open (2 fds each; the least recently read are closed past it, and "
        "opened again when read; lowered to an eighth of the fd limit)"),
    CFG("max-unsent-bytes", SPW_CFG_SIZE, max_unsent_bytes, "256MiB", 1ull << 20, 1ull << 40,
        "answers built and not yet sent, all connections together; past it reads are answered 503 overloaded and "
        "connections holding unsent answers are not read"),
    CFG("send-timeout", SPW_CFG_DURATION, send_timeout_ms, "60s", 100, 86400000,
        "close a connection whose unsent answers do not move (its client does not read) for this long"),
    CFG("log-format", SPW_CFG_STR, log_format, "text", 0, 0,
        "log lines: text (\"TS LEVEL message\") or json (one object per line: ts, level, component, msg; "
        "docs/operations.md \"Logs\")"),
    CFG("log-level", SPW_CFG_STR, log_level, "info", 0, 0,
        "least severe log lines written: debug, info, warn or error (SIGHUP applies a change)"),
};
const size_t spw_server_cfg_count = sizeof spw_server_cfg_table / sizeof *spw_server_cfg_table;
_Static_assert(sizeof spw_server_cfg_table / sizeof *spw_server_cfg_table <= SPW_SERVER_CFG_MAX,
               "spw_server_config.from_flag needs a slot per table row");

static void count_parts(void *arg, spw_stream *s) { *(uint64_t *)arg += s->cfg.partitions; }

/* What the fd limit leaves for client connections (both listeners):
 * the limit less 2 per partition open now (its active segment), 2 per
 * cached segment and FD_HEADROOM for the rest (listening sockets, epoll
 * and eventfds, the data directory's lock, small files written, sinks'
 * sockets, segments being read past the cache, partitions created
 * later). Past it a connection is accepted and closed (net/conn.h). */
/* The I/O workers: reads of segments, stream deletion, a new group's
 * fsyncs (docs/architecture.md, "Threads of spillway serve"). Past
 * SPW_IO_QUEUE waiting jobs a read is answered 503 unavailable. */
#define SPW_IO_WORKERS 4
#define SPW_IO_QUEUE 4096
#define FD_HEADROOM 128
#define FD_MIN_CONNECTIONS 16
static void limit_connection_fds(spw_catalog *cat, uint64_t limit, uint32_t fd_cache, uint32_t max_connections)
{
    uint64_t parts = 0;
    spw_catalog_each(cat, count_parts, &parts);
    uint64_t files = 2 * parts + 2 * (uint64_t)fd_cache + FD_HEADROOM;
    uint64_t room = limit > files + FD_MIN_CONNECTIONS ? limit - files : FD_MIN_CONNECTIONS;
    if (room > UINT32_MAX - 1)
        room = UINT32_MAX - 1;
    spw_net_set_conn_fds((uint32_t)room);
    if (room < 2 * (uint64_t)max_connections)
        spw_info("file descriptors: limit %" PRIu64 ", %" PRIu64 " partitions, fd cache %u segments: at most %" PRIu64
                 " client connections together (max-connections %u per listener); raise the limit (ulimit -n, "
                 "LimitNOFILE=) for more",
                 limit, parts, fd_cache, room, max_connections);
}

/* The settings SIGHUP applies; the others need a restart. */
static int reloadable(const spw_cfg_entry *e)
{
    return strcmp(e->name, "log-level") == 0 || strcmp(e->name, "rate-limit") == 0 || strcmp(e->name, "rate-limit-burst") == 0 ||
           strcmp(e->name, "rate-limit-per") == 0 || strcmp(e->name, "rate-limit-algorithm") == 0;
}

static size_t field_size(const spw_cfg_entry *e)
{
    switch (e->type) {
    case SPW_CFG_STR: return e->cap;
    case SPW_CFG_U32: return sizeof(uint32_t);
    case SPW_CFG_BOOL: return sizeof(int);
    default: return sizeof(uint64_t);
    }
}

/* The default rate limit of c. Returns 0, or -1 with a sentence in err. */
static int rate_default(const spw_server_config *c, spw_rl_limit *out, char *err, size_t cap)
{
    memset(out, 0, sizeof *out);
    if (spw_rl_per_parse(c->rate_limit_per, &out->per)) {
        snprintf(err, cap, "rate-limit-per: expected tenant or ip, got '%s'", c->rate_limit_per);
        return -1;
    }
    if (spw_rl_algo_parse(c->rate_limit_algorithm, &out->algo)) {
        snprintf(err, cap, "rate-limit-algorithm: expected token_bucket or sliding_window, got '%s'",
                 c->rate_limit_algorithm);
        return -1;
    }
    out->rate = c->rate_limit;
    out->burst = out->algo == SPW_RL_SLIDING_WINDOW ? 0 : c->rate_limit_burst ? c->rate_limit_burst : c->rate_limit;
    return 0;
}

static void rate_describe(const spw_rl_limit *l, char *out, size_t cap)
{
    if (!(l->rate > 0))
        snprintf(out, cap, "off");
    else if (l->algo == SPW_RL_SLIDING_WINDOW)
        snprintf(out, cap, "%.0f events in any 1 s per %s (sliding_window)", l->rate, spw_rl_per_name(l->per));
    else
        snprintf(out, cap, "%.0f events/s, burst %.0f, per %s (token_bucket)", l->rate, l->burst,
                 spw_rl_per_name(l->per));
}

/* The log-level and log-format settings as core/msg.h values. Returns 0,
 * or -1 with a sentence in err. */
static int log_settings(const spw_server_config *c, int *level, int *format, char *err, size_t cap)
{
    if (spw_msg_level_parse(c->log_level, level)) {
        snprintf(err, cap, "log-level must be debug, info, warn or error, not '%s'", c->log_level);
        return -1;
    }
    if (spw_msg_format_parse(c->log_format, format)) {
        snprintf(err, cap, "log-format must be text or json, not '%s'", c->log_format);
        return -1;
    }
    return 0;
}

/*
 * SIGHUP: defaults, then the config file again, then what the command
 * line gave (flags still win); applies the rate-limit settings and says
 * which other changed settings wait for a restart. A file that does not
 * load, or a bad value, changes nothing.
 */
static void reload(spw_server_config *cur, spw_rl_table *rl)
{
    if (!cur->config[0]) {
        spw_warn("SIGHUP: the server was started without --config; nothing to reload");
        return;
    }
    static spw_server_config n; /* only the signal-handling thread reloads */
    memset(&n, 0, sizeof n);
    spw_cfg_defaults(spw_server_cfg_table, spw_server_cfg_count, &n);
    char err[1200];
    if (spw_cfg_load_ex(spw_server_cfg_table, spw_server_cfg_count, &n, cur->config, SPW_SINK_CONFIG_PREFIX, NULL,
                        NULL, err, sizeof err)) {
        spw_error("SIGHUP: %s; keeping the current settings", err);
        return;
    }
    for (size_t i = 0; i < spw_server_cfg_count; i++) {
        const spw_cfg_entry *e = &spw_server_cfg_table[i];
        if (cur->from_flag[i])
            memcpy((char *)&n + e->off, (const char *)cur + e->off, field_size(e));
    }
    spw_rl_limit lim;
    if (rate_default(&n, &lim, err, sizeof err)) {
        spw_error("SIGHUP: %s: %s; keeping the current settings", cur->config, err);
        return;
    }
    int level, format;
    if (log_settings(&n, &level, &format, err, sizeof err)) {
        spw_error("SIGHUP: %s: %s; keeping the current settings", cur->config, err);
        return;
    }
    for (size_t i = 0; i < spw_server_cfg_count; i++) {
        const spw_cfg_entry *e = &spw_server_cfg_table[i];
        char *was = (char *)cur + e->off;
        const char *now = (const char *)&n + e->off;
        if (memcmp(was, now, field_size(e)) == 0 || (e->type == SPW_CFG_STR && strcmp(was, now) == 0))
            continue;
        if (reloadable(e))
            memcpy(was, now, field_size(e));
        else
            spw_warn("SIGHUP: %s changed in %s; it takes effect at the next restart", e->name, cur->config);
    }
    spw_rl_set_default(rl, &lim);
    spw_msg_set_level(level);
    char d[160];
    rate_describe(&lim, d, sizeof d);
    spw_info("SIGHUP: reloaded %s; default rate limit: %s (sink lines apply at start only; change sinks at run "
             "time through /v1/sinks)",
             cur->config, d);
}

void (*spw_server_test_start)(const spw_server_config *c);

/* Is the listen address loopback only: localhost, 127.0.0.0/8, [::1], or
 * an IPv4-mapped 127.0.0.0/8 ([::ffff:127.0.0.1])? Any other address
 * ([::] and 0.0.0.0 included) reaches beyond the machine. */
static int is_loopback(const char *listen)
{
    char host[256];
    uint16_t port;
    int v6;
    if (spw_hostport_parse(listen, host, sizeof host, &port, 1, &v6))
        return 0;
    if (!v6) {
        struct in_addr a;
        return strcmp(host, "localhost") == 0 ||
               (inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127);
    }
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) != 1)
        return 0;
    if (IN6_IS_ADDR_LOOPBACK(&a6))
        return 1;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

/*
 * The stop, once a first SIGINT or SIGTERM has come (docs/operations.md
 * "Stopping"): each step is logged as it begins ("stopping: ..."), a
 * watcher thread says every 5 s which step the stop still waits for, and
 * a second SIGINT or SIGTERM ends the process at once, after the log's
 * own flush: every record accepted is written (write(2), so a process
 * exit loses none of it; what was not yet fsynced is fsynced by nobody),
 * waiting at most 5 s for the writes; then _exit(1).
 */
static pthread_mutex_t stop_mu = PTHREAD_MUTEX_INITIALIZER;
static spw_log *stop_log;                   /* under stop_mu; NULL once the log closes */
static const char *_Atomic stop_step = "";  /* the step the stop is in */

static void stop_step_set(const char *step)
{
    atomic_store(&stop_step, step);
    spw_info("stopping: %s", step);
}

static void *stop_watcher(void *arg)
{
    (void)arg;
    spw_thread_name(pthread_self(), "spw-stop-watch"); /* detached: it names itself */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    uint64_t t0 = spw_mono_ms();
    for (;;) {
        struct timespec ts = {.tv_sec = 5};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig != SIGINT && sig != SIGTERM) {
            spw_warn("still stopping after %.0f s: %s", (double)(spw_mono_ms() - t0) / 1000.0,
                     atomic_load(&stop_step));
            continue;
        }
        spw_warn("signal %d again: stopping at once, without waiting for %s", sig, atomic_load(&stop_step));
        pthread_mutex_lock(&stop_mu);
        if (stop_log) {
            uint64_t until = spw_mono_ms() + 5000, left;
            while ((left = spw_log_pending_bytes(stop_log)) > 0 && spw_mono_ms() < until)
                usleep(5000);
            if (left)
                spw_error("%" PRIu64 " bytes of accepted records are not written after 5 s (the disk does not "
                          "take them); they are lost",
                          left);
        }
        spw_warn("exiting now: every record accepted is written; what was not fsynced yet is not");
        fflush(stderr);
        _exit(1);
    }
    return NULL;
}

static void stop_watch_start(spw_log *log)
{
    pthread_mutex_lock(&stop_mu);
    stop_log = log;
    pthread_mutex_unlock(&stop_mu);
    pthread_t th;
    pthread_attr_t pa;
    pthread_attr_init(&pa);
    pthread_attr_setdetachstate(&pa, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &pa, stop_watcher, NULL) != 0)
        spw_warn("cannot start the stop watcher: a second signal will not cut the stop short");
    pthread_attr_destroy(&pa);
}

/*
 * Closes what serve opened behind its listeners, in the one order that is
 * safe: sinks (workers stopped, holds released), the coalescer (buffers
 * written and answered), the tables, the catalog and the log (flush and
 * fsync), then the groups' state (after the last produce completion, which
 * may kick it; its waiter thread is stopped first) and the tokens. Every part may be NULL (start failed
 * before it). The listeners are the caller's: stopped before this.
 */
static void close_server_parts(spw_api *api, spw_catalog *cat, spw_log *log, spw_auth *auth)
{
    spw_catalog_set_io(cat, NULL);  /* deleted streams reaped in place from now on */
    spw_consume_set_io(api->svc.groups, NULL);
    spw_workq_destroy(api->svc.io); /* idle: the listeners' drain waited for every answer */
    spw_consume_stop(api->svc.groups); /* its waiter thread first (idempotent) */
    if (api->sinks)
        stop_step_set("sinks (each finishes or gives up its write to its target)");
    spw_sinks_close(api->sinks);
    spw_repl_free(api->svc.repl); /* after the sinks: they report their commits to it */
    stop_step_set("views (each apply thread finishes its cycle)");
    spw_views_close(api->svc.views); /* after the listeners: parked reads were answered */
    stop_step_set("the coalescer, then the streams (flush and fsync)");
    spw_coalesce_close(api->svc.coal);
    spw_rl_destroy(api->svc.rl);
    spw_dd_free(api->svc.dd);
    spw_consume_free(api->svc.groups); /* before the catalog: it unhooks the groups from it */
    api->svc.groups = NULL;
    spw_catalog_close(cat);
    stop_step_set("the log (its flusher and fsync threads)");
    pthread_mutex_lock(&stop_mu);
    stop_log = NULL; /* every partition is closed: everything accepted is written */
    pthread_mutex_unlock(&stop_mu);
    spw_log_close(log);
    spw_auth_close(auth);
    spw_metrics_free(api->svc.metrics); /* last: every loop that served /metrics has stopped */
}

static int serve(const spw_server_config *c, int ready_fd, spw_tls *tls);

/* svc's question to the sinks (svc/svc.h replica_ok). */
static int replica_ok(void *ctx, const char *sink, const char *stream, char *err, size_t cap)
{
    return spw_sinks_replica_ok(ctx, sink, stream, err, cap);
}

/* The allocator's policy for a server whose requests come and go in the
 * hundreds of kilobytes (an HTTP body of 1000 events, its records, the
 * encoded batch). glibc's default gives freed memory at the top of a
 * thread's heap back to the kernel as soon as 128 KiB or so are free
 * (madvise DONTNEED), so every such request faulted its pages in again,
 * zero-filled: ~50 page faults and 2 madvise calls per 1000-event HTTP
 * request (docs/performance.md). Keep up to TRIM bytes free at the top of
 * each heap instead, and serve blocks below MMAP from the heaps (as glibc's
 * own adaptive threshold does at most), not from a mapping per block. Live
 * memory stays bounded by max-buffer-bytes; this only keeps what was freed. */
static void malloc_policy(void)
{
#if defined(__GLIBC__)
    enum { TRIM = 8 << 20, MMAP = 32 << 20 };
    mallopt(M_MMAP_THRESHOLD, MMAP);
    mallopt(M_TRIM_THRESHOLD, TRIM);
#endif
}

int spw_server_run(const spw_server_config *c, int ready_fd)
{
    malloc_policy(); /* before any thread starts */
    {
        int level, format;
        char lerr[200];
        if (log_settings(c, &level, &format, lerr, sizeof lerr)) {
            fprintf(stderr, "spillway serve: %s\n", lerr);
            return 1;
        }
        spw_msg_set_level(level);
        spw_msg_set_format(format);
    }
    int bin_on = c->listen_bin[0] && strcmp(c->listen_bin, "off") != 0;
    int kafka_on = c->listen_kafka[0] && strcmp(c->listen_kafka, "off") != 0;
    const char *addrs[3] = {c->listen, bin_on ? c->listen_bin : NULL, kafka_on ? c->listen_kafka : NULL};
    int tls_on = c->tls_cert[0] || c->tls_key[0];
    if (tls_on && !(c->tls_cert[0] && c->tls_key[0])) {
        fprintf(stderr, "spillway serve: tls-cert and tls-key go together: %s is set and %s is not\n",
                c->tls_cert[0] ? "tls-cert" : "tls-key", c->tls_cert[0] ? "tls-key" : "tls-cert");
        return 1;
    }
    static const char *const addr_opt[3] = {"listen", "listen-bin", "listen-kafka"};
    for (int i = 0; i < 3; i++) {
        char host[256];
        uint16_t port;
        if (addrs[i] && !(addrs[i][0] == ':' && !strchr(addrs[i] + 1, ':')) &&
            spw_hostport_parse(addrs[i], host, sizeof host, &port, 1, NULL)) {
            fprintf(stderr,
                    "spillway serve: %s %s is not HOST:PORT or [IPV6]:PORT (an IPv6 address in brackets: "
                    "[::1]:7700, [::]:7700 for every address)\n",
                    addr_opt[i], addrs[i]);
            return 1;
        }
    }
    /* Without tokens anyone who can connect may do anything, and without
     * TLS the tokens and the data cross the network in clear: only
     * loopback, unless the operator says the network is trusted. */
    for (int i = 0; i < 3; i++) {
        if (addrs[i] && !is_loopback(addrs[i]) && !c->insecure && (!c->tokens_file[0] || !tls_on)) {
            const char *why = !c->tokens_file[0] && !tls_on ? "no tokens file and no TLS certificate are"
                              : !c->tokens_file[0]         ? "no tokens file is"
                                                           : "no TLS certificate is";
            fprintf(stderr,
                    "spillway serve: refusing to listen on %s: it is not a loopback address and %s configured, so "
                    "anyone who can reach it could %s. A non-loopback listener needs tokens (--tokens-file FILE) "
                    "and TLS (--tls-cert FILE --tls-key FILE); see docs/operations.md \"Security\". Start with "
                    "--insecure only if the network is trusted.\n",
                    addrs[i], why,
                    !c->tokens_file[0] ? "read, write and delete every stream"
                                       : "read the tokens and the data on the wire and reuse the tokens");
            return 1;
        }
    }
    spw_tls *tls = NULL;
    if (tls_on) {
        char err[800];
        if (spw_tls_open(c->tls_cert, c->tls_key, &tls, err, sizeof err)) {
            fprintf(stderr, "spillway serve: TLS: %s\n", err);
            return 1;
        }
        char d[500];
        spw_tls_describe(tls, d, sizeof d);
        spw_info("TLS on every listener (1.2 or later): %s: %s", c->tls_cert, d);
        struct stat st;
        if (stat(c->tls_key, &st) == 0 && (st.st_mode & 077))
            spw_warn("tls-key %s can be read by other users (mode %03o): chmod 600 it", c->tls_key,
                     (unsigned)(st.st_mode & 0777));
    }
    int r = serve(c, ready_fd, tls);
    spw_tls_free(tls); /* every listener has stopped */
    return r;
}

static uint64_t m_tls_hs_failures(void *arg)
{
    (void)arg;
    return spw_net_tls_handshake_failures();
}

static int serve(const spw_server_config *c, int ready_fd, spw_tls *tls)
{
    int bin_on = c->listen_bin[0] && strcmp(c->listen_bin, "off") != 0;
    int kafka_on = c->listen_kafka[0] && strcmp(c->listen_kafka, "off") != 0;
    const char *addrs[3] = {c->listen, bin_on ? c->listen_bin : NULL, kafka_on ? c->listen_kafka : NULL};
    if (!(c->shed3_pct <= c->shed2_pct && c->shed2_pct <= c->high_watermark_pct &&
          c->low_watermark_pct < c->high_watermark_pct)) {
        fprintf(stderr, "spillway serve: need shed-priority-3-at <= shed-priority-2-at <= pending-high-watermark and "
                        "pending-low-watermark < pending-high-watermark (got %u, %u, %u, %u)\n",
                c->shed3_pct, c->shed2_pct, c->high_watermark_pct, c->low_watermark_pct);
        return 1;
    }
    if (c->max_buffer_bytes < c->max_request_bytes + (1u << 20)) {
        fprintf(stderr,
                "spillway serve: max-buffer-bytes (%" PRIu64 ") must be at least max-request-bytes (%" PRIu64
                ") + 1MiB, or a request of the largest size could never be read\n",
                c->max_buffer_bytes, c->max_request_bytes);
        return 1;
    }
    spw_auth *auth = NULL;
    if (c->tokens_file[0]) {
        char err[600];
        if (spw_auth_open(c->tokens_file, &auth, err, sizeof err)) {
            fprintf(stderr, "spillway serve: tokens file %s\n", err);
            return 1;
        }
        spw_tokens *t = spw_auth_acquire(auth, NULL);
        uint32_t nt = spw_tokens_count(t);
        spw_tokens_put(t);
        if (nt == 0)
            spw_warn("tokens file %s holds no tokens: every request but /healthz will be refused", c->tokens_file);
        else
            spw_info("%u token(s) loaded from %s; requests need one", nt, c->tokens_file);
    } else {
        for (int i = 0; i < 3; i++)
            if (addrs[i] && !is_loopback(addrs[i]))
                spw_warn("listening on %s without tokens (--insecure): anyone who can reach it may read, write and "
                         "delete every stream",
                         addrs[i]);
    }
    for (int i = 0; i < 3 && !tls && c->tokens_file[0]; i++)
        if (addrs[i] && !is_loopback(addrs[i]))
            spw_warn("listening on %s without TLS (--insecure): tokens and data cross the network in clear", addrs[i]);
    spw_server_config cur = *c; /* what runs; SIGHUP updates its rate-limit settings */
    spw_rl_limit rate_def;
    char rerr[300];
    if (rate_default(c, &rate_def, rerr, sizeof rerr)) {
        fprintf(stderr, "spillway serve: %s\n", rerr);
        return 2;
    }
    /* One server per data directory: two would run two flushers over the
     * same files (docs/operations.md "One server per data directory"). The
     * lock is held until the process ends. */
    int lock_fd = -1, r;
    long holder = 0;
    if ((r = spw_os_mkdirs(c->data, 0755)) < 0 || (r = spw_os_lock_dir(c->data, &lock_fd, &holder)) < 0) {
        if (r == -EWOULDBLOCK && holder)
            fprintf(stderr,
                    "spillway serve: data directory %s is in use by another spillway server (pid %ld holds %s/%s); "
                    "stop it first, or give this one another --data\n",
                    c->data, holder, c->data, SPW_LOCK_FILE);
        else if (r == -EWOULDBLOCK)
            fprintf(stderr,
                    "spillway serve: data directory %s is in use by another spillway server (it holds %s/%s); "
                    "stop it first, or give this one another --data\n",
                    c->data, c->data, SPW_LOCK_FILE);
        else
            fprintf(stderr, "spillway serve: data directory %s: cannot lock %s: %s\n", c->data, SPW_LOCK_FILE,
                    spw_strerror(r));
        spw_auth_close(auth);
        return 1;
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
    /* File descriptors (docs/operations.md, "File descriptors"):
     * the soft limit raised to the hard one; the fd cache within an eighth
     * of it, so segments never take the fds connections and files need. */
    long fd_limit = spw_os_raise_fd_limit();
    uint32_t fd_cache = c->fd_cache_segments;
    if (fd_limit > 0 && (uint64_t)fd_cache * 2 > (uint64_t)fd_limit / 4) {
        fd_cache = (uint32_t)(fd_limit / 8 > 0 ? fd_limit / 8 : 1);
        spw_warn("fd-cache-segments %u lowered to %u: the file descriptor limit is %ld (2 fds per cached segment, "
                 "at most a quarter of the limit)",
                 c->fd_cache_segments, fd_cache, fd_limit);
    }
    spw_log_config lc;
    spw_log_config_default(&lc);
    lc.fd_cache_segments = fd_cache;
    lc.max_pending_bytes = c->max_pending_bytes;
    lc.fsync_interval_ms = (uint32_t)c->fsync_interval_ms;
    lc.node_id = c->node_id;
    spw_log *log;
    r = spw_log_open(&lc, &log);
    if (r) {
        fprintf(stderr, "spillway serve: %s\n", spw_strerror(r));
        spw_auth_close(auth);
        return 1;
    }
    spw_catalog *cat;
    if ((r = spw_catalog_open(log, c->data, c->segment_bytes, &cat)) < 0) {
        fprintf(stderr, "spillway serve: data directory %s: %s\n", c->data, spw_strerror(r));
        spw_log_close(log);
        spw_auth_close(auth);
        return 1;
    }
    if (c->max_disk_bytes && spw_log_disk_bytes(log) >= c->max_disk_bytes)
        spw_warn("the data directory holds %" PRIu64 " segment bytes and max-disk-bytes is %" PRIu64
                 ": produce answers 507 disk_limit until retention or deleted streams free space",
                 spw_log_disk_bytes(log), c->max_disk_bytes);
    if (fd_limit > 0)
        limit_connection_fds(cat, (uint64_t)fd_limit, fd_cache, c->max_connections);
    uint64_t dd_k0, dd_k1;
    {
        char derr[1200];
        if ((r = spw_dd_secret_load(c->data, &dd_k0, &dd_k1, derr, sizeof derr)) < 0) {
            fprintf(stderr, "spillway serve: the dedupe secret: %s\n", derr);
            spw_catalog_close(cat);
            spw_log_close(log);
            spw_auth_close(auth);
            return 1;
        }
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    spw_membudget buffers, unsent;
    spw_membudget_init(&buffers, c->max_buffer_bytes);
    spw_membudget_init(&unsent, c->max_unsent_bytes);
    spw_api api = {
        .svc = {
            .log = log,
            .cat = cat,
            .data_dir = c->data,
            .node_id = c->node_id,
            .started_ms = spw_wall_ms(),
            .max_request_bytes = c->max_request_bytes,
            .max_pending_bytes = c->max_pending_bytes,
            .auth = auth,
            .rl = spw_rl_create(c->rate_limit_max_keys),
            .dd = spw_dd_new(c->dedupe_max_keys),
            .max_disk_bytes = c->max_disk_bytes,
            .metrics = spw_metrics_new(),
        },
        .max_connections = c->max_connections,
        .buffers = &buffers,
        .unsent = &unsent,
    };
    /* Disk work of requests, off the I/O loops (core/workq.h). */
    api.svc.io = spw_workq_create("spw-io", SPW_IO_WORKERS, SPW_IO_QUEUE);
    api.svc.repl = spw_repl_new();
    if (!api.svc.repl) {
        fprintf(stderr, "spillway serve: cannot start a thread\n");
        close_server_parts(&api, cat, log, auth);
        return 1;
    }
    spw_repl_metrics_register(api.svc.repl, api.svc.metrics);
    spw_catalog_set_io(cat, api.svc.io);
    spw_rl_set_default(api.svc.rl, &rate_def);
    spw_dd_set_secret(api.svc.dd, dd_k0, dd_k1); /* before the rebuild: the keys in the headers are under it */
    spw_produce_dedupe_rebuild(&api.svc);
    /* Versioned streams: each version store opened and its log tail
     * indexed before any request can ask for a version. */
    spw_es_set_cache_keys(c->es_cache_keys);
    spw_es_open_all(cat);
    /* No id at or below one stored, whatever the clock did while the server
     * was down. The segments of the last hour: a clock that went back
     * finds the segments written before the stop "in the future" (mtime
     * above now), so they are walked; one that went forward issues ids
     * above the stored ones anyway. */
    spw_catalog_observe_ids(cat, spw_wall_ms() - 3600 * 1000);
    spw_pressure_config pc = {.budget = c->max_pending_bytes,
                               .shed3_pct = c->shed3_pct,
                               .shed2_pct = c->shed2_pct,
                               .high_pct = c->high_watermark_pct,
                               .low_pct = c->low_watermark_pct};
    spw_pressure_init(&api.svc.pressure, log, &pc);
    spw_coalesce_env ce = {.log = api.svc.log,
                           .cat = api.svc.cat,
                           .pressure = &api.svc.pressure,
                           .max_disk_bytes = api.svc.max_disk_bytes,
                           .rejected = api.svc.rejected};
    api.svc.coal = spw_coalesce_new(&ce);
    if ((r = spw_consume_start(api.svc.data_dir, api.svc.cat, api.svc.log, &api.svc.positions_clamped, &api.svc.groups)) < 0) {
        fprintf(stderr, "spillway serve: %s/groups: %s\n", c->data, spw_strerror(r));
        close_server_parts(&api, cat, log, auth);
        return 1;
    }
    if ((r = spw_views_open(api.svc.cat, api.svc.data_dir, c->view_flush_ms, &api.svc.views)) < 0)
        spw_error("views: %s/views: %s; no view runs", c->data, spw_strerror(r));
    spw_view_metrics_register(&api.svc);
    spw_consume_set_io(api.svc.groups, api.svc.io); /* leases read off the loops */
    if ((r = spw_sinks_open(&api.svc, &api.sinks)) < 0)
        spw_error("sinks: %s/sinks: %s; no sink runs", c->data, spw_strerror(r));
    if (api.sinks) {
        api.svc.replica_ok = replica_ok;
        api.svc.replica_ctx = api.sinks;
    }
    if (c->config[0]) {
        char serr[1400];
        int ns = spw_sink_config_apply(&api, c->config, serr, sizeof serr);
        if (ns < 0) {
            fprintf(stderr, "spillway serve: %s\n", serr);
            close_server_parts(&api, cat, log, auth);
            return 1;
        }
        if (ns > 0)
            spw_info("%d sink(s) defined in %s", ns, c->config);
    }
    spw_api_metrics_register(&api);
    if (tls)
        spw_metrics_add_u64(api.svc.metrics, "spillway_tls_handshake_failures_total",
                            "TLS handshakes that failed (plain text, an unknown CA, a bad hello) or did not finish "
                            "within request-timeout, every listener",
                            SPW_METRIC_COUNTER, m_tls_hs_failures, NULL);
    spw_http_config hc = {
        .listen = c->listen,
        .threads = c->io_threads ? c->io_threads : (uint32_t)(ncpu > 0 ? ncpu : 1),
        .max_connections = c->max_connections,
        .max_header_bytes = (uint32_t)c->max_header_bytes,
        .max_body_bytes = c->max_request_bytes,
        .idle_timeout_ms = (uint32_t)c->idle_timeout_ms,
        .request_timeout_ms = (uint32_t)c->request_timeout_ms,
        .max_pipelined = c->max_pipelined,
        .buffers = &buffers,
        .unsent = &unsent,
        .send_timeout_ms = (uint32_t)c->send_timeout_ms,
        .io_uring = c->io_uring,
        .body_allowed = spw_api_body_allowed,
        .tls = tls,
    };
    spw_http_server *http;
    if ((r = spw_http_start(&hc, spw_api_handle, &api, &http)) < 0) {
        fprintf(stderr, "spillway serve: cannot listen on %s: %s%s\n", c->listen, spw_strerror(r),
                    r == -EADDRINUSE ? " (another process, perhaps another spillway server, listens there)" : "");
        close_server_parts(&api, cat, log, auth);
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
            .buffers = &buffers,
            .unsent = &unsent,
            .send_timeout_ms = (uint32_t)c->send_timeout_ms,
            .io_uring = c->io_uring,
            .tls = tls,
        };
        if ((r = spw_bin_start(&bc, &api.svc, &bin)) < 0) {
            fprintf(stderr, "spillway serve: cannot listen on %s: %s%s\n", c->listen_bin, spw_strerror(r),
                    r == -EADDRINUSE ? " (another process, perhaps another spillway server, listens there)" : "");
            spw_consume_stop(api.svc.groups);
            spw_http_stop(http, 0);
            close_server_parts(&api, cat, log, auth);
            return 1;
        }
        api.bin = bin;
        spw_bin_metrics_register(api.svc.metrics, bin);
        spw_info("binary protocol on %.*s:%d", (int)(strrchr(c->listen_bin, ':') - c->listen_bin), c->listen_bin,
                 spw_bin_port(bin));
    }
    spw_kafka_server *kafka = NULL;
    if (kafka_on) {
        spw_kafka_config kc = {
            .listen = c->listen_kafka,
            .threads = hc.threads,
            .max_connections = c->max_connections,
            .max_request_bytes = c->max_request_bytes > (1u << 30) ? (1u << 30) : (uint32_t)c->max_request_bytes,
            .idle_timeout_ms = (uint32_t)c->idle_timeout_ms,
            .request_timeout_ms = (uint32_t)c->request_timeout_ms,
            .max_pipelined = c->max_pipelined,
            .buffers = &buffers,
            .tls = tls,
            .auto_create = c->kafka_auto_create,
        };
        if ((r = spw_kafka_start(&kc, &api.svc, &kafka)) < 0) {
            fprintf(stderr, "spillway serve: cannot listen on %s: %s%s\n", c->listen_kafka, spw_strerror(r),
                    r == -EADDRINUSE ? " (another process, perhaps a Kafka broker, listens there)" : "");
            spw_consume_stop(api.svc.groups);
            if (bin)
                spw_bin_stop(bin, 0);
            spw_http_stop(http, 0);
            close_server_parts(&api, cat, log, auth);
            return 1;
        }
        spw_kafka_metrics_register(api.svc.metrics, kafka);
        spw_info("Kafka protocol on %.*s:%d", (int)(strrchr(c->listen_kafka, ':') - c->listen_kafka),
                 c->listen_kafka, spw_kafka_port(kafka));
    }
    spw_info("listening on %s://%.*s:%d with %u I/O thread(s), data in %s",
             tls ? "https" : "http", (int)(strrchr(c->listen, ':') - c->listen), c->listen, spw_http_port(http),
             hc.threads, c->data);
    {
        char d[160];
        rate_describe(&rate_def, d, sizeof d);
        spw_info("default rate limit: %s; at most %u limiter entries", d, c->rate_limit_max_keys);
    }
    atomic_store(&api.svc.ready, 1); /* GET /readyz: started */
    if (ready_fd >= 0) {
        char buf[32];
        int n = kafka ? snprintf(buf, sizeof buf, "%d %d %d\n", spw_http_port(http), bin ? spw_bin_port(bin) : 0,
                                 spw_kafka_port(kafka))
                      : snprintf(buf, sizeof buf, "%d %d\n", spw_http_port(http), bin ? spw_bin_port(bin) : 0);
        if (write(ready_fd, buf, (size_t)n) < 0) {
        }
    }
    /* Wait for a stop signal, running retention on the way. */
    for (;;) {
        struct timespec ts = {.tv_sec = (time_t)(c->retention_check_ms / 1000),
                              .tv_nsec = (long)(c->retention_check_ms % 1000) * 1000000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            spw_info("signal %d: stopping (finishing requests in flight, then flush and fsync; a second signal "
                     "stops at once)",
                     sig);
            break;
        }
        if (sig == SIGHUP) {
            char err[600];
            if (!auth) {
                spw_info("SIGHUP: no tokens file is configured; nothing to reload");
            } else if (spw_auth_reload(auth, err, sizeof err)) {
                spw_error("SIGHUP: tokens file %s; the tokens loaded before stay in force", err);
            } else {
                spw_tokens *t = spw_auth_acquire(auth, NULL);
                spw_info("SIGHUP: %u token(s) reloaded from %s", spw_tokens_count(t), auth->path);
                spw_tokens_put(t);
            }
            if (tls) {
                if (spw_tls_reload(tls, err, sizeof err)) {
                    spw_error("SIGHUP: TLS: %s; the certificate loaded before stays in force", err);
                } else {
                    char d[500];
                    spw_tls_describe(tls, d, sizeof d);
                    spw_info("SIGHUP: TLS certificate reloaded from %s: %s (new connections use it)", c->tls_cert, d);
                }
            }
            reload(&cur, api.svc.rl);
            continue;
        }
        spw_catalog_retention(cat, spw_wall_ms());
    }
    stop_watch_start(log);
    stop_step_set("the listeners (requests in flight finish, up to shutdown-drain)");
    if (bin)
        spw_bin_stop_accepting(bin);
    if (kafka)
        spw_kafka_stop_accepting(kafka);
    spw_consume_stop(api.svc.groups); /* parked polls answered before the loops stop */
    spw_repl_stop(api.svc.repl); /* replicated requests waiting: 504, durable here (docs/api.md) */
    spw_http_stop(http, (uint32_t)c->shutdown_drain_ms);
    if (bin)
        spw_bin_stop(bin, (uint32_t)c->shutdown_drain_ms);
    if (kafka)
        spw_kafka_stop(kafka, (uint32_t)c->shutdown_drain_ms);
    close_server_parts(&api, cat, log, auth);
    close(lock_fd); /* everything is on disk and closed: the next server may start */
    spw_info("stopped cleanly");
    return 0;
}
