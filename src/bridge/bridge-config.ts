import { parseDuration, parseSize } from '../config/units.ts'
import { EdgebusError } from '../core/errors.ts'
import { parseConsumerDefinition, type ConsumerDefinition } from '../stream/consumer-config.ts'
import { checkNoOverlap, parseStreamDefinition, type StreamDefinition } from '../stream/stream-config.ts'
import { SubjectRewrite } from './subject-rewrite.ts'

/**
 * A bridge as the config file's `bridges` list declares it (docs/bridges.md):
 *
 *   { "name": "cloud", "urls": ["mqtts://a.example:8883", "mqtts://b.example:8883"],
 *     "username": "site1", "password": "...", "clientId": "site1-gw", "mqttVersion": 5,
 *     "out": [{ "from": "sensors/+/temp", "to": "site1/{1}/temp", "qos": 1 }],
 *     "in": [{ "from": "site1/cmd/#", "to": "devices/{#}" }],
 *     "outbox": { "maxBytes": "1GB", "maxAge": "7d" }, "window": 1000, "rate": { "msgs": 5000 } }
 *
 * parseBridgeDefinition checks it all and names the key and the fix (EBRIDGE_INVALID).
 */

export const RemoteKinds = ['mqtt', 'nats'] as const
export type RemoteKind = (typeof RemoteKinds)[number]

/** URL schemes per remote kind: MQTT over TCP/TLS/WebSocket; NATS plain or TLS. */
const SCHEMES: Record<string, RemoteKind> = { 'mqtt:': 'mqtt', 'mqtts:': 'mqtt', 'ws:': 'mqtt', 'wss:': 'mqtt', 'nats:': 'nats', 'tls:': 'nats' }

export interface OutRule {
  /** As written: the local filter and the remote template (null: the same subject). */
  from: string
  to: string | null
  rewrite: SubjectRewrite
  /** MQTT remotes: 1 (PUBACK moves the cursor) or 0 (sent is done: at most once). */
  qos: 0 | 1
}

export interface InRule {
  /** As written: the remote filter and the local template. */
  from: string
  to: string | null
  rewrite: SubjectRewrite
  qos: 0 | 1
  /** NATS remotes: the JetStream stream the rule reads with a durable pull consumer (at least once); null: a core NATS subscription (at most once). */
  stream: string | null
}

export interface BridgeDefinition {
  name: string
  kind: RemoteKind
  /** Tried in order; the first is preferred again after every disconnect. */
  urls: string[]
  username: string | null
  password: string | null
  token: string | null
  /** PEM files: a client certificate and key, a CA to trust. */
  cert: string | null
  key: string | null
  ca: string | null
  clientId: string
  /** MQTT protocol version: 4 (3.1.1) or 5. */
  mqttVersion: 4 | 5
  out: OutRule[]
  in: InRule[]
  /** The stream that is the outbox: a declared one (`outbox.stream`) or `bridge-<name>`, made for the bridge. */
  outboxStream: string
  /** True when the outbox stream is made for the bridge (from outbox's limits). */
  ownOutbox: boolean
  outboxLimits: Record<string, unknown>
  /** Messages sent and not yet acknowledged by the remote at most. */
  window: number
  /** Messages and bytes per second at most; 0 = no limit. */
  rateMsgs: number
  rateBytes: number
  /** The remote must acknowledge within this (ms), else the link is reconnected (watchdog). */
  ackTimeout: number
  /** Refusals of one message by the remote before it is dead-lettered. */
  maxDeliver: number
  deadLetter: string | null
  backoffMin: number
  backoffMax: number
  connectTimeout: number
  /** MQTT keep alive in seconds. */
  keepalive: number
}

const KEYS = ['name', 'urls', 'url', 'username', 'password', 'token', 'cert', 'key', 'ca', 'clientId', 'mqttVersion', 'out', 'in',
  'outbox', 'window', 'rate', 'ackTimeout', 'maxDeliver', 'deadLetter', 'backoff', 'connectTimeout', 'keepalive'] as const
const NAME = /^[A-Za-z0-9_-]{1,57}$/
const OUTBOX_KEYS = ['stream', 'maxMsgs', 'maxBytes', 'maxAge', 'maxMsgsPerSubject', 'discard', 'fsync']

