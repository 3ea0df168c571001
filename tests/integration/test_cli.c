/*
 * The client commands against a real server on loopback: `spillway stream
 * create/list/show/delete`, `produce` (files, stdin, bad and over-long
 * lines, pipelining), `consume` (all partitions, one partition, offsets,
 * --values, --follow ended by --max and by SIGINT, --group usage errors,
 * --offset latest/earliest), `bench` through the shared HTTP client, and
 * $SPILLWAY_SERVER and --name=value for every client command. The client's response framing
 * (chunked, 204, Content-Length, split reads) is checked against a fake
 * server thread.
 */
#include <pthread.h>
#include <sys/stat.h>

#include "cli/httpc.h"
#include "server.h"

static const char *bin;
static char server_opt[64], server_addr[32];
static char *tmp;

typedef cli_out out;
#define run(...) cli_run(bin, __VA_ARGS__)

static void expect(out o, int rc, const char *needle)
{
    if (o.rc != rc || (needle && !strstr(o.text, needle)))
        fprintf(stderr, "expected exit %d with '%s', got %d:\n%s\n", rc, needle ? needle : "", o.rc, o.text);
    CHECK_EQ(o.rc, rc);
    if (needle)
        CHECK(strstr(o.text, needle) != NULL);
    free(o.text);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    CHECK(fputs(text, f) >= 0);
    CHECK(fclose(f) == 0);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted non-empty lines of text, in place; returns how many. */
static size_t sorted_lines(char *text, char **lines, size_t cap)
{
    size_t n = 0;
    for (char *s = strtok(text, "\n"); s && n < cap; s = strtok(NULL, "\n"))
        if (s[strspn(s, " ")])
            lines[n++] = s;
    qsort(lines, n, sizeof *lines, cmp_str);
    return n;
}

static void test_usage(void)
{
    expect(run("produce --help"), 0, "usage: spillway produce STREAM");
    expect(run("consume --help"), 0, "--follow");
    expect(run("stream --help"), 0, "stream create NAME");
    expect(run("stream create --help"), 0, "--retention-ms");
    expect(run("stream create x --retention-ms 7d %s", server_opt), 2, "--retention-ms takes milliseconds");
    expect(run("--help"), 0, "  produce   send NDJSON lines to a stream");
    expect(run("produce"), 2, "STREAM is required");
    expect(run("produce 'bad/name' x"), 2, "not a stream name");
    expect(run("produce s --batch 0"), 2, "--batch");
    expect(run("consume s --offset 1 --from-ts 2"), 2, "not both");
    expect(run("consume s --bogus"), 2, "unexpected argument");
    expect(run("stream create"), 2, "NAME is required");
    expect(run("stream create s --partitions 0"), 2, "--partitions");
    expect(run("stream create s --nope 1"), 2, "unknown option");
    expect(run("stream frobnicate"), 2, "unknown subcommand");
    expect(run("stream show s --server nohost:notaport"), 2, "--server takes");
    /* Consumer groups: usage errors (the group runs are in test_groups). */
    expect(run("consume s --group .g %s", server_opt), 2, "not a group name");
    expect(run("consume s --group g --partition 1 %s", server_opt), 2, "--group reads where the group stands");
    expect(run("consume s --member m %s", server_opt), 2, "go with --group");
    expect(run("consume s --group g --start middle %s", server_opt), 2, "--start takes");
}

static void test_streams(void)
{
    expect(run("stream list %s", server_opt), 0, "no streams");
    expect(run("stream create gps --partitions 3 --key /dev --timestamp /ts --retention 7d "
               "--retention-bytes 1GiB --max-event-bytes 64KiB %s",
               server_opt),
           0, "created stream gps");
    /* Again, identical: fine. Different: the server's sentence and exit 1. */
    expect(run("stream create gps --partitions 3 --key /dev --timestamp /ts --retention-ms 604800000 "
               "--retention-bytes 1GiB --max-event-bytes 64KiB %s",
               server_opt),
           0, "already exists with this definition");
    expect(run("stream create gps --partitions 2 %s", server_opt), 1, "exists with a different definition");
    expect(run("stream create tmp --format bytes --ack written %s", server_opt), 0, "format           bytes");
    out o = run("stream show gps %s", server_opt);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "partitions       3"));
    CHECK(strstr(o.text, "key              /dev"));
    CHECK(strstr(o.text, "retention time   7d (604800000 ms)"));
    CHECK(strstr(o.text, "retention bytes  1.0 GiB (1073741824 bytes)"));
    CHECK(strstr(o.text, "max event size   64.0 KiB"));
    CHECK(strstr(o.text, "start_offset"));
    free(o.text);
    o = run("stream list %s", server_opt);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "NAME"));
    CHECK(strstr(o.text, "\ngps "));
    CHECK(strstr(o.text, "\ntmp "));
    free(o.text);
    expect(run("stream list --json %s", server_opt), 0, "{\"streams\":[");
    /* options may come before the command too */
    expect(run("%s stream list --json", server_opt), 0, "{\"streams\":[");
    expect(run("stream delete tmp %s", server_opt), 0, "deleted stream tmp");
    expect(run("stream delete tmp %s", server_opt), 1, "no stream named tmp");
    expect(run("stream show tmp %s", server_opt), 1, "no stream named tmp (HTTP 404, no_such_stream)");
    o = run("stream list %s", server_opt);
    CHECK(!strstr(o.text, "tmp"));
    free(o.text);
}

