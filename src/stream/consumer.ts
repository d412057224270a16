import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import { resolve } from 'node:path'
import { EdgebusError } from '../core/errors.ts'
import { topicMatchesFilter } from '../subjects/topic.ts'
import { defaultDeadLetter, describeDeliver, type ConsumerDefinition } from './consumer-config.ts'
import { consumerStatePath, ConsumerStateFile, type ConsumerCounters, type ConsumerStateOptions, type DoneKind, type PersistedEntry, type PersistedState, type StateLoadReport } from './consumer-state.ts'
import type { Journal, JournalLog } from './journal.ts'
import type { RecordHeaders, StoredRecord } from './record.ts'

/**
 * Consumer: a cursor over one stream's journal with delivery state (CONSUMERS.md).
 *
 *   const c = await Consumer.open(stream.journal, def, { onDeadLetter, onReady })
 *   stream.follow((rec) => c.notify(rec))            // new messages wake it up
 *   for (const d of c.next(10, clientId)) { ...; c.ack(d.seq) }
 *
 * Pull model: next(n, client) hands out up to n messages; the server calls it when a client has
 * room and when onReady says something may have become deliverable. Several clients bound to one
 * consumer share it: each next() takes messages no one else holds, and a subject is held by the
 * client that has unacknowledged deliveries of it (the ordering rule, below).
 *
 * State, per message the cursor passed that matched and is not done yet (an "entry"):
 *   new      claimed by the cursor, not delivered yet (its subject was held by another client)
 *   out      delivered, waiting for an ack until its deadline (ackWait or backoff step)
 *   waiting  nak'd with a delay: deliverable again at its deadline
 *   ready    deliverable again now (deadline passed, nak, client released)
 * ack/term/dead letter/retention remove an entry. Everything below the cursor that is not an
 * entry is done; the ack floor is the lowest entry's sequence - 1.
 *
 * Ordering rule (competing clients). A subject is HELD by a client while that client has
 * deliveries of it out (delivered, not acked, deadline not passed). Only the holder may receive
 * that subject's messages; a free subject goes to whoever pulls first, who then holds it. Within
 * next(), candidates are taken in stream order: first entries ready again or new (lowest sequence
 * first), then records from the cursor. So each client sees a subject's first deliveries in
 * stream order, and while one client holds a subject no other client gets any of its messages.
 * A redelivery may come after later messages of its subject (it was delivered once before them).
 * A nak with a delay gives the hold up (the client asked to move on); release(client) gives all
 * its holds up and makes its unacked messages ready at once.
 *
 * Time comes from `clock` and timers from `timers`, both injectable: tests move a manual clock.
 */

const OUT = 1
const WAIT = 2
const READY = 3
type EntryState = typeof OUT | typeof WAIT | typeof READY

class Entry {
  /** The client it is out to (state OUT), or null (not out, or out before a restart). */
  owner: string | null = null
  /** Sits in one of the ready heaps. */
  inHeap = false
  constructor(
    readonly seq: number,
    readonly subject: string,
    public dc: number,
    public due: number,
    public state: EntryState,
  ) {}
}

interface DueItem { due: number; e: Entry }

