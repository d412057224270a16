import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { isEdgebusError } from '../../src/core/errors.ts'
import {
  claimedFrameLength, decodeRecord, encodeRecord, frameCrcMatches, frameIsSupported, frameMsgId, frameSeq, frameSubject, frameTimestamp,
  maxEncodedSize, RECORD_MIN_BYTES, type RecordHeaders, type RecordInput,
} from '../../src/stream/record.ts'

function encode(rec: RecordInput, seq = 1, ts = 1_700_000_000_123): Buffer {
  const buf = Buffer.alloc(maxEncodedSize(rec) + 8, 0xaa)
  const len = encodeRecord(buf, 3, seq, ts, rec) // at an odd offset on purpose
  expect(len).toBeLessThanOrEqual(maxEncodedSize(rec))
  return buf.subarray(3, 3 + len)
}

function codeOf(fn: () => void): string | null {
  try { fn(); return null } catch (err) { return isEdgebusError(err) ? err.code : 'OTHER' }
}

const headers: RecordHeaders = {
  payloadFormatIndicator: 1,
  messageExpiryInterval: 3600,
  responseTopic: 'reply/to/me',
  correlationData: Buffer.from([0, 1, 2, 255]),
  userProperties: [['a', '1'], ['a', '2'], ['ключ', 'значение'], ['', '']],
  contentType: 'application/json',
}

describe('record codec', () => {
  it('round-trips a minimal record, and the payload is a view of the buffer', () => {
    const frame = encode({ subject: 'sensors/kitchen/temp', payload: Buffer.from('21.5') }, 42, 1234)
    expect(frame.length).toBe(RECORD_MIN_BYTES + 'sensors/kitchen/temp'.length + 4)
    expect(claimedFrameLength(frame, 0)).toBe(frame.length)
    expect(frameCrcMatches(frame, 0, frame.length)).toBe(true)
    expect(frameIsSupported(frame, 0)).toBe(true)
    const r = decodeRecord(frame, 0, frame.length)
    expect(r).toMatchObject({ seq: 42, timestamp: 1234, subject: 'sensors/kitchen/temp', headers: null, msgId: null, size: frame.length })
    expect(r.payload.toString()).toBe('21.5')
    expect(r.payload.buffer).toBe(frame.buffer)
  })

  it('round-trips every MQTT 5 property, a msg-id, unicode and an empty payload', () => {
    const frame = encode({ subject: 'déjà/vu/温度', payload: Buffer.alloc(0), headers, msgId: 'id-1' }, 2 ** 53 - 1, 2 ** 41)
    const r = decodeRecord(frame, 0, frame.length)
    expect(r.seq).toBe(2 ** 53 - 1)
    expect(r.timestamp).toBe(2 ** 41)
    expect(r.subject).toBe('déjà/vu/温度')
    expect(r.payload.length).toBe(0)
    expect(r.msgId).toBe('id-1')
    expect(r.headers).toEqual({ ...headers, correlationData: Buffer.from([0, 1, 2, 255]) })
    expect(frameSeq(frame, 0)).toBe(2 ** 53 - 1)
    expect(frameTimestamp(frame, 0)).toBe(2 ** 41)
    expect(frameSubject(frame, 0)).toBe('déjà/vu/温度')
    expect(frameMsgId(frame, 0)).toBe('id-1')
  })

  it('round-trips random records', () => {
    const str = fc.string({ unit: 'grapheme', maxLength: 20 })
    const rec = fc.record({
      subject: str,
      payload: fc.uint8Array({ maxLength: 200 }),
      headers: fc.option(fc.record({
        payloadFormatIndicator: fc.option(fc.constantFrom(0, 1), { nil: undefined }),
        messageExpiryInterval: fc.option(fc.nat({ max: 0xffffffff }), { nil: undefined }),
        responseTopic: fc.option(str, { nil: undefined }),
        correlationData: fc.option(fc.uint8Array({ maxLength: 20 }), { nil: undefined }),
        userProperties: fc.option(fc.array(fc.tuple(str, str), { maxLength: 4 }), { nil: undefined }),
        contentType: fc.option(str, { nil: undefined }),
      }, { requiredKeys: [] }), { nil: null }),
      msgId: fc.option(str, { nil: null }),
    })
    fc.assert(fc.property(rec, fc.nat({ max: 2 ** 40 }), fc.nat({ max: 2 ** 45 }), (r, seq, ts) => {
      const frame = encode(r, seq, ts)
      const d = decodeRecord(frame, 0, frame.length)
      expect(d.seq).toBe(seq)
      expect(d.timestamp).toBe(ts)
      expect(d.subject).toBe(r.subject)
      expect(Buffer.compare(d.payload, Buffer.from(r.payload))).toBe(0)
      expect(d.msgId).toBe(r.msgId)
      const want: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(r.headers ?? {})) if (v !== undefined) want[k] = v instanceof Uint8Array ? Buffer.from(v) : v
      expect(d.headers ?? {}).toEqual(want)
    }), { numRuns: 400 })
  })

  it('every single flipped bit is detected', () => {
    const frame = encode({ subject: 'a/b', payload: Buffer.from('payload'), headers: { contentType: 'x' }, msgId: 'm' })
    for (let bit = 0; bit < frame.length * 8; bit++) {
      const f = Buffer.from(frame)
      f[bit >>> 3] = (f[bit >>> 3] as number) ^ (1 << (bit & 7))
      const len = claimedFrameLength(f, 0)
      const valid = len === f.length && frameCrcMatches(f, 0, len) && frameIsSupported(f, 0)
      expect(valid, `bit ${bit}`).toBe(false)
    }
  })

  it('refuses fields over their MQTT size limits with ERECORD_INVALID', () => {
    const p = Buffer.alloc(1)
    expect(codeOf(() => encode({ subject: 'x'.repeat(65_536), payload: p }))).toBe('ERECORD_INVALID')
    expect(codeOf(() => encode({ subject: 'a', payload: p, headers: { correlationData: Buffer.alloc(65_536) } }))).toBe('ERECORD_INVALID')
    expect(codeOf(() => encode({ subject: 'a', payload: p, headers: { payloadFormatIndicator: 2 } }))).toBe('ERECORD_INVALID')
    expect(codeOf(() => encode({ subject: 'a', payload: p, headers: { messageExpiryInterval: -1 } }))).toBe('ERECORD_INVALID')
    expect(codeOf(() => encode({ subject: 'x'.repeat(65_535), payload: p }))).toBeNull()
  })

  it('refuses headers that cannot start a frame', () => {
    const frame = encode({ subject: 'a', payload: Buffer.from('b') })
    const badMagic = Buffer.from(frame)
    badMagic[0] = 0
    expect(claimedFrameLength(badMagic, 0)).toBe(-1)
    const tooShort = Buffer.from(frame)
    tooShort.writeUInt32LE(RECORD_MIN_BYTES - 1, 4)
    expect(claimedFrameLength(tooShort, 0)).toBe(-1)
  })
})
