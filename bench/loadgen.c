/*
 * edgebus bench load generator (issue 9).
 *
 * One process, one thread, one epoll set. Every client is a non-blocking TCP
 * socket speaking hand-encoded MQTT 3.1.1. Publishers encode up to BATCH
 * PUBLISH packets into their output buffer and hand them to the kernel with a
 * single send(); with -B 1 every packet gets its own send(), like a device.
 *
 *   loadgen SCENARIO [flags]        SCENARIO = fanin | fanout | qos1 | latency | conns
 *
 * Results: exactly one JSON object on one line on stdout. Diagnostics go to
 * stderr; in `conns` mode the line "loadgen: ready N" is written to stderr once
 * every connection has its CONNACK (the harness samples broker RSS then).
 *
 * Topics: publisher p writes to bench/p (fanin, qos1) or bench/0 (fanout, latency); with
 * -T N to bench/p/<seq % N>, the number zero-padded so all of p's packets have one length
 * (the retained-store churn of the 'retained' scenario, together with -R for the RETAIN bit).
 *
 * Payload layout (little endian, rest of the payload is filler):
 *   [0..3]  publisher number   [4..11] sequence number   [12..19] send time, CLOCK_MONOTONIC ns
 *
 * Flow control and efficiency:
 *  - a publisher never encodes new packets while its previous write is still
 *    pending in user space (the socket returned EAGAIN / a short write);
 *  - QoS 0 with subscribers: a publisher may be at most FLOW (-F) messages ahead
 *    of the slowest subscriber's read position for that publisher (end-to-end
 *    window, refilled in chunks of min(BATCH, FLOW/4)), so the numbers are
 *    deliveries subscribers actually read, not bytes parked in kernel or broker
 *    buffers. Should the broker drop the tail of a window, it is written off
 *    after 2 s without progress (reported as written_off);
 *  - QoS 1: at most WINDOW (-W) unacknowledged PUBLISHes per publisher, refilled
 *    as PUBACKs arrive (or when QUANTUM (-Q) slots are free);
 *  - while every publisher waits for credit and the last reads were small, the
 *    loop naps 50 us (-C) before polling, so packets the broker trickles out are
 *    read in bulk rather than with one wakeup + recv each (not in latency and
 *    conns modes);
 *  - teardown sends DISCONNECT and lets the broker close first, so TIME_WAIT ends
 *    up on the broker's listening port and not on our ephemeral ports.
 *
 * The JSON line reports the generator's own CPU use over the measured window
 * (gen_cpu_pct) and its syscall counts; with -b PID also the broker's CPU time.
 *
 * Build: gcc -O2 -Wall -o bench/bin/loadgen bench/loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD_MIN 20
#define STALL_NS 2000000000ull /* QoS 0 window written off after 2 s without any progress */

enum scenario { FANIN, FANOUT, QOS1, LATENCY, CONNS };
static const char *const SCENARIO_NAMES[] = {"fanin", "fanout", "qos1", "latency", "conns"};

enum role { PUB, SUB, IDLE };
enum cstate { C_TCP, C_CONNECT_SENT, C_SUBSCRIBE_SENT, C_UP, C_DEAD };
enum phase { P_SETUP, P_WARMUP, P_MEASURE, P_DRAIN, P_END };

typedef struct {
    uint8_t *p;
    size_t head, tail, cap; /* pending bytes are p[head..tail) */
} bytes_t;

typedef struct client {
    int fd, id;
    enum role role;
    enum cstate st;
    bool out_armed; /* EPOLLOUT currently requested */
    bool blocked;   /* last send() could not take everything */
    bytes_t in, out;
    /* publisher */
    int pub_no;
    uint8_t *prefix; /* fixed header + topic of this publisher's PUBLISH */
    size_t prefix_len, pkt_len;
    size_t spread_at;  /* -T: offset in prefix of the zero-padded topic number */
    uint64_t sent, acked;
    uint16_t pkid;
    uint64_t written_off;     /* QoS 0: messages presumed dropped by the broker */
    uint64_t seen_min_last;   /* QoS 0: slowest subscriber position at last check */
    uint64_t stall_since;     /* ns, 0 = not stalled */
    /* subscriber */
    uint64_t *next_seq;       /* per publisher: highest sequence seen + 1 */
    uint64_t got, gaps, reordered;
} client_t;

/* ---------- options ---------- */
static enum scenario scn;
static const char *host = "127.0.0.1";
static int port = 1883, npub = -1, nsub = -1, nconns = 10000;
static int payload = 64, batch = 256, window = 64, quantum = -1, flow = 4000, keepalive = -1;
static double duration = 5, warmup = 1, rate = 10000;
static long coalesce_ns = -1;
static int max_pending = 64; /* conns: handshakes in flight; below listen backlogs (mosquitto: 100) so no SYN is dropped */
static int broker_pid = 0;
static const char *topic_base = "bench";
static bool retain_flag;  /* -R: PUBLISH with the RETAIN bit */
static int spread;        /* -T N: publisher p publishes to <base>/<p>/<seq % N> */
static int spread_digits; /* width of the zero-padded topic number (N - 1) */

