import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { covers, overlaps } from '../../src/auth/filter-relation.ts'
import { topicMatchesFilter } from '../../src/subjects/topic.ts'
import { allTopics, filterArb, TOPICS_5 } from './support.ts'

const TOPICS_4 = allTopics(4)

// Filters of up to 4 levels, topics of up to 5: a counterexample, if any, has at most one level more
// than the longer filter, and needs no values beyond the filters' literals and one fresh value.
describe('filter relations', () => {
  // [filter levels, topic levels, runs]: many short cases, fewer long ones
  for (const [levels, topics, runs] of [[3, TOPICS_4, 2000], [4, TOPICS_5, 300]] as const) {
    it(`covers(a, b) is "every topic b matches, a matches" (filters of ${levels} levels, brute force)`, () => {
      fc.assert(fc.property(filterArb(levels), filterArb(levels), (a, b) => {
        const expected = topics.every((t) => !topicMatchesFilter(t, b) || topicMatchesFilter(t, a))
        expect(covers(a, b), `covers(${a}, ${b})`).toBe(expected)
      }), { numRuns: runs })
    })

    it(`overlaps(a, b) is "some topic matches both" (filters of ${levels} levels, brute force)`, () => {
      fc.assert(fc.property(filterArb(levels), filterArb(levels), (a, b) => {
        const expected = topics.some((t) => topicMatchesFilter(t, a) && topicMatchesFilter(t, b))
        expect(overlaps(a, b), `overlaps(${a}, ${b})`).toBe(expected)
        expect(overlaps(b, a)).toBe(expected)
      }), { numRuns: runs })
    })
  }

  it('decides the everyday cases', () => {
    expect(covers('a/#', 'a')).toBe(true) // '#' includes the parent level [MQTT-4.7.1-2]
    expect(covers('a/#', 'a/+/c')).toBe(true)
    expect(covers('a/+', 'a/#')).toBe(false)
    expect(covers('a', 'a/#')).toBe(false)
    expect(covers('+/b', 'a/b')).toBe(true)
    expect(covers('a/b', '+/b')).toBe(false)
    expect(covers('#', '$SYS/x')).toBe(false) // [MQTT-4.7.2-1]
    expect(covers('$SYS/#', '$SYS/+')).toBe(true)
    expect(covers('#', 'x/#')).toBe(true)
    expect(overlaps('a/+', '+/b')).toBe(true)
    expect(overlaps('a/b', 'a/c')).toBe(false)
    expect(overlaps('+/#', '$SYS/#')).toBe(false)
    expect(overlaps('a/#', 'a')).toBe(true)
    expect(overlaps('a/+', 'a')).toBe(false)
  })

  it('is reflexive and consistent: covers implies overlaps', () => {
    fc.assert(fc.property(filterArb(), filterArb(), (a, b) => {
      expect(covers(a, a)).toBe(true)
      expect(overlaps(a, a)).toBe(true)
      if (covers(a, b)) expect(overlaps(a, b)).toBe(true)
    }), { numRuns: 500 })
  })
})