static void test_produce_consume(void)
{
    /* 2500 events with blank lines in between: all accepted, read back exactly. */
    char path[4200], *text = malloc(1 << 20);
    size_t n = 0;
    for (int i = 0; i < 2500; i++) {
        n += (size_t)sprintf(text + n, "{\"dev\":\"d%d\",\"ts\":%d,\"n\":%d}\n", i % 17, 1000 + i, i);
        if (i % 500 == 0)
            n += (size_t)sprintf(text + n, "\n  \n");
    }
    snprintf(path, sizeof path, "%s/good.ndjson", tmp);
    write_file(path, text);
    expect(run("produce gps %s --batch 1000 %s", path, server_opt), 0, "2500 accepted, 0 rejected");
    out o = run("consume gps --values %s", server_opt);
    CHECK_EQ(o.rc, 0);
    static char *a[4000], *b[4000];
    char *copy = strdup(text);
    size_t na = sorted_lines(copy, a, 4000), nb = sorted_lines(o.text, b, 4000);
    CHECK_EQ(na, 2500);
    CHECK_EQ(nb, 2500);
    for (size_t i = 0; i < na; i++)
        CHECK(strcmp(a[i], b[i]) == 0);
    free(copy);
    free(o.text);
    /* Whole records, one partition, from an offset, bounded. */
    o = run("consume gps --partition 1 --offset 3 --max 2 %s", server_opt);
    CHECK_EQ(o.rc, 0);
    CHECK(strncmp(o.text, "{\"partition\":1,\"offset\":3,\"id\":\"", 32) == 0);
    CHECK(strstr(o.text, "\n{\"partition\":1,\"offset\":4,"));
    int lines = 0;
    for (char *p = o.text; *p; p++)
        lines += *p == '\n';
    CHECK_EQ(lines, 2);
    free(o.text);
    expect(run("consume gps --partition 7 %s", server_opt), 1, "no partition 7");
    expect(run("consume gps --partition 0 --offset 99999 %s", server_opt), 1, "offset_out_of_range");
    expect(run("consume nope %s", server_opt), 1, "no stream named nope");

    /* One bad line among good ones (and a line without the key): exit 1, the
     * file's line numbers named, every other line stored, in every mode. */
    snprintf(path, sizeof path, "%s/bad.ndjson", tmp);
    write_file(path, "{\"dev\":\"x\",\"ts\":1,\"n\":-1}\n"
                     "\n"
                     "{\"dev\":\"x\",\"ts\":2,\"n\":-2}\n"
                     "{\"dev\":\"x\",\"ts\":3,\"n\":-3} trailing\n"
                     "{\"dev\":\"x\",\"ts\":5,\"n\":-5}\n"
                     "{\"ts\":6}\n"
                     "{\"dev\":\"x\",\"ts\":7,\"n\":-7}\n");
    o = run("produce gps %s --batch 4 %s", path, server_opt);
    if (getenv("SPW_TEST_VERBOSE") == NULL && (o.rc != 1 || !strstr(o.text, "4 accepted, 2 rejected")))
        fprintf(stderr, "%s\n", o.text);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "4 accepted, 2 rejected"));
    CHECK(strstr(o.text, "rejected line 4: data after the event on the same line (invalid_json, byte 25 of the line)"));
    CHECK(strstr(o.text, "rejected line 6: the stream's key /dev is missing (missing_key"));
    free(o.text);
    expect(run("produce gps %s --batch 2 --pipeline 4 %s", path, server_opt), 1, "4 accepted, 2 rejected");
    /* stdin, and the ack header. */
    expect(run("produce gps - --ack written %s < %s", server_opt, path), 1, "rejected line 4:");
    /* 3 runs × 4 good lines with key x: partition of x has them all, in file order for the
     * --pipeline 1 runs. */
    /* The last run was at ack=written: consume shows durable records only,
     * and a read at the durable end asks for the fsync (bounded wait). */
    int good = 0;
    for (int tries = 0; tries < 200; tries++) {
        o = run("consume gps --values %s", server_opt);
        CHECK_EQ(o.rc, 0);
        good = 0;
        for (char *p = o.text; (p = strstr(p, "\"n\":-")); p++)
            good++;
        if (good >= 12)
            break;
        free(o.text);
        usleep(10000);
    }
    CHECK_EQ(good, 12);
    CHECK(!strstr(o.text, "\"n\":-3") && !strstr(o.text, "\"ts\":6}"));
    CHECK(strstr(o.text, "{\"dev\":\"x\",\"ts\":1,\"n\":-1}\n{\"dev\":\"x\",\"ts\":2,\"n\":-2}\n"
                         "{\"dev\":\"x\",\"ts\":5,\"n\":-5}\n{\"dev\":\"x\",\"ts\":7,\"n\":-7}\n"));
    free(o.text);

    /* A line over the stream's max_event_bytes is reported with its size and not sent. */
    expect(run("stream create small --max-event-bytes 100 %s", server_opt), 0, NULL);
    snprintf(path, sizeof path, "%s/long.ndjson", tmp);
    n = (size_t)sprintf(text, "{\"a\":1}\n{\"a\":\"");
    memset(text + n, 'x', 200000);
    n += 200000;
    n += (size_t)sprintf(text + n, "\"}\n{\"a\":3}\n");
    write_file(path, text);
    o = run("produce small %s %s", path, server_opt);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "2 accepted, 1 rejected"));
    CHECK(strstr(o.text, "rejected line 2: 200008 bytes, over the stream's max_event_bytes (100 bytes)"));
    free(o.text);
    expect(run("consume small --values %s", server_opt), 0, "{\"a\":1}\n{\"a\":3}\n");
    /* No such stream: exit 1 with a hint. */
    expect(run("produce nope %s %s", path, server_opt), 1, "spillway stream create nope");
    free(text);
}

