/*
 * Idempotency against a real server (docs/api.md "Idempotency",
 * docs/protocol.md "Idempotence"): an Idempotency-Key or a binary
 * producer id + sequence retried — at once, concurrently, and after
 * kill -9 and a restart — appends exactly once and is answered with the
 * first request's result. A key or sequence reused for other content is
 * refused (422 idempotency_key_reused / 409 sequence_reused), before and
 * after a restart, and appends nothing. On the test build (argv[2], with
 * the fault hook): a keyed request over two partitions whose fsync fails
 * in one of them fails, and its retries (HTTP and binary) leave exactly
 * one copy of each record — the key is kept indeterminate (in_progress)
 * until the failed partition recovered, then resolved from the log.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "spillway.h"
#include "client/client_int.h"
#include "core/buf.h"
#include "wire/frame.h"
#include "binframe.h"
#include "server.h"

static const char *bin, *tbin;

/* The partition's end offset, from GET /v1/streams/NAME (partition 0). */
static uint64_t end_offset(int port, const char *stream, int part)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", stream);
    return part_field(port, path, part, "end_offset");
}

static uint64_t total_events(int port, const char *stream, int parts)
{
    uint64_t n = 0;
    for (int i = 0; i < parts; i++)
        n += end_offset(port, stream, i);
    return n;
}

static resp post_key(int port, const char *stream, const char *key, const char *body)
{
    char path[256], hdr[512];
    snprintf(path, sizeof path, "/v1/streams/%s/events", stream);
    snprintf(hdr, sizeof hdr, "Idempotency-Key: %s\r\n", key);
    return http_ex(port, "POST", path, "application/x-ndjson", key ? hdr : NULL, body, strlen(body));
}

/* The answer without ",\"duplicate\":true": what a retry must repeat. */
static void strip_dup(char *s)
{
    char *d = strstr(s, ",\"duplicate\":true");
    if (d)
        memmove(d, d + 17, strlen(d + 17) + 1);
}

static const char *BODY3 = "{\"k\":\"a\",\"n\":1}\n{\"k\":\"b\",\"n\":2}\n{\"k\":\"c\",\"n\":3}\n";

static void test_http_basic(int port)
{
    resp a = post_key(port, "s", "order-1", BODY3);
    if (a.status != 202)
        fprintf(stderr, "%s\n", a.body);
    CHECK_EQ(a.status, 202);
    CHECK(strstr(a.body, "\"duplicate\"") == NULL);
    CHECK(strstr(a.body, "\"ids\":[\"") != NULL);
    uint64_t n = total_events(port, "s", 4);
    CHECK_EQ(n, 3);
    /* The retry: the same answer, marked duplicate, nothing appended. */
    for (int i = 0; i < 3; i++) {
        resp b = post_key(port, "s", "order-1", BODY3);
        CHECK_EQ(b.status, 202);
        CHECK(strstr(b.body, ",\"duplicate\":true") != NULL);
        strip_dup(b.body);
        CHECK(strcmp(a.body, b.body) == 0);
        free(b.body);
    }
    CHECK_EQ(total_events(port, "s", 4), 3);
    /* Another key appends; no key appends every time. */
    resp c = post_key(port, "s", "order-2", BODY3);
    CHECK_EQ(c.status, 202);
    CHECK(strcmp(a.body, c.body) != 0);
    free(c.body);
    resp d = post_key(port, "s", NULL, BODY3);
    resp e = post_key(port, "s", NULL, BODY3);
    CHECK(d.status == 202 && e.status == 202);
    free(d.body);
    free(e.body);
    CHECK_EQ(total_events(port, "s", 4), 12);
    /* The same key for a request of another size: 422, nothing appended. */
    resp f = post_key(port, "s", "order-1", "{\"k\":\"a\"}\n");
    CHECK_EQ(f.status, 422);
    CHECK(strstr(f.body, "idempotency_key_reused") != NULL);
    free(f.body);
    CHECK_EQ(total_events(port, "s", 4), 12);
    /* Keys are per stream: the same key on another stream appends there. */
    resp g = post_key(port, "t", "order-1", BODY3);
    CHECK_EQ(g.status, 202);
    CHECK(strstr(g.body, "duplicate") == NULL);
    free(g.body);
    /* A stream with dedupe_window_ms 0 does not remember keys. */
    resp h1 = post_key(port, "nodedupe", "k", BODY3), h2 = post_key(port, "nodedupe", "k", BODY3);
    CHECK(h1.status == 202 && h2.status == 202 && strstr(h2.body, "duplicate") == NULL);
    free(h1.body);
    free(h2.body);
    CHECK_EQ(total_events(port, "nodedupe", 1), 6);
    /* The metric counts the answered duplicates. */
    resp m = http_json(port, "GET", "/metrics", NULL);
    CHECK(strstr(m.body, "spillway_duplicates_total 3\n") != NULL);
    free(m.body);
    free(a.body);
}

