/*
 * Every thread of the server has a name (core/thread.h; docs/operations.md
 * "Threads"), so `top -H`, `ps -L` and `perf report --sort comm` tell the
 * I/O loops, the flusher, the fsync pool, each sink and each view apart.
 * Read from /proc/PID/task/TID/comm of a running server with every
 * listener, a sink and a view: each expected name is there, a name longer
 * than Linux keeps is cut to 15 bytes, and no thread but the main one is
 * left with the program's name. The same names give /metrics its
 * spillway_thread_cpu_seconds_total{role}: every role is there, the loops,
 * the flusher and the sink have used CPU, and a role whose threads ended
 * (the sink deleted) keeps what they had: a counter never goes down.
 */
#include <dirent.h>

#include "server.h"

enum { MAX_THREADS = 256 };

typedef struct names {
    int n;
    char name[MAX_THREADS][32];
} names;

static void read_names(pid_t pid, names *out)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    out->n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && out->n < MAX_THREADS) {
        if (e->d_name[0] == '.')
            continue;
        char path[128];
        snprintf(path, sizeof path, "%s/%s/comm", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* the thread ended meanwhile */
        char *s = out->name[out->n];
        if (fgets(s, sizeof out->name[0], f)) {
            s[strcspn(s, "\n")] = 0;
            out->n++;
        }
        fclose(f);
    }
    closedir(d);
}

static int count(const names *t, const char *name)
{
    int c = 0;
    for (int i = 0; i < t->n; i++)
        c += strcmp(t->name[i], name) == 0;
    return c;
}

/* Waits (bounded) until a thread named name shows up. */
static int wait_name(pid_t pid, const char *name, names *t)
{
    for (int i = 0; i < 500; i++) {
        read_names(pid, t);
        if (count(t, name))
            return 1;
        usleep(10000);
    }
    fprintf(stderr, "no thread named %s among %d\n", name, t->n);
    return 0;
}

/* spillway_thread_cpu_seconds_total{role="ROLE"} in seconds, -1 if absent. */
static double role_cpu(const char *metrics, const char *role)
{
    char name[128];
    int nl = snprintf(name, sizeof name, "spillway_thread_cpu_seconds_total{role=\"%s\"} ", role);
    for (const char *p = metrics; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, (size_t)nl) == 0)
            return strtod(p + nl, NULL);
    return -1;
}

static const char *const ROLES[] = {"http_loop", "bin_loop", "kafka_loop", "flusher", "fsync",
                                    "io_worker", "sink",     "view",       "other"};
enum { NROLES = sizeof ROLES / sizeof ROLES[0] };

static void scrape(int port, double *v)
{
    resp r = http(port, "GET", "/metrics", NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    for (int i = 0; i < NROLES; i++) {
        v[i] = role_cpu(r.body, ROLES[i]);
        if (v[i] < 0)
            fprintf(stderr, "no spillway_thread_cpu_seconds_total for role %s\n", ROLES[i]);
        CHECK(v[i] >= 0);
    }
    free(r.body);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char dir[] = "/tmp/spw-threadnames-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char data[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    const char *extra[] = {"--listen-kafka", "127.0.0.1:0", "--io-threads", "2", NULL};
    srv s;
    srv_start(&s, argv[1], data, extra);

    put_stream(s.port, "ev", "{\"partitions\":2}");
    /* a sink whose name is longer than a thread name holds: "sink:" + 10 bytes */
    put_forward_sink(s.port, "forwarder-of-ev", "ev", s.binport, "copy");
    CHECK_EQ(req_status(s.port, "PUT", "/v1/views/total", "{\"stream\":\"ev\",\"kind\":\"sum\",\"field\":\"/n\"}"), 201);
    CHECK_EQ(req_status(s.port, "POST", "/v1/streams/ev/events?ack=fsync", "{\"key\":\"a\",\"value\":{\"n\":1}}"), 202);

    names t;
    const char *want[] = {"spw-http-0",  "spw-http-1", "spw-bin-0",      "spw-bin-1",      "spw-kafka-0",
                          "spw-kafka-1", "spw-flusher", "spw-fsync-0",   "spw-ckpt",       "spw-io-0",
                          "spw-coalesce", "spw-group-wait", "spw-repl-timer", "sink:forwarder-", "view:total",
                          "spillway-prod"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(wait_name(s.pid, want[i], &t));
    CHECK_EQ(strlen("sink:forwarder-"), (size_t)15); /* cut where Linux cuts */

    read_names(s.pid, &t);
    /* the main thread keeps the program's name; no other thread does but,
     * under ThreadSanitizer, its runtime's background thread, started from
     * main. (A library's thread that names nothing carries its starter's
     * name, as RocksDB's timer does: docs/operations.md "Threads".) */
#if defined(__SANITIZE_THREAD__)
    const int program_named = 2;
#else
    const int program_named = 1;
#endif
    int unnamed = count(&t, "spillway");
    if (unnamed != program_named)
        for (int i = 0; i < t.n; i++)
            fprintf(stderr, "thread: %s\n", t.name[i]);
    CHECK_EQ(unnamed, program_named);

    /* the CPU of the threads by role */
    double a[NROLES], b[NROLES];
    scrape(s.port, a);
    CHECK(a[0] > 0); /* http_loop */
    CHECK(a[3] > 0); /* flusher */
    CHECK(a[6] > 0); /* sink: its worker and the forward kind's producer delivered the event */
    CHECK_EQ(req_status(s.port, "DELETE", "/v1/sinks/forwarder-of-ev", NULL), 204);
    CHECK_EQ(req_status(s.port, "DELETE", "/v1/views/total", NULL), 204);
    int gone = 0;
    for (int i = 0; i < 500 && !gone; i++) { /* the sink's worker and producer end */
        read_names(s.pid, &t);
        gone = !count(&t, "sink:forwarder-") && !count(&t, "spillway-prod");
        if (!gone)
            usleep(10000);
    }
    CHECK(gone);
    scrape(s.port, b);
    for (int i = 0; i < NROLES; i++) {
        if (b[i] < a[i])
            fprintf(stderr, "role %s: %.9f s, then %.9f\n", ROLES[i], a[i], b[i]);
        CHECK(b[i] >= a[i]);
    }

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    printf("test_threadnames: ok (%d threads)\n", t.n);
    return 0;
}