/* Starts "spillway consume ..." with stdout on a pipe. */
static pid_t spawn_consume(const char *const *args, int *rfd)
{
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        const char *argv[32] = {bin, "consume"};
        int n = 2;
        for (int i = 0; args[i] && n < 30; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    *rfd = p[0];
    return pid;
}

/* Reads until want newlines arrived or EOF (each wait bounded). */
static size_t read_lines(int fd, char *buf, size_t cap, int want, int until_eof)
{
    size_t n = 0;
    for (int rounds = 0; rounds < 10000; rounds++) {
        int lines = 0;
        for (size_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
        if (!until_eof && lines >= want)
            break;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        CHECK(poll(&pf, 1, 30000) == 1);
        ssize_t k = read(fd, buf + n, cap - n - 1);
        CHECK(k >= 0);
        if (k == 0)
            break;
        n += (size_t)k;
        CHECK(n < cap - 1);
    }
    buf[n] = 0;
    return n;
}

static int wait_exit(pid_t pid)
{
    int st = 0;
    for (int i = 0; i < 3000; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    CHECK(!"consume did not exit within 30 s");
    return -1;
}

static void test_follow(void)
{
    expect(run("stream create live --partitions 2 --key /k %s", server_opt), 0, NULL);
    char path[4200];
    snprintf(path, sizeof path, "%s/live1.ndjson", tmp);
    write_file(path, "{\"k\":\"a\",\"v\":1}\n{\"k\":\"b\",\"v\":2}\n");
    expect(run("produce live %s %s", path, server_opt), 0, "2 accepted");
    /* --follow --max 5: prints the 2 there, waits, prints 3 new ones, exits 0. */
    const char *args[] = {"live", "--follow", "--max", "5", "--values", "--server", server_addr, NULL};
    int fd;
    pid_t pid = spawn_consume(args, &fd);
    static char buf[1 << 16];
    read_lines(fd, buf, sizeof buf, 2, 0);
    CHECK(strstr(buf, "\"v\":1") && strstr(buf, "\"v\":2"));
    snprintf(path, sizeof path, "%s/live2.ndjson", tmp);
    write_file(path, "{\"k\":\"a\",\"v\":3}\n{\"k\":\"b\",\"v\":4}\n{\"k\":\"c\",\"v\":5}\n{\"k\":\"d\",\"v\":6}\n");
    expect(run("produce live %s %s", path, server_opt), 0, "4 accepted");
    size_t n = strlen(buf);
    read_lines(fd, buf + n, sizeof buf - n, 0, 1);
    close(fd);
    CHECK_EQ(wait_exit(pid), 0);
    int lines = 0;
    for (char *p = buf; *p; p++)
        lines += *p == '\n';
    CHECK_EQ(lines, 5);
    /* --follow without --max ends on SIGINT with exit 0. */
    const char *args2[] = {"live", "--follow", "--server", server_addr, NULL};
    pid = spawn_consume(args2, &fd);
    read_lines(fd, buf, sizeof buf, 6, 0);
    kill(pid, SIGINT);
    read_lines(fd, buf, sizeof buf, 0, 1);
    close(fd);
    CHECK_EQ(wait_exit(pid), 0);
}

static void test_bench(void)
{
    out o = run("bench --events 300 --clients 2 --batch 50 --stream benchs %s", server_opt);
    if (o.rc != 0)
        fprintf(stderr, "%s\n", o.text);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "BENCH bench protocol=http ack=fsync events=300 batch=50 clients=2 events_per_s="));
    CHECK(strstr(o.text, " errors=0 server_cpu_ns_per_event="));
    free(o.text);
    expect(run("consume benchs --max 1 --partition 0 %s", server_opt), 0, "{\"partition\":0,\"offset\":0,");
}

/* ---- the client's framing against a scripted server ---- */

static int fake_lfd;

static void *fake_server(void *arg)
{
    (void)arg;
    int fd = accept(fake_lfd, NULL, NULL);
    CHECK(fd >= 0);
    char req[4096];
    size_t have = 0;
    /* Three requests, pipelined by the client. */
    for (int got = 0; got < 3;) {
        ssize_t k = recv(fd, req + have, sizeof req - have - 1, 0);
        CHECK(k > 0);
        have += (size_t)k;
        req[have] = 0;
        got = 0;
        for (char *p = req; (p = strstr(p, "\r\n\r\n")); p += 4)
            got++;
    }
    static const char *parts[] = {
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n5\r\nhe",
        "llo\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 201",
        " Created\r\ncontent-length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end",
    };
    for (size_t i = 0; i < 3; i++) {
        send_all(fd, parts[i], strlen(parts[i]));
        usleep(1000); /* separate segments; correctness does not depend on it */
    }
    close(fd);
    return NULL;
}

static void test_httpc(void)
{
    char host[256], port[16];
    CHECK(spw_httpc_parse_server("127.0.0.1:7701", host, sizeof host, port, sizeof port) == 0);
    CHECK(strcmp(host, "127.0.0.1") == 0 && strcmp(port, "7701") == 0);
    CHECK(spw_httpc_parse_server("http://localhost/", host, sizeof host, port, sizeof port) == 0);
    CHECK(strcmp(host, "localhost") == 0 && strcmp(port, "7700") == 0);
    CHECK(spw_httpc_parse_server("https://x:1", host, sizeof host, port, sizeof port) < 0);
    CHECK(spw_httpc_parse_server("x:99999", host, sizeof host, port, sizeof port) < 0);
    CHECK(spw_httpc_parse_server("http://x:1/v1/streams", host, sizeof host, port, sizeof port) < 0);

    fake_lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fake_lfd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(listen(fake_lfd, 1) == 0);
    socklen_t sl = sizeof sa;
    getsockname(fake_lfd, (struct sockaddr *)&sa, &sl);
    snprintf(port, sizeof port, "%d", ntohs(sa.sin_port));
    pthread_t th;
    CHECK(pthread_create(&th, NULL, fake_server, NULL) == 0);
    spw_httpc c;
    spw_httpc_init(&c, "127.0.0.1", port);
    c.timeout_s = 30;
    CHECK(spw_httpc_connect(&c, 0) == 0);
    char head[512];
    for (int i = 0; i < 3; i++) {
        int n = spw_httpc_head(&c, head, sizeof head, "GET", "/x", NULL, NULL, 0);
        CHECK(n > 0);
        CHECK(spw_httpc_send(&c, head, (size_t)n) == 0);
    }
    spw_httpc_resp r;
    CHECK_EQ(spw_httpc_read(&c, &r), 200);
    CHECK_EQ(r.body_len, 12);
    CHECK(memcmp(r.body, "hello, world", 12) == 0);
    size_t vl;
    const char *v = spw_httpc_header(&r, "x-a", &vl);
    CHECK(v && vl == 1 && *v == 'b');
    CHECK_EQ(spw_httpc_read(&c, &r), 204);
    CHECK_EQ(r.body_len, 0);
    CHECK_EQ(spw_httpc_read(&c, &r), 201);
    CHECK(r.body_len == 3 && memcmp(r.body, "abc", 3) == 0);
    CHECK_EQ(spw_httpc_read(&c, &r), 200);
    CHECK(r.close && r.body_len == 10 && memcmp(r.body, "to the end", 10) == 0);
    CHECK_EQ(spw_httpc_read(&c, &r), -1);
    pthread_join(th, NULL);
    spw_httpc_close(&c);
    close(fake_lfd);
}

/* --offset latest: only records produced after the start; earliest: all. */
static void test_offset_latest(void)
{
    expect(run("stream create tail --partitions 2 --key /k %s", server_opt), 0, NULL);
    char path[4200];
    snprintf(path, sizeof path, "%s/tail1.ndjson", tmp);
    write_file(path, "{\"k\":\"a\",\"v\":1}\n{\"k\":\"b\",\"v\":2}\n{\"k\":\"c\",\"v\":3}\n");
    expect(run("produce tail %s %s", path, server_opt), 0, "3 accepted");
    out o = run("consume tail --offset latest --values %s", server_opt);
    CHECK_EQ(o.rc, 0);
    CHECK_EQ(strlen(o.text), 0); /* nothing after the end */
    free(o.text);
    o = run("consume tail --offset=earliest --values %s", server_opt);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "\"v\":1") && strstr(o.text, "\"v\":2") && strstr(o.text, "\"v\":3"));
    free(o.text);
    /* Following from the end: new records only. When the consumer read
     * the partitions' ends is not observable, so records are produced one
     * at a time until it prints one (bounded): whichever it is, it is new. */
    const char *args[] = {"tail", "--offset", "latest", "--follow", "--max", "1", "--values", "--server", server_addr,
                          NULL};
    int fd;
    pid_t pid = spawn_consume(args, &fd);
    int got = 0;
    for (int i = 0; i < 100 && !got; i++) {
        snprintf(path, sizeof path, "%s/tail2.ndjson", tmp);
        char line[64];
        snprintf(line, sizeof line, "{\"k\":\"a\",\"v\":%d}\n", 100 + i);
        write_file(path, line);
        expect(run("produce tail %s %s", path, server_opt), 0, "1 accepted");
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        got = poll(&pf, 1, 200) == 1;
    }
    CHECK(got);
    static char buf[1 << 14];
    read_lines(fd, buf, sizeof buf, 0, 1);
    close(fd);
    CHECK_EQ(wait_exit(pid), 0);
    CHECK(strstr(buf, "\"v\":1") != NULL); /* 100 and up */
    CHECK(!strstr(buf, "\"v\":1}") && !strstr(buf, "\"v\":2}") && !strstr(buf, "\"v\":3}"));
    expect(run("consume tail --offset newest %s", server_opt), 2, "earliest or latest");
    expect(run("consume tail --offset latest --from-ts 5 %s", server_opt), 2, "not both");
}

