/*
 * TLS for the client library (spillway.h: spillway_producer_config.tls_ca_file,
 * spillway_client_connect_tls): a client context that verifies the server's
 * certificate against a CA file (or the system's CAs) and its name, TLS
 * 1.2 at least, and the non-blocking I/O helpers both clients use. The
 * server side is src/net/tls.c.
 */
#include "client/client_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <time.h>

void *spw__client_tls_ctx(const char *ca_file)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int ok = ca_file && ca_file[0] ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                                   : SSL_CTX_set_default_verify_paths(ctx);
    ERR_clear_error();
    if (ok != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void spw__client_tls_ctx_free(void *ctx) { SSL_CTX_free(ctx); }

void *spw__client_tls_session(void *ctx, int fd, const char *host)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    struct in6_addr a; /* large enough for either family */
    int ok = SSL_set_fd(ssl, fd) == 1;
    if (ok && (inet_pton(AF_INET, host, &a) == 1 || inet_pton(AF_INET6, host, &a) == 1)) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
    } else if (ok) {
        SSL_set_tlsext_host_name(ssl, host);
        ok = SSL_set1_host(ssl, host) == 1;
    }
    if (!ok) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

void spw__client_tls_free(void *ssl) { SSL_free(ssl); }

/* SSL_get_error of r: 0 the peer closed, 1 wants readable, 2 writable,
 * -1 failed. */
static int ssl_result(SSL *ssl, int r)
{
    int e = SSL_get_error(ssl, r);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ)
        return 1;
    if (e == SSL_ERROR_WANT_WRITE)
        return 2;
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
        return 0;
    return -1;
}

int spw__client_tls_handshake(void *ssl)
{
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    if (r == 1)
        return 0;
    int w = ssl_result(ssl, r);
    return w == 1 ? POLLIN : w == 2 ? POLLOUT : -1;
}

/*
 * SSL_write writes with write(2), not send(MSG_NOSIGNAL): SIGPIPE is
 * blocked around it and one it raised is taken back, so a closed
 * connection is an error of the call and never a signal to the
 * application.
 */
ssize_t spw__client_tls_send(void *ssl, const void *p, size_t n)
{
    sigset_t pipe, old;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old);
    ERR_clear_error();
    int r = SSL_write(ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    int we = errno;
    if (r <= 0 && we == EPIPE && !sigismember(&old, SIGPIPE)) {
        struct timespec zero = {0};
        sigtimedwait(&pipe, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r > 0)
        return r;
    errno = we;
    int w = ssl_result(ssl, r);
    errno = w == 1 || w == 2 ? EAGAIN : ECONNRESET;
    return -1;
}

ssize_t spw__client_tls_recv(void *ssl, void *p, size_t n)
{
    ERR_clear_error();
    int r = SSL_read(ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    if (r > 0)
        return r;
    int w = ssl_result(ssl, r);
    if (w == 0)
        return 0;
    errno = w > 0 ? EAGAIN : ECONNRESET;
    return -1;
}

int spw__client_tls_pending(void *ssl) { return SSL_pending(ssl) > 0; }
