import { describe, expect, it } from 'vitest'
import { SubjectTracker } from '../../src/stream/subject-tracker.ts'

describe('SubjectTracker', () => {
  it('keeps the newest N per subject and reports what it evicts', () => {
    const t = new SubjectTracker(2)
    t.add('a', 1, 10)
    expect(t.evictedSeq).toBe(-1)
    t.add('b', 2, 20)
    t.add('a', 3, 30)
    t.add('a', 4, 40)
    expect([t.evictedSeq, t.evictedSize]).toEqual([1, 10])
    expect([t.isLive('a', 1), t.isLive('a', 3), t.isLive('a', 4), t.isLive('b', 2), t.isLive('b', 3), t.isLive('c', 1)]).toEqual([false, true, true, true, false, false])
    expect(t.countOf('a')).toBe(2)
    expect(t.subjects).toBe(2)
  })

  it('forgets records leaving by retention, and subjects left empty', () => {
    const t = new SubjectTracker(3)
    for (let s = 1; s <= 3; s++) t.add('a', s, 1)
    t.remove('a', 1)
    expect(t.isLive('a', 1)).toBe(false)
    t.remove('a', 3)
    expect(t.countOf('a')).toBe(1)
    t.remove('a', 2)
    expect(t.subjects).toBe(0)
  })

  it('stays small over a long run of one subject', () => {
    const t = new SubjectTracker(1)
    for (let s = 1; s <= 100_000; s++) t.add('x', s, 1)
    expect(t.isLive('x', 100_000)).toBe(true)
    expect(t.isLive('x', 99_999)).toBe(false)
  })
})
