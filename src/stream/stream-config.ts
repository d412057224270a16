import { EdgebusError } from '../core/errors.ts'
import { parseDuration, parseSize } from '../config/units.ts'
import { toMqttFilter } from '../subjects/mqtt-map.ts'
import { FsyncPolicies, type FsyncPolicy } from './journal.ts'
import { DiscardPolicies, type RetentionLimits } from './retention.ts'
import { checkConsumerFilter, describeConsumerDefinition, parseConsumerDefinition, type ConsumerDefinition } from './consumer-config.ts'

/**
 * A stream's definition, as written in the config file (`streams: [...]`), sent to
 * POST /api/streams or given to `edgebus stream add`. Sizes and durations read as people write
 * them; subjects in either syntax. parseStreamDefinition checks it all and names what is wrong.
 */
export interface StreamDefinition {
  name: string
  /** Canonical MQTT filters. */
  subjects: string[]
  limits: RetentionLimits
  /** Largest message accepted, in bytes (0 = only the server's maxPacketSize). */
  maxMsgSize: number
  fsync: FsyncPolicy
  /** Default 'journal'; 'jetstream' keeps it in the cluster's JetStream (store/jetstream-store.ts). */
  storage?: StreamStorage
  /** Copies JetStream keeps (1, 3 or 5; storage 'jetstream' only). Default 1. */
  replicas?: 1 | 3 | 5
  /** Durable consumers declared with the stream (`consumers: [...]`). */
  consumers: ConsumerDefinition[]
}

/** Defaults a demanding user expects: group commit, keep everything, a 2-minute dedupe window. */
export const STREAM_DEFAULTS = {
  fsync: 'batch' as FsyncPolicy,
  discard: 'old' as const,
  duplicateWindow: 120_000,
}

const KEYS = ['name', 'subjects', 'maxMsgs', 'maxBytes', 'maxAge', 'maxMsgSize', 'maxMsgsPerSubject', 'discard', 'duplicateWindow', 'fsync', 'storage', 'replicas', 'consumers'] as const
/** Where a stream's messages live (src/stream/store): this node's journal, or JetStream in cluster mode. */
export const StreamStorages = ['journal', 'jetstream'] as const
export type StreamStorage = (typeof StreamStorages)[number]
const REPLICAS = [1, 3, 5] as const
const NAME = /^[A-Za-z0-9_-]{1,64}$/

