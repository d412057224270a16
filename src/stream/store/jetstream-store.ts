import { createInbox, headers as natsHeaders, type Msg, type NatsConnection } from '@nats-io/transport-node'
import { EdgebusError } from '../../core/errors.ts'
import { StoredRecord, type RecordHeaders, type RecordInput } from '../record.ts'
import { tooLarge } from './journal-store.ts'
import type { StoreAppended, StoreInfo, StoreLimits, StreamStore } from './stream-store.ts'

/**
 * A stream kept by JetStream (nats-server's Raft-replicated streams), spoken to over core NATS
 * requests so @nats-io/jetstream stays out of the bundle; this module is imported only when a
 * stream uses it (store-factory.ts).
 *
 * Layout: the edgebus stream `s` is the JetStream stream `EB_s` capturing `eb.s.s.>`; a record
 * published to MQTT topic t is stored on `eb.s.s.<topicToSubject(t)>` (one token per level), with Nats-Msg-Id
 * from its msgId (JetStream's duplicate window does the dedupe) and its timestamp and MQTT 5
 * properties in headers. The prefix keeps the stream apart from the subjects the cluster routes
 * client traffic on: the stream stores what edgebus appends, once, and nothing else.
 *
 * Durability: `append` resolves on the publish ack, which JetStream sends once the message is
 * stored on a quorum of `replicas` (R3: 2 of 3). It does not wait for an fsync: nats-server 2.9.10
 * syncs its files on its own timer (2 minutes) and has no setting for it (`sync_interval` came in
 * 2.10 and 2.9.10 refuses the key; a stream config has no fsync field in any version), so the
 * stream's `fsync` cannot be passed through: on R1 an acknowledged message survives the death of
 * the edgebus process and of nats-server, not a power cut of its machine; on R3/R5 it survives
 * the loss of a minority of nodes. `durability` says so.
 */

/** The few calls of a NATS connection the store needs; the cluster layer hands in its own. */
export type StoreNatsConnection = Pick<NatsConnection, 'request' | 'publish' | 'subscribe'>

export interface JetStreamStoreOptions {
  /** The edgebus stream name (1..64 of A-Z a-z 0-9 _ -). */
  name: string
  limits: StoreLimits
  /** Copies JetStream keeps: 1, 3 or 5. */
  replicas: 1 | 3 | 5
  /** How long to wait for an API answer or a publish ack, ms. Default 5000. */
  timeoutMs?: number
}

interface ApiError { code?: number; err_code?: number; description?: string }
interface StreamState { messages: number; bytes: number; first_seq: number; last_seq: number; first_ts: string; last_ts: string }
interface StoredMessage { subject: string; seq: number; hdrs?: string; data?: string; time: string }

const NS = 1_000_000
const TIME_HEADER = 'Eb-Time'
const PROPS_HEADER = 'Eb-Props'
/** The msgId kept (without dedupe) when the stream has no duplicate window. */
const MSG_ID_HEADER = 'Eb-Msg-Id'

interface PendingAck { resolve: (a: StoreAppended) => void; reject: (e: Error) => void; timestamp: number; since: number }

export class JetStreamStore implements StreamStore {
  readonly kind = 'jetstream' as const
  readonly stream: string
  readonly replicas: 1 | 3 | 5
  readonly durability: string
  readonly #nc: StoreNatsConnection
  readonly #prefix: string
  readonly #limits: StoreLimits
  readonly #timeout: number
  readonly #inbox = `${createInbox()}.`
  readonly #pending = new Map<string, PendingAck>()
  readonly #sweep: NodeJS.Timeout
  readonly #sub: { unsubscribe(): void }
  #token = 0
  #closed = false

