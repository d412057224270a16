import { findPropertyOffset, readVarint, VarintResult } from './codec.ts'

/**
 * What edgebus needs of a CONNECT it answers itself (see ClientConnection: a client that only
 * publishes and pings is served without an aedes client, which costs about 5 KB of heap).
 */
export interface PlainConnect {
  level: 3 | 4 | 5
  clientId: string
  /** Seconds; 0 = no keepalive. */
  keepalive: number
  username: string | null
  password: Buffer | null
  /** MQTT 5: the client's Maximum Packet Size (0 = no limit). */
  maximumPacketSize: number
}

/** aedes' limit for MQTT 3.1 client identifiers (maxClientsIdLength). */
const MQTT31_MAX_CLIENT_ID = 23

const vi = new VarintResult()

/**
 * The CONNECT in `packet` if it is a plain one: a clean session without a will, a client
 * identifier of its own, and (MQTT 5) no Session Expiry Interval, no enhanced authentication and
 * a valid Receive Maximum. Anything else returns null and goes to aedes, which has the rules for
 * sessions, wills, assigned identifiers and refusals. `packet` passed checkConnect().
 */
export function plainConnect(packet: Buffer): PlainConnect | null {
  readVarint(packet, 1, packet.length, vi)
  const end = packet.length
  let o = 1 + vi.length
  if (vi.length <= 0 || o + 2 > end) return null
  const name = packet.toString('latin1', o + 2, o + 2 + packet.readUInt16BE(o)) // protocol name
  o += 2 + name.length
  if (o + 4 > end) return null
  const level = packet[o] as number
  const flags = packet[o + 1] as number
  const keepalive = packet.readUInt16BE(o + 2)
  o += 4
  if (name !== (level === 3 ? 'MQIsdp' : level === 4 || level === 5 ? 'MQTT' : '')) return null
  // clean session (Clean Start), no will, no reserved bit
  if ((flags & 0x3f) !== 0x02) return null
  let maximumPacketSize = 0
  if (level === 5) {
    readVarint(packet, o, end, vi)
    if (vi.length <= 0) return null
    const start = o + vi.length
    const stop = start + vi.value
    if (stop > end) return null
    // 0x11 Session Expiry Interval, 0x15 Authentication Method: sessions and AUTH are aedes' part
    if (findPropertyOffset(packet, start, stop, 0x11) !== -1 || findPropertyOffset(packet, start, stop, 0x15) !== -1) return null
    const rm = findPropertyOffset(packet, start, stop, 0x21) // Receive Maximum 0 is refused by aedes
    if (rm !== -1 && (rm + 3 > stop || packet.readUInt16BE(rm + 1) === 0)) return null
    const mps = findPropertyOffset(packet, start, stop, 0x27)
    if (mps !== -1) {
      if (mps + 5 > stop) return null
      maximumPacketSize = packet.readUInt32BE(mps + 1)
    }
    o = stop
  }
  const str = (): Buffer | null => {
    if (o + 2 > end) return null
    const n = packet.readUInt16BE(o)
    if (o + 2 + n > end) return null
    const bytes = packet.subarray(o + 2, o + 2 + n)
    o += 2 + n
    return bytes
  }
  const id = str()
  if (id === null || id.length === 0) return null // an identifier is assigned by aedes
  const clientId = id.toString('utf8')
  if (level === 3 && clientId.length > MQTT31_MAX_CLIENT_ID) return null
  let username: string | null = null
  let password: Buffer | null = null
  if ((flags & 0x80) !== 0) {
    const u = str()
    if (u === null) return null
    username = u.toString('utf8')
  }
  if ((flags & 0x40) !== 0) {
    const p = str()
    if (p === null) return null
    password = Buffer.from(p)
  }
  if (o !== end) return null
  return { level: level as 3 | 4 | 5, clientId, keepalive, username, password, maximumPacketSize }
}

/**
 * The CONNACK of an accepted plain CONNECT, the same bytes aedes writes for it (and edgebus then
 * edits): MQTT 5 with the server's Topic Alias Maximum, Maximum Packet Size and Receive Maximum.
 */
export function plainConnack(level: number, limits: { topicAliasMaximum: number; maxPacketSize: number; receiveMaximum: number; serverKeepAlive?: number }): Buffer {
  if (level !== 5) return Buffer.from([0x20, 0x02, 0x00, 0x00])
  const props: number[] = []
  if (limits.topicAliasMaximum > 0) props.push(0x22, limits.topicAliasMaximum >> 8, limits.topicAliasMaximum & 0xff)
  if (limits.maxPacketSize > 0) {
    const n = limits.maxPacketSize
    props.push(0x27, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff)
  }
  if (limits.receiveMaximum > 0) props.push(0x21, limits.receiveMaximum >> 8, limits.receiveMaximum & 0xff)
  const ska = limits.serverKeepAlive ?? 0
  if (ska > 0) props.push(0x13, ska >> 8, ska & 0xff) // [MQTT-3.2.2-21]
  // at most 17 bytes of properties: every length fits one varint byte
  return Buffer.from([0x20, 3 + props.length, 0x00, 0x00, props.length, ...props])
}

/** What a CONNECT that passed checkConnect() asks of the server: its Keep Alive (seconds) and (MQTT 5) Topic Alias Maximum. */
export function connectAsks(packet: Buffer): { keepAlive: number; topicAliasMaximum: number } {
  readVarint(packet, 1, packet.length, vi)
  let o = 1 + vi.length
  if (vi.length <= 0 || o + 2 > packet.length) return { keepAlive: 0, topicAliasMaximum: 0 }
  o += 2 + packet.readUInt16BE(o) // protocol name
  if (o + 4 > packet.length) return { keepAlive: 0, topicAliasMaximum: 0 }
  const keepAlive = packet.readUInt16BE(o + 2)
  let topicAliasMaximum = 0
  if (packet[o] === 5) {
    o += 4
    readVarint(packet, o, packet.length, vi)
    const start = o + vi.length
    const at = vi.length > 0 ? findPropertyOffset(packet, start, Math.min(packet.length, start + vi.value), 0x22) : -1
    if (at !== -1 && at + 3 <= packet.length) topicAliasMaximum = packet.readUInt16BE(at + 1)
  }
  return { keepAlive, topicAliasMaximum }
}

/**
 * mqtt.maxKeepAlive: the Keep Alive the server holds a client to, when not the one it asked for
 * (0: the client's own). A client asking for more than `max`, or for none, gets `max`: MQTT 5 is
 * told so in CONNACK (Server Keep Alive [MQTT-3.2.2-21]); MQTT 3.1.1 cannot be told, and is closed
 * after one and a half times `max` of silence, as an MQTT 5 client would be. Refusing it instead
 * (Mosquitto 2.0.12 on: CONNACK "identifier rejected") leaves a device that cannot change its
 * Keep Alive retrying for ever; this way an active one stays connected.
 */
export function keepAliveCap(asked: number, max: number): number {
  return max > 0 && (asked === 0 || asked > max) ? max : 0
}
