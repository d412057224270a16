import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients, sleep, type TestClient } from '../support/mqtt.ts'
import { CONNACK_OK, connectPacket, rawConnect, subscribePacket, varint } from '../support/raw.ts'

/**
 * Retained messages and persistent sessions across restarts of the real server (dist/edgebus.mjs),
 * graceful (SIGTERM) and not (SIGKILL), on a data directory that is kept between the runs.
 */

interface PersistenceHealth {
  fileBytes: number
  appendedBytes: number
  liveBytes: number
  compactions: number
  retained: number
  sessions: number
  queued: number
  queueDropped: number
  sessionsExpired: number
}

const dirs: string[] = []
const running: StartedEdgebus[] = []

afterEach(async () => {
  await endAllClients()
  for (const s of running.splice(0)) await s.kill()
})
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'edgebus-restart-'))
  dirs.push(d)
  return d
}

async function start(dir: string, args: string[] = []): Promise<StartedEdgebus> {
  const s = await startEdgebus({ dir, args })
  running.push(s)
  return s
}

async function health(s: StartedEdgebus): Promise<PersistenceHealth> {
  const body = await (await fetch(`${s.httpUrl}/healthz`)).json() as { persistence: PersistenceHealth }
  return body.persistence
}

async function waitUntil(what: string, test: () => Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!(await test())) {
    if (Date.now() > until) throw new Error(`timed out waiting until ${what}`)
    await sleep(20)
  }
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)

/** Subscribes to a filter on a new connection and collects the retained messages it is sent. */
async function retainedUnder(s: StartedEdgebus, filter: string, expected: number): Promise<Map<string, string>> {
  const c = await connectClient(s.mqttUrl)
  await c.client.subscribeAsync(filter, { qos: 0 })
  if (expected > 0) await c.waitFor(expected, 10_000)
  await sleep(expected > 0 ? 50 : 200) // nothing more arrives
  await c.end()
  expect(c.messages.every((m) => m.retain)).toBe(true)
  expect(c.messages).toHaveLength(expected)
  return new Map(c.messages.map((m) => [m.topic, m.payload]))
}

async function checkRetained(s: StartedEdgebus, expected: Map<string, string>): Promise<void> {
  expect(await retainedUnder(s, '#', expected.size)).toEqual(expected)
  const site3 = [...expected].filter(([t]) => t.startsWith('site/3/'))
  expect(await retainedUnder(s, 'site/3/#', site3.length)).toEqual(new Map(site3))
  expect((await retainedUnder(s, 'site/+/+/temp', expected.size)).size).toBe(expected.size)
  expect(await retainedUnder(s, '$edge/#', 1)).toEqual(new Map([['$edge/status', 'dollar']]))
  expect(await retainedUnder(s, 'site/4/dev4/temp', expected.has('site/4/dev4/temp') ? 1 : 0)).toEqual(new Map([...expected].filter(([t]) => t === 'site/4/dev4/temp')))
}

