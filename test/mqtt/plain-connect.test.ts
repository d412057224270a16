import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import mqtt from 'mqtt'
import { plainConnack, plainConnect } from '../../src/mqtt/plain-connect.ts'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients, sleep } from '../support/mqtt.ts'
import { CONNACK_OK, connectPacket, publishPacket, rawConnect, subscribePacket, varint } from '../support/raw.ts'

/** A CONNECT with the fields plainConnect() reads, hand-encoded. */
function connect(opts: { level?: 3 | 4 | 5; flags?: number; id?: string; props?: number[]; user?: string; password?: string; keepalive?: number } = {}): Buffer {
  const level = opts.level ?? 4
  const name = Buffer.from(level === 3 ? 'MQIsdp' : 'MQTT')
  const s = (v: string): Buffer => Buffer.concat([Buffer.from([Buffer.byteLength(v) >> 8, Buffer.byteLength(v) & 0xff]), Buffer.from(v)])
  let flags = opts.flags ?? 0x02
  if (opts.user !== undefined) flags |= 0x80
  if (opts.password !== undefined) flags |= 0x40
  const props = opts.props ?? []
  const body = Buffer.concat([
    Buffer.from([0, name.length]), name, Buffer.from([level, flags, (opts.keepalive ?? 30) >> 8, (opts.keepalive ?? 30) & 0xff]),
    level === 5 ? Buffer.concat([varint(props.length), Buffer.from(props)]) : Buffer.alloc(0),
    s(opts.id ?? 'dev-1'),
    opts.user !== undefined ? s(opts.user) : Buffer.alloc(0),
    opts.password !== undefined ? s(opts.password) : Buffer.alloc(0),
  ])
  return Buffer.concat([Buffer.from([0x10]), varint(body.length), body])
}

describe('plainConnect: which CONNECTs edgebus answers without aedes', () => {
  it('takes a clean session without a will, with its identifier, keepalive and credentials', () => {
    expect(plainConnect(connect({ id: 'sensor-7', keepalive: 60, user: 'u', password: 'p' }))).toEqual({
      level: 4, clientId: 'sensor-7', keepalive: 60, username: 'u', password: Buffer.from('p'), maximumPacketSize: 0,
    })
    expect(plainConnect(connect({ level: 3, id: 'x'.repeat(23) }))?.level).toBe(3)
    expect(plainConnect(connect({ level: 5, props: [0x27, 0, 0, 0x10, 0] }))?.maximumPacketSize).toBe(4096)
    expect(plainConnect(connect({ level: 5, props: [0x21, 0, 10] }))?.level).toBe(5)
  })

  it('leaves sessions, wills, assigned identifiers and enhanced authentication to aedes', () => {
    expect(plainConnect(connect({ flags: 0x00 }))).toBeNull() // persistent session
    expect(plainConnect(connect({ flags: 0x06 }))).toBeNull() // a will
    expect(plainConnect(connect({ id: '' }))).toBeNull() // the server assigns one
    expect(plainConnect(connect({ level: 3, id: 'x'.repeat(24) }))).toBeNull() // MQTT 3.1: refused with code 2
    expect(plainConnect(connect({ level: 5, props: [0x11, 0, 0, 0, 10] }))).toBeNull() // Session Expiry Interval
    expect(plainConnect(connect({ level: 5, props: [0x15, 0, 1, 0x61] }))).toBeNull() // Authentication Method
    expect(plainConnect(connect({ level: 5, props: [0x21, 0, 0] }))).toBeNull() // Receive Maximum 0: a protocol error
    const wrongName = connect()
    wrongName[5] = 0x58 // 'MQXT'
    expect(plainConnect(wrongName)).toBeNull()
    const trailing = Buffer.concat([connect(), Buffer.from([0])])
    trailing[1] = (trailing[1] as number) + 1 // one byte after the payload
    expect(plainConnect(trailing)).toBeNull()
  })

  it('answers with the CONNACK aedes writes: MQTT 5 says Topic Alias Maximum, Maximum Packet Size and Receive Maximum', () => {
    expect(plainConnack(4, { topicAliasMaximum: 64, maxPacketSize: 1024, receiveMaximum: 100 })).toEqual(CONNACK_OK)
    expect([...plainConnack(5, { topicAliasMaximum: 64, maxPacketSize: 1024, receiveMaximum: 100 })]).toEqual(
      [0x20, 14, 0, 0, 11, 0x22, 0, 64, 0x27, 0, 0, 4, 0, 0x21, 0, 100])
  })
})

