import * as fs from 'node:fs'
import { dirname } from 'node:path'
import { EdgebusError } from '../core/errors.ts'
import { LogLimiter } from '../core/log-limiter.ts'
import { FRAME_HEADER_BYTES as FRAME_HEADER, frameEnd, scanFrames, sealFrame, type FrameFormat } from '../storage/frame.ts'
import type { JournalLog } from './journal.ts'
import { syncDirSync } from '../core/fsync.ts'

/**
 * A durable consumer's state on disk: `<streamDir>/consumers/<name>.state`, one small append-only
 * log of CRC-framed records that starts with a snapshot (CONSUMERS.md has the byte layout).
 *
 *   header "edgebus-consumer1\n" | SNAPSHOT | DELIVER | DONE | CURSOR | DUE | ...
 *
 * Every record sets state absolutely (a delivery count, a deadline, a cursor position), and a DONE
 * of an entry that is not there is ignored, so replaying a record twice is harmless.
 *
 * Writing. Records of one event-loop turn are encoded into one buffer and written with one
 * pwrite at the end of the turn (setImmediate): once that write returned, a crash of the process
 * (kill -9, OOM) loses nothing of it. fdatasync follows `syncIntervalMs` later (default 100 ms)
 * while unsynced bytes exist: a power cut loses at most that much more. So the acks a kill -9 can
 * undo are those of the turn it interrupts; for a power cut, those of the last interval.
 *
 * Compaction. When the log passes `compactMinBytes` and `compactRatio` times its last snapshot,
 * a fresh snapshot is written to `<name>.state.tmp` and synced (asynchronously), then, in one
 * synchronous step, the records written meanwhile are appended to it, synced, and it is renamed
 * over the log; the directory is synced after. A crash at any point leaves the old log or the new
 * one, each whole. A clean close over the threshold compacts too (synchronously), so the next
 * open reads a snapshot, not a long log.
 *
 * Recovery. A torn tail is cut back to the last whole record. A damaged record with whole records
 * after it is skipped and reported (ECONSUMER_CORRUPT) and the state is rewritten at once; the
 * records after it do not move the cursor (applyRecord). A file whose snapshot is unreadable is
 * set aside as `.damaged` (never deleted) and the caller starts over (Consumer resumes from the
 * first stored message: nothing is lost, more is redelivered).
 *
 * Failure. A failed write or sync does not stop deliveries: it is logged (ECONSUMER_IO), the state
 * in memory stays right, and a full rewrite is tried with the next write until one succeeds.
 */

export interface ConsumerStateOptions {
  /** fdatasync this long after the first unsynced write. Default 100 ms; 0 = right after each write. */
  syncIntervalMs?: number
  /** Never compact a log smaller than this. Default 256 KiB. */
  compactMinBytes?: number
  /** Compact when the log is this many times its last snapshot. Default 4. */
  compactRatio?: number
  /** Called after each write of records reached the OS (tests and the crash test's child use it). */
  onWrite?: () => void
  log?: JournalLog
  /** The log's append and sync; tests inject failures here. */
  fileOps?: Partial<StateFileOps>
}

