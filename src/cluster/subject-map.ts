import { mqttToNats, natsToMqtt } from '../subjects/mqtt-map.ts'

/**
 * MQTT topics and filters as NATS subjects of the cluster: `<prefix>m.` + the lossless NATS-style
 * spelling (src/subjects/mqtt-map.ts). NATS subjects cannot hold whitespace, which MQTT topics may:
 * such a character becomes '_' on the wire and the exact topic travels in a header (envelope.ts),
 * so a subscription is then a superset and the receiving node matches the exact topic itself.
 */

const WHITESPACE = /\s/g

/**
 * nats-server closes a connection whose protocol line passes max_control_line (4 KiB by default), and
 * a subject is most of a PUB/SUB line: longer ones stay on their node (a topic may be 64 KiB in MQTT).
 */
export const MAX_SUBJECT_BYTES = 3_072

export function subjectFits(subject: string): boolean {
  return subject.length * 3 <= MAX_SUBJECT_BYTES || Buffer.byteLength(subject) <= MAX_SUBJECT_BYTES
}

export function messageSubject(prefix: string, topic: string): { subject: string; exact: boolean } {
  const nats = mqttToNats(topic)
  WHITESPACE.lastIndex = 0
  if (!WHITESPACE.test(nats)) return { subject: `${prefix}m.${nats}`, exact: true }
  return { subject: `${prefix}m.${nats.replace(WHITESPACE, '_')}`, exact: false }
}

export function filterSubject(prefix: string, filter: string): string {
  return `${prefix}m.${mqttToNats(filter).replace(WHITESPACE, '_')}`
}

/** The MQTT topic of a message subject (when the topic did not travel in a header). */
export function subjectTopic(prefix: string, subject: string): string {
  return natsToMqtt(subject.slice(prefix.length + 2), false)
}

/** A retained message's subject: the topic as one base64url token (any topic, no wildcard meaning). */
export function retainedSubject(prefix: string, topic: string): string {
  return `${prefix}r.${Buffer.from(topic, 'utf8').toString('base64url') || '_'}`
}

export function retainedTopic(prefix: string, subject: string): string {
  const token = subject.slice(prefix.length + 2)
  return token === '_' ? '' : Buffer.from(token, 'base64url').toString('utf8')
}
