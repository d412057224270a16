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
        payload: fc.oneof(fc.string().map((s) => Buffer.from(s)), fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)), fc.constant(Buffer.from('{"t":21.5}'))),
        headers: fc.option(fc.record({ contentType: fc.string(), userProperties: fc.array(fc.tuple(fc.string(), fc.string()), { maxLength: 2 }) }, { requiredKeys: [] }), { nil: null }),
      }), { maxLength: 20 }),
      fc.boolean(),
      (records, sse) => {
        const lines = new RecordLines(sse, 64) // small: it must grow
        for (const r of records) lines.add(r.seq, r.ts, r.subject, r.payload, r.headers)
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
})
