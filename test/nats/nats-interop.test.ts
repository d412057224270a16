import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { connect, headers, type NatsConnection, type Msg } from '@nats-io/transport-node'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'

/**
 * The NATS project's own client (nats.js) against edgebus, beside MQTT.js: one subject space,
 * headers as MQTT 5 user properties, queue groups as $share groups, request/reply, streams.
 */
let srv: StartedEdgebus
const open: NatsConnection[] = []

beforeAll(async () => {
  srv = await startEdgebus({ config: { streams: [{ name: 'orders', subjects: ['orders.>'], duplicateWindow: '1m' }, { name: 'tiny', subjects: ['tiny.>'], maxMsgSize: 4 }] } })
})
afterAll(async () => {
  await Promise.all(open.splice(0).map((c) => c.close().catch(() => {})))
  await endAllClients()
  await srv.stop()
})

async function nats(): Promise<NatsConnection> {
  const nc = await connect({ servers: `127.0.0.1:${srv.natsPort}`, reconnect: false })
  open.push(nc)
  return nc
}

function collect(nc: NatsConnection, subject: string, opts: { queue?: string } = {}): Msg[] {
  const got: Msg[] = []
  nc.subscribe(subject, { ...opts, callback: (_e, m) => { got.push(m) } })
  return got
}

