/*
 * kill -9 crash test of the durable log.
 *
 * Each cycle the parent re-executes this binary as a child that opens the
 * partitions under one directory (running recovery) and appends from
 * several threads: threads 0..3 at ack=fsync, thread 4 at ack=written (a
 * process crash keeps the page cache, so those must survive kill -9 too,
 * docs/architecture.md "Acknowledgement rules"). Every record's key,
 * value, timestamp and header are derived from (generation, thread, seq),
 * so any record found on disk can be checked byte for byte. The
 * completion callback reports each acknowledged batch (base offset, count,
 * thread, first seq) through a pipe, only after status 0.
 *
 * The parent SIGKILLs the child at a random moment (sometimes before it is
 * even ready: a kill during exec or recovery), collects the reports,
 * reopens the partitions (recovery cuts torn tails), and checks that:
 *   - every batch from start to end reads without error and every record
 *     decodes and is byte-identical to what its (gen, thread, seq) says;
 *   - offsets are dense, and each (gen, thread) appears as a gap-free
 *     prefix seq 0, 1, 2, ... in offset order (no duplicate, no hole);
 *   - every acknowledged record of every cycle so far is at its offset;
 *   - recovery never reports mid-segment damage after a mere crash.
 * The next cycle appends to the same directory. At the end the partitions
 * are reopened once more (recovery must find nothing left to cut) and
 * `spillway check DIR` must exit 0.
 *
 * Usage: test_crash SPILLWAY_BINARY. SPW_CRASH_CYCLES (default 100) and
 * SPW_CRASH_SEED override the cycle count and the random seed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "core/error.h"
#include "core/msg.h"
#include "log/log.h"
#include "check_run.h"
#include "test.h"

#define NPARTS 2
#define NTHREADS 5 /* thread t appends to partition t % NPARTS */
#define WRITTEN_THREAD 4
#define MAX_INFLIGHT 4
#define MAX_BATCH 8
#define MAX_VALUE 240
#define BIG_THREAD 3         /* one record in BIG_EVERY of this thread is large: */
#define BIG_EVERY 128        /* long writes, so that SIGKILL can land inside one */
#define BIG_MIN (32u << 10)  /* and leave a torn batch behind */
#define BIG_MAX (512u << 10)
#define TS_BASE 1700000000000LL
#define CHILD_MAX_SECONDS 60

enum { REP_READY = 1, REP_ACK = 2, REP_FAIL = 3 };

/* One report through the pipe: 32 bytes, so each write(2) is atomic. */
typedef struct report {
    uint32_t kind;
    uint32_t gen;
    uint32_t thread;
    uint32_t count;
    uint64_t seq_first;
    uint64_t base_offset; /* REP_FAIL: the (negative) error */
} report;

/* ---- deterministic content ---- */

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t rec_hash(uint32_t gen, uint32_t t, uint64_t seq)
{
    return mix(mix(((uint64_t)gen << 8) | t) ^ seq);
}

typedef struct rec_content {
    uint8_t key[16];
    uint8_t *value; /* BIG_MAX + 8 bytes, the caller's */
    uint32_t value_len;
    int64_t ts;
    int has_header;
    uint8_t hval[8];
    spw_kv hdr;
} rec_content;

static void make_content(uint32_t gen, uint32_t t, uint64_t seq, rec_content *c)
{
    uint64_t h = rec_hash(gen, t, seq);
    memcpy(c->key, &gen, 4);
    memcpy(c->key + 4, &t, 4);
    memcpy(c->key + 8, &seq, 8);
    c->value_len = 8 + (uint32_t)(h % MAX_VALUE);
    if (t == BIG_THREAD && (h >> 20) % BIG_EVERY == 0)
        c->value_len = BIG_MIN + (uint32_t)((h >> 8) % (BIG_MAX - BIG_MIN));
    uint64_t s = h;
    for (uint32_t i = 0; i < c->value_len; i += 8) {
        s = mix(s);
        uint32_t n = c->value_len - i < 8 ? c->value_len - i : 8;
        memcpy(c->value + i, &s, n);
    }
    c->ts = TS_BASE + (int64_t)gen * 10000000 + (int64_t)seq;
    c->has_header = (h >> 40) % 4 == 0;
    memcpy(c->hval, &seq, 8);
    c->hdr = (spw_kv){.key = "h", .key_len = 1, .value = c->hval, .value_len = 8};
}

