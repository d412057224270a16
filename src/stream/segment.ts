import * as fs from 'node:fs'
import { join } from 'node:path'
import { EdgebusError } from '../core/errors.ts'
import { claimedFrameLength, frameCrcMatches, frameIsSupported, frameSeq, frameTimestamp, RECORD_FIXED_BYTES, RECORD_MAGIC, RECORD_VERSION } from './record.ts'
import type { SequenceIndex } from './seq-index.ts'

/**
 * JournalSegment: one append-only file of record frames, `<firstSeq, 20 digits>.seg`. It knows
 * bytes, not messages: it appends already-encoded frames at its end, reads at positions, and
 * scans itself for recovery. FrameCursor walks its frames for every reader (recovery, replay,
 * retention), so there is one place that decides what a valid frame is.
 */

/** The file operations a segment's write path uses; injectable so tests can fail them (ENOSPC, EIO). */
export interface JournalFileOps {
  /** Like fs.write with a position: resolves with the number of bytes written (possibly fewer). */
  write(fd: number, buf: Uint8Array, offset: number, length: number, position: number): Promise<number>
  fdatasync(fd: number): Promise<void>
}

export const nodeFileOps: JournalFileOps = {
  write: (fd, buf, offset, length, position) =>
    new Promise((resolve, reject) => {
      fs.write(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)))
    }),
  fdatasync: (fd) =>
    new Promise((resolve, reject) => {
      fs.fdatasync(fd, (err) => (err ? reject(err) : resolve()))
    }),
}

const NAME_DIGITS = 20
const SEGMENT_RE = /^(\d{20})\.seg$/

/** `<seq, zero-padded to 20 digits><ext>`: names sort as their numbers (20 digits hold any uint64). */
export function segmentFileName(baseSeq: number, ext = '.seg'): string {
  return String(baseSeq).padStart(NAME_DIGITS, '0') + ext
}

/** The base sequence of a segment file name, or null when the name is not one. */
export function parseSegmentFileName(name: string): number | null {
  const m = SEGMENT_RE.exec(name)
  if (m === null) return null
  const n = Number(m[1])
  return Number.isSafeInteger(n) && n > 0 ? n : null
}

const FULL_CODES = new Set(['ENOSPC', 'EDQUOT', 'EFBIG'])

/** A typed error for a failed file operation: EJOURNAL_FULL for a full disk, EJOURNAL_IO otherwise. */
export function journalIoError(err: unknown, op: string, path: string, extra: Record<string, unknown> = {}): EdgebusError {
  if (err instanceof EdgebusError) return err
  const sys = (err as NodeJS.ErrnoException | null)?.code ?? 'EUNKNOWN'
  const full = FULL_CODES.has(sys)
  const message = `journal ${op} failed on ${path}: ${(err as Error | null)?.message ?? String(err)}`
  return new EdgebusError(full ? 'EJOURNAL_FULL' : 'EJOURNAL_IO', message, { op, path, errno: sys, ...extra })
}

export class JournalSegment {
  /** Bytes in the file that hold whole records written by us (the next write goes here). */
  size: number
  /**
   * How far readers may read: the end of the last record the journal made visible (written and,
   * under its fsync policy, synced). During recovery it is the file size.
   */
  readableEnd: number
  /**
   * Bytes from the start known to hold good records: written by this process (it computed their
   * CRCs) or checked by a read since the file was opened. Readers skip the CRC below it, so
   * replaying a warm journal does not checksum every record again.
   */
  checkedEnd = 0
  #fd: number
  #closed = false

  private constructor(
    readonly dir: string,
    readonly baseSeq: number,
    readonly path: string,
    fd: number,
    size: number,
    readonly ops: JournalFileOps,
  ) {
    this.#fd = fd
    this.size = size
    this.readableEnd = size
  }

  get name(): string {
    return segmentFileName(this.baseSeq)
  }

  get closed(): boolean {
    return this.#closed
  }

  /** Creates a new, empty segment; fails if the file exists. */
  static create(dir: string, baseSeq: number, ops: JournalFileOps = nodeFileOps): JournalSegment {
    const path = join(dir, segmentFileName(baseSeq))
    let fd: number
    try {
      fd = fs.openSync(path, 'wx+')
    } catch (err) {
      throw journalIoError(err, 'create', path)
    }
    return new JournalSegment(dir, baseSeq, path, fd, 0, ops)
  }

