/*
 * Tokens file, token lookup and the permission checks: see auth.h and
 * docs/operations.md "Tokens".
 *
 * The parser walks the file with the strict JSON scanner (core/json.h)
 * and builds every entry before anything is published, so a bad file never
 * yields half a table. Error messages name an entry by its index and, when
 * it has a valid one, its tenant; they never quote a token.
 */
#include "svc/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/name.h"
#include "core/endian.h"
#include "core/json.h"
#include "core/msg.h"
#include "core/siphash.h"
#include "os/os.h"
#include "catalog/stream.h"

struct spw_tokens {
    _Atomic int refs;
    uint32_t n;
    spw_token *v;
    uint64_t *hash; /* hash[i] of v[i].token */
    uint32_t *slot; /* open addressing: entry index + 1, 0 = empty */
    uint32_t mask;  /* slots - 1, slots a power of two >= 2n */
    uint64_t k0, k1;
};

/* Equal bytes? Time depends on the lengths only, not on where they differ. */
static int ct_equal(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return 0;
    volatile unsigned char d = 0;
    for (size_t i = 0; i < an; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

/* ---- tables ---- */

static void tokens_free(spw_tokens *t)
{
    for (uint32_t i = 0; i < t->n; i++) {
        spw_token *e = &t->v[i];
        if (e->token) {
            /* Do not leave secrets in freed memory. */
            volatile char *s = e->token;
            for (uint32_t k = 0; k < e->token_len; k++)
                s[k] = 0;
        }
        spw_free(e->token);
        for (uint32_t k = 0; k < e->npatterns; k++)
            spw_free(e->patterns[k].text);
        spw_free(e->patterns);
    }
    spw_free(t->v);
    spw_free(t->hash);
    spw_free(t->slot);
    spw_free(t);
}

void spw_tokens_ref(spw_tokens *t) { atomic_fetch_add(&t->refs, 1); }

void spw_tokens_put(spw_tokens *t)
{
    if (t && atomic_fetch_sub(&t->refs, 1) == 1)
        tokens_free(t);
}

uint32_t spw_tokens_count(const spw_tokens *t) { return t->n; }

const spw_token *spw_tokens_find(const spw_tokens *t, const char *tok, size_t len)
{
    if (!t || t->n == 0 || len == 0 || len > SPW_TOKEN_MAX)
        return NULL;
    uint64_t h = spw_siphash24(t->k0, t->k1, tok, len);
    const spw_token *found = NULL;
    /* At most every slot once: the table is never full (slots >= 2n). */
    for (uint32_t i = (uint32_t)h & t->mask, probes = 0; probes <= t->mask; i = (i + 1) & t->mask, probes++) {
        uint32_t s = t->slot[i];
        if (!s)
            break;
        const spw_token *e = &t->v[s - 1];
        if (t->hash[s - 1] == h && ct_equal(e->token, e->token_len, tok, len))
            found = e;
    }
    return found;
}

int spw_token_sees(const spw_token *e, const char *name, size_t len)
{
    for (uint32_t i = 0; i < e->npatterns; i++) {
        const spw_stream_pattern *p = &e->patterns[i];
        if (p->prefix ? len >= p->len && memcmp(name, p->text, p->len) == 0
                      : len == p->len && memcmp(name, p->text, len) == 0)
            return 1;
    }
    return 0;
}

int spw_token_allows(const spw_token *e, unsigned perms, const char *name, size_t len)
{
    return (e->perms & perms) == perms && spw_token_sees(e, name, len);
}

const char *spw_perm_name(unsigned perm)
{
    switch (perm) {
    case SPW_PERM_PRODUCE: return "produce";
    case SPW_PERM_CONSUME: return "consume";
    case SPW_PERM_ADMIN: return "admin";
    default: return "see";
    }
}

/* ---- parsing ---- */

typedef struct perr {
    char *buf;
    size_t cap;
} perr;

static int fail(perr *pe, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(perr *pe, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pe->buf, pe->cap, fmt, ap);
    va_end(ap);
    return -1;
}

static int tenant_ok(const char *s, size_t n)
{
    if (n < 1 || n > SPW_TENANT_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!spw_name_char(s[i]))
            return 0;
    return 1;
}

/* A string member decoded into out (NUL-terminated). 0, or -1 if not a
 * string or longer than cap - 1 bytes. */
static long get_str(const spw_json_span *v, char *out, size_t cap)
{
    if (v->type != SPW_JSON_STRING)
        return -1;
    long n = spw_json_unescape(v, out, cap - 1);
    if (n < 0)
        return -1;
    out[n] = 0;
    return n;
}

/* Pattern text p[0..n) → *out. 0 or -1 with the reason in pe. */
static int parse_pattern(const char *p, size_t n, spw_stream_pattern *out, perr *pe, const char *where)
{
    int prefix = n > 0 && p[n - 1] == '*';
    size_t tl = prefix ? n - 1 : n;
    for (size_t i = 0; i < tl; i++)
        if (p[i] == '*')
            return fail(pe, "%s: stream pattern \"%.*s\": '*' may only end a pattern", where, (int)n, p);
    if (prefix) {
        for (size_t i = 0; i < tl; i++)
            if (!spw_name_char(p[i]))
                return fail(pe, "%s: stream pattern \"%.*s\" has a character stream names cannot have", where,
                            (int)n, p);
        if (tl >= SPW_STREAM_NAME_MAX)
            return fail(pe, "%s: stream pattern \"%.*s\" is longer than any stream name", where, (int)n, p);
        if (tl > 0 && p[0] == '.')
            return fail(pe, "%s: stream pattern \"%.*s\" can never match (stream names do not start with '.')",
                        where, (int)n, p);
    } else if (!spw_stream_name_ok(p, n)) {
        return fail(pe,
                    "%s: stream pattern \"%.*s\" is neither a stream name (" SPW_NAME_RULE
                    "), a prefix ending in '*', nor \"*\"",
                    where, (int)(n > 140 ? 140 : n), p);
    }
    out->text = spw_xmalloc(tl + 1);
    memcpy(out->text, p, tl);
    out->text[tl] = 0;
    out->len = (uint32_t)tl;
    out->prefix = prefix;
    return 0;
}

enum { F_TOKEN = 1, F_TENANT = 2, F_STREAMS = 4, F_PERMS = 8 };

static int parse_entry(const spw_json_span *obj, uint32_t idx, spw_token *e, perr *pe)
{
    char where[128];
    if (obj->type != SPW_JSON_OBJECT)
        return fail(pe, "tokens[%u] must be an object {\"token\",\"tenant\",\"streams\",\"permissions\"}", idx);
    /* First find the tenant, so that every message can name the entry. */
    spw_json_iter it;
    spw_json_span k, v;
    char tenant[SPW_TENANT_MAX + 1];
    snprintf(where, sizeof where, "tokens[%u]", idx);
    spw_json_iter_init(&it, obj);
    while (spw_json_iter_next(&it, &k, &v)) {
        long n;
        if (spw_json_str_eq(&k, "tenant") && (n = get_str(&v, tenant, sizeof tenant)) >= 0 &&
            tenant_ok(tenant, (size_t)n)) {
            snprintf(where, sizeof where, "tokens[%u] (tenant \"%s\")", idx, tenant);
            break;
        }
    }
    unsigned seen = 0;
    spw_json_iter_init(&it, obj);
    while (spw_json_iter_next(&it, &k, &v)) {
        unsigned f = spw_json_str_eq(&k, "token")         ? F_TOKEN
                     : spw_json_str_eq(&k, "tenant")      ? F_TENANT
                     : spw_json_str_eq(&k, "streams")     ? F_STREAMS
                     : spw_json_str_eq(&k, "permissions") ? F_PERMS
                                                          : 0;
        if (!f)
            return fail(pe, "%s: unknown member %.*s (an entry has token, tenant, streams and permissions)", where,
                        (int)(k.n > 64 ? 64 : k.n), k.p);
        if (seen & f)
            return fail(pe, "%s: member %.*s given twice", where, (int)k.n, k.p);
        seen |= f;
        if (f == F_TOKEN) {
            char buf[SPW_TOKEN_MAX + 1];
            if (v.type != SPW_JSON_STRING)
                return fail(pe, "%s: \"token\" must be a string", where);
            long n = get_str(&v, buf, sizeof buf);
            if (n < 0)
                return fail(pe, "%s: \"token\" is longer than %d bytes", where, SPW_TOKEN_MAX);
            if (n == 0)
                return fail(pe, "%s: \"token\" is empty", where);
            for (long i = 0; i < n; i++)
                if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] > 0x7e)
                    return fail(pe,
                                "%s: \"token\" may only hold visible ASCII characters (no spaces), so that it "
                                "fits an Authorization header as is",
                                where);
            e->token = spw_xmalloc((size_t)n + 1);
            memcpy(e->token, buf, (size_t)n + 1);
            e->token_len = (uint32_t)n;
            memset(buf, 0, sizeof buf);
        } else if (f == F_TENANT) {
            long n = get_str(&v, e->tenant, sizeof e->tenant);
            if (n < 0 || !tenant_ok(e->tenant, (size_t)n))
                return fail(pe, "%s: \"tenant\" must be a string of 1 to %d characters of a-z, A-Z, 0-9, '.', '_' "
                                "or '-'",
                            where, SPW_TENANT_MAX);
        } else if (f == F_STREAMS) {
            if (v.type != SPW_JSON_ARRAY)
                return fail(pe, "%s: \"streams\" must be an array of stream patterns", where);
            spw_json_iter ai;
            spw_json_span el;
            uint32_t cap = 0;
            spw_json_iter_init(&ai, &v);
            while (spw_json_iter_next(&ai, NULL, &el)) {
                char buf[SPW_STREAM_NAME_MAX + 2];
                long n = get_str(&el, buf, sizeof buf);
                if (el.type != SPW_JSON_STRING)
                    return fail(pe, "%s: \"streams\"[%u] must be a string", where, e->npatterns);
                if (n < 0)
                    return fail(pe, "%s: \"streams\"[%u] is longer than any stream name", where, e->npatterns);
                if (n == 0)
                    return fail(pe, "%s: \"streams\"[%u] is empty", where, e->npatterns);
                if (e->npatterns == cap) {
                    cap = cap ? cap * 2 : 4;
                    e->patterns = spw_xrealloc(e->patterns, cap * sizeof *e->patterns);
                }
                spw_stream_pattern *sp = &e->patterns[e->npatterns];
                if (parse_pattern(buf, (size_t)n, sp, pe, where))
                    return -1;
                e->npatterns++;
                for (uint32_t j = 0; j + 1 < e->npatterns; j++)
                    if (e->patterns[j].prefix == sp->prefix && e->patterns[j].len == sp->len &&
                        memcmp(e->patterns[j].text, sp->text, sp->len) == 0)
                        return fail(pe, "%s: stream pattern \"%s\" is listed twice", where, buf);
            }
        } else {
            if (v.type != SPW_JSON_ARRAY)
                return fail(pe, "%s: \"permissions\" must be an array of \"produce\", \"consume\", \"admin\"",
                            where);
            spw_json_iter ai;
            spw_json_span el;
            uint32_t i = 0;
            spw_json_iter_init(&ai, &v);
            while (spw_json_iter_next(&ai, NULL, &el)) {
                unsigned p = spw_json_str_eq(&el, "produce")   ? SPW_PERM_PRODUCE
                             : spw_json_str_eq(&el, "consume") ? SPW_PERM_CONSUME
                             : spw_json_str_eq(&el, "admin")   ? SPW_PERM_ADMIN
                                                               : 0;
                if (!p)
                    return fail(pe, "%s: \"permissions\"[%u] must be \"produce\", \"consume\" or \"admin\"", where,
                                i);
                if (e->perms & p)
                    return fail(pe, "%s: permission \"%s\" is listed twice", where, spw_perm_name(p));
                e->perms |= p;
                i++;
            }
        }
    }
    static const char *names[] = {"token", "tenant", "streams", "permissions"};
    for (int i = 0; i < 4; i++)
        if (!(seen & (1u << i)))
            return fail(pe, "%s: \"%s\" is missing (every entry needs token, tenant, streams and permissions)",
                        where, names[i]);
    return 0;
}

