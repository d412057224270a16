import { copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { BUNDLE, run, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'
import { startMosquitto, startNats, type Mosquitto, type NatsServer } from '../support/remotes.ts'
import { bridgeInfo, deliveryReport, publishMany, remoteSubscriber } from './helpers.ts'

/** How a bridge drains: its rate limit, its watchdog, and the bundle carrying both remote clients (issue 14). */

const servers: StartedEdgebus[] = []
const remotes: Array<Mosquitto | NatsServer> = []
const subs: Array<{ end(): Promise<void> }> = []
const dirs: string[] = []

afterEach(async () => {
  await endAllClients()
  await Promise.all(subs.splice(0).map((s) => s.end().catch(() => {})))
  await Promise.all(servers.splice(0).map((s) => s.stop()))
  await Promise.all(remotes.splice(0).map((r) => r.destroy()))
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

describe('draining a backlog', () => {
  it('sends live messages in stream order behind the backlog: a b/x message published during the drain of 20,000 a/ messages arrives after every a/ message stored before it, its latency the rest of the drain', async () => {
    const m = await startMosquitto()
    remotes.push(m)
    const srv = await startEdgebus({ config: { bridges: [{ name: 'cloud', urls: [m.url], out: [{ from: 'a/#' }, { from: 'b/#' }], backoff: { min: '50ms', max: '100ms' } }] } })
    servers.push(srv)
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).state).toBe('connected'), { timeout: 10_000 })
    await m.stop()
    await publishMany(srv.mqttUrl, 20_000, (i) => `a/${i % 8}`)
    await m.start()
    const sub = await remoteSubscriber(m.url, '#')
    subs.push(sub)
    // live messages every 20 ms while the backlog drains
    const live: Array<{ i: number; at: number }> = []
    const arrivedAt = new Map<number, number>()
    sub.client.on('message', (topic, payload) => { if (topic === 'b/x') arrivedAt.set(Number(payload.toString()), Date.now()) })
    const pub = await connectClient(srv.mqttUrl)
    for (let i = 0; (await bridgeInfo(srv, 'cloud')).acked < 20_000 && i < 500; i++) {
      live.push({ i, at: Date.now() })
      await pub.client.publishAsync('b/x', String(i), { qos: 1 })
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    await vi.waitFor(() => expect(arrivedAt.size).toBe(live.length), { timeout: 30_000 })
    const got = sub.got
    const lastBacklog = got.findLastIndex((g) => g.topic.startsWith('a/'))
    const firstLive = got.findIndex((g) => g.topic === 'b/x')
    // stream order: every live message went out after the whole backlog stored before it
    expect(lastBacklog).toBeGreaterThan(10_000)
    expect(firstLive).toBeGreaterThan(lastBacklog)
    expect(deliveryReport(got).outOfOrder).toBe(0)
    const latencies = live.map((l) => (arrivedAt.get(l.i) as number) - l.at)
    // the first live message waited for most of the drain; the last ones, published once the backlog was through, did not
    expect(live.length).toBeGreaterThan(1)
    expect(latencies[0]).toBeGreaterThan(latencies[latencies.length - 1] as number)
    console.log(`live b/x during a 20,000 backlog drain: ${live.length} messages, latency first ${latencies[0]} ms, last ${latencies[latencies.length - 1]} ms`)
  })

  it('keeps to rate.msgs: a backlog of 900 at 300 msg/s takes at least 2.5 s', async () => {
    const m = await startMosquitto()
    remotes.push(m)
    const sub = await remoteSubscriber(m.url, 'site/#')
    subs.push(sub)
    const srv = await startEdgebus({ config: { bridges: [{ name: 'cloud', urls: [m.url], out: [{ from: 'dev/#', to: 'site/{#}' }], rate: { msgs: 300 } }] } })
    servers.push(srv)
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).state).toBe('connected'), { timeout: 10_000 })
    const t0 = Date.now()
    await publishMany(srv.mqttUrl, 900, () => 'dev/x')
    await vi.waitFor(() => expect(sub.got.length).toBe(900), { timeout: 15_000, interval: 50 })
    // the bucket holds a tenth of a second's worth (30); the other 870 wait for tokens: 2.9 s
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2500)
    expect(deliveryReport(sub.got)).toEqual({ unique: 900, duplicates: 0, outOfOrder: 0 })
  })

  it('reconnects through its watchdog when the remote is up but acknowledges nothing (mosquitto frozen by SIGSTOP), then delivers everything', async () => {
    const m = await startMosquitto()
    remotes.push(m)
    const sub = await remoteSubscriber(m.url, 'site/#')
    subs.push(sub)
    const srv = await startEdgebus({ config: { bridges: [{ name: 'cloud', urls: [m.url], out: [{ from: 'dev/#', to: 'site/{#}' }], ackTimeout: '1s', connectTimeout: '500ms', keepalive: 0, backoff: { min: '100ms', max: '300ms' } }] } })
    servers.push(srv)
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).state).toBe('connected'), { timeout: 10_000 })
    m.signal('SIGSTOP')
    await publishMany(srv.mqttUrl, 50, () => 'dev/x')
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).watchdogReconnects).toBeGreaterThanOrEqual(1), { timeout: 10_000, interval: 100 })
    expect(srv.output.join('\n')).toContain('bridge watchdog')
    m.signal('SIGCONT')
    await vi.waitFor(() => expect(deliveryReport(sub.got).unique).toBe(50), { timeout: 15_000, interval: 100 })
    await vi.waitFor(async () => expect((await bridgeInfo(srv, 'cloud')).backlog.messages).toBe(0), { timeout: 10_000 })
  })
})

