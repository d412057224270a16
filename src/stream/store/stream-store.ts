import type { RecordInput, StoredRecord } from '../record.ts'
import type { RetentionLimits } from '../retention.ts'

/**
 * Where a stream keeps its messages: the file journal on this node (journal-store.ts, the
 * default) or a JetStream stream replicated by nats-server (jetstream-store.ts, cluster mode).
 * Both keep the same promises, checked by one case suite (test/stream/store/*.case.ts):
 *
 * - `append` resolves once the message is stored under the store's durability (the journal: its
 *   fsync policy; JetStream: the publish ack, i.e. a quorum of `replicas` has it) and only then
 *   may a PUBACK go out. Refusals are typed: ESTREAM_LIMIT (detail.limit maxMsgs, maxBytes under
 *   discard 'new', or maxMsgSize), ERECORD_INVALID, EJOURNAL_FULL / ESTORE_FULL (no room on the
 *   disk), EJOURNAL_IO / ESTORE_UNAVAILABLE (could not be written, or no answer).
 * - A msgId seen within duplicateWindow stores nothing: `duplicate`, with the original's seq.
 * - Retention (maxMsgs, maxBytes, maxAge, maxMsgsPerSubject, discard old/new) as in retention.ts;
 *   `bytes` is each store's own measure (journal: whole frames; JetStream: its message size).
 * - Sequences are gapless at append, start at 1 and never go back, even after purge.
 */
export interface StreamStore {
  readonly kind: StoreKind
  append(rec: RecordInput): Promise<StoreAppended>
  /** The record with this sequence, or null (never stored, or removed). */
  read(seq: number): Promise<StoredRecord | null>
  /** The first live record at or after `fromSeq` whose subject `matches` (all when omitted), or null. */
  next(fromSeq: number, matches?: (subject: string) => boolean): Promise<StoredRecord | null>
  /** Replay: every live record from `fromSeq` on, in order, up to the last one stored when called. */
  iterate(fromSeq: number): AsyncIterable<StoredRecord>
  /** The first sequence whose timestamp is at or after `ms` (lastSeq + 1 when none). */
  seqForTime(ms: number): Promise<number>
  /** Removes every message; returns how many. Numbering goes on. */
  purge(): Promise<number>
  info(): Promise<StoreInfo>
  close(): Promise<void>
}

export type StoreKind = 'journal' | 'jetstream'

export interface StoreAppended {
  seq: number
  timestamp: number
  /** The msgId was in the duplicate window: nothing was stored, seq is the original's. */
  duplicate: boolean
}

export interface StoreInfo {
  kind: StoreKind
  messages: number
  bytes: number
  /** The oldest stored sequence; lastSeq + 1 when empty. */
  firstSeq: number
  lastSeq: number
  /** ms since the epoch, 0 when none. */
  firstTime: number
  lastTime: number
  /** Copies kept (1 for the journal). */
  replicas: number
}

/** What a store is opened with: the stream's retention and size limits. */
export interface StoreLimits extends RetentionLimits {
  /** Largest payload accepted, bytes; 0: no limit. */
  maxMsgSize: number
}
