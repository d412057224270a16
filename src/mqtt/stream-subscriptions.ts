import { EdgebusError, isEdgebusError } from '../core/errors.ts'
import type { Logger } from '../core/log.ts'
import { parseDuration } from '../config/units.ts'
import type { Listener } from '../router/router.ts'
import type { Consumer, Delivery } from '../stream/consumer.ts'
import { parseStartPosition, START_POSITIONS, type DeliverPolicy } from '../stream/consumer-config.ts'
import type { RecordHeaders } from '../stream/record.ts'
import type { StreamConsumers } from '../stream/consumer-manager.ts'
import type { StreamManager } from '../stream/stream-manager.ts'
import { validateTopicFilter } from '../subjects/topic.ts'
import { varintSize, writeVarint } from './codec.ts'

/**
 * Streams over plain MQTT (docs/streams-mqtt.md): reserved topic filters that any MQTT 3.1.1 or 5
 * client can subscribe to.
 *
 *   $stream/<stream>/<consumer>/#          a durable consumer: its messages, shared between every
 *                                          client subscribed to it; PUBACK is the ack
 *   $replay/<stream>/<start>/<filter>      an ephemeral replay of the stream from <start> (all, new,
 *                                          last, last-per-subject, seq=N, time=T, since=DURATION),
 *                                          then its live messages, as long as the subscription lasts
 *
 * A message arrives under the subscription's prefix followed by its subject
 * (`$stream/orders/billing/orders/eu/42`). MQTT 5 clients get stream, seq, time, deliveries and
 * pending as user properties, and may nak with a PUBACK reason code of 0x80 or more. Any client
 * can publish to `$stream/<stream>/<consumer>/$nak/<seq>` (payload: optional delay such as "5s"),
 * `.../$term/<seq>`, `.../$ack/<seq>` or `.../$wip/<seq>` (in progress: restart the ack wait).
 *
 * These subscriptions never reach aedes: they live as long as the connection (they are not part
 * of a persistent session), and a closed connection's unacknowledged messages go to the others.
 */

export const STREAM_PREFIX = '$stream/'
export const REPLAY_PREFIX = '$replay/'

/** QoS 1 messages one subscription may have out unacknowledged (also bounded by Receive Maximum and maxAckPending). */
const WINDOW = 256
/** Messages taken from a consumer per call. */
const BATCH = 64
/** Bytes written but not yet taken by the client over which delivery waits (for the socket to drain). */
const BACKLOG_BYTES = 256 * 1024

export interface DurableFilter {
  kind: 'durable'
  stream: string
  consumer: string
}
export interface ReplayFilter {
  kind: 'replay'
  stream: string
  deliver: DeliverPolicy
  /** The subject filter inside the stream (MQTT syntax); '#' = all. */
  filter: string
}
export type StreamFilter = DurableFilter | ReplayFilter

const NAME = /^[A-Za-z0-9_-]{1,64}$/

function invalid(filter: string, why: string): never {
  throw new EdgebusError('ESUBJECT_INVALID', `"${filter}": ${why}`, { filter })
}

/**
 * Reads a `$stream/...` or `$replay/...` filter; null for any other filter. Throws
 * ESUBJECT_INVALID saying what the filter should look like.
 */
export function parseStreamFilter(filter: string, now = Date.now()): StreamFilter | null {
  const durable = filter.startsWith(STREAM_PREFIX)
  if (!durable && !filter.startsWith(REPLAY_PREFIX)) return null
  const parts = filter.split('/')
  const stream = parts[1] ?? ''
  if (!NAME.test(stream)) invalid(filter, 'the second level must be a stream name (letters, digits, "_" or "-")')
  if (durable) {
    const consumer = parts[2] ?? ''
    if (!NAME.test(consumer) || parts.length !== 4 || parts[3] !== '#') {
      invalid(filter, 'subscribe to a durable consumer as $stream/<stream>/<consumer>/# (its filter is part of its definition)')
    }
    return { kind: 'durable', stream, consumer }
  }
  if (parts.length < 4) invalid(filter, 'replay a stream as $replay/<stream>/<start>/<filter>, e.g. $replay/orders/all/#')
  const inner = parts.slice(3).join('/')
  try {
    validateTopicFilter(inner)
  } catch (err) {
    invalid(filter, (err as Error).message)
  }
  const deliver = parseStartPosition(parts[2] as string, now)
  if (deliver === null) invalid(filter, `start "${parts[2]}" is not one of ${START_POSITIONS}`)
  return { kind: 'replay', stream, deliver, filter: inner }
}

