import { isUtf8 } from 'node:buffer'
import { topicFilterProblem, topicNameProblem } from '../subjects/topic.ts'
import { PacketType, PropertyKinds, readVarint, VarintResult } from './codec.ts'

/**
 * Checks of what a client sends that aedes 2.0 beta (mqtt-packet) lets through, made before a
 * packet reaches it: a repeated or misplaced MQTT 5 property, a property that runs past its block,
 * a will with QoS 3 or a topic that is not a topic. Let through, they crash the process (a
 * repeated Session Expiry Interval becomes NaN in a timer), poison retained state (a will with an
 * empty topic) or reach the journal as garbage. Found by test/fuzz.
 */

export interface PacketProblem {
  /**
   * MQTT 5 reason code: 0x81 Malformed Packet, 0x82 Protocol Error, 0x8F Topic Filter invalid,
   * 0x90 Topic Name invalid, 0x94 Topic Alias invalid.
   */
  code: 0x81 | 0x82 | 0x8f | 0x90 | 0x94
  why: string
}

const vi = new VarintResult()

/** Where a property may appear: packet types as bits (1 << type), and the will properties. */
const WILL = 1 << 16
const P = (...types: number[]): number => types.reduce((m, t) => m | (1 << t), 0)
const { CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT, AUTH } = PacketType
const MSG = P(PUBLISH) | WILL

/** MQTT 5 §2.2.2.2, the properties a client may send, by id: where (their kinds: codec.ts). */
const PROPERTIES: Record<number, { where: number; name: string }> = {
  0x01: { where: MSG, name: 'Payload Format Indicator' },
  0x02: { where: MSG, name: 'Message Expiry Interval' },
  0x03: { where: MSG, name: 'Content Type' },
  0x08: { where: MSG, name: 'Response Topic' },
  0x09: { where: MSG, name: 'Correlation Data' },
  // [MQTT-3.3.4-6] never in a PUBLISH from a client
  0x0b: { where: P(SUBSCRIBE), name: 'Subscription Identifier' },
  0x11: { where: P(CONNECT, DISCONNECT), name: 'Session Expiry Interval' },
  0x15: { where: P(CONNECT, AUTH), name: 'Authentication Method' },
  0x16: { where: P(CONNECT, AUTH), name: 'Authentication Data' },
  0x17: { where: P(CONNECT), name: 'Request Problem Information' },
  0x18: { where: WILL, name: 'Will Delay Interval' },
  0x19: { where: P(CONNECT), name: 'Request Response Information' },
  0x1c: { where: P(DISCONNECT), name: 'Server Reference' },
  0x1f: { where: P(PUBACK, PUBREC, PUBREL, PUBCOMP, DISCONNECT, AUTH), name: 'Reason String' },
  0x21: { where: P(CONNECT), name: 'Receive Maximum' },
  0x22: { where: P(CONNECT), name: 'Topic Alias Maximum' },
  0x23: { where: P(PUBLISH), name: 'Topic Alias' },
  0x26: { where: P(CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT, AUTH) | WILL, name: 'User Property' },
  0x27: { where: P(CONNECT), name: 'Maximum Packet Size' },
}

/** Values that must not be 0, and bytes that must be 0 or 1 (a Protocol Error otherwise). */
const NOT_ZERO = new Set([0x0b, 0x21, 0x23, 0x27])
const ZERO_OR_ONE = new Set([0x01, 0x17, 0x19])

/**
 * Checks the property block `buf[start, end)` of a packet of type `where` (a PacketType, or
 * WILL_PROPERTIES): every property known, allowed there, within the block, at most once (User
 * Property excepted), strings UTF-8, and the values the spec restricts.
 */
