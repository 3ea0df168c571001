/*
 * Coalescing (docs/operations.md "Admission", docs/api.md "Coalescing") end to end, on the test
 * build (spillway_test) with a slow fsync and a filler producer that keeps
 * the pending budget above the first shedding level:
 *   - HTTP, under pressure: many pipelined updates to a few keys of a
 *     coalesce stream are all answered 202; some are superseded (answer:
 *     "superseded":1, ids [null], no partition) and the metrics count them
 *     (overall and per stream); the log holds exactly the events answered
 *     as written, where their answers said, fewer than were sent, each
 *     key's values in the order sent and the last value sent last;
 *   - a stream without coalesce under the same pressure: nothing is
 *     superseded, everything is stored;
 *   - within one request: a later event of a key supersedes an earlier one;
 *   - the binary protocol: with the SUPERSEDE_OK flag, answers mark
 *     superseded records (partition 0xFFFFFFFF) and the log agrees; without
 *     it (an old client) nothing of that client's is superseded;
 *   - without pressure nothing is coalesced;
 *   - SIGTERM with events still buffered: every request read is answered
 *     202, the server exits 0, and after a restart every event answered as
 *     written is there; `spillway check` is clean;
 *   - a superseded request is answered only after its replacement reached
 *     its ack level (binary answers arrive in that order), and gets the
 *     replacement's error when that one's fsync fails.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "wire/frame.h"
#include "binframe.h"
#include "server.h"

static const char *BIN, *TBIN;

#define K 4       /* keys per stream */
#define WIN 48    /* pipelined requests per window (max-pipelined is 64) */
#define MAXSENT 2048

/* ---- HTTP ---- */

/* One request on a fresh connection; NULL on a connection failure (the
 * filler runs while the server is stopped). */
static resp *req_try(int port, const char *method, const char *path, const char *headers, const char *body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(fd);
        return NULL;
    }
    struct timeval tv = {.tv_sec = 60};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t blen = body ? strlen(body) : 0;
    char head[1024];
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: t\r\n%s%s", method, path, headers ? headers : "",
                     body ? "Content-Type: application/json\r\n" : "");
    if (body)
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", blen);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    if (send(fd, head, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return NULL;
    }
    for (size_t off = 0; off < blen;) {
        ssize_t w = send(fd, body + off, blen - off, MSG_NOSIGNAL);
        if (w <= 0) {
            close(fd);
            return NULL;
        }
        off += (size_t)w;
    }
    size_t cap = 1 << 20, have = 0;
    char *buf = malloc(cap);
    resp *r = calloc(1, sizeof *r);
    if (read_resp(fd, r, buf, cap, &have)) {
        free(r);
        r = NULL;
    }
    free(buf);
    close(fd);
    return r;
}

static resp req(int port, const char *method, const char *path, const char *headers, const char *body)
{
    resp *p = req_try(port, method, path, headers, body);
    CHECK(p != NULL);
    resp r = *p;
    free(p);
    return r;
}

static void create_stream(int port, const char *name, const char *def)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", name);
    resp r = req(port, "PUT", path, NULL, def);
    CHECK_EQ(r.status, 201);
    free(r.body);
}

static void faults(int port, const char *query)
{
    char path[256];
    snprintf(path, sizeof path, "/debug/faults?%s", query);
    resp r = req(port, "POST", path, NULL, "");
    CHECK_EQ(r.status, 200);
    free(r.body);
}

/* A value from /metrics: the line that starts with name (exactly, labels
 * included); -1 if there is none. */
static long long stream_coalesced(int port, const char *stream)
{
    char name[200];
    snprintf(name, sizeof name, "spillway_stream_coalesced_total{stream=\"%s\"}", stream);
    return srv_metric(port, name);
}

/* Waits (bounded) until the pressure level is at least lo and at most hi. */
static void wait_level(int port, int lo, int hi)
{
    for (int i = 0; i < 6000; i++) {
        long long l = srv_metric(port, "spillway_pressure_level");
        if (l >= lo && l <= hi)
            return;
        usleep(10000);
    }
    CHECK(!"the pressure level never got where the test needs it");
}

static uint64_t num_after(const char *s, const char *key)
{
    const char *p = strstr(s, key);
    CHECK(p != NULL);
    return strtoull(p + strlen(key), NULL, 10);
}

/* ---- the filler: keeps pending bytes above the first shedding level ---- */

