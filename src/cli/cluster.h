/*
 * The command line's view of a cluster (docs/operations.md "Growing a
 * deployment: adding a node"): `--server a,b,c` names the nodes, and a
 * key belongs to the node the client library's ring names
 * (include/spillway.h "Routing": core/ring.h with 160 points a node,
 * point v labelled "host:port#v"), so `spillway produce`, `spillway bench`
 * and `spillway view` place a key where a spillway_producer over the same
 * list does. --ring gives the list whose labels place the keys when it is
 * not --server's own (HTTP commands placing keys as binary producers over
 * the nodes' binary addresses do): same count, same order.
 */
#ifndef SPW_CLI_CLUSTER_H
#define SPW_CLI_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "core/ring.h"

#define SPW_CLI_NODES_MAX 64 /* as the client library's producer */

typedef struct spw_cli_cluster {
    uint32_t n;
    char host[SPW_CLI_NODES_MAX][256];
    char port[SPW_CLI_NODES_MAX][16];
    int tls[SPW_CLI_NODES_MAX];
    char name[SPW_CLI_NODES_MAX][300];  /* "host:port" as --server gives it */
    char label[SPW_CLI_NODES_MAX][300]; /* "host:port" of the ring's labels (--ring's, else name) */
    spw_ring ring;
} spw_cli_cluster;

/*
 * Parses list ("HOST:PORT[,HOST:PORT...]", each also http:// or https://)
 * into cl, its ring labelled by ring_list's addresses when not NULL (same
 * count), else by list's. Prints why on stderr (as "spillway CMD: ...")
 * and returns 2 for a bad list; 0 otherwise. Free with spw__cli_cluster_free.
 */
int spw__cli_cluster_parse(const char *cmd, const char *list, const char *ring_list, spw_cli_cluster *cl);
/* The node of a key (len bytes; key may be NULL when len is 0). */
uint32_t spw__cli_cluster_node(const spw_cli_cluster *cl, const void *key, size_t len);
void spw__cli_cluster_free(spw_cli_cluster *cl);
/* "host:port" of node i, for messages. */
const char *spw__cli_cluster_name(const spw_cli_cluster *cl, uint32_t i);

#endif
