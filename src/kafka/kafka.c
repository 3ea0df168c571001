/*
 * The Kafka listener over the connection core (net/conn.h): see kafka.h,
 * kafka_int.h and docs/protocol-kafka.md. The core owns the loops,
 * accepting, closing, zombies, the budget's waiters, writing `out`, ticks
 * and the drain; this file frames requests, keeps each connection's answer
 * queue in request order, dispatches, and answers ApiVersions, Metadata
 * and every request it does not serve. Produce is kafka_produce.c's,
 * ListOffsets and Fetch kafka_fetch.c's.
 *
 * Framing: a request is an int32 size then that many bytes: the request
 * header (api key, version, correlation id, client id; tagged fields too
 * for a flexible version) and the body. A size below 8 or over
 * max-request-bytes cannot be answered (a Kafka answer needs the
 * correlation id, and a stream of bytes that is not Kafka has none): the
 * connection is closed, and counted refused. Everything else is
 * answered: an API or a version we do not serve gets an answer holding
 * the correlation id and error code 35 UNSUPPORTED_VERSION (for
 * ApiVersions the full version-0 answer, so the client learns what we
 * serve) and the connection stays open.
 *
 * Bounds, as the binary protocol's (bin/binproto.c): `in` holds one
 * request plus one read, taken from the buffer budget shared by every
 * listener, the whole request reserved as soon as its size is read, and
 * freed when nothing is left in it; at most max_pipelined requests are
 * queued per connection and at most SPW_NET_OUT_PAUSE_BYTES answer bytes
 * wait unsent, past either the connection stops reading (TCP pushes back).
 */
#include "kafka/kafka_int.h"

#include "log/cursor.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/name.h"
#include "catalog/stream.h"
#include "svc/metrics.h"

static kconn *kc(spw_netconn *c) { return (kconn *)c; }

void spw__kloop_post(void *loop, void (*fn)(void *), void *arg) { spw_netloop_post(&((kloop *)loop)->nl, fn, arg); }

/* ---- the versions we serve (docs/protocol-kafka.md "APIs") ---- */

typedef struct kapi {
    int16_t key, min, max;
} kapi;

static const kapi kapis[] = {
    {KAPI_PRODUCE, 3, 8},      {KAPI_FETCH, 4, 11},       {KAPI_LIST_OFFSETS, 1, 5},
    {KAPI_METADATA, 0, 8},     {KAPI_API_VERSIONS, 0, 3}, {KAPI_INIT_PRODUCER_ID, 0, 1},
    {KAPI_FIND_COORDINATOR, 0, 2}, {KAPI_JOIN_GROUP, 0, 5}, {KAPI_SYNC_GROUP, 0, 3},
    {KAPI_HEARTBEAT, 0, 3},    {KAPI_LEAVE_GROUP, 0, 2},  {KAPI_OFFSET_COMMIT, 0, 7},
    {KAPI_OFFSET_FETCH, 1, 5}, {KAPI_CREATE_TOPICS, 0, 4},
    {KAPI_SASL_HANDSHAKE, 0, 1}, {KAPI_SASL_AUTHENTICATE, 0, 1},
};
#define NKAPIS (sizeof kapis / sizeof kapis[0])

static const kapi *kapi_find(int16_t key)
{
    for (size_t i = 0; i < NKAPIS; i++)
        if (kapis[i].key == key)
            return &kapis[i];
    return NULL;
}

/* ---- errors ---- */

int16_t spw__kerr_of(spw_sc sc)
{
    switch (sc) {
    case SPW_SC_OK: return KERR_NONE;
    case SPW_SC_NO_SUCH_PARTITION:
    case SPW_SC_NO_SUCH_STREAM: return KERR_UNKNOWN_TOPIC_OR_PARTITION;
    case SPW_SC_INVALID_JSON:
    case SPW_SC_NOT_AN_OBJECT:
    case SPW_SC_MISSING_KEY:
    case SPW_SC_BAD_KEY:
    case SPW_SC_BAD_TIMESTAMP:
    case SPW_SC_NO_EVENTS: return KERR_INVALID_RECORD;
    case SPW_SC_EVENT_TOO_LARGE:
    case SPW_SC_BODY_EVENT_TOO_LARGE:
    case SPW_SC_TOO_LARGE:
    case SPW_SC_OVER_BURST:
    case SPW_SC_REQUEST_TOO_LARGE: return KERR_MESSAGE_TOO_LARGE;
    case SPW_SC_KEY_REUSED: return KERR_OUT_OF_ORDER_SEQUENCE;
    case SPW_SC_IN_PROGRESS: return KERR_REQUEST_TIMED_OUT;
    case SPW_SC_DEDUPE_FULL:
    case SPW_SC_RATE_LIMITED:
    case SPW_SC_SHED:
    case SPW_SC_BACKPRESSURE:
    case SPW_SC_OVERLOADED:
    case SPW_SC_UNAVAILABLE: return KERR_NOT_ENOUGH_REPLICAS;
    case SPW_SC_DISK_LIMIT:
    case SPW_SC_DISK_FULL:
    case SPW_SC_WRITE_FAILED: return KERR_KAFKA_STORAGE_ERROR;
    case SPW_SC_UNAUTHORIZED:
    case SPW_SC_FORBIDDEN: return KERR_TOPIC_AUTHORIZATION_FAILED;
    case SPW_SC_BAD_NAME: return KERR_INVALID_TOPIC;
    case SPW_SC_OFFSET_OUT_OF_RANGE: return KERR_OFFSET_OUT_OF_RANGE;
    case SPW_SC_DAMAGED: return KERR_CORRUPT_MESSAGE;
    case SPW_SC_READ_FAILED: return KERR_KAFKA_STORAGE_ERROR;
    default: return KERR_UNKNOWN_SERVER_ERROR;
    }
}