describe('the bundle with bridges', () => {
  it('runs alone in an empty directory (no node_modules) and forwards to mosquitto and to JetStream; edgebus bridge ls shows both', async () => {
    const m = await startMosquitto()
    remotes.push(m)
    const n = await startNats()
    remotes.push(n)
    const { jsm } = await n.client()
    await jsm.streams.add({ name: 'CLOUD', subjects: ['cloud.>'] })
    const sub = await remoteSubscriber(m.url, 'site/#')
    subs.push(sub)
    const dir = mkdtempSync(join(tmpdir(), 'edgebus-alone-'))
    dirs.push(dir)
    copyFileSync(BUNDLE, join(dir, 'edgebus.mjs'))
    const srv = await startEdgebus({
      dir,
      command: [process.execPath, join(dir, 'edgebus.mjs')],
      config: { bridges: [
        { name: 'mq', urls: [m.url], out: [{ from: 'a/#', to: 'site/{#}' }] },
        { name: 'js', urls: [n.url], out: [{ from: 'b/#', to: 'cloud.{#}' }] },
      ] },
    })
    servers.push(srv)
    await publishMany(srv.mqttUrl, 10, (i) => (i % 2 === 0 ? 'a/x' : 'b/y'))
    await vi.waitFor(() => expect(sub.got.length).toBe(5), { timeout: 10_000 })
    await vi.waitFor(async () => expect((await jsm.streams.info('CLOUD')).state.messages).toBe(5), { timeout: 10_000 })
    const ls = await run(process.execPath, [join(dir, 'edgebus.mjs'), 'bridge', 'ls', '--server', srv.httpUrl])
    expect(ls.code).toBe(0)
    const lines = ls.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^NAME\s+STATE\s+URL\s+BACKLOG/)
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 3))).toEqual([['mq', 'connected', m.url], ['js', 'connected', n.url]])
    const info = await run(process.execPath, [join(dir, 'edgebus.mjs'), 'bridge', 'info', 'js', '--server', srv.httpUrl])
    expect(JSON.parse(info.stdout).bridge).toMatchObject({ name: 'js', kind: 'nats', acked: 5 })
    const missing = await run(process.execPath, [join(dir, 'edgebus.mjs'), 'bridge', 'info', 'nope', '--server', srv.httpUrl])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain('EBRIDGE_NOT_FOUND')
  })
})
