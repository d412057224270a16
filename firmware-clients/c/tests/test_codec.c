/*
 * Unit tests of the encoder and decoder, through the public API and an
 * in-memory transport (tests/mock_io.h). Expected bytes are written out by
 * hand from the MQTT 3.1.1 (and, with -DEB_MQTT5, 5.0) packet layouts.
 * Built with ASan/UBSan by `make test`; prints "N passed, N failed".
 */
#include <stdio.h>
#include <string.h>

#include "edgebus_mqtt.h"
#include "mock_io.h"

static int passed, failed;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (cond)                                                                       \
            passed++;                                                                   \
        else {                                                                          \
            failed++;                                                                   \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, __func__, \
                    #cond);                                                             \
        }                                                                               \
    } while (0)

#define CHECK_EQ(a, b)                                                                  \
    do {                                                                                \
        long a_ = (long)(a), b_ = (long)(b);                                            \
        if (a_ == b_)                                                                   \
            passed++;                                                                   \
        else {                                                                          \
            failed++;                                                                   \
            fprintf(stderr, "%s:%d: %s: %s == %ld, expected %s == %ld\n", __FILE__,      \
                    __LINE__, __func__, #a, a_, #b, b_);                                \
        }                                                                               \
    } while (0)

/* Checks that the next bytes the client wrote are exactly `exp`, and consumes them. */
static size_t out_seen;
#define CHECK_OUT(...)                                                                  \
    do {                                                                                \
        static const uint8_t exp_[] = {__VA_ARGS__};                                    \
        check_out(exp_, sizeof exp_, __LINE__);                                         \
    } while (0)

static mock_io m;
static eb_client c;
static uint8_t rx[512], tx[512];

/* Recorded by the message callback. */
static char got_topic[300];
static uint8_t got_payload[70000];
static int got_count;
static uint16_t got_len;

static void check_out(const uint8_t *exp, size_t n, int line)
{
    size_t i, have = m.out_len - out_seen;
    if (have < n || memcmp(m.out + out_seen, exp, n) != 0) {
        failed++;
        fprintf(stderr, "test_codec.c:%d: output mismatch; expected", line);
        for (i = 0; i < n; i++)
            fprintf(stderr, " %02x", exp[i]);
        fprintf(stderr, "\n  got");
        for (i = out_seen; i < m.out_len; i++)
            fprintf(stderr, " %02x", m.out[i]);
        fprintf(stderr, "\n");
    } else {
        passed++;
    }
    out_seen += n;
    if (out_seen > m.out_len)
        out_seen = m.out_len;
}

static void on_msg(eb_client *cl, const char *topic, uint16_t tl, const uint8_t *p, uint16_t n)
{
    (void)cl;
    memcpy(got_topic, topic, tl);
    got_topic[tl] = 0;
    memcpy(got_payload, p, n);
    got_len = n;
    got_count++;
}

static void reset(void)
{
    mock_init(&m);
    out_seen = 0;
    got_count = 0;
    got_len = 0;
    got_topic[0] = 0;
    eb_init(&c, &m.io, rx, sizeof rx, tx, sizeof tx, on_msg);
}

#ifdef EB_MQTT5
#define CONNACK_OK 0x20, 0x03, 0x00, 0x00, 0x00 /* + empty properties */
#else
#define CONNACK_OK 0x20, 0x02, 0x00, 0x00
#endif

/* Connects with client id "d", clean session, no keepalive; skips the CONNECT bytes. */
static void connected(void)
{
    static const uint8_t ack[] = {CONNACK_OK};
    eb_connect_opts o = {0};
    o.client_id = "d";
    o.clean_session = 1;
    reset();
    mock_feed(&m, ack, sizeof ack);
    CHECK_EQ(eb_connect(&c, &o), EB_OK);
    out_seen = m.out_len;
}

static void test_connect_minimal(void)
{
    static const uint8_t ack[] = {CONNACK_OK};
    eb_connect_opts o = {0};
    reset();
    o.client_id = "dev1";
    o.clean_session = 1;
    o.keepalive_s = 60;
    mock_feed(&m, ack, sizeof ack);
    CHECK_EQ(eb_connect(&c, &o), EB_OK);
    CHECK(eb_connected(&c));
    CHECK(!(c.flags & EB_F_SESSION));
#ifdef EB_MQTT5
    CHECK_OUT(0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0, 0, 4, 'd', 'e', 'v', '1');
#else
    CHECK_OUT(0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 4, 'd', 'e', 'v', '1');
#endif
    CHECK_EQ(m.out_len, out_seen);
}

static void test_connect_full(void)
{
    static const uint8_t ack[] = {CONNACK_OK};
    eb_connect_opts o = {0};
    reset();
    o.client_id = "c";
    o.username = "u";
    o.password = "pw";
    o.will_topic = "w/t";
    o.will_msg = "bye";
    o.will_len = 3;
    o.will_flags = EB_QOS1 | EB_RETAIN;
    o.keepalive_s = 0x1234;
    mock_feed(&m, ack, sizeof ack);
    CHECK_EQ(eb_connect(&c, &o), EB_OK);
    /* flags: user 0x80 | password 0x40 | will retain 0x20 | will QoS1 0x08 | will 0x04;
     * clean session not set = persistent session. */
#ifdef EB_MQTT5
    CHECK_OUT(0x10, 32, 0, 4, 'M', 'Q', 'T', 'T', 5, 0xEC, 0x12, 0x34, 0, 0, 1, 'c', 0, 0, 3, 'w',
              '/', 't', 0, 3, 'b', 'y', 'e', 0, 1, 'u', 0, 2, 'p', 'w');
#else
    CHECK_OUT(0x10, 30, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xEC, 0x12, 0x34, 0, 1, 'c', 0, 3, 'w', '/',
              't', 0, 3, 'b', 'y', 'e', 0, 1, 'u', 0, 2, 'p', 'w');
#endif
}

static void test_connack_refused_and_session(void)
{
    eb_connect_opts o = {0};
#ifdef EB_MQTT5
    static const uint8_t bad[] = {0x20, 0x03, 0x00, 0x87, 0x00}; /* not authorized */
    static const uint8_t sp[] = {0x20, 0x03, 0x01, 0x00, 0x00};
#else
    static const uint8_t bad[] = {0x20, 0x02, 0x00, 0x05}; /* not authorized */
    static const uint8_t sp[] = {0x20, 0x02, 0x01, 0x00};
#endif
    o.client_id = "x";
    reset();
    mock_feed(&m, bad, sizeof bad);
    CHECK_EQ(eb_connect(&c, &o), EB_ERR_REFUSED);
    CHECK_EQ(c.ack_code, bad[3]);
    CHECK(!eb_connected(&c));
    CHECK_EQ(eb_publish(&c, "t", "x", 1, EB_QOS0, NULL), EB_ERR_STATE);
    reset();
    mock_feed(&m, sp, sizeof sp);
    CHECK_EQ(eb_connect(&c, &o), EB_OK);
    CHECK(c.flags & EB_F_SESSION);
}

static void test_connack_timeout(void)
{
    eb_connect_opts o = {0};
    o.client_id = "x";
    reset();
    c.timeout_ms = 100;
    CHECK_EQ(eb_connect(&c, &o), EB_ERR_TIMEOUT);
    CHECK(!eb_connected(&c));
    CHECK(m.t >= 100);
}

static void test_publish_qos0(void)
{
    connected();
    CHECK_EQ(eb_publish(&c, "a/b", "hi", 2, EB_QOS0, NULL), 0);
    CHECK_EQ(eb_publish(&c, "a/b", "", 0, EB_QOS0 | EB_RETAIN, NULL), 0);
#ifdef EB_MQTT5
    CHECK_OUT(0x30, 8, 0, 3, 'a', '/', 'b', 0, 'h', 'i');
    CHECK_OUT(0x31, 6, 0, 3, 'a', '/', 'b', 0);
#else
    CHECK_OUT(0x30, 7, 0, 3, 'a', '/', 'b', 'h', 'i');
    CHECK_OUT(0x31, 5, 0, 3, 'a', '/', 'b');
#endif
    CHECK(!eb_inflight(&c));
}

#ifdef EB_MQTT5
#define PUBACK(id) 0x40, 0x02, 0x00, id /* reason code 0 may be omitted (v5 §3.4.2.1) */
#else
#define PUBACK(id) 0x40, 0x02, 0x00, id
#endif

static void test_publish_qos1_retry_and_ack(void)
{
    static const uint8_t wrong[] = {PUBACK(9)}, right[] = {PUBACK(1)};
    connected();
    c.timeout_ms = 1000;
    CHECK_EQ(eb_publish(&c, "t", "v", 1, EB_QOS1, "ab"), 1);
    CHECK(eb_inflight(&c));
    CHECK_EQ(c.inflight_id, 1);
#ifdef EB_MQTT5
    /* Properties: length 13 = user property 0x26, "msg-id", "ab". */
    CHECK_OUT(0x32, 20, 0, 1, 't', 0, 1, 13, 0x26, 0, 6, 'm', 's', 'g', '-', 'i', 'd', 0, 2, 'a', 'b',
              'v');
#else
    CHECK_OUT(0x32, 6, 0, 1, 't', 0, 1, 'v');
#endif
    /* A second QoS 1 message must wait; QoS 0 may go meanwhile. */
    CHECK_EQ(eb_publish(&c, "t", "w", 1, EB_QOS1, NULL), EB_ERR_BUSY);
    CHECK_EQ(eb_publish(&c, "q", "0", 1, EB_QOS0, NULL), 0);
#ifdef EB_MQTT5
    CHECK_OUT(0x30, 5, 0, 1, 'q', 0, '0');
#else
    CHECK_OUT(0x30, 4, 0, 1, 'q', '0');
#endif
    /* No PUBACK for timeout_ms. */
    m.t += 1000;
    CHECK_EQ(eb_poll(&c), EB_OK);
#ifdef EB_MQTT5
    /* MQTT 5 resends only on reconnect. */
    CHECK_EQ(m.out_len, out_seen);
#else
    /* 3.1.1: resent with DUP=1 and the same packet id. */
    CHECK_OUT(0x3A, 6, 0, 1, 't', 0, 1, 'v');
#endif
    /* A PUBACK for another id changes nothing. */
    mock_feed(&m, wrong, sizeof wrong);
    CHECK_EQ(eb_poll(&c), EB_OK);
    CHECK(eb_inflight(&c));
    mock_feed(&m, right, sizeof right);
    CHECK_EQ(eb_poll(&c), EB_OK);
    CHECK(!eb_inflight(&c));
    /* Next message gets the next id. */
    CHECK_EQ(eb_publish(&c, "t", "v", 1, EB_QOS1, NULL), 2);
}

static void test_resend_after_reconnect(void)
{
    static const uint8_t ack[] = {CONNACK_OK};
    eb_connect_opts o = {0};
    connected();
    CHECK_EQ(eb_publish(&c, "t", "v", 1, EB_QOS1, NULL), 1);
    out_seen = m.out_len;
    m.closed = 1; /* the peer goes away */
    CHECK_EQ(eb_poll(&c), EB_ERR_IO);
    CHECK(!eb_connected(&c));
    CHECK(eb_inflight(&c));
    CHECK_EQ(eb_poll(&c), EB_ERR_STATE);
    CHECK_EQ(eb_publish(&c, "t", "v", 1, EB_QOS0, NULL), EB_ERR_STATE);
    /* New connection on the same client: CONNECT, then the held PUBLISH with DUP=1. */
    m.closed = 0;
    mock_feed(&m, ack, sizeof ack);
    o.client_id = "d";
    CHECK_EQ(eb_connect(&c, &o), EB_OK);
#ifdef EB_MQTT5
    CHECK_OUT(0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 5, 0, 0, 0, 0, 0, 1, 'd');
    CHECK_OUT(0x3A, 7, 0, 1, 't', 0, 1, 0, 'v');
#else
    CHECK_OUT(0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 0, 0, 1, 'd');
    CHECK_OUT(0x3A, 6, 0, 1, 't', 0, 1, 'v');
#endif
    CHECK(eb_inflight(&c));
}

/* Remaining Length boundaries, §2.2.3: 127 | 128 | 16383 | 16384. */
static void test_remaining_length_encoding(void)
{
    static uint8_t big_tx[20000], payload[17000];
    static const struct {
        uint32_t rem;
        uint8_t enc[4];
        int n;
    } cases[] = {{127, {0x7F}, 1},
                 {128, {0x80, 0x01}, 2},
                 {16383, {0xFF, 0x7F}, 2},
                 {16384, {0x80, 0x80, 0x01}, 3}};
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* QoS 0 PUBLISH "t": rem = 2 + 1 + payload (+1 empty properties in v5). */
#ifdef EB_MQTT5
        uint16_t len = (uint16_t)(cases[i].rem - 4);
#else
        uint16_t len = (uint16_t)(cases[i].rem - 3);
#endif
        connected();
        c.tx = big_tx;
        c.tx_size = sizeof big_tx;
        CHECK_EQ(eb_publish(&c, "t", payload, len, EB_QOS0, NULL), 0);
        CHECK_EQ(m.out_len - out_seen, 1 + (uint32_t)cases[i].n + cases[i].rem);
        CHECK_EQ(m.out[out_seen], 0x30);
        CHECK(memcmp(m.out + out_seen + 1, cases[i].enc, (size_t)cases[i].n) == 0);
    }
}

