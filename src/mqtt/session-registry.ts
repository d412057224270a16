import { readVarint, VarintResult } from './codec.ts'

/** The parts of an aedes client a CONNACK decision reads. */
export interface SessionOwner {
  id: string
  /** aedes: MQTT 5 "the session ends with the connection" (Session Expiry 0); 3.1.1 the clean flag. */
  clean: boolean
  /** aedes: the CONNECT's Clean Start / Clean Session flag. */
  _cleanStart?: boolean
  version?: number
  /** aedes: seconds the session outlives the connection (3.1.1 clean=0: never expires). */
  sessionExpiryInterval?: number
}

const vi = new VarintResult()

/**
 * Which persistent sessions exist, so that a CONNACK says Session Present for a kept session that
 * has no subscriptions too [MQTT-3.2.2-2, 3.2.2-3]: aedes infers it from stored subscriptions
 * alone. Kept in memory only: a session without subscriptions or queued messages holds nothing a
 * restart could lose (after one it is reported absent, which is then true).
 */
export class SessionRegistry {
  readonly #ids = new Set<string>()

  /**
   * The CONNACK aedes wrote for `client`, with Session Present set when the client resumes a
   * session it kept; records whether its session is kept from now on.
   */
  connack(packet: Buffer, client: SessionOwner): Buffer {
    readVarint(packet, 1, packet.length, vi)
    const at = 1 + vi.length // acknowledge flags, then the return/reason code
    if (vi.length <= 0 || at + 1 >= packet.length || packet[at + 1] !== 0) return packet // refused: no session either way
    const cleanStart = client._cleanStart ?? client.clean
    const kept = client.version === 5 ? (client.sessionExpiryInterval ?? 0) > 0 : !cleanStart
    const present = !cleanStart && this.#ids.has(client.id)
    if (kept) this.#ids.add(client.id)
    else this.#ids.delete(client.id)
    if (!present || ((packet[at] as number) & 0x01) !== 0) return packet
    const out = Buffer.from(packet) // aedes' buffer may be shared
    out[at] = (out[at] as number) | 0x01
    return out
  }

  /** The session ended: expired, or closed by an MQTT 5 DISCONNECT with Session Expiry 0. */
  ended(id: string): void {
    this.#ids.delete(id)
  }

  has(id: string): boolean {
    return this.#ids.has(id)
  }

  get size(): number {
    return this.#ids.size
  }
}
