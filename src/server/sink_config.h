/*
 * Sinks defined in the config file (docs/operations.md "Sinks in the
 * config file"): lines "sink.NAME = {JSON body as for PUT /v1/sinks/NAME}",
 * applied at start like a PUT each.
 */
#ifndef SPW_SINK_CONFIG_H
#define SPW_SINK_CONFIG_H

#include <stddef.h>

#include "http/api.h"

/* The prefix of a sink line's name. */
#define SPW_SINK_CONFIG_PREFIX "sink."

/*
 * Creates every sink the config file at path defines (api->sinks open).
 * A sink that exists with the same definition is left alone; one that
 * exists with another definition, a bad name or body, a missing stream,
 * or a name defined twice stops with "path:line: reason" in err and -1
 * (sinks of earlier lines stay created). Returns the number of sinks the
 * file defines, or -1.
 */
int spw_sink_config_apply(spw_api *api, const char *path, char *err, size_t cap);

#endif
