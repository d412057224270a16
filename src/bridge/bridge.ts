import type { Logger } from '../core/log.ts'
import { LogLimiter } from '../core/log-limiter.ts'
import { TokenBucket } from '../limits/token-bucket.ts'
import type { Consumer, Delivery } from '../stream/consumer.ts'
import type { StreamConsumers } from '../stream/consumer-manager.ts'
import type { RecordHeaders } from '../stream/record.ts'
import type { Stream } from '../stream/stream.ts'
import { RateMeter, reconnectDelay } from './backoff.ts'
import { outboxName, type BridgeDefinition } from './bridge-config.ts'
import { BRIDGE_ORIGIN_PROPERTY, MSG_ID_PROPERTY, type IncomingMessage, type RemoteConnector, type RemoteLink, type RemoteOptions, type SendResult } from './remote.ts'

/** Publishes a message locally through the broker's one publish path (as the server). */
export type LocalPublish = (topic: string, payload: Buffer, qos: 0 | 1, userProperties: Record<string, string>) => Promise<unknown>

export type BridgeState = 'connecting' | 'connected' | 'down'

export interface BridgeInfo {
  name: string
  kind: string
  urls: string[]
  state: BridgeState
  /** The URL connected to, or being tried. */
  url: string | null
  /** Since when the state is what it is (ISO time). */
  since: string
  /** Since when no link is up (ISO time), or null while connected. */
  downSince: string | null
  lastError: string | null
  outbox: { stream: string; consumer: string }
  backlog: {
    /** Selected by the out rules and not yet acknowledged by the remote (in flight included). */
    messages: number
    /** Their bytes (estimated from the outbox's mean message size when the outbox is shared). */
    bytes: number
    /** Age of the oldest message not yet acknowledged, seconds (0 when none). */
    oldestSeconds: number
  }
  inFlight: number
  window: number
  sent: number
  acked: number
  /** Of those, acknowledged as duplicates: the remote had them already (JetStream's duplicate window caught a resend). */
  remoteDuplicates: number
  refused: number
  deadLettered: number
  /** Messages that came in through this bridge and were not sent back to it. */
  loopsPrevented: number
  /** Messages whose Message Expiry Interval ran out in the outbox: not sent. */
  expired: number
  /** Messages received for `in` rules and published locally. */
  received: number
  /** The `in` rules' subscriptions are in place on the current link (the remote acknowledged them). */
  inSubscribed: boolean
  reconnects: number
  watchdogReconnects: number
  /** Per second, over the last second. */
  sendRate: number
  ackRate: number
  lastAck: string | null
}

interface Outbox {
  consumer: Consumer
  stream: Stream
}

/** Messages one pump sends before it yields to the event loop. */
const PUMP_TURN = 1024

/** The client name the bridge takes its outbox consumer's messages as (it is the consumer's only client). */
const CLIENT = '$bridge'

/**
 * One bridge: an outbox (a durable consumer of a stream) drained to a remote over one link at a
 * time. A message leaves the outbox only when the remote acknowledged it (consumer.ack on the
 * PUBACK or publish ack), so an outage or a restart loses nothing: what was in flight is given
 * back to the consumer (release) and sent again first, in stream order. A refusal is sent again
 * after a delay and dead-lettered after maxDeliver refusals, while the rest flows.
 */
export class Bridge {
  readonly name: string
  readonly #def: BridgeDefinition
  /** The outbox: its stream and the consumer that drains it; null for a bridge with only `in` rules. */
  readonly #outbox: Outbox | null
  readonly #publish: LocalPublish
  readonly #log: Logger
  readonly #limited: LogLimiter
  readonly #connect: RemoteConnector
  readonly #remote: RemoteOptions
  readonly #msgBucket: TokenBucket | null
  readonly #byteBucket: TokenBucket | null
  readonly #unwatch: () => void

  #link: RemoteLink | null = null
  #closing = false
  #running: Promise<void> = Promise.resolve()
  #wake: (() => void) | null = null
  #state: BridgeState = 'connecting'
  #url: string | null = null
  #since = Date.now()
  #downSince: number | null = Date.now()
  #lastError: string | null = null
  #everConnected = false
  #inSubscribed = false

  /** seq -> when it was sent, on the current link. */
  readonly #inFlight = new Map<number, number>()
  /** Taken from the consumer, waiting for the rate limit. */
  #held: Delivery[] = []
  #heldAt = 0
  #rateTimer: NodeJS.Timeout | null = null
  #pumping = false
  #pumpScheduled = false
  readonly #refusals = new Map<number, number>()
  #lastProgress = 0
  readonly #timer: NodeJS.Timeout

  #sent = 0
  #acked = 0
  #remoteDuplicates = 0
  #refused = 0
  #deadLettered = 0
  #loops = 0
  #expired = 0
  #received = 0
  #reconnects = 0
  #watchdog = 0
  #lastAck = 0
  readonly #sendRate = new RateMeter(Date.now())
  readonly #ackRate = new RateMeter(Date.now())

