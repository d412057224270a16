/**
 * The few MQTT encodings the fast path needs, on Buffers, without packet objects.
 * Everything else (CONNECT handling, QoS 1/2 flows, SUBSCRIBE) is aedes' job via mqtt-packet.
 */

export const PacketType = {
  CONNECT: 1,
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  PUBREC: 5,
  PUBREL: 6,
  PUBCOMP: 7,
  SUBSCRIBE: 8,
  SUBACK: 9,
  UNSUBSCRIBE: 10,
  UNSUBACK: 11,
  PINGREQ: 12,
  PINGRESP: 13,
  DISCONNECT: 14,
  AUTH: 15,
} as const

/** MQTT 5 property identifiers the fast path looks at. */
export const Prop = {
  SUBSCRIPTION_IDENTIFIER: 0x0b,
  TOPIC_ALIAS: 0x23,
} as const

/** Result holder for readVarint, reused to avoid allocating per call. */
export class VarintResult {
  value = 0
  /** Bytes the varint took; 0 = incomplete; -1 = malformed (more than 4 bytes [MQTT-1.5.5-1]). */
  length = 0
}

/** Reads a Variable Byte Integer at `offset` (not past `end`). */
export function readVarint(buf: Buffer, offset: number, end: number, out: VarintResult): VarintResult {
  let value = 0
  let multiplier = 1
  for (let i = 0; i < 4; i++) {
    if (offset + i >= end) { out.length = 0; return out }
    const byte = buf[offset + i] as number
    value += (byte & 0x7f) * multiplier
    if ((byte & 0x80) === 0) {
      out.value = value
      out.length = i + 1
      return out
    }
    multiplier *= 128
  }
  out.length = -1
  return out
}

export function varintSize(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4
}

export function writeVarint(buf: Buffer, offset: number, n: number): number {
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    buf[offset++] = byte
  } while (n > 0)
  return offset
}

/**
 * Encodes a QoS 0 PUBLISH: `props` is the MQTT 5 property block without its length
 * (null for MQTT 3.1.1), `prefixProps` more properties written before it (a Subscription Identifier).
 */
export function encodePublishQos0(
  topic: Buffer,
  payload: Buffer,
  props: Buffer | null,
  retain: boolean,
  prefixProps: Buffer | null = null,
): Buffer {
  const propLen = props === null ? 0 : props.length + (prefixProps === null ? 0 : prefixProps.length)
  const v5 = props !== null
  const remaining = 2 + topic.length + (v5 ? varintSize(propLen) + propLen : 0) + payload.length
  const frame = Buffer.allocUnsafe(1 + varintSize(remaining) + remaining)
  frame[0] = 0x30 | (retain ? 1 : 0)
  let o = writeVarint(frame, 1, remaining)
  frame.writeUInt16BE(topic.length, o)
  o += 2
  o += topic.copy(frame, o)
  if (v5) {
    o = writeVarint(frame, o, propLen)
    if (prefixProps !== null) o += prefixProps.copy(frame, o)
    o += (props as Buffer).copy(frame, o)
  }
  payload.copy(frame, o)
  return frame
}

/** A Subscription Identifier property (id 0x0B, Variable Byte Integer value). */
export function subscriptionIdentifierProp(si: number): Buffer {
  const buf = Buffer.allocUnsafe(1 + varintSize(si))
  buf[0] = Prop.SUBSCRIPTION_IDENTIFIER
  writeVarint(buf, 1, si)
  return buf
}

/** Whether an MQTT 5 property block contains a property id. */
export function findProperty(buf: Buffer, start: number, end: number, id: number): boolean {
  return findPropertyOffset(buf, start, end, id) !== -1
}

export type PropertyKind = 'byte' | 'u16' | 'u32' | 'varint' | 'string' | 'binary' | 'pair'

/** The value kind of every MQTT 5 property, by id (§2.2.2.2). */
export const PropertyKinds: Readonly<Record<number, PropertyKind>> = {
  0x01: 'byte', 0x02: 'u32', 0x03: 'string', 0x08: 'string', 0x09: 'binary', 0x0b: 'varint', 0x11: 'u32',
  0x12: 'string', 0x13: 'u16', 0x15: 'string', 0x16: 'binary', 0x17: 'byte', 0x18: 'u32', 0x19: 'byte',
  0x1a: 'string', 0x1c: 'string', 0x1f: 'string', 0x21: 'u16', 0x22: 'u16', 0x23: 'u16', 0x24: 'byte',
  0x25: 'byte', 0x26: 'pair', 0x27: 'u32', 0x28: 'byte', 0x29: 'byte', 0x2a: 'byte',
}

