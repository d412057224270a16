/**
 * MQTT 5.0 conformance, in the spirit of the Eclipse Paho interoperability suite for MQTT 5
 * (client_test5.py, paho.mqtt.python tests/test_mqttv5.py).
 *
 * As in mqtt311.test.ts: the Paho scenarios are played by python paho-mqtt 1.6.1 clients
 * (py/interop5.py, all scenarios concurrently in one process started in beforeAll), the packet-level
 * checks by a raw socket client (wire.ts). A second server with small limits (Receive Maximum 4,
 * Maximum Packet Size 2 KiB) checks that the limits announced in CONNACK are enforced.
 *
 * Statement ids are those of the OASIS MQTT Version 5.0 standard (7 March 2019).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { StartedEdgebus } from '../support/edgebus.ts'
import { expectClosedForError, hex, PAHO_MATRIX_RECEIVED, runPaho, scenario, startConformanceServer, type PahoRun } from './helpers.ts'
import {
  ack, connect, disconnect, dropAll, encodeProps, publish, rawClient, rawOpen, sleep, str, subscribe, T, uniq, unsubscribe, varint,
  type ConnectOpts, type Packet, type PropsIn, type Raw,
} from './wire.ts'

let srv: StartedEdgebus
let lim: StartedEdgebus
let paho: Promise<PahoRun>

const LIMIT_RECEIVE_MAXIMUM = 4
const LIMIT_PACKET_SIZE = 2048

beforeAll(async () => {
  srv = await startConformanceServer()
  paho = runPaho('interop5.py', srv.mqttPort)
  paho.catch(() => {}) // reported by the tests that await it
  lim = await startConformanceServer(['--limits-receive-maximum', String(LIMIT_RECEIVE_MAXIMUM), '--limits-max-packet-size', String(LIMIT_PACKET_SIZE)])
}, 20_000)
afterAll(async () => {
  dropAll()
  await paho?.catch(() => {})
  await Promise.all([srv?.stop(), lim?.stop()])
}, 40_000)
afterEach(() => dropAll())

const P = 30_000 // the paho tests wait for the whole python run (about 6 s, started in beforeAll)

async function v5(clientId: string, opts: Omit<ConnectOpts, 'clientId' | 'version'> = {}, port = srv.mqttPort): Promise<{ c: Raw; connack: Packet }> {
  const r = await rawClient(port, { clientId, version: 5, ...opts })
  expect(r.connack.reason, `CONNACK reason code for ${clientId}: ${r.c.describe()}`).toBe(0)
  return r
}
const connected = async (clientId: string, opts: Omit<ConnectOpts, 'clientId' | 'version'> = {}, port?: number): Promise<Raw> => (await v5(clientId, opts, port)).c

/** Publishes at QoS 1 from `c` and waits for the PUBACK. */
async function pub1(c: Raw, topic: string, payload: string | Buffer, id: number, props?: PropsIn, retain = false): Promise<Packet> {
  c.send(publish({ topic, payload, qos: 1, id, props, retain, version: 5 }))
  return c.next(T.PUBACK)
}

const pl = (p: Packet): string => p.payload?.toString() ?? ''