static void test_nospace(void)
{
    static uint8_t payload[600];
    connected();
    CHECK_EQ(eb_publish(&c, "t", payload, sizeof payload, EB_QOS1, NULL), EB_ERR_NOSPACE);
    CHECK(!eb_inflight(&c));
    CHECK_EQ(m.out_len, out_seen);
    /* Exactly full: 512 = 1 + 2 (rem 509) + 2 + 1 + 2 + payload. */
#ifdef EB_MQTT5
    CHECK_EQ(eb_publish(&c, "t", payload, 503, EB_QOS1, NULL), 1);
#else
    CHECK_EQ(eb_publish(&c, "t", payload, 504, EB_QOS1, NULL), 1);
#endif
    CHECK_EQ(c.held, 512);
    /* With the tx buffer held, even a PINGREQ-sized QoS 0 publish can't be built there. */
    CHECK_EQ(eb_publish(&c, "t", "", 0, EB_QOS0, NULL), EB_ERR_NOSPACE);
    /* ... but the fixed-size packets don't need tx. */
    CHECK_EQ(eb_ping(&c), EB_OK);
}

static void test_subscribe_unsubscribe(void)
{
#ifdef EB_MQTT5
    static const uint8_t suback[] = {0x90, 0x04, 0x00, 0x01, 0x00, 0x01};
    static const uint8_t suback_fail[] = {0x90, 0x04, 0x00, 0x02, 0x00, 0x87};
    static const uint8_t unsuback[] = {0xB0, 0x04, 0x00, 0x03, 0x00, 0x00};
#else
    static const uint8_t suback[] = {0x90, 0x03, 0x00, 0x01, 0x01};
    static const uint8_t suback_fail[] = {0x90, 0x03, 0x00, 0x02, 0x80};
    static const uint8_t unsuback[] = {0xB0, 0x02, 0x00, 0x03};
#endif
    connected();
    mock_feed(&m, suback, sizeof suback);
    CHECK_EQ(eb_subscribe(&c, "s/+/t/#", EB_QOS1), 1);
#ifdef EB_MQTT5
    CHECK_OUT(0x82, 13, 0, 1, 0, 0, 7, 's', '/', '+', '/', 't', '/', '#', 1);
#else
    CHECK_OUT(0x82, 12, 0, 1, 0, 7, 's', '/', '+', '/', 't', '/', '#', 1);
#endif
    mock_feed(&m, suback_fail, sizeof suback_fail);
    CHECK_EQ(eb_subscribe(&c, "#", EB_QOS0), EB_ERR_REFUSED);
    out_seen = m.out_len;
    mock_feed(&m, unsuback, sizeof unsuback);
    CHECK_EQ(eb_unsubscribe(&c, "s/+/t/#"), EB_OK);
#ifdef EB_MQTT5
    CHECK_OUT(0xA2, 12, 0, 3, 0, 0, 7, 's', '/', '+', '/', 't', '/', '#');
#else
    CHECK_OUT(0xA2, 11, 0, 3, 0, 7, 's', '/', '+', '/', 't', '/', '#');
#endif
    CHECK(eb_connected(&c));
}

