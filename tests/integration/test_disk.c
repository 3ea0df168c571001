/*
 * A failing disk and the disk limit, end to end, with the test build's
 * fault hook (spillway_test: POST/DELETE /debug/faults):
 *   - ENOSPC and EIO from write and from fsync: produce fails clearly on
 *     HTTP (507 disk_full / 500 write_failed) and on the binary protocol
 *     (SPW_ST_DISK / SPW_ST_INTERNAL); nothing acknowledged is lost (every
 *     acknowledged event is read back where its 202 said); once the fault
 *     is cleared the server acknowledges writes again without a restart;
 *     a clean stop leaves `spillway check` clean and a restart keeps all
 *     of it and accepts writes; the same with a server stopped while the
 *     fault is still on; GET /readyz answers 503 partitions_failed while
 *     the partition refuses writes and 200 once it recovered;
 *   - producers on several connections while faults come and go;
 *   - max-disk-bytes: 507 disk_limit (HTTP and binary) with nothing
 *     appended and nothing stored harmed, until deleting a stream or
 *     retention frees space; /readyz 503 disk_limit meanwhile;
 *   - the hook's bad parameters (400), its delay, and the production
 *     binary answering 404 on /debug/faults.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "wire/frame.h"
#include "binframe.h"
#include "server.h"

static const char *BIN, *TBIN;

/* ---- HTTP (thread-safe: a buffer per call) ---- */

static resp req(int port, const char *method, const char *path, const char *ctype, const char *body)
{
    int fd = tcp_connect(port);
    char head[1024];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: t\r\n%s%s%s", method, path,
                     ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "");
    if (body)
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", blen);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    send_all(fd, head, (size_t)n);
    if (blen)
        send_all(fd, body, blen);
    size_t cap = 8u << 20, have = 0;
    char *buf = malloc(cap);
    resp r = {0};
    CHECK(read_resp(fd, &r, buf, cap, &have) == 0);
    free(buf);
    close(fd);
    return r;
}

static int has(const resp *r, const char *s) { return strstr(r->body, s) != NULL; }

/* GET /readyz answers status, its body holding what. */
static void check_ready(int port, int status, const char *what)
{
    resp r = req(port, "GET", "/readyz", NULL, NULL);
    if (r.status != status || !strstr(r.body, what))
        fprintf(stderr, "/readyz: %d %s (wanted %d with %s)\n", r.status, r.body, status, what);
    CHECK_EQ(r.status, status);
    CHECK(strstr(r.body, what) != NULL);
    free(r.body);
}

static void faults(int port, const char *query)
{
    char path[256];
    snprintf(path, sizeof path, "/debug/faults?%s", query);
    resp r = req(port, "POST", path, NULL, "");
    if (r.status != 200)
        fprintf(stderr, "POST %s: %d %s", path, r.status, r.body);
    CHECK_EQ(r.status, 200);
    free(r.body);
}

static void faults_clear(int port)
{
    resp r = req(port, "DELETE", "/debug/faults", NULL, NULL);
    CHECK_EQ(r.status, 200);
    CHECK(has(&r, "\"write_err\":null") && has(&r, "\"fsync_err\":null") && has(&r, "\"fsync_delay_us\":0"));
    free(r.body);
}

/* A number after "name": in the hook's or the server's JSON. */
static uint64_t json_u64(const char *body, const char *name)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", name);
    const char *p = strstr(body, k);
    CHECK(p != NULL);
    return strtoull(p + strlen(k), NULL, 10);
}

static uint64_t fault_hits(int port)
{
    resp r = req(port, "GET", "/debug/faults", NULL, NULL);
    CHECK_EQ(r.status, 200);
    uint64_t n = json_u64(r.body, "write_hits") + json_u64(r.body, "fsync_hits");
    free(r.body);
    return n;
}

static void create_stream(int port, const char *name, const char *def)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", name);
    resp r = req(port, "PUT", path, "application/json", def);
    CHECK(r.status == 201 || r.status == 200);
    free(r.body);
}

