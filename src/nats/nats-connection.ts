import type { Socket } from 'node:net'
import type { Logger } from '../core/log.ts'
import type { MqttBroker, AedesClient } from '../mqtt/broker.ts'
import type { Flushable } from '../mqtt/flush-scheduler.ts'
import type { SharedMember } from '../mqtt/shared-subscriptions.ts'
import { packetForEntry, type Listener, type MessageStore, type RouteEntry, type RoutedPacket } from '../router/router.ts'
import { ALLOW_ALL } from '../auth/acl.ts'
import { OPEN_PRINCIPAL, type Principal } from '../auth/security.ts'
import { natsToMqtt } from '../subjects/mqtt-map.ts'
import { topicMatchesFilter } from '../subjects/topic.ts'
import { NatsParser, type NatsOp, type NatsProtocolError } from './nats-parser.ts'
import { errLine, hmsgHead, infoLine, msgHead, OK, PING, PONG, type ServerInfo } from './nats-encoder.ts'
import { headersToUserProperties, NO_RESPONDERS, parseHeaders, userPropertiesToHeaders, type UserProperties } from './nats-headers.ts'
import { natsSubjectOf } from './nats-subject-cache.ts'
import type { NatsSubscription } from './nats-subscription.ts'
import { publishAck, publishAckError } from './nats-pub-ack.ts'

/** What every NATS connection shares (nats-listener.ts makes it). */
export interface NatsContext {
  readonly broker: MqttBroker
  readonly log: Logger
  /** The INFO sent on connect, for this client. */
  info(clientId: number, clientIp: string): ServerInfo
  readonly maxControlLine: number
  /** How often the server PINGs; after MAX_PINGS_OUT unanswered the connection is stale. */
  readonly pingInterval: number
  /** How long a client that must authenticate has to send CONNECT. */
  readonly authTimeout: number
  readonly connections: Set<NatsConnection>
}

/** Unanswered server PINGs after which the connection is stale (nats-server's max_pings_out). */
const MAX_PINGS_OUT = 2
/** The packet field that says which NATS connection published a message (for `echo: false`). */
const ORIGIN = 'natsOrigin'
/** The user property a stream reads its dedupe id from (stream.ts MSG_ID_PROPERTY). */
const MSG_ID_HEADER = 'Nats-Msg-Id'
const MSG_ID_PROPERTY = 'msg-id'
const noop = (): void => {}
/** The router listeners of NATS subscriptions: they copy a payload as they get it. */
const NATS_LISTENERS = new WeakSet<Listener>()

interface ConnectOptions {
  verbose: boolean
  pedantic: boolean
  echo: boolean
  headers: boolean
  noResponders: boolean
}

type State = 'connecting' | 'authenticating' | 'open' | 'closed'

/**
 * One NATS client. Reads operations with NatsParser, routes PUBs through the Router like the MQTT
 * fast path does (stores, listeners of every protocol), and writes MSG/HMSG into one output buffer
 * that FlushScheduler hands to the socket once per event-loop turn.
 */
export class NatsConnection implements Flushable {
  readonly id: number
  readonly #socket: Socket
  readonly #ctx: NatsContext
  readonly #broker: MqttBroker
  readonly #parser: NatsParser
  readonly #subs = new Map<string, NatsSubscription>()
  readonly clientId: string
  #state: State = 'connecting'
  principal: Principal = OPEN_PRINCIPAL
  #opts: ConnectOptions = { verbose: false, pedantic: false, echo: true, headers: false, noResponders: false }
  /** Input read while CONNECT is being authenticated. */
  #held: Buffer | null = null
  #out: Buffer | null = null
  #outLen = 0
  #outHint = 16_384
  #dirty = false
  #pingsOut = 0
  #pingTimer: NodeJS.Timeout | null = null
  #authTimer: NodeJS.Timeout | null = null
  #expiryTimer: NodeJS.Timeout | null = null
  /** The last message's header block, encoded once for every subscription of this connection. */
  #lastPacket: RoutedPacket | null = null
  #lastHeaders: Buffer | null = null
  dropped = 0
  /** The last PUB subject, its topic and whether the ACL lets this client publish to it. */
  #lastSubject = ''
  #lastTopic = ''
  #lastAllowed = false
  /** Since when the queue is over limits.maxQueuedBytes (0: it is not). */
  #overSince = 0

