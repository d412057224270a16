/**
 * MQTT 3.1.1 conformance, in the spirit of the Eclipse Paho interoperability suite (client_test.py).
 *
 * Two kinds of check run against the built server:
 * - the Paho scenarios, played by python paho-mqtt 1.6.1 clients (py/interop311.py: every scenario in
 *   its own thread of one process, started in beforeAll so it runs while the raw checks below run);
 * - packet-level checks with a raw socket client (wire.ts), for what a well-behaved client library
 *   cannot do: withhold acknowledgements, stay silent, send malformed or forbidden packets.
 *
 * Statement ids are those of the OASIS MQTT Version 3.1.1 standard (29 October 2014).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { StartedEdgebus } from '../support/edgebus.ts'
import { expectClosedForError, hex, PAHO_MATRIX_RECEIVED, runPaho, scenario, startConformanceServer, type PahoRun } from './helpers.ts'
import { ack, connect, dropAll, publish, rawClient, rawOpen, sleep, str, subscribe, T, uniq, unsubscribe, varint, type Raw } from './wire.ts'

let srv: StartedEdgebus
let paho: Promise<PahoRun>

beforeAll(async () => {
  srv = await startConformanceServer()
  paho = runPaho('interop311.py', srv.mqttPort)
  paho.catch(() => {}) // reported by the tests that await it
}, 20_000)
afterAll(async () => {
  dropAll()
  await paho?.catch(() => {})
  await srv?.stop()
}, 40_000)
afterEach(() => dropAll())

const P = 30_000 // the paho tests wait for the whole python run (about 5 s, started in beforeAll)

/** The SUBACK reason codes, or 'closed' if the server closed the connection instead. */
async function subackOrClose(c: Raw): Promise<number[] | 'closed' | 'open'> {
  try {
    return (await c.next(T.SUBACK, 2500)).reasons ?? []
  } catch {
    return c.closed ? 'closed' : 'open'
  }
}

async function connected(clientId: string, opts: { clean?: boolean; keepalive?: number } = {}): Promise<Raw> {
  const { c, connack } = await rawClient(srv.mqttPort, { clientId, ...opts })
  expect(connack.reason, `CONNACK return code for ${clientId}`).toBe(0)
  return c
}

