/**
 * mqtt.maxKeepAlive (issue 16, item 5): the longest Keep Alive a client may use. MQTT 5 clients that
 * ask for more, or for none, are told the cap in CONNACK (Server Keep Alive [MQTT-3.2.2-21]) and
 * held to it [MQTT-3.1.2-24]; as Debian's mosquitto does with max_keepalive. MQTT 3.1.1 clients
 * cannot be told: they are accepted and held to the cap (mosquitto 2.0.11 leaves them alone, 2.0.12
 * on refuses them), as README says.
 */
import mqtt from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { startMosquitto, type StartedMosquitto } from '../support/mosquitto.ts'
import { dropAll, rawClient, sleep, uniq, type ConnectOpts, type Version } from '../conformance/wire.ts'

const CAP = 1 // seconds, edgebus
const MOSQUITTO_CAP = 10 // its smallest max_keepalive

let edgebus: StartedEdgebus
let mosquitto: StartedMosquitto

beforeAll(async () => {
  ;[edgebus, mosquitto] = await Promise.all([startEdgebus({ args: ['--mqtt-max-keep-alive', `${CAP}s`] }), startMosquitto([`max_keepalive ${MOSQUITTO_CAP}`])])
}, 20_000)
afterAll(async () => {
  dropAll()
  await Promise.all([edgebus?.stop(), mosquitto?.stop()])
}, 20_000)
afterEach(() => dropAll())

/** A plain CONNECT (served by edgebus itself) and one aedes answers (a will). */
const kinds: Array<{ kind: string; opts: Partial<ConnectOpts> }> = [
  { kind: 'plain CONNECT', opts: {} },
  { kind: 'CONNECT with a will', opts: { will: { topic: 'ka/will', payload: 'gone' } } },
]

async function connackOf(port: number, version: Version, keepalive: number, opts: Partial<ConnectOpts>) {
  const { c, connack } = await rawClient(port, { clientId: uniq('ka'), version, keepalive, ...opts })
  expect(connack.reason ?? 0).toBe(0)
  return { c, serverKeepAlive: connack.props?.serverKeepAlive }
}

describe.each(kinds)('$kind', ({ opts }) => {
  describe.each([
    { name: 'edgebus', port: () => edgebus.mqttPort, cap: CAP },
    { name: 'mosquitto', port: () => mosquitto.port, cap: MOSQUITTO_CAP },
  ])('$name: MQTT 5', (server) => {
    it('a Keep Alive above the cap, or none, is answered with the cap as Server Keep Alive; one within it with none', async () => {
      expect((await connackOf(server.port(), 5, 60, opts)).serverKeepAlive).toBe(server.cap)
      expect((await connackOf(server.port(), 5, 0, opts)).serverKeepAlive).toBe(server.cap)
      expect((await connackOf(server.port(), 5, server.cap, opts)).serverKeepAlive).toBeUndefined()
    })
  })

  it('edgebus: an MQTT 5 client told the cap is held to it: silent, it is closed after 1.5 x the cap, not before the cap [MQTT-3.1.2-24]', async () => {
    const { c } = await connackOf(edgebus.mqttPort, 5, 60, opts)
    const opened = Date.now()
    expect(await c.waitClosed(CAP * 1500 + 2000)).toBe(true)
    expect(c.closedAt - opened).toBeGreaterThanOrEqual(CAP * 1000)
  })

  it('edgebus: an MQTT 3.1.1 client asking for more is accepted (no way to tell it), and closed after 1.5 x the cap of silence', async () => {
    const { c } = await connackOf(edgebus.mqttPort, 4, 60, opts)
    const opened = Date.now()
    expect(await c.waitClosed(CAP * 1500 + 2000)).toBe(true)
    expect(c.closedAt - opened).toBeGreaterThanOrEqual(CAP * 1000)
  })
})

// (paho-mqtt 1.6.1 reads Server Keep Alive but keeps pinging at its own Keep Alive, against
// [MQTT-3.2.2-21]: with a cap below its Keep Alive it is closed, by mosquitto as by edgebus.)
it('MQTT.js (MQTT 5) connecting with Keep Alive 60 takes the Server Keep Alive and stays connected past 1.5 x the cap', async () => {
  const client = await mqtt.connectAsync(edgebus.mqttUrl, { protocolVersion: 5, keepalive: 60, reconnectPeriod: 0, clientId: uniq('ka-mqttjs') })
  let closed = false
  client.on('close', () => { closed = true })
  try {
    await sleep(CAP * 3000) // time under test: twice what the server allows a silent client
    expect(closed).toBe(false)
  } finally {
    await client.endAsync(true)
  }
})
