/*
 * POSIX sockets port for edgebus_mqtt: a blocking TCP socket with TCP_NODELAY
 * (QoS 1 round trips stall on Nagle + delayed ACK otherwise), read/write that
 * wait at most EB_POSIX_WAIT_MS for readiness, and a CLOCK_MONOTONIC clock.
 */
#ifndef EDGEBUS_PORT_POSIX_H
#define EDGEBUS_PORT_POSIX_H

#include "edgebus_mqtt.h"

#ifndef EB_POSIX_WAIT_MS
#define EB_POSIX_WAIT_MS 20
#endif

typedef struct eb_posix {
    int fd;
} eb_posix;

/* Opens a TCP connection to host:port (name or address). 0 on success, -1 on error. */
int eb_posix_open(eb_posix *s, const char *host, const char *port);
void eb_posix_close(eb_posix *s);

/* The eb_io callbacks; ctx is the eb_posix. */
int eb_posix_read(void *ctx, uint8_t *buf, size_t len);
int eb_posix_write(void *ctx, const uint8_t *buf, size_t len);
uint32_t eb_posix_millis(void *ctx);

/* Fills io with the callbacks above for socket s. */
void eb_posix_io(eb_io *io, eb_posix *s);

#endif