describe('retained messages across restarts', () => {
  it('thousands of retained messages, updated and cleared, under wildcard lookups survive a SIGKILL and a graceful restart', async () => {
    const dir = tempDir()
    let srv = await start(dir)
    const pub = await connectClient(srv.mqttUrl)
    const expected = new Map<string, string>()
    const topicOf = (i: number): string => `site/${i % 10}/dev${i}/temp`
    await Promise.all(range(0, 3000).map((i) => {
      expected.set(topicOf(i), `v${i}`)
      return pub.client.publishAsync(topicOf(i), `v${i}`, { retain: true, qos: 1 })
    }))
    await waitUntil('3000 retained', async () => (await health(srv)).retained === 3000)
    // QoS 2: the broker has stored the change when the publish completes
    await Promise.all(range(0, 3000).filter((i) => i % 7 === 0).map((i) => {
      expected.set(topicOf(i), `updated${i}`)
      return pub.client.publishAsync(topicOf(i), `updated${i}`, { retain: true, qos: 2 })
    }))
    await Promise.all(range(0, 3000).filter((i) => i % 11 === 0).map((i) => {
      expected.delete(topicOf(i))
      return pub.client.publishAsync(topicOf(i), '', { retain: true, qos: 2 })
    }))
    await pub.client.publishAsync('$edge/status', 'dollar', { retain: true, qos: 2 })
    await pub.end()
    await checkRetained(srv, expected)

    await srv.kill()
    srv = await start(dir)
    expect((await health(srv)).retained).toBe(expected.size + 1)
    await checkRetained(srv, expected)

    expect(await srv.stop()).toBe(0)
    srv = await start(dir)
    await checkRetained(srv, expected)
  })

  it('the state file stays bounded under many updates of the same retained topics', async () => {
    const dir = tempDir()
    let srv = await start(dir)
    const pub = await connectClient(srv.mqttUrl)
    const filler = 'x'.repeat(200)
    for (let round = 0; round < 150; round++) {
      await Promise.all(range(0, 100).map((i) => pub.client.publishAsync(`tank/${i}/level`, `${round}:${filler}`, { retain: true, qos: 0 })))
    }
    await pub.client.publishAsync('tank/last', 'done', { retain: true, qos: 2 })
    const h = await health(srv)
    // a compaction may be renaming its .tmp file right now: a file that vanished counts as 0
    const sizeOf = (n: string): number => { try { return statSync(join(dir, 'data', 'mqtt', n)).size } catch { return 0 } }
    const onDisk = readdirSync(join(dir, 'data', 'mqtt')).reduce((sum, n) => sum + sizeOf(n), 0)
    expect(h.appendedBytes).toBeGreaterThan(3.5 * 1024 * 1024) // 15,000 updates of ~250 bytes
    expect(h.compactions).toBeGreaterThanOrEqual(2)
    expect(h.liveBytes).toBeLessThan(40 * 1024)
    // the rule: grown by more than max(1 MiB, live) since the last rewrite
    expect(onDisk).toBeLessThan(1.5 * 1024 * 1024)
    await pub.end()
    expect(await srv.stop()).toBe(0)
    srv = await start(dir)
    const got = await retainedUnder(srv, 'tank/+/level', 100)
    expect([...got.values()].every((v) => v.startsWith('149:'))).toBe(true)
  })

  it('starts on a state file with a damaged record and a torn tail, keeping the rest', async () => {
    const dir = tempDir()
    let srv = await start(dir)
    const pub = await connectClient(srv.mqttUrl)
    await Promise.all(range(0, 100).map((i) => pub.client.publishAsync(`keep/${i}`, `payload-${i}-end`, { retain: true, qos: 1 })))
    await waitUntil('100 retained', async () => (await health(srv)).retained === 100)
    await pub.end()
    expect(await srv.stop()).toBe(0)
    const file = join(dir, 'data', 'mqtt', readdirSync(join(dir, 'data', 'mqtt')).find((n) => n.endsWith('.log')) as string)
    const bytes = readFileSync(file)
    const at = bytes.indexOf('payload-50-end')
    bytes.writeUInt8(bytes.readUInt8(at + 3) ^ 0x20, at + 3)
    writeFileSync(file, Buffer.concat([bytes, bytes.subarray(bytes.length - 40, bytes.length - 9)]))
    srv = await start(dir)
    expect(srv.output.some((l) => l.includes('EPERSIST_CORRUPT'))).toBe(true)
    expect(srv.output.some((l) => l.includes('torn record'))).toBe(true)
    const got = await retainedUnder(srv, 'keep/#', 99)
    expect(got.has('keep/50')).toBe(false)
    expect(got.get('keep/99')).toBe('payload-99-end')
  })
})

