import { Readable } from 'node:stream'
import type { EdgebusError } from '../core/errors.ts'
import { RecordType, type StateRecord, type StoredPacket, type StoredSubscription } from './records.ts'
import { MqttState, type QueueEntry, type SubView } from './state.ts'
import { StateLog, type LoadReport, type PersistenceLog, type StateLogOptions, type StateLogStats } from './state-log.ts'

/**
 * An aedes persistence (the promise-returning interface aedes 2 awaits; its abstract test suite
 * runs against this class in test/persistence) that keeps retained messages, persistent sessions
 * and wills in a file-backed log (state-log.ts) in the data directory, so they survive restarts.
 *
 * Beyond the interface it bounds what an offline session can pin:
 * - `maxQueuedMessages` per session: over it, the oldest queued QoS 0/1 message is dropped
 *   (counted in `stats.queueDropped`); a queue of QoS 2 messages only refuses the newest instead.
 *   The bound applies while the client is offline (online, its queue holds only messages in flight).
 * - session expiry, which aedes only keeps in timers that a restart forgets: every persistent
 *   session's expiry and disconnect time are stored, and sessions past it are discarded — also
 *   right after a restart. MQTT 3.1.1 persistent sessions expire after `sessionExpiryMs`; MQTT 5
 *   ones after their Session Expiry Interval, capped at `sessionExpiryMs`. `sessionExpiryMs` 0:
 *   no cap, and MQTT 3.1.1 sessions never expire.
 *
 * Every method changes the state in memory at once and resolves when the change is written to
 * the OS (see StateLog for when it is synced). When the write fails (a full disk), what takes a
 * message or a promise in — a retained message, a message queued for a session, an incoming QoS 2
 * message, a subscription, a will — rejects (EPERSIST_FULL, EPERSIST_IO), and the first three
 * are taken back in memory: the broker refuses them to the client. What only records progress
 * (acknowledged deliveries, sessions ending) resolves anyway (#tolerate).
 */

export interface FilePersistenceOptions extends StateLogOptions {
  /** Queued messages per offline session. Default 1000. */
  maxQueuedMessages?: number
  /** Expiry of MQTT 3.1.1 persistent sessions and cap of MQTT 5 ones, ms; 0 = never. Default 7 days. */
  sessionExpiryMs?: number
  /** The time source. Default Date.now. */
  clock?: () => number
}

export interface PersistenceStats extends StateLogStats {
  retained: number
  /** Client ids with persistent state (subscriptions, queue, incoming QoS 2, session). */
  sessions: number
  /** QoS 1/2 subscriptions of persistent sessions. */
  subscriptions: number
  /** Messages queued for sessions. */
  queued: number
  /** Queued messages dropped by maxQueuedMessages. */
  queueDropped: number
  /** Sessions discarded by expiry. */
  sessionsExpired: number
}

/** The parts of an aedes client the persistence reads. */
interface ClientLike {
  id: string
  clean?: boolean
  version?: number
  sessionExpiryInterval?: number
}

/** The parts of the aedes broker the persistence uses. */
interface BrokerLike {
  id: string
  clients?: Record<string, unknown>
  on?(event: 'client' | 'clientDisconnect', fn: (client: ClientLike) => void): unknown
  off?(event: 'client' | 'clientDisconnect', fn: (client: ClientLike) => void): unknown
}

/** A packet as aedes hands it over. */
type PacketLike = StoredPacket & { dup?: boolean; properties?: Record<string, unknown> | null }

/** MQTT 5's "never expires" Session Expiry Interval. */
const SESSION_NEVER_EXPIRES = 0xffffffff
const DEFAULT_MAX_QUEUED = 1000
const DEFAULT_SESSION_EXPIRY_MS = 7 * 24 * 3600 * 1000
const MAX_TIMER_MS = 2 ** 31 - 1
const RESOLVED: Promise<void> = Promise.resolve()
const NO_SUCH_PACKET = new Error('no such packet')
const EMPTY = Buffer.alloc(0)
const silentLog: PersistenceLog = { info() {}, warn() {}, error() {} }

export class FilePersistence {
  readonly #state: MqttState
  readonly #log: StateLog
  readonly #logger: PersistenceLog
  readonly #maxQueued: number
  readonly #expiryCapMs: number
  readonly #clock: () => number
  #broker: BrokerLike | null = null
  #byTopic = new Map<string, SubView[]>()
  #byTopicVersion = -1
  #sweepTimer: NodeJS.Timeout | null = null
  #sweepAt = 0
  #overflowing = new Set<string>()
  #queueDropped = 0
  #sessionsExpired = 0
  #closed: Promise<void> | null = null

