import { afterEach, describe, expect, it, vi } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'
import { CONNACK_OK, connectPacket, publishPacket, rawConnect, subscribePacket } from '../support/raw.ts'

let srv: StartedEdgebus | null = null
afterEach(async () => {
  await endAllClients()
  await srv?.stop()
  srv = null
})

async function connectionsOf(srv: StartedEdgebus): Promise<number> {
  return ((await (await fetch(`${srv.httpUrl}/healthz`)).json()) as { connections: number }).connections
}

/** Polls until the server holds `n` connections (a paused socket cannot see its own close). */
async function waitForConnections(srv: StartedEdgebus, n: number, timeoutMs: number): Promise<number> {
  const start = Date.now()
  while (Date.now() - start < timeoutMs) {
    if ((await connectionsOf(srv)) === n) return Date.now() - start
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`server still has ${await connectionsOf(srv)} connections, expected ${n}`)
}

/** A subscriber that subscribes, then never reads again. */
async function frozenSubscriber(port: number, filter: string, qos: 0 | 1) {
  const raw = await rawConnect(port)
  raw.socket.write(connectPacket('frozen'))
  await raw.waitForBytes(CONNACK_OK)
  raw.socket.write(subscribePacket(filter, qos))
  await raw.waitForBytes(Buffer.from([0x90, 0x03, 0x00, 0x01, qos]))
  raw.socket.pause() // stop reading: the kernel buffers fill, then edgebus' queue
  return raw
}

