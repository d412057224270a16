import { readFileSync } from 'node:fs'
import type { LogLimiter } from '../core/log-limiter.ts'
import type { Logger } from '../core/log.ts'

/** The process's limit on open file descriptors (RLIMIT_NOFILE, `ulimit -n`). */
export interface OpenFilesLimit {
  soft: number
  hard: number
}

/** The "Max open files" line of /proc/<pid>/limits ("unlimited" is Infinity); null if absent. */
export function parseOpenFilesLimit(limits: string): OpenFilesLimit | null {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits)
  if (m === null) return null
  const n = (s: string): number => (s === 'unlimited' ? Infinity : Number(s))
  const soft = n(m[1] as string)
  const hard = n(m[2] as string)
  return Number.isNaN(soft) || Number.isNaN(hard) ? null : { soft, hard }
}

/** This process's open-file limit, read from /proc/self/limits (null where there is none: not Linux). */
export function readOpenFilesLimit(): OpenFilesLimit | null {
  try {
    return parseOpenFilesLimit(readFileSync('/proc/self/limits', 'utf8'))
  } catch {
    return null
  }
}

/**
 * Descriptors kept for everything that is not an admitted client connection: listeners, journal
 * segments, state files, HTTP probes, connections being refused. An eighth of the limit, at least
 * 64 and at most 1024.
 */
export function descriptorReserve(soft: number): number {
  return Math.min(1024, Math.max(64, Math.floor(soft / 8)))
}

export interface AdmissionCap {
  /** Connections the open-file limit leaves room for (0: no cap, the limit is unknown or unlimited). */
  cap: number
  /** Connections being refused at once at most (each holds a descriptor until it has its CONNACK). */
  maxRefusing: number
  reserve: number
  /** limits.maxConnections (+ the reserve) does not fit under the limit: say so at start. */
  overLimit: boolean
}

/** How many client connections fit under the open-file limit, next to limits.maxConnections (0 = no limit). */
export function admissionCap(maxConnections: number, limit: OpenFilesLimit | null): AdmissionCap {
  if (limit === null || !Number.isFinite(limit.soft)) return { cap: 0, maxRefusing: 0, reserve: 0, overLimit: false }
  const reserve = descriptorReserve(limit.soft)
  const cap = Math.max(1, limit.soft - reserve)
  return { cap, maxRefusing: Math.floor(reserve / 4), reserve, overLimit: maxConnections === 0 || maxConnections > cap }
}

/** What the server needs of a listener: its errors (node:net, node:http and node:tls servers). */
interface Listener {
  on(event: 'error', fn: (err: NodeJS.ErrnoException) => void): unknown
}

/** The part of the connection gate the open-file limit sets. */
export interface FilesGate {
  filesCap: number
  maxRefusing: number
}

/**
 * Issue 15: with limits.maxConnections above `ulimit -n`, the server ran out of descriptors,
 * dropped new connections without a word and its HTTP probes hung. libuv keeps a descriptor in
 * reserve for that moment, but only to accept and close the waiting connections unanswered (Node
 * hears of no EMFILE), so the server must not get there: at start this says so (one line, with
 * the numbers and the fix) and caps admission below the limit, leaving descriptors for files,
 * the HTTP probes, and the connections being refused (their CONNACK says why, 0x97 / 3).
 */
export function capByOpenFiles(maxConnections: number, gate: FilesGate, log: Logger, limit = readOpenFilesLimit()): void {
  const { cap, maxRefusing, reserve, overLimit } = admissionCap(maxConnections, limit)
  gate.filesCap = cap
  gate.maxRefusing = maxRefusing
  if (!overLimit || limit === null) return
  const need = maxConnections === 0 ? null : maxConnections + reserve
  const fix = need === null
    ? `set limits.maxConnections to ${cap} or less, or raise the limit (ulimit -n, LimitNOFILE= in a systemd unit)`
    : `raise the limit to ${need} or more (ulimit -n ${need}, LimitNOFILE=${need} in a systemd unit${need > limit.hard ? `; the hard limit is ${limit.hard}` : ''}) or set limits.maxConnections to ${cap} or less`
  log.warn({ code: 'ELIMIT_FILES', maxConnections, openFilesLimit: limit.soft, hardLimit: Number.isFinite(limit.hard) ? limit.hard : 'unlimited', reserve, cap },
    `limits.maxConnections (${maxConnections === 0 ? 'no limit' : maxConnections}) and ${reserve} descriptors for files and listeners do not fit under the open-file limit (${limit.soft}): connections are capped at ${cap}; ${fix}`)
}

/** A listener's accept errors (ENFILE: the system's table is full), logged rate-limited instead of thrown. */
export function watchListener(server: Listener, what: string, limiter: LogLimiter): void {
  server.on('error', (err) => {
    limiter.warn(`ELISTEN:${what}:${err.code ?? ''}`, { code: err.code === 'EMFILE' || err.code === 'ENFILE' ? 'ELIMIT_FILES' : 'ELISTEN', listener: what, errno: err.code },
      `${what}: accepting a connection failed: ${err.message}`)
  })
}