int spw__k_who(kconn *c, const spw_token **who)
{
    spw_auth *a = c->loop->srv->svc->auth;
    *who = NULL;
    if (!a)
        return 1;
    *who = spw_auth_session_who(a, &c->auth);
    if (!*who) {
        c->tenant[0] = 0;
        atomic_fetch_add(&a->unauthorized, 1);
        return 0;
    }
    if (strcmp(c->tenant, (*who)->tenant) != 0)
        snprintf(c->tenant, sizeof c->tenant, "%s", (*who)->tenant);
    return 1;
}

spw_stream *spw__k_stream(kconn *c, const char *name, int32_t len, unsigned perms, int16_t *err)
{
    spw_svc *svc = c->loop->srv->svc;
    char msg[256];
    if (!name || len <= 0) {
        *err = KERR_INVALID_TOPIC;
        return NULL;
    }
    /* With a tokens file every topic needs a SASL/PLAIN login. */
    const spw_token *who;
    if (!spw__k_who(c, &who)) {
        *err = KERR_TOPIC_AUTHORIZATION_FAILED;
        return NULL;
    }
    spw_stream *s;
    spw_sc sc = spw_svc_stream_for(svc->cat, svc->auth, who, name, (size_t)len, perms, &s, msg, sizeof msg);
    *err = spw__kerr_of(sc);
    return sc == SPW_SC_OK ? s : NULL;
}

/* ---- SASL/PLAIN (docs/protocol-kafka.md "Authentication") ---- */

static void sasl_handshake(kconn *c, kreq *q, spw_kr *r)
{
    const char *m;
    int32_t ml;
    spw_kr_str(r, &m, &ml);
    int16_t err = 0;
    if (r->bad)
        err = KERR_INVALID_REQUEST;
    else if (!c->loop->srv->svc->auth)
        err = 34; /* ILLEGAL_SASL_STATE: no tokens file, nothing to log in to */
    else if (!(ml == 5 && memcmp(m, "PLAIN", 5) == 0))
        err = 33; /* UNSUPPORTED_SASL_MECHANISM */
    if (!err && q->api_version == 0)
        c->sasl_raw = 1; /* v0: the PLAIN message follows in a bare size-prefixed frame */
    spw__kq_begin(q);
    spw_kw_i16(&q->out, err);
    spw_kw_i32(&q->out, 1);
    spw_kw_str(&q->out, "PLAIN", 5);
    q->ready = 1;
}

/* PLAIN's message: [authzid] NUL authcid NUL password. The password is a
 * token of the tokens file and authcid its tenant (an authzid, if given,
 * must be that tenant too). 0 logged in, or the Kafka error with *why. */
static int16_t sasl_plain(kconn *c, const uint8_t *b, int32_t bl, const char **why)
{
    spw_auth *a = c->loop->srv->svc->auth;
    *why = NULL;
    if (!a) {
        *why = "this server has no tokens file: nothing to authenticate";
        return 34; /* ILLEGAL_SASL_STATE */
    }
    int16_t err = 0;
    const uint8_t *z1 = b && bl > 0 ? memchr(b, 0, (size_t)bl) : NULL;
    const uint8_t *z2 = z1 ? memchr(z1 + 1, 0, (size_t)(b + bl - (z1 + 1))) : NULL;
    if (!z2) {
        err = 58; /* SASL_AUTHENTICATION_FAILED */
        *why = "not a SASL/PLAIN message";
    } else {
        const char *authz = (const char *)b, *user = (const char *)z1 + 1, *pw = (const char *)z2 + 1;
        size_t azl = (size_t)(z1 - b), ul = (size_t)(z2 - (z1 + 1)), pl = (size_t)(b + bl - (z2 + 1));
        if (spw_auth_session_login(a, &c->auth, pw, pl)) {
            err = 58;
            *why = "unknown token";
        } else if (strlen(c->auth.e->tenant) != ul || memcmp(c->auth.e->tenant, user, ul) != 0 ||
                   (azl && (azl != ul || memcmp(authz, user, ul) != 0))) {
            spw_auth_session_fini(&c->auth);
            memset(&c->auth, 0, sizeof c->auth);
            err = 58;
            *why = "the user name is not the token's tenant";
        }
    }
    if (err) {
        c->tenant[0] = 0;
        atomic_fetch_add(&a->unauthorized, 1);
    } else {
        snprintf(c->tenant, sizeof c->tenant, "%s", c->auth.e->tenant);
    }
    return err;
}

static void sasl_authenticate(kconn *c, kreq *q, spw_kr *r)
{
    const uint8_t *b;
    int32_t bl;
    spw_kr_bytes(r, &b, &bl);
    const char *why = "the request does not decode";
    int16_t err = r->bad || !b ? KERR_INVALID_REQUEST : sasl_plain(c, b, bl, &why);
    spw__kq_begin(q);
    spw_kw_i16(&q->out, err);
    spw_kw_str(&q->out, why, why ? (int32_t)strlen(why) : -1);
    spw_kw_bytes(&q->out, "", 0);
    if (q->api_version >= 1)
        spw_kw_i64(&q->out, 0); /* no session lifetime: a login lasts as long as its token */
    q->ready = 1;
}

