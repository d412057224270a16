import type { Rng } from './harness.ts'
import { genConnect, genPacket, pickKind, varint, type Version } from './mqtt-corpus.ts'

/**
 * The mutation engine: byte-level mutations of encoded packets, and the bursts a fuzz connection
 * sends (a valid CONNECT first, mostly, so the mutations reach the connected states).
 */

const INTERESTING_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe, 0x40, 0x3f, 0xc0] as const
const INTERESTING_U16 = [0x0000, 0xffff, 0x7fff, 0x8000, 0x0001, 0x00ff, 0xff00] as const

/** The Remaining Length of `buf` as [value, bytes it takes], or null when it is not a valid one. */
export function remainingLength(buf: Buffer): [number, number] | null {
  let value = 0
  let mul = 1
  for (let i = 1; i <= 4 && i < buf.length; i++) {
    const b = buf[i] as number
    value += (b & 0x7f) * mul
    if ((b & 0x80) === 0) return [value, i]
    mul *= 128
  }
  return null
}

/** Re-frames a packet whose body was mutated, so the framing is right and the body parser runs. */
export function fixLength(buf: Buffer): Buffer {
  const rl = remainingLength(buf)
  if (rl === null) return buf
  return Buffer.concat([buf.subarray(0, 1), varint(buf.length - 1 - rl[1]), buf.subarray(1 + rl[1])])
}

/** A Remaining Length field that is wrong: off by some, over four bytes, non-minimal, or huge. */
function wrongLength(rng: Rng, buf: Buffer): Buffer {
  const rl = remainingLength(buf)
  const value = rl?.[0] ?? buf.length - 2
  const body = buf.subarray(1 + (rl?.[1] ?? 1))
  let field: Buffer
  switch (rng.int(6)) {
    case 0: field = varint(Math.max(0, value - rng.range(1, 8))); break // too short: the rest is read as the next packet
    case 1: field = varint(value + rng.range(1, 64)); break // too long: the server waits for bytes that never come
    case 2: field = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]); break // five bytes [MQTT-1.5.5-1]
    case 3: { // non-minimal: padded with continuation bytes, still at most four bytes
      const v = varint(value)
      const pad = Math.max(0, 4 - v.length)
      const out = [...v]
      out[out.length - 1] = (out[out.length - 1] as number) | 0x80
      for (let i = 1; i < pad; i++) out.push(0x80)
      out.push(0x00)
      field = Buffer.from(out.slice(0, 4))
      if (field.length === 4) field[3] = (field[3] as number) & 0x7f
      break
    }
    case 4: field = Buffer.from([0xff, 0xff, 0xff, 0x7f]); break // 256 MB, over every limit
    default: field = Buffer.from([0x80 | rng.int(128)]); break // a length cut short: continuation bit, nothing after
  }
  return Buffer.concat([buf.subarray(0, 1), field, body])
}

export const MUTATIONS = [
  'bitflip', 'byte', 'u16', 'truncate', 'duplicate', 'length', 'insert', 'delete', 'flags', 'type', 'splice', 'append',
] as const
export type Mutation = (typeof MUTATIONS)[number]

/** One mutation of `buf`; `other` is another packet to splice with. */
export function mutateOnce(rng: Rng, buf: Buffer, other: () => Buffer, m: Mutation = rng.pick(MUTATIONS)): Buffer {
  if (buf.length === 0) return rng.bytes(rng.range(1, 16))
  const b = Buffer.from(buf)
  const at = (): number => rng.int(b.length)
  switch (m) {
    case 'bitflip':
      for (let n = rng.range(1, 8); n > 0; n--) { const i = at(); b[i] = (b[i] as number) ^ (1 << rng.int(8)) }
      return b
    case 'byte':
      for (let n = rng.range(1, 4); n > 0; n--) b[at()] = rng.pick(INTERESTING_BYTES)
      return b
    case 'u16': { // string and packet-id lengths: huge, zero, off by one
      if (b.length < 3) return b
      const i = rng.range(1, b.length - 2)
      b.writeUInt16BE(rng.pick(INTERESTING_U16), i)
      return b
    }
    case 'truncate':
      return b.subarray(0, rng.int(b.length))
    case 'duplicate': {
      const s = at()
      const piece = b.subarray(s, s + rng.range(1, 64))
      const i = at()
      return Buffer.concat([b.subarray(0, i), ...Array.from({ length: rng.range(1, 8) }, () => piece), b.subarray(i)])
    }
    case 'length':
      return wrongLength(rng, b)
    case 'insert': {
      const i = at()
      return Buffer.concat([b.subarray(0, i), rng.bytes(rng.range(1, 16)), b.subarray(i)])
    }
    case 'delete': {
      const i = at()
      return Buffer.concat([b.subarray(0, i), b.subarray(i + rng.range(1, 16))])
    }
    case 'flags': // reserved flag bits, QoS 3, DUP on QoS 0
      b[0] = ((b[0] as number) & 0xf0) | rng.int(16)
      return b
    case 'type':
      b[0] = (rng.int(16) << 4) | ((b[0] as number) & 0x0f)
      return b
    case 'splice': {
      const o = other()
      return Buffer.concat([b.subarray(0, at()), o.subarray(rng.int(o.length))])
    }
    case 'append':
      return Buffer.concat([b, rng.bytes(rng.range(1, 32))])
  }
}

