import { readVarint, VarintResult } from './codec.ts'

const vi = new VarintResult()

/**
 * Cuts a byte stream into whole MQTT packets. aedes (through mqtt-packet) writes one packet in
 * several pieces; the connection needs whole packets to apply the client's Maximum Packet Size
 * and Receive Maximum before anything reaches the wire.
 */
export class PacketAssembler {
  #pending: Buffer | null = null

  /** Feeds bytes; calls `onPacket` with every packet completed by them, in order. */
  push(chunk: Buffer, onPacket: (packet: Buffer) => void): void {
    const buf = this.#pending === null ? chunk : Buffer.concat([this.#pending, chunk])
    this.#pending = null
    const len = buf.length
    let o = 0
    while (o + 2 <= len) {
      readVarint(buf, o + 1, len, vi)
      if (vi.length <= 0) break // incomplete (aedes never writes malformed lengths)
      const total = 1 + vi.length + vi.value
      if (o + total > len) break
      onPacket(buf.subarray(o, o + total))
      o += total
    }
    if (o < len) this.#pending = buf.subarray(o)
  }

  get buffered(): number {
    return this.#pending === null ? 0 : this.#pending.length
  }
}
