/*
 * An in-memory transport and clock for tests: scripted input handed out in
 * chunks of at most `rchunk` bytes (partial reads), output captured with at
 * most `wchunk` bytes per write and optional zero-byte writes (partial
 * writes), and a clock that advances `tick` ms on every read.
 */
#ifndef EB_MOCK_IO_H
#define EB_MOCK_IO_H

#include <string.h>

#include "edgebus_mqtt.h"

typedef struct mock_io {
    uint8_t in[70000];
    size_t in_len, in_pos, rchunk; /* rchunk 0 = no limit */
    int closed;                    /* 1: read returns -1 once input runs out */
    uint8_t out[70000];
    size_t out_len, wchunk;        /* wchunk 0 = no limit */
    int stall_every;               /* every Nth write returns 0 */
    int stall_all;                 /* every write returns 0 */
    int writes;
    uint32_t t, tick;
    eb_io io;
} mock_io;

static int mock_read(void *ctx, uint8_t *buf, size_t len)
{
    mock_io *m = ctx;
    size_t n = m->in_len - m->in_pos;
    m->t += m->tick;
    if (!n)
        return m->closed ? -1 : 0;
    if (n > len)
        n = len;
    if (m->rchunk && n > m->rchunk)
        n = m->rchunk;
    memcpy(buf, m->in + m->in_pos, n);
    m->in_pos += n;
    return (int)n;
}

static int mock_write(void *ctx, const uint8_t *buf, size_t len)
{
    mock_io *m = ctx;
    m->writes++;
    m->t += m->tick;
    if (m->stall_all || (m->stall_every && m->writes % m->stall_every == 0))
        return 0;
    if (m->wchunk && len > m->wchunk)
        len = m->wchunk;
    if (len > sizeof m->out - m->out_len)
        return -1;
    memcpy(m->out + m->out_len, buf, len);
    m->out_len += len;
    return (int)len;
}

static uint32_t mock_millis(void *ctx) { return ((mock_io *)ctx)->t; }

static void mock_init(mock_io *m)
{
    memset(m, 0, sizeof *m);
    m->tick = 1;
    m->io.read = mock_read;
    m->io.write = mock_write;
    m->io.millis = mock_millis;
    m->io.ctx = m;
}

static void mock_feed(mock_io *m, const void *b, size_t n)
{
    memcpy(m->in + m->in_len, b, n);
    m->in_len += n;
}

#endif
