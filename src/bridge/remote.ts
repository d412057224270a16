import type { RecordHeaders } from '../stream/record.ts'

/** One outbox message on its way to a remote. */
export interface OutgoingMessage {
  /** Canonical MQTT topic on the remote (the out rule's rewrite applied). */
  topic: string
  payload: Buffer
  /** Its id end to end: the publisher's msg-id, else `<stream>:<seq>`. */
  msgId: string
  headers: RecordHeaders | null
  qos: 0 | 1
}

/** A message the remote sent for an `in` rule. */
export interface IncomingMessage {
  /** Canonical MQTT topic on the remote. */
  topic: string
  payload: Buffer
  /** The remote's message id (MQTT 5 user property msg-id, Nats-Msg-Id), if it has one. */
  msgId: string | null
}

/** What an `in` rule reads: a remote filter (canonical MQTT), from a JetStream stream when named. */
export interface InSource {
  filter: string
  stream: string | null
}

/** What the remote answered to one message. */
export type SendResult =
  /** `duplicate`: the remote had it already (a JetStream ack of a Nats-Msg-Id in its duplicate window). */
  | { ok: true; duplicate?: boolean }
  /** It refused this message (a reason code, an ACL, a limit): sending it again will not help soon. */
  | { ok: false; reason: string; duplicate?: undefined }

/**
 * One connection to a remote. `send` settles when the remote acknowledged (or refused) the
 * message; it rejects when the link is lost before that (the message stays in the outbox).
 */
export interface RemoteLink {
  readonly url: string
  /** In-flight messages the remote allows (MQTT 5 Receive Maximum), or Infinity. */
  readonly maxInFlight: number
  send(msg: OutgoingMessage): Promise<SendResult>
  /**
   * Subscribes the `in` filters (canonical MQTT) and hands what arrives to `onMessage`; the remote
   * gets its acknowledgement (MQTT PUBACK, JetStream ack) once the promise settles (the message is
   * published locally). A source with a `stream` (NATS) is read from that JetStream stream.
   */
  subscribe(sources: readonly InSource[], qos: 0 | 1, onMessage: (m: IncomingMessage) => Promise<unknown>): Promise<void>
  /** Called once, when the link is lost or closed, with why. */
  onClose(fn: (reason: string) => void): void
  close(): Promise<void>
}

export interface RemoteOptions {
  name: string
  username: string | null
  password: string | null
  token: string | null
  /** PEM contents, already read. */
  cert: Buffer | null
  key: Buffer | null
  ca: Buffer | null
  clientId: string
  mqttVersion: 4 | 5
  connectTimeout: number
  /** ms: the watchdog's limit; also how long a JetStream `in` consumer waits for our ack before it redelivers. */
  ackTimeout: number
  keepalive: number
  /** Keep the remote session (MQTT clean start off) so `in` messages wait for us while offline. */
  persistentSession: boolean
}

/** The end of a link, told once to each who asked, even after it happened (RemoteLink.onClose). */
export class LinkEnd {
  #fns: Array<(reason: string) => void> = []
  #reason: string | null = null

  get ended(): boolean {
    return this.#reason !== null
  }

  onEnd(fn: (reason: string) => void): void {
    if (this.#reason !== null) fn(this.#reason)
    else this.#fns.push(fn)
  }

  /** False when it had ended already. */
  end(reason: string): boolean {
    if (this.#reason !== null) return false
    this.#reason = reason
    const fns = this.#fns
    this.#fns = []
    for (const fn of fns) fn(reason)
    return true
  }
}

/** Opens a link to one URL, or rejects with why not. */
export type RemoteConnector = (url: string, opts: RemoteOptions) => Promise<RemoteLink>

/** The user property (and NATS header) an `in` message is published locally with: the bridge it came through. */
export const BRIDGE_ORIGIN_PROPERTY = 'edgebus-bridge'
/** The user property carrying a message's id end to end (as streams read it, src/stream/stream.ts). */
export { MSG_ID_PROPERTY } from '../stream/stream.ts'