  /** The user of a verified TLS client certificate (mTLS), else null. */
  readonly #certUser: string | null

  /** `infoSent`: the listener sent INFO already (before a TLS upgrade). */
  constructor(socket: Socket, ctx: NatsContext, id: number, opts: { infoSent: boolean; certUser: string | null } = { infoSent: false, certUser: null }) {
    this.#certUser = opts.certUser
    this.id = id
    this.clientId = `nats-${id}`
    this.#socket = socket
    this.#ctx = ctx
    this.#broker = ctx.broker
    this.#parser = new NatsParser({ maxControlLine: ctx.maxControlLine, maxPayload: ctx.broker.limits.maxPacketSize })
    ctx.connections.add(this)
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => this.#read(chunk))
    socket.on('error', noop)
    socket.on('close', () => this.#closed())
    if (!opts.infoSent) this.#write(infoLine(ctx.info(id, socket.remoteAddress ?? '')))
    if (this.#broker.security !== null) {
      this.#authTimer = setTimeout(() => this.#fatal('Authentication Timeout'), ctx.authTimeout)
      this.#authTimer.unref()
    }
    this.#pingTimer = setInterval(() => this.#keepalive(), ctx.pingInterval)
    this.#pingTimer.unref()
  }

  get closed(): boolean {
    return this.#state === 'closed'
  }

  /** Bytes waiting for this client: ours not yet flushed and the socket's. */
  get queuedBytes(): number {
    return this.#outLen + this.#socket.writableLength
  }

  // --- reading ------------------------------------------------------------------------------

  #read(chunk: Buffer): void {
    if (this.#state === 'closed') return
    this.#broker.stats.bytesIn += chunk.length
    this.#pingsOut = 0 // anything from the client shows it is alive
    if (this.#state === 'authenticating') {
      this.#held = this.#held === null ? chunk : Buffer.concat([this.#held, chunk])
      return
    }
    this.#parse(chunk)
  }

  #parse(chunk: Buffer): void {
    const { error, rest } = this.#parser.feed(chunk, this.#onOp)
    if (rest !== null) this.#held = rest
    if (error !== null) this.#protocolError(error)
  }

