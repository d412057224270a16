/**
 * The wait before reconnect attempt `round` (1, 2, ...): doubling from `min` up to `max`, with
 * half of it random ("equal jitter"), so gateways that lost the same uplink do not all come back
 * in the same millisecond.
 */
export function reconnectDelay(round: number, min: number, max: number, random: () => number = Math.random): number {
  const base = Math.min(max, min * 2 ** Math.max(0, Math.min(round - 1, 30)))
  return Math.round(base / 2 + random() * (base / 2))
}

/** Messages or bytes per second over the last interval, from a counter sampled now and then. */
export class RateMeter {
  #last = 0
  #at: number
  rate = 0

  constructor(now: number) {
    this.#at = now
  }

  sample(count: number, now: number): void {
    const dt = now - this.#at
    if (dt <= 0) return
    this.rate = Math.round(((count - this.#last) * 1000) / dt)
    this.#last = count
    this.#at = now
  }
}