typedef struct racer {
    int port;
    char key[64];
    char *answer; /* the final 202 body, duplicate mark removed */
    int conflicts; /* 409 in_progress seen */
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    for (int tries = 0; tries < 2000; tries++) {
        resp a = post_key(r->port, "s", r->key, BODY3);
        if (a.status == 409) {
            CHECK(strstr(a.body, "in_progress") != NULL);
            CHECK(strstr(a.headers, "Retry-After: ") != NULL);
            r->conflicts++;
            free(a.body);
            usleep(1000);
            continue;
        }
        CHECK_EQ(a.status, 202);
        strip_dup(a.body);
        r->answer = a.body;
        return NULL;
    }
    CHECK(!"a concurrent retry never got its answer");
    return NULL;
}

static void test_http_concurrent(int port)
{
    enum { T = 8, ROUNDS = 20 };
    for (int round = 0; round < ROUNDS; round++) {
        uint64_t before = total_events(port, "s", 4);
        racer rs[T];
        pthread_t th[T];
        for (int i = 0; i < T; i++) {
            rs[i] = (racer){.port = port};
            snprintf(rs[i].key, sizeof rs[i].key, "race-%d", round);
            CHECK_EQ(pthread_create(&th[i], NULL, race, &rs[i]), 0);
        }
        for (int i = 0; i < T; i++)
            pthread_join(th[i], NULL);
        /* Exactly one append of the three events, and every racer got the
         * same answer. */
        CHECK_EQ(total_events(port, "s", 4), before + 3);
        for (int i = 0; i < T; i++) {
            CHECK(strcmp(rs[i].answer, rs[0].answer) == 0);
            if (i)
                free(rs[i].answer);
        }
        free(rs[0].answer);
    }
}

/* ---- binary protocol: raw PRODUCE frames with a producer id ---- */

/* Sends one PRODUCE of n keyless records ("v<tag><seq>-<i>") to stream;
 * returns the status and, when 0, the first slot's offset in *off. */
static int bin_produce_ex(int fd, const char *stream, uint64_t pid, uint32_t seq, uint32_t n, const char *tag,
                          uint64_t *off)
{
    spw_buf b = SPW_BUF_INIT;
    size_t st, ca;
    CHECK_OK(spw_frame_begin(&b, SPW_OP_PRODUCE, 0, seq, &st));
    CHECK_OK(spw_produce_req_begin(&b, stream, strlen(stream), SPW_ACK_FSYNC, SPW_WIRE_PRIORITY_DEFAULT,
                                   SPW_PARTITION_ANY, pid, seq, &ca));
    for (uint32_t i = 0; i < n; i++) {
        char v[32];
        int vl = snprintf(v, sizeof v, "v%s%u-%u", tag, seq, i);
        spw_frame_rec r = {.attrs = 0, .key_len = -1, .value = (const uint8_t *)v, .value_len = (uint32_t)vl};
        CHECK_OK(spw_produce_rec_put(&b, &r));
    }
    spw_produce_req_set_count(&b, ca, n);
    spw_frame_finish(&b, st);
    send_all(fd, b.p, b.len);
    spw_buf_fini(&b);
    frame f;
    CHECK_EQ(read_frame(fd, &f), 0);
    int status = answer_status(&f, NULL, NULL);
    if (status == 0) {
        uint32_t nslots;
        spw_produce_slot sl = produce_slot0(&f, &nslots);
        if (nslots == 1)
            CHECK_EQ(sl.count, n);
        *off = sl.first_offset;
    }
    free(f.body);
    return status;
}