export const BRIDGE_DEFAULTS = { window: 1000, ackTimeout: 30_000, maxDeliver: 5, backoffMin: 500, backoffMax: 30_000, connectTimeout: 10_000, keepalive: 30 }

/** The name of the outbox stream (and of its consumer) made for bridge `name`. */
export function outboxName(name: string): string {
  return `bridge-${name}`
}

export function parseBridgeDefinition(raw: unknown, where = 'bridge'): BridgeDefinition {
  const fail = (key: string, fix: string, value?: unknown): never => {
    throw new EdgebusError('EBRIDGE_INVALID', `${where}: ${key}${value === undefined ? '' : ` ${JSON.stringify(value)}`} is not valid; ${fix}`, { key })
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new EdgebusError('EBRIDGE_INVALID', `${where} must be an object like {"name": "cloud", "urls": ["mqtts://broker.example:8883"], "out": [{"from": "sensors/#"}]}`)
  }
  const d = raw as Record<string, unknown>
  for (const k of Object.keys(d)) {
    if (!(KEYS as readonly string[]).includes(k)) throw new EdgebusError('EBRIDGE_INVALID', `${where}: "${k}" is not a bridge setting (known: ${KEYS.join(', ')})`, { key: k })
  }
  if (typeof d.name !== 'string' || !NAME.test(d.name)) fail('name', 'use 1 to 57 letters, digits, "_" or "-"', d.name)
  const name = d.name as string
  where = `${where} "${name}"`

  const str = (key: string): string | null => {
    const v = d[key]
    if (v === undefined || v === null) return null
    if (typeof v !== 'string' || v === '') fail(key, 'use a non-empty string', v)
    return v as string
  }
  const duration = (key: string, v: unknown, fallback: number, min = 1): number => {
    if (v === undefined) return fallback
    const n = parseDuration(v)
    if (n === null || n < min) fail(key, `use a duration of at least ${min} ms such as '500ms', '30s' or '5m'`, v)
    return n as number
  }
  const count = (key: string, v: unknown, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    if (v === undefined) return fallback
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(key, `use a whole number from ${min} to ${max}`, v)
    return v as number
  }

  let urls = d.urls ?? (d.url === undefined ? undefined : [d.url])
  if (!Array.isArray(urls) || urls.length === 0 || urls.some((u) => typeof u !== 'string')) {
    fail('urls', 'use a list of remote URLs tried in order, like ["mqtts://a.example:8883", "mqtts://b.example:8883"] or ["nats://a.example:4222"]', urls)
  }
  urls = urls as string[]
  let kind: RemoteKind | null = null
  for (const u of urls as string[]) {
    let parsed: URL
    try {
      parsed = new URL(u)
    } catch {
      return fail('urls', 'write each as scheme://host:port', u)
    }
    const k = SCHEMES[parsed.protocol]
    if (k === undefined) fail('urls', `use one of the schemes ${Object.keys(SCHEMES).map((s) => s + '//').join(', ')}`, u)
    if (kind !== null && k !== kind) fail('urls', 'use URLs of one kind of remote in one bridge (MQTT or NATS)', u)
    kind = k as RemoteKind
  }

  const mqttVersion = d.mqttVersion === undefined ? 5 : d.mqttVersion === 5 || d.mqttVersion === '5' || d.mqttVersion === '5.0' ? 5
    : d.mqttVersion === 4 || d.mqttVersion === '3.1.1' || d.mqttVersion === '4' ? 4 : fail('mqttVersion', 'use 5 or "3.1.1"', d.mqttVersion)

  const rules = (key: 'out' | 'in'): InRule[] => {
    const v = d[key]
    if (v === undefined) return []
    if (!Array.isArray(v)) fail(key, `use a list of rules like [{"from": "sensors/#", "to": "site1/{#}"}]`, v)
    return (v as unknown[]).map((r, i) => {
      const k = `${key}[${i}]`
      if (r === null || typeof r !== 'object' || Array.isArray(r)) return fail(k, 'use an object like {"from": "sensors/#", "to": "site1/{#}", "qos": 1}', r)
      const rule = r as Record<string, unknown>
      for (const rk of Object.keys(rule)) if (!['from', 'to', 'qos', ...(key === 'in' ? ['stream'] : [])].includes(rk)) fail(`${k}.${rk}`, `a rule has only from, to${key === 'in' ? ', qos and stream' : ' and qos'}`)
      const stream = rule.stream ?? null
      if (stream !== null && (kind !== 'nats' || typeof stream !== 'string' || !/^[A-Za-z0-9_-]{1,200}$/.test(stream))) {
        fail(`${k}.stream`, kind !== 'nats' ? 'only a NATS bridge reads a remote JetStream stream: remove "stream"' : 'name the remote JetStream stream (letters, digits, _ and -)', stream)
      }
      if (typeof rule.from !== 'string') fail(`${k}.from`, 'use a subject filter in either syntax, like "sensors/+/temp" or "sensors.*.temp"', rule.from)
      if (rule.to !== undefined && typeof rule.to !== 'string') fail(`${k}.to`, 'use a subject, which may use the captures {1}, {2}, ... and {#}', rule.to)
      const qos = rule.qos ?? 1
      if (qos !== 0 && qos !== 1) fail(`${k}.qos`, 'use 1 (acknowledged, the default) or 0 (at most once)', qos)
      try {
        const to = (rule.to as string | undefined) ?? null
        return { from: rule.from as string, to, rewrite: new SubjectRewrite(rule.from as string, to), qos: qos as 0 | 1, stream: stream as string | null }
      } catch (err) {
        return fail(k, (err as Error).message)
      }
    })
  }
  const out = rules('out')
  const inRules = rules('in')
  if (out.length + inRules.length === 0) fail('out', 'a bridge needs at least one "out" or "in" rule')

  const outbox = d.outbox ?? {}
  if (outbox === null || typeof outbox !== 'object' || Array.isArray(outbox)) fail('outbox', 'use an object like {"maxBytes": "1GB", "maxAge": "7d"} or {"stream": "telemetry"}', outbox)
  const ob = outbox as Record<string, unknown>
  for (const k of Object.keys(ob)) if (!OUTBOX_KEYS.includes(k)) fail(`outbox.${k}`, `known: ${OUTBOX_KEYS.join(', ')}`)
  const declared = ob.stream
  if (declared !== undefined && (typeof declared !== 'string' || declared === '')) fail('outbox.stream', 'name a stream declared in "streams"', declared)
  if (declared !== undefined && Object.keys(ob).length > 1) fail('outbox', 'with "stream" the limits are the declared stream\'s own: set them there')
  const { stream: _s, ...limits } = ob

  const rate = d.rate ?? {}
  if (rate === null || typeof rate !== 'object' || Array.isArray(rate)) fail('rate', 'use an object like {"msgs": 5000, "bytes": "1MB"}', rate)
  const r = rate as Record<string, unknown>
  for (const k of Object.keys(r)) if (k !== 'msgs' && k !== 'bytes') fail(`rate.${k}`, 'use "msgs" (per second) and "bytes" (per second)')
  const rateBytes = r.bytes === undefined ? 0 : parseSize(r.bytes)
  if (rateBytes === null) fail('rate.bytes', "use bytes per second such as 65536 or '1MB', 0 for no limit", r.bytes)

  const backoff = d.backoff ?? {}
  if (backoff === null || typeof backoff !== 'object' || Array.isArray(backoff)) fail('backoff', 'use an object like {"min": "500ms", "max": "30s"}', backoff)
  const b = backoff as Record<string, unknown>
  for (const k of Object.keys(b)) if (k !== 'min' && k !== 'max') fail(`backoff.${k}`, 'use "min" and "max" (durations)')
  const backoffMin = duration('backoff.min', b.min, BRIDGE_DEFAULTS.backoffMin)
  const backoffMax = duration('backoff.max', b.max, Math.max(backoffMin, BRIDGE_DEFAULTS.backoffMax))
  if (backoffMax < backoffMin) fail('backoff.max', `use at least backoff.min (${backoffMin} ms)`, b.max)

  const username = str('username')
  const password = str('password')
  if (password !== null && username === null) fail('username', 'is needed with "password"')
  const cert = str('cert')
  const key = str('key')
  if ((cert === null) !== (key === null)) fail(cert === null ? 'cert' : 'key', 'a client certificate needs both "cert" and "key" (PEM files)')
  const kindOf = kind as RemoteKind
  if (kindOf === 'mqtt' && d.token !== undefined) fail('token', 'is for NATS remotes; MQTT remotes take username and password')

  return {
    name,
    kind: kindOf,
    urls: urls as string[],
    username,
    password,
    token: str('token'),
    cert,
    key,
    ca: str('ca'),
    clientId: str('clientId') ?? `edgebus-${name}`,
    mqttVersion: mqttVersion as 4 | 5,
    out,
    in: inRules,
    outboxStream: (declared as string | undefined) ?? outboxName(name),
    ownOutbox: declared === undefined,
    outboxLimits: limits,
    window: count('window', d.window, BRIDGE_DEFAULTS.window, 1, 65_535),
    rateMsgs: count('rate.msgs', r.msgs, 0, 0),
    rateBytes: rateBytes as number,
    ackTimeout: duration('ackTimeout', d.ackTimeout, BRIDGE_DEFAULTS.ackTimeout, 100),
    maxDeliver: count('maxDeliver', d.maxDeliver, BRIDGE_DEFAULTS.maxDeliver, 1),
    deadLetter: str('deadLetter'),
    backoffMin,
    backoffMax,
    connectTimeout: duration('connectTimeout', d.connectTimeout, BRIDGE_DEFAULTS.connectTimeout, 100),
    keepalive: count('keepalive', d.keepalive, BRIDGE_DEFAULTS.keepalive, 0, 65_535),
  }
}

