import { join } from 'node:path'
import { EdgebusError, isEdgebusError } from '../core/errors.ts'
import type { Logger } from '../core/log.ts'
import { LogLimiter } from '../core/log-limiter.ts'
import type { MessageStore, RoutedPacket } from '../router/router.ts'
import { Journal, type Appended } from './journal.ts'
import type { RecordHeaders } from './record.ts'
import type { RetentionDrops } from './retention.ts'
import type { StreamDefinition } from './stream-config.ts'
import { jetstreamNeedsNats } from './store/store-factory.ts'

/** The MQTT 5 user property a publisher sets to have a message stored once (within duplicateWindow). */
export const MSG_ID_PROPERTY = 'msg-id'

/** A new message as followers see it. */
export interface FollowedRecord {
  seq: number
  timestamp: number
  subject: string
  payload: Buffer
}

/** Why a stream did not store a message, counted in `info()`. */
export interface StreamRefusals {
  limit: number
  tooLarge: number
  invalid: number
  io: number
}

export interface StreamInfo {
  name: string
  subjects: string[]
  messages: number
  bytes: number
  firstSeq: number
  lastSeq: number
  firstTime: string | null
  lastTime: string | null
  stored: number
  duplicates: number
  refused: StreamRefusals
  /** Messages retention removed since the server started, by limit. */
  dropped: RetentionDrops
  diskBytes: number
  segments: number
}

/**
 * A stream: subjects captured into a journal. It is a MessageStore of the router, so every
 * protocol's publishes reach it; `store` settles when the message is durable under the stream's
 * fsync policy, and the MQTT layer acknowledges QoS 1/2 only then.
 */
export class Stream implements MessageStore {
  readonly name: string
  readonly journal: Journal
  #def: StreamDefinition
  readonly #log: Logger
  readonly #refusals: LogLimiter
  #stored = 0
  #duplicates = 0
  readonly #refused: StreamRefusals = { limit: 0, tooLarge: 0, invalid: 0, io: 0 }
  #retentionTimer: NodeJS.Timeout | null = null
  /** Followers of new messages (HTTP ?follow=1), told once each message is durable. */
  readonly #followers = new Set<(rec: FollowedRecord) => void>()

  private constructor(def: StreamDefinition, journal: Journal, log: Logger) {
    this.name = def.name
    this.#def = def
    this.journal = journal
    this.#log = log
    this.#refusals = new LogLimiter(log)
    // maxAge must hold while no one appends, too
    if (def.limits.maxAge > 0) {
      this.#retentionTimer = setInterval(() => journal.applyRetention(), Math.min(60_000, Math.max(1000, def.limits.maxAge / 10)))
      this.#retentionTimer.unref()
    }
  }

  static async open(def: StreamDefinition, streamsDir: string, log: Logger): Promise<Stream> {
    // the JetStream store (store/jetstream-store.ts) needs the cluster's NATS connection, which this build does not have yet
    if (def.storage === 'jetstream') throw jetstreamNeedsNats(def)
    const journal = await Journal.open(join(streamsDir, def.name), { fsync: def.fsync, limits: def.limits, log })
    const r = journal.recovery
    if (r.tornTails.length + r.corruptRecords.length + r.damagedSegments.length > 0) {
      log.warn({ stream: def.name, tornTails: r.tornTails, corrupt: r.corruptRecords.length, damaged: r.damagedSegments }, 'stream recovered from damage')
    }
    return new Stream(def, journal, log)
  }

  get definition(): StreamDefinition {
    return this.#def
  }