static _Atomic int filler_stop;
static _Atomic int filler_any; /* any answer will do (fsync fails on purpose) */
static int filler_port;

/* Two 300 KiB events, so one request holds 600 KiB of a 1 MiB budget
 * (shedding starts at 50%) until the flusher writes it; answered at ack
 * written, it is sent again at once, while the flusher sits in a slow
 * fsync. Priority 0: never shed. */
static void *filler_main(void *arg)
{
    (void)arg;
    size_t pad = 300 << 10;
    char *body = malloc(2 * pad + 64);
    size_t n = 0;
    body[n++] = '[';
    for (int e = 0; e < 2; e++) {
        n += (size_t)sprintf(body + n, "%s{\"p\":\"", e ? "," : "");
        memset(body + n, 'x', pad);
        n += pad;
        n += (size_t)sprintf(body + n, "\"}");
    }
    body[n++] = ']';
    body[n] = 0;
    while (!atomic_load(&filler_stop)) {
        resp *r = req_try(filler_port, "POST", "/v1/streams/filler/events",
                          "Spillway-Priority: 0\r\nSpillway-Ack: written\r\n", body);
        if (!r)
            break; /* the server stopped */
        CHECK(r->status == 202 || r->status == 503 || atomic_load(&filler_any));
        if (r->status != 202)
            usleep(5000);
        free(r->body);
        free(r);
    }
    free(body);
    return NULL;
}

static pthread_t filler_th;

static void filler_start(int port)
{
    filler_port = port;
    atomic_store(&filler_stop, 0);
    CHECK(pthread_create(&filler_th, NULL, filler_main, NULL) == 0);
}

static void filler_join(void)
{
    atomic_store(&filler_stop, 1);
    pthread_join(filler_th, NULL);
}

/* ---- what was sent and answered ---- */

typedef struct sent {
    int key;
    int seq;
    int state; /* 0 written, 1 superseded */
    int arrived; /* binary: the answer's place in its window's arrival order */
    int part;
    uint64_t off;
} sent;

typedef struct book {
    const char *stream;
    sent v[MAXSENT];
    int n;
    int superseded;
    int coalesced_path; /* answers that carried "superseded" */
} book;

/* One window of WIN pipelined single-event requests on one connection,
 * keys round robin; every answer must be 202. mixed: request i asks for
 * ack none, written, fsync by i % 3 (else the stream's default, fsync). */
static void http_window_ack(int port, book *b, int mixed)
{
    static const char *acks[3] = {"none", "written", "fsync"};
    int fd = tcp_connect(port);
    size_t cap = WIN * 512, n = 0;
    char *out = malloc(cap);
    int first = b->n;
    for (int i = 0; i < WIN; i++) {
        CHECK(b->n < MAXSENT);
        sent *s = &b->v[b->n++];
        s->seq = b->n;
        s->key = s->seq % K;
        char body[128];
        int bl = snprintf(body, sizeof body, "{\"k\":\"key-%d\",\"seq\":%d}", s->key, s->seq);
        char ack[40] = "";
        if (mixed)
            snprintf(ack, sizeof ack, "Spillway-Ack: %s\r\n", acks[i % 3]);
        n += (size_t)snprintf(out + n, cap - n,
                              "POST /v1/streams/%s/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                              "Spillway-Priority: 0\r\n%sContent-Length: %d\r\n\r\n%s",
                              b->stream, ack, bl, body);
    }
    send_all(fd, out, n);
    free(out);
    size_t bcap = 1 << 20, have = 0;
    char *buf = malloc(bcap);
    for (int i = first; i < b->n; i++) {
        resp r = {0};
        CHECK(read_resp(fd, &r, buf, bcap, &have) == 0);
        if (r.status != 202)
            fprintf(stderr, "answer %d: %s", r.status, r.body);
        CHECK_EQ(r.status, 202);
        CHECK(strstr(r.body, "\"accepted\":1") != NULL);
        sent *s = &b->v[i];
        if (strstr(r.body, "\"superseded\":1")) {
            CHECK(strstr(r.body, "\"partitions\":[]") != NULL);
            CHECK(strstr(r.body, "\"ids\":[null]") != NULL);
            s->state = 1;
            b->superseded++;
            b->coalesced_path++;
        } else {
            if (strstr(r.body, "\"superseded\":0"))
                b->coalesced_path++;
            CHECK(strstr(r.body, "\"count\":1") != NULL);
            CHECK(strstr(r.body, "\"ids\":[\"") != NULL);
            s->state = 0;
            s->part = (int)num_after(r.body, "\"partition\":");
            s->off = num_after(r.body, "\"first_offset\":");
        }
        free(r.body);
    }
    free(buf);
    close(fd);
}

