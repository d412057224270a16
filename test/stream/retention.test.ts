import { readdirSync } from 'node:fs'
import { describe, expect, it, vi } from 'vitest'
import { isEdgebusError } from '../../src/core/errors.ts'
import { Journal } from '../../src/stream/journal.ts'
import {
  dropReason, NO_LIMITS, refuseAppend, resolveLimits, worthCompacting, type RetentionLimits,
} from '../../src/stream/retention.ts'
import { crashCopy, fakeClock, payloadFor, tempDir } from './support.ts'

const L = (p: Partial<RetentionLimits>): RetentionLimits => resolveLimits(p)

async function fill(j: Journal, n: number, subject = (i: number): string => `s/${i % 5}`): Promise<void> {
  const ps = []
  for (let i = 0; i < n; i++) ps.push(j.append({ subject: subject(i), payload: payloadFor(j.lastSeq + j.pending + 1) }))
  await Promise.all(ps)
}

function seqs(j: Journal): number[] {
  return [...j.iterate()].map((r) => r.seq)
}

function segFiles(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.seg')).sort()
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20))

describe('retention rules (pure)', () => {
  it('resolves limits with 0 as "no limit" and refuses bad values', () => {
    expect(resolveLimits()).toEqual(NO_LIMITS)
    expect(L({ maxMsgs: 5, discard: 'new' })).toMatchObject({ maxMsgs: 5, discard: 'new', maxBytes: 0 })
    for (const bad of [{ maxMsgs: -1 }, { maxBytes: 1.5 }, { maxAge: Number.NaN }, { discard: 'x' }] as Array<Partial<RetentionLimits>>) {
      expect(() => resolveLimits(bad)).toThrow(expect.objectContaining({ code: 'ECONFIG_INVALID' }))
    }
  })

  it('discard new refuses over maxMsgs / maxBytes; a record over maxBytes is refused under both policies', () => {
    const usage = { messages: 10, bytes: 1000 }
    expect(refuseAppend(L({ maxMsgs: 10 }), usage, 50)).toBeNull()
    expect(refuseAppend(L({ maxMsgs: 10, discard: 'new' }), usage, 50)?.detail).toMatchObject({ limit: 'maxMsgs' })
    expect(refuseAppend(L({ maxMsgs: 11, discard: 'new' }), usage, 50)).toBeNull()
    expect(refuseAppend(L({ maxBytes: 1049, discard: 'new' }), usage, 50)?.code).toBe('ESTREAM_LIMIT')
    expect(refuseAppend(L({ maxBytes: 1050, discard: 'new' }), usage, 50)).toBeNull()
    expect(refuseAppend(L({ maxBytes: 40 }), usage, 50)?.detail).toMatchObject({ limit: 'maxBytes' })
  })

  it('discard old drops the oldest while over a limit; age always drops', () => {
    const now = 10_000
    expect(dropReason(L({ maxMsgs: 10 }), { messages: 11, bytes: 0 }, now, now)).toBe('maxMsgs')
    expect(dropReason(L({ maxMsgs: 10 }), { messages: 10, bytes: 0 }, now, now)).toBeNull()
    expect(dropReason(L({ maxBytes: 100 }), { messages: 3, bytes: 101 }, now, now)).toBe('maxBytes')
    expect(dropReason(L({ maxMsgs: 10, discard: 'new' }), { messages: 11, bytes: 0 }, now, now)).toBeNull()
    expect(dropReason(L({ maxAge: 1000 }), { messages: 1, bytes: 0 }, now - 1001, now)).toBe('maxAge')
    expect(dropReason(L({ maxAge: 1000 }), { messages: 1, bytes: 0 }, now - 1000, now)).toBeNull()
    expect(dropReason(L({ maxAge: 1000, discard: 'new' }), { messages: 1, bytes: 0 }, now - 5000, now)).toBe('maxAge')
    expect(dropReason(L({ maxMsgs: 1 }), { messages: 0, bytes: 0 }, 0, now)).toBeNull()
  })

  it('compaction threshold: half of the segment superseded', () => {
    expect(worthCompacting(0, 100, 1000)).toBe(false)
    expect(worthCompacting(50, 100, 1000)).toBe(true)
    expect(worthCompacting(49, 100, 1000)).toBe(false)
  })
})

