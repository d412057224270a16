import * as fs from 'node:fs'
import { join, resolve } from 'node:path'
import { EdgebusError } from '../core/errors.ts'
import { ByteSink } from './codec.ts'
import { frameEnd, scanFrames } from '../storage/frame.ts'
import { beginFrame, endFrame, readRecord, STATE_FILE_HEADER as FILE_HEADER, STATE_FRAMES, writeRecord, type StateRecord } from './records.ts'
import type { MqttState } from './state.ts'
import { mkdirDurableSync, syncDirSync } from '../core/fsync.ts'
import { DirLock } from '../storage/dir-lock.ts'

/**
 * The MQTT state on disk: one append-only log of CRC-framed records (FORMAT.md) in a directory,
 * `state-<generation>.log`, replayed into a MqttState on open.
 *
 * Writing (group commit). Records are encoded into one batch buffer; at the end of the event-loop
 * turn the batch goes to the file with one write, and everything appended in that turn resolves
 * once the OS has the bytes — so a crash of the process (SIGKILL, OOM) loses nothing that was
 * answered. fdatasync follows on a timer (`syncIntervalMs`, default 100 ms) while there are
 * unsynced bytes: a power cut loses at most the changes of the last interval (plus the sync's
 * own duration). Idle, nothing is written.
 *
 * Compaction. When the file has grown since its last rewrite by more than `compactMinBytes` and
 * by more than (`compactRatio` - 1) times the live data (what a snapshot of the state takes) — so
 * with the default ratio 2 it stays under about twice the live data, or the live data plus 1 MiB
 * when that is more — the state is written as a snapshot into generation
 * n+1 (`.tmp`), which is synced, renamed into place and its directory synced; then generation n is
 * deleted. Batches written meanwhile go to both files, and each sync syncs both, so neither a
 * crash nor a power cut at any point loses more than the sync interval: before the rename,
 * generation n is whole; after it, n+1 is. On open, the newest generation holding records wins and
 * older leftovers are removed.
 *
 * Recovery never refuses to start: a torn tail (a record cut short by a crash or power cut) is cut
 * back to the last whole record; a damaged record with whole records after it is skipped, logged
 * (EPERSIST_CORRUPT), and the state is compacted at once so the damage leaves the disk.
 *
 * Failure. A failed write (a full disk: EPERSIST_FULL; else EPERSIST_IO) rejects its batch: the
 * callers refuse what they were asked to keep (file-persistence.ts takes the change back, the
 * broker answers with a reason code), so nothing acknowledged is missing from the file. The file is
 * cut back to its last whole batch; later batches are written as usual and resolve when they make
 * it (space came back). A failed sync cannot be taken back (its batches were answered); either way
 * the log reports `failure` (healthz) and a compaction — rewriting the whole state — is retried
 * every few seconds until one succeeds, which heals the disk copy. Logged once per episode.
 *
 * On open the generation is chosen by content (chooseGeneration): a stray newer file never costs
 * the good one.
 */