static uint64_t pack(uint32_t gen, uint32_t t, uint64_t seq) { return (uint64_t)gen << 44 | (uint64_t)t << 40 | seq; }

static void part_cfg(int i, spw_part_config *pc)
{
    spw_part_config_default(pc);
    if (i == 0) {
        pc->segment_bytes = 4u << 20; /* big enough for zeros written ahead */
        pc->index_interval_bytes = 4096;
    } else {
        pc->segment_bytes = 64u << 10; /* many rolls: crashes around rolls */
        pc->index_interval_bytes = 1024;
    }
}

static void part_dir(char *out, size_t cap, const char *dir, int i) { snprintf(out, cap, "%s/p%d", dir, i); }

/* ---- child ---- */

typedef struct cthread {
    spw_part *p;
    uint32_t gen, t;
    int fd;
    spw_ack ack;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int inflight;
} cthread;

typedef struct pending {
    cthread *ct;
    uint64_t seq_first;
    uint32_t count;
} pending;

static void send_report(int fd, const report *r)
{
    for (;;) {
        ssize_t n = write(fd, r, sizeof *r);
        if (n == (ssize_t)sizeof *r)
            return;
        if (n < 0 && errno == EINTR)
            continue;
        _exit(5); /* the parent is gone or the pipe broke */
    }
}

static void on_ack(void *arg, int status, const spw_append_result *r)
{
    pending *pd = arg;
    cthread *ct = pd->ct;
    report rep = {.kind = REP_ACK, .gen = ct->gen, .thread = ct->t, .count = pd->count, .seq_first = pd->seq_first};
    if (status == 0 && r->count == pd->count) {
        rep.base_offset = r->base_offset;
    } else {
        rep.kind = REP_FAIL;
        rep.base_offset = (uint64_t)(int64_t)(status ? status : SPW_EINVAL);
    }
    send_report(ct->fd, &rep);
    free(pd);
    pthread_mutex_lock(&ct->mu);
    ct->inflight--;
    pthread_cond_signal(&ct->cv);
    pthread_mutex_unlock(&ct->mu);
}

static void *child_thread(void *arg)
{
    cthread *ct = arg;
    rec_content *cs = calloc(MAX_BATCH, sizeof *cs);
    if (!cs)
        _exit(6);
    for (int i = 0; i < MAX_BATCH; i++)
        if (!(cs[i].value = malloc(BIG_MAX + 8)))
            _exit(6);
    spw_record recs[MAX_BATCH];
    for (uint64_t seq = 0; seq < (1ull << 39);) {
        uint32_t n = 1 + (uint32_t)(mix(rec_hash(ct->gen, ct->t + 100, seq)) % MAX_BATCH);
        for (uint32_t i = 0; i < n; i++) {
            rec_content *c = &cs[i];
            make_content(ct->gen, ct->t, seq + i, c);
            recs[i] = (spw_record){.key = c->key, .key_len = 16, .value = c->value, .value_len = c->value_len,
                                   .ts = c->ts, .headers = c->has_header ? &c->hdr : NULL,
                                   .header_count = c->has_header ? 1 : 0};
        }
        pthread_mutex_lock(&ct->mu);
        while (ct->inflight >= MAX_INFLIGHT)
            pthread_cond_wait(&ct->cv, &ct->mu);
        ct->inflight++;
        pthread_mutex_unlock(&ct->mu);
        pending *pd = malloc(sizeof *pd);
        if (!pd)
            _exit(6);
        *pd = (pending){.ct = ct, .seq_first = seq, .count = n};
        int r = spw_part_append(ct->p, recs, n, NULL, ct->ack, 0, on_ack, pd, NULL);
        if (r) {
            report rep = {.kind = REP_FAIL, .gen = ct->gen, .thread = ct->t, .count = n, .seq_first = seq,
                          .base_offset = (uint64_t)(int64_t)r};
            send_report(ct->fd, &rep);
            _exit(6);
        }
        seq += n;
    }
    return NULL;
}

