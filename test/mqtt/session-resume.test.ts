/**
 * A session resumed with Clean Start 0 keeps its state [MQTT-3.1.2-4], whatever the resuming
 * CONNECT's Session Expiry Interval: that one governs only what happens after the new connection
 * ends [MQTT-3.1.2-11]. Played the way paho-mqtt and MQTT.js resume (Clean Start 0 and no CONNECT
 * properties), against edgebus with and without persistence and against Debian's mosquitto, which
 * the expectations must also describe (issue 16, item 1).
 */
import { join } from 'node:path'
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ROOT, run, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { startMosquitto, type StartedMosquitto } from '../support/mosquitto.ts'
import { ack, dropAll, publish, rawClient, T, uniq } from '../conformance/wire.ts'

interface Observed {
  granted: number[]
  connack: { rc: number; sessionPresent: boolean }
  /** [topic, payload, qos, Message Expiry Interval] of what the resumed connection got, sorted. */
  got: Array<[string, string, number, number | null]>
  marker: boolean
  sessionPresentAfter: boolean
  error?: string
}

let mosquitto: StartedMosquitto
let persistent: StartedEdgebus
let inMemory: StartedEdgebus
const servers: Array<{ name: string; port: () => number; url: () => string }> = [
  { name: 'mosquitto', port: () => mosquitto.port, url: () => mosquitto.url },
  { name: 'edgebus', port: () => persistent.mqttPort, url: () => persistent.mqttUrl },
  { name: 'edgebus, persistence.enabled false', port: () => inMemory.mqttPort, url: () => inMemory.mqttUrl },
]
/** The paho run of each server, started in beforeAll (about 8 s each, concurrently). */
const paho = new Map<string, Promise<Record<string, Observed>>>()

async function runScript(port: number): Promise<Record<string, Observed>> {
  const res = await run('/usr/bin/python3', [join(ROOT, 'test', 'mqtt', 'py', 'session_resume.py'), String(port)], { timeoutMs: 40_000 })
  const line = res.stdout.trim().split('\n').pop() ?? ''
  try {
    return JSON.parse(line) as Record<string, Observed>
  } catch {
    throw new Error(`session_resume.py exited ${res.code} without a report:\n${res.stdout}\n${res.stderr}`)
  }
}

beforeAll(async () => {
  ;[mosquitto, persistent, inMemory] = await Promise.all([
    startMosquitto(),
    startEdgebus(),
    startEdgebus({ config: { persistence: { enabled: false } } }),
  ])
  for (const s of servers) {
    const p = runScript(s.port())
    p.catch(() => {}) // reported by the tests that await it
    paho.set(s.name, p)
  }
}, 20_000)
afterAll(async () => {
  await Promise.all([...paho.values()].map((p) => p.catch(() => {})))
  await Promise.all([mosquitto?.stop(), persistent?.stop(), inMemory?.stop()])
}, 60_000)

async function observed(server: string, name: string): Promise<Observed> {
  const o = (await paho.get(server))?.[name]
  if (o === undefined) throw new Error(`no ${name} in the paho report of ${server}`)
  if (o.error) throw new Error(`${name} raised against ${server}:\n${o.error}`)
  return o
}

const P = 45_000