export function checkProperties(buf: Buffer, start: number, end: number, where: number, connectSessionExpiry = -1): PacketProblem | null {
  const mask = where === WILL_PROPERTIES ? WILL : 1 << where
  let seen = 0n
  let o = start
  while (o < end) {
    const id = buf[o++] as number
    const p = PROPERTIES[id]
    if (p === undefined) return { code: 0x81, why: `unknown property 0x${id.toString(16)}` }
    if ((p.where & mask) === 0) return { code: 0x82, why: `${p.name} is not allowed in this packet` }
    const bit = 1n << BigInt(id)
    if (id !== 0x26 && (seen & bit) !== 0n) return { code: 0x82, why: `${p.name} appears twice` }
    seen |= bit
    let value = -1
    const kind = PropertyKinds[id]
    switch (kind) {
      case 'byte':
        if (o + 1 > end) return short(p.name)
        value = buf[o] as number
        o += 1
        break
      case 'u16':
        if (o + 2 > end) return short(p.name)
        value = buf.readUInt16BE(o)
        o += 2
        break
      case 'u32':
        if (o + 4 > end) return short(p.name)
        value = buf.readUInt32BE(o)
        o += 4
        break
      case 'varint':
        readVarint(buf, o, end, vi)
        if (vi.length <= 0) return short(p.name)
        value = vi.value
        o += vi.length
        break
      case 'string': case 'binary': case 'pair': {
        for (let k = 0; k < (kind === 'pair' ? 2 : 1); k++) {
          if (o + 2 > end) return short(p.name)
          const n = buf.readUInt16BE(o)
          if (o + 2 + n > end) return short(p.name)
          if (kind !== 'binary' && !isUtf8(buf.subarray(o + 2, o + 2 + n))) return { code: 0x81, why: `${p.name} is not UTF-8` }
          // [MQTT-3.3.2-14] a Response Topic is a topic name: no wildcards
          if (id === 0x08 && !isTopicName(buf.subarray(o + 2, o + 2 + n))) return { code: 0x82, why: 'the Response Topic is not a topic name (empty, a wildcard or U+0000)' }
          o += 2 + n
        }
        break
      }
    }
    // [MQTT-3.14.2-2] a session that was to end with the connection cannot be kept by its DISCONNECT
    if (id === 0x11 && where === DISCONNECT && value > 0 && connectSessionExpiry === 0) return { code: 0x82, why: 'the DISCONNECT sets a Session Expiry Interval, the CONNECT had none' }
    // [MQTT-3.3.2-8] Topic Alias 0 has its own reason code (§3.3.2.3.4)
    if (NOT_ZERO.has(id) && value === 0) return { code: id === 0x23 ? 0x94 : 0x82, why: `${p.name} is 0` }
    if (ZERO_OR_ONE.has(id) && value > 1) return { code: 0x82, why: `${p.name} is ${value}, not 0 or 1` }
  }
  return null
}

/** `where` for the will properties of a CONNECT. */
export const WILL_PROPERTIES = 16

function short(name: string): PacketProblem {
  return { code: 0x81, why: `${name} runs past the end of its property block` }
}

/** A property block at `o`: its [start, end) inside `limit`, or null when its length is malformed. */
function block(buf: Buffer, o: number, limit: number): { start: number; end: number } | null {
  readVarint(buf, o, limit, vi)
  if (vi.length <= 0) return null
  const start = o + vi.length
  const end = start + vi.value
  return end > limit ? null : { start, end }
}

/**
 * The property block of a packet from a connected MQTT 5 client, checked; null when fine (or
 * when the packet type carries none). The packet is `packet[at, end)`; `connectSessionExpiry` is
 * the Session Expiry Interval its CONNECT set (for the DISCONNECT rule), -1 when not known.
 */
