/**
 * A small, independent MQTT 3.1.1 / 5.0 codec and raw TCP client for the conformance suite.
 *
 * It shares no code with the server (nor with mqtt-packet, which the server uses), so a bug in the
 * server's codec cannot be masked by the same bug here. Packets are written byte by byte from the
 * OASIS specifications: MQTT 3.1.1 (section 2 and 3) and MQTT 5.0 (sections 1.5, 2 and 3).
 */
import net from 'node:net'
import { varint } from '../support/raw.ts'

export type Version = 4 | 5

export const T = {
  CONNECT: 1, CONNACK: 2, PUBLISH: 3, PUBACK: 4, PUBREC: 5, PUBREL: 6, PUBCOMP: 7,
  SUBSCRIBE: 8, SUBACK: 9, UNSUBSCRIBE: 10, UNSUBACK: 11, PINGREQ: 12, PINGRESP: 13, DISCONNECT: 14, AUTH: 15,
} as const

export const TYPE_NAME: Record<number, string> = Object.fromEntries(Object.entries(T).map(([k, v]) => [v, k]))

// ---- MQTT 5 properties (section 2.2.2.2) ----------------------------------------------------------

type PropKind = 'byte' | 'u16' | 'u32' | 'varint' | 'str' | 'bin' | 'pair'
const PROPS: Record<string, [number, PropKind]> = {
  payloadFormatIndicator: [0x01, 'byte'],
  messageExpiryInterval: [0x02, 'u32'],
  contentType: [0x03, 'str'],
  responseTopic: [0x08, 'str'],
  correlationData: [0x09, 'bin'],
  subscriptionIdentifier: [0x0b, 'varint'],
  sessionExpiryInterval: [0x11, 'u32'],
  assignedClientIdentifier: [0x12, 'str'],
  serverKeepAlive: [0x13, 'u16'],
  authenticationMethod: [0x15, 'str'],
  authenticationData: [0x16, 'bin'],
  requestProblemInformation: [0x17, 'byte'],
  willDelayInterval: [0x18, 'u32'],
  requestResponseInformation: [0x19, 'byte'],
  responseInformation: [0x1a, 'str'],
  serverReference: [0x1c, 'str'],
  reasonString: [0x1f, 'str'],
  receiveMaximum: [0x21, 'u16'],
  topicAliasMaximum: [0x22, 'u16'],
  topicAlias: [0x23, 'u16'],
  maximumQoS: [0x24, 'byte'],
  retainAvailable: [0x25, 'byte'],
  userProperty: [0x26, 'pair'],
  maximumPacketSize: [0x27, 'u32'],
  wildcardSubscriptionAvailable: [0x28, 'byte'],
  subscriptionIdentifierAvailable: [0x29, 'byte'],
  sharedSubscriptionAvailable: [0x2a, 'byte'],
}
const PROP_BY_ID = new Map<number, [string, PropKind]>(Object.entries(PROPS).map(([name, [id, kind]]) => [id, [name, kind]]))

/** Decoded properties. userProperty keeps order (pairs); subscriptionIdentifier may repeat (array). */
export interface Props {
  payloadFormatIndicator?: number
  messageExpiryInterval?: number
  contentType?: string
  responseTopic?: string
  correlationData?: Buffer
  subscriptionIdentifier?: number[]
  sessionExpiryInterval?: number
  assignedClientIdentifier?: string
  serverKeepAlive?: number
  reasonString?: string
  receiveMaximum?: number
  topicAliasMaximum?: number
  topicAlias?: number
  maximumQoS?: number
  retainAvailable?: number
  userProperty?: Array<[string, string]>
  maximumPacketSize?: number
  wildcardSubscriptionAvailable?: number
  subscriptionIdentifierAvailable?: number
  sharedSubscriptionAvailable?: number
  willDelayInterval?: number
  [k: string]: unknown
}

/** Properties to encode; arrays repeat the property (userProperty pairs, several subscription ids). */
export type PropsIn = Record<string, number | string | Buffer | Array<[string, string]> | number[] | undefined>

export { varint }
const u16 = (n: number): Buffer => Buffer.from([(n >> 8) & 0xff, n & 0xff])
const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b }
export const str = (s: string | Buffer): Buffer => { const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s; return Buffer.concat([u16(b.length), b]) }

