/*
 * edgebus_mqtt.c — MQTT 3.1.1 client core (optional MQTT 5.0 with -DEB_MQTT5).
 * Clause tags like [MQTT-3.3.1-1] are the normative statements of the
 * OASIS MQTT 3.1.1 standard (or MQTT 5.0 where marked "v5").
 *
 * Design notes, all chosen for flash size and no dynamic memory:
 * - Packets are built in the caller's tx buffer after the length is known,
 *   so every bound is checked once, before any byte is written.
 * - The unacked QoS 1 PUBLISH stays at tx[0] (c->held bytes) and is resent
 *   from there; other packets are built after it, small acks on the stack.
 * - Incoming bytes go straight into rx; a packet is handled only when all of
 *   it has arrived, and only after its length was checked against rx_size.
 */
#include "edgebus_mqtt.h"

#include <string.h>

/* Control packet types, §2.2.1. */
enum {
    T_CONNECT = 1, T_CONNACK, T_PUBLISH, T_PUBACK, T_SUBSCRIBE = 8, T_SUBACK,
    T_UNSUBSCRIBE, T_UNSUBACK, T_PINGREQ, T_PINGRESP, T_DISCONNECT
};

#define DUP_FLAG 0x08u

#ifdef EB_MQTT5
#define PROTOCOL_LEVEL 5u /* v5 §3.1.2.2 */
#else
#define PROTOCOL_LEVEL 4u /* [MQTT-3.1.2-2] */
#endif

/* The context must stay small on 32-bit targets (the size budget is 64 bytes). */
#if UINTPTR_MAX == 0xFFFFFFFFu
typedef char eb_client_fits_64_bytes[sizeof(eb_client) <= 64 ? 1 : -1];
#endif

static uint32_t now(const eb_client *c) { return c->io->millis(c->io->ctx); }

/* Any transport or protocol error leaves the byte stream in an unknown state:
 * the only way on is a new connection. */