export function checkPacketProperties(packet: Buffer, at: number, end: number, connectSessionExpiry = -1): PacketProblem | null {
  const type = (packet[at] as number) >> 4
  readVarint(packet, at + 1, end, vi)
  let o = at + 1 + vi.length
  const remaining = end - o
  switch (type) {
    case PUBLISH: {
      if (o + 2 > end) return { code: 0x81, why: 'PUBLISH too short' }
      o += 2 + packet.readUInt16BE(o)
      if (((packet[at] as number) & 0x06) !== 0) o += 2
      break
    }
    case PUBACK: case PUBREC: case PUBREL: case PUBCOMP:
      if (remaining < 4) return null // [MQTT-3.4.2.2] no properties
      o += 3
      break
    case SUBSCRIBE: case UNSUBSCRIBE:
      o += 2
      break
    case DISCONNECT: case AUTH:
      if (remaining < 2) return null
      o += 1
      break
    default:
      return null
  }
  if (o >= end) return { code: 0x81, why: 'the property length is missing' }
  const b = block(packet, o, end)
  if (b === null) return { code: 0x81, why: 'the property length runs past the packet' }
  return b.start === b.end ? null : checkProperties(packet, b.start, b.end, type, connectSessionExpiry)
}

/**
 * The topic name of a PUBLISH and the filters of a SUBSCRIBE or UNSUBSCRIBE, checked (`packet[at,
 * end)`, any protocol version): mqtt-packet lets a U+0000, ill-formed UTF-8 and `a+` through, and
 * an UNSUBSCRIBE without filters. null when fine or not one of those packets.
 */
export function checkTopics(packet: Buffer, at: number, end: number, version: number): PacketProblem | null {
  const b0 = packet[at] as number
  const type = b0 >> 4
  if (type !== PUBLISH && type !== SUBSCRIBE && type !== UNSUBSCRIBE) return null
  readVarint(packet, at + 1, end, vi)
  let o = at + 1 + vi.length
  if (type === PUBLISH) {
    if (o + 2 > end) return { code: 0x81, why: 'PUBLISH too short' }
    const n = packet.readUInt16BE(o)
    if (o + 2 + n > end) return { code: 0x81, why: 'the PUBLISH topic runs past the packet' }
    // an MQTT 5 PUBLISH may name its topic by a Topic Alias alone (aedes resolves it)
    if (n === 0 && version === 5) return null
    // [MQTT-1.5.3-1, 1.5.3-2, 3.3.2-2, 4.7.3-1]
    return isTopicName(packet.subarray(o + 2, o + 2 + n)) ? null : { code: 0x90, why: 'the PUBLISH topic is not a topic name (empty, a wildcard, not UTF-8 or U+0000)' }
  }
  o += 2 // packet identifier
  if (version === 5) {
    const b = block(packet, o, end)
    if (b === null) return { code: 0x81, why: 'the property length runs past the packet' }
    o = b.end
  }
  let filters = 0
  while (o < end) {
    if (o + 2 > end) return { code: 0x81, why: 'a topic filter runs past the packet' }
    const n = packet.readUInt16BE(o)
    if (o + 2 + n > end) return { code: 0x81, why: 'a topic filter runs past the packet' }
    if (!isTopicFilter(packet.subarray(o + 2, o + 2 + n))) return { code: version === 5 ? 0x8f : 0x81, why: 'a topic filter is not valid (empty, not UTF-8, U+0000, or a wildcard that is not a whole level)' }
    o += 2 + n + (type === SUBSCRIBE ? 1 : 0) // SUBSCRIBE: the options byte (aedes checks its bits)
    filters++
  }
  // [MQTT-3.8.3-3, 3.10.3-2] at least one filter
  return filters === 0 ? { code: 0x82, why: `${type === SUBSCRIBE ? 'SUBSCRIBE' : 'UNSUBSCRIBE'} without a topic filter` } : null
}

/** Whether `bytes` are a topic filter (topic.ts has the rules), with ill-formed UTF-8 refused first [MQTT-1.5.3-1]. */
function isTopicFilter(bytes: Buffer): boolean {
  return isUtf8(bytes) && topicFilterProblem(bytes.toString('utf8')) === null
}

/** A QoS 0 PUBLISH whose variable header starts at `at` carries an empty property block (the common case: nothing to check). */
export function qos0WithoutProperties(buf: Buffer, at: number, end: number): boolean {
  if (at + 2 > end) return false
  const p = at + 2 + buf.readUInt16BE(at)
  return p < end && buf[p] === 0
}

