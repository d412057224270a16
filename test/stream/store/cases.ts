import { describe, expect, it, vi } from 'vitest'
import { NO_LIMITS } from '../../../src/stream/retention.ts'
import type { StoreLimits, StreamStore } from '../../../src/stream/store/stream-store.ts'

/**
 * The promises every StreamStore keeps (src/stream/store/stream-store.ts), one suite run against
 * each implementation: the journal in a temp dir, JetStream on a real nats-server -js.
 */
export interface StoreHarness {
  /** A fresh, empty store named `name` with these limits. */
  open(name: string, limits?: Partial<StoreLimits>): Promise<StreamStore>
  /** The same store closed and opened again (what a restart sees). */
  reopen(store: StreamStore, name: string, limits?: Partial<StoreLimits>): Promise<StreamStore>
}

export const limits = (l: Partial<StoreLimits> = {}): StoreLimits => ({ ...NO_LIMITS, maxMsgSize: 0, ...l })
const text = (b: Uint8Array): string => Buffer.from(b).toString()

export function storeCases(h: StoreHarness): void {
  describe('append and read', () => {
    it('numbers appends from 1 without gaps and reads back subject, payload, properties, msgId and timestamp', async () => {
      const s = await h.open('order')
      const acks = await Promise.all(Array.from({ length: 50 }, (_, i) => s.append({ subject: `sensors/d${i % 3}/t`, payload: Buffer.from(String(i)), timestamp: 1_000 + i })))
      expect(acks.map((a) => a.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
      expect(acks.every((a) => !a.duplicate)).toBe(true)
      await s.append({ subject: 'a/b', payload: Buffer.from('p'), msgId: 'm1', headers: { contentType: 'text/plain', userProperties: [['k', 'v'], ['k', 'w']], correlationData: Buffer.from([1, 2]) } })
      const r = await s.read(51)
      expect(r).toMatchObject({ seq: 51, subject: 'a/b', msgId: 'm1' })
      expect(text(r!.payload)).toBe('p')
      expect(r!.headers?.contentType).toBe('text/plain')
      expect(r!.headers?.userProperties).toEqual([['k', 'v'], ['k', 'w']])
      expect([...(r!.headers?.correlationData ?? [])]).toEqual([1, 2])
      expect(await s.read(7)).toMatchObject({ seq: 7, subject: 'sensors/d0/t', timestamp: 1_006 })
      expect(await s.read(999)).toBeNull()
      expect(await s.info()).toMatchObject({ messages: 51, firstSeq: 1, lastSeq: 51 })
      await s.close()
    })

    it('keeps topics that are not NATS-safe exactly (empty levels, dots, spaces)', async () => {
      const s = await h.open('topics')
      const topics = ['a//b', 'dot.ted/x', 'sp ace/y', '/lead', 'trail/', 'pct%2E/x', 'gt>/st*r', 'ünï/☃']
      for (const t of topics) await s.append({ subject: t, payload: Buffer.from(t) })
      for (const [i, t] of topics.entries()) expect((await s.read(i + 1))?.subject).toBe(t)
      await s.close()
    })

    it('finds the next record of a subject and the first sequence at or after a time', async () => {
      const s = await h.open('find')
      for (let i = 0; i < 20; i++) await s.append({ subject: i % 5 === 0 ? 'x/hit' : 'x/miss', payload: Buffer.from(String(i)), timestamp: 10_000 + i * 10 })
      expect((await s.next(2, (t) => t === 'x/hit'))?.seq).toBe(6)
      expect((await s.next(17, (t) => t === 'x/hit'))).toBeNull()
      expect(await s.seqForTime(10_055)).toBe(7) // timestamps 10_000 + 10 * (seq - 1)
      expect(await s.seqForTime(0)).toBe(1)
      expect(await s.seqForTime(99_999)).toBe(21)
      await s.close()
    })

    it('replays every live record from a sequence, in order, ending at the last one stored', async () => {
      const s = await h.open('replay', { maxMsgsPerSubject: 1 })
      const N = 3000
      await Promise.all(Array.from({ length: N }, (_, i) => s.append({ subject: `rp/${i % 1000}`, payload: Buffer.from(String(i)), headers: i === N - 1 ? { contentType: 'x' } : null })))
      const seen: number[] = []
      for await (const r of s.iterate(1500)) {
        expect(r.subject).toBe(`rp/${(r.seq - 1) % 1000}`)
        expect(text(r.payload)).toBe(String(r.seq - 1))
        seen.push(r.seq)
      }
      // the first 2000 were superseded by the last 1000 (one per subject)
      expect(seen).toEqual(Array.from({ length: 1000 }, (_, i) => 2001 + i))
      const late: number[] = []
      for await (const r of s.iterate(N + 1)) late.push(r.seq)
      expect(late).toEqual([])
      await s.close()
    })

    it('keeps every acknowledged message across a reopen, and numbering goes on', async () => {
      let s = await h.open('reopen')
      for (let i = 0; i < 30; i++) await s.append({ subject: 'r/x', payload: Buffer.from(String(i)) })
      s = await h.reopen(s, 'reopen')
      expect(await s.info()).toMatchObject({ messages: 30, lastSeq: 30 })
      expect((await s.append({ subject: 'r/x', payload: Buffer.from('after') })).seq).toBe(31)
      expect(text((await s.read(30))!.payload)).toBe('29')
      await s.close()
    })
  })

  describe('dedupe', () => {
    it('stores a msgId once within the duplicate window and answers the original sequence', async () => {
      const s = await h.open('dedupe', { duplicateWindow: 60_000 })
      const a = await s.append({ subject: 'd/x', payload: Buffer.from('1'), msgId: 'id-1' })
      await s.append({ subject: 'd/x', payload: Buffer.from('2'), msgId: 'id-2' })
      const again = await s.append({ subject: 'd/x', payload: Buffer.from('1 again'), msgId: 'id-1' })
      expect(again).toMatchObject({ seq: a.seq, duplicate: true })
      expect(await s.info()).toMatchObject({ messages: 2, lastSeq: 2 })
      expect(text((await s.read(1))!.payload)).toBe('1')
      await s.close()
    })
  })

  describe('retention', () => {
    it('maxMsgs with discard old drops the oldest', async () => {
      const s = await h.open('old', { maxMsgs: 10 })
      for (let i = 0; i < 25; i++) await s.append({ subject: 'o/x', payload: Buffer.from(String(i)) })
      expect(await s.info()).toMatchObject({ messages: 10, firstSeq: 16, lastSeq: 25 })
      expect(await s.read(15)).toBeNull()
      await s.close()
    })

    it('maxMsgs with discard new refuses with ESTREAM_LIMIT (limit maxMsgs) and keeps what it had', async () => {
      const s = await h.open('new', { maxMsgs: 5, discard: 'new' })
      for (let i = 0; i < 5; i++) await s.append({ subject: 'n/x', payload: Buffer.from(String(i)) })
      await expect(s.append({ subject: 'n/x', payload: Buffer.from('6th') })).rejects.toMatchObject({ code: 'ESTREAM_LIMIT', detail: { limit: 'maxMsgs' } })
      expect(await s.info()).toMatchObject({ messages: 5, firstSeq: 1, lastSeq: 5 })
      await s.close()
    })

    it('maxBytes keeps the stream at or under its byte limit (discard old)', async () => {
      const s = await h.open('bytes', { maxBytes: 4096 })
      for (let i = 0; i < 100; i++) await s.append({ subject: 'b/x', payload: Buffer.alloc(100, i) })
      const info = await s.info()
      expect(info.bytes).toBeLessThanOrEqual(4096)
      expect(info.messages).toBeGreaterThan(10)
      expect(info.messages).toBeLessThan(100)
      expect(info.lastSeq).toBe(100)
      await s.close()
    })

    it('maxMsgsPerSubject keeps the newest N of each subject', async () => {
      const s = await h.open('persubj', { maxMsgsPerSubject: 1 })
      for (let i = 0; i < 12; i++) await s.append({ subject: `lv/${i % 3}`, payload: Buffer.from(String(i)) })
      expect((await s.info()).messages).toBe(3)
      const kept: string[] = []
      for (let r = await s.next(1); r !== null; r = await s.next(r.seq + 1)) kept.push(`${r.subject}=${text(r.payload)}`)
      expect(kept).toEqual(['lv/0=9', 'lv/1=10', 'lv/2=11'])
      await s.close()
    })

    it('maxAge removes messages once older than the limit', async () => {
      const s = await h.open('age', { maxAge: 1000, duplicateWindow: 120_000 }) // a window longer than the age: the age bounds it
      await s.append({ subject: 'a/x', payload: Buffer.from('soon old') })
      expect((await s.info()).messages).toBe(1)
      await vi.waitFor(async () => expect((await s.info()).messages).toBe(0), { timeout: 5000, interval: 100 })
      await s.close()
    })

    it('maxMsgSize refuses a larger payload with ESTREAM_LIMIT (limit maxMsgSize)', async () => {
      const s = await h.open('size', { maxMsgSize: 1024 })
      await s.append({ subject: 's/x', payload: Buffer.alloc(1024) })
      await expect(s.append({ subject: 's/x', payload: Buffer.alloc(1025) })).rejects.toMatchObject({ code: 'ESTREAM_LIMIT', detail: { limit: 'maxMsgSize' } })
      expect((await s.info()).messages).toBe(1)
      await s.close()
    })
  })

  describe('purge', () => {
    it('removes everything; numbering goes on after the last sequence', async () => {
      const s = await h.open('purge')
      for (let i = 0; i < 8; i++) await s.append({ subject: 'p/x', payload: Buffer.from(String(i)) })
      expect(await s.purge()).toBe(8)
      expect(await s.info()).toMatchObject({ messages: 0, lastSeq: 8, firstSeq: 9 })
      expect((await s.append({ subject: 'p/x', payload: Buffer.from('next') })).seq).toBe(9)
      await s.close()
    })
  })
}
