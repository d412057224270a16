import { crc32c } from '../storage/crc32c.ts'

/**
 * SequenceIndex: where the records of one segment are, by sequence and by time. Sparse: an entry
 * (seq, file position, timestamp) for the segment's first record and then for the first record
 * at least `intervalBytes` past the previous entry, so a lookup is a binary search plus one read
 * of about `intervalBytes` (the caller scans forward from the entry). It also carries the
 * segment's totals (records, bytes of records, first/last seq and time).
 *
 * Persisted beside the segment as `<base>.idx` when the segment is sealed and on a clean close;
 * the file records the segment size it describes, so a segment that grew or was cut since is
 * noticed and its index rebuilt by scanning (FORMAT.md, "Index file").
 */

export const INDEX_MAGIC = 0x58494245 // 'EBIX' read as a little-endian u32
export const INDEX_VERSION = 1
const HEADER_BYTES = 72
const ENTRY_BYTES = 24
const TWO32 = 4294967296

export class SequenceIndex {
  #seqs: Float64Array = new Float64Array(16)
  #pos: Float64Array = new Float64Array(16)
  #times: Float64Array = new Float64Array(16)
  #n = 0
  #lastEntryPos = 0
  /** Valid records in the segment (corrupt ones are not counted). */
  records = 0
  /** Sum of the frame lengths of those records. */
  recordBytes = 0
  firstSeq = 0
  lastSeq = 0
  firstTime = 0
  lastTime = 0

  constructor(readonly intervalBytes: number) {}

  get entries(): number {
    return this.#n
  }

  /** Notes the next record of the segment (records arrive in file order). */
  add(seq: number, pos: number, time: number, frameLen: number): void {
    if (this.records === 0) {
      this.firstSeq = seq
      this.firstTime = time
    }
    if (this.#n === 0 || pos - this.#lastEntryPos >= this.intervalBytes) this.#push(seq, pos, time)
    this.records++
    this.recordBytes += frameLen
    this.lastSeq = seq
    this.lastTime = time
  }

  #push(seq: number, pos: number, time: number): void {
    if (this.#n === this.#seqs.length) {
      const grow = (a: Float64Array): Float64Array => {
        const b = new Float64Array(a.length * 2)
        b.set(a)
        return b
      }
      this.#seqs = grow(this.#seqs)
      this.#pos = grow(this.#pos)
      this.#times = grow(this.#times)
    }
    this.#seqs[this.#n] = seq
    this.#pos[this.#n] = pos
    this.#times[this.#n] = time
    this.#n++
    this.#lastEntryPos = pos
  }

  seqAt(i: number): number { return this.#seqs[i] as number }
  posAt(i: number): number { return this.#pos[i] as number }
  timeAt(i: number): number { return this.#times[i] as number }

  /** The last entry whose seq is <= seq, or -1 when seq is before the first entry. */
  floorBySeq(seq: number): number {
    return lastBelow(this.#seqs, this.#n, seq + 0.5)
  }

  /** The last entry whose timestamp is < ms (scan forward from it for the first record at or after ms), or 0. */
  floorByTime(ms: number): number {
    return Math.max(0, lastBelow(this.#times, this.#n, ms))
  }

  /** The persisted form, describing a segment of `segmentSize` bytes. */
  encode(segmentSize: number): Buffer {
    const n = this.#n
    const buf = Buffer.allocUnsafe(HEADER_BYTES + n * ENTRY_BYTES + 4)
    buf.writeUInt32LE(INDEX_MAGIC, 0)
    buf[4] = INDEX_VERSION
    buf.fill(0, 5, 8)
    writeU64(buf, 8, segmentSize)
    writeU64(buf, 16, this.records)
    writeU64(buf, 24, this.recordBytes)
    writeU64(buf, 32, this.firstSeq)
    writeU64(buf, 40, this.lastSeq)
    writeU64(buf, 48, this.firstTime)
    writeU64(buf, 56, this.lastTime)
    buf.writeUInt32LE(this.intervalBytes, 64)
    buf.writeUInt32LE(n, 68)
    let p = HEADER_BYTES
    for (let i = 0; i < n; i++) {
      writeU64(buf, p, this.#seqs[i] as number)
      writeU64(buf, p + 8, this.#pos[i] as number)
      writeU64(buf, p + 16, this.#times[i] as number)
      p += ENTRY_BYTES
    }
    buf.writeUInt32LE(crc32c(buf, 0, p), p)
    return buf
  }

  /**
   * Reads a persisted index; null when it is damaged, of another version, or describes a
   * segment of another size than `segmentSize` (the caller then rebuilds it by scanning).
   */
  static decode(buf: Buffer, segmentSize: number): SequenceIndex | null {
    if (buf.length < HEADER_BYTES + 4 || buf.readUInt32LE(0) !== INDEX_MAGIC || buf[4] !== INDEX_VERSION) return null
    const n = buf.readUInt32LE(68)
    const end = HEADER_BYTES + n * ENTRY_BYTES
    if (buf.length !== end + 4 || crc32c(buf, 0, end) !== buf.readUInt32LE(end)) return null
    if (readU64(buf, 8) !== segmentSize) return null
    const idx = new SequenceIndex(buf.readUInt32LE(64))
    idx.records = readU64(buf, 16)
    idx.recordBytes = readU64(buf, 24)
    idx.firstSeq = readU64(buf, 32)
    idx.lastSeq = readU64(buf, 40)
    idx.firstTime = readU64(buf, 48)
    idx.lastTime = readU64(buf, 56)
    if ((n === 0) !== (idx.records === 0) || idx.recordBytes > segmentSize) return null
    let p = HEADER_BYTES
    let prevSeq = -1
    let prevPos = -1
    for (let i = 0; i < n; i++) {
      const seq = readU64(buf, p)
      const pos = readU64(buf, p + 8)
      // entries must be increasing and inside the segment, or the index is not trusted
      if (seq <= prevSeq || pos <= prevPos || pos >= segmentSize) return null
      idx.#push(seq, pos, readU64(buf, p + 16))
      prevSeq = seq
      prevPos = pos
      p += ENTRY_BYTES
    }
    if (n > 0 && (idx.#seqs[0] !== idx.firstSeq || idx.lastSeq < prevSeq)) return null
    return idx
  }
}

/** The last i < n with a[i] < x (a ascending), or -1. */
function lastBelow(a: Float64Array, n: number, x: number): number {
  let lo = 0
  let hi = n
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((a[mid] as number) < x) lo = mid + 1
    else hi = mid
  }
  return lo - 1
}

function writeU64(buf: Buffer, off: number, n: number): void {
  buf.writeUInt32LE(n >>> 0, off)
  buf.writeUInt32LE(Math.floor(n / TWO32), off + 4)
}

function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off) + buf.readUInt32LE(off + 4) * TWO32
}