  readonly #onOp = (op: NatsOp): boolean => {
    if (this.#state === 'closed') return false
    if (this.#state === 'connecting' && op.op !== 'CONNECT' && op.op !== 'PING' && op.op !== 'PONG' && op.op !== 'IGNORED') {
      // without CONNECT the client has not said who it is
      if (this.#broker.security !== null) { this.#fatal('Authorization Violation'); return false }
      this.#state = 'open'
    }
    switch (op.op) {
      case 'CONNECT': return this.#connect(op.json)
      case 'PUB':
        // nats-server acknowledges a PUB as it reads it: +OK comes before the MSG it causes
        if (this.#opts.verbose && this.#state === 'open') this.#write(OK)
        this.#publish(op.subject, op.reply, op.headers, op.payload)
        return (this.#state as State) !== 'closed'
      case 'SUB': this.#subscribe(op.subject, op.queue, op.sid); break
      case 'UNSUB': this.#unsubscribe(op.sid, op.max); break
      case 'PING': this.#write(PONG); return true
      case 'PONG': this.#pingsOut = 0; return true
      case 'IGNORED': return true
    }
    if (this.#opts.verbose && this.#state === 'open') this.#write(OK)
    return (this.#state as State) !== 'closed'
  }

  #protocolError(e: NatsProtocolError): void {
    this.#broker.warnings.warn(`ENATS_PROTOCOL:${e.message}`, { client: this.clientId, remote: this.#socket.remoteAddress, code: 'ENATS_PROTOCOL', error: e.message }, 'NATS client sent bad input')
    if (e.fatal) this.#fatal(e.message)
    else this.#write(errLine(e.message))
  }

  // --- CONNECT ------------------------------------------------------------------------------

  #connect(json: string): boolean {
    if (this.#state !== 'connecting') {
      // a second CONNECT changes nothing of who the client is
      if (this.#opts.verbose) this.#write(OK)
      return true
    }
    let c: Record<string, unknown>
    try {
      c = JSON.parse(json) as Record<string, unknown>
      if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new Error('not an object')
    } catch {
      this.#fatal('Parser Error: CONNECT takes a JSON object')
      return false
    }
    this.#opts = {
      // absent means true, as nats-server reads CONNECT (clients send verbose:false explicitly)
      verbose: c.verbose !== false,
      pedantic: c.pedantic !== false,
      echo: c.echo !== false,
      headers: c.headers === true,
      noResponders: c.no_responders === true,
    }
    const security = this.#broker.security
    if (security === null) {
      this.#open()
      return true
    }
    this.#state = 'authenticating'
    this.#socket.pause() // what follows CONNECT waits for the answer
    const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null)
    const token = str(c.auth_token)
    security.identify({ clientId: this.clientId, username: str(c.user), password: str(c.pass), certCommonName: this.#certUser, ...(token !== null ? { token } : {}) }, 'nats').then((p) => {
      if (this.#state === 'closed') return
      this.principal = p
      const exp = p.identity.expiresAt
      if (exp !== null) {
        this.#expiryTimer = setTimeout(() => {
          this.#broker.log.info({ client: this.clientId, user: p.identity.user }, 'access token expired: disconnecting the NATS client')
          this.#fatal('User Authentication Expired')
        }, Math.max(0, Math.min(exp - Date.now(), 2 ** 31 - 1))) // a longer delay would fire at once
        this.#expiryTimer.unref()
      }
      this.#open()
      this.#socket.resume()
      const held = this.#held
      this.#held = null
      if (held !== null) this.#parse(held)
    }, () => this.#fatal('Authorization Violation'))
    return false // the rest waits for the answer (#held)
  }

  #open(): void {
    this.#state = 'open'
    if (this.#authTimer !== null) { clearTimeout(this.#authTimer); this.#authTimer = null }
    if (this.#opts.verbose) this.#write(OK)
  }

  // --- PUB / HPUB ---------------------------------------------------------------------------

  #publish(subject: string, reply: string | null, headerBlock: Buffer | null, payload: Buffer): void {
    const broker = this.#broker
    broker.stats.messagesIn++
    let topic: string | null
    if (subject === this.#lastSubject) {
      // a publisher mostly repeats its subject: mapped and checked once
      topic = this.#lastTopic
    } else {
      topic = this.#topicOf(subject)
      if (topic === null) return
      const access = this.principal.access
      this.#lastSubject = subject
      this.#lastTopic = topic
      this.#lastAllowed = !topic.startsWith('$SYS') && (access === ALLOW_ALL || access.canPublish(topic))
    }
    if (!this.#lastAllowed) {
      broker.security?.denied(this.principal, 'pub', topic, 'nats')
      this.#write(errLine(`Permissions Violation for Publish to "${subject}"`))
      return
    }
    const replyTopic = reply === null ? null : this.#topicOf(reply)
    if (reply !== null && replyTopic === null) return
    let properties: { userProperties?: UserProperties; responseTopic?: string } | undefined
    if (headerBlock !== null) {
      const h = parseHeaders(headerBlock)
      if (h === null) {
        this.#write(errLine('Parser Error: the header block is not NATS/1.0 headers'))
        return
      }
      if (h.pairs.length > 0) {
        const userProperties = headersToUserProperties(h.pairs)
        const msgId = userProperties[MSG_ID_HEADER]
        if (msgId !== undefined && userProperties[MSG_ID_PROPERTY] === undefined) userProperties[MSG_ID_PROPERTY] = msgId
        properties = { userProperties }
      }
    }
    if (replyTopic !== null) (properties ??= {}).responseTopic = replyTopic
    const packet: RoutedPacket = { cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false, clientId: this.clientId, [ORIGIN]: this }
    if (properties !== undefined) packet.properties = properties
    const { responders, stored } = routeMessage(broker, packet)
    if (reply === null) return
    if (stored !== null) {
      // a stream captured it: the JetStream-style publish ack, once the journal holds it
      void stored.then((answers) => this.#answer(reply, answers))
    } else if (responders === 0 && this.#opts.noResponders && this.#opts.headers) {
      this.#deliverStatus(reply, replyTopic as string, NO_RESPONDERS)
    }
  }

  /** A NATS subject as a canonical MQTT topic; null (and -ERR) when it is not a valid one. */
  #topicOf(subject: string): string | null {
    let topic: string
    try {
      topic = natsToMqtt(subject, false)
    } catch {
      this.#write(errLine('Invalid Publish Subject')) // nats-server's words, which clients match
      return null
    }
    if (!this.#broker.topicWithinLimits(topic)) {
      this.#broker.stats.topicLimitRefusals++
      this.#write(errLine('Invalid Publish Subject: over limits.maxTopicLength or limits.maxTopicLevels'))
      return null
    }
    return topic
  }

  #answer(reply: string, answers: ReadonlyArray<{ stream: string; result: PromiseSettledResult<unknown> }>): void {
    const first = answers[0]
    if (first === undefined || this.#state === 'closed') return
    const body = first.result.status === 'fulfilled'
      ? publishAck(first.stream, first.result.value as { seq: number; duplicate: boolean })
      : publishAckError(first.stream, first.result.reason)
    const topic = natsToMqtt(reply, false)
    routeMessage(this.#broker, { cmd: 'publish', topic, payload: body, qos: 0, retain: false, dup: false, clientId: this.clientId })
  }

  /** A status message (no responders) to this connection's own subscriptions on the reply subject. */
  #deliverStatus(reply: string, replyTopic: string, headers: Buffer): void {
    for (const s of this.#subs.values()) {
      if (!topicMatchesFilter(replyTopic, s.filter)) continue
      this.#append(hmsgHead(reply, s.sid, null, headers.length, headers.length), headers, null)
      return
    }
  }

  // --- SUB / UNSUB --------------------------------------------------------------------------

  #subscribe(subject: string, queue: string | null, sid: string): void {
    const broker = this.#broker
    let filter: string
    try {
      filter = natsToMqtt(subject, true)
    } catch {
      this.#write(errLine('Invalid Subject'))
      return
    }
    const refusal = broker.topicWithinLimits(filter) ? null : 'ELIMIT_TOPIC'
    if (refusal !== null) {
      broker.stats.topicLimitRefusals++
      this.#write(errLine('Invalid Subject: over limits.maxTopicLength or limits.maxTopicLevels'))
      return
    }
    const access = this.principal.access
    if (access !== ALLOW_ALL && !access.canSubscribe(filter)) {
      broker.security?.denied(this.principal, 'sub', filter, 'nats')
      this.#write(errLine(queue === null ? `Permissions Violation for Subscription to "${subject}"` : `Permissions Violation for Subscription to "${subject}" using queue "${queue}"`))
      return
    }
    const max = broker.limits.maxSubscriptions
    if (max > 0 && this.#subs.size >= max && !this.#subs.has(sid)) {
      broker.stats.subscriptionLimitRefusals++
      broker.warnings.warn('ELIMIT_SUBSCRIPTIONS', { client: this.clientId, code: 'ELIMIT_SUBSCRIPTIONS', max }, 'subscription refused: the client has limits.maxSubscriptions subscriptions')
      this.#write(errLine('Maximum Subscriptions Exceeded'))
      return
    }
    this.#remove(sid)
    const sub: NatsSubscription = { sid, subject, filter, queue, max: 0, delivered: 0, listener: null as unknown as Listener, member: null, head: null, headSubject: '', headSize: -1 }
    const listener: Listener = (packet, cb) => {
      this.#deliver(sub, packet)
      cb()
    }
    ;(sub as { listener: Listener }).listener = listener
    if (queue === null) {
      NATS_LISTENERS.add(listener)
      broker.router.on(filter, listener)
    } else {
      // a queue group is the $share group of the same name: MQTT and NATS members share its messages
      const conn = this
      const client = { deliver0: listener, deliverQoS: listener } as unknown as AedesClient
      const member: SharedMember = { id: this.id, client, get connected() { return !conn.closed } }
      ;(sub as { member: SharedMember }).member = member
      broker.shared.subscribe(member, queue, filter, 0)
    }
    this.#subs.set(sid, sub)
  }

  #unsubscribe(sid: string, max: number): void {
    const s = this.#subs.get(sid)
    if (s === undefined) return
    if (max > 0 && s.delivered < max) s.max = max
    else this.#remove(sid)
  }

