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

/* The first slot of an OK PRODUCE answer; the number of slots into
 * *nslots (may be NULL). */
static inline spw_produce_slot produce_slot0(const frame *f, uint32_t *nslots)
{
    spw_produce_resp pr;
    const char *why;
    CHECK_EQ(spw_produce_resp_decode(f->body + 2, f->len - 2, &pr, &why), 0);
    spw_produce_slot sl;
    spw_produce_resp_slot(&pr, 0, &sl);
    if (nslots)
        *nslots = pr.nslots;
    return sl;
}

/* GROUP_COMMIT of offset for group on stream's partition under lease, as
 * request id: the answer's status (its code word into code, may be NULL);
 * a committed answer must name the partition and offset asked for. */
static inline int bin_gcommit(int fd, uint64_t id, const char *stream, const char *group, uint32_t part,
                              uint64_t lease, uint64_t offset, char *code)
{
    spw_buf b = SPW_BUF_INIT;
    spw_gcommit_req q = {.stream = stream, .stream_len = (uint16_t)strlen(stream), .group = group,
                         .group_len = (uint16_t)strlen(group), .partition = part, .lease_id = lease, .offset = offset};
    CHECK_OK(spw_gcommit_req_encode(&b, &q));
    send_frame(fd, SPW_OP_GROUP_COMMIT, id, &b);
    spw_buf_fini(&b);
    frame f;
    CHECK_EQ(read_frame(fd, &f), 0);
    CHECK_EQ(f.h.opcode, SPW_OP_GROUP_COMMIT);
    int st = answer_status(&f, code, NULL);
    if (st == 0) {
        uint32_t p;
        uint64_t c;
        const char *why;
        CHECK_EQ(spw_gcommit_resp_decode(f.body + 2, f.len - 2, &p, &c, &why), 0);
        CHECK_EQ(p, part);
        CHECK_EQ(c, offset);
    }
    free(f.body);
    return st;
}

#endif
