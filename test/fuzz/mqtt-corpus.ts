import type { Rng } from './harness.ts'
import { varint } from '../support/raw.ts'

/**
 * A small MQTT encoder and a generator of packets of every type for MQTT 3.1 (protocol level 3),
 * 3.1.1 (4) and 5.0 (5). Written here rather than borrowed so the fuzzer controls every byte,
 * lengths included. Generated packets are valid unless a generator is asked for junk (`junk`):
 * then fields take values the spec forbids (property ids a packet may not carry, QoS 3, reserved
 * flags, wildcards in a topic name) while the framing stays valid, so the parser's deeper checks run.
 */

export type Version = 3 | 4 | 5

// ---- primitives -------------------------------------------------------------------------------

// varint (test/support/raw.ts) writes any size: more than four bytes (n >= 2^28) is malformed on purpose
export { varint }

export function u16(n: number): Buffer {
  return Buffer.from([(n >> 8) & 0xff, n & 0xff])
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}

/** A UTF-8 string or binary data with its two-byte length (the length wraps past 65535, on purpose). */
export function str(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s
  return Buffer.concat([u16(b.length), b])
}

/** Fixed header + Remaining Length + body. */
export function frame(b0: number, ...body: Buffer[]): Buffer {
  const b = Buffer.concat(body)
  return Buffer.concat([Buffer.from([b0 & 0xff]), varint(b.length), b])
}

// ---- MQTT 5 properties [MQTT 2.2.2.2] ---------------------------------------------------------

type PropKind = 'byte' | 'u16' | 'u32' | 'varint' | 'string' | 'binary' | 'pair'

export const PROP_KINDS: Readonly<Record<number, PropKind>> = {
  0x01: 'byte', 0x02: 'u32', 0x03: 'string', 0x08: 'string', 0x09: 'binary', 0x0b: 'varint',
  0x11: 'u32', 0x12: 'string', 0x13: 'u16', 0x15: 'string', 0x16: 'binary', 0x17: 'byte',
  0x18: 'u32', 0x19: 'byte', 0x1a: 'string', 0x1c: 'string', 0x1f: 'string', 0x21: 'u16',
  0x22: 'u16', 0x23: 'u16', 0x24: 'byte', 0x25: 'byte', 0x26: 'pair', 0x27: 'u32', 0x28: 'byte',
  0x29: 'byte', 0x2a: 'byte',
}

export type PropValue = number | string | Buffer | readonly [string, string]
export type Prop = readonly [id: number, value: PropValue]

function propValue(kind: PropKind, v: PropValue): Buffer {
  switch (kind) {
    case 'byte': return Buffer.from([Number(v) & 0xff])
    case 'u16': return u16(Number(v))
    case 'u32': return u32(Number(v))
    case 'varint': return varint(Number(v))
    case 'string': return str(typeof v === 'string' || Buffer.isBuffer(v) ? v : String(v))
    case 'binary': return str(Buffer.isBuffer(v) ? v : Buffer.from(String(v)))
    case 'pair': return Array.isArray(v) ? Buffer.concat([str(v[0] as string), str(v[1] as string)]) : Buffer.concat([str(String(v)), str('')])
  }
}

/** A property block with its length; an unknown id is written as id + raw bytes (a Buffer value). */
export function props(list: readonly Prop[]): Buffer {
  const body = Buffer.concat(list.map(([id, v]) => {
    const kind = PROP_KINDS[id]
    const value = kind === undefined ? (Buffer.isBuffer(v) ? v : Buffer.from(String(v))) : propValue(kind, v)
    return Buffer.concat([varint(id), value])
  }))
  return Buffer.concat([varint(body.length), body])
}

// ---- packets ----------------------------------------------------------------------------------

export interface Will { topic: string; payload: Buffer; qos: number; retain: boolean; props: Prop[] }

export interface ConnectOptions {
  version: Version
  clientId: string
  clean: boolean
  keepalive: number
  will?: Will
  username?: string
  password?: Buffer
  props?: Prop[]
  /** Reserved bit 0 of the Connect Flags [MQTT-3.1.2-3]. */
  reserved?: boolean
}