static int child_main(const char *dir, uint32_t gen, int fd, pid_t ppid)
{
    /* Die with the parent; if it is already gone, do nothing. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != ppid)
        _exit(3);
    alarm(CHILD_MAX_SECONDS); /* a stuck parent: default SIGALRM action kills us */
    spw_msg_set_level(SPW_MSG_ERROR);
    spw_log_config lc;
    spw_log_config_default(&lc);
    lc.max_pending_bytes = 4u << 20;
    lc.fsync_interval_ms = 20;
    spw_log *log;
    if (spw_log_open(&lc, &log))
        _exit(4);
    spw_part *parts[NPARTS];
    for (int i = 0; i < NPARTS; i++) {
        char d[4200];
        spw_part_config pc;
        part_cfg(i, &pc);
        part_dir(d, sizeof d, dir, i);
        int r = spw_part_open(log, d, &pc, &parts[i], NULL);
        if (r) {
            report rep = {.kind = REP_FAIL, .gen = gen, .thread = UINT32_MAX, .base_offset = (uint64_t)(int64_t)r};
            send_report(fd, &rep);
            _exit(4);
        }
    }
    report ready = {.kind = REP_READY, .gen = gen};
    send_report(fd, &ready);
    static cthread ct[NTHREADS];
    pthread_t th[NTHREADS];
    for (uint32_t t = 0; t < NTHREADS; t++) {
        ct[t] = (cthread){.p = parts[t % NPARTS], .gen = gen, .t = t, .fd = fd,
                          .ack = t == WRITTEN_THREAD ? SPW_ACK_WRITTEN : SPW_ACK_FSYNC};
        pthread_mutex_init(&ct[t].mu, NULL);
        pthread_cond_init(&ct[t].cv, NULL);
        if (pthread_create(&th[t], NULL, child_thread, &ct[t]))
            _exit(4);
    }
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    _exit(7); /* never reached in practice: the parent kills us first */
}

/* ---- parent ---- */

static volatile sig_atomic_t g_child = 0;

static void on_alarm(int sig)
{
    (void)sig;
    if (g_child > 0)
        kill(g_child, SIGKILL);
    static const char msg[] = "test_crash: watchdog: the test took too long; killed\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(2);
}

static uint64_t rng_state;
static uint64_t rnd(void) { return mix(rng_state++); }

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct reports {
    report *v;
    size_t n, cap;
    uint8_t part[sizeof(report)];
    size_t part_len;
    int ready;
    int eof;
} reports;

static void reports_add(reports *rs, const report *r)
{
    if (r->kind == REP_READY) {
        rs->ready = 1;
        return;
    }
    if (r->kind != REP_ACK) {
        fprintf(stderr, "test_crash: child reported failure: gen %u thread %u seq %llu: %s\n", r->gen, r->thread,
                (unsigned long long)r->seq_first, spw_strerror((int)(int64_t)r->base_offset));
        CHECK(0);
    }
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 4096;
        rs->v = realloc(rs->v, rs->cap * sizeof *rs->v);
        CHECK(rs->v != NULL);
    }
    rs->v[rs->n++] = *r;
}

/* Reads what the pipe has, waiting at most timeout_ms (0: don't wait). */
static void reports_pump(reports *rs, int fd, int timeout_ms)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    int pr = poll(&pf, 1, timeout_ms);
    if (pr < 0 && errno == EINTR)
        return;
    CHECK(pr >= 0);
    if (pr == 0)
        return;
    uint8_t buf[32 * 256];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
        return;
    CHECK(n >= 0);
    if (n == 0) {
        rs->eof = 1;
        return;
    }
    size_t at = 0;
    while (at < (size_t)n) {
        size_t take = sizeof(report) - rs->part_len;
        if (take > (size_t)n - at)
            take = (size_t)n - at;
        memcpy(rs->part + rs->part_len, buf + at, take);
        rs->part_len += take;
        at += take;
        if (rs->part_len == sizeof(report)) {
            report r;
            memcpy(&r, rs->part, sizeof r);
            reports_add(rs, &r);
            rs->part_len = 0;
        }
    }
}

typedef struct stats {
    uint64_t acked_fsync, acked_written, records, truncations, bytes_cut, killed_before_ready;
    uint64_t torn_batches; /* recoveries that cut a batch header (not only zeros written ahead) */
} stats;

