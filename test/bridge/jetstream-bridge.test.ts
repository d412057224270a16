import { afterEach, describe, expect, it, vi } from 'vitest'
import { DeliverPolicy, AckPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { startNats, type NatsServer } from '../support/remotes.ts'
import { bridgeInfo, deliveryReport, publishMany } from './helpers.ts'

/**
 * Bridges to Debian's nats-server with JetStream: out messages are JetStream publishes carrying
 * Nats-Msg-Id (the msg-id, else <outbox>:<seq>), so the remote stream, with its duplicate window,
 * stores each once however often the bridge resends (issue 14).
 */

let servers: StartedEdgebus[] = []
let remotes: NatsServer[] = []

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()))
  await Promise.all(remotes.splice(0).map((r) => r.destroy()))
})

async function nats(): Promise<NatsServer> {
  const n = await startNats()
  remotes.push(n)
  return n
}

/** The remote stream every test forwards to: subjects cloud.>, a 2-minute duplicate window. */
async function cloudStream(jsm: JetStreamManager, extra: Record<string, unknown> = {}): Promise<void> {
  await jsm.streams.add({ name: 'CLOUD', subjects: ['cloud.>'], duplicate_window: 120_000_000_000, ...extra })
}

/** Every message of the remote stream, in stream order: subject (MQTT spelling of the payload index check) and payload. */
async function readAll(js: JetStreamClient, jsm: JetStreamManager, n: number): Promise<Array<{ topic: string; payload: string; msgId: string | undefined }>> {
  const ci = await jsm.consumers.add('CLOUD', { deliver_policy: DeliverPolicy.All, ack_policy: AckPolicy.None })
  const c = await js.consumers.get('CLOUD', ci.name)
  const out: Array<{ topic: string; payload: string; msgId: string | undefined }> = []
  while (out.length < n) {
    const batch = await c.fetch({ max_messages: Math.min(10_000, n - out.length), expires: 2000 })
    let got = 0
    for await (const m of batch) {
      out.push({ topic: m.subject, payload: m.string(), msgId: m.headers?.get('Nats-Msg-Id') })
      got++
    }
    if (got === 0) break
  }
  return out
}

async function edgebus(bridge: Record<string, unknown>, dir?: string): Promise<StartedEdgebus> {
  const srv = await startEdgebus({ config: { bridges: [{ name: 'js', ...bridge }] }, ...(dir ? { dir } : {}) })
  servers.push(srv)
  return srv
}

describe('a JetStream bridge to nats-server -js', () => {
  it('forwards steadily: NATS-style rewrite, Nats-Msg-Id end to end, a publish ack moves the cursor', async () => {
    const n = await nats()
    const { jsm, js } = await n.client()
    await cloudStream(jsm)
    const srv = await edgebus({ urls: [n.url], out: [{ from: 'sensors/+/temp', to: 'cloud.site1.{1}.temp' }] })
    await publishMany(srv.mqttUrl, 200, (i) => `sensors/d${i % 4}/temp`, { properties: (i) => (i === 0 ? { userProperties: { 'msg-id': 'first' } } : {}) })
    await vi.waitFor(async () => expect((await jsm.streams.info('CLOUD')).state.messages).toBe(200), { timeout: 10_000 })
    const all = await readAll(js, jsm, 200)
    expect(all[0]).toEqual({ topic: 'cloud.site1.d0.temp', payload: '0', msgId: 'first' })
    expect(all[1]?.msgId).toBe('bridge-js:2')
    expect(deliveryReport(all)).toEqual({ unique: 200, duplicates: 0, outOfOrder: 0 })
    await vi.waitFor(async () => expect(await bridgeInfo(srv, 'js')).toMatchObject({ state: 'connected', acked: 200, backlog: { messages: 0 } }))
  })

  it('keeps 100,000 QoS 1 messages published while nats-server is stopped and stores each exactly once, in order per subject, once it is back', async () => {
    const n = await nats()
    const { jsm, js, nc } = await n.client()
    await cloudStream(jsm)
    await nc.close()
    const srv = await edgebus({ urls: [n.url], out: [{ from: 'dev/#', to: 'cloud.{#}' }], window: 2000, backoff: { min: '100ms', max: '500ms' } })
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'js')).state).toBe('connected'), { timeout: 10_000 })
    await n.stop()
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'js')).state).not.toBe('connected'), { timeout: 10_000 })
    const N = 100_000
    await publishMany(srv.mqttUrl, N, (i) => `dev/d${i % 10}`)
    expect((await bridgeInfo(srv, 'js')).backlog.messages).toBe(N)
    await n.start()
    const c = await n.client()
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'js')).backlog.messages).toBe(0), { timeout: 45_000, interval: 250 })
    const info = await c.jsm.streams.info('CLOUD')
    expect(info.state.messages).toBe(N)
    const all = await readAll(c.js, c.jsm, N)
    expect(deliveryReport(all)).toEqual({ unique: N, duplicates: 0, outOfOrder: 0 })
  }, 60_000)
})
