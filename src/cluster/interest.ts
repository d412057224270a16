import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node'
import { SubjectTrie } from '../subjects/trie.ts'
import { filterSubject, subjectFits } from './subject-map.ts'

/**
 * Which messages this node wants from the others: one NATS subscription per filter its local
 * subscribers, /ws sessions and streams hold (counted over the router's listeners). NATS routes by
 * interest, so a message another node publishes crosses the cluster only to nodes that want it,
 * and a node's own messages never come back (no echo, cluster-link.ts).
 *
 * Overlapping filters (`a/#` and `a/+`) are two NATS subscriptions, and NATS hands a message to
 * each: it is delivered here once, by the subscription of the first matching filter in sort order.
 */
export class Interest {
  readonly #counts = new Map<string, { n: number; sub: Subscription }>()
  readonly #filters = new SubjectTrie<string>()
  readonly #scratch: string[] = []

  constructor(
    private readonly nc: NatsConnection,
    private readonly prefix: string,
    private readonly onMessage: (filter: string, msg: Msg) => void,
  ) {}

  /** Filters starting with '$' ($SYS, $stream, $share...) are this node's own. */
  static wanted(filter: string): boolean {
    return filter.length > 0 && filter.charCodeAt(0) !== 0x24
  }

  /** Filters too long for a NATS subject (subjectFits): served on this node only. */
  tooLong = 0

  add(filter: string): void {
    const had = this.#counts.get(filter)
    if (had !== undefined) { had.n++; return }
    const subject = filterSubject(this.prefix, filter)
    if (!subjectFits(subject)) { this.tooLong++; return }
    const sub = this.nc.subscribe(subject, {
      callback: (err, msg) => { if (err === null) this.onMessage(filter, msg) },
    })
    this.#counts.set(filter, { n: 1, sub })
    this.#filters.insert(filter, filter)
  }

  remove(filter: string): void {
    const had = this.#counts.get(filter)
    if (had === undefined) return
    if (--had.n > 0) return
    had.sub.unsubscribe()
    this.#counts.delete(filter)
    this.#filters.remove(filter, filter)
  }

  get size(): number {
    return this.#counts.size
  }

  /** Whether `filter`'s subscription is the one that delivers a message to `topic`. */
  deliversFor(filter: string, topic: string): boolean {
    if (this.#counts.size === 1) return true
    const found = this.#filters.match(topic, this.#scratch)
    let first: string | null = null
    for (const f of found) if (first === null || f < first) first = f
    found.length = 0
    return first === filter
  }
}
