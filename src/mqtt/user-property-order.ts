import { propertyEnd, readVarint, VarintResult, writeVarint, varintSize } from './codec.ts'

/**
 * User properties keep their order [MQTT-3.3.2-18] on aedes' path too. mqtt-packet decodes them
 * into an object of name -> value(s), so `b=1, a=2, b=3` would be written as `b=1, b=3, a=2`.
 * When a PUBLISH's order would change that way, its entries travel as they came:
 * - the connection reads them off the PUBLISH (`userPropertyOrder`) and they ride on the packet's
 *   properties under the symbol USER_PROPERTY_ORDER: set by the fast path for the QoS 1 deliveries
 *   it hands to aedes, by MqttBroker's authorizePublish for PUBLISHes aedes reads, and on the will
 *   at CONNECT (`willUserPropertyOrder`);
 * - at delivery (authorizeForward), they become one user property named MARKER whose value is
 *   their bytes in base64, which mqtt-packet writes like any other;
 * - the receiving connection puts the bytes back in place of that marker (`restoreUserPropertyOrder`).
 */
export const USER_PROPERTY_ORDER = Symbol('edgebus.userPropertyOrder')
const MARKER = 'edgebus:user-properties-in-order'
const MARKER_BYTES = Buffer.from(MARKER)

const vi = new VarintResult()

/**
 * The user property entries (0x26 ...) of the property block `buf[start, end)`, as they are, when
 * grouping them by name would reorder them; null when it would not (the usual case).
 */
export function userPropertyOrder(buf: Buffer, start: number, end: number): Buffer | null {
  if (end > buf.length) end = buf.length // a claimed length past the packet: never read beyond it
  const names: string[] = []
  const parts: Buffer[] = []
  let regroups = false
  let o = start
  while (o < end) {
    const id = buf[o] as number
    const at = o
    o = propertyEnd(buf, o, end)
    if (o < 0 || o > end) return null
    if (id !== 0x26) continue
    const name = buf.toString('utf8', at + 3, at + 3 + buf.readUInt16BE(at + 1))
    // a name seen before, but not right before: grouping would move this entry
    if (names.length > 0 && names[names.length - 1] !== name && names.includes(name)) regroups = true
    names.push(name)
    parts.push(buf.subarray(at, o))
  }
  return regroups ? Buffer.concat(parts) : null
}

/** userPropertyOrder() of the will properties of an MQTT 5 CONNECT; null when it has none (or is malformed: aedes judges it). */
export function willUserPropertyOrder(connect: Buffer): Buffer | null {
  const end = connect.length
  readVarint(connect, 1, end, vi)
  if (vi.length <= 0) return null
  let o = 1 + vi.length
  const skipString = (): boolean => {
    if (o + 2 > end) return false
    o += 2 + connect.readUInt16BE(o)
    return o <= end
  }
  if (!skipString() || o + 4 > end) return null // protocol name
  if (connect[o] !== 5 || ((connect[o + 1] as number) & 0x04) === 0) return null // MQTT 5 with a will
  o += 4
  readVarint(connect, o, end, vi)
  if (vi.length <= 0) return null
  o += vi.length + vi.value // CONNECT properties
  if (!skipString()) return null // client identifier
  readVarint(connect, o, end, vi)
  if (vi.length <= 0 || o + vi.length + vi.value > end) return null
  return userPropertyOrder(connect, o + vi.length, o + vi.length + vi.value)
}

/** The user properties that carry `entries` through mqtt-packet to the receiving connection. */
export function orderMarker(entries: Buffer): Record<string, string> {
  return { [MARKER]: entries.toString('base64') }
}

/** Whether an outgoing packet may carry a marker (a cheap test before parsing). */
export function mayCarryMarker(packet: Buffer): boolean {
  return packet.includes(MARKER_BYTES)
}

/** A PUBLISH (MQTT 5) with the marker replaced by the entries it carries; the packet itself when it has none. */
export function restoreUserPropertyOrder(packet: Buffer): Buffer {
  readVarint(packet, 1, packet.length, vi)
  if (vi.length <= 0) return packet
  const bodyStart = 1 + vi.length
  const end = bodyStart + vi.value
  let o = bodyStart
  if (o + 2 > end) return packet
  o += 2 + packet.readUInt16BE(o) // topic
  if (((packet[0] as number) & 0x06) !== 0) o += 2 // packet id
  const propsLenAt = o
  readVarint(packet, o, end, vi)
  if (vi.length <= 0) return packet
  const propsStart = o + vi.length
  const propsEnd = propsStart + vi.value
  for (let p = propsStart; p < propsEnd;) {
    const at = p
    p = propertyEnd(packet, p, propsEnd)
    if (p < 0 || p > propsEnd) return packet
    if (packet[at] !== 0x26) continue
    const nameLen = packet.readUInt16BE(at + 1)
    if (nameLen !== MARKER_BYTES.length || packet.compare(MARKER_BYTES, 0, nameLen, at + 3, at + 3 + nameLen) !== 0) continue
    const valueAt = at + 3 + nameLen
    const entries = Buffer.from(packet.toString('latin1', valueAt + 2, valueAt + 2 + packet.readUInt16BE(valueAt)), 'base64')
    const propsLen = propsEnd - propsStart - (p - at) + entries.length
    const bodyLen = (propsLenAt - bodyStart) + varintSize(propsLen) + propsLen + (end - propsEnd)
    const out = Buffer.allocUnsafe(1 + varintSize(bodyLen) + bodyLen)
    out[0] = packet[0] as number
    let w = writeVarint(out, 1, bodyLen) // (returns the offset after it)
    w += packet.copy(out, w, bodyStart, propsLenAt)
    w = writeVarint(out, w, propsLen)
    w += packet.copy(out, w, propsStart, at)
    w += entries.copy(out, w)
    w += packet.copy(out, w, p, propsEnd)
    packet.copy(out, w, propsEnd, end)
    return out
  }
  return packet
}
