/**
 * edgebus-client: the browser (and Node) client of the JSON-over-WebSocket protocol
 * (docs/ws-protocol.md). Connects with automatic reconnect and resubscribe; subscribe, publish,
 * and replay a stream over HTTP. Served by the server at /client.js; no dependencies.
 */

export interface Message {
  subject: string
  /** Text payload (absent when the payload is not UTF-8: see payloadBase64). */
  payload?: string
  payloadBase64?: string
  retain: boolean
  qos: number
}

export interface StoredMessage extends Message {
  seq: number
  time: string
}

export interface ClientOptions {
  /** A WebSocket class: the browser's by default; in Node pass `ws`'s. */
  WebSocket?: new (url: string) => WebSocket
  /** Reconnect delays in ms: from `min`, doubling up to `max`. */
  reconnect?: { min: number; max: number }
  /** An access token (servers with users): sent on connecting and with replay requests. */
  token?: string
}

type Handler = (msg: Message) => void
type Pending = { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }

interface Sub {
  filter: string
  handler: Handler
  /** The server's id for this subscription on the current connection. */
  id: string | null
}

export class EdgebusClient {
  readonly url: string
  #ws: WebSocket | null = null
  #opts: ClientOptions
  #subs = new Set<Sub>()
  #byId = new Map<string, Sub>()
  #pending = new Map<string, Pending>()
  #queue: string[] = []
  #n = 0
  #delay: number
  #closed = false
  /** Called on every (re)connection and loss of it. */
  onopen: (() => void) | null = null
  onclose: (() => void) | null = null

  constructor(url: string, opts: ClientOptions = {}) {
    this.url = url
    this.#opts = opts
    this.#delay = opts.reconnect?.min ?? 250
    this.#open()
  }

  #open(): void {
    const WS = this.#opts.WebSocket ?? globalThis.WebSocket
    const token = this.#opts.token
    const ws = new WS(token === undefined ? this.url : `${this.url}${this.url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`)
    this.#ws = ws
    ws.onopen = () => {
      this.#delay = this.#opts.reconnect?.min ?? 250
      for (const sub of this.#subs) this.#subscribeOn(sub) // resubscribe after a reconnect
      for (const frame of this.#queue.splice(0)) ws.send(frame)
      this.onopen?.()
    }
    ws.onmessage = (ev: MessageEvent) => this.#frame(JSON.parse(String(ev.data)) as Record<string, unknown>)
    ws.onclose = () => {
      this.#ws = null
      for (const sub of this.#subs) sub.id = null
      this.#byId.clear()
      for (const p of this.#pending.values()) p.reject(new Error('connection lost'))
      this.#pending.clear()
      this.onclose?.()
      if (this.#closed) return
      setTimeout(() => this.#open(), this.#delay)
      this.#delay = Math.min(this.#delay * 2, this.#opts.reconnect?.max ?? 10_000)
    }
    ws.onerror = () => {}
  }

  #frame(f: Record<string, unknown>): void {
    if (f.op === 'msg') {
      const sub = this.#byId.get(String(f.sub))
      if (sub) sub.handler({ subject: String(f.subject), payload: f.payload as string | undefined, payloadBase64: f.payload_base64 as string | undefined, retain: f.retain === true, qos: Number(f.qos) })
      return
    }
    const p = f.id === undefined ? undefined : this.#pending.get(String(f.id))
    if (!p) return
    this.#pending.delete(String(f.id))
    if (f.op === 'error') p.reject(Object.assign(new Error(String(f.message)), { code: f.code }))
    else p.resolve(f)
  }

  #request(req: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = String(++this.#n)
    const frame = JSON.stringify({ ...req, id })
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      if (this.#ws && this.#ws.readyState === 1) this.#ws.send(frame)
      else this.#queue.push(frame)
    })
  }

  #subscribeOn(sub: Sub): void {
    this.#request({ op: 'sub', filter: sub.filter }).then((ok) => {
      if (!this.#subs.has(sub)) return
      sub.id = String(ok.sub)
      this.#byId.set(sub.id, sub)
    }, () => {})
  }

