/*
 * AUTH, METADATA, STREAM_DESCRIBE and STREAM_CREATE over the binary
 * protocol (docs/protocol.md), and the
 * checks every request makes before its own: spw__bin_who (is this
 * connection's login still valid) and spw__bin_stream (login, name,
 * permission, existence: svc/request.h). Both answer at once, on the
 * loop's thread; an error is answered here and the caller only stops.
 */
#include "bin/bin_int.h"
#include "core/workq.h"
#include "svc/streams.h"

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

/* ---- STREAM_DESCRIBE, STREAM_CREATE (svc/streams.h) ---- */

/* Appends an OK answer: opcode's frame, status 0, then body (or closes
 * the connection when there is no memory for it). */
static void send_ok(bconn *c, uint8_t opcode, uint64_t request_id, const spw_buf *body)
{
    size_t start;
    if (spw_frame_begin(&c->out, opcode, SPW_FLAG_RESPONSE, request_id, &start) || spw_answer_ok(&c->out) ||
        spw_buf_reserve(&c->out, c->out.len + body->len)) {
        spw__bin_conn_close(c);
        return;
    }
    memcpy(c->out.p + c->out.len, body->p, body->len);
    c->out.len += body->len;
    spw_frame_finish(&c->out, start);
}

void spw__bin_handle_stream_describe(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    const char *name, *why;
    uint16_t nl;
    if (spw_stream_describe_req_decode(body, len, &name, &nl, &why)) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    spw_stream *s = spw__bin_stream(c, h, name, nl, 0, NULL); /* as GET /v1/streams/NAME */
    if (!s)
        return;
    spw_buf json = SPW_BUF_INIT, ans = SPW_BUF_INIT;
    spw_svc_stream_json(s, 1, &json);
    spw_stream_put(s);
    if (spw_stream_describe_resp_encode(&ans, (const char *)json.p, json.len))
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_OVERLOADED, RETRY_AFTER_MS, "out of memory");
    else
        send_ok(c, h->opcode, h->request_id, &ans);
    spw_buf_fini(&json);
    spw_buf_fini(&ans);
}

/* A STREAM_CREATE between its request and its answer: the catalog's work
 * (directories, files, fsyncs) on an I/O worker, the answer on the loop;
 * counted in flight like a FETCH. */
typedef struct create_job {
    bconn *c;
    spw_svc *svc;
    uint64_t request_id;
    spw_stream_config cfg;
    spw_sc sc;
    int created;
    int in_place; /* answered inside the request's call: the frame loop flushes */
    char msg[400];
} create_job;

static void create_answer(void *arg)
{
    create_job *j = arg;
    bconn *c = j->c;
    c->inflight--;
    c->loop->inflight--;
    if (!c->closed) {
        if (j->sc != SPW_SC_OK) {
            spw__bin_send_sc(c, SPW_OP_STREAM_CREATE, j->request_id, j->sc, 0, "%s", j->msg);
        } else {
            spw_buf json = SPW_BUF_INIT, ans = SPW_BUF_INIT;
            spw_stream_config_json(&j->cfg, &json);
            if (spw_stream_create_resp_encode(&ans, (uint8_t)j->created, (const char *)json.p, json.len))
                spw__bin_conn_close(c);
            else
                send_ok(c, SPW_OP_STREAM_CREATE, j->request_id, &ans);
            spw_buf_fini(&json);
            spw_buf_fini(&ans);
        }
        if (!j->in_place)
            spw__bin_conn_flush(c);
    }
    spw_free(j);
}

static void create_worker(void *arg)
{
    create_job *j = arg;
    j->sc = spw_svc_stream_create(j->svc, &j->cfg, &j->created, j->msg, sizeof j->msg);
    spw__bin_loop_post(j->c->loop, create_answer, j);
}

void spw__bin_handle_stream_create(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_svc *svc = c->loop->srv->svc;
    const char *name, *def, *why;
    uint16_t nl;
    uint32_t dl;
    if (spw_stream_create_req_decode(body, len, &name, &nl, &def, &dl, &why)) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    const spw_token *who;
    if (!spw__bin_who(c, h, &who))
        return;
    char msg[400], nm[SPW_STREAM_NAME_MAX + 1];
    spw_sc sc = spw_svc_names(name, nl, NULL, 0, NULL, 0, msg, sizeof msg);
    if (sc == SPW_SC_OK)
        sc = spw_svc_allowed(svc->auth, who, name, nl, SPW_PERM_ADMIN, msg, sizeof msg);
    if (sc != SPW_SC_OK) {
        spw__bin_send_sc(c, h->opcode, h->request_id, sc, 0, "%s", msg);
        return;
    }
    memcpy(nm, name, nl);
    nm[nl] = 0;
    create_job *j = spw_xcalloc(1, sizeof *j);
    *j = (create_job){.c = c, .svc = svc, .request_id = h->request_id};
    sc = spw_svc_stream_parse(nm, def, dl, &j->cfg, msg, sizeof msg);
    if (sc != SPW_SC_OK) {
        spw_free(j);
        spw__bin_send_sc(c, h->opcode, h->request_id, sc, 0, "%s", msg);
        return;
    }
    c->inflight++;
    c->loop->inflight++;
    if (svc->io && spw_workq_submit(svc->io, create_worker, j) == 0)
        return;
    j->in_place = 1;
    j->sc = spw_svc_stream_create(svc, &j->cfg, &j->created, j->msg, sizeof j->msg);
    create_answer(j);
}
