import { EdgebusError } from '../core/errors.ts'

/**
 * Retention rules of a stream, as pure functions: the journal asks them what to refuse and what
 * to drop, and does the dropping.
 *
 * How the limits are enforced (a demanding user's reading of "keep at most N messages"):
 * - maxMsgs, maxBytes and maxAge are exact and logical. When a commit puts the stream over a
 *   limit (discard 'old'), the oldest messages leave at once: the journal's firstSeq moves past
 *   them and readers no longer see them, so `messages` never exceeds maxMsgs and `bytes` never
 *   exceeds maxBytes after an append resolves. The rules run record by record in sequence order,
 *   as if each append were alone, so what is kept never depends on how appends were batched (and a
 *   reopen after a crash, which replays the same rules, keeps the same). maxAge is checked on every
 *   commit and whenever the owner calls `applyRetention()` (the stream layer does so on a timer).
 * - Disk space is reclaimed by whole segments: a segment file is deleted once every record in it
 *   is before firstSeq, and the segment being written is kept. So the disk holds about one segment
 *   (segmentBytes) more than the live bytes, plus superseded records not yet compacted.
 * - `bytes` counts whole frames (headers, subject, properties, payload, CRC), i.e. disk use.
 * - With discard 'new', an append that would pass maxMsgs or maxBytes is refused
 *   (ESTREAM_LIMIT) and nothing is dropped for those two limits; maxAge still drops old messages
 *   (age has no "new" side). A single message larger than maxBytes is refused under both
 *   policies, since keeping it would mean dropping it at once.
 * - maxMsgsPerSubject keeps the newest N messages of each subject (a last-value store with N=1)
 *   under both discard policies; older ones of that subject leave the stream at once (see
 *   subject-tracker.ts and the journal's compaction for how they leave the disk). With discard
 *   'new', an append to a subject already at N is not refused for maxMsgs (it replaces one); for
 *   maxBytes it is credited the size of the subject's oldest record (approximate when several
 *   appends to that subject are in flight).
 *
 * Every limit is a non-negative number and 0 means "no limit".
 */

export const DiscardPolicies = ['old', 'new'] as const
export type DiscardPolicy = (typeof DiscardPolicies)[number]

export interface RetentionLimits {
  /** Most messages kept. */
  maxMsgs: number
  /** Most bytes (whole frames) kept. */
  maxBytes: number
  /** Oldest message kept, in milliseconds of age (by the record's timestamp). */
  maxAge: number
  /** Most messages kept per subject. */
  maxMsgsPerSubject: number
  /** Over maxMsgs/maxBytes: drop the oldest ('old') or refuse the new ('new'). */
  discard: DiscardPolicy
  /** How long a msg-id is remembered for duplicate detection, in ms (see dedupe.ts). */
  duplicateWindow: number
}

export const NO_LIMITS: Readonly<RetentionLimits> = Object.freeze({
  maxMsgs: 0,
  maxBytes: 0,
  maxAge: 0,
  maxMsgsPerSubject: 0,
  discard: 'old',
  duplicateWindow: 0,
})

const NUMERIC_LIMITS = ['maxMsgs', 'maxBytes', 'maxAge', 'maxMsgsPerSubject', 'duplicateWindow'] as const

/** Completes and checks a set of limits (ECONFIG_INVALID names the bad one). */
export function resolveLimits(partial: Partial<RetentionLimits> = {}): RetentionLimits {
  const limits: RetentionLimits = { ...NO_LIMITS }
  for (const key of NUMERIC_LIMITS) {
    const v = partial[key]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw new EdgebusError('ECONFIG_INVALID', `stream limit ${key} must be a non-negative integer (0 = no limit)`, { key, value: v })
    }
    limits[key] = v
  }
  if (partial.discard !== undefined) {
    if (!(DiscardPolicies as readonly string[]).includes(partial.discard)) {
      throw new EdgebusError('ECONFIG_INVALID', `stream discard policy must be one of ${DiscardPolicies.join(', ')}`, { key: 'discard', value: partial.discard })
    }
    limits.discard = partial.discard
  }
  return limits
}

/** How full a stream is: live messages and their bytes, including appends not yet committed. */
export interface StreamUsage {
  messages: number
  bytes: number
}

/**
 * Whether to refuse an append of a `recordBytes` frame: null to accept, else the ESTREAM_LIMIT
 * error. `usage` includes appends accepted but not yet committed.
 */
export function refuseAppend(limits: RetentionLimits, usage: StreamUsage, recordBytes: number): EdgebusError | null {
  if (limits.maxBytes > 0 && recordBytes > limits.maxBytes) {
    return new EdgebusError('ESTREAM_LIMIT', 'message is larger than the stream maxBytes', { limit: 'maxBytes', max: limits.maxBytes, bytes: recordBytes })
  }
  if (limits.discard !== 'new') return null
  if (limits.maxMsgs > 0 && usage.messages + 1 > limits.maxMsgs) {
    return new EdgebusError('ESTREAM_LIMIT', 'stream is full (maxMsgs, discard new)', { limit: 'maxMsgs', max: limits.maxMsgs })
  }
  if (limits.maxBytes > 0 && usage.bytes + recordBytes > limits.maxBytes) {
    return new EdgebusError('ESTREAM_LIMIT', 'stream is full (maxBytes, discard new)', { limit: 'maxBytes', max: limits.maxBytes })
  }
  return null
}

/**
 * Whether the oldest live message (timestamp `oldestTime`) must leave, given committed usage.
 * Callers drop one and ask again; every answer is about that one message.
 */
/** Which limit makes the oldest message leave, if one does (checked in this order). */
export function dropReason(limits: RetentionLimits, usage: StreamUsage, oldestTime: number, now: number): 'maxAge' | 'maxMsgs' | 'maxBytes' | null {
  if (usage.messages === 0) return null
  if (limits.maxAge > 0 && oldestTime < now - limits.maxAge) return 'maxAge'
  if (limits.discard !== 'old') return null
  if (limits.maxMsgs > 0 && usage.messages > limits.maxMsgs) return 'maxMsgs'
  if (limits.maxBytes > 0 && usage.bytes > limits.maxBytes) return 'maxBytes'
  return null
}

/** Messages retention removed since the journal opened, by the limit that removed them. */
export interface RetentionDrops {
  maxAge: number
  maxMsgs: number
  maxBytes: number
  maxMsgsPerSubject: number
}

/**
 * Compaction: whether a sealed segment is worth rewriting, given the bytes of its records that
 * are superseded (maxMsgsPerSubject) and its size: at least half of it, or of a full segment.
 */
export function worthCompacting(deadBytes: number, segmentSize: number, segmentBytes: number): boolean {
  return deadBytes > 0 && (deadBytes * 2 >= segmentSize || deadBytes * 2 >= segmentBytes)
}