static void test_suback_timeout_and_wrong_id(void)
{
#ifdef EB_MQTT5
    static const uint8_t other[] = {0x90, 0x04, 0x00, 0x07, 0x00, 0x01};
#else
    static const uint8_t other[] = {0x90, 0x03, 0x00, 0x07, 0x01};
#endif
    connected();
    c.timeout_ms = 50;
    mock_feed(&m, other, sizeof other); /* a SUBACK for some other id is not ours */
    CHECK_EQ(eb_subscribe(&c, "a", EB_QOS1), EB_ERR_TIMEOUT);
    CHECK(!eb_connected(&c));
}

/* A PUBLISH that arrives before the SUBACK is delivered, and the SUBACK still completes. */
static void test_publish_before_suback(void)
{
#ifdef EB_MQTT5
    static const uint8_t in[] = {0x30, 0x05, 0x00, 0x01, 'a', 0x00, 'z',
                                 0x90, 0x04, 0x00, 0x01, 0x00, 0x00};
#else
    static const uint8_t in[] = {0x30, 0x04, 0x00, 0x01, 'a', 'z', 0x90, 0x03, 0x00, 0x01, 0x00};
#endif
    connected();
    mock_feed(&m, in, sizeof in);
    CHECK_EQ(eb_subscribe(&c, "a", EB_QOS0), 0);
    CHECK_EQ(got_count, 1);
    CHECK(strcmp(got_topic, "a") == 0);
}

