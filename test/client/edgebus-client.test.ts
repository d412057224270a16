import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { ROOT, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { freePort } from '../support/free-port.ts'
import { connectClient, endAllClients, sleep } from '../support/mqtt.ts'

/** The browser client's budget, minified and gzipped (issue: under 5 KB). */
const CLIENT_BUDGET_GZIP = 5 * 1024

let servers: StartedEdgebus[] = []
afterEach(async () => {
  await endAllClients()
  await Promise.all(servers.map((s) => s.stop()))
  servers = []
})

/** The client exactly as the server serves it at /client.js, loaded as a module. */
async function servedClient(srv: StartedEdgebus): Promise<typeof import('../../src/client/edgebus-client.ts')> {
  const res = await fetch(`${srv.httpUrl}/client.js`)
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toContain('javascript')
  const file = join(mkdtempSync(join(tmpdir(), 'edgebus-client-')), 'client.mjs')
  writeFileSync(file, await res.text())
  return import(file) as never
}

describe('edgebus-client', () => {
  it(`stays under ${CLIENT_BUDGET_GZIP} bytes minified and gzipped`, () => {
    expect(gzipSync(readFileSync(join(ROOT, 'dist', 'client.js'))).length).toBeLessThan(CLIENT_BUDGET_GZIP)
  })

  it('subscribes with a NATS-style wildcard, gets MQTT publishes, publishes, replays; resubscribes after a server restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgebus-client-srv-'))
    const port = await freePort()
    const config = { streams: [{ name: 'events', subjects: ['events.>'] }] }
    let srv = await startEdgebus({ config, dir, args: ['--http-port', String(port)] })
    servers.push(srv)
    const { connect } = await servedClient(srv)
    const client = connect(`ws://127.0.0.1:${port}/ws`, { WebSocket: WebSocket as never, reconnect: { min: 100, max: 500 } })
    const got: string[] = []
    client.subscribe('sensors.*.temp', (m) => got.push(`${m.subject} ${m.payload}`))
    const opened = new Promise<void>((r) => { client.onopen = r })
    await opened
    await sleep(100)
    const mqtt = await connectClient(srv.mqttUrl)
    await mqtt.client.publishAsync('sensors/kitchen/temp', '21')
    await mqtt.client.publishAsync('sensors/kitchen/hum', 'ignored')
    for (let i = 0; i < 50 && got.length < 1; i++) await sleep(20)
    expect(got).toEqual(['sensors.kitchen.temp 21'])
    expect(await client.publish('events.door', 'open')).toEqual([{ stream: 'events', seq: 1 }])
    expect((await client.replay('events', { last: 1 })).map((m) => [m.seq, m.subject, m.payload])).toEqual([[1, 'events/door', 'open']])
    // consume: a durable consumer's messages, then ack
    expect((await fetch(`${srv.httpUrl}/api/streams/events/consumers`, { method: 'POST', body: '{"name":"c"}' })).status).toBe(201)
    const taken = await client.next('events', 'c', { batch: 5, wait: 1000 })
    expect(taken.map((m) => [m.seq, m.payload, m.deliveryCount])).toEqual([[1, 'open', 1]])
    await client.ack('events', 'c', { ack: [1] })
    expect(await client.next('events', 'c', { batch: 5 })).toEqual([])

    // the server goes away and comes back on the same port: the client reconnects and resubscribes
    await endAllClients()
    await srv.stop()
    servers = []
    const reopened = new Promise<void>((r) => { client.onopen = r })
    srv = await startEdgebus({ config, dir, args: ['--http-port', String(port)] })
    servers.push(srv)
    await reopened
    await sleep(200)
    const again = await connectClient(srv.mqttUrl)
    await again.client.publishAsync('sensors/attic/temp', '30')
    for (let i = 0; i < 50 && got.length < 2; i++) await sleep(20)
    expect(got).toEqual(['sensors.kitchen.temp 21', 'sensors.attic.temp 30'])
    client.close()
  })
})
