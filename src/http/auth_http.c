/*
 * Bearer-token authentication and the permission check of HTTP requests
 * (auth_http.h); the tokens themselves are svc/auth.c's.
 */
#include "http/auth_http.h"
#include "svc/request.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define WWW_AUTH "WWW-Authenticate: Bearer realm=\"spillway\"\r\n"
#define WWW_AUTH_INVALID "WWW-Authenticate: Bearer realm=\"spillway\", error=\"invalid_token\"\r\n"

int spw_auth_http(spw_auth *a, spw_http_req *req, spw_auth_req *ar)
{
    ar->t = NULL;
    ar->who = NULL;
    if (!a)
        return 1;
    const char *h = req->authorization;
    while (*h == ' ' || *h == '\t')
        h++;
    if (!*h) {
        atomic_fetch_add(&a->unauthorized, 1);
        spw_http_answer(req, SPW_SC_UNAUTHORIZED, WWW_AUTH,
                        "this server needs a token: send the header Authorization: Bearer <token>");
        return 0;
    }
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) {
        atomic_fetch_add(&a->unauthorized, 1);
        spw_http_answer(req, SPW_SC_UNAUTHORIZED, WWW_AUTH,
                        "only bearer tokens are accepted: send the header Authorization: Bearer <token>");
        return 0;
    }
    const char *tok = h + 7;
    while (*tok == ' ' || *tok == '\t')
        tok++;
    size_t n = strlen(tok);
    while (n && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
        n--;
    spw_tokens *t = spw_auth_acquire(a, NULL);
    /* A value longer than the field was cut (http/http.h): never a token. */
    const spw_token *e = req->authorization_cut ? NULL : spw_tokens_find(t, tok, n);
    if (!e) {
        spw_tokens_put(t);
        atomic_fetch_add(&a->unauthorized, 1);
        spw_http_answer(req, SPW_SC_UNAUTHORIZED, WWW_AUTH_INVALID, "the token is not valid");
        return 0;
    }
    ar->t = t;
    ar->who = e;
    snprintf(req->tenant, sizeof req->tenant, "%s", e->tenant);
    return 1;
}

int spw_auth_http_allow(spw_auth *a, const spw_auth_req *ar, spw_http_req *req, unsigned perms, const char *name,
                        size_t len)
{
    char msg[300];
    spw_sc sc = spw_svc_allowed(a, ar->who, name, len, perms, msg, sizeof msg);
    if (sc == SPW_SC_OK)
        return 1;
    spw_http_answer(req, sc, NULL, "%s", msg);
    return 0;
}

void spw_auth_req_done(spw_auth_req *ar)
{
    spw_tokens_put(ar->t);
    ar->t = NULL;
    ar->who = NULL;
}