static void test_incoming_publish_partial_reads(void)
{
#ifdef EB_MQTT5
    /* QoS 1, id 0x1234, properties: 3 bytes (payload format indicator + one more byte pair). */
    static const uint8_t in[] = {0x32, 0x0E, 0x00, 0x03, 's', '/', '1', 0x12, 0x34,
                                 0x02, 0x01, 0x01, 'h', 'e', 'y', '!'};
#else
    static const uint8_t in[] = {0x32, 0x0B, 0x00, 0x03, 's', '/', '1', 0x12, 0x34, 'h', 'e', 'y', '!'};
#endif
    size_t i;
    int r = 0;
    connected();
    m.rchunk = 1; /* the worst case: one byte per read */
    mock_feed(&m, in, sizeof in);
    for (i = 0; i < sizeof in + 2 && got_count == 0; i++)
        r |= eb_poll(&c);
    CHECK_EQ(r, EB_OK);
    CHECK_EQ(got_count, 1);
    CHECK(strcmp(got_topic, "s/1") == 0);
    CHECK_EQ(got_len, 4);
    CHECK(memcmp(got_payload, "hey!", 4) == 0);
    /* The QoS 1 receiver answers with PUBACK and the same id [MQTT-2.3.1-6]. */
    CHECK_OUT(0x40, 0x02, 0x12, 0x34);
}

