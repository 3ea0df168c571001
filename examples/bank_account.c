/*
 * The bank account of the event-sourcing literature on Spillway's client
 * library (include/spillway.h; docs/api.md "Event sourcing"):
 *
 *   bank_account HOST:PORT STREAM ACCOUNT open
 *   bank_account HOST:PORT STREAM ACCOUNT deposit AMOUNT
 *   bank_account HOST:PORT STREAM ACCOUNT withdraw AMOUNT
 *   bank_account HOST:PORT STREAM ACCOUNT balance
 *
 * STREAM is a versioned stream whose key is /account, e.g.
 *   curl -XPUT localhost:7700/v1/streams/accounts -d '{"versioned":true,"key":"/account"}'
 *
 * Each command rebuilds the account: its newest snapshot, then its events
 * after it (spillway_client_history, served by the server's index of the key);
 * decides (a withdrawal larger than the balance is refused: no overdraft);
 * and appends the new event expecting the version it rebuilt
 * (spillway_client_append). If another writer got there first the server
 * answers SPILLWAY_ERR_CONFLICT and nothing is appended: the command waits a
 * little (random, growing: writers that collided do not collide again in
 * step), rebuilds and decides again (at most 100 times). Every SNAPSHOT_EVERY versions it
 * stores a snapshot of the state, so a rebuild never replays more than
 * that many events.
 *
 * Events: {"account":A,"type":"opened"|"deposited"|"withdrawn","amount":N}.
 * Exit 0 done, 1 refused (no such account, overdraft, already open), 2 error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spillway.h"

#define SNAPSHOT_EVERY 10
#define ATTEMPTS 100

typedef struct account {
    int open;
    long long balance;
    uint64_t version; /* the last event applied */
} account;

/* A number after "name": in a small JSON text (our own events and states). */
static long long field(const char *text, size_t n, const char *name)
{
    char buf[512];
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, text, n);
    buf[n] = 0;
    const char *p = strstr(buf, name);
    return p ? strtoll(p + strlen(name), NULL, 10) : 0;
}

static int has(const void *text, size_t n, const char *needle)
{
    char buf[512];
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, text, n);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

static void apply(account *a, const spillway_event *e)
{
    if (has(e->value, e->value_len, "\"type\":\"opened\""))
        a->open = 1;
    else if (has(e->value, e->value_len, "\"type\":\"deposited\""))
        a->balance += field(e->value, e->value_len, "\"amount\":");
    else if (has(e->value, e->value_len, "\"type\":\"withdrawn\""))
        a->balance -= field(e->value, e->value_len, "\"amount\":");
    a->version = e->version;
}

/* Rebuilds the account from its snapshot and the events after it.
 * Returns 0, or an error (SPILLWAY_ERR_NOT_FOUND: no event yet). */