describe('a stray state file (issue 15, item 2)', () => {
  for (const [what, bytes] of [['an empty', Buffer.alloc(0)], ['a header-only', Buffer.from('edgebus-mqtt-v1\n', 'latin1')], ['a 4 KB zero-filled', Buffer.alloc(4096)]] as const) {
    it(`${what} newer generation beside the intact one costs nothing: 100 retained and 20 queued are served, the stray is set aside and logged`, async () => {
      const dir = tempDir()
      let srv = await start(dir)
      let sub = await connectClient(srv.mqttUrl, { clientId: 'stray-q', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } })
      await sub.client.subscribeAsync('q/#', { qos: 1 })
      await sub.end()
      const pub = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
      await Promise.all(range(0, 100).map((i) => pub.client.publishAsync(`keep/${i}`, Buffer.alloc(500, 0x61), { retain: true, qos: 1 })))
      await Promise.all(range(0, 20).map((i) => pub.client.publishAsync(`q/${i}`, `m${i}`, { qos: 1 })))
      await pub.end()
      expect(await srv.stop()).toBe(0)
      const mqttDir = join(dir, 'data', 'mqtt')
      writeFileSync(join(mqttDir, 'state-00000009.log'), bytes)
      srv = await start(dir)
      expect(srv.output.some((l) => l.includes('state-00000009.log.stray') && l.includes('EPERSIST_CORRUPT'))).toBe(true)
      expect((await retainedUnder(srv, 'keep/#', 100)).size).toBe(100)
      sub = await connectClient(srv.mqttUrl, { clientId: 'stray-q', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } })
      await sub.waitFor(20)
      expect(sub.messages.map((m) => m.payload)).toEqual(range(0, 20).map((i) => `m${i}`))
      expect(readdirSync(mqttDir)).toContain('state-00000009.log.stray')
    })
  }
})

describe('persistence.enabled false', () => {
  it("keeps aedes' in-memory store: nothing on disk, nothing survives", async () => {
    const dir = tempDir()
    let srv = await start(dir, ['--persistence-enabled', 'false'])
    const pub = await connectClient(srv.mqttUrl)
    await pub.client.publishAsync('mem/x', 'gone', { retain: true, qos: 2 })
    await pub.end()
    expect(await srv.stop()).toBe(0)
    srv = await start(dir, ['--persistence-enabled', 'false'])
    await retainedUnder(srv, 'mem/#', 0)
    expect(readdirSync(dir)).not.toContain('data')
  })
})