/* ---- the buffer budget ---- */

static int in_reserve(kconn *c, size_t need) { return spw_netconn_in_reserve(&c->nc, &c->in, need); }
static void in_free(kconn *c) { spw_netconn_in_free(&c->nc, &c->in, &c->in_off); }

static void kreq_free(kreq *q)
{
    spw_buf_fini(&q->out);
    spw_free(q->parked);
    if (q->prod)
        spw__k_prod_free(q->prod);
    spw_free(q);
}

static void conn_update_reading(kconn *c);

static void conn_close_now(kconn *c) { spw_netconn_close(&c->nc); }

void spw__kq_flush(kconn *c)
{
    if (c->closed)
        return;
    while (c->head && c->head->ready) {
        kreq *q = c->head;
        if (q->no_answer) {
        } else if (q->framed) {
            spw_kw_set_i32(&q->out, 0, (int32_t)(q->out.len - 4));
            if (c->out_off == c->out.len && q->out.len >= (64u << 10)) {
                /* Nothing unsent: the answer's buffer becomes the output. */
                spw_buf t = c->out;
                c->out = q->out;
                c->out_off = 0;
                q->out = t;
            } else if (spw_buf_put(&c->out, q->out.p, q->out.len)) {
                conn_close_now(c);
                return;
            }
            spw__k_spare_give(c->loop, &q->out); /* a large one: the next Fetch's */
        } else if (spw_kw_i32(&c->out, (int32_t)q->out.len) || spw_buf_put(&c->out, q->out.p, q->out.len)) {
            conn_close_now(c);
            return;
        }
        c->head = q->next;
        if (!c->head)
            c->tail = NULL;
        c->nq--;
        kreq_free(q);
    }
    if (spw_netconn_send(&c->nc) != 1) {
        if (!c->closed)
            conn_update_reading(c);
        return;
    }
    if (c->close_after && c->inflight == 0 && !c->head) {
        conn_close_now(c);
        return;
    }
    conn_update_reading(c);
}

int spw__kq_begin(kreq *q)
{
    q->out.len = 0;
    q->framed = 0;
    return spw_kw_i32(&q->out, q->correlation_id);
}

int spw__kq_begin_framed(kreq *q)
{
    q->out.len = 0;
    q->framed = 1;
    return spw_kw_i32(&q->out, 0) || spw_kw_i32(&q->out, q->correlation_id);
}

/* The answer to a request we do not serve: the correlation id and error
 * 35 (for ApiVersions its version-0 answer: error, then what we serve). */
static void answer_unsupported(kreq *q)
{
    int e = spw__kq_begin(q) || spw_kw_i16(&q->out, KERR_UNSUPPORTED_VERSION);
    if (!e && q->api_key == KAPI_API_VERSIONS) {
        e = spw_kw_i32(&q->out, (int32_t)NKAPIS);
        for (size_t i = 0; !e && i < NKAPIS; i++)
            e = spw_kw_i16(&q->out, kapis[i].key) || spw_kw_i16(&q->out, kapis[i].min) ||
                spw_kw_i16(&q->out, kapis[i].max);
    }
    if (e)
        q->out.len = 0;
    q->ready = 1;
}

/* ---- ApiVersions ---- */

static void api_versions(kreq *q, spw_kr *r)
{
    int v = q->api_version;
    if (v >= 3) { /* client software name and version; checked, not kept */
        const char *s;
        int32_t l;
        spw_kr_cstr(r, &s, &l);
        spw_kr_cstr(r, &s, &l);
        spw_kr_tags(r);
    }
    int16_t err = r->bad ? KERR_INVALID_REQUEST : KERR_NONE;
    int e = spw__kq_begin(q) || spw_kw_i16(&q->out, err);
    if (v >= 3)
        e = e || spw_kw_uvarint(&q->out, NKAPIS + 1);
    else
        e = e || spw_kw_i32(&q->out, (int32_t)NKAPIS);
    for (size_t i = 0; !e && i < NKAPIS; i++) {
        e = spw_kw_i16(&q->out, kapis[i].key) || spw_kw_i16(&q->out, kapis[i].min) ||
            spw_kw_i16(&q->out, kapis[i].max);
        if (!e && v >= 3)
            e = spw_kw_uvarint(&q->out, 0);
    }
    if (v >= 1)
        e = e || spw_kw_i32(&q->out, 0); /* throttle time */
    if (v >= 3)
        e = e || spw_kw_uvarint(&q->out, 0);
    if (e)
        q->out.len = 0;
    q->ready = 1;
}

static int16_t create_topic(kconn *c, const char *n, int32_t l, int32_t np, int16_t rf, int32_t nassign,
                            int32_t nconf, int validate, char *msg, size_t cap);

/* ---- Metadata ---- */

/* The address the client reached us at: the one Metadata and
 * FindCoordinator advertise, so a client goes on where it connected. An
 * IPv6 address is the bare literal ("::1": Kafka's host strings carry no
 * brackets; clients add them); an IPv4-mapped one ([::ffff:a.b.c.d], a
 * dual-stack listener reached over IPv4) is advertised as a.b.c.d, which
 * an IPv4-only client can reach too. */
