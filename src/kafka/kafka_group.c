/*
 * The Kafka group coordinator (docs/protocol-kafka.md "Consumer groups"):
 * FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup (the Kafka
 * group protocol with client-side assignment: the leader's client
 * computes the assignment, the coordinator only carries it), and
 * OffsetCommit / OffsetFetch over the consumer-group store
 * (catalog/groups.h; saved off the I/O loop by the consume service,
 * svc/consume.h), so a Kafka group's offsets are a Spillway group's
 * committed offsets, shown by GET /v1/streams/S/groups/G.
 *
 * Membership is in memory (a restart forgets members; they rejoin, as
 * Kafka clients do when the coordinator moves). Every Kafka group of the
 * server is in one registry under one mutex (kgroups in the server): its
 * members may be on any loop. A group moves EMPTY -> JOINING (a member
 * joined or left, or one's session expired) -> SYNCING (every member
 * rejoined, or the rebalance deadline passed and those that did not are
 * removed: a new generation, answers to every JoinGroup, the member list
 * to the leader) -> STABLE (the leader's SyncGroup brought the
 * assignments: every waiting SyncGroup answered). JoinGroup and a
 * follower's SyncGroup wait (counted in flight on their connection and
 * loop); their answers are built under the mutex and posted to their
 * loops. Each loop's tick looks for expired sessions and deadlines.
 *
 * A new member is refused (COORDINATOR_LOAD_IN_PROGRESS, which clients
 * retry) while a reset of the group of that name runs
 * (spw_svc_group_resetting, checked under the registry's mutex, which the
 * reset's member check also takes): it would read from the offsets the
 * reset is replacing.
 */
#include "kafka/kafka_int.h"

#include <pthread.h>

#include "catalog/groups.h"
#include "core/clock.h"
#include "svc/consume.h"
#include "svc/group_admin.h"

enum {
    KERR_COORDINATOR_LOAD_IN_PROGRESS = 14,
    KERR_COORDINATOR_NOT_AVAILABLE = 15,
    KERR_ILLEGAL_GENERATION = 22,
    KERR_INCONSISTENT_GROUP_PROTOCOL = 23,
    KERR_INVALID_GROUP_ID = 24,
    KERR_UNKNOWN_MEMBER_ID = 25,
    KERR_INVALID_SESSION_TIMEOUT = 26,
    KERR_REBALANCE_IN_PROGRESS = 27,
};

enum { KG_EMPTY, KG_JOINING, KG_SYNCING, KG_STABLE };

/* A request waiting for the group: answered on its own loop. */
typedef struct kwait {
    kconn *c;
    kreq *q;
} kwait;

typedef struct kmember {
    struct kmember *next;
    char id[96];
    uint32_t session_ms, rebalance_ms;
    uint64_t last_seen_ms;
    uint32_t nprotos;
    char **proto_names;
    spw_buf *proto_meta;
    kwait join, sync; /* q NULL: none */
    int joined;       /* rejoined in this rebalance */
    spw_buf assignment;
} kmember;

typedef struct kgroup {
    struct kgroup *next;
    char name[SPW_GROUP_NAME_MAX + 1];
    char protocol_type[64];
    char protocol[64];
    int state;
    int32_t generation;
    char leader[96];
    uint64_t deadline_ms; /* JOINING: the rebalance ends then */
    kmember *members;
    uint32_t nmembers;
} kgroup;

struct spw_kgroups {
    pthread_mutex_t mu;
    kgroup *groups;
    uint64_t next_member;
};

/* svc/group_admin.h: has Kafka group `group` members now? (A reset of
 * the Spillway group of that name is refused then.) */
static int kg_members(void *arg, const char *group, char *member, size_t cap)
{
    spw_kgroups *kg = arg;
    int r = 0;
    pthread_mutex_lock(&kg->mu);
    for (kgroup *g = kg->groups; g && !r; g = g->next)
        if (g->members && strcmp(g->name, group) == 0) {
            snprintf(member, cap, "%s", g->members->id);
            r = 1;
        }
    pthread_mutex_unlock(&kg->mu);
    return r;
}