/* ---------- state ---------- */
static int epfd = -1, timer_fd = -1;
static client_t *cl;
static int ncl;
static client_t **pubs, **subs;
static int n_up, n_failed, n_started;
static enum phase phase = P_SETUP;
static volatile sig_atomic_t stop_now;
static uint64_t tot_sent, tot_recv, tot_acked, tot_written_off;
static uint64_t *lat_ns;
static size_t lat_n, lat_cap;
static uint64_t lat_t0, lat_scheduled, lat_skipped;
static uint8_t *filler;
static uint64_t n_waits, n_recvs, n_sends, n_naps; /* syscall counters, whole run */
static uint64_t iter_recvs, iter_bytes;           /* reads in the current loop iteration */

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    printf("{\"tool\":\"edgebus-loadgen\",\"scenario\":\"%s\",\"ok\":false}\n", SCENARIO_NAMES[scn]);
    fflush(stdout);
    exit(2);
}

static void on_signal(int sig) { (void)sig; stop_now = 1; }

/* ---------- /proc and rusage ---------- */
static double proc_cpu_seconds(int pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    /* the command name may contain spaces: fields are counted after the last ')' */
    char *s = strrchr(buf, ')');
    if (!s) return -1;
    unsigned long long ut, st;
    /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* whole machine from /proc/stat: task (user+nice+system) and steal CPU-seconds since boot, all CPUs */
static void machine_cpu_seconds(double *busy, double *steal) {
    unsigned long long v[8] = {0};
    *busy = *steal = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return;
    /* cpu  user nice system idle iowait irq softirq steal */
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
        double hz = (double)sysconf(_SC_CLK_TCK);
        *busy = (double)(v[0] + v[1] + v[2]) / hz; /* irq/softirq time is not charged to tasks */
        *steal = (double)v[7] / hz;
    }
    fclose(f);
}

static double self_cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---------- byte buffers ---------- */
static void bytes_init(bytes_t *b, size_t cap) {
    b->p = malloc(cap);
    if (!b->p) fail("out of memory");
    b->cap = cap;
    b->head = b->tail = 0;
}

/* make room for n more bytes at the tail; returns the write position */
static uint8_t *bytes_room(bytes_t *b, size_t n) {
    if (b->tail + n > b->cap) {
        if (b->head > 0) {
            memmove(b->p, b->p + b->head, b->tail - b->head);
            b->tail -= b->head;
            b->head = 0;
        }
        if (b->tail + n > b->cap) {
            size_t cap = b->cap * 2;
            while (cap < b->tail + n) cap *= 2;
            b->p = realloc(b->p, cap);
            if (!b->p) fail("out of memory");
            b->cap = cap;
        }
    }
    return b->p + b->tail;
}

static void bytes_put(bytes_t *b, const void *src, size_t n) {
    memcpy(bytes_room(b, n), src, n);
    b->tail += n;
}

static size_t pending(const client_t *c) { return c->out.tail - c->out.head; }

/* ---------- epoll ---------- */
static void watch(client_t *c, bool want_out) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) fail("epoll_ctl: %s", strerror(errno));
    c->out_armed = want_out;
}

static void kill_client(client_t *c, const char *why) {
    if (c->st == C_DEAD) return;
    if (phase < P_DRAIN && scn != CONNS) fprintf(stderr, "loadgen: client %d closed: %s\n", c->id, why);
    if (c->st != C_UP) n_failed++;
    else n_up--;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->st = C_DEAD;
}

/* hand pending output to the kernel; stops at the first EAGAIN or short write */
static void push(client_t *c) {
    while (c->st != C_DEAD && pending(c) > 0) {
        size_t want = pending(c);
        ssize_t n = send(c->fd, c->out.p + c->out.head, want, MSG_NOSIGNAL | MSG_DONTWAIT);
        n_sends++;
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            kill_client(c, strerror(errno));
            return;
        }
        c->out.head += (size_t)n;
        if ((size_t)n < want) break; /* socket buffer full */
    }
    if (c->st == C_DEAD) return;
    if (pending(c) == 0) {
        c->out.head = c->out.tail = 0;
        c->blocked = false;
        if (c->out_armed) watch(c, false);
    } else {
        c->blocked = true;
        if (!c->out_armed) watch(c, true);
    }
}

/* ---------- MQTT encoding ---------- */
static size_t put_varint(uint8_t *d, size_t v) {
    size_t n = 0;
    do {
        uint8_t digit = v & 0x7f;
        v >>= 7;
        d[n++] = digit | (v ? 0x80 : 0);
    } while (v);
    return n;
}

static size_t put_utf8(uint8_t *d, const char *s) {
    size_t n = strlen(s);
    d[0] = (uint8_t)(n >> 8);
    d[1] = (uint8_t)n;
    memcpy(d + 2, s, n);
    return n + 2;
}

/* wrap a variable header + payload of len bytes in a fixed header */
static void queue_packet(client_t *c, uint8_t type_flags, const uint8_t *body, size_t len) {
    uint8_t hdr[5];
    hdr[0] = type_flags;
    size_t h = 1 + put_varint(hdr + 1, len);
    bytes_put(&c->out, hdr, h);
    bytes_put(&c->out, body, len);
}