void spw__k_local_addr(kconn *c, char *host, size_t cap, int *port)
{
    snprintf(host, cap, "127.0.0.1");
    *port = c->loop->srv->ns.port;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(c->fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sa = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sa->sin_addr, host, (socklen_t)cap);
        *port = ntohs(sa->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_V4MAPPED(&sa->sin6_addr))
            inet_ntop(AF_INET, &sa->sin6_addr.s6_addr[12], host, (socklen_t)cap);
        else
            inet_ntop(AF_INET6, &sa->sin6_addr, host, (socklen_t)cap);
        *port = ntohs(sa->sin6_port);
    }
}

typedef struct md_ctx {
    kconn *c;
    spw_buf *out;
    int v;
    int32_t n;
    int e;
    int32_t node;
    const spw_token *who; /* NULL: every stream */
} md_ctx;

static int md_topic(md_ctx *m, int16_t err, const char *name, size_t len, spw_stream *s)
{
    spw_buf *o = m->out;
    int e = spw_kw_i16(o, err) || spw_kw_str(o, name, (int32_t)len);
    if (m->v >= 1)
        e = e || spw_kw_i8(o, 0); /* is_internal */
    uint32_t np = s ? s->cfg.partitions : 0;
    e = e || spw_kw_i32(o, (int32_t)np);
    for (uint32_t p = 0; !e && p < np; p++) {
        e = spw_kw_i16(o, 0) || spw_kw_i32(o, (int32_t)p) || spw_kw_i32(o, m->node);
        if (m->v >= 7)
            e = e || spw_kw_i32(o, 0); /* leader epoch */
        e = e || spw_kw_i32(o, 1) || spw_kw_i32(o, m->node); /* replicas */
        e = e || spw_kw_i32(o, 1) || spw_kw_i32(o, m->node); /* in-sync replicas */
        if (m->v >= 5)
            e = e || spw_kw_i32(o, 0); /* offline replicas */
    }
    if (m->v >= 8)
        e = e || spw_kw_i32(o, INT32_MIN); /* authorized operations: not computed */
    m->n++;
    return e;
}

static void md_each(void *arg, spw_stream *s)
{
    md_ctx *m = arg;
    if (m->who && !spw_token_sees(m->who, s->cfg.name, strlen(s->cfg.name)))
        return;
    if (!m->e && !atomic_load(&s->deleted))
        m->e = md_topic(m, 0, s->cfg.name, strlen(s->cfg.name), s);
}

static void metadata(kconn *c, kreq *q, spw_kr *r)
{
    spw_svc *svc = c->loop->srv->svc;
    int v = q->api_version;
    int32_t nt = spw_kr_array(r, 2);
    spw_kr names = *r; /* read again when answering */
    for (int32_t i = 0; i < nt && !r->bad; i++) {
        const char *n;
        int32_t l;
        spw_kr_str(r, &n, &l);
    }
    int allow_auto = v >= 4 ? spw_kr_i8(r) != 0 : 1;
    if (v >= 8) {
        (void)spw_kr_i8(r);
        (void)spw_kr_i8(r);
    }
    if (r->bad) { /* unreadable: answered, not dropped */
        spw__kq_begin(q);
        spw_kw_i16(&q->out, KERR_INVALID_REQUEST);
        q->ready = 1;
        return;
    }
    int all = nt < 0 || (v == 0 && nt == 0);
    char host[64];
    int port;
    spw__k_local_addr(c, host, sizeof host, &port);
    int32_t node = (int32_t)svc->node_id;
    spw_buf *o = &q->out;
    int e = spw__kq_begin(q);
    if (v >= 3)
        e = e || spw_kw_i32(o, 0); /* throttle */
    e = e || spw_kw_i32(o, 1) || spw_kw_i32(o, node) || spw_kw_str(o, host, (int32_t)strlen(host)) ||
        spw_kw_i32(o, port);
    if (v >= 1)
        e = e || spw_kw_str(o, NULL, -1); /* rack */
    if (v >= 2)
        e = e || spw_kw_str(o, "spillway", 8); /* cluster id */
    if (v >= 1)
        e = e || spw_kw_i32(o, node); /* controller */
    size_t count_at = o->len;
    e = e || spw_kw_i32(o, 0);
    md_ctx m = {.c = c, .out = o, .v = v, .node = node};
    const spw_token *who;
    if (!e && all && spw__k_who(c, &who)) { /* with tokens: no login, no names */
        m.who = who;
        spw_catalog_each(svc->cat, md_each, &m);
        e = m.e;
    }
    for (int32_t i = 0; !e && !all && i < nt; i++) {
        const char *nm;
        int32_t nl;
        spw_kr_str(&names, &nm, &nl);
        int16_t err;
        spw_stream *s = spw__k_stream(c, nm, nl, 0, &err);
        if (!s && err == KERR_UNKNOWN_TOPIC_OR_PARTITION && allow_auto && c->loop->srv->cfg.auto_create) {
            /* kafka-auto-create: as CreateTopics with the defaults (a
             * bytes stream, the default partitions; admin needed). */
            char msg[256];
            int16_t cerr = create_topic(c, nm, nl, -1, -1, 0, 0, 0, msg, sizeof msg);
            if (cerr == KERR_NONE || cerr == KERR_TOPIC_ALREADY_EXISTS)
                s = spw__k_stream(c, nm, nl, 0, &err);
            else
                err = cerr;
        }
        e = md_topic(&m, err, nm ? nm : "", nm && nl > 0 ? (size_t)nl : 0, s);
        if (s)
            spw_stream_put(s);
    }
    if (!e)
        spw_kw_set_i32(o, count_at, m.n);
    if (v >= 8)
        e = e || spw_kw_i32(o, INT32_MIN); /* cluster authorized operations */
    if (e)
        o->len = 0;
    q->ready = 1;
}

