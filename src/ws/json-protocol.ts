import { EdgebusError, isEdgebusError } from '../core/errors.ts'
import { parseDuration } from '../config/units.ts'
import { jsonTooDeep, MAX_JSON_DEPTH } from '../core/json-depth.ts'
import { parseStartPosition, START_POSITIONS, type DeliverPolicy } from '../stream/consumer-config.ts'
import { detectSyntax, toMqttFilter, toMqttTopic } from '../subjects/mqtt-map.ts'

/**
 * The JSON-over-WebSocket protocol for browsers (docs/ws-protocol.md): one JSON object per text
 * frame. Parsing is pure: a frame becomes a typed request or a typed error, never a throw that
 * could close the connection.
 */

export type ClientRequest =
  | { op: 'hello'; id: string | null; token: string | null }
  | { op: 'sub'; id: string | null; filter: string; input: string; qos: 0 | 1 }
  | { op: 'unsub'; id: string | null; sub: string }
  | { op: 'pub'; id: string | null; subject: string; payload: Buffer; retain: boolean; qos: 0 | 1 | 2 }
  | { op: 'ping'; id: string | null }
  | { op: 'next'; id: string | null; stream: string; consumer: string; batch: number; wait: number }
  | { op: 'ack'; id: string | null; stream: string; consumer: string; ack: number[]; nak: number[]; term: number[]; nakDelay: number }
  | { op: 'replay'; id: string | null; stream: string; start: DeliverPolicy; filter: string | null; nats: boolean }

export interface ProtocolError {
  op: 'error'
  id: string | null
  code: string
  message: string
}

/** Largest text frame accepted; a publish's payload is bounded by the server's maxPacketSize as well. */
export const MAX_FRAME_BYTES = 1024 * 1024

function err(id: string | null, code: string, message: string): ProtocolError {
  return { op: 'error', id, code, message }
}

