import { afterEach, describe, expect, it } from 'vitest'
import { parseConsumerDefinition } from '../../src/stream/consumer-config.ts'
import { Consumer, type ConsumerOptions, type DeadLetter, type Delivery } from '../../src/stream/consumer.ts'
import { Journal } from '../../src/stream/journal.ts'
import { ManualTime, tempDir } from './support.ts'


const journals: Journal[] = []
const consumers: Consumer[] = []
afterEach(async () => {
  for (const c of consumers.splice(0)) await c.close()
  for (const j of journals.splice(0)) await j.close()
})

interface Setup { j: Journal; t: ManualTime; dead: DeadLetter[]; ready: { n: number } }

async function setup(): Promise<Setup> {
  const t = new ManualTime()
  const j = await Journal.open(tempDir(), { clock: t.clock })
  journals.push(j)
  return { j, t, dead: [], ready: { n: 0 } }
}

async function put(j: Journal, subjects: string[], t?: ManualTime, stepMs = 0): Promise<number[]> {
  // queued in one go (one group commit), timestamps from the manual clock as it moves
  const appended = subjects.map((s) => {
    const a = j.appendQueued({ subject: s, payload: Buffer.from(`m${j.lastSeq + j.pending + 1}`) })
    if (t !== undefined && stepMs > 0) t.advance(stepMs)
    return a
  })
  await Promise.all(appended.map((a) => a.durable))
  return appended.map((a) => a.seq)
}

async function consumer(s: Setup, raw: Record<string, unknown>, opts: ConsumerOptions = {}): Promise<Consumer> {
  const def = parseConsumerDefinition(raw, 'telemetry')
  const c = await Consumer.open(s.j, def, {
    clock: s.t.clock, timers: s.t, onDeadLetter: (d) => s.dead.push(d), onReady: () => { s.ready.n++ }, ...opts,
  })
  consumers.push(c)
  return c
}

const seqs = (ds: Delivery[]): number[] => ds.map((d) => d.seq)
const tick = (): Promise<void> => new Promise((r) => setImmediate(r))

describe('deliver policies', () => {
  it('all, new, last (with and without a filter), startSeq, startTime', async () => {
    const s = await setup()
    await put(s.j, ['a/1', 'b/1', 'a/2', 'b/2', 'a/1', 'b/3'], s.t, 1000)
    expect(seqs((await consumer(s, { deliver: 'all' })).next(100))).toEqual([1, 2, 3, 4, 5, 6])
    const fresh = await consumer(s, { deliver: 'new' })
    expect(fresh.next(100)).toEqual([])
    expect(seqs((await consumer(s, { deliver: 'last' })).next(100))).toEqual([6])
    expect(seqs((await consumer(s, { deliver: 'last', filter: 'a.>' })).next(100))).toEqual([5])
    expect(seqs((await consumer(s, { deliver: 'last', filter: 'zzz' })).next(100))).toEqual([])
    expect(seqs((await consumer(s, { deliver: { startSeq: 4 } })).next(100))).toEqual([4, 5, 6])
    const t0 = s.j.firstTime
    expect(seqs((await consumer(s, { deliver: { startTime: new Date(t0 + 2500).toISOString() } })).next(100))).toEqual([4, 5, 6])
    await put(s.j, ['a/9'])
    expect(seqs(fresh.next(100))).toEqual([7])
  })

  it('lastPerSubject: the newest message of each matching subject, in stream order, then new ones', async () => {
    const s = await setup()
    await put(s.j, ['a/1', 'a/2', 'b/1', 'a/1', 'a/3', 'a/2', 'b/1'])
    const c = await consumer(s, { deliver: 'lastPerSubject', filter: ['a/+'] })
    expect(c.info()).toMatchObject({ deferred: 3, lag: 3, lagExact: true, deliveredSeq: 7 })
    await put(s.j, ['a/1', 'b/2'])
    expect(seqs(c.next(100))).toEqual([4, 5, 6, 8])
  })

  it('lastPerSubject without acks (a replay): the newest of each subject once, then new ones', async () => {
    const s = await setup()
    await put(s.j, ['a/1', 'a/2', 'b/1', 'a/1', 'a/3', 'a/2', 'b/1'])
    const c = await consumer(s, { deliver: 'lastPerSubject', filter: ['a/+'], ack: 'none' })
    expect(seqs(c.next(2))).toEqual([4, 5])
    await put(s.j, ['a/1', 'b/2'])
    expect(seqs(c.next(100))).toEqual([6, 8])
    expect(seqs(c.next(100))).toEqual([])
    expect(c.info()).toMatchObject({ deferred: 0, pending: 0 })
  })

  it('startSeq below the first stored message starts at the first', async () => {
    const s = await setup()
    await put(s.j, ['a', 'a', 'a', 'a'])
    await s.j.removeBefore(3)
    expect(seqs((await consumer(s, { deliver: { startSeq: 1 } })).next(100))).toEqual([3, 4])
  })
})

