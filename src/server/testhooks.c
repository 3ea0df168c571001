/*
 * Fault injection for tests, compiled into the spillway_test binary only
 * (CMakeLists.txt): the production spillway binary has none of this, and
 * answers 404 on /debug/... (docs/operations.md, "Test builds").
 *
 * A constructor, run before main, wraps entries of the spw_os table (every
 * file I/O of the log and the catalog goes through it) and sets the
 * hooks the server leaves NULL otherwise: spw_server_test_start (told the
 * data directory before anything is opened), sink/sink.h's
 * spw_sink_test_hold (SPW_TEST_RESHARD_GATE below) and
 * spw_api_debug_handler (serves /debug/faults on the HTTP listener):
 *
 *   POST /debug/faults?write_err=ENOSPC|EIO|EDQUOT|none&write_count=N
 *                     &fsync_err=ENOSPC|EIO|EDQUOT|none&fsync_count=N
 *                     &fsync_delay_us=U&files=all|segments
 *   DELETE /debug/faults      clears every fault
 *   GET /debug/faults         the current settings
 *
 * write_err: the next N (write_count; default: until cleared) pwrite and
 * pwritev calls on files under the data directory fail with that errno.
 * fsync_err: the same for fdatasync and fsync. fsync_delay_us: every
 * fdatasync/fsync there sleeps U µs first (a slow disk). files=segments
 * narrows the faults and the delay to the log's segment files (names ending
 * in ".log"), so a fault meant for a write of records is not taken by a
 * background write of a small file (the recovery point, group offsets);
 * files=all (the default) is every file. Parameters not
 * given keep their setting. Every answer is 200 with the settings as JSON;
 * a bad parameter is 400 and changes nothing.
 *
 * SPW_TEST_READ_GATE=PATH: segment reads wait while the file PATH
 * exists (hook_pread). SPW_TEST_SYNC_GATE=PATH: the same for the fsyncs
 * of the small files (everything under the data directory but segments).
 * SPW_TEST_WRITE_GATE=PATH: the same for the writes of segments (the
 * flusher stops there, holding the batches it took).
 *
 * SPW_TEST_RESHARD_GATE=PATH: while the file PATH exists, a postgres
 * reshard's cutover waits after deleting the moved rows of each old shard
 * (sink/sink.h spw_sink_test_hold, point "reshard_cutover_deleted"),
 * creating PATH.waiting first to say it is there.
 *
 * SPW_TEST_RESET_GATE=PATH: a consumer-group reset waits, after its member
 * checks and before it changes the offsets, while PATH exists
 * (svc/group_admin.h spw_svc_group_reset_test_pause;
 * tests/integration/test_group_reset_kafka.c).
 *
 * SPW_TEST_VIEW_OPEN_GATE=PATH: a view's store open (a PUT, a start, a
 * rebuild) waits before RocksDB opens it while PATH exists, creating
 * PATH.waiting first (view/view.h spw_view_test_open_pause;
 * tests/integration/test_readloop.c).
 *
 * SPW_TEST_DROP_GATE=PATH: a deleted stream's consumer groups are dropped
 * (catalog/groups.h spw_groups_test_drop_pause) once PATH is gone
 * (tests/integration/test_groups.c).
 *
 * SPW_TEST_WALL_OFFSET_S=N in the environment (read by the constructor)
 * sets core/clock.h's spw_clock_wall_offset_ns to N seconds: the
 * process's wall clock reads N s ahead of the kernel's, which is what a
 * wait timed on CLOCK_REALTIME meets when the clock is stepped back N s
 * while it waits (tests/integration/test_clockstep.c).
 *
 * The wrappers are thread-safe with atomics only; with no fault set they
 * cost one relaxed load before calling the real function. A file counts as
 * "under the data directory" if spw_os.open opened it by a path starting
 * with the data directory (a per-descriptor flag, for fds below FD_TRACK).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/msg.h"
#include "http/http.h"
#include "os/os.h"
#include "http/api.h"
#include "catalog/groups.h"
#include "server/server.h"
#include "svc/group_admin.h"
#include "sink/sink.h"
#include "view/view.h"

#define FD_TRACK (1 << 16)
#define COUNT_MAX 1000000000LL
#define DELAY_MAX_US 10000000u

static char data_dir[4096];
static size_t data_len;
static _Atomic unsigned char fd_under[FD_TRACK]; /* 1: opened under the data directory; 2: a segment there */

