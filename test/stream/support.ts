import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach } from 'vitest'
import type { JournalLog } from '../../src/stream/journal.ts'
import { spawn } from 'node:child_process'
import type { ConsumerTimers } from '../../src/stream/consumer.ts'

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

/** A clock and timers the test moves by hand: advance() fires what falls due, in order. */
export class ManualTime implements ConsumerTimers {
  now: number
  #q: Array<{ at: number; fn: () => void; live: boolean; n: number }> = []
  #n = 0
  constructor(now = 1_700_000_000_000) { this.now = now }
  readonly clock = (): number => this.now
  setTimeout(fn: () => void, ms: number): unknown {
    const t = { at: this.now + ms, fn, live: true, n: this.#n++ }
    this.#q.push(t)
    return t
  }
  clearTimeout(h: unknown): void {
    (h as { live: boolean }).live = false
  }
  advance(ms: number): void {
    const end = this.now + ms
    for (let guard = 0; ; guard++) {
      if (guard > 100_000) throw new Error('timers keep firing at the same time')
      const due = this.#q.filter((t) => t.live && t.at <= end).sort((a, b) => a.at - b.at || a.n - b.n)[0]
      if (due === undefined) break
      due.live = false
      this.now = Math.max(this.now, due.at)
      due.fn()
    }
    this.#q = this.#q.filter((t) => t.live)
    this.now = end
  }
}

/**
 * Runs a child process until `ms` after it said it is ready (`ready(stdout)`), then kills it with
 * SIGKILL. Resolves with its complete stdout lines (a line cut by the kill is dropped) and stderr.
 */
export function runUntilKilled(args: string[], opts: { ms: number; ready: (out: string) => boolean; env?: NodeJS.ProcessEnv }): Promise<{ lines: string[]; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let stderr = ''
    let timer: NodeJS.Timeout | null = null
    const guard = setTimeout(() => child.kill('SIGKILL'), 8000)
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d
      if (timer === null && opts.ready(out)) timer = setTimeout(() => child.kill('SIGKILL'), opts.ms)
    })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(guard)
      if (timer !== null) clearTimeout(timer)
      if (signal !== 'SIGKILL') return reject(new Error(`child ended by itself (code ${code}): ${stderr}`))
      const lines = out.split('\n')
      lines.pop() // a line cut by the kill is not an acknowledgement
      resolve({ lines, stderr })
    })
  })
}
