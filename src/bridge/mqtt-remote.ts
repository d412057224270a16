import mqtt, { type IClientOptions, type IClientPublishOptions, type MqttClient } from 'mqtt'
import type { RecordHeaders } from '../stream/record.ts'
import { LinkEnd, MSG_ID_PROPERTY, type IncomingMessage, type InSource, type OutgoingMessage, type RemoteConnector, type RemoteLink, type RemoteOptions, type SendResult } from './remote.ts'

/**
 * An MQTT remote through MQTT.js, one client per connection (its own reconnect is off: the
 * bridge decides when and where to reconnect, and resends what was in flight from the outbox).
 * A message is done on its PUBACK [MQTT-4.3.2]; a PUBACK reason code of 0x80 or more is a
 * refusal (MQTT 5 section 3.4.2.1), as is a SUBACK 0x80.
 */
export const connectMqtt: RemoteConnector = (url, opts) => new Promise((resolve, reject) => {
  const options: IClientOptions = {
    clientId: opts.clientId,
    protocolVersion: opts.mqttVersion,
    reconnectPeriod: 0,
    connectTimeout: opts.connectTimeout,
    keepalive: opts.keepalive,
    // a PINGREQ every keep alive period, busy or not: rescheduling it on every PUBLISH costs a timer per message
    reschedulePings: false,
    clean: !opts.persistentSession,
    resubscribe: false,
    ...(opts.persistentSession && opts.mqttVersion === 5 ? { properties: { sessionExpiryInterval: 86_400 } } : {}),
    ...(opts.username !== null ? { username: opts.username } : {}),
    ...(opts.password !== null ? { password: opts.password } : {}),
    ...(opts.ca !== null ? { ca: opts.ca } : {}),
    ...(opts.cert !== null && opts.key !== null ? { cert: opts.cert, key: opts.key } : {}),
  }
  let client: MqttClient
  try {
    client = mqtt.connect(url, options)
  } catch (err) {
    reject(err)
    return
  }
  let settled = false
  const fail = (why: string): void => {
    if (settled) return
    settled = true
    clearTimeout(timer)
    client.end(true)
    reject(new Error(why))
  }
  const timer = setTimeout(() => fail(`no CONNACK within ${opts.connectTimeout} ms`), opts.connectTimeout + 100)
  // kept on a failed client: a later 'error' without a listener would be thrown
  const onError = (err: Error): void => fail(err.message)
  const onClose = (): void => fail('connection closed before CONNACK')
  client.on('error', onError)
  client.on('close', onClose)
  client.once('connect', (connack) => {
    if (settled) return
    settled = true
    clearTimeout(timer)
    client.off('error', onError)
    client.off('close', onClose)
    resolve(new MqttLink(url, client, opts.mqttVersion, connack.properties?.receiveMaximum ?? Infinity))
  })
})

class MqttLink implements RemoteLink {
  readonly #client: MqttClient
  readonly #v5: boolean
  readonly #end = new LinkEnd()
  /** Why the connection is going away, once the client said (error, DISCONNECT), for the close that follows. */
  #why = 'connection closed by the remote'

  constructor(readonly url: string, client: MqttClient, version: 4 | 5, readonly maxInFlight: number) {
    this.#client = client
    this.#v5 = version === 5
    client.on('error', (err) => { this.#why = err.message })
    client.on('close', () => this.#lost(this.#why))
    client.on('disconnect', (p) => { this.#why = `DISCONNECT from the remote, reason code 0x${(p.reasonCode ?? 0).toString(16)}` })
  }

  send(msg: OutgoingMessage): Promise<SendResult> {
    return new Promise((resolve, reject) => {
      if (this.#end.ended) { reject(new Error('link closed')); return }
      const o: IClientPublishOptions = { qos: msg.qos, retain: false }
      if (this.#v5) o.properties = publishProperties(msg.headers, msg.msgId)
      this.#client.publish(msg.topic, msg.payload, o, (err) => {
        if (err === undefined || err === null) { resolve({ ok: true }); return }
        const code = (err as { code?: unknown }).code
        if (typeof code === 'number' && code >= 0x80) resolve({ ok: false, reason: `PUBACK reason code 0x${code.toString(16)} (${err.message})` })
        else reject(err)
      })
    })
  }

  subscribe(sources: readonly InSource[], qos: 0 | 1, onMessage: (m: IncomingMessage) => Promise<unknown>): Promise<void> {
    // MQTT.js sends the PUBACK when handleMessage calls back: only once edgebus has the message
    // (stored by a stream capturing it, handed to subscribers), so a crash before that gets it resent
    this.#client.handleMessage = (packet, done) => {
      const id = packet.properties?.userProperties?.[MSG_ID_PROPERTY]
      const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
      onMessage({ topic: packet.topic, payload, msgId: id === undefined ? null : Array.isArray(id) ? (id[0] ?? null) : id })
        .then(() => done(), () => done())
    }
    return new Promise((resolve, reject) => {
      // MQTT 5 No Local: what the bridge sends is not sent back to it [MQTT-3.8.3-3]
      this.#client.subscribe(sources.map((s) => s.filter), { qos, ...(this.#v5 ? { nl: true } : {}) }, (err, granted) => {
        if (err) { reject(err); return }
        const refused = (granted ?? []).filter((g) => g.qos >= 0x80)
        if (refused.length > 0) reject(new Error(`the remote refused the subscription${refused.length > 1 ? 's' : ''} ${refused.map((g) => `${g.topic} (0x${g.qos.toString(16)})`).join(', ')}`))
        else resolve()
      })
    })
  }

  onClose(fn: (reason: string) => void): void {
    this.#end.onEnd(fn)
  }

  #lost(why: string): void {
    if (this.#end.ended) return
    this.#client.end(true) // fails the callbacks of what is in flight (the outbox still has them)
    this.#end.end(why)
  }

  async close(): Promise<void> {
    this.#lost('closed by the bridge')
  }
}

/** MQTT 5 PUBLISH properties from a stored record's headers, with the message id as user property. */
function publishProperties(h: RecordHeaders | null, msgId: string): NonNullable<IClientPublishOptions['properties']> {
  const user: Record<string, string | string[]> = {}
  let hasId = false
  for (const [k, v] of h?.userProperties ?? []) {
    if (k === MSG_ID_PROPERTY) hasId = true
    const prev = user[k]
    user[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v]
  }
  if (!hasId) user[MSG_ID_PROPERTY] = msgId
  const p: NonNullable<IClientPublishOptions['properties']> = { userProperties: user }
  if (h === null) return p
  if (h.contentType !== undefined) p.contentType = h.contentType
  if (h.responseTopic !== undefined) p.responseTopic = h.responseTopic
  if (h.correlationData !== undefined) p.correlationData = Buffer.from(h.correlationData)
  if (h.payloadFormatIndicator !== undefined) p.payloadFormatIndicator = h.payloadFormatIndicator === 1
  if (h.messageExpiryInterval !== undefined) p.messageExpiryInterval = h.messageExpiryInterval
  return p
}
