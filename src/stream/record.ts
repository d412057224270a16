import { EdgebusError } from '../core/errors.ts'
import { crc32c } from '../storage/crc32c.ts'

/**
 * The journal record codec: one stored message as one self-checking frame. FORMAT.md has the
 * byte-by-byte layout; in short:
 *
 *   magic u8 | version u8 | flags u16 | frameLen u32 | seq u64 | timestamp u64 | subject (u16 len + UTF-8)
 *   | optional fields, in flag-bit order | payload ... | crc32c u32 over everything before it
 *
 * All integers are little-endian. The frame length comes first so a reader can skip a record
 * without decoding it, the CRC comes last so a torn write always loses it, and the payload runs to
 * the CRC so decoding hands it out as a view of the read buffer, never a copy.
 */

export const RECORD_MAGIC = 0xeb
export const RECORD_VERSION = 1
/** Bytes before the subject: magic, version, flags, frameLen, seq, timestamp. */
export const RECORD_FIXED_BYTES = 24
/** The smallest possible frame: fixed part, an empty subject's length, the CRC. */
export const RECORD_MIN_BYTES = RECORD_FIXED_BYTES + 2 + 4
/** The largest frame accepted: an MQTT packet's largest payload (256 MiB) plus room for its fields. */
export const RECORD_MAX_BYTES = 0x10000000 + 0x100000

const OFF_FLAGS = 2
const OFF_LEN = 4
const OFF_SEQ = 8
const OFF_TIME = 16
const OFF_SUBJECT = 24
const TWO32 = 4294967296
const MAX_U16 = 0xffff

/** Which optional fields a frame carries; one bit each, stored in this order after the subject. */
export const RecordFlags = {
  contentType: 1,
  responseTopic: 2,
  correlationData: 4,
  userProperties: 8,
  messageExpiryInterval: 16,
  payloadFormatIndicator: 32,
  msgId: 64,
} as const
const KNOWN_FLAGS = 127

/** The MQTT 5 PUBLISH properties a stream keeps with each message (MQTT 5 section 3.3.2.3). */
export interface RecordHeaders {
  /** 3.3.2.3.2; 0 = unspecified bytes, 1 = UTF-8 text. */
  payloadFormatIndicator?: number | undefined
  /** 3.3.2.3.3, seconds; counted from the record's timestamp when the message is replayed. */
  messageExpiryInterval?: number | undefined
  /** 3.3.2.3.5 */
  responseTopic?: string | undefined
  /** 3.3.2.3.6 */
  correlationData?: Uint8Array | undefined
  /** 3.3.2.3.7, in order, duplicates allowed [MQTT-3.3.2-18]. */
  userProperties?: ReadonlyArray<readonly [string, string]> | undefined
  /** 3.3.2.3.9 */
  contentType?: string | undefined
}

/** What a caller hands to the journal. */
export interface RecordInput {
  /** The canonical MQTT topic the message was published to. */
  subject: string
  payload: Uint8Array
  headers?: RecordHeaders | null | undefined
  /** Milliseconds since the epoch; the journal's clock when absent. */
  timestamp?: number | undefined
  /** A publisher-chosen id for duplicate detection (see dedupe.ts); stored so the window survives restarts. */
  msgId?: string | null | undefined
}

/** One record as read back. `payload` is a view of a read buffer shared with neighbouring records: copy it to keep it long. */
export class StoredRecord {
  constructor(
    readonly seq: number,
    readonly timestamp: number,
    readonly subject: string,
    readonly payload: Buffer,
    readonly headers: RecordHeaders | null,
    readonly msgId: string | null,
    /** Bytes the record takes on disk (its whole frame). */
    readonly size: number,
  ) {}
}

function invalid(message: string, detail: Record<string, unknown> = {}): never {
  throw new EdgebusError('ERECORD_INVALID', message, detail)
}