export function encodeProps(p: PropsIn = {}): Buffer {
  const parts: Buffer[] = []
  for (const [name, value] of Object.entries(p)) {
    if (value === undefined) continue
    const def = PROPS[name]
    if (!def) throw new Error(`unknown property ${name}`)
    const [id, kind] = def
    const one = (v: unknown): Buffer => {
      switch (kind) {
        case 'byte': return Buffer.from([id, v as number])
        case 'u16': return Buffer.concat([Buffer.from([id]), u16(v as number)])
        case 'u32': return Buffer.concat([Buffer.from([id]), u32(v as number)])
        case 'varint': return Buffer.concat([Buffer.from([id]), varint(v as number)])
        case 'str': return Buffer.concat([Buffer.from([id]), str(v as string)])
        case 'bin': return Buffer.concat([Buffer.from([id]), str(v as Buffer)])
        case 'pair': { const [k, val] = v as [string, string]; return Buffer.concat([Buffer.from([id]), str(k), str(val)]) }
      }
    }
    if (Array.isArray(value)) for (const v of value) parts.push(one(v))
    else parts.push(one(value))
  }
  const body = Buffer.concat(parts)
  return Buffer.concat([varint(body.length), body])
}

function packet(first: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first]), varint(body.length), body])
}

// ---- encoders ---------------------------------------------------------------------------------

export interface ConnectOpts {
  clientId: string
  version?: Version
  clean?: boolean
  keepalive?: number
  props?: PropsIn
  will?: { topic: string; payload: string | Buffer; qos?: 0 | 1 | 2; retain?: boolean; props?: PropsIn }
  username?: string
  password?: string
  /** Override the protocol level byte (for unsupported-version tests). */
  level?: number
  /** Set the reserved bit 0 of the connect flags (a malformed CONNECT). */
  reservedFlag?: boolean
}

export function connect(o: ConnectOpts): Buffer {
  const v = o.version ?? 4
  let flags = 0
  if (o.clean !== false) flags |= 0x02
  if (o.will) flags |= 0x04 | ((o.will.qos ?? 0) << 3) | (o.will.retain ? 0x20 : 0)
  if (o.password !== undefined) flags |= 0x40
  if (o.username !== undefined) flags |= 0x80
  if (o.reservedFlag) flags |= 0x01
  const parts: Buffer[] = [str('MQTT'), Buffer.from([o.level ?? v, flags]), u16(o.keepalive ?? 0)]
  if (v === 5) parts.push(encodeProps(o.props))
  parts.push(str(o.clientId))
  if (o.will) {
    if (v === 5) parts.push(encodeProps(o.will.props))
    parts.push(str(o.will.topic), str(typeof o.will.payload === 'string' ? Buffer.from(o.will.payload) : o.will.payload))
  }
  if (o.username !== undefined) parts.push(str(o.username))
  if (o.password !== undefined) parts.push(str(o.password))
  return packet(0x10, Buffer.concat(parts))
}

export interface PublishOpts {
  topic: string
  payload?: string | Buffer
  qos?: 0 | 1 | 2 | 3
  retain?: boolean
  dup?: boolean
  id?: number
  props?: PropsIn
  version?: Version
}

export function publish(o: PublishOpts): Buffer {
  const qos = o.qos ?? 0
  const first = 0x30 | (o.dup ? 0x08 : 0) | (qos << 1) | (o.retain ? 1 : 0)
  const parts: Buffer[] = [str(o.topic)]
  if (qos > 0) parts.push(u16(o.id ?? 1))
  if ((o.version ?? 4) === 5) parts.push(encodeProps(o.props))
  parts.push(typeof o.payload === 'string' ? Buffer.from(o.payload) : (o.payload ?? Buffer.alloc(0)))
  return packet(first, Buffer.concat(parts))
}

/** PUBACK, PUBREC, PUBREL or PUBCOMP. */
export function ack(type: 4 | 5 | 6 | 7, id: number, version: Version = 4, reason?: number): Buffer {
  const first = (type << 4) | (type === T.PUBREL ? 0x02 : 0)
  const body = version === 5 && reason !== undefined ? Buffer.concat([u16(id), Buffer.from([reason])]) : u16(id)
  return packet(first, body)
}