/** Parses one frame; returns the request, or the error to send back. */
export function parseClientFrame(data: Buffer | string, isBinary: boolean): ClientRequest | ProtocolError {
  if (isBinary) return err(null, 'EWS_FRAME', 'send JSON in text frames (binary frames are for MQTT on /mqtt)')
  const text = typeof data === 'string' ? data : data.toString('utf8')
  if (jsonTooDeep(text)) return err(null, 'EWS_JSON', `the frame nests deeper than ${MAX_JSON_DEPTH} levels`)
  let msg: unknown
  try {
    msg = JSON.parse(text)
  } catch (e) {
    return err(null, 'EWS_JSON', `the frame is not JSON: ${(e as Error).message}`)
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return err(null, 'EWS_JSON', 'a frame is one JSON object, like {"op": "ping"}')
  const m = msg as Record<string, unknown>
  const id = typeof m.id === 'string' || typeof m.id === 'number' ? String(m.id) : null
  if (m.id !== undefined && id === null) return err(null, 'EWS_FIELD', '"id" is a string or a number that the answer repeats')
  const field = (name: string, why: string): ProtocolError => err(id, 'EWS_FIELD', `"${name}" ${why}`)
  try {
    switch (m.op) {
      case 'hello':
        if (m.token !== undefined && typeof m.token !== 'string') return field('token', 'is a string')
        return { op: 'hello', id, token: (m.token as string | undefined) ?? null }
      case 'ping':
        return { op: 'ping', id }
      case 'sub': {
        if (typeof m.filter !== 'string') return field('filter', 'is a subject filter, like "sensors.>" or "sensors/#"')
        const qos = m.qos ?? 0
        if (qos !== 0 && qos !== 1) return field('qos', 'is 0 or 1')
        return { op: 'sub', id, filter: toMqttFilter(m.filter), input: m.filter, qos }
      }
      case 'unsub':
        if (typeof m.sub !== 'string') return field('sub', 'is the subscription id the "sub" answer gave')
        return { op: 'unsub', id, sub: m.sub }
      case 'pub': {
        if (typeof m.subject !== 'string') return field('subject', 'is a subject, like "sensors.kitchen.temp"')
        let payload: Buffer
        if (typeof m.payload === 'string') payload = Buffer.from(m.payload, 'utf8')
        else if (typeof m.payload_base64 === 'string') payload = Buffer.from(m.payload_base64, 'base64')
        else if (m.payload !== undefined && m.payload !== null) payload = Buffer.from(JSON.stringify(m.payload), 'utf8')
        else return field('payload', 'is a string (or "payload_base64" for bytes; any other JSON value is sent as its JSON text)')
        const qos = m.qos ?? 0
        if (qos !== 0 && qos !== 1 && qos !== 2) return field('qos', 'is 0, 1 or 2')
        if (m.retain !== undefined && typeof m.retain !== 'boolean') return field('retain', 'is true or false')
        return { op: 'pub', id, subject: toMqttTopic(m.subject), payload, retain: m.retain === true, qos }
      }
      case 'replay': {
        if (typeof m.stream !== 'string') return field('stream', 'is the name of a stream')
        const startText = m.start ?? 'all'
        const start = typeof startText === 'string' ? parseStartPosition(startText) : null
        if (start === null) return field('start', `is one of ${START_POSITIONS}`)
        if (m.filter !== undefined && typeof m.filter !== 'string') return field('filter', 'is a subject filter, like "sensors.>" or "sensors/#"')
        const filter = typeof m.filter === 'string' ? toMqttFilter(m.filter) : null
        const nats = typeof m.filter === 'string' ? detectSyntax(m.filter).syntax === 'nats' : true
        return { op: 'replay', id, stream: m.stream, start, filter, nats }
      }
      case 'next':
      case 'ack': {
        if (typeof m.stream !== 'string') return field('stream', 'is the name of a stream')
        if (typeof m.consumer !== 'string') return field('consumer', 'is the name of one of its durable consumers')
        if (m.op === 'next') {
          const batch = m.batch ?? 1
          const wait = m.wait ?? 0
          if (typeof batch !== 'number' || !Number.isInteger(batch) || batch < 1 || batch > 10_000) return field('batch', 'is a whole number from 1 to 10000')
          if (typeof wait !== 'number' || wait < 0 || wait > 60_000) return field('wait', 'is milliseconds from 0 to 60000')
          return { op: 'next', id, stream: m.stream, consumer: m.consumer, batch, wait }
        }
        const seqs = (name: string): number[] | null => {
          const v = m[name] ?? []
          return Array.isArray(v) && v.every((x) => Number.isSafeInteger(x) && (x as number) > 0) ? (v as number[]) : null
        }
        const ack = seqs('ack')
        const nak = seqs('nak')
        const term = seqs('term')
        if (ack === null) return field('ack', 'is a list of sequence numbers')
        if (nak === null) return field('nak', 'is a list of sequence numbers')
        if (term === null) return field('term', 'is a list of sequence numbers')
        const nakDelay = m.nakDelay === undefined ? 0 : parseDuration(m.nakDelay)
        if (nakDelay === null) return field('nakDelay', 'is a delay before the nak\'d messages come again: milliseconds or a duration like "5s"')
        return { op: 'ack', id, stream: m.stream, consumer: m.consumer, ack, nak, term, nakDelay }
      }
      default:
        return err(id, 'EWS_OP', `unknown op ${JSON.stringify(m.op)}: use hello, sub, unsub, pub, next, ack, replay or ping`)
    }
  } catch (e) {
    if (isEdgebusError(e)) return err(id, e.code, e.message)
    // whatever else a hostile frame provokes is its problem, answered, never the server's
    return err(id, 'EWS_FIELD', `the frame could not be read: ${(e as Error).message}`)
  }
}

/** A thrown error as a protocol answer. */
export function errorFrame(id: string | null, e: unknown): ProtocolError {
  if (e instanceof EdgebusError) return err(id, e.code, e.message)
  return err(id, 'EINTERNAL', 'internal error')
}
