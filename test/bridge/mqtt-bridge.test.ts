import { afterEach, describe, expect, it, vi } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'
import { freePort, startMosquitto, type Mosquitto } from '../support/remotes.ts'
import { makeTestPki } from '../support/tls.ts'
import { bridgeInfo, deliveryReport, publishMany, remoteSubscriber } from './helpers.ts'

/**
 * Bridges to Debian's mosquitto, started by the tests on free loopback ports: the outbox (a
 * stream) drained by a durable consumer whose cursor moves on PUBACKs (issue 14).
 */

let servers: StartedEdgebus[] = []
let remotes: Mosquitto[] = []
const subs: Array<{ end(): Promise<void> }> = []

afterEach(async () => {
  await Promise.all(subs.splice(0).map((s) => s.end().catch(() => {})))
  await endAllClients()
  await Promise.all(servers.splice(0).map((s) => s.stop()))
  await Promise.all(remotes.splice(0).map((r) => r.destroy()))
})

async function edgebus(bridge: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<StartedEdgebus> {
  const srv = await startEdgebus({ config: { bridges: [{ name: 'cloud', ...bridge }], ...extra } })
  servers.push(srv)
  return srv
}

async function mosquitto(o: Parameters<typeof startMosquitto>[0] = {}): Promise<Mosquitto> {
  const m = await startMosquitto(o)
  remotes.push(m)
  return m
}

describe('an MQTT bridge to mosquitto', () => {
  it('forwards steadily over TLS with a password (MQTT 5): rewritten subjects, the msg-id end to end, state in /api/bridges', async () => {
    const pki = makeTestPki()
    const m = await mosquitto({ users: { site1: 's3cret' }, tls: { ca: pki.ca, cert: pki.serverCert, key: pki.serverKey } })
    const sub = await remoteSubscriber(m.url, 'site1/#', { username: 'site1', password: 's3cret' })
    subs.push(sub)
    const srv = await edgebus({
      urls: [m.tlsUrl], username: 'site1', password: 's3cret', ca: pki.ca, mqttVersion: 5,
      out: [{ from: 'sensors.*.temp', to: 'site1/{1}/temperature' }, { from: 'meters/#', to: 'site1/meters/{#}' }],
    })
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).state).toBe('connected'), { timeout: 10_000 })
    const dev = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await dev.client.publishAsync('sensors/d7/temp', '21.5', { qos: 1, properties: { userProperties: { 'msg-id': 'd7-0001' } } })
    await dev.client.publishAsync('meters/a/b', '42', { qos: 1 })
    await dev.client.publishAsync('other/x', 'not selected', { qos: 1 })
    await vi.waitFor(() => expect(sub.got.length).toBe(2), { timeout: 10_000 })
    expect(sub.got.map((g) => [g.topic, g.payload])).toEqual([['site1/d7/temperature', '21.5'], ['site1/meters/a/b', '42']])
    // the publisher's msg-id, else <stream>:<seq> of the outbox
    expect(sub.got[0]?.props?.['msg-id']).toBe('d7-0001')
    expect(sub.got[1]?.props?.['msg-id']).toBe('bridge-cloud:2')
    const info = await bridgeInfo(srv, 'cloud')
    expect(info).toMatchObject({ state: 'connected', url: m.tlsUrl, acked: 2, refused: 0, backlog: { messages: 0 } })
    const list = await (await fetch(`${srv.httpUrl}/api/bridges`)).json() as { bridges: Array<{ name: string }> }
    expect(list.bridges.map((b) => b.name)).toEqual(['cloud'])
    expect((await fetch(`${srv.httpUrl}/api/bridges/nope`)).status).toBe(404)
    const metrics = await (await fetch(`${srv.httpUrl}/metrics`)).text()
    expect(metrics).toContain(`edgebus_bridge_connected{bridge="cloud",url="${m.tlsUrl}"} 1`)
    expect(metrics).toContain('edgebus_bridge_messages_acked_total{bridge="cloud"} 2')
  })

  it('forwards steadily with MQTT 3.1.1 (no properties on the wire)', async () => {
    const m = await mosquitto()
    const sub = await remoteSubscriber(m.url, '#', { protocolVersion: 4, properties: undefined })
    subs.push(sub)
    const srv = await edgebus({ urls: [m.url], mqttVersion: '3.1.1', out: [{ from: 'telemetry/#' }] })
    await publishMany(srv.mqttUrl, 500, (i) => `telemetry/d${i % 5}`)
    await vi.waitFor(() => expect(sub.got.length).toBeGreaterThanOrEqual(500), { timeout: 15_000 })
    expect(deliveryReport(sub.got)).toEqual({ unique: 500, duplicates: 0, outOfOrder: 0 })
  })

  it('keeps 100,000 QoS 1 messages published while mosquitto is stopped and delivers each at least once, in order per subject, once it is back', async () => {
    const m = await mosquitto()
    const sub = await remoteSubscriber(m.url, 'site/#')
    subs.push(sub)
    const srv = await edgebus({ urls: [m.url], out: [{ from: 'dev/#', to: 'site/{#}' }], window: 2000, backoff: { min: '100ms', max: '500ms' } })
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).state).toBe('connected'), { timeout: 10_000 })
    await m.stop()
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).state).not.toBe('connected'), { timeout: 10_000 })
    const N = 100_000
    await publishMany(srv.mqttUrl, N, (i) => `dev/d${i % 10}`)
    const held = await bridgeInfo(srv, 'cloud')
    expect(held.backlog.messages).toBe(N)
    expect(held.backlog.bytes).toBeGreaterThan(0)
    await m.start()
    await vi.waitFor(() => expect(deliveryReport(sub.got).unique).toBe(N), { timeout: 45_000, interval: 200 })
    const report = deliveryReport(sub.got)
    console.log(`mosquitto outage of ${N}: ${report.unique} unique, ${report.duplicates} duplicates`)
    expect(report.outOfOrder).toBe(0)
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).backlog.messages).toBe(0), { timeout: 10_000 })
  }, 60_000)
})
