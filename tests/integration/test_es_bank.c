/*
 * examples/bank_account.c end to end, and the client library's key calls
 * over the binary protocol (KEY_EVENTS, SNAPSHOT_PUT, docs/protocol.md):
 * open, deposit, withdraw; an overdraft refused with nothing appended;
 * snapshots every 10 versions (and a rebuild that starts from one);
 * concurrent depositors that conflict and retry, ending at the exact
 * balance; spillway_client_history / spillway_client_snapshot_put's refusals.
 */
#include <libgen.h>
#include <pthread.h>

#include "server.h"
#include "spillway.h"

static char bank[4200];
static srv S;

static int run_bank(const char *args, char *out, size_t cap)
{
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "'%s' 127.0.0.1:%d accounts %s 2>&1", bank, S.binport, args);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    int st = pclose(f);
    if (getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "$ bank %s -> %d\n%s", args, WEXITSTATUS(st), out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void *depositor(void *arg)
{
    (void)arg;
    char out[4096];
    for (int i = 0; i < 10; i++)
        CHECK_EQ(run_bank("A-2 deposit 1", out, sizeof out), 0);
    return NULL;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", argv[1]);
    snprintf(bank, sizeof bank, "%s/bank_account", dirname(tmp));
    if (access(bank, X_OK) != 0) {
        printf("test_es_bank: skipped: %s not built\n", bank);
        return 77;
    }
    char *dir = spw_test_tmpdir("esbank");
    srv_start(&S, argv[1], dir, NULL);
    put_stream(S.port, "accounts", "{\"versioned\":true,\"key\":\"/account\",\"partitions\":2}");
    put_stream(S.port, "plain", "{}");
    char out[4096];
    CHECK_EQ(run_bank("A-1 balance", out, sizeof out), 1);
    CHECK_EQ(run_bank("A-1 deposit 5", out, sizeof out), 1); /* not open */
    CHECK_EQ(run_bank("A-1 open", out, sizeof out), 0);
    CHECK_EQ(run_bank("A-1 open", out, sizeof out), 1);
    CHECK_EQ(run_bank("A-1 deposit 100", out, sizeof out), 0);
    CHECK_EQ(run_bank("A-1 withdraw 30", out, sizeof out), 0);
    CHECK_EQ(run_bank("A-1 withdraw 71", out, sizeof out), 1); /* overdraft */
    CHECK(strstr(out, "overdraw") != NULL);
    CHECK_EQ(run_bank("A-1 balance", out, sizeof out), 0);
    CHECK(strstr(out, "balance 70 at version 3") != NULL);
    /* Past two snapshots (versions 10 and 20). */
    for (int i = 0; i < 18; i++)
        CHECK_EQ(run_bank("A-1 deposit 2", out, sizeof out), 0);
    CHECK_EQ(run_bank("A-1 balance", out, sizeof out), 0);
    CHECK(strstr(out, "balance 106 at version 21") != NULL);
    resp r = http_json(S.port, "GET", "/v1/streams/accounts/keys/A-1/snapshot", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"version\":20,\"state\":{\"balance\":104}") != NULL);
    free(r.body);

    /* Concurrent depositors: conflicts retried, no deposit lost or doubled. */
    CHECK_EQ(run_bank("A-2 open", out, sizeof out), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&th[i], NULL, depositor, NULL) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(run_bank("A-2 balance", out, sizeof out), 0);
    CHECK(strstr(out, "balance 40 at version 41") != NULL);

    /* The library's key calls, refused. */
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", S.binport);
    spillway_client *c;
    CHECK_EQ(spillway_client_connect(addr, 10000, &c), 0);
    spillway_history *h;
    CHECK_EQ(spillway_client_history(c, "accounts", "nobody", 6, 1, 10, &h), SPILLWAY_ERR_NOT_FOUND);
    CHECK_EQ(spillway_client_history(c, "plain", "x", 1, 1, 10, &h), SPILLWAY_ERR_BAD_REQUEST);
    CHECK(strstr(spillway_client_last_error(c), "not_versioned") != NULL);
    CHECK_EQ(spillway_client_history(c, "accounts", "A-1", 3, 1, 0, &h), SPILLWAY_ERR_INVALID);
    CHECK_EQ(spillway_client_snapshot_put(c, "accounts", "A-1", 3, 22, "{}", 2), SPILLWAY_ERR_CONFLICT);
    CHECK(strstr(spillway_client_last_error(c), "snapshot_ahead") != NULL);
    CHECK_EQ(spillway_client_snapshot_put(c, "accounts", "A-1", 3, 21, "[1]", 3), SPILLWAY_ERR_BAD_REQUEST);
    CHECK_EQ(spillway_client_snapshot_put(c, "accounts", "A-1", 3, 0, "{}", 2), SPILLWAY_ERR_BAD_REQUEST);
    /* From a version: the events, no snapshot. */
    CHECK_EQ(spillway_client_history(c, "accounts", "A-1", 3, 2, 3, &h), 0);
    CHECK_EQ(spillway_history_count(h), 3);
    CHECK_EQ(spillway_history_current_version(h), 21);
    CHECK_EQ(spillway_history_snapshot(h, NULL, NULL), 0);
    spillway_event e;
    spillway_history_get(h, 0, &e);
    CHECK_EQ(e.version, 2);
    CHECK(e.value_len > 0 && memmem(e.value, e.value_len, "\"deposited\"", 11) != NULL);
    spillway_history_free(h);
    /* From the snapshot: version 20, then event 21. */
    CHECK_EQ(spillway_client_history(c, "accounts", "A-1", 3, 0, 100, &h), 0);
    CHECK_EQ(spillway_history_snapshot(h, NULL, NULL), 20);
    CHECK_EQ(spillway_history_count(h), 1);
    spillway_history_get(h, 0, &e);
    CHECK_EQ(e.version, 21);
    spillway_history_free(h);
    spillway_client_close(c);
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_es_bank: ok");
    return 0;
}