export function parseStreamDefinition(raw: unknown, where = 'stream'): StreamDefinition {
  const bad = (key: string, value: unknown, fix: string): never => {
    throw new EdgebusError('ESTREAM_INVALID', `${where}: ${key} ${JSON.stringify(value)} is not valid; ${fix}`, { key, value })
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new EdgebusError('ESTREAM_INVALID', `${where} must be an object like {"name": "telemetry", "subjects": ["sensors.>"]}`)
  }
  const def = raw as Record<string, unknown>
  for (const key of Object.keys(def)) {
    if (!(KEYS as readonly string[]).includes(key)) {
      throw new EdgebusError('ESTREAM_INVALID', `${where}: "${key}" is not a stream setting (known: ${KEYS.join(', ')})`, { key })
    }
  }
  const name = def.name
  if (typeof name !== 'string' || !NAME.test(name)) bad('name', name, 'use 1 to 64 letters, digits, "_" or "-"')
  where = `stream "${name as string}"`
  const subjects = def.subjects
  if (!Array.isArray(subjects) || subjects.length === 0 || subjects.some((s) => typeof s !== 'string')) {
    bad('subjects', subjects, 'use a non-empty list of subjects or filters, like ["sensors.>"] or ["sensors/#"]')
  }
  const filters = (subjects as string[]).map((s) => {
    try {
      return toMqttFilter(s)
    } catch (err) {
      return bad('subjects', s, (err as Error).message)
    }
  })
  const count = (key: string): number => {
    const v = def[key]
    if (v === undefined) return 0
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) bad(key, v, 'use a whole number, 0 for no limit')
    return v as number
  }
  const size = (key: string): number => {
    const v = def[key]
    if (v === undefined) return 0
    const n = parseSize(v)
    if (n === null) bad(key, v, "use a size such as 1048576, '512MB' or '2GB', 0 for no limit")
    return n as number
  }
  const duration = (key: string, fallback: number): number => {
    const v = def[key]
    if (v === undefined) return fallback
    const n = parseDuration(v)
    if (n === null) bad(key, v, "use a duration such as '90s', '12h' or '7d', 0 for none")
    return n as number
  }
  const discard = def.discard ?? STREAM_DEFAULTS.discard
  if (!(DiscardPolicies as readonly unknown[]).includes(discard)) bad('discard', discard, `use one of ${DiscardPolicies.join(', ')}`)
  const fsync = def.fsync ?? STREAM_DEFAULTS.fsync
  if (!(FsyncPolicies as readonly unknown[]).includes(fsync)) bad('fsync', fsync, `use one of ${FsyncPolicies.join(', ')}`)
  const parsed: StreamDefinition = {
    name: name as string,
    subjects: filters,
    limits: {
      maxMsgs: count('maxMsgs'),
      maxBytes: size('maxBytes'),
      maxAge: duration('maxAge', 0),
      maxMsgsPerSubject: count('maxMsgsPerSubject'),
      discard: discard as RetentionLimits['discard'],
      duplicateWindow: duration('duplicateWindow', STREAM_DEFAULTS.duplicateWindow),
    },
    maxMsgSize: size('maxMsgSize'),
    fsync: fsync as FsyncPolicy,
    consumers: [],
  }
  if (def.storage !== undefined) {
    if (!(StreamStorages as readonly unknown[]).includes(def.storage)) bad('storage', def.storage, `use one of ${StreamStorages.join(', ')}`)
    parsed.storage = def.storage as StreamStorage
  }
  if (def.replicas !== undefined) {
    if (!(REPLICAS as readonly unknown[]).includes(def.replicas)) bad('replicas', def.replicas, 'use 1, 3 or 5 (a Raft group needs an odd size)')
    if (parsed.storage !== 'jetstream') bad('replicas', def.replicas, 'replicas apply to storage "jetstream" only: add "storage": "jetstream" or remove replicas')
    parsed.replicas = def.replicas as 1 | 3 | 5
  }
  const consumers = def.consumers
  if (consumers !== undefined) {
    if (!Array.isArray(consumers)) bad('consumers', consumers, 'use a list of consumers, like [{"name": "workers"}]')
    parsed.consumers = (consumers as unknown[]).map((c, i) => {
      const cdef = parseConsumerDefinition(c, parsed.name, `${where}: consumers[${i}]`)
      if (cdef.name === null) bad(`consumers[${i}].name`, undefined, 'a consumer declared with its stream is durable: give it a name')
      checkConsumerFilter(cdef, parsed)
      return cdef
    })
    const names = parsed.consumers.map((c) => c.name)
    const twice = names.find((n, i) => names.indexOf(n) !== i)
    if (twice !== undefined) bad('consumers', twice, 'give each consumer its own name')
  }
  return parsed
}

/** Whether some topic matches both MQTT filters. */
export function filtersOverlap(a: string, b: string): boolean {
  const x = a.split('/')
  const y = b.split('/')
  for (let i = 0; ; i++) {
    const p = x[i]
    const q = y[i]
    if (p === '#' || q === '#') {
      // '#' also matches the parent level, so 'a/#' and 'a' overlap; leading-'#' vs '$' topics is
      // the only exception: a '$' level is never matched by a leading wildcard
      const other = p === '#' ? q : p
      return !(i === 0 && other !== undefined && other.startsWith('$'))
    }
    if (p === undefined || q === undefined) return p === q
    if (p === '+' || q === '+') {
      const other = p === '+' ? q : p
      if (i === 0 && other.startsWith('$')) return false
      continue
    }
    if (p !== q) return false
  }
}

/** Throws ESTREAM_OVERLAP when a subject of `def` could also be captured by another stream. */
export function checkNoOverlap(def: StreamDefinition, others: Iterable<StreamDefinition>): void {
  for (const other of others) {
    if (other.name === def.name) continue
    for (const f of def.subjects) {
      for (const g of other.subjects) {
        if (filtersOverlap(f, g)) {
          throw new EdgebusError('ESTREAM_OVERLAP',
            `stream "${def.name}" subject "${f}" overlaps stream "${other.name}" subject "${g}": a message may be stored by one stream only; narrow one of them`,
            { stream: def.name, other: other.name, subject: f, otherSubject: g })
        }
      }
    }
  }
}

/** The definition as the config file and the API show it. */
export function describeStreamDefinition(def: StreamDefinition): Record<string, unknown> {
  return {
    name: def.name,
    subjects: def.subjects,
    ...def.limits,
    maxMsgSize: def.maxMsgSize,
    fsync: def.fsync,
    ...(def.storage !== undefined ? { storage: def.storage } : {}),
    ...(def.replicas !== undefined ? { replicas: def.replicas } : {}),
    ...(def.consumers.length > 0 ? { consumers: def.consumers.map(describeConsumerDefinition) } : {}),
  }
}