export interface SubOpts { filter: string; qos?: number; nl?: boolean; rap?: boolean; rh?: 0 | 1 | 2; rawOptions?: number }

export function subscribe(id: number, subs: SubOpts[], version: Version = 4, props?: PropsIn, first = 0x82): Buffer {
  const parts: Buffer[] = [u16(id)]
  if (version === 5) parts.push(encodeProps(props))
  for (const s of subs) {
    const opt = s.rawOptions ?? ((s.qos ?? 0) | (s.nl ? 0x04 : 0) | (s.rap ? 0x08 : 0) | ((s.rh ?? 0) << 4))
    parts.push(str(s.filter), Buffer.from([opt]))
  }
  return packet(first, Buffer.concat(parts))
}

export function unsubscribe(id: number, filters: string[], version: Version = 4): Buffer {
  const parts: Buffer[] = [u16(id)]
  if (version === 5) parts.push(encodeProps())
  for (const f of filters) parts.push(str(f))
  return packet(0xa2, Buffer.concat(parts))
}

export const pingreq = (): Buffer => Buffer.from([0xc0, 0x00])

export function disconnect(version: Version = 4, reason?: number, props?: PropsIn): Buffer {
  if (version === 4 || reason === undefined) return Buffer.from([0xe0, 0x00])
  return packet(0xe0, Buffer.concat([Buffer.from([reason]), encodeProps(props)]))
}

// ---- decoder ----------------------------------------------------------------------------------

export interface Packet {
  type: number
  name: string
  flags: number
  raw: Buffer
  /** CONNACK */
  sessionPresent?: boolean
  /** CONNACK return code / reason code of acks and DISCONNECT */
  reason?: number
  /** SUBACK / UNSUBACK reason codes */
  reasons?: number[]
  id?: number
  topic?: string
  payload?: Buffer
  qos?: number
  retain?: boolean
  dup?: boolean
  props?: Props
}

class Reader {
  pos = 0
  constructor(readonly b: Buffer) {}
  left(): number { return this.b.length - this.pos }
  byte(): number { const v = this.b[this.pos]; if (v === undefined) throw new Error('short packet'); this.pos++; return v }
  u16(): number { const v = this.b.readUInt16BE(this.pos); this.pos += 2; return v }
  u32(): number { const v = this.b.readUInt32BE(this.pos); this.pos += 4; return v }
  varint(): number { let m = 1; let v = 0; let c: number; do { c = this.byte(); v += (c & 0x7f) * m; m *= 128 } while (c & 0x80); return v }
  bin(): Buffer { const n = this.u16(); const v = this.b.subarray(this.pos, this.pos + n); this.pos += n; return Buffer.from(v) }
  str(): string { return this.bin().toString('utf8') }
  props(): Props {
    const len = this.varint()
    const end = this.pos + len
    const p: Props = {}
    while (this.pos < end) {
      const id = this.varint()
      const def = PROP_BY_ID.get(id)
      if (!def) throw new Error(`unknown property id 0x${id.toString(16)}`)
      const [name, kind] = def
      let v: unknown
      switch (kind) {
        case 'byte': v = this.byte(); break
        case 'u16': v = this.u16(); break
        case 'u32': v = this.u32(); break
        case 'varint': v = this.varint(); break
        case 'str': v = this.str(); break
        case 'bin': v = this.bin(); break
        case 'pair': v = [this.str(), this.str()]; break
      }
      if (name === 'userProperty') (p.userProperty ??= []).push(v as [string, string])
      else if (name === 'subscriptionIdentifier') (p.subscriptionIdentifier ??= []).push(v as number)
      else p[name] = v
    }
    return p
  }
}