/* ---- acknowledged events ---- */

#define MAX_TAGS 200000
#define PARTS 2

typedef struct ackd {
    int part; /* -1: not acknowledged */
    uint64_t off;
} ackd;

static ackd acked[MAX_TAGS];
static _Atomic uint32_t next_tag;
static int pad_extra; /* bytes added to every event's padding (at most 900) */

static uint32_t new_tag(void)
{
    uint32_t t = atomic_fetch_add(&next_tag, 1);
    CHECK(t < MAX_TAGS);
    acked[t].part = -1;
    return t;
}

/* Produces one event tagged t; on 202 records where it went. Returns the
 * status; code (may be NULL) gets the error's code word. */
static int produce(int port, const char *stream, uint32_t t, const char *ack, char *code)
{
    char path[256], body[1024];
    snprintf(path, sizeof path, "/v1/streams/%s/events?ack=%s", stream, ack);
    snprintf(body, sizeof body, "{\"n\":%u,\"pad\":\"%0*u\"}", t, (int)(t % 50) + pad_extra, 0);
    resp r = req(port, "POST", path, "application/json", body);
    if (r.status == 202) {
        const char *p = strstr(r.body, "\"partition\":"), *o = strstr(r.body, "\"first_offset\":");
        CHECK(p && o);
        acked[t].off = strtoull(o + 15, NULL, 10);
        acked[t].part = atoi(p + 12);
    } else if (code) {
        const char *c = strstr(r.body, "\"code\":\"");
        CHECK(c != NULL);
        c += 8;
        size_t n = strcspn(c, "\"");
        memcpy(code, c, n);
        code[n] = 0;
    }
    int st = r.status;
    free(r.body);
    return st;
}

/* Produces events until one is acknowledged on every partition (a partition
 * that has not recovered yet refuses); bounded. */
static void produce_until_ok(int port, const char *stream, int n)
{
    int ok = 0;
    for (int i = 0; i < 3000 && ok < n; i++) {
        char code[64];
        int st = produce(port, stream, new_tag(), "fsync", code);
        if (st == 202)
            ok++;
        else
            usleep(10000);
    }
    CHECK_EQ(ok, n);
}

/* Reads every partition of stream and checks every acknowledged event is
 * where its 202 said, with its own value. Returns events acknowledged. */
static uint32_t verify(int port, const char *stream)
{
    uint32_t *at[PARTS];
    uint64_t end[PARTS];
    for (int p = 0; p < PARTS; p++) {
        at[p] = malloc(MAX_TAGS * sizeof **at);
        memset(at[p], 0xff, MAX_TAGS * sizeof **at);
        uint64_t off = 0;
        int waits = 0;
        for (int rounds = 0; rounds < 1000; rounds++) {
            char path[256];
            snprintf(path, sizeof path, "/v1/streams/%s/events?partition=%d&offset=%" PRIu64 "&limit=10000", stream,
                     p, off);
            resp r = req(port, "GET", path, NULL, NULL);
            CHECK_EQ(r.status, 200);
            if (r.body_len == 0) {
                free(r.body);
                /* Reads see durable events only: events acknowledged at
                 * ack=written may wait for their fsync, which this read
                 * asked for. Read again while written events follow
                 * (bounded). */
                char sp[128];
                snprintf(sp, sizeof sp, "/v1/streams/%s", stream);
                if (waits++ < 3000 && off < part_field(port, sp, p, "end_offset")) {
                    usleep(1000);
                    rounds--;
                    continue;
                }
                break;
            }
            for (char *line = r.body; *line;) {
                char *nl = strchr(line, '\n');
                CHECK(nl != NULL);
                *nl = 0;
                uint64_t o = json_u64(line, "offset");
                uint64_t n = json_u64(line, "n");
                CHECK_EQ(o, off);
                CHECK(o < MAX_TAGS && n < MAX_TAGS);
                at[p][o] = (uint32_t)n;
                off = o + 1;
                line = nl + 1;
            }
            free(r.body);
        }
        end[p] = off;
    }
    uint32_t n = 0, total = atomic_load(&next_tag);
    for (uint32_t t = 0; t < total; t++) {
        if (acked[t].part < 0)
            continue;
        CHECK(acked[t].part < PARTS);
        CHECK(acked[t].off < end[acked[t].part]);
        if (at[acked[t].part][acked[t].off] != t)
            fprintf(stderr, "event %u acknowledged at %d/%" PRIu64 " is missing\n", t, acked[t].part, acked[t].off);
        CHECK_EQ(at[acked[t].part][acked[t].off], t);
        n++;
    }
    for (int p = 0; p < PARTS; p++)
        free(at[p]);
    return n;
}