/* ---- InitProducerId ---- */

/* A producer id for an idempotent producer (epoch 0). Its batches' ids,
 * epochs and sequences become the produce service's producer sequences
 * (kafka_produce.c). Transactions are not supported. */
static void init_producer_id(kconn *c, kreq *q, spw_kr *r)
{
    const char *tid;
    int32_t tl;
    spw_kr_str(r, &tid, &tl);
    (void)spw_kr_i32(r); /* transaction timeout */
    int16_t err = r->bad ? KERR_INVALID_REQUEST : tid ? KERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED : KERR_NONE;
    int64_t pid = err ? -1 : atomic_fetch_add(&c->loop->srv->next_pid, 1);
    int e = spw__kq_begin(q) || spw_kw_i32(&q->out, 0) || spw_kw_i16(&q->out, err) || spw_kw_i64(&q->out, pid) ||
            spw_kw_i16(&q->out, err ? -1 : 0);
    if (e)
        q->out.len = 0;
    q->ready = 1;
}

/* ---- CreateTopics ---- */

/* One topic: a bytes stream (Kafka values are any bytes) with
 * num_partitions partitions (-1: the stream default). Topic configs,
 * replica assignments and a replication factor other than 1 are refused:
 * a stream's other options are set over HTTP (docs/api.md). */
static int16_t create_topic(kconn *c, const char *n, int32_t l, int32_t np, int16_t rf, int32_t nassign,
                            int32_t nconf, int validate, char *msg, size_t cap)
{
    spw_svc *svc = c->loop->srv->svc;
    msg[0] = 0;
    if (!n || l <= 0 || !spw_stream_name_ok(n, (size_t)l)) {
        snprintf(msg, cap, "not a valid stream name");
        return KERR_INVALID_TOPIC;
    }
    const spw_token *who;
    if (!spw__k_who(c, &who) ||
        spw_svc_allowed(svc->auth, who, n, (size_t)l, SPW_PERM_ADMIN, msg, cap) != SPW_SC_OK)
        return KERR_TOPIC_AUTHORIZATION_FAILED;
    if (rf != -1 && rf != 1) {
        snprintf(msg, cap, "this node is the only replica: the replication factor must be 1 or -1");
        return 38; /* INVALID_REPLICATION_FACTOR */
    }
    if (nassign > 0) {
        snprintf(msg, cap, "replica assignments are not supported");
        return 39; /* INVALID_REPLICA_ASSIGNMENT */
    }
    if (nconf > 0) {
        snprintf(msg, cap, "topic configs are not supported: set the stream's options over HTTP (PUT /v1/streams/NAME)");
        return 40; /* INVALID_CONFIG */
    }
    char name[SPW_STREAM_NAME_MAX + 1], body[96], err[256];
    snprintf(name, sizeof name, "%.*s", (int)l, n);
    if (np == -1)
        snprintf(body, sizeof body, "{\"format\":\"bytes\"}");
    else
        snprintf(body, sizeof body, "{\"format\":\"bytes\",\"partitions\":%" PRId32 "}", np);
    spw_stream_config cfg;
    if (np == 0 || np < -1 || spw_stream_config_parse(&cfg, name, body, strlen(body), err, sizeof err)) {
        snprintf(msg, cap, "%s", np == 0 || np < -1 ? "num_partitions must be at least 1" : err);
        return KERR_INVALID_PARTITIONS;
    }
    spw_stream *s = spw_stream_get(svc->cat, name, strlen(name));
    if (s) {
        spw_stream_put(s);
        snprintf(msg, cap, "a stream named %s exists", name);
        return KERR_TOPIC_ALREADY_EXISTS;
    }
    if (validate)
        return KERR_NONE;
    int r = spw_catalog_create(svc->cat, &cfg);
    if (r == 0 || r == -EEXIST) {
        snprintf(msg, cap, "a stream named %s exists", name);
        return KERR_TOPIC_ALREADY_EXISTS;
    }
    if (r < 0) {
        snprintf(msg, cap, "creating the stream failed: %s", spw_strerror(r));
        return KERR_KAFKA_STORAGE_ERROR;
    }
    spw_info("stream %s: created by a Kafka CreateTopics from %s", name, c->peer);
    return KERR_NONE;
}

