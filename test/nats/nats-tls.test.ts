import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { connect, type NatsConnection, type Msg } from '@nats-io/transport-node'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { makeTestPki, type TestPki } from '../support/tls.ts'
import { rawNats } from './raw-nats.ts'

/** With tls.cert configured, NATS clients upgrade after INFO (tls_required), as with nats-server; a CA makes certificates credentials. */
let srv: StartedEdgebus
let pki: TestPki
const open: NatsConnection[] = []

beforeAll(async () => {
  pki = makeTestPki()
  srv = await startEdgebus({
    config: {
      tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, mqttPort: 0 },
      auth: { acl: { users: { devicex: [{ allow: 'pubsub', subject: 'dev/#' }] }, anonymous: [] } },
    },
  })
})
afterAll(async () => {
  await Promise.all(open.splice(0).map((c) => c.close().catch(() => {})))
  await srv.stop()
})

describe('NATS over TLS', () => {
  it('INFO says tls_required; a client with a certificate is its CN and gets what its ACL allows', async () => {
    const { cert, key } = pki.client('devicex')
    const nc = await connect({ servers: `127.0.0.1:${srv.natsPort}`, reconnect: false, tls: { caFile: pki.ca, certFile: cert, keyFile: key } })
    open.push(nc)
    expect(nc.info?.tls_required).toBe(true)
    const got: Msg[] = []
    nc.subscribe('dev.>', { callback: (_e, m) => { got.push(m) } })
    nc.publish('dev.a', 'secure')
    await vi.waitFor(() => expect(got.map((m) => m.string())).toEqual(['secure']), { timeout: 5000 })
  })

  it('without a certificate or credentials the client is refused (anonymous access is off)', async () => {
    const err = await connect({ servers: `127.0.0.1:${srv.natsPort}`, reconnect: false, tls: { caFile: pki.ca } }).then((nc) => { open.push(nc); return null }, (e: unknown) => e as Error)
    expect(String(err?.message) + String((err as { cause?: Error } | null)?.cause?.message)).toMatch(/Authorization Violation/)
  })

  it('a client that stays plain gets INFO and nothing else: CONNECT in the clear is not read as NATS', async () => {
    const c = await rawNats(srv.natsPort)
    expect(c.text).toMatch(/"tls_required":true/)
    c.send('CONNECT {}\r\nPING\r\n')
    await vi.waitFor(() => expect(c.closed).toBe(true), { timeout: 5000 })
    expect(c.text).not.toMatch(/PONG/)
  })
})
