import * as fs from 'node:fs'
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { isEdgebusError } from '../../src/core/errors.ts'
import { parseConsumerDefinition } from '../../src/stream/consumer-config.ts'
import { consumerStatePath } from '../../src/stream/consumer-state.ts'
import { Consumer, type ConsumerOptions, type DeadLetter } from '../../src/stream/consumer.ts'
import { Journal } from '../../src/stream/journal.ts'
import { ManualTime, recordingLog, runUntilKilled, tempDir } from './support.ts'


const open: Array<Consumer | Journal> = []
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close()
})

const tick = (): Promise<void> => new Promise((r) => setImmediate(r))

async function journalWith(subjects: string[], dir = tempDir()): Promise<Journal> {
  const j = await Journal.open(dir)
  open.push(j)
  const appended = subjects.map((s, i) => j.appendQueued({ subject: s, payload: Buffer.from(`m${i + 1}`) }))
  await Promise.all(appended.map((a) => a.durable))
  return j
}

async function consumerOn(j: Journal, raw: Record<string, unknown>, t: ManualTime, opts: ConsumerOptions = {}): Promise<Consumer> {
  const c = await Consumer.open(j, parseConsumerDefinition(raw, 'telemetry'), { clock: t.clock, timers: t, ...opts })
  open.push(c)
  return c
}

async function closeConsumer(c: Consumer): Promise<void> {
  open.splice(open.indexOf(c), 1)
  await c.close()
}

const letters = (n: number): string[] => Array.from({ length: n }, (_, i) => `s/${i % 3}`)

