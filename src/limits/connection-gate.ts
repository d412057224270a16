import type { ErrorCode } from '../core/errors.ts'
import type { FilesGate } from './fd-limit.ts'
import { TokenBucket } from './token-bucket.ts'

export interface ConnectionLimits {
  /** Connections at most (0 = no limit). */
  maxConnections: number
  /** Connections at most from one address (0 = no limit). */
  maxConnectionsPerAddress: number
  /** New connections per second at most from one address (0 = no limit). */
  connectRate: number
}

export interface Refusal {
  code: Extract<ErrorCode, 'ELIMIT_CONNECTIONS' | 'ELIMIT_CONNECT_RATE' | 'ELIMIT_FILES'>
  message: string
}

/**
 * Admits client connections (MQTT over TCP and WebSocket, /ws) under the connection limits. Each
 * admitted connection is released when it closes. Counts refusals for the metrics.
 */
export class ConnectionGate implements FilesGate {
  readonly #limits: ConnectionLimits
  readonly #clock: () => number
  readonly #perAddress = new Map<string, number>()
  readonly #rates = new Map<string, TokenBucket>()
  #open = 0
  refused = { connections: 0, connectRate: 0, files: 0 }
  /** Connections the process's open-file limit leaves room for (0 = no cap); set at start (fd-limit.ts). */
  filesCap = 0
  /** Connections being refused at once at most (0 = no bound); set with filesCap. */
  maxRefusing = 0

  constructor(limits: ConnectionLimits, clock: () => number = Date.now) {
    this.#limits = limits
    this.#clock = clock
  }

  get open(): number {
    return this.#open
  }

  /** Admits a connection from `address` (an IP), or says why not. */
  admit(address: string): Refusal | null {
    const l = this.#limits
    if (l.connectRate > 0) {
      const now = this.#clock()
      let bucket = this.#rates.get(address)
      if (bucket === undefined) {
        if (this.#rates.size >= 10_000) this.#forgetIdle(now)
        bucket = new TokenBucket(l.connectRate, l.connectRate, now)
        this.#rates.set(address, bucket)
      }
      if (!bucket.tryTake(now)) {
        this.refused.connectRate++
        return { code: 'ELIMIT_CONNECT_RATE', message: `${address} opened more than ${l.connectRate} connections per second (limits.connectRate)` }
      }
    }
    if (this.filesCap > 0 && this.#open >= this.filesCap) {
      this.refused.files++
      return { code: 'ELIMIT_FILES', message: `the server holds ${this.#open} connections and is at the open-file limit (ulimit -n; see the ELIMIT_FILES line at start)` }
    }
    if (l.maxConnections > 0 && this.#open >= l.maxConnections) {
      this.refused.connections++
      return { code: 'ELIMIT_CONNECTIONS', message: `the server holds ${this.#open} connections, its limit (limits.maxConnections)` }
    }
    const mine = this.#perAddress.get(address) ?? 0
    if (l.maxConnectionsPerAddress > 0 && mine >= l.maxConnectionsPerAddress) {
      this.refused.connections++
      return { code: 'ELIMIT_CONNECTIONS', message: `${address} holds ${mine} connections, the limit per address (limits.maxConnectionsPerAddress)` }
    }
    this.#open++
    this.#perAddress.set(address, mine + 1)
    return null
  }

  release(address: string): void {
    this.#open--
    const n = (this.#perAddress.get(address) ?? 1) - 1
    if (n <= 0) this.#perAddress.delete(address)
    else this.#perAddress.set(address, n)
  }

  #forgetIdle(now: number): void {
    for (const [a, b] of this.#rates) if (b.full(now)) this.#rates.delete(a)
  }
}
