import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ByteReader, ByteSink, DecodeError, readValue, writeValue } from '../../src/persistence/codec.ts'
import { FRAME_HEADER_BYTES, scanFrames } from '../../src/storage/frame.ts'
import { beginFrame, endFrame, readRecord, RecordType, STATE_FRAMES, writeRecord, type StateRecord } from '../../src/persistence/records.ts'

function roundTrip(v: unknown): unknown {
  const s = new ByteSink(16)
  writeValue(s, v)
  const r = new ByteReader(s.buf, 0, s.pos)
  const out = readValue(r)
  expect(r.atEnd()).toBe(true)
  return out
}

describe('value codec', () => {
  it('keeps what aedes packets hold: Buffers, strings, undefined members, MQTT 5 properties', () => {
    const packet = {
      cmd: 'publish', topic: 'a/b', payload: Buffer.from([0, 1, 2, 255]), qos: 2, retain: false, dup: false,
      messageId: undefined, brokerId: 'b-1', brokerCounter: 2 ** 40 + 3, messageExpiry: 1_700_000_000_123,
      properties: { userProperties: { a: 'x', b: ['y', 'z'] }, correlationData: Buffer.from('cd'), subscriptionIdentifier: [1, 268_435_455], payloadFormatIndicator: true },
      odd: { nested: [null, -5, 1.5, -0, Number.NaN, 'ü€𝄞'] },
    }
    const back = roundTrip(packet) as typeof packet
    expect(back).toStrictEqual(packet)
    expect(Buffer.isBuffer(back.payload)).toBe(true)
    expect(Object.keys(back)).toContain('messageId')
    expect(Object.is(back.odd.nested[3], -0)).toBe(true)
  })

  it('leaves functions out and treats "__proto__" as data', () => {
    const o = JSON.parse('{"__proto__": {"polluted": true}, "k": 1}') as Record<string, unknown>
    const back = roundTrip({ ...o, writeCallback: () => {} }) as Record<string, unknown>
    expect(Object.keys(back).sort()).toEqual(['__proto__', 'k'])
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype)
  })

  it('round-trips arbitrary JSON-like values with Buffers', () => {
    const value = fc.letrec((tie) => ({
      v: fc.oneof({ depthSize: 'small' },
        fc.constant(undefined), fc.constant(null), fc.boolean(), fc.double(), fc.integer(), fc.maxSafeInteger(), fc.string(),
        fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), fc.array(tie('v'), { maxLength: 5 }),
        fc.dictionary(fc.string({ maxLength: 8 }), tie('v'), { maxKeys: 5, noNullPrototype: true })),
    })).v
    fc.assert(fc.property(value, (v) => { expect(roundTrip(v)).toStrictEqual(v) }), { numRuns: 500 })
  })

  it('refuses bytes that do not decode', () => {
    for (const bytes of [[99], [7, 10, 65], [9, 200, 1], [10, 1, 200, 3]]) {
      const buf = Buffer.from(bytes)
      expect(() => readValue(new ByteReader(buf, 0, buf.length))).toThrow(DecodeError)
    }
  })
})

describe('records and frames', () => {
  const records: StateRecord[] = [
    { t: RecordType.RETAIN_PUT, packet: { topic: 't', payload: Buffer.from('x'), qos: 1, retain: true } },
    { t: RecordType.SUB_PUT, clientId: 'c', sub: { topic: 'a/+', qos: 1, rh: 0, rap: true, nl: false, subscriptionIdentifier: 7 } },
    { t: RecordType.OUT_ENQ, seq: 5, clientIds: ['c', 'd'], packet: { topic: 't', qos: 1, messageId: undefined }, messageId: undefined },
    { t: RecordType.SESSION, clientId: 'c', expiryMs: -1, down: 1234 },
  ]

  it('frames records that scan back in order', () => {
    const s = new ByteSink(8)
    for (const rec of records) { const at = beginFrame(s); writeRecord(s, rec); endFrame(s, at) }
    const seen: StateRecord[] = []
    const scan = scanFrames(s.buf, 0, s.pos, STATE_FRAMES, (a, b) => seen.push(readRecord(s.buf, a, b)))
    expect(seen).toStrictEqual(records)
    expect(scan).toMatchObject({ frames: 4, corrupt: [], validEnd: s.pos, tailBytes: 0 })
  })

  it('skips a damaged record and cuts a torn tail', () => {
    const s = new ByteSink(8)
    const starts: number[] = []
    for (const rec of records) { starts.push(s.pos); const at = beginFrame(s); writeRecord(s, rec); endFrame(s, at) }
    const end = s.pos
    const buf = Buffer.concat([s.buf.subarray(0, end), s.buf.subarray(starts[3] as number, end - 3)]) // + a torn copy of the last
    const hit = (starts[1] as number) + FRAME_HEADER_BYTES + 2
    buf.writeUInt8(buf.readUInt8(hit) ^ 0x40, hit) // damage the second record's body
    const seen: number[] = []
    const scan = scanFrames(buf, 0, buf.length, STATE_FRAMES, (a, b) => seen.push(readRecord(buf, a, b).t))
    expect(seen).toEqual([RecordType.RETAIN_PUT, RecordType.OUT_ENQ, RecordType.SESSION])
    expect(scan.corrupt).toEqual([{ at: starts[1], bytes: (starts[2] as number) - (starts[1] as number) }])
    expect(scan.validEnd).toBe(end)
    expect(scan.tailBytes).toBe(buf.length - end)
  })
})
