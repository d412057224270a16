import type { Listener, RoutedPacket, Router } from '../router/router.ts'
import { validateTopicFilter } from '../subjects/topic.ts'
import type { AedesClient } from './broker.ts'

/**
 * MQTT 5 shared subscriptions (`$share/{ShareName}/{filter}`, [MQTT-4.8.2]), which aedes 2.0 beta
 * refuses: each message matching the filter goes to one member of the group, in turn. Also
 * accepted from MQTT 3.1.1 clients, as Mosquitto and others do.
 *
 * A group is one router listener; its members are connections. Delivery goes through the
 * member's aedes client, so QoS 1/2 packet ids, retries and inflight state stay aedes' own.
 * Shared subscriptions live as long as the connection: they are not part of a persistent session.
 */

export const SHARE_PREFIX = '$share/'

export interface SharedMember {
  readonly id: number
  readonly client: AedesClient | null
  readonly connected: boolean
}

interface Membership {
  member: SharedMember
  qos: 0 | 1 | 2
}

class SharedGroup {
  readonly members: Membership[] = []
  #next = 0
  readonly listener: Listener

  constructor(readonly key: string, readonly filter: string) {
    this.listener = (packet, cb) => {
      this.deliver(packet)
      cb()
    }
  }

  deliver(packet: RoutedPacket): void {
    const n = this.members.length
    for (let tries = 0; tries < n; tries++) {
      const m = this.members[this.#next % n] as Membership
      this.#next = (this.#next + 1) % n
      const client = m.member.client
      if (!m.member.connected || client === null) continue
      // [MQTT-3.3.5-1] the lower of the published QoS and the QoS granted to this member
      const qos = packet.qos < m.qos ? packet.qos : m.qos
      const p = qos === packet.qos ? packet : { ...packet, qos }
      const deliver = (qos === 0 ? client.deliver0 : client.deliverQoS) as Listener | undefined
      deliver?.(p, () => {})
      return
    }
  }
}

/** A parsed `$share/...` filter, or an error reason. */
export function parseSharedFilter(filter: string): { group: string; filter: string } | null {
  if (!filter.startsWith(SHARE_PREFIX)) return null
  const rest = filter.slice(SHARE_PREFIX.length)
  const slash = rest.indexOf('/')
  if (slash <= 0) throw new Error('a shared subscription is $share/{ShareName}/{filter}')
  const group = rest.slice(0, slash)
  // [MQTT-4.8.2-2] the ShareName must not contain '/', '+' or '#'
  if (group.includes('+') || group.includes('#')) throw new Error('the ShareName must not contain "+" or "#"')
  const inner = rest.slice(slash + 1)
  validateTopicFilter(inner)
  return { group, filter: inner }
}

/** Who hands a group its messages instead of the router: the cluster's queue groups (src/cluster/shared.ts). */
export interface SharedGroupSource {
  added(group: string, filter: string): void
  removed(group: string, filter: string): void
}

export class SharedSubscriptions {
  readonly #router: Router
  readonly #groups = new Map<string, SharedGroup>()
  /**
   * Set in cluster mode: a group's messages come from the cluster (one node of the group gets each,
   * the message published here included), so groups take none from the router, or a message would
   * reach a member here and one on another node.
   */
  source: SharedGroupSource | null = null

  constructor(router: Router) {
    this.#router = router
  }

  /** Adds (or updates the QoS of) a member; returns the granted QoS. */
  subscribe(member: SharedMember, group: string, filter: string, qos: 0 | 1 | 2): 0 | 1 | 2 {
    const key = `${group}\u0000${filter}`
    let g = this.#groups.get(key)
    if (!g) {
      g = new SharedGroup(key, filter)
      this.#groups.set(key, g)
      if (this.source !== null) this.source.added(group, filter)
      else this.#router.on(filter, g.listener)
    }
    const existing = g.members.find((m) => m.member === member)
    if (existing) existing.qos = qos
    else g.members.push({ member, qos })
    return qos
  }

  /** Removes a member; returns whether it was subscribed. */
  unsubscribe(member: SharedMember, group: string, filter: string): boolean {
    const key = `${group}\u0000${filter}`
    const g = this.#groups.get(key)
    if (!g) return false
    const i = g.members.findIndex((m) => m.member === member)
    if (i === -1) return false
    g.members.splice(i, 1)
    if (g.members.length === 0) this.#drop(g)
    return true
  }

  /** A connection closed: it leaves every group. */
  removeMember(member: SharedMember): void {
    for (const g of [...this.#groups.values()]) {
      const i = g.members.findIndex((m) => m.member === member)
      if (i === -1) continue
      g.members.splice(i, 1)
      if (g.members.length === 0) this.#drop(g)
    }
  }

  /** A message for one member of a group (from the cluster); false when the group has no member here now. */
  deliverTo(group: string, filter: string, packet: RoutedPacket): boolean {
    const g = this.#groups.get(`${group}\u0000${filter}`)
    if (g === undefined) return false
    g.deliver(packet)
    return true
  }

  get groupCount(): number {
    return this.#groups.size
  }

  #drop(g: SharedGroup): void {
    this.#groups.delete(g.key)
    const sep = g.key.indexOf('\u0000')
    if (this.source !== null) this.source.removed(g.key.slice(0, sep), g.filter)
    else this.#router.removeListener(g.filter, g.listener)
  }
}
