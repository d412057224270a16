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
  /** Chunks handed out by take() and given back by recycle(), to fill again. */
  readonly #spare: Buffer[] = []

  constructor(sse: boolean, capacity = 256 * 1024) {
    this.#sse = sse
    this.#buf = Buffer.allocUnsafe(capacity)
  }

  /** Bytes gathered so far. */
  get length(): number {
    return this.#len
  }

  /**
   * The gathered bytes, and starts again. A small chunk is a copy; a large one is handed over
   * whole (no copy of a quarter megabyte per write): give it back with recycle() once written.
   */
  take(): Buffer {
    const len = this.#len
    this.#len = 0
    if (len < 16 * 1024) return Buffer.from(this.#buf.subarray(0, len))
    const out = this.#buf.subarray(0, len)
    this.#buf = this.#spare.pop() ?? Buffer.allocUnsafe(this.#buf.length)
    return out
  }

  /** A chunk from take() that the socket has written: its memory is filled again. */
  recycle(chunk: Buffer): void {
    const whole = chunk.buffer
    if (this.#spare.length < 2 && chunk.byteOffset === 0 && whole.byteLength === this.#buf.length) this.#spare.push(Buffer.from(whole))
  }

  /** One line for the record; its payload is `src[start, end)`. */
  add(seq: number, timestamp: number, subject: string, src: Buffer, start: number, end: number, headers: RecordHeaders | null): void {
    const kind = payloadKind(src, start, end)
    if (timestamp !== this.#lastTime || subject !== this.#lastSubject || kind !== this.#lastKind) this.#middle(timestamp, subject, kind)
    const text = kind === TEXT ? JSON.stringify(src.toString('utf8', start, end)) : null
    const extra = headers === null ? '' : headerJson(headers)
    // an upper bound of the line: SSE id and seq digits (2 x 16) with the fixed bytes around them, the middle, payload, headers
    const payloadBytes = kind === PLAIN ? end - start : kind === TEXT ? Buffer.byteLength(text as string) : Math.ceil((end - start) / 3) * 4
    const need = 96 + this.#mid.length + payloadBytes + (extra === '' ? 0 : Buffer.byteLength(extra))
    this.#reserve(need)
    const b = this.#buf
    let o = this.#len
    if (this.#sse) { o = ascii(b, o, 'id: '); o = digits(b, o, seq); o = ascii(b, o, '\ndata: ') }
    o = ascii(b, o, '{"seq":')
    o = digits(b, o, seq)
    // `,"time":"…","subject":…,"payload…":` in one piece: it changes only with the millisecond or the subject
    b.set(this.#mid, o)
    o += this.#mid.length
    if (kind === PLAIN) {
      o = copy(src, start, end, b, o)
      b[o++] = 0x22
    } else if (kind === TEXT) {
      o += b.write(text as string, o, 'utf8')
    } else {
      o = base64(src, start, end, b, o)
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
    const key = kind === BYTES ? ',"payload_base64":"' : kind === TEXT ? ',"payload":' : ',"payload":"'
    this.#mid = Buffer.from(`,"time":"${new Date(timestamp).toISOString()}","subject":${JSON.stringify(subject)}${key}`)
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return
    const grown = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + n))
    this.#buf.copy(grown, 0, 0, this.#len)
    this.#buf = grown
  }
}

/** Payload kinds: printable ASCII without `"` and `\\` (copied as it is), other UTF-8 (JSON-escaped), bytes (base64). */
const PLAIN = 0
const TEXT = 1
const BYTES = 2

function payloadKind(p: Buffer, start: number, end: number): number {
  for (let i = start; i < end; i++) {
    const c = p[i] as number
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return isUtf8From(p, i, end) ? TEXT : BYTES
  }
  return PLAIN
}

/** Whether `p[i, end)` is well-formed UTF-8 (RFC 3629): short payloads in JS (no view object per record on the replay path), long ones natively. */
function isUtf8From(p: Buffer, i: number, end: number): boolean {
  if (end - i > 256) return isUtf8(p.subarray(i, end))
  while (i < end) {
    const c = p[i] as number
    if (c < 0x80) { i++; continue }
    const n = c >= 0xc2 && c < 0xe0 ? 1 : c >= 0xe0 && c < 0xf0 ? 2 : c >= 0xf0 && c < 0xf5 ? 3 : -1
    if (n < 0 || i + n >= end) return false
    const c1 = p[i + 1] as number
    // the second byte's range excludes overlong forms, surrogates and code points past U+10FFFF
    const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80
    const hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf
    if (c1 < lo || c1 > hi) return false
    for (let k = 2; k <= n; k++) if (((p[i + k] as number) & 0xc0) !== 0x80) return false
    i += n + 1
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
function copy(src: Buffer, start: number, end: number, b: Buffer, o: number): number {
  if (end - start > 64) return o + src.copy(b, o, start, end)
  for (let i = start; i < end; i++) b[o++] = src[i] as number
  return o
}

const B64 = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/')

/** Standard base64 with padding (RFC 4648 §4), written in place: no string per payload. */
function base64(src: Buffer, start: number, n: number, b: Buffer, o: number): number {
  const whole = n - ((n - start) % 3)
  let i = start
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

/** The decimal digits of a non-negative integer, without a string per number. */
function digits(b: Buffer, o: number, n: number): number {
  if (n >= 0x7fffffff) return ascii(b, o, String(n))
  let len = 1
  for (let x = n; x >= 10; x = (x / 10) | 0) len++
  for (let i = o + len - 1, x = n; i >= o; i--, x = (x / 10) | 0) b[i] = 0x30 + (x % 10)
  return o + len
}