static void create_topics(kconn *c, kreq *q, spw_kr *r)
{
    int v = q->api_version;
    int32_t nt = spw_kr_array(r, 14);
    spw_kr save = *r;
    /* Decoded whole first: a request that does not decode creates nothing. */
    for (int32_t t = 0; t < nt && !r->bad; t++) {
        const char *n;
        int32_t l;
        spw_kr_str(r, &n, &l);
        (void)spw_kr_i32(r);
        (void)spw_kr_i16(r);
        int32_t na = spw_kr_array(r, 8);
        for (int32_t i = 0; i < na && !r->bad; i++) {
            (void)spw_kr_i32(r);
            int32_t nb = spw_kr_array(r, 4);
            spw_kr_skip(r, nb > 0 ? (size_t)nb * 4 : 0);
        }
        int32_t nc = spw_kr_array(r, 4);
        for (int32_t i = 0; i < nc && !r->bad; i++) {
            const char *x;
            int32_t xl;
            spw_kr_str(r, &x, &xl);
            spw_kr_str(r, &x, &xl);
        }
    }
    (void)spw_kr_i32(r); /* timeout: creation is done before the answer */
    int validate = v >= 1 ? spw_kr_i8(r) != 0 : 0;
    spw_buf *o = &q->out;
    spw__kq_begin(q);
    if (v >= 2)
        spw_kw_i32(o, 0);
    if (r->bad) {
        spw_kw_i32(o, 0);
        q->ready = 1;
        return;
    }
    spw_kw_i32(o, nt < 0 ? 0 : nt);
    *r = save;
    for (int32_t t = 0; t < nt; t++) {
        const char *n;
        int32_t l;
        spw_kr_str(r, &n, &l);
        int32_t np = spw_kr_i32(r);
        int16_t rf = spw_kr_i16(r);
        int32_t na = spw_kr_array(r, 8);
        for (int32_t i = 0; i < na; i++) {
            (void)spw_kr_i32(r);
            int32_t nb = spw_kr_array(r, 4);
            spw_kr_skip(r, nb > 0 ? (size_t)nb * 4 : 0);
        }
        int32_t nc = spw_kr_array(r, 4);
        for (int32_t i = 0; i < nc; i++) {
            const char *x;
            int32_t xl;
            spw_kr_str(r, &x, &xl);
            spw_kr_str(r, &x, &xl);
        }
        char msg[256];
        int16_t err = create_topic(c, n, l, np, rf, na, nc, validate, msg, sizeof msg);
        spw_kw_str(o, n, l);
        spw_kw_i16(o, err);
        if (v >= 1)
            spw_kw_str(o, msg[0] ? msg : NULL, msg[0] ? (int32_t)strlen(msg) : -1);
    }
    q->ready = 1;
}

/* ---- dispatch ---- */

static void dispatch(kconn *c, const uint8_t *p, size_t n)
{
    spw_kafka_server *srv = c->loop->srv;
    atomic_fetch_add(&srv->st_requests, 1);
    kreq *q = spw_xcalloc(1, sizeof *q);
    q->c = c;
    if (c->sasl_raw) {
        /* SASL v0: a bare PLAIN message; an empty frame says yes, a
         * failed login closes the connection (there is no error field). */
        c->sasl_raw = 0;
        const char *why;
        if (c->tail)
            c->tail->next = q;
        else
            c->head = q;
        c->tail = q;
        c->nq++;
        q->ready = 1;
        if (sasl_plain(c, p, (int32_t)n, &why)) {
            q->no_answer = 1;
            c->close_after = 1;
        }
        return;
    }
    spw_kr r;
    spw_kr_init(&r, p, n);
    q->api_key = spw_kr_i16(&r);
    q->api_version = spw_kr_i16(&r);
    q->correlation_id = spw_kr_i32(&r);
    if (c->tail)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
    c->nq++;
    const kapi *a = kapi_find(q->api_key);
    if (!a || q->api_version < a->min || q->api_version > a->max) {
        answer_unsupported(q);
        return;
    }
    spw_kr_init(&r, p, n);
    spw_khdr h;
    if (spw_khdr_decode(&r, q->api_key == KAPI_API_VERSIONS && q->api_version >= 3, &h)) {
        spw__kq_begin(q);
        spw_kw_i16(&q->out, KERR_INVALID_REQUEST);
        q->ready = 1;
        return;
    }
    switch (q->api_key) {
    case KAPI_API_VERSIONS: api_versions(q, &r); break;
    case KAPI_METADATA: metadata(c, q, &r); break;
    case KAPI_PRODUCE: spw__k_produce(c, q, &r); break;
    case KAPI_LIST_OFFSETS: spw__k_list_offsets(c, q, &r); break;
    case KAPI_FETCH: spw__k_fetch(c, q, r.p, spw_kr_left(&r), 0); break;
    case KAPI_INIT_PRODUCER_ID: init_producer_id(c, q, &r); break;
    case KAPI_FIND_COORDINATOR: spw__k_find_coordinator(c, q, &r); break;
    case KAPI_JOIN_GROUP: spw__k_join_group(c, q, &r); break;
    case KAPI_SYNC_GROUP: spw__k_sync_group(c, q, &r); break;
    case KAPI_HEARTBEAT: spw__k_heartbeat(c, q, &r); break;
    case KAPI_LEAVE_GROUP: spw__k_leave_group(c, q, &r); break;
    case KAPI_OFFSET_COMMIT: spw__k_offset_commit(c, q, &r); break;
    case KAPI_OFFSET_FETCH: spw__k_offset_fetch(c, q, &r); break;
    case KAPI_CREATE_TOPICS: create_topics(c, q, &r); break;
    case KAPI_SASL_HANDSHAKE: sasl_handshake(c, q, &r); break;
    case KAPI_SASL_AUTHENTICATE: sasl_authenticate(c, q, &r); break;
    default: answer_unsupported(q);
    }
}

/* ---- connections ---- */

static uint32_t k_events(spw_netconn *nc)
{
    kconn *c = kc(nc);
    return (c->paused ? 0 : EPOLLIN) | (c->want_out ? EPOLLOUT : 0) | (c->rdhup ? 0 : EPOLLRDHUP);
}

static void conn_process(kconn *c);

static void conn_update_reading(kconn *c)
{
    if (c->closed)
        return;
    int want_pause = c->close_after || c->mem_wait || c->loop->stopping || c->nq >= c->loop->srv->cfg.max_pipelined ||
                     c->out.len - c->out_off > SPW_NET_OUT_PAUSE_BYTES;
    if (want_pause != c->paused) {
        c->paused = want_pause;
        spw_netconn_set_events(&c->nc);
        if (!want_pause)
            conn_process(c);
    }
}