/**
 * 1 to 3 mutations; then, half the time, the Remaining Length is set right again so the packet is
 * framed and its (mutated) body reaches the parser rather than only the framing.
 */
export function mutate(rng: Rng, buf: Buffer, other: () => Buffer): Buffer {
  let b = buf
  const ms: Mutation[] = []
  for (let n = rng.range(1, 3); n > 0; n--) {
    const m = rng.pick(MUTATIONS)
    ms.push(m)
    b = mutateOnce(rng, b, other, m)
  }
  if (!ms.includes('length') && rng.chance(0.5)) b = fixLength(b)
  return b
}

/** Pure noise: random bytes, or bytes that look like a packet type with a random length. */
export function noise(rng: Rng): Buffer {
  if (rng.chance(0.5)) return rng.bytes(rng.range(1, rng.chance(0.9) ? 64 : 4096))
  const n = rng.int(200)
  return Buffer.concat([Buffer.from([rng.int(256)]), varint(n), rng.bytes(n)])
}

// ---- bursts -----------------------------------------------------------------------------------

export type CloseMode = 'end' | 'destroy' | 'linger' | 'destroy-early'

export interface Burst {
  version: Version
  /** One input per element: the fuzzer counts them and writes them in order. */
  inputs: Buffer[]
  /** How the bytes go out: all in one write, one write per input, or cut at random places. */
  writes: 'one' | 'each' | 'pieces'
  close: CloseMode
  label: string
}

/**
 * What one connection sends: mostly a valid CONNECT then up to `maxPackets` packets, most of them
 * mutated (the rest valid, to move the session's state along); sometimes a mutated CONNECT, a
 * second CONNECT, no CONNECT at all, or pure noise.
 */
export function mqttBurst(rng: Rng, maxPackets: number): Burst {
  const version = rng.weighted<Version>([[45, 4], [45, 5], [10, 3]])
  const other = (): Buffer => genPacket(rng, version, pickKind(rng), rng.chance(0.3))
  const inputs: Buffer[] = []
  const start = rng.weighted<'valid' | 'junk' | 'mutated' | 'none' | 'noise'>([[74, 'valid'], [10, 'junk'], [8, 'mutated'], [4, 'none'], [4, 'noise']])
  if (start === 'noise') {
    for (let n = rng.range(1, 4); n > 0; n--) inputs.push(noise(rng))
  } else {
    if (start === 'valid') inputs.push(genConnect(rng, version))
    else if (start === 'junk') inputs.push(genConnect(rng, version, true)) // framed right, field values wrong
    else if (start === 'mutated') inputs.push(mutate(rng, genConnect(rng, version), other))
    for (let n = rng.range(1, maxPackets); n > 0; n--) {
      const junk = rng.chance(0.3)
      const p = genPacket(rng, version, pickKind(rng), junk)
      const r = rng.int(100)
      // the rest valid (or junk only in field values): they move the session along
      inputs.push(r < 55 ? mutate(rng, p, other) : r < 60 ? noise(rng) : p)
    }
  }
  return {
    version,
    inputs,
    writes: rng.weighted([[50, 'one'], [30, 'each'], [20, 'pieces']] as const),
    close: rng.weighted([[60, 'end'], [20, 'destroy'], [10, 'linger'], [10, 'destroy-early']] as const),
    label: `mqtt v${version} ${start}`,
  }
}

/** The bytes of a burst cut into the writes it asks for. */
export function writesOf(rng: Rng, burst: Burst): Buffer[] {
  if (burst.writes === 'each') return burst.inputs
  const all = Buffer.concat(burst.inputs)
  if (burst.writes === 'one' || all.length < 2) return [all]
  const out: Buffer[] = []
  let o = 0
  while (o < all.length) {
    const n = rng.range(1, Math.max(1, Math.min(all.length - o, rng.chance(0.5) ? 8 : 512)))
    out.push(all.subarray(o, o + n))
    o += n
  }
  return out
}