static void http_window(int port, book *b) { http_window_ack(port, b, 0); }

/* ---- reading the log back ---- */

typedef struct stored {
    int key, seq;
} stored;

/* Reads partition p of stream whole into v (offset order); returns the count. */
static int read_part(int port, const char *stream, int p, stored *v, int cap)
{
    int n = 0;
    for (;;) {
        char path[256];
        snprintf(path, sizeof path, "/v1/streams/%s/events?partition=%d&offset=%d&limit=1000", stream, p, n);
        resp r = req(port, "GET", path, NULL, NULL);
        CHECK_EQ(r.status, 200);
        int got = 0;
        for (char *line = r.body; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = 0;
            CHECK_EQ(num_after(line, "\"offset\":"), n);
            char *k = strstr(line, "\"k\":\"key-");
            CHECK(k != NULL);
            CHECK(n < cap);
            v[n].key = atoi(k + 9);
            v[n].seq = (int)num_after(line, "\"seq\":");
            n++;
            got++;
            line = nl ? nl + 1 : NULL;
        }
        free(r.body);
        if (!got)
            return n;
    }
}

static stored logv[2][MAXSENT];
static int logn[2];

static void read_stream(int port, const char *stream)
{
    for (int p = 0; p < 2; p++)
        logn[p] = read_part(port, stream, p, logv[p], MAXSENT);
}

/*
 * The log agrees with the answers: exactly the events answered as written,
 * each where its answer said; per key, values in the order sent, the last
 * one sent stored last.
 */
static void check_log(int port, book *b)
{
    read_stream(port, b->stream);
    int written = 0;
    for (int i = 0; i < b->n; i++) {
        sent *s = &b->v[i];
        if (s->state)
            continue;
        written++;
        CHECK(s->part >= 0 && s->part < 2);
        CHECK((int)s->off < logn[s->part]);
        CHECK_EQ(logv[s->part][s->off].key, s->key);
        CHECK_EQ(logv[s->part][s->off].seq, s->seq);
    }
    CHECK_EQ(logn[0] + logn[1], written);
    CHECK_EQ(written + b->superseded, b->n);
    for (int key = 0; key < K; key++) {
        int last_sent = -1, last_stored = -1;
        for (int i = 0; i < b->n; i++)
            if (b->v[i].key == key)
                last_sent = b->v[i].seq;
        for (int p = 0; p < 2; p++)
            for (int j = 0; j < logn[p]; j++)
                if (logv[p][j].key == key) {
                    CHECK(logv[p][j].seq > last_stored); /* the order sent */
                    last_stored = logv[p][j].seq;
                }
        CHECK_EQ(last_stored, last_sent);
    }
}

/* ---- binary protocol ---- */

/* A window of WIN pipelined PRODUCEs of one keyed record each; flags as
 * given (SPW_PRODUCE_SUPERSEDE_OK or 0). Answers may come in any order,
 * but a superseded record's answer never before that of the record that
 * finally replaced it (the next one of its key written): it is settled
 * only when that one reached the superseded request's ack level (fsync,
 * the stream's default; the fsync is slow here). */
