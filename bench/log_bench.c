/*
 * spw_log_bench: the durable partition log (src/log) measured against the
 * machine it runs on, in one run.
 *
 * 1. Raw limits of the data directory's file system, measured first (the
 *    median of 3 rounds each: this VM's numbers move from second to second):
 *    - write_fsync_mb_per_s: sequential 1 MiB write(2)s of the volume the
 *      headline cell (ack=fsync, 4 threads x 1000 records) would write at
 *      its target rate for --seconds, then one fdatasync; MB/s over the
 *      whole (writes + fdatasync);
 *    - fdatasync_per_s: 4 KiB appends to one file, an fdatasync after each,
 *      for 1 s.
 * 2. A table: producer threads {1,4,16} x records per append {1,100,1000} x
 *    ack {none,written,fsync}. Records are 16-byte keys and 100-byte values.
 *    Every thread appends with spw_part_append_wait: it waits for each
 *    append's completion at the ack level before the next (closed loop, one
 *    append in flight per thread; --wait cb uses spw_part_append with a
 *    callback and a condvar instead), and the latency of every append is kept
 *    in a log-linear histogram (~1.5% resolution) for p50/p99.
 *
 * Partitions: by default every thread appends to ONE shared partition
 * (--partitions 1). That is the configuration the targets describe — one
 * fdatasync can cover the appends of all threads, as a database's WAL
 * group commit — and the hardest one for the append lock. --partitions N
 * spreads threads round-robin over min(N, threads) partitions (Kafka-style
 * benchmarks: one partition per producer thread up to the partition count;
 * --partitions 0 means one per thread); each partition is its own segment
 * file and needs its own fdatasync per cycle. The partition count is printed
 * on every line.
 *
 * Every cell gets a fresh log (so its flush statistics are its own) and a
 * fresh directory, deleted when the cell ends, so disk use stays bounded by
 * one cell's data. Throughput counts completed appends only, over the time
 * from the common start until the last thread finished its last append.
 * mb_per_s counts encoded batch bytes (what reaches the segment files;
 * ~124 B per record plus an 80-byte header per append); MB = 10^6 bytes,
 * for the raw numbers too. ratio_to_raw = mb_per_s / write_fsync_mb_per_s.
 * cpu_ns_per_record: the process's user + system time (getrusage: the
 * producer threads and the log's flusher, fsync pool and checkpoint
 * threads together) over the same interval, per completed record;
 * ctxsw_per_append: its voluntary + involuntary context switches per
 * completed append. Both are far steadier than the rates on a shared
 * machine.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/id.h"
#include "log/format.h"
#include "log/log.h"

#define KEY_LEN 16
#define VALUE_LEN 100
#define MB 1e6

/* The targets. */
#define TARGET_FSYNC_4X1000_RPS 2000000.0
#define TARGET_FSYNC_4X1000_RATIO 0.5
#define TARGET_FSYNC_16X1_FACTOR 0.8
#define TARGET_NONE_4X1000_RPS 3000000.0

static volatile sig_atomic_t g_interrupted;
static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static double now_s(void) { return (double)spw_mono_ns() / 1e9; }

/* ---- log-linear latency histogram, in ns ---- */

#define H_SUB_BITS 6
#define H_SUB (1u << H_SUB_BITS)
#define H_MAX_EXP 42 /* ~73 min */
#define H_BUCKETS ((H_MAX_EXP - H_SUB_BITS + 1) * H_SUB + H_SUB)

typedef struct lhist {
    uint64_t b[H_BUCKETS];
    uint64_t n;
} lhist;

static size_t h_index(uint64_t v)
{
    if (v < H_SUB)
        return (size_t)v;
    int e = 63 - __builtin_clzll(v);
    if (e > H_MAX_EXP)
        return H_BUCKETS - 1;
    size_t sub = (size_t)(v >> (e - H_SUB_BITS)) & (H_SUB - 1);
    return (size_t)(e - H_SUB_BITS + 1) * H_SUB + sub;
}

