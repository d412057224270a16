import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { Journal } from '../../src/stream/journal.ts'
import { BUNDLE, ROOT, run, spawnLines, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients, sleep } from '../support/mqtt.ts'

let servers: StartedEdgebus[] = []
afterEach(async () => {
  await endAllClients()
  await Promise.all(servers.map((s) => s.stop()))
  servers = []
})

async function start(config: Record<string, unknown>, dir?: string): Promise<StartedEdgebus> {
  const srv = await startEdgebus({ config, ...(dir ? { dir } : {}) })
  servers.push(srv)
  return srv
}

async function api(srv: StartedEdgebus, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(srv.httpUrl + path, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
  return { status: res.status, json: res.status === 204 ? {} : await res.json() as Record<string, unknown> }
}

/** Reads a stream's journal from disk (the server must be stopped). */
async function readJournal(dir: string, stream: string) {
  const j = await Journal.open(join(dir, 'data', 'streams', stream))
  const records = [...j.iterate(0)].map((r) => ({ seq: r.seq, subject: r.subject, payload: r.payload.toString(), headers: r.headers }))
  await j.close()
  return records
}

describe('streams in the server', () => {
  it('stores what its subjects capture, from every QoS and path, with MQTT 5 properties; once per msg-id', async () => {
    const srv = await start({ streams: [{ name: 'telemetry', subjects: ['sensors.>'] }] }, mkdtempSync(join(tmpdir(), 'edgebus-streams-')))
    const v5 = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    const v4 = await connectClient(srv.mqttUrl)
    await v4.client.publishAsync('sensors/a', 'q0')
    await v4.client.publishAsync('sensors/a', 'q1', { qos: 1 })
    await v4.client.publishAsync('sensors/a', 'q2', { qos: 2 })
    await v4.client.publishAsync('sensors/a', 'retained', { qos: 1, retain: true })
    const props = { userProperties: { 'msg-id': 'm-1', site: 'north' }, contentType: 'text/plain' }
    await v5.client.publishAsync('sensors/b', 'props', { qos: 1, properties: props })
    await v5.client.publishAsync('sensors/b', 'props again', { qos: 1, properties: props }) // same msg-id: stored once
    await v4.client.publishAsync('other/x', 'not captured', { qos: 1 })
    const info = await api(srv, 'GET', '/api/streams/telemetry')
    expect(info.json.state).toMatchObject({ messages: 5, stored: 5, duplicates: 1 })
    await srv.stop()
    const records = await readJournal(srv.dir, 'telemetry')
    expect(records.map((r) => r.payload)).toEqual(['q0', 'q1', 'q2', 'retained', 'props'])
    expect(records[4]).toMatchObject({ subject: 'sensors/b', headers: { contentType: 'text/plain', userProperties: [['msg-id', 'm-1'], ['site', 'north']] } })
  })

  it('refuses over a limit: MQTT 5 gets reason code 0x97 on PUBACK and PUBREC, on the fast path and through aedes', async () => {
    const srv = await start({ streams: [{ name: 'small', subjects: ['small/#'], maxMsgs: 1, discard: 'new', maxMsgSize: 100 }] })
    const c = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    const reasons: number[] = []
    const publish = (topic: string, payload: string | Buffer, opts: Record<string, unknown>) => new Promise<void>((resolve) => {
      c.client.publish(topic, payload, opts, (err, packet) => {
        reasons.push(err ? ((err as { code?: number }).code ?? -1) : ((packet as { reasonCode?: number } | undefined)?.reasonCode ?? 0))
        resolve()
      })
    })
    await publish('small/a', 'first', { qos: 1 })
    await publish('small/a', 'second', { qos: 1 }) // over maxMsgs
    await publish('small/a', 'third', { qos: 1, retain: true }) // retained: through aedes
    await publish('small/a', 'fourth', { qos: 2 })
    await publish('small/b', Buffer.alloc(200), { qos: 1 }) // over maxMsgSize
    expect(reasons).toEqual([0, 0x97, 0x97, 0x97, 0x97])
    const info = await api(srv, 'GET', '/api/streams/small')
    expect(info.json.state).toMatchObject({ messages: 1, refused: { limit: 3, tooLarge: 1 } })
  })

  it('retention drops the oldest and counts why', async () => {
    const srv = await start({ streams: [{ name: 'window', subjects: ['win/#'], maxMsgs: 2 }, { name: 'last', subjects: ['state/+'], maxMsgsPerSubject: 1 }] })
    const c = await connectClient(srv.mqttUrl)
    for (let i = 0; i < 5; i++) await c.client.publishAsync('win/x', String(i), { qos: 1 })
    for (let i = 0; i < 3; i++) await c.client.publishAsync(`state/${i % 2}`, String(i), { qos: 1 })
    expect((await api(srv, 'GET', '/api/streams/window')).json.state).toMatchObject({ messages: 2, firstSeq: 4, lastSeq: 5, dropped: { maxMsgs: 3 } })
    expect((await api(srv, 'GET', '/api/streams/last')).json.state).toMatchObject({ messages: 2, dropped: { maxMsgsPerSubject: 1 } })
  })

  it('an MQTT 3.1.1 publisher whose message a stream refused is disconnected (it cannot be told in a PUBACK), sends it again on reconnect, and the log says why once', async () => {
    const srv = await start({ streams: [{ name: 'tiny', subjects: ['tiny/#'], maxMsgs: 1, discard: 'new' }] })
    const c = mqtt.connect(srv.mqttUrl, { protocolVersion: 4, clientId: 'v4-tiny', clean: false, reconnectPeriod: 100 })
    await new Promise((r) => c.once('connect', r))
    try {
      await c.publishAsync('tiny/a', 'kept', { qos: 1 })
      let closes = 0
      c.on('close', () => { closes++ })
      let acked: Error | null | undefined
      c.publish('tiny/a', 'refused at first', { qos: 1 }, (err) => { acked = err ?? null })
      // not left waiting for ever: the connection closes, and every resend is refused again while the stream is full
      await vi.waitFor(() => expect(closes).toBeGreaterThanOrEqual(2), { timeout: 5000 })
      expect(acked).toBeUndefined()
      expect(srv.output.filter((l) => l.includes('closing the MQTT 3.1.1 connection')).length).toBe(1) // rate-limited per cause
      // room again: the resend is stored and acknowledged
      expect((await api(srv, 'POST', '/api/streams/tiny/purge')).status).toBe(200)
      await vi.waitFor(() => expect(acked).toBeNull(), { timeout: 5000 })
      expect((await api(srv, 'GET', '/api/streams/tiny')).json.state).toMatchObject({ messages: 1 })
    } finally {
      c.end(true)
    }
  })

  it('a segment replaced by a directory while stopped: the server starts, says so, and never stores under a sequence it used (issue 15, item 3)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgebus-streams-'))
    const config = { streams: [{ name: 'seqs', subjects: ['seqs/#'] }] }
    let srv = await start(config, dir)
    const pub = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await Promise.all(Array.from({ length: 1000 }, (_, i) => pub.client.publishAsync(`seqs/${i % 10}`, String(i), { qos: 1 })))
    await pub.end()
    expect(await srv.stop()).toBe(0)
    const seg = join(dir, 'data', 'streams', 'seqs', '00000000000000000001.seg')
    rmSync(seg)
    mkdirSync(seg)
    srv = await start(config, dir)
    expect(srv.output.some((l) => l.includes('journal set a damaged segment aside') && l.includes('"lastSeqAtMost":1000'))).toBe(true)
    expect((await api(srv, 'GET', '/api/streams/seqs')).json.state).toMatchObject({ messages: 0, firstSeq: 1001, lastSeq: 1000 })
    const res = await fetch(`${srv.httpUrl}/api/publish/seqs/after`, { method: 'POST', body: 'x' })
    expect(((await res.json()) as { stored: Array<{ seq: number }> }).stored[0]?.seq).toBe(1001)
  })

  it('HTTP API and CLI: create, list, edit, purge, delete; overlaps and config streams refused', async () => {
    const srv = await start({ streams: [{ name: 'fixed', subjects: ['fixed/#'] }] })
    const cli = (...args: string[]) => run(process.execPath, [BUNDLE, 'stream', ...args, '--server', srv.httpUrl])
    const add = await cli('add', 'events', '--subjects', 'events.>,alerts/+', '--max-age', '1h', '--max-msgs', '1000')
    expect(add.code, add.stderr).toBe(0)
    expect(JSON.parse(add.stdout).stream).toMatchObject({ name: 'events', subjects: ['events/#', 'alerts/+'] })
    const overlap = await cli('add', 'clash', '--subjects', 'events/x')
    expect(overlap.code).toBe(1)
    expect(overlap.stderr).toContain('ESTREAM_OVERLAP')
    const pub = await connectClient(srv.mqttUrl)
    for (let i = 0; i < 3; i++) await pub.client.publishAsync(`events/${i}`, String(i), { qos: 1 })
    const ls = await cli('ls')
    expect(ls.stdout).toMatch(/events\s+events\/#,alerts\/\+\s+3/)
    expect((await api(srv, 'PUT', '/api/streams/events', { subjects: ['events/#'], maxMsgs: 2 })).status).toBe(200)
    expect((await api(srv, 'GET', '/api/streams/events')).json).toMatchObject({ source: 'api', config: { maxMsgs: 2 }, state: { messages: 2 } })
    const view = await cli('view', 'events', '--filter', 'events.>', '--from-seq', '2')
    expect(view.stdout.trim().split('\n')).toEqual(['2 events/1 1', '3 events/2 2'])
    const viewJson = await cli('view', 'events', '--last', '1', '--json')
    expect(JSON.parse(viewJson.stdout.trim())).toMatchObject({ seq: 3, subject: 'events/2', payload: '2' })
    // from seq 4 on: the CLI may start before or after the first publish (both orders give it); the
    // second message comes once it printed the first, so it is followed live
    const follow = spawnLines(process.execPath, [BUNDLE, 'stream', 'view', 'events', '--follow', '--from-seq', '4', '--server', srv.httpUrl])
    await pub.client.publishAsync('events/live', 'followed', { qos: 1 })
    expect(await follow.waitFor(1, 15_000)).toEqual(['4 events/live followed'])
    await pub.client.publishAsync('events/live', 'followed live', { qos: 1 })
    expect(await follow.waitFor(2)).toEqual(['4 events/live followed', '5 events/live followed live'])
    follow.proc.kill()
    const purge = await cli('purge', 'events')
    expect(JSON.parse(purge.stdout)).toMatchObject({ stream: { messages: 0, lastSeq: 5 } })
    expect((await api(srv, 'PUT', '/api/streams/fixed', { subjects: ['fixed/#'] })).json).toMatchObject({ error: { code: 'ESTREAM_CONFIGURED' } })
    expect((await api(srv, 'GET', '/api/streams/nope')).status).toBe(404)
    expect((await api(srv, 'POST', '/api/streams', { name: 'bad name', subjects: ['x'] })).json).toMatchObject({ error: { code: 'ESTREAM_INVALID' } })
    expect((await cli('rm', 'events')).code).toBe(0)
    expect(((await api(srv, 'GET', '/api/streams')).json.streams as unknown[]).length).toBe(1)
  })

  it('an edit changes what it names and keeps the rest (CLI and PUT)', async () => {
    const srv = await start({})
    const cli = (...args: string[]) => run(process.execPath, [BUNDLE, 'stream', ...args, '--server', srv.httpUrl])
    expect((await cli('add', 'meters', '--subjects', 'meters.>', '--max-age', '7d', '--max-msgs', '500', '--discard', 'new')).code).toBe(0)
    const config = async () => (await api(srv, 'GET', '/api/streams/meters')).json.config
    const edited = await cli('edit', 'meters', '--subjects', 'meters.>', '--max-msgs', '100')
    expect(edited.code, edited.stderr).toBe(0)
    expect(await config()).toMatchObject({ subjects: ['meters/#'], maxMsgs: 100, maxAge: 7 * 86_400_000, discard: 'new' })
    const age = await cli('edit', 'meters', '--max-age', '1d')
    expect(age.code, age.stderr).toBe(0)
    expect(await config()).toMatchObject({ subjects: ['meters/#'], maxMsgs: 100, maxAge: 86_400_000, discard: 'new' })
    expect((await api(srv, 'PUT', '/api/streams/meters', { maxAge: '2d' })).status).toBe(200)
    expect(await config()).toMatchObject({ subjects: ['meters/#'], maxMsgs: 100, maxAge: 2 * 86_400_000, discard: 'new' })
    // what it names is still checked, and a bad edit changes nothing
    expect((await api(srv, 'PUT', '/api/streams/meters', { maxAge: 'soon' })).json).toMatchObject({ error: { code: 'ESTREAM_INVALID' } })
    expect((await api(srv, 'PUT', '/api/streams/meters', ['maxAge'])).json).toMatchObject({ error: { code: 'ESTREAM_INVALID' } })
    expect(await config()).toMatchObject({ maxAge: 2 * 86_400_000 })
  })

  it('run-time streams survive a restart; config with overlapping streams does not start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgebus-streams-'))
    const first = await start({}, dir)
    expect((await api(first, 'POST', '/api/streams', { name: 'kept', subjects: ['kept/#'] })).status).toBe(201)
    const pub = await connectClient(first.mqttUrl)
    await pub.client.publishAsync('kept/a', 'x', { qos: 1 })
    await endAllClients()
    await first.stop()
    const second = await start({}, dir)
    expect((await api(second, 'GET', '/api/streams/kept')).json).toMatchObject({ state: { messages: 1, lastSeq: 1 } })
    await second.stop()
    const bad = await startEdgebus({ config: { streams: [{ name: 'a', subjects: ['x.>'] }, { name: 'b', subjects: ['x/y'] }] } }).catch((e: Error) => e)
    expect(String(bad)).toContain('ESTREAM_OVERLAP')
  })
})

