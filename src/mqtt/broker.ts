import { Aedes, type AedesOptions } from 'aedes'
import type { IncomingMessage } from 'node:http'
import type { Logger } from '../core/log.ts'
import { Router, type Listener } from '../router/router.ts'
import { SubjectTrie } from '../subjects/trie.ts'
import { ClientConnection } from './connection.ts'
import { FlushScheduler } from './flush-scheduler.ts'
import { SharedSubscriptions } from './shared-subscriptions.ts'
import { streamControlListener } from './stream-subscriptions.ts'
import type { StreamManager } from '../stream/stream-manager.ts'
import type { Transport } from './transport.ts'

/** The parts of an aedes client edgebus reads (aedes ships no types for these internals). */
export interface AedesClient {
  id: string
  version?: number
  clean: boolean
  connected: boolean
  maximumPacketSize?: number
  subscriptions: Record<string, { qos: 0 | 1 | 2; func: Listener; rap?: boolean; nl?: boolean; si?: number }>
  conn: { owner?: ClientConnection }
  _keepaliveTimer?: NodeJS.Timeout | null
  /** aedes' per-client delivery functions (QoS 0, and QoS 1/2 with packet ids and retries). */
  deliver0?: Listener
  deliverQoS?: Listener
  close(done?: () => void): void
  disconnect?(opts: { reasonCode: number }, done?: () => void): void
}

export interface MqttLimits {
  /** Largest packet accepted from a client, in bytes (advertised to MQTT 5 clients). */
  maxPacketSize: number
  /** Per-client queued bytes over which QoS 0 messages are dropped and aedes is held back. */
  maxQueuedBytes: number
  /** Per-client queued bytes over which the client is disconnected. */
  maxQueuedBytesHard: number
  /** How long aedes waits for a frozen client to drain before disconnecting it. */
  drainTimeoutMs: number
  /** QoS 1/2 PUBLISHes a client may have unacknowledged towards us (MQTT 5 Receive Maximum). */
  receiveMaximum: number
}

export interface BrokerStats {
  messagesIn: number
  messagesOut: number
  dropped: number
  slowConsumerDisconnects: number
}

