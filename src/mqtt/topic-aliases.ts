import { findPropertyOffset, Prop, readVarint, VarintResult, varintSize, writeVarint } from './codec.ts'

/**
 * Server-to-client topic aliases (MQTT 5 §3.3.2.3.4): a client whose CONNECT allows them
 * (Topic Alias Maximum > 0) gets each of its first `max` topics once in full with an alias, then the
 * alias alone: on a metered link that saves the topic of every message after the first. Applied to
 * every PUBLISH as it goes into the connection's write queue, whichever path made it (fast path,
 * aedes, streams), so the PUBLISH that sets an alias always goes out before those using it. The
 * mapping lives as long as the connection [MQTT-3.3.2-7]; topics past the first `max` go in full.
 */
export class OutgoingTopicAliases {
  readonly #byTopic = new Map<string, number>()

  constructor(readonly max: number) {}

  /**
   * The PUBLISH frame to send instead of `frame`: with its alias, and without its topic once the
   * alias is known to the client; `frame` itself when no alias applies or the frame would grow past
   * `maxPacket` (the client's Maximum Packet Size, 0 = none).
   */
  apply(frame: Buffer, maxPacket: number): Buffer {
    readVarint(frame, 1, frame.length, vi)
    if (vi.length <= 0) return frame
    let o = 1 + vi.length
    const end = o + vi.value
    if (end > frame.length || o + 2 > end) return frame
    const topicLen = frame.readUInt16BE(o)
    const topicStart = o + 2
    const topicEnd = topicStart + topicLen
    if (topicLen === 0) return frame
    o = topicEnd + (((frame[0] as number) & 0x06) !== 0 ? 2 : 0) // packet id
    readVarint(frame, o, end, vi)
    if (vi.length <= 0) return frame
    const propsStart = o + vi.length
    const propsEnd = propsStart + vi.value
    if (propsEnd > end || findPropertyOffset(frame, propsStart, propsEnd, Prop.TOPIC_ALIAS) !== -1) return frame
    const key = frame.toString('latin1', topicStart, topicEnd)
    let alias = this.#byTopic.get(key)
    const known = alias !== undefined
    if (alias === undefined) {
      if (this.#byTopic.size >= this.max) return frame
      alias = this.#byTopic.size + 1
    }
    const propsLen = vi.value + 3
    const bodyLen = 2 + (known ? 0 : topicLen) + (o - topicEnd) + varintSize(propsLen) + propsLen + (end - propsEnd)
    const total = 1 + varintSize(bodyLen) + bodyLen
    if (maxPacket > 0 && total > maxPacket) return frame
    if (!known) this.#byTopic.set(key, alias)
    const out = Buffer.allocUnsafe(total)
    out[0] = frame[0] as number
    let w = writeVarint(out, 1, bodyLen)
    if (known) {
      out.writeUInt16BE(0, w)
      w += 2
    } else {
      w += frame.copy(out, w, topicStart - 2, topicEnd)
    }
    w += frame.copy(out, w, topicEnd, o) // packet id
    w = writeVarint(out, w, propsLen)
    out[w++] = Prop.TOPIC_ALIAS
    out.writeUInt16BE(alias, w)
    w += 2
    frame.copy(out, w, propsStart, end) // the other properties and the payload
    return out
  }
}

const vi = new VarintResult()
