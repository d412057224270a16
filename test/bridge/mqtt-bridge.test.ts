import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'
import { freePort } from '../support/free-port.ts'
import { startMosquitto, type Mosquitto } from '../support/remotes.ts'
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
    const sys = await connectClient(srv.mqttUrl)
    await sys.client.subscribeAsync('$SYS/broker/bridges/cloud/#')
    await vi.waitFor(() => expect(sys.messages.find((x) => x.topic === '$SYS/broker/bridges/cloud/state')?.payload).toBe(`connected ${m.tlsUrl}`))
    expect(sys.messages.find((x) => x.topic === '$SYS/broker/bridges/cloud/messages/acked')?.payload).toBe('2')
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

describe('an MQTT bridge and message expiry', () => {
  it('sends what is left of a Message Expiry Interval after an outage, and drops what expired in the outbox', async () => {
    const m = await mosquitto()
    const sub = await remoteSubscriber(m.url, 'site/#')
    subs.push(sub)
    await m.stop()
    const srv = await edgebus({ urls: [m.url], out: [{ from: 'dev/#', to: 'site/{#}' }], backoff: { min: '100ms', max: '300ms' } })
    const dev = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await dev.client.publishAsync('dev/short', 'gone', { qos: 1, properties: { messageExpiryInterval: 1 } })
    await dev.client.publishAsync('dev/long', 'kept', { qos: 1, properties: { messageExpiryInterval: 3600 } })
    // the outage outlasts the short one's interval
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).backlog.oldestSeconds).toBeGreaterThanOrEqual(2), { timeout: 10_000, interval: 200 })
    await m.start()
    await vi.waitFor(async () => expect(await bridgeInfo(srv, 'cloud')).toMatchObject({ expired: 1, acked: 1, backlog: { messages: 0 } }), { timeout: 10_000 })
    await vi.waitFor(() => expect(sub.got.map((g) => g.payload)).toEqual(['kept']))
    expect(sub.got[0]?.expiry).toBeLessThan(3600)
  })
})