static int bin_produce(int fd, uint64_t pid, uint32_t seq, uint32_t n, uint64_t *off)
{
    return bin_produce_ex(fd, "b", pid, seq, n, "", off);
}

static void test_binary(srv *a)
{
    int fd = tcp_connect(a->binport);
    uint64_t o1, o2, o3;
    CHECK_EQ(bin_produce(fd, 77, 0, 5, &o1), 0);
    CHECK_EQ(bin_produce(fd, 77, 5, 2, &o2), 0);
    CHECK_EQ(o2, o1 + 5);
    /* Resends of both: the first answers again, nothing appended. */
    CHECK_EQ(bin_produce(fd, 77, 0, 5, &o3), 0);
    CHECK_EQ(o3, o1);
    CHECK_EQ(bin_produce(fd, 77, 5, 2, &o3), 0);
    CHECK_EQ(o3, o2);
    CHECK_EQ(end_offset(a->port, "b", 0), 7);
    /* Another producer with the same sequence numbers is not a duplicate. */
    CHECK_EQ(bin_produce(fd, 78, 0, 5, &o3), 0);
    CHECK_EQ(o3, 7);
    /* A sequence reused for another size: 409, nothing appended. */
    CHECK_EQ(bin_produce(fd, 77, 0, 3, &o3), 409);
    CHECK_EQ(end_offset(a->port, "b", 0), 12);
    close(fd);
}

/* A partition's bytes, from GET /v1/streams/NAME. */
static uint64_t part_bytes(int port, const char *stream, int part)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", stream);
    resp r = http_json(port, "GET", path, NULL);
    char needle[64];
    snprintf(needle, sizeof needle, "{\"partition\":%d,", part);
    char *p = strstr(r.body, needle);
    CHECK(p != NULL);
    p = strstr(p, "\"bytes\":");
    CHECK(p != NULL);
    uint64_t v = strtoull(p + 8, NULL, 10);
    free(r.body);
    return v;
}

/*
 * A request cut by a crash: its batch reached partition 0 but not
 * partition 1 (made exactly by cutting partition 1's segment back to
 * where it was). The retry appends only what is missing and answers with
 * the partitions whole; later retries append nothing.
 */
static void test_cut_request(srv *a, const char *data)
{
    resp r = http_json(a->port, "PUT", "/v1/streams/p2", "{\"partitions\":2,\"key\":\"/k\"}");
    CHECK_EQ(r.status, 201);
    free(r.body);
    const char *seed = "{\"k\":\"x\"}\n";
    resp s0 = post_key(a->port, "p2", NULL, seed);
    CHECK_EQ(s0.status, 202);
    free(s0.body);
    uint64_t before1 = part_bytes(a->port, "p2", 1), n_before = total_events(a->port, "p2", 2);
    const char *body = "{\"k\":\"a\"}\n{\"k\":\"b\"}\n{\"k\":\"c\"}\n{\"k\":\"d\"}\n{\"k\":\"e\"}\n"
                       "{\"k\":\"f\"}\n{\"k\":\"g\"}\n{\"k\":\"h\"}\n";
    resp first = post_key(a->port, "p2", "cut-1", body);
    CHECK_EQ(first.status, 202);
    CHECK(strstr(first.body, "{\"partition\":0,") && strstr(first.body, "{\"partition\":1,"));
    uint64_t in1 = end_offset(a->port, "p2", 1);
    CHECK_EQ(srv_stop(a, SIGTERM), 0);
    char seg[4096 + 64];
    snprintf(seg, sizeof seg, "%s/streams/p2/1/00000000000000000000.log", data);
    CHECK(truncate(seg, (off_t)before1) == 0);
    /* As after a crash before the recovery point covered the request: the
     * clean stop's point names the end, below which nothing is ever cut. */
    snprintf(seg, sizeof seg, "%s/streams/p2/1/recovery-point", data);
    CHECK(unlink(seg) == 0);
    srv_start(a, bin, data, NULL);
    uint64_t lost = in1 - end_offset(a->port, "p2", 1);
    CHECK(lost > 0);
    CHECK_EQ(total_events(a->port, "p2", 2), n_before + 8 - lost);
    /* The retry completes it: partition 1's events once more, partition 0
     * untouched; no ids (the first attempt's are not all known). */
    resp again = post_key(a->port, "p2", "cut-1", body);
    CHECK_EQ(again.status, 202);
    CHECK(strstr(again.body, "\"accepted\":8") != NULL);
    CHECK(strstr(again.body, "\"ids\"") == NULL);
    CHECK_EQ(total_events(a->port, "p2", 2), n_before + 8);
    /* Partition 0's slot is the first attempt's. */
    char *p0 = strstr(first.body, "{\"partition\":0,");
    char slot0[128];
    snprintf(slot0, sizeof slot0, "%.*s", (int)(strchr(p0, '}') - p0 + 1), p0);
    CHECK(strstr(again.body, slot0) != NULL);
    resp third = post_key(a->port, "p2", "cut-1", body);
    CHECK_EQ(third.status, 202);
    CHECK(strstr(third.body, ",\"duplicate\":true") != NULL);
    CHECK_EQ(total_events(a->port, "p2", 2), n_before + 8);
    free(first.body);
    free(again.body);
    free(third.body);
}

