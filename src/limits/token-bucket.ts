/**
 * A token bucket: `rate` tokens per second, holding at most `burst`. Plain numbers, no timers:
 * the caller passes the time, so it is cheap on a hot path and testable without sleeping.
 */
export class TokenBucket {
  #tokens: number
  #at: number

  constructor(readonly rate: number, readonly burst: number, now: number) {
    this.#tokens = burst
    this.#at = now
  }

  /**
   * Takes `n` tokens (the balance may go below zero). Returns 0 when they were there, otherwise
   * the milliseconds until the balance is back at zero: how long the taker should wait.
   */
  take(now: number, n = 1): number {
    const t = Math.min(this.burst, this.#tokens + ((now - this.#at) * this.rate) / 1000)
    this.#at = now
    this.#tokens = t - n
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens * 1000) / this.rate)
  }

  /** Takes `n` tokens only if they are all there (a refused taker costs nothing). */
  tryTake(now: number, n = 1): boolean {
    const t = Math.min(this.burst, this.#tokens + ((now - this.#at) * this.rate) / 1000)
    this.#at = now
    this.#tokens = t >= n ? t - n : t
    return t >= n
  }

  /** Whether it has refilled completely (an idle bucket can be forgotten). */
  full(now: number): boolean {
    return this.#tokens + ((now - this.#at) * this.rate) / 1000 >= this.burst
  }
}