static _Atomic int armed; /* any fault or delay set: take the slow path */
static _Atomic int write_err, fsync_err;        /* positive errno, 0 = none */
static _Atomic long long write_left, fsync_left; /* calls still to fail; -1 = until cleared */
static _Atomic uint32_t fsync_delay_us;
static _Atomic int segments_only; /* files=segments */
static _Atomic uint64_t write_hits, fsync_hits;  /* calls failed so far */
static pthread_mutex_t set_mu = PTHREAD_MUTEX_INITIALIZER; /* one settings change at a time */

static int under(int fd)
{
    if (fd < 0 || fd >= FD_TRACK)
        return 0;
    int in = atomic_load_explicit(&fd_under[fd], memory_order_relaxed);
    return atomic_load_explicit(&segments_only, memory_order_relaxed) ? in == 2 : in != 0;
}

/* Takes one failure from *left: 1 if this call fails. */
static int take(_Atomic long long *left)
{
    long long v = atomic_load(left);
    for (;;) {
        if (v < 0)
            return 1;
        if (v == 0)
            return 0;
        if (atomic_compare_exchange_weak(left, &v, v - 1))
            return 1;
    }
}

static int fault(int fd, _Atomic int *err, _Atomic long long *left, _Atomic uint64_t *hits)
{
    int e = atomic_load(err);
    if (!e || !under(fd) || !take(left))
        return 0;
    atomic_fetch_add(hits, 1);
    return e;
}

static int hook_open(const char *path, int flags, int mode)
{
    int fd = spw_os_default.open(path, flags, mode);
    if (fd >= 0 && fd < FD_TRACK) {
        int in = data_len && strncmp(path, data_dir, data_len) == 0 && (path[data_len] == '/' || !path[data_len]);
        size_t n = strlen(path);
        if (in && n > 4 && strcmp(path + n - 4, ".log") == 0)
            in = 2;
        atomic_store_explicit(&fd_under[fd], (unsigned char)in, memory_order_relaxed);
    }
    return fd;
}

static int hook_close(int fd)
{
    if (fd >= 0 && fd < FD_TRACK)
        atomic_store_explicit(&fd_under[fd], 0, memory_order_relaxed);
    return spw_os_default.close(fd);
}

/* SPW_TEST_READ_GATE=PATH (read by the constructor): while the file PATH
 * exists, every pread of a segment file (*.log under the data directory)
 * waits for it to go, after creating PATH.waiting to say one does — a
 * disk that stalls reads, for as long as a test wants, without a timer
 * (tests/integration/test_readloop.c). */
static char read_gate[4096];
/* SPW_TEST_SYNC_GATE=PATH: the same for fsync/fdatasync of the small files
 * under the data directory (not segments: recovery points, group offsets,
 * sink progress, directories). */
static char sync_gate[4096];
/* SPW_TEST_WRITE_GATE=PATH: the same for pwrite/pwritev of segment files
 * (tests/integration/test_stream_recreate.c holds the flusher there). */
static char write_gate[4096];

