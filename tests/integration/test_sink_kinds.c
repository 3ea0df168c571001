/*
 * The table of sink kinds (src/sink/kinds.c) as the API shows it: a PUT of
 * a kind no sink has is 400 bad_config; a PUT of a kind this build leaves
 * out (built with -DSPW_WITH_POSTGRES=OFF or -DSPW_WITH_KAFKA=OFF) is 400
 * kind_not_built naming the build option, and creates nothing (no sink in
 * GET, no directory under DATA/sinks); a kind built in is created (201).
 * The default build has every kind, so scripts/test.sh also runs this test
 * in a build with both options off (build-lite).
 */
#include <dirent.h>

#include "server.h"

#ifndef SPW_BUILT_POSTGRES
#error "CMakeLists.txt defines SPW_BUILT_POSTGRES and SPW_BUILT_KAFKA for the tests"
#endif

static const char *BIN;

/* Entries of DATA/sinks other than . and .. */
static int sink_dirs(const char *data)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/sinks", data);
    DIR *d = opendir(p);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void check_kind(int port, const char *data, const char *name, const char *body, int built,
                       const char *option)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/sinks/%s", name);
    int before = sink_dirs(data);
    resp r = http_json(port, "PUT", path, body);
    if (built) {
        CHECK_EQ(r.status, 201);
        free(r.body);
        CHECK_EQ(req_status(port, "GET", path, NULL), 200);
        CHECK_EQ(req_status(port, "DELETE", path, NULL), 204);
        return;
    }
    CHECK_EQ(r.status, 400);
    CHECK(strstr(r.body, "\"kind_not_built\""));
    CHECK(strstr(r.body, option));
    free(r.body);
    /* nothing changed */
    CHECK_EQ(req_status(port, "GET", path, NULL), 404);
    CHECK_EQ(sink_dirs(data), before);
    r = http(port, "GET", "/v1/sinks", NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    CHECK(!strstr(r.body, name));
    free(r.body);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    char *dir = spw_test_tmpdir("sinkkinds");
    srv s;
    srv_start(&s, BIN, dir, NULL);
    put_stream(s.port, "ev", "{\"partitions\":1}");

    /* a kind no sink has */
    resp r = http_json(s.port, "PUT", "/v1/sinks/x", "{\"stream\":\"ev\",\"kind\":\"nosuch\"}");
    CHECK_EQ(r.status, 400);
    CHECK(strstr(r.body, "\"bad_config\""));
    CHECK(strstr(r.body, "unknown sink kind"));
    CHECK(strstr(r.body, "forward"));
    free(r.body);
    CHECK_EQ(req_status(s.port, "GET", "/v1/sinks/x", NULL), 404);

    /* port 1 on loopback: nothing listens there; open does not wait on the target */
    check_kind(s.port, dir, "pg",
               "{\"stream\":\"ev\",\"kind\":\"postgres\",\"options\":{\"shards\":[\"host=127.0.0.1 port=1 dbname=x\"],"
               "\"table\":\"t\",\"columns\":{\"v\":\"$value\"}}}",
               SPW_BUILT_POSTGRES, "SPW_WITH_POSTGRES");
    check_kind(s.port, dir, "kf",
               "{\"stream\":\"ev\",\"kind\":\"kafka\",\"options\":{\"brokers\":\"127.0.0.1:1\",\"topic\":\"t\"}}",
               SPW_BUILT_KAFKA, "SPW_WITH_KAFKA");

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    printf("test_sink_kinds: ok (postgres %s, kafka %s)\n", SPW_BUILT_POSTGRES ? "built" : "left out",
           SPW_BUILT_KAFKA ? "built" : "left out");
    return 0;
}
