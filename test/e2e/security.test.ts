import { mkdtempSync, readFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { signToken } from '../../src/auth/token.ts'
import { BUNDLE, run, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients, sleep, type TestClient } from '../support/mqtt.ts'
import { makeTestPki, type TestPki } from '../support/tls.ts'

const SECRET = 'edgebus-test-token-secret-0123456789'

/**
 * One server with users, tokens, ACLs and TLS (server certificate, client certificates optional),
 * talked to by MQTT.js over TCP and TLS, a WebSocket client on /ws and WSS, and fetch.
 */
let srv: StartedEdgebus
let pki: TestPki
let dir: string

const acl = {
  users: {
    // alice administers: everything, and the streams
    alice: [{ allow: 'pubsub', subject: '#' }, { allow: 'pubsub', subject: '$admin/#' }, { allow: 'sub', subject: '$SYS/#' }],
    // bob: his own devices; reads every device except their secrets
    bob: [
      { deny: 'sub', subject: 'devices/+/secret' },
      { allow: 'pubsub', subject: 'devices/%u/#' },
      { allow: 'sub', subject: 'devices/#' },
    ],
  },
  // every user: a private area named by its client id
  default: [{ allow: 'pubsub', subject: 'clients/%c/#' }],
  anonymous: [],
}

async function passwd(user: string, password: string): Promise<void> {
  const r = await run(process.execPath, [BUNDLE, 'passwd', join(dir, 'passwd'), user], { input: `${password}\n` })
  expect(r.code, r.stderr).toBe(0)
}

beforeAll(async () => {
  pki = makeTestPki()
  dir = mkdtempSync(join(tmpdir(), 'edgebus-security-'))
  await passwd('alice', 'wonderland')
  await passwd('bob', 'builder')
  expect(readFileSync(join(dir, 'passwd'), 'utf8')).toMatch(/^alice:\$scrypt\$/m)
  srv = await startEdgebus({
    dir,
    config: {
      streams: [{ name: 'dev', subjects: ['devices/#'] }],
      auth: { passwordFile: 'passwd', tokenSecret: SECRET, acl },
      tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, mqttPort: 0, http: true },
    },
  })
})

afterAll(async () => {
  await endAllClients()
  await srv.stop()
})

const login = (user: string, password: string, extra: Record<string, unknown> = {}) =>
  connectClient(srv.mqttUrl, { username: user, password, ...extra })

/** The CONNACK refusal code of a connection attempt. */
function refusal(opts: Record<string, unknown>, url = srv.mqttUrl): Promise<number> {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
    c.once('connect', () => { c.end(true); resolve(0) })
    c.once('error', (err) => { c.end(true); resolve((err as { code?: number }).code ?? -1) })
  })
}

