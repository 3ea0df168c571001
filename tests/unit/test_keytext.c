/* Keys must be UTF-8 text without control characters (docs/api.md
 * "Produce"): spw__key_text_ok, checked against a plain byte-by-byte
 * reference on edge cases and on random strings. */
#include <stdlib.h>

#include "core/json.h"
#include "http/api.h"
#include "test.h"

/* The rule, one byte or sequence at a time. */
static int reference(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = p[i] < 0x80 ? (p[i] >= 0x20) : spw_utf8_seq_len(p + i, p + n);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

static int ok(const char *s) { return spw__key_text_ok((const uint8_t *)s, strlen(s)); }

int main(void)
{
    CHECK_EQ(ok(""), 1);
    CHECK_EQ(ok("key-000000000123"), 1);
    CHECK_EQ(ok(" !~\x7f"), 1); /* printable ASCII and DEL */
    CHECK_EQ(ok("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), 1);
    CHECK_EQ(ok("a\tb"), 0);
    CHECK_EQ(ok("\x1f"), 0);
    CHECK_EQ(ok("abc\n"), 0);
    CHECK_EQ(ok("\x01" "abc"), 0);
    CHECK_EQ(ok("caf\xc3"), 0);         /* truncated sequence */
    CHECK_EQ(ok("\xc0\x80"), 0);        /* overlong NUL */
    CHECK_EQ(ok("\xed\xa0\x80"), 0);    /* a surrogate */
    CHECK_EQ(ok("\xff"), 0);
    CHECK_EQ(spw__key_text_ok((const uint8_t *)"a\0b", 3), 0); /* NUL */
    /* random strings over a mix of ASCII, controls and UTF-8 lead/continuation bytes */
    static const uint8_t pool[] = {'a', 'Z', '0', ' ', '~', 0x7f, 0x00, 0x09, 0x1f, 0x80, 0xbf, 0xc2,
                                   0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xed, 0xa0, 0xf0, 0x9f, 0x98, 0xf4, 0xff};
    srand(12345);
    int accepted = 0;
    for (int t = 0; t < 200000; t++) {
        uint8_t s[24];
        size_t n = (size_t)(rand() % 24);
        for (size_t i = 0; i < n; i++)
            s[i] = rand() % 3 ? (uint8_t)('a' + rand() % 26) : pool[rand() % (int)sizeof pool];
        int want = reference(s, n);
        accepted += want;
        CHECK_EQ(spw__key_text_ok(s, n), want);
    }
    CHECK(accepted > 1000 && accepted < 199000); /* both answers were exercised */
    /* One bad byte (or a UTF-8 sequence) at every position of printable keys
     * of every length to 40: the 8-bytes-at-a-time path and its tail. */
    static const uint8_t odd[] = {0x00, 0x1f, 0x0a, 0x20, 0x7f, 0x80, 0xc3, 0xff};
    for (size_t n = 1; n <= 40; n++)
        for (size_t at = 0; at < n; at++)
            for (size_t o = 0; o < sizeof odd; o++) {
                uint8_t s[48];
                for (size_t i = 0; i < n; i++)
                    s[i] = (uint8_t)(0x21 + (i * 7) % 94);
                s[at] = odd[o];
                if (odd[o] == 0xc3 && at + 1 < n)
                    s[at + 1] = 0xa9; /* a whole sequence: accepted */
                CHECK_EQ(spw__key_text_ok(s, n), reference(s, n));
            }
    return 0;
}
