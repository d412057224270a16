import { isUtf8 } from 'node:buffer'
import type { RecordHeaders } from '../stream/record.ts'

/**
 * Stream records as JSON lines, written straight into one output Buffer: replay sends millions of
 * them, and building strings per record (then encoding them again for the socket) costs more than
 * reading the journal. One line:
 *
 *   {"seq":42,"time":"2026-11-23T10:00:00.000Z","subject":"sensors/a","payload":"21.5"}
 *
 * `payload_base64` instead of `payload` when the payload is not UTF-8; `contentType` and
 * `userProperties` when the message had them. As Server-Sent Events each line is framed as
 * `id: <seq>\ndata: <line>\n\n`.
 */
export class RecordLines {
  #buf: Buffer
  #len = 0
  readonly #sse: boolean
  #lastTime = -1
  #lastSubject = ''
  #lastKind = -1
  #mid = Buffer.alloc(0)

  constructor(sse: boolean, capacity = 256 * 1024) {
    this.#sse = sse
    this.#buf = Buffer.allocUnsafe(capacity)
  }

  /** Bytes gathered so far. */
  get length(): number {
    return this.#len
  }

  /** The gathered bytes (a copy: the buffer is reused), and starts again. */
  take(): Buffer {
    const out = Buffer.from(this.#buf.subarray(0, this.#len))
    this.#len = 0
    return out
  }

  add(seq: number, timestamp: number, subject: string, payload: Buffer, headers: RecordHeaders | null): void {
    const plain = isPlainText(payload)
    const utf8 = !plain && isUtf8(payload)
    const kind = plain ? 0 : utf8 ? 1 : 2
    if (timestamp !== this.#lastTime || subject !== this.#lastSubject || kind !== this.#lastKind) this.#middle(timestamp, subject, kind)
    const text = utf8 ? JSON.stringify(payload.toString('utf8')) : null
    const extra = headers === null ? '' : headerJson(headers)
    // an upper bound of the line: SSE id and seq digits (2 x 16) with the fixed bytes around them, the middle, payload, headers
    const payloadBytes = plain ? payload.length : utf8 ? Buffer.byteLength(text as string) : Math.ceil(payload.length / 3) * 4
    const need = 96 + this.#mid.length + payloadBytes + (extra === '' ? 0 : Buffer.byteLength(extra))
    this.#reserve(need)
    const b = this.#buf
    let o = this.#len
    if (this.#sse) { o = ascii(b, o, 'id: '); o = digits(b, o, seq); o = ascii(b, o, '\ndata: ') }
    o = ascii(b, o, '{"seq":')
    o = digits(b, o, seq)
    // `,"time":"…","subject":…,"payload…":` in one piece: it changes only with the millisecond or the subject
    o = copy(this.#mid, b, o)
    if (plain) {
      o = copy(payload, b, o)
      b[o++] = 0x22
    } else if (utf8) {
      o += b.write(text as string, o, 'utf8')
    } else {
      o = base64(payload, b, o)
      b[o++] = 0x22
    }
    if (extra !== '') o += b.write(extra, o, 'utf8')
    b[o++] = 0x7d // }
    b[o++] = 0x0a
    if (this.#sse) b[o++] = 0x0a
    this.#len = o
  }

  /** The part of a line between the sequence and the payload, for this time, subject and payload kind. */
  #middle(timestamp: number, subject: string, kind: number): void {
    this.#lastTime = timestamp
    this.#lastSubject = subject
    this.#lastKind = kind
    const key = kind === 2 ? ',"payload_base64":"' : kind === 1 ? ',"payload":' : ',"payload":"'
    this.#mid = Buffer.from(`,"time":"${new Date(timestamp).toISOString()}","subject":${JSON.stringify(subject)}${key}`)
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return
    const grown = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + n))
    this.#buf.copy(grown, 0, 0, this.#len)
    this.#buf = grown
  }
}

/** Printable ASCII without `"` and `\`: the bytes can go into a JSON string as they are. */
function isPlainText(p: Buffer): boolean {
  for (let i = 0; i < p.length; i++) {
    const c = p[i] as number
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return false
  }
  return true
}

function headerJson(h: RecordHeaders): string {
  let s = ''
  if (h.contentType !== undefined) s += `,"contentType":${JSON.stringify(h.contentType)}`
  if (h.userProperties !== undefined) s += `,"userProperties":${JSON.stringify(h.userProperties)}`
  return s
}

function ascii(b: Buffer, o: number, s: string): number {
  for (let i = 0; i < s.length; i++) b[o++] = s.charCodeAt(i)
  return o
}

/** Small copies in JS: cheaper than a call into C++ for a few dozen bytes. */
function copy(src: Buffer, b: Buffer, o: number): number {
  const n = src.length
  if (n > 64) return o + src.copy(b, o)
  for (let i = 0; i < n; i++) b[o++] = src[i] as number
  return o
}

const B64 = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/')

/** Standard base64 with padding (RFC 4648 §4), written in place: no string per payload. */
function base64(src: Buffer, b: Buffer, o: number): number {
  const n = src.length
  const whole = n - (n % 3)
  let i = 0
  for (; i < whole; i += 3) {
    const v = ((src[i] as number) << 16) | ((src[i + 1] as number) << 8) | (src[i + 2] as number)
    b[o++] = B64[v >>> 18] as number
    b[o++] = B64[(v >>> 12) & 63] as number
    b[o++] = B64[(v >>> 6) & 63] as number
    b[o++] = B64[v & 63] as number
  }
  if (i < n) {
    const v = ((src[i] as number) << 16) | (i + 1 < n ? (src[i + 1] as number) << 8 : 0)
    b[o++] = B64[v >>> 18] as number
    b[o++] = B64[(v >>> 12) & 63] as number
    b[o++] = i + 1 < n ? B64[(v >>> 6) & 63] as number : 0x3d
    b[o++] = 0x3d
  }
  return o
}

function digits(b: Buffer, o: number, n: number): number {
  if (n < 10) { b[o] = 0x30 + n; return o + 1 }
  const s = String(n)
  return ascii(b, o, s)
}
