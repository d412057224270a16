import { Aedes, type AedesOptions } from 'aedes'
import { writeToStream } from 'mqtt-packet'
import type { IncomingMessage } from 'node:http'
import type { Readable } from 'node:stream'
import type { Logger } from '../core/log.ts'
import { Router, SUBSCRIPTION_IDS, type Listener, type RoutedPacket } from '../router/router.ts'
import { SubjectTrie } from '../subjects/trie.ts'
import { isWildcardFilter, topicMatchesFilter } from '../subjects/topic.ts'
import { ClientConnection, refusalCode } from './connection.ts'
import { isEdgebusError, type EdgebusError } from '../core/errors.ts'
import { FlushScheduler } from './flush-scheduler.ts'
import { SharedSubscriptions } from './shared-subscriptions.ts'
import { ConnectionGate, type ConnectionLimits, type Refusal } from '../limits/connection-gate.ts'
import { RateLimitedLog } from '../core/rate-limited-log.ts'
import { LogLimiter } from '../core/log-limiter.ts'
import { refuseConnection } from './refused-connection.ts'
import { keepAliveCap, plainConnack } from './plain-connect.ts'
import { orderMarker, USER_PROPERTY_ORDER } from './user-property-order.ts'
import { SessionRegistry } from './session-registry.ts'
import { streamControlListener } from './stream-subscriptions.ts'
import type { StreamManager } from '../stream/stream-manager.ts'
import type { Security } from '../auth/security.ts'
import { ALLOW_ALL } from '../auth/acl.ts'
import { setSinkErrorLogger, type Transport } from './transport.ts'

// mqtt-packet (aedes' encoder) fills a table of 65,536 two-byte Buffers on its first packet, to
// save one small allocation per packet id or length it writes: 6.5 MB of heap for good, 650 B per
// connection at 10k. Our fast path does not encode through it, so the table does not pay.
writeToStream.cacheNumbers = false

/** aedes' record of one subscription of a client. */
interface AedesSubscription {
  qos: 0 | 1 | 2
  func: Listener
  rap?: boolean
  nl?: boolean
  si?: number
  /** Ours: the QoS the SUBSCRIBE was granted, when `qos` was raised for overlapping subscriptions. */
  _granted?: 0 | 1 | 2
}

/** The QoS a subscription was granted (see #attachSubscriptions). */
const granted = (sub: AedesSubscription): 0 | 1 | 2 => sub._granted ?? sub.qos

/** The QoS aedes reads for the exact filter `filter`: the highest granted among the client's filters matching it. */
function raiseToOverlaps(subs: Record<string, AedesSubscription>, filter: string): void {
  const sub = subs[filter]
  if (sub === undefined) return
  let max = granted(sub)
  for (const other in subs) {
    const o = subs[other]
    if (o !== undefined && other !== filter && granted(o) > max && topicMatchesFilter(filter, other)) max = granted(o)
  }
  if (max !== granted(sub)) {
    sub._granted ??= sub.qos
    sub.qos = max
  } else if (sub._granted !== undefined) {
    sub.qos = sub._granted
  }
}

/** The parts of an aedes client edgebus reads (aedes ships no types for these internals). */
export interface AedesClient {
  id: string
  version?: number
  clean: boolean
  /** MQTT 5 Session Expiry Interval of the CONNECT (seconds; 0 when it set none). */
  sessionExpiryInterval?: number
  connected: boolean
  maximumPacketSize?: number
  subscriptions: Record<string, AedesSubscription>
  conn: { owner?: ClientConnection }
  _keepaliveTimer?: NodeJS.Timeout | null
  /** aedes' per-client delivery functions (QoS 0, and QoS 1/2 with packet ids and retries). */
  deliver0?: Listener
  deliverQoS?: Listener
  close(done?: () => void): void
  disconnect?(opts: { reasonCode: number }, done?: () => void): void
}

export interface MqttLimits extends ConnectionLimits {
  /** Largest packet accepted from a client, in bytes (advertised to MQTT 5 clients). */
  maxPacketSize: number
  /** Per-client queued bytes over which QoS 0 messages are dropped and aedes is held back. */
  maxQueuedBytes: number
  /** Per-client queued bytes over which the client is disconnected. */
  maxQueuedBytesHard: number
  /** How long aedes waits for a frozen client to drain before disconnecting it. */
  drainTimeout: number
  /** QoS 1/2 PUBLISHes a client may have unacknowledged towards us (MQTT 5 Receive Maximum). */
  receiveMaximum: number
  /** Longest topic or filter in bytes, most levels in one. */
  maxTopicLength: number
  maxTopicLevels: number
  /** Subscriptions per client at most (0 = no limit). */
  maxSubscriptions: number
  /** Messages per second per client at most (0 = no limit); over it the client's reading pauses. */
  publishRate: number
  /** mqtt.maxKeepAlive in seconds (0 or absent: the client's own Keep Alive). */
  maxKeepAlive?: number
}

export interface BrokerStats {
  messagesIn: number
  messagesOut: number
  dropped: number
  slowConsumerDisconnects: number
  /** Bytes read from and written to MQTT clients. */
  bytesIn: number
  bytesOut: number
  /** Times a client went over limits.publishRate and was slowed. */
  throttled: number
  /** Topics or filters refused by limits.maxTopicLength/maxTopicLevels, subscriptions by limits.maxSubscriptions. */
  topicLimitRefusals: number
  subscriptionLimitRefusals: number
}

