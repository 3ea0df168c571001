/*
 * "HOST:PORT" (src/core/hostport.h), the one split behind the client's
 * server list and the CLI's --server/--http: the split is at the last
 * colon, HOST is not empty, PORT is a number in [1, 65535] with nothing
 * after it; anything else is SPW_EINVAL.
 */
#include "core/hostport.h"

#include "core/error.h"
#include "test.h"

static void ok(const char *s, size_t hostlen, uint16_t port)
{
    size_t hl = 0;
    uint16_t p = 0;
    CHECK_EQ(spw_hostport_split(s, &hl, &p), 0);
    CHECK_EQ(hl, hostlen);
    CHECK_EQ(p, port);
}

static void bad(const char *s)
{
    size_t hl = 0;
    uint16_t p = 0;
    CHECK_EQ(spw_hostport_split(s, &hl, &p), SPW_EINVAL);
}

int main(void)
{
    ok("127.0.0.1:7001", 9, 7001);
    ok("localhost:1", 9, 1);
    ok("db.example:65535", 10, 65535);
    ok("a:b:80", 3, 80); /* the last colon */
    bad("");
    bad("localhost");
    bad(":80");
    bad("localhost:");
    bad("localhost:0");
    bad("localhost:65536");
    bad("localhost:-1");
    bad("localhost:80x");
    bad("localhost:99999999999999999999");
    return 0;
}
