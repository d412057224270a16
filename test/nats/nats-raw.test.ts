import { connect as tcpConnect, type Socket } from 'node:net'
import { rawNats } from './raw-nats.ts'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { WebSocket } from 'ws'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'

/** The protocol byte by byte, as a raw socket sees it: splits, pipelining, bad input, keepalive, slow consumers. */
let srv: StartedEdgebus | null = null
const sockets: Socket[] = []
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy()
  await srv?.stop()
  srv = null
})

const raw = (port: number) => rawNats(port, sockets)

describe('the NATS protocol on a raw socket', () => {
  it('INFO first; verbose +OK; control lines split anywhere and pipelined commands', async () => {
    srv = await startEdgebus()
    const c = await raw(srv.natsPort)
    const info = JSON.parse(/^INFO (\{.*\})\r\n/.exec(c.text)![1]!) as Record<string, unknown>
    expect(info).toMatchObject({ proto: 1, headers: true, max_payload: 1048576, server_name: 'edgebus' })
    const input = 'CONNECT {"verbose":true,"headers":true}\r\nSUB x.> 7\r\nPUB x.y r.1 3\r\nabc\r\nHPUB x.z 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nhi\r\nPING\r\n'
    for (let i = 0; i < input.length; i += 5) { c.send(input.slice(i, i + 5)); await new Promise((r) => setImmediate(r)) }
    await c.until(/PONG\r\n/)
    const after = c.text.slice(c.text.indexOf('\r\n') + 2)
    expect(after).toBe('+OK\r\n+OK\r\n+OK\r\nMSG x.y 7 r.1 3\r\nabc\r\n+OK\r\nHMSG x.z 7 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nhi\r\nPONG\r\n')
  })

  it('bad input gets -ERR and a close, and the server serves the next client', async () => {
    srv = await startEdgebus()
    for (const [bad, err] of [
      ['FOO bar\r\n', 'Unknown Protocol Operation'],
      ['PUB a 2000000\r\n', 'Maximum Payload Violation'],
      [`SUB ${'a'.repeat(5000)}`, 'maximum control line exceeded'],
      ['CONNECT {nope\r\n', 'Parser Error'],
      ['PUB a 3\r\nabcdef\r\n', 'Parser Error'],
      [Buffer.from([0xff, 0xfe, 0x00, 0x0d, 0x0a]), 'Unknown Protocol Operation'],
    ] as const) {
      const c = await raw(srv.natsPort)
      c.send(bad)
      await c.until(new RegExp(`-ERR '${err}`))
      await vi.waitFor(() => expect(c.closed).toBe(true), { timeout: 5000 })
    }
    const ok = await raw(srv.natsPort)
    ok.send('CONNECT {}\r\nPING\r\n')
    await ok.until(/PONG\r\n/)
    expect(srv.output.some((l) => l.includes('ENATS_PROTOCOL'))).toBe(true)
  })

  it('an invalid subject is an -ERR that keeps the connection', async () => {
    srv = await startEdgebus()
    const c = await raw(srv.natsPort)
    c.send('CONNECT {}\r\nSUB a..b 1\r\nPUB a.* 0\r\n\r\nPING\r\n')
    await c.until(/PONG\r\n/)
    expect(c.text).toMatch(/-ERR 'Invalid Subject'\r\n/)
    expect(c.text).toMatch(/-ERR 'Invalid Publish Subject'\r\n/)
    expect(c.closed).toBe(false)
  })

  it('a client that stops answering PINGs is closed as a Stale Connection', async () => {
    srv = await startEdgebus({ args: ['--nats-ping-interval', '100ms'] })
    const answering = await raw(srv.natsPort)
    answering.socket.on('data', (d) => { if (d.toString().includes('PING')) answering.send('PONG\r\n') })
    const silent = await raw(srv.natsPort)
    silent.send('CONNECT {}\r\n')
    await silent.until(/-ERR 'Stale Connection'/, 3000)
    await vi.waitFor(() => expect(silent.closed).toBe(true), { timeout: 5000 })
    expect(answering.closed).toBe(false)
  })

  it('a subscriber that stops reading has messages dropped, then is cut off as a Slow Consumer after limits.drainTimeout; others keep getting messages', async () => {
    srv = await startEdgebus({ args: ['--limits-max-queued-bytes', '1MB', '--limits-max-queued-bytes-hard', '64MB', '--limits-drain-timeout', '1s'] })
    const frozen = await raw(srv.natsPort)
    frozen.send('CONNECT {}\r\nSUB load.> 1\r\nPING\r\n')
    await frozen.until(/PONG/)
    frozen.socket.pause()
    const healthy = await raw(srv.natsPort)
    let bytes = 0
    healthy.socket.on('data', (d: Buffer) => { bytes += d.length })
    const MSG_BYTES = 'MSG load.a 1 8192\r\n'.length + 8192 + 2
    const got = () => Math.floor(bytes / MSG_BYTES)
    healthy.send('CONNECT {}\r\nSUB load.> 1\r\nPING\r\n')
    await healthy.until(/PONG/)
    const pub = await raw(srv.natsPort)
    const payload = 'x'.repeat(8192)
    const batch = `PUB load.a 8192\r\n${payload}\r\n`.repeat(50)
    const cut = () => srv!.output.some((l) => l.includes('ESLOW_CONSUMER') && l.includes('disconnecting'))
    // over its socket buffers and 1 MB for more than limits.drainTimeout, never near the hard bound
    for (let i = 0; i < 400 && !cut(); i++) {
      pub.send(batch)
      await vi.waitFor(() => expect(got()).toBeGreaterThanOrEqual((i + 1) * 50), { timeout: 10_000 })
    }
    await vi.waitFor(() => expect(srv!.output.some((l) => l.includes('ESLOW_CONSUMER') && l.includes('disconnecting'))).toBe(true), { timeout: 10_000 })
    expect(healthy.closed).toBe(false)
    const health = await (await fetch(`${srv.httpUrl}/healthz`)).json() as { dropped: number; slowConsumerDisconnects: number; natsConnections: number }
    expect(health.natsConnections).toBe(2) // healthy and pub stay
    expect(health.dropped).toBeGreaterThan(0)
    expect(health.slowConsumerDisconnects).toBe(1)
  })

  it('NATS connections count against limits.maxConnections with MQTT ones; a refused one hears why', async () => {
    srv = await startEdgebus({ args: ['--limits-max-connections', '2'] })
    const a = await raw(srv.natsPort)
    const mqtt = tcpConnect(srv.mqttPort, '127.0.0.1')
    sockets.push(mqtt)
    await new Promise((r) => mqtt.once('connect', r))
    const refused = tcpConnect(srv.natsPort, '127.0.0.1')
    sockets.push(refused)
    let text = ''
    refused.on('data', (d) => { text += String(d) })
    await new Promise((r) => refused.once('close', r))
    expect(text).toBe("-ERR 'maximum connections exceeded'\r\n")
    expect(srv.output.some((l) => l.includes('ELIMIT_CONNECTIONS') && l.includes('"protocol":"nats"'))).toBe(true)
    a.socket.destroy() // its place is free again once the server saw it close
    await vi.waitFor(async () => expect(((await (await fetch(`${srv!.httpUrl}/healthz`)).json()) as { natsConnections: number }).natsConnections).toBe(0))
    const again = await raw(srv.natsPort)
    again.send('CONNECT {}\r\nPING\r\n')
    await again.until(/PONG/)
  })

  it('nats.enabled false: no NATS listener, and the ready line has no natsPort', async () => {
    srv = await startEdgebus({ args: ['--nats-enabled', 'false'] })
    expect(srv.natsPort).toBe(0)
    expect(srv.output.find((l) => l.includes('edgebus ready'))).not.toContain('natsPort')
  })

  it('/ws and NATS share the subject space both ways', async () => {
    srv = await startEdgebus()
    const c = await raw(srv.natsPort)
    c.send('CONNECT {}\r\nSUB from.ws 1\r\nPING\r\n')
    await c.until(/PONG/)
    const ws = new WebSocket(`ws://127.0.0.1:${srv.httpPort}/ws`)
    const frames: Array<Record<string, unknown>> = []
    ws.on('message', (d) => frames.push(JSON.parse(String(d)) as Record<string, unknown>))
    await new Promise((r) => ws.once('open', r))
    ws.send(JSON.stringify({ op: 'sub', id: '1', filter: 'from.nats' }))
    await vi.waitFor(() => expect(frames.some((f) => f.id === '1' && f.op === 'ok')).toBe(true), { timeout: 5000 })
    ws.send(JSON.stringify({ op: 'pub', id: '2', subject: 'from.ws', payload: 'hello nats' }))
    await c.until(/MSG from\.ws 1 10\r\nhello nats\r\n/)
    c.send('PUB from.nats 8\r\nhello ws\r\n')
    await vi.waitFor(() => expect(frames.find((f) => f.op === 'msg')).toMatchObject({ subject: 'from.nats', payload: 'hello ws' }), { timeout: 5000 })
    ws.close()
  })
})