/**
 * [MQTT-3.3.5-1] A message goes out at the lower of its QoS and the granted one. aedes 2.0 beta
 * sends retained messages on SUBSCRIBE at their stored QoS (it looks the grant up by topic, which
 * misses wildcard filters): we cap them at the highest QoS granted to a matching subscription.
 */
function downgradeRetained(c: AedesClient): void {
  const deliver = c.deliverQoS
  if (deliver === undefined) return
  c.deliverQoS = (packet, cb) => {
    // retained on SUBSCRIBE: aedes builds them with retain set and no brokerId (routed ones carry one)
    if (packet.retain && packet.qos > 0 && packet.brokerId == null) {
      let granted = 0
      for (const filter in c.subscriptions) {
        const sub = c.subscriptions[filter]
        if (sub !== undefined && sub.qos > granted && topicMatchesFilter(packet.topic, filter)) granted = sub.qos
      }
      if (granted < packet.qos) {
        packet.qos = granted as 0 | 1 | 2
        if (granted === 0) return (c.deliver0 as Listener)(packet, cb)
      }
    }
    deliver(packet, cb)
  }
}

/** Reason code 0x8B: Server shutting down. */
const SERVER_SHUTTING_DOWN = 0x8b

/** Inbound topic aliases a client may use (aliased PUBLISHes take aedes' path, which resolves them). */
const TOPIC_ALIAS_MAXIMUM = 64

/** On an incoming QoS 2 packet the MQTT state could not hold: why (see #refuseUnkept). */
const UNKEPT = Symbol('unkept')

/** The messages of MQTT 3.1.1 CONNACK return codes 2, 4 and 5 (MQTT 5: 0x85, 0x86, 0x87). */
const CONNECT_REFUSALS: Record<number, string> = { 2: 'client identifier rejected', 4: 'bad user name or password', 5: 'not authorized' }

/** The aedes internals that say whether a client identifier has a session or a pending will. */
interface AedesSessionState {
  clients: Record<string, AedesClient | undefined>
  expiringSessions?: Map<string, unknown>
  delayedWills?: Map<string, unknown>
  _takingOver?: Set<string>
  persistence: { hasSession?(id: string): boolean }
}

/** The client id marker of messages another node of the cluster sent (see publish()). */
export const CLUSTER_MARKER = '$cluster/'

/**
 * The MQTT engine: aedes for the protocol's long tail (CONNECT, sessions, QoS 1/2, retained,
 * wills), our Router as its `mq`, and our ClientConnection in front of every transport.
 */
