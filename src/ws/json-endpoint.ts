import { isUtf8 } from 'node:buffer'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { WebSocket } from 'ws'
import { LazyWebSocketServer } from './lazy-wss.ts'
import type { Logger } from '../core/log.ts'
import type { MqttBroker } from '../mqtt/broker.ts'
import type { Listener, RoutedPacket } from '../router/router.ts'
import { detectSyntax, mqttToNats } from '../subjects/mqtt-map.ts'
import type { EphemeralConsumer } from '../stream/consumer-manager.ts'
import type { StreamManager } from '../stream/stream-manager.ts'
import { VERSION } from '../version.ts'
import { EdgebusError } from '../core/errors.ts'
import { ALLOW_ALL, type ClientAccess } from '../auth/acl.ts'
import { OPEN_PRINCIPAL, type Principal, type Security } from '../auth/security.ts'
import { errorFrame, MAX_FRAME_BYTES, parseClientFrame, type ClientRequest } from './json-protocol.ts'

/** Over this many bytes waiting in a browser's socket, its messages are dropped (and counted). */
const MAX_BUFFERED = 1024 * 1024
/** Bytes waiting in a browser's socket over which a replay waits for it to drain. */
const REPLAY_BUFFER = 256 * 1024
/** Subscriptions one connection may hold. */
const MAX_SUBSCRIPTIONS = 1000

interface JsonSubscription {
  filter: string
  nats: boolean
  fn: Listener
}

/** A replay subscription: an ephemeral consumer (no acks) read as fast as the browser takes it. */
interface JsonReplay {
  eph: EphemeralConsumer | null
  closed: boolean
  nats: boolean
  waiting: boolean
}

/** One browser connection on /ws. */
class JsonSession {
  readonly #ws: WebSocket
  readonly #broker: MqttBroker
  readonly #streams: StreamManager
  readonly #client: string
  /** Who the browser is: settled from the URL's token, anonymous access, or a hello with a token. */
  #principal: Promise<Principal | null>
  /** The settled principal, once a request has awaited it; what deliveries are checked against (it changes with run-time ACLs). */
  #current: Principal | null = null
  readonly #subs = new Map<string, JsonSubscription>()
  readonly #replays = new Map<string, JsonReplay>()
  #nextSub = 1
  dropped = 0

