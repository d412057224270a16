import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { BUNDLE, run, spawnLines, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'
import { makeTestPki, type TestPki } from '../support/tls.ts'

/** The connection flags of `edgebus pub` and `edgebus sub` (src/cli/client.ts), against real servers. */

const edgebus = (args: string[], input?: string) => run(process.execPath, [BUNDLE, ...args], input === undefined ? {} : { input })
const SECRET = 'a-token-secret-of-at-least-32-characters!'

let pki: TestPki
let open: StartedEdgebus
let tls: StartedEdgebus
let locked: StartedEdgebus
beforeAll(async () => {
  pki = makeTestPki()
  open = await startEdgebus({ config: { streams: [{ name: 'capped', subjects: ['capped/#'], maxMsgs: 1, discard: 'new' }] } })
  // MQTT over TLS with a private CA that also signs client certificates, which it requires
  tls = await startEdgebus({ config: { tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requireClientCert: true, mqttPort: 0 } } })
  // users only: no anonymous clients
  locked = await startEdgebus({ config: { auth: { tokenSecret: SECRET, allowAnonymous: false } } })
}, 30_000)
afterAll(async () => {
  await endAllClients()
  await Promise.all([open?.stop(), tls?.stop(), locked?.stop()])
})

describe('edgebus pub/sub connection flags', () => {
  it('TLS: --cafile trusts a private CA, --cert/--key log in with a certificate, --insecure skips the server check', async () => {
    const url = `mqtts://localhost:${tls.tlsPort}`
    const client = pki.client('meter-7')
    const withCa = await edgebus(['pub', 'tls/x', 'ok', '--url', url, '--cafile', pki.ca, '--cert', client.cert, '--key', client.key])
    expect(withCa.code, withCa.stderr).toBe(0)
    const insecure = await edgebus(['pub', 'tls/x', 'ok', '--url', url, '--insecure', '--cert', client.cert, '--key', client.key])
    expect(insecure.code, insecure.stderr).toBe(0)
    // without the CA: the server's certificate is not trusted
    const untrusted = await edgebus(['pub', 'tls/x', 'no', '--url', url, '--cert', client.cert, '--key', client.key])
    expect(untrusted.code).toBe(1)
    expect(untrusted.stderr).toMatch(/ECONNECT: .*(self-signed|certificate)/i)
    // without a client certificate: the server wants one
    const noCert = await edgebus(['pub', 'tls/x', 'no', '--url', url, '--cafile', pki.ca])
    expect(noCert.code).toBe(1)
    const half = await edgebus(['pub', 'tls/x', 'no', '--url', url, '--cert', client.cert])
    expect(half.code).toBe(2)
    expect(half.stderr).toContain('--cert and --key go together')
    const missing = await edgebus(['pub', 'tls/x', 'no', '--url', url, '--cafile', '/nonexistent/ca.pem'])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('ETLS_CONFIG: --cafile /nonexistent/ca.pem')
  })

  it('--user-property NAME=VALUE, repeatable, on the message (pub) and shown by sub --json', async () => {
    const watcher = await connectClient(open.mqttUrl, { protocolVersion: 5 })
    await watcher.client.subscribeAsync('props/#')
    const sub = spawnLines(process.execPath, [BUNDLE, 'sub', 'props/#', '--url', open.mqttUrl, '--count', '1', '--json'])
    await vi.waitFor(async () => {
      const { connections } = await (await fetch(`${open.httpUrl}/api/connections`)).json() as { connections: Array<{ subscriptions: string[] }> }
      expect(connections.filter((c) => c.subscriptions.includes('props/#'))).toHaveLength(2)
    }, { timeout: 10_000, interval: 50 })
    const pub = await edgebus(['pub', 'props/a', 'hi', '--url', open.mqttUrl, '--user-property', 'site=north', '--user-property', 'site=south', '--user-property', 'unit=kWh=x'])
    expect(pub.code, pub.stderr).toBe(0)
    const [m] = await watcher.waitFor(1)
    expect(m?.properties?.userProperties).toEqual({ site: ['north', 'south'], unit: 'kWh=x' })
    const [line] = await sub.waitFor(1)
    expect(JSON.parse(line as string)).toMatchObject({ subject: 'props/a', payload: 'hi', userProperties: { site: ['north', 'south'], unit: 'kWh=x' } })
    const v4 = await edgebus(['pub', 'props/a', 'hi', '--url', open.mqttUrl, '--protocol', '4', '--user-property', 'a=b'])
    expect(v4.code).toBe(2)
    expect(v4.stderr).toContain('--user-property needs MQTT 5')
    const bad = await edgebus(['pub', 'props/a', 'hi', '--url', open.mqttUrl, '--user-property', 'novalue'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('write NAME=VALUE')
  })

  it('a will (--will-topic/--will-payload/--will-qos/--will-retain) is published when the CLI dies, not when it ends', async () => {
    const watcher = await connectClient(open.mqttUrl, { protocolVersion: 5 })
    await watcher.client.subscribeAsync('wills/#', { qos: 1 })
    const sub = spawnLines(process.execPath, [BUNDLE, 'sub', 'nothing/here', '--url', open.mqttUrl, '--client-id', 'will-cli',
      '--will-topic', 'wills.gateway', '--will-payload', 'offline', '--will-qos', '1', '--will-retain'])
    await vi.waitFor(async () => {
      const { connections } = await (await fetch(`${open.httpUrl}/api/connections`)).json() as { connections: Array<{ clientId: string | null; subscriptions: string[] }> }
      expect(connections.find((c) => c.clientId === 'will-cli')?.subscriptions).toEqual(['nothing/here'])
    }, { timeout: 10_000, interval: 50 })
    // a clean end (pub) sends DISCONNECT: no will
    expect((await edgebus(['pub', 'x', 'y', '--url', open.mqttUrl, '--will-topic', 'wills/pub', '--will-payload', 'never'])).code).toBe(0)
    sub.proc.kill('SIGKILL')
    const [m] = await watcher.waitFor(1)
    expect(m).toMatchObject({ topic: 'wills/gateway', payload: 'offline', qos: 1 })
    // retained: a later subscriber gets it
    const late = await connectClient(open.mqttUrl)
    await late.client.subscribeAsync('wills/gateway')
    expect((await late.waitFor(1))[0]).toMatchObject({ payload: 'offline', retain: true })
    expect(watcher.messages.map((x) => x.topic)).not.toContain('wills/pub')
    const lone = await edgebus(['pub', 'x', 'y', '--url', open.mqttUrl, '--will-payload', 'p'])
    expect(lone.code).toBe(2)
    expect(lone.stderr).toContain('need --will-topic')
  })

  it('a server that refuses prints EREFUSED with the reason code (exit 1); one that cannot be reached ECONNECT', async () => {
    for (const protocol of ['4', '5']) {
      const anon = await edgebus(['pub', 'x', 'y', '--url', locked.mqttUrl, '--protocol', protocol])
      expect(anon.code, protocol).toBe(1)
      expect(anon.stderr, protocol).toMatch(/^edgebus: EREFUSED: the server refused the connection: reason code 0x(05|87) \(not authorized\)/)
      const wrong = await edgebus(['sub', 'x', '--url', locked.mqttUrl, '--protocol', protocol, '--username', '$token', '--password', 'not-a-token'])
      expect(wrong.code, protocol).toBe(1)
      expect(wrong.stderr, protocol).toMatch(/EREFUSED: .*reason code 0x(04|86) \(bad user name or password\)/)
      expect(wrong.stderr).not.toContain('ECONNECT')
    }
    expect((await edgebus(['pub', 'capped/a', 'one', '--qos', '1', '--url', open.mqttUrl])).code).toBe(0)
    const full = await edgebus(['pub', 'capped/a', 'two', '--qos', '1', '--url', open.mqttUrl])
    expect(full.code).toBe(1)
    expect(full.stderr).toMatch(/^edgebus: EREFUSED: the server refused the publish to capped\/a: reason code 0x97 \(quota exceeded\)/)
    const refusedSub = await edgebus(['sub', '$replay/nostream/all/#', '--url', open.mqttUrl])
    expect(refusedSub.code).toBe(1)
    expect(refusedSub.stderr).toMatch(/EREFUSED: the server refused a subscription: reason code 0x80/)
    const down = await edgebus(['pub', 'x', 'y', '--url', 'mqtt://127.0.0.1:1'])
    expect(down.code).toBe(1)
    expect(down.stderr).toContain('ECONNECT')
  })
})
