import { crc32c } from '../stream/crc32c.ts'
import type { ByteSink } from './codec.ts'

/**
 * Framing of the MQTT state log (FORMAT.md): a 16-byte file header, then records, each
 *
 *   magic 0xEB 0x51 | length u32 LE | crc32c u32 LE | body (length bytes; body[0] = record type)
 *
 * The CRC-32C covers the length field and the body, so a corrupted length is caught too. The magic
 * lets recovery find the next record after a damaged one.
 */
export const FILE_HEADER = Buffer.from('edgebus-mqtt-v1\n', 'latin1')
export const FRAME_HEADER_BYTES = 10
export const MAGIC0 = 0xeb
export const MAGIC1 = 0x51
/** No record is larger (a retained message or queued packet is bounded by the packet size limit). */
export const MAX_RECORD_BYTES = 512 * 1024 * 1024

/** Reserves a frame header in the sink; returns where the frame starts. */
export function beginFrame(s: ByteSink): number {
  s.ensure(FRAME_HEADER_BYTES)
  const at = s.pos
  s.pos += FRAME_HEADER_BYTES
  return at
}

/** Fills in the header of the frame begun at `at` (its body ends at s.pos); returns the frame's size. */
export function endFrame(s: ByteSink, at: number): number {
  const buf = s.buf
  const len = s.pos - at - FRAME_HEADER_BYTES
  if (len > MAX_RECORD_BYTES) throw new RangeError(`a state record of ${len} bytes is over the ${MAX_RECORD_BYTES}-byte limit`)
  buf[at] = MAGIC0
  buf[at + 1] = MAGIC1
  buf.writeUInt32LE(len, at + 2)
  const crc = crc32c(buf, at + FRAME_HEADER_BYTES, s.pos, crc32c(buf, at + 2, at + 6))
  buf.writeUInt32LE(crc, at + 6)
  return s.pos - at
}

/** The end of the valid frame at `pos`, or -1 when the bytes there are not one. */
export function frameAt(buf: Buffer, pos: number, end: number): number {
  if (end - pos < FRAME_HEADER_BYTES + 1) return -1
  if (buf[pos] !== MAGIC0 || buf[pos + 1] !== MAGIC1) return -1
  const len = buf.readUInt32LE(pos + 2)
  if (len === 0 || len > MAX_RECORD_BYTES || len > end - pos - FRAME_HEADER_BYTES) return -1
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
export function scanFrames(buf: Buffer, start: number, end: number, onFrame: (bodyStart: number, bodyEnd: number, at: number) => void): ScanResult {
  const corrupt: ScanResult['corrupt'] = []
  let frames = 0
  let pos = start
  let validEnd = start
  while (pos < end) {
    const next = frameAt(buf, pos, end)
    if (next !== -1) {
      onFrame(pos + FRAME_HEADER_BYTES, next, pos)
      frames++
      pos = validEnd = next
      continue
    }
    let found = -1
    let r = pos + 1
    while (r < end) {
      r = buf.indexOf(MAGIC0, r)
      if (r === -1 || r >= end) break
      if (frameAt(buf, r, end) !== -1) { found = r; break }
      r++
    }
    if (found === -1) break
    corrupt.push({ at: pos, bytes: found - pos })
    pos = found
  }
  return { frames, corrupt, validEnd, tailBytes: end - validEnd }
}
