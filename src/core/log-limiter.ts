type Level = 'error' | 'warn' | 'info'

/** What the limiter writes to: a Logger, or a layer's narrower log (a journal's). */
export type LimitedLog = Record<Level, (fields: object, msg: string) => void>

interface Cause {
  readonly key: string
  /** Lines not written since the last one that was. */
  suppressed: number
  /** When the window of the last written line ends. */
  until: number
  level: Level
  fields: Record<string, unknown>
  msg: string
  timer: ReturnType<typeof setTimeout> | null
}

/**
 * Log lines rate-limited per cause: a full disk refuses thousands of messages a second, and the
 * operator needs one line that says so and how often, not thousands. The first line of a cause is
 * written at once; the ones after it within `intervalMs` are only counted, and when the window
 * ends the last of them is written with `suppressed: N` (so a burst that stops is still reported).
 * A cause is a short stable string, such as `EJOURNAL_FULL:telemetry`.
 */
export class LogLimiter {
  readonly #log: LimitedLog
  readonly #intervalMs: number
  readonly #now: () => number
  readonly #causes = new Map<string, Cause>()

  constructor(log: LimitedLog, opts: { intervalMs?: number; now?: () => number } = {}) {
    this.#log = log
    this.#intervalMs = opts.intervalMs ?? 10_000
    this.#now = opts.now ?? Date.now
  }

  error(cause: string, fields: Record<string, unknown>, msg: string): void { this.#emit('error', cause, fields, msg) }
  warn(cause: string, fields: Record<string, unknown>, msg: string): void { this.#emit('warn', cause, fields, msg) }
  info(cause: string, fields: Record<string, unknown>, msg: string): void { this.#emit('info', cause, fields, msg) }

  /** Lines of `cause` counted but not written yet. */
  suppressed(cause: string): number {
    return this.#causes.get(cause)?.suppressed ?? 0
  }

  /** Writes what is counted and forgets every cause (server close). */
  flush(): void {
    for (const [key, c] of this.#causes) {
      if (c.timer !== null) clearTimeout(c.timer)
      if (c.suppressed > 0) this.#write(c)
      this.#causes.delete(key)
    }
  }

  #emit(level: Level, cause: string, fields: Record<string, unknown>, msg: string): void {
    const now = this.#now()
    const c = this.#causes.get(cause)
    if (c === undefined || (now >= c.until && c.suppressed === 0)) {
      this.#log[level]({ cause, ...fields }, msg)
      this.#causes.set(cause, { key: cause, suppressed: 0, until: now + this.#intervalMs, level, fields, msg, timer: null })
      return
    }
    c.suppressed++
    c.level = level
    c.fields = fields
    c.msg = msg
    if (c.timer === null) {
      const timer = setTimeout(() => {
        c.timer = null
        if (c.suppressed > 0) this.#write(c)
        c.until = this.#now() + this.#intervalMs
      }, Math.max(1, c.until - now))
      timer.unref?.()
      c.timer = timer
    }
  }

  #write(c: Cause): void {
    this.#log[c.level]({ cause: c.key, ...c.fields, suppressed: c.suppressed }, `${c.msg} (and ${c.suppressed} more like it in the last ${Math.round(this.#intervalMs / 1000)} s)`)
    c.suppressed = 0
  }
}