export interface StateFileOps {
  writeSync(fd: number, buf: Buffer, offset: number, length: number, position: number): number
  fdatasync(fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void
}

const nodeOps: StateFileOps = {
  writeSync: (fd, buf, offset, length, position) => fs.writeSync(fd, buf, offset, length, position),
  fdatasync: (fd, cb) => fs.fdatasync(fd, cb),
}

/** What became of a message that left the consumer's pending set. */
export type DoneKind = 'ack' | 'term' | 'deadLetter' | 'dropped'
const DONE_CODES: Record<DoneKind, number> = { ack: 0, term: 1, deadLetter: 2, dropped: 3 }

export interface PersistedEntry {
  seq: number
  subject: string
  /** Deliveries so far; 0 = claimed by the cursor, not yet delivered. */
  dc: number
  /** When it may be delivered again (ms, the consumer's clock); 0 = now. */
  due: number
}

export interface ConsumerCounters {
  /** Messages handed to the dead-letter callback (after maxDeliver, or term). */
  deadLettered: number
  /** Of those, by term(). */
  terminated: number
  /** Pending messages the stream removed (retention) before they were acknowledged. */
  dropped: number
}

export interface PersistedState {
  /** The next stream sequence to read. */
  cursor: number
  entries: Map<number, PersistedEntry>
  counters: ConsumerCounters
}

export interface StateLoadReport {
  path: string
  bytes: number
  records: number
  /** Damaged stretches skipped (whole records follow them). */
  corrupt: Array<{ at: number; bytes: number }>
  /** Bytes of a torn tail cut off. */
  tornBytes: number
  /** Where an unusable file was moved, or null. */
  setAside: string | null
  /** The state must be rewritten (damage was skipped). */
  rewrite: boolean
}

const HEADER = Buffer.from('edgebus-consumer1\n', 'latin1')
/** The frames of a consumer state file (storage/frame.ts). */
const FRAMES: FrameFormat = { magic0: 0xec, magic1: 0xc5, maxBody: 256 << 20 }
const T_SNAPSHOT = 1
const T_DELIVER = 2
const T_DONE = 3
const T_CURSOR = 4
const T_DUE = 5
const SNAPSHOT_FORMAT = 1

/** The state file of consumer `name` of the stream whose journal is in `streamDir`. */
export function consumerStatePath(streamDir: string, name: string): string {
  return `${streamDir}/consumers/${name}.state`
}

function ioError(err: unknown, op: string, path: string): EdgebusError {
  const e = err as NodeJS.ErrnoException
  return new EdgebusError('ECONSUMER_IO', `consumer state ${op} failed for ${path}: ${e.message ?? String(err)}`, { op, path, errno: e.code })
}


function writeAllSync(fd: number, buf: Buffer, len: number, position: number, ops: StateFileOps = nodeOps): void {
  let done = 0
  while (done < len) done += ops.writeSync(fd, buf, done, len - done, position + done)
}

/** A growable buffer of framed records. */
class FrameWriter {
  buf = Buffer.allocUnsafe(4096)
  len = 0

  reserve(n: number): void {
    if (this.len + n <= this.buf.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n))
    this.buf.copy(next, 0, 0, this.len)
    this.buf = next
  }

  /** Starts a frame with a body of `bodyLen` bytes; returns the body's offset. */
  begin(bodyLen: number): number {
    this.reserve(FRAME_HEADER + bodyLen)
    const at = this.len
    this.buf.writeUInt32LE(bodyLen, at + 2)
    this.len += FRAME_HEADER + bodyLen
    return at + FRAME_HEADER
  }

  /** Seals the frame whose body starts at `body` (its CRC covers the length field and the body). */
  end(body: number): void {
    const at = body - FRAME_HEADER
    sealFrame(this.buf, at, body + this.buf.readUInt32LE(at + 2), FRAMES)
  }
}

interface SnapshotJson {
  format: number
  cursor: number
  counters: ConsumerCounters
  /** [seq, deliveries, due, subject] */
  entries: Array<[number, number, number, string]>
}

function encodeSnapshot(w: FrameWriter, s: PersistedState): void {
  const json: SnapshotJson = {
    format: SNAPSHOT_FORMAT,
    cursor: s.cursor,
    counters: s.counters,
    entries: [...s.entries.values()].map((e) => [e.seq, e.dc, e.due, e.subject]),
  }
  const text = Buffer.from(JSON.stringify(json), 'utf8')
  const body = w.begin(1 + text.length)
  w.buf[body] = T_SNAPSHOT
  text.copy(w.buf, body + 1)
  w.end(body)
}