/*
 * A key (HTTP) or producer sequence (binary) reused for a request of the
 * same size but other records: refused, nothing appended; the same
 * records again: the duplicate answer. Run once after the first requests
 * (fingerprints in the table) and once after a kill -9 (entries rebuilt
 * from the log: fingerprints read back from the stored records).
 */
static const char *BODY3B = "{\"k\":\"a\",\"n\":1}\n{\"k\":\"b\",\"n\":2}\n{\"k\":\"c\",\"n\":4}\n";

static void test_reused(srv *a)
{
    uint64_t n_s = total_events(a->port, "s", 4), n_b = end_offset(a->port, "b", 0);
    resp r = post_key(a->port, "s", "order-1", BODY3B);
    if (r.status != 422)
        fprintf(stderr, "reused key: %d %s\n", r.status, r.body);
    CHECK_EQ(r.status, 422);
    CHECK(strstr(r.body, "\"idempotency_key_reused\"") != NULL);
    free(r.body);
    CHECK_EQ(total_events(a->port, "s", 4), n_s);
    r = post_key(a->port, "s", "order-1", BODY3);
    CHECK_EQ(r.status, 202);
    CHECK(strstr(r.body, ",\"duplicate\":true") != NULL);
    free(r.body);
    int fd = tcp_connect(a->binport);
    uint64_t o;
    CHECK_EQ(bin_produce_ex(fd, "b", 77, 0, 5, "other", &o), 409);
    CHECK_EQ(end_offset(a->port, "b", 0), n_b);
    CHECK_EQ(bin_produce(fd, 77, 0, 5, &o), 0);
    CHECK_EQ(o, 0);
    close(fd);
    CHECK_EQ(total_events(a->port, "s", 4), n_s);
    CHECK_EQ(end_offset(a->port, "b", 0), n_b);
}

/*
 * The C producer across the end of its 32-bit sequence: 5 records, one
 * batch each, from sequence 0; then from UINT32_MAX - 2 on, 5 more. The
 * producer takes a new producer id before the sequence would wrap, so the
 * later records are not (id, 0..) again — which the server would answer
 * as duplicates of the first ones (dropping them) or, with other content,
 * refuse. Every record is delivered and stored once.
 */
static _Atomic int deliv_ok, deliv_err;

static void on_delivery(void *opaque, const spillway_delivery *d)
{
    (void)opaque;
    if (d->status == 0)
        atomic_fetch_add(&deliv_ok, 1);
    else {
        fprintf(stderr, "delivery failed: %s\n", spillway_errstr(d->status));
        atomic_fetch_add(&deliv_err, 1);
    }
}