static void bin_window_ex(int binport, book *b, uint16_t flags, int *errors)
{
    int fd = tcp_connect(binport);
    int first = b->n;
    spw_buf body = SPW_BUF_INIT;
    for (int i = 0; i < WIN; i++) {
        CHECK(b->n < MAXSENT);
        sent *s = &b->v[b->n++];
        s->seq = b->n;
        s->key = s->seq % K;
        char key[16], val[64];
        snprintf(key, sizeof key, "key-%d", s->key);
        snprintf(val, sizeof val, "{\"k\":\"key-%d\",\"seq\":%d}", s->key, s->seq);
        size_t ca;
        body.len = 0;
        CHECK_OK(spw_produce_req_begin(&body, b->stream, strlen(b->stream), SPW_ACK_DEFAULT, 0,
                                       SPW_PARTITION_ANY, 0, 0, &ca));
        spw_frame_rec r = {.attrs = SPW_REC_HAS_KEY,
                           .key = (const uint8_t *)key,
                           .key_len = (int32_t)strlen(key),
                           .value = (const uint8_t *)val,
                           .value_len = (uint32_t)strlen(val)};
        CHECK_OK(spw_produce_rec_put(&body, &r));
        spw_produce_req_set_count(&body, ca, 1);
        spw_produce_req_set_flags(&body, ca, flags);
        send_frame(fd, SPW_OP_PRODUCE, (uint64_t)(first + i), &body);
    }
    spw_buf_fini(&body);
    for (int i = 0; i < WIN; i++) {
        uint8_t h[16];
        CHECK(recv_exact(fd, h, 16) == 0);
        spw_frame_hdr fh;
        CHECK_EQ(spw_frame_hdr_decode(h, 16, 1 << 20, &fh), 0);
        size_t len = fh.length - 12;
        uint8_t *a = malloc(len);
        CHECK(recv_exact(fd, a, len) == 0);
        CHECK(fh.request_id >= (uint64_t)first && fh.request_id < (uint64_t)b->n);
        sent *s = &b->v[fh.request_id];
        s->arrived = i;
        uint16_t st;
        const uint8_t *rest;
        size_t rl;
        spw_frame_error e;
        const char *why;
        CHECK_EQ(spw_answer_decode(a, len, &st, &rest, &rl, &e, &why), 0);
        if (errors && st != 0) {
            s->state = 2;
            (*errors)++;
            free(a);
            continue;
        }
        CHECK_EQ(st, 0);
        spw_produce_resp pr;
        CHECK_EQ(spw_produce_resp_decode(rest, rl, &pr, &why), 0);
        CHECK_EQ(pr.nrecords, 1);
        if (spw_produce_resp_part(&pr, 0) == SPW_PART_SUPERSEDED) {
            CHECK(flags & SPW_PRODUCE_SUPERSEDE_OK); /* never to an old client */
            CHECK_EQ(pr.nslots, 0);
            s->state = 1;
            b->superseded++;
        } else {
            CHECK_EQ(pr.nslots, 1);
            spw_produce_slot sl;
            spw_produce_resp_slot(&pr, 0, &sl);
            CHECK_EQ(sl.partition, spw_produce_resp_part(&pr, 0));
            s->state = 0;
            s->part = (int)sl.partition;
            s->off = sl.first_offset;
        }
        free(a);
    }
    close(fd);
    for (int i = first; i < b->n && !errors; i++) {
        if (b->v[i].state != 1)
            continue;
        int j = i + 1;
        while (j < b->n && (b->v[j].key != b->v[i].key || b->v[j].state != 0))
            j++;
        CHECK(j < b->n); /* a window's last value of a key is written */
        if (b->v[j].arrived > b->v[i].arrived)
            fprintf(stderr, "seq %d (superseded) answered before seq %d that replaced it was durable\n",
                    b->v[i].seq, b->v[j].seq);
        CHECK(b->v[j].arrived < b->v[i].arrived);
    }
}

static void bin_window(int binport, book *b, uint16_t flags) { bin_window_ex(binport, b, flags, NULL); }

/*
 * An idempotent producer (producer id + sequence) with SUPERSEDE_OK under
 * pressure: its records are never superseded (its dedupe record must
 * describe the write exactly) and each request gets a batch of its own
 * carrying its id and sequence, so a resend is answered from the dedupe
 * table — also after a restart, which rebuilds the table from the batch
 * headers. first: record where each landed; else: expect the same.
 */
static int idem_part[WIN];
static uint64_t idem_off[WIN];

