/*
 * The table of sink kinds (sink.h): which kinds this build has, and which
 * it leaves out.
 *
 * Each kind is a const spw_sink_kind in src/sink/KIND/ that registers itself
 * in CMakeLists.txt with spw_sink_kind(KIND sources...); CMake writes the
 * list into generated/sink_kinds.h as SPW_SINK_KIND(KIND) lines, and a kind
 * a build option leaves out (SPW_WITH_POSTGRES, SPW_WITH_KAFKA) as
 * SPW_SINK_KIND_OFF(KIND, "OPTION"). Nothing else names a kind: the loop
 * and the API find it here by the "kind" of a definition. A kind that is
 * left out is still known by name, so a definition of it gets its own
 * answer (SPW_SINK_ENOTBUILT: "not built into this server") instead of
 * "unknown kind" (docs/api.md "Sinks").
 */
#include "sink/sink.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"

#define SPW_SINK_KIND(k) extern const spw_sink_kind spw_sink_kind_##k;
#define SPW_SINK_KIND_OFF(k, opt)
#include "sink_kinds.h"
#undef SPW_SINK_KIND
#undef SPW_SINK_KIND_OFF

typedef struct kind_entry {
    const char *name;
    const spw_sink_kind *kind; /* NULL: left out of this build */
    const char *option;        /* the build option that leaves it out */
} kind_entry;

static const kind_entry table[] = {
#define SPW_SINK_KIND(k) {#k, &spw_sink_kind_##k, NULL},
#define SPW_SINK_KIND_OFF(k, opt) {#k, NULL, opt},
#include "sink_kinds.h"
#undef SPW_SINK_KIND
#undef SPW_SINK_KIND_OFF
};

const spw_sink_kind *spw_sink_kind_find(const char *name, size_t len)
{
    const spw_sink_kind *k = NULL;
    return spw_sink_kind_lookup(name, len, &k, NULL, 0) == 0 ? k : NULL;
}

const spw_sink_kind *spw_sink_kind_at(size_t i)
{
    for (size_t t = 0; t < sizeof table / sizeof table[0]; t++)
        if (table[t].kind && i-- == 0)
            return table[t].kind;
    return NULL;
}

size_t spw_sink_kinds_built(char *out, size_t cap)
{
    size_t n = 0;
    if (cap)
        out[0] = 0;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (!table[i].kind)
            continue;
        if (cap && n < cap)
            snprintf(out + n, cap - n, "%s%s", n ? ", " : "", table[i].name);
        n += strlen(table[i].name) + (n ? 2 : 0);
    }
    return n;
}

int spw_sink_kind_lookup(const char *name, size_t len, const spw_sink_kind **out, char *err, size_t cap)
{
    char built[256];
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strlen(table[i].name) != len || memcmp(table[i].name, name, len) != 0)
            continue;
        if (table[i].kind) {
            *out = table[i].kind;
            return 0;
        }
        spw_sink_kinds_built(built, sizeof built);
        if (cap)
            snprintf(err, cap, "sink kind \"%s\" is not built into this server (built with -D%s=OFF); kinds built in: %s",
                     table[i].name, table[i].option, built);
        return SPW_SINK_ENOTBUILT;
    }
    spw_sink_kinds_built(built, sizeof built);
    if (cap)
        snprintf(err, cap, "unknown sink kind (known: %s)", built);
    return SPW_EINVAL;
}