  /** Opens an existing segment for recovery and appending; its size is the file size. */
  static open(dir: string, baseSeq: number, ops: JournalFileOps = nodeFileOps): JournalSegment {
    const path = join(dir, segmentFileName(baseSeq))
    let fd: number
    try {
      fd = fs.openSync(path, 'r+')
    } catch (err) {
      throw journalIoError(err, 'open', path)
    }
    try {
      return new JournalSegment(dir, baseSeq, path, fd, fs.fstatSync(fd).size, ops)
    } catch (err) {
      fs.closeSync(fd)
      throw journalIoError(err, 'stat', path)
    }
  }

  /**
   * Writes `buf[off, off + len)` at the end of the segment (looping over short writes). On a
   * failure the file is cut back to where it was, so no half record stays behind, and the error
   * (EJOURNAL_FULL or EJOURNAL_IO) says in `detail.cutBack` whether that worked.
   */
  async append(buf: Uint8Array, off: number, len: number): Promise<void> {
    this.#checkOpen()
    const start = this.size
    let done = 0
    try {
      while (done < len) {
        const n = await this.ops.write(this.#fd, buf, off + done, len - done, start + done)
        if (n <= 0) throw Object.assign(new Error('write wrote nothing'), { code: 'EIO' })
        done += n
      }
    } catch (err) {
      let cutBack = done === 0
      if (!cutBack && !this.#closed) {
        try {
          fs.ftruncateSync(this.#fd, start)
          cutBack = true
        } catch { /* reported through detail.cutBack */ }
      }
      throw journalIoError(err, 'write', this.path, { bytes: len, written: done, cutBack })
    }
    this.size = start + len
    if (this.checkedEnd === start) this.checkedEnd = start + len
  }

  /** fdatasync: the data written so far (and the file size) survive a power loss. */
  async sync(): Promise<void> {
    this.#checkOpen()
    try {
      await this.ops.fdatasync(this.#fd)
    } catch (err) {
      throw journalIoError(err, 'fdatasync', this.path)
    }
  }

  /** Cuts the file to `size` bytes (a torn tail, or an append rolled back). */
  truncate(size: number): void {
    this.#checkOpen()
    try {
      fs.ftruncateSync(this.#fd, size)
    } catch (err) {
      throw journalIoError(err, 'truncate', this.path, { size })
    }
    this.size = size
    if (this.readableEnd > size) this.readableEnd = size
    if (this.checkedEnd > size) this.checkedEnd = size
  }

  /** Reads into buf at a file position; returns the bytes read (fewer at the end of the file). */
  readSync(buf: Uint8Array, off: number, len: number, pos: number): number {
    this.#checkOpen()
    try {
      return fs.readSync(this.#fd, buf, off, len, pos)
    } catch (err) {
      throw journalIoError(err, 'read', this.path, { pos })
    }
  }

  /** The same, on the thread pool (replay without blocking the event loop). */
  read(buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
    this.#checkOpen()
    this.#reads++
    return new Promise((resolve, reject) => {
      fs.read(this.#fd, buf, off, len, pos, (err, n) => {
        this.#reads--
        if (this.#reads === 0 && this.#closeWanted) this.#doClose()
        if (err) reject(journalIoError(err, 'read', this.path, { pos }))
        else resolve(n)
      })
    })
  }

  #reads = 0
  #closeWanted = false

  /** Closes the file; an asynchronous read still running keeps the descriptor until it ends. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#reads > 0) this.#closeWanted = true
    else this.#doClose()
  }

  #doClose(): void {
    this.#closeWanted = false
    try {
      fs.closeSync(this.#fd)
    } catch { /* closing is best effort: nothing more will use the descriptor */ }
    this.#fd = -1
  }

  #checkOpen(): void {
    if (this.#closed) throw new EdgebusError('EJOURNAL_CLOSED', `segment ${this.path} is closed`, { path: this.path })
  }

  /**
   * Recovery: walks every frame of the file, adding each valid one to `index`, and reports what
   * is not whole. `afterSeq` is the highest sequence before this segment (frames must be above it).
   * Changes nothing on disk; the journal decides to cut a torn tail (`validEnd`).
   */
  scan(index: SequenceIndex, afterSeq: number, onFrame?: FrameVisitor): ScanResult {
    const result: ScanResult = { validEnd: 0, tornBytes: 0, corrupt: [], unsupportedAt: -1 }
    const cur = new FrameCursor(this, 0, afterSeq, SCAN_CHUNK_BYTES, false)
    for (;;) {
      const step = cur.step()
      if (step === Step.frame) {
        const ts = frameTimestamp(cur.buf, cur.frameOff)
        index.add(cur.frameSeq, cur.framePos, ts, cur.frameLen)
        if (onFrame !== undefined) onFrame(cur.buf, cur.frameOff, cur.frameLen, cur.frameSeq, ts, cur.framePos)
        result.validEnd = cur.pos
        const last = result.corrupt[result.corrupt.length - 1]
        if (last !== undefined && last.beforeSeq === 0) last.beforeSeq = cur.frameSeq
      } else if (step === Step.need) {
        cur.fill()
      } else if (step === Step.corrupt) {
        result.corrupt.push({ start: cur.badStart, end: cur.badEnd, afterSeq: cur.lastSeq, beforeSeq: 0, claimedSeq: cur.badClaimedSeq })
      } else if (step === Step.torn) {
        result.tornBytes = cur.badEnd - cur.badStart
        result.validEnd = cur.badStart
      } else if (step === Step.unsupported) {
        result.unsupportedAt = cur.framePos
        return result
      } else {
        return result
      }
    }
  }
}

export type FrameVisitor = (buf: Buffer, off: number, len: number, seq: number, timestamp: number, pos: number) => void

export interface CorruptSpan {
  /** File positions of the bytes skipped. */
  start: number
  end: number
  /** The last valid sequence before the span (the segment's base - 1 if none) and the first after it (0 if none). */
  afterSeq: number
  beforeSeq: number
  /** The sequence the span's first header claims, if its header looked like one (unverified), else -1. */
  claimedSeq: number
}

export interface ScanResult {
  /** End of the last whole valid record: where the file is cut when its tail is torn. */
  validEnd: number
  /** Bytes after validEnd that hold no valid record (0 when the file ends on a record). */
  tornBytes: number
  /** Invalid spans followed by valid records. */
  corrupt: CorruptSpan[]
  /** Position of a valid frame of a format this code does not know (a newer edgebus wrote it), or -1. */
  unsupportedAt: number
}

const SCAN_CHUNK_BYTES = 1 << 20

/** What FrameCursor.step found. */
export const Step = {
  /** A valid frame: frameOff/frameLen in buf, framePos and frameSeq. */
  frame: 0,
  /** More bytes are needed: call fill() or fillAsync(), then step() again. */
  need: 1,
  /** No more frames before the segment's readable end. */
  end: 2,
  /** badStart..badEnd held no valid frame but a valid frame follows: skip it. */
  corrupt: 3,
  /** badStart..badEnd, up to the readable end, held no valid frame: a torn (or corrupt) tail. */
  torn: 4,
  /** A frame with a valid CRC in a format version this code does not know. */
  unsupported: 5,
} as const
export type Step = (typeof Step)[keyof typeof Step]

/**
 * Reads a segment's frames in order through a chunk buffer, up to the segment's readableEnd.
 * A frame is valid when its magic, version, length and CRC check out and its sequence is above
 * the previous one; anything else starts an invalid span, and the cursor resynchronises by
 * looking for the next valid frame byte by byte. `fresh` chunks are newly allocated on every
 * fill, so records handed out earlier (payload views) stay intact.
 */
export class FrameCursor {
  buf: Buffer
  /** File position of the next candidate frame. */
  pos: number
  /** Sequence of the last valid frame; the next must be above it. */
  lastSeq: number
  frameOff = 0
  frameLen = 0
  framePos = 0
  frameSeq = 0
  badStart = 0
  badEnd = 0
  badClaimedSeq = -1
  #bufPos: number
  #bufLen = 0
  #need = 0
  #bad = -1
  #badClaim = -1

  constructor(
    readonly segment: JournalSegment,
    pos: number,
    afterSeq: number,
    readonly chunkBytes: number,
    readonly fresh: boolean,
    /** Read up to this file position instead of the segment's readableEnd. */
    readonly limit = -1,
  ) {
    this.pos = pos
    this.#bufPos = pos
    this.lastSeq = afterSeq
    this.buf = EMPTY
  }

  step(): Step {
    const buf = this.buf
    for (;;) {
      const limit = this.#end()
      const pos = this.pos
      if (pos >= limit) {
        if (this.#bad >= 0) return this.#endBad(Step.torn, limit)
        return Step.end
      }
      const off = pos - this.#bufPos
      const avail = this.#bufLen - off
      const allBuffered = this.#bufPos + this.#bufLen >= limit
      if (avail >= RECORD_FIXED_BYTES) {
        const len = claimedFrameLength(buf, off)
        if (len > 0 && pos + len <= limit && (this.#bad < 0 || this.#plausible(off))) {
          if (len > avail) {
            this.#need = len
            return Step.need
          }
          const segment = this.segment
          if (pos + len <= segment.checkedEnd || frameCrcMatches(buf, off, len)) {
            if (!frameIsSupported(buf, off)) {
              this.framePos = pos
              return Step.unsupported
            }
            const seq = frameSeq(buf, off)
            if (seq > this.lastSeq) {
              if (this.#bad >= 0) return this.#endBad(Step.corrupt, pos)
              this.frameOff = off
              this.frameLen = len
              this.framePos = pos
              this.frameSeq = seq
              this.lastSeq = seq
              this.pos = pos + len
              if (segment.checkedEnd === pos) segment.checkedEnd = pos + len
              return Step.frame
            }
          }
        }
        if (this.#bad < 0 && buf[off] === RECORD_MAGIC) this.#badClaim = frameSeq(buf, off)
      } else if (!allBuffered) {
        this.#need = RECORD_FIXED_BYTES
        return Step.need
      }
      // no valid frame starts here: the start (or the continuation) of an invalid span
      if (this.#bad < 0) this.#bad = pos
      this.pos = pos + 1
    }
  }

  #end(): number {
    return this.limit >= 0 ? this.limit : this.segment.readableEnd
  }

  /** While resynchronising, a candidate must also look like a current frame before its CRC is read. */
  #plausible(off: number): boolean {
    return this.buf[off + 1] === RECORD_VERSION && this.buf[off + 3] === 0 && frameSeq(this.buf, off) > this.lastSeq
  }

  #endBad(step: Step, end: number): Step {
    this.badStart = this.#bad
    this.badEnd = end
    this.badClaimedSeq = this.#badClaim
    this.#bad = -1
    this.#badClaim = -1
    return step
  }

  /** Prepares the buffer for a read; returns [offset in buf, length to read, file position]. */
  #prepare(): [number, number, number] {
    const keepFrom = this.pos
    const keepOff = keepFrom - this.#bufPos
    const keep = Math.max(0, this.#bufLen - keepOff)
    // a chunk, or less near the end of a segment that is not growing; always the frame being waited for
    const want = Math.max(Math.min(this.chunkBytes, this.#end() - keepFrom), this.#need, keep + 64)
    if (this.fresh || want > this.buf.length) {
      const next = Buffer.allocUnsafe(want)
      if (keep > 0) this.buf.copy(next, 0, keepOff, keepOff + keep)
      this.buf = next
    } else if (keep > 0 && keepOff > 0) {
      this.buf.copyWithin(0, keepOff, keepOff + keep)
    }
    this.#bufPos = keepFrom
    this.#bufLen = keep
    this.#need = 0
    const filePos = keepFrom + keep
    const len = Math.min(this.buf.length - keep, this.#end() - filePos)
    return [keep, len, filePos]
  }

  #complete(n: number, wanted: number): void {
    this.#bufLen += n
    if (n < wanted) {
      // the file is shorter than the journal believed: something outside cut it
      throw new EdgebusError('EJOURNAL_IO', `segment ${this.segment.path} ends early`, { path: this.segment.path, at: this.#bufPos + this.#bufLen })
    }
  }

  /** Reads the next chunk (synchronously). */
  fill(): void {
    const [off, len, filePos] = this.#prepare()
    this.#complete(len > 0 ? this.segment.readSync(this.buf, off, len, filePos) : 0, len)
  }

  /** Reads the next chunk on the thread pool. */
  async fillAsync(): Promise<void> {
    const [off, len, filePos] = this.#prepare()
    this.#complete(len > 0 ? await this.segment.read(this.buf, off, len, filePos) : 0, len)
  }
}

const EMPTY = Buffer.alloc(0)

/** fsync of a directory: makes a created, renamed or deleted file name survive a power loss. */
export function syncDirectory(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.open(dir, 'r', (err, fd) => {
      if (err) return reject(journalIoError(err, 'open directory', dir))
      fs.fsync(fd, (err2) => {
        fs.close(fd, () => (err2 ? reject(journalIoError(err2, 'fsync directory', dir)) : resolve()))
      })
    })
  })
}
