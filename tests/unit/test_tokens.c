/*
 * The tokens file and the checks built on it (src/svc/auth.c): a good
 * file parses and answers lookups and permission questions; every kind of
 * bad file is refused with a sentence that names the entry and never the
 * token; the lookup hash matches SipHash-2-4's published vectors; a
 * holder reloads a good file, keeps its table for a bad one, and a
 * session sees a revoked token go.
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "svc/auth.h"
#include "test.h"

#include "core/siphash.h"

static const char GOOD[] =
    "{\"tokens\":[\n"
    "  {\"token\":\"admin-aaaaaaaaaaaaaaaa\",\"tenant\":\"ops\",\"streams\":[\"*\"],"
    "   \"permissions\":[\"produce\",\"consume\",\"admin\"]},\n"
    "  {\"token\":\"acme-bbbbbbbbbbbbbbbb\",\"tenant\":\"acme\",\"streams\":[\"orders\",\"metrics.*\"],"
    "   \"permissions\":[\"produce\"]},\n"
    "  {\"permissions\":[],\"streams\":[],\"tenant\":\"nobody.x_y-z\",\"token\":\"n\\u006fbody-\\/~+=\"}\n"
    "]}\n";

static void test_siphash(void)
{
    uint8_t m[15];
    for (int i = 0; i < 15; i++)
        m[i] = (uint8_t)i;
    uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
    CHECK(spw_siphash24(k0, k1, m, 0) == 0x726fdb47dd0e0e31ull);
    CHECK(spw_siphash24(k0, k1, m, 15) == 0xa129ca6149be45e5ull);
}

static void test_good(void)
{
    spw_tokens *t;
    char err[400] = "";
    CHECK_EQ(spw_tokens_parse(GOOD, strlen(GOOD), &t, err, sizeof err), 0);
    CHECK_EQ(spw_tokens_count(t), 3);
    const spw_token *a = spw_tokens_find(t, "admin-aaaaaaaaaaaaaaaa", 22);
    const spw_token *b = spw_tokens_find(t, "acme-bbbbbbbbbbbbbbbb", 21);
    const spw_token *n = spw_tokens_find(t, "nobody-/~+=", 11); /* escapes decoded */
    CHECK(a && b && n);
    CHECK(strcmp(a->tenant, "ops") == 0 && strcmp(b->tenant, "acme") == 0 && strcmp(n->tenant, "nobody.x_y-z") == 0);
    /* Near misses are not found: prefix, extension, case, empty, too long. */
    CHECK(!spw_tokens_find(t, "admin-aaaaaaaaaaaaaaa", 21));
    CHECK(!spw_tokens_find(t, "admin-aaaaaaaaaaaaaaaaa", 23));
    CHECK(!spw_tokens_find(t, "ADMIN-aaaaaaaaaaaaaaaa", 22));
    CHECK(!spw_tokens_find(t, "", 0));
    char big[SPW_TOKEN_MAX + 2];
    memset(big, 'a', sizeof big);
    CHECK(!spw_tokens_find(t, big, sizeof big));

    /* Patterns: "*", exact, prefix. */
    CHECK(spw_token_allows(a, SPW_PERM_ADMIN | SPW_PERM_CONSUME, "anything", 8));
    CHECK(spw_token_allows(b, SPW_PERM_PRODUCE, "orders", 6));
    CHECK(!spw_token_allows(b, SPW_PERM_PRODUCE, "orders2", 7));
    CHECK(!spw_token_allows(b, SPW_PERM_PRODUCE, "order", 5));
    CHECK(spw_token_allows(b, SPW_PERM_PRODUCE, "metrics.cpu", 11));
    CHECK(spw_token_allows(b, SPW_PERM_PRODUCE, "metrics.", 8));
    CHECK(!spw_token_allows(b, SPW_PERM_PRODUCE, "metrics", 7));
    CHECK(!spw_token_allows(b, SPW_PERM_PRODUCE, "xmetrics.cpu", 12));
    CHECK(!spw_token_allows(b, SPW_PERM_CONSUME, "orders", 6));
    CHECK(!spw_token_allows(b, SPW_PERM_ADMIN, "orders", 6));
    CHECK(spw_token_sees(b, "orders", 6) && !spw_token_sees(b, "secret", 6));
    CHECK(!spw_token_sees(n, "orders", 6));
    CHECK(!spw_token_allows(n, 0, "orders", 6));
    spw_tokens_put(t);

    /* An empty list is a valid (locked) table. */
    CHECK_EQ(spw_tokens_parse("{\"tokens\":[]}", 13, &t, err, sizeof err), 0);
    CHECK_EQ(spw_tokens_count(t), 0);
    CHECK(!spw_tokens_find(t, "x", 1));
    spw_tokens_put(t);

    /* Many tokens: every one is found, with its own tenant. */
    spw_buf f = SPW_BUF_INIT;
    char line[200];
    spw_buf_reserve(&f, 1 << 20);
    memcpy(f.p, "{\"tokens\":[", 11);
    f.len = 11;
    for (int i = 0; i < 2000; i++) {
        int k = snprintf(line, sizeof line,
                         "%s{\"token\":\"tok-%06d\",\"tenant\":\"t%d\",\"streams\":[\"s%d\"],"
                         "\"permissions\":[\"consume\"]}",
                         i ? "," : "", i, i, i);
        memcpy(f.p + f.len, line, (size_t)k);
        f.len += (size_t)k;
    }
    memcpy(f.p + f.len, "]}", 2);
    f.len += 2;
    CHECK_EQ(spw_tokens_parse((char *)f.p, f.len, &t, err, sizeof err), 0);
    for (int i = 0; i < 2000; i++) {
        char tok[32], ten[16], st[16];
        snprintf(tok, sizeof tok, "tok-%06d", i);
        snprintf(ten, sizeof ten, "t%d", i);
        snprintf(st, sizeof st, "s%d", i);
        const spw_token *e = spw_tokens_find(t, tok, strlen(tok));
        CHECK(e && strcmp(e->tenant, ten) == 0);
        CHECK(spw_token_allows(e, SPW_PERM_CONSUME, st, strlen(st)));
    }
    CHECK(!spw_tokens_find(t, "tok-002000", 10));
    spw_tokens_put(t);
    spw_buf_fini(&f);
}