/* Creates gate.waiting: says a thread is at the gate. */
static void gate_mark(const char *gate)
{
    char w[4200];
    snprintf(w, sizeof w, "%s.waiting", gate);
    int wf = open(w, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (wf >= 0)
        close(wf);
}

static void gate_wait(const char *gate)
{
    gate_mark(gate);
    while (access(gate, F_OK) == 0)
        usleep(2000);
}

/* Waits while the file gate exists ("" : no gate). */
static void gate_pass(const char *gate)
{
    if (gate[0] && access(gate, F_OK) == 0)
        gate_wait(gate);
}

/* Copies the environment's name into gate (cap bytes): 1 if it is set. */
static int gate_env(const char *name, char *gate, size_t cap)
{
    const char *v = getenv(name);
    if (!v || !*v || strlen(v) >= cap)
        return 0;
    strcpy(gate, v);
    return 1;
}

/* SPW_TEST_RESET_GATE=PATH */
static char reset_gate[4096];

static void reset_pause(const char *group)
{
    (void)group;
    gate_pass(reset_gate);
}

/* SPW_TEST_VIEW_OPEN_GATE=PATH */
static char view_open_gate[4096];

static void view_open_pause(const char *view)
{
    (void)view;
    gate_pass(view_open_gate);
}

/* SPW_TEST_DROP_GATE=PATH */
static char drop_gate[4096];

static void drop_pause(const char *stream)
{
    (void)stream;
    gate_pass(drop_gate);
}

/* SPW_TEST_RESHARD_GATE=PATH: sink/sink.h's spw_sink_test_hold at
 * "reshard_cutover_deleted" answers 1 while the file PATH exists (the
 * thread re-asks every 10 ms and gives up at a stop of the sink), after
 * creating PATH.waiting (tests/integration/test_pg_reshard.c). */
static char reshard_gate[4096];

static int sink_hold(const char *sink, const char *point)
{
    (void)sink;
    if (!reshard_gate[0] || strcmp(point, "reshard_cutover_deleted") != 0 || access(reshard_gate, F_OK) != 0)
        return 0;
    gate_mark(reshard_gate);
    return 1;
}

static void sync_gate_check(int fd)
{
    if (sync_gate[0] && fd >= 0 && fd < FD_TRACK && atomic_load_explicit(&fd_under[fd], memory_order_relaxed) == 1 &&
        access(sync_gate, F_OK) == 0)
        gate_wait(sync_gate);
}

static ssize_t hook_pread(int fd, void *buf, size_t n, off_t off)
{
    if (read_gate[0] && fd >= 0 && fd < FD_TRACK && atomic_load_explicit(&fd_under[fd], memory_order_relaxed) == 2 &&
        access(read_gate, F_OK) == 0)
        gate_wait(read_gate);
    return spw_os_default.pread(fd, buf, n, off);
}

static void write_gate_check(int fd)
{
    if (write_gate[0] && fd >= 0 && fd < FD_TRACK && atomic_load_explicit(&fd_under[fd], memory_order_relaxed) == 2 &&
        access(write_gate, F_OK) == 0)
        gate_wait(write_gate);
}

static ssize_t hook_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    write_gate_check(fd);
    int e;
    if (atomic_load_explicit(&armed, memory_order_relaxed) && (e = fault(fd, &write_err, &write_left, &write_hits)))
        return -e;
    return spw_os_default.pwrite(fd, buf, n, off);
}

static ssize_t hook_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    write_gate_check(fd);
    int e;
    if (atomic_load_explicit(&armed, memory_order_relaxed) && (e = fault(fd, &write_err, &write_left, &write_hits)))
        return -e;
    return spw_os_default.pwritev(fd, iov, cnt, off);
}

/* The slow path of fdatasync/fsync: the delay, then the fault. */
static int sync_fault(int fd)
{
    uint32_t d = atomic_load(&fsync_delay_us);
    if (d && under(fd))
        usleep(d);
    return fault(fd, &fsync_err, &fsync_left, &fsync_hits);
}

static int hook_fdatasync(int fd)
{
    sync_gate_check(fd);
    int e;
    if (atomic_load_explicit(&armed, memory_order_relaxed) && (e = sync_fault(fd)))
        return -e;
    return spw_os_default.fdatasync(fd);
}

static int hook_fsync(int fd)
{
    sync_gate_check(fd);
    int e;
    if (atomic_load_explicit(&armed, memory_order_relaxed) && (e = sync_fault(fd)))
        return -e;
    return spw_os_default.fsync(fd);
}

static void rearm(void)
{
    atomic_store(&armed, atomic_load(&write_err) || atomic_load(&fsync_err) || atomic_load(&fsync_delay_us));
}

static void test_start(const spw_server_config *c)
{
    size_t n = strlen(c->data);
    if (n >= sizeof data_dir)
        n = sizeof data_dir - 1;
    memcpy(data_dir, c->data, n);
    while (n > 1 && data_dir[n - 1] == '/')
        n--;
    data_dir[n] = 0;
    data_len = n;
    spw_warn("test build: fault injection on files under %s (POST /debug/faults)", data_dir);
}

/* ---- /debug/faults ---- */

static const char *err_name(int e)
{
    return e == ENOSPC ? "ENOSPC" : e == EIO ? "EIO" : e == EDQUOT ? "EDQUOT" : NULL;
}

