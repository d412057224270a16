/**
 * A clean client's QoS 0 SUBSCRIBE is answered by edgebus' own layer (src/mqtt/plain-subscriptions.ts):
 * no aedes client for a subscribing device, the SUBACK in the turn the SUBSCRIBE is read. It must
 * answer as aedes does, byte for byte (a client with a will is served by aedes: the reference), and
 * deliver what aedes would: retained messages with Retain Handling, messages from every publisher
 * path downgraded to QoS 0, No Local, Subscription Identifiers, `$` topics kept from wildcards.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { rawClient, dropAll, publish, subscribe, unsubscribe, uniq, T, type Raw, type Version, type ConnectOpts } from '../conformance/wire.ts'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'

let open: StartedEdgebus
let guarded: StartedEdgebus

beforeAll(async () => {
  ;[open, guarded] = await Promise.all([
    startEdgebus(),
    startEdgebus({ config: { limits: { maxSubscriptions: 3 }, auth: { acl: { anonymous: [{ allow: 'pubsub', subject: 'ok/#' }] } } } }),
  ])
}, 20_000)
afterAll(async () => {
  dropAll()
  await Promise.all([open?.stop(), guarded?.stop()])
})
afterEach(async () => {
  dropAll()
  await endAllClients()
})

async function client(port: number, version: Version, o: Partial<ConnectOpts> = {}): Promise<Raw> {
  const { c, connack } = await rawClient(port, { clientId: uniq('ps'), version, ...o })
  expect(connack.reason ?? 0).toBe(0)
  return c
}
/** A client aedes serves from its CONNECT on (a will is not plain), to compare with. */
const withWill = { will: { topic: 'ok/will', payload: 'gone' } }

/** The connection's record in the HTTP API: a client without an aedes session shows cleanSession null. */
async function connectionOf(clientId: string): Promise<{ cleanSession: boolean | null; subscriptions: Array<{ filter: string; qos: number }> }> {
  const list = await (await fetch(`${open.httpUrl}/api/connections`)).json() as { connections: Array<{ id: number; clientId: string }> }
  const id = list.connections.find((c) => c.clientId === clientId)?.id
  return ((await (await fetch(`${open.httpUrl}/api/connections/${id}`)).json()) as { connection: { cleanSession: boolean | null; subscriptions: Array<{ filter: string; qos: number }> } }).connection
}