export function decode(raw: Buffer, version: Version): Packet {
  const first = raw[0] as number
  const type = first >> 4
  const flags = first & 0x0f
  const r = new Reader(raw)
  r.byte()
  const len = r.varint()
  const body = new Reader(raw.subarray(r.pos, r.pos + len))
  const p: Packet = { type, name: TYPE_NAME[type] ?? `type${type}`, flags, raw }
  switch (type) {
    case T.CONNACK:
      p.sessionPresent = (body.byte() & 1) === 1
      p.reason = body.byte()
      if (version === 5 && body.left() > 0) p.props = body.props()
      break
    case T.PUBLISH:
      p.qos = (flags >> 1) & 3
      p.retain = (flags & 1) === 1
      p.dup = (flags & 8) === 8
      p.topic = body.str()
      if (p.qos > 0) p.id = body.u16()
      if (version === 5) p.props = body.props()
      p.payload = Buffer.from(body.b.subarray(body.pos))
      break
    case T.PUBACK: case T.PUBREC: case T.PUBREL: case T.PUBCOMP:
      p.id = body.u16()
      p.reason = 0
      if (version === 5 && body.left() > 0) { p.reason = body.byte(); if (body.left() > 0) p.props = body.props() }
      break
    case T.SUBACK: case T.UNSUBACK:
      p.id = body.u16()
      if (version === 5) p.props = body.props()
      p.reasons = [...body.b.subarray(body.pos)]
      break
    case T.DISCONNECT:
      p.reason = 0
      if (version === 5 && body.left() > 0) { p.reason = body.byte(); if (body.left() > 0) p.props = body.props() }
      break
    default:
      break
  }
  return p
}

/** Splits a byte stream into whole MQTT packets. */
function splitPackets(buf: Buffer): { packets: Buffer[]; rest: Buffer } {
  const packets: Buffer[] = []
  let pos = 0
  for (;;) {
    if (buf.length - pos < 2) break
    let m = 1; let len = 0; let i = pos + 1; let c: number; let ok = true
    do {
      if (i >= buf.length) { ok = false; break }
      c = buf[i++] as number
      len += (c & 0x7f) * m
      m *= 128
    } while (c & 0x80)
    if (!ok || buf.length < i + len) break
    packets.push(Buffer.from(buf.subarray(pos, i + len)))
    pos = i + len
  }
  return { packets, rest: buf.subarray(pos) }
}

// ---- raw client -------------------------------------------------------------------------------

export class Raw {
  readonly packets: Packet[] = []
  private readonly consumed = new Set<Packet>()
  /** When set, QoS 1 and 2 deliveries are acknowledged like a well-behaved client (PUBACK, PUBREC, PUBCOMP). */
  autoAck = false
  private rest = Buffer.alloc(0)
  closed = false
  closedAt = 0
  private readonly waiters = new Set<() => void>()
  /** Set when the server sent bytes that do not decode (reported by next()). */
  decodeError: Error | null = null

  private constructor(readonly socket: net.Socket, readonly version: Version) {
    socket.on('data', (d: Buffer) => {
      const { packets, rest } = splitPackets(Buffer.concat([this.rest, d]))
      this.rest = Buffer.from(rest)
      for (const b of packets) {
        let p: Packet
        try { p = decode(b, this.version) } catch (e) { this.decodeError = e as Error; continue }
        this.packets.push(p)
        if (this.autoAck) {
          if (p.type === T.PUBLISH && p.qos === 1) this.send(ack(T.PUBACK, p.id ?? 0, this.version))
          if (p.type === T.PUBLISH && p.qos === 2) this.send(ack(T.PUBREC, p.id ?? 0, this.version))
          if (p.type === T.PUBREL) this.send(ack(T.PUBCOMP, p.id ?? 0, this.version))
        }
      }
      this.wake()
    })
    socket.on('error', () => {})
    socket.on('close', () => { this.closed = true; this.closedAt = Date.now(); this.wake() })
  }

