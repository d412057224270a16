/*
 * edgebus_mqtt — a small MQTT 3.1.1 client for microcontrollers (C99).
 *
 * - No malloc: the caller owns the client struct and both packet buffers.
 * - No libc beyond memcpy/memset/strlen.
 * - Transport and clock are callbacks (eb_io), so the same code runs on lwIP,
 *   ESP-IDF, Zephyr, Arduino's Client or POSIX sockets (port/posix.c).
 * - QoS 0 and QoS 1 publish (one QoS 1 message in flight), subscribe and
 *   unsubscribe with wildcards, keepalive pings, will, user/password.
 * - Build with -DEB_MQTT5 for MQTT 5.0 CONNECT and the `msg-id` user property
 *   on PUBLISH, which edgebus uses to drop duplicates in a stream's dedupe
 *   window. MQTT 3.1.1 has no user properties: there the only stable id is
 *   the packet identifier, which this client keeps across resends.
 *
 * Threading: one client is used from one thread; no call is reentrant.
 */
#ifndef EDGEBUS_MQTT_H
#define EDGEBUS_MQTT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes: 0 or positive is success, negative is an error. */
enum {
    EB_OK = 0,
    EB_ERR_IO = -1,        /* the transport failed or the peer closed: reconnect */
    EB_ERR_TIMEOUT = -2,   /* no answer in time (CONNACK, SUBACK, PINGRESP, a write) */
    EB_ERR_NOSPACE = -3,   /* the outgoing packet does not fit the tx buffer */
    EB_ERR_TOO_BIG = -4,   /* an incoming packet does not fit the rx buffer: reconnect */
    EB_ERR_MALFORMED = -5, /* the server sent bytes that are not valid MQTT: reconnect */
    EB_ERR_REFUSED = -6,   /* CONNACK or SUBACK said no (see eb_client.ack_code) */
    EB_ERR_BUSY = -7,      /* a QoS 1 message is still waiting for its PUBACK */
    EB_ERR_STATE = -8      /* not connected */
};

/* Flags for eb_publish, eb_subscribe and the will. */
#define EB_QOS0 0x00u
#define EB_QOS1 0x01u
#define EB_RETAIN 0x80u

/*
 * The platform glue. read and write may move fewer bytes than asked for:
 *   read:  returns bytes read (0 = nothing yet; it may wait a little, e.g. a
 *          few ms, so polling loops don't spin), or < 0 on error/peer closed.
 *   write: returns bytes written (0 = try again), or < 0 on error.
 *   millis: a free-running millisecond clock; wrap-around is fine.
 * ctx is handed back to every callback.
 */
typedef struct eb_io {
    int (*read)(void *ctx, uint8_t *buf, size_t len);
    int (*write)(void *ctx, const uint8_t *buf, size_t len);
    uint32_t (*millis)(void *ctx);
    void *ctx;
} eb_io;

struct eb_client;

/*
 * Called for each incoming PUBLISH. topic is NOT NUL-terminated (use topic_len);
 * topic and payload point into the rx buffer and are valid only during the call.
 * The callback may call eb_publish, but not eb_connect, eb_subscribe,
 * eb_unsubscribe or eb_poll: those read from the network into rx.
 */
typedef void (*eb_message_cb)(struct eb_client *c, const char *topic, uint16_t topic_len,
                              const uint8_t *payload, uint16_t payload_len);

/* The client. Fields are public so it can live in static memory, but treat
 * them as read-only except `timeout_ms` and `on_message`. */
typedef struct eb_client {
    const eb_io *io;
    eb_message_cb on_message;
    uint8_t *rx, *tx;      /* caller's buffers */
    uint16_t rx_size, tx_size;
    uint16_t rx_pos;       /* bytes of the current incoming packet received so far */
    uint16_t rx_total;     /* its full length once the fixed header is complete, else 0 */
    uint16_t held;         /* bytes at tx[0] holding the unacked QoS 1 PUBLISH (0 = none) */
    uint16_t inflight_id;  /* packet id of that PUBLISH; stable across resends */
    uint16_t next_id;
    uint16_t keepalive_s;
    uint16_t timeout_ms;   /* wait for acks; also the QoS 1 resend interval (3.1.1) */
    uint16_t ack_id;       /* packet id of the last SUBACK/UNSUBACK */
    uint32_t t_tx;         /* when we last sent a packet (keepalive) */
    uint32_t t_ping;       /* when the outstanding PINGREQ was sent */
    uint32_t t_pub;        /* when the held PUBLISH was last sent */
    uint8_t ack_type;      /* packet type of the last CONNACK/SUBACK/UNSUBACK seen */
    uint8_t ack_code;      /* its return code (CONNACK) or first granted QoS (SUBACK) */
    uint8_t flags;         /* EB_F_* below */
} eb_client;

