/*
 * Fuzz test of the decoder and the whole incoming path, for ASan/UBSan builds.
 * No external fuzzer: a seeded xorshift PRNG builds byte streams from valid
 * server packets, mutated ones (bit flips, length tweaks, truncation,
 * inserted bytes) and pure noise, and feeds them through eb_connect/eb_poll
 * (plus publish/subscribe/ping calls that wait on the same stream) in random
 * read-chunk sizes. rx and tx are heap blocks of exactly the declared size,
 * so ASan reports any access past them.
 *
 *   fuzz_incoming ITERATIONS SECONDS SEED
 * Stops at whichever limit comes first. Fails (exit 1) on a broken invariant,
 * or if the run never reached the outcomes that show it explores the decoder:
 * delivered messages, and each of the error codes for bad input.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgebus_mqtt.h"
#include "mock_io.h"

/* Wall-clock seconds: the run is bounded in real time even on a busy machine. */
static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_state;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static uint32_t below(uint32_t n) { return n ? rnd() % n : 0; }

static mock_io m;
static uint8_t *rx_lo, *rx_hi;
static unsigned long delivered;

#define INVARIANT(cond)                                                                 \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz_incoming.c:%d: invariant broken: %s\n", __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

static void on_msg(eb_client *c, const char *topic, uint16_t tl, const uint8_t *p, uint16_t n)
{
    const uint8_t *t = (const uint8_t *)topic;
    volatile uint8_t sink = 0;
    uint16_t i;
    (void)c;
    INVARIANT(tl > 0);
    INVARIANT(t >= rx_lo && t + tl <= rx_hi);
    INVARIANT(p >= t + tl && p + n <= rx_hi);
    /* Touch every byte so ASan would see a bad pointer/length pair. */
    for (i = 0; i < tl; i++)
        sink ^= t[i];
    for (i = 0; i < n; i++)
        sink ^= p[i];
    (void)sink;
    delivered++;
}

/* Valid server-to-client packets for this build. */
#ifdef EB_MQTT5
static const uint8_t connack[] = {0x20, 0x03, 0x00, 0x00, 0x00};
static const uint8_t corpus[][24] = {
    {0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 0x00, 'x'},
    {0x32, 0x0C, 0x00, 0x01, 't', 0x00, 0x05, 0x03, 0x01, 0x01, 0x01, 'h', 'e', 'y'},
    {0x31, 0x0A, 0x00, 0x02, 's', '1', 0x05, 0x26, 0x00, 0x01, 'k', 0x00},
    {0x40, 0x02, 0x00, 0x01},
    {0x40, 0x04, 0x00, 0x01, 0x10, 0x00},
    {0x90, 0x04, 0x00, 0x02, 0x00, 0x01},
    {0x90, 0x06, 0x00, 0x03, 0x02, 0x1F, 0x00, 0x80},
    {0xB0, 0x04, 0x00, 0x03, 0x00, 0x00},
    {0xD0, 0x00},
    {0xE0, 0x01, 0x8B},
    {0x20, 0x03, 0x01, 0x00, 0x00},
};
#else
static const uint8_t connack[] = {0x20, 0x02, 0x00, 0x00};
static const uint8_t corpus[][24] = {
    {0x30, 0x06, 0x00, 0x03, 'a', '/', 'b', 'x'},
    {0x32, 0x08, 0x00, 0x01, 't', 0x00, 0x05, 'h', 'e', 'y'},
    {0x31, 0x04, 0x00, 0x02, 's', '1'},
    {0x40, 0x02, 0x00, 0x01},
    {0x90, 0x03, 0x00, 0x02, 0x01},
    {0x90, 0x03, 0x00, 0x03, 0x80},
    {0xB0, 0x02, 0x00, 0x03},
    {0xD0, 0x00},
    {0x20, 0x02, 0x01, 0x00},
};
#endif
#define NCORPUS (sizeof corpus / sizeof corpus[0])

/* Length of a corpus entry: fixed header + its 1-byte Remaining Length. */
static size_t corpus_len(size_t i) { return 2u + corpus[i][1]; }

static uint8_t scratch[4096];

