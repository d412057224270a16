import type { Router } from './router.ts'

export interface SubjectRate {
  subject: string
  /** Messages per second, averaged over about the last 10 s. */
  rate: number
}

/** Weight of the newest second in the moving average (about a 10 s window). */
const ALPHA = 0.1
/** Below this a subject is forgotten (about one message a minute, decayed). */
const FLOOR = 0.005

/**
 * Messages per second by subject, counted where the router already is: every routed message
 * increments its cached RoutePlan's `published`, and a plan's first message in a second puts it on
 * the router's list (Router.counted: no lookup, no allocation per message). Once a second `sample()`
 * takes that list, zeroes the counts and folds them into a moving average per subject: the work
 * follows the subjects that had messages, not the size of the route cache, and a subscription
 * change (which drops the cache) loses no count. The rates are an operator's view; $SYS and
 * /metrics have the exact totals.
 */
export class SubjectRates {
  /** subject -> its rate as of second `at`; quiet seconds are applied when it is read (lazy decay). */
  readonly #rates = new Map<string, { rate: number; at: number }>()
  readonly #counts = new Map<string, number>()
  #second = 0
  #timer: NodeJS.Timeout | null = null

  constructor(readonly router: Router) {
    router.takeCounted() // counting starts now
  }

  start(): void {
    if (this.#timer !== null) return
    this.#timer = setInterval(() => this.sample(), 1000)
    this.#timer.unref()
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }

  /** One second: only the subjects that had messages are touched. */
  sample(): void {
    const second = ++this.#second
    const counts = this.#counts
    counts.clear()
    // a topic's plan can be replaced within the second (the cache was dropped): both count
    for (const plan of this.router.takeCounted()) {
      counts.set(plan.topic, (counts.get(plan.topic) ?? 0) + plan.published)
      plan.published = 0
    }
    for (const [subject, n] of counts) {
      const kept = this.#rates.get(subject)
      // a subject new here starts at its count, not at a tenth of it
      if (kept === undefined) this.#rates.set(subject, { rate: n, at: second })
      else {
        kept.rate = this.#decayed(kept) + ALPHA * n
        kept.at = second
      }
    }
    if ((second & 63) === 0) this.#sweep()
  }

  /** `kept`'s rate now: (1 - ALPHA) per second since it was last counted. */
  #decayed(kept: { rate: number; at: number }): number {
    return kept.rate * (1 - ALPHA) ** (this.#second - kept.at)
  }

  /** Forgets the subjects gone quiet (about one message a minute or less). */
  #sweep(): void {
    for (const [subject, kept] of this.#rates) if (this.#decayed(kept) < FLOOR) this.#rates.delete(subject)
  }

  /** The `limit` busiest subjects, busiest first. */
  top(limit: number): SubjectRate[] {
    this.#sweep()
    const all: SubjectRate[] = []
    for (const [subject, kept] of this.#rates) all.push({ subject, rate: Math.round(this.#decayed(kept) * 100) / 100 })
    all.sort((a, b) => b.rate - a.rate || (a.subject < b.subject ? -1 : 1))
    return all.slice(0, limit)
  }

  /** How many subjects are tracked. */
  get tracked(): number {
    return this.#rates.size
  }
}
