import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { filterSubject, messageSubject, retainedSubject, retainedTopic, subjectTopic } from '../../src/cluster/subject-map.ts'
import { parseNatsSubject } from '../../src/subjects/subject.ts'

const P = 'eb.site.'
/** MQTT topic names: levels of any characters but the wildcards and NUL. */
const topic = fc.array(fc.string({ unit: 'grapheme', maxLength: 6 }).filter((l) => !/[+#\u0000]/.test(l)), { minLength: 1, maxLength: 5 }).map((l) => l.join('/'))

describe('cluster subjects', () => {
  it('spell every MQTT topic as a valid NATS subject under the prefix, and back, byte for byte', () => {
    fc.assert(fc.property(topic, (t) => {
      const { subject, exact } = messageSubject(P, t)
      expect(subject.startsWith(`${P}m.`)).toBe(true)
      expect(/\s/.test(subject)).toBe(false) // NATS splits its protocol lines on whitespace
      if (exact) expect(subjectTopic(P, subject)).toBe(t)
      else expect(/\s/.test(t)).toBe(true) // only whitespace needs the exact topic in a header
    }), { numRuns: 500 })
  })

  it('map wildcard filters to NATS wildcards', () => {
    expect(filterSubject(P, 'farm/+/temp')).toBe(`${P}m.farm.*.temp`)
    expect(filterSubject(P, 'farm/#')).toBe(`${P}m.farm.>`)
    expect(filterSubject(P, '#')).toBe(`${P}m.>`)
    expect(filterSubject(P, 'a b/+')).toBe(`${P}m.a_b.*`) // a superset: the receiver matches the exact topic
  })

  it('keep retained topics as one token of any content', () => {
    fc.assert(fc.property(topic, (t) => {
      const s = retainedSubject(P, t)
      expect(parseNatsSubject(s, false)).toHaveLength(4)
      expect(retainedTopic(P, s)).toBe(t)
    }), { numRuns: 300 })
  })
})
