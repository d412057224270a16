/*
 * Telemetry publisher: connects, publishes `count` messages ("0", "1", ...)
 * to `topic` and exits 0 once every QoS 1 message is acknowledged.
 * A lost connection is reopened and the unacked message resent (same packet
 * id, DUP=1), so every message arrives at least once.
 *
 *   pub HOST PORT TOPIC COUNT QOS
 * Environment: EB_CLIENT_ID (default eb-pub-PID), EB_TIMEOUT_MS (ack wait and
 * resend interval, default 5000), EB_KEEPALIVE (seconds, default 30),
 * EB_CLEAN=0 for a persistent session.
 * Built with -DEB_MQTT5 (build/pub5) each message also carries its dedupe id
 * "CLIENTID-N" as the `msg-id` user property.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "edgebus_mqtt.h"
#include "posix.h"

static eb_posix sock;
static eb_io io;
static eb_client client;
static uint8_t rxbuf[256], txbuf[1024];
static const char *host, *port;
static eb_connect_opts opts;
static unsigned reconnects;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *env(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

/* (Re)opens the socket and sends CONNECT, retrying for about 10 seconds. */
static int connect_retry(int first)
{
    int attempt, r = EB_ERR_IO;
    for (attempt = 0; attempt < 100; attempt++) {
        if (!first || attempt)
            sleep_ms(100);
        eb_posix_close(&sock);
        if (eb_posix_open(&sock, host, port) != 0)
            continue;
        r = eb_connect(&client, &opts);
        if (r == EB_OK) {
            if (!first)
                reconnects++;
            return 0;
        }
        fprintf(stderr, "pub: connect failed (%d)\n", r);
    }
    return r;
}

int main(int argc, char **argv)
{
    char id[32], payload[16], msg_id[64];
    long count, i = 0;
    uint8_t qos;
    int r;
    if (argc != 6) {
        fprintf(stderr, "usage: pub HOST PORT TOPIC COUNT QOS\n");
        return 2;
    }
    host = argv[1];
    port = argv[2];
    count = atol(argv[4]);
    qos = atoi(argv[5]) ? EB_QOS1 : EB_QOS0;
    snprintf(id, sizeof id, "eb-pub-%ld", (long)getpid());
    opts.client_id = env("EB_CLIENT_ID", id);
    opts.keepalive_s = (uint16_t)atoi(env("EB_KEEPALIVE", "30"));
    opts.clean_session = (uint8_t)atoi(env("EB_CLEAN", "1"));

    eb_posix_io(&io, &sock);
    eb_init(&client, &io, rxbuf, sizeof rxbuf, txbuf, sizeof txbuf, NULL);
    client.timeout_ms = (uint16_t)atoi(env("EB_TIMEOUT_MS", "5000"));
    sock.fd = -1;
    if (connect_retry(1) != 0) {
        fprintf(stderr, "pub: cannot connect to %s:%s\n", host, port);
        return 1;
    }
    /* Loop until every message is published and the last one is acked. */
    while (i < count || eb_inflight(&client)) {
        if (!eb_connected(&client) && connect_retry(0) != 0) {
            fprintf(stderr, "pub: gave up reconnecting\n");
            return 1;
        }
        if (i == count || eb_inflight(&client)) {
            eb_poll(&client); /* an error clears eb_connected: handled above */
            continue;
        }
        int n = snprintf(payload, sizeof payload, "%ld", i);
        snprintf(msg_id, sizeof msg_id, "%s-%ld", opts.client_id, i);
        r = eb_publish(&client, argv[3], payload, (uint16_t)n, qos, msg_id);
        /* A QoS 1 message that was accepted into the tx buffer is resent by
         * the next eb_connect even if sending failed, so it counts as done. */
        if (r >= 0 || eb_inflight(&client))
            i++;
        else if (r == EB_ERR_NOSPACE) {
            fprintf(stderr, "pub: message does not fit the tx buffer\n");
            return 1;
        }
    }
    eb_disconnect(&client);
    eb_posix_close(&sock);
    fprintf(stderr, "pub: published %ld reconnects %u\n", count, reconnects);
    return 0;
}
