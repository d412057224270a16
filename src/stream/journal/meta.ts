import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import { join } from 'node:path'
import { syncDirSync } from '../../core/fsync.ts'
import { journalIoError, syncDirectory } from '../segment.ts'
import type { JournalLog } from './options.ts'

export const META_FILE = 'journal.meta'
export const META_FORMAT = 1

/**
 * journal.meta. `lastSeq` (optional: files of older versions lack it) is the high-water mark: the
 * highest sequence ever handed out as of the write, kept apart from the segments so that a lost
 * or damaged segment never lets numbering fall back and use a sequence twice.
 */
export interface Meta { format: number; firstSeq: number; maxMsgsPerSubject: number; lastSeq?: number }

/** Writes journal.meta durably: a synced temporary file renamed into place, the directory synced. */
export async function writeMeta(dir: string, meta: Meta): Promise<void> {
  const path = join(dir, META_FILE)
  try {
    const fh = await fsp.open(path + '.tmp', 'w')
    try {
      await fh.writeFile(JSON.stringify(meta) + '\n')
      await fh.datasync()
    } finally {
      await fh.close()
    }
    await fsp.rename(path + '.tmp', path)
    await syncDirectory(dir)
  } catch (err) {
    throw journalIoError(err, 'write meta', path)
  }
}

/** writeMeta, synchronously (recovery: before a segment is set aside). */
export function writeMetaSync(dir: string, meta: Meta): void {
  const path = join(dir, META_FILE)
  try {
    const fd = fs.openSync(path + '.tmp', 'w')
    try {
      fs.writeFileSync(fd, JSON.stringify(meta) + '\n')
      fs.fdatasyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(path + '.tmp', path)
    syncDirSync(dir)
  } catch (err) {
    throw journalIoError(err, 'write meta', path)
  }
}

/** journal.meta as written, or null when missing or damaged (said in the log). */
export function readMeta(dir: string, log: JournalLog): Meta | null {
  const path = join(dir, META_FILE)
  let text: string
  try {
    text = fs.readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ code: 'EJOURNAL_IO', path, err: String(err) }, 'journal meta unreadable; ignored')
    return null
  }
  try {
    const m = JSON.parse(text) as Partial<Meta>
    if (m.format === META_FORMAT && Number.isSafeInteger(m.firstSeq) && Number.isSafeInteger(m.maxMsgsPerSubject) &&
      (m.lastSeq === undefined || Number.isSafeInteger(m.lastSeq))) return m as Meta
  } catch { /* reported below */ }
  log.warn({ code: 'EJOURNAL_CORRUPT', path }, 'journal meta is damaged; ignored (explicitly removed messages may reappear)')
  return null
}
