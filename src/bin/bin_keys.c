/*
 * KEY_EVENTS and SNAPSHOT_PUT over the binary protocol (docs/protocol.md
 * "Keys of versioned streams"): decoders and encoders over the key service
 * (svc/keys.h), the same requests as HTTP's /keys routes.
 */
#include "bin/bin_int.h"
#include "svc/keys.h"

typedef struct ev_sink {
    spw_buf *b;
    uint32_t n;
} ev_sink;

static int add_event(void *arg, uint32_t part, const spw_record_view *rv)
{
    (void)part;
    ev_sink *x = arg;
    spw_key_event e = {.version = rv->version, .offset = rv->offset, .ts = rv->ts, .value = rv->value,
                       .value_len = rv->value_len};
    if (spw_key_events_resp_add(x->b, &e))
        abort(); /* spw_buf: bounded by max_records and the 8 MiB stop below */
    x->n++;
    return x->b->len > (8u << 20);
}

void spw__bin_handle_key_events(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_key_events_req q;
    const char *why;
    if (spw_key_events_req_decode(body, len, &q, &why))
        return spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
    if (!spw__key_text_ok(q.key, q.key_len))
        return spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_KEY, 0,
                                "keys must be UTF-8 text without control characters");
    spw_sc sc;
    spw_stream *s = spw__bin_stream(c, h, q.stream, q.stream_len, SPW_PERM_CONSUME, &sc);
    if (!s)
        return;
    char msg[400];
    spw_es_key k;
    uint64_t sv = 0, from = q.from_version;
    spw_buf state = SPW_BUF_INIT, ans = SPW_BUF_INIT;
    sc = spw_keys_get(s, q.key, q.key_len, &k, msg, sizeof msg);
    if (sc == SPW_SC_OK && from == 0) {
        sc = spw_keys_snapshot_get(s, q.key, q.key_len, &sv, &state, msg, sizeof msg);
        if (sc == SPW_SC_NO_SNAPSHOT) {
            sc = SPW_SC_OK;
            sv = 0;
            state.len = 0;
        }
        from = sv + 1;
    }
    size_t count_at = 0;
    ev_sink x = {.b = &ans};
    if (sc == SPW_SC_OK && spw_key_events_resp_begin(&ans, k.version, sv, state.p, (uint32_t)state.len, &count_at))
        abort();
    if (sc == SPW_SC_OK)
        sc = spw_keys_events(s, q.key, q.key_len, from, q.max_records, add_event, &x, NULL, msg, sizeof msg);
    if (sc != SPW_SC_OK) {
        spw__bin_send_sc(c, h->opcode, h->request_id, sc, 0, "%s", msg);
    } else {
        spw_key_events_resp_set_count(&ans, count_at, x.n);
        size_t start;
        int e = spw_frame_begin(&c->out, h->opcode, SPW_FLAG_RESPONSE, h->request_id, &start);
        if (!e)
            e = spw_answer_ok(&c->out);
        if (!e)
            e = spw_buf_reserve(&c->out, c->out.len + ans.len);
        if (!e) {
            memcpy(c->out.p + c->out.len, ans.p, ans.len);
            c->out.len += ans.len;
            spw_frame_finish(&c->out, start);
        } else {
            spw__bin_conn_close(c);
        }
    }
    spw_buf_fini(&state);
    spw_buf_fini(&ans);
    spw_stream_put(s);
}

void spw__bin_handle_snapshot_put(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_snapshot_put_req q;
    const char *why;
    if (spw_snapshot_put_req_decode(body, len, &q, &why))
        return spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
    if (!spw__key_text_ok(q.key, q.key_len))
        return spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_KEY, 0,
                                "keys must be UTF-8 text without control characters");
    spw_sc sc;
    spw_stream *s = spw__bin_stream(c, h, q.stream, q.stream_len, SPW_PERM_PRODUCE, &sc);
    if (!s)
        return;
    char msg[400];
    sc = spw_keys_snapshot_store(s, q.key, q.key_len, q.version, (const char *)q.state, q.state_len, msg, sizeof msg);
    if (sc != SPW_SC_OK) {
        spw__bin_send_sc(c, h->opcode, h->request_id, sc, 0, "%s", msg);
    } else {
        size_t start;
        if (spw_frame_begin(&c->out, h->opcode, SPW_FLAG_RESPONSE, h->request_id, &start) || spw_answer_ok(&c->out))
            spw__bin_conn_close(c);
        else
            spw_frame_finish(&c->out, start);
    }
    spw_stream_put(s);
}
