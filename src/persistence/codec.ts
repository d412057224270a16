/**
 * The value encoding of the MQTT state log (FORMAT.md, "Values"): a small tagged binary form of the
 * JS values aedes hands to its persistence — packets, subscriptions, MQTT 5 properties. It keeps
 * what JSON loses (Buffers stay Buffers, `undefined` members stay members, -0 and NaN survive), and
 * spends one byte on the names of packet fields that occur in every record.
 *
 * Functions and symbols are not data: members holding them are left out (aedes hangs callbacks
 * such as `writeCallback` on packets).
 */

export const Tag = {
  UNDEFINED: 0,
  NULL: 1,
  FALSE: 2,
  TRUE: 3,
  /** A whole number 0 .. 2^53-1, as a varint. */
  UINT: 4,
  /** A whole number -(2^53-1) .. -1, its magnitude as a varint. */
  NEGINT: 5,
  FLOAT64: 6,
  /** varint byte length, UTF-8 bytes. */
  STRING: 7,
  /** varint byte length, the bytes; read back as a Buffer. */
  BYTES: 8,
  /** varint count, the items. */
  ARRAY: 9,
  /** varint count, then per member: its name (varint: 0 = a string follows, n = KNOWN_KEYS[n-1]) and its value. */
  OBJECT: 10,
} as const

/**
 * Member names written as one byte. Append only: a name's position is part of the file format.
 */
export const KNOWN_KEYS = [
  'cmd', 'topic', 'payload', 'qos', 'retain', 'dup', 'messageId', 'brokerId', 'brokerCounter', 'clientId',
  'properties', 'messageExpiry', 'nl', 'rap', 'rh', 'subscriptionIdentifier', 'length', 'userProperties',
  'correlationData', 'responseTopic', 'contentType', 'payloadFormatIndicator', 'messageExpiryInterval',
  'topicAlias', 'willDelayInterval', 'reasonCode', 'id',
] as const

const KEY_INDEX: ReadonlyMap<string, number> = new Map(KNOWN_KEYS.map((k, i) => [k, i + 1]))

/** A growable output buffer; records are encoded straight into it. */
export class ByteSink {
  buf: Buffer
  pos = 0

  constructor(initialSize = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initialSize)
  }

  /** Makes room for n more bytes. */
  ensure(n: number): void {
    const need = this.pos + n
    if (need <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < need) size *= 2
    const next = Buffer.allocUnsafe(size)
    this.buf.copy(next, 0, 0, this.pos)
    this.buf = next
  }

  u8(v: number): void {
    this.ensure(1)
    this.buf[this.pos++] = v
  }

  varint(v: number): void {
    this.ensure(8)
    const buf = this.buf
    // 7 bits per byte; arithmetic rather than bit operators above 2^31
    while (v >= 0x80) {
      buf[this.pos++] = (v % 0x80) | 0x80
      v = Math.floor(v / 0x80)
    }
    buf[this.pos++] = v
  }

  string(s: string): void {
    const n = Buffer.byteLength(s, 'utf8')
    this.varint(n)
    this.ensure(n)
    this.buf.write(s, this.pos, n, 'utf8')
    this.pos += n
  }

  bytes(b: Uint8Array): void {
    this.varint(b.length)
    this.ensure(b.length)
    this.buf.set(b, this.pos)
    this.pos += b.length
  }

  /** Starts over, keeping the memory; a buffer that grew past `shrinkAbove` is let go. */
  reset(shrinkAbove = 4 * 1024 * 1024): void {
    this.pos = 0
    if (this.buf.length > shrinkAbove) this.buf = Buffer.allocUnsafe(64 * 1024)
  }
}

/** Thrown when bytes that passed their checksum still do not decode (a bug or an undetected corruption). */
export class DecodeError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'DecodeError'
  }
}

export function writeValue(s: ByteSink, v: unknown): void {
  switch (typeof v) {
    case 'undefined':
      s.u8(Tag.UNDEFINED)
      return
    case 'boolean':
      s.u8(v ? Tag.TRUE : Tag.FALSE)
      return
    case 'number':
      if (Number.isSafeInteger(v) && !Object.is(v, -0)) {
        if (v >= 0) { s.u8(Tag.UINT); s.varint(v) } else { s.u8(Tag.NEGINT); s.varint(-v) }
      } else {
        s.u8(Tag.FLOAT64)
        s.ensure(8)
        s.buf.writeDoubleLE(v, s.pos)
        s.pos += 8
      }
      return
    case 'string':
      s.u8(Tag.STRING)
      s.string(v)
      return
    case 'bigint':
      // not produced by aedes; kept as its decimal text rather than lost
      s.u8(Tag.STRING)
      s.string(v.toString())
      return
    case 'object':
      if (v === null) { s.u8(Tag.NULL); return }
      if (v instanceof Uint8Array) { s.u8(Tag.BYTES); s.bytes(v); return }
      if (Array.isArray(v)) {
        s.u8(Tag.ARRAY)
        s.varint(v.length)
        for (let i = 0; i < v.length; i++) writeValue(s, v[i])
        return
      }
      writeObject(s, v as Record<string, unknown>)
      return
    default:
      // functions and symbols are not data (callers skip such members; a bare one reads back as undefined)
      s.u8(Tag.UNDEFINED)
  }
}

