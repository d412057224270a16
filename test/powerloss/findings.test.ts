import * as fs from 'node:fs'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { FilePersistence } from '../../src/persistence/file-persistence.ts'
import type { StoredPacket } from '../../src/persistence/records.ts'
import { parseConsumerDefinition } from '../../src/stream/consumer-config.ts'
import { consumerStatePath } from '../../src/stream/consumer-state.ts'
import { Consumer } from '../../src/stream/consumer.ts'
import { Journal } from '../../src/stream/journal.ts'
import { StreamManager } from '../../src/stream/stream-manager.ts'
import { Router } from '../../src/router/router.ts'
import { createLogger } from '../../src/core/log.ts'
import { CrashFs, CrashModel, seededRandom, type WritebackMode } from '../support/crash-fs.ts'

// What the power-loss proof found, each as a small deterministic case (the fix is in the commit
// named in the test): these fail on the code before it.

const dirs: string[] = []
let rec: CrashFs | null = null

function temp(): string {
  const d = mkdtempSync(join(tmpdir(), 'edgebus-findings-'))
  dirs.push(d)
  return d
}

afterEach(() => {
  rec?.stop()
  rec = null
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

/** The files as a power cut now would leave them, with nothing unsynced written back. */
function cutNow(recording: CrashFs, mode: WritebackMode = 'nothing'): string {
  recording.stop()
  const model = new CrashModel(recording)
  for (const ev of recording.events) model.apply(ev)
  const out = temp()
  model.image(out, seededRandom(1), mode)
  return out
}

/** Whether a sync of a file matching `path`, started at or after event `from`, has returned. */
function syncedSince(recording: CrashFs, from: number, path: RegExp): boolean {
  const started = new Set<number>()
  for (const ev of recording.events.slice(from)) {
    if (ev.t === 'syncStart' && path.test(ev.path)) started.add(ev.token)
    if (ev.t === 'syncEnd' && started.has(ev.token)) return true
  }
  return false
}

/** Calls `check` on the image a power cut (nothing unsynced written back) leaves at every event from `from` on. */
async function everyCutFrom(recording: CrashFs, from: number, check: (image: string, k: number) => Promise<void>): Promise<void> {
  const model = new CrashModel(recording)
  const events = recording.events
  for (let k = 0; k <= events.length; k++) {
    if (k >= from) {
      const image = temp()
      model.image(image, seededRandom(k), 'nothing')
      await check(image, k)
      rmSync(image, { recursive: true, force: true })
    }
    if (k < events.length) model.apply(events[k]!)
  }
}

async function list<T>(stream: Readable): Promise<T[]> {
  const out: T[] = []
  for await (const x of stream) out.push(x as T)
  return out
}

describe('power-loss findings', () => {
  it('a stream created since the start keeps what it acknowledged: its directory is synced into its parent (mkdirDurableSync)', async () => {
    const root = temp()
    rec = CrashFs.record(root)
    const j = await Journal.open(join(root, 'streams', 'telemetry'), { fsync: 'batch' })
    const { seq } = await j.append({ subject: 'sensors/t', payload: Buffer.from('21.5') })
    const image = cutNow(rec)
    await j.close()
    const j2 = await Journal.open(join(image, 'streams', 'telemetry'))
    try {
      expect(j2.read(seq)?.payload.toString()).toBe('21.5')
    } finally {
      await j2.close()
    }
  })

  it('a stream and a consumer created at run time, and what they acknowledged, are there after a power cut: their definitions and directories are synced', async () => {
    const root = temp()
    rec = CrashFs.record(root)
    const silent = createLogger('silent')
    const m = await StreamManager.open(new Router(), root, [], silent, async () => {})
    await m.add({ name: 'telemetry', subjects: ['sensors/#'] })
    await m.consumers('telemetry').add({ name: 'workers' })
    const { seq } = await m.get('telemetry').journal.append({ subject: 'sensors/t', payload: Buffer.from('21.5') })
    const image = cutNow(rec)
    await m.close()
    const m2 = await StreamManager.open(new Router(), image, [], silent, async () => {})
    try {
      expect(m2.get('telemetry').journal.read(seq)?.payload.toString()).toBe('21.5')
      expect(m2.consumers('telemetry').list().map((c) => c.name)).toEqual(['workers'])
    } finally {
      await m2.close()
    }
  })

  it('the MQTT state directory made at the first start is synced into its parent', async () => {
    const root = temp()
    rec = CrashFs.record(root)
    const p = await FilePersistence.open(join(root, 'mqtt'))
    await p.storeRetained({ cmd: 'publish', topic: 'r/1', payload: Buffer.from('kept'), qos: 1, retain: true })
    await p.close() // synced
    const image = cutNow(rec)
    const p2 = await FilePersistence.open(join(image, 'mqtt'))
    try {
      expect((await list<StoredPacket>(p2.createRetainedStream('#'))).map((x) => String(x.payload))).toEqual(['kept'])
    } finally {
      await p2.close()
    }
  })

  it('a lock file torn by a power cut (a prefix of the pid, no newline) does not keep the stores from opening', async () => {
    const dir = temp()
    // pid 1 runs (init): a whole lock naming it would be respected; a torn one is a leftover
    writeFileSync(join(dir, 'journal.lock'), '1')
    const j = await Journal.open(dir)
    await j.close()
    mkdirSync(join(dir, 'mqtt'))
    writeFileSync(join(dir, 'mqtt', 'LOCK'), '1')
    const p = await FilePersistence.open(join(dir, 'mqtt'))
    await p.close()
  })

  it('an MQTT state answer for a change already in memory waits until that change is written (a retained message cleared twice in one turn, a will deleted twice)', async () => {
    const dir = temp()
    let writes = 0
    const p = await FilePersistence.open(dir, { fileOps: { writeSync: (fd, buf, off, len, pos) => { writes++; return fs.writeSync(fd, buf, off, len, pos) } } })
    try {
      await p.storeRetained({ cmd: 'publish', topic: 'r/1', payload: Buffer.from('v'), qos: 1, retain: true })
      const before = writes
      const seen: number[] = []
      const clear = { cmd: 'publish', topic: 'r/1', payload: Buffer.alloc(0), qos: 1, retain: true }
      const first = p.storeRetained(clear).then(() => seen.push(writes))
      const second = p.storeRetained(clear).then(() => seen.push(writes)) // nothing left to clear: was answered at once
      const again = p.storeRetained({ cmd: 'publish', topic: 'r/2', payload: Buffer.from('w'), qos: 1, retain: true })
      const same = p.storeRetained({ cmd: 'publish', topic: 'r/2', payload: Buffer.from('w'), qos: 1, retain: true }).then(() => seen.push(writes))
      await p.putWill({ id: 'c1' }, { cmd: 'publish', topic: 'w', payload: Buffer.from('gone'), qos: 1, retain: false })
      const willWritten = writes
      let writesAtSecondDel = -1
      const delWill = p.delWill({ id: 'c1' })
      const delAgain = p.delWill({ id: 'c1' }).then(() => { writesAtSecondDel = writes })
      await Promise.all([first, second, again, same, delWill, delAgain])
      expect(seen.every((n) => n > before)).toBe(true)
      expect(writesAtSecondDel).toBeGreaterThan(willWritten)
    } finally {
      await p.close()
    }
  })

  it('consumer state: records after a damaged stretch do not move the cursor past deliveries whose records were lost', async () => {
    const dir = temp()
    const j = await Journal.open(dir)
    for (let i = 1; i <= 8; i++) await j.append({ subject: `jobs/${i}`, payload: Buffer.from(`job ${i}`) })
    const def = parseConsumerDefinition({ name: 'work', ackWait: '1h' }, 'jobs')
    const path = consumerStatePath(dir, 'work')
    const ends: number[] = []
    const c = await Consumer.open(j, def, { state: { onWrite: () => ends.push(statSync(path).size) } })
    c.next(3, 'w') // DELIVER 1-3, CURSOR 4
    c.flush()
    c.next(3, 'w') // DELIVER 4-6, CURSOR 7: the write a power cut loses...
    c.flush()
    c.next(1, 'w') // DELIVER 7, CURSOR 8: ...while this later one reached the disk
    c.flush()
    await c.close()
    const buf = readFileSync(path)
    buf.fill(0, ends[0], ends[1])
    writeFileSync(path, buf)
    const c2 = await Consumer.open(j, def)
    try {
      expect(c2.stateReport?.corrupt.length).toBe(1)
      // 4-7 were delivered and never acknowledged: they are delivered again, none is skipped
      const pending = c2.pendingEntries().map((e) => e.seq)
      const next = c2.next(10, 'w').map((d) => d.seq)
      expect([...pending, ...next].filter((s) => s >= 4 && s <= 7).sort()).toEqual([4, 5, 6, 7])
    } finally {
      await c2.close()
      await j.close()
    }
  })

  it('MQTT state: a change synced while a compaction runs is kept by the generation that replaces the log', async () => {
    const root = temp()
    rec = CrashFs.record(root)
    const held: { snapshot: (() => void) | null } = { snapshot: null }
    // a slow disk: the compaction's sync of its snapshot returns when the test lets it
    rec.holdSync = (path, start) => {
      if (held.snapshot !== null || !path.endsWith('.log.tmp')) return false
      held.snapshot = start
      return true
    }
    const p = await FilePersistence.open(join(root, 'mqtt'), { syncIntervalMs: 1, compactMinBytes: 1, compactRatio: 1.5 })
    for (let i = 0; held.snapshot === null; i++) {
      if (i > 1000) throw new Error('no compaction started')
      await p.storeRetained({ cmd: 'publish', topic: 'r/1', payload: Buffer.from(`value ${i}`.padEnd(300)), qos: 1, retain: true })
    }
    await p.storeRetained({ cmd: 'publish', topic: 'r/2', payload: Buffer.from('X'), qos: 1, retain: true })
    const written = rec.now()
    await vi.waitFor(() => expect(syncedSince(rec!, written, /state-\d+\.log$/)).toBe(true)) // the README's promise: synced
    const from = rec.now()
    held.snapshot?.()
    await p.settled()
    await p.close()
    rec.stop()
    await everyCutFrom(rec, from, async (image, k) => {
      const p2 = await FilePersistence.open(join(image, 'mqtt'))
      try {
        const r2 = (await list<StoredPacket>(p2.createRetainedStream('r/2'))).map((x) => String(x.payload))
        expect(r2, `cut ${k}`).toEqual(['X'])
      } finally {
        await p2.close()
      }
    })
  })

  it('consumer state: acks synced while a compaction runs are kept by the file that replaces the log', async () => {
    const root = temp()
    const dir = join(root, 'stream')
    const j0 = await Journal.open(dir)
    for (let i = 1; i <= 10; i++) await j0.append({ subject: `jobs/${i}`, payload: Buffer.from(`job ${i}`) })
    await j0.close()
    rec = CrashFs.record(root)
    const held: { snapshot: (() => void) | null; newLog: (() => void) | null } = { snapshot: null, newLog: null }
    let renamed = false
    // a slow disk: the compaction's snapshot sync returns when the test lets it, and the new log's
    // first sync after the directory sync that follows the rename (a cut finds the file as written)
    rec.holdSync = (path, start) => {
      if (held.snapshot === null && path.endsWith('work.state.tmp')) {
        held.snapshot = start
        return true
      }
      if (renamed && held.newLog === null && path.endsWith('work.state')) {
        held.newLog = start
        return true
      }
      return false
    }
    const j = await Journal.open(dir)
    const def = parseConsumerDefinition({ name: 'work', ackWait: '1h' }, 'jobs')
    const c = await Consumer.open(j, def, { state: { syncIntervalMs: 1, compactMinBytes: 1, compactRatio: 1.01 } })
    c.next(5, 'w')
    c.flush() // over the threshold: a compaction starts
    await vi.waitFor(() => expect(held.snapshot).not.toBeNull())
    c.ack(1)
    c.flush() // to the old log, and to the compaction's tail
    const written = rec.now()
    await vi.waitFor(() => expect(syncedSince(rec!, written, /work\.state$/)).toBe(true)) // synced: may not be undone
    const from = rec.now()
    renamed = true
    held.snapshot?.()
    await vi.waitFor(() => expect(held.newLog).not.toBeNull())
    const renameAt = rec.events.findIndex((e, i) => i >= from && e.t === 'rename' && e.to === 'work.state')
    await vi.waitFor(() => expect(syncedSince(rec!, renameAt, /consumers$/)).toBe(true))
    held.newLog?.()
    await c.close()
    await j.close()
    rec.stop()
    await everyCutFrom(rec, from, async (image, k) => {
      const j2 = await Journal.open(join(image, 'stream'))
      const c2 = await Consumer.open(j2, def)
      try {
        expect(c2.pendingEntries().map((e) => e.seq), `cut ${k}`).not.toContain(1)
        expect(c2.info().deliveredSeq).toBeGreaterThanOrEqual(1)
      } finally {
        await c2.close()
        await j2.close()
      }
    })
  })
})
