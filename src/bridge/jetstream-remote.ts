import { connect, createInbox, headers as natsHeaders, type Msg, type NatsConnection, type MsgHdrs } from '@nats-io/transport-node'
import { mqttToNats, natsToMqtt } from '../subjects/mqtt-map.ts'
import type { RecordHeaders } from '../stream/record.ts'
import { LinkEnd, MSG_ID_PROPERTY, type IncomingMessage, type OutgoingMessage, type RemoteConnector, type RemoteLink, type RemoteOptions, type SendResult } from './remote.ts'

/**
 * A NATS remote: out messages are JetStream publishes, done on the stream's publish ack, with
 * the message id as Nats-Msg-Id so the remote stream stores it once within its duplicate window
 * (a resend after a lost ack is answered `duplicate: true`). The publishes are asynchronous: each
 * carries a reply subject under one inbox of the link, and the acks come back there, without a
 * request (promise chain, timer) per message; a remote that stops acking is the watchdog's to
 * notice. `in` rules are core NATS subscriptions. The client's own reconnect is off: the bridge
 * reconnects and resends.
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
  return new JetStreamLink(url, nc)
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

  constructor(readonly url: string, nc: NatsConnection) {
    this.#nc = nc
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

  async subscribe(filters: readonly string[], _qos: 0 | 1, onMessage: (m: IncomingMessage) => Promise<unknown>): Promise<void> {
    for (const f of filters) {
      this.#nc.subscribe(mqttToNats(f), {
        callback: (err, m) => {
          if (err) return
          let topic: string
          try {
            topic = natsToMqtt(m.subject, false)
          } catch {
            return
          }
          // core NATS has no acknowledgement to hold back: at most once from the remote's side
          onMessage({ topic, payload: Buffer.from(m.data), msgId: m.headers?.get('Nats-Msg-Id') || null }).catch(() => {})
        },
      })
    }
    await this.#nc.flush()
  }

  onClose(fn: (reason: string) => void): void {
    this.#end.onEnd(fn)
  }

  async close(): Promise<void> {
    this.#lost('closed by the bridge') // first: the closed() promise would say "by the remote"
    await this.#nc.close().catch(() => {})
  }
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
