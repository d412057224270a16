import { performance } from 'node:perf_hooks'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** How often the process is looked at. */
const INTERVAL_MS = 5000
/** Event-loop utilization over an interval under which the process counts as quiet. */
const QUIET_BELOW = 0.05
/** Growth of the V8 heap plus external memory (Buffers) since the last collection that is worth one. */
const MIN_GROWTH_BYTES = 8 * 1024 * 1024

/** V8's full collection, without starting node with --expose-gc (the bundle and the single executable cannot). */
function fullGc(): () => void {
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
}

/**
 * Issue 15: after a burst, the server held 277 MB of RSS with 7.4 MB of heap. The rest were dead
 * Buffers (socket reads, batched writes): V8 frees them only at a collection, and a collection
 * comes only when JavaScript allocates, which a quiet server hardly does, so they stayed for
 * good. When the event loop has been quiet for an interval and the heap plus external memory grew
 * since the last collection, this runs one, and a second once the first's weak callbacks ran (a
 * few ms each: the live heap is small); the Buffers' memory goes back to the allocator, which
 * gives much of it back to the system (see README, Memory).
 */
export class IdleCollector {
  readonly #timer: NodeJS.Timeout
  readonly #gc = fullGc()
  #elu = performance.eventLoopUtilization()
  #baseline = IdleCollector.#held()

  constructor() {
    this.#timer = setInterval(() => this.#check(), INTERVAL_MS)
    this.#timer.unref()
  }

  static #held(): number {
    const m = process.memoryUsage()
    return m.heapUsed + m.external
  }

  #check(): void {
    const elu = performance.eventLoopUtilization(this.#elu)
    this.#elu = performance.eventLoopUtilization()
    const held = IdleCollector.#held()
    if (held < this.#baseline) this.#baseline = held // V8 collected by itself
    if (elu.utilization >= QUIET_BELOW || held - this.#baseline < MIN_GROWTH_BYTES) return
    this.#gc()
    // what the first collection's weak callbacks let go (closed sockets' buffers) goes in a second
    setImmediate(() => {
      this.#gc()
      this.#baseline = IdleCollector.#held()
    })
  }

  stop(): void {
    clearInterval(this.#timer)
  }
}
