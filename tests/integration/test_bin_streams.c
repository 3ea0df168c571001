/*
 * STREAM_CREATE (opcode 255) and STREAM_DESCRIBE (opcode 254) through the
 * client library (docs/protocol.md "Streams"): create answers created or
 * identical, refuses another definition (409 exists), a bad definition
 * (400 bad_config, the same sentence as HTTP's PUT), a bad name, and a
 * token without admin (403); the stream is then what HTTP describes (one
 * description for both protocols), survives a restart, and
 * `spillway bench --protocol bin` creates its stream with no HTTP address.
 * GROUP_LIST (opcode 253) answers a stream's consumer groups with the JSON
 * of GET /v1/streams/{s}/groups, byte for byte; GROUP_RESET (opcode 252)
 * resets one as POST .../groups/{g}/reset does (409 while a member holds
 * a lease, 400 for a bad body, 404 for no such group, 403 without admin).
 */
#include "spillway.h"
#include "server.h"

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    const char *bin = argv[1];
    char *dir = spw_test_tmpdir("binstreams");
    char data[4200], tokens[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(tokens, sizeof tokens, "%s/tokens", dir);
    FILE *f = fopen(tokens, "w");
    CHECK(f != NULL);
    fputs("{\"tokens\": [\n"
          " {\"token\": \"admin-token-0001\", \"tenant\": \"ops\", \"streams\": [\"*\"],\n"
          "  \"permissions\": [\"produce\", \"consume\", \"admin\"]},\n"
          " {\"token\": \"producer-tok-001\", \"tenant\": \"app\", \"streams\": [\"*\"],\n"
          "  \"permissions\": [\"produce\"]}\n"
          "]}\n",
          f);
    fclose(f);
    srv s;
    const char *extra[] = {"--tokens-file", tokens, NULL};
    srv_start(&s, bin, data, extra);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s.binport);
    spillway_client *c;
    CHECK_EQ(spillway_client_connect(addr, 10000, &c), 0);
    CHECK_EQ(spillway_client_create_stream(c, "orders", "{}", NULL), SPILLWAY_ERR_UNAUTHORIZED);
    CHECK_EQ(spillway_client_auth(c, "admin-token-0001"), 0);

    int created = -1;
    const char *def = "{\"partitions\":3,\"key\":\"/id\",\"retention\":{\"ms\":86400000}}";
    CHECK_EQ(spillway_client_create_stream(c, "orders", def, &created), 0);
    CHECK_EQ(created, 1);
    /* the same again, spaced and ordered differently: identical */
    CHECK_EQ(spillway_client_create_stream(c, "orders", " {\"key\":\"/id\", \"partitions\":3,"
                                           "\"retention\":{\"ms\":86400000}}", &created), 0);
    CHECK_EQ(created, 0);
    CHECK_EQ(spillway_client_create_stream(c, "orders", "{\"partitions\":2}", &created), SPILLWAY_ERR_CONFLICT);
    CHECK(strstr(spillway_client_last_error(c), "exists with a different definition") != NULL);
    CHECK_EQ(spillway_client_create_stream(c, "bad", "{\"partitions\":0}", NULL), SPILLWAY_ERR_BAD_REQUEST);
    CHECK(strstr(spillway_client_last_error(c), "partitions") != NULL);
    CHECK_EQ(spillway_client_create_stream(c, "bad", "{\"unknown\":1}", NULL), SPILLWAY_ERR_BAD_REQUEST);
    CHECK_EQ(spillway_client_create_stream(c, "bad", "not json", NULL), SPILLWAY_ERR_BAD_REQUEST);
    CHECK_EQ(spillway_client_create_stream(c, ".hidden", "{}", NULL), SPILLWAY_ERR_BAD_REQUEST);
    CHECK_EQ(spillway_client_create_stream(c, "dflt", NULL, &created), 0); /* every default */
    CHECK_EQ(created, 1);

    /* one description for both protocols */
    char *json = NULL;
    CHECK_EQ(spillway_client_describe_stream(c, "orders", &json), 0);
    CHECK(strstr(json, "\"name\":\"orders\"") && strstr(json, "\"partitions\":3") &&
          strstr(json, "\"partition_state\":[{\"partition\":0,"));
    resp r = http_ex(s.port, "GET", "/v1/streams/orders", NULL, "Authorization: Bearer admin-token-0001\r\n", NULL,
                     0);
    CHECK_EQ(r.status, 200);
    CHECK(r.body_len == strlen(json) + 1 && memcmp(r.body, json, strlen(json)) == 0);
    free(r.body);
    free(json);
    CHECK_EQ(spillway_client_describe_stream(c, "nothing", &json), SPILLWAY_ERR_NOT_FOUND);
    CHECK_EQ(spillway_client_describe_stream(c, "bad", &json), SPILLWAY_ERR_NOT_FOUND); /* refused: never made */

    /* a stream's consumer groups: none, then the one a poll made */
    CHECK_EQ(spillway_client_list_groups(c, "orders", &json), 0);
    CHECK(strcmp(json, "{\"stream\":\"orders\",\"groups\":[]}") == 0);
    free(json);
    const char *ev = "{\"id\":\"a\",\"n\":1}\n{\"id\":\"b\",\"n\":2}\n";
    r = http_ex(s.port, "POST", "/v1/streams/orders/events", "application/x-ndjson",
                "Authorization: Bearer admin-token-0001\r\n", ev, strlen(ev));
    CHECK_EQ(r.status, 202);
    free(r.body);
    r = http_ex(s.port, "POST", "/v1/streams/orders/groups/g1/poll?member=m&max=1&lease_ms=100", NULL,
                "Authorization: Bearer admin-token-0001\r\n", "", 0);
    CHECK_EQ(r.status, 200);
    free(r.body);
    CHECK_EQ(spillway_client_list_groups(c, "orders", &json), 0);
    CHECK(strstr(json, "{\"group\":\"g1\",\"partitions\":3,") != NULL);
    r = http_ex(s.port, "GET", "/v1/streams/orders/groups", NULL, "Authorization: Bearer admin-token-0001\r\n",
                NULL, 0);
    CHECK_EQ(r.status, 200);
    CHECK(r.body_len == strlen(json) + 1 && memcmp(r.body, json, strlen(json)) == 0);
    free(r.body);
    free(json);
    CHECK_EQ(spillway_client_list_groups(c, "nothing", &json), SPILLWAY_ERR_NOT_FOUND);
    CHECK_EQ(spillway_client_list_groups(c, "", &json), SPILLWAY_ERR_INVALID);

    /* resets: refused while a lease is held (g2's lasts 30 s), applied once
     * none is (g1's lasts 100 ms) */
    r = http_ex(s.port, "POST", "/v1/streams/orders/groups/g2/poll?member=m&max=1", NULL,
                "Authorization: Bearer admin-token-0001\r\n", "", 0);
    CHECK_EQ(r.status, 200);
    free(r.body);
    CHECK_EQ(spillway_client_reset_group(c, "orders", "g2", "{\"to\":\"latest\"}", &json), SPILLWAY_ERR_CONFLICT);
    CHECK(strstr(spillway_client_last_error(c), "active members") != NULL);
    int rr = SPILLWAY_ERR_CONFLICT;
    for (int i = 0; i < 500 && rr == SPILLWAY_ERR_CONFLICT; i++) {
        rr = spillway_client_reset_group(c, "orders", "g1", "{\"to\":\"latest\"}", &json);
        if (rr == SPILLWAY_ERR_CONFLICT)
            usleep(10000);
    }
    CHECK_EQ(rr, 0);
    CHECK(strstr(json, "{\"stream\":\"orders\",\"group\":\"g1\",\"partitions\":[{\"partition\":0,\"before\":0,") !=
          NULL);
    free(json);
    CHECK_EQ(spillway_client_list_groups(c, "orders", &json), 0);
    CHECK(strstr(json, "{\"group\":\"g1\",\"partitions\":3,\"lag\":0,") != NULL); /* at the end now */
    free(json);
    CHECK_EQ(spillway_client_reset_group(c, "orders", "g1", "{\"to\":\"sideways\"}", &json),
             SPILLWAY_ERR_BAD_REQUEST);
    CHECK(strstr(spillway_client_last_error(c), "to must be") != NULL);
    CHECK_EQ(spillway_client_reset_group(c, "orders", "nosuch", "{\"to\":0}", &json), SPILLWAY_ERR_NOT_FOUND);
    CHECK_EQ(spillway_client_reset_group(c, "orders", "g1", "", &json), SPILLWAY_ERR_INVALID);
    spillway_client_close(c);

    /* a token without admin may not create, and may describe */
    CHECK_EQ(spillway_client_connect(addr, 10000, &c), 0);
    CHECK_EQ(spillway_client_auth(c, "producer-tok-001"), 0);
    CHECK_EQ(spillway_client_create_stream(c, "mine", "{}", NULL), SPILLWAY_ERR_FORBIDDEN);
    CHECK_EQ(spillway_client_reset_group(c, "orders", "g1", "{\"to\":0}", &json), SPILLWAY_ERR_FORBIDDEN);
    CHECK_EQ(spillway_client_describe_stream(c, "orders", &json), 0);
    free(json);
    spillway_client_close(c);

    /* bench over the binary protocol: no HTTP address at all */
    cli_out o = cli_run(bin,
                        "bench --protocol bin --server 127.0.0.1:%d --token admin-token-0001 --stream viabin "
                        "--partitions 2 --events 200 --clients 2 --batch 50",
                        s.binport);
    if (o.rc != 0)
        fprintf(stderr, "%s\n", o.text);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "BENCH") != NULL);
    free(o.text);

    /* durable: after a restart */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    srv_start(&s, bin, data, extra);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s.binport);
    CHECK_EQ(spillway_client_connect(addr, 10000, &c), 0);
    CHECK_EQ(spillway_client_auth(c, "admin-token-0001"), 0);
    CHECK_EQ(spillway_client_describe_stream(c, "viabin", &json), 0);
    CHECK(strstr(json, "\"partitions\":2") != NULL);
    free(json);
    CHECK_EQ(spillway_client_create_stream(c, "orders", def, &created), 0);
    CHECK_EQ(created, 0);
    spillway_client_close(c);

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_bin_streams: ok");
    return 0;
}
