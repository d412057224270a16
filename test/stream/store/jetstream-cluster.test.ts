import { afterEach, describe, expect, it, vi } from 'vitest'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { JetStreamStore } from '../../../src/stream/store/jetstream-store.ts'
import { startNatsCluster, type NatsClusterNode } from '../../support/remotes.ts'
import { limits } from './cases.ts'

/**
 * A replicated stream (R3) on a real 3-node nats-server 2.9.10 cluster: the stream leader is
 * killed with SIGKILL while appends are in flight and started again later; every append that was
 * acknowledged is there afterwards, at the sequence its ack gave, once.
 */
let nodes: NatsClusterNode[] = []
let conns: NatsConnection[] = []

afterEach(async () => {
  await Promise.all(conns.splice(0).map((c) => c.close().catch(() => {})))
  await Promise.all(nodes.splice(0).map((n) => n.destroy()))
})

async function leaderOf(nc: NatsConnection, stream: string): Promise<string> {
  const m = await nc.request(`$JS.API.STREAM.INFO.${stream}`, '{}', { timeout: 2000 })
  const leader = (m.json() as { cluster?: { leader?: string } }).cluster?.leader
  if (leader === undefined) throw new Error('no leader yet')
  return leader
}

describe('JetStream store, R3 on a 3-node nats-server cluster', () => {
  it('loses no acknowledged append when the stream leader is killed with SIGKILL under load and restarted', async () => {
    nodes = await startNatsCluster(3)
    const nc = await connect({ servers: nodes.map((n) => n.url), reconnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 100 })
    conns.push(nc)
    // JetStream in a cluster answers once its meta group has elected a leader
    const store = await vi.waitFor(() => JetStreamStore.open(nc, { name: 'r3', limits: limits({ duplicateWindow: 60_000 }), replicas: 3, timeoutMs: 2000 }), { timeout: 20_000, interval: 250 })
    const leaderName = await leaderOf(nc, store.stream)

    const acked = new Map<number, string>() // seq -> payload
    const ackedIds = new Set<string>()
    let refused = 0
    let killedAt = -1
    let restarted = false
    const TOTAL = 3000
    // a publisher's loop: 64 in flight; a refused append is sent again (same msgId) after a pause
    const queue = Array.from({ length: TOTAL }, (_, i) => `m${i}`)
    const inFlight = new Set<Promise<void>>()
    const victim = (): NatsClusterNode => nodes.find((n) => n.name === leaderName)!
    const deadline = Date.now() + 40_000
    while ((queue.length > 0 || inFlight.size > 0) && Date.now() < deadline) {
      const id = queue.shift()
      if (id === undefined) { await Promise.race(inFlight); continue }
      const p: Promise<void> = store.append({ subject: `load/${id.length % 7}`, payload: Buffer.from(id), msgId: id }).then(
        (a) => {
          if (a.duplicate) { expect(acked.get(a.seq)).toBe(id); return } // a resend of one acked before
          expect(acked.has(a.seq), `seq ${a.seq} acked twice`).toBe(false)
          acked.set(a.seq, id)
          ackedIds.add(id)
        },
        async () => {
          refused++
          await new Promise((r) => setTimeout(r, 50))
          queue.push(id)
        },
      ).finally(() => inFlight.delete(p))
      inFlight.add(p)
      if (inFlight.size >= 64) await Promise.race(inFlight)
      if (killedAt < 0 && acked.size >= 500) {
        killedAt = acked.size
        victim().signal('SIGKILL')
      }
      if (!restarted && killedAt > 0 && acked.size >= killedAt + 500) {
        restarted = true
        await victim().start()
      }
    }
    expect(killedAt).toBeGreaterThan(0)
    expect(restarted).toBe(true)
    expect(ackedIds.size).toBe(TOTAL) // every append got through in the end

    // every acknowledged append is stored at its acknowledged sequence, with its payload
    await vi.waitFor(async () => expect((await store.info()).lastSeq).toBeGreaterThanOrEqual(Math.max(...acked.keys())), { timeout: 10_000 })
    const seen = new Set<string>()
    for (let r = await store.next(1); r !== null; r = await store.next(r.seq + 1)) {
      const id = Buffer.from(r.payload).toString()
      expect(seen.has(id), `${id} stored twice`).toBe(false)
      seen.add(id)
      if (acked.has(r.seq)) expect(id).toBe(acked.get(r.seq))
    }
    for (const [seq, id] of acked) expect(seen.has(id), `acked ${id} (seq ${seq}) lost`).toBe(true)
    console.log(`R3 failover: ${acked.size} acked, ${refused} refusals during the failover (each resent), ${seen.size} stored`)
    expect(seen.size).toBe(TOTAL)
    await store.close()
  }, 60_000)
})