static void send_connect(client_t *c) {
    uint8_t body[128];
    char cid[48];
    size_t n = put_utf8(body, "MQTT");
    body[n++] = 4;    /* protocol level: 3.1.1 */
    body[n++] = 0x02; /* clean session, no will, no credentials */
    body[n++] = (uint8_t)(keepalive >> 8);
    body[n++] = (uint8_t)keepalive;
    snprintf(cid, sizeof cid, "eblg-%d-%s-%d", (int)getpid(), SCENARIO_NAMES[scn], c->id);
    n += put_utf8(body + n, cid);
    queue_packet(c, 0x10, body, n);
    c->st = C_CONNECT_SENT;
    push(c);
}

static void send_subscribe(client_t *c) {
    uint8_t body[300];
    char filter[200];
    if ((scn == FANIN || scn == QOS1) && spread)
        snprintf(filter, sizeof filter, "%s/+/+", topic_base);
    else if (scn == FANIN || scn == QOS1)
        snprintf(filter, sizeof filter, "%s/+", topic_base);
    else
        snprintf(filter, sizeof filter, "%s/0", topic_base);
    size_t n = 0;
    body[n++] = 0;
    body[n++] = 1; /* packet identifier */
    n += put_utf8(body + n, filter);
    body[n++] = scn == QOS1 ? 1 : 0;
    queue_packet(c, 0x82, body, n);
    c->st = C_SUBSCRIBE_SENT;
    push(c);
}

static void make_prefix(client_t *c) {
    char t[200];
    int topic_no = (scn == FANIN || scn == QOS1) ? c->pub_no : 0;
    /* with -T the topic ends in a zero-padded number (bench/3/0042), so every packet of
       a publisher has the same length and only those digits change per message */
    if (spread)
        snprintf(t, sizeof t, "%s/%d/%0*d", topic_base, topic_no, spread_digits, 0);
    else
        snprintf(t, sizeof t, "%s/%d", topic_base, topic_no);
    int qos = scn == QOS1 ? 1 : 0;
    size_t rl = 2 + strlen(t) + (qos ? 2 : 0) + (size_t)payload;
    c->prefix = malloc(16 + strlen(t));
    size_t n = 0;
    c->prefix[n++] = (uint8_t)(0x30 | (qos << 1) | (retain_flag ? 1 : 0));
    n += put_varint(c->prefix + n, rl);
    n += put_utf8(c->prefix + n, t);
    c->prefix_len = n;
    c->spread_at = n - (size_t)spread_digits;
    c->pkt_len = n + (qos ? 2 : 0) + (size_t)payload;
}

static inline void le32(uint8_t *d, uint32_t v) { memcpy(d, &v, 4); }
static inline void le64(uint8_t *d, uint64_t v) { memcpy(d, &v, 8); }
static inline uint32_t rd32(const uint8_t *s) { uint32_t v; memcpy(&v, s, 4); return v; }
static inline uint64_t rd64(const uint8_t *s) { uint64_t v; memcpy(&v, s, 8); return v; }

/* encode k PUBLISH packets into c's output buffer */
static void encode_publishes(client_t *c, uint64_t k, uint64_t ts) {
    uint8_t *d = bytes_room(&c->out, k * c->pkt_len);
    bool qos1 = scn == QOS1;
    for (uint64_t i = 0; i < k; i++) {
        memcpy(d, c->prefix, c->prefix_len);
        if (spread) {
            /* write seq % N right-aligned into the zero-padded digits */
            uint64_t v = c->sent % (uint64_t)spread;
            for (int j = spread_digits - 1; j >= 0; j--, v /= 10) d[c->spread_at + (size_t)j] = (uint8_t)('0' + v % 10);
        }
        d += c->prefix_len;
        if (qos1) {
            if (++c->pkid == 0) c->pkid = 1;
            d[0] = (uint8_t)(c->pkid >> 8);
            d[1] = (uint8_t)c->pkid;
            d += 2;
        }
        le32(d, (uint32_t)c->pub_no);
        le64(d + 4, c->sent);
        le64(d + 12, ts);
        memcpy(d + PAYLOAD_MIN, filler, (size_t)payload - PAYLOAD_MIN);
        d += payload;
        c->sent++;
    }
    c->out.tail += k * c->pkt_len;
    tot_sent += k;
}

/* how many more messages publisher c may put on the wire now */
static uint64_t credit(client_t *c, uint64_t now) {
    uint64_t allow = UINT64_MAX;
    if (scn == QOS1) {
        uint64_t inflight = c->sent - c->acked;
        allow = inflight >= (uint64_t)window ? 0 : (uint64_t)window - inflight;
        if (allow < (uint64_t)quantum && inflight > 0) allow = 0; /* refill in quanta */
    }
    if (flow > 0 && nsub > 0) {
        uint64_t slowest = UINT64_MAX;
        for (int s = 0; s < nsub; s++)
            if (subs[s]->st == C_UP && subs[s]->next_seq[c->pub_no] < slowest) slowest = subs[s]->next_seq[c->pub_no];
        if (slowest == UINT64_MAX) slowest = c->sent;
        if (scn != QOS1) {
            /* QoS 0: write off messages the broker apparently dropped */
            if (slowest != c->seen_min_last) {
                c->seen_min_last = slowest;
                c->stall_since = 0;
            } else if (c->sent > (slowest > c->written_off ? slowest : c->written_off)) {
                if (!c->stall_since) c->stall_since = now;
                else if (now - c->stall_since > STALL_NS) {
                    tot_written_off += c->sent - (slowest > c->written_off ? slowest : c->written_off);
                    c->written_off = c->sent;
                    c->stall_since = 0;
                }
            }
            if (c->written_off > slowest) slowest = c->written_off;
        }
        uint64_t ahead = c->sent > slowest ? c->sent - slowest : 0;
        uint64_t a = ahead >= (uint64_t)flow ? 0 : (uint64_t)flow - ahead;
        /* QoS 0 throughput: refill in chunks (a batch or a quarter window), not one
           message per delivery, so batched rows really write batches */
        if (scn != QOS1 && scn != LATENCY && ahead > 0) {
            uint64_t chunk = (uint64_t)flow / 4 < (uint64_t)batch ? (uint64_t)flow / 4 : (uint64_t)batch;
            if (chunk < 1) chunk = 1;
            if (a < chunk) a = 0;
        }
        if (a < allow) allow = a;
    }
    return allow;
}

