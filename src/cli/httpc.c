/* A small blocking HTTP/1.1 client: see httpc.h. */
#include "cli/httpc.h"
#include "core/hostport.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

/* A response body larger than this is refused rather than buffered. */
#define HTTPC_BODY_MAX ((size_t)1 << 30)

int spw_httpc_parse_server_tls(const char *s, char *host, size_t host_cap, char *port, size_t port_cap, int *tls)
{
    *tls = strncasecmp(s, "https://", 8) == 0;
    if (*tls)
        s += 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        s += 7;
    size_t n = strcspn(s, "/");
    if (s[n] == '/' && s[n + 1] != 0)
        return -1; /* a path: not a server address */
    if (s[0] == '[') { /* "[IPV6]" or "[IPV6]:PORT" */
        char buf[300];
        if (n + 8 >= sizeof buf)
            return -1;
        memcpy(buf, s, n);
        buf[n] = 0;
        if (buf[n - 1] == ']') /* no port: the default */
            memcpy(buf + n, ":7700", 6);
        uint16_t pv;
        if (spw_hostport_parse(buf, host, host_cap, &pv, 0, NULL))
            return -1;
        if ((size_t)snprintf(port, port_cap, "%u", (unsigned)pv) >= port_cap)
            return -1;
        return 0;
    }
    const char *colon = memchr(s, ':', n);
    size_t hl = colon ? (size_t)(colon - s) : n;
    if (hl == 0 || hl >= host_cap || memchr(s, '@', n) || memchr(s, '[', n))
        return -1;
    for (size_t i = 0; i < hl; i++) /* a host name or an IPv4 literal */
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '.' || s[i] == '-' || s[i] == '_'))
            return -1;
    const char *p = colon ? colon + 1 : "7700";
    size_t pl = colon ? n - hl - 1 : 4;
    if (pl == 0 || pl >= port_cap || pl > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < pl; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    memcpy(host, s, hl);
    host[hl] = 0;
    memcpy(port, p, pl);
    port[pl] = 0;
    return 0;
}

int spw_httpc_parse_server(const char *s, char *host, size_t host_cap, char *port, size_t port_cap)
{
    int tls;
    if (strncasecmp(s, "https://", 8) == 0)
        return -1;
    return spw_httpc_parse_server_tls(s, host, host_cap, port, port_cap, &tls);
}

void spw_httpc_init(spw_httpc *c, const char *host, const char *port)
{
    memset(c, 0, sizeof *c);
    snprintf(c->host, sizeof c->host, "%s", host);
    snprintf(c->port, sizeof c->port, "%s", port);
    c->fd = -1;
    c->timeout_s = 60;
}

int spw_httpc_set_token(spw_httpc *c, const char *token)
{
    size_t n = token ? strlen(token) : 0;
    if (n > SPW_HTTPC_TOKEN_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)token[i] < 0x21 || (unsigned char)token[i] > 0x7e)
            return -1;
    if (n)
        snprintf(c->auth, sizeof c->auth, "Authorization: Bearer %s\r\n", token);
    else
        c->auth[0] = 0;
    return 0;
}

/* Closes the connection (and its session); the buffer stays. */
static void hang_up(spw_httpc *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

void spw_httpc_close(spw_httpc *c)
{
    hang_up(c);
    if (c->ctx)
        SSL_CTX_free(c->ctx);
    c->ctx = NULL;
    spw_buf_fini(&c->in);
    c->consumed = 0;
}

/* OpenSSL's first error into c->tls_err after what. */
static void tls_fail(spw_httpc *c, const char *what, long verify)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (verify != X509_V_OK)
        snprintf(buf, sizeof buf, "certificate verify failed: %s", X509_verify_cert_error_string(verify));
    else if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    else
        snprintf(buf, sizeof buf, "the server closed the connection (is it speaking TLS?)");
    ERR_clear_error();
    snprintf(c->tls_err, sizeof c->tls_err, "%s: %s", what, buf);
}

/* The TLS handshake on the connected fd (blocking, bounded by the
 * socket's receive timeout). 0, or -1 (errno EPROTO, c->tls_err). */
