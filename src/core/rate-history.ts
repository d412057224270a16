/**
 * The server's rate history: named counters sampled once a second, the last hour of per-second
 * rates kept in ring buffers (one Float64Array per series, 28 KiB each), so a dashboard opened late
 * shows the past hour at once.
 *
 * A part registers what it counts and never calls in again: `series('messages.in', () => stats.messagesIn)`
 * for one counter, `family('stream.', () => [[name, lastSeq], ...])` for a set that changes at run
 * time (streams, bridges). Readers return cumulative counts; the history keeps the difference to
 * the previous second (a count that goes down, a counter reset, counts as 0).
 */
export type CounterRead = () => number
export type FamilyRead = () => Iterable<readonly [string, number]>

export interface RateSnapshot {
  /** Seconds between points (1). */
  interval: number
  /** The time of the last point (ms since the epoch); point i of n is at end - (n - 1 - i) * interval s. */
  end: number
  /** Rates per second, oldest first, all of the same length. */
  series: Record<string, number[]>
}

class Ring {
  readonly values: Float64Array
  last: number
  constructor(size: number, first: number) {
    this.values = new Float64Array(size)
    this.last = first
  }
}

export class RateHistory {
  readonly #single = new Map<string, CounterRead>()
  readonly #families = new Map<string, FamilyRead>()
  readonly #rings = new Map<string, Ring>()
  /** Names seen in the current sample: a series not seen is dropped with its history. */
  readonly #seen = new Set<string>()
  /** Index of the next point in every ring. */
  #head = 0
  /** Points taken, up to `size`. */
  #count = 0
  #end = 0
  #timer: NodeJS.Timeout | null = null

  constructor(readonly size = 3600) {}

  /** Counts one cumulative counter as `name`; returns the function that stops it. */
  series(name: string, read: CounterRead): () => void {
    this.#single.set(name, read)
    return () => { if (this.#single.get(name) === read) this.#single.delete(name) }
  }

  /** Counts every [name, count] that `read` lists, as `prefix + name`; returns the function that stops it. */
  family(prefix: string, read: FamilyRead): () => void {
    this.#families.set(prefix, read)
    return () => { if (this.#families.get(prefix) === read) this.#families.delete(prefix) }
  }

  /** Samples once a second until stop(); the timer does not keep the process alive. */
  start(): void {
    if (this.#timer !== null) return
    this.sample(Date.now())
    this.#timer = setInterval(() => this.sample(Date.now()), 1000)
    this.#timer.unref()
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }

  /** Takes one point of every series (the rate since the previous point). */
  sample(now: number): void {
    const at = this.#head
    this.#seen.clear()
    for (const [name, read] of this.#single) this.#record(name, read(), at)
    for (const [prefix, read] of this.#families) {
      for (const [name, count] of read()) this.#record(prefix + name, count, at)
    }
    for (const name of this.#rings.keys()) if (!this.#seen.has(name)) this.#rings.delete(name)
    this.#head = (at + 1) % this.size
    if (this.#count < this.size) this.#count++
    this.#end = now
  }

  #record(name: string, count: number, at: number): void {
    this.#seen.add(name)
    const ring = this.#rings.get(name)
    if (ring === undefined) {
      // a new series: no rate before its first count (zeros keep the series aligned)
      this.#rings.set(name, new Ring(this.size, count))
      return
    }
    const delta = count - ring.last
    ring.values[at] = delta > 0 ? delta : 0
    ring.last = count
  }

  /** The last `seconds` points (all by default) of the series whose names start with one of `prefixes` (all by default). */
  snapshot(seconds = this.size, prefixes: readonly string[] = []): RateSnapshot {
    const n = Math.min(Math.max(0, Math.floor(seconds)), this.#count)
    const series: Record<string, number[]> = {}
    for (const [name, ring] of this.#rings) {
      if (prefixes.length > 0 && !prefixes.some((p) => name.startsWith(p))) continue
      const out = new Array<number>(n)
      for (let i = 0; i < n; i++) out[i] = ring.values[(this.#head - n + i + this.size) % this.size] as number
      series[name] = out
    }
    return { interval: 1, end: this.#end, series }
  }
}
