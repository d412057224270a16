import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { FRAME_HEADER_BYTES, frameEnd, scanFrames, sealFrame, type FrameFormat } from '../../src/storage/frame.ts'

const A: FrameFormat = { magic0: 0xeb, magic1: 0x51, maxBody: 1 << 20 }
const B: FrameFormat = { magic0: 0xec, magic1: 0xc5, maxBody: 1 << 20 }

function framed(bodies: Buffer[], f: FrameFormat): { buf: Buffer; starts: number[] } {
  const starts: number[] = []
  const parts: Buffer[] = []
  let at = 0
  for (const body of bodies) {
    const frame = Buffer.alloc(FRAME_HEADER_BYTES + body.length)
    body.copy(frame, FRAME_HEADER_BYTES)
    expect(sealFrame(frame, 0, frame.length, f)).toBe(frame.length)
    starts.push(at)
    parts.push(frame)
    at += frame.length
  }
  return { buf: Buffer.concat(parts), starts }
}

describe('the record frame every store uses', () => {
  it('frames scan back as written, in order', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 64 }), { maxLength: 20 }), (arrays) => {
      const bodies = arrays.map((a) => Buffer.from(a))
      const { buf } = framed(bodies, A)
      const seen: Buffer[] = []
      const scan = scanFrames(buf, 0, buf.length, A, (s, e) => seen.push(Buffer.from(buf.subarray(s, e))))
      expect(seen).toEqual(bodies)
      expect(scan).toEqual({ frames: bodies.length, corrupt: [], validEnd: buf.length, tailBytes: 0 })
    }))
  })

  it('a flipped bit anywhere in a frame (length included) makes it invalid', () => {
    const { buf } = framed([Buffer.from('hello, frame')], A)
    for (let i = 0; i < buf.length; i++) {
      const bad = Buffer.from(buf)
      bad[i] = (bad[i] as number) ^ 0x10
      expect(frameEnd(bad, 0, bad.length, A)).toBe(-1)
    }
    expect(frameEnd(buf, 0, buf.length, A)).toBe(buf.length)
  })

  it("one store's frames are not another's (the magic differs)", () => {
    const { buf } = framed([Buffer.from('x')], B)
    expect(frameEnd(buf, 0, buf.length, B)).toBe(buf.length)
    expect(frameEnd(buf, 0, buf.length, A)).toBe(-1)
  })

  it('skips a damaged stretch followed by whole frames and reports a torn tail', () => {
    const bodies = ['one', 'two', 'three'].map((t) => Buffer.from(t))
    const { buf: whole, starts } = framed(bodies, A)
    const buf = Buffer.concat([whole, whole.subarray(0, 5)]) // + a torn start of a frame
    const hit = (starts[1] as number) + FRAME_HEADER_BYTES
    buf[hit] = (buf[hit] as number) ^ 0xff
    const seen: string[] = []
    const scan = scanFrames(buf, 0, buf.length, A, (s, e) => seen.push(buf.toString('latin1', s, e)))
    expect(seen).toEqual(['one', 'three'])
    expect(scan.corrupt).toEqual([{ at: starts[1], bytes: (starts[2] as number) - (starts[1] as number) }])
    expect(scan.validEnd).toBe(whole.length)
    expect(scan.tailBytes).toBe(5)
  })

  it('refuses to seal a body over the format limit', () => {
    const buf = Buffer.alloc(FRAME_HEADER_BYTES + 17)
    expect(() => sealFrame(buf, 0, buf.length, { ...A, maxBody: 16 })).toThrow(RangeError)
  })
})
