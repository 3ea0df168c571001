/*
 * `spillway top` against a real server and against a fake one:
 * - real server, idle: `top --once` prints exact totals (events per stream,
 *   invalid rejections), zero rates, pending bytes 0 and the budget given
 *   by --max-pending-bytes, and bytes_total equal to the server's own
 *   spillway_bytes_in_total;
 * - real server under load: while this test produces (and sends some bad
 *   requests) throughout top's interval, the interval's numbers are
 *   positive and consistent: rate × interval = delta, fsync p50 ≤ p99, a
 *   group-commit average ≥ 1, the idle stream at 0;
 * - a fake server whose /metrics carries the admission-control families
 *   (pressure level, watermarks, coalesced, duplicates, an unknown
 *   rejection reason), junk, an over-long line and a hostile stream name:
 *   exact deltas, quantiles from bucket deltas, sanitised names;
 * - failures: usage errors exit 2, an unreachable server, a non-200
 *   /metrics or a server that never answers makes --once exit 1, and without --once a server that goes
 *   away is reported, retried and picked up again when it returns on the
 *   same port; SIGINT then exits 0.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include "cli/httpc.h"
#include "server.h"

static const char *bin;
static char server_opt[64];

/* The value of " key=" on the first line starting with prefix; NaN if absent. */
static double kv(const char *text, const char *prefix, const char *key)
{
    size_t pl = strlen(prefix), kl = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, prefix, pl) != 0)
            continue;
        const char *end = strchr(l, '\n');
        if (!end)
            end = l + strlen(l);
        for (const char *p = l; p < end; p++)
            if (*p == ' ' && (size_t)(end - p) > kl + 1 && strncmp(p + 1, key, kl) == 0 && p[1 + kl] == '=')
                return strtod(p + 2 + kl, NULL);
        return NAN;
    }
    return NAN;
}

/* The word after " key=" on the first line starting with prefix, into out ("" if absent). */
static void kv_word(const char *text, const char *prefix, const char *key, char *out, size_t cap)
{
    out[0] = 0;
    const char *l = strstr(text, prefix);
    if (!l)
        return;
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *end = strchr(l, '\n');
    const char *p = strstr(l, pat);
    if (!p || (end && p > end))
        return;
    p += strlen(pat);
    size_t n = strcspn(p, " \n");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = 0;
}

static void expect_rc(cli_out o, int rc, const char *needle)
{
    if (o.rc != rc || (needle && !strstr(o.text, needle)))
        fprintf(stderr, "expected exit %d with '%s', got %d:\n%s\n", rc, needle ? needle : "", o.rc, o.text);
    CHECK_EQ(o.rc, rc);
    if (needle)
        CHECK(strstr(o.text, needle) != NULL);
    free(o.text);
}

/* ---- a child whose stdout+stderr we read as it goes ---- */

typedef struct child {
    pid_t pid;
    int fd;
    char *text;
    size_t len, cap;
} child;

