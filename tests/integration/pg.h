/*
 * Real PostgreSQL servers for tests: initdb + pg_ctl in a temp directory,
 * a private port on 127.0.0.1, stopped by pg_ctl (also from a failed
 * CHECK: pgsrv_stop_all from a SIGABRT handler). As root, PostgreSQL runs as
 * the postgres user. Clusters are made with an explicit encoding and
 * locale (UTF8, C), never the environment's: a root shell without LANG
 * would make SQL_ASCII clusters.
 */
#ifndef SPW_TEST_PG_H
#define SPW_TEST_PG_H

#include <libpq-fe.h>
#include <pwd.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "server.h"
#include "spillway.h"

#define PG_MAX 4

typedef struct pgsrv {
    char dir[4200];
    int port;
    int started;
} pgsrv;

static char PG_BIN[256];
static pgsrv *PG_ALL[PG_MAX];
static int PG_N;

static inline int pgsrv_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int pgsrv_sh(const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "+ %s\n", cmd);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* As root, PostgreSQL runs as postgres; runuser by its path (env -i has no /usr/sbin). */
static inline const char *pgsrv_runas(void) { return geteuid() == 0 ? "/usr/sbin/runuser -u postgres -- " : ""; }

/* 0, or -1 (and a message) when PostgreSQL's server binaries are missing. */
static inline int pgsrv_find(void)
{
    FILE *f = popen("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1", "r");
    CHECK(f);
    if (!fgets(PG_BIN, sizeof PG_BIN, f))
        PG_BIN[0] = 0;
    pclose(f);
    PG_BIN[strcspn(PG_BIN, "\n")] = 0;
    char p[300];
    snprintf(p, sizeof p, "%s/initdb", PG_BIN);
    if (!PG_BIN[0] || access(p, X_OK) != 0) {
        fprintf(stderr, "PostgreSQL server binaries (initdb, pg_ctl under /usr/lib/postgresql/*/bin) are missing: "
                        "run scripts/deps.sh (installs Debian's postgresql)\n");
        return -1;
    }
    return 0;
}

static inline int pgsrv_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    socklen_t l = sizeof sa;
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &l) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* mode "fast" (clean) or "immediate" (as a crash: recovery from the WAL at the next start). */
static inline void pgsrv_stop_mode(pgsrv *s, const char *mode)
{
    if (s->started)
        pgsrv_sh("%s%s/pg_ctl -D %s -m %s -w stop >/dev/null 2>&1", pgsrv_runas(), PG_BIN, s->dir, mode);
    s->started = 0;
}

static inline void pgsrv_start(pgsrv *s)
{
    CHECK_EQ(pgsrv_sh("%s%s/pg_ctl -D %s -l %s/log -w -t 60 -o \"-p %d -k %s -c listen_addresses=127.0.0.1 "
                   "-c fsync=off\" start >/dev/null",
                   pgsrv_runas(), PG_BIN, s->dir, s->dir, s->port, s->dir),
             0);
    s->started = 1;
}

static inline void pgsrv_stop_all(void)
{
    for (int i = 0; i < PG_N; i++)
        pgsrv_stop_mode(PG_ALL[i], "fast");
}

static inline void pgsrv_on_abort(int sig)
{
    (void)sig;
    pgsrv_stop_all();
    signal(SIGABRT, SIG_DFL);
    abort();
}

/* A new cluster in DIR/NAME (encoding UTF8, locale C unless encoding says
 * otherwise), started. */
static inline void pgsrv_init_enc(pgsrv *s, const char *dir, const char *name, const char *encoding)
{
    CHECK(PG_N < PG_MAX);
    snprintf(s->dir, sizeof s->dir, "%s/%s", dir, name);
    CHECK(chmod(dir, 0755) == 0); /* the postgres user must reach it */
    CHECK(mkdir(s->dir, 0700) == 0);
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        CHECK(pw);
        CHECK(chown(s->dir, pw->pw_uid, pw->pw_gid) == 0);
    }
    CHECK_EQ(pgsrv_sh("%s%s/initdb -D %s -U postgres -A trust --no-sync --encoding=%s --locale=C >/dev/null 2>&1",
                   pgsrv_runas(), PG_BIN, s->dir, encoding),
             0);
    s->port = pgsrv_free_port();
    PG_ALL[PG_N++] = s;
    signal(SIGABRT, pgsrv_on_abort);
    pgsrv_start(s);
}