/* Midpoint of bucket i. */
static double h_value(size_t i)
{
    if (i < H_SUB)
        return (double)i;
    int e = (int)(i / H_SUB) + H_SUB_BITS - 1;
    uint64_t sub = i % H_SUB;
    double lo = (double)((H_SUB + sub) << (e - H_SUB_BITS));
    double width = (double)(1ull << (e - H_SUB_BITS));
    return lo + width / 2;
}

static void h_add(lhist *h, uint64_t v)
{
    h->b[h_index(v)]++;
    h->n++;
}

static void h_merge(lhist *into, const lhist *h)
{
    for (size_t i = 0; i < H_BUCKETS; i++)
        into->b[i] += h->b[i];
    into->n += h->n;
}

static double h_quantile(const lhist *h, double q)
{
    if (!h->n)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->n);
    if (rank >= h->n)
        rank = h->n - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < H_BUCKETS; i++) {
        seen += h->b[i];
        if (seen > rank)
            return h_value(i);
    }
    return h_value(H_BUCKETS - 1);
}

/* ---- files ---- */

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if ((type == FTW_DP ? rmdir(path) : unlink(path)) != 0)
        fprintf(stderr, "spw_log_bench: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

static void rm_tree(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void die(const char *what, int err)
{
    fprintf(stderr, "spw_log_bench: %s: %s\n", what, err < 0 ? spw_strerror(err) : strerror(err));
    exit(1);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- raw limits ---- */

typedef struct raw {
    double write_fsync_mb_per_s;
    double write_s, fsync_s;
    uint64_t bytes;
    double fdatasync_per_s;
} raw;

static void measure_raw(const char *dir, uint64_t volume, double sync_seconds, raw *out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/raw-write", dir);
    size_t chunk = 1u << 20;
    uint8_t *buf = malloc(chunk);
    if (!buf)
        die("malloc", ENOMEM);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < chunk; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (uint8_t)x;
    }

    /* (a) sequential writes + one fdatasync. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        die(path, errno);
    uint64_t n = (volume + chunk - 1) / chunk;
    double t0 = now_s();
    for (uint64_t i = 0; i < n && !g_interrupted; i++) {
        int r = write_all(fd, buf, chunk);
        if (r)
            die("raw write", r);
    }
    double t1 = now_s();
    if (fdatasync(fd) != 0)
        die("raw fdatasync", errno);
    double t2 = now_s();
    close(fd);
    unlink(path);
    out->bytes = n * chunk;
    out->write_s = t1 - t0;
    out->fsync_s = t2 - t1;
    out->write_fsync_mb_per_s = (double)out->bytes / MB / (t2 - t0);

    /* (b) fdatasync rate on 4 KiB appends to one file. */
    snprintf(path, sizeof path, "%s/raw-sync", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        die(path, errno);
    uint64_t syncs = 0;
    t0 = now_s();
    double end = t0 + sync_seconds;
    do {
        int r = write_all(fd, buf, 4096);
        if (r)
            die("raw write", r);
        if (fdatasync(fd) != 0)
            die("raw fdatasync", errno);
        syncs++;
    } while (now_s() < end && !g_interrupted);
    t1 = now_s();
    close(fd);
    unlink(path);
    out->fdatasync_per_s = (double)syncs / (t1 - t0);
    free(buf);
}

#define RAW_ROUNDS 3

static double median(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- one cell ---- */

typedef struct cell_res {
    spw_ack ack;
    int threads, batch, partitions;
    int ran;
    double seconds;
    uint64_t appends, records, bytes;
    double records_per_s, mb_per_s, p50_us, p99_us, ratio;
    double cpu_ns_per_record, ctxsw_per_append;
    spw_log_stats st;
    int error;
} cell_res;

typedef struct cell_ctx {
    spw_ack ack;
    int batch;
    int use_cb;
    pthread_barrier_t start;
    _Atomic int stop;
} cell_ctx;

typedef struct worker {
    cell_ctx *cx;
    spw_part *part;
    int id;
    spw_record *recs;
    uint8_t *keys;
    uint8_t value[VALUE_LEN];
    lhist *hist;
    uint64_t appends, records, bytes;
    double end_s;
    int error;
    /* --wait cb: completion by callback; lives until the log is closed. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status;
} worker;

static void worker_cb(void *arg, int status, const spw_append_result *r)
{
    (void)r;
    worker *w = arg;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    w->status = status;
    pthread_mutex_unlock(&w->mu);
    /* Safe after the unlock: w outlives the log (freed after spw_log_close). */
    pthread_cond_signal(&w->cv);
}

static int append_cb_wait(worker *w, spw_record *recs, uint32_t n, spw_ack ack)
{
    w->done = 0;
    int r = spw_part_append(w->part, recs, n, NULL, ack, 0, worker_cb, w, NULL);
    if (r)
        return r;
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    return w->status;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    cell_ctx *cx = w->cx;
    int n = cx->batch;
    spw_append_result res;
    pthread_barrier_wait(&cx->start);
    while (!atomic_load_explicit(&cx->stop, memory_order_relaxed)) {
        int64_t ts = spw_wall_ms();
        for (int i = 0; i < n; i++)
            w->recs[i].ts = ts;
        uint64_t t0 = spw_mono_ns();
        int r = cx->use_cb ? append_cb_wait(w, w->recs, (uint32_t)n, cx->ack)
                           : spw_part_append_wait(w->part, w->recs, (uint32_t)n, NULL, cx->ack, &res);
        uint64_t t1 = spw_mono_ns();
        if (r) {
            w->error = r;
            break;
        }
        h_add(w->hist, t1 - t0);
        w->appends++;
        w->records += (uint64_t)n;
    }
    w->end_s = now_s();
    return NULL;
}

/* The whole process's CPU time (user + system, ns) and context switches. */
static void usage_now(double *cpu_ns, double *ctxsw)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *cpu_ns = ((double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec) * 1e9 +
              ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e3;
    *ctxsw = (double)ru.ru_nvcsw + (double)ru.ru_nivcsw;
}

/* Encoded length of one append of n benchmark records. */
static size_t batch_len(int n)
{
    spw_record *recs = calloc((size_t)n, sizeof *recs);
    static uint8_t key[KEY_LEN], value[VALUE_LEN];
    for (int i = 0; i < n; i++)
        recs[i] = (spw_record){.key = key, .key_len = KEY_LEN, .value = value, .value_len = VALUE_LEN,
                               .ts = spw_wall_ms()};
    spw_buf out = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    spw_idgen g;
    spw_idgen_init(&g, 0, NULL);
    spw_batch_opts o = {.idgen = &g};
    int r = spw_batch_encode(&out, &scratch, recs, (uint32_t)n, &o);
    if (r)
        die("spw_batch_encode", r);
    size_t len = out.len;
    spw_buf_fini(&out);
    spw_buf_fini(&scratch);
    free(recs);
    return len;
}

static int g_use_cb;

static void run_cell(const char *root, int cell_no, double seconds, int part_opt, cell_res *cr)
{
    int T = cr->threads, B = cr->batch;
    int P = part_opt <= 0 || part_opt > T ? T : part_opt;
    cr->partitions = P;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/cell-%02d", root, cell_no);

    spw_log *log;
    spw_log_config lc;
    spw_log_config_default(&lc);
    int r = spw_log_open(&lc, &log);
    if (r)
        die("spw_log_open", r);
    spw_part **parts = calloc((size_t)P, sizeof *parts);
    for (int i = 0; i < P; i++) {
        char pd[8192];
        snprintf(pd, sizeof pd, "%s/p%02d", dir, i);
        if ((r = spw_part_open(log, pd, NULL, &parts[i], NULL)))
            die("spw_part_open", r);
    }

    cell_ctx cx = {.ack = cr->ack, .batch = B, .use_cb = g_use_cb};
    atomic_init(&cx.stop, 0);
    pthread_barrier_init(&cx.start, NULL, (unsigned)T + 1);
    worker *ws = calloc((size_t)T, sizeof *ws);
    pthread_t *tids = calloc((size_t)T, sizeof *tids);
    for (int t = 0; t < T; t++) {
        worker *w = &ws[t];
        w->cx = &cx;
        w->id = t;
        w->part = parts[t % P];
        w->hist = calloc(1, sizeof *w->hist);
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        w->recs = calloc((size_t)B, sizeof *w->recs);
        w->keys = malloc((size_t)B * KEY_LEN);
        uint64_t x = 0x243f6a8885a308d3ull ^ ((uint64_t)t << 32);
        for (int i = 0; i < VALUE_LEN; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            w->value[i] = (uint8_t)('a' + x % 26);
        }
        for (int i = 0; i < B; i++) {
            char k[KEY_LEN + 1];
            snprintf(k, sizeof k, "t%02dk%011d", t % 100, i);
            memcpy(w->keys + (size_t)i * KEY_LEN, k, KEY_LEN);
            w->recs[i] = (spw_record){.key = w->keys + (size_t)i * KEY_LEN, .key_len = KEY_LEN,
                                      .value = w->value, .value_len = VALUE_LEN};
        }
        if (pthread_create(&tids[t], NULL, worker_main, w) != 0)
            die("pthread_create", errno);
    }
    pthread_barrier_wait(&cx.start);
    double t0 = now_s();
    double cpu0, cs0, cpu1, cs1;
    usage_now(&cpu0, &cs0);
    while (!g_interrupted && now_s() < t0 + seconds) {
        double left = t0 + seconds - now_s();
        if (left > 0.05)
            left = 0.05;
        if (left > 0) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(left * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    atomic_store(&cx.stop, 1);
    double t_end = t0;
    lhist *all = calloc(1, sizeof *all);
    for (int t = 0; t < T; t++) {
        pthread_join(tids[t], NULL);
        worker *w = &ws[t];
        if (w->end_s > t_end)
            t_end = w->end_s;
        cr->appends += w->appends;
        cr->records += w->records;
        if (w->error && !cr->error)
            cr->error = w->error;
        h_merge(all, w->hist);
    }
    usage_now(&cpu1, &cs1);
    spw_log_stats_get(log, &cr->st);
    size_t len = batch_len(B);
    cr->bytes = cr->appends * len;
    cr->seconds = t_end - t0;
    cr->records_per_s = (double)cr->records / cr->seconds;
    cr->mb_per_s = (double)cr->bytes / MB / cr->seconds;
    cr->p50_us = h_quantile(all, 0.50) / 1000.0;
    cr->p99_us = h_quantile(all, 0.99) / 1000.0;
    cr->cpu_ns_per_record = cr->records ? (cpu1 - cpu0) / (double)cr->records : 0;
    cr->ctxsw_per_append = cr->appends ? (cs1 - cs0) / (double)cr->appends : 0;
    cr->ran = 1;

    for (int i = 0; i < P; i++)
        spw_part_close(parts[i]);
    spw_log_close(log);
    rm_tree(dir);

    for (int t = 0; t < T; t++) {
        free(ws[t].hist);
        free(ws[t].recs);
        free(ws[t].keys);
        pthread_mutex_destroy(&ws[t].mu);
        pthread_cond_destroy(&ws[t].cv);
    }
    free(all);
    free(ws);
    free(tids);
    free(parts);
    pthread_barrier_destroy(&cx.start);
}

/* ---- options ---- */

static int parse_list(const char *s, int *v, int max)
{
    int n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) {
        char *end;
        long x = strtol(t, &end, 10);
        if (*end || x <= 0 || x > 1000000) {
            free(copy);
            return -1;
        }
        v[n++] = (int)x;
    }
    free(copy);
    return n;
}

static int parse_acks(const char *s, spw_ack *v, int max)
{
    int n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) {
        if (spw_ack_parse(t, &v[n]) || v[n] == SPW_ACK_REPLICATED) {
            free(copy);
            return -1;
        }
        n++;
    }
    free(copy);
    return n;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: spw_log_bench [--seconds S] [--dir DIR] [--partitions N] [--threads 1,4,16] [--wait cb]\n"
               "                     [--batches 1,100,1000] [--acks none,written,fsync] [--raw-mb MB]\n"
               "  --seconds S     length of each cell (default 3)\n"
               "  --dir DIR       parent of the data directory (default $TMPDIR or /var/tmp); a fresh\n"
               "                  spw-log-bench.XXXXXX inside it is used and removed at the end\n"
               "  --partitions N  partitions per cell: threads go round-robin over min(N, threads);\n"
               "                  0 = one per thread (default 1: all threads share one partition)\n"
               "  --threads, --batches, --acks   comma-separated lists: run only these cells\n"
               "  --wait append_wait|cb   how a thread waits for completion: spw_part_append_wait\n"
               "                  (default) or spw_part_append with a callback + condvar of its own\n"
               "  --raw-mb MB     volume of the raw write+fdatasync test (default: what the\n"
               "                  ack=fsync 4x1000 cell writes at its target rate in S seconds)\n");
}

static const char *fs_name(const char *dir)
{
    struct statfs sf;
    if (statfs(dir, &sf) != 0)
        return "?";
    switch ((unsigned long)sf.f_type) {
    case 0xEF53: return "ext2/3/4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794c7630: return "overlayfs";
    case 0x2fc12fc1: return "zfs";
    default: return "other";
    }
}

static void fmt_int(char *out, size_t n, double v)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.0f", v);
    size_t len = strlen(tmp), o = 0;
    for (size_t i = 0; i < len && o + 2 < n; i++) {
        out[o++] = tmp[i];
        size_t rest = len - i - 1;
        if (rest && rest % 3 == 0 && tmp[i] != '-')
            out[o++] = ',';
    }
    out[o] = 0;
}

static cell_res *find_cell(cell_res *v, int n, spw_ack ack, int threads, int batch)
{
    for (int i = 0; i < n; i++)
        if (v[i].ran && v[i].ack == ack && v[i].threads == threads && v[i].batch == batch)
            return &v[i];
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = 3;
    const char *parent = getenv("TMPDIR");
    if (!parent || !*parent)
        parent = "/var/tmp";
    int part_opt = 1;
    int threads[16] = {1, 4, 16}, nthreads = 3;
    int batches[16] = {1, 100, 1000}, nbatches = 3;
    spw_ack acks[4] = {SPW_ACK_NONE, SPW_ACK_WRITTEN, SPW_ACK_FSYNC};
    int nacks = 3;
    double raw_mb = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        int bad = 0;
        if (!strcmp(a, "--seconds"))
            bad = (seconds = strtod(v, NULL)) <= 0;
        else if (!strcmp(a, "--dir"))
            parent = v;
        else if (!strcmp(a, "--partitions"))
            bad = (part_opt = atoi(v)) < 0;
        else if (!strcmp(a, "--threads"))
            bad = (nthreads = parse_list(v, threads, 16)) <= 0;
        else if (!strcmp(a, "--batches"))
            bad = (nbatches = parse_list(v, batches, 16)) <= 0;
        else if (!strcmp(a, "--acks"))
            bad = (nacks = parse_acks(v, acks, 4)) <= 0;
        else if (!strcmp(a, "--wait"))
            bad = strcmp(v, "cb") == 0 ? (g_use_cb = 1, 0) : strcmp(v, "append_wait") == 0 ? (g_use_cb = 0, 0) : 1;
        else if (!strcmp(a, "--raw-mb"))
            bad = (raw_mb = strtod(v, NULL)) <= 0;
        else {
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "spw_log_bench: bad value for %s: %s\n", a, v);
            return 2;
        }
        i++;
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char root[2048];
    if (strlen(parent) > sizeof root - 32) {
        fprintf(stderr, "spw_log_bench: --dir path too long\n");
        return 2;
    }
    snprintf(root, sizeof root, "%s/spw-log-bench.XXXXXX", parent);
    if (!mkdtemp(root))
        die(root, errno);

    double rec_bytes = (double)batch_len(1000) / 1000.0;
    uint64_t volume = raw_mb > 0 ? (uint64_t)(raw_mb * MB)
                                 : (uint64_t)(TARGET_FSYNC_4X1000_RPS * rec_bytes * seconds);
    if (raw_mb <= 0 && volume < (64u << 20))
        volume = 64u << 20;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double load[3] = {0};
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (fscanf(lf, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
            load[0] = -1;
        fclose(lf);
    }

    printf("spw_log_bench: data in %s (%s), %ld CPUs, load average %.2f\n", root, fs_name(root), ncpu, load[0]);
    if (!strcmp(fs_name(root), "tmpfs"))
        printf("WARNING: %s is tmpfs: fdatasync is a no-op there; use --dir on a real disk\n", root);
    printf("records: %d-byte key, %d-byte value, %.1f B encoded (+%d B header per append); "
           "%g s per cell; partitions: %s\n",
           KEY_LEN, VALUE_LEN, rec_bytes, SPW_BATCH_HEADER_LEN, seconds,
           part_opt == 0 ? "one per thread" : part_opt == 1 ? "1, shared by all threads" : "round-robin");
    fflush(stdout);

    /* The raw numbers of this (virtual) machine move a lot from one second
     * to the next: take the median of RAW_ROUNDS rounds of each. */
    raw rounds[RAW_ROUNDS];
    double wf[RAW_ROUNDS], fs[RAW_ROUNDS];
    for (int i = 0; i < RAW_ROUNDS; i++) {
        measure_raw(root, volume, 1.0, &rounds[i]);
        raw *q = &rounds[i];
        printf("raw %d: %.0f MB in 1 MiB writes: write %.2f s + fdatasync %.2f s = %.0f MB/s; "
               "4 KiB append+fdatasync: %.0f/s\n",
               i + 1, (double)q->bytes / MB, q->write_s, q->fsync_s, q->write_fsync_mb_per_s, q->fdatasync_per_s);
        wf[i] = q->write_fsync_mb_per_s;
        fs[i] = q->fdatasync_per_s;
    }
    raw rw = {.write_fsync_mb_per_s = median(wf, RAW_ROUNDS), .fdatasync_per_s = median(fs, RAW_ROUNDS)};
    printf("BENCH log raw=1 fdatasync_per_s=%.0f write_fsync_mb_per_s=%.1f\n", rw.fdatasync_per_s,
           rw.write_fsync_mb_per_s);
    fflush(stdout);

    int ncells = nacks * nthreads * nbatches;
    cell_res *cells = calloc((size_t)ncells, sizeof *cells);
    int k = 0;
    for (int a = 0; a < nacks; a++)
        for (int t = 0; t < nthreads; t++)
            for (int b = 0; b < nbatches; b++) {
                cell_res *c = &cells[k];
                c->ack = acks[a];
                c->threads = threads[t];
                c->batch = batches[b];
                if (g_interrupted)
                    continue;
                run_cell(root, k, seconds, part_opt, c);
                c->ratio = c->mb_per_s / rw.write_fsync_mb_per_s;
                const spw_log_stats *s = &c->st;
                printf("BENCH log ack=%s threads=%d batch=%d records_per_s=%.0f mb_per_s=%.1f p50_us=%.1f "
                       "p99_us=%.1f ratio_to_raw=%.3f partitions=%d fsyncs=%" PRIu64 " cycles=%" PRIu64
                       " appends_per_fsync=%.1f cpu_ns_per_record=%.0f ctxsw_per_append=%.2f%s%s\n",
                       spw_ack_name(c->ack), c->threads, c->batch, c->records_per_s, c->mb_per_s, c->p50_us,
                       c->p99_us, c->ratio, c->partitions, s->fsyncs, s->cycles,
                       s->fsyncs ? (double)s->acks_fsync / (double)s->fsyncs : 0.0, c->cpu_ns_per_record,
                       c->ctxsw_per_append, c->error ? " error=" : "",
                       c->error ? spw_strerror(c->error) : "");
                fflush(stdout);
                k++;
            }
    ncells = k;

    /* The table. */
    printf("\n%-7s %3s %5s %4s %12s %8s %9s %9s %6s | %7s %7s %7s %8s %8s %9s | %8s %8s\n", "ack", "thr", "batch",
           "part", "records/s", "MB/s", "p50 us", "p99 us", "x raw", "cycles", "writes", "fsyncs", "app/fsync",
           "fsync ms", "KB/write", "cpu ns/r", "cs/app");
    for (int i = 0; i < ncells; i++) {
        cell_res *c = &cells[i];
        const spw_log_stats *s = &c->st;
        char rps[32];
        fmt_int(rps, sizeof rps, c->records_per_s);
        printf("%-7s %3d %5d %4d %12s %8.1f %9.1f %9.1f %6.3f | %7" PRIu64 " %7" PRIu64 " %7" PRIu64
               " %8.1f %8.2f %9.1f | %8.0f %8.2f\n",
               spw_ack_name(c->ack), c->threads, c->batch, c->partitions, rps, c->mb_per_s, c->p50_us, c->p99_us,
               c->ratio, s->cycles, s->writes, s->fsyncs, s->fsyncs ? (double)s->acks_fsync / (double)s->fsyncs : 0,
               s->fsyncs ? (double)s->fsync_ns / (double)s->fsyncs / 1e6 : 0,
               s->writes ? (double)s->bytes_written / (double)s->writes / 1024 : 0, c->cpu_ns_per_record,
               c->ctxsw_per_append);
    }
    printf("(app/fsync: ack=fsync appends completed per fdatasync — group commit; fsync ms: mean fdatasync\n"
           " round; cycles/writes/fsyncs: flush cycles, pwrite(v) calls and fdatasyncs of segment data;\n"
           " cpu ns/r: the process's user + system time per record; cs/app: its context switches per append.)\n");

    /* The targets. */
    printf("\ntargets (raw: fdatasync_per_s=%.0f, write_fsync_mb_per_s=%.1f):\n", rw.fdatasync_per_s,
           rw.write_fsync_mb_per_s);
    char a[32], b[32];
    cell_res *c = find_cell(cells, ncells, SPW_ACK_FSYNC, 4, 1000);
    if (c) {
        fmt_int(a, sizeof a, c->records_per_s);
        fmt_int(b, sizeof b, TARGET_FSYNC_4X1000_RPS);
        printf("  %s ack=fsync threads=4 batch=1000: %s records/s >= %s\n",
               c->records_per_s >= TARGET_FSYNC_4X1000_RPS ? "PASS" : "MISS", a, b);
        printf("  %s ack=fsync threads=4 batch=1000: %.1f MB/s = %.0f%% of raw write+fdatasync >= %.0f%%\n",
               c->ratio >= TARGET_FSYNC_4X1000_RATIO ? "PASS" : "MISS", c->mb_per_s, c->ratio * 100,
               TARGET_FSYNC_4X1000_RATIO * 100);
    } else
        printf("  (ack=fsync threads=4 batch=1000 not run)\n");
    c = find_cell(cells, ncells, SPW_ACK_FSYNC, 16, 1);
    if (c) {
        double want = TARGET_FSYNC_16X1_FACTOR * 16 * rw.fdatasync_per_s;
        fmt_int(a, sizeof a, c->records_per_s);
        fmt_int(b, sizeof b, want);
        printf("  %s ack=fsync threads=16 batch=1: %s records/s >= 0.8 x 16 x %.0f fdatasync/s = %s\n",
               c->records_per_s >= want ? "PASS" : "MISS", a, rw.fdatasync_per_s, b);
    } else
        printf("  (ack=fsync threads=16 batch=1 not run)\n");
    c = find_cell(cells, ncells, SPW_ACK_NONE, 4, 1000);
    if (c) {
        fmt_int(a, sizeof a, c->records_per_s);
        fmt_int(b, sizeof b, TARGET_NONE_4X1000_RPS);
        printf("  %s ack=none threads=4 batch=1000: %s records/s >= %s\n",
               c->records_per_s >= TARGET_NONE_4X1000_RPS ? "PASS" : "MISS", a, b);
    } else
        printf("  (ack=none threads=4 batch=1000 not run)\n");
    if (!g_interrupted) {
        raw again;
        measure_raw(root, volume, 1.0, &again);
        printf("raw again after the table, one round (drift = noise): fdatasync_per_s=%.0f "
               "write_fsync_mb_per_s=%.1f (the targets use the medians measured first)\n",
               again.fdatasync_per_s, again.write_fsync_mb_per_s);
    }
    printf("note: throughput depends on what else runs on this machine (load average %.2f at start, %ld CPUs).\n",
           load[0], ncpu);

    rm_tree(root);
    free(cells);
    return g_interrupted ? 130 : 0;
}