function decodeSnapshot(buf: Buffer, start: number, end: number): PersistedState | null {
  try {
    const j = JSON.parse(buf.toString('utf8', start, end)) as Partial<SnapshotJson>
    if (j.format !== SNAPSHOT_FORMAT || !Number.isSafeInteger(j.cursor) || !Array.isArray(j.entries) || typeof j.counters !== 'object' || j.counters === null) return null
    const entries = new Map<number, PersistedEntry>()
    for (const row of j.entries) {
      const [seq, dc, due, subject] = row
      if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(dc) || typeof due !== 'number' || typeof subject !== 'string') return null
      entries.set(seq, { seq, dc, due, subject })
    }
    const c = j.counters
    return {
      cursor: j.cursor as number,
      entries,
      counters: { deadLettered: c.deadLettered ?? 0, terminated: c.terminated ?? 0, dropped: c.dropped ?? 0 },
    }
  } catch {
    return null
  }
}

/**
 * Applies one log record (not a snapshot) to the state; false when it does not decode. `afterDamage`:
 * records before this one were lost (a power cut writes pages back in any order), and with them
 * maybe DELIVER records of messages the cursor passed: the cursor stays where the whole records
 * put it, so the consumer reads those messages again rather than skipping them.
 */
function applyRecord(s: PersistedState, buf: Buffer, body: number, end: number, afterDamage: boolean): boolean {
  const len = end - body
  switch (buf[body]) {
    case T_DELIVER: {
      if (len < 23) return false
      const seq = buf.readDoubleLE(body + 1)
      const dc = buf.readUInt32LE(body + 9)
      const due = buf.readDoubleLE(body + 13)
      const n = buf.readUInt16LE(body + 21)
      if (len !== 23 + n) return false
      if (afterDamage && seq >= s.cursor) return true
      s.entries.set(seq, { seq, dc, due, subject: buf.toString('utf8', body + 23, body + 23 + n) })
      if (seq >= s.cursor) s.cursor = seq + 1 // records of one batch are in order: everything before was logged too
      return true
    }
    case T_DONE: {
      if (len !== 10) return false
      const seq = buf.readDoubleLE(body + 1)
      const kind = buf[body + 9]
      if (!s.entries.delete(seq)) return true
      if (kind === DONE_CODES.term) { s.counters.deadLettered++; s.counters.terminated++ }
      else if (kind === DONE_CODES.deadLetter) s.counters.deadLettered++
      else if (kind === DONE_CODES.dropped) s.counters.dropped++
      return true
    }
    case T_CURSOR: {
      if (len !== 9) return false
      if (!afterDamage) s.cursor = Math.max(s.cursor, buf.readDoubleLE(body + 1))
      return true
    }
    case T_DUE: {
      if (len !== 17) return false
      const e = s.entries.get(buf.readDoubleLE(body + 1))
      if (e !== undefined) e.due = buf.readDoubleLE(body + 9)
      return true
    }
    default:
      return false
  }
}

export class ConsumerStateFile {
  readonly path: string
  readonly #dir: string
  readonly #log: JournalLog | null
  /** Failures repeat (a full disk fails every write and every retry): one line per cause per 10 s, with the count. */
  readonly #failures: LogLimiter | null
  readonly #syncInterval: number
  readonly #compactMin: number
  readonly #compactRatio: number
  readonly #onWrite: (() => void) | null
  #fd = -1
  /** Bytes of the log file (where the next write goes). */
  #size = 0
  #snapshotBytes = 0
  #batch = new FrameWriter()
  #writeScheduled = false
  #syncTimer: NodeJS.Timeout | null = null
  #unsynced = false
  #syncing: Promise<void> | null = null
  /** Batches written while a compaction runs, to append to the new file before it replaces the old. */
  #tail: Buffer[] | null = null
  #compaction: Promise<void> | null = null
  #needsRewrite = false
  /** The last write, sync or rewrite failure, until a rewrite succeeds. */
  #failure: EdgebusError | null = null
  #retryTimer: NodeJS.Timeout | null = null
  readonly #ops: StateFileOps
  #closed = false
  /** close() began: no new compaction. */
  #closing = false
  #source: (() => PersistedState) | null = null
  /** Writes done (for info and tests). */
  writes = 0
  compactions = 0