static int fail(eb_client *c, int err)
{
    c->flags = 0;
    return err;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint8_t *put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

/* UTF-8 string or binary data: 2-byte big-endian length, then the bytes (§1.5.3). */
static uint8_t *put_str(uint8_t *p, const void *s, uint16_t n)
{
    p = put16(p, n);
    memcpy(p, s, n);
    return p + n;
}

/* Variable Byte Integer: 7 bits per byte, least significant first, top bit
 * says "more follows"; at most 4 bytes (§2.2.3). */
static uint8_t *put_varint(uint8_t *p, uint32_t v)
{
    do {
        uint8_t d = (uint8_t)(v & 0x7Fu);
        v >>= 7;
        *p++ = v ? (uint8_t)(d | 0x80u) : d;
    } while (v);
    return p;
}

static uint32_t varint_len(uint32_t v)
{
    uint32_t n = 1;
    while (v > 0x7Fu) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Starts a packet in the free part of tx (after the held PUBLISH). Returns its
 * first byte and sets *body just past the fixed header, or NULL if it won't fit. */
static uint8_t *begin(eb_client *c, uint8_t head, uint32_t rem, uint8_t **body)
{
    uint8_t *b = c->tx + c->held;
    if (1u + varint_len(rem) + rem > (uint32_t)(c->tx_size - c->held))
        return NULL;
    *b = head;
    *body = put_varint(b + 1, rem);
    return b;
}

/* Writes all of b, accepting partial writes; a transport that makes no
 * progress for timeout_ms is given up on. */
static int send_all(eb_client *c, const uint8_t *b, size_t n)
{
    uint32_t start = now(c);
    while (n) {
        int r = c->io->write(c->io->ctx, b, n);
        if (r < 0 || (size_t)r > n)
            return fail(c, EB_ERR_IO);
        if (r == 0 && now(c) - start >= c->timeout_ms)
            return fail(c, EB_ERR_TIMEOUT);
        b += r;
        n -= (size_t)r;
    }
    c->t_tx = now(c); /* any packet counts for the keepalive [MQTT-3.1.2-23] */
    return EB_OK;
}

/* PUBACK, PINGREQ and DISCONNECT: two bytes, plus a packet id when id != 0. */
static int send_fixed(eb_client *c, uint8_t head, uint16_t id)
{
    uint8_t b[4];
    b[0] = head;
    b[1] = id ? 2 : 0;
    put16(b + 2, id);
    return send_all(c, b, id ? 4u : 2u);
}

/* Packet ids are nonzero [MQTT-2.3.1-1] and must not collide with the one
 * still in flight [MQTT-2.3.1-2]. */
static uint16_t new_id(eb_client *c)
{
    do
        c->next_id++;
    while (!c->next_id || (c->held && c->next_id == c->inflight_id));
    return c->next_id;
}

#ifdef EB_MQTT5
/* Skips a v5 property block (Variable Byte Integer length + bytes); NULL if it
 * runs past end or the length is longer than 4 bytes (v5 §1.5.5). */
static const uint8_t *skip_props(const uint8_t *p, const uint8_t *end)
{
    uint32_t len = 0, shift = 0;
    uint8_t d;
    do {
        if (p >= end || shift > 21)
            return NULL;
        d = *p++;
        len |= (uint32_t)(d & 0x7Fu) << shift;
        shift += 7;
    } while (d & 0x80u);
    return len > (uint32_t)(end - p) ? NULL : p + len;
}
#endif

static int on_publish(eb_client *c, uint8_t head, const uint8_t *p, const uint8_t *end)
{
    uint8_t qos = (uint8_t)((head >> 1) & 3u);
    uint16_t tl, id = 0;
    const uint8_t *topic;
    /* QoS 3 is malformed [MQTT-3.3.1-4]; QoS 2 never comes as we subscribe
     * with at most QoS 1 [MQTT-3.8.4-6], so it is a protocol violation too. */
    if (qos > 1 || end - p < 2)
        return EB_ERR_MALFORMED;
    tl = get16(p);
    topic = p + 2;
    /* A topic name is at least one character [MQTT-4.7.3-1]. */
    if (!tl || end - topic < (long)tl + qos * 2)
        return EB_ERR_MALFORMED;
    p = topic + tl;
    if (qos) {
        id = get16(p);
        p += 2;
        if (!id)
            return EB_ERR_MALFORMED; /* [MQTT-2.3.1-1] */
    }
#ifdef EB_MQTT5
    p = skip_props(p, end);
    if (!p)
        return EB_ERR_MALFORMED;
#endif
    if (c->on_message)
        c->on_message(c, (const char *)topic, tl, p, (uint16_t)(end - p));
    /* QoS 1 receiver: PUBACK with the PUBLISH's packet id [MQTT-2.3.1-6]. */
    return qos ? send_fixed(c, T_PUBACK << 4, id) : EB_OK;
}

/* Handles one complete packet in rx[0 .. rx_total). */
static int dispatch(eb_client *c)
{
    const uint8_t *p = c->rx + 1, *end = c->rx + c->rx_total;
    uint8_t head = c->rx[0], type = (uint8_t)(head >> 4);
    uint16_t n;
    while (*p++ & 0x80u) /* skip Remaining Length; pump() has validated it */
        ;
    n = (uint16_t)(end - p);
    if (type == T_PUBLISH)
        return on_publish(c, head, p, end);
    /* Server-to-client packets other than PUBLISH have all flag bits 0 [MQTT-2.2.2-2]. */
    if (head & 0x0Fu)
        return EB_ERR_MALFORMED;
    if (type == T_PINGRESP) {
        if (n)
            return EB_ERR_MALFORMED;
        c->flags &= (uint8_t)~EB_F_PING;
        return EB_OK;
    }
#ifdef EB_MQTT5
    if (type == T_DISCONNECT) /* v5 §3.14: the server closes with a reason */
        return EB_ERR_IO;
    /* v5 acks may carry a reason code and properties after the first 2 bytes. */
    if (n < 2 + (type == T_SUBACK))
        return EB_ERR_MALFORMED;
#else
    /* 3.1.1 acks are exactly 2 bytes, SUBACK 2 plus one return code (we send one filter). */
    if (n != 2u + (type == T_SUBACK))
        return EB_ERR_MALFORMED;
#endif
    switch (type) {
    case T_CONNACK:
        c->ack_code = p[1]; /* 0 = accepted; v5 reason codes >= 0x80 are failures */
        if (p[0] & 1u)
            c->flags |= EB_F_SESSION; /* session present, §3.2.2.2 */
        break;
    case T_PUBACK:
        /* Only the matching id completes the flow; a stale one is ignored. */
        if (c->held && get16(p) == c->inflight_id)
            c->held = 0;
        return EB_OK;
    case T_SUBACK:
#ifdef EB_MQTT5
        {
            const uint8_t *q = skip_props(p + 2, end);
            if (!q || q == end)
                return EB_ERR_MALFORMED;
            c->ack_code = *q;
        }
#else
        c->ack_code = p[2];
#endif
        break;
    case T_UNSUBACK:
        break;
    default:
        return EB_ERR_MALFORMED; /* a packet only a client may send */
    }
    c->ack_type = type;
    c->ack_id = type == T_CONNACK ? 0 : get16(p);
    return EB_OK;
}

/*
 * Reads into rx; handles at most one complete packet per call so a busy
 * stream can't starve the caller's timers. The fixed header is read one byte
 * at a time (at most 5 bytes), so the body length is known before the body
 * is read, and an oversized packet is refused before it touches the buffer.
 */
static int pump(eb_client *c)
{
    for (;;) {
        uint16_t want = c->rx_total ? (uint16_t)(c->rx_total - c->rx_pos) : 1u;
        int r;
        if (c->rx_pos >= c->rx_size && !c->rx_total)
            return fail(c, EB_ERR_TOO_BIG);
        r = c->io->read(c->io->ctx, c->rx + c->rx_pos, want);
        if (r < 0 || r > want)
            return fail(c, EB_ERR_IO);
        if (r == 0)
            return EB_OK;
        c->rx_pos = (uint16_t)(c->rx_pos + r);
        if (!c->rx_total && c->rx_pos >= 2) {
            if (!(c->rx[c->rx_pos - 1] & 0x80u)) {
                uint32_t rem = 0, i = c->rx_pos;
                while (--i)
                    rem = rem << 7 | (c->rx[i] & 0x7Fu);
                if (rem + c->rx_pos > c->rx_size)
                    return fail(c, EB_ERR_TOO_BIG);
                c->rx_total = (uint16_t)(rem + c->rx_pos);
            } else if (c->rx_pos == 5) {
                return fail(c, EB_ERR_MALFORMED); /* Remaining Length over 4 bytes, §2.2.3 */
            }
        }
        if (c->rx_total && c->rx_pos == c->rx_total) {
            r = dispatch(c);
            c->rx_pos = c->rx_total = 0;
            return r ? fail(c, r) : EB_OK;
        }
    }
}

/* Waits for the ack of `type` with packet id `id`, still handling other
 * packets (a PUBLISH may arrive before our SUBACK). */
static int wait_ack(eb_client *c, uint8_t type, uint16_t id)
{
    uint32_t start = now(c);
    c->ack_type = 0;
    for (;;) {
        int r = pump(c);
        if (r)
            return r;
        if (c->ack_type == type && c->ack_id == id)
            return EB_OK;
        if (now(c) - start >= c->timeout_ms)
            return fail(c, EB_ERR_TIMEOUT);
    }
}

void eb_init(eb_client *c, const eb_io *io, uint8_t *rx, uint16_t rx_size, uint8_t *tx,
             uint16_t tx_size, eb_message_cb on_message)
{
    memset(c, 0, sizeof *c);
    c->io = io;
    c->rx = rx;
    c->rx_size = rx_size;
    c->tx = tx;
    c->tx_size = tx_size;
    c->on_message = on_message;
    c->timeout_ms = 5000;
}

int eb_connect(eb_client *c, const eb_connect_opts *o)
{
    uint16_t idl = (uint16_t)strlen(o->client_id), wtl = 0, ul = 0, pl = 0;
    uint8_t f = o->clean_session ? 0x02u : 0u, *b, *p; /* reserved bit 0 stays 0 [MQTT-3.1.2-3] */
    uint32_t rem = 10u + 2u + idl;
    int r;
#ifdef EB_MQTT5
    rem++; /* empty CONNECT properties */
#endif
    if (o->will_topic) {
        wtl = (uint16_t)strlen(o->will_topic);
        /* Will flag, will QoS and will retain [MQTT-3.1.2-9], [MQTT-3.1.2-14]. */
        f |= (uint8_t)(0x04u | (o->will_flags & EB_QOS1) << 3 | (o->will_flags & EB_RETAIN ? 0x20u : 0u));
        rem += 4u + wtl + o->will_len;
#ifdef EB_MQTT5
        rem++; /* empty will properties */
#endif
    }
    if (o->username) {
        ul = (uint16_t)strlen(o->username);
        f |= 0x80u; /* [MQTT-3.1.2-19] */
        rem += 2u + ul;
    }
    if (o->password) {
        pl = (uint16_t)strlen(o->password);
        f |= 0x40u; /* [MQTT-3.1.2-21] */
        rem += 2u + pl;
    }
    c->flags = 0;
    c->rx_pos = c->rx_total = 0; /* a fresh connection starts a fresh byte stream */
    b = begin(c, T_CONNECT << 4, rem, &p);
    if (!b)
        return EB_ERR_NOSPACE;
    p = put_str(p, "MQTT", 4); /* protocol name [MQTT-3.1.2-1] */
    *p++ = PROTOCOL_LEVEL;
    *p++ = f;
    p = put16(p, o->keepalive_s);
#ifdef EB_MQTT5
    *p++ = 0;
#endif
    /* Payload order: client id, will topic, will message, user, password [MQTT-3.1.3-1]. */
    p = put_str(p, o->client_id, idl);
    if (o->will_topic) {
#ifdef EB_MQTT5
        *p++ = 0;
#endif
        p = put_str(p, o->will_topic, wtl);
        p = put_str(p, o->will_msg, o->will_len);
    }
    if (o->username)
        p = put_str(p, o->username, ul);
    if (o->password)
        p = put_str(p, o->password, pl);
    c->keepalive_s = o->keepalive_s;
    r = send_all(c, b, (size_t)(p - b));
    if (!r)
        r = wait_ack(c, T_CONNACK, 0);
    if (r)
        return r;
    if (c->ack_code)
        return fail(c, EB_ERR_REFUSED); /* the server closes after a refusal [MQTT-3.2.2-5] */
    c->flags |= EB_F_CONNECTED;
    /* Resend the unacked QoS 1 PUBLISH with its original packet id and DUP=1
     * [MQTT-4.4.0-1], [MQTT-2.3.1-3], [MQTT-3.3.1-1]. After a clean session the server takes
     * it as a new message: still at-least-once for the application. */
    if (c->held) {
        c->tx[0] |= DUP_FLAG;
        c->t_pub = now(c);
        return send_all(c, c->tx, c->held);
    }
    return EB_OK;
}

int eb_publish(eb_client *c, const char *topic, const void *payload, uint16_t len,
               uint8_t flags, const char *msg_id)
{
    uint16_t tl = (uint16_t)strlen(topic), id = 0;
    uint8_t qos = flags & EB_QOS1, *b, *p;
    uint32_t rem = 2u + tl + len + qos * 2u;
    int r;
#ifdef EB_MQTT5
    /* User property `msg-id` (identifier 0x26, a UTF-8 string pair, v5 §3.3.2.3.7). */
    uint16_t ml = msg_id ? (uint16_t)strlen(msg_id) : 0;
    uint32_t props = msg_id ? 11u + ml : 0u;
    rem += varint_len(props) + props;
#else
    (void)msg_id; /* 3.1.1 cannot carry it: see the header */
#endif
    if (!eb_connected(c))
        return EB_ERR_STATE;
    if (qos && c->held)
        return EB_ERR_BUSY;
    /* Fixed header: QoS in bits 2-1, RETAIN in bit 0, §3.3.1. */
    b = begin(c, (uint8_t)(T_PUBLISH << 4 | qos << 1 | (flags & EB_RETAIN ? 1 : 0)), rem, &p);
    if (!b)
        return EB_ERR_NOSPACE;
    p = put_str(p, topic, tl);
    if (qos)
        p = put16(p, id = new_id(c)); /* only QoS > 0 has a packet id [MQTT-2.3.1-5] */
#ifdef EB_MQTT5
    p = put_varint(p, props);
    if (msg_id) {
        *p++ = 0x26;
        p = put_str(p, "msg-id", 6);
        p = put_str(p, msg_id, ml);
    }
#endif
    memcpy(p, payload, len);
    p += len;
    if (qos) { /* b == tx here: hold the message for resends until PUBACK */
        c->held = (uint16_t)(p - b);
        c->inflight_id = id;
        c->t_pub = now(c);
    }
    r = send_all(c, b, (size_t)(p - b));
    return r ? r : id;
}

/* SUBSCRIBE (with qos) or UNSUBSCRIBE of one filter, then wait for the ack. */
static int sub_unsub(eb_client *c, uint8_t type, const char *filter, uint8_t qos)
{
    uint16_t fl = (uint16_t)strlen(filter), id;
    uint8_t *b, *p;
    uint32_t rem = 4u + fl + (type == T_SUBSCRIBE);
    int r;
#ifdef EB_MQTT5
    rem++;
#endif
    if (!eb_connected(c))
        return EB_ERR_STATE;
    /* Reserved flag bits 0010 [MQTT-3.8.1-1], [MQTT-3.10.1-1]. */
    b = begin(c, (uint8_t)(type << 4 | 0x02), rem, &p);
    if (!b)
        return EB_ERR_NOSPACE;
    p = put16(p, id = new_id(c));
#ifdef EB_MQTT5
    *p++ = 0;
#endif
    p = put_str(p, filter, fl);
    if (type == T_SUBSCRIBE)
        *p++ = qos; /* requested QoS; upper bits reserved 0 [MQTT-3.8.3-4] */
    r = send_all(c, b, (size_t)(p - b));
    if (!r)
        r = wait_ack(c, (uint8_t)(type + 1), id);
    if (r)
        return r;
    /* SUBACK 0x80 (v5: any code >= 0x80) means the subscription failed, §3.9.3. */
    return type != T_SUBSCRIBE ? EB_OK : (c->ack_code & 0x80u) ? EB_ERR_REFUSED : c->ack_code;
}

int eb_subscribe(eb_client *c, const char *filter, uint8_t qos)
{
    return sub_unsub(c, T_SUBSCRIBE, filter, qos & EB_QOS1);
}

int eb_unsubscribe(eb_client *c, const char *filter)
{
    return sub_unsub(c, T_UNSUBSCRIBE, filter, 0);
}

int eb_ping(eb_client *c)
{
    if (!eb_connected(c))
        return EB_ERR_STATE;
    c->flags |= EB_F_PING;
    c->t_ping = now(c);
    return send_fixed(c, T_PINGREQ << 4, 0);
}

int eb_poll(eb_client *c)
{
    uint32_t t;
    int r;
    if (!eb_connected(c))
        return EB_ERR_STATE;
    r = pump(c);
    if (r)
        return r;
    t = now(c);
#ifndef EB_MQTT5
    /* 3.1.1 allows resending an unacked PUBLISH (only reconnects require it);
     * a stuck network path is healed by it. Same packet id [MQTT-2.3.1-3],
     * DUP=1 [MQTT-3.3.1-1].
     * MQTT 5 forbids resends except on reconnect (v5 [MQTT-4.4.0-1]). */
    if (c->held && t - c->t_pub >= c->timeout_ms) {
        c->tx[0] |= DUP_FLAG;
        c->t_pub = t;
        r = send_all(c, c->tx, c->held);
        if (r)
            return r;
    }
#endif
    if (c->keepalive_s) {
        /* Ping at 3/4 of the keepalive so a slow poll loop still lands inside
         * the server's grace of 1.5x [MQTT-3.1.2-24]; give up on the server
         * if the PINGRESP takes as long. */
        uint32_t due = c->keepalive_s * 750u;
        if (c->flags & EB_F_PING) {
            if (t - c->t_ping >= due)
                return fail(c, EB_ERR_TIMEOUT);
        } else if (t - c->t_tx >= due) {
            return eb_ping(c);
        }
    }
    return EB_OK;
}

int eb_disconnect(eb_client *c)
{
    int r;
    if (!eb_connected(c))
        return EB_ERR_STATE;
    r = send_fixed(c, T_DISCONNECT << 4, 0);
    c->flags = 0;
    return r;
}