static int tls_start(spw_httpc *c, int fd)
{
    ERR_clear_error();
    if (!c->ctx) {
        c->ctx = SSL_CTX_new(TLS_client_method());
        if (!c->ctx) {
            tls_fail(c, "TLS", X509_V_OK);
            return errno = EPROTO, -1;
        }
        SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_mode(c->ctx, SSL_MODE_AUTO_RETRY);
        int ok = c->cacert[0] ? SSL_CTX_load_verify_locations(c->ctx, c->cacert, NULL)
                              : SSL_CTX_set_default_verify_paths(c->ctx);
        if (ok != 1) {
            char what[1200];
            snprintf(what, sizeof what, "CA file %s", c->cacert[0] ? c->cacert : "(the system's)");
            tls_fail(c, what, X509_V_OK);
            SSL_CTX_free(c->ctx);
            c->ctx = NULL;
            return errno = EPROTO, -1;
        }
    }
    c->ssl = SSL_new(c->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
        tls_fail(c, "TLS", X509_V_OK);
        return errno = EPROTO, -1;
    }
    /* The name checked: the host as given (an IP literal as an address). */
    struct in6_addr a; /* large enough for either family */
    if (inet_pton(AF_INET, c->host, &a) == 1 || inet_pton(AF_INET6, c->host, &a) == 1) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host);
    } else {
        SSL_set_tlsext_host_name(c->ssl, c->host);
        SSL_set1_host(c->ssl, c->host);
    }
    if (SSL_connect(c->ssl) != 1) {
        tls_fail(c, "TLS handshake", SSL_get_verify_result(c->ssl));
        SSL_free(c->ssl);
        c->ssl = NULL;
        return errno = EPROTO, -1;
    }
    return 0;
}

/* recv/send over the connection, through its session with TLS. */
static ssize_t io_recv(spw_httpc *c, void *p, size_t n)
{
    if (!c->ssl)
        return recv(c->fd, p, n, 0);
    ERR_clear_error();
    int r = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    if (e == SSL_ERROR_SYSCALL && errno == 0)
        return 0; /* EOF without close_notify: the framing says if it was cut */
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        errno = EAGAIN; /* the receive timeout */
    else if (e != SSL_ERROR_SYSCALL)
        errno = ECONNRESET;
    ERR_clear_error();
    return -1;
}

static ssize_t io_send(spw_httpc *c, const void *p, size_t n)
{
    if (!c->ssl)
        return send(c->fd, p, n, MSG_NOSIGNAL);
    /* SSL_write writes with write(2), not send(MSG_NOSIGNAL): SIGPIPE is
     * blocked around it and one it raised is taken back (a closed
     * connection is an error here, not the end of the process). */
    sigset_t pipe, old;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old);
    ERR_clear_error();
    int r = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    int we = errno;
    if (r <= 0 && we == EPIPE && !sigismember(&old, SIGPIPE)) {
        struct timespec zero = {0};
        sigtimedwait(&pipe, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = we;
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
        errno = EAGAIN; /* a non-blocking socket (bench): call again with the same bytes */
    else if (e != SSL_ERROR_SYSCALL || errno == 0)
        errno = ECONNRESET;
    ERR_clear_error();
    return -1;
}

ssize_t spw_httpc_io_send(spw_httpc *c, const void *p, size_t n) { return io_send(c, p, n); }

ssize_t spw_httpc_io_recv(spw_httpc *c, void *p, size_t n) { return io_recv(c, p, n); }

static int dial(spw_httpc *c)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(c->host, c->port, &hints, &ai) != 0) {
        errno = EHOSTUNREACH;
        return -1;
    }
    int fd = -1, e = ECONNREFUSED;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        errno = e;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->timeout_s > 0) {
        struct timeval tv = {.tv_sec = c->timeout_s};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    if (c->tls) {
        /* The handshake's writes bounded like its reads. */
        struct timeval tv = {.tv_sec = c->timeout_s > 0 ? c->timeout_s : 60};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (tls_start(c, fd)) {
            int e = errno;
            close(fd);
            errno = e;
            return -2; /* not worth trying again */
        }
    }
    return fd;
}

int spw_httpc_connect(spw_httpc *c, int wait_ms)
{
    hang_up(c);
    c->tls_err[0] = 0;
    c->in.len = 0;
    c->consumed = 0;
    for (int waited = 0;; waited += 100) {
        int fd = dial(c);
        if (fd >= 0) {
            c->fd = fd;
            return 0;
        }
        if (fd == -2 || waited >= wait_ms)
            return -1;
        int e = errno;
        usleep(100000);
        errno = e;
    }
}

