/*
 * A small blocking HTTP/1.1 client for the command-line tools (bench,
 * produce, consume, stream): one keep-alive connection per spw_httpc, with
 * pipelining left to the caller (send several requests, then read the
 * answers in order). Responses are framed by Content-Length, by chunked
 * transfer coding (the server does not use it today, but a proxy may), or by
 * the connection closing. Nothing here is thread-safe; use one spw_httpc per
 * thread.
 *
 * Errors: functions return -1 with errno set (ECONNRESET when the peer
 * closed the connection early, EPROTO for a response that is not HTTP/1.x).
 *
 * HTTPS (an https:// server address, c->tls): each connection runs a TLS
 * handshake (1.2 or later) after connecting, verifying the server's
 * certificate against c->cacert (a PEM file of CA certificates; "" = the
 * system's) and its name against c->host; a failed handshake sets errno
 * EPROTO and the reason in c->tls_err. Reads and writes then go through
 * the session. The non-blocking callers that drive c->fd themselves
 * (bench) read and write through spw_httpc_io_recv/spw_httpc_io_send, so
 * they speak HTTPS too (the handshake is made, blocking, by
 * spw_httpc_connect).
 */
#ifndef SPW_HTTPC_H
#define SPW_HTTPC_H

#include <stddef.h>
#include <sys/types.h>

#include "core/buf.h"

#define SPW_HTTPC_TOKEN_MAX 1024

typedef struct spw_httpc {
    char host[256];
    char port[16];
    int fd;          /* -1 when not connected */
    int timeout_s;   /* receive timeout per recv (SO_RCVTIMEO); 0 = none */
    spw_buf in;      /* bytes received, starting with the current response */
    size_t consumed; /* bytes of in that belong to the last response read */
    char auth[SPW_HTTPC_TOKEN_MAX + 32]; /* "Authorization: Bearer T\r\n" sent with every request, or "" */
    int tls;             /* https: TLS on every connection */
    char cacert[1024];   /* CA file verifying the server ("" = the system's CAs) */
    char tls_err[512];   /* why the last handshake failed */
    struct ssl_ctx_st *ctx; /* made at the first TLS connection, freed by spw_httpc_close */
    struct ssl_st *ssl;     /* the connection's session */
} spw_httpc;

/* One response. Every pointer points into the client's buffer and stays
 * valid until the next spw_httpc_read/request/close on the same client. */
typedef struct spw_httpc_resp {
    int status;
    const char *head; /* status line and header lines, up to the blank line */
    size_t head_len;
    const char *body;
    size_t body_len;
    int close; /* the server will close the connection after this response */
} spw_httpc_resp;

/*
 * Splits "HOST:PORT", "HOST" (port 7700), "http://HOST[:PORT][/]" into host
 * and port. Returns 0, or -1 if the text is not one of those (https is not
 * taken here: -1).
 */
int spw_httpc_parse_server(const char *s, char *host, size_t host_cap, char *port, size_t port_cap);
/* The same, also taking "https://HOST[:PORT][/]" (*tls then 1, else 0). */
int spw_httpc_parse_server_tls(const char *s, char *host, size_t host_cap, char *port, size_t port_cap, int *tls);

/* Sets up c for host:port (copied) without connecting. */
void spw_httpc_init(spw_httpc *c, const char *host, const char *port);
/* Sends "Authorization: Bearer token" with every request from now on
 * (NULL or "": none). Returns 0, or -1 if the token is longer than
 * SPW_HTTPC_TOKEN_MAX or holds anything but visible ASCII. */
int spw_httpc_set_token(spw_httpc *c, const char *token);
/* Closes the connection (if any) and frees the buffer; c can be reused
 * (host, port and token stay). */
void spw_httpc_close(spw_httpc *c);

/*
 * Connects (closing any previous connection), trying again every 100 ms for
 * up to wait_ms while the server refuses (wait_ms 0: one attempt). Sets
 * TCP_NODELAY and a receive timeout of c->timeout_s. Returns 0 or -1.
 */
int spw_httpc_connect(spw_httpc *c, int wait_ms);

/*
 * One send or recv on the connection (through its TLS session with
 * https), for callers that make c->fd non-blocking and wait for it
 * themselves: bytes sent or received (recv: 0 at the end), or -1 with
 * errno (EAGAIN: not now — with TLS a send is then called again with the
 * same bytes, and either direction may be what the session waits for).
 */
ssize_t spw_httpc_io_send(spw_httpc *c, const void *p, size_t n);
ssize_t spw_httpc_io_recv(spw_httpc *c, void *p, size_t n);

/* Sends all n bytes. Returns 0 or -1. REQUIRES: connected. */
int spw_httpc_send(spw_httpc *c, const void *p, size_t n);

/*
 * Reads the next response (the bytes of a following one are kept for the
 * next call). Returns the status, or -1 if the connection failed first.
 */
int spw_httpc_read(spw_httpc *c, spw_httpc_resp *r);

/*
 * The same from the bytes already in c->in, for callers that do their own
 * (non-blocking) reading: returns the status of a whole buffered response
 * (r as above), 0 when more bytes are needed — c->in then has at least
 * 4 KiB free past c->in.len to receive into — or -1 (errno EPROTO,
 * EMSGSIZE, ENOMEM; ECONNRESET if eof and the response is incomplete).
 * eof: the peer has closed the connection.
 */
int spw_httpc_parse(spw_httpc *c, int eof, spw_httpc_resp *r);

/*
 * One request and its answer on the keep-alive connection, connecting
 * first if needed (waiting up to wait_ms for the server). If a kept-alive
 * connection turns out to be closed before any byte of the answer, it
 * reconnects and sends once more (safe: the server had not read it).
 * ctype and extra_headers (lines each ending "\r\n") may be NULL. Returns
 * the status or -1.
 */
int spw_httpc_request(spw_httpc *c, const char *method, const char *target, const char *ctype,
                      const char *extra_headers, const void *body, size_t body_len, int wait_ms,
                      spw_httpc_resp *r);

/*
 * Formats the request head for method/target into out (at most cap bytes):
 * request line, Host, Content-Type (if ctype), Content-Length (if body_len
 * or a method that carries a body), Authorization (if a token is set),
 * extra headers, blank line. Returns its
 * length, or -1 if it does not fit.
 */
int spw_httpc_head(const spw_httpc *c, char *out, size_t cap, const char *method, const char *target,
                   const char *ctype, const char *extra_headers, size_t body_len);

/* Finds a header of r (case-insensitive name, no colon). Returns its value
 * (spaces trimmed, not NUL-terminated) and sets *len, or NULL. */
const char *spw_httpc_header(const spw_httpc_resp *r, const char *name, size_t *len);

#endif
