import { describe, expect, it } from 'vitest'
import { DuplicateWindow } from '../../src/stream/dedupe.ts'

describe('DuplicateWindow', () => {
  it('remembers ids for the window, then forgets them', () => {
    const w = new DuplicateWindow(1000)
    w.add('a', 1, 100)
    w.add('b', 2, 600)
    expect(w.lookup('a', 1100)?.seq).toBe(1)
    expect(w.lookup('a', 1101)).toBeNull()
    expect(w.lookup('b', 1101)?.seq).toBe(2)
    expect(w.size).toBe(1)
    w.add('a', 3, 1200) // the same id again after it expired
    expect(w.lookup('a', 1300)).toMatchObject({ seq: 3, timestamp: 1200 })
  })

  it('forgets ids above a rolled-back sequence', () => {
    const w = new DuplicateWindow(1000)
    for (let i = 1; i <= 5; i++) w.add(`id${i}`, i, i)
    w.forgetAbove(3)
    expect(w.lookup('id3', 10)?.seq).toBe(3)
    expect(w.lookup('id4', 10)).toBeNull()
    expect(w.size).toBe(3)
  })

  it('prunes in amortised constant time over many ids', () => {
    const w = new DuplicateWindow(10)
    for (let i = 0; i < 100_000; i++) {
      w.add(String(i), i, i)
      w.prune(i)
    }
    expect(w.size).toBe(11)
    w.clear()
    expect(w.size).toBe(0)
  })
})