  private constructor(nc: StoreNatsConnection, o: JetStreamStoreOptions) {
    this.#nc = nc
    this.stream = `EB_${o.name}`
    this.replicas = o.replicas
    this.#prefix = `eb.s.${o.name}.`
    this.#limits = o.limits
    this.#timeout = o.timeoutMs ?? 5000
    this.durability = `publish ack after ${o.replicas === 1 ? 'the one copy' : `a quorum of ${o.replicas} copies`} is written (not fsynced: nats-server syncs every 2 min)`
    this.#sub = nc.subscribe(`${this.#inbox}*`, { callback: (err, m) => { if (err === null) this.#ack(m) } })
    // an ack that never comes (a leader lost mid-publish) fails its append instead of hanging
    this.#sweep = setInterval(() => this.#expire(), Math.min(1000, this.#timeout))
    this.#sweep.unref()
  }

  /** Creates the JetStream stream (or updates it to these limits) and returns its store. */
  static async open(nc: StoreNatsConnection, o: JetStreamStoreOptions): Promise<JetStreamStore> {
    if (![1, 3, 5].includes(o.replicas)) throw new EdgebusError('ESTREAM_INVALID', `replicas must be 1, 3 or 5, not ${String(o.replicas)}`, { key: 'replicas', value: o.replicas })
    const s = new JetStreamStore(nc, o)
    try {
      await s.#ensureStream()
    } catch (err) {
      await s.close()
      throw err
    }
    return s
  }

