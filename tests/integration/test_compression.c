/*
 * A stream's "compression" (docs/api.md "Streams"): the server writes every
 * new batch of the stream compressed with it (docs/formats/log.md, the
 * batch's attributes), and every reader decompresses: HTTP read, FETCH, after a
 * restart too. The segment files are read here to see the attributes the
 * server wrote and that compressed batches are smaller. A bad value is 400
 * and creates nothing; a PUT that differs only by compression is 409.
 */
#include <sys/stat.h>

#include "server.h"
#include "spillway.h"

#define EVENTS 300

static const char *const NAMES[3] = {"none", "lz4", "zstd"};

/* Every batch of DATA/streams/NAME/0's first segment: how many there are
 * and the set of compression codes seen (bit c for code c); *bytes: the
 * segment's size. */
static int batches(const char *data, const char *name, unsigned *codes, size_t *bytes)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/streams/%s/0/00000000000000000000.log", data, name);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    static uint8_t buf[8 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    *codes = 0;
    *bytes = 0;
    int k = 0;
    size_t pos = 0;
    while (pos + 80 <= n) {
        uint32_t len = (uint32_t)buf[pos + 8] | (uint32_t)buf[pos + 9] << 8 | (uint32_t)buf[pos + 10] << 16 |
                       (uint32_t)buf[pos + 11] << 24;
        if (len < 80 || pos + len > n)
            break; /* write-ahead zeros after the last batch */
        CHECK(buf[pos + 16] == 'S' && buf[pos + 17] == 'P' && buf[pos + 18] == 'W' && buf[pos + 19] == 'B');
        *codes |= 1u << (buf[pos + 21] & 3);
        pos += len;
        k++;
    }
    *bytes = pos;
    return k;
}

/* Each of the EVENTS values read back over HTTP, in order. */
static void read_back_http(int port, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s/events?partition=0&offset=0&limit=10000", name);
    resp r = http(port, "GET", path, NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    int n = 0;
    for (const char *p = r.body; (p = strstr(p, "\"value\":{\"i\":")) != NULL; p++) {
        CHECK_EQ(atoi(p + 13), n);
        n++;
    }
    CHECK_EQ(n, EVENTS);
    free(r.body);
}

/* FETCH over the binary protocol (the C client, records mode): the EVENTS
 * values in order. */
static void read_back_fetch(int binport, const char *name)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
    spillway_client *c;
    CHECK_EQ(spillway_client_connect(addr, 10000, &c), 0);
    uint64_t off = 0;
    for (int round = 0; round < 1000 && off < EVENTS; round++) {
        spillway_fetch_result *fr;
        CHECK_EQ(spillway_client_fetch(c, name, 0, off, 1 << 20, &fr), 0);
        size_t k = spillway_fetch_count(fr);
        for (size_t j = 0; j < k; j++) {
            spillway_fetched rec;
            spillway_fetch_get(fr, j, &rec);
            CHECK_EQ(rec.offset, off + j);
            int i = -1;
            CHECK(sscanf((const char *)rec.value, "{\"i\":%d", &i) == 1);
            CHECK_EQ(i, (int)(off + j));
        }
        off += k;
        spillway_fetch_free(fr);
        if (k == 0)
            usleep(1000);
    }
    CHECK_EQ(off, (uint64_t)EVENTS);
    spillway_client_close(c);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    signal(SIGPIPE, SIG_IGN);
    char *tmp = spw_test_tmpdir("compression");
    char data[4096 + 16];
    snprintf(data, sizeof data, "%s/data", tmp);
    srv a;
    srv_start(&a, argv[1], data, NULL);

    /* Bad values: 400 bad_config-style refusal, nothing created. */
    resp r = http_json(a.port, "PUT", "/v1/streams/bad", "{\"partitions\":1,\"compression\":\"gzip\"}");
    CHECK_EQ(r.status, 400);
    CHECK(strstr(r.body, "compression") != NULL);
    free(r.body);
    r = http_json(a.port, "PUT", "/v1/streams/bad", "{\"partitions\":1,\"compression\":1}");
    CHECK_EQ(r.status, 400);
    free(r.body);
    CHECK_EQ(req_status(a.port, "GET", "/v1/streams/bad", NULL), 404);

    /* One stream per codec; the definition shows it (none is the default,
     * not written out). */
    for (int c = 0; c < 3; c++) {
        char body[128], path[64];
        snprintf(body, sizeof body, "{\"partitions\":1,\"compression\":\"%s\"}", NAMES[c]);
        snprintf(path, sizeof path, "/v1/streams/c_%s", NAMES[c]);
        put_stream(a.port, path + 12, body);
        r = http(a.port, "GET", path, NULL, NULL, 0);
        CHECK_EQ(r.status, 200);
        char want[64];
        snprintf(want, sizeof want, "\"compression\":\"%s\"", NAMES[c]);
        CHECK((strstr(r.body, want) != NULL) == (c != 0));
        free(r.body);
        /* The same definition again: 200; another compression: 409. */
        r = http_json(a.port, "PUT", path, body);
        CHECK_EQ(r.status, 200);
        free(r.body);
        snprintf(body, sizeof body, "{\"partitions\":1,\"compression\":\"%s\"}", NAMES[(c + 1) % 3]);
        r = http_json(a.port, "PUT", path, body);
        CHECK_EQ(r.status, 409);
        free(r.body);
    }

    /* Compressible events, in several requests (several batches). */
    for (int c = 0; c < 3; c++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/streams/c_%s/events", NAMES[c]);
        path[strlen(path) - 7] = 0; /* path + 12: the stream's name */
        for (int q = 0; q < EVENTS / 50; q++) {
            char body[50 * 200];
            size_t n = 0;
            for (int i = q * 50; i < q * 50 + 50; i++)
                n += (size_t)snprintf(body + n, sizeof body - n,
                                      "{\"i\":%d,\"device\":\"sensor-0000000000000000000000000000000000\","
                                      "\"reading\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}\n",
                                      i);
            char post[64];
            snprintf(post, sizeof post, "%s/events", path);
            r = http(a.port, "POST", post, "application/x-ndjson", body, n);
            CHECK_EQ(r.status, 202);
            free(r.body);
        }
        read_back_http(a.port, path + 12);
        read_back_fetch(a.binport, path + 12);
    }
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);

    /* What the server wrote: each stream's batches carry its code only, and
     * the compressed segments are smaller than the uncompressed one. */
    size_t sz[3];
    for (int c = 0; c < 3; c++) {
        char name[16];
        snprintf(name, sizeof name, "c_%s", NAMES[c]);
        unsigned codes;
        int k = batches(data, name, &codes, &sz[c]);
        CHECK(k >= EVENTS / 50);
        CHECK_EQ(codes, 1u << c);
    }
    CHECK(sz[1] < sz[0] && sz[2] < sz[0]);

    /* After a restart, readers still decompress. */
    srv_start(&a, argv[1], data, NULL);
    read_back_http(a.port, "c_lz4");
    read_back_http(a.port, "c_zstd");
    read_back_fetch(a.binport, "c_zstd");
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_compression: ok\n");
    return 0;
}
