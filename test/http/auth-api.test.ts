import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { WebSocket } from 'ws'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { signToken } from '../../src/auth/token.ts'
import { BUNDLE, run, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients, type TestClient } from '../support/mqtt.ts'

/** Users and ACLs at run time: /api/auth (src/http/auth-api.ts), edgebus user/acl, SIGHUP. */

const SECRET = 'auth-api-test-token-secret-0123456789'
const config = {
  auth: {
    passwordFile: 'passwd',
    tokenSecret: SECRET,
    acl: {
      users: { admin: [{ allow: 'pubsub', subject: '#' }, { allow: 'pubsub', subject: '$admin/#' }, { allow: 'sub', subject: '$SYS/#' }] },
      default: [{ allow: 'pubsub', subject: 'devices/%u/#' }, { allow: 'sub', subject: 'public/#' }],
    },
  },
}
const token = (sub: string) => signToken({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, SECRET)

let dir: string
let srv: StartedEdgebus
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'edgebus-auth-api-'))
  expect((await run(process.execPath, [BUNDLE, 'passwd', join(dir, 'passwd'), 'ops'], { input: 'ops-pass\n' })).code).toBe(0)
  srv = await startEdgebus({ dir, config })
})
afterAll(async () => {
  await endAllClients()
  await srv?.stop()
  rmSync(dir, { recursive: true, force: true })
})

async function api(method: string, path: string, body?: unknown, user = 'admin'): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(srv.httpUrl + path, {
    method, body: body === undefined ? undefined : JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...(user === '' ? {} : { authorization: `Bearer ${token(user)}` }) },
  })
  return { status: res.status, json: res.status === 204 ? {} : await res.json() as Record<string, unknown> }
}

/** The CONNACK code of a login (0: accepted). */
function login(username: string, password: string, url = srv.mqttUrl): Promise<number> {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, { username, password, protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000 })
    c.once('connect', () => { c.end(true); resolve(0) })
    c.once('error', (err) => { c.end(true); resolve((err as { code?: number }).code ?? -1) })
  })
}

/** Publishes `topics` in order from `c`, then a marker; resolves with what `watcher` got up to the marker. */
async function throughMarker(c: TestClient, watcher: TestClient, topics: string[], marker: string): Promise<string[]> {
  watcher.messages.length = 0
  for (const t of topics) c.client.publish(t, t) // QoS 0: the fast path
  c.client.publish(marker, 'marker')
  await vi.waitFor(() => expect(watcher.messages.map((m) => m.topic)).toContain(marker), { timeout: 5000, interval: 20 })
  const got = watcher.messages.map((m) => m.topic)
  watcher.messages.length = 0
  return got
}

describe('users at run time (/api/auth/users)', () => {
  it('a user added over the API logs in at once; its password changes at once; removed, it is disconnected and refused', async () => {
    expect(await login('carol', 'first')).toBe(0x86)
    const added = await api('POST', '/api/auth/users', { name: 'carol', password: 'first' })
    expect(added.status).toBe(201)
    expect(added.json).toEqual({ user: { name: 'carol', password: 'api', rules: null } })
    expect(await login('carol', 'first')).toBe(0)
    // HTTP Basic too (its checks are cached: a change must clear them)
    const basic = (pw: string) => fetch(`${srv.httpUrl}/api/streams`, { headers: { authorization: `Basic ${Buffer.from(`carol:${pw}`).toString('base64')}` } })
    expect((await basic('first')).status).toBe(200)

    expect((await api('PUT', '/api/auth/users/carol', { password: 'second' })).status).toBe(200)
    expect(await login('carol', 'first')).toBe(0x86)
    expect(await login('carol', 'second')).toBe(0)
    expect((await basic('first')).status).toBe(401)

    const live = await connectClient(srv.mqttUrl, { username: 'carol', password: 'second', protocolVersion: 5 })
    const reason = new Promise<number>((resolve) => live.client.once('disconnect', (p) => resolve(p.reasonCode ?? -1)))
    expect((await api('DELETE', '/api/auth/users/carol')).status).toBe(204)
    expect(await reason).toBe(0x98)
    expect(await login('carol', 'second')).toBe(0x86)
    expect((await api('GET', '/api/auth/users')).json.users).toEqual([{ name: 'ops', password: 'file', rules: null }])
    expect((await api('DELETE', '/api/auth/users/carol')).json).toMatchObject({ error: { code: 'EUSER_NOT_FOUND' } })
  })

  it('refuses what it cannot do, with codes: a user that exists, a password-file user, bad input, no $admin/auth', async () => {
    expect((await api('POST', '/api/auth/users', { name: 'ops', password: 'x' })).json).toMatchObject({ error: { code: 'EUSER_EXISTS' } })
    const configured = await api('PUT', '/api/auth/users/ops', { password: 'x' })
    expect(configured.status).toBe(409)
    expect(configured.json).toMatchObject({ error: { code: 'EUSER_CONFIGURED' } })
    expect((await api('POST', '/api/auth/users', { name: 'bad/name', password: 'x' })).json).toMatchObject({ error: { code: 'EUSER_INVALID' } })
    expect((await api('POST', '/api/auth/users', { name: 'dan' })).json).toMatchObject({ error: { code: 'EUSER_INVALID' } })
    const badRule = await api('POST', '/api/auth/users', { name: 'dan', password: 'x', acl: [{ allow: 'everything', subject: '#' }] })
    expect(badRule.json).toMatchObject({ error: { code: 'EACL_INVALID' } })
    expect(await login('dan', 'x')).toBe(0x86) // nothing was added
    expect((await api('GET', '/api/auth/users', undefined, 'someone')).status).toBe(403)
    expect((await api('GET', '/api/auth/users', undefined, '')).status).toBe(401)
    expect((await api('GET', '/api/auth/nothing')).status).toBe(404)
  })
})

