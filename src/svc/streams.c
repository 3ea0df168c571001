/* Stream definitions for every front end: see streams.h. */
#include "svc/streams.h"
#include "svc/hot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "svc/svc.h"

spw_sc spw_svc_stream_parse(const char *name, const char *def, size_t len, spw_stream_config *c, char *msg,
                            size_t cap)
{
    if (spw_stream_config_parse(c, name, def, len, msg, cap) || spw_stream_config_check(c, msg, cap))
        return SPW_SC_BAD_CONFIG;
    return SPW_SC_OK;
}

spw_sc spw_svc_stream_create(spw_svc *svc, const spw_stream_config *c, int *created, char *msg, size_t cap)
{
    /* A stream's replica is its own sink, of a kind that replicates
     * (docs/api.md "Replicated acknowledgement"): asked of the sinks,
     * which sit above this layer, through the server's hook. */
    if (c->replicate_to[0] && svc->replica_ok && svc->replica_ok(svc->replica_ctx, c->replicate_to, c->name, msg, cap))
        return SPW_SC_BAD_CONFIG;
    int r = spw_catalog_create(svc->cat, c);
    if (r == -EEXIST) {
        snprintf(msg, cap, "stream %s exists with a different definition", c->name);
        return SPW_SC_EXISTS;
    }
    if (r == -ENOTEMPTY) {
        snprintf(msg, cap,
                 "the data directory holds a directory streams/%s that is no loaded stream (its stream.json "
                 "is missing or bad: see the server's messages at start); it is left as it is: move it "
                 "away, or repair its stream.json and restart",
                 c->name);
        return SPW_SC_DIRECTORY_EXISTS;
    }
    if (r < 0) {
        snprintf(msg, cap, "creating stream %s: %s", c->name, spw_strerror(r));
        return SPW_SC_CREATE_FAILED;
    }
    *created = r == 1;
    return SPW_SC_OK;
}

void spw_svc_stream_json(spw_stream *s, int detail, spw_buf *b)
{
    spw_buf c = SPW_BUF_INIT;
    spw_stream_config_json(&s->cfg, &c);
    if (!detail) {
        if (spw_buf_put(b, c.p, c.len))
            abort(); /* as spw_buf_xprintf: a description is small */
        spw_buf_fini(&c);
        return;
    }
    if (c.len && spw_buf_put(b, c.p, c.len - 1)) /* drop the closing brace */
        abort();
    spw_buf_fini(&c);
    spw_buf_xprintf(b, ",\"incarnation\":%" PRIu64 ",\"partition_state\":[", s->incarnation);
    for (uint32_t i = 0; i < s->cfg.partitions; i++) {
        spw_part_state st;
        spw_part_state_get(s->parts[i], &st);
        spw_buf_xprintf(b,
                        "%s{\"partition\":%u,\"start_offset\":%" PRIu64 ",\"end_offset\":%" PRIu64
                        ",\"durable_offset\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"segments\":%u}",
                        i ? "," : "", i, st.start_offset, st.written_offset, st.durable_offset, st.bytes,
                        st.segments);
    }
    spw_buf_xprintf(b, "]");
    spw_hot_describe(s, b);
    spw_buf_xprintf(b, "}");
}