/** An upper bound of the frame size of `rec` (exact for ASCII strings): what to reserve before encodeRecord. */
export function maxEncodedSize(rec: RecordInput): number {
  let n = RECORD_MIN_BYTES + rec.subject.length * 3 + rec.payload.length
  const h = rec.headers
  if (h) {
    if (h.contentType !== undefined) n += 2 + h.contentType.length * 3
    if (h.responseTopic !== undefined) n += 2 + h.responseTopic.length * 3
    if (h.correlationData !== undefined) n += 2 + h.correlationData.length
    const up = h.userProperties
    if (up !== undefined) {
      n += 2
      for (let i = 0; i < up.length; i++) {
        const p = up[i] as readonly [string, string]
        n += 4 + (p[0].length + p[1].length) * 3
      }
    }
    if (h.messageExpiryInterval !== undefined) n += 4
    if (h.payloadFormatIndicator !== undefined) n += 1
  }
  if (rec.msgId != null) n += 2 + rec.msgId.length * 3
  return n
}

/** Little-endian u64 of a safe integer, by byte stores (typed-array stores keep the low 8 bits). */
function writeU64(buf: Uint8Array, off: number, n: number): void {
  const lo = n >>> 0
  const hi = (n - lo) / TWO32
  buf[off] = lo
  buf[off + 1] = lo >>> 8
  buf[off + 2] = lo >>> 16
  buf[off + 3] = lo >>> 24
  buf[off + 4] = hi
  buf[off + 5] = hi >>> 8
  buf[off + 6] = hi >>> 16
  buf[off + 7] = hi >>> 24
}

function writeU32(buf: Uint8Array, off: number, n: number): void {
  buf[off] = n
  buf[off + 1] = n >>> 8
  buf[off + 2] = n >>> 16
  buf[off + 3] = n >>> 24
}

function readU64(buf: Uint8Array, off: number): number {
  return (
    ((buf[off] as number) | ((buf[off + 1] as number) << 8) | ((buf[off + 2] as number) << 16)) +
    (buf[off + 3] as number) * 0x1000000 +
    ((buf[off + 4] as number) | ((buf[off + 5] as number) << 8) | ((buf[off + 6] as number) << 16)) * TWO32 +
    (buf[off + 7] as number) * 0x1000000 * TWO32
  )
}

function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off] as number) | ((buf[off + 1] as number) << 8) | ((buf[off + 2] as number) << 16)) + (buf[off + 3] as number) * 0x1000000
}

function readU16(buf: Uint8Array, off: number): number {
  return (buf[off] as number) | ((buf[off + 1] as number) << 8)
}

/** Writes a u16-length-prefixed UTF-8 string at `off`; returns the offset after it. */
function writeStr(buf: Buffer, off: number, s: string, field: string): number {
  const p = off + 2
  const len = s.length
  if (len <= 128) {
    // short ASCII (topics, content types, ids) is copied by hand: cheaper than a call into the encoder
    let i = 0
    for (; i < len; i++) {
      const c = s.charCodeAt(i)
      if (c > 0x7f) break
      buf[p + i] = c
    }
    if (i === len) {
      buf[off] = len
      buf[off + 1] = len >>> 8
      return p + len
    }
  }
  const n = buf.write(s, p, 'utf8')
  if (n > MAX_U16) invalid(`record ${field} is longer than 65535 bytes`, { field, bytes: n })
  buf[off] = n & 0xff
  buf[off + 1] = n >>> 8
  return off + 2 + n
}

function writeBytes(buf: Buffer, off: number, b: Uint8Array, field: string): number {
  if (b.length > MAX_U16) invalid(`record ${field} is longer than 65535 bytes`, { field, bytes: b.length })
  buf[off] = b.length & 0xff
  buf[off + 1] = b.length >>> 8
  buf.set(b, off + 2)
  return off + 2 + b.length
}

/**
 * Encodes one frame at `buf[off]`; `buf` must have maxEncodedSize(rec) bytes free there.
 * Returns the frame length. `seq` and `timestamp` must be safe non-negative integers.
 */