  private constructor(path: string, opts: ConsumerStateOptions) {
    this.path = path
    this.#dir = dirname(path)
    this.#log = opts.log ?? null
    this.#failures = this.#log !== null ? new LogLimiter(this.#log) : null
    this.#syncInterval = opts.syncIntervalMs ?? 100
    this.#compactMin = opts.compactMinBytes ?? 256 * 1024
    this.#compactRatio = opts.compactRatio ?? 4
    this.#onWrite = opts.onWrite ?? null
    this.#ops = { ...nodeOps, ...opts.fileOps }
  }

  /**
   * Opens the state file at `path`: the state it holds (null when there is none, or it was set
   * aside), with what recovery did. The caller sets its snapshot source (attach) and, when the
   * state is null or `report.rewrite` is set, calls rewriteSync before anything else.
   */
  static open(path: string, opts: ConsumerStateOptions = {}): { file: ConsumerStateFile; state: PersistedState | null; report: StateLoadReport } {
    const f = new ConsumerStateFile(path, opts)
    const report: StateLoadReport = { path, bytes: 0, records: 0, corrupt: [], tornBytes: 0, setAside: null, rewrite: false }
    try {
      if (!fs.existsSync(f.#dir)) {
        fs.mkdirSync(f.#dir, { recursive: true })
        syncDirSync(dirname(f.#dir))
      }
      fs.rmSync(`${path}.tmp`, { force: true })
    } catch (err) {
      throw ioError(err, 'open directory', f.#dir)
    }
    let buf: Buffer
    try {
      buf = fs.readFileSync(path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { file: f, state: null, report }
      throw ioError(err, 'read', path)
    }
    report.bytes = buf.length
    const state = f.#replay(buf, report)
    if (state === null) {
      f.#setAside(report)
      return { file: f, state: null, report }
    }
    try {
      f.#fd = fs.openSync(path, 'r+')
      if (report.tornBytes > 0) fs.ftruncateSync(f.#fd, f.#size)
    } catch (err) {
      throw ioError(err, 'open', path)
    }
    if (report.corrupt.length > 0) report.rewrite = true
    return { file: f, state, report }
  }

  #replay(buf: Buffer, report: StateLoadReport): PersistedState | null {
    if (buf.length < HEADER.length || !buf.subarray(0, HEADER.length).equals(HEADER)) return null
    let pos = HEADER.length
    const first = frameEnd(buf, pos, buf.length, FRAMES)
    if (first < 0 || buf[pos + FRAME_HEADER] !== T_SNAPSHOT) return null
    const state = decodeSnapshot(buf, pos + FRAME_HEADER + 1, first)
    if (state === null) return null
    this.#snapshotBytes = first - pos
    report.records = 1
    pos = first
    // records after damage must not move the cursor past what they cannot vouch for (a delivery
    // logged before the damage may have been lost with it)
    let prevEnd = pos
    let damaged = false
    const scan = scanFrames(buf, pos, buf.length, FRAMES, (body, end, at) => {
      if (at !== prevEnd) damaged = true // a damaged stretch lies before this frame
      prevEnd = end
      if (buf[body] === T_SNAPSHOT) {
        const s = decodeSnapshot(buf, body + 1, end)
        if (s !== null) { state.cursor = s.cursor; state.entries = s.entries; state.counters = s.counters }
      } else if (!applyRecord(state, buf, body, end, damaged)) {
        report.corrupt.push({ at, bytes: end - at })
        damaged = true
      }
      report.records++
    })
    report.corrupt.push(...scan.corrupt)
    report.corrupt.sort((a, b) => a.at - b.at) // in file order: damaged stretches and records that did not apply
    const validEnd = scan.validEnd
    report.tornBytes = buf.length - validEnd
    this.#size = validEnd
    if (report.corrupt.length > 0) {
      this.#log?.warn({ code: 'ECONSUMER_CORRUPT', path: this.path, corrupt: report.corrupt }, 'consumer state: damaged records skipped')
    }
    if (report.tornBytes > 0) this.#log?.warn({ code: 'ECONSUMER_CORRUPT', path: this.path, bytesCut: report.tornBytes }, 'consumer state: torn tail cut')
    return state
  }

  #setAside(report: StateLoadReport): void {
    let to = `${this.path}.damaged`
    for (let n = 1; fs.existsSync(to); n++) to = `${this.path}.damaged.${n}`
    try {
      fs.renameSync(this.path, to)
      report.setAside = to
    } catch (err) {
      throw ioError(err, 'set aside', this.path)
    }
    this.#log?.error({ code: 'ECONSUMER_CORRUPT', path: this.path, renamedTo: to }, 'consumer state unreadable: set aside; the consumer starts over from the first stored message')
  }

  /** Where compaction and rewrites take the state from. */
  attach(source: () => PersistedState): void {
    this.#source = source
  }

  get bytes(): number {
    return this.#size
  }

  // --- records -------------------------------------------------------------------------------

  deliver(seq: number, dc: number, due: number, subject: string): void {
    const n = Buffer.byteLength(subject, 'utf8')
    const w = this.#batch
    const b = w.begin(23 + n)
    w.buf[b] = T_DELIVER
    w.buf.writeDoubleLE(seq, b + 1)
    w.buf.writeUInt32LE(dc, b + 9)
    w.buf.writeDoubleLE(due, b + 13)
    w.buf.writeUInt16LE(n, b + 21)
    w.buf.write(subject, b + 23, n, 'utf8')
    w.end(b)
    this.#schedule()
  }

  done(seq: number, kind: DoneKind): void {
    const w = this.#batch
    const b = w.begin(10)
    w.buf[b] = T_DONE
    w.buf.writeDoubleLE(seq, b + 1)
    w.buf[b + 9] = DONE_CODES[kind]
    w.end(b)
    this.#schedule()
  }

  cursor(next: number): void {
    const w = this.#batch
    const b = w.begin(9)
    w.buf[b] = T_CURSOR
    w.buf.writeDoubleLE(next, b + 1)
    w.end(b)
    this.#schedule()
  }

  due(seq: number, due: number): void {
    const w = this.#batch
    const b = w.begin(17)
    w.buf[b] = T_DUE
    w.buf.writeDoubleLE(seq, b + 1)
    w.buf.writeDoubleLE(due, b + 9)
    w.end(b)
    this.#schedule()
  }

  #schedule(): void {
    if (this.#writeScheduled || this.#closed) return
    this.#writeScheduled = true
    setImmediate(this.#onImmediate)
  }

  readonly #onImmediate = (): void => {
    this.#writeScheduled = false
    if (!this.#closed) this.flushSync()
  }

  // --- writing -------------------------------------------------------------------------------

  /** Writes the records of this turn now (one pwrite). */
  flushSync(): void {
    const w = this.#batch
    if (this.#fd < 0) return
    if (this.#needsRewrite) {
      // an earlier write or sync failed: the log may miss records; a snapshot covers them and this batch
      if (this.#compaction === null && this.#retryTimer === null) this.#repair()
      return
    }
    if (w.len === 0) return
    const len = w.len
    w.len = 0
    try {
      writeAllSync(this.#fd, w.buf, len, this.#size, this.#ops)
    } catch (err) {
      try { fs.ftruncateSync(this.#fd, this.#size) } catch { /* the rewrite replaces the file */ }
      this.#failures?.error(`ECONSUMER_IO:write:${this.path}`, { code: 'ECONSUMER_IO', path: this.path, err: String(err) }, 'consumer state write failed; the state will be rewritten')
      this.#failed(err)
      return
    }
    this.#size += len
    this.writes++
    if (this.#tail !== null) this.#tail.push(Buffer.from(w.buf.subarray(0, len)))
    if (w.buf.length > 1 << 20) w.buf = Buffer.allocUnsafe(4096)
    this.#onWrite?.()
    this.#unsynced = true
    this.#scheduleSync()
    if (this.#compaction === null && !this.#closing && this.#overThreshold()) {
      this.#compaction = this.#compact().finally(() => {
        this.#compaction = null
        // a write that failed meanwhile is in neither the snapshot nor the tail: repair now
        if (this.#needsRewrite && !this.#closed) this.#failed()
      })
    }
  }

  #overThreshold(): boolean {
    return this.#size > Math.max(this.#compactMin, this.#compactRatio * this.#snapshotBytes)
  }

  #scheduleSync(): void {
    if (this.#syncTimer !== null || this.#syncing !== null || this.#closed) return
    this.#syncTimer = setTimeout(this.#onSyncTimer, this.#syncInterval)
    this.#syncTimer.unref()
  }

  readonly #onSyncTimer = (): void => {
    this.#syncTimer = null
    void this.#sync()
  }

  /** fdatasync of what was written so far (one at a time). */
  #sync(): Promise<void> {
    if (this.#syncing !== null) return this.#syncing.then(() => this.#sync())
    if (!this.#unsynced || this.#fd < 0) return Promise.resolve()
    this.#unsynced = false
    const fd = this.#fd
    let finished = false
    const syncing = new Promise<void>((resolve) => {
      this.#ops.fdatasync(fd, (err) => {
        finished = true
        this.#syncing = null
        if (err) {
          this.#failures?.error(`ECONSUMER_IO:sync:${this.path}`, { code: 'ECONSUMER_IO', path: this.path, err: String(err) }, 'consumer state sync failed; the state will be rewritten')
          this.#failed(err)
        }
        if (this.#unsynced) this.#scheduleSync()
        resolve()
      })
    })
    if (!finished) this.#syncing = syncing // (a callback made at once has already cleared it)
    return syncing
  }

  /** Why the state cannot be written now, or null while it can (acknowledgements are then only in memory). */
  get failure(): EdgebusError | null {
    return this.#needsRewrite ? this.#failure : null
  }

  /** A write or sync failed: rewrite the whole state now, and every second until it works. */
  #failed(err?: unknown): void {
    if (err !== undefined) this.#failure = ioError(err, 'write', this.path)
    this.#needsRewrite = true
    if (this.#compaction === null && this.#retryTimer === null) this.#repair()
  }

  #repair(): void {
    try {
      this.rewriteSync()
      this.#log?.info({ path: this.path }, 'consumer state rewritten after a failure')
    } catch (err) {
      this.#failure = err instanceof EdgebusError ? err : ioError(err, 'rewrite', this.path)
      this.#failures?.error(`ECONSUMER_IO:rewrite:${this.path}`, { code: 'ECONSUMER_IO', path: this.path, err: String(err) }, 'consumer state rewrite failed; retrying in 1 s')
      if (this.#closing) return
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = null
        if (!this.#closed && this.#needsRewrite) this.#repair()
      }, 1000)
      this.#retryTimer.unref()
    }
  }

  /** Replaces the log with a snapshot of the state now, synchronously and durably (open, creation, repair). */
  rewriteSync(): void {
    const src = this.#source
    if (src === null) throw new Error('consumer state: no snapshot source attached')
    const w = new FrameWriter()
    w.reserve(HEADER.length)
    HEADER.copy(w.buf, 0)
    w.len = HEADER.length
    encodeSnapshot(w, src())
    const tmp = `${this.path}.tmp`
    let fd = -1
    try {
      fd = fs.openSync(tmp, 'w')
      writeAllSync(fd, w.buf, w.len, 0, this.#ops)
      fs.fdatasyncSync(fd)
      fs.renameSync(tmp, this.path)
      syncDirSync(this.#dir)
    } catch (err) {
      if (fd >= 0) fs.closeSync(fd)
      fs.rmSync(tmp, { force: true })
      throw ioError(err, 'rewrite', this.path)
    }
    this.#swap(fd, w.len, w.len - HEADER.length)
    this.#batch.len = 0 // the snapshot holds everything the batch said
    this.#needsRewrite = false
    this.compactions++
  }

  /** Makes `fd` (a file just renamed over the log) the log. */
  #swap(fd: number, size: number, snapshotBytes: number): void {
    const old = this.#fd
    this.#fd = fd
    this.#size = size
    this.#snapshotBytes = snapshotBytes
    if (old >= 0) {
      // a sync may still run on the old descriptor: close it after (a closed number could be reused meanwhile)
      if (this.#syncing !== null) void this.#syncing.then(() => fs.close(old, () => {}))
      else fs.closeSync(old)
    }
  }

  async #compact(): Promise<void> {
    const src = this.#source
    if (src === null || this.#closed) return
    const w = new FrameWriter()
    w.reserve(HEADER.length)
    HEADER.copy(w.buf, 0)
    w.len = HEADER.length
    encodeSnapshot(w, src()) // the batch is empty here: flushSync just wrote it
    this.#tail = []
    const tmp = `${this.path}.tmp`
    let fd = -1
    try {
      fd = await new Promise<number>((resolve, reject) => fs.open(tmp, 'w', (err, d) => (err ? reject(err) : resolve(d))))
      const snap = w.buf.subarray(0, w.len)
      await new Promise<void>((resolve, reject) => fs.write(fd, snap, 0, snap.length, 0, (err) => (err ? reject(err) : resolve())))
      await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())))
      // from here on synchronously: no record can be written in between
      this.flushSync()
      const tail = Buffer.concat(this.#tail)
      writeAllSync(fd, tail, tail.length, w.len)
      // the tail's records may be synced in the old log already: renamed, this file must hold them as well
      if (tail.length > 0) fs.fdatasyncSync(fd)
      fs.renameSync(tmp, this.path)
      this.#tail = null
      this.#swap(fd, w.len + tail.length, w.len - HEADER.length)
      this.compactions++
    } catch (err) {
      this.#tail = null
      if (fd >= 0) fs.close(fd, () => {})
      fs.rm(tmp, { force: true }, () => {})
      this.#log?.warn({ code: 'ECONSUMER_IO', path: this.path, err: String(err) }, 'consumer state compaction failed; it will be tried again')
      return
    }
    this.#unsynced = true // the tail part
    this.#scheduleSync()
    fs.open(this.#dir, 'r', (err, dfd) => {
      if (err) return
      fs.fsync(dfd, () => fs.close(dfd, () => {}))
    })
  }

  /** Writes what is pending, syncs, closes. */
  async close(): Promise<void> {
    if (this.#closed || this.#closing) return
    this.#closing = true
    while (this.#compaction !== null) await this.#compaction
    this.flushSync()
    this.#closed = true
    if (this.#syncTimer !== null) clearTimeout(this.#syncTimer)
    this.#syncTimer = null
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer)
    this.#retryTimer = null
    if (this.#needsRewrite) this.#repair()
    else if (this.#overThreshold()) {
      try {
        this.rewriteSync()
      } catch (err) {
        // the log as it stands is whole and synced below: the next open reads it, only slower
        this.#log?.warn({ code: 'ECONSUMER_IO', path: this.path, err: String(err) }, 'consumer state compaction at close failed')
      }
    }
    await this.#sync()
    if (this.#fd >= 0) {
      try {
        fs.closeSync(this.#fd)
      } catch { /* closing: nothing more to do */ }
      this.#fd = -1
    }
  }
}