static inline void pgsrv_init(pgsrv *s, const char *dir, const char *name) { pgsrv_init_enc(s, dir, name, "UTF8"); }

static inline PGconn *pgsrv_conn(const pgsrv *s)
{
    char ci[160];
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=10", s->port);
    PGconn *c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK)
        fprintf(stderr, "%s", PQerrorMessage(c));
    CHECK(PQstatus(c) == CONNECTION_OK);
    return c;
}

static inline void pgsrv_exec(const pgsrv *s, const char *sql)
{
    PGconn *c = pgsrv_conn(s);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(c);
}

/* One number from a query (-1 if the server does not answer). */
static inline long long pgsrv_num(const pgsrv *s, const char *sql)
{
    char ci[160];
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=5", s->port);
    PGconn *c = PQconnectdb(ci);
    long long v = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            v = atoll(PQgetvalue(r, 0, 0));
        else if (getenv("SPW_TEST_VERBOSE"))
            fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    }
    PQfinish(c);
    return v;
}

/* A streaming standby of primary in DIR/NAME (pg_basebackup -R), started,
 * and the primary's commits made to wait for it (synchronous_standby_names
 * '*'; its application_name is the default, walreceiver). */
static inline void pgsrv_standby(pgsrv *s, pgsrv *primary, const char *dir, const char *name)
{
    CHECK(PG_N < PG_MAX);
    snprintf(s->dir, sizeof s->dir, "%s/%s", dir, name);
    CHECK(mkdir(s->dir, 0700) == 0);
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        CHECK(pw);
        CHECK(chown(s->dir, pw->pw_uid, pw->pw_gid) == 0);
    }
    CHECK_EQ(pgsrv_sh("%s%s/pg_basebackup -h 127.0.0.1 -p %d -U postgres -D %s -R -X stream --no-sync "
                      ">/dev/null 2>&1",
                      pgsrv_runas(), PG_BIN, primary->port, s->dir),
             0);
    s->port = pgsrv_free_port();
    PG_ALL[PG_N++] = s;
    pgsrv_start(s);
    pgsrv_exec(primary, "ALTER SYSTEM SET synchronous_standby_names = '*'");
    pgsrv_exec(primary, "SELECT pg_reload_conf()");
    /* bounded: until the standby streams as the synchronous one */
    long long n = 0;
    for (int i = 0; i < 600 && n != 1; i++) {
        n = pgsrv_num(primary, "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'");
        if (n != 1)
            usleep(50 * 1000);
    }
    CHECK_EQ(n, 1);
}

/* Promotes a standby (pg_ctl promote, waiting until it is a primary). */
static inline void pgsrv_promote(pgsrv *s)
{
    CHECK_EQ(pgsrv_sh("%s%s/pg_ctl -D %s -w -t 60 promote >/dev/null", pgsrv_runas(), PG_BIN, s->dir), 0);
}

/* The conninfo a sink definition names s by. */
static inline void pgsrv_conninfo(const pgsrv *s, char *out, size_t cap)
{
    snprintf(out, cap, "host=127.0.0.1 port=%d user=postgres dbname=postgres", s->port);
}

/* Events {"i":i} for i in [from, to) into stream ev, one HTTP request each at ack=fsync. */
static inline void pg_produce_http(int port, int from, int to)
{
    for (int i = from; i < to; i++) {
        char ev[64];
        snprintf(ev, sizeof ev, "{\"i\":%d}", i);
        CHECK(req_status(port, "POST", "/v1/streams/ev/events?ack=fsync", ev) / 100 == 2);
    }
}

/* n events: key "k<i % keys>", value {"i":i,"v":v} with v = -1 when poison(i). */
static inline void pg_produce(int binport, const char *stream, int first, int n, int keys, int poison_every)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
    spillway_producer *p;
    CHECK_EQ(spillway_producer_new(addr, NULL, &p), 0);
    char key[32], val[128];
    for (int i = first; i < first + n; i++) {
        int kl = snprintf(key, sizeof key, "k%d", i % keys);
        int v = poison_every && i % poison_every == 0 ? -1 : i % 100;
        int vl = snprintf(val, sizeof val, "{\"i\":%d,\"v\":%d,\"s\":\"tab\\there\"}", i, v);
        CHECK_EQ(spillway_producer_send(p, stream, key, kl, val, (size_t)vl, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_DEFAULT, NULL), 0);
    }
    CHECK_EQ(spillway_producer_flush(p, 60000), 0);
    spillway_producer_close(p, 1000);
}

#endif
