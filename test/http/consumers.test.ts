import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { BUNDLE, run, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients, sleep } from '../support/mqtt.ts'

let servers: StartedEdgebus[] = []
afterEach(async () => {
  await endAllClients()
  await Promise.all(servers.map((s) => s.stop()))
  servers = []
})

const config = { streams: [{ name: 'jobs', subjects: ['jobs.>'] }] }

async function start(dir: string): Promise<StartedEdgebus> {
  const srv = await startEdgebus({ config, dir })
  servers.push(srv)
  return srv
}

async function call(srv: StartedEdgebus, method: string, path: string, body?: unknown) {
  const res = await fetch(srv.httpUrl + path, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await res.text()
  const isJson = (res.headers.get('content-type') ?? '').startsWith('application/json')
  return { status: res.status, text, json: isJson ? JSON.parse(text) as Record<string, unknown> : null }
}

async function next(srv: StartedEdgebus, consumer: string, batch: number, wait = 0): Promise<Array<{ seq: number; payload: string; deliveryCount: number }>> {
  const r = await call(srv, 'POST', `/api/streams/jobs/consumers/${consumer}/next?batch=${batch}&wait=${wait}`)
  expect(r.status).toBe(200)
  return r.text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { seq: number; payload: string; deliveryCount: number })
}

