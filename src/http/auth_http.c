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

/* The token of an "Authorization: Bearer TOKEN" value: its bytes in
 * *tok, *n; NULL when the value is not one. */
static const char *bearer(const char *h, size_t *n)
{
    while (*h == ' ' || *h == '\t')
        h++;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return NULL;
    const char *tok = h + 7;
    while (*tok == ' ' || *tok == '\t')
        tok++;
    size_t k = strlen(tok);
    while (k && (tok[k - 1] == ' ' || tok[k - 1] == '\t'))
        k--;
    *n = k;
    return tok;
}

int spw_auth_http_valid(spw_auth *a, const spw_http_req *req)
{
    if (!a)
        return 1;
    size_t n;
    const char *tok = req->authorization_cut ? NULL : bearer(req->authorization, &n);
    if (!tok)
        return 0;
    spw_tokens *t = spw_auth_acquire(a, NULL);
    int ok = spw_tokens_find(t, tok, n) != NULL;
    spw_tokens_put(t);
    return ok;
}

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
