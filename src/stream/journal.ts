import * as fs from 'node:fs'
import { join } from 'node:path'
import { EdgebusError } from '../core/errors.ts'
import { LogLimiter } from '../core/log-limiter.ts'
import { DuplicateWindow } from './dedupe.ts'
import { DirLock } from '../storage/dir-lock.ts'
import {
  claimedFrameLength, decodeRecord, decodeRecordInto, encodeRecord, frameCrcMatches, frameIsSupported, frameMsgId, frameSeq, frameSubject, frameTimestamp, maxEncodedSize,
  RECORD_MIN_BYTES, RecordView, type RecordInput, type StoredRecord,
} from './record.ts'
import { dropReason, refuseAppend, resolveLimits, worthCompacting, type RetentionDrops, type RetentionLimits, type StreamUsage } from './retention.ts'
import { FrameCursor, JournalSegment, journalIoError, nodeFileOps, parseSegmentFileName, segmentFileName, Step, syncDirectory, type JournalFileOps } from './segment.ts'
import { SequenceIndex } from './seq-index.ts'
import { SubjectTracker } from './subject-tracker.ts'
import { mkdirDurableSync } from '../core/fsync.ts'
import { Batch, BATCH_KEEP_BYTES, BATCH_START_BYTES } from './journal/group-commit.ts'
import { META_FILE, META_FORMAT, readMeta, writeMeta, writeMetaSync, type Meta } from './journal/meta.ts'
import { Appended, FsyncPolicies, positive, silentLog, type FsyncPolicy, type JournalLog, type JournalOptions, type RecoveryReport } from './journal/options.ts'
import { JournalReader, ReplayWalk } from './journal/reader.ts'
import { COMPACT_CHUNK_BYTES, SegmentAudit, SegmentEntry } from './journal/segment-entry.ts'
import { recoverSegment, setAside, type RecoveryContext } from './journal/recovery.ts'

export { Appended, FsyncPolicies, JournalReader }
export type { CorruptRecordReport, DamagedSegmentReport, FsyncPolicy, JournalLog, JournalOptions, RecoveryReport, TornTailReport } from './journal/options.ts'

/**
 * Journal: a stream's messages on disk, as a directory of segments (FORMAT.md).
 *
 *   const j = await Journal.open(dir, { fsync: 'batch', limits: { maxMsgs: 1e6 } })
 *   const { seq } = await j.append({ subject: 'sensors/t', payload })   // resolves once durable
 *   for (const rec of j.iterate(seq)) ...                               // replay
 *
 * Writing. Appends are numbered at once (gapless, in call order) and encoded into a batch buffer;
 * a batch goes to disk as ONE write followed, under fsync 'batch', by ONE fdatasync, and every
 * append in it resolves after that sync (group commit). A batch is sealed at the end of the
 * event-loop turn of its first append (or batchWindowMs later), when it reaches
 * maxBatchBytes/maxBatchRecords, or when the previous batch's sync ends: what piled up during a
 * sync goes in the next one, so batches grow with the load by themselves. 'always' writes and syncs
 * each append alone; 'none' resolves once write() returned (the OS cache has it). One batch is on
 * disk at a time, so records land in sequence order.
 *
 * API: open / append (a promise) or appendQueued (the sequence at once, `durable` per batch) /
 * read(seq) / iterate(from, to) and iterateAsync / seqForTime(ms) / removeBefore(seq) / purge /
 * applyRetention / compact / close, and the counters firstSeq, lastSeq, messages, bytes, firstTime,
 * lastTime. Retention (retention.ts), duplicate detection (dedupe.ts) and maxMsgsPerSubject
 * (subject-tracker.ts) are applied inside, from `limits`.
 *
 * Reading sees committed records only: written and, under the policy, synced; `lastSeq` is the
 * last of them. Readers never see a record that could still vanish in a crash the policy covers.
 *
 * Failure. A failed write or sync rejects the batch and every append queued behind it (their
 * sequences assumed it), cuts the segment back to its last committed record, and numbering
 * resumes at lastSeq + 1. After a failed sync the journal refuses appends (EJOURNAL_IO) until it
 * is reopened: after fdatasync fails, what the page cache holds can no longer be trusted.
 *
 * Recovery on open: a torn tail is cut back to the last whole record; a corrupt record inside a
 * segment is skipped and reported; a segment that cannot be read is renamed *.damaged and
 * reported with the sequences it held; indexes are rebuilt when missing or stale. The journal
 * always opens (unless its directory cannot be read). `recovery` reports what was done.
 *
 * Its parts (src/stream/journal/): options.ts (options, Appended, the recovery report),
 * group-commit.ts (the batch buffer), segment-entry.ts (a segment's bookkeeping and background
 * audit), reader.ts (replay walks), meta.ts (journal.meta and its high-water mark), recovery.ts
 * (one segment at open). Retention rules are retention.ts; this class holds the state they share.
 */

const JOURNAL_LOCK = { file: 'journal.lock', code: 'EJOURNAL_LOCKED', what: 'journal' } as const
const HEAD_CHUNK_BYTES = 64 * 1024
const noop = (): void => {}

const enum Walked { record, read, end }

export class Journal {
  readonly dir: string
  readonly fsync: FsyncPolicy
  readonly limits: RetentionLimits
  /** Messages retention removed since open, by limit (replaying the files on open does not count). */
  readonly drops: RetentionDrops = { maxAge: 0, maxMsgs: 0, maxBytes: 0, maxMsgsPerSubject: 0 }
  #open = false
  readonly recovery: RecoveryReport = { tornTails: [], corruptRecords: [], damagedSegments: [], indexesRebuilt: [], removedFiles: [], compacted: [] }
  readonly #ops: JournalFileOps
  readonly #clock: () => number
  readonly #log: JournalLog
  /** Failed appends (a full disk fails every batch): one line per cause per 10 s, with the count. */
  readonly #refusals: LogLimiter
  /** The last failed append, until a batch commits again. */
  #failure: EdgebusError | null = null
  readonly #window: number
  readonly #maxBatchBytes: number
  readonly #maxBatchRecords: number
  readonly #segmentBytes: number
  readonly #interval: number
  readonly #chunk: number
  readonly #verify: 'tail' | 'all'
  readonly #retains: boolean

  #segs: SegmentEntry[] = []
  /** The segment being written (the last one), or null until the first append creates one. */
  #active: SegmentEntry | null = null

  // committed state
  #lastSeq = 0
  #lastTime = 0
  #messages = 0
  #bytes = 0
  /** Explicit removals (removeBefore/purge) hide everything below this; persisted in journal.meta. */
  #floorSeq = 0
  /** The high-water mark journal.meta holds (see Meta). */
  #metaLastSeq = 0
  /** On open: the maxMsgsPerSubject journal.meta had. */
  #recoveredPerSubject = 0
  /** On open: records in the segments below journal.meta's firstSeq (logged once). */
  #hiddenByFloor = { count: 0, from: 0, to: 0 }

  // the head: the oldest live record, read through a cursor on the first segment
  #headCur: FrameCursor | null = null
  #headEntry: SegmentEntry | null = null
  #headLoaded = false
  #headSeq = 0
  #headTime = 0
  #headSize = 0
  #headSubject = ''

