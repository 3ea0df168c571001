/*
 * One server per data directory and per address (docs/operations.md "One
 * server per data directory"): with a server running, a second `spillway
 * serve` on the same data directory (another port) is refused, naming the
 * directory and the PID holding it; a second on another directory but the
 * same HTTP or binary address is refused; `spillway check` on the live
 * directory says it is in use. The first server still serves and its
 * acknowledged data is intact. After kill -9 the lock is gone with the
 * process: a new server starts on the directory.
 */
#include "server.h"

static const char *BIN;

typedef struct run_out {
    int rc;         /* exit code; -1 if it was still running after 20 s */
    char text[8192]; /* stdout and stderr */
} run_out;

/* Runs BIN serve --data data --listen http --listen-bin binl; a refused
 * server exits at once. One still running after 20 s is killed by its PID
 * and reported as rc -1. */
static void run_serve(const char *data, const char *http, const char *binl, run_out *o)
{
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        execl(BIN, BIN, "serve", "--data", data, "--listen", http, "--listen-bin", binl, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    size_t n = 0;
    int st = 0, done = 0;
    for (int i = 0; i < 2000 && !done; i++) {
        ssize_t k;
        while ((k = read(p[0], o->text + n, sizeof o->text - 1 - n)) > 0)
            n += (size_t)k;
        if (waitpid(pid, &st, WNOHANG) == pid)
            done = 1;
        else
            usleep(10000);
    }
    ssize_t k;
    while ((k = read(p[0], o->text + n, sizeof o->text - 1 - n)) > 0)
        n += (size_t)k;
    o->text[n] = 0;
    close(p[0]);
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        o->rc = -1;
    } else {
        o->rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    if (getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "serve --data %s --listen %s --listen-bin %s -> %d\n%s", data, http, binl, o->rc, o->text);
}

static resp produce(int port, const char *body)
{
    return http(port, "POST", "/v1/streams/s/events?ack=fsync", "application/x-ndjson", body, strlen(body));
}

/* The first server's data: exactly the n events it acknowledged, in order. */
static void verify(int port, int n)
{
    CHECK_EQ(part_field(port, "/v1/streams/s", 0, "end_offset"), n);
    resp r = http_json(port, "GET", "/v1/streams/s/events?partition=0&offset=0&limit=1000", NULL);
    CHECK_EQ(r.status, 200);
    char want[64];
    for (int i = 0; i < n; i++) {
        snprintf(want, sizeof want, "{\"n\":%d}", i);
        CHECK(strstr(r.body, want) != NULL);
    }
    free(r.body);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    signal(SIGPIPE, SIG_IGN);
    char *tmp = spw_test_tmpdir("datalock");
    char d1[4200], d2[4200], addr[64], addr_bin[64];
    snprintf(d1, sizeof d1, "%s/one", tmp);
    snprintf(d2, sizeof d2, "%s/two", tmp);

    srv a;
    srv_start(&a, BIN, d1, NULL);
    put_stream(a.port, "s", "{\"partitions\":1}");
    int n = 0;
    for (; n < 10; n++) {
        char ev[64];
        snprintf(ev, sizeof ev, "{\"n\":%d}\n", n);
        resp r = produce(a.port, ev);
        CHECK_EQ(r.status, 202);
        free(r.body);
    }

    /* The same data directory, other ports: refused, naming the directory
     * and the holder's PID. */
    run_out o;
    char pidtext[64];
    snprintf(pidtext, sizeof pidtext, "pid %d", (int)a.pid);
    run_serve(d1, "127.0.0.1:0", "127.0.0.1:0", &o);
    CHECK(o.rc > 0);
    CHECK(strstr(o.text, d1) != NULL);
    CHECK(strstr(o.text, "in use") != NULL);
    CHECK(strstr(o.text, pidtext) != NULL);

    /* Another data directory, the same HTTP address: refused. */
    snprintf(addr, sizeof addr, "127.0.0.1:%d", a.port);
    run_serve(d2, addr, "127.0.0.1:0", &o);
    CHECK(o.rc > 0);
    CHECK(strstr(o.text, "cannot listen on") != NULL);
    CHECK(strstr(o.text, addr) != NULL);
    /* ... and the same binary address. */
    snprintf(addr_bin, sizeof addr_bin, "127.0.0.1:%d", a.binport);
    run_serve(d2, "127.0.0.1:0", addr_bin, &o);
    CHECK(o.rc > 0);
    CHECK(strstr(o.text, "cannot listen on") != NULL);
    CHECK(strstr(o.text, addr_bin) != NULL);

    /* check on the live directory (and on a directory below it) says so. */
    cli_out c = cli_run(BIN, "check %s", d1);
    CHECK_EQ(c.rc, 3);
    CHECK(strstr(c.text, "in use by a running spillway server") != NULL);
    CHECK(strstr(c.text, pidtext) != NULL);
    free(c.text);
    c = cli_run(BIN, "check %s/streams", d1);
    CHECK_EQ(c.rc, 3);
    free(c.text);

    /* The first server still serves, alone, every acknowledged event in
     * place; on many fresh connections (none goes to another process). */
    verify(a.port, n);
    for (int i = 0; i < 20; i++, n++) {
        char ev[64];
        snprintf(ev, sizeof ev, "{\"n\":%d}\n", n);
        resp r = produce(a.port, ev);
        CHECK_EQ(r.status, 202);
        CHECK(strstr(r.body, "\"count\":1") != NULL);
        free(r.body);
    }
    verify(a.port, n);

    /* kill -9 leaves the lock file, not the lock: a new server starts on
     * the directory and finds every event. */
    srv_stop(&a, SIGKILL);
    c = cli_run(BIN, "check %s", d1);
    CHECK_EQ(c.rc, 0);
    free(c.text);
    /* A directory that is not there is not damage: exit 2, said so. */
    c = cli_run(BIN, "check %s/nowhere", d1);
    CHECK_EQ(c.rc, 2);
    CHECK(strstr(c.text, "No such file or directory") != NULL);
    free(c.text);
    srv_start(&a, BIN, d1, NULL);
    verify(a.port, n);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);

    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_datalock: ok\n");
    return 0;
}
