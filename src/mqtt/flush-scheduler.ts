/**
 * Collects the connections that have bytes queued and flushes each once per event-loop turn,
 * after all I/O callbacks of the turn ran: one write per connection per turn instead of one per
 * packet (measured: 16-35x on the same code, ../shared/PERF-NOTES.md).
 */
export interface Flushable {
  flush(): void
}

export class FlushScheduler {
  #dirty: Flushable[] = []
  #scheduled = false
  readonly #run = (): void => {
    this.#scheduled = false
    const dirty = this.#dirty
    this.#dirty = []
    for (let i = 0; i < dirty.length; i++) (dirty[i] as Flushable).flush()
  }

  mark(c: Flushable): void {
    this.#dirty.push(c)
    if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(this.#run)
    }
  }
}
