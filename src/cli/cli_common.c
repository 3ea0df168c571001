/* Helpers shared by the client commands: see cmds.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmds.h"
#include "core/name.h"

int spw__cli_opt(const char *cmd, int argc, char **argv, int *i, const char *name, const char **v)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *v = a + n + 1;
        return 1;
    }
    if (a[n] != 0)
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "spillway %s: %s needs a value\n", cmd, name);
        return -1;
    }
    *v = argv[++*i];
    return 1;
}

int spw__cli_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s[0] || s[0] == '-' || s[0] == '+' || s[0] == ' ')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int spw__cli_server(const char *cmd, const char *server, spw_httpc *c)
{
    char host[256], port[16];
    const char *from = "--server";
    if (!server) {
        server = getenv("SPILLWAY_SERVER");
        from = "$SPILLWAY_SERVER";
        if (!server || !server[0])
            server = SPW_CLI_DEFAULT_SERVER;
    }
    int tls;
    if (spw_httpc_parse_server_tls(server, host, sizeof host, port, sizeof port, &tls)) {
        fprintf(stderr, "spillway %s: %s takes HOST:PORT, http://HOST:PORT or https://HOST:PORT, not '%s'\n", cmd,
                from, server);
        return 2;
    }
    spw_httpc_init(c, host, port);
    c->tls = tls;
    const char *ca = getenv("SPILLWAY_CACERT"); /* --cacert sets it (cli/main.c) */
    if (ca && ca[0]) {
        if (strlen(ca) >= sizeof c->cacert) {
            fprintf(stderr, "spillway %s: the CA file name is too long\n", cmd);
            return 2;
        }
        snprintf(c->cacert, sizeof c->cacert, "%s", ca);
    }
    return 0;
}

int spw__cli_token(const char *cmd, const char *opt, spw_httpc *c, const char **out)
{
    const char *t = opt ? opt : getenv("SPILLWAY_TOKEN");
    if (t && !t[0])
        t = NULL;
    *out = t;
    spw_httpc tmp;
    if (!c) {
        memset(&tmp, 0, sizeof tmp);
        c = &tmp;
    }
    if (spw_httpc_set_token(c, t)) {
        fprintf(stderr, "spillway %s: the token (%s) must be 1 to %d visible ASCII characters without spaces\n", cmd,
                opt ? "--token" : "$SPILLWAY_TOKEN", SPW_HTTPC_TOKEN_MAX);
        return 2;
    }
    return 0;
}

int spw__cli_stream_name_ok(const char *s)
{
    return spw_name_ok(s, strlen(s), SPW_NAME_MAX);
}

void spw__cli_conn_error(const char *cmd, const spw_httpc *c)
{
    int e = errno;
    int v6 = strchr(c->host, ':') != NULL; /* an IPv6 address, written in brackets */
    if (c->tls && c->tls_err[0])
        fprintf(stderr, "spillway %s: cannot reach the server at https://%s%s%s:%s: %s\n", cmd, v6 ? "[" : "",
                c->host, v6 ? "]" : "", c->port, c->tls_err);
    else
        fprintf(stderr, "spillway %s: cannot reach the server at %s%s%s:%s: %s\n", cmd, v6 ? "[" : "", c->host,
                v6 ? "]" : "", c->port, strerror(e));
}

int spw__cli_parse(const char *p, size_t n, spw_json_span *out)
{
    spw_json_ptr root = {0};
    spw_json_error e;
    const char *end;
    if (!p || spw_json_scan(p, p + n, &root, 1, out, &end, &e))
        return -1;
    return spw_json_ws(end, p + n) == p + n ? 0 : -1;
}

int spw__cli_list_array(const char *cmd, const char *body, size_t len, int json, const char *member, const char *what,
                        spw_json_span *arr)
{
    if (json) {
        fwrite(body, 1, len, stdout);
        return 1;
    }
    spw_json_span o;
    if (spw__cli_parse(body, len, &o) || !spw__cli_member(&o, member, arr)) {
        fprintf(stderr, "spillway %s: the server's answer is not a %s list\n", cmd, what);
        return -1;
    }
    return 0;
}

int spw__cli_member(const spw_json_span *obj, const char *name, spw_json_span *out)
{
    if (obj->type != SPW_JSON_OBJECT)
        return 0;
    spw_json_iter it;
    spw_json_span k, v;
    spw_json_iter_init(&it, obj);
    while (spw_json_iter_next(&it, &k, &v))
        if (spw_json_str_eq(&k, name)) {
            *out = v;
            return 1;
        }
    return 0;
}

int spw__cli_array_next(const spw_json_span *arr, const char **cursor, spw_json_span *elem)
{
    if (arr->type != SPW_JSON_ARRAY)
        return 0;
    const char *end = arr->p + arr->n - 1; /* the closing ']' */
    const char *p = *cursor ? *cursor : arr->p + 1;
    p = spw_json_ws(p, end);
    if (p < end && *p == ',')
        p = spw_json_ws(p + 1, end);
    if (p >= end)
        return 0;
    spw_json_ptr root = {0};
    spw_json_error e;
    const char *vend;
    if (spw_json_scan(p, end, &root, 1, elem, &vend, &e))
        return 0;
    *cursor = vend;
    return 1;
}

void spw__cli_str(const spw_json_span *obj, const char *name, char *out, size_t cap)
{
    spw_json_span v;
    out[0] = 0;
    if (!spw__cli_member(obj, name, &v) || v.type != SPW_JSON_STRING)
        return;
    char *tmp = spw_xmalloc(v.n + 1);
    long n = spw_json_unescape(&v, tmp, v.n);
    if (n < 0)
        n = 0;
    size_t k = (size_t)n < cap - 1 ? (size_t)n : cap - 1;
    memcpy(out, tmp, k);
    out[k] = 0;
    spw_free(tmp);
}

int64_t spw__cli_int(const spw_json_span *obj, const char *name, int64_t def)
{
    spw_json_span v;
    int64_t x;
    if (!spw__cli_member(obj, name, &v) || spw_json_int64(&v, &x))
        return def;
    return x;
}

int spw__cli_error_parts(const char *body, size_t len, char *msg, size_t msg_cap, char *code, size_t code_cap)
{
    spw_json_span o, v;
    if (spw__cli_parse(body, len, &o) || !spw__cli_member(&o, "error", &v))
        return -1;
    if (msg)
        spw__cli_str(&o, "error", msg, msg_cap);
    if (code)
        spw__cli_str(&o, "code", code, code_cap);
    return 0;
}

void spw__cli_server_error(const char *cmd, const spw_httpc_resp *r)
{
    char msg[600], code[64];
    if (spw__cli_error_parts(r->body, r->body_len, msg, sizeof msg, code, sizeof code) == 0) {
        fprintf(stderr, "spillway %s: %s (HTTP %d, %s)\n", cmd, msg, r->status, code[0] ? code : "no code");
    } else {
        size_t n = r->body_len;
        while (n && (r->body[n - 1] == '\n' || r->body[n - 1] == '\r'))
            n--;
        fprintf(stderr, "spillway %s: the server answered HTTP %d%s%.*s\n", cmd, r->status, n ? ": " : "",
                (int)(n > 300 ? 300 : n), r->body);
    }
    if (r->status == 401) /* what to do about it */
        fprintf(stderr, "spillway %s: the server wants a token: give --token T or set $SPILLWAY_TOKEN\n", cmd);
    else if (r->status == 403)
        fprintf(stderr, "spillway %s: the token given is not allowed this (its streams or permissions; "
                        "docs/operations.md \"Tokens\")\n",
                cmd);
}