export function encodeRecord(buf: Buffer, off: number, seq: number, timestamp: number, rec: RecordInput): number {
  const h = rec.headers
  let flags = 0
  buf[off] = RECORD_MAGIC
  buf[off + 1] = RECORD_VERSION
  writeU64(buf, off + OFF_SEQ, seq)
  writeU64(buf, off + OFF_TIME, timestamp)
  let p = writeStr(buf, off + OFF_SUBJECT, rec.subject, 'subject')
  if (h) {
    // field order is the flag-bit order (FORMAT.md)
    if (h.contentType !== undefined) { flags |= RecordFlags.contentType; p = writeStr(buf, p, h.contentType, 'contentType') }
    if (h.responseTopic !== undefined) { flags |= RecordFlags.responseTopic; p = writeStr(buf, p, h.responseTopic, 'responseTopic') }
    if (h.correlationData !== undefined) { flags |= RecordFlags.correlationData; p = writeBytes(buf, p, h.correlationData, 'correlationData') }
    const up = h.userProperties
    if (up !== undefined) {
      if (up.length > MAX_U16) invalid('a record has more than 65535 user properties', { count: up.length })
      flags |= RecordFlags.userProperties
      buf[p] = up.length
      buf[p + 1] = up.length >>> 8
      p += 2
      for (let i = 0; i < up.length; i++) {
        const pair = up[i] as readonly [string, string]
        p = writeStr(buf, p, pair[0], 'userProperty')
        p = writeStr(buf, p, pair[1], 'userProperty')
      }
    }
    if (h.messageExpiryInterval !== undefined) {
      const v = h.messageExpiryInterval
      if (!(v >= 0 && v <= 0xffffffff && Number.isInteger(v))) invalid('messageExpiryInterval must be a uint32', { value: v })
      flags |= RecordFlags.messageExpiryInterval
      writeU32(buf, p, v)
      p += 4
    }
    if (h.payloadFormatIndicator !== undefined) {
      const v = h.payloadFormatIndicator
      if (v !== 0 && v !== 1) invalid('payloadFormatIndicator must be 0 or 1', { value: v }) // [MQTT-3.3.2.3.2]
      flags |= RecordFlags.payloadFormatIndicator
      buf[p++] = v
    }
  }
  if (rec.msgId != null) { flags |= RecordFlags.msgId; p = writeStr(buf, p, rec.msgId, 'msgId') }
  buf.set(rec.payload, p)
  p += rec.payload.length
  const len = p + 4 - off
  if (len > RECORD_MAX_BYTES) invalid('record is larger than the journal accepts', { bytes: len, max: RECORD_MAX_BYTES })
  buf[off + OFF_FLAGS] = flags
  buf[off + OFF_FLAGS + 1] = 0
  writeU32(buf, off + OFF_LEN, len)
  writeU32(buf, p, crc32c(buf, off, p))
  return len
}

/**
 * The frame length claimed by the 8 header bytes at `off`, or -1 when they cannot start a frame
 * (wrong magic, length out of range). Says nothing of the version or the CRC.
 */
export function claimedFrameLength(buf: Uint8Array, off: number): number {
  if (buf[off] !== RECORD_MAGIC) return -1
  const len = readU32(buf, off + OFF_LEN)
  return len < RECORD_MIN_BYTES || len > RECORD_MAX_BYTES ? -1 : len
}

/** Whether the CRC of the `len`-byte frame at `off` matches. */
export function frameCrcMatches(buf: Uint8Array, off: number, len: number): boolean {
  return crc32c(buf, off, off + len - 4) === readU32(buf, off + len - 4)
}

/** Whether a frame (with a matching CRC) is one this code can decode: known version and flags. */
export function frameIsSupported(buf: Uint8Array, off: number): boolean {
  return buf[off + 1] === RECORD_VERSION && (readU16(buf, off + OFF_FLAGS) & ~KNOWN_FLAGS) === 0
}

export function frameSeq(buf: Uint8Array, off: number): number {
  return readU64(buf, off + OFF_SEQ)
}

export function frameTimestamp(buf: Uint8Array, off: number): number {
  return readU64(buf, off + OFF_TIME)
}

/** The subject of a checked frame, decoded (for per-subject bookkeeping without decoding the rest). */
export function frameSubject(buf: Buffer, off: number): string {
  const n = readU16(buf, off + OFF_SUBJECT)
  return buf.toString('utf8', off + OFF_SUBJECT + 2, off + OFF_SUBJECT + 2 + n)
}

/**
 * Decodes a frame whose CRC was checked. The payload (and correlation data) are views of `buf`.
 * A frame whose fields overrun its length cannot pass the CRC, but is refused here anyway.
 */
/**
 * A record decoded in place: its payload stays in `buf` (a read buffer the journal reuses), so it
 * is valid only while the visit that received it runs. Replays visit millions of records; one view
 * and no payload slice per record is what lets them run at a million a second.
 */
