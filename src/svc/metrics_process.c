/*
 * The families every exporter has (svc/metrics.h,
 * spw_metrics_register_process): spillway_build_info and the process_*
 * families Prometheus's client libraries export under these names, so
 * dashboards and alerts written for any exporter work. Each scrape reads
 * /proc/self: stat (CPU time, start time, virtual size) and statm
 * (resident pages); the fds are os/os.h's count and limit. Nothing is
 * kept between scrapes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static int read_stat(proc_stat *ps)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
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

void spw_metrics_register_process(spw_metrics *m)
{
    spw_metrics_add_family(m, "spillway_build_info", "the version and the git commit of this build (value 1)",
                           SPW_METRIC_GAUGE, m_build, NULL);
    spw_metrics_add_family(m, "process_cpu_seconds_total", "user and system CPU time of the server process",
                           SPW_METRIC_COUNTER, m_cpu, NULL);
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
