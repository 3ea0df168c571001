/* Consumer-group administration: see group_admin.h. */
#include "svc/group_admin.h"

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/msg.h"

/* ---- other front ends' members ---- */

#define MEMBERS_HOOKS_MAX 8

static pthread_mutex_t hooks_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    spw_group_members_fn fn;
    void *arg;
} hooks[MEMBERS_HOOKS_MAX];

void spw_svc_group_members_register(spw_group_members_fn fn, void *arg)
{
    pthread_mutex_lock(&hooks_mu);
    for (int i = 0; i < MEMBERS_HOOKS_MAX; i++)
        if (!hooks[i].fn) {
            hooks[i].fn = fn;
            hooks[i].arg = arg;
            break;
        }
    pthread_mutex_unlock(&hooks_mu);
}

void spw_svc_group_members_unregister(void *arg)
{
    pthread_mutex_lock(&hooks_mu);
    for (int i = 0; i < MEMBERS_HOOKS_MAX; i++)
        if (hooks[i].fn && hooks[i].arg == arg)
            hooks[i].fn = NULL;
    pthread_mutex_unlock(&hooks_mu);
}

/* ---- resets running (spw_svc_group_resetting) ---- */

#define RESETS_MAX 64

static pthread_mutex_t resets_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t resets_cv = PTHREAD_COND_INITIALIZER;
static char resets[RESETS_MAX][SPW_GROUP_NAME_MAX + 1]; /* "" = free */

void (*spw_svc_group_reset_test_pause)(const char *group);

int spw_svc_group_resetting(const char *group)
{
    int r = 0;
    pthread_mutex_lock(&resets_mu);
    for (int i = 0; i < RESETS_MAX && !r; i++)
        r = resets[i][0] && strcmp(resets[i], group) == 0;
    pthread_mutex_unlock(&resets_mu);
    return r;
}

/* Marks group's reset as running; returns its slot. Resets beyond
 * RESETS_MAX at once wait for a slot (each holds one for microseconds). */
static int reset_begin(const char *group)
{
    pthread_mutex_lock(&resets_mu);
    for (;;) {
        for (int i = 0; i < RESETS_MAX; i++)
            if (!resets[i][0]) {
                snprintf(resets[i], sizeof resets[i], "%s", group);
                pthread_mutex_unlock(&resets_mu);
                return i;
            }
        pthread_cond_wait(&resets_cv, &resets_mu);
    }
}

static void reset_end(int slot)
{
    pthread_mutex_lock(&resets_mu);
    resets[slot][0] = 0;
    pthread_cond_signal(&resets_cv);
    pthread_mutex_unlock(&resets_mu);
}

/* 1 with member set while a registered front end has members in group. */
static int members_elsewhere(const char *group, char *member, size_t cap)
{
    int r = 0;
    pthread_mutex_lock(&hooks_mu);
    for (int i = 0; i < MEMBERS_HOOKS_MAX && !r; i++)
        if (hooks[i].fn)
            r = hooks[i].fn(hooks[i].arg, group, member, cap);
    pthread_mutex_unlock(&hooks_mu);
    return r;
}

typedef struct collect {
    const char *stream;
    char (*names)[SPW_GROUP_NAME_MAX + 1];
    uint32_t n, cap;
} collect;

static void collect_one(void *arg, spw_group *g)
{
    collect *c = arg;
    if (strcmp(spw_group_stream(g), c->stream) != 0)
        return;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 8;
        c->names = spw_xrealloc(c->names, (size_t)c->cap * sizeof *c->names);
    }
    snprintf(c->names[c->n++], sizeof *c->names, "%s", spw_group_name(g));
}

static int by_name(const void *a, const void *b) { return strcmp(a, b); }