export function connect(o: ConnectOptions): Buffer {
  const name = o.version === 3 ? 'MQIsdp' : 'MQTT'
  let flags = (o.clean ? 0x02 : 0) | (o.reserved ? 0x01 : 0)
  if (o.will) flags |= 0x04 | ((o.will.qos & 3) << 3) | (o.will.retain ? 0x20 : 0)
  if (o.username !== undefined) flags |= 0x80
  if (o.password !== undefined) flags |= 0x40
  const v5 = o.version === 5
  const parts = [str(name), Buffer.from([o.version, flags]), u16(o.keepalive)]
  if (v5) parts.push(props(o.props ?? []))
  parts.push(str(o.clientId))
  if (o.will) {
    if (v5) parts.push(props(o.will.props))
    parts.push(str(o.will.topic), str(o.will.payload))
  }
  if (o.username !== undefined) parts.push(str(o.username))
  if (o.password !== undefined) parts.push(str(o.password))
  return frame(0x10, ...parts)
}

export function connack(version: Version, sessionPresent: boolean, code: number, p: Prop[] = []): Buffer {
  return frame(0x20, Buffer.from([sessionPresent ? 1 : 0, code]), version === 5 ? props(p) : Buffer.alloc(0))
}

export interface PublishOptions {
  version: Version
  topic: string
  payload: Buffer
  qos: number
  retain?: boolean
  dup?: boolean
  id?: number
  props?: Prop[]
}

export function publish(o: PublishOptions): Buffer {
  const b0 = 0x30 | (o.dup ? 0x08 : 0) | ((o.qos & 3) << 1) | (o.retain ? 1 : 0)
  const parts = [str(o.topic)]
  if (o.qos > 0) parts.push(u16(o.id ?? 1))
  if (o.version === 5) parts.push(props(o.props ?? []))
  parts.push(o.payload)
  return frame(b0, ...parts)
}

/**
 * PUBACK (4), PUBREC (5), PUBREL (6), PUBCOMP (7). MQTT 5 may leave out the reason code (success)
 * and the properties [MQTT 3.4.2.1].
 */
export function ack(type: 4 | 5 | 6 | 7, version: Version, id: number, reason?: number, p?: Prop[]): Buffer {
  const b0 = (type << 4) | (type === 6 ? 0x02 : 0) // [MQTT-3.6.1-1] PUBREL's flags are 0010
  const parts = [u16(id)]
  if (version === 5 && (reason !== undefined || p !== undefined)) {
    parts.push(Buffer.from([reason ?? 0]))
    if (p !== undefined) parts.push(props(p))
  }
  return frame(b0, ...parts)
}

export interface Subscription { filter: string; qos: number; noLocal?: boolean; rap?: boolean; rh?: number }

export function subscribe(version: Version, id: number, subs: readonly Subscription[], p: Prop[] = []): Buffer {
  const parts = [u16(id)]
  if (version === 5) parts.push(props(p))
  for (const s of subs) {
    const opts = version === 5
      ? (s.qos & 3) | (s.noLocal ? 0x04 : 0) | (s.rap ? 0x08 : 0) | ((s.rh ?? 0) << 4)
      : s.qos
    parts.push(str(s.filter), Buffer.from([opts & 0xff]))
  }
  return frame(0x82, ...parts) // [MQTT-3.8.1-1] flags 0010
}

export function unsubscribe(version: Version, id: number, filters: readonly string[], p: Prop[] = []): Buffer {
  const parts = [u16(id)]
  if (version === 5) parts.push(props(p))
  for (const f of filters) parts.push(str(f))
  return frame(0xa2, ...parts) // [MQTT-3.10.1-1]
}

export function suback(version: Version, id: number, codes: number[]): Buffer {
  return frame(0x90, u16(id), version === 5 ? props([]) : Buffer.alloc(0), Buffer.from(codes))
}

export function unsuback(version: Version, id: number, codes: number[]): Buffer {
  return frame(0xb0, u16(id), version === 5 ? Buffer.concat([props([]), Buffer.from(codes)]) : Buffer.alloc(0))
}

export const pingreq = (): Buffer => Buffer.from([0xc0, 0x00])
export const pingresp = (): Buffer => Buffer.from([0xd0, 0x00])

export function disconnect(version: Version, reason?: number, p?: Prop[]): Buffer {
  if (version !== 5 || (reason === undefined && p === undefined)) return Buffer.from([0xe0, 0x00])
  return frame(0xe0, Buffer.from([reason ?? 0]), p === undefined ? Buffer.alloc(0) : props(p))
}

export function auth(reason: number, p: Prop[]): Buffer {
  return frame(0xf0, Buffer.from([reason]), props(p))
}

// ---- values -----------------------------------------------------------------------------------

