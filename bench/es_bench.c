/*
 * Conditional appends (docs/api.md "Event sourcing"), closed loop: C
 * connections, each keeping I appends in flight (--inflight, default 32),
 * every append a single event to a random aggregate of N (the I in flight
 * on a connection are on I different aggregates), expecting the version
 * last seen for that aggregate (a shared hint table: the version a 202
 * gave, or the current version a 409 named; a 409 counts as a conflict),
 * at ack=fsync, for S seconds. Over HTTP the I requests are pipelined on a
 * keep-alive connection (the server answers them in order); over the
 * binary protocol they are PRODUCE frames with flag VERSIONED and distinct
 * request ids (answered as they complete). --inflight 1 is one request at
 * a time per connection: the rate is then C appends per fsync round.
 * --unconditional sends expectation "any" instead (no check).
 * The client runs on the server's machine, so it spends as little as it
 * can: the appends that the answers of one read start go out in one send,
 * as a pipelining application's would.
 * Prints `BENCH es system=... appends_per_s=... p99_us=... conflicts=...
 * inflight=I`; latency is from a request's send to its answer.
 *
 * usage: spw_es_bench --protocol http|bin --http HOST:PORT --bin HOST:PORT
 *                     --stream S [--conns C (50)] [--inflight I (32, 1..64)]
 *                     [--aggregates N (100000)] [--seconds S (5)] [--unconditional]
 *        spw_es_bench --bin HOST:PORT --stream S --history-load E
 * The second loads the history proof's data (bench/es.sh --history): E
 * events of 100,000 keys and 1,000 of "the-aggregate" spread among them.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>


static const char *proto = "bin", *http_addr = "127.0.0.1:7700", *bin_addr = "127.0.0.1:7701", *stream = "es";
static int conns = 50, seconds = 5, unconditional = 0, inflight = 32;
static uint32_t aggs = 100000;
static _Atomic uint64_t *known;
static _Atomic int stop;

#define MAX_INFLIGHT 64 /* the server's default max-pipelined (both protocols) */

typedef struct worker {
    pthread_t th;
    int id, fd, http;
    uint64_t ok, conflicts, errors;
    uint32_t *lat_us; /* of accepted appends */
    size_t nlat, cap;
    uint64_t rs;
    uint32_t agg[MAX_INFLIGHT]; /* the aggregate of each slot in flight */
    uint8_t *busy;              /* bit per aggregate: some slot has it in flight */
    uint64_t t0[MAX_INFLIGHT];
    uint32_t fifo[MAX_INFLIGHT]; /* HTTP: slots in request order */
    uint32_t head, nfifo;
    char *in; /* answers received: in[at..have) not parsed yet */
    size_t at, have, incap;
    uint8_t *out; /* requests not sent yet (worker_flush) */
    size_t olen, ocap;
} worker;

static uint64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static int tcp_connect(const char *addr)
{
    char host[64];
    snprintf(host, sizeof host, "%s", addr);
    char *colon = strrchr(host, ':');
    if (!colon)
        return -1;
    *colon = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 || connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t r = send(fd, c, n, MSG_NOSIGNAL);
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* n (at most 8) little-endian bytes: one store or load, not a loop */
static uint8_t *put_le(uint8_t *p, uint64_t v, int n)
{
    uint64_t le = htole64(v);
    memcpy(p, &le, (size_t)n);
    return p + n;
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    memcpy(&v, p, (size_t)n);
    return le64toh(v);
}

/* Room for n more bytes of requests in w->out. */
static uint8_t *out_room(worker *w, size_t n)
{
    if (w->olen + n > w->ocap) {
        w->ocap = (w->olen + n) * 2;
        w->out = realloc(w->out, w->ocap);
    }
    return w->out + w->olen;
}

/* Sends the requests queued in w->out. */
static int worker_flush(worker *w)
{
    int r = w->olen ? send_all(w->fd, w->out, w->olen) : 0;
    w->olen = 0;
    return r;
}

/* Queues slot's append: aggregate a, expecting exp (0: none). */
/* v in decimal at out, at least min digits (zeros before); returns the
 * length. By hand: the client's formatting is part of what it costs. */
static int put_dec(char *out, uint64_t v, int min)
{
    char t[24];
    int n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v || n < min);
    for (int i = 0; i < n; i++)
        out[i] = t[n - 1 - i];
    return n;
}