describe('acknowledgements and redelivery', () => {
  it('an unacked message comes back after ackWait with its delivery count; acked ones never', async () => {
    const s = await setup()
    await put(s.j, ['a', 'b', 'c'])
    const c = await consumer(s, { ackWait: '5s' })
    const first = c.next(10)
    expect(first.map((d) => d.deliveryCount)).toEqual([1, 1, 1])
    expect(first.map((d) => d.pending)).toEqual([2, 1, 0])
    expect(first[0]?.payload.toString()).toBe('m1')
    expect(c.ack(2)).toBe(true)
    expect(c.ack(2)).toBe(false)
    expect(c.nextDueIn()).toBe(5000)
    s.t.advance(4999)
    expect(c.next(10)).toEqual([])
    s.ready.n = 0
    s.t.advance(1)
    await Promise.resolve()
    expect(s.ready.n).toBe(1)
    const again = c.next(10)
    expect(again.map((d) => [d.seq, d.deliveryCount])).toEqual([[1, 2], [3, 2]])
    expect(c.info()).toMatchObject({ pending: 2, redelivered: 2, ackFloor: 0, deliveredSeq: 3 })
    c.ack(1)
    c.ack(3)
    expect(c.info()).toMatchObject({ pending: 0, ackFloor: 3, lag: 0 })
    s.t.advance(60_000)
    expect(c.next(10)).toEqual([])
  })

  it('inProgress restarts the deadline', async () => {
    const s = await setup()
    await put(s.j, ['a'])
    const c = await consumer(s, { ackWait: '5s' })
    c.next(1)
    s.t.advance(4000)
    expect(c.inProgress(1)).toBe(true)
    s.t.advance(4000)
    expect(c.next(1)).toEqual([])
    s.t.advance(1000)
    expect(seqs(c.next(1))).toEqual([1])
  })

  it('backoff: the wait after the 1st, 2nd, ... delivery, the last step repeating; then the dead letter', async () => {
    const s = await setup()
    await put(s.j, ['a'])
    const c = await consumer(s, { name: 'c', backoff: ['1s', '5s', '20s'], maxDeliver: 5, ackWait: '1h' })
    const times: Array<[number, number]> = []
    const start = s.t.now
    for (let ms = 0; ms <= 80_000; ms += 500) {
      for (const d of c.next(10)) times.push([s.t.now - start, d.deliveryCount])
      s.t.advance(500)
    }
    expect(times).toEqual([[0, 1], [1000, 2], [6000, 3], [26_000, 4], [46_000, 5]])
    expect(s.dead).toEqual([{ stream: 'telemetry', consumer: 'c', seq: 1, subject: 'a', deliveryCount: 5, reason: 'maxDeliver', deadLetter: '$dlq/telemetry/c' }])
    expect(c.info()).toMatchObject({ dlq: 1, pending: 0, ackFloor: 1 })
  })

  it('maxDeliver: dead-lettered when the last delivery times out or is nak\'d; term dead-letters at once', async () => {
    const s = await setup()
    await put(s.j, ['a', 'b', 'c', 'd'])
    const c = await consumer(s, { name: 'c', ackWait: '1s', maxDeliver: 2, deadLetter: 'dead.c' })
    expect(seqs(c.next(10))).toEqual([1, 2, 3, 4])
    c.ack(4)
    expect(c.term(3)).toBe(true)
    expect(s.dead.map((d) => [d.seq, d.reason, d.deliveryCount, d.deadLetter])).toEqual([[3, 'term', 1, 'dead/c']])
    s.t.advance(1000)
    expect(c.next(10).map((d) => [d.seq, d.deliveryCount])).toEqual([[1, 2], [2, 2]])
    c.nak(2)
    expect(s.dead.map((d) => [d.seq, d.reason])).toEqual([[3, 'term'], [2, 'maxDeliver']])
    s.t.advance(1000)
    expect(s.dead.map((d) => [d.seq, d.reason, d.deliveryCount])).toEqual([[3, 'term', 1], [2, 'maxDeliver', 2], [1, 'maxDeliver', 2]])
    expect(c.next(10)).toEqual([])
    expect(c.info()).toMatchObject({ dlq: 3, terminated: 1, pending: 0, ackFloor: 4 })
    expect(c.ack(1)).toBe(false)
  })

  it('maxDeliver 0 is unlimited', async () => {
    const s = await setup()
    await put(s.j, ['a'])
    const c = await consumer(s, { ackWait: '1s', maxDeliver: 0 })
    for (let i = 1; i <= 20; i++) {
      expect(c.next(1).map((d) => d.deliveryCount)).toEqual([i])
      s.t.advance(1000)
    }
    expect(s.dead).toEqual([])
  })

  it('nak: now, or after a delay', async () => {
    const s = await setup()
    await put(s.j, ['a', 'b'])
    const c = await consumer(s, { ackWait: '1h' })
    c.next(10)
    expect(c.nak(1)).toBe(true)
    expect(c.nak(2, 3000)).toBe(true)
    expect(c.next(10).map((d) => [d.seq, d.deliveryCount])).toEqual([[1, 2]])
    expect(c.pendingEntries().map((e) => [e.seq, e.state])).toEqual([[1, 'out'], [2, 'waiting']])
    s.t.advance(2999)
    expect(c.next(10)).toEqual([])
    s.t.advance(1)
    expect(c.next(10).map((d) => [d.seq, d.deliveryCount])).toEqual([[2, 2]])
    expect(c.nak(99)).toBe(false)
  })

  it('maxAckPending holds new messages back until acks make room; redeliveries still go', async () => {
    const s = await setup()
    await put(s.j, ['a', 'b', 'c', 'd', 'e', 'f'])
    const c = await consumer(s, { maxAckPending: 3, ackWait: '10s' })
    expect(seqs(c.next(10))).toEqual([1, 2, 3])
    expect(c.next(10)).toEqual([])
    s.ready.n = 0
    c.ack(2)
    await Promise.resolve()
    expect(s.ready.n).toBe(1)
    expect(seqs(c.next(10))).toEqual([4])
    s.t.advance(10_000)
    expect(c.next(10).map((d) => [d.seq, d.deliveryCount])).toEqual([[1, 2], [3, 2], [4, 2]])
    expect(c.info()).toMatchObject({ pending: 3, lag: 2 })
  })

  it('ack none: no pending state, every message once', async () => {
    const s = await setup()
    await put(s.j, ['a', 'b', 'c'])
    const c = await consumer(s, { ack: 'none', maxAckPending: 1 })
    expect(seqs(c.next(10))).toEqual([1, 2, 3])
    expect(c.ack(1)).toBe(false)
    s.t.advance(3_600_000)
    expect(c.next(10)).toEqual([])
    expect(c.info()).toMatchObject({ pending: 0, ackFloor: 3, deliveredSeq: 3 })
  })
})

