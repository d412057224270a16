/**
 * The C firmware client (firmware-clients/c): its host unit tests, sanitizer fuzz run and
 * flash budget, and its example programs against a real edgebus server, with MQTT.js as
 * the other side and an MQTT-aware proxy to break connections on purpose.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'
import {
  C_DIR, CONNECT, PUBACK, PUBLISH, clientPublishes, connectLevel, cutPlan, decodePublish, expectedPayloads,
  expectStoredOnce, killAll, payloads, runProc as run, startProc, startProxy, startStreamServer, stopStreamServers, uniqueSorted,
  waitForPayloads, type MqttProxy,
} from './helpers.ts'

const BIN = `${C_DIR}/build`
let srv: StartedEdgebus
const proxies: MqttProxy[] = []

beforeAll(async () => {
  const [build, server] = await Promise.all([
    run('make', ['-C', C_DIR, 'examples'], { timeoutMs: 60_000 }),
    startEdgebus(),
  ])
  srv = server
  expect(build.code, build.stderr).toBe(0)
}, 60_000)
afterEach(async () => {
  await endAllClients()
  await killAll()
  await Promise.all(proxies.splice(0).map((p) => p.close()))
  await stopStreamServers()
})
afterAll(async () => { await srv?.stop() })

const proxy = async (hooks: Parameters<typeof startProxy>[1], port = srv.mqttPort): Promise<MqttProxy> => {
  const p = await startProxy(port, hooks)
  proxies.push(p)
  return p
}

describe('C client on the host', () => {
  it('codec unit tests pass under ASan/UBSan, for the 3.1.1 and the MQTT 5 build', async () => {
    const res = await run('make', ['-C', C_DIR, 'test'], { timeoutMs: 60_000 })
    expect(res.code, res.stdout + res.stderr).toBe(0)
    const counts = [...res.stdout.matchAll(/^(\d+) passed, (\d+) failed$/gm)].map((m) => [Number(m[1]), Number(m[2])])
    expect(counts).toHaveLength(2)
    for (const [passed, failed] of counts) {
      expect(failed).toBe(0)
      expect(passed).toBeGreaterThan(150)
    }
  }, 60_000)

  it('the bounded fuzz run of the incoming path finds no memory error or broken invariant', async () => {
    const started = Date.now()
    const res = await run('make', ['-C', C_DIR, 'fuzz', 'FUZZ_SECONDS=2', 'FUZZ_ITERS=150000'], { timeoutMs: 60_000 })
    expect(res.code, res.stdout + res.stderr).toBe(0)
    const runs = [...res.stdout.matchAll(/^iterations (\d+), messages delivered (\d+), ok (\d+), io (\d+), timeout (\d+), too_big (\d+), malformed (\d+)/gm)]
    expect(runs).toHaveLength(2)
    for (const m of runs) {
      expect(Number(m[1])).toBeGreaterThan(2000) // iterations
      expect(Number(m[2])).toBeGreaterThan(0) // messages delivered
      expect(Number(m[6])).toBeGreaterThan(0) // too big
      expect(Number(m[7])).toBeGreaterThan(0) // malformed
    }
    expect(Date.now() - started).toBeLessThan(30_000)
  }, 60_000)

  it('flash (.text + .data on Cortex-M4) and the client struct stay within budget, and the check fails past it', async () => {
    const res = await run('make', ['-C', C_DIR, 'size'], { timeoutMs: 60_000 })
    expect(res.code, res.stdout + res.stderr).toBe(0)
    const size = /^SIZE arm-m4-mqtt311 text=(\d+) data=(\d+) bss=(\d+) flash=(\d+) budget=(\d+)$/m.exec(res.stdout)
    const ctx = /^CONTEXT arm-m4-mqtt311 bytes=(\d+)$/m.exec(res.stdout)
    expect(size, res.stdout).not.toBeNull()
    expect(ctx, res.stdout).not.toBeNull()
    const flash = Number(size![4])
    expect(flash).toBe(Number(size![1]) + Number(size![2]))
    expect(flash).toBeLessThanOrEqual(Number(size![5]))
    expect(flash).toBeLessThanOrEqual(3584) // the goal
    expect(Number(size![3])).toBe(0) // no static RAM: the caller owns all memory
    expect(Number(ctx![1])).toBeLessThan(64)
    // One byte under the measured size must fail the check: the budget is enforced.
    const tight = await run('make', ['-C', C_DIR, 'size', `FLASH_BUDGET=${flash - 1}`], { timeoutMs: 60_000 })
    expect(tight.code).not.toBe(0)
    expect(tight.stderr).toMatch(/over the budget/)
  }, 60_000)
})

describe('C examples against edgebus', () => {
  it('pub publishes 200 QoS 1 messages and exits 0 once all are acked; MQTT.js gets every one', async () => {
    const sub = await connectClient(srv.mqttUrl)
    await sub.client.subscribeAsync('fw/c/qos1', { qos: 1 })
    const res = await run(`${BIN}/pub`, ['127.0.0.1', String(srv.mqttPort), 'fw/c/qos1', '200', '1'])
    expect(res.code, res.stderr).toBe(0)
    expect(res.stderr).toContain('published 200 reconnects 0')
    const got = await sub.waitFor(200)
    expect(got.map((m) => m.payload)).toEqual(Array.from({ length: 200 }, (_, i) => String(i)))
    expect(got.every((m) => m.topic === 'fw/c/qos1' && m.qos === 1)).toBe(true)
  })

  it('pub with QoS 0 delivers every message over loopback', async () => {
    const sub = await connectClient(srv.mqttUrl)
    await sub.client.subscribeAsync('fw/c/qos0')
    const res = await run(`${BIN}/pub`, ['127.0.0.1', String(srv.mqttPort), 'fw/c/qos0', '50', '0'])
    expect(res.code, res.stderr).toBe(0)
    const got = await sub.waitFor(50)
    expect(got.map((m) => m.payload)).toEqual(Array.from({ length: 50 }, (_, i) => String(i)))
    expect(got.every((m) => m.qos === 0)).toBe(true)
  })

  it('sub with + and # wildcards prints exactly the matching messages, then exits', async () => {
    const sub = startProc(`${BIN}/sub`, ['127.0.0.1', String(srv.mqttPort), 'fw/+/temp/#', '3'])
    await sub.waitStderr(/subscribed 1/)
    const pub = await connectClient(srv.mqttUrl)
    for (const [topic, payload] of [
      ['fw/a/temp', 'one'],
      ['fw/a/hum', 'no'],
      ['fw/temp', 'no'],
      ['fw/b/temp/c/d', 'two'],
      ['other/a/temp', 'no'],
      ['fw/c/temp/x', 'three'],
    ] as const) await pub.client.publishAsync(topic, payload, { qos: 1 })
    const res = await sub.exit()
    expect(res.code, res.stderr).toBe(0)
    expect(res.stdout).toEqual(['fw/a/temp one', 'fw/b/temp/c/d two', 'fw/c/temp/x three'])
  })

  it('forced reconnect: the connection is cut twice right after a PUBLISH; every message still arrives', async () => {
    let publishes = 0
    // Cut after the 20th and the 60th PUBLISH reached the server, before its PUBACK gets back.
    const p = await proxy({ client: (f) => (f.type === PUBLISH && [20, 60].includes(++publishes) ? 'forward-then-cut' : 'forward') })
    const sub = await connectClient(srv.mqttUrl)
    await sub.client.subscribeAsync('fw/c/cut', { qos: 1 })
    const started = Date.now()
    const res = await run(`${BIN}/pub`, ['127.0.0.1', String(p.port), 'fw/c/cut', '100', '1'], {
      env: { EB_CLIENT_ID: 'fw-c-cut', EB_CLEAN: '0' }, // persistent session: the normative resend path
    })
    expect(res.code, res.stderr).toBe(0)
    // eb_connect resends at once; waiting for the 5 s resend timer instead would take > 10 s.
    expect(Date.now() - started).toBeLessThan(5000)
    expect(res.stderr).toContain('published 100 reconnects 2')
    expect(p.connections).toBe(3)
    // After each cut the unacked message went out again first, with DUP=1 and its packet id.
    const pubs = p.fromClient.filter((f) => f.type === PUBLISH)
    for (const conn of [1, 2]) {
      const cutOne = decodePublish(pubs.filter((f) => f.conn === conn - 1).at(-1)!)
      const resent = decodePublish(pubs.find((f) => f.conn === conn)!)
      expect(resent).toMatchObject({ dup: true, id: cutOne.id, payload: cutOne.payload })
    }
    // At least once: every payload, possibly the cut ones twice.
    await waitForPayloads(sub, 100)
    await new Promise((r) => setTimeout(r, 200))
    expect(uniqueSorted(sub.messages.map((m) => m.payload))).toEqual(expectedPayloads(100))
    expect(sub.messages.length).toBeLessThanOrEqual(102)
  })

  it('a lost PUBACK is healed in the same session: resent with DUP=1 and the same packet id', async () => {
    let dropped = false
    const p = await proxy({ server: (f) => (f.type === PUBACK && !dropped ? ((dropped = true), 'drop') : 'forward') })
    const sub = await connectClient(srv.mqttUrl)
    await sub.client.subscribeAsync('fw/c/dup', { qos: 1 })
    const res = await run(`${BIN}/pub`, ['127.0.0.1', String(p.port), 'fw/c/dup', '5', '1'], { env: { EB_TIMEOUT_MS: '1000' } })
    expect(res.code, res.stderr).toBe(0)
    expect(res.stderr).toContain('reconnects 0')
    expect(p.connections).toBe(1)
    const pubs = p.fromClient.filter((f) => f.type === PUBLISH).map((f) => decodePublish(f))
    expect(pubs[0]).toMatchObject({ dup: false, payload: '0' })
    expect(pubs[1]).toMatchObject({ dup: true, id: pubs[0]!.id, payload: '0' })
    // Each message went out once, except the first, resent (a slow machine may resend it twice).
    expect(pubs.filter((x) => !x.dup).map((x) => x.payload)).toEqual(['0', '1', '2', '3', '4'])
    expect(pubs.filter((x) => x.dup).every((x) => x.id === pubs[0]!.id && x.payload === '0')).toBe(true)
    // the resent '0' may be delivered twice (at least once): wait for five distinct payloads
    for (let t = 0; t < 100 && uniqueSorted(sub.messages.map((m) => m.payload)).length < 5; t++) await new Promise((r) => setTimeout(r, 50))
    expect(uniqueSorted(sub.messages.map((m) => m.payload))).toEqual(expectedPayloads(5))
  })

  it('MQTT 5 build (pub5): CONNECT level 5 and the msg-id user property on every PUBLISH, forwarded to v5 subscribers', async () => {
    const p = await proxy({})
    const sub = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await sub.client.subscribeAsync('fw/c/v5', { qos: 1 })
    const res = await run(`${BIN}/pub5`, ['127.0.0.1', String(p.port), 'fw/c/v5', '10', '1'], { env: { EB_CLIENT_ID: 'fw-c5' } })
    expect(res.code, res.stderr).toBe(0)
    expect(connectLevel(p.fromClient.find((f) => f.type === CONNECT)!)).toBe(5)
    const pubs = p.fromClient.filter((f) => f.type === PUBLISH).map((f) => decodePublish(f, true))
    expect(pubs.map((x) => x.userProps['msg-id'])).toEqual(Array.from({ length: 10 }, (_, i) => `fw-c5-${i}`))
    const got = await sub.waitFor(10)
    expect(got.map((m) => m.payload)).toEqual(Array.from({ length: 10 }, (_, i) => String(i)))
    // The server forwards user properties unaltered (MQTT 5 §3.3.2.3.7).
    expect((got[3]!.properties?.userProperties as Record<string, string>)['msg-id']).toBe('fw-c5-3')
  })
})

// Issue 7's acceptance: a message arrives once in a stream even when the link breaks after the
// server got it, so the device must send it again. Each test runs its own server with the stream
// "fw" (fw/#, duplicateWindow 2m) and reads the journal back after stopping it.
describe('C client into a stream: forced reconnects', () => {
  const N = 30
  // Message "7": the link is cut right after its PUBLISH reached the server; message "19": its
  // PUBACK is swallowed and the link cut (the server has stored and acknowledged it). Both resent.
  const CUTS = { cutAfter: ['7'], dropAckOf: ['19'] }

  it('pub5 (MQTT 5, msg-id on every PUBLISH): the stream holds each message exactly once, in order; the resends count as duplicates', async () => {
    const s = await startStreamServer()
    const p = await proxy(cutPlan(CUTS), s.srv.mqttPort)
    const sub = await connectClient(s.srv.mqttUrl)
    await sub.client.subscribeAsync('fw/c5/stream', { qos: 1 })
    const res = await run(`${BIN}/pub5`, ['127.0.0.1', String(p.port), 'fw/c5/stream', String(N), '1'], { env: { EB_CLIENT_ID: 'fw-c5-stream' } })
    expect(res.code, res.stderr).toBe(0)
    expect(res.stderr).toContain(`published ${N} reconnects 2`)
    // What reached the server: each message once, plus one DUP resend with the same msg-id, first on each new connection.
    const pubs = clientPublishes(p)
    expect(pubs.filter((x) => !x.dup).map((x) => x.payload)).toEqual(payloads(N))
    expect(pubs.filter((x) => x.dup).map((x) => [x.conn, x.payload, x.userProps['msg-id']]))
      .toEqual([[1, '7', 'fw-c5-stream-7'], [2, '19', 'fw-c5-stream-19']])
    // The server journaled N and recognised both resends by their msg-id.
    await expectStoredOnce(s, sub, N, payloads(N).map((i) => `fw-c5-stream-${i}`))
    expect((await s.records()).every((r) => r.subject === 'fw/c5/stream')).toBe(true)
  })

  it('pub (MQTT 3.1.1, no msg-id): the same cuts store each resent message twice, as 3.1.1 gives the server nothing to recognise a resend by across connections', async () => {
    const s = await startStreamServer()
    const p = await proxy(cutPlan(CUTS), s.srv.mqttPort)
    const res = await run(`${BIN}/pub`, ['127.0.0.1', String(p.port), 'fw/c4/stream', String(N), '1'], { env: { EB_CLIENT_ID: 'fw-c4-stream' } })
    expect(res.code, res.stderr).toBe(0)
    expect(res.stderr).toContain(`published ${N} reconnects 2`)
    const pubs = clientPublishes(p)
    expect(pubs.filter((x) => x.dup).map((x) => [x.conn, x.payload])).toEqual([[1, '7'], [2, '19']])
    // The resends carry DUP=1 and the packet id of the first send, but that id belonged to a
    // connection that is gone, and a QoS 1 PUBLISH is stored each time it arrives.
    expect(await s.state()).toMatchObject({ messages: N + 2, stored: N + 2, duplicates: 0 })
    const recs = await s.records()
    expect(recs.map((r) => r.payload)).toEqual(payloads(N).flatMap((i) => (i === '7' || i === '19' ? [i, i] : [i])))
    expect(recs.every((r) => r.msgId === null)).toBe(true)
  })
})
