import { SubjectTrie } from '../subjects/trie.ts'

/**
 * The routing core every protocol shares. It is aedes' `mq` (the mqemitter interface: on,
 * removeListener, emit, close) and also the table the MQTT fast path reads directly.
 *
 * A RouteEntry is one subscription. Entries created by aedes carry aedes' delivery function;
 * once aedes reports which connection a subscription belongs to, the entry also carries that
 * connection (`target`), and the fast path writes encoded bytes to it without calling aedes.
 */

export type DeliverCallback = (err?: Error | null) => void
/** A listener in mqemitter's shape: called with an aedes-style publish packet. */
export type Listener = (packet: RoutedPacket, cb: DeliverCallback) => void

/** The packet shape aedes passes through `emit` (see aedes-packet). */
export interface RoutedPacket {
  cmd: string
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
  dup: boolean
  messageId?: number
  brokerId?: string
  brokerCounter?: number
  clientId?: string
  properties?: Record<string, unknown>
  [extra: string]: unknown
}

/** What the fast path needs of a subscriber connection (implemented by mqtt/connection.ts). */
export interface FastTarget {
  readonly id: number
}

/** A durable capture of messages (a stream): `store` settles when the message is stored, or why not. */
export interface MessageStore {
  readonly name: string
  store(packet: RoutedPacket): Promise<unknown>
}

/** Told about every store promise of a message that came through aedes (see MqttBroker). */
export type StoredHook = (packet: RoutedPacket, stored: Promise<unknown>, store: MessageStore) => void

export class RouteEntry {
  /** Set for stream captures: the entry stores instead of delivering. */
  store: MessageStore | null = null
  /** The subscriber's connection, once known; null for internal listeners. */
  target: FastTarget | null = null
  /** Granted QoS of the subscription. */
  qos: 0 | 1 | 2 = 0
  /** MQTT 5 No Local. */
  nl = false
  /** MQTT 5 Retain As Published. */
  rap = false
  /** MQTT 5 Subscription Identifier (0 = none). */
  si = 0
  /**
   * Set on the entry a client's overlapping subscriptions were merged into (see match()): the
   * Subscription Identifiers of all of them, which the one copy carries [MQTT-3.3.4-4].
   */
  sis: readonly number[] | null = null

  /** The listener; a reserved entry's changes once it is adopted (see Router.reserve). */
  constructor(readonly filter: string, public fn: Listener) {}
}

/**
 * Where a packet for a merged entry carries its Subscription Identifiers through aedes (which
 * sets only its own subscription's): a symbol key of `properties` survives aedes' copies, and
 * MqttBroker's authorizeForward turns it into the `subscriptionIdentifier` list it writes.
 */
export const SUBSCRIPTION_IDS = Symbol('edgebus.subscriptionIds')

/** The packet to hand to `entry.fn`: with the merged Subscription Identifiers, when there are. */
export function packetForEntry(packet: RoutedPacket, entry: RouteEntry): RoutedPacket {
  if (entry.sis === null) return packet
  return { ...packet, properties: { ...packet.properties, [SUBSCRIPTION_IDS]: entry.sis } }
}

/**
 * One entry for one client's matching subscriptions: the one with the highest QoS, carrying every
 * Subscription Identifier among them when that is more than its own.
 */
function mergeEntries(entries: RouteEntry[]): RouteEntry {
  let best = entries[0] as RouteEntry
  const ids: number[] = []
  for (const e of entries) {
    if (e.qos > best.qos) best = e
    if (e.si !== 0 && !ids.includes(e.si)) ids.push(e.si)
  }
  if (ids.length === 0 || (ids.length === 1 && ids[0] === best.si)) return best
  const merged = new RouteEntry(best.filter, best.fn)
  merged.target = best.target
  merged.qos = best.qos
  merged.nl = best.nl
  merged.rap = best.rap
  merged.si = ids[0] as number
  merged.sis = ids
  return merged
}

/** Where a message to one topic goes; cached per topic. */
export class RoutePlan {
  constructor(
    readonly topic: string,
    readonly entries: readonly RouteEntry[],
    /** How many entries have no target connection and need a decoded packet. */
    readonly slow: number,
    /** How many entries of connections were granted QoS 1 or 2 (aedes delivers those). */
    readonly reliable: number,
    /** How many entries are stream captures. */
    readonly stores: number,
  ) {}

