/*
 * The postgres sink against a statement that blocks (docs/api.md
 * "postgres sink", docs/operations.md "Stopping"), with a real PostgreSQL
 * server (pg.h):
 *  - another session holds LOCK TABLE on the targets, so the sinks' writes
 *    (COPY, or INSERT for a few rows: copy_min_rows) wait for the lock: a sink with statement_timeout_ms 300 fails its
 *    statement ("statement timeout", in last_error) and retries; the one
 *    with the default (60 s) stays blocked;
 *  - the sinks' idle connections run TCP keepalives due within 30 s
 *    (/proc/net/tcp), not the system's default of 2 hours;
 *  - SIGTERM then stops the server (exit 0, within srv_stop's bound): the
 *    blocked statement is cancelled, not waited for;
 *  - after the lock is released and the server restarted, every event is
 *    in each table exactly once (count = count(DISTINCT id) = produced);
 *  - the cancel request itself blackholed: the sink reaches PostgreSQL
 *    through a TCP proxy (in this test) that stops accepting connections
 *    once the sink's write waits on the lock, so PQcancel's own connection
 *    is taken by the kernel and never answered. SIGTERM still stops the
 *    server (the stop does not wait for the cancel past its bound, and
 *    says so in the log; the statement ends at its statement_timeout),
 *    and after a restart every event is in the table exactly once.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

#include "pg.h"

static const char *BIN;

static void wait_rows(const pgsrv *pg, const char *table, long long want)
{
    char q[200];
    snprintf(q, sizeof q, "SELECT count(*) FROM %s", table);
    long long n = -1;
    for (int i = 0; i < 600 && n != want; i++) {
        n = pgsrv_num(pg, q);
        if (n != want)
            usleep(50 * 1000);
    }
    if (n != want)
        fprintf(stderr, "%s: %lld rows, want %lld\n", table, n, want);
    CHECK_EQ(n, want);
    snprintf(q, sizeof q, "SELECT count(DISTINCT id) FROM %s", table);
    CHECK_EQ(pgsrv_num(pg, q), want);
}

/*
 * The server's TCP connections to port (ESTABLISHED, from its network
 * namespace's /proc/net/tcp): how many, and how many run the keepalive
 * timer (tr 2) due within max_s seconds (tm->when is in USER_HZ ticks).
 * An idle connection with keepalives_idle 30 s has it due within 30 s;
 * with the system's default (7200 s), not.
 */
static void keepalive_timers(pid_t pid, int port, int max_s, int *conns, int *soon)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/net/tcp", (int)pid);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char line[512];
    *conns = *soon = 0;
    long hz = sysconf(_SC_CLK_TCK);
    CHECK(fgets(line, sizeof line, f) != NULL); /* the header */
    while (fgets(line, sizeof line, f)) {
        unsigned lport, rport, st, tr;
        unsigned long when;
        char la[64], ra[64];
        if (sscanf(line, " %*d: %63[0-9A-Fa-f]:%x %63[0-9A-Fa-f]:%x %x %*x:%*x %x:%lx", la, &lport, ra, &rport, &st,
                   &tr, &when) != 7)
            continue;
        if (st != 1 || rport != (unsigned)port)
            continue;
        (*conns)++;
        if (tr == 2 && when <= (unsigned long)(max_s * hz))
            (*soon)++;
    }
    fclose(f);
}

static int sink_says(int port, const char *sink, const char *needle)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/sinks/%s", sink);
    resp r = http_json(port, "GET", path, NULL);
    int ok = r.status == 200 && strstr(r.body, needle) != NULL;
    free(r.body);
    return ok;
}

/* ---- a TCP proxy that can stop accepting (a blackhole) ---- */

typedef struct proxy {
    int lfd, port, target;
    _Atomic int accepting, stop;
    pthread_t th;
} proxy;

/* Copies bytes both ways between fds[0] and fds[1] until either closes. */
static void *pump(void *arg)
{
    int *fds = arg;
    struct pollfd p[2] = {{.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};
    char buf[65536];
    for (;;) {
        if (poll(p, 2, 1000) < 0)
            break;
        int done = 0;
        for (int i = 0; i < 2 && !done; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = recv(fds[i], buf, sizeof buf, 0);
            if (n <= 0) {
                done = 1;
                break;
            }
            send_all(fds[1 - i], buf, (size_t)n);
        }
        if (done)
            break;
    }
    close(fds[0]);
    close(fds[1]);
    free(fds);
    return NULL;
}

static void *proxy_main(void *arg)
{
    proxy *x = arg;
    while (!atomic_load(&x->stop)) {
        if (!atomic_load(&x->accepting)) {
            usleep(10000); /* connections wait in the backlog, never accepted */
            continue;
        }
        struct pollfd p = {.fd = x->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) != 1 || !atomic_load(&x->accepting))
            continue;
        int a = accept(x->lfd, NULL, NULL);
        if (a < 0)
            continue;
        int *fds = malloc(2 * sizeof *fds);
        fds[0] = a;
        fds[1] = tcp_connect(x->target);
        pthread_t th;
        CHECK(pthread_create(&th, NULL, pump, fds) == 0);
        pthread_detach(th);
    }
    return NULL;
}

