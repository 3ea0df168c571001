/*
 * The families every exporter has (svc/metrics.h,
 * spw_metrics_register_process): spillway_build_info and the process_*
 * families Prometheus's client libraries export under these names, so
 * dashboards and alerts written for any exporter work. Each scrape reads
 * /proc/self: stat (CPU time, start time, virtual size) and statm
 * (resident pages); the fds are os/os.h's count and limit. Nothing is
 * kept between scrapes, except spillway_thread_cpu_seconds_total's
 * table of the threads seen (below).
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/version.h"
#include "os/os.h"
#include "svc/metrics.h"

static void m_build(void *ctx, spw_metrics_out *o, const char *name)
{
    (void)ctx;
    char labels[160];
    snprintf(labels, sizeof labels, "version=\"%s\",commit=\"%s\"", spw_version, spw_commit);
    spw_metrics_line(o, name, labels, 1);
}

/* Fields of /proc/self/stat after the command name: utime (14), stime
 * (15), starttime (22), vsize (23), counted from 1 as proc(5) does. */
typedef struct proc_stat {
    unsigned long long utime, stime, starttime, vsize;
} proc_stat;

static int read_stat_at(const char *path, proc_stat *ps)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    /* after ") ": field 3 (state) on */
    unsigned long long v[24] = {0};
    int field = 3;
    for (char *t = strtok(p + 2, " "); t && field <= 23; t = strtok(NULL, " "), field++)
        v[field] = strtoull(t, NULL, 10);
    if (field <= 23)
        return -1;
    *ps = (proc_stat){.utime = v[14], .stime = v[15], .starttime = v[22], .vsize = v[23]};
    return 0;
}

static int read_stat(proc_stat *ps) { return read_stat_at("/proc/self/stat", ps); }

static void m_cpu(void *ctx, spw_metrics_out *o, const char *name)
{
    (void)ctx;
    proc_stat ps;
    if (read_stat(&ps) == 0)
        spw_metrics_line_f(o, name, NULL, (double)(ps.utime + ps.stime) / (double)sysconf(_SC_CLK_TCK));
}

static void m_vsize(void *ctx, spw_metrics_out *o, const char *name)
{
    (void)ctx;
    proc_stat ps;
    if (read_stat(&ps) == 0)
        spw_metrics_line(o, name, NULL, ps.vsize);
}

static void m_start(void *ctx, spw_metrics_out *o, const char *name)
{
    (void)ctx;
    proc_stat ps;
    if (read_stat(&ps) != 0)
        return;
    /* starttime is in clock ticks after boot: boot time from the two clocks */
    struct timespec mono;
    clock_gettime(CLOCK_BOOTTIME, &mono);
    double boot = (double)spw_wall_ms() / 1000.0 - ((double)mono.tv_sec + (double)mono.tv_nsec / 1e9);
    spw_metrics_line_f(o, name, NULL, boot + (double)ps.starttime / (double)sysconf(_SC_CLK_TCK));
}

static void m_rss(void *ctx, spw_metrics_out *o, const char *name)
{
    (void)ctx;
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return;
    int ok = fscanf(f, "%llu %llu", &size, &resident) == 2;
    fclose(f);
    if (ok)
        spw_metrics_line(o, name, NULL, resident * (unsigned long long)sysconf(_SC_PAGESIZE));
}

static void m_open_fds(void *ctx, spw_metrics_out *o, const char *name)
{
    (void)ctx;
    int n = spw_os_count_fds();
    if (n >= 0)
        spw_metrics_line(o, name, NULL, (uint64_t)n);
}

static void m_max_fds(void *ctx, spw_metrics_out *o, const char *name)
{
    (void)ctx;
    spw_metrics_line(o, name, NULL, spw_os_fd_limit());
}