describe('Journal retention', () => {
  it('maxMsgs is exact: firstSeq moves with every append; whole old segments are deleted', async () => {
    const dir = tempDir()
    const opts = { segmentBytes: 600, limits: { maxMsgs: 100 } }
    const j = await Journal.open(dir, opts)
    await fill(j, 250)
    expect([j.messages, j.firstSeq, j.lastSeq]).toEqual([100, 151, 250])
    expect(seqs(j)).toEqual(Array.from({ length: 100 }, (_, i) => 151 + i))
    expect(j.read(150)).toBeNull()
    await vi.waitFor(() => {
      expect(j.diskBytes).toBeLessThanOrEqual(j.bytes + 600)
      expect(Number((segFiles(dir)[0] as string).slice(0, 20))).toBeLessThanOrEqual(151)
    })
    // after a crash (the files as they are now, no close) the limit is applied again on open
    const k = await Journal.open(crashCopy(dir), opts)
    expect([k.messages, k.firstSeq, k.lastSeq]).toEqual([100, 151, 250])
    expect(seqs(k)).toEqual(seqs(j))
    await k.close()
    await j.close()
  })

  it('maxBytes is exact in whole frames', async () => {
    const j = await Journal.open(tempDir(), { segmentBytes: 500, limits: { maxBytes: 2000 } })
    await fill(j, 300)
    expect(j.bytes).toBeLessThanOrEqual(2000)
    const dropped = j.read(j.firstSeq - 1)
    expect(dropped).toBeNull()
    let sum = 0
    for (const r of j.iterate()) sum += r.size
    expect(sum).toBe(j.bytes)
    // nothing more was dropped than needed: the last one dropped would not have fitted (ASCII: 30 + subject + payload bytes)
    expect(j.bytes + 30 + 3 + payloadFor(j.firstSeq - 1).length).toBeGreaterThan(2000)
    await expect(j.append({ subject: 'a', payload: Buffer.alloc(2001) })).rejects.toMatchObject({ code: 'ESTREAM_LIMIT' })
    await j.close()
  })

  it('maxAge drops by the fake clock, on commits and on applyRetention()', async () => {
    const clock = fakeClock()
    const dir = tempDir()
    const j = await Journal.open(dir, { segmentBytes: 400, clock: clock.now, limits: { maxAge: 60_000 } })
    for (let i = 0; i < 10; i++) {
      await fill(j, 10)
      clock.advance(10_000)
    }
    // tens of records at t0 .. t0+90s; commits dropped the first three tens on the way (at t0+70/80/90s)
    expect([j.firstSeq, j.messages]).toEqual([31, 70])
    // now t0+100s: the fourth ten (t0+30s) is older than 60 s too
    expect(j.applyRetention()).toBe(10)
    expect([j.firstSeq, j.messages]).toEqual([41, 60])
    expect(j.firstTime).toBe(clock.now() - 60_000)
    expect(j.applyRetention()).toBe(0)
    clock.advance(35_000)
    await fill(j, 1) // a commit applies it too: t0+135s keeps t0+75s and later
    expect([j.firstSeq, j.messages]).toEqual([81, 21])
    clock.advance(3_600_000)
    expect(j.applyRetention()).toBe(21)
    expect([j.messages, j.firstSeq, j.lastSeq]).toEqual([0, 102, 101])
    await vi.waitFor(() => expect(segFiles(dir).length).toBe(1)) // only the segment being written remains
    await j.close()
    const k = await Journal.open(dir, { segmentBytes: 400, clock: clock.now, limits: { maxAge: 60_000 } })
    expect([k.messages, k.firstSeq, k.lastSeq]).toEqual([0, 102, 101])
    expect((await k.append({ subject: 'a', payload: Buffer.from('x') })).seq).toBe(102)
    await k.close()
  })

  it('discard new refuses appends over maxMsgs with ESTREAM_LIMIT, counting appends in flight', async () => {
    const j = await Journal.open(tempDir(), { limits: { maxMsgs: 10, discard: 'new' } })
    const ps = []
    for (let i = 0; i < 12; i++) ps.push(j.append({ subject: 'a', payload: Buffer.from(String(i)) }))
    const r = await Promise.allSettled(ps)
    expect(r.filter((x) => x.status === 'fulfilled').length).toBe(10)
    expect(r.slice(10).every((x) => x.status === 'rejected' && isEdgebusError(x.reason, 'ESTREAM_LIMIT'))).toBe(true)
    expect(() => j.appendQueued({ subject: 'a', payload: Buffer.from('x') })).toThrow(expect.objectContaining({ code: 'ESTREAM_LIMIT' }))
    expect([j.messages, j.lastSeq]).toEqual([10, 10])
    await j.removeBefore(3)
    expect((await j.append({ subject: 'a', payload: Buffer.from('room') })).seq).toBe(11) // gapless after refusals
    await j.close()
  })

  it('maxMsgsPerSubject keeps the newest per subject (last-value store), across a reopen', async () => {
    const dir = tempDir()
    const opts = { segmentBytes: 600, limits: { maxMsgsPerSubject: 1 } }
    const j = await Journal.open(dir, opts)
    await fill(j, 100) // subjects s/0..s/4 round robin: the last five survive
    expect(j.messages).toBe(5)
    expect(j.subjects).toBe(5)
    expect(seqs(j)).toEqual([96, 97, 98, 99, 100])
    expect(j.firstSeq).toBe(96)
    expect(j.read(95)).toBeNull()
    expect(j.read(100)?.subject).toBe('s/4')
    await j.close()
    const k = await Journal.open(dir, opts)
    expect(seqs(k)).toEqual([96, 97, 98, 99, 100])
    expect([k.messages, k.firstSeq]).toEqual([5, 96])
    await k.append({ subject: 's/0', payload: Buffer.from('new') })
    expect(seqs(k)).toEqual([97, 98, 99, 100, 101])
    await k.close()
  })

  it('superseded records are compacted away, and a raised limit does not bring them back', async () => {
    const dir = tempDir()
    const j = await Journal.open(dir, { segmentBytes: 2000, limits: { maxMsgsPerSubject: 2 } })
    await fill(j, 50, (i) => `s/${i % 2}`)
    await fill(j, 50, (i) => `t/${i % 50}`) // fresh subjects: keep the segment count up
    const before = j.diskBytes
    const reclaimed = await j.compact()
    expect(reclaimed).toBeGreaterThan(0)
    expect(j.diskBytes).toBe(before - reclaimed)
    const live = seqs(j)
    expect(live).toEqual([47, 48, 49, 50, ...Array.from({ length: 50 }, (_, i) => 51 + i)])
    for (const s of live) expect(j.read(s)?.payload.equals(payloadFor(s))).toBe(true)
    await j.close()
    // more records superseded in the last segment, which compact() leaves alone; raise the limit
    const k = await Journal.open(dir, { segmentBytes: 2000, limits: { maxMsgsPerSubject: 2 } })
    await fill(k, 10, () => 'u/x')
    await k.close()
    const m = await Journal.open(dir, { segmentBytes: 2000, limits: { maxMsgsPerSubject: 5 } })
    expect(m.recovery.compacted.length).toBeGreaterThan(0)
    const after = seqs(m)
    expect(after.filter((s) => s > 100)).toEqual([109, 110])
    expect(m.messages).toBe(after.length)
    await fill(m, 4, () => 'u/x')
    expect(seqs(m).filter((s) => s > 100)).toEqual([110, 111, 112, 113, 114])
    await m.close()
    // and with no limit at all
    const n = await Journal.open(dir, { segmentBytes: 2000 })
    expect(seqs(n).filter((s) => s > 100)).toEqual([110, 111, 112, 113, 114])
    expect(n.subjects).toBe(-1)
    await n.close()
  })

  it('compacts a mostly superseded sealed segment on its own', async () => {
    const dir = tempDir()
    const j = await Journal.open(dir, { segmentBytes: 1000, limits: { maxMsgsPerSubject: 1 } })
    await fill(j, 200, () => 'same')
    await settle()
    await fill(j, 1, () => 'same') // a commit after the segments were sealed
    await vi.waitFor(() => expect(j.diskBytes).toBeLessThan(3000))
    expect(seqs(j)).toEqual([201])
    await j.close()
  })
})