describe('filters', () => {
  it('delivers only matching subjects, in either syntax; lag is exact once caught up', async () => {
    const s = await setup()
    await put(s.j, ['sensors/kitchen/temp', 'sensors/hall/temp', 'meters/1/kwh', 'sensors/kitchen/hum', 'other', 'meters/2/kwh/x'])
    const c = await consumer(s, { filter: ['sensors.kitchen.*', 'meters/#'] })
    expect(c.info()).toMatchObject({ lag: 6, lagExact: false })
    expect(c.countLag()).toBe(4)
    expect(seqs(c.next(100))).toEqual([1, 3, 4, 6])
    expect(c.info()).toMatchObject({ lag: 0, lagExact: true, deliveredSeq: 6 })
  })

  it('reads at most scanLimit records per call and asks to be called again', async () => {
    const s = await setup()
    await put(s.j, [...Array.from({ length: 50 }, () => 'noise'), 'wanted'])
    const c = await consumer(s, { filter: 'wanted' }, { scanLimit: 20 })
    s.ready.n = 0
    expect(c.next(5)).toEqual([])
    await Promise.resolve()
    expect(s.ready.n).toBe(1)
    expect(c.next(5)).toEqual([])
    expect(seqs(c.next(5))).toEqual([51])
  })

  it('notify: a new matching message wakes the server; a non-matching one at the cursor is passed over unread', async () => {
    const s = await setup()
    const c = await consumer(s, { filter: 'a' })
    expect(c.next(5)).toEqual([])
    const [n1] = await put(s.j, ['b'])
    s.ready.n = 0
    c.notify({ seq: n1 as number, subject: 'b' })
    await Promise.resolve()
    expect(s.ready.n).toBe(0)
    expect(c.info().deliveredSeq).toBe(1)
    const [n2] = await put(s.j, ['a'])
    c.notify({ seq: n2 as number, subject: 'a' })
    await Promise.resolve()
    expect(s.ready.n).toBe(1)
    expect(seqs(c.next(5))).toEqual([2])
  })
})