describe('durable consumer state', () => {
  it('release(null) makes what was out before a restart deliverable at once, in stream order (a bridge resends it first)', async () => {
    const t = new ManualTime()
    const j = await journalWith(letters(6))
    const c = await consumerOn(j, { name: 'bridge', ackWait: '60s' }, t)
    expect(c.next(4, '$bridge').map((d) => d.seq)).toEqual([1, 2, 3, 4])
    c.ack(2)
    await closeConsumer(c)

    const c2 = await consumerOn(j, { name: 'bridge', ackWait: '60s' }, t)
    // without it they wait for their ack deadline: only the never-delivered ones come
    expect(c2.next(10, '$bridge').map((d) => d.seq)).toEqual([5, 6])
    await closeConsumer(c2)
    const c3 = await consumerOn(j, { name: 'bridge', ackWait: '60s' }, t)
    expect(c3.release(null)).toBe(5) // 1, 3, 4 from the first run, 5, 6 from the second
    const again = c3.next(10, '$bridge')
    expect(again.map((d) => [d.seq, d.deliveryCount])).toEqual([[1, 2], [3, 2], [4, 2], [5, 2], [6, 2]])
    // deliveries of a live client are not touched by it
    expect(c3.release(null)).toBe(0)
    expect(c3.info().pending).toBe(5)
  })

  it('resumes after a restart: acked never again, unacked at their deadline, new ones from the cursor, counters kept', async () => {
    const t = new ManualTime()
    const j = await journalWith(letters(10))
    const dead: DeadLetter[] = []
    const c = await consumerOn(j, { name: 'work', ackWait: '30s' }, t, { onDeadLetter: (d) => dead.push(d) })
    expect(existsSync(consumerStatePath(j.dir, 'work'))).toBe(true)
    expect(c.next(10).map((d) => d.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    for (const s of [1, 2, 3, 4, 5, 7]) c.ack(s)
    c.term(8)
    t.advance(10_000)
    c.nak(9, 5000)
    await closeConsumer(c)
    await Promise.all([j.appendQueued({ subject: 's/9', payload: Buffer.from('m11') }).durable, j.appendQueued({ subject: 's/9', payload: Buffer.from('m12') }).durable])

    const c2 = await consumerOn(j, { name: 'work', ackWait: '30s' }, t)
    expect(c2.info()).toMatchObject({ pending: 3, dlq: 1, terminated: 1, ackFloor: 5, deliveredSeq: 10, lag: 2 })
    expect(c2.pendingEntries().map((e) => [e.seq, e.deliveryCount, e.state, e.client])).toEqual([[6, 1, 'out', null], [9, 1, 'out', null], [10, 1, 'out', null]])
    expect(c2.next(10).map((d) => d.seq)).toEqual([11, 12])
    t.advance(5000)
    expect(c2.next(10).map((d) => [d.seq, d.deliveryCount])).toEqual([[9, 2]])
    t.advance(15_000)
    expect(c2.next(10).map((d) => [d.seq, d.deliveryCount])).toEqual([[6, 2], [10, 2]])
    expect(dead.map((d) => d.seq)).toEqual([8])
  })

  it('keeps its state when retention moves the stream past pending messages (dropped and counted)', async () => {
    const t = new ManualTime()
    const j = await journalWith(letters(10))
    const c = await consumerOn(j, { name: 'work' }, t)
    c.next(6)
    c.ack(1)
    c.ack(5)
    await closeConsumer(c)
    await j.removeBefore(4)
    const c2 = await consumerOn(j, { name: 'work', ackWait: '1s' }, t)
    t.advance(30_000)
    expect(c2.next(10).map((d) => [d.seq, d.deliveryCount])).toEqual([[4, 2], [6, 2], [7, 1], [8, 1], [9, 1], [10, 1]])
    expect(c2.info()).toMatchObject({ dropped: 2, pending: 6 })
    await closeConsumer(c2)
    const c3 = await consumerOn(j, { name: 'work' }, t)
    expect(c3.info().dropped).toBe(2)
  })

  it('the acks of the current event-loop turn reach the file at its end (the kill -9 window)', async () => {
    const t = new ManualTime()
    const j = await journalWith(letters(6))
    const c = await consumerOn(j, { name: 'work' }, t)
    c.next(6)
    await tick()
    c.ack(1)
    c.ack(2)
    // a copy of the files now is what a kill -9 at this instant leaves
    const before = tempDir()
    cpSync(j.dir, before, { recursive: true })
    await tick()
    c.ack(3)
    c.flush() // or now, explicitly
    const after = tempDir()
    cpSync(j.dir, after, { recursive: true })
    for (const [dir, pending] of [[before, [1, 2, 3, 4, 5, 6]], [after, [4, 5, 6]]] as const) {
      const jj = await Journal.open(dir)
      open.push(jj)
      const cc = await consumerOn(jj, { name: 'work' }, t)
      expect(cc.pendingEntries().map((e) => e.seq)).toEqual(pending)
    }
  })

  it('compaction keeps the file small and the state whole', async () => {
    const t = new ManualTime()
    const j = await journalWith(letters(3000))
    const c = await consumerOn(j, { name: 'work', maxAckPending: 0 }, t, { state: { compactMinBytes: 4096, compactRatio: 2 } })
    const path = consumerStatePath(j.dir, 'work')
    let largest = 0
    for (let round = 0; round < 60; round++) {
      for (const d of c.next(50)) if (d.seq % 17 !== 0) c.ack(d.seq)
      await tick()
      largest = Math.max(largest, statSync(path).size)
    }
    expect(largest).toBeGreaterThan(4096)
    // while running, a compaction (asynchronous: its speed is the disk's) replaces the grown log
    await vi.waitFor(() => expect(statSync(path).size).toBeLessThan(largest), { timeout: 10_000 })
    const want = c.pendingEntries()
    expect(want.length).toBe(Math.floor(3000 / 17))
    await closeConsumer(c)
    // and a clean close leaves no more than a snapshot of ~176 entries plus a log under the threshold
    expect(statSync(path).size).toBeLessThan(2 * 4096 + 200 * 40)
    expect(readdirSync(join(j.dir, 'consumers'))).toEqual(['work.state'])
    const c2 = await consumerOn(j, { name: 'work', maxAckPending: 0 }, t)
    expect(c2.pendingEntries()).toEqual(want.map((e) => ({ ...e, client: null }))) // out before the restart: to no known client
    expect(c2.info()).toMatchObject({ deliveredSeq: 3000, pending: want.length })
  })

  it('recovery: a torn tail is cut, a damaged record skipped and the file rewritten, an unreadable file set aside', async () => {
    const t = new ManualTime()
    const j = await journalWith(letters(8))
    const c = await consumerOn(j, { name: 'work', deliver: 'new' }, t)
    await Promise.all(['a', 'b', 'c', 'd'].map((s) => j.appendQueued({ subject: s, payload: Buffer.from(s) }).durable))
    c.next(4)
    await tick()
    c.ack(9)
    await tick()
    c.ack(10)
    await closeConsumer(c)
    const path = consumerStatePath(j.dir, 'work')
    const good = readFileSync(path)

    // torn tail: half a record
    writeFileSync(path, Buffer.concat([good, good.subarray(good.length - 7, good.length - 3)]))
    let c2 = await consumerOn(j, { name: 'work' }, t)
    expect(c2.stateReport).toMatchObject({ tornBytes: 4, corrupt: [] })
    expect(c2.pendingEntries().map((e) => e.seq)).toEqual([11, 12])
    await closeConsumer(c2)

    // the ack of 9 damaged (its record is the second to last): skipped, 9 comes back, the rest holds
    const damaged = Buffer.from(good)
    const ackOf9 = damaged.length - 20 - 20 + 12
    damaged[ackOf9] = (damaged[ackOf9] as number) ^ 0xff
    writeFileSync(path, damaged)
    c2 = await consumerOn(j, { name: 'work' }, t)
    expect(c2.stateReport?.corrupt.length).toBe(1)
    expect(c2.stateReport?.rewrite).toBe(true)
    expect(c2.pendingEntries().map((e) => e.seq)).toEqual([9, 11, 12])
    await closeConsumer(c2)
    expect(readFileSync(path).length).toBeLessThan(good.length) // rewritten as one snapshot

    // garbage: set aside, the consumer starts over from the first stored message
    writeFileSync(path, 'not a consumer state')
    c2 = await consumerOn(j, { name: 'work', deliver: 'new' }, t)
    expect(c2.stateReport?.setAside).toBe(`${path}.damaged`)
    expect(c2.next(100).map((d) => d.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
  })

  it('a failed write or sync is repaired by rewriting the whole state', async () => {
    const t = new ManualTime()
    const j = await journalWith(letters(6))
    const log = recordingLog()
    let failWrites = 0
    let failSyncs = 0
    const eio = (): Error => Object.assign(new Error('EIO: i/o error'), { code: 'EIO' })
    const c = await consumerOn(j, { name: 'work' }, t, {
      log,
      state: {
        syncIntervalMs: 1,
        fileOps: {
          writeSync: (fd, buf, off, len, pos) => { if (failWrites-- > 0) throw eio(); return fs.writeSync(fd, buf, off, len, pos) },
          fdatasync: (fd, cb) => { if (failSyncs-- > 0) setImmediate(() => cb(eio())); else fs.fdatasync(fd, cb) },
        },
      },
    })
    c.next(6)
    failWrites = 1
    c.ack(1)
    await tick()
    expect(log.lines.filter((l) => l.obj.code === 'ECONSUMER_IO').map((l) => l.msg)).toEqual(['consumer state write failed; the state will be rewritten'])
    c.ack(2)
    await tick()
    failSyncs = 1
    c.ack(3)
    await tick()
    await vi.waitFor(() => expect(log.lines.filter((l) => l.msg === 'consumer state rewritten after a failure').length).toBe(2))
    expect(log.lines.filter((l) => l.obj.code === 'ECONSUMER_IO').length).toBe(2)
    await closeConsumer(c)
    const c2 = await consumerOn(j, { name: 'work' }, t)
    expect(c2.pendingEntries().map((e) => e.seq)).toEqual([4, 5, 6])
  })

  it('a state file that cannot be written (a full disk) is reported until a rewrite works, in a few log lines', async () => {
    const t = new ManualTime()
    const j = await journalWith(letters(6))
    const log = recordingLog()
    let full = false
    const enospc = (): Error => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
    const c = await consumerOn(j, { name: 'work' }, t, {
      log,
      state: { syncIntervalMs: 1, fileOps: { writeSync: (fd, buf, off, len, pos) => { if (full) throw enospc(); return fs.writeSync(fd, buf, off, len, pos) } } },
    })
    c.next(6)
    full = true
    for (let seq = 1; seq <= 5; seq++) { c.ack(seq); await tick() }
    expect(c.stateFailure).toMatchObject({ code: 'ECONSUMER_IO' })
    expect(log.lines.filter((l) => l.obj.code === 'ECONSUMER_IO').length).toBeLessThanOrEqual(2) // one per cause, not one per ack
    full = false
    await vi.waitFor(() => expect(c.stateFailure).toBeNull(), { timeout: 3000 }) // the retry each second rewrites it
    await closeConsumer(c)
    const c2 = await consumerOn(j, { name: 'work' }, t)
    expect(c2.pendingEntries().map((e) => e.seq)).toEqual([6])
  })

  it('one open consumer per name; remove deletes its state; ack none keeps just the cursor', async () => {
    const t = new ManualTime()
    const j = await journalWith(letters(5))
    const c = await consumerOn(j, { name: 'work', ack: 'none' }, t)
    let err: unknown = null
    try { await Consumer.open(j, parseConsumerDefinition({ name: 'work' }, 'telemetry')) } catch (e) { err = e }
    expect(isEdgebusError(err, 'ECONSUMER_IN_USE')).toBe(true)
    expect(c.next(3).map((d) => d.seq)).toEqual([1, 2, 3])
    await expect(Consumer.remove(j.dir, 'work')).rejects.toThrow(/is open/)
    await closeConsumer(c)
    const c2 = await consumerOn(j, { name: 'work', ack: 'none' }, t)
    expect(c2.next(10).map((d) => d.seq)).toEqual([4, 5])
    await closeConsumer(c2)
    await Consumer.remove(j.dir, 'work')
    expect(existsSync(consumerStatePath(j.dir, 'work'))).toBe(false)
  })
})

// --- kill -9 ---------------------------------------------------------------------------------

const N = 20_000
const crashSubject = (seq: number): string => `crash/${seq % 5}`
const leftPending = (seq: number): boolean => seq % 50 === 3

/**
 * The child: opens the journal and durable consumer "work", pulls, acks (nak'ing some first,
 * leaving some pending) as fast as it can and prints "a <seq>" for each ack right after making
 * it, and "w" after each write of the state file reached the OS. Killed with SIGKILL by the test.
 */
const CHILD = `
import { Journal } from '../../src/stream/journal.ts'
import { Consumer } from '../../src/stream/consumer.ts'
import { parseConsumerDefinition } from '../../src/stream/consumer-config.ts'
const out = (s) => process.stdout.write(s) // a pipe write is synchronous on Linux
const j = await Journal.open(process.argv[2])
const c = await Consumer.open(j, parseConsumerDefinition({ name: 'work', ackWait: '1h', maxDeliver: 0, maxAckPending: 0 }, 'crash'), {
  state: { compactMinBytes: 16384, compactRatio: 2, syncIntervalMs: 20, onWrite: () => out('w\\n') },
})
out('open\\n')
function pump() {
  let acks = ''
  for (const d of c.next(40)) {
    if (d.deliveryCount === 1 && d.seq % 50 === 3) continue
    if (d.deliveryCount === 1 && d.seq % 10 === 7) { c.nak(d.seq); continue }
    c.ack(d.seq)
    acks += 'a ' + d.seq + '\\n'
  }
  if (acks !== '') out(acks)
  setTimeout(pump, 1)
}
pump()
`

let bundleDir = ''
let bundle = ''

beforeAll(async () => {
  bundleDir = mkdtempSync(join(tmpdir(), 'edgebus-consumer-crash-'))
  bundle = join(bundleDir, 'consumer-crash-child.mjs')
  await build({
    stdin: { contents: CHILD, resolveDir: dirname(fileURLToPath(import.meta.url)), loader: 'ts', sourcefile: 'consumer-crash-child.ts' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: bundle,
    logLevel: 'error',
  })
})

afterAll(() => {
  rmSync(bundleDir, { recursive: true, force: true })
})

interface Run { written: number[]; window: number[]; stderr: string }

/** Runs the child until `ms` after it opened, then SIGKILL; splits its acks at the last "w". */
async function runAndKill(dir: string, ms: number): Promise<Run> {
  const { lines, stderr } = await runUntilKilled([bundle, dir], { ms, ready: (out) => out.startsWith('open\n') })
  const lastW = lines.lastIndexOf('w')
  const acks = (from: number, to: number): number[] => lines.slice(from, to).filter((l) => l.startsWith('a ')).map((l) => Number(l.slice(2)))
  return { written: acks(0, lastW + 1), window: acks(lastW + 1, lines.length), stderr }
}

describe('durable consumer crash safety (a real process killed with SIGKILL)', () => {
  it('no acknowledged message comes back beyond the unwritten turn, none is lost', async () => {
    const dir = tempDir()
    {
      const j = await Journal.open(dir)
      const appended = Array.from({ length: N }, (_, i) => j.appendQueued({ subject: crashSubject(i + 1), payload: Buffer.from(`p${i + 1}`) }))
      await Promise.all(appended.map((a) => a.durable))
      await j.close()
    }
    const safe = new Set<number>() // acks written before the kill: must never come back
    const everAcked = new Set<number>()
    let windowTotal = 0
    let cameBack = 0
    // EDGEBUS_SOAK_CYCLES (npm run soak) asks for more rounds of the same
    const cycles = Math.max(4, Number(process.env.EDGEBUS_SOAK_CYCLES ?? 0))
    let midCompaction = 0
    for (let cycle = 0; cycle < cycles; cycle++) {
      const run = await runAndKill(dir, 60 + Math.floor(Math.random() * 200))
      if (existsSync(`${consumerStatePath(dir, 'work')}.tmp`)) midCompaction++ // killed while writing a snapshot
      expect(run.stderr).toBe('')
      for (const s of [...run.written, ...run.window]) {
        if (safe.has(s)) expect.fail(`cycle ${cycle}: seq ${s} was acked (and written) before, and was delivered again`)
        everAcked.add(s)
      }
      for (const s of run.written) safe.add(s)
      windowTotal += run.window.length
      // what the state file says now, without delivering anything
      const t = new ManualTime(Date.now())
      const j = await Journal.open(dir)
      const c = await Consumer.open(j, parseConsumerDefinition({ name: 'work', ackWait: '1h', maxDeliver: 0, maxAckPending: 0 }, 'crash'), { clock: t.clock, timers: t })
      expect(c.stateReport?.corrupt).toEqual([])
      const cursor = c.info().deliveredSeq + 1
      const pending = new Set(c.pendingEntries().map((e) => e.seq))
      for (const s of safe) if (pending.has(s) || s >= cursor) expect.fail(`cycle ${cycle}: seq ${s} acked and written, but pending again`)
      for (const s of run.window) if (pending.has(s) || s >= cursor) cameBack++
      for (let s = 1; s < cursor; s++) if (leftPending(s) && !pending.has(s)) expect.fail(`cycle ${cycle}: seq ${s} was never acked but is not pending`)
      if (process.env.CONSUMER_CRASH_STATS) console.log({ cycle, written: run.written.length, window: run.window.length, cursor, pending: pending.size, cameBack, midCompaction })
      await c.close()
      await j.close()
    }
    expect(safe.size).toBeGreaterThan(1000) // the children did work
    expect(cameBack).toBeLessThanOrEqual(windowTotal)

    // drain the rest: every message not acked for good comes out, no written ack does
    const t = new ManualTime(Date.now() + 2 * 3_600_000)
    const j = await Journal.open(dir)
    const c = await Consumer.open(j, parseConsumerDefinition({ name: 'work', ackWait: '1h', maxDeliver: 0, maxAckPending: 0 }, 'crash'), { clock: t.clock, timers: t })
    const drained = new Set<number>()
    for (let got = c.next(5000); got.length > 0; got = c.next(5000)) {
      for (const d of got) {
        if (safe.has(d.seq)) expect.fail(`seq ${d.seq} acked and written, delivered again`)
        drained.add(d.seq)
        c.ack(d.seq)
      }
    }
    for (let s = 1; s <= N; s++) if (!everAcked.has(s) && !drained.has(s)) expect.fail(`seq ${s} lost: never acked, not delivered`)
    expect(c.info()).toMatchObject({ pending: 0, ackFloor: N, deliveredSeq: N })
    await c.close()
    await j.close()
  }, 30_000 + Number(process.env.EDGEBUS_SOAK_CYCLES ?? 0) * 1000)
})