describe('MQTT 5.0: Paho interoperability scenarios (python paho-mqtt 1.6.1)', () => {
  it('basic: CONNACK Success, SUBACK Granted QoS 2, QoS 0, 1 and 2 publishes received at their QoS [MQTT-3.8.4-8]', async () => {
    const o = scenario(await paho, 'basic')
    expect(o.connackRc).toBe(0)
    expect(o.granted).toEqual([2])
    expect([...o.messages].sort()).toEqual([['qos 0', 0], ['qos 1', 1], ['qos 2', 2]])
  }, P)

  it('retained messages: stored with their QoS and user properties, sent with RETAIN=1 to a new subscription [MQTT-3.3.1-5] [MQTT-3.3.1-9] [MQTT-3.3.2-17] [MQTT-3.3.2-18]', async () => {
    const o = scenario(await paho, 'retained')
    expect(o.granted).toEqual([2])
    const first = [...o.first].sort((a: any, b: any) => a.topic.localeCompare(b.topic))
      .map((m: any) => [m.topic.split('/').slice(2).join('/'), m.payload, m.qos, m.retain, m.userProperty])
    expect(first).toEqual([
      ['a', 'qos 0', 0, true, [['a', '2'], ['c', '3']]],
      ['b', 'qos 1', 1, true, [['a', '2'], ['c', '3']]],
      ['c/d', 'qos 2', 2, true, [['a', '2'], ['c', '3']]],
    ])
  }, P)

  it('an empty retained payload is processed normally (forwarded) and removes the retained message [MQTT-3.3.1-6] [MQTT-3.3.1-7]', async () => {
    const o = scenario(await paho, 'retained')
    expect(o.clearedLive.map((m: any) => [m.payload, m.retain])).toEqual([['', false], ['', false], ['', false]])
    expect(o.afterClear).toEqual([])
  }, P)

  it('Retain Handling 0: retained messages on every SUBSCRIBE, also when the subscription exists [MQTT-3.3.1-9] [MQTT-3.8.4-4]', async () => {
    const o = scenario(await paho, 'subscribe_options')
    expect(o.rh0).toEqual([{ payload: 'retained-1', retain: true }, { payload: 'retained-1', retain: true }])
  }, P)

  it('Retain Handling 1: retained messages only when the subscription did not exist [MQTT-3.3.1-10]', async () => {
    const o = scenario(await paho, 'subscribe_options')
    expect(o.rh1).toEqual([{ payload: 'retained-1', retain: true }])
  }, P)

  it('Retain Handling 2: no retained messages on SUBSCRIBE [MQTT-3.3.1-11]', async () => {
    const o = scenario(await paho, 'subscribe_options')
    expect(o.rh2).toEqual([])
  }, P)

  it('Retain As Published 0 clears RETAIN on forwarded messages, 1 keeps it as published [MQTT-3.3.1-12] [MQTT-3.3.1-13]', async () => {
    const o = scenario(await paho, 'subscribe_options')
    expect(o.rap0).toEqual([{ payload: 'retained-2', retain: false }, { payload: 'not-retained', retain: false }])
    expect(o.rap1).toEqual([{ payload: 'retained-2', retain: true }, { payload: 'not-retained', retain: false }])
  }, P)

  it('will: published on abnormal disconnection, with its payload format, content type, response topic and correlation data [MQTT-3.1.2-8]', async () => {
    const o = scenario(await paho, 'will_abnormal')
    expect(o.messages).toHaveLength(1)
    const m = o.messages[0]
    expect([m.payload, m.qos, m.retain]).toEqual(['died', 1, false])
    expect(m.props).toMatchObject({ PayloadFormatIndicator: 1, ContentType: 'text/plain', ResponseTopic: expect.stringMatching(/\/reply$/), CorrelationData: Buffer.from('corr-1').toString('hex') })
  }, P)

  it('will: its user properties are published in the order given [MQTT-3.1.3-10] [MQTT-3.3.2-18]', async () => {
    const o = scenario(await paho, 'will_abnormal')
    expect(o.messages[0]?.props?.UserProperty).toEqual([['a', '2'], ['c', '3'], ['a', '1']])
  }, P)

  it('will: discarded on DISCONNECT 0x00, published on DISCONNECT 0x04 "Disconnect with Will Message" [MQTT-3.14.4-3] (section 3.14.2.1)', async () => {
    const o = scenario(await paho, 'will_normal')
    expect(o.messages).toEqual([['withwill', 'disconnect with will']])
  }, P)

  it('Will Delay Interval: the will waits for the delay; the session ending first publishes it at once [MQTT-3.1.2-8] (section 3.1.3.2.2)', async () => {
    const o = scenario(await paho, 'will_delay')
    // a) delay 2 s: about 2 s after the connection was lost
    expect(o.messages.a, `wills seen: ${JSON.stringify(o.messages)}`).toBeGreaterThanOrEqual(1.8)
    expect(o.messages.a).toBeLessThanOrEqual(3.3)
    // d) delay 10 s, Session Expiry 1 s: when the session ends, about 1 s after
    expect(o.messages.d, `wills seen: ${JSON.stringify(o.messages)}`).toBeGreaterThanOrEqual(0.8)
    expect(o.messages.d).toBeLessThanOrEqual(2.3)
  }, P)

  it('Will Delay Interval: no will when the client resumes its session within the delay [MQTT-3.1.3-9]', async () => {
    const o = scenario(await paho, 'will_delay')
    expect(Object.keys(o.messages)).not.toContain('b')
    // c) the client came back with Clean Start 1 within the delay. [MQTT-3.1.2-8] exempts "a new
    // Network Connection for the ClientID" (no will), section 3.1.3.2.2 says the will goes when "the
    // Session ends" (the new connection ended it): both readings are accepted, nothing else.
    if ('c' in o.messages) expect(o.messages.c).toBeLessThanOrEqual(3.3)
  }, P)

  it('offline queueing with Session Expiry: QoS 1 and 2 messages kept for the session, QoS 0 may be [MQTT-3.1.2-23] [MQTT-3.2.2-3] [MQTT-4.5.0-1]', async () => {
    const o = scenario(await paho, 'offline_queueing')
    expect(o.sessionPresent).toBe(true)
    const got = o.messages as Array<[string, number]>
    expect(got.filter((m) => m[1] > 0)).toEqual([['qos 1', 1], ['qos 2', 2]])
    expect([2, 3]).toContain(got.length)
  }, P)

  it('overlapping subscriptions (paho case): one copy at the maximum QoS with both subscription ids, or a copy per subscription with its own id [MQTT-3.3.4-2] [MQTT-3.3.4-3] [MQTT-3.3.4-4] [MQTT-3.3.4-5]', async () => {
    const o = scenario(await paho, 'overlapping')
    expect(o.two.granted).toEqual([[2], [1]])
    const copies = o.two.copies.map((c: any) => ({ qos: c.qos, sids: [...(c.sids ?? [])].sort() }))
    if (copies.length === 1) expect(copies[0]).toEqual({ qos: 2, sids: [1, 2] })
    else expect(copies.sort((a: any, b: any) => b.qos - a.qos)).toEqual([{ qos: 2, sids: [1] }, { qos: 1, sids: [2] }])
  }, P)

  it('overlapping subscriptions with an exact filter at QoS 0 too: still the maximum QoS (2) and every subscription id [MQTT-3.3.4-2] [MQTT-3.3.4-4] [MQTT-3.3.4-5]', async () => {
    const o = scenario(await paho, 'overlapping')
    expect(o.three.granted).toEqual([[2], [1], [0]])
    const copies = o.three.copies.map((c: any) => ({ qos: c.qos, sids: [...(c.sids ?? [])].sort() }))
    if (copies.length === 1) expect(copies[0], JSON.stringify(o.three.copies)).toEqual({ qos: 2, sids: [1, 2] })
    else expect(copies.sort((a: any, b: any) => b.qos - a.qos), JSON.stringify(o.three.copies)).toEqual([{ qos: 2, sids: [1] }, { qos: 1, sids: [2] }, { qos: 0, sids: [] }])
  }, P)

  it('subscription identifiers: sent back with matching messages, none for a subscription without one, replaced with the subscription [MQTT-3.3.4-3] [MQTT-3.8.4-3]', async () => {
    const o = scenario(await paho, 'subscription_ids')
    expect(o.sids).toEqual({ a: [7], b: null, c: [268_435_455], a2: [8] })
  }, P)

  it('No Local: a client does not receive its own publications on a No Local subscription [MQTT-3.8.3-3]', async () => {
    const o = scenario(await paho, 'no_local')
    expect(o.a).toEqual(['from b'])
    expect(o.b).toEqual(['from a', 'from a qos0', 'from b'])
  }, P)

  it('request/response: Response Topic and binary Correlation Data reach the responder and back unaltered [MQTT-3.3.2-15] [MQTT-3.3.2-16]', async () => {
    const o = scenario(await paho, 'request_response')
    expect(o.requestSeen).toEqual([{ responseTopic: expect.stringMatching(/\/response$/), correlationData: o.sentCorrelationHex }])
    expect(o.responses).toEqual([{ topic: expect.stringMatching(/\/response$/), payload: 'response to ping', correlationHex: o.sentCorrelationHex }])
  }, P)

  it('user properties: all forwarded unaltered, repeated names and order kept, at QoS 0, 1 and 2 [MQTT-3.3.2-17] [MQTT-3.3.2-18]', async () => {
    const o = scenario(await paho, 'user_properties')
    expect(o.received.q0, 'QoS 0').toEqual(o.sent)
    expect(o.received.q1, 'QoS 1').toEqual(o.sent)
    expect(o.received.q2, 'QoS 2').toEqual(o.sent)
    expect(o.v311Payloads, 'an MQTT 3.1.1 subscriber gets the same messages').toEqual(['q0', 'q1', 'q2'])
  }, P)

  it('Payload Format Indicator and Content Type are forwarded unaltered [MQTT-3.3.2-4] [MQTT-3.3.2-20]', async () => {
    const o = scenario(await paho, 'payload_format')
    expect(o.received.utf8).toEqual({ pfi: 1, contentType: 'text/plain; charset=utf-8', payload: 'h\u00e9llo' })
    expect(o.received.q0).toEqual({ pfi: 1, contentType: 'application/json', payload: '{}' })
    expect(o.received.bytes.contentType).toBe('application/octet-stream')
    expect([0, null]).toContain(o.received.bytes.pfi) // 0 and absent mean the same
    expect(o.received.none).toEqual({ pfi: null, contentType: null, payload: 'plain' })
  }, P)

  it('Message Expiry: an expired message is not delivered from a session queue nor as retained; others carry the remaining interval [MQTT-3.3.2-5] [MQTT-3.3.2-6]', async () => {
    const o = scenario(await paho, 'message_expiry')
    // published with 1 s and 60 s (and no interval); delivered about 2.3 s later
    expect(Object.keys(o.queued).sort()).toEqual(['expires in 60 s', 'never expires'])
    expect(o.queued['never expires']).toBeNull()
    // at most 58 (2.3 s have passed); the lower bounds leave room for a slow machine
    expect(o.queued['expires in 60 s']).toBeGreaterThanOrEqual(50)
    expect(o.queued['expires in 60 s']).toBeLessThanOrEqual(58)
    expect(Object.keys(o.retained)).toEqual(['retained 60 s'])
    expect(o.retained['retained 60 s']).toBeGreaterThanOrEqual(50)
    expect(o.retained['retained 60 s']).toBeLessThanOrEqual(58)
    expect(o.live).toHaveLength(1)
    expect(o.live[0]).toBeGreaterThanOrEqual(25)
    expect(o.live[0]).toBeLessThanOrEqual(30)
  }, P)

  it('shared subscriptions: each message to exactly one member of a group; other groups and plain subscriptions get every message (section 4.8.2)', async () => {
    const o = scenario(await paho, 'shared')
    const all = Array.from({ length: o.n }, (_, i) => i)
    expect(o.granted).toEqual([[1], [1], [1], [1], [1]])
    const [m1, m2, m3] = o.members as number[][]
    // m1 and m2 share "$share/G/sh/#": together every message once
    expect([...m1!, ...m2!].sort((a, b) => a - b)).toEqual(all)
    // m3 is alone in "$share/G/sh/+": another shared subscription (same group name, other filter)
    expect(m3).toEqual(all)
    expect(o.otherGroup).toEqual(all)
    expect(o.plain).toEqual(all)
    expect(o.topics).toHaveLength(1) // topic names sent as published, without the $share prefix
  }, P)

  it('zero-length client id: accepted (also with Clean Start 0), each gets a distinct Assigned Client Identifier; none when an id was given [MQTT-3.1.3-6] [MQTT-3.1.3-7] [MQTT-3.2.2-16]', async () => {
    const o = scenario(await paho, 'assigned_clientid')
    expect(o.rc).toEqual([0, 0, 0])
    expect(o.assigned[0]).toEqual(expect.any(String))
    expect(o.assigned[1]).toEqual(expect.any(String))
    expect(o.assigned[0].length).toBeGreaterThan(0)
    expect(o.assigned[0]).not.toBe(o.assigned[1])
    expect(o.namedAssigned).toBeNull()
    expect(o.received).toEqual([1, 1])
  }, P)

  it('$-topics: not matched by filters starting with a wildcard [MQTT-4.7.2-1]', async () => {
    const o = scenario(await paho, 'dollar_topics')
    expect(o.controlSeen).toBeGreaterThanOrEqual(1)
    expect(o.sysMessagesMeanwhile, '$SYS topics were published meanwhile (there were $-topics to ignore)').toBeGreaterThan(0)
    expect(o.dollarTopicsOnWildcards).toEqual([])
  }, P)

  it('unsubscribe: UNSUBACK 0x00 for a removed subscription, 0x11 (or 0x00) for none; messages stop [MQTT-3.10.4-1] [MQTT-3.10.4-5] [MQTT-3.11.3-2]', async () => {
    const o = scenario(await paho, 'unsubscribe')
    expect(o.unsubacks[0]).toEqual([0])
    expect([[0x11], [0]]).toContainEqual(o.unsubacks[1])
    expect(o.payloads).toEqual(['topic b', 'topic c'])
  }, P)

  it('topic wildcards: the Paho matrix of filters and topics [MQTT-4.7.1-1] [MQTT-4.7.1-2]', async () => {
    const o = scenario(await paho, 'wildcard_matrix')
    expect(o.received).toEqual(PAHO_MATRIX_RECEIVED)
  }, P)

  it('QoS of a delivery is the minimum of the published QoS and the granted QoS [MQTT-3.8.4-8]', async () => {
    const o = scenario(await paho, 'qos_downgrade')
    const expected: Record<string, number> = {}
    for (const g of [0, 1, 2]) for (const q of [0, 1, 2]) expected[`${g}-${q}`] = Math.min(g, q)
    expect(o.qosByPayload).toEqual(expected)
  }, P)

  it('ordered topics: messages of one client on one topic and QoS arrive in the order published [MQTT-4.6.0-5] [MQTT-4.6.0-6]', async () => {
    const o = scenario(await paho, 'ordering')
    const seq = Array.from({ length: 40 }, (_, i) => i)
    expect([o.q0, o.q1, o.q2]).toEqual([seq, seq, seq])
  }, P)

  it('every packet the server sent could be decoded by paho (a will PUBLISH carries PUBLISH properties only, section 2.2.2.2)', async () => {
    const r = await paho
    const o = scenario(r, 'will_delay')
    expect(o.v5Watcher.map((m: any) => m.payload).sort(), 'the MQTT 5 paho watcher got the delayed wills').toEqual(['delayed', 'session expired'])
    expect(r.threadErrors).toEqual([])
  }, P)
})