describe('an MQTT bridge across edgebus crashes', () => {
  it('loses nothing when edgebus is SIGKILLed five times during a drain: every message arrives at least once, in order per subject', async () => {
    const m = await mosquitto()
    const sub = await remoteSubscriber(m.url, 'site/#')
    subs.push(sub)
    const dir = mkdtempSync(join(tmpdir(), 'edgebus-bridge-kill-'))
    // a rate limit makes the drain last a few seconds, so the kills land in the middle of it
    const config = { bridges: [{ name: 'cloud', urls: [m.url], out: [{ from: 'dev/#', to: 'site/{#}' }], window: 500, rate: { msgs: 3000 }, backoff: { min: '50ms', max: '200ms' } }] }
    try {
      let srv = await startEdgebus({ config, dir })
      servers.push(srv)
      // the backlog is stored while the remote is down, so the drain starts with all of it, however slow the publisher
      await m.stop()
      const N = 20_000
      await publishMany(srv.mqttUrl, N, (i) => `dev/d${i % 8}`)
      await m.start()
      for (let kill = 0; kill < 5; kill++) {
        const before = deliveryReport(sub.got).unique
        await vi.waitFor(() => expect(deliveryReport(sub.got).unique).toBeGreaterThan(before + 700), { timeout: 15_000, interval: 50 })
        expect(deliveryReport(sub.got).unique).toBeLessThan(N)
        await srv.kill()
        servers = servers.filter((x) => x !== srv)
        srv = await startEdgebus({ config, dir })
        servers.push(srv)
      }
      await vi.waitFor(() => expect(deliveryReport(sub.got).unique).toBe(N), { timeout: 30_000, interval: 250 })
      const report = deliveryReport(sub.got)
      console.log(`mosquitto after 5 SIGKILLs: ${report.unique} unique, ${report.duplicates} duplicates`)
      expect(report.outOfOrder).toBe(0)
    } finally {
      await Promise.all(servers.splice(0).map((s) => s.stop()))
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})

describe('an MQTT bridge: failover, refusals, commands and loops', () => {
  it('fails over to the second URL when the first is down', async () => {
    const m = await mosquitto()
    const sub = await remoteSubscriber(m.url, 'site/#')
    subs.push(sub)
    const dead = `mqtt://127.0.0.1:${await freePort()}` // nothing listens there
    const srv = await edgebus({ urls: [dead, m.url], out: [{ from: 'dev/#', to: 'site/{#}' }] })
    await vi.waitFor(async () => expect(await bridgeInfo(srv, 'cloud')).toMatchObject({ state: 'connected', url: m.url }), { timeout: 10_000 })
    await publishMany(srv.mqttUrl, 10, () => 'dev/x')
    await vi.waitFor(() => expect(sub.got.length).toBe(10), { timeout: 10_000 })
    expect((await bridgeInfo(srv, 'cloud')).lastError).toContain(dead)
  })

  it('dead-letters a message mosquitto refuses (ACL, PUBACK 0x87) after maxDeliver refusals while the rest flows', async () => {
    const m = await mosquitto({ acl: 'topic readwrite site/#\ntopic read denied/#\n' })
    const sub = await remoteSubscriber(m.url, 'site/#')
    subs.push(sub)
    const srv = await edgebus({
      urls: [m.url], maxDeliver: 3, backoff: { min: '50ms', max: '200ms' },
      out: [{ from: 'dev/#', to: 'site/{#}' }, { from: 'secret/#', to: 'denied/{#}' }],
    })
    const watcher = await connectClient(srv.mqttUrl)
    await watcher.client.subscribeAsync('$dlq/bridge-cloud/bridge-cloud', { qos: 1 })
    const dev = await connectClient(srv.mqttUrl)
    await dev.client.publishAsync('secret/plans', 'no', { qos: 1 })
    await publishMany(srv.mqttUrl, 100, (i) => `dev/d${i % 2}`)
    await vi.waitFor(() => expect(sub.got.length).toBe(100), { timeout: 10_000 })
    const [notice] = await watcher.waitFor(1, 10_000)
    expect(JSON.parse(notice?.payload ?? '')).toMatchObject({ stream: 'bridge-cloud', consumer: 'bridge-cloud', subject: 'secret/plans', reason: 'term' })
    // the subscriber may see a message before the bridge has its PUBACK
    await vi.waitFor(async () => expect(await bridgeInfo(srv, 'cloud')).toMatchObject({ refused: 3, deadLettered: 1, acked: 100, backlog: { messages: 0 } }))
    expect(srv.output.join('\n')).toContain('bridge dead-lettered a message the remote refused')
    expect(sub.got.some((g) => g.topic.startsWith('denied'))).toBe(false)
  })

  it('in rules deliver a command from the cloud to a device subscribed on edgebus, marked with the bridge it came through', async () => {
    const m = await mosquitto()
    const srv = await edgebus({ urls: [m.url], in: [{ from: 'site1/cmd/+', to: 'devices/{1}/cmd' }] })
    const device = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await device.client.subscribeAsync('devices/d1/cmd', { qos: 1 })
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).inSubscribed).toBe(true), { timeout: 10_000 })
    const cloud = await connectClient(m.url)
    await cloud.client.publishAsync('site1/cmd/d1', 'reboot', { qos: 1 })
    const [cmd] = await device.waitFor(1, 10_000)
    expect(cmd).toMatchObject({ topic: 'devices/d1/cmd', payload: 'reboot' })
    expect((cmd?.properties?.userProperties as Record<string, string>)['edgebus-bridge']).toBe('cloud')
    expect((await bridgeInfo(srv, 'cloud')).received).toBe(1)
  })

  it('does not loop when in and out rules overlap: what came in is not sent back, what goes out does not come back', async () => {
    const m = await mosquitto()
    const remoteSub = await remoteSubscriber(m.url, 'shared/#')
    subs.push(remoteSub)
    const srv = await edgebus({ urls: [m.url], mqttVersion: 5, out: [{ from: 'shared/#' }], in: [{ from: 'shared/#' }] })
    const device = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await device.client.subscribeAsync('shared/#', { qos: 1 })
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).inSubscribed).toBe(true), { timeout: 10_000 })
    // local to remote: sent once; No Local keeps the remote from echoing it to the bridge
    await device.client.publishAsync('shared/up', 'from-edge', { qos: 1 })
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).acked).toBe(1), { timeout: 10_000 })
    // remote to local: delivered once, and the outbox (which captured it) does not send it back
    const cloud = await connectClient(m.url)
    await cloud.client.publishAsync('shared/down', 'from-cloud', { qos: 1 })
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).loopsPrevented).toBe(1), { timeout: 10_000 })
    const info = await bridgeInfo(srv, 'cloud')
    expect(info).toMatchObject({ sent: 1, acked: 1, received: 1, backlog: { messages: 0 } })
    await vi.waitFor(() => expect(device.messages.map((x) => x.payload).sort()).toEqual(['from-cloud', 'from-edge']))
    expect(remoteSub.got.map((g) => g.payload).sort()).toEqual(['from-cloud', 'from-edge'])
  })

  it('with MQTT 3.1.1 (no No Local) and overlapping in and out rules: a local message comes back down once to local subscribers and is not sent up again', async () => {
    const m = await mosquitto()
    const remoteSub = await remoteSubscriber(m.url, 'shared/#')
    subs.push(remoteSub)
    const srv = await edgebus({ urls: [m.url], mqttVersion: '3.1.1', out: [{ from: 'shared/#' }], in: [{ from: 'shared/#' }] })
    const device = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await device.client.subscribeAsync('shared/#', { qos: 1 })
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).inSubscribed).toBe(true), { timeout: 10_000 })
    await device.client.publishAsync('shared/up', 'from-edge', { qos: 1 })
    // the remote echoes it to the bridge's own subscription: published locally (marked), captured by the outbox, not resent
    await vi.waitFor(async () => expect(await bridgeInfo(srv, 'cloud')).toMatchObject({ sent: 1, acked: 1, received: 1, loopsPrevented: 1, backlog: { messages: 0 } }), { timeout: 10_000 })
    await vi.waitFor(() => expect(device.messages.map((x) => x.payload)).toEqual(['from-edge', 'from-edge']))
    // the second copy is the echo, marked with the bridge it came through
    expect(device.messages[1]?.properties?.userProperties).toMatchObject({ 'edgebus-bridge': 'cloud' })
    expect(remoteSub.got.map((g) => g.payload)).toEqual(['from-edge'])
  })
})