/* Reopens every partition, reads it whole and checks it against the reports. */
static void verify(const char *dir, uint32_t gens, const reports *rs, stats *st, int final)
{
    spw_log *log;
    CHECK_OK(spw_log_open(NULL, &log));
    uint64_t *keyat[NPARTS];
    uint64_t end[NPARTS];
    uint64_t *next_seq = calloc((size_t)gens * NTHREADS, sizeof *next_seq);
    CHECK(next_seq != NULL);
    spw_buf buf = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    uint8_t *value_buf = malloc(BIG_MAX + 8);
    CHECK(value_buf != NULL);
    for (int i = 0; i < NPARTS; i++) {
        char d[4200];
        spw_part_config pc;
        part_cfg(i, &pc);
        part_dir(d, sizeof d, dir, i);
        spw_part *p;
        spw_recovery_report rep;
        CHECK_OK(spw_part_open(log, d, &pc, &p, &rep));
        /* A crash tears tails; it never makes damage with good data after it. */
        CHECK_EQ(rep.damaged_batches, 0);
        if (final)
            CHECK_EQ(rep.truncated_bytes, 0); /* the previous open already cut everything */
        if (rep.truncated_bytes) {
            st->truncations++;
            st->bytes_cut += rep.truncated_bytes;
        }
        if (rep.truncated_batches)
            st->torn_batches++;
        spw_part_state ps;
        spw_part_state_get(p, &ps);
        CHECK_EQ(ps.start_offset, 0);
        CHECK_EQ(ps.written_offset, ps.next_offset);
        CHECK_EQ(ps.failed, 0);
        end[i] = ps.next_offset;
        keyat[i] = malloc((end[i] ? end[i] : 1) * sizeof(uint64_t));
        CHECK(keyat[i] != NULL);
        uint64_t off = 0;
        /* Every read returns at least one batch, so this ends within end[i] + 1 rounds. */
        for (uint64_t round = 0; off < end[i]; round++) {
            CHECK(round <= end[i]);
            int n = spw_part_read(p, off, 1u << 20, &buf, NULL);
            if (n <= 0)
                fprintf(stderr, "test_crash: %s: read at offset %llu of %llu: %s\n", d, (unsigned long long)off,
                        (unsigned long long)end[i], n ? spw_strerror(n) : "nothing");
            CHECK(n > 0);
            size_t pos = 0;
            for (int b = 0; b < n; b++) {
                spw_batch_hdr h;
                CHECK_EQ(spw_batch_check(buf.p + pos, buf.len - pos, &h), 0);
                const uint8_t *recs;
                size_t len;
                CHECK_EQ(spw_batch_records(buf.p + pos, &h, &scratch, &recs, &len), 0);
                spw_rec_iter it;
                spw_record_view rv;
                spw_rec_iter_init(&it, &h, recs, len);
                int r;
                while ((r = spw_rec_next(&it, &rv)) == 1) {
                    if (rv.offset < off)
                        continue;
                    CHECK_EQ(rv.offset, off);
                    CHECK_EQ(rv.key_len, 16);
                    uint32_t gen, t;
                    uint64_t seq;
                    memcpy(&gen, rv.key, 4);
                    memcpy(&t, rv.key + 4, 4);
                    memcpy(&seq, rv.key + 8, 8);
                    CHECK(gen < gens);
                    CHECK(t < NTHREADS);
                    CHECK_EQ(t % NPARTS, i);
                    /* Exactly once, in order, no hole: each thread's records are a prefix. */
                    uint64_t *ns = &next_seq[(size_t)gen * NTHREADS + t];
                    if (seq != *ns)
                        fprintf(stderr, "test_crash: %s offset %llu: gen %u thread %u seq %llu, expected seq %llu\n",
                                d, (unsigned long long)off, gen, t, (unsigned long long)seq,
                                (unsigned long long)*ns);
                    CHECK_EQ(seq, *ns);
                    (*ns)++;
                    rec_content c = {.value = value_buf};
                    make_content(gen, t, seq, &c);
                    CHECK_EQ(rv.value_len, c.value_len);
                    CHECK(memcmp(rv.value, c.value, c.value_len) == 0);
                    CHECK_EQ(rv.ts, c.ts);
                    CHECK_EQ(rv.header_count, c.has_header ? 1 : 0);
                    if (c.has_header) {
                        const uint8_t *hp = rv.headers;
                        spw_kv kv;
                        CHECK_EQ(spw_kv_next(&hp, rv.headers + rv.headers_len, &kv), 1);
                        CHECK(kv.key_len == 1 && memcmp(kv.key, "h", 1) == 0);
                        CHECK(kv.value_len == 8 && memcmp(kv.value, c.hval, 8) == 0);
                        CHECK_EQ(spw_kv_next(&hp, rv.headers + rv.headers_len, &kv), 0);
                    }
                    keyat[i][off] = pack(gen, t, seq);
                    off++;
                }
                CHECK_EQ(r, 0);
                pos += h.length;
            }
            CHECK_EQ(pos, buf.len);
        }
        CHECK_EQ(off, end[i]);
        CHECK_EQ(spw_part_read(p, end[i], 4096, &buf, NULL), 0);
        if (final)
            st->records += end[i];
        spw_part_close(p);
    }
    /* Every acknowledged batch of every cycle so far, at its offsets. */
    uint64_t af = 0, aw = 0;
    for (size_t k = 0; k < rs->n; k++) {
        const report *r = &rs->v[k];
        CHECK(r->thread < NTHREADS && r->gen < gens && r->count >= 1 && r->count <= MAX_BATCH);
        int i = (int)(r->thread % NPARTS);
        if (r->base_offset + r->count > end[i])
            fprintf(stderr,
                    "test_crash: LOST acknowledged batch: gen %u thread %u seq %llu..+%u at offset %llu, partition "
                    "%d ends at %llu\n",
                    r->gen, r->thread, (unsigned long long)r->seq_first, r->count,
                    (unsigned long long)r->base_offset, i, (unsigned long long)end[i]);
        CHECK(r->base_offset + r->count <= end[i]);
        for (uint32_t j = 0; j < r->count; j++) {
            if (keyat[i][r->base_offset + j] != pack(r->gen, r->thread, r->seq_first + j))
                fprintf(stderr, "test_crash: acknowledged record gen %u thread %u seq %llu is not at offset %llu\n",
                        r->gen, r->thread, (unsigned long long)(r->seq_first + j),
                        (unsigned long long)(r->base_offset + j));
            CHECK(keyat[i][r->base_offset + j] == pack(r->gen, r->thread, r->seq_first + j));
        }
        if (r->thread == WRITTEN_THREAD)
            aw += r->count;
        else
            af += r->count;
    }
    st->acked_fsync = af;
    st->acked_written = aw;
    for (int i = 0; i < NPARTS; i++)
        free(keyat[i]);
    free(next_seq);
    free(value_buf);
    spw_buf_fini(&buf);
    spw_buf_fini(&scratch);
    spw_log_close(log);
}