  /** Stores a routed message; resolves when durable, rejects with the reason it was not stored. */
  store(packet: RoutedPacket): Promise<Appended> {
    let appended: Appended
    try {
      const max = this.#def.maxMsgSize
      if (max > 0 && packet.payload.length > max) {
        throw new EdgebusError('ESTREAM_LIMIT', `stream "${this.name}": message of ${packet.payload.length} bytes is over maxMsgSize ${max}`, { stream: this.name, reason: 'maxMsgSize' })
      }
      const props = packet.properties as MqttPublishProperties | undefined
      appended = this.journal.appendQueued({
        subject: packet.topic,
        payload: packet.payload,
        headers: props === undefined ? null : headersOf(props),
        msgId: msgIdOf(props),
      })
    } catch (err) {
      this.#count(err)
      return Promise.reject(err)
    }
    if (appended.duplicate) this.#duplicates++
    else this.#stored++
    if (this.#followers.size > 0 && !appended.duplicate) {
      const rec: FollowedRecord = { seq: appended.seq, timestamp: appended.timestamp, subject: packet.topic, payload: packet.payload }
      appended.durable.then(() => { for (const f of this.#followers) f(rec) }, () => {})
    }
    return appended.durable.then(() => appended, (err: unknown) => {
      this.#count(err)
      throw err
    })
  }

  #count(err: unknown): void {
    const reason = isEdgebusError(err) ? err.code : 'EJOURNAL_IO'
    if (reason === 'ESTREAM_LIMIT') {
      if ((err as EdgebusError).detail.reason === 'maxMsgSize') this.#refused.tooLarge++
      else this.#refused.limit++
    } else if (reason === 'ERECORD_INVALID') {
      this.#refused.invalid++
    } else {
      this.#refused.io++
      // a full disk refuses every message: one line per cause per 10 s, with the count
      this.#refusals.error(`${reason}:${this.name}`, { stream: this.name, err: (err as Error).message, code: reason }, 'stream could not store a message')
    }
  }

  /** Calls `fn` with every message stored from now on, once durable; returns the unfollow function. */
  follow(fn: (rec: FollowedRecord) => void): () => void {
    this.#followers.add(fn)
    return () => this.#followers.delete(fn)
  }

  info(): StreamInfo {
    const j = this.journal
    return {
      name: this.name,
      subjects: this.#def.subjects,
      messages: j.messages,
      bytes: j.bytes,
      firstSeq: j.firstSeq,
      lastSeq: j.lastSeq,
      firstTime: j.messages > 0 ? new Date(j.firstTime).toISOString() : null,
      lastTime: j.lastSeq > 0 ? new Date(j.lastTime).toISOString() : null,
      stored: this.#stored,
      duplicates: this.#duplicates,
      refused: { ...this.#refused },
      dropped: { ...j.drops },
      diskBytes: j.diskBytes,
      segments: j.segmentCount,
    }
  }

  async close(): Promise<void> {
    if (this.#retentionTimer) clearInterval(this.#retentionTimer)
    await this.journal.close()
  }
}

/** The shape mqtt-packet (and our codec) give PUBLISH properties. */
interface MqttPublishProperties {
  payloadFormatIndicator?: boolean
  messageExpiryInterval?: number
  responseTopic?: string
  correlationData?: Uint8Array
  userProperties?: Record<string, string | string[]>
  contentType?: string
}

function headersOf(p: MqttPublishProperties): RecordHeaders | null {
  const h: RecordHeaders = {}
  let any = false
  if (p.payloadFormatIndicator !== undefined) { h.payloadFormatIndicator = p.payloadFormatIndicator ? 1 : 0; any = true }
  if (p.messageExpiryInterval !== undefined) { h.messageExpiryInterval = p.messageExpiryInterval; any = true }
  if (p.responseTopic !== undefined) { h.responseTopic = p.responseTopic; any = true }
  if (p.correlationData !== undefined) { h.correlationData = p.correlationData; any = true }
  if (p.contentType !== undefined) { h.contentType = p.contentType; any = true }
  if (p.userProperties !== undefined) {
    const pairs: Array<readonly [string, string]> = []
    for (const [k, v] of Object.entries(p.userProperties)) {
      if (Array.isArray(v)) for (const x of v) pairs.push([k, x])
      else pairs.push([k, v])
    }
    if (pairs.length > 0) { h.userProperties = pairs; any = true }
  }
  return any ? h : null
}

function msgIdOf(p: MqttPublishProperties | undefined): string | null {
  const v = p?.userProperties?.[MSG_ID_PROPERTY]
  if (v === undefined) return null
  return Array.isArray(v) ? (v[0] ?? null) : v
}