describe('MQTT 3.1.1: Paho interoperability scenarios (python paho-mqtt 1.6.1)', () => {
  it('basic: a QoS 2 subscription receives QoS 0, 1 and 2 publishes, each at its own QoS [MQTT-3.8.4-6]', async () => {
    const o = scenario(await paho, 'basic')
    expect(o.granted).toEqual([2])
    expect([...o.messages].sort()).toEqual([['qos 0', 0], ['qos 1', 1], ['qos 2', 2]])
  }, P)

  it('retained messages reach a new subscription with RETAIN=1 and their stored QoS [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8]', async () => {
    const o = scenario(await paho, 'retained')
    const first = [...o.first].sort((a, b) => a.topic.localeCompare(b.topic)).map((m: any) => [m.topic.split('/').slice(2).join('/'), m.payload, m.qos, m.retain])
    expect(first).toEqual([['a', 'qos 0', 0, true], ['b', 'qos 1', 1, true], ['c/d', 'qos 2', 2, true], ['e', 'keep', 1, true]])
  }, P)

  it('a retained publish matching an established subscription is forwarded with RETAIN=0 [MQTT-3.3.1-9]', async () => {
    const o = scenario(await paho, 'retained')
    expect(o.live.map((m: any) => [m.payload, m.retain])).toEqual([['live', false]])
  }, P)

  it('an empty retained payload is forwarded as normal and removes the retained message [MQTT-3.3.1-10] [MQTT-3.3.1-11]', async () => {
    const o = scenario(await paho, 'retained')
    expect(o.clearedLive.map((m: any) => [m.topic.split('/').slice(2).join('/'), m.payload, m.retain]).sort())
      .toEqual([['a', '', false], ['b', '', false], ['c/d', '', false]])
    expect(o.afterClear.map((m: any) => m.payload)).toEqual(['keep'])
  }, P)

  it('a publish with RETAIN=0 does not replace the retained message [MQTT-3.3.1-12]', async () => {
    const o = scenario(await paho, 'retained')
    expect(o.afterClear).toEqual([expect.objectContaining({ payload: 'keep', retain: true })])
  }, P)

  it('will: published when the connection drops without DISCONNECT, non-retained as asked [MQTT-3.1.2-8] [MQTT-3.1.2-16]', async () => {
    const o = scenario(await paho, 'will_abnormal')
    const gone = o.watcher.filter((m: any) => m.topic.endsWith('/gone'))
    expect(gone).toEqual([expect.objectContaining({ payload: 'died', qos: 1, retain: false })])
  }, P)

  it('will with Will Retain=1: published to current subscribers and kept as the retained message [MQTT-3.1.2-8] [MQTT-3.1.2-17]', async () => {
    // Two clients with wills (the first non-retained, the second retained) lose their connections
    // within a millisecond of each other; a subscriber to both will topics was there before.
    const o = scenario(await paho, 'will_abnormal')
    expect(o.late, 'a later subscriber gets the retained will').toEqual([{ topic: expect.stringMatching(/\/retained$/), payload: 'died retained', retain: true }])
    const live = o.watcher.filter((m: any) => m.topic.endsWith('/retained'))
    expect(live, 'the subscriber that was already there gets the retained will too').toEqual([expect.objectContaining({ payload: 'died retained', retain: false })])
  }, P)

  it('will: not published after a DISCONNECT [MQTT-3.14.4-3] [MQTT-3.1.2-10]', async () => {
    const o = scenario(await paho, 'will_normal')
    expect(o.watcher.map((m: any) => m[1])).toEqual(['hello'])
  }, P)

  it('keepalive: a silent client is cut off after 1.5 x Keep Alive and its will published (paho test_will_message) [MQTT-3.1.2-24] [MQTT-3.1.2-8]', async () => {
    const o = scenario(await paho, 'will_keepalive')
    expect(o.messages.map((m: any) => m[1])).toEqual(['timed out'])
    // Keep Alive 2 s: the server must cut the client off by 3 s (1 s of grace for timer granularity)
    // and must not before the client's own 2 s are up.
    expect(o.afterSeconds).toBeGreaterThanOrEqual(2)
    expect(o.afterSeconds).toBeLessThanOrEqual(4)
  }, P)

  it('offline queueing: QoS 1 and 2 messages are stored for a disconnected clean=0 session, QoS 0 may be [MQTT-3.1.2-5] [MQTT-3.2.2-2]', async () => {
    const o = scenario(await paho, 'offline_queueing')
    expect(o.sessionPresent).toBe(true)
    const got = o.messages as Array<[string, number]>
    expect(got.filter((m) => m[1] > 0)).toEqual([['qos 1', 1], ['qos 2', 2]])
    // paho accepts 2 or 3 messages: storing QoS 0 messages is allowed, not required
    expect([2, 3]).toContain(got.length)
    if (got.length === 3) expect(got).toContainEqual(['qos 0', 0])
  }, P)

  it('overlapping subscriptions (paho case: two wildcard filters): one copy at the maximum QoS, or one copy per subscription [MQTT-3.3.5-1]', async () => {
    const o = scenario(await paho, 'overlapping')
    expect(o.two.granted).toEqual([[2], [1]])
    expect([[2], [1, 2]]).toContainEqual(o.two.qos)
  }, P)

  it('overlapping subscriptions with an exact filter at QoS 0 as well: still delivered at the maximum QoS (2) [MQTT-3.3.5-1]', async () => {
    const o = scenario(await paho, 'overlapping')
    expect(o.three.granted).toEqual([[2], [1], [0]])
    // allowed: one copy at QoS 2, or one copy per subscription (QoS 0, 1 and 2)
    expect([[2], [0, 1, 2]], `copies received at QoS ${JSON.stringify(o.three.qos)}`).toContainEqual(o.three.qos)
  }, P)

  it('$-topics: not matched by filters starting with a wildcard ("#", "+/+", "+/...") [MQTT-4.7.2-1]', async () => {
    const o = scenario(await paho, 'dollar_topics')
    expect(o.controlSeen, 'the wildcard subscriber works (control message seen)').toBeGreaterThanOrEqual(1)
    expect(o.sysMessagesMeanwhile, '$SYS topics were published meanwhile (there were $-topics to ignore)').toBeGreaterThan(0)
    expect(o.dollarTopicsOnWildcards).toEqual([])
  }, P)

  it('unsubscribe: UNSUBACK also for a filter never subscribed; only the removed subscription stops [MQTT-3.10.4-1] [MQTT-3.10.4-5]', async () => {
    const o = scenario(await paho, 'unsubscribe')
    expect(o.unsubacks.map((u: unknown) => u !== null)).toEqual([true, true])
    expect(o.payloads).toEqual(['topic b', 'topic c'])
  }, P)

  it('topic wildcards: the Paho matrix of filters and topics [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3-1]', async () => {
    const o = scenario(await paho, 'wildcard_matrix')
    expect(o.received).toEqual(PAHO_MATRIX_RECEIVED)
  }, P)

  it('QoS of a delivery is the minimum of the published QoS and the granted QoS [MQTT-3.8.4-6]', async () => {
    const o = scenario(await paho, 'qos_downgrade')
    expect(o.granted).toEqual([[0], [1], [2]])
    const expected: Record<string, number> = {}
    for (const g of [0, 1, 2]) for (const q of [0, 1, 2]) expected[`${g}-${q}`] = Math.min(g, q)
    expect(o.qosByPayload).toEqual(expected)
  }, P)

  it('ordered topics: messages of one client on one topic and QoS arrive in the order published [MQTT-4.6.0-5] [MQTT-4.6.0-6]', async () => {
    const o = scenario(await paho, 'ordering')
    const seq = Array.from({ length: 40 }, (_, i) => i)
    expect(o.q1).toEqual(seq)
    expect(o.q2).toEqual(seq)
    expect(o.q0).toEqual(seq)
  }, P)

  it('zero-length client id with clean session: accepted, each client gets its own unique id [MQTT-3.1.3-6] [MQTT-3.2.2-1]', async () => {
    const o = scenario(await paho, 'zero_length_clientid')
    expect(o.rc).toEqual([0, 0])
    expect(o.sessionPresent).toEqual([false, false])
    // had the server given both the same id, the second would have taken the first one's session over
    expect(o.received).toEqual([1, 1])
    expect(o.disconnected).toEqual([0, 0])
  }, P)

  it('every packet the server sent could be decoded by paho (no paho network thread died)', async () => {
    const r = await paho
    expect(r.threadErrors).toEqual([])
  }, P)
})