#define VAL_HEAD "{\"id\":\""
#define VAL_TAIL "\",\"t\":\"deposited\",\"amount\":1}"

static int send_append(worker *w, uint32_t slot, uint32_t a, uint64_t exp)
{
    char key[24], val[96], e[24];
    memcpy(key, "acct-", 5);
    int kl = 5 + put_dec(key + 5, a, 6);
    int vl = 0;
    memcpy(val, VAL_HEAD, sizeof VAL_HEAD - 1);
    vl += (int)sizeof VAL_HEAD - 1;
    memcpy(val + vl, key, (size_t)kl);
    vl += kl;
    memcpy(val + vl, VAL_TAIL, sizeof VAL_TAIL - 1);
    vl += (int)sizeof VAL_TAIL - 1;
    val[vl] = 0;
    if (w->http) {
        char buf[512];
        if (unconditional)
            memcpy(e, "any", 4);
        else
            e[put_dec(e, exp, 1)] = 0;
        static const char h1[] = "POST /v1/streams/", h2[] = "/events HTTP/1.1\r\nHost: b\r\nContent-Type: "
                                                                    "application/json\r\nSpillway-Expected-Version: ",
                          h3[] = "\r\nContent-Length: ", h4[] = "\r\n\r\n";
        size_t sl = strlen(stream), el = strlen(e);
        if (sl > 256)
            return -1;
        int n = 0;
#define PUT(s, l) (memcpy(buf + n, (s), (l)), n += (int)(l))
        PUT(h1, sizeof h1 - 1);
        PUT(stream, sl);
        PUT(h2, sizeof h2 - 1);
        PUT(e, el);
        PUT(h3, sizeof h3 - 1);
        n += put_dec(buf + n, (uint64_t)vl, 1);
        PUT(h4, sizeof h4 - 1);
        PUT(val, (size_t)vl);
#undef PUT
        w->fifo[(w->head + w->nfifo++) % MAX_INFLIGHT] = slot;
        memcpy(out_room(w, (size_t)n), buf, (size_t)n);
        w->olen += (size_t)n;
        return 0;
    }
    /* PRODUCE, flag VERSIONED (docs/protocol.md "Versioned streams") */
    uint8_t f[512], *p = f + 4;
    size_t sl = strlen(stream);
    *p++ = 1; /* PRODUCE */
    *p++ = 1; /* version */
    p = put_le(p, 0, 2);
    p = put_le(p, slot, 8); /* request id */
    p = put_le(p, sl, 2);
    memcpy(p, stream, sl);
    p += sl;
    *p++ = 2;   /* ack fsync */
    *p++ = 255; /* priority: the stream's */
    p = put_le(p, 2, 2);          /* VERSIONED */
    p = put_le(p, 0xFFFFFFFFu, 4); /* by key */
    p = put_le(p, 0, 8);           /* producer id */
    p = put_le(p, 0, 4);           /* producer seq */
    p = put_le(p, 1, 4);           /* count */
    *p++ = 1;                      /* HAS_KEY */
    p = put_le(p, 0, 8);
    p = put_le(p, (uint64_t)kl, 4);
    memcpy(p, key, (size_t)kl);
    p += kl;
    p = put_le(p, (uint64_t)vl, 4);
    memcpy(p, val, (size_t)vl);
    p += vl;
    *p++ = unconditional ? 0 : exp ? 3 : 1;
    p = put_le(p, unconditional ? 0 : exp, 8);
    put_le(f, (uint64_t)(p - f - 4), 4);
    memcpy(out_room(w, (size_t)(p - f)), f, (size_t)(p - f));
    w->olen += (size_t)(p - f);
    return 0;
}

/* Starts slot's next append, on an aggregate no other slot of this
 * connection has in flight. */
