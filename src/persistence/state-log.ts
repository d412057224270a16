import * as fs from 'node:fs'
import { join, resolve } from 'node:path'
import { EdgebusError } from '../core/errors.ts'
import { ByteSink } from './codec.ts'
import { beginFrame, endFrame, FILE_HEADER, scanFrames } from './frame.ts'
import { readRecord, writeRecord, type StateRecord } from './records.ts'
import type { MqttState } from './state.ts'
import { mkdirDurableSync, syncDirSync } from '../core/fsync.ts'

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
 * generation n is whole; after it, n+1 is. On open, the highest generation wins and leftovers
 * are removed.
 *
 * Recovery never refuses to start: a torn tail (a record cut short by a crash or power cut) is cut
 * back to the last whole record; a damaged record with whole records after it is skipped, logged
 * (EPERSIST_CORRUPT), and the state is compacted at once so the damage leaves the disk.
 *
 * Failure. A failed write or sync does not fail the broker: the state in memory stays right, the
 * error is logged (EPERSIST_IO), and a compaction — rewriting the whole state — is retried every
 * few seconds until one succeeds, which heals the disk copy.
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
  ioErrors: number
}

const FILE_RE = /^state-(\d{8,})\.log$/
const TMP_RE = /^state-(\d{8,})\.log\.tmp$/
const SNAPSHOT_CHUNK = 1024 * 1024
const silentLog: PersistenceLog = { info() {}, warn() {}, error() {} }
const RESOLVED: Promise<void> = Promise.resolve()
const openDirs = new Set<string>()

function fileName(gen: number): string {
  return `state-${String(gen).padStart(8, '0')}.log`
}

export function persistIoError(err: unknown, op: string, path: string): EdgebusError {
  if (err instanceof EdgebusError) return err
  const e = err as NodeJS.ErrnoException | null
  return new EdgebusError('EPERSIST_IO', `MQTT state ${op} failed on ${path}: ${e?.message ?? String(err)}`, { op, path, errno: e?.code ?? 'EUNKNOWN' })
}

class Batch {
  resolve!: () => void
  readonly promise = new Promise<void>((r) => { this.resolve = r })
}

export class StateLog {
  readonly dir: string
  readonly state: MqttState
  readonly loaded: LoadReport
  readonly stats: StateLogStats = { fileBytes: 0, appendedBytes: 0, liveBytes: 0, compactions: 0, ioErrors: 0 }
  readonly #log: PersistenceLog
  readonly #ops: StateFileOps
  readonly #syncIntervalMs: number
  readonly #compactMinBytes: number
  readonly #compactRatio: number
  readonly #retryMs: number
  #lockPath: string
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
  #closing: Promise<void> | null = null

