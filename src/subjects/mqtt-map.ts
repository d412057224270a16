import { EdgebusError } from '../core/errors.ts'
import { parseNatsSubject } from './subject.ts'
import { validateTopicFilter, validateTopicName } from './topic.ts'

/**
 * The lossless mapping between MQTT topics ('a/b/c', '+', '#') and NATS-style subjects
 * ('a.b.c', '*', '>'). MQTT spelling is canonical inside edgebus: a client sees topics byte for byte
 * as published. The NATS-style spelling is another way to write the same topic; docs/subjects.md
 * states the rules and the tests prove both round trips on random input.
 */

/** One MQTT level (not a wildcard) to its NATS-style token. */
export function levelToToken(level: string): string {
  if (level === '') return '%'
  if (level === '*') return '%2A'
  if (level === '>') return '%3E'
  let out = ''
  for (let i = 0; i < level.length; i++) {
    const ch = level[i] as string
    if (ch === '%') {
      const code = level.slice(i + 1, i + 3)
      if (code === '2F') { out += '/'; i += 2; continue }
      if (code === '2B') { out += '+'; i += 2; continue }
      if (code === '23') { out += '#'; i += 2; continue }
      out += '%25'
    } else if (ch === '.') {
      out += '%2E'
    } else {
      out += ch
    }
  }
  return out
}

/** One NATS-style token (validated, not a wildcard) to its MQTT level. */
export function tokenToLevel(token: string): string {
  if (token === '%') return ''
  if (token === '%2A') return '*'
  if (token === '%3E') return '>'
  let out = ''
  for (let i = 0; i < token.length; i++) {
    const ch = token[i] as string
    if (ch === '%') {
      const code = token.slice(i + 1, i + 3)
      out += code === '2E' ? '.' : '%' // checkEscapes allowed only %25 and %2E
      i += 2
    } else if (ch === '/') {
      out += '%2F'
    } else if (ch === '+') {
      out += '%2B'
    } else if (ch === '#') {
      out += '%23'
    } else {
      out += ch
    }
  }
  return out
}

/** MQTT topic or filter to NATS-style subject or filter. */
export function mqttToNats(mqtt: string): string {
  return mqtt
    .split('/')
    .map((level) => (level === '+' ? '*' : level === '#' ? '>' : levelToToken(level)))
    .join('.')
}

/** NATS-style subject or filter (validated here) to MQTT topic or filter. */
export function natsToMqtt(subject: string, allowWildcards = true): string {
  const tokens = parseNatsSubject(subject, allowWildcards)
  return tokens.map((t) => (t === '*' ? '+' : t === '>' ? '#' : tokenToLevel(t))).join('/')
}

export type SubjectSyntax = 'mqtt' | 'nats'

/**
 * Which syntax a user-typed subject is in: an explicit 'mqtt:' or 'nats:' prefix wins; otherwise
 * a '/' means MQTT, so does a lone '#' or '+' (MQTT's wildcards), and anything else is read as
 * NATS-style (a single level is the same in both).
 */
export function detectSyntax(input: string): { syntax: SubjectSyntax; text: string } {
  if (input.startsWith('mqtt:')) return { syntax: 'mqtt', text: input.slice(5) }
  if (input.startsWith('nats:')) return { syntax: 'nats', text: input.slice(5) }
  if (input.includes('/') || input === '#' || input === '+') return { syntax: 'mqtt', text: input }
  return { syntax: 'nats', text: input }
}

/** A subscription filter in either syntax, validated, in canonical MQTT form. */
export function toMqttFilter(input: string): string {
  const { syntax, text } = detectSyntax(input)
  const filter = syntax === 'mqtt' ? text : natsToMqtt(text, true)
  validateTopicFilter(filter)
  return filter
}

/** A concrete subject in either syntax, validated, in canonical MQTT form. */
export function toMqttTopic(input: string): string {
  const { syntax, text } = detectSyntax(input)
  let topic: string
  if (syntax === 'mqtt') {
    topic = text
  } else {
    try {
      topic = natsToMqtt(text, false)
    } catch (err) {
      if (err instanceof EdgebusError && /wildcard/.test(err.message)) {
        throw new EdgebusError('ESUBJECT_WILDCARD', err.message, err.detail as Record<string, unknown>)
      }
      throw err
    }
  }
  validateTopicName(topic)
  return topic
}
