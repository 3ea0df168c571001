/*
 * The postgres sink's fence against a transaction of an earlier session
 * (docs/architecture.md "The postgres sink"), with a real PostgreSQL
 * server (pg.h):
 *  - a statement trigger on the target sleeps (pg_sleep) while a row is in
 *    a control table, so a group's transaction, every statement of it sent
 *    ("BEGIN; progress; INSERT; COMMIT" in one message), is still running
 *    in its backend when the server is killed (SIGKILL) and started again;
 *  - the new server's sink must not read its progress while that backend
 *    lives: it terminates it after its grace (the transaction rolls back,
 *    the server's log says so) and then sends the group again;
 *  - every event is in the table exactly once, also after the old
 *    transaction's sleep would have ended.
 * Without the fence the new sink reads the progress at once and sends the
 * group again; its progress upsert waits for the old transaction's row
 * lock, and when the sleep ends both commit: the group twice.
 */
#include "pg.h"

/* Waits (bounded) until the table holds want rows; returns its count. */
static long long wait_count(const pgsrv *pg, long long want)
{
    long long n = -1;
    for (int i = 0; i < 600 && n != want; i++) {
        n = pgsrv_num(pg, "SELECT count(*) FROM t");
        if (n != want)
            usleep(50 * 1000);
    }
    return n;
}

static long long sleeping(const pgsrv *pg)
{
    return pgsrv_num(pg, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'");
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    const char *bin = argv[1];
    CHECK(pgsrv_find() == 0);
    char *tmp = spw_test_tmpdir("pgzombie");
    static pgsrv pg;
    pgsrv_init(&pg, tmp, "pg");
    pgsrv_exec(&pg, "CREATE TABLE t (id bigint NOT NULL); CREATE TABLE slow (x int);"
                    "CREATE FUNCTION t_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "IF EXISTS (SELECT 1 FROM slow) THEN PERFORM pg_sleep(4); END IF; RETURN NULL; END $$;"
                    "CREATE TRIGGER t_slow AFTER INSERT ON t FOR EACH STATEMENT EXECUTE FUNCTION t_slow()");
    char data[4200], logp[4200], body[1024];
    snprintf(data, sizeof data, "%s/spw", tmp);
    snprintf(logp, sizeof logp, "%s/server.log", tmp);
    srv s;
    srv_start_log(&s, bin, data, NULL, logp);
    put_stream(s.port, "ev", "{\"partitions\":1}");
    snprintf(body, sizeof body,
             "{\"stream\":\"ev\",\"kind\":\"postgres\",\"batch\":{\"max_wait_ms\":10},"
             "\"retry\":{\"initial_ms\":50,\"max_ms\":200},\"options\":{\"shards\":["
             "\"host=127.0.0.1 port=%d user=postgres dbname=postgres\"],\"table\":\"t\","
             "\"columns\":{\"id\":\"/i\"}}}",
             pg.port);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/z", body), 201);
    pg_produce_http(s.port, 0, 10);
    CHECK_EQ(wait_count(&pg, 10), 10);

    /* The next group's transaction sleeps in its trigger: kill the server
     * under it and start it again. */
    pgsrv_exec(&pg, "INSERT INTO slow VALUES (1)");
    pg_produce_http(s.port, 10, 20);
    long long z = 0;
    for (int i = 0; i < 400 && z == 0; i++) {
        z = sleeping(&pg);
        if (z == 0)
            usleep(10 * 1000);
    }
    CHECK_EQ(z, 1);
    CHECK_EQ(srv_stop(&s, SIGKILL), 128 + SIGKILL);
    pgsrv_exec(&pg, "DELETE FROM slow"); /* the group sent again does not sleep */
    srv_start_log(&s, bin, data, NULL, logp);

    long long n = wait_count(&pg, 20);
    for (int i = 0; i < 200 && sleeping(&pg) > 0; i++) /* the old transaction is over */
        usleep(50 * 1000);
    CHECK_EQ(sleeping(&pg), 0);
    usleep(300 * 1000);
    n = pgsrv_num(&pg, "SELECT count(*) FROM t");
    if (n != 20)
        fprintf(stderr, "t: %lld rows, want 20 (the group written twice?)\n", n);
    CHECK_EQ(n, 20);
    CHECK_EQ(pgsrv_num(&pg, "SELECT count(DISTINCT id) FROM t"), 20);
    CHECK(srv_log_has(logp, "of an earlier connection of this sink is still running"));

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    pgsrv_stop_all();
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_pg_zombie: ok\n");
    return 0;
}
