import { describe, expect, it } from 'vitest'
import { RateMeter, reconnectDelay } from '../../src/bridge/backoff.ts'

describe('reconnectDelay', () => {
  it('doubles from min up to max, with half of it random (equal jitter)', () => {
    const lowest = (round: number) => reconnectDelay(round, 500, 30_000, () => 0)
    const highest = (round: number) => reconnectDelay(round, 500, 30_000, () => 1)
    expect([1, 2, 3, 4].map(highest)).toEqual([500, 1000, 2000, 4000])
    expect([1, 2, 3, 4].map(lowest)).toEqual([250, 500, 1000, 2000])
    expect(highest(7)).toBe(30_000) // 500 * 2^6 = 32,000: capped
    expect(lowest(1000)).toBe(15_000) // no overflow however long the outage
  })
})

describe('RateMeter', () => {
  it('is the count per second over the last interval', () => {
    const m = new RateMeter(0)
    m.sample(500, 1000)
    expect(m.rate).toBe(500)
    m.sample(800, 1500)
    expect(m.rate).toBe(600)
    m.sample(800, 1500) // no time passed: kept
    expect(m.rate).toBe(600)
  })
})