/* Appends one packet-ish unit to the mock input. */
static void add_unit(void)
{
    size_t n, i, k = below(NCORPUS);
    uint32_t kind = below(10);
    if (kind == 0) { /* noise */
        n = below(64);
        for (i = 0; i < n; i++)
            scratch[i] = (uint8_t)rnd();
    } else if (kind == 1) { /* a long PUBLISH with a multi-byte Remaining Length */
        uint32_t rem = 3 + below(1200);
        n = 0;
        scratch[n++] = (uint8_t)(0x30 | (below(4) ? 0 : 2));
        do {
            uint8_t d = (uint8_t)(rem & 0x7F);
            rem >>= 7;
            scratch[n++] = rem ? (uint8_t)(d | 0x80) : d;
        } while (rem);
        scratch[n++] = 0;
        scratch[n++] = (uint8_t)(1 + below(8));
        i = 3 + below(1200);
        while (i-- && n < sizeof scratch)
            scratch[n++] = (uint8_t)rnd();
    } else {
        n = corpus_len(k);
        memcpy(scratch, corpus[k], n);
        if (kind >= 5) { /* mutate */
            uint32_t edits = 1 + below(4);
            while (edits--) {
                switch (below(6)) {
                case 0: scratch[below((uint32_t)n)] ^= (uint8_t)(1u << below(8)); break;
                case 1: scratch[below((uint32_t)n)] = (uint8_t)rnd(); break;
                case 2: scratch[1 + below(n > 1 ? (uint32_t)n - 1 : 1)] = below(2) ? 0xFF : 0x80; break;
                case 3: if (n) n = below((uint32_t)n); break; /* truncate */
                case 4: /* insert a byte */
                    if (n + 1 < sizeof scratch) {
                        i = below((uint32_t)n + 1);
                        memmove(scratch + i + 1, scratch + i, n - i);
                        scratch[i] = (uint8_t)rnd();
                        n++;
                    }
                    break;
                default: /* change the Remaining Length */
                    if (n > 1)
                        scratch[1] = (uint8_t)(scratch[1] + (int)below(5) - 2);
                }
            }
        }
    }
    if (m.in_len + n <= sizeof m.in)
        mock_feed(&m, scratch, n);
}

static unsigned long outcome[16]; /* indexed by -return code */

static void note(int r)
{
    INVARIANT(r >= EB_ERR_STATE && r <= 0xFFFF);
    if (r <= 0)
        outcome[-r]++;
}

static void one_case(void)
{
    uint16_t rx_size = (uint16_t)(below(4) ? 64 + below(1400) : 3 + below(64));
    uint16_t tx_size = (uint16_t)(16 + below(600));
    uint8_t *rx = malloc(rx_size), *tx = malloc(tx_size);
    eb_client c;
    eb_connect_opts o = {0};
    int r, steps, units = 1 + (int)below(10);
    if (!rx || !tx)
        abort();
    rx_lo = rx;
    rx_hi = rx + rx_size;
    mock_init(&m);
    m.rchunk = below(9);
    m.tick = 1 + below(50);
    m.closed = (int)below(2);
    /* Usually a valid CONNACK first so the run gets past the handshake. */
    if (below(8))
        mock_feed(&m, connack, sizeof connack);
    while (units--)
        add_unit();
    eb_init(&c, &m.io, rx, rx_size, tx, tx_size, on_msg);
    c.timeout_ms = (uint16_t)(50 + below(300));
    o.client_id = "fuzz";
    o.keepalive_s = (uint16_t)below(3);
    for (steps = 0; steps < 200 && m.in_pos < m.in_len; steps++) {
        if (!eb_connected(&c)) {
            r = eb_connect(&c, &o); /* also resends a held QoS 1 message */
        } else {
            switch (below(12)) {
            case 0: r = eb_publish(&c, "f/t", "payload", 7, (uint8_t)below(2), "id-1"); break;
            case 1: r = eb_subscribe(&c, "f/#", (uint8_t)below(2)); break;
            case 2: r = eb_unsubscribe(&c, "f/+"); break;
            case 3: r = eb_ping(&c); break;
            default: r = eb_poll(&c);
            }
        }
        note(r);
        INVARIANT(c.rx_pos <= c.rx_size && c.rx_total <= c.rx_size);
        INVARIANT(c.held <= c.tx_size);
        INVARIANT(!c.held || c.inflight_id != 0);
        INVARIANT(m.out_len <= sizeof m.out);
    }
    free(rx);
    free(tx);
}

int main(int argc, char **argv)
{
    unsigned long iters = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    unsigned long seed = argc > 3 ? strtoul(argv[3], NULL, 10) : 1;
    double start = seconds_now();
    unsigned long i;
    int missing = 0;
    rng_state = 0x9E3779B97F4A7C15ull ^ (uint64_t)seed;
    for (i = 0; i < iters; i++) {
        one_case();
        if ((i & 255) == 0 && seconds_now() - start > seconds)
            break;
    }
#ifdef EB_MQTT5
    printf("fuzz_incoming, MQTT 5 build, seed %lu\n", seed);
#else
    printf("fuzz_incoming, MQTT 3.1.1 build, seed %lu\n", seed);
#endif
    printf("iterations %lu, messages delivered %lu, ok %lu, io %lu, timeout %lu, too_big %lu, "
           "malformed %lu, refused %lu, busy %lu, nospace %lu, state %lu\n",
           i, delivered, outcome[0], outcome[1], outcome[2], outcome[4], outcome[5], outcome[6],
           outcome[7], outcome[3], outcome[8]);
    /* Evidence the inputs reach past the framing into every decoder branch. */
    if (!delivered || !outcome[-EB_ERR_MALFORMED] || !outcome[-EB_ERR_TOO_BIG] ||
        !outcome[-EB_ERR_IO] || !outcome[-EB_ERR_TIMEOUT] || !outcome[-EB_ERR_REFUSED]) {
        fprintf(stderr, "fuzz run too narrow: some outcome never happened\n");
        missing = 1;
    }
    printf("%d passed, %d failed\n", missing ? 0 : 1, missing);
    return missing;
}
