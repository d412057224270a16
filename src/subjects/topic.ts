import { EdgebusError } from '../core/errors.ts'

/**
 * MQTT topic names and topic filters, validated as the MQTT 3.1.1 and 5.0 specs require.
 * These are the canonical form of every subject inside edgebus: the router, streams and ACLs
 * all speak MQTT syntax; NATS-style input is translated by mqtt-map.ts first.
 */

/** Topic strings are UTF-8 encoded strings of at most 65,535 bytes [MQTT-1.5.3]. */
const MAX_TOPIC_BYTES = 65_535

function fail(what: string, topic: string, why: string, code: 'ESUBJECT_INVALID' | 'ESUBJECT_WILDCARD' = 'ESUBJECT_INVALID'): never {
  throw new EdgebusError(code, `invalid ${what} ${JSON.stringify(topic)}: ${why}`, { subject: topic })
}

function commonProblem(topic: string): string | null {
  // [MQTT-4.7.3-1] topic names and filters are at least one character long
  if (topic.length === 0) return 'it is empty'
  // [MQTT-4.7.3-2] no U+0000
  if (topic.includes('\u0000')) return 'it contains the null character U+0000'
  if (Buffer.byteLength(topic, 'utf8') > MAX_TOPIC_BYTES) return `it is longer than ${MAX_TOPIC_BYTES} bytes`
  if (!topic.isWellFormed()) return 'it is not well-formed UTF-16 (lone surrogate)'
  return null
}

const WILDCARD_IN_NAME = "wildcards '+' and '#' are only allowed in subscription filters"

/** Why `topic` is not a topic name a message can be published to (no wildcards [MQTT-4.7.1-1]), or null. */
export function topicNameProblem(topic: string): string | null {
  return commonProblem(topic) ?? (topic.includes('+') || topic.includes('#') ? WILDCARD_IN_NAME : null)
}

/** Why `filter` is not a subscription filter ('+' a whole level [MQTT-4.7.1-3], '#' the whole last level [MQTT-4.7.1-2]), or null. */
export function topicFilterProblem(filter: string): string | null {
  const common = commonProblem(filter)
  if (common !== null) return common
  const levels = filter.split('/')
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] as string
    if (level === '#') {
      if (i !== levels.length - 1) return "'#' must be the last level"
    } else if (level === '+') {
      // a whole level: fine
    } else if (level.includes('#')) {
      return "'#' must occupy a whole level, as in 'a/#'"
    } else if (level.includes('+')) {
      return "'+' must occupy a whole level, as in 'a/+/c'"
    }
  }
  return null
}

/** A concrete topic a message is published to: no wildcards [MQTT-4.7.1-1]. */
export function validateTopicName(topic: string): void {
  const why = topicNameProblem(topic)
  if (why !== null) fail('topic', topic, why, why === WILDCARD_IN_NAME ? 'ESUBJECT_WILDCARD' : 'ESUBJECT_INVALID')
}

/** A subscription filter: '+' a whole level [MQTT-4.7.1-3], '#' the whole last level [MQTT-4.7.1-2]. */
export function validateTopicFilter(filter: string): void {
  const why = topicFilterProblem(filter)
  if (why !== null) fail('filter', filter, why)
}

export function isWildcardFilter(filter: string): boolean {
  return filter.includes('+') || filter.includes('#')
}

/**
 * Whether a concrete topic matches a filter, by the spec's rules. The reference
 * matcher: simple and obviously right; SubjectTrie is checked against it.
 */
export function topicMatchesFilter(topic: string, filter: string): boolean {
  const t = topic.split('/')
  const f = filter.split('/')
  // [MQTT-4.7.2-1] a filter starting with a wildcard does not match topics starting with '$'
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false
  for (let i = 0; i < f.length; i++) {
    const level = f[i]
    if (level === '#') return true // matches the parent level and any number of children
    if (i >= t.length) return false
    if (level !== '+' && level !== t[i]) return false
  }
  return t.length === f.length
}
