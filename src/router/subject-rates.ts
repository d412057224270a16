import type { RoutePlan, Router } from './router.ts'

export interface SubjectRate {
  subject: string
  /** Messages per second, averaged over about the last 10 s. */
  rate: number
}

/** Weight of the newest second in the moving average (about a 10 s window). */
const ALPHA = 0.1
/** Below this a subject is dropped (about one message a minute, decayed). */
const FLOOR = 0.005

/**
 * Messages per second by subject, counted where the router already is: every routed message
 * increments its cached RoutePlan's `published` (no lookup, no allocation on the hot path). Once a
 * second `sample()` reads and zeroes those counts and folds them into a moving average per subject.
 *
 * The route cache is dropped on every subscription change: the plans seen busy last second are kept
 * here and read once more, so a busy subject keeps its count across a change; a subject whose only
 * plan was made and dropped within one second goes uncounted (the rates are an operator's view,
 * not accounting: $SYS and /metrics have the exact totals).
 */
export class SubjectRates {
  readonly #rates = new Map<string, number>()
  #busy: Array<[string, RoutePlan]> = []
  #next: Array<[string, RoutePlan]> = []
  readonly #counts = new Map<string, number>()
  #timer: NodeJS.Timeout | null = null

  constructor(readonly router: Router) {}

  start(): void {
    if (this.#timer !== null) return
    this.#timer = setInterval(() => this.sample(), 1000)
    this.#timer.unref()
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }

  sample(): void {
    const counts = this.#counts
    counts.clear()
    const next = this.#next
    next.length = 0
    const take = (topic: string, plan: RoutePlan): void => {
      const n = plan.published
      if (n === 0) return
      plan.published = 0 // read once: a plan both kept and still cached counts once
      counts.set(topic, (counts.get(topic) ?? 0) + n)
      next.push([topic, plan])
    }
    for (const [topic, plan] of this.#busy) take(topic, plan)
    for (const [topic, plan] of this.router.plans()) take(topic, plan)
    this.#next = this.#busy
    this.#busy = next
    for (const [subject, rate] of this.#rates) {
      const decayed = rate * (1 - ALPHA) + ALPHA * (counts.get(subject) ?? 0)
      if (decayed < FLOOR && !counts.has(subject)) this.#rates.delete(subject)
      else this.#rates.set(subject, decayed)
    }
    // a subject new this second starts at its count, not at a tenth of it
    for (const [subject, n] of counts) if (!this.#rates.has(subject)) this.#rates.set(subject, n)
  }

  /** The `limit` busiest subjects, busiest first. */
  top(limit: number): SubjectRate[] {
    const all: SubjectRate[] = []
    for (const [subject, rate] of this.#rates) all.push({ subject, rate: Math.round(rate * 100) / 100 })
    all.sort((a, b) => b.rate - a.rate || (a.subject < b.subject ? -1 : 1))
    return all.slice(0, limit)
  }

  get tracked(): number {
    return this.#rates.size
  }
}