export interface PersistenceLog {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

/** File operations of the write path; tests inject failures here. */
export interface StateFileOps {
  writeSync(fd: number, buf: Buffer, offset: number, length: number, position: number): number
  fdatasync(fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void
}

export interface StateLogOptions {
  /** fdatasync this long after the first unsynced write. Default 100 ms. */
  syncIntervalMs?: number
  /** Never compact a file smaller than this. Default 1 MiB. */
  compactMinBytes?: number
  /** Compact when the file is this many times the live data. Default 2. */
  compactRatio?: number
  /** Retry a failed compaction after this long. Default 5 s. */
  retryMs?: number
  log?: PersistenceLog
  fileOps?: Partial<StateFileOps>
}

export interface LoadReport {
  file: string | null
  bytes: number
  records: number
  /** Damaged stretches skipped (with whole records after them). */
  corrupt: Array<{ at: number; bytes: number }>
  /** Records whose checksum held but whose contents did not decode. */
  undecodable: number
  /** Bytes of a torn tail cut off. */
  tornBytes: number
  /** Generations not used (unreadable, or newer than the chosen one but holding no record), and where they went. */
  setAside: Array<{ file: string; renamedTo: string; bytes: number; reason: string }>
  ms: number
}

export interface StateLogStats {
  /** Bytes in the current log file. */
  fileBytes: number
  /** Bytes of records appended since the file was opened (compactions not counted). */
  appendedBytes: number
  /** Bytes a snapshot of the live state takes (estimate). */
  liveBytes: number
  compactions: number
  /** Failed writes and syncs (each refused the changes of one batch). */
  ioErrors: number
  /** False from a failed write or sync until a rewrite of the state succeeds. */
  writable: boolean
}

const FILE_RE = /^state-(\d{8,})\.log$/
const TMP_RE = /^state-(\d{8,})\.log\.tmp$/
const SNAPSHOT_CHUNK = 1024 * 1024
const silentLog: PersistenceLog = { info() {}, warn() {}, error() {} }
const RESOLVED: Promise<void> = Promise.resolve()
const STATE_LOCK = { file: 'LOCK', code: 'EPERSIST_LOCKED', what: 'MQTT state' } as const

function fileName(gen: number): string {
  return `state-${String(gen).padStart(8, '0')}.log`
}

export function persistIoError(err: unknown, op: string, path: string): EdgebusError {
  if (err instanceof EdgebusError) return err
  const e = err as NodeJS.ErrnoException | null
  const full = e?.code === 'ENOSPC' || e?.code === 'EDQUOT'
  return new EdgebusError(full ? 'EPERSIST_FULL' : 'EPERSIST_IO', `MQTT state ${op} failed on ${path}: ${e?.message ?? String(err)}`, { op, path, errno: e?.code ?? 'EUNKNOWN' })
}

class Batch {
  resolve!: () => void
  reject!: (err: Error) => void
  readonly promise = new Promise<void>((resolve, reject) => { this.resolve = resolve; this.reject = reject })
  constructor() {
    this.promise.catch(() => {}) // a caller that ignores the answer must not crash the process
  }
}

export class StateLog {
  readonly dir: string
  readonly state: MqttState
  readonly loaded: LoadReport
  readonly stats: StateLogStats = { fileBytes: 0, appendedBytes: 0, liveBytes: 0, compactions: 0, ioErrors: 0, writable: true }
  readonly #log: PersistenceLog
  readonly #ops: StateFileOps
  readonly #syncIntervalMs: number
  readonly #compactMinBytes: number
  readonly #compactRatio: number
  readonly #retryMs: number
  readonly #lock: DirLock
  #gen: number
  #path: string
  #fd: number
  #size: number
  /** The file's size after its last rewrite (at open: the live data), the base of the compaction rule. */
  #base: number
  #sink = new ByteSink()
  #batch: Batch | null = null
  #flushScheduled = false
  #dirty = false
  #syncTimer: NodeJS.Timeout | null = null
  #syncing: Promise<void> | null = null
  #compacting = false
  #compaction: Promise<void> | null = null
  #mustCompact = false
  #retryTimer: NodeJS.Timeout | null = null
  /** During a compaction: the next generation, which gets every batch too. */
  #shadow: { fd: number; size: number; failed: unknown } | null = null
  #failing = false
  #failure: EdgebusError | null = null
  #closing: Promise<void> | null = null