  /** Messages routed by this plan since subject-rates.ts last took it (Router.counted). */
  published = 0
}

const MAX_CACHED_TOPICS = 65_536
const noop = (): void => {}

export class Router {
  #trie = new SubjectTrie<RouteEntry>()
  #entries = new Map<string, Map<Listener, RouteEntry>>()
  /** topic -> the entries a message to it goes to, one per target connection. */
  #cache = new Map<string, RoutePlan>()
  #scratch: RouteEntry[] = []
  /** Plans that routed a message since takeCounted(); null until something reads them. */
  #counted: RoutePlan[] | null = null
  readonly #stores = new Map<string, Listener>()
  /** Entries reserved for subscriptions still being made (see reserve), by filter. */
  readonly #reserved = new Map<string, Set<RouteEntry>>()
  /** Asked by on() for each reserved entry of its filter: whether `fn` is the subscription it was reserved for. */
  claims: ((entry: RouteEntry, fn: Listener) => boolean) | null = null
  #closed = false
  /** Called with the store promises of messages aedes emits, so their acks can wait for them. */
  onStored: StoredHook | null = null
  /** Told of every subscription routed from now on and every one removed (the cluster's interest, src/cluster). */
  onListener: ((filter: string, fn: Listener, added: boolean) => void) | null = null
  /** mqemitter compatibility: messages being delivered right now (we never queue). */
  readonly current = 0

  get subscriptionCount(): number {
    return this.#trie.size
  }

  // --- mqemitter interface, used by aedes -------------------------------------------------

  on(filter: string, fn: Listener, done?: () => void): this {
    let byFn = this.#entries.get(filter)
    if (byFn === undefined) {
      byFn = new Map()
      this.#entries.set(filter, byFn)
    }
    if (!byFn.has(fn) && !this.#adopt(byFn, filter, fn)) {
      const entry = new RouteEntry(filter, fn)
      byFn.set(fn, entry)
      this.#trie.insert(filter, entry)
      this.#cache.clear()
      this.onListener?.(filter, fn, true)
    }
    if (done) process.nextTick(done)
    return this
  }

  /**
   * An entry routed from now on, for a subscription whose listener comes later (a SUBSCRIBE aedes
   * has not taken yet, mqtt/early-subscriptions.ts): when on() is called with the listener it was
   * reserved for (`claims`), the entry takes that listener, so the subscription is routed once and
   * without a gap. Until then the entry's own `fn` receives.
   */
  reserve(entry: RouteEntry): void {
    let byFn = this.#entries.get(entry.filter)
    if (byFn === undefined) {
      byFn = new Map()
      this.#entries.set(entry.filter, byFn)
    }
    byFn.set(entry.fn, entry)
    this.#trie.insert(entry.filter, entry)
    let set = this.#reserved.get(entry.filter)
    if (set === undefined) this.#reserved.set(entry.filter, (set = new Set()))
    set.add(entry)
    this.#cache.clear()
    this.onListener?.(entry.filter, entry.fn, true)
  }

  /** A reservation that was not adopted goes (its subscription was refused, or the client left). */
  release(entry: RouteEntry): void {
    const set = this.#reserved.get(entry.filter)
    if (set === undefined || !set.delete(entry)) return
    if (set.size === 0) this.#reserved.delete(entry.filter)
    this.removeListener(entry.filter, entry.fn)
  }