export class RecordView {
  seq = 0
  timestamp = 0
  subject = ''
  buf: Buffer = Buffer.alloc(0)
  payloadStart = 0
  payloadEnd = 0
  headers: RecordHeaders | null = null
  msgId: string | null = null
  /** Bytes the record takes on disk (its whole frame). */
  size = 0

  /** The record as a StoredRecord (its payload a view of `buf`, which `fresh` cursors never reuse). */
  toRecord(): StoredRecord {
    return new StoredRecord(this.seq, this.timestamp, this.subject, this.buf.subarray(this.payloadStart, this.payloadEnd), this.headers, this.msgId, this.size)
  }
}

/** Decodes the frame at `off` (already checked: CRC, version, length) into `view`. */
export function decodeRecordInto(buf: Buffer, off: number, len: number, view: RecordView): RecordView {
  const end = off + len - 4
  const flags = readU16(buf, off + OFF_FLAGS)
  dpos = off + OFF_SUBJECT
  view.subject = readSubject(buf)
  let headers: RecordHeaders | null = null
  if ((flags & ~RecordFlags.msgId) !== 0) {
    headers = {}
    if (flags & RecordFlags.contentType) headers.contentType = readStr(buf)
    if (flags & RecordFlags.responseTopic) headers.responseTopic = readStr(buf)
    if (flags & RecordFlags.correlationData) {
      const n = readU16(buf, dpos)
      headers.correlationData = buf.subarray(dpos + 2, dpos + 2 + n)
      dpos += 2 + n
    }
    if (flags & RecordFlags.userProperties) {
      const count = readU16(buf, dpos)
      dpos += 2
      const up: Array<[string, string]> = new Array(count)
      for (let i = 0; i < count; i++) {
        const k = readStr(buf)
        up[i] = [k, readStr(buf)]
      }
      headers.userProperties = up
    }
    if (flags & RecordFlags.messageExpiryInterval) { headers.messageExpiryInterval = readU32(buf, dpos); dpos += 4 }
    if (flags & RecordFlags.payloadFormatIndicator) headers.payloadFormatIndicator = buf[dpos++] as number
  }
  view.headers = headers
  view.msgId = flags & RecordFlags.msgId ? readStr(buf) : null
  if (dpos > end) invalid('record fields overrun the frame', { seq: frameSeq(buf, off) })
  view.seq = frameSeq(buf, off)
  view.timestamp = frameTimestamp(buf, off)
  view.buf = buf
  view.payloadStart = dpos
  view.payloadEnd = end
  view.size = len
  return view
}

const scratchView = new RecordView()

export function decodeRecord(buf: Buffer, off: number, len: number): StoredRecord {
  return decodeRecordInto(buf, off, len, scratchView).toRecord()
}

/** Decoder position shared by decodeRecord and readStr (single-threaded, so no closure per decode). */
let dpos = 0

/** The last subject decoded, as bytes and string: replays meet the same few subjects again and again. */
const lastSubjectBytes = Buffer.alloc(256)
let lastSubjectLen = -1
let lastSubject = ''

function readSubject(buf: Buffer): string {
  const n = readU16(buf, dpos)
  const at = dpos + 2
  dpos = at + n
  if (n === lastSubjectLen) {
    let i = 0
    while (i < n && buf[at + i] === lastSubjectBytes[i]) i++
    if (i === n) return lastSubject
  }
  const s = n === 0 ? '' : buf.toString('utf8', at, at + n)
  if (n <= lastSubjectBytes.length) {
    buf.copy(lastSubjectBytes, 0, at, at + n)
    lastSubjectLen = n
    lastSubject = s
  }
  return s
}

function readStr(buf: Buffer): string {
  const n = readU16(buf, dpos)
  const s = n === 0 ? '' : buf.toString('utf8', dpos + 2, dpos + 2 + n)
  dpos += 2 + n
  return s
}

/** Only the msg-id of a checked frame, or null (to rebuild the duplicate window without decoding payloads). */
export function frameMsgId(buf: Buffer, off: number): string | null {
  const flags = readU16(buf, off + OFF_FLAGS)
  if ((flags & RecordFlags.msgId) === 0) return null
  return decodeRecord(buf, off, readU32(buf, off + OFF_LEN)).msgId
}