  private constructor(state: MqttState, log: StateLog, opts: FilePersistenceOptions) {
    this.#state = state
    this.#log = log
    this.#logger = opts.log ?? silentLog
    this.#maxQueued = opts.maxQueuedMessages ?? DEFAULT_MAX_QUEUED
    this.#expiryCapMs = opts.sessionExpiryMs ?? DEFAULT_SESSION_EXPIRY_MS
    this.#clock = opts.clock ?? Date.now
  }

  /** Opens the state in `dir` (created if missing), replays it, and discards sessions that expired meanwhile. */
  static async open(dir: string, opts: FilePersistenceOptions = {}): Promise<FilePersistence> {
    const state = new MqttState()
    const log = await StateLog.open(dir, state, opts)
    const p = new FilePersistence(state, log, opts)
    p.#restartSessions()
    const r = log.loaded
    p.#logger.info({
      dir: log.dir, file: log.path, bytes: r.bytes, records: r.records, ms: r.ms,
      retained: state.retained.size, sessions: state.clients.size, queued: state.queued, expired: p.#sessionsExpired,
    }, 'MQTT state loaded')
    return p
  }

  /** What opening found: records, damage skipped, torn tail cut. */
  get loaded(): LoadReport {
    return this.#log.loaded
  }

  get stats(): PersistenceStats {
    const s = this.#state
    return {
      ...this.#log.stats,
      liveBytes: s.liveBytes,
      retained: s.retained.size,
      sessions: s.clients.size,
      subscriptions: s.subTrie.size,
      queued: s.queued,
      queueDropped: this.#queueDropped,
      sessionsExpired: this.#sessionsExpired,
    }
  }

  /** The broker given to setup() (the abstract tests read it). */
  get broker(): BrokerLike | null {
    return this.#broker
  }

  /** Called by aedes when it starts listening. */
  async setup(broker: BrokerLike): Promise<void> {
    this.#broker = broker
    if (typeof broker.on === 'function') {
      broker.on('client', this.#onClient)
      broker.on('clientDisconnect', this.#onDisconnect)
    }
    this.#armSweep()
  }

  /**
   * The stored subscriptions of persistent sessions, as addSubscriptions took them: after a
   * restart they exist here before any client calls in (the QoS 1 fast path's bookkeeping is
   * seeded from this).
   */
  *persistentSubscriptions(): Generator<{ clientId: string; subscription: StoredSubscription }> {
    for (const [clientId, c] of this.#state.clients) {
      if (!c.subs) continue
      for (const e of c.subs.values()) yield { clientId, subscription: { ...e.sub } }
    }
  }

  // ---- retained messages

  storeRetained(packet: PacketLike): Promise<void> {
    const topic = packet.topic
    if (typeof topic !== 'string') return Promise.reject(new TypeError('a retained message needs a topic'))
    const payload = packet.payload as { length?: number } | null | undefined
    const prev = this.#state.retained.get(topic)?.packet
    // while writes fail, memory may hold what the file does not: write again rather than trust it
    const trusted = this.#log.failure === null
    // a refused change is taken back, so memory says what the file (and the client) were told
    const restore = (): void => {
      this.#append(prev ? { t: RecordType.RETAIN_PUT, packet: prev } : { t: RecordType.RETAIN_DEL, topic })
    }
    if (payload == null || payload.length === 0) {
      // [MQTT-3.3.1-10] an empty retained message clears the topic's retained message
      // (nothing to clear: answered once what made it so is written, maybe a clear of this turn)
      if (prev === undefined && trusted) return this.#log.written()
      return this.#kept({ t: RecordType.RETAIN_DEL, topic }, () => {
        if (prev !== undefined && this.#state.retained.get(topic) === undefined) restore()
      })
    }
    // a sensor re-publishing the value it published last costs the SD card nothing
    if (prev && trusted && sameRetained(prev, packet)) return this.#log.written()
    const stored = copyPacket(packet)
    // which broker instance counted it means nothing once stored (aedes re-numbers retained deliveries)
    delete stored.brokerId
    delete stored.brokerCounter
    return this.#kept({ t: RecordType.RETAIN_PUT, packet: stored }, () => {
      if (this.#state.retained.get(topic)?.packet === stored) restore()
    })
  }

  createRetainedStream(pattern: string): Readable {
    return this.createRetainedStreamCombi([pattern])
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    return Readable.from(this.#state.retained.match(patterns))
  }

  // ---- subscriptions of persistent sessions

  // these answer once everything appended so far is written: a change already in the state may
  // be one of this turn, not on its way to the OS yet

  addSubscriptions(client: ClientLike, subs: StoredSubscription[]): Promise<void> {
    const c = this.#state.client(client.id)
    for (const s of subs) {
      const sub = copySub(s)
      const prev = c?.subs?.get(sub.topic)
      if (prev && sameSub(prev.sub, sub) && this.#log.failure === null) continue
      this.#append({ t: RecordType.SUB_PUT, clientId: client.id, sub })
    }
    return this.#log.written()
  }

  removeSubscriptions(client: ClientLike, topics: string[]): Promise<void> {
    const subs = this.#state.client(client.id)?.subs
    for (const topic of topics) {
      if (!subs?.has(topic)) continue
      this.#append({ t: RecordType.SUB_DEL, clientId: client.id, topic })
    }
    return this.#tolerate(this.#log.written())
  }

  subscriptionsByClient(client: ClientLike): Promise<StoredSubscription[]> {
    const subs = this.#state.client(client.id)?.subs
    const out: StoredSubscription[] = []
    // copies: aedes writes the granted QoS into what it restores
    if (subs) for (const e of subs.values()) out.push({ ...e.sub })
    return Promise.resolve(out)
  }

  countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return Promise.resolve({ subsCount: this.#state.subTrie.size, clientsCount: this.#state.subscribedClients })
  }

  /** The QoS 1/2 subscriptions of persistent sessions matching a topic (cached per topic until subscriptions change). */
  subscriptionsByTopic(topic: string): Promise<SubView[]> {
    const state = this.#state
    if (state.subTrie.size === 0) return Promise.resolve([])
    if (this.#byTopicVersion !== state.subsVersion) {
      this.#byTopic.clear()
      this.#byTopicVersion = state.subsVersion
    }
    let hit = this.#byTopic.get(topic)
    if (hit === undefined) {
      // the trie lists literal filters before the wildcards that also match; the reverse is the
      // order the abstract suite expects (the interface does not define one)
      hit = state.subTrie.match(topic, []).reverse()
      if (this.#byTopic.size >= 10_000) this.#byTopic.clear()
      this.#byTopic.set(topic, hit)
    }
    return Promise.resolve(hit)
  }

  /** Discards the session: subscriptions, queued messages, incoming QoS 2 state, expiry (not the will). */
  cleanSubscriptions(client: ClientLike): Promise<void> {
    if (this.#state.client(client.id) === undefined) return this.#log.written()
    return this.#tolerate(this.#write({ t: RecordType.CLEAN, clientId: client.id }))
  }

  // ---- outgoing queues

  outgoingEnqueue(sub: { clientId: string; qos?: number }, packet: PacketLike): Promise<void> {
    return this.outgoingEnqueueCombi([sub], packet)
  }

  /**
   * Queues a message for each client once, at the QoS it is delivered with: the lower of the
   * published QoS and the highest QoS the client's matching subscriptions were granted.
   */
  outgoingEnqueueCombi(subs: Array<{ clientId: string; qos?: number }>, packet: PacketLike): Promise<void> {
    if (subs.length === 0) return RESOLVED
    const published = packet.qos ?? 0
    if (subs.length === 1) {
      const s = subs[0] as { clientId: string; qos?: number }
      const qos = Math.min(published, s.qos ?? published)
      if (qos === 0) return RESOLVED
      return this.#queued([this.#enqueue([s.clientId], packet, qos)])
    }
    const best = new Map<string, number>()
    for (const s of subs) {
      const qos = Math.min(published, s.qos ?? published)
      if (qos > (best.get(s.clientId) ?? 0)) best.set(s.clientId, qos)
    }
    if (best.size === 0) return RESOLVED
    const groups: [string[], string[], string[]] = [[], [], []]
    for (const [id, qos] of best) (groups[qos] as string[]).push(id)
    const enqueued: Array<{ clientIds: string[]; seq: number }> = []
    if (groups[1].length > 0) enqueued.push(this.#enqueue(groups[1], packet, 1))
    if (groups[2].length > 0) enqueued.push(this.#enqueue(groups[2], packet, 2))
    return this.#queued(enqueued)
  }

  #enqueue(clientIds: string[], packet: PacketLike, qos: number): { clientIds: string[]; seq: number } {
    const stored = copyQueued(packet, qos)
    const seq = this.#state.nextSeq
    this.#append({ t: RecordType.OUT_ENQ, seq, clientIds, packet: stored, messageId: undefined })
    for (let i = 0; i < clientIds.length; i++) this.#bound(clientIds[i] as string, seq + i)
    return { clientIds, seq }
  }

  /** Resolves once the queued messages are written; when that fails, they leave the queues again. */
  #queued(enqueued: Array<{ clientIds: string[]; seq: number }>): Promise<void> {
    return this.#log.written().catch((err: unknown) => {
      for (const { clientIds, seq } of enqueued) {
        for (let i = 0; i < clientIds.length; i++) {
          const clientId = clientIds[i] as string
          if (this.#state.client(clientId)?.queue?.get(seq + i)) this.#append({ t: RecordType.OUT_DEL, clientId, seq: seq + i })
        }
      }
      throw err
    })
  }

  /** Keeps an offline session's queue within maxQueuedMessages. */
  #bound(clientId: string, newSeq: number): void {
    const q = this.#state.client(clientId)?.queue
    if (!q || q.length <= this.#maxQueued || this.#online(clientId)) return
    while (q.length > this.#maxQueued) {
      // the oldest QoS 0/1 message; QoS 2 ones are kept (a queue of them refuses the newest)
      const victim = q.find(isDroppable) ?? q.get(newSeq)
      if (!victim) return
      this.#append({ t: RecordType.OUT_DEL, clientId, seq: victim.seq })
      this.#queueDropped++
      if (!this.#overflowing.has(clientId)) {
        this.#overflowing.add(clientId)
        this.#logger.warn({ client: clientId, maxQueuedMessages: this.#maxQueued },
          'offline session queue is full: dropping its oldest QoS 0/1 messages (sessions.maxQueuedMessages)')
      }
      if (victim.seq === newSeq) return
    }
  }

  /** A queued message gets its packet identifier (publish), or becomes its PUBREL (after PUBREC). */
  outgoingUpdate(client: ClientLike, packet: PacketLike): Promise<void> {
    const q = this.#state.client(client.id)?.queue
    if (!q) return RESOLVED
    const cmd = packet.cmd ?? 'publish'
    if (cmd === 'publish' && packet.brokerId !== undefined) {
      const e = q.byCounter(packet.brokerId, packet.brokerCounter)
      // not queued (dropped by the bound): resolve, so aedes still sends it (a rejection would close the client)
      if (!e || e.messageId === packet.messageId) return RESOLVED
      return this.#tolerate(this.#write({ t: RecordType.OUT_MID, clientId: client.id, seq: e.seq, messageId: packet.messageId }))
    }
    if (typeof packet.messageId !== 'number') return RESOLVED
    const e = q.byMessageId(packet.messageId)
    // a PUBREL already in place (aedes re-sends it after a reconnect) is not written again
    if (!e || (e.packet.cmd === cmd && e.messageId === packet.messageId)) return RESOLVED
    return this.#tolerate(this.#write({ t: RecordType.OUT_SET, clientId: client.id, seq: e.seq, packet: copyPacket(packet) }))
  }

  /** Removes the queued message of a packet identifier (PUBACK, PUBCOMP) and answers it. */
  outgoingClearMessageId(client: ClientLike, packet: PacketLike | number | null | undefined): Promise<StoredPacket | undefined> {
    const q = this.#state.client(client.id)?.queue
    if (!q || packet === null || typeof packet !== 'object') return Promise.resolve(undefined)
    let e: QueueEntry | undefined
    if (typeof packet.messageId === 'number') e = q.byMessageId(packet.messageId)
    else if (packet.brokerId !== undefined) e = q.byCounter(packet.brokerId, packet.brokerCounter)
    if (!e) return Promise.resolve(undefined)
    const out = queuedView(e)
    return this.#tolerate(this.#write({ t: RecordType.OUT_DEL, clientId: client.id, seq: e.seq })).then(() => out)
  }

  outgoingStream(client: ClientLike): Readable {
    const q = this.#state.client(client.id)?.queue
    return Readable.from(q ? q.toArray().map(queuedView) : [])
  }

  // ---- incoming QoS 2

  incomingStorePacket(client: ClientLike, packet: PacketLike): Promise<void> {
    if (typeof packet.messageId !== 'number') return Promise.reject(new TypeError('an incoming QoS 2 packet needs a messageId'))
    const stored = copyQueued(packet, packet.qos ?? 0)
    const mid = stored.messageId = packet.messageId
    // refused: not held either, so the client's resend is a new message, not a duplicate to skip
    return this.#kept({ t: RecordType.IN_PUT, clientId: client.id, packet: stored }, () => {
      if (this.#state.client(client.id)?.incoming?.get(mid)?.packet === stored) this.#append({ t: RecordType.IN_DEL, clientId: client.id, messageId: mid })
    })
  }

  incomingGetPacket(client: ClientLike, packet: { messageId?: number }): Promise<StoredPacket> {
    const h = packet.messageId === undefined ? undefined : this.#state.client(client.id)?.incoming?.get(packet.messageId)
    return h ? Promise.resolve({ ...h.packet }) : Promise.reject(NO_SUCH_PACKET)
  }

  incomingDelPacket(client: ClientLike, packet: { messageId?: number }): Promise<void> {
    const mid = packet.messageId
    if (mid === undefined || !this.#state.client(client.id)?.incoming?.has(mid)) return Promise.reject(NO_SUCH_PACKET)
    return this.#tolerate(this.#write({ t: RecordType.IN_DEL, clientId: client.id, messageId: mid }))
  }

  /** Whether anything is kept under this client identifier: a session, its QoS 2 state, a will. */
  hasSession(clientId: string): boolean {
    return this.#state.client(clientId) !== undefined || this.#state.wills.has(clientId)
  }

  // ---- wills

  putWill(client: ClientLike, packet: PacketLike): Promise<void> {
    // the interface: the will names its client and the broker that holds it
    packet.brokerId = this.#broker?.id
    packet.clientId = client.id
    return this.#write({ t: RecordType.WILL_PUT, clientId: client.id, packet: copyPacket(packet) })
  }

  getWill(client: ClientLike): Promise<StoredPacket | undefined> {
    const h = this.#state.wills.get(client.id)
    return Promise.resolve(h ? willView(h.packet) : undefined)
  }

  delWill(client: ClientLike): Promise<StoredPacket | undefined> {
    const h = this.#state.wills.get(client.id)
    // none (maybe deleted this turn): answered once that is written
    if (!h) return this.#log.written().then(() => undefined)
    const will = willView(h.packet)
    return this.#tolerate(this.#write({ t: RecordType.WILL_DEL, clientId: client.id })).then(() => will)
  }

  /** Wills held for brokers not in `brokers` (after a crash: all of them, aedes publishes them). */
  streamWill(brokers: Record<string, unknown> = {}): Readable {
    const out: StoredPacket[] = []
    for (const h of this.#state.wills.values()) {
      const brokerId = h.packet.brokerId
      if (typeof brokerId !== 'string' || brokers[brokerId] === undefined) out.push(willView(h.packet))
    }
    return Readable.from(out)
  }

  getClientList(topic: string): Readable {
    const out: string[] = []
    for (const [id, c] of this.#state.clients) if (c.subs?.has(topic)) out.push(id)
    return Readable.from(out)
  }

  // ---- sessions: expiry across restarts

  #onClient = (client: ClientLike): void => {
    this.#overflowing.delete(client.id)
    if (client.clean !== false || this.#closed) return
    const expiryMs = this.#expiryFor(client)
    const s = this.#state.client(client.id)?.session
    if (s && s.down === 0 && s.expiryMs === expiryMs) return
    this.#append({ t: RecordType.SESSION, clientId: client.id, expiryMs, down: 0 })
  }

  #onDisconnect = (client: ClientLike): void => {
    if (this.#closed) return
    const c = this.#state.client(client.id)
    if (client.clean !== false) {
      // a clean session ends with its connection [MQTT-3.1.2-6]: drop what it left (incoming QoS 2 state)
      if (c) void this.cleanSubscriptions({ id: client.id })
      return
    }
    const down = this.#clock()
    const expiryMs = this.#expiryFor(client)
    this.#append({ t: RecordType.SESSION, clientId: client.id, expiryMs, down })
    if (expiryMs >= 0) this.#armSweep(down + expiryMs)
  }

  /** How long a session of this client outlives its connection; -1 = for ever. */
  #expiryFor(client: ClientLike): number {
    const cap = this.#expiryCapMs
    if (client.version === 5) {
      const s = client.sessionExpiryInterval ?? 0
      if (s >= SESSION_NEVER_EXPIRES) return cap > 0 ? cap : -1
      return cap > 0 ? Math.min(s * 1000, cap) : s * 1000
    }
    return cap > 0 ? cap : -1
  }

  #online(clientId: string): boolean {
    const clients = this.#broker?.clients
    return clients !== undefined && Object.prototype.hasOwnProperty.call(clients, clientId)
  }

  /**
   * After a restart no client is connected: the disconnect time of sessions that were connected
   * when the server stopped (or crashed) is now, as it is for state without a session record; a
   * disconnect time in the future (the clock was set back) is now too. Then expired ones go.
   */
  #restartSessions(): void {
    const now = this.#clock()
    const defaultExpiry = this.#expiryCapMs > 0 ? this.#expiryCapMs : -1
    for (const [clientId, c] of this.#state.clients) {
      const s = c.session
      if (s === null) {
        if (c.subs || c.queue || c.incoming) this.#append({ t: RecordType.SESSION, clientId, expiryMs: defaultExpiry, down: now })
      } else if (s.down === 0 || s.down > now) {
        this.#append({ t: RecordType.SESSION, clientId, expiryMs: s.expiryMs, down: now })
      }
    }
    this.#sweep()
  }

  #armSweep(at?: number): void {
    if (this.#closed) return
    if (at === undefined) {
      at = Infinity
      for (const c of this.#state.clients.values()) {
        const s = c.session
        if (s && s.down > 0 && s.expiryMs >= 0) at = Math.min(at, s.down + s.expiryMs)
      }
      if (this.#sweepTimer) clearTimeout(this.#sweepTimer)
      this.#sweepTimer = null
      this.#sweepAt = 0
      if (at === Infinity) return
    } else if (this.#sweepTimer !== null && this.#sweepAt <= at) {
      return
    }
    if (this.#sweepTimer) clearTimeout(this.#sweepTimer)
    this.#sweepAt = at
    this.#sweepTimer = setTimeout(() => {
      this.#sweepTimer = null
      this.#sweepAt = 0
      this.#sweep()
      this.#armSweep()
    }, Math.min(Math.max(at - this.#clock(), 0) + 5, MAX_TIMER_MS))
    this.#sweepTimer.unref()
  }

  /** Discards sessions past their expiry (not those of connected clients). */
  #sweep(): void {
    const now = this.#clock()
    for (const [clientId, c] of this.#state.clients) {
      const s = c.session
      if (!s || s.down === 0 || s.expiryMs < 0 || s.down + s.expiryMs > now || this.#online(clientId)) continue
      this.#sessionsExpired++
      this.#logger.info({ client: clientId, queued: c.queue?.length ?? 0, disconnectedAt: new Date(s.down).toISOString() }, 'persistent session expired: discarded')
      // through the method (not the record): a wrapper of cleanSubscriptions sees the session go
      void this.cleanSubscriptions({ id: clientId })
    }
  }

  // ---- life cycle

  /** Resolves once every change so far is written and no compaction is running (for tests and benchmarks). */
  settled(): Promise<void> {
    return this.#log.settled()
  }

  /** The interface's name for close(). */
  destroy(): Promise<void> {
    return this.close()
  }

  /** Writes and syncs what is pending, closes the file. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#sweepTimer) clearTimeout(this.#sweepTimer)
      this.#sweepTimer = null
      const b = this.#broker
      if (b && typeof b.off === 'function') {
        b.off('client', this.#onClient)
        b.off('clientDisconnect', this.#onDisconnect)
      }
      await this.#log.close()
    })()
    return this.#closed
  }

  #append(rec: StateRecord): void {
    const bytes = this.#log.append(rec)
    this.#state.apply(rec, bytes)
  }

  #write(rec: StateRecord): Promise<void> {
    try {
      this.#append(rec)
    } catch (err) {
      return Promise.reject(err)
    }
    return this.#log.written()
  }

  /** As #write; when the write fails (the change is refused), `undo` takes it back in memory. */
  #kept(rec: StateRecord, undo: () => void): Promise<void> {
    return this.#write(rec).catch((err: unknown) => {
      undo()
      throw err
    })
  }

  /**
   * A change that only records progress (a delivery acknowledged, a packet identifier, a session
   * or will ended): when it cannot be written, nothing a client was promised is lost (at worst a
   * message is delivered again after a restart), so the client is not refused for it; memory has
   * it, the failure is reported, and the rewrite that ends the episode puts it on disk.
   */
  #tolerate(written: Promise<void>): Promise<void> {
    return written.catch(() => {})
  }

  /** Why changes are refused now (the disk is full or failing), or null while they are kept. */
  get failure(): EdgebusError | null {
    return this.#log.failure
  }
}