static void test_producer_wrap(srv *a)
{
    resp r = http_json(a->port, "PUT", "/v1/streams/wrap", "{\"partitions\":1,\"format\":\"bytes\"}");
    CHECK_EQ(r.status, 201);
    free(r.body);
    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%d", a->binport);
    spillway_producer_config c;
    spillway_producer_config_init(&c);
    c.linger_ms = 0;
    c.on_delivery = on_delivery;
    spillway_producer *p;
    CHECK_EQ(spillway_producer_new(servers, &c, &p), 0);
    uint64_t id0 = spw__producer_id(p);
    for (int i = 0; i < 10; i++) {
        if (i == 5)
            spw__producer_set_next_seq(p, UINT32_MAX - 2);
        char v[32];
        int vl = snprintf(v, sizeof v, "wrap-%d", i);
        CHECK_EQ(spillway_producer_send(p, "wrap", NULL, -1, v, (size_t)vl, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_FSYNC, NULL), 0);
        CHECK_EQ(spillway_producer_flush(p, 30000), 0); /* one batch each */
    }
    CHECK(spw__producer_id(p) != id0);
    spillway_producer_close(p, 30000);
    CHECK_EQ(atomic_load(&deliv_err), 0);
    CHECK_EQ(atomic_load(&deliv_ok), 10);
    CHECK_EQ(end_offset(a->port, "wrap", 0), 10);
}

/* POST /debug/faults?query on the test build. */
static void faults(int port, const char *query)
{
    char path[256];
    snprintf(path, sizeof path, "/debug/faults?%s", query);
    resp r = http_json(port, "POST", path, "");
    CHECK_EQ(r.status, 200);
    free(r.body);
}

/* Each value of partition part of stream, checked to appear exactly once
 * there; returns how many records the partition holds. */
static uint64_t once_each(int port, const char *stream, int part)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s/events?partition=%d&offset=0&limit=1000", stream, part);
    resp r = http_json(port, "GET", path, NULL);
    CHECK_EQ(r.status, 200);
    uint64_t n = 0;
    for (char *line = r.body; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        char *v = strstr(line, "\"value\":");
        CHECK(v != NULL);
        for (char *later = nl ? nl + 1 : NULL; later && *later;) {
            char *nl2 = strchr(later, '\n');
            char *v2 = strstr(later, "\"value\":");
            CHECK(v2 != NULL);
            size_t l1 = strlen(v), l2 = nl2 ? (size_t)(nl2 - v2) : strlen(v2);
            if (l1 == l2 && memcmp(v, v2, l1) == 0)
                fprintf(stderr, "partition %d of %s holds %s twice\n", part, stream, v);
            CHECK(!(l1 == l2 && memcmp(v, v2, l1) == 0));
            later = nl2 ? nl2 + 1 : NULL;
        }
        n++;
        line = nl ? nl + 1 : NULL;
    }
    free(r.body);
    return n;
}

/*
 * A keyed request over two partitions, one of whose writes fails: the
 * request fails, yet the other partition's batch is durable (and with a
 * failed fsync the failed partition's recovery keeps its batch, which
 * reached the disk whole; with a failed write it is gone). Retried until
 * it is answered 202 (in_progress or the failed partition's refusal
 * meanwhile): then each partition holds each record exactly once — the
 * retry was answered from what was stored, or completed only the missing
 * partition — and a further retry is a duplicate. HTTP and binary.
 */