/*
 * spillway_thread_cpu_seconds_total{role}: the CPU time of the server's
 * threads by what they do, told by their names (core/thread.h;
 * docs/operations.md "Threads"). Each thread's time on a CPU comes from
 * /proc/self/task/TID/schedstat (ns; its stat's clock ticks where that is
 * missing). A counter may not go down, and a thread's time leaves
 * /proc with it (a deleted sink's worker, a view's), so every thread seen
 * is kept in a table: one gone since the last scrape adds what it had
 * then to its role's retired sum (what it ran after that scrape is not
 * counted), and a thread that changed its name (named just after it
 * started) or whose id came back for a new thread starts over from there.
 */
enum { R_HTTP, R_BIN, R_KAFKA, R_FLUSHER, R_FSYNC, R_IO, R_SINK, R_VIEW, R_OTHER, R_N };
const char *const spw_thread_roles[SPW_THREAD_ROLES] = {"http_loop", "bin_loop", "kafka_loop", "flusher", "fsync",
                                                        "io_worker", "sink",     "view",       "other"};
_Static_assert(R_N == SPW_THREAD_ROLES, "a role for each name");

static int prefixed(const char *s, const char *pre) { return strncmp(s, pre, strlen(pre)) == 0; }

static int role_of(const char *name)
{
    if (prefixed(name, "spw-http-"))
        return R_HTTP;
    if (prefixed(name, "spw-bin-"))
        return R_BIN;
    if (prefixed(name, "spw-kafka-"))
        return R_KAFKA;
    if (strcmp(name, "spw-flusher") == 0)
        return R_FLUSHER;
    if (prefixed(name, "spw-fsync-"))
        return R_FSYNC;
    if (prefixed(name, "spw-io-"))
        return R_IO;
    /* a sink's worker, its kind's threads (forward's producer, librdkafka's), a resharding copy */
    if (prefixed(name, "sink:") || strcmp(name, "spillway-prod") == 0 || prefixed(name, "rdk:") ||
        prefixed(name, "spw-pg-"))
        return R_SINK;
    if (prefixed(name, "view:") || prefixed(name, "vcommit:") || prefixed(name, "rocksdb:"))
        return R_VIEW;
    return R_OTHER;
}

typedef struct thr_seen {
    long tid;
    int role, seen;
    uint64_t ns, base; /* its time so far; what of it counts for another role or thread (before) */
} thr_seen;

static struct {
    pthread_mutex_t mu;
    thr_seen *t;
    uint32_t n, cap;
    uint64_t retired[R_N]; /* ns of threads gone, and of roles threads left */
} thr_tab = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Thread tid's name and CPU time so far (ns): 0, or -1 if it is gone. */
static int thread_read(long tid, char *name, size_t cap, uint64_t *ns)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/self/task/%ld/comm", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int ok = fgets(name, (int)cap, f) != NULL;
    fclose(f);
    if (!ok)
        return -1;
    name[strcspn(name, "\n")] = 0;
    unsigned long long v = 0;
    snprintf(path, sizeof path, "/proc/self/task/%ld/schedstat", tid);
    if ((f = fopen(path, "r"))) {
        ok = fscanf(f, "%llu", &v) == 1;
        fclose(f);
        if (ok) {
            *ns = v;
            return 0;
        }
    }
    proc_stat ps; /* a thread's stat has the process's layout */
    snprintf(path, sizeof path, "/proc/self/task/%ld/stat", tid);
    if (read_stat_at(path, &ps) < 0)
        return -1;
    *ns = (ps.utime + ps.stime) * 1000000000ull / (unsigned long long)sysconf(_SC_CLK_TCK);
    return 0;
}

