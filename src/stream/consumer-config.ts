import { parseDuration } from '../config/units.ts'
import { EdgebusError } from '../core/errors.ts'
import { toMqttFilter, toMqttTopic } from '../subjects/mqtt-map.ts'
import { filtersOverlap, type StreamDefinition } from './stream-config.ts'

/**
 * A consumer's definition: a cursor over one stream with delivery state (CONSUMERS.md). Written
 * the way people write them, in the config file, a JSON body or on the command line:
 *
 *   { "name": "billing", "filter": ["meters.>"], "deliver": "all", "ackWait": "30s", "maxDeliver": 5,
 *     "backoff": ["1s", "10s", "1m"], "maxAckPending": 1000, "replay": "instant" }
 *
 * parseConsumerDefinition checks it all and names what is wrong (ECONSUMER_INVALID).
 */

export const DeliverPolicies = ['all', 'new', 'last', 'lastPerSubject'] as const
/** Where a new consumer starts. Only used when it is created: a durable one resumes from its state. */
export type DeliverPolicy = (typeof DeliverPolicies)[number] | { startSeq: number } | { startTime: number }
export const AckPolicies = ['explicit', 'none'] as const
export type AckPolicy = (typeof AckPolicies)[number]
export const ReplayPolicies = ['instant', 'original'] as const
export type ReplayPolicy = (typeof ReplayPolicies)[number]

export interface ConsumerDefinition {
  /** The durable name; null for an ephemeral consumer (no state on disk). */
  name: string | null
  /** The stream it reads. */
  stream: string
  /** Canonical MQTT filters; empty = every message of the stream. */
  filter: string[]
  deliver: DeliverPolicy
  ack: AckPolicy
  /** ms a delivery may stay unacknowledged before it is delivered again. */
  ackWait: number
  /** Deliveries of one message at most, then it is dead-lettered; 0 = unlimited. */
  maxDeliver: number
  /** ms to wait after the 1st, 2nd, ... delivery (the last repeats); replaces ackWait when not empty. */
  backoff: number[]
  /** Delivered-but-unacknowledged messages at most; 0 = unlimited. */
  maxAckPending: number
  replay: ReplayPolicy
  /** MQTT topic dead letters are published to; null = `$dlq/<stream>/<consumer>` (defaultDeadLetter). */
  deadLetter: string | null
}

export const CONSUMER_DEFAULTS = {
  deliver: 'all' as DeliverPolicy,
  ack: 'explicit' as AckPolicy,
  ackWait: 30_000,
  maxDeliver: 5,
  maxAckPending: 1000,
  replay: 'instant' as ReplayPolicy,
}

const KEYS = ['name', 'filter', 'deliver', 'ack', 'ackWait', 'maxDeliver', 'backoff', 'maxAckPending', 'replay', 'deadLetter'] as const
export const CONSUMER_NAME = /^[A-Za-z0-9_-]{1,64}$/

/** The dead-letter topic of a consumer when none is set: `$dlq/<stream>/<consumer>` (NATS style `$dlq.<stream>.<consumer>`). */
export function defaultDeadLetter(stream: string, consumer: string): string {
  return `$dlq/${stream}/${consumer}`
}

/**
 * Checks a consumer definition of stream `stream`. `where` names it in messages. Numbers that
 * mean "no limit" (maxDeliver, maxAckPending) take 0 or -1 and come out as 0.
 */