/* one turn of a throughput publisher; returns true if it could send more right away */
static bool publisher_turn(client_t *c, uint64_t now) {
    if (c->st != C_UP || c->blocked) return false;
    uint64_t budget = batch > 64 ? (uint64_t)batch : 64; /* packets per turn, for fairness */
    while (budget > 0) {
        uint64_t k = credit(c, now);
        if (k == 0) return false;
        if (k > (uint64_t)batch) k = (uint64_t)batch;
        if (k > budget) k = budget;
        encode_publishes(c, k, now);
        push(c);
        if (c->st != C_UP || c->blocked) return false;
        budget -= k;
    }
    return true;
}

/* ---------- MQTT decoding ---------- */
static void on_publish(client_t *c, uint8_t flags, const uint8_t *b, size_t len, uint64_t rx_ns) {
    if (len < 2) return;
    size_t tl = ((size_t)b[0] << 8) | b[1];
    size_t off = 2 + tl;
    if ((flags >> 1) & 3) {
        if (off + 2 > len) return;
        uint8_t ack[4] = {0x40, 2, b[off], b[off + 1]};
        bytes_put(&c->out, ack, 4);
        off += 2;
    }
    if (off > len) return;
    c->got++;
    tot_recv++;
    if (len - off < PAYLOAD_MIN) return;
    const uint8_t *pl = b + off;
    uint32_t pno = rd32(pl);
    uint64_t seq = rd64(pl + 4);
    if (c->next_seq && pno < (uint32_t)npub) {
        uint64_t nx = c->next_seq[pno];
        if (seq >= nx) {
            c->gaps += seq - nx;
            c->next_seq[pno] = seq + 1;
        } else {
            c->reordered++;
        }
    }
    if (scn == LATENCY && phase == P_MEASURE && lat_n < lat_cap) {
        uint64_t ts = rd64(pl + 12);
        if (rx_ns >= ts) lat_ns[lat_n++] = rx_ns - ts;
    }
}

static void mark_up(client_t *c) {
    c->st = C_UP;
    n_up++;
}

/* returns false if the client was closed */
static bool on_packet(client_t *c, uint8_t h, const uint8_t *b, size_t len, uint64_t rx_ns) {
    switch (h >> 4) {
    case 2: /* CONNACK */
        if (c->st != C_CONNECT_SENT || len < 2 || b[1] != 0) {
            kill_client(c, "CONNACK refused");
            return false;
        }
        if (c->role == SUB) send_subscribe(c);
        else mark_up(c);
        break;
    case 9: /* SUBACK */
        if (c->st != C_SUBSCRIBE_SENT || len < 3 || b[2] >= 0x80) {
            kill_client(c, "SUBACK failure");
            return false;
        }
        mark_up(c);
        break;
    case 3:
        on_publish(c, h & 0x0f, b, len, rx_ns);
        break;
    case 4: /* PUBACK */
        c->acked++;
        tot_acked++;
        break;
    case 13: /* PINGRESP */
        break;
    case 14: /* DISCONNECT (MQTT 5 brokers may send it) */
        kill_client(c, "DISCONNECT from broker");
        return false;
    default:
        fprintf(stderr, "loadgen: client %d: unexpected packet type %d\n", c->id, h >> 4);
    }
    return c->st != C_DEAD;
}

static void on_readable(client_t *c) {
    for (int rounds = 0; rounds < 8 && c->st != C_DEAD; rounds++) {
        uint8_t *dst = bytes_room(&c->in, 16384);
        size_t room = c->in.cap - c->in.tail;
        ssize_t n = recv(c->fd, dst, room, MSG_DONTWAIT);
        n_recvs++;
        iter_recvs++;
        if (n > 0) iter_bytes += (uint64_t)n;
        if (n == 0) {
            kill_client(c, "connection closed by broker");
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) kill_client(c, strerror(errno));
            break;
        }
        c->in.tail += (size_t)n;
        uint64_t rx = scn == LATENCY ? now_ns() : 0;
        /* parse every complete packet */
        for (;;) {
            size_t avail = c->in.tail - c->in.head;
            const uint8_t *p = c->in.p + c->in.head;
            if (avail < 2) break;
            size_t len = 0, i = 1;
            unsigned shift = 0;
            bool complete = false;
            while (i < avail && i <= 4) {
                len |= (size_t)(p[i] & 0x7f) << shift;
                shift += 7;
                if (!(p[i++] & 0x80)) { complete = true; break; }
            }
            if (!complete) {
                if (i > 4) { kill_client(c, "malformed remaining length"); return; }
                break;
            }
            if (avail < i + len) {
                bytes_room(&c->in, i + len); /* grow for a large packet */
                break;
            }
            if (!on_packet(c, p[0], p + i, len, rx)) return;
            c->in.head += i + len;
        }
        if (c->in.head == c->in.tail) c->in.head = c->in.tail = 0;
        if ((size_t)n < room) break; /* drained */
    }
    if (c->st != C_DEAD && pending(c) > 0 && !c->blocked) push(c); /* PUBACKs, SUBSCRIBE */
}