/* A file that must be refused, with every fragment in the message, and the
 * secret never in it. */
static void bad(const char *text, const char *frag1, const char *frag2)
{
    spw_tokens *t = NULL;
    char err[400] = "";
    int r = spw_tokens_parse(text, strlen(text), &t, err, sizeof err);
    if (r == 0 || !strstr(err, frag1) || (frag2 && !strstr(err, frag2)) || strstr(err, "SECRET")) {
        fprintf(stderr, "file: %s\nmessage: %s\nwanted: %s / %s\n", text, err, frag1, frag2 ? frag2 : "");
        CHECK(!"bad tokens file not refused as expected");
    }
    CHECK(t == NULL);
}

#define E(tok, tenant, streams, perms)                                                                                 \
    "{\"token\":" tok ",\"tenant\":" tenant ",\"streams\":" streams ",\"permissions\":" perms "}"
#define OK1 E("\"SECRET-1\"", "\"acme\"", "[\"a\"]", "[\"produce\"]")

static void test_bad(void)
{
    bad("", "not valid JSON", NULL);
    bad("{\"tokens\":[", "not valid JSON", NULL);
    bad("[]", "one JSON object", NULL);
    bad("{}", "\"tokens\" is missing", NULL);
    bad("{\"tokens\":{}}", "must be an array", NULL);
    bad("{\"tokens\":[],\"tokens\":[]}", "given twice", NULL);
    bad("{\"tokens\":[],\"extra\":1}", "unknown top-level member \"extra\"", NULL);
    bad("{\"tokens\":[]} x", "data after", NULL);
    bad("{\"tokens\":[" OK1 ",7]}", "tokens[1] must be an object", NULL);
    /* An unknown member names the entry by index and tenant. */
    bad("{\"tokens\":[" OK1 ",{\"token\":\"SECRET-2\",\"tenant\":\"beta\",\"streams\":[],\"permissions\":[],\"x\":1}]}",
        "tokens[1] (tenant \"beta\")", "unknown member \"x\"");
    bad("{\"tokens\":[{\"token\":\"SECRET\",\"token\":\"SECRET\",\"tenant\":\"a\",\"streams\":[],\"permissions\":[]}]}",
        "tokens[0] (tenant \"a\")", "given twice");
    /* Missing members. */
    bad("{\"tokens\":[{\"tenant\":\"a\",\"streams\":[],\"permissions\":[]}]}", "tokens[0] (tenant \"a\")",
        "\"token\" is missing");
    bad("{\"tokens\":[{\"token\":\"SECRET\",\"streams\":[],\"permissions\":[]}]}", "tokens[0]: ",
        "\"tenant\" is missing");
    bad("{\"tokens\":[{\"token\":\"SECRET\",\"tenant\":\"a\",\"permissions\":[]}]}", "tokens[0]",
        "\"streams\" is missing");
    bad("{\"tokens\":[{\"token\":\"SECRET\",\"tenant\":\"a\",\"streams\":[]}]}", "tokens[0]",
        "\"permissions\" is missing");
    /* Tokens. */
    bad("{\"tokens\":[" E("\"\"", "\"a\"", "[]", "[]") "]}", "tokens[0] (tenant \"a\")", "\"token\" is empty");
    bad("{\"tokens\":[" E("5", "\"a\"", "[]", "[]") "]}", "tokens[0]", "\"token\" must be a string");
    bad("{\"tokens\":[" E("null", "\"a\"", "[]", "[]") "]}", "tokens[0]", "\"token\" must be a string");
    bad("{\"tokens\":[" E("\"SECRET with space\"", "\"a\"", "[]", "[]") "]}", "tokens[0]", "visible ASCII");
    bad("{\"tokens\":[" E("\"SECRET\\ttab\"", "\"a\"", "[]", "[]") "]}", "tokens[0]", "visible ASCII");
    bad("{\"tokens\":[" E("\"SECRET\\u00e9\"", "\"a\"", "[]", "[]") "]}", "tokens[0]", "visible ASCII");
    char longtok[600];
    snprintf(longtok, sizeof longtok, "{\"tokens\":[" E("\"SECRET%0300d\"", "\"a\"", "[]", "[]") "]}", 0);
    bad(longtok, "tokens[0]", "longer than 256");
    bad("{\"tokens\":[" OK1 "," E("\"SECRET-1\"", "\"other\"", "[]", "[]") "]}",
        "tokens[1] (tenant \"other\") has the same token as tokens[0] (tenant \"acme\")", NULL);
    /* Tenants. */
    bad("{\"tokens\":[" E("\"SECRET\"", "\"\"", "[]", "[]") "]}", "tokens[0]: ", "\"tenant\" must be");
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a b\"", "[]", "[]") "]}", "tokens[0]: ", "\"tenant\" must be");
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a/b\"", "[]", "[]") "]}", "tokens[0]: ", "\"tenant\" must be");
    bad("{\"tokens\":[" E("\"SECRET\"", "\"caf\\u00e9\"", "[]", "[]") "]}", "tokens[0]: ", "\"tenant\" must be");
    bad("{\"tokens\":[" E("\"SECRET\"", "7", "[]", "[]") "]}", "tokens[0]: ", "\"tenant\" must be");
    bad("{\"tokens\":[" E("\"SECRET\"",
                          "\"a123456789012345678901234567890123456789012345678901234567890123\"", "[]", "[]") "]}",
        "tokens[0]: ", "1 to 63");
    /* Streams. */
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a\"", "\"*\"", "[]") "]}", "tokens[0] (tenant \"a\")", "must be an array");
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a\"", "[1]", "[]") "]}", "\"streams\"[0] must be a string", NULL);
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a\"", "[\"ok\",\"\"]", "[]") "]}", "\"streams\"[1] is empty", NULL);
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a\"", "[\"a*b\"]", "[]") "]}", "\"a*b\"", "may only end");
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a\"", "[\"**\"]", "[]") "]}", "\"**\"", "may only end");
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a\"", "[\"a/b\"]", "[]") "]}", "\"a/b\"", "neither a stream name");
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a\"", "[\"..\"]", "[]") "]}", "\"..\"", "neither a stream name");
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a\"", "[\".x*\"]", "[]") "]}", "\".x*\"", "can never match");
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a\"", "[\"a/*\"]", "[]") "]}", "\"a/*\"", "cannot have");
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a\"", "[\"x.*\",\"x.*\"]", "[]") "]}", "\"x.*\" is listed twice", NULL);
    char longpat[400];
    snprintf(longpat, sizeof longpat, "{\"tokens\":[" E("\"SECRET\"", "\"a\"", "[\"%0140d\"]", "[]") "]}", 0);
    bad(longpat, "tokens[0]", "longer than any stream name");
    /* Permissions. */
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a\"", "[]", "\"admin\"") "]}", "tokens[0] (tenant \"a\")",
        "\"permissions\" must be an array");
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a\"", "[]", "[\"write\"]") "]}", "\"permissions\"[0] must be", NULL);
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a\"", "[]", "[\"produce\",\"Admin\"]") "]}", "\"permissions\"[1] must be",
        NULL);
    bad("{\"tokens\":[" E("\"SECRET\"", "\"a\"", "[]", "[\"consume\",\"consume\"]") "]}",
        "permission \"consume\" is listed twice", NULL);
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
}