export function parseConsumerDefinition(raw: unknown, stream: string, where = 'consumer'): ConsumerDefinition {
  const bad = (key: string, value: unknown, fix: string): never => {
    throw new EdgebusError('ECONSUMER_INVALID', `${where}: ${key} ${JSON.stringify(value)} is not valid; ${fix}`, { key, value, stream })
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new EdgebusError('ECONSUMER_INVALID', `${where} must be an object like {"name": "billing", "filter": ["meters.>"]}`, { stream })
  }
  const def = raw as Record<string, unknown>
  for (const key of Object.keys(def)) {
    if (!(KEYS as readonly string[]).includes(key)) {
      throw new EdgebusError('ECONSUMER_INVALID', `${where}: "${key}" is not a consumer setting (known: ${KEYS.join(', ')})`, { key, stream })
    }
  }
  let name: string | null = null
  if (def.name !== undefined && def.name !== null) {
    if (typeof def.name !== 'string' || !CONSUMER_NAME.test(def.name)) bad('name', def.name, 'use 1 to 64 letters, digits, "_" or "-" (or no name for an ephemeral consumer)')
    name = def.name as string
    where = `consumer "${name}" of stream "${stream}"`
  } else {
    where = `ephemeral consumer of stream "${stream}"`
  }

  let filterRaw = def.filter ?? []
  if (typeof filterRaw === 'string') filterRaw = [filterRaw]
  if (!Array.isArray(filterRaw) || filterRaw.some((s) => typeof s !== 'string')) {
    bad('filter', def.filter, 'use a subject filter or a list of them, like "meters.>" or ["meters/+/kwh"]; leave it out for every message')
  }
  const filter: string[] = []
  for (const f of filterRaw as string[]) {
    let canonical: string
    try {
      canonical = toMqttFilter(f)
    } catch (err) {
      return bad('filter', f, (err as Error).message)
    }
    if (!filter.includes(canonical)) filter.push(canonical)
  }

  const deliver = parseDeliver(def.deliver, bad)

  const ack = def.ack ?? CONSUMER_DEFAULTS.ack
  if (!(AckPolicies as readonly unknown[]).includes(ack)) bad('ack', ack, `use one of ${AckPolicies.join(', ')}`)

  const duration = (key: string, v: unknown): number => {
    const n = parseDuration(v)
    if (n === null || n <= 0) bad(key, v, "use a duration above zero such as '500ms', '30s' or '5m'")
    return n as number
  }
  const ackWait = def.ackWait === undefined ? CONSUMER_DEFAULTS.ackWait : duration('ackWait', def.ackWait)

  const unlimited = (key: string, fallback: number): number => {
    const v = def[key]
    if (v === undefined) return fallback
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < -1) bad(key, v, 'use a whole number, 0 or -1 for no limit')
    return Math.max(0, v as number)
  }
  const maxDeliver = unlimited('maxDeliver', CONSUMER_DEFAULTS.maxDeliver)
  const maxAckPending = unlimited('maxAckPending', CONSUMER_DEFAULTS.maxAckPending)

  let backoff: number[] = []
  if (def.backoff !== undefined) {
    if (!Array.isArray(def.backoff) || def.backoff.length === 0) bad('backoff', def.backoff, "use a list of durations, like ['1s', '10s', '1m']")
    backoff = (def.backoff as unknown[]).map((v) => duration('backoff', v))
    if (maxDeliver > 0 && backoff.length > maxDeliver) {
      bad('backoff', def.backoff, `it has ${backoff.length} steps but maxDeliver ${maxDeliver} waits at most ${maxDeliver} times; shorten it or raise maxDeliver`)
    }
  }

  const replay = def.replay ?? CONSUMER_DEFAULTS.replay
  if (!(ReplayPolicies as readonly unknown[]).includes(replay)) bad('replay', replay, `use one of ${ReplayPolicies.join(', ')}`)

  let deadLetter: string | null = null
  if (def.deadLetter !== undefined && def.deadLetter !== null) {
    if (typeof def.deadLetter !== 'string') bad('deadLetter', def.deadLetter, 'use a subject without wildcards, like "$dlq.billing"')
    try {
      deadLetter = toMqttTopic(def.deadLetter as string)
    } catch (err) {
      return bad('deadLetter', def.deadLetter, (err as Error).message)
    }
  }

  return {
    name,
    stream,
    filter,
    deliver,
    ack: ack as AckPolicy,
    ackWait,
    maxDeliver,
    backoff,
    maxAckPending,
    replay: replay as ReplayPolicy,
    deadLetter,
  }
}