  static open(port: number, version: Version = 4): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1')
      s.setNoDelay(true)
      s.once('connect', () => resolve(new Raw(s, version)))
      s.once('error', reject)
    })
  }

  /** Opens a connection, sends CONNECT and waits for the CONNACK. */
  static async connect(port: number, o: ConnectOpts): Promise<{ c: Raw; connack: Packet }> {
    const c = await Raw.open(port, o.version ?? 4)
    c.send(connect(o))
    const connack = await c.next(T.CONNACK)
    return { c, connack }
  }

  private wake(): void { for (const w of [...this.waiters]) w() }

  send(...bufs: Buffer[]): void { if (!this.socket.destroyed) this.socket.write(Buffer.concat(bufs)) }

  /** The first packet (of `type` if given) that no earlier next() returned; waits for it. */
  next(type?: number, timeoutMs = 3000): Promise<Packet> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const p = this.packets.find((q) => !this.consumed.has(q) && (type === undefined || q.type === type))
        if (p) { this.consumed.add(p); done(); resolve(p); return true }
        if (this.closed) { done(); reject(new Error(`connection closed while waiting for ${type ? TYPE_NAME[type] : 'a packet'}; got ${this.describe()}`)); return true }
        return false
      }
      const timer = setTimeout(() => { done(); reject(new Error(`timed out after ${timeoutMs} ms waiting for ${type ? TYPE_NAME[type] : 'a packet'}; got ${this.describe()}`)) }, timeoutMs)
      const w = (): void => { check() }
      const done = (): void => { clearTimeout(timer); this.waiters.delete(w) }
      this.waiters.add(w)
      check()
    })
  }

  /** Every packet of `type` received so far (consumed or not). */
  all(type: number): Packet[] { return this.packets.filter((p) => p.type === type) }

  /** Publishes received so far. */
  publishes(): Packet[] { return this.all(T.PUBLISH) }

  /** Waits until at least n PUBLISH packets arrived. */
  async waitPublishes(n: number, timeoutMs = 3000): Promise<Packet[]> {
    const deadline = Date.now() + timeoutMs
    while (this.publishes().length < n) {
      if (Date.now() > deadline) throw new Error(`waited for ${n} PUBLISH, got ${this.publishes().length}: ${this.describe()}`)
      if (this.closed) throw new Error(`closed after ${this.publishes().length} of ${n} PUBLISH: ${this.describe()}`)
      await new Promise<void>((r) => { const w = (): void => { this.waiters.delete(w); r() }; this.waiters.add(w); setTimeout(w, 50) })
    }
    return this.publishes()
  }

  /** Resolves true once the server closed the connection, false after timeoutMs. */
  waitClosed(timeoutMs = 3000): Promise<boolean> {
    if (this.closed) return Promise.resolve(true)
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.waiters.delete(w); resolve(false) }, timeoutMs)
      const w = (): void => { if (this.closed) { clearTimeout(t); this.waiters.delete(w); resolve(true) } }
      this.waiters.add(w)
    })
  }

  /** Sends SUBSCRIBE and returns the SUBACK. */
  async sub(id: number, subs: SubOpts[], props?: PropsIn): Promise<Packet> {
    this.send(subscribe(id, subs, this.version, props))
    return this.next(T.SUBACK)
  }

  /** Sends a PINGREQ and waits for the PINGRESP: everything the server sent before it has arrived. */
  async sync(timeoutMs = 3000): Promise<void> {
    this.send(pingreq())
    await this.next(T.PINGRESP, timeoutMs)
  }

  describe(): string {
    return this.packets.map((p) => `${p.name}${p.reason !== undefined ? `(0x${p.reason.toString(16)})` : ''}${p.topic !== undefined ? `[${p.topic}]` : ''}${p.reasons ? `[${p.reasons.map((r) => r.toString(16)).join(',')}]` : ''}`).join(' ') + (this.closed ? ' <closed>' : '') + (this.decodeError ? ` <decode error: ${this.decodeError.message}>` : '')
  }

  /** Closes the TCP connection without DISCONNECT (an abnormal disconnection for the server). */
  drop(): void { this.socket.destroy() }

  /** Sends DISCONNECT and closes. */
  async close(reason?: number, props?: PropsIn): Promise<void> {
    if (this.socket.destroyed) return
    await new Promise<void>((r) => this.socket.end(disconnect(this.version, reason, props), () => r()))
    this.socket.destroy()
  }
}

const opened = new Set<Raw>()
/** Raw.connect that remembers the client so that dropAll() can close it. */
export async function rawClient(port: number, o: ConnectOpts): Promise<{ c: Raw; connack: Packet }> {
  const r = await Raw.connect(port, o)
  opened.add(r.c)
  return r
}
export async function rawOpen(port: number, version: Version = 4): Promise<Raw> {
  const c = await Raw.open(port, version)
  opened.add(c)
  return c
}
export function dropAll(): void {
  for (const c of opened) c.socket.destroy()
  opened.clear()
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
let seq = 0
/** A unique name for client ids and topics of one test. */
export const uniq = (prefix: string): string => `${prefix}-${process.pid}-${++seq}-${Date.now().toString(36)}`