  #remove(sid: string): void {
    const s = this.#subs.get(sid)
    if (s === undefined) return
    this.#subs.delete(sid)
    if (s.member !== null) this.#broker.shared.unsubscribe(s.member, s.queue as string, s.filter)
    else this.#broker.router.removeListener(s.filter, s.listener)
  }

  // --- delivery -----------------------------------------------------------------------------

  #deliver(s: NatsSubscription, packet: RoutedPacket): void {
    if (this.#state !== 'open' || (s.max > 0 && s.delivered >= s.max)) return
    if (!this.#opts.echo && packet[ORIGIN] === this) return // CONNECT echo:false, like MQTT 5 No Local
    const topic = packet.topic
    const access = this.principal.access
    if (access !== ALLOW_ALL && !access.canReceive(topic)) {
      this.#broker.security?.denied(this.principal, 'deliver', topic, 'nats')
      return
    }
    const broker = this.#broker
    const queued = this.queuedBytes
    if (queued >= broker.limits.maxQueuedBytes) {
      const now = Date.now()
      if (this.#overSince === 0) this.#overSince = now
      // over the hard bound, or over the soft one for limits.drainTimeout: it is not coming back
      if (queued >= broker.limits.maxQueuedBytesHard || now - this.#overSince > broker.limits.drainTimeout) {
        broker.stats.slowConsumerDisconnects++
        broker.log.warn({ client: this.clientId, remote: this.#socket.remoteAddress, queued, code: 'ESLOW_CONSUMER' }, 'NATS client stopped reading: queue over limits.maxQueuedBytes for limits.drainTimeout or over limits.maxQueuedBytesHard, disconnecting')
        this.#fatal('Slow Consumer')
        return
      }
      // over the soft bound: the message is dropped for this client, as QoS 0 is on the MQTT side
      this.dropped++
      broker.stats.dropped++
      broker.warnings.warn('ESLOW_CONSUMER:nats', { client: this.clientId, queued, code: 'ESLOW_CONSUMER' }, 'NATS client is slow: messages dropped over limits.maxQueuedBytes')
      return
    }
    this.#overSince = 0
    const props = packet.properties as { userProperties?: UserProperties; responseTopic?: string } | undefined
    const subject = natsSubjectOf(topic)
    const reply = props?.responseTopic === undefined ? null : natsSubjectOf(props.responseTopic)
    const payload = packet.payload
    let headers: Buffer | null = null
    if (this.#opts.headers && props?.userProperties !== undefined) {
      if (packet !== this.#lastPacket) {
        this.#lastPacket = packet
        this.#lastHeaders = userPropertiesToHeaders(props.userProperties)
      }
      headers = this.#lastHeaders
    }
    if (headers === null && reply === null) {
      // the common case: this subscription's head for this subject and size, encoded once
      if (s.headSubject !== subject || s.headSize !== payload.length || s.head === null) {
        s.head = Buffer.from(msgHead(subject, s.sid, null, payload.length))
        s.headSubject = subject
        s.headSize = payload.length
      }
      this.#appendBytes(s.head, payload)
    } else if (headers === null) this.#append(msgHead(subject, s.sid, reply, payload.length), null, payload)
    else this.#append(hmsgHead(subject, s.sid, reply, headers.length, headers.length + payload.length), headers, payload)
    broker.stats.messagesOut++
    s.delivered++
    if (s.max > 0 && s.delivered >= s.max) this.#remove(s.sid) // UNSUB <sid> <max> [Client Protocol]
  }

  // --- writing ------------------------------------------------------------------------------

  /** A head (string), then headers and payload bytes, then CRLF, into the output buffer. */
  #append(head: string, headers: Buffer | null, payload: Buffer | null): void {
    const need = head.length * 3 + (headers?.length ?? 0) + (payload?.length ?? 0) + 2
    this.#reserve(need)
    const out = this.#out as Buffer
    let n = this.#outLen
    n += out.write(head, n, 'utf8')
    if (headers !== null) n += headers.copy(out, n)
    if (payload !== null) n += payload.copy(out, n)
    out[n++] = 13
    out[n++] = 10
    this.#outLen = n
  }

  /** A head already encoded, the payload, CRLF. */
  #appendBytes(head: Buffer, payload: Buffer): void {
    this.#reserve(head.length + payload.length + 2)
    const out = this.#out as Buffer
    let n = this.#outLen
    n += head.copy(out, n)
    n += payload.copy(out, n)
    out[n++] = 13
    out[n++] = 10
    this.#outLen = n
  }

  #write(bytes: Buffer): void {
    if (this.#state === 'closed') return
    this.#reserve(bytes.length)
    this.#outLen += bytes.copy(this.#out as Buffer, this.#outLen)
  }

  #reserve(need: number): void {
    const out = this.#out
    if (out === null) {
      // sized like the last turn's output, so a busy connection does not regrow it every turn
      this.#out = Buffer.allocUnsafe(Math.max(this.#outHint, need))
    } else if (out.length - this.#outLen < need) {
      const bigger = Buffer.allocUnsafe(Math.max(out.length * 2, this.#outLen + need))
      out.copy(bigger, 0, 0, this.#outLen)
      this.#out = bigger
    }
    if (!this.#dirty) {
      this.#dirty = true
      this.#broker.flusher.mark(this)
    }
  }

  /** Hands this turn's bytes to the socket (FlushScheduler calls it once per event-loop turn). */
  flush(): void {
    this.#dirty = false
    const out = this.#out
    if (out === null || this.#outLen === 0) return
    const n = this.#outLen
    this.#outHint = n > 16_384 ? Math.min(n, 4 * 1024 * 1024) : 16_384
    this.#out = null
    this.#outLen = 0
    if (this.#socket.destroyed) return
    this.#broker.stats.bytesOut += n
    this.#socket.write(n === out.length ? out : out.subarray(0, n))
  }

  // --- keepalive and closing ----------------------------------------------------------------

  #keepalive(): void {
    if (this.#state === 'closed') return
    if (this.#pingsOut >= MAX_PINGS_OUT) {
      this.#fatal('Stale Connection')
      return
    }
    this.#pingsOut++
    this.#write(PING)
  }

  /** -ERR with the message, then close (after what is queued is written). */
  #fatal(message: string): void {
    if (this.#state === 'closed') return
    this.#write(errLine(message))
    this.flush()
    this.#state = 'closed'
    this.#socket.end()
    // a client that does not read would hold the socket open: give it a moment, then cut
    setTimeout(() => this.#socket.destroy(), 1000).unref()
    this.#release()
  }

  /** Closes the connection (server shutdown). */
  close(): void {
    this.flush()
    this.#state = 'closed'
    this.#socket.destroy()
    this.#release()
  }

  #closed(): void {
    this.#state = 'closed'
    this.#release()
  }

  #release(): void {
    if (!this.#ctx.connections.delete(this)) return
    for (const sid of [...this.#subs.keys()]) this.#remove(sid)
    for (const t of [this.#pingTimer, this.#authTimer, this.#expiryTimer]) if (t !== null) clearTimeout(t)
    this.#out = null
    this.#outLen = 0
    this.#held = null
  }
}

/**
 * Routes a message as the MQTT fast path routes a QoS 0 publish: every stream capture stores it,
 * every listener (MQTT clients through aedes' delivery, /ws, NATS, $share groups) gets it.
 * Returns how many listeners it went to, and when a stream captured it, the stores' answers.
 */
export function routeMessage(broker: MqttBroker, packet: RoutedPacket): {
  responders: number
  stored: Promise<Array<{ stream: string; result: PromiseSettledResult<unknown> }>> | null
} {
  const entries = broker.router.match(packet.topic).entries
  let stores: Array<{ stream: string; stored: Promise<unknown> }> | null = null
  let responders = 0
  let owned = false
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i] as RouteEntry
    if (!owned && !NATS_LISTENERS.has(entry.fn)) {
      // streams, MQTT write queues and others may keep the payload: do not pin the read buffer
      // it may be a view of (NATS subscriptions copy it into their output at once)
      packet.payload = Buffer.from(packet.payload)
      owned = true
    }
    const store: MessageStore | null = entry.store
    if (store !== null) {
      (stores ??= []).push({ stream: store.name, stored: store.store(packet) })
      continue
    }
    responders++
    entry.fn(packetForEntry(packet, entry), noop)
  }
  if (stores === null) return { responders, stored: null }
  const s = stores
  return {
    responders,
    stored: Promise.allSettled(s.map((x) => x.stored)).then((results) => s.map((x, i) => ({ stream: x.stream, result: results[i] as PromiseSettledResult<unknown> }))),
  }
}