/** Topic names a client may publish to (the stream captures fuzz/#). */
const TOPICS = [
  'fuzz/a', 'fuzz/b/c', 'fuzz/ü/€/温度', 'fuzz/😀', 'fuzz/' + 'x'.repeat(300), 'fuzz//double', 'fuzz/ ',
  'sensors/kitchen/temp', 'a', 'jobs/1', 'fuzz.nats.style', '/leading', 'trailing/',
] as const
/** Topic names a client may not publish to, or that are malformed. */
const BAD_TOPICS = [
  'fuzz/+/x', 'fuzz/#', '#', '+', '', 'a\u0000b', '$SYS/x', '$dlq/fuzz/workers', '$share/g/fuzz/a',
  '\ud800', 'fuzz/\uffff', 'x'.repeat(70_000),
] as const
const FILTERS = [
  'fuzz/#', 'fuzz/+/c', '#', '+/+', 'fuzz/a', 'sensors/+/temp', '$share/g/fuzz/#', '$share/g/#',
  '$share/h/+/+', '$SYS/#', '$dlq/#', 'fuzz/ü/#', 'health/#',
] as const
const BAD_FILTERS = [
  'a/#/b', 'fuzz#', 'fuzz/+x', '', '$share//x', '$share/g', '$share/g+/x', '$share/g#/x', '$share/',
  'a\u0000', '\ud800/#', '#/#',
] as const
/** A small pool: sessions (and their queues) left behind by the fuzz stay few. */
const CLIENT_IDS = ['fuzz-0', 'fuzz-1', 'fuzz-2', 'fuzz-3', 'fuzz-4', 'fuzz-5', 'fuzz-6', 'fuzz-7', ''] as const

function topic(rng: Rng, junk: boolean): string {
  if (junk && rng.chance(0.4)) return rng.pick(BAD_TOPICS)
  return rng.chance(0.2) ? `fuzz/${rng.int(1000)}` : rng.pick(TOPICS)
}

function filter(rng: Rng, junk: boolean): string {
  if (junk && rng.chance(0.4)) return rng.pick(BAD_FILTERS)
  return rng.pick(FILTERS)
}

export function payload(rng: Rng): Buffer {
  switch (rng.int(5)) {
    case 0: return Buffer.alloc(0)
    case 1: return Buffer.from(JSON.stringify({ t: rng.int(100), s: 'x'.repeat(rng.int(50)) }))
    case 2: return Buffer.from('21.5')
    default: return rng.bytes(rng.size(64, 16_384))
  }
}

function text(rng: Rng): string {
  return rng.pick(['', 'a', 'text/plain', 'application/json', 'ü€😀', 'x'.repeat(rng.int(2000)), 'msg-id', '\u0000'])
}

/** A property with an id no packet knows, or a known id with a value of another shape. */
function junkProp(rng: Rng): Prop {
  if (rng.chance(0.5)) return [rng.pick([0x00, 0x04, 0x05, 0x7f, 0x80, 0xff, 0x2b, 0x30, rng.int(256)]), rng.bytes(rng.int(8))]
  return [rng.pick(Object.keys(PROP_KINDS).map(Number)), rng.pick([0, 1, 2, 255, 65_535, 0xffffffff, 'x', Buffer.alloc(0)] as const)]
}

function userProps(rng: Rng): Prop[] {
  return Array.from({ length: rng.int(4) }, () => [0x26, [rng.pick(['msg-id', 'site', 'k', '', 'ü']), text(rng)]] as const)
}

/** Another value of the same kind as `v`, for a repeated property. */
function otherValue(rng: Rng, v: PropValue): PropValue {
  if (typeof v === 'number') return rng.pick([0, 1, v + 1, 0xffffffff])
  if (typeof v === 'string') return v + 'x'
  return v
}

/**
 * Sometimes (when junk is allowed) adds a junk property, or repeats one the packet has with another
 * value: most properties may appear only once [MQTT 2.2.2.2], and a parser that keeps both hands
 * an array where a number was expected.
 */
function maybeJunk(rng: Rng, junk: boolean, list: Prop[]): Prop[] {
  if (!junk) return list
  if (rng.chance(0.5)) list.splice(rng.int(list.length + 1), 0, junkProp(rng))
  if (list.length > 0 && rng.chance(0.4)) {
    const [id, v] = rng.pick(list)
    list.splice(rng.int(list.length + 1), 0, [id, otherValue(rng, v)])
  }
  return list
}