/** What a connection offers the subscriptions bound to it (implemented by ClientConnection). */
export interface StreamSubscriber {
  readonly id: number
  readonly version: number
  readonly clientId: string
  /** A packet id for a QoS 1 delivery, from the same sequence aedes uses for this client. */
  nextPacketId(): number
  /** QoS 1/2 deliveries the client's Receive Maximum still allows. */
  readonly outRoom: number
  /** Bytes handed to the connection and not yet taken by the client. */
  readonly outBacklog: number
  /** The client's Maximum Packet Size (0 = none). */
  readonly maxOutgoingPacket: number
  sendStreamPublish(frame: Buffer, qos: 0 | 1): void
  /** The ACL's delivery check (counted and logged when it says no). */
  canReceive(topic: string): boolean
}

class Binding {
  inflight = 0
  closed = false
  /** Called to let go of the consumer (unwatch + release, or close an ephemeral one). */
  release: () => void = () => {}
  consumer: Consumer | null = null

  constructor(
    readonly filter: string,
    readonly prefix: Buffer,
    readonly qos: 0 | 1,
    readonly si: number,
    readonly stream: string,
  ) {}
}

/**
 * The `$stream/` and `$replay/` subscriptions of one connection, and the packet ids of their
 * QoS 1 deliveries (whose PUBACKs are ours, not aedes').
 */
export class ConnectionStreams {
  readonly #conn: StreamSubscriber
  readonly #streams: StreamManager
  readonly #log: Logger
  readonly #subs = new Map<string, Binding>()
  readonly #byPacket = new Map<number, { b: Binding; seq: number }>()
  readonly #client: string
  #pumping = false
  #pumpQueued = false

  constructor(conn: StreamSubscriber, streams: StreamManager, log: Logger) {
    this.#conn = conn
    this.#streams = streams
    this.#log = log
    this.#client = `mqtt:${conn.clientId}#${conn.id}`
  }

  get size(): number {
    return this.#subs.size
  }

