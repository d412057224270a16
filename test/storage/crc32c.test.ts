import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { crc32c } from '../../src/storage/crc32c.ts'

/** Bit-at-a-time CRC-32C straight from the definition, the reference the fast one is checked against. */
function reference(buf: Uint8Array): number {
  let c = 0xffffffff
  for (const b of buf) {
    c ^= b
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
  }
  return (c ^ 0xffffffff) >>> 0
}

describe('crc32c', () => {
  it('matches the published check values (RFC 3720 B.4 and the catalogue check)', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283)
    expect(crc32c(Buffer.alloc(0))).toBe(0)
    expect(crc32c(Buffer.alloc(32, 0))).toBe(0x8a9136aa)
    expect(crc32c(Buffer.alloc(32, 0xff))).toBe(0x62a8ab43)
    expect(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i)))).toBe(0x46dd794e)
    expect(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i)))).toBe(0x113fdb5c)
  })

  it('agrees with the bitwise reference on random data, ranges and chained calls', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(), (data, a, b) => {
      expect(crc32c(data)).toBe(reference(data))
      const start = data.length === 0 ? 0 : a % data.length
      const end = start + (data.length === 0 ? 0 : b % (data.length - start + 1))
      expect(crc32c(data, start, end)).toBe(reference(data.subarray(start, end)))
      const mid = (start + end) >>> 1
      expect(crc32c(data, mid, end, crc32c(data, start, mid))).toBe(crc32c(data, start, end))
    }), { numRuns: 500 })
  })
})
