import { connect, type NatsConnection, type ConnectionOptions } from '@nats-io/transport-node'
import type { Logger } from '../core/log.ts'
import type { ClusterSettings } from './cluster-config.ts'

export type LinkState = 'connecting' | 'connected' | 'reconnecting' | 'closed'

/**
 * The node's connections to the NATS cluster. Two, because of NATS' echo rule: `main` publishes
 * and holds the plain subscriptions with no echo (a node never gets its own messages back: it
 * delivered them itself), while `queues` holds the queue subscriptions of shared groups, which must
 * receive this node's messages too (a group member here is as good as one elsewhere). Both
 * reconnect for ever, to any server of the cluster, and resubscribe (nats.js does that).
 */
export class ClusterLink {
  state: LinkState = 'connecting'
  server = ''
  reconnects = 0
  disconnects = 0
  private constructor(readonly main: NatsConnection, readonly queues: NatsConnection, log: Logger) {
    void this.#watch(main, log)
    void this.#watch(queues, null)
    this.server = main.getServer()
    this.state = 'connected'
  }

  static async open(s: ClusterSettings, log: Logger): Promise<ClusterLink> {
    const base: ConnectionOptions = {
      servers: s.servers,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      pingInterval: 5_000,
      waitOnFirstConnect: true,
      ...(s.user !== '' ? { user: s.user, pass: s.password } : {}),
      ...(s.token !== '' ? { token: s.token } : {}),
      ...(s.tls !== null ? { tls: s.tls } : {}),
    }
    const slow = setTimeout(() => log.warn({ servers: s.servers, code: 'ECLUSTER_LINK' }, 'waiting for the NATS cluster: the node starts once one of cluster.urls answers'), 2_000)
    try {
      const main = await connect({ ...base, name: `edgebus ${s.name}/${s.nodeId}`, noEcho: true })
      const queues = await connect({ ...base, name: `edgebus ${s.name}/${s.nodeId} queues` })
      return new ClusterLink(main, queues, log)
    } finally {
      clearTimeout(slow)
    }
  }

  async #watch(nc: NatsConnection, log: Logger | null): Promise<void> {
    for await (const st of nc.status()) {
      if (log === null) continue
      if (st.type === 'disconnect') {
        this.state = 'reconnecting'
        this.disconnects++
        log.warn({ server: st.server, code: 'ECLUSTER_LINK' }, 'NATS link lost: reconnecting (messages for other nodes are dropped meanwhile)')
      } else if (st.type === 'reconnect') {
        this.state = 'connected'
        this.reconnects++
        this.server = st.server
        log.info({ server: st.server }, 'NATS link back')
      }
    }
  }

  async close(): Promise<void> {
    this.state = 'closed'
    await Promise.allSettled([this.main.drain(), this.queues.drain()])
  }
}