  /** Subscribes to a filter in either syntax; returns the function that unsubscribes. */
  subscribe(filter: string, handler: Handler): () => void {
    const sub: Sub = { filter, handler, id: null }
    this.#subs.add(sub)
    if (this.#ws && this.#ws.readyState === 1) this.#subscribeOn(sub)
    return () => {
      this.#subs.delete(sub)
      if (sub.id !== null) {
        this.#byId.delete(sub.id)
        this.#request({ op: 'unsub', sub: sub.id }).catch(() => {})
      }
    }
  }

  /** Publishes; resolves once every stream that captures the subject holds the message. */
  async publish(subject: string, payload: string, opts: { qos?: 0 | 1 | 2; retain?: boolean } = {}): Promise<Array<{ stream: string; seq: number }>> {
    const ok = await this.#request({ op: 'pub', subject, payload, qos: opts.qos ?? 0, retain: opts.retain ?? false })
    return ok.stored as Array<{ stream: string; seq: number }>
  }

  /** A stream's stored messages over HTTP (fromSeq, fromTime, last, filter, limit). */
  async replay(stream: string, q: { fromSeq?: number; fromTime?: string; last?: number; filter?: string; limit?: number } = {}): Promise<StoredMessage[]> {
    const params = new URLSearchParams()
    if (q.fromSeq !== undefined) params.set('from_seq', String(q.fromSeq))
    if (q.fromTime !== undefined) params.set('from_time', q.fromTime)
    if (q.last !== undefined) params.set('last', String(q.last))
    if (q.filter !== undefined) params.set('filter', q.filter)
    if (q.limit !== undefined) params.set('limit', String(q.limit))
    const base = this.url.replace(/^ws/, 'http').replace(/\/ws$/, '')
    const token = this.#opts.token
    const res = await fetch(`${base}/api/streams/${encodeURIComponent(stream)}/messages?${params}`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } })
    const text = await res.text()
    if (!res.ok) throw new Error(text)
    return text.split('\n').filter(Boolean).map((l) => {
      const r = JSON.parse(l) as Record<string, unknown>
      return { seq: Number(r.seq), time: String(r.time), subject: String(r.subject), payload: r.payload as string | undefined, payloadBase64: r.payload_base64 as string | undefined, retain: false, qos: 0 }
    })
  }

  /** Takes up to `batch` messages of a stream's durable consumer, waiting up to `wait` ms for the first. */
  async next(stream: string, consumer: string, opts: { batch?: number; wait?: number } = {}): Promise<Array<StoredMessage & { deliveryCount: number }>> {
    const ok = await this.#request({ op: 'next', stream, consumer, batch: opts.batch ?? 1, wait: opts.wait ?? 0 })
    return (ok.messages as Array<Record<string, unknown>>).map((m) => ({
      seq: Number(m.seq), time: String(m.time), subject: String(m.subject), payload: m.payload as string | undefined,
      payloadBase64: m.payload_base64 as string | undefined, retain: false, qos: 1, deliveryCount: Number(m.deliveryCount),
    }))
  }

  /** Acknowledges (or nak's, or terminates) messages taken with next(). */
  async ack(stream: string, consumer: string, seqs: { ack?: number[]; nak?: number[]; term?: number[] }): Promise<void> {
    await this.#request({ op: 'ack', stream, consumer, ack: seqs.ack ?? [], nak: seqs.nak ?? [], term: seqs.term ?? [] })
  }

  close(): void {
    this.#closed = true
    this.#ws?.close()
  }
}

/** Connects to an edgebus server's /ws endpoint. */
export function connect(url: string, opts?: ClientOptions): EdgebusClient {
  return new EdgebusClient(url, opts)
}