  /**
   * A SUBSCRIBE entry for a stream filter: returns the SUBACK reason code. Errors are checked
   * here (the SUBACK says them); an ephemeral replay's consumer opens right after.
   */
  subscribe(filter: string, parsed: StreamFilter, qos: 0 | 1 | 2, si: number): number {
    const granted: 0 | 1 = qos === 0 ? 0 : 1
    let consumers: StreamConsumers
    try {
      consumers = this.#streams.consumers(parsed.stream)
      if (parsed.kind === 'durable') consumers.get(parsed.consumer)
    } catch (err) {
      this.#log.warn({ client: this.#conn.clientId, filter, code: (err as EdgebusError).code }, `stream subscription refused: ${(err as Error).message}${parsed.kind === 'durable' ? ' (create it with `edgebus consumer add`, the HTTP API or the config file)' : ''}`)
      return 0x80 // Unspecified error (MQTT 3.1.1: Failure)
    }
    this.#drop(filter) // [MQTT-3.8.4-3] a repeated SUBSCRIBE replaces the subscription
    const prefixText = filter.slice(0, filter.length - (parsed.kind === 'durable' ? 1 : parsed.filter.length))
    const b = new Binding(filter, Buffer.from(prefixText), granted, si, parsed.stream)
    this.#subs.set(filter, b)
    if (parsed.kind === 'durable') {
      const o = consumers.get(parsed.consumer)
      b.consumer = o.consumer
      const unwatch = consumers.watch(parsed.consumer, () => this.pump())
      const consumer = o.consumer
      b.release = () => {
        unwatch()
        if (!consumer.closed) consumer.release(this.#client)
      }
      queueMicrotask(() => this.pump())
    } else {
      const def = { deliver: parsed.deliver, filter: parsed.filter === '#' ? [] : [parsed.filter], ack: granted === 1 ? 'explicit' : 'none' }
      let closed = false
      let close: (() => Promise<void>) | null = null
      b.release = () => { closed = true; void close?.() }
      consumers.openEphemeral(def, () => this.pump()).then((eph) => {
        close = eph.close
        if (closed) { void eph.close(); return }
        b.consumer = eph.consumer
        this.pump()
      }, (err: unknown) => {
        this.#log.warn({ client: this.#conn.clientId, filter, code: (err as EdgebusError).code }, `replay could not start: ${(err as Error).message}`)
        this.#drop(filter)
      })
    }
    return granted
  }

  /** An UNSUBSCRIBE entry: whether it named one of these subscriptions. */
  unsubscribe(filter: string): boolean {
    return this.#drop(filter)
  }

  /** A PUBACK from the client: true when it acknowledged one of our deliveries (aedes must not see it). */
  onPuback(packetId: number, reasonCode: number): boolean {
    const hit = this.#byPacket.get(packetId)
    if (hit === undefined) return false
    this.#byPacket.delete(packetId)
    const b = hit.b
    b.inflight--
    const c = b.consumer
    if (!b.closed && c !== null && !c.closed) {
      // MQTT 5: a failure reason code is a nak (redelivered after its backoff) [MQTT-3.4.2.1]
      if (reasonCode >= 0x80) c.nak(hit.seq, c.definition.backoff[0] ?? 0)
      else c.ack(hit.seq)
    }
    this.pump()
    return true
  }

  /** Delivers what the consumers have, within each subscription's window and the connection's backlog bound. */
  pump(): void {
    if (this.#pumping) { this.#pumpQueued = true; return }
    this.#pumping = true
    try {
      do {
        this.#pumpQueued = false
        for (const b of this.#subs.values()) this.#pumpOne(b)
      } while (this.#pumpQueued)
    } finally {
      this.#pumping = false
    }
  }

  #pumpOne(b: Binding): void {
    const c = b.consumer
    if (b.closed || c === null) return
    const conn = this.#conn
    const v5 = conn.version === 5
    for (;;) {
      if (conn.outBacklog >= BACKLOG_BYTES) return // the connection calls pump() when it drains
      let n = BATCH
      if (b.qos === 1) n = Math.min(n, WINDOW - b.inflight, conn.outRoom)
      if (n <= 0) return
      let got: Delivery[]
      try {
        if (c.closed) throw new EdgebusError('ECONSUMER_CLOSED', 'consumer closed')
        got = c.next(n, this.#client)
      } catch (err) {
        if (!isEdgebusError(err, 'ECONSUMER_CLOSED')) this.#log.error({ client: conn.clientId, filter: b.filter, err: (err as Error).message }, 'stream delivery failed')
        else this.#log.info({ client: conn.clientId, filter: b.filter }, 'stream or consumer removed: subscription ended')
        this.#drop(b.filter)
        return
      }
      if (got.length === 0) return
      for (const d of got) {
        if (!conn.canReceive(d.subject)) {
          // a rule carves this subject out for this client: others may take it (a durable
          // consumer's message comes again after ackWait, as for a client that did not ack)
          if (b.qos === 0 || c.definition.ack === 'none') c.ack(d.seq)
          else c.nak(d.seq, c.definition.ackWait)
          continue
        }
        const packetId = b.qos === 1 ? this.#packetId() : 0
        const frame = encodeDelivery(b, d, packetId, v5)
        if (conn.maxOutgoingPacket !== 0 && frame.length > conn.maxOutgoingPacket) {
          // [MQTT-3.1.2-25] it can never reach this client: give it up (dead letter) rather than loop
          this.#log.warn({ client: conn.clientId, stream: b.stream, seq: d.seq, size: frame.length }, 'stream message over the client\'s Maximum Packet Size: terminated')
          c.term(d.seq)
          continue
        }
        if (b.qos === 1) {
          this.#byPacket.set(packetId, { b, seq: d.seq })
          b.inflight++
        }
        conn.sendStreamPublish(frame, b.qos)
        if (b.qos === 0) c.ack(d.seq) // at most once: done when written
      }
    }
  }

  /** A free packet id: one still out for a stream delivery (65,535 ids ago) is skipped. */
  #packetId(): number {
    let id = this.#conn.nextPacketId()
    while (this.#byPacket.has(id)) id = this.#conn.nextPacketId()
    return id
  }

  /** The connection closed: every subscription lets go (unacked messages go to other clients). */
  close(): void {
    for (const filter of [...this.#subs.keys()]) this.#drop(filter)
  }

  #drop(filter: string): boolean {
    const b = this.#subs.get(filter)
    if (b === undefined) return false
    this.#subs.delete(filter)
    b.closed = true
    for (const [id, hit] of this.#byPacket) if (hit.b === b) this.#byPacket.delete(id)
    try {
      b.release()
    } catch (err) {
      this.#log.debug({ filter, err: (err as Error).message }, 'stream subscription release')
    }
    return true
  }
}

// --- PUBLISH frames -----------------------------------------------------------------------------

const PROPS = { PAYLOAD_FORMAT: 0x01, CONTENT_TYPE: 0x03, RESPONSE_TOPIC: 0x08, CORRELATION_DATA: 0x09, SUBSCRIPTION_ID: 0x0b, USER_PROPERTY: 0x26 } as const

/** The MQTT 5 properties of a delivery: the message's own, then where it came from in the stream. */
function deliveryProperties(stream: string, d: Delivery, si: number): Buffer {
  const parts: Buffer[] = []
  const str = (id: number, s: string): void => {
    const b = Buffer.from(s)
    const h = Buffer.allocUnsafe(3)
    h[0] = id
    h.writeUInt16BE(b.length, 1)
    parts.push(h, b)
  }
  const pair = (k: string, v: string): void => {
    const kb = Buffer.from(k)
    const vb = Buffer.from(v)
    const h = Buffer.allocUnsafe(3)
    h[0] = PROPS.USER_PROPERTY
    h.writeUInt16BE(kb.length, 1)
    const m = Buffer.allocUnsafe(2)
    m.writeUInt16BE(vb.length, 0)
    parts.push(h, kb, m, vb)
  }
  const h: RecordHeaders | null = d.headers
  if (h !== null) {
    if (h.payloadFormatIndicator !== undefined) parts.push(Buffer.from([PROPS.PAYLOAD_FORMAT, h.payloadFormatIndicator]))
    if (h.contentType !== undefined) str(PROPS.CONTENT_TYPE, h.contentType)
    if (h.responseTopic !== undefined) str(PROPS.RESPONSE_TOPIC, h.responseTopic)
    if (h.correlationData !== undefined) {
      const head = Buffer.allocUnsafe(3)
      head[0] = PROPS.CORRELATION_DATA
      head.writeUInt16BE(h.correlationData.length, 1)
      parts.push(head, Buffer.from(h.correlationData))
    }
  }
  if (si !== 0) {
    // [MQTT-3.3.4-3] the Subscription Identifier of the matching subscription
    const b = Buffer.allocUnsafe(1 + varintSize(si))
    b[0] = PROPS.SUBSCRIPTION_ID
    writeVarint(b, 1, si)
    parts.push(b)
  }
  if (h?.userProperties !== undefined) for (const [k, v] of h.userProperties) pair(k, v)
  pair('stream', stream)
  pair('seq', String(d.seq))
  pair('time', new Date(d.timestamp).toISOString())
  pair('deliveries', String(d.deliveryCount))
  pair('pending', String(d.pending))
  return Buffer.concat(parts)
}

/** One PUBLISH of a stream message: the subscription's prefix + the subject as its topic. */
export function encodeDelivery(b: { prefix: Buffer; qos: 0 | 1; si: number; stream: string }, d: Delivery, packetId: number, v5: boolean): Buffer {
  const subjectLen = Buffer.byteLength(d.subject)
  const topicLen = b.prefix.length + subjectLen
  const props = v5 ? deliveryProperties(b.stream, d, b.si) : null
  const propsLen = props === null ? 0 : varintSize(props.length) + props.length
  const remaining = 2 + topicLen + (b.qos === 1 ? 2 : 0) + propsLen + d.payload.length
  const frame = Buffer.allocUnsafe(1 + varintSize(remaining) + remaining)
  frame[0] = b.qos === 1 ? 0x32 : 0x30
  let o = writeVarint(frame, 1, remaining)
  frame.writeUInt16BE(topicLen, o)
  o += 2
  o += b.prefix.copy(frame, o)
  o += frame.write(d.subject, o)
  if (b.qos === 1) {
    frame.writeUInt16BE(packetId, o)
    o += 2
  }
  if (props !== null) {
    o = writeVarint(frame, o, props.length)
    o += props.copy(frame, o)
  }
  d.payload.copy(frame, o)
  return frame
}

// --- control topics ----------------------------------------------------------------------------

/**
 * `$stream/<stream>/<consumer>/$ack|$nak|$term|$wip/<seq>`: acks for clients that cannot use
 * PUBACK reason codes (MQTT 3.1.1) or that ack later from elsewhere. A router listener, so it
 * works for every QoS and transport.
 */
export function streamControlListener(streams: StreamManager, log: Logger): { filter: string; fn: Listener } {
  const fn: Listener = (packet, cb) => {
    cb()
    const parts = packet.topic.split('/')
    const verb = parts[3]
    const seq = Number(parts[4])
    if (parts.length !== 5 || !Number.isSafeInteger(seq) || seq < 1) return
    let consumer: Consumer
    try {
      consumer = streams.consumers(parts[1] as string).get(parts[2] as string).consumer
    } catch (err) {
      log.debug({ topic: packet.topic, err: (err as Error).message }, 'stream control message for no consumer')
      return
    }
    let done = false
    if (verb === '$ack') done = consumer.ack(seq)
    else if (verb === '$term') done = consumer.term(seq)
    else if (verb === '$wip') done = consumer.inProgress(seq)
    else if (verb === '$nak') {
      const text = packet.payload.toString('utf8').trim()
      const delay = text === '' ? 0 : parseDuration(text) // a bare number is milliseconds
      done = consumer.nak(seq, delay ?? 0)
    } else return
    if (!done) log.debug({ topic: packet.topic }, 'stream control message for a message not pending')
  }
  return { filter: '$stream/+/+/+/+', fn }
}
