import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node'
import type { SharedGroupSource } from '../mqtt/shared-subscriptions.ts'
import { filterSubject, subjectFits } from './subject-map.ts'

/**
 * Shared subscriptions across nodes: a group `$share/g/f` with members here is a NATS queue
 * subscription (queue `g`, subject of `f`) on the link's queue connection. NATS gives each
 * message to one queue subscriber in the whole cluster, so the group gets it once; the node that
 * got it hands it to one of its members (SharedSubscriptions, in turn).
 */
export class QueueGroups implements SharedGroupSource {
  readonly #subs = new Map<string, Subscription>()

  constructor(
    private readonly nc: NatsConnection,
    private readonly prefix: string,
    private readonly onMessage: (group: string, filter: string, msg: Msg) => void,
  ) {}

  added(group: string, filter: string): void {
    const key = `${group}\u0000${filter}`
    if (this.#subs.has(key)) return
    const subject = filterSubject(this.prefix, filter)
    if (!subjectFits(subject)) return // too long for NATS: the group gets nothing from the cluster
    // a queue name is a token: the ShareName percent-encoded (it may hold '.', '*' or spaces)
    this.#subs.set(key, this.nc.subscribe(subject, {
      queue: encodeURIComponent(group).replace(/[.*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`),
      callback: (err, msg) => { if (err === null) this.onMessage(group, filter, msg) },
    }))
  }

  removed(group: string, filter: string): void {
    const key = `${group}\u0000${filter}`
    this.#subs.get(key)?.unsubscribe()
    this.#subs.delete(key)
  }

  get size(): number {
    return this.#subs.size
  }
}
