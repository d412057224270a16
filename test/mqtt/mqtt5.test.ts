import type { IClientOptions } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients, sleep } from '../support/mqtt.ts'
import { connectPacket, rawConnect, subscribePacket, varint } from '../support/raw.ts'

// Each case here is a row of the MQTT 5 feature table in README.md.
let srv: StartedEdgebus
beforeAll(async () => { srv = await startEdgebus({ args: ['--limits-max-packet-size', '64KB', '--limits-receive-maximum', '32'] }) })
afterAll(async () => { await srv.stop() })
afterEach(async () => { await endAllClients() })

const v5 = (opts: IClientOptions = {}): IClientOptions => ({ protocolVersion: 5, ...opts })

describe('MQTT 5.0', () => {
  it('CONNACK advertises Maximum Packet Size, Receive Maximum and Topic Alias Maximum', async () => {
    const c = await connectClient(srv.mqttUrl, v5())
    const props = (c.client as unknown as { connackPacket?: { properties?: Record<string, unknown> } }).connackPacket?.properties
    expect(props).toMatchObject({ maximumPacketSize: 65_536, receiveMaximum: 32, topicAliasMaximum: 64 })
  })

  it('forwards user properties, content type, response topic and correlation data (QoS 0 and 1)', async () => {
    const sub = await connectClient(srv.mqttUrl, v5())
    await sub.client.subscribeAsync('props/#', { qos: 1 })
    const pub = await connectClient(srv.mqttUrl, v5())
    const properties = { userProperties: { device: 'd1', fw: '1.2' }, contentType: 'application/json', responseTopic: 'reply/d1', correlationData: Buffer.from('c0ffee') }
    await pub.client.publishAsync('props/q0', '{}', { qos: 0, properties })
    await pub.client.publishAsync('props/q1', '{}', { qos: 1, properties })
    const got = await sub.waitFor(2)
    for (const m of got) {
      expect(m.properties).toMatchObject({ userProperties: { device: 'd1', fw: '1.2' }, contentType: 'application/json', responseTopic: 'reply/d1' })
      expect(Buffer.from(m.properties?.correlationData as Buffer).toString()).toBe('c0ffee')
    }
  })

  it('an MQTT 3.1.1 subscriber gets MQTT 5 publishes without properties, and the reverse', async () => {
    const old = await connectClient(srv.mqttUrl, { protocolVersion: 4 })
    await old.client.subscribeAsync('mixver/#')
    const neu = await connectClient(srv.mqttUrl, v5())
    await neu.client.subscribeAsync('mixver/#')
    await neu.client.publishAsync('mixver/from5', 'a', { properties: { userProperties: { k: 'v' } } })
    await old.client.publishAsync('mixver/from4', 'b')
    expect((await old.waitFor(2)).map((m) => [m.topic, m.payload])).toEqual([['mixver/from5', 'a'], ['mixver/from4', 'b']])
    expect((await neu.waitFor(2)).map((m) => [m.topic, m.payload])).toEqual([['mixver/from5', 'a'], ['mixver/from4', 'b']])
  })

  it('echoes the Subscription Identifier', async () => {
    const sub = await connectClient(srv.mqttUrl, v5())
    await sub.client.subscribeAsync('sid/#', { qos: 0, properties: { subscriptionIdentifier: 42 } })
    const pub = await connectClient(srv.mqttUrl, v5())
    await pub.client.publishAsync('sid/a', 'x')
    await pub.client.publishAsync('sid/b', 'y', { qos: 1 })
    const got = await sub.waitFor(2)
    expect(got.map((m) => m.properties?.subscriptionIdentifier)).toEqual([42, 42])
  })

  it('overlapping subscriptions: the one copy carries every Subscription Identifier, on the fast path (QoS 0) and through aedes (QoS 1) [MQTT-3.3.4-4]', async () => {
    const sub = await connectClient(srv.mqttUrl, v5())
    await sub.client.subscribeAsync('sids/+', { qos: 0, properties: { subscriptionIdentifier: 7 } })
    await sub.client.subscribeAsync('sids/#', { qos: 1, properties: { subscriptionIdentifier: 9 } })
    await sub.client.subscribeAsync('sids/a', { qos: 0 }) // no identifier
    const pub = await connectClient(srv.mqttUrl, v5())
    await pub.client.publishAsync('sids/a', 'q0')
    await pub.client.publishAsync('sids/a', 'q1', { qos: 1 })
    await sub.waitFor(2)
    await sleep(100) // and no further copies
    const ids = (v: unknown): number[] => [...(Array.isArray(v) ? v : [v])].sort()
    expect(sub.messages.map((m) => [m.payload, m.qos, ids(m.properties?.subscriptionIdentifier)])).toEqual([['q0', 0, [7, 9]], ['q1', 1, [7, 9]]])
  })

  it('No Local: a client does not get its own messages back', async () => {
    const c = await connectClient(srv.mqttUrl, v5())
    await c.client.subscribeAsync('nl/x', { qos: 0, nl: true })
    const other = await connectClient(srv.mqttUrl, v5())
    await other.client.subscribeAsync('nl/x')
    await c.client.publishAsync('nl/x', 'mine')
    await c.client.publishAsync('nl/x', 'mine qos1', { qos: 1 })
    await other.waitFor(2)
    await sleep(200)
    expect(c.messages).toEqual([])
  })

  it('Retain As Published and Retain Handling', async () => {
    const pub = await connectClient(srv.mqttUrl, v5())
    await pub.client.publishAsync('rap/state', 'old', { retain: true, qos: 1 })
    const rap = await connectClient(srv.mqttUrl, v5())
    await rap.client.subscribeAsync('rap/#', { qos: 0, rap: true, rh: 2 }) // rh 2: no retained on subscribe
    const plain = await connectClient(srv.mqttUrl, v5())
    await plain.client.subscribeAsync('rap/#', { qos: 0, rh: 0 })
    expect((await plain.waitFor(1))[0]).toMatchObject({ payload: 'old', retain: true }) // retained on subscribe
    await pub.client.publishAsync('rap/state', 'new', { retain: true, qos: 1 })
    expect((await rap.waitFor(1))[0]).toMatchObject({ payload: 'new', retain: true })
    expect((await plain.waitFor(2))[1]).toMatchObject({ payload: 'new', retain: false })
    await pub.client.publishAsync('rap/state', '', { retain: true, qos: 1 })
  })

  it('inbound topic aliases are resolved', async () => {
    const sub = await connectClient(srv.mqttUrl, v5())
    await sub.client.subscribeAsync('alias/#')
    const pub = await connectClient(srv.mqttUrl, v5({ topicAliasMaximum: 0, autoUseTopicAlias: true } as IClientOptions))
    for (let i = 0; i < 3; i++) await pub.client.publishAsync('alias/long/topic/name', String(i), { qos: 1, properties: { topicAlias: 1 } })
    expect((await sub.waitFor(3)).map((m) => [m.topic, m.payload])).toEqual([['alias/long/topic/name', '0'], ['alias/long/topic/name', '1'], ['alias/long/topic/name', '2']])
  })

  it('message expiry: an expired retained message is not delivered', async () => {
    const pub = await connectClient(srv.mqttUrl, v5())
    await pub.client.publishAsync('exp/a', 'short-lived', { retain: true, qos: 1, properties: { messageExpiryInterval: 1 } })
    await sleep(1500)
    const sub = await connectClient(srv.mqttUrl, v5())
    await sub.client.subscribeAsync('exp/#')
    await sleep(300)
    expect(sub.messages).toEqual([])
  })

  it('session expiry with Clean Start: the session outlives the connection, then expires', async () => {
    const opts = v5({ clientId: 'sess-exp', clean: true, properties: { sessionExpiryInterval: 2 } })
    const first = await connectClient(srv.mqttUrl, opts)
    await first.client.subscribeAsync('sess/#', { qos: 1 })
    await first.end()
    const pub = await connectClient(srv.mqttUrl, v5())
    await pub.client.publishAsync('sess/x', 'queued', { qos: 1 })
    const back = await connectClient(srv.mqttUrl, v5({ clientId: 'sess-exp', clean: false, properties: { sessionExpiryInterval: 1 } }))
    expect((back.client as unknown as { connackPacket: { sessionPresent: boolean } }).connackPacket.sessionPresent).toBe(true)
    expect((await back.waitFor(1))[0]).toMatchObject({ topic: 'sess/x', payload: 'queued' })
    await back.end()
    await sleep(1500) // past its 1 s expiry
    const late = await connectClient(srv.mqttUrl, v5({ clientId: 'sess-exp', clean: false }))
    expect((late.client as unknown as { connackPacket: { sessionPresent: boolean } }).connackPacket.sessionPresent).toBe(false)
  })

  it('will delay: a will is published after its delay, not at once', async () => {
    const watcher = await connectClient(srv.mqttUrl, v5())
    await watcher.client.subscribeAsync('wd/#')
    const dying = await connectClient(srv.mqttUrl, v5({
      properties: { sessionExpiryInterval: 10 },
      will: { topic: 'wd/dev', payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: 1 } },
    }))
    const t0 = Date.now()
    ;(dying.client as unknown as { stream: { destroy(): void } }).stream.destroy()
    await watcher.waitFor(1, 5000)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900)
  })

  it('a packet over the server Maximum Packet Size gets DISCONNECT 0x95', async () => {
    const c = await connectClient(srv.mqttUrl, v5())
    const reason = new Promise<number | undefined>((resolve) => c.client.on('disconnect', (p) => resolve(p.reasonCode)))
    c.client.publish('big/x', Buffer.alloc(70_000))
    expect(await reason).toBe(0x95)
  })

  it('never sends a packet over the client Maximum Packet Size (QoS 0, 1 and 2), and stays consistent', async () => {
    const sub = await connectClient(srv.mqttUrl, v5({ properties: { maximumPacketSize: 200 } }))
    await sub.client.subscribeAsync('mps/#', { qos: 2 })
    const pub = await connectClient(srv.mqttUrl, v5())
    for (const qos of [0, 1, 2] as const) {
      await pub.client.publishAsync(`mps/${qos}`, Buffer.alloc(500, 1), { qos })
      await pub.client.publishAsync(`mps/${qos}`, `small ${qos}`, { qos })
    }
    const got = await sub.waitFor(3)
    await sleep(300)
    expect(sub.messages.map((m) => m.payload)).toEqual(['small 0', 'small 1', 'small 2'])
    expect(got.every((m) => m.payload.length < 200)).toBe(true)
  })

  it('respects the client Receive Maximum: no more QoS 1 deliveries in flight than it allows', async () => {
    // a raw MQTT 5 client with Receive Maximum 2 that does not acknowledge anything
    const raw = await rawConnect(srv.mqttPort)
    const id = Buffer.from('rm-client')
    const props = Buffer.from([0x21, 0x00, 0x02]) // Receive Maximum = 2
    const body = Buffer.concat([Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 5, 2, 0, 0]), varint(props.length), props, Buffer.from([0, id.length]), id])
    raw.socket.write(Buffer.concat([Buffer.from([0x10]), varint(body.length), body]))
    await raw.waitForBytes(Buffer.from([0x20]))
    raw.socket.write(subscribePacket('rm/#', 1, 1, 5))
    await raw.waitForBytes(Buffer.from([0x90]))
    const pub = await connectClient(srv.mqttUrl, v5())
    for (let i = 0; i < 5; i++) await pub.client.publishAsync('rm/x', `m${i}`, { qos: 1 })
    await sleep(400)
    const publishes = (): number => countPublishes(Buffer.concat(raw.received))
    expect(publishes()).toBe(2)
    // acknowledge one: exactly one more may come
    const firstId = firstPublishId(Buffer.concat(raw.received))
    raw.socket.write(Buffer.from([0x40, 0x02, firstId >> 8, firstId & 0xff]))
    await sleep(300)
    expect(publishes()).toBe(3)
    raw.socket.destroy()
  })

  it('closes a client that exceeds the server Receive Maximum with 0x93', async () => {
    const raw = await rawConnect(srv.mqttPort)
    raw.socket.write(connectPacket('rm-flood', { version: 5 }))
    await raw.waitForBytes(Buffer.from([0x20]))
    // 40 QoS 2 publishes, never a PUBREL: more than the server's Receive Maximum (32)
    const frames: Buffer[] = []
    for (let i = 1; i <= 40; i++) {
      const t = Buffer.from('flood/x')
      const body = Buffer.concat([Buffer.from([0, t.length]), t, Buffer.from([i >> 8, i & 0xff, 0]), Buffer.from('p')])
      frames.push(Buffer.concat([Buffer.from([0x34]), varint(body.length), body]))
    }
    raw.socket.write(Buffer.concat(frames))
    await raw.waitForBytes(Buffer.from([0xe0, 0x01, 0x93]))
    await raw.closed
  })

  it('shared subscriptions: each message to one member of the group, in turn; MQTT 3.1.1 members too', async () => {
    const a = await connectClient(srv.mqttUrl, v5())
    const props = (a.client as unknown as { connackPacket?: { properties?: Record<string, unknown> } }).connackPacket?.properties
    expect(props?.sharedSubscriptionAvailable).toBeUndefined() // absent = available
    const b = await connectClient(srv.mqttUrl, v5())
    const c = await connectClient(srv.mqttUrl, { protocolVersion: 4 })
    // one SUBSCRIBE mixing a shared and a plain filter: the SUBACK answers both, in order
    const granted = await a.client.subscribeAsync({ '$share/workers/jobs/#': { qos: 1 }, 'plain/a': { qos: 0 } })
    expect(granted.map((g) => g.qos)).toEqual([1, 0])
    await b.client.subscribeAsync('$share/workers/jobs/#', { qos: 1 })
    await c.client.subscribeAsync('$share/workers/jobs/#', { qos: 0 })
    const other = await connectClient(srv.mqttUrl, v5())
    await other.client.subscribeAsync('$share/auditors/jobs/#', { qos: 1 }) // another group gets everything
    const pub = await connectClient(srv.mqttUrl, v5())
    for (let i = 0; i < 30; i++) await pub.client.publishAsync(`jobs/${i % 3}`, String(i), { qos: i % 2 === 0 ? 1 : 0 })
    await other.waitFor(30)
    await sleep(300)
    const sets = [a, b, c].map((x) => x.messages.map((m) => Number(m.payload)))
    expect(sets.map((s) => s.length)).toEqual([10, 10, 10])
    expect(sets.flat().sort((x, y) => x - y)).toEqual(Array.from({ length: 30 }, (_, i) => i))
    expect(c.messages.every((m) => m.qos === 0)).toBe(true) // granted QoS 0 caps delivery
    // leaving the group: the others share it
    await c.client.unsubscribeAsync('$share/workers/jobs/#')
    for (let i = 30; i < 40; i++) await pub.client.publishAsync('jobs/x', String(i), { qos: 1 })
    await sleep(300)
    expect(c.messages.length).toBe(10)
    expect(a.messages.length + b.messages.length).toBe(30)
  })

  it('refuses malformed shared filters and No Local on a shared subscription', async () => {
    const c = await connectClient(srv.mqttUrl, v5())
    await expect(c.client.subscribeAsync('$share/bad+name/x')).rejects.toThrow()
    const reason = new Promise<number | undefined>((resolve) => c.client.on('disconnect', (p) => resolve(p.reasonCode)))
    c.client.subscribe('$share/g/x', { qos: 0, nl: true })
    expect(await reason).toBe(0x82) // [MQTT-3.8.3-4]
  })
})

function countPublishes(buf: Buffer): number {
  let n = 0
  for (let o = 0; o < buf.length;) {
    let len = 0; let mul = 1; let i = 1
    for (;; i++) { const b = buf[o + i] as number; len += (b & 0x7f) * mul; mul *= 128; if ((b & 0x80) === 0) break }
    if ((buf[o] as number) >> 4 === 3) n++
    o += 1 + i + len
  }
  return n
}

function firstPublishId(buf: Buffer): number {
  for (let o = 0; o < buf.length;) {
    let len = 0; let mul = 1; let i = 1
    for (;; i++) { const b = buf[o + i] as number; len += (b & 0x7f) * mul; mul *= 128; if ((b & 0x80) === 0) break }
    if ((buf[o] as number) >> 4 === 3) { const t = o + 1 + i; return buf.readUInt16BE(t + 2 + buf.readUInt16BE(t)) }
    o += 1 + i + len
  }
  throw new Error('no PUBLISH received')
}

