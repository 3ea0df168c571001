/*
 * The key routes of versioned streams over HTTP (docs/api.md "Event
 * sourcing"), over the key service (svc/keys.h):
 *
 *   GET /v1/streams/S/keys/K                     {"key","version","partition","offset"}
 *   GET /v1/streams/S/keys/K/events?from_version=V&limit=N   NDJSON in version order
 *   PUT|GET /v1/streams/S/keys/K/snapshot        {"version":v,"state":{..}}
 *
 * K is percent-decoded (a key may hold '/' as %2F); a key that does not
 * decode, or is not UTF-8 text without control characters, is 400 bad_key.
 */
#include "http/api_int.h"
#include "svc/keys.h"
#include "svc/produce.h"

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Percent-decodes p[0..n) into out (cap bytes): its length, or -1. */
static long decode_key(const char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int h = hexv(p[i + 1]), l = hexv(p[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            c = (char)(h << 4 | l);
            i += 2;
        }
        if (o >= cap)
            return -1;
        out[o++] = c;
    }
    return (long)o;
}

typedef struct ev_out {
    spw_buf *b;
    spw_stream *s;
} ev_out;

static int put_event(void *arg, uint32_t part, const spw_record_view *rv)
{
    ev_out *x = arg;
    spw_buf_xprintf(x->b,
                    "{\"partition\":%" PRIu32 ",\"offset\":%" PRIu64 ",\"id\":\"%" PRIu64 "\",\"ts\":%" PRId64
                    ",\"version\":%" PRIu64 ",\"key\":",
                    part, rv->offset, rv->id, rv->ts, rv->version);
    spw_json_xput_str(x->b, (const char *)rv->key, (size_t)rv->key_len);
    spw__api_out_raw(x->b, ",\"value\":", 9);
    if (x->s->cfg.format_bytes)
        spw_json_xput_b64(x->b, rv->value, rv->value_len);
    else
        spw__api_out_raw(x->b, rv->value, rv->value_len);
    spw__api_out_raw(x->b, "}\n", 2);
    return x->b->len > (8u << 20); /* an answer stops after about 8 MiB, as reads do */
}

void spw__api_handle_keys(spw_api *api, spw_http_req *req, const char *name, size_t nl, const char *rest,
                          const spw_auth_req *ar)
{
    /* rest: "K", "K/events" or "K/snapshot" */
    const char *slash = strchr(rest, '/');
    size_t kl_raw = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *what = slash ? slash + 1 : "";
    int is_events = strcmp(what, "events") == 0, is_snap = strcmp(what, "snapshot") == 0;
    if (slash && !is_events && !is_snap)
        return spw_http_answer(req, SPW_SC_NOT_FOUND, NULL, "no such endpoint: %s", req->path);
    if (req->method != SPW_HTTP_GET && !(is_snap && req->method == SPW_HTTP_PUT))
        return spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, is_snap ? "Allow: GET, PUT\r\n" : "Allow: GET\r\n",
                               "use %s", is_snap ? "GET or PUT" : "GET");
    char msg[400];
    spw_sc sc = spw_svc_names(name, nl, NULL, 0, NULL, 0, msg, sizeof msg);
    if (sc != SPW_SC_OK)
        return spw_http_answer(req, sc, NULL, "%s", msg);
    char key[1024];
    long kl = decode_key(rest, kl_raw, key, sizeof key);
    if (kl <= 0 || !spw__key_text_ok((const uint8_t *)key, (size_t)kl))
        return spw_http_answer(req, SPW_SC_BAD_KEY, NULL,
                               "the key must be 1 to 1024 bytes of percent-encoded UTF-8 text without control "
                               "characters");
    spw_stream *s;
    unsigned need = req->method == SPW_HTTP_PUT ? SPW_PERM_PRODUCE : SPW_PERM_CONSUME;
    sc = spw_svc_stream_for(api->svc.cat, api->svc.auth, ar->who, name, nl, need, &s, msg, sizeof msg);
    if (sc != SPW_SC_OK)
        return spw_http_answer(req, sc, NULL, "%s", msg);
    spw_buf b = SPW_BUF_INIT;
    if (!slash) {
        spw_es_key k;
        sc = spw_keys_get(s, key, (size_t)kl, &k, msg, sizeof msg);
        if (sc == SPW_SC_OK) {
            spw_buf_xprintf(&b, "{\"key\":");
            spw_json_xput_str(&b, key, (size_t)kl);
            spw_buf_xprintf(&b, ",\"version\":%" PRIu64 ",\"partition\":%" PRIu32 ",\"offset\":%" PRIu64 "}\n",
                            k.version, k.partition, k.offset);
            spw_http_respond(req, 200, NULL, "application/json", b.p, b.len);
        }
    } else if (is_events) {
        uint64_t from = 1, limit = 100;
        int hf = spw__api_query_u64(req->query, "from_version", &from);
        int hl = spw__api_query_u64(req->query, "limit", &limit);
        if (hf < 0 || hl < 0 || (hf > 0 && (from < 1 || from > SPW_VERSION_MAX))) {
            sc = SPW_SC_BAD_PARAMETER;
            snprintf(msg, sizeof msg, "from_version must be an integer from 1 to 9007199254740991, limit a "
                                      "non-negative integer");
        } else {
            if (limit == 0 || limit > 10000)
                limit = limit == 0 ? 1 : 10000;
            ev_out x = {.b = &b, .s = s};
            uint64_t next = from;
            sc = spw_keys_events(s, key, (size_t)kl, from, (uint32_t)limit, put_event, &x, &next, msg, sizeof msg);
            if (sc == SPW_SC_OK) {
                char h[96];
                snprintf(h, sizeof h, "Spillway-Next-Version: %" PRIu64 "\r\n", next);
                spw_http_respond(req, 200, h, "application/x-ndjson", b.p, b.len);
            }
        }
    } else if (req->method == SPW_HTTP_PUT) {
        sc = spw_keys_snapshot_put(s, key, (size_t)kl, (const char *)req->body.p, req->body.len, msg, sizeof msg);
        if (sc == SPW_SC_OK)
            spw_http_respond(req, 204, NULL, NULL, NULL, 0);
    } else {
        uint64_t v = 0;
        spw_buf state = SPW_BUF_INIT;
        sc = spw_keys_snapshot_get(s, key, (size_t)kl, &v, &state, msg, sizeof msg);
        if (sc == SPW_SC_OK) {
            spw_buf_xprintf(&b, "{\"key\":");
            spw_json_xput_str(&b, key, (size_t)kl);
            spw_buf_xprintf(&b, ",\"version\":%" PRIu64 ",\"state\":", v);
            spw__api_out_raw(&b, state.p, state.len);
            spw__api_out_raw(&b, "}\n", 2);
            spw_http_respond(req, 200, NULL, "application/json", b.p, b.len);
        }
        spw_buf_fini(&state);
    }
    if (sc != SPW_SC_OK)
        spw_http_answer(req, sc, NULL, "%s", msg);
    spw_buf_fini(&b);
    spw_stream_put(s);
}
