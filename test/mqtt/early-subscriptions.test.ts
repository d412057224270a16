/**
 * A subscription is routable in the event-loop turn its SUBSCRIBE is read (issue 16, item 2):
 * clients publish without waiting for another client's SUBACK (request/response, No Local between
 * two clients). Raw clients, MQTT 3.1.1 and 5, against edgebus and against Debian's mosquitto, whose
 * behaviour the expectations must also describe.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { ROOT, run, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { startMosquitto, type StartedMosquitto } from '../support/mosquitto.ts'
import { dropAll, publish, rawClient, sleep, subscribe, T, uniq, type Raw, type Version } from '../conformance/wire.ts'

let edgebus: StartedEdgebus
let mosquitto: StartedMosquitto

/** The paho run (py/early_subscribe.py) of each server, started in beforeAll. */
const paho = new Map<string, Promise<Record<string, { delivered: number; own?: number; runs: number; error?: string }>>>()

beforeAll(async () => {
  ;[edgebus, mosquitto] = await Promise.all([startEdgebus(), startMosquitto()])
  for (const [name, port] of [['edgebus', edgebus.mqttPort], ['mosquitto', mosquitto.port]] as const) {
    const p = run('/usr/bin/python3', [join(ROOT, 'test', 'mqtt', 'py', 'early_subscribe.py'), String(port)], { timeoutMs: 40_000 })
      .then((res) => JSON.parse(res.stdout.trim().split('\n').pop() || 'null') ?? Promise.reject(new Error(`early_subscribe.py: no report\n${res.stderr}`)))
    p.catch(() => {}) // reported by the tests that await it
    paho.set(name, p)
  }
}, 20_000)
afterAll(async () => {
  await Promise.all([...paho.values()].map((p) => p.catch(() => {})))
  dropAll()
  await Promise.all([edgebus?.stop(), mosquitto?.stop()])
}, 20_000)
afterEach(() => dropAll())

const RUNS = 20
/**
 * How far the SUBSCRIBE goes out ahead of the other client's PUBLISH: enough for the server to read
 * it first (two sockets give no order otherwise: mosquitto misses some at 0-2 ms, and a loaded
 * server may read both in one turn), far less than a SUBACK round trip on a real link. Issue 16
 * measured at 5 ms: mosquitto 20 of 20, edgebus before early subscriptions 19 of 20.
 */
const ahead = (): Promise<void> => sleep(5)

/**
 * edgebus must deliver every time. mosquitto shows the scenario is a real one that a broker serves,
 * it is not the bar: it missed up to 3 of 20 here (issue 16 measured 19-20 of 20), so it is held
 * to most of them.
 */
const servers = [
  { name: 'edgebus', port: () => edgebus.mqttPort, least: RUNS },
  { name: 'mosquitto', port: () => mosquitto.port, least: RUNS / 2 },
]

async function client(port: number, version: Version, name: string): Promise<Raw> {
  const { c, connack } = await rawClient(port, { clientId: uniq(name), version })
  expect(connack.reason ?? 0).toBe(0)
  c.autoAck = true // like a real client: a broker's inflight window would stall otherwise
  return c
}

/**
 * Whether `sub` got the QoS 1 message `payload` on `topic` before the marker that `from` publishes
 * after the SUBACK: the same publisher's messages to one topic keep their order [MQTT-4.6.0-3].
 */
async function gotBeforeMarker(sub: Raw, from: Raw, topic: string, payload: string, version: Version, id: number): Promise<boolean> {
  await sub.next(T.SUBACK)
  from.send(publish({ topic, payload: 'marker', qos: 1, id, version }))
  await sub.waitPublishes(1, 3000)
  for (;;) {
    const got = sub.publishes().map((p) => p.payload?.toString())
    if (got.includes('marker')) return got.includes(payload)
    await sub.next(T.PUBLISH)
  }
}

