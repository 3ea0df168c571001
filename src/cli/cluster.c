/*
 * A cluster's nodes and its ring for the command line (cluster.h). The
 * ring is core/ring.c's, built exactly as the client library builds its
 * own (src/client/producer.c), so tests/unit/test_ring.c's placements
 * hold for both.
 */
#include "cli/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/httpc.h"
#include "core/error.h"

static int node_label(void *arg, uint32_t i, uint32_t v, char *out, size_t cap)
{
    const spw_cli_cluster *cl = arg;
    return snprintf(out, cap, "%s#%u", cl->label[i], v);
}

/* Splits list into up to SPW_CLI_NODES_MAX addresses. -1: bad. */
static int split(const char *cmd, const char *opt, const char *list, uint32_t *n, char host[][256],
                 char port[][16], int *tls, char label[][300])
{
    *n = 0;
    const char *s = list;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        char one[512];
        if (*n == SPW_CLI_NODES_MAX) {
            fprintf(stderr, "spillway %s: %s names more than %d nodes\n", cmd, opt, SPW_CLI_NODES_MAX);
            return -1;
        }
        int t = 0;
        if (len >= sizeof one ||
            (memcpy(one, s, len), one[len] = 0,
             spw_httpc_parse_server_tls(one, host[*n], sizeof host[0], port[*n], sizeof port[0], &t))) {
            fprintf(stderr,
                    "spillway %s: %s takes HOST:PORT[,HOST:PORT...] (each also http:// or https://), not '%s'\n",
                    cmd, opt, list);
            return -1;
        }
        if (tls)
            tls[*n] = t;
        snprintf(label[*n], sizeof label[0], strchr(host[*n], ':') ? "[%s]:%s" : "%s:%s", host[*n], port[*n]);
        for (uint32_t j = 0; j < *n; j++)
            if (strcmp(label[j], label[*n]) == 0) {
                fprintf(stderr, "spillway %s: %s names %s twice\n", cmd, opt, label[j]);
                return -1;
            }
        (*n)++;
        if (!comma)
            return 0;
        s = comma + 1;
    }
}

int spw__cli_cluster_parse(const char *cmd, const char *list, const char *ring_list, spw_cli_cluster *cl)
{
    memset(cl, 0, sizeof *cl);
    if (split(cmd, "--server", list, &cl->n, cl->host, cl->port, cl->tls, cl->name))
        return 2;
    memcpy(cl->label, cl->name, sizeof cl->label);
    if (ring_list) {
        static char h[SPW_CLI_NODES_MAX][256], p[SPW_CLI_NODES_MAX][16];
        uint32_t rn;
        if (split(cmd, "--ring", ring_list, &rn, h, p, NULL, cl->label))
            return 2;
        if (rn != cl->n) {
            fprintf(stderr, "spillway %s: --ring names %u nodes, --server %u: one address each, in the same order\n",
                    cmd, rn, cl->n);
            return 2;
        }
    }
    if (spw_ring_build(&cl->ring, cl->n, SPW_RING_CLIENT_VNODES, node_label, cl)) {
        fprintf(stderr, "spillway %s: cannot build the ring of %u nodes\n", cmd, cl->n);
        return 2;
    }
    return 0;
}

uint32_t spw__cli_cluster_node(const spw_cli_cluster *cl, const void *key, size_t len)
{
    return cl->n == 1 ? 0 : spw_ring_shard(&cl->ring, key, len);
}

void spw__cli_cluster_free(spw_cli_cluster *cl)
{
    if (cl->ring.pts)
        spw_ring_free(&cl->ring);
}

const char *spw__cli_cluster_name(const spw_cli_cluster *cl, uint32_t i)
{
    return i < cl->n ? cl->name[i] : "?";
}