function isDroppable(e: QueueEntry): boolean {
  const p = e.packet
  return (p.cmd === undefined || p.cmd === 'publish') && (p.qos ?? 0) <= 1
}

function copyPayload(payload: unknown): unknown {
  if (payload === undefined || payload === null) return EMPTY
  // a copy: aedes' payload is a slice of the socket's read buffer, which it would pin
  if (payload instanceof Uint8Array) return Buffer.from(payload)
  return payload
}

function has(o: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, key)
}

/** A packet as given (every data member), with its payload and properties copied. */
function copyPacket(p: PacketLike): StoredPacket {
  const out: StoredPacket = {}
  for (const key in p) {
    if (!has(p, key)) continue
    const v = p[key]
    if (typeof v !== 'function') out[key] = v
  }
  if (has(p, 'payload')) out.payload = copyPayload(p.payload)
  if (p.properties) out.properties = { ...p.properties }
  return out
}

/** A packet in the shape aedes queues (its Packet's fields), at a given QoS, with no packet identifier yet. */
function copyQueued(p: PacketLike, qos: number): StoredPacket {
  const out: StoredPacket = {}
  if (has(p, 'clientId')) out.clientId = p.clientId
  if (has(p, 'nl')) out.nl = p.nl
  if (has(p, 'properties')) out.properties = p.properties ? { ...p.properties } : p.properties
  if (has(p, 'messageExpiry')) out.messageExpiry = p.messageExpiry
  out.cmd = p.cmd || 'publish'
  out.brokerId = p.brokerId
  out.brokerCounter = p.brokerCounter || 0
  out.topic = p.topic
  out.payload = copyPayload(p.payload)
  out.qos = qos
  out.retain = p.retain || false
  out.dup = p.dup || false
  // [MQTT-2.3.1-5] a packet identifier only for QoS > 0 (assigned when it is sent)
  if (qos > 0 || out.cmd !== 'publish') out.messageId = undefined
  return out
}