describe('ACL rules at run time (/api/auth/acl)', () => {
  it('a change applies to live connections: a subscription stops getting what is now denied, a publish (fast path) stops', async () => {
    expect((await api('POST', '/api/auth/users', { name: 'erin', password: 'pw', acl: [{ allow: 'pubsub', subject: 'erin/#' }] })).status).toBe(201)
    const admin = await connectClient(srv.mqttUrl, { username: '$token', password: token('admin'), protocolVersion: 5 })
    await admin.client.subscribeAsync('erin/#')
    const erin = await connectClient(srv.mqttUrl, { username: 'erin', password: 'pw', protocolVersion: 5 })
    await erin.client.subscribeAsync(['public/#', 'erin/#', 'devices/erin/#']) // the config's default rules follow hers
    expect(await throughMarker(admin, erin, ['public/a'], 'erin/m1')).toEqual(['public/a', 'erin/m1'])
    expect(await throughMarker(erin, admin, ['erin/x', 'erin/x'], 'erin/m2')).toEqual(['erin/x', 'erin/x', 'erin/m2'])

    const set = await api('PUT', '/api/auth/acl/erin', [{ deny: 'sub', subject: 'public/#' }, { deny: 'pub', subject: 'erin/x' }, { allow: 'pubsub', subject: 'erin/#' }])
    expect(set.status).toBe(200)
    expect(await throughMarker(admin, erin, ['public/b'], 'erin/m3')).toEqual(['erin/m3'])
    expect(await throughMarker(erin, admin, ['erin/x'], 'erin/m4')).toEqual(['erin/m4'])
    expect((await api('GET', '/api/auth/acl/erin')).json).toMatchObject({ user: 'erin', rules: [{ deny: 'sub', subject: 'public/#' }, {}, {}] })

    // back to the config's rules (erin's own are gone: only the defaults, which allow public/#)
    expect((await api('DELETE', '/api/auth/acl/erin')).status).toBe(204)
    expect(await throughMarker(admin, erin, ['public/c', 'erin/z'], 'devices/erin/m5')).toEqual(['public/c', 'devices/erin/m5'])
    expect((await api('PUT', '/api/auth/acl/erin', [{ allow: 'nothing' }])).json).toMatchObject({ error: { code: 'EACL_INVALID' } })
  })

  it('rules for a token user (no password here) apply to its live connections: MQTT and /ws', async () => {
    const frank = await connectClient(srv.mqttUrl, { username: '$token', password: token('frank'), protocolVersion: 5 })
    await frank.client.subscribeAsync('public/#')
    const ws = new WebSocket(`ws://127.0.0.1:${srv.httpPort}/ws?token=${token('frank')}`)
    const frames: Array<{ op: string; subject?: string }> = []
    ws.on('message', (d) => frames.push(JSON.parse(String(d)) as { op: string; subject?: string }))
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    ws.send(JSON.stringify({ op: 'sub', id: 1, filter: 'public/#' }))
    await vi.waitFor(() => expect(frames.map((f) => f.op)).toContain('ok'), { timeout: 5000, interval: 20 })
    const wsGot = async (marker: string): Promise<string[]> => {
      await vi.waitFor(() => expect(frames.map((f) => f.subject)).toContain(marker), { timeout: 5000, interval: 20 })
      const got = frames.filter((f) => f.op === 'msg').map((f) => f.subject as string)
      frames.length = 0
      return got
    }
    const admin = await connectClient(srv.mqttUrl, { username: '$token', password: token('admin'), protocolVersion: 5 })
    expect(await throughMarker(admin, frank, ['public/a'], 'public/m')).toEqual(['public/a', 'public/m'])
    expect(await wsGot('public/m')).toEqual(['public/a', 'public/m'])
    expect((await api('PUT', '/api/auth/acl/frank', [{ deny: 'sub', subject: 'public/a' }])).status).toBe(200)
    expect(await throughMarker(admin, frank, ['public/a'], 'public/m')).toEqual(['public/m'])
    expect(await wsGot('public/m')).toEqual(['public/m'])
    ws.close()
    expect((await api('GET', '/api/auth/acl')).json.acl).toMatchObject({ frank: [{ deny: 'sub', subject: 'public/a' }] })
  })
})