int spw_tokens_parse(const char *text, size_t len, spw_tokens **out, char *err, size_t errcap)
{
    perr pe = {err, errcap};
    spw_json_ptr root = {0};
    spw_json_span top;
    spw_json_error je;
    const char *end;
    if (spw_json_scan(text, text + len, &root, 1, &top, &end, &je))
        return fail(&pe, "not valid JSON: %s at byte %zu", je.msg, je.offset);
    if (spw_json_ws(end, text + len) != text + len)
        return fail(&pe, "data after the JSON object at byte %zu", (size_t)(end - text));
    if (top.type != SPW_JSON_OBJECT)
        return fail(&pe, "the file must hold one JSON object {\"tokens\":[...]}");
    spw_json_iter it;
    spw_json_span k, v, list = {0};
    spw_json_iter_init(&it, &top);
    while (spw_json_iter_next(&it, &k, &v)) {
        if (!spw_json_str_eq(&k, "tokens"))
            return fail(&pe, "unknown top-level member %.*s (the file holds {\"tokens\":[...]})",
                        (int)(k.n > 64 ? 64 : k.n), k.p);
        if (list.type)
            return fail(&pe, "\"tokens\" is given twice");
        if (v.type != SPW_JSON_ARRAY)
            return fail(&pe, "\"tokens\" must be an array of entries");
        list = v;
    }
    if (!list.type)
        return fail(&pe, "\"tokens\" is missing (the file holds {\"tokens\":[...]})");

    spw_tokens *t = spw_xcalloc(1, sizeof *t);
    atomic_init(&t->refs, 1);
    uint32_t cap = 0;
    spw_json_span el;
    spw_json_iter_init(&it, &list);
    while (spw_json_iter_next(&it, NULL, &el)) {
        if (t->n == cap) {
            cap = cap ? cap * 2 : 8;
            t->v = spw_xrealloc(t->v, cap * sizeof *t->v);
        }
        spw_token *e = &t->v[t->n++];
        memset(e, 0, sizeof *e);
        if (parse_entry(&el, t->n - 1, e, &pe))
            goto bad;
    }
    /* The hash table; a token given twice is refused here. */
    uint32_t slots = 8;
    while (slots < 2 * t->n)
        slots *= 2;
    t->mask = slots - 1;
    t->slot = spw_xcalloc(slots, sizeof *t->slot);
    t->hash = spw_xcalloc(t->n ? t->n : 1, sizeof *t->hash);
    uint64_t key[2];
    if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key) {
        fail(&pe, "no randomness for the lookup key: %s", strerror(errno));
        goto bad;
    }
    t->k0 = key[0];
    t->k1 = key[1];
    for (uint32_t i = 0; i < t->n; i++) {
        spw_token *e = &t->v[i];
        const spw_token *dup = spw_tokens_find(t, e->token, e->token_len);
        if (dup) {
            fail(&pe, "tokens[%u] (tenant \"%s\") has the same token as tokens[%u] (tenant \"%s\")", i, e->tenant,
                 (uint32_t)(dup - t->v), dup->tenant);
            goto bad;
        }
        t->hash[i] = spw_siphash24(t->k0, t->k1, e->token, e->token_len);
        uint32_t s = (uint32_t)t->hash[i] & t->mask;
        while (t->slot[s])
            s = (s + 1) & t->mask;
        t->slot[s] = i + 1;
    }
    *out = t;
    return 0;