function writeObject(s: ByteSink, o: Record<string, unknown>): void {
  s.u8(Tag.OBJECT)
  const countAt = s.pos
  // the member count is not known until functions are skipped: reserve a fixed 3-byte varint
  s.ensure(3)
  s.pos += 3
  let count = 0
  for (const key in o) {
    if (!Object.prototype.hasOwnProperty.call(o, key)) continue
    const value = o[key]
    if (typeof value === 'function' || typeof value === 'symbol') continue
    const known = KEY_INDEX.get(key)
    if (known !== undefined) s.varint(known)
    else { s.u8(0); s.string(key) }
    writeValue(s, value)
    count++
  }
  // a padded varint: three bytes whatever the count (up to 2^21-1 members)
  if (count > 0x1fffff) throw new RangeError('an object with more than 2^21-1 members cannot be stored')
  s.buf[countAt] = (count & 0x7f) | 0x80
  s.buf[countAt + 1] = ((count >> 7) & 0x7f) | 0x80
  s.buf[countAt + 2] = (count >> 14) & 0x7f
}

/** Reads values from one record's bytes; every read is bounds-checked (DecodeError). */
export class ByteReader {
  pos: number

  constructor(readonly buf: Buffer, start: number, readonly end: number) {
    this.pos = start
  }

  u8(): number {
    if (this.pos >= this.end) throw new DecodeError('record ends early')
    return this.buf[this.pos++] as number
  }

  varint(): number {
    let result = 0
    let factor = 1
    for (let i = 0; i < 8; i++) {
      const b = this.u8()
      result += (b & 0x7f) * factor
      if ((b & 0x80) === 0) {
        if (!Number.isSafeInteger(result)) throw new DecodeError('number out of range')
        return result
      }
      factor *= 0x80
    }
    throw new DecodeError('varint too long')
  }

  take(n: number): number {
    const at = this.pos
    if (n > this.end - at) throw new DecodeError('record ends early')
    this.pos = at + n
    return at
  }

  atEnd(): boolean {
    return this.pos === this.end
  }
}

const MAX_DEPTH = 32

export function readValue(r: ByteReader, depth = 0): unknown {
  if (depth > MAX_DEPTH) throw new DecodeError('values nested too deep')
  const tag = r.u8()
  switch (tag) {
    case Tag.UNDEFINED: return undefined
    case Tag.NULL: return null
    case Tag.FALSE: return false
    case Tag.TRUE: return true
    case Tag.UINT: return r.varint()
    case Tag.NEGINT: return -r.varint()
    case Tag.FLOAT64: {
      const at = r.take(8)
      return r.buf.readDoubleLE(at)
    }
    case Tag.STRING: {
      const n = r.varint()
      const at = r.take(n)
      return r.buf.toString('utf8', at, at + n)
    }
    case Tag.BYTES: {
      const n = r.varint()
      const at = r.take(n)
      // a copy: a slice would pin the whole file buffer read at start-up
      return Buffer.from(r.buf.subarray(at, at + n))
    }
    case Tag.ARRAY: {
      const n = r.varint()
      if (n > r.end - r.pos) throw new DecodeError('array longer than its record')
      const out: unknown[] = new Array(n)
      for (let i = 0; i < n; i++) out[i] = readValue(r, depth + 1)
      return out
    }
    case Tag.OBJECT: {
      const n = r.varint()
      if (n > r.end - r.pos) throw new DecodeError('object larger than its record')
      const out: Record<string, unknown> = {}
      for (let i = 0; i < n; i++) {
        const k = r.varint()
        let key: string
        if (k === 0) {
          const len = r.varint()
          const at = r.take(len)
          key = r.buf.toString('utf8', at, at + len)
        } else {
          const known = KNOWN_KEYS[k - 1]
          if (known === undefined) throw new DecodeError(`unknown member name ${k}`)
          key = known
        }
        const value = readValue(r, depth + 1)
        // '__proto__' is data here (an MQTT user property may be called that), never a prototype
        if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
        else out[key] = value
      }
      return out
    }
    default:
      throw new DecodeError(`unknown value tag ${tag}`)
  }
}
