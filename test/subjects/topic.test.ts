import { describe, expect, it } from 'vitest'
import { isEdgebusError } from '../../src/core/errors.ts'
import { topicMatchesFilter, validateTopicFilter, validateTopicName } from '../../src/subjects/topic.ts'

function codeOf(fn: () => void): string | null {
  try { fn(); return null } catch (err) { return isEdgebusError(err) ? err.code : 'OTHER' }
}

describe('MQTT topic names', () => {
  it('accepts ordinary, $-prefixed, empty-level and unicode topics', () => {
    for (const t of ['a', 'a/b/c', '$SYS/broker/uptime', '/', 'a//b', '/leading', 'trailing/', 'ü/温度', 'has space/x']) {
      expect(codeOf(() => validateTopicName(t)), t).toBeNull()
    }
  })
  it('refuses empty topics, NUL and wildcards with stable codes', () => {
    expect(codeOf(() => validateTopicName(''))).toBe('ESUBJECT_INVALID')
    expect(codeOf(() => validateTopicName('a\u0000b'))).toBe('ESUBJECT_INVALID')
    expect(codeOf(() => validateTopicName('a/+/b'))).toBe('ESUBJECT_WILDCARD')
    expect(codeOf(() => validateTopicName('a/#'))).toBe('ESUBJECT_WILDCARD')
    expect(codeOf(() => validateTopicName('x'.repeat(65_536)))).toBe('ESUBJECT_INVALID')
  })
})

describe('MQTT topic filters', () => {
  it('accepts whole-level wildcards', () => {
    for (const f of ['#', '+', 'a/#', 'a/+/c', '+/+', '/+', '+/#', '$SYS/#']) {
      expect(codeOf(() => validateTopicFilter(f)), f).toBeNull()
    }
  })
  it('refuses partial-level and misplaced wildcards', () => {
    for (const f of ['a/#/b', 'a#', 'a/b#', 'a+', 'a/+b', '#/a', '']) {
      expect(codeOf(() => validateTopicFilter(f)), f).toBe('ESUBJECT_INVALID')
    }
  })
})

describe('reference matcher', () => {
  const cases: Array<[string, string, boolean]> = [
    ['a/b', 'a/b', true],
    ['a/b', 'a/+', true],
    ['a/b', '+/+', true],
    ['a/b', '#', true],
    ['a', 'a/#', true], // '#' also matches the parent level [MQTT-4.7.1-2]
    ['a/b/c', 'a/#', true],
    ['a/b/c', 'a/+', false],
    ['a', 'a/+', false],
    ['/a', '+/a', true], // empty first level
    ['a//b', 'a/+/b', true],
    ['$SYS/x', '#', false], // [MQTT-4.7.2-1]
    ['$SYS/x', '+/x', false],
    ['$SYS/x', '$SYS/#', true],
    ['$SYS/x', '$SYS/+', true],
  ]
  for (const [topic, filter, expected] of cases) {
    it(`${filter} ${expected ? 'matches' : 'does not match'} ${topic}`, () => {
      expect(topicMatchesFilter(topic, filter)).toBe(expected)
    })
  }
})
