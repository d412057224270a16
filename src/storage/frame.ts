import { crc32c } from './crc32c.ts'

/**
 * The record frame of every store that keeps a log of records (the MQTT state log, consumer
 * state files; FORMAT.md of each):
 *
 *   magic (2 bytes, per store) | length u32 LE | crc32c u32 LE | body (length bytes)
 *
 * The CRC-32C covers the length field and the body, so a corrupted length is caught too. The magic
 * lets recovery find the next record after a damaged one. Each store has its own magic, so a file
 * of one store is never read as the other's.
 */
export interface FrameFormat {
  readonly magic0: number
  readonly magic1: number
  /** No body is larger: a length above it is damage. */
  readonly maxBody: number
}

export const FRAME_HEADER_BYTES = 10

/**
 * Fills in the header of the frame at `at` whose body is `buf[at + 10, bodyEnd)`; returns the
 * frame's size. The body must be written first (the CRC covers it).
 */
export function sealFrame(buf: Buffer, at: number, bodyEnd: number, f: FrameFormat): number {
  const len = bodyEnd - at - FRAME_HEADER_BYTES
  if (len > f.maxBody) throw new RangeError(`a record of ${len} bytes is over the ${f.maxBody}-byte limit`)
  buf[at] = f.magic0
  buf[at + 1] = f.magic1
  buf.writeUInt32LE(len, at + 2)
  buf.writeUInt32LE(crc32c(buf, at + FRAME_HEADER_BYTES, bodyEnd, crc32c(buf, at + 2, at + 6)), at + 6)
  return bodyEnd - at
}

/** The end of the valid frame at `pos` (within `end`), or -1 when the bytes there are not one. */
export function frameEnd(buf: Buffer, pos: number, end: number, f: FrameFormat): number {
  if (end - pos < FRAME_HEADER_BYTES + 1) return -1
  if (buf[pos] !== f.magic0 || buf[pos + 1] !== f.magic1) return -1
  const len = buf.readUInt32LE(pos + 2)
  if (len === 0 || len > f.maxBody || len > end - pos - FRAME_HEADER_BYTES) return -1
  const bodyEnd = pos + FRAME_HEADER_BYTES + len
  const crc = crc32c(buf, pos + FRAME_HEADER_BYTES, bodyEnd, crc32c(buf, pos + 2, pos + 6))
  return crc === buf.readUInt32LE(pos + 6) ? bodyEnd : -1
}

export interface ScanResult {
  /** Valid frames seen. */
  frames: number
  /** Damaged stretches followed by valid frames: skipped. */
  corrupt: Array<{ at: number; bytes: number }>
  /** The end of the last valid frame: everything after it is a torn tail to cut off. */
  validEnd: number
  /** Bytes after validEnd. */
  tailBytes: number
}

/**
 * Walks the frames of `buf[start, end)` and hands each valid body to `onFrame`. A stretch that is
 * not a valid frame is skipped up to the next valid frame (found by its magic and checksum); with
 * no valid frame after it, it is the torn tail.
 */
export function scanFrames(buf: Buffer, start: number, end: number, f: FrameFormat, onFrame: (bodyStart: number, bodyEnd: number, at: number) => void): ScanResult {
  const corrupt: ScanResult['corrupt'] = []
  let frames = 0
  let pos = start
  let validEnd = start
  while (pos < end) {
    const next = frameEnd(buf, pos, end, f)
    if (next !== -1) {
      onFrame(pos + FRAME_HEADER_BYTES, next, pos)
      frames++
      pos = validEnd = next
      continue
    }
    let found = -1
    let r = pos + 1
    while (r < end) {
      r = buf.indexOf(f.magic0, r)
      if (r === -1 || r >= end) break
      if (frameEnd(buf, r, end, f) !== -1) { found = r; break }
      r++
    }
    if (found === -1) break
    corrupt.push({ at: pos, bytes: found - pos })
    pos = found
  }
  return { frames, corrupt, validEnd, tailBytes: end - validEnd }
}
