import type { NatsConnection } from '@nats-io/transport-node'

/**
 * Which node holds which client identifier. A client that connects here is announced on
 * `<prefix>c.connect`; the node that held it until now closes its old connection as taken over
 * [MQTT-3.1.4-2]. The announcement is sent before the CONNACK, so the old connection is closing
 * (NATS is sub-millisecond on a LAN) while the new one starts.
 */
export class ClientRegistry {
  /** client id -> node, as the announcements said (latest wins). */
  readonly #where = new Map<string, string>()
  readonly #subject: string
  takeoversHere = 0

  constructor(
    private readonly nc: NatsConnection,
    prefix: string,
    private readonly nodeId: string,
    private readonly closeLocal: (clientId: string) => boolean,
  ) {
    this.#subject = `${prefix}c.connect`
    nc.subscribe(this.#subject, {
      callback: (err, msg) => {
        if (err !== null) return
        let a: { node?: unknown; client?: unknown }
        try {
          a = JSON.parse(new TextDecoder().decode(msg.data)) as typeof a
        } catch {
          return
        }
        if (typeof a.node !== 'string' || typeof a.client !== 'string' || a.node === this.nodeId) return
        this.#where.set(a.client, a.node)
        if (this.closeLocal(a.client)) this.takeoversHere++
      },
    })
  }

  /** A client identifier was admitted here. */
  connected(clientId: string): void {
    this.#where.set(clientId, this.nodeId)
    this.nc.publish(this.#subject, JSON.stringify({ node: this.nodeId, client: clientId }))
  }

  /** The node a client was last announced on, or null. */
  nodeOf(clientId: string): string | null {
    return this.#where.get(clientId) ?? null
  }

  /** A node died or left: its entries go. */
  forgetNode(node: string): void {
    for (const [id, n] of this.#where) if (n === node) this.#where.delete(id)
  }
}