/** The durable consumer that drains a bridge's outbox: its cursor moves on the remote's acks. */
export function outboxConsumer(def: BridgeDefinition): ConsumerDefinition {
  return parseConsumerDefinition({
    name: outboxName(def.name),
    filter: def.out.map((r) => r.rewrite.filter),
    deliver: 'all',
    ack: 'explicit',
    // the watchdog reconnects at ackTimeout; redelivery on the same link only after twice that
    ackWait: def.ackTimeout * 2,
    // the bridge dead-letters refusals itself (maxDeliver of them): an outage or a lost link is no refusal
    maxDeliver: 0,
    maxAckPending: def.window,
    ...(def.deadLetter !== null ? { deadLetter: def.deadLetter } : {}),
  }, def.outboxStream, `bridge "${def.name}" outbox consumer`)
}

/**
 * The stream definitions with the bridges' outboxes: a stream made for each bridge with `out`
 * rules and no declared outbox; a consumer added to each declared outbox. Throws EBRIDGE_INVALID
 * naming the key to change.
 */
export function withOutboxes(streams: readonly StreamDefinition[], bridges: readonly BridgeDefinition[], where = 'config "bridges"'): StreamDefinition[] {
  const all = streams.map((s) => ({ ...s, consumers: [...s.consumers] }))
  bridges.forEach((b, i) => {
    if (b.out.length === 0) return
    const at = `${where}[${i}] (bridge "${b.name}")`
    if (b.ownOutbox) {
      if (all.some((s) => s.name === b.outboxStream)) {
        throw new EdgebusError('EBRIDGE_INVALID', `${at}: a stream named "${b.outboxStream}" is declared already; the bridge makes its own outbox of that name: rename the stream or set outbox.stream to it`, { key: `bridges[${i}].outbox` })
      }
      let def: StreamDefinition
      try {
        def = parseStreamDefinition({ name: b.outboxStream, subjects: b.out.map((r) => r.rewrite.filter), ...b.outboxLimits }, `${at} outbox`)
      } catch (err) {
        throw new EdgebusError('EBRIDGE_INVALID', `${(err as Error).message} (key bridges[${i}].outbox)`, { key: `bridges[${i}].outbox` })
      }
      try {
        checkNoOverlap(def, all)
      } catch (err) {
        const other = String((err as EdgebusError).detail.other)
        throw new EdgebusError('EBRIDGE_INVALID',
          `${at}: its out rules overlap stream "${other}" (a message is stored by one stream only): set "outbox": {"stream": "${other}"} so the bridge drains that stream, or narrow the rules`,
          { key: `bridges[${i}].outbox` })
      }
      def.consumers.push(outboxConsumer(b))
      all.push(def)
      return
    }
    const s = all.find((x) => x.name === b.outboxStream)
    if (s === undefined) {
      throw new EdgebusError('EBRIDGE_INVALID', `${at}: outbox.stream "${b.outboxStream}" is not declared in "streams": declare it there or leave outbox.stream out`, { key: `bridges[${i}].outbox.stream` })
    }
    for (const r of b.out) {
      // every subject an out rule selects must be captured by the outbox, or it would never be sent
      if (!s.subjects.some((f) => coversFilter(f, r.rewrite.filter))) {
        throw new EdgebusError('EBRIDGE_INVALID', `${at}: out rule "${r.rewrite.filter}" is not inside the subjects of stream "${s.name}" (${s.subjects.join(', ')}): add it to the stream or narrow the rule`, { key: `bridges[${i}].out` })
      }
    }
    if (s.consumers.some((c) => c.name === outboxName(b.name))) {
      throw new EdgebusError('EBRIDGE_INVALID', `${at}: stream "${s.name}" has a consumer named "${outboxName(b.name)}" already; the bridge needs that name: rename the consumer`, { key: `bridges[${i}].name` })
    }
    s.consumers.push(outboxConsumer(b))
  })
  return all
}