describe('duplicate window through the journal', () => {
  it('returns the original seq for a msg-id seen within the window, also after a reopen', async () => {
    const clock = fakeClock()
    const dir = tempDir()
    const opts = { clock: clock.now, limits: { duplicateWindow: 120_000 } }
    const j = await Journal.open(dir, opts)
    const a = await j.append({ subject: 'a', payload: Buffer.from('1'), msgId: 'order-17' })
    const b = await j.append({ subject: 'a', payload: Buffer.from('1 again'), msgId: 'order-17' })
    expect([a.seq, a.duplicate, b.seq, b.duplicate]).toEqual([1, false, 1, true])
    expect(b.timestamp).toBe(a.timestamp)
    // two in the same batch
    const c = j.appendQueued({ subject: 'a', payload: Buffer.from('2'), msgId: 'order-18' })
    const d = j.appendQueued({ subject: 'a', payload: Buffer.from('2'), msgId: 'order-18' })
    expect([c.seq, d.seq, d.duplicate]).toEqual([2, 2, true])
    await d.durable
    expect(j.lastSeq).toBe(2)
    await j.close()
    clock.advance(60_000)
    const k = await Journal.open(dir, opts)
    expect((await k.append({ subject: 'a', payload: Buffer.from('x'), msgId: 'order-17' })).duplicate).toBe(true)
    clock.advance(61_000)
    const e = await k.append({ subject: 'a', payload: Buffer.from('x'), msgId: 'order-17' })
    expect([e.seq, e.duplicate]).toEqual([3, false])
    expect(k.messages).toBe(3)
    await k.close()
  })

  it('forgets msg-ids of appends that failed', async () => {
    let fail = false
    const j = await Journal.open(tempDir(), {
      limits: { duplicateWindow: 60_000 },
      fileOps: { write: (fd, b, o, l, p) => (fail ? Promise.reject(Object.assign(new Error('x'), { code: 'EIO' })) : import('../../src/stream/segment.ts').then((m) => m.nodeFileOps.write(fd, b, o, l, p))) },
    })
    fail = true
    await expect(j.append({ subject: 'a', payload: Buffer.from('1'), msgId: 'm' })).rejects.toMatchObject({ code: 'EJOURNAL_IO' })
    fail = false
    const r = await j.append({ subject: 'a', payload: Buffer.from('1'), msgId: 'm' })
    expect([r.seq, r.duplicate]).toEqual([1, false])
    await j.close()
  })
})

describe('discard new with a last-value store', () => {
  it('a full stream still takes updates to subjects it holds, and refuses new subjects', async () => {
    const j = await Journal.open(tempDir(), { limits: { maxMsgs: 3, discard: 'new', maxMsgsPerSubject: 1 } })
    for (const s of ['a', 'b', 'c']) await j.append({ subject: s, payload: Buffer.from('1') })
    await expect(j.append({ subject: 'd', payload: Buffer.from('1') })).rejects.toMatchObject({ code: 'ESTREAM_LIMIT' })
    const u = await j.append({ subject: 'b', payload: Buffer.from('2') })
    expect(u.seq).toBe(4)
    expect([...j.iterate()].map((r) => `${r.subject}${r.payload.toString()}`)).toEqual(['a1', 'c1', 'b2'])
    expect(j.messages).toBe(3)
    await j.close()
  })
})