int spw_httpc_send(spw_httpc *c, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = io_send(c, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = ECONNRESET;
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Header lookup in [head, head + len): value trimmed, or NULL. */
static const char *find_header(const char *head, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *end = head + len;
    const char *p = memchr(head, '\n', len); /* skip the status line */
    while (p && p + 1 < end) {
        p++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

const char *spw_httpc_header(const spw_httpc_resp *r, const char *name, size_t *len)
{
    return find_header(r->head, r->head_len, name, len);
}

/*
 * Chunked body starting at position at of in. Returns 1 when complete (the
 * body is then decoded in place at `at`, *blen its length, *end the first
 * byte after the message), 0 if more bytes are needed, -1 if malformed.
 */
static int dechunk(spw_buf *in, size_t at, size_t *blen, size_t *end)
{
    char *b = (char *)in->p;
    for (int pass = 0; pass < 2; pass++) {
        size_t pos = at, w = at;
        for (;;) {
            char *eol = memmem(b + pos, in->len - pos, "\r\n", 2);
            if (!eol)
                return pass ? -1 : 0;
            size_t size = 0;
            const char *q = b + pos;
            if (q == eol)
                return -1;
            for (; q < eol && *q != ';' && *q != ' '; q++) {
                int h = *q >= '0' && *q <= '9' ? *q - '0' : (*q | 0x20) >= 'a' && (*q | 0x20) <= 'f' ? (*q | 0x20) - 'a' + 10 : -1;
                if (h < 0 || size > HTTPC_BODY_MAX)
                    return -1;
                size = size * 16 + (size_t)h;
            }
            pos = (size_t)(eol - b) + 2;
            if (size == 0) {
                /* Trailers (ignored) end with an empty line. */
                size_t e;
                if (in->len - pos >= 2 && b[pos] == '\r' && b[pos + 1] == '\n') {
                    e = pos + 2;
                } else {
                    char *t = memmem(b + pos, in->len - pos, "\r\n\r\n", 4);
                    if (!t)
                        return pass ? -1 : 0;
                    e = (size_t)(t - b) + 4;
                }
                if (pass) {
                    *blen = w - at;
                    *end = e;
                    return 1;
                }
                break;
            }
            if (in->len - pos < size + 2)
                return pass ? -1 : 0;
            if (b[pos + size] != '\r' || b[pos + size + 1] != '\n')
                return -1;
            if (pass)
                memmove(b + w, b + pos, size);
            w += size;
            if (w - at > HTTPC_BODY_MAX)
                return -1;
            pos += size + 2;
        }
    }
    return -1;
}

/* Drops the last response read from the buffer. */
static void drop_consumed(spw_httpc *c)
{
    if (c->consumed) {
        memmove(c->in.p, c->in.p + c->consumed, c->in.len - c->consumed);
        c->in.len -= c->consumed;
        c->consumed = 0;
    }
}

int spw_httpc_parse(spw_httpc *c, int eof, spw_httpc_resp *r)
{
    spw_buf *in = &c->in;
    drop_consumed(c);
    for (;;) {
        char *he = in->len ? memmem(in->p, in->len, "\r\n\r\n", 4) : NULL;
        if (!he)
            break;
        const char *b = (const char *)in->p;
        size_t hl = (size_t)(he - b) + 4;
        if (hl < 13 || strncmp(b, "HTTP/1.", 7) != 0 || b[8] != ' ' || b[9] < '1' || b[9] > '5')
            return errno = EPROTO, -1;
        int status = atoi(b + 9);
        if (status < 200) {
            /* 100 Continue and friends: skip, the real answer follows. */
            memmove(in->p, in->p + hl, in->len - hl);
            in->len -= hl;
            continue;
        }
        size_t vl;
        const char *v;
        *r = (spw_httpc_resp){.status = status, .head = b, .head_len = hl - 2};
        v = find_header(b, hl - 2, "Connection", &vl);
        r->close = v && vl == 5 && strncasecmp(v, "close", 5) == 0;
        int done = 0;
        size_t end = 0;
        v = find_header(b, hl - 2, "Transfer-Encoding", &vl);
        if (status == 204 || status == 304) {
            end = hl;
            done = 1;
        } else if (v && vl >= 7 && strncasecmp(v + vl - 7, "chunked", 7) == 0) {
            int d = dechunk(in, hl, &r->body_len, &end);
            if (d < 0)
                return errno = EPROTO, -1;
            done = d;
        } else if ((v = find_header(b, hl - 2, "Content-Length", &vl))) {
            char num[24];
            if (vl == 0 || vl >= sizeof num)
                return errno = EPROTO, -1;
            memcpy(num, v, vl);
            num[vl] = 0;
            char *e;
            unsigned long long cl = strtoull(num, &e, 10);
            if (*e || num[0] == '-' || cl > HTTPC_BODY_MAX)
                return errno = EPROTO, -1;
            r->body_len = (size_t)cl;
            end = hl + (size_t)cl;
            done = in->len >= end;
            if (!done && spw_buf_reserve(in, end + 1))
                return errno = ENOMEM, -1;
        } else {
            /* No framing: the body runs to the end of the connection. */
            r->close = 1;
            if (eof) {
                r->body_len = in->len - hl;
                end = in->len;
                done = 1;
            }
        }
        if (!done)
            break;
        r->head = (const char *)in->p;
        r->body = (const char *)in->p + hl;
        c->consumed = end;
        return status;
    }
    if (eof)
        return errno = ECONNRESET, -1;
    if (in->len > HTTPC_BODY_MAX + 65536)
        return errno = EMSGSIZE, -1;
    if (in->cap - in->len < 4096 && spw_buf_reserve(in, in->cap ? in->cap * 2 : 4096))
        return errno = ENOMEM, -1;
    return 0;
}

int spw_httpc_read(spw_httpc *c, spw_httpc_resp *r)
{
    int eof = 0;
    for (long rounds = 0; rounds < (1L << 20); rounds++) {
        int st = spw_httpc_parse(c, eof, r);
        if (st != 0)
            return st;
        ssize_t n = io_recv(c, c->in.p + c->in.len, c->in.cap - c->in.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            eof = 1;
        c->in.len += (size_t)n;
    }
    return errno = EPROTO, -1;
}

int spw_httpc_head(const spw_httpc *c, char *out, size_t cap, const char *method, const char *target,
                   const char *ctype, const char *extra_headers, size_t body_len)
{
    int with_len = body_len || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
    int v6 = strchr(c->host, ':') != NULL; /* an IPv6 literal is bracketed in Host (RFC 3986) */
    int n = snprintf(out, cap, "%s %s HTTP/1.1\r\nHost: %s%s%s\r\n%s%s%s", method, target, v6 ? "[" : "", c->host,
                     v6 ? "]" : "", ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "");
    if (n < 0 || (size_t)n >= cap)
        return -1;
    int m = with_len ? snprintf(out + n, cap - (size_t)n, "Content-Length: %zu\r\n", body_len) : 0;
    if (m < 0 || (size_t)(n + m) >= cap)
        return -1;
    n += m;
    m = snprintf(out + n, cap - (size_t)n, "%s%s\r\n", c->auth, extra_headers ? extra_headers : "");
    if (m < 0 || (size_t)(n + m) >= cap)
        return -1;
    return n + m;
}

int spw_httpc_request(spw_httpc *c, const char *method, const char *target, const char *ctype,
                      const char *extra_headers, const void *body, size_t body_len, int wait_ms,
                      spw_httpc_resp *r)
{
    char head[4096];
    int hn = spw_httpc_head(c, head, sizeof head, method, target, ctype, extra_headers, body_len);
    if (hn < 0)
        return errno = E2BIG, -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        int fresh = c->fd < 0;
        if (fresh && spw_httpc_connect(c, wait_ms))
            return -1;
        int st = -1;
        if (spw_httpc_send(c, head, (size_t)hn) == 0 && (!body_len || spw_httpc_send(c, body, body_len) == 0))
            st = spw_httpc_read(c, r);
        if (st >= 0) {
            if (r->close)
                hang_up(c); /* the answer stays readable; the next request reconnects */
            return st;
        }
        int e = errno;
        hang_up(c);
        c->in.len = 0;
        c->consumed = 0;
        errno = e;
        /* A kept-alive connection the server had closed (idle timeout): once more. */
        if (fresh || (e != ECONNRESET && e != EPIPE))
            return -1;
    }
    return -1;
}