/* ---------- connections ---------- */
static void open_client(client_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) fail("bad IPv4 host %s", host);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) fail("connect: %s", strerror(errno));
    c->fd = fd;
    c->st = C_TCP;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) fail("epoll_ctl add: %s", strerror(errno));
    c->out_armed = true;
    n_started++;
}

static void on_event(client_t *c, uint32_t ev) {
    if (c->st == C_DEAD) return;
    if (c->st == C_TCP) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) { kill_client(c, strerror(err)); return; }
        watch(c, false);
        send_connect(c);
        return;
    }
    if (ev & EPOLLOUT) push(c);
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(c);
}

static void raise_nofile(size_t need) {
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    if (r.rlim_cur >= need) return;
    if (r.rlim_max < need) {
        struct rlimit want = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0) return; /* root with CAP_SYS_RESOURCE */
        fail("need %zu file descriptors but the hard limit is %llu", need, (unsigned long long)r.rlim_max);
    }
    r.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &r) < 0) fail("setrlimit: %s", strerror(errno));
}

/*
 * DISCONNECT everything and let the broker close first, so TIME_WAIT stays on the
 * broker's side (its listening port) instead of piling up on our ephemeral ports,
 * which slows down connect() in the next runs. Whatever is still open after 2 s is
 * reset (SO_LINGER 0), which leaves no TIME_WAIT either.
 */
static void teardown(void) {
    static const uint8_t bye[2] = {0xe0, 0};
    int open_n = 0;
    for (int i = 0; i < ncl; i++) {
        client_t *c = &cl[i];
        if (c->st == C_DEAD || c->fd < 0) continue;
        if (c->st == C_UP && send(c->fd, bye, 2, MSG_NOSIGNAL | MSG_DONTWAIT) == 2) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
            epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
            open_n++;
        } else {
            struct linger lg = {1, 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(c->fd);
            c->st = C_DEAD;
        }
    }
    uint64_t until = now_ns() + 2000000000ull;
    struct epoll_event evs[512];
    static uint8_t sink[65536];
    while (open_n > 0 && now_ns() < until) {
        int n = epoll_wait(epfd, evs, 512, 10);
        for (int i = 0; i < n; i++) {
            client_t *c = evs[i].data.ptr;
            if (!c || c->st == C_DEAD) continue;
            ssize_t r;
            while ((r = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT)) > 0) {}
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->st = C_DEAD;
                open_n--;
            }
        }
    }
    for (int i = 0; i < ncl; i++) {
        client_t *c = &cl[i];
        if (c->st == C_DEAD || c->fd < 0) continue;
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(c->fd);
        c->st = C_DEAD;
    }
}

