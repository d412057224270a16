import { connect, createInbox, headers as natsHeaders, type Msg, type NatsConnection, type MsgHdrs } from '@nats-io/transport-node'
import { mqttToNats, natsToMqtt } from '../subjects/mqtt-map.ts'
import type { RecordHeaders } from '../stream/record.ts'
import { LinkEnd, MSG_ID_PROPERTY, type IncomingMessage, type InSource, type OutgoingMessage, type RemoteConnector, type RemoteLink, type RemoteOptions, type SendResult } from './remote.ts'

/**
 * A NATS remote: out messages are JetStream publishes, done on the stream's publish ack, with
 * the message id as Nats-Msg-Id so the remote stream stores it once within its duplicate window
 * (a resend after a lost ack is answered `duplicate: true`). The publishes are asynchronous: each
 * carries a reply subject under one inbox of the link, and the acks come back there, without a
 * request (promise chain, timer) per message; a remote that stops acking is the watchdog's to
 * notice. `in` rules are core NATS subscriptions, or durable pull consumers of a remote stream
 * the rule names. The client's own reconnect is off: the bridge reconnects and resends.
 */
export const connectJetStream: RemoteConnector = async (url, opts) => {
  const u = new URL(url)
  const tlsWanted = u.protocol === 'tls:' || opts.ca !== null || opts.cert !== null
  const nc = await connect({
    servers: `${u.hostname}:${u.port || '4222'}`,
    name: opts.clientId,
    reconnect: false,
    timeout: opts.connectTimeout,
    // what the bridge publishes is not delivered to its own in-subscriptions
    noEcho: true,
    ...(opts.username !== null ? { user: opts.username } : {}),
    ...(opts.password !== null ? { pass: opts.password } : {}),
    ...(opts.token !== null ? { token: opts.token } : {}),
    ...(tlsWanted ? { tls: { ...(opts.ca !== null ? { ca: opts.ca.toString() } : {}), ...(opts.cert !== null && opts.key !== null ? { cert: opts.cert.toString(), key: opts.key.toString() } : {}) } } : {}),
  })
  return new JetStreamLink(url, nc, opts.name, opts.ackTimeout)
}

interface PendingAck {
  subject: string
  resolve: (r: SendResult) => void
  reject: (err: Error) => void
}

class JetStreamLink implements RemoteLink {
  readonly maxInFlight = Infinity
  readonly #nc: NatsConnection
  readonly #end = new LinkEnd()
  /** `<inbox>.` : the reply subject of a publish is this and a token. */
  readonly #inbox = `${createInbox()}.`
  readonly #pending = new Map<string, PendingAck>()
  #token = 0

  readonly #bridge: string
  readonly #ackWaitNs: number