describe('MQTT 3.1.1: CONNECT, CONNACK and sessions (raw client)', () => {
  it('Session Present: 0 with clean session, 0 for a new clean=0 session, 1 when resuming one [MQTT-3.2.2-1] [MQTT-3.2.2-2] [MQTT-3.2.2-3] [MQTT-3.1.2-4] [MQTT-3.1.2-6]', async () => {
    const id = uniq('sp')
    const seen: boolean[] = []
    for (const clean of [true, false, false, true, false]) {
      const { c, connack } = await rawClient(srv.mqttPort, { clientId: id, clean })
      expect(connack.reason).toBe(0)
      seen.push(connack.sessionPresent === true)
      if (!clean && seen.length === 2) await c.sub(1, [{ filter: `sp/${id}`, qos: 1 }])
      await c.close()
      await sleep(50)
    }
    // clean=1 discards the session, so the last clean=0 connection finds none
    expect(seen).toEqual([false, false, true, false, false])
  })

  it('Session Present is 1 when resuming a clean=0 session that has no subscriptions: the session exists even when its state is empty [MQTT-3.2.2-2] (section 3.1.2.4)', async () => {
    const id = uniq('sp-empty')
    const a = await connected(id, { clean: false })
    await a.close()
    await sleep(50)
    const { connack } = await rawClient(srv.mqttPort, { clientId: id, clean: false })
    expect(connack.reason).toBe(0)
    expect(connack.sessionPresent).toBe(true)
  })

  it('a clean=0 session keeps its subscriptions across connections, clean=1 discards them [MQTT-3.1.2-4] [MQTT-3.1.2-6]', async () => {
    const id = uniq('subs-kept')
    const topic = `kept/${id}`
    const a = await connected(id, { clean: false })
    expect((await a.sub(1, [{ filter: topic, qos: 1 }])).reasons).toEqual([1])
    await a.close()
    const b = await connected(id, { clean: false })
    const pub = await connected(uniq('kept-pub'))
    pub.send(publish({ topic, payload: 'one', qos: 1, id: 1 }))
    await pub.next(T.PUBACK)
    expect((await b.waitPublishes(1))[0]?.payload?.toString()).toBe('one')
    b.send(ack(T.PUBACK, b.publishes()[0]?.id ?? 0))
    await b.close()
    const c = await connected(id, { clean: true })
    pub.send(publish({ topic, payload: 'two', qos: 1, id: 2 }))
    await pub.next(T.PUBACK)
    await sleep(300)
    await c.sync()
    expect(c.publishes()).toEqual([])
  })

  it('a zero-length client id with clean=0 is refused with CONNACK 0x02, Session Present 0, then closed [MQTT-3.1.3-8] [MQTT-3.2.2-4] [MQTT-3.2.2-5]', async () => {
    const { c, connack } = await rawClient(srv.mqttPort, { clientId: '', clean: false })
    expect(connack.reason).toBe(0x02)
    expect(connack.sessionPresent).toBe(false)
    expect(await c.waitClosed(2000)).toBe(true)
  })

  it('an unsupported protocol level: the connection is closed, after CONNACK 0x01 (3.1.1) or 0x84 (5.0) if any [MQTT-3.1.2-2] (3.1.1 and 5.0)', async () => {
    // A level-7 client follows neither standard: 3.1.1 asks for CONNACK 0x01 then close, 5.0 allows
    // CONNACK 0x84 or no CONNACK at all before the close. All three are accepted here.
    const c = await rawOpen(srv.mqttPort)
    c.send(connect({ clientId: uniq('lvl'), level: 7 }))
    expect(await c.waitClosed(2000), `received: ${c.describe()}`).toBe(true)
    const codes = c.all(T.CONNACK).map((p) => p.reason)
    expect([[], [0x01], [0x84]], `received: ${c.describe()}`).toContainEqual(codes)
  })

  it('a CONNECT with the reserved flag set is refused: connection closed, no CONNACK [MQTT-3.1.2-3] [MQTT-3.1.4-1]', async () => {
    const c = await rawOpen(srv.mqttPort)
    c.send(connect({ clientId: uniq('rsv'), reservedFlag: true }))
    expect(await c.waitClosed(2000), `received: ${c.describe()}`).toBe(true)
    expect(c.all(T.CONNACK), `received: ${c.describe()}`).toEqual([])
  })

  it('a first packet other than CONNECT closes the connection [MQTT-3.1.0-1] [MQTT-4.8.0-1]', async () => {
    const c = await rawOpen(srv.mqttPort)
    c.send(subscribe(1, [{ filter: 'x/y', qos: 0 }]))
    expect(await c.waitClosed(2000), `received: ${c.describe()}`).toBe(true)
    expect(c.all(T.SUBACK)).toEqual([])
  })

  it('a second CONNECT on a connection is a protocol violation: the client is disconnected [MQTT-3.1.0-2]', async () => {
    const c = await connected(uniq('twice'))
    c.send(connect({ clientId: uniq('twice-again') }))
    await expectClosedForError(c)
  })

  it('a CONNECT with the client id of a connected client disconnects the existing client [MQTT-3.1.4-2]', async () => {
    const id = uniq('takeover')
    const first = await connected(id)
    const second = await connected(id)
    expect(await first.waitClosed(2000)).toBe(true)
    await second.sync()
    expect(second.closed).toBe(false)
  })

  it('keepalive: a silent client is disconnected within 1.5 x Keep Alive; a pinging one is not, and gets PINGRESP [MQTT-3.1.2-24] [MQTT-3.12.4-1]', async () => {
    const silent = await connected(uniq('ka-silent'), { keepalive: 1 })
    const pinger = await connected(uniq('ka-pinger'), { keepalive: 1 })
    const t0 = Date.now()
    let pongs = 0
    while (Date.now() - t0 < 2800) {
      await pinger.sync(1000)
      pongs++
      await sleep(600)
    }
    expect(pinger.closed).toBe(false)
    expect(pongs).toBeGreaterThanOrEqual(3)
    expect(await silent.waitClosed(500)).toBe(true)
    const after = silent.closedAt - t0
    // 1.5 s, with 1.1 s of grace for timers on a loaded CI machine; never before the client's own second
    expect(after).toBeGreaterThanOrEqual(1000)
    expect(after).toBeLessThanOrEqual(2600)
  })
})

