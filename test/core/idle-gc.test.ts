import net from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { CONNACK_OK, connectPacket, publishPacket, rawConnect, subscribePacket, type RawClient } from '../support/raw.ts'

let srv: StartedEdgebus | null = null
const raws: RawClient[] = []
afterEach(async () => {
  for (const r of raws.splice(0)) r.socket.destroy()
  await srv?.stop()
  srv = null
})

async function memory(srv: StartedEdgebus): Promise<{ rss: number; external: number; heap: number }> {
  const text = await (await fetch(`${srv.httpUrl}/metrics`)).text()
  const g = (name: string): number => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1])
  return { rss: g('process_resident_memory_bytes'), external: g('nodejs_external_memory_bytes'), heap: g('nodejs_heap_used_bytes') }
}

async function connected(port: number, id: string): Promise<RawClient> {
  const raw = await rawConnect(port)
  raws.push(raw)
  raw.socket.write(connectPacket(id))
  await raw.waitForBytes(CONNACK_OK)
  return raw
}

/** Writes `bytes` of QoS 0 PUBLISHes (1 KB payloads) as fast as the server takes them. */
async function burst(socket: net.Socket, topic: string, bytes: number): Promise<void> {
  const one = publishPacket(topic, Buffer.alloc(1024, 5))
  const chunk = Buffer.concat(Array.from({ length: 64 }, () => one))
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r))
  }
}

describe('memory after a burst', () => {
  it('the dead Buffers of a 200 MB burst are given back once the server is quiet (a stalled QoS 0 # subscriber included)', async () => {
    srv = await startEdgebus({ config: { persistence: { enabled: false } } })
    const stalled = await connected(srv.mqttPort, 'stalled')
    stalled.socket.write(subscribePacket('#', 0))
    await stalled.waitForBytes(Buffer.from([0x90, 0x03, 0x00, 0x01, 0x00]))
    stalled.socket.pause()
    const idle = await memory(srv)
    const publishers = await Promise.all([0, 1, 2, 3].map((i) => connected(srv!.mqttPort, `pub-${i}`)))
    await Promise.all(publishers.map((p, i) => burst(p.socket, `burst/${i}`, 50 * 1024 * 1024)))
    for (const p of publishers) p.socket.end()
    stalled.socket.destroy()
    // before: nothing collected them while the server stayed quiet (external 60-110 MB for good)
    await vi.waitFor(async () => {
      const now = await memory(srv!)
      expect(now.external).toBeLessThan(idle.external + 8 * 1024 * 1024)
    }, { timeout: 20_000, interval: 500 })
  }, 60_000)
})
