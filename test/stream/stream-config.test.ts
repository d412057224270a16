import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { isEdgebusError } from '../../src/core/errors.ts'
import { checkNoOverlap, filtersOverlap, parseStreamDefinition } from '../../src/stream/stream-config.ts'
import { topicMatchesFilter } from '../../src/subjects/topic.ts'

function codeOf(fn: () => unknown): string | null {
  try { fn(); return null } catch (err) { return isEdgebusError(err) ? `${err.code}: ${err.message}` : 'OTHER' }
}

describe('stream definitions', () => {
  it('reads subjects in either syntax and limits as people write them', () => {
    const def = parseStreamDefinition({ name: 'telemetry', subjects: ['sensors.>', 'meters/+/kwh'], maxBytes: '1GB', maxAge: '7d', maxMsgSize: '64KB', maxMsgs: 1000, discard: 'new', fsync: 'always' })
    expect(def.subjects).toEqual(['sensors/#', 'meters/+/kwh'])
    expect(def.limits).toMatchObject({ maxBytes: 1024 ** 3, maxAge: 7 * 86_400_000, maxMsgs: 1000, discard: 'new', duplicateWindow: 120_000 })
    expect(def.maxMsgSize).toBe(65_536)
    expect(def.fsync).toBe('always')
  })

  it('defaults: group commit, discard old, a 2 minute dedupe window, no limits', () => {
    const def = parseStreamDefinition({ name: 's', subjects: ['a'] })
    expect(def).toMatchObject({ fsync: 'batch', maxMsgSize: 0, limits: { discard: 'old', maxMsgs: 0, maxBytes: 0, maxAge: 0, duplicateWindow: 120_000 } })
  })

  it('names the setting, the value and the fix', () => {
    expect(codeOf(() => parseStreamDefinition({ name: 'a.b', subjects: ['x'] }))).toMatch(/ESTREAM_INVALID: .*name "a.b"/)
    expect(codeOf(() => parseStreamDefinition({ name: 's', subjects: [] }))).toMatch(/subjects/)
    expect(codeOf(() => parseStreamDefinition({ name: 's', subjects: ['a.>.b'] }))).toMatch(/ESTREAM_INVALID: stream "s": subjects "a.>.b"/)
    expect(codeOf(() => parseStreamDefinition({ name: 's', subjects: ['a'], maxAge: 'forever' }))).toMatch(/maxAge "forever".*'7d'/)
    expect(codeOf(() => parseStreamDefinition({ name: 's', subjects: ['a'], fsync: 'sometimes' }))).toMatch(/always, batch, none/)
    expect(codeOf(() => parseStreamDefinition({ name: 's', subjects: ['a'], maxAgee: '1d' }))).toMatch(/"maxAgee" is not a stream setting/)
  })
})

describe('overlapping streams', () => {
  it('finds the overlaps people make', () => {
    expect(filtersOverlap('sensors/#', 'sensors/kitchen/temp')).toBe(true)
    expect(filtersOverlap('sensors/+/temp', 'sensors/kitchen/+')).toBe(true)
    expect(filtersOverlap('a/#', 'a')).toBe(true)
    expect(filtersOverlap('a/b', 'a/c')).toBe(false)
    expect(filtersOverlap('a/+', 'a/b/c')).toBe(false)
    expect(filtersOverlap('#', '$SYS/x')).toBe(false)
  })

  it('agrees with "some topic matches both" on random filters', () => {
    const level = fc.constantFrom('a', 'b', '+', '#', '$s')
    const filter = fc.array(level, { minLength: 1, maxLength: 4 }).map((p) => { const i = p.indexOf('#'); return (i === -1 ? p : p.slice(0, i + 1)).join('/') })
    // every topic the two filters could share is built from their literal levels plus one other
    const topics = (n: number): string[] => {
      const out: string[] = []
      const walk = (prefix: string[]): void => {
        if (prefix.length > 0) out.push(prefix.join('/'))
        if (prefix.length === n) return
        for (const l of ['a', 'b', 'z', '$s']) walk([...prefix, l])
      }
      walk([])
      return out
    }
    const all = topics(5)
    fc.assert(fc.property(filter, filter, (f, g) => {
      const expected = all.some((t) => topicMatchesFilter(t, f) && topicMatchesFilter(t, g))
      expect(filtersOverlap(f, g)).toBe(expected)
    }), { numRuns: 1500 })
  })

  it('refuses a stream that overlaps another, naming both', () => {
    const a = parseStreamDefinition({ name: 'a', subjects: ['sensors.>'] })
    const b = parseStreamDefinition({ name: 'b', subjects: ['sensors.kitchen.*'] })
    expect(codeOf(() => checkNoOverlap(b, [a]))).toMatch(/ESTREAM_OVERLAP: stream "b" subject "sensors\/kitchen\/\+" overlaps stream "a"/)
  })
})