  private constructor(dir: string, state: MqttState, opts: StateLogOptions, lock: DirLock, gen: number, name: string, fd: number, size: number, loaded: LoadReport) {
    this.dir = dir
    this.state = state
    this.loaded = loaded
    this.#log = opts.log ?? silentLog
    this.#ops = {
      writeSync: opts.fileOps?.writeSync ?? fs.writeSync,
      fdatasync: opts.fileOps?.fdatasync ?? fs.fdatasync,
    }
    this.#syncIntervalMs = opts.syncIntervalMs ?? 100
    this.#compactMinBytes = opts.compactMinBytes ?? 1024 * 1024
    this.#compactRatio = opts.compactRatio ?? 2
    this.#retryMs = opts.retryMs ?? 5000
    this.#lock = lock
    this.#gen = gen
    this.#path = join(dir, name)
    this.#fd = fd
    this.#size = size
    this.#base = state.liveBytes
    this.stats.fileBytes = size
    if (loaded.corrupt.length > 0 || loaded.undecodable > 0) this.#mustCompact = true
  }

  /** Opens (creating) the state in `dir` and replays it into `state`. */
  static async open(dir: string, state: MqttState, opts: StateLogOptions = {}): Promise<StateLog> {
    dir = resolve(dir)
    const log = opts.log ?? silentLog
    try {
      mkdirDurableSync(dir) // the directory must survive a power cut, not only the file in it
    } catch (err) {
      throw persistIoError(err, 'mkdir', dir)
    }
    const lock = DirLock.acquire(dir, STATE_LOCK)
    try {
      const started = Date.now()
      const names = fs.readdirSync(dir)
      const loaded: LoadReport = { file: null, bytes: 0, records: 0, corrupt: [], undecodable: 0, tornBytes: 0, setAside: [], ms: 0 }
      const chosen = chooseGeneration(dir, names, log, loaded)
      let gen = chosen.gen
      let current = chosen.name
      const buf = chosen.buf
      let fd: number
      let size: number
      let noHeader: unknown = null
      if (current !== null && buf !== null) {
        const path = join(dir, current)
        loaded.file = path
        loaded.bytes = buf.length
        const headerOk = buf.length >= FILE_HEADER.length && buf.subarray(0, FILE_HEADER.length).equals(FILE_HEADER)
        if (!headerOk && buf.length > 0) {
          log.warn({ file: path, code: 'EPERSIST_CORRUPT' }, 'MQTT state file header is damaged: reading its records anyway')
          loaded.corrupt.push({ at: 0, bytes: Math.min(FILE_HEADER.length, buf.length) })
        }
        const start = Math.min(FILE_HEADER.length, buf.length)
        const scan = scanFrames(buf, start, buf.length, STATE_FRAMES, (bodyStart, bodyEnd, at) => {
          let rec: StateRecord
          try {
            rec = readRecord(buf, bodyStart, bodyEnd)
          } catch (err) {
            loaded.undecodable++
            log.warn({ file: path, at, err: (err as Error).message, code: 'EPERSIST_CORRUPT' }, 'MQTT state record does not decode: skipped')
            return
          }
          state.apply(rec, bodyEnd - at)
        })
        loaded.records = scan.frames - loaded.undecodable
        loaded.corrupt.push(...scan.corrupt)
        loaded.tornBytes = scan.tailBytes
        for (const c of scan.corrupt) {
          log.warn({ file: path, at: c.at, bytes: c.bytes, code: 'EPERSIST_CORRUPT' }, 'MQTT state file has a damaged stretch: skipped it, the records after it are kept')
        }
        fd = fs.openSync(path, 'r+')
        size = scan.validEnd
        if (!headerOk) {
          // a file too short for its header: write one so later appends make a readable file
          if (buf.length < FILE_HEADER.length) {
            fs.writeSync(fd, FILE_HEADER, 0, FILE_HEADER.length, 0)
            size = FILE_HEADER.length
          }
        }
        if (scan.tailBytes > 0 && size < buf.length) {
          fs.ftruncateSync(fd, size)
          fs.fsyncSync(fd)
          log.warn({ file: path, bytes: scan.tailBytes, at: size }, 'MQTT state file ended in a torn record (crash or power cut while writing): cut it back to the last whole record')
        }
      } else {
        gen = Math.max(gen, 1)
        current = fileName(gen)
        const path = join(dir, current)
        fd = fs.openSync(path, 'w+')
        size = 0
        try {
          fs.writeSync(fd, FILE_HEADER, 0, FILE_HEADER.length, 0)
          fs.fsyncSync(fd)
          syncDirSync(dir)
          size = FILE_HEADER.length
        } catch (err) {
          // a full disk must not keep the server from starting: the header goes with the first write that fits
          noHeader = err
          try { fs.ftruncateSync(fd, 0) } catch { /* written over from position 0 */ }
        }
      }
      // leftovers: older generations (a compaction finished but did not delete them) and unfinished ones
      for (const name of names) {
        const m = FILE_RE.exec(name) ?? TMP_RE.exec(name)
        if (m && name !== current) fs.rmSync(join(dir, name), { force: true })
      }
      loaded.ms = Date.now() - started
      const sl = new StateLog(dir, state, opts, lock, gen, current, fd, size, loaded)
      if (noHeader !== null) sl.#ioFailure(noHeader, 'create', sl.#path)
      sl.stats.liveBytes = state.liveBytes
      sl.#maybeCompact()
      return sl
    } catch (err) {
      lock.release()
      throw persistIoError(err, 'open', dir)
    }
  }

