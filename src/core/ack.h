/*
 * Acknowledgement levels (docs/operations.md "Durability levels"): one
 * enum for the log, the services and the binary protocol, whose PRODUCE
 * carries these values on the wire (docs/protocol.md). The client
 * library's public header spells the same values SPILLWAY_ACK_LEVEL_*
 * (include/spillway.h, self-contained); src/client pins them to these
 * with static assertions.
 */
#ifndef SPW_CORE_ACK_H
#define SPW_CORE_ACK_H

typedef enum spw_ack {
    SPW_ACK_NONE = 0,
    SPW_ACK_WRITTEN = 1,
    SPW_ACK_FSYNC = 2,
    SPW_ACK_REPLICATED = 3, /* needs a replicated backend: the log alone refuses it */
    SPW_ACK_DEFAULT = 255,  /* on the wire: the stream's default level (never stored) */
} spw_ack;

#endif
