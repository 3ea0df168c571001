/*
 * The status table (src/svc/status.h): every code has a row, each row's
 * HTTP status is the wire status except where docs/api.md and
 * docs/protocol.md say otherwise, and the disk errors map as both
 * documents say.
 */
#include <errno.h>
#include <string.h>

#include "core/error.h"
#include "wire/frame.h"
#include "svc/status.h"
#include "test.h"

int main(void)
{
    for (int c = 0; c < SPW_SC__N; c++) {
        const spw_sc_row *r = spw_sc_row_of((spw_sc)c);
        CHECK(r->word && r->word[0]);
        CHECK(r->sentence && r->sentence[0]);
        CHECK(r->http >= 200 && r->http < 600);
        for (const char *p = spw_sc_wire_word((spw_sc)c); *p; p++) /* code words are snake_case */
            CHECK((*p >= 'a' && *p <= 'z') || *p == '_');
        /* Where the protocols differ, on purpose. */
        if (c == SPW_SC_OK)
            CHECK_EQ(r->wire, SPW_ST_OK);
        else if (c == SPW_SC_EVENT_TOO_LARGE)
            CHECK(r->http == 400 && r->wire == SPW_ST_TOO_LARGE);
        else if (c == SPW_SC_KEY_REUSED)
            CHECK(r->http == 422 && r->wire == SPW_ST_CONFLICT);
        else if (c == SPW_SC_IN_PROGRESS)
            CHECK(r->http == 409 && r->wire == SPW_ST_OVERLOADED);
        else
            CHECK_EQ(r->http, r->wire);
    }
    CHECK(strcmp(spw_sc_word(SPW_SC_BAD_KEY), "bad_key") == 0);
    CHECK(strcmp(spw_sc_word(SPW_SC_TOO_LARGE), "body_too_large") == 0);
    CHECK(strcmp(spw_sc_wire_word(SPW_SC_TOO_LARGE), "too_large") == 0);
    CHECK(strcmp(spw_sc_wire_word(SPW_SC_KEY_REUSED), "sequence_reused") == 0);
    CHECK(strcmp(spw_sc_word(SPW_SC_EVENT_TOO_LARGE), spw_sc_word(SPW_SC_BODY_EVENT_TOO_LARGE)) == 0);
    CHECK_EQ(spw_sc_http(SPW_SC_BODY_EVENT_TOO_LARGE), 413);

    char msg[400];
    CHECK_EQ(spw_sc_disk(SPW_EDISKLIMIT, 1, msg, sizeof msg), SPW_SC_DISK_LIMIT);
    CHECK(strstr(msg, "max-disk-bytes"));
    CHECK_EQ(spw_sc_disk(-ENOSPC, 0, msg, sizeof msg), SPW_SC_DISK_FULL);
    CHECK_EQ(spw_sc_disk(-EDQUOT, 1, msg, sizeof msg), SPW_SC_DISK_FULL);
    CHECK(strstr(msg, "nothing was appended"));
    CHECK_EQ(spw_sc_disk(-EIO, 0, msg, sizeof msg), SPW_SC_WRITE_FAILED);
    CHECK(strstr(msg, "nothing of it is acknowledged"));
    CHECK_EQ(spw_sc_disk(SPW_EAGAIN, 1, msg, sizeof msg), SPW_SC_OK);
    CHECK_EQ(spw_sc_disk(SPW_EMSGSIZE, 1, msg, sizeof msg), SPW_SC_OK);
    CHECK_EQ(spw_sc_http(SPW_SC_DISK_FULL), 507);
    CHECK_EQ(spw_sc_http(SPW_SC_WRITE_FAILED), 500);
    /* Out of range: the internal row, never out of bounds. */
    CHECK(strcmp(spw_sc_row_of((spw_sc)9999)->word, "internal") == 0);
    printf("test_status: ok\n");
    return 0;
}