static int issue(worker *w, uint32_t slot)
{
    uint32_t a = w->agg[slot];
    if (a != UINT32_MAX)
        w->busy[a >> 3] &= (uint8_t)~(1u << (a & 7));
    for (;;) {
        w->rs ^= w->rs << 13;
        w->rs ^= w->rs >> 7;
        w->rs ^= w->rs << 17;
        a = (uint32_t)(w->rs % aggs);
        if (!(w->busy[a >> 3] >> (a & 7) & 1) || aggs <= (uint32_t)inflight)
            break;
    }
    w->busy[a >> 3] |= (uint8_t)(1u << (a & 7));
    w->agg[slot] = a;
    w->t0[slot] = now_us();
    return send_append(w, slot, a, atomic_load(&known[a]));
}

/* One complete answer from w->in, if there is one: 1 with *slot, *st
 * (202, 409, other) and *num (the version given, or the current one),
 * 0 if more bytes are needed. Consumes it. */
static int parse_answer(worker *w, uint32_t *slot, int *st, uint64_t *num)
{
    size_t used;
    char *in = w->in + w->at;
    size_t have = w->have - w->at;
    if (w->http) {
        char *he = memmem(in, have, "\r\n\r\n", 4);
        if (!he)
            return 0;
        *he = 0;
        char *cl = strstr(in, "Content-Length: ");
        size_t blen = cl ? (size_t)atol(cl + 16) : 0;
        *he = '\r';
        used = (size_t)(he + 4 - in) + blen;
        if (have < used || !w->nfifo)
            return 0;
        *st = atoi(in + 9);
        char save = in[used];
        in[used] = 0;
        const char *f = strstr(he + 4, *st == 202 ? "\"first\":" : "\"current\":");
        *num = f ? strtoull(strchr(f, ':') + 1, NULL, 10) : 0;
        in[used] = save;
        *slot = w->fifo[w->head];
        w->head = (w->head + 1) % MAX_INFLIGHT;
        w->nfifo--;
    } else {
        if (have < 4)
            return 0;
        uint32_t len = (uint32_t)get_le((const uint8_t *)in, 4);
        used = 4 + (size_t)len;
        if (have < used)
            return 0;
        const uint8_t *h = (const uint8_t *)in + 4;
        if (len < 12 + 2 + 8)
            return -1;
        *slot = (uint32_t)get_le(h + 4, 8);
        unsigned status = (unsigned)get_le(h + 12, 2);
        *st = status == 0 ? 202 : (int)status;
        *num = get_le(h + len - 8, 8); /* the version (one record), or the current one (409) */
        if (*slot >= (uint32_t)inflight)
            return -1;
    }
    w->at += used; /* the rest moves to the front once per read (next_answer) */
    return 1;
}

static int next_answer(worker *w, uint32_t *slot, int *st, uint64_t *num)
{
    for (;;) {
        int r = parse_answer(w, slot, st, num);
        if (r)
            return r;
        /* Every answer read so far is handled: what they started goes
         * out before waiting for more. */
        if (w->out && worker_flush(w))
            return -1;
        if (w->at) {
            memmove(w->in, w->in + w->at, w->have - w->at);
            w->have -= w->at;
            w->at = 0;
        }
        if (w->incap - w->have < 4096) {
            w->incap = w->incap ? w->incap * 2 : 65536;
            w->in = realloc(w->in, w->incap + 1);
        }
        ssize_t n = recv(w->fd, w->in + w->have, w->incap - w->have, 0);
        if (n <= 0)
            return -1;
        w->have += (size_t)n;
    }
}

