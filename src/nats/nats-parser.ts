/**
 * The client side of the NATS client protocol, read byte by byte as it arrives ("Client Protocol",
 * docs.nats.io/reference/reference-protocols/nats-protocol): a control line ends in CRLF, PUB and
 * HPUB are followed by a payload of the announced size and CRLF. Reads may split anything anywhere,
 * and one read may hold many operations. Pure: no I/O; the connection acts on what it yields.
 */

export type NatsOp =
  | { readonly op: 'CONNECT'; readonly json: string }
  | { readonly op: 'PUB'; readonly subject: string; readonly reply: string | null; readonly headers: Buffer | null; readonly payload: Buffer }
  | { readonly op: 'SUB'; readonly subject: string; readonly queue: string | null; readonly sid: string }
  | { readonly op: 'UNSUB'; readonly sid: string; readonly max: number }
  | { readonly op: 'PING' }
  | { readonly op: 'PONG' }
  /** +OK, -ERR and INFO from a client carry nothing we act on. */
  | { readonly op: 'IGNORED' }

/** A protocol error: the -ERR text clients match, and whether the connection must close. */
export interface NatsProtocolError {
  readonly message: string
  readonly fatal: boolean
}

export interface NatsParserLimits {
  /** Longest control line in bytes (nats-server's max_control_line is 4 KiB). */
  readonly maxControlLine: number
  /** Largest PUB/HPUB payload, headers included (told to clients as INFO max_payload). */
  readonly maxPayload: number
}

const CR = 13
const LF = 10

const PING: NatsOp = Object.freeze({ op: 'PING' })
const PONG: NatsOp = Object.freeze({ op: 'PONG' })
const IGNORED: NatsOp = Object.freeze({ op: 'IGNORED' })
const EMPTY = Buffer.alloc(0)

/** Splits a control line's arguments on spaces and tabs. */
function splitArgs(line: string): string[] {
  const out: string[] = []
  let start = -1
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i)
    if (c === 32 || c === 9) {
      if (start !== -1) { out.push(line.slice(start, i)); start = -1 }
    } else if (start === -1) {
      start = i
    }
  }
  if (start !== -1) out.push(line.slice(start))
  return out
}

/** A byte count argument: decimal digits only. */
function size(s: string | undefined): number {
  if (s === undefined || s.length === 0 || s.length > 12) return -1
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 48 || c > 57) return -1
  }
  return Number(s)
}

interface PendingPub {
  subject: string
  reply: string | null
  /** Header bytes (HPUB), or -1 for PUB. */
  headerSize: number
  /** Payload bytes announced (headers included). */
  size: number
  /** Where a payload split across reads is gathered (with its CRLF); empty until needed. */
  buf: Buffer
  filled: number
}

/** A PUB or HPUB with its payload (HPUB: the header block first). */
function pubOp(p: PendingPub, body: Buffer): NatsOp {
  return p.headerSize < 0
    ? { op: 'PUB', subject: p.subject, reply: p.reply, headers: null, payload: body }
    : { op: 'PUB', subject: p.subject, reply: p.reply, headers: body.subarray(0, p.headerSize), payload: body.subarray(p.headerSize) }
}

export class NatsParser {
  readonly #limits: NatsParserLimits
  /** Part of a control line not ended yet. */
  #line: Buffer | null = null
  /** A PUB/HPUB whose payload (and its CRLF) is still arriving. */
  #pub: PendingPub | null = null
  #failed = false

  constructor(limits: NatsParserLimits) {
    this.#limits = limits
  }