  constructor(def: BridgeDefinition, deps: { consumers: StreamConsumers | null; stream: Stream | null; publish: LocalPublish; log: Logger; connect: RemoteConnector; remote: RemoteOptions }) {
    this.name = def.name
    this.#def = def
    this.#publish = deps.publish
    this.#log = deps.log
    this.#limited = new LogLimiter(deps.log)
    this.#connect = deps.connect
    this.#remote = deps.remote
    const now = Date.now()
    this.#msgBucket = def.rateMsgs > 0 ? new TokenBucket(def.rateMsgs, Math.max(1, Math.ceil(def.rateMsgs / 10)), now) : null
    this.#byteBucket = def.rateBytes > 0 ? new TokenBucket(def.rateBytes, Math.max(65_536, Math.ceil(def.rateBytes / 10)), now) : null
    if (deps.consumers !== null && deps.stream !== null) {
      const consumer = deps.consumers.get(outboxName(def.name)).consumer
      this.#outbox = { consumer, stream: deps.stream }
      // what was out when the server stopped is sent again first, now rather than after its ack deadline
      consumer.release(null)
      this.#unwatch = deps.consumers.watch(outboxName(def.name), () => this.#pump())
    } else {
      this.#outbox = null
      this.#unwatch = () => {}
    }
    this.#timer = setInterval(() => this.#tick(), Math.min(1000, Math.max(50, def.ackTimeout / 4)))
    this.#timer.unref()
  }