static void *run(void *arg)
{
    worker *w = arg;
    w->rs = 0x9E3779B97F4A7C15ull * (uint64_t)(w->id + 1);
    w->http = strcmp(proto, "http") == 0;
    w->fd = tcp_connect(w->http ? http_addr : bin_addr);
    if (w->fd < 0) {
        fprintf(stderr, "spw_es_bench: cannot connect\n");
        w->errors++;
        return NULL;
    }
    for (int i = 0; i < inflight; i++)
        w->agg[i] = UINT32_MAX;
    w->busy = calloc((size_t)aggs / 8 + 1, 1);
    for (int i = 0; i < inflight; i++)
        if (issue(w, (uint32_t)i)) {
            w->errors++;
            goto out;
        }
    while (!atomic_load(&stop)) {
        uint32_t slot;
        int st;
        uint64_t num;
        if (next_answer(w, &slot, &st, &num) != 1) {
            w->errors++;
            break;
        }
        uint64_t dt = now_us() - w->t0[slot];
        if (st == 202) {
            w->ok++;
            atomic_store(&known[w->agg[slot]], num);
            if (w->nlat == w->cap) {
                w->cap = w->cap ? w->cap * 2 : 4096;
                w->lat_us = realloc(w->lat_us, w->cap * sizeof *w->lat_us);
            }
            w->lat_us[w->nlat++] = (uint32_t)(dt > UINT32_MAX ? UINT32_MAX : dt);
        } else if (st == 409) {
            w->conflicts++;
            atomic_store(&known[w->agg[slot]], num);
        } else {
            fprintf(stderr, "spw_es_bench: answer %d\n", st);
            w->errors++;
            break;
        }
        if (!atomic_load(&stop) && issue(w, slot)) {
            w->errors++;
            break;
        }
    }
out:
    close(w->fd);
    free(w->in);
    free(w->out);
    free(w->busy);
    return NULL;
}

/* ---- --history-load E: the history proof's data (bench/es.sh --history) ---- */

#define LOAD_BATCH 1000
#define LOAD_INFLIGHT 16

/* Appends E events of 100,000 keys plus 1,000 of "the-aggregate" spread
 * evenly among them, in PRODUCE batches of LOAD_BATCH records (the
 * aggregate's events one per request, as an application's commands append
 * them) at ack fsync, LOAD_INFLIGHT in flight on one connection. 0, or 1 on error. */
static int history_load(uint64_t events)
{
    int fd = tcp_connect(bin_addr);
    if (fd < 0) {
        fprintf(stderr, "spw_es_bench: cannot connect to %s\n", bin_addr);
        return 1;
    }
    uint64_t total = events + 1000, every = total / 1000, sent = 0, agg = 0, noise = 0;
    size_t cap = 64 + (size_t)LOAD_BATCH * 96, sl = strlen(stream);
    uint8_t *f = malloc(cap);
    worker w = {.fd = fd, .http = 0};
    int inflight_now = 0, err = 0;
    uint64_t id = 0, t0 = now_us();
    while (!err && (sent < total || inflight_now > 0)) {
        while (sent < total && inflight_now < LOAD_INFLIGHT) {
            uint8_t *p = f + 4;
            *p++ = 1;
            *p++ = 1;
            p = put_le(p, 0, 2);
            p = put_le(p, id++ % LOAD_INFLIGHT, 8);
            p = put_le(p, sl, 2);
            memcpy(p, stream, sl);
            p += sl;
            *p++ = 2; /* ack fsync: durable when answered, so the indexer lag says it all */
            *p++ = 255;
            p = put_le(p, 0, 2);
            p = put_le(p, 0xFFFFFFFFu, 4);
            p = put_le(p, 0, 8);
            p = put_le(p, 0, 4);
            uint8_t *countp = p;
            p += 4;
            uint32_t n = 0;
            while (n < LOAD_BATCH && sent < total) {
                char key[32], val[64];
                int is_agg = sent % every == every - 1 && agg < 1000;
                if (is_agg && n > 0)
                    break; /* the aggregate's events come one per request, as commands append them */
                int kl = is_agg ? snprintf(key, sizeof key, "the-aggregate")
                                : snprintf(key, sizeof key, "k%06u", (unsigned)(noise++ % 100000));
                agg += is_agg;
                int vl = snprintf(val, sizeof val, "{\"n\":%" PRIu64 ",\"pad\":\"xxxxxxxxxxxxxxxx\"}", sent);
                *p++ = 1; /* HAS_KEY */
                p = put_le(p, 0, 8);
                p = put_le(p, (uint64_t)kl, 4);
                memcpy(p, key, (size_t)kl);
                p += kl;
                p = put_le(p, (uint64_t)vl, 4);
                memcpy(p, val, (size_t)vl);
                p += vl;
                n++;
                sent++;
                if (is_agg)
                    break;
            }
            put_le(countp, n, 4);
            put_le(f, (uint64_t)(p - f - 4), 4);
            if (send_all(fd, f, (size_t)(p - f))) {
                err = 1;
                break;
            }
            inflight_now++;
        }
        if (err || inflight_now == 0)
            break;
        uint32_t slot;
        int st;
        uint64_t num;
        inflight = LOAD_INFLIGHT; /* parse_answer's check of the request id */
        if (next_answer(&w, &slot, &st, &num) != 1 || st != 202) {
            fprintf(stderr, "spw_es_bench: loading: answer %d\n", st);
            err = 1;
            break;
        }
        inflight_now--;
    }
    if (!err && agg != 1000) {
        fprintf(stderr, "spw_es_bench: loading: %" PRIu64 " events of the aggregate, not 1000\n", agg);
        err = 1;
    }
    double secs = (double)(now_us() - t0) / 1e6;
    if (!err)
        printf("loaded %" PRIu64 " events (%" PRIu64 " of the-aggregate) in %.1f s\n", sent, agg, secs);
    close(fd);
    free(f);
    free(w.in);
    return err;
}