describe.each(servers)('$name', (server) => {
  describe.each([4, 5] as const)('MQTT level %i', (version) => {
    it(`a new connection's first SUBSCRIBE, then another client's QoS 1 PUBLISH without waiting for the SUBACK: delivered ${RUNS} times of ${RUNS} (edgebus)`, async () => {
      const pub = await client(server.port(), version, 'pub')
      let delivered = 0
      for (let i = 0; i < RUNS; i++) {
        const topic = uniq('early/first')
        const sub = await client(server.port(), version, 'sub')
        sub.send(subscribe(1, [{ filter: topic, qos: 1 }], version))
        await ahead() // the SUBSCRIBE is read first; its SUBACK is not awaited
        pub.send(publish({ topic, payload: 'first', qos: 1, id: 2 * i + 1, version }))
        if (await gotBeforeMarker(sub, pub, topic, 'first', version, 2 * i + 2)) delivered++
        sub.drop()
      }
      expect(delivered).toBeGreaterThanOrEqual(server.least)
    }, 30_000)

    it(`a later SUBSCRIBE of a subscribed client, with a wildcard, the same way: ${RUNS} of ${RUNS} (edgebus)`, async () => {
      const pub = await client(server.port(), version, 'pub')
      const sub = await client(server.port(), version, 'sub')
      await sub.sub(1, [{ filter: uniq('early/other'), qos: 0 }])
      let delivered = 0
      for (let i = 0; i < RUNS; i++) {
        const base = uniq('early/later')
        sub.send(subscribe(2 + i, [{ filter: `${base}/+`, qos: 1 }], version))
        await ahead()
        pub.send(publish({ topic: `${base}/x`, payload: 'first', qos: 1, id: 2 * i + 1, version }))
        if (await gotBeforeMarker(sub, pub, `${base}/x`, 'first', version, 2 * i + 2)) delivered++
        sub.packets.length = 0
      }
      expect(delivered).toBeGreaterThanOrEqual(server.least)
    }, 30_000)

    it('the other order: a message published (and acknowledged) before the SUBSCRIBE is not delivered to it', async () => {
      const pub = await client(server.port(), version, 'pub')
      const sub = await client(server.port(), version, 'sub')
      const topic = uniq('early/before')
      pub.send(publish({ topic, payload: 'before', qos: 1, id: 1, version }))
      await pub.next(T.PUBACK)
      sub.send(subscribe(1, [{ filter: topic, qos: 1 }], version))
      expect(await gotBeforeMarker(sub, pub, topic, 'before', version, 2)).toBe(false)
    })

    it('a QoS 0 publish right behind the SUBSCRIBE, to a QoS 0 subscription (the fast path): delivered', async () => {
      const pub = await client(server.port(), version, 'pub')
      let delivered = 0
      for (let i = 0; i < RUNS; i++) {
        const topic = uniq('early/qos0')
        const sub = await client(server.port(), version, 'sub')
        sub.send(subscribe(1, [{ filter: topic, qos: 0 }], version))
        await ahead()
        pub.send(publish({ topic, payload: 'first', qos: 0, version }))
        if (await gotBeforeMarker(sub, pub, topic, 'first', version, i + 1)) delivered++
        sub.drop()
      }
      expect(delivered).toBeGreaterThanOrEqual(server.least)
    }, 30_000)
  })

  it(`MQTT 5 No Local between two clients: both subscribe with No Local and, without waiting, A publishes: B gets it, A does not, ${RUNS} times [MQTT-3.8.3-3]`, async () => {
    let delivered = 0
    for (let i = 0; i < RUNS; i++) {
      const a = await client(server.port(), 5, 'nl-a')
      const b = await client(server.port(), 5, 'nl-b')
      const topic = uniq('early/nl')
      a.send(subscribe(1, [{ filter: topic, qos: 1, nl: true }], 5))
      b.send(subscribe(1, [{ filter: topic, qos: 1, nl: true }], 5))
      await ahead()
      a.send(publish({ topic, payload: 'from a', qos: 1, id: 1, version: 5 }))
      if (await gotBeforeMarker(b, a, topic, 'from a', 5, 2)) delivered++
      // what b publishes reaches a, what a published did not
      await a.next(T.SUBACK)
      b.send(publish({ topic, payload: 'from b', qos: 1, id: 3, version: 5 }))
      await a.waitPublishes(1)
      expect(a.publishes().map((p) => p.payload?.toString())).toEqual(['from b'])
      a.drop()
      b.drop()
    }
    expect(delivered).toBeGreaterThanOrEqual(server.least)
  }, 30_000)

  it.each(['first_subscribe_311', 'first_subscribe_5', 'no_local'])('paho-mqtt: %s, the SUBSCRIBE 5 ms ahead of the other client\'s PUBLISH: delivered every time by edgebus (No Local: never to the publisher)', async (scenario) => {
    const o = (await paho.get(server.name))?.[scenario]
    if (o === undefined) throw new Error(`no ${scenario} in the paho report`)
    if (o.error) throw new Error(o.error)
    expect(o.runs).toBe(RUNS)
    expect(o.delivered).toBeGreaterThanOrEqual(server.least)
    if (scenario === 'no_local') expect(o.own).toBe(0)
  }, 45_000)
})

describe('edgebus: a persistent session', () => {
  it('QoS 1 subscriptions of a kept session wait for aedes (its queue learns of them then): a message right behind the SUBSCRIBE comes at most once, the connection stays', async () => {
    const { c: sub } = await rawClient(edgebus.mqttPort, { clientId: uniq('early-kept'), version: 4, clean: false })
    sub.autoAck = true
    const pub = await client(edgebus.mqttPort, 4, 'pub')
    for (let i = 0; i < RUNS; i++) {
      const topic = uniq('early/kept')
      sub.send(subscribe(1 + i, [{ filter: topic, qos: 1 }], 4))
      await ahead()
      pub.send(publish({ topic, payload: 'first', qos: 1, id: 2 * i + 1, version: 4 }))
      await gotBeforeMarker(sub, pub, topic, 'first', 4, 2 * i + 2)
      const firsts = sub.publishes().filter((p) => p.topic === topic && p.payload?.toString() === 'first')
      expect(firsts.length).toBeLessThanOrEqual(1)
    }
    expect(sub.closed).toBe(false)
  }, 30_000)
})

describe('edgebus: a filter the server refuses gets no early route', () => {
  it('limits.maxSubscriptions 1: of two filters in one SUBSCRIBE the second is refused (0x80) and a publish right behind it is not delivered', async () => {
    const srv = await startEdgebus({ args: ['--limits-max-subscriptions', '1'] })
    try {
      const pub = await client(srv.mqttPort, 4, 'pub')
      const sub = await client(srv.mqttPort, 4, 'sub')
      const topic = uniq('early/limit')
      sub.send(subscribe(1, [{ filter: `${topic}/a`, qos: 1 }, { filter: `${topic}/b`, qos: 1 }], 4))
      await ahead()
      pub.send(publish({ topic: `${topic}/b`, payload: 'refused', qos: 1, id: 1, version: 4 }))
      pub.send(publish({ topic: `${topic}/a`, payload: 'granted', qos: 1, id: 2, version: 4 }))
      expect(await gotBeforeMarker(sub, pub, `${topic}/a`, 'granted', 4, 3)).toBe(true)
      expect(sub.all(T.SUBACK)[0]?.reasons).toEqual([1, 0x80])
      expect(sub.publishes().map((p) => p.topic)).not.toContain(`${topic}/b`)
    } finally {
      dropAll()
      await srv.stop()
    }
  })
})

