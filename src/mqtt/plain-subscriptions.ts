import { generate } from 'mqtt-packet'
import { SUBSCRIPTION_IDS, type RouteEntry, type Listener, type RoutedPacket, type Router, type FastTarget } from '../router/router.ts'
import { topicFilterProblem } from '../subjects/topic.ts'
import { readSubscribe, type SubscribeEntry } from './early-subscriptions.ts'
import { orderMarker, restoreUserPropertyOrder, USER_PROPERTY_ORDER } from './user-property-order.ts'

/**
 * The QoS 0 subscriptions of a clean client served without aedes (issue 16): its SUBSCRIBE is
 * answered in the turn it is read, with a Router entry whose target is the connection (the fast
 * path writes to it, Router.emit calls its listener), so a subscribing idle device costs no aedes
 * client. What this does not serve (QoS 1/2, `$` filters, anything unusual) is left to aedes: the
 * connection is promoted then, and these entries stay, delivered as before.
 */

/** What a connection offers its plain subscriptions. */
export interface PlainSubscriber extends FastTarget {
  /** A delivery through the Router's listener (a publisher on aedes' path, the HTTP API, a retained message). */
  deliverRouted(entry: RouteEntry, packet: RoutedPacket): void
}

/** SUBSCRIBE options this layer serves: all QoS 0, no `$` filter, no filter twice, a Subscription Identifier in range. */
export function servablePlainSubscribe(packet: Buffer, v5: boolean): { id: number; si: number; subs: SubscribeEntry[] } | null {
  const read = readSubscribe(packet, v5)
  if (read === null || read.badSi) return null
  const reservedBits = v5 ? 0xc0 : 0xfc // [MQTT-3.8.3-5]: aedes refuses them
  for (let i = 0; i < read.subs.length; i++) {
    const sub = read.subs[i] as SubscribeEntry
    // '$': $share/, $stream/, $replay/ have handlers of their own, $SYS subscribers are told at once (sys-topics.ts)
    if (sub.qos !== 0 || (sub.options & reservedBits) !== 0 || sub.rh === 3 || sub.filter.charCodeAt(0) === 0x24 || topicFilterProblem(sub.filter) !== null) return null
    for (let j = 0; j < i; j++) if ((read.subs[j] as SubscribeEntry).filter === sub.filter) return null // aedes keeps the last: its SUBACK is shorter
  }
  return { id: read.id, si: read.si, subs: read.subs }
}

export class PlainSubscriptions {
  readonly #entries = new Map<string, RouteEntry>()

  constructor(readonly owner: PlainSubscriber, readonly router: Router) {}

  get size(): number {
    return this.#entries.size
  }

  has(filter: string): boolean {
    return this.#entries.has(filter)
  }

  /** Subscribes (or changes the options of) `sub.filter`; true when the subscription is new [MQTT-3.8.4-3]. */
  subscribe(sub: SubscribeEntry, si: number): boolean {
    let entry = this.#entries.get(sub.filter)
    const isNew = entry === undefined
    if (entry === undefined) {
      const fn: Listener = (p, cb) => {
        this.owner.deliverRouted(entry as RouteEntry, p)
        cb()
      }
      this.router.on(sub.filter, fn)
      entry = this.router.entryFor(sub.filter, fn) as RouteEntry
      this.#entries.set(sub.filter, entry)
    }
    entry.target = this.owner
    entry.qos = sub.qos
    entry.nl = sub.nl
    entry.rap = sub.rap
    entry.si = si
    this.router.invalidate() // cached plans embed the options
    return isNew
  }

  /** Whether the client held `filter`; it does not from now on. */
  unsubscribe(filter: string): boolean {
    const entry = this.#entries.get(filter)
    if (entry === undefined) return false
    this.#entries.delete(filter)
    this.router.removeListener(filter, entry.fn)
    return true
  }

  list(): Array<{ filter: string; qos: number }> {
    return [...this.#entries.values()].map((e) => ({ filter: e.filter, qos: e.qos }))
  }

  close(): void {
    for (const [filter, entry] of this.#entries) this.router.removeListener(filter, entry.fn)
    this.#entries.clear()
  }
}

/**
 * A QoS 0 PUBLISH of `packet` for a client of this protocol level: `retain` as it is to go out,
 * the Subscription Identifiers of the subscription(s) it matched [MQTT-3.3.4-3], user properties
 * in the order they came (user-property-order.ts), Message Expiry as `expiry` says (seconds left).
 */
export function encodeDelivery(packet: RoutedPacket, v5: boolean, retain: boolean, sis: readonly number[] | null, expiry?: number): Buffer {
  const out: Record<string, unknown> = { cmd: 'publish', topic: packet.topic, payload: packet.payload, qos: 0, retain, dup: false }
  let marked = false
  if (v5) {
    const props = packet.properties as Record<string | symbol, unknown> | undefined
    if (props !== undefined || sis !== null || expiry !== undefined) {
      const p: Record<string, unknown> = { ...props }
      delete p.subscriptionIdentifier
      delete p.topicAlias // the connection's own aliases apply on its write queue
      if (sis !== null) p.subscriptionIdentifier = sis.length === 1 ? sis[0] : [...sis]
      if (expiry !== undefined) p.messageExpiryInterval = expiry
      const entries = props?.[USER_PROPERTY_ORDER] as Buffer | undefined
      if (entries !== undefined) {
        p.userProperties = orderMarker(entries)
        marked = true
      }
      out.properties = p
    }
  }
  const frame = generate(out as never, { protocolVersion: v5 ? 5 : 4 })
  return marked ? restoreUserPropertyOrder(frame) : frame
}

/** The Subscription Identifiers a routed packet carries for `entry` (merged ones first, see Router.match). */
export function subscriptionIds(packet: RoutedPacket, entry: RouteEntry): readonly number[] | null {
  const merged = (packet.properties as Record<symbol, unknown> | undefined)?.[SUBSCRIPTION_IDS] as readonly number[] | undefined
  if (merged !== undefined) return merged
  return entry.si !== 0 ? [entry.si] : null
}