bad:
    tokens_free(t);
    return -1;
}

int spw_tokens_load(const char *path, spw_tokens **out, char *err, size_t errcap)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        snprintf(err, errcap, "%s: not a regular file", path);
        return -1;
    }
    char *text;
    size_t n;
    int r = spw_os_read_file(path, SPW_TOKENS_FILE_MAX, &text, &n);
    if (r < 0) {
        snprintf(err, errcap, "%s: %s", path, r == -EFBIG ? "larger than 16 MiB" : strerror(-r));
        return -1;
    }
    char e[400];
    int rc = spw_tokens_parse(text, n, out, e, sizeof e);
    if (rc)
        snprintf(err, errcap, "%s: %s", path, e);
    memset(text, 0, n); /* the tokens' text does not outlive the load */
    spw_free(text);
    return rc;
}

/* ---- the holder ---- */

static void warn_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077))
        spw_warn("tokens file %s can be read by other users (mode %03o): chmod 600 it", path,
                 (unsigned)(st.st_mode & 0777));
}

int spw_auth_open(const char *path, spw_auth **out, char *err, size_t errcap)
{
    if (strlen(path) >= sizeof((spw_auth *)0)->path) {
        snprintf(err, errcap, "tokens file path is too long");
        return -1;
    }
    spw_tokens *t;
    if (spw_tokens_load(path, &t, err, errcap))
        return -1;
    warn_mode(path);
    spw_auth *a = spw_xcalloc(1, sizeof *a);
    snprintf(a->path, sizeof a->path, "%s", path);
    pthread_rwlock_init(&a->lock, NULL);
    a->cur = t;
    atomic_init(&a->gen, 1);
    *out = a;
    return 0;
}