uint32_t spw_svc_groups_list(spw_consume *cs, spw_stream *s, spw_group_summary **out)
{
    collect c = {s->cfg.name, NULL, 0, 0};
    /* names first: spw_group_find may drop a group of an older stream,
     * which it cannot do under the registry's read lock */
    spw_groups_each(spw_consume_groups(cs), collect_one, &c);
    if (c.n)
        qsort(c.names, c.n, sizeof *c.names, by_name);
    spw_group_summary *v = spw_xcalloc((size_t)c.n + 1, sizeof *v);
    uint32_t k = 0;
    for (uint32_t i = 0; i < c.n; i++) {
        if (i && strcmp(c.names[i], c.names[i - 1]) == 0)
            continue;
        spw_group *g = spw_group_find(spw_consume_groups(cs), s->cfg.name, s->incarnation, c.names[i], 0, 0, NULL,
                                      NULL);
        if (!g)
            continue; /* of an older or newer incarnation */
        spw_consume_part *p;
        uint32_t n = spw_consume_view(s, g, &p);
        spw_group_summary *e = &v[k++];
        snprintf(e->name, sizeof e->name, "%s", c.names[i]);
        e->partitions = n;
        for (uint32_t j = 0; j < n; j++) {
            e->lag += p[j].lag;
            if (p[j].info.held) {
                e->leased++;
                if (!e->member[0])
                    snprintf(e->member, sizeof e->member, "%s", p[j].info.holder);
            }
        }
        spw_free(p);
        char m[SPW_GROUP_MEMBER_MAX + 1];
        e->members_elsewhere = members_elsewhere(e->name, m, sizeof m);
    }
    spw_free(c.names);
    *out = v;
    return k;
}

void spw_svc_groups_list_json(spw_consume *cs, spw_stream *s, spw_buf *out)
{
    spw_group_summary *v;
    uint32_t n = spw_svc_groups_list(cs, s, &v);
    spw_buf_xprintf(out, "{\"stream\":\"%s\",\"groups\":[", s->cfg.name);
    for (uint32_t i = 0; i < n; i++)
        spw_buf_xprintf(out,
                        "%s{\"group\":\"%s\",\"partitions\":%" PRIu32 ",\"lag\":%" PRIu64
                        ",\"leased_partitions\":%" PRIu32 ",\"active\":%s}",
                        i ? "," : "", v[i].name, v[i].partitions, v[i].lag, v[i].leased,
                        v[i].leased || v[i].members_elsewhere ? "true" : "false");
    spw_buf_xprintf(out, "]}");
    spw_free(v);
}

spw_sc spw_svc_group_reset(spw_consume *cs, spw_stream *s, const char *gname, spw_reset_to to, uint64_t offset,
                           int64_t partition, spw_group **gout, spw_reset_part **parts, uint32_t *nout, char *msg,
                           size_t cap)
{
    spw_group *g = spw_group_find(spw_consume_groups(cs), s->cfg.name, s->incarnation, gname, 0, 0, NULL, NULL);
    if (!g) {
        snprintf(msg, cap, "no consumer group named %s", gname);
        return SPW_SC_NO_SUCH_GROUP;
    }
    spw_consume_part *v;
    uint32_t n = spw_consume_view(s, g, &v);
    if (partition >= (int64_t)n) {
        spw_free(v);
        snprintf(msg, cap, "stream %s has partitions 0 to %" PRIu32 ", not %" PRId64, s->cfg.name, n - 1, partition);
        return SPW_SC_NO_SUCH_PARTITION;
    }
    uint64_t *at = spw_xmalloc(((size_t)n + 1) * sizeof *at);
    spw_reset_part *r = spw_xcalloc((size_t)n + 1, sizeof *r);
    spw_sc sc = SPW_SC_OK;
    for (uint32_t i = 0; i < n; i++) {
        r[i].before = r[i].after = v[i].info.committed;
        at[i] = UINT64_MAX;
        if (partition >= 0 && (uint32_t)partition != i)
            continue;
        spw_part_state st;
        spw_part_state_get(s->parts[i], &st);
        uint64_t first = st.start_offset, end = v[i].end;
        if (first > end)
            first = end;
        if (to == SPW_RESET_EARLIEST) {
            at[i] = first;
        } else if (to == SPW_RESET_LATEST) {
            at[i] = end;
        } else if (offset < first || offset > end) {
            snprintf(msg, cap,
                     "offset %" PRIu64 " is outside partition %" PRIu32 "'s stored records (%" PRIu64 " to its end %" PRIu64
                     ")",
                     offset, i, first, end);
            sc = SPW_SC_BAD_OFFSET;
            break;
        } else {
            at[i] = offset;
        }
        r[i].after = at[i];
        r[i].changed = 1;
    }
    spw_free(v);
    char other[96];
    /* Marked before the member check and until the offsets are changed: a
     * Kafka JoinGroup in between is refused (spw_svc_group_resetting). */
    int slot = reset_begin(gname);
    if (sc == SPW_SC_OK && members_elsewhere(gname, other, sizeof other)) {
        snprintf(msg, cap,
                 "consumer group %s has active members (Kafka member %s): stop its consumers, or wait until "
                 "their sessions end, then reset",
                 gname, other);
        sc = SPW_SC_GROUP_ACTIVE;
    }
    if (sc == SPW_SC_OK) {
        char holder[SPW_GROUP_MEMBER_MAX + 1] = "";
        if (spw_svc_group_reset_test_pause)
            spw_svc_group_reset_test_pause(gname);
        if (spw_group_reset(g, at, n, (int64_t)spw_mono_ms(), holder, sizeof holder) == -EBUSY) {
            snprintf(msg, cap,
                     "consumer group %s has active members (%s holds a lease): stop its consumers, or wait until "
                     "their leases expire, then reset",
                     gname, holder);
            sc = SPW_SC_GROUP_ACTIVE;
        }
    }
    reset_end(slot);
    spw_free(at);
    if (sc != SPW_SC_OK) {
        spw_free(r);
        return sc;
    }
    spw_info("stream %s: consumer group %s reset (%s%s)", s->cfg.name, gname,
             to == SPW_RESET_EARLIEST ? "to earliest" : to == SPW_RESET_LATEST ? "to latest" : "to an offset",
             partition >= 0 ? ", one partition" : "");
    *gout = g;
    *parts = r;
    *nout = n;
    return SPW_SC_OK;
}

