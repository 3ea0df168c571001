/*
 * The server under a low file-descriptor limit (docs/operations.md,
 * "File descriptors"): started with `ulimit -n 256` (soft and
 * hard, through a shell wrapper), so raising the soft limit gains nothing.
 *   - A stream of ~300 segments (segment-bytes 1 KiB, one produce a
 *     segment): older segments' files go to the bounded fd cache, so the
 *     rolls keep working far past 128 segments (2 fds each);
 *   - 1,000 connection attempts held open: the server accepts up to what
 *     the fd limit leaves for connections and closes the rest at once; a
 *     client connected before keeps being answered meanwhile — produces
 *     that roll segments, a read of the oldest records (reopened from the
 *     cache), /metrics — and the fd gauges are right (process_max_fds is
 *     256, process_open_fds is what /proc/PID/fd shows);
 *   - accept failures for want of an fd are counted, bounded (no spin: at
 *     most one per connection attempt);
 *   - once the flood closes, a new client is accepted and answered.
 */
#include <dirent.h>
#include <sys/resource.h>

#include "server.h"

#define FLOOD 1000

/* One request on the kept connection fd (HTTP/1.1 keep-alive). */
static resp kept(int fd, const char *method, const char *path, const char *body)
{
    char head[1024];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", method, path,
                     body ? "Content-Type: application/x-ndjson\r\n" : "", blen);
    send_all(fd, head, (size_t)n);
    if (blen)
        send_all(fd, body, blen);
    static char buf[1 << 22];
    size_t have = 0;
    resp r = {0};
    CHECK(read_resp(fd, &r, buf, sizeof buf, &have) == 0);
    CHECK_EQ(have, 0);
    return r;
}

static void produce_one(int fd, int i)
{
    char body[1100];
    int n = snprintf(body, sizeof body, "{\"i\":%d,\"pad\":\"", i);
    memset(body + n, 'p', 900);
    snprintf(body + n + 900, sizeof body - (size_t)n - 900, "\"}\n");
    resp r = kept(fd, "POST", "/v1/streams/s/events?ack=fsync", body);
    if (r.status != 202)
        fprintf(stderr, "produce %d: %d %s\n", i, r.status, r.body);
    CHECK_EQ(r.status, 202);
    free(r.body);
}

static long long metric(int fd, const char *name)
{
    resp r = kept(fd, "GET", "/metrics", NULL);
    CHECK_EQ(r.status, 200);
    long long v = metric_in(r.body, name);
    free(r.body);
    return v;
}

static int count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    CHECK(d != NULL);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* A fresh connection's GET, or -1 if the server closed it unanswered. */
static int try_get(int port, const char *path)
{
    int fd = tcp_connect(port);
    char head[512];
    int n = snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    if (send(fd, head, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return -1;
    }
    char *buf = malloc(1 << 20);
    size_t have = 0;
    resp r = {0};
    int st = read_resp(fd, &r, buf, 1 << 20, &have) == 0 ? r.status : -1;
    free(r.body);
    free(buf);
    close(fd);
    return st;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    const char *bin = argv[1];
    /* This process holds FLOOD sockets. */
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    CHECK(rl.rlim_cur >= FLOOD + 64);

    char tmpl[] = "/tmp/spw-fdlimit-XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL);
    char data[4200], wrap[4200], logp[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(wrap, sizeof wrap, "%s/limited.sh", dir);
    snprintf(logp, sizeof logp, "%s/server.log", dir);
    FILE *f = fopen(wrap, "w");
    CHECK(f != NULL);
    fprintf(f, "#!/bin/sh\nulimit -n 256 || exit 99\nexec '%s' \"$@\"\n", bin);
    fclose(f);
    CHECK(chmod(wrap, 0755) == 0);
    srv s;
    const char *extra[] = {"--segment-bytes", "1024", "--io-threads", "2", NULL};
    srv_start_log(&s, wrap, data, extra, logp);
    put_stream(s.port, "s", "{\"partitions\":1}");

    int kc = tcp_connect(s.port);
    for (int i = 0; i < 300; i++)
        produce_one(kc, i);
    uint64_t segs = part_field(s.port, "/v1/streams/s", 0, "segments");
    printf("segments: %" PRIu64 "\n", segs);
    CHECK(segs >= 250);
    CHECK_EQ(metric(kc, "process_max_fds"), 256);
    long long conn_max = metric(kc, "spillway_connection_fds_max");
    printf("connections the fd limit leaves room for: %lld\n", conn_max);
    CHECK(conn_max > 0 && conn_max < 256);

    /* The flood: FLOOD non-blocking connects, held open. */
    int *fl = malloc(FLOOD * sizeof *fl);
    for (int i = 0; i < FLOOD; i++) {
        fl[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        CHECK(fl[i] >= 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int c = connect(fl[i], (struct sockaddr *)&sa, sizeof sa);
        CHECK(c == 0 || errno == EINPROGRESS || errno == EAGAIN);
    }
    /* Until the server has met the bound (bounded: 20 s). */
    long long refused = 0, open_conns = 0;
    for (int i = 0; i < 200 && refused == 0; i++) {
        refused = metric(kc, "spillway_http_refused_total");
        if (refused == 0)
            usleep(100000);
    }
    open_conns = metric(kc, "spillway_http_connections");
    printf("during the flood: %lld connections open, %lld refused\n", open_conns, refused);
    CHECK(refused > 0);
    CHECK(open_conns <= conn_max);

    /* The client connected before is still answered: rolls, old reads. */
    for (int i = 300; i < 320; i++)
        produce_one(kc, i);
    resp r = kept(kc, "GET", "/v1/streams/s/events?partition=0&offset=0&limit=3", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"i\":0,") != NULL);
    CHECK(strstr(r.body, "\"i\":2,") != NULL);
    free(r.body);
    r = kept(kc, "GET", "/v1/streams/s/events?partition=0&offset=150&limit=1", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"i\":150,") != NULL);
    free(r.body);
    long long gauge = metric(kc, "process_open_fds");
    int seen = count_fds(s.pid);
    printf("open fds: gauge %lld, /proc %d, limit 256\n", gauge, seen);
    CHECK(gauge > 0 && gauge <= 256);
    CHECK(gauge - seen <= 4 && seen - gauge <= 4);
    long long fd_errors = metric(kc, "spillway_http_accept_fd_errors_total");
    printf("accept fd errors: %lld\n", fd_errors);
    CHECK(fd_errors >= 0 && fd_errors <= FLOOD);
    CHECK(metric(kc, "spillway_segment_fd_cache_open") <= metric(kc, "spillway_segment_fd_cache_capacity"));

    for (int i = 0; i < FLOOD; i++)
        close(fl[i]);
    free(fl);
    /* Accepting again: a new client answered (bounded: 20 s while the
     * server sees the flood's connections close). */
    int st = -1;
    for (int i = 0; i < 200 && st != 200; i++) {
        st = try_get(s.port, "/v1/streams/s");
        if (st != 200)
            usleep(100000);
    }
    CHECK_EQ(st, 200);
    CHECK_EQ(part_field(s.port, "/v1/streams/s", 0, "end_offset"), 320);
    close(kc);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    printf("ok\n");
    return 0;
}
