import mqtt from 'mqtt'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { afterEach, describe, expect, it } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients, sleep } from '../support/mqtt.ts'
import { CONNACK_OK, connectPacket, publishPacket, rawConnect, subscribePacket } from '../support/raw.ts'

let servers: StartedEdgebus[] = []
afterEach(async () => {
  await endAllClients()
  await Promise.all(servers.map((s) => s.stop()))
  servers = []
})

async function start(args: string[], config?: Record<string, unknown>): Promise<StartedEdgebus> {
  const srv = await startEdgebus({ args, ...(config ? { config } : {}) })
  servers.push(srv)
  return srv
}

interface Sample { labels?: Record<string, string>; value: string }
interface Family { name: string; type: string; metrics: Sample[] }

async function metrics(srv: StartedEdgebus): Promise<Map<string, Family>> {
  const res = await fetch(`${srv.httpUrl}/metrics`)
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
  const families = parsePrometheusTextFormat(await res.text()) as Family[]
  return new Map(families.map((f) => [f.name, f]))
}

function value(m: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const f = m.get(name)
  const s = f?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v))
  return s === undefined ? NaN : Number(s.value)
}

/** Sends raw bytes to the HTTP port and returns what comes back until the server closes. */
async function rawHttp(port: number, request: string): Promise<string> {
  const raw = await rawConnect(port)
  raw.socket.write(request)
  await raw.closed
  return Buffer.concat(raw.received).toString()
}

/** The CONNACK code of one connection attempt (0 = connected, and left open). */
function connack(url: string, protocolVersion: 4 | 5): Promise<number> {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, { reconnectPeriod: 0, protocolVersion, connectTimeout: 5000 })
    c.once('connect', () => resolve(0))
    c.once('error', (err) => { c.end(true); resolve((err as { code?: number }).code ?? -1) })
  })
}

describe('limits, each hit once with its reason and counter', () => {
  it('limits.maxConnections: CONNACK 0x97 (MQTT 5) / 3 (3.1.1); /ws answers 503', async () => {
    const srv = await start(['--limits-max-connections', '2', '--limits-connect-rate', '0'])
    expect(await connack(srv.mqttUrl, 5)).toBe(0)
    expect(await connack(srv.mqttUrl, 4)).toBe(0)
    expect(await connack(srv.mqttUrl, 5)).toBe(0x97)
    expect(await connack(srv.mqttUrl, 4)).toBe(3)
    const ws = await rawHttp(srv.httpPort, 'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
    expect(ws).toMatch(/^HTTP\/1\.1 503 /)
    expect(ws).toContain('ELIMIT_CONNECTIONS')
    expect(value(await metrics(srv), 'edgebus_connections_refused_total', { reason: 'connections' })).toBe(3)
    expect(srv.output.some((l) => l.includes('ELIMIT_CONNECTIONS') && l.includes('limits.maxConnections'))).toBe(true)
  })

  it('limits.connectRate: CONNACK 0x9F (connection rate exceeded)', async () => {
    const srv = await start(['--limits-connect-rate', '3'])
    const codes = []
    for (let i = 0; i < 6; i++) codes.push(await connack(srv.mqttUrl, 5))
    expect(codes.slice(0, 3)).toEqual([0, 0, 0])
    expect(codes.filter((c) => c === 0x9f).length).toBeGreaterThanOrEqual(2)
    expect(value(await metrics(srv), 'edgebus_connections_refused_total', { reason: 'connect_rate' })).toBeGreaterThanOrEqual(2)
  })

  it('limits.maxTopicLength / maxTopicLevels / maxSubscriptions refuse topics and subscriptions, counted', async () => {
    const srv = await start(['--limits-max-topic-length', '32', '--limits-max-topic-levels', '4', '--limits-max-subscriptions', '2'])
    const c = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await expect(c.client.publishAsync(`t/${'x'.repeat(40)}`, 'long', { qos: 1 })).rejects.toMatchObject({ code: 0x87 })
    const codes = await new Promise<number[]>((resolve) => {
      c.client.subscribe({ 'a/b/c/d/e': { qos: 0 }, 'ok/1': { qos: 0 }, 'ok/2': { qos: 0 }, 'ok/3': { qos: 0 } }, (_e, _g, p) => resolve((p as unknown as { granted: number[] }).granted))
    })
    expect(codes).toEqual([0x87, 0, 0, 0x87])
    const m = await metrics(srv)
    expect(value(m, 'edgebus_limit_refusals_total', { limit: 'topic' })).toBe(2)
    expect(value(m, 'edgebus_limit_refusals_total', { limit: 'subscriptions' })).toBe(1)
    expect(c.client.connected).toBe(true)
  })

  it('limits.publishRate slows a publisher (reads paused), loses nothing, counts it', async () => {
    const srv = await start(['--limits-publish-rate', '100'])
    const sub = await connectClient(srv.mqttUrl)
    await sub.client.subscribeAsync('rate/#')
    const pub = await connectClient(srv.mqttUrl)
    const t0 = Date.now()
    for (let i = 0; i < 300; i++) pub.client.publish('rate/x', String(i))
    await sub.waitFor(300, 15_000)
    // 100 in the burst, then 100 per second: at least ~2 s for the other 200
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1500)
    expect(sub.messages.map((m) => Number(m.payload))).toEqual([...Array(300).keys()])
    expect(pub.client.connected).toBe(true)
    expect(value(await metrics(srv), 'edgebus_publish_throttled_total')).toBeGreaterThan(0)
  })

  it('a subscriber that stops reading does not hold back 100 fast ones; its drops are counted', async () => {
    const srv = await start(['--limits-max-queued-bytes', '1MB', '--limits-max-queued-bytes-hard', '256MB'])
    const subscriber = async (id: string) => {
      const raw = await rawConnect(srv.mqttPort)
      raw.socket.write(connectPacket(id))
      await raw.waitForBytes(CONNACK_OK)
      raw.socket.write(subscribePacket('load/#', 0))
      await raw.waitForBytes(Buffer.from([0x90, 0x03, 0x00, 0x01, 0x00]))
      return raw
    }
    // the frozen one subscribes, then never reads again: the kernel buffers fill, then its queue
    const frozen = await subscriber('frozen')
    frozen.socket.pause()
    // 100 fast ones: raw sockets that read everything and count the bytes
    const fast = await Promise.all([...Array(100).keys()].map(async (i) => {
      const raw = await subscriber(`fast-${i}`)
      let bytes = 0
      raw.socket.removeAllListeners('data')
      raw.socket.on('data', (d: Buffer) => { bytes += d.length })
      return { raw, bytes: () => bytes }
    }))
    const pub = await rawConnect(srv.mqttPort)
    pub.socket.write(connectPacket('pub'))
    await pub.waitForBytes(CONNACK_OK)
    const frame = publishPacket('load/x', Buffer.alloc(4096, 7)) // 4107 bytes
    const total = 3000 // 12 MB each: far more than the frozen client's socket buffers
    for (let sent = 0; sent < total; sent += 100) {
      pub.socket.write(Buffer.concat(Array.from({ length: 100 }, () => frame)))
      // a healthy subscriber keeps up; they share this process with the publisher, so pace it
      const want = (sent + 100) * frame.length
      const deadline = Date.now() + 10_000
      while (fast.some((f) => f.bytes() < want) && Date.now() < deadline) await sleep(5)
    }
    expect(fast.map((f) => f.bytes()).filter((b) => b !== total * frame.length)).toEqual([]) // every fast one got everything
    const m = await metrics(srv)
    expect(value(m, 'edgebus_messages_dropped_total')).toBeGreaterThan(0) // the frozen one's, counted
    expect(value(m, 'edgebus_connections')).toBe(102) // and nobody was disconnected
    frozen.socket.destroy()
    for (const f of fast) f.raw.socket.destroy()
    pub.socket.destroy()
  }, 60_000)
})

