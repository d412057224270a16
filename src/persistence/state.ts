import { SubjectTrie } from '../subjects/trie.ts'
import { RecordType, type StateRecord, type StoredPacket, type StoredSubscription } from './records.ts'
import { RetainedIndex } from './retained.ts'

/**
 * The MQTT state in memory: retained messages, persistent sessions (subscriptions, outgoing
 * queue, incoming QoS 2 packets, expiry) and wills. It changes only through `apply(record)`, on
 * the live path and when the log is replayed alike, so replaying the log rebuilds exactly the state
 * that wrote it. Pure: no files, no clock.
 */

/** What subscriptionsByTopic answers for one subscription (aedes' shape: the Subscription Identifier is not part of it). */
export interface SubView {
  clientId: string
  topic: string
  qos: number
  rh?: number
  rap?: boolean
  nl?: boolean
}

export interface SubEntry {
  sub: StoredSubscription
  /** In the topic trie when the subscription is QoS 1 or 2 (QoS 0 ones are restored, never queued for). */
  view: SubView | null
  bytes: number
}

export interface Held {
  packet: StoredPacket
  bytes: number
}

export interface SessionInfo {
  /** How long the session outlives its connection; -1 = for ever. */
  expiryMs: number
  /** When it was disconnected (ms since the epoch); 0 while connected. */
  down: number
  bytes: number
}

export class QueueEntry {
  /** Position in its queue's array (kept by OutQueue). */
  index = -1
  constructor(
    readonly seq: number,
    public messageId: number | undefined,
    public packet: StoredPacket,
    public bytes: number,
  ) {}
}

/**
 * One client's outgoing queue, oldest first. Removal leaves a hole that is swept away once holes
 * are half the array, so acknowledging in order costs O(1) however long the queue.
 */
export class OutQueue {
  #items: Array<QueueEntry | null> = []
  #bySeq = new Map<number, QueueEntry>()
  #head = 0
  #hint = 0

  get length(): number {
    return this.#bySeq.size
  }

  push(e: QueueEntry): void {
    e.index = this.#items.length
    this.#items.push(e)
    this.#bySeq.set(e.seq, e)
  }

  get(seq: number): QueueEntry | undefined {
    return this.#bySeq.get(seq)
  }

