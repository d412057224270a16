import { describe, expect, it } from 'vitest'
import { RateHistory } from '../../src/core/rate-history.ts'

describe('RateHistory', () => {
  it('keeps the per-second difference of each counter, oldest first, and the time of the last point', () => {
    const h = new RateHistory(5)
    let n = 100
    h.series('in', () => n)
    h.sample(1000) // the first point of a series has no rate
    n += 7; h.sample(2000)
    n += 3; h.sample(3000)
    expect(h.snapshot()).toEqual({ interval: 1, end: 3000, series: { in: [0, 7, 3] } })
    expect(h.snapshot(2).series.in).toEqual([7, 3])
  })

  it('keeps only the last `size` points (a ring) and counts a counter that went down as 0', () => {
    const h = new RateHistory(3)
    let n = 0
    h.series('x', () => n)
    for (const step of [0, 1, 2, 3, 4, -10, 5]) { n += step; h.sample(n) }
    expect(h.snapshot().series.x).toEqual([4, 0, 5])
  })

  it('counts a family whose members come and go (streams, bridges), a new member starting at 0, a gone one dropped', () => {
    const h = new RateHistory(10)
    const counts = new Map<string, number>([['a', 10]])
    h.family('stream.', () => counts)
    h.sample(1)
    counts.set('a', 15); counts.set('b', 40)
    h.sample(2)
    counts.set('a', 16); counts.set('b', 42)
    h.sample(3)
    expect(h.snapshot().series).toEqual({ 'stream.a': [0, 5, 1], 'stream.b': [0, 0, 2] })
    counts.delete('a')
    h.sample(4)
    expect(Object.keys(h.snapshot().series)).toEqual(['stream.b'])
    expect(h.snapshot(10, ['messages.']).series).toEqual({})
    expect(h.snapshot(2, ['stream.b']).series).toEqual({ 'stream.b': [2, 0] })
  })

  it('stops a series when its registration is undone', () => {
    const h = new RateHistory(4)
    const stop = h.series('gone', () => 1)
    h.sample(1)
    stop()
    h.sample(2)
    expect(h.snapshot().series).toEqual({})
  })
})