  #adopt(byFn: Map<Listener, RouteEntry>, filter: string, fn: Listener): boolean {
    const set = this.#reserved.get(filter)
    if (set === undefined || this.claims === null) return false
    for (const entry of set) {
      if (!this.claims(entry, fn)) continue
      set.delete(entry)
      if (set.size === 0) this.#reserved.delete(filter)
      byFn.delete(entry.fn)
      entry.fn = fn
      byFn.set(fn, entry)
      this.#cache.clear()
      return true
    }
    return false
  }

  removeListener(filter: string, fn: Listener, done?: () => void): this {
    const byFn = this.#entries.get(filter)
    const entry = byFn?.get(fn)
    if (byFn && entry) {
      byFn.delete(fn)
      if (byFn.size === 0) this.#entries.delete(filter)
      this.#trie.remove(filter, entry)
      this.#cache.clear()
      this.onListener?.(filter, fn, false)
    }
    if (done) process.nextTick(done)
    return this
  }

  /**
   * Delivers a packet to every matching subscription. We do not wait for listeners: a frozen
   * subscriber must not hold back the publisher or anyone else (its own queue bounds it).
   */
  emit(packet: RoutedPacket, done?: DeliverCallback): void {
    if (this.#closed) {
      if (done) done(new Error('router closed'))
      return
    }
    const plan = this.match(packet.topic)
    this.counted(plan)
    const entries = plan.entries
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i] as RouteEntry
      if (entry.store !== null) {
        const stored = entry.store.store(packet)
        if (this.onStored !== null) this.onStored(packet, stored, entry.store)
        else stored.catch(noop)
        continue
      }
      // [MQTT-3.3.5-1] deliver at the lower of the published QoS and the granted QoS
      // (aedes looks the granted QoS up by topic, which misses wildcard subscriptions).
      const p = entry.target !== null && packet.qos > entry.qos ? { ...packet, qos: entry.qos } : packet
      entry.fn(packetForEntry(p, entry), noop)
    }
    if (done) done()
  }

  close(cb?: () => void): void {
    this.#closed = true
    this.#cache.clear()
    if (cb) process.nextTick(cb)
  }

  // --- used by edgebus' own layers ------------------------------------------------------------

  /** Adds a stream capture on a filter. */
  addStore(filter: string, store: MessageStore): void {
    const fn: Listener = (_packet, cb) => cb()
    this.on(filter, fn)
    const entry = this.entryFor(filter, fn) as RouteEntry
    entry.store = store
    this.#stores.set(`${store.name}\u0000${filter}`, fn)
  }

  removeStore(filter: string, store: MessageStore): void {
    const key = `${store.name}\u0000${filter}`
    const fn = this.#stores.get(key)
    if (fn === undefined) return
    this.#stores.delete(key)
    this.removeListener(filter, fn)
  }

  /** The entry of a (filter, listener) pair, so aedes' subscriptions can be tied to connections. */
  entryFor(filter: string, fn: Listener): RouteEntry | undefined {
    return this.#entries.get(filter)?.get(fn)
  }

  /**
   * Counts one message routed by `plan`, for subject-rates.ts: an increment, and the plan's first
   * message since the last takeCounted() puts it on a list, so the sampler reads only the plans that
   * routed something (not the whole cache, which a subscription change drops anyway).
   */
  counted(plan: RoutePlan): void {
    if (plan.published++ === 0 && this.#counted !== null && this.#counted.length < MAX_CACHED_TOPICS) this.#counted.push(plan)
  }

  /** The plans counted since the last call, each once (their `published` is the count); starts the counting. */
  takeCounted(): RoutePlan[] {
    const taken = this.#counted ?? []
    this.#counted = []
    return taken
  }

  /** Call after changing an entry's target or options: cached routes embed them. */
  invalidate(): void {
    this.#cache.clear()
  }

  /**
   * The entries a message to `topic` goes to. Entries of the same connection are merged into the
   * one with the highest QoS, so a client with overlapping subscriptions gets one copy
   * ([MQTT-3.3.4-2] permits either; one copy is what users expect). Cached until the next change.
   */
  match(topic: string): RoutePlan {
    const cached = this.#cache.get(topic)
    if (cached !== undefined) return cached
    const found = this.#trie.match(topic, this.#scratch)
    let result: RouteEntry[]
    if (found.length <= 1) {
      result = found.slice()
    } else {
      // entries of one target, in the order targets were first met
      const byTarget: RouteEntry[][] = []
      result = []
      for (const entry of found) {
        if (entry.target === null) { result.push(entry); continue }
        const group = byTarget.find((g) => (g[0] as RouteEntry).target === entry.target)
        if (group === undefined) {
          byTarget.push([entry])
          result.push(entry)
        } else {
          group.push(entry)
        }
      }
      for (const group of byTarget) {
        if (group.length > 1) result[result.indexOf(group[0] as RouteEntry)] = mergeEntries(group)
      }
    }
    found.length = 0
    let slow = 0
    let reliable = 0
    let stores = 0
    for (const entry of result) {
      if (entry.store !== null) stores++
      else if (entry.target === null) slow++
      else if (entry.qos > 0) reliable++
    }
    const plan = new RoutePlan(topic, result, slow, reliable, stores)
    if (this.#cache.size >= MAX_CACHED_TOPICS) this.#cache.clear()
    this.#cache.set(topic, plan)
    return plan
  }
}
