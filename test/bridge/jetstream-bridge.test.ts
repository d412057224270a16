import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { DeliverPolicy, AckPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'
import { startNats, type NatsServer } from '../support/remotes.ts'
import { makeTestPki } from '../support/tls.ts'
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

async function nats(o: Parameters<typeof startNats>[0] = {}): Promise<NatsServer> {
  const n = await startNats(o)
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

  it('forwards over TLS with a token (tls:// URL, the remote\'s CA)', async () => {
    const pki = makeTestPki()
    const n = await startNats({ token: 's3cret', tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca } })
    remotes.push(n)
    const { jsm } = await n.client()
    await cloudStream(jsm)
    const srv = await edgebus({ urls: [n.url], token: 's3cret', ca: pki.ca, out: [{ from: 'dev/#', to: 'cloud.{#}' }] })
    await publishMany(srv.mqttUrl, 20, () => 'dev/x')
    await vi.waitFor(async () => expect((await jsm.streams.info('CLOUD')).state.messages).toBe(20), { timeout: 10_000 })
    expect(await bridgeInfo(srv, 'js')).toMatchObject({ state: 'connected', url: n.url })
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

describe('a JetStream bridge: crashes, refusals, commands and loops', () => {
  it('loses nothing when edgebus is SIGKILLed five times during a drain: the remote stores each message once, in order per subject', async () => {
    const n = await nats()
    const { jsm } = await n.client()
    await cloudStream(jsm)
    const dir = mkdtempSync(join(tmpdir(), 'edgebus-bridge-kill-'))
    // a rate limit makes the drain last a few seconds, so the kills land in the middle of it
    const bridge = { urls: [n.url], out: [{ from: 'dev/#', to: 'cloud.{#}' }], window: 500, rate: { msgs: 3000 }, backoff: { min: '50ms', max: '200ms' } }
    try {
      let srv = await edgebus(bridge, dir)
      // the backlog is stored while the remote is down, so the drain starts with all of it, however slow the publisher
      await n.stop()
      const N = 20_000
      await publishMany(srv.mqttUrl, N, (i) => `dev/d${i % 8}`)
      await n.start()
      const c = await n.client()
      let stored = 0
      for (let kill = 0; kill < 5; kill++) {
        const before = stored
        // a kill only once the remote has taken more of the backlog since the last one
        await vi.waitFor(async () => {
          stored = (await c.jsm.streams.info('CLOUD')).state.messages
          expect(stored).toBeGreaterThan(before + 700)
        }, { timeout: 15_000, interval: 50 })
        expect(stored).toBeLessThan(N)
        await srv.kill()
        servers = servers.filter((s) => s !== srv)
        srv = await edgebus(bridge, dir)
      }
      await vi.waitFor(async () => expect((await bridgeInfo(srv, 'js')).backlog.messages).toBe(0), { timeout: 30_000, interval: 250 })
      expect((await c.jsm.streams.info('CLOUD')).state.messages).toBe(N)
      const all = await readAll(c.js, c.jsm, N)
      expect(deliveryReport(all)).toEqual({ unique: N, duplicates: 0, outOfOrder: 0 })
      console.log(`after 5 SIGKILLs: ${N} stored once; the last run's resends the remote recognised: ${(await bridgeInfo(srv, 'js')).remoteDuplicates}`)
    } finally {
      await Promise.all(servers.splice(0).map((s) => s.stop()))
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)

  it('dead-letters a message the remote stream refuses (over its max_msg_size) after maxDeliver refusals while the rest flows', async () => {
    const n = await nats()
    const { jsm } = await n.client()
    await cloudStream(jsm, { max_msg_size: 1024 })
    const srv = await edgebus({ urls: [n.url], maxDeliver: 2, backoff: { min: '50ms', max: '100ms' }, out: [{ from: 'dev/#', to: 'cloud.{#}' }] })
    try {
      const watcher = await connectClient(srv.mqttUrl)
      await watcher.client.subscribeAsync('$dlq/bridge-js/bridge-js', { qos: 1 })
      const dev = await connectClient(srv.mqttUrl)
      await dev.client.publishAsync('dev/big', Buffer.alloc(4096, 1), { qos: 1 })
      await publishMany(srv.mqttUrl, 50, () => 'dev/small')
      const [notice] = await watcher.waitFor(1, 10_000)
      expect(JSON.parse(notice?.payload ?? '')).toMatchObject({ subject: 'dev/big', reason: 'term' })
      await vi.waitFor(async () => expect(await bridgeInfo(srv, 'js')).toMatchObject({ refused: 2, deadLettered: 1, acked: 50, backlog: { messages: 0 } }))
      expect((await jsm.streams.info('CLOUD')).state.messages).toBe(50)
    } finally {
      await endAllClients()
    }
  })

  it('dead-letters a message no remote stream captures (503 no responders) after maxDeliver refusals, with the reason logged, while the rest flows', async () => {
    const n = await nats()
    const { jsm } = await n.client()
    await cloudStream(jsm)
    const srv = await edgebus({ urls: [n.url], maxDeliver: 2, backoff: { min: '50ms', max: '100ms' }, out: [{ from: 'dev/#', to: 'cloud.{#}' }, { from: 'lost/#', to: 'nowhere.{#}' }] })
    try {
      await vi.waitFor(async () => expect((await bridgeInfo(srv, 'js')).state).toBe('connected'), { timeout: 10_000 })
      const dev = await connectClient(srv.mqttUrl)
      await dev.client.publishAsync('lost/x', 'no stream', { qos: 1 })
      await publishMany(srv.mqttUrl, 20, () => 'dev/ok')
      await vi.waitFor(async () => expect(await bridgeInfo(srv, 'js')).toMatchObject({ refused: 2, deadLettered: 1, acked: 20, backlog: { messages: 0 } }), { timeout: 10_000 })
      expect((await jsm.streams.info('CLOUD')).state.messages).toBe(20)
      expect(srv.output.some((l) => l.includes('dead-lettered') && l.includes('no JetStream stream on the remote captures \\"nowhere.x\\"'))).toBe(true)
    } finally {
      await endAllClients()
    }
  })

  it('dead-letters a publish the NATS user may not make (permissions violation) while the subjects it may publish flow', async () => {
    const allowed = { publish: { allow: ['cloud.>', '$JS.API.>'], deny: ['cloud.secret.>'] }, subscribe: { allow: ['_INBOX.>'] } }
    const n = await nats({ users: [{ user: 'admin', password: 'a' }, { user: 'edge', password: 'e', permissions: allowed }] })
    const { jsm } = await n.client()
    await cloudStream(jsm)
    const srv = await edgebus({ urls: [n.url], username: 'edge', password: 'e', maxDeliver: 2, backoff: { min: '50ms', max: '100ms' }, out: [{ from: 'dev/#', to: 'cloud.{#}' }] })
    try {
      await vi.waitFor(async () => expect((await bridgeInfo(srv, 'js')).state).toBe('connected'), { timeout: 10_000 })
      const dev = await connectClient(srv.mqttUrl)
      await dev.client.publishAsync('dev/secret/key', 'not for the cloud', { qos: 1 })
      await publishMany(srv.mqttUrl, 20, () => 'dev/ok')
      await vi.waitFor(async () => expect(await bridgeInfo(srv, 'js')).toMatchObject({ refused: 2, deadLettered: 1, acked: 20, backlog: { messages: 0 } }), { timeout: 10_000 })
      expect((await jsm.streams.info('CLOUD')).state.messages).toBe(20)
      expect(srv.output.some((l) => l.includes('dead-lettered') && /permissions? violation/i.test(l) && l.includes('cloud.secret.key'))).toBe(true)
    } finally {
      await endAllClients()
    }
  })

  it('an in rule naming a remote stream reads it with a durable pull consumer: commands stored while edgebus was away arrive, acked on the remote once published locally (at least once)', async () => {
    const n = await nats()
    const { jsm, js } = await n.client()
    await jsm.streams.add({ name: 'CMDS', subjects: ['cmds.>'] })
    for (let i = 0; i < 300; i++) await js.publish(`cmds.d${i % 3}`, String(i), { msgID: `c${i}` })
    const config = { bridges: [{ name: 'js', urls: [n.url], in: [{ from: 'cmds.>', to: 'devices/{#}/cmd', stream: 'CMDS' }] }], streams: [{ name: 'commands', subjects: ['devices/#'] }] }
    const srv = await startEdgebus({ config })
    servers.push(srv)
    // every command is in the local stream, in the remote stream's order, with its Nats-Msg-Id as msg-id
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'js')).received).toBe(300), { timeout: 15_000 })
    const read = async (): Promise<Array<{ subject: string; payload: string; userProperties?: Array<[string, string]> }>> =>
      (await (await fetch(`${srv.httpUrl}/api/streams/commands/messages?limit=1000`)).text()).trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { subject: string; payload: string; userProperties?: Array<[string, string]> })
    // received counts on arrival; the local store follows
    await vi.waitFor(async () => expect((await read()).length).toBe(300), { timeout: 10_000 })
    const local = await read()
    expect(local.map((x) => Number(x.payload))).toEqual(Array.from({ length: 300 }, (_, i) => i))
    expect(local[0]?.subject).toBe('devices/d0/cmd')
    expect(local[0]?.userProperties).toContainEqual(['msg-id', 'c0'])
    // acked on the remote: nothing pending, the ack floor at the last message
    await vi.waitFor(async () => {
      const ci = await jsm.consumers.info('CMDS', 'edgebus-js-in0')
      expect({ pending: ci.num_pending, ackPending: ci.num_ack_pending, floor: ci.ack_floor.stream_seq }).toEqual({ pending: 0, ackPending: 0, floor: 300 })
    }, { timeout: 10_000 })
    // a restart resumes from the durable consumer: only new commands come
    await srv.stop()
    servers = []
    await js.publish('cmds.d9', 'after')
    const again = await startEdgebus({ config })
    servers.push(again)
    await vi.waitFor(async () => expect((await bridgeInfo(again, 'js')).received).toBe(1), { timeout: 15_000 })
  })

  it('an in rule naming a remote stream loses no command when edgebus is SIGKILLed while taking them: what was not acked comes again after ackTimeout', async () => {
    const n = await nats()
    const { jsm, js } = await n.client()
    await jsm.streams.add({ name: 'CMDS', subjects: ['cmds.>'] })
    const count = 3000
    await Promise.all(Array.from({ length: count }, (_, i) => js.publish(`cmds.d${i % 5}`, String(i))))
    const dir = mkdtempSync(join(tmpdir(), 'edgebus-js-in-kill-'))
    const config = { bridges: [{ name: 'js', urls: [n.url], ackTimeout: '1s', in: [{ from: 'cmds.>', to: 'devices/{#}/cmd', stream: 'CMDS' }] }], streams: [{ name: 'commands', subjects: ['devices/#'] }] }
    try {
      const first = await startEdgebus({ config, dir })
      servers.push(first)
      await vi.waitFor(async () => expect((await bridgeInfo(first, 'js')).received).toBeGreaterThan(0), { timeout: 15_000, interval: 20 })
      await first.kill()
      servers = []
      const second = await startEdgebus({ config, dir })
      servers.push(second)
      const payloads = async (): Promise<string[]> => (await (await fetch(`${second.httpUrl}/api/streams/commands/messages?limit=100000`)).text()).trim().split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { payload: string }).payload)
      await vi.waitFor(async () => expect(new Set(await payloads()).size).toBe(count), { timeout: 20_000, interval: 200 })
      await vi.waitFor(async () => expect((await jsm.consumers.info('CMDS', 'edgebus-js-in0')).num_ack_pending).toBe(0), { timeout: 10_000 })
      // what the killed edgebus had taken and not acked came again: deliveries (the consumer sequence) beyond the stream's messages
      expect((await jsm.consumers.info('CMDS', 'edgebus-js-in0')).delivered.consumer_seq).toBeGreaterThan(count)
    } finally {
      await Promise.all(servers.splice(0).map((s) => s.stop()))
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('in rules deliver a command published on NATS to a device on edgebus; overlapping out and in rules do not loop', async () => {
    const n = await nats()
    const { jsm, nc } = await n.client()
    await cloudStream(jsm)
    const srv = await edgebus({ urls: [n.url], out: [{ from: 'cloud/#' }], in: [{ from: 'cloud.>' }] })
    try {
      const device = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
      await device.client.subscribeAsync('cloud/#', { qos: 1 })
      await vi.waitFor(async () => expect((await bridgeInfo(srv, 'js')).inSubscribed).toBe(true), { timeout: 10_000 })
      // NATS to edgebus: delivered; the outbox captured it and does not send it back
      nc.publish('cloud.d1.cmd', 'reboot')
      const [cmd] = await device.waitFor(1, 10_000)
      expect(cmd).toMatchObject({ topic: 'cloud/d1/cmd', payload: 'reboot' })
      await vi.waitFor(async () => expect((await bridgeInfo(srv, 'js')).loopsPrevented).toBe(1), { timeout: 10_000 })
      // edgebus to NATS: stored once, and not echoed back to the bridge (noEcho)
      await device.client.publishAsync('cloud/d1/status', 'ok', { qos: 1 })
      await vi.waitFor(async () => expect((await bridgeInfo(srv, 'js')).acked).toBe(1), { timeout: 10_000 })
      expect((await jsm.streams.info('CLOUD')).state.messages).toBe(2) // the NATS publish (the stream captures cloud.>) and ours
      expect((await bridgeInfo(srv, 'js'))).toMatchObject({ sent: 1, received: 1 })
      await vi.waitFor(() => expect(device.messages.map((m) => m.payload)).toEqual(['reboot', 'ok']))
    } finally {
      await endAllClients()
    }
  })
})
