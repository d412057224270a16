/*
 * Subscriber: subscribes to FILTER (wildcards allowed) with QoS 1, prints
 * "topic payload" for each message, one per line, and exits after COUNT.
 * Prints "subscribed" to stderr once the SUBACK is in, so a test can start
 * publishing then.
 *
 *   sub HOST PORT FILTER COUNT
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "edgebus_mqtt.h"
#include "posix.h"

static long remaining;

static void on_message(eb_client *c, const char *topic, uint16_t topic_len,
                       const uint8_t *payload, uint16_t len)
{
    (void)c;
    printf("%.*s %.*s\n", (int)topic_len, topic, (int)len, (const char *)payload);
    fflush(stdout);
    remaining--;
}

int main(int argc, char **argv)
{
    static uint8_t rxbuf[1024], txbuf[256];
    eb_posix sock;
    eb_io io;
    eb_client client;
    eb_connect_opts opts = {0};
    char id[32];
    int r;
    if (argc != 5) {
        fprintf(stderr, "usage: sub HOST PORT FILTER COUNT\n");
        return 2;
    }
    remaining = atol(argv[4]);
    if (eb_posix_open(&sock, argv[1], argv[2]) != 0) {
        fprintf(stderr, "sub: cannot connect to %s:%s\n", argv[1], argv[2]);
        return 1;
    }
    snprintf(id, sizeof id, "eb-sub-%ld", (long)getpid());
    opts.client_id = id;
    opts.clean_session = 1;
    opts.keepalive_s = 30;
    eb_posix_io(&io, &sock);
    eb_init(&client, &io, rxbuf, sizeof rxbuf, txbuf, sizeof txbuf, on_message);
    r = eb_connect(&client, &opts);
    if (r == EB_OK)
        r = eb_subscribe(&client, argv[3], EB_QOS1);
    if (r < 0) {
        fprintf(stderr, "sub: connect/subscribe failed (%d)\n", r);
        return 1;
    }
    fprintf(stderr, "subscribed %d\n", r);
    while (remaining > 0) {
        r = eb_poll(&client);
        if (r < 0) {
            fprintf(stderr, "sub: connection lost (%d)\n", r);
            return 1;
        }
    }
    eb_disconnect(&client);
    eb_posix_close(&sock);
    return 0;
}