function publishProps(rng: Rng, junk: boolean): Prop[] {
  const list: Prop[] = []
  if (rng.chance(0.2)) list.push([0x01, rng.int(2)])
  if (rng.chance(0.2)) list.push([0x02, rng.pick([0, 1, 60, 0xffffffff])])
  if (rng.chance(0.25)) list.push([0x23, rng.pick([1, 2, 3, 10, 0, 65_535])]) // topic alias (0 is invalid)
  if (rng.chance(0.15)) list.push([0x08, topic(rng, junk)])
  if (rng.chance(0.15)) list.push([0x09, rng.bytes(rng.int(32))])
  if (rng.chance(0.3)) list.push(...userProps(rng))
  if (rng.chance(0.15)) list.push([0x03, text(rng)])
  if (junk && rng.chance(0.1)) list.push([0x0b, rng.int(300)]) // a client may not send a Subscription Identifier
  return maybeJunk(rng, junk, list)
}

/** A reason code of an ack: one the spec allows for `type` [MQTT 3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1], or any byte. */
function reason(rng: Rng, type: 4 | 5 | 6 | 7, junk: boolean): number {
  if (junk && rng.chance(0.3)) return rng.int(256)
  return type === 6 || type === 7 ? rng.pick([0x00, 0x92]) : rng.pick([0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99])
}

function packetId(rng: Rng, junk: boolean): number {
  return junk && rng.chance(0.1) ? 0 : rng.chance(0.7) ? rng.range(1, 20) : rng.range(1, 65_535)
}

// ---- generators -------------------------------------------------------------------------------

/** A CONNECT of `version`: a will with properties, credentials, auth data, the session flags. */
export function genConnect(rng: Rng, version: Version, junk = false): Buffer {
  const v5 = version === 5
  const o: ConnectOptions = {
    version,
    clientId: rng.pick(CLIENT_IDS),
    // most sessions clean: persistent ones are exercised, but few
    clean: rng.chance(0.8),
    keepalive: rng.pick([0, 0, 5, 60, 65_535]),
  }
  if (o.clientId === '' && version !== 5) o.clean = true // [MQTT-3.1.3-7]
  if (rng.chance(0.3)) {
    o.will = {
      // junk wills favour what a will topic and QoS may not be [MQTT-3.1.2-14], [MQTT-3.1.3-11]
      topic: junk && rng.chance(0.5) ? rng.pick(['', '+', '#', 'fuzz/+', 'fuzz/#', '\u0000']) : topic(rng, junk),
      payload: payload(rng),
      qos: junk && rng.chance(0.3) ? 3 : rng.int(3),
      retain: rng.chance(0.3),
      props: v5 ? maybeJunk(rng, junk, [
        ...(rng.chance(0.5) ? [[0x18, rng.pick([0, 1, 10])] as const] : []),
        ...(rng.chance(0.3) ? [[0x01, 1] as const, [0x03, 'text/plain'] as const] : []),
        ...userProps(rng),
      ]) : [],
    }
  }
  if (rng.chance(0.3)) o.username = rng.pick(['user', '', 'ü', 'x'.repeat(500)])
  if (o.username !== undefined || (junk && rng.chance(0.3))) {
    if (rng.chance(0.6)) o.password = rng.bytes(rng.int(40))
  }
  if (v5) {
    const list: Prop[] = []
    if (rng.chance(0.4)) list.push([0x11, rng.pick([0, 5, 3600, 0xffffffff])]) // session expiry
    if (rng.chance(0.3)) list.push([0x21, rng.pick([1, 10, 65_535, ...(junk ? [0] : [])])]) // receive maximum
    if (rng.chance(0.3)) list.push([0x27, rng.pick([16, 128, 1024, 1 << 20, ...(junk ? [0] : [])])]) // maximum packet size
    if (rng.chance(0.4)) list.push([0x22, rng.pick([0, 5, 65_535])]) // topic alias maximum
    if (rng.chance(0.2)) list.push([0x19, rng.int(2)], [0x17, rng.int(2)])
    if (rng.chance(0.15)) list.push([0x15, rng.pick(['SCRAM-SHA-1', 'x', ''])], [0x16, rng.bytes(rng.int(32))]) // auth method + data
    list.push(...userProps(rng))
    o.props = maybeJunk(rng, junk, list)
  }
  if (junk && rng.chance(0.1)) o.reserved = true
  return connect(o)
}

export const PacketKinds = [
  'connect', 'connack', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'suback',
  'unsubscribe', 'unsuback', 'pingreq', 'pingresp', 'disconnect', 'auth',
] as const
export type PacketKind = (typeof PacketKinds)[number]

