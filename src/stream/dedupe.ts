/**
 * DuplicateWindow: publisher-chosen message ids seen in the last `windowMs`, each with the
 * sequence it was stored under. An append carrying an id already in the window is not stored
 * again: the journal answers with the original sequence (JetStream's Nats-Msg-Id semantics).
 *
 * Ids are remembered in arrival order; since the journal's timestamps never go backwards, the
 * expired ones are always at the front, and pruning is a walk from the front. The window lives in
 * memory; the journal refills it on open from the records of the last window (ids are stored in
 * the records), so it survives restarts.
 */
/** Where an id was first stored. */
export class SeenId {
  constructor(readonly seq: number, readonly timestamp: number) {}
}

export class DuplicateWindow {
  #seen = new Map<string, SeenId>()
  #ids: string[] = []
  #entries: SeenId[] = []
  #head = 0

  constructor(readonly windowMs: number) {}

  /** Ids remembered (expired ones not yet pruned included). */
  get size(): number {
    return this.#seen.size
  }

  /** Where `id` was stored, if within the window ending at `now`; else null. */
  lookup(id: string, now: number): SeenId | null {
    this.prune(now)
    return this.#seen.get(id) ?? null
  }

  /** Remembers `id` as stored under `seq` at `timestamp` (timestamps must not decrease). */
  add(id: string, seq: number, timestamp: number): void {
    const e = new SeenId(seq, timestamp)
    this.#seen.set(id, e)
    this.#ids.push(id)
    this.#entries.push(e)
  }

  /** Forgets ids older than the window ending at `now` (kept while timestamp >= now - windowMs). */
  prune(now: number): void {
    const cutoff = now - this.windowMs
    const entries = this.#entries
    let h = this.#head
    while (h < entries.length && (entries[h] as SeenId).timestamp < cutoff) {
      const id = this.#ids[h] as string
      if (this.#seen.get(id) === entries[h]) this.#seen.delete(id)
      h++
    }
    this.#head = h
    if (h > 1024 && h * 2 > entries.length) {
      this.#ids = this.#ids.slice(h)
      this.#entries = entries.slice(h)
      this.#head = 0
    }
  }

  /** Forgets every id stored above `seq` (appends that failed and were rolled back). */
  forgetAbove(seq: number): void {
    while (this.#entries.length > this.#head && (this.#entries[this.#entries.length - 1] as SeenId).seq > seq) {
      const id = this.#ids.pop() as string
      const e = this.#entries.pop() as SeenId
      if (this.#seen.get(id) === e) this.#seen.delete(id)
    }
  }

  clear(): void {
    this.#seen.clear()
    this.#ids = []
    this.#entries = []
    this.#head = 0
  }
}
