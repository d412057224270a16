/**
 * Server-to-client topic aliases (issue 16, item 5): a client whose CONNECT sets Topic Alias
 * Maximum gets each topic once in full with an alias, then the alias alone (MQTT 5 §3.3.2.3.4), on
 * every delivery path: the fast path (QoS 0 forwarded as it came, or re-encoded for a 3.1.1
 * publisher), aedes' path (QoS 1/2, retained on SUBSCRIBE) and the Receive Maximum hold.
 */
import mqtt from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { dropAll, publish, rawClient, uniq, type Packet, type Raw, type Version } from '../conformance/wire.ts'

let srv: StartedEdgebus
beforeAll(async () => { srv = await startEdgebus() }, 20_000)
afterAll(async () => { dropAll(); await srv?.stop() }, 20_000)
afterEach(() => dropAll())

async function subscriber(filter: string, qos: 0 | 1 | 2, topicAliasMaximum?: number): Promise<Raw> {
  const { c } = await rawClient(srv.mqttPort, { clientId: uniq('ta-sub'), version: 5, ...(topicAliasMaximum ? { props: { topicAliasMaximum } } : {}) })
  c.autoAck = true
  await c.sub(1, [{ filter, qos }])
  return c
}

async function publisher(version: Version): Promise<Raw> {
  const { c } = await rawClient(srv.mqttPort, { clientId: uniq('ta-pub'), version })
  c.autoAck = true
  return c
}

/** [topic as sent, alias, payload] of each PUBLISH. */
const seen = (ps: Packet[]): Array<[string, number | undefined, string]> => ps.map((p) => [p.topic ?? '', p.props?.topicAlias, p.payload?.toString() ?? ''])

describe.each([
  { path: 'fast path, QoS 0 from an MQTT 5 publisher (forwarded as it came)', qos: 0, pubVersion: 5 },
  { path: 'fast path, QoS 0 from an MQTT 3.1.1 publisher (re-encoded)', qos: 0, pubVersion: 4 },
  { path: "aedes' path, QoS 1", qos: 1, pubVersion: 5 },
  { path: "aedes' path, QoS 2", qos: 2, pubVersion: 4 },
] as const)('$path', ({ qos, pubVersion }) => {
  it('the first message of a topic carries it in full with an alias, the next ones the alias alone', async () => {
    const base = uniq('ta')
    const sub = await subscriber(`${base}/+`, qos, 4)
    const pub = await publisher(pubVersion)
    const topics = ['a', 'a', 'b', 'a', 'b']
    topics.forEach((t, i) => pub.send(publish({ topic: `${base}/${t}`, payload: `m${i}`, qos, id: i + 1, version: pubVersion })))
    expect(seen(await sub.waitPublishes(5))).toEqual([
      [`${base}/a`, 1, 'm0'], ['', 1, 'm1'], [`${base}/b`, 2, 'm2'], ['', 1, 'm3'], ['', 2, 'm4'],
    ])
  })
})

it('retained messages on SUBSCRIBE, then live ones: the alias set by the retained one is used after it', async () => {
  const base = uniq('ta-ret')
  const pub = await publisher(5)
  pub.send(publish({ topic: `${base}/r`, payload: 'kept', qos: 1, id: 1, retain: true, version: 5 }))
  await pub.next(4) // PUBACK
  const sub = await subscriber(`${base}/#`, 1, 2)
  await sub.waitPublishes(1)
  pub.send(publish({ topic: `${base}/r`, payload: 'live', qos: 1, id: 2, version: 5 }))
  expect(seen(await sub.waitPublishes(2))).toEqual([[`${base}/r`, 1, 'kept'], ['', 1, 'live']])
})

it('past Topic Alias Maximum, further topics go in full without an alias', async () => {
  const base = uniq('ta-max')
  const sub = await subscriber(`${base}/+`, 0, 1)
  const pub = await publisher(5)
  for (const [i, t] of ['a', 'b', 'a', 'b'].entries()) pub.send(publish({ topic: `${base}/${t}`, payload: `m${i}`, version: 5 }))
  expect(seen(await sub.waitPublishes(4))).toEqual([[`${base}/a`, 1, 'm0'], [`${base}/b`, undefined, 'm1'], ['', 1, 'm2'], [`${base}/b`, undefined, 'm3']])
})

it('a client that set no Topic Alias Maximum never gets an alias [MQTT-3.3.2-9]', async () => {
  const base = uniq('ta-none')
  const sub = await subscriber(`${base}/+`, 1)
  const pub = await publisher(5)
  for (const [i, qos] of ([0, 0, 1, 1] as const).entries()) pub.send(publish({ topic: `${base}/a`, payload: `m${i}`, qos, id: i + 1, version: 5 }))
  expect(seen(await sub.waitPublishes(4)).map(([t, a]) => [t, a])).toEqual(Array(4).fill([`${base}/a`, undefined]))
})

it('held by the client\'s Receive Maximum and sent later: the alias still goes out before its first use', async () => {
  const base = uniq('ta-held')
  const { c: sub } = await rawClient(srv.mqttPort, { clientId: uniq('ta-sub'), version: 5, props: { topicAliasMaximum: 4, receiveMaximum: 1 } })
  await sub.sub(1, [{ filter: `${base}/+`, qos: 1 }])
  const pub = await publisher(5)
  pub.send(publish({ topic: `${base}/a`, payload: 'q1', qos: 1, id: 1, version: 5 }))
  pub.send(publish({ topic: `${base}/a`, payload: 'q1 held', qos: 1, id: 2, version: 5 }))
  await sub.waitPublishes(1)
  // a QoS 0 message overtakes the held QoS 1 one: it may use the alias the first one set
  pub.send(publish({ topic: `${base}/a`, payload: 'q0', qos: 0, version: 5 }))
  await sub.waitPublishes(2)
  sub.send(Buffer.from([0x40, 0x02, 0, sub.publishes()[0]?.id ?? 0]))
  expect(seen(await sub.waitPublishes(3))).toEqual([[`${base}/a`, 1, 'q1'], ['', 1, 'q0'], ['', 1, 'q1 held']])
})

it('MQTT.js with topicAliasMaximum reads every topic right', async () => {
  const base = uniq('ta-mqttjs')
  const client = await mqtt.connectAsync(srv.mqttUrl, { protocolVersion: 5, reconnectPeriod: 0, properties: { topicAliasMaximum: 8 } })
  try {
    const got: string[] = []
    client.on('message', (topic, payload) => got.push(`${topic} ${payload.toString()}`))
    await client.subscribeAsync(`${base}/+`, { qos: 1 })
    const pub = await publisher(5)
    for (const [i, [t, qos]] of ([['a', 0], ['a', 1], ['b', 0], ['a', 0], ['b', 1]] as const).entries()) pub.send(publish({ topic: `${base}/${t}`, payload: `m${i}`, qos, id: i + 1, version: 5 }))
    await expect.poll(() => got.length).toBe(5)
    expect(got.sort()).toEqual([`${base}/a m0`, `${base}/a m1`, `${base}/a m3`, `${base}/b m2`, `${base}/b m4`])
  } finally {
    await client.endAsync(true)
  }
})