function parseDeliver(v: unknown, bad: (key: string, value: unknown, fix: string) => never): DeliverPolicy {
  const fix = `use one of ${DeliverPolicies.join(', ')}, {"startSeq": N} or {"startTime": "2026-11-23T00:00:00Z"}`
  if (v === undefined) return CONSUMER_DEFAULTS.deliver
  if (typeof v === 'string') {
    if ((DeliverPolicies as readonly string[]).includes(v)) return v as DeliverPolicy
    return bad('deliver', v, fix)
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return bad('deliver', v, fix)
  const o = v as Record<string, unknown>
  const keys = Object.keys(o)
  if (keys.length !== 1) return bad('deliver', v, fix)
  if ('startSeq' in o) {
    const n = o.startSeq
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) return bad('deliver', v, 'startSeq must be a whole number from 1')
    return { startSeq: n }
  }
  if ('startTime' in o) {
    const t = o.startTime
    const ms = typeof t === 'number' ? t : typeof t === 'string' ? (/^\d+$/.test(t) ? Number(t) : Date.parse(t)) : NaN
    if (!Number.isSafeInteger(ms) || ms < 0) return bad('deliver', v, 'startTime must be an ISO 8601 time or milliseconds since the epoch')
    return { startTime: ms }
  }
  return bad('deliver', v, fix)
}

export const START_POSITIONS = 'all, new, last, last-per-subject, seq=<N>, time=<ISO 8601 UTC or ms>, since=<duration like 10m>'

/**
 * A start position written as one word (MQTT `$replay/<stream>/<start>/...`, /ws `replay`):
 * all | new | last | last-per-subject | seq=N | time=ISO-8601 or ms | since=DURATION. Null if none.
 */
export function parseStartPosition(start: string, now = Date.now()): DeliverPolicy | null {
  switch (start) {
    case 'all': case 'new': case 'last': return start
    case 'last-per-subject': case 'lastPerSubject': return 'lastPerSubject'
  }
  const eq = start.indexOf('=')
  const key = start.slice(0, eq)
  const value = start.slice(eq + 1)
  if (key === 'seq' && /^[1-9]\d{0,15}$/.test(value)) return { startSeq: Number(value) }
  if (key === 'time') {
    const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value)
    if (Number.isSafeInteger(ms) && ms >= 0) return { startTime: ms }
  }
  if (key === 'since') {
    const d = parseDuration(value)
    if (d !== null && d >= 0) return { startTime: Math.max(0, now - d) }
  }
  return null
}

/** The deliver policy as people write it (startTime in ISO 8601). */
export function describeDeliver(d: DeliverPolicy): string | Record<string, unknown> {
  if (typeof d === 'string') return d
  if ('startSeq' in d) return { startSeq: d.startSeq }
  return { startTime: new Date(d.startTime).toISOString() }
}

/** The definition as the config file and the API show it (the inverse of parseConsumerDefinition). */
export function describeConsumerDefinition(def: ConsumerDefinition): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  if (def.name !== null) out.name = def.name
  out.filter = def.filter
  out.deliver = describeDeliver(def.deliver)
  out.ack = def.ack
  out.ackWait = def.ackWait
  out.maxDeliver = def.maxDeliver
  if (def.backoff.length > 0) out.backoff = def.backoff
  out.maxAckPending = def.maxAckPending
  out.replay = def.replay
  if (def.deadLetter !== null) out.deadLetter = def.deadLetter
  return out
}

/**
 * Refuses (ECONSUMER_INVALID) a filter that no message of the stream can match: a filter must
 * overlap one of the stream's subjects (NATS refuses such a consumer too).
 */
export function checkConsumerFilter(def: ConsumerDefinition, stream: StreamDefinition): void {
  for (const f of def.filter) {
    if (!stream.subjects.some((s) => filtersOverlap(f, s))) {
      throw new EdgebusError('ECONSUMER_INVALID',
        `consumer ${def.name === null ? '(ephemeral)' : `"${def.name}"`}: filter "${f}" matches none of stream "${stream.name}"'s subjects (${stream.subjects.join(', ')})`,
        { key: 'filter', value: f, stream: stream.name })
    }
  }
}