  get path(): string {
    return this.#path
  }

  /** Encodes a record into the current batch; returns its size on disk. Call `written()` for when it is. */
  append(rec: StateRecord): number {
    if (this.#closing) return 0
    const sink = this.#sink
    const at = beginFrame(sink)
    try {
      writeRecord(sink, rec)
      const n = endFrame(sink, at)
      this.#schedule()
      return n
    } catch (err) {
      sink.pos = at
      throw err
    }
  }

  /**
   * Resolves once everything appended so far is written to the OS (not necessarily synced);
   * rejects (EPERSIST_FULL, EPERSIST_IO) when that write failed: the change is not kept.
   */
  written(): Promise<void> {
    if (!this.#flushScheduled) return RESOLVED
    return (this.#batch ??= new Batch()).promise
  }

  #schedule(): void {
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    setImmediate(() => this.#flush())
  }

  #flush(): void {
    this.#flushScheduled = false
    const batch = this.#batch
    this.#batch = null
    const sink = this.#sink
    let failed: EdgebusError | null = null
    if (sink.pos > 0) {
      const n = sink.pos
      try {
        if (this.#size === 0) {
          // created on a full disk (open): the header first
          writeAll(this.#ops, this.#fd, FILE_HEADER, FILE_HEADER.length, 0)
          this.#size = FILE_HEADER.length
        }
        writeAll(this.#ops, this.#fd, sink.buf, n, this.#size)
        this.#size += n
        this.#dirty = true
        this.stats.appendedBytes += n
      } catch (err) {
        failed = persistIoError(err, 'write', this.#path)
        // what a short write left must not stay: a later batch written over part of it would leave
        // whole records of this refused one after it (cutting a file back needs no space)
        try { fs.ftruncateSync(this.#fd, this.#size) } catch { /* the scan on open cuts it */ }
        this.#ioFailure(failed, 'write', this.#path)
      }
      const shadow = this.#shadow
      if (shadow && shadow.failed === undefined) {
        try {
          writeAll(this.#ops, shadow.fd, sink.buf, n, shadow.size)
          shadow.size += n
        } catch (err) {
          shadow.failed = err
        }
      }
      sink.reset()
    }
    this.stats.fileBytes = this.#size
    this.stats.liveBytes = this.state.liveBytes
    if (failed === null) batch?.resolve()
    else batch?.reject(failed)
    this.#scheduleSync()
    this.#maybeCompact()
  }

  #scheduleSync(): void {
    if (!this.#dirty || this.#syncTimer !== null || this.#syncing !== null) return
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = null
      void this.#sync()
    }, this.#syncIntervalMs)
    this.#syncTimer.unref()
  }

  #sync(): Promise<void> {
    if (this.#syncing) return this.#syncing
    this.#dirty = false
    const fd = this.#fd
    const path = this.#path
    // during a compaction the next generation gets every batch too, and once renamed into place it
    // is the one a power cut leaves: it is synced with the current file, in the same turn
    const shadow = this.#shadow
    this.#syncing = new Promise<void>((done) => {
      let waiting = shadow !== null ? 2 : 1
      const finish = (): void => {
        if (--waiting > 0) return
        this.#syncing = null
        done()
        this.#scheduleSync()
      }
      this.#ops.fdatasync(fd, (err) => {
        if (err) this.#ioFailure(err, 'sync', path)
        finish()
      })
      if (shadow !== null) {
        this.#ops.fdatasync(shadow.fd, (err) => {
          if (err) shadow.failed ??= err
          finish()
        })
      }
    })
    return this.#syncing
  }

  #ioFailure(err: unknown, op: string, path: string): void {
    this.stats.ioErrors++
    this.#mustCompact = true
    const e = persistIoError(err, op, path)
    this.#failure = e
    this.stats.writable = false
    if (!this.#failing) {
      // once per episode: the changes refused meanwhile are counted in stats.ioErrors
      this.#failing = true
      this.#log.error({ code: e.code, errno: e.detail.errno, op, file: path, err: e.message },
        'MQTT state could not be written: changes are refused (not acknowledged) until it works again; the state file is rewritten every few seconds')
    }
  }