static void child_start(child *c, const char *const *argv)
{
    int p[2];
    CHECK(pipe(p) == 0);
    c->pid = fork();
    CHECK(c->pid >= 0);
    if (c->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    c->fd = p[0];
    c->cap = 1 << 16;
    c->len = 0;
    c->text = malloc(c->cap);
    c->text[0] = 0;
}

/* Reads what the child wrote within ms. Returns 0 at EOF, 1 otherwise. */
static int child_read(child *c, int ms)
{
    struct pollfd pf = {.fd = c->fd, .events = POLLIN};
    if (poll(&pf, 1, ms) <= 0)
        return 1;
    if (c->cap - c->len < 4096)
        c->text = realloc(c->text, c->cap *= 2);
    ssize_t n = read(c->fd, c->text + c->len, c->cap - c->len - 1);
    if (n <= 0)
        return 0;
    c->len += (size_t)n;
    c->text[c->len] = 0;
    return 1;
}

/* Waits (bounded) until the child's output holds needle `count` times. */
static void child_wait_for(child *c, const char *needle, int count)
{
    for (int i = 0; i < 600; i++) {
        int k = 0;
        for (const char *p = c->text; (p = strstr(p, needle)); p += strlen(needle))
            k++;
        if (k >= count)
            return;
        if (!child_read(c, 100))
            break;
    }
    fprintf(stderr, "waited for %d x '%s'; output so far:\n%s\n", count, needle, c->text);
    CHECK(!"child output did not arrive");
}

static int child_wait(child *c)
{
    while (child_read(c, 100)) {
    }
    close(c->fd);
    int st;
    for (int i = 0; i < 3000; i++) {
        if (waitpid(c->pid, &st, WNOHANG) == c->pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(10000);
    }
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &st, 0);
    CHECK(!"child did not exit");
    return -1;
}

/* ---- real server ---- */

static void produce(spw_httpc *c, const char *stream, int events, int expect)
{
    char body[8192], target[128];
    size_t n = 0;
    for (int i = 0; i < events; i++)
        n += (size_t)snprintf(body + n, sizeof body - n, "{\"device_id\":\"d%d\",\"lat\":%d.5}\n", i % 5, i);
    snprintf(target, sizeof target, "/v1/streams/%s/events", stream);
    spw_httpc_resp r;
    int st = spw_httpc_request(c, "POST", target, "application/x-ndjson", NULL, body, n, 2000, &r);
    CHECK_EQ(st, expect);
}

static void bad_produce(spw_httpc *c, const char *stream)
{
    char target[128];
    snprintf(target, sizeof target, "/v1/streams/%s/events", stream);
    spw_httpc_resp r;
    CHECK_EQ(spw_httpc_request(c, "POST", target, "application/x-ndjson", NULL, "{\"x\":\n", 6, 2000, &r), 400);
}

/* A metric family's value straight from the server's /metrics. */
static double server_metric(int port, const char *line_start)
{
    resp r = http(port, "GET", "/metrics", NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    const char *p = strstr(r.body, line_start);
    double v = p ? strtod(p + strlen(line_start), NULL) : NAN;
    free(r.body);
    return v;
}

static void test_idle(srv *s)
{
    spw_httpc c;
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    spw_httpc_init(&c, "127.0.0.1", port);
    for (int i = 0; i < 5; i++)
        produce(&c, "gps", 10, 202);
    for (int i = 0; i < 3; i++)
        produce(&c, "clicks", 10, 202);
    bad_produce(&c, "gps");
    bad_produce(&c, "gps");
    spw_httpc_close(&c);

    cli_out o = cli_run(bin, "top --once --interval 300ms %s", server_opt);
    if (o.rc != 0 || getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "%s", o.text);
    CHECK_EQ(o.rc, 0);
    const char *t = o.text;
    CHECK(strncmp(t, "top time=", 9) == 0);
    CHECK_EQ(kv(t, "top ", "events_total"), 80);
    CHECK_EQ(kv(t, "top ", "events"), 0);
    CHECK(kv(t, "top ", "events_per_s") == 0);
    CHECK(kv(t, "top ", "interval_s") > 0);
    CHECK_EQ(kv(t, "top ", "bytes_total"), server_metric(s->port, "\nspillway_bytes_in_total "));
    CHECK(kv(t, "top ", "bytes_total") > 80 * 20);
    CHECK_EQ(kv(t, "top ", "pending_bytes"), 0);
    CHECK_EQ(kv(t, "top ", "max_pending_bytes"), 8 << 20);
    CHECK(kv(t, "top ", "pending_ratio") == 0);
    CHECK_EQ(kv(t, "top ", "rejected_total_invalid"), 2);
    CHECK(kv(t, "top ", "rejected_per_s_invalid") == 0);
    CHECK_EQ(kv(t, "top ", "rejected_total_backpressure"), 0);
    CHECK_EQ(kv(t, "top ", "rejected_total_disk"), 0);
    CHECK(kv(t, "top ", "connections") >= 1); /* top's own, at least */
    CHECK(kv(t, "top ", "http_connections") >= 1);
    /* Nothing happened in the interval: no fsync latency to report, no CPU per event. */
    CHECK(isnan(kv(t, "top ", "fsync_p50_ms")));
    CHECK(isnan(kv(t, "top ", "cpu_ns_per_event")));
    CHECK(kv(t, "top ", "cpu_cores") >= 0);
    CHECK(kv(t, "top ", "cpu_cores_flusher") >= 0);
    CHECK(isnan(kv(t, "top ", "group_commit_avg")));
    CHECK_EQ(kv(t, "stream name=gps ", "events_total"), 50);
    CHECK_EQ(kv(t, "stream name=clicks ", "events_total"), 30);
    CHECK_EQ(kv(t, "stream name=gps ", "events"), 0);
    /* a stream with hot_keys shows how many keys it splits (its listed one) */
    CHECK_EQ(kv(t, "stream name=hk ", "hot_keys_split"), 1);
    CHECK(isnan(kv(t, "stream name=gps ", "hot_keys_split")));
    CHECK(kv(t, "stream name=gps ", "bytes_total") > 50 * 20);
    /* The admission-control families show when the server has them. */
    double level = server_metric(s->port, "\nspillway_pressure_level ");
    if (isnan(level))
        CHECK(strstr(t, "pressure_level=") == NULL);
    else
        CHECK_EQ(kv(t, "top ", "pressure_level"), level);
    /* A snapshot ends with a blank line, and --once prints exactly one. */
    CHECK(strstr(t, "\n\n") != NULL);
    CHECK(strstr(strstr(t, "\n\n") + 2, "top ") == NULL);
    free(o.text);
}

static void test_load(srv *s)
{
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", s->port);
    const char *argv[] = {bin, "top", "--once", "--interval", "1500ms", "--server", url, NULL};
    child ch;
    spw_httpc c;
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    spw_httpc_init(&c, "127.0.0.1", port);
    double before = server_metric(s->port, "\nspillway_events_in_total ");
    child_start(&ch, argv);
    /* Produce (and now and then fail) until top has printed: its whole
     * interval is covered. Bounded: top prints after about 1.5 s. */
    int rounds = 0, done = 0;
    for (; rounds < 100000 && !done; rounds++) {
        if (rounds % 10 == 9)
            bad_produce(&c, "gps");
        else
            produce(&c, "gps", 5, 202);
        struct pollfd pf = {.fd = ch.fd, .events = POLLIN};
        done = poll(&pf, 1, 0) == 1;
    }
    CHECK(done);
    int rc = child_wait(&ch);
    spw_httpc_close(&c);
    double after = server_metric(s->port, "\nspillway_events_in_total ");
    const char *t = ch.text;
    if (rc != 0 || getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "%d rounds\n%s", rounds, t);
    CHECK_EQ(rc, 0);
    double secs = kv(t, "top ", "interval_s"), ev = kv(t, "top ", "events"), rate = kv(t, "top ", "events_per_s");
    CHECK(secs > 0);
    CHECK(ev > 0);
    CHECK(ev <= after - before);
    CHECK(fabs(rate * secs - ev) <= 1 + 0.01 * ev);
    CHECK(kv(t, "top ", "bytes_per_s") > 0);
    CHECK(kv(t, "stream name=gps ", "events") > 0);
    CHECK(kv(t, "stream name=gps ", "events_per_s") > 0);
    CHECK_EQ(kv(t, "stream name=clicks ", "events"), 0);
    CHECK(kv(t, "top ", "rejected_per_s_invalid") > 0);
    CHECK(kv(t, "top ", "rejected_total_invalid") > 2);
    /* ack=fsync (the stream default): every event went through a group commit. */
    double p50 = kv(t, "top ", "fsync_p50_ms"), p99 = kv(t, "top ", "fsync_p99_ms");
    CHECK(p50 > 0);
    CHECK(p99 >= p50);
    CHECK(kv(t, "top ", "fsyncs_per_s") > 0);
    CHECK(kv(t, "top ", "group_commit_avg") >= 1);
    CHECK(kv(t, "top ", "group_commit_p99") >= 1);
    CHECK(kv(t, "top ", "produce_p99_ms") >= kv(t, "top ", "produce_p50_ms"));
    /* the server's CPU over the interval, and the HTTP loops' share of it */
    CHECK(kv(t, "top ", "cpu_ns_per_event") > 0);
    CHECK(kv(t, "top ", "cpu_cores_http_loop") > 0);
    CHECK(kv(t, "top ", "cpu_cores_flusher") > 0);
    free(ch.text);
}

/* ---- a fake server ---- */

#define LONG_LINE 6000

typedef struct fake {
    int lfd, port;
    int status; /* of /metrics; 0: never answer */
    _Atomic int scrapes;
    pthread_t th;
} fake;

static void fake_body(int n, char *body, size_t cap, size_t *len)
{
    size_t k = 0;
    k += (size_t)snprintf(body + k, cap - k,
                          "# HELP spillway_events_in_total events\n# TYPE spillway_events_in_total counter\n"
                          "spillway_events_in_total %d\n"
                          "spillway_bytes_in_total %d\n"
                          "spillway_stream_events_in_total{stream=\"we ird\\nna=me\"} %d\n"
                          "spillway_stream_bytes_in_total{stream=\"we ird\\nna=me\"} %d\n"
                          "spillway_stream_hot_keys_split{stream=\"we ird\\nna=me\"} 2\n"
                          "spillway_stream_hot_key_events_per_second{stream=\"we ird\\nna=me\",key=\"cold\"} 5\n"
                          "spillway_stream_hot_key_events_per_second{stream=\"we ird\\nna=me\",key=\"ho t\"} 1234.5\n"
                          "spillway_pending_bytes 5000\n"
                          "spillway_pending_high_watermark_bytes 6000\n"
                          "spillway_pending_low_watermark_bytes 3000\n"
                          "spillway_pressure_level 3\n"
                          "spillway_coalesced_total %d\n"
                          "spillway_duplicates_total %d\n"
                          "spillway_rejected_total{reason=\"shed\"} %d\n"
                          "spillway_rejected_total{reason=\"future_reason\"} 1\n"
                          "this line {{ is not a sample\n"
                          "spillway_http_connections 9\n"
                          "spillway_log_fsync_seconds_bucket{le=\"0.001\"} %d\n"
                          "spillway_log_fsync_seconds_bucket{le=\"0.002\"} %d\n"
                          "spillway_log_fsync_seconds_bucket{le=\"+Inf\"} %d\n"
                          "spillway_log_fsync_seconds_sum 0.03\nspillway_log_fsync_seconds_count %d\n"
                          "spillway_log_group_commit_appends_bucket{le=\"4\"} %d\n"
                          "spillway_log_group_commit_appends_bucket{le=\"+Inf\"} %d\n"
                          "spillway_log_group_commit_appends_sum %d\nspillway_log_group_commit_appends_count %d\n"
                          "process_cpu_seconds_total %.2f\n"
                          "spillway_thread_cpu_seconds_total{role=\"bin_loop\"} %.2f\n"
                          "spillway_thread_cpu_seconds_total{role=\"flusher\"} %.2f\n",
                          100 * n, 1000 * n, 100 * n, 1000 * n, 7 * n, 2 * n, 4 * n, 10 * (n - 1), 20 * (n - 1),
                          20 * (n - 1), 20 * (n - 1), 20 * (n - 1), 20 * (n - 1), 60 * (n - 1), 20 * (n - 1), 0.5 * n,
                          0.3 * n, 0.2 * n);
    /* An over-long line that would otherwise set a family top shows. */
    k += (size_t)snprintf(body + k, cap - k, "spillway_duplicates_total{x=\"");
    while (k < LONG_LINE && k < cap - 64)
        body[k++] = 'x';
    k += (size_t)snprintf(body + k, cap - k, "\"} 999999\n");
    *len = k;
}

static void *fake_main(void *arg)
{
    fake *f = arg;
    static char body[LONG_LINE + 8192], out[LONG_LINE + 9000];
    for (;;) {
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        char in[8192];
        size_t have = 0;
        for (;;) {
            char *he = memmem(in, have, "\r\n\r\n", 4);
            if (!he) {
                if (have == sizeof in)
                    break;
                ssize_t r = recv(fd, in + have, sizeof in - have, 0);
                if (r <= 0)
                    break;
                have += (size_t)r;
                continue;
            }
            size_t hl = (size_t)(he - in) + 4, blen;
            int st = 200;
            if (f->status == 0) {
                /* A hung server: reads, never answers, until the client leaves. */
                while (recv(fd, in, sizeof in, 0) > 0) {
                }
                break;
            }
            if (strncmp(in, "GET /metrics ", 13) == 0) {
                f->scrapes++;
                st = f->status;
                fake_body(f->scrapes, body, sizeof body, &blen);
            } else if (strncmp(in, "GET /v1/status ", 15) == 0) {
                blen = (size_t)snprintf(body, sizeof body,
                                        "{\"version\":\"9.9.9\",\"uptime_ms\":5000,\"limits\":{\"max_pending_bytes\":10000}}");
            } else {
                st = 404;
                blen = (size_t)snprintf(body, sizeof body, "{}");
            }
            int n = snprintf(out, sizeof out, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n\r\n", st, blen);
            memcpy(out + n, body, blen);
            send_all(fd, out, (size_t)n + blen);
            memmove(in, in + hl, have - hl);
            have -= hl;
        }
        close(fd);
    }
}

static void fake_start(fake *f, int status)
{
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(listen(f->lfd, 16) == 0);
    socklen_t sl = sizeof sa;
    getsockname(f->lfd, (struct sockaddr *)&sa, &sl);
    f->port = ntohs(sa.sin_port);
    f->status = status;
    f->scrapes = 0;
    pthread_create(&f->th, NULL, fake_main, f);
}

static void fake_stop(fake *f)
{
    shutdown(f->lfd, SHUT_RDWR);
    close(f->lfd);
    pthread_join(f->th, NULL);
}

static void test_fake(void)
{
    fake f;
    fake_start(&f, 200);
    cli_out o = cli_run(bin, "top --once --interval 100ms --server http://127.0.0.1:%d/", f.port);
    const char *t = o.text;
    if (o.rc != 0 || getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "%s", t);
    CHECK_EQ(o.rc, 0);
    CHECK_EQ(f.scrapes, 2);
    char w[64];
    CHECK_EQ(kv(t, "top ", "events"), 100);
    CHECK_EQ(kv(t, "top ", "events_total"), 200);
    CHECK_EQ(kv(t, "top ", "bytes"), 1000);
    CHECK_EQ(kv(t, "top ", "pending_bytes"), 5000);
    CHECK_EQ(kv(t, "top ", "max_pending_bytes"), 10000);
    CHECK(kv(t, "top ", "pending_ratio") == 0.5);
    CHECK_EQ(kv(t, "top ", "high_watermark_bytes"), 6000);
    CHECK_EQ(kv(t, "top ", "low_watermark_bytes"), 3000);
    CHECK_EQ(kv(t, "top ", "pressure_level"), 3);
    kv_word(t, "top ", "pressure", w, sizeof w);
    CHECK(strcmp(w, "high_watermark") == 0);
    CHECK_EQ(kv(t, "top ", "coalesced_total"), 14);
    CHECK(kv(t, "top ", "coalesced_per_s") > 0);
    /* The over-long duplicates line was skipped, not read as 999999. */
    CHECK_EQ(kv(t, "top ", "duplicates_total"), 4);
    CHECK_EQ(kv(t, "top ", "rejected_total_shed"), 8);
    CHECK(kv(t, "top ", "rejected_per_s_shed") > 0);
    CHECK_EQ(kv(t, "top ", "rejected_total_future_reason"), 1);
    CHECK(kv(t, "top ", "rejected_per_s_future_reason") == 0);
    CHECK_EQ(kv(t, "top ", "connections"), 9);
    CHECK(isnan(kv(t, "top ", "bin_connections")));
    /* Rates are deltas over the measured interval. */
    double secs = kv(t, "top ", "interval_s");
    CHECK(fabs(kv(t, "top ", "events_per_s") * secs - 100) <= 1);
    /* This interval's fsyncs: 10 in (0, 1 ms], 10 in (1, 2 ms]. */
    CHECK(fabs(kv(t, "top ", "fsync_p50_ms") - 1.0) < 1e-6);
    CHECK(fabs(kv(t, "top ", "fsync_p99_ms") - 1.98) < 1e-6);
    CHECK(fabs(kv(t, "top ", "group_commit_avg") - 3) < 1e-6);
    CHECK_EQ(kv(t, "top ", "group_commit_p99"), 4);
    /* CPU: 0.5 s of it for 100 events in the interval, 0.3 of it the binary loops', 0.2 the flusher's */
    CHECK(fabs(kv(t, "top ", "cpu_cores") * secs - 0.5) < 0.01);
    CHECK_EQ(kv(t, "top ", "cpu_ns_per_event"), 5000000);
    CHECK(fabs(kv(t, "top ", "cpu_cores_bin_loop") * secs - 0.3) < 0.01);
    CHECK(fabs(kv(t, "top ", "cpu_cores_flusher") * secs - 0.2) < 0.01);
    CHECK_EQ(kv(t, "top ", "cpu_cores_sink"), 0); /* a role the server lists no sample of: none in the interval */
    /* The hostile stream name is printed as one word without control bytes. */
    CHECK(strstr(t, "stream name=we?ird?na?me events_per_s=") != NULL);
    CHECK_EQ(kv(t, "stream name=we?ird?na?me ", "events"), 100);
    /* hot keys: the stream's split count, its hottest keys hottest first */
    CHECK_EQ(kv(t, "stream name=we?ird?na?me ", "hot_keys_split"), 2);
    CHECK(strstr(t, "\nhot stream=we?ird?na?me key=ho?t events_per_s=1234.5\n"
                    "hot stream=we?ird?na?me key=cold events_per_s=5.0\n") != NULL);
    free(o.text);
    fake_stop(&f);

    /* A server that answers /metrics with an error. */
    fake_start(&f, 500);
    expect_rc(cli_run(bin, "top --once --interval 100ms --server 127.0.0.1:%d", f.port), 1,
              "answered HTTP 500 to GET /metrics");
    fake_stop(&f);

    /* One that never answers: top gives up on the request (after 5 s) and says so. */
    fake_start(&f, 0);
    expect_rc(cli_run(bin, "top --once --interval 100ms --server 127.0.0.1:%d", f.port), 1,
              "did not answer GET /metrics within 5 s");
    fake_stop(&f);
}

static void test_usage(void)
{
    expect_rc(cli_run(bin, "top --help"), 0, "usage: spillway top");
    expect_rc(cli_run(bin, "--help"), 0, "  top       live rates");
    expect_rc(cli_run(bin, "top --interval 5ms"), 2, "--interval takes a duration");
    expect_rc(cli_run(bin, "top --interval soon"), 2, "--interval takes a duration");
    expect_rc(cli_run(bin, "top --interval"), 2, "needs a value");
    expect_rc(cli_run(bin, "top --bogus"), 2, "unexpected argument");
    expect_rc(cli_run(bin, "top --server nohost:notaport"), 2, "--server takes");
}

/* The server goes away and comes back on the same port; top keeps going. */
static void test_restart(srv *s, const char *data)
{
    char url[64], listen[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", s->port);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    const char *argv[] = {bin, "top", "--interval", "200ms", "--server", url, NULL};
    child ch;
    child_start(&ch, argv);
    child_wait_for(&ch, "\ntop time=", 1); /* the second snapshot's start (the first has no newline before it) */
    CHECK_EQ(srv_stop(s, SIGTERM), 0);
    child_wait_for(&ch, "cannot reach the server at", 1);
    const char *extra[] = {"--listen", listen, NULL};
    srv_start(s, bin, data, extra);
    CHECK_EQ(s->port, atoi(strchr(url, ':') + 1));
    child_wait_for(&ch, "answers again", 1);
    size_t mark = ch.len;
    for (int i = 0; i < 600 && !strstr(ch.text + mark, "\ntop time="); i++)
        child_read(&ch, 100);
    CHECK(strstr(ch.text + mark, "\ntop time=") != NULL);
    kill(ch.pid, SIGINT);
    int rc = child_wait(&ch);
    if (rc != 0 || getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "%s", ch.text);
    CHECK_EQ(rc, 0);
    /* The error was reported once, not every interval. */
    const char *first = strstr(ch.text, "cannot reach");
    CHECK(first && !strstr(first + 1, "cannot reach"));
    free(ch.text);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    bin = argv[1];
    signal(SIGPIPE, SIG_IGN);
    test_usage();
    test_fake();
    char *tmp = spw_test_tmpdir("top");
    char data[4200];
    snprintf(data, sizeof data, "%s/data", tmp);
    srv s;
    const char *extra[] = {"--max-pending-bytes", "8MiB", NULL};
    srv_start(&s, bin, data, extra);
    snprintf(server_opt, sizeof server_opt, "--server 127.0.0.1:%d", s.port);
    resp r = http_json(s.port, "PUT", "/v1/streams/gps", "{\"partitions\":2}");
    CHECK_EQ(r.status, 201);
    free(r.body);
    r = http_json(s.port, "PUT", "/v1/streams/clicks", "{\"partitions\":2}");
    CHECK_EQ(r.status, 201);
    free(r.body);
    r = http_json(s.port, "PUT", "/v1/streams/hk",
                  "{\"partitions\":2,\"key\":\"/k\",\"hot_keys\":{\"split\":2,\"keys\":[\"x\"]}}");
    CHECK_EQ(r.status, 201);
    free(r.body);
    test_idle(&s);
    test_load(&s);
    test_restart(&s, data);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    /* Nothing listens there now: --once fails clearly. */
    expect_rc(cli_run(bin, "top --once --interval 100ms %s", server_opt), 1, "cannot reach the server");
    spw_test_rmrf(tmp);
    free(tmp);
    puts("test_top ok");
    return 0;
}
