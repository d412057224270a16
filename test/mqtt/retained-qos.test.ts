import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'

let srv: StartedEdgebus
beforeAll(async () => { srv = await startEdgebus({ args: ['--persistence-enabled', 'false'] }) })
afterAll(async () => {
  await endAllClients()
  await srv.stop()
})

describe('retained messages sent on SUBSCRIBE', () => {
  it('go out at the lower of their QoS and the granted QoS, for wildcard filters too [MQTT-3.3.5-1]', async () => {
    const pub = await connectClient(srv.mqttUrl)
    await pub.client.publishAsync('rq/a', 'two', { qos: 2, retain: true })
    await pub.client.publishAsync('rq/b', 'one', { qos: 1, retain: true })
    for (const [filter, granted] of [['rq/+', 0], ['rq/#', 1], ['rq/a', 0]] as const) {
      const sub = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
      await sub.client.subscribeAsync(filter, { qos: granted })
      const got = await sub.waitFor(filter === 'rq/a' ? 1 : 2)
      for (const m of got) {
        expect(m.retain, filter).toBe(true)
        expect(m.qos, `${filter} ${m.topic}`).toBe(Math.min(granted, m.topic === 'rq/a' ? 2 : 1))
      }
      await sub.end()
    }
  })
})