static int rebuild(spillway_client *c, const char *stream, const char *acct, account *a)
{
    *a = (account){0};
    uint64_t from = 0; /* 0: the snapshot first, then the events after it */
    for (int page = 0; page < 1000000; page++) {
        spillway_history *h;
        int r = spillway_client_history(c, stream, acct, (int32_t)strlen(acct), from, 1000, &h);
        if (r)
            return r;
        const void *st;
        uint32_t sl;
        uint64_t sv = spillway_history_snapshot(h, &st, &sl);
        if (from == 0 && sv) {
            a->open = 1;
            a->balance = field(st, sl, "\"balance\":");
            a->version = sv;
        }
        size_t n = spillway_history_count(h);
        for (size_t i = 0; i < n; i++) {
            spillway_event e;
            spillway_history_get(h, i, &e);
            apply(a, &e);
        }
        uint64_t current = spillway_history_current_version(h);
        spillway_history_free(h);
        if (n == 0 || a->version >= current)
            return 0;
        from = a->version + 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST:PORT STREAM ACCOUNT open|deposit N|withdraw N|balance\n", argv[0]);
        return 2;
    }
    const char *server = argv[1], *stream = argv[2], *acct = argv[3], *cmd = argv[4];
    long long amount = argc > 5 ? atoll(argv[5]) : 0;
    int is_open = strcmp(cmd, "open") == 0, is_dep = strcmp(cmd, "deposit") == 0,
        is_wd = strcmp(cmd, "withdraw") == 0, is_bal = strcmp(cmd, "balance") == 0;
    if (!(is_open || is_dep || is_wd || is_bal) || ((is_dep || is_wd) && amount <= 0)) {
        fprintf(stderr, "%s: a command is open, deposit N, withdraw N or balance (N > 0)\n", argv[0]);
        return 2;
    }
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    spillway_client *c;
    int r = spillway_client_connect(server, 10000, &c);
    if (r) {
        fprintf(stderr, "%s: %s: %s\n", argv[0], server, spillway_errstr(r));
        return 2;
    }
    int rc = 2;
    for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
        account a;
        r = rebuild(c, stream, acct, &a);
        if (r && r != SPILLWAY_ERR_NOT_FOUND) {
            fprintf(stderr, "%s: reading %s: %s (%s)\n", argv[0], acct, spillway_errstr(r), spillway_client_last_error(c));
            break;
        }
        if (is_bal) {
            if (!a.open) {
                fprintf(stderr, "%s: no account %s\n", argv[0], acct);
                rc = 1;
            } else {
                printf("%s: balance %lld at version %" PRIu64 "\n", acct, a.balance, a.version);
                rc = 0;
            }
            break;
        }
        /* Decide. */
        if (is_open && a.open) {
            fprintf(stderr, "%s: account %s is already open\n", argv[0], acct);
            rc = 1;
            break;
        }
        if (!is_open && !a.open) {
            fprintf(stderr, "%s: no account %s (open it first)\n", argv[0], acct);
            rc = 1;
            break;
        }
        if (is_wd && amount > a.balance) {
            fprintf(stderr, "%s: refused: withdrawing %lld from %s would overdraw its balance of %lld\n", argv[0],
                    amount, acct, a.balance);
            rc = 1;
            break;
        }
        char ev[256];
        snprintf(ev, sizeof ev, "{\"account\":\"%s\",\"type\":\"%s\",\"amount\":%lld}", acct,
                 is_open ? "opened" : is_dep ? "deposited" : "withdrawn", amount);
        spillway_value v = {.p = ev, .len = (uint32_t)strlen(ev)};
        uint64_t ver = 0;
        r = spillway_client_append(c, stream, acct, (int32_t)strlen(acct), &v, 1,
                              a.version ? SPILLWAY_EXPECT_VERSION_EXACT : SPILLWAY_EXPECT_VERSION_NONE, a.version,
                              SPILLWAY_ACK_LEVEL_FSYNC, &ver);
        if (r == SPILLWAY_ERR_CONFLICT) {
            /* Another writer appended first: rebuild and decide again. */
            fprintf(stderr, "%s: %s moved to version %" PRIu64 " meanwhile; retrying\n", argv[0], acct,
                    spillway_client_current_version(c));
            int cap_us = 1000 * (attempt < 10 ? attempt + 1 : 10);
            usleep((useconds_t)(rand() % cap_us));
            continue;
        }
        if (r) {
            fprintf(stderr, "%s: appending: %s (%s)\n", argv[0], spillway_errstr(r), spillway_client_last_error(c));
            break;
        }
        long long balance = a.balance + (is_dep ? amount : is_wd ? -amount : 0);
        printf("%s: %s, balance %lld at version %" PRIu64 "\n", acct, ev, balance, ver);
        if (ver % SNAPSHOT_EVERY == 0) {
            char st[64];
            snprintf(st, sizeof st, "{\"balance\":%lld}", balance);
            r = spillway_client_snapshot_put(c, stream, acct, (int32_t)strlen(acct), ver, st, (uint32_t)strlen(st));
            if (r)
                fprintf(stderr, "%s: snapshot at version %" PRIu64 " not stored: %s\n", argv[0], ver, spillway_errstr(r));
        }
        rc = 0;
        break;
    }
    spillway_client_close(c);
    return rc;
}