/** What a queue hands out: a copy, with the entry's packet identifier. */
function queuedView(e: QueueEntry): StoredPacket {
  const v: StoredPacket = { ...e.packet }
  if (e.messageId !== undefined || has(v, 'messageId')) v.messageId = e.messageId
  if (v.properties && typeof v.properties === 'object') v.properties = { ...(v.properties as object) }
  return v
}

function willView(p: StoredPacket): StoredPacket {
  const v: StoredPacket = { ...p }
  if (v.properties && typeof v.properties === 'object') v.properties = { ...(v.properties as object) }
  return v
}

function copySub(s: StoredSubscription): StoredSubscription {
  const out: StoredSubscription = { topic: s.topic, qos: s.qos }
  if (s.rh !== undefined) out.rh = s.rh
  if (s.rap !== undefined) out.rap = s.rap
  if (s.nl !== undefined) out.nl = s.nl
  if (s.subscriptionIdentifier !== undefined) out.subscriptionIdentifier = s.subscriptionIdentifier
  return out
}

function sameSub(a: StoredSubscription, b: StoredSubscription): boolean {
  return a.qos === b.qos && a.rh === b.rh && a.rap === b.rap && a.nl === b.nl && a.subscriptionIdentifier === b.subscriptionIdentifier
}

/** Whether a retained message would be delivered exactly as the one stored (payload and QoS; no properties or expiry). */
function sameRetained(prev: StoredPacket, p: PacketLike): boolean {
  const a = prev.payload
  const b = p.payload
  return prev.qos === (p.qos ?? 0) && a instanceof Uint8Array && b instanceof Uint8Array && Buffer.compare(a, b) === 0 &&
    prev.properties === undefined && p.properties === undefined && prev.messageExpiry === undefined && p.messageExpiry === undefined
}