static void conn_fatal(kconn *c, const char *why)
{
    atomic_fetch_add(&c->loop->srv->st_refused, 1);
    spw_warn("Kafka listener: closing the connection from %s: %s", c->peer[0] ? c->peer : "?", why);
    in_free(c);
    conn_close_now(c);
}

static void conn_process(kconn *c)
{
    spw_kafka_server *srv = c->loop->srv;
    while (!c->closed && !c->close_after && !c->loop->stopping && !c->mem_wait && c->nq < srv->cfg.max_pipelined &&
           c->out.len - c->out_off <= SPW_NET_OUT_PAUSE_BYTES && !spw_netconn_out_full(&c->nc)) {
        const uint8_t *p = c->in.p + c->in_off;
        size_t avail = c->in.len - c->in_off;
        if (avail < 4)
            break;
        int32_t size = (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
        if (size < 8 || (uint32_t)size > srv->cfg.max_request_bytes) {
            char m[128];
            snprintf(m, sizeof m, "request size %" PRId32 " is outside 8..%u (max-request-bytes)", size,
                     srv->cfg.max_request_bytes);
            conn_fatal(c, m);
            return;
        }
        size_t whole = 4 + (size_t)size;
        if (avail < whole) {
            if (c->in_off) {
                memmove(c->in.p, c->in.p + c->in_off, avail);
                c->in.len = avail;
                c->in_off = 0;
            }
            int e = in_reserve(c, whole);
            if (e == SPW_EAGAIN)
                spw_netconn_wait_for_room(&c->nc);
            else if (e) {
                conn_fatal(c, "out of memory for the request");
                return;
            }
            break;
        }
        c->in_off += whole;
        dispatch(c, p + 4, (size_t)size);
        /* Ready answers go to out now, so the bound on unsent bytes above
         * counts them before the next request is read. */
        spw__kq_flush(c);
    }
    if (c->closed)
        return;
    size_t rest = c->in.len - c->in_off;
    if (c->in_off) {
        memmove(c->in.p, c->in.p + c->in_off, rest);
        c->in.len = rest;
        c->in_off = 0;
    }
    if (rest == 0) {
        c->frame_start_ms = 0;
        in_free(c);
    } else if (!c->frame_start_ms) {
        c->frame_start_ms = spw_mono_ms();
    }
    spw__kq_flush(c);
}

static void conn_read(kconn *c)
{
    for (int rounds = 0; rounds < 8 && !c->paused && !c->closed; rounds++) {
        if (c->in.len == c->in.cap) {
            int e = spw_netconn_in_room(&c->nc, &c->in);
            if (e == SPW_EAGAIN) {
                spw_netconn_wait_for_room(&c->nc);
                conn_update_reading(c);
                return;
            }
            if (e) {
                conn_fatal(c, "out of memory for input");
                return;
            }
        }
        size_t room = c->in.cap - c->in.len;
        ssize_t n = spw_netconn_recv(&c->nc, c->in.p + c->in.len, room < SPW_NET_READ_CHUNK ? room : SPW_NET_READ_CHUNK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                conn_close_now(c);
            return;
        }
        if (n == 0) {
            c->close_after = 1;
            in_free(c);
            if (c->inflight == 0 && !c->head && c->out.len == c->out_off)
                conn_close_now(c);
            else
                conn_update_reading(c);
            return;
        }
        c->in.len += (size_t)n;
        c->last_active_ms = spw_mono_ms();
        conn_process(c);
        if ((size_t)n < room && (size_t)n < SPW_NET_READ_CHUNK)
            return;
    }
}

static void k_io(spw_netconn *nc, uint32_t events)
{
    kconn *c = kc(nc);
    if (events & EPOLLOUT)
        spw__kq_flush(c);
    if (c->closed)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (c->paused && (events & (EPOLLHUP | EPOLLERR))) {
            conn_close_now(c);
        } else if (c->paused) {
            if ((events & EPOLLRDHUP) && !c->rdhup) {
                c->rdhup = 1;
                spw_netconn_set_events(&c->nc);
            }
        } else {
            conn_read(c);
        }
    }
}

static void k_room(spw_netconn *c) { conn_update_reading(kc(c)); }

static void k_conn_free(spw_netconn *nc)
{
    kconn *c = kc(nc);
    spw_auth_session_fini(&c->auth);
    atomic_fetch_sub(&c->loop->parked, c->nparked);
    c->nparked = 0;
    while (c->head) {
        kreq *q = c->head;
        c->head = q->next;
        kreq_free(q);
    }
    c->tail = NULL;
    in_free(c);
}

static void k_loop_init(spw_netloop *nl, void *owner)
{
    kloop *l = (kloop *)nl;
    l->srv = owner;
    l->spare = &l->srv->spares[l->srv->ncurs];
    l->cur = &l->srv->curs[l->srv->ncurs++]; /* called for each loop in turn, before they run */
}
static void k_conn_init(spw_netconn *nc) { kc(nc)->loop = (kloop *)nc->nl; }