  async #ensureStream(): Promise<void> {
    const l = this.#limits
    const config = {
      name: this.stream,
      subjects: [`${this.#prefix}>`],
      retention: 'limits',
      storage: 'file',
      num_replicas: this.replicas,
      discard: l.discard,
      max_msgs: l.maxMsgs > 0 ? l.maxMsgs : -1,
      max_bytes: l.maxBytes > 0 ? l.maxBytes : -1,
      max_age: l.maxAge * NS,
      max_msgs_per_subject: l.maxMsgsPerSubject > 0 ? l.maxMsgsPerSubject : -1,
      // maxMsgSize is of the payload and checked before the publish: JetStream's counts our headers too
      max_msg_size: -1,
      // JetStream's least is 100 ms (0 would mean its default, 2 min; with no window edgebus sends no
      // Nats-Msg-Id) and its most is max_age (a message cannot be remembered longer than it is kept)
      duplicate_window: Math.max(100, l.maxAge > 0 ? Math.min(l.duplicateWindow, l.maxAge) : l.duplicateWindow) * NS,
    }
    const created = await this.#api<{ config: unknown }>(`$JS.API.STREAM.CREATE.${this.stream}`, config, false)
    if (created.error === undefined) return
    // 10058: the stream exists with another configuration (limits changed): update it in place
    if (created.error.err_code !== 10058) throw apiError('create the stream', this.stream, created.error)
    const updated = await this.#api(`$JS.API.STREAM.UPDATE.${this.stream}`, config, false)
    if (updated.error !== undefined) throw apiError('update the stream', this.stream, updated.error)
  }

  append(rec: RecordInput): Promise<StoreAppended> {
    if (this.#closed) return Promise.reject(new EdgebusError('EJOURNAL_CLOSED', `stream store ${this.stream} is closed`, { stream: this.stream }))
    const max = this.#limits.maxMsgSize
    if (max > 0 && rec.payload.length > max) return Promise.reject(tooLarge(rec.payload.length, max))
    const subject = this.#prefix + topicToSubject(rec.subject)
    const timestamp = rec.timestamp ?? Date.now()
    const h = natsHeaders()
    h.set(TIME_HEADER, String(timestamp))
    if (rec.msgId != null) h.set(this.#limits.duplicateWindow > 0 ? 'Nats-Msg-Id' : MSG_ID_HEADER, rec.msgId)
    if (rec.headers != null) h.set(PROPS_HEADER, encodeProps(rec.headers))
    const token = (this.#token++).toString(36)
    return new Promise((resolve, reject) => {
      this.#pending.set(token, { resolve, reject, timestamp, since: Date.now() })
      try {
        this.#nc.publish(subject, rec.payload, { reply: this.#inbox + token, headers: h })
      } catch (err) {
        this.#pending.delete(token)
        reject(/payload/i.test((err as Error).message) ? tooLarge(rec.payload.length, rec.payload.length - 1) : unavailable('publish', this.stream, (err as Error).message))
      }
    })
  }

  /** A publish ack: {stream, seq, duplicate?} or {error}; 503 (no responders): the stream is gone or has no leader. */
  #ack(m: Msg): void {
    const token = m.subject.slice(this.#inbox.length)
    const p = this.#pending.get(token)
    if (p === undefined) return
    this.#pending.delete(token)
    if (m.headers?.code === 503) { p.reject(unavailable('store', this.stream, 'no JetStream stream answered (no leader?)')); return }
    let a: { seq?: number; duplicate?: boolean; error?: ApiError }
    try {
      a = m.json()
    } catch {
      p.reject(unavailable('store', this.stream, `answer "${m.string().slice(0, 80)}" is not a publish ack`))
      return
    }
    if (a.error !== undefined) p.reject(appendRefusal(this.stream, a.error))
    else p.resolve({ seq: a.seq as number, timestamp: p.timestamp, duplicate: a.duplicate === true })
  }

  #expire(): void {
    const old = Date.now() - this.#timeout
    for (const [token, p] of this.#pending) {
      if (p.since > old) continue
      this.#pending.delete(token)
      p.reject(unavailable('store', this.stream, `no publish ack within ${this.#timeout} ms`))
    }
  }

  async read(seq: number): Promise<StoredRecord | null> {
    return this.#get({ seq })
  }

  async next(fromSeq: number, matches?: (subject: string) => boolean): Promise<StoredRecord | null> {
    let seq = Math.max(1, fromSeq)
    for (;;) {
      const r = await this.#get({ seq, next_by_subj: `${this.#prefix}>` })
      if (r === null || matches === undefined || matches(r.subject)) return r
      seq = r.seq + 1
    }
  }

  async #get(req: { seq: number; next_by_subj?: string }): Promise<StoredRecord | null> {
    const a = await this.#api<{ message: StoredMessage }>(`$JS.API.STREAM.MSG.GET.${this.stream}`, req)
    if (a.error !== undefined) {
      if (a.error.err_code === 10037) return null // no message found
      throw apiError('read', this.stream, a.error)
    }
    return this.#record(a.message)
  }

  #record(m: StoredMessage): StoredRecord {
    return this.#recordOf(m.subject, m.seq, parseHeaders(m.hdrs), Buffer.from(m.data ?? '', 'base64'), m.time)
  }

  #recordOf(subject: string, seq: number, hdrs: Map<string, string>, payload: Buffer, time: string): StoredRecord {
    const t = Number(hdrs.get(TIME_HEADER))
    const props = hdrs.get(PROPS_HEADER)
    return new StoredRecord(seq, Number.isSafeInteger(t) ? t : Date.parse(time), subjectToTopic(subject.slice(this.#prefix.length)), payload,
      props === undefined ? null : decodeProps(props), hdrs.get('Nats-Msg-Id') ?? hdrs.get(MSG_ID_HEADER) ?? null, payload.length)
  }

  /**
   * An ordered push consumer (ephemeral, in memory, no acks, flow control): the server sends the
   * records from `fromSeq` without a request each; a flow-control request is answered once the
   * reader has taken what came before it, so the server never runs ahead of the reader by more than
   * its window. Ends at the last sequence stored when called (or the last live one).
   */
  async *iterate(fromSeq: number): AsyncGenerator<StoredRecord, void, undefined> {
    const end = (await this.#state()).last_seq
    // nothing live from there: the consumer would send nothing, not even an end
    if (end < Math.max(1, fromSeq) || (await this.next(fromSeq)) === null) return
    const inbox = createInbox()
    const queue: Msg[] = []
    let wake: (() => void) | null = null
    const sub = this.#nc.subscribe(inbox, { callback: (err, m) => { if (err === null) { queue.push(m); wake?.() } } })
    let consumer = ''
    let delivered = 0
    try {
      const a = await this.#api<{ name: string }>(`$JS.API.CONSUMER.CREATE.${this.stream}`, {
        stream_name: this.stream,
        config: { deliver_subject: inbox, deliver_policy: 'by_start_sequence', opt_start_seq: Math.max(1, fromSeq), ack_policy: 'none', flow_control: true, idle_heartbeat: 5000 * NS, mem_storage: true, num_replicas: 1, inactive_threshold: 30_000 * NS },
      })
      if (a.error !== undefined) throw apiError('replay', this.stream, a.error)
      consumer = a.name
      for (;;) {
        const m = queue.shift()
        if (m === undefined) {
          await new Promise<void>((r) => { wake = r })
          wake = null
          continue
        }
        if (m.headers?.code === 100) { // a flow-control request (it has a reply) or an idle heartbeat (none)
          if (m.reply) this.#nc.publish(m.reply, new Uint8Array(0))
          continue
        }
        // the reply subject is $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>
        const tokens = m.reply?.split('.') ?? []
        const seq = Number(tokens[5])
        const pending = Number(tokens[8])
        // a gap in the consumer's own numbering: the connection dropped some (slow reader); never skip silently
        if (Number(tokens[6]) !== ++delivered) throw unavailable('replay', this.stream, `records before ${seq} were lost in transit; replay again from the last one read`)
        const hdrs = new Map<string, string>()
        for (const k of m.headers?.keys() ?? []) hdrs.set(k, m.headers!.get(k))
        yield this.#recordOf(m.subject, seq, hdrs, Buffer.from(m.data), '')
        if (seq >= end || pending === 0) return
      }
    } finally {
      sub.unsubscribe()
      if (consumer !== '') void this.#api(`$JS.API.CONSUMER.DELETE.${this.stream}.${consumer}`, {}, false).catch(() => {})
    }
  }

  async seqForTime(ms: number): Promise<number> {
    const st = await this.#state()
    if (st.messages === 0) return st.last_seq + 1
    // timestamps never go backwards within one appender: binary search over the live records
    let lo = st.first_seq
    let hi = st.last_seq + 1
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2)
      const r = await this.next(mid)
      if (r === null || r.timestamp >= ms) hi = mid
      else lo = r.seq + 1
    }
    const r = await this.next(lo)
    return r === null ? st.last_seq + 1 : r.seq
  }

  async purge(): Promise<number> {
    const a = await this.#api<{ purged: number }>(`$JS.API.STREAM.PURGE.${this.stream}`, {})
    if (a.error !== undefined) throw apiError('purge', this.stream, a.error)
    return a.purged
  }

  async info(): Promise<StoreInfo> {
    const st = await this.#state()
    const time = (s: string): number => (s.startsWith('0001-') ? 0 : Date.parse(s))
    return {
      kind: 'jetstream',
      messages: st.messages,
      bytes: st.bytes,
      firstSeq: st.messages === 0 ? st.last_seq + 1 : st.first_seq,
      lastSeq: st.last_seq,
      firstTime: st.messages === 0 ? 0 : time(st.first_ts),
      lastTime: time(st.last_ts),
      replicas: this.replicas,
    }
  }

  async #state(): Promise<StreamState> {
    const a = await this.#api<{ state: StreamState }>(`$JS.API.STREAM.INFO.${this.stream}`, {})
    if (a.error !== undefined) throw apiError('read the state', this.stream, a.error)
    return a.state
  }

  /** One JetStream API request; its JSON answer (an `error` member when refused). */
  async #api<T>(subject: string, body: unknown, mustBeOpen = true): Promise<T & { error?: undefined } | { error: ApiError }> {
    if (mustBeOpen && this.#closed) throw new EdgebusError('EJOURNAL_CLOSED', `stream store ${this.stream} is closed`, { stream: this.stream })
    let m: Msg
    try {
      m = await this.#nc.request(subject, JSON.stringify(body), { timeout: this.#timeout })
    } catch (err) {
      throw unavailable(subject.split('.').slice(2, 4).join(' ').toLowerCase(), this.stream, (err as Error).message)
    }
    return m.json()
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#sweep)
    this.#sub.unsubscribe()
    const err = new EdgebusError('EJOURNAL_CLOSED', `stream store ${this.stream} is closed`, { stream: this.stream })
    for (const p of this.#pending.values()) p.reject(err)
    this.#pending.clear()
  }
}

