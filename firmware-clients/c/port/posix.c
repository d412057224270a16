/* POSIX sockets port for edgebus_mqtt; see posix.h. */
#define _POSIX_C_SOURCE 200809L
#include "posix.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: set SO_NOSIGPIPE instead if it matters */
#endif

int eb_posix_open(eb_posix *s, const char *host, const char *port)
{
    struct addrinfo hints, *res, *ai;
    int one = 1;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    s->fd = -1;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai; ai = ai->ai_next) {
        s->fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (s->fd < 0)
            continue;
        if (connect(s->fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(s->fd);
        s->fd = -1;
    }
    freeaddrinfo(res);
    if (s->fd < 0)
        return -1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

void eb_posix_close(eb_posix *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* Waits up to EB_POSIX_WAIT_MS for the socket: 1 ready, 0 not yet, -1 error. */
static int wait_ready(int fd, short events)
{
    struct pollfd p;
    int r;
    p.fd = fd;
    p.events = events;
    p.revents = 0;
    r = poll(&p, 1, EB_POSIX_WAIT_MS);
    if (r < 0)
        return errno == EINTR ? 0 : -1;
    return r > 0;
}

int eb_posix_read(void *ctx, uint8_t *buf, size_t len)
{
    eb_posix *s = ctx;
    ssize_t n;
    int w = wait_ready(s->fd, POLLIN);
    if (w <= 0)
        return w;
    n = recv(s->fd, buf, len, 0);
    if (n > 0)
        return (int)n;
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    return -1; /* 0 = the peer closed the connection */
}

int eb_posix_write(void *ctx, const uint8_t *buf, size_t len)
{
    eb_posix *s = ctx;
    ssize_t n;
    int w = wait_ready(s->fd, POLLOUT);
    if (w <= 0)
        return w;
    n = send(s->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0)
        return (int)n;
    return (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
}

uint32_t eb_posix_millis(void *ctx)
{
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

void eb_posix_io(eb_io *io, eb_posix *s)
{
    io->read = eb_posix_read;
    io->write = eb_posix_write;
    io->millis = eb_posix_millis;
    io->ctx = s;
}