static void reset_tags(void) { atomic_store(&next_tag, 0); }

static void check_clean(const char *data)
{
    cli_out o = cli_run(BIN, "check %s", data);
    if (o.rc != 0)
        fprintf(stderr, "%s", o.text);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, " 0 damaged range(s)") != NULL);
    free(o.text);
}

static uint64_t metric(int port, const char *name)
{
    resp r = req(port, "GET", "/metrics", NULL, NULL);
    CHECK_EQ(r.status, 200);
    char line[256];
    snprintf(line, sizeof line, "\n%s", name); /* a sample line, not its # TYPE */
    const char *p = strstr(r.body, line);
    CHECK(p != NULL);
    uint64_t v = strtoull(p + strlen(line), NULL, 10);
    free(r.body);
    return v;
}

/* ---- binary protocol (raw frames) ---- */

/* One produce frame of one event on a fresh connection: the answer's
 * status, its code word into code; on 0 the event is recorded. */
static int bin_produce(int binport, const char *stream, uint32_t t, char *code)
{
    char val[1024];
    snprintf(val, sizeof val, "{\"n\":%u,\"pad\":\"%0*u\"}", t, (int)(t % 50) + pad_extra, 0);
    spw_buf b = SPW_BUF_INIT;
    size_t st, ca;
    CHECK_OK(spw_frame_begin(&b, SPW_OP_PRODUCE, 0, 77, &st));
    CHECK_OK(spw_produce_req_begin(&b, stream, strlen(stream), SPW_ACK_FSYNC, 1, SPW_PARTITION_ANY, 0, 0, &ca));
    spw_frame_rec rec = {.key_len = -1, .value = (const uint8_t *)val, .value_len = (uint32_t)strlen(val)};
    CHECK_OK(spw_produce_rec_put(&b, &rec));
    spw_produce_req_set_count(&b, ca, 1);
    spw_frame_finish(&b, st);
    int fd = tcp_connect(binport);
    send_all(fd, b.p, b.len);
    spw_buf_fini(&b);
    frame f;
    CHECK_EQ(read_frame(fd, &f), 0);
    CHECK_EQ(f.h.request_id, 77);
    close(fd);
    int status = answer_status(&f, code, NULL);
    if (status == 0) {
        spw_produce_slot sl = produce_slot0(&f, NULL);
        acked[t].part = (int)sl.partition;
        acked[t].off = sl.first_offset;
    }
    free(f.body);
    return status;
}

/* ---- one fault, start to end ---- */

typedef struct fault_case {
    const char *name;
    const char *query;
    int http; /* expected status */
    const char *code;
    int bin;
} fault_case;

static void start(srv *s, const char *bin, const char *data)
{
    const char *args[] = {"--io-threads", "2", NULL};
    srv_start(s, bin, data, args);
}