/** How often each kind follows a CONNECT: what a client sends, mostly; the server's kinds now and then. */
const WEIGHTS: ReadonlyArray<readonly [number, PacketKind]> = [
  [40, 'publish'], [6, 'puback'], [5, 'pubrec'], [5, 'pubrel'], [4, 'pubcomp'], [12, 'subscribe'],
  [6, 'unsubscribe'], [6, 'pingreq'], [3, 'disconnect'], [3, 'auth'], [2, 'connect'], [1, 'connack'],
  [1, 'suback'], [1, 'unsuback'], [1, 'pingresp'],
]

export function pickKind(rng: Rng): PacketKind {
  return rng.weighted(WEIGHTS)
}

/** One packet of `kind`, valid unless `junk`. */
export function genPacket(rng: Rng, version: Version, kind: PacketKind, junk = false): Buffer {
  const v5 = version === 5
  switch (kind) {
    case 'connect': return genConnect(rng, version, junk)
    case 'connack': return connack(version, rng.chance(0.5), version === 5 ? rng.pick([0, 0x80, 0x87]) : rng.int(6))
    case 'publish': {
      const qos = junk && rng.chance(0.05) ? 3 : rng.pick([0, 0, 1, 1, 2])
      const p = v5 ? publishProps(rng, junk) : []
      // an empty topic name with a topic alias uses an alias set earlier [MQTT-3.3.2-12]
      const aliased = v5 && p.some(([id]) => id === 0x23) && rng.chance(0.5)
      return publish({
        version, qos, props: p, payload: payload(rng),
        topic: aliased ? '' : topic(rng, junk),
        retain: rng.chance(0.1), dup: qos > 0 && rng.chance(0.1), id: packetId(rng, junk),
      })
    }
    case 'puback': case 'pubrec': case 'pubrel': case 'pubcomp': {
      const type = ({ puback: 4, pubrec: 5, pubrel: 6, pubcomp: 7 } as const)[kind]
      if (!v5 || rng.chance(0.3)) return ack(type, version, packetId(rng, junk))
      const p = rng.chance(0.5) ? maybeJunk(rng, junk, [[0x1f, text(rng)], ...userProps(rng)]) : undefined
      return ack(type, version, packetId(rng, junk), reason(rng, type, junk), p)
    }
    case 'subscribe': {
      const subs = Array.from({ length: rng.range(junk ? 0 : 1, 4) }, (): Subscription => ({
        filter: filter(rng, junk),
        qos: junk && rng.chance(0.05) ? 3 : rng.int(3),
        ...(v5 ? { noLocal: rng.chance(0.2), rap: rng.chance(0.2), rh: junk ? rng.int(4) : rng.int(3) } : {}),
      }))
      const p: Prop[] = v5 ? maybeJunk(rng, junk, [
        ...(rng.chance(0.3) ? [[0x0b, rng.pick([1, 2, 268_435_455, ...(junk ? [0] : [])])] as const] : []),
        ...userProps(rng),
      ]) : []
      return subscribe(version, packetId(rng, junk), subs, p)
    }
    case 'unsubscribe': {
      const filters = Array.from({ length: rng.range(junk ? 0 : 1, 4) }, () => filter(rng, junk))
      return unsubscribe(version, packetId(rng, junk), filters, v5 ? maybeJunk(rng, junk, userProps(rng)) : [])
    }
    case 'suback': return suback(version, packetId(rng, junk), [rng.int(3), 0x80])
    case 'unsuback': return unsuback(version, packetId(rng, junk), [0, 0x11])
    case 'pingreq': return pingreq()
    case 'pingresp': return pingresp()
    case 'disconnect':
      if (!v5 || rng.chance(0.3)) return disconnect(version)
      return disconnect(version, junk && rng.chance(0.3) ? rng.int(256) : rng.pick([0x00, 0x04, 0x80, 0x83, 0x95]), maybeJunk(rng, junk, [
        ...(rng.chance(0.3) ? [[0x11, rng.pick([0, 10, 0xffffffff])] as const] : []), // session expiry
        ...(rng.chance(0.3) ? [[0x1f, text(rng)] as const] : []),
        ...userProps(rng),
      ]))
    case 'auth':
      return auth(junk && rng.chance(0.3) ? rng.int(256) : rng.pick([0x00, 0x18, 0x19]), maybeJunk(rng, junk, [[0x15, 'SCRAM-SHA-1'], [0x16, rng.bytes(rng.int(32))]]))
  }
}

/** One valid packet of every kind for `version` (the fixed corpus: a check of the encoder). */
export function everyKind(rng: Rng, version: Version): Array<[PacketKind, Buffer]> {
  return PacketKinds.filter((k) => version === 5 || k !== 'auth').map((k) => [k, genPacket(rng, version, k)])
}