  private constructor(dir: string, state: MqttState, opts: StateLogOptions, lockPath: string, gen: number, name: string, fd: number, size: number, loaded: LoadReport) {
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
    this.#lockPath = lockPath
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
    if (openDirs.has(dir)) throw new EdgebusError('EPERSIST_LOCKED', `the MQTT state in ${dir} is already open in this process`, { dir })
    const lockPath = acquireLock(dir)
    openDirs.add(dir)
    try {
      const started = Date.now()
      let gen = 0
      let current: string | null = null
      const names = fs.readdirSync(dir)
      for (const name of names) {
        const m = FILE_RE.exec(name)
        if (m && Number(m[1]) > gen) {
          gen = Number(m[1])
          current = name
        }
      }
      const loaded: LoadReport = { file: null, bytes: 0, records: 0, corrupt: [], undecodable: 0, tornBytes: 0, ms: 0 }
      let buf: Buffer | null = null
      if (current !== null) {
        try {
          buf = fs.readFileSync(join(dir, current))
        } catch (err) {
          // unreadable (a bad sector): set it aside for a person to look at, and start empty
          const e = persistIoError(err, 'read', join(dir, current))
          log.error({ file: join(dir, current), code: e.code, errno: e.detail.errno, err: e.message },
            'MQTT state file cannot be read: renamed it *.damaged and starting without retained messages and sessions')
          fs.renameSync(join(dir, current), join(dir, current + '.damaged'))
          gen++
          current = null
        }
      }
      let fd: number
      let size: number
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
        const scan = scanFrames(buf, start, buf.length, (bodyStart, bodyEnd, at) => {
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
        fs.writeSync(fd, FILE_HEADER, 0, FILE_HEADER.length, 0)
        fs.fsyncSync(fd)
        syncDirSync(dir)
        size = FILE_HEADER.length
      }
      // leftovers: older generations (a compaction finished but did not delete them) and unfinished ones
      for (const name of names) {
        const m = FILE_RE.exec(name) ?? TMP_RE.exec(name)
        if (m && name !== current) fs.rmSync(join(dir, name), { force: true })
      }
      loaded.ms = Date.now() - started
      const sl = new StateLog(dir, state, opts, lockPath, gen, current, fd, size, loaded)
      sl.stats.liveBytes = state.liveBytes
      sl.#maybeCompact()
      return sl
    } catch (err) {
      openDirs.delete(dir)
      fs.rmSync(lockPath, { force: true })
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

  /** Resolves once everything appended so far is written to the OS (not necessarily synced). */
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
    if (sink.pos > 0) {
      const n = sink.pos
      try {
        writeAll(this.#ops, this.#fd, sink.buf, n, this.#size)
        this.#size += n
        this.#dirty = true
        this.stats.appendedBytes += n
      } catch (err) {
        this.#ioFailure(err, 'write', this.#path)
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
    batch?.resolve()
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
    if (!this.#failing) {
      this.#failing = true
      const e = persistIoError(err, op, path)
      this.#log.error({ code: e.code, errno: e.detail.errno, op, file: path, err: e.message },
        'MQTT state could not be written: serving from memory, rewriting the state file every few seconds until it works')
    }
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
        this.#log.info({ file: finalPath }, 'MQTT state file rewritten: writing to disk works again')
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
      if (this.#syncTimer) clearTimeout(this.#syncTimer)
      this.#syncTimer = null
      if (this.#syncing) await this.#syncing
      try {
        fs.fdatasyncSync(this.#fd)
      } catch (err) {
        this.#ioFailure(err, 'sync', this.#path)
      }
      fs.closeSync(this.#fd)
      openDirs.delete(this.dir)
      fs.rmSync(this.#lockPath, { force: true })
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
 * A LOCK file with our pid and the kernel's boot id: a second edgebus on the same data directory
 * would corrupt it. A lock is stale when its process is gone, or when it is from an earlier boot
 * (after a power cut, its pid may belong to some other program now).
 */
function acquireLock(dir: string): string {
  const path = join(dir, 'LOCK')
  const bootId = readBootId()
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(path, 'wx')
      fs.writeSync(fd, `${process.pid} ${bootId}\n`)
      fs.closeSync(fd)
      return path
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw persistIoError(err, 'lock', path)
    }
    let pid = NaN
    let boot = ''
    try {
      // a lock without its newline was torn by a crash or power cut while being written: stale
      const text = fs.readFileSync(path, 'utf8')
      const [p, b] = text.trim().split(/\s+/)
      if (text.endsWith('\n')) pid = Number(p)
      boot = b ?? ''
    } catch { /* removed meanwhile */ }
    const sameBoot = boot === '' || bootId === '' || boot === bootId
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && sameBoot && processAlive(pid)) {
      throw new EdgebusError('EPERSIST_LOCKED',
        `another edgebus (pid ${pid}) uses the MQTT state in ${dir}: stop it, or give this one another data directory (dataDir, --data-dir)`,
        { dir, pid })
    }
    // left by a process that is gone (a crash or SIGKILL)
    fs.rmSync(path, { force: true })
  }
  throw new EdgebusError('EPERSIST_LOCKED', `cannot take the lock ${path}`, { dir })
}

function readBootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return ''
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  // a killed process nobody has reaped yet (a zombie) still answers signal 0
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return true
  }
}