/* Runs `bin check dir`; returns its exit code, printing its output if not 0. */
static int run_check(const char *bin, const char *dir)
{
    static char out[1 << 16];
    int code = spw_test_run_check(bin, dir, out, sizeof out, 60000, &g_child);
    if (code != 0)
        fprintf(stderr, "test_crash: spillway check %s exited %d:\n%s", dir, code, out);
    return code;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "--child") == 0)
        return child_main(argv[2], (uint32_t)strtoul(argv[3], NULL, 10), atoi(argv[4]),
                          (pid_t)strtol(argv[5], NULL, 10));
    if (argc != 2) {
        fprintf(stderr, "usage: %s SPILLWAY_BINARY\n", argv[0]);
        return 2;
    }
    const char *bin = argv[1];
    setvbuf(stdout, NULL, _IOLBF, 0);
    spw_msg_set_level(SPW_MSG_ERROR); /* recovery WARNs about cut tails are expected here */
    signal(SIGPIPE, SIG_IGN);
    int cycles = 100;
    const char *e = getenv("SPW_CRASH_CYCLES");
    if (e && *e)
        cycles = atoi(e);
    CHECK(cycles >= 1 && cycles <= 100000);
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    if ((e = getenv("SPW_CRASH_SEED")) && *e)
        seed = strtoull(e, NULL, 10);
    rng_state = seed;
    printf("test_crash: %d cycles, seed %llu (SPW_CRASH_SEED to repeat)\n", cycles, (unsigned long long)seed);
    fflush(stdout);

    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    unsigned budget = 120 + (unsigned)cycles * 4;
    alarm(budget > 850 ? 850 : budget);

    char *dir = spw_test_tmpdir("crash");
    int64_t t0 = now_ms();
    reports rs = {0};
    stats st = {0};
    for (int cycle = 0; cycle < cycles; cycle++) {
        uint32_t gen = (uint32_t)cycle;
        int pfd[2];
        CHECK(pipe(pfd) == 0);
        fcntl(pfd[0], F_SETFD, FD_CLOEXEC);
        pid_t parent = getpid();
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            char gs[32], fs[32], ps[32];
            snprintf(gs, sizeof gs, "%u", gen);
            snprintf(fs, sizeof fs, "%d", pfd[1]);
            snprintf(ps, sizeof ps, "%ld", (long)parent);
            execl("/proc/self/exe", argv[0], "--child", dir, gs, fs, ps, (char *)NULL);
            _exit(127);
        }
        g_child = pid;
        close(pfd[1]);
        rs.ready = 0;
        rs.eof = 0;
        rs.part_len = 0;
        size_t before = rs.n;
        /* One cycle in five is killed blind, often during exec or recovery;
         * the others once the child appends. */
        int blind = rnd() % 5 == 0;
        int64_t delay;
        if (blind) {
            /* Microseconds after fork: before, during or just after recovery. */
            struct timespec ts = {.tv_nsec = (long)(rnd() % 4000) * 1000};
            nanosleep(&ts, NULL);
            delay = 0;
        } else {
            int64_t ready_deadline = now_ms() + 20000;
            while (!rs.ready && !rs.eof && now_ms() < ready_deadline)
                reports_pump(&rs, pfd[0], 100);
            CHECK(rs.ready);
            delay = 1 + (int64_t)(rnd() % 100);
        }
        int64_t kill_at = now_ms() + delay;
        for (int64_t left; (left = kill_at - now_ms()) > 0 && !rs.eof;)
            reports_pump(&rs, pfd[0], (int)left);
        int was_ready = rs.ready;
        CHECK(kill(pid, SIGKILL) == 0);
        int ws;
        CHECK(waitpid(pid, &ws, 0) == pid);
        g_child = 0;
        if (!(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL))
            fprintf(stderr, "test_crash: child exited on its own: status 0x%x\n", ws);
        CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
        /* The child is dead: the pipe drains to EOF. */
        for (int k = 0; k < 1000000 && !rs.eof; k++)
            reports_pump(&rs, pfd[0], 1000);
        CHECK(rs.eof);
        CHECK_EQ(rs.part_len, 0);
        close(pfd[0]);
        if (!was_ready)
            st.killed_before_ready++;
        verify(dir, gen + 1, &rs, &st, 0);
        if (getenv("SPW_CRASH_VERBOSE"))
            printf("cycle %d: %s, killed %lld ms after %s, %zu acks\n", cycle, blind ? "blind" : "ready",
                   (long long)delay, was_ready ? "ready" : "fork", rs.n - before);
    }
    /* Once more: the recovery above cut every torn tail, so nothing is left to cut. */
    verify(dir, (uint32_t)cycles, &rs, &st, 1);
    CHECK_EQ(run_check(bin, dir), 0);
    printf("test_crash: %d kill -9 cycles (%llu before the child was ready) in %.1f s: %llu records on disk, "
           "%llu acknowledged at fsync and %llu at written all found; %llu recoveries cut %llu bytes, %llu of them "
           "cutting batch headers\n",
           cycles, (unsigned long long)st.killed_before_ready, (double)(now_ms() - t0) / 1000,
           (unsigned long long)st.records, (unsigned long long)st.acked_fsync, (unsigned long long)st.acked_written,
           (unsigned long long)st.truncations, (unsigned long long)st.bytes_cut, (unsigned long long)st.torn_batches);
    free(rs.v);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_crash: ok");
    return 0;
}