describe('MQTT 5.0: CONNECT, CONNACK and sessions (raw client)', () => {
  it('CONNACK announces the configured Receive Maximum and Maximum Packet Size, and a Topic Alias Maximum', async () => {
    const { connack } = await v5(uniq('connack'), {}, lim.mqttPort)
    expect(connack.props?.receiveMaximum).toBe(LIMIT_RECEIVE_MAXIMUM)
    expect(connack.props?.maximumPacketSize).toBe(LIMIT_PACKET_SIZE)
    expect(connack.props?.topicAliasMaximum).toBeGreaterThan(0)
    expect(connack.sessionPresent).toBe(false)
  })

  it('Session Expiry: absent (0) ends the session with the connection; >0 keeps it, with its queued messages [MQTT-3.1.2-23] [MQTT-3.2.2-3] [MQTT-4.1.0-2]', async () => {
    const none = uniq('se-none')
    const kept = uniq('se-kept')
    const topic = `se/${kept}`
    await (await connected(none, { clean: false })).close()
    const a = await connected(kept, { clean: false, props: { sessionExpiryInterval: 30 } })
    await a.sub(1, [{ filter: topic, qos: 1 }])
    a.drop()
    await sleep(100)
    const pub = await connected(uniq('se-pub'))
    await pub1(pub, topic, 'while away', 1)
    const r1 = await v5(none, { clean: false })
    expect(r1.connack.sessionPresent, 'no Session Expiry Interval: no session kept').toBe(false)
    const r2 = await v5(kept, { clean: false, props: { sessionExpiryInterval: 30 } })
    expect(r2.connack.sessionPresent).toBe(true)
    expect((await r2.c.waitPublishes(1)).map(pl)).toEqual(['while away'])
    r2.c.send(ack(T.PUBACK, r2.c.publishes()[0]!.id!, 5))
    await r2.c.close(0, { sessionExpiryInterval: 0 })
  })

  it('Session Present is 1 for a kept session that has no subscriptions [MQTT-3.2.2-3]', async () => {
    const id = uniq('se-empty')
    await (await connected(id, { props: { sessionExpiryInterval: 30 } })).close()
    await sleep(50)
    const r = await v5(id, { clean: false, props: { sessionExpiryInterval: 30 } })
    expect(r.connack.sessionPresent).toBe(true)
    await r.c.close(0, { sessionExpiryInterval: 0 })
  })

  it('Session Expiry 1 s: the session and its messages are gone 2 s after the connection closed [MQTT-4.1.0-2]', async () => {
    const id = uniq('se-short')
    const topic = `se/${id}`
    const a = await connected(id, { props: { sessionExpiryInterval: 1 } })
    await a.sub(1, [{ filter: topic, qos: 1 }])
    await a.close()
    const pub = await connected(uniq('se-short-pub'))
    await pub1(pub, topic, 'too late', 1)
    await sleep(2200)
    const r = await v5(id, { clean: false, props: { sessionExpiryInterval: 1 } })
    expect(r.connack.sessionPresent).toBe(false)
    await sleep(200)
    await r.c.sync()
    expect(r.c.publishes()).toEqual([])
  })

  it('DISCONNECT with Session Expiry Interval 0 ends a session that was to be kept (section 3.14.2.2.2)', async () => {
    const id = uniq('se-disc')
    const a = await connected(id, { props: { sessionExpiryInterval: 60 } })
    await a.sub(1, [{ filter: `se/${id}`, qos: 1 }])
    await a.close(0, { sessionExpiryInterval: 0 })
    await sleep(100)
    const r = await v5(id, { clean: false, props: { sessionExpiryInterval: 60 } })
    expect(r.connack.sessionPresent).toBe(false)
    await r.c.close(0, { sessionExpiryInterval: 0 })
  })

  it('Clean Start 1 discards the existing session: Session Present 0, old subscriptions gone [MQTT-3.1.2-4] [MQTT-3.2.2-2]', async () => {
    const id = uniq('cs')
    const topic = `cs/${id}`
    const a = await connected(id, { props: { sessionExpiryInterval: 60 } })
    await a.sub(1, [{ filter: topic, qos: 1 }])
    await a.close()
    const r = await v5(id, { clean: true, props: { sessionExpiryInterval: 60 } })
    expect(r.connack.sessionPresent).toBe(false)
    const pub = await connected(uniq('cs-pub'))
    await pub1(pub, topic, 'x', 1)
    await sleep(200)
    await r.c.sync()
    expect(r.c.publishes()).toEqual([])
    await r.c.close(0, { sessionExpiryInterval: 0 })
  })

  it('a CONNECT with the client id of a connected client: the existing one gets DISCONNECT 0x8E (if any) and is closed [MQTT-3.1.4-3]', async () => {
    const id = uniq('takeover5')
    const first = await connected(id)
    await connected(id)
    await expectClosedForError(first, [0x8e])
  })

  it('keepalive: a silent client is closed within 1.5 x Keep Alive (after DISCONNECT 0x8D if any); PINGREQ gets PINGRESP [MQTT-3.1.2-22] [MQTT-3.12.4-1]', async () => {
    const { c: silent, connack } = await v5(uniq('ka5'), { keepalive: 1 })
    const keepalive = (connack.props?.serverKeepAlive as number | undefined) ?? 1 // [MQTT-3.2.2-21] [MQTT-3.2.2-22]
    const pinger = await connected(uniq('ka5-pinger'), { keepalive: 1 })
    const t0 = Date.now()
    while (Date.now() - t0 < 1.5 * keepalive * 1000 + 1200) { await pinger.sync(1000); await sleep(500) }
    expect(pinger.closed).toBe(false)
    await expectClosedForError(silent, [0x8d], 500)
    expect(silent.closedAt - t0).toBeGreaterThanOrEqual(keepalive * 1000)
    // 1.5 x Keep Alive, with grace for timers on a loaded CI machine
    expect(silent.closedAt - t0).toBeLessThanOrEqual(1.5 * keepalive * 1000 + 1100)
  })

  it('an Authentication Method the server does not support: the connection is refused and closed, CONNACK 0x8C or 0x87 if any [MQTT-4.12.0-1]', async () => {
    const c = await rawOpen(srv.mqttPort, 5)
    c.send(connect({ clientId: uniq('auth'), version: 5, props: { authenticationMethod: 'SCRAM-SHA-1', authenticationData: Buffer.from('client-first') } }))
    expect(await c.waitClosed(2000), `received: ${c.describe()}`).toBe(true)
    const codes = c.all(T.CONNACK).map((p) => p.reason)
    expect([[], [0x8c], [0x87]], `received: ${c.describe()}`).toContainEqual(codes)
  })

  it('Request Response Information 0: no Response Information in CONNACK [MQTT-3.1.2-28]', async () => {
    const { connack } = await v5(uniq('rri'), { props: { requestResponseInformation: 0 } })
    expect(connack.props?.responseInformation).toBeUndefined()
  })

  it('Request Problem Information 0: no Reason String nor User Property on SUBACK, UNSUBACK, PUBACK, PUBREC, PUBCOMP [MQTT-3.1.2-29]', async () => {
    const c = await connected(uniq('rpi'), { props: { requestProblemInformation: 0 } })
    await c.sub(1, [{ filter: 'rpi/a', qos: 1 }])
    c.send(unsubscribe(2, ['rpi/never'], 5))
    await c.next(T.UNSUBACK)
    c.send(publish({ topic: `rpi/none/${uniq('t')}`, payload: 'x', qos: 1, id: 3, version: 5 }))
    await c.next(T.PUBACK)
    c.send(publish({ topic: `rpi/none/${uniq('t')}`, payload: 'x', qos: 2, id: 4, version: 5 }))
    await c.next(T.PUBREC)
    c.send(ack(T.PUBREL, 4, 5))
    await c.next(T.PUBCOMP)
    const acks: number[] = [T.SUBACK, T.UNSUBACK, T.PUBACK, T.PUBREC, T.PUBCOMP]
    const offending = c.packets.filter((p) => acks.includes(p.type) && (p.props?.reasonString !== undefined || p.props?.userProperty !== undefined))
    expect(offending.map((p) => `${p.name} ${JSON.stringify(p.props)}`)).toEqual([])
  })
})