describe('persistent sessions across restarts', () => {
  it("a persistent session's offline QoS 1 queue survives a SIGKILL and a graceful restart, and is delivered once, in order", async () => {
    const dir = tempDir()
    let srv = await start(dir)
    let sub = await connectClient(srv.mqttUrl, { clientId: 'offline-q', clean: false })
    await sub.client.subscribeAsync('q/#', { qos: 1 })
    await sub.end()
    let pub = await connectClient(srv.mqttUrl)
    await Promise.all(range(0, 200).map((i) => pub.client.publishAsync(`q/${i % 5}`, `m${i}`, { qos: 1 })))
    await waitUntil('200 queued', async () => (await health(srv)).queued === 200)
    await pub.end()

    await srv.kill()
    srv = await start(dir)
    expect((await health(srv)).queued).toBe(200)
    // published after the restart, the session still offline: queued as well
    pub = await connectClient(srv.mqttUrl)
    await Promise.all(range(200, 250).map((i) => pub.client.publishAsync(`q/${i % 5}`, `m${i}`, { qos: 1 })))
    await waitUntil('250 queued', async () => (await health(srv)).queued === 250)
    await pub.end()

    expect(await srv.stop()).toBe(0)
    srv = await start(dir)
    sub = await connectClient(srv.mqttUrl, { clientId: 'offline-q', clean: false })
    await sub.waitFor(250, 10_000)
    expect(sub.messages.map((m) => m.payload)).toEqual(range(0, 250).map((i) => `m${i}`))
    expect(sub.messages.every((m) => m.qos === 1)).toBe(true)
    await waitUntil('all acknowledged', async () => (await health(srv)).queued === 0)
    await sleep(200)
    expect(sub.messages).toHaveLength(250)
  })

  it('a QoS 2 publish interrupted by a restart is delivered exactly once', async () => {
    const dir = tempDir()
    let srv = await start(dir)
    const sub0 = await connectClient(srv.mqttUrl, { clientId: 'q2-sub', clean: false })
    await sub0.client.subscribeAsync('x/#', { qos: 2 })
    await sub0.end()

    let raw = await rawConnect(srv.mqttPort)
    raw.socket.write(connectPacket('q2-pub', { clean: false }))
    await raw.waitForBytes(CONNACK_OK)
    raw.socket.write(publishQos2('x/1', 'once', 7, false))
    await raw.waitForBytes(Buffer.from([0x50, 0x02, 0x00, 0x07])) // PUBREC: stored, and published to the queue
    await waitUntil('queued', async () => (await health(srv)).queued === 1)
    raw.socket.destroy()
    await srv.kill() // before the PUBREL

    srv = await start(dir)
    raw = await rawConnect(srv.mqttPort)
    raw.socket.write(connectPacket('q2-pub', { clean: false }))
    await raw.waitForBytes(CONNACK_OK)
    // the publisher did not see the PUBREC, so it sends the PUBLISH again (DUP): not published twice [MQTT-4.3.3-2]
    raw.socket.write(publishQos2('x/1', 'once', 7, true))
    await raw.waitForBytes(Buffer.from([0x50, 0x02, 0x00, 0x07]))
    raw.socket.write(Buffer.from([0x62, 0x02, 0x00, 0x07])) // PUBREL
    await raw.waitForBytes(Buffer.from([0x70, 0x02, 0x00, 0x07])) // PUBCOMP
    raw.socket.destroy()

    const sub = await connectClient(srv.mqttUrl, { clientId: 'q2-sub', clean: false })
    await sub.waitFor(1)
    await sleep(400)
    expect(sub.messages.map((m) => [m.topic, m.payload, m.qos])).toEqual([['x/1', 'once', 2]])
  })

  it('a QoS 2 delivery interrupted by a restart after PUBREC resumes with the PUBREL, not the message', async () => {
    const dir = tempDir()
    let srv = await start(dir)
    let raw = await rawConnect(srv.mqttPort)
    raw.socket.write(connectPacket('q2-raw-sub', { clean: false }))
    await raw.waitForBytes(CONNACK_OK)
    raw.socket.write(subscribePacket('y/#', 2))
    await raw.waitForBytes(Buffer.from([0x90, 0x03, 0x00, 0x01, 0x02]))
    const pub = await connectClient(srv.mqttUrl)
    await pub.client.publishAsync('y/1', 'exactly-once', { qos: 2 })
    await raw.waitForBytes(Buffer.from('exactly-once'))
    const delivered = packetsOf(raw.received).filter((p) => p.type === 3)
    expect(delivered).toHaveLength(1)
    const id = (delivered[0] as { id: number }).id
    raw.socket.write(Buffer.from([0x50, 0x02, id >> 8, id & 0xff])) // PUBREC
    // PUBREL (aedes stores the PUBREL state before it sends it); no PUBCOMP from us
    await raw.waitForBytes(Buffer.from([0x62, 0x02, id >> 8, id & 0xff]))
    raw.socket.destroy()
    await srv.kill()

    srv = await start(dir)
    expect((await health(srv)).queued).toBe(1)
    raw = await rawConnect(srv.mqttPort)
    raw.socket.write(connectPacket('q2-raw-sub', { clean: false }))
    await raw.waitForBytes(Buffer.from([0x62, 0x02, id >> 8, id & 0xff])) // the PUBREL again [MQTT-4.4.0-1]
    raw.socket.write(Buffer.from([0x70, 0x02, id >> 8, id & 0xff])) // PUBCOMP
    await waitUntil('released', async () => (await health(srv)).queued === 0)
    await sleep(200)
    expect(packetsOf(raw.received).filter((p) => p.type === 3)).toEqual([])
    raw.socket.destroy()
  })

  it('drops the oldest messages of an offline session over sessions.maxQueuedMessages, and counts them', async () => {
    const srv = await start(tempDir(), ['--sessions-max-queued-messages', '10'])
    let sub = await connectClient(srv.mqttUrl, { clientId: 'bounded', clean: false })
    await sub.client.subscribeAsync('b/#', { qos: 1 })
    await sub.end()
    const pub = await connectClient(srv.mqttUrl)
    for (const i of range(0, 25)) await pub.client.publishAsync('b/x', `m${i}`, { qos: 1 })
    await waitUntil('15 dropped', async () => (await health(srv)).queueDropped === 15)
    expect((await health(srv)).queued).toBe(10)
    expect(srv.output.some((l) => l.includes('offline session queue is full'))).toBe(true)
    sub = await connectClient(srv.mqttUrl, { clientId: 'bounded', clean: false })
    await sub.waitFor(10)
    expect(sub.messages.map((m) => m.payload)).toEqual(range(15, 25).map((i) => `m${i}`))
  })

  it('expires a disconnected MQTT 3.1.1 persistent session after sessions.expiry, with its queue', async () => {
    const srv = await start(tempDir(), ['--sessions-expiry', '1s'])
    let sub = await connectClient(srv.mqttUrl, { clientId: 'exp3', clean: false })
    await sub.client.subscribeAsync('e/#', { qos: 1 })
    await sub.end()
    const pub = await connectClient(srv.mqttUrl)
    for (const i of range(0, 3)) await pub.client.publishAsync('e/x', `m${i}`, { qos: 1 })
    await waitUntil('3 queued', async () => (await health(srv)).queued === 3)
    await waitUntil('expired', async () => (await health(srv)).sessionsExpired === 1, 4000)
    expect(await health(srv)).toMatchObject({ queued: 0, sessions: 0 })
    sub = await connectClient(srv.mqttUrl, { clientId: 'exp3', clean: false })
    await pub.client.publishAsync('e/x', 'after', { qos: 1 })
    await sleep(300)
    expect(sub.messages).toEqual([]) // no queue and no subscription left
  })

  it('expires an MQTT 5 session whose expiry interval ran out while the server was down', async () => {
    const dir = tempDir()
    let srv = await start(dir)
    let sub: TestClient = await connectClient(srv.mqttUrl, { clientId: 'exp5', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 1 } })
    await sub.client.subscribeAsync('e5/#', { qos: 1 })
    const keep = await connectClient(srv.mqttUrl, { clientId: 'keep5', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } })
    await keep.client.subscribeAsync('e5/#', { qos: 1 })
    await sub.end()
    await keep.end()
    const pub = await connectClient(srv.mqttUrl)
    await pub.client.publishAsync('e5/x', 'queued', { qos: 1 })
    await waitUntil('2 queued', async () => (await health(srv)).queued === 2)
    await pub.end()
    expect(await srv.stop()).toBe(0)
    await sleep(1100)
    srv = await start(dir)
    expect(await health(srv)).toMatchObject({ sessionsExpired: 1, queued: 1, sessions: 1 })
    sub = await connectClient(srv.mqttUrl, { clientId: 'exp5', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 1 } })
    const kept = await connectClient(srv.mqttUrl, { clientId: 'keep5', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } })
    await kept.waitFor(1)
    await sleep(200)
    expect(sub.messages).toEqual([])
    expect(kept.messages.map((m) => m.payload)).toEqual(['queued'])
  })
})