describe('crash safety', () => {
  it('every PUBACKed QoS 1 message is in the journal once, in order, after SIGKILL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgebus-crash-'))
    const config = { streams: [{ name: 'crash', subjects: ['crash/#'] }] }
    const acked: string[] = []
    const cycles = Number(process.env.EDGEBUS_SOAK_CYCLES ?? 3) // npm run soak: many more
    for (let cycle = 0; cycle < cycles; cycle++) {
      const srv = await startEdgebus({ config, dir })
      // a separate process publishes as fast as it can and prints every acknowledged payload
      const child = spawn(process.execPath, ['-e', `
        const mqtt = require(${JSON.stringify(join(ROOT, 'node_modules', 'mqtt'))})
        const c = mqtt.connect('${srv.mqttUrl}', { reconnectPeriod: 0 })
        let n = 0, inflight = 0
        const pump = () => { while (inflight < 64) { const p = 'c${cycle}-' + (n++); inflight++; c.publish('crash/x', p, { qos: 1 }, (err) => { inflight--; if (!err) process.stdout.write(p + '\\n'); pump() }) } }
        c.on('connect', pump); c.on('error', () => {}); c.on('close', () => process.exit(0))
      `], { stdio: ['ignore', 'pipe', 'inherit'] })
      let out = ''
      const started = new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => { out += d.toString(); resolve() }))
      await Promise.race([started, sleep(10_000)])
      await sleep(100 + Math.floor(Math.random() * 400)) // then kill at a random moment
      await srv.kill() // SIGKILL mid-stream
      await new Promise((r) => child.once('exit', r))
      acked.push(...out.split('\n').filter(Boolean))
    }
    expect(acked.length).toBeGreaterThan(100)
    const records = await readJournal(dir, 'crash')
    const stored = records.map((r) => r.payload)
    const position = new Map(stored.map((p, i) => [p, i]))
    expect(new Set(stored).size).toBe(stored.length) // each at most once
    let last = -1
    for (const p of acked) {
      const at = position.get(p)
      expect(at, `acknowledged ${p} is missing`).toBeDefined()
      expect(at as number).toBeGreaterThan(last) // in publish order
      last = at as number
    }
  }, 60_000 + Number(process.env.EDGEBUS_SOAK_CYCLES ?? 0) * 5000)
})