static void proxy_start(proxy *x, int target)
{
    x->target = target;
    x->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(x->lfd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(listen(x->lfd, 16) == 0);
    socklen_t sl = sizeof sa;
    CHECK(getsockname(x->lfd, (struct sockaddr *)&sa, &sl) == 0);
    x->port = ntohs(sa.sin_port);
    atomic_store(&x->accepting, 1);
    atomic_store(&x->stop, 0);
    CHECK(pthread_create(&x->th, NULL, proxy_main, x) == 0);
}

static void proxy_stop(proxy *x)
{
    atomic_store(&x->stop, 1);
    pthread_join(x->th, NULL);
    close(x->lfd);
}

static int file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* The cancel request blackholed (see the top). */
static void test_cancel_blackholed(const char *tmp, pgsrv *pg)
{
    pgsrv_exec(pg, "CREATE TABLE t_bh (id bigint NOT NULL)");
    proxy x;
    proxy_start(&x, pg->port);
    char data[4200], logf[4200], body[1024];
    snprintf(data, sizeof data, "%s/spw_bh", tmp);
    snprintf(logf, sizeof logf, "%s/spw_bh.log", tmp);
    srv s;
    srv_start_log(&s, BIN, data, NULL, logf);
    put_stream(s.port, "ev", "{\"partitions\":1}");
    snprintf(body, sizeof body,
             "{\"stream\":\"ev\",\"kind\":\"postgres\",\"batch\":{\"max_wait_ms\":10},"
             "\"retry\":{\"initial_ms\":50,\"max_ms\":200},\"options\":{\"shards\":["
             "\"host=127.0.0.1 port=%d user=postgres dbname=postgres\"],\"table\":\"t_bh\","
             "\"columns\":{\"id\":\"/i\"},\"statement_timeout_ms\":4000}}",
             x.port);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/bh", body), 201);
    pg_produce_http(s.port, 0, 10);
    wait_rows(pg, "t_bh", 10);
    PGconn *lk = pgsrv_conn(pg);
    PGresult *r = PQexec(lk, "BEGIN; LOCK TABLE t_bh IN ACCESS EXCLUSIVE MODE");
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    pg_produce_http(s.port, 10, 20);
    long long waiting = 0;
    for (int i = 0; i < 600 && waiting < 1; i++) {
        waiting = pgsrv_num(pg, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
                                "query LIKE '%\"t_bh\" (%'"); /* its COPY or INSERT */
        if (waiting < 1)
            usleep(50 * 1000);
    }
    CHECK_EQ(waiting, 1);
    /* From now on the proxy takes no connection: the cancel's waits in
     * its backlog, connected and never answered. */
    atomic_store(&x.accepting, 0);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    CHECK(file_has(logf, "was not answered within"));
    r = PQexec(lk, "COMMIT");
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(lk);
    atomic_store(&x.accepting, 1);
    srv_start(&s, BIN, data, NULL);
    wait_rows(pg, "t_bh", 20);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    proxy_stop(&x);
    printf("test_pg_stop: a blackholed cancel request did not hold the stop\n");
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    CHECK(pgsrv_find() == 0);
    char *tmp = spw_test_tmpdir("pgstop");
    static pgsrv pg;
    pgsrv_init(&pg, tmp, "pg");
    pgsrv_exec(&pg, "CREATE TABLE t_slow (id bigint NOT NULL); CREATE TABLE t_fast (id bigint NOT NULL)");
    char data[4200], body[1024];
    snprintf(data, sizeof data, "%s/spw", tmp);
    srv s;
    srv_start(&s, BIN, data, NULL);
    put_stream(s.port, "ev", "{\"partitions\":2}");
    const char *names[2] = {"slow", "fast"};
    for (int i = 0; i < 2; i++) {
        snprintf(body, sizeof body,
                 "{\"stream\":\"ev\",\"kind\":\"postgres\",\"batch\":{\"max_wait_ms\":10},"
                 "\"retry\":{\"initial_ms\":50,\"max_ms\":200},\"options\":{\"shards\":["
                 "\"host=127.0.0.1 port=%d user=postgres dbname=postgres\"],\"table\":\"t_%s\","
                 "\"columns\":{\"id\":\"/i\"}%s}}",
                 pg.port, names[i], i == 1 ? ",\"statement_timeout_ms\":300" : "");
        char path[100];
        snprintf(path, sizeof path, "/v1/sinks/%s", names[i]);
        CHECK_EQ(req_status(s.port, "PUT", path, body), 201);
    }
    pg_produce_http(s.port, 0, 100);
    wait_rows(&pg, "t_slow", 100);
    wait_rows(&pg, "t_fast", 100);

    /* both sinks' connections are idle now: keepalive probes start after 30 s */
    int conns = 0, soon = 0;
    keepalive_timers(s.pid, pg.port, 31, &conns, &soon);
    CHECK_EQ(conns, 2);
    CHECK_EQ(soon, 2);

    /* another session locks both tables and keeps its transaction open */
    PGconn *lk = pgsrv_conn(&pg);
    PGresult *r = PQexec(lk, "BEGIN; LOCK TABLE t_slow, t_fast IN ACCESS EXCLUSIVE MODE");
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    pg_produce_http(s.port, 100, 150);
    /* the short timeout gives up and says so; the other waits on the lock */
    int said = 0;
    for (int i = 0; i < 600 && !said; i++) {
        said = sink_says(s.port, "fast", "statement timeout");
        if (!said)
            usleep(50 * 1000);
    }
    CHECK(said);
    long long waiting = 0;
    for (int i = 0; i < 600 && waiting < 1; i++) {
        waiting = pgsrv_num(&pg, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
                                 "query LIKE '%\"t_slow\" (%'"); /* its COPY or INSERT */
        if (waiting < 1)
            usleep(50 * 1000);
    }
    CHECK_EQ(waiting, 1);

    /* the stop cancels the blocked statement instead of waiting for it */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    CHECK_EQ(pgsrv_num(&pg, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"), 0);
    r = PQexec(lk, "COMMIT");
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(lk);

    srv_start(&s, BIN, data, NULL);
    wait_rows(&pg, "t_slow", 150);
    wait_rows(&pg, "t_fast", 150);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    test_cancel_blackholed(tmp, &pg);
    pgsrv_stop_all();
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_pg_stop: ok\n");
    return 0;
}