  /**
   * Reads one chunk; calls `onOp` for each complete operation in order. Returns null, or the
   * error that stopped it (after a fatal one the parser reads nothing more). `onOp` returning
   * false stops this call early; the rest of the chunk is returned as `rest` for later.
   */
  feed(chunk: Buffer, onOp: (op: NatsOp) => boolean): { error: NatsProtocolError | null; rest: Buffer | null } {
    if (this.#failed) return { error: null, rest: null }
    let data = chunk
    let pos = 0
    if (this.#line !== null) {
      data = Buffer.concat([this.#line, chunk])
      this.#line = null
    }
    while (pos < data.length) {
      const pub = this.#pub
      if (pub !== null) {
        // payload bytes, then CRLF
        const want = pub.buf.length - pub.filled
        const n = Math.min(want, data.length - pos)
        data.copy(pub.buf, pub.filled, pos, pos + n)
        pub.filled += n
        pos += n
        if (pub.filled < pub.buf.length) break
        const b = pub.buf
        if (b[b.length - 2] !== CR || b[b.length - 1] !== LF) return this.#fail('Parser Error: payload not followed by CRLF', true)
        this.#pub = null
        if (!onOp(pubOp(pub, b.subarray(0, b.length - 2)))) return { error: null, rest: pos < data.length ? data.subarray(pos) : null }
        continue
      }
      const nl = data.indexOf(LF, pos)
      if (nl === -1) {
        if (data.length - pos > this.#limits.maxControlLine) return this.#fail('maximum control line exceeded', true)
        this.#line = Buffer.from(data.subarray(pos))
        break
      }
      if (nl - pos > this.#limits.maxControlLine) return this.#fail('maximum control line exceeded', true)
      const end = nl > pos && data[nl - 1] === CR ? nl - 1 : nl
      const line = data.toString('utf8', pos, end)
      pos = nl + 1
      const r = this.#control(line)
      if (r === null) continue // an empty line
      if (r === PUB_STARTED) {
        // the whole payload in this read (the common case): a view of it, no copy
        const p = this.#pub as PendingPub
        const total = p.size + 2
        if (data.length - pos >= total) {
          this.#pub = null
          if (data[pos + total - 2] !== CR || data[pos + total - 1] !== LF) return this.#fail('Parser Error: payload not followed by CRLF', true)
          const body = data.subarray(pos, pos + p.size)
          pos += total
          if (!onOp(pubOp(p, body))) return { error: null, rest: pos < data.length ? data.subarray(pos) : null }
        } else {
          p.buf = Buffer.allocUnsafe(total)
        }
        continue
      }
      if ('message' in r) {
        if (r.fatal) return this.#fail(r.message, true)
        return { error: r, rest: pos < data.length ? data.subarray(pos) : null }
      }
      if (!onOp(r)) return { error: null, rest: pos < data.length ? data.subarray(pos) : null }
    }
    return { error: null, rest: null }
  }

  #fail(message: string, fatal: boolean): { error: NatsProtocolError; rest: null } {
    if (fatal) {
      this.#failed = true
      this.#line = null
      this.#pub = null
    }
    return { error: { message, fatal }, rest: null }
  }

  /** One control line: an operation, PUB_STARTED (its payload follows), null (empty) or an error. */
  #control(line: string): NatsOp | typeof PUB_STARTED | NatsProtocolError | null {
    const args = splitArgs(line)
    const name = args[0]
    if (name === undefined) return null
    switch (name.toUpperCase()) {
      case 'PUB': {
        // PUB <subject> [reply-to] <#bytes>
        if (args.length !== 3 && args.length !== 4) return { message: 'Parser Error: PUB <subject> [reply-to] <#bytes>', fatal: true }
        const n = size(args[args.length - 1])
        if (n < 0) return { message: 'Parser Error: PUB size is not a number', fatal: true }
        if (n > this.#limits.maxPayload) return { message: 'Maximum Payload Violation', fatal: true }
        this.#pub = { subject: args[1] as string, reply: args.length === 4 ? (args[2] as string) : null, headerSize: -1, size: n, buf: EMPTY, filled: 0 }
        return PUB_STARTED
      }
      case 'HPUB': {
        // HPUB <subject> [reply-to] <#header bytes> <#total bytes>
        if (args.length !== 4 && args.length !== 5) return { message: 'Parser Error: HPUB <subject> [reply-to] <#header bytes> <#total bytes>', fatal: true }
        const h = size(args[args.length - 2])
        const n = size(args[args.length - 1])
        if (h < 0 || n < 0 || h > n) return { message: 'Parser Error: HPUB sizes are not numbers, or headers are over the total', fatal: true }
        if (n > this.#limits.maxPayload) return { message: 'Maximum Payload Violation', fatal: true }
        this.#pub = { subject: args[1] as string, reply: args.length === 5 ? (args[2] as string) : null, headerSize: h, size: n, buf: EMPTY, filled: 0 }
        return PUB_STARTED
      }
      case 'SUB':
        // SUB <subject> [queue group] <sid>
        if (args.length !== 3 && args.length !== 4) return { message: 'Parser Error: SUB <subject> [queue group] <sid>', fatal: true }
        return { op: 'SUB', subject: args[1] as string, queue: args.length === 4 ? (args[2] as string) : null, sid: args[args.length - 1] as string }
      case 'UNSUB': {
        // UNSUB <sid> [max_msgs]
        if (args.length !== 2 && args.length !== 3) return { message: 'Parser Error: UNSUB <sid> [max_msgs]', fatal: true }
        const max = args.length === 3 ? size(args[2]) : 0
        if (max < 0) return { message: 'Parser Error: UNSUB max_msgs is not a number', fatal: true }
        return { op: 'UNSUB', sid: args[1] as string, max }
      }
      case 'PING': return args.length === 1 ? PING : { message: 'Unknown Protocol Operation', fatal: true }
      case 'PONG': return args.length === 1 ? PONG : { message: 'Unknown Protocol Operation', fatal: true }
      case 'CONNECT': {
        const i = line.search(/[{]/)
        if (i === -1) return { message: 'Parser Error: CONNECT {json}', fatal: true }
        return { op: 'CONNECT', json: line.slice(i) }
      }
      case '+OK': case '-ERR': case 'INFO': return IGNORED
      default: return { message: 'Unknown Protocol Operation', fatal: true }
    }
  }
}

const PUB_STARTED = Symbol('pub started')