/* $SPILLWAY_SERVER stands for --server; --name=value works as --name value. */
static void test_env_server(void)
{
    CHECK(setenv("SPILLWAY_SERVER", server_addr, 1) == 0);
    expect(run("stream list"), 0, "tail");
    out o = run("bench --events=200 --clients=1 --batch=50 --stream=benchenv");
    if (o.rc != 0)
        fprintf(stderr, "%s\n", o.text);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "events=200 batch=50 clients=1"));
    free(o.text);
    char url[64];
    snprintf(url, sizeof url, "http://%s", server_addr);
    CHECK(setenv("SPILLWAY_SERVER", url, 1) == 0);
    expect(run("consume benchenv --max 1 --partition 0"), 0, "{\"partition\":0,\"offset\":0,");
    CHECK(setenv("SPILLWAY_SERVER", "not a server", 1) == 0);
    expect(run("stream list"), 2, "$SPILLWAY_SERVER takes HOST:PORT");
    expect(run("bench --events 10"), 2, "$SPILLWAY_SERVER takes HOST:PORT");
    expect(run("stream list %s", server_opt), 0, "benchenv"); /* the flag wins */
    CHECK(unsetenv("SPILLWAY_SERVER") == 0);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    bin = argv[1];
    signal(SIGPIPE, SIG_IGN);
    test_httpc();
    tmp = spw_test_tmpdir("cli");
    char data[4200];
    snprintf(data, sizeof data, "%s/data", tmp);
    srv s;
    srv_start(&s, bin, data, NULL);
    snprintf(server_addr, sizeof server_addr, "127.0.0.1:%d", s.port);
    snprintf(server_opt, sizeof server_opt, "--server %s", server_addr);
    test_usage();
    test_streams();
    test_produce_consume();
    test_follow();
    test_bench();
    test_offset_latest();
    test_env_server();
    /* Nothing listening: exit 1 with the reason. */
    expect(run("stream list --server 127.0.0.1:1"), 1, "cannot reach the server at 127.0.0.1:1");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(tmp);
    free(tmp);
    puts("test_cli: ok");
    return 0;
}
