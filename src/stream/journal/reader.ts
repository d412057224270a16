import { RecordView } from '../record.ts'
import type { FrameCursor } from '../segment.ts'
import type { SegmentEntry } from './segment-entry.ts'

/** Where a replay walk stands: the next sequence wanted and the open read. */
export class ReplayWalk {
  entry: SegmentEntry | null = null
  cur: FrameCursor | null = null
  readonly view = new RecordView()
  /** fresh: every read in a new buffer, so records handed out as StoredRecords keep their payload. */
  constructor(public seq: number, readonly toSeq: number, readonly fresh: boolean) {}
}

/** A replay visiting records in place (Journal.reader). */
export class JournalReader {
  constructor(
    /** Visits records until `visit` returns false (then true: call again to go on) or the end (false). */
    readonly read: (visit: (record: RecordView) => boolean) => boolean,
  ) {}
}