/* ---------- reporting ---------- */
static int by_value(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double quantile_us(double q) {
    if (!lat_n) return -1;
    size_t i = (size_t)(q * (double)lat_n);
    if (i >= lat_n) i = lat_n - 1;
    return lat_ns[i] / 1000.0;
}

static void usage(void) {
    fputs("usage: loadgen fanin|fanout|qos1|latency|conns [flags]\n"
          "  -h HOST     broker IPv4 address                       127.0.0.1\n"
          "  -p PORT     broker port                               1883\n"
          "  -n N        publishers            fanin/qos1 8, fanout/latency 1\n"
          "  -s S        subscribers           fanout 16, fanin/latency 1, qos1 0\n"
          "  -c C        idle connections (conns)                  10000\n"
          "  -A N        conns: connection handshakes in flight    64\n"
          "  -m BYTES    payload size (>= 20)                      64\n"
          "  -B N        PUBLISH packets per write (1 = like a device) 256\n"
          "  -W N        QoS 1 window per publisher                64\n"
          "  -Q N        QoS 1: refill only when N slots are free  1 (strict)\n"
          "  -F N        QoS 0 flow window per publisher, messages not yet read\n"
          "              by the slowest subscriber; 0 = unbounded  4000\n"
          "  -r RATE     latency: publish rate, msg/s              10000\n"
          "  -d SECONDS  measured duration; conns: hold time       5\n"
          "  -w SECONDS  warmup before measuring                   1\n"
          "  -k SECONDS  MQTT keepalive (conns 0, others 60)\n"
          "  -t TOPIC    topic prefix                              bench\n"
          "  -R          set the RETAIN flag on every PUBLISH\n"
          "  -T N        fanin/qos1: publisher p writes to TOPIC/p/<seq % N> (zero-padded),\n"
          "              N distinct topics per publisher instead of TOPIC/p   off\n"
          "  -b PID      broker pid: report its CPU time over the measured window\n"
          "  -C USEC     nap while all publishers wait, to read in bulk; 0 = off  50\n",
          stderr);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    int found = -1;
    for (int i = 0; i < 5; i++)
        if (!strcmp(argv[1], SCENARIO_NAMES[i])) found = i;
    if (found < 0) usage();
    scn = (enum scenario)found;
    optind = 2;
    for (int o; (o = getopt(argc, argv, "h:p:n:s:c:m:B:W:Q:F:r:d:w:k:t:b:C:A:RT:")) != -1;) {
        switch (o) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'n': npub = atoi(optarg); break;
        case 's': nsub = atoi(optarg); break;
        case 'c': nconns = atoi(optarg); break;
        case 'm': payload = atoi(optarg); break;
        case 'B': batch = atoi(optarg); break;
        case 'W': window = atoi(optarg); break;
        case 'Q': quantum = atoi(optarg); break;
        case 'F': flow = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'k': keepalive = atoi(optarg); break;
        case 't': topic_base = optarg; break;
        case 'b': broker_pid = atoi(optarg); break;
        case 'C': coalesce_ns = (long)(atof(optarg) * 1000); break;
        case 'A': max_pending = atoi(optarg) > 0 ? atoi(optarg) : 1; break;
        case 'R': retain_flag = true; break;
        case 'T': spread = atoi(optarg); break;
        default: usage();
        }
    }
    if (payload < PAYLOAD_MIN || payload > 1000000) fail("payload must be at least %d bytes", PAYLOAD_MIN);
    if (batch < 1) batch = 1;
    if (window < 1) window = 1;
    /* strict window by default: refill as soon as PUBACKs arrive (with read coalescing
       those arrive in bulk anyway); larger quanta measured slower on Mosquitto */
    if (quantum < 1) quantum = 1;
    if (quantum > window) quantum = window;
    if (rate <= 0) fail("rate must be positive");
    if (spread < 0 || spread > 100000000) fail("-T wants 1 .. 100000000 topics per publisher");
    if (spread && scn != FANIN && scn != QOS1) fail("-T applies to fanin and qos1 only");
    for (int v = spread > 1 ? spread - 1 : 1; v > 0; v /= 10) spread_digits++;
    if (!spread) spread_digits = 0;
    if (keepalive < 0) keepalive = scn == CONNS ? 0 : 60;
    if (coalesce_ns < 0) coalesce_ns = 50000;
    if (coalesce_ns > 999999) coalesce_ns = 999999;
    if (scn == LATENCY || scn == CONNS) coalesce_ns = 0;
    switch (scn) {
    case FANIN: if (npub < 0) npub = 8; if (nsub < 1) nsub = 1; break;
    case FANOUT: npub = 1; if (nsub < 0) nsub = 16; break;
    case QOS1: if (npub < 0) npub = 8; if (nsub < 0) nsub = 0; break;
    case LATENCY: npub = 1; if (nsub < 1) nsub = 1; break;
    case CONNS: npub = nsub = 0; break;
    }
    if (npub < 0 || nsub < 0 || (scn != CONNS && npub < 1)) fail("bad -n/-s");
    ncl = scn == CONNS ? nconns : npub + nsub;
    raise_nofile((size_t)ncl + 32);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    alarm((unsigned)(warmup + duration + 45 + ncl / 300)); /* never hang a benchmark run */

    filler = malloc((size_t)payload);
    for (int i = 0; i < payload; i++) filler[i] = (uint8_t)('a' + i % 26);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    cl = calloc((size_t)ncl, sizeof *cl);
    pubs = calloc((size_t)npub + 1, sizeof *pubs);
    subs = calloc((size_t)nsub + 1, sizeof *subs);
    if (!cl || !pubs || !subs) fail("out of memory");
    for (int i = 0; i < ncl; i++) {
        client_t *c = &cl[i];
        c->id = i;
        c->fd = -1;
        if (scn == CONNS) c->role = IDLE;
        else if (i < nsub) { c->role = SUB; subs[i] = c; }
        else { c->role = PUB; c->pub_no = i - nsub; pubs[c->pub_no] = c; }
        size_t in_cap = c->role == IDLE ? 256 : 1 << 17;
        size_t out_cap = c->role == IDLE ? 256 : c->role == SUB ? 16384 : (size_t)batch * ((size_t)payload + 64) + 4096;
        bytes_init(&c->in, in_cap);
        bytes_init(&c->out, out_cap);
        if (c->role == SUB) c->next_seq = calloc((size_t)npub, sizeof(uint64_t));
        if (c->role == PUB) make_prefix(c);
    }
    if (scn == LATENCY) {
        lat_cap = (size_t)(rate * (duration + 1) * nsub) + 1024;
        lat_ns = malloc(lat_cap * sizeof *lat_ns);
        if (!lat_ns) fail("out of memory");
    }

    /* setup: subscribers first, then publishers (or idle connections, a bounded number at a time) */
    uint64_t t_setup = now_ns(), t_ready = 0, t_phase = 0, t_meas0 = 0, t_meas1 = 0;
    double setup_cpu0 = self_cpu_seconds(), setup_cpu = 0;
    double bcpu0 = 0, bcpu1 = 0, scpu0 = 0, scpu1 = 0, mbusy0 = 0, mbusy1 = 0, msteal0 = 0, msteal1 = 0;
    uint64_t sent0 = 0, recv0 = 0, acked0 = 0, sent1 = 0, recv1 = 0, acked1 = 0;
    int next_open = 0;
    bool busy = false;
    struct epoll_event evs[512];
    while (phase != P_END) {
        uint64_t now = now_ns();
        double in_phase = (now - t_phase) / 1e9;
        switch (phase) {
        case P_SETUP:
            while (next_open < ncl) {
                client_t *c = &cl[next_open];
                if (c->role == PUB && n_up < nsub) break; /* publishers wait for all SUBACKs */
                if (c->role == IDLE && n_started - n_up - n_failed >= max_pending) break;
                open_client(c);
                next_open++;
            }
            if (n_failed && scn != CONNS) fail("%d connection(s) failed during setup", n_failed);
            if (n_up + n_failed == ncl) {
                t_ready = t_phase = now;
                setup_cpu = self_cpu_seconds() - setup_cpu0;
                phase = P_WARMUP;
                if (scn == CONNS) {
                    fprintf(stderr, "loadgen: ready %d\n", n_up);
                    fflush(stderr);
                    phase = P_MEASURE; /* hold */
                    t_meas0 = now;
                } else if (scn == LATENCY) {
                    timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
                    long iv = (long)(1e9 / rate);
                    if (iv < 50000) iv = 50000; /* >= 50 us per tick; several messages per tick above 20k msg/s */
                    struct itimerspec its = {{iv / 1000000000, iv % 1000000000}, {iv / 1000000000, iv % 1000000000}};
                    timerfd_settime(timer_fd, 0, &its, NULL);
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, timer_fd, &ev);
                    lat_t0 = now;
                }
            } else if ((now - t_setup) / 1e9 > 20 + ncl / 400.0) {
                if (scn != CONNS) fail("setup timed out: %d of %d connections up, %d failed", n_up, ncl, n_failed);
                /* conns: report what the broker accepted; the rest count as failed */
                for (int i = 0; i < ncl; i++)
                    if (cl[i].st != C_UP && cl[i].st != C_DEAD && cl[i].fd >= 0) kill_client(&cl[i], "setup timeout");
                n_failed += ncl - next_open;
                next_open = ncl;
                fprintf(stderr, "loadgen: setup timed out\n");
                continue;
            }
            break;
        case P_WARMUP:
            if (in_phase >= warmup || stop_now) {
                phase = P_MEASURE;
                t_phase = t_meas0 = now;
                if (broker_pid) bcpu0 = proc_cpu_seconds(broker_pid);
                scpu0 = self_cpu_seconds();
                machine_cpu_seconds(&mbusy0, &msteal0);
                sent0 = tot_sent; recv0 = tot_recv; acked0 = tot_acked;
            }
            break;
        case P_MEASURE:
            if (in_phase >= duration || stop_now) {
                t_meas1 = now;
                if (broker_pid) bcpu1 = proc_cpu_seconds(broker_pid);
                scpu1 = self_cpu_seconds();
                machine_cpu_seconds(&mbusy1, &msteal1);
                sent1 = tot_sent; recv1 = tot_recv; acked1 = tot_acked;
                phase = scn == CONNS ? P_END : P_DRAIN;
                t_phase = now;
                if (timer_fd >= 0) { close(timer_fd); timer_fd = -1; }
            }
            break;
        case P_DRAIN: {
            uint64_t gaps = 0;
            for (int s = 0; s < nsub; s++) gaps += subs[s]->gaps;
            bool all_in = tot_recv + gaps >= tot_sent * nsub && (scn != QOS1 || tot_acked >= tot_sent);
            if (all_in || in_phase > 3.0 || stop_now) phase = P_END;
            break;
        }
        case P_END: break;
        }
        if (phase == P_END) break;

        int timeout = busy ? 0 : 1;
        bool trickle = iter_recvs > 0 && iter_bytes / iter_recvs < 2048;
        iter_recvs = iter_bytes = 0;
        if (coalesce_ns && !busy && trickle && (phase == P_WARMUP || phase == P_MEASURE)) {
            /* read coalescing: every publisher is waiting (for PUBACKs or for subscribers to
               catch up) and the broker trickles small reads (< 2 KiB per recv), so let its
               packets gather in our socket buffers for a moment instead of waking up for
               each one; the windows hold milliseconds of work, so the broker never runs
               dry during the nap */
            struct timespec nap = {0, (long)coalesce_ns};
            nanosleep(&nap, NULL);
            n_naps++;
            timeout = 0;
        }
        int n = epoll_wait(epfd, evs, 512, timeout);
        n_waits++;
        if (n < 0 && errno != EINTR) fail("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr) { on_event(evs[i].data.ptr, evs[i].events); continue; }
            /* latency pacing tick: send what is due, at most BATCH packets per write */
            uint64_t expirations;
            if (read(timer_fd, &expirations, sizeof expirations) < 0) {}
            uint64_t t = now_ns();
            uint64_t due = (uint64_t)((t - lat_t0) / 1e9 * rate);
            client_t *c = pubs[0];
            if (due <= lat_scheduled || c->st != C_UP) continue;
            uint64_t k = due - lat_scheduled;
            lat_scheduled = due;
            if (c->blocked) { lat_skipped += k; continue; }
            uint64_t a = credit(c, t);
            if (k > a) { lat_skipped += k - a; k = a; }
            while (k > 0 && !c->blocked && c->st == C_UP) {
                uint64_t m = k < (uint64_t)batch ? k : (uint64_t)batch;
                encode_publishes(c, m, t);
                push(c);
                k -= m;
            }
            lat_skipped += k;
        }
        busy = false;
        if (scn != LATENCY && scn != CONNS && (phase == P_WARMUP || phase == P_MEASURE)) {
            uint64_t t = now_ns();
            for (int p = 0; p < npub; p++) busy |= publisher_turn(pubs[p], t);
        }
        if (scn != CONNS && phase >= P_WARMUP && n_up < ncl) fail("a connection was lost during the run");
    }

    teardown();

    double dur = t_meas1 > t_meas0 ? (t_meas1 - t_meas0) / 1e9 : 1e-9;
    double gen_cpu = scpu1 - scpu0;
    printf("{\"tool\":\"edgebus-loadgen\",\"ok\":true,\"scenario\":\"%s\",\"host\":\"%s\",\"port\":%d,"
           "\"pubs\":%d,\"subs\":%d,\"payload\":%d,\"batch\":%d,\"warmup_s\":%.3f,\"duration_s\":%.3f,"
           "\"setup_s\":%.3f",
           SCENARIO_NAMES[scn], host, port, npub, nsub, payload, batch, warmup, dur, (t_ready - t_setup) / 1e9);
    if (scn == CONNS) {
        double setup_s = (t_ready - t_setup) / 1e9;
        printf(",\"conns\":%d,\"connected\":%d,\"failed\":%d,\"keepalive\":%d,\"in_flight\":%d,\"conns_per_s\":%.0f,"
               "\"gen_setup_cpu_pct\":%.1f", ncl, n_up, n_failed, keepalive, max_pending,
               setup_s > 0 ? n_up / setup_s : 0, setup_s > 0 ? setup_cpu / setup_s * 100 : 0);
    } else {
        uint64_t ms = sent1 - sent0, mr = recv1 - recv0, ma = acked1 - acked0;
        uint64_t gaps = 0, reord = 0;
        for (int s = 0; s < nsub; s++) { gaps += subs[s]->gaps; reord += subs[s]->reordered; }
        printf(",\"retain\":%s,\"topics_per_pub\":%d", retain_flag ? "true" : "false", spread ? spread : 1);
        printf(",\"qos\":%d,\"flow_window\":%d,\"qos1_window\":%d,\"qos1_quantum\":%d,\"sent\":%llu,\"received\":%llu,\"acked\":%llu,"
               "\"sent_per_s\":%.0f,\"recv_per_s\":%.0f,\"acks_per_s\":%.0f,"
               "\"total_sent\":%llu,\"total_acked\":%llu,\"total_received\":%llu,\"missing\":%lld,\"gaps\":%llu,\"reordered\":%llu,\"written_off\":%llu",
               scn == QOS1, flow, window, quantum, (unsigned long long)ms, (unsigned long long)mr, (unsigned long long)ma,
               ms / dur, mr / dur, ma / dur, (unsigned long long)tot_sent, (unsigned long long)tot_acked, (unsigned long long)tot_recv,
               (long long)(tot_sent * (uint64_t)nsub) - (long long)tot_recv, (unsigned long long)gaps,
               (unsigned long long)reord, (unsigned long long)tot_written_off);
        printf(",\"gen_cpu_s\":%.3f,\"gen_cpu_pct\":%.1f,\"gen_syscalls\":{\"epoll_wait\":%llu,\"recv\":%llu,\"send\":%llu,\"nap\":%llu}",
               gen_cpu, gen_cpu / dur * 100, (unsigned long long)n_waits, (unsigned long long)n_recvs,
               (unsigned long long)n_sends, (unsigned long long)n_naps);
        printf(",\"machine_busy_pct\":%.1f,\"steal_pct\":%.1f", (mbusy1 - mbusy0) / dur * 100, (msteal1 - msteal0) / dur * 100);
        if (broker_pid && bcpu0 >= 0 && bcpu1 >= 0) {
            double bc = bcpu1 - bcpu0;
            /* CPU used by anything but the broker and us: other work sharing the machine */
            double other = (mbusy1 - mbusy0) - bc - gen_cpu;
            printf(",\"other_cpu_pct\":%.1f", (other > 0 ? other : 0) / dur * 100);
            uint64_t work = scn == QOS1 ? ma : mr;
            printf(",\"broker_pid\":%d,\"broker_cpu_s\":%.3f,\"broker_cpu_pct\":%.1f,\"broker_cpu_s_per_M\":%.4f", broker_pid,
                   bc, bc / dur * 100, work ? bc / (work / 1e6) : -1.0);
        }
        if (scn == LATENCY) {
            qsort(lat_ns, lat_n, sizeof *lat_ns, by_value);
            double sum = 0;
            for (size_t i = 0; i < lat_n; i++) sum += (double)lat_ns[i];
            printf(",\"rate\":%.0f,\"skipped\":%llu,\"lat_samples\":%zu,\"lat_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
                   "\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f}",
                   rate, (unsigned long long)lat_skipped, lat_n, quantile_us(0.5), quantile_us(0.9), quantile_us(0.99),
                   quantile_us(0.999), lat_n ? lat_ns[lat_n - 1] / 1000.0 : -1, lat_n ? sum / lat_n / 1000.0 : -1);
        }
    }
    printf("}\n");
    fflush(stdout);
    return 0;
}