static void bin_idem_window(int binport, const char *stream, int first)
{
    int fd = tcp_connect(binport);
    spw_buf body = SPW_BUF_INIT;
    for (int i = 0; i < WIN; i++) {
        char key[16], val[64];
        snprintf(key, sizeof key, "key-%d", i % K);
        snprintf(val, sizeof val, "{\"k\":\"key-%d\",\"seq\":%d}", i % K, i + 1);
        size_t ca;
        body.len = 0;
        CHECK_OK(spw_produce_req_begin(&body, stream, strlen(stream), SPW_ACK_DEFAULT, 0, SPW_PARTITION_ANY,
                                       77, (uint32_t)i, &ca));
        spw_frame_rec r = {.attrs = SPW_REC_HAS_KEY,
                           .key = (const uint8_t *)key,
                           .key_len = (int32_t)strlen(key),
                           .value = (const uint8_t *)val,
                           .value_len = (uint32_t)strlen(val)};
        CHECK_OK(spw_produce_rec_put(&body, &r));
        spw_produce_req_set_count(&body, ca, 1);
        spw_produce_req_set_flags(&body, ca, SPW_PRODUCE_SUPERSEDE_OK);
        send_frame(fd, SPW_OP_PRODUCE, (uint64_t)i, &body);
    }
    spw_buf_fini(&body);
    for (int i = 0; i < WIN; i++) {
        uint8_t h[16];
        CHECK(recv_exact(fd, h, 16) == 0);
        spw_frame_hdr fh;
        CHECK_EQ(spw_frame_hdr_decode(h, 16, 1 << 20, &fh), 0);
        size_t len = fh.length - 12;
        uint8_t *a = malloc(len);
        CHECK(recv_exact(fd, a, len) == 0);
        CHECK(fh.request_id < WIN);
        uint16_t st;
        const uint8_t *rest;
        size_t rl;
        spw_frame_error e;
        const char *why;
        CHECK_EQ(spw_answer_decode(a, len, &st, &rest, &rl, &e, &why), 0);
        CHECK_EQ(st, 0);
        spw_produce_resp pr;
        CHECK_EQ(spw_produce_resp_decode(rest, rl, &pr, &why), 0);
        CHECK_EQ(pr.nslots, 1);
        CHECK(spw_produce_resp_part(&pr, 0) != SPW_PART_SUPERSEDED);
        spw_produce_slot sl;
        spw_produce_resp_slot(&pr, 0, &sl);
        if (first) {
            idem_part[fh.request_id] = (int)sl.partition;
            idem_off[fh.request_id] = sl.first_offset;
        } else {
            CHECK_EQ(idem_part[fh.request_id], sl.partition);
            CHECK_EQ(idem_off[fh.request_id], sl.first_offset);
        }
        free(a);
    }
    close(fd);
}

static void check_idem_log(int port, const char *stream)
{
    read_stream(port, stream);
    CHECK_EQ(logn[0] + logn[1], WIN); /* resends appended nothing */
    for (int i = 0; i < WIN; i++) {
        CHECK((int)idem_off[i] < logn[idem_part[i]]);
        CHECK_EQ(logv[idem_part[i]][idem_off[i]].seq, i + 1);
    }
}

/* ---- the tests ---- */

