import { headers, type Msg } from '@nats-io/transport-node'
import { EdgebusError } from '../core/errors.ts'
import { LogLimiter } from '../core/log-limiter.ts'
import type { Logger } from '../core/log.ts'
import type { EdgebusConfig } from '../config/schema.ts'
import { CLUSTER_MARKER, type MqttBroker } from '../mqtt/broker.ts'
import type { MessageStore, RoutedPacket } from '../router/router.ts'
import { clusterSettings, type ClusterSettings } from './cluster-config.ts'
import { ClusterLink } from './cluster-link.ts'
import { ClientRegistry } from './client-registry.ts'
import { fillHeaders, readMessage, type ClusterMessage } from './envelope.ts'
import { Interest } from './interest.ts'
import { Liveness, type NodeView } from './liveness.ts'
import { RetainedReplica } from './retained.ts'
import { QueueGroups } from './shared.ts'
import { messageSubject, retainedSubject, retainedTopic, subjectFits, subjectTopic } from './subject-map.ts'

/** Marks the copy of a retained message sent for shared groups only (the others have it from the retained subject). */
const H_GROUPS_ONLY = 'Eb-Groups-Only'
const DONE: Promise<void> = Promise.resolve()

export interface ClusterStatus {
  node: string
  name: string
  link: { state: string; server: string; reconnects: number; disconnects: number }
  nodes: Array<{ id: string; self: boolean; clients: number; lastSeenMsAgo: number; wills: number }>
  interest: { filters: number; queueGroups: number; tooLongForNats: number }
  retained: { stream: string; stored: number; failed: number } | null
  messages: { sent: number; received: number; dropped: number }
  takeovers: number
  willsPublished: number
}

/**
 * This node as one of several that act as one broker over a NATS cluster (docs/cluster.md). It
 * captures every message published here (a router store on '#': MQTT, /ws, HTTP alike) and sends
 * it to NATS; what NATS brings is published here through the broker's one publish path, marked
 * (CLUSTER_MARKER) so the capture does not send it back out.
 */
export class Cluster {
  sent = 0
  received = 0
  dropped = 0
  readonly #drops: LogLimiter
  #closed = false
  readonly #store: MessageStore
  #seq = 0

  private constructor(
    readonly settings: ClusterSettings,
    readonly link: ClusterLink,
    private readonly broker: MqttBroker,
    private readonly log: Logger,
    readonly interest: Interest,
    readonly groups: QueueGroups,
    readonly retained: RetainedReplica | null,
    readonly registry: ClientRegistry,
    readonly liveness: Liveness,
  ) {
    this.#drops = new LogLimiter(log)
    this.#store = { name: '$cluster', store: (p) => this.#send(p) }
  }

  /** Joins the cluster of `config.cluster`; call before the streams open and before clients connect. */
  static async start(broker: MqttBroker, config: EdgebusConfig, log: Logger): Promise<Cluster> {
    const s = await clusterSettings(config.cluster, config.dataDir)
    if (s === null) throw new EdgebusError('ECONFIG_INVALID', 'config key "cluster.urls" is empty: there is no cluster to join', { key: 'cluster.urls' })
    const link = await ClusterLink.open(s, log)
    let retained: RetainedReplica | null = new RetainedReplica(link.main, s.name, s.prefix, log)
    try {
      await retained.ensure(s.replicas)
    } catch (err) {
      // a NATS without JetStream still routes: retained messages are then per node (and live between nodes)
      log.error({ code: 'ECLUSTER_RETAINED', err: (err as Error).message }, 'retained messages are not replicated in the cluster: each node keeps its own (start nats-server with -js)')
      retained = null
    }
    let self: Cluster | null = null
    const interest = new Interest(link.main, s.prefix, (filter, msg) => self?.fromInterest(filter, msg))
    const groups = new QueueGroups(link.queues, s.prefix, (group, filter, msg) => self?.fromQueue(group, filter, msg))
    const registry = new ClientRegistry(link.main, s.prefix, s.nodeId, (id) => broker.closeTakenOver(id))
    const liveness = new Liveness(link.main, s.prefix, s.nodeId, () => ({
      clients: broker.connections.size,
      wills: broker.wills().map((w) => ({ clientId: w.clientId, topic: w.topic, payload: w.payload.toString('base64'), qos: w.qos, retain: w.retain })),
    }), (node, publish) => self?.nodeGone(node, publish), log)
    self = new Cluster(s, link, broker, log, interest, groups, retained, registry, liveness)
    self.#wire()
    if (retained !== null) {
      const n = await retained.readAll((msg) => self?.fromRetained(msg))
      log.info({ retained: n, stream: retained.stream }, 'retained messages of the cluster read')
    }
    log.info({ node: s.nodeId, cluster: s.name, server: link.server }, 'joined the cluster')
    return self
  }