static void run_fault(const char *root, const fault_case *fc, int stop_while_failed)
{
    char data[4096];
    snprintf(data, sizeof data, "%s/%s%s", root, fc->name, stop_while_failed ? "-stopped" : "");
    reset_tags();
    srv s;
    start(&s, TBIN, data);
    create_stream(s.port, "s", "{\"partitions\":2}");
    for (int i = 0; i < 20; i++)
        CHECK_EQ(produce(s.port, "s", new_tag(), i % 2 ? "fsync" : "written", NULL), 202);
    /* Those acknowledged at ack=written are readable once fsynced (the
     * timer does it): only then are they sure to outlive the fault. */
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 1000 && part_field(s.port, "/v1/streams/s", p, "durable_offset") <
                                        part_field(s.port, "/v1/streams/s", p, "end_offset");
             i++)
            usleep(10000);

    faults(s.port, fc->query);
    /* The write that meets the fault, then refusals while the partition
     * recovers: every one of them says what happened, none is a 202. */
    for (int i = 0; i < 6; i++) {
        char code[64];
        CHECK_EQ(produce(s.port, "s", new_tag(), "fsync", code), fc->http);
        CHECK(strcmp(code, fc->code) == 0);
    }
    char code[64];
    CHECK_EQ(bin_produce(s.binport, "s", new_tag(), code), fc->bin);
    CHECK(strcmp(code, fc->code) == 0);
    CHECK(fault_hits(s.port) > 0);
    CHECK(metric(s.port, "spillway_rejected_total{reason=\"disk\"} ") >= 7);
    CHECK(metric(s.port, "spillway_partitions_failed ") >= 1);
    check_ready(s.port, 503, "\"code\":\"partitions_failed\"");
    resp st = req(s.port, "GET", "/v1/status", NULL, NULL);
    CHECK(json_u64(st.body, "failed_partitions") >= 1);
    free(st.body);

    if (!stop_while_failed) {
        /* Cleared: the server recovers by itself and acknowledges again. */
        faults_clear(s.port);
        produce_until_ok(s.port, "s", 10);
        CHECK_EQ(bin_produce(s.binport, "s", new_tag(), code), 0);
        CHECK_EQ(metric(s.port, "spillway_partitions_failed "), 0);
        CHECK(metric(s.port, "spillway_partition_recoveries_total ") >= 1);
        check_ready(s.port, 200, "\"status\":\"ready\"");
        for (int i = 0; i < 20; i++)
            CHECK_EQ(produce(s.port, "s", new_tag(), i % 2 ? "fsync" : "written", NULL), 202);
        CHECK_EQ(verify(s.port, "s"), 51);
    } else {
        CHECK(verify(s.port, "s") >= 20);
    }
    /* A clean stop, even with the fault still on, exits 0. */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    check_clean(data);

    /* Restart (the production binary: no faults any more): all of it is
     * there and writes are acknowledged. */
    start(&s, BIN, data);
    uint32_t before = verify(s.port, "s");
    produce_until_ok(s.port, "s", 5);
    CHECK_EQ(verify(s.port, "s"), before + 5);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    check_clean(data);
}

/* ---- faults coming and going under several producers ---- */

typedef struct load {
    int port;
    _Atomic int stop;
    _Atomic uint64_t ok, disk_full, write_failed;
} load;

static void *producer(void *arg)
{
    load *l = arg;
    for (uint32_t i = 0; !atomic_load(&l->stop) && i < 100000; i++) {
        char code[64] = "";
        int st = produce(l->port, "s", new_tag(), i % 3 ? "fsync" : "written", code);
        if (st == 202)
            atomic_fetch_add(&l->ok, 1);
        else if (st == 507 && strcmp(code, "disk_full") == 0)
            atomic_fetch_add(&l->disk_full, 1);
        else if (st == 500 && strcmp(code, "write_failed") == 0)
            atomic_fetch_add(&l->write_failed, 1);
        else {
            fprintf(stderr, "unexpected answer %d %s\n", st, code);
            CHECK(!"unexpected answer");
        }
    }
    return NULL;
}