/** Whether `bytes` are a topic name (topic.ts has the rules), with ill-formed UTF-8 refused first [MQTT-1.5.3-1]. */
function isTopicName(bytes: Buffer): boolean {
  return isUtf8(bytes) && topicNameProblem(bytes.toString('utf8')) === null
}

/**
 * A CONNECT's flags, will and properties, checked (the protocol name and level are aedes' to
 * judge). Returns the problem and the protocol level, for the CONNACK.
 */
export function checkConnect(packet: Buffer): (PacketProblem & { level: number }) | null {
  readVarint(packet, 1, packet.length, vi)
  const end = packet.length
  let o = 1 + vi.length
  if (o + 2 > end) return null
  const nameLen = packet.readUInt16BE(o)
  o += 2 + nameLen
  if (o + 4 > end) return null
  const level = packet[o] as number
  const flags = packet[o + 1] as number
  o += 4 // level, flags, keepalive
  if (level !== 3 && level !== 4 && level !== 5) return null // aedes answers: unsupported protocol version
  const bad = (code: PacketProblem['code'], why: string): PacketProblem & { level: number } => ({ code, why, level })
  // [MQTT-3.1.2-3] the reserved flag is 0
  if ((flags & 0x01) !== 0) return bad(0x81, 'the reserved CONNECT flag is set')
  const will = (flags & 0x04) !== 0
  const willQos = (flags >> 3) & 0x03
  // [MQTT-3.1.2-14] Will QoS 3 is malformed; [MQTT-3.1.2-11, 3.1.2-13] no will: QoS and retain 0
  if (willQos === 3) return bad(0x81, 'Will QoS is 3')
  if (!will && (willQos !== 0 || (flags & 0x20) !== 0)) return bad(0x81, 'Will QoS or Will Retain set without a will')
  // [MQTT-3.1.2-22] MQTT 3.1.1: no password without a user name
  if (level !== 5 && (flags & 0x40) !== 0 && (flags & 0x80) === 0) return bad(0x81, 'a password without a user name')
  // MQTT 5: a property block at o, checked and stepped over
  const properties = (where: number, what: string): (PacketProblem & { level: number }) | null => {
    const b = block(packet, o, end)
    if (b === null) return bad(0x81, `the ${what} length runs past the packet`)
    const p = checkProperties(packet, b.start, b.end, where)
    if (p !== null) return { ...p, level }
    o = b.end
    return null
  }
  if (level === 5) {
    const p = properties(CONNECT, 'property')
    if (p !== null) return p
  }
  const str = (what: string): Buffer | PacketProblem & { level: number } => {
    if (o + 2 > end) return bad(0x81, `${what} is missing`)
    const n = packet.readUInt16BE(o)
    if (o + 2 + n > end) return bad(0x81, `${what} runs past the packet`)
    const bytes = packet.subarray(o + 2, o + 2 + n)
    o += 2 + n
    return bytes
  }
  const id = str('the client identifier')
  if ('why' in id) return id
  if (!isUtf8(id)) return bad(0x81, 'the client identifier is not UTF-8')
  if (will) {
    if (level === 5) {
      const p = properties(WILL_PROPERTIES, 'will property')
      if (p !== null) return p
    }
    const topic = str('the will topic')
    if ('why' in topic) return topic
    if (!isTopicName(topic)) return bad(0x90, 'the will topic is not a topic name (empty, a wildcard, not UTF-8 or U+0000)')
    const payload = str('the will payload')
    if ('why' in payload) return payload
  }
  if ((flags & 0x80) !== 0) {
    const user = str('the user name')
    if ('why' in user) return user
    if (!isUtf8(user)) return bad(0x81, 'the user name is not UTF-8')
  }
  if ((flags & 0x40) !== 0) {
    const pw = str('the password')
    if ('why' in pw) return pw
  }
  if (o !== end) return bad(0x81, 'bytes after the end of the CONNECT payload')
  return null
}