static void test_under_pressure(srv *s, const char *data)
{
    int port = s->port;
    const char *def = "{\"partitions\":2,\"key\":\"/k\",\"coalesce\":true}";
    create_stream(port, "loc", def);
    create_stream(port, "bloc", def);
    create_stream(port, "bold", def);
    create_stream(port, "multi", def);
    create_stream(port, "mixed", def);
    create_stream(port, "bidem", def);
    create_stream(port, "plain", "{\"partitions\":2,\"key\":\"/k\"}");
    create_stream(port, "filler", "{\"partitions\":1}");

    /* A slow disk and a producer that keeps the budget half full. */
    faults(port, "fsync_delay_us=200000");
    filler_start(port);
    wait_level(port, 1, 3);

    static book loc = {.stream = "loc"}, plain = {.stream = "plain"}, bloc = {.stream = "bloc"},
                bold = {.stream = "bold"}, mixed = {.stream = "mixed"};
    /* At least 6 windows, and more (bounded by the books' size) until both
     * coalesce streams saw a superseded event: whether a window lands while
     * the pressure level is up depends on the machine's timing. */
    for (int w = 0; w < 40 && (w < 6 || loc.superseded == 0 || bloc.superseded == 0); w++) {
        http_window(port, &loc);
        http_window(port, &plain);
        bin_window(s->binport, &bloc, SPW_PRODUCE_SUPERSEDE_OK);
        if (w < 3) {
            bin_window(s->binport, &bold, 0);
            http_window_ack(port, &mixed, 1);
        }
    }
    bin_idem_window(s->binport, "bidem", 1);
    bin_idem_window(s->binport, "bidem", 0); /* resent: answered from the dedupe table */
    /* Within one request: the second "a" supersedes the first. Retried
     * until it takes the coalescing path (the level dips to 0 for a moment
     * after each write; then requests take the normal path). */
    int within = 0;
    for (int i = 0; i < 200 && !within; i++) {
        resp r = req(port, "POST", "/v1/streams/multi/events", "Spillway-Priority: 0\r\n",
                     "[{\"k\":\"key-1\",\"seq\":1},{\"k\":\"key-2\",\"seq\":2},{\"k\":\"key-1\",\"seq\":3}]");
        CHECK_EQ(r.status, 202);
        CHECK(strstr(r.body, "\"accepted\":3") != NULL);
        if (strstr(r.body, "\"superseded\":")) {
            CHECK(strstr(r.body, "\"superseded\":1") != NULL);
            CHECK(strstr(r.body, "\"ids\":[null,\"") != NULL);
            /* two written: the partitions' counts add up to 2 */
            uint64_t written = 0;
            for (const char *c = strstr(r.body, "\"count\":"); c; c = strstr(c + 1, "\"count\":"))
                written += num_after(c, "\"count\":");
            CHECK_EQ(written, 2);
            within = 1;
        }
        free(r.body);
    }
    filler_join();
    CHECK(within);

    /* HTTP: superseded answers, counted, and the log agrees. */
    if (getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "loc: %d sent, %d superseded, %d coalescing answers; bloc: %d sent, %d superseded\n", loc.n,
                loc.superseded, loc.coalesced_path, bloc.n, bloc.superseded);
    CHECK(loc.superseded > 0);
    CHECK(bloc.superseded > 0);
    CHECK_EQ(bold.superseded, 0);
    CHECK_EQ(plain.superseded, 0);
    CHECK_EQ(plain.coalesced_path, 0); /* no "superseded" field at all */
    check_log(port, &loc);
    check_log(port, &plain);
    check_log(port, &bloc);
    check_log(port, &bold);
    CHECK(logn[0] + logn[1] == bold.n);
    check_log(port, &mixed); /* ack none, written and fsync side by side */
    check_idem_log(port, "bidem");
    CHECK_EQ(stream_coalesced(port, "loc"), loc.superseded);
    CHECK_EQ(stream_coalesced(port, "bloc"), bloc.superseded);
    CHECK_EQ(stream_coalesced(port, "bold"), 0);
    CHECK_EQ(stream_coalesced(port, "bidem"), 0);
    CHECK_EQ(stream_coalesced(port, "plain"), -1); /* not a coalesce stream: no such line */
    CHECK_EQ(stream_coalesced(port, "mixed"), mixed.superseded);
    CHECK_EQ(srv_metric(port, "spillway_coalesced_total"), loc.superseded + bloc.superseded + mixed.superseded + 1);
    (void)data;
}

static void test_no_pressure(srv *s)
{
    int port = s->port;
    faults(port, "fsync_delay_us=0");
    wait_level(port, 0, 0);
    create_stream(port, "calm", "{\"partitions\":2,\"key\":\"/k\",\"coalesce\":true}");
    long long before = srv_metric(port, "spillway_coalesced_total");
    static book calm = {.stream = "calm"};
    for (int w = 0; w < 3; w++)
        http_window(port, &calm);
    CHECK_EQ(calm.superseded, 0);
    CHECK_EQ(calm.coalesced_path, 0);
    check_log(port, &calm);
    CHECK_EQ(logn[0] + logn[1], calm.n);
    CHECK_EQ(stream_coalesced(port, "calm"), 0);
    CHECK_EQ(srv_metric(port, "spillway_coalesced_total"), before);
    CHECK_EQ(srv_metric(port, "spillway_coalesce_buffered_events"), 0);
}

