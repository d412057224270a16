import { EdgebusError } from '../../core/errors.ts'
import { Journal, type JournalOptions } from '../journal.ts'
import type { RecordInput, StoredRecord } from '../record.ts'
import type { StoreAppended, StoreInfo, StoreLimits, StreamStore } from './stream-store.ts'

/** The file journal as a StreamStore: this node's disk, one copy (see journal.ts). */
export class JournalStore implements StreamStore {
  readonly kind = 'journal' as const
  readonly #maxMsgSize: number

  private constructor(readonly journal: Journal, maxMsgSize: number) {
    this.#maxMsgSize = maxMsgSize
  }

  static async open(dir: string, limits: StoreLimits, opts: Omit<JournalOptions, 'limits'> = {}): Promise<JournalStore> {
    const { maxMsgSize, ...retention } = limits
    return new JournalStore(await Journal.open(dir, { ...opts, limits: retention }), maxMsgSize)
  }

  async append(rec: RecordInput): Promise<StoreAppended> {
    if (this.#maxMsgSize > 0 && rec.payload.length > this.#maxMsgSize) throw tooLarge(rec.payload.length, this.#maxMsgSize)
    const a = await this.journal.append(rec)
    return { seq: a.seq, timestamp: a.timestamp, duplicate: a.duplicate }
  }

  async read(seq: number): Promise<StoredRecord | null> {
    return this.journal.read(seq)
  }

  async next(fromSeq: number, matches?: (subject: string) => boolean): Promise<StoredRecord | null> {
    for await (const r of this.journal.iterateAsync(fromSeq)) if (matches === undefined || matches(r.subject)) return r
    return null
  }

  iterate(fromSeq: number): AsyncIterable<StoredRecord> {
    return this.journal.iterateAsync(fromSeq, this.journal.lastSeq)
  }

  async seqForTime(ms: number): Promise<number> {
    return this.journal.seqForTime(ms)
  }

  purge(): Promise<number> {
    return this.journal.purge()
  }

  async info(): Promise<StoreInfo> {
    const j = this.journal
    j.applyRetention() // maxAge holds between appends too
    return { kind: 'journal', messages: j.messages, bytes: j.bytes, firstSeq: j.firstSeq, lastSeq: j.lastSeq, firstTime: j.firstTime, lastTime: j.lastTime, replicas: 1 }
  }

  close(): Promise<void> {
    return this.journal.close()
  }
}

/** The refusal of a payload over maxMsgSize, the same from every store. */
export function tooLarge(size: number, max: number): EdgebusError {
  return new EdgebusError('ESTREAM_LIMIT', `message of ${size} bytes is over maxMsgSize ${max}`, { limit: 'maxMsgSize', reason: 'maxMsgSize', size, max })
}