/* "ENOSPC" → ENOSPC, "none" → 0; -1 if unknown. */
static int err_parse(const char *v)
{
    static const int known[] = {ENOSPC, EIO, EDQUOT};
    if (strcmp(v, "none") == 0)
        return 0;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strcmp(v, err_name(known[i])) == 0)
            return known[i];
    return -1;
}

/* A decimal integer in [lo, hi]; -1 if not. */
static long long int_parse(const char *v, long long lo, long long hi)
{
    long long x = 0;
    if (!*v || strlen(v) > 12)
        return -1;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        x = x * 10 + (*p - '0');
    }
    return x < lo || x > hi ? -1 : x;
}

static void out_settings(spw_buf *b)
{
    char s[512];
    int we = atomic_load(&write_err), fe = atomic_load(&fsync_err);
    long long wl = atomic_load(&write_left), fl = atomic_load(&fsync_left);
    char wc[32] = "null", fc[32] = "null", wn[16] = "null", fn[16] = "null";
    if (we) {
        snprintf(wn, sizeof wn, "\"%s\"", err_name(we));
        if (wl >= 0)
            snprintf(wc, sizeof wc, "%lld", wl);
    }
    if (fe) {
        snprintf(fn, sizeof fn, "\"%s\"", err_name(fe));
        if (fl >= 0)
            snprintf(fc, sizeof fc, "%lld", fl);
    }
    int n = snprintf(s, sizeof s,
                     "{\"write_err\":%s,\"write_count\":%s,\"fsync_err\":%s,\"fsync_count\":%s,\"fsync_delay_us\":%u,"
                     "\"files\":\"%s\",\"write_hits\":%" PRIu64 ",\"fsync_hits\":%" PRIu64 "}\n",
                     wn, wc, fn, fc, atomic_load(&fsync_delay_us),
                     atomic_load(&segments_only) ? "segments" : "all", atomic_load(&write_hits),
                     atomic_load(&fsync_hits));
    if (spw_buf_reserve(b, (size_t)n) == 0) {
        memcpy(b->p, s, (size_t)n);
        b->len = (size_t)n;
    }
}

static void respond_settings(spw_http_req *req)
{
    spw_buf b = SPW_BUF_INIT;
    out_settings(&b);
    spw_http_respond(req, 200, NULL, "application/json", b.p, b.len);
    spw_buf_fini(&b);
}

/* Parses the whole query before changing anything: 0, or -1 with a 400 sent. */
static int apply_query(spw_http_req *req)
{
    int set_we = 0, set_wc = 0, set_fe = 0, set_fc = 0, set_d = 0, set_files = 0, seg = 0;
    int we = 0, fe = 0;
    long long wc = -1, fc = -1, d = 0;
    const char *q = req->query;
    if (!*q) {
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL,
                        "give write_err, write_count, fsync_err, fsync_count, fsync_delay_us or files");
        return -1;
    }
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        char kv[128];
        if (len >= sizeof kv) {
            spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "parameter too long");
            return -1;
        }
        memcpy(kv, q, len);
        kv[len] = 0;
        char *eq = strchr(kv, '=');
        if (!eq) {
            spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "parameter '%s' has no value", kv);
            return -1;
        }
        *eq = 0;
        const char *k = kv, *v = eq + 1;
        if (strcmp(k, "write_err") == 0 || strcmp(k, "fsync_err") == 0) {
            int e = err_parse(v);
            if (e < 0) {
                spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "%s must be ENOSPC, EIO, EDQUOT or none", k);
                return -1;
            }
            if (k[0] == 'w')
                we = e, set_we = 1;
            else
                fe = e, set_fe = 1;
        } else if (strcmp(k, "write_count") == 0 || strcmp(k, "fsync_count") == 0) {
            long long n = int_parse(v, 1, COUNT_MAX);
            if (n < 0) {
                spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "%s must be an integer from 1 to %lld", k, COUNT_MAX);
                return -1;
            }
            if (k[0] == 'w')
                wc = n, set_wc = 1;
            else
                fc = n, set_fc = 1;
        } else if (strcmp(k, "fsync_delay_us") == 0) {
            if ((d = int_parse(v, 0, DELAY_MAX_US)) < 0) {
                spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "fsync_delay_us must be an integer from 0 to %u",
                                DELAY_MAX_US);
                return -1;
            }
            set_d = 1;
        } else if (strcmp(k, "files") == 0) {
            if (strcmp(v, "all") != 0 && strcmp(v, "segments") != 0) {
                spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "files must be all or segments");
                return -1;
            }
            seg = v[0] == 's';
            set_files = 1;
        } else {
            spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "unknown parameter '%s'", k);
            return -1;
        }
        q += len + (amp ? 1 : 0);
        if (!amp)
            break;
    }
    if ((set_wc && !(set_we && we)) || (set_fc && !(set_fe && fe))) {
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL,
                        "write_count and fsync_count go with write_err and fsync_err (not none) in the same request");
        return -1;
    }
    pthread_mutex_lock(&set_mu);
    /* The count before the error, so a fault is never seen with an old count. */
    if (set_we) {
        atomic_store(&write_err, 0);
        atomic_store(&write_left, wc);
        atomic_store(&write_err, we);
    }
    if (set_fe) {
        atomic_store(&fsync_err, 0);
        atomic_store(&fsync_left, fc);
        atomic_store(&fsync_err, fe);
    }
    if (set_d)
        atomic_store(&fsync_delay_us, (uint32_t)d);
    if (set_files)
        atomic_store(&segments_only, seg);
    rearm();
    pthread_mutex_unlock(&set_mu);
    spw_warn("test build: faults set: %s", req->query);
    return 0;
}

