import { readFileSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { EdgebusError, isEdgebusError } from '../../src/core/errors.ts'
import { crc32c } from '../../src/storage/crc32c.ts'
import { encodeRecord, maxEncodedSize, type RecordInput } from '../../src/stream/record.ts'
import { FrameCursor, JournalSegment, nodeFileOps, parseSegmentFileName, segmentFileName, Step, type JournalFileOps } from '../../src/stream/segment.ts'
import { SequenceIndex } from '../../src/stream/seq-index.ts'
import { payloadFor, tempDir } from './support.ts'

function frames(firstSeq: number, n: number): { buf: Buffer; ends: number[] } {
  const parts: Buffer[] = []
  const ends: number[] = []
  let total = 0
  for (let i = 0; i < n; i++) {
    const rec: RecordInput = { subject: `s/${i % 3}`, payload: payloadFor(firstSeq + i) }
    const b = Buffer.alloc(maxEncodedSize(rec))
    const len = encodeRecord(b, 0, firstSeq + i, 1000 + i, rec)
    parts.push(b.subarray(0, len))
    total += len
    ends.push(total)
  }
  return { buf: Buffer.concat(parts), ends }
}

function scanFile(dir: string, base = 1): ReturnType<JournalSegment['scan']> & { index: SequenceIndex } {
  const seg = JournalSegment.open(dir, base)
  const index = new SequenceIndex(64)
  try {
    return { ...seg.scan(index, base - 1), index }
  } finally {
    seg.close()
  }
}

describe('segment files', () => {
  it('names sort as numbers and parse back', () => {
    expect(segmentFileName(1)).toBe('00000000000000000001.seg')
    expect(segmentFileName(2 ** 53 - 1, '.idx')).toBe('00009007199254740991.idx')
    expect(parseSegmentFileName('00000000000000000042.seg')).toBe(42)
    expect(parseSegmentFileName('42.seg')).toBeNull()
    expect(parseSegmentFileName('00000000000000000042.seg.damaged')).toBeNull()
  })

  it('appends, reads back at positions and scans', async () => {
    const dir = tempDir()
    const seg = JournalSegment.create(dir, 1)
    const { buf, ends } = frames(1, 10)
    await seg.append(buf, 0, ends[4] as number)
    await seg.append(buf, ends[4] as number, buf.length - (ends[4] as number))
    await seg.sync()
    expect(seg.size).toBe(buf.length)
    const back = Buffer.alloc(buf.length)
    expect(seg.readSync(back, 0, back.length, 0)).toBe(buf.length)
    expect(back.equals(buf)).toBe(true)
    expect(() => JournalSegment.create(dir, 1)).toThrow(EdgebusError) // never over an existing file
    seg.close()
    const r = scanFile(dir)
    expect(r).toMatchObject({ validEnd: buf.length, tornBytes: 0, corrupt: [], unsupportedAt: -1 })
    expect(r.index.records).toBe(10)
    expect(r.index.lastSeq).toBe(10)
  })

  it('a torn tail at every byte offset of the last record is cut back to the record before', () => {
    const dir = tempDir()
    const { buf, ends } = frames(1, 3)
    const path = join(dir, segmentFileName(1))
    const before = ends[1] as number
    for (let cut = before + 1; cut < buf.length; cut++) {
      writeFileSync(path, buf.subarray(0, cut))
      const r = scanFile(dir)
      expect(r.validEnd, `cut at ${cut}`).toBe(before)
      expect(r.tornBytes).toBe(cut - before)
      expect(r.corrupt).toEqual([])
      expect(r.index.lastSeq).toBe(2)
    }
    // and a torn first record leaves nothing
    for (let cut = 1; cut < (ends[0] as number); cut++) {
      writeFileSync(path, buf.subarray(0, cut))
      const r = scanFile(dir)
      expect(r).toMatchObject({ validEnd: 0, tornBytes: cut })
      expect(r.index.records).toBe(0)
    }
  })

  it('a zero-filled tail (a lost write after a power cut) is a torn tail', () => {
    const dir = tempDir()
    const { buf } = frames(1, 3)
    writeFileSync(join(dir, segmentFileName(1)), Buffer.concat([buf, Buffer.alloc(4096)]))
    expect(scanFile(dir)).toMatchObject({ validEnd: buf.length, tornBytes: 4096, corrupt: [] })
  })

  it('a flipped bit anywhere in a middle record skips exactly that record and reports it', () => {
    const dir = tempDir()
    const { buf, ends } = frames(1, 5)
    const path = join(dir, segmentFileName(1))
    const start = ends[1] as number
    const end = ends[2] as number
    for (let bit = start * 8; bit < end * 8; bit++) {
      const f = Buffer.from(buf)
      f[bit >>> 3] = (f[bit >>> 3] as number) ^ (1 << (bit & 7))
      writeFileSync(path, f)
      const r = scanFile(dir)
      expect(r.corrupt, `bit ${bit}`).toEqual([{ start, end, afterSeq: 2, beforeSeq: 4, claimedSeq: expect.any(Number) }])
      expect(r.validEnd).toBe(buf.length)
      expect(r.index.records).toBe(4)
    }
  })

  it('a frame of an unknown format version is reported, not taken for damage', () => {
    const dir = tempDir()
    const { buf } = frames(1, 2)
    const f = Buffer.from(buf)
    f[1] = 2 // version 2, with its CRC made valid again
    const len = f.readUInt32LE(4)
    f.writeUInt32LE(crc32c(f, 0, len - 4), len - 4)
    writeFileSync(join(dir, segmentFileName(1)), f)
    expect(scanFile(dir).unsupportedAt).toBe(0)
  })

  it('a failed write is cut back and reported as EJOURNAL_FULL (ENOSPC) with nothing half-written', async () => {
    const dir = tempDir()
    let calls = 0
    const ops: JournalFileOps = {
      ...nodeFileOps,
      // the first call writes half, the second fails like a full disk
      write: async (fd, b, off, len, pos) => {
        if (++calls % 2 === 1) return nodeFileOps.write(fd, b, off, Math.max(1, len >> 1), pos)
        throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })
      },
    }
    const seg = JournalSegment.create(dir, 1, ops)
    const { buf } = frames(1, 4)
    const err = await seg.append(buf, 0, buf.length).catch((e: unknown) => e)
    expect(isEdgebusError(err, 'EJOURNAL_FULL')).toBe(true)
    expect((err as EdgebusError).detail).toMatchObject({ errno: 'ENOSPC', cutBack: true })
    expect(seg.size).toBe(0)
    expect(readFileSync(join(dir, segmentFileName(1))).length).toBe(0)
    seg.close()
  })

  it('a cursor reads frames through small chunks, frames larger than a chunk included', () => {
    const dir = tempDir()
    const seg = JournalSegment.create(dir, 1)
    const big: RecordInput = { subject: 'big', payload: Buffer.alloc(10_000, 7) }
    const { buf } = frames(1, 20)
    const b2 = Buffer.alloc(maxEncodedSize(big))
    const n = encodeRecord(b2, 0, 21, 5, big)
    writeFileSync(seg.path, Buffer.concat([buf, b2.subarray(0, n)]))
    seg.close()
    const s2 = JournalSegment.open(dir, 1)
    const cur = new FrameCursor(s2, 0, 0, 100, true)
    const seen: number[] = []
    for (;;) {
      const st = cur.step()
      if (st === Step.need) cur.fill()
      else if (st === Step.frame) seen.push(cur.frameSeq)
      else break
    }
    expect(seen).toEqual(Array.from({ length: 21 }, (_, i) => i + 1))
    s2.close()
    truncateSync(seg.path, 0)
  })
})