  #wire(): void {
    const b = this.broker
    b.router.addStore('#', this.#store)
    // from now on every listener the router gains or loses is interest (our own capture came before)
    b.router.onListener = (filter, _fn, added) => {
      if (!Interest.wanted(filter)) return
      if (added) this.interest.add(filter)
      else this.interest.remove(filter)
    }
    // persistent sessions' filters stay interest while their clients are away (queued here by aedes)
    b.onPersistentFilter = (filter, added) => {
      if (!Interest.wanted(filter)) return
      if (added) this.interest.add(filter)
      else this.interest.remove(filter)
    }
    b.shared.source = this.groups
    b.onClientAdmitted = (id) => this.registry.connected(id)
    if (this.retained !== null) {
      this.link.main.subscribe(`${this.settings.prefix}r.>`, { callback: (err, msg) => { if (err === null) this.fromRetained(msg) } })
    }
  }

  /** A message published here: to the cluster, unless it came from there. */
  #send(packet: RoutedPacket): Promise<unknown> {
    if (this.#closed || packet.clientId?.startsWith(CLUSTER_MARKER) === true) return DONE
    if (this.link.state !== 'connected') {
      // nats.js would hold every message in memory until it reconnects: a link that is down drops them, counted and logged
      this.#dropped('send', new Error(`the NATS link is ${this.link.state}`))
      return packet.retain && this.retained !== null
        ? Promise.reject(new EdgebusError('ECLUSTER_RETAINED', `retained message not stored in the cluster: the NATS link is ${this.link.state}`, { topic: packet.topic }))
        : DONE
    }
    const { subject, exact } = messageSubject(this.settings.prefix, packet.topic)
    const retainedAt = packet.retain && this.retained !== null ? retainedSubject(this.settings.prefix, packet.topic) : null
    if (!subjectFits(subject) || (retainedAt !== null && !subjectFits(retainedAt))) {
      this.#drops.warn('ECLUSTER_LINK:long', { code: 'ECLUSTER_LINK', length: packet.topic.length }, 'topic too long for a NATS subject: delivered on this node only')
      this.dropped++
      return DONE
    }
    const h = fillHeaders(headers(), packet, this.settings.nodeId, `${this.settings.nodeId}.${++this.#seq}`, exact ? null : packet.topic)
    try {
      if (retainedAt !== null && this.retained !== null) {
        // the others store and deliver it from the retained subject; shared groups get a copy
        const put = this.retained.put(retainedAt, packet.payload, fillHeaders(headers(), packet, this.settings.nodeId, `${this.settings.nodeId}.${this.#seq}`, packet.topic))
        h.set(H_GROUPS_ONLY, '1')
        this.link.main.publish(subject, packet.payload, { headers: h })
        this.sent++
        put.catch((err: Error) => this.#drops.warn('ECLUSTER_RETAINED', { code: 'ECLUSTER_RETAINED', topic: packet.topic.slice(0, 200), err: err.message }, 'retained message not stored in the cluster: the publisher is refused (QoS 1/2) or it stays on this node only (QoS 0)'))
        return put
      }
      this.link.main.publish(subject, packet.payload, { headers: h })
      this.sent++
    } catch (err) {
      this.#dropped('send', err as Error)
    }
    return DONE
  }

  #dropped(where: string, err: Error): void {
    this.dropped++
    this.#drops.warn(`ECLUSTER_LINK:${where}`, { code: 'ECLUSTER_LINK', err: err.message }, `cluster message not ${where === 'send' ? 'sent' : 'delivered'}`)
  }