/** JetStream's refusal of a publish, as the same typed refusals the journal gives. */
function appendRefusal(stream: string, e: ApiError): EdgebusError {
  const d = e.description ?? ''
  // the journal's words and detail (retention.ts refuseAppend, journal-store.ts tooLarge)
  if (/maximum messages exceeded/i.test(d)) return new EdgebusError('ESTREAM_LIMIT', 'stream is full (maxMsgs, discard new)', { stream, limit: 'maxMsgs' })
  if (/maximum bytes exceeded/i.test(d)) return new EdgebusError('ESTREAM_LIMIT', 'stream is full (maxBytes, discard new)', { stream, limit: 'maxBytes' })
  if (e.err_code === 10054 || /message size exceeds/i.test(d)) return new EdgebusError('ESTREAM_LIMIT', `stream ${stream}: ${d}`, { stream, limit: 'maxMsgSize', reason: 'maxMsgSize' })
  // 10023 insufficient resources, 10047 storage resources exceeded: JetStream's disk is full
  if (e.err_code === 10023 || e.err_code === 10047 || /insufficient|resources exceeded/i.test(d)) return new EdgebusError('ESTORE_FULL', `stream ${stream}: ${d}`, { stream, errCode: e.err_code })
  return apiError('store', stream, e)
}