int spw_auth_reload(spw_auth *a, char *err, size_t errcap)
{
    spw_tokens *t;
    if (spw_tokens_load(a->path, &t, err, errcap)) {
        atomic_fetch_add(&a->reloads_failed, 1);
        return -1;
    }
    warn_mode(a->path);
    atomic_fetch_add(&a->reloads_ok, 1);
    pthread_rwlock_wrlock(&a->lock);
    spw_tokens *old = a->cur;
    a->cur = t;
    atomic_fetch_add(&a->gen, 1);
    pthread_rwlock_unlock(&a->lock);
    spw_tokens_put(old);
    return 0;
}

void spw_auth_close(spw_auth *a)
{
    if (!a)
        return;
    spw_tokens_put(a->cur);
    pthread_rwlock_destroy(&a->lock);
    spw_free(a);
}

spw_tokens *spw_auth_acquire(spw_auth *a, uint64_t *gen)
{
    pthread_rwlock_rdlock(&a->lock);
    spw_tokens *t = a->cur;
    spw_tokens_ref(t);
    if (gen)
        *gen = atomic_load(&a->gen);
    pthread_rwlock_unlock(&a->lock);
    return t;
}

/* ---- sessions ---- */

static void session_clear(spw_auth_session *s)
{
    spw_tokens_put(s->t);
    s->t = NULL;
    s->e = NULL;
    memset(s->token, 0, s->token_len);
    s->token_len = 0;
}

int spw_auth_session_login(spw_auth *a, spw_auth_session *s, const char *tok, size_t len)
{
    session_clear(s);
    if (len == 0 || len > SPW_TOKEN_MAX)
        return -1;
    uint64_t gen;
    spw_tokens *t = spw_auth_acquire(a, &gen);
    const spw_token *e = spw_tokens_find(t, tok, len);
    if (!e) {
        spw_tokens_put(t);
        return -1;
    }
    memcpy(s->token, tok, len);
    s->token[len] = 0;
    s->token_len = (uint32_t)len;
    s->t = t;
    s->e = e;
    s->gen = gen;
    return 0;
}

const spw_token *spw_auth_session_who(spw_auth *a, spw_auth_session *s)
{
    if (!s->token_len)
        return NULL;
    if (atomic_load(&a->gen) != s->gen) {
        spw_tokens_put(s->t);
        s->t = spw_auth_acquire(a, &s->gen);
        s->e = spw_tokens_find(s->t, s->token, s->token_len);
    }
    return s->e;
}

void spw_auth_session_fini(spw_auth_session *s) { session_clear(s); }
