import { connect, headers as natsHeaders, type NatsConnection, type MsgHdrs } from '@nats-io/transport-node'
import { jetstream, JetStreamApiError, type JetStreamClient } from '@nats-io/jetstream'
import { mqttToNats, natsToMqtt } from '../subjects/mqtt-map.ts'
import type { RecordHeaders } from '../stream/record.ts'
import { LinkEnd, MSG_ID_PROPERTY, type IncomingMessage, type OutgoingMessage, type RemoteConnector, type RemoteLink, type RemoteOptions, type SendResult } from './remote.ts'

/**
 * A NATS remote: out messages are JetStream publishes, done on the stream's publish ack, with
 * the message id as Nats-Msg-Id so the remote stream stores it once within its duplicate window
 * (a resend after a lost ack is answered `duplicate: true`). `in` rules are core NATS
 * subscriptions. The client's own reconnect is off: the bridge reconnects and resends.
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
  return new JetStreamLink(url, nc, opts)
}

class JetStreamLink implements RemoteLink {
  readonly maxInFlight = Infinity
  readonly #nc: NatsConnection
  readonly #js: JetStreamClient
  readonly #end = new LinkEnd()

  constructor(readonly url: string, nc: NatsConnection, opts: RemoteOptions) {
    this.#nc = nc
    this.#js = jetstream(nc, { timeout: opts.ackTimeout })
    nc.closed().then((err) => this.#end.end(err ? err.message : 'connection closed by the remote'), () => this.#end.end('connection closed by the remote'))
  }

  async send(msg: OutgoingMessage): Promise<SendResult> {
    const subject = mqttToNats(msg.topic)
    try {
      const ack = await this.#js.publish(subject, msg.payload, { msgID: msg.msgId, headers: natsHeadersOf(msg.headers) })
      return { ok: true, duplicate: ack.duplicate }
    } catch (err) {
      // the stream answered with an error (too large, a limit): a refusal of this message
      if (err instanceof JetStreamApiError) return { ok: false, reason: `JetStream error ${err.code}: ${err.message}` }
      // no stream captures the subject
      if ((err as Error).name === 'JetStreamNotEnabled') return { ok: false, reason: `no JetStream stream on the remote captures "${subject}"` }
      if ((err as Error).name === 'PermissionViolationError' || /permission/i.test((err as Error).message)) return { ok: false, reason: (err as Error).message }
      // a timeout or a lost connection: the link is not trusted any more (the bridge reconnects and resends in order)
      throw err
    }
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
    this.#end.end('closed by the bridge') // first: the closed() promise would say "by the remote"
    await this.#nc.close().catch(() => {})
  }
}

/** The stored headers as NATS headers (user properties by name; the id goes as Nats-Msg-Id). */
function natsHeadersOf(h: RecordHeaders | null): MsgHdrs | undefined {
  if (h === null) return undefined
  const out = natsHeaders()
  let any = false
  for (const [k, v] of h.userProperties ?? []) {
    if (k === MSG_ID_PROPERTY || k === '' || /[\s:]/.test(k)) continue
    out.append(k, v)
    any = true
  }
  if (h.contentType !== undefined) { out.set('Content-Type', h.contentType); any = true }
  return any ? out : undefined
}