describe('a frozen subscriber', () => {
  it('does not stall delivery to others; its queue is bounded and it is disconnected', async () => {
    srv = await startEdgebus({ args: ['--limits-max-queued-bytes', '64KB', '--limits-max-queued-bytes-hard', '4MB', '--limits-drain-timeout', '60s'] })
    const frozen = await frozenSubscriber(srv.mqttPort, 'load/#', 1)
    const fast = await connectClient(srv.mqttUrl)
    await fast.client.subscribeAsync('load/#', { qos: 1 })
    const pub = await connectClient(srv.mqttUrl)
    const payload = Buffer.alloc(4096, 7)
    const total = 4000 // 16 MB: far more than the frozen client's socket buffers and its 4 MB bound
    const started = Date.now()
    for (let sent = 0; sent < total; sent += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, i) => pub.client.publishAsync(`load/${(sent + i) % 10}`, payload, { qos: 1 })))
      // the healthy subscriber shares this process: let it keep up, as a healthy client does
      await fast.waitFor(sent + 1, 20_000)
    }
    await fast.waitFor(total, 30_000)
    const elapsed = Date.now() - started
    // everything reached the fast subscriber long before the 60 s drain timeout could have freed it
    expect(elapsed).toBeLessThan(40_000)
    await waitForConnections(srv, 2, 5000) // the frozen one is gone; fast and pub stay
    expect(fast.client.connected).toBe(true)
    expect(srv.output.some((l) => l.includes('ESLOW_CONSUMER'))).toBe(true)
    frozen.socket.destroy()
  }, 60_000)

  it('is cut off at the 16 MB hard bound without pausing anyone else (issue 15: a 0.7-2 s stall)', async () => {
    srv = await startEdgebus() // the default bounds: 1 MB soft, 16 MB hard
    const frozen = await frozenSubscriber(srv.mqttPort, 'load/#', 1)
    const probe = await connectClient(srv.mqttUrl)
    const pub = await connectClient(srv.mqttUrl)
    const cut = (): boolean => srv!.output.some((l) => l.includes('ESLOW_CONSUMER'))
    // another client's QoS 1 round trips, back to back: the longest time between two PUBACKs from
    // the one before the disconnect's log line (written before the connection is freed) to 1.5 s after it
    let maxGap = 0
    let cutAt = 0
    const probing = (async () => {
      let last = Date.now()
      while (cutAt === 0 || Date.now() - cutAt < 1500) {
        await probe.client.publishAsync('probe/x', 'p', { qos: 1 })
        const now = Date.now()
        if (cutAt === 0 && cut()) cutAt = now
        if (cutAt !== 0) maxGap = Math.max(maxGap, now - last)
        last = now
      }
    })()
    // 1 KB QoS 1 messages, 32 in flight, until the frozen subscriber is cut off and a second after
    const payload = Buffer.alloc(1024, 3)
    const started = Date.now()
    await Promise.all(Array.from({ length: 32 }, async () => {
      while ((cutAt === 0 || Date.now() - cutAt < 1000) && Date.now() - started < 30_000) await pub.client.publishAsync('load/a', payload, { qos: 1 })
    }))
    await probing
    expect(cutAt).toBeGreaterThan(0)
    await waitForConnections(srv, 2, 5000)
    // freeing ~16,000 queued QoS 1 deliveries took the event loop for 0.7-1.1 s on a 2-core test
    // machine, 2 s in the issue; now ~50 ms (the bound leaves room for a machine busy with others)
    expect(maxGap).toBeLessThan(500)
    frozen.socket.destroy()
  }, 60_000)

  it('QoS 0 over the soft bound is dropped for the frozen client only', async () => {
    srv = await startEdgebus({ args: ['--limits-max-queued-bytes', '1MB', '--limits-max-queued-bytes-hard', '256MB'] })
    const frozen = await frozenSubscriber(srv.mqttPort, 'q0/#', 0)
    const fast = await connectClient(srv.mqttUrl)
    await fast.client.subscribeAsync('q0/#')
    const pub = await connectClient(srv.mqttUrl)
    const payload = Buffer.alloc(4096, 1)
    const total = 3000
    for (let i = 0; i < total; i++) {
      pub.client.publish('q0/x', payload)
      // pace the publisher so the healthy subscriber (in this same process) keeps up
      if (i % 100 === 99) await fast.waitFor(i - 200, 10_000)
    }
    await fast.waitFor(total, 15_000)
    expect(await connectionsOf(srv)).toBe(3) // QoS 0 drops do not disconnect below the hard bound
    const health = await (await fetch(`${srv.httpUrl}/healthz`)).json() as { dropped: number }
    expect(health.dropped).toBeGreaterThan(0)
    frozen.socket.destroy()
  })

  it('drainTimeout disconnects a frozen QoS 1 subscriber that stays under the hard bound', async () => {
    srv = await startEdgebus({ args: ['--limits-max-queued-bytes', '16KB', '--limits-max-queued-bytes-hard', '512MB', '--limits-drain-timeout', '1s'] })
    const frozen = await frozenSubscriber(srv.mqttPort, 'dt/#', 1)
    const fast = await connectClient(srv.mqttUrl)
    await fast.client.subscribeAsync('dt/#', { qos: 1 })
    const pub = await connectClient(srv.mqttUrl)
    const payload = Buffer.alloc(4096, 2)
    // 24 MB: more than the loopback socket buffers absorb, so the frozen client's writes back up;
    // paced so the healthy subscriber in this process never lags by a second of drain timeout
    for (let sent = 0; sent < 6000; sent += 100) {
      await Promise.all(Array.from({ length: 100 }, () => pub.client.publishAsync('dt/x', payload, { qos: 1 })))
      await fast.waitFor(sent + 100, 20_000)
    }
    await waitForConnections(srv, 2, 5000) // closed by aedes' drain timeout (1 s)
    expect(fast.client.connected).toBe(true)
    expect(srv.output.some((l) => l.includes('ESLOW_CONSUMER'))).toBe(false)
    frozen.socket.destroy()
  }, 60_000)

  it('holds what its queue counts: a stalled subscriber to one topic of many pins no publisher read buffers (issue 15)', async () => {
    srv = await startEdgebus({ config: { persistence: { enabled: false } }, args: ['--limits-max-queued-bytes', '4MB'] })
    const frozen = await frozenSubscriber(srv.mqttPort, 'spread/0', 0)
    const external = async (): Promise<number> => Number(/^nodejs_external_memory_bytes (\S+)/m.exec(await (await fetch(`${srv!.httpUrl}/metrics`)).text())?.[1])
    const idle = await external()
    // of every 64 KB the publisher writes, 4 KB are for the frozen client and 60 KB for nobody
    const pub = await rawConnect(srv.mqttPort)
    pub.socket.write(connectPacket('spread-pub'))
    await pub.waitForBytes(CONNACK_OK)
    const chunk = Buffer.concat(Array.from({ length: 16 }, (_, i) => publishPacket(`spread/${i}`, Buffer.alloc(4000, 7))))
    for (let sent = 0; sent < 160 * 1024 * 1024; sent += chunk.length) {
      if (!pub.socket.write(chunk)) await new Promise((r) => pub.socket.once('drain', r))
    }
    pub.socket.end()
    await waitForConnections(srv, 1, 10_000) // the frozen client stays: under the hard bound
    const health = await (await fetch(`${srv.httpUrl}/healthz`)).json() as { dropped: number }
    expect(health.dropped).toBeGreaterThan(0) // its queue reached the 4 MB soft bound
    // the dead read buffers are collected once the server is quiet; what stays is its queue (4 MB)
    // (before: each queued 4 KB message pinned its 64 KB read buffer, ~60 MB held for good)
    await vi.waitFor(async () => expect(await external()).toBeLessThan(idle + 16 * 1024 * 1024), { timeout: 20_000, interval: 500 })
    frozen.socket.destroy()
  }, 60_000)
})
