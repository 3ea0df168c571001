/*
 * Test support for the binary protocol (docs/protocol.md): raw frames over
 * a socket — send a request, read an answer, decode its status. Every read
 * is bounded by the socket's peer closing; tests that need a timeout set
 * SO_RCVTIMEO themselves.
 */
#ifndef SPW_TEST_BINFRAME_H
#define SPW_TEST_BINFRAME_H

#include "core/buf.h"
#include "wire/frame.h"
#include "server.h"

typedef struct frame {
    spw_frame_hdr h;
    uint8_t *body;
    size_t len;
} frame;

/* One request frame: header with opcode and request id, then body. */
static inline void send_frame(int fd, uint8_t op, uint64_t id, const spw_buf *body)
{
    spw_buf b = SPW_BUF_INIT;
    size_t st;
    CHECK_OK(spw_frame_begin(&b, op, 0, id, &st));
    CHECK_OK(spw_buf_reserve(&b, b.len + body->len));
    memcpy(b.p + b.len, body->p, body->len);
    b.len += body->len;
    spw_frame_finish(&b, st);
    send_all(fd, b.p, b.len);
    spw_buf_fini(&b);
}

/* Reads exactly n bytes: 0, or -1 at EOF or error. */
static inline int recv_exact(int fd, void *p, size_t n)
{
    uint8_t *c = p;
    while (n) {
        ssize_t r = recv(fd, c, n, 0);
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Reads one answer (body malloc'ed into f->body); 0, or -1 at EOF. */
static inline int read_frame(int fd, frame *f)
{
    uint8_t h[16];
    if (recv_exact(fd, h, 16))
        return -1;
    CHECK_EQ(spw_frame_hdr_decode(h, 16, 64u << 20, &f->h), 0);
    CHECK(f->h.flags & SPW_FLAG_RESPONSE);
    f->len = f->h.length - 12;
    f->body = malloc(f->len + 1);
    CHECK(recv_exact(fd, f->body, f->len) == 0);
    return 0;
}

/* Status of an answer; the error's code word into code and its
 * retry_after_ms into *retry (either may be NULL). */
static inline int answer_status(const frame *f, char *code, uint32_t *retry)
{
    uint16_t st;
    const uint8_t *rest;
    size_t rl;
    spw_frame_error e;
    const char *why;
    CHECK_EQ(spw_answer_decode(f->body, f->len, &st, &rest, &rl, &e, &why), 0);
    if (st && code) {
        memcpy(code, e.code, e.code_len);
        code[e.code_len] = 0;
    }
    if (st && retry)
        *retry = e.retry_after_ms;
    if (st && getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "answer %u %.*s: %.*s\n", st, e.code_len, e.code, e.msg_len, e.msg);
    return st;
}

#endif