/** A binary min-heap. */
class MinHeap<T> {
  readonly #a: T[] = []
  constructor(private readonly less: (x: T, y: T) => boolean) {}
  get size(): number { return this.#a.length }
  peek(): T | undefined { return this.#a[0] }
  push(x: T): void {
    const a = this.#a
    let i = a.length
    a.push(x)
    while (i > 0) {
      const p = (i - 1) >> 1
      const pv = a[p] as T
      if (!this.less(x, pv)) break
      a[i] = pv
      i = p
    }
    a[i] = x
  }
  pop(): T | undefined {
    const a = this.#a
    const top = a[0]
    const last = a.pop()
    if (a.length === 0 || last === undefined) return top
    let i = 0
    const n = a.length
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      const c = r < n && this.less(a[r] as T, a[l] as T) ? r : l
      if (!this.less(a[c] as T, last)) break
      a[i] = a[c] as T
      i = c
    }
    a[i] = last
    return top
  }
  clear(): void { this.#a.length = 0 }
}

/** One message handed to a client. `payload` is a view of a read buffer: copy it to keep it long. */
export interface Delivery {
  seq: number
  subject: string
  payload: Buffer
  headers: RecordHeaders | null
  /** When the stream stored it (ms). */
  timestamp: number
  /** 1 on the first delivery. */
  deliveryCount: number
  /** Messages for this consumer after this one (an estimate while the cursor is behind; see lag). */
  pending: number
}

/** A message the consumer gives up on; the server publishes it to `deadLetter`. */
export interface DeadLetter {
  stream: string
  consumer: string
  seq: number
  subject: string
  deliveryCount: number
  /** maxDeliver: the last allowed delivery was not acked in time (or was nak'd); term: the client refused it. */
  reason: 'maxDeliver' | 'term'
  /** The topic to publish the notice to. */
  deadLetter: string
}

export interface ConsumerTimers {
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

export const realTimers: ConsumerTimers = {
  setTimeout: (fn, ms) => {
    // Node timers hold at most 2^31-1 ms (~24.8 days); a later deadline fires early and re-arms (#onTimer)
    const t = setTimeout(fn, Math.min(ms, 2 ** 31 - 1))
    t.unref()
    return t
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
}

export interface ConsumerOptions {
  /** Time source for deadlines and replay: default Date.now. */
  clock?: () => number
  timers?: ConsumerTimers
  /** Called with every message given up on (counts as acknowledged). */
  onDeadLetter?: (dl: DeadLetter) => void
  /**
   * Called (once per burst, from a microtask) when messages may have become deliverable: new
   * matching messages (notify), a redelivery or replay delay due, room freed under maxAckPending,
   * a subject released by its holder. The server then calls next() for clients with room.
   */
  onReady?: () => void
  log?: JournalLog
  /** The durable state file's options (sync interval, compaction). */
  state?: ConsumerStateOptions
  /** Records read from the journal per next() at most (a long stretch not matching the filter). Default 10,000. */
  scanLimit?: number
  /** Messages claimed by the cursor but not yet delivered (their subject is held) at most. Default max(maxAckPending, 1000). */
  maxDeferred?: number
  /** The name of an ephemeral consumer (default eph-<random>). */
  ephemeralName?: string
}

export interface ConsumerInfo {
  name: string
  stream: string
  durable: boolean
  filter: string[]
  deliver: string | Record<string, unknown>
  ack: 'explicit' | 'none'
  /** The highest stream sequence the cursor has passed (delivered, claimed or skipped as not matching). */
  deliveredSeq: number
  /** Every message at or below it is done (acked, terminated, dead-lettered, not matching). */
  ackFloor: number
  /** Delivered and not acknowledged (what maxAckPending bounds). */
  pending: number
  /** Of those, out to a client right now. */
  outstanding: number
  /** Of those, delivered more than once. */
  redelivered: number
  /** Of those, deliverable again now. */
  ready: number
  /** Claimed by the cursor, not delivered yet (their subject is held by another client). */
  deferred: number
  /** Matching messages not yet delivered: deferred + the records after the cursor (see lagExact). */
  lag: number
  /** True when lag is exact (the cursor is at the end); otherwise it is an upper bound (countLag() counts). */
  lagExact: boolean
  /** Messages dead-lettered (after maxDeliver or by term). */
  dlq: number
  terminated: number
  /** Pending messages the stream removed before they were acknowledged. */
  dropped: number
  /** Stream sequences retention removed before the cursor reached them (an upper bound of messages missed), since open. */
  skipped: number
  /** Clients holding subjects now. */
  clients: number
}

/** One entry, for the API and tests. */
export interface PendingInfo {
  seq: number
  subject: string
  deliveryCount: number
  state: 'new' | 'out' | 'waiting' | 'ready'
  client: string | null
  /** Deadline (out, waiting), ms; 0 otherwise. */
  due: number
}

const openHere = new Set<string>()

export class Consumer {
  readonly name: string
  readonly stream: string
  readonly durable: boolean
  readonly definition: ConsumerDefinition
  /** Where dead letters go (MQTT syntax). */
  readonly deadLetterSubject: string
  /** What recovery did with the state file (durable consumers), or null. */
  stateReport: StateLoadReport | null = null

  readonly #journal: Journal
  readonly #clock: () => number
  readonly #timers: ConsumerTimers
  readonly #log: JournalLog | null
  readonly #onDeadLetter: ((dl: DeadLetter) => void) | null
  readonly #onReady: (() => void) | null
  readonly #explicit: boolean
  readonly #filters: string[]
  readonly #matchCache = new Map<string, boolean>()
  readonly #maxAckPending: number
  readonly #maxDeliver: number
  readonly #scanLimit: number
  readonly #maxDeferred: number

  #cursor = 1
  #cursorLogged = 0
  readonly #entries = new Map<number, Entry>()
  /** Ready entries delivered before (dc > 0), and claimed ones never delivered (dc = 0); both by sequence. */
  readonly #redeliver = new MinHeap<Entry>((a, b) => a.seq < b.seq)
  readonly #fresh = new MinHeap<Entry>((a, b) => a.seq < b.seq)
  readonly #dueHeap = new MinHeap<DueItem>((a, b) => a.due < b.due || (a.due === b.due && a.e.seq < b.e.seq))
  readonly #holds = new Map<string, { client: string; n: number }>()
  #ackPending = 0
  #deferred = 0
  /** A lower bound of the lowest entry's sequence (to notice retention passing it cheaply). */
  #lowSeq = Infinity
  readonly #counters: ConsumerCounters = { deadLettered: 0, terminated: 0, dropped: 0 }
  #skipped = 0

  #iter: Generator<StoredRecord, void, undefined> | null = null
  /** A record read from the journal and not consumed yet (replay: original waits for its time). */
  #peek: StoredRecord | null = null
  #peekDue = 0
  #replayBase: { wall: number; ts: number } | null = null

  #timer: unknown = null
  #timerAt = Infinity
  #signalQueued = false
  #store: ConsumerStateFile | null = null
  #stateKey: string | null = null
  #closed = false

  private constructor(journal: Journal, def: ConsumerDefinition, name: string, opts: ConsumerOptions) {
    this.#journal = journal
    this.definition = def
    this.name = name
    this.stream = def.stream
    this.durable = def.name !== null
    this.deadLetterSubject = def.deadLetter ?? defaultDeadLetter(def.stream, name)
    this.#clock = opts.clock ?? Date.now
    this.#timers = opts.timers ?? realTimers
    this.#log = opts.log ?? null
    this.#onDeadLetter = opts.onDeadLetter ?? null
    this.#onReady = opts.onReady ?? null
    this.#explicit = def.ack === 'explicit'
    this.#filters = def.filter
    this.#maxAckPending = def.maxAckPending
    this.#maxDeliver = def.maxDeliver
    this.#scanLimit = Math.max(1, opts.scanLimit ?? 10_000)
    this.#maxDeferred = Math.max(1, opts.maxDeferred ?? Math.max(def.maxAckPending, 1000))
  }

  /**
   * Opens a consumer on `journal` (the stream's). A durable one (def.name set) resumes from
   * `<journal dir>/consumers/<name>.state`, or starts by its deliver policy and writes that state
   * (synced) before this resolves. An ephemeral one starts by its deliver policy, in memory only.
   */
  static async open(journal: Journal, def: ConsumerDefinition, opts: ConsumerOptions = {}): Promise<Consumer> {
    if (journal.closed) throw new EdgebusError('EJOURNAL_CLOSED', `journal ${journal.dir} is closed`, { dir: journal.dir })
    const name = def.name ?? opts.ephemeralName ?? `eph-${randomBytes(4).toString('hex')}`
    const c = new Consumer(journal, def, name, opts)
    if (def.name === null) {
      c.#start(def.deliver)
      c.#arm(c.#clock())
      return c
    }
    const path = consumerStatePath(journal.dir, def.name)
    const key = resolve(path)
    if (openHere.has(key)) {
      throw new EdgebusError('ECONSUMER_IN_USE', `consumer "${def.name}" of stream "${def.stream}" is already open`, { stream: def.stream, consumer: def.name })
    }
    openHere.add(key)
    c.#stateKey = key
    try {
      const { file, state, report } = ConsumerStateFile.open(path, { log: opts.log, ...opts.state })
      c.stateReport = report
      c.#store = file
      file.attach(() => c.#persisted())
      if (state !== null) c.#restore(state)
      else c.#start(report.setAside !== null ? 'all' : def.deliver)
      if (state === null || report.rewrite) file.rewriteSync()
      c.#cursorLogged = c.#cursor
    } catch (err) {
      openHere.delete(key)
      c.#closed = true
      await c.#store?.close().catch(() => {})
      throw err
    }
    c.#arm(c.#clock())
    return c
  }

  /** Deletes a durable consumer's state (it must not be open). */
  static async remove(journalDir: string, name: string): Promise<void> {
    const path = consumerStatePath(journalDir, name)
    if (openHere.has(resolve(path))) throw new EdgebusError('ECONSUMER_IN_USE', `consumer "${name}" is open; close it first`, { consumer: name })
    await fs.promises.rm(path, { force: true })
  }

  // --- starting --------------------------------------------------------------------------------

  /** Places a new consumer's cursor by its deliver policy. */
  #start(deliver: ConsumerDefinition['deliver']): void {
    const j = this.#journal
    const first = j.firstSeq
    const last = j.lastSeq
    if (deliver === 'all') this.#cursor = first
    else if (deliver === 'new') this.#cursor = last + 1
    else if (deliver === 'last') this.#cursor = this.#lastMatching(first, last) ?? last + 1
    else if (deliver === 'lastPerSubject') {
      const lastOf = new Map<string, number>()
      for (const r of j.iterate(first, last)) if (this.#matches(r.subject)) lastOf.set(r.subject, r.seq)
      const seqs = [...lastOf.entries()].sort((a, b) => a[1] - b[1])
      for (const [subject, seq] of seqs) {
        const e = new Entry(seq, subject, 0, 0, READY)
        this.#addEntry(e)
        this.#pushReady(e)
      }
      this.#cursor = last + 1
    } else if ('startSeq' in deliver) this.#cursor = Math.max(deliver.startSeq, first)
    else this.#cursor = j.seqForTime(deliver.startTime)
  }

  /** The last matching record's sequence, searching back in growing windows. */
  #lastMatching(first: number, last: number): number | null {
    let hi = last
    let width = 64
    while (hi >= first) {
      const lo = Math.max(first, hi - width + 1)
      let found: number | null = null
      for (const r of this.#journal.iterate(lo, hi)) if (this.#matches(r.subject)) found = r.seq
      if (found !== null) return found
      hi = lo - 1
      width *= 4
    }
    return null
  }

  #restore(s: PersistedState): void {
    this.#cursor = s.cursor
    Object.assign(this.#counters, s.counters)
    let maxSeq = 0
    for (const p of s.entries.values()) {
      // deliveries out before the restart are out to no known client: they come back at their deadline
      const e = p.dc === 0 ? new Entry(p.seq, p.subject, 0, 0, READY) : new Entry(p.seq, p.subject, p.dc, p.due, OUT)
      this.#addEntry(e)
      if (e.state === OUT) this.#dueHeap.push({ due: e.due, e })
      else this.#pushReady(e)
      if (p.seq > maxSeq) maxSeq = p.seq
    }
    if (maxSeq >= this.#cursor) this.#cursor = maxSeq + 1
    const end = this.#journal.lastSeq + 1
    if (this.#cursor > end) {
      // the journal lost records we had seen (its files were replaced?): never skip what it gets next
      this.#log?.warn({ code: 'ECONSUMER_CORRUPT', stream: this.stream, consumer: this.name, cursor: this.#cursor, lastSeq: end - 1 },
        'consumer state is ahead of its stream; cursor moved back to the stream end')
      for (const e of [...this.#entries.values()]) {
        if (e.seq < end) continue
        this.#counters.dropped++
        this.#remove(e, 'dropped')
      }
      this.#cursor = end
    }
  }

  /** The state as the file keeps it. */
  #persisted(): PersistedState {
    const entries = new Map<number, PersistedEntry>()
    for (const e of this.#entries.values()) entries.set(e.seq, { seq: e.seq, subject: e.subject, dc: e.dc, due: e.state === READY ? 0 : e.due })
    return { cursor: this.#cursor, entries, counters: { ...this.#counters } }
  }

  // --- pulling ---------------------------------------------------------------------------------

  /**
   * Up to `n` messages for `client`: deliverable entries first (redeliveries and deferred ones,
   * in stream order), then new records from the cursor. Respects maxAckPending (redeliveries are
   * already counted, so they still go), filters, subject holds and replay timing. May return
   * fewer than are waiting after reading scanLimit records (onReady is then called to come back).
   */
  next(n: number, client = ''): Delivery[] {
    this.#checkOpen()
    const out: Delivery[] = []
    if (!(n >= 1)) return out
    const now = this.#clock()
    this.#tick(now)
    if (this.#redeliver.size + this.#fresh.size > 0) {
      if (this.#explicit) this.#takeReady(n, client, now, out)
      else this.#takeStarting(n, out)
    }
    if (out.length < n) this.#takeNew(n, client, now, out)
    if (this.#store !== null && this.#cursor !== this.#cursorLogged) {
      this.#store.cursor(this.#cursor)
      this.#cursorLogged = this.#cursor
    }
    const left = this.#lagEstimate()
    for (let i = 0; i < out.length; i++) (out[i] as Delivery).pending = left + out.length - 1 - i
    this.#arm(now)
    return out
  }

  #room(): boolean {
    return this.#maxAckPending === 0 || this.#ackPending < this.#maxAckPending
  }

  #takeReady(n: number, client: string, now: number, out: Delivery[]): void {
    const skipped: Entry[] = []
    let freshOk = this.#room()
    while (out.length < n) {
      // the lower sequence of the two heaps; never-delivered ones need room under maxAckPending
      const r = this.#redeliver.peek()
      const f = freshOk ? this.#fresh.peek() : undefined
      let e: Entry | undefined
      if (r !== undefined && (f === undefined || r.seq < f.seq)) e = this.#redeliver.pop()
      else if (f !== undefined) e = this.#fresh.pop()
      else break
      if (e === undefined) break
      e.inHeap = false
      if (this.#entries.get(e.seq) !== e || e.state !== READY) continue
      if (!this.#canTake(e.subject, client)) {
        skipped.push(e)
        continue
      }
      const rec = this.#journal.read(e.seq)
      if (rec === null) {
        this.#counters.dropped++
        this.#remove(e, 'dropped')
        continue
      }
      out.push(this.#deliver(e, rec, client, now))
      if (freshOk && !this.#room()) freshOk = false
    }
    for (const e of skipped) this.#pushReady(e)
  }

  /**
   * A consumer without acks has entries only from its start (lastPerSubject's newest message of
   * each subject): each goes out once, in stream order, before the records after the cursor.
   */
  #takeStarting(n: number, out: Delivery[]): void {
    while (out.length < n) {
      const e = this.#fresh.pop()
      if (e === undefined) break
      e.inHeap = false
      if (this.#entries.get(e.seq) !== e) continue
      const rec = this.#journal.read(e.seq)
      this.#remove(e, rec === null ? 'dropped' : 'ack')
      if (rec === null) this.#counters.dropped++
      else out.push(toDelivery(rec, 1))
    }
  }

  #takeNew(n: number, client: string, now: number, out: Delivery[]): void {
    let scanned = 0
    while (out.length < n) {
      if (this.#explicit && (!this.#room() || this.#deferred >= this.#maxDeferred)) break
      if (scanned >= this.#scanLimit) {
        this.#signal() // more to read: come back after other work
        break
      }
      const rec = this.#peekRecord()
      if (rec === null) break
      scanned++
      if (!this.#matches(rec.subject)) {
        this.#peek = null
        this.#cursor = rec.seq + 1
        continue
      }
      if (this.definition.replay === 'original') {
        if (this.#replayBase === null) this.#replayBase = { wall: now, ts: rec.timestamp }
        const due = this.#replayBase.wall + (rec.timestamp - this.#replayBase.ts)
        if (due > now) {
          this.#peekDue = due
          break
        }
      }
      this.#peek = null
      this.#peekDue = 0
      this.#cursor = rec.seq + 1
      if (!this.#explicit) {
        out.push(toDelivery(rec, 1))
        continue
      }
      const e = new Entry(rec.seq, rec.subject, 0, 0, READY)
      this.#addEntry(e)
      if (this.#canTake(rec.subject, client)) {
        out.push(this.#deliver(e, rec, client, now))
      } else {
        // held by another client: claimed now, delivered when the subject is free (or to its holder)
        this.#store?.deliver(e.seq, 0, 0, e.subject)
        this.#pushReady(e)
      }
    }
  }

  /** The next record at or after the cursor, read once and kept until consumed. */
  #peekRecord(): StoredRecord | null {
    if (this.#peek !== null) {
      if (this.#peek.seq >= this.#cursor) return this.#peek
      this.#peek = null
    }
    const j = this.#journal
    for (;;) {
      if (this.#cursor > j.lastSeq) {
        this.#iter = null
        return null
      }
      if (this.#iter === null) this.#iter = j.iterate(this.#cursor)
      const r = this.#iter.next()
      if (r.done === true) {
        // the walk passed every live record up to lastSeq (it cannot grow during this synchronous call)
        this.#iter = null
        if (!j.closed) this.#cursor = j.lastSeq + 1
        return null
      }
      if (r.value.seq < this.#cursor) continue
      this.#peek = r.value
      return r.value
    }
  }

  #deliver(e: Entry, rec: StoredRecord, client: string, now: number): Delivery {
    if (e.dc === 0) {
      this.#deferred--
      this.#ackPending++
    }
    e.dc++
    e.state = OUT
    e.owner = client
    e.due = now + this.#waitFor(e.dc)
    this.#dueHeap.push({ due: e.due, e })
    const h = this.#holds.get(e.subject)
    if (h === undefined) this.#holds.set(e.subject, { client, n: 1 })
    else h.n++
    this.#store?.deliver(e.seq, e.dc, e.due, e.subject)
    return toDelivery(rec, e.dc)
  }

  /** How long the dc-th delivery may stay unacknowledged. */
  #waitFor(dc: number): number {
    const b = this.definition.backoff
    if (b.length === 0) return this.definition.ackWait
    return b[Math.min(dc, b.length) - 1] as number
  }

  #canTake(subject: string, client: string): boolean {
    const h = this.#holds.get(subject)
    return h === undefined || h.client === client
  }

  #matches(subject: string): boolean {
    const filters = this.#filters
    if (filters.length === 0) return true
    const cached = this.#matchCache.get(subject)
    if (cached !== undefined) return cached
    let m = false
    for (const f of filters) {
      if (topicMatchesFilter(subject, f)) { m = true; break }
    }
    if (this.#matchCache.size >= 10_000) this.#matchCache.clear()
    this.#matchCache.set(subject, m)
    return m
  }

  // --- acknowledgements ------------------------------------------------------------------------

  /** The message was processed. False when `seq` is not pending (already done, never delivered). */
  ack(seq: number): boolean {
    this.#checkOpen()
    const e = this.#entries.get(seq)
    if (e === undefined || e.dc === 0) return false
    this.#remove(e, 'ack')
    return true
  }

  /**
   * The client could not process it: deliver it again now, or after `delayMs`. At maxDeliver
   * deliveries it is dead-lettered instead. A delayed nak gives up the client's hold on the subject.
   */
  nak(seq: number, delayMs = 0): boolean {
    this.#checkOpen()
    const e = this.#entries.get(seq)
    if (e === undefined || e.dc === 0) return false
    this.#unhold(e)
    if (this.#maxDeliver > 0 && e.dc >= this.#maxDeliver) {
      this.#deadLetter(e, 'maxDeliver')
      return true
    }
    const now = this.#clock()
    if (delayMs > 0) {
      e.state = WAIT
      e.due = now + delayMs
      this.#dueHeap.push({ due: e.due, e })
      this.#store?.due(e.seq, e.due)
      this.#arm(now)
    } else {
      this.#store?.due(e.seq, now)
      this.#makeReady(e)
    }
    return true
  }

  /** The client refuses it for good: it is dead-lettered (reason term) and never delivered again. */
  term(seq: number): boolean {
    this.#checkOpen()
    const e = this.#entries.get(seq)
    if (e === undefined || e.dc === 0) return false
    this.#deadLetter(e, 'term')
    return true
  }

  /** Still working on it: its deadline starts again (ackWait, or the backoff step). */
  inProgress(seq: number): boolean {
    this.#checkOpen()
    const e = this.#entries.get(seq)
    if (e === undefined || e.state !== OUT) return false
    const now = this.#clock()
    e.due = now + this.#waitFor(e.dc)
    this.#dueHeap.push({ due: e.due, e })
    this.#store?.due(e.seq, e.due)
    this.#arm(now)
    return true
  }

  /**
   * A client went away: its unacked deliveries are ready for others at once (those at maxDeliver
   * are dead-lettered) and its holds end. Returns how many it had out. `null` releases the
   * deliveries that were out when the server stopped (they have no client now): a consumer with
   * one known client (a bridge) resends them at once instead of after their ack deadline.
   */
  release(client: string | null): number {
    this.#checkOpen()
    const now = this.#clock()
    let n = 0
    for (const e of [...this.#entries.values()]) {
      if (e.state !== OUT || e.owner !== client) continue
      n++
      this.#unhold(e)
      if (this.#maxDeliver > 0 && e.dc >= this.#maxDeliver) {
        this.#deadLetter(e, 'maxDeliver')
        continue
      }
      this.#store?.due(e.seq, now)
      this.#makeReady(e)
    }
    return n
  }

  /**
   * New records were stored (wire stream.follow to it). Wakes the server up (onReady) when one
   * matches; one that does not match is passed over without reading it when the cursor is there.
   */
  notify(rec?: { seq: number; subject: string }): void {
    if (this.#closed) return
    if (rec !== undefined && !this.#matches(rec.subject)) {
      if (this.#peek === null && this.#iter === null && rec.seq === this.#cursor) this.#cursor++
      return
    }
    this.#signal()
  }

  // --- state changes ---------------------------------------------------------------------------

  /** A new entry; one never delivered (dc 0) counts as deferred, and the caller delivers it or makes it ready. */
  #addEntry(e: Entry): void {
    this.#entries.set(e.seq, e)
    if (e.seq < this.#lowSeq) this.#lowSeq = e.seq
    if (e.dc === 0) this.#deferred++
    else this.#ackPending++
  }

  #pushReady(e: Entry): void {
    if (e.inHeap) return
    e.inHeap = true
    if (e.dc === 0) this.#fresh.push(e)
    else this.#redeliver.push(e)
  }

  #makeReady(e: Entry): void {
    e.state = READY
    e.owner = null
    this.#pushReady(e)
    this.#signal()
  }

  #unhold(e: Entry): void {
    if (e.state !== OUT) return
    const owner = e.owner
    e.owner = null
    if (owner === null) return
    const h = this.#holds.get(e.subject)
    if (h === undefined) return
    if (--h.n <= 0) {
      this.#holds.delete(e.subject)
      if (this.#redeliver.size + this.#fresh.size > 0) this.#signal()
    }
  }

  /** The entry leaves: acked, terminated, dead-lettered or dropped. */
  #remove(e: Entry, kind: DoneKind): void {
    this.#unhold(e)
    this.#entries.delete(e.seq)
    e.state = READY // a stale heap item; it is not in #entries any more
    if (e.dc > 0) {
      const wasFull = !this.#room()
      this.#ackPending--
      if (wasFull) this.#signal()
    } else {
      this.#deferred--
    }
    this.#store?.done(e.seq, kind)
  }

  #deadLetter(e: Entry, reason: DeadLetter['reason']): void {
    this.#counters.deadLettered++
    if (reason === 'term') this.#counters.terminated++
    this.#remove(e, reason === 'term' ? 'term' : 'deadLetter')
    const cb = this.#onDeadLetter
    if (cb === null) return
    try {
      cb({ stream: this.stream, consumer: this.name, seq: e.seq, subject: e.subject, deliveryCount: e.dc, reason, deadLetter: this.deadLetterSubject })
    } catch (err) {
      this.#log?.error({ stream: this.stream, consumer: this.name, seq: e.seq, err: String(err) }, 'consumer dead-letter callback failed')
    }
  }

  /** Applies time and retention: deadlines passed, entries the stream no longer holds. */
  #tick(now: number): void {
    const first = this.#journal.firstSeq
    if (this.#cursor < first) {
      this.#skipped += first - this.#cursor
      this.#cursor = first
    }
    if (first > this.#lowSeq) {
      let low = Infinity
      for (const e of [...this.#entries.values()]) {
        if (e.seq < first) {
          this.#counters.dropped++
          this.#remove(e, 'dropped')
        } else if (e.seq < low) low = e.seq
      }
      this.#lowSeq = low
    }
    for (;;) {
      const top = this.#dueHeap.peek()
      if (top === undefined || top.due > now) break
      this.#dueHeap.pop()
      const e = top.e
      if (this.#entries.get(e.seq) !== e || e.due !== top.due || (e.state !== OUT && e.state !== WAIT)) continue
      if (e.state === OUT) {
        this.#unhold(e)
        if (this.#maxDeliver > 0 && e.dc >= this.#maxDeliver) {
          this.#deadLetter(e, 'maxDeliver')
          continue
        }
      }
      this.#makeReady(e)
    }
    if (this.#dueHeap.size > 4 * this.#entries.size + 1024) {
      // stale items (inProgress, nak) piled up: rebuild from the entries
      this.#dueHeap.clear()
      for (const e of this.#entries.values()) if (e.state === OUT || e.state === WAIT) this.#dueHeap.push({ due: e.due, e })
    }
  }

  /** Sets the one timer to the next deadline or replay time. */
  #arm(now: number): void {
    let at = Infinity
    for (;;) {
      const top = this.#dueHeap.peek()
      if (top === undefined) break
      const e = top.e
      if (this.#entries.get(e.seq) === e && e.due === top.due && (e.state === OUT || e.state === WAIT)) {
        at = top.due
        break
      }
      this.#dueHeap.pop()
    }
    // a replay time already reached is not a timer: the record is deliverable (onTimer signalled)
    if (this.#peek !== null && this.#peekDue > now) at = Math.min(at, this.#peekDue)
    if (at === this.#timerAt && this.#timer !== null) return
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer)
    this.#timer = null
    this.#timerAt = at
    if (at === Infinity || this.#closed) return
    this.#timer = this.#timers.setTimeout(this.#onTimer, Math.max(0, at - now))
  }

  readonly #onTimer = (): void => {
    this.#timer = null
    this.#timerAt = Infinity
    if (this.#closed) return
    const now = this.#clock()
    this.#tick(now)
    if (this.#peek !== null && this.#peekDue > 0 && this.#peekDue <= now) this.#signal()
    this.#arm(now)
  }

  #signal(): void {
    if (this.#signalQueued || this.#onReady === null) return
    this.#signalQueued = true
    queueMicrotask(() => {
      this.#signalQueued = false
      if (!this.#closed) this.#onReady?.()
    })
  }

  // --- reporting -------------------------------------------------------------------------------

  #lagEstimate(): number {
    const j = this.#journal
    const from = Math.max(this.#cursor, j.firstSeq)
    return Math.max(0, j.lastSeq - from + 1) + this.#deferred
  }

  /** Milliseconds until the next deadline or replay time (null: none). */
  nextDueIn(): number | null {
    return this.#timerAt === Infinity ? null : Math.max(0, this.#timerAt - this.#clock())
  }

  /** Exact lag: reads every record after the cursor (cost: one pass over them). */
  countLag(): number {
    this.#checkOpen()
    let n = this.#deferred
    for (const r of this.#journal.iterate(this.#cursor)) if (this.#matches(r.subject)) n++
    return n
  }

  /** Why its state file cannot be written now (acknowledgements are then kept in memory only), or null. */
  get stateFailure(): EdgebusError | null {
    return this.#store?.failure ?? null
  }

  info(): ConsumerInfo {
    let outstanding = 0
    let redelivered = 0
    let ready = 0
    let low = this.#cursor
    for (const e of this.#entries.values()) {
      if (e.seq < low) low = e.seq
      if (e.dc === 0) continue
      if (e.state === OUT && e.owner !== null) outstanding++
      if (e.state === READY) ready++
      if (e.dc > 1) redelivered++
    }
    const lag = this.#lagEstimate()
    const def = this.definition
    return {
      name: this.name,
      stream: this.stream,
      durable: this.durable,
      filter: def.filter,
      deliver: describeDeliver(def.deliver),
      ack: def.ack,
      deliveredSeq: this.#cursor - 1,
      ackFloor: low - 1,
      pending: this.#ackPending,
      outstanding,
      redelivered,
      ready,
      deferred: this.#deferred,
      lag,
      lagExact: lag === this.#deferred,
      dlq: this.#counters.deadLettered,
      terminated: this.#counters.terminated,
      dropped: this.#counters.dropped,
      skipped: this.#skipped,
      clients: new Set([...this.#holds.values()].map((h) => h.client)).size,
    }
  }

  /** Every entry, in stream order. */
  pendingEntries(): PendingInfo[] {
    const names = { [OUT]: 'out', [WAIT]: 'waiting', [READY]: 'ready' } as const
    return [...this.#entries.values()]
      .sort((a, b) => a.seq - b.seq)
      .map((e) => ({
        seq: e.seq,
        subject: e.subject,
        deliveryCount: e.dc,
        state: e.dc === 0 ? 'new' : names[e.state],
        client: e.state === OUT ? e.owner : null,
        due: e.state === READY ? 0 : e.due,
      }))
  }

  // --- lifecycle -------------------------------------------------------------------------------

  /** Writes the state records of this turn now (they are written at the end of the turn anyway). */
  flush(): void {
    this.#store?.flushSync()
  }

  get closed(): boolean {
    return this.#closed
  }

  #checkOpen(): void {
    if (this.#closed) throw new EdgebusError('ECONSUMER_CLOSED', `consumer "${this.name}" of stream "${this.stream}" is closed`, { stream: this.stream, consumer: this.name })
  }

  /** Stops timers, writes and syncs the state (durable), and frees the name. Call before closing the journal. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer)
    this.#timer = null
    this.#iter = null
    this.#peek = null
    const store = this.#store
    if (store !== null) {
      if (this.#cursor !== this.#cursorLogged) store.cursor(this.#cursor)
      try {
        await store.close()
      } finally {
        if (this.#stateKey !== null) openHere.delete(this.#stateKey)
      }
    }
  }
}

function toDelivery(rec: StoredRecord, deliveryCount: number): Delivery {
  return { seq: rec.seq, subject: rec.subject, payload: rec.payload, headers: rec.headers, timestamp: rec.timestamp, deliveryCount, pending: 0 }
}
