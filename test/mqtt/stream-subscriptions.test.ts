import { execFile } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { parseStreamFilter } from '../../src/mqtt/stream-subscriptions.ts'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients, sleep, type TestClient } from '../support/mqtt.ts'
import { CONNACK_OK, connectPacket, rawConnect, subscribePacket } from '../support/raw.ts'

const exec = promisify(execFile)

describe('parseStreamFilter', () => {
  it('reads durable consumers and replays from every start', () => {
    expect(parseStreamFilter('sensors/#')).toBeNull()
    expect(parseStreamFilter('$stream/orders/billing/#')).toEqual({ kind: 'durable', stream: 'orders', consumer: 'billing' })
    expect(parseStreamFilter('$replay/orders/all/#')).toEqual({ kind: 'replay', stream: 'orders', deliver: 'all', filter: '#' })
    expect(parseStreamFilter('$replay/orders/last-per-subject/orders/+/eu')).toMatchObject({ deliver: 'lastPerSubject', filter: 'orders/+/eu' })
    expect(parseStreamFilter('$replay/o/seq=42/#')).toMatchObject({ deliver: { startSeq: 42 } })
    expect(parseStreamFilter('$replay/o/time=2026-11-23T10:00:00Z/#')).toMatchObject({ deliver: { startTime: Date.parse('2026-11-23T10:00:00Z') } })
    expect(parseStreamFilter('$replay/o/since=10m/#', 1_000_000)).toMatchObject({ deliver: { startTime: 400_000 } })
  })

  it('says what a malformed one should look like', () => {
    expect(() => parseStreamFilter('$stream/orders/billing/eu/#')).toThrow(/\$stream\/<stream>\/<consumer>\/#/)
    expect(() => parseStreamFilter('$stream/orders/+/#')).toThrow(/ESUBJECT_INVALID|consumer/)
    expect(() => parseStreamFilter('$replay/orders/yesterday/#')).toThrow(/start "yesterday"/)
    expect(() => parseStreamFilter('$replay/orders/seq=0/#')).toThrow(/seq=<N>/)
    expect(() => parseStreamFilter('$replay/orders/all')).toThrow(/\$replay\/<stream>\/<start>\/<filter>/)
    expect(() => parseStreamFilter('$replay/orders/all/a/#/b')).toThrow()
  })
})

let servers: StartedEdgebus[] = []
afterEach(async () => {
  await endAllClients()
  await Promise.all(servers.map((s) => s.stop()))
  servers = []
})

const consumers = [
  { name: 'billing', ackWait: '2s', maxDeliver: 3 },
  { name: 'slow', ackWait: '300ms', maxDeliver: 2 },
  { name: 'paced', maxAckPending: 2, backoff: ['300ms', '900ms'], maxDeliver: 3 },
]

async function start(dir?: string): Promise<StartedEdgebus> {
  const srv = await startEdgebus({ config: { streams: [{ name: 'orders', subjects: ['orders/#'], consumers }] }, ...(dir ? { dir } : {}) })
  servers.push(srv)
  return srv
}

async function publish(srv: StartedEdgebus, n: number, from = 0, topic = (i: number) => `orders/${i % 3}`): Promise<void> {
  const pub = await connectClient(srv.mqttUrl)
  for (let i = from; i < from + n; i++) await pub.client.publishAsync(topic(i), `order ${i}`, { qos: 1 })
  await pub.end()
}

async function consumerInfo(srv: StartedEdgebus, name: string): Promise<Record<string, number>> {
  const res = await fetch(`${srv.httpUrl}/api/streams/orders/consumers/${name}`)
  return ((await res.json()) as { state: Record<string, number> }).state
}

/** The SUBACK's reason codes (MQTT.js rejects subscribeAsync when one is a failure). */
function subackCodes(c: TestClient, topics: Record<string, { qos: 0 | 1 | 2 }>): Promise<number[]> {
  return new Promise((resolve) => {
    c.client.subscribe(topics, (_err, _granted, packet) => resolve((packet as unknown as { granted: number[] }).granted))
  })
}

function user(props: Record<string, unknown> | undefined, key: string): string | undefined {
  const v = (props?.userProperties as Record<string, string | string[]> | undefined)?.[key]
  return Array.isArray(v) ? v[0] : v
}

describe('durable consumers over MQTT ($stream/<stream>/<consumer>/#)', () => {
  it('MQTT 5: messages under the prefix with seq, time and deliveries; PUBACK acks them', async () => {
    const srv = await start()
    await publish(srv, 10)
    const c = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    const granted = await c.client.subscribeAsync('$stream/orders/billing/#', { qos: 1 })
    expect(granted[0]?.qos).toBe(1)
    const got = await c.waitFor(10)
    expect(got.map((m) => m.topic)).toEqual([...Array(10).keys()].map((i) => `$stream/orders/billing/orders/${i % 3}`))
    expect(got.map((m) => m.payload)).toEqual([...Array(10).keys()].map((i) => `order ${i}`))
    expect(got.every((m) => m.qos === 1)).toBe(true)
    expect(got.map((m) => user(m.properties, 'seq'))).toEqual([...Array(10).keys()].map((i) => String(i + 1)))
    expect(user(got[0]?.properties, 'stream')).toBe('orders')
    expect(user(got[0]?.properties, 'deliveries')).toBe('1')
    expect(Date.parse(user(got[0]?.properties, 'time') ?? '')).toBeGreaterThan(Date.now() - 60_000)
    await sleep(100)
    const info = await consumerInfo(srv, 'billing')
    expect(info).toMatchObject({ ackFloor: 10, pending: 0 })
    // live messages follow
    await publish(srv, 1, 10)
    expect((await c.waitFor(11))[10]?.topic).toBe('$stream/orders/billing/orders/1')
  })

  it('MQTT 3.1.1: mosquitto_sub reads a consumer; what it did not ack goes to the next client', async () => {
    const srv = await start()
    await publish(srv, 6)
    // mosquitto_sub acks each message it prints; -C 4 stops after four
    const { stdout } = await exec('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(srv.mqttPort), '-V', 'mqttv311', '-q', '1', '-t', '$stream/orders/billing/#', '-C', '4', '-v', '-W', '10'])
    expect(stdout.trim().split('\n')).toEqual(['$stream/orders/billing/orders/0 order 0', '$stream/orders/billing/orders/1 order 1', '$stream/orders/billing/orders/2 order 2', '$stream/orders/billing/orders/0 order 3'])
    await sleep(200)
    // mosquitto_sub leaves after its fourth message; what it had acked stays acked (libmosquitto
    // may exit before writing the PUBACKs it queued), the rest goes to the next client
    const info = await consumerInfo(srv, 'billing')
    const acked = info.ackFloor ?? 0
    expect(acked).toBeGreaterThanOrEqual(1)
    expect(info).toMatchObject({ pending: 6 - acked, outstanding: 0, ready: 6 - acked })
    const next = await connectClient(srv.mqttUrl, { protocolVersion: 4 })
    await next.client.subscribeAsync('$stream/orders/billing/#', { qos: 1 })
    await next.waitFor(6 - acked)
    await sleep(200)
    expect(next.messages.map((m) => m.payload)).toEqual([...Array(6).keys()].slice(acked).map((i) => `order ${i}`))
    expect((await consumerInfo(srv, 'billing')).ackFloor).toBe(6)
  })

  it('competing clients get disjoint sets whose union is every message', async () => {
    const srv = await start()
    const clients: TestClient[] = []
    for (let i = 0; i < 3; i++) {
      const c = await connectClient(srv.mqttUrl, { protocolVersion: i === 0 ? 4 : 5 })
      await c.client.subscribeAsync('$stream/orders/billing/#', { qos: 1 })
      clients.push(c)
    }
    await publish(srv, 300, 0, (i) => `orders/${i % 7}`)
    const deadline = Date.now() + 5000
    while (clients.reduce((n, c) => n + c.messages.length, 0) < 300 && Date.now() < deadline) await sleep(20)
    const all = clients.flatMap((c) => c.messages.map((m) => m.payload))
    expect(all.length).toBe(300)
    expect(new Set(all).size).toBe(300)
    expect(clients.filter((c) => c.messages.length > 0).length).toBeGreaterThan(1)
    // per-subject order holds within each client
    for (const c of clients) {
      const bySubject = new Map<string, number[]>()
      for (const m of c.messages) {
        const n = Number(m.payload.split(' ')[1])
        bySubject.set(m.topic, [...(bySubject.get(m.topic) ?? []), n])
      }
      for (const seqs of bySubject.values()) expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
    }
  })

  it('a PUBACK with a failure reason code (MQTT 5) naks: redelivered with its delivery count', async () => {
    const srv = await start()
    await publish(srv, 1)
    const seen: Array<[string, string | undefined]> = []
    const c = await connectClient(srv.mqttUrl, {
      protocolVersion: 5,
      // MQTT.js answers the PUBACK with the code given here (and emits 'message' only for 0)
      customHandleAcks: (_topic, message, packet, done) => {
        seen.push([message.toString(), user(packet.properties as Record<string, unknown>, 'deliveries')])
        done(seen.length === 1 ? 0x80 : 0)
      },
    })
    await c.client.subscribeAsync('$stream/orders/billing/#', { qos: 1 })
    await c.waitFor(1)
    expect(seen).toEqual([['order 0', '1'], ['order 0', '2']])
    await sleep(100)
    expect(await consumerInfo(srv, 'billing')).toMatchObject({ ackFloor: 1, pending: 0, redelivered: 0 })
  })

  it('unacked past ackWait comes again; after maxDeliver it goes to the dead-letter subject; $term from MQTT 3.1.1', async () => {
    const srv = await start()
    const dlq = await connectClient(srv.mqttUrl)
    await dlq.client.subscribeAsync('$dlq/#', { qos: 1 })
    await publish(srv, 2)
    // a client that never acks: raw MQTT 3.1.1 (MQTT.js stops reading until it acks)
    const raw = await rawConnect(srv.mqttPort)
    raw.socket.write(connectPacket('never-acks'))
    await raw.waitForBytes(CONNACK_OK)
    raw.socket.write(subscribePacket('$stream/orders/slow/#', 1))
    const count = (text: string): number => Buffer.concat(raw.received).toString('latin1').split(text).length - 1
    const deadline = Date.now() + 3000
    while ((count('order 0') < 2 || count('order 1') < 2) && Date.now() < deadline) await sleep(20)
    expect([count('order 0'), count('order 1')]).toEqual([2, 2]) // delivered, then again after ackWait
    const dead = await dlq.waitFor(2, 3000)
    expect(dead.map((d) => JSON.parse(d.payload) as Record<string, unknown>).sort((a, b) => Number(a.seq) - Number(b.seq)))
      .toEqual([1, 2].map((seq) => expect.objectContaining({ stream: 'orders', consumer: 'slow', seq, deliveryCount: 2, reason: 'maxDeliver' })))
    await sleep(400)
    expect([count('order 0'), count('order 1')]).toEqual([2, 2]) // never a third time
    // $term through a control topic, from an MQTT 3.1.1 client
    await publish(srv, 1, 2)
    await raw.waitForBytes(Buffer.from('order 2'))
    const seq = 3
    const ctl = await connectClient(srv.mqttUrl, { protocolVersion: 4 })
    await ctl.client.publishAsync(`$stream/orders/slow/$term/${seq}`, '', { qos: 1 })
    const termed = await dlq.waitFor(3, 3000)
    expect(JSON.parse(termed[2]?.payload ?? '{}')).toMatchObject({ seq, reason: 'term', deliveryCount: 1 })
    raw.socket.destroy()
  })

  it('maxAckPending holds delivery back; backoff spaces the redeliveries; maxDeliver then frees the window', async () => {
    const srv = await start()
    const dlq = await connectClient(srv.mqttUrl)
    await dlq.client.subscribeAsync('$dlq/#', { qos: 1 })
    await publish(srv, 4, 0, (i) => `orders/p${i}`)
    const raw = await rawConnect(srv.mqttPort)
    raw.socket.write(connectPacket('never-acks-paced'))
    await raw.waitForBytes(CONNACK_OK)
    // arrival times of each payload, from the raw bytes (MQTT 3.1.1, never acked)
    const seen = new Map<string, number[]>()
    let text = ''
    raw.socket.on('data', (d: Buffer) => {
      text += d.toString('latin1')
      for (const m of text.matchAll(/order \d/g)) {
        const list = seen.get(m[0]) ?? []
        list.push(Date.now())
        seen.set(m[0], list)
      }
      text = text.slice(text.lastIndexOf('order ') + 7)
    })
    raw.socket.write(subscribePacket('$stream/orders/paced/#', 1))
    await sleep(150)
    // two pending at most: orders 2 and 3 wait
    expect([...seen.keys()].sort()).toEqual(['order 0', 'order 1'])
    const dead = await dlq.waitFor(2, 5000)
    expect(dead.map((d) => (JSON.parse(d.payload) as { seq: number }).seq).sort()).toEqual([1, 2])
    const t0 = seen.get('order 0') ?? []
    expect(t0.length).toBe(3) // maxDeliver
    expect((t0[1] as number) - (t0[0] as number)).toBeGreaterThanOrEqual(250) // backoff[0]
    expect((t0[2] as number) - (t0[1] as number)).toBeGreaterThanOrEqual(800) // backoff[1]
    // the window is free again: the held-back messages come now
    const deadline = Date.now() + 3000
    while (!(seen.has('order 2') && seen.has('order 3')) && Date.now() < deadline) await sleep(20)
    expect((seen.get('order 2')?.[0] ?? 0)).toBeGreaterThanOrEqual(t0[2] as number)
    raw.socket.destroy()
  })

  it('refuses an unknown stream or consumer and a malformed filter in the SUBACK', async () => {
    const srv = await start()
    const v5 = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    expect(await subackCodes(v5, { '$stream/orders/nobody/#': { qos: 1 }, '$stream/nostream/billing/#': { qos: 1 }, '$replay/orders/yesterday/#': { qos: 1 }, 'orders/#': { qos: 0 } }))
      .toEqual([0x80, 0x80, 0x8f, 0])
    expect(srv.output.some((l) => l.includes('create it with `edgebus consumer add`'))).toBe(true)
    const v4 = await connectClient(srv.mqttUrl, { protocolVersion: 4 })
    expect(await subackCodes(v4, { '$replay/orders/yesterday/#': { qos: 1 }, 'orders/#': { qos: 1 } })).toEqual([0x80, 1])
  })

  it('resumes after SIGKILL: acked messages stay acked, nothing is lost', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgebus-mqtt-consumer-'))
    let srv = await start(dir)
    await publish(srv, 40)
    const c = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await c.client.subscribeAsync('$stream/orders/billing/#', { qos: 1 })
    await c.waitFor(40)
    await sleep(1500) // past the consumer state's sync interval: the acks are on disk
    await c.end()
    await publish(srv, 10, 40)
    await srv.kill()
    servers = servers.filter((s) => s !== srv)
    srv = await start(dir)
    const again = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await again.client.subscribeAsync('$stream/orders/billing/#', { qos: 1 })
    const got = await again.waitFor(10)
    await sleep(300)
    expect(again.messages.map((m) => m.payload)).toEqual([...Array(10).keys()].map((i) => `order ${40 + i}`))
    expect(got.every((m) => user(m.properties, 'deliveries') === '1')).toBe(true)
  })
})

describe('replay over MQTT ($replay/<stream>/<start>/<filter>)', () => {
  it('replays from each start, filtered, then continues live; QoS 0 and QoS 1', async () => {
    const srv = await start()
    await publish(srv, 9) // seq 1..9, subjects orders/0,1,2 in turn
    const c = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    const payloads = async (filter: string, n: number, qos: 0 | 1 = 1): Promise<string[]> => {
      c.messages.length = 0
      await c.client.subscribeAsync(filter, { qos })
      const got = await c.waitFor(n)
      await sleep(150)
      await c.client.unsubscribeAsync(filter)
      expect(c.messages.length, filter).toBe(n)
      return got.map((m) => m.payload)
    }
    expect(await payloads('$replay/orders/all/#', 9)).toEqual([...Array(9).keys()].map((i) => `order ${i}`))
    expect(await payloads('$replay/orders/seq=7/#', 3, 0)).toEqual(['order 6', 'order 7', 'order 8'])
    expect(await payloads('$replay/orders/last/#', 1)).toEqual(['order 8'])
    expect(await payloads('$replay/orders/last-per-subject/#', 3)).toEqual(['order 6', 'order 7', 'order 8'])
    expect(await payloads('$replay/orders/all/orders/1', 3)).toEqual(['order 1', 'order 4', 'order 7'])
    expect(await payloads(`$replay/orders/time=${Date.now() - 60_000}/orders/2`, 3)).toEqual(['order 2', 'order 5', 'order 8'])

    // new: nothing from history, then live
    await c.client.subscribeAsync('$replay/orders/new/#', { qos: 1 })
    c.messages.length = 0
    await sleep(100)
    expect(c.messages.length).toBe(0)
    await publish(srv, 1, 9)
    expect((await c.waitFor(1))[0]).toMatchObject({ topic: '$replay/orders/new/orders/0', payload: 'order 9' })
  })

  it('last-per-subject at QoS 0 (no acks), MQTT 3.1.1 and 5: the newest of each subject, as a lastPerSubject consumer sees it, then live', async () => {
    const srv = await start()
    await publish(srv, 9) // orders/0,1,2 in turn: the newest of each are orders 6, 7, 8
    const res = await fetch(`${srv.httpUrl}/api/streams/orders/consumers`, { method: 'POST', body: JSON.stringify({ name: 'latest', deliver: 'lastPerSubject' }) })
    expect(res.status).toBe(201)
    const next = await fetch(`${srv.httpUrl}/api/streams/orders/consumers/latest/next?batch=10`, { method: 'POST' })
    const fromConsumer = (await next.text()).split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { payload: string }).payload)
    expect(fromConsumer).toEqual(['order 6', 'order 7', 'order 8'])
    for (const protocolVersion of [4, 5] as const) {
      const c = await connectClient(srv.mqttUrl, { protocolVersion })
      c.client.subscribe('$replay/orders/last-per-subject/#', { qos: 0 })
      const got = await c.waitFor(3)
      expect(got.map((m) => [m.topic, m.payload]), `MQTT ${protocolVersion}`).toEqual([
        ['$replay/orders/last-per-subject/orders/0', 'order 6'], ['$replay/orders/last-per-subject/orders/1', 'order 7'], ['$replay/orders/last-per-subject/orders/2', 'order 8'],
      ])
    }
    const c = await connectClient(srv.mqttUrl, { protocolVersion: 4 })
    c.client.subscribe('$replay/orders/last-per-subject/orders/1', { qos: 0 })
    expect((await c.waitFor(1)).map((m) => m.payload)).toEqual(['order 7'])
    await publish(srv, 3, 9) // orders 9 (orders/0), 10 (orders/1), 11
    expect((await c.waitFor(2)).map((m) => m.payload)).toEqual(['order 7', 'order 10'])
  })

  it('a reader that stops reading until the socket is full gets the rest once it reads again', async () => {
    const srv = await start()
    // 24 MB: more than the loopback socket buffers hold, so the server's writes back up
    const n = 12_000
    const pub = await connectClient(srv.mqttUrl)
    const body = 'x'.repeat(2000)
    for (let i = 0; i < n; i++) pub.client.publish(`orders/${i % 3}`, body, { qos: 0 })
    await pub.client.publishAsync('orders/0', 'last', { qos: 1 })
    await pub.end()
    const raw = await rawConnect(srv.mqttPort)
    raw.socket.write(connectPacket('replay-paused'))
    await raw.waitForBytes(CONNACK_OK)
    raw.socket.write(subscribePacket('$replay/orders/all/#', 0))
    raw.socket.pause()
    await sleep(1500) // the server fills the socket and waits for it to drain
    raw.socket.resume()
    await raw.waitForBytes(Buffer.from('last'), 15_000)
  }, 30_000)

  it('a replay is the client\'s own: two clients each get everything', async () => {
    const srv = await start()
    await publish(srv, 5)
    const a = await connectClient(srv.mqttUrl)
    const b = await connectClient(srv.mqttUrl)
    await a.client.subscribeAsync('$replay/orders/all/#', { qos: 1 })
    await b.client.subscribeAsync('$replay/orders/all/#', { qos: 0 })
    expect((await a.waitFor(5)).length).toBe(5)
    expect((await b.waitFor(5)).length).toBe(5)
  })
})