  start(): void {
    this.#running = this.#run().catch((err: unknown) => {
      this.#log.error({ bridge: this.name, err: (err as Error).message }, 'bridge stopped by an error')
    })
  }

  // --- connecting ------------------------------------------------------------------------------

  async #run(): Promise<void> {
    const urls = this.#def.urls
    let round = 0
    while (!this.#closing) {
      let served = false
      for (const url of urls) {
        if (this.#closing) return
        this.#setState('connecting', url)
        let link: RemoteLink
        try {
          link = await this.#connect(url, this.#remote)
        } catch (err) {
          this.#lastError = `${url}: ${(err as Error).message}`
          this.#limited.warn(`bridge-connect:${this.name}:${url}`, { bridge: this.name, url, err: (err as Error).message }, 'bridge could not connect to the remote')
          continue
        }
        if (this.#closing) {
          await link.close()
          return
        }
        await this.#serve(link)
        served = true
        break // after a disconnect the first URL is tried first again
      }
      round = served ? 1 : round + 1
      if (this.#closing) return
      if (!served) this.#setState('down', null) // between rounds: down, until the next attempt
      await this.#sleep(reconnectDelay(round, this.#def.backoffMin, this.#def.backoffMax))
    }
  }

  #serve(link: RemoteLink): Promise<void> {
    return new Promise((resolve) => {
      this.#link = link
      if (this.#everConnected) this.#reconnects++
      this.#everConnected = true
      this.#downSince = null
      this.#setState('connected', link.url)
      this.#log.info({ bridge: this.name, url: link.url }, 'bridge connected')
      this.#lastProgress = Date.now()
      link.onClose((why) => {
        this.#lost(link, why)
        resolve()
      })
      if (this.#def.in.length > 0) {
        const qos = this.#def.in.some((r) => r.qos === 1) ? 1 : 0
        link.subscribe(this.#def.in.map((r) => ({ filter: r.rewrite.filter, stream: r.stream })), qos, (m) => this.#incoming(m)).then(() => {
          if (this.#link === link) this.#inSubscribed = true
        }, (err: unknown) => {
          this.#lastError = `subscribe: ${(err as Error).message}`
          this.#log.error({ bridge: this.name, url: link.url, err: (err as Error).message }, 'bridge in rules not subscribed on the remote')
        })
      }
      this.#pump()
    })
  }

  #lost(link: RemoteLink, why: string): void {
    if (this.#link !== link) return
    this.#link = null
    this.#inSubscribed = false
    this.#inFlight.clear()
    this.#held = []
    this.#heldAt = 0
    if (this.#rateTimer !== null) clearTimeout(this.#rateTimer)
    this.#rateTimer = null
    // everything not acknowledged is deliverable again, first in line, in stream order
    const outbox = this.#outbox
    if (outbox !== null && !outbox.consumer.closed) outbox.consumer.release(CLIENT)
    this.#downSince = Date.now()
    this.#lastError = why
    this.#setState('down', null)
    if (!this.#closing) this.#limited.warn(`bridge-lost:${this.name}`, { bridge: this.name, url: link.url, reason: why }, 'bridge link lost')
  }

  #setState(state: BridgeState, url: string | null): void {
    if (state !== this.#state) this.#since = Date.now()
    this.#state = state
    this.#url = url
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.#wake = null; resolve() }, ms)
      this.#wake = () => { clearTimeout(t); this.#wake = null; resolve() }
    })
  }

  // --- draining --------------------------------------------------------------------------------

  #pump(): void {
    const link = this.#link
    const outbox = this.#outbox
    if (link === null || this.#pumping || outbox === null || outbox.consumer.closed) return
    this.#pumping = true
    try {
      const window = Math.min(this.#def.window, link.maxInFlight)
      // a turn sends PUMP_TURN at most, then yields: a big window must not hold up the clients' I/O
      let turn = PUMP_TURN
      while (this.#link === link && this.#rateTimer === null) {
        let room = Math.min(window - this.#inFlight.size, turn)
        if (room <= 0) {
          if (turn === 0) this.#pumpSoon()
          return
        }
        if (this.#heldAt === this.#held.length) {
          const got = outbox.consumer.next(Math.min(room, 256), CLIENT)
          if (got.length === 0) return
          // payloads are views of a read buffer: copied, as the client may write them later
          for (const d of got) d.payload = Buffer.from(d.payload)
          this.#held = got
          this.#heldAt = 0
        }
        const now = Date.now()
        while (this.#heldAt < this.#held.length && room > 0 && this.#link === link) {
          const d = this.#held[this.#heldAt++] as Delivery
          this.#send(link, outbox, d, now)
          room--
          turn--
          const wait = Math.max(this.#msgBucket?.take(now, 1) ?? 0, this.#byteBucket?.take(now, d.payload.length) ?? 0)
          if (wait > 0) {
            this.#rateTimer = setTimeout(() => { this.#rateTimer = null; this.#pump() }, wait)
            return
          }
        }
      }
    } finally {
      this.#pumping = false
    }
  }

  #send(link: RemoteLink, { consumer, stream }: Outbox, d: Delivery, now: number): void {
    // [issue 14] what came in through this bridge is not sent back to its remote
    if (userProperty(d.headers, BRIDGE_ORIGIN_PROPERTY) === this.name) {
      consumer.ack(d.seq)
      this.#loops++
      return
    }
    let topic: string | null = null
    let qos: 0 | 1 = 1
    for (const r of this.#def.out) {
      topic = r.rewrite.apply(d.subject)
      if (topic !== null) { qos = r.qos; break }
    }
    if (topic === null) {
      consumer.ack(d.seq) // a shared outbox's message no out rule selects
      return
    }
    // [MQTT-3.3.2-6] what is left of a Message Expiry Interval goes on; an expired message is not sent
    let headers = d.headers
    const expiry = headers?.messageExpiryInterval
    if (expiry !== undefined) {
      const left = expiry - Math.floor((now - d.timestamp) / 1000)
      if (left <= 0) {
        consumer.ack(d.seq)
        this.#expired++
        return
      }
      headers = { ...headers, messageExpiryInterval: left }
    }
    if (this.#inFlight.size === 0) this.#lastProgress = now
    this.#inFlight.set(d.seq, now)
    this.#sent++
    const msgId = userProperty(d.headers, MSG_ID_PROPERTY) ?? `${stream.name}:${d.seq}`
    link.send({ topic, payload: d.payload, msgId, headers, qos }).then(
      (r) => this.#result(link, consumer, d.seq, r),
      // lost, or not answered in time: the link is not trusted any more; closing it gives everything
      // in flight back to the outbox, resent in stream order on the next link
      () => { if (this.#link === link) link.close().catch(() => {}) },
    )
  }

  #result(link: RemoteLink, consumer: Consumer, seq: number, r: SendResult): void {
    if (this.#link !== link || !this.#inFlight.delete(seq) || consumer.closed) return
    const now = Date.now()
    this.#lastProgress = now
    if (r.ok) {
      consumer.ack(seq)
      this.#acked++
      if (r.duplicate === true) this.#remoteDuplicates++
      this.#lastAck = now
      if (this.#refusals.size > 0) this.#refusals.delete(seq)
    } else {
      this.#refused++
      const n = (this.#refusals.get(seq) ?? 0) + 1
      if (n >= this.#def.maxDeliver) {
        this.#refusals.delete(seq)
        consumer.term(seq) // to the dead-letter subject; the rest flows on
        this.#deadLettered++
        this.#limited.error(`bridge-dead-letter:${this.name}`, { bridge: this.name, seq, refusals: n, reason: r.reason, deadLetter: consumer.deadLetterSubject }, 'bridge dead-lettered a message the remote refused')
      } else {
        this.#refusals.set(seq, n)
        consumer.nak(seq, reconnectDelay(n, this.#def.backoffMin, this.#def.backoffMax))
        this.#limited.warn(`bridge-refused:${this.name}`, { bridge: this.name, seq, refusals: n, reason: r.reason }, 'the remote refused a message: it is sent again later')
      }
    }
    this.#pumpSoon()
  }

  /** Acks come in bursts (one socket read): the window is refilled once after the burst, in batches, not once per ack. */
  #pumpSoon(): void {
    if (this.#pumpScheduled) return
    this.#pumpScheduled = true
    setImmediate(() => {
      this.#pumpScheduled = false
      this.#pump()
    })
  }

  /** Every second or so: rates, and the watchdog (a link up that acknowledges nothing is reconnected). */
  #tick(): void {
    const now = Date.now()
    this.#sendRate.sample(this.#sent, now)
    this.#ackRate.sample(this.#acked, now)
    const link = this.#link
    if (link !== null && this.#inFlight.size > 0 && now - this.#lastProgress > this.#def.ackTimeout) {
      this.#watchdog++
      this.#log.warn({ bridge: this.name, url: link.url, inFlight: this.#inFlight.size, silentMs: now - this.#lastProgress }, 'bridge watchdog: the remote acknowledged nothing within ackTimeout; reconnecting')
      link.close().catch(() => {})
    }
  }

  // --- in rules --------------------------------------------------------------------------------

  /** Settles once the message is published locally (the remote's acknowledgement waits for it). */
  async #incoming(m: IncomingMessage): Promise<void> {
    for (const r of this.#def.in) {
      const local = r.rewrite.apply(m.topic)
      if (local === null) continue
      this.#received++
      // the origin mark keeps an overlapping out rule from sending it back (see #send)
      const props: Record<string, string> = { [BRIDGE_ORIGIN_PROPERTY]: this.name }
      if (m.msgId !== null) props[MSG_ID_PROPERTY] = m.msgId
      try {
        await this.#publish(local, m.payload, r.qos, props)
      } catch (err) {
        this.#limited.error(`bridge-in:${this.name}`, { bridge: this.name, topic: local, err: (err as Error).message }, 'bridge could not publish a message from the remote locally')
      }
      return
    }
  }

  // --- seen ------------------------------------------------------------------------------------

  info(): BridgeInfo {
    const now = Date.now()
    let messages = 0
    let bytes = 0
    let oldest = 0
    const outbox = this.#outbox
    if (outbox !== null && !outbox.consumer.closed) {
      const ci = outbox.consumer.info()
      messages = ci.lag + ci.pending
      const s = outbox.stream.info()
      bytes = s.messages > 0 ? Math.round((s.bytes / s.messages) * Math.min(messages, s.messages)) : 0
      if (messages > 0) {
        const first = outbox.stream.journal.read(Math.max(ci.ackFloor + 1, s.firstSeq))
        if (first !== null) oldest = Math.max(0, Math.round((now - first.timestamp) / 1000))
      }
    }
    return {
      name: this.name,
      kind: this.#def.kind,
      urls: this.#def.urls,
      state: this.#state,
      url: this.#url,
      since: new Date(this.#since).toISOString(),
      downSince: this.#downSince === null ? null : new Date(this.#downSince).toISOString(),
      lastError: this.#lastError,
      outbox: { stream: this.#def.out.length > 0 ? this.#def.outboxStream : '', consumer: this.#def.out.length > 0 ? outboxName(this.name) : '' },
      backlog: { messages, bytes, oldestSeconds: oldest },
      inFlight: this.#inFlight.size,
      window: this.#def.window,
      sent: this.#sent,
      acked: this.#acked,
      remoteDuplicates: this.#remoteDuplicates,
      refused: this.#refused,
      deadLettered: this.#deadLettered,
      loopsPrevented: this.#loops,
      expired: this.#expired,
      received: this.#received,
      inSubscribed: this.#inSubscribed,
      reconnects: this.#reconnects,
      watchdogReconnects: this.#watchdog,
      sendRate: this.#sendRate.rate,
      ackRate: this.#ackRate.rate,
      lastAck: this.#lastAck === 0 ? null : new Date(this.#lastAck).toISOString(),
    }
  }

  /** Closes the link; the outbox keeps what is not acknowledged. Call before the streams close. */
  async close(): Promise<void> {
    this.#closing = true
    clearInterval(this.#timer)
    if (this.#rateTimer !== null) clearTimeout(this.#rateTimer)
    this.#unwatch()
    this.#wake?.()
    const link = this.#link
    if (link !== null) await link.close()
    // a connect under way is not waited for long: the loop closes what it brings once it sees #closing
    await Promise.race([this.#running, new Promise((resolve) => setTimeout(resolve, 1000).unref())])
    this.#limited.flush()
  }
}

function userProperty(h: RecordHeaders | null, name: string): string | null {
  const up = h?.userProperties
  if (up === undefined) return null
  for (const [k, v] of up) if (k === name) return v
  return null
}