describe('durable consumers over HTTP', () => {
  it('deliver, ack, redeliver after ackWait, dead-letter after maxDeliver; state survives a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgebus-consumers-'))
    let srv = await start(dir)
    const created = await call(srv, 'POST', '/api/streams/jobs/consumers', { name: 'workers', ackWait: '300ms', maxDeliver: 2 })
    expect(created.status, created.text).toBe(201)
    expect((await call(srv, 'POST', '/api/streams/jobs/consumers', { name: 'workers' })).json).toMatchObject({ error: { code: 'ECONSUMER_IN_USE' } })
    const dlq = await connectClient(srv.mqttUrl)
    await dlq.client.subscribeAsync('$dlq/#', { qos: 1 })
    const pub = await connectClient(srv.mqttUrl)
    for (let i = 0; i < 5; i++) await pub.client.publishAsync(`jobs/${i}`, `job ${i}`, { qos: 1 })

    const first = await next(srv, 'workers', 3)
    expect(first.map((d) => [d.seq, d.payload, d.deliveryCount])).toEqual([[1, 'job 0', 1], [2, 'job 1', 1], [3, 'job 2', 1]])
    expect((await call(srv, 'POST', '/api/streams/jobs/consumers/workers/ack', { ack: [1, 2] })).json).toEqual({ acked: 2, naked: 0, termed: 0 })
    // seq 3 is not acked: after ackWait it comes again, with its delivery count
    await sleep(400)
    const again = await next(srv, 'workers', 10)
    expect(again.map((d) => [d.seq, d.deliveryCount])).toEqual([[3, 2], [4, 1], [5, 1]])
    await call(srv, 'POST', '/api/streams/jobs/consumers/workers/ack', { ack: [4] })
    // seq 3 has had its 2 deliveries: the next expiry sends it to the dead-letter subject
    const [dead] = await dlq.waitFor(1, 3000)
    expect(dead?.topic).toBe('$dlq/jobs/workers')
    expect(JSON.parse(dead?.payload ?? '{}')).toMatchObject({ stream: 'jobs', consumer: 'workers', seq: 3, deliveryCount: 2, reason: 'maxDeliver' })
    const info = (await call(srv, 'GET', '/api/streams/jobs/consumers/workers')).json
    expect(info).toMatchObject({ config: { name: 'workers', maxDeliver: 2 }, state: { dlq: 1 } })

    // restart: only seq 5 (delivered, never acked) is left; acked and dead-lettered ones do not come back
    await endAllClients()
    await srv.stop()
    srv = await start(dir)
    const after = await next(srv, 'workers', 10, 1000)
    expect(after.map((d) => d.seq)).toEqual([5])
  })

  it('a pull waits for the next message (long-poll); errors have codes', async () => {
    const srv = await start(mkdtempSync(join(tmpdir(), 'edgebus-consumers-')))
    expect((await call(srv, 'POST', '/api/streams/jobs/consumers', { name: 'new-only', deliver: 'new' })).status).toBe(201)
    const pub = await connectClient(srv.mqttUrl)
    await pub.client.publishAsync('jobs/before', 'old', { qos: 1 }) // after creation: delivered
    expect((await next(srv, 'new-only', 5)).map((d) => d.payload)).toEqual(['old'])
    // nothing left: the pull waits until a message comes
    const t0 = Date.now()
    const waiting = next(srv, 'new-only', 5, 3000)
    await sleep(300)
    await pub.client.publishAsync('jobs/x', 'fresh', { qos: 1 })
    expect((await waiting).map((d) => d.payload)).toEqual(['fresh'])
    const waited = Date.now() - t0
    expect(waited).toBeGreaterThanOrEqual(250)
    expect(waited).toBeLessThan(2500)
    expect((await call(srv, 'GET', '/api/streams/jobs/consumers/nope')).status).toBe(404)
    expect((await call(srv, 'POST', '/api/streams/jobs/consumers', { ackWait: '1s' })).json).toMatchObject({ error: { code: 'ECONSUMER_INVALID' } })
    expect((await call(srv, 'POST', '/api/streams/jobs/consumers', { name: 'x', filter: ['other.>'] })).json).toMatchObject({ error: { code: 'ECONSUMER_INVALID' } })
    expect((await call(srv, 'DELETE', '/api/streams/jobs/consumers/new-only')).status).toBe(204)
    expect(((await call(srv, 'GET', '/api/streams/jobs/consumers')).json?.consumers as unknown[]).length).toBe(0)
  })

  it('edgebus consumer add | ls | next --ack | info | rm', async () => {
    const srv = await start(mkdtempSync(join(tmpdir(), 'edgebus-consumers-')))
    const cli = (...args: string[]) => run(process.execPath, [BUNDLE, 'consumer', ...args, '--server', srv.httpUrl])
    const add = await cli('add', 'jobs', 'cli-workers', '--filter', 'jobs.a.>', '--ack-wait', '10s', '--max-deliver', '3', '--backoff', '1s,5s')
    expect(add.code, add.stderr).toBe(0)
    const pub = await connectClient(srv.mqttUrl)
    for (const t of ['jobs/a/1', 'jobs/b/1', 'jobs/a/2']) await pub.client.publishAsync(t, t, { qos: 1 })
    const next = await cli('next', 'jobs', 'cli-workers', '--batch', '5', '--ack')
    expect(next.code, next.stderr).toBe(0)
    expect(next.stdout.trim().split('\n')).toEqual(['1 jobs/a/1 jobs/a/1', '3 jobs/a/2 jobs/a/2'])
    expect((await cli('ls', 'jobs')).stdout).toMatch(/cli-workers\s+3\s+0/) // ack floor 3, nothing pending
    expect(JSON.parse((await cli('info', 'jobs', 'cli-workers')).stdout)).toMatchObject({ config: { filter: ['jobs/a/#'], maxDeliver: 3 } })
    expect((await cli('rm', 'jobs', 'cli-workers')).code).toBe(0)
    const gone = await cli('info', 'jobs', 'cli-workers')
    expect(gone.code).toBe(1)
    expect(gone.stderr).toContain('ECONSUMER_NOT_FOUND')
  })

  it('consumers declared with their stream in the config file', async () => {
    const srv = await startEdgebus({ config: { streams: [{ name: 'jobs', subjects: ['jobs.>'], consumers: [{ name: 'fixed', filter: ['jobs.a.>'] }] }] } })
    servers.push(srv)
    expect((await call(srv, 'GET', '/api/streams/jobs/consumers/fixed')).json).toMatchObject({ source: 'config', config: { filter: ['jobs/a/#'] } })
    expect((await call(srv, 'DELETE', '/api/streams/jobs/consumers/fixed')).json).toMatchObject({ error: { code: 'ECONSUMER_CONFIGURED' } })
    const bad = await run(process.execPath, [BUNDLE, 'serve', '--print-config'], { cwd: mkdtempSync(join(tmpdir(), 'edgebus-badconsumer-')), env: {} })
    expect(bad.code).toBe(0) // (no config file there: the defaults)
    const dir = mkdtempSync(join(tmpdir(), 'edgebus-badconsumer-'))
    const { writeFileSync } = await import('node:fs')
    writeFileSync(join(dir, 'edgebus.json'), JSON.stringify({ streams: [{ name: 'jobs', subjects: ['jobs.>'], consumers: [{ name: 'x', filter: ['other.>'] }] }] }))
    const refused = await run(process.execPath, [BUNDLE, 'serve', '--print-config'], { cwd: dir })
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain('ECONFIG_INVALID')
    expect(refused.stderr).toContain('streams[0]')
    expect(refused.stderr).toContain('consumer "x": filter "other/#" matches none')
  })
})
