import type { Logger } from './log.ts'

/**
 * Logs a recurring event (a refused connection, a denied publish) at most once per `everyMs`,
 * saying how many happened since the last line: a client that is refused a thousand times a
 * second must not flood the log, and the first occurrence must still be seen at once.
 */
export class RateLimitedLog {
  readonly #log: Logger
  readonly #everyMs: number
  readonly #last = new Map<string, { at: number; suppressed: number }>()

  constructor(log: Logger, everyMs = 10_000) {
    this.#log = log
    this.#everyMs = everyMs
  }

  warn(kind: string, fields: Record<string, unknown>, message: string, now = Date.now()): void {
    const last = this.#last.get(kind)
    if (last !== undefined && now - last.at < this.#everyMs) {
      last.suppressed++
      return
    }
    if (this.#last.size > 1000) this.#last.clear()
    this.#last.set(kind, { at: now, suppressed: 0 })
    this.#log.warn({ ...fields, ...(last !== undefined && last.suppressed > 0 ? { suppressed: last.suppressed } : {}) }, message)
  }
}