describe('MQTT 3.1.1: delivery protocol (raw client)', () => {
  it('QoS 1: PUBACK carries the PUBLISH packet id; QoS 2: PUBREC and PUBCOMP carry it [MQTT-3.3.4-1] [MQTT-4.3.2-2] [MQTT-4.3.3-2]', async () => {
    const c = await connected(uniq('acks'))
    c.send(publish({ topic: `acks/${uniq('t')}`, payload: 'q1', qos: 1, id: 0x1234 }))
    expect((await c.next(T.PUBACK)).id).toBe(0x1234)
    c.send(publish({ topic: `acks/${uniq('t')}`, payload: 'q2', qos: 2, id: 0xbeef }))
    expect((await c.next(T.PUBREC)).id).toBe(0xbeef)
    c.send(ack(T.PUBREL, 0xbeef))
    expect((await c.next(T.PUBCOMP)).id).toBe(0xbeef)
  })

  it('QoS 2: a PUBLISH re-sent (DUP) before PUBREL is acknowledged again and not delivered twice; after PUBCOMP the id is new [MQTT-4.3.3-2]', async () => {
    const topic = `exactly-once/${uniq('t')}`
    const sub = await connected(uniq('eo-sub'))
    sub.autoAck = true
    await sub.sub(1, [{ filter: topic, qos: 2 }])
    const pub = await connected(uniq('eo-pub'))
    pub.send(publish({ topic, payload: 'once', qos: 2, id: 7 }))
    expect((await pub.next(T.PUBREC)).id).toBe(7)
    pub.send(publish({ topic, payload: 'once', qos: 2, id: 7, dup: true }))
    expect((await pub.next(T.PUBREC)).id).toBe(7)
    pub.send(ack(T.PUBREL, 7))
    expect((await pub.next(T.PUBCOMP)).id).toBe(7)
    pub.send(publish({ topic, payload: 'second message, same id', qos: 2, id: 7 }))
    expect((await pub.next(T.PUBREC)).id).toBe(7)
    pub.send(ack(T.PUBREL, 7))
    await pub.next(T.PUBCOMP)
    await sub.waitPublishes(2)
    await sleep(300)
    await sub.sync()
    expect(sub.publishes().map((p) => p.payload?.toString())).toEqual(['once', 'second message, same id'])
  })

  it('unacknowledged QoS 1 and QoS 2 PUBLISH and PUBREL are re-sent on reconnect (clean=0) with their packet ids, DUP=1, in order [MQTT-4.4.0-1] [MQTT-3.3.1-1] [MQTT-4.6.0-1]', async () => {
    const id = uniq('redeliver')
    const topic = `redeliver/${id}`
    const a = await connected(id, { clean: false })
    await a.sub(1, [{ filter: `${topic}/+`, qos: 2 }])
    const pub = await connected(uniq('redeliver-pub'))
    pub.send(publish({ topic: `${topic}/one`, payload: 'q1-a', qos: 1, id: 1 }))
    pub.send(publish({ topic: `${topic}/one`, payload: 'q1-b', qos: 1, id: 2 }))
    pub.send(publish({ topic: `${topic}/two`, payload: 'q2-a', qos: 2, id: 3 }))
    pub.send(publish({ topic: `${topic}/two`, payload: 'q2-b', qos: 2, id: 4 }))
    await pub.next(T.PUBACK); await pub.next(T.PUBACK)
    for (const i of [3, 4]) { await pub.next(T.PUBREC); pub.send(ack(T.PUBREL, i)) }
    await pub.next(T.PUBCOMP); await pub.next(T.PUBCOMP)
    const first = await a.waitPublishes(4)
    expect(first.map((p) => [p.payload?.toString(), p.qos, p.dup])).toEqual([['q1-a', 1, false], ['q1-b', 1, false], ['q2-a', 2, false], ['q2-b', 2, false]])
    // acknowledge the second QoS 2 message half-way (PUBREC), nothing else, and drop the connection
    const q2b = first[3]!
    a.send(ack(T.PUBREC, q2b.id!))
    const rel = await a.next(T.PUBREL)
    expect(rel.id).toBe(q2b.id)
    await sleep(100)
    a.drop()
    await sleep(200)
    const b = await connected(id, { clean: false })
    await sleep(500)
    await b.sync()
    const again = b.publishes()
    expect(again.map((p) => [p.payload?.toString(), p.id, p.qos]), `received: ${b.describe()}`)
      .toEqual(first.slice(0, 3).map((p) => [p.payload?.toString(), p.id, p.qos]))
    expect(b.all(T.PUBREL).map((p) => p.id), 'the PUBREL of the half-acknowledged message is re-sent').toEqual([q2b.id])
    expect(again.map((p) => p.dup), 'DUP flag of the re-sent PUBLISH packets [MQTT-3.3.1-1]').toEqual([true, true, true])
  })
})