  // the write path
  #nextSeq = 1
  #lastAssignedTime = 0
  #pendingCount = 0
  #pendingBytes = 0
  /** Bytes the active segment will hold once every accepted append is written. */
  #tailBytes = 0
  #fill: Batch | null = null
  #queue: Batch[] = []
  /** The batch being written and synced. */
  #writing: Batch | null = null
  #pool: Batch[] = []
  #pumping = false
  #timer: NodeJS.Timeout | NodeJS.Immediate | null = null
  #lock: Promise<unknown> = Promise.resolve()
  #broken: EdgebusError | null = null
  #closed = false
  #closing: Promise<void> | null = null
  readonly #usage: StreamUsage = { messages: 0, bytes: 0 }

  #tracker: SubjectTracker | null
  #dedupe: DuplicateWindow | null
  #compactWanted = new Set<SegmentEntry>()
  #compactRunning = false
  #corruptSeen = new Set<string>()
  #metaChain: Promise<void> = Promise.resolve()
  #dirLock: DirLock | null = null

  private constructor(dir: string, opts: JournalOptions) {
    this.dir = dir
    this.fsync = opts.fsync ?? 'batch'
    if (!FsyncPolicies.includes(this.fsync)) {
      throw new EdgebusError('ECONFIG_INVALID', `fsync must be one of ${FsyncPolicies.join(', ')}`, { key: 'fsync', value: this.fsync })
    }
    this.limits = resolveLimits(opts.limits)
    this.#ops = { ...nodeFileOps, ...opts.fileOps }
    this.#clock = opts.clock ?? Date.now
    this.#log = opts.log ?? silentLog
    this.#refusals = new LogLimiter(this.#log)
    this.#window = positive('batchWindowMs', opts.batchWindowMs ?? 0, true)
    this.#maxBatchBytes = positive('maxBatchBytes', opts.maxBatchBytes ?? 1 << 20)
    this.#maxBatchRecords = this.fsync === 'always' ? 1 : positive('maxBatchRecords', opts.maxBatchRecords ?? 10_000)
    this.#segmentBytes = positive('segmentBytes', opts.segmentBytes ?? 64 << 20)
    this.#interval = positive('indexIntervalBytes', opts.indexIntervalBytes ?? 8 * 1024)
    this.#chunk = positive('readChunkBytes', opts.readChunkBytes ?? 1 << 20)
    this.#verify = opts.verify ?? 'tail'
    const l = this.limits
    this.#retains = l.maxMsgs > 0 || l.maxBytes > 0 || l.maxAge > 0
    this.#tracker = null // built by #recover, after the head is placed
    this.#dedupe = l.duplicateWindow > 0 ? new DuplicateWindow(l.duplicateWindow) : null
  }