/** Whether every topic `inner` matches is matched by `outer` (MQTT filters). */
export function coversFilter(outer: string, inner: string): boolean {
  const o = outer.split('/')
  const n = inner.split('/')
  for (let i = 0; i < o.length; i++) {
    const a = o[i] as string
    if (a === '#') return !(i === 0 && (n[0] ?? '').startsWith('$'))
    const b = n[i]
    if (b === undefined || b === '#') return false
    if (a === '+') { if (i === 0 && b.startsWith('$')) return false; continue }
    if (a !== b) return false
  }
  return o.length === n.length
}

/** The config file's `bridges` list, checked: each entry, distinct names, outboxes that fit the streams. */
export function parseBridges(raw: unknown, streams: readonly StreamDefinition[], where = 'config "bridges"'): BridgeDefinition[] {
  if (!Array.isArray(raw)) {
    throw new EdgebusError('EBRIDGE_INVALID', `${where} must be a list of bridges, like [{"name": "cloud", "urls": ["mqtts://broker.example:8883"], "out": [{"from": "sensors/#"}]}]`, { key: 'bridges' })
  }
  const defs = raw.map((d, i) => parseBridgeDefinition(d, `${where}[${i}]`))
  for (const def of defs) {
    if (defs.filter((x) => x.name === def.name).length > 1) {
      throw new EdgebusError('EBRIDGE_INVALID', `${where} names "${def.name}" twice; give each bridge its own name`, { key: 'bridges' })
    }
  }
  withOutboxes(streams, defs, where)
  return defs
}