describe.each([4, 5] as const)('MQTT level %i', (version) => {
  it('SUBACK and UNSUBACK are the bytes aedes writes: granted, denied by the ACL, over limits.maxSubscriptions, unknown filters', async () => {
    const plain = await client(guarded.mqttPort, version)
    const reference = await client(guarded.mqttPort, version, withWill)
    const first = subscribe(7, [{ filter: 'ok/a' }, { filter: 'no/b' }, { filter: 'ok/+/c' }], version)
    const second = subscribe(8, [{ filter: 'ok/a' }, { filter: 'ok/d' }, { filter: 'ok/e' }], version) // ok/a again: no new subscription
    const unsub = unsubscribe(9, ['ok/a', 'ok/never'], version)
    const acks: Buffer[][] = []
    for (const c of [plain, reference]) {
      c.send(first)
      const a = await c.next(T.SUBACK)
      c.send(second)
      const b = await c.next(T.SUBACK)
      c.send(unsub)
      const u = await c.next(T.UNSUBACK)
      acks.push([a.raw, b.raw, u.raw])
    }
    expect(acks[0]).toEqual(acks[1])
    const refused = version === 5 ? 0x87 : 0x80
    const [a, b] = acks[0] as Buffer[]
    expect([...(a as Buffer).subarray(-3)]).toEqual([0, refused, 0])
    expect([...(b as Buffer).subarray(-3)]).toEqual([0, 0, refused]) // the third subscription is the limit
  })

  it('a subscription answered here delivers from the fast path and from aedes\' path (QoS 2, downgraded to the granted 0), and stops at UNSUBSCRIBE', async () => {
    const sub = await client(open.mqttPort, version)
    const pub = await client(open.mqttPort, 5)
    pub.autoAck = true
    const topic = `${uniq('d')}/x`
    const props = version === 5 ? { subscriptionIdentifier: 7 } : undefined
    expect((await sub.sub(1, [{ filter: `${topic.split('/')[0]}/+` }], props)).reasons).toEqual([0])
    pub.send(publish({ topic, payload: 'fast', version: 5 }), publish({ topic, payload: 'aedes', qos: 2, id: 3, version: 5, props: { userProperty: [['k', '2'], ['j', '1'], ['k', '1']] } }))
    const got = await sub.waitPublishes(2)
    expect(got.map((p) => [p.payload?.toString(), p.qos, p.retain])).toEqual([['fast', 0, false], ['aedes', 0, false]])
    if (version === 5) {
      expect(got.map((p) => p.props?.subscriptionIdentifier)).toEqual([[7], [7]])
      expect(got[1]?.props?.userProperty).toEqual([['k', '2'], ['j', '1'], ['k', '1']]) // in their order [MQTT-3.3.2-18]
    }
    const info = await connectionOf(await findClientId(sub))
    expect(info.cleanSession).toBeNull() // no aedes client
    expect(info.subscriptions).toEqual([{ filter: `${topic.split('/')[0]}/+`, qos: 0 }])
    sub.send(unsubscribe(2, [`${topic.split('/')[0]}/+`], version))
    await sub.next(T.UNSUBACK)
    pub.send(publish({ topic, payload: 'after', version: 5 }), publish({ topic, payload: 'after', qos: 1, id: 4, version: 5 }))
    await pub.sync()
    await sub.sync()
    expect(sub.publishes()).toHaveLength(2)
  })

  it('retained messages follow the SUBACK at QoS 0 with RETAIN set; Retain Handling 1 and 2 as aedes', async () => {
    const base = uniq('r')
    const pub = await client(open.mqttPort, 4)
    pub.autoAck = true
    pub.send(publish({ topic: `${base}/1`, payload: 'kept', qos: 1, retain: true, id: 1 }))
    await pub.next(T.PUBACK)
    const sub = await client(open.mqttPort, version)
    await sub.sub(1, [{ filter: `${base}/+` }])
    const [r] = await sub.waitPublishes(1)
    expect([r?.topic, r?.payload?.toString(), r?.qos, r?.retain]).toEqual([`${base}/1`, 'kept', 0, true])
    expect(sub.packets.findIndex((p) => p.type === T.SUBACK)).toBeLessThan(sub.packets.findIndex((p) => p.type === T.PUBLISH))
    if (version === 5) {
      await sub.sub(2, [{ filter: `${base}/+`, rh: 1 }]) // held already: none
      await sub.sub(3, [{ filter: `${base}/1`, rh: 2 }]) // never
      await sub.sub(4, [{ filter: `${base}/#`, rh: 1 }]) // new: sent
      await sub.waitPublishes(2)
      await sub.sync()
      expect(sub.publishes().map((p) => p.retain)).toEqual([true, true])
    }
  })

  it('No Local keeps a client\'s own messages from it, whichever path they take; wildcards do not match `$` topics', async () => {
    const sub = await client(open.mqttPort, version)
    const other = await client(open.mqttPort, 4, withWill)
    other.autoAck = true
    sub.autoAck = true
    const base = uniq('n')
    await sub.sub(1, [{ filter: `${base}/t`, nl: version === 5 }, { filter: '+/dollar' }])
    await other.sub(1, [{ filter: '$edge/dollar' }])
    sub.send(publish({ topic: `${base}/t`, payload: 'own0', version }), publish({ topic: `${base}/t`, payload: 'own2', qos: 2, id: 9, version }))
    other.send(publish({ topic: '$edge/dollar', payload: '$' }), publish({ topic: `${base}/t`, payload: 'theirs' }))
    await other.waitPublishes(1) // the '$' message was routed
    const got = await sub.waitPublishes(version === 5 ? 1 : 3)
    await sub.sync()
    const payloads = sub.publishes().map((p) => p.payload?.toString()).sort()
    expect(payloads).toEqual(version === 5 ? ['theirs'] : ['own0', 'own2', 'theirs'])
    expect(got.length).toBeGreaterThan(0)
  })

  it('a client promoted to aedes later (a QoS 1 SUBSCRIBE) keeps what it subscribed here; UNSUBSCRIBE of both kinds answers for each', async () => {
    const sub = await client(open.mqttPort, version)
    sub.autoAck = true
    const pub = await client(open.mqttPort, 4)
    const base = uniq('p')
    await sub.sub(1, [{ filter: `${base}/a` }])
    expect((await sub.sub(2, [{ filter: `${base}/b`, qos: 1 }])).reasons).toEqual([1])
    pub.send(publish({ topic: `${base}/a`, payload: 'a' }), publish({ topic: `${base}/b`, payload: 'b' }))
    await sub.waitPublishes(2)
    sub.send(unsubscribe(3, [`${base}/a`, `${base}/b`, `${base}/none`], version))
    const u = await sub.next(T.UNSUBACK)
    if (version === 5) expect(u.reasons).toEqual([0, 0, 0x11])
    pub.send(publish({ topic: `${base}/a`, payload: 'a2' }), publish({ topic: `${base}/b`, payload: 'b2' }))
    await pub.sync()
    await sub.sync()
    expect(sub.publishes().map((p) => p.payload?.toString())).toEqual(['a', 'b'])
  })
})

it('MQTT.js: subscribe, retained and live messages, unsubscribe', async () => {
  const base = uniq('js')
  const pub = await connectClient(open.mqttUrl, { protocolVersion: 5, clientId: uniq('jspub') })
  await pub.client.publishAsync(`${base}/r`, 'retained', { qos: 1, retain: true })
  const sub = await connectClient(open.mqttUrl, { protocolVersion: 5, clientId: uniq('jssub') })
  const granted = await sub.client.subscribeAsync(`${base}/#`, { qos: 0 })
  expect(granted.map((g) => g.qos)).toEqual([0])
  await sub.waitFor(1)
  await pub.client.publishAsync(`${base}/live`, 'live', { qos: 1 })
  const got = await sub.waitFor(2)
  expect(got.map((m) => [m.topic, m.payload, m.retain])).toEqual([[`${base}/r`, 'retained', true], [`${base}/live`, 'live', false]])
  expect((await connectionOf(sub.client.options.clientId as string)).cleanSession).toBeNull()
  await sub.client.unsubscribeAsync(`${base}/#`)
  await pub.client.publishAsync(`${base}/live`, 'gone', { qos: 1 })
  await sub.client.publishAsync(`${base}-sync`, 'x', { qos: 1 }) // a round trip: anything routed before it has arrived
  expect(sub.messages).toHaveLength(2)
})

/** The client identifier a raw client connected with (the CONNECT it sent). */
async function findClientId(c: Raw): Promise<string> {
  const list = await (await fetch(`${open.httpUrl}/api/connections`)).json() as { connections: Array<{ clientId: string; remote: string }> }
  const local = `${c.socket.localAddress}:${c.socket.localPort}`
  return list.connections.find((x) => x.remote === local)?.clientId ?? ''
}
