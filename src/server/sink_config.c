/* Sinks defined in the config file: see sink_config.h. */
#include "server/sink_config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/name.h"
#include "core/config.h"
#include "core/error.h"
#include "core/msg.h"
#include "catalog/stream.h"
#include "sink/sink.h"

typedef struct apply_ctx {
    spw_api *api;
    spw_buf seen; /* "\nNAME1\nNAME2\n": the sink lines so far */
    int count;
} apply_ctx;

static int apply_line(void *user, const char *key, const char *value, char *err, size_t cap)
{
    apply_ctx *a = user;
    const char *name = key + strlen(SPW_SINK_CONFIG_PREFIX);
    size_t nl = strlen(name);
    if (!spw_stream_name_ok(name, nl)) {
        snprintf(err, cap,
                 "%s: sink names are " SPW_NAME_RULE,
                 key);
        return -1;
    }
    char pat[160];
    snprintf(pat, sizeof pat, "\n%s\n", name);
    if (!a->seen.len)
        spw_buf_put(&a->seen, "\n", 1);
    spw_buf_put(&a->seen, "", 1); /* NUL-terminated for strstr, then dropped */
    a->seen.len--;
    if (strstr((const char *)a->seen.p, pat)) {
        snprintf(err, cap, "%s: sink %s is defined twice in the file", key, name);
        return -1;
    }
    spw_buf_put(&a->seen, pat + 1, strlen(pat) - 1);
    if (value[0] != '{') {
        snprintf(err, cap, "%s: expected a JSON object as for PUT /v1/sinks/%s, e.g. {\"stream\":...}", key, name);
        return -1;
    }
    char e2[400];
    spw_buf canon = SPW_BUF_INIT;
    int r = spw_sinks_put(a->api->sinks, name, value, strlen(value), &canon, e2, sizeof e2);
    spw_buf_fini(&canon);
    if (r == -EEXIST) {
        snprintf(err, cap,
                 "%s: sink %s exists with a different definition (see GET /v1/sinks/%s); make this line match it, "
                 "or delete the sink (DELETE /v1/sinks/%s, which also drops its progress) and start again",
                 key, name, name, name);
        return -1;
    }
    if (r < 0) {
        snprintf(err, cap, "%s: %s", key, e2);
        return -1;
    }
    if (r == 0)
        spw_info("sink %s: defined in the config file, unchanged", name);
    a->count++;
    return 0;
}

int spw_sink_config_apply(spw_api *api, const char *path, char *err, size_t cap)
{
    if (!api->sinks) {
        snprintf(err, cap, "%s: sinks are not running, so its sink lines cannot be applied", path);
        return -1;
    }
    apply_ctx a = {.api = api, .seen = SPW_BUF_INIT};
    int r = spw_cfg_load_ex(NULL, 0, NULL, path, SPW_SINK_CONFIG_PREFIX, apply_line, &a, err, cap);
    spw_buf_fini(&a.seen);
    return r < 0 ? -1 : a.count;
}