static void partly_stored(srv *t, const char *fault, const char *hs, const char *bs)
{
    char path[128], def[128];
    snprintf(path, sizeof path, "/v1/streams/%s", hs);
    resp r = http_json(t->port, "PUT", path, "{\"partitions\":2,\"ack\":\"fsync\"}");
    CHECK_EQ(r.status, 201);
    free(r.body);
    snprintf(path, sizeof path, "/v1/streams/%s", bs);
    snprintf(def, sizeof def, "{\"partitions\":2,\"ack\":\"fsync\",\"format\":\"bytes\"}");
    r = http_json(t->port, "PUT", path, def);
    CHECK_EQ(r.status, 201);
    free(r.body);

    /* HTTP: keyless events of a keyed request go to both partitions. */
    const char *body = "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n";
    faults(t->port, fault);
    r = post_key(t->port, hs, "half-1", body);
    if (r.status != 500)
        fprintf(stderr, "first attempt: %d %s\n", r.status, r.body);
    CHECK_EQ(r.status, 500);
    free(r.body);
    int in_progress = 0, ok = 0;
    for (int i = 0; i < 1000 && !ok; i++) {
        r = post_key(t->port, hs, "half-1", body);
        if (r.status == 202) {
            ok = 1;
        } else {
            CHECK(r.status == 409 || r.status == 500 || r.status == 503);
            in_progress += r.status == 409 && strstr(r.body, "\"in_progress\"") != NULL;
            usleep(10000);
        }
        free(r.body);
    }
    CHECK(ok);
    CHECK_EQ(once_each(t->port, hs, 0) + once_each(t->port, hs, 1), 4);
    r = post_key(t->port, hs, "half-1", body);
    CHECK_EQ(r.status, 202);
    CHECK(strstr(r.body, ",\"duplicate\":true") != NULL);
    free(r.body);
    CHECK_EQ(once_each(t->port, hs, 0) + once_each(t->port, hs, 1), 4);
    if (getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "%s: %d in_progress answers\n", fault, in_progress);

    /* Binary: the same with a producer id. */
    int fd = tcp_connect(t->binport);
    uint64_t o;
    faults(t->port, fault);
    int st = bin_produce_ex(fd, bs, 5, 100, 4, "", &o);
    CHECK(st != 0);
    ok = 0;
    for (int i = 0; i < 1000 && !ok; i++) {
        st = bin_produce_ex(fd, bs, 5, 100, 4, "", &o);
        if (st == 0)
            ok = 1;
        else {
            CHECK(st == 503 || st == 500);
            usleep(10000);
        }
    }
    CHECK(ok);
    CHECK_EQ(once_each(t->port, bs, 0) + once_each(t->port, bs, 1), 4);
    CHECK_EQ(bin_produce_ex(fd, bs, 5, 100, 4, "", &o), 0);
    CHECK_EQ(once_each(t->port, bs, 0) + once_each(t->port, bs, 1), 4);
    close(fd);
}