  constructor(ws: WebSocket, broker: MqttBroker, streams: StreamManager, client: string, token: string | null, onClose: () => void) {
    this.#ws = ws
    this.#broker = broker
    this.#streams = streams
    this.#client = client
    const security = broker.security
    this.#principal = security === null ? Promise.resolve(OPEN_PRINCIPAL)
      : token !== null ? security.identify({ clientId: client, token }, 'ws').catch((e: unknown) => { this.#send(errorFrame(null, e)); return null })
      : security.identify({ clientId: client }, 'ws').catch(() => null) // not anonymous: hello with a token first
    ws.on('message', (data: Buffer, isBinary: boolean) => { this.#onFrame(data, isBinary) })
    ws.on('close', () => { onClose(); this.#close() })
    ws.on('error', () => {})
  }

  get clientId(): string {
    return this.#client
  }

  /** The user it acts as, once known (null: anonymous or not yet settled). */
  get user(): string | null {
    return this.#current?.identity.user ?? null
  }

  /** Its rights changed at run time (issue 20): requests and deliveries follow `change(p)` from now on. */
  reauthorize(change: (p: Principal) => Principal): void {
    if (this.#current === null) return
    this.#current = change(this.#current)
    this.#principal = Promise.resolve(this.#current)
  }

  #send(frame: object): void {
    if (this.#ws.readyState === this.#ws.OPEN) this.#ws.send(JSON.stringify(frame))
  }

  #onFrame(data: Buffer, isBinary: boolean): void {
    const req = parseClientFrame(data, isBinary)
    if (req.op === 'error') { this.#send(req); return }
    this.#handle(req).catch((e: unknown) => this.#send(errorFrame(req.id, e)))
  }

  async #handle(req: ClientRequest): Promise<void> {
    if (req.op === 'hello') {
      const security = this.#broker.security
      if (req.token !== null && security !== null) {
        const p = await security.identify({ clientId: this.#client, token: req.token }, 'ws')
        this.#principal = Promise.resolve(p)
        this.#current = p
      }
      const p = await this.#principal
      this.#send({ op: 'hello', id: req.id, server: 'edgebus', version: VERSION, user: p?.identity.user ?? null })
      return
    }
    if (req.op === 'ping') {
      this.#send({ op: 'pong', id: req.id })
      return
    }
    const who = await this.#principal
    if (who === null) throw new EdgebusError('EAUTH_ANONYMOUS', 'anonymous access is off: send {"op":"hello","token":"…"} first, or open /ws?token=…')
    this.#current ??= who
    const access = who.access
    const security = this.#broker.security
    const deny = (action: 'pub' | 'sub', subject: string): never => { throw (security as Security).denied(who, action, subject, 'ws') }
    switch (req.op) {
      case 'replay': {
        if (this.#subs.size + this.#replays.size >= MAX_SUBSCRIPTIONS) {
          this.#send({ op: 'error', id: req.id, code: 'EWS_LIMIT', message: `at most ${MAX_SUBSCRIPTIONS} subscriptions per connection` })
          return
        }
        this.#mayRead(who, req.stream, { filter: req.filter })
        const sub = String(this.#nextSub++)
        const r: JsonReplay = { eph: null, closed: false, nats: req.nats, waiting: false }
        const def = { deliver: req.start, ack: 'none', ...(req.filter !== null ? { filter: [req.filter] } : {}) }
        r.eph = await this.#streams.consumers(req.stream).openEphemeral(def, () => this.#pumpReplay(sub))
        this.#replays.set(sub, r)
        this.#send({ op: 'ok', id: req.id, sub })
        this.#pumpReplay(sub)
        return
      }
      case 'sub': {
        if (this.#subs.size + this.#replays.size >= MAX_SUBSCRIPTIONS) {
          this.#send({ op: 'error', id: req.id, code: 'EWS_LIMIT', message: `at most ${MAX_SUBSCRIPTIONS} subscriptions per connection` })
          return
        }
        if (access !== ALLOW_ALL && !access.canSubscribe(req.filter)) deny('sub', req.filter)
        const sub = String(this.#nextSub++)
        const nats = detectSyntax(req.input).syntax === 'nats'
        const fn: Listener = (packet, cb) => {
          const now = this.#current ?? who
          if (now.access === ALLOW_ALL || now.access.canReceive(packet.topic)) this.#deliver(sub, nats, packet)
          else security?.denied(now, 'deliver', packet.topic, 'ws')
          cb()
        }
        this.#subs.set(sub, { filter: req.filter, nats, fn })
        this.#broker.router.on(req.filter, fn)
        this.#send({ op: 'ok', id: req.id, sub, filter: nats ? mqttToNats(req.filter) : req.filter })
        return
      }
      case 'unsub': {
        const r = this.#replays.get(req.sub)
        if (r) {
          this.#endReplay(req.sub, r)
          this.#send({ op: 'ok', id: req.id })
          return
        }
        const s = this.#subs.get(req.sub)
        if (!s) {
          this.#send({ op: 'error', id: req.id, code: 'EWS_NO_SUB', message: `no subscription "${req.sub}" on this connection` })
          return
        }
        this.#subs.delete(req.sub)
        this.#broker.router.removeListener(s.filter, s.fn)
        this.#send({ op: 'ok', id: req.id })
        return
      }
      case 'next': {
        // a durable consumer's messages; several connections pulling from one share them
        this.#mayRead(who, req.stream, { consumer: req.consumer })
        const got = await this.#streams.consumers(req.stream).next(req.consumer, req.batch, req.wait, this.#client, access === ALLOW_ALL ? null : (s) => access.canReceive(s))
        this.#send({
          op: 'ok', id: req.id,
          messages: got.map((d) => ({
            seq: d.seq, subject: d.subject, time: new Date(d.timestamp).toISOString(), deliveryCount: d.deliveryCount,
            ...(isUtf8(d.payload) ? { payload: d.payload.toString('utf8') } : { payload_base64: d.payload.toString('base64') }),
          })),
        })
        return
      }
      case 'ack': {
        this.#mayRead(who, req.stream, { consumer: req.consumer })
        const { consumer } = this.#streams.consumers(req.stream).get(req.consumer)
        this.#send({
          op: 'ok', id: req.id,
          acked: req.ack.filter((s) => consumer.ack(s)).length,
          naked: req.nak.filter((s) => consumer.nak(s, req.nakDelay)).length,
          termed: req.term.filter((s) => consumer.term(s)).length,
        })
        return
      }
      case 'pub': {
        if (req.subject.startsWith('$SYS')) throw new EdgebusError('EACL_DENIED', '$SYS topics are published by the server only')
        if (access !== ALLOW_ALL && !access.canPublish(req.subject)) deny('pub', req.subject)
        const results = await this.#broker.publish(req.subject, req.payload, { qos: req.qos, retain: req.retain })
        const stored = results.map(({ stream, result }) => (result.status === 'fulfilled'
          ? { stream, seq: (result.value as { seq: number }).seq }
          : { stream, error: (({ code, message }) => ({ code, message }))(errorFrame(null, result.reason)) }))
        const refused = stored.find((s) => 'error' in s) as { error: { code: string; message: string } } | undefined
        if (refused) this.#send({ op: 'error', id: req.id, code: refused.error.code, message: refused.error.message, stored })
        else this.#send({ op: 'ok', id: req.id, stored })
      }
    }
  }

  #deliver(sub: string, nats: boolean, packet: RoutedPacket): void {
    const ws = this.#ws
    if (ws.readyState !== ws.OPEN) return
    // a browser that stopped reading loses messages, not the server's memory
    if (ws.bufferedAmount > MAX_BUFFERED) { this.dropped++; this.#broker.stats.dropped++; return }
    const p = packet.payload
    const body = isUtf8(p) ? { payload: p.toString('utf8') } : { payload_base64: p.toString('base64') }
    ws.send(JSON.stringify({ op: 'msg', sub, subject: nats ? mqttToNats(packet.topic) : packet.topic, ...body, retain: packet.retain, qos: packet.qos }))
    this.#broker.stats.messagesOut++
  }

  /** Throws EACL_DENIED unless `who` may read what a replay or a consumer of `stream` covers. */
  #mayRead(who: Principal, stream: string, what: { consumer: string } | { filter: string | null }): void {
    const denied = this.#broker.security?.streamDenial(who, this.#streams, stream, what, 'ws') ?? null
    if (denied !== null) throw denied
  }

  /** Sends replayed messages while the socket takes them; resumes when it has drained. */
  #pumpReplay(sub: string): void {
    const r = this.#replays.get(sub)
    const c = r?.eph?.consumer
    if (r === undefined || c === undefined || r.closed) return
    const ws = this.#ws
    while (ws.readyState === ws.OPEN && ws.bufferedAmount < REPLAY_BUFFER) {
      if (c.closed) { this.#endReplay(sub, r); return }
      const got = c.next(64)
      if (got.length === 0) return
      const access = this.#current?.access ?? ALLOW_ALL // a replay runs only once the principal is settled
      for (const d of got) {
        if (access !== ALLOW_ALL && !access.canReceive(d.subject)) continue
        const p = d.payload
        ws.send(JSON.stringify({
          op: 'msg', sub, subject: r.nats ? mqttToNats(d.subject) : d.subject, seq: d.seq, time: new Date(d.timestamp).toISOString(),
          ...(isUtf8(p) ? { payload: p.toString('utf8') } : { payload_base64: p.toString('base64') }),
        }))
        this.#broker.stats.messagesOut++
      }
    }
    // over the bound: look again shortly (ws has no public drain event)
    if (ws.readyState === ws.OPEN && !r.waiting) {
      r.waiting = true
      setTimeout(() => { r.waiting = false; this.#pumpReplay(sub) }, 10)
    }
  }

  #endReplay(sub: string, r: JsonReplay): void {
    r.closed = true
    this.#replays.delete(sub)
    void r.eph?.close()
  }

  #close(): void {
    for (const [sub, r] of [...this.#replays]) this.#endReplay(sub, r)
    for (const s of this.#subs.values()) this.#broker.router.removeListener(s.filter, s.fn)
    this.#subs.clear()
    this.#streams.releaseClient(this.#client) // its unacked consumer messages go to others now
  }
}

/** The JSON-over-WebSocket endpoint on /ws (docs/ws-protocol.md). */
export class JsonWebSocketEndpoint {
  readonly #wss = new LazyWebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false })
  readonly #broker: MqttBroker
  readonly #streams: StreamManager
  readonly #log: Logger
  #sessions = 0
  readonly #live = new Set<JsonSession>()

  constructor(broker: MqttBroker, streams: StreamManager, log: Logger) {
    this.#broker = broker
    this.#streams = streams
    this.#log = log
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const ip = req.socket.remoteAddress ?? '?'
    const refusal = this.#broker.gate.admit(ip)
    if (refusal !== null) {
      this.#broker.warnings.warn(refusal.code, { remote: ip, code: refusal.code }, `connection refused: ${refusal.message}`)
      const status = refusal.code === 'ELIMIT_CONNECT_RATE' ? '429 Too Many Requests' : '503 Service Unavailable'
      const body = JSON.stringify({ error: { code: refusal.code, message: refusal.message } })
      socket.end(`HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
      return
    }
    socket.once('close', () => this.#broker.gate.release(ip))
    const token = new URL(req.url ?? '/', 'http://localhost').searchParams.get('token')
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      req.socket.setNoDelay(true)
      const session: JsonSession = new JsonSession(ws, this.#broker, this.#streams, `ws-${++this.#sessions}`, token, () => this.#live.delete(session))
      this.#live.add(session)
      this.#log.debug({ remote: req.socket.remoteAddress }, 'json websocket connected')
    })
  }

  /** Users or rules changed at run time: the sessions of `user` (null: every session) get their rights again. */
  reauthorize(user: string | null, change: (p: Principal, clientId: string) => Principal): void {
    for (const s of this.#live) if (user === null || s.user === user) s.reauthorize((p) => change(p, s.clientId))
  }

  close(): void {
    this.#wss.close()
  }
}