describe('MQTT 3.1.1: SUBSCRIBE, SUBACK, UNSUBSCRIBE (raw client)', () => {
  it('SUBACK: one return code per filter, in order, with the packet id [MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-3.8.4-5] [MQTT-3.9.3-1]', async () => {
    const c = await connected(uniq('suback'))
    c.send(subscribe(0x4321, [{ filter: 's/a', qos: 2 }, { filter: 's/b', qos: 0 }, { filter: 's/+/c', qos: 1 }]))
    const sa = await c.next(T.SUBACK)
    expect(sa.id).toBe(0x4321)
    expect(sa.reasons).toEqual([2, 0, 1])
  })

  it('a SUBSCRIBE with a filter identical to an existing one replaces it, and re-sends retained messages [MQTT-3.8.4-3]', async () => {
    const topic = `replace/${uniq('t')}`
    const pub = await connected(uniq('replace-pub'))
    pub.send(publish({ topic, payload: 'state', qos: 1, id: 1, retain: true }))
    await pub.next(T.PUBACK)
    const c = await connected(uniq('replace'))
    expect((await c.sub(1, [{ filter: topic, qos: 1 }])).reasons).toEqual([1])
    expect((await c.waitPublishes(1))[0]).toMatchObject({ retain: true, qos: 1 })
    c.send(ack(T.PUBACK, c.publishes()[0]!.id!))
    expect((await c.sub(2, [{ filter: topic, qos: 0 }])).reasons).toEqual([0])
    expect((await c.waitPublishes(2))[1]).toMatchObject({ retain: true, qos: 0 })
    pub.send(publish({ topic, payload: 'live', qos: 1, id: 2 }))
    await pub.next(T.PUBACK)
    const got = await c.waitPublishes(3)
    await sleep(200)
    expect(c.publishes()).toHaveLength(3) // one subscription, not two
    expect(got[2]).toMatchObject({ qos: 0, retain: false })
    pub.send(publish({ topic, payload: '', qos: 1, id: 3, retain: true }))
    await pub.next(T.PUBACK)
  })

  it('UNSUBACK carries the UNSUBSCRIBE packet id, also when nothing was subscribed [MQTT-3.10.4-4] [MQTT-3.10.4-5]', async () => {
    const c = await connected(uniq('unsuback'))
    await c.sub(1, [{ filter: 'u/a', qos: 0 }])
    c.send(unsubscribe(0x7777, ['u/a', 'u/never']))
    expect((await c.next(T.UNSUBACK)).id).toBe(0x7777)
    c.send(unsubscribe(0x0101, ['u/never']))
    expect((await c.next(T.UNSUBACK)).id).toBe(0x0101)
  })

  const invalidFilters = ['a/#/b', 'a+', '+a/b', '#/a', 'a/b#', 'sport/tennis#', 'a/+b/c', '']
  for (const filter of invalidFilters) {
    it(`an invalid topic filter ${JSON.stringify(filter)}: SUBACK 0x80 or the connection closed [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3-1] [MQTT-4.8.0-1]`, async () => {
      const c = await connected(uniq('badfilter'))
      c.send(subscribe(9, [{ filter, qos: 1 }]))
      const outcome = await subackOrClose(c)
      if (Array.isArray(outcome)) expect(outcome, 'SUBACK return code').toEqual([0x80])
      else expect(outcome, `received: ${c.describe()}`).toBe('closed')
    })
  }

  it('a valid and an invalid filter in one SUBSCRIBE: SUBACK [granted, 0x80] in order, or the connection closed [MQTT-3.9.3-1] [MQTT-4.7.1-2]', async () => {
    const c = await connected(uniq('mixed'))
    c.send(subscribe(9, [{ filter: 'mixed/ok', qos: 1 }, { filter: 'mixed/#/bad', qos: 1 }, { filter: 'mixed/ok2', qos: 2 }]))
    const outcome = await subackOrClose(c)
    if (Array.isArray(outcome)) expect(outcome).toEqual([1, 0x80, 2])
    else expect(outcome).toBe('closed')
  })
})