describe.each(servers)('$name: an MQTT 5 session resumed with Clean Start 0 and no Session Expiry Interval', (server) => {
  it('paho: the QoS 1 and 2 messages queued while away arrive after CONNACK Session Present 1 (QoS 0 is not queued); the session then ends with that connection', async () => {
    const o = await observed(server.name, 'no_expiry_on_resume')
    expect(o.granted).toEqual([2])
    expect(o.connack).toMatchObject({ rc: 0, sessionPresent: true })
    expect(o.marker).toBe(true)
    expect(o.got.map(([topic, payload, qos]) => [topic.split('/').pop(), payload, qos])).toEqual([['q1', 'qos 1', 1], ['q2', 'qos 2', 2]])
    expect(o.sessionPresentAfter).toBe(false)
  }, P)

  it('paho: a session whose DISCONNECT raised its expiry (1 s -> 99999 s) is kept; queued messages keep counting down their Message Expiry [MQTT-3.3.2-5] [MQTT-3.3.2-6]', async () => {
    const o = await observed(server.name, 'disconnect_raised_expiry')
    expect(o.connack).toMatchObject({ rc: 0, sessionPresent: true })
    expect(o.marker).toBe(true)
    // the 1 s message expired while queued; the 6 s one comes with what is left of its interval
    expect(o.got.map(([topic, payload, qos]) => [topic.split('/').pop(), payload, qos])).toEqual([['long', 'long', 2], ['plain', 'plain', 1]])
    const left = o.got[0]?.[3]
    expect(left).toBeGreaterThanOrEqual(1)
    expect(left).toBeLessThan(6)
    expect(o.got[1]?.[3]).toBeNull()
    expect(o.sessionPresentAfter).toBe(false)
  }, P)

  const open: MqttClient[] = []
  afterEach(async () => { await Promise.all(open.splice(0).map((c) => c.endAsync(true).catch(() => {}))) })

  /** An MQTT.js client, listening before its CONNACK (the queue comes right behind it). */
  async function connect(opts: IClientOptions): Promise<{ client: MqttClient; connack: IConnackPacket; got: Array<[string, string, number]> }> {
    const client = mqtt.connect(server.url(), { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, ...opts })
    open.push(client)
    const got: Array<[string, string, number]> = []
    client.on('message', (topic, payload, packet) => got.push([topic, payload.toString(), packet.qos]))
    const connack = await new Promise<IConnackPacket>((resolve, reject) => {
      client.once('connect', resolve)
      client.once('error', reject)
    })
    return { client, connack, got }
  }

  it('MQTT.js: the same with clean false and no properties on the reconnect', async () => {
    const clientId = `mqttjs-resume-${process.pid}-${Date.now() % 1e6}`
    const topic = `x/${clientId}`
    const first = await connect({ clientId, clean: true, properties: { sessionExpiryInterval: 99999 } })
    await first.client.subscribeAsync('x/+/+', { qos: 2 })
    await first.client.endAsync()
    const pub = await connect({ clientId: `${clientId}-pub` })
    for (const qos of [0, 1, 2] as const) await pub.client.publishAsync(`${topic}/q${qos}`, `qos ${qos}`, { qos })
    const back = await connect({ clientId, clean: false })
    expect(back.connack.sessionPresent).toBe(true)
    await pub.client.publishAsync(`${topic}/marker`, 'marker', { qos: 1 })
    await expect.poll(() => back.got.some(([t]) => t === `${topic}/marker`) && back.got.length >= 3, { timeout: 5000 }).toBe(true)
    expect(back.got.filter(([t]) => t.startsWith(topic) && !t.endsWith('marker')).sort()).toEqual([[`${topic}/q1`, 'qos 1', 1], [`${topic}/q2`, 'qos 2', 2]])
    await back.client.endAsync()
    const again = await connect({ clientId, clean: false })
    expect(again.connack.sessionPresent).toBe(false)
  })
})

describe.each(servers)('$name: QoS 2 deliveries of a resumed session acknowledged together', (server) => {
  afterEach(() => dropAll())

  it('each PUBREC gets the PUBREL of its own packet identifier, and both messages complete', async () => {
    // persistence.enabled false once sent the second identifier's PUBREL twice (aedes' in-memory
    // queue matched the first PUBREL waiting there): the first message never completed
    const clientId = uniq('q2pair')
    const topic = `${uniq('q2')}/t`
    const props = { sessionExpiryInterval: 300 }
    const { c: first } = await rawClient(server.port(), { clientId, version: 5, clean: true, props })
    await first.sub(1, [{ filter: topic, qos: 2 }])
    await first.close()
    const { c: pub } = await rawClient(server.port(), { clientId: uniq('q2pub'), version: 5 })
    for (const id of [1, 2]) {
      pub.send(publish({ topic, payload: `m${id}`, qos: 2, id, version: 5 }))
      await pub.next(T.PUBREC)
      pub.send(ack(T.PUBREL, id, 5))
      await pub.next(T.PUBCOMP)
    }
    const { c: back, connack } = await rawClient(server.port(), { clientId, version: 5, clean: false, props })
    expect(connack.sessionPresent).toBe(true)
    const got = await back.waitPublishes(2)
    const ids = got.map((p) => p.id as number)
    expect(new Set(ids).size).toBe(2)
    back.send(...ids.map((id) => ack(T.PUBREC, id, 5))) // in one write, as a client reading both at once answers
    const rels = [await back.next(T.PUBREL), await back.next(T.PUBREL)].map((p) => p.id)
    expect(rels.sort()).toEqual([...ids].sort())
    back.send(...ids.map((id) => ack(T.PUBCOMP, id, 5)))
    await back.sync()
    await back.close()
    // completed: nothing is sent again on the next resume
    const { c: again } = await rawClient(server.port(), { clientId, version: 5, clean: false, props: { sessionExpiryInterval: 0 } })
    await again.sync()
    expect(again.publishes()).toHaveLength(0)
    expect(again.all(T.PUBREL)).toHaveLength(0)
  })
})