describe('clients served without aedes, on the running server', () => {
  let srv: StartedEdgebus
  beforeAll(async () => { srv = await startEdgebus() })
  afterAll(async () => {
    await endAllClients()
    await srv.stop()
  })

  it('an MQTT 5 client gets the same CONNACK properties whether edgebus or aedes answered (a will sends it to aedes)', async () => {
    const connack = async (opts: mqtt.IClientOptions): Promise<Record<string, unknown>> => {
      const c = mqtt.connect(srv.mqttUrl, { protocolVersion: 5, reconnectPeriod: 0, ...opts })
      const packet = await new Promise<mqtt.IConnackPacket>((resolve, reject) => { c.once('connect', resolve); c.once('error', reject) })
      await c.endAsync()
      return { ...packet.properties, sessionPresent: packet.sessionPresent, reasonCode: packet.reasonCode }
    }
    const plain = await connack({ clientId: 'ck-plain' })
    const viaAedes = await connack({ clientId: 'ck-will', will: { topic: 'ck/will', payload: Buffer.from('x'), qos: 0, retain: false } })
    expect(plain).toEqual(viaAedes)
    expect(plain.topicAliasMaximum).toBe(64)
  })

  it('publishes on the fast path, then subscribes: the client is handed to aedes and keeps every message', async () => {
    const watcher = await connectClient(srv.mqttUrl)
    await watcher.client.subscribeAsync('pl/#', { qos: 1 })
    const dev = await connectClient(srv.mqttUrl, { clientId: 'pl-dev' })
    await dev.client.publishAsync('pl/a', 'zero', { qos: 0 })
    await dev.client.publishAsync('pl/b', 'one', { qos: 1 })
    await dev.client.publishAsync('pl/r', 'kept', { qos: 1, retain: true }) // retained: aedes' part
    // its PUBACK came once the message was stored and routed: subscribing now gets it once, retained
    await dev.client.subscribeAsync('pl/#', { qos: 1 })
    await dev.waitFor(1)
    await dev.client.publishAsync('pl/c', 'two', { qos: 2 })
    await dev.waitFor(2)
    expect(dev.messages.map((m) => [m.topic, m.payload, m.qos, m.retain])).toEqual([['pl/r', 'kept', 1, true], ['pl/c', 'two', 1, false]])
    await watcher.waitFor(4)
    expect(watcher.messages.map((m) => m.payload)).toEqual(['zero', 'one', 'kept', 'two'])
  })

  it('CONNECT, SUBSCRIBE and PUBLISH in one write are answered in order', async () => {
    const raw = await rawConnect(srv.mqttPort)
    raw.socket.write(Buffer.concat([connectPacket('pl-burst'), subscribePacket('pb/x', 0), publishPacket('pb/x', 'self')]))
    const suback = Buffer.from([0x90, 0x03, 0x00, 0x01, 0x00])
    await raw.waitForBytes(Buffer.concat([CONNACK_OK, suback, publishPacket('pb/x', 'self')]))
    raw.socket.destroy()
  })

  it('a second connection with the same identifier takes over: MQTT 5 hears 0x8E Session taken over [MQTT-3.1.4-2]', async () => {
    const first = await connectClient(srv.mqttUrl, { clientId: 'pl-twice', protocolVersion: 5 })
    const disconnect = new Promise<number | undefined>((resolve) => first.client.once('disconnect', (p) => resolve(p.reasonCode)))
    const second = await connectClient(srv.mqttUrl, { clientId: 'pl-twice', protocolVersion: 5 })
    expect(await disconnect).toBe(0x8e)
    await second.client.publishAsync('pl/alive', 'x')
    expect(second.client.connected).toBe(true)
  })

  it('the takeover works across the two: a persistent session takes a plain client over, and the other way round', async () => {
    const plain = await rawConnect(srv.mqttPort)
    plain.socket.write(connectPacket('pl-mixed'))
    await plain.waitForBytes(CONNACK_OK)
    const persistent = await connectClient(srv.mqttUrl, { clientId: 'pl-mixed', clean: false })
    await plain.closed
    const closed = new Promise<void>((resolve) => persistent.client.once('close', () => resolve()))
    const plainAgain = await rawConnect(srv.mqttPort)
    plainAgain.socket.write(connectPacket('pl-mixed'))
    await plainAgain.waitForBytes(CONNACK_OK)
    await closed
    plainAgain.socket.destroy()
  })

  it('a clean CONNECT discards the persistent session of its identifier [MQTT-3.1.2-6]', async () => {
    const s1 = await connectClient(srv.mqttUrl, { clientId: 'pl-session', clean: false })
    await s1.client.subscribeAsync('ps/q', { qos: 1 })
    await s1.end()
    const pub = await connectClient(srv.mqttUrl)
    await pub.client.publishAsync('ps/q', 'queued', { qos: 1 })
    const clean = await connectClient(srv.mqttUrl, { clientId: 'pl-session', clean: true })
    await clean.end()
    const again = mqtt.connect(srv.mqttUrl, { clientId: 'pl-session', clean: false, reconnectPeriod: 0 })
    const connack = await new Promise<mqtt.IConnackPacket>((resolve) => again.once('connect', resolve))
    expect(connack.sessionPresent).toBe(false)
    const got: string[] = []
    again.on('message', (_t, p) => got.push(p.toString()))
    await sleep(300)
    expect(got).toEqual([])
    await again.endAsync()
  })

  it('keepalive: PINGREQ gets PINGRESP; a client silent for 1.5 x its keepalive is closed [MQTT-3.1.2-24]', async () => {
    const raw = await rawConnect(srv.mqttPort)
    raw.socket.write(connectPacket('pl-ka', { keepalive: 1 }))
    await raw.waitForBytes(CONNACK_OK)
    const started = Date.now()
    for (let i = 0; i < 4; i++) {
      await sleep(500)
      raw.socket.write(Buffer.from([0xc0, 0x00]))
    }
    await raw.waitForBytes(Buffer.from([0xd0, 0x00]))
    expect(raw.isClosed()).toBe(false)
    await raw.closed
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000 + 1400)
  })

  it('DISCONNECT closes the connection; the connection list shows plain clients with their identifier', async () => {
    const raw = await rawConnect(srv.mqttPort)
    raw.socket.write(connectPacket('pl-listed', { version: 5 }))
    await raw.waitForBytes(Buffer.from([0x20]))
    await vi.waitFor(async () => {
      const list = await (await fetch(`${srv.httpUrl}/api/connections`)).json() as { connections: Array<{ clientId: string | null; version: number | null }> }
      expect(list.connections.find((c) => c.clientId === 'pl-listed')?.version).toBe(5)
    })
    raw.socket.write(Buffer.from([0xe0, 0x00]))
    await raw.closed
  })
})