static void thread_seen(long tid, int role, uint64_t ns)
{
    for (uint32_t i = 0; i < thr_tab.n; i++) {
        thr_seen *t = &thr_tab.t[i];
        if (t->tid != tid)
            continue;
        if (ns < t->ns) { /* the id of a thread gone, for a new one */
            thr_tab.retired[t->role] += t->ns - t->base;
            *t = (thr_seen){.tid = tid, .role = role, .ns = ns};
        } else if (role != t->role) { /* renamed: from now on the new role's */
            thr_tab.retired[t->role] += t->ns - t->base;
            t->role = role;
            t->base = t->ns;
        }
        t->ns = ns;
        t->seen = 1;
        return;
    }
    if (thr_tab.n == thr_tab.cap) {
        thr_tab.cap = thr_tab.cap ? thr_tab.cap * 2 : 64;
        thr_tab.t = spw_xrealloc(thr_tab.t, (size_t)thr_tab.cap * sizeof *thr_tab.t);
    }
    thr_tab.t[thr_tab.n++] = (thr_seen){.tid = tid, .role = role, .ns = ns, .seen = 1};
}

static void m_threads(void *ctx, spw_metrics_out *o, const char *name)
{
    (void)ctx;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    pthread_mutex_lock(&thr_tab.mu);
    for (uint32_t i = 0; i < thr_tab.n; i++)
        thr_tab.t[i].seen = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long tid = strtol(e->d_name, &end, 10);
        char comm[32];
        uint64_t ns;
        if (*end || tid <= 0 || thread_read(tid, comm, sizeof comm, &ns) < 0)
            continue;
        thread_seen(tid, role_of(comm), ns);
    }
    closedir(d);
    uint32_t keep = 0;
    for (uint32_t i = 0; i < thr_tab.n; i++) {
        thr_seen *t = &thr_tab.t[i];
        if (t->seen)
            thr_tab.t[keep++] = *t;
        else /* gone: what it had at the last scrape stays counted */
            thr_tab.retired[t->role] += t->ns - t->base;
    }
    thr_tab.n = keep;
    uint64_t sum[R_N];
    memcpy(sum, thr_tab.retired, sizeof sum);
    for (uint32_t i = 0; i < thr_tab.n; i++)
        sum[thr_tab.t[i].role] += thr_tab.t[i].ns - thr_tab.t[i].base;
    pthread_mutex_unlock(&thr_tab.mu);
    for (int r = 0; r < R_N; r++) {
        char labels[48];
        snprintf(labels, sizeof labels, "role=\"%s\"", spw_thread_roles[r]);
        spw_metrics_line_f(o, name, labels, (double)sum[r] / 1e9);
    }
}

void spw_metrics_register_process(spw_metrics *m)
{
    spw_metrics_add_family(m, "spillway_build_info", "the version and the git commit of this build (value 1)",
                           SPW_METRIC_GAUGE, m_build, NULL);
    spw_metrics_add_family(m, "process_cpu_seconds_total", "user and system CPU time of the server process",
                           SPW_METRIC_COUNTER, m_cpu, NULL);
    spw_metrics_add_family(m, "spillway_thread_cpu_seconds_total",
                           "CPU time of the server's threads by role (their names: I/O loops, flusher, fsync pool, "
                           "I/O workers, sinks, views, other)",
                           SPW_METRIC_COUNTER, m_threads, NULL);
    spw_metrics_add_family(m, "process_resident_memory_bytes", "resident memory of the server process",
                           SPW_METRIC_GAUGE, m_rss, NULL);
    spw_metrics_add_family(m, "process_virtual_memory_bytes", "virtual memory of the server process",
                           SPW_METRIC_GAUGE, m_vsize, NULL);
    spw_metrics_add_family(m, "process_open_fds", "open file descriptors of the server process", SPW_METRIC_GAUGE,
                           m_open_fds, NULL);
    spw_metrics_add_family(m, "process_max_fds", "the process's limit of open file descriptors (RLIMIT_NOFILE)",
                           SPW_METRIC_GAUGE, m_max_fds, NULL);
    spw_metrics_add_family(m, "process_start_time_seconds", "when the server process started, in seconds since the "
                           "Unix epoch", SPW_METRIC_GAUGE, m_start, NULL);
}
