/*
 * The server's log lines (docs/operations.md "Logs"):
 * - --log-format json: every line of stderr, from start through stream
 *   create and delete, a SIGHUP warning and shutdown, parses as one JSON
 *   object with the project's parser, with the stable keys ts (RFC 3339
 *   UTC), level (debug|info|warn|error) and msg, and the stream create
 *   line has component "stream";
 * - --log-level warn drops info lines and keeps warnings; the config
 *   file sets both settings too;
 * - a bad value for either is refused at start (exit 1, no listener).
 */
#include "core/json.h"
#include "server.h"

typedef struct counts {
    int lines, info, warn, created;
} counts;

/* Parses every line of path as one JSON object and counts them by level. */
static counts check_json_lines(const char *path)
{
    counts c = {0};
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char line[4096];
    spw_json_ptr ptrs[4];
    CHECK_OK(spw_json_ptr_compile(&ptrs[0], "/ts"));
    CHECK_OK(spw_json_ptr_compile(&ptrs[1], "/level"));
    CHECK_OK(spw_json_ptr_compile(&ptrs[2], "/msg"));
    CHECK_OK(spw_json_ptr_compile(&ptrs[3], "/component"));
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        CHECK(n > 0 && line[n - 1] == '\n');
        spw_json_span found[4];
        const char *end;
        spw_json_error err;
        spw_json_span root;
        spw_json_ptr rp = {0};
        CHECK(spw_json_scan(line, line + n, &rp, 1, &root, &end, &err) == 0);
        CHECK(root.type == SPW_JSON_OBJECT);
        CHECK(spw_json_ws(end, line + n) == line + n); /* one value per line */
        CHECK(spw_json_scan(line, line + n, ptrs, 4, found, &end, &err) == 0);
        CHECK(found[0].type == SPW_JSON_STRING && found[1].type == SPW_JSON_STRING &&
              found[2].type == SPW_JSON_STRING);
        char ts[64], level[16], msg[2048];
        CHECK(spw_json_unescape(&found[0], ts, sizeof ts - 1) == 24);
        ts[24] = 0;
        CHECK(ts[4] == '-' && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z');
        long ln = spw_json_unescape(&found[1], level, sizeof level - 1);
        CHECK(ln > 0);
        level[ln] = 0;
        CHECK(strcmp(level, "debug") == 0 || strcmp(level, "info") == 0 || strcmp(level, "warn") == 0 ||
              strcmp(level, "error") == 0);
        long ml = spw_json_unescape(&found[2], msg, sizeof msg - 1);
        CHECK(ml > 0);
        msg[ml] = 0;
        c.lines++;
        c.info += strcmp(level, "info") == 0;
        c.warn += strcmp(level, "warn") == 0;
        if (strstr(msg, "stream logs1: created")) {
            CHECK(found[3].type == SPW_JSON_STRING && spw_json_str_eq(&found[3], "stream"));
            CHECK(strstr(line, ",\"stream\":\"logs1\",") != NULL);
            c.created++;
        }
    }
    fclose(f);
    return c;
}

/* SIGHUP without --config logs a warning; wait until the log holds it. */
static void hup_and_wait(srv *s, const char *log, const char *needle)
{
    kill(s->pid, SIGHUP);
    for (int i = 0; i < 500; i++) {
        FILE *f = fopen(log, "r");
        char buf[65536];
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = 0;
        if (strstr(buf, needle))
            return;
        usleep(10000);
    }
    CHECK(!"the SIGHUP warning never reached the log");
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    const char *bin = argv[1];
    char *dir = spw_test_tmpdir("logs");
    char data[4200], log[4200], conf[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(log, sizeof log, "%s/json.log", dir);

    /* JSON, every level from info up */
    srv s;
    const char *json[] = {"--log-format", "json", NULL};
    srv_start_log(&s, bin, data, json, log);
    put_stream(s.port, "logs1", "{\"partitions\":2}");
    CHECK_EQ(req_status(s.port, "DELETE", "/v1/streams/logs1", NULL), 204);
    hup_and_wait(&s, log, "nothing to reload");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    counts c = check_json_lines(log);
    CHECK(c.lines >= 4);
    CHECK(c.info >= 2);
    CHECK(c.warn >= 1);
    CHECK_EQ(c.created, 1);

    /* warn and up, from the config file: no info lines, the warning kept */
    snprintf(log, sizeof log, "%s/warn.log", dir);
    snprintf(conf, sizeof conf, "%s/spillway.conf", dir);
    FILE *f = fopen(conf, "w");
    CHECK(f != NULL);
    fputs("log-format = json\nlog-level = warn\n", f);
    fclose(f);
    const char *warn[] = {"--config", conf, NULL};
    srv_start_log(&s, bin, data, warn, log);
    put_stream(s.port, "logs1", "{\"partitions\":1}");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    const char *warn2[] = {"--log-level=warn", "--log-format=json", NULL};
    srv_start_log(&s, bin, data, warn2, log);
    hup_and_wait(&s, log, "nothing to reload");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    c = check_json_lines(log);
    CHECK_EQ(c.info, 0);
    CHECK_EQ(c.created, 0);
    CHECK(c.warn >= 1);

    /* SIGHUP applies a log-level changed in the config file: warn, then
     * info, and the next stream's create line is written */
    snprintf(log, sizeof log, "%s/hup.log", dir);
    srv_start_log(&s, bin, data, warn, log);
    CHECK_EQ(req_status(s.port, "DELETE", "/v1/streams/logs1", NULL), 204);
    f = fopen(conf, "w");
    CHECK(f != NULL);
    fputs("log-format = json\nlog-level = info\n", f);
    fclose(f);
    hup_and_wait(&s, log, "SIGHUP: reloaded");
    put_stream(s.port, "logs1", "{\"partitions\":1}");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    c = check_json_lines(log);
    CHECK_EQ(c.created, 1); /* logged after the reload only */
    f = fopen(log, "r");
    char all[65536];
    size_t an = fread(all, 1, sizeof all - 1, f);
    fclose(f);
    all[an] = 0;
    CHECK(strstr(all, "stream logs1: deleted") == NULL); /* before the reload: warn and up */

    /* text stays the default: "TS LEVEL message" */
    snprintf(log, sizeof log, "%s/text.log", dir);
    srv_start_log(&s, bin, data, NULL, log);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    f = fopen(log, "r");
    CHECK(f != NULL);
    char line[2048];
    CHECK(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    CHECK(line[23] == 'Z' && strncmp(line + 24, " INFO ", 6) == 0);

    /* bad values: refused before anything listens */
    cli_out o = cli_run(bin, "serve --data %s --listen 127.0.0.1:0 --listen-bin off --log-format xml", data);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "log-format must be text or json") != NULL);
    free(o.text);
    o = cli_run(bin, "serve --data %s --listen 127.0.0.1:0 --listen-bin off --log-level loud", data);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "log-level must be debug, info, warn or error") != NULL);
    free(o.text);

    spw_test_rmrf(dir);
    free(dir);
    puts("test_logs: ok");
    return 0;
}