#define EB_F_CONNECTED 0x01u
#define EB_F_PING 0x02u         /* a PINGREQ is waiting for its PINGRESP */
#define EB_F_SESSION 0x04u      /* CONNACK said the server kept our session */

typedef struct eb_connect_opts {
    const char *client_id;      /* may be "" with clean_session=1 [MQTT-3.1.3-7] */
    const char *username;       /* NULL = none */
    const char *password;       /* NULL = none; needs a username in 3.1.1 [MQTT-3.1.2-22] */
    const char *will_topic;     /* NULL = no will */
    const void *will_msg;
    uint16_t will_len;
    uint8_t will_flags;         /* EB_QOS0/EB_QOS1 | EB_RETAIN */
    uint8_t clean_session;      /* 1 = start fresh; 0 = resume the stored session */
    uint16_t keepalive_s;       /* 0 = no keepalive */
} eb_connect_opts;

/* Sets up the client; rx and tx must outlive it. timeout_ms defaults to 5000. */
void eb_init(eb_client *c, const eb_io *io, uint8_t *rx, uint16_t rx_size, uint8_t *tx,
             uint16_t tx_size, eb_message_cb on_message);

/*
 * Sends CONNECT on an already open transport and waits for CONNACK.
 * If a QoS 1 PUBLISH was still unacked from the previous connection, it is
 * sent again with DUP=1 and its original packet id [MQTT-4.4.0-1].
 * Returns EB_OK, EB_ERR_REFUSED (return code in c->ack_code) or another error.
 */
int eb_connect(eb_client *c, const eb_connect_opts *o);

/*
 * Publishes topic/payload. flags: EB_QOS0 or EB_QOS1, optionally | EB_RETAIN.
 * QoS 1: returns the packet id (> 0); the message stays in the tx buffer until
 * its PUBACK arrives (see eb_inflight) and eb_poll resends it with DUP=1 every
 * timeout_ms. Only one QoS 1 message may be in flight: else EB_ERR_BUSY.
 * msg_id is the stream dedupe id sent as the MQTT 5 user property `msg-id`
 * in -DEB_MQTT5 builds; 3.1.1 builds ignore it (pass NULL).
 * If it returns an error while eb_inflight(c) is true, the QoS 1 message is
 * held and the next eb_connect resends it: do not publish it again.
 */
int eb_publish(eb_client *c, const char *topic, const void *payload, uint16_t len,
               uint8_t flags, const char *msg_id);

/* Subscribes to one filter (wildcards + and # allowed) and waits for SUBACK.
 * Returns the granted QoS (0 or 1) or an error (EB_ERR_REFUSED on 0x80). */
int eb_subscribe(eb_client *c, const char *filter, uint8_t qos);

/* Unsubscribes one filter and waits for UNSUBACK. */
int eb_unsubscribe(eb_client *c, const char *filter);

/*
 * Reads what has arrived, handles complete packets (calls on_message, answers
 * QoS 1 with PUBACK) and runs the timers: PINGREQ when the keepalive is due,
 * EB_ERR_TIMEOUT if the PINGRESP is late, the QoS 1 resend.
 * Returns EB_OK or an error; after an error the connection is unusable:
 * close the transport, reopen it and call eb_connect.
 */
int eb_poll(eb_client *c);

/* Sends PINGREQ now (eb_poll also sends one when the keepalive is due). */
int eb_ping(eb_client *c);

/* Sends DISCONNECT; the caller then closes the transport. A clean DISCONNECT
 * tells the server to drop the will [MQTT-3.14.4-3]. */
int eb_disconnect(eb_client *c);

/* Nonzero while a QoS 1 PUBLISH waits for its PUBACK. */
#define eb_inflight(c) ((c)->held != 0)
#define eb_connected(c) (((c)->flags & EB_F_CONNECTED) != 0)

#ifdef __cplusplus
}
#endif
#endif
