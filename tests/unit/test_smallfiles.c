/*
 * Every small file goes through spw_os (os/os.h spw_os_write_file_atomic,
 * spw_os_read_file), so a fault injected there reaches it: with
 * spw_os.open failing for stream.json, the catalog neither writes a new
 * definition (the create fails) nor reads a stored one (the stream is
 * skipped at open, as for any unreadable stream.json) — and with the fault
 * gone the same directory loads the stream again. The tokens file is read
 * the same way: a fault on its open fails the load with the error.
 */
#include <errno.h>
#include <string.h>

#include "core/msg.h"
#include "log/log.h"
#include "os/os.h"
#include "svc/auth.h"
#include "catalog/catalog.h"
#include "test.h"

static int fail_defs;  /* fail opens of stream.json and its temp file */
static int seen_defs;  /* opens of them the hook saw */

static int hook_open(const char *path, int flags, int mode)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    if (strcmp(b, "stream.json") == 0 || strcmp(b, "stream.json.tmp") == 0 || strcmp(b, "tokens.json") == 0) {
        seen_defs++;
        if (fail_defs)
            return -EIO;
    }
    return spw_os_default.open(path, flags, mode);
}

static uint32_t count_after_open(const char *dir)
{
    spw_log *log;
    spw_catalog *cat;
    CHECK_OK(spw_log_open(NULL, &log));
    CHECK_OK(spw_catalog_open(log, dir, 0, &cat));
    uint32_t n = spw_catalog_count(cat);
    spw_catalog_close(cat);
    spw_log_close(log);
    return n;
}

int main(void)
{
    spw_msg_set_level(SPW_MSG_ERROR + 1);
    spw_os.open = hook_open;
    char *dir = spw_test_tmpdir("smallfiles");
    spw_log *log;
    spw_catalog *cat;
    CHECK_OK(spw_log_open(NULL, &log));
    CHECK_OK(spw_catalog_open(log, dir, 0, &cat));
    spw_stream_config c;
    char err[256];
    CHECK_EQ(spw_stream_config_parse(&c, "s", "{\"partitions\":1}", 16, err, sizeof err), 0);
    /* The write: the fault reaches it. */
    fail_defs = 1;
    seen_defs = 0;
    CHECK(spw_catalog_create(cat, &c) < 0);
    CHECK(seen_defs > 0);
    fail_defs = 0;
    CHECK_EQ(spw_catalog_create(cat, &c), 1);
    spw_catalog_close(cat);
    spw_log_close(log);

    /* The read: the fault reaches it too (the stream is skipped). */
    fail_defs = 1;
    seen_defs = 0;
    CHECK_EQ(count_after_open(dir), 0);
    CHECK(seen_defs > 0);
    fail_defs = 0;
    CHECK_EQ(count_after_open(dir), 1);

    /* The tokens file. */
    char tp[4200];
    snprintf(tp, sizeof tp, "%s/tokens.json", dir);
    FILE *f = fopen(tp, "w");
    CHECK(f != NULL);
    fputs("{\"tokens\":[{\"token\":\"SECRET-1\",\"tenant\":\"acme\",\"streams\":[\"a\"],"
          "\"permissions\":[\"produce\"]}]}",
          f);
    CHECK(fclose(f) == 0);
    spw_tokens *t = NULL;
    char terr[512] = "";
    fail_defs = 1;
    seen_defs = 0;
    CHECK_EQ(spw_tokens_load(tp, &t, terr, sizeof terr), -1);
    CHECK(seen_defs == 1 && strstr(terr, strerror(EIO)) != NULL);
    fail_defs = 0;
    CHECK_EQ(spw_tokens_load(tp, &t, terr, sizeof terr), 0);
    spw_tokens_put(t);

    spw_os = spw_os_default;
    spw_test_rmrf(dir);
    free(dir);
    puts("test_smallfiles: ok");
    return 0;
}