/** A QoS 2 PUBLISH of MQTT 3.1.1, with the DUP flag when it is sent again. */
function publishQos2(topic: string, payload: string, messageId: number, dup: boolean): Buffer {
  const t = Buffer.from(topic)
  const body = Buffer.concat([Buffer.from([t.length >> 8, t.length & 0xff]), t, Buffer.from([messageId >> 8, messageId & 0xff]), Buffer.from(payload)])
  return Buffer.concat([Buffer.from([dup ? 0x3c : 0x34]), varint(body.length), body])
}

/** The packets in what a raw client received: type, and the packet id of QoS 1/2 PUBLISHes. */
function packetsOf(chunks: Buffer[]): Array<{ type: number; id?: number }> {
  const buf = Buffer.concat(chunks)
  const out: Array<{ type: number; id?: number }> = []
  let o = 0
  while (o < buf.length) {
    const b0 = buf.readUInt8(o)
    let len = 0
    let mul = 1
    let i = o + 1
    for (;;) {
      const b = buf.readUInt8(i++)
      len += (b & 0x7f) * mul
      mul *= 128
      if ((b & 0x80) === 0) break
    }
    const type = b0 >> 4
    if (type === 3 && ((b0 >> 1) & 3) > 0) {
      const topicLen = buf.readUInt16BE(i)
      out.push({ type, id: buf.readUInt16BE(i + 2 + topicLen) })
    } else {
      out.push({ type })
    }
    o = i + len
  }
  return out
}
