import { FrameCursor, Step, type JournalSegment } from '../segment.ts'
import type { SequenceIndex } from '../seq-index.ts'

/** Read size of a background audit and of compaction. */
export const COMPACT_CHUNK_BYTES = 1 << 20

/** A segment and what the journal keeps about it. */
export class SegmentEntry {
  /** Records superseded by maxMsgsPerSubject still in the file, and their bytes. */
  dead = 0
  deadBytes = 0
  removed = false
  /** Its counts came from its index file, not from reading its records (see Journal.#recount). */
  unverified = false
  constructor(public file: JournalSegment, public index: SequenceIndex) {}
  get baseSeq(): number { return this.file.baseSeq }
}

/**
 * Reads a segment trusted by its index, a chunk per step, for the sequences it cannot serve:
 * within a segment without maxMsgsPerSubject the sequences are consecutive, so they are the gaps
 * between valid frames (up to the last sequence the index holds).
 */
export class SegmentAudit {
  readonly cur: FrameCursor
  /** Sequences that fail their check, as [from, to] ranges, and the bytes they take. */
  readonly gaps: Array<[number, number]> = []
  badBytes = 0
  #prev: number
  readonly #lastSeq: number

  constructor(readonly entry: SegmentEntry) {
    this.cur = new FrameCursor(entry.file, 0, entry.baseSeq - 1, COMPACT_CHUNK_BYTES, false, entry.file.readableEnd)
    this.#prev = entry.baseSeq - 1
    this.#lastSeq = entry.index.records > 0 ? entry.index.lastSeq : entry.baseSeq - 1
  }

  /** Checks what the cursor holds; false when it needs the next chunk read (cur.fill), true at the end. `onSpan` is told of each damaged stretch. */
  step(onSpan: (cur: FrameCursor) => void): boolean {
    const cur = this.cur
    for (;;) {
      const step = cur.step()
      if (step === Step.need) return false
      if (step === Step.frame) {
        this.#gap(cur.frameSeq)
        this.#prev = cur.frameSeq
        continue
      }
      if (step === Step.corrupt || step === Step.torn) {
        this.badBytes += cur.badEnd - cur.badStart
        onSpan(cur)
        if (step === Step.corrupt) continue
      }
      this.#gap(this.#lastSeq + 1)
      return true
    }
  }

  /** The sequences between the last valid frame and `next` are missing. */
  #gap(next: number): void {
    if (next > this.#prev + 1) this.gaps.push([this.#prev + 1, next - 1])
  }
}
