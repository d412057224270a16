import type { Msg, MsgHdrs } from '@nats-io/transport-node'
import type { RoutedPacket } from '../router/router.ts'

/**
 * One MQTT message as a NATS message: the payload as is, the rest in headers. MQTT 5 properties
 * that mean something to the receiver travel (MQTT 5 §3.3.2.3); Topic Alias and Subscription
 * Identifier are per connection and do not. User properties are one `Eb-User` value each, as JSON
 * [name, value] (a value may hold CR/LF, which a header cannot), in their order.
 */

export const H_ORIGIN = 'Eb-Origin'
export const H_ID = 'Eb-Id'
const H_QOS = 'Eb-Qos'
const H_TOPIC = 'Eb-Topic'
const H_CONTENT_TYPE = 'Eb-Content-Type'
const H_RESPONSE_TOPIC = 'Eb-Response-Topic'
const H_CORRELATION = 'Eb-Correlation-Data'
const H_FORMAT = 'Eb-Payload-Format'
const H_EXPIRY = 'Eb-Message-Expiry'
const H_USER = 'Eb-User'

export interface ClusterMessage {
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  properties: Record<string, unknown> | undefined
  origin: string
}

interface Props {
  payloadFormatIndicator?: boolean
  messageExpiryInterval?: number
  contentType?: string
  responseTopic?: string
  correlationData?: Buffer
  userProperties?: Record<string, string | string[]>
}

/** Fills `h` for a packet; `exactTopic` when the subject cannot spell the topic (subject-map.ts). */
export function fillHeaders(h: MsgHdrs, packet: RoutedPacket, origin: string, id: string, exactTopic: string | null): MsgHdrs {
  h.set(H_ORIGIN, origin)
  h.set(H_ID, id)
  if (packet.qos !== 0) h.set(H_QOS, String(packet.qos))
  if (exactTopic !== null) h.set(H_TOPIC, encodeURIComponent(exactTopic))
  const p = packet.properties as Props | undefined
  if (p !== undefined) {
    if (p.contentType !== undefined) h.set(H_CONTENT_TYPE, encodeURIComponent(p.contentType))
    if (p.responseTopic !== undefined) h.set(H_RESPONSE_TOPIC, encodeURIComponent(p.responseTopic))
    if (p.correlationData !== undefined) h.set(H_CORRELATION, Buffer.from(p.correlationData).toString('base64'))
    if (p.payloadFormatIndicator === true) h.set(H_FORMAT, '1')
    if (p.messageExpiryInterval !== undefined) h.set(H_EXPIRY, String(p.messageExpiryInterval))
    if (p.userProperties !== undefined) {
      for (const [name, value] of Object.entries(p.userProperties)) {
        for (const v of Array.isArray(value) ? value : [value]) h.append(H_USER, JSON.stringify([name, v]))
      }
    }
  }
  return h
}

/** The MQTT message of a NATS message; `topic` is the subject's (used unless the header has the exact one). */
export function readMessage(msg: Msg, topic: () => string): ClusterMessage {
  const h = msg.headers
  const payload = Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength)
  if (h === undefined) return { topic: topic(), payload, qos: 0, properties: undefined, origin: '' }
  const exact = h.get(H_TOPIC)
  const qos = Number(h.get(H_QOS) || 0)
  let props: Props | undefined
  const set = <K extends keyof Props>(k: K, v: Props[K]): void => { (props ??= {})[k] = v }
  const ct = h.get(H_CONTENT_TYPE)
  if (ct !== '') set('contentType', decodeURIComponent(ct))
  const rt = h.get(H_RESPONSE_TOPIC)
  if (rt !== '') set('responseTopic', decodeURIComponent(rt))
  const cd = h.get(H_CORRELATION)
  if (cd !== '') set('correlationData', Buffer.from(cd, 'base64'))
  if (h.get(H_FORMAT) === '1') set('payloadFormatIndicator', true)
  const ex = h.get(H_EXPIRY)
  if (ex !== '') set('messageExpiryInterval', Number(ex))
  const users = h.values(H_USER)
  if (users.length > 0) {
    const up: Record<string, string | string[]> = {}
    for (const u of users) {
      const [name, value] = JSON.parse(u) as [string, string]
      const had = up[name]
      up[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value]
    }
    set('userProperties', up)
  }
  return {
    topic: exact !== '' ? decodeURIComponent(exact) : topic(),
    payload,
    qos: (qos === 1 || qos === 2 ? qos : 0),
    properties: props as Record<string, unknown> | undefined,
    origin: h.get(H_ORIGIN),
  }
}