/** Reason code 0x8B: Server shutting down. */
const SERVER_SHUTTING_DOWN = 0x8b

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
  readonly stats: BrokerStats = { messagesIn: 0, messagesOut: 0, dropped: 0, slowConsumerDisconnects: 0 }
  readonly connections = new Set<ClientConnection>()
  readonly shared: SharedSubscriptions
  /** The streams, once the server opened them: `$stream/` and `$replay/` subscriptions read them. */
  streams: StreamManager | null = null
  /** Publishes made by the server itself (HTTP), by their marker client id: the stores they reached. */
  readonly #publishWaits = new Map<string, Array<{ stream: string; stored: Promise<unknown> }>>()
  #publishCount = 0
  /** Filters of persistent sessions with QoS > 0, by client id: their messages must be queued by aedes. */
  readonly #persistentSubs = new SubjectTrie<string>()
  readonly #persistentCache = new Map<string, boolean>()

  private constructor(aedes: Aedes, router: Router, log: Logger, limits: MqttLimits) {
    this.aedes = aedes as Aedes & { id: string; counter: number }
    this.router = router
    this.log = log
    this.limits = limits
    this.shared = new SharedSubscriptions(router)
    this.#wire()
    this.#trackPersistentSubscriptions()
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
    const aedes = await Aedes.createBroker({
      mq: router as never,
      drainTimeout: limits.drainTimeoutMs,
      maximumPacketSize: limits.maxPacketSize,
      receiveMaximum: limits.receiveMaximum,
      // inbound topic aliases: aliased PUBLISHes take aedes' path, which resolves them
      topicAliasMaximum: 64,
      // aedes' own bound on concurrent inbound QoS 2 (we enforce Receive Maximum in front of it)
      concurrency: 1000,
      authenticate: (client, _user, _pass, cb) => {
        // aedes 2.0.0-beta.1 keys clients by id in a plain object: refuse ids that are
        // Object.prototype member names (the GHSA-52qw-whmv-87c5 fix of aedes 1.2 is not in 2.0 beta)
        // ($server/… is the marker of the server's own publishes, see publish())
        const id = (client as unknown as AedesClient).id
        if (id in Object.prototype || id.startsWith('$server/')) {
          const err = Object.assign(new Error('client identifier rejected'), { returnCode: 2 })
          cb(err as never, false)
          return
        }
        cb(null, true)
      },
      ...extra,
    } as AedesOptions)
    return new MqttBroker(aedes, router, log, limits)
  }

  #wire(): void {
    const aedes = this.aedes
    aedes.on('clientReady', (client) => {
      const c = client as unknown as AedesClient
      const conn = c.conn.owner
      if (!conn) return
      conn.onReady(c)
      this.#attachSubscriptions(c)
    })
    aedes.on('subscribe', (_subs, client) => this.#attachSubscriptions(client as unknown as AedesClient))
    aedes.on('clientError', (client, err) => {
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
      byClient.get(id)?.delete(filter)
    }
    p.addSubscriptions = (client, subs) => {
      for (const sub of subs) {
        if (sub.qos > 0) {
          this.#persistentSubs.insert(sub.topic, client.id)
          let set = byClient.get(client.id)
          if (!set) byClient.set(client.id, (set = new Set()))
          set.add(sub.topic)
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
      for (const t of byClient.get(client.id) ?? []) this.#persistentSubs.remove(t, client.id)
      byClient.delete(client.id)
      this.#persistentCache.clear()
      return clean(client)
    }
    // issue 5: sessions restored from disk (src/persistence) are subscribed before anyone calls in
    const stored = (p as { persistentSubscriptions?(): Iterable<{ clientId: string; subscription: Sub }> }).persistentSubscriptions?.()
    for (const { clientId, subscription } of stored ?? []) void p.addSubscriptions({ id: clientId }, [subscription])
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

  /** Ties aedes' subscriptions of a client to its connection, so the fast path can write to it directly. */
  #attachSubscriptions(client: AedesClient): void {
    const conn = client.conn.owner
    if (!conn) return
    for (const filter in client.subscriptions) {
      const sub = client.subscriptions[filter]
      if (!sub) continue
      const entry = this.router.entryFor(filter, sub.func)
      if (!entry) continue
      entry.target = conn
      entry.qos = sub.qos
      entry.nl = sub.nl === true
      entry.rap = sub.rap === true
      entry.si = sub.si ?? 0
    }
    this.router.invalidate()
  }

  /**
   * Publishes a message as the server (HTTP API): through aedes, so retained messages and offline
   * sessions are served as for any publisher. Resolves once every stream that captures it holds it,
   * with each stream's answer (its Appended, or the error).
   */
  async publish(topic: string, payload: Buffer, opts: { qos: 0 | 1 | 2; retain: boolean; properties?: Record<string, unknown> }): Promise<Array<{ stream: string; result: PromiseSettledResult<unknown> }>> {
    // aedes copies clientId into the routed packet: a marker no MQTT client can have ('$' + counter)
    const marker = `$server/${++this.#publishCount}`
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
    return stores.map((s, i) => ({ stream: s.stream, result: results[i] as PromiseSettledResult<unknown> }))
  }

  /** Serves `$stream/...` and `$replay/...` subscriptions and `$stream/.../$ack|$nak|$term|$wip/<seq>` from these streams. */
  attachStreams(streams: StreamManager): void {
    this.streams = streams
    const control = streamControlListener(streams, this.log)
    this.router.on(control.filter, control.fn)
  }

  accept(transport: Transport, req?: IncomingMessage): ClientConnection {
    const conn = new ClientConnection(this, transport, req)
    this.connections.add(conn)
    return conn
  }

  onConnectionClosed(conn: ClientConnection): void {
    this.connections.delete(conn)
    this.shared.removeMember(conn)
  }

  onSlowConsumer(conn: ClientConnection, queued: number): void {
    this.stats.slowConsumerDisconnects++
    this.log.warn({ client: conn.client?.id, remote: conn.transport.remoteAddress, queued, code: 'ESLOW_CONSUMER' },
      'client stopped reading: queue over the hard bound, disconnecting')
    conn.destroy()
  }

  /** Tells MQTT 5 clients the server is going away, closes every connection and aedes. */
  async close(): Promise<void> {
    for (const conn of this.connections) {
      const client = conn.client
      if (client && client.version === 5 && client.disconnect) client.disconnect({ reasonCode: SERVER_SHUTTING_DOWN })
      else if (client) client.close()
      else conn.destroy()
    }
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()))
    for (const conn of this.connections) conn.destroy()
  }
}