static void k_conn_tick(spw_netconn *nc, uint64_t now)
{
    kconn *c = kc(nc);
    spw_kafka_config *cfg = &c->loop->srv->cfg;
    /* Fetches waiting for data answer at their deadline; without the
     * durable hook they also look again every tick. */
    if (c->nparked) {
        spw__k_fetch_recheck(c, now, !atomic_load(&c->loop->srv->hooked));
        if (c->closed)
            return;
    }
    if (c->mem_wait && !c->frame_start_ms)
        c->last_active_ms = now;
    if (c->head)
        c->last_active_ms = now; /* answers owed: not idle */
    if (c->frame_start_ms && !c->close_after && now - c->frame_start_ms > cfg->request_timeout_ms)
        conn_fatal(c, "request not received whole in time");
    else if (c->inflight == 0 && !c->head && c->out.len == c->out_off && now - c->last_active_ms > cfg->idle_timeout_ms)
        conn_close_now(c);
}

/* A large answer was written whole: its buffer becomes the loop's spare. */
static void k_out_sent(spw_netconn *nc) { spw__k_spare_give(kc(nc)->loop, &nc->out); }

static void k_stop_reading(spw_netconn *nc) { conn_update_reading(kc(nc)); }

/* Group sessions and deadlines; in the drain, no group request waits on
 * this loop any more. */
static void k_loop_tick(spw_netloop *nl)
{
    kloop *l = (kloop *)nl;
    spw__kg_tick(l->srv->kg, l, l->stopping);
    spw__k_spare_tick(l, spw_mono_ms());
}

static const spw_netproto k_proto = {
    .name = "Kafka protocol",
    .thread = "spw-kafka",
    .conn_size = sizeof(kconn),
    .loop_size = sizeof(kloop),
    .loop_init = k_loop_init,
    .conn_init = k_conn_init,
    .events = k_events,
    .io = k_io,
    .room = k_room,
    .conn_free = k_conn_free,
    .stop_reading = k_stop_reading,
    .conn_tick = k_conn_tick,
    .loop_tick = k_loop_tick,
    .out_sent = k_out_sent,
};

int spw_kafka_start(const spw_kafka_config *cfg, spw_svc *svc, spw_kafka_server **out)
{
    spw_kafka_server *s = spw_xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    if (s->cfg.threads == 0)
        s->cfg.threads = 1;
    if (s->cfg.max_pipelined == 0)
        s->cfg.max_pipelined = 64;
    if (s->cfg.max_request_bytes < 4096)
        s->cfg.max_request_bytes = 4096;
    s->svc = svc;
    atomic_store(&s->next_pid, spw_wall_ms() << 12);
    s->kg = spw__kg_new();
    s->curs = spw_xcalloc(s->cfg.threads, sizeof *s->curs);
    s->spares = spw_xcalloc(s->cfg.threads, sizeof *s->spares);
    for (uint32_t i = 0; i < s->cfg.threads; i++)
        spw_cursor_init(&s->curs[i], NULL, 0, 64u << 10);
    spw_netsrv_config nc = {.listen = cfg->listen, .threads = s->cfg.threads,
                            .max_connections = cfg->max_connections, .buffers = cfg->buffers,
                            .tls = cfg->tls, .tls_handshake_timeout_ms = cfg->request_timeout_ms};
    int r = spw_netsrv_start(&s->ns, &k_proto, &nc, s);
    if (r < 0) {
        spw__kg_free(s->kg);
        spw_free(s->curs);
        spw_free(s->spares);
        spw_free(s);
        return r;
    }
    /* Parked Fetches are answered when records become durable. */
    if (svc->log && spw_log_add_durable_hook(svc->log, spw__k_durable, s) == 0)
        atomic_store(&s->hooked, 1);
    *out = s;
    return 0;
}

int spw_kafka_port(spw_kafka_server *s) { return s->ns.port; }

void spw_kafka_stop_accepting(spw_kafka_server *s) { spw_netsrv_stop_accepting(&s->ns); }

void spw_kafka_stop(spw_kafka_server *s, uint32_t drain_ms)
{
    if (atomic_load(&s->hooked))
        spw_log_remove_durable_hook(s->svc->log, spw__k_durable, s);
    spw_netsrv_stop(&s->ns, drain_ms);
    for (uint32_t i = 0; i < s->cfg.threads; i++)
        spw_cursor_fini(&s->curs[i]);
    for (uint32_t i = 0; i < s->cfg.threads; i++)
        spw_buf_fini(&s->spares[i]);
    spw_free(s->curs);
    spw_free(s->spares);
    spw__kg_free(s->kg);
    spw_free(s);
}

static uint64_t m_conns(void *s) { return atomic_load(&((spw_kafka_server *)s)->ns.nconns); }
static uint64_t m_requests(void *s) { return atomic_load(&((spw_kafka_server *)s)->st_requests); }
static uint64_t m_refused(void *s)
{
    spw_kafka_server *k = s;
    return atomic_load(&k->st_refused) + atomic_load(&k->ns.refused);
}

void spw_kafka_metrics_register(spw_metrics *m, spw_kafka_server *s)
{
    spw_metrics_add_u64(m, "spillway_kafka_connections", "open Kafka-protocol connections", SPW_METRIC_GAUGE,
                        m_conns, s);
    spw_metrics_add_u64(m, "spillway_kafka_requests_total", "Kafka-protocol requests", SPW_METRIC_COUNTER,
                        m_requests, s);
    spw_metrics_add_u64(m, "spillway_kafka_refused_total",
                        "Kafka-protocol connections over max-connections and requests that could not be framed",
                        SPW_METRIC_COUNTER, m_refused, s);
}