  remove(e: QueueEntry): void {
    if (this.#bySeq.get(e.seq) !== e) return
    this.#bySeq.delete(e.seq)
    this.#items[e.index] = null
    const items = this.#items
    while (this.#head < items.length && items[this.#head] === null) this.#head++
    if (this.#head > 64 && this.#head * 2 > items.length) this.#sweep()
    else if (items.length > 64 && this.#bySeq.size * 2 < items.length - this.#head) this.#sweep()
  }

  #sweep(): void {
    const next: Array<QueueEntry | null> = []
    for (const e of this.#items) {
      if (e === null) continue
      e.index = next.length
      next.push(e)
    }
    this.#items = next
    this.#head = 0
    this.#hint = 0
  }

  /** The oldest entry with this packet identifier. */
  byMessageId(messageId: number): QueueEntry | undefined {
    const items = this.#items
    for (let i = this.#head; i < items.length; i++) {
      const e = items[i]
      if (e && e.messageId === messageId) return e
    }
    return undefined
  }

  /**
   * The entry of this message (aedes names a message by broker id and counter). The search starts
   * after the previous hit: both the live path and a session's replay update messages in order.
   */
  byCounter(brokerId: unknown, brokerCounter: unknown): QueueEntry | undefined {
    const items = this.#items
    const n = items.length
    const from = Math.min(Math.max(this.#hint, this.#head), n)
    for (let i = from; i < n; i++) {
      const e = items[i]
      if (e && e.packet.brokerCounter === brokerCounter && e.packet.brokerId === brokerId) { this.#hint = i + 1; return e }
    }
    for (let i = this.#head; i < from; i++) {
      const e = items[i]
      if (e && e.packet.brokerCounter === brokerCounter && e.packet.brokerId === brokerId) { this.#hint = i + 1; return e }
    }
    return undefined
  }

  /** The oldest entry that passes the test. */
  find(test: (e: QueueEntry) => boolean): QueueEntry | undefined {
    const items = this.#items
    for (let i = this.#head; i < items.length; i++) {
      const e = items[i]
      if (e && test(e)) return e
    }
    return undefined
  }

  /** The entries, oldest first. */
  toArray(): QueueEntry[] {
    const out: QueueEntry[] = []
    for (let i = this.#head; i < this.#items.length; i++) {
      const e = this.#items[i]
      if (e) out.push(e)
    }
    return out
  }
}

export class ClientState {
  subs: Map<string, SubEntry> | null = null
  queue: OutQueue | null = null
  incoming: Map<number, Held> | null = null
  session: SessionInfo | null = null

  isEmpty(): boolean {
    return this.subs === null && this.queue === null && this.incoming === null && this.session === null
  }
}

export class MqttState {
  readonly retained = new RetainedIndex()
  readonly clients = new Map<string, ClientState>()
  readonly wills = new Map<string, Held>()
  /** QoS 1/2 subscriptions of persistent sessions, for subscriptionsByTopic. */
  readonly subTrie = new SubjectTrie<SubView>()
  /** Clients with at least one subscription. */
  subscribedClients = 0
  /** Queued messages over all clients. */
  queued = 0
  /** The next queue sequence number. */
  nextSeq = 1
  /** Bytes a snapshot of this state would take (estimated from the records that made it). */
  liveBytes = 0
  /** Changes whenever a subscription does (for caches of subscriptionsByTopic). */
  subsVersion = 0

  client(clientId: string): ClientState | undefined {
    return this.clients.get(clientId)
  }

  #ensure(clientId: string): ClientState {
    let c = this.clients.get(clientId)
    if (c === undefined) {
      c = new ClientState()
      this.clients.set(clientId, c)
    }
    return c
  }

  #dropIfEmpty(clientId: string, c: ClientState): void {
    if (c.isEmpty()) this.clients.delete(clientId)
  }

  /** Applies one change. `bytes` is the size of its record (for the live-data estimate). */
  apply(rec: StateRecord, bytes: number): void {
    switch (rec.t) {
      case RecordType.RETAIN_PUT: {
        const topic = rec.packet.topic
        if (typeof topic !== 'string') return
        const prev = this.retained.set({ topic, packet: rec.packet, bytes })
        this.liveBytes += bytes - (prev?.bytes ?? 0)
        return
      }
      case RecordType.RETAIN_DEL: {
        const prev = this.retained.delete(rec.topic)
        if (prev) this.liveBytes -= prev.bytes
        return
      }
      case RecordType.SUB_PUT: {
        const c = this.#ensure(rec.clientId)
        const subs = c.subs ??= new Map()
        if (subs.size === 0) this.subscribedClients++
        const sub = rec.sub
        const prev = subs.get(sub.topic)
        if (prev) {
          if (prev.view) this.subTrie.remove(sub.topic, prev.view)
          this.liveBytes -= prev.bytes
        }
        const view = sub.qos > 0 ? subView(rec.clientId, sub) : null
        if (view) this.subTrie.insert(sub.topic, view)
        subs.set(sub.topic, { sub, view, bytes })
        this.liveBytes += bytes
        this.subsVersion++
        return
      }
      case RecordType.SUB_DEL: {
        const c = this.clients.get(rec.clientId)
        const prev = c?.subs?.get(rec.topic)
        if (!c || !c.subs || !prev) return
        if (prev.view) this.subTrie.remove(rec.topic, prev.view)
        this.liveBytes -= prev.bytes
        c.subs.delete(rec.topic)
        if (c.subs.size === 0) {
          c.subs = null
          this.subscribedClients--
        }
        this.subsVersion++
        this.#dropIfEmpty(rec.clientId, c)
        return
      }
      case RecordType.CLEAN: {
        const c = this.clients.get(rec.clientId)
        if (!c) return
        if (c.subs) {
          for (const [topic, e] of c.subs) {
            if (e.view) this.subTrie.remove(topic, e.view)
            this.liveBytes -= e.bytes
          }
          this.subscribedClients--
          this.subsVersion++
        }
        if (c.queue) {
          for (const e of c.queue.toArray()) this.liveBytes -= e.bytes
          this.queued -= c.queue.length
        }
        if (c.incoming) for (const h of c.incoming.values()) this.liveBytes -= h.bytes
        if (c.session) this.liveBytes -= c.session.bytes
        this.clients.delete(rec.clientId)
        return
      }
      case RecordType.OUT_ENQ: {
        const n = rec.clientIds.length
        if (n === 0) return
        const each = Math.ceil(bytes / n)
        for (let i = 0; i < n; i++) {
          const c = this.#ensure(rec.clientIds[i] as string)
          const q = c.queue ??= new OutQueue()
          q.push(new QueueEntry(rec.seq + i, rec.messageId, rec.packet, each))
          this.liveBytes += each
        }
        this.queued += n
        if (rec.seq + n > this.nextSeq) this.nextSeq = rec.seq + n
        return
      }
      case RecordType.OUT_MID: {
        const e = this.clients.get(rec.clientId)?.queue?.get(rec.seq)
        if (e) e.messageId = rec.messageId
        return
      }
      case RecordType.OUT_SET: {
        const e = this.clients.get(rec.clientId)?.queue?.get(rec.seq)
        if (!e) return
        e.packet = rec.packet
        e.messageId = typeof rec.packet.messageId === 'number' ? rec.packet.messageId : undefined
        this.liveBytes += bytes - e.bytes
        e.bytes = bytes
        return
      }
      case RecordType.OUT_DEL: {
        const c = this.clients.get(rec.clientId)
        const e = c?.queue?.get(rec.seq)
        if (!c || !c.queue || !e) return
        c.queue.remove(e)
        this.queued--
        this.liveBytes -= e.bytes
        if (c.queue.length === 0) {
          c.queue = null
          this.#dropIfEmpty(rec.clientId, c)
        }
        return
      }
      case RecordType.IN_PUT: {
        const mid = rec.packet.messageId
        if (typeof mid !== 'number') return
        const c = this.#ensure(rec.clientId)
        const incoming = c.incoming ??= new Map()
        const prev = incoming.get(mid)
        incoming.set(mid, { packet: rec.packet, bytes })
        this.liveBytes += bytes - (prev?.bytes ?? 0)
        return
      }
      case RecordType.IN_DEL: {
        const c = this.clients.get(rec.clientId)
        const prev = c?.incoming?.get(rec.messageId)
        if (!c || !c.incoming || !prev) return
        c.incoming.delete(rec.messageId)
        this.liveBytes -= prev.bytes
        if (c.incoming.size === 0) {
          c.incoming = null
          this.#dropIfEmpty(rec.clientId, c)
        }
        return
      }
      case RecordType.WILL_PUT: {
        const prev = this.wills.get(rec.clientId)
        this.wills.set(rec.clientId, { packet: rec.packet, bytes })
        this.liveBytes += bytes - (prev?.bytes ?? 0)
        return
      }
      case RecordType.WILL_DEL: {
        const prev = this.wills.get(rec.clientId)
        if (!prev) return
        this.wills.delete(rec.clientId)
        this.liveBytes -= prev.bytes
        return
      }
      case RecordType.SESSION: {
        const c = this.#ensure(rec.clientId)
        this.liveBytes += bytes - (c.session?.bytes ?? 0)
        c.session = { expiryMs: rec.expiryMs, down: rec.down, bytes }
        return
      }
    }
  }

  /**
   * Hands the records of a snapshot of this state to `write` (which answers each one's size) and
   * re-bases the live-data estimate on those sizes.
   */
  snapshot(write: (rec: StateRecord) => number): void {
    let live = 0
    for (const e of this.retained.entries()) {
      e.bytes = write({ t: RecordType.RETAIN_PUT, packet: e.packet })
      live += e.bytes
    }
    for (const [clientId, c] of this.clients) {
      if (c.session) {
        c.session.bytes = write({ t: RecordType.SESSION, clientId, expiryMs: c.session.expiryMs, down: c.session.down })
        live += c.session.bytes
      }
      if (c.subs) {
        for (const e of c.subs.values()) {
          e.bytes = write({ t: RecordType.SUB_PUT, clientId, sub: e.sub })
          live += e.bytes
        }
      }
      if (c.queue) {
        for (const e of c.queue.toArray()) {
          e.bytes = write({ t: RecordType.OUT_ENQ, seq: e.seq, clientIds: [clientId], packet: e.packet, messageId: e.messageId })
          live += e.bytes
        }
      }
      if (c.incoming) {
        for (const h of c.incoming.values()) {
          h.bytes = write({ t: RecordType.IN_PUT, clientId, packet: h.packet })
          live += h.bytes
        }
      }
    }
    for (const [clientId, h] of this.wills) {
      h.bytes = write({ t: RecordType.WILL_PUT, clientId, packet: h.packet })
      live += h.bytes
    }
    this.liveBytes = live
  }
}

function subView(clientId: string, sub: StoredSubscription): SubView {
  const v: SubView = { clientId, topic: sub.topic, qos: sub.qos }
  if (sub.rh !== undefined) v.rh = sub.rh
  if (sub.rap !== undefined) v.rap = sub.rap
  if (sub.nl !== undefined) v.nl = sub.nl
  return v
}
