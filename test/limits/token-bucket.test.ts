import { describe, expect, it } from 'vitest'
import { TokenBucket } from '../../src/limits/token-bucket.ts'

describe('TokenBucket', () => {
  it('gives a burst, then the rate; says how long to wait when over', () => {
    const b = new TokenBucket(10, 5, 0)
    for (let i = 0; i < 5; i++) expect(b.take(0)).toBe(0)
    expect(b.take(0)).toBe(100) // one token short: 1/10 s
    expect(b.take(100)).toBe(100) // refilled one, took one: still one short
    expect(b.take(300)).toBe(0) // +2
    expect(b.full(300)).toBe(false)
    expect(b.full(10_000)).toBe(true) // capped at the burst
    expect(b.take(10_000, 5)).toBe(0)
    expect(b.take(10_000, 3)).toBe(300)
  })

  it('tryTake takes all or nothing', () => {
    const b = new TokenBucket(1, 2, 0)
    expect(b.tryTake(0, 2)).toBe(true)
    expect(b.tryTake(0)).toBe(false)
    expect(b.tryTake(999)).toBe(false) // 0.999 tokens: not enough, and not spent
    expect(b.tryTake(1000)).toBe(true)
  })
})