  /** Opens (creating if needed) the journal in `dir`, recovering whatever a crash left. */
  static async open(dir: string, opts: JournalOptions = {}): Promise<Journal> {
    const j = new Journal(dir, opts)
    try {
      await j.#recover()
      j.#open = true
    } catch (err) {
      for (const e of j.#segs) e.file.close()
      j.#dirLock?.release()
      j.#closed = true
      throw err
    }
    return j
  }

  // --- state ---------------------------------------------------------------------------------

  /** The oldest stored sequence; lastSeq + 1 when the journal is empty. */
  get firstSeq(): number { return this.#headLoaded ? this.#headSeq : this.#lastSeq + 1 }
  /** The newest committed sequence (0 before the first append ever). */
  get lastSeq(): number { return this.#lastSeq }
  /** Live messages (committed, not removed or superseded). */
  get messages(): number { return this.#messages }
  /** Their bytes on disk (whole frames). */
  get bytes(): number { return this.#bytes }
  /** Timestamp of the oldest live message, 0 when empty. */
  get firstTime(): number { return this.#headLoaded ? this.#headTime : 0 }
  /** Timestamp of the newest committed message, 0 before the first. */
  get lastTime(): number { return this.#lastTime }
  /** Bytes of all segment files (live records, records waiting for segment deletion or compaction). */
  get diskBytes(): number {
    let n = 0
    for (const e of this.#segs) n += e.file.size
    return n
  }
  get segmentCount(): number { return this.#segs.length }
  /** Why appends fail now (EJOURNAL_FULL, EJOURNAL_IO), or null while they work. */
  get failure(): EdgebusError | null { return this.#broken ?? this.#failure }
  /** Appends accepted but not yet committed. */
  get pending(): number { return this.#pendingCount }
  /** Subjects with live messages, when maxMsgsPerSubject is set (else -1: not tracked). */
  get subjects(): number { return this.#tracker?.subjects ?? -1 }
  get closed(): boolean { return this.#closed }

  // --- appending -----------------------------------------------------------------------------

  /** Appends a record; resolves once it is durable under the fsync policy (see Appended). */
  append(rec: RecordInput): Promise<Appended> {
    let a: Appended
    try {
      a = this.appendQueued(rec)
    } catch (err) {
      return Promise.reject(err)
    }
    return a.durable.then(() => a)
  }

  /**
   * Appends a record and returns at once with its sequence; `durable` settles when the batch does.
   * Throws (synchronously) ESTREAM_LIMIT, ERECORD_INVALID, EJOURNAL_CLOSED or, after a failed
   * sync, EJOURNAL_IO. This is the allocation-light form for a server acking many publishes.
   */
  appendQueued(rec: RecordInput): Appended {
    if (this.#closed || this.#closing !== null) throw new EdgebusError('EJOURNAL_CLOSED', `journal ${this.dir} is closed`, { dir: this.dir })
    if (this.#broken !== null) throw this.#broken
    const now = this.#clock()
    const msgId = rec.msgId
    if (this.#dedupe !== null && msgId != null) {
      const seen = this.#dedupe.lookup(msgId, now)
      if (seen !== null) return new Appended(seen.seq, seen.timestamp, true, this.#durableFor(seen.seq))
    }
    let ts = rec.timestamp ?? Math.floor(now)
    if (!Number.isSafeInteger(ts) || ts < 0) throw new EdgebusError('ERECORD_INVALID', 'record timestamp must be a non-negative integer (ms)', { timestamp: ts })
    if (ts < this.#lastAssignedTime) ts = this.#lastAssignedTime // timestamps never go backwards: seqForTime relies on it

    let batch = this.#fill
    if (batch === null) batch = this.#newFill()
    batch.reserve(maxEncodedSize(rec))
    const seq = this.#nextSeq
    const len = encodeRecord(batch.buf, batch.len, seq, ts, rec)
    if (this.limits.maxBytes > 0 || this.limits.discard === 'new') {
      this.#usage.messages = this.#messages + this.#pendingCount
      this.#usage.bytes = this.#bytes + this.#pendingBytes
      const tracker = this.#tracker
      if (tracker !== null && tracker.countOf(rec.subject) >= tracker.limit) {
        // this append will supersede one of its subject's records: it needs no room for that one
        // (bytes approximately: the oldest committed one's size)
        this.#usage.messages--
        this.#usage.bytes -= tracker.oldestSize(rec.subject)
      }
      const refusal = refuseAppend(this.limits, this.#usage, len)
      if (refusal !== null) throw refusal
    }
    if (this.#tailBytes > 0 && this.#tailBytes + len > this.#segmentBytes) {
      // this record opens a new segment; a batch writes to one segment only
      if (batch.count > 0) {
        const prev = batch
        this.#seal()
        batch = this.#newFill()
        batch.reserve(len)
        prev.buf.copy(batch.buf, 0, prev.len, prev.len + len)
      }
      batch.newSegment = true
      this.#tailBytes = 0
    }
    if (batch.count === 0) batch.firstSeq = seq
    batch.push(ts, len, rec.subject)
    this.#nextSeq = seq + 1
    this.#lastAssignedTime = ts
    this.#tailBytes += len
    this.#pendingCount++
    this.#pendingBytes += len
    if (this.#dedupe !== null && msgId != null) this.#dedupe.add(msgId, seq, ts)

    if (batch.len >= this.#maxBatchBytes || batch.count >= this.#maxBatchRecords) this.#seal()
    else if (this.#timer === null && !this.#pumping) this.#armTimer()
    return new Appended(seq, ts, false, batch.promise)
  }

  /** The promise that settles when `seq` is durable (a duplicate's original may still be on its way). */
  #durableFor(seq: number): Promise<void> {
    if (seq <= this.#lastSeq) return RESOLVED
    const w = this.#writing
    if (w !== null && seq >= w.firstSeq && seq < w.firstSeq + w.count) return w.promise
    for (const b of this.#queue) if (seq >= b.firstSeq && seq < b.firstSeq + b.count) return b.promise
    return this.#fill?.promise ?? RESOLVED
  }

  #newFill(): Batch {
    const b = this.#pool.pop() ?? new Batch(this.fsync === 'always' ? 512 : BATCH_START_BYTES)
    b.reset()
    this.#fill = b
    return b
  }

  #armTimer(): void {
    this.#timer = this.#window > 0 ? setTimeout(this.#onTimer, this.#window) : setImmediate(this.#onTimer)
  }

  readonly #onTimer = (): void => {
    this.#timer = null
    this.#seal()
  }

  #clearTimer(): void {
    const t = this.#timer
    if (t === null) return
    this.#timer = null
    // a Timeout has refresh(), an Immediate does not
    if ('refresh' in t) clearTimeout(t)
    else clearImmediate(t)
  }

  /** Moves the filling batch to the write queue. */
  #seal(): void {
    const b = this.#fill
    this.#clearTimer()
    if (b === null || b.count === 0) return
    this.#fill = null
    this.#queue.push(b)
    this.#kick()
  }

  #kick(): void {
    if (this.#pumping || this.#queue.length === 0) return
    this.#pumping = true
    void this.#withLock(this.#pumpOne)
  }

  readonly #pumpOne = async (): Promise<void> => {
    const b = this.#queue.shift()
    if (b !== undefined) {
      this.#writing = b
      await this.#write(b)
      this.#writing = null
    }
    this.#pumping = false
    if (this.#queue.length > 0) this.#kick()
    else if (this.#fill !== null && this.#fill.count > 0) this.#seal() // what piled up during the sync goes now
  }

  /** Runs fn when nothing else holds the journal's files (writes, compaction, purge, close run one at a time). */
  #withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn)
    this.#lock = run.then(noop, noop)
    return run
  }

  async #write(b: Batch): Promise<void> {
    let entry: SegmentEntry | null = null // the segment written to, once known: what a failure rolls back
    let created = false
    let pre = 0
    try {
      const active = this.#active
      if (b.newSegment || active === null) {
        const seg = JournalSegment.create(this.dir, b.firstSeq, this.#ops)
        if (active !== null) {
          this.#writeIndex(active)
          this.#noteFirstSeq()
          if (worthCompacting(active.deadBytes, active.file.size, this.#segmentBytes)) this.#compactWanted.add(active)
        }
        entry = new SegmentEntry(seg, new SequenceIndex(this.#interval))
        this.#segs.push(entry)
        this.#active = entry
        created = true
      } else {
        entry = active
      }
      pre = entry.file.size
      await entry.file.append(b.buf, 0, b.len)
      if (this.fsync !== 'none') {
        await entry.file.sync()
        if (created) await syncDirectory(this.dir) // the new file's name must survive a power loss too
      }
    } catch (err) {
      this.#fail(b, err, entry, pre, created)
      return
    }
    this.#commit(b, entry, pre)
  }

  /**
   * The batch is durable: its records become visible one by one, each followed by the retention
   * rules, exactly as if they had been appended alone (so what is kept never depends on how appends
   * happened to be batched, and a reopen, which replays the same rules, finds the same).
   */
  #commit(b: Batch, entry: SegmentEntry, pre: number): void {
    const idx = entry.index
    const n = b.count
    const now = this.#retains ? this.#clock() : 0
    let pos = pre
    for (let i = 0; i < n; i++) {
      const seq = b.firstSeq + i
      const size = b.sizes[i] as number
      const time = b.times[i] as number
      idx.add(seq, pos, time, size)
      pos += size
      entry.file.readableEnd = pos
      this.#lastSeq = seq
      this.#lastTime = time
      this.#admit(seq, size, b.subjects[i] as string, now)
    }
    this.#pendingCount -= n
    this.#pendingBytes -= b.len
    if (this.#failure !== null) {
      this.#log.info({ dir: this.dir, code: this.#failure.code }, 'journal appends work again')
      this.#failure = null
    }
    b.resolve()
    for (let i = 0; i < n; i++) b.subjects[i] = '' // drop references to the callers' strings
    if (b.buf.length <= BATCH_KEEP_BYTES && this.#pool.length < 4) this.#pool.push(b)
    if (this.#compactWanted.size > 0) this.#scheduleCompaction()
  }

  #fail(b: Batch, err: unknown, entry: SegmentEntry | null, pre: number, created: boolean): void {
    const error = journalIoError(err, 'append', entry?.file.path ?? this.dir)
    const failedOp = error.detail['op']
    try {
      if (entry !== null && created) {
        entry.file.close()
        fs.rmSync(entry.file.path, { force: true })
        this.#segs.pop()
        this.#active = this.#segs[this.#segs.length - 1] ?? null
      } else if (entry !== null && !(failedOp === 'write' && error.detail['cutBack'] === true)) {
        entry.file.truncate(pre)
      }
    } catch (cutErr) {
      this.#broken = journalIoError(cutErr, 'roll back', entry?.file.path ?? this.dir)
    }
    if (failedOp === 'fdatasync' || failedOp === 'fsync directory') this.#broken ??= error
    // every later append assumed this batch: reject them all and number again from the last commit
    const rejected: Batch[] = [b, ...this.#queue]
    if (this.#fill !== null) rejected.push(this.#fill)
    this.#queue = []
    this.#fill = null
    this.#clearTimer()
    let count = 0
    for (const r of rejected) {
      count += r.count
      r.reject(error)
    }
    this.#nextSeq = this.#lastSeq + 1
    this.#lastAssignedTime = this.#lastTime
    this.#pendingCount = 0
    this.#pendingBytes = 0
    this.#tailBytes = this.#active?.file.size ?? 0
    this.#dedupe?.forgetAbove(this.#lastSeq)
    this.#failure = error
    this.#refusals.error(error.code, { code: error.code, dir: this.dir, rejected: count, detail: error.detail, broken: this.#broken !== null },
      `journal append failed: ${error.message}`)
  }

  // --- the head and retention ----------------------------------------------------------------

  /** Moves the head to the first live record at or after the cursor (dropping emptied segments). */
  #loadHead(): void {
    this.#headLoaded = false
    const tracker = this.#tracker
    for (;;) {
      let cur = this.#headCur
      if (cur === null || this.#headEntry === null) {
        const e = this.#segs[0]
        if (e === undefined) return
        cur = this.#headCur = new FrameCursor(e.file, 0, e.baseSeq - 1, HEAD_CHUNK_BYTES, false)
        this.#headEntry = e
      }
      const entry = this.#headEntry
      let step: Step
      try {
        step = cur.step()
        if (step === Step.need) { cur.fill(); continue }
      } catch (err) {
        this.#log.error({ code: 'EJOURNAL_IO', segment: entry.file.path, err: String(err) }, 'journal cannot read its oldest segment')
        return
      }
      if (step === Step.frame) {
        const seq = cur.frameSeq
        const subject = tracker !== null ? frameSubject(cur.buf, cur.frameOff) : ''
        const live = tracker === null || tracker.isLive(subject, seq)
        if (seq < this.#floorSeq) {
          if (live) this.#uncount(subject, seq, cur.frameLen)
          if (!this.#open) {
            const h = this.#hiddenByFloor
            if (h.count++ === 0) h.from = seq
            h.to = seq
          }
          continue
        }
        if (!live) continue
        this.#headLoaded = true
        this.#headSeq = seq
        this.#headTime = frameTimestamp(cur.buf, cur.frameOff)
        this.#headSize = cur.frameLen
        this.#headSubject = subject
        return
      }
      if (step === Step.corrupt || step === Step.torn) { this.#noteCorrupt(entry, cur); continue }
      if (step === Step.unsupported) {
        // records of a newer format (recovery sets such segments aside; this one had a valid index): keep it, stop here
        this.#log.error({ code: 'EJOURNAL_CORRUPT', segment: entry.file.path, at: cur.framePos }, 'journal met records of a newer format')
        return
      }
      // the end of this segment: on to the next, dropping this one (everything in it is gone) —
      // unless it is the one being written, or not all of it is visible yet (recovery replay)
      if (entry === this.#active || entry === this.#segs[this.#segs.length - 1] || entry.file.readableEnd < entry.file.size) return
      this.#dropSegment(entry)
      this.#headCur = null
      this.#headEntry = null
    }
  }

  /** A committed record joins the live ones: per-subject limit, head, then the other limits. */
  #admit(seq: number, size: number, subject: string, now: number): void {
    this.#messages++
    this.#bytes += size
    const tracker = this.#tracker
    if (tracker !== null) {
      tracker.add(subject, seq, size)
      if (tracker.evictedSeq >= 0) this.#markDead(tracker.evictedSeq, tracker.evictedSize)
    }
    if (!this.#headLoaded || (tracker !== null && !tracker.isLive(this.#headSubject, this.#headSeq))) this.#loadHead()
    if (this.#retains) this.#enforce(now)
  }

  /** A live record leaves (retention or removeBefore). */
  #uncount(subject: string, seq: number, size: number): void {
    this.#messages--
    this.#bytes -= size
    if (this.#tracker !== null) this.#tracker.remove(subject, seq)
  }

  /** A live record was superseded (maxMsgsPerSubject). */
  #markDead(seq: number, size: number): void {
    if (this.#open) this.drops.maxMsgsPerSubject++
    this.#messages--
    this.#bytes -= size
    const e = this.#entryFor(seq)
    if (e === null) return
    e.dead++
    e.deadBytes += size
    if (e !== this.#active && worthCompacting(e.deadBytes, e.file.size, this.#segmentBytes)) this.#compactWanted.add(e)
  }

  /** Deletes a segment every record of which is gone (before firstSeq). */
  #dropSegment(e: SegmentEntry): void {
    const i = this.#segs.indexOf(e)
    if (i !== -1) this.#segs.splice(i, 1)
    e.removed = true
    this.#compactWanted.delete(e)
    e.file.close()
    const seg = e.file.path
    const idx = join(this.dir, segmentFileName(e.baseSeq, '.idx'))
    fs.unlink(seg, (err) => {
      if (err) this.#log.warn({ code: 'EJOURNAL_IO', path: seg, err: err.message }, 'journal could not delete an old segment')
      fs.unlink(idx, noop)
    })
  }

  #enforce(now: number): void {
    this.#usage.messages = this.#messages
    this.#usage.bytes = this.#bytes
    let reason: keyof RetentionDrops | null
    while (this.#headLoaded && (reason = dropReason(this.limits, this.#usage, this.#headTime, now)) !== null) {
      if (this.#open) this.drops[reason]++
      this.#uncount(this.#headSubject, this.#headSeq, this.#headSize)
      this.#loadHead()
      this.#usage.messages = this.#messages
      this.#usage.bytes = this.#bytes
    }
  }

  /**
   * Applies maxAge (and the other limits) now. Commits apply them too; the stream layer calls this
   * on a timer so old messages leave while nothing is appended. Returns the messages removed.
   */
  applyRetention(): number {
    this.#checkOpen()
    const before = this.#messages
    if (this.#retains) this.#enforce(this.#clock())
    return before - this.#messages
  }

  /**
   * Removes every message below `seq` (logically at once; whole segments are deleted). Durable:
   * the new first sequence is recorded in journal.meta before this resolves. Returns the count removed.
   */
  async removeBefore(seq: number): Promise<number> {
    this.#checkOpen()
    if (!Number.isSafeInteger(seq)) throw new EdgebusError('ERECORD_INVALID', 'removeBefore needs an integer sequence', { seq })
    const before = this.#messages
    const target = Math.min(seq, this.#lastSeq + 1)
    if (target > this.#floorSeq) {
      this.#floorSeq = target
      if (this.#headLoaded && this.#headSeq < target) {
        this.#uncount(this.#headSubject, this.#headSeq, this.#headSize)
        this.#loadHead()
      }
    }
    const removed = before - this.#messages
    await this.#writeMeta()
    return removed
  }

  /**
   * Removes every committed message and deletes every segment file; numbering goes on from
   * lastSeq + 1. Appends still on their way are kept. Returns the count removed.
   */
  async purge(): Promise<number> {
    const removed = await this.removeBefore(this.#lastSeq + 1)
    await this.#withLock(async () => {
      const a = this.#active
      if (a === null || this.#closed || this.#headLoaded) return
      // the active segment holds only removed records: start afresh with the next append
      this.#active = null
      this.#tailBytes = this.#pendingBytes
      for (const b of this.#queue) b.newSegment = false
      if (this.#fill !== null) this.#fill.newSegment = false
      this.#headCur = null
      this.#headEntry = null
      this.#dropSegment(a)
    })
    return removed
  }

  // --- reading -------------------------------------------------------------------------------

  #entryFor(seq: number): SegmentEntry | null {
    const segs = this.#segs
    let lo = 0
    let hi = segs.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((segs[mid] as SegmentEntry).baseSeq <= seq) lo = mid + 1
      else hi = mid
    }
    return segs[lo - 1] ?? null
  }

  #isLive(seq: number, subject: string): boolean {
    return seq >= this.firstSeq && (this.#tracker === null || this.#tracker.isLive(subject, seq))
  }

  /** The record stored under `seq`, or null (removed, superseded, not yet committed, or corrupt). */
  read(seq: number): StoredRecord | null {
    this.#checkOpen()
    if (!Number.isSafeInteger(seq) || seq < this.firstSeq || seq > this.#lastSeq) return null
    const rec = this.#readFrame(seq)
    return rec !== null && this.#isLive(rec.seq, rec.subject) ? rec : null
  }

  /** The frame stored under `seq`, live or not. */
  #readFrame(seq: number): StoredRecord | null {
    const entry = this.#entryFor(seq)
    if (entry === null) return null
    const idx = entry.index
    const i = idx.floorBySeq(seq)
    if (i < 0) return null
    const start = idx.posAt(i)
    const end = i + 1 < idx.entries ? idx.posAt(i + 1) : entry.file.readableEnd
    // fast path: one read of the span, hop from frame to frame by their lengths, check the CRC of
    // the one wanted; anything unexpected falls back to the frame-by-frame checked walk below
    const buf = Buffer.allocUnsafe(end - start)
    const n = entry.file.readSync(buf, 0, buf.length, start)
    for (let p = 0; p + RECORD_MIN_BYTES <= n;) {
      const len = claimedFrameLength(buf, p)
      if (len < 0 || p + len > n) break
      const s = frameSeq(buf, p)
      if (s === seq) {
        if (frameCrcMatches(buf, p, len) && frameIsSupported(buf, p)) return decodeRecord(buf, p, len)
        break
      }
      if (s > seq) break
      p += len
    }
    const cur = new FrameCursor(entry.file, start, idx.seqAt(i) - 1, Math.max(end - start, 256), true)
    for (;;) {
      const step = cur.step()
      if (step === Step.frame) {
        if (cur.frameSeq < seq) continue
        if (cur.frameSeq > seq) return null
        return decodeRecord(cur.buf, cur.frameOff, cur.frameLen)
      }
      if (step === Step.need) cur.fill()
      else if (step === Step.corrupt || step === Step.torn) this.#noteCorrupt(entry, cur)
      else return null
    }
  }

  /**
   * Replays live records from `fromSeq` (default firstSeq) up to `toSeq` (default: the last one
   * committed while iterating), reading `readChunkBytes` at a time. Synchronous reads: for long
   * replays in a server prefer iterateAsync, or reader() for the fastest in-place visits.
   */
  *iterate(fromSeq = 0, toSeq = Infinity): Generator<StoredRecord, void, undefined> {
    const w = new ReplayWalk(fromSeq, toSeq, true)
    for (let r = this.#advance(w); r !== Walked.end; r = this.#advance(w)) {
      if (r === Walked.record) yield w.view.toRecord()
      else w.cur?.fill()
    }
  }

  /** The same, with reads on the thread pool. */
  async *iterateAsync(fromSeq = 0, toSeq = Infinity): AsyncGenerator<StoredRecord, void, undefined> {
    const w = new ReplayWalk(fromSeq, toSeq, true)
    for (let r = this.#advance(w); r !== Walked.end; r = this.#advance(w)) {
      if (r === Walked.record) yield w.view.toRecord()
      else await w.cur?.fillAsync()
    }
  }

  /**
   * A replay that hands each live record to a visitor as a RecordView over the read buffer (reused:
   * copy out what you keep), with synchronous reads. `read(visit)` goes on until the visitor returns
   * false (true from read: more may follow; call it again to go on from the next record) or the
   * records up to `toSeq` are done (false).
   */
  reader(fromSeq = 0, toSeq = Infinity): JournalReader {
    const w = new ReplayWalk(fromSeq, toSeq, false)
    return new JournalReader((visit) => {
      for (let r = this.#advance(w); r !== Walked.end; r = this.#advance(w)) {
        if (r === Walked.record) {
          if (!visit(w.view)) return true
        } else w.cur?.fill()
      }
      return false
    })
  }

  /** One step of a replay walk: the next live record decoded into w.view, a read the caller must do (w.cur.fill), or the end. */
  #advance(w: ReplayWalk): Walked {
    for (;;) {
      if (this.#closed) return Walked.end
      const last = Math.min(w.toSeq, this.#lastSeq)
      if (w.seq < this.firstSeq) w.seq = this.firstSeq
      if (w.seq > last) return Walked.end
      let cur = w.cur
      let entry = w.entry
      if (cur === null || entry === null || entry.removed || cur.segment !== entry.file) {
        entry = w.entry = this.#entryFor(w.seq)
        if (entry === null) return Walked.end
        const i = entry.index.floorBySeq(w.seq)
        cur = w.cur = i < 0
          ? new FrameCursor(entry.file, 0, entry.baseSeq - 1, this.#chunk, w.fresh)
          : new FrameCursor(entry.file, entry.index.posAt(i), entry.index.seqAt(i) - 1, this.#chunk, w.fresh)
      }
      const step = cur.step()
      if (step === Step.frame) {
        const s = cur.frameSeq
        if (s < w.seq) continue
        if (s > last) return Walked.end
        w.seq = s + 1
        const v = decodeRecordInto(cur.buf, cur.frameOff, cur.frameLen, w.view)
        if (this.#isLive(s, v.subject)) return Walked.record
      } else if (step === Step.need) {
        if (!cur.segment.closed) return Walked.read
        w.cur = null // removed or compacted meanwhile: find our place again
      } else if (step === Step.corrupt || step === Step.torn) {
        this.#noteCorrupt(entry, cur)
      } else {
        const next = this.#segs[this.#segs.indexOf(entry) + 1]
        if (next === undefined) return Walked.end
        if (w.seq < next.baseSeq) w.seq = next.baseSeq
        w.cur = null
      }
    }
  }

  /** The first sequence with a timestamp at or after `ms` (lastSeq + 1 when none). */
  seqForTime(ms: number): number {
    this.#checkOpen()
    if (!this.#headLoaded || ms > this.#lastTime) return this.#lastSeq + 1
    if (ms <= this.#headTime) return this.#headSeq
    // the last segment whose first record is before ms holds the answer (or it is the next one's first)
    const segs = this.#segs
    let lo = 0
    let hi = segs.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const idx = (segs[mid] as SegmentEntry).index
      if (idx.records === 0 || idx.firstTime < ms) lo = mid + 1
      else hi = mid
    }
    for (let k = Math.max(0, lo - 1); k < segs.length; k++) {
      const e = segs[k] as SegmentEntry
      if (e.index.records === 0) continue
      const i = e.index.floorByTime(ms)
      const cur = new FrameCursor(e.file, e.index.posAt(i), e.index.seqAt(i) - 1, HEAD_CHUNK_BYTES, false)
      for (;;) {
        const step = cur.step()
        if (step === Step.frame) {
          if (frameTimestamp(cur.buf, cur.frameOff) >= ms) return Math.max(cur.frameSeq, this.firstSeq)
        } else if (step === Step.need) cur.fill()
        else if (step === Step.corrupt || step === Step.torn) this.#noteCorrupt(e, cur)
        else break
      }
    }
    return this.#lastSeq + 1
  }

  #noteCorrupt(entry: SegmentEntry, cur: FrameCursor): void {
    const key = `${entry.baseSeq}:${cur.badStart}`
    if (this.#corruptSeen.has(key)) return
    this.#noteSpan(entry, cur)
    this.#recount(entry)
  }

  /**
   * A segment whose counts came from its index file turned out to hold a record that fails its
   * check: read it whole now and stop counting what cannot be served.
   */
  #recount(entry: SegmentEntry): void {
    if (!entry.unverified || this.#tracker !== null) return
    const audit = new SegmentAudit(entry)
    while (!audit.step((at) => this.#noteSpan(entry, at))) audit.cur.fill()
    this.#settleAudit(audit)
  }

  /**
   * After open, the segments trusted by their index are read too, a chunk at a time on the thread
   * pool (no stall), so `messages` soon never counts a record that fails its check, read or not.
   * With maxMsgsPerSubject the counts came from reading every record already.
   */
  #auditTrusted(): void {
    if (this.#tracker !== null) return
    const queue = this.#segs.filter((e) => e.unverified)
    if (queue.length === 0) return
    const gone = (e: SegmentEntry): boolean => e.removed || e.file.closed || !e.unverified || this.#closing !== null || this.#closed
    void (async () => {
      for (const e of queue) {
        if (gone(e)) continue
        const audit = new SegmentAudit(e)
        try {
          // reads on the thread pool, a chunk at a time: a slow card stalls no one
          while (!audit.step((at) => this.#noteSpan(e, at))) {
            await audit.cur.fillAsync()
            if (gone(e)) break
          }
          if (!gone(e)) this.#settleAudit(audit)
        } catch (err) {
          // removed meanwhile, or unreadable now (a read of it will say so): the counts stay as the index had them
          if (!gone(e)) this.#log.warn({ code: 'EJOURNAL_IO', segment: e.file.path, err: String(err) }, 'journal could not check a segment')
        }
        if (this.#closing !== null || this.#closed) return
      }
    })()
  }

  #noteSpan(entry: SegmentEntry, cur: FrameCursor): void {
    const key = `${entry.baseSeq}:${cur.badStart}`
    if (this.#corruptSeen.has(key)) return
    this.#corruptSeen.add(key)
    this.#log.warn({ code: 'EJOURNAL_CORRUPT', segment: entry.file.path, start: cur.badStart, end: cur.badEnd, afterSeq: cur.lastSeq, claimedSeq: cur.badClaimedSeq },
      'journal skipped a corrupt record')
  }

  /** The records an audit found unreadable leave the counts (those not below the first sequence by now). */
  #settleAudit(audit: SegmentAudit): void {
    const entry = audit.entry
    if (!entry.unverified) return
    entry.unverified = false
    const first = this.firstSeq
    let missing = 0
    for (const [from, to] of audit.gaps) if (to >= first) missing += to - Math.max(from, first) + 1
    if (missing === 0) return
    this.#messages -= missing
    this.#bytes = Math.max(0, this.#bytes - audit.badBytes)
    this.#log.warn({ code: 'EJOURNAL_CORRUPT', segment: entry.file.path, unreadable: missing, messages: this.#messages },
      'journal no longer counts the records of a segment that fail their check')
  }

  // --- compaction (maxMsgsPerSubject) --------------------------------------------------------

  #scheduleCompaction(): void {
    if (this.#compactRunning || this.#closing !== null || this.#closed) return
    this.#compactRunning = true
    void this.#withLock(async () => {
      try {
        for (const e of [...this.#compactWanted]) {
          this.#compactWanted.delete(e)
          if (!e.removed && e !== this.#active && !this.#closed) await this.#compactEntry(e)
        }
      } catch (err) {
        this.#log.warn({ code: (err as EdgebusError).code ?? 'EJOURNAL_IO', err: String(err) }, 'journal compaction failed; it will be tried again')
      } finally {
        this.#compactRunning = false
      }
    })
  }

  /**
   * Rewrites every sealed segment holding superseded records without them (they are invisible
   * already; this gives their disk space back). Runs on its own after commits when a segment is
   * at least half superseded. Returns the bytes reclaimed.
   */
  compact(): Promise<number> {
    this.#checkOpen()
    return this.#withLock(async () => {
      let reclaimed = 0
      for (const e of [...this.#segs]) {
        if (e.dead > 0 && e !== this.#active && !e.removed) reclaimed += await this.#compactEntry(e)
      }
      return reclaimed
    })
  }

  /** Copies a segment's live records to a new file and swaps it in (crash-safe: rename). */
  async #compactEntry(e: SegmentEntry): Promise<number> {
    const old = e.file
    const tmp = join(this.dir, segmentFileName(e.baseSeq, '.compact'))
    const fd = fs.openSync(tmp, 'w')
    const index = new SequenceIndex(this.#interval)
    const out = Buffer.allocUnsafe(COMPACT_CHUNK_BYTES)
    let outLen = 0
    let written = 0
    const flush = async (): Promise<void> => {
      let done = 0
      while (done < outLen) done += await this.#ops.write(fd, out, done, outLen - done, written + done)
      written += outLen
      outLen = 0
    }
    try {
      const cur = new FrameCursor(old, 0, e.baseSeq - 1, COMPACT_CHUNK_BYTES, false)
      for (;;) {
        const step = cur.step()
        if (step === Step.need) { await cur.fillAsync(); if (e.removed) throw new Error('segment removed'); continue }
        if (step === Step.corrupt || step === Step.torn) { this.#noteCorrupt(e, cur); continue }
        if (step !== Step.frame) break
        const seq = cur.frameSeq
        if (seq < this.firstSeq) continue
        if (this.#tracker !== null && !this.#tracker.isLive(frameSubject(cur.buf, cur.frameOff), seq)) continue
        if (outLen + cur.frameLen > out.length) await flush()
        if (cur.frameLen > out.length) {
          // a record bigger than the copy buffer goes straight from the read buffer
          let done = 0
          while (done < cur.frameLen) done += await this.#ops.write(fd, cur.buf, cur.frameOff + done, cur.frameLen - done, written + done)
          index.add(seq, written, frameTimestamp(cur.buf, cur.frameOff), cur.frameLen)
          written += cur.frameLen
          continue
        }
        index.add(seq, written + outLen, frameTimestamp(cur.buf, cur.frameOff), cur.frameLen)
        cur.buf.copy(out, outLen, cur.frameOff, cur.frameOff + cur.frameLen)
        outLen += cur.frameLen
      }
      await flush()
      await this.#ops.fdatasync(fd)
    } catch (err) {
      fs.closeSync(fd)
      fs.rmSync(tmp, { force: true })
      if (e.removed) return 0
      throw journalIoError(err, 'compact', old.path)
    }
    fs.closeSync(fd)
    if (e.removed) {
      fs.rmSync(tmp, { force: true })
      return 0
    }
    fs.rmSync(join(this.dir, segmentFileName(e.baseSeq, '.idx')), { force: true })
    fs.renameSync(tmp, old.path)
    await syncDirectory(this.dir)
    const fresh = JournalSegment.open(this.dir, e.baseSeq, this.#ops)
    const reclaimed = old.size - fresh.size
    e.file = fresh
    e.index = index
    e.dead = 0
    e.deadBytes = 0
    old.close()
    this.recovery.compacted.push(fresh.name)
    if (e === this.#active) this.#tailBytes = fresh.size + this.#pendingBytes
    if (e === this.#headEntry) this.#relocateHead()
    if (e !== this.#active) this.#writeIndex(e)
    this.#log.info({ segment: fresh.path, reclaimed }, 'journal compacted a segment')
    return reclaimed
  }

  /** After the head's segment was rewritten: a cursor just past the head record in the new file. */
  #relocateHead(): void {
    const e = this.#headEntry
    if (e === null) return
    if (!this.#headLoaded) {
      // nothing live: wait at the end of the new file
      this.#headCur = new FrameCursor(e.file, e.file.size, e.index.records > 0 ? e.index.lastSeq : e.baseSeq - 1, HEAD_CHUNK_BYTES, false)
      return
    }
    const i = e.index.floorBySeq(this.#headSeq)
    const cur = i < 0 ? new FrameCursor(e.file, 0, e.baseSeq - 1, HEAD_CHUNK_BYTES, false)
      : new FrameCursor(e.file, e.index.posAt(i), e.index.seqAt(i) - 1, HEAD_CHUNK_BYTES, false)
    this.#headCur = cur
    for (;;) {
      const step = cur.step()
      if (step === Step.need) cur.fill()
      else if (step !== Step.frame || cur.frameSeq >= this.#headSeq) return
    }
  }

  // --- files ---------------------------------------------------------------------------------

  /** Writes a sealed (or cleanly closed) segment's index beside it; best effort, it can be rebuilt. */
  #writeIndex(e: SegmentEntry): void {
    const path = join(this.dir, segmentFileName(e.baseSeq, '.idx'))
    try {
      fs.writeFileSync(path + '.tmp', e.index.encode(e.file.size))
      fs.renameSync(path + '.tmp', path)
    } catch (err) {
      this.#log.warn({ code: 'EJOURNAL_IO', path, err: String(err) }, 'journal could not write a segment index')
    }
  }

  /**
   * Records where the head is (limits moved it) in journal.meta, without waiting: done when a
   * segment is sealed and on close, so a reopen under other limits does not bring back records
   * the old limits removed before then.
   */
  #noteFirstSeq(): void {
    if (this.firstSeq <= this.#floorSeq && this.#lastSeq <= this.#metaLastSeq) return
    if (this.firstSeq > this.#floorSeq) this.#floorSeq = this.firstSeq
    this.#writeMeta().catch((err: unknown) => {
      this.#log.warn({ code: 'EJOURNAL_IO', dir: this.dir, err: String(err) }, 'journal could not record its first sequence')
    })
  }

  #writeMeta(): Promise<void> {
    const run = this.#metaChain.then(async () => {
      const meta = this.#meta()
      await writeMeta(this.dir, meta)
      this.#metaLastSeq = Math.max(this.#metaLastSeq, meta.lastSeq ?? 0)
    })
    this.#metaChain = run.catch(noop)
    return run
  }

  #meta(): Meta {
    return { format: META_FORMAT, firstSeq: Math.max(this.#floorSeq, 0), maxMsgsPerSubject: this.limits.maxMsgsPerSubject, lastSeq: Math.max(this.#lastSeq, this.#metaLastSeq) }
  }

  /** journal.meta written and synced now (recovery: before a segment is set aside). */
  #writeMetaSync(lastSeq: number): void {
    // the limit the segments were written under stays until recovery has applied it (see #recover)
    const meta = { ...this.#meta(), maxMsgsPerSubject: this.#recoveredPerSubject, lastSeq: Math.max(lastSeq, this.#metaLastSeq) }
    writeMetaSync(this.dir, meta)
    this.#metaLastSeq = meta.lastSeq
  }

  #checkOpen(): void {
    if (this.#closed) throw new EdgebusError('EJOURNAL_CLOSED', `journal ${this.dir} is closed`, { dir: this.dir })
  }

  // --- recovery ------------------------------------------------------------------------------

  async #recover(): Promise<void> {
    const dir = this.dir
    let names: string[]
    try {
      mkdirDurableSync(dir) // a new stream's directory must survive a power cut, not only its files
    } catch (err) {
      throw journalIoError(err, 'open directory', dir)
    }
    this.#dirLock = DirLock.acquire(dir, JOURNAL_LOCK)
    try {
      names = fs.readdirSync(dir)
    } catch (err) {
      throw journalIoError(err, 'open directory', dir)
    }
    const bases: number[] = []
    for (const name of names) {
      const base = parseSegmentFileName(name)
      if (base !== null) bases.push(base)
      else if (name.endsWith('.compact') || name.endsWith('.tmp')) {
        fs.rmSync(join(dir, name), { force: true })
        this.recovery.removedFiles.push(name)
      }
    }
    bases.sort((a, b) => a - b)
    const meta = readMeta(this.dir, this.#log)
    this.#floorSeq = meta?.firstSeq ?? 0
    this.#metaLastSeq = meta?.lastSeq ?? 0
    this.#recoveredPerSubject = meta?.maxMsgsPerSubject ?? this.limits.maxMsgsPerSubject
    let afterSeq = 0
    let seqFloor = 0
    const ctx = this.#recoveryContext()
    for (let k = 0; k < bases.length; k++) {
      const base = bases[k] as number
      const nextBase = bases[k + 1]
      const entry = recoverSegment(ctx, base, afterSeq, nextBase === undefined)
      if (typeof entry === 'string') {
        seqFloor = Math.max(seqFloor, setAside(ctx, base, nextBase, entry, afterSeq))
        continue
      }
      this.#segs.push(entry)
      if (entry.index.records > 0) afterSeq = entry.index.lastSeq
    }
    this.#active = this.#segs[this.#segs.length - 1] ?? null
    // never below the high-water mark: a sequence handed out once is never handed out again
    this.#lastSeq = Math.max(afterSeq, seqFloor, this.#floorSeq - 1, (this.#active?.baseSeq ?? 1) - 1, this.#metaLastSeq)
    if (meta !== null && meta.lastSeq !== undefined && meta.firstSeq > meta.lastSeq + 1) {
      this.#log.warn({ code: 'EJOURNAL_CORRUPT', path: join(dir, META_FILE), firstSeq: meta.firstSeq, lastSeq: meta.lastSeq },
        'journal.meta claims a first sequence beyond the last one it ever handed out: it is damaged; numbering goes on after the higher of the two')
    }
    this.#nextSeq = this.#lastSeq + 1
    for (const e of this.#segs) if (e.index.records > 0) this.#lastTime = e.index.lastTime
    this.#lastAssignedTime = this.#lastTime
    this.#tailBytes = this.#active?.file.size ?? 0

    const oldPerSubject = meta?.maxMsgsPerSubject ?? 0
    const newPerSubject = this.limits.maxMsgsPerSubject
    // superseded records have no tombstone: if the limit grew (or went), first compact them away under the old one
    const rebuildWith = oldPerSubject > 0 && (newPerSubject === 0 || oldPerSubject < newPerSubject) ? oldPerSubject : newPerSubject
    if (rebuildWith === 0) {
      // without per-subject eviction, the limits keep the newest records that fit: the totals and the head say it all
      for (const e of this.#segs) {
        this.#messages += e.index.records
        this.#bytes += e.index.recordBytes
      }
      this.#loadHead()
    } else {
      // with it, what the limits kept depends on the order of evictions: replay every record as it was committed
      this.#tracker = new SubjectTracker(rebuildWith)
      this.#replay()
      if (rebuildWith !== newPerSubject) {
        for (const e of [...this.#segs]) if (e.dead > 0 && !e.removed) await this.#compactEntry(e)
        this.#tracker = newPerSubject > 0 ? new SubjectTracker(newPerSubject) : null
        if (this.#tracker !== null) this.#rebuildTracker()
      }
      if (this.#headLoaded && this.#tracker !== null && !this.#tracker.isLive(this.#headSubject, this.#headSeq)) this.#loadHead()
    }
    if (this.#retains) this.#enforce(this.#clock())
    if (this.#dedupe !== null) this.#rebuildDedupe()
    this.#auditTrusted()
    const hidden = this.#hiddenByFloor
    if (hidden.count > 0) {
      // the rule after a purge, removeBefore or a limit (segments are not rewritten), so not a warning; but
      // said, once per open: a wrong journal.meta would hide messages without a word
      this.#log.info({ path: join(dir, META_FILE), firstSeq: this.#floorSeq, hidden: hidden.count, fromSeq: hidden.from, toSeq: hidden.to },
        'journal.meta\'s first sequence hides records still in the segments (removed by a purge, removeBefore or a limit before the restart; if they were not, journal.meta is wrong)')
    }
    try {
      await this.#writeMeta()
    } catch (err) {
      // a full disk must not keep the server from starting: the meta is written again at the next seal or close
      this.#log.warn({ code: (err as EdgebusError).code, dir, err: String(err) }, 'journal could not record its state on open')
    }
    const r = this.recovery
    if (r.tornTails.length + r.corruptRecords.length + r.damagedSegments.length > 0) {
      this.#log.warn({ dir, tornTails: r.tornTails, corrupt: r.corruptRecords, damaged: r.damagedSegments }, 'journal recovered from damage')
    }
    this.#log.info({ dir, firstSeq: this.firstSeq, lastSeq: this.#lastSeq, messages: this.#messages, segments: this.#segs.length,
      indexesRebuilt: r.indexesRebuilt.length }, 'journal open')
  }

  /** Opens one segment, with its index or by scanning it; a string says why it cannot be used. */
  /** The journal as recovery.ts sees it. */
  #recoveryContext(): RecoveryContext {
    return {
      dir: this.dir, ops: this.#ops, verify: this.#verify, interval: this.#interval, report: this.recovery, corruptSeen: this.#corruptSeen, log: this.#log,
      writeIndex: (e) => this.#writeIndex(e),
      writeMetaSync: (lastSeq) => this.#writeMetaSync(lastSeq),
      metaLastSeq: () => this.#metaLastSeq,
    }
  }

  /**
   * Recovery with maxMsgsPerSubject: admits every record again in order, as #commit did, with the
   * segments revealed to the head one record at a time. Age is applied once afterwards (it does
   * not depend on order).
   */
  #replay(): void {
    const segs = [...this.#segs]
    for (const e of segs) e.file.readableEnd = 0
    for (const e of segs) {
      const size = e.file.size
      const cur = new FrameCursor(e.file, 0, e.baseSeq - 1, COMPACT_CHUNK_BYTES, false, size)
      for (;;) {
        const step = cur.step()
        if (step === Step.need) { cur.fill(); continue }
        if (step === Step.corrupt || step === Step.torn) continue
        if (step !== Step.frame) break
        e.file.readableEnd = cur.pos
        this.#admit(cur.frameSeq, cur.frameLen, frameSubject(cur.buf, cur.frameOff), -Infinity)
      }
      e.file.readableEnd = size
    }
    if (!this.#headLoaded) this.#loadHead()
  }

  /** Rebuilds per-subject bookkeeping by reading the subject of every live record. */
  #rebuildTracker(): void {
    const tracker = this.#tracker
    if (tracker === null) return
    tracker.clear()
    for (const e of this.#segs) { e.dead = 0; e.deadBytes = 0 }
    const first = this.firstSeq
    for (const e of [...this.#segs]) {
      const cur = new FrameCursor(e.file, 0, e.baseSeq - 1, COMPACT_CHUNK_BYTES, false)
      for (;;) {
        const step = cur.step()
        if (step === Step.need) { cur.fill(); continue }
        if (step === Step.corrupt || step === Step.torn) continue
        if (step !== Step.frame) break
        if (cur.frameSeq < first) continue
        tracker.add(frameSubject(cur.buf, cur.frameOff), cur.frameSeq, cur.frameLen)
        if (tracker.evictedSeq >= 0) this.#markDead(tracker.evictedSeq, tracker.evictedSize)
      }
    }
  }

  /** Refills the duplicate window from the records of the last window. */
  #rebuildDedupe(): void {
    const d = this.#dedupe
    if (d === null) return
    const from = this.seqForTime(this.#clock() - d.windowMs)
    for (const e of this.#segs) {
      if (e.index.records === 0 || e.index.lastSeq < from) continue
      const i = Math.max(0, e.index.floorBySeq(from))
      const cur = new FrameCursor(e.file, e.index.posAt(i), e.index.seqAt(i) - 1, HEAD_CHUNK_BYTES, false)
      for (;;) {
        const step = cur.step()
        if (step === Step.need) { cur.fill(); continue }
        if (step === Step.corrupt || step === Step.torn) continue
        if (step !== Step.frame) break
        if (cur.frameSeq < from) continue
        const id = frameMsgId(cur.buf, cur.frameOff)
        if (id !== null) d.add(id, cur.frameSeq, frameTimestamp(cur.buf, cur.frameOff))
      }
    }
  }

  // --- closing -------------------------------------------------------------------------------

  /** Writes what is pending, then closes every file. Appends after close() begins are refused. */
  close(): Promise<void> {
    if (this.#closing !== null) return this.#closing
    this.#closing = (async () => {
      this.#seal()
      while (this.#queue.length > 0 || this.#pumping || this.#compactRunning) await this.#withLock(async () => {})
      await this.#withLock(async () => {})
      const a = this.#active
      if (a !== null && this.#broken === null) this.#writeIndex(a)
      if (this.firstSeq > this.#floorSeq) this.#floorSeq = this.firstSeq
      try {
        await this.#writeMeta()
      } catch (err) {
        this.#log.warn({ code: 'EJOURNAL_IO', dir: this.dir, err: String(err) }, 'journal could not record its state on close')
      }
      this.#clearTimer()
      for (const e of this.#segs) e.file.close()
      this.#dirLock?.release()
      this.#closed = true
    })()
    return this.#closing
  }
}

const RESOLVED = Promise.resolve()
