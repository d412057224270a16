import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { RecordLines } from '../../src/http/record-lines.ts'

/** The line as the JSON it must be, built the slow, obvious way. */
function expected(seq: number, ts: number, subject: string, payload: Buffer, headers: { contentType?: string; userProperties?: Array<[string, string]> } | null): Record<string, unknown> {
  const text = payload.toString('utf8')
  const o: Record<string, unknown> = { seq, time: new Date(ts).toISOString(), subject }
  if (Buffer.from(text, 'utf8').equals(payload)) o.payload = text
  else o.payload_base64 = payload.toString('base64')
  if (headers?.contentType !== undefined) o.contentType = headers.contentType
  if (headers?.userProperties !== undefined) o.userProperties = headers.userProperties
  return o
}

describe('RecordLines', () => {
  it('writes each record as the JSON line it stands for: text, escapes, bytes as base64, headers', () => {
    fc.assert(fc.property(
      fc.array(fc.record({
        seq: fc.integer({ min: 1, max: 2 ** 50 }),
        ts: fc.integer({ min: 0, max: 4_000_000_000_000 }),
        subject: fc.constantFrom('a/b', 'sensors/ä/"x"', 'x'),
        payload: fc.oneof(
          fc.string().map((s) => Buffer.from(s)),
          fc.string({ unit: 'binary', maxLength: 200 }).map((s) => Buffer.from(s)), // every plane, 4-byte sequences
          fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)), // mostly not UTF-8: overlong, surrogate, cut sequences
          fc.constantFrom(...['eda080', 'c0af', 'f4908080', 'e282', 'f09f9880', 'efbbbf', 'c2a0'].map((h) => Buffer.concat([Buffer.from('x'), Buffer.from(h, 'hex')]))),
          fc.constant(Buffer.from('{"t":21.5}')),
        ),
        // where the payload sits in the read buffer: the line must take exactly its range
        pad: fc.nat(5),
        headers: fc.option(fc.record({ contentType: fc.string(), userProperties: fc.array(fc.tuple(fc.string(), fc.string()), { maxLength: 2 }) }, { requiredKeys: [] }), { nil: null }),
      }), { maxLength: 20 }),
      fc.boolean(),
      (records, sse) => {
        const lines = new RecordLines(sse, 64) // small: it must grow
        for (const r of records) {
          const framed = Buffer.concat([Buffer.alloc(r.pad, 0xff), r.payload, Buffer.alloc(3, 0x22)])
          lines.add(r.seq, r.ts, r.subject, framed, r.pad, r.pad + r.payload.length, r.headers)
        }
        const text = lines.take().toString('utf8')
        expect(lines.length).toBe(0)
        const parts = sse ? text.split('\n\n').filter(Boolean) : text.split('\n').filter(Boolean)
        expect(parts.length).toBe(records.length)
        parts.forEach((part, i) => {
          const r = records[i] as (typeof records)[number]
          let json = part
          if (sse) {
            expect(part.startsWith(`id: ${r.seq}\ndata: `)).toBe(true)
            json = part.slice(part.indexOf('data: ') + 6)
          }
          expect(JSON.parse(json)).toEqual(expected(r.seq, r.ts, r.subject, r.payload, r.headers))
        })
      },
    ), { numRuns: 300 })
  })

  it('hands large chunks over without a copy and fills recycled ones again, each chunk intact', () => {
    const lines = new RecordLines(false, 32 * 1024)
    const payload = Buffer.alloc(100, 0x61)
    const chunks: Buffer[] = []
    const seen = new Set<ArrayBufferLike>()
    for (let c = 0; c < 6; c++) {
      while (lines.length < 20_000) lines.add(c, 0, 's', payload, 0, payload.length, null)
      const chunk = lines.take()
      expect(lines.length).toBe(0)
      const text = chunk.toString()
      expect(text.split('\n').filter(Boolean).every((l) => JSON.parse(l).seq === c)).toBe(true)
      seen.add(chunk.buffer)
      chunks.push(chunk)
      if (c % 2 === 1) for (const done of chunks.splice(0)) lines.recycle(done) // two written, given back
    }
    expect(seen.size).toBeLessThanOrEqual(4) // memory comes back around instead of a new buffer per chunk
    lines.add(9, 0, 's', payload, 0, 3, null)
    const small = lines.take() // a small chunk is a copy: the big buffer stays for the next lines
    expect(JSON.parse(small.toString())).toMatchObject({ seq: 9, payload: 'aaa' })
    lines.add(10, 0, 's', payload, 0, 1, null)
    expect(small.toString()).toContain('"seq":9')
  })
})
