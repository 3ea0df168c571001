/*
 * Secrets in sink definitions (sink/sink.h spw_sinks_redact,
 * docs/operations.md "Security"): what an answer shows of a definition.
 * Each case is canonical JSON in and the text every answer shows out.
 */
#include "sink/sink.h"

#include <string.h>

#include "core/buf.h"
#include "test.h"

static void expect(const char *in, const char *want)
{
    spw_buf b = SPW_BUF_INIT;
    spw_sinks_redact(in, strlen(in), &b);
    spw_buf_put(&b, "", 1);
    if (strcmp((const char *)b.p, want) != 0)
        fprintf(stderr, "redact(%s)\n  = %s\n want %s\n", in, (const char *)b.p, want);
    CHECK(strcmp((const char *)b.p, want) == 0);
    spw_buf_fini(&b);
}

int main(void)
{
    /* members whose name says secret, at any depth, and what is under them */
    expect("{\"options\":{\"address\":\"a:1\",\"token\":\"t0k\"}}",
           "{\"options\":{\"address\":\"a:1\",\"token\":\"[redacted]\"}}");
    expect("{\"token\":\"\"}", "{\"token\":\"\"}"); /* nothing to hide */
    expect("{\"properties\":{\"sasl.password\":\"p\",\"sasl.username\":\"u\",\"SSL.Key.Password\":\"q\","
           "\"sasl.jaas.config\":\"x required password=\\\"y\\\";\",\"acks\":\"1\"}}",
           "{\"properties\":{\"sasl.password\":\"[redacted]\",\"sasl.username\":\"u\",\"SSL.Key.Password\":"
           "\"[redacted]\",\"sasl.jaas.config\":\"[redacted]\",\"acks\":\"1\"}}");
    expect("{\"client_secret\":{\"a\":\"b\",\"c\":[\"d\",{\"e\":\"f\"}]},\"g\":\"h\"}",
           "{\"client_secret\":{\"a\":\"[redacted]\",\"c\":[\"[redacted]\",{\"e\":\"[redacted]\"}]},\"g\":\"h\"}");
    /* libpq key=value connection strings: plain, spaced, quoted (with libpq's \' inside, JSON-escaped) */
    expect("{\"shards\":[\"host=a password=xyz dbname=d\",\"host=b PASSWORD = xyz\","
           "\"password='a b\\\\'c' user=u\",\"host=c\"]}",
           "{\"shards\":[\"host=a password=[redacted] dbname=d\",\"host=b PASSWORD = [redacted]\","
           "\"password=[redacted] user=u\",\"host=c\"]}");
    /* a word that merely contains "password" is left */
    expect("{\"s\":[\"host=a mypassword=x\"]}", "{\"s\":[\"host=a mypassword=x\"]}");
    /* URIs: user:password@ and ?password= / &password= */
    expect("{\"s\":[\"postgresql://u:pw@h:5432/db?sslmode=off&password=q&x=1\",\"postgresql://u@h/db\"]}",
           "{\"s\":[\"postgresql://u:[redacted]@h:5432/db?sslmode=off&password=[redacted]&x=1\","
           "\"postgresql://u@h/db\"]}");
    /* numbers, booleans and null pass unchanged, also under a secret name */
    expect("{\"a\":1,\"token\":null,\"b\":[true,false],\"c\":-2.5e3}",
           "{\"a\":1,\"token\":null,\"b\":[true,false],\"c\":-2.5e3}");
    /* escapes in strings survive where nothing is redacted */
    expect("{\"k\":\"a\\\"b\\\\c\\u0041\"}", "{\"k\":\"a\\\"b\\\\c\\u0041\"}");
    printf("test_sink_redact: ok\n");
    return 0;
}