static void test_failed_partly_stored(void)
{
    if (!tbin)
        return;
    char tmp[] = "/tmp/spw-idemf-XXXXXX";
    CHECK(mkdtemp(tmp) != NULL);
    char data[4096 + 16];
    snprintf(data, sizeof data, "%s/data", tmp);
    srv t;
    srv_start(&t, tbin, data, NULL);
    /* Only on segments: a background write of a small file (the recovery
     * point) must not take the one failure meant for a write of records. */
    partly_stored(&t, "files=segments&fsync_err=EIO&fsync_count=1", "f2", "fb");
    partly_stored(&t, "files=segments&write_err=EIO&write_count=1", "w2", "wb");
    CHECK_EQ(srv_stop(&t, SIGTERM), 0);
    char cmd[4096 + 64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
}

/*
 * A retry whose stored request was damaged on disk after it was
 * acknowledged: the server cannot compare the retry with what it stored,
 * so it neither answers it as a duplicate nor refuses it as a reused key
 * (422 would tell the client it sent two different requests under one key,
 * which it did not): 500 damaged, nothing appended.
 */
static void test_damaged_stored(void)
{
    char tmp[] = "/tmp/spw-idemd-XXXXXX";
    CHECK(mkdtemp(tmp) != NULL);
    char data[4096 + 16], seg[4096 + 96];
    snprintf(data, sizeof data, "%s/data", tmp);
    srv a;
    srv_start(&a, bin, data, NULL);
    resp r = http_json(a.port, "PUT", "/v1/streams/d", "{\"partitions\":1}");
    CHECK_EQ(r.status, 201);
    free(r.body);
    const char *ev = "{\"n\":\"DAMAGE-ME-DAMAGE-ME\"}\n";
    r = post_key(a.port, "d", "dk", ev);
    CHECK_EQ(r.status, 202);
    free(r.body);
    for (int i = 0; i < 3; i++) {
        r = post_key(a.port, "d", NULL, "{\"m\":1}\n");
        CHECK_EQ(r.status, 202);
        free(r.body);
    }
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
    /* One bit of the first batch's record flipped: its CRC fails. */
    snprintf(seg, sizeof seg, "%s/streams/d/0/00000000000000000000.log", data);
    FILE *f = fopen(seg, "r+b");
    CHECK(f != NULL);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    char *at = memmem(buf, n, "DAMAGE-ME", 9);
    CHECK(at != NULL);
    *at ^= 1;
    CHECK_EQ(fseek(f, at - buf, SEEK_SET), 0);
    CHECK_EQ(fwrite(at, 1, 1, f), 1u);
    CHECK_EQ(fclose(f), 0);
    srv_start(&a, bin, data, NULL);
    r = post_key(a.port, "d", "dk", ev);
    if (r.status != 500)
        fprintf(stderr, "retry of a damaged request: %d %s\n", r.status, r.body);
    CHECK_EQ(r.status, 500);
    CHECK(strstr(r.body, "\"code\":\"damaged\"") != NULL);
    free(r.body);
    CHECK_EQ(end_offset(a.port, "d", 0), 4);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
    char cmd[4096 + 64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    bin = argv[1];
    char tmp[] = "/tmp/spw-idem-XXXXXX";
    CHECK(mkdtemp(tmp) != NULL);
    tbin = argc >= 3 ? argv[2] : NULL;
    char data[4096 + 16];
    snprintf(data, sizeof data, "%s/data", tmp);
    srv a;
    srv_start(&a, bin, data, NULL);
    resp r = http_json(a.port, "PUT", "/v1/streams/s", "{\"key\":\"/k\"}");
    CHECK_EQ(r.status, 201);
    free(r.body);
    r = http_json(a.port, "PUT", "/v1/streams/t", "{}");
    CHECK_EQ(r.status, 201);
    free(r.body);
    r = http_json(a.port, "PUT", "/v1/streams/nodedupe", "{\"partitions\":1,\"dedupe_window_ms\":0}");
    CHECK_EQ(r.status, 201);
    free(r.body);
    r = http_json(a.port, "PUT", "/v1/streams/b", "{\"partitions\":1,\"format\":\"bytes\"}");
    CHECK_EQ(r.status, 201);
    free(r.body);

    test_http_basic(a.port);
    test_http_concurrent(a.port);
    test_binary(&a);
    test_reused(&a);
    test_producer_wrap(&a);

    /* kill -9, restart: the table is rebuilt from the log; every key is
     * still answered as a duplicate and nothing is appended. */
    resp first = post_key(a.port, "s", "before-crash", BODY3);
    CHECK_EQ(first.status, 202);
    uint64_t n_s = total_events(a.port, "s", 4), n_b = end_offset(a.port, "b", 0);
    srv_stop(&a, SIGKILL);
    srv_start(&a, bin, data, NULL);
    CHECK_EQ(total_events(a.port, "s", 4), n_s);
    resp again = post_key(a.port, "s", "before-crash", BODY3);
    CHECK_EQ(again.status, 202);
    CHECK(strstr(again.body, ",\"duplicate\":true") != NULL);
    strip_dup(again.body);
    CHECK(strcmp(first.body, again.body) == 0);
    resp old = post_key(a.port, "s", "order-1", BODY3);
    CHECK_EQ(old.status, 202);
    CHECK(strstr(old.body, "duplicate") != NULL);
    free(old.body);
    CHECK_EQ(total_events(a.port, "s", 4), n_s);
    int fd = tcp_connect(a.binport);
    uint64_t o;
    CHECK_EQ(bin_produce(fd, 77, 5, 2, &o), 0);
    CHECK_EQ(o, 5);
    CHECK_EQ(bin_produce(fd, 77, 0, 3, &o), 409);
    close(fd);
    CHECK_EQ(end_offset(a.port, "b", 0), n_b);
    /* Rebuilt entries have no fingerprint: it is derived from the log. */
    test_reused(&a);
    free(first.body);
    free(again.body);
    test_cut_request(&a, data);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
    test_failed_partly_stored();
    test_damaged_stored();

    char cmd[4096 + 64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
    printf("test_idempotency: ok\n");
    return 0;
}
