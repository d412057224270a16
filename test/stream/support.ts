import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach } from 'vitest'
import type { JournalLog } from '../../src/stream/journal.ts'

const dirs: string[] = []

/** A fresh temporary directory, removed after the test. */
export function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'edgebus-stream-'))
  dirs.push(d)
  return d
}

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

export interface LogLine { level: 'info' | 'warn' | 'error'; obj: Record<string, unknown>; msg: string }

/** A JournalLog that keeps every line. */
export function recordingLog(): JournalLog & { lines: LogLine[] } {
  const lines: LogLine[] = []
  return {
    lines,
    info: (obj, msg) => { lines.push({ level: 'info', obj: obj as Record<string, unknown>, msg }) },
    warn: (obj, msg) => { lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }) },
    error: (obj, msg) => { lines.push({ level: 'error', obj: obj as Record<string, unknown>, msg }) },
  }
}

/** A clock tests move by hand. */
export function fakeClock(start = 1_700_000_000_000): { now: () => number; advance: (ms: number) => void; set: (ms: number) => void } {
  let t = start
  return { now: () => t, advance: (ms) => { t += ms }, set: (ms) => { t = ms } }
}

export function payloadFor(seq: number): Buffer {
  return Buffer.from(`payload-${seq}-${'x'.repeat(seq % 23)}`)
}

/**
 * The files of a journal directory as a crash would leave them now, copied to a new temporary
 * directory (a file that vanishes during the copy, like a temp file being renamed, is skipped).
 */
export function crashCopy(dir: string): string {
  const copy = tempDir()
  for (const name of readdirSync(dir)) {
    try {
      copyFileSync(join(dir, name), join(copy, name))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
  return copy
}
