import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { connect, type NatsConnection, type Msg } from '@nats-io/transport-node'
import { signToken } from '../../src/auth/token.ts'
import { BUNDLE, run, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'
import { rawNats } from './raw-nats.ts'

/** Users, tokens and ACLs apply to NATS clients as to MQTT ones: the same password file and rules. */
const SECRET = 'edgebus-test-token-secret-0123456789'
let srv: StartedEdgebus
const open: NatsConnection[] = []

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'edgebus-nats-auth-'))
  for (const [user, pw] of [['alice', 'wonderland'], ['bob', 'builder']]) {
    const r = await run(process.execPath, [BUNDLE, 'passwd', join(dir, 'passwd'), user as string], { input: `${pw}\n` })
    expect(r.code, r.stderr).toBe(0)
  }
  srv = await startEdgebus({
    dir,
    config: {
      auth: {
        passwordFile: 'passwd',
        tokenSecret: SECRET,
        acl: {
          users: {
            alice: [{ allow: 'pubsub', subject: '#' }],
            bob: [{ deny: 'sub', subject: 'devices/+/secret' }, { allow: 'pubsub', subject: 'devices/bob/#' }, { allow: 'sub', subject: 'devices/#' }, { allow: 'pubsub', subject: '_INBOX/#' }],
          },
          anonymous: [],
        },
      },
    },
  })
})
afterAll(async () => {
  await Promise.all(open.splice(0).map((c) => c.close().catch(() => {})))
  await endAllClients()
  await srv.stop()
})

async function as(opts: { user?: string; pass?: string; token?: string }): Promise<NatsConnection> {
  const nc = await connect({ servers: `127.0.0.1:${srv.natsPort}`, reconnect: false, ...opts })
  open.push(nc)
  return nc
}

describe('NATS authentication and ACLs', () => {
  it('INFO says auth_required; a wrong password, no credentials and a bad token are an Authorization Violation', async () => {
    const ok = await as({ user: 'alice', pass: 'wonderland' })
    expect(ok.info?.auth_required).toBe(true)
    for (const bad of [{ user: 'alice', pass: 'nope' }, {}, { token: 'not-a-token' }]) {
      const err = await as(bad).then(() => null, (e: unknown) => e as Error)
      expect(err, JSON.stringify(bad)).not.toBeNull()
      expect(String(err?.message) + String((err as { cause?: Error })?.cause?.message)).toMatch(/Authorization Violation/i)
    }
    expect(srv.output.some((l) => l.includes('authentication failed') && l.includes('"where":"nats"'))).toBe(true)
  })

  it('a token authenticates as its subject', async () => {
    const token = signToken({ sub: 'alice', exp: Math.floor(Date.now() / 1000) + 600 }, SECRET)
    const nc = await as({ token })
    const got: Msg[] = []
    nc.subscribe('t.x', { callback: (_e, m) => { got.push(m) } })
    nc.publish('t.x', 'hi')
    await vi.waitFor(() => expect(got).toHaveLength(1), { timeout: 5000 })
  })

  it('a connection whose token expires is closed with User Authentication Expired', async () => {
    const token = signToken({ sub: 'alice', exp: Math.floor(Date.now() / 1000) + 2 }, SECRET)
    const nc = await as({ token })
    const errors: string[] = []
    void (async () => { for await (const s of nc.status()) if (s.type === 'error') errors.push(String(s.error.message)) })()
    const closed = await nc.closed()
    expect(String(closed?.message) + errors.join()).toMatch(/User Authentication Expired|Authentication Expired/i)
  }, 10_000)

  it('a publish the ACL denies is answered with Permissions Violation for Publish and goes nowhere', async () => {
    const alice = await as({ user: 'alice', pass: 'wonderland' })
    const seen: Msg[] = []
    alice.subscribe('devices.>', { callback: (_e, m) => { seen.push(m) } })
    await alice.flush()
    const bob = await as({ user: 'bob', pass: 'builder' })
    const errors: string[] = []
    void (async () => { for await (const s of bob.status()) if (s.type === 'error') errors.push(String(s.error.message)) })()
    bob.publish('devices.carol.cmd', 'x')
    bob.publish('devices.bob.state', 'ok')
    await bob.flush()
    await vi.waitFor(() => expect(errors.join()).toMatch(/Permissions Violation for Publish to "devices.carol.cmd"/), { timeout: 5000 })
    await vi.waitFor(() => expect(seen.map((m) => m.subject)).toEqual(['devices.bob.state']), { timeout: 5000 })
    expect(bob.isClosed()).toBe(false)
  })

  it('a subscription the ACL denies gets Permissions Violation for Subscription', async () => {
    const bob = await as({ user: 'bob', pass: 'builder' })
    const sub = bob.subscribe('devices.x.secret')
    const done = (async () => { try { for await (const _m of sub) { /* none */ } return null } catch (e) { return e as Error } })()
    const err = await done
    expect(String(err?.message)).toMatch(/Permissions Violation for Subscription to "devices.x.secret"/)
  })

  it('a wildcard subscription gets only what the ACL lets it read (the delivery check)', async () => {
    const bob = await as({ user: 'bob', pass: 'builder' })
    const got: Msg[] = []
    bob.subscribe('devices.>', { callback: (_e, m) => { got.push(m) } })
    await bob.flush()
    const mq = await connectClient(srv.mqttUrl, { username: 'alice', password: 'wonderland' })
    await mq.client.publishAsync('devices/d1/secret', 's')
    await mq.client.publishAsync('devices/d1/state', 'on')
    await vi.waitFor(() => expect(got.map((m) => m.subject)).toEqual(['devices.d1.state']), { timeout: 5000 })
  })

  it('operations pipelined behind CONNECT wait for its authentication: served when it passes, never when it fails', async () => {
    const alice = await as({ user: 'alice', pass: 'wonderland' })
    const seen: Msg[] = []
    alice.subscribe('pipe.>', { callback: (_e, m) => { seen.push(m) } })
    await alice.flush()
    const rawClient = async (input: string) => {
      const c = await rawNats(srv.natsPort)
      c.send(input)
      return c
    }
    const good = await rawClient('CONNECT {"user":"bob","pass":"builder"}\r\nSUB devices.bob.x 1\r\nPUB devices.bob.x 2\r\nhi\r\nPING\r\n')
    await good.until(/MSG devices\.bob\.x 1 2\r\nhi\r\nPONG\r\n$/) // scrypt takes its time on a busy machine
    const bad = await rawClient('CONNECT {"user":"bob","pass":"wrong"}\r\nPUB pipe.x 2\r\nhi\r\nPING\r\n')
    await vi.waitFor(() => expect(bad.closed).toBe(true), { timeout: 5000 })
    expect(bad.text).toMatch(/-ERR 'Authorization Violation'\r\n$/)
    const none = await rawClient('PUB pipe.y 2\r\nhi\r\n')
    await vi.waitFor(() => expect(none.closed).toBe(true), { timeout: 5000 })
    expect(none.text).toMatch(/-ERR 'Authorization Violation'/)
    alice.publish('pipe.z', 'mark')
    await vi.waitFor(() => expect(seen.map((m) => m.subject)).toEqual(['pipe.z']), { timeout: 5000 })
    good.socket.destroy()
  })
})