static void test_incoming_two_packets_one_read(void)
{
    static const uint8_t in[] = {
#ifdef EB_MQTT5
        0x30, 0x05, 0x00, 0x01, 'a', 0x00, '1', 0x31, 0x05, 0x00, 0x01, 'b', 0x00, '2',
#else
        0x30, 0x04, 0x00, 0x01, 'a', '1', 0x31, 0x04, 0x00, 0x01, 'b', '2',
#endif
    };
    connected();
    mock_feed(&m, in, sizeof in);
    CHECK_EQ(eb_poll(&c), EB_OK);
    CHECK_EQ(got_count, 1); /* one packet per poll */
    CHECK_EQ(eb_poll(&c), EB_OK);
    CHECK_EQ(got_count, 2);
    CHECK(strcmp(got_topic, "b") == 0 && got_payload[0] == '2');
    CHECK_EQ(m.out_len, out_seen); /* QoS 0: no PUBACK */
}

/* A 2-byte Remaining Length on the way in (300 bytes of payload). */
static void test_incoming_long(void)
{
    static uint8_t in[320];
    uint16_t rem = 2 + 1 + 300;
    size_t n = 0, i;
    int polls = 0;
#ifdef EB_MQTT5
    rem++;
#endif
    in[n++] = 0x30;
    in[n++] = (uint8_t)(0x80 | (rem & 0x7F));
    in[n++] = (uint8_t)(rem >> 7);
    in[n++] = 0;
    in[n++] = 1;
    in[n++] = 'L';
#ifdef EB_MQTT5
    in[n++] = 0;
#endif
    for (i = 0; i < 300; i++)
        in[n++] = (uint8_t)i;
    connected();
    m.rchunk = 7;
    mock_feed(&m, in, n);
    while (got_count == 0 && polls++ < 100)
        CHECK_EQ(eb_poll(&c), EB_OK);
    CHECK_EQ(got_count, 1);
    CHECK_EQ(got_len, 300);
    CHECK(got_payload[299] == (uint8_t)299);
}

/* Each of these must end the connection with the given error, write nothing
 * beyond rx (ASan watches) and deliver nothing. */