spw_kgroups *spw__kg_new(void)
{
    spw_kgroups *g = spw_xcalloc(1, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    spw_svc_group_members_register(kg_members, g);
    return g;
}

static void member_free(kmember *m)
{
    for (uint32_t i = 0; i < m->nprotos; i++) {
        spw_free(m->proto_names[i]);
        spw_buf_fini(&m->proto_meta[i]);
    }
    spw_free(m->proto_names);
    spw_free(m->proto_meta);
    spw_buf_fini(&m->assignment);
    spw_free(m);
}

void spw__kg_free(spw_kgroups *kg)
{
    if (!kg)
        return;
    spw_svc_group_members_unregister(kg);
    while (kg->groups) {
        kgroup *g = kg->groups;
        kg->groups = g->next;
        while (g->members) {
            kmember *m = g->members;
            g->members = m->next;
            member_free(m);
        }
        spw_free(g);
    }
    pthread_mutex_destroy(&kg->mu);
    spw_free(kg);
}

/* ---- answers to waiting requests ---- */

typedef struct kpost {
    kconn *c;
    kreq *q;
    spw_buf out;
} kpost;

static void posted(void *arg)
{
    kpost *p = arg;
    kconn *c = p->c;
    SPW_ASSERT(c->inflight > 0 && c->loop->inflight > 0);
    c->inflight--;
    c->loop->inflight--;
    spw_buf_fini(&p->q->out);
    p->q->out = p->out;
    p->q->ready = 1;
    spw__kq_flush(c);
    spw_free(p);
}

/* Sends out (taken over) to the waiting request w, which is cleared. */
static void wake(kwait *w, spw_buf *out)
{
    kpost *p = spw_xmalloc(sizeof *p);
    p->c = w->c;
    p->q = w->q;
    p->out = *out;
    *out = (spw_buf)SPW_BUF_INIT;
    w->q = NULL;
    w->c = NULL;
    spw_netloop_post(&p->c->loop->nl, posted, p);
}

static void park(kwait *w, kconn *c, kreq *q)
{
    w->c = c;
    w->q = q;
    c->inflight++;
    c->loop->inflight++;
}

/*
 * The two answers of this file that are built in several places, each
 * after the correlation id: JoinGroup's (an error: generation -1, empty
 * names, no members; else the new generation, and for the leader g's
 * members with their metadata for the chosen protocol) and SyncGroup's
 * (the error and the member's assignment, empty when NULL).
 */
static spw_buf *meta_of(kmember *m, const char *proto);

static void join_body(spw_buf *o, int v, int16_t err, const kgroup *g, const kmember *m, int leader)
{
    if (v >= 2)
        spw_kw_i32(o, 0);
    spw_kw_i16(o, err);
    spw_kw_i32(o, err ? -1 : g->generation);
    spw_kw_str(o, err ? "" : g->protocol, err ? 0 : (int32_t)strlen(g->protocol));
    spw_kw_str(o, err ? "" : g->leader, err ? 0 : (int32_t)strlen(g->leader));
    spw_kw_str(o, err ? "" : m->id, err ? 0 : (int32_t)strlen(m->id));
    if (err || !leader) {
        spw_kw_i32(o, 0);
        return;
    }
    spw_kw_i32(o, (int32_t)g->nmembers);
    for (kmember *x = g->members; x; x = x->next) {
        spw_buf *meta = meta_of(x, g->protocol);
        spw_kw_str(o, x->id, (int32_t)strlen(x->id));
        if (v >= 5)
            spw_kw_str(o, NULL, -1);
        spw_kw_bytes(o, meta ? meta->p : NULL, meta ? (int32_t)meta->len : 0);
    }
}

static void sync_body(spw_buf *o, int v, int16_t err, const spw_buf *assignment)
{
    if (v >= 1)
        spw_kw_i32(o, 0);
    spw_kw_i16(o, err);
    spw_kw_bytes(o, assignment ? assignment->p : NULL, assignment ? (int32_t)assignment->len : 0);
}

/* Answers q at once with an error (JoinGroup) or err and assignment
 * (SyncGroup). */
static void join_now(kreq *q, int16_t err)
{
    spw__kq_begin(q);
    join_body(&q->out, q->api_version, err, NULL, NULL, 0);
    q->ready = 1;
}

static void sync_now(kreq *q, int16_t err, const spw_buf *assignment)
{
    spw__kq_begin(q);
    sync_body(&q->out, q->api_version, err, assignment);
    q->ready = 1;
}

/* The same to a waiting request (w cleared). */
static void join_error(kwait *w, int16_t err)
{
    spw_buf o = SPW_BUF_INIT;
    spw_kw_i32(&o, w->q->correlation_id);
    join_body(&o, w->q->api_version, err, NULL, NULL, 0);
    wake(w, &o);
}

static void sync_answer(kwait *w, int16_t err, const spw_buf *assignment)
{
    spw_buf o = SPW_BUF_INIT;
    spw_kw_i32(&o, w->q->correlation_id);
    sync_body(&o, w->q->api_version, err, assignment);
    wake(w, &o);
}

/* ---- the group's state machine (under kg->mu) ---- */

static kgroup *group_get(spw_kgroups *kg, const char *name, int32_t len, int create)
{
    for (kgroup *g = kg->groups; g; g = g->next)
        if ((int32_t)strlen(g->name) == len && memcmp(g->name, name, (size_t)len) == 0)
            return g;
    if (!create)
        return NULL;
    kgroup *g = spw_xcalloc(1, sizeof *g);
    memcpy(g->name, name, (size_t)len);
    g->next = kg->groups;
    kg->groups = g;
    return g;
}

static kmember *member_get(kgroup *g, const char *id, int32_t len)
{
    for (kmember *m = g->members; m; m = m->next)
        if ((int32_t)strlen(m->id) == len && memcmp(m->id, id, (size_t)len) == 0)
            return m;
    return NULL;
}

static void start_rebalance(kgroup *g, uint64_t now)
{
    if (g->state == KG_JOINING)
        return;
    g->state = KG_JOINING;
    uint32_t maxr = 0;
    for (kmember *m = g->members; m; m = m->next) {
        m->joined = 0;
        if (m->rebalance_ms > maxr)
            maxr = m->rebalance_ms;
        /* A follower waiting in SyncGroup must rejoin. */
        if (m->sync.q)
            sync_answer(&m->sync, KERR_REBALANCE_IN_PROGRESS, NULL);
    }
    g->deadline_ms = now + maxr;
}

static void member_remove(kgroup *g, kmember *m)
{
    for (kmember **pp = &g->members; *pp; pp = &(*pp)->next)
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    g->nmembers--;
    if (m->join.q)
        join_error(&m->join, KERR_UNKNOWN_MEMBER_ID);
    if (m->sync.q)
        sync_answer(&m->sync, KERR_UNKNOWN_MEMBER_ID, NULL);
    member_free(m);
}

/* The protocol every member supports, in the leader's order of preference. */
static const char *choose_protocol(kgroup *g, kmember *leader)
{
    for (uint32_t i = 0; i < leader->nprotos; i++) {
        int all = 1;
        for (kmember *m = g->members; m && all; m = m->next) {
            int has = 0;
            for (uint32_t j = 0; j < m->nprotos && !has; j++)
                has = strcmp(m->proto_names[j], leader->proto_names[i]) == 0;
            all = has;
        }
        if (all)
            return leader->proto_names[i];
    }
    return NULL;
}

static spw_buf *meta_of(kmember *m, const char *proto)
{
    for (uint32_t j = 0; j < m->nprotos; j++)
        if (strcmp(m->proto_names[j], proto) == 0)
            return &m->proto_meta[j];
    return NULL;
}

/* Every member rejoined (or the deadline removed the others): a new
 * generation, and every JoinGroup answered. */
static void complete_join(kgroup *g)
{
    if (!g->members) {
        g->state = KG_EMPTY;
        return;
    }
    kmember *leader = member_get(g, g->leader, (int32_t)strlen(g->leader));
    if (!leader)
        leader = g->members;
    snprintf(g->leader, sizeof g->leader, "%s", leader->id);
    const char *proto = choose_protocol(g, leader);
    if (!proto) { /* members without a common protocol: the others are refused */
        for (kmember *m = g->members, *nx; m; m = nx) {
            nx = m->next;
            if (m != leader && m->join.q)
                join_error(&m->join, KERR_INCONSISTENT_GROUP_PROTOCOL);
            if (m != leader)
                member_remove(g, m);
        }
        proto = leader->nprotos ? leader->proto_names[0] : "";
    }
    snprintf(g->protocol, sizeof g->protocol, "%s", proto);
    g->generation++;
    g->state = KG_SYNCING;
    for (kmember *m = g->members; m; m = m->next) {
        spw_buf_fini(&m->assignment);
        m->last_seen_ms = spw_mono_ms();
        if (!m->join.q)
            continue;
        spw_buf o = SPW_BUF_INIT;
        spw_kw_i32(&o, m->join.q->correlation_id);
        join_body(&o, m->join.q->api_version, 0, g, m, m == leader);
        wake(&m->join, &o);
    }
}

/* Joins complete once every member has rejoined. */
static void check_join(kgroup *g)
{
    if (g->state != KG_JOINING)
        return;
    for (kmember *m = g->members; m; m = m->next)
        if (!m->join.q)
            return;
    complete_join(g);
}

/* Sessions and deadlines (every loop's tick). */
void spw__kg_tick(spw_kgroups *kg, kloop *l, int stopping)
{
    uint64_t now = spw_mono_ms();
    pthread_mutex_lock(&kg->mu);
    /* Groups without members are forgotten (their offsets are in the
     * group store): the registry holds only live groups. */
    for (kgroup **pp = &kg->groups; *pp;) {
        kgroup *g = *pp;
        if (!g->members) {
            *pp = g->next;
            spw_free(g);
        } else {
            pp = &g->next;
        }
    }
    for (kgroup *g = kg->groups; g; g = g->next) {
        int changed = 0;
        for (kmember *m = g->members, *nx; m; m = nx) {
            nx = m->next;
            if (stopping) { /* the drain: nothing waits on this loop any more */
                if (m->join.q && m->join.c->loop == l)
                    join_error(&m->join, KERR_COORDINATOR_NOT_AVAILABLE);
                if (m->sync.q && m->sync.c->loop == l)
                    sync_answer(&m->sync, KERR_COORDINATOR_NOT_AVAILABLE, NULL);
                continue;
            }
            if (!m->join.q && !m->sync.q && now - m->last_seen_ms > m->session_ms) {
                spw_info("Kafka group %s: member %s left (no heartbeat in %u ms)", g->name, m->id, m->session_ms);
                member_remove(g, m);
                changed = 1;
            }
        }
        if (stopping)
            continue;
        if (changed && g->state != KG_EMPTY) {
            if (g->members)
                start_rebalance(g, now);
            else
                g->state = KG_EMPTY;
        }
        if (g->state == KG_JOINING && now >= g->deadline_ms) {
            for (kmember *m = g->members, *nx; m; m = nx) {
                nx = m->next;
                if (!m->join.q)
                    member_remove(g, m);
            }
            complete_join(g);
        } else {
            check_join(g);
        }
    }
    pthread_mutex_unlock(&kg->mu);
}

/* ---- the requests ---- */

static int name_ok(const char *n, int32_t l) { return n && l > 0 && spw_group_name_ok(n, (size_t)l); }

void spw__k_find_coordinator(kconn *c, kreq *q, spw_kr *r)
{
    int v = q->api_version;
    const char *key;
    int32_t kl;
    spw_kr_str(r, &key, &kl);
    int8_t type = v >= 1 ? spw_kr_i8(r) : 0;
    int16_t err = r->bad ? KERR_INVALID_REQUEST : type != 0 ? KERR_INVALID_REQUEST : 0;
    char host[64];
    int port;
    spw__k_local_addr(c, host, sizeof host, &port);
    spw_buf *o = &q->out;
    spw__kq_begin(q);
    if (v >= 1)
        spw_kw_i32(o, 0);
    spw_kw_i16(o, err);
    if (v >= 1)
        spw_kw_str(o, err ? "only group coordinators" : NULL, err ? 23 : -1);
    spw_kw_i32(o, (int32_t)c->loop->srv->svc->node_id);
    spw_kw_str(o, host, (int32_t)strlen(host));
    spw_kw_i32(o, port);
    q->ready = 1;
}

static void simple_answer(kreq *q, int16_t err, int throttle)
{
    spw__kq_begin(q);
    if (throttle)
        spw_kw_i32(&q->out, 0);
    spw_kw_i16(&q->out, err);
    q->ready = 1;
}

/*
 * JoinGroup's protocols and SyncGroup's assignments are both an array of
 * (string, bytes): read n of them from r, each given to each (when not
 * NULL) with its index. A request's array is read once to check it, then
 * again to keep it once the request is known good.
 */
typedef void kpair_fn(void *arg, int32_t i, const char *s, int32_t sl, const uint8_t *b, int32_t bl);

static void read_pairs(spw_kr *r, int32_t n, kpair_fn *each, void *arg)
{
    for (int32_t i = 0; i < n && !r->bad; i++) {
        const char *s;
        int32_t sl;
        const uint8_t *b;
        int32_t bl;
        spw_kr_str(r, &s, &sl);
        spw_kr_bytes(r, &b, &bl);
        if (each && !r->bad)
            each(arg, i, s, sl, b, bl);
    }
}

/* A member's protocol i: its name and metadata. */
static void keep_protocol(void *arg, int32_t i, const char *n, int32_t nl, const uint8_t *b, int32_t bl)
{
    kmember *m = arg;
    m->proto_names[i] = spw_xmalloc((size_t)(nl > 0 ? nl : 0) + 1);
    if (nl > 0)
        memcpy(m->proto_names[i], n, (size_t)nl);
    m->proto_names[i][nl > 0 ? nl : 0] = 0;
    if (bl > 0)
        spw_buf_put(&m->proto_meta[i], b, (size_t)bl);
}

/* The leader's assignment for the member named (unknown names ignored). */
static void keep_assignment(void *arg, int32_t i, const char *n, int32_t nl, const uint8_t *b, int32_t bl)
{
    (void)i;
    kmember *x = member_get(arg, n, nl);
    if (x) {
        x->assignment.len = 0;
        if (bl > 0)
            spw_buf_put(&x->assignment, b, (size_t)bl);
    }
}

void spw__k_join_group(kconn *c, kreq *q, spw_kr *r)
{
    int v = q->api_version;
    spw_kgroups *kg = c->loop->srv->kg;
    const char *gn, *mid, *ptype;
    int32_t gl, ml, pl;
    spw_kr_str(r, &gn, &gl);
    int32_t session = spw_kr_i32(r);
    int32_t rebalance = v >= 1 ? spw_kr_i32(r) : session;
    spw_kr_str(r, &mid, &ml);
    if (v >= 5) {
        const char *gi;
        int32_t gil;
        spw_kr_str(r, &gi, &gil); /* static membership: not kept */
    }
    spw_kr_str(r, &ptype, &pl);
    int32_t np = spw_kr_array(r, 6);
    spw_kr save = *r;
    read_pairs(r, np, NULL, NULL); /* checked before anything changes */
    int16_t err = 0;
    if (r->bad || np <= 0 || !ptype)
        err = KERR_INVALID_REQUEST;
    else if (!name_ok(gn, gl))
        err = KERR_INVALID_GROUP_ID;
    else if (session < 1000 || session > 3600000 || rebalance < 0)
        err = KERR_INVALID_SESSION_TIMEOUT;
    else {
        const spw_token *who;
        if (!spw__k_who(c, &who))
            err = 30; /* GROUP_AUTHORIZATION_FAILED: no SASL/PLAIN login */
    }
    if (err) {
        join_now(q, err);
        return;
    }
    uint64_t now = spw_mono_ms();
    pthread_mutex_lock(&kg->mu);
    kgroup *g = group_get(kg, gn, gl, 1);
    kmember *m = NULL;
    if (ml > 0) {
        m = member_get(g, mid, ml);
        if (!m)
            err = KERR_UNKNOWN_MEMBER_ID;
    }
    if (!err && !m && spw_svc_group_resetting(g->name)) {
        spw_info("kafka: a JoinGroup of consumer group %s waits: the group is being reset", g->name);
        err = KERR_COORDINATOR_LOAD_IN_PROGRESS;
    }
    if (!err && g->members && g->protocol_type[0] &&
        ((int32_t)strlen(g->protocol_type) != pl || memcmp(g->protocol_type, ptype, (size_t)pl) != 0))
        err = KERR_INCONSISTENT_GROUP_PROTOCOL;
    if (err) {
        pthread_mutex_unlock(&kg->mu);
        join_now(q, err);
        return;
    }
    if (!m) {
        m = spw_xcalloc(1, sizeof *m);
        char cid[32] = "member";
        snprintf(m->id, sizeof m->id, "%s-%" PRIu64 "-%" PRIx64, cid, ++kg->next_member,
                 (uint64_t)spw_wall_ms() & 0xffffffu);
        m->next = g->members;
        g->members = m;
        g->nmembers++;
        if (!g->members->next || !g->leader[0])
            snprintf(g->leader, sizeof g->leader, "%s", m->id);
    }
    snprintf(g->protocol_type, sizeof g->protocol_type, "%.*s", (int)(pl < 63 ? pl : 63), ptype);
    m->session_ms = (uint32_t)session;
    m->rebalance_ms = (uint32_t)rebalance;
    m->last_seen_ms = now;
    for (uint32_t i = 0; i < m->nprotos; i++) {
        spw_free(m->proto_names[i]);
        spw_buf_fini(&m->proto_meta[i]);
    }
    spw_free(m->proto_names);
    spw_free(m->proto_meta);
    m->nprotos = (uint32_t)np;
    m->proto_names = spw_xcalloc((size_t)np, sizeof *m->proto_names);
    m->proto_meta = spw_xcalloc((size_t)np, sizeof *m->proto_meta);
    *r = save;
    read_pairs(r, np, keep_protocol, m);
    if (m->join.q) /* an earlier JoinGroup of the same member: superseded */
        join_error(&m->join, KERR_REBALANCE_IN_PROGRESS);
    if (m->sync.q)
        sync_answer(&m->sync, KERR_REBALANCE_IN_PROGRESS, NULL);
    park(&m->join, c, q);
    start_rebalance(g, now);
    check_join(g);
    pthread_mutex_unlock(&kg->mu);
}

void spw__k_sync_group(kconn *c, kreq *q, spw_kr *r)
{
    int v = q->api_version;
    spw_kgroups *kg = c->loop->srv->kg;
    const char *gn, *mid;
    int32_t gl, ml;
    spw_kr_str(r, &gn, &gl);
    int32_t gen = spw_kr_i32(r);
    spw_kr_str(r, &mid, &ml);
    if (v >= 3) {
        const char *gi;
        int32_t gil;
        spw_kr_str(r, &gi, &gil);
    }
    int32_t na = spw_kr_array(r, 6);
    spw_kr save = *r;
    read_pairs(r, na, NULL, NULL); /* checked before anything changes */
    int16_t err = r->bad ? KERR_INVALID_REQUEST : 0;
    pthread_mutex_lock(&kg->mu);
    kgroup *g = err ? NULL : group_get(kg, gn, gl, 0);
    kmember *m = g ? member_get(g, mid, ml) : NULL;
    if (!err && !m)
        err = KERR_UNKNOWN_MEMBER_ID;
    else if (!err && gen != g->generation)
        err = KERR_ILLEGAL_GENERATION;
    else if (!err && g->state == KG_JOINING)
        err = KERR_REBALANCE_IN_PROGRESS;
    if (err) {
        pthread_mutex_unlock(&kg->mu);
        sync_now(q, err, NULL);
        return;
    }
    m->last_seen_ms = spw_mono_ms();
    if (g->state == KG_SYNCING && strcmp(m->id, g->leader) == 0) {
        *r = save;
        read_pairs(r, na, keep_assignment, g);
        g->state = KG_STABLE;
        for (kmember *x = g->members; x; x = x->next)
            if (x->sync.q)
                sync_answer(&x->sync, 0, &x->assignment);
    }
    if (g->state == KG_STABLE) {
        sync_now(q, 0, &m->assignment);
    } else {
        if (m->sync.q)
            sync_answer(&m->sync, KERR_REBALANCE_IN_PROGRESS, NULL);
        park(&m->sync, c, q); /* until the leader's assignment */
    }
    pthread_mutex_unlock(&kg->mu);
}

void spw__k_heartbeat(kconn *c, kreq *q, spw_kr *r)
{
    int v = q->api_version;
    spw_kgroups *kg = c->loop->srv->kg;
    const char *gn, *mid;
    int32_t gl, ml;
    spw_kr_str(r, &gn, &gl);
    int32_t gen = spw_kr_i32(r);
    spw_kr_str(r, &mid, &ml);
    int16_t err = r->bad ? KERR_INVALID_REQUEST : 0;
    pthread_mutex_lock(&kg->mu);
    kgroup *g = err ? NULL : group_get(kg, gn, gl, 0);
    kmember *m = g ? member_get(g, mid, ml) : NULL;
    if (!err && !m)
        err = KERR_UNKNOWN_MEMBER_ID;
    if (!err) {
        m->last_seen_ms = spw_mono_ms();
        if (g->state == KG_JOINING)
            err = KERR_REBALANCE_IN_PROGRESS;
        else if (gen != g->generation)
            err = KERR_ILLEGAL_GENERATION;
    }
    pthread_mutex_unlock(&kg->mu);
    simple_answer(q, err, v >= 1);
}

void spw__k_leave_group(kconn *c, kreq *q, spw_kr *r)
{
    int v = q->api_version;
    spw_kgroups *kg = c->loop->srv->kg;
    const char *gn, *mid;
    int32_t gl, ml;
    spw_kr_str(r, &gn, &gl);
    spw_kr_str(r, &mid, &ml);
    int16_t err = r->bad ? KERR_INVALID_REQUEST : 0;
    pthread_mutex_lock(&kg->mu);
    kgroup *g = err ? NULL : group_get(kg, gn, gl, 0);
    kmember *m = g ? member_get(g, mid, ml) : NULL;
    if (!err && !m)
        err = KERR_UNKNOWN_MEMBER_ID;
    if (!err) {
        spw_info("Kafka group %s: member %s left", g->name, m->id);
        member_remove(g, m);
        if (g->members) {
            start_rebalance(g, spw_mono_ms());
            check_join(g);
        } else {
            g->state = KG_EMPTY;
        }
    }
    pthread_mutex_unlock(&kg->mu);
    simple_answer(q, err, v >= 1);
}

/* Is (generation, member) current in group gn? 0 or the error. A
 * generation of -1 is a commit from outside the group protocol. */
static int16_t member_check(spw_kgroups *kg, const char *gn, int32_t gl, int32_t gen, const char *mid, int32_t ml)
{
    if (gen < 0)
        return 0;
    int16_t err = 0;
    pthread_mutex_lock(&kg->mu);
    kgroup *g = group_get(kg, gn, gl, 0);
    kmember *m = g ? member_get(g, mid, ml) : NULL;
    if (!m)
        err = KERR_UNKNOWN_MEMBER_ID;
    else if (gen != g->generation)
        err = KERR_ILLEGAL_GENERATION;
    else if (g->state == KG_SYNCING) /* as Kafka: a commit of the generation still holds while members rejoin */
        err = KERR_REBALANCE_IN_PROGRESS;
    if (m)
        m->last_seen_ms = spw_mono_ms();
    pthread_mutex_unlock(&kg->mu);
    return err;
}

/* ---- OffsetCommit / OffsetFetch over the consumer-group store ---- */

typedef struct kcommit {
    kconn *c;
    kreq *q;
    uint32_t pending;
    int failed;
} kcommit;

static void commit_saved(void *arg, int err)
{
    kcommit *k = arg;
    if (err)
        k->failed = 1;
    if (--k->pending > 0)
        return;
    kconn *c = k->c;
    kreq *q = k->q;
    c->inflight--;
    c->loop->inflight--;
    if (k->failed) { /* the file could not be saved: every partition says so */
        spw_buf *o = &q->out;
        spw_kr r;
        spw_kr_init(&r, o->p, o->len);
        (void)spw_kr_i32(&r);
        if (q->api_version >= 3)
            (void)spw_kr_i32(&r);
        int32_t nt = spw_kr_i32(&r);
        for (int32_t t = 0; t < nt && !r.bad; t++) {
            const char *n;
            int32_t l;
            spw_kr_str(&r, &n, &l);
            int32_t np = spw_kr_i32(&r);
            for (int32_t i = 0; i < np && !r.bad; i++) {
                (void)spw_kr_i32(&r);
                size_t at = (size_t)(r.p - o->p);
                (void)spw_kr_i16(&r);
                if (!r.bad && o->p[at] == 0 && o->p[at + 1] == 0) {
                    o->p[at] = 0;
                    o->p[at + 1] = KERR_KAFKA_STORAGE_ERROR;
                }
            }
        }
    }
    q->ready = 1;
    spw__kq_flush(c);
    spw_free(k);
}

void spw__k_offset_commit(kconn *c, kreq *q, spw_kr *r)
{
    int v = q->api_version;
    spw_svc *svc = c->loop->srv->svc;
    const char *gn, *mid = NULL;
    int32_t gl, ml = 0, gen = -1;
    spw_kr_str(r, &gn, &gl);
    if (v >= 1) {
        gen = spw_kr_i32(r);
        spw_kr_str(r, &mid, &ml);
    }
    if (v >= 2 && v <= 4)
        (void)spw_kr_i64(r); /* retention: offsets are kept as long as the group */
    if (v >= 7) {
        const char *gi;
        int32_t gil;
        spw_kr_str(r, &gi, &gil);
    }
    int16_t gerr = 0;
    if (!name_ok(gn, gl))
        gerr = KERR_INVALID_GROUP_ID;
    else if (!svc->groups)
        gerr = KERR_COORDINATOR_NOT_AVAILABLE;
    else if (!r->bad)
        gerr = member_check(c->loop->srv->kg, gn, gl, gen, mid, ml);
    char gname[SPW_GROUP_NAME_MAX + 1] = "";
    if (!gerr)
        snprintf(gname, sizeof gname, "%.*s", (int)gl, gn);
    kcommit *k = spw_xcalloc(1, sizeof *k);
    k->c = c;
    k->q = q;
    k->pending = 1;
    spw_buf *o = &q->out;
    spw__kq_begin(q);
    if (v >= 3)
        spw_kw_i32(o, 0);
    int32_t nt = spw_kr_array(r, 6);
    spw_kw_i32(o, nt < 0 ? 0 : nt);
    for (int32_t t = 0; t < nt && !r->bad; t++) {
        const char *n;
        int32_t l;
        spw_kr_str(r, &n, &l);
        int32_t np = spw_kr_array(r, 14);
        spw_kw_str(o, n, l);
        spw_kw_i32(o, np < 0 ? 0 : np);
        int16_t serr = gerr;
        spw_stream *s = NULL;
        spw_group *g = NULL;
        if (!serr && !r->bad)
            s = spw__k_stream(c, n, l, SPW_PERM_CONSUME, &serr);
        int fresh = 0; /* a new group: saved below with the commits, off the loop */
        if (s && spw_consume_poll_group(svc->groups, s, gname, 0, &g, &fresh))
            serr = KERR_KAFKA_STORAGE_ERROR;
        int dirty = fresh;
        for (int32_t i = 0; i < np && !r->bad; i++) {
            int32_t part = spw_kr_i32(r);
            int64_t off = spw_kr_i64(r);
            if (v == 1)
                (void)spw_kr_i64(r); /* commit timestamp */
            if (v >= 6)
                (void)spw_kr_i32(r); /* leader epoch */
            const char *md;
            int32_t mdl;
            spw_kr_str(r, &md, &mdl); /* metadata: not kept */
            int16_t err = serr;
            if (!err && (part < 0 || (uint32_t)part >= s->cfg.partitions))
                err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
            if (!err && (off < 0 || spw_group_set_committed(g, (uint32_t)part, (uint64_t)off)))
                err = KERR_OFFSET_OUT_OF_RANGE;
            if (!err)
                dirty = 1;
            spw_kw_i32(o, part);
            spw_kw_i16(o, err);
        }
        if (dirty) {
            k->pending++;
            spw_consume_commit_saved(svc->groups, g, spw__kloop_post, c->loop, commit_saved, k);
        }
        if (s)
            spw_stream_put(s);
    }
    if (r->bad) {
        o->len = 0;
        spw__kq_begin(q);
        if (v >= 3)
            spw_kw_i32(o, 0);
        spw_kw_i32(o, 0);
    }
    c->inflight++;
    c->loop->inflight++;
    commit_saved(k, 0); /* the decoder's own count */
}

void spw__k_offset_fetch(kconn *c, kreq *q, spw_kr *r)
{
    int v = q->api_version;
    spw_svc *svc = c->loop->srv->svc;
    const char *gn;
    int32_t gl;
    spw_kr_str(r, &gn, &gl);
    int16_t gerr = !name_ok(gn, gl) ? KERR_INVALID_GROUP_ID : !svc->groups ? KERR_COORDINATOR_NOT_AVAILABLE : 0;
    spw_groups *gs = svc->groups ? spw_consume_groups(svc->groups) : NULL;
    char gname[SPW_GROUP_NAME_MAX + 1] = "";
    if (!gerr)
        snprintf(gname, sizeof gname, "%.*s", (int)gl, gn);
    spw_buf *o = &q->out;
    spw__kq_begin(q);
    if (v >= 3)
        spw_kw_i32(o, 0);
    int32_t nt = spw_kr_array(r, 6);
    /* A null list (every topic the group has) is answered with none. */
    spw_kw_i32(o, nt < 0 ? 0 : nt);
    for (int32_t t = 0; t < nt && !r->bad; t++) {
        const char *n;
        int32_t l;
        spw_kr_str(r, &n, &l);
        int32_t np = spw_kr_array(r, 4);
        spw_kw_str(o, n, l);
        spw_kw_i32(o, np < 0 ? 0 : np);
        int16_t serr = gerr;
        spw_stream *s = NULL;
        if (!serr && !r->bad)
            s = spw__k_stream(c, n, l, SPW_PERM_CONSUME, &serr);
        spw_group *g = s ? spw_group_find(gs, s->cfg.name, s->incarnation, gname, 0, 0, NULL, NULL) : NULL;
        uint32_t gn_parts = g ? spw_group_nparts(g) : 0;
        spw_group_part_info *info = gn_parts ? spw_xcalloc(gn_parts, sizeof *info) : NULL;
        if (g)
            spw_group_info(g, info, gn_parts, 0);
        for (int32_t i = 0; i < np && !r->bad; i++) {
            int32_t part = spw_kr_i32(r);
            int64_t off = -1;
            if (!serr && g && part >= 0 && (uint32_t)part < gn_parts)
                off = (int64_t)info[part].committed;
            spw_kw_i32(o, part);
            spw_kw_i64(o, off);
            if (v >= 5)
                spw_kw_i32(o, -1);
            spw_kw_str(o, "", 0);
            spw_kw_i16(o, serr);
        }
        spw_free(info);
        if (s)
            spw_stream_put(s);
    }
    if (v >= 2)
        spw_kw_i16(o, r->bad ? KERR_INVALID_REQUEST : gerr);
    q->ready = 1;
}