export class MqttBroker {
  readonly aedes: Aedes & { id: string; counter: number }
  readonly router: Router
  readonly flusher = new FlushScheduler()
  readonly log: Logger
  readonly limits: MqttLimits
  readonly stats: BrokerStats = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, dropped: 0, slowConsumerDisconnects: 0, throttled: 0, topicLimitRefusals: 0, subscriptionLimitRefusals: 0 }
  readonly connections = new Set<ClientConnection>()
  /** Which persistent sessions exist (for Session Present when a session has no subscriptions). */
  readonly sessions = new SessionRegistry()
  /** Connection limits, shared with /ws (server.ts). */
  readonly gate: ConnectionGate
  /** Warnings about clients (refusals, denials), at most one line per kind per 10 s. */
  readonly warnings: RateLimitedLog
  /** Messages a store refused (a full disk refuses every one): one line per cause per 10 s, with counts. */
  readonly refusals: LogLimiter
  readonly shared: SharedSubscriptions
  /** The streams, once the server opened them: `$stream/` and `$replay/` subscriptions read them. */
  streams: StreamManager | null = null
  /** Users and ACLs (server.ts sets it before listening); null: everyone may do everything. */
  security: Security | null = null
  /** Publishes made by the server itself (HTTP), by their marker client id: the stores they reached. */
  readonly #publishWaits = new Map<string, Array<{ stream: string; stored: Promise<unknown> }>>()
  #publishCount = 0
  /** Filters of persistent sessions with QoS > 0, by client id: their messages must be queued by aedes. */
  readonly #persistentSubs = new SubjectTrie<string>()
  readonly #persistentCache = new Map<string, boolean>()
  /** Clients served without an aedes client (plain CONNECTs, see ClientConnection), by client identifier. */
  readonly #plainClients = new Map<string, ClientConnection>()
  #plainConnacks: [Buffer, Buffer, Buffer] | null = null
  /** Set once a delivery carried user properties in a marker (user-property-order.ts): connections look for it from then on. */
  userPropertyMarkers = false

  private constructor(aedes: Aedes, router: Router, log: Logger, limits: MqttLimits) {
    this.aedes = aedes as Aedes & { id: string; counter: number }
    this.router = router
    this.log = log
    this.limits = limits
    this.gate = new ConnectionGate(limits)
    this.warnings = new RateLimitedLog(log)
    this.refusals = new LogLimiter(log)
    setSinkErrorLogger((err, remote) => log.error({ remote, err: (err as Error)?.stack ?? String(err) }, 'a connection failed on its input and was closed'))
    this.shared = new SharedSubscriptions(router)
    // the early entry of a SUBSCRIBE just read becomes aedes' entry when aedes subscribes (early-subscriptions.ts)
    router.claims = (entry, fn) => (entry.target as ClientConnection | null)?.claimsEarly(entry, fn) === true
    this.#wire()
    this.#trackPersistentSubscriptions()
    this.#refuseUnkept()
    // stores of messages that came through aedes: the publisher's connection holds its ack for them
    router.onStored = (packet, stored, store) => {
      const id = packet.clientId
      const waiting = id === undefined ? undefined : this.#publishWaits.get(id)
      if (waiting !== undefined) {
        waiting.push({ stream: store.name, stored })
        return
      }
      const client = id === undefined ? undefined : (aedes as unknown as { clients: Record<string, AedesClient | undefined> }).clients[id]
      const conn = client?.conn.owner
      if (conn && packet.qos > 0) conn.noteStored(packet.qos, stored)
      else stored.catch(() => {})
    }
  }

  static async create(log: Logger, limits: MqttLimits, extra: Partial<AedesOptions> = {}): Promise<MqttBroker> {
    const router = new Router()
    let self: MqttBroker | null = null
    const aedes = await Aedes.createBroker({
      mq: router as never,
      drainTimeout: limits.drainTimeout,
      maximumPacketSize: limits.maxPacketSize,
      receiveMaximum: limits.receiveMaximum,
      topicAliasMaximum: TOPIC_ALIAS_MAXIMUM,
      // aedes' own bound on concurrent inbound QoS 2 (we enforce Receive Maximum in front of it)
      concurrency: 1000,
      authenticate: (client, user, pass, cb) => {
        const c = client as unknown as AedesClient
        const conn = c.conn.owner
        if (self !== null) {
          self.#resumeWhole(c)
          // mqtt.maxKeepAlive: aedes times the client by it and (MQTT 5) says it in CONNACK
          const cap = conn === undefined ? 0 : keepAliveCap(conn.keepAliveAsked, limits.maxKeepAlive ?? 0)
          if (cap > 0) (c as AedesClient & { _serverKeepAlive?: number })._serverKeepAlive = cap
        }
        // a client edgebus served itself until now: authenticated when it connected
        if (conn?.promoting === true) return cb(null, true)
        const will = (client as unknown as { _will?: { topic: string; properties?: Record<symbol, unknown> } | null })._will
        if (will && conn?.willUserProperties) (will.properties ??= {})[USER_PROPERTY_ORDER] = conn.willUserProperties
        if (self === null || conn === undefined) return cb(null, true)
        self.authenticate(conn, c.id, user ?? null, pass ?? null, will?.topic ?? null).then((code) => {
          if (code === 0) cb(null, true)
          else cb(Object.assign(new Error(CONNECT_REFUSALS[code] ?? 'not authorized'), { returnCode: code }) as never, false)
        }, (err: Error) => cb(err as never, false))
      },
      // a QoS 1 PUBACK aedes wrote waits until this: the message is stored, queued and routed
      published: (packet, client, cb) => {
        const id = (packet as { qos: number; messageId?: number }).qos === 1 ? (packet as { messageId?: number }).messageId : undefined
        if (id !== undefined) (client as unknown as AedesClient | null)?.conn.owner?.notePublished(id)
        cb(null)
      },
      // what comes through aedes' path: the topic limits (the fast path checks them itself)
      authorizePublish: (client, packet, cb) => {
        const topic = (packet as { topic: string }).topic
        const publisher = (client as unknown as AedesClient | null)?.conn.owner
        const entries = publisher?.takeUserPropertyOrder((packet as { messageId?: number }).messageId ?? 0) ?? null
        if (entries !== null) ((packet as { properties: Record<symbol, unknown> }).properties ??= {})[USER_PROPERTY_ORDER] = entries
        // a will goes out as a PUBLISH, and a PUBLISH has no Will Delay Interval (MQTT 5 §2.2.2.2):
        // aedes has used it to time the will by now
        const props = (packet as { properties?: { willDelayInterval?: number } }).properties
        if (props?.willDelayInterval !== undefined) delete props.willDelayInterval
        if (topic.startsWith('$SYS')) return cb(new Error('$SYS topics are published by the server only'))
        if (self !== null && !self.topicWithinLimits(topic)) {
          self.stats.topicLimitRefusals++
          self.warnings.warn('ELIMIT_TOPIC', { client: client?.id, code: 'ELIMIT_TOPIC', length: topic.length }, 'publish refused: topic over limits.maxTopicLength or limits.maxTopicLevels')
          return cb(new Error('topic over limits.maxTopicLength or limits.maxTopicLevels'))
        }
        const conn = (client as unknown as AedesClient | null)?.conn.owner
        if (self?.security && conn && !conn.principal.access.canPublish(topic)) {
          const denied = self.security.denied(conn.principal, 'pub', topic, 'mqtt')
          // MQTT 5: aedes answers 0x87; MQTT 3.1.1 has no refusal: QoS 0/1 are dropped with a normal
          // ack [MQTT-3.3.5-2], QoS 2 closes the connection (the other choice the spec leaves)
          const qos = (packet as { qos: number }).qos
          if (conn.version === 5 || qos === 2) return cb(denied)
          ;(packet as { _notAuthorized?: boolean })._notAuthorized = true
          if (qos === 1) conn.ackDropped((packet as { messageId: number }).messageId)
          return cb(null)
        }
        cb(null)
      },
      authorizeForward: (client, packet) => {
        // a merged delivery carries every matching Subscription Identifier (router.ts) [MQTT-3.3.4-4];
        // user properties go in their order (user-property-order.ts) [MQTT-3.3.2-18]
        const props = (packet as { properties?: Record<string | symbol, unknown> }).properties
        const ids = props?.[SUBSCRIPTION_IDS]
        const entries = props?.[USER_PROPERTY_ORDER] as Buffer | undefined
        if (ids !== undefined || entries !== undefined) {
          const out: Record<string | symbol, unknown> = { ...props }
          if (ids !== undefined) out.subscriptionIdentifier = ids
          if (entries !== undefined && self !== null) {
            out.userProperties = orderMarker(entries)
            self.userPropertyMarkers = true
          }
          ;(packet as { properties?: Record<string | symbol, unknown> }).properties = out
        }
        // every delivery aedes makes (retained, queued for a session, QoS 2, shared) is checked as it goes
        const conn = (client as unknown as AedesClient | null)?.conn.owner
        if (conn === undefined || conn.principal.access === ALLOW_ALL || self?.security == null) return packet
        if (conn.principal.access.canReceive((packet as { topic: string }).topic)) return packet
        self.security.denied(conn.principal, 'deliver', (packet as { topic: string }).topic, 'mqtt')
        return null as never
      },
      authorizeSubscribe: (client, sub, cb) => {
        const b = self
        if (b === null) return cb(null, sub)
        const c = client as unknown as AedesClient
        const conn = c.conn.owner
        const held = Object.keys(c.subscriptions).length + (conn?.plainSubscriptionCount ?? 0)
        const refusal = b.subscriptionRefusal(conn, sub.topic, sub.topic in c.subscriptions ? -1 : held)
        if (refusal !== null) b.noteSubscriptionRefusal(conn, c.id, sub.topic, refusal)
        cb(null, refusal === null ? sub : null as never)
      },
      ...extra,
    } as AedesOptions)
    self = new MqttBroker(aedes, router, log, limits)
    if (extra.persistence === undefined) self.#keyPubrels()
    return self
  }

  #wire(): void {
    const aedes = this.aedes
    aedes.on('clientReady', (client) => {
      const c = client as unknown as AedesClient
      const conn = c.conn.owner
      if (!conn) return
      conn.onReady(c)
      this.#attachSubscriptions(c)
      downgradeRetained(c)
    })
    aedes.on('subscribe', (subs, client) => {
      const c = client as unknown as AedesClient
      const filters = subs.map((s) => s.topic)
      this.#attachSubscriptions(c, filters)
      c.conn.owner?.subscribed(filters)
    })
    aedes.on('unsubscribe', (_topics, client) => this.#attachSubscriptions(client as unknown as AedesClient))
    aedes.on('clientDisconnect', (client) => {
      // MQTT 5: a session lives on only with a Session Expiry Interval (a DISCONNECT may set it to 0)
      const c = client as unknown as AedesClient
      if (c.version === 5 && !((c.sessionExpiryInterval ?? 0) > 0)) this.sessions.ended(c.id)
    })
    ;(aedes as unknown as { on(e: 'sessionExpired', f: (c: { id: string }) => void): void }).on('sessionExpired', (c) => this.sessions.ended(c.id))
    aedes.on('clientError', (client, err) => {
      if (isEdgebusError(err) && err.code.startsWith('EPERSIST')) {
        // a change of the MQTT state that could not be written (#refuseUnkept): no ack went out
        this.refusals.warn(`${err.code}:closed`, { client: client?.id, code: err.code, err: err.message },
          'not kept (the MQTT state cannot be written): closing the connection without an acknowledgement, the client sends it again when it reconnects')
        return
      }
      this.log.debug({ client: client?.id, err: err.message }, 'client error')
    })
    aedes.on('connectionError', (_client, err) => {
      this.log.debug({ err: err.message }, 'connection error before CONNECT')
    })
    aedes.on('keepaliveTimeout', (client) => {
      this.log.info({ client: client.id }, 'keepalive timeout: closing')
    })
  }

  /**
   * aedes queues every QoS 1/2 message for persistent sessions in its persistence before delivery
   * (online or not). The fast path must leave those messages to aedes, so we watch which filters
   * persistent sessions hold, through the persistence calls aedes makes.
   */
  #trackPersistentSubscriptions(): void {
    type Sub = { topic: string; qos: number }
    type P = {
      addSubscriptions(c: { id: string }, subs: Sub[]): Promise<unknown>
      removeSubscriptions(c: { id: string }, topics: string[]): Promise<unknown>
      cleanSubscriptions(c: { id: string }): Promise<unknown>
      subscriptionsByClient(c: { id: string }): Promise<Sub[] | null>
    }
    const p = (this.aedes as unknown as { persistence: P }).persistence
    const add = p.addSubscriptions.bind(p)
    const remove = p.removeSubscriptions.bind(p)
    const clean = p.cleanSubscriptions.bind(p)
    const byClient = new Map<string, Set<string>>()
    const forget = (id: string, filter: string): void => {
      this.#persistentSubs.remove(filter, id)
      if (byClient.get(id)?.delete(filter) === true) this.onPersistentFilter?.(filter, false)
    }
    p.addSubscriptions = (client, subs) => {
      for (const sub of subs) {
        if (sub.qos > 0) {
          let set = byClient.get(client.id)
          if (!set) byClient.set(client.id, (set = new Set()))
          if (set.has(sub.topic)) continue
          this.#persistentSubs.insert(sub.topic, client.id)
          set.add(sub.topic)
          this.onPersistentFilter?.(sub.topic, true)
        } else {
          forget(client.id, sub.topic)
        }
      }
      this.#persistentCache.clear()
      return add(client, subs)
    }
    p.removeSubscriptions = (client, topics) => {
      for (const t of topics) forget(client.id, t)
      this.#persistentCache.clear()
      return remove(client, topics)
    }
    p.cleanSubscriptions = (client) => {
      for (const t of byClient.get(client.id) ?? []) {
        this.#persistentSubs.remove(t, client.id)
        this.onPersistentFilter?.(t, false)
      }
      byClient.delete(client.id)
      this.#persistentCache.clear()
      return clean(client)
    }
    // [MQTT-3.3.1-1] what aedes sends again on a reconnect: a PUBLISH sent before (it has its
    // packet id) goes with DUP set; PUBRELs and messages queued while offline as they are
    const queued = (p as unknown as { outgoingStream(c: { id: string }): Readable }).outgoingStream.bind(p)
    ;(p as unknown as { outgoingStream(c: { id: string }): Readable }).outgoingStream = (client) => queued(client).map((pk: { cmd?: string; messageId?: number }) =>
      pk.messageId !== undefined && (pk.cmd ?? 'publish') === 'publish' ? { ...pk, dup: true } : pk)
    // issue 5: sessions restored from disk (src/persistence) are subscribed before anyone calls in
    const stored = (p as { persistentSubscriptions?(): Iterable<{ clientId: string; subscription: Sub }> }).persistentSubscriptions?.()
    for (const { clientId, subscription } of stored ?? []) void p.addSubscriptions({ id: clientId }, [subscription])
  }

  /**
   * A message aedes could not keep (its retained store or a session queue refused it: EPERSIST_FULL,
   * EPERSIST_IO) fails aedes' publish, and aedes would close the connection with no answer. An
   * MQTT 5 client is told instead: its PUBACK/PUBREC carries the reason code and the connection
   * stays. An MQTT 3.1.1 client cannot be told: its connection closes (the PUBACK aedes wrote is
   * held until the publish succeeds, so it never goes), and it sends the message again when it
   * reconnects. A QoS 0 message has no answer to give: it is dropped. Every refusal is logged,
   * one line per cause per 10 s with the count.
   */
  #refuseUnkept(): void {
    type Packet = { qos?: number; messageId?: number; topic?: string; [UNKEPT]?: EdgebusError }
    type Publish = (packet: Packet, client: unknown, done?: (err?: Error | null) => void) => void
    type Store = { incomingStorePacket(c: unknown, p: Packet): Promise<void>; incomingDelPacket?(c: unknown, p: Packet): Promise<void> }
    const a = this.aedes as unknown as { publish: Publish; persistence: Store }
    const p = a.persistence
    const publish = a.publish.bind(this.aedes) as Publish
    const connOf = (client: unknown): ClientConnection | undefined => (client as AedesClient | null)?.conn?.owner
    const unkept = (err: unknown): err is EdgebusError => isEdgebusError(err) && err.code.startsWith('EPERSIST')
    // an MQTT 5 client's QoS 2 message aedes must hold until PUBREL: refused, aedes goes on to answer it (below)
    const storeIncoming = p.incomingStorePacket.bind(p)
    p.incomingStorePacket = (client, packet) => storeIncoming(client, packet).catch((err: unknown) => {
      if (!unkept(err) || connOf(client)?.version !== 5) throw err
      packet[UNKEPT] = err
    })
    const answer = (packet: Packet, conn: ClientConnection, err: EdgebusError, done: ((err?: Error | null) => void) | undefined): void => {
      const qos = packet.qos ?? 0
      this.refusals.warn(`${err.code}:answered`, { client: conn.clientId, topic: packet.topic, qos, code: err.code, err: err.message },
        qos === 0 ? 'QoS 0 message not kept (the MQTT state cannot be written): dropped'
          : 'message not kept (the MQTT state cannot be written): refused with a reason code')
      if (qos > 0) conn.refuseAedesPublish(packet.messageId ?? 0, qos, refusalCode(err))
      done?.(null)
    }
    a.publish = (packet, client, done) => {
      if (typeof client === 'function') return publish(packet, client as never)
      const conn = connOf(client)
      const refused = packet[UNKEPT]
      // not published: a message its client is told was refused reaches no one
      if (refused !== undefined && conn !== undefined) return answer(packet, conn, refused, done)
      publish(packet, client, (err) => {
        if (!unkept(err) || conn === undefined) return done?.(err)
        const qos = packet.qos ?? 0
        // a will (no packet identifier) has no one to answer; 3.1.1: aedes closes the connection (logged at clientError)
        if (qos > 0 && (conn.version !== 5 || packet.messageId === undefined)) return done?.(err)
        // the refused message is not held either: a new message under this packet identifier is not a duplicate
        if (qos === 2) void p.incomingDelPacket?.(client, packet)?.catch(() => {})
        answer(packet, conn, err, done)
      })
    }
  }

  /**
   * aedes' in-memory persistence (persistence.enabled false) finds the queue entry a PUBREL takes
   * over by brokerId and brokerCounter first, and a PUBREL has neither: a PUBREL waiting in the
   * queue matched the next one, which overwrote its packet identifier instead of taking its own
   * PUBLISH's place. Two QoS 2 deliveries acknowledged together (a resumed session's queue) both
   * got the second identifier's PUBREL, and the first message never completed (paho never hands it
   * over). Each PUBREL gets a key of its own: a brokerId no PUBLISH has, its packet identifier as
   * counter, so it replaces its PUBLISH (matched by packet identifier) and matches only itself.
   */
  #keyPubrels(): void {
    type Update = (client: unknown, packet: { cmd?: string; messageId?: number; brokerId?: string; brokerCounter?: number }) => Promise<void>
    const p = (this.aedes as unknown as { persistence: { outgoingUpdate: Update } }).persistence
    const update = p.outgoingUpdate.bind(p)
    const key = `${this.aedes.id}/pubrel`
    p.outgoingUpdate = (client, packet) => {
      if (packet.cmd === 'pubrel' && packet.brokerId === undefined && packet.messageId !== undefined) {
        packet.brokerId = key
        packet.brokerCounter = -packet.messageId
      }
      return update(client, packet)
    }
  }

  /** Whether a persistent session subscribes to this topic with QoS > 0 (cached per topic). */
  persistentSubscriptionMatches(topic: string): boolean {
    if (this.#persistentSubs.size === 0) return false
    let hit = this.#persistentCache.get(topic)
    if (hit === undefined) {
      hit = this.#persistentSubs.match(topic, []).length > 0
      if (this.#persistentCache.size > 65_536) this.#persistentCache.clear()
      this.#persistentCache.set(topic, hit)
    }
    return hit
  }

  /**
   * Ties aedes' subscriptions of a client to its connection, so the fast path can write to it
   * directly: all of them, or (`added`, a SUBSCRIBE) those just made, which keeps a SUBSCRIBE's
   * cost in line with the client's subscriptions rather than their square (500 filters on one
   * connection took a SUBACK to 1.6 s at 1,000 SUBSCRIBEs/s).
   */
  #attachSubscriptions(client: AedesClient, added?: readonly string[]): void {
    const conn = client.conn.owner
    if (!conn) return
    const subs = client.subscriptions
    for (const filter of added ?? Object.keys(subs)) {
      const sub = subs[filter]
      if (!sub) continue
      const entry = this.router.entryFor(filter, sub.func)
      if (!entry) continue
      entry.target = conn
      entry.qos = granted(sub)
      entry.nl = sub.nl === true
      entry.rap = sub.rap === true
      entry.si = sub.si ?? 0
    }
    // [MQTT-3.3.5-1] a message goes out at the highest QoS of all the client's matching
    // subscriptions (the Router merges them into that one). aedes then caps a QoS 1/2 delivery at
    // the QoS of the subscription whose filter *is* the topic, when there is one: so that
    // subscription's QoS, as aedes reads it, is the highest among the client's filters matching it.
    // A SUBSCRIBE changes that for its own exact filters and for the exact filters its wildcards match.
    if (added === undefined) {
      for (const filter in subs) if (!isWildcardFilter(filter)) raiseToOverlaps(subs, filter)
    } else {
      for (const filter of added) {
        if (!isWildcardFilter(filter)) raiseToOverlaps(subs, filter)
        else for (const exact in subs) if (!isWildcardFilter(exact) && topicMatchesFilter(exact, filter)) raiseToOverlaps(subs, exact)
      }
    }
    this.router.invalidate()
  }

  /**
   * [MQTT-3.1.2-4] A CONNECT with Clean Start 0 resumes the session whole, whatever its own Session
   * Expiry Interval: that one governs only what happens after this connection ends. aedes reads
   * "Session Expiry 0" as a clean client and drops the resumed queue after the CONNACK (its
   * emptyQueueFilter), so a resuming MQTT 5 client without the property lost every queued message.
   * Such a client is served as a kept session while connected (its queue sent, its in-flight
   * messages tracked); aedes still ends the session when the connection ends, by its
   * sessionExpiryInterval (scheduleSessionExpiry). Called after aedes read the CONNECT, before it
   * looks the session up; only when there is a session to resume, so that clients reconnecting
   * without one keep the fast path.
   */
  #resumeWhole(c: AedesClient & { _cleanStart?: boolean }): void {
    if (c.version !== 5 || c._cleanStart !== false || !c.clean) return
    const p = (this.aedes as unknown as AedesSessionState).persistence
    if (this.sessions.has(c.id) || p.hasSession?.(c.id) === true) c.clean = false
  }

  /**
   * Publishes a message as the server (HTTP API): through aedes, so retained messages and offline
   * sessions are served as for any publisher. Resolves once every stream that captures it holds it,
   * with each stream's answer (its Appended, or the error).
   */
  async publish(topic: string, payload: Buffer, opts: { qos: 0 | 1 | 2; retain: boolean; properties?: Record<string, unknown>; fromCluster?: boolean }): Promise<Array<{ stream: string; result: PromiseSettledResult<unknown> }>> {
    // aedes copies clientId into the routed packet: a marker no MQTT client can have ('$' + counter);
    // a message from another node of the cluster is marked so that it is not sent back out (src/cluster)
    const marker = `${opts.fromCluster === true ? CLUSTER_MARKER : '$server/'}${++this.#publishCount}`
    const stores: Array<{ stream: string; stored: Promise<unknown> }> = []
    this.#publishWaits.set(marker, stores)
    try {
      await new Promise<void>((resolve, reject) => {
        this.aedes.publish({ cmd: 'publish', topic, payload, qos: opts.qos, retain: opts.retain, dup: false, clientId: marker, ...(opts.properties ? { properties: opts.properties } : {}) } as never, (err?: Error | null) => (err ? reject(err) : resolve()))
      })
    } finally {
      this.#publishWaits.delete(marker)
    }
    const results = await Promise.allSettled(stores.map((s) => s.stored))
    const out = stores.map((s, i) => ({ stream: s.stream, result: results[i] as PromiseSettledResult<unknown> }))
    // the cluster's capture ('$cluster', src/cluster) is waited for but is no stream: a failure there refuses the publish
    const cluster = out.find((s) => s.stream.startsWith('$'))
    if (cluster?.result.status === 'rejected') throw cluster.result.reason
    return cluster === undefined ? out : out.filter((s) => !s.stream.startsWith('$'))
  }

  /**
   * Why a subscription to `filter` is refused, or null: limits.maxTopicLength/maxTopicLevels, the
   * ACL, limits.maxSubscriptions (`subscribed`: how many the client holds, -1 when it holds this
   * filter already). aedes' authorizeSubscribe and the early entries of a SUBSCRIBE just read
   * (early-subscriptions.ts) decide alike.
   */
  subscriptionRefusal(conn: ClientConnection | undefined, filter: string, subscribed: number): 'ELIMIT_TOPIC' | 'EACL_DENIED' | 'ELIMIT_SUBSCRIPTIONS' | null {
    if (!this.topicWithinLimits(filter)) return 'ELIMIT_TOPIC'
    if (this.security !== null && conn !== undefined && !conn.principal.access.canSubscribe(filter)) return 'EACL_DENIED'
    const max = this.limits.maxSubscriptions
    if (max > 0 && subscribed >= max) return 'ELIMIT_SUBSCRIPTIONS'
    return null
  }

  /** Counts and logs a refused subscription (rate-limited), as aedes' path and the plain one refuse alike. */
  noteSubscriptionRefusal(conn: ClientConnection | undefined, clientId: string, filter: string, refusal: 'ELIMIT_TOPIC' | 'EACL_DENIED' | 'ELIMIT_SUBSCRIPTIONS'): void {
    if (refusal === 'ELIMIT_TOPIC') {
      this.stats.topicLimitRefusals++
      this.warnings.warn('ELIMIT_TOPIC', { client: clientId, filter: filter.slice(0, 200), code: 'ELIMIT_TOPIC' }, 'subscription refused: filter over limits.maxTopicLength or limits.maxTopicLevels')
    } else if (refusal === 'EACL_DENIED') {
      if (this.security !== null && conn !== undefined) this.security.denied(conn.principal, 'sub', filter, 'mqtt')
    } else {
      this.stats.subscriptionLimitRefusals++
      this.warnings.warn('ELIMIT_SUBSCRIPTIONS', { client: clientId, code: 'ELIMIT_SUBSCRIPTIONS', max: this.limits.maxSubscriptions }, 'subscription refused: the client has limits.maxSubscriptions subscriptions')
    }
  }

  /**
   * The retained messages matching `filters`, from the store aedes uses (its persistence: the file
   * store, or memory when persistence is off). One whose Message Expiry has passed is dropped from
   * the store and not given, as aedes does on SUBSCRIBE.
   */
  async *retainedMessages(filters: string[]): AsyncGenerator<RoutedPacket> {
    type Retained = RoutedPacket & { messageExpiry?: number }
    const p = (this.aedes as unknown as { persistence: { createRetainedStreamCombi(f: string[]): AsyncIterable<Retained>; storeRetained(p: { topic: string; payload: Buffer }): Promise<void> } }).persistence
    for await (const packet of p.createRetainedStreamCombi(filters)) {
      if (packet.messageExpiry !== undefined && packet.messageExpiry <= Date.now()) {
        await p.storeRetained({ topic: packet.topic, payload: Buffer.alloc(0) }).catch(() => {})
        continue
      }
      yield packet
    }
  }

  /** limits.maxTopicLength (bytes) and limits.maxTopicLevels, for a topic or a filter. */
  topicWithinLimits(topic: string): boolean {
    const l = this.limits
    if (topic.length * 3 > l.maxTopicLength && Buffer.byteLength(topic) > l.maxTopicLength) return false
    if (topic.length < l.maxTopicLevels) return true
    let levels = 1
    for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 0x2f) levels++
    return levels <= l.maxTopicLevels
  }

  /** Serves `$stream/...` and `$replay/...` subscriptions and `$stream/.../$ack|$nak|$term|$wip/<seq>` from these streams. */
  attachStreams(streams: StreamManager): void {
    this.streams = streams
    const control = streamControlListener(streams, this.log)
    this.router.on(control.filter, control.fn)
  }

  /**
   * Checks a CONNECT's identity: the client identifier, then (with users configured) its
   * credentials and its will topic. Sets the connection's principal; returns 0 or the MQTT 3.1.1
   * CONNACK return code that refuses it (2 identifier rejected, 4 bad credentials, 5 not
   * authorized). A success takes the identifier over from a client served without aedes.
   */
  async authenticate(conn: ClientConnection, id: string, user: string | null, password: Buffer | null, willTopic: string | null): Promise<number> {
    // aedes 2.0.0-beta.1 keys clients by id in a plain object: refuse ids that are
    // Object.prototype member names (the GHSA-52qw-whmv-87c5 fix of aedes 1.2 is not in 2.0 beta)
    // ($server/… is the marker of the server's own publishes, see publish())
    if (id in Object.prototype || id.startsWith('$server/') || id.startsWith(CLUSTER_MARKER)) return 2
    const security = this.security
    if (security !== null) {
      let p
      try {
        p = await security.identify({ clientId: id, username: user, password, certCommonName: conn.transport.certUser }, 'mqtt')
      } catch (err) {
        return (err as { code?: string }).code === 'EAUTH_ANONYMOUS' ? 5 : 4
      }
      // the will is published by the server later: its topic is checked now, while the client can be told
      if (willTopic !== null && !p.access.canPublish(willTopic)) {
        security.denied(p, 'pub', willTopic, 'mqtt will')
        return 5
      }
      if (conn.closed) return 5
      conn.principal = p
      if (p.identity.expiresAt !== null) conn.expireAt(p.identity.expiresAt)
    }
    const holder = this.#plainClients.get(id)
    if (holder !== undefined && holder !== conn) holder.takenOver() // [MQTT-3.1.4-2]
    this.onClientAdmitted?.(id)
    return 0
  }

  /**
   * Told of each QoS 1/2 filter a persistent session gains or loses (per session): the cluster keeps
   * interest in it while the client is away, so messages published on other nodes are queued here.
   */
  onPersistentFilter: ((filter: string, added: boolean) => void) | null = null

  /** Told of every client identifier admitted here (the cluster's client registry takes it over from other nodes). */
  onClientAdmitted: ((id: string) => void) | null = null

  /**
   * The client with this identifier connected to another node of the cluster: the connection here
   * closes as taken over [MQTT-3.1.4-2]. Returns whether there was one.
   */
  closeTakenOver(id: string): boolean {
    let found = false
    for (const conn of this.connections) {
      if (conn.clientId !== id) continue
      conn.takenOver()
      found = true
    }
    return found
  }

  /** The wills of the clients connected now, by client identifier (survivors publish them when this node dies). */
  wills(): Array<{ clientId: string; topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean }> {
    const out: Array<{ clientId: string; topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean }> = []
    for (const conn of this.connections) {
      const w = (conn.client as unknown as { _will?: { topic: string; payload: Buffer; qos?: number; retain?: boolean } | null } | null)?._will
      if (w) out.push({ clientId: conn.clientId, topic: w.topic, payload: Buffer.from(w.payload ?? ''), qos: (w.qos ?? 0) as 0 | 1 | 2, retain: w.retain === true })
    }
    return out
  }

  /**
   * Whether a plain CONNECT with this identifier can be answered without aedes: nothing of a
   * session, a will or a takeover under that identifier lives in aedes or in the persistence.
   */
  mayServePlain(id: string): boolean {
    if (this.sessions.has(id)) return false
    const a = this.aedes as unknown as AedesSessionState
    return a.clients[id] === undefined && a.expiringSessions?.has(id) !== true && a.delayedWills?.has(id) !== true &&
      a._takingOver?.has(id) !== true && a.persistence.hasSession?.(id) !== true
  }

  /** The CONNACK accepting a plain CONNECT of this protocol level; `capped`: with mqtt.maxKeepAlive as Server Keep Alive. */
  plainConnack(level: number, capped: boolean): Buffer {
    const l = this.limits
    const v5 = { topicAliasMaximum: TOPIC_ALIAS_MAXIMUM, maxPacketSize: l.maxPacketSize, receiveMaximum: l.receiveMaximum }
    const acks = this.#plainConnacks ??= [plainConnack(4, v5), plainConnack(5, v5), plainConnack(5, { ...v5, serverKeepAlive: l.maxKeepAlive ?? 0 })]
    return level === 5 ? acks[capped ? 2 : 1] : acks[0]
  }

  /** A client served without aedes holds its identifier (after authenticate()). */
  holdPlain(conn: ClientConnection, id: string): void {
    this.#plainClients.set(id, conn)
  }

  /** It has an aedes client now, or it closed. */
  releasePlain(conn: ClientConnection, id: string): void {
    if (this.#plainClients.get(id) === conn) this.#plainClients.delete(id)
  }

  /** Connections being refused, oldest first: what closes each (they wait for their CONNECT). */
  readonly #refusing = new Set<() => void>()

  /**
   * Answers a refused connection. At most gate.maxRefusing wait at once (each holds a descriptor,
   * fd-limit.ts): over it the oldest is closed, so a storm of idle sockets cannot keep a client
   * that sends its CONNECT from hearing why.
   */
  #refuse(transport: Transport, refusal: Refusal): void {
    const max = this.gate.maxRefusing
    if (max > 0 && this.#refusing.size >= max) {
      const oldest = this.#refusing.values().next().value as () => void
      this.#refusing.delete(oldest)
      oldest()
    }
    const close = refuseConnection(transport, refusal, () => this.#refusing.delete(close))
    this.#refusing.add(close)
  }

  /** A new client connection: admitted under the connection limits, or answered with why not and closed. */
  accept(transport: Transport, req?: IncomingMessage): ClientConnection | null {
    const refusal = this.gate.admit(transport.remoteIp)
    if (refusal !== null) {
      this.warnings.warn(refusal.code, { remote: transport.remoteAddress, code: refusal.code }, `connection refused: ${refusal.message}`)
      this.#refuse(transport, refusal)
      return null
    }
    const conn = new ClientConnection(this, transport, req)
    this.connections.add(conn)
    transport.attach(conn)
    return conn
  }

  onConnectionClosed(conn: ClientConnection): void {
    if (this.connections.delete(conn)) this.gate.release(conn.transport.remoteIp)
    this.releasePlain(conn, conn.clientId)
    this.shared.removeMember(conn)
  }

  onSlowConsumer(conn: ClientConnection, queued: number): void {
    this.stats.slowConsumerDisconnects++
    this.log.warn({ client: conn.clientId, remote: conn.transport.remoteAddress, queued, code: 'ESLOW_CONSUMER' },
      'client stopped reading: queue over the hard bound, disconnecting')
    conn.destroy()
  }

  /** Tells MQTT 5 clients the server is going away, closes every connection and aedes. */
  async close(): Promise<void> {
    for (const conn of this.connections) {
      const client = conn.client
      if (client && client.version === 5 && client.disconnect) client.disconnect({ reasonCode: SERVER_SHUTTING_DOWN })
      else if (client) client.close()
      else conn.shutDown(SERVER_SHUTTING_DOWN)
    }
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()))
    for (const conn of this.connections) conn.destroy()
  }
}
