import { copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { BUNDLE, run, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { startMosquitto, startNats, type Mosquitto, type NatsServer } from '../support/remotes.ts'
import { bridgeInfo, deliveryReport, publishMany, remoteSubscriber } from './helpers.ts'

/** How a bridge drains: its rate limit, its watchdog, and the bundle carrying both remote clients (issue 14). */

const servers: StartedEdgebus[] = []
const remotes: Array<Mosquitto | NatsServer> = []
const subs: Array<{ end(): Promise<void> }> = []
const dirs: string[] = []

afterEach(async () => {
  await Promise.all(subs.splice(0).map((s) => s.end().catch(() => {})))
  await Promise.all(servers.splice(0).map((s) => s.stop()))
  await Promise.all(remotes.splice(0).map((r) => r.destroy()))
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

describe('draining a backlog', () => {
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