static void run_load(const char *root)
{
    char data[4096];
    snprintf(data, sizeof data, "%s/load", root);
    reset_tags();
    srv s;
    start(&s, TBIN, data);
    create_stream(s.port, "s", "{\"partitions\":2}");
    load l = {.port = s.port};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&th[i], NULL, producer, &l) == 0);
    static const char *const phases[] = {"write_err=ENOSPC", "fsync_err=EIO", "write_err=EIO&write_count=3",
                                         "fsync_err=ENOSPC&fsync_count=2", "write_err=ENOSPC&fsync_err=EIO"};
    for (size_t i = 0; i < sizeof phases / sizeof *phases; i++) {
        /* Some acknowledged writes, then the fault until it has hit. */
        uint64_t ok = atomic_load(&l.ok);
        for (int k = 0; k < 3000 && atomic_load(&l.ok) < ok + 20; k++)
            usleep(10000);
        CHECK(atomic_load(&l.ok) >= ok + 20);
        uint64_t hits = fault_hits(s.port);
        faults(s.port, phases[i]);
        for (int k = 0; k < 3000 && fault_hits(s.port) == hits; k++)
            usleep(10000);
        CHECK(fault_hits(s.port) > hits);
        usleep(100000);
        faults_clear(s.port);
    }
    uint64_t ok = atomic_load(&l.ok);
    for (int k = 0; k < 3000 && atomic_load(&l.ok) < ok + 50; k++)
        usleep(10000);
    atomic_store(&l.stop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    CHECK(atomic_load(&l.disk_full) > 0);
    CHECK(atomic_load(&l.write_failed) > 0);
    produce_until_ok(s.port, "s", 10);
    uint32_t n = verify(s.port, "s");
    CHECK(n >= atomic_load(&l.ok));
    if (getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "load: %" PRIu64 " acknowledged, %" PRIu64 " disk_full, %" PRIu64 " write_failed\n",
                atomic_load(&l.ok), atomic_load(&l.disk_full), atomic_load(&l.write_failed));
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    check_clean(data);
    start(&s, BIN, data);
    CHECK_EQ(verify(s.port, "s"), n);
    produce_until_ok(s.port, "s", 5);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- max-disk-bytes ---- */

/* The sum over a stream's partitions of start_offset or end_offset. */
static uint64_t offset_sum(int port, const char *stream, const char *which)
{
    char path[256], key[32];
    snprintf(path, sizeof path, "/v1/streams/%s", stream);
    snprintf(key, sizeof key, "\"%s\":", which);
    resp r = req(port, "GET", path, NULL, NULL);
    CHECK_EQ(r.status, 200);
    uint64_t sum = 0;
    for (const char *p = r.body; (p = strstr(p, key)); p++)
        sum += strtoull(p + strlen(key), NULL, 10);
    free(r.body);
    return sum;
}

static uint64_t end_sum(int port, const char *stream) { return offset_sum(port, stream, "end_offset"); }

/* Produces to stream until 507 disk_limit; with strict (nothing frees
 * space meanwhile), checks that refusals append nothing (HTTP and binary).
 * Returns the events acknowledged. */
static int fill_to_limit(srv *s, const char *stream, int strict)
{
    int ok = 0;
    for (int i = 0; i < 5000; i++) {
        char code[64];
        int st = produce(s->port, stream, new_tag(), "fsync", code);
        if (st == 202) {
            ok++;
            continue;
        }
        CHECK_EQ(st, 507);
        CHECK(strcmp(code, "disk_limit") == 0);
        if (!strict)
            return ok;
        /* Larger events than the one refused: refused too. */
        pad_extra = 100;
        uint64_t end = end_sum(s->port, stream);
        uint64_t rej = metric(s->port, "spillway_rejected_total{reason=\"disk\"} ");
        CHECK_EQ(produce(s->port, stream, new_tag(), "none", code), 507);
        CHECK_EQ(bin_produce(s->binport, stream, new_tag(), code), SPW_ST_DISK);
        CHECK(strcmp(code, "disk_limit") == 0);
        CHECK_EQ(end_sum(s->port, stream), end);
        CHECK_EQ(metric(s->port, "spillway_rejected_total{reason=\"disk\"} "), rej + 2);
        pad_extra = 0;
        return ok;
    }
    CHECK(!"never reached max-disk-bytes");
    return ok;
}

/* Produces one event every 20 ms until one is acknowledged (bounded). */
static void wait_accepting(int port, const char *stream)
{
    for (int i = 0; i < 1500; i++) {
        char code[64];
        int st = produce(port, stream, new_tag(), "fsync", code);
        if (st == 202)
            return;
        CHECK_EQ(st, 507);
        usleep(20000);
    }
    CHECK(!"writes never accepted again");
}

static void run_limit(const char *root)
{
    char data[4096];
    snprintf(data, sizeof data, "%s/limit", root);
    reset_tags();
    srv s;
    /* Segments of 1 KiB, so retention (by age, 1 s; checked every 200 ms)
     * has whole segments to delete. */
    const char *args[] = {"--io-threads", "2", "--max-disk-bytes", "8KiB", "--segment-bytes", "1KiB",
                          "--retention-check", "200ms", NULL};
    srv_start(&s, BIN, data, args);
    resp st = req(s.port, "GET", "/v1/status", NULL, NULL);
    CHECK_EQ(json_u64(st.body, "max_disk_bytes"), 8192);
    free(st.body);
    create_stream(s.port, "a", "{\"partitions\":2}");
    create_stream(s.port, "b", "{\"partitions\":2}");
    int n = fill_to_limit(&s, "a", 1);
    CHECK(n > 10);
    /* Every stream is refused: the limit is global. Stored data is intact. */
    char code[64];
    CHECK_EQ(produce(s.port, "b", new_tag(), "fsync", code), 507);
    CHECK(strcmp(code, "disk_limit") == 0);
    check_ready(s.port, 503, "\"code\":\"disk_limit\"");
    CHECK_EQ(verify(s.port, "a"), (uint32_t)n);
    st = req(s.port, "GET", "/v1/status", NULL, NULL);
    uint64_t used = json_u64(st.body, "bytes");
    CHECK(used > 4096 && used <= 8192);
    free(st.body);
    CHECK_EQ(metric(s.port, "spillway_disk_bytes "), used);

    /* Deleting a stream gives its space back. */
    resp r = req(s.port, "DELETE", "/v1/streams/a", NULL, NULL);
    CHECK_EQ(r.status, 204);
    free(r.body);
    wait_accepting(s.port, "b");
    CHECK(metric(s.port, "spillway_disk_bytes ") < used);
    check_ready(s.port, 200, "\"status\":\"ready\"");

    /* Retention gives space back too. */
    create_stream(s.port, "r", "{\"partitions\":2,\"retention\":{\"ms\":1000},\"dedupe_window_ms\":1000}");
    pad_extra = 400; /* fewer, larger events: the limit comes long before retention's 1 s */
    fill_to_limit(&s, "r", 0);
    pad_extra = 0;
    wait_accepting(s.port, "r");
    CHECK(offset_sum(s.port, "r", "start_offset") > 0); /* it was retention */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    check_clean(data);
}

/* ---- the hook itself ---- */

static void run_hook(const char *root)
{
    char data[4096];
    snprintf(data, sizeof data, "%s/hook", root);
    srv s;
    start(&s, TBIN, data);
    static const char *const bad[] = {"",
                                      "write_err=EFOO",
                                      "write_err=ENOSPC&write_count=0",
                                      "write_err=ENOSPC&write_count=abc",
                                      "write_count=3",
                                      "fsync_err=none&fsync_count=3",
                                      "fsync_delay_us=99999999",
                                      "fsync_delay_us=-1",
                                      "nope=1",
                                      "write_err",
                                      "write_err=EIO&later=1",
                                      "files=some",
                                      "write_err=EIO&files="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char path[256];
        snprintf(path, sizeof path, "/debug/faults?%s", bad[i]);
        resp r = req(s.port, "POST", path, NULL, "");
        CHECK_EQ(r.status, 400);
        CHECK(has(&r, "\"code\":\"bad_parameter\""));
        free(r.body);
    }
    /* Nothing was changed by them. */
    resp r = req(s.port, "GET", "/debug/faults", NULL, NULL);
    CHECK(has(&r, "\"write_err\":null") && has(&r, "\"fsync_err\":null") && has(&r, "\"fsync_delay_us\":0"));
    CHECK(has(&r, "\"files\":\"all\""));
    free(r.body);
    r = req(s.port, "POST", "/debug/faults?files=segments", NULL, "");
    CHECK_EQ(r.status, 200);
    CHECK(has(&r, "\"files\":\"segments\""));
    free(r.body);
    r = req(s.port, "DELETE", "/debug/faults", NULL, NULL);
    CHECK(has(&r, "\"files\":\"all\""));
    free(r.body);
    r = req(s.port, "PUT", "/debug/faults", NULL, "");
    CHECK_EQ(r.status, 405);
    free(r.body);
    r = req(s.port, "GET", "/debug/other", NULL, NULL);
    CHECK_EQ(r.status, 404);
    free(r.body);

    /* Settings as JSON; counts go down as faults hit. */
    create_stream(s.port, "s", "{\"partitions\":1}");
    r = req(s.port, "POST", "/debug/faults?fsync_err=EDQUOT&fsync_count=1&fsync_delay_us=200000", NULL, "");
    CHECK_EQ(r.status, 200);
    CHECK(has(&r, "\"fsync_err\":\"EDQUOT\",\"fsync_count\":1,\"fsync_delay_us\":200000"));
    free(r.body);
    char code[64];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    reset_tags();
    CHECK_EQ(produce(s.port, "s", new_tag(), "fsync", code), 507); /* EDQUOT is disk_full too */
    CHECK(strcmp(code, "disk_full") == 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* The fsync slept first (a lower bound: a sleep is never shorter). */
    CHECK((t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec) >= 200000000LL);
    r = req(s.port, "GET", "/debug/faults", NULL, NULL);
    CHECK(has(&r, "\"fsync_count\":0") && has(&r, "\"fsync_hits\":1"));
    free(r.body);
    /* The count is used up: the partition recovers and writes go through,
     * still slowed by the delay until it is cleared. */
    produce_until_ok(s.port, "s", 1);
    faults_clear(s.port);
    produce_until_ok(s.port, "s", 3);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);

    /* The production binary has no hook at all. */
    snprintf(data, sizeof data, "%s/prod", root);
    start(&s, BIN, data);
    create_stream(s.port, "s", "{\"partitions\":1}");
    r = req(s.port, "POST", "/debug/faults?write_err=ENOSPC", NULL, "");
    CHECK_EQ(r.status, 404);
    free(r.body);
    r = req(s.port, "DELETE", "/debug/faults", NULL, NULL);
    CHECK_EQ(r.status, 404);
    free(r.body);
    r = req(s.port, "GET", "/debug/faults", NULL, NULL);
    CHECK_EQ(r.status, 404);
    free(r.body);
    CHECK_EQ(produce(s.port, "s", new_tag(), "fsync", code), 202);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 3);
    BIN = argv[1];
    TBIN = argv[2];
    char *root = spw_test_tmpdir("disk");
    run_hook(root);
    static const fault_case cases[] = {
        {"write-enospc", "write_err=ENOSPC", 507, "disk_full", SPW_ST_DISK},
        {"write-eio", "write_err=EIO", 500, "write_failed", SPW_ST_INTERNAL},
        {"fsync-enospc", "fsync_err=ENOSPC", 507, "disk_full", SPW_ST_DISK},
        {"fsync-eio", "fsync_err=EIO", 500, "write_failed", SPW_ST_INTERNAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_fault(root, &cases[i], 0);
    run_fault(root, &cases[1], 1);
    run_fault(root, &cases[2], 1);
    run_load(root);
    run_limit(root);
    spw_test_rmrf(root);
    free(root);
    puts("test_disk: ok");
    return 0;
}