describe('NATS clients on edgebus', () => {
  it('INFO says what the server is: semver version, headers, max_payload, proto 1', async () => {
    const nc = await nats()
    const info = nc.info!
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/)
    expect(info.headers).toBe(true)
    expect(info.proto).toBe(1)
    expect(info.max_payload).toBe(1024 * 1024)
    expect(info.server_name).toBe('edgebus')
    expect(await nc.rtt()).toBeGreaterThanOrEqual(0)
  })

  it('a NATS subscriber gets MQTT publishes and an MQTT subscriber gets NATS publishes', async () => {
    const nc = await nats()
    const got = collect(nc, 'farm.*.temp')
    await nc.flush()
    const mq = await connectClient(srv.mqttUrl)
    await mq.client.subscribeAsync('farm/+/hum')
    await mq.client.publishAsync('farm/barn/temp', '21.5')
    await vi.waitFor(() => expect(got.map((m) => [m.subject, m.string()])).toEqual([['farm.barn.temp', '21.5']]), { timeout: 5000 })
    nc.publish('farm.barn.hum', '40%')
    const [m] = await mq.waitFor(1)
    expect([m!.topic, m!.payload]).toEqual(['farm/barn/hum', '40%'])
  })

  it('NATS to NATS, with > and an UNSUB after a count', async () => {
    const nc = await nats()
    const all = collect(nc, 'a.>')
    const two: Msg[] = []
    nc.subscribe('a.b', { max: 2, callback: (_e, m) => { two.push(m) } })
    await nc.flush()
    const pub = await nats()
    for (let i = 0; i < 5; i++) pub.publish('a.b', String(i))
    await pub.flush()
    await vi.waitFor(() => expect(all).toHaveLength(5), { timeout: 5000 })
    expect(two.map((m) => m.string())).toEqual(['0', '1'])
  })

  it('headers travel as MQTT 5 user properties, both ways', async () => {
    const nc = await nats()
    const got = collect(nc, 'hdr.>')
    await nc.flush()
    const mq = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await mq.client.subscribeAsync('hdr/from-nats')
    const h = headers()
    h.set('Trace-Id', 'abc')
    h.append('Tag', 'x')
    h.append('Tag', 'y')
    nc.publish('hdr.from-nats', 'p', { headers: h })
    const [m] = await mq.waitFor(1)
    expect(m!.properties?.userProperties).toMatchObject({ 'Trace-Id': 'abc', Tag: ['x', 'y'] })
    await mq.client.publishAsync('hdr/from-mqtt', 'q', { properties: { userProperties: { device: 'd7' } } })
    await vi.waitFor(() => expect(got.some((x) => x.subject === 'hdr.from-mqtt')).toBe(true), { timeout: 5000 })
    const fromMqtt = got.find((x) => x.subject === 'hdr.from-mqtt')!
    expect(fromMqtt.headers?.get('device')).toBe('d7')
  })

  it('a NATS queue group and a $share group of the same name share the messages: each once', async () => {
    const a = await nats()
    const b = await nats()
    const qa = collect(a, 'jobs.*', { queue: 'workers' })
    const qb = collect(b, 'jobs.*', { queue: 'workers' })
    await Promise.all([a.flush(), b.flush()])
    const mq = await connectClient(srv.mqttUrl)
    await mq.client.subscribeAsync('$share/workers/jobs/+')
    const pub = await nats()
    for (let i = 0; i < 30; i++) pub.publish(`jobs.${i}`, String(i))
    await pub.flush()
    await vi.waitFor(() => expect(qa.length + qb.length + mq.messages.length).toBe(30), { timeout: 5000 })
    const seen = [...qa.map((m) => m.string()), ...qb.map((m) => m.string()), ...mq.messages.map((m) => m.payload)]
    expect(new Set(seen).size).toBe(30)
    expect(qa.length).toBeGreaterThan(0)
    expect(mq.messages.length).toBeGreaterThan(0)
  })

  it('request/reply: a NATS request answered by an MQTT 5 responder through its Response Topic', async () => {
    const mq = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    mq.client.on('message', (_t, payload, packet) => {
      const rt = packet.properties?.responseTopic
      if (rt) mq.client.publish(rt, `pong:${payload.toString()}`)
    })
    await mq.client.subscribeAsync('svc/echo')
    const nc = await nats()
    const r = await nc.request('svc.echo', 'hi', { timeout: 3000 })
    expect(r.string()).toBe('pong:hi')
  })

  it('request/reply: an MQTT 5 requester answered by a NATS responder', async () => {
    const nc = await nats()
    nc.subscribe('svc.upper', { callback: (_e, m) => { m.respond(m.string().toUpperCase()) } })
    await nc.flush()
    const mq = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await mq.client.subscribeAsync('_INBOX/mqtt/1')
    await mq.client.publishAsync('svc/upper', 'abc', { properties: { responseTopic: '_INBOX/mqtt/1' } })
    const [m] = await mq.waitFor(1)
    expect([m!.topic, m!.payload]).toEqual(['_INBOX/mqtt/1', 'ABC'])
  })

  it('a request nobody is subscribed to fails at once with no responders (503)', async () => {
    const nc = await nats()
    const started = Date.now()
    const err = await nc.request('nobody.home', '', { timeout: 5000 }).catch((e: unknown) => e as Error)
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).name + (err as Error).message).toMatch(/no responders|NoResponders|503/i)
    expect(Date.now() - started).toBeLessThan(2000)
  })

  it('a NATS publish into a stream is stored and answered with a JetStream-style publish ack; a repeated Nats-Msg-Id is a duplicate', async () => {
    const nc = await nats()
    const h = headers()
    h.set('Nats-Msg-Id', 'order-1')
    const first = (await nc.request('orders.new', '{"n":1}', { headers: h, timeout: 3000 })).json<{ stream: string; seq: number; duplicate?: boolean }>()
    expect(first).toMatchObject({ stream: 'orders' })
    expect(first.seq).toBeGreaterThan(0)
    expect(first.duplicate).toBeUndefined()
    const again = (await nc.request('orders.new', '{"n":1}', { headers: h, timeout: 3000 })).json<{ seq: number; duplicate?: boolean }>()
    expect(again).toMatchObject({ seq: first.seq, duplicate: true })
    const info = await (await fetch(`${srv.httpUrl}/api/streams/orders`)).json() as { state?: { messages: number }; messages?: number }
    expect(JSON.stringify(info)).toMatch(/"messages":1\b/)
    const refused = (await nc.request('tiny.x', 'too long', { timeout: 3000 })).json<{ error: { code: number; err_code: string }; stream: string }>()
    expect(refused).toMatchObject({ stream: 'tiny', error: { code: 503, err_code: 'ESTREAM_LIMIT' } })
  })

  it('echo: false keeps a connection\'s own messages from it (like No Local)', async () => {
    const nc = await connect({ servers: `127.0.0.1:${srv.natsPort}`, reconnect: false, noEcho: true })
    open.push(nc)
    const own = collect(nc, 'echo.t')
    await nc.flush()
    const other = await nats()
    nc.publish('echo.t', 'mine')
    other.publish('echo.t', 'theirs')
    await Promise.all([nc.flush(), other.flush()])
    await vi.waitFor(() => expect(own.map((m) => m.string())).toEqual(['theirs']), { timeout: 5000 })
  })

  it('a publish over max_payload is refused by the client before it is sent', async () => {
    const nc = await nats()
    expect(() => nc.publish('big', new Uint8Array(nc.info!.max_payload + 1))).toThrow(/max_payload|payload/i)
  })
})