describe('kept beside the data', () => {
  it('survives a restart; edits by hand apply on SIGHUP', async () => {
    const d = mkdtempSync(join(tmpdir(), 'edgebus-auth-keep-'))
    expect((await run(process.execPath, [BUNDLE, 'passwd', join(d, 'passwd'), 'ops'], { input: 'ops-pass\n' })).code).toBe(0)
    const first = await startEdgebus({ dir: d, config })
    try {
      expect((await fetch(`${first.httpUrl}/api/auth/users`, { method: 'POST', headers: { authorization: `Bearer ${token('admin')}` }, body: JSON.stringify({ name: 'gina', password: 'pw', acl: [{ allow: 'pub', subject: 'gina/#' }] }) })).status).toBe(201)
    } finally {
      await first.stop()
    }
    expect(readFileSync(join(d, 'data', 'auth', 'passwd'), 'utf8')).toMatch(/^gina:\$scrypt\$/)
    const second = await startEdgebus({ dir: d, config })
    try {
      expect(await login('gina', 'pw', second.mqttUrl)).toBe(0)
      const gina = await connectClient(second.mqttUrl, { username: 'gina', password: 'pw', protocolVersion: 5 })
      const granted = (filter: string) => new Promise<number>((resolve) => {
        gina.client.subscribe(filter, (_err, _granted, packet) => resolve((packet as unknown as { granted: number[] }).granted[0] as number))
      })
      expect(await granted('public/x')).toBe(0) // the config's defaults
      writeFileSync(join(d, 'data', 'auth', 'acl.json'), JSON.stringify({ gina: [{ deny: 'sub', subject: 'public/#' }] }))
      second.proc.kill('SIGHUP')
      await vi.waitFor(() => expect(second.output.join('\n')).toContain('run-time users and ACLs reloaded'), { timeout: 5000, interval: 20 })
      expect(await granted('public/y')).toBe(0x87)
    } finally {
      await endAllClients()
      await second.stop()
      rmSync(d, { recursive: true, force: true })
    }
  })

  it("SIGHUP reads the config file's ACL again: live connections follow it", async () => {
    const d = mkdtempSync(join(tmpdir(), 'edgebus-auth-hup-'))
    const rules = (publicRule: Record<string, string>) => ({ auth: { tokenSecret: SECRET, acl: { users: config.auth.acl.users, default: [publicRule, { allow: 'pubsub', subject: 'devices/%u/#' }] } } })
    const hup = await startEdgebus({ dir: d, config: rules({ allow: 'sub', subject: 'public/#' }) })
    try {
      const ivy = await connectClient(hup.mqttUrl, { username: '$token', password: token('ivy'), protocolVersion: 5 })
      await ivy.client.subscribeAsync(['public/#', 'devices/ivy/#'])
      const admin = await connectClient(hup.mqttUrl, { username: '$token', password: token('admin'), protocolVersion: 5 })
      expect(await throughMarker(admin, ivy, ['public/a'], 'devices/ivy/m1')).toEqual(['public/a', 'devices/ivy/m1'])
      writeFileSync(join(d, 'edgebus.json'), JSON.stringify(rules({ deny: 'sub', subject: 'public/#' })))
      hup.proc.kill('SIGHUP')
      await vi.waitFor(() => expect(hup.output.join('\n')).toContain('ACL of the config file reloaded'), { timeout: 5000, interval: 20 })
      expect(await throughMarker(admin, ivy, ['public/b'], 'devices/ivy/m2')).toEqual(['devices/ivy/m2'])
      // a broken file keeps the ACL in force
      writeFileSync(join(d, 'edgebus.json'), '{ not json')
      hup.proc.kill('SIGHUP')
      await vi.waitFor(() => expect(hup.output.join('\n')).toContain('config file not read again'), { timeout: 5000, interval: 20 })
      expect(await throughMarker(admin, ivy, ['public/c'], 'devices/ivy/m3')).toEqual(['devices/ivy/m3'])
    } finally {
      await endAllClients()
      await hup.stop()
      rmSync(d, { recursive: true, force: true })
    }
  })

  it('a damaged acl.json is set aside and the server starts without it', async () => {
    const d = mkdtempSync(join(tmpdir(), 'edgebus-auth-damaged-'))
    const { mkdirSync, existsSync } = await import('node:fs')
    mkdirSync(join(d, 'data', 'auth'), { recursive: true })
    writeFileSync(join(d, 'data', 'auth', 'acl.json'), '{"gina": [{"allow": "all"')
    writeFileSync(join(d, 'passwd'), '')
    const s = await startEdgebus({ dir: d, config })
    try {
      expect(s.output.join('\n')).toMatch(/EACL_INVALID.*set aside as \.damaged/)
      expect(existsSync(join(d, 'data', 'auth', 'acl.json.damaged'))).toBe(true)
      const res = await fetch(`${s.httpUrl}/api/auth/acl/gina`, { method: 'PUT', headers: { authorization: `Bearer ${token('admin')}` }, body: JSON.stringify([{ allow: 'sub', subject: 'gina/#' }]) })
      expect(res.status).toBe(200)
    } finally {
      await s.stop()
      rmSync(d, { recursive: true, force: true })
    }
  })

  it('a server without an auth section refuses run-time users (every client may do everything there)', async () => {
    const open = await startEdgebus()
    try {
      const res = await fetch(`${open.httpUrl}/api/auth/users`, { method: 'POST', body: JSON.stringify({ name: 'x', password: 'y' }) })
      expect(res.status).toBe(409)
      expect(await res.json()).toMatchObject({ error: { code: 'EUSER_AUTH_OFF' } })
    } finally {
      await open.stop()
    }
  })
})