  /** Why the state cannot be written now (the last failure), or null while it can. */
  get failure(): EdgebusError | null {
    return this.#failing ? this.#failure : null
  }

  #maybeCompact(): void {
    if (this.#compacting || this.#closing || this.#retryTimer) return
    // grown since the last rewrite by more than the minimum and (ratio - 1) times the live data
    const live = this.state.liveBytes
    const due = this.#size - this.#base > Math.max(this.#compactMinBytes, (this.#compactRatio - 1) * live) && this.#size > this.#compactRatio * live
    if (this.#mustCompact || due) void this.compact()
  }

  /** Resolves once what was appended is written and no compaction is running. */
  async settled(): Promise<void> {
    await this.written()
    while (this.#compaction) await this.#compaction
  }

  /** Rewrites the state as a snapshot into the next generation (see the class comment). */
  compact(): Promise<void> {
    if (this.#compacting || this.#closing) return this.#compaction ?? Promise.resolve()
    this.#compacting = true
    this.#compaction = this.#compact().finally(() => { this.#compaction = null })
    return this.#compaction
  }

  async #compact(): Promise<void> {
    const started = Date.now()
    const before = this.#size
    const gen = this.#gen + 1
    const finalPath = join(this.dir, fileName(gen))
    const tmpPath = finalPath + '.tmp'
    let tmpFd = -1
    let switched = false
    try {
      // what is pending is in the state already; write it to the current file as usual first
      if (this.#flushScheduled) this.#flush()
      tmpFd = fs.openSync(tmpPath, 'w')
      const out = new ByteSink(SNAPSHOT_CHUNK * 2)
      let written = 0
      out.buf.set(FILE_HEADER, 0)
      out.pos = FILE_HEADER.length
      const ops = this.#ops
      this.state.snapshot((rec) => {
        const at = beginFrame(out)
        writeRecord(out, rec)
        const n = endFrame(out, at)
        if (out.pos >= SNAPSHOT_CHUNK) {
          writeAll(ops, tmpFd, out.buf, out.pos, written)
          written += out.pos
          out.pos = 0
        }
        return n
      })
      if (out.pos > 0) writeAll(ops, tmpFd, out.buf, out.pos, written)
      written += out.pos
      this.#shadow = { fd: tmpFd, size: written, failed: undefined }
      await fdatasyncAsync(ops, tmpFd)
      if (this.#shadow.failed !== undefined) throw this.#shadow.failed
      fs.renameSync(tmpPath, finalPath)
      await syncDirAsync(this.dir)
      // switch: the new generation is whole on disk (no sync of the old file may be running)
      while (this.#syncing) await this.#syncing
      if (this.#shadow.failed !== undefined) throw this.#shadow.failed
      const oldFd = this.#fd
      const oldPath = this.#path
      this.#fd = tmpFd
      this.#size = this.#shadow.size
      this.#base = this.#size
      this.#path = finalPath
      this.#gen = gen
      this.#shadow = null
      switched = true
      this.#dirty = true
      this.#scheduleSync()
      fs.closeSync(oldFd)
      fs.rmSync(oldPath, { force: true })
      this.stats.compactions++
      this.stats.fileBytes = this.#size
      this.stats.liveBytes = this.state.liveBytes
      this.#mustCompact = false
      if (this.#failing) {
        this.#failing = false
        this.stats.writable = true
        this.#log.info({ file: finalPath, refused: this.stats.ioErrors }, 'MQTT state file rewritten: writing to disk works again')
      }
      this.#log.info({ file: finalPath, before, after: this.#size, ms: Date.now() - started }, 'MQTT state compacted')
    } catch (err) {
      this.#shadow = null
      if (!switched) {
        if (tmpFd !== -1) try { fs.closeSync(tmpFd) } catch { /* already gone */ }
        fs.rmSync(tmpPath, { force: true })
        fs.rmSync(finalPath, { force: true })
      }
      this.#ioFailure(err, 'compaction', tmpPath)
      if (!this.#closing) {
        this.#retryTimer = setTimeout(() => {
          this.#retryTimer = null
          this.#maybeCompact()
        }, this.#retryMs)
        this.#retryTimer.unref()
      }
    } finally {
      this.#compacting = false
    }
  }

  /** Writes what is pending, syncs, closes the file and releases the directory. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#retryTimer) clearTimeout(this.#retryTimer)
      this.#retryTimer = null
      // a running compaction finishes first (it switches files)
      while (this.#compaction) await this.#compaction
      if (this.#flushScheduled) this.#flush()
      if (this.#failing) {
        // one last rewrite: it puts on disk what failed writes missed (deliveries acknowledged, sessions ended)
        this.#compacting = true
        await this.#compact()
      }
      if (this.#syncTimer) clearTimeout(this.#syncTimer)
      this.#syncTimer = null
      if (this.#syncing) await this.#syncing
      try {
        fs.fdatasyncSync(this.#fd)
      } catch (err) {
        this.#ioFailure(err, 'sync', this.#path)
      }
      if (this.#failing) {
        this.#log.warn({ code: this.#failure?.code, file: this.#path, refused: this.stats.ioErrors },
          'MQTT state closed while it cannot be written: nothing acknowledged is missing, but progress since the failure (deliveries acknowledged, sessions ended) is; some messages may be delivered again after the restart')
      }
      fs.closeSync(this.#fd)
      this.#lock.release()
    })()
    return this.#closing
  }
}

function writeAll(ops: StateFileOps, fd: number, buf: Buffer, length: number, position: number): void {
  let off = 0
  while (off < length) {
    const n = ops.writeSync(fd, buf, off, length - off, position + off)
    if (n <= 0) throw new Error('write wrote nothing')
    off += n
  }
}

function fdatasyncAsync(ops: StateFileOps, fd: number): Promise<void> {
  return new Promise((resolve, reject) => ops.fdatasync(fd, (err) => (err ? reject(err) : resolve())))
}


async function syncDirAsync(dir: string): Promise<void> {
  const h = await fs.promises.open(dir, 'r')
  try {
    await h.sync()
  } finally {
    await h.close()
  }
}

/**
 * Which generation holds the state: chosen by content, not by name. The newest one holding a
 * valid record wins; without any, the newest with a valid header (an empty state). A newer file
 * that holds no record (empty, header only, zeros: a stray copy, a file system repair) cannot be
 * the result of a compaction, whose snapshot is whole before its rename and whose older generation
 * then has the same state, so it never costs the good one: it is renamed `*.stray` and logged, as
 * an unreadable one is renamed `*.damaged`. Older generations than the chosen one are leftovers of
 * a compaction (removed by the caller).
 */
function chooseGeneration(dir: string, names: string[], log: PersistenceLog, loaded: LoadReport): { gen: number; name: string | null; buf: Buffer | null } {
  const gens = names.map((n) => FILE_RE.exec(n)).filter((m) => m !== null).map((m) => ({ gen: Number(m[1]), name: m[0] })).sort((a, b) => b.gen - a.gen)
  let empty: { gen: number; name: string; buf: Buffer } | null = null
  const passed: Array<{ name: string; bytes: number; reason: string }> = []
  let chosen: { gen: number; name: string | null; buf: Buffer | null } | null = null
  for (const g of gens) {
    const path = join(dir, g.name)
    let buf: Buffer
    try {
      buf = fs.readFileSync(path)
    } catch (err) {
      // unreadable (a bad sector): set it aside for a person to look at, and try the older ones
      const e = persistIoError(err, 'read', path)
      setAside(dir, g.name, '.damaged', 0, `cannot be read: ${e.detail.errno}`, log, loaded)
      continue
    }
    const headerOk = buf.length >= FILE_HEADER.length && buf.subarray(0, FILE_HEADER.length).equals(FILE_HEADER)
    const from = Math.min(FILE_HEADER.length, buf.length)
    const hasRecord = frameEnd(buf, from, buf.length, STATE_FRAMES) !== -1 || scanFrames(buf, from, buf.length, STATE_FRAMES, () => {}).frames > 0
    if (hasRecord) {
      chosen = { gen: g.gen, name: g.name, buf }
      break
    }
    if (headerOk && empty === null) empty = { gen: g.gen, name: g.name, buf }
    else passed.push({ name: g.name, bytes: buf.length, reason: buf.length === 0 ? 'empty' : headerOk ? 'holds no record' : 'no valid header and no record' })
  }
  if (chosen === null && empty !== null) chosen = empty
  else if (empty !== null) passed.push({ name: empty.name, bytes: empty.buf.length, reason: 'holds no record' })
  const gen = chosen?.gen ?? 0
  for (const p of passed) {
    // newer than the chosen one: kept aside (never deleted); older ones are compaction leftovers
    if (Number(FILE_RE.exec(p.name)?.[1]) > gen) setAside(dir, p.name, '.stray', p.bytes, p.reason, log, loaded)
  }
  // nothing usable: a new generation after every one seen
  return chosen ?? { gen: (gens[0]?.gen ?? 0) + 1, name: null, buf: null }
}

function setAside(dir: string, name: string, suffix: string, bytes: number, reason: string, log: PersistenceLog, loaded: LoadReport): void {
  let renamedTo = name + suffix
  for (let n = 1; fs.existsSync(join(dir, renamedTo)); n++) renamedTo = `${name}${suffix}.${n}`
  try {
    fs.renameSync(join(dir, name), join(dir, renamedTo))
  } catch (err) {
    log.error({ file: join(dir, name), code: 'EPERSIST_IO', err: (err as Error).message }, 'MQTT state: could not set a file aside')
    return
  }
  loaded.setAside.push({ file: join(dir, name), renamedTo: join(dir, renamedTo), bytes, reason })
  log.warn({ file: join(dir, name), renamedTo: join(dir, renamedTo), bytes, at: 0, reason, code: 'EPERSIST_CORRUPT' },
    `MQTT state file not used (${reason}): set aside, the state is read from an older generation if there is one`)
}
