import * as fs from 'node:fs'
import { join } from 'node:path'
import { RECORD_MIN_BYTES } from '../record.ts'
import { JournalSegment, segmentFileName, type JournalFileOps } from '../segment.ts'
import { SequenceIndex } from '../seq-index.ts'
import type { JournalLog, RecoveryReport } from './options.ts'
import { SegmentEntry } from './segment-entry.ts'

// Recovery of one segment at open: trusted by its index, scanned (torn tail cut, corrupt records
// skipped and reported) or set aside as *.damaged behind a synced high-water mark. Journal.#recover
// walks the segments and decides; these do the work on one.

/** What recovering a segment needs of its journal. */
export interface RecoveryContext {
  readonly dir: string
  readonly ops: JournalFileOps
  readonly verify: 'tail' | 'all'
  readonly interval: number
  readonly report: RecoveryReport
  /** Corrupt spans already reported (segment base:start). */
  readonly corruptSeen: Set<string>
  readonly log: JournalLog
  writeIndex(e: SegmentEntry): void
  /** journal.meta with this high-water mark, written and synced now. */
  writeMetaSync(lastSeq: number): void
  metaLastSeq(): number
}

export function recoverSegment(r: RecoveryContext, base: number, afterSeq: number, isLast: boolean): SegmentEntry | string {
  let seg: JournalSegment
  try {
    seg = JournalSegment.open(r.dir, base, r.ops)
  } catch (err) {
    return `cannot open: ${(err as Error).message}`
  }
  const idxPath = join(r.dir, segmentFileName(base, '.idx'))
  let reason: 'missing' | 'stale' | 'verify' = 'missing'
  if (r.verify === 'all') {
    reason = 'verify'
  } else {
    try {
      const idx = SequenceIndex.decode(fs.readFileSync(idxPath), seg.size)
      if (idx !== null && (idx.records === 0 || idx.firstSeq > afterSeq)) {
        const e = new SegmentEntry(seg, idx)
        e.unverified = true
        return e
      }
      reason = 'stale'
    } catch { /* no index file: scan */ }
  }
  const index = new SequenceIndex(r.interval)
  try {
    const scan = seg.scan(index, Math.max(afterSeq, base - 1))
    if (scan.unsupportedAt >= 0) {
      seg.close()
      return `holds records of a newer format (at byte ${scan.unsupportedAt})`
    }
    for (const c of scan.corrupt) {
      r.report.corruptRecords.push({ segment: seg.name, ...c })
      r.corruptSeen.add(`${base}:${c.start}`) // reported once, here
    }
    if (scan.tornBytes > 0) {
      seg.truncate(scan.validEnd)
      r.report.tornTails.push({ segment: seg.name, validEnd: scan.validEnd, bytesCut: scan.tornBytes })
      r.log.warn({ code: 'EJOURNAL_CORRUPT', segment: seg.path, bytesCut: scan.tornBytes, validEnd: scan.validEnd }, 'journal cut a torn tail')
    }
    seg.readableEnd = seg.size
  } catch (err) {
    seg.close()
    return `cannot read: ${(err as Error).message}`
  }
  // the last segment is the one a crash interrupts: it normally has no index, and gets one when sealed
  const entry = new SegmentEntry(seg, index)
  if (!isLast || reason !== 'missing') {
    r.report.indexesRebuilt.push({ segment: seg.name, reason })
    if (!isLast) r.writeIndex(entry)
  }
  return entry
}

/**
 * Renames an unusable segment to *.damaged; returns the highest sequence it may have held. That
 * bound goes into journal.meta (synced) first, so numbering stays above it after the segment is
 * gone, also across later restarts.
 */
export function setAside(r: RecoveryContext, base: number, nextBase: number | undefined, reason: string, afterSeq: number): number {
  const name = segmentFileName(base)
  const from = join(r.dir, name)
  let size = 0
  try {
    const st = fs.statSync(from)
    if (st.isFile()) size = st.size // a directory's size says nothing of the records it replaced: the meta's mark does
  } catch { /* size unknown */ }
  const bound = nextBase !== undefined ? nextBase - 1 : base - 1 + Math.ceil(size / RECORD_MIN_BYTES)
  let renamedTo = name + '.damaged'
  for (let n = 1; fs.existsSync(join(r.dir, renamedTo)); n++) renamedTo = `${name}.damaged.${n}`
  try {
    // the mark first: once the segment is aside, nothing else on disk remembers its sequences
    // (when it cannot be written, the segment stays where it is and is set aside at the next open)
    r.writeMetaSync(Math.max(afterSeq, bound))
    fs.renameSync(from, join(r.dir, renamedTo))
  } catch (err) {
    renamedTo = ''
    r.log.error({ code: 'EJOURNAL_IO', path: from, err: String(err) }, 'journal could not set a damaged segment aside')
  }
  fs.rmSync(join(r.dir, segmentFileName(base, '.idx')), { force: true })
  // the next segment bounds what it held; for the last one, its size does (no frame is smaller than RECORD_MIN_BYTES), and the meta's mark
  const lastSeqAtMost = Math.max(bound, nextBase !== undefined ? 0 : r.metaLastSeq())
  r.report.damagedSegments.push({ segment: name, renamedTo, firstSeq: base, lastSeqAtMost, reason })
  r.log.error({ code: 'EJOURNAL_CORRUPT', segment: from, renamedTo, firstSeq: base, lastSeqAtMost, reason }, 'journal set a damaged segment aside')
  return nextBase !== undefined ? 0 : lastSeqAtMost
}