static void expect_error(const uint8_t *in, size_t n, int err, int line)
{
    int r = EB_OK, polls = 0;
    connected();
    mock_feed(&m, in, n);
    while (r == EB_OK && polls++ < 50)
        r = eb_poll(&c);
    if (r != err || eb_connected(&c) || got_count) {
        failed++;
        fprintf(stderr, "test_codec.c:%d: expected error %d, got %d (connected %d, delivered %d)\n",
                line, err, r, eb_connected(&c), got_count);
    } else {
        passed++;
    }
}
#define EXPECT_ERROR(err, ...)                                                          \
    do {                                                                                \
        static const uint8_t in_[] = {__VA_ARGS__};                                     \
        expect_error(in_, sizeof in_, err, __LINE__);                                   \
    } while (0)

static void test_malformed_and_oversized(void)
{
    /* Remaining Length longer than 4 bytes, §2.2.3. */
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F);
    /* Larger than the 512-byte rx buffer: refused before the body is read. */
    EXPECT_ERROR(EB_ERR_TOO_BIG, 0x30, 0xFE, 0x03, 0x00, 0x01, 'a');
    EXPECT_ERROR(EB_ERR_TOO_BIG, 0x30, 0xFF, 0xFF, 0xFF, 0x7F);
    /* Reserved flags set on PUBACK [MQTT-2.2.2-2]. */
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x41, 0x02, 0x00, 0x01);
    /* PUBLISH QoS 3 [MQTT-3.3.1-4] and QoS 2 (never subscribed to). */
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01);
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x34, 0x05, 0x00, 0x01, 'a', 0x00, 0x01);
    /* Topic length past the end of the packet. */
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x30, 0x04, 0x00, 0x09, 'a', 'b');
    /* Topic length field cut short. */
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x30, 0x01, 0x00);
    /* Empty topic [MQTT-4.7.3-1]. */
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x30, 0x03, 0x00, 0x00, 'x');
    /* QoS 1 without room for the packet id, and with id 0 [MQTT-2.3.1-1]. */
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x32, 0x04, 0x00, 0x01, 'a', 0x00);
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x32, 0x06, 0x00, 0x01, 'a', 0x00, 0x00, 'p');
    /* Acks of the wrong length. */
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x40, 0x01, 0x00);
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x90, 0x02, 0x00, 0x01);
    EXPECT_ERROR(EB_ERR_MALFORMED, 0xD0, 0x01, 0x00);
    /* Packets only a client sends. */
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00);
    EXPECT_ERROR(EB_ERR_MALFORMED, 0xC0, 0x00);
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x00, 0x00);
#ifdef EB_MQTT5
    /* Property length past the end, and a 5-byte property length. */
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x30, 0x05, 0x00, 0x01, 'a', 0x05, 'x');
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x30, 0x08, 0x00, 0x01, 'a', 0x80, 0x80, 0x80, 0x80, 0x01);
    /* The server ends the session with a DISCONNECT. */
    EXPECT_ERROR(EB_ERR_IO, 0xE0, 0x01, 0x8B);
#else
    EXPECT_ERROR(EB_ERR_MALFORMED, 0x20, 0x03, 0x00, 0x00, 0x00);
    EXPECT_ERROR(EB_ERR_MALFORMED, 0xE0, 0x00);
#endif
}

/* An rx buffer smaller than a fixed header must not be written past. */
static void test_tiny_rx(void)
{
    static uint8_t small[3];
    static const uint8_t in[] = {0x30, 0x80, 0x80, 0x80, 0x01};
    connected();
    c.rx = small;
    c.rx_size = sizeof small;
    mock_feed(&m, in, sizeof in);
    CHECK_EQ(eb_poll(&c), EB_ERR_TOO_BIG);
}