describe('replay: original', () => {
  it('spaces first deliveries like the recorded timestamps', async () => {
    const s = await setup()
    await put(s.j, ['a'], s.t)
    s.t.advance(1000)
    await put(s.j, ['b'])
    s.t.advance(2000)
    await put(s.j, ['c'])
    s.t.advance(60_000) // replay starts long after
    const c = await consumer(s, { replay: 'original', ack: 'none' })
    expect(seqs(c.next(10))).toEqual([1])
    expect(c.nextDueIn()).toBe(1000)
    s.t.advance(999)
    expect(c.next(10)).toEqual([])
    s.ready.n = 0
    s.t.advance(1)
    await Promise.resolve()
    expect(s.ready.n).toBe(1)
    expect(seqs(c.next(10))).toEqual([2])
    s.t.advance(1999)
    expect(c.next(10)).toEqual([])
    s.t.advance(1)
    expect(seqs(c.next(10))).toEqual([3])
  })
})

describe('retention', () => {
  it('pending messages the stream removed are dropped and counted; a cursor behind the stream jumps', async () => {
    const s = await setup()
    await put(s.j, ['a', 'b', 'c', 'd', 'e', 'f'])
    const c = await consumer(s, { ackWait: '1s' }, { scanLimit: 100 })
    expect(seqs(c.next(3))).toEqual([1, 2, 3])
    await s.j.removeBefore(5)
    s.t.advance(1000)
    expect(seqs(c.next(10))).toEqual([5, 6])
    expect(c.info()).toMatchObject({ dropped: 3, skipped: 1, pending: 2, ackFloor: 4 })
  })
})