describe('edgebus user and edgebus acl', () => {
  const cli = (args: string[], input?: string) => run(process.execPath, [BUNDLE, ...args, '--server', srv.httpUrl], { env: { EDGEBUS_TOKEN: token('admin') }, ...(input === undefined ? {} : { input }) })

  it('add (password from stdin, rules), ls, passwd, acl set/get/ls/rm, rm', async () => {
    const add = await cli(['user', 'add', 'hana', '--acl', '[{"allow": "pubsub", "subject": "hana/#"}]'], 'hana-pass\n')
    expect(add.code, add.stderr).toBe(0)
    expect(await login('hana', 'hana-pass')).toBe(0)
    const ls = await cli(['user', 'ls'])
    expect(ls.stdout).toMatch(/^hana\s+api\s+1$/m)
    expect(ls.stdout).toMatch(/^ops\s+file\s+-$/m)
    expect((await cli(['user', 'passwd', 'hana'], 'new-pass\n')).code).toBe(0)
    expect(await login('hana', 'new-pass')).toBe(0)
    expect((await cli(['acl', 'set', 'hana', '[{"deny": "sub", "subject": "#"}]'])).code).toBe(0)
    expect(JSON.parse((await cli(['acl', 'get', 'hana'])).stdout)).toEqual([{ deny: 'sub', subject: '#' }])
    expect((await cli(['acl', 'ls'])).stdout).toMatch(/^hana\s+\[\{"deny":"sub","subject":"#"\}\]$/m)
    const bad = await cli(['acl', 'set', 'hana', '[{"deny": "sub"}]'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/^edgebus: EACL_INVALID: /)
    expect((await cli(['acl', 'set', 'hana', 'not json'])).code).toBe(2)
    expect((await cli(['acl', 'rm', 'hana'])).code).toBe(0)
    expect((await cli(['user', 'rm', 'hana'])).code).toBe(0)
    expect(await login('hana', 'new-pass')).toBe(0x86)
    const again = await cli(['user', 'rm', 'hana'])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/^edgebus: EUSER_NOT_FOUND: /)
  }, 40_000) // 13 CLI processes: 4 s alone, more on a machine busy with other tests
})