/* SIGTERM while events wait in the coalescing buffers. */
static void test_shutdown(srv *s, const char *data)
{
    int port = s->port;
    create_stream(port, "shut", "{\"partitions\":2,\"key\":\"/k\",\"coalesce\":true}");
    faults(port, "fsync_delay_us=300000");
    filler_start(port);
    wait_level(port, 1, 3);
    static book b = {.stream = "shut"};
    int fd = tcp_connect(port);
    char out[WIN * 512];
    size_t n = 0;
    for (int i = 0; i < WIN; i++) {
        sent *x = &b.v[b.n++];
        x->seq = b.n;
        x->key = x->seq % K;
        x->state = -1; /* no answer (yet) */
        char body[128];
        int bl = snprintf(body, sizeof body, "{\"k\":\"key-%d\",\"seq\":%d}", x->key, x->seq);
        n += (size_t)snprintf(out + n, sizeof out - n,
                              "POST /v1/streams/shut/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                              "Spillway-Priority: 0\r\nContent-Length: %d\r\n\r\n%s",
                              bl, body);
    }
    send_all(fd, out, n);
    /* Bounded: stop once something is buffered (usually at once). */
    for (int i = 0; i < 500 && srv_metric(port, "spillway_coalesce_buffered_events") <= 0; i++)
        usleep(2000);
    CHECK_EQ(srv_stop(s, SIGTERM), 0);
    filler_join();
    /* Every request the server read was answered; those answered as
     * written are in the log after a restart. */
    size_t bcap = 1 << 20, have = 0;
    char *buf = malloc(bcap);
    int answered = 0;
    for (int i = 0; i < b.n; i++) {
        resp r = {0};
        if (read_resp(fd, &r, buf, bcap, &have))
            break;
        CHECK_EQ(r.status, 202);
        sent *x = &b.v[i];
        if (strstr(r.body, "\"superseded\":1")) {
            x->state = 1;
        } else {
            x->state = 0;
            x->part = (int)num_after(r.body, "\"partition\":");
            x->off = num_after(r.body, "\"first_offset\":");
        }
        answered++;
        free(r.body);
    }
    free(buf);
    close(fd);
    CHECK(answered > 0);
    const char *args[] = {"--io-threads", "2", NULL};
    srv_start(s, BIN, data, args);
    read_stream(s->port, "shut");
    for (int i = 0; i < answered; i++) {
        sent *x = &b.v[i];
        if (x->state != 0)
            continue;
        CHECK((int)x->off < logn[x->part]);
        CHECK_EQ(logv[x->part][x->off].seq, x->seq);
    }
    /* The dedupe table was rebuilt from the coalescer's batch headers. */
    bin_idem_window(s->binport, "bidem", 0);
    check_idem_log(s->port, "bidem");
    CHECK_EQ(srv_stop(s, SIGTERM), 0);
    cli_out c = cli_run(BIN, "check %s", data);
    CHECK_EQ(c.rc, 0);
    free(c.text);
}

/*
 * Every fsync fails while a window of ack=fsync updates coalesces: the
 * superseded requests get the error of the batch that carried their
 * replacements, never a 202 "superseded" (their values were never
 * durable). Retried on a fresh stream while a window happens to see no
 * pressure (then nothing coalesces and it proves nothing).
 */
static void test_fsync_fails(srv *s)
{
    int port = s->port;
    atomic_store(&filler_any, 1);
    long long superseded = 0;
    for (int attempt = 0; attempt < 20 && superseded == 0; attempt++) {
        static book b[20];
        static char name[20][16];
        snprintf(name[attempt], sizeof name[attempt], "fails%d", attempt);
        b[attempt].stream = name[attempt];
        create_stream(port, name[attempt], "{\"partitions\":2,\"key\":\"/k\",\"coalesce\":true}");
        faults(port, "fsync_err=none&fsync_delay_us=300000");
        filler_start(port);
        wait_level(port, 1, 3);
        faults(port, "fsync_err=EIO");
        int errors = 0;
        bin_window_ex(s->binport, &b[attempt], SPW_PRODUCE_SUPERSEDE_OK, &errors);
        superseded = stream_coalesced(port, name[attempt]);
        faults(port, "fsync_err=none&fsync_delay_us=0");
        filler_join();
        if (getenv("SPW_TEST_VERBOSE"))
            fprintf(stderr, "%s: %d errors, %d superseded answered 202, %lld superseded\n", name[attempt], errors,
                    b[attempt].superseded, superseded);
        CHECK_EQ(b[attempt].superseded, 0); /* no 202 "superseded" */
        CHECK_EQ(errors, WIN);              /* nothing reached the disk: every answer an error */
    }
    CHECK(superseded > 0);
    atomic_store(&filler_any, 0);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 3);
    BIN = argv[1];
    TBIN = argv[2];
    char *data = spw_test_tmpdir("coalesce");
    srv s;
    const char *args[] = {"--max-pending-bytes", "1MiB", "--io-threads", "2", NULL};
    srv_start(&s, TBIN, data, args);
    test_under_pressure(&s, data);
    test_no_pressure(&s);
    test_shutdown(&s, data);
    srv_start(&s, TBIN, data, args);
    test_fsync_fails(&s);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(data);
    free(data);
    printf("test_coalesce: ok\n");
    return 0;
}
