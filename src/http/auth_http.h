/*
 * The tokens (svc/auth.h) over HTTP: a request authenticates with its
 * "Authorization: Bearer TOKEN" header, and a refusal is answered here,
 * 401 or 403, counted in the spw_auth's unauthorized / forbidden counters.
 * The binary protocol logs in with AUTH instead (spw_auth_session).
 */
#ifndef SPW_AUTH_HTTP_H
#define SPW_AUTH_HTTP_H

#include "http/http.h"
#include "svc/auth.h"


/* What a request authenticated as; who is NULL without a tokens file. */
typedef struct spw_auth_req {
    spw_tokens *t;
    const spw_token *who;
} spw_auth_req;

/*
 * Authenticates req by its "Authorization: Bearer TOKEN" header. a NULL:
 * returns 1 with ar->who NULL (no tokens configured). Else 1 with ar->who
 * set and req->tenant filled (release ar with spw_auth_req_done), or 0
 * after answering 401 (code "unauthorized", WWW-Authenticate: Bearer).
 */
int spw_auth_http(spw_auth *a, spw_http_req *req, spw_auth_req *ar);
/* Does req's Authorization header hold a valid token (1; or a NULL:
 * no tokens configured)? Answers nothing: for the check made when a
 * request's headers are in, before its body is kept. */
int spw_auth_http_valid(spw_auth *a, const spw_http_req *req);
/* Is the request allowed perms on stream name? 1 yes (or no tokens
 * configured), 0 after answering 403 (code "forbidden"). */
int spw_auth_http_allow(spw_auth *a, const spw_auth_req *ar, spw_http_req *req, unsigned perms, const char *name,
                        size_t len);
void spw_auth_req_done(spw_auth_req *ar);

#endif
