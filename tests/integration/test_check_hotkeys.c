/*
 * A stream's hot_keys file (docs/formats/hotkeys.md) under `spillway check`
 * and at server start:
 *   - a whole file: check counts it and finds no damage; the server routes
 *     by its split;
 *   - a byte flipped (checksum mismatch), and a file whose CRC is right but
 *     whose second entry is out of range (split 17): check reports the file
 *     DAMAGED (exit 1); the server logs the damage naming the file and
 *     starts the stream without ANY of its automatic splits ("Reads": not
 *     the entries before the bad one).
 */
#include <sys/stat.h>

#include "core/crc32c.h"
#include "core/endian.h"
#include "server.h"

static const char *BIN;

/* Writes path as a hot_keys file of the n keys with their splits; the CRC
 * is right (the entries need not be). */
static void write_hot(const char *path, int n, const char *const *keys, const uint16_t *splits)
{
    uint8_t b[1024];
    size_t at = 12;
    memcpy(b, "SPWHOTK1", 8);
    spw_put32(b + 8, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        size_t kl = strlen(keys[i]);
        double per_s = 1234.5;
        uint64_t bits;
        memcpy(&bits, &per_s, 8);
        spw_put16(b + at, (uint16_t)kl);
        spw_put16(b + at + 2, splits[i]);
        spw_put32(b + at + 4, 0);
        spw_put64(b + at + 8, (uint64_t)1700000000000LL);
        spw_put64(b + at + 16, bits);
        memcpy(b + at + 24, keys[i], kl);
        at += 24 + kl;
    }
    spw_put32(b + at, spw_crc32c(b, at));
    at += 4;
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK_EQ(fwrite(b, 1, at, f), at);
    CHECK_EQ(fclose(f), 0);
}

/* The stream's describe, while a server runs on data (log to logp). */
static char *describe(const char *data, const char *logp)
{
    srv s;
    srv_start_log(&s, BIN, data, NULL, logp);
    resp r = http(s.port, "GET", "/v1/streams/hk", NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    return r.body;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char *b = calloc(1, 1 << 20);
    CHECK(b != NULL);
    size_t n = fread(b, 1, (1 << 20) - 1, f);
    b[n] = 0;
    fclose(f);
    return b;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    signal(SIGPIPE, SIG_IGN);
    char *tmp = spw_test_tmpdir("check_hotkeys");
    char data[4096], file[4200], logp[4200];
    snprintf(data, sizeof data, "%s/d", tmp);
    mkdir(data, 0755);
    snprintf(file, sizeof file, "%s/streams/hk/hot_keys", data);
    snprintf(logp, sizeof logp, "%s/server.log", tmp);
    srv s;
    srv_start(&s, BIN, data, NULL);
    put_stream(s.port, "hk", "{\"partitions\":4,\"key\":\"/k\",\"hot_keys\":{\"split\":4,\"above_per_s\":1000000}}");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);

    /* whole */
    const char *keys[] = {"a", "b"};
    const uint16_t good[] = {4, 4}, bad[] = {4, 17};
    write_hot(file, 2, keys, good);
    cli_out o = cli_run(BIN, "check %s", data);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, " 1 hot_keys file(s): 0 damaged range(s)") != NULL);
    free(o.text);
    char *d = describe(data, NULL);
    CHECK(strstr(d, "{\"key\":\"a\",\"split\":4,\"how\":\"automatic\"") != NULL);
    CHECK(strstr(d, "{\"key\":\"b\",\"split\":4,\"how\":\"automatic\"") != NULL);
    free(d);

    /* CRC right, second entry out of range: nothing of it applies */
    write_hot(file, 2, keys, bad);
    o = cli_run(BIN, "check %s", data);
    CHECK_EQ(o.rc, 1);
    char want[4400];
    snprintf(want, sizeof want, "DAMAGED %s: bad entry", file);
    CHECK(strstr(o.text, want) != NULL);
    free(o.text);
    d = describe(data, logp);
    CHECK(strstr(d, "\"key\":\"a\"") == NULL);
    CHECK(strstr(d, "\"key\":\"b\"") == NULL);
    free(d);
    char *lg = slurp(logp);
    CHECK(strstr(lg, "hot_keys: bad entry; its automatic hot-key splits are not applied") != NULL);
    free(lg);

    /* a byte flipped */
    write_hot(file, 2, keys, good);
    FILE *f = fopen(file, "r+b");
    CHECK(f != NULL);
    CHECK_EQ(fseek(f, 12 + 24, SEEK_SET), 0); /* the first key's byte */
    fputc('z', f);
    CHECK_EQ(fclose(f), 0);
    o = cli_run(BIN, "check %s", data);
    CHECK_EQ(o.rc, 1);
    snprintf(want, sizeof want, "DAMAGED %s: checksum mismatch", file);
    CHECK(strstr(o.text, want) != NULL);
    free(o.text);
    d = describe(data, logp);
    CHECK(strstr(d, "\"how\":\"automatic\"") == NULL);
    free(d);
    lg = slurp(logp);
    CHECK(strstr(lg, "hot_keys: checksum mismatch") != NULL);
    free(lg);

    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_check_hotkeys: ok\n");
    return 0;
}
