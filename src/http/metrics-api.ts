import type { ClusterView } from './cluster-api.ts'
import type { Security } from '../auth/security.ts'
import type { BridgeManager } from '../bridge/bridge-manager.ts'
import type { MqttBroker } from '../mqtt/broker.ts'
import type { StreamManager } from '../stream/stream-manager.ts'
import { VERSION } from '../version.ts'
import type { HttpFront } from './server.ts'

/** One metric family in the Prometheus text format (version 0.0.4). */
class Family {
  readonly lines: string[] = []
  constructor(readonly name: string, readonly type: 'counter' | 'gauge', readonly help: string) {}

  add(value: number, labels: Record<string, string> = {}): this {
    const keys = Object.keys(labels)
    const l = keys.length === 0 ? '' : `{${keys.map((k) => `${k}="${escapeLabel(labels[k] as string)}"`).join(',')}}`
    this.lines.push(`${this.name}${l} ${Number.isFinite(value) ? value : 0}`)
    return this
  }

  text(): string {
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} ${this.type}\n${this.lines.join('\n')}\n`
  }
}

/** issue 17: the cluster's rows (src/cluster), only on a node in a cluster. */
function clusterFamilies(cluster: ClusterView, f: (name: string, type: 'counter' | 'gauge', help: string) => Family): Family[] {
  const c = cluster.status()
  return [
    f('cluster_link_up', 'gauge', '1 while the NATS link of the cluster is connected.').add(c.link.state === 'connected' ? 1 : 0, { node: c.node }),
    f('cluster_link_reconnects_total', 'counter', 'Times the NATS link came back after it was lost.').add(c.link.reconnects),
    f('cluster_nodes', 'gauge', 'Nodes of the cluster this node hears (itself included).').add(c.nodes.length),
    f('cluster_messages_total', 'counter', 'Messages sent to and received from the other nodes, and dropped on the way.')
      .add(c.messages.sent, { direction: 'sent' }).add(c.messages.received, { direction: 'received' }).add(c.messages.dropped, { direction: 'dropped' }),
    f('cluster_takeovers_total', 'counter', 'Clients here closed because they connected to another node.').add(c.takeovers),
    f('cluster_wills_published_total', 'counter', 'Wills of dead nodes\' clients this node published.').add(c.willsPublished),
    f('cluster_retained_failures_total', 'counter', 'Retained messages the replicated bucket did not store.').add(c.retained?.failed ?? 0),
  ]
}

// label values: backslash, double quote and line feed are escaped
function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

/**
 * GET /metrics: the server's counters for Prometheus, read when scraped (nothing is kept for it):
 * connections, messages and bytes in and out, drops, refusals and denials, and a gauge set per
 * stream, per consumer and per bridge. The names are listed in docs/security.md (Observability).
 */
export function mountMetrics(http: HttpFront, broker: MqttBroker, streams: StreamManager, security: Security | null, startedAt: number, bridges: BridgeManager | null = null, cluster: ClusterView | null = null): void {
  http.route('GET', '/metrics', (_req, res) => {
    const s = broker.stats
    const f = (name: string, type: 'counter' | 'gauge', help: string): Family => new Family(`edgebus_${name}`, type, help)
    const out: Family[] = [
      f('info', 'gauge', 'Always 1; the version is a label.').add(1, { version: VERSION }),
      f('uptime_seconds', 'gauge', 'Seconds since the server started.').add(Math.round((Date.now() - startedAt) / 1000)),
      f('connections', 'gauge', 'Client connections open now (MQTT, MQTT over WebSocket).').add(broker.connections.size),
      f('subscriptions', 'gauge', 'Subscriptions held now.').add(broker.router.subscriptionCount),
      f('messages_received_total', 'counter', 'PUBLISH packets received from clients.').add(s.messagesIn),
      f('messages_sent_total', 'counter', 'Messages sent to clients.').add(s.messagesOut),
      f('bytes_received_total', 'counter', 'Bytes received from MQTT clients.').add(s.bytesIn),
      f('bytes_sent_total', 'counter', 'Bytes sent to MQTT clients.').add(s.bytesOut),
      f('messages_dropped_total', 'counter', 'QoS 0 messages dropped for slow consumers or over a client\'s Maximum Packet Size.').add(s.dropped),
      f('slow_consumer_disconnects_total', 'counter', 'Clients disconnected because their queue passed limits.maxQueuedBytesHard.').add(s.slowConsumerDisconnects),
      f('publish_throttled_total', 'counter', 'Times a client went over limits.publishRate and was slowed.').add(s.throttled),
      f('connections_refused_total', 'counter', 'Connections refused by a limit.')
        .add(broker.gate.refused.connections, { reason: 'connections' })
        .add(broker.gate.refused.connectRate, { reason: 'connect_rate' })
        .add(broker.gate.refused.files, { reason: 'open_files' }),
      f('limit_refusals_total', 'counter', 'Topics and subscriptions refused by a limit.')
        .add(s.topicLimitRefusals, { limit: 'topic' })
        .add(s.subscriptionLimitRefusals, { limit: 'subscriptions' }),
      f('auth_failures_total', 'counter', 'Failed authentications (MQTT CONNECT, /ws, HTTP).').add(security?.counters.authFailures ?? 0),
      f('acl_denied_total', 'counter', 'Actions an ACL denied.')
        .add(security?.counters.deniedPublish ?? 0, { action: 'publish' })
        .add(security?.counters.deniedSubscribe ?? 0, { action: 'subscribe' })
        .add(security?.counters.deniedDelivery ?? 0, { action: 'deliver' }),
      ...(cluster === null ? [] : clusterFamilies(cluster, f)),
    ]
    const sm = f('stream_messages', 'gauge', 'Messages a stream holds.')
    const sb = f('stream_bytes', 'gauge', 'Bytes of the messages a stream holds.')
    const sd = f('stream_disk_bytes', 'gauge', 'Bytes of a stream\'s files on disk.')
    const sl = f('stream_last_seq', 'gauge', 'Sequence of a stream\'s last message.')
    const ss = f('stream_stored_total', 'counter', 'Messages a stream stored since the server started.')
    const sr = f('stream_refused_total', 'counter', 'Messages a stream refused, by reason.')
    const cp = f('consumer_pending', 'gauge', 'Messages delivered and not acknowledged.')
    const cl = f('consumer_lag', 'gauge', 'Matching messages not yet delivered (an upper bound while the cursor is behind).')
    const cf = f('consumer_ack_floor', 'gauge', 'Sequence at and below which every message is done.')
    const cr = f('consumer_redelivered', 'gauge', 'Pending messages delivered more than once.')
    const cd = f('consumer_dead_lettered_total', 'counter', 'Messages given up on (maxDeliver or term).')
    for (const info of streams.list()) {
      const stream = { stream: info.name }
      sm.add(info.messages, stream)
      sb.add(info.bytes, stream)
      sd.add(info.diskBytes, stream)
      sl.add(info.lastSeq, stream)
      ss.add(info.stored, stream)
      for (const [reason, n] of Object.entries(info.refused)) sr.add(n, { ...stream, reason })
      for (const c of streams.consumers(info.name).list()) {
        const labels = { ...stream, consumer: String(c.name) }
        cp.add(Number(c.pending), labels)
        cl.add(Number(c.lag), labels)
        cf.add(Number(c.ackFloor), labels)
        cr.add(Number(c.redelivered), labels)
        cd.add(Number(c.dlq), labels)
      }
    }
    out.push(sm, sb, sd, sl, ss, sr, cp, cl, cf, cr, cd)
    if (bridges !== null) out.push(...bridgeFamilies(bridges, f))
    const mem = process.memoryUsage()
    out.push(
      new Family('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.').add(mem.rss),
      new Family('nodejs_heap_used_bytes', 'gauge', 'V8 heap in use, in bytes.').add(mem.heapUsed),
      new Family('nodejs_heap_total_bytes', 'gauge', 'V8 heap reserved (in use, garbage not yet collected, room to grow), in bytes.').add(mem.heapTotal),
      new Family('nodejs_external_memory_bytes', 'gauge', 'Memory outside the V8 heap held by JavaScript objects (Buffers), in bytes.').add(mem.external),
    )
    const body = out.filter((fam) => fam.lines.length > 0).map((fam) => fam.text()).join('')
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' })
    res.end(body)
  })
}

/** issue 14: per bridge (label `bridge`), its link, backlog and counters. */
function bridgeFamilies(bridges: BridgeManager, f: (name: string, type: 'counter' | 'gauge', help: string) => Family): Family[] {
  const up = f('bridge_connected', 'gauge', '1 while the bridge has a link to its remote (label url), else 0.')
  const down = f('bridge_down_seconds', 'gauge', 'Seconds since the bridge lost its link (0 while connected).')
  const bm = f('bridge_backlog_messages', 'gauge', 'Messages selected by the out rules not yet acknowledged by the remote.')
  const bb = f('bridge_backlog_bytes', 'gauge', 'Bytes of those messages (estimated for a shared outbox).')
  const bo = f('bridge_oldest_unsent_seconds', 'gauge', 'Age of the oldest message not yet acknowledged by the remote.')
  const fl = f('bridge_in_flight', 'gauge', 'Messages sent and waiting for the remote\'s acknowledgement.')
  const sent = f('bridge_messages_sent_total', 'counter', 'Messages sent to the remote (resends included).')
  const acked = f('bridge_messages_acked_total', 'counter', 'Messages the remote acknowledged.')
  const refused = f('bridge_messages_refused_total', 'counter', 'Messages the remote refused (reason code, ACL, limit).')
  const dead = f('bridge_messages_dead_lettered_total', 'counter', 'Refused messages given up on after maxDeliver refusals.')
  const loops = f('bridge_loops_prevented_total', 'counter', 'Messages that came in through the bridge and were not sent back to it.')
  const recv = f('bridge_messages_received_total', 'counter', 'Messages received from the remote for in rules.')
  const rec = f('bridge_reconnects_total', 'counter', 'Links opened after the first (failover and reconnects).')
  const wd = f('bridge_watchdog_reconnects_total', 'counter', 'Links closed by the watchdog: up, but nothing acknowledged within ackTimeout.')
  const now = Date.now()
  for (const b of bridges.list()) {
    const l = { bridge: b.name }
    up.add(b.state === 'connected' ? 1 : 0, { ...l, url: b.url ?? '' })
    down.add(b.downSince === null ? 0 : Math.round((now - Date.parse(b.downSince)) / 1000), l)
    bm.add(b.backlog.messages, l)
    bb.add(b.backlog.bytes, l)
    bo.add(b.backlog.oldestSeconds, l)
    fl.add(b.inFlight, l)
    sent.add(b.sent, l)
    acked.add(b.acked, l)
    refused.add(b.refused, l)
    dead.add(b.deadLettered, l)
    loops.add(b.loopsPrevented, l)
    recv.add(b.received, l)
    rec.add(b.reconnects, l)
    wd.add(b.watchdogReconnects, l)
  }
  return [up, down, bm, bb, bo, fl, sent, acked, refused, dead, loops, recv, rec, wd]
}
