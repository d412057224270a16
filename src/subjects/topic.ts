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

function checkCommon(what: string, topic: string): void {
  // [MQTT-4.7.3-1] topic names and filters are at least one character long
  if (topic.length === 0) fail(what, topic, 'it is empty')
  // [MQTT-4.7.3-2] no U+0000
  if (topic.includes('\u0000')) fail(what, topic, 'it contains the null character U+0000')
  if (Buffer.byteLength(topic, 'utf8') > MAX_TOPIC_BYTES) fail(what, topic, `it is longer than ${MAX_TOPIC_BYTES} bytes`)
  if (!topic.isWellFormed()) fail(what, topic, 'it is not well-formed UTF-16 (lone surrogate)')
}

/** A concrete topic a message is published to: no wildcards [MQTT-4.7.1-1]. */
export function validateTopicName(topic: string): void {
  checkCommon('topic', topic)
  if (topic.includes('+') || topic.includes('#')) {
    fail('topic', topic, "wildcards '+' and '#' are only allowed in subscription filters", 'ESUBJECT_WILDCARD')
  }
}

/** A subscription filter: '+' a whole level [MQTT-4.7.1-3], '#' the whole last level [MQTT-4.7.1-2]. */
export function validateTopicFilter(filter: string): void {
  checkCommon('filter', filter)
  const levels = filter.split('/')
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] as string
    if (level === '#') {
      if (i !== levels.length - 1) fail('filter', filter, "'#' must be the last level")
    } else if (level === '+') {
      // a whole level: fine
    } else if (level.includes('#')) {
      fail('filter', filter, "'#' must occupy a whole level, as in 'a/#'")
    } else if (level.includes('+')) {
      fail('filter', filter, "'+' must occupy a whole level, as in 'a/+/c'")
    }
  }
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
