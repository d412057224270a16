import { readVarint, VarintResult, findPropertyOffset, Prop } from './codec.ts'
import { RouteEntry, SUBSCRIPTION_IDS, type DeliverCallback, type FastTarget, type Listener, type RoutedPacket, type Router } from '../router/router.ts'
import { topicFilterProblem } from '../subjects/topic.ts'
import { SHARE_PREFIX } from './shared-subscriptions.ts'

/**
 * Subscriptions routable in the event-loop turn their SUBSCRIBE is read (issue 16, item 2).
 *
 * aedes takes a SUBSCRIBE asynchronously (authorization, persistence, then its Router entry), and a
 * plain client's first SUBSCRIBE waits for aedes to take the client over first. A message another
 * client published meanwhile went by: real clients publish without waiting for the SUBACK (request/
 * response, No Local between two clients). So the moment a SUBSCRIBE is read, each filter aedes will
 * grant gets a Router entry of its own, tied to the connection: the fast path writes to it and
 * aedes' path calls it. When aedes subscribes the filter, it adopts that very entry (Router.on asks
 * `claims`), so no message is routed twice or missed in between; a filter aedes refused is dropped
 * at its SUBACK. Until the aedes client is ready (a plain client being handed over) what the entry
 * gets waits here, in order.
 */

const vi = new VarintResult()

/** One filter of a SUBSCRIBE, with its options [MQTT-3.8.3-1]. */
export interface SubscribeEntry {
  filter: string
  qos: 0 | 1 | 2
  nl: boolean
  rap: boolean
  /** MQTT 5 Retain Handling (0 on 3.1.1). */
  rh: number
  /** The options byte as it came (its reserved bits are aedes' to judge). */
  options: number
}

/**
 * The packet identifier, filters and Subscription Identifier (0 = none; `badSi`: present but out of
 * 1..268435455, a Protocol Error [MQTT-3.8.2.1.2]) of a SUBSCRIBE; null when it is malformed (aedes decides).
 */
export function readSubscribe(packet: Buffer, v5: boolean): { id: number; si: number; badSi: boolean; subs: SubscribeEntry[] } | null {
  readVarint(packet, 1, packet.length, vi)
  if (vi.length <= 0) return null
  const end = Math.min(packet.length, 1 + vi.length + vi.value)
  let o = 1 + vi.length + 2 // packet id
  if (o > end) return null
  const id = packet.readUInt16BE(o - 2)
  let si = 0
  let badSi = false
  if (v5) {
    readVarint(packet, o, end, vi)
    if (vi.length <= 0) return null
    const propsEnd = o + vi.length + vi.value
    if (propsEnd > end) return null
    const at = findPropertyOffset(packet, o + vi.length, propsEnd, Prop.SUBSCRIPTION_IDENTIFIER)
    if (at !== -1) {
      si = readVarint(packet, at + 1, propsEnd, vi).length > 0 ? vi.value : 0
      badSi = si === 0 || si > 268_435_455
    }
    o = propsEnd
  }
  const subs: SubscribeEntry[] = []
  while (o + 2 <= end) {
    const len = packet.readUInt16BE(o)
    if (o + 2 + len + 1 > end) return null
    const filter = packet.toString('utf8', o + 2, o + 2 + len)
    const options = packet[o + 2 + len] as number
    o += 3 + len
    const qos = options & 0x03
    if (qos === 3) return null
    subs.push({ filter, qos: qos as 0 | 1 | 2, nl: (options & 0x04) !== 0, rap: (options & 0x08) !== 0, rh: (options >> 4) & 0x03, options })
  }
  return subs.length > 0 ? { id, si, badSi, subs } : null
}

/** Filters with handlers of their own (shared-subscriptions.ts, stream-subscriptions.ts): never reserved here. */
function servedElsewhere(filter: string): boolean {
  return filter.startsWith(SHARE_PREFIX) || filter.startsWith('$stream/') || filter.startsWith('$replay/')
}

/** The parts of an aedes client an early delivery uses. */
export interface EarlyPeer {
  id: string
  clean: boolean
  connected: boolean
  subscriptions: Record<string, { func: Listener } | undefined>
  deliver0?: Listener
  deliverQoS?: Listener
  publish?(packet: RoutedPacket, done: DeliverCallback): void
}

/** What a connection offers its early subscriptions. */
export interface EarlyOwner extends FastTarget {
  readonly clientId: string
  readonly closed: boolean
  /** The aedes client, once aedes has taken the connection. */
  readonly client: EarlyPeer | null
}

