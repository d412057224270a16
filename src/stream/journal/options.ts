import { EdgebusError } from '../../core/errors.ts'
import type { RetentionLimits } from '../retention.ts'
import type { JournalFileOps } from '../segment.ts'

// The journal's public vocabulary: its options, the answer to an append and the recovery report.

export const FsyncPolicies = ['always', 'batch', 'none'] as const
export type FsyncPolicy = (typeof FsyncPolicies)[number]

/** The logging the journal needs (src/core/log.ts' Logger fits). */
export interface JournalLog {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

export interface JournalOptions {
  /** When an append is durable: see the class comment. Default 'batch'. */
  fsync?: FsyncPolicy
  /**
   * How long a batch stays open after its first append when no write is under way, in ms.
   * Default 0: the batch is written at the end of the current event-loop turn, and while its sync
   * runs the next batch fills by itself (natural group commit). A window only lowers the number of
   * syncs at light load (flash wear), at the price of that much latency on every append.
   */
  batchWindowMs?: number
  /** Seal a batch at this many bytes. Default 1 MiB. */
  maxBatchBytes?: number
  /** Seal a batch at this many records. Default 10,000. */
  maxBatchRecords?: number
  /** Start a new segment before one would pass this size. Default 64 MiB. */
  segmentBytes?: number
  /** Sparse index spacing. Default 8 KiB. */
  indexIntervalBytes?: number
  /** Read size of iterate()/iterateAsync(). Default 1 MiB. */
  readChunkBytes?: number
  /** Retention limits (retention.ts); default none. */
  limits?: Partial<RetentionLimits>
  /** The time source for timestamps, maxAge and the duplicate window. Default Date.now. */
  clock?: () => number
  log?: JournalLog
  /** On open, check every record of every segment ('all') or only of segments without a valid index ('tail', default). */
  verify?: 'tail' | 'all'
  /** File operations of the write path; tests inject failures here. */
  fileOps?: Partial<JournalFileOps>
}

/** The answer to an append: its sequence and timestamp, and `durable`, settled when it is (or is not). */
export class Appended {
  constructor(
    readonly seq: number,
    readonly timestamp: number,
    /** True when the msg-id was in the duplicate window: nothing was stored, seq is the original's. */
    readonly duplicate: boolean,
    readonly durable: Promise<void>,
  ) {}
}

export interface TornTailReport { segment: string; validEnd: number; bytesCut: number }
export interface CorruptRecordReport {
  segment: string
  /** File positions of the skipped bytes. */
  start: number
  end: number
  /** The valid sequences around the gap (0 when none); the lost records are between them. */
  afterSeq: number
  beforeSeq: number
  /** The sequence the broken header claims, unverified; -1 when unreadable. */
  claimedSeq: number
}
export interface DamagedSegmentReport { segment: string; renamedTo: string; firstSeq: number; lastSeqAtMost: number; reason: string }
export interface RecoveryReport {
  tornTails: TornTailReport[]
  corruptRecords: CorruptRecordReport[]
  damagedSegments: DamagedSegmentReport[]
  indexesRebuilt: Array<{ segment: string; reason: 'missing' | 'stale' | 'verify' }>
  /** Leftover temporary files removed. */
  removedFiles: string[]
  /** Segments rewritten without superseded records (a raised or removed maxMsgsPerSubject). */
  compacted: string[]
}

const noop = (): void => {}
export const silentLog: JournalLog = { info: noop, warn: noop, error: noop }

/** A numeric option checked at open (ECONFIG_INVALID names the key). */
export function positive(key: string, v: number, zeroOk = false): number {
  if (!Number.isFinite(v) || v < 0 || (!zeroOk && v === 0)) {
    throw new EdgebusError('ECONFIG_INVALID', `journal option ${key} must be a ${zeroOk ? 'non-negative' : 'positive'} number`, { key, value: v })
  }
  return v
}
