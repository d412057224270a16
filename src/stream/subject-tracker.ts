/**
 * SubjectTracker: the bookkeeping behind maxMsgsPerSubject. For each subject it holds the
 * sequences (and frame sizes) of that subject's live records, oldest first, at most `limit` of
 * them. Adding a record past the limit evicts the subject's oldest: that record is superseded —
 * hidden from readers at once and uncounted — and stays on disk until its segment is compacted
 * or deleted.
 *
 * Superseded records carry no tombstone: which records are live follows from the records
 * themselves (the newest `limit` per subject at or after firstSeq), so the journal rebuilds the
 * tracker by scanning on open. The one case that rule cannot cover — the limit being raised or
 * removed between runs — the journal handles by compacting the superseded records away under the
 * old limit first (journal.ts, "open").
 */
class SubjectSeqs {
  seqs: number[] = []
  sizes: number[] = []
  head = 0

  get count(): number {
    return this.seqs.length - this.head
  }

  shift(): void {
    this.head++
    if (this.head >= 32 && this.head * 2 >= this.seqs.length) {
      this.seqs = this.seqs.slice(this.head)
      this.sizes = this.sizes.slice(this.head)
      this.head = 0
    }
  }
}

export class SubjectTracker {
  #subjects = new Map<string, SubjectSeqs>()
  /** Set by add(): the sequence and size of the record it evicted, or -1. */
  evictedSeq = -1
  evictedSize = 0

  constructor(readonly limit: number) {
    if (!(limit >= 1)) throw new RangeError('SubjectTracker needs a limit of at least 1')
  }

  /** Subjects with at least one live record. */
  get subjects(): number {
    return this.#subjects.size
  }

  countOf(subject: string): number {
    return this.#subjects.get(subject)?.count ?? 0
  }

  /** The frame size of the subject's oldest live record (the next to be evicted), or 0. */
  oldestSize(subject: string): number {
    const s = this.#subjects.get(subject)
    return s === undefined || s.count === 0 ? 0 : (s.sizes[s.head] as number)
  }

  /**
   * Notes a new live record (sequences arrive in increasing order). When the subject goes over the
   * limit its oldest record is evicted and reported in evictedSeq/evictedSize (else evictedSeq = -1).
   */
  add(subject: string, seq: number, size: number): void {
    let s = this.#subjects.get(subject)
    if (s === undefined) {
      s = new SubjectSeqs()
      this.#subjects.set(subject, s)
    }
    s.seqs.push(seq)
    s.sizes.push(size)
    if (s.count > this.limit) {
      this.evictedSeq = s.seqs[s.head] as number
      this.evictedSize = s.sizes[s.head] as number
      s.shift()
    } else {
      this.evictedSeq = -1
    }
  }

  /** Whether `seq` (of `subject`) is one of its subject's live records. */
  isLive(subject: string, seq: number): boolean {
    const s = this.#subjects.get(subject)
    if (s === undefined) return false
    const seqs = s.seqs
    let lo = s.head
    let hi = seqs.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((seqs[mid] as number) < seq) lo = mid + 1
      else hi = mid
    }
    return lo < seqs.length && seqs[lo] === seq
  }

  /** Forgets a live record leaving by retention (always its subject's oldest). */
  remove(subject: string, seq: number): void {
    const s = this.#subjects.get(subject)
    if (s === undefined) return
    if (s.seqs[s.head] === seq) {
      s.shift()
    } else {
      const i = s.seqs.indexOf(seq, s.head)
      if (i === -1) return
      s.seqs.splice(i, 1)
      s.sizes.splice(i, 1)
    }
    if (s.count === 0) this.#subjects.delete(subject)
  }

  clear(): void {
    this.#subjects.clear()
  }
}