static void test_keepalive(void)
{
    static const uint8_t ack[] = {CONNACK_OK}, pingresp[] = {0xD0, 0x00};
    eb_connect_opts o = {0};
    reset();
    o.client_id = "k";
    o.keepalive_s = 10;
    mock_feed(&m, ack, sizeof ack);
    CHECK_EQ(eb_connect(&c, &o), EB_OK);
    out_seen = m.out_len;
    m.t += 7000;
    CHECK_EQ(eb_poll(&c), EB_OK);
    CHECK_EQ(m.out_len, out_seen); /* not yet due at 7 s of 10 */
    m.t += 600;
    CHECK_EQ(eb_poll(&c), EB_OK);
    CHECK_OUT(0xC0, 0x00); /* PINGREQ at 3/4 of the keepalive */
    CHECK(c.flags & EB_F_PING);
    mock_feed(&m, pingresp, sizeof pingresp);
    CHECK_EQ(eb_poll(&c), EB_OK);
    CHECK(!(c.flags & EB_F_PING));
    /* Next ping, and no PINGRESP this time. */
    m.t += 7600;
    CHECK_EQ(eb_poll(&c), EB_OK);
    CHECK_OUT(0xC0, 0x00);
    m.t += 7600;
    CHECK_EQ(eb_poll(&c), EB_ERR_TIMEOUT);
    CHECK(!eb_connected(&c));
}

static void test_partial_writes(void)
{
    static const uint8_t ack[] = {CONNACK_OK};
    eb_connect_opts o = {0};
    reset();
    m.wchunk = 3;
    m.stall_every = 2; /* every other write moves nothing */
    o.client_id = "dev1";
    o.clean_session = 1;
    o.keepalive_s = 60;
    mock_feed(&m, ack, sizeof ack);
    CHECK_EQ(eb_connect(&c, &o), EB_OK);
#ifdef EB_MQTT5
    CHECK_OUT(0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0, 0, 4, 'd', 'e', 'v', '1');
#else
    CHECK_OUT(0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 4, 'd', 'e', 'v', '1');
#endif
    CHECK(m.writes > 10);
}

static void test_write_stall_times_out(void)
{
    connected();
    c.timeout_ms = 200;
    m.stall_all = 1;
    CHECK_EQ(eb_publish(&c, "t", "v", 1, EB_QOS1, NULL), EB_ERR_TIMEOUT);
    CHECK(!eb_connected(&c));
    CHECK(eb_inflight(&c)); /* kept for the next connection */
}

static void test_ping_and_disconnect(void)
{
    connected();
    CHECK_EQ(eb_ping(&c), EB_OK);
    CHECK_OUT(0xC0, 0x00);
    CHECK_EQ(eb_disconnect(&c), EB_OK);
    CHECK_OUT(0xE0, 0x00);
    CHECK(!eb_connected(&c));
    CHECK_EQ(eb_disconnect(&c), EB_ERR_STATE);
    CHECK_EQ(eb_ping(&c), EB_ERR_STATE);
    CHECK_EQ(eb_subscribe(&c, "a", 0), EB_ERR_STATE);
}

/* Packet ids skip 0 on wrap-around and never reuse the id in flight. */
static void test_packet_id_wrap(void)
{
    static const uint8_t suback_ffff[] = {
#ifdef EB_MQTT5
        0x90, 0x04, 0xFF, 0xFF, 0x00, 0x00,
#else
        0x90, 0x03, 0xFF, 0xFF, 0x00,
#endif
    };
    connected();
    c.next_id = 0xFFFE;
    CHECK_EQ(eb_publish(&c, "t", "v", 1, EB_QOS1, NULL), 0xFFFF);
    mock_feed(&m, suback_ffff, sizeof suback_ffff);
    c.timeout_ms = 20;
    c.next_id = 0xFFFE;
    /* The subscribe must take neither 0xFFFF (in flight) nor 0: it gets 1, and
     * so the SUBACK for 0xFFFF above is not its ack. */
    CHECK_EQ(eb_subscribe(&c, "a", 0), EB_ERR_TIMEOUT);
    CHECK_EQ(c.next_id, 1);
}

int main(void)
{
    test_connect_minimal();
    test_connect_full();
    test_connack_refused_and_session();
    test_connack_timeout();
    test_publish_qos0();
    test_publish_qos1_retry_and_ack();
    test_resend_after_reconnect();
    test_remaining_length_encoding();
    test_nospace();
    test_subscribe_unsubscribe();
    test_suback_timeout_and_wrong_id();
    test_publish_before_suback();
    test_incoming_publish_partial_reads();
    test_incoming_two_packets_one_read();
    test_incoming_long();
    test_malformed_and_oversized();
    test_tiny_rx();
    test_keepalive();
    test_partial_writes();
    test_write_stall_times_out();
    test_ping_and_disconnect();
    test_packet_id_wrap();
#ifdef EB_MQTT5
    printf("test_codec, MQTT 5 build\n");
#else
    printf("test_codec, MQTT 3.1.1 build\n");
#endif
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
