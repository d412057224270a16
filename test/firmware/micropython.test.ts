/**
 * The Python client (firmware-clients/micropython/edgebus.py) against a real edgebus server,
 * run unchanged under CPython (/usr/bin/python3) and under the real MicroPython VM
 * (WebAssembly, from npm) through node-runner/run.mjs and its worker-thread socket shim.
 * The runner finds the VM through EDGEBUS_MICROPYTHON or node_modules.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'
import {
  CONNECT, PUBACK, PUBLISH, PY_DIR, PYTHON, clientPublishes, connectLevel, cutPlan, decodePublish,
  expectStoredOnce, expectedPayloads, killAll, payloads, runProc as run, startProc, startProxy, startStreamServer,
  stopStreamServers, uniqueSorted, waitForPayloads, type MqttProxy,
} from './helpers.ts'

const RUNNER = join(PY_DIR, 'node-runner', 'run.mjs')
const EXAMPLES = join(PY_DIR, 'examples')
/** umqtt.simple's heap cost after import, the figure to beat. */
const UMQTT_SIMPLE_HEAP = 14_600

interface Runtime { name: string; cmd: string; args(script: string, ...rest: string[]): string[]; env: Record<string, string> }
const RUNTIMES: Runtime[] = [
  // Unbuffered, so "subscribed" shows on stderr at once; no __pycache__ left in the source tree.
  { name: 'CPython', cmd: PYTHON, args: (s, ...r) => [s, ...r], env: { PYTHONPATH: PY_DIR, PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' } },
  { name: 'MicroPython VM', cmd: process.execPath, args: (s, ...r) => [RUNNER, s, ...r], env: {} },
]

let srv: StartedEdgebus
let scratch: string
const proxies: MqttProxy[] = []

// Short scripts for the cases the examples don't cover; they run under both runtimes too.
const SCRIPTS: Record<string, string> = {
  // check_msg() pings at 3/4 of the keepalive; prints when the first two PINGRESPs came (ms).
  'ping.py': `import sys, time, edgebus
c = edgebus.MQTTClient("fw-py-ping", "127.0.0.1", int(sys.argv[1]), keepalive=1)
c.connect()
seen, t = [], edgebus.ticks_ms()
while len(seen) < 2 and edgebus.ticks_diff(edgebus.ticks_ms(), t) < 5000:
    if c.check_msg() == 0xD0:
        seen.append(edgebus.ticks_diff(edgebus.ticks_ms(), t))
    time.sleep(0.02)
print(" ".join(str(x) for x in seen))
c.disconnect()
`,
  // Connects with a will, user and password, then waits to be killed.
  'will.py': `import sys, edgebus
c = edgebus.MQTTClient("fw-py-will", "127.0.0.1", int(sys.argv[1]), user="dev", password="secret", keepalive=30)
c.set_last_will("fw/py/will", "gone " + sys.argv[2], qos=1)
c.connect()
print("connected", file=sys.stderr)
while True:
    c.wait_msg()
`,
}

beforeAll(async () => {
  srv = await startEdgebus()
  scratch = mkdtempSync(join(tmpdir(), 'edgebus-fw-py-'))
  for (const [name, text] of Object.entries(SCRIPTS)) writeFileSync(join(scratch, name), text)
})
afterEach(async () => {
  await endAllClients()
  await killAll()
  await Promise.all(proxies.splice(0).map((p) => p.close()))
  await stopStreamServers()
})
afterAll(async () => {
  await srv?.stop()
  if (scratch) rmSync(scratch, { recursive: true, force: true })
})

const proxy = async (hooks: Parameters<typeof startProxy>[1], port = srv.mqttPort): Promise<MqttProxy> => {
  const p = await startProxy(port, hooks)
  proxies.push(p)
  return p
}

describe('MicroPython VM', () => {
  it(`importing edgebus costs less heap than umqtt.simple (${UMQTT_SIMPLE_HEAP} bytes)`, async () => {
    const res = await run(process.execPath, [RUNNER, '--heap'])
    expect(res.code, res.stderr).toBe(0)
    const m = /^HEAP edgebus import bytes=(\d+)$/m.exec(res.stdout)
    expect(m, res.stdout).not.toBeNull()
    const bytes = Number(m![1])
    expect(bytes).toBeGreaterThan(1000) // it did measure the module
    expect(bytes).toBeLessThan(UMQTT_SIMPLE_HEAP)
  })
})

describe.each(RUNTIMES)('edgebus.py under $name', (rt) => {
  const py = (script: string, ...args: string[]) => run(rt.cmd, rt.args(script, ...args), { env: rt.env, timeoutMs: 20_000 })
  const tag = rt.name === 'CPython' ? 'cpy' : 'mpy'

  it('pub.py publishes 100 QoS 1 messages; MQTT.js gets every one, in order', async () => {
    const topic = `fw/${tag}/qos1`
    const sub = await connectClient(srv.mqttUrl)
    await sub.client.subscribeAsync(topic, { qos: 1 })
    const res = await py(join(EXAMPLES, 'pub.py'), '127.0.0.1', String(srv.mqttPort), topic, '100', '1')
    expect(res.code, res.stderr).toBe(0)
    expect(res.stderr).toContain('published 100 reconnects 0')
    const got = await sub.waitFor(100)
    expect(got.map((m) => m.payload)).toEqual(Array.from({ length: 100 }, (_, i) => String(i)))
  })

  it('pub.py with QoS 0', async () => {
    const topic = `fw/${tag}/qos0`
    const sub = await connectClient(srv.mqttUrl)
    await sub.client.subscribeAsync(topic)
    const res = await py(join(EXAMPLES, 'pub.py'), '127.0.0.1', String(srv.mqttPort), topic, '20', '0')
    expect(res.code, res.stderr).toBe(0)
    expect((await sub.waitFor(20)).map((m) => m.payload)).toEqual(Array.from({ length: 20 }, (_, i) => String(i)))
  })

  it('sub.py with wildcards prints exactly the matching messages', async () => {
    const sub = startProc(rt.cmd, rt.args(join(EXAMPLES, 'sub.py'), '127.0.0.1', String(srv.mqttPort), `fw/${tag}/+/t/#`, '2'), rt.env)
    await sub.waitStderr(/subscribed/)
    const pub = await connectClient(srv.mqttUrl)
    await pub.client.publishAsync(`fw/${tag}/a/t`, 'one', { qos: 1 })
    await pub.client.publishAsync(`fw/${tag}/a/u`, 'no', { qos: 1 })
    await pub.client.publishAsync(`fw/${tag}/b/t/c`, 'two', { qos: 1 })
    const res = await sub.exit()
    expect(res.code, res.stderr).toBe(0)
    expect(res.stdout).toEqual([`fw/${tag}/a/t one`, `fw/${tag}/b/t/c two`])
  })

  it('forced reconnect: cut right after a PUBLISH, publish_stream reconnects and resends; every message arrives', async () => {
    const topic = `fw/${tag}/cut`
    let publishes = 0
    const p = await proxy({ client: (f) => (f.type === PUBLISH && [10, 30].includes(++publishes) ? 'forward-then-cut' : 'forward') })
    const sub = await connectClient(srv.mqttUrl)
    await sub.client.subscribeAsync(topic, { qos: 1 })
    const res = await py(join(EXAMPLES, 'pub.py'), '127.0.0.1', String(p.port), topic, '50', '1')
    expect(res.code, res.stderr).toBe(0)
    expect(res.stderr).toContain('published 50 reconnects 2')
    expect(p.connections).toBe(3)
    const pubs = p.fromClient.filter((f) => f.type === PUBLISH)
    for (const conn of [1, 2]) {
      const cutOne = decodePublish(pubs.filter((f) => f.conn === conn - 1).at(-1)!)
      expect(decodePublish(pubs.find((f) => f.conn === conn)!)).toMatchObject({ dup: true, id: cutOne.id, payload: cutOne.payload })
    }
    await waitForPayloads(sub, 50) // a cut message may be delivered twice
    expect(uniqueSorted(sub.messages.map((m) => m.payload))).toEqual(expectedPayloads(50))
  })

  it('proto=5: CONNECT level 5 and publish_stream sends msg-id as a user property, forwarded to v5 subscribers', async () => {
    const topic = `fw/${tag}/v5`
    const p = await proxy({})
    const sub = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await sub.client.subscribeAsync(topic, { qos: 1 })
    const res = await py(join(EXAMPLES, 'pub.py'), '127.0.0.1', String(p.port), topic, '5', '1', '5')
    expect(res.code, res.stderr).toBe(0)
    expect(connectLevel(p.fromClient.find((f) => f.type === CONNECT)!)).toBe(5)
    const ids = p.fromClient.filter((f) => f.type === PUBLISH).map((f) => decodePublish(f, true).userProps['msg-id'])
    expect(ids).toHaveLength(5)
    expect(ids.every((id, i) => new RegExp(`^eb-pypub-\\d+-${i}$`).test(id ?? ''))).toBe(true)
    const got = await sub.waitFor(5)
    expect(got.map((m) => m.payload)).toEqual(['0', '1', '2', '3', '4'])
    expect(got.map((m) => (m.properties?.userProperties as Record<string, string>)['msg-id'])).toEqual(ids)
  })

  it('proto=5 sub.py: SUBACK and incoming PUBLISH property blocks are skipped, QoS 1 deliveries acked', async () => {
    const p = await proxy({})
    const sub = startProc(rt.cmd, rt.args(join(EXAMPLES, 'sub.py'), '127.0.0.1', String(p.port), `fw/${tag}/v5sub/#`, '2', '5'), rt.env)
    await sub.waitStderr(/subscribed/)
    const pub = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    const properties = { userProperties: { 'msg-id': 'x-1', k: 'v' }, contentType: 'text/plain', messageExpiryInterval: 60 }
    await pub.client.publishAsync(`fw/${tag}/v5sub/a`, 'one', { qos: 1, properties })
    await pub.client.publishAsync(`fw/${tag}/v5sub/b`, 'two', { qos: 0 })
    const res = await sub.exit()
    expect(res.code, res.stderr).toBe(0)
    expect(res.stdout).toEqual([`fw/${tag}/v5sub/a one`, `fw/${tag}/v5sub/b two`])
    expect(connectLevel(p.fromClient.find((f) => f.type === CONNECT)!)).toBe(5)
    // the QoS 1 delivery came with its properties and was acknowledged with its packet id
    const delivered = p.fromServer.find((f) => f.type === PUBLISH && (f.flags & 6) === 2)!
    expect(decodePublish(delivered, true).userProps).toEqual({ 'msg-id': 'x-1', k: 'v' })
    expect(p.fromClient.filter((f) => f.type === PUBACK).map((f) => f.body.readUInt16BE(0))).toEqual([decodePublish(delivered, true).id])
  })

  // Issue 7's acceptance for the Python client: the C client's stream test, with publish_stream.
  it('proto=5 publish_stream into a stream, cut after a PUBLISH and after a swallowed PUBACK: each message stored exactly once, in order; the resends count as duplicates', async () => {
    const N = 30
    const topic = `fw/${tag}/stream`
    const s = await startStreamServer()
    // "7": cut right after its PUBLISH reached the server; "19": PUBACK swallowed, then cut.
    const p = await proxy(cutPlan({ cutAfter: ['7'], dropAckOf: ['19'] }), s.srv.mqttPort)
    const sub = await connectClient(s.srv.mqttUrl)
    await sub.client.subscribeAsync(topic, { qos: 1 })
    const res = await py(join(EXAMPLES, 'pub.py'), '127.0.0.1', String(p.port), topic, String(N), '1', '5')
    expect(res.code, res.stderr).toBe(0)
    expect(res.stderr).toContain(`published ${N} reconnects 2`)
    const pubs = clientPublishes(p)
    const firsts = pubs.filter((x) => !x.dup)
    expect(firsts.map((x) => x.payload)).toEqual(payloads(N))
    const ids = firsts.map((x) => x.userProps['msg-id'])
    expect(ids.every((id, i) => new RegExp(`^eb-pypub-\\d+-${i}$`).test(id ?? ''))).toBe(true)
    // one resend each, first on the new connection, with the msg-id of the first send
    expect(pubs.filter((x) => x.dup).map((x) => [x.conn, x.payload, x.userProps['msg-id']])).toEqual([[1, '7', ids[7]], [2, '19', ids[19]]])
    await expectStoredOnce(s, sub, N, ids)
  })

  it('check_msg sends PINGREQ at 3/4 of the keepalive and reads the PINGRESP', async () => {
    const p = await proxy({})
    const res = await py(join(scratch, 'ping.py'), String(p.port))
    expect(res.code, res.stderr).toBe(0)
    const [first, second] = res.stdout.trim().split(' ').map(Number)
    // keepalive 1 s: a ping 750 ms after the last packet sent, not earlier, and the answer read
    expect(first).toBeGreaterThanOrEqual(700)
    expect(first).toBeLessThan(2500)
    expect(second! - first!).toBeGreaterThanOrEqual(700)
    expect(p.fromClient.filter((f) => f.type === 12)).toHaveLength(2) // PINGREQ
    expect(p.fromServer.filter((f) => f.type === 13)).toHaveLength(2) // PINGRESP
  })

  it('the will (QoS 1) is published when the client dies; user and password are in CONNECT', async () => {
    const p = await proxy({})
    const sub = await connectClient(srv.mqttUrl)
    await sub.client.subscribeAsync('fw/py/will', { qos: 1 })
    const client = startProc(rt.cmd, rt.args(join(scratch, 'will.py'), String(p.port), tag), rt.env)
    await client.waitStderr(/connected/)
    const connect = p.fromClient.find((f) => f.type === CONNECT)!
    // flags: user 0x80 | password 0x40 | will QoS 1 0x08 | will 0x04 | clean session 0x02
    expect(connect.body[7]).toBe(0xce)
    client.proc.kill('SIGKILL')
    const got = await sub.waitFor(1)
    expect(got[0]).toMatchObject({ topic: 'fw/py/will', payload: `gone ${tag}`, qos: 1 })
  })
})