static void test_holder(void)
{
    char *dir = spw_test_tmpdir("auth");
    char path[4200], err[700];
    snprintf(path, sizeof path, "%s/tokens.json", dir);
    spw_auth *a;
    CHECK(spw_auth_open(path, &a, err, sizeof err) == -1); /* no file yet */
    CHECK(strstr(err, path) != NULL);
    write_file(path, GOOD);
    CHECK_EQ(spw_auth_open(path, &a, err, sizeof err), 0);

    spw_auth_session s = {0};
    CHECK(spw_auth_session_who(a, &s) == NULL); /* not logged in */
    CHECK_EQ(spw_auth_session_login(a, &s, "nope", 4), -1);
    CHECK_EQ(spw_auth_session_login(a, &s, "acme-bbbbbbbbbbbbbbbb", 21), 0);
    const spw_token *who = spw_auth_session_who(a, &s);
    CHECK(who && strcmp(who->tenant, "acme") == 0);

    /* A broken file: the old table stays, the session is unaffected. */
    write_file(path, "{\"tokens\":[{\"token\":\"x\"}]}");
    CHECK_EQ(spw_auth_reload(a, err, sizeof err), -1);
    CHECK(strstr(err, path) && strstr(err, "tokens[0]"));
    CHECK_EQ(atomic_load(&a->reloads_failed), 1);
    who = spw_auth_session_who(a, &s);
    CHECK(who && strcmp(who->tenant, "acme") == 0);

    /* acme's token revoked, a new one added. A reference taken before the
     * reload still sees the old table. */
    spw_tokens *old = spw_auth_acquire(a, NULL);
    write_file(path, "{\"tokens\":[{\"token\":\"new-cccccccccccccccc\",\"tenant\":\"newco\",\"streams\":[\"n\"],"
                     "\"permissions\":[\"consume\"]}]}");
    CHECK_EQ(spw_auth_reload(a, err, sizeof err), 0);
    CHECK_EQ(atomic_load(&a->reloads_ok), 1);
    CHECK(spw_tokens_find(old, "acme-bbbbbbbbbbbbbbbb", 21) != NULL);
    spw_tokens_put(old);
    CHECK(spw_auth_session_who(a, &s) == NULL);
    spw_auth_session s2 = {0};
    CHECK_EQ(spw_auth_session_login(a, &s2, "new-cccccccccccccccc", 20), 0);
    CHECK(strcmp(spw_auth_session_who(a, &s2)->tenant, "newco") == 0);
    /* A failed login ends an earlier one. */
    CHECK_EQ(spw_auth_session_login(a, &s2, "acme-bbbbbbbbbbbbbbbb", 21), -1);
    CHECK(spw_auth_session_who(a, &s2) == NULL);
    /* The revoked token coming back brings the old session back. */
    write_file(path, GOOD);
    CHECK_EQ(spw_auth_reload(a, err, sizeof err), 0);
    who = spw_auth_session_who(a, &s);
    CHECK(who && strcmp(who->tenant, "acme") == 0);
    spw_auth_session_fini(&s);
    spw_auth_session_fini(&s2);
    spw_auth_close(a);

    /* Not a regular file, too big. */
    CHECK(spw_auth_open(dir, &a, err, sizeof err) == -1 && strstr(err, "not a regular file"));
    CHECK_EQ(truncate(path, (off_t)SPW_TOKENS_FILE_MAX + 1), 0);
    CHECK(spw_auth_open(path, &a, err, sizeof err) == -1 && strstr(err, "larger than 16 MiB"));
    spw_test_rmrf(dir);
    free(dir);
}

int main(void)
{
    test_siphash();
    test_good();
    test_bad();
    test_holder();
    printf("test_tokens: ok\n");
    return 0;
}
