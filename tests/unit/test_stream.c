/* Stream definitions: defaults, every field, every error, canonical round trip, hashing. */
#include "core/name.h"
#include "core/hash.h"
#include "catalog/stream.h"
#include "test.h"

static int parse(spw_stream_config *c, const char *name, const char *body)
{
    char err[256] = "";
    int r = spw_stream_config_parse(c, name, body, strlen(body), err, sizeof err);
    if (r)
        CHECK(err[0] != 0);
    return r;
}

static void roundtrip(const spw_stream_config *c)
{
    spw_buf b = SPW_BUF_INIT;
    CHECK_OK(spw_stream_config_json(c, &b));
    spw_stream_config d;
    char err[256];
    if (spw_stream_config_parse(&d, c->name, (char *)b.p, b.len, err, sizeof err)) {
        fprintf(stderr, "%.*s: %s\n", (int)b.len, b.p, err);
        CHECK(0);
    }
    CHECK(spw_stream_config_equal(c, &d));
    spw_buf_fini(&b);
}

int main(void)
{
    spw_stream_config c, d;
    CHECK_EQ(parse(&c, "clicks", ""), 0);
    CHECK_EQ(c.partitions, 4);
    CHECK_EQ(c.ack, SPW_ACK_FSYNC);
    CHECK_EQ(c.dedupe_window_ms, 86400000);
    CHECK_EQ(c.max_event_bytes, 1 << 20);
    CHECK_EQ(c.retention_ms, -1);
    roundtrip(&c);
    CHECK_EQ(parse(&c, "gps.pings_v2-EU", "{\"partitions\":8,\"format\":\"json\",\"key\":\"/device_id\",\"timestamp\":\"/ts\","
                                       "\"ack\":\"written\",\"retention\":{\"ms\":3600000,\"bytes\":1000000},"
                                       "\"dedupe_window_ms\":60000,\"coalesce\":true,\"versioned\":false,"
                                       "\"max_event_bytes\":4096,\"rate_limit\":{\"rate\":100.5,\"burst\":200,\"per\":\"ip\"}}"),
             0);
    CHECK_EQ(c.partitions, 8);
    CHECK(strcmp(c.key, "/device_id") == 0);
    CHECK(strcmp(c.timestamp, "/ts") == 0);
    CHECK_EQ(c.ack, SPW_ACK_WRITTEN);
    CHECK_EQ(c.retention_ms, 3600000);
    CHECK_EQ(c.retention_bytes, 1000000);
    CHECK_EQ(c.coalesce, 1);
    CHECK_EQ(c.max_event_bytes, 4096);
    CHECK(c.rate == 100.5 && c.burst == 200 && c.rate_per == 1 && c.rate_algo == 0);
    roundtrip(&c);

    /* Rate-limit algorithms: token bucket (default, named in the output)
     * and sliding window (no burst: its limit is rate per 1 s window). */
    {
        spw_buf b = SPW_BUF_INIT;
        CHECK_OK(spw_stream_config_json(&c, &b));
        CHECK(memmem(b.p, b.len, "\"algorithm\":\"token_bucket\"", 26) != NULL);
        spw_buf_fini(&b);
    }
    CHECK_EQ(parse(&c, "w", "{\"rate_limit\":{\"algorithm\":\"sliding_window\",\"rate\":50}}"), 0);
    CHECK(c.rate == 50 && c.burst == 0 && c.rate_algo == 1 && c.rate_per == 0);
    roundtrip(&c);
    {
        spw_buf b = SPW_BUF_INIT;
        CHECK_OK(spw_stream_config_json(&c, &b));
        CHECK(memmem(b.p, b.len, "\"rate_limit\":{\"rate\":50,\"per\":\"tenant\",\"algorithm\":\"sliding_window\"}",
                     68) != NULL);
        spw_buf_fini(&b);
    }
    CHECK_EQ(parse(&d, "w", "{\"rate_limit\":{\"rate\":50,\"algorithm\":\"token_bucket\"}}"), 0);
    CHECK(d.rate == 50 && d.burst == 50 && d.rate_algo == 0);
    CHECK(!spw_stream_config_equal(&c, &d)); /* same rate, other algorithm */
    CHECK_EQ(parse(&c, "w", "{\"rate_limit\":{\"rate\":50,\"per\":\"ip\",\"algorithm\":\"sliding_window\"}}"), 0);
    CHECK(c.rate_per == 1 && c.rate_algo == 1);
    roundtrip(&c);
    /* A bucket holds at least one event, so a slow rate alone still passes one. */
    CHECK_EQ(parse(&c, "w", "{\"rate_limit\":{\"rate\":0.5}}"), 0);
    CHECK(c.burst == 1);
    roundtrip(&c);
    CHECK_EQ(parse(&d, "gps.pings_v2-EU", "{\"partitions\":8}"), 0);
    CHECK(!spw_stream_config_equal(&c, &d));
    CHECK_EQ(parse(&c, "b", "{\"format\":\"bytes\"}"), 0);
    CHECK_EQ(c.format_bytes, 1);
    roundtrip(&c);
    CHECK_EQ(parse(&c, "k", "{\"key\":\"/a~1b/c\\\"d\"}"), 0);
    roundtrip(&c);

    /* Errors. */
    const char *bad[] = {
        "{\"partitions\":0}", "{\"partitions\":1025}", "{\"partitions\":1.5}", "{\"partitions\":\"4\"}",
        "{\"format\":\"xml\"}", "{\"key\":\"device_id\"}", "{\"key\":5}", "{\"ack\":\"always\"}",
        "{\"retention\":{\"ms\":-1}}", "{\"retention\":{\"days\":1}}", "{\"retention\":5}",
        "{\"coalesce\":1}", "{\"max_event_bytes\":0}", "{\"rate_limit\":{\"burst\":5}}",
        "{\"rate_limit\":{\"rate\":5,\"per\":\"user\"}}", "{\"nope\":1}", "[1]", "{", "{} x",
        "{\"format\":\"bytes\",\"key\":\"/k\"}", "{\"name\":\"other\"}", "{\"dedupe_window_ms\":-5}",
        "{\"rate_limit\":{\"rate\":5,\"algorithm\":\"leaky_bucket\"}}", "{\"rate_limit\":{\"rate\":5,\"algorithm\":1}}",
        "{\"rate_limit\":{\"rate\":5,\"burst\":10,\"algorithm\":\"sliding_window\"}}",
        "{\"rate_limit\":{\"rate\":1.5,\"algorithm\":\"sliding_window\"}}",
        "{\"rate_limit\":{\"rate\":0.5,\"algorithm\":\"sliding_window\"}}",
        "{\"rate_limit\":{\"rate\":5000000000,\"algorithm\":\"sliding_window\"}}",
        "{\"rate_limit\":{\"rate\":5,\"burst\":0.5}}", "{\"rate_limit\":{\"algorithm\":\"token_bucket\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (parse(&c, "s", bad[i]) == 0)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK_EQ(parse(&c, "s", bad[i]), -1);
    }
    CHECK_EQ(parse(&c, "s", "{\"name\":\"s\"}"), 0);

    /* Names. */
    CHECK(spw_stream_name_ok("a", 1));
    CHECK(spw_stream_name_ok("A.b_c-9", 7));
    CHECK(!spw_stream_name_ok("", 0));
    CHECK(!spw_stream_name_ok(".", 1));
    CHECK(!spw_stream_name_ok("..", 2));
    CHECK(!spw_stream_name_ok("...", 3));
    CHECK(!spw_stream_name_ok(".hidden", 7));
    CHECK(!spw_stream_name_ok(".deleted-a-1", 12)); /* the catalog's own names */
    CHECK(spw_stream_name_ok("a..b", 4));
    CHECK(!spw_stream_name_ok("a/b", 3));
    CHECK(!spw_stream_name_ok("a b", 3));
    CHECK(!spw_stream_name_ok("caf\xc3\xa9", 5));
    char longname[130];
    memset(longname, 'x', 129);
    longname[129] = 0;
    CHECK(spw_stream_name_ok(longname, 128));
    CHECK(!spw_stream_name_ok(longname, 129));
    CHECK_EQ(parse(&c, "../etc", ""), -1);
    {
        /* One rule (core/name.h), one sentence, other lengths. */
        char err[256] = "";
        CHECK_EQ(spw_stream_config_parse(&c, "../etc", "", 0, err, sizeof err), -1);
        CHECK(strstr(err, SPW_NAME_RULE) != NULL);
        CHECK(spw_name_ok(longname, 64, 64));
        CHECK(!spw_name_ok(longname, 65, 64));
        CHECK(!spw_name_ok(".x", 2, 64));
    }
    {
        /* Definitions are compared by meaning: spacing, escapes, field
         * order and defaults written out make no difference; the stored
         * canonical text is the same too. */
        spw_stream_config a, b;
        CHECK_EQ(parse(&a, "s", "{\"partitions\":2,\"key\":\"/k\",\"rate_limit\":{\"rate\":5}}"), 0);
        CHECK_EQ(parse(&b, "s",
                       "{ \"rate_limit\" : {\"burst\":5, \"rate\":5, \"per\":\"tenant\"}, \"key\":\"\\/k\", "
                       "\"partitions\" : 2, \"ack\":\"fsync\", \"dedupe_window_ms\":86400000, \"priority\":1, "
                       "\"retention\":{}, \"format\":\"json\", \"coalesce\":false, \"max_event_bytes\":1048576 }"),
                 0);
        CHECK(spw_stream_config_equal(&a, &b));
        spw_buf ja = SPW_BUF_INIT, jb = SPW_BUF_INIT;
        CHECK_EQ(spw_stream_config_json(&a, &ja), 0);
        CHECK_EQ(spw_stream_config_json(&b, &jb), 0);
        CHECK(ja.len == jb.len && memcmp(ja.p, jb.p, ja.len) == 0);
        spw_buf_fini(&ja);
        spw_buf_fini(&jb);
        CHECK_EQ(parse(&b, "s", "{\"partitions\":2,\"key\":\"/k\",\"rate_limit\":{\"rate\":5,\"burst\":6}}"), 0);
        CHECK(!spw_stream_config_equal(&a, &b));
        /* incarnation is the stored file's only; a field given twice is refused */
        CHECK_EQ(parse(&b, "s", "{\"incarnation\":3}"), -1);
        CHECK_EQ(parse(&b, "s", "{\"partitions\":2,\"partitions\":3}"), -1);
        uint64_t inc = 0;
        char err[256];
        const char *stored = "{\"name\":\"s\",\"partitions\":2,\"incarnation\":3}";
        CHECK_EQ(spw_stream_def_parse(&b, &inc, "s", stored, strlen(stored), err, sizeof err), 0);
        CHECK_EQ(inc, 3);
        CHECK_EQ(b.partitions, 2);
        CHECK_EQ(b.dedupe_window_ms, 86400000);
        CHECK(b.retention_ms == -1 && b.retention_bytes == -1 && b.ack == SPW_ACK_FSYNC && b.priority == 1);
    }

    /* FNV-1a 64, mod partitions: fixed values (docs/api.md). */
    CHECK_EQ(spw_stream_partition("", 0, 1000), 0xcbf29ce484222325ull % 1000);
    CHECK_EQ(spw_stream_partition("a", 1, 1000), 0xaf63dc4c8601ec8cull % 1000);
    CHECK_EQ(spw_stream_partition("foobar", 6, 1000), 0x85944171f73967e8ull % 1000);
    CHECK_EQ(spw_fnv1a64(SPW_FNV64_OFFSET, "key-00000000123", 15), 0x7d34477adce7d69dull);
    /* A power of two of partitions (the low bits, no division) gives the
     * remainder, as every other count does. */
    for (uint32_t P = 1; P <= 4096; P++) {
        CHECK_EQ(spw_stream_partition("key-00000000123", 15, P), 0x7d34477adce7d69dull % P);
        CHECK_EQ(spw_stream_partition("foobar", 6, P), 0x85944171f73967e8ull % P);
    }
    CHECK_EQ(spw_stream_partition("a", 1, 1u << 31), 0xaf63dc4c8601ec8cull % (1u << 31));
    /* Every length, four bytes a turn or not: the byte-at-a-time hash. */
    {
        unsigned char kb[40];
        for (int i = 0; i < 40; i++)
            kb[i] = (unsigned char)(i * 37 + 11);
        for (size_t n = 0; n <= sizeof kb; n++) {
            uint64_t want = SPW_FNV64_OFFSET;
            for (size_t i = 0; i < n; i++)
                want = (want ^ kb[i]) * 0x100000001b3ull;
            CHECK_EQ(spw_fnv1a64(SPW_FNV64_OFFSET, kb, n), want);
            CHECK_EQ(spw_fnv1a64(12345, kb, n) == spw_fnv1a64(SPW_FNV64_OFFSET, kb, n), 0);
        }
    }
    /* Spread: 100k keys over 8 partitions within 5% of even. */
    uint32_t counts[8] = {0};
    for (int i = 0; i < 100000; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "device-%d", i);
        counts[spw_stream_partition(k, (size_t)n, 8)]++;
    }
    for (int i = 0; i < 8; i++)
        CHECK(counts[i] > 12500 * 0.95 && counts[i] < 12500 * 1.05);
    puts("test_stream: ok");
    return 0;
}
