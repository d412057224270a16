import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Journal, type JournalOptions } from '../../src/stream/journal.ts'
import { crashCopy, tempDir } from './support.ts'

/**
 * The journal against a naive model: random appends (in concurrent groups, so batches vary), reopens,
 * compactions and removeBefore calls under random limits; after every step the live records, counts
 * and first sequence must be what a plain list with the retention rules applied says.
 */
interface ModelRecord { seq: number; subject: string; size: number; body: string; time: number }

class Model {
  live: ModelRecord[] = []
  constructor(readonly maxMsgs: number, readonly maxBytes: number, readonly perSubject: number, readonly maxAge: number) {}
  append(r: ModelRecord, now: number): void {
    this.live.push(r)
    if (this.perSubject > 0) {
      const same = this.live.filter((x) => x.subject === r.subject)
      if (same.length > this.perSubject) this.live.splice(this.live.indexOf(same[0] as ModelRecord), 1)
    }
    const bytes = (): number => this.live.reduce((n, x) => n + x.size, 0)
    while ((this.maxMsgs > 0 && this.live.length > this.maxMsgs) || (this.maxBytes > 0 && bytes() > this.maxBytes)) this.live.shift()
    this.applyAge(now)
  }
  applyAge(now: number): void {
    if (this.maxAge > 0) while (this.live.length > 0 && (this.live[0] as ModelRecord).time < now - this.maxAge) this.live.shift()
  }
  removeBefore(seq: number): void {
    this.live = this.live.filter((x) => x.seq >= seq)
  }
}

type Op =
  | { kind: 'append'; group: Array<{ subject: number; len: number }> }
  | { kind: 'reopen' }
  | { kind: 'crash' }
  | { kind: 'compact' }
  | { kind: 'removeBefore'; back: number }
  | { kind: 'tick'; ms: number }
  | { kind: 'applyRetention' }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('append' as const), group: fc.array(fc.record({ subject: fc.nat({ max: 5 }), len: fc.nat({ max: 60 }) }), { minLength: 1, maxLength: 12 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'crash' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'compact' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('removeBefore' as const), back: fc.nat({ max: 10 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('tick' as const), ms: fc.nat({ max: 3000 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'applyRetention' as const }) },
)

describe('Journal against a model', () => {
  it('keeps exactly the records the retention rules keep, through reopens, crashes and compactions', async () => {
    await fc.assert(fc.asyncProperty(
      fc.record({ maxMsgs: fc.constantFrom(0, 5, 17), maxBytes: fc.constantFrom(0, 700, 2000), perSubject: fc.constantFrom(0, 1, 2), maxAge: fc.constantFrom(0, 5000) }),
      fc.array(op, { minLength: 1, maxLength: 25 }),
      async (limits, ops) => {
        let dir = tempDir()
        let now = 1_000_000
        const opts: JournalOptions = {
          segmentBytes: 400, indexIntervalBytes: 64, clock: () => now,
          limits: { maxMsgs: limits.maxMsgs, maxBytes: limits.maxBytes, maxMsgsPerSubject: limits.perSubject, maxAge: limits.maxAge },
        }
        const model = new Model(limits.maxMsgs, limits.maxBytes, limits.perSubject, limits.maxAge)
        let j = await Journal.open(dir, opts)
        let next = 1
        const abandoned: Journal[] = []
        try {
          for (const o of ops) {
            if (o.kind === 'append') {
              const ps = o.group.map((g) => {
                const seq = next++
                const subject = `s/${g.subject}`
                const body = `${seq}:${'y'.repeat(g.len)}`
                model.append({ seq, subject, size: 30 + subject.length + body.length, body, time: now }, now)
                return j.append({ subject, payload: Buffer.from(body) })
              })
              await Promise.all(ps)
            } else if (o.kind === 'reopen') {
              await j.close()
              j = await Journal.open(dir, opts)
              model.applyAge(now)
            } else if (o.kind === 'crash') {
              // the files as a crash would leave them now (no close), opened again
              abandoned.push(j)
              dir = crashCopy(dir)
              j = await Journal.open(dir, opts)
              model.applyAge(now)
            } else if (o.kind === 'tick') {
              now += o.ms
            } else if (o.kind === 'applyRetention') {
              j.applyRetention()
              model.applyAge(now)
            } else if (o.kind === 'compact') {
              await j.compact()
            } else {
              const seq = Math.max(1, next - o.back)
              await j.removeBefore(seq)
              model.removeBefore(seq)
            }
            const got = [...j.iterate()].map((r) => `${r.seq}|${r.subject}|${r.payload.toString()}`)
            expect(got).toEqual(model.live.map((r) => `${r.seq}|${r.subject}|${r.body}`))
            // the in-place reader sees the same, also when stopped after every few records and resumed
            const visited: string[] = []
            const reader = j.reader()
            let batch = 0
            while (reader.read((v) => { visited.push(`${v.seq}|${v.subject}|${v.buf.toString('utf8', v.payloadStart, v.payloadEnd)}`); return ++batch % 3 !== 0 }));
            expect(visited).toEqual(got)
            expect(j.messages).toBe(model.live.length)
            expect(j.bytes).toBe(model.live.reduce((n, x) => n + x.size, 0))
            expect(j.firstSeq).toBe(model.live[0]?.seq ?? next)
            expect(j.lastSeq).toBe(next - 1)
            for (const r of model.live) expect(j.read(r.seq)?.payload.toString()).toBe(r.body)
          }
        } finally {
          await j.close()
          for (const a of abandoned) await a.close()
        }
      },
    ), { numRuns: 40 })
  })
})
