import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { checkConnect, checkPacketProperties } from '../../src/mqtt/packet-check.ts'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients, sleep } from '../support/mqtt.ts'
import { rawConnect } from '../support/raw.ts'

const hex = (s: string): Buffer => Buffer.from(s, 'hex')
const CONNECT_V5 = '100e00044d5154540502000000000176'

describe('packet checks (each input below once crashed, hung or corrupted the server; found by test/fuzz)', () => {
  it('CONNECT: repeated or misplaced properties, Will QoS 3, a will topic that is not a topic', () => {
    expect(checkConnect(hex(CONNECT_V5))).toBeNull()
    expect(checkConnect(hex('101a00044d515454050200000a110000000a11000000140003647570'))).toMatchObject({ code: 0x82, why: expect.stringMatching(/Session Expiry Interval appears twice/) })
    expect(checkConnect(hex('101900044d515454043e0000000370756200000006706f69736f6e'))).toMatchObject({ code: 0x81, why: 'Will QoS is 3' })
    // will flag, QoS 1, empty will topic (MQTT 3.1.1)
    expect(checkConnect(hex('101200044d515454040e003c0001630000000170'))).toMatchObject({ code: 0x90 })
  })

  it('PUBLISH/DISCONNECT properties: running past the block, repeated, forbidden from a client', () => {
    const at = (h: string) => { const b = hex(h); return checkPacketProperties(b, 0, b.length) }
    expect(at('320c000666757a7a2f6100011003')).toMatchObject({ code: 0x81 }) // property length past the packet
    expect(at('3211000666757a7a2f61000105260005616278')).toMatchObject({ code: 0x81 }) // user property runs out
    expect(at('3414000666757a7a2f61000708030001610300016278')).toMatchObject({ code: 0x82, why: 'Content Type appears twice' })
    expect(at('e00c000a110000000a1100000014')).toMatchObject({ code: 0x82 })
    expect(at('300a0003612f62020b0178')).toMatchObject({ code: 0x82, why: expect.stringMatching(/Subscription Identifier is not allowed/) })
    expect(at('3009000361 2f62 00 7878'.replace(/ /g, ''))).toBeNull()
  })
})

let srv: StartedEdgebus
beforeAll(async () => { srv = await startEdgebus({ config: { streams: [{ name: 'f', subjects: ['fuzz/#'] }] } }) })
afterAll(async () => {
  await endAllClients()
  await srv.stop()
})

/** Sends raw bytes; resolves with everything received until the server closes (or 2 s pass). */
async function exchange(port: number, ...parts: Buffer[]): Promise<Buffer> {
  const raw = await rawConnect(port)
  for (const p of parts) raw.socket.write(p)
  await Promise.race([raw.closed, sleep(2000)])
  raw.socket.destroy()
  return Buffer.concat(raw.received)
}

async function healthy(): Promise<void> {
  expect(srv.proc.exitCode).toBeNull()
  const c = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
  await c.client.subscribeAsync('#', { qos: 1 })
  await c.client.publishAsync('fuzz/ok', 'ok', { qos: 1 })
  expect((await c.waitFor(1))[0]?.payload).toBe('ok')
  await c.end()
}

describe('the server, fed those inputs', () => {
  it('answers MQTT 5 with the reason and closes; stays up; nothing reaches the journal', async () => {
    const first = await exchange(srv.mqttPort, hex(CONNECT_V5), hex('320c000666757a7a2f6100011003'))
    expect(first.subarray(first.length - 3)).toEqual(hex('e00181')) // DISCONNECT Malformed Packet, after the CONNACK
    const got = await exchange(srv.mqttPort, hex(CONNECT_V5), hex('3211000666757a7a2f61000105260005616278'))
    expect(got.subarray(got.length - 3)).toEqual(hex('e00181')) // DISCONNECT Malformed Packet
    expect(await exchange(srv.mqttPort, hex('101a00044d515454050200000a110000000a11000000140003647570'))).toEqual(hex('2003008200')) // CONNACK Protocol Error
    const d = await exchange(srv.mqttPort, hex('101400044d5154540502000005110000000a00026431'), hex('e00c000a110000000a1100000014'))
    expect(d.subarray(d.length - 3)).toEqual(hex('e00182'))
    expect(srv.output.some((l) => l.includes('EJOURNAL_IO'))).toBe(false)
    await healthy()
  })

  it('a poison will (QoS 3, empty topic) is refused, so it cannot hang later subscribers', async () => {
    // 3.1.1: closed at once, no CONNACK (well within the 2 s exchange() waits)
    const t0 = Date.now()
    expect(await exchange(srv.mqttPort, hex('101900044d515454043e0000000370756200000006706f69736f6e'))).toEqual(Buffer.alloc(0))
    expect(await exchange(srv.mqttPort, hex('101200044d515454040e003c0001630000000170'))).toEqual(Buffer.alloc(0))
    expect(Date.now() - t0).toBeLessThan(1500)
    await healthy()
  })

  it('HTTP: a request target that is not a path, bad percent-encoding, deep JSON, a null body: 400, never a crash', async () => {
    const raw = await rawConnect(srv.httpPort)
    raw.socket.write('GET // HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    await raw.closed
    expect(Buffer.concat(raw.received).toString()).toMatch(/^HTTP\/1\.1 400 /)
    expect((await fetch(`${srv.httpUrl}/api/streams/%zz`)).status).toBe(400)
    expect((await fetch(`${srv.httpUrl}/api/publish/%zz`, { method: 'POST', body: 'x' })).status).toBe(400)
    const deep = '['.repeat(20_000) + ']'.repeat(20_000)
    const r = await fetch(`${srv.httpUrl}/api/streams`, { method: 'POST', body: deep })
    expect(r.status).toBe(400)
    expect(await r.json()).toMatchObject({ error: { code: 'EHTTP_BODY' } })
    await fetch(`${srv.httpUrl}/api/streams/f/consumers`, { method: 'POST', body: JSON.stringify({ name: 'w' }) })
    expect((await fetch(`${srv.httpUrl}/api/streams/f/consumers/w/ack`, { method: 'POST', body: 'null' })).status).toBe(400)
    await healthy()
  })

  it('/ws: a frame nested 10,000 deep gets an error frame', async () => {
    const ws = new WebSocket(`${srv.httpUrl.replace('http', 'ws')}/ws`)
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    const answer = new Promise<Record<string, unknown>>((resolve) => ws.once('message', (d) => resolve(JSON.parse(String(d)) as Record<string, unknown>)))
    ws.send(`{"op":"pub","subject":"fuzz.a","payload":${'['.repeat(10_000)}${']'.repeat(10_000)}}`)
    expect(await answer).toMatchObject({ op: 'error', code: 'EWS_JSON' })
    ws.close()
    await healthy()
  })
})