function apiError(op: string, stream: string, e: ApiError): EdgebusError {
  return new EdgebusError('ESTORE_UNAVAILABLE', `JetStream could not ${op} ${stream}: ${e.description ?? 'no reason'} (${e.err_code ?? e.code ?? '?'})`, { stream, op, errCode: e.err_code })
}

function unavailable(op: string, stream: string, why: string): EdgebusError {
  return new EdgebusError('ESTORE_UNAVAILABLE', `JetStream did not ${op} ${stream}: ${why}`, { stream, op })
}

/**
 * An MQTT topic as JetStream subject tokens, one per level: letters, digits, '_' and '-' as they
 * are, any other byte as %XX and an empty level as '%', so every topic (spaces, dots, '>' in a
 * level) has a legal subject of its own and maxMsgsPerSubject counts per topic.
 */
export function topicToSubject(topic: string): string {
  return topic.split('/').map((level) => (level === '' ? '%' : encodeURIComponent(level).replace(/[.!~*'()]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))).join('.')
}

/** topicToSubject undone; a token it did not write (a message published there by hand) is kept as it is. */
export function subjectToTopic(subject: string): string {
  return subject.split('.').map((t) => {
    if (t === '%') return ''
    try {
      return decodeURIComponent(t)
    } catch {
      return t
    }
  }).join('/')
}

/** MQTT 5 properties as one header value: JSON, correlation data in base64. */
function encodeProps(h: RecordHeaders): string {
  return JSON.stringify({ ...h, correlationData: h.correlationData === undefined ? undefined : Buffer.from(h.correlationData).toString('base64') })
}

function decodeProps(s: string): RecordHeaders | null {
  try {
    const o = JSON.parse(s) as RecordHeaders & { correlationData?: string }
    return { ...o, correlationData: o.correlationData === undefined ? undefined : Buffer.from(o.correlationData, 'base64') } as RecordHeaders
  } catch {
    return null
  }
}

/** The `NATS/1.0` header block of a stored message (base64), by name (first value). */
function parseHeaders(b64: string | undefined): Map<string, string> {
  const out = new Map<string, string>()
  if (b64 === undefined) return out
  const lines = Buffer.from(b64, 'base64').toString('utf8').split('\r\n')
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':')
    if (i <= 0) continue
    const k = line.slice(0, i).trim()
    if (!out.has(k)) out.set(k, line.slice(i + 1).trim())
  }
  return out
}

