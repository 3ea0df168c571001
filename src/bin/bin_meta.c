/*
 * AUTH and METADATA over the binary protocol (docs/protocol.md), and the
 * checks every request makes before its own: spw__bin_who (is this
 * connection's login still valid) and spw__bin_stream (login, name,
 * permission, existence: svc/request.h). Both answer at once, on the
 * loop's thread; an error is answered here and the caller only stops.
 */
#include "bin/bin_int.h"

/* ---- AUTH ---- */

void spw__bin_handle_auth(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_auth *a = c->loop->srv->svc->auth;
    const char *tok, *why;
    uint16_t tl;
    if (spw_auth_req_decode(body, len, &tok, &tl, &why)) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    if (a) {
        if (spw_auth_session_login(a, &c->auth, tok, tl)) {
            c->tenant[0] = 0;
            atomic_fetch_add(&a->unauthorized, 1);
            spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_UNAUTHORIZED, 0,
                             "the token is not valid; this connection is not authenticated");
            return;
        }
        snprintf(c->tenant, sizeof c->tenant, "%s", c->auth.e->tenant);
    }
    size_t start;
    if (spw_frame_begin(&c->out, SPW_OP_AUTH, SPW_FLAG_RESPONSE, h->request_id, &start) ||
        spw_answer_ok(&c->out) || spw_auth_resp_encode(&c->out, c->tenant, strlen(c->tenant))) {
        spw__bin_conn_close(c);
        return;
    }
    spw_frame_finish(&c->out, start);
}

/*
 * With tokens configured: is this connection's login (still) valid? 1 go
 * on, with *who its token (NULL without tokens), 0 answered 401.
 */
int spw__bin_who(bconn *c, const spw_frame_hdr *h, const spw_token **who)
{
    spw_auth *a = c->loop->srv->svc->auth;
    *who = NULL;
    if (!a)
        return 1;
    *who = spw_auth_session_who(a, &c->auth);
    if (!*who) {
        c->tenant[0] = 0;
        atomic_fetch_add(&a->unauthorized, 1);
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_UNAUTHORIZED, 0, "%s",
                         c->auth.token_len ? "the token this connection authenticated with is no longer valid"
                                  : "this server needs a token: send AUTH first");
        return 0;
    }
    if (strcmp(c->tenant, (*who)->tenant) != 0)
        snprintf(c->tenant, sizeof c->tenant, "%s", (*who)->tenant);
    return 1;
}

/* The stream a request names, after the checks every request makes
 * (svc/request.h: login, name, permission, existence); NULL after the
 * error answer. sc_out (may be NULL) gets the code. */
spw_stream *spw__bin_stream(bconn *c, const spw_frame_hdr *h, const char *name, size_t len, unsigned perms,
                            spw_sc *sc_out)
{
    spw_svc *svc = c->loop->srv->svc;
    const spw_token *who;
    spw_stream *s = NULL;
    char msg[300];
    spw_sc sc = SPW_SC_UNAUTHORIZED;
    if (spw__bin_who(c, h, &who)) {
        sc = spw_svc_stream_for(svc->cat, svc->auth, who, name, len, perms, &s, msg, sizeof msg);
        if (sc != SPW_SC_OK)
            spw__bin_send_sc(c, h->opcode, h->request_id, sc, 0, "%s", msg);
    }
    if (sc_out)
        *sc_out = sc;
    return s;
}


/* ---- METADATA ---- */

typedef struct meta_ctx {
    spw_buf *b;
    uint32_t n;
    int oom;
    const spw_token *who; /* NULL: no tokens configured, every stream */
} meta_ctx;

static void meta_one(void *arg, spw_stream *s)
{
    meta_ctx *m = arg;
    if (m->who && !spw_token_sees(m->who, s->cfg.name, strlen(s->cfg.name)))
        return;
    uint32_t np = s->cfg.partitions;
    spw_meta_part *parts = spw_xmalloc(np * sizeof *parts);
    for (uint32_t i = 0; i < np; i++) {
        spw_part_state st;
        spw_part_state_get(s->parts[i], &st);
        /* end_offset: the written end; FETCH sees below durable_offset only
         * (docs/protocol.md, METADATA). */
        parts[i] = (spw_meta_part){st.start_offset, st.written_offset, st.durable_offset};
    }
    if (spw_metadata_stream_put(m->b, s->cfg.name, strlen(s->cfg.name), (uint8_t)s->cfg.format_bytes,
                                (uint8_t)s->cfg.ack, np, parts))
        m->oom = 1;
    m->n++;
    spw_free(parts);
}

void spw__bin_handle_metadata(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_svc *svc = c->loop->srv->svc;
    const char *name;
    uint16_t nl;
    const char *why;
    if (spw_metadata_req_decode(body, len, &name, &nl, &why)) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    spw_stream *one = NULL;
    if (nl) {
        one = spw__bin_stream(c, h, name, nl, 0, NULL);
        if (!one)
            return;
    }
    spw_buf ans = SPW_BUF_INIT;
    size_t fstart, count_at;
    meta_ctx m = {.b = &ans, .who = svc->auth ? spw_auth_session_who(svc->auth, &c->auth) : NULL};
    m.oom = spw_frame_begin(&ans, SPW_OP_METADATA, SPW_FLAG_RESPONSE, h->request_id, &fstart) ||
            spw_answer_ok(&ans);
    count_at = ans.len;
    m.oom |= spw_metadata_resp_head(&ans, 0) != 0;
    if (one) {
        meta_one(&m, one);
        spw_stream_put(one);
    } else {
        spw_catalog_each(svc->cat, meta_one, &m);
    }
    if (m.oom || spw_buf_reserve(&c->out, c->out.len + ans.len)) {
        spw_buf_fini(&ans);
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_OVERLOADED, RETRY_AFTER_MS, "out of memory");
        return;
    }
    memcpy(ans.p + count_at, &m.n, 4);
    spw_frame_finish(&ans, fstart);
    memcpy(c->out.p + c->out.len, ans.p, ans.len);
    c->out.len += ans.len;
    spw_buf_fini(&ans);
}