function https(path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: srv.httpPort, path, method: init.method ?? 'GET', headers: init.headers, ca: pki.read(pki.ca), servername: 'localhost' }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }))
    })
    req.on('error', reject)
    req.end(init.body)
  })
}
const basic = (user: string, pw: string): string => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`
const token = (sub: string, ttlS = 600): string => signToken({ sub, exp: Math.floor(Date.now() / 1000) + ttlS }, SECRET)

describe('users and passwords', () => {
  it('refuses a wrong password and anonymous clients, with the right CONNACK codes', async () => {
    expect(await refusal({ username: 'bob', password: 'nope', protocolVersion: 4 })).toBe(4)
    expect(await refusal({ username: 'bob', password: 'nope', protocolVersion: 5 })).toBe(0x86)
    expect(await refusal({ username: 'mallory', password: 'builder', protocolVersion: 5 })).toBe(0x86)
    expect(await refusal({ protocolVersion: 4 })).toBe(5)
    expect(await refusal({ protocolVersion: 5 })).toBe(0x87)
    expect(await refusal({ username: 'bob', password: 'builder' })).toBe(0)
    // a token as the password of user $token
    expect(await refusal({ username: '$token', password: token('bob') })).toBe(0)
    expect(await refusal({ username: '$token', password: token('bob', -10), protocolVersion: 5 })).toBe(0x86)
    // a token that expires while connected: disconnected then (MQTT 5: 0xA0 Maximum connect time)
    const brief = await connectClient(srv.mqttUrl, { username: '$token', password: signToken({ sub: 'bob', exp: Math.floor(Date.now() / 1000) + 1 }, SECRET), protocolVersion: 5 })
    const reason = await new Promise<number>((resolve) => brief.client.once('disconnect', (p) => resolve(p.reasonCode ?? -1)))
    expect(reason).toBe(0xa0)
    const metrics = await https('/metrics')
    expect(metrics.text).toMatch(/^edgebus_auth_failures_total [1-9]\d*$/m)
  })

  it('SIGHUP reads the password file again', async () => {
    expect(await refusal({ username: 'carol', password: 'singer', protocolVersion: 5 })).toBe(0x86)
    await passwd('carol', 'singer')
    srv.proc.kill('SIGHUP')
    const deadline = Date.now() + 5000
    while (!srv.output.some((l) => l.includes('password file reloaded')) && Date.now() < deadline) await sleep(20)
    expect(await refusal({ username: 'carol', password: 'singer', protocolVersion: 5 })).toBe(0)
  })
})

describe('ACLs over MQTT', () => {
  it('publish: MQTT 5 hears 0x87, MQTT 3.1.1 is acked and the message goes nowhere', async () => {
    const alice = await login('alice', 'wonderland')
    await alice.client.subscribeAsync('devices/#', { qos: 1 })
    const bob5 = await login('bob', 'builder', { protocolVersion: 5 })
    await bob5.client.publishAsync('devices/bob/temp', '21', { qos: 1 })
    await expect(bob5.client.publishAsync('devices/carol/temp', 'forged', { qos: 1 })).rejects.toMatchObject({ code: 0x87 })
    const bob4 = await login('bob', 'builder', { protocolVersion: 4 })
    await bob4.client.publishAsync('devices/carol/temp', 'forged too', { qos: 1 }) // PUBACK, no error
    await bob4.client.publishAsync('devices/carol/temp', 'forged qos0', { qos: 0 })
    await bob4.client.publishAsync('devices/bob/hum', '40', { qos: 1 })
    await alice.waitFor(2)
    await sleep(200)
    expect(alice.messages.map((m) => m.payload)).toEqual(['21', '40'])
    expect(bob4.client.connected).toBe(true)
  })

  it('subscribe: refused where nothing could be received; deliveries checked per message, retained ones too', async () => {
    const alice = await login('alice', 'wonderland')
    await alice.client.publishAsync('devices/x/secret', 'pin 1234', { qos: 1, retain: true })
    await alice.client.publishAsync('devices/x/state', 'on', { qos: 1, retain: true })
    const bob = await login('bob', 'builder', { protocolVersion: 5 })
    const codes = await new Promise<number[]>((resolve) => {
      bob.client.subscribe({ 'admin/#': { qos: 1 }, 'devices/+/secret': { qos: 1 }, 'devices/#': { qos: 1 } }, (_e, _g, packet) => resolve((packet as unknown as { granted: number[] }).granted))
    })
    expect(codes).toEqual([0x87, 0x87, 1])
    // retained: only what bob may read
    await bob.waitFor(1)
    await alice.client.publishAsync('devices/y/secret', 'pin 9', { qos: 0 }) // fast path
    await alice.client.publishAsync('devices/y/secret', 'pin 8', { qos: 1 })
    await alice.client.publishAsync('devices/y/state', 'off', { qos: 1 })
    await bob.waitFor(2)
    await sleep(200)
    expect(bob.messages.map((m) => `${m.topic} ${m.payload}`)).toEqual(['devices/x/state on', 'devices/y/state off'])
  })

  it('%c: a client\'s own area, by its client id, whatever its user', async () => {
    const bob = await login('bob', 'builder', { clientId: 'box-7', protocolVersion: 5 })
    await bob.client.publishAsync('clients/box-7/status', 'up', { qos: 1 })
    await expect(bob.client.publishAsync('clients/box-8/status', 'up', { qos: 1 })).rejects.toMatchObject({ code: 0x87 })
  })

  it('a stream replayed over MQTT gives each client only what it may read', async () => {
    const bob = await login('bob', 'builder', { protocolVersion: 5 })
    const codes = await new Promise<number[]>((resolve) => {
      bob.client.subscribe({ '$replay/dev/all/devices/+/secret': { qos: 0 }, '$replay/dev/all/#': { qos: 0 } }, (_e, _g, p) => resolve((p as unknown as { granted: number[] }).granted))
    })
    // nothing of the first could ever be read: refused; the second is filtered per message
    expect(codes).toEqual([0x87, 0])
    await bob.waitFor(4)
    await sleep(200)
    // the stream holds alice's secrets too (x, y): bob's replay skips them
    expect(bob.messages.map((m) => m.topic.replace('$replay/dev/all/', ''))).toEqual(['devices/bob/temp', 'devices/bob/hum', 'devices/x/state', 'devices/y/state'])
  })
})

describe('TLS', () => {
  it('MQTT over TLS with the test CA; a client certificate logs in as its CN', async () => {
    expect(srv.tlsPort).toBeGreaterThan(0)
    const url = `mqtts://localhost:${srv.tlsPort}`
    const ca = pki.read(pki.ca)
    const viaPassword = await connectClient(url, { ca, username: 'bob', password: 'builder', protocolVersion: 5 })
    await viaPassword.client.publishAsync('devices/bob/tls', 'ok', { qos: 1 })
    // untrusted server certificate: the client refuses
    expect(String(await refusal({ rejectUnauthorized: true }, url))).toMatch(/CERT/)
    // mTLS: no password, the certificate says alice, who may publish anywhere
    const alice = pki.client('alice')
    const viaCert: TestClient = await connectClient(url, { ca, cert: pki.read(alice.cert), key: pki.read(alice.key), protocolVersion: 5 })
    await viaCert.client.publishAsync('anywhere/at/all', 'x', { qos: 1 })
  })

  it('HTTPS and WSS: /ws with a token in the URL, checked per message', async () => {
    const ws = new WebSocket(`wss://localhost:${srv.httpPort}/ws?token=${token('bob')}`, { ca: pki.read(pki.ca) })
    const frames: Array<Record<string, unknown>> = []
    ws.on('message', (d) => frames.push(JSON.parse(String(d)) as Record<string, unknown>))
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    const ask = async (req: Record<string, unknown>): Promise<Record<string, unknown>> => {
      const id = String(Math.random())
      ws.send(JSON.stringify({ ...req, id }))
      const deadline = Date.now() + 5000
      for (;;) {
        const f = frames.find((x) => x.id === id)
        if (f) return f
        if (Date.now() > deadline) throw new Error(`no answer to ${JSON.stringify(req)}: ${JSON.stringify(frames)}`)
        await sleep(10)
      }
    }
    expect(await ask({ op: 'hello' })).toMatchObject({ op: 'hello', user: 'bob' })
    expect(await ask({ op: 'sub', filter: 'admin.>' })).toMatchObject({ op: 'error', code: 'EACL_DENIED' })
    expect(await ask({ op: 'sub', filter: 'devices.>' })).toMatchObject({ op: 'ok' })
    expect(await ask({ op: 'pub', subject: 'devices.carol.temp', payload: 'x' })).toMatchObject({ op: 'error', code: 'EACL_DENIED' })
    const alice = await login('alice', 'wonderland')
    await alice.client.publishAsync('devices/z/secret', 'hidden', { qos: 1 })
    await alice.client.publishAsync('devices/z/state', 'shown', { qos: 1 })
    const deadline = Date.now() + 3000
    while (!frames.some((f) => f.op === 'msg') && Date.now() < deadline) await sleep(10)
    await sleep(200)
    expect(frames.filter((f) => f.op === 'msg').map((f) => f.payload)).toEqual(['shown'])
    ws.close()

    // no token, anonymous off: nothing but hello and ping
    const anon = new WebSocket(`wss://localhost:${srv.httpPort}/ws`, { ca: pki.read(pki.ca) })
    const got: Array<Record<string, unknown>> = []
    anon.on('message', (d) => got.push(JSON.parse(String(d)) as Record<string, unknown>))
    await new Promise((resolve, reject) => { anon.once('open', resolve); anon.once('error', reject) })
    anon.send(JSON.stringify({ op: 'sub', id: 1, filter: '#' }))
    const t0 = Date.now()
    while (got.length === 0 && Date.now() - t0 < 3000) await sleep(10)
    expect(got[0]).toMatchObject({ op: 'error', code: 'EAUTH_ANONYMOUS' })
    anon.close()
  })
})

