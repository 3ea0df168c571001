/*
 * Dedupe keys across tenants (docs/api.md "Idempotency",
 * docs/formats/dedupe-secret.md), against `spillway serve` with a tokens
 * file of two tenants that both produce to one stream:
 *  - globex sends a request under acme's producer id and sequence (a key
 *    it crafted to match acme's), then acme sends its request: acme's is
 *    appended, not answered as globex's duplicate (the tenant is in every
 *    key);
 *  - the same for an HTTP Idempotency-Key both tenants use;
 *  - DATA/dedupe.secret is made at the first start, 16 bytes, mode 0600,
 *    and kept: after a restart it is unchanged and acme's retry of its
 *    request is still answered as a duplicate (the keys rebuilt from the
 *    log are under the same secret); one of another size stops the
 *    server (exit 1) with a sentence naming it.
 */
#include <sys/stat.h>

#include "server.h"
#include "spillway.h"
#include "client/client_int.h"

static const char *BIN;
#define ACME "acme-token-1111111111111111"
#define GLOBEX "globex-token-2222222222222222"

static _Atomic int ok_count, err_count;
static void on_delivery(void *opaque, const spillway_delivery *d)
{
    (void)opaque;
    if (d->status == 0)
        ok_count++;
    else
        err_count++;
}

static uint64_t total(int port)
{
    resp r = http_ex(port, "GET", "/v1/streams/shared", NULL, "Authorization: Bearer " ACME "\r\n", NULL, 0);
    CHECK_EQ(r.status, 200);
    uint64_t n = 0;
    for (char *p = r.body; (p = strstr(p, "\"end_offset\":")) != NULL; p++)
        n += strtoull(p + 13, NULL, 10);
    free(r.body);
    return n;
}

/* One record from token's tenant under producer id pid, sequence 0. */
static void send_as(int binport, const char *token, uint64_t pid)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
    spillway_producer_config c;
    spillway_producer_config_init(&c);
    c.token = token;
    c.linger_ms = 0;
    c.on_delivery = on_delivery;
    spillway_producer *p;
    CHECK_EQ(spillway_producer_new(addr, &c, &p), 0);
    spw__producer_set_id(p, pid);
    spw__producer_set_next_seq(p, 0);
    CHECK_EQ(spillway_producer_send(p, "shared", "k", 1, "{\"v\":1}", 7, 0, SPILLWAY_ACK_LEVEL_FSYNC, NULL), 0);
    CHECK_EQ(spillway_producer_flush(p, 10000), 0);
    spillway_producer_close(p, 1000);
}

static int http_idem(int port, const char *token, const char *key)
{
    char extra[300];
    snprintf(extra, sizeof extra, "Authorization: Bearer %s\r\nIdempotency-Key: %s\r\n", token, key);
    resp r = http_ex(port, "POST", "/v1/streams/shared/events?ack=fsync", "application/json", extra, "{\"v\":2}", 7);
    int st = r.status;
    free(r.body);
    return st;
}

static void read_secret(const char *data, uint8_t out[16])
{
    char p[4300];
    snprintf(p, sizeof p, "%s/dedupe.secret", data);
    struct stat st;
    CHECK(stat(p, &st) == 0);
    CHECK_EQ(st.st_size, 16);
    CHECK_EQ(st.st_mode & 0777, 0600);
    FILE *f = fopen(p, "rb");
    CHECK(f != NULL);
    CHECK_EQ(fread(out, 1, 16, f), 16);
    fclose(f);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    signal(SIGPIPE, SIG_IGN);
    char *tmp = spw_test_tmpdir("ddten");
    char tokens[4200], data[4200];
    snprintf(tokens, sizeof tokens, "%s/tokens.json", tmp);
    snprintf(data, sizeof data, "%s/data", tmp);
    FILE *f = fopen(tokens, "w");
    CHECK(f != NULL);
    fprintf(f, "{\"tokens\":[{\"token\":\"" ACME "\",\"tenant\":\"acme\",\"streams\":[\"*\"],"
               "\"permissions\":[\"produce\",\"consume\",\"admin\"]},"
               "{\"token\":\"" GLOBEX "\",\"tenant\":\"globex\",\"streams\":[\"shared\"],"
               "\"permissions\":[\"produce\"]}]}\n");
    CHECK(fclose(f) == 0);
    CHECK(chmod(tokens, 0600) == 0);
    srv s;
    const char *args[] = {"--tokens-file", tokens, NULL};
    srv_start(&s, BIN, data, args);
    uint8_t sec1[16], sec2[16];
    read_secret(data, sec1);
    resp r = http_ex(s.port, "PUT", "/v1/streams/shared", "application/json", "Authorization: Bearer " ACME "\r\n",
                     "{\"partitions\":1}", 16);
    CHECK_EQ(r.status, 201);
    free(r.body);

    const uint64_t pid = 0x5eed5eed5eed5eedull;
    send_as(s.binport, GLOBEX, pid); /* the crafted one first */
    send_as(s.binport, ACME, pid);
    CHECK_EQ(err_count, 0);
    CHECK_EQ(ok_count, 2);
    CHECK_EQ(total(s.port), 2); /* acme's was appended, not taken for globex's duplicate */
    send_as(s.binport, ACME, pid); /* acme's own retry: a duplicate */
    CHECK_EQ(total(s.port), 2);

    CHECK(http_idem(s.port, GLOBEX, "order-1") / 100 == 2);
    CHECK(http_idem(s.port, ACME, "order-1") / 100 == 2);
    CHECK_EQ(total(s.port), 4);

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    srv_start(&s, BIN, data, args);
    read_secret(data, sec2);
    CHECK(memcmp(sec1, sec2, 16) == 0);
    send_as(s.binport, ACME, pid); /* still known after the restart */
    CHECK(http_idem(s.port, ACME, "order-1") / 100 == 2);
    CHECK_EQ(total(s.port), 4);
    CHECK_EQ(err_count, 0);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);

    /* a damaged secret stops the server with a sentence naming it */
    char p[4300], cmd[9000], out[4300];
    snprintf(p, sizeof p, "%s/dedupe.secret", data);
    CHECK(truncate(p, 5) == 0);
    snprintf(out, sizeof out, "%s/start.err", tmp);
    snprintf(cmd, sizeof cmd, "timeout 30 %s serve --data %s --listen 127.0.0.1:0 --listen-bin off 2>%s", BIN, data,
             out);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    FILE *ef = fopen(out, "r");
    CHECK(ef != NULL);
    char line[2048];
    int said = 0;
    while (!said && fgets(line, sizeof line, ef))
        said = strstr(line, "dedupe.secret holds 5 bytes") != NULL;
    fclose(ef);
    CHECK(said);
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_dedupe_tenants: ok\n");
    return 0;
}
