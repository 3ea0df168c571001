/*
 * Bearer-token authentication and the permission check of HTTP requests
 * (auth_http.h); the tokens themselves are svc/auth.c's.
 */
#include "http/auth_http.h"

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
        spw_http_error(req, 401, "unauthorized", WWW_AUTH,
                       "this server needs a token: send the header Authorization: Bearer <token>");
        return 0;
    }
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) {
        atomic_fetch_add(&a->unauthorized, 1);
        spw_http_error(req, 401, "unauthorized", WWW_AUTH,
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
        spw_http_error(req, 401, "unauthorized", WWW_AUTH_INVALID, "the token is not valid");
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
    if (!ar->who || spw_token_allows(ar->who, perms, name, len))
        return 1;
    atomic_fetch_add(&a->forbidden, 1);
    if ((ar->who->perms & perms) != perms)
        spw_http_error(req, 403, "forbidden", NULL, "the token of tenant %s lacks the %s permission", ar->who->tenant,
                       spw_perm_name(perms));
    else
        spw_http_error(req, 403, "forbidden", NULL, "the token of tenant %s may not use stream %.*s", ar->who->tenant,
                       (int)len, name);
    return 0;
}

void spw_auth_req_done(spw_auth_req *ar)
{
    spw_tokens_put(ar->t);
    ar->t = NULL;
    ar->who = NULL;
}
