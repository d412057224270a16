import type { Listener } from '../router/router.ts'
import type { SharedMember } from '../mqtt/shared-subscriptions.ts'

/** One SUB of a NATS connection. */
export interface NatsSubscription {
  readonly sid: string
  /** As the client wrote it (NATS-style). */
  readonly subject: string
  /** Canonical MQTT filter in the router. */
  readonly filter: string
  /** Queue group: the `$share/<queue>/<filter>` group of the same name. */
  readonly queue: string | null
  /** UNSUB <sid> <max>: removed after this many messages (0 = no limit). */
  max: number
  delivered: number
  readonly listener: Listener
  /** The MSG head last written for it, with the subject and size it was for: reused while they repeat. */
  head: Buffer | null
  headSubject: string
  headSize: number
  /** The queue group membership (shared-subscriptions.ts), for queue subscriptions. */
  readonly member: SharedMember | null
}