#define RESET_BODY_MAX 4096
#define RESET_BODY_HELP "the body must be {\"to\":\"earliest\"|\"latest\"|OFFSET} with an optional \"partition\":P"

static spw_sc bad_body(char *msg, size_t cap, const char *what)
{
    snprintf(msg, cap, "%s", what);
    return SPW_SC_BAD_JSON;
}

spw_sc spw_svc_group_reset_json(spw_consume *cs, spw_stream *s, const char *gname, const char *body, size_t len,
                                spw_group **gout, spw_buf *answer, char *msg, size_t cap)
{
    const char *p = body, *end = body + len, *vend;
    spw_json_span v, k, val, to_v = {0}, part_v = {0};
    spw_json_error e;
    if (len == 0 || len > RESET_BODY_MAX || spw_json_scan(p, end, NULL, 0, &v, &vend, &e) < 0 ||
        spw_json_ws(vend, end) != end)
        return bad_body(msg, cap, RESET_BODY_HELP);
    p = spw_json_ws(p, end);
    if (*p != '{')
        return bad_body(msg, cap, RESET_BODY_HELP);
    spw_json_span obj = {p, (size_t)(vend - p), SPW_JSON_OBJECT};
    spw_json_iter it;
    spw_json_iter_init(&it, &obj);
    while (spw_json_iter_next(&it, &k, &val)) {
        if (spw_json_str_eq(&k, "to"))
            to_v = val;
        else if (spw_json_str_eq(&k, "partition"))
            part_v = val;
        else {
            snprintf(msg, cap, "unknown member %.*s: " RESET_BODY_HELP, (int)k.n, k.p);
            return SPW_SC_BAD_JSON;
        }
    }
    spw_reset_to to;
    int64_t off = 0, part = -1;
    if (to_v.type == SPW_JSON_STRING && spw_json_str_eq(&to_v, "earliest"))
        to = SPW_RESET_EARLIEST;
    else if (to_v.type == SPW_JSON_STRING && spw_json_str_eq(&to_v, "latest"))
        to = SPW_RESET_LATEST;
    else if (to_v.type == SPW_JSON_NUMBER && spw_json_int64(&to_v, &off) == 0 && off >= 0)
        to = SPW_RESET_OFFSET;
    else
        return bad_body(msg, cap, "to must be \"earliest\", \"latest\" or an offset (0 or more)");
    if (part_v.type != SPW_JSON_NONE &&
        (part_v.type != SPW_JSON_NUMBER || spw_json_int64(&part_v, &part) || part < 0 || part > UINT32_MAX))
        return bad_body(msg, cap, "partition must be a partition number (0 or more)");
    spw_reset_part *r;
    uint32_t n;
    spw_sc sc = spw_svc_group_reset(cs, s, gname, to, (uint64_t)off, part, gout, &r, &n, msg, cap);
    if (sc != SPW_SC_OK)
        return sc;
    spw_buf_xprintf(answer, "{\"stream\":\"%s\",\"group\":\"%s\",\"partitions\":[", s->cfg.name, gname);
    for (uint32_t i = 0; i < n; i++)
        spw_buf_xprintf(answer, "%s{\"partition\":%" PRIu32 ",\"before\":%" PRIu64 ",\"committed\":%" PRIu64 "}",
                        i ? "," : "", i, r[i].before, r[i].after);
    spw_buf_xprintf(answer, "]}");
    spw_free(r);
    return SPW_SC_OK;
}