  /** (Called by the link's subscriptions.) */
  fromInterest(filter: string, msg: Msg): void {
    if (msg.headers?.get(H_GROUPS_ONLY) === '1') return
    const m = this.#read(msg, () => subjectTopic(this.settings.prefix, msg.subject))
    if (m === null || !this.interest.deliversFor(filter, m.topic)) return
    this.#publishHere(m, false)
  }

  fromRetained(msg: Msg): void {
    const m = this.#read(msg, () => retainedTopic(this.settings.prefix, msg.subject))
    if (m !== null && m.origin !== this.settings.nodeId) this.#publishHere(m, true)
  }

  fromQueue(group: string, filter: string, msg: Msg): void {
    const m = this.#read(msg, () => subjectTopic(this.settings.prefix, msg.subject))
    if (m === null) return
    this.received++
    const packet: RoutedPacket = { cmd: 'publish', topic: m.topic, payload: m.payload, qos: m.qos, retain: false, dup: false, ...(m.properties ? { properties: m.properties } : {}) }
    if (!this.broker.shared.deliverTo(group, filter, packet)) this.dropped++
  }

  #read(msg: Msg, topic: () => string): ClusterMessage | null {
    try {
      return readMessage(msg, topic)
    } catch (err) {
      this.#dropped('read', err as Error)
      return null
    }
  }

  #publishHere(m: ClusterMessage, retain: boolean): void {
    this.received++
    this.broker.publish(m.topic, m.payload, { qos: m.qos, retain, fromCluster: true, ...(m.properties ? { properties: m.properties } : {}) })
      .catch((err: Error) => this.#dropped('deliver', err))
  }

  /** A node died (or left): its clients' wills go out from here when this node is the one to send them. */
  nodeGone(node: NodeView, publishWills: boolean): void {
    this.registry.forgetNode(node.id)
    if (!publishWills || this.#closed) return
    for (const w of node.wills) {
      this.liveness.willsPublished++
      // published as this node's own message: to the subscribers here and to the rest of the cluster
      this.broker.publish(w.topic, Buffer.from(w.payload, 'base64'), { qos: w.qos, retain: w.retain })
        .catch((err: Error) => this.#dropped('deliver', err))
    }
    if (node.wills.length > 0) this.log.info({ node: node.id, wills: node.wills.length }, 'published the wills of the clients of a dead node')
  }

  status(): ClusterStatus {
    const now = Date.now()
    return {
      node: this.settings.nodeId,
      name: this.settings.name,
      link: { state: this.link.state, server: this.link.server, reconnects: this.link.reconnects, disconnects: this.link.disconnects },
      nodes: [
        { id: this.settings.nodeId, self: true, clients: this.broker.connections.size, lastSeenMsAgo: 0, wills: this.broker.wills().length },
        ...[...this.liveness.nodes.values()].map((n) => ({ id: n.id, self: false, clients: n.clients, lastSeenMsAgo: now - n.lastSeen, wills: n.wills.length })),
      ].sort((a, b) => (a.id < b.id ? -1 : 1)),
      interest: { filters: this.interest.size, queueGroups: this.groups.size, tooLongForNats: this.interest.tooLong },
      retained: this.retained === null ? null : { stream: this.retained.stream, stored: this.retained.stored, failed: this.retained.failed },
      messages: { sent: this.sent, received: this.received, dropped: this.dropped },
      takeovers: this.registry.takeoversHere,
      willsPublished: this.liveness.willsPublished,
    }
  }

  /** Leaves the cluster (a goodbye first, so the others do not publish this node's wills). */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.liveness.close()
    this.broker.router.onListener = null
    this.broker.onClientAdmitted = null
    this.broker.onPersistentFilter = null
    this.#drops.flush()
    await this.link.close()
  }
}
