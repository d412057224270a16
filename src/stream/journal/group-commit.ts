// Group commit: appends encoded into one buffer go to disk as one write and (fsync 'batch') one
// fdatasync; every append of the batch settles with it (see the Journal class comment).

const noop = (): void => {}

/** A batch's first buffer; it grows by doubling. */
export const BATCH_START_BYTES = 64 * 1024
/** Batches up to this size go back to the pool for reuse. */
export const BATCH_KEEP_BYTES = 4 << 20

/** Appends on their way to disk: one buffer, one write. */
export class Batch {
  buf: Buffer
  len = 0
  count = 0
  firstSeq = 0
  /** The batch starts a new segment. */
  newSegment = false
  /** Per record, by position: timestamp, frame size, subject. Kept between uses (no reallocation). */
  times: number[] = []
  sizes: number[] = []
  subjects: string[] = []
  promise: Promise<void> = Promise.resolve()
  resolve: () => void = noop
  reject: (err: Error) => void = noop

  constructor(startBytes: number) {
    this.buf = Buffer.allocUnsafe(startBytes)
  }

  reset(): void {
    this.len = 0
    this.count = 0
    this.newSegment = false
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
    this.promise.catch(noop) // a caller that ignores `durable` must not crash the process
  }

  reserve(bytes: number): void {
    if (this.len + bytes <= this.buf.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + bytes))
    this.buf.copy(next, 0, 0, this.len)
    this.buf = next
  }

  push(time: number, size: number, subject: string): void {
    const i = this.count++
    this.times[i] = time
    this.sizes[i] = size
    this.subjects[i] = subject
    this.len += size
  }
}