/** Whether `filter` may be subscribed by this connection (the checks of aedes' authorizeSubscribe). */
export type SubscribeCheck = (filter: string, subscribed: number) => boolean

export class EarlySubscriptions {
  /** Reserved entries not yet adopted or refused, by filter. */
  readonly #entries = new Map<string, RouteEntry>()
  /** What reserved entries got before the aedes client was ready, in order. */
  #held: Array<{ entry: RouteEntry; packet: RoutedPacket }> | null = null

  constructor(readonly owner: EarlyOwner, readonly router: Router, readonly allowed: SubscribeCheck) {}

  /** Nothing reserved and nothing waiting: the connection may let go of this object. */
  get idle(): boolean {
    return this.#entries.size === 0 && this.#held === null
  }

  /** Reserves the filters of a SUBSCRIBE just read that aedes will grant. */
  reserve(packet: Buffer, v5: boolean): void {
    const read = readSubscribe(packet, v5)
    if (read === null) return
    const client = this.owner.client
    const subs = client?.subscriptions
    const held = subs === undefined ? 0 : Object.keys(subs).length
    for (const sub of read.subs) {
      const { filter } = sub
      // a filter the client holds already is routed by its entry (aedes replaces it in place)
      if (servedElsewhere(filter) || this.#entries.has(filter) || subs?.[filter] !== undefined) continue
      // a kept session's QoS 1/2 messages go through aedes' persistence, which learns of the
      // subscription only as aedes stores it: delivered early they would be queued twice, or
      // acknowledged against a queue entry that is not there. Those wait for aedes, as before.
      if (sub.qos > 0 && client !== null && !client.clean) continue
      if (topicFilterProblem(filter) !== null) continue
      if (!this.allowed(filter, held + this.#entries.size)) continue
      const entry = new RouteEntry(filter, noopListener)
      entry.fn = (p, cb) => this.#deliver(entry, p, cb)
      entry.target = this.owner
      entry.qos = sub.qos
      entry.nl = sub.nl
      entry.rap = sub.rap
      entry.si = read.si
      this.#entries.set(filter, entry)
      this.router.reserve(entry)
    }
  }

  /** Router.on: whether aedes' listener `fn` for `entry.filter` is this connection's subscription. */
  claims(entry: RouteEntry, fn: Listener): boolean {
    return this.#entries.get(entry.filter) === entry && this.owner.client?.subscriptions[entry.filter]?.func === fn
  }

  /** aedes answered a SUBSCRIBE with these filters: what it did not adopt it refused. */
  settled(filters: readonly string[]): void {
    for (const filter of filters) {
      const entry = this.#entries.get(filter)
      if (entry === undefined) continue
      this.#entries.delete(filter)
      this.router.release(entry) // a no-op once aedes adopted it
    }
  }

  /** The aedes client is ready: what waited for it goes out, in order. */
  ready(): void {
    const held = this.#held
    if (held === null) return
    this.#held = null
    for (const { entry, packet } of held) this.#deliver(entry, packet, noop)
  }

  /** The connection closed: its reservations go. */
  close(): void {
    for (const entry of this.#entries.values()) this.router.release(entry)
    this.#entries.clear()
    this.#held = null
  }

  #deliver(entry: RouteEntry, packet: RoutedPacket, cb: DeliverCallback): void {
    const owner = this.owner
    const client = owner.client
    if (owner.closed) return cb()
    if (client === null || !client.connected) {
      ;(this.#held ??= []).push({ entry, packet })
      return cb()
    }
    // what aedes' own subscription function does with a delivery (subscribe.js)
    if (entry.nl && packet.clientId === owner.clientId) return cb() // [MQTT-3.8.3-3]
    if (entry.filter.charCodeAt(0) === 0x23 || entry.filter.charCodeAt(0) === 0x2b) {
      if (packet.topic.charCodeAt(0) === 0x24) return cb() // [MQTT-4.7.2-1]
    }
    const p: RoutedPacket = { ...packet }
    if (!entry.rap) p.retain = false
    if (entry.si !== 0 && entry.sis === null) p.properties = { ...p.properties, [SUBSCRIPTION_IDS]: [entry.si] }
    if (p.qos === 0) return (client.deliver0 as Listener)(p, cb)
    // a kept session queues a QoS 1/2 message before it sends it (aedes' Client.publish)
    if (!client.clean && client.publish !== undefined) return client.publish(p, cb)
    ;(client.deliverQoS as Listener)(p, cb)
  }
}

const noop = (): void => {}
const noopListener: Listener = (_p, cb) => cb()