/** The offset of a property in an MQTT 5 property block (walking property by property), or -1. */
export function findPropertyOffset(buf: Buffer, start: number, end: number, id: number): number {
  if (end > buf.length) end = buf.length // a claimed length past the packet: never read beyond it
  for (let o = start; o < end && o !== -1;) {
    if (buf[o] === id) return o
    o = propertyEnd(buf, o, end)
  }
  return -1
}

const stepVi = new VarintResult()

/** The offset right after the property at `o` of a block ending at `end`; -1 when it cannot be stepped over. */
export function propertyEnd(buf: Buffer, o: number, end: number): number {
  const pid = buf[o++] as number
  switch (PropertyKinds[pid]) {
    case 'byte': return o + 1
    case 'u16': return o + 2
    case 'u32': return o + 4
    case 'varint':
      readVarint(buf, o, end, stepVi)
      return stepVi.length <= 0 ? -1 : o + stepVi.length
    case 'string': case 'binary': case 'pair':
      for (let k = PropertyKinds[pid] === 'pair' ? 2 : 1; k > 0; k--) { // a user property is two strings
        if (o + 2 > end) return -1
        o += 2 + buf.readUInt16BE(o)
      }
      return o
    default:
      return -1 // unknown property: let aedes judge the packet
  }
}

/** PUBLISH properties decoded the way mqtt-packet (and so aedes) shapes them. */
export interface PublishProperties {
  payloadFormatIndicator?: boolean
  messageExpiryInterval?: number
  topicAlias?: number
  responseTopic?: string
  correlationData?: Buffer
  userProperties?: Record<string, string | string[]>
  subscriptionIdentifier?: number | number[]
  contentType?: string
}

/**
 * Decodes a PUBLISH property block, or returns null when it holds something a PUBLISH may not
 * (aedes then judges the packet). Only runs for messages that go to internal listeners or to
 * aedes' QoS 1/2 delivery; forwarding to subscribers copies the bytes.
 */
export function decodePublishProperties(buf: Buffer, start: number, end: number): PublishProperties | null {
  const props: PublishProperties = {}
  const vi = new VarintResult()
  let o = start
  const str = (): string | null => {
    if (o + 2 > end) return null
    const len = buf.readUInt16BE(o)
    if (o + 2 + len > end) return null
    const s = buf.toString('utf8', o + 2, o + 2 + len)
    o += 2 + len
    return s
  }
  while (o < end) {
    const id = buf[o++] as number
    switch (id) {
      case 0x01:
        if (o >= end) return null
        props.payloadFormatIndicator = buf[o++] === 1
        break
      case 0x02:
        if (o + 4 > end) return null
        props.messageExpiryInterval = buf.readUInt32BE(o)
        o += 4
        break
      case 0x23:
        if (o + 2 > end) return null
        props.topicAlias = buf.readUInt16BE(o)
        o += 2
        break
      case 0x08: {
        const s = str()
        if (s === null) return null
        props.responseTopic = s
        break
      }
      case 0x09: {
        if (o + 2 > end) return null
        const len = buf.readUInt16BE(o)
        if (o + 2 + len > end) return null
        props.correlationData = Buffer.from(buf.subarray(o + 2, o + 2 + len))
        o += 2 + len
        break
      }
      case 0x26: {
        const k = str()
        const v = str()
        if (k === null || v === null) return null
        const up = (props.userProperties ??= Object.create(null) as Record<string, string | string[]>)
        const prev = up[k]
        up[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v]
        break
      }
      case 0x0b: {
        readVarint(buf, o, end, vi)
        if (vi.length <= 0) return null
        o += vi.length
        const prev = props.subscriptionIdentifier
        props.subscriptionIdentifier = prev === undefined ? vi.value : Array.isArray(prev) ? [...prev, vi.value] : [prev, vi.value]
        break
      }
      case 0x03: {
        const s = str()
        if (s === null) return null
        props.contentType = s
        break
      }
      default:
        return null
    }
  }
  return props
}