describe('MQTT 3.1.1: protocol violations close the connection (raw client)', () => {
  const cases: Array<[string, () => Buffer]> = [
    ['PUBLISH with both QoS bits set [MQTT-3.3.1-4]', () => publish({ topic: 'v/qos3', payload: 'x', qos: 3, id: 1 })],
    ['PUBLISH to a topic name with a wildcard [MQTT-3.3.2-2] [MQTT-4.7.1-1]', () => publish({ topic: 'v/+/x', payload: 'x' })],
    ['PUBLISH to a topic name with "#" [MQTT-3.3.2-2] [MQTT-4.7.1-1]', () => publish({ topic: 'v/#', payload: 'x', qos: 1, id: 1 })],
    ['PUBLISH to a topic name containing U+0000 [MQTT-1.5.3-2] [MQTT-4.7.3-2]', () => publish({ topic: 'v/a\u0000b', payload: 'x' })],
    ['PUBLISH to a topic name of ill-formed UTF-8 (a UTF-16 surrogate) [MQTT-1.5.3-1]', () => Buffer.concat([Buffer.from([0x30]), varint(2 + 5 + 1), str(Buffer.from([0x76, 0x2f, 0xed, 0xa0, 0x80])), Buffer.from('x')])],
    ['PUBLISH to an empty topic name [MQTT-4.7.3-1]', () => publish({ topic: '', payload: 'x' })],
    ['SUBSCRIBE with reserved header flags 0000 [MQTT-3.8.1-1] [MQTT-2.2.2-2]', () => subscribe(1, [{ filter: 'v/a', qos: 0 }], 4, undefined, 0x80)],
    ['SUBSCRIBE without any filter [MQTT-3.8.3-3]', () => Buffer.from([0x82, 0x02, 0x00, 0x01])],
    ['SUBSCRIBE requesting QoS 3 [MQTT-3.8.3-4]', () => subscribe(1, [{ filter: 'v/a', qos: 3 }])],
    ['SUBSCRIBE with reserved bits set in the requested QoS byte [MQTT-3.8.3-4]', () => subscribe(1, [{ filter: 'v/a', rawOptions: 0x41 }])],
    ['UNSUBSCRIBE with reserved header flags 0000 [MQTT-3.10.1-1]', () => Buffer.concat([Buffer.from([0xa0]), varint(2 + 5), Buffer.from([0, 1]), str('v/a')])],
    ['UNSUBSCRIBE without any filter [MQTT-3.10.3-2]', () => Buffer.from([0xa2, 0x02, 0x00, 0x01])],
    ['PUBREL with reserved header flags 0000 [MQTT-2.2.2-2]', () => Buffer.from([0x60, 0x02, 0x00, 0x01])],
    ['PINGREQ with reserved header flags set [MQTT-2.2.2-2]', () => Buffer.from([0xc1, 0x00])],
  ]
  for (const [name, packet] of cases) {
    it(name, async () => {
      const c = await connected(uniq('violation'))
      c.send(packet())
      await expectClosedForError(c)
    })
  }

  it('a packet of reserved type 0 closes the connection [MQTT-2.2.2-2] [MQTT-4.8.0-1]', async () => {
    const c = await connected(uniq('type0'))
    c.send(Buffer.from([0x00, 0x00]))
    await expectClosedForError(c)
  })

  it('control: the same client stays connected after valid packets (so the closes above are caused by the offending packet)', async () => {
    const c = await connected(uniq('control'))
    c.send(publish({ topic: 'v/ok', payload: 'x', qos: 1, id: 1 }))
    await c.next(T.PUBACK)
    await c.sub(2, [{ filter: 'v/+/ok', qos: 1 }])
    c.send(unsubscribe(3, ['v/+/ok']))
    await c.next(T.UNSUBACK)
    await c.sync()
    expect(c.closed).toBe(false)
    expect(hex(c.all(T.DISCONNECT)[0]?.reason)).toBe('none')
  })
})