describe('observability', () => {
  it('/metrics parses as Prometheus text with stream and consumer gauges; /healthz and /readyz answer', async () => {
    const srv = await start([], { streams: [{ name: 'obs', subjects: ['obs/#'], consumers: [{ name: 'w' }] }] })
    const c = await connectClient(srv.mqttUrl)
    for (let i = 0; i < 5; i++) await c.client.publishAsync('obs/a', String(i), { qos: 1 })
    const m = await metrics(srv)
    expect(m.get('edgebus_messages_received_total')?.type).toBe('COUNTER')
    expect(value(m, 'edgebus_messages_received_total')).toBeGreaterThanOrEqual(5)
    expect(value(m, 'edgebus_connections')).toBe(1)
    expect(value(m, 'edgebus_bytes_received_total')).toBeGreaterThan(0)
    expect(value(m, 'edgebus_stream_messages', { stream: 'obs' })).toBe(5)
    expect(value(m, 'edgebus_consumer_lag', { stream: 'obs', consumer: 'w' })).toBe(5)
    expect(value(m, 'edgebus_consumer_ack_floor', { stream: 'obs', consumer: 'w' })).toBe(0)
    expect(m.get('edgebus_info')?.metrics[0]?.labels?.version).toMatch(/^\d+\.\d+\.\d+/)
    // process memory, as a gateway's operator watches it: resident >= heap reserved >= heap in use
    const rss = value(m, 'process_resident_memory_bytes')
    const heapTotal = value(m, 'nodejs_heap_total_bytes')
    const heapUsed = value(m, 'nodejs_heap_used_bytes')
    expect(heapUsed).toBeGreaterThan(1e6)
    expect(heapTotal).toBeGreaterThanOrEqual(heapUsed)
    expect(rss).toBeGreaterThan(heapTotal)
    expect(value(m, 'nodejs_external_memory_bytes')).toBeGreaterThan(0)
    expect((await fetch(`${srv.httpUrl}/healthz`)).status).toBe(200)
    expect(await (await fetch(`${srv.httpUrl}/readyz`)).json()).toEqual({ status: 'ready' })
  })

  it('$SYS/broker/... topics come right after subscribing; clients may not publish to $SYS', async () => {
    const srv = await start(['--sys-interval', '1h'])
    const c = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await c.client.subscribeAsync('$SYS/#')
    const got = await c.waitFor(10, 3000)
    const byTopic = new Map(got.map((m) => [m.topic, m.payload]))
    expect(byTopic.get('$SYS/broker/version')).toMatch(/^edgebus \d/)
    expect(byTopic.get('$SYS/broker/clients/connected')).toBe('1')
    expect(byTopic.get('$SYS/broker/uptime')).toMatch(/^\d+ seconds$/)
    for (const t of ['messages/received', 'messages/sent', 'bytes/received', 'bytes/sent', 'publish/messages/dropped', 'subscriptions/count']) {
      expect(byTopic.get(`$SYS/broker/${t}`), t).toMatch(/^\d+$/)
    }
    await expect(c.client.publishAsync('$SYS/broker/version', 'forged', { qos: 1 })).rejects.toMatchObject({ code: 0x87 })
  })
})