/* The k-th smallest of v[0..n) (k < n), reordering v: a selection in
 * linear time, not a sort of every latency. */
static uint32_t select_kth(uint32_t *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint32_t pivot = v[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                uint32_t t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

int main(int argc, char **argv)
{
    uint64_t load = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--unconditional") == 0) {
            unconditional = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "spw_es_bench: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--protocol") == 0)
            proto = v;
        else if (strcmp(a, "--http") == 0)
            http_addr = v;
        else if (strcmp(a, "--bin") == 0)
            bin_addr = v;
        else if (strcmp(a, "--stream") == 0)
            stream = v;
        else if (strcmp(a, "--conns") == 0)
            conns = atoi(v);
        else if (strcmp(a, "--inflight") == 0)
            inflight = atoi(v);
        else if (strcmp(a, "--history-load") == 0)
            load = strtoull(v, NULL, 10);
        else if (strcmp(a, "--aggregates") == 0)
            aggs = (uint32_t)atoi(v);
        else if (strcmp(a, "--seconds") == 0)
            seconds = atoi(v);
        else {
            fprintf(stderr, "spw_es_bench: unknown option %s\n", a);
            return 2;
        }
    }
    if (load)
        return history_load(load);
    if (conns < 1 || conns > 1000 || inflight < 1 || inflight > MAX_INFLIGHT || aggs < 1 || seconds < 1 || (strcmp(proto, "http") && strcmp(proto, "bin"))) {
        fprintf(stderr, "spw_es_bench: bad options\n");
        return 2;
    }
    known = calloc(aggs, sizeof *known);
    worker *ws = calloc((size_t)conns, sizeof *ws);
    uint64_t t0 = now_us();
    for (int i = 0; i < conns; i++) {
        ws[i].id = i;
        pthread_create(&ws[i].th, NULL, run, &ws[i]);
    }
    sleep((unsigned)seconds);
    atomic_store(&stop, 1);
    uint64_t ok = 0, conf = 0, err = 0;
    size_t nl = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(ws[i].th, NULL);
        ok += ws[i].ok;
        conf += ws[i].conflicts;
        err += ws[i].errors;
        nl += ws[i].nlat;
    }
    double secs = (double)(now_us() - t0) / 1e6;
    uint32_t *all = malloc((nl ? nl : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < conns; i++) {
        memcpy(all + k, ws[i].lat_us, ws[i].nlat * sizeof *all);
        k += ws[i].nlat;
        free(ws[i].lat_us);
    }
    uint32_t p99 = nl ? select_kth(all, nl, (size_t)((double)(nl - 1) * 0.99)) : 0;
    printf("BENCH es system=spillway-%s%s appends_per_s=%.0f p99_us=%u conflicts=%" PRIu64 " errors=%" PRIu64
           " conns=%d inflight=%d aggregates=%u seconds=%.1f\n",
           proto, unconditional ? "-unconditional" : "", (double)ok / secs, p99, conf, err, conns, inflight, aggs,
           secs);
    free(all);
    free(ws);
    free((void *)known);
    return err ? 1 : 0;
}
