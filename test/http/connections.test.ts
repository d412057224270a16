import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { signToken } from '../../src/auth/token.ts'
import { BUNDLE, run, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients, type TestClient } from '../support/mqtt.ts'

const SECRET = 'connections-test-token-secret-0123456789'
const acl = {
  users: {
    admin: [{ allow: 'pubsub', subject: '#' }, { allow: 'pubsub', subject: '$admin/#' }, { allow: 'sub', subject: '$SYS/#' }],
    // reads the server, may disconnect meter-2 only
    support: [{ allow: 'sub', subject: '$SYS/#' }, { allow: 'pub', subject: '$admin/clients/meter-2' }],
  },
  default: [{ allow: 'pubsub', subject: 'devices/%u/#' }],
}
const token = (sub: string) => signToken({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, SECRET)
const as = (user: string) => ({ authorization: `Bearer ${token(user)}` })

let srv: StartedEdgebus
beforeAll(async () => { srv = await startEdgebus({ config: { auth: { tokenSecret: SECRET, acl } } }) })
afterAll(async () => {
  await endAllClients()
  await srv.stop()
})

interface Row { id: number; clientId: string; user: string | null; version: number; subscriptions: string[] }
async function rows(): Promise<Row[]> {
  const res = await fetch(`${srv.httpUrl}/api/connections`, { headers: as('admin') })
  expect(res.status).toBe(200)
  return ((await res.json()) as { connections: Row[] }).connections
}
async function device(clientId: string, protocolVersion: 4 | 5, extra: Record<string, unknown> = {}): Promise<TestClient> {
  const c = await connectClient(srv.mqttUrl, { clientId, protocolVersion, username: '$token', password: token(clientId), ...extra })
  await c.client.subscribeAsync(`devices/${clientId}/#`, { qos: 1 })
  return c
}
const idOf = async (clientId: string) => (await rows()).find((r) => r.clientId === clientId)?.id as number

describe('GET /api/connections/<id>', () => {
  it('describes one connection: user, how it logged in, its subscriptions with their QoS', async () => {
    await device('meter-1', 5)
    const id = await idOf('meter-1')
    const res = await fetch(`${srv.httpUrl}/api/connections/${id}`, { headers: as('support') })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({
      connection: { id, clientId: 'meter-1', user: 'meter-1', auth: 'token', version: 5, protocol: 'mqtt-tcp', connected: true, subscriptions: [{ filter: 'devices/meter-1/#', qos: 1 }] },
    })
    expect((await fetch(`${srv.httpUrl}/api/connections/${id}`, { method: 'HEAD', headers: as('admin') })).status).toBe(200)
  })

  it('is guarded like the list ($SYS/#), and says when there is no such connection', async () => {
    const id = await idOf('meter-1')
    expect((await fetch(`${srv.httpUrl}/api/connections/${id}`)).status).toBe(401)
    const device = await fetch(`${srv.httpUrl}/api/connections/${id}`, { headers: as('meter-1') })
    expect(device.status).toBe(403)
    expect(await device.json()).toMatchObject({ error: { code: 'EACL_DENIED' } })
    for (const bad of ['999999', 'meter-1', '1.5']) {
      const missing = await fetch(`${srv.httpUrl}/api/connections/${bad}`, { headers: as('admin') })
      expect(missing.status, bad).toBe(404)
      expect(await missing.json(), bad).toMatchObject({ error: { code: 'ECONNECTION_NOT_FOUND' } })
    }
  })
})

describe('DELETE /api/connections/<id>', () => {
  it('disconnects: MQTT 5 hears DISCONNECT 0x98 and its will is published; MQTT 3.1.1 is closed', async () => {
    const watcher = await connectClient(srv.mqttUrl, { username: '$token', password: token('admin'), protocolVersion: 5 })
    await watcher.client.subscribeAsync('devices/#', { qos: 1 })
    const v5 = await device('meter-2', 5, { will: { topic: 'devices/meter-2/status', payload: Buffer.from('gone'), qos: 1, retain: false } })
    const v4 = await device('meter-3', 4)
    const reason = new Promise<number>((resolve) => v5.client.once('disconnect', (p) => resolve(p.reasonCode ?? -1)))
    const closed4 = new Promise<void>((resolve) => v4.client.once('close', () => resolve()))
    const kick = await fetch(`${srv.httpUrl}/api/connections/${await idOf('meter-2')}`, { method: 'DELETE', headers: as('support') })
    expect(kick.status).toBe(204)
    expect(await reason).toBe(0x98)
    expect((await watcher.waitFor(1))[0]).toMatchObject({ topic: 'devices/meter-2/status', payload: 'gone' })
    expect((await fetch(`${srv.httpUrl}/api/connections/${await idOf('meter-3')}`, { method: 'DELETE', headers: as('admin') })).status).toBe(204)
    await closed4
    await vi.waitFor(async () => expect((await rows()).map((r) => r.clientId)).not.toContain('meter-3'), { timeout: 5000, interval: 50 })
    expect((await rows()).map((r) => r.clientId)).not.toContain('meter-2')
  })

  it('needs publish permission on $admin/clients/<client id>: refused ones stay connected', async () => {
    const pump = await device('pump-1', 5)
    const id = await idOf('pump-1')
    const refused = await fetch(`${srv.httpUrl}/api/connections/${id}`, { method: 'DELETE', headers: as('support') }) // support may kick meter-2 only
    expect(refused.status).toBe(403)
    expect(await refused.json()).toMatchObject({ error: { code: 'EACL_DENIED', message: expect.stringContaining('$admin/clients/pump-1') } })
    expect((await fetch(`${srv.httpUrl}/api/connections/${id}`, { method: 'DELETE' })).status).toBe(401)
    expect(pump.client.connected).toBe(true)
    expect((await rows()).map((r) => r.clientId)).toContain('pump-1')
    expect((await fetch(`${srv.httpUrl}/api/connections/${id}?force=1`, { method: 'DELETE', headers: as('admin') })).status).toBe(400)
  })
})

describe('edgebus client ls|info|kick', () => {
  const cli = (...args: string[]) => run(process.execPath, [BUNDLE, 'client', ...args, '--server', srv.httpUrl], { env: { EDGEBUS_TOKEN: token('admin') } })

  it('lists, describes and kicks by client id or connection id', async () => {
    const c = await device('meter-9', 5)
    const reason = new Promise<number>((resolve) => c.client.once('disconnect', (p) => resolve(p.reasonCode ?? -1)))
    const ls = await cli('ls')
    expect(ls.code, ls.stderr).toBe(0)
    expect(ls.stdout.split('\n')[0]).toMatch(/^ID\s+CLIENT ID\s+PROTOCOL\s+ADDRESS\s+USER\s+SUBSCRIPTIONS/)
    expect(ls.stdout).toMatch(/meter-9\s+mqtt-tcp v5\s+127\.0\.0\.1:\d+\s+meter-9\s+devices\/meter-9\/#/)
    const info = await cli('info', 'meter-9')
    expect(info.code, info.stderr).toBe(0)
    expect(JSON.parse(info.stdout)).toMatchObject({ connection: { clientId: 'meter-9', auth: 'token', subscriptions: [{ filter: 'devices/meter-9/#', qos: 1 }] } })
    const byId = await cli('info', String(await idOf('meter-9')))
    expect(JSON.parse(byId.stdout)).toMatchObject({ connection: { clientId: 'meter-9' } })
    const kick = await cli('kick', 'meter-9')
    expect(kick.code, kick.stderr).toBe(0)
    expect(kick.stdout).toMatch(/^disconnected meter-9 \(127\.0\.0\.1:\d+\)/)
    expect(await reason).toBe(0x98)
    const again = await cli('kick', 'meter-9')
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/^edgebus: ECONNECTION_NOT_FOUND: /)
    const noToken = await run(process.execPath, [BUNDLE, 'client', 'ls', '--server', srv.httpUrl])
    expect(noToken.code).toBe(1)
    expect(noToken.stderr).toMatch(/^edgebus: EAUTH_/)
    expect((await cli('kick')).code).toBe(2)
  })
})