describe('MQTT 5.0: flow control and limits (raw client)', () => {
  it('client Receive Maximum (QoS 1): no more unacknowledged PUBLISH than allowed; other packets still flow [MQTT-3.3.4-9] [MQTT-3.3.4-10]', async () => {
    const topic = `fc1/${uniq('t')}`
    const c = await connected(uniq('fc1'), { props: { receiveMaximum: 3 } })
    await c.sub(1, [{ filter: topic, qos: 1 }])
    const pub = await connected(uniq('fc1-pub'))
    for (let i = 0; i < 10; i++) pub.send(publish({ topic, payload: String(i), qos: 1, id: i + 1, version: 5 }))
    for (let i = 0; i < 10; i++) await pub.next(T.PUBACK)
    await c.waitPublishes(3)
    await sleep(300)
    await c.sync() // PINGREQ answered while the quota is used up [MQTT-3.3.4-10]
    expect(c.publishes().map(pl)).toEqual(['0', '1', '2'])
    c.send(ack(T.PUBACK, c.publishes()[0]!.id!, 5))
    await c.waitPublishes(4)
    await sleep(300)
    expect(c.publishes().map(pl)).toEqual(['0', '1', '2', '3'])
    c.autoAck = true
    for (const p of c.publishes().slice(1)) c.send(ack(T.PUBACK, p.id!, 5))
    await c.waitPublishes(10)
    expect(c.publishes().map(pl)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
  })

  it('client Receive Maximum (QoS 2): the quota is released by PUBCOMP, not by PUBREC [MQTT-3.3.4-9]', async () => {
    const topic = `fc2/${uniq('t')}`
    const c = await connected(uniq('fc2'), { props: { receiveMaximum: 2 } })
    await c.sub(1, [{ filter: topic, qos: 2 }])
    const pub = await connected(uniq('fc2-pub'))
    pub.autoAck = true
    for (let i = 0; i < 4; i++) pub.send(publish({ topic, payload: String(i), qos: 2, id: i + 1, version: 5 }))
    for (let i = 0; i < 4; i++) { const rec = await pub.next(T.PUBREC); pub.send(ack(T.PUBREL, rec.id!, 5)) }
    const first = await c.waitPublishes(2)
    for (const p of first) c.send(ack(T.PUBREC, p.id!, 5))
    await c.next(T.PUBREL); await c.next(T.PUBREL)
    await sleep(300)
    await c.sync()
    expect(c.publishes().map(pl), 'PUBREC does not release the quota').toEqual(['0', '1'])
    c.send(ack(T.PUBCOMP, first[0]!.id!, 5))
    await c.waitPublishes(3)
    await sleep(200)
    expect(c.publishes().map(pl)).toEqual(['0', '1', '2'])
    c.autoAck = true
    c.send(ack(T.PUBCOMP, first[1]!.id!, 5), ack(T.PUBREC, c.publishes()[2]!.id!, 5))
    await c.waitPublishes(4)
    expect(c.publishes().map(pl)).toEqual(['0', '1', '2', '3'])
  })

  it(`server Receive Maximum (${LIMIT_RECEIVE_MAXIMUM}): honoured flows go through; one PUBLISH more is DISCONNECT 0x93 (section 3.2.2.3.3, [MQTT-4.13.1-1])`, async () => {
    const c = await connected(uniq('rm'), {}, lim.mqttPort)
    const topic = `rm/${uniq('t')}`
    for (let i = 1; i <= LIMIT_RECEIVE_MAXIMUM; i++) c.send(publish({ topic, payload: 'x', qos: 2, id: i, version: 5 }))
    for (let i = 1; i <= LIMIT_RECEIVE_MAXIMUM; i++) await c.next(T.PUBREC)
    await c.sync()
    expect(c.closed).toBe(false)
    for (let i = 1; i <= LIMIT_RECEIVE_MAXIMUM; i++) c.send(ack(T.PUBREL, i, 5))
    for (let i = 1; i <= LIMIT_RECEIVE_MAXIMUM; i++) await c.next(T.PUBCOMP)
    // now hold back the PUBRELs: Receive Maximum + 1 unacknowledged QoS 2 PUBLISH packets
    for (let i = 1; i <= LIMIT_RECEIVE_MAXIMUM + 1; i++) c.send(publish({ topic, payload: 'y', qos: 2, id: 100 + i, version: 5 }))
    expect(await expectClosedForError(c, [0x93])).toBe(0x93)
  })

  it(`server Maximum Packet Size (${LIMIT_PACKET_SIZE} bytes): a packet of exactly that size is accepted, one byte more is DISCONNECT 0x95 [MQTT-3.2.2-15] (section 3.2.2.3.6)`, async () => {
    const c = await connected(uniq('mps'), {}, lim.mqttPort)
    const topic = `mps/${uniq('t')}`
    const sized = (total: number, id: number): Buffer => {
      const empty = publish({ topic, payload: '', qos: 1, id, version: 5 })
      let n = total - empty.length
      // the Remaining Length grows by one byte past 127 and past 16383
      let p = publish({ topic, payload: Buffer.alloc(n, 0x61), qos: 1, id, version: 5 })
      while (p.length > total) p = publish({ topic, payload: Buffer.alloc(--n, 0x61), qos: 1, id, version: 5 })
      expect(p.length).toBe(total)
      return p
    }
    c.send(sized(LIMIT_PACKET_SIZE, 1))
    expect((await c.next(T.PUBACK)).id).toBe(1)
    c.send(sized(LIMIT_PACKET_SIZE + 1, 2))
    expect(await expectClosedForError(c, [0x95])).toBe(0x95)
  })

  it('client Maximum Packet Size: a PUBLISH too large for the client is not sent, the flow goes on [MQTT-3.1.2-24] [MQTT-3.1.2-25]', async () => {
    const topic = `cmps/${uniq('t')}`
    const c = await connected(uniq('cmps'), { props: { maximumPacketSize: 128 } })
    c.autoAck = true
    await c.sub(1, [{ filter: topic, qos: 1 }])
    const pub = await connected(uniq('cmps-pub'))
    await pub1(pub, topic, 'small-1', 1)
    await pub1(pub, topic, 'x'.repeat(300), 2)
    await pub1(pub, topic, 'small-2', 3, undefined)
    pub.send(publish({ topic, payload: 'y'.repeat(300), qos: 0, version: 5 }), publish({ topic, payload: 'small-3', qos: 0, version: 5 }))
    await c.waitPublishes(3)
    await sleep(300)
    await c.sync()
    expect(c.publishes().map(pl)).toEqual(['small-1', 'small-2', 'small-3'])
    expect(Math.max(...c.packets.map((p) => p.raw.length))).toBeLessThanOrEqual(128)
    expect(c.closed).toBe(false)
  })
})

describe('MQTT 5.0: topic aliases (raw client)', () => {
  it('client-to-server aliases: register with a topic, use with an empty topic, re-map, up to Topic Alias Maximum; none sent to a client that allows none [MQTT-3.3.2-12] [MQTT-3.1.2-27]', async () => {
    const id = uniq('ta')
    const base = `ta/${id}`
    const sub = await connected(uniq('ta-sub'))
    await sub.sub(1, [{ filter: `${base}/#`, qos: 1 }])
    sub.autoAck = true
    const { c, connack } = await v5(id)
    const max = connack.props?.topicAliasMaximum as number
    expect(max).toBeGreaterThan(0)
    await pub1(c, `${base}/x`, 'one', 1, { topicAlias: 1 })
    await pub1(c, '', 'two', 2, { topicAlias: 1 })
    await pub1(c, `${base}/y`, 'three', 3, { topicAlias: 1 })
    c.send(publish({ topic: '', payload: 'four', version: 5, props: { topicAlias: 1 } }))
    await pub1(c, `${base}/z`, 'five', 4, { topicAlias: max })
    await pub1(c, '', 'six', 5, { topicAlias: max })
    const got = await sub.waitPublishes(6)
    expect(got.map((p) => [p.topic, pl(p)])).toEqual([[`${base}/x`, 'one'], [`${base}/x`, 'two'], [`${base}/y`, 'three'], [`${base}/y`, 'four'], [`${base}/z`, 'five'], [`${base}/z`, 'six']])
    expect(got.filter((p) => p.props?.topicAlias !== undefined)).toEqual([])
    expect(c.closed).toBe(false)
  })

  it('Topic Alias 0 is DISCONNECT 0x94 [MQTT-3.3.2-8] (section 3.3.2.3.4)', async () => {
    const c = await connected(uniq('ta0'))
    c.send(publish({ topic: 'ta0/x', payload: 'x', version: 5, props: { topicAlias: 0 } }))
    expect(await expectClosedForError(c, [0x94])).toBe(0x94)
  })

  it('Topic Alias above the Topic Alias Maximum is DISCONNECT 0x94 [MQTT-3.3.2-9] [MQTT-3.2.2-17] (section 3.3.2.3.4)', async () => {
    const { c, connack } = await v5(uniq('tamax'))
    c.send(publish({ topic: 'tamax/x', payload: 'x', version: 5, props: { topicAlias: (connack.props?.topicAliasMaximum as number) + 1 } }))
    expect(await expectClosedForError(c, [0x94])).toBe(0x94)
  })

  it('an empty topic with a Topic Alias never mapped is a Protocol Error: closed, DISCONNECT 0x82 (section 3.3.4; 0x94 also accepted) if any', async () => {
    const c = await connected(uniq('taunk'))
    c.send(publish({ topic: '', payload: 'x', version: 5, props: { topicAlias: 5 } }))
    await expectClosedForError(c, [0x82, 0x94])
  })

  it('aliases are not carried over to a new connection of the same client [MQTT-3.3.2-7]', async () => {
    const id = uniq('tanew')
    const a = await connected(id)
    await pub1(a, `tanew/${id}`, 'one', 1, { topicAlias: 2 })
    await a.close()
    const b = await connected(id)
    b.send(publish({ topic: '', payload: 'two', qos: 1, id: 2, version: 5, props: { topicAlias: 2 } }))
    await expectClosedForError(b, [0x82, 0x94])
  })

  it('an empty topic without a Topic Alias is a Protocol Error: DISCONNECT 0x82 and closed (section 3.3.4)', async () => {
    const c = await connected(uniq('tanone'))
    c.send(publish({ topic: '', payload: 'x', version: 5 }))
    await expectClosedForError(c, [0x82])
  })
})

describe('MQTT 5.0: delivery protocol (raw client)', () => {
  it('unacknowledged QoS 1/2 PUBLISH and PUBREL are re-sent on reconnect to the session, same ids, in order [MQTT-4.4.0-1] [MQTT-4.6.0-1]', async () => {
    const id = uniq('redeliver5')
    const topic = `redeliver5/${id}`
    const props = { sessionExpiryInterval: 60 }
    const a = await connected(id, { props })
    await a.sub(1, [{ filter: topic, qos: 2 }])
    const pub = await connected(uniq('redeliver5-pub'))
    pub.autoAck = true
    await pub1(pub, topic, 'q1', 1)
    pub.send(publish({ topic, payload: 'q2-a', qos: 2, id: 2, version: 5 }), publish({ topic, payload: 'q2-b', qos: 2, id: 3, version: 5 }))
    for (const i of [2, 3]) { await pub.next(T.PUBREC); pub.send(ack(T.PUBREL, i, 5)) }
    const first = await a.waitPublishes(3)
    expect(first.map((p) => [pl(p), p.qos, p.dup])).toEqual([['q1', 1, false], ['q2-a', 2, false], ['q2-b', 2, false]])
    a.send(ack(T.PUBREC, first[2]!.id!, 5))
    expect((await a.next(T.PUBREL)).id).toBe(first[2]!.id)
    await sleep(100)
    a.drop()
    await sleep(200)
    const { c: b, connack } = await v5(id, { clean: false, props })
    expect(connack.sessionPresent).toBe(true)
    await sleep(400)
    await b.sync()
    expect(b.publishes().map((p) => [pl(p), p.id]), `received: ${b.describe()}`).toEqual(first.slice(0, 2).map((p) => [pl(p), p.id]))
    expect(b.all(T.PUBREL).map((p) => p.id)).toEqual([first[2]!.id])
    expect(b.publishes().map((p) => p.dup), 'DUP flag of re-sent PUBLISH packets [MQTT-3.3.1-1]').toEqual([true, true])
    b.autoAck = true
    for (const p of b.publishes()) b.send(ack(p.qos === 1 ? T.PUBACK : T.PUBREC, p.id!, 5))
    b.send(ack(T.PUBCOMP, first[2]!.id!, 5))
    await b.sync()
    await b.close(0, { sessionExpiryInterval: 0 })
  })

  it('QoS 2: a re-sent PUBLISH before PUBREL gets PUBREC again and is not delivered twice; after PUBCOMP the id is new [MQTT-4.3.3-10] [MQTT-4.3.3-12]', async () => {
    const topic = `eo5/${uniq('t')}`
    const sub = await connected(uniq('eo5-sub'))
    sub.autoAck = true
    await sub.sub(1, [{ filter: topic, qos: 2 }])
    const c = await connected(uniq('eo5'))
    c.send(publish({ topic, payload: 'once', qos: 2, id: 9, version: 5 }))
    expect((await c.next(T.PUBREC)).id).toBe(9)
    c.send(publish({ topic, payload: 'once', qos: 2, id: 9, dup: true, version: 5 }))
    expect((await c.next(T.PUBREC)).id).toBe(9)
    c.send(ack(T.PUBREL, 9, 5))
    expect((await c.next(T.PUBCOMP)).id).toBe(9)
    c.send(publish({ topic, payload: 'new', qos: 2, id: 9, version: 5 }))
    await c.next(T.PUBREC)
    c.send(ack(T.PUBREL, 9, 5))
    await c.next(T.PUBCOMP)
    await sub.waitPublishes(2)
    await sleep(300)
    await sub.sync()
    expect(sub.publishes().map(pl)).toEqual(['once', 'new'])
  })

  it('a will PUBLISH carries PUBLISH properties only (no Will Delay Interval), user properties in order (section 2.2.2.2, [MQTT-3.1.3-10])', async () => {
    const id = uniq('willprops')
    const topic = `willprops/${id}`
    const sub = await connected(uniq('willprops-sub'))
    await sub.sub(1, [{ filter: topic, qos: 0 }])
    const dying = await connected(id, { props: { sessionExpiryInterval: 5 }, will: { topic, payload: 'bye', props: { willDelayInterval: 1, userProperty: [['z', '1'], ['a', '2'], ['z', '3']], contentType: 'text/plain' } } })
    dying.drop()
    const [w] = await sub.waitPublishes(1, 4000)
    expect(pl(w!)).toBe('bye')
    expect(w!.props?.contentType).toBe('text/plain')
    expect.soft(w!.props?.willDelayInterval, 'Will Delay Interval (0x18) is not a PUBLISH property').toBeUndefined()
    expect.soft(w!.props?.userProperty, 'user properties in order [MQTT-3.1.3-10]').toEqual([['z', '1'], ['a', '2'], ['z', '3']])
  })

  it('DISCONNECT with a Session Expiry Interval after CONNECT without one is a Protocol Error: not a valid DISCONNECT, so the will is published (section 3.14.2.2.2)', async () => {
    const id = uniq('badsei')
    const topic = `badsei/${id}`
    const sub = await connected(uniq('badsei-sub'))
    await sub.sub(1, [{ filter: topic, qos: 0 }])
    const c = await connected(id, { will: { topic, payload: 'will of an invalid DISCONNECT' } })
    c.send(disconnect(5, 0, { sessionExpiryInterval: 30 }))
    await expectClosedForError(c, [0x82])
    await sleep(1000)
    await sub.sync()
    expect(sub.publishes().map(pl), 'the will [MQTT-3.1.2-8]').toEqual(['will of an invalid DISCONNECT'])
  })
})

describe('MQTT 5.0: subscribe failures (raw client)', () => {
  const invalid = ['a/#/b', 'a+', '#/a', 'a/b#', '', '$share/g', '$share//x', '$share/g+/x', '$share/g#/x']
  for (const filter of invalid) {
    it(`an invalid topic filter ${JSON.stringify(filter)}: SUBACK 0x8F (or 0x80), or DISCONNECT 0x8F/0x81/0x82 and close [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.8.2-1] [MQTT-4.8.2-2]`, async () => {
      const c = await connected(uniq('badfilter5'))
      c.send(subscribe(3, [{ filter, qos: 1 }], 5))
      let reasons: number[] | null = null
      try { reasons = (await c.next(T.SUBACK, 2500)).reasons ?? [] } catch { /* closed */ }
      if (reasons) expect([[0x8f], [0x80]], `SUBACK ${JSON.stringify(reasons)}`).toContainEqual(reasons)
      else await expectClosedForError(c, [0x8f, 0x81, 0x82])
    })
  }
})

describe('MQTT 5.0: protocol errors get DISCONNECT with a fitting reason code, then close (raw client)', () => {
  const cases: Array<[string, () => Buffer, number[]]> = [
    ['a second CONNECT [MQTT-3.1.0-2]', () => connect({ clientId: 'again', version: 5 }), [0x82]],
    ['PUBLISH with both QoS bits set [MQTT-3.3.1-4]', () => publish({ topic: 'e/qos3', payload: 'x', qos: 3, id: 1, version: 5 }), [0x81, 0x82]],
    ['PUBLISH to a topic name with wildcards [MQTT-3.3.2-2]', () => publish({ topic: 'e/+/x', payload: 'x', qos: 1, id: 1, version: 5 }), [0x90, 0x82, 0x81]],
    ['PUBLISH with a Response Topic containing a wildcard [MQTT-3.3.2-14]', () => publish({ topic: 'e/x', payload: 'x', version: 5, props: { responseTopic: 'reply/#' } }), [0x82, 0x81, 0x90]],
    ['PUBLISH carrying a Subscription Identifier [MQTT-3.3.4-6]', () => publish({ topic: 'e/x', payload: 'x', version: 5, props: { subscriptionIdentifier: 5 } }), [0x82, 0x81]],
    ['PUBLISH with the Payload Format Indicator twice (section 3.3.2.3.2)', () => publish({ topic: 'e/x', payload: 'x', version: 5, props: { payloadFormatIndicator: [0, 0] } }), [0x82, 0x81]],
    ['PUBLISH with a property not allowed in PUBLISH (Session Expiry Interval, section 2.2.2.2)', () => publish({ topic: 'e/x', payload: 'x', version: 5, props: { sessionExpiryInterval: 10 } }), [0x81, 0x82]],
    ['SUBSCRIBE with reserved header flags 0000 [MQTT-3.8.1-1]', () => subscribe(1, [{ filter: 'e/a', qos: 0 }], 5, undefined, 0x80), [0x81]],
    ['SUBSCRIBE with reserved subscription option bits set [MQTT-3.8.3-5]', () => subscribe(1, [{ filter: 'e/a', rawOptions: 0xc1 }], 5), [0x81]],
    ['SUBSCRIBE with Retain Handling 3 (section 3.8.3.1)', () => subscribe(1, [{ filter: 'e/a', rawOptions: 0x31 }], 5), [0x82, 0x81]],
    ['SUBSCRIBE with Maximum QoS 3 (section 3.8.3.1)', () => subscribe(1, [{ filter: 'e/a', rawOptions: 0x03 }], 5), [0x82, 0x81]],
    ['SUBSCRIBE with No Local on a shared subscription [MQTT-3.8.3-4]', () => subscribe(1, [{ filter: '$share/g/e/a', qos: 1, nl: true }], 5), [0x82]],
    ['SUBSCRIBE with Subscription Identifier 0 (section 3.8.2.1.2)', () => subscribe(1, [{ filter: 'e/a', qos: 0 }], 5, { subscriptionIdentifier: 0 }), [0x82, 0x81]],
    ['SUBSCRIBE without any filter [MQTT-3.8.3-2]', () => Buffer.from([0x82, 0x03, 0x00, 0x01, 0x00]), [0x82, 0x81]],
    ['UNSUBSCRIBE without any filter [MQTT-3.10.3-2]', () => Buffer.from([0xa2, 0x03, 0x00, 0x01, 0x00]), [0x82, 0x81]],
    ['UNSUBSCRIBE with reserved header flags 0000 [MQTT-3.10.1-1]', () => Buffer.concat([Buffer.from([0xa0]), varint(3 + 5), Buffer.from([0, 1, 0]), str('e/a')]), [0x81]],
    ['PUBREL with reserved header flags 0000 [MQTT-3.6.1-1]', () => Buffer.from([0x60, 0x02, 0x00, 0x01]), [0x81]],
    ['DISCONNECT with reserved header flags set [MQTT-3.14.1-1]', () => Buffer.from([0xe1, 0x00]), [0x81]],
    ['AUTH without an Authentication Method in CONNECT [MQTT-4.12.0-7] (section 4.12)', () => Buffer.concat([Buffer.from([0xf0]), varint(1 + 1), Buffer.from([0x18]), encodeProps()]), [0x82, 0x81]],
  ]
  for (const [name, packet, reasons] of cases) {
    it(`${name}: closed, DISCONNECT ${reasons.map(hex).join('/')} if any`, async () => {
      const c = await connected(uniq('err5'))
      c.send(packet())
      await expectClosedForError(c, reasons)
    })
  }

  it('control: valid packets on the same kind of connection do not close it', async () => {
    const c = await connected(uniq('control5'))
    c.autoAck = true
    await pub1(c, 'e/ok', 'x', 1, { payloadFormatIndicator: 1, responseTopic: 'reply/ok', userProperty: [['k', 'v']] })
    await c.sub(2, [{ filter: '$share/g/e/ok', qos: 1 }, { filter: 'e/+', qos: 2, nl: true, rap: true, rh: 1 }], { subscriptionIdentifier: 1 })
    c.send(unsubscribe(3, ['e/+'], 5))
    await c.next(T.UNSUBACK)
    await c.sync()
    expect(c.closed).toBe(false)
    expect(c.all(T.DISCONNECT)).toEqual([])
  })
})