/** The definition as --print-config shows it (secrets hidden). */
export function describeBridge(def: BridgeDefinition): Record<string, unknown> {
  const rule = (r: OutRule): Record<string, unknown> => ({ from: r.from, ...(r.to !== null ? { to: r.to } : {}), qos: r.qos })
  return {
    name: def.name,
    urls: def.urls,
    ...(def.username !== null ? { username: def.username } : {}),
    ...(def.password !== null ? { password: '(set)' } : {}),
    ...(def.token !== null ? { token: '(set)' } : {}),
    ...(def.cert !== null ? { cert: def.cert, key: def.key } : {}),
    ...(def.ca !== null ? { ca: def.ca } : {}),
    clientId: def.clientId,
    mqttVersion: def.mqttVersion,
    out: def.out.map(rule),
    in: def.in.map(rule),
    outbox: def.ownOutbox ? def.outboxLimits : { stream: def.outboxStream },
    window: def.window,
    rate: { msgs: def.rateMsgs, bytes: def.rateBytes },
    ackTimeout: def.ackTimeout,
    maxDeliver: def.maxDeliver,
    ...(def.deadLetter !== null ? { deadLetter: def.deadLetter } : {}),
    backoff: { min: def.backoffMin, max: def.backoffMax },
    connectTimeout: def.connectTimeout,
    keepalive: def.keepalive,
  }
}