describe('the HTTP API', () => {
  it('authenticates with Basic or Bearer, answers 401 with WWW-Authenticate and 403 on a denial', async () => {
    const none = await https('/api/publish/devices/bob/x', { method: 'POST', body: '1' })
    expect(none.status).toBe(401)
    expect(none.headers['www-authenticate']).toMatch(/Bearer/)
    expect((await https('/api/publish/devices/bob/x', { method: 'POST', body: '1', headers: { authorization: basic('bob', 'wrong') } })).status).toBe(401)
    const ok = await https('/api/publish/devices/bob/x', { method: 'POST', body: '1', headers: { authorization: basic('bob', 'builder') } })
    expect(ok.status, ok.text).toBe(200)
    expect(JSON.parse(ok.text)).toMatchObject({ stored: [{ stream: 'dev' }] })
    const forged = await https('/api/publish/devices/carol/x', { method: 'POST', body: '1', headers: { authorization: `Bearer ${token('bob')}` } })
    expect(forged.status).toBe(403)
    expect(JSON.parse(forged.text)).toMatchObject({ error: { code: 'EACL_DENIED' } })
  })

  it('replay is filtered by what the user may read; stream management needs $admin', async () => {
    const bob = { authorization: basic('bob', 'builder') }
    expect((await https('/api/streams/dev/messages?limit=0&filter=devices/%2B/secret', { headers: bob })).status).toBe(403)
    const all = await https('/api/streams/dev/messages?limit=0', { headers: bob })
    expect(all.status).toBe(200)
    const subjects = all.text.trim().split('\n').map((l) => (JSON.parse(l) as { subject: string }).subject)
    expect(subjects).toContain('devices/bob/temp')
    expect(subjects.filter((t) => t.endsWith('/secret'))).toEqual([]) // alice stored some; bob does not see them
    const asAlice = await https('/api/streams/dev/messages?limit=0', { headers: { authorization: basic('alice', 'wonderland') } })
    expect(asAlice.text).toContain('/secret')
    const body = JSON.stringify({ name: 'extra', subjects: ['extra/#'] })
    expect((await https('/api/streams', { method: 'POST', body, headers: bob })).status).toBe(403)
    const made = await https('/api/streams', { method: 'POST', body, headers: { authorization: basic('alice', 'wonderland') } })
    expect(made.status, made.text).toBe(201)
    expect((await https('/api/stats', { headers: bob })).status).toBe(403)
    expect((await https('/api/stats', { headers: { authorization: basic('alice', 'wonderland') } })).status).toBe(200)
  })
})