  constructor(readonly url: string, nc: NatsConnection, bridge: string, ackTimeout: number) {
    this.#nc = nc
    this.#bridge = bridge
    this.#ackWaitNs = ackTimeout * 1_000_000
    nc.subscribe(`${this.#inbox}*`, { callback: (err, m) => { if (err === null) this.#ack(m) } })
    nc.closed().then((err) => this.#lost(err ? err.message : 'connection closed by the remote'), () => this.#lost('connection closed by the remote'))
    void this.#watchPermissions()
  }

  send(msg: OutgoingMessage): Promise<SendResult> {
    const subject = mqttToNats(msg.topic)
    const headers = natsHeadersOf(msg.headers)
    headers.set('Nats-Msg-Id', msg.msgId)
    const token = (this.#token++).toString(36)
    return new Promise((resolve, reject) => {
      if (this.#end.ended) { reject(new Error('link closed')); return }
      this.#pending.set(token, { subject, resolve, reject })
      try {
        this.#nc.publish(subject, msg.payload, { reply: this.#inbox + token, headers })
      } catch (err) {
        this.#pending.delete(token)
        // over the server's max_payload: this message will never go
        if (/payload/i.test((err as Error).message)) resolve({ ok: false, reason: (err as Error).message })
        else reject(err as Error)
      }
    })
  }

  /** A publish ack, a JetStream error (a refusal of that message), or 503: no stream captures the subject. */
  #ack(m: Msg): void {
    const p = this.#pending.get(m.subject.slice(this.#inbox.length))
    if (p === undefined) return
    this.#pending.delete(m.subject.slice(this.#inbox.length))
    if (m.headers?.code === 503) {
      p.resolve({ ok: false, reason: `no JetStream stream on the remote captures "${p.subject}"` })
      return
    }
    let answer: { duplicate?: boolean; error?: { err_code?: number; code?: number; description?: string } }
    try {
      answer = m.json()
    } catch {
      p.resolve({ ok: false, reason: `the remote answered "${m.string().slice(0, 100)}", not a JetStream publish ack` })
      return
    }
    if (answer.error !== undefined) p.resolve({ ok: false, reason: `JetStream error ${answer.error.err_code ?? answer.error.code}: ${answer.error.description ?? ''}` })
    else p.resolve({ ok: true, duplicate: answer.duplicate === true })
  }

  /** A publish the account may not make is refused by the server asynchronously: it refuses the messages waiting on that subject. */
  async #watchPermissions(): Promise<void> {
    for await (const st of this.#nc.status()) {
      if (st.type !== 'error') continue
      const e = st.error as Error & { operation?: string; subject?: string }
      if (e.name !== 'PermissionViolationError' || e.operation !== 'publish') continue
      for (const [token, p] of this.#pending) {
        if (p.subject !== e.subject) continue
        this.#pending.delete(token)
        p.resolve({ ok: false, reason: e.message })
      }
    }
  }

  #lost(why: string): void {
    if (!this.#end.end(why)) return
    const err = new Error(`link lost: ${why}`)
    for (const p of this.#pending.values()) p.reject(err)
    this.#pending.clear()
  }

  async subscribe(sources: readonly InSource[], _qos: 0 | 1, onMessage: (m: IncomingMessage) => Promise<unknown>): Promise<void> {
    for (const [i, src] of sources.entries()) {
      if (src.stream !== null) {
        await this.#pull(src.stream, `edgebus-${this.#bridge}-in${i}`, mqttToNats(src.filter), onMessage)
        continue
      }
      this.#nc.subscribe(mqttToNats(src.filter), {
        callback: (err, m) => {
          if (err) return
          const im = incoming(m)
          // core NATS has no acknowledgement to hold back: at most once from the remote's side
          if (im !== null) onMessage(im).catch(() => {})
        },
      })
    }
    await this.#nc.flush()
  }

  /**
   * Reads a remote stream through a durable pull consumer (made, or found as it is, on the
   * remote): each message is acked once published locally, so one the bridge did not take (a link
   * lost, edgebus killed) is redelivered after the consumer's ack wait (the bridge's ackTimeout):
   * at least once. Pulls PULL_BATCH at a time, again when a batch is through or its request
   * expired. The durable is named by the rule's place in `in`: reordering the rules makes new ones.
   */
  async #pull(stream: string, durable: string, filter: string, onMessage: (m: IncomingMessage) => Promise<unknown>): Promise<void> {
    const config = { durable_name: durable, ack_policy: 'explicit', deliver_policy: 'all', filter_subject: filter, ack_wait: this.#ackWaitNs, max_ack_pending: PULL_BATCH * 4 }
    const r = await this.#nc.request(`$JS.API.CONSUMER.DURABLE.CREATE.${stream}.${durable}`, JSON.stringify({ stream_name: stream, config }), { timeout: 10_000 })
    const answer = r.json<{ error?: { code?: number; description?: string } }>()
    if (answer.error !== undefined) throw new Error(`JetStream consumer ${durable} on stream ${stream}: ${answer.error.description ?? answer.error.code}`)
    const inbox = createInbox()
    let left = 0
    const pull = (): void => {
      if (this.#end.ended) return
      left = PULL_BATCH
      this.#nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${stream}.${durable}`, JSON.stringify({ batch: PULL_BATCH, expires: PULL_EXPIRES_NS }), { reply: inbox })
    }
    this.#nc.subscribe(inbox, {
      callback: (err, m) => {
        if (err) return
        if (m.reply === undefined || m.reply === '') {
          // a status: 404 no messages, 408 the request expired, 409 a limit: the pull is over
          const code = m.headers?.code ?? 0
          if (code === 404 || code === 408 || code === 409) setTimeout(pull, code === 409 ? 1000 : 0)
          return
        }
        const im = incoming(m)
        const done = (): void => { if (!this.#end.ended) m.respond() } // an empty reply is the ack
        if (im === null) done()
        else onMessage(im).then(done, done)
        if (--left === 0) pull()
      },
    })
    pull()
  }

  onClose(fn: (reason: string) => void): void {
    this.#end.onEnd(fn)
  }

  async close(): Promise<void> {
    this.#lost('closed by the bridge') // first: the closed() promise would say "by the remote"
    await this.#nc.close().catch(() => {})
  }
}

/** Messages one pull asks for, and how long a pull waits for them (ns). */
const PULL_BATCH = 256
const PULL_EXPIRES_NS = 5_000_000_000

/** A NATS message for an `in` rule, or null when its subject has no MQTT spelling. */
function incoming(m: Msg): IncomingMessage | null {
  let topic: string
  try {
    topic = natsToMqtt(m.subject, false)
  } catch {
    return null
  }
  return { topic, payload: Buffer.from(m.data), msgId: m.headers?.get('Nats-Msg-Id') || null }
}

/** The stored headers as NATS headers (user properties by name; the id goes as Nats-Msg-Id). */
function natsHeadersOf(h: RecordHeaders | null): MsgHdrs {
  const out = natsHeaders()
  if (h === null) return out
  for (const [k, v] of h.userProperties ?? []) {
    if (k === MSG_ID_PROPERTY || k === '' || /[\s:]/.test(k)) continue
    out.append(k, v)
  }
  if (h.contentType !== undefined) out.set('Content-Type', h.contentType)
  return out
}
