import { describe, expect, it } from 'vitest'
import { SequenceIndex } from '../../src/stream/seq-index.ts'

function build(n: number, interval = 100): SequenceIndex {
  const idx = new SequenceIndex(interval)
  for (let i = 0; i < n; i++) idx.add(10 + i, i * 30, 5000 + Math.floor(i / 3), 30)
  return idx
}

describe('SequenceIndex', () => {
  it('keeps a sparse entry every intervalBytes and the segment totals', () => {
    const idx = build(100)
    expect(idx.entries).toBe(25) // one per 4 records of 30 bytes (>= 100 bytes apart)
    expect(idx).toMatchObject({ records: 100, recordBytes: 3000, firstSeq: 10, lastSeq: 109, firstTime: 5000, lastTime: 5033 })
  })

  it('finds the entry to scan from, by sequence and by time', () => {
    const idx = build(100)
    expect(idx.floorBySeq(9)).toBe(-1)
    expect(idx.seqAt(idx.floorBySeq(10))).toBe(10)
    expect(idx.seqAt(idx.floorBySeq(13))).toBe(10)
    expect(idx.seqAt(idx.floorBySeq(14))).toBe(14)
    expect(idx.seqAt(idx.floorBySeq(1000))).toBe(106)
    expect(idx.posAt(idx.floorBySeq(14))).toBe(120)
    // an entry strictly before the first record at or after the time
    const i = idx.floorByTime(5010)
    expect(idx.timeAt(i)).toBeLessThan(5010)
    expect(idx.timeAt(i + 1)).toBeGreaterThanOrEqual(5010)
    expect(idx.floorByTime(0)).toBe(0)
  })

  it('persists, and refuses a file that is damaged or describes another size', () => {
    const idx = build(100)
    const bytes = idx.encode(3000)
    const back = SequenceIndex.decode(bytes, 3000)
    expect(back).not.toBeNull()
    expect(back?.encode(3000).equals(bytes)).toBe(true)
    expect(SequenceIndex.decode(bytes, 3030)).toBeNull() // the segment grew since
    expect(SequenceIndex.decode(bytes.subarray(0, bytes.length - 1), 3000)).toBeNull()
    for (const at of [0, 4, 9, 20, 80, bytes.length - 1]) {
      const b = Buffer.from(bytes)
      b[at] = (b[at] as number) ^ 0x10
      expect(SequenceIndex.decode(b, 3000), `byte ${at}`).toBeNull()
    }
    expect(SequenceIndex.decode(Buffer.alloc(0), 0)).toBeNull()
    const empty = new SequenceIndex(100)
    expect(SequenceIndex.decode(empty.encode(0), 0)?.records).toBe(0)
  })
})