describe('competing clients', () => {
  it('release: a client that went away gives its messages and subjects to the others at once', async () => {
    const s = await setup()
    await put(s.j, ['x', 'x', 'y'])
    const c = await consumer(s, { ackWait: '1h' })
    expect(seqs(c.next(1, 'A'))).toEqual([1])
    expect(seqs(c.next(5, 'B'))).toEqual([3]) // x is held by A: 2 waits for it
    expect(c.info()).toMatchObject({ deferred: 1, clients: 2 })
    expect(c.release('A')).toBe(1)
    expect(c.next(5, 'B').map((d) => [d.seq, d.deliveryCount])).toEqual([[1, 2], [2, 1]])
  })

  /** A seeded generator, so a failure can be replayed. */
  function rng(seed: number): () => number {
    let x = seed >>> 0
    return () => {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0
      return x / 2 ** 32
    }
  }

  it('pulls from many clients are disjoint, cover everything, and keep each subject in order within a client', async () => {
    for (const seed of [1, 2, 3]) {
      const s = await setup()
      const subjects = ['s/0', 's/1', 's/2', 's/3', 's/4', 's/5', 's/6']
      const rand = rng(seed)
      const N = 700
      await put(s.j, Array.from({ length: N }, () => subjects[Math.floor(rand() * subjects.length)] as string))
      const c = await consumer(s, { ackWait: '2s', maxDeliver: 0, maxAckPending: 40 })
      const clients = ['A', 'B', 'C']
      const out = new Map<number, string>() // seq -> the client it is out to now
      const held = new Map<string, number[]>(clients.map((k) => [k, []]))
      const lastFirst = new Map<string, number>() // client|subject -> last first-delivered seq
      const acked = new Set<number>()
      const subjectOf = new Map<number, string>()
      let deferredSeen = 0
      let redeliveries = 0
      const holder = (subject: string): string | undefined => {
        for (const [seq, k] of out) if (subjectOf.get(seq) === subject) return k
        return undefined
      }
      for (let round = 0; round < 5000 && acked.size < N; round++) {
        const who = clients[Math.floor(rand() * clients.length)] as string
        const got = c.next(1 + Math.floor(rand() * 8), who)
        for (const d of got) {
          const other = out.get(d.seq)
          if (other !== undefined && other !== who) expect.fail(`seed ${seed}: seq ${d.seq} given to ${who} while out to ${other}`)
          // while another client has this subject out, no one else gets it
          const h = holder(d.subject)
          if (h !== undefined && h !== who) expect.fail(`seed ${seed}: ${d.subject} given to ${who} while ${h} holds it`)
          out.set(d.seq, who)
          subjectOf.set(d.seq, d.subject)
          if (d.deliveryCount > 1) redeliveries++
          held.get(who)?.push(d.seq)
          if (d.deliveryCount === 1) {
            const key = `${who}|${d.subject}`
            if ((lastFirst.get(key) ?? 0) >= d.seq) expect.fail(`seed ${seed}: ${who} got ${d.subject} #${d.seq} after #${lastFirst.get(key)}`)
            lastFirst.set(key, d.seq)
          }
        }
        deferredSeen = Math.max(deferredSeen, c.info().deferred)
        // each client acks some of what it holds (oldest first, mostly), and sometimes stalls
        const mine = held.get(who) as number[]
        const k = rand() < 0.1 ? 0 : Math.floor(rand() * (mine.length + 1))
        for (const seq of mine.splice(0, k)) {
          if (out.get(seq) !== who) continue
          if (c.ack(seq)) acked.add(seq)
          out.delete(seq)
        }
        if (rand() < 0.05) {
          s.t.advance(2000) // deadlines pass: those messages are out to no one any more
          for (const [seq, owner] of [...out]) {
            const e = c.pendingEntries().find((p) => p.seq === seq)
            if (e === undefined || e.state !== 'out' || e.client !== owner) out.delete(seq)
          }
          for (const list of held.values()) list.splice(0, list.length, ...list.filter((q) => out.has(q)))
        }
      }
      expect(acked.size, `seed ${seed}`).toBe(N)
      expect(deferredSeen, 'messages waited for their subject to be free').toBeGreaterThan(0)
      expect(redeliveries, 'deadlines passed').toBeGreaterThan(0)
      expect([...acked].sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i + 1))
      expect(c.info()).toMatchObject({ pending: 0, deferred: 0, ackFloor: N, lag: 0 })
      for (const c2 of consumers.splice(0)) await c2.close()
      for (const j of journals.splice(0)) await j.close()
    }
  })
})

describe('ephemeral consumers', () => {
  it('keep nothing on disk', async () => {
    const s = await setup()
    await put(s.j, ['a'])
    const c = await consumer(s, {}, { ephemeralName: 'tmp1' })
    c.next(1)
    await tick()
    await c.close()
    const { existsSync } = await import('node:fs')
    expect(existsSync(`${s.j.dir}/consumers`)).toBe(false)
    expect(c.deadLetterSubject).toBe('$dlq/telemetry/tmp1')
    expect(() => c.next(1)).toThrow(/ECONSUMER_CLOSED|closed/)
  })
})