static void debug_handler(spw_api *api, spw_http_req *req)
{
    (void)api;
    if (strcmp(req->path, "/debug/faults") != 0) {
        spw_http_answer(req, SPW_SC_NOT_FOUND, NULL, "no such endpoint: %s", req->path);
        return;
    }
    if (req->method == SPW_HTTP_POST) {
        if (apply_query(req) == 0)
            respond_settings(req);
        return;
    }
    if (req->method == SPW_HTTP_DELETE) {
        pthread_mutex_lock(&set_mu);
        atomic_store(&armed, 0);
        atomic_store(&write_err, 0);
        atomic_store(&fsync_err, 0);
        atomic_store(&fsync_delay_us, 0);
        atomic_store(&segments_only, 0);
        pthread_mutex_unlock(&set_mu);
        spw_warn("test build: faults cleared");
        respond_settings(req);
        return;
    }
    if (req->method == SPW_HTTP_GET) {
        respond_settings(req);
        return;
    }
    spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, "Allow: GET, POST, DELETE\r\n", "use GET, POST or DELETE");
}

__attribute__((constructor)) static void testhooks_install(void)
{
    spw_os.open = hook_open;
    spw_os.close = hook_close;
    spw_os.pwrite = hook_pwrite;
    spw_os.pread = hook_pread;
    spw_os.pwritev = hook_pwritev;
    spw_os.fdatasync = hook_fdatasync;
    spw_os.fsync = hook_fsync;
    spw_server_test_start = test_start;
    spw_api_debug_handler = debug_handler;
    gate_env("SPW_TEST_READ_GATE", read_gate, sizeof read_gate);
    gate_env("SPW_TEST_SYNC_GATE", sync_gate, sizeof sync_gate);
    gate_env("SPW_TEST_WRITE_GATE", write_gate, sizeof write_gate);
    if (gate_env("SPW_TEST_RESET_GATE", reset_gate, sizeof reset_gate))
        spw_svc_group_reset_test_pause = reset_pause;
    if (gate_env("SPW_TEST_VIEW_OPEN_GATE", view_open_gate, sizeof view_open_gate))
        spw_view_test_open_pause = view_open_pause;
    if (gate_env("SPW_TEST_DROP_GATE", drop_gate, sizeof drop_gate))
        spw_groups_test_drop_pause = drop_pause;
    if (gate_env("SPW_TEST_RESHARD_GATE", reshard_gate, sizeof reshard_gate))
        spw_sink_test_hold = sink_hold;
    const char *off = getenv("SPW_TEST_WALL_OFFSET_S");
    if (off && *off)
        atomic_store(&spw_clock_wall_offset_ns, strtoll(off, NULL, 10) * 1000000000LL);
}
