import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from '../core/log.ts'

/** A client's will, as heartbeats carry it. */
export interface WillRecord {
  clientId: string
  topic: string
  payload: string // base64
  qos: 0 | 1 | 2
  retain: boolean
}

export interface NodeView {
  id: string
  clients: number
  lastSeen: number
  startedAt: number
  wills: WillRecord[]
}

interface Beat {
  node: string
  clients: number
  startedAt: number
  /** Present when the wills changed since the last beat, and every 10th beat. */
  wills?: WillRecord[]
}

export const HEARTBEAT_MS = 1_000
/** A node silent this long is dead: the survivors publish its clients' wills. */
export const DEAD_AFTER_MS = 3_500

/**
 * Node liveness by heartbeats on `<prefix>c.beat` (every second, with the node's client count and,
 * when they changed, its clients' wills), and a goodbye on `<prefix>c.bye` when a node stops.
 * A node not heard from for DEAD_AFTER_MS is dead; of the survivors, the one with the lowest id
 * publishes the wills it last heard from it (the others know it does, so each will goes out once).
 */
export class Liveness {
  readonly nodes = new Map<string, NodeView>()
  willsPublished = 0
  readonly #timer: NodeJS.Timeout
  #beats = 0
  #lastWills = ''
  readonly #startedAt = Date.now()

  constructor(
    private readonly nc: NatsConnection,
    private readonly prefix: string,
    private readonly nodeId: string,
    private readonly local: () => { clients: number; wills: WillRecord[] },
    private readonly onDead: (node: NodeView, publishWills: boolean) => void,
    private readonly log: Logger,
  ) {
    nc.subscribe(`${prefix}c.beat`, { callback: (err, msg) => { if (err === null) this.#heard(msg.data) } })
    nc.subscribe(`${prefix}c.bye`, {
      callback: (err, msg) => {
        if (err !== null) return
        const node = new TextDecoder().decode(msg.data)
        const view = this.nodes.get(node)
        if (view === undefined) return
        this.nodes.delete(node)
        this.log.info({ node }, 'cluster node left')
        this.onDead(view, false)
      },
    })
    this.#timer = setInterval(() => this.#tick(), HEARTBEAT_MS / 2)
    this.#timer.unref()
    this.#beat()
  }

  #tick(): void {
    if (++this.#beats % 2 === 0) this.#beat()
    const now = Date.now()
    for (const view of [...this.nodes.values()]) {
      if (now - view.lastSeen < DEAD_AFTER_MS) continue
      this.nodes.delete(view.id)
      const survivors = [this.nodeId, ...this.nodes.keys()].sort()
      const mine = survivors[0] === this.nodeId
      this.log.warn({ node: view.id, silentMs: now - view.lastSeen, wills: view.wills.length, publishing: mine }, 'cluster node silent: taken as dead')
      this.onDead(view, mine)
    }
  }

  #beat(): void {
    const { clients, wills } = this.local()
    const text = JSON.stringify(wills)
    const beat: Beat = { node: this.nodeId, clients, startedAt: this.#startedAt }
    if (text !== this.#lastWills || this.#beats % 20 === 0) beat.wills = wills
    this.#lastWills = text
    this.nc.publish(`${this.prefix}c.beat`, JSON.stringify(beat))
  }

  #heard(data: Uint8Array): void {
    let b: Beat
    try {
      b = JSON.parse(new TextDecoder().decode(data)) as Beat
    } catch {
      return
    }
    if (typeof b.node !== 'string' || b.node === this.nodeId) return
    let view = this.nodes.get(b.node)
    if (view !== undefined && view.startedAt !== b.startedAt) {
      // the node restarted faster than it could be found dead: its clients of before are gone all the same
      this.nodes.delete(b.node)
      this.log.warn({ node: b.node, wills: view.wills.length }, 'cluster node restarted: its clients of before are gone')
      this.onDead(view, [this.nodeId, ...this.nodes.keys()].sort()[0] === this.nodeId)
      view = undefined
    }
    if (view === undefined) {
      view = { id: b.node, clients: 0, lastSeen: 0, startedAt: b.startedAt, wills: [] }
      this.nodes.set(b.node, view)
      this.log.info({ node: b.node }, 'cluster node joined')
    }
    view.lastSeen = Date.now()
    view.clients = b.clients
    view.startedAt = b.startedAt
    if (Array.isArray(b.wills)) view.wills = b.wills
  }

  close(): void {
    clearInterval(this.#timer)
    this.nc.publish(`${this.prefix}c.bye`, this.nodeId)
  }
}
